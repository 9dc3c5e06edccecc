//! Overhead of a call through safecall against the bare call and the Rust peers,
//! measured in one run. Operation: an `async fn` ready on first poll; runtime:
//! current-thread tokio. Each case is validated once (outcome, attempt count)
//! before it is timed.
//!
//! Run: `cargo bench -p safecall-bench --bench overhead`.

use std::future::{Ready, ready};
use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use safecall::{Backoff, RetryBudget, SafeCall};
use safecall_bench::{Failure, op, time_batch};
use tower::{Service, ServiceExt};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// tower's retry policy for the benches: retry any error, up to `n` times, at once.
#[derive(Clone, Copy)]
struct Attempts(u32);

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
    type Future = Ready<()>;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => None,
            Err(_) if self.0 == 0 => None,
            Err(_) => {
                self.0 -= 1;
                Some(ready(()))
            }
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn zero_delay_policy() -> SafeCall<Failure> {
    SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy")
}

/// An operation that fails twice, then succeeds: 3 attempts per call.
fn fails_twice(counter: &AtomicU32) -> impl Future<Output = Result<u64, Failure>> + use<> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    async move {
        if n % 3 < 2 {
            Err(Failure)
        } else {
            Ok(u64::from(n))
        }
    }
}

fn validate(rt: &tokio::runtime::Runtime) {
    rt.block_on(async {
        let policy: SafeCall<Failure> = SafeCall::default();
        assert_eq!(policy.call(|| op(7)).await.ok(), Some(7));
        let counter = AtomicU32::new(0);
        let p = zero_delay_policy();
        assert_eq!(p.call(|| fails_twice(&counter)).await.ok(), Some(2));
        assert_eq!(counter.load(Ordering::Relaxed), 3);

        let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
        assert_eq!(svc.ready().await.unwrap().call(7).await, Ok(7));
        let counter = AtomicU32::new(0);
        let mut svc = tower::retry::Retry::new(
            Attempts(3),
            tower::service_fn(|_: u64| fails_twice(&counter)),
        );
        assert_eq!(svc.ready().await.unwrap().call(0).await, Ok(2));
        assert_eq!(counter.load(Ordering::Relaxed), 3);

        use backon::Retryable;
        let counter = AtomicU32::new(0);
        let b = backon::ConstantBuilder::default()
            .with_delay(Duration::ZERO)
            .with_max_times(3);
        assert_eq!((|| fails_twice(&counter)).retry(b).await, Ok(2));
        assert_eq!(counter.load(Ordering::Relaxed), 3);
    });
}

fn retry_success(c: &mut Criterion) {
    let rt = runtime();
    validate(&rt);
    let mut g = c.benchmark_group("retry_only_success");

    g.bench_function("bare_call", |b| {
        b.iter_custom(|iters| {
            time_batch(&rt, iters, |i| async move {
                black_box(op(i).await.ok());
            })
        })
    });

    let default_policy: SafeCall<Failure> = SafeCall::default();
    g.bench_function("safecall_default", |b| {
        b.iter_custom(|iters| {
            let p = black_box(&default_policy);
            time_batch(&rt, iters, |i| async move {
                black_box(p.call(|| op(i)).await.ok());
            })
        })
    });

    let no_budget: SafeCall<Failure> = SafeCall::builder()
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy");
    g.bench_function("safecall_no_budget", |b| {
        b.iter_custom(|iters| {
            let p = black_box(&no_budget);
            time_batch(&rt, iters, |i| async move {
                black_box(p.call(|| op(i)).await.ok());
            })
        })
    });

    g.bench_function("tower_retry", |b| {
        b.iter_custom(|iters| {
            let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    let svc = svc.ready().await.expect("ready");
                    black_box(svc.call(i).await.ok());
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
    g.finish();
}

fn three_attempts_zero_delay(c: &mut Criterion) {
    let rt = runtime();
    let mut g = c.benchmark_group("three_attempts_zero_delay");

    let policy = zero_delay_policy();
    g.bench_function("safecall", |b| {
        let counter = AtomicU32::new(0);
        b.iter_custom(|iters| {
            let (p, counter) = (black_box(&policy), &counter);
            time_batch(&rt, iters, |_| async move {
                black_box(p.call(|| fails_twice(counter)).await.ok());
            })
        })
    });

    g.bench_function("tower_retry", |b| {
        let counter = AtomicU32::new(0);
        b.iter_custom(|iters| {
            let counter = &counter;
            let mut svc = tower::retry::Retry::new(
                Attempts(3),
                tower::service_fn(|_: u64| fails_twice(counter)),
            );
            rt.block_on(async {
                let start = std::time::Instant::now();
                for i in 0..iters {
                    let svc = svc.ready().await.expect("ready");
                    black_box(svc.call(i).await.ok());
                }
                start.elapsed()
            })
        })
    });

    // backon and tokio-retry2 sleep even for a zero delay, and tokio rounds every
    // timer up to the next millisecond: about 2 ms per call. Few samples suffice.
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(3));
    g.bench_function("backon", |b| {
        use backon::Retryable;
        let counter = AtomicU32::new(0);
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
        let counter = AtomicU32::new(0);
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
        .measurement_time(Duration::from_secs(2));
    targets = retry_success, three_attempts_zero_delay
}
criterion_main!(benches);
