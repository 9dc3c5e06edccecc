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
//! - at [`max_keys`](BreakerRegistry::max_keys), the least recently used idle
//!   closed breakers are evicted first;
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

use std::borrow::Borrow;
use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;
use crate::breaker::{Breaker, BreakerConfig, BreakerSnapshot, Core, Inner, Settings};

/// Stamp of an entry used since the last sweep.
const TOUCHED: u32 = u32::MAX;
/// The registry's coarse clock ticks in units of 10 ms.
const TICK: Duration = Duration::from_millis(10);
/// Most shards a registry uses.
const MAX_SHARDS: usize = 64;

/// The key hash is already a SipHash of the key: hash it as itself.
///
/// Only `write_u64` is used (the map's keys are `u64`); `write` is there to
/// complete the trait. Its mutants, and a constant `finish`, change how keys
/// spread over the map's buckets, never which entry a key finds: equivalent
/// for correctness (a constant hash makes lookups slow, not wrong).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(*b) ^ (self.0 >> 56);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Entry<K> = Arc<Inner<K>>;

struct Shard<K> {
    /// Keyed by the key's 64-bit hash; the key itself lives in the breaker,
    /// stored once.
    map: HashMap<u64, Entry<K>, BuildHasherDefault<IdHasher>>,
    /// Keys whose hash equals another stored key's (rare: a 64-bit keyed
    /// SipHash collision).
    collisions: Vec<(u64, Entry<K>)>,
    last_sweep: u32,
}

impl<K> Shard<K> {
    fn new() -> Self {
        Self {
            map: HashMap::default(),
            collisions: Vec::new(),
            last_sweep: 0,
        }
    }

    /// Entries in the map and in the collision list (only a 64-bit hash
    /// collision puts one there).
    fn len(&self) -> usize {
        self.map.len() + self.collisions.len()
    }

    fn find<Q>(&self, h: u64, key: &Q) -> Option<&Entry<K>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
    {
        match self.map.get(&h) {
            Some(e) if e.key.borrow() == key => Some(e),
            // A shortcut only: searching an empty list also finds nothing
            // (the mutant that drops the shortcut is equivalent).
            _ if self.collisions.is_empty() => None,
            _ => self
                .collisions
                .iter()
                .find(|(ch, e)| *ch == h && e.key.borrow() == key)
                .map(|(_, e)| e),
        }
    }

    fn insert(&mut self, h: u64, e: Entry<K>) {
        match self.map.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.push((h, e)),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(e);
            }
        }
    }

    fn entries(&self) -> impl Iterator<Item = (u64, &Entry<K>)> {
        self.map
            .iter()
            .map(|(h, e)| (*h, e))
            .chain(self.collisions.iter().map(|(h, e)| (*h, e)))
    }

    fn remove(&mut self, h: u64, e: &Entry<K>) -> bool {
        if self.map.get(&h).is_some_and(|m| Arc::ptr_eq(m, e)) {
            self.map.remove(&h);
            return true;
        }
        if let Some(i) = self.collisions.iter().position(|(_, c)| Arc::ptr_eq(c, e)) {
            self.collisions.swap_remove(i);
            return true;
        }
        false
    }
}

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
    /// `tick + 1` of the last full scan that found nothing to evict (0: none).
    stuck_at: AtomicU32,
}

impl<K> fmt::Debug for BreakerRegistry<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerRegistry")
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("max_keys", &self.max_keys)
            .field("idle_ttl", &self.idle_ttl)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// How many shards (a power of two). Sharding spreads contention; any count,
/// even one, gives the same answers (mutants of this and `shard_of` are
/// equivalent for correctness).
fn shard_count(max_keys: usize) -> usize {
    (max_keys / 256).clamp(1, MAX_SHARDS).next_power_of_two()
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
        let settings = Arc::new(config.validate()?);
        let max_keys = 100_000;
        let overflow = Breaker(Arc::new(Inner {
            core: Core::new(Arc::clone(&settings)),
            key: Overflow,
        }));
        Ok(Self {
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
            stuck_at: AtomicU32::new(0),
        })
    }

    /// The most keys kept at once (default 100,000). At the cap, the least
    /// recently used idle closed breakers are evicted; when none can be, new
    /// keys share the [overflow breaker](Self::overflow). Zero sends every
    /// key to the overflow breaker.
    #[must_use]
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        let n = shard_count(max_keys);
        if n != self.shards.len() {
            let old = std::mem::take(&mut self.shards);
            self.shards = (0..n).map(|_| RwLock::new(Shard::new())).collect();
            for shard in old.into_vec() {
                let shard = shard
                    .into_inner()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                for (h, e) in shard.map.into_iter().chain(shard.collisions) {
                    write(&self.shards[self.shard_of(h)]).insert(h, e);
                }
            }
        }
        self
    }

    /// How long a closed breaker may stay unused before it is evicted
    /// (default 10 minutes). Precision: 10 ms, and housekeeping runs when new
    /// keys are inserted, so eviction may come later than this, never sooner.
    #[must_use]
    pub fn idle_ttl(mut self, ttl: Duration) -> Self {
        self.idle_ttl = ttl;
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
        let settings = Arc::new(config.validate()?);
        self.overrides.insert(key, settings);
        Ok(self)
    }
}

/// # Lookup
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    fn shard_of(&self, h: u64) -> usize {
        // Bits 32.. pick the shard; the shard's map indexes by the low bits
        // and tags by the top 7, so the three stay independent.
        (h >> 32) as usize & (self.shards.len() - 1)
    }

    /// The coarse clock, saturating below the `TOUCHED` sentinel (reached
    /// after 497 days; mutants of that limit are equivalent before then).
    fn tick(&self, now: Instant) -> u32 {
        let t = now.saturating_duration_since(self.base).as_millis() / TICK.as_millis();
        (t as u32).min(TOUCHED - 1)
    }

    /// The TTL in ticks, rounded up; a TTL past 497 days saturates below
    /// `TOUCHED` (a mutant of that limit, `TOUCHED / 1`, is equivalent: no
    /// entry can be idle that long before the clock itself saturates).
    fn ttl_ticks(&self) -> u32 {
        let t = self.idle_ttl.as_nanos().div_ceil(TICK.as_nanos());
        u32::try_from(t).unwrap_or(TOUCHED - 1)
    }

    /// The breaker for `key`, created on first use.
    ///
    /// A lookup of an existing key takes a shared lock on one of up to 64
    /// shards, never an exclusive lock over the map, and reads no clock. A
    /// new key reads the clock once, may run housekeeping on its shard, and,
    /// if the registry is full and nothing can be evicted, returns the shared
    /// [overflow breaker](Self::overflow).
    ///
    /// ```
    /// # use safecall::{BreakerConfig, BreakerRegistry};
    /// let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    /// let breaker = breakers.get("org-46cf"); // &str for a String key
    /// # drop(breaker);
    /// ```
    pub fn get<Q>(&self, key: &Q) -> Breaker
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let h = self.hasher.hash_one(key);
        let shard = &self.shards[self.shard_of(h)];
        if let Some(e) = read(shard).find(h, key) {
            if e.core.seen() != TOUCHED {
                e.core.set_seen(TOUCHED);
            }
            return Breaker(Arc::clone(e) as Arc<Inner<_>>);
        }
        self.insert_slow(h, key)
    }

    #[cold]
    #[inline(never)]
    fn insert_slow<Q>(&self, h: u64, key: &Q) -> Breaker
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let now = Instant::now();
        let tick = self.tick(now);
        let home = self.shard_of(h);
        if !self.reserve() {
            self.make_room(home, now);
            if !self.reserve() {
                // Another thread may have created the key meanwhile.
                if let Some(e) = read(&self.shards[home]).find(h, key) {
                    return Breaker(Arc::clone(e) as Arc<Inner<_>>);
                }
                if !self.overflowing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        target: "safecall::registry",
                        max_keys = self.max_keys,
                        "breaker registry full and no idle closed breaker to evict: \
                         new keys share the overflow breaker"
                    );
                }
                return self.overflow.clone();
            }
        }
        let mut g = write(&self.shards[home]);
        if let Some(e) = g.find(h, key) {
            self.len.fetch_sub(1, Ordering::Relaxed);
            return Breaker(Arc::clone(e) as Arc<Inner<_>>);
        }
        let settings = if self.overrides.is_empty() {
            &self.settings
        } else {
            self.overrides.get(key).unwrap_or(&self.settings)
        };
        let entry = Arc::new(Inner {
            core: Core::new(Arc::clone(settings)),
            key: key.to_owned(),
        });
        entry.core.set_seen(tick);
        g.insert(h, Arc::clone(&entry));
        // Nothing can expire sooner than a TTL after its last use, so a shard
        // is swept for expiry at most every quarter TTL (on an insert).
        // (The cadence is a cost knob: sweeping more often evicts nothing
        // early, so mutants of it are equivalent.)
        if tick.wrapping_sub(g.last_sweep) >= (self.ttl_ticks() / 4).max(1) {
            self.sweep(&mut g, now, false);
        }
        drop(g);
        if self.overflowing.load(Ordering::Relaxed) {
            self.overflowing.store(false, Ordering::Relaxed);
        }
        Breaker(entry as Arc<Inner<_>>)
    }

    /// Take one unit of the key budget, if any is left.
    fn reserve(&self) -> bool {
        self.len
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.max_keys).then_some(n + 1)
            })
            .is_ok()
    }

    /// The registry is full: evict from the home shard, else from the others.
    fn make_room(&self, home: usize, now: Instant) {
        let tick = self.tick(now);
        if self.sweep(&mut write(&self.shards[home]), now, true) > 0 {
            return;
        }
        if self.stuck_at.load(Ordering::Relaxed) == tick.wrapping_add(1) {
            return; // scanned everything this tick already: nothing to evict
        }
        let n = self.shards.len();
        for i in 1..n {
            let idx = (home + i) & (n - 1);
            if self.sweep(&mut write(&self.shards[idx]), now, true) > 0 {
                return;
            }
        }
        self.stuck_at.store(tick.wrapping_add(1), Ordering::Relaxed);
    }

    /// Evict the shard's idle closed breakers past their TTL, and if
    /// `need_room` and none was, its least recently used eighth of idle
    /// closed breakers (at least one), so that the next inserts find room
    /// without a sweep each. Returns how many were evicted.
    fn sweep(&self, g: &mut Shard<K>, now: Instant, need_room: bool) -> usize {
        let tick = self.tick(now);
        g.last_sweep = tick;
        let ttl = self.ttl_ticks();
        let mut expired: Vec<(u64, Entry<K>)> = Vec::new();
        let mut idle: Vec<(u32, u64, Entry<K>)> = Vec::new();
        for (h, e) in g.entries() {
            let mut seen = e.core.seen();
            if seen == TOUCHED {
                // Used since the last sweep: count it as used now (later than
                // it was, so eviction can only come late).
                e.core.set_seen(tick);
                seen = tick;
            }
            // Only the map holds it (no handle, no permit), and it is closed.
            if Arc::strong_count(e) != 1 || !e.core.is_idle_closed() {
                continue;
            }
            if tick.wrapping_sub(seen) >= ttl {
                expired.push((h, Arc::clone(e)));
            } else if need_room {
                idle.push((seen, h, Arc::clone(e)));
            }
        }
        let mut evicted = 0;
        for (h, e) in expired {
            evicted += usize::from(g.remove(h, &e));
        }
        if need_room && evicted == 0 && !idle.is_empty() {
            let k = (g.len() / 8).clamp(1, idle.len());
            // The k longest unused first.
            idle.select_nth_unstable_by_key(k - 1, |(seen, _, _)| {
                std::cmp::Reverse(tick.wrapping_sub(*seen))
            });
            for (_, h, e) in idle.into_iter().take(k) {
                evicted += usize::from(g.remove(h, &e));
            }
        }
        // (Skipping a zero subtraction is only a saving: `>` → `>=` is an
        // equivalent mutant.)
        if evicted > 0 {
            self.len.fetch_sub(evicted, Ordering::Relaxed);
        }
        // Breakers kept but idle give back their window and machine once
        // those hold nothing a fresh breaker would not.
        for e in g
            .map
            .values_mut()
            .chain(g.collisions.iter_mut().map(|(_, e)| e))
        {
            if let Some(inner) = Arc::get_mut(e) {
                let idle_ticks = tick.wrapping_sub(inner.core.seen());
                inner.core.compact(now, TICK.saturating_mul(idle_ticks));
            }
        }
        evicted
    }
}

/// # Housekeeping
///
/// Counts and sweeps are approximate under concurrency: a key inserted or
/// evicted by another thread during the call may or may not be seen.
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// How many keys hold a breaker (the overflow breaker not included).
    #[must_use]
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
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
        &self.overflow
    }

    /// A snapshot of every key's breaker, in no particular order. Takes each
    /// shard's shared lock in turn.
    #[must_use]
    pub fn snapshot(&self) -> Vec<BreakerSnapshot<K>> {
        let mut out = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            let g = read(shard);
            out.extend(g.entries().map(|(_, e)| e.core.snapshot(e.key.clone())));
        }
        out
    }

    /// Evict now every idle closed breaker past its TTL, compact the idle
    /// ones kept (a breaker whose window has emptied gives back its window
    /// and state machine, about 150 bytes), and release the maps' spare
    /// capacity. Housekeeping also runs by itself as new keys arrive.
    pub fn retain_recent(&self) {
        let now = Instant::now();
        for shard in self.shards.iter() {
            let mut g = write(shard);
            self.sweep(&mut g, now, false);
            g.map.shrink_to_fit();
            g.collisions.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_counts_are_powers_of_two() {
        for n in [0, 1, 100, 256, 10_000, 100_000, 1_000_000, usize::MAX] {
            let s = shard_count(n);
            assert!(s.is_power_of_two() && s <= MAX_SHARDS, "{n} -> {s}");
        }
    }

    /// Keys `0..n` held in a registry of `max_keys` = `n`, and the shard each
    /// lives in.
    fn full(
        n: u32,
    ) -> (
        BreakerRegistry<u32>,
        Vec<Option<crate::Breaker>>,
        Vec<usize>,
    ) {
        let r: BreakerRegistry<u32> = BreakerRegistry::new(BreakerConfig::default())
            .max_keys(n as usize)
            .idle_ttl(Duration::from_secs(3600));
        let held = (0..n).map(|k| Some(r.get(&k))).collect();
        let shard = (0..n).map(|k| r.shard_of(r.hasher.hash_one(k))).collect();
        (r, held, shard)
    }

    /// A key from `from..` whose shard is `home`.
    fn key_in(r: &BreakerRegistry<u32>, home: usize, from: u32) -> u32 {
        (from..)
            .find(|k| r.shard_of(r.hasher.hash_one(k)) == home)
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn making_room_evicts_from_the_home_shard_first_and_stops_there() {
        let (r, mut held, shard) = full(1024);
        assert_eq!(r.shards.len(), 4);
        // One idle breaker in the new key's shard and one in another shard.
        let new = key_in(&r, 0, 10_000);
        let home_free = (0..1024).find(|&k| shard[k] == 0).unwrap();
        let other_free = (0..1024).find(|&k| shard[k] == 1).unwrap();
        held[home_free] = None;
        held[other_free] = None;
        assert!(!r.get(&new).ptr_eq(r.overflow()));
        let keys: Vec<u32> = r.snapshot().into_iter().map(|s| s.key).collect();
        assert!(!keys.contains(&(home_free as u32)), "the home shard's goes");
        assert!(
            keys.contains(&(other_free as u32)),
            "no other shard is swept"
        );
        assert_eq!(r.len(), 1024);
    }

    #[tokio::test(start_paused = true)]
    async fn making_room_elsewhere_stops_at_the_first_shard_that_had_some() {
        let (r, mut held, shard) = full(1024);
        // Nothing idle in the new key's shard (0); one idle in shards 1 and 2.
        let new = key_in(&r, 0, 10_000);
        let in1 = (0..1024).find(|&k| shard[k] == 1).unwrap();
        let in2 = (0..1024).find(|&k| shard[k] == 2).unwrap();
        held[in1] = None;
        held[in2] = None;
        assert!(!r.get(&new).ptr_eq(r.overflow()));
        let keys: Vec<u32> = r.snapshot().into_iter().map(|s| s.key).collect();
        let gone = [in1, in2]
            .iter()
            .filter(|&&k| !keys.contains(&(k as u32)))
            .count();
        assert_eq!(gone, 1, "one shard swept, the next one untouched");
        assert_eq!(r.len(), 1024);
    }

    #[test]
    fn colliding_hashes_keep_both_keys() {
        let mut shard: Shard<String> = Shard::new();
        let settings = Arc::new(BreakerConfig::default().validate().unwrap());
        let mk = |k: &str| {
            Arc::new(Inner {
                core: Core::new(Arc::clone(&settings)),
                key: k.to_owned(),
            })
        };
        let (a, b) = (mk("a"), mk("b"));
        shard.insert(7, Arc::clone(&a));
        shard.insert(7, Arc::clone(&b));
        assert!(Arc::ptr_eq(shard.find(7, "a").unwrap(), &a));
        assert!(Arc::ptr_eq(shard.find(7, "b").unwrap(), &b));
        assert!(shard.remove(7, &a));
        assert!(shard.find(7, "a").is_none());
        assert!(Arc::ptr_eq(shard.find(7, "b").unwrap(), &b));
        assert_eq!(shard.len(), 1);
    }
}
