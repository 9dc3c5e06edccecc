//! Every case of the performance table as a plain loop of `n` calls, for
//! instruction counts (`benches/instructions.rs` under gungraun, or
//! `examples/hot_paths.rs` under a bare callgrind): the same operation, peers
//! and configurations as the criterion benches (`benches/overhead.rs`,
//! `benches/tower_layer.rs`).
//!
//! Each case builds its state, then runs `n` calls back to back in one
//! `block_on`. The fixed cost (runtime, setup, first-use initialisation) is the
//! same at `n` and `2n`, so instructions per call = `(Ir(2n) - Ir(n)) / n`.
//!
//! ```
//! // Runs one case; a name that is not in `CASES` is refused.
//! assert!(safecall_bench::cases::run("success_retry/bare_call", 10).is_some());
//! assert!(safecall_bench::cases::run("no/such_case", 10).is_none());
//! ```

use std::collections::HashMap;
use std::future::ready;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use layered::{Execute, Service as _, Stack};
use safecall::tower::SafeCallLayer;
use safecall::{Backoff, Breaker, BreakerConfig, BreakerRegistry, Outcome, RetryBudget, SafeCall};
use tower::ServiceBuilder;

use crate::peers::{
    Attempts, seatbelt_breaker, seatbelt_context, seatbelt_retry, tower_call,
    tower_resilience_layer,
};
use crate::{
    Failure, OPEN, failsafe_breaker, key, no_budget_policy, op, recloser_breaker, runtime,
    safecall_configs, shuffled,
};

/// Long enough that an opened breaker stays open for the whole run.
const HOUR: Duration = Duration::from_secs(3600);

/// Keys of the registry case with instruction counts. Counts do not see cache
/// misses, so a larger registry would count the same: its cost is in time
/// (`success_registry_1m` in `benches/overhead.rs`).
pub const REGISTRY_KEYS: usize = 10_000;

/// Every case, named `group/function` as in criterion's output.
pub const CASES: &[&str] = &[
    "success_retry/bare_call",
    "success_retry/safecall",
    "success_retry/safecall_no_budget",
    "success_retry/tower_retry",
    "success_retry/backon",
    "success_retry/tokio_retry2",
    "success_retry/seatbelt",
    "success_breaker/safecall_default",
    "success_breaker/safecall_count",
    "success_breaker/safecall_consecutive",
    "success_breaker/recloser",
    "success_breaker/failsafe",
    "success_breaker/tower_resilience",
    "success_breaker/seatbelt",
    "success_registry_10k/map_lookup_only",
    "success_registry_10k/dashmap_lookup_only",
    "success_registry_10k/safecall_lookup_only",
    "success_registry_10k/safecall",
    "success_registry_10k/recloser",
    "success_registry_10k/failsafe",
    "open_rejection/safecall_default",
    "open_rejection/safecall_count",
    "open_rejection/safecall_consecutive",
    "open_rejection/recloser",
    "open_rejection/failsafe",
    "open_rejection/tower_resilience",
    "open_rejection/seatbelt",
    "three_attempts_zero_delay/safecall",
    "three_attempts_zero_delay/tower_retry",
    "three_attempts_zero_delay/seatbelt",
    "three_attempts_zero_delay/backon",
    "three_attempts_zero_delay/tokio_retry2",
    "tower_stack_success/bare_service",
    "tower_stack_success/tower_retry",
    "tower_stack_success/safecall_layer",
    "tower_stack_success/safecall_layer_no_budget",
    "tower_stack_success/safecall_layer_breaker",
    "tower_stack_success/tower_resilience",
];

/// The policy of the zero-delay case: 3 retries, no wait, no budget.
pub fn zero_delay_policy() -> SafeCall<Failure> {
    SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy")
}

/// An operation that fails twice, then succeeds: 3 attempts per call.
pub fn fails_twice(counter: &AtomicU32) -> impl Future<Output = Result<u64, Failure>> + use<> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    async move {
        if n % 3 < 2 {
            Err(Failure)
        } else {
            Ok(u64::from(n))
        }
    }
}

/// Trips a safecall breaker by its own rules (100 failures in a row).
pub fn trip(breaker: &Breaker) {
    for _ in 0..100 {
        if let Ok(p) = breaker.try_acquire() {
            p.record(Outcome::Failure);
        }
    }
}

/// `n` calls of one expression in one `block_on`; counts the `Ok`s.
macro_rules! calls {
    ($rt:expr, $n:expr, |$i:ident| $call:expr) => {
        $rt.block_on(async {
            let mut ok = 0u64;
            for $i in 0..$n {
                ok += u64::from(black_box($call));
            }
            ok
        })
    };
}

/// Runs case `name` for `n` calls; returns how many succeeded (rejections
/// count as successes of the open-rejection cases), or `None` for a name not
/// in [`CASES`].
pub fn run(name: &str, n: u64) -> Option<u64> {
    let (group, function) = name.split_once('/')?;
    match group {
        "success_retry" => success_retry(function, n),
        "success_breaker" => success_breaker(function, n),
        "success_registry_10k" => success_registry(function, n),
        "open_rejection" => open_rejection(function, n),
        "three_attempts_zero_delay" => zero_delay(function, n),
        "tower_stack_success" => tower_stack(function, n),
        _ => None,
    }
}

fn success_retry(function: &str, n: u64) -> Option<u64> {
    let rt = runtime();
    Some(match function {
        "bare_call" => calls!(rt, n, |i| op(i).await.is_ok()),
        "safecall" => {
            let p: SafeCall<Failure> = SafeCall::default();
            calls!(rt, n, |i| p.call(|| op(i)).await.is_ok())
        }
        "safecall_no_budget" => {
            let p = no_budget_policy();
            calls!(rt, n, |i| p.call(|| op(i)).await.is_ok())
        }
        "tower_retry" => {
            let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "backon" => {
            use backon::Retryable;
            calls!(rt, n, |i| (|| op(i))
                .retry(backon::ExponentialBuilder::default().with_max_times(3))
                .await
                .is_ok())
        }
        "tokio_retry2" => calls!(rt, n, |i| {
            let strategy = tokio_retry2::strategy::ExponentialBackoff::from_millis(1000).take(3);
            tokio_retry2::Retry::spawn(strategy, || async move {
                op(i).await.map_err(tokio_retry2::RetryError::transient)
            })
            .await
            .is_ok()
        }),
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let svc = (seatbelt_retry(&ctx), Execute::new(op)).into_service();
            calls!(rt, n, |i| svc.execute(i).await.is_ok())
        }
        _ => return None,
    })
}

fn success_breaker(function: &str, n: u64) -> Option<u64> {
    use failsafe::futures::CircuitBreaker as _;
    let rt = runtime();
    let p: SafeCall<Failure> = SafeCall::default();
    Some(match function {
        "safecall_default" | "safecall_count" | "safecall_consecutive" => {
            let (_, config) = safecall_configs::all()
                .into_iter()
                .find(|(c, _)| function.ends_with(c))?;
            let b = Breaker::new(config);
            calls!(rt, n, |i| p.call(|| op(i)).breaker(&b).await.is_ok())
        }
        "recloser" => {
            let r = recloser::AsyncRecloser::from(recloser_breaker(OPEN));
            let mut svc =
                tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| r.call(op(x))));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "failsafe" => {
            let f = failsafe_breaker(OPEN);
            let mut svc =
                tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| f.call(op(x))));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "tower_resilience" => {
            let layer = tower_resilience_layer(OPEN);
            let mut svc =
                tower::retry::Retry::new(Attempts(3), layer.layer_fn(tower::service_fn(op)));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let svc = (
                seatbelt_retry(&ctx),
                seatbelt_breaker(&ctx, OPEN),
                Execute::new(op),
            )
                .into_service();
            calls!(rt, n, |i| svc.execute(i).await.is_ok())
        }
        _ => return None,
    })
}

fn success_registry(function: &str, n: u64) -> Option<u64> {
    use failsafe::futures::CircuitBreaker as _;
    let rt = runtime();
    let p: SafeCall<Failure> = SafeCall::default();
    let keys = REGISTRY_KEYS;
    let names: Vec<String> = (0..keys).map(key).collect();
    let probe: Vec<&str> = shuffled(keys)
        .into_iter()
        .map(|i| names[i].as_str())
        .collect();
    let k = |i: u64| probe[(i % keys as u64) as usize];
    Some(match function {
        "map_lookup_only" => {
            let bare: HashMap<String, u64> = names.iter().cloned().zip(0..).collect();
            calls!(rt, n, |i| black_box(bare.get(k(i)).copied()).is_some())
        }
        "dashmap_lookup_only" => {
            let d: dashmap::DashMap<String, recloser::AsyncRecloser> = names
                .iter()
                .map(|k| (k.clone(), recloser_breaker(OPEN).into()))
                .collect();
            calls!(rt, n, |i| d.get(k(i)).map(|e| e.value().clone()).is_some())
        }
        "safecall_lookup_only" | "safecall" => {
            let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default())
                .max_keys(keys)
                .idle_ttl(HOUR);
            for name in &names {
                drop(registry.get(name.as_str()));
            }
            if function == "safecall_lookup_only" {
                return Some(calls!(rt, n, |i| {
                    drop(black_box(registry.get(k(i))));
                    true
                }));
            }
            calls!(rt, n, |i| {
                let breaker = registry.get(k(i));
                p.call(|| op(i)).breaker(&breaker).await.is_ok()
            })
        }
        "recloser" => {
            let d: dashmap::DashMap<String, recloser::AsyncRecloser> = names
                .iter()
                .map(|k| (k.clone(), recloser_breaker(OPEN).into()))
                .collect();
            calls!(rt, n, |i| {
                let Some(r) = d.get(k(i)).map(|e| e.value().clone()) else {
                    continue;
                };
                let mut svc =
                    tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| r.call(op(x))));
                tower_call(&mut svc, i).await.is_ok()
            })
        }
        "failsafe" => {
            let d: dashmap::DashMap<String, crate::FailsafeBreaker> = names
                .iter()
                .map(|k| (k.clone(), failsafe_breaker(OPEN)))
                .collect();
            calls!(rt, n, |i| {
                let Some(f) = d.get(k(i)).map(|e| e.value().clone()) else {
                    continue;
                };
                let mut svc =
                    tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| f.call(op(x))));
                tower_call(&mut svc, i).await.is_ok()
            })
        }
        _ => return None,
    })
}

/// The operation of the cases that trip a breaker: fails at once.
fn fail() -> std::future::Ready<Result<u64, Failure>> {
    ready(Err(Failure))
}

fn open_rejection(function: &str, n: u64) -> Option<u64> {
    use failsafe::futures::CircuitBreaker as _;
    let rt = runtime();
    let p: SafeCall<Failure> = SafeCall::default();
    Some(match function {
        "safecall_default" | "safecall_count" | "safecall_consecutive" => {
            let (_, config) = safecall_configs::all()
                .into_iter()
                .find(|(c, _)| function.ends_with(c))?;
            let b = Breaker::new(config.open_duration(HOUR));
            trip(&b);
            calls!(rt, n, |i| p.call(|| op(i)).breaker(&b).await.is_err())
        }
        "recloser" => {
            let r = recloser::AsyncRecloser::from(recloser_breaker(HOUR));
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = r.call(fail()).await;
                }
            });
            calls!(rt, n, |i| r.call(op(i)).await.is_err())
        }
        "failsafe" => {
            let f = failsafe_breaker(HOUR);
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = f.call(fail()).await;
                }
            });
            calls!(rt, n, |i| f.call(op(i)).await.is_err())
        }
        "tower_resilience" => {
            let layer = tower_resilience_layer(HOUR);
            let mut svc = layer.layer_fn(tower::service_fn(|_: u64| fail()));
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = tower_call(&mut svc, 0).await;
                }
            });
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_err())
        }
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let svc = (
                seatbelt_breaker(&ctx, HOUR),
                Execute::new(move |_: u64| fail()),
            )
                .into_service();
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = svc.execute(0).await;
                }
            });
            calls!(rt, n, |i| svc.execute(i).await.is_err())
        }
        _ => return None,
    })
}

fn zero_delay(function: &str, n: u64) -> Option<u64> {
    let rt = runtime();
    let counter = AtomicU32::new(0);
    let c = &counter;
    Some(match function {
        "safecall" => {
            let p = zero_delay_policy();
            calls!(rt, n, |_i| p.call(|| fails_twice(c)).await.is_ok())
        }
        "tower_retry" => {
            let mut svc =
                tower::retry::Retry::new(Attempts(3), tower::service_fn(|_: u64| fails_twice(c)));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let counter: &'static AtomicU32 = Box::leak(Box::new(AtomicU32::new(0)));
            let layer = seatbelt_retry(&ctx)
                .backoff(seatbelt::retry::Backoff::Constant)
                .base_delay(Duration::ZERO)
                .use_jitter(false);
            let svc = (layer, Execute::new(move |_: u64| fails_twice(counter))).into_service();
            calls!(rt, n, |i| svc.execute(i).await.is_ok())
        }
        "backon" => {
            use backon::Retryable;
            calls!(rt, n, |_i| (|| fails_twice(c))
                .retry(
                    backon::ConstantBuilder::default()
                        .with_delay(Duration::ZERO)
                        .with_max_times(3),
                )
                .await
                .is_ok())
        }
        "tokio_retry2" => calls!(rt, n, |_i| {
            let strategy = tokio_retry2::strategy::FixedInterval::from_millis(0).take(3);
            tokio_retry2::Retry::spawn(strategy, || async {
                fails_twice(c)
                    .await
                    .map_err(tokio_retry2::RetryError::transient)
            })
            .await
            .is_ok()
        }),
        _ => return None,
    })
}

fn tower_stack(function: &str, n: u64) -> Option<u64> {
    let rt = runtime();
    let policy: SafeCall<Failure> = SafeCall::default();
    Some(match function {
        "bare_service" => {
            let mut svc = tower::service_fn(op);
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "tower_retry" => {
            let mut svc = ServiceBuilder::new()
                .layer(tower::retry::RetryLayer::new(Attempts(3)))
                .service(tower::service_fn(op));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "safecall_layer" => {
            let mut svc = ServiceBuilder::new()
                .layer(SafeCallLayer::new(policy))
                .service(tower::service_fn(op));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "safecall_layer_no_budget" => {
            let mut svc = ServiceBuilder::new()
                .layer(SafeCallLayer::new(no_budget_policy()))
                .service(tower::service_fn(op));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "safecall_layer_breaker" => {
            let registry: BreakerRegistry<u64> = BreakerRegistry::new(BreakerConfig::default());
            let mut svc = ServiceBuilder::new()
                .layer(SafeCallLayer::new(policy).breakers(registry, |_: &u64| 7))
                .service(tower::service_fn(op));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        "tower_resilience" => {
            let layer = tower_resilience_layer(OPEN);
            let mut svc =
                tower::retry::Retry::new(Attempts(3), layer.layer_fn(tower::service_fn(op)));
            calls!(rt, n, |i| tower_call(&mut svc, i).await.is_ok())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case runs, and each call ends as the case says (a success, or a
    /// rejection for the open-breaker cases).
    #[test]
    fn every_case_runs_and_ends_as_named() {
        // backon and tokio-retry2 sleep on the wall clock even for a zero delay.
        let sleeps = [
            "three_attempts_zero_delay/backon",
            "three_attempts_zero_delay/tokio_retry2",
        ];
        for &case in CASES.iter().filter(|c| !sleeps.contains(c)) {
            let got = run(case, 3);
            assert_eq!(got, Some(3), "{case}");
        }
    }
}
