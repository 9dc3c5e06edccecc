//! The core's side of a fleet, with an in-process sync that records what it
//! is handed (the Redis implementation is tested in `safecall-redis/tests`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use safecall::fleet::{
    HoldKind, LocalEvent, RemoteHold, ReplicaId, StateSync, SyncStatus, SyncTarget,
};
use safecall::{
    BreakerConfig, BreakerMode, BreakerRegistry, BreakerState, Error, ErrorClass, HealthChecks,
    HealthStatus, Outcome, RefusalCause, SafeCall, TransitionCause,
};

const S: Duration = Duration::from_secs(1);
const PEER: ReplicaId = ReplicaId::new(0xbeef);

#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<(u64, LocalEvent)>>>,
    target: Arc<Mutex<Option<SyncTarget<u64>>>>,
    status: Arc<Mutex<SyncStatus>>,
}

impl StateSync<u64> for Recorder {
    fn attach(&self, target: SyncTarget<u64>) {
        *self.target.lock().unwrap() = Some(target);
    }
    fn publish(&self, key: &u64, event: &LocalEvent) {
        self.events.lock().unwrap().push((*key, *event));
    }
    fn status(&self) -> SyncStatus {
        self.status.lock().unwrap().clone()
    }
    fn max_remote_hold(&self) -> Duration {
        S * 60
    }
}

impl Recorder {
    fn take(&self) -> Vec<(u64, LocalEvent)> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
    fn target(&self) -> SyncTarget<u64> {
        self.target.lock().unwrap().clone().expect("attached")
    }
}

fn synced(config: BreakerConfig) -> (BreakerRegistry<u64>, Recorder) {
    let rec = Recorder::default();
    let registry = BreakerRegistry::new(config).sync(rec.clone());
    (registry, rec)
}

#[tokio::test(start_paused = true)]
async fn the_sync_is_handed_transitions_and_cool_downs_with_the_typed_key() {
    let (registry, rec) = synced(BreakerConfig::default().consecutive_failures(1));
    // A breaker made before the sync feeds it too (one shared settings).
    registry
        .get(&7)
        .try_acquire()
        .unwrap()
        .record(Outcome::RetryAfter(S * 90));
    assert_eq!(
        rec.take(),
        [(
            7,
            LocalEvent::CooledDown {
                remaining: S * 60,
                cut_short: true
            }
        )]
    );
    registry
        .get(&8)
        .try_acquire()
        .unwrap()
        .record(Outcome::Failure);
    registry.get(&9).force_open();
    registry.get(&9).reset();
    assert_eq!(
        rec.take(),
        [
            (
                8,
                LocalEvent::Opened {
                    cause: TransitionCause::ConsecutiveFailures,
                    open_for: S * 30
                }
            ),
            (9, LocalEvent::ForcedOpen),
            (
                9,
                LocalEvent::Closed {
                    cause: TransitionCause::Reset
                }
            ),
        ]
    );
    // Successes publish nothing.
    for _ in 0..1000 {
        registry
            .get(&10)
            .try_acquire()
            .unwrap()
            .record(Outcome::Success);
    }
    assert!(rec.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_metrics_only_breaker_shares_nothing() {
    let (registry, rec) = synced(
        BreakerConfig::default()
            .consecutive_failures(1)
            .mode(BreakerMode::MetricsOnly),
    );
    registry
        .get(&1)
        .try_acquire()
        .unwrap()
        .record(Outcome::Failure);
    assert!(rec.take().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_remote_hold_on_a_new_key_refuses_its_first_call_capped_and_names_the_origin() {
    let (registry, rec) = synced(BreakerConfig::default());
    let policy: SafeCall<&'static str> = SafeCall::builder()
        .classify(|_: &&str| ErrorClass::Transient)
        .build()
        .unwrap();
    let applied = rec
        .target()
        .apply(
            &42,
            &RemoteHold::new(PEER, S * 3600, HoldKind::CoolDown { cut_short: false }),
        )
        .unwrap();
    assert!(applied.longer && applied.capped);
    assert_eq!(rec.target().keys().unwrap(), [42]);
    let breaker = registry.get(&42);
    let result: Result<(), _> = policy.call(|| async { Ok(()) }).breaker(&breaker).await;
    match result {
        Err(Error::CircuitOpen {
            cause, retry_in, ..
        }) => {
            assert_eq!(cause, RefusalCause::RemoteHold { origin: PEER });
            assert_eq!(retry_in, S * 60, "capped at max_remote_hold");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        Error::<&str>::CircuitOpen {
            retry_in: S,
            cause: RefusalCause::RemoteHold { origin: PEER },
            attempts: 0,
            last_error: None,
        }
        .to_string()
        .contains("held by replica 0000beef")
    );
    // Remote holds are not shared again.
    assert!(rec.take().is_empty());
    let snap = &registry.snapshot()[0];
    assert_eq!(snap.remote_hold, Some(PEER));
    assert_eq!(snap.state, BreakerState::Open);
    let report = HealthChecks::builder()
        .check(safecall::health::BreakerCheck::new("Breakers", {
            let r = registry.clone();
            move || r.snapshot()
        }))
        .build()
        .unwrap()
        .run()
        .await;
    let message = &report.integration("Breakers").unwrap().message;
    assert!(
        message.contains("on the word of replica 0000beef"),
        "{message}"
    );
    tokio::time::advance(S * 60).await;
    assert_eq!(breaker.state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn builder_methods_after_sync_keep_it_attached_and_the_overflow_breaker_is_never_held() {
    let (registry, rec) = synced(BreakerConfig::default());
    // Both move the state (a new shard count, then a plain setting).
    let registry = registry.max_keys(0).idle_ttl(S * 5);
    let applied = rec
        .target()
        .apply(&1, &RemoteHold::new(PEER, S * 10, HoldKind::Forced));
    assert_eq!(applied.map(|a| a.longer), Some(false), "attached, not held");
    assert_eq!(registry.overflow().state(), BreakerState::Closed);

    let registry = registry.max_keys(100);
    let applied = rec
        .target()
        .apply(&1, &RemoteHold::new(PEER, S * 10, HoldKind::Forced));
    assert_eq!(applied.map(|a| a.longer), Some(true));
    assert_eq!(registry.get(&1).state(), BreakerState::Open);
    drop(registry);
    assert!(
        !rec.target().is_attached(),
        "the target keeps no registry alive"
    );
}

#[tokio::test(start_paused = true)]
async fn the_health_report_has_a_state_sync_entry() {
    let off = BreakerRegistry::<u64>::new(BreakerConfig::default());
    let (on, rec) = synced(BreakerConfig::default());
    let checks = HealthChecks::builder()
        .check(on.sync_check())
        .build()
        .unwrap();
    *rec.status.lock().unwrap() = SyncStatus::new(true);
    let report = checks.run().await;
    let entry = report.integration("state sync").unwrap();
    assert_eq!(entry.status, HealthStatus::Healthy, "{}", entry.message);

    let mut down = SyncStatus::new(false);
    down.queue_drops = 3;
    *rec.status.lock().unwrap() = down;
    let report = checks.run().await;
    let entry = report.integration("state sync").unwrap();
    assert_eq!(entry.status, HealthStatus::Degraded);
    assert!(
        entry.message.contains("state sync degraded"),
        "{}",
        entry.message
    );
    assert!(entry.message.contains("3 dropped"), "{}", entry.message);
    assert!(entry.recommendation.is_some());

    let report = HealthChecks::builder()
        .check(off.sync_check())
        .build()
        .unwrap()
        .run()
        .await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(off.sync_status(), None);
}
