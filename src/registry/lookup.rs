//! Lookups: [`BreakerRegistry::get`] and [`BreakerRegistry::with`], and the
//! insert of a new key (with its share of housekeeping).
//!
//! # Examples
//!
//! ```
//! use safecall::{BreakerConfig, BreakerRegistry, BreakerState};
//!
//! let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
//! let held = breakers.get("org-46cf"); // an owned handle
//! assert!(breakers.with("org-46cf", |b| b.ptr_eq(&held))); // a borrowed one
//! assert_eq!(breakers.with("org-46cf", |b| b.state()), BreakerState::Closed);
//! ```

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::eviction::{At, Goal, Step, TIDY};
use super::{BreakerRegistry, TICK, TOUCHED, read, shard_index, write};
use crate::breaker::{Breaker, Core, Inner};

/// Mark a breaker as used since the eviction hand last passed it. A write
/// only when the mark is not already there: lookups of a key in steady use
/// read its word and leave its cache line shared.
#[inline]
fn touch(b: &Breaker) {
    let core = &b.0.core;
    if core.seen() != TOUCHED {
        core.set_seen(TOUCHED);
    }
}

/// # Lookup
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// The hash of `key` (the registry's keyed SipHash).
    #[inline(always)]
    pub(super) fn hash<Q: ?Sized + Hash>(&self, key: &Q) -> u64 {
        self.s.hasher.hash_one(key)
    }

    #[inline(always)]
    pub(super) fn shard_of(&self, h: u64) -> usize {
        shard_index(h, self.s.shards.len())
    }

    /// The time of one operation: `now`, the coarse clock and the TTL in
    /// its ticks.
    pub(super) fn at(&self, now: Instant) -> At {
        At {
            now,
            tick: self.tick(now),
            ttl: self.ttl_ticks(),
        }
    }

    /// The coarse clock, saturating below the `TOUCHED` sentinel (reached
    /// after 497 days).
    pub(super) fn tick(&self, now: Instant) -> u32 {
        let t = now.saturating_duration_since(self.s.base).as_millis() / TICK.as_millis();
        (t as u32).min(TOUCHED - 1)
    }

    /// The TTL in ticks, rounded up; a TTL past 497 days saturates below
    /// `TOUCHED` (no entry can be idle that long before the clock itself
    /// saturates).
    pub(super) fn ttl_ticks(&self) -> u32 {
        let t = self.s.idle_ttl.as_nanos().div_ceil(TICK.as_nanos());
        u32::try_from(t).unwrap_or(TOUCHED - 1)
    }

    /// The breaker for `key`, created on first use.
    ///
    /// A lookup of an existing key takes a shared lock on one of up to 64
    /// shards, never an exclusive lock over the map, and reads no clock. A
    /// new key reads the clock once and looks at a few entries of its shard
    /// for housekeeping; if the registry is full it evicts one breaker (see
    /// the [module docs](crate::registry) for which), or, if none can go,
    /// returns the shared [overflow breaker](Self::overflow). The work per
    /// new key is bounded (amortised) and never a scan of the map.
    ///
    /// The handle is an `Arc` clone (an atomic increment now, a decrement
    /// when it is dropped): take it to hold the breaker across an `.await`.
    /// For synchronous use, [`with`](Self::with) lends the registry's own
    /// handle without either.
    ///
    /// ```
    /// # use safecall::{BreakerConfig, BreakerRegistry};
    /// let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    /// let breaker = breakers.get("org-46cf"); // &str for a String key
    /// # drop(breaker);
    /// ```
    #[inline(never)]
    pub fn get<Q>(&self, key: &Q) -> Breaker
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        // One lookup path for both. Out of line: inlined into a caller that
        // builds a large future (the tower layer's), it made that caller
        // move the future with a copy.
        self.with(key, Breaker::clone)
    }

    /// Run `f` on the breaker for `key` (created on first use, as
    /// [`get`](Self::get) does) without taking a handle: the borrowing
    /// lookup, for synchronous use of a breaker (ask, run, record; read its
    /// state).
    ///
    /// One hash, one probe of one shard's table, and no reference count
    /// touched: `f` borrows the registry's own handle. Where `get` clones the
    /// handle (an atomic increment, and a decrement when it is dropped, on a
    /// line every caller of that key shares), `with` only reads, apart from
    /// the shard's shared lock; the key's last-use mark is written only when
    /// the eviction hand has cleared it since the key's previous use.
    ///
    /// # Deadlocks
    ///
    /// `f` runs while the key's shard is read-locked (like a `DashMap`
    /// reference): a new key of that shard waits until `f` returns. Keep `f`
    /// short, and do not use this registry inside it (`get`, `with`,
    /// `snapshot`, `retain_recent`): a second lock on the same shard can
    /// deadlock. To hold a breaker across an `.await`, take a handle with
    /// [`get`](Self::get).
    ///
    /// # Examples
    ///
    /// ```
    /// use safecall::{BreakerConfig, BreakerRegistry, BreakerState, Outcome};
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// # fn send_sms() -> Result<(), ()> { Ok(()) }
    /// let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    ///
    /// let sent = breakers.with("org-46cf", |breaker| match breaker.try_acquire() {
    ///     Ok(permit) => {
    ///         let result = send_sms();
    ///         permit.record(if result.is_ok() { Outcome::Success } else { Outcome::Failure });
    ///         result.is_ok()
    ///     }
    ///     Err(_refused) => false,
    /// });
    /// assert!(sent);
    /// assert_eq!(breakers.with("org-46cf", |b| b.state()), BreakerState::Closed);
    /// # }
    /// ```
    #[inline]
    pub fn with<Q, R>(&self, key: &Q, f: impl FnOnce(&Breaker) -> R) -> R
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let h = self.hash(key);
        let shard = &self.s.shards[self.shard_of(h)];
        {
            let g = read(shard);
            if let Some(b) = g.find_then(h, key, touch) {
                return f(b);
            }
        }
        f(&self.insert_slow(h, key))
    }

    #[cold]
    #[inline(never)]
    pub(super) fn insert_slow<Q>(&self, h: u64, key: &Q) -> Breaker
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        let at = self.at(Instant::now());
        let home = self.shard_of(h);
        let room = self.reserve() || self.make_room(home, at) && self.reserve();
        if !room {
            // Another thread may have created the key meanwhile.
            if let Some(b) = read(&self.s.shards[home]).find(h, key) {
                return b.clone();
            }
            if !self.s.overflowing.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    target: "safecall::registry",
                    max_keys = self.s.max_keys,
                    "breaker registry full and no idle closed breaker to evict: \
                     new keys share the overflow breaker"
                );
            }
            return self.s.overflow.clone();
        }
        let mut g = write(&self.s.shards[home]);
        if let Some(b) = g.find(h, key) {
            self.s.len.fetch_sub(1, Ordering::Relaxed);
            return b.clone();
        }
        // Housekeeping, a few steps of the hands per new key (before the
        // new entry joins the ring: its handle is about to be returned).
        for (q, steps) in TIDY {
            for _ in 0..steps {
                if matches!(
                    self.step(&mut g, q, at, Goal::Tidy),
                    Step::Empty | Step::Stopped
                ) {
                    break;
                }
            }
        }
        self.compact_some(&mut g, at);
        let settings = if self.s.overrides.is_empty() {
            &self.s.settings
        } else {
            self.s.overrides.get(key).unwrap_or(&self.s.settings)
        };
        let entry = Arc::new(Inner {
            core: Core::with_hash(Arc::clone(settings), h),
            key: key.to_owned(),
        });
        entry.core.set_seen(at.tick);
        #[cfg(feature = "metrics")]
        self.s.metrics.key_added(&entry.key);
        let breaker = Breaker(entry as Arc<Inner<_>>);
        g.insert(h, breaker.clone());
        self.publish(home, &g);
        drop(g);
        if self.s.overflowing.load(Ordering::Relaxed) {
            self.s.overflowing.store(false, Ordering::Relaxed);
        }
        breaker
    }

    /// Take one unit of the key budget, if any is left.
    pub(super) fn reserve(&self) -> bool {
        self.s
            .len
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < self.s.max_keys).then_some(n + 1)
            })
            .is_ok()
    }
}
