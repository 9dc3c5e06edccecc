//! Property test: the default time window's counts against a naive log of
//! every outcome, under tokio's paused clock.
//!
//! A closed success does not read the clock while the window holds no
//! failure: it is counted as pending and dated at the next clock reading
//! (every 16th success, any failure, any look at the statistics), spread
//! over the time since the reading before. So, at every look:
//!
//! - failures are counted exactly (each reads the clock and lands in its
//!   own bucket);
//! - no success is lost or counted twice: a success counts as in the window
//!   or not by a time between the two readings around it, so only the one
//!   run of successes between two readings that straddles the window's start
//!   can be off, by at most its length: 16;
//! - with nothing yet old enough to leave the window, the counts are exact.

use std::time::Duration;

use proptest::prelude::*;
use safecall::{Breaker, BreakerConfig, Outcome};
use tokio::time::Instant;

/// The default window: 30 s in 10 buckets of 3 s.
const WINDOW: Duration = Duration::from_secs(30);
const BUCKETS: u128 = 10;
/// Most successes between two clock readings.
const RUN: u32 = 16;

#[derive(Debug, Clone)]
enum Op {
    Successes(u32),
    Failure,
    Advance(u64),
    Look,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u32..40).prop_map(Op::Successes),
        1 => Just(Op::Failure),
        4 => (0u64..4_000).prop_map(Op::Advance),
        2 => Just(Op::Look),
    ]
}

/// Calls and failures of `log` in the window at `now`, by bucket from `t0`
/// (the breaker's time base: its first outcome).
fn naive(log: &[(Instant, bool)], t0: Instant, now: Instant) -> (u32, u32) {
    let width = WINDOW.as_nanos() / BUCKETS;
    let bucket = |t: Instant| t.duration_since(t0).as_nanos() / width;
    let current = bucket(now);
    log.iter()
        .filter(|(t, _)| bucket(*t) + BUCKETS > current)
        .fold((0, 0), |(c, f), (_, failed)| {
            (c + 1, f + u32::from(*failed))
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn window_counts_stay_right_without_a_clock_read_per_success(
        ops in proptest::collection::vec(op(), 1..150),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            // Never trips: the counts are never cleared by a transition.
            let b = Breaker::new(
                BreakerConfig::default()
                    .no_consecutive_failures()
                    .failure_rate(1.0, WINDOW)
                    .minimum_calls(u32::MAX),
            );
            let mut log: Vec<(Instant, bool)> = Vec::new();
            let look = |log: &[(Instant, bool)]| -> Result<(), TestCaseError> {
                let Some(&(t0, _)) = log.first() else { return Ok(()) };
                let now = Instant::now();
                let (calls, failures) = naive(log, t0, now);
                let snap = b.snapshot();
                prop_assert_eq!(snap.failures_in_window, failures, "failures are exact");
                prop_assert!(
                    snap.calls_in_window.abs_diff(calls) <= RUN,
                    "calls {} against {} of the log", snap.calls_in_window, calls
                );
                if now.duration_since(t0) < WINDOW - WINDOW / BUCKETS as u32 {
                    prop_assert_eq!(snap.calls_in_window, calls, "nothing has left the window");
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Successes(n) => {
                        for _ in 0..n {
                            b.try_acquire().unwrap().record(Outcome::Success);
                            log.push((Instant::now(), false));
                        }
                    }
                    Op::Failure => {
                        b.try_acquire().unwrap().record(Outcome::Failure);
                        log.push((Instant::now(), true));
                    }
                    Op::Advance(ms) => tokio::time::advance(Duration::from_millis(ms)).await,
                    Op::Look => look(&log)?,
                }
            }
            look(&log)
        })?;
    }
}

/// A steady stream at a few successes per second, with a failure now and
/// then: at every look the counts match the log, within one run of
/// successes at the window's start.
#[tokio::test(start_paused = true)]
async fn a_steady_stream_is_counted_within_one_run_of_successes() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(1.0, WINDOW)
            .minimum_calls(u32::MAX),
    );
    let mut log = Vec::new();
    let t0 = Instant::now();
    for i in 0..2_000u32 {
        let failed = i % 97 == 0;
        let outcome = if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        b.try_acquire().unwrap().record(outcome);
        log.push((Instant::now(), failed));
        tokio::time::advance(Duration::from_millis(170)).await;
        if i % 50 == 0 {
            let (calls, failures) = naive(&log, t0, Instant::now());
            let snap = b.snapshot();
            assert_eq!(snap.failures_in_window, failures, "at {i}");
            assert!(
                snap.calls_in_window.abs_diff(calls) <= RUN,
                "at {i}: {} against {calls}",
                snap.calls_in_window
            );
        }
    }
}
