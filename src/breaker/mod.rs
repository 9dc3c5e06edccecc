//! Circuit breakers: stop calling a dependency that keeps failing, and probe it
//! now and then to learn when it is back.
//!
//! # Why a breaker
//!
//! Retrying a provider that is down turns one outage into a pile-up: every
//! caller waits out its timeouts and retries, and the provider, when it comes
//! back, meets a thundering herd. A breaker counts failures; once they pass a
//! threshold it *opens* and refuses calls at once (no waiting, no invoking),
//! and after an open period lets a few *probes* through to test the water.
//! Kept per tenant (see [`BreakerRegistry`](crate::BreakerRegistry)), it also
//! confines one tenant's broken credentials to that tenant.
//!
//! # States
//!
//! ```text
//! Closed --failures--> Open --open_duration--> HalfOpen --probe ok--> Closed
//!                        ^                         |
//!                        +-------probe failed------+
//! ```
//!
//! - **Closed**: calls go through. It trips on [`consecutive_failures`] counted
//!   failures in a row, or on a failure ratio over a sliding window
//!   ([`failure_rate`], with [`minimum_calls`]).
//! - **Open**: calls are refused with [`Rejected::retry_in`] and a
//!   [`RefusalCause`]. The move to
//!   half-open is decided lazily by the clock on the next call: no timer, no
//!   task. [`Breaker::state`] reports `HalfOpen` as soon as the time has come.
//! - **HalfOpen**: at most [`half_open_probes`] probes in flight; after
//!   [`successes_to_close`] successes the breaker closes (counts and window
//!   cleared), and any counted failure re-opens it (optionally for longer:
//!   [`open_growth`]). A probe holds its slot for at most [`probe_lease`].
//!
//! Every transition starts a new *generation*. An outcome of a call admitted
//! in an earlier generation still updates the statistics but cannot drive a
//! transition: a slow call started while closed cannot close a breaker that
//! has since re-opened, and a call admitted before the breaker went half-open
//! never holds a probe slot.
//!
//! # Driving a breaker by hand
//!
//! [`Breaker::try_acquire`] never blocks or sleeps; it returns a [`Permit`]
//! (RAII) or a [`Rejected`]. Record the attempt's [`Outcome`] on the permit.
//! Dropping a permit without recording it (cancellation, `select!`, a panic)
//! releases its slot without counting anything, so a cancelled probe can never
//! wedge a breaker half-open.
//!
//! ```
//! use safecall::{Breaker, BreakerConfig, BreakerState, Outcome, RefusalCause};
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(
//!     BreakerConfig::default()
//!         .consecutive_failures(2)
//!         .open_duration(Duration::from_secs(30)),
//! );
//!
//! for _ in 0..2 {
//!     let permit = breaker.try_acquire().expect("closed");
//!     permit.record(Outcome::Failure); // the attempt failed
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! let refused = breaker.try_acquire().unwrap_err();
//! assert_eq!(refused.retry_in(), Duration::from_secs(30));
//! assert_eq!(refused.cause(), RefusalCause::Open);
//!
//! tokio::time::advance(Duration::from_secs(30)).await;
//! let probe = breaker.try_acquire().expect("the first call after the open period is a probe");
//! probe.record(Outcome::Success);
//! assert_eq!(breaker.state(), BreakerState::Closed);
//! # }
//! ```
//!
//! # Cost
//!
//! A closed-state success takes no lock and allocates nothing: one atomic load
//! to admit, one to check the consecutive-failure count. A time-windowed
//! failure rate (the default) adds one atomic increment per success while the
//! window holds no failure, and one clock read every 16th success to date them
//! (see the `window` module); while a failure may be in the window, every
//! outcome reads the clock and lands in its exact bucket. A
//! consecutive-failure-only or [`count_window`] breaker reads no clock on a
//! success. A refusal while open
//! reads the clock once and allocates nothing. Failures and half-open calls
//! take a short per-breaker lock around one pure transition
//! (see the `state` module).
//!
//! [`consecutive_failures`]: BreakerConfig::consecutive_failures
//! [`failure_rate`]: BreakerConfig::failure_rate
//! [`minimum_calls`]: BreakerConfig::minimum_calls
//! [`half_open_probes`]: BreakerConfig::half_open_probes
//! [`successes_to_close`]: BreakerConfig::successes_to_close
//! [`open_growth`]: BreakerConfig::open_growth
//! [`probe_lease`]: BreakerConfig::probe_lease
//! [`count_window`]: BreakerConfig::count_window

use std::fmt;
use std::time::Duration;

use crate::fleet::ReplicaId;

mod config;
mod handle;
mod permit;
mod record;
mod remote;
mod shared;
pub(crate) mod state;
mod window;

pub(crate) use config::Settings;
pub use config::{BreakerConfig, BreakerMode};
pub use handle::Breaker;
pub(crate) use permit::RawPermit;
pub use permit::{Outcome, Permit};
pub(crate) use shared::{Core, Inner, KeyLabel};

/// The state of a circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerState {
    /// Calls go through; failures are counted.
    Closed,
    /// Calls are refused until the open period (or a server's retry-after
    /// cool-down) ends, or, if forced open, until [`Breaker::reset`].
    Open,
    /// A few probes may go through to test the dependency.
    HalfOpen,
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        })
    }
}

/// Why a breaker changed state.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum TransitionCause {
    /// Closed → Open: `consecutive_failures` counted failures in a row.
    ConsecutiveFailures,
    /// Closed → Open: the failure ratio over the window reached the threshold.
    FailureRate,
    /// HalfOpen → Open: a probe failed.
    ProbeFailed,
    /// Open → HalfOpen: the open period passed.
    OpenElapsed,
    /// HalfOpen → Closed: `successes_to_close` probes succeeded.
    ProbesSucceeded,
    /// → Open by [`Breaker::force_open`].
    Forced,
    /// → Closed by [`Breaker::reset`].
    Reset,
    /// Closed → HalfOpen: a cool-down cut short by
    /// [`max_cooldown`](BreakerConfig::max_cooldown) ended; the next call is a
    /// probe that learns the provider's current answer.
    CooldownEnded,
}

impl fmt::Display for TransitionCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransitionCause::ConsecutiveFailures => "consecutive failures",
            TransitionCause::FailureRate => "failure rate over the window",
            TransitionCause::ProbeFailed => "a probe failed",
            TransitionCause::OpenElapsed => "the open period passed",
            TransitionCause::ProbesSucceeded => "probes succeeded",
            TransitionCause::Forced => "forced open by hand",
            TransitionCause::Reset => "reset by hand",
            TransitionCause::CooldownEnded => "a cool-down cut short by max_cooldown ended",
        })
    }
}

/// A state change, handed to the listener set with
/// [`BreakerConfig::on_transition`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy)]
pub struct Transition<'a> {
    /// The breaker's key in its registry (`unkeyed` for a standalone breaker,
    /// `overflow` for a registry's overflow breaker).
    pub key: &'a dyn fmt::Debug,
    /// The state before.
    pub from: BreakerState,
    /// The state after.
    pub to: BreakerState,
    /// Why.
    pub cause: TransitionCause,
    /// The generation the transition started.
    pub generation: u32,
    /// How long the new open period lasts, when entering `Open` on a rule
    /// (`None` otherwise, and for a forced open).
    pub open_for: Option<Duration>,
    /// Whether the breaker is in [`BreakerMode::MetricsOnly`]: the transition
    /// is what *would* have happened; no call is refused.
    pub metrics_only: bool,
    pub(crate) key_any: &'a dyn std::any::Any,
}

impl<'a> Transition<'a> {
    /// The breaker's key as its registry's key type `K`: `None` for a
    /// standalone breaker, a registry's overflow breaker, or another `K`.
    ///
    /// A listener of a [`BreakerRegistry<K>`](crate::BreakerRegistry) gets
    /// the key itself, not only its `Debug` form (to publish it, or to label
    /// a metric by it):
    ///
    /// ```
    /// use safecall::{BreakerConfig, BreakerRegistry, BreakerState};
    /// use std::sync::{Arc, Mutex};
    ///
    /// let opened = Arc::new(Mutex::new(Vec::<u64>::new()));
    /// let seen = Arc::clone(&opened);
    /// let config = BreakerConfig::default()
    ///     .consecutive_failures(1)
    ///     .on_transition(move |t| {
    ///         if let (Some(org), BreakerState::Open) = (t.key_as::<u64>(), t.to) {
    ///             seen.lock().unwrap().push(*org);
    ///         }
    ///     });
    /// let registry = BreakerRegistry::<u64>::new(config);
    /// registry.get(&42).try_acquire().unwrap().record(safecall::Outcome::Failure);
    /// assert_eq!(*opened.lock().unwrap(), [42]);
    /// ```
    #[must_use]
    pub fn key_as<K: 'static>(&self) -> Option<&'a K> {
        self.key_any.downcast_ref::<K>()
    }
}

/// Why a breaker refused an attempt.
///
/// A caller that reports the refusal can tell "the provider is failing" from
/// "the provider asked us to slow down" from "someone isolated it by hand".
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum RefusalCause {
    /// Tripped by failures and not yet due for a probe (see
    /// [`BreakerSnapshot::tripped_by`] for what tripped it).
    Open,
    /// Forced open by hand ([`Breaker::force_open`]); refuses until
    /// [`Breaker::reset`].
    ForcedOpen,
    /// A server's retry-after hint holds calls back until it ends; nothing
    /// was counted as a failure.
    CoolingDown,
    /// Half-open, with every probe slot taken by a probe in flight.
    ProbesBusy,
    /// Another replica of the fleet shared a hold on this key (a server's
    /// retry-after hint it got, a breaker forced open there, or failure opens
    /// reported by enough replicas; see [`crate::fleet`]). `origin` names the
    /// replica. Nothing was counted here; the hold lasts at most the fleet's
    /// `max_remote_hold`.
    RemoteHold {
        /// The replica whose hold this is.
        origin: ReplicaId,
    },
}

impl fmt::Display for RefusalCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefusalCause::Open => "open after failures",
            RefusalCause::ForcedOpen => "forced open by hand",
            RefusalCause::CoolingDown => "cooling down on the server's retry-after hint",
            RefusalCause::ProbesBusy => "half-open, every probe slot taken",
            RefusalCause::RemoteHold { origin } => {
                return write!(f, "held by replica {origin} of the fleet");
            }
        })
    }
}

/// A breaker refused an attempt. The limit is this client's own breaker, not
/// the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    retry_in: Duration,
    cause: RefusalCause,
}

impl Rejected {
    pub(crate) fn new(retry_in: Duration, cause: RefusalCause) -> Self {
        Self { retry_in, cause }
    }

    /// Time until the breaker lets a probe through (for a forced-open breaker,
    /// which has no end, the configured open duration: a hint to check back).
    #[must_use]
    pub fn retry_in(&self) -> Duration {
        self.retry_in
    }

    /// Why the breaker refused.
    #[must_use]
    pub fn cause(&self) -> RefusalCause {
        self.cause
    }
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this client's circuit breaker refused the call ({}): next probe allowed in {:?}",
            self.cause, self.retry_in
        )
    }
}

impl std::error::Error for Rejected {}

/// A breaker's state and statistics at one instant, for health reports.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct BreakerSnapshot<K> {
    /// The key (`()` for a standalone breaker).
    pub key: K,
    /// The state, as [`Breaker::state`] reports it.
    pub state: BreakerState,
    /// Counted failures in a row (the count that tripped it, while open).
    pub consecutive_failures: u32,
    /// While calls are refused: time until a probe is let through. `None`
    /// otherwise, and for a forced-open breaker (it waits for a reset).
    pub retry_in: Option<Duration>,
    /// What opened the breaker, while it is open or half-open.
    pub tripped_by: Option<TransitionCause>,
    /// Calls in the failure-rate window now.
    pub calls_in_window: u32,
    /// Failures in the failure-rate window now.
    pub failures_in_window: u32,
    /// `failures_in_window / calls_in_window`, 0 for an empty window.
    pub failure_rate: f64,
    /// Probes holding a half-open slot.
    pub probes_in_flight: u32,
    /// Whether the breaker was forced open by hand.
    pub forced: bool,
    /// Whether a server's retry-after hint is holding calls back.
    pub cooling_down: bool,
    /// The replica whose hold refuses calls here, while another replica's
    /// hold does (see [`crate::fleet`]).
    pub remote_hold: Option<ReplicaId>,
    /// The breaker's mode: in [`BreakerMode::MetricsOnly`], `state` is what
    /// would have been, and nothing is refused.
    pub mode: BreakerMode,
    /// The current generation (bumped by every transition).
    pub generation: u32,
}

impl<K> BreakerSnapshot<K> {
    /// A snapshot of a breaker in `state` with no statistics: every count zero,
    /// no refusal time, not forced, [`BreakerMode::Enabled`]. Set the public
    /// fields to describe more; this is for tests of code that renders
    /// snapshots (a health endpoint, a dashboard), since the struct is
    /// `#[non_exhaustive]`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::{BreakerSnapshot, BreakerState};
    ///
    /// let mut open = BreakerSnapshot::new("org-46cf", BreakerState::Open);
    /// open.consecutive_failures = 5;
    /// open.retry_in = Some(Duration::from_secs(12));
    /// assert_eq!(open.failure_rate, 0.0);
    /// ```
    #[must_use]
    pub fn new(key: K, state: BreakerState) -> Self {
        Self {
            key,
            state,
            consecutive_failures: 0,
            retry_in: None,
            tripped_by: None,
            calls_in_window: 0,
            failures_in_window: 0,
            failure_rate: 0.0,
            probes_in_flight: 0,
            forced: false,
            cooling_down: false,
            remote_hold: None,
            mode: BreakerMode::Enabled,
            generation: 0,
        }
    }
}
