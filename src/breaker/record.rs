//! What a permit's end does to its breaker: a success (the hot path, kept
//! small and lock-free), a counted failure, a probe's result, a server's
//! retry-after cool-down.
//!
//! # Examples
//!
//! ```
//! use safecall::{Breaker, BreakerConfig, BreakerState, Outcome};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(BreakerConfig::default().consecutive_failures(2));
//! breaker.try_acquire().unwrap().record(Outcome::Failure);
//! breaker.try_acquire().unwrap().record(Outcome::Success); // ends the streak
//! breaker.try_acquire().unwrap().record(Outcome::Failure);
//! assert_eq!(breaker.state(), BreakerState::Closed, "one failure in a row, not two");
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::config::RateRule;
use crate::breaker::permit::{Kind, Outcome};
use crate::breaker::shared::{Core, Ext, generation_of};
use crate::breaker::state::{PHASE_MASK, Phase, ProbeResult};
use crate::breaker::window::Window;
use crate::breaker::{Breaker, BreakerState, TransitionCause};
use crate::sync::{Ordering, lock};

impl Breaker {
    /// Carry out a permit's end: `outcome` is `None` when it was dropped
    /// without a record.
    pub(crate) fn finish(&self, kind: Kind, started: Option<Instant>, outcome: Option<Outcome>) {
        let core = self.core();
        let s = &*core.settings;
        let failed = match outcome {
            Some(Outcome::Success) => match (s.slow_call, started) {
                (Some(limit), Some(t0)) => Instant::now().saturating_duration_since(t0) >= limit,
                _ => false,
            },
            Some(Outcome::Failure) => true,
            Some(Outcome::RetryAfter(d)) => {
                if matches!(kind, Kind::Probe { .. }) {
                    self.release_probe(kind);
                }
                if s.retry_after_cooldown && !matches!(kind, Kind::Passthrough) {
                    self.cool_down(d);
                }
                return;
            }
            Some(Outcome::Ignored) | None => {
                if matches!(kind, Kind::Probe { .. }) {
                    self.release_probe(kind);
                }
                return;
            }
        };
        match kind {
            Kind::Passthrough | Kind::Done => {}
            Kind::Plain { generation } => {
                if failed {
                    self.record_failure(Some(generation));
                } else {
                    self.record_success(Some(generation));
                }
            }
            Kind::Shadow => {
                if failed {
                    self.record_failure(None);
                } else {
                    self.record_success(None);
                }
            }
            Kind::Probe { generation, ticket } => {
                let result = if failed {
                    core.bump_consecutive_stats(Instant::now());
                    ProbeResult::Failure
                } else {
                    core.clear_consecutive(None);
                    ProbeResult::Success
                };
                self.probe_done(generation, ticket, result);
            }
        }
    }

    /// A success of a call admitted while closed in `generation` (`None`: a
    /// metrics-only shadow call). A success can still trip the failure rate:
    /// it may be the call that brings the window to `minimum_calls`.
    ///
    /// A success of an earlier generation adds nothing to the current one:
    /// it neither ends its streak of failures nor lands in its window. (The
    /// window check is lock-free: a success checked in the instant before the
    /// breaker closes may still be counted in the new window; it can only
    /// dilute the failure rate by one call, never count as a failure.)
    ///
    /// The common case is kept small enough to inline: an extension already
    /// built, no streak to end, and a time window (the default) that counts
    /// the success as pending, or no window. Everything else is out of line.
    #[inline]
    pub(crate) fn record_success(&self, generation: Option<u32>) {
        let core = self.core();
        let Some(ext) = core.ext.get() else {
            // No extension: no streak to end, no window yet.
            if !matches!(core.settings.rate, RateRule::None) {
                self.record_success_slow(generation);
            }
            return;
        };
        if ext.consecutive_count() != 0 {
            self.end_streak(generation);
        }
        match &ext.window {
            Window::None => {}
            Window::Time(w) => {
                if generation.is_some_and(|g| generation_of(core.word.load(Ordering::Relaxed)) != g)
                {
                    return;
                }
                // Counted as pending; the clock is read only when the window
                // may hold a failure, or for every 16th success.
                if w.defer_success() {
                    self.settle_success(ext, generation);
                }
            }
            Window::Count(_) => self.count_success(ext, generation),
        }
    }

    /// End the streak of failures of `generation` (out of line: rare on the
    /// success path).
    #[cold]
    #[inline(never)]
    fn end_streak(&self, generation: Option<u32>) {
        self.core().clear_consecutive(generation);
    }

    /// [`record_success`](Self::record_success) of a breaker with a
    /// failure-rate rule but no extension yet (no streak to end).
    #[cold]
    #[inline(never)]
    fn record_success_slow(&self, generation: Option<u32>) {
        let core = self.core();
        if let Some(g) = generation {
            if generation_of(core.word.load(Ordering::Relaxed)) != g {
                return;
            }
        }
        let ext = core.ext(Instant::now());
        match &ext.window {
            Window::None => {}
            Window::Time(w) => {
                if w.defer_success() {
                    self.settle_success(ext, generation);
                }
            }
            Window::Count(_) => self.count_success(ext, generation),
        }
    }

    /// A success into a count window (it needs no time; the window drops one
    /// of another generation under its lock).
    #[inline(never)]
    fn count_success(&self, ext: &Ext, generation: Option<u32>) {
        let core = self.core();
        let (RateRule::Time { ratio, .. } | RateRule::Count { ratio, .. }) = core.settings.rate
        else {
            return;
        };
        if let Some(g) = generation {
            if generation_of(core.word.load(Ordering::Relaxed)) != g {
                return;
            }
        }
        ext.window.record(0, false, generation);
        // Summing the window is needed only if it may hold a failure: a
        // success can then be the call that reaches `minimum_calls`.
        if let Some(generation) = generation {
            if ext.window.may_hold_failures(0)
                && ext
                    .window
                    .stats(0)
                    .trips(ratio, core.settings.minimum_calls)
            {
                self.trip(generation, TransitionCause::FailureRate, None);
            }
        }
    }

    /// Date a time window's pending successes (this one included) at a clock
    /// reading, and trip on the failure rate if the window may hold a
    /// failure and its counts now reach the rule.
    #[cold]
    #[inline(never)]
    fn settle_success(&self, ext: &Ext, generation: Option<u32>) {
        let core = self.core();
        let now = Instant::now();
        let t = ext.nanos(now);
        ext.window.settle(t);
        let (RateRule::Time { ratio, .. } | RateRule::Count { ratio, .. }) = core.settings.rate
        else {
            return;
        };
        if let Some(generation) = generation {
            if ext.window.may_hold_failures(t)
                && ext
                    .window
                    .stats(t)
                    .trips(ratio, core.settings.minimum_calls)
            {
                self.trip(generation, TransitionCause::FailureRate, Some(now));
            }
        }
    }

    #[cold]
    fn trip(&self, generation: u32, cause: TransitionCause, now: Option<Instant>) {
        let core = self.core();
        let s = &*core.settings;
        let w = core.word.load(Ordering::Acquire);
        if w & PHASE_MASK != Phase::Closed.bits() || generation_of(w) != generation {
            return; // stale: statistics only
        }
        let now = now.unwrap_or_else(Instant::now);
        let ext = core.ext(now);
        let (change, moved) = {
            let mut m = lock(&ext.machine);
            let c = m.trip(s, generation, cause, now, s.next_unit());
            let moved = core.publish(ext, &m, now);
            (c, moved)
        };
        self.count(moved);
        if let Some(c) = change {
            self.emit(c);
        }
    }

    /// A counted failure of a call admitted while closed in `generation`
    /// (`None`: a metrics-only shadow call, which cannot trip anything).
    ///
    /// Counted under the machine's lock, and only if `generation` is still
    /// the current closed one: the lock every transition (and so every clear
    /// of the streak and the window) is made under, so a stale failure can
    /// never land in the next generation's count.
    #[cold]
    fn record_failure(&self, generation: Option<u32>) {
        let core = self.core();
        let s = &*core.settings;
        let now = Instant::now();
        let ext = core.ext(now);
        let t = ext.nanos(now);
        let Some(generation) = generation else {
            core.bump_consecutive_stats(now);
            ext.window.record(t, true, None);
            return;
        };
        let (change, moved) = {
            let mut m = lock(&ext.machine);
            if !m.is_closed_in(generation) {
                return; // stale: it adds nothing to the current generation
            }
            let n = Core::bump_consecutive(ext, generation);
            ext.window.record(t, true, Some(generation));
            let cause = if n >= s.consecutive {
                Some(TransitionCause::ConsecutiveFailures)
            } else {
                match s.rate {
                    RateRule::Time { ratio, .. } | RateRule::Count { ratio, .. }
                        if ext.window.stats(t).trips(ratio, s.minimum_calls) =>
                    {
                        Some(TransitionCause::FailureRate)
                    }
                    _ => None,
                }
            };
            let Some(cause) = cause else {
                return;
            };
            let c = m.trip(s, generation, cause, now, s.next_unit());
            let moved = core.publish(ext, &m, now);
            (c, moved)
        };
        self.count(moved);
        if let Some(c) = change {
            self.emit(c);
        }
    }

    fn probe_done(&self, generation: u32, ticket: u32, result: ProbeResult) {
        let core = self.core();
        let s = &*core.settings;
        let now = Instant::now();
        let ext = core.ext(now);
        let (change, moved) = {
            let mut m = lock(&ext.machine);
            let c = m.probe_done(s, generation, ticket, result, now, s.next_unit());
            if c.is_some_and(|c| c.to == BreakerState::Closed) {
                ext.window.clear(m.generation());
            }
            let moved = core.publish(ext, &m, now);
            (c, moved)
        };
        self.count(moved);
        if let Some(c) = change {
            self.emit(c);
        }
    }

    fn release_probe(&self, kind: Kind) {
        if let Kind::Probe { generation, ticket } = kind {
            self.probe_done(generation, ticket, ProbeResult::Released);
        }
    }

    /// Refuse this breaker's calls for `d` (a server's retry-after hint), at
    /// most [`max_cooldown`](BreakerConfig::max_cooldown): the hint is the
    /// server's word, and an unbounded one would lock the key out for as long
    /// as the server liked.
    fn cool_down(&self, hint: Duration) {
        let core = self.core();
        let d = hint.min(core.settings.max_cooldown);
        if d.is_zero() {
            return;
        }
        let now = Instant::now();
        let Some(until) = now.checked_add(d) else {
            return;
        };
        let ext = core.ext(now);
        let moved = {
            let mut m = lock(&ext.machine);
            m.cool_down(until, hint > d);
            core.publish(ext, &m, now)
        };
        self.count(moved);
        #[cfg(feature = "metrics")]
        core.settings
            .metrics
            .event(self.0.key.as_any(), crate::metrics::Event::CooledDown);
        self.feed_cool_down(d, hint > d);
        tracing::debug!(
            target: "safecall::breaker",
            key = ?self.0.key.label(),
            cooldown = ?d,
            ?hint,
            "circuit breaker cooling down on the server's retry-after hint"
        );
    }
}
