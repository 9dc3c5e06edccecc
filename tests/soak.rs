//! Soak: many calls across many tenants on a multi-thread runtime, with injected
//! faults, latencies, Retry-After hints, hangs and cancellations. Afterwards:
//! nothing panicked or hung, no probe slot is held, the registry kept its cap,
//! no call made more than `max_retries + 1` attempts, and the retry budget's bound
//! held over every window.
//!
//! Scale with `SAFECALL_SOAK_CALLS` (default 1,000,000) and
//! `SAFECALL_SOAK_TENANTS` (default 10,000). It runs on the real clock (a
//! multi-thread runtime cannot pause time); the checks are invariants that hold
//! for every interleaving, and the faults come from seeded generators.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use safecall::testing::Chaos;
use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, Error, ErrorClass, Jitter, RetryBudget, SafeCall,
};
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Fault {
    Unavailable,
    RateLimited(Duration),
    BadCredentials,
    BadRequest,
}

fn classify(f: &Fault) -> ErrorClass {
    match f {
        Fault::Unavailable => ErrorClass::Transient,
        Fault::RateLimited(d) => ErrorClass::RetryAfter(*d),
        Fault::BadCredentials => ErrorClass::Permanent,
        Fault::BadRequest => ErrorClass::CallerFault,
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny seeded generator for the workload's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MAX_RETRIES: u32 = 3;
const SECONDS: usize = 600;
const MAX_KEYS: usize = 5_000;

struct Counters {
    calls: AtomicU64,
    cancelled: AtomicU64,
    too_many_attempts: AtomicU64,
    /// Calls and retries per second since the start, for the budget check.
    calls_at: Vec<AtomicU64>,
    retries_at: Vec<AtomicU64>,
}

#[test]
fn soak_many_tenants_with_faults_and_cancellations() {
    let calls = env("SAFECALL_SOAK_CALLS", 1_000_000);
    let tenants = env("SAFECALL_SOAK_TENANTS", 10_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(soak(calls, tenants));
}

async fn soak(calls: u64, tenants: u64) {
    let start = Instant::now();
    let counters = Arc::new(Counters {
        calls: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        too_many_attempts: AtomicU64::new(0),
        calls_at: (0..SECONDS).map(|_| AtomicU64::new(0)).collect(),
        retries_at: (0..SECONDS).map(|_| AtomicU64::new(0)).collect(),
    });
    let second = move || (start.elapsed().as_secs() as usize).min(SECONDS - 1);

    let retries = Arc::clone(&counters);
    let policy: SafeCall<Fault> = SafeCall::builder()
        .max_retries(MAX_RETRIES)
        .backoff(
            Backoff::exponential(Duration::from_micros(200))
                .max_delay(Duration::from_millis(5))
                .jitter(Jitter::Full),
        )
        .attempt_timeout(Duration::from_millis(20))
        .max_retry_after(Duration::from_millis(5))
        .retry_budget(RetryBudget::default())
        .classify(classify)
        .on_retry(move |_| {
            retries.retries_at[second()].fetch_add(1, Ordering::Relaxed);
        })
        .seed(11)
        .build()
        .unwrap();
    let breakers: Arc<BreakerRegistry<u64>> = Arc::new(
        BreakerRegistry::new(
            BreakerConfig::default()
                .consecutive_failures(3)
                .open_duration(Duration::from_millis(30))
                .probe_lease(Duration::from_millis(40))
                .half_open_probes(2),
        )
        .max_keys(MAX_KEYS)
        .idle_ttl(Duration::from_millis(200)),
    );

    let workers = 64u64;
    let per_worker = calls / workers;
    let mut handles = Vec::new();
    for w in 0..workers {
        let policy = policy.clone();
        let breakers = Arc::clone(&breakers);
        let counters = Arc::clone(&counters);
        handles.push(tokio::spawn(async move {
            let mut rng = Rng(w);
            let chaos = Chaos::new(w)
                .error(0.02, || Fault::Unavailable)
                .latency(0.002, Duration::from_millis(1)..=Duration::from_millis(3))
                .hang(0.0005)
                .build()
                .unwrap();
            for _ in 0..per_worker {
                // A few tenants are troubled; most are fine.
                let tenant = if rng.below(10) == 0 {
                    rng.below(20)
                } else {
                    rng.below(tenants)
                };
                let fault = match (tenant, rng.below(100)) {
                    (0..=4, _) => Some(Fault::BadCredentials),
                    (5..=9, 0..=49) => Some(Fault::Unavailable),
                    (10..=14, 0..=29) => {
                        Some(Fault::RateLimited(Duration::from_millis(1 + rng.below(8))))
                    }
                    (_, 0) => Some(Fault::BadRequest),
                    _ => None,
                };
                let cancel = rng.below(200) == 0;
                let breaker = breakers.get(&tenant);
                let attempts = AtomicU32::new(0);
                counters.calls.fetch_add(1, Ordering::Relaxed);
                counters.calls_at[second()].fetch_add(1, Ordering::Relaxed);
                let mut chaotic = chaos.wrap(|| {
                    let fault = fault.clone();
                    async move {
                        match fault {
                            Some(f) => Err(f),
                            None => Ok(tenant),
                        }
                    }
                });
                // Count every attempt the policy makes, injected faults included.
                let op = || {
                    attempts.fetch_add(1, Ordering::Relaxed);
                    chaotic()
                };
                let call = policy.call(op).breaker(&breaker);
                let result = if cancel {
                    // Dropped mid-flight: whatever it was doing.
                    match tokio::time::timeout(Duration::from_micros(500), call).await {
                        Ok(r) => Some(r),
                        Err(_) => {
                            counters.cancelled.fetch_add(1, Ordering::Relaxed);
                            None
                        }
                    }
                } else {
                    Some(call.await)
                };
                let made = attempts.load(Ordering::Relaxed);
                if made > MAX_RETRIES + 1 {
                    counters.too_many_attempts.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(Err(e)) = &result {
                    assert_eq!(e.attempts(), made, "{e:?}");
                    if let Error::CircuitOpen { retry_in, .. } = e {
                        assert!(*retry_in <= Duration::from_millis(40), "{retry_in:?}");
                    }
                }
            }
        }));
    }
    let all = futures::future::join_all(handles);
    let joined = tokio::time::timeout(Duration::from_secs(300), all)
        .await
        .expect("the soak hung");
    for j in joined {
        j.expect("a worker panicked");
    }

    let c = &counters;
    assert_eq!(c.calls.load(Ordering::Relaxed), per_worker * workers);
    assert_eq!(c.too_many_attempts.load(Ordering::Relaxed), 0);
    assert!(breakers.len() <= MAX_KEYS, "{} keys", breakers.len());

    // No probe slot is held once every call has ended (leases included).
    for s in breakers.snapshot() {
        assert_eq!(s.probes_in_flight, 0, "{s:?}");
    }
    assert_eq!(breakers.overflow().snapshot().probes_in_flight, 0);

    // The budget: retries decided within any 9 s span never exceed 20 % of the
    // calls of the 10 s ending with it, plus the floor of 10/s over 10 s.
    let calls_at: Vec<u64> = c
        .calls_at
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let retries_at: Vec<u64> = c
        .retries_at
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .collect();
    let total_retries: u64 = retries_at.iter().sum();
    assert!(total_retries > 0, "the workload retried");
    for a in 0..SECONDS {
        let retries: u64 = retries_at[a..(a + 9).min(SECONDS)].iter().sum();
        let calls: u64 = calls_at[a.saturating_sub(1)..(a + 9).min(SECONDS)]
            .iter()
            .sum();
        assert!(
            retries as f64 <= 0.2 * calls as f64 + 100.0,
            "second {a}: {retries} retries for {calls} calls"
        );
    }
    eprintln!(
        "soak: {} calls, {} retries, {} cancelled, {} keys, {:?}",
        c.calls.load(Ordering::Relaxed),
        total_retries,
        c.cancelled.load(Ordering::Relaxed),
        breakers.len(),
        start.elapsed()
    );
}
