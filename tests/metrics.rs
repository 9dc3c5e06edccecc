//! The `metrics` feature against DESIGN.md's table: a debugging recorder
//! (`metrics-util`) installed around the calls, on a current-thread runtime
//! with a paused clock, so every duration is exact.
#![cfg(feature = "metrics")]

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use proptest::prelude::*;
use safecall::metrics::{BREAKERS, CALL_ATTEMPTS, CALL_DURATION, EVENTS};
use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, BreakerSnapshot, BreakerState, Error, ErrorClass,
    Jitter, Outcome, RetryBudget, SafeCall,
};

const S: Duration = Duration::from_secs(1);

type Labels = Vec<(String, String)>;

/// Everything a debugging recorder saw, by name and label set.
#[derive(Debug, Default)]
struct Seen {
    counters: BTreeMap<(String, Labels), u64>,
    gauges: BTreeMap<(String, Labels), f64>,
    histograms: BTreeMap<(String, Labels), Vec<f64>>,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Seen {
    fn take(snapshotter: &metrics_util::debugging::Snapshotter) -> Self {
        let mut seen = Seen::default();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let name = key.key().name().to_owned();
            let labels: Labels = key
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            match value {
                DebugValue::Counter(n) => {
                    seen.counters.insert((name, labels), n);
                }
                DebugValue::Gauge(g) => {
                    seen.gauges.insert((name, labels), g.into_inner());
                }
                DebugValue::Histogram(h) => {
                    seen.histograms.insert(
                        (name, labels),
                        h.into_iter().map(|f| f.into_inner()).collect(),
                    );
                }
            }
        }
        seen
    }

    fn counter(&self, name: &str, pairs: &[(&str, &str)]) -> u64 {
        self.counters
            .get(&(name.to_owned(), labels(pairs)))
            .copied()
            .unwrap_or(0)
    }

    fn gauge(&self, name: &str, pairs: &[(&str, &str)]) -> Option<f64> {
        self.gauges.get(&(name.to_owned(), labels(pairs))).copied()
    }

    fn histogram(&self, name: &str, pairs: &[(&str, &str)]) -> Vec<f64> {
        self.histograms
            .get(&(name.to_owned(), labels(pairs)))
            .cloned()
            .unwrap_or_default()
    }

    /// The events counted, as `(policy, event) -> count` (no other label).
    fn events(&self) -> BTreeMap<(String, String), u64> {
        self.counters
            .iter()
            .filter(|((name, _), n)| name == EVENTS && **n > 0)
            .map(|((_, labels), n)| {
                let get = |k: &str| {
                    labels
                        .iter()
                        .find(|(key, _)| key == k)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                ((get("policy"), get("event")), *n)
            })
            .collect()
    }

    /// Every outcome histogram with samples: `outcome -> attempts`.
    fn outcomes(&self, policy: &str) -> BTreeMap<String, Vec<f64>> {
        self.histograms
            .iter()
            .filter(|((name, labels), h)| {
                name == CALL_ATTEMPTS
                    && !h.is_empty()
                    && labels.first() == Some(&("policy".to_owned(), policy.to_owned()))
            })
            .map(|((_, labels), h)| (labels[1].1.clone(), h.clone()))
            .collect()
    }

    fn label_sets(&self) -> BTreeSet<(String, Labels)> {
        self.counters
            .keys()
            .chain(self.gauges.keys())
            .chain(self.histograms.keys())
            .cloned()
            .collect()
    }
}

/// A recorder whose values can be read again and again (the debugging
/// recorder's snapshot resets counters and gauges): for a gauge watched
/// while it changes.
#[derive(Clone)]
struct Live(Arc<Registry<Key, AtomicStorage>>);

impl Live {
    fn new() -> Self {
        Self(Arc::new(Registry::atomic()))
    }

    /// The gauge's values for `registry`, by state (absent = 0).
    fn gauges(&self, registry: &str) -> BTreeMap<&'static str, f64> {
        let handles = self.0.get_gauge_handles();
        STATES
            .iter()
            .map(|state| {
                let value = handles
                    .iter()
                    .find(|(key, _)| {
                        key.name() == BREAKERS
                            && key
                                .labels()
                                .map(|l| (l.key(), l.value()))
                                .eq([("registry", registry), ("state", *state)])
                    })
                    .map_or(0.0, |(_, g)| f64::from_bits(g.load(Ordering::Acquire)));
                (*state, value)
            })
            .collect()
    }
}

impl Recorder for Live {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("runtime")
}

/// Runs `f` on a paused current-thread runtime under a debugging recorder of
/// its own (thread-local: tests do not see each other's metrics).
fn recorded<F: Future>(f: impl FnOnce() -> F) -> (F::Output, Seen) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let out = metrics::with_local_recorder(&recorder, || paused_runtime().block_on(f()));
    (out, Seen::take(&snapshotter))
}

#[derive(Debug, Clone, PartialEq)]
struct Failure(u16);

fn policy(name: &'static str, max_retries: u32) -> SafeCall<Failure> {
    SafeCall::builder()
        .name(name)
        .max_retries(max_retries)
        .backoff(Backoff::constant(S).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .classify(|e: &Failure| match e.0 {
            400 => ErrorClass::CallerFault,
            401 => ErrorClass::Permanent,
            429 => ErrorClass::RetryAfter(Duration::from_secs(5)),
            _ => ErrorClass::Transient,
        })
        .build()
        .expect("policy")
}

/// An operation that fails with `statuses` in turn, then succeeds.
fn script(statuses: &[u16]) -> impl FnMut() -> std::future::Ready<Result<u32, Failure>> + use<> {
    let mut left: Vec<u16> = statuses.iter().rev().copied().collect();
    move || {
        std::future::ready(match left.pop() {
            Some(s) => Err(Failure(s)),
            None => Ok(7),
        })
    }
}

fn ev(policy: &str, event: &str, n: u64) -> ((String, String), u64) {
    ((policy.to_owned(), event.to_owned()), n)
}

#[test]
fn a_success_records_ok_its_attempts_and_duration_and_no_event() {
    let ((), seen) = recorded(|| async {
        let p = policy("twilio", 3);
        assert_eq!(p.call(script(&[])).await.ok(), Some(7));
    });
    let ok = [("policy", "twilio"), ("outcome", "ok")];
    assert_eq!(seen.histogram(CALL_ATTEMPTS, &ok), [1.0]);
    assert_eq!(seen.histogram(CALL_DURATION, &ok), [0.0]);
    assert!(seen.events().is_empty(), "{:?}", seen.events());
}

#[test]
fn retries_are_counted_and_the_duration_includes_the_waits() {
    let ((), seen) = recorded(|| async {
        let p = policy("twilio", 3);
        assert_eq!(p.call(script(&[503, 503])).await.ok(), Some(7));
    });
    let ok = [("policy", "twilio"), ("outcome", "ok")];
    assert_eq!(seen.histogram(CALL_ATTEMPTS, &ok), [3.0]);
    assert_eq!(seen.histogram(CALL_DURATION, &ok), [2.0]);
    assert_eq!(seen.events(), BTreeMap::from([ev("twilio", "retry", 2)]));
}

#[test]
fn hedges_sent_and_hedges_won_are_counted() {
    let ((), seen) = recorded(|| async {
        let p = policy("profiles", 3);
        let hedge = safecall::Hedge::after(Duration::from_millis(100)).max_extra(2);
        // Attempt 1 hangs, the hedge at 100 ms answers first.
        let mut n = 0;
        let won = p
            .call(|| {
                n += 1;
                let latency = if n == 1 {
                    10 * S
                } else {
                    Duration::from_millis(10)
                };
                async move {
                    tokio::time::sleep(latency).await;
                    Ok::<_, Failure>(n)
                }
            })
            .hedge(&hedge)
            .await;
        assert_eq!(won.ok(), Some(2));
        // The first attempt answers before the delay: no hedge.
        assert_eq!(p.call(script(&[])).hedge(&hedge).await.ok(), Some(7));
        // Two hedges sent, the first attempt wins: none won.
        let mut n = 0;
        let first = p
            .call(|| {
                n += 1;
                let latency = if n == 1 {
                    Duration::from_millis(250)
                } else {
                    10 * S
                };
                async move {
                    tokio::time::sleep(latency).await;
                    Ok::<_, Failure>(n)
                }
            })
            .hedge(&hedge)
            .await;
        assert_eq!(first.ok(), Some(1));
    });
    assert_eq!(
        seen.events(),
        BTreeMap::from([
            ev("profiles", "hedge_sent", 3),
            ev("profiles", "hedge_won", 1)
        ])
    );
    let ok = [("policy", "profiles"), ("outcome", "ok")];
    assert_eq!(seen.histogram(CALL_ATTEMPTS, &ok), [2.0, 1.0, 3.0]);
}

#[test]
fn each_way_a_call_ends_has_its_outcome_and_events() {
    struct Case {
        name: &'static str,
        outcome: &'static str,
        attempts: f64,
        duration: f64,
        events: Vec<((String, String), u64)>,
    }
    let (cases, seen) = recorded(|| async {
        let mut cases = Vec::new();
        // permanent: not retried, no give-up.
        let p = policy("permanent", 3);
        assert!(matches!(
            p.call(script(&[401])).await,
            Err(Error::Permanent { .. })
        ));
        cases.push(Case {
            name: "permanent",
            outcome: "permanent",
            attempts: 1.0,
            duration: 0.0,
            events: vec![],
        });
        // a caller fault is not retried either: permanent.
        let p = policy("caller_fault", 3);
        assert!(matches!(
            p.call(script(&[400])).await,
            Err(Error::Permanent { .. })
        ));
        cases.push(Case {
            name: "caller_fault",
            outcome: "permanent",
            attempts: 1.0,
            duration: 0.0,
            events: vec![],
        });
        // exhausted: retries used up.
        let p = policy("exhausted", 2);
        assert!(matches!(
            p.call(script(&[503, 503, 503])).await,
            Err(Error::Exhausted { attempts: 3, .. })
        ));
        cases.push(Case {
            name: "exhausted",
            outcome: "exhausted",
            attempts: 3.0,
            duration: 2.0,
            events: vec![ev("exhausted", "retry", 2), ev("exhausted", "give_up", 1)],
        });
        // exhausted: a hint too long to wait for.
        let p: SafeCall<Failure> = SafeCall::builder()
            .name("hint_too_long")
            .max_retry_after(S)
            .retry_budget(RetryBudget::disabled())
            .classify(|_: &Failure| ErrorClass::RetryAfter(Duration::from_secs(5)))
            .build()
            .unwrap();
        assert!(matches!(
            p.call(script(&[429])).await,
            Err(Error::Exhausted { .. })
        ));
        cases.push(Case {
            name: "hint_too_long",
            outcome: "exhausted",
            attempts: 1.0,
            duration: 0.0,
            events: vec![ev("hint_too_long", "give_up", 1)],
        });
        // budget_empty: an Exhausted whose reason is the budget.
        let p: SafeCall<Failure> = SafeCall::builder()
            .name("budget")
            .retry_budget(RetryBudget::default().ratio(0.0).min_per_second(0))
            .build()
            .unwrap();
        assert!(matches!(
            p.call(script(&[503])).await,
            Err(Error::Exhausted {
                reason: safecall::ExhaustedReason::BudgetEmpty,
                ..
            })
        ));
        cases.push(Case {
            name: "budget",
            outcome: "budget_empty",
            attempts: 1.0,
            duration: 0.0,
            events: vec![ev("budget", "give_up", 1)],
        });
        // timeout: the deadline passes during an attempt.
        let p: SafeCall<Failure> = SafeCall::builder()
            .name("deadline")
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let hang = p.call(std::future::pending::<Result<u32, Failure>>).await;
        assert!(matches!(hang, Err(Error::Timeout { attempts: 1, .. })));
        cases.push(Case {
            name: "deadline",
            outcome: "timeout",
            attempts: 1.0,
            duration: 5.0,
            events: vec![],
        });
        // timeout: the last allowed attempt runs past its attempt timeout
        // (a retryable failure with no attempt left: a give-up).
        let p: SafeCall<Failure> = SafeCall::builder()
            .name("attempt_timeout")
            .max_retries(1)
            .backoff(Backoff::constant(S).jitter(Jitter::None))
            .attempt_timeout(Duration::from_secs(2))
            .retry_budget(RetryBudget::disabled())
            .build()
            .unwrap();
        let hang = p.call(std::future::pending::<Result<u32, Failure>>).await;
        assert!(matches!(hang, Err(Error::Timeout { attempts: 2, .. })));
        cases.push(Case {
            name: "attempt_timeout",
            outcome: "timeout",
            attempts: 2.0,
            duration: 5.0,
            events: vec![
                ev("attempt_timeout", "retry", 1),
                ev("attempt_timeout", "give_up", 1),
            ],
        });
        // circuit_open: refused before the first attempt.
        let breakers: BreakerRegistry<String> =
            BreakerRegistry::new(BreakerConfig::default()).name("orgs");
        let b = breakers.get("org-1");
        b.force_open();
        let p = policy("refused", 3);
        assert!(matches!(
            p.call(script(&[])).breaker(&b).await,
            Err(Error::CircuitOpen { attempts: 0, .. })
        ));
        cases.push(Case {
            name: "refused",
            outcome: "circuit_open",
            attempts: 0.0,
            duration: 0.0,
            events: vec![ev("refused", "rejected", 1)],
        });
        // circuit_open mid-call: the breaker opens on the second failure.
        let breakers: BreakerRegistry<String> =
            BreakerRegistry::new(BreakerConfig::default().consecutive_failures(2)).name("orgs2");
        let b = breakers.get("org-1");
        let p = policy("opened_mid_call", 3);
        assert!(matches!(
            p.call(script(&[503, 503, 503])).breaker(&b).await,
            Err(Error::CircuitOpen { attempts: 2, .. })
        ));
        cases.push(Case {
            name: "opened_mid_call",
            outcome: "circuit_open",
            attempts: 2.0,
            duration: 1.0,
            events: vec![
                ev("opened_mid_call", "retry", 1),
                ev("opened_mid_call", "rejected", 1),
            ],
        });
        cases
    });
    for case in &cases {
        let labels = [("policy", case.name), ("outcome", case.outcome)];
        assert_eq!(
            seen.outcomes(case.name),
            BTreeMap::from([(case.outcome.to_owned(), vec![case.attempts])]),
            "{}: exactly one call, with this outcome and attempt count",
            case.name
        );
        assert_eq!(
            seen.histogram(CALL_DURATION, &labels),
            [case.duration],
            "{}",
            case.name
        );
        let events: BTreeMap<_, _> = seen
            .events()
            .into_iter()
            .filter(|((policy, _), _)| policy == case.name)
            .collect();
        assert_eq!(
            events,
            case.events.iter().cloned().collect(),
            "{}",
            case.name
        );
    }
}

#[test]
fn a_classified_value_is_labelled_as_the_error_would_have_been() {
    let ((), seen) = recorded(|| async {
        // Retries used up: Ok(last value), outcome exhausted, a give-up.
        let p = policy("values", 1);
        let last = p
            .call(|| async { Ok::<u16, Failure>(503) })
            .classify_ok(|s: &u16| (*s >= 500).then_some(ErrorClass::Transient))
            .await;
        assert_eq!(last.ok(), Some(503));
        // Not retryable: Ok(value), outcome permanent.
        let p = policy("values_permanent", 3);
        let last = p
            .call(|| async { Ok::<u16, Failure>(401) })
            .classify_ok(|s: &u16| (*s >= 400).then_some(ErrorClass::Permanent))
            .await;
        assert_eq!(last.ok(), Some(401));
        // Budget empty: Ok(value), outcome budget_empty.
        let p: SafeCall<Failure> = SafeCall::builder()
            .name("values_budget")
            .retry_budget(RetryBudget::default().ratio(0.0).min_per_second(0))
            .build()
            .unwrap();
        let last = p
            .call(|| async { Ok::<u16, Failure>(503) })
            .classify_ok(|s: &u16| (*s >= 500).then_some(ErrorClass::Transient))
            .await;
        assert_eq!(last.ok(), Some(503));
    });
    assert_eq!(
        seen.outcomes("values"),
        BTreeMap::from([("exhausted".to_owned(), vec![2.0])])
    );
    assert_eq!(
        seen.outcomes("values_permanent"),
        BTreeMap::from([("permanent".to_owned(), vec![1.0])])
    );
    assert_eq!(
        seen.outcomes("values_budget"),
        BTreeMap::from([("budget_empty".to_owned(), vec![1.0])])
    );
    assert_eq!(
        seen.events(),
        BTreeMap::from([
            ev("values", "retry", 1),
            ev("values", "give_up", 1),
            ev("values_budget", "give_up", 1),
        ])
    );
}

#[test]
fn a_dropped_call_records_nothing() {
    let ((), seen) = recorded(|| async {
        let p = policy("dropped", 3);
        let call = p.call(std::future::pending::<Result<u32, Failure>>);
        let _ = tokio::time::timeout(S, call).await;
    });
    assert!(seen.outcomes("dropped").is_empty());
}

#[test]
fn breaker_transitions_are_counted_once_under_the_registry_name() {
    let ((), seen) = recorded(|| async {
        let breakers: BreakerRegistry<String> = BreakerRegistry::new(
            BreakerConfig::default()
                .consecutive_failures(2)
                .open_duration(Duration::from_secs(30)),
        )
        .name("orgs");
        let b = breakers.get("org-1");
        // Two policies share the breaker: each transition is counted once.
        let (p1, p2) = (policy("p1", 0), policy("p2", 0));
        let _ = p1.call(script(&[503])).breaker(&b).await;
        let _ = p2.call(script(&[503])).breaker(&b).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(p1.call(script(&[])).breaker(&b).await.ok(), Some(7));
        assert_eq!(b.state(), BreakerState::Closed);
        b.force_open();
        b.reset();
        // A retry-after hint cools the key down (no transition).
        let _ = p2.call(script(&[429])).breaker(&b).await;
        assert!(b.snapshot().cooling_down);
    });
    let breaker_events: BTreeMap<_, _> = seen
        .events()
        .into_iter()
        .filter(|((policy, _), _)| policy == "orgs")
        .collect();
    assert_eq!(
        breaker_events,
        BTreeMap::from([
            ev("orgs", "circuit_opened", 2),
            ev("orgs", "circuit_half_opened", 1),
            ev("orgs", "circuit_closed", 2),
            ev("orgs", "cooled_down", 1),
        ])
    );
    // The calls' own events carry the policies' names.
    assert_eq!(
        seen.counter(EVENTS, &[("policy", "p1"), ("event", "give_up")]),
        1
    );
    assert_eq!(
        seen.counter(EVENTS, &[("policy", "p2"), ("event", "give_up")]),
        2
    );
}

/// The gauge's state for a snapshot: forced open by hand, else cooling down
/// on a hint, else the state it reports.
fn gauge_state(s: &BreakerSnapshot<String>) -> &'static str {
    if s.forced {
        "forced_open"
    } else if s.cooling_down {
        "cooling_down"
    } else {
        match s.state {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

const STATES: [&str; 5] = ["closed", "open", "half_open", "forced_open", "cooling_down"];

/// The gauge's values for `registry`, by state (absent = 0).
fn gauge_counts(seen: &Seen, registry: &str) -> BTreeMap<&'static str, f64> {
    STATES
        .iter()
        .map(|s| {
            (
                *s,
                seen.gauge(BREAKERS, &[("registry", registry), ("state", s)])
                    .unwrap_or(0.0),
            )
        })
        .collect()
}

fn snapshot_counts(snapshots: &[BreakerSnapshot<String>]) -> BTreeMap<&'static str, f64> {
    let mut out: BTreeMap<&'static str, f64> = STATES.iter().map(|s| (*s, 0.0)).collect();
    for s in snapshots {
        *out.entry(gauge_state(s)).or_default() += 1.0;
    }
    out
}

#[test]
fn the_gauge_counts_keys_by_state_without_a_snapshot() {
    let (snapshots, seen) = recorded(|| async {
        let breakers: BreakerRegistry<String> =
            BreakerRegistry::new(BreakerConfig::default().consecutive_failures(1)).name("orgs");
        let p = policy("p", 0);
        for org in ["a", "b", "c", "d", "e"] {
            let _ = breakers.get(org);
        }
        let _ = p.call(script(&[503])).breaker(&breakers.get("a")).await;
        let _ = p.call(script(&[503])).breaker(&breakers.get("b")).await;
        breakers.get("c").force_open();
        let _ = p.call(script(&[429])).breaker(&breakers.get("d")).await;
        breakers.snapshot()
    });
    // Taken before the snapshot's changes could matter: nothing happened by
    // the clock.
    let expected = BTreeMap::from([
        ("closed", 1.0),
        ("open", 2.0),
        ("half_open", 0.0),
        ("forced_open", 1.0),
        ("cooling_down", 1.0),
    ]);
    assert_eq!(gauge_counts(&seen, "orgs"), expected);
    assert_eq!(snapshot_counts(&snapshots), expected);
}

#[test]
fn a_snapshot_sets_the_gauge_to_what_the_clock_says() {
    let recorder = Live::new();
    let (before, after, snapshots) = metrics::with_local_recorder(&recorder, || {
        paused_runtime().block_on(async {
            let breakers: BreakerRegistry<String> = BreakerRegistry::new(
                BreakerConfig::default()
                    .consecutive_failures(1)
                    .open_duration(Duration::from_secs(30)),
            )
            .name("orgs");
            let p = policy("p", 0);
            let _ = p.call(script(&[503])).breaker(&breakers.get("a")).await;
            let _ = p.call(script(&[429])).breaker(&breakers.get("b")).await;
            tokio::time::advance(Duration::from_secs(30)).await;
            let before = recorder.gauges("orgs");
            let snapshots = breakers.snapshot();
            let after = recorder.gauges("orgs");
            (before, after, snapshots)
        })
    });
    // Before: counted as of the last change (open, cooling down).
    assert_eq!(before["open"], 1.0);
    assert_eq!(before["cooling_down"], 1.0);
    // After: the open period passed (half-open), the hint ended (closed).
    assert_eq!(after["half_open"], 1.0);
    assert_eq!(after["closed"], 1.0);
    assert_eq!(after, snapshot_counts(&snapshots));
}

#[derive(Debug, Clone)]
enum Op {
    Fail(u8),
    Succeed(u8),
    Hint(u8, u64),
    Force(u8),
    Reset(u8),
    Advance(u64),
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6u8).prop_map(Op::Fail),
        3 => (0..6u8).prop_map(Op::Succeed),
        1 => (0..6u8, 1..90u64).prop_map(|(k, s)| Op::Hint(k, s)),
        1 => (0..6u8).prop_map(Op::Force),
        1 => (0..6u8).prop_map(Op::Reset),
        2 => (1..40u64).prop_map(Op::Advance),
        1 => Just(Op::Snapshot),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// For any sequence of outcomes, hints, manual control and clock
    /// advances, the gauge equals the snapshot's counts once a snapshot is
    /// taken, and the counts always sum to the number of keys.
    #[test]
    fn the_gauge_matches_the_snapshot(ops in prop::collection::vec(op(), 1..60)) {
        let recorder = Live::new();
        let checks = metrics::with_local_recorder(&recorder, || {
            paused_runtime().block_on(async {
                let breakers: BreakerRegistry<String> = BreakerRegistry::new(
                    BreakerConfig::default()
                        .consecutive_failures(2)
                        .open_duration(Duration::from_secs(30))
                        .max_cooldown(Duration::from_secs(60)),
                )
                .name("prop");
                let mut checks = Vec::new();
                for op in ops {
                    let key = |k: u8| format!("org-{k}");
                    match op {
                        Op::Fail(k) | Op::Succeed(k) | Op::Hint(k, _) => {
                            let b = breakers.get(&key(k));
                            if let Ok(permit) = b.try_acquire() {
                                permit.record(match op {
                                    Op::Fail(_) => Outcome::Failure,
                                    Op::Hint(_, s) => Outcome::RetryAfter(Duration::from_secs(s)),
                                    _ => Outcome::Success,
                                });
                            }
                        }
                        Op::Force(k) => breakers.get(&key(k)).force_open(),
                        Op::Reset(k) => breakers.get(&key(k)).reset(),
                        Op::Advance(s) => tokio::time::advance(Duration::from_secs(s)).await,
                        Op::Snapshot => {}
                    }
                    let gauge_before = recorder.gauges("prop");
                    let snapshots = breakers.snapshot();
                    let gauge = recorder.gauges("prop");
                    checks.push((gauge_before, gauge, snapshot_counts(&snapshots), breakers.len()));
                }
                checks
            })
        });
        for (before, gauge, snapshot, len) in checks {
            prop_assert_eq!(&gauge, &snapshot);
            prop_assert_eq!(before.values().sum::<f64>(), len as f64);
            prop_assert_eq!(gauge.values().sum::<f64>(), len as f64);
        }
    }
}

#[test]
fn a_hundred_thousand_tenants_make_a_bounded_set_of_series_without_a_key() {
    let tenants = 100_000u32;
    let key = |i: u32| format!("tenant-{i:06}");
    let ((), seen) = recorded(|| async {
        let breakers: BreakerRegistry<String> =
            BreakerRegistry::new(BreakerConfig::default().consecutive_failures(1)).name("orgs");
        let p = policy("twilio", 0);
        for i in 0..tenants {
            let b = breakers.get(&key(i));
            // Every tenth tenant's provider fails and opens its breaker;
            // every hundredth is then refused.
            let statuses: &[u16] = if i % 10 == 0 { &[503] } else { &[] };
            let _ = p.call(script(statuses)).breaker(&b).await;
            if i % 100 == 0 {
                let _ = p.call(script(&[])).breaker(&b).await;
            }
        }
        assert_eq!(breakers.len(), tenants as usize);
        let _ = breakers.snapshot();
    });
    let sets = seen.label_sets();
    // The policy's series, registered when it was built: duration and
    // attempts for each of its 7 outcomes, and its 7 events (21: retry,
    // give_up, hedge_sent, hedge_won, rejected, bulkhead_rejected, fallback);
    // the registry's, registered at its first key: the gauge's 5 states and
    // its 4 events (9). Whatever the number of tenants.
    assert_eq!(sets.len(), 21 + 9, "{sets:#?}");
    for (_, labels) in &sets {
        for (_, value) in labels {
            assert!(
                !value.starts_with("tenant-"),
                "a tenant key as a label: {value}"
            );
        }
    }
    let open = f64::from(tenants / 10);
    assert_eq!(
        seen.gauge(BREAKERS, &[("registry", "orgs"), ("state", "open")]),
        Some(open)
    );
    assert_eq!(
        seen.gauge(BREAKERS, &[("registry", "orgs"), ("state", "closed")]),
        Some(f64::from(tenants) - open)
    );
    assert_eq!(
        seen.counter(EVENTS, &[("policy", "orgs"), ("event", "circuit_opened")]),
        u64::from(tenants / 10)
    );
    assert_eq!(
        seen.counter(EVENTS, &[("policy", "twilio"), ("event", "rejected")]),
        u64::from(tenants / 100)
    );
}

#[test]
fn a_label_mapping_keeps_named_tenants_and_folds_the_rest_into_other() {
    let tenants = 100_000u32;
    let key = |i: u32| format!("tenant-{i:06}");
    let ((), seen) = recorded(|| async {
        let breakers: BreakerRegistry<String> =
            BreakerRegistry::new(BreakerConfig::default().consecutive_failures(1))
                .name("orgs")
                .metrics_label(|k: &String| match k.as_str() {
                    "tenant-000000" => Some("acme"),
                    "tenant-000001" => Some("globex"),
                    _ => None,
                });
        let p = policy("twilio", 0);
        for i in 0..tenants {
            let statuses: &[u16] = if i % 2 == 0 { &[503] } else { &[] };
            let _ = p
                .call(script(statuses))
                .breaker(&breakers.get(&key(i)))
                .await;
        }
    });
    let gauge = |tenant: &str, state: &str| {
        seen.gauge(
            BREAKERS,
            &[("registry", "orgs"), ("state", state), ("tenant", tenant)],
        )
    };
    assert_eq!(gauge("acme", "open"), Some(1.0));
    assert_eq!(gauge("globex", "closed"), Some(1.0));
    assert_eq!(gauge("other", "open"), Some(f64::from(tenants / 2 - 1)));
    assert_eq!(gauge("other", "closed"), Some(f64::from(tenants / 2 - 1)));
    assert_eq!(
        seen.counter(
            EVENTS,
            &[
                ("policy", "orgs"),
                ("event", "circuit_opened"),
                ("tenant", "acme")
            ]
        ),
        1
    );
    let tenant_values: BTreeSet<String> = seen
        .label_sets()
        .into_iter()
        .flat_map(|(_, labels)| labels)
        .filter(|(k, _)| k == "tenant")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(
        tenant_values,
        BTreeSet::from(["acme".to_owned(), "globex".to_owned(), "other".to_owned()])
    );
    // The policy's 21, and the registry's 9 for each of the 3 tenant labels.
    assert_eq!(
        seen.label_sets().len(),
        21 + 3 * 9,
        "{:#?}",
        seen.label_sets()
    );
}

#[test]
fn a_policy_used_before_the_recorder_was_installed_records_into_it() {
    let rt = paused_runtime();
    let p = policy("early", 0);
    // First use under no recorder (the no-op one): nothing to see.
    rt.block_on(async { p.call(script(&[])).await.unwrap() });
    // Then under a recorder, and under two more: each sees its call. (A
    // policy tells recorders apart by address: these live side by side.)
    let recorders: Vec<DebuggingRecorder> = (0..3).map(|_| DebuggingRecorder::new()).collect();
    for recorder in &recorders {
        let snapshotter = recorder.snapshotter();
        metrics::with_local_recorder(recorder, || {
            rt.block_on(async { p.call(script(&[])).await.unwrap() })
        });
        let seen = Seen::take(&snapshotter);
        assert_eq!(
            seen.outcomes("early"),
            BTreeMap::from([("ok".to_owned(), vec![1.0])])
        );
    }
}

#[test]
fn a_policy_built_without_metrics_registers_and_records_nothing() {
    let ((), seen) = recorded(|| async {
        let p: SafeCall<Failure> = SafeCall::builder()
            .name("quiet")
            .metrics(false)
            .backoff(Backoff::constant(Duration::ZERO))
            .build()
            .unwrap();
        assert_eq!(p.call(script(&[503])).await.ok(), Some(7));
    });
    assert!(seen.label_sets().is_empty(), "{:#?}", seen.label_sets());
}

/// Threads racing transitions on one registry: once they stop, the gauge
/// equals the snapshot's counts (the open period is an hour: nothing
/// changes by the clock), though no snapshot set it.
#[test]
fn the_gauge_is_exact_after_threads_race_transitions() {
    let recorder = Live::new();
    let breakers: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(2)
            .open_duration(Duration::from_secs(3600)),
    )
    .name("race");
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (recorder, breakers) = (&recorder, &breakers);
            scope.spawn(move || {
                metrics::with_local_recorder(recorder, || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                        for _ in 0..3_000 {
                            x ^= x << 13;
                            x ^= x >> 7;
                            x ^= x << 17;
                            let b = breakers.get(&format!("org-{}", x % 40));
                            match (x >> 8) % 10 {
                                0 => b.force_open(),
                                1 | 2 => b.reset(),
                                3..=5 => {
                                    if let Ok(p) = b.try_acquire() {
                                        p.record(Outcome::Failure);
                                    }
                                }
                                _ => {
                                    if let Ok(p) = b.try_acquire() {
                                        p.record(Outcome::Success);
                                    }
                                }
                            }
                        }
                    });
                });
            });
        }
    });
    let gauge = recorder.gauges("race");
    let snapshots = metrics::with_local_recorder(&recorder, || breakers.snapshot());
    assert_eq!(gauge, snapshot_counts(&snapshots));
    assert_eq!(
        recorder.gauges("race"),
        gauge,
        "the snapshot had nothing to set right"
    );
    assert_eq!(gauge.values().sum::<f64>(), 40.0);
}

/// The tower layer drives the same call: its requests are recorded under
/// the policy's name like `policy.call(..)`.
#[cfg(feature = "tower")]
#[test]
fn calls_through_the_tower_layer_are_recorded_like_calls() {
    use safecall::tower::SafeCallLayer;
    use tower::{Layer, Service, ServiceExt};

    let ((), seen) = recorded(|| async {
        let mut svc = SafeCallLayer::new(policy("layer", 2)).layer(tower::service_fn(|x: u32| {
            std::future::ready(if x == 0 { Err(Failure(503)) } else { Ok(x) })
        }));
        for x in [1, 0] {
            let _ = svc.ready().await.ok().unwrap().call(x).await;
        }
    });
    assert_eq!(
        seen.outcomes("layer"),
        BTreeMap::from([
            ("ok".to_owned(), vec![1.0]),
            ("exhausted".to_owned(), vec![3.0])
        ])
    );
    assert_eq!(
        seen.events(),
        BTreeMap::from([ev("layer", "retry", 2), ev("layer", "give_up", 1)])
    );
}

#[test]
fn a_full_bulkhead_and_a_fallback_are_counted_for_the_policy() {
    use safecall::{Bulkhead, BulkheadConfig};

    let ((), seen) = recorded(|| async {
        let bulkhead =
            Bulkhead::new(BulkheadConfig::max_concurrent(1).max_wait(Duration::from_secs(2)));
        let busy = bulkhead.try_acquire().expect("a free slot");
        // Refused after queuing for max_wait: bulkhead_full, 0 attempts.
        let p = policy("bulkhead", 3);
        let refused = p.call(script(&[])).bulkhead(&bulkhead).await;
        assert!(matches!(
            refused,
            Err(Error::BulkheadFull { attempts: 0, .. })
        ));
        drop(busy);
        // A fallback serves an exhausted call: the call's outcome is still
        // exhausted; the stand-in is counted as a fallback.
        let p = policy("fallback", 1);
        let served = p.call(script(&[503, 503])).fallback(|_| Some(0)).await;
        assert_eq!(served.ok(), Some(0));
        // A fallback that declines counts nothing more.
        let declined = p.call(script(&[503, 503])).fallback(|_| None).await;
        assert!(declined.is_err());
    });
    assert_eq!(
        seen.outcomes("bulkhead"),
        BTreeMap::from([("bulkhead_full".to_owned(), vec![0.0])])
    );
    assert_eq!(
        seen.histogram(
            CALL_DURATION,
            &[("policy", "bulkhead"), ("outcome", "bulkhead_full")]
        ),
        [2.0],
        "the time queued"
    );
    assert_eq!(
        seen.outcomes("fallback"),
        BTreeMap::from([("exhausted".to_owned(), vec![2.0, 2.0])])
    );
    assert_eq!(
        seen.events(),
        BTreeMap::from([
            ev("bulkhead", "bulkhead_rejected", 1),
            ev("fallback", "retry", 2),
            ev("fallback", "give_up", 2),
            ev("fallback", "fallback", 1),
        ])
    );
}
