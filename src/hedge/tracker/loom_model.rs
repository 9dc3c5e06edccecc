//! loom models of the tracker's lock-free parts: records racing each other
//! and a rotation, and the quantile cache's sequence counter. The quantile's
//! scan (544 loads) is too long to model; it only reads.
//!
//! Run with
//! `RUSTFLAGS="--cfg safecall_loom" cargo test --lib --release hedge::tracker::loom_model`
//! (exhaustive: no preemption bound; well under a second).

use std::time::Duration;

use loom::sync::Arc;
use loom::thread;

use super::*;
use crate::sync::model;

const WINDOW: Duration = Duration::from_secs(10);

fn count(t: &LatencyTracker, latency: Duration, epoch: u64) -> u64 {
    t.half(epoch)
        .bucket(bucket_of(latency.as_nanos() as u64), tag_of(epoch))
}

#[test]
fn records_in_one_half_window_total_exactly() {
    model(|| {
        let t = Arc::new(LatencyTracker::new(WINDOW));
        let other = Arc::clone(&t);
        let h = thread::spawn(move || {
            other.record(Duration::from_millis(10), other.start);
            other.record(Duration::from_millis(20), other.start);
        });
        t.record(Duration::from_millis(10), t.start);
        h.join().unwrap();
        assert_eq!(t.samples(t.start), 3);
        assert_eq!(count(&t, Duration::from_millis(10), 0), 2);
        assert_eq!(count(&t, Duration::from_millis(20), 0), 1);
    });
}

#[test]
fn a_record_racing_a_rotation_is_counted_once_or_has_aged_out() {
    model(|| {
        let t = Arc::new(LatencyTracker::new(WINDOW));
        // Half-window 2 reuses half-window 0's counters.
        let later = t.start + WINDOW;
        let other = Arc::clone(&t);
        let h = thread::spawn(move || other.record(Duration::from_millis(20), later));
        t.record(Duration::from_millis(10), t.start);
        let seen = t.samples(t.start);
        assert!(seen <= 1, "half-window 0 holds at most its own record");
        h.join().unwrap();
        assert_eq!(t.samples(later), 1, "the newer record, exactly once");
        assert_eq!(count(&t, Duration::from_millis(20), 2), 1);
        assert_eq!(
            count(&t, Duration::from_millis(10), 2),
            0,
            "the older one aged out"
        );
    });
}

fn cached(n: u64) -> Cached {
    Cached {
        p: n,
        value: n,
        from: n,
        until: n,
        samples: n,
    }
}

/// Whether every field of `c` holds the same value, as `cached` stores them.
fn whole(c: Cached) -> bool {
    c == cached(c.p)
}

#[test]
fn a_cache_read_racing_a_store_never_mixes_two() {
    model(|| {
        let cache = Arc::new(Cache::new());
        cache.store(cached(1));
        let writer = Arc::clone(&cache);
        let h = thread::spawn(move || writer.store(cached(2)));
        if let Some(c) = cache.load() {
            assert!(whole(c), "torn read: {c:?}");
        }
        h.join().unwrap();
        assert_eq!(cache.load(), Some(cached(2)), "an uncontended store lands");
    });
}

#[test]
fn racing_stores_leave_one_whole() {
    model(|| {
        let cache = Arc::new(Cache::new());
        let other = Arc::clone(&cache);
        let h = thread::spawn(move || other.store(cached(1)));
        cache.store(cached(2));
        h.join().unwrap();
        let c = cache.load().expect("no store in progress");
        assert!(whole(c) && c.p != 0, "one store landed whole: {c:?}");
    });
}
