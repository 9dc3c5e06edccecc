//! `Call::fallback`: a stand-in value when the dependency was unavailable
//! (refused, exhausted, timed out), never for a wrong request.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use safecall::testing::Script;
use safecall::{Backoff, Breaker, BreakerConfig, Error, ErrorClass, Jitter, RetryBudget, SafeCall};
use support::{TestError, secs, status};

fn policy() -> SafeCall<TestError> {
    SafeCall::builder()
        .max_retries(2)
        .backoff(Backoff::constant(secs(1)).jitter(Jitter::None))
        .attempt_timeout(secs(5))
        .retry_budget(RetryBudget::disabled())
        .classify(|e: &TestError| match e.status {
            400 => ErrorClass::CallerFault,
            401 => ErrorClass::Permanent,
            _ => ErrorClass::Transient,
        })
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn serves_when_retries_are_used_up_and_sees_the_error() {
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let seen = Arc::new(AtomicU32::new(0));
    let s = Arc::clone(&seen);
    let v = policy()
        .call(|| script.attempt())
        .fallback(move |e| {
            assert!(matches!(e, Error::Exhausted { attempts: 3, .. }), "{e:?}");
            s.fetch_add(1, Ordering::Relaxed);
            Some(42)
        })
        .await
        .unwrap();
    assert_eq!(v, 42);
    assert_eq!(seen.load(Ordering::Relaxed), 1);
    assert_eq!(script.calls(), 3, "the fallback comes after the retries");
}

#[tokio::test(start_paused = true)]
async fn serves_a_refusal_without_invoking_the_operation() {
    let b = Breaker::new(BreakerConfig::default());
    b.force_open();
    let script = Script::<u32, TestError>::new().then_ok(1);
    let v = policy()
        .call(|| script.attempt())
        .breaker(&b)
        .fallback(|e| matches!(e, Error::CircuitOpen { .. }).then_some(7))
        .await
        .unwrap();
    assert_eq!(v, 7);
    assert_eq!(script.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn serves_a_timeout() {
    let script = Script::<u32, TestError>::new().then_hang();
    let v = policy()
        .call(|| script.attempt())
        .fallback(|e| matches!(e, Error::Timeout { .. }).then_some(9))
        .await
        .unwrap();
    assert_eq!(v, 9);
}

#[tokio::test(start_paused = true)]
async fn never_runs_for_a_wrong_request() {
    for wrong in [400, 401] {
        let script = Script::<u32, TestError>::new().then_err(status(wrong));
        let ran = AtomicU32::new(0);
        let err = policy()
            .call(|| script.attempt())
            .fallback(|_| {
                ran.fetch_add(1, Ordering::Relaxed);
                Some(0)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Permanent { .. }), "{err:?}");
        assert_eq!(ran.load(Ordering::Relaxed), 0, "status {wrong}");
    }
}

#[tokio::test(start_paused = true)]
async fn none_returns_the_error_and_a_success_skips_the_fallback() {
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let err = policy()
        .call(|| script.attempt())
        .fallback(|_| None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Exhausted { .. }));

    let script = Script::<u32, TestError>::new().then_ok(5);
    let v = policy()
        .call(|| script.attempt())
        .fallback(|_| -> Option<u32> { panic!("not for a success") })
        .await
        .unwrap();
    assert_eq!(v, 5);
}
