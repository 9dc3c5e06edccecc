//! Share [`safecall`]'s breaker cool-downs and opens across the replicas of a
//! service through Redis (or Valkey): the Redis implementation of
//! [`safecall::fleet::StateSync`].
//!
//! ```no_run
//! use safecall::{BreakerConfig, BreakerRegistry};
//! # #[tokio::main]
//! # async fn main() -> Result<(), safecall_redis::ConnectError> {
//! let sync = safecall_redis::RedisSync::connect("redis://127.0.0.1:6379", "sms").await?;
//! let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default()).sync(sync);
//! // A 429 with Retry-After on this replica now makes every replica refuse
//! // that key, each with `RefusalCause::RemoteHold { origin }`.
//! # drop(breakers);
//! # Ok(()) }
//! ```
//!
//! # What goes through Redis
//!
//! Nothing per call. A breaker's cold paths (a transition, a retry-after
//! cool-down) put one entry in a bounded outbound queue (one entry per key
//! and kind: a later event replaces the one waiting); a writer task sends it
//! as one `SET … PX <ms left>` and one `PUBLISH`, in a pipeline. A reader
//! task subscribes to the namespace's channel and applies the other
//! replicas' holds to the local breakers. Times are relative (milliseconds
//! left), so replicas' clocks need not agree.
//!
//! - Shared by default: retry-after cool-downs and `force_open` (a forced
//!   open is held by the others for [`max_remote_hold`](RedisSync::max_remote_hold)).
//! - A failure open is a *report*: the others hold the key only once
//!   [`min_reporters`](RedisSync::min_reporters) distinct replicas (default
//!   2) report it open, so one bad replica cannot poison the fleet; a
//!   replica that closes its breaker withdraws its report.
//! - A remote hold is capped at `max_remote_hold` (default 5 minutes) and
//!   never closes or shortens a local open.
//! - On (re)connecting, the reader reads the holds of the keys the registry
//!   has (`GET` and `PTTL` of each, pipelined).
//!
//! Keys: `safecall:<namespace>:hold:<key>` and
//! `safecall:<namespace>:open:<key>:<replica>`; channel
//! `safecall:<namespace>:events`. The message format is in the `wire`
//! module's docs; anything else on the channel is ignored and counted.
//!
//! # When Redis is down or slow
//!
//! No call fails or waits: the breakers run locally. Every command runs
//! under a timeout on the sync's own tasks; the queue drops (and counts)
//! what does not fit; [`BreakerRegistry::sync_check`](safecall::BreakerRegistry::sync_check)
//! reports "state sync degraded". Connections are retried every
//! [`reconnect_delay`](RedisSync::reconnect_delay).
//!
//! # Client
//!
//! The [`redis`] crate (redis-rs): the most used Rust client, kept by the
//! Redis organisation, with a tokio multiplexed connection and an async
//! pub/sub connection, which is all this needs. Reconnection is done here
//! rather than by its `ConnectionManager`, so that a store that is down at
//! start does not fail [`connect`](RedisSync::connect) and every wait is
//! bounded by this crate's own timeouts.
//!
//! # Secrets
//!
//! The URL's password never appears in logs, errors, `Debug` or health
//! messages: the URL is shown with its user information replaced by `***`,
//! and the client's error texts are scrubbed of the password.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod queue;
mod redact;
mod tasks;
mod wire;

use std::fmt;
use std::hash::Hash;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use safecall::fleet::{
    DEFAULT_MAX_REMOTE_HOLD, LocalEvent, ReplicaId, StateSync, SyncStatus, SyncTarget,
};
use tokio::sync::Notify;
use tokio::time::Instant;

use queue::{Pending, Pushed, Queue};
use wire::Kind;

/// How long a drop keeps the sync reported as degraded.
const DROP_MEMORY: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`RedisSync::connect`] could not start.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a Redis URL (shown without its user information).
    #[error("not a valid Redis URL: {endpoint}")]
    InvalidUrl {
        /// The URL, its user information replaced by `***`.
        endpoint: String,
    },
    /// The namespace is empty or holds a space or a control character.
    #[error(
        "invalid namespace {namespace:?}: it must be non-empty, without spaces or control characters"
    )]
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
    },
    /// `connect` was not called within a tokio runtime (its tasks need one).
    #[error("RedisSync::connect must run within a tokio runtime")]
    NoRuntime,
}

/// The Redis implementation of [`StateSync`]: attach it to a registry with
/// [`BreakerRegistry::sync`](safecall::BreakerRegistry::sync).
///
/// # Default
///
/// | knob | default |
/// | --- | --- |
/// | [`min_reporters`](Self::min_reporters) | 2 |
/// | [`max_remote_hold`](Self::max_remote_hold) | 5 minutes |
/// | [`queue_capacity`](Self::queue_capacity) | 1,024 keys |
/// | [`command_timeout`](Self::command_timeout) | 1 s |
/// | [`reconnect_delay`](Self::reconnect_delay) | 500 ms |
/// | [`replica_id`](Self::replica_id) | random |
pub struct RedisSync {
    shared: Arc<Shared>,
    config: Config,
    runtime: tokio::runtime::Handle,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    pub(crate) min_reporters: usize,
    pub(crate) max_remote_hold: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) reconnect_delay: Duration,
}

/// What the handle and the tasks share.
pub(crate) struct Shared {
    pub(crate) client: redis::Client,
    /// The URL without its user information.
    pub(crate) endpoint: String,
    /// Only to scrub it out of the client's error texts; never shown.
    password: Option<String>,
    pub(crate) prefix: String,
    pub(crate) replica: ReplicaId,
    pub(crate) queue: Mutex<Queue>,
    pub(crate) wake: Notify,
    /// A connection made by `connect`, for the writer to start with.
    pub(crate) first: Mutex<Option<redis::aio::MultiplexedConnection>>,
    /// The subscription made by `connect`, for the reader to start with: a
    /// hold published once `connect` has returned is not missed.
    pub(crate) first_sub: Mutex<Option<redis::aio::PubSub>>,
    pub(crate) writer_up: AtomicBool,
    pub(crate) reader_up: AtomicBool,
    /// Bumped by the reader on each new subscription: the writer's
    /// connection may be older than a restart of the store.
    pub(crate) epoch: AtomicU64,
    pub(crate) attached: AtomicBool,
    pub(crate) drops: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) applied: AtomicU64,
    pub(crate) capped: AtomicU64,
    last_drop: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    pub(crate) fn hold_key(&self, key: &str) -> String {
        format!("{}hold:{key}", self.prefix)
    }

    pub(crate) fn report_key(&self, key: &str, origin: ReplicaId) -> String {
        format!("{}open:{key}:{origin}", self.prefix)
    }

    pub(crate) fn dropped(&self, n: u64) {
        self.drops.fetch_add(n, Ordering::Relaxed);
        *lock(&self.last_drop) = Some(Instant::now());
    }

    /// Keep what went wrong, scrubbed of the password, and log it once per
    /// change (never the URL's user information).
    pub(crate) fn failed(&self, what: &str, err: &dyn fmt::Display) {
        let text = redact::scrub(&format!("{what}: {err}"), self.password.as_deref());
        let mut last = lock(&self.last_error);
        if last.as_deref() != Some(text.as_str()) {
            tracing::warn!(
                target: "safecall::fleet",
                endpoint = %self.endpoint,
                error = %text,
                "state sync: Redis unavailable; breakers run locally"
            );
            *last = Some(text);
        }
    }

    pub(crate) fn recovered(&self) {
        let mut last = lock(&self.last_error);
        if last.take().is_some() {
            tracing::info!(
                target: "safecall::fleet",
                endpoint = %self.endpoint,
                "state sync: Redis reachable again"
            );
        }
    }
}

impl fmt::Debug for RedisSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSync")
            .field("endpoint", &self.shared.endpoint)
            .field("prefix", &self.shared.prefix)
            .field("replica", &self.shared.replica)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl RedisSync {
    /// A sync on the Redis at `url` (`redis://[:password@]host:port[/db]`,
    /// `rediss://` needs the `redis` crate's TLS features), sharing within
    /// `namespace` (replicas of one service use one namespace).
    ///
    /// Tries to connect and subscribe once (under a timeout), so that what
    /// the other replicas publish from then on reaches this one; a store
    /// that is down does not fail this: the sync starts degraded and keeps
    /// trying, and the breakers run locally meanwhile. Its tasks start when it is attached
    /// to a registry, on the runtime this was called in.
    ///
    /// # Errors
    ///
    /// [`ConnectError`] for a URL that is not a Redis URL, an invalid
    /// namespace, or a call outside a tokio runtime.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, ConnectError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ConnectError::NoRuntime)?;
        let endpoint = redact::redact_url(url);
        if namespace.is_empty() || namespace.chars().any(|c| c == ' ' || c.is_control()) {
            return Err(ConnectError::InvalidNamespace {
                namespace: namespace.to_owned(),
            });
        }
        let client = redis::Client::open(url).map_err(|_| ConnectError::InvalidUrl {
            endpoint: endpoint.clone(),
        })?;
        let password = client
            .get_connection_info()
            .redis_settings()
            .password()
            .map(str::to_owned);
        let shared = Arc::new(Shared {
            client,
            endpoint,
            password,
            prefix: format!("safecall:{namespace}:"),
            replica: ReplicaId::new(random_id()),
            queue: Mutex::new(Queue::new(1024)),
            wake: Notify::new(),
            first: Mutex::new(None),
            first_sub: Mutex::new(None),
            writer_up: AtomicBool::new(false),
            reader_up: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            attached: AtomicBool::new(false),
            drops: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            capped: AtomicU64::new(0),
            last_drop: Mutex::new(None),
            last_error: Mutex::new(None),
        });
        let config = Config {
            min_reporters: 2,
            max_remote_hold: DEFAULT_MAX_REMOTE_HOLD,
            command_timeout: Duration::from_secs(1),
            reconnect_delay: Duration::from_millis(500),
        };
        if let Some(conn) = tasks::open(&shared, config.command_timeout).await {
            *lock(&shared.first) = Some(conn);
            shared.writer_up.store(true, Ordering::Relaxed);
            if let Some(sub) = tasks::subscribe(&shared, config.command_timeout).await {
                *lock(&shared.first_sub) = Some(sub);
                shared.reader_up.store(true, Ordering::Relaxed);
            }
        }
        Ok(Self {
            shared,
            config,
            runtime,
        })
    }

    /// How many distinct replicas must report a key open (on failures)
    /// before the others hold it (default 2; at least 1).
    #[must_use]
    pub fn min_reporters(mut self, n: usize) -> Self {
        self.config.min_reporters = n.max(1);
        self
    }

    /// The longest a remote hold may refuse calls here (default 5 minutes);
    /// longer holds are cut to it. Also how long the others hold a key
    /// forced open here.
    #[must_use]
    pub fn max_remote_hold(mut self, d: Duration) -> Self {
        self.config.max_remote_hold = d;
        self
    }

    /// How many keys' events may wait to be sent (default 1,024); past it,
    /// events are dropped and counted.
    #[must_use]
    pub fn queue_capacity(self, n: usize) -> Self {
        *lock(&self.shared.queue) = Queue::new(n);
        self
    }

    /// The longest any one Redis command or connection attempt may take
    /// (default 1 s).
    #[must_use]
    pub fn command_timeout(mut self, d: Duration) -> Self {
        self.config.command_timeout = d;
        self
    }

    /// How long to wait before connecting again after a failure (default
    /// 500 ms).
    #[must_use]
    pub fn reconnect_delay(mut self, d: Duration) -> Self {
        self.config.reconnect_delay = d;
        self
    }

    /// This replica's id, as the others' refusals name it (default: drawn
    /// at random). Two replicas must not share one.
    #[must_use]
    pub fn replica_id(mut self, id: ReplicaId) -> Self {
        if let Some(shared) = Arc::get_mut(&mut self.shared) {
            shared.replica = id;
        }
        self
    }

    /// This replica's id.
    #[must_use]
    pub fn replica(&self) -> ReplicaId {
        self.shared.replica
    }

    fn status_now(&self) -> SyncStatus {
        let s = &self.shared;
        let connected = s.writer_up.load(Ordering::Relaxed) && s.reader_up.load(Ordering::Relaxed);
        let recent_drop = lock(&s.last_drop).is_some_and(|t| t.elapsed() < DROP_MEMORY);
        let mut st = SyncStatus::new(connected);
        st.degraded = !connected || recent_drop;
        st.queued = lock(&s.queue).len();
        st.queue_drops = s.drops.load(Ordering::Relaxed);
        st.ignored_messages = s.ignored.load(Ordering::Relaxed);
        st.holds_applied = s.applied.load(Ordering::Relaxed);
        st.holds_capped = s.capped.load(Ordering::Relaxed);
        st.detail = lock(&s.last_error)
            .clone()
            .map(|e| format!("{}: {e}", s.endpoint));
        if st.detail.is_none() && recent_drop {
            st.detail = Some("updates were dropped in the last minute".to_owned());
        }
        st
    }
}

impl<K> StateSync<K> for RedisSync
where
    K: Hash + Eq + Clone + fmt::Debug + fmt::Display + FromStr + Send + Sync + 'static,
{
    fn attach(&self, target: SyncTarget<K>) {
        if self.shared.attached.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                target: "safecall::fleet",
                "this RedisSync is already attached to a registry: attach one sync per registry"
            );
            return;
        }
        let alive = target.clone();
        self.runtime.spawn(tasks::writer(
            Arc::clone(&self.shared),
            self.config,
            move || alive.is_attached(),
        ));
        self.runtime
            .spawn(tasks::reader(Arc::clone(&self.shared), self.config, target));
    }

    fn publish(&self, key: &K, event: &LocalEvent) {
        let (kind, remaining) = match *event {
            LocalEvent::CooledDown {
                remaining,
                cut_short,
            } => (Kind::Cool { cut_short }, remaining),
            LocalEvent::ForcedOpen => (Kind::Forced, self.config.max_remote_hold),
            LocalEvent::Opened { open_for, .. } => (Kind::Opened, open_for),
            LocalEvent::Closed { .. } => (Kind::Closed, Duration::ZERO),
            _ => return,
        };
        let now = Instant::now();
        let until = now.checked_add(remaining).unwrap_or(now);
        let pushed = lock(&self.shared.queue).push(Pending {
            kind,
            until,
            key: key.to_string(),
        });
        if pushed == Pushed::Dropped {
            self.shared.dropped(1);
        } else {
            self.shared.wake.notify_one();
        }
    }

    fn status(&self) -> SyncStatus {
        self.status_now()
    }

    fn max_remote_hold(&self) -> Duration {
        self.config.max_remote_hold
    }
}

/// A replica id from the process's random hasher seed, the time and the
/// process id: distinct across replicas without a random crate.
fn random_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    let x = h.finish();
    (x ^ (x >> 32)) as u32
}
