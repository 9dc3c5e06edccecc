//! A new key into a full registry (issue 11, defect 3): a
//! `BreakerRegistry<u64>` at its cap of 100,000 keys, with every breaker
//! closed (idle, evictable) against every breaker open (a provider outage:
//! nothing can be evicted, new keys go to the overflow breaker). DESIGN.md's
//! target: the open case within 10× of the closed one.
//!
//! Also the lookup of an existing key in the same registry, so that a change
//! to eviction can be checked not to slow the common path (compare within
//! one run).
//!
//! Run: `cargo bench -p safecall-bench --bench registry_flood`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use safecall::{BreakerConfig, BreakerRegistry, BreakerState, Outcome};
use safecall_bench::shuffled;

const CAP: usize = 100_000;
const HOUR: Duration = Duration::from_secs(3600);

/// A registry at its cap of `CAP` keys (`0..CAP`), no handle held; with
/// `open`, every breaker tripped (and open for an hour).
fn full(open: bool) -> BreakerRegistry<u64> {
    let registry: BreakerRegistry<u64> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(1)
            .open_duration(HOUR),
    )
    .max_keys(CAP)
    .idle_ttl(HOUR);
    for k in 0..CAP as u64 {
        let b = registry.get(&k);
        if open && let Ok(p) = b.try_acquire() {
            p.record(Outcome::Failure);
        }
    }
    assert_eq!(registry.len(), CAP);
    let want = if open {
        BreakerState::Open
    } else {
        BreakerState::Closed
    };
    assert_eq!(registry.get(&0).state(), want);
    registry
}

fn new_key_at_cap(c: &mut Criterion) {
    // A runtime entered: the registry reads tokio's clock.
    let rt = safecall_bench::runtime();
    let _enter = rt.enter();
    let mut g = c.benchmark_group("registry_new_key_at_cap_100k");
    for (name, open) in [("all_closed", false), ("all_open", true)] {
        let registry = full(open);
        // Fresh keys, never seen before, across every sample.
        let mut next = CAP as u64;
        // Validate once: closed makes room, open overflows.
        let b = registry.get(&next);
        next += 1;
        assert_eq!(b.ptr_eq(registry.overflow()), open, "{name}");
        drop(b);
        g.bench_function(name, |bch| {
            bch.iter_custom(|iters| {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(registry.get(&next));
                    next += 1;
                }
                start.elapsed()
            })
        });
        let len = registry.len();
        assert!(len <= CAP && len > CAP * 9 / 10, "{name}: {len} keys");
    }
    g.finish();
}

fn existing_key_lookup(c: &mut Criterion) {
    let rt = safecall_bench::runtime();
    let _enter = rt.enter();
    let registry = full(false);
    let order: Vec<u64> = shuffled(CAP).into_iter().map(|k| k as u64).collect();
    let mut i = 0usize;
    let mut g = c.benchmark_group("registry_lookup_100k");
    g.bench_function("existing_key", |bch| {
        bch.iter(|| {
            i = if i + 1 == CAP { 0 } else { i + 1 };
            black_box(registry.get(&order[i]))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = new_key_at_cap, existing_key_lookup
}
criterion_main!(benches);
