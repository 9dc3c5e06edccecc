//! Heap allocations per call, counted by a global allocator in this test binary
//! of its own. An allocation count is deterministic, unlike a time. Counting is
//! per thread, so other test threads do not interfere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use safecall::{Backoff, Breaker, BreakerConfig, BreakerRegistry, Outcome, SafeCall};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: each method forwards to the system allocator unchanged; the counter
// is a thread-local with a const initialiser, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|a| a.set(a.get() + 1));
        // SAFETY: forwarded unchanged to the system allocator, whose contract
        // the caller already meets.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations made by `f` on this thread.
fn counted(f: impl FnOnce()) -> u64 {
    let before = allocations();
    f();
    allocations() - before
}

async fn ready_ok() -> Result<u32, std::io::Error> {
    Ok(1)
}

#[test]
fn a_successful_call_allocates_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let policies: Vec<SafeCall<std::io::Error>> = vec![
            SafeCall::default(),
            SafeCall::builder()
                .deadline(Duration::from_secs(5))
                .attempt_timeout(Duration::from_secs(1))
                .build()
                .unwrap(),
        ];
        for policy in &policies {
            // Warm up: the budget's first clock reading, thread-locals, the timer.
            for _ in 0..200 {
                policy.call(ready_ok).await.unwrap();
            }
            let before = allocations();
            for _ in 0..1_000 {
                policy.call(ready_ok).await.unwrap();
            }
            assert_eq!(allocations() - before, 0, "{policy:?}");
        }
    });
}

#[test]
fn zero_delay_retries_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let policy: SafeCall<std::io::Error> = SafeCall::builder()
            .backoff(Backoff::constant(Duration::ZERO))
            .retry_budget(safecall::RetryBudget::disabled())
            .build()
            .unwrap();
        let before = allocations();
        for _ in 0..1_000 {
            let mut n = 0;
            let result = policy
                .call(|| {
                    n += 1;
                    let fail = n < 3;
                    async move {
                        if fail {
                            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                        } else {
                            Ok(n)
                        }
                    }
                })
                .await;
            assert_eq!(result.unwrap(), 3);
        }
        assert_eq!(allocations() - before, 0);
    });
}

#[test]
fn calls_through_a_breaker_allocate_nothing_closed_or_open() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let policy: SafeCall<std::io::Error> = SafeCall::default();
        let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
        let breaker = breakers.get("org-46cf");
        // Warm up: the breaker's window is built on its first outcome.
        for _ in 0..200 {
            policy.call(ready_ok).breaker(&breaker).await.unwrap();
        }
        let before = allocations();
        for _ in 0..1_000 {
            policy.call(ready_ok).breaker(&breaker).await.unwrap();
        }
        assert_eq!(allocations() - before, 0, "closed success");

        breaker.force_open();
        let _ = policy.call(ready_ok).breaker(&breaker).await;
        let before = allocations();
        for _ in 0..1_000 {
            let err = policy.call(ready_ok).breaker(&breaker).await.unwrap_err();
            assert!(err.is_circuit_open());
        }
        assert_eq!(allocations() - before, 0, "open rejection");

        // An existing key from the registry.
        let before = allocations();
        for _ in 0..1_000 {
            let b = breakers.get("org-46cf");
            std::hint::black_box(&b);
        }
        assert_eq!(
            allocations() - before,
            0,
            "registry lookup of an existing key"
        );
    });
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn breaker_hot_paths_allocate_nothing() {
    for config in [
        BreakerConfig::default(),
        BreakerConfig::default().no_failure_rate(),
        BreakerConfig::default().count_window(0.5, 100),
    ] {
        let b = Breaker::new(config.consecutive_failures(1));
        b.try_acquire().unwrap().record(Outcome::Success); // builds the window once
        let n = counted(|| {
            for _ in 0..1000 {
                b.try_acquire().unwrap().record(Outcome::Success);
            }
        });
        assert_eq!(n, 0, "closed success");

        b.try_acquire().unwrap().record(Outcome::Failure);
        let mut n = 0;
        for _ in 0..1000 {
            n += counted(|| assert!(b.try_acquire().is_err()));
            tokio::time::advance(Duration::from_millis(1)).await;
        }
        assert_eq!(n, 0, "open rejection");
    }

    let r: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    drop(r.get("org-46cf"));
    let n = counted(|| {
        for _ in 0..1000 {
            drop(r.get("org-46cf"));
        }
    });
    assert_eq!(n, 0, "registry lookup of an existing key");
}

/// The tower layer adds no allocation to a call: the inner service here
/// allocates nothing, so every allocation counted would be the layer's.
#[cfg(feature = "tower")]
#[test]
fn calls_through_the_tower_layer_allocate_nothing_beyond_the_inner_service() {
    use safecall::tower::SafeCallLayer;
    use tower::{Layer, Service, ServiceExt};

    async fn per_call<S: Service<u32>>(svc: &mut S) -> u64 {
        // Warm up: the budget's first clock reading, thread-locals, the window.
        for i in 0..200 {
            let _ = svc.ready().await.ok().unwrap().call(i).await;
        }
        let before = allocations();
        for i in 0..1_000 {
            assert!(svc.ready().await.ok().unwrap().call(i).await.is_ok());
        }
        allocations() - before
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let inner = tower::service_fn(|x: u32| std::future::ready(Ok::<_, std::io::Error>(x)));
        let mut bare = inner;
        assert_eq!(per_call(&mut bare).await, 0, "the inner service alone");

        let policy: SafeCall<std::io::Error> = SafeCall::default();
        let mut plain = SafeCallLayer::new(policy.clone()).layer(inner);
        assert_eq!(per_call(&mut plain).await, 0, "the layer");

        let registry: BreakerRegistry<&'static str> =
            BreakerRegistry::new(BreakerConfig::default());
        let mut keyed = SafeCallLayer::new(policy.clone())
            .breakers(registry, |_: &u32| "org-46cf")
            .classify_response(|x: &u32| {
                (*x == u32::MAX).then_some(safecall::ErrorClass::Transient)
            })
            .layer(inner);
        assert_eq!(
            per_call(&mut keyed).await,
            0,
            "the layer with a breaker per key and a response classifier"
        );

        // Retries at once: a clone of the service and of the request per attempt.
        let zero: SafeCall<std::io::Error> = SafeCall::builder()
            .backoff(Backoff::constant(Duration::ZERO))
            .retry_budget(safecall::RetryBudget::disabled())
            .build()
            .unwrap();
        let flaky = tower::service_fn(|x: u32| {
            std::future::ready(if x % 2 == 0 {
                Ok(x)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            })
        });
        let mut retrying = SafeCallLayer::new(zero)
            .classify_response(|x: &u32| (*x % 4 == 0).then_some(safecall::ErrorClass::Transient))
            .layer(flaky);
        let before = allocations();
        for i in 0..1_000 {
            let _ = retrying.ready().await.ok().unwrap().call(i).await;
        }
        assert_eq!(allocations() - before, 0, "zero-delay retries");
    });
}

/// A recorder whose storage allocates nothing per value (atomics registered
/// once), so every allocation counted under it is safecall's.
#[cfg(feature = "metrics")]
mod atomic_recorder {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use metrics::{
        Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString,
        Unit,
    };

    /// A histogram's count and sum.
    #[derive(Default)]
    pub struct Sum {
        pub count: AtomicU64,
        pub sum_micros: AtomicU64,
    }

    impl HistogramFn for Sum {
        fn record(&self, value: f64) {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.sum_micros
                .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
        }
    }

    #[derive(Default)]
    pub struct Atomics {
        counters: Mutex<HashMap<Key, Arc<AtomicU64>>>,
        gauges: Mutex<HashMap<Key, Arc<AtomicU64>>>,
        pub histograms: Mutex<HashMap<Key, Arc<Sum>>>,
    }

    impl Atomics {
        /// Values recorded into every histogram, all told.
        pub fn histogram_values(&self) -> u64 {
            let h = self.histograms.lock().unwrap();
            h.values().map(|s| s.count.load(Ordering::Relaxed)).sum()
        }
    }

    impl Recorder for Atomics {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            let mut m = self.counters.lock().unwrap();
            Counter::from_arc(Arc::clone(m.entry(key.clone()).or_default()))
        }
        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            let mut m = self.gauges.lock().unwrap();
            Gauge::from_arc(Arc::clone(m.entry(key.clone()).or_default()))
        }
        fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
            let mut m = self.histograms.lock().unwrap();
            Histogram::from_arc(Arc::clone(m.entry(key.clone()).or_default()))
        }
    }
}

/// With the `metrics` feature and a recorder installed, a call records its
/// outcome, attempts, duration and events without allocating: the handles
/// were registered when the policy was built or first met the recorder.
#[cfg(feature = "metrics")]
#[test]
fn calls_recorded_by_a_recorder_allocate_nothing() {
    let recorder = atomic_recorder::Atomics::default();
    metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let policy: SafeCall<std::io::Error> = SafeCall::builder().name("p").build().unwrap();
            let zero: SafeCall<std::io::Error> = SafeCall::builder()
                .name("zero")
                .backoff(Backoff::constant(Duration::ZERO))
                .retry_budget(safecall::RetryBudget::disabled())
                .build()
                .unwrap();
            let breakers: BreakerRegistry<String> =
                BreakerRegistry::new(BreakerConfig::default()).name("orgs");
            let breaker = breakers.get("org-46cf");
            // Warm up: the budget's first clock reading, the breaker's window.
            for _ in 0..200 {
                policy.call(ready_ok).breaker(&breaker).await.unwrap();
            }
            let before = allocations();
            for _ in 0..1_000 {
                policy.call(ready_ok).await.unwrap();
                policy.call(ready_ok).breaker(&breaker).await.unwrap();
            }
            assert_eq!(allocations() - before, 0, "successful calls");

            let before = allocations();
            for _ in 0..1_000 {
                let mut n = 0;
                let result = zero
                    .call(|| {
                        n += 1;
                        let fail = n < 3;
                        async move {
                            if fail {
                                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
                            } else {
                                Ok(n)
                            }
                        }
                    })
                    .await;
                assert_eq!(result.unwrap(), 3);
            }
            assert_eq!(allocations() - before, 0, "zero-delay retries");

            breaker.force_open();
            let _ = policy.call(ready_ok).breaker(&breaker).await;
            let before = allocations();
            for _ in 0..1_000 {
                let err = policy.call(ready_ok).breaker(&breaker).await.unwrap_err();
                assert!(err.is_circuit_open());
            }
            assert_eq!(allocations() - before, 0, "open rejection");
        });
    });
    // 200 + 2,000 + 1,000 + 1 + 1,000 calls, each a duration and an attempts value.
    assert_eq!(recorder.histogram_values(), 2 * 4_201);
}

/// A hedged call keeps its attempts in flight inline: no allocation, whether
/// the first attempt answers before the delay or a hedge starts and wins.
#[test]
fn hedged_calls_allocate_nothing() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let policy: SafeCall<std::io::Error> = SafeCall::builder()
            .retry_budget(safecall::RetryBudget::disabled())
            .build()
            .unwrap();
        let breaker = Breaker::new(BreakerConfig::default());
        let hedge = safecall::Hedge::after(Duration::from_millis(10)).max_extra(4);
        let at_once = safecall::Hedge::after(Duration::ZERO).max_extra(2);
        let hedged = |n: u32| {
            let mut made = 0u64;
            let (policy, breaker, hedge) = (&policy, &breaker, &hedge);
            async move {
                policy
                    .call(|| {
                        made += 1;
                        // The first attempt is slow whenever `n` is odd.
                        let slow = made == 1 && n % 2 == 1;
                        async move {
                            if slow {
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                            Ok::<_, std::io::Error>(made)
                        }
                    })
                    .breaker(breaker)
                    .hedge(hedge)
                    .await
            }
        };
        // Warm up: the timer wheel's levels, thread-locals.
        for n in 0..200 {
            hedged(n).await.unwrap();
        }
        let before = allocations();
        for n in 0..1_000 {
            let won = hedged(n).await.unwrap();
            assert_eq!(won, if n % 2 == 1 { 2 } else { 1 });
        }
        assert_eq!(allocations() - before, 0, "hedged calls");

        let before = allocations();
        for _ in 0..1_000 {
            assert_eq!(policy.call(ready_ok).hedge(&at_once).await.unwrap(), 1);
        }
        assert_eq!(allocations() - before, 0, "all attempts at once");
    });
}

/// A fixed hedge has no latency tracker, so one built at the call site costs
/// nothing; a learning hedge allocates its tracker once, and its calls (a
/// quantile read and a record each) nothing.
#[test]
fn per_call_and_learning_hedges_allocate_nothing_per_call() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let policy: SafeCall<std::io::Error> = SafeCall::builder()
            .retry_budget(safecall::RetryBudget::disabled())
            .build()
            .unwrap();
        for _ in 0..200 {
            policy.call(ready_ok).await.unwrap();
        }
        let before = allocations();
        for _ in 0..1_000 {
            let hedge = safecall::Hedge::after(Duration::from_millis(10));
            assert_eq!(policy.call(ready_ok).hedge(&hedge).await.unwrap(), 1);
        }
        assert_eq!(allocations() - before, 0, "a fixed hedge per call");

        let learning = safecall::Hedge::at_percentile(0.95).min_samples(10);
        for _ in 0..200 {
            policy.call(ready_ok).hedge(&learning).await.unwrap();
        }
        assert!(learning.delay().is_some(), "learnt");
        let before = allocations();
        for _ in 0..1_000 {
            assert_eq!(policy.call(ready_ok).hedge(&learning).await.unwrap(), 1);
        }
        assert_eq!(allocations() - before, 0, "a learning hedge");
    });
}

#[test]
fn calls_through_a_bulkhead_allocate_nothing_free_or_full() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let policy: SafeCall<std::io::Error> = SafeCall::default();
        let registry: safecall::BulkheadRegistry<u32> =
            safecall::BulkheadRegistry::new(safecall::BulkheadConfig::max_concurrent(1));
        let bulkhead = registry.get(&7);
        for _ in 0..200 {
            policy.call(ready_ok).bulkhead(&bulkhead).await.unwrap();
        }
        let before = allocations();
        for _ in 0..1_000 {
            policy.call(ready_ok).bulkhead(&bulkhead).await.unwrap();
        }
        assert_eq!(allocations() - before, 0, "a free bulkhead");
        // Full, no queue: refused with one compare-and-swap.
        let _held = bulkhead.try_acquire().unwrap();
        let before = allocations();
        for _ in 0..1_000 {
            assert!(policy.call(ready_ok).bulkhead(&bulkhead).await.is_err());
        }
        assert_eq!(allocations() - before, 0, "a full bulkhead");
        // An existing key's lookup.
        let n = counted(|| {
            for _ in 0..1_000 {
                drop(registry.get(&7));
            }
        });
        assert_eq!(n, 0, "registry lookups");
    });
}
