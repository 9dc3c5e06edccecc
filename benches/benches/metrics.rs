//! The cost of safecall's metrics (feature `metrics`), in one run: the same
//! calls with a policy that records nothing (`.metrics(false)`: one branch
//! per call, the stand-in for the feature off, which the callgrind counts in
//! `benches/README.md` compare exactly), with the no-op recorder (the
//! instrumentation alone), and with metrics-exporter-prometheus' recorder
//! installed (what a service pays). Then heap allocations per call under
//! each, counted by a global allocator.
//!
//! Run: `cargo bench -p safecall-bench --features metrics --bench metrics`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use criterion::Criterion;
use metrics::NoopRecorder;
use safecall::{Backoff, Breaker, BreakerConfig, BreakerRegistry, Outcome, RetryBudget, SafeCall};
use safecall_bench::{Failure, op, runtime, time_batch};

#[global_allocator]
static ALLOC: safecall_bench::CountingAlloc = safecall_bench::CountingAlloc;

/// One way of recording: the policies and breakers of every case.
struct Setup {
    name: &'static str,
    /// Run under the no-op recorder (a local one) rather than the global
    /// Prometheus recorder.
    noop: bool,
    retry: SafeCall<Failure>,
    zero: SafeCall<Failure>,
    closed: Breaker,
    open: Breaker,
    _registry: BreakerRegistry<u64>,
}

fn setup(name: &'static str, record: bool, noop: bool) -> Setup {
    let build = || {
        let retry: SafeCall<Failure> = SafeCall::builder()
            .name("retry")
            .metrics(record)
            .build()
            .expect("policy");
        let zero: SafeCall<Failure> = SafeCall::builder()
            .name("zero")
            .metrics(record)
            .backoff(Backoff::constant(Duration::ZERO))
            .retry_budget(RetryBudget::disabled())
            .build()
            .expect("policy");
        let registry: BreakerRegistry<u64> =
            BreakerRegistry::new(BreakerConfig::default().open_duration(Duration::from_secs(3600)))
                .name("orgs");
        let closed = registry.get(&1);
        let open = registry.get(&2);
        for _ in 0..5 {
            if let Ok(p) = open.try_acquire() {
                p.record(Outcome::Failure);
            }
        }
        Setup {
            name,
            noop,
            retry,
            zero,
            closed,
            open,
            _registry: registry,
        }
    };
    if noop {
        metrics::with_local_recorder(&NoopRecorder, build)
    } else {
        build()
    }
}

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

/// Runs `f` under the setup's recorder.
fn under<R>(s: &Setup, f: impl FnOnce() -> R) -> R {
    if s.noop {
        metrics::with_local_recorder(&NoopRecorder, f)
    } else {
        f()
    }
}

fn main() {
    // The Prometheus recorder for the process, before the policies that
    // record into it are built.
    let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    let setups = [
        setup("off", false, false),
        setup("noop_recorder", true, true),
        setup("prometheus", true, false),
    ];
    let rt = runtime();
    let counter = AtomicU32::new(0);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    for case in ["retry", "retry_breaker_default", "rejection", "zero_delay"] {
        let mut g = c.benchmark_group(format!("metrics_{case}"));
        for s in &setups {
            g.bench_function(s.name, |b| {
                b.iter_custom(|iters| {
                    under(s, || match case {
                        "retry" => time_batch(&rt, iters, |i| async move {
                            black_box(s.retry.call(|| op(i)).await.ok());
                        }),
                        "retry_breaker_default" => time_batch(&rt, iters, |i| async move {
                            black_box(s.retry.call(|| op(i)).breaker(&s.closed).await.ok());
                        }),
                        "rejection" => time_batch(&rt, iters, |i| async move {
                            black_box(s.retry.call(|| op(i)).breaker(&s.open).await.is_err());
                        }),
                        _ => time_batch(&rt, iters, |_| async {
                            black_box(s.zero.call(|| fails_twice(&counter)).await.ok());
                        }),
                    })
                })
            });
        }
        g.finish();
    }

    println!("\n| heap allocations per call | off | no-op recorder | Prometheus recorder |");
    println!("| --- | ---: | ---: | ---: |");
    for case in ["retry", "retry_breaker_default", "rejection", "zero_delay"] {
        let per_call: Vec<String> = setups
            .iter()
            .map(|s| {
                under(s, || {
                    rt.block_on(async {
                        let calls = 10_000u64;
                        let run = async |i: u64| match case {
                            "retry" => drop(s.retry.call(|| op(i)).await),
                            "retry_breaker_default" => {
                                drop(s.retry.call(|| op(i)).breaker(&s.closed).await)
                            }
                            "rejection" => drop(s.retry.call(|| op(i)).breaker(&s.open).await),
                            _ => drop(s.zero.call(|| fails_twice(&counter)).await),
                        };
                        for i in 0..1_000 {
                            run(i).await;
                        }
                        let before = safecall_bench::allocations();
                        for i in 0..calls {
                            run(i).await;
                        }
                        format!(
                            "{:.3}",
                            (safecall_bench::allocations() - before) as f64 / calls as f64
                        )
                    })
                })
            })
            .collect();
        println!("| {case} | {} |", per_call.join(" | "));
    }
    // Keep the exporter's storage from growing between runs.
    prometheus.run_upkeep();
}
