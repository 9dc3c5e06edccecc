//! `Call::bulkhead`: one permit per call, taken before the first attempt, held
//! across retries and waits, released when the call ends or is dropped; a full
//! bulkhead refuses (or queues first in, first out for `max_wait`) with
//! `Error::BulkheadFull`, a limit of this client's own.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safecall::testing::Script;
use safecall::{
    Backoff, Breaker, BreakerConfig, BreakerState, Bulkhead, BulkheadConfig, Error, Jitter,
    RetryBudget, SafeCall, TimeoutKind,
};
use support::{TestError, ms, secs, status};
use tokio::time::Instant;

fn policy() -> SafeCall<TestError> {
    SafeCall::builder()
        .max_retries(2)
        .backoff(Backoff::constant(secs(1)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .build()
        .unwrap()
}

fn bulkhead(n: u32, max_wait: Duration) -> Bulkhead {
    Bulkhead::new(BulkheadConfig::max_concurrent(n).max_wait(max_wait))
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_refuses_at_once_without_invoking_the_operation() {
    let b = bulkhead(1, Duration::ZERO);
    let _held = b.try_acquire().unwrap();
    let script = Script::<u32, TestError>::new().then_ok(1);
    let err = policy()
        .call(|| script.attempt())
        .bulkhead(&b)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BulkheadFull {
                waited: Duration::ZERO,
                attempts: 0
            }
        ),
        "{err:?}"
    );
    assert_eq!(script.calls(), 0);
    assert!(
        err.to_string().contains("a limit of this client's own"),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn the_permit_is_held_across_retries_and_waits_and_released_at_the_end() {
    let b = bulkhead(1, Duration::ZERO);
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(7);
    let p = policy();
    let call = p.call(|| script.attempt()).bulkhead(&b);
    let mut call = std::pin::pin!(call);
    assert!(futures::poll!(call.as_mut()).is_pending()); // waiting 1 s to retry
    assert_eq!(b.in_use(), 1, "held during the wait");
    let other = p
        .call(|| async { Ok::<_, TestError>(0) })
        .bulkhead(&b)
        .await;
    assert!(matches!(other, Err(Error::BulkheadFull { .. })));
    assert_eq!(call.as_mut().await.unwrap(), 7);
    assert_eq!(
        b.in_use(),
        0,
        "released when the call ended, before the drop"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_call_releases_its_permit() {
    let b = bulkhead(1, Duration::ZERO);
    let script = Script::<u32, TestError>::new().then_hang();
    let p = policy();
    {
        let call = p.call(|| script.attempt()).bulkhead(&b);
        let mut call = Box::pin(call);
        assert!(futures::poll!(call.as_mut()).is_pending());
        assert_eq!(b.in_use(), 1);
    }
    assert_eq!(b.in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn queued_calls_are_served_first_in_first_out() {
    let b = bulkhead(1, secs(10));
    let p = policy();
    let held = b.try_acquire().unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (b, p, order) = (b.clone(), p.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            p.call(|| {
                let order = order.clone();
                async move {
                    order.lock().unwrap().push(i);
                    tokio::time::sleep(ms(10)).await;
                    Ok::<_, TestError>(i)
                }
            })
            .bulkhead(&b)
            .await
        }));
        tokio::task::yield_now().await;
    }
    assert_eq!(b.queued(), 4);
    tokio::time::advance(secs(1)).await;
    drop(held);
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().unwrap(), i as u32);
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3]);
    assert_eq!((b.in_use(), b.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn max_wait_expires_exactly_with_bulkhead_full() {
    let b = bulkhead(1, ms(250));
    let _held = b.try_acquire().unwrap();
    let t0 = Instant::now();
    let err = policy()
        .call(|| async { Ok::<_, TestError>(1) })
        .bulkhead(&b)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BulkheadFull { waited, attempts: 0 } if waited == ms(250)),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), ms(250));
    assert_eq!(b.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_that_passes_while_queued_is_a_timeout() {
    let b = bulkhead(1, secs(10));
    let _held = b.try_acquire().unwrap();
    let p = SafeCall::<TestError>::builder()
        .deadline(secs(2))
        .build()
        .unwrap();
    let t0 = Instant::now();
    let err = p
        .call(|| async { Ok::<_, TestError>(1) })
        .bulkhead(&b)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                attempts: 0,
                kind: TimeoutKind::Deadline,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), secs(2));
    assert_eq!(b.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_queued_call_passes_its_turn_on() {
    let b = bulkhead(1, secs(10));
    let p = policy();
    let held = b.try_acquire().unwrap();
    let mut first = Box::pin(p.call(|| async { Ok::<_, TestError>(1) }).bulkhead(&b));
    assert!(futures::poll!(first.as_mut()).is_pending());
    let second = tokio::spawn({
        let (b, p) = (b.clone(), p.clone());
        async move {
            p.call(|| async { Ok::<_, TestError>(2) })
                .bulkhead(&b)
                .await
        }
    });
    tokio::task::yield_now().await;
    assert_eq!(b.queued(), 2);
    drop(held); // handed to `first`, which is dropped before it polls again
    drop(first);
    assert_eq!(second.await.unwrap().unwrap(), 2);
    assert_eq!((b.in_use(), b.queued()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_full_bulkhead_is_never_held_against_the_breaker_nor_retried() {
    let b = bulkhead(1, Duration::ZERO);
    let _held = b.try_acquire().unwrap();
    let breaker = Breaker::new(BreakerConfig::default().consecutive_failures(1));
    for _ in 0..3 {
        let err = policy()
            .call(|| async { Ok::<_, TestError>(1) })
            .breaker(&breaker)
            .bulkhead(&b)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::BulkheadFull { attempts: 0, .. }));
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(breaker.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_fallback_serves_a_full_bulkhead() {
    let b = bulkhead(1, Duration::ZERO);
    let _held = b.try_acquire().unwrap();
    let v = policy()
        .call(|| async { Ok::<_, TestError>(1) })
        .bulkhead(&b)
        .fallback(|e| e.is_bulkhead_full().then_some(0))
        .await
        .unwrap();
    assert_eq!(v, 0);
}

/// A small seeded generator (splitmix64): the test needs no other crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Counts an attempt out of the operation when it ends or is dropped.
struct Out(Arc<AtomicU32>);

impl Drop for Out {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Permits in use never exceed the limit, whatever the interleaving of calls
/// that succeed, fail and retry, queue, time out and get cancelled; and once
/// every call is over, none is left held or queued.
#[test]
fn the_limit_holds_under_any_interleaving() {
    for seed in 0..40u64 {
        let rt = support::paused_runtime();
        rt.block_on(async move {
            let mut rng = Rng(seed);
            let limit = rng.below(1, 4) as u32;
            let wait = ms(rng.below(0, 30));
            let b = bulkhead(limit, wait);
            let p = SafeCall::<TestError>::builder()
                .max_retries(2)
                .backoff(Backoff::constant(ms(3)).jitter(Jitter::None))
                .retry_budget(RetryBudget::disabled())
                .build()
                .unwrap();
            let inside = Arc::new(AtomicU32::new(0));
            let peak = Arc::new(AtomicU32::new(0));
            let mut tasks = Vec::new();
            for _ in 0..30 {
                let latency = ms(rng.below(1, 20));
                let fails = rng.chance(0.3);
                let cancel_after = rng.chance(0.2).then(|| ms(rng.below(1, 25)));
                let (b, p, inside, peak) = (b.clone(), p.clone(), inside.clone(), peak.clone());
                let call = async move {
                    let r = p
                        .call(|| {
                            let (inside, peak) = (inside.clone(), peak.clone());
                            async move {
                                let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                                peak.fetch_max(n, Ordering::SeqCst);
                                // Out again when the attempt ends or is dropped.
                                let _out = Out(inside);
                                tokio::time::sleep(latency).await;
                                if fails { Err(status(503)) } else { Ok(()) }
                            }
                        })
                        .bulkhead(&b)
                        .await;
                    let _ = r;
                };
                tasks.push(tokio::spawn(async move {
                    match cancel_after {
                        Some(d) => {
                            let _ = tokio::time::timeout(d, call).await;
                        }
                        None => call.await,
                    }
                }));
                tokio::time::advance(ms(rng.below(0, 3))).await;
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert!(
                peak.load(Ordering::SeqCst) <= limit,
                "seed {seed}: {} in flight with a limit of {limit}",
                peak.load(Ordering::SeqCst)
            );
            assert_eq!((b.in_use(), b.queued()), (0, 0), "seed {seed}: leaked");
        });
    }
}

mod registry {
    use super::*;
    use safecall::BulkheadRegistry;

    fn registry(max_keys: usize) -> BulkheadRegistry<String> {
        BulkheadRegistry::new(BulkheadConfig::max_concurrent(2))
            .max_keys(max_keys)
            .idle_ttl(secs(60))
    }

    #[tokio::test(start_paused = true)]
    async fn one_bulkhead_per_key_made_on_first_use() {
        let r = registry(100);
        assert!(r.is_empty());
        let a = r.get("org-1");
        assert!(a.ptr_eq(&r.get("org-1")));
        assert!(!a.ptr_eq(&r.get("org-2")));
        assert_eq!(r.len(), 2);
        let shared = r.clone();
        assert!(shared.get("org-1").ptr_eq(&a), "clones share the registry");
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_holding_a_permit_is_never_evicted() {
        let r = registry(1);
        let busy = r.get("busy");
        let permit = busy.try_acquire().unwrap();
        // Full of a key in use: new keys share the overflow bulkhead.
        assert!(r.get("new").ptr_eq(r.overflow()));
        assert_eq!(r.len(), 1);
        drop(permit);
        assert!(
            r.get("new").ptr_eq(r.overflow()),
            "its handle is still held"
        );
        drop(busy);
        assert!(!r.get("new").ptr_eq(r.overflow()), "now it can go");
        assert_eq!(r.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_handle_held_outside_keeps_its_key() {
        let r = registry(1);
        let held = r.get("held");
        assert!(r.get("new").ptr_eq(r.overflow()));
        assert!(held.ptr_eq(&r.get("held")), "still the same bulkhead");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_keys_keeps_len_at_the_cap() {
        let r = registry(1_000);
        for i in 0..1_000_000u32 {
            let _ = r.get(&format!("tenant-{i}"));
        }
        assert_eq!(r.len(), 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_go_after_their_ttl() {
        let r = registry(100);
        for i in 0..10 {
            let _ = r.get(&format!("tenant-{i}"));
        }
        tokio::time::advance(secs(30)).await;
        r.retain_recent();
        assert_eq!(r.len(), 10, "not idle long enough");
        tokio::time::advance(secs(31)).await;
        r.retain_recent();
        assert_eq!(r.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_snapshot_names_the_keys_at_their_limit() {
        let r = registry(100);
        let a = r.get("org-a");
        let _p1 = a.try_acquire().unwrap();
        let _p2 = a.try_acquire().unwrap();
        let _ = r.get("org-b");
        let mut full: Vec<_> = r
            .snapshot()
            .into_iter()
            .filter(|s| s.is_full())
            .map(|s| s.key)
            .collect();
        full.sort();
        assert_eq!(full, ["org-a"]);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_through_a_tenants_bulkhead_are_limited_per_tenant() {
        let r = registry(100);
        let a = r.get("org-a");
        let _p1 = a.try_acquire().unwrap();
        let _p2 = a.try_acquire().unwrap();
        let refused = policy()
            .call(|| async { Ok::<_, TestError>(1) })
            .bulkhead(&r.get("org-a"))
            .await;
        assert!(matches!(refused, Err(Error::BulkheadFull { .. })));
        let other = policy()
            .call(|| async { Ok::<_, TestError>(2) })
            .bulkhead(&r.get("org-b"))
            .await;
        assert_eq!(other.unwrap(), 2, "another tenant is not affected");
    }

    #[tokio::test(start_paused = true)]
    async fn a_global_ceiling_limits_all_keys_together() {
        let r: BulkheadRegistry<String> = BulkheadRegistry::new(BulkheadConfig::max_concurrent(2))
            .global(BulkheadConfig::max_concurrent(3));
        let (a, b) = (r.get("org-a"), r.get("org-b"));
        let _a1 = a.try_acquire().unwrap();
        let _a2 = a.try_acquire().unwrap();
        let b1 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_none(), "the ceiling (3) is full");
        assert_eq!(b.in_use(), 1, "the key's own permit went back");
        let ceiling = r.global_ceiling().unwrap();
        assert_eq!(ceiling.in_use(), 3);
        let refused = policy()
            .call(|| async { Ok::<_, TestError>(1) })
            .bulkhead(&r.get("org-c"))
            .await;
        assert!(matches!(
            refused,
            Err(Error::BulkheadFull { attempts: 0, .. })
        ));
        drop(b1);
        assert_eq!(ceiling.in_use(), 2);
        let ok = policy()
            .call(|| async { Ok::<_, TestError>(1) })
            .bulkhead(&r.get("org-c"))
            .await;
        assert_eq!(ok.unwrap(), 1);
        assert_eq!(ceiling.in_use(), 2, "the call gave both permits back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_queued_call_granted_its_keys_permit_is_refused_by_a_full_ceiling() {
        let r: BulkheadRegistry<String> =
            BulkheadRegistry::new(BulkheadConfig::max_concurrent(1).max_wait(secs(10)))
                .global(BulkheadConfig::max_concurrent(1));
        let a = r.get("org-a");
        let held = a.try_acquire().unwrap();
        let p = policy();
        let mut queued = Box::pin(p.call(|| async { Ok::<_, TestError>(1) }).bulkhead(&a));
        assert!(futures::poll!(queued.as_mut()).is_pending());
        // The ceiling's only permit goes to another key meanwhile.
        let b = r.get("org-b");
        drop(held); // org-a's permit is handed to the queued call...
        let _b1 = b.try_acquire().unwrap(); // ...and the ceiling to org-b
        let err = queued.await.unwrap_err();
        assert!(
            matches!(err, Error::BulkheadFull { attempts: 0, .. }),
            "{err:?}"
        );
        assert_eq!((a.in_use(), a.queued()), (0, 0), "nothing leaked");
    }

    /// Per key and over all keys, permits in use never exceed the limits,
    /// whatever the interleaving of calls over several tenants that succeed,
    /// fail and retry, queue, time out and get cancelled; none is leaked.
    #[test]
    fn key_and_global_limits_hold_under_any_interleaving() {
        for seed in 0..30u64 {
            let rt = support::paused_runtime();
            rt.block_on(async move {
                let mut rng = Rng(seed ^ 0x5EED);
                let per_key = rng.below(1, 4) as u32;
                let global = rng.below(1, 6) as u32;
                let r: BulkheadRegistry<u32> = BulkheadRegistry::new(
                    BulkheadConfig::max_concurrent(per_key).max_wait(ms(rng.below(0, 20))),
                )
                .global(BulkheadConfig::max_concurrent(global));
                let p = SafeCall::<TestError>::builder()
                    .max_retries(1)
                    .backoff(Backoff::constant(ms(2)).jitter(Jitter::None))
                    .retry_budget(RetryBudget::disabled())
                    .build()
                    .unwrap();
                let total = Arc::new(AtomicU32::new(0));
                let peak_total = Arc::new(AtomicU32::new(0));
                let per = Arc::new((0..4).map(|_| AtomicU32::new(0)).collect::<Vec<_>>());
                let peak_per = Arc::new(AtomicU32::new(0));
                let mut tasks = Vec::new();
                for _ in 0..40 {
                    let key = rng.below(0, 4) as u32;
                    let latency = ms(rng.below(1, 15));
                    let fails = rng.chance(0.3);
                    let cancel_after = rng.chance(0.2).then(|| ms(rng.below(1, 20)));
                    let (r, p) = (r.clone(), p.clone());
                    let (total, peak_total, per, peak_per) = (
                        total.clone(),
                        peak_total.clone(),
                        per.clone(),
                        peak_per.clone(),
                    );
                    let call = async move {
                        let bulkhead = r.get(&key);
                        let _ = p
                            .call(|| {
                                let (total, peak_total, per, peak_per) = (
                                    total.clone(),
                                    peak_total.clone(),
                                    per.clone(),
                                    peak_per.clone(),
                                );
                                async move {
                                    let t = total.fetch_add(1, Ordering::SeqCst) + 1;
                                    peak_total.fetch_max(t, Ordering::SeqCst);
                                    let k = per[key as usize].fetch_add(1, Ordering::SeqCst) + 1;
                                    peak_per.fetch_max(k, Ordering::SeqCst);
                                    let _out = (Out(total), OutAt(per, key as usize));
                                    tokio::time::sleep(latency).await;
                                    if fails { Err(status(503)) } else { Ok(()) }
                                }
                            })
                            .bulkhead(&bulkhead)
                            .await;
                    };
                    tasks.push(tokio::spawn(async move {
                        match cancel_after {
                            Some(d) => {
                                let _ = tokio::time::timeout(d, call).await;
                            }
                            None => call.await,
                        }
                    }));
                    tokio::time::advance(ms(rng.below(0, 3))).await;
                }
                for t in tasks {
                    t.await.unwrap();
                }
                assert!(
                    peak_total.load(Ordering::SeqCst) <= global,
                    "seed {seed}: global"
                );
                assert!(
                    peak_per.load(Ordering::SeqCst) <= per_key,
                    "seed {seed}: per key"
                );
                let ceiling = r.global_ceiling().unwrap();
                assert_eq!(ceiling.in_use(), 0, "seed {seed}: a ceiling permit leaked");
                for s in r.snapshot() {
                    assert_eq!((s.in_use, s.queued), (0, 0), "seed {seed}: key {}", s.key);
                }
            });
        }
    }

    /// Counts an attempt out of one key when it ends or is dropped.
    struct OutAt(Arc<Vec<AtomicU32>>, usize);

    impl Drop for OutAt {
        fn drop(&mut self) {
            self.0[self.1].fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// DESIGN.md's example, as written there.
    #[tokio::test(start_paused = true)]
    async fn designs_example_compiles_and_runs() {
        let bulkheads: BulkheadRegistry<String> = BulkheadRegistry::new(
            BulkheadConfig::max_concurrent(8) // per key (u32)
                .max_wait(Duration::ZERO),
        ) // default: refuse at once when full
        .global(BulkheadConfig::max_concurrent(256)) // optional ceiling over all keys
        .max_keys(100_000)
        .idle_ttl(Duration::from_secs(600));
        let breaker = Breaker::new(BreakerConfig::default());
        let value = policy()
            .call(|| async { Ok::<_, TestError>(7) })
            .bulkhead(&bulkheads.get("org-46cf"))
            .breaker(&breaker)
            .await;
        assert_eq!(value.unwrap(), 7);
        let one = Bulkhead::new(BulkheadConfig::max_concurrent(4)); // unkeyed
        assert_eq!(one.limit(), 4);
        assert!(bulkheads.global_ceiling().is_some());
        assert!(
            BulkheadRegistry::<String>::new(BulkheadConfig::max_concurrent(1))
                .try_global(BulkheadConfig::max_concurrent(0))
                .is_err()
        );
        assert!(Bulkhead::try_new(BulkheadConfig::max_concurrent(0)).is_err());
    }
}
