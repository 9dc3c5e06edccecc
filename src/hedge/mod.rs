//! Hedged (backup) requests: when an attempt is slow to answer, start another
//! beside it and take whichever succeeds first.
//!
//! # Why hedge
//!
//! A service's slowest answers are rarely slow for a reason the request
//! carries: a garbage collection, a cold cache, a busy replica. Sending the
//! same request again after a short delay, and taking the first answer, cuts
//! that tail: Dean and Barroso ("The Tail at Scale", CACM 2013) report
//! BigTable's 99.9th-percentile latency falling from 1,800 ms to 74 ms for
//! about 2 % more requests, with the delay set at the 95th percentile.
//!
//! Only hedge an idempotent operation: both attempts may reach the server.
//!
//! # The rules
//!
//! A [`Hedge`] is opt-in per call site, with [`Call::hedge`](crate::Call::hedge):
//!
//! - Each further attempt (a *hedge*) starts one hedge delay after the
//!   previous attempt started, while fewer than [`max_extra`](Hedge::max_extra)
//!   ` + 1` attempts are in flight. [`Hedge::after`]`(Duration::ZERO)` starts
//!   them all at once.
//! - The first success wins; every other attempt is dropped at once and its
//!   breaker permit released without counting, unless it had already run past
//!   the breaker's [`slow_call`](crate::BreakerConfig::slow_call) threshold:
//!   then it counts as a slow call, so a hung endpoint still trips the breaker.
//! - Hedges are attempts: they count toward `max_retries` (never more than
//!   `max_retries + 1` attempts in all), spend the retry budget (an empty
//!   budget means no hedge, not an error) and pass the breaker (a refused
//!   hedge is not started). No hedge while the breaker is half-open: a probe
//!   runs alone. The deadline covers every attempt.
//! - A `Transient` failure while others are in flight starts the next hedge
//!   at once (if one is left); with nothing in flight the normal retry
//!   schedule resumes (the backoff counts waits, not hedges). With no attempt
//!   left the call waits for those in flight: the first success wins, else
//!   the last failure ends the call.
//! - `Permanent` or `CallerFault` ends the call at once and drops the rest.
//!   `RetryAfter` stops further hedges for the call; the attempts in flight go
//!   on, and with none in flight the hint is waited out as a retry (a hint
//!   given beside others stays a floor for the wait if they fail too).
//! - One bulkhead permit covers all the call's attempts; `classify_ok` applies
//!   to each attempt's value.
//!
//! [`Hedge::at_percentile`] sets the delay from the latencies this hedge has
//! seen (every attempt that ended, and the time each dropped attempt had run,
//! so the estimate does not drift low), shared by the hedge's clones: it
//! hedges once it has [`min_samples`](Hedge::min_samples) samples, and before
//! that only with a [`fallback_delay`](Hedge::fallback_delay).
//!
//! # Examples
//!
//! A replica that hangs on the first request: the hedge, sent 150 ms later,
//! answers first.
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Hedge, SafeCall};
//! use tokio::time::{sleep, Instant};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy: SafeCall<std::io::Error> = SafeCall::default();
//! let hedge = Hedge::after(Duration::from_millis(150));
//! let started = Instant::now();
//! let mut latencies = [Duration::from_secs(5), Duration::from_millis(20)].into_iter();
//! let profile = policy
//!     .call(|| {
//!         let latency = latencies.next().unwrap_or_default();
//!         async move {
//!             sleep(latency).await;
//!             Ok::<_, std::io::Error>("profile")
//!         }
//!     })
//!     .hedge(&hedge)
//!     .await;
//! assert_eq!(profile.unwrap(), "profile");
//! assert_eq!(started.elapsed(), Duration::from_millis(170));
//! # }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;

mod tracker;

pub(crate) use tracker::LatencyTracker;

/// The most attempts a hedged call keeps in flight at once (gRPC's A6 caps
/// hedging at 5).
pub(crate) const MAX_IN_FLIGHT: usize = 5;

/// The window of latencies an [`Hedge::at_percentile`] hedge learns from.
const WINDOW: Duration = Duration::from_secs(10);

/// When a hedge is sent.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Trigger {
    /// After a fixed delay.
    After(Duration),
    /// After the `p`-quantile of the latencies seen.
    Percentile(f64),
}

/// When and how many backup attempts a call may start beside a slow one: see
/// the [module docs](self) for the rules.
///
/// Cheap to clone (an `Arc` around its latency tracker): clones share what
/// [`at_percentile`](Self::at_percentile) has learnt. A fixed
/// [`after`](Self::after) hedge has no tracker, so building one per call
/// costs nothing. Give one hedge to the
/// call sites of one operation on one dependency, so that the latencies it
/// learns are of one kind.
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | [`max_extra`](Self::max_extra) | 1: at most two attempts in flight |
/// | [`min_samples`](Self::min_samples) | 100 (for [`at_percentile`](Self::at_percentile)) |
/// | [`fallback_delay`](Self::fallback_delay) | none: no hedge before `min_samples` |
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::Hedge;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let fixed = Hedge::after(Duration::from_millis(150)).max_extra(2);
/// assert_eq!(fixed.delay(), Some(Duration::from_millis(150)));
///
/// let learnt = Hedge::at_percentile(0.95)
///     .min_samples(100)
///     .fallback_delay(Duration::from_millis(200));
/// // Nothing learnt yet: the fallback delay.
/// assert_eq!(learnt.delay(), Some(Duration::from_millis(200)));
/// assert_eq!(learnt.samples(), 0);
/// assert!(Hedge::try_at_percentile(1.5).is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct Hedge {
    trigger: Trigger,
    max_extra: u32,
    min_samples: u32,
    fallback_delay: Option<Duration>,
    /// Only a learning hedge has one (4.4 KB): a fixed hedge built per call
    /// allocates nothing.
    tracker: Option<Arc<LatencyTracker>>,
}

impl fmt::Debug for Hedge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hedge")
            .field("trigger", &self.trigger)
            .field("max_extra", &self.max_extra)
            .field("min_samples", &self.min_samples)
            .field("fallback_delay", &self.fallback_delay)
            .finish_non_exhaustive()
    }
}

impl Hedge {
    fn with(trigger: Trigger) -> Self {
        Self {
            trigger,
            max_extra: 1,
            min_samples: 100,
            fallback_delay: None,
            tracker: matches!(trigger, Trigger::Percentile(_))
                .then(|| Arc::new(LatencyTracker::new(WINDOW))),
        }
    }

    /// Hedges after a fixed `delay`: a backup attempt starts if the one in
    /// flight has not answered `delay` after it started. `Duration::ZERO`
    /// starts all `max_extra + 1` attempts at once.
    #[must_use]
    pub fn after(delay: Duration) -> Self {
        Self::with(Trigger::After(delay))
    }

    /// Hedges after the `p`-quantile of the latencies this hedge (and its
    /// clones) has seen over about the last 10 s: `0.95` sends a backup for
    /// the slowest 5 % of attempts. Before [`min_samples`](Self::min_samples)
    /// latencies it does not hedge, unless a
    /// [`fallback_delay`](Self::fallback_delay) is set.
    ///
    /// # Panics
    ///
    /// If `p` is not strictly between 0 and 1 (NaN included); see
    /// [`try_at_percentile`](Self::try_at_percentile).
    #[track_caller]
    #[must_use]
    pub fn at_percentile(p: f64) -> Self {
        match Self::try_at_percentile(p) {
            Ok(hedge) => hedge,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`at_percentile`](Self::at_percentile), refusing a bad `p`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for the field `hedge.at_percentile` if `p` is not
    /// strictly between 0 and 1 (NaN included).
    pub fn try_at_percentile(p: f64) -> Result<Self, ConfigError> {
        if p > 0.0 && p < 1.0 {
            Ok(Self::with(Trigger::Percentile(p)))
        } else {
            Err(ConfigError::new(
                "hedge.at_percentile",
                format!("must be strictly between 0 and 1, got {p}"),
            ))
        }
    }

    /// At most `n` backup attempts in flight beside the first (default 1).
    /// `0` turns hedging off; values above 4 are treated as 4 (at most five
    /// attempts in flight, as gRPC's A6 caps them). Whatever `n`, a call never
    /// makes more than `max_retries + 1` attempts, hedges included.
    #[must_use]
    pub fn max_extra(mut self, n: u32) -> Self {
        self.max_extra = n;
        self
    }

    /// How many latencies [`at_percentile`](Self::at_percentile) needs before
    /// it trusts its quantile (default 100). No effect on
    /// [`after`](Self::after).
    #[must_use]
    pub fn min_samples(mut self, n: u32) -> Self {
        self.min_samples = n;
        self
    }

    /// The delay [`at_percentile`](Self::at_percentile) hedges after while it
    /// has fewer than [`min_samples`](Self::min_samples) latencies (default
    /// none: no hedge until then). No effect on [`after`](Self::after).
    #[must_use]
    pub fn fallback_delay(mut self, delay: Duration) -> Self {
        self.fallback_delay = Some(delay);
        self
    }

    /// The most backup attempts in flight beside the first: `max_extra`,
    /// capped at 4.
    #[must_use]
    pub fn extra(&self) -> u32 {
        self.max_extra.min((MAX_IN_FLIGHT - 1) as u32)
    }

    /// The hedge delay a call starting now would use; `None` when it would not
    /// hedge (an [`at_percentile`](Self::at_percentile) hedge that has not
    /// learnt enough and has no fallback delay). Reads the clock.
    #[must_use]
    pub fn delay(&self) -> Option<Duration> {
        self.delay_at(Instant::now())
    }

    /// How many latencies an [`at_percentile`](Self::at_percentile) hedge holds
    /// in its window now (always 0 for [`after`](Self::after): a fixed delay
    /// records nothing). Reads the clock (a learning hedge only).
    #[must_use]
    pub fn samples(&self) -> u64 {
        self.tracker
            .as_ref()
            .map_or(0, |t| t.samples(Instant::now()))
    }

    /// The delay of a fixed hedge ([`after`](Self::after)), read without the
    /// clock; `None` for a learning one.
    #[inline]
    pub(crate) fn fixed_delay(&self) -> Option<Duration> {
        match self.trigger {
            Trigger::After(d) => Some(d),
            Trigger::Percentile(_) => None,
        }
    }

    /// The hedge delay at `now`.
    pub(crate) fn delay_at(&self, now: Instant) -> Option<Duration> {
        match self.trigger {
            Trigger::After(d) => Some(d),
            Trigger::Percentile(p) => self
                .tracker
                .as_ref()
                .and_then(|t| t.quantile(p, self.min_samples, now))
                .or(self.fallback_delay),
        }
    }

    /// Whether the delay comes from the latencies seen (then attempts record
    /// theirs).
    #[inline]
    pub(crate) fn learns(&self) -> bool {
        matches!(self.trigger, Trigger::Percentile(_))
    }

    /// Records an attempt's latency (an ended attempt's, or how long a dropped
    /// one had run), for [`at_percentile`](Self::at_percentile).
    #[inline]
    pub(crate) fn record(&self, latency: Duration, now: Instant) {
        if let Some(t) = &self.tracker {
            t.record(latency, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_percentile_outside_zero_one_is_refused_naming_the_field() {
        for p in [0.0, 1.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
            let e = Hedge::try_at_percentile(p).unwrap_err();
            assert_eq!(e.field(), "hedge.at_percentile", "{p}");
            assert!(e.rule().contains("between 0 and 1"), "{}", e.rule());
        }
        assert!(Hedge::try_at_percentile(0.5).is_ok());
    }

    #[test]
    #[should_panic(expected = "hedge.at_percentile")]
    fn at_percentile_panics_on_what_try_refuses() {
        let _ = Hedge::at_percentile(1.0);
    }

    #[test]
    fn max_extra_above_four_is_four() {
        assert_eq!(Hedge::after(Duration::ZERO).extra(), 1);
        assert_eq!(Hedge::after(Duration::ZERO).max_extra(0).extra(), 0);
        assert_eq!(Hedge::after(Duration::ZERO).max_extra(4).extra(), 4);
        assert_eq!(Hedge::after(Duration::ZERO).max_extra(40).extra(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn clones_share_what_the_percentile_learns() {
        let hedge = Hedge::at_percentile(0.5).min_samples(4);
        let clone = hedge.clone();
        assert_eq!(hedge.delay(), None, "nothing learnt, no fallback");
        let now = Instant::now();
        for ms in [10, 20, 30, 40] {
            clone.record(Duration::from_millis(ms), now);
        }
        assert_eq!(hedge.samples(), 4);
        // The p50 (20 ms) rounded up to its histogram bucket's largest value:
        // never below, less than 12.5 % above.
        let delay = hedge.delay().expect("learnt");
        assert!(
            delay >= Duration::from_millis(20) && delay < Duration::from_micros(22_500),
            "{delay:?}"
        );
    }
}
