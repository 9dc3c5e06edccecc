//! A tour of `safecall` in a few seconds: a flaky call retried to success, a
//! permanent error returned at once, a deadline, and the retry budget.
//!
//! Run it with `cargo run --example quickstart` (set `RUST_LOG=safecall=trace` to
//! see every attempt). The "service" here is a closure that fails on purpose; the
//! other examples talk to a local HTTP server instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safecall::{Backoff, Error, ErrorClass, Jitter, RetryBudget, SafeCall};
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

/// What our pretend provider answers with.
#[derive(Debug)]
struct ProviderError {
    status: u16,
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "provider answered HTTP {}", self.status)
    }
}

impl std::error::Error for ProviderError {}

fn classify(e: &ProviderError) -> ErrorClass {
    match e.status {
        500..=599 => ErrorClass::Transient,
        400 | 422 => ErrorClass::CallerFault,
        _ => ErrorClass::Permanent,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "safecall=debug".into()),
        )
        .with_target(false)
        .init();

    // The seed service's schedule, scaled down 10x so the tour is quick:
    // 100 ms -> 200 ms -> 400 ms, no jitter so the numbers are predictable.
    let policy: SafeCall<ProviderError> = SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::None))
        .classify(classify)
        .on_retry(|e| {
            println!(
                "  attempt {} failed ({}), retrying in {:?}",
                e.attempt,
                e.error.map_or("timed out".to_string(), |e| e.to_string()),
                e.delay
            );
        })
        .build()?;

    println!("1. A flaky call: fails twice with 503, then succeeds.");
    let calls = AtomicU32::new(0);
    let started = Instant::now();
    let value = policy
        .call(|| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n <= 2 {
                    Err(ProviderError { status: 503 })
                } else {
                    Ok(format!("message queued on attempt {n}"))
                }
            }
        })
        .await?;
    println!("  -> {value} after {:?}\n", rounded(started.elapsed()));

    println!("2. A permanent error (401, revoked credentials): returned at once.");
    let started = Instant::now();
    let err = policy
        .call(|| async { Err::<(), _>(ProviderError { status: 401 }) })
        .await
        .unwrap_err();
    println!(
        "  -> {err} (cause: {}) after {:?}\n",
        err.inner().map_or(String::new(), |e| e.to_string()),
        rounded(started.elapsed())
    );

    println!("3. A deadline of 250 ms over a provider that hangs on the 2nd attempt.");
    let with_deadline: SafeCall<ProviderError> = SafeCall::builder()
        .backoff(Backoff::constant(Duration::from_millis(50)))
        .deadline(Duration::from_millis(250))
        .classify(classify)
        .build()?;
    let calls = AtomicU32::new(0);
    let started = Instant::now();
    let err = with_deadline
        .call_with(|attempt| {
            calls.fetch_add(1, Ordering::SeqCst);
            println!(
                "  attempt {} starts with {:?} left",
                attempt.number,
                attempt.time_left.map(rounded)
            );
            async move {
                if attempt.number == 1 {
                    Err::<(), _>(ProviderError { status: 502 })
                } else {
                    std::future::pending().await
                }
            }
        })
        .await
        .unwrap_err();
    println!("  -> {err} after {:?}\n", rounded(started.elapsed()));

    println!("4. The retry budget: 200 calls against a dead provider, retries capped.");
    let budgeted: SafeCall<ProviderError> = SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::default().min_per_second(2))
        .classify(classify)
        .build()?;
    let attempts = Arc::new(AtomicU32::new(0));
    let mut refused = 0;
    for _ in 0..200 {
        let attempts = attempts.clone();
        // 200 calls would log 400 lines: run them without the subscriber.
        let result = budgeted
            .call(|| {
                attempts.fetch_add(1, Ordering::SeqCst);
                async { Err::<(), _>(ProviderError { status: 503 }) }
            })
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await;
        if let Err(Error::Exhausted {
            reason: safecall::ExhaustedReason::BudgetEmpty,
            ..
        }) = result
        {
            refused += 1;
        }
    }
    let total = attempts.load(Ordering::SeqCst);
    println!(
        "  -> 200 calls made {total} attempts ({} retries, not 600); {refused} calls stopped by the budget",
        total - 200
    );
    Ok(())
}

fn rounded(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64 / 10 * 10)
}
