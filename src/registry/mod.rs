//! [`BreakerRegistry`]: one circuit breaker per key (per tenant), created on
//! first use, with bounded memory.
//!
//! # Why per tenant
//!
//! In a multi-tenant service one tenant's broken credentials or exhausted
//! quota must not open the breaker that every other tenant's calls go
//! through. A registry keeps one breaker per key, created lazily on the first
//! [`get`](BreakerRegistry::get) (a new tenant needs no setup), and bounds the
//! memory a flood of keys can take:
//!
//! - a closed breaker idle for [`idle_ttl`](BreakerRegistry::idle_ttl) is
//!   evicted (it is equivalent to a fresh one);
//! - at [`max_keys`](BreakerRegistry::max_keys), a new key evicts an idle
//!   *pristine* closed breaker first (no counted failure: losing it loses
//!   nothing), roughly the least recently used, unless the hand first meets
//!   one past its idle TTL (which goes anyway); a closed breaker holding
//!   counted failures (one failure from tripping, say) stays until its idle
//!   TTL, unless nothing else can go;
//! - an open, half-open, forced-open or cooling-down breaker is never evicted
//!   (that would silently reset a tenant's protection), nor one whose handle
//!   (a [`Breaker`] from `get`, or a permit borrowing one) is still held
//!   somewhere: evicting it would let a second breaker be created for the same
//!   key while the first is still in use;
//! - when the cap is reached and nothing can be evicted, new keys share one
//!   overflow breaker (never unprotected, never unbounded) and a `tracing`
//!   warning says so.
//!
//! There is no task or timer per key, and no background task at all:
//! housekeeping is amortised over the inserts of new keys.
//!
//! # Lookups
//!
//! A lookup hashes the key once (the registry's keyed SipHash), takes the
//! shared lock of one of up to 64 shards and probes its table once. The table
//! holds the breakers' handles themselves, found by the hash each breaker
//! keeps: [`get`](BreakerRegistry::get) clones the handle it finds, and
//! [`with`](BreakerRegistry::with) lends it to a closure without touching
//! its reference count. The key's last-use mark for eviction is written only
//! when the eviction hand has cleared it since the key's last use, so a
//! key in steady use is only read.
//!
//! # How eviction stays cheap
//!
//! A new key into a full registry must not cost more when every breaker is
//! open (a provider outage, when new tenants' first calls matter most) than
//! when they are idle: it never scans the map, nor a shard. Each shard keeps
//! its entries in three queues, by what each was when last looked at:
//!
//! - the *ring*: new entries and idle pristine breakers, in eviction order. A
//!   hand takes entries off its front: one used since the hand last passed
//!   gets a second chance at the back (the CLOCK approximation of least
//!   recently used), an idle pristine one is the victim, and anything else
//!   moves to one of the other queues;
//! - *failing*: idle closed breakers holding counted failures;
//! - *pinned*: breakers that could not go (open, half-open, forced, cooling
//!   down, or a handle held).
//!
//! Housekeeping is a few steps per new key in its shard: the ring's hand
//! evicts breakers past their TTL from its front, one parked entry of each
//! kind is looked at again, and two idle breakers of the ring give back
//! their window and machine in place if those have emptied.
//!
//! A breaker's state changes, and handles drop, without the registry being
//! told, so parked entries are looked at again at a bounded rate: one of
//! each kind per new key as housekeeping, 16 of the new key's shard and 16 of one other
//! shard when making room. A new key at the cap takes, in order: a breaker
//! past its TTL at the front of its shard's failing queue, a victim from the
//! rings (its own shard's first), one that became evictable among
//! those revisited parked entries, and, when no ring holds anything, a
//! breaker holding counted failures; else it gets the overflow breaker. Each
//! entry taken off a ring was put there by an insert or a revisit, so the
//! rings' steps are paid for by inserts (and by the lookups whose use marks
//! they clear); the rest is bounded. The price: a breaker released after a
//! long hold, or closed again after an outage, is found within a bounded
//! number of new keys rather than by the first one.
//!
//! # Examples
//!
//! ```
//! use safecall::{BreakerConfig, BreakerRegistry, BreakerState, Outcome};
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breakers: BreakerRegistry<String> = BreakerRegistry::new(
//!     BreakerConfig::default().consecutive_failures(1),
//! )
//! .max_keys(100_000)
//! .idle_ttl(Duration::from_secs(600));
//!
//! let broken = breakers.get("org-46cf");
//! broken.try_acquire().unwrap().record(Outcome::Failure);
//! assert_eq!(broken.state(), BreakerState::Open);
//! // Another tenant is untouched.
//! assert_eq!(breakers.get("org-7a01").state(), BreakerState::Closed);
//!
//! let mut report = breakers.snapshot();
//! report.sort_by(|a, b| a.key.cmp(&b.key));
//! assert_eq!(report[0].key, "org-46cf");
//! assert_eq!(report[0].state, BreakerState::Open);
//! assert_eq!(breakers.len(), 2);
//! # }
//! ```

mod eviction;
mod fleet;
mod lookup;
mod shard;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;
use crate::breaker::{Breaker, BreakerConfig, BreakerSnapshot, Core, Inner, Settings};
use eviction::{Goal, Queue};
pub use fleet::{Applied, SyncTarget};
use shard::{Shard, key_of};

/// Stamp of an entry used since the eviction hand last passed it.
const TOUCHED: u32 = u32::MAX;
/// The registry's coarse clock ticks in units of 10 ms.
const TICK: Duration = Duration::from_millis(10);
/// Most shards a registry uses (a bit each in the registry's masks).
const MAX_SHARDS: usize = 64;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The key of the overflow breaker, for events.
struct Overflow;

impl fmt::Debug for Overflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("overflow")
    }
}

/// One circuit breaker per key, created on first use, with bounded memory.
///
/// See the [module docs](crate::registry) for eviction and the overflow
/// breaker.
///
/// # Examples
///
/// ```
/// use safecall::{Breaker, BreakerConfig, BreakerRegistry};
/// let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
/// let a: Breaker = breakers.get("org-46cf");
/// let b = breakers.get("org-46cf");
/// assert!(a.ptr_eq(&b), "one breaker per key");
/// ```
pub struct BreakerRegistry<K> {
    s: Arc<State<K>>,
}

impl<K> Clone for BreakerRegistry<K> {
    /// Another handle to the same registry (one reference count).
    fn clone(&self) -> Self {
        Self {
            s: Arc::clone(&self.s),
        }
    }
}

/// The registry's state, shared by its handles.
pub(crate) struct State<K> {
    shards: Box<[RwLock<Shard<K>>]>,
    hasher: RandomState,
    settings: Arc<Settings>,
    overrides: HashMap<K, Arc<Settings>>,
    max_keys: usize,
    idle_ttl: Duration,
    len: AtomicUsize,
    base: Instant,
    overflow: Breaker,
    overflowing: AtomicBool,
    /// Bit `i`: shard `i`'s ring is not empty (64 shards at most).
    rings: AtomicU64,
    /// Bit `i`: shard `i` has parked entries (failing or pinned).
    parked: AtomicU64,
    /// Bit `i`: shard `i` has idle breakers holding counted failures.
    failing: AtomicU64,
    /// Where the next look at another shard's parked entries starts.
    helper: AtomicUsize,
    /// The fleet's state sync, if one is attached (see `fleet`).
    fleet: Option<Arc<dyn crate::fleet::StateSync<K>>>,
    /// Where the sync's target finds this state (re-pointed by builder
    /// methods, which may move it).
    fleet_cell: Option<fleet::Cell<K>>,
    /// The registry's name ([`BreakerRegistry::name`]).
    name: &'static str,
    /// The registry's metrics, shared by its breakers' settings.
    #[cfg(feature = "metrics")]
    metrics: Arc<crate::metrics::BreakerMetrics>,
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("len", &self.s.len.load(Ordering::Relaxed))
            .field("max_keys", &self.s.max_keys)
            .field("idle_ttl", &self.s.idle_ttl)
            .field("shards", &self.s.shards.len())
            .finish_non_exhaustive()
    }
}

/// How many shards (a power of two). Sharding spreads contention; any count,
/// even one, gives the same answers.
fn shard_count(max_keys: usize) -> usize {
    (max_keys / 256).clamp(1, MAX_SHARDS).next_power_of_two()
}

/// The shard of hash `h` among `n` (a power of two). Bits 32.. pick the
/// shard; the shard's map indexes by the low bits and tags by the top 7, so
/// the three stay independent.
fn shard_index(h: u64, n: usize) -> usize {
    (h >> 32) as usize & (n - 1)
}

impl<K: Clone> Clone for State<K> {
    /// A separate registry state holding the same breakers (what a builder
    /// method makes of a registry whose handle has been cloned).
    fn clone(&self) -> Self {
        Self {
            shards: self
                .shards
                .iter()
                .map(|shard| RwLock::new(read(shard).clone()))
                .collect(),
            hasher: self.hasher.clone(),
            settings: Arc::clone(&self.settings),
            overrides: self.overrides.clone(),
            max_keys: self.max_keys,
            idle_ttl: self.idle_ttl,
            len: AtomicUsize::new(self.len.load(Ordering::Relaxed)),
            base: self.base,
            overflow: self.overflow.clone(),
            overflowing: AtomicBool::new(self.overflowing.load(Ordering::Relaxed)),
            rings: AtomicU64::new(self.rings.load(Ordering::Relaxed)),
            parked: AtomicU64::new(self.parked.load(Ordering::Relaxed)),
            failing: AtomicU64::new(self.failing.load(Ordering::Relaxed)),
            helper: AtomicUsize::new(self.helper.load(Ordering::Relaxed)),
            fleet: self.fleet.clone(),
            fleet_cell: self.fleet_cell.clone(),
            name: self.name,
            #[cfg(feature = "metrics")]
            metrics: Arc::clone(&self.metrics),
        }
    }
}

impl<K> Default for BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// A registry with [`BreakerConfig::default`] for every key.
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

/// # Building
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// A registry whose breakers use `config`, with `max_keys` 100,000 and
    /// `idle_ttl` 10 minutes.
    ///
    /// # Panics
    ///
    /// If [`try_new`](Self::try_new) refuses `config`.
    #[must_use]
    pub fn new(config: BreakerConfig) -> Self {
        match Self::try_new(config) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// A registry whose breakers use `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a config that
    /// [`Breaker::try_new`](crate::Breaker::try_new) refuses.
    pub fn try_new(config: BreakerConfig) -> Result<Self, ConfigError> {
        #[cfg(feature = "metrics")]
        let metrics = Arc::new(crate::metrics::BreakerMetrics::registry::<K>());
        #[allow(unused_mut)]
        let mut settings = config.validate()?;
        #[cfg(feature = "metrics")]
        {
            settings.metrics = Arc::clone(&metrics);
        }
        let settings = Arc::new(settings);
        let max_keys = 100_000;
        let overflow = Breaker(Arc::new(Inner {
            core: Core::new(Arc::clone(&settings)),
            key: Overflow,
        }));
        Ok(Self::from_state(State {
            shards: (0..shard_count(max_keys))
                .map(|_| RwLock::new(Shard::new()))
                .collect(),
            hasher: RandomState::new(),
            settings,
            overrides: HashMap::new(),
            max_keys,
            idle_ttl: Duration::from_secs(600),
            len: AtomicUsize::new(0),
            base: Instant::now(),
            overflow,
            overflowing: AtomicBool::new(false),
            rings: AtomicU64::new(0),
            parked: AtomicU64::new(0),
            failing: AtomicU64::new(0),
            helper: AtomicUsize::new(0),
            fleet: None,
            fleet_cell: None,
            name: "default",
            #[cfg(feature = "metrics")]
            metrics,
        }))
    }

    fn from_state(state: State<K>) -> Self {
        Self { s: Arc::new(state) }
    }

    /// The state, for a builder method: in place while this is the only
    /// handle; otherwise a separate copy (holding the same breakers so far),
    /// so that the other handles keep their configuration. (A guard: when
    /// it is dropped, an attached state sync's target is pointed at the
    /// state where it landed.)
    fn state_mut(&mut self) -> fleet::StateMut<'_, K> {
        fleet::StateMut::new(self)
    }

    /// The most keys kept at once (default 100,000). At the cap, a new key
    /// evicts an idle pristine closed breaker (roughly the least recently
    /// used), else, only when nothing else can go, an idle closed breaker
    /// holding counted failures; when none can go, new keys share the
    /// [overflow breaker](Self::overflow). See the
    /// [module docs](crate::registry). Zero sends every key to the overflow
    /// breaker.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        let mut st = self.state_mut();
        st.max_keys = max_keys;
        let n = shard_count(max_keys);
        let reshard = n != st.shards.len();
        if reshard {
            let old = std::mem::take(&mut st.shards);
            let mut shards: Vec<Shard<K>> = (0..n).map(|_| Shard::new()).collect();
            for shard in old.into_vec() {
                let shard = shard
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (h, e) in shard.into_entries() {
                    if let Some(home) = shards.get_mut(shard_index(h, n)) {
                        home.insert(h, e);
                    }
                }
            }
            st.shards = shards.into_iter().map(RwLock::new).collect();
            // Every entry is back in a ring, to be sorted again.
            st.parked = AtomicU64::new(0);
            st.failing = AtomicU64::new(0);
        }
        drop(st);
        if reshard {
            for (i, shard) in self.s.shards.iter().enumerate() {
                self.publish(i, &read(shard));
            }
        }
        self
    }

    /// How long a closed breaker may stay unused before it is evicted
    /// (default 10 minutes). Precision: 10 ms, and housekeeping looks at a
    /// few entries per new key (or at all of them in
    /// [`retain_recent`](Self::retain_recent)), so eviction may come later
    /// than this, never sooner.
    #[must_use]
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.state_mut().idle_ttl = ttl;
        self
    }

    /// Use `config` for `key`'s breaker instead of the registry's (a
    /// premium tenant, a provider with other limits). Applies to breakers
    /// created after this call; set overrides before use.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] for a config that
    /// [`Breaker::try_new`](crate::Breaker::try_new) refuses.
    pub fn with_key_config(mut self, key: K, config: BreakerConfig) -> Result<Self, ConfigError> {
        #[allow(unused_mut)]
        let mut settings = config.validate()?;
        #[cfg(feature = "metrics")]
        {
            settings.metrics = Arc::clone(&self.s.metrics);
        }
        self.state_mut().overrides.insert(key, Arc::new(settings));
        Ok(self)
    }

    /// Names the registry (default `"default"`): the `registry` label of the
    /// `safecall.breakers` gauge and the `policy` label of its breakers'
    /// events (feature `metrics`, see `safecall::metrics`).
    /// A `&'static str`, so the label's values stay a fixed set: name a
    /// registry per provider, never per tenant. Set it before the first
    /// [`get`](Self::get): handles already registered keep the old name.
    #[must_use]
    pub fn name(mut self, name: &'static str) -> Self {
        {
            let mut st = self.state_mut();
            st.name = name;
            #[cfg(feature = "metrics")]
            st.metrics.set_name(name);
        }
        self
    }

    /// Per-tenant detail in the metrics, **for services with few tenants**:
    /// `label` maps a key to a `tenant` label, or to `None` for the keys
    /// that share the label [`"other"`](crate::metrics::OTHER). The
    /// `safecall.breakers` gauge and the breakers' events then carry a
    /// `tenant` label; call metrics (per policy) do not.
    ///
    /// # Cardinality
    ///
    /// Every distinct label is a series per state and per event in your
    /// metrics backend, forever: Prometheus slows down and OpenTelemetry
    /// SDKs stop at 2,000 attribute sets per instrument. Return a label for
    /// a **fixed, small set** of keys (your ten largest customers, a plan
    /// tier), never the key itself, and `None` for the rest. The labels are
    /// `&'static str` so that a key cannot become one by accident. `label`
    /// must give a key the same answer every time: the gauge counts a key
    /// under the label it gets at each change. Set it before the first
    /// [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use safecall::{BreakerConfig, BreakerRegistry};
    ///
    /// let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default())
    ///     .name("twilio")
    ///     .metrics_label(|org: &String| match org.as_str() {
    ///         "org-acme" => Some("acme"),       // a handful of named tenants
    ///         "org-globex" => Some("globex"),
    ///         _ => None,                        // everyone else: tenant="other"
    ///     });
    /// # drop(breakers);
    /// ```
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[must_use]
    pub fn metrics_label(
        mut self,
        label: impl Fn(&K) -> Option<&'static str> + Send + Sync + 'static,
    ) -> Self {
        self.state_mut().metrics.set_label(label);
        self
    }
}

/// # Housekeeping
///
/// Counts and housekeeping are approximate under concurrency: a key inserted or
/// evicted by another thread during the call may or may not be seen.
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// How many keys hold a breaker (the overflow breaker not included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.s.len.load(Ordering::Relaxed)
    }

    /// Whether no key holds a breaker.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The breaker that new keys share when the registry is full and no
    /// breaker can be evicted.
    #[must_use]
    pub fn overflow(&self) -> &Breaker {
        &self.s.overflow
    }

    /// A snapshot of every key's breaker, in no particular order. Takes each
    /// shard's shared lock in turn.
    ///
    /// With the `metrics` feature it also brings the `safecall.breakers`
    /// gauge up to date with the clock: keys whose open period or cool-down
    /// ended since their last call are counted in the state the snapshot
    /// reports (see `safecall::metrics`).
    #[must_use]
    pub fn snapshot(&self) -> Vec<BreakerSnapshot<K>> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.s.shards.iter() {
            let g = read(shard);
            out.extend(g.entries().filter_map(|(_, b)| {
                let key = key_of::<K>(b)?;
                let (snapshot, _moved) = b.0.core.snapshot(key.clone());
                #[cfg(feature = "metrics")]
                if let Some((from, to)) = _moved {
                    self.s.metrics.moved(key, from, to);
                }
                Some(snapshot)
            }));
        }
        out
    }

    /// Evict now every idle closed breaker past its TTL, compact the idle
    /// ones kept (a breaker whose window has emptied gives back its window
    /// and state machine, about 150 bytes), sort every entry again for
    /// eviction, and release the maps' spare capacity. This looks at every
    /// entry; housekeeping also runs by itself, a few entries per new key.
    pub fn retain_recent(&self) {
        let at = self.at(Instant::now());
        for (idx, shard) in self.s.shards.iter().enumerate() {
            let mut g = write(shard);
            let mut all = std::mem::take(&mut g.ring);
            all.append(&mut g.failing);
            all.append(&mut g.pinned);
            let n = all.len();
            g.ring = all;
            for _ in 0..n {
                self.step(&mut g, Queue::Ring, at, Goal::Sort);
            }
            g.shrink_to_fit();
            self.publish(idx, &g);
        }
    }
}
