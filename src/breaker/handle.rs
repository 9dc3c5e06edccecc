//! [`Breaker`]: the handle, its lock-free fast paths, and the thin shell that
//! carries out the pure machine's decisions.
//!
//! # Examples
//!
//! ```
//! use safecall::{Breaker, BreakerConfig, BreakerState};
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(BreakerConfig::default());
//! breaker.force_open(); // isolate a dependency by hand
//! assert_eq!(breaker.state(), BreakerState::Open);
//! breaker.reset();
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! # }
//! ```
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;
use crate::breaker::config::RateRule;
use crate::breaker::permit::{Kind, Outcome, Permit};
use crate::breaker::shared::{Core, Ext, Inner, KeyLabel, Moved, Unkeyed, generation_of};
use crate::breaker::state::{
    Admission, COOLING, Change, FLAGS_MASK, FORCED, OPEN_BITS, PHASE_MASK, Phase, ProbeResult,
    REMOTE,
};
use crate::breaker::window::Window;
use crate::breaker::{
    BreakerConfig, BreakerMode, BreakerSnapshot, BreakerState, RefusalCause, Rejected, Transition,
    TransitionCause,
};
use crate::budget::BudgetState;
use crate::sync::{Ordering, lock};

/// A circuit breaker: a cheap handle (an `Arc` inside) shared by every call to
/// one dependency, or to one tenant of it.
///
/// Build one with [`Breaker::new`], or get one per key from a
/// [`BreakerRegistry`](crate::BreakerRegistry). Ask it before each attempt
/// with [`try_acquire`](Self::try_acquire) and record the attempt's
/// [`Outcome`] on the returned [`Permit`]. See the [module docs](crate::breaker)
/// for the states and rules.
///
/// # Examples
///
/// ```
/// use safecall::{Breaker, BreakerConfig, Outcome, Rejected};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// # async fn send() -> Result<(), std::io::Error> { Ok(()) }
/// let breaker = Breaker::new(BreakerConfig::default());
///
/// match breaker.try_acquire() {
///     Ok(permit) => match send().await {
///         Ok(()) => permit.record(Outcome::Success),
///         Err(_) => permit.record(Outcome::Failure),
///     },
///     Err(refused) => eprintln!("not calling: {refused}"),
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Breaker(pub(crate) Arc<Inner<dyn KeyLabel>>);

impl fmt::Debug for Breaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("key", self.0.key.label())
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// # Building
impl Breaker {
    /// A standalone breaker with `config`.
    ///
    /// # Panics
    ///
    /// If [`try_new`](Self::try_new) refuses `config`.
    #[must_use]
    pub fn new(config: BreakerConfig) -> Self {
        match Self::try_new(config) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// A standalone breaker with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field if `config` breaks a rule: a ratio
    /// outside (0, 1] or NaN; a zero window, open duration, probe lease,
    /// maximum cool-down or slow-call threshold; zero `consecutive_failures`, `minimum_calls`,
    /// `window_buckets`, `half_open_probes` or `successes_to_close`; a growth
    /// factor below 1 or not finite, or a growth cap below the open duration;
    /// a jitter outside [0, 1].
    pub fn try_new(config: BreakerConfig) -> Result<Self, ConfigError> {
        let settings = Arc::new(config.validate()?);
        Ok(Self(Arc::new(Inner {
            core: Core::new(settings),
            key: Unkeyed,
        })))
    }

    pub(crate) fn core(&self) -> &Core {
        &self.0.core
    }

    /// This breaker's own retry budget ([`BreakerConfig::retry_budget`]), if
    /// any. Reads the clock only the first time, to build the extension.
    #[inline]
    pub(crate) fn retry_budget(&self) -> Option<&BudgetState> {
        let core = self.core();
        core.settings.retry_budget?;
        let ext = match core.ext.get() {
            Some(ext) => ext,
            None => core.ext(Instant::now()),
        };
        ext.budget.as_deref()
    }
}

/// # Admission
impl Breaker {
    /// Ask to run one attempt.
    ///
    /// Never blocks and never sleeps. Closed: one atomic load, no clock read
    /// (unless a slow-call threshold is set). Open: refused with the time
    /// until a probe, reading the clock once. When the open period has passed
    /// the caller becomes a half-open probe (at most `half_open_probes` at
    /// once). In [`BreakerMode::Disabled`] and [`BreakerMode::MetricsOnly`]
    /// this never refuses.
    ///
    /// # Errors
    ///
    /// [`Rejected`] while the breaker refuses calls: open, forced open,
    /// cooling down after a server's retry-after hint, or half-open with every
    /// probe slot taken.
    #[inline]
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let core = self.core();
        let w = core.word.load(Ordering::Acquire);
        if w & FLAGS_MASK == 0 && core.settings.mode == BreakerMode::Enabled {
            let started = core.settings.slow_call.map(|_| Instant::now());
            return Ok(Permit::new(
                self,
                Kind::Plain {
                    generation: generation_of(w),
                },
                started,
            ));
        }
        self.acquire_open(w)
    }

    /// Not plainly closed: an enabled breaker that is forced open, or within
    /// its open period or a cool-down, refuses here without the lock, reading
    /// the clock once (none for a forced open). Everything else (other modes,
    /// another replica's hold, half-open, a period that has ended) goes on to
    /// [`acquire_slow`](Self::acquire_slow) with that reading.
    #[inline(never)]
    fn acquire_open(&self, w: u64) -> Result<Permit<'_>, Rejected> {
        let core = self.core();
        let s = &*core.settings;
        if s.mode != BreakerMode::Enabled {
            return self.acquire_slow(w, None);
        }
        if w & FORCED != 0 {
            return Err(Rejected::new(s.open_duration, RefusalCause::ForcedOpen));
        }
        let open = w & PHASE_MASK == OPEN_BITS;
        // Another replica's hold: the machine names the refusal's cause.
        if w & REMOTE == 0 && (open || w & COOLING != 0) {
            if let Some(ext) = core.ext.get() {
                let until = ext.refuse_until.load(Ordering::Acquire);
                let now = Instant::now();
                let t = ext.nanos(now);
                if t < until {
                    let cause = if open {
                        RefusalCause::Open
                    } else {
                        RefusalCause::CoolingDown
                    };
                    return Err(Rejected::new(Duration::from_nanos(until - t), cause));
                }
                return self.acquire_slow(w, Some(now));
            }
        }
        self.acquire_slow(w, None)
    }

    /// Everything [`acquire_open`](Self::acquire_open) does not settle, at
    /// `now` (read here if `None`).
    #[cold]
    #[inline(never)]
    fn acquire_slow(&self, w: u64, now: Option<Instant>) -> Result<Permit<'_>, Rejected> {
        let core = self.core();
        let s = &*core.settings;
        match s.mode {
            BreakerMode::Disabled => return Ok(Permit::new(self, Kind::Passthrough, None)),
            BreakerMode::MetricsOnly if w & FLAGS_MASK == 0 => {
                let started = s.slow_call.map(|_| Instant::now());
                let kind = Kind::Plain {
                    generation: generation_of(w),
                };
                return Ok(Permit::new(self, kind, started));
            }
            _ => {}
        }
        let now = now.unwrap_or_else(Instant::now);
        let started = s.slow_call.map(|_| now);
        let ext = core.ext(now);
        let refuse = |retry_in: Duration, cause: RefusalCause| {
            if s.mode == BreakerMode::MetricsOnly {
                Ok(Permit::new(self, Kind::Shadow, started))
            } else {
                Err(Rejected::new(retry_in, cause))
            }
        };
        // Lock-free refusal: forced open, or within the open period or a
        // cool-down (causes in the order of `Machine::refusal_cause`).
        if w & FORCED != 0 {
            return refuse(s.open_duration, RefusalCause::ForcedOpen);
        }
        let open = w & PHASE_MASK == OPEN_BITS;
        // Another replica's hold: the machine names the refusal's cause.
        if w & REMOTE == 0 && (open || w & COOLING != 0) {
            let until = ext.refuse_until.load(Ordering::Acquire);
            let t = ext.nanos(now);
            if t < until {
                let cause = if open {
                    RefusalCause::Open
                } else {
                    RefusalCause::CoolingDown
                };
                return refuse(Duration::from_nanos(until - t), cause);
            }
        }
        let ((admission, change), moved) = {
            let mut m = lock(&ext.machine);
            let r = m.acquire(s, now);
            let moved = core.publish(ext, &m, now);
            (r, moved)
        };
        self.count(moved);
        if let Some(c) = change {
            self.emit(c);
        }
        match admission {
            Admission::Plain { generation } => {
                Ok(Permit::new(self, Kind::Plain { generation }, started))
            }
            Admission::Probe { generation, ticket } => Ok(Permit::new(
                self,
                Kind::Probe { generation, ticket },
                started,
            )),
            Admission::Reject { retry_in, cause } => refuse(retry_in, cause),
        }
    }

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

    /// Count a move between the gauge's states in the registry's metrics
    /// (nothing without the `metrics` feature). Never called with the lock
    /// held.
    #[inline(always)]
    pub(super) fn count(&self, _moved: Moved) {
        #[cfg(feature = "metrics")]
        if let Some((from, to)) = _moved {
            self.core()
                .settings
                .metrics
                .moved(self.0.key.as_any(), from, to);
        }
    }

    /// Publish a transition: a `tracing` event naming the key, the
    /// `safecall.events` counter (feature `metrics`), then the listener.
    /// Never called with the lock held.
    fn emit(&self, c: Change) {
        let s = &*self.core().settings;
        let key = self.0.key.label();
        #[cfg(feature = "metrics")]
        {
            use crate::metrics::Event;
            let event = match c.to {
                BreakerState::Open => Event::CircuitOpened,
                BreakerState::HalfOpen => Event::CircuitHalfOpened,
                BreakerState::Closed => Event::CircuitClosed,
            };
            s.metrics.event(self.0.key.as_any(), event);
        }
        let metrics_only = s.mode == BreakerMode::MetricsOnly;
        if c.to == BreakerState::Open {
            if metrics_only {
                tracing::warn!(
                    target: "safecall::breaker", key = ?key, from = %c.from, cause = %c.cause,
                    open_for = ?c.open_for, generation = c.generation,
                    "circuit breaker would have opened (metrics-only mode: nothing refused)"
                );
            } else {
                tracing::warn!(
                    target: "safecall::breaker", key = ?key, from = %c.from, cause = %c.cause,
                    open_for = ?c.open_for, generation = c.generation,
                    "circuit breaker opened"
                );
            }
        } else {
            tracing::info!(
                target: "safecall::breaker", key = ?key, from = %c.from, to = %c.to,
                cause = %c.cause, generation = c.generation, metrics_only,
                "circuit breaker transition"
            );
        }
        if let Some(listener) = &s.listener {
            listener(&Transition {
                key,
                from: c.from,
                to: c.to,
                cause: c.cause,
                generation: c.generation,
                open_for: c.open_for,
                metrics_only,
                key_any: self.0.key.as_any(),
            });
        }
        self.feed_transition(&c);
    }
}

/// # State and manual control
impl Breaker {
    /// The state now. Reports [`BreakerState::HalfOpen`] as soon as the open
    /// period has passed (the move itself happens on the next call), and
    /// [`BreakerState::Open`] while a retry-after cool-down refuses calls.
    /// Reads no clock while closed.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.core().state()
    }

    /// The state and statistics now, for a health report.
    #[must_use]
    pub fn snapshot(&self) -> BreakerSnapshot<()> {
        let (snapshot, moved) = self.core().snapshot(());
        self.count(moved);
        snapshot
    }

    /// Open the breaker by hand (isolate a tenant). It stays open, refusing
    /// every call, until [`reset`](Self::reset); probes in flight become
    /// stale.
    pub fn force_open(&self) {
        let core = self.core();
        let now = Instant::now();
        let ext = core.ext(now);
        let (change, moved) = {
            let mut m = lock(&ext.machine);
            let c = m.force_open(now);
            let moved = core.publish(ext, &m, now);
            (c, moved)
        };
        self.count(moved);
        if let Some(c) = change {
            self.emit(c);
        }
    }

    /// Back to closed: counts, window, open-time growth, cool-down and a
    /// forced open cleared. Calls in flight become stale (their outcomes
    /// update statistics only).
    pub fn reset(&self) {
        let core = self.core();
        let now = Instant::now();
        let ext = core.ext(now);
        let (change, moved) = {
            let mut m = lock(&ext.machine);
            let c = m.reset();
            ext.window.clear(m.generation());
            let moved = core.publish(ext, &m, now);
            (c, moved)
        };
        self.count(moved);
        if let Some(c) = change {
            self.emit(c);
        }
    }

    /// Whether `self` and `other` are handles to the same breaker.
    #[must_use]
    pub fn ptr_eq(&self, other: &Breaker) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

#[cfg(all(test, not(safecall_loom)))]
mod tests {
    use super::*;

    #[test]
    fn breaker_handle_is_small_send_sync_and_cheap() {
        fn assert_send_sync<T: Send + Sync + Clone + fmt::Debug>() {}
        assert_send_sync::<Breaker>();
        fn assert_send<T: Send>() {}
        assert_send::<Permit<'static>>();
        // An idle breaker of a registry: the core, without its lazily built
        // extension.
        assert!(
            std::mem::size_of::<Core>() <= 32,
            "{}",
            std::mem::size_of::<Core>()
        );
    }
}
