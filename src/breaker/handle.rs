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
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;
use crate::breaker::config::{RateRule, Settings};
use crate::breaker::permit::{Kind, Outcome, Permit};
use crate::breaker::state::{
    Admission, COOLING, Change, FLAGS_MASK, FORCED, GEN_MASK, GEN_SHIFT, MACHINE_BITS, Machine,
    OPEN_BITS, PHASE_MASK, Phase, ProbeResult,
};
use crate::breaker::window::Window;
use crate::breaker::{
    BreakerConfig, BreakerMode, BreakerSnapshot, BreakerState, RefusalCause, Rejected, Transition,
    TransitionCause,
};
use crate::budget::BudgetState;
use crate::sync::{AtomicU32, AtomicU64, Mutex, Ordering, lock};

const SEEN_SHIFT: u32 = 32;

fn generation_of(w: u64) -> u32 {
    (w >> GEN_SHIFT) as u32 & GEN_MASK
}

/// What a breaker knows of its key: enough to name it in events.
pub(crate) trait KeyLabel: Send + Sync + 'static {
    fn label(&self) -> &dyn fmt::Debug;
}

impl<K: fmt::Debug + Send + Sync + 'static> KeyLabel for K {
    fn label(&self) -> &dyn fmt::Debug {
        self
    }
}

/// The key of a breaker built outside a registry.
pub(crate) struct Unkeyed;

impl fmt::Debug for Unkeyed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unkeyed")
    }
}

/// The shared state of a breaker, with its key last so that an
/// `Arc<Inner<K>>` held by a registry coerces to the `Arc<Inner<dyn KeyLabel>>`
/// of a [`Breaker`] without copying the key.
pub(crate) struct Inner<K: ?Sized> {
    pub(crate) core: Core,
    pub(crate) key: K,
}

/// Everything but the key. Small on purpose (one registry holds a million):
/// the window, the machine and its mutex live in [`Ext`], allocated on the
/// first outcome that needs them.
pub(crate) struct Core {
    /// `seen:32 | generation:24 | flags:6 | phase:2` (see `state`): what
    /// the fast paths read. `seen` is the registry's coarse last-use stamp,
    /// kept here rather than in a field of its own to keep an idle breaker at
    /// 32 bytes.
    word: AtomicU64,
    settings: Arc<Settings>,
    ext: OnceLock<Box<Ext>>,
}

struct Ext {
    /// Time zero of the `*_nanos` values below.
    base: Instant,
    /// Until when a call can be refused without the lock (nanos since base;
    /// 0 = nothing scheduled).
    refuse_until: AtomicU64,
    /// Counted failures in a row. Lives here: a breaker without an
    /// extension has recorded no failure since it was built or compacted.
    consecutive: AtomicU32,
    window: Window,
    machine: Mutex<Machine>,
    /// This breaker's own retry budget, if its config asks for one (boxed:
    /// a breaker without one pays a pointer, not the budget's window).
    budget: Option<Box<BudgetState>>,
}

impl Ext {
    fn new(s: &Settings, now: Instant, generation: u32) -> Self {
        Self {
            base: now,
            refuse_until: AtomicU64::new(0),
            consecutive: AtomicU32::new(0),
            window: Window::new(s.rate),
            machine: Mutex::new(Machine::new(now, generation)),
            budget: s.retry_budget.and_then(|b| b.state()).map(Box::new),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        // u64 arithmetic: `Duration::as_nanos` is a u128, costly on this path.
        let d = at.saturating_duration_since(self.base);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }
}

impl Core {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        let core = Self {
            word: AtomicU64::new(0),
            settings,
            ext: OnceLock::new(),
        };
        // loom cannot model `OnceLock`; build the extension before any thread
        // exists so the model only sees loom's primitives.
        #[cfg(safecall_loom)]
        let _ = core.ext(Instant::now());
        core
    }

    fn ext(&self, now: Instant) -> &Ext {
        self.ext.get_or_init(|| {
            let generation = generation_of(self.word.load(Ordering::Acquire));
            Box::new(Ext::new(&self.settings, now, generation))
        })
    }

    /// The registry's last-use stamp.
    pub(crate) fn seen(&self) -> u32 {
        (self.word.load(Ordering::Relaxed) >> SEEN_SHIFT) as u32
    }

    /// Set the registry's last-use stamp.
    pub(crate) fn set_seen(&self, stamp: u32) {
        let _ = self
            .word
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some((w & MACHINE_BITS) | (u64::from(stamp) << SEEN_SHIFT))
            });
    }

    /// Drop the extension of an idle closed breaker that no one else can
    /// reach (`&mut`: the registry holds the only handle) once it holds
    /// nothing a fresh one would not: closed, nothing pending, an empty
    /// window. Its consecutive-failure count and generation are kept in the
    /// core. Returns whether it was dropped.
    ///
    /// `idle_for` is how long the registry has not handed the breaker out:
    /// successes still pending (not yet dated, see the `window` module) came
    /// before that, so they are dated no later than `now - idle_for`.
    #[cfg(not(safecall_loom))]
    pub(crate) fn compact(&mut self, now: Instant, idle_for: Duration) -> bool {
        let Some(ext) = self.ext.get() else {
            return false;
        };
        let last_use = now.checked_sub(idle_for).unwrap_or(ext.base);
        ext.window.settle(ext.nanos(last_use));
        let pristine = lock(&ext.machine).is_pristine(now)
            && ext.consecutive.load(Ordering::Relaxed) == 0
            && ext.window.stats(ext.nanos(now)).calls == 0
            && ext.budget.as_deref().is_none_or(BudgetState::is_idle);
        if pristine {
            self.ext = OnceLock::new();
            self.word.fetch_and(!FLAGS_MASK, Ordering::AcqRel);
        }
        pristine
    }

    /// loom cannot model the extension's `OnceLock`: never compact.
    #[cfg(safecall_loom)]
    pub(crate) fn compact(&mut self, _now: Instant, _idle_for: Duration) -> bool {
        false
    }

    /// Whether a registry may drop this breaker: closed, not forced, not
    /// cooling down. (Handles and permits are checked by the registry.)
    pub(crate) fn is_idle_closed(&self) -> bool {
        self.settings.mode == BreakerMode::Disabled
            || self.word.load(Ordering::Acquire) & FLAGS_MASK == 0
    }

    /// Mirror the machine into the atomics. Called with the lock held.
    fn publish(&self, ext: &Ext, m: &Machine, now: Instant) {
        let until = m.refuse_until(now).map_or(0, |u| ext.nanos(u).max(1));
        ext.refuse_until.store(until, Ordering::Release);
        let low = m.word(now);
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some((w & !MACHINE_BITS) | low)
            });
    }

    fn state(&self) -> BreakerState {
        if self.settings.mode == BreakerMode::Disabled {
            return BreakerState::Closed;
        }
        let w = self.word.load(Ordering::Acquire);
        if w & FLAGS_MASK == 0 {
            return BreakerState::Closed;
        }
        let now = Instant::now();
        let ext = self.ext(now);
        let refusing = ext.nanos(now) < ext.refuse_until.load(Ordering::Acquire);
        match w & PHASE_MASK {
            _ if w & FORCED != 0 => BreakerState::Open,
            _ if refusing => BreakerState::Open,
            OPEN_BITS => BreakerState::HalfOpen,
            p if p == Phase::HalfOpen.bits() => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

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
    /// outside (0, 1] or NaN; a zero window, open duration, probe lease or
    /// slow-call threshold; zero `consecutive_failures`, `minimum_calls`,
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
            Some(ext) => &**ext,
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
        self.acquire_slow(w)
    }

    #[cold]
    #[inline(never)]
    fn acquire_slow(&self, w: u64) -> Result<Permit<'_>, Rejected> {
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
        let now = Instant::now();
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
        if open || w & COOLING != 0 {
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
        let (admission, change) = {
            let mut m = lock(&ext.machine);
            let r = m.acquire(s, now);
            core.publish(ext, &m, now);
            r
        };
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
                    core.bump_consecutive(Instant::now());
                    ProbeResult::Failure
                } else {
                    core.clear_consecutive();
                    ProbeResult::Success
                };
                self.probe_done(generation, ticket, result);
            }
        }
    }

    /// A success of a call admitted while closed in `generation` (`None`: a
    /// metrics-only shadow call). A success can still trip the failure rate:
    /// it may be the call that brings the window to `minimum_calls`.
    #[inline]
    pub(crate) fn record_success(&self, generation: Option<u32>) {
        let core = self.core();
        core.clear_consecutive();
        let ratio = match core.settings.rate {
            RateRule::None => return,
            RateRule::Time { ratio, .. } | RateRule::Count { ratio, .. } => ratio,
        };
        let ext = match core.ext.get() {
            Some(ext) => &**ext,
            None => core.ext(Instant::now()),
        };
        let (now, t) = match core.settings.rate {
            RateRule::Time { .. } => {
                // Counted as pending; the clock is read only when the window
                // may hold a failure, or for every 16th success.
                if !ext.window.defer_success() {
                    return;
                }
                let now = Instant::now();
                let t = ext.nanos(now);
                ext.window.settle(t);
                (Some(now), t)
            }
            // A count window needs no time.
            _ => {
                ext.window.record(0, false);
                (None, 0)
            }
        };
        // Summing the window is needed only if it may hold a failure: a
        // success can then be the call that reaches `minimum_calls`.
        if let Some(generation) = generation {
            if ext.window.may_hold_failures(t)
                && ext
                    .window
                    .stats(t)
                    .trips(ratio, core.settings.minimum_calls)
            {
                self.trip(generation, TransitionCause::FailureRate, now);
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
        let change = {
            let mut m = lock(&ext.machine);
            let c = m.trip(s, generation, cause, now, s.next_unit());
            core.publish(ext, &m, now);
            c
        };
        if let Some(c) = change {
            self.emit(c);
        }
    }

    /// A counted failure of a call admitted while closed in `generation`
    /// (`None`: a metrics-only shadow call, which cannot trip anything).
    #[cold]
    fn record_failure(&self, generation: Option<u32>) {
        let core = self.core();
        let s = &*core.settings;
        let now = Instant::now();
        let n = core.bump_consecutive(now);
        let ext = core.ext(now);
        let t = ext.nanos(now);
        ext.window.record(t, true);
        let Some(generation) = generation else {
            return;
        };
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
        if let Some(cause) = cause {
            self.trip(generation, cause, Some(now));
        }
    }

    fn probe_done(&self, generation: u32, ticket: u32, result: ProbeResult) {
        let core = self.core();
        let s = &*core.settings;
        let now = Instant::now();
        let ext = core.ext(now);
        let change = {
            let mut m = lock(&ext.machine);
            let c = m.probe_done(s, generation, ticket, result, now, s.next_unit());
            if c.is_some_and(|c| c.to == BreakerState::Closed) {
                ext.consecutive.store(0, Ordering::Relaxed);
                ext.window.clear();
            }
            core.publish(ext, &m, now);
            c
        };
        if let Some(c) = change {
            self.emit(c);
        }
    }

    fn release_probe(&self, kind: Kind) {
        if let Kind::Probe { generation, ticket } = kind {
            self.probe_done(generation, ticket, ProbeResult::Released);
        }
    }

    /// Refuse this breaker's calls for `d` (a server's retry-after hint).
    fn cool_down(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let core = self.core();
        let now = Instant::now();
        let Some(until) = now.checked_add(d) else {
            return;
        };
        let ext = core.ext(now);
        {
            let mut m = lock(&ext.machine);
            m.cool_down(until);
            core.publish(ext, &m, now);
        }
        tracing::debug!(
            target: "safecall::breaker",
            key = ?self.0.key.label(),
            cooldown = ?d,
            "circuit breaker cooling down on the server's retry-after hint"
        );
    }

    /// Publish a transition: a `tracing` event naming the key, then the
    /// listener. Never called with the lock held.
    fn emit(&self, c: Change) {
        let s = &*self.core().settings;
        let key = self.0.key.label();
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
            });
        }
    }
}

impl Core {
    #[inline]
    fn clear_consecutive(&self) {
        if let Some(ext) = self.ext.get() {
            if ext.consecutive.load(Ordering::Relaxed) != 0 {
                ext.consecutive.store(0, Ordering::Relaxed);
            }
        }
    }

    fn bump_consecutive(&self, now: Instant) -> u32 {
        let prev = self
            .ext(now)
            .consecutive
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_add(1))
            })
            .unwrap_or(u32::MAX);
        prev.saturating_add(1)
    }

    /// The state and statistics, for a snapshot.
    pub(crate) fn snapshot<K>(&self, key: K) -> BreakerSnapshot<K> {
        let s = &*self.settings;
        let mut snap = BreakerSnapshot::new(key, self.state());
        snap.mode = s.mode;
        snap.generation = generation_of(self.word.load(Ordering::Acquire));
        if let Some(ext) = self.ext.get() {
            snap.consecutive_failures = ext.consecutive.load(Ordering::Relaxed);
            let now = Instant::now();
            let stats = ext.window.stats(ext.nanos(now));
            snap.calls_in_window = stats.calls;
            snap.failures_in_window = stats.failures;
            snap.failure_rate = stats.rate();
            let m = lock(&ext.machine);
            snap.state = m.state_at(now);
            if s.mode == BreakerMode::Disabled {
                snap.state = BreakerState::Closed;
            } else {
                snap.retry_in = m.retry_in(now, s);
                snap.tripped_by = m.tripped_by();
            }
            snap.probes_in_flight = m.probes_in_flight(now);
            snap.forced = m.is_forced();
            snap.cooling_down = m.word(now) & COOLING != 0;
            snap.generation = m.generation();
        }
        snap
    }
}

impl Breaker {
    /// If the breaker is open (tripped or cooling down, not half-open) and
    /// refuses calls: how long until a probe is let through, and why. `None`
    /// while calls are let through (in every mode but
    /// [`BreakerMode::Enabled`]), when half-open, and for a forced-open breaker
    /// (it has no end).
    pub(crate) fn open_refusal(&self) -> Option<(Duration, RefusalCause)> {
        let core = self.core();
        if core.word.load(Ordering::Acquire) & FLAGS_MASK == 0
            || core.settings.mode != BreakerMode::Enabled
        {
            return None;
        }
        let ext = core.ext.get()?;
        let now = Instant::now();
        let m = lock(&ext.machine);
        if m.state_at(now) != BreakerState::Open {
            return None;
        }
        let retry_in = m.retry_in(now, &core.settings)?;
        Some((retry_in, m.refusal_cause(now)))
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
        self.core().snapshot(())
    }

    /// Open the breaker by hand (isolate a tenant). It stays open, refusing
    /// every call, until [`reset`](Self::reset); probes in flight become
    /// stale.
    pub fn force_open(&self) {
        let core = self.core();
        let now = Instant::now();
        let ext = core.ext(now);
        let change = {
            let mut m = lock(&ext.machine);
            let c = m.force_open(now);
            core.publish(ext, &m, now);
            c
        };
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
        let change = {
            let mut m = lock(&ext.machine);
            let c = m.reset();
            ext.consecutive.store(0, Ordering::Relaxed);
            ext.window.clear();
            core.publish(ext, &m, now);
            c
        };
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
