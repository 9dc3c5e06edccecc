//! A shard of the registry: its map from key hashes to breakers, and the
//! three queues the eviction hands walk (see [`eviction`](super::eviction)).

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::eviction::Queue;
use crate::breaker::Inner;

/// The key hash is already a SipHash of the key: hash it as itself.
///
/// Only `write_u64` is used (the map's keys are `u64`); `write` is there to
/// complete the trait. How keys spread over the map's buckets never changes
/// which entry a key finds (a constant hash makes lookups slow, not wrong).
#[derive(Default)]
pub(super) struct IdHasher(u64);

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

pub(super) type Entry<K> = Arc<Inner<K>>;

#[derive(Clone)]
pub(super) struct Shard<K> {
    /// Keyed by the key's 64-bit hash; the key itself lives in the breaker,
    /// stored once.
    pub(super) map: HashMap<u64, Entry<K>, BuildHasherDefault<IdHasher>>,
    /// Keys whose hash equals another stored key's (rare: a 64-bit keyed
    /// SipHash collision). When the map's entry for that hash goes, one of
    /// these takes its place, so the queues' hashes always name a map entry.
    pub(super) collisions: Vec<(u64, Entry<K>)>,
    pub(super) ring: VecDeque<u64>,
    /// Position in the ring of the next entry to compact, kept on the same
    /// entry as the ring's front moves.
    pub(super) compact_at: usize,
    pub(super) failing: VecDeque<u64>,
    pub(super) pinned: VecDeque<u64>,
}

impl<K> Shard<K> {
    pub(super) fn new() -> Self {
        Self {
            map: HashMap::default(),
            collisions: Vec::new(),
            ring: VecDeque::new(),
            compact_at: 0,
            failing: VecDeque::new(),
            pinned: VecDeque::new(),
        }
    }

    /// Entries in the map and in the collision list (only a 64-bit hash
    /// collision puts one there).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len() + self.collisions.len()
    }

    pub(super) fn queue(&mut self, q: Queue) -> &mut VecDeque<u64> {
        match q {
            Queue::Ring => &mut self.ring,
            Queue::Failing => &mut self.failing,
            Queue::Pinned => &mut self.pinned,
        }
    }

    pub(super) fn find<Q>(&self, h: u64, key: &Q) -> Option<&Entry<K>>
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
    {
        match self.map.get(&h) {
            Some(e) if e.key.borrow() == key => Some(e),
            // A shortcut only: searching an empty list also finds nothing.
            _ if self.collisions.is_empty() => None,
            _ => self
                .collisions
                .iter()
                .find(|(ch, e)| *ch == h && e.key.borrow() == key)
                .map(|(_, e)| e),
        }
    }

    /// Store a new entry, at the back of the ring (the last the hand meets).
    pub(super) fn insert(&mut self, h: u64, e: Entry<K>) {
        match self.map.entry(h) {
            std::collections::hash_map::Entry::Occupied(_) => self.collisions.push((h, e)),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(e);
            }
        }
        self.ring.push_back(h);
    }

    /// Drop the map's entry for `h` (its hash was just taken off a queue);
    /// a colliding entry with the same hash takes its place.
    pub(super) fn evict(&mut self, h: u64) {
        self.map.remove(&h);
        if let Some(i) = self.collisions.iter().position(|(ch, _)| *ch == h) {
            let (_, e) = self.collisions.swap_remove(i);
            self.map.insert(h, e);
        }
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, &Entry<K>)> {
        self.map
            .iter()
            .map(|(h, e)| (*h, e))
            .chain(self.collisions.iter().map(|(h, e)| (*h, e)))
    }
}
