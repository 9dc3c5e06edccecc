//! A shard of the registry: its table of breakers, keyed by the hash each
//! breaker keeps, and the three queues the eviction hands walk (see
//! [`eviction`](super::eviction)).

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::marker::PhantomData;

use hashbrown::HashTable;

use super::eviction::Queue;
use crate::breaker::Breaker;

/// The hash a registry breaker was stored under (its key's).
#[inline(always)]
pub(super) fn hash_of(b: &Breaker) -> u64 {
    b.0.core.hash
}

/// A registry breaker's key as the registry's key type (always `Some` for
/// the breakers a `Shard<K>` holds: it stores only `Inner<K>`).
#[inline(always)]
pub(super) fn key_of<K: 'static>(b: &Breaker) -> Option<&K> {
    // (Upcasting `dyn KeyLabel` to `dyn Any` would save the `as_any` call,
    // about 7 instructions, but needs Rust 1.86: `rust-version` is 1.85.)
    b.0.key.as_any().downcast_ref()
}

pub(super) struct Shard<K> {
    /// Breaker handles (the very values a borrowing lookup lends), found
    /// by the 64-bit hash each keeps; the key itself lives in the breaker,
    /// stored once. At most one entry per hash.
    pub(super) map: HashTable<Breaker>,
    /// Keys whose hash equals another stored key's (rare: a 64-bit keyed
    /// SipHash collision). When the map's entry for that hash goes, one of
    /// these takes its place, so the queues' hashes always name a map entry.
    pub(super) collisions: Vec<Breaker>,
    pub(super) ring: VecDeque<u64>,
    /// Position in the ring of the next entry to compact, kept on the same
    /// entry as the ring's front moves.
    pub(super) compact_at: usize,
    pub(super) failing: VecDeque<u64>,
    pub(super) pinned: VecDeque<u64>,
    key: PhantomData<fn() -> K>,
}

impl<K> Clone for Shard<K> {
    fn clone(&self) -> Self {
        Self {
            map: self.map.clone(),
            collisions: self.collisions.clone(),
            ring: self.ring.clone(),
            compact_at: self.compact_at,
            failing: self.failing.clone(),
            pinned: self.pinned.clone(),
            key: PhantomData,
        }
    }
}

impl<K: 'static> Shard<K> {
    pub(super) fn new() -> Self {
        Self {
            map: HashTable::new(),
            collisions: Vec::new(),
            ring: VecDeque::new(),
            compact_at: 0,
            failing: VecDeque::new(),
            pinned: VecDeque::new(),
            key: PhantomData,
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

    /// The breaker of `key`, whose hash is `h`: one probe of the table.
    #[inline(always)]
    pub(super) fn find<Q>(&self, h: u64, key: &Q) -> Option<&Breaker>
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
    {
        self.find_then(h, key, |_| ())
    }

    /// [`find`](Self::find), running `hit` on the breaker found before it
    /// is returned: from inside the probe, where the breaker's address is
    /// already at hand (a lookup marks its use there).
    #[inline(always)]
    pub(super) fn find_then<Q>(&self, h: u64, key: &Q, hit: impl Fn(&Breaker)) -> Option<&Breaker>
    where
        K: Borrow<Q>,
        Q: ?Sized + Eq,
    {
        let is_key = |b: &Breaker| {
            let found = hash_of(b) == h && key_of::<K>(b).is_some_and(|k| k.borrow() == key);
            if found {
                hit(b);
            }
            found
        };
        match self.map.find(h, is_key) {
            Some(b) => Some(b),
            // A shortcut only: searching an empty list also finds nothing.
            None if self.collisions.is_empty() => None,
            None => self.collisions.iter().find(|b| is_key(b)),
        }
    }

    /// The map's entry for hash `h` (the one a queue's `h` names).
    pub(super) fn get_mut(&mut self, h: u64) -> Option<&mut Breaker> {
        self.map.find_mut(h, |b| hash_of(b) == h)
    }

    /// Store a new entry (a breaker built with its key's hash `h`), at the
    /// back of the ring (the last the hand meets).
    pub(super) fn insert(&mut self, h: u64, b: Breaker) {
        if self.map.find(h, |e| hash_of(e) == h).is_some() {
            self.collisions.push(b);
        } else {
            self.map.insert_unique(h, b, hash_of);
        }
        self.ring.push_back(h);
    }

    /// Drop the map's entry for `h` (its hash was just taken off a queue);
    /// a colliding entry with the same hash takes its place.
    pub(super) fn evict(&mut self, h: u64) {
        if let Ok(e) = self.map.find_entry(h, |b| hash_of(b) == h) {
            e.remove();
        }
        if let Some(i) = self.collisions.iter().position(|b| hash_of(b) == h) {
            let b = self.collisions.swap_remove(i);
            self.map.insert_unique(h, b, hash_of);
        }
    }

    pub(super) fn entries(&self) -> impl Iterator<Item = (u64, &Breaker)> {
        self.map
            .iter()
            .chain(self.collisions.iter())
            .map(|b| (hash_of(b), b))
    }

    /// Every entry, the shard consumed (to move them to other shards).
    pub(super) fn into_entries(self) -> impl Iterator<Item = (u64, Breaker)> {
        self.map
            .into_iter()
            .chain(self.collisions)
            .map(|b| (hash_of(&b), b))
    }

    /// Release the spare capacity of the table and the queues.
    pub(super) fn shrink_to_fit(&mut self) {
        self.map.shrink_to_fit(hash_of);
        self.collisions.shrink_to_fit();
        self.ring.shrink_to_fit();
        self.failing.shrink_to_fit();
        self.pinned.shrink_to_fit();
    }
}
