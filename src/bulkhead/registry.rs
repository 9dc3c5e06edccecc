//! [`BulkheadRegistry`]: one bulkhead per key (tenant, organisation, account),
//! made on first use, with bounded memory.

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::{Bulkhead, BulkheadConfig};
use crate::ConfigError;

/// Ring entries looked at per new key, at most: the bound on a new key's work.
const STEPS: usize = 32;
const SHARDS: usize = 16;

/// One bulkhead per key, made on first use (a new tenant needs no setup),
/// with a cap on the keys kept and idle eviction.
///
/// A cheap handle (`Clone`, an `Arc` inside), like [`Bulkhead`]. Only a key
/// whose bulkhead holds no permit, has nobody queued and no handle held
/// outside the registry is ever evicted: eviction never frees a tenant's
/// limit while calls are in flight. At the cap, when nothing can go, new keys
/// share one [overflow bulkhead](Self::overflow) (never unlimited, never
/// unbounded). A new key looks at a bounded number of entries; no task or
/// timer runs per key.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::{BulkheadConfig, BulkheadRegistry, SafeCall};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let bulkheads: BulkheadRegistry<String> =
///     BulkheadRegistry::new(BulkheadConfig::max_concurrent(8))
///         .max_keys(100_000)
///         .idle_ttl(Duration::from_secs(600));
/// let policy: SafeCall<std::io::Error> = SafeCall::default();
/// let tenant = bulkheads.get("org-46cf");
/// let v = policy
///     .call(|| async { Ok::<_, std::io::Error>(1) })
///     .bulkhead(&tenant)
///     .await;
/// assert_eq!(v.unwrap(), 1);
/// assert!(tenant.ptr_eq(&bulkheads.get("org-46cf")), "one bulkhead per key");
/// # }
/// ```
pub struct BulkheadRegistry<K> {
    s: Arc<State<K>>,
}

impl<K> Clone for BulkheadRegistry<K> {
    /// Another handle to the same registry.
    fn clone(&self) -> Self {
        Self {
            s: Arc::clone(&self.s),
        }
    }
}

struct State<K> {
    config: BulkheadConfig,
    /// The ceiling over all keys, if one is set: taken after a key's permit.
    global: Option<Bulkhead>,
    shards: Box<[RwLock<Shard<K>>]>,
    hasher: RandomState,
    max_keys: usize,
    idle_ttl: Duration,
    len: AtomicUsize,
    overflow: Bulkhead,
    base: Instant,
}

struct Shard<K> {
    map: HashMap<K, Entry>,
    /// Every key of the map once, in the order eviction looks at them.
    ring: VecDeque<K>,
}

struct Entry {
    bulkhead: Bulkhead,
    /// Milliseconds since the registry's base at the last `get`.
    last_use: AtomicU64,
}

/// A key's bulkhead now, for a health report.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadSnapshot<K> {
    /// The key.
    pub key: K,
    /// Permits out.
    pub in_use: u32,
    /// Callers queued.
    pub queued: u32,
    /// The limit.
    pub limit: u32,
}

impl<K> BulkheadSnapshot<K> {
    /// Whether every permit is out: the tenant is at its limit.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.in_use >= self.limit
    }
}

impl<K> fmt::Debug for BulkheadRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadRegistry")
            .field("len", &self.s.len.load(Ordering::Relaxed))
            .field("max_keys", &self.s.max_keys)
            .field("idle_ttl", &self.s.idle_ttl)
            .finish_non_exhaustive()
    }
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<K> BulkheadRegistry<K>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
{
    /// A registry whose bulkheads use `config`, with `max_keys` 100,000 and
    /// `idle_ttl` 10 minutes.
    ///
    /// # Panics
    ///
    /// If [`try_new`](Self::try_new) refuses `config`.
    #[must_use]
    pub fn new(config: BulkheadConfig) -> Self {
        match Self::try_new(config) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// A registry whose bulkheads use `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a config [`Bulkhead::try_new`] refuses.
    pub fn try_new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        let overflow = Bulkhead::try_new(config)?;
        Ok(Self {
            s: Arc::new(State {
                config,
                global: None,
                shards: (0..SHARDS)
                    .map(|_| {
                        RwLock::new(Shard {
                            map: HashMap::new(),
                            ring: VecDeque::new(),
                        })
                    })
                    .collect(),
                hasher: RandomState::new(),
                max_keys: 100_000,
                idle_ttl: Duration::from_secs(600),
                len: AtomicUsize::new(0),
                overflow,
                base: Instant::now(),
            }),
        })
    }

    /// The most keys kept at once (default 100,000). Configure before
    /// cloning the handle or making keys: on a shared handle this makes a
    /// separate, empty registry.
    #[must_use]
    pub fn max_keys(self, max_keys: usize) -> Self {
        self.rebuild(|s| s.max_keys = max_keys)
    }

    /// How long a key may stay unused before its bulkhead may be evicted
    /// (default 10 minutes; only a bulkhead with no permit out and nobody
    /// queued goes). Configure before use, as [`max_keys`](Self::max_keys).
    #[must_use]
    pub fn idle_ttl(self, ttl: Duration) -> Self {
        self.rebuild(|s| s.idle_ttl = ttl)
    }

    /// A ceiling over all keys (`max_concurrent` of `config`; its `max_wait`
    /// is not used): a call takes its key's permit, then one of the ceiling's,
    /// and is refused with [`Error::BulkheadFull`](crate::Error::BulkheadFull)
    /// when the ceiling is full (it does not queue). Set it while building
    /// the registry: it starts the registry afresh (keys made before are not
    /// kept).
    ///
    /// # Panics
    ///
    /// If [`try_global`](Self::try_global) refuses `config`
    /// (`max_concurrent(0)`).
    #[must_use]
    pub fn global(self, config: BulkheadConfig) -> Self {
        match self.try_global(config) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`global`](Self::global), refusing a bad config instead of panicking.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a config [`Bulkhead::try_new`] refuses.
    pub fn try_global(self, config: BulkheadConfig) -> Result<Self, ConfigError> {
        let global = Bulkhead::try_new(config.max_wait(Duration::ZERO))?;
        let overflow = Bulkhead::with_ceiling(self.s.config, Some(global.clone()))?;
        let (max_keys, idle_ttl) = (self.s.max_keys, self.s.idle_ttl);
        let mut state = State {
            config: self.s.config,
            global: Some(global),
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        map: HashMap::new(),
                        ring: VecDeque::new(),
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            max_keys,
            idle_ttl,
            len: AtomicUsize::new(0),
            overflow,
            base: self.s.base,
        };
        state.max_keys = max_keys;
        Ok(Self { s: Arc::new(state) })
    }

    /// The ceiling over all keys, if [`global`](Self::global) set one.
    #[must_use]
    pub fn global_ceiling(&self) -> Option<&Bulkhead> {
        self.s.global.as_ref()
    }

    fn rebuild(self, set: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings {
            max_keys: self.s.max_keys,
            idle_ttl: self.s.idle_ttl,
        };
        set(&mut settings);
        match Arc::try_unwrap(self.s) {
            Ok(mut state) => {
                state.max_keys = settings.max_keys;
                state.idle_ttl = settings.idle_ttl;
                Self { s: Arc::new(state) }
            }
            Err(shared) => {
                let mut state = State {
                    config: shared.config,
                    global: shared.global.clone(),
                    shards: (0..SHARDS)
                        .map(|_| {
                            RwLock::new(Shard {
                                map: HashMap::new(),
                                ring: VecDeque::new(),
                            })
                        })
                        .collect(),
                    hasher: RandomState::new(),
                    max_keys: 0,
                    idle_ttl: Duration::ZERO,
                    len: AtomicUsize::new(0),
                    overflow: shared.overflow.clone(),
                    base: shared.base,
                };
                state.max_keys = settings.max_keys;
                state.idle_ttl = settings.idle_ttl;
                Self { s: Arc::new(state) }
            }
        }
    }

    /// The bulkhead of `key`, made on first use (the overflow bulkhead when
    /// the registry is full of keys that cannot go).
    pub fn get<Q>(&self, key: &Q) -> Bulkhead
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let s = &self.s;
        let shard = &s.shards[self.shard_of(key)];
        let now = self.ms(Instant::now());
        if let Some(e) = read(shard).map.get(key) {
            e.last_use.store(now, Ordering::Relaxed);
            return e.bulkhead.clone();
        }
        self.insert(key, now)
    }

    #[cold]
    fn insert<Q>(&self, key: &Q, now: u64) -> Bulkhead
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let s = &self.s;
        let home = self.shard_of(key);
        {
            let mut g = write(&s.shards[home]);
            if let Some(e) = g.map.get(key) {
                e.last_use.store(now, Ordering::Relaxed);
                return e.bulkhead.clone();
            }
            // Housekeeping: a couple of steps of idle eviction per new key.
            self.evict_steps(&mut g, 2, now, false);
        }
        if s.len.load(Ordering::Relaxed) >= s.max_keys && !self.make_room(home, now) {
            return s.overflow.clone();
        }
        let mut g = write(&s.shards[home]);
        if let Some(e) = g.map.get(key) {
            return e.bulkhead.clone();
        }
        let bulkhead = match Bulkhead::with_ceiling(s.config, s.global.clone()) {
            Ok(b) => b,
            // The config was validated when the registry was built.
            Err(_) => return s.overflow.clone(),
        };
        let owned = key.to_owned();
        g.ring.push_back(owned.clone());
        g.map.insert(
            owned,
            Entry {
                bulkhead: bulkhead.clone(),
                last_use: AtomicU64::new(now),
            },
        );
        s.len.fetch_add(1, Ordering::Relaxed);
        bulkhead
    }

    /// Evict one key that can go, looking at most [`STEPS`] entries over the
    /// shards from `home` on. Whether one went.
    fn make_room(&self, home: usize, now: u64) -> bool {
        let n = self.s.shards.len();
        let mut budget = STEPS;
        for i in 0..n {
            if budget == 0 {
                break;
            }
            let mut g = write(&self.s.shards[(home + i) % n]);
            let steps = budget.min(g.ring.len());
            budget -= steps;
            if self.evict_steps(&mut g, steps, now, true) {
                return true;
            }
        }
        false
    }

    /// Look at up to `steps` ring entries: evict the first that can go (any
    /// idle one when `at_cap`, else one idle past the TTL). Whether one went.
    fn evict_steps(&self, g: &mut Shard<K>, steps: usize, now: u64, at_cap: bool) -> bool {
        let ttl = u64::try_from(self.s.idle_ttl.as_millis()).unwrap_or(u64::MAX);
        for _ in 0..steps {
            let Some(k) = g.ring.pop_front() else {
                return false;
            };
            let evictable = g.map.get(&k).is_some_and(|e| {
                let idle = Arc::strong_count(&e.bulkhead.0) == 1
                    && e.bulkhead.in_use() == 0
                    && e.bulkhead.queued() == 0;
                let expired = now.saturating_sub(e.last_use.load(Ordering::Relaxed)) >= ttl;
                idle && (at_cap || expired)
            });
            if evictable {
                g.map.remove(&k);
                self.s.len.fetch_sub(1, Ordering::Relaxed);
                return true;
            }
            if g.map.contains_key(&k) {
                g.ring.push_back(k);
            }
        }
        false
    }

    /// Evict now every key idle past the TTL that can go.
    pub fn retain_recent(&self) {
        let now = self.ms(Instant::now());
        for shard in self.s.shards.iter() {
            let mut g = write(shard);
            let n = g.ring.len();
            while self.evict_steps(&mut g, n, now, false) {}
        }
    }

    fn shard_of<Q: ?Sized + Hash>(&self, key: &Q) -> usize {
        (self.s.hasher.hash_one(key) as usize) % self.s.shards.len()
    }

    fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.s.base).as_millis()).unwrap_or(u64::MAX)
    }
}

struct Settings {
    max_keys: usize,
    idle_ttl: Duration,
}

impl<K: Clone> BulkheadRegistry<K> {
    /// Keys kept now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.s.len.load(Ordering::Relaxed)
    }

    /// Whether no key is kept.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bulkhead new keys share when the registry is full of keys that
    /// cannot go.
    #[must_use]
    pub fn overflow(&self) -> &Bulkhead {
        &self.s.overflow
    }

    /// Every key's bulkhead now (permits out, queued callers, limit): for a
    /// health report, which can name the tenants at their limit.
    #[must_use]
    pub fn snapshot(&self) -> Vec<BulkheadSnapshot<K>> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.s.shards.iter() {
            for (k, e) in &read(shard).map {
                out.push(BulkheadSnapshot {
                    key: k.clone(),
                    in_use: e.bulkhead.in_use(),
                    queued: e.bulkhead.queued(),
                    limit: e.bulkhead.limit(),
                });
            }
        }
        out
    }
}

impl<K> BulkheadRegistry<K>
where
    K: Clone + Ord + fmt::Display + Send + Sync + 'static,
{
    /// A non-critical health check named `name` over these bulkheads: healthy
    /// when no key is at its limit, degraded when some are, naming the first
    /// ten in key order (a tenant at its limit is being throttled by this
    /// client: its calls are refused or queued). Keys are shown with their
    /// `Display`: a key must not be a secret.
    ///
    /// # Examples
    ///
    /// ```
    /// use safecall::health::{HealthChecks, HealthStatus};
    /// use safecall::{BulkheadConfig, BulkheadRegistry};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() -> Result<(), safecall::ConfigError> {
    /// let bulkheads: BulkheadRegistry<String> =
    ///     BulkheadRegistry::new(BulkheadConfig::max_concurrent(1));
    /// let checks = HealthChecks::builder().check(bulkheads.check("Bulkheads")).build()?;
    /// let org = bulkheads.get("org-46cf");
    /// let _busy = org.try_acquire().unwrap();
    /// let report = checks.run().await;
    /// assert_eq!(report.status, HealthStatus::Degraded);
    /// assert!(report.integrations[0].message.contains("org-46cf"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn check(&self, name: impl Into<String>) -> crate::health::Check {
        let registry = self.clone();
        crate::health::Check::non_critical(name, move || {
            let mut full: Vec<K> = registry
                .snapshot()
                .into_iter()
                .filter(BulkheadSnapshot::is_full)
                .map(|s| s.key)
                .collect();
            full.sort();
            let outcome = if full.is_empty() {
                crate::health::CheckOutcome::healthy("No tenant at its concurrency limit")
            } else {
                let mut message = format!("{} at the concurrency limit: ", full.len());
                for (i, k) in full.iter().take(10).enumerate() {
                    if i > 0 {
                        message.push_str(", ");
                    }
                    message.push_str(&k.to_string());
                }
                if full.len() > 10 {
                    message.push_str(&format!(" and {} more", full.len() - 10));
                }
                crate::health::CheckOutcome::degraded(message).recommend(
                    "These tenants send more concurrent calls than their limit: \
                     their excess is refused or queued; check for a flood or raise \
                     the limit",
                )
            };
            std::future::ready(Ok(outcome))
        })
    }
}
