//! The breakers alone (their synchronous APIs, no retry, no future), on one
//! thread and on two threads sharing one breaker or one registry: safecall
//! against failsafe and recloser, configured equivalently (see the crate docs).
//!
//! Two-thread cases report the wall time of one thread's calls divided by its
//! number of calls: the latency per call a thread sees while the other thread
//! hammers the same breaker (the machine has 2 cores).
//!
//! Run: `cargo bench -p safecall-bench --bench breaker`.

use std::hint::black_box;
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group, criterion_main};
use failsafe::CircuitBreaker as _;
use safecall::{Breaker, BreakerRegistry, Outcome};
use safecall_bench::{
    FailsafeBreaker, OPEN, failsafe_breaker, key, recloser_breaker, safecall_configs, shuffled,
};

fn success(b: &Breaker) {
    if let Ok(p) = b.try_acquire() {
        p.record(Outcome::Success);
    }
}

fn failsafe_success(f: &FailsafeBreaker) {
    black_box(f.call(|| Ok::<_, ()>(())).is_ok());
}

fn recloser_success(r: &recloser::Recloser) {
    black_box(r.call(|| Ok::<_, ()>(())).is_ok());
}

/// Wall time of `iters` calls of `f` on each of two threads, divided by `iters`.
fn two_threads(iters: u64, f: impl Fn(u64) + Sync) -> Duration {
    let start = StdInstant::now();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let f = &f;
            s.spawn(move || {
                for i in 0..iters {
                    f(i * 2 + t);
                }
            });
        }
    });
    start.elapsed()
}

fn one_thread(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker_alone");
    g.bench_function("clock: tokio Instant::now (reference)", |i| {
        i.iter(tokio::time::Instant::now)
    });
    for (name, config) in safecall_configs::all() {
        let b = Breaker::new(config);
        g.bench_function(format!("safecall_{name}"), |i| {
            i.iter(|| success(black_box(&b)))
        });
    }
    let f = failsafe_breaker(OPEN);
    g.bench_function("failsafe", |i| i.iter(|| failsafe_success(black_box(&f))));
    let r = recloser_breaker(OPEN);
    g.bench_function("recloser", |i| i.iter(|| recloser_success(black_box(&r))));
    g.finish();
}

fn contention(c: &mut Criterion) {
    let mut g = c.benchmark_group("two_threads_one_breaker");
    for (name, config) in safecall_configs::all() {
        let b = Breaker::new(config);
        success(&b);
        g.bench_function(format!("safecall_{name}"), |i| {
            i.iter_custom(|iters| two_threads(iters, |_| success(black_box(&b))))
        });
    }
    let f = failsafe_breaker(OPEN);
    g.bench_function("failsafe", |i| {
        i.iter_custom(|iters| two_threads(iters, |_| failsafe_success(black_box(&f))))
    });
    let r = recloser_breaker(OPEN);
    g.bench_function("recloser", |i| {
        i.iter_custom(|iters| two_threads(iters, |_| recloser_success(black_box(&r))))
    });
    g.finish();

    // One registry (1,000 keys, each thread walking a shuffled order): lookup + call.
    const KEYS: usize = 1_000;
    let names: Vec<String> = (0..KEYS).map(key).collect();
    let probe: Vec<&str> = shuffled(KEYS).iter().map(|&i| names[i].as_str()).collect();
    let mut g = c.benchmark_group("two_threads_one_registry");
    let registry: BreakerRegistry<String> = BreakerRegistry::new(safecall_configs::default())
        .max_keys(KEYS)
        .idle_ttl(Duration::from_secs(3600));
    for k in &names {
        success(&registry.get(k.as_str()));
    }
    assert_eq!(registry.len(), KEYS);
    g.bench_function("safecall", |i| {
        i.iter_custom(|iters| {
            two_threads(iters, |j| {
                success(&registry.get(probe[j as usize % KEYS]));
            })
        })
    });
    g.bench_function("safecall with", |i| {
        i.iter_custom(|iters| {
            two_threads(iters, |j| {
                registry.with(probe[j as usize % KEYS], success);
            })
        })
    });
    let dash_f: dashmap::DashMap<String, FailsafeBreaker> = names
        .iter()
        .map(|k| (k.clone(), failsafe_breaker(OPEN)))
        .collect();
    g.bench_function("failsafe (DashMap)", |i| {
        i.iter_custom(|iters| {
            two_threads(iters, |j| {
                if let Some(f) = dash_f.get(probe[j as usize % KEYS]) {
                    failsafe_success(f.value());
                }
            })
        })
    });
    let dash_r: dashmap::DashMap<String, recloser::Recloser> = names
        .iter()
        .map(|k| (k.clone(), recloser_breaker(OPEN)))
        .collect();
    g.bench_function("recloser (DashMap)", |i| {
        i.iter_custom(|iters| {
            two_threads(iters, |j| {
                if let Some(r) = dash_r.get(probe[j as usize % KEYS]) {
                    recloser_success(r.value());
                }
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
        .sample_size(30);
    targets = one_thread, contention
}
criterion_main!(benches);
