//! The storage behind a [`Breaker`](crate::Breaker): the core every breaker
//! has (one atomic word, the settings), the extension allocated on the first
//! outcome that needs it (window, state machine, consecutive count, budget),
//! and the reads and writes on them that do not depend on a handle.

use std::fmt;
use std::sync::Arc;

use once_cell::race::OnceBox;
use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::config::Settings;
use crate::breaker::state::{
    COOLING, COUNTED_MASK, FLAGS_MASK, FORCED, GEN_MASK, GEN_SHIFT, MACHINE_BITS, Machine,
    OPEN_BITS, PHASE_MASK, PROBE_NEXT, Phase, REMOTE,
};
use crate::breaker::window::Window;
use crate::breaker::{BreakerMode, BreakerSnapshot, BreakerState, RefusalCause};
use crate::budget::BudgetState;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

const SEEN_SHIFT: u32 = 32;

/// How a write of the state word moved the breaker between the states the
/// `safecall.breakers` gauge counts: `(from, to)` when they differ. Nothing
/// without the `metrics` feature.
#[cfg(feature = "metrics")]
pub(crate) type Moved = Option<(crate::metrics::KeyState, crate::metrics::KeyState)>;
/// How a write of the state word moved the breaker between the states the
/// `safecall.breakers` gauge counts: nothing without the `metrics` feature.
#[cfg(not(feature = "metrics"))]
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Moved(());

/// The gauge's state kept in word `w`.
#[cfg(feature = "metrics")]
fn counted_of(w: u64) -> crate::metrics::KeyState {
    use crate::breaker::state::COUNTED_SHIFT;
    crate::metrics::KeyState::from_bits((w & COUNTED_MASK) >> COUNTED_SHIFT)
}

/// The move between the counted states of words `old` and `new`.
#[cfg(feature = "metrics")]
fn moved(old: u64, new: u64) -> Moved {
    let (from, to) = (counted_of(old), counted_of(new));
    (from != to).then_some((from, to))
}

/// A run of consecutive failures: `generation:32 | count:32`, the closed
/// generation whose failures it counts. Outcomes of an earlier generation
/// (attempts admitted before the breaker last opened or was reset) must add
/// nothing to the current generation's streak, nor end it: four stale
/// timeouts landing after a recovery must not leave a breaker that needs five
/// failures one failure from tripping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Streak(u64);

impl Streak {
    const fn new(generation: u32, count: u32) -> Self {
        Self(((generation as u64) << 32) | count as u64)
    }

    const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    const fn count(self) -> u32 {
        self.0 as u32
    }
}

#[inline]
pub(super) fn generation_of(w: u64) -> u32 {
    (w >> GEN_SHIFT) as u32 & GEN_MASK
}

/// What a breaker knows of its key: enough to name it in events, and to hand
/// it to a listener as the registry's own key type.
pub(crate) trait KeyLabel: Send + Sync + 'static {
    fn label(&self) -> &dyn fmt::Debug;
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<K: fmt::Debug + Send + Sync + 'static> KeyLabel for K {
    fn label(&self) -> &dyn fmt::Debug {
        self
    }

    fn as_any(&self) -> &dyn std::any::Any {
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
    /// The key's hash in its registry (0 for a standalone breaker): the
    /// registry's tables are keyed by it, so a shard can find, move and
    /// rehash its breakers without hashing their keys again.
    pub(crate) hash: u64,
    /// `seen:32 | generation:23 | counted:3 | flags:4 | phase:2` (see `state`): what
    /// the fast paths read. `seen` is the registry's coarse last-use stamp,
    /// kept here rather than in a field of its own to keep an idle breaker at
    /// 32 bytes.
    pub(super) word: AtomicU64,
    pub(super) settings: Arc<Settings>,
    pub(super) ext: OnceBox<Ext>,
}

pub(super) struct Ext {
    /// Time zero of the `*_nanos` values below.
    pub(super) base: Instant,
    /// Until when a call can be refused without the lock (nanos since base;
    /// 0 = nothing scheduled).
    pub(super) refuse_until: AtomicU64,
    /// Counted failures in a row, tagged with the closed generation they
    /// were counted in (see [`Streak`]). Lives here: a breaker without an
    /// extension has recorded no failure since it was built or compacted.
    pub(super) consecutive: AtomicU64,
    pub(super) window: Window,
    pub(super) machine: Mutex<Machine>,
    /// This breaker's own retry budget, if its config asks for one (boxed:
    /// a breaker without one pays a pointer, not the budget's window).
    pub(super) budget: Option<Box<BudgetState>>,
}

impl Ext {
    fn new(s: &Settings, now: Instant, generation: u32) -> Self {
        Self {
            base: now,
            refuse_until: AtomicU64::new(0),
            consecutive: AtomicU64::new(Streak::new(generation, 0).0),
            window: Window::new(s.rate, generation),
            machine: Mutex::new(Machine::new(now, generation)),
            budget: s.retry_budget.and_then(|b| b.state()).map(Box::new),
        }
    }

    /// The consecutive-failure count, whatever generation it belongs to.
    #[inline]
    pub(crate) fn consecutive_count(&self) -> u32 {
        Streak(self.consecutive.load(Ordering::Relaxed)).count()
    }

    /// Tag the streak with the machine's generation, with the machine's lock
    /// held and before that generation is published: a new closed generation
    /// starts at zero (no permit of it can have counted anything yet); any
    /// other keeps its count for the statistics. So a success of an earlier
    /// generation never matches the tag and cannot end the current streak.
    fn sync_streak(&self, m: &Machine) {
        let generation = m.generation();
        let closed = m.is_closed_in(generation);
        let _ = self
            .consecutive
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let streak = Streak(v);
                if streak.generation() == generation {
                    return None;
                }
                let count = if closed { 0 } else { streak.count() };
                Some(Streak::new(generation, count).0)
            });
    }

    pub(super) fn nanos(&self, at: Instant) -> u64 {
        // u64 arithmetic: `Duration::as_nanos` is a u128, costly on this path.
        let d = at.saturating_duration_since(self.base);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }
}

impl Core {
    pub(crate) fn new(settings: Arc<Settings>) -> Self {
        Self::with_hash(settings, 0)
    }

    /// A core for a registry's breaker whose key hashes to `hash`.
    pub(crate) fn with_hash(settings: Arc<Settings>, hash: u64) -> Self {
        let core = Self {
            hash,
            word: AtomicU64::new(0),
            settings,
            ext: OnceBox::new(),
        };
        // loom cannot model `OnceLock`; build the extension before any thread
        // exists so the model only sees loom's primitives.
        #[cfg(safecall_loom)]
        let _ = core.ext(Instant::now());
        core
    }

    pub(super) fn ext(&self, now: Instant) -> &Ext {
        // Two threads may both build one; the loser's is dropped unused.
        self.ext.get_or_init(|| {
            let generation = generation_of(self.word.load(Ordering::Acquire));
            Box::new(Ext::new(&self.settings, now, generation))
        })
    }

    /// The registry's last-use stamp.
    #[inline]
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
    pub(crate) fn compact(&mut self, now: Instant, idle_for: Duration) -> (bool, Moved) {
        let Some(ext) = self.ext.get() else {
            return (false, Moved::default());
        };
        let last_use = now.checked_sub(idle_for).unwrap_or(ext.base);
        ext.window.settle(ext.nanos(last_use));
        let pristine = lock(&ext.machine).is_pristine(now)
            && ext.consecutive_count() == 0
            && ext.window.stats(ext.nanos(now)).calls == 0
            && ext.budget.as_deref().is_none_or(BudgetState::is_idle);
        if pristine {
            self.ext = OnceBox::new();
            let _old = self.word.fetch_and(!FLAGS_MASK, Ordering::AcqRel);
            #[cfg(feature = "metrics")]
            return (true, moved(_old, 0));
        }
        (pristine, Moved::default())
    }

    /// loom cannot model the extension's `OnceLock`: never compact.
    #[cfg(safecall_loom)]
    pub(crate) fn compact(&mut self, _now: Instant, _idle_for: Duration) -> (bool, Moved) {
        (false, Moved::default())
    }

    /// The state the `safecall.breakers` gauge counts this breaker in.
    #[cfg(feature = "metrics")]
    pub(crate) fn counted(&self) -> crate::metrics::KeyState {
        counted_of(self.word.load(Ordering::Acquire))
    }

    /// Whether a registry may drop this breaker: closed, not forced, not
    /// cooling down, no probe due. (Handles and permits are checked by the
    /// registry.)
    pub(crate) fn is_idle_closed(&self) -> bool {
        if self.settings.mode == BreakerMode::Disabled {
            return true;
        }
        match self.word.load(Ordering::Acquire) & FLAGS_MASK & !COUNTED_MASK {
            0 => true,
            // A cool-down that has run out keeps its flag until the next call
            // republishes the word: a key nobody calls again must not stay
            // pinned by it.
            f if f & !(COOLING | REMOTE) == 0 => self.ext.get().is_some_and(|ext| {
                ext.nanos(Instant::now()) >= ext.refuse_until.load(Ordering::Acquire)
            }),
            _ => false,
        }
    }

    /// Mirror the machine into the atomics. Called with the lock held.
    /// Returns how the gauge's state of the breaker moved, for the caller to
    /// count once the lock is released.
    #[must_use]
    pub(super) fn publish(&self, ext: &Ext, m: &Machine, now: Instant) -> Moved {
        ext.sync_streak(m);
        let until = m.refuse_until(now).map_or(0, |u| ext.nanos(u).max(1));
        ext.refuse_until.store(until, Ordering::Release);
        let low = m.word(now);
        #[cfg(feature = "metrics")]
        let low = low | (m.key_state(now).bits() << crate::breaker::state::COUNTED_SHIFT);
        let _old = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                Some((w & !MACHINE_BITS) | low)
            });
        #[cfg(feature = "metrics")]
        return match _old {
            Ok(old) | Err(old) => moved(old, low),
        };
        #[cfg(not(feature = "metrics"))]
        Moved::default()
    }

    pub(super) fn state(&self) -> BreakerState {
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
            _ if w & PROBE_NEXT != 0 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Whether the breaker holds a counted failure: a consecutive count
    /// above zero or a failure in its window (one that has left the window
    /// no longer counts). A breaker that never recorded a failure holds none.
    pub(crate) fn holds_counted_failures(&self) -> bool {
        let Some(ext) = self.ext.get() else {
            return false;
        };
        if ext.consecutive_count() > 0 {
            return true;
        }
        let at = ext.nanos(Instant::now());
        ext.window.may_hold_failures(at) && ext.window.stats(at).failures > 0
    }
}

impl Core {
    /// A success ends the streak of failures of its generation. A success of
    /// an earlier generation (`Some` of another) leaves the current streak
    /// alone; `None` (a metrics-only shadow call) ends whatever streak there
    /// is. Lock-free: one load when there is no streak.
    #[inline]
    pub(super) fn clear_consecutive(&self, generation: Option<u32>) {
        let Some(ext) = self.ext.get() else {
            return;
        };
        let mut v = ext.consecutive.load(Ordering::Relaxed);
        loop {
            let streak = Streak(v);
            if streak.count() == 0 || generation.is_some_and(|g| g != streak.generation()) {
                return;
            }
            let ended = Streak::new(streak.generation(), 0).0;
            match ext.consecutive.compare_exchange_weak(
                v,
                ended,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(seen) => v = seen,
            }
        }
    }

    /// Count a failure of closed generation `generation` in its streak and
    /// return the streak's length. Called with the machine's lock held and
    /// `generation` the machine's current one, so the streak is that
    /// generation's (it was retagged before the generation was published).
    pub(super) fn bump_consecutive(ext: &Ext, generation: u32) -> u32 {
        let mut out = 0;
        let _ = ext
            .consecutive
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let streak = Streak(v);
                let n = if streak.generation() == generation {
                    streak.count().saturating_add(1)
                } else {
                    1
                };
                out = n;
                Some(Streak::new(generation, n).0)
            });
        out
    }

    /// Count a failure that cannot trip anything (a half-open probe's, a
    /// metrics-only shadow call's) for the statistics only: the streak keeps
    /// its generation.
    pub(super) fn bump_consecutive_stats(&self, now: Instant) {
        let _ = self
            .ext(now)
            .consecutive
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                let streak = Streak(v);
                Some(Streak::new(streak.generation(), streak.count().saturating_add(1)).0)
            });
    }

    /// The state and statistics, for a snapshot; and, with the `metrics`
    /// feature, the gauge's state of the breaker set to what the snapshot
    /// reports (an open period or a cool-down may have ended by the clock
    /// since the last write), with how it moved.
    pub(crate) fn snapshot<K>(&self, key: K) -> (BreakerSnapshot<K>, Moved) {
        #[allow(unused_mut)]
        let mut moved_by = Moved::default();
        let s = &*self.settings;
        let mut snap = BreakerSnapshot::new(key, self.state());
        snap.mode = s.mode;
        snap.generation = generation_of(self.word.load(Ordering::Acquire));
        if let Some(ext) = self.ext.get() {
            snap.consecutive_failures = ext.consecutive_count();
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
            snap.remote_hold = m.remote_hold_at(now);
            snap.generation = m.generation();
            #[cfg(feature = "metrics")]
            {
                use crate::breaker::state::COUNTED_SHIFT;
                let counted = m.key_state(now).bits() << COUNTED_SHIFT;
                if let Ok(old) = self
                    .word
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                        (w & COUNTED_MASK != counted).then_some((w & !COUNTED_MASK) | counted)
                    })
                {
                    moved_by = moved(old, counted);
                }
            }
        }
        (snap, moved_by)
    }

    /// If the breaker is open (tripped or cooling down, not half-open) and
    /// refuses calls: how long until a probe is let through, and why. `None`
    /// while calls are let through (in every mode but
    /// [`BreakerMode::Enabled`]), when half-open, and for a forced-open breaker
    /// (it has no end).
    pub(crate) fn open_refusal(&self) -> Option<(Duration, RefusalCause)> {
        if self.word.load(Ordering::Acquire) & FLAGS_MASK == 0
            || self.settings.mode != BreakerMode::Enabled
        {
            return None;
        }
        let ext = self.ext.get()?;
        let now = Instant::now();
        let m = lock(&ext.machine);
        if m.state_at(now) != BreakerState::Open {
            return None;
        }
        let retry_in = m.retry_in(now, &self.settings)?;
        Some((retry_in, m.refusal_cause(now)))
    }
}
