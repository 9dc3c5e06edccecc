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
use crate::breaker::permit::{Kind, Permit};
use crate::breaker::shared::{Core, Inner, KeyLabel, Moved, Unkeyed, generation_of};
use crate::breaker::state::{
    Admission, COOLING, Change, FLAGS_MASK, FORCED, OPEN_BITS, PHASE_MASK, REMOTE,
};
use crate::breaker::{
    BreakerConfig, BreakerMode, BreakerSnapshot, BreakerState, RefusalCause, Rejected, Transition,
};
use crate::budget::BudgetState;
use crate::sync::{Ordering, lock};

/// A circuit breaker: a cheap handle (an `Arc` inside) shared by every call to
/// one dependency, or to one tenant of it.
///
/// Build one with [`Breaker::new`], or get one per key from a
/// [`BreakerRegistry`](crate::BreakerRegistry). Ask it before each attempt
/// with [`try_acquire`](Self::try_acquire) and record the attempt's
/// [`Outcome`](crate::Outcome) on the returned [`Permit`]. See the [module docs](crate::breaker)
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
    pub(super) fn emit(&self, c: Change) {
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
