//! Breaker behaviour under tokio's paused clock: every transition, the
//! generation rule, leases, modes, cool-downs and concurrency.

mod support;

use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use safecall::{
    Breaker, BreakerConfig, BreakerMode, BreakerState, Outcome, RefusalCause, Transition,
    TransitionCause,
};
use tokio::time::advance;

const S: Duration = Duration::from_secs(1);

fn trip(b: &Breaker, n: u32) {
    for _ in 0..n {
        b.try_acquire().expect("closed").record(Outcome::Failure);
    }
}

fn cons(n: u32) -> BreakerConfig {
    BreakerConfig::default()
        .consecutive_failures(n)
        .no_failure_rate()
        .open_duration(30 * S)
}

#[tokio::test(start_paused = true)]
async fn consecutive_failures_trip_and_a_success_resets_the_count() {
    let b = Breaker::new(cons(3));
    trip(&b, 2);
    b.try_acquire().unwrap().record(Outcome::Success);
    trip(&b, 2);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().consecutive_failures, 2);
    trip(&b, 1);
    assert_eq!(b.state(), BreakerState::Open);
    let snap = b.snapshot();
    assert_eq!(snap.tripped_by, Some(TransitionCause::ConsecutiveFailures));
    assert_eq!(snap.retry_in, Some(30 * S));
}

#[tokio::test(start_paused = true)]
async fn open_refuses_with_retry_in_then_reports_half_open_by_the_clock() {
    let b = Breaker::new(cons(1));
    trip(&b, 1);
    advance(10 * S).await;
    assert_eq!(b.try_acquire().unwrap_err().retry_in(), 20 * S);
    advance(20 * S - Duration::from_millis(1)).await;
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire().is_err());
    advance(Duration::from_millis(1)).await;
    // No call yet: the state is decided by the clock alone.
    assert_eq!(b.state(), BreakerState::HalfOpen);
    let probe = b
        .try_acquire()
        .expect("first call after the open period is a probe");
    assert!(probe.is_probe());
    probe.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn closing_clears_counts_and_window() {
    let b = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(2)
            .failure_rate(0.5, 30 * S)
            .minimum_calls(100),
    );
    trip(&b, 2);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    let snap = b.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.consecutive_failures, 0);
    assert_eq!(snap.calls_in_window, 0);
    assert_eq!(snap.tripped_by, None);
}

#[tokio::test(start_paused = true)]
async fn failed_probe_reopens_for_another_open_period() {
    let b = Breaker::new(cons(1));
    trip(&b, 1);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.snapshot().tripped_by, Some(TransitionCause::ProbeFailed));
    assert_eq!(b.try_acquire().unwrap_err().retry_in(), 30 * S);
}

#[tokio::test(start_paused = true)]
async fn successes_to_close_needs_that_many_probe_successes() {
    let b = Breaker::new(cons(1).half_open_probes(1).successes_to_close(3));
    trip(&b, 1);
    advance(30 * S).await;
    for _ in 0..2 {
        b.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_at_most_half_open_probes_in_flight() {
    let b = Breaker::new(cons(1).half_open_probes(2).successes_to_close(5));
    trip(&b, 1);
    advance(30 * S).await;
    let p1 = b.try_acquire().unwrap();
    let p2 = b.try_acquire().unwrap();
    let refused = b.try_acquire().unwrap_err();
    // A slot frees at the latest when the oldest lease (= open duration) ends.
    assert_eq!(refused.retry_in(), 30 * S);
    assert_eq!(b.snapshot().probes_in_flight, 2);
    p1.record(Outcome::Success);
    let p3 = b
        .try_acquire()
        .expect("a slot was freed by the completed probe");
    drop((p2, p3));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_trips_only_once_minimum_calls_are_in_the_window() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(0.5, 10 * S)
            .minimum_calls(10),
    );
    for _ in 0..9 {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(b.state(), BreakerState::Closed, "9 calls < minimum_calls");
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Open, "9 of 10 failed");
    assert_eq!(b.snapshot().tripped_by, Some(TransitionCause::FailureRate));
}

#[tokio::test(start_paused = true)]
async fn failure_rate_window_forgets_calls_older_than_the_window() {
    // 10 s window in 10 buckets of 1 s.
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(0.5, 10 * S)
            .minimum_calls(4),
    );
    for _ in 0..3 {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(b.snapshot().calls_in_window, 3);
    advance(10 * S).await;
    let snap = b.snapshot();
    assert_eq!((snap.calls_in_window, snap.failures_in_window), (0, 0));
    // One more failure: 1 call in the window, below minimum_calls.
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn window_counts_stay_exact_as_time_passes() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(1.0, 30 * S)
            .minimum_calls(1_000_000),
    );
    // One call per 700 ms, a failure every third, for 2 minutes; compare the
    // window with a log of every call.
    let mut log = Vec::new();
    let start = tokio::time::Instant::now();
    for i in 0..170u32 {
        let failed = i % 3 == 0;
        b.try_acquire().unwrap().record(if failed {
            Outcome::Failure
        } else {
            Outcome::Success
        });
        let at = tokio::time::Instant::now() - start;
        log.push((at, failed));
        let bucket = |d: Duration| d.as_nanos() / (3 * S).as_nanos();
        let now = bucket(at);
        let (calls, failures) = log
            .iter()
            .filter(|(t, _)| bucket(*t) + 10 > now)
            .fold((0, 0), |(c, f), (_, x)| (c + 1, f + u32::from(*x)));
        let snap = b.snapshot();
        assert_eq!(
            (snap.calls_in_window, snap.failures_in_window),
            (calls, failures),
            "call {i}"
        );
        advance(Duration::from_millis(700)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn count_window_trips_on_the_last_n_calls() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .count_window(0.5, 4)
            .minimum_calls(4),
    );
    for o in [Outcome::Success, Outcome::Success, Outcome::Failure] {
        b.try_acquire().unwrap().record(o);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_success_counts_as_a_failure() {
    let b = Breaker::new(cons(1).slow_call(2 * S));
    let p = b.try_acquire().unwrap();
    advance(S).await;
    p.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    let p = b.try_acquire().unwrap();
    advance(2 * S).await;
    p.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn open_time_grows_after_each_failed_probe_up_to_the_cap_and_resets_on_close() {
    let b = Breaker::new(cons(1).open_duration(10 * S).open_growth(2.0, 35 * S));
    trip(&b, 1);
    let mut expected = vec![10, 20, 35, 35];
    expected.reverse();
    let mut wait = expected.pop().unwrap();
    while let Some(next) = expected.pop() {
        assert_eq!(b.try_acquire().unwrap_err().retry_in(), wait * S);
        advance(wait * S).await;
        b.try_acquire().unwrap().record(Outcome::Failure);
        wait = next;
    }
    assert_eq!(b.try_acquire().unwrap_err().retry_in(), 35 * S);
    advance(35 * S).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    trip(&b, 1);
    assert_eq!(
        b.try_acquire().unwrap_err().retry_in(),
        10 * S,
        "growth reset by closing"
    );
}

#[tokio::test(start_paused = true)]
async fn seeded_jitter_is_reproducible_and_never_exceeds_the_cap() {
    let open_for = |seed| {
        let b = Breaker::new(cons(1).open_duration(10 * S).open_jitter(0.5).seed(seed));
        trip(&b, 1);
        b.try_acquire().unwrap_err().retry_in()
    };
    assert_eq!(open_for(42), open_for(42));
    for seed in 0..50 {
        let d = open_for(seed);
        assert!(d >= 5 * S && d <= 10 * S, "{d:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn probe_past_its_lease_frees_its_slot_and_its_late_outcome_is_stale() {
    let b = Breaker::new(cons(1).probe_lease(5 * S));
    trip(&b, 1);
    advance(30 * S).await;
    let hung = b.try_acquire().unwrap();
    assert!(b.try_acquire().is_err());
    advance(5 * S).await;
    let fresh = b.try_acquire().expect("the hung probe's lease ran out");
    hung.record(Outcome::Failure); // late: cannot re-open
    assert_eq!(b.state(), BreakerState::HalfOpen);
    fresh.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn call_admitted_in_an_earlier_generation_cannot_drive_a_transition() {
    let b = Breaker::new(cons(1));
    let slow = b.try_acquire().unwrap(); // admitted while closed
    trip(&b, 1);
    advance(30 * S).await;
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    // The old call never held a probe slot, and its success cannot close.
    assert!(!slow.is_probe());
    slow.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert_eq!(b.snapshot().probes_in_flight, 1);
    probe.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);

    // A failure from a call admitted before a re-open cannot trip the new
    // closed generation either.
    let old = b.try_acquire().unwrap();
    trip(&b, 1);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    old.record(Outcome::Failure);
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "a stale failure cannot trip"
    );
    // The amended contract: it adds nothing to the new generation's count.
    assert_eq!(b.snapshot().consecutive_failures, 0);
}

/// Issue 11, defect 2: four permits taken while closed, five other failures
/// trip it, a probe closes it, the four old permits then fail: one fresh
/// failure must not trip it again (0.1 counted the stale four).
#[tokio::test(start_paused = true)]
async fn stale_failures_add_nothing_to_the_next_generations_streak() {
    let b = Breaker::new(cons(5));
    let old: Vec<_> = (0..4).map(|_| b.try_acquire().unwrap()).collect();
    trip(&b, 5);
    assert_eq!(b.state(), BreakerState::Open);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    for p in old {
        p.record(Outcome::Failure);
    }
    assert_eq!(b.snapshot().consecutive_failures, 0);
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Closed, "one fresh failure of five");
    for _ in 0..3 {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(b.state(), BreakerState::Closed);
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "the fifth fresh failure trips"
    );
}

/// The same for the failure-rate windows: stale outcomes (failures and
/// successes) land in neither a time nor a count window of a later generation.
#[tokio::test(start_paused = true)]
async fn stale_outcomes_add_nothing_to_the_next_generations_window() {
    let configs = [
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(0.5, 10 * S)
            .minimum_calls(4),
        BreakerConfig::default()
            .no_consecutive_failures()
            .count_window(0.5, 10)
            .minimum_calls(4),
    ];
    for config in configs {
        let b = Breaker::new(config);
        let old: Vec<_> = (0..6).map(|_| b.try_acquire().unwrap()).collect();
        for _ in 0..4 {
            b.try_acquire().unwrap().record(Outcome::Failure);
        }
        assert_eq!(b.state(), BreakerState::Open);
        advance(30 * S).await;
        b.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        for (i, p) in old.into_iter().enumerate() {
            p.record(if i < 3 {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
        let snap = b.snapshot();
        assert_eq!((snap.calls_in_window, snap.failures_in_window), (0, 0));
        // Three fresh calls, two failed: below minimum_calls, still closed.
        b.try_acquire().unwrap().record(Outcome::Failure);
        b.try_acquire().unwrap().record(Outcome::Failure);
        b.try_acquire().unwrap().record(Outcome::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        b.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Open);
    }
}

#[tokio::test(start_paused = true)]
async fn force_open_holds_until_reset() {
    let b = Breaker::new(cons(5));
    b.force_open();
    advance(3600 * S).await;
    assert_eq!(b.state(), BreakerState::Open);
    assert!(b.try_acquire().is_err());
    let snap = b.snapshot();
    assert!(snap.forced);
    assert_eq!(snap.retry_in, None);
    b.reset();
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(b.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn reset_clears_counts_window_and_makes_probes_stale() {
    let b = Breaker::new(cons(1).half_open_probes(1));
    trip(&b, 1);
    advance(30 * S).await;
    let probe = b.try_acquire().unwrap();
    b.reset();
    let snap = b.snapshot();
    assert_eq!(
        (snap.state, snap.consecutive_failures, snap.calls_in_window),
        (BreakerState::Closed, 0, 0)
    );
    probe.record(Outcome::Failure); // stale: counted, cannot trip
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn cancelled_probe_frees_its_slot() {
    let b = Breaker::new(cons(1));
    trip(&b, 1);
    advance(30 * S).await;
    let b2 = b.clone();
    let task = tokio::spawn(async move {
        let _probe = b2.try_acquire().unwrap();
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    assert!(b.try_acquire().is_err(), "the task holds the probe slot");
    task.abort();
    let _ = task.await;
    let probe = b
        .try_acquire()
        .expect("the aborted task's probe slot was released");
    probe.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_dropped_in_a_select_frees_its_slot() {
    let b = Breaker::new(cons(1));
    trip(&b, 1);
    advance(30 * S).await;
    tokio::select! {
        _ = async {
            let _probe = b.try_acquire().unwrap();
            tokio::time::sleep(60 * S).await;
        } => unreachable!(),
        _ = tokio::time::sleep(S) => {}
    }
    assert!(b.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn ignored_outcome_counts_nothing_and_releases_a_probe() {
    let b = Breaker::new(cons(1));
    for _ in 0..10 {
        b.try_acquire().unwrap().record(Outcome::Ignored);
    }
    assert_eq!(b.snapshot().consecutive_failures, 0);
    trip(&b, 1);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Ignored);
    assert_eq!(b.state(), BreakerState::HalfOpen);
    assert!(b.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn retry_after_cools_the_key_down_without_counting_a_failure() {
    let b = Breaker::new(cons(1));
    b.try_acquire().unwrap().record(Outcome::RetryAfter(7 * S));
    assert_eq!(b.state(), BreakerState::Open);
    let snap = b.snapshot();
    assert!(snap.cooling_down);
    assert_eq!(snap.consecutive_failures, 0);
    assert_eq!(snap.retry_in, Some(7 * S));
    advance(2 * S).await;
    assert_eq!(b.try_acquire().unwrap_err().retry_in(), 5 * S);
    advance(5 * S).await;
    assert_eq!(b.state(), BreakerState::Closed);
    let p = b.try_acquire().expect("cool-down over");
    assert!(
        !p.is_probe(),
        "a cool-down is not an open period: no probe needed"
    );
    p.record(Outcome::Success);
}

#[tokio::test(start_paused = true)]
async fn retry_after_cooldown_can_be_turned_off() {
    let b = Breaker::new(cons(1).retry_after_cooldown(false));
    b.try_acquire().unwrap().record(Outcome::RetryAfter(7 * S));
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(b.try_acquire().is_ok());
}

#[tokio::test(start_paused = true)]
async fn retry_after_longer_than_the_open_period_holds_the_probe_back() {
    let b = Breaker::new(cons(1));
    trip(&b, 1);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::RetryAfter(60 * S));
    assert_eq!(b.state(), BreakerState::Open);
    assert_eq!(b.try_acquire().unwrap_err().retry_in(), 60 * S);
    advance(60 * S).await;
    assert!(b.try_acquire().unwrap().is_probe());
}

#[tokio::test(start_paused = true)]
async fn metrics_only_records_and_transitions_but_never_refuses() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let b = Breaker::new(cons(2).mode(BreakerMode::MetricsOnly).on_transition(
        move |t: &Transition<'_>| {
            log.lock().unwrap().push((t.to, t.metrics_only));
        },
    ));
    trip(&b, 2);
    assert_eq!(
        b.state(),
        BreakerState::Open,
        "reports what would have happened"
    );
    for _ in 0..100 {
        b.try_acquire()
            .expect("metrics-only never refuses")
            .record(Outcome::Failure);
    }
    b.try_acquire().unwrap().record(Outcome::RetryAfter(10 * S));
    assert!(b.try_acquire().is_ok());
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    assert_eq!(b.snapshot().mode, BreakerMode::MetricsOnly);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (BreakerState::Open, true),
            (BreakerState::HalfOpen, true),
            (BreakerState::Closed, true)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn disabled_lets_everything_through_and_records_nothing() {
    let b = Breaker::new(cons(1).mode(BreakerMode::Disabled));
    for _ in 0..100 {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    b.try_acquire().unwrap().record(Outcome::RetryAfter(10 * S));
    assert_eq!(b.state(), BreakerState::Closed);
    let snap = b.snapshot();
    assert_eq!((snap.consecutive_failures, snap.calls_in_window), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn listener_sees_every_transition_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let b = Breaker::new(cons(1).on_transition(move |t: &Transition<'_>| {
        log.lock()
            .unwrap()
            .push((t.from, t.to, t.cause, format!("{:?}", t.key)));
    }));
    trip(&b, 1);
    advance(30 * S).await;
    b.try_acquire().unwrap().record(Outcome::Success);
    b.force_open();
    b.reset();
    use BreakerState::*;
    use TransitionCause::*;
    let k = "unkeyed".to_owned();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            (Closed, Open, ConsecutiveFailures, k.clone()),
            (Open, HalfOpen, OpenElapsed, k.clone()),
            (HalfOpen, Closed, ProbesSucceeded, k.clone()),
            (Closed, Open, Forced, k.clone()),
            (Open, Closed, Reset, k),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn listener_may_call_back_into_the_breaker() {
    let slot: Arc<Mutex<Option<Breaker>>> = Arc::new(Mutex::new(None));
    let inner = Arc::clone(&slot);
    let b = Breaker::new(cons(1).on_transition(move |t: &Transition<'_>| {
        if t.to == BreakerState::Open {
            if let Some(b) = inner.lock().unwrap().as_ref() {
                let _ = b.state();
                let _ = b.snapshot();
            }
        }
    }));
    *slot.lock().unwrap() = Some(b.clone());
    trip(&b, 1); // would deadlock if the listener ran under the lock
    assert_eq!(b.state(), BreakerState::Open);
    *slot.lock().unwrap() = None;
}

#[tokio::test(start_paused = true)]
async fn transitions_are_traced_with_the_key() {
    let (subscriber, logs) = support::capture_logs(tracing::Level::INFO);
    let registry: safecall::BreakerRegistry<String> = safecall::BreakerRegistry::new(cons(1));
    {
        let _guard = tracing::subscriber::set_default(subscriber);
        trip(&registry.get("org-46cf"), 1);
    }
    let out = logs.text();
    assert!(out.contains("circuit breaker opened"), "{out}");
    assert!(out.contains("key=\"org-46cf\""), "{out}");
}

#[test]
fn bad_configs_are_refused_naming_the_field() {
    let e = Breaker::try_new(BreakerConfig::default().failure_rate(f64::NAN, S)).unwrap_err();
    assert_eq!(e.field(), "failure_rate.ratio");
    let e = Breaker::try_new(BreakerConfig::default().half_open_probes(0)).unwrap_err();
    assert_eq!(e.field(), "half_open_probes");
    assert!(e.to_string().contains("half_open_probes"));
}

#[test]
#[should_panic(expected = "successes_to_close")]
fn new_panics_on_a_config_try_new_refuses() {
    let _ = Breaker::new(BreakerConfig::default().successes_to_close(0));
}

#[test]
fn many_threads_racing_into_half_open_admit_exactly_half_open_probes() {
    let rt = support::paused_runtime();
    for round in 0..20 {
        let b = rt.block_on(async {
            let b = Breaker::new(cons(1).half_open_probes(3).successes_to_close(10));
            trip(&b, 1);
            advance(30 * S).await;
            b
        });
        let threads = 16;
        let barrier = Barrier::new(threads);
        let (admitted_first, admitted_second) = std::thread::scope(|s| {
            let hs: Vec<_> = (0..threads)
                .map(|_| {
                    let (b, barrier, handle) = (&b, &barrier, rt.handle().clone());
                    s.spawn(move || {
                        let _clock = handle.enter(); // the paused clock
                        barrier.wait();
                        let permit = b.try_acquire().ok();
                        let first = permit.as_ref().map_or(0, |p| u32::from(p.is_probe()));
                        barrier.wait(); // everyone tried while permits are held
                        drop(permit); // cancelled: frees the slot
                        barrier.wait();
                        let again = b.try_acquire().ok();
                        let second = again.as_ref().map_or(0, |p| u32::from(p.is_probe()));
                        barrier.wait();
                        (first, second)
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().unwrap())
                .fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
        });
        assert_eq!(admitted_first, 3, "round {round}");
        assert_eq!(admitted_second, 3, "no slot leaked, round {round}");
        let _g = rt.enter();
        assert_eq!(b.snapshot().probes_in_flight, 0);
    }
}

/// Calls in a 30 s window of 10 buckets of 3 s, from a log of call times.
fn exact_calls(log: &[Duration], at: Duration) -> u32 {
    let bucket = |d: Duration| d.as_nanos() / (3 * S).as_nanos();
    let now = bucket(at);
    log.iter().filter(|t| bucket(**t) + 10 > now).count() as u32
}

#[tokio::test(start_paused = true)]
async fn successes_without_failures_are_dated_within_their_reading_interval() {
    // Regression guard for the clock-free success path: with no failure in
    // the window, successes are counted as pending and dated at the next
    // reading (every 16th). The window's call count may differ from the exact
    // one only by successes misplaced across one bucket edge of one reading
    // interval: at most 16.
    for step_ms in [10u64, 170, 700] {
        let b = Breaker::new(
            BreakerConfig::default()
                .no_consecutive_failures()
                .failure_rate(0.5, 30 * S)
                .minimum_calls(1_000_000),
        );
        let start = tokio::time::Instant::now();
        let mut log = Vec::new();
        for i in 0..400u32 {
            b.try_acquire().unwrap().record(Outcome::Success);
            let at = tokio::time::Instant::now() - start;
            log.push(at);
            if i % 7 == 0 {
                let exact = exact_calls(&log, at);
                let seen = b.snapshot().calls_in_window;
                assert!(
                    seen.abs_diff(exact) <= 16,
                    "step {step_ms} ms, call {i}: window {seen}, exact {exact}"
                );
            }
            advance(Duration::from_millis(step_ms)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_makes_every_later_outcome_exact_again() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(0.5, 30 * S)
            .minimum_calls(10),
    );
    // 9 successes, one every second: pending, dated when the failure reads the clock.
    for _ in 0..9 {
        b.try_acquire().unwrap().record(Outcome::Success);
        advance(S).await;
    }
    b.try_acquire().unwrap().record(Outcome::Failure);
    let s = b.snapshot();
    assert_eq!((s.calls_in_window, s.failures_in_window), (10, 1));
    // From now on each outcome reads the clock: exact counts decide.
    for _ in 0..7 {
        b.try_acquire().unwrap().record(Outcome::Failure);
    }
    assert_eq!(b.state(), BreakerState::Closed, "8 of 17 is below half");
    b.try_acquire().unwrap().record(Outcome::Failure);
    assert_eq!(b.state(), BreakerState::Open, "9 of 18 is half: trips");
}

#[tokio::test(start_paused = true)]
async fn pending_successes_older_than_the_window_are_dropped() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .failure_rate(0.5, 30 * S)
            .minimum_calls(2),
    );
    // 5 successes over the first 4 s, then nothing for 10 minutes.
    for _ in 0..5 {
        b.try_acquire().unwrap().record(Outcome::Success);
        advance(S).await;
    }
    advance(600 * S).await;
    // The first reading since: the pending successes are spread over the 605 s
    // since the start, and all but the last 30 s of that leaves the window.
    b.try_acquire().unwrap().record(Outcome::Failure);
    let s = b.snapshot();
    assert_eq!(s.failures_in_window, 1);
    assert!(s.calls_in_window <= 2, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_success_can_be_the_call_that_brings_a_count_window_to_its_minimum() {
    let b = Breaker::new(
        BreakerConfig::default()
            .no_consecutive_failures()
            .count_window(0.5, 10)
            .minimum_calls(4),
    );
    for outcome in [Outcome::Failure, Outcome::Failure, Outcome::Success] {
        b.try_acquire().unwrap().record(outcome);
    }
    assert_eq!(
        b.state(),
        BreakerState::Closed,
        "3 calls: below the minimum"
    );
    b.try_acquire().unwrap().record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Open, "2 failures of 4 calls");
}

/// DESIGN.md, "Rate-limit-aware breakers": a hint longer than `max_cooldown`
/// cools the key that long, and the next call after it is a probe that learns
/// the provider's current answer (the backlog does not rush in).
#[tokio::test(start_paused = true)]
async fn after_a_cut_short_cool_down_the_next_call_is_a_probe() {
    let b = Breaker::new(BreakerConfig::default().max_cooldown(60 * S));
    b.try_acquire()
        .unwrap()
        .record(Outcome::RetryAfter(86_400 * S));
    let refused = b.try_acquire().unwrap_err();
    assert_eq!(
        (refused.retry_in(), refused.cause()),
        (60 * S, RefusalCause::CoolingDown)
    );
    assert_eq!(b.state(), BreakerState::Open);
    advance(60 * S).await;
    assert_eq!(b.state(), BreakerState::HalfOpen, "the next call probes");
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    let busy = b.try_acquire().unwrap_err();
    assert_eq!(busy.cause(), RefusalCause::ProbesBusy);
    probe.record(Outcome::Success);
    assert_eq!(b.state(), BreakerState::Closed);
    assert!(!b.try_acquire().unwrap().is_probe());

    // The probe hears the hint again: another bounded cool-down, another probe.
    b.try_acquire()
        .unwrap()
        .record(Outcome::RetryAfter(86_400 * S));
    advance(60 * S).await;
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    probe.record(Outcome::RetryAfter(86_400 * S));
    assert_eq!(
        b.try_acquire().unwrap_err().cause(),
        RefusalCause::CoolingDown
    );
    advance(60 * S).await;
    let probe = b.try_acquire().unwrap();
    assert!(probe.is_probe());
    // A failed probe opens it for the open duration, as any probe would.
    probe.record(Outcome::Failure);
    assert_eq!(b.try_acquire().unwrap_err().cause(), RefusalCause::Open);
}

/// A hint within `max_cooldown` is honoured as given: when it has passed,
/// calls go through as before (the server said when).
#[tokio::test(start_paused = true)]
async fn after_a_full_cool_down_calls_go_through_without_a_probe() {
    let b = Breaker::new(BreakerConfig::default().max_cooldown(60 * S));
    b.try_acquire().unwrap().record(Outcome::RetryAfter(10 * S));
    advance(10 * S).await;
    assert_eq!(b.state(), BreakerState::Closed);
    let a = b.try_acquire().unwrap();
    let c = b.try_acquire().unwrap();
    assert!(!a.is_probe() && !c.is_probe());
}
