//! The bulkhead alone: an acquire and a release, uncontended on one thread and
//! with two threads on one bulkhead, against `tokio::sync::Semaphore::try_acquire`
//! (the primitive users would otherwise reach for), in one run.
//!
//! Two-thread cases report the wall time of one thread's calls divided by its
//! number of calls (the machine has 2 cores).
//!
//! Run: `cargo bench -p safecall-bench --bench bulkhead`.

use std::hint::black_box;
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group, criterion_main};
use safecall::{Bulkhead, BulkheadConfig};
use tokio::sync::Semaphore;

/// Wall time of `iters` calls of `f` on each of two threads.
fn two_threads(iters: u64, f: impl Fn() + Sync) -> Duration {
    let start = StdInstant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            let f = &f;
            s.spawn(move || {
                for _ in 0..iters {
                    f();
                }
            });
        }
    });
    start.elapsed()
}

fn acquire_release(c: &mut Criterion) {
    let b = Bulkhead::new(BulkheadConfig::max_concurrent(64));
    let sem = Semaphore::new(64);
    let mut g = c.benchmark_group("bulkhead_acquire_release");
    g.bench_function("safecall_bulkhead", |i| {
        i.iter(|| black_box(black_box(&b).try_acquire().is_some()))
    });
    g.bench_function("tokio_semaphore", |i| {
        i.iter(|| black_box(black_box(&sem).try_acquire().is_ok()))
    });
    g.finish();

    let mut g = c.benchmark_group("bulkhead_two_threads");
    g.bench_function("safecall_bulkhead", |i| {
        i.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(black_box(&b).try_acquire().is_some());
            })
        })
    });
    g.bench_function("tokio_semaphore", |i| {
        i.iter_custom(|iters| {
            two_threads(iters, || {
                black_box(black_box(&sem).try_acquire().is_ok());
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = acquire_release
}
criterion_main!(benches);
