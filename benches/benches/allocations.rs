//! Heap allocations per call, counted by a global allocator, on the success path
//! and on an open-breaker rejection: safecall and every peer, configured as in
//! the `overhead` bench. Not timed; prints a Markdown table.
//!
//! Run: `cargo bench -p safecall-bench --bench allocations`.

use std::future::ready;
use std::time::Duration;

use failsafe::futures::CircuitBreaker as _;
use layered::{Execute, Service as _, Stack};
use safecall::{Breaker, BreakerConfig, BreakerRegistry, Outcome, SafeCall};
use safecall_bench::peers::{
    Attempts, seatbelt_breaker, seatbelt_context, seatbelt_retry, tower_resilience_layer,
};
use safecall_bench::tower_call;
use safecall_bench::{Failure, OPEN, failsafe_breaker, key, op, recloser_breaker, runtime};

#[global_allocator]
static ALLOC: safecall_bench::CountingAlloc = safecall_bench::CountingAlloc;

const CALLS: u64 = 10_000;
const HOUR: Duration = Duration::from_secs(3600);

/// Allocations per call of `call`, after 1,000 warm-up calls.
async fn per_call(mut call: impl AsyncFnMut(u64)) -> f64 {
    for i in 0..1_000 {
        call(i).await;
    }
    let before = safecall_bench::allocations();
    for i in 0..CALLS {
        call(i).await;
    }
    (safecall_bench::allocations() - before) as f64 / CALLS as f64
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse.
    let rt = runtime();
    let mut rows: Vec<(&str, &str, f64)> = Vec::new();
    rt.block_on(async {
        let policy: SafeCall<Failure> = SafeCall::default();
        let breaker = Breaker::new(BreakerConfig::default());
        let registry: BreakerRegistry<String> =
            BreakerRegistry::new(BreakerConfig::default()).max_keys(1_000);
        let keys: Vec<String> = (0..1_000).map(key).collect();
        for k in &keys {
            drop(registry.get(k.as_str()));
        }
        let failsafe = failsafe_breaker(OPEN);
        let recloser = recloser::AsyncRecloser::from(recloser_breaker(OPEN));
        let ctx = seatbelt_context();

        // Success path.
        rows.push((
            "success",
            "safecall retry",
            per_call(|i| {
                let p = &policy;
                async move { assert!(p.call(|| op(i)).await.is_ok()) }
            })
            .await,
        ));
        rows.push((
            "success",
            "safecall retry + breaker",
            per_call(|i| {
                let (p, b) = (&policy, &breaker);
                async move { assert!(p.call(|| op(i)).breaker(b).await.is_ok()) }
            })
            .await,
        ));
        rows.push((
            "success",
            "safecall retry + registry (1,000 keys)",
            per_call(|i| {
                let (p, r, keys) = (&policy, &registry, &keys);
                async move {
                    let b = r.get(keys[i as usize % keys.len()].as_str());
                    assert!(p.call(|| op(i)).breaker(&b).await.is_ok());
                }
            })
            .await,
        ));
        let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
        rows.push((
            "success",
            "tower retry",
            per_call(async |i| assert!(tower_call!(&mut svc, i).is_ok())).await,
        ));
        let mut svc = tower::ServiceBuilder::new()
            .layer(safecall::tower::SafeCallLayer::new(policy.clone()))
            .service(tower::service_fn(op));
        rows.push((
            "success",
            "safecall tower layer",
            per_call(async |i| assert!(tower_call!(&mut svc, i).is_ok())).await,
        ));
        let keyed: BreakerRegistry<u64> = BreakerRegistry::new(BreakerConfig::default());
        let mut svc = tower::ServiceBuilder::new()
            .layer(safecall::tower::SafeCallLayer::new(policy.clone()).breakers(keyed, |_: &u64| 7))
            .service(tower::service_fn(op));
        rows.push((
            "success",
            "safecall tower layer + breaker per key",
            per_call(async |i| assert!(tower_call!(&mut svc, i).is_ok())).await,
        ));
        rows.push((
            "success",
            "backon",
            per_call(|i| async move {
                use backon::Retryable;
                let r = (|| op(i))
                    .retry(backon::ExponentialBuilder::default().with_max_times(3))
                    .await;
                assert!(r.is_ok());
            })
            .await,
        ));
        rows.push((
            "success",
            "tokio-retry2",
            per_call(|i| async move {
                let strategy =
                    tokio_retry2::strategy::ExponentialBackoff::from_millis(1000).take(3);
                let r = tokio_retry2::Retry::spawn(strategy, || async move {
                    op(i).await.map_err(tokio_retry2::RetryError::transient)
                })
                .await;
                assert!(r.is_ok());
            })
            .await,
        ));
        let sb = (seatbelt_retry(&ctx), Execute::new(op)).into_service();
        rows.push((
            "success",
            "seatbelt retry",
            per_call(|i| {
                let sb = &sb;
                async move { assert!(sb.execute(i).await.is_ok()) }
            })
            .await,
        ));
        let f = &failsafe;
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tower::service_fn(move |x| f.call(op(x))));
        rows.push((
            "success",
            "tower retry + failsafe",
            per_call(async |i| assert!(tower_call!(&mut svc, i).is_ok())).await,
        ));
        let r = &recloser;
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tower::service_fn(move |x| r.call(op(x))));
        rows.push((
            "success",
            "tower retry + recloser",
            per_call(async |i| assert!(tower_call!(&mut svc, i).is_ok())).await,
        ));
        let mut svc = tower::retry::Retry::new(
            Attempts(3),
            tower_resilience_layer(OPEN).layer_fn(tower::service_fn(op)),
        );
        rows.push((
            "success",
            "tower retry + tower-resilience",
            per_call(async |i| assert!(tower_call!(&mut svc, i).is_ok())).await,
        ));
        let sb = (
            seatbelt_retry(&ctx),
            seatbelt_breaker(&ctx, OPEN),
            Execute::new(op),
        )
            .into_service();
        rows.push((
            "success",
            "seatbelt retry + breaker",
            per_call(|i| {
                let sb = &sb;
                async move { assert!(sb.execute(i).await.is_ok()) }
            })
            .await,
        ));

        // Open rejection (each breaker tripped by its own rule, open for an hour).
        let open = Breaker::new(BreakerConfig::default().open_duration(HOUR));
        for _ in 0..5 {
            if let Ok(p) = open.try_acquire() {
                p.record(Outcome::Failure);
            }
        }
        rows.push((
            "rejection",
            "safecall retry + breaker",
            per_call(|i| {
                let (p, b) = (&policy, &open);
                async move { assert!(p.call(|| op(i)).breaker(b).await.is_err()) }
            })
            .await,
        ));
        let failsafe = failsafe_breaker(HOUR);
        let recloser = recloser::AsyncRecloser::from(recloser_breaker(HOUR));
        for _ in 0..200 {
            let _ = failsafe.call(ready(Err::<u64, _>(Failure))).await;
            let _ = recloser.call(ready(Err::<u64, _>(Failure))).await;
        }
        rows.push((
            "rejection",
            "failsafe",
            per_call(|i| {
                let f = &failsafe;
                async move { assert!(f.call(op(i)).await.is_err()) }
            })
            .await,
        ));
        rows.push((
            "rejection",
            "recloser",
            per_call(|i| {
                let r = &recloser;
                async move { assert!(r.call(op(i)).await.is_err()) }
            })
            .await,
        ));
        let mut tr = tower_resilience_layer(HOUR)
            .layer_fn(tower::service_fn(|_: u64| ready(Err::<u64, _>(Failure))));
        for _ in 0..200 {
            let _ = tower_call!(&mut tr, 0);
        }
        rows.push((
            "rejection",
            "tower-resilience",
            per_call(async |i| assert!(tower_call!(&mut tr, i).is_err())).await,
        ));
        let sb = (
            seatbelt_breaker(&ctx, HOUR),
            Execute::new(|_: u64| ready(Err::<u64, _>(Failure))),
        )
            .into_service();
        for _ in 0..200 {
            let _ = sb.execute(0).await;
        }
        rows.push((
            "rejection",
            "seatbelt",
            per_call(|i| {
                let sb = &sb;
                async move { assert!(sb.execute(i).await.is_err()) }
            })
            .await,
        ));
    });
    println!("| path | case | allocations per call |\n| --- | --- | ---: |");
    for (path, case, n) in rows {
        println!("| {path} | {case} | {n:.2} |");
    }
}
