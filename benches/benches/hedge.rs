//! The cost of hedging when no hedge is needed (the attempt answers at once),
//! and of reading a learning hedge's delay, in one run:
//!
//! - `hedge_call`: a call without `.hedge`, with a fixed `Hedge::after(50 ms)`,
//!   and with a learning `Hedge::at_percentile(0.95)` that has learnt (each
//!   call reads its cached quantile and records the attempt's latency);
//! - `hedge_delay`: `Hedge::delay()` of a learning hedge (one clock read and
//!   the cached quantile), against `Instant::now()` alone, the floor.
//!
//! Operation: an `async fn` ready on first poll; runtime: current-thread tokio.
//!
//! Run: `cargo bench -p safecall-bench --bench hedge`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use safecall::{Hedge, SafeCall};
use safecall_bench::{Failure, op, runtime, time_batch};
use tokio::time::Instant;

/// A learning hedge past its `min_samples`.
fn learnt(rt: &tokio::runtime::Runtime, policy: &SafeCall<Failure>) -> Hedge {
    let hedge = Hedge::at_percentile(0.95);
    rt.block_on(async {
        for i in 0..200 {
            let _ = policy.call(|| op(i)).hedge(&hedge).await;
        }
    });
    assert!(hedge.delay().is_some(), "the hedge has learnt");
    hedge
}

fn hedge(c: &mut Criterion) {
    let rt = runtime();
    let policy: SafeCall<Failure> = SafeCall::default();
    let fixed = Hedge::after(Duration::from_millis(50));
    let learning = learnt(&rt, &policy);

    let mut g = c.benchmark_group("hedge_call");
    g.bench_function("no_hedge", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| {
                let policy = &policy;
                async move {
                    black_box(policy.call(|| op(i)).await.ok());
                }
            })
        })
    });
    g.bench_function("after_50ms", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| {
                let (policy, fixed) = (&policy, &fixed);
                async move {
                    black_box(policy.call(|| op(i)).hedge(fixed).await.ok());
                }
            })
        })
    });
    g.bench_function("at_percentile_0.95", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| {
                let (policy, learning) = (&policy, &learning);
                async move {
                    black_box(policy.call(|| op(i)).hedge(learning).await.ok());
                }
            })
        })
    });
    g.finish();

    let mut g = c.benchmark_group("hedge_delay");
    g.bench_function("instant_now", |b| b.iter(|| black_box(Instant::now())));
    g.bench_function("at_percentile_delay", |b| {
        b.iter(|| black_box(black_box(&learning).delay()))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = hedge
}
criterion_main!(benches);
