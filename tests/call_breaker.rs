//! `SafeCall` through circuit breakers: the breaker is asked before every attempt,
//! outcomes are recorded by class, refusals end the call at once.

mod support;

use std::time::Duration;

use safecall::testing::Script;
use safecall::{
    Backoff, Breaker, BreakerConfig, BreakerMode, BreakerRegistry, BreakerState, Error, ErrorClass,
    Jitter, RefusalCause, RetryBudget, SafeCall,
};
use support::{TestError, retry_after, secs, status};
use tokio::time::Instant;

fn classify(e: &TestError) -> ErrorClass {
    match e.status {
        429 => e
            .retry_after
            .map_or(ErrorClass::Transient, ErrorClass::RetryAfter),
        500..=599 => ErrorClass::Transient,
        400 => ErrorClass::CallerFault,
        _ => ErrorClass::Permanent,
    }
}

fn policy(max_retries: u32) -> SafeCall<TestError> {
    SafeCall::builder()
        .max_retries(max_retries)
        .backoff(Backoff::exponential(secs(1)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .classify(classify)
        .build()
        .unwrap()
}

fn breaker(consecutive: u32) -> Breaker {
    Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(consecutive)
            .open_duration(secs(30)),
    )
}

#[tokio::test(start_paused = true)]
async fn a_breaker_that_opens_mid_call_ends_it_with_circuit_open() {
    let b = breaker(2);
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let t0 = Instant::now();
    let err = policy(5)
        .call(|| script.attempt())
        .breaker(&b)
        .await
        .unwrap_err();
    match &err {
        Error::CircuitOpen {
            attempts,
            retry_in,
            cause,
            last_error,
        } => {
            assert_eq!(*attempts, 2);
            assert_eq!(*retry_in, secs(30));
            assert_eq!(*cause, RefusalCause::Open);
            // The refusal keeps the operation's last error.
            assert_eq!(last_error.as_ref().map(|e| e.status), Some(503));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("status 503".to_owned())
    );
    assert_eq!(err.into_inner().map(|e| e.status), Some(503));
    assert_eq!(script.calls(), 2);
    // Attempts at 0 and 1 s; the breaker opened on the 2nd failure, and the call
    // ended at once rather than wait 2 s for a certain refusal.
    assert_eq!(t0.elapsed(), secs(1));
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_opened_by_another_call_during_the_wait_ends_the_call_on_its_next_attempt() {
    let b = breaker(1);
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(1);
    let p = policy(3);
    let call = p.call(|| script.attempt()).breaker(&b);
    let mut call = std::pin::pin!(call);
    // The first attempt fails: with consecutive_failures(1) the breaker opens
    // and the call ends at once.
    let err = futures::poll!(call.as_mut());
    assert!(matches!(
        err,
        std::task::Poll::Ready(Err(Error::CircuitOpen {
            attempts: 1,
            cause: RefusalCause::Open,
            ..
        }))
    ));

    // A breaker tripped by someone else while this call waits.
    let b = breaker(3);
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(1);
    let call = p.call(|| script.attempt()).breaker(&b);
    let mut call = std::pin::pin!(call);
    assert!(futures::poll!(call.as_mut()).is_pending()); // waiting 1 s
    b.force_open();
    let err = call.await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::CircuitOpen {
                attempts: 1,
                cause: RefusalCause::ForcedOpen,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.inner().map(|e| e.status),
        Some(503),
        "kept across the wait"
    );
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_refuses_at_once_without_invoking_the_operation() {
    let b = breaker(1);
    b.force_open();
    let script = Script::<u32, TestError>::new().then_ok(1);
    let t0 = Instant::now();
    let err = policy(3)
        .call(|| script.attempt())
        .breaker(&b)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::CircuitOpen {
                attempts: 0,
                cause: RefusalCause::ForcedOpen,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("circuit open (forced open by hand) after 0 attempts"),
        "{err}"
    );
    assert!(std::error::Error::source(&err).is_none());
    assert!(err.into_inner().is_none(), "no attempt, no error");
    assert_eq!(script.calls(), 0);
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn caller_faults_are_not_held_against_the_breaker() {
    let b = breaker(1);
    for _ in 0..10 {
        let err = policy(3)
            .call(|| async { Err::<(), _>(status(400)) })
            .breaker(&b)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Permanent {
                attempts: 1,
                class: ErrorClass::CallerFault,
                ..
            }
        ));
    }
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn permanent_errors_are_held_against_the_breaker() {
    let b = breaker(3);
    for _ in 0..3 {
        let _ = policy(3)
            .call(|| async { Err::<(), _>(status(401)) })
            .breaker(&b)
            .await;
    }
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_is_recorded_not_each_call() {
    let b = breaker(5);
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_err(status(503))
        .then_err(status(503))
        .then_ok(1);
    policy(3)
        .call(|| script.attempt())
        .breaker(&b)
        .await
        .unwrap();
    // Three failed attempts then a success: the success reset the streak.
    assert_eq!(b.snapshot().consecutive_failures, 0);
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let _ = policy(2).call(|| script.attempt()).breaker(&b).await;
    assert_eq!(b.snapshot().consecutive_failures, 3);
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_count_as_failures() {
    let b = breaker(2);
    let p: SafeCall<TestError> = SafeCall::builder()
        .max_retries(1)
        .attempt_timeout(secs(1))
        .backoff(Backoff::constant(secs(1)))
        .retry_budget(RetryBudget::disabled())
        .build()
        .unwrap();
    let script = Script::<u32, TestError>::new().then_hang();
    let err = p.call(|| script.attempt()).breaker(&b).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { attempts: 2, .. }), "{err:?}");
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_cools_the_key_down_without_counting_as_a_failure() {
    let b = breaker(1);
    let script = Script::<u32, TestError>::new()
        .then_err(retry_after(10))
        .then_ok(7);
    let p = policy(3);
    let call = p.call(|| script.attempt()).breaker(&b);
    let mut call = std::pin::pin!(call);
    // Let the first attempt fail with the hint; the call now waits 10 s.
    assert!(futures::poll!(call.as_mut()).is_pending());
    assert_eq!(b.snapshot().consecutive_failures, 0);
    // Meanwhile the tenant's other calls fail fast.
    tokio::time::advance(secs(4)).await;
    let other = Script::<u32, TestError>::new().then_ok(1);
    let err = p.call(|| other.attempt()).breaker(&b).await.unwrap_err();
    match err {
        Error::CircuitOpen {
            retry_in,
            attempts,
            cause,
            ..
        } => {
            assert_eq!(attempts, 0);
            assert_eq!(retry_in, secs(6));
            assert_eq!(cause, RefusalCause::CoolingDown, "not a failure");
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(other.calls(), 0);
    // The waiting call itself goes through when the hint has passed.
    assert_eq!(call.await.unwrap(), 7);
    assert_eq!(script.calls(), 2);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_frees_its_slot() {
    let b = breaker(1);
    let p = policy(0);
    let _ = p
        .call(|| async { Err::<(), _>(status(503)) })
        .breaker(&b)
        .await;
    assert_eq!(b.state(), BreakerState::Open);
    tokio::time::advance(secs(30)).await;
    assert_eq!(b.state(), BreakerState::HalfOpen);
    // A probe that hangs, and is cancelled by its caller.
    let hang = Script::<u32, TestError>::new().then_hang();
    let cut = tokio::time::timeout(secs(1), p.call(|| hang.attempt()).breaker(&b)).await;
    assert!(cut.is_err());
    assert_eq!(hang.calls(), 1);
    // The slot is free again: the next call is admitted as the probe and closes it.
    let ok = Script::<u32, TestError>::new().then_ok(1);
    assert_eq!(p.call(|| ok.attempt()).breaker(&b).await.unwrap(), 1);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn one_tenants_failures_never_touch_another_tenants_breaker() {
    let breakers: BreakerRegistry<String> =
        BreakerRegistry::new(BreakerConfig::default().consecutive_failures(3));
    let p = policy(0);
    let broken = breakers.get("org-broken");
    for _ in 0..5 {
        let _ = p
            .call(|| async { Err::<(), _>(status(401)) })
            .breaker(&broken)
            .await;
    }
    let healthy = breakers.get("org-healthy");
    let v = p
        .call(|| async { Ok::<_, TestError>(1) })
        .breaker(&healthy)
        .await
        .unwrap();
    assert_eq!(v, 1);
    assert_eq!(broken.state(), BreakerState::Open);
    assert_eq!(healthy.state(), BreakerState::Closed);
    let mut snaps = breakers.snapshot();
    snaps.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[0].key, "org-broken");
    assert_eq!(snaps[0].state, BreakerState::Open);
    assert_eq!(snaps[1].state, BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_breaker_only_policy_applies_the_breaker_without_retrying() {
    let b = breaker(2);
    let p = policy(0);
    let script = Script::<u32, TestError>::new().then_err(status(503));
    for _ in 0..2 {
        let err = p.call(|| script.attempt()).breaker(&b).await.unwrap_err();
        assert_eq!(err.attempts(), 1);
    }
    let err = p.call(|| script.attempt()).breaker(&b).await.unwrap_err();
    assert!(err.is_circuit_open());
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_budget_per_key_keeps_a_noisy_tenant_from_starving_the_others() {
    // Each key may retry 10 times per 10 s (1/s floor, no share of calls); the
    // policy's own budget would allow 100.
    let breakers: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .no_failure_rate()
            .retry_budget(RetryBudget::default().min_per_second(1).ratio(0.0)),
    );
    let p: SafeCall<TestError> = SafeCall::builder()
        .max_retries(1)
        .backoff(Backoff::constant(Duration::ZERO))
        .classify(classify)
        .build()
        .unwrap();
    let noisy = breakers.get("org-noisy");
    let mut refused = 0;
    for _ in 0..20 {
        let err = p
            .call(|| async { Err::<(), _>(status(503)) })
            .breaker(&noisy)
            .await
            .unwrap_err();
        if matches!(
            err,
            Error::Exhausted {
                reason: safecall::ExhaustedReason::BudgetEmpty,
                ..
            }
        ) {
            refused += 1;
        }
    }
    assert_eq!(refused, 10, "the noisy tenant spent its own 10 retries");
    // The quiet tenant's budget is untouched.
    let quiet = breakers.get("org-quiet");
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(1);
    assert_eq!(
        p.call(|| script.attempt()).breaker(&quiet).await.unwrap(),
        1
    );
    assert_eq!(script.calls(), 2);
}

#[test]
fn a_bad_per_key_budget_is_refused() {
    let err =
        Breaker::try_new(BreakerConfig::default().retry_budget(RetryBudget::default().ratio(-1.0)))
            .unwrap_err();
    assert_eq!(err.field(), "retry_budget.ratio");
}

#[tokio::test(start_paused = true)]
async fn a_metrics_only_breaker_never_ends_a_call_even_once_it_would_have_opened() {
    // MetricsOnly trips its shadow state but refuses nothing: a retry must
    // neither be refused nor cut short as "waiting for a certain refusal".
    let b = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(1)
            .no_failure_rate()
            .open_duration(secs(30))
            .mode(BreakerMode::MetricsOnly),
    );
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(7);
    let value = policy(3).call(|| script.attempt()).breaker(&b).await;
    assert_eq!(value.unwrap(), 7);
    assert_eq!(script.calls(), 2);
    assert_eq!(b.state(), BreakerState::Open, "what would have been");
}

#[tokio::test(start_paused = true)]
async fn a_busy_half_open_breaker_refuses_with_its_cause() {
    let b = breaker(1);
    let trip = b.try_acquire().unwrap();
    trip.record(safecall::Outcome::Failure);
    tokio::time::advance(secs(30)).await;
    let probe = b.try_acquire().expect("the one probe");
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.cause(), RefusalCause::ProbesBusy);
    assert!(
        refused.to_string().contains("every probe slot taken"),
        "{refused}"
    );
    drop(probe);
}

/// Issue 11, defect 1: a server cannot lock a tenant out for as long as it
/// likes. A day-long hint ends the call (too long to wait for) and cools the
/// key for `max_cooldown` (60 s by default) only; ten minutes later the next
/// call goes through.
#[tokio::test(start_paused = true)]
async fn a_day_long_retry_after_cools_the_key_for_max_cooldown_only() {
    let b = Breaker::new(BreakerConfig::default());
    let script = Script::<u32, TestError>::new()
        .then_err(retry_after(86_400))
        .then_ok(7);
    let err = policy(3)
        .call(|| script.attempt())
        .breaker(&b)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Exhausted {
                reason: safecall::ExhaustedReason::RetryAfterTooLong { .. },
                ..
            }
        ),
        "{err:?}"
    );
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(refused.retry_in(), secs(60));
    assert_eq!(refused.cause(), RefusalCause::CoolingDown);
    tokio::time::advance(secs(59)).await;
    assert!(b.try_acquire().is_err(), "still cooling at 59 s");
    tokio::time::advance(secs(541)).await;
    let v = policy(3)
        .call(|| script.attempt())
        .breaker(&b)
        .await
        .unwrap();
    assert_eq!(v, 7);
}
