//! Overhead of a call through safecall against the bare call and the Rust peers,
//! measured in one run. Operation: an `async fn` ready on first poll; runtime:
//! current-thread tokio (timer on, no `test-util`: the clock users get). Each
//! case is validated once (outcome, attempt count) before it is timed.
//!
//! Groups (the chart's cases):
//! - `success_retry`: retry only, the call succeeds at once;
//! - `success_breaker`: retry + one breaker; the peers without a combinator
//!   run their breaker inside tower's retry;
//! - `success_registry_10k` / `success_registry_1m`: retry + the breaker of a
//!   random key among 10,000 / 1,000,000 (DESIGN.md's sizes), looked up per call;
//!   beside it the lookups alone (a bare map, one behind an `RwLock`, `DashMap`,
//!   the registry's `get` and borrowing `with`) and `with` around a synchronous
//!   breaker success;
//! - `open_rejection`: the breaker is open, the call is refused (the peers'
//!   breakers alone, without a retry layer; safecall with its retry loop);
//! - `three_attempts_zero_delay`: fails twice, succeeds on the 3rd attempt,
//!   with zero delay between attempts.
//!
//! Run: `cargo bench -p safecall-bench --bench overhead`.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::ready;
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use layered::{Execute, Service as _, Stack};
use safecall::{
    Backoff, Breaker, BreakerConfig, BreakerRegistry, Error, Outcome, RetryBudget, SafeCall,
};
use safecall_bench::cases::{fails_twice, fails_twice_send, take_fails_twice_send};
use safecall_bench::peers::{
    Attempts, seatbelt_breaker, seatbelt_context, seatbelt_retry, tower_resilience_layer,
};
use safecall_bench::tower_call;
use safecall_bench::{
    Failure, failsafe_breaker, key, op, recloser_breaker, runtime, safecall_configs, shuffled,
    time_batch,
};

/// Long enough that an opened breaker stays open for the whole run.
const HOUR: Duration = Duration::from_secs(3600);

fn zero_delay_policy() -> SafeCall<Failure> {
    SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy")
}

/// A zero-delay case's counter for the life of the process.
fn leak_cell() -> &'static Cell<u32> {
    Box::leak(Box::new(Cell::new(0)))
}

/// [`check`] for a zero-delay case's `Cell` counter.
#[track_caller]
fn check_cell<T: PartialEq + std::fmt::Debug>(
    case: &str,
    got: T,
    want: T,
    counter: &Cell<u32>,
    n: u32,
) {
    assert_eq!(got, want, "{case}: outcome");
    assert_eq!(counter.replace(0), n, "{case}: attempts");
}

/// The operation, counting its invocations (for validation only).
async fn counted(counter: &'static AtomicU32, x: u64) -> Result<u64, Failure> {
    counter.fetch_add(1, Ordering::Relaxed);
    op(x).await
}

fn always_fails(counter: &AtomicU32) -> impl Future<Output = Result<u64, Failure>> + use<> {
    counter.fetch_add(1, Ordering::Relaxed);
    ready(Err(Failure))
}

/// A counter for the life of the process (seatbelt's services want `'static`).
fn leak() -> &'static AtomicU32 {
    Box::leak(Box::new(AtomicU32::new(0)))
}

/// Asserts an outcome and the number of invocations, then resets the counter.
#[track_caller]
fn check<T: PartialEq + std::fmt::Debug>(case: &str, got: T, want: T, counter: &AtomicU32, n: u32) {
    assert_eq!(got, want, "{case}: outcome");
    assert_eq!(counter.swap(0, Ordering::Relaxed), n, "{case}: attempts");
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    c.benchmark_group(name)
}

fn success_retry(c: &mut Criterion) {
    let rt = runtime();
    let n: &'static AtomicU32 = leak();
    let default_policy: SafeCall<Failure> = SafeCall::default();
    let no_budget = safecall_bench::no_budget_policy();
    let ctx = rt.block_on(async { seatbelt_context() });
    let seatbelt_svc = (seatbelt_retry(&ctx), Execute::new(op)).into_service();
    rt.block_on(async {
        check(
            "safecall",
            default_policy.call(|| counted(n, 7)).await.ok(),
            Some(7),
            n,
            1,
        );
        check(
            "safecall_no_budget",
            no_budget.call(|| counted(n, 7)).await.ok(),
            Some(7),
            n,
            1,
        );
        let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| counted(n, x)));
        check("tower_retry", tower_call!(&mut svc, 7), Ok(7), n, 1);
        use backon::Retryable;
        let r = (|| counted(n, 7))
            .retry(backon::ExponentialBuilder::default().with_max_times(3))
            .await;
        check("backon", r, Ok(7), n, 1);
        let strategy = tokio_retry2::strategy::ExponentialBackoff::from_millis(1000).take(3);
        let r = tokio_retry2::Retry::spawn(strategy, || async {
            counted(n, 7)
                .await
                .map_err(tokio_retry2::RetryError::transient)
        })
        .await;
        check("tokio_retry2", r, Ok(7), n, 1);
        let svc = (seatbelt_retry(&ctx), Execute::new(move |x| counted(n, x))).into_service();
        check("seatbelt", svc.execute(7).await, Ok(7), n, 1);
        assert_eq!(seatbelt_svc.execute(7).await, Ok(7));
    });

    let mut g = group(c, "success_retry");
    g.bench_function("bare_call", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| async move {
                black_box(op(i).await.ok());
            })
        })
    });
    g.bench_function("safecall", |b| {
        b.iter_custom(|iters| {
            let p = black_box(&default_policy);
            time_batch(&rt, iters, |i| async move {
                black_box(p.call(|| op(i)).await.ok());
            })
        })
    });
    g.bench_function("safecall_no_budget", |b| {
        b.iter_custom(|iters| {
            let p = black_box(&no_budget);
            time_batch(&rt, iters, |i| async move {
                black_box(p.call(|| op(i)).await.ok());
            })
        })
    });
    g.bench_function("tower_retry", |b| {
        let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
        b.iter_custom(|iters| {
            let svc = &mut svc;
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    black_box(tower_call!(svc, i).ok());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("backon", |b| {
        use backon::Retryable;
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| async move {
                let r = (|| op(i))
                    .retry(backon::ExponentialBuilder::default().with_max_times(3))
                    .await;
                black_box(r.ok());
            })
        })
    });
    g.bench_function("tokio_retry2", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| async move {
                let strategy =
                    tokio_retry2::strategy::ExponentialBackoff::from_millis(1000).take(3);
                let r = tokio_retry2::Retry::spawn(strategy, || async move {
                    op(i).await.map_err(tokio_retry2::RetryError::transient)
                })
                .await;
                black_box(r.ok());
            })
        })
    });
    g.bench_function("seatbelt", |b| {
        b.iter_custom(|iters| {
            let svc = &seatbelt_svc;
            time_batch(&rt, iters, |i| async move {
                black_box(svc.execute(i).await.ok());
            })
        })
    });
    g.finish();
}

fn success_breaker(c: &mut Criterion) {
    let rt = runtime();
    let n: &'static AtomicU32 = leak();
    let policy: SafeCall<Failure> = SafeCall::default();
    let breakers: Vec<(&str, Breaker)> = safecall_configs::all()
        .into_iter()
        .map(|(name, config)| (name, Breaker::new(config)))
        .collect();
    let failsafe = failsafe_breaker(safecall_bench::OPEN);
    let recloser = recloser::AsyncRecloser::from(recloser_breaker(safecall_bench::OPEN));
    let tr_layer = tower_resilience_layer(safecall_bench::OPEN);
    let ctx = rt.block_on(async { seatbelt_context() });
    let seatbelt_svc = (
        seatbelt_retry(&ctx),
        seatbelt_breaker(&ctx, safecall_bench::OPEN),
        Execute::new(op),
    )
        .into_service();
    rt.block_on(async {
        use failsafe::futures::CircuitBreaker as _;
        for (name, b) in &breakers {
            let r = policy.call(|| counted(n, 7)).breaker(b).await.ok();
            check(name, r, Some(7), n, 1);
        }
        let mut svc = tower::retry::Retry::new(
            Attempts(3),
            tower::service_fn(|x| failsafe.call(counted(n, x))),
        );
        check("failsafe", tower_call!(&mut svc, 7).ok(), Some(7), n, 1);
        let mut svc = tower::retry::Retry::new(
            Attempts(3),
            tower::service_fn(|x| recloser.call(counted(n, x))),
        );
        check("recloser", tower_call!(&mut svc, 7).ok(), Some(7), n, 1);
        let inner = tower::service_fn(|x| counted(n, x));
        // tower-resilience needs a 'static inner service: validate with a fresh one.
        let _ = inner;
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tr_layer.layer_fn(tower::service_fn(op)));
        assert_eq!(tower_call!(&mut svc, 7).ok(), Some(7), "tower-resilience");
        let svc = (
            seatbelt_retry(&ctx),
            seatbelt_breaker(&ctx, safecall_bench::OPEN),
            Execute::new(move |x| counted(n, x)),
        )
            .into_service();
        check("seatbelt", svc.execute(7).await, Ok(7), n, 1);
    });

    let mut g = group(c, "success_breaker");
    for (name, breaker) in &breakers {
        g.bench_function(format!("safecall_{name}"), |b| {
            b.iter_custom(|iters| {
                let (p, br) = (black_box(&policy), black_box(breaker));
                time_batch(&rt, iters, |i| async move {
                    black_box(p.call(|| op(i)).breaker(br).await.ok());
                })
            })
        });
    }
    g.bench_function("failsafe", |b| {
        use failsafe::futures::CircuitBreaker as _;
        let f = &failsafe;
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tower::service_fn(move |x| f.call(op(x))));
        b.iter_custom(|iters| {
            let svc = &mut svc;
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    black_box(tower_call!(svc, i).ok());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("recloser", |b| {
        let r = &recloser;
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tower::service_fn(move |x| r.call(op(x))));
        b.iter_custom(|iters| {
            let svc = &mut svc;
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    black_box(tower_call!(svc, i).ok());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("tower_resilience", |b| {
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tr_layer.layer_fn(tower::service_fn(op)));
        b.iter_custom(|iters| {
            let svc = &mut svc;
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    black_box(tower_call!(svc, i).ok());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("seatbelt", |b| {
        b.iter_custom(|iters| {
            let svc = &seatbelt_svc;
            time_batch(&rt, iters, |i| async move {
                black_box(svc.execute(i).await.ok());
            })
        })
    });
    g.finish();
}

/// Retry + the breaker of a random key among `keys`, looked up per call.
fn registry_case(c: &mut Criterion, name: &str, keys: usize) {
    let rt = runtime();
    let policy: SafeCall<Failure> = SafeCall::default();
    let names: Vec<String> = (0..keys).map(key).collect();
    let order = shuffled(keys);
    let probe: Vec<&str> = order.iter().map(|&i| names[i].as_str()).collect();
    let cursor = Cell::new(0usize);
    let next = || {
        let k = cursor.get();
        cursor.set(if k + 1 == keys { 0 } else { k + 1 });
        probe[k]
    };

    let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default())
        .max_keys(keys)
        .idle_ttl(HOUR);
    for k in &names {
        drop(registry.get(k.as_str()));
    }
    let bare: HashMap<String, u64> = names.iter().cloned().zip(0..).collect();
    let dash_recloser: dashmap::DashMap<String, recloser::AsyncRecloser> = names
        .iter()
        .map(|k| (k.clone(), recloser_breaker(safecall_bench::OPEN).into()))
        .collect();
    let dash_failsafe: dashmap::DashMap<String, safecall_bench::FailsafeBreaker> = names
        .iter()
        .map(|k| (k.clone(), failsafe_breaker(safecall_bench::OPEN)))
        .collect();
    rt.block_on(async {
        let b = registry.get(probe[0]);
        assert_eq!(policy.call(|| op(7)).breaker(&b).await.ok(), Some(7));
        assert_eq!(registry.len(), keys);
        assert_eq!(bare.get(probe[0]).copied(), Some(order[0] as u64));
    });

    let mut g = group(c, name);
    g.bench_function("map_lookup_only", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |_| {
                let k = next();
                let bare = &bare;
                async move {
                    black_box(bare.get(k).copied());
                }
            })
        })
    });
    let locked = std::sync::RwLock::new(bare.clone());
    g.bench_function("rwlock_map_lookup_only", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |_| {
                let k = next();
                let m = &locked;
                async move {
                    black_box(m.read().ok().and_then(|m| m.get(k).copied()));
                }
            })
        })
    });
    g.bench_function("safecall_with_lookup_only", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |_| {
                let k = next();
                let r = &registry;
                async move {
                    black_box(r.with(k, |b| b.state()));
                }
            })
        })
    });
    g.bench_function("safecall_with_breaker_alone", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |_| {
                let k = next();
                let r = &registry;
                async move {
                    r.with(k, |b| {
                        if let Ok(p) = b.try_acquire() {
                            p.record(Outcome::Success);
                        }
                    });
                }
            })
        })
    });
    g.bench_function("dashmap_lookup_only", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |_| {
                let k = next();
                let d = &dash_recloser;
                async move {
                    black_box(d.get(k).map(|e| e.value().clone()));
                }
            })
        })
    });
    g.bench_function("safecall_lookup_only", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |_| {
                let k = next();
                let r = &registry;
                async move {
                    black_box(r.get(k));
                }
            })
        })
    });
    g.bench_function("safecall", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| {
                let k = next();
                let (p, r) = (&policy, &registry);
                async move {
                    let breaker = r.get(k);
                    black_box(p.call(|| op(i)).breaker(&breaker).await.ok());
                }
            })
        })
    });
    g.bench_function("recloser", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| {
                let k = next();
                let d = &dash_recloser;
                async move {
                    let Some(r) = d.get(k).map(|e| e.value().clone()) else {
                        return;
                    };
                    let mut svc =
                        tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| r.call(op(x))));
                    black_box(tower_call!(&mut svc, i).ok());
                }
            })
        })
    });
    g.bench_function("failsafe", |b| {
        use failsafe::futures::CircuitBreaker as _;
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| {
                let k = next();
                let d = &dash_failsafe;
                async move {
                    let Some(f) = d.get(k).map(|e| e.value().clone()) else {
                        return;
                    };
                    let mut svc =
                        tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| f.call(op(x))));
                    black_box(tower_call!(&mut svc, i).ok());
                }
            })
        })
    });
    g.finish();
}

fn success_registry(c: &mut Criterion) {
    registry_case(c, "success_registry_10k", 10_000);
    registry_case(c, "success_registry_1m", 1_000_000);
}

fn open_rejection(c: &mut Criterion) {
    use failsafe::futures::CircuitBreaker as _;
    let rt = runtime();
    let n: &'static AtomicU32 = leak();
    let policy: SafeCall<Failure> = SafeCall::default();
    let breakers: Vec<(&str, Breaker)> = safecall_configs::all()
        .into_iter()
        .map(|(name, config)| (name, Breaker::new(config.open_duration(HOUR))))
        .collect();
    let failsafe = failsafe_breaker(HOUR);
    let recloser = recloser::AsyncRecloser::from(recloser_breaker(HOUR));
    let tr_layer = tower_resilience_layer(HOUR);
    let mut tr_svc = tr_layer.layer_fn(tower::service_fn(|_: u64| ready(Err::<u64, _>(Failure))));
    let ctx = rt.block_on(async { seatbelt_context() });
    let seatbelt_calls: &'static AtomicU32 = leak();
    let seatbelt_svc = (
        seatbelt_breaker(&ctx, HOUR),
        Execute::new(move |_: u64| always_fails(seatbelt_calls)),
    )
        .into_service();
    rt.block_on(async {
        // Trip every breaker by its own rule.
        for (_, b) in &breakers {
            for _ in 0..100 {
                if let Ok(p) = b.try_acquire() {
                    p.record(Outcome::Failure);
                }
            }
        }
        for _ in 0..200 {
            let _ = failsafe.call(always_fails(n)).await;
            let _ = recloser.call(always_fails(n)).await;
            let _ = tower_call!(&mut tr_svc, 0);
            let _ = seatbelt_svc.execute(0).await;
        }
        n.store(0, Ordering::Relaxed);
        seatbelt_calls.store(0, Ordering::Relaxed);
        for (name, b) in &breakers {
            let r = policy.call(|| counted(n, 7)).breaker(b).await;
            assert!(
                matches!(r, Err(Error::CircuitOpen { attempts: 0, .. })),
                "{name}: {r:?}"
            );
            check(name, (), (), n, 0);
        }
        let r = failsafe.call(counted(n, 7)).await;
        assert!(matches!(r, Err(failsafe::Error::Rejected)), "failsafe");
        check("failsafe", (), (), n, 0);
        let r = recloser.call(counted(n, 7)).await;
        assert!(matches!(r, Err(recloser::Error::Rejected)), "recloser");
        check("recloser", (), (), n, 0);
        let r = tower_call!(&mut tr_svc, 7);
        assert!(
            matches!(
                r,
                Err(tower_resilience::circuitbreaker::CircuitBreakerError::OpenCircuit)
            ),
            "tower-resilience"
        );
        assert!(tr_svc.is_open());
        let mut refused = 0;
        for _ in 0..10 {
            refused += u32::from(seatbelt_svc.execute(7).await.is_err());
        }
        assert_eq!(refused, 10, "seatbelt rejects");
        check("seatbelt", (), (), seatbelt_calls, 0);
    });

    let mut g = group(c, "open_rejection");
    for (name, breaker) in &breakers {
        g.bench_function(format!("safecall_{name}"), |b| {
            b.iter_custom(|iters| {
                let (p, br) = (black_box(&policy), black_box(breaker));
                time_batch(&rt, iters, |i| async move {
                    black_box(p.call(|| op(i)).breaker(br).await.is_err());
                })
            })
        });
    }
    g.bench_function("failsafe", |b| {
        b.iter_custom(|iters| {
            let f = &failsafe;
            time_batch(&rt, iters, |i| async move {
                black_box(f.call(op(i)).await.is_err());
            })
        })
    });
    g.bench_function("recloser", |b| {
        b.iter_custom(|iters| {
            let r = &recloser;
            time_batch(&rt, iters, |i| async move {
                black_box(r.call(op(i)).await.is_err());
            })
        })
    });
    g.bench_function("tower_resilience", |b| {
        b.iter_custom(|iters| {
            let svc = &mut tr_svc;
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    black_box(tower_call!(svc, i).is_err());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("seatbelt", |b| {
        b.iter_custom(|iters| {
            let svc = &seatbelt_svc;
            time_batch(&rt, iters, |i| async move {
                black_box(svc.execute(i).await.is_err());
            })
        })
    });
    g.finish();
}

fn three_attempts_zero_delay(c: &mut Criterion) {
    let rt = runtime();
    let policy = zero_delay_policy();
    let n: &'static Cell<u32> = leak_cell();
    let ctx = rt.block_on(async { seatbelt_context() });
    let seatbelt_layer = || {
        seatbelt_retry(&ctx)
            .backoff(seatbelt::retry::Backoff::Constant)
            .base_delay(Duration::ZERO)
            .use_jitter(false)
    };
    rt.block_on(async {
        check_cell(
            "safecall",
            policy.call(|| fails_twice(n)).await.ok(),
            Some(2),
            n,
            3,
        );
        let mut svc =
            tower::retry::Retry::new(Attempts(3), tower::service_fn(|_: u64| fails_twice(n)));
        check_cell("tower_retry", tower_call!(&mut svc, 0), Ok(2), n, 3);
        use backon::Retryable;
        let b = backon::ConstantBuilder::default()
            .with_delay(Duration::ZERO)
            .with_max_times(3);
        check_cell("backon", (|| fails_twice(n)).retry(b).await, Ok(2), n, 3);
        let strategy = tokio_retry2::strategy::FixedInterval::from_millis(0).take(3);
        let r = tokio_retry2::Retry::spawn(strategy, || async {
            fails_twice(n)
                .await
                .map_err(tokio_retry2::RetryError::transient)
        })
        .await;
        check_cell("tokio_retry2", r, Ok(2), n, 3);
        let svc = (seatbelt_layer(), Execute::new(|_: u64| fails_twice_send())).into_service();
        assert_eq!(svc.execute(0).await, Ok(2), "seatbelt: outcome");
        assert_eq!(take_fails_twice_send(), 3, "seatbelt: attempts");
    });

    let mut g = group(c, "three_attempts_zero_delay");
    g.bench_function("safecall", |b| {
        let counter = Cell::new(0);
        b.iter_custom(|iters| {
            let (p, counter) = (black_box(&policy), &counter);
            time_batch(&rt, iters, |_| async move {
                black_box(p.call(|| fails_twice(counter)).await.ok());
            })
        })
    });
    g.bench_function("tower_retry", |b| {
        let counter = Cell::new(0);
        b.iter_custom(|iters| {
            let counter = &counter;
            let mut svc = tower::retry::Retry::new(
                Attempts(3),
                tower::service_fn(|_: u64| fails_twice(counter)),
            );
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    black_box(tower_call!(&mut svc, i).ok());
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("seatbelt", |b| {
        let svc = (seatbelt_layer(), Execute::new(|_: u64| fails_twice_send())).into_service();
        b.iter_custom(|iters| {
            let svc = &svc;
            time_batch(&rt, iters, |i| async move {
                black_box(svc.execute(i).await.ok());
            })
        })
    });

    // backon and tokio-retry2 sleep even for a zero delay, and tokio rounds every
    // timer up to the next millisecond: about 2 ms per call. Few samples suffice.
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("backon", |b| {
        use backon::Retryable;
        let counter = Cell::new(0);
        b.iter_custom(|iters| {
            let counter = &counter;
            time_batch(&rt, iters, |_| async move {
                let r = (|| fails_twice(counter))
                    .retry(
                        backon::ConstantBuilder::default()
                            .with_delay(Duration::ZERO)
                            .with_max_times(3),
                    )
                    .await;
                black_box(r.ok());
            })
        })
    });
    g.bench_function("tokio_retry2", |b| {
        let counter = Cell::new(0);
        b.iter_custom(|iters| {
            let counter = &counter;
            time_batch(&rt, iters, |_| async move {
                let strategy = tokio_retry2::strategy::FixedInterval::from_millis(0).take(3);
                let r = tokio_retry2::Retry::spawn(strategy, || async {
                    fails_twice(counter)
                        .await
                        .map_err(tokio_retry2::RetryError::transient)
                })
                .await;
                black_box(r.ok());
            })
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50);
    targets = success_retry, success_breaker, success_registry, open_rejection, three_attempts_zero_delay
}
criterion_main!(benches);
