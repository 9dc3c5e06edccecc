//! One hot path, N times: for instruction counts under callgrind (which counts
//! instructions exactly, whatever the machine's load).
//!
//! ```text
//! CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release -p safecall-bench --example hot_paths
//! valgrind --tool=callgrind target/release/examples/hot_paths retry 1000000
//! ```
//! Instructions per call = (Ir at 2N - Ir at N) / N.
//!
//! `retry_hedge` and `retry_breaker_hedge` are `retry` and
//! `retry_breaker_default` with a hedge that is never needed (the attempt
//! answers at once).
//!
//! Besides the cases below, every case of the performance table runs by its
//! `group/function` name (`safecall_bench::cases::CASES`, e.g.
//! `success_retry/tower_retry`): the fallback when gungraun's runner is missing.
//!
//! With safecall's metrics (`--features metrics`), every policy records its
//! calls; `SAFECALL_RECORDER=prometheus` installs the Prometheus recorder
//! first (without it, the no-op recorder takes the values).
//!
//! The tower cases (`bare_service`, `tower_retry`, `tower_layer`,
//! `tower_layer_no_budget`, `tower_layer_breaker`, and `registry_breaker_default`
//! for the breaker alone with its registry lookup) call a stack the way a user
//! does: `svc.ready().await?.call(i).await`.
//!
//! `registry_with_default` is `registry_breaker_default` through the borrowing
//! `BreakerRegistry::with`; `registry_get_10k` / `registry_with_10k` look up one
//! of 10,000 `String` keys per call (the setup's inserts cost the same at N and
//! 2N, so they cancel out of the difference).

use std::hint::black_box;
use std::time::Duration;

use safecall::tower::SafeCallLayer;
use safecall::{Backoff, Breaker, BreakerConfig, BreakerRegistry, Outcome, RetryBudget, SafeCall};
use safecall_bench::cases::fails_twice;
use safecall_bench::peers::Attempts;
use safecall_bench::tower_call;
use safecall_bench::{Failure, op, runtime, safecall_configs};
use tower::ServiceBuilder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map_or("retry", String::as_str);
    let n: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // Every case of the performance table by its `group/function` name (the
    // same loops that `benches/instructions.rs` counts under gungraun).
    if let Some(ok) = safecall_bench::cases::run(case, n) {
        black_box(ok);
        return;
    }
    #[cfg(feature = "metrics")]
    if std::env::var("SAFECALL_RECORDER").as_deref() == Ok("prometheus") {
        let _handle = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .expect("recorder");
    }
    let rt = runtime();
    let policy: SafeCall<Failure> = SafeCall::default();
    let no_budget = safecall_bench::no_budget_policy();
    let zero: SafeCall<Failure> = SafeCall::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy");
    let breaker = |c: BreakerConfig| Breaker::new(c);
    let default_b = breaker(safecall_configs::default());
    let consecutive_b = breaker(safecall_configs::consecutive());
    let open = breaker(BreakerConfig::default().open_duration(Duration::from_secs(3600)));
    for _ in 0..5 {
        if let Ok(p) = open.try_acquire() {
            p.record(Outcome::Failure);
        }
    }
    let counter = std::cell::Cell::new(0u32);
    rt.block_on(async {
        match case {
            "bare" => {
                for i in 0..n {
                    black_box(op(i).await.ok());
                }
            }
            "retry" => {
                for i in 0..n {
                    black_box(policy.call(|| op(i)).await.ok());
                }
            }
            "retry_no_budget" => {
                for i in 0..n {
                    black_box(no_budget.call(|| op(i)).await.ok());
                }
            }
            "tower_retry" => {
                let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
                for i in 0..n {
                    black_box(tower_call!(&mut svc, i).ok());
                }
            }
            "bare_service" => {
                let mut svc = tower::service_fn(op);
                for i in 0..n {
                    black_box(tower_call!(&mut svc, i).ok());
                }
            }
            "tower_layer" => {
                let mut svc = ServiceBuilder::new()
                    .layer(SafeCallLayer::new(policy.clone()))
                    .service(tower::service_fn(op));
                for i in 0..n {
                    black_box(tower_call!(&mut svc, i).ok());
                }
            }
            "tower_layer_no_budget" => {
                let mut svc = ServiceBuilder::new()
                    .layer(SafeCallLayer::new(no_budget.clone()))
                    .service(tower::service_fn(op));
                for i in 0..n {
                    black_box(tower_call!(&mut svc, i).ok());
                }
            }
            "tower_layer_breaker" => {
                let registry: BreakerRegistry<u64> =
                    BreakerRegistry::new(safecall_configs::default());
                let mut svc = ServiceBuilder::new()
                    .layer(SafeCallLayer::new(policy.clone()).breakers(registry, |_: &u64| 7))
                    .service(tower::service_fn(op));
                for i in 0..n {
                    black_box(tower_call!(&mut svc, i).ok());
                }
            }
            "registry_breaker_default" => {
                let registry: BreakerRegistry<u64> =
                    BreakerRegistry::new(safecall_configs::default());
                for _ in 0..n {
                    let b = registry.get(&7);
                    if let Ok(p) = b.try_acquire() {
                        p.record(Outcome::Success);
                    }
                }
            }
            "registry_with_default" => {
                let registry: BreakerRegistry<u64> =
                    BreakerRegistry::new(safecall_configs::default());
                for _ in 0..n {
                    registry.with(&7, |b| {
                        if let Ok(p) = b.try_acquire() {
                            p.record(Outcome::Success);
                        }
                    });
                }
            }
            "registry_get_10k" | "registry_with_10k" => {
                // 10,000 String keys, looked up in a fixed scattered order.
                const KEYS: u64 = 10_000;
                let names: Vec<String> = (0..KEYS).map(|k| format!("org-{k:08x}")).collect();
                let registry: BreakerRegistry<String> =
                    BreakerRegistry::new(safecall_configs::default()).max_keys(KEYS as usize);
                for k in &names {
                    drop(registry.get(k.as_str()));
                }
                let with = case == "registry_with_10k";
                for i in 0..n {
                    let k = names[(i.wrapping_mul(7919) % KEYS) as usize].as_str();
                    if with {
                        registry.with(k, |b| {
                            if let Ok(p) = b.try_acquire() {
                                p.record(Outcome::Success);
                            }
                        });
                    } else if let Ok(p) = registry.get(k).try_acquire() {
                        p.record(Outcome::Success);
                    }
                }
            }
            "breaker_default" => {
                for _ in 0..n {
                    if let Ok(p) = default_b.try_acquire() {
                        p.record(Outcome::Success);
                    }
                }
            }
            "breaker_count" => {
                let count_b = breaker(
                    BreakerConfig::default()
                        .no_consecutive_failures()
                        .count_window(0.5, 100),
                );
                for _ in 0..n {
                    if let Ok(p) = count_b.try_acquire() {
                        p.record(Outcome::Success);
                    }
                }
            }
            "breaker_consecutive" => {
                for _ in 0..n {
                    if let Ok(p) = consecutive_b.try_acquire() {
                        p.record(Outcome::Success);
                    }
                }
            }
            "retry_hedge" => {
                // A hedge that is never needed: the attempt answers at once.
                let hedge = safecall::Hedge::after(Duration::from_millis(50));
                for i in 0..n {
                    black_box(policy.call(|| op(i)).hedge(&hedge).await.ok());
                }
            }
            "retry_hedge_inline" => {
                // A fixed hedge built at the call site, per call.
                for i in 0..n {
                    let hedge = safecall::Hedge::after(Duration::from_millis(50));
                    black_box(policy.call(|| op(i)).hedge(&hedge).await.ok());
                }
            }
            "retry_hedge_percentile" => {
                // A learning hedge that is never needed: each call reads the
                // cached quantile and records its attempt's latency (two clock
                // reads). Its first 100 calls learn without a quantile.
                let hedge = safecall::Hedge::at_percentile(0.95);
                for i in 0..n {
                    black_box(policy.call(|| op(i)).hedge(&hedge).await.ok());
                }
            }
            "retry_breaker_hedge" => {
                let hedge = safecall::Hedge::after(Duration::from_millis(50));
                for i in 0..n {
                    black_box(
                        policy
                            .call(|| op(i))
                            .breaker(&default_b)
                            .hedge(&hedge)
                            .await
                            .ok(),
                    );
                }
            }
            "retry_breaker_default" => {
                for i in 0..n {
                    black_box(policy.call(|| op(i)).breaker(&default_b).await.ok());
                }
            }
            "retry_breaker_consecutive" => {
                for i in 0..n {
                    black_box(no_budget.call(|| op(i)).breaker(&consecutive_b).await.ok());
                }
            }
            "rejection" => {
                for i in 0..n {
                    black_box(policy.call(|| op(i)).breaker(&open).await.is_err());
                }
            }
            "zero_delay" => {
                for _ in 0..n {
                    black_box(zero.call(|| fails_twice(&counter)).await.ok());
                }
            }
            "tower_zero_delay" => {
                let mut svc = tower::retry::Retry::new(
                    Attempts(3),
                    tower::service_fn(|_: u64| fails_twice(&counter)),
                );
                for i in 0..n {
                    black_box(tower_call!(&mut svc, i).ok());
                }
            }
            other => panic!("unknown case {other}"),
        }
    });
}
