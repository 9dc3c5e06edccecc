//! Hedged calls against DESIGN.md's "Hedging (backup requests)": every
//! schedule on tokio's paused clock, every dropped attempt proved by a drop
//! guard.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use safecall::{
    Backoff, Breaker, BreakerConfig, BreakerState, Bulkhead, BulkheadConfig, Error, ErrorClass,
    Hedge, Jitter, RetryBudget, SafeCall,
};
use tokio::time::{Instant, advance, sleep};

const HANG: Duration = Duration::from_secs(3600);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How a scripted attempt ends.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Out {
    Ok,
    Transient,
    Permanent,
    RetryAfter(Duration),
}

#[derive(Debug, Clone, PartialEq)]
struct Failed(Out);

fn classify(e: &Failed) -> ErrorClass {
    match e.0 {
        Out::Ok | Out::Transient => ErrorClass::Transient,
        Out::Permanent => ErrorClass::Permanent,
        Out::RetryAfter(d) => ErrorClass::RetryAfter(d),
    }
}

/// What the scripted attempts saw.
#[derive(Debug, Default)]
struct Log {
    /// When each attempt started, since the test's start.
    started: RefCell<Vec<Duration>>,
    /// The attempts dropped before they ended.
    dropped: RefCell<Vec<u32>>,
    live: Cell<u32>,
    max_live: Cell<u32>,
}

impl Log {
    fn started(&self) -> Vec<Duration> {
        self.started.borrow().clone()
    }
    fn dropped(&self) -> Vec<u32> {
        self.dropped.borrow().clone()
    }
}

struct Guard {
    log: Rc<Log>,
    number: u32,
    ended: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.log.live.set(self.log.live.get() - 1);
        if !self.ended {
            self.log.dropped.borrow_mut().push(self.number);
        }
    }
}

/// An operation whose attempt `n` (from 1) waits `script[n - 1].0` and ends
/// as `script[n - 1].1`; attempts past the script hang.
fn scripted(
    script: Vec<(Duration, Out)>,
    log: &Rc<Log>,
) -> impl FnMut(safecall::Attempt) -> std::pin::Pin<Box<dyn Future<Output = Result<u32, Failed>>>> {
    let t0 = Instant::now();
    let log = Rc::clone(log);
    move |attempt| {
        let number = attempt.number;
        let (latency, out) = script
            .get(number as usize - 1)
            .copied()
            .unwrap_or((HANG, Out::Ok));
        log.started.borrow_mut().push(t0.elapsed());
        log.live.set(log.live.get() + 1);
        log.max_live.set(log.max_live.get().max(log.live.get()));
        let guard = Guard {
            log: Rc::clone(&log),
            number,
            ended: false,
        };
        Box::pin(async move {
            // The whole guard moves in (not only the field written below).
            let mut guard = guard;
            sleep(latency).await;
            guard.ended = true;
            match out {
                Out::Ok => Ok(number),
                other => Err(Failed(other)),
            }
        })
    }
}

fn policy(max_retries: u32) -> SafeCall<Failed> {
    SafeCall::builder()
        .max_retries(max_retries)
        .backoff(Backoff::constant(ms(1_000)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .classify(classify)
        .build()
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn each_hedge_starts_exactly_one_delay_after_the_previous_attempt() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(150)).max_extra(2);
    let t0 = Instant::now();
    let result = policy(3)
        .call_with(scripted(
            vec![(HANG, Out::Ok), (HANG, Out::Ok), (ms(100), Out::Ok)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(log.started(), [ms(0), ms(150), ms(300)]);
    assert_eq!(t0.elapsed(), ms(400));
}

#[tokio::test(start_paused = true)]
async fn no_hedge_when_the_first_attempt_answers_before_the_delay() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(150));
    let result = policy(3)
        .call_with(scripted(vec![(ms(149), Out::Ok)], &log))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(log.started(), [ms(0)]);
}

#[tokio::test(start_paused = true)]
async fn the_first_success_wins_and_the_loser_is_dropped_at_once() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(150));
    let t0 = Instant::now();
    let result = policy(3)
        .call_with(scripted(vec![(ms(500), Out::Ok), (ms(10), Out::Ok)], &log))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(t0.elapsed(), ms(160));
    assert_eq!(log.dropped(), [1], "the loser's future is dropped");
    assert_eq!(log.live.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_ends_the_call_and_drops_the_rest() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100)).max_extra(2);
    let t0 = Instant::now();
    let result = policy(3)
        .call_with(scripted(
            vec![(HANG, Out::Ok), (HANG, Out::Ok), (ms(10), Out::Permanent)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert!(
        matches!(result, Err(Error::Permanent { attempts: 3, .. })),
        "{result:?}"
    );
    assert_eq!(t0.elapsed(), ms(210));
    assert_eq!(log.dropped(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn after_zero_starts_every_attempt_at_once() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(Duration::ZERO).max_extra(2);
    let result = policy(3)
        .call_with(scripted(
            vec![(ms(30), Out::Ok), (ms(20), Out::Ok), (ms(10), Out::Ok)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(log.started(), [ms(0), ms(0), ms(0)]);
    assert_eq!(log.dropped(), [1, 2]);
}

#[tokio::test(start_paused = true)]
async fn max_extra_above_four_keeps_five_in_flight_at_most() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(Duration::ZERO).max_extra(9);
    let result = policy(10)
        .call_with(scripted(vec![(ms(10), Out::Ok); 11], &log))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(log.started().len(), 5);
    assert_eq!(log.max_live.get(), 5);
}

#[tokio::test(start_paused = true)]
async fn hedges_count_toward_max_retries() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(Duration::ZERO).max_extra(4);
    let result = policy(1)
        .call_with(scripted(
            vec![(ms(10), Out::Transient), (ms(50), Out::Transient)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    // Two attempts at most; with none left, the call waits for the ones in
    // flight, and the last failure ends it.
    assert!(
        matches!(result, Err(Error::Exhausted { attempts: 2, .. })),
        "{result:?}"
    );
    assert_eq!(log.started(), [ms(0), ms(0)]);
}

#[tokio::test(start_paused = true)]
async fn a_transient_failure_beside_others_starts_the_next_hedge_at_once() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100)).max_extra(2);
    let result = policy(3)
        .call_with(scripted(
            vec![(HANG, Out::Ok), (ms(20), Out::Transient), (ms(10), Out::Ok)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(log.started(), [ms(0), ms(100), ms(120)]);
}

#[tokio::test(start_paused = true)]
async fn with_nothing_in_flight_the_retry_schedule_resumes_counting_waits_not_hedges() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let policy: SafeCall<Failed> = SafeCall::builder()
        .max_retries(5)
        .backoff(Backoff::exponential(ms(1_000)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .classify(classify)
        .build()
        .unwrap();
    let result = policy
        .call_with(scripted(
            vec![
                (ms(200), Out::Transient),
                // A zero hint stops the hedges, so attempt 1's failure leaves
                // nothing in flight.
                (ms(50), Out::RetryAfter(Duration::ZERO)),
                (ms(10), Out::Transient),
                (ms(10), Out::Ok),
            ],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 4);
    // Waits of 1 s then 2 s: the first and second backoff delays, although
    // two attempts came before the first wait.
    assert_eq!(log.started(), [ms(0), ms(100), ms(1_200), ms(3_210)]);
}

#[tokio::test(start_paused = true)]
async fn failures_beside_others_restart_at_once_until_none_is_left() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(Duration::ZERO).max_extra(1);
    let result = policy(5)
        .call_with(scripted(vec![(ms(10), Out::Transient); 6], &log))
        .hedge(&hedge)
        .await;
    assert!(
        matches!(result, Err(Error::Exhausted { attempts: 6, .. })),
        "{result:?}"
    );
    assert_eq!(
        log.started(),
        [ms(0), ms(0), ms(10), ms(10), ms(20), ms(20)]
    );
}

#[tokio::test(start_paused = true)]
async fn an_empty_budget_means_no_hedge_not_an_error() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let policy: SafeCall<Failed> = SafeCall::builder()
        .retry_budget(RetryBudget::default().ratio(0.0).min_per_second(0))
        .classify(classify)
        .build()
        .unwrap();
    let result = policy
        .call_with(scripted(vec![(ms(500), Out::Ok)], &log))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(log.started(), [ms(0)]);
}

#[tokio::test(start_paused = true)]
async fn no_hedge_beside_a_half_open_probe() {
    let breaker = Breaker::new(
        BreakerConfig::default()
            .consecutive_failures(1)
            .open_duration(ms(1_000)),
    );
    breaker
        .try_acquire()
        .unwrap()
        .record(safecall::Outcome::Failure);
    advance(ms(1_000)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let result = policy(3)
        .call_with(scripted(vec![(ms(500), Out::Ok)], &log))
        .hedge(&hedge)
        .breaker(&breaker)
        .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(log.started(), [ms(0)], "the probe ran alone");
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_refused_hedge_is_not_started_and_the_attempt_in_flight_goes_on() {
    let breaker = Breaker::new(BreakerConfig::default());
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let policy = policy(3);
    let call = policy
        .call_with(scripted(vec![(ms(500), Out::Ok)], &log))
        .breaker(&breaker)
        .hedge(&hedge);
    let forced = async {
        sleep(ms(50)).await;
        breaker.force_open();
    };
    let t0 = Instant::now();
    let (result, ()) = tokio::join!(call, forced);
    assert_eq!(result.unwrap(), 1);
    assert_eq!(log.started(), [ms(0)]);
    assert_eq!(t0.elapsed(), ms(500));
}

#[tokio::test(start_paused = true)]
async fn a_refusal_with_nothing_in_flight_ends_the_call_circuit_open() {
    let breaker = Breaker::new(BreakerConfig::default());
    breaker.force_open();
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let result = policy(3)
        .call_with(scripted(vec![(ms(10), Out::Ok)], &log))
        .hedge(&hedge)
        .breaker(&breaker)
        .await;
    assert!(
        matches!(result, Err(Error::CircuitOpen { attempts: 0, .. })),
        "{result:?}"
    );
    assert!(log.started().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_stops_further_hedges() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100)).max_extra(3);
    let result = policy(5)
        .call_with(scripted(
            vec![(ms(1_000), Out::Ok), (ms(20), Out::RetryAfter(ms(5_000)))],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 1, "the attempt in flight went on");
    assert_eq!(log.started(), [ms(0), ms(100)]);
}

#[tokio::test(start_paused = true)]
async fn a_hint_given_beside_others_is_a_floor_for_the_next_wait() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let result = policy(3)
        .call_with(scripted(
            vec![
                (ms(300), Out::Transient),
                (ms(50), Out::RetryAfter(ms(2_000))),
                (ms(10), Out::Ok),
            ],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 3);
    // Attempt 1's transient failure ends the round at 300 ms; the wait is the
    // hint (2 s), not the backoff's 1 s.
    assert_eq!(log.started(), [ms(0), ms(100), ms(2_300)]);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_with_nothing_in_flight_is_waited_out_as_a_retry() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let result = policy(3)
        .call_with(scripted(
            vec![(ms(10), Out::RetryAfter(ms(5_000))), (ms(10), Out::Ok)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(log.started(), [ms(0), ms(5_010)]);
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_every_attempt() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100)).max_extra(2);
    let policy: SafeCall<Failed> = SafeCall::builder()
        .deadline(ms(250))
        .retry_budget(RetryBudget::disabled())
        .classify(classify)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let result = policy.call_with(scripted(vec![], &log)).hedge(&hedge).await;
    assert!(
        matches!(result, Err(Error::Timeout { attempts: 3, .. })),
        "{result:?}"
    );
    assert_eq!(t0.elapsed(), ms(250));
    assert_eq!(log.dropped(), [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn each_attempt_has_its_own_attempt_timeout() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let policy: SafeCall<Failed> = SafeCall::builder()
        .attempt_timeout(ms(300))
        .max_retries(1)
        .retry_budget(RetryBudget::disabled())
        .classify(classify)
        .build()
        .unwrap();
    let t0 = Instant::now();
    let result = policy.call_with(scripted(vec![], &log)).hedge(&hedge).await;
    // The first times out at 300 ms, the hedge at 400 ms: no attempt left.
    assert!(
        matches!(result, Err(Error::Timeout { attempts: 2, .. })),
        "{result:?}"
    );
    assert_eq!(t0.elapsed(), ms(400));
}

#[tokio::test(start_paused = true)]
async fn classify_ok_applies_to_every_attempt() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(Duration::ZERO).max_extra(1);
    let result = policy(1)
        .call_with(scripted(vec![(ms(10), Out::Ok), (ms(20), Out::Ok)], &log))
        .hedge(&hedge)
        .classify_ok(|n: &u32| (*n == 1).then_some(ErrorClass::Transient))
        .await;
    assert_eq!(result.unwrap(), 2, "attempt 1's value was a failure");
}

#[tokio::test(start_paused = true)]
async fn one_bulkhead_permit_covers_every_attempt() {
    let bulkhead = Bulkhead::new(BulkheadConfig::max_concurrent(1));
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100));
    let policy = policy(3);
    let call = policy
        .call_with(scripted(vec![(ms(500), Out::Ok), (ms(200), Out::Ok)], &log))
        .bulkhead(&bulkhead)
        .hedge(&hedge);
    let watch = async {
        sleep(ms(150)).await;
        bulkhead.in_use()
    };
    let (result, in_use) = tokio::join!(call, watch);
    assert_eq!(result.unwrap(), 2);
    assert_eq!(in_use, 1, "two attempts in flight, one permit");
    assert_eq!(bulkhead.in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_the_call_drops_every_attempt_and_leaks_no_permit() {
    let breaker = Breaker::new(BreakerConfig::default().consecutive_failures(1));
    let bulkhead = Bulkhead::new(BulkheadConfig::max_concurrent(1));
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(ms(100)).max_extra(2);
    let policy = policy(3);
    let call = policy
        .call_with(scripted(vec![], &log))
        .breaker(&breaker)
        .bulkhead(&bulkhead)
        .hedge(&hedge);
    assert!(tokio::time::timeout(ms(250), call).await.is_err());
    assert_eq!(log.dropped(), [1, 2, 3]);
    assert_eq!(bulkhead.in_use(), 0);
    assert_eq!(breaker.state(), BreakerState::Closed, "nothing counted");

    // A cancelled probe frees its slot.
    breaker
        .try_acquire()
        .unwrap()
        .record(safecall::Outcome::Failure);
    advance(ms(30_000)).await;
    let probe = policy
        .call_with(scripted(vec![], &log))
        .breaker(&breaker)
        .hedge(&hedge);
    assert!(tokio::time::timeout(ms(250), probe).await.is_err());
    assert!(breaker.try_acquire().is_ok(), "the probe slot is free");
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_loser_past_the_slow_call_threshold_counts_as_slow() {
    let config = BreakerConfig::default()
        .consecutive_failures(1)
        .slow_call(ms(200));
    // The loser had run 110 ms when dropped: released without counting.
    let breaker = Breaker::new(config.clone());
    let log = Rc::new(Log::default());
    let result = policy(3)
        .call_with(scripted(vec![(HANG, Out::Ok), (ms(10), Out::Ok)], &log))
        .breaker(&breaker)
        .hedge(&Hedge::after(ms(100)))
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(breaker.state(), BreakerState::Closed);

    // The loser had run 310 ms: a slow call, so a hung endpoint still trips.
    let breaker = Breaker::new(config);
    let log = Rc::new(Log::default());
    let result = policy(3)
        .call_with(scripted(vec![(HANG, Out::Ok), (ms(10), Out::Ok)], &log))
        .breaker(&breaker)
        .hedge(&Hedge::after(ms(300)))
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn at_percentile_hedges_only_after_min_samples() {
    let hedge = Hedge::at_percentile(0.5).min_samples(3);
    let policy = policy(3);
    for _ in 0..3 {
        let log = Rc::new(Log::default());
        let result = policy
            .call_with(scripted(vec![(ms(400), Out::Ok)], &log))
            .hedge(&hedge)
            .await;
        assert_eq!(result.unwrap(), 1);
        assert_eq!(log.started(), [ms(0)], "not enough samples: no hedge");
    }
    assert_eq!(hedge.samples(), 3);
    // The p50 (400 ms) rounded up to its histogram bucket's largest value:
    // never below, less than 12.5 % above.
    let delay = hedge.delay().expect("learnt");
    assert!(delay >= ms(400) && delay < ms(450), "{delay:?}");
    let log = Rc::new(Log::default());
    let result = policy
        .call_with(scripted(vec![(HANG, Out::Ok), (ms(10), Out::Ok)], &log))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 2);
    // tokio's timers fire on the millisecond: at the delay, rounded up.
    let fired = ms(u64::try_from(delay.as_nanos().div_ceil(1_000_000)).unwrap());
    assert_eq!(log.started(), [ms(0), fired]);
    // The winner (10 ms) and the dropped loser (410 ms) were both recorded.
    assert_eq!(hedge.samples(), 5);
}

#[tokio::test(start_paused = true)]
async fn at_percentile_uses_the_fallback_delay_until_it_has_learnt() {
    let hedge = Hedge::at_percentile(0.95).fallback_delay(ms(50));
    let log = Rc::new(Log::default());
    let result = policy(3)
        .call_with(scripted(vec![(HANG, Out::Ok), (ms(10), Out::Ok)], &log))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(log.started(), [ms(0), ms(50)]);
}

#[tokio::test(start_paused = true)]
async fn max_extra_zero_never_hedges() {
    let log = Rc::new(Log::default());
    let hedge = Hedge::after(Duration::ZERO).max_extra(0);
    let result = policy(3)
        .call_with(scripted(
            vec![(ms(100), Out::Transient), (ms(100), Out::Ok)],
            &log,
        ))
        .hedge(&hedge)
        .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(log.started(), [ms(0), ms(1_100)]);
}

fn out() -> impl Strategy<Value = Out> {
    prop_oneof![
        3 => Just(Out::Ok),
        4 => Just(Out::Transient),
        1 => Just(Out::Permanent),
        1 => (0u64..300).prop_map(|m| Out::RetryAfter(ms(m))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Hedges and retries mixed, with a breaker (sometimes half-open) and a
    /// bulkhead, sometimes cancelled: never more than `max_retries + 1`
    /// attempts, never more than `max_extra + 1` in flight, the error's count
    /// is the invocations made, nothing is left running, and no bulkhead
    /// permit or probe slot is leaked.
    #[test]
    fn attempts_never_exceed_max_retries_plus_one(
        max_retries in 0u32..6,
        max_extra in 0u32..6,
        delay in 0u64..300,
        deadline in proptest::option::of(100u64..3_000),
        cancel_at in proptest::option::of(0u64..3_000),
        half_open in any::<bool>(),
        script in proptest::collection::vec((0u64..500, out()), 0..10),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut builder = SafeCall::builder()
                .max_retries(max_retries)
                .backoff(Backoff::constant(ms(100)).jitter(Jitter::None))
                .retry_budget(RetryBudget::disabled())
                .classify(classify);
            if let Some(d) = deadline {
                builder = builder.deadline(ms(d));
            }
            let policy = builder.build().unwrap();
            // Closed and never tripping, or half-open (then its first counted
            // failure opens it again).
            let breaker = Breaker::new(
                BreakerConfig::default()
                    .consecutive_failures(if half_open { 1 } else { 1_000 })
                    .open_duration(ms(10))
                    .retry_after_cooldown(false),
            );
            if half_open {
                breaker.try_acquire().unwrap().record(safecall::Outcome::Failure);
                advance(ms(10)).await;
                prop_assert_eq!(breaker.state(), BreakerState::HalfOpen);
            }
            let bulkhead = Bulkhead::new(BulkheadConfig::max_concurrent(1));
            let hedge = Hedge::after(ms(delay)).max_extra(max_extra);
            let log = Rc::new(Log::default());
            let script = script.into_iter().map(|(l, o)| (ms(l), o)).collect();
            let call = policy
                .call_with(scripted(script, &log))
                .breaker(&breaker)
                .bulkhead(&bulkhead)
                .hedge(&hedge);
            let result = match cancel_at {
                Some(at) => tokio::time::timeout(ms(at), call).await.ok(),
                None => Some(call.await),
            };
            let made = u32::try_from(log.started().len()).unwrap();
            prop_assert!(made <= max_retries + 1, "{made} attempts");
            prop_assert!(log.max_live.get() <= max_extra.min(4) + 1);
            if half_open {
                prop_assert!(log.max_live.get() <= 1, "a probe runs alone");
            }
            prop_assert_eq!(log.live.get(), 0);
            prop_assert_eq!(bulkhead.in_use(), 0);
            if let Some(Err(e)) = &result {
                prop_assert_eq!(e.attempts(), made);
            }
            if breaker.state() == BreakerState::HalfOpen {
                prop_assert!(breaker.try_acquire().is_ok(), "a probe slot leaked");
            }
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn designs_example_as_written_and_every_chaining_order() {
    async fn get_profile(id: u32) -> Result<u32, Failed> {
        Ok(id)
    }
    let policy = policy(3);
    let b = Breaker::new(BreakerConfig::default());
    let id = 46;
    let hedge = Hedge::after(Duration::from_millis(150)).max_extra(1); // or Hedge::at_percentile(0.95)
    let value = policy
        .call(|| get_profile(id))
        .hedge(&hedge)
        .breaker(&b)
        .await;
    assert_eq!(value.unwrap(), 46);
    let learnt = Hedge::at_percentile(0.95);
    let bulkhead = Bulkhead::new(BulkheadConfig::max_concurrent(1));
    let value = policy
        .call(|| get_profile(id))
        .classify_ok(|_: &u32| None)
        .bulkhead(&bulkhead)
        .hedge(&learnt)
        .breaker(&b)
        .fallback(|_| Some(0))
        .await;
    assert_eq!(value.unwrap(), 46);
    let value = policy
        .call(|| get_profile(id))
        .breaker(&b)
        .hedge(&hedge)
        .classify_ok(|_: &u32| None)
        .bulkhead(&bulkhead)
        .await;
    assert_eq!(value.unwrap(), 46);
}

#[test]
fn a_hedged_call_is_send_when_its_operation_is() {
    fn assert_send<T: Send>(_: &T) {}
    let policy = policy(3);
    let breaker = Breaker::new(BreakerConfig::default());
    let hedge = Hedge::after(ms(10));
    let call = policy
        .call(|| async { Ok::<u32, Failed>(1) })
        .breaker(&breaker)
        .hedge(&hedge);
    assert_send(&call);
    let hedge_is_cheap_to_share: fn(&Hedge) -> Hedge = Hedge::clone;
    assert_eq!(hedge_is_cheap_to_share(&hedge).delay(), Some(ms(10)));
}
