//! The retry loop under tokio's paused clock: schedules, hints, time limits,
//! classification, budget, cancellation.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safecall::testing::Script;
use safecall::{
    Backoff, Error, ErrorClass, ExhaustedReason, Jitter, RetryBudget, SafeCall, TimeoutKind,
};
use support::{TestError, ms, retry_after, secs, status};
use tokio::time::Instant;

fn classify(e: &TestError) -> ErrorClass {
    match e.status {
        429 | 503 => e
            .retry_after
            .map_or(ErrorClass::Transient, ErrorClass::RetryAfter),
        500..=599 => ErrorClass::Transient,
        400 => ErrorClass::CallerFault,
        _ => ErrorClass::Permanent,
    }
}

/// The seed service's policy: 3 retries, 1 s → 2 s → 4 s, no jitter, no budget.
fn seed_policy() -> safecall::SafeCallBuilder<TestError> {
    SafeCall::builder()
        .max_retries(3)
        .backoff(
            Backoff::exponential(secs(1))
                .factor(2.0)
                .max_delay(secs(30))
                .jitter(Jitter::None),
        )
        .retry_budget(RetryBudget::disabled())
        .classify(classify)
}

#[tokio::test(start_paused = true)]
async fn seed_schedule_attempts_at_0_1_3_7_seconds() {
    let policy = seed_policy().build().unwrap();
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let t0 = Instant::now();
    let result = policy.call(|| script.attempt()).await;
    match result {
        Err(Error::Exhausted {
            source,
            attempts,
            reason,
            ..
        }) => {
            assert_eq!(source, status(503));
            assert_eq!(attempts, 4);
            assert_eq!(reason, ExhaustedReason::RetriesUsedUp);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(script.attempts_at(), [secs(0), secs(1), secs(3), secs(7)]);
    assert_eq!(t0.elapsed(), secs(7), "no wait after the last attempt");
}

#[tokio::test(start_paused = true)]
async fn success_after_failures_returns_the_value() {
    let policy = seed_policy().build().unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(status(500))
        .then_err(status(502))
        .then_ok(7);
    assert_eq!(policy.call(|| script.attempt()).await.unwrap(), 7);
    assert_eq!(script.attempts_at(), [secs(0), secs(1), secs(3)]);
}

#[tokio::test(start_paused = true)]
async fn permanent_and_caller_fault_return_at_once() {
    let policy = seed_policy().build().unwrap();
    for (code, class) in [(401, ErrorClass::Permanent), (400, ErrorClass::CallerFault)] {
        let script = Script::<u32, TestError>::new().then_err(status(code));
        let t0 = Instant::now();
        let err = policy.call(|| script.attempt()).await.unwrap_err();
        assert!(
            matches!(err, Error::Permanent { attempts: 1, class: c, .. } if c == class),
            "{err:?}"
        );
        assert_eq!(err.into_inner(), Some(status(code)));
        assert_eq!(script.calls(), 1);
        assert_eq!(t0.elapsed(), Duration::ZERO);
    }
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor_over_a_shorter_backoff() {
    let policy = seed_policy().build().unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(retry_after(5))
        .then_ok(1);
    policy.call(|| script.attempt()).await.unwrap();
    assert_eq!(script.attempts_at(), [secs(0), secs(5)]);
}

#[tokio::test(start_paused = true)]
async fn a_longer_backoff_wins_over_a_short_hint() {
    let policy = seed_policy()
        .backoff(Backoff::constant(secs(4)))
        .build()
        .unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(retry_after(2))
        .then_ok(1);
    policy.call(|| script.attempt()).await.unwrap();
    assert_eq!(script.attempts_at(), [secs(0), secs(4)]);
}

#[tokio::test(start_paused = true)]
async fn jitter_never_shortens_a_hint() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        for seed in 0..50 {
            let policy = seed_policy()
                .backoff(Backoff::exponential(ms(100)).jitter(jitter))
                .seed(seed)
                .build()
                .unwrap();
            let script = Script::<u32, TestError>::new()
                .then_err(retry_after(3))
                .then_ok(1);
            policy.call(|| script.attempt()).await.unwrap();
            assert!(script.attempts_at()[1] >= secs(3), "{jitter:?} seed {seed}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_hint_longer_than_max_retry_after_gives_up_without_sleeping() {
    let policy = seed_policy().max_retry_after(secs(60)).build().unwrap();
    let script = Script::<u32, TestError>::new().then_err(retry_after(61));
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Exhausted { attempts: 1, reason: ExhaustedReason::RetryAfterTooLong { hint }, .. }
                if hint == secs(61)
        ),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn a_hint_longer_than_the_time_left_gives_up_without_sleeping() {
    let policy = seed_policy().deadline(secs(10)).build().unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(retry_after(8))
        .after(secs(2));
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::DeadlineTooClose,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_wait_that_would_end_at_the_deadline_is_not_started() {
    // Attempts at 0, 1, 3; the wait before the 4th would end at 7 s = the deadline.
    let policy = seed_policy().deadline(secs(7)).build().unwrap();
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Exhausted {
                attempts: 3,
                reason: ExhaustedReason::DeadlineTooClose,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), secs(3));
}

#[tokio::test(start_paused = true)]
async fn the_deadline_drops_an_attempt_in_flight() {
    let policy = seed_policy().deadline(secs(10)).build().unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_hang();
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                attempts: 2,
                kind: TimeoutKind::Deadline,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), secs(10));
    // The first attempt's error is kept: reachable through `source()` and
    // `into_inner()`.
    assert_eq!(
        std::error::Error::source(&err).map(ToString::to_string),
        Some("status 503".to_owned())
    );
    assert_eq!(err.into_inner().map(|e| e.status), Some(503));
}

#[tokio::test(start_paused = true)]
async fn attempt_timeouts_are_retried() {
    let policy = seed_policy().attempt_timeout(secs(2)).build().unwrap();
    let script = Script::<u32, TestError>::new()
        .then_hang()
        .then_hang()
        .then_ok(9);
    assert_eq!(policy.call(|| script.attempt()).await.unwrap(), 9);
    // 0 + 2 s timeout + 1 s wait = 3; 3 + 2 + 2 = 7.
    assert_eq!(script.attempts_at(), [secs(0), secs(3), secs(7)]);
}

#[tokio::test(start_paused = true)]
async fn the_last_attempt_timing_out_is_a_timeout() {
    let policy = seed_policy()
        .max_retries(1)
        .attempt_timeout(secs(2))
        .build()
        .unwrap();
    let script = Script::<u32, TestError>::new().then_hang();
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                attempts: 2,
                kind: TimeoutKind::Attempt,
                reason: Some(ExhaustedReason::RetriesUsedUp),
                last_error: None,
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "timed out after 2 attempts: the last attempt hit its attempt timeout (retries used up)"
    );
    assert_eq!(t0.elapsed(), secs(5));
}

#[tokio::test(start_paused = true)]
async fn each_attempt_gets_the_smaller_of_its_timeout_and_the_time_left() {
    let policy = seed_policy()
        .attempt_timeout(secs(4))
        .deadline(secs(6))
        .build()
        .unwrap();
    let script = Script::<u32, TestError>::new().then_hang();
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    // Attempt 1 times out at 4 s, waits 1 s, attempt 2 is cut by the deadline at 6 s.
    assert!(
        matches!(
            err,
            Error::Timeout {
                attempts: 2,
                kind: TimeoutKind::Deadline,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(t0.elapsed(), secs(6));
}

#[tokio::test(start_paused = true)]
async fn call_with_hands_the_attempt_number_and_time_left() {
    let policy = seed_policy().deadline(secs(20)).build().unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let result = policy
        .call_with(|attempt| {
            seen.lock()
                .unwrap()
                .push((attempt.number, attempt.time_left));
            let n = attempt.number;
            async move { if n < 3 { Err(status(500)) } else { Ok(n) } }
        })
        .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, Some(secs(20))),
            (2, Some(secs(19))),
            (3, Some(secs(17)))
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_time_left_is_none() {
    let policy = seed_policy().build().unwrap();
    let left = policy
        .call_with(|a| async move { Ok::<_, TestError>(a.time_left) })
        .await
        .unwrap();
    assert_eq!(left, None);
}

#[tokio::test(start_paused = true)]
async fn max_retries_zero_makes_one_attempt() {
    let policy = seed_policy().max_retries(0).build().unwrap();
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(matches!(
        err,
        Error::Exhausted {
            attempts: 1,
            reason: ExhaustedReason::RetriesUsedUp,
            ..
        }
    ));
    assert_eq!(script.calls(), 1);
}

#[test]
fn zero_delay_retries_never_touch_the_timer() {
    // A runtime without a time driver: any timer use would panic.
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(async {
        let policy = seed_policy()
            .backoff(Backoff::constant(Duration::ZERO))
            .build()
            .unwrap();
        let script = Script::<u32, TestError>::new()
            .then_err(status(503))
            .then_err(status(503))
            .then_ok(3);
        assert_eq!(policy.call(|| script.attempt()).await.unwrap(), 3);
        assert_eq!(script.calls(), 3);
    });
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_during_an_attempt_stops_it() {
    let policy = seed_policy().build().unwrap();
    let script = Script::<u32, TestError>::new().then_hang();
    let call = policy.call(|| script.attempt());
    let cut = tokio::time::timeout(secs(1), call).await;
    assert!(cut.is_err());
    tokio::time::advance(secs(100)).await;
    assert_eq!(script.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_call_during_a_wait_stops_it() {
    let policy = seed_policy().build().unwrap();
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let call = policy.call(|| script.attempt());
    // Attempts at 0 and 1 s; cut during the 2 s wait.
    let cut = tokio::time::timeout(ms(1500), call).await;
    assert!(cut.is_err());
    tokio::time::advance(secs(100)).await;
    assert_eq!(script.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_failing_calls_gets_no_more_retries_than_the_budget() {
    let policy: SafeCall<TestError> = SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .build()
        .unwrap();
    let attempts = Arc::new(AtomicU32::new(0));
    let mut exhausted_by_budget = 0;
    for _ in 0..1_000 {
        let attempts = attempts.clone();
        let err = policy
            .call(|| {
                attempts.fetch_add(1, Ordering::Relaxed);
                async { Err::<(), _>(status(503)) }
            })
            .await
            .unwrap_err();
        if matches!(
            err,
            Error::Exhausted {
                reason: ExhaustedReason::BudgetEmpty,
                ..
            }
        ) {
            exhausted_by_budget += 1;
        }
    }
    let retries = attempts.load(Ordering::Relaxed) - 1_000;
    // 20 % of 1,000 calls plus the floor of 10/s over the 10 s window.
    assert!(retries <= 200 + 100, "{retries} retries");
    assert!(retries >= 100, "the floor alone allows 100, got {retries}");
    assert!(exhausted_by_budget > 0);
}

#[tokio::test(start_paused = true)]
async fn budget_refusal_says_the_limit_is_local() {
    let policy: SafeCall<TestError> = SafeCall::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::default().min_per_second(0).ratio(0.0))
        .build()
        .unwrap();
    let err = policy
        .call(|| async { Err::<(), _>(status(503)) })
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::Exhausted {
            attempts: 1,
            reason: ExhaustedReason::BudgetEmpty,
            ..
        }
    ));
    let text = err.to_string();
    assert!(text.contains("this client's retry budget"), "{text}");
    assert!(
        !text.contains("503"),
        "Display must not repeat the source: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn errors_that_are_not_retried_never_spend_the_budget() {
    let policy: SafeCall<TestError> = SafeCall::builder()
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::default().min_per_second(1).ratio(0.0))
        .classify(classify)
        .build()
        .unwrap();
    for _ in 0..100 {
        let _ = policy.call(|| async { Err::<(), _>(status(401)) }).await;
    }
    // The budget (10 retries over the window) is intact.
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert_eq!(err.attempts(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_clone_moved_into_a_spawned_task_works_and_shares_the_budget() {
    // A budget of 10 retries over the window (1 per second, no share of calls).
    let policy: SafeCall<TestError> = SafeCall::builder()
        .max_retries(1)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::default().min_per_second(1).ratio(0.0))
        .build()
        .unwrap();
    let clone = policy.clone();
    let spent = tokio::spawn(async move {
        let mut attempts = 0;
        for _ in 0..10 {
            let err = clone
                .call(|| async { Err::<(), _>(status(503)) })
                .await
                .unwrap_err();
            attempts += err.attempts();
        }
        attempts
    })
    .await
    .unwrap();
    assert_eq!(spent, 20, "ten calls, each retried once");
    let err = policy
        .call(|| async { Err::<(), _>(status(503)) })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::BudgetEmpty,
                ..
            }
        ),
        "the clone spent the shared budget: {err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn on_retry_sees_attempt_delay_class_and_error() {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let policy = seed_policy()
        .on_retry(move |e| {
            log.lock()
                .unwrap()
                .push((e.attempt, e.delay, e.class, e.error.cloned()));
        })
        .build()
        .unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_err(retry_after(3))
        .then_ok(1);
    policy.call(|| script.attempt()).await.unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            (1, secs(1), ErrorClass::Transient, Some(status(503))),
            (
                2,
                secs(3),
                ErrorClass::RetryAfter(secs(3)),
                Some(retry_after(3))
            ),
        ]
    );
}

#[test]
fn the_call_future_is_send_when_the_operation_is() {
    fn assert_send<T: Send>(_: &T) {}
    let policy: SafeCall<TestError> = SafeCall::default();
    let call = policy.call(|| async { Ok::<_, TestError>(1) });
    assert_send(&call);
    fn assert_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_sync_clone::<SafeCall<TestError>>();
}

#[test]
fn every_bad_setting_is_a_config_error_naming_its_field() {
    let cases: Vec<(safecall::SafeCallBuilder<TestError>, &str)> = vec![
        (
            SafeCall::builder().attempt_timeout(Duration::ZERO),
            "attempt_timeout",
        ),
        (SafeCall::builder().deadline(Duration::ZERO), "deadline"),
        (
            SafeCall::builder().backoff(Backoff::exponential(secs(1)).factor(f64::NAN)),
            "backoff.factor",
        ),
        (
            SafeCall::builder().backoff(Backoff::exponential(secs(1)).factor(-1.0)),
            "backoff.factor",
        ),
        (
            SafeCall::builder().backoff(Backoff::exponential(Duration::ZERO)),
            "backoff.base",
        ),
        (
            SafeCall::builder().backoff(Backoff::exponential(secs(5)).max_delay(secs(1))),
            "backoff.max_delay",
        ),
        (
            SafeCall::builder().retry_budget(RetryBudget::default().ratio(f64::INFINITY)),
            "retry_budget.ratio",
        ),
        (
            SafeCall::builder().retry_budget(RetryBudget::default().window(Duration::ZERO)),
            "retry_budget.window",
        ),
    ];
    for (builder, field) in cases {
        let err = builder.build().unwrap_err();
        assert_eq!(err.field(), field);
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn error_display_names_the_limit_and_source_points_at_the_cause() {
    use std::error::Error as _;
    let e: Error<TestError> = Error::Exhausted {
        source: status(503),
        attempts: 4,
        reason: ExhaustedReason::RetriesUsedUp,
    };
    assert_eq!(e.to_string(), "gave up after 4 attempts: retries used up");
    assert_eq!(e.source().unwrap().to_string(), "status 503");
    let t: Error<TestError> = Error::Timeout {
        attempts: 1,
        kind: TimeoutKind::Deadline,
        reason: None,
        last_error: None,
    };
    assert!(t.source().is_none());
    assert_eq!(
        t.to_string(),
        "timed out after 1 attempt: the call's deadline passed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_of_a_non_idempotent_call_is_not_retried() {
    let policy = seed_policy()
        .attempt_timeout(secs(2))
        .attempt_timeout_class(ErrorClass::Permanent)
        .build()
        .unwrap();
    let script = Script::<u32, TestError>::new().then_hang();
    let t0 = Instant::now();
    let err = policy.call(|| script.attempt()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                attempts: 1,
                kind: TimeoutKind::Attempt,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(script.calls(), 1);
    assert_eq!(t0.elapsed(), secs(2));
}

#[tokio::test(start_paused = true)]
async fn a_hint_equal_to_max_retry_after_is_waited_for() {
    let policy = seed_policy().max_retry_after(secs(8)).build().unwrap();
    let script = Script::<u32, TestError>::new()
        .then_err(retry_after(8))
        .then_ok(1);
    policy.call(|| script.attempt()).await.unwrap();
    assert_eq!(script.attempts_at(), [secs(0), secs(8)]);
}

#[tokio::test(start_paused = true)]
async fn a_seeded_policy_waits_exactly_the_seeded_schedule() {
    for jitter in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let backoff = Backoff::exponential(ms(100)).jitter(jitter);
        let policy = seed_policy().backoff(backoff).seed(42).build().unwrap();
        let script = Script::<u32, TestError>::new().then_err(status(503));
        let _ = policy.call(|| script.attempt()).await;
        let expected: Vec<Duration> = backoff.delays(42).take(3).collect();
        let starts = script.attempts_at();
        let waits: Vec<Duration> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        // tokio's timer rounds each wait up to its next millisecond.
        for (wait, delay) in waits.iter().zip(&expected) {
            assert!(
                *wait >= *delay && *wait <= *delay + ms(1),
                "{jitter:?}: waited {wait:?} for a delay of {delay:?}"
            );
        }
        assert_eq!(waits.len(), 3);
        assert!(
            expected.iter().enumerate().any(|(k, d)| *d != ms(100 << k)),
            "{jitter:?}: the schedule is jittered"
        );
    }
}

#[test]
fn debug_output_names_the_types() {
    let policy: SafeCall<TestError> = SafeCall::default();
    let call = policy.call(|| async { Ok::<_, TestError>(1) });
    let text = format!("{call:?}");
    assert!(text.starts_with("Call"), "{text}");
    assert!(text.contains("attempts: 0"), "{text}");
    let with = policy.call_with(|_| async { Ok::<_, TestError>(1) });
    assert!(text.contains("Plain(..)"), "{text}");
    let with = format!("{with:?}");
    assert!(
        with.starts_with("Call") && with.contains("WithAttempt(..)"),
        "{with}"
    );
    assert!(format!("{policy:?}").starts_with("SafeCall"));
}

/// A resolved call polled again answers `Pending` and invokes nothing more,
/// after a success (the attempt's future is kept until the call is dropped)
/// and after a failure.
#[tokio::test(start_paused = true)]
async fn a_resolved_call_polled_again_is_pending_and_calls_nothing() {
    let policy: SafeCall<TestError> = seed_policy().build().unwrap();
    for outcome in [Ok(7u32), Err(status(400))] {
        let calls = Arc::new(AtomicU32::new(0));
        let counted = calls.clone();
        let mut call = std::pin::pin!(policy.call(|| {
            counted.fetch_add(1, Ordering::Relaxed);
            let outcome = outcome.clone();
            async move { outcome }
        }));
        let first = futures::poll!(call.as_mut());
        assert!(first.is_ready(), "{outcome:?}: resolves on its first poll");
        for _ in 0..3 {
            assert!(futures::poll!(call.as_mut()).is_pending());
        }
        assert_eq!(calls.load(Ordering::Relaxed), 1, "{outcome:?}");
    }
}
