//! A call whose policy has no time limit and no metrics, with no bulkhead and
//! no hedge, makes its first attempt on a quick path when no subscriber takes
//! DEBUG (the general path also opens the call's span then). The two paths
//! must be indistinguishable but for the logs: the same attempts at the same
//! times, the same result, the same breaker afterwards. Each scenario runs
//! twice, once under an INFO subscriber (the quick path) and once under a
//! DEBUG subscriber (the general path), and the two runs are compared.
//!
//! In a binary of its own, with one test: `tracing` keeps one global maximum
//! level, which a scoped subscriber in a test running beside it would change.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use safecall::testing::Script;
use safecall::{
    Backoff, Breaker, BreakerConfig, ErrorClass, Jitter, RetryBudget, SafeCall,
    classify_http_status,
};
use support::TestError;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Out {
    Ok,
    // A success whose value `classify_ok` says is a 503.
    OkButUnavailable,
    Transient,
    Hint(u64),
    Permanent,
    Hang,
}

fn out() -> impl Strategy<Value = (Out, u64)> {
    (
        prop_oneof![
            3 => Just(Out::Transient),
            2 => Just(Out::Ok),
            1 => Just(Out::OkButUnavailable),
            1 => (0u64..5).prop_map(Out::Hint),
            1 => Just(Out::Permanent),
            1 => Just(Out::Hang),
        ],
        // Latency in ms; 0 (ready at the first poll) half the time.
        prop_oneof![Just(0u64), 1u64..3_000],
    )
}

#[derive(Debug, Clone)]
struct Config {
    max_retries: u32,
    base_ms: u64,
    jitter: Jitter,
    budget: bool,
    breaker: Option<u32>,
    classify_ok: bool,
    // Calls made one after another, each with its own script.
    calls: usize,
    seed: u64,
}

fn config() -> impl Strategy<Value = Config> {
    (
        0u32..4,
        prop_oneof![Just(0u64), 1u64..2_000],
        prop_oneof![
            Just(Jitter::None),
            Just(Jitter::Full),
            Just(Jitter::Decorrelated)
        ],
        any::<bool>(),
        proptest::option::of(1u32..4),
        any::<bool>(),
        1usize..4,
        any::<u64>(),
    )
        .prop_map(
            |(max_retries, base_ms, jitter, budget, breaker, classify_ok, calls, seed)| Config {
                max_retries,
                base_ms,
                jitter,
                budget,
                breaker,
                classify_ok,
                calls,
                seed,
            },
        )
}

fn classify(e: &TestError) -> ErrorClass {
    match (e.status, e.retry_after) {
        (429, Some(h)) => ErrorClass::RetryAfter(h),
        (503, _) => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// What one run of a scenario shows: per call, its result, its attempts'
/// start times (from the call's start) and its length; then the breaker.
fn run(c: &Config, scripts: &[Vec<(Out, u64)>]) -> Vec<String> {
    let rt = support::paused_runtime();
    rt.block_on(async {
        let backoff = match c.base_ms {
            // Retries at once: the retry decided inline.
            0 => Backoff::constant(Duration::ZERO),
            ms => Backoff::exponential(Duration::from_millis(ms)).jitter(c.jitter),
        };
        let mut builder = SafeCall::<TestError>::builder()
            .max_retries(c.max_retries)
            .backoff(backoff)
            .classify(classify)
            .seed(c.seed);
        // With the `metrics` feature a policy records metrics by default,
        // which takes the general path.
        #[cfg(feature = "metrics")]
        {
            builder = builder.metrics(false);
        }
        if !c.budget {
            builder = builder.retry_budget(RetryBudget::disabled());
        }
        let policy = builder.build().unwrap();
        let breaker = c.breaker.map(|n| {
            Breaker::new(
                BreakerConfig::default()
                    .consecutive_failures(n)
                    .open_duration(Duration::from_secs(2)),
            )
        });
        let mut seen = Vec::new();
        for outs in scripts {
            let mut script = Script::<u16, TestError>::new();
            for (o, latency) in outs {
                script = match o {
                    Out::Ok => script.then_ok(200),
                    Out::OkButUnavailable => script.then_ok(503),
                    Out::Transient => script.then_err(support::status(503)),
                    Out::Hint(s) => script.then_err(support::retry_after(*s)),
                    Out::Permanent => script.then_err(support::status(401)),
                    Out::Hang => script.then_hang(),
                }
                .after(Duration::from_millis(*latency));
            }
            let t0 = Instant::now();
            script.start();
            let call = policy.call(|| script.attempt());
            let by_value = |s: &u16| (*s >= 500).then(|| classify_http_status(*s, None));
            let result = match (&breaker, c.classify_ok) {
                (Some(b), true) => {
                    tokio::time::timeout(
                        Duration::from_secs(600),
                        call.breaker(b).classify_ok(by_value),
                    )
                    .await
                }
                (Some(b), false) => {
                    tokio::time::timeout(Duration::from_secs(600), call.breaker(b)).await
                }
                (None, true) => {
                    tokio::time::timeout(Duration::from_secs(600), call.classify_ok(by_value)).await
                }
                (None, false) => tokio::time::timeout(Duration::from_secs(600), call).await,
            };
            seen.push(format!(
                "{result:?} at {:?} for {:?}",
                script.attempts_at(),
                t0.elapsed()
            ));
            // The next call a second later: an open breaker may be cooling.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        if let Some(b) = &breaker {
            seen.push(format!("{:?}", b.snapshot()));
        }
        seen
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn the_quick_first_poll_and_the_general_path_agree(
        c in config(),
        scripts in proptest::collection::vec(proptest::collection::vec(out(), 1..6), 3),
    ) {
        let scripts = &scripts[..c.calls];
        // A fresh subscriber at INFO: registering it recomputes `tracing`'s
        // global maximum level, which the previous case's DEBUG subscriber
        // left at DEBUG.
        let (subscriber, _logs) = support::capture_logs(tracing::Level::INFO);
        let quick = tracing::subscriber::with_default(subscriber, || {
            // The quick path: nothing takes DEBUG.
            assert!(!tracing::level_enabled!(tracing::Level::DEBUG));
            run(&c, scripts)
        });
        let (subscriber, _logs) = support::capture_logs(tracing::Level::DEBUG);
        let general = tracing::subscriber::with_default(subscriber, || {
            // The general path: the call opens its span.
            assert!(tracing::level_enabled!(tracing::Level::DEBUG));
            run(&c, scripts)
        });
        prop_assert_eq!(quick, general);
    }
}
