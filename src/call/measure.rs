//! A call's metrics (feature `metrics`): the instant it started, how it
//! ended, and its events. Without the feature every item here is empty and
//! compiles away, so the call is unchanged.

#[cfg(feature = "metrics")]
pub(super) use on::*;

#[cfg(not(feature = "metrics"))]
pub(super) use off::*;

#[cfg(feature = "metrics")]
mod on {
    use tokio::time::Instant;

    use crate::metrics::{CallOutcome, Event};
    use crate::policy::Settings;
    use crate::{Error, ExhaustedReason};

    /// What a call keeps for its metrics.
    #[derive(Debug, Default)]
    pub(crate) struct Measure {
        started: Option<Instant>,
        /// How a call that returns a value classified as a failure ended.
        value_outcome: Option<CallOutcome>,
    }

    impl Measure {
        /// The call starts: one clock read, unless the deadline's read is
        /// at hand; none for a policy that records no metrics. Returns the
        /// instant read, for the first attempt's time limit to share.
        #[inline]
        pub(crate) fn start(&mut self, s: &Settings, now: Option<Instant>) -> Option<Instant> {
            if s.metrics.is_some() {
                self.started = Some(now.unwrap_or_else(Instant::now));
            }
            self.started
        }

        /// The call is about to return a value classified as a failure,
        /// not retryable (`give_up: None`) or with no attempt left.
        #[inline]
        pub(crate) fn value_failed(&mut self, give_up: Option<ExhaustedReason>) {
            self.value_outcome = Some(match give_up {
                None => CallOutcome::Permanent,
                Some(ExhaustedReason::BudgetEmpty) => CallOutcome::BudgetEmpty,
                Some(_) => CallOutcome::Exhausted,
            });
        }

        /// The call resolved to `result` after `attempts` invocations.
        #[inline]
        pub(crate) fn finish<T, E>(
            &self,
            s: &Settings,
            result: &Result<T, Error<E>>,
            attempts: u32,
        ) {
            let (Some(metrics), Some(started)) = (&s.metrics, self.started) else {
                return;
            };
            let outcome = match result {
                Ok(_) => self.value_outcome.unwrap_or(CallOutcome::Ok),
                Err(Error::Permanent { .. }) => CallOutcome::Permanent,
                Err(Error::Exhausted {
                    reason: ExhaustedReason::BudgetEmpty,
                    ..
                }) => CallOutcome::BudgetEmpty,
                Err(Error::Exhausted { .. }) => CallOutcome::Exhausted,
                Err(Error::Timeout { .. }) => CallOutcome::Timeout,
                Err(Error::CircuitOpen { .. }) => CallOutcome::CircuitOpen,
                Err(Error::BulkheadFull { .. }) => CallOutcome::BulkheadFull,
            };
            let elapsed = Instant::now().saturating_duration_since(started);
            metrics.call_ended(outcome, attempts, elapsed);
        }
    }

    /// Counts a call's `event` under its policy's name.
    #[inline]
    pub(crate) fn event(s: &Settings, event: Event) {
        if let Some(metrics) = &s.metrics {
            metrics.event(event);
        }
    }

    pub(crate) use crate::metrics::Event as CallEvent;

    /// The `fallback` event's counter of a call's policy, taken when the
    /// fallback is chained (the fallback's future outlives no borrow).
    #[derive(Debug, Default)]
    pub(crate) struct FallbackCount(Option<::metrics::Counter>);

    impl FallbackCount {
        pub(crate) fn of(s: &Settings) -> Self {
            Self(s.metrics.as_ref().map(|m| m.counter(Event::Fallback)))
        }

        /// A fallback served the call.
        pub(crate) fn count(&self) {
            if let Some(c) = &self.0 {
                c.increment(1);
            }
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod off {
    use tokio::time::Instant;

    use crate::ExhaustedReason;
    use crate::policy::Settings;

    /// Nothing: metrics are off.
    #[derive(Debug, Default)]
    pub(crate) struct Measure(());

    impl Measure {
        #[inline(always)]
        pub(crate) fn start(&mut self, _s: &Settings, _now: Option<Instant>) -> Option<Instant> {
            None
        }

        #[inline(always)]
        pub(crate) fn value_failed(&mut self, _give_up: Option<ExhaustedReason>) {}
    }

    /// The events a call counts (none, without the feature).
    #[derive(Debug, Clone, Copy)]
    pub(crate) enum CallEvent {
        Retry,
        GiveUp,
        HedgeSent,
        HedgeWon,
        Rejected,
        BulkheadRejected,
    }

    #[inline(always)]
    pub(crate) fn event(_s: &Settings, _event: CallEvent) {}

    /// Nothing: metrics are off.
    #[derive(Debug, Default)]
    pub(crate) struct FallbackCount(());

    impl FallbackCount {
        #[inline(always)]
        pub(crate) fn of(_s: &Settings) -> Self {
            Self(())
        }

        #[inline(always)]
        pub(crate) fn count(&self) {}
    }
}
