//! The pure state machine: `(state, event, now) -> (decision, transition)`.
//!
//! Nothing here locks, sleeps, reads a clock or logs: every method takes the
//! time as an argument, and a random sample where jitter needs one, and
//! returns what the caller must carry out. [`Breaker`](crate::Breaker) keeps a
//! [`Machine`] behind a mutex that it holds for one call of one method, and
//! mirrors the result into atomics for its lock-free fast paths.
//!
//! # Examples
//!
//! ```
//! use safecall::{Breaker, BreakerConfig, BreakerState, Outcome};
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(BreakerConfig::default().consecutive_failures(1));
//! breaker.try_acquire().unwrap().record(Outcome::Failure);
//! assert_eq!(breaker.state(), BreakerState::Open);
//! tokio::time::advance(Duration::from_secs(30)).await;
//! assert_eq!(breaker.state(), BreakerState::HalfOpen);
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::config::Settings;
use crate::breaker::{BreakerState, RefusalCause, TransitionCause};
use crate::fleet::ReplicaId;

/// The phase of the machine. `Open` covers a forced open too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    pub(crate) const fn bits(self) -> u64 {
        match self {
            Phase::Closed => 0,
            Phase::Open => 1,
            Phase::HalfOpen => 2,
        }
    }

    pub(crate) const fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open => BreakerState::Open,
            Phase::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

/// The mirrored state word: `seen:32 | generation:23 | counted:3 | flags:4 |
/// phase:2`. The machine owns the low 32 bits; `seen` belongs to the
/// registry. `counted` is the state the `safecall.breakers` gauge counts the
/// breaker in (feature `metrics`; 0, closed, otherwise), written with the
/// rest of the machine's bits.
pub(crate) const PHASE_MASK: u64 = 0b11;
pub(crate) const GEN_SHIFT: u32 = 9;
/// Generations wrap at 2^23 (a permit would have to outlive 8 million
/// transitions to be mistaken for a current one).
pub(crate) const GEN_MASK: u32 = (1 << 23) - 1;
pub(crate) const MACHINE_BITS: u64 = 0xFFFF_FFFF;
pub(crate) const OPEN_BITS: u64 = 1;
pub(crate) const FORCED: u64 = 1 << 2;
pub(crate) const COOLING: u64 = 1 << 3;
/// A cool-down cut short by `max_cooldown`: the next call after it is a probe.
pub(crate) const PROBE_NEXT: u64 = 1 << 4;
/// Another replica's hold (see [`crate::fleet`]) refuses calls.
pub(crate) const REMOTE: u64 = 1 << 5;
/// The word of a closed breaker with nothing pending, generation aside: every
/// bit below the generation.
pub(crate) const FLAGS_MASK: u64 = (1 << GEN_SHIFT) - 1;
/// Where the gauge's state of the breaker is kept: a closed breaker is
/// counted as 0, so a word with nothing pending stays 0 in `FLAGS_MASK`.
pub(crate) const COUNTED_SHIFT: u32 = 6;
pub(crate) const COUNTED_MASK: u64 = 0b111 << COUNTED_SHIFT;

/// A probe in flight while half-open.
#[derive(Debug, Clone, Copy)]
struct Probe {
    ticket: u32,
    lease_until: Instant,
}

/// What [`Machine::acquire`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// An ordinary call, admitted while closed in this generation.
    Plain { generation: u32 },
    /// A half-open probe holding slot `ticket`.
    Probe { generation: u32, ticket: u32 },
    /// Refused: a probe may go through in `retry_in`.
    Reject {
        retry_in: Duration,
        cause: RefusalCause,
    },
}

/// A state change the caller must publish (tracing event, listener).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Change {
    pub(crate) from: BreakerState,
    pub(crate) to: BreakerState,
    pub(crate) cause: TransitionCause,
    pub(crate) generation: u32,
    /// How long this open period lasts (entering Open only).
    pub(crate) open_for: Option<Duration>,
}

/// How a probe ended, as far as the machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeResult {
    Success,
    Failure,
    /// Released without counting (ignored, retry-after, or dropped).
    Released,
}

/// Far enough in the future to stand for "never" without overflowing; its
/// exact size does not matter.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

fn add(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// The breaker's state, apart from the lock-free counters (consecutive
/// failures and the failure-rate window), which the caller passes in.
#[derive(Debug)]
pub(crate) struct Machine {
    phase: Phase,
    generation: u32,
    forced: bool,
    open_until: Instant,
    open_for: Duration,
    /// How many re-opens in a row after failed probes (open-time growth).
    level: u32,
    probes: Vec<Probe>,
    next_ticket: u32,
    probe_successes: u32,
    cooldown_until: Option<Instant>,
    /// The cool-down was cut short by `max_cooldown` while closed: the
    /// provider's answer after it is unknown, so the next call is a probe.
    probe_next: bool,
    tripped_by: Option<TransitionCause>,
    /// Another replica's hold: refuses calls until then, on top of (never
    /// instead of) this breaker's own open period and cool-down.
    remote_until: Option<Instant>,
    remote_origin: ReplicaId,
}

impl Machine {
    pub(crate) fn new(now: Instant, generation: u32) -> Self {
        Self {
            phase: Phase::Closed,
            generation: generation & GEN_MASK,
            forced: false,
            open_until: now,
            open_for: Duration::ZERO,
            level: 0,
            probes: Vec::new(),
            next_ticket: 0,
            probe_successes: 0,
            cooldown_until: None,
            probe_next: false,
            tripped_by: None,
            remote_until: None,
            remote_origin: ReplicaId::new(0),
        }
    }

    /// Whether a fresh machine of this generation would be the same: closed,
    /// nothing forced, cooling down or remembered.
    #[cfg(not(safecall_loom))]
    pub(crate) fn is_pristine(&self, now: Instant) -> bool {
        self.phase == Phase::Closed
            && !self.forced
            && self.tripped_by.is_none()
            && self.cooldown_until.is_none_or(|c| c <= now)
            && self.remote_until.is_none_or(|c| c <= now)
            && !self.probe_next
    }

    pub(crate) fn generation(&self) -> u32 {
        self.generation
    }

    /// Whether the breaker is closed in `generation`: an outcome of a call
    /// admitted then still counts.
    pub(crate) fn is_closed_in(&self, generation: u32) -> bool {
        self.phase == Phase::Closed && self.generation == generation
    }

    pub(crate) fn is_forced(&self) -> bool {
        self.forced
    }

    /// The replica whose hold refuses calls at `now`, if one does.
    pub(crate) fn remote_hold_at(&self, now: Instant) -> Option<ReplicaId> {
        self.remote_until
            .is_some_and(|u| now < u)
            .then_some(self.remote_origin)
    }

    pub(crate) fn tripped_by(&self) -> Option<TransitionCause> {
        self.tripped_by
    }

    pub(crate) fn probes_in_flight(&self, now: Instant) -> u32 {
        self.probes.iter().filter(|p| p.lease_until > now).count() as u32
    }

    /// The machine's part (low 32 bits) of the state word the fast paths read.
    pub(crate) fn word(&self, now: Instant) -> u64 {
        // The generation and the phase occupy separate bits.
        let mut w = (u64::from(self.generation) << GEN_SHIFT) | self.phase.bits();
        if self.forced {
            w |= FORCED;
        }
        if self.cooldown_until.is_some_and(|c| c > now) {
            w |= COOLING;
        }
        if self.probe_next {
            w |= PROBE_NEXT;
        }
        if self.remote_until.is_some_and(|c| c > now) {
            w |= REMOTE;
        }
        w
    }

    /// Until when a call can be refused without asking the machine: the end
    /// of the open period or of a cool-down, whichever is later; `None` when
    /// no refusal is scheduled.
    pub(crate) fn refuse_until(&self, now: Instant) -> Option<Instant> {
        let open = (self.phase == Phase::Open).then_some(self.open_until);
        let cool = self.cooldown_until.filter(|c| *c > now);
        let remote = self.remote_until.filter(|c| *c > now);
        [open, cool, remote].into_iter().flatten().max()
    }

    /// The end of the hold that refuses calls at `now` whatever the phase:
    /// a cool-down or another replica's hold, whichever ends later.
    fn held_until(&self, now: Instant) -> Option<Instant> {
        let cool = self.cooldown_until.filter(|c| *c > now);
        let remote = self.remote_until.filter(|c| *c > now);
        cool.max(remote)
    }

    /// The state as reported at `now`: an open breaker whose time has come
    /// reports half-open before the next call moves it there; a cooling-down
    /// breaker reports open (it refuses calls).
    pub(crate) fn state_at(&self, now: Instant) -> BreakerState {
        let cooling = self.held_until(now).is_some();
        match self.phase {
            // Redundant with a forced breaker's far `open_until`, kept so
            // that "forced means open" does not depend on that constant.
            Phase::Open if self.forced => BreakerState::Open,
            Phase::Open if now >= self.open_until && !cooling => BreakerState::HalfOpen,
            Phase::Open => BreakerState::Open,
            _ if cooling => BreakerState::Open,
            Phase::Closed if self.probe_next => BreakerState::HalfOpen,
            Phase::Closed => BreakerState::Closed,
            Phase::HalfOpen => BreakerState::HalfOpen,
        }
    }

    /// The state the `safecall.breakers` gauge counts this breaker in at
    /// `now`: forced open by hand, else cooling down on a hint, else the
    /// state [`state_at`](Self::state_at) reports.
    #[cfg(feature = "metrics")]
    pub(crate) fn key_state(&self, now: Instant) -> crate::metrics::KeyState {
        use crate::metrics::KeyState;
        if self.forced {
            KeyState::ForcedOpen
        } else if self.cooldown_until.is_some_and(|c| now < c) {
            KeyState::CoolingDown
        } else {
            match self.state_at(now) {
                BreakerState::Closed => KeyState::Closed,
                BreakerState::Open => KeyState::Open,
                BreakerState::HalfOpen => KeyState::HalfOpen,
            }
        }
    }

    /// Time until a probe may go through, while calls are refused at `now`.
    pub(crate) fn retry_in(&self, now: Instant, s: &Settings) -> Option<Duration> {
        if self.forced {
            return None;
        }
        match self.state_at(now) {
            BreakerState::Open => self
                .refuse_until(now)
                .map(|u| u.saturating_duration_since(now)),
            // Due but not yet moved, the machine holds no probe: only a
            // breaker already half-open can have its slots full.
            BreakerState::HalfOpen if self.phase == Phase::HalfOpen => {
                (self.probes_in_flight(now) >= s.half_open_probes).then(|| self.lease_wait(now))
            }
            _ => None,
        }
    }

    /// Why calls are refused at `now`, if they are: forced beats tripped,
    /// tripped beats a cool-down, and a half-open breaker refuses only when
    /// its probe slots are full. The lock-free refusal in the handle follows
    /// the same order.
    pub(crate) fn refusal_cause(&self, now: Instant) -> RefusalCause {
        let remote = self.remote_until.is_some_and(|u| now < u);
        if self.forced {
            RefusalCause::ForcedOpen
        } else if self.phase == Phase::Open && (now < self.open_until || !remote) {
            RefusalCause::Open
        } else if self.cooldown_until.is_some_and(|u| now < u) {
            // Callers ask only while calls are refused, so a cool-down
            // that is still running is the refusal's cause.
            RefusalCause::CoolingDown
        } else if remote {
            RefusalCause::RemoteHold {
                origin: self.remote_origin,
            }
        } else {
            RefusalCause::ProbesBusy
        }
    }

    fn lease_wait(&self, now: Instant) -> Duration {
        self.probes
            .iter()
            .map(|p| p.lease_until.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::ZERO)
    }

    fn change(&mut self, to: Phase, cause: TransitionCause) -> Change {
        let from = self.phase.state();
        self.phase = to;
        self.generation = self.generation.wrapping_add(1) & GEN_MASK;
        self.probes.clear();
        self.probe_successes = 0;
        self.probe_next = false;
        Change {
            from,
            to: to.state(),
            cause,
            generation: self.generation,
            open_for: None,
        }
    }

    /// The length of the next open period at growth level `self.level`, with
    /// `unit` in [0, 1) drawn for the jitter.
    fn open_time(&self, s: &Settings, unit: f64) -> Duration {
        let base = s.open_duration.as_secs_f64();
        let exp = i32::try_from(self.level).unwrap_or(i32::MAX);
        let grown = (base * s.growth_factor.powi(exp)).min(s.growth_cap.as_secs_f64());
        let jittered = grown * (1.0 - s.jitter * unit);
        Duration::try_from_secs_f64(jittered)
            .unwrap_or(s.growth_cap)
            .min(s.growth_cap)
    }

    fn open(&mut self, s: &Settings, cause: TransitionCause, now: Instant, unit: f64) -> Change {
        let d = self.open_time(s, unit);
        let mut c = self.change(Phase::Open, cause);
        self.open_until = add(now, d);
        self.open_for = d;
        self.tripped_by = Some(cause);
        c.open_for = Some(d);
        c
    }

    /// Ask to admit a call at `now`. Moves Open to HalfOpen when the open
    /// period has passed, and admits the caller as a probe.
    pub(crate) fn acquire(&mut self, s: &Settings, now: Instant) -> (Admission, Option<Change>) {
        if let Some(until) = self.held_until(now) {
            let wait = until.saturating_duration_since(now);
            let wait = match self.phase {
                Phase::Open if !self.forced => {
                    wait.max(self.open_until.saturating_duration_since(now))
                }
                _ => wait,
            };
            let cause = self.refusal_cause(now);
            return (
                Admission::Reject {
                    retry_in: wait,
                    cause,
                },
                None,
            );
        }
        self.cooldown_until = None;
        self.remote_until = None;
        match self.phase {
            Phase::Closed if self.probe_next => {
                self.probe_next = false;
                let change = self.change(Phase::HalfOpen, TransitionCause::CooldownEnded);
                (self.admit_probe(s, now), Some(change))
            }
            Phase::Closed => (
                Admission::Plain {
                    generation: self.generation,
                },
                None,
            ),
            Phase::Open if self.forced => (
                Admission::Reject {
                    retry_in: s.open_duration,
                    cause: RefusalCause::ForcedOpen,
                },
                None,
            ),
            Phase::Open if now < self.open_until => (
                Admission::Reject {
                    retry_in: self.open_until.saturating_duration_since(now),
                    cause: RefusalCause::Open,
                },
                None,
            ),
            Phase::Open => {
                let change = self.change(Phase::HalfOpen, TransitionCause::OpenElapsed);
                (self.admit_probe(s, now), Some(change))
            }
            Phase::HalfOpen => (self.admit_probe(s, now), None),
        }
    }

    fn admit_probe(&mut self, s: &Settings, now: Instant) -> Admission {
        // A probe past its lease no longer holds a slot.
        self.probes.retain(|p| p.lease_until > now);
        if self.probes.len() >= s.half_open_probes as usize {
            return Admission::Reject {
                retry_in: self.lease_wait(now),
                cause: RefusalCause::ProbesBusy,
            };
        }
        // Reserve the probe slots once, on the first probe: no reallocation
        // under the lock afterwards.
        if self.probes.capacity() == 0 {
            self.probes.reserve_exact(s.half_open_probes as usize);
        }
        let ticket = self.next_ticket;
        self.next_ticket = self.next_ticket.wrapping_add(1);
        self.probes.push(Probe {
            ticket,
            lease_until: add(now, s.probe_lease),
        });
        Admission::Probe {
            generation: self.generation,
            ticket,
        }
    }

    /// A counted failure while closed reached a trip rule. Trips only if the
    /// failing call was admitted in the current closed generation.
    pub(crate) fn trip(
        &mut self,
        s: &Settings,
        generation: u32,
        cause: TransitionCause,
        now: Instant,
        unit: f64,
    ) -> Option<Change> {
        if self.phase != Phase::Closed || generation != self.generation {
            return None;
        }
        self.level = 0;
        Some(self.open(s, cause, now, unit))
    }

    /// A probe ended. A probe from an earlier generation, or one whose lease
    /// has run out, is stale: it frees nothing and changes nothing.
    pub(crate) fn probe_done(
        &mut self,
        s: &Settings,
        generation: u32,
        ticket: u32,
        result: ProbeResult,
        now: Instant,
        unit: f64,
    ) -> Option<Change> {
        if self.phase != Phase::HalfOpen || generation != self.generation {
            return None;
        }
        let pos = self.probes.iter().position(|p| p.ticket == ticket)?;
        let probe = self.probes.swap_remove(pos);
        if probe.lease_until <= now {
            return None;
        }
        match result {
            ProbeResult::Released => None,
            ProbeResult::Success => {
                self.probe_successes += 1;
                if self.probe_successes >= s.successes_to_close {
                    self.level = 0;
                    self.tripped_by = None;
                    Some(self.change(Phase::Closed, TransitionCause::ProbesSucceeded))
                } else {
                    None
                }
            }
            ProbeResult::Failure => {
                self.level = self.level.saturating_add(1);
                Some(self.open(s, TransitionCause::ProbeFailed, now, unit))
            }
        }
    }

    /// Refuse calls until `until` (a server's retry-after hint). Not a
    /// transition: the generation is kept. `cut_short` when the hint was
    /// longer than `max_cooldown`: a closed breaker then admits its next call
    /// after the cool-down as a probe (half-open), not the whole backlog.
    pub(crate) fn cool_down(&mut self, until: Instant, cut_short: bool) {
        self.cooldown_until = Some(self.cooldown_until.map_or(until, |c| c.max(until)));
        if cut_short && self.phase == Phase::Closed {
            self.probe_next = true;
        }
    }

    /// Another replica's hold: refuse calls until `until`, naming `origin`.
    /// Only adds caution: it never closes, shortens or ends this breaker's
    /// own open period or cool-down (a later end wins), and it is not a
    /// transition (the generation is kept). `probe_after`: a closed breaker
    /// admits its next call after the hold as a probe (half-open), not the
    /// whole backlog, since closing is a local probe's decision. Returns
    /// whether the hold refuses longer than before.
    pub(crate) fn remote_hold(
        &mut self,
        until: Instant,
        origin: ReplicaId,
        probe_after: bool,
        now: Instant,
    ) -> bool {
        if until <= now || self.forced {
            return false;
        }
        let longer = self.remote_until.is_none_or(|c| c <= now || until > c);
        if longer {
            self.remote_until = Some(until);
            self.remote_origin = origin;
        }
        if probe_after && self.phase == Phase::Closed {
            self.probe_next = true;
        }
        longer
    }

    /// Open by hand until [`reset`](Self::reset).
    pub(crate) fn force_open(&mut self, now: Instant) -> Option<Change> {
        let from = self.state_at(now);
        self.forced = true;
        self.tripped_by = Some(TransitionCause::Forced);
        if self.phase == Phase::Open && from == BreakerState::Open {
            return None;
        }
        let mut c = self.change(Phase::Open, TransitionCause::Forced);
        self.open_until = add(now, FAR);
        c.from = from;
        Some(c)
    }

    /// Back to closed, everything cleared. Always starts a new generation;
    /// reports a change only if the breaker was not closed.
    pub(crate) fn reset(&mut self) -> Option<Change> {
        let was_closed = self.phase == Phase::Closed;
        self.forced = false;
        self.level = 0;
        self.cooldown_until = None;
        self.remote_until = None;
        self.tripped_by = None;
        let c = self.change(Phase::Closed, TransitionCause::Reset);
        (!was_closed).then_some(c)
    }
}

#[cfg(all(test, not(safecall_loom)))]
mod tests {
    use super::*;
    use crate::BreakerConfig;

    const S: Duration = Duration::from_secs(1);

    fn settings(c: BreakerConfig) -> Settings {
        c.validate().unwrap()
    }

    fn opened(s: &Settings, t0: Instant) -> Machine {
        let mut m = Machine::new(t0, 0);
        let c = m
            .trip(s, 0, TransitionCause::ConsecutiveFailures, t0, 0.0)
            .unwrap();
        assert_eq!((c.from, c.to), (BreakerState::Closed, BreakerState::Open));
        m
    }

    #[test]
    fn only_a_closed_unforced_cooled_down_untripped_machine_is_pristine() {
        // Mutation-testing regression: compaction relies on each condition.
        let s = settings(BreakerConfig::default().open_duration(30 * S));
        let t0 = Instant::now();
        let fresh = Machine::new(t0, 0);
        assert!(fresh.is_pristine(t0));
        assert_eq!((fresh.generation(), fresh.is_forced()), (0, false));

        let tripped = opened(&s, t0);
        assert!(
            !tripped.is_pristine(t0 + 60 * S),
            "open, even past its period"
        );
        assert_eq!(tripped.generation(), 1);

        let mut forced = Machine::new(t0, 0);
        let _ = forced.force_open(t0);
        assert!(forced.is_forced());
        assert!(!forced.is_pristine(t0));
        let _ = forced.reset();
        assert!(forced.is_pristine(t0), "reset clears everything");
        assert_eq!(forced.generation(), 2);

        let mut cooling = Machine::new(t0, 0);
        cooling.cool_down(t0 + 5 * S, false);
        assert!(!cooling.is_pristine(t0 + 4 * S));
        assert!(cooling.is_pristine(t0 + 5 * S), "the cool-down is over");

        // Closed again after a probe, it remembers nothing that matters.
        let mut closed = opened(&s, t0);
        let (admission, _) = closed.acquire(&s, t0 + 30 * S);
        let Admission::Probe { generation, ticket } = admission else {
            panic!("{admission:?}");
        };
        let _ = closed.probe_done(
            &s,
            generation,
            ticket,
            ProbeResult::Success,
            t0 + 31 * S,
            0.0,
        );
        assert!(closed.is_pristine(t0 + 31 * S));
    }

    #[test]
    fn a_lease_or_a_cool_down_ends_exactly_at_its_instant() {
        let s = settings(
            BreakerConfig::default()
                .open_duration(30 * S)
                .probe_lease(10 * S),
        );
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        let (admission, _) = m.acquire(&s, t0 + 30 * S);
        assert!(
            matches!(admission, Admission::Probe { .. }),
            "{admission:?}"
        );
        let just_before = t0 + 40 * S - Duration::from_nanos(1);
        assert_eq!(m.probes_in_flight(just_before), 1);
        assert_eq!(m.probes_in_flight(t0 + 40 * S), 0, "the lease has run out");

        let mut cooling = Machine::new(t0, 0);
        cooling.cool_down(t0 + 5 * S, false);
        assert_ne!(cooling.word(t0 + 4 * S) & COOLING, 0);
        assert_eq!(cooling.word(t0 + 5 * S) & COOLING, 0);
    }

    #[test]
    fn forced_open_refuses_with_the_open_duration_as_a_hint() {
        let s = settings(BreakerConfig::default().open_duration(30 * S));
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 0);
        let c = m.force_open(t0).expect("a transition from closed");
        assert_eq!((c.from, c.to), (BreakerState::Closed, BreakerState::Open));
        assert_eq!(
            m.acquire(&s, t0 + 3600 * S).0,
            Admission::Reject {
                retry_in: 30 * S,
                cause: RefusalCause::ForcedOpen
            }
        );
        assert_eq!(m.state_at(t0 + 3600 * S), BreakerState::Open);
        assert_eq!(m.retry_in(t0, &s), None, "forced: no probe is scheduled");
    }

    #[test]
    fn forcing_an_open_breaker_is_no_new_transition_but_forcing_a_due_one_is() {
        let s = settings(BreakerConfig::default().open_duration(30 * S));
        let t0 = Instant::now();
        let mut open = opened(&s, t0);
        assert!(open.force_open(t0 + S).is_none());
        assert!(open.is_forced());
        let mut due = opened(&s, t0);
        let c = due.force_open(t0 + 30 * S).expect("it reported half-open");
        assert_eq!((c.from, c.to), (BreakerState::HalfOpen, BreakerState::Open));
    }

    #[test]
    fn a_cool_down_on_an_open_breaker_refuses_until_the_later_end() {
        let s = settings(BreakerConfig::default().open_duration(30 * S));
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        m.cool_down(t0 + 5 * S, false);
        assert_eq!(
            m.acquire(&s, t0 + S).0,
            Admission::Reject {
                retry_in: 29 * S,
                cause: RefusalCause::Open
            }
        );
        // Forced and cooling: the cool-down's own end.
        let mut f = Machine::new(t0, 0);
        let _ = f.force_open(t0);
        f.cool_down(t0 + 5 * S, false);
        assert_eq!(
            f.acquire(&s, t0 + S).0,
            Admission::Reject {
                retry_in: 4 * S,
                cause: RefusalCause::ForcedOpen
            }
        );
        // A closed breaker cooling down reports open until exactly its end.
        let mut c = Machine::new(t0, 0);
        c.cool_down(t0 + 5 * S, false);
        assert_eq!(c.state_at(t0 + 4 * S), BreakerState::Open);
        assert_eq!(c.state_at(t0 + 5 * S), BreakerState::Closed);
        assert_eq!(c.refuse_until(t0 + 4 * S), Some(t0 + 5 * S));
        assert_eq!(c.refuse_until(t0 + 5 * S), None);
    }

    #[test]
    fn retry_in_while_half_open_is_the_wait_for_a_probe_slot() {
        let s = settings(
            BreakerConfig::default()
                .open_duration(30 * S)
                .probe_lease(10 * S),
        );
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        // Due but not yet moved: the next call is the probe, nothing to wait.
        assert_eq!(m.retry_in(t0 + 30 * S, &s), None);
        let _ = m.acquire(&s, t0 + 30 * S);
        assert_eq!(
            m.retry_in(t0 + 31 * S, &s),
            Some(9 * S),
            "the slot frees at the lease's end"
        );
        let two = settings(
            BreakerConfig::default()
                .open_duration(30 * S)
                .probe_lease(10 * S)
                .half_open_probes(2),
        );
        let mut m = opened(&two, t0);
        let _ = m.acquire(&two, t0 + 30 * S);
        assert_eq!(m.retry_in(t0 + 31 * S, &two), None, "a slot is still free");
    }

    #[test]
    fn a_trip_needs_a_closed_machine_of_the_callers_generation() {
        let s = settings(BreakerConfig::default().open_duration(30 * S));
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 0);
        let _ = m.force_open(t0);
        let _ = m.reset(); // closed again, generation 2
        assert!(
            m.trip(&s, 0, TransitionCause::ConsecutiveFailures, t0, 0.0)
                .is_none(),
            "a stale failure cannot trip"
        );
        let mut open = opened(&s, t0);
        let generation = open.generation();
        assert!(
            open.trip(&s, generation, TransitionCause::FailureRate, t0, 0.0)
                .is_none(),
            "an open machine does not trip again"
        );
    }

    #[test]
    fn the_cooling_and_forced_flags_are_distinct_bits() {
        // Mutation-testing regression: each flag has a bit of its own in the
        // fast-path word, outside the phase bits.
        assert_ne!(COOLING, 0);
        assert_ne!(FORCED, 0);
        assert_eq!(COOLING & (FORCED | PHASE_MASK), 0);
        assert_eq!(FORCED & PHASE_MASK, 0);
        assert_eq!((COOLING | FORCED | PHASE_MASK) & !FLAGS_MASK, 0);
        assert_eq!(COUNTED_MASK & !FLAGS_MASK, 0);
        assert_eq!(
            COUNTED_MASK & (COOLING | FORCED | PROBE_NEXT | PHASE_MASK),
            0
        );
    }

    #[test]
    fn closed_admits_plain_calls_of_its_generation() {
        let s = settings(BreakerConfig::default());
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 0);
        assert_eq!(
            m.acquire(&s, t0),
            (Admission::Plain { generation: 0 }, None)
        );
    }

    #[test]
    fn open_refuses_until_open_duration_then_admits_one_probe() {
        let s = settings(BreakerConfig::default().open_duration(30 * S));
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        assert_eq!(
            m.acquire(&s, t0 + 10 * S).0,
            Admission::Reject {
                retry_in: 20 * S,
                cause: RefusalCause::Open
            }
        );
        assert_eq!(m.state_at(t0 + 30 * S), BreakerState::HalfOpen);
        let (a, c) = m.acquire(&s, t0 + 30 * S);
        assert!(matches!(a, Admission::Probe { generation: 2, .. }));
        assert_eq!(c.unwrap().cause, TransitionCause::OpenElapsed);
        // The single slot is taken: refused until its lease (30 s) runs out.
        assert_eq!(
            m.acquire(&s, t0 + 31 * S).0,
            Admission::Reject {
                retry_in: 29 * S,
                cause: RefusalCause::ProbesBusy
            }
        );
    }

    #[test]
    fn probe_success_closes_after_successes_to_close() {
        let s = settings(
            BreakerConfig::default()
                .half_open_probes(2)
                .successes_to_close(2),
        );
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        let t = t0 + 30 * S;
        let Admission::Probe { generation, ticket } = m.acquire(&s, t).0 else {
            panic!()
        };
        let Admission::Probe { ticket: t2, .. } = m.acquire(&s, t).0 else {
            panic!()
        };
        assert!(matches!(m.acquire(&s, t).0, Admission::Reject { .. }));
        assert_eq!(
            m.probe_done(&s, generation, ticket, ProbeResult::Success, t, 0.0),
            None
        );
        let c = m
            .probe_done(&s, generation, t2, ProbeResult::Success, t, 0.0)
            .unwrap();
        assert_eq!(
            (c.to, c.cause),
            (BreakerState::Closed, TransitionCause::ProbesSucceeded)
        );
    }

    #[test]
    fn failed_probe_reopens_with_growth_up_to_the_cap() {
        let s = settings(
            BreakerConfig::default()
                .open_duration(10 * S)
                .open_growth(2.0, 35 * S),
        );
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        let mut t = t0;
        for expected in [20, 35, 35] {
            t += Duration::from_secs(100);
            let Admission::Probe { generation, ticket } = m.acquire(&s, t).0 else {
                panic!()
            };
            let c = m
                .probe_done(&s, generation, ticket, ProbeResult::Failure, t, 0.0)
                .unwrap();
            assert_eq!(c.open_for, Some(Duration::from_secs(expected)));
        }
    }

    #[test]
    fn jitter_only_shortens() {
        let s = settings(
            BreakerConfig::default()
                .open_duration(10 * S)
                .open_jitter(0.5),
        );
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 0);
        let c = m
            .trip(&s, 0, TransitionCause::FailureRate, t0, 0.999)
            .unwrap();
        let d = c.open_for.unwrap();
        assert!(d > 5 * S && d < 10 * S, "{d:?}");
    }

    #[test]
    fn stale_generation_cannot_trip_or_close() {
        let s = settings(BreakerConfig::default());
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        // A call admitted in generation 0 fails late: no second trip.
        assert_eq!(
            m.trip(&s, 0, TransitionCause::ConsecutiveFailures, t0, 0.0),
            None
        );
        let t = t0 + 30 * S;
        let Admission::Probe { generation, ticket } = m.acquire(&s, t).0 else {
            panic!()
        };
        // An outcome naming the right ticket but an old generation is ignored.
        assert_eq!(
            m.probe_done(&s, generation - 1, ticket, ProbeResult::Success, t, 0.0),
            None
        );
        assert_eq!(m.state_at(t), BreakerState::HalfOpen);
    }

    #[test]
    fn expired_lease_frees_the_slot_and_the_late_outcome_is_stale() {
        let s = settings(BreakerConfig::default().probe_lease(5 * S));
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        let t = t0 + 30 * S;
        let Admission::Probe { generation, ticket } = m.acquire(&s, t).0 else {
            panic!()
        };
        let (second, _) = m.acquire(&s, t + 5 * S);
        assert!(matches!(second, Admission::Probe { .. }));
        assert_eq!(
            m.probe_done(&s, generation, ticket, ProbeResult::Failure, t + 6 * S, 0.0),
            None
        );
        assert_eq!(m.state_at(t + 6 * S), BreakerState::HalfOpen);
    }

    #[test]
    fn released_probe_frees_its_slot_without_counting() {
        let s = settings(BreakerConfig::default());
        let t0 = Instant::now();
        let mut m = opened(&s, t0);
        let t = t0 + 30 * S;
        let Admission::Probe { generation, ticket } = m.acquire(&s, t).0 else {
            panic!()
        };
        assert_eq!(
            m.probe_done(&s, generation, ticket, ProbeResult::Released, t, 0.0),
            None
        );
        assert!(matches!(m.acquire(&s, t).0, Admission::Probe { .. }));
    }

    #[test]
    fn force_open_holds_until_reset() {
        let s = settings(BreakerConfig::default());
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 0);
        let c = m.force_open(t0).unwrap();
        assert_eq!(
            (c.to, c.cause),
            (BreakerState::Open, TransitionCause::Forced)
        );
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(m.state_at(later), BreakerState::Open);
        assert!(matches!(m.acquire(&s, later).0, Admission::Reject { .. }));
        let c = m.reset().unwrap();
        assert_eq!((c.from, c.to), (BreakerState::Open, BreakerState::Closed));
        assert!(matches!(m.acquire(&s, later).0, Admission::Plain { .. }));
    }

    #[test]
    fn cool_down_refuses_until_the_hint_without_a_transition() {
        let s = settings(BreakerConfig::default());
        let t0 = Instant::now();
        let mut m = Machine::new(t0, 0);
        m.cool_down(t0 + 7 * S, false);
        assert_eq!(m.generation(), 0);
        assert_eq!(m.state_at(t0), BreakerState::Open);
        assert_eq!(
            m.acquire(&s, t0 + 2 * S).0,
            Admission::Reject {
                retry_in: 5 * S,
                cause: RefusalCause::CoolingDown
            }
        );
        assert_eq!(
            m.acquire(&s, t0 + 7 * S).0,
            Admission::Plain { generation: 0 }
        );
        assert_eq!(m.state_at(t0 + 7 * S), BreakerState::Closed);
    }
}
