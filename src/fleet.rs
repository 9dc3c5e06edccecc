//! Fleets: cool-downs and breaker opens shared across the replicas of a
//! service, through a store (Redis or Valkey: the `safecall-redis` crate),
//! with the call path untouched and the store's failure harmless.
//!
//! # Why share, and why not the naive way
//!
//! Each replica's breakers learn an outage alone, and a provider's 429 for
//! one account (Twilio rate-limits per account, not per process) is ignored
//! by every replica but the one that got it: the others keep hammering the
//! account. The naive fix, a distributed breaker that reads and writes the
//! store on every call, puts a round trip on the hot path and makes the
//! store a single point of failure. Here the store only *adds caution*:
//!
//! - Local breakers stay the fast path: **no store work per call**. A
//!   breaker hands its transitions and retry-after cool-downs (the cold paths
//!   that already publish them) to the registry's [`StateSync`], which must
//!   only queue them; a background task of the sync sends them, and applies
//!   the other replicas' holds to the local breakers through a
//!   [`SyncTarget`].
//! - A held breaker refuses with [`RefusalCause::RemoteHold`] naming the
//!   [`ReplicaId`] it came from. A remote hold never closes, shortens or ends
//!   a local open period or cool-down (the later end wins), is capped at
//!   [`StateSync::max_remote_hold`] (default 5 minutes), and after a hold of
//!   an open (forced, or failures reported by enough replicas) the next local
//!   call is a probe: closing is always a local probe's decision.
//! - A hold is applied to a key this replica has not called yet (its
//!   breaker is created then), so the first call for that key is refused at
//!   once. First calls never wait on the store.
//! - The store down or slow never fails or delays a call: the breakers run
//!   locally, and the sync reports its health through
//!   [`BreakerRegistry::sync_check`] ("state sync" in the health report).
//!
//! # Starting
//!
//! [`BreakerRegistry::sync`] is builder style and infallible, and needs no
//! runtime: it calls [`StateSync::attach`] once, and the sync's own tasks run
//! on the runtime it was built in (`safecall_redis::RedisSync::connect` is
//! `async`, so it has one). Attach a sync to one registry.
//!
//! # Examples
//!
//! Two registries in one process, with a toy sync that hands each event of
//! one straight to the other (a real one goes through a store):
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//! use safecall::fleet::{HoldKind, LocalEvent, RemoteHold, ReplicaId, StateSync, SyncStatus, SyncTarget};
//! use safecall::{BreakerConfig, BreakerRegistry, Outcome, RefusalCause};
//!
//! #[derive(Default)]
//! struct Wire {
//!     peer: Mutex<Option<SyncTarget<String>>>,
//! }
//!
//! impl StateSync<String> for Wire {
//!     fn attach(&self, _target: SyncTarget<String>) {}
//!     fn publish(&self, key: &String, event: &LocalEvent) {
//!         if let LocalEvent::CooledDown { remaining, cut_short } = *event {
//!             if let Some(peer) = &*self.peer.lock().unwrap() {
//!                 let hold = RemoteHold::new(ReplicaId::new(1), remaining, HoldKind::CoolDown { cut_short });
//!                 let _ = peer.apply(key, &hold);
//!             }
//!         }
//!     }
//!     fn status(&self) -> SyncStatus {
//!         SyncStatus::new(true)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! /// Replica B's side: a sync that keeps its target.
//! struct Keep(Arc<Mutex<Option<SyncTarget<String>>>>);
//! impl StateSync<String> for Keep {
//!     fn attach(&self, target: SyncTarget<String>) {
//!         *self.0.lock().unwrap() = Some(target);
//!     }
//!     fn publish(&self, _: &String, _: &LocalEvent) {}
//!     fn status(&self) -> SyncStatus {
//!         SyncStatus::new(true)
//!     }
//! }
//! let b_target = Arc::new(Mutex::new(None));
//! let b = BreakerRegistry::<String>::new(BreakerConfig::default()).sync(Keep(Arc::clone(&b_target)));
//! let wire = Wire::default();
//! *wire.peer.lock().unwrap() = b_target.lock().unwrap().take();
//! let a = BreakerRegistry::<String>::new(BreakerConfig::default()).sync(wire);
//!
//! // Replica A gets a 429 with Retry-After: 20 s for org-46cf ...
//! a.get("org-46cf").try_acquire().unwrap().record(Outcome::RetryAfter(Duration::from_secs(20)));
//! // ... and replica B refuses that key too, naming A.
//! let refused = b.get("org-46cf").try_acquire().unwrap_err();
//! assert_eq!(refused.cause(), RefusalCause::RemoteHold { origin: ReplicaId::new(1) });
//! assert_eq!(refused.retry_in(), Duration::from_secs(20));
//! # }
//! ```

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::breaker::TransitionCause;
#[cfg(doc)]
use crate::{BreakerRegistry, RefusalCause};

pub use crate::registry::SyncTarget;

/// The registry's feed: a breaker's key (as `&dyn Any`, downcast to the
/// registry's `K`) and what happened to it.
pub(crate) type Feed = Arc<dyn Fn(&dyn Any, &LocalEvent) + Send + Sync>;

/// The default cap on a remote hold: 5 minutes.
pub const DEFAULT_MAX_REMOTE_HOLD: Duration = Duration::from_secs(300);

/// A replica of the fleet, as its holds name it: a number drawn at random
/// when the replica's sync starts (or chosen by the application), shown in
/// 8 hexadecimal digits.
///
/// A number rather than a name keeps [`RefusalCause`] `Copy` (and a refusal
/// free of allocation), and a 32-bit one keeps it within the 8 bytes that a
/// [`Rejected`](crate::Rejected) (and so every `Result` of
/// [`Breaker::try_acquire`](crate::Breaker::try_acquire)) already had room
/// for: a wider cause made the hot path measurably slower. 32 random bits
/// give a fleet of 100 replicas about one chance in a million of two sharing
/// an id. A sync can map ids to names for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReplicaId(u32);

impl ReplicaId {
    /// The replica numbered `id`.
    #[must_use]
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// Its number.
    #[must_use]
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// What a local breaker did that a fleet may want to know, handed to
/// [`StateSync::publish`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalEvent {
    /// A server's retry-after hint cooled the key down for `remaining`
    /// (already bounded by `max_cooldown`); `cut_short` when the hint was
    /// longer, so the next call after it is a probe.
    CooledDown {
        /// How long the key refuses calls, from now.
        remaining: Duration,
        /// The hint was longer than the breaker's `max_cooldown`.
        cut_short: bool,
    },
    /// The breaker opened on failures (or a failed probe) for `open_for`.
    Opened {
        /// What tripped it.
        cause: TransitionCause,
        /// How long this open period lasts.
        open_for: Duration,
    },
    /// The breaker was forced open by hand (it holds until a local reset).
    ForcedOpen,
    /// The breaker closed (probes succeeded, or a reset by hand): a report
    /// of its opening is no longer true.
    Closed {
        /// Why it closed.
        cause: TransitionCause,
    },
}

/// What kind of hold another replica shares.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HoldKind {
    /// A retry-after cool-down; `cut_short` as in [`LocalEvent::CooledDown`].
    CoolDown {
        /// The hint was longer than the origin's `max_cooldown`: the next
        /// call after the hold is a probe.
        cut_short: bool,
    },
    /// A breaker forced open by hand.
    Forced,
    /// Failure opens, reported by enough replicas.
    Opened,
}

/// Another replica's hold on a key, to apply with [`SyncTarget::apply`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RemoteHold {
    /// The replica it comes from.
    pub origin: ReplicaId,
    /// How long it lasts from now (relative: clocks of replicas may differ).
    pub remaining: Duration,
    /// What it is.
    pub kind: HoldKind,
}

impl RemoteHold {
    /// A hold from `origin` lasting `remaining` from now.
    #[must_use]
    pub fn new(origin: ReplicaId, remaining: Duration, kind: HoldKind) -> Self {
        Self {
            origin,
            remaining,
            kind,
        }
    }
}

/// How a [`StateSync`] is doing, for the health report's "state sync" entry.
#[non_exhaustive]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct SyncStatus {
    /// Connected to the store.
    pub connected: bool,
    /// Something is lost or late: not connected, or updates were dropped
    /// since the last status. The breakers still work, locally.
    pub degraded: bool,
    /// Updates waiting to be sent.
    pub queued: usize,
    /// Updates dropped since the start: the queue was full or the store
    /// away.
    pub queue_drops: u64,
    /// Messages from the store that were not understood (garbage, another
    /// version, hostile), ignored.
    pub ignored_messages: u64,
    /// Remote holds applied to local breakers.
    pub holds_applied: u64,
    /// Remote holds shortened to the cap.
    pub holds_capped: u64,
    /// What is wrong, in words fit for a health report (never a secret).
    pub detail: Option<String>,
}

impl SyncStatus {
    /// A status with only `connected` set (and `degraded` its opposite).
    #[must_use]
    pub fn new(connected: bool) -> Self {
        Self {
            connected,
            degraded: !connected,
            ..Self::default()
        }
    }
}

/// Shares a registry's cool-downs and opens with the other replicas of a
/// fleet, and applies theirs.
///
/// Implement it for a store (the `safecall-redis` crate does, for Redis and
/// Valkey); attach it with [`BreakerRegistry::sync`].
///
/// # Contract
///
/// - [`publish`](Self::publish) is called on the thread of the call that
///   made the change, outside the breaker's lock: it must not block, await or
///   do I/O. Queue the event (bounded; drop and count when full) and send it
///   from a task of your own.
/// - Apply the other replicas' holds through the [`SyncTarget`] given to
///   [`attach`](Self::attach). It caps them at
///   [`max_remote_hold`](Self::max_remote_hold). Never apply this replica's
///   own events back to it.
/// - Share only relative times (time left), never instants: replicas'
///   clocks differ.
pub trait StateSync<K>: Send + Sync + 'static {
    /// Called once by [`BreakerRegistry::sync`]: start applying remote holds
    /// through `target` (on the sync's own tasks). Must not block.
    fn attach(&self, target: SyncTarget<K>);

    /// A local breaker's event to share. Must not block (see the
    /// [contract](Self#contract)).
    fn publish(&self, key: &K, event: &LocalEvent);

    /// How the sync is doing now.
    fn status(&self) -> SyncStatus;

    /// The longest a remote hold may refuse calls here (default
    /// [`DEFAULT_MAX_REMOTE_HOLD`], 5 minutes).
    fn max_remote_hold(&self) -> Duration {
        DEFAULT_MAX_REMOTE_HOLD
    }
}
