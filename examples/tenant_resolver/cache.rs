//! The resolver's cache: user → organisation, bounded in size and in age.
//!
//! A cache in front of the database must be bounded twice. In age, so that a
//! user moved to another organisation keeps the old one for at most the TTL.
//! In size, so that a flood of distinct users (a sign-up wave, a bot with valid
//! tokens) cannot grow the process's memory without limit.
//!
//! # How entries leave
//!
//! - **Age.** An entry older than the TTL is never served: every read checks it.
//!   Expired entries are dropped at the next insert, from the front of the
//!   insertion queue.
//! - **Size.** At `capacity`, an insert drops the oldest entries by insertion
//!   time (first in, first out) until there is room. Every entry has the same
//!   TTL, so the oldest entry is also the one closest to expiring: FIFO drops
//!   what would soon go anyway, in O(1) per insert (a queue beside the map, no
//!   scan). A dropped entry only costs a database read later, never a wrong
//!   answer.
//!
//! Written here rather than taken from a caching crate because it reads tokio's
//! clock through its `now` arguments, so the tests drive the TTL with a paused
//! clock, and because the whole policy fits on this page.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

/// A map from `String` keys to `V`, bounded by `capacity` entries and by `ttl`
/// per entry. See the module docs for the eviction rules.
#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    capacity: usize,
    entries: HashMap<String, Entry<V>>,
    /// Keys in insertion order, each with its insertion's stamp. A key
    /// inserted again leaves its old stamp behind; a stale stamp is skipped
    /// when it reaches the front, and the queue is compacted when stale stamps
    /// outnumber live ones, so it never holds more than `2 × capacity + 1`.
    order: VecDeque<(String, u64)>,
    next_stamp: u64,
}

#[derive(Debug)]
struct Entry<V> {
    value: V,
    inserted: Instant,
    stamp: u64,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache of at most `capacity` entries, each served for `ttl`.
    /// A capacity of zero caches nothing.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            ttl,
            capacity,
            entries: HashMap::new(),
            order: VecDeque::new(),
            next_stamp: 0,
        }
    }

    /// The value for `key`, if it was inserted less than the TTL before `now`.
    pub fn get(&self, key: &str, now: Instant) -> Option<V> {
        self.entries
            .get(key)
            .filter(|entry| !self.is_expired(entry, now))
            .map(|entry| entry.value.clone())
    }

    /// Stores `value` for `key` as of `now`, replacing an earlier value, after
    /// dropping the expired entries and, at capacity, the oldest ones.
    pub fn insert(&mut self, key: String, value: V, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        self.drop_expired(now);
        if !self.entries.contains_key(&key) {
            // Every live entry has its stamp in the queue, so this ends; the
            // check on `drop_oldest` only guards that invariant.
            while self.entries.len() >= self.capacity && self.drop_oldest() {}
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.order.push_back((key.clone(), stamp));
        self.entries.insert(
            key,
            Entry {
                value,
                inserted: now,
                stamp,
            },
        );
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order
                .retain(|(key, stamp)| entries.get(key).is_some_and(|e| e.stamp == *stamp));
        }
    }

    /// Entries held, expired ones not yet dropped included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Stamps in the insertion queue, stale ones included (for the tests:
    /// at most `2 × capacity + 1`).
    pub fn queued(&self) -> usize {
        self.order.len()
    }

    fn is_expired(&self, entry: &Entry<V>, now: Instant) -> bool {
        now.saturating_duration_since(entry.inserted) >= self.ttl
    }

    /// Is the front of the queue a live entry's own stamp?
    fn front_is_live(&self) -> Option<bool> {
        let (key, stamp) = self.order.front()?;
        Some(self.entries.get(key).is_some_and(|e| e.stamp == *stamp))
    }

    /// Drops expired entries from the front of the queue: insertion order is
    /// expiry order, so the first live entry that has not expired ends it.
    fn drop_expired(&mut self, now: Instant) {
        while let Some(live) = self.front_is_live() {
            if live {
                let (key, _) = &self.order[0];
                let expired = self
                    .entries
                    .get(key)
                    .is_some_and(|entry| self.is_expired(entry, now));
                if !expired {
                    return;
                }
                self.entries.remove(key);
            }
            self.order.pop_front();
        }
    }

    /// Drops the oldest live entry (and any stale stamps before it); false if
    /// there was none.
    fn drop_oldest(&mut self) -> bool {
        while let Some((key, stamp)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.stamp == stamp) {
                self.entries.remove(&key);
                return true;
            }
        }
        false
    }
}
