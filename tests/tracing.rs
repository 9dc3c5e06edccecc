//! What a call writes to `tracing` at each level. In a binary of their own:
//! `tracing` keeps one global maximum level and caches each callsite's
//! interest, so a test that installs a scoped subscriber races every other
//! test of its binary that runs the same callsites without one (the call's
//! debug span and events are hit by nearly every retry test). Here each test
//! also holds [`support::log_lock`], so nothing runs beside it.

// Each test has its own runtime on its own thread: the lock serialises the
// tests, not tasks of one runtime, so holding it across `.await` is the point.
#![allow(clippy::await_holding_lock)]

mod support;

use safecall::testing::Script;
use safecall::{Backoff, Jitter, RetryBudget, SafeCall, classify_http_status};
use support::{TestError, secs, status};

fn policy() -> SafeCall<TestError> {
    SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::exponential(secs(1)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_call_runs_in_a_safecall_span_when_debug_is_on() {
    let _serial = support::log_lock();
    let (subscriber, logs) = support::capture_logs(tracing::Level::DEBUG);
    let _guard = tracing::subscriber::set_default(subscriber);
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(1);
    assert_eq!(policy().call(|| script.attempt()).await.unwrap(), 1);
    let text = logs.text();
    assert!(text.contains("safecall{max_retries=3}"), "{text}");
    assert!(text.contains("retrying"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn below_debug_a_call_logs_nothing() {
    let _serial = support::log_lock();
    let (subscriber, logs) = support::capture_logs(tracing::Level::INFO);
    let _guard = tracing::subscriber::set_default(subscriber);
    let script = Script::<u32, TestError>::new()
        .then_err(status(503))
        .then_ok(1);
    assert_eq!(policy().call(|| script.attempt()).await.unwrap(), 1);
    assert_eq!(logs.text(), "");
}

#[tokio::test(start_paused = true)]
async fn tracing_says_a_value_was_classified() {
    let _serial = support::log_lock();
    let (subscriber, logs) = support::capture_logs(tracing::Level::DEBUG);
    let _guard = tracing::subscriber::set_default(subscriber);
    let script = Script::<u16, TestError>::new().then_ok(503).then_ok(200);
    let status = policy()
        .call(|| script.attempt())
        .classify_ok(|s: &u16| (*s >= 400).then(|| classify_http_status(*s, None)))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let text = logs.text();
    assert!(text.contains("value_classified=true"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_fallback_that_serves_says_so() {
    let _serial = support::log_lock();
    let (subscriber, logs) = support::capture_logs(tracing::Level::INFO);
    let _guard = tracing::subscriber::set_default(subscriber);
    let script = Script::<u32, TestError>::new().then_err(status(503));
    let v = policy()
        .call(|| script.attempt())
        .fallback(|_| Some(7))
        .await
        .unwrap();
    assert_eq!(v, 7);
    let text = logs.text();
    assert!(text.contains("a fallback served the call"), "{text}");
    assert!(text.contains("attempts=4"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn a_hedge_sent_and_won_is_a_debug_event() {
    let _serial = support::log_lock();
    let (subscriber, logs) = support::capture_logs(tracing::Level::DEBUG);
    let _guard = tracing::subscriber::set_default(subscriber);
    let hedge = safecall::Hedge::after(std::time::Duration::from_millis(150));
    let mut n = 0;
    let won = policy()
        .call(|| {
            n += 1;
            let latency = if n == 1 { secs(5) } else { secs(0) };
            async move {
                tokio::time::sleep(latency).await;
                Ok::<_, TestError>(n)
            }
        })
        .hedge(&hedge)
        .await;
    assert_eq!(won.unwrap(), 2);
    let text = logs.text();
    assert!(text.contains("hedge sent attempt=2 delay=150ms"), "{text}");
    assert!(text.contains("hedge won attempt=2"), "{text}");
}
