//! `Call::classify_ok`: successes that are failures (an HTTP client's
//! `Ok(response)` for a 503) are retried and held against the breaker like an
//! error of their class; when no further attempt is allowed the call resolves
//! to the provider's last answer.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use safecall::testing::Script;
use safecall::{
    Backoff, Breaker, BreakerConfig, BreakerState, Error, ErrorClass, Jitter, RefusalCause,
    RetryBudget, SafeCall, classify_http_status,
};
use support::{TestError, secs};
use tokio::time::Instant;

/// What the stand-in "HTTP client" answers: a status and an optional hint.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Response {
    status: u16,
    retry_after: Option<Duration>,
}

fn answer(status: u16) -> Response {
    Response {
        status,
        retry_after: None,
    }
}

fn by_status(r: &Response) -> Option<ErrorClass> {
    (r.status >= 400).then(|| classify_http_status(r.status, r.retry_after))
}

fn policy(max_retries: u32) -> SafeCall<TestError> {
    SafeCall::builder()
        .max_retries(max_retries)
        .backoff(Backoff::exponential(secs(1)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_value_classified_transient_is_retried_until_a_success() {
    let script = Script::<Response, TestError>::new()
        .then_ok(answer(503))
        .then_ok(answer(502))
        .then_ok(answer(200));
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let p = SafeCall::<TestError>::builder()
        .max_retries(3)
        .backoff(Backoff::exponential(secs(1)).jitter(Jitter::None))
        .on_retry(move |e| {
            seen.lock()
                .unwrap()
                .push((e.attempt, e.class, e.value_classified, e.error.is_none()));
        })
        .build()
        .unwrap();
    let r = p
        .call(|| script.attempt())
        .classify_ok(by_status)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    script.assert_attempts_at(&[secs(0), secs(1), secs(3)]);
    assert_eq!(
        *events.lock().unwrap(),
        [
            (1, ErrorClass::Transient, true, true),
            (2, ErrorClass::Transient, true, true)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn retries_used_up_resolve_to_the_last_value() {
    let script = Script::<Response, TestError>::new()
        .then_ok(answer(503))
        .then_ok(answer(503))
        .then_ok(answer(504));
    let r = policy(2)
        .call(|| script.attempt())
        .classify_ok(by_status)
        .await
        .unwrap();
    assert_eq!(r.status, 504, "the provider's last answer");
    assert_eq!(script.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_value_that_is_not_retryable_is_returned_at_once() {
    for status in [404, 401] {
        let script = Script::<Response, TestError>::new().then_ok(answer(status));
        let r = policy(3)
            .call(|| script.attempt())
            .classify_ok(by_status)
            .await
            .unwrap();
        assert_eq!(r.status, status);
        assert_eq!(script.calls(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn errors_and_classified_values_mix_in_one_call() {
    let script = Script::<Response, TestError>::new()
        .then_err(support::status(503))
        .then_ok(answer(503))
        .then_ok(answer(200));
    let r = policy(3)
        .call(|| script.attempt())
        .classify_ok(by_status)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    // Errors still end the call as errors: the operation's own error class.
    let script = Script::<Response, TestError>::new()
        .then_ok(answer(503))
        .then_err(support::status(503));
    let err = policy(1)
        .call(|| script.attempt())
        .classify_ok(by_status)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Exhausted { attempts: 2, .. }),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_classified_hint_is_waited_for_and_a_too_long_one_ends_with_the_value() {
    let hinted = |s: u64| Response {
        status: 429,
        retry_after: Some(secs(s)),
    };
    let script = Script::<Response, TestError>::new()
        .then_ok(hinted(7))
        .then_ok(answer(200));
    let t0 = Instant::now();
    let r = policy(3)
        .call(|| script.attempt())
        .classify_ok(by_status)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(t0.elapsed(), secs(7), "the hint is a floor");

    // A day-long hint: not waited for; the caller gets the 429 itself, and the
    // breaker cools the key down (bounded by max_cooldown).
    let b = Breaker::new(BreakerConfig::default());
    let script = Script::<Response, TestError>::new().then_ok(hinted(86_400));
    let r = policy(3)
        .call(|| script.attempt())
        .classify_ok(by_status)
        .breaker(&b)
        .await
        .unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(
        b.try_acquire().unwrap_err().cause(),
        RefusalCause::CoolingDown
    );
}

#[tokio::test(start_paused = true)]
async fn classified_values_are_held_against_the_breaker_like_errors() {
    let b = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(2)
            .open_duration(secs(30)),
    );
    let script = Script::<Response, TestError>::new().then_ok(answer(503));
    // Two failures trip it during the call's retries; the refusal is safecall's
    // own limit, so the call ends with the error, not a value.
    let err = policy(5)
        .call(|| script.attempt())
        .classify_ok(by_status)
        .breaker(&b)
        .await
        .unwrap_err();
    match &err {
        Error::CircuitOpen {
            attempts,
            cause,
            last_error,
            ..
        } => {
            assert_eq!(*attempts, 2);
            assert_eq!(*cause, RefusalCause::Open);
            assert!(last_error.is_none(), "no attempt returned an error");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(b.state(), BreakerState::Open);

    // A caller-fault value (a 400) is returned and not counted.
    let b = Breaker::new(BreakerConfig::default().consecutive_failures(1));
    let script = Script::<Response, TestError>::new().then_ok(answer(400));
    // (`.breaker(..)` and `.classify_ok(..)` chain in either order.)
    let r = policy(3)
        .call(|| script.attempt())
        .breaker(&b)
        .classify_ok(by_status)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_passing_during_an_attempt_is_a_timeout() {
    let p = SafeCall::<TestError>::builder()
        .max_retries(5)
        .backoff(Backoff::constant(secs(1)).jitter(Jitter::None))
        .deadline(secs(10))
        .retry_budget(RetryBudget::disabled())
        .build()
        .unwrap();
    let script = Script::<Response, TestError>::new()
        .then_ok(answer(503))
        .then_hang();
    let err = p
        .call(|| script.attempt())
        .classify_ok(by_status)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                attempts: 2,
                kind: safecall::TimeoutKind::Deadline,
                ..
            }
        ),
        "{err:?}"
    );
}
