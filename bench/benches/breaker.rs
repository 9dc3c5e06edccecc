//! Hot-path costs of the breaker and the registry, against a bare map, a
//! sharded std map and dashmap. Run: `cd perf && cargo bench`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::hint::black_box;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant as StdInstant};

use criterion::{Criterion, criterion_group, criterion_main};
use safecall::{Breaker, BreakerConfig, BreakerRegistry, Outcome};

fn success(b: &Breaker) {
    if let Ok(p) = b.try_acquire() {
        p.record(Outcome::Success);
    }
}

fn breaker(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    g.bench_function("tokio Instant::now (reference)", |i| {
        i.iter(tokio::time::Instant::now)
    });
    let configs = [
        (
            "default (50 % over 30 s time window)",
            BreakerConfig::default(),
        ),
        (
            "consecutive failures only",
            BreakerConfig::default().no_failure_rate(),
        ),
        (
            "count window (last 100 calls)",
            BreakerConfig::default().count_window(0.5, 100),
        ),
    ];
    for (name, config) in &configs {
        let b = Breaker::new(config.clone());
        g.bench_function(format!("closed success / {name}"), |i| {
            i.iter(|| success(black_box(&b)))
        });
    }
    let open = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(3600)),
    );
    if let Ok(p) = open.try_acquire() {
        p.record(Outcome::Failure);
    }
    g.bench_function("open rejection", |i| {
        i.iter(|| black_box(black_box(&open).try_acquire().is_err()))
    });
    for (name, config) in &configs {
        let b = Breaker::new(config.clone());
        g.bench_function(format!("2 threads, one breaker, per call / {name}"), |i| {
            i.iter_custom(|iters| {
                let start = StdInstant::now();
                std::thread::scope(|s| {
                    for _ in 0..2 {
                        s.spawn(|| {
                            for _ in 0..iters {
                                success(black_box(&b));
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

const KEYS: usize = 1_000_000;

fn lookup(c: &mut Criterion) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("org-{i:07}")).collect();
    // A fixed pseudo-random visiting order (no cache-friendly sequence).
    let mut order: Vec<usize> = (0..KEYS).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..KEYS).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let probe: Vec<&str> = order.iter().map(|&i| keys[i].as_str()).collect();

    let mut g = c.benchmark_group("lookup of an existing key among 1,000,000");
    let bare: HashMap<String, u64> = keys.iter().cloned().zip(0..).collect();
    let mut n = 0usize;
    g.bench_function("bare std HashMap<String, u64>::get", |i| {
        i.iter(|| {
            n = (n + 1) % KEYS;
            black_box(bare.get(probe[n]).copied())
        })
    });

    let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default())
        .max_keys(KEYS)
        .idle_ttl(Duration::from_secs(3600));
    for k in &keys {
        drop(registry.get(k));
    }
    g.bench_function("BreakerRegistry::get (returns a Breaker handle)", |i| {
        i.iter(|| {
            n = (n + 1) % KEYS;
            black_box(registry.get(probe[n]))
        })
    });

    // The alternatives considered for the registry's map.
    let state = RandomState::new();
    let shards: Vec<RwLock<HashMap<String, Breaker>>> =
        (0..64).map(|_| RwLock::new(HashMap::new())).collect();
    for k in &keys {
        let h = state.hash_one(k.as_str());
        shards[(h >> 32) as usize & 63]
            .write()
            .unwrap()
            .insert(k.clone(), Breaker::new(BreakerConfig::default()));
    }
    g.bench_function(
        "64 std RwLock<HashMap<String, Breaker>> shards, get + clone",
        |i| {
            i.iter(|| {
                n = (n + 1) % KEYS;
                let k = probe[n];
                let h = state.hash_one(k);
                let g = shards[(h >> 32) as usize & 63].read().unwrap();
                black_box(g.get(k).cloned())
            })
        },
    );
    drop(shards);

    let dash: dashmap::DashMap<String, Breaker> = dashmap::DashMap::new();
    for k in &keys {
        dash.insert(k.clone(), Breaker::new(BreakerConfig::default()));
    }
    g.bench_function("dashmap::DashMap<String, Breaker>, get + clone", |i| {
        i.iter(|| {
            n = (n + 1) % KEYS;
            black_box(dash.get(probe[n]).map(|e| e.value().clone()))
        })
    });
    drop(dash);

    let arc_registry = Arc::new(registry);
    g.bench_function("BreakerRegistry::get, 2 threads, per lookup", |i| {
        i.iter_custom(|iters| {
            let start = StdInstant::now();
            std::thread::scope(|s| {
                for t in 0..2usize {
                    let (r, probe) = (&arc_registry, &probe);
                    s.spawn(move || {
                        for j in 0..iters as usize {
                            black_box(r.get(probe[(j * 2 + t) % KEYS]));
                        }
                    });
                }
            });
            start.elapsed()
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
    targets = breaker, lookup
}
criterion_main!(benches);
