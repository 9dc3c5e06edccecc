//! Eviction: the hands that walk each shard's queues, making room at the
//! cap and keeping house, a bounded number of steps per new key (see the
//! [module docs](super) for the order and the costs).

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::shard::Shard;
use super::{BreakerRegistry, TICK, TOUCHED, write};
use crate::breaker::{Inner, KeyLabel};

/// Housekeeping per new key: steps of the hands over the home shard's ring,
/// failing and pinned entries.
pub(super) const TIDY: [(Queue, usize); 3] =
    [(Queue::Ring, 2), (Queue::Failing, 1), (Queue::Pinned, 1)];
/// Entries of the home shard's failing queue looked at first when making
/// room, for one past its TTL.
const EXPIRED_GLANCE: usize = 2;
/// Ring entries compacted in place per new key.
const COMPACT_STEPS: usize = 2;
/// Parked entries looked at again per shard when making room.
pub(super) const REVISIT: usize = 16;
/// Most steps of a hand per taking of a shard's lock.
const CHUNK: usize = 256;

/// The time of one operation, read once.
#[derive(Debug, Clone, Copy)]
pub(super) struct At {
    pub(super) now: Instant,
    pub(super) tick: u32,
    pub(super) ttl: u32,
}

/// Where an entry waits for the eviction hand, by what it was when last
/// looked at. Every entry of a shard is in exactly one queue, by its hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// New entries and idle pristine ones (closed, no counted failure): the
    /// clock whose hand finds the first victims.
    Ring,
    /// Idle closed breakers holding counted failures: kept until their TTL
    /// unless nothing else can go.
    Failing,
    /// Breakers that could not go: open, half-open, forced, cooling down, or
    /// with a handle held somewhere. Looked at again at a bounded rate.
    Pinned,
}

/// What one look at an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Goal {
    /// Housekeeping: evict only what is past its TTL. The hand stops at
    /// the first pristine breaker not used since it last passed (the ring's
    /// order is its eviction order: passing it would move it behind newer
    /// entries).
    Tidy,
    /// Like `Tidy`, but the hand passes everything (a full lap keeps the
    /// ring's order).
    Sort,
    /// Make room: also evict an idle pristine breaker not used since the
    /// hand last passed it.
    Room,
    /// Make room when nothing else can go: also a breaker holding counted
    /// failures, if not used since the hand last passed it.
    LastResort,
}

/// What one step of the hand did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// The queue was empty.
    Empty,
    /// The entry was evicted.
    Evicted,
    /// The entry was kept (re-queued) or was already gone.
    Kept,
    /// The hand stopped at the entry (`Goal::Tidy`).
    Stopped,
}

#[cfg(test)]
thread_local! {
    /// Entries the hand looked at on this thread (tests bound the work per
    /// new key with it).
    pub(super) static EXAMINED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// Breakers compacted on this thread.
    pub(super) static COMPACTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Drop an idle breaker's window and machine if they hold nothing a fresh
/// breaker would not; it has not been handed out for `idle_ticks`.
fn compact<K: 'static>(
    inner: &mut Inner<dyn KeyLabel>,
    at: At,
    idle_ticks: u32,
    _s: &super::State<K>,
) {
    let (_done, _moved) = inner.core.compact(at.now, TICK.saturating_mul(idle_ticks));
    #[cfg(feature = "metrics")]
    if let Some((from, to)) = _moved {
        _s.metrics.moved(inner.key.as_any(), from, to);
    }
    #[cfg(test)]
    if _done {
        COMPACTED.with(|n| n.set(n.get() + 1));
    }
}

/// # Eviction
impl<K> BreakerRegistry<K>
where
    K: Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    /// The registry is full: evict one breaker. In order: a breaker holding
    /// failures past its TTL at the front of the home shard's failing queue;
    /// an idle pristine breaker (or one past its TTL) from the rings, the
    /// home shard's first, then the other shards' with entries in theirs;
    /// one that became evictable among a few parked entries of the home
    /// shard and of one other; and, when no ring holds anything, an idle
    /// breaker holding counted failures. Returns whether one was evicted.
    ///
    /// Each entry taken off a ring was put there once by an insert or a
    /// revisit, so the rings' steps are paid for by inserts (and by the
    /// lookups whose use marks they clear); the revisits are bounded.
    pub(super) fn make_room(&self, home: usize, at: At) -> bool {
        // A breaker holding failures past its TTL would go anyway: it goes
        // before a pristine one that may be used again (a glance at the
        // front of the home shard's failing queue, which the hands keep
        // roughly in last-use order).
        if self.has(&self.s.failing, home)
            && self.run(home, Queue::Failing, Goal::Tidy, at, Some(EXPIRED_GLANCE))
        {
            return true;
        }
        if self.rings_pass(home, at) {
            return true;
        }
        let n = self.s.shards.len();
        let mut revisited = self.revisit(home, at);
        let others = self.s.parked.load(Ordering::Relaxed) & !(1 << home);
        if !revisited && others != 0 {
            let from = self.s.helper.load(Ordering::Relaxed) % n;
            let idx = (from + others.rotate_right(from as u32).trailing_zeros() as usize) % n;
            self.s.helper.store(idx + 1, Ordering::Relaxed);
            revisited = self.revisit(idx, at);
        }
        // Parked breakers used since the hand passed went back to a ring
        // (their second chance): they may go now.
        if revisited || self.s.rings.load(Ordering::Relaxed) != 0 && self.rings_pass(home, at) {
            return true;
        }
        if self.s.rings.load(Ordering::Relaxed) == 0 {
            for i in 0..n {
                let idx = (home + i) & (n - 1);
                if self.has(&self.s.failing, idx)
                    && self.run(idx, Queue::Failing, Goal::LastResort, at, None)
                {
                    return true;
                }
            }
        }
        false
    }

    /// The rings, the home shard's first, then the others' with entries.
    fn rings_pass(&self, home: usize, at: At) -> bool {
        let n = self.s.shards.len();
        (0..n).any(|i| {
            let idx = (home + i) & (n - 1);
            self.has(&self.s.rings, idx) && self.run(idx, Queue::Ring, Goal::Room, at, None)
        })
    }

    /// A bounded look at shard `idx`'s parked entries, evicting one that
    /// has become an idle pristine breaker or passed its TTL.
    fn revisit(&self, idx: usize, at: At) -> bool {
        self.has(&self.s.parked, idx)
            && (self.run(idx, Queue::Pinned, Goal::Room, at, Some(REVISIT))
                || self.has(&self.s.failing, idx)
                    && self.run(idx, Queue::Failing, Goal::Room, at, Some(REVISIT)))
    }

    /// Whether shard `idx`'s bit is set in `mask`.
    fn has(&self, mask: &AtomicU64, idx: usize) -> bool {
        mask.load(Ordering::Relaxed) & (1 << idx) != 0
    }

    /// Move the hand over shard `idx`'s queue `q` until one entry is
    /// evicted, the queue is empty, or `limit` steps are taken (default:
    /// two laps, the first of which may only clear use marks). The shard's
    /// lock is taken for at most `CHUNK` steps at a time. Returns whether
    /// an entry was evicted.
    fn run(&self, idx: usize, q: Queue, goal: Goal, at: At, limit: Option<usize>) -> bool {
        let mut left = None;
        loop {
            let mut g = write(&self.s.shards[idx]);
            let left = left.get_or_insert_with(|| limit.unwrap_or(2 * g.queue(q).len() + 1));
            let mut end = None;
            for _ in 0..CHUNK {
                if *left == 0 {
                    end = Some(false);
                    break;
                }
                *left -= 1;
                match self.step(&mut g, q, at, goal) {
                    Step::Evicted => end = Some(true),
                    Step::Empty | Step::Stopped => end = Some(false),
                    Step::Kept => continue,
                }
                break;
            }
            self.publish(idx, &g);
            if let Some(evicted) = end {
                return evicted;
            }
        }
    }

    /// One step of a hand: look at the entry at the front of queue `q`;
    /// evict it if `goal` allows, else queue it by what it is now.
    pub(super) fn step(&self, g: &mut Shard<K>, q: Queue, at: At, goal: Goal) -> Step {
        let Some(h) = g.queue(q).pop_front() else {
            return Step::Empty;
        };
        if q == Queue::Ring {
            g.compact_at = g.compact_at.saturating_sub(1);
        }
        #[cfg(test)]
        EXAMINED.with(|n| n.set(n.get() + 1));
        let Some(e) = g.get_mut(h) else {
            return Step::Kept; // already gone
        };
        let mut seen = e.0.core.seen();
        let used = seen == TOUCHED;
        if used {
            // Used since the hand last passed: count it as used now (later
            // than it was, so eviction can only come late).
            e.0.core.set_seen(at.tick);
            seen = at.tick;
        }
        let idle_ticks = at.tick.wrapping_sub(seen);
        // It may go only if the map alone holds it (no handle, no permit)
        // and it is closed (not forced open, not cooling down).
        if Arc::strong_count(&e.0) != 1 || !e.0.core.is_idle_closed() {
            g.pinned.push_back(h);
            return Step::Kept;
        }
        let to = if e.0.core.holds_counted_failures() {
            Queue::Failing
        } else {
            Queue::Ring
        };
        let evict = idle_ticks >= at.ttl
            || !used
                && match to {
                    Queue::Ring => matches!(goal, Goal::Room | Goal::LastResort),
                    _ => goal == Goal::LastResort,
                };
        if evict {
            #[cfg(feature = "metrics")]
            self.s
                .metrics
                .key_removed(e.0.key.as_any(), e.0.core.counted());
            g.evict(h);
            self.s.len.fetch_sub(1, Ordering::Relaxed);
            return Step::Evicted;
        }
        // Kept idle: it gives back its window and machine once those hold
        // nothing a fresh breaker would not.
        if let Some(inner) = Arc::get_mut(&mut e.0) {
            compact(inner, at, idle_ticks, &self.s);
        }
        if q == Queue::Ring && to == Queue::Ring && !used && goal == Goal::Tidy {
            g.ring.push_front(h);
            g.compact_at += 1;
            Step::Stopped
        } else {
            g.queue(to).push_back(h);
            Step::Kept
        }
    }

    /// Compact a few idle breakers of the ring in place, without moving
    /// them (the ring's order is its eviction order) or clearing their use
    /// marks: breakers that went idle give back their window and machine
    /// before their TTL, without a sweep.
    pub(super) fn compact_some(&self, g: &mut Shard<K>, at: At) {
        for _ in 0..COMPACT_STEPS {
            let n = g.ring.len();
            if n == 0 {
                return;
            }
            let i = g.compact_at % n;
            g.compact_at = i + 1;
            let Some(&h) = g.ring.get(i) else {
                return;
            };
            #[cfg(test)]
            EXAMINED.with(|n| n.set(n.get() + 1));
            if let Some(inner) = g.get_mut(h).and_then(|e| Arc::get_mut(&mut e.0)) {
                let seen = inner.core.seen();
                let idle_ticks = if seen == TOUCHED {
                    0
                } else {
                    at.tick.wrapping_sub(seen)
                };
                compact(inner, at, idle_ticks, &self.s);
            }
        }
    }

    /// Mirror shard `idx`'s queues into the registry's bit masks. Called
    /// with the shard's lock held (only its holder changes its bits).
    pub(super) fn publish(&self, idx: usize, g: &Shard<K>) {
        let bit = 1u64 << idx;
        for (mask, on) in [
            (&self.s.rings, !g.ring.is_empty()),
            (
                &self.s.parked,
                !g.failing.is_empty() || !g.pinned.is_empty(),
            ),
            (&self.s.failing, !g.failing.is_empty()),
        ] {
            if (mask.load(Ordering::Relaxed) & bit != 0) != on {
                if on {
                    mask.fetch_or(bit, Ordering::Relaxed);
                } else {
                    mask.fetch_and(!bit, Ordering::Relaxed);
                }
            }
        }
    }
}
