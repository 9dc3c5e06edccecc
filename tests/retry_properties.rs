//! Properties of the retry loop for any configuration and any sequence of
//! outcomes: attempts ≤ max_retries + 1, nothing runs past the deadline, a hint
//! is never cut short, and the call ends with the error the rules say.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use safecall::testing::Script;
use safecall::{Backoff, Error, ErrorClass, ExhaustedReason, Jitter, RetryBudget, SafeCall};
use support::TestError;
use tokio::time::Instant;

#[derive(Debug, Clone)]
enum Out {
    Ok,
    Transient,
    Hint(u64),
    Permanent,
    Hang,
}

fn out() -> impl Strategy<Value = (Out, u64)> {
    (
        prop_oneof![
            3 => Just(Out::Transient),
            1 => Just(Out::Ok),
            1 => (0u64..90).prop_map(Out::Hint),
            1 => Just(Out::Permanent),
            1 => Just(Out::Hang),
        ],
        0u64..5_000, // latency, ms
    )
}

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated)
    ]
}

#[derive(Debug, Clone)]
struct Config {
    max_retries: u32,
    base_ms: u64,
    jitter: Jitter,
    attempt_timeout_ms: Option<u64>,
    deadline_ms: Option<u64>,
    max_retry_after_s: u64,
    seed: u64,
}

fn config() -> impl Strategy<Value = Config> {
    (
        0u32..6,
        1u64..3_000,
        jitter(),
        proptest::option::of(1u64..5_000),
        proptest::option::of(1u64..30_000),
        0u64..120,
        any::<u64>(),
    )
        .prop_map(
            |(max_retries, base_ms, jitter, attempt_timeout_ms, deadline_ms, mra, seed)| Config {
                max_retries,
                base_ms,
                jitter,
                attempt_timeout_ms,
                deadline_ms,
                max_retry_after_s: mra,
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn the_retry_loop_keeps_its_bounds(c in config(), outs in proptest::collection::vec(out(), 1..10)) {
        let rt = support::paused_runtime();
        rt.block_on(async {
            let mut builder = SafeCall::<TestError>::builder()
                .max_retries(c.max_retries)
                .backoff(Backoff::exponential(Duration::from_millis(c.base_ms)).jitter(c.jitter))
                .max_retry_after(Duration::from_secs(c.max_retry_after_s))
                .retry_budget(RetryBudget::disabled())
                .classify(classify)
                .seed(c.seed);
            if let Some(t) = c.attempt_timeout_ms {
                builder = builder.attempt_timeout(Duration::from_millis(t));
            }
            if let Some(d) = c.deadline_ms {
                builder = builder.deadline(Duration::from_millis(d));
            }
            let policy = builder.build().unwrap();

            let mut script = Script::<u32, TestError>::new();
            for (o, latency) in &outs {
                script = match o {
                    Out::Ok => script.then_ok(1),
                    Out::Transient => script.then_err(support::status(503)),
                    Out::Hint(s) => script.then_err(support::retry_after(*s)),
                    Out::Permanent => script.then_err(support::status(401)),
                    Out::Hang => script.then_hang(),
                }
                .after(Duration::from_millis(*latency));
            }
            let t0 = Instant::now();
            script.start();
            // Without any time limit a hanging attempt hangs the call: cut it here.
            let Ok(result) = tokio::time::timeout(Duration::from_secs(3_600), policy.call(|| script.attempt())).await else {
                prop_assert!(c.attempt_timeout_ms.is_none() && c.deadline_ms.is_none());
                prop_assert!(script.calls() <= c.max_retries + 1);
                return Ok(());
            };
            let elapsed = t0.elapsed();
            let starts = script.attempts_at();

            prop_assert!(script.calls() <= c.max_retries + 1);
            prop_assert!(script.calls() >= 1);
            if let Some(d) = c.deadline_ms {
                let d = Duration::from_millis(d);
                prop_assert!(elapsed <= d, "ran {elapsed:?} past the deadline {d:?}");
                prop_assert!(starts.iter().all(|s| *s < d));
            }
            match &result {
                Ok(_) => {}
                Err(e) => prop_assert_eq!(e.attempts(), script.calls()),
            }
            match result {
                Err(Error::Exhausted { reason: ExhaustedReason::RetriesUsedUp, attempts, .. }) => {
                    prop_assert_eq!(attempts, c.max_retries + 1);
                }
                Err(Error::Exhausted { reason: ExhaustedReason::RetryAfterTooLong { hint }, .. }) => {
                    prop_assert!(hint > Duration::from_secs(c.max_retry_after_s));
                }
                Err(Error::Permanent { source, .. }) => prop_assert_eq!(source.status, 401),
                _ => {}
            }
            // A hint is a floor: the attempt after a hinted failure starts no sooner.
            for (k, (o, latency)) in outs.iter().enumerate() {
                if k + 1 >= starts.len() {
                    break;
                }
                // Only a hint that actually came back (the attempt was not cut by
                // its timeout) is a floor for the next start.
                if let Out::Hint(s) = o {
                    if c.attempt_timeout_ms.is_none_or(|t| *latency < t) {
                        let ended = starts[k] + Duration::from_millis(*latency);
                        let waited = starts[k + 1].checked_sub(ended);
                        prop_assert!(
                            waited.is_some_and(|w| w >= Duration::from_secs(*s)),
                            "attempt {} started {:?} after attempt {} ended, hint {s}s: {starts:?}",
                            k + 2, waited, k + 1
                        );
                    }
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_builder_values_give_a_policy_or_a_config_error(
        max_retries: u32,
        base_ns: u64,
        factor: f64,
        cap_ns: u64,
        timeout_ns: u64,
        deadline_ns: u64,
        ratio: f64,
        window_ns: u64,
        min_per_second: u32,
    ) {
        let built = SafeCall::<TestError>::builder()
            .max_retries(max_retries)
            .backoff(
                Backoff::exponential(Duration::from_nanos(base_ns))
                    .factor(factor)
                    .max_delay(Duration::from_nanos(cap_ns)),
            )
            .attempt_timeout(Duration::from_nanos(timeout_ns))
            .deadline(Duration::from_nanos(deadline_ns))
            .retry_budget(
                RetryBudget::default()
                    .ratio(ratio)
                    .window(Duration::from_nanos(window_ns))
                    .min_per_second(min_per_second),
            )
            .build();
        if let Err(e) = built {
            prop_assert!(!e.field().is_empty() && !e.rule().is_empty());
        }
    }
}
