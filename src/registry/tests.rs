//! Unit tests of the registry's shards and eviction hands.

use super::eviction::{COMPACTED, EXAMINED, REVISIT};
use super::*;
use std::hash::BuildHasher;

#[test]
fn shard_counts_are_powers_of_two() {
    for n in [0, 1, 100, 256, 10_000, 100_000, 1_000_000, usize::MAX] {
        let s = shard_count(n);
        assert!(s.is_power_of_two() && s <= MAX_SHARDS, "{n} -> {s}");
    }
}

/// Keys `0..n` in a registry of `max_keys` = `n`, each held but those
/// picked by `free` (their handles dropped at once: the hand finds them
/// idle in their rings), and the shard each key lives in.
fn full(
    n: u32,
    free: impl Fn(&BreakerRegistry<u32>, u32) -> bool,
) -> (BreakerRegistry<u32>, Vec<Option<crate::Breaker>>) {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(BreakerConfig::default())
        .max_keys(n as usize)
        .idle_ttl(Duration::from_secs(3600));
    let held = (0..n)
        .map(|k| Some(r.get(&k)).filter(|_| !free(&r, k)))
        .collect();
    (r, held)
}

fn shard_of_key(r: &BreakerRegistry<u32>, k: u32) -> usize {
    r.shard_of(r.s.hasher.hash_one(k))
}

/// The first key of `0..n` in shard `s`.
fn first_in(r: &BreakerRegistry<u32>, s: usize) -> u32 {
    (0..).find(|&k| shard_of_key(r, k) == s).unwrap()
}

/// A key from `from..` whose shard is `home`.
fn key_in(r: &BreakerRegistry<u32>, home: usize, from: u32) -> u32 {
    (from..)
        .find(|k| r.shard_of(r.s.hasher.hash_one(k)) == home)
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn making_room_evicts_from_the_home_shard_first_and_stops_there() {
    // One idle breaker in the new key's shard (0) and one in shard 1.
    let (r, held) = full(1024, |r, k| k == first_in(r, 0) || k == first_in(r, 1));
    assert_eq!(r.s.shards.len(), 4);
    let (home_free, other_free) = (first_in(&r, 0), first_in(&r, 1));
    let new = key_in(&r, 0, 10_000);
    assert!(!r.get(&new).ptr_eq(r.overflow()));
    let keys: Vec<u32> = r.snapshot().into_iter().map(|s| s.key).collect();
    assert!(!keys.contains(&home_free), "the home shard's goes");
    assert!(keys.contains(&other_free), "no other shard is swept");
    assert_eq!(r.len(), 1024);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn making_room_elsewhere_stops_at_the_first_shard_that_had_some() {
    // Nothing idle in the new key's shard (0); one idle in shards 1 and 2.
    let (r, held) = full(1024, |r, k| k == first_in(r, 1) || k == first_in(r, 2));
    let (in1, in2) = (first_in(&r, 1), first_in(&r, 2));
    let new = key_in(&r, 0, 10_000);
    assert!(!r.get(&new).ptr_eq(r.overflow()));
    let keys: Vec<u32> = r.snapshot().into_iter().map(|s| s.key).collect();
    assert!(!keys.contains(&in1), "the next shard's goes");
    assert!(keys.contains(&in2), "the one after is untouched");
    assert_eq!(r.len(), 1024);
    drop(held);
}

/// Entries the hand looks at while `f` runs, on this thread.
fn examined(f: impl FnOnce()) -> u64 {
    let before = EXAMINED.with(std::cell::Cell::get);
    f();
    EXAMINED.with(std::cell::Cell::get) - before
}

/// A registry of `cap` keys (`0..cap`), full, no handle held; with
/// `open`, every breaker tripped and open for an hour.
fn full_of(cap: u32, open: bool) -> BreakerRegistry<u32> {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(3600)),
    )
    .max_keys(cap as usize)
    .idle_ttl(Duration::from_secs(3600));
    for k in 0..cap {
        let b = r.get(&k);
        if open {
            b.try_acquire().unwrap().record(crate::Outcome::Failure);
        }
    }
    assert_eq!(r.len(), cap as usize);
    r
}

/// Issue 11, defect 3: at the cap with every breaker open, each new key
/// looked at a whole shard (and, once per 10 ms, the whole map) under a
/// write lock. Now the first new key may sort what the rings still hold
/// (paid for by those entries' inserts); every later one looks at a
/// bounded number of entries.
#[tokio::test(start_paused = true)]
async fn a_new_key_at_the_cap_of_open_breakers_looks_at_a_bounded_number_of_entries() {
    let cap = 4096;
    let r = full_of(cap, true);
    let first = examined(|| assert!(r.get(&cap).ptr_eq(r.overflow())));
    assert!(first <= u64::from(cap), "{first}");
    let mut most = 0;
    for k in cap + 1..cap + 2001 {
        let n = examined(|| assert!(r.get(&k).ptr_eq(r.overflow())));
        most = most.max(n);
    }
    // The home shard's and one other shard's parked entries.
    assert!(most <= 4 * REVISIT as u64, "{most} entries for one new key");
    assert_eq!(r.len(), cap as usize);
}

#[tokio::test(start_paused = true)]
async fn a_new_key_at_the_cap_of_idle_closed_breakers_looks_at_a_few_entries() {
    let cap = 4096;
    let r = full_of(cap, false);
    let mut total = 0;
    for k in cap..cap + 2000 {
        total += examined(|| assert!(!r.get(&k).ptr_eq(r.overflow())));
    }
    // One victim, and the housekeeping and compaction steps.
    assert!(total <= 2000 * 6, "{total} entries for 2,000 new keys");
    assert_eq!(r.len(), cap as usize);
}

#[tokio::test(start_paused = true)]
async fn parked_breakers_that_close_again_become_evictable() {
    let cap = 1024;
    let r = full_of(cap, true);
    assert!(r.get(&cap).ptr_eq(r.overflow()), "every breaker open");
    // The provider is back: every tenant resets its breaker, which is
    // now idle, closed and pristine, but parked as pinned.
    for k in 0..cap {
        r.get(&k).reset();
    }
    let mut overflowed = 0;
    for k in cap + 1..cap + 1 + 2 * cap {
        overflowed += u32::from(r.get(&k).ptr_eq(r.overflow()));
    }
    // The revisits find the closed breakers again, a bounded number per
    // new key, so few new keys overflow meanwhile.
    assert!(overflowed < cap / 4, "{overflowed} new keys overflowed");
    assert!(!r.get(&(10 * cap)).ptr_eq(r.overflow()));
}

#[tokio::test(start_paused = true)]
async fn idle_breakers_are_compacted_a_few_per_new_key_without_a_sweep() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(BreakerConfig::default()).max_keys(1024);
    assert_eq!(r.s.shards.len(), 4);
    for k in 0..100 {
        r.get(&k)
            .try_acquire()
            .unwrap()
            .record(crate::Outcome::Success);
    }
    tokio::time::advance(Duration::from_secs(31)).await; // windows empty
    let before = COMPACTED.with(std::cell::Cell::get);
    for k in 1_000..1_200 {
        let _ = r.get(&k);
    }
    let compacted = COMPACTED.with(std::cell::Cell::get) - before;
    assert_eq!(compacted, 100, "every idle breaker gave back its window");
    assert_eq!(r.len(), 300, "and none was evicted");
}

#[test]
fn colliding_hashes_keep_both_keys() {
    let mut shard: Shard<String> = Shard::new();
    let settings = Arc::new(BreakerConfig::default().validate().unwrap());
    let mk = |k: &str| {
        Breaker(Arc::new(Inner {
            core: Core::with_hash(Arc::clone(&settings), 7),
            key: k.to_owned(),
        }))
    };
    let (a, b) = (mk("a"), mk("b"));
    shard.insert(7, a.clone());
    shard.insert(7, b.clone());
    assert!(shard.find(7, "a").unwrap().ptr_eq(&a));
    assert!(shard.find(7, "b").unwrap().ptr_eq(&b));
    assert_eq!(shard.ring, [7, 7], "one place in the ring each");
    shard.evict(7);
    assert!(shard.find(7, "a").is_none());
    assert!(shard.find(7, "b").unwrap().ptr_eq(&b));
    assert!(shard.collisions.is_empty(), "b took a's place in the map");
    assert_eq!(shard.len(), 1);
}

/// The gauge's counts, by state, against the states the breakers' words
/// hold, through inserts, evictions (at the cap and past the TTL),
/// compactions, opens and cool-downs that ran out.
#[cfg(feature = "metrics")]
#[tokio::test(start_paused = true)]
async fn the_gauge_counts_follow_inserts_evictions_and_compactions() {
    use crate::Outcome;
    use crate::metrics::KeyState;

    fn words(r: &BreakerRegistry<u32>) -> [i64; 5] {
        let mut out = [0; 5];
        for shard in r.s.shards.iter() {
            for (_, e) in read(shard).entries() {
                out[e.0.core.counted() as usize] += 1;
            }
        }
        out
    }

    let r: BreakerRegistry<u32> =
        BreakerRegistry::new(BreakerConfig::default().consecutive_failures(1))
            .max_keys(300)
            .idle_ttl(Duration::from_secs(60));
    for round in 0..10u32 {
        for k in round * 100..round * 100 + 200 {
            let b = r.get(&k);
            let outcome = match k % 7 {
                0 => Outcome::Failure,
                1 => Outcome::RetryAfter(Duration::from_secs(5)),
                _ => Outcome::Success,
            };
            if let Ok(p) = b.try_acquire() {
                p.record(outcome);
            }
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        let counts = r.s.metrics.counts();
        assert_eq!(counts, words(&r), "round {round}");
        assert_eq!(counts.iter().sum::<i64>(), r.len() as i64, "round {round}");
    }
    r.retain_recent();
    assert_eq!(r.s.metrics.counts(), words(&r));
    assert!(r.s.metrics.counts()[KeyState::Open as usize] > 0);
}

#[tokio::test(start_paused = true)]
async fn with_lends_the_registrys_own_handle_without_touching_its_count() {
    let r: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    // A new key is created, as `get` would.
    assert_eq!(r.with("a", |b| b.state()), crate::BreakerState::Closed);
    assert_eq!(r.len(), 1);
    // Only the map holds the breaker, inside `f` too: no reference taken.
    assert_eq!(r.with("a", |b| Arc::strong_count(&b.0)), 1);
    let held = r.get("a");
    assert!(r.with("a", |b| b.ptr_eq(&held)), "one breaker per key");
    assert_eq!(Arc::strong_count(&held.0), 2);
    drop(held);
    // A lookup of an unknown key in a full registry without room gets the
    // overflow breaker, as `get` does.
    let full: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default()).max_keys(1);
    let pinned = full.get("a");
    assert!(full.with("b", |b| b.ptr_eq(full.overflow())));
    drop(pinned);
}

#[tokio::test(start_paused = true)]
async fn with_marks_the_key_used_and_writes_the_mark_only_when_cleared() {
    let r: BreakerRegistry<u32> = BreakerRegistry::new(BreakerConfig::default());
    let seen = |r: &BreakerRegistry<u32>| {
        let h = r.s.hasher.hash_one(7u32);
        read(&r.s.shards[r.shard_of(h)])
            .find(h, &7)
            .map(|b| b.0.core.seen())
    };
    r.with(&7, |_| ());
    // A new key is stamped with the time it was created, not marked used.
    assert_ne!(seen(&r), Some(TOUCHED));
    r.with(&7, |_| ());
    assert_eq!(seen(&r), Some(TOUCHED), "used since the hand passed");
    // The hand clears the mark (the key's second chance); the next use
    // marks it again.
    r.retain_recent();
    assert_ne!(seen(&r), Some(TOUCHED));
    r.with(&7, |b| {
        b.try_acquire().map(|p| p.record(crate::Outcome::Success))
    })
    .unwrap();
    assert_eq!(seen(&r), Some(TOUCHED));
    assert_eq!(r.len(), 1);
}
