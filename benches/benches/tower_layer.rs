//! The tower layer on the success path, against tower's own `Retry`, in one run.
//! Every case is a tower stack called the way a user calls one
//! (`svc.ready().await?.call(i).await`) around the same inner service
//! (`service_fn(op)`, an `async fn` ready on first poll); runtime: current-thread
//! tokio, timer on, no `test-util`.
//!
//! - `bare_service`: the inner service alone;
//! - `tower_retry`: `tower::retry::Retry` with the bench crate's policy (retry
//!   any error up to 3 times, at once: no backoff, no budget);
//! - `safecall_layer`: `ServiceBuilder::new().layer(SafeCallLayer::new(policy))`
//!   with safecall's default policy (jittered backoff, retry budget on);
//! - `safecall_layer_no_budget`: the same without the retry budget (tower's
//!   `Retry` has none);
//! - `safecall_layer_breaker`: default policy, and a breaker per key from a
//!   registry (one key, looked up per call) with the default breaker config;
//! - `tower_retry_then_breaker`: for the target "layer ≤ tower's retry + the
//!   breaker": tower's `Retry` around a service that asks a safecall breaker
//!   (looked up in the registry per call) before the inner one.
//!
//! - `tower_resilience`: tower's `Retry` around tower-resilience's circuit
//!   breaker layer at its defaults (the peer the issue names).
//!
//! And the rejection path (`tower_stack_rejection`): a breaker that is open
//! for the whole run refuses every call before the inner service runs.
//!
//! Run: `cargo bench -p safecall-bench --bench tower_layer`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use safecall::tower::SafeCallLayer;
use safecall::{BreakerConfig, BreakerRegistry, Outcome, SafeCall};
use safecall_bench::peers::{Attempts, tower_resilience_layer};
use safecall_bench::tower_call;
use safecall_bench::{Failure, no_budget_policy, op, runtime};
use tower::{Service, ServiceBuilder};

/// Times `iters` calls of `svc` inside one `block_on`.
fn batch<S: Service<u64>>(rt: &tokio::runtime::Runtime, svc: &mut S, iters: u64) -> Duration {
    rt.block_on(async {
        let start = std::time::Instant::now();
        for i in 0..iters {
            black_box(tower_call!(svc, i).ok());
        }
        start.elapsed()
    })
}

fn success_stack(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("tower_stack_success");
    let policy: SafeCall<Failure> = SafeCall::default();

    g.bench_function("bare_service", |b| {
        let mut svc = tower::service_fn(op);
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("tower_retry", |b| {
        let mut svc = ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(Attempts(3)))
            .service(tower::service_fn(op));
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("safecall_layer", |b| {
        let mut svc = ServiceBuilder::new()
            .layer(SafeCallLayer::new(policy.clone()))
            .service(tower::service_fn(op));
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("safecall_layer_no_budget", |b| {
        let mut svc = ServiceBuilder::new()
            .layer(SafeCallLayer::new(no_budget_policy()))
            .service(tower::service_fn(op));
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("safecall_layer_breaker", |b| {
        let registry: BreakerRegistry<u64> = BreakerRegistry::new(BreakerConfig::default());
        let mut svc = ServiceBuilder::new()
            .layer(SafeCallLayer::new(policy.clone()).breakers(registry, |_: &u64| 7))
            .service(tower::service_fn(op));
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("tower_retry_then_breaker", |b| {
        let registry = std::sync::Arc::new(BreakerRegistry::<u64>::new(BreakerConfig::default()));
        let mut svc = ServiceBuilder::new()
            .layer(tower::retry::RetryLayer::new(Attempts(3)))
            .service(tower::service_fn(move |i: u64| {
                let registry = std::sync::Arc::clone(&registry);
                async move {
                    let breaker = registry.get(&7);
                    let permit = breaker.try_acquire().map_err(|_| Failure)?;
                    let out = op(i).await;
                    permit.record(if out.is_ok() {
                        Outcome::Success
                    } else {
                        Outcome::Failure
                    });
                    out
                }
            }));
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("tower_resilience", |b| {
        let layer = tower_resilience_layer(safecall_bench::OPEN);
        let mut svc = tower::retry::Retry::new(Attempts(3), layer.layer_fn(tower::service_fn(op)));
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.finish();
}

/// Long enough that an opened breaker stays open for the whole run.
const HOUR: Duration = Duration::from_secs(3600);

fn rejection_stack(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("tower_stack_rejection");
    let policy: SafeCall<Failure> = SafeCall::default();

    g.bench_function("safecall_layer_breaker", |b| {
        let registry: BreakerRegistry<u64> = BreakerRegistry::new(BreakerConfig::default());
        registry.get(&7).force_open();
        let mut svc = ServiceBuilder::new()
            .layer(SafeCallLayer::new(policy.clone()).breakers(registry, |_: &u64| 7))
            .service(tower::service_fn(op));
        rt.block_on(async {
            let r = tower_call!(&mut svc, 1);
            assert!(
                matches!(r, Err(safecall::Error::CircuitOpen { attempts: 0, .. })),
                "the layer must refuse"
            );
        });
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.bench_function("tower_resilience", |b| {
        let layer = tower_resilience_layer(HOUR);
        let mut svc = layer.layer_fn(tower::service_fn(|_: u64| {
            std::future::ready(Err::<u64, _>(Failure))
        }));
        rt.block_on(async {
            // Trip it: tower-resilience counts the last 100 calls.
            for _ in 0..200 {
                let _ = tower_call!(&mut svc, 0);
            }
            assert!(svc.is_open(), "tower-resilience must be open");
        });
        b.iter_custom(|iters| batch(&rt, &mut svc, iters))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = success_stack, rejection_stack
}
criterion_main!(benches);
