//! Health checks: status folding, timeouts, panics, breaker folding, caching and
//! the JSON shape. Every test runs on tokio's paused clock.

use std::future::pending;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safecall::health::{
    BreakerCheck, Check, CheckError, CheckOutcome, HealthChecks, HealthReport, HealthStatus,
};
use safecall::{BreakerSnapshot, BreakerState};
use tokio::time::{Instant, sleep};

/// The one place that makes breaker snapshots; with the real breakers, build
/// them from a registry instead if `BreakerSnapshot` cannot be written literally.
fn snapshot(
    key: &str,
    state: BreakerState,
    consecutive_failures: u32,
    retry_in: Option<Duration>,
) -> BreakerSnapshot<String> {
    let mut s = BreakerSnapshot::new(key.to_owned(), state);
    s.consecutive_failures = consecutive_failures;
    s.retry_in = retry_in;
    s
}

fn closed(key: &str) -> BreakerSnapshot<String> {
    snapshot(key, BreakerState::Closed, 0, None)
}

fn healthy(name: &'static str) -> Check {
    Check::non_critical(name, move || async move {
        Ok(CheckOutcome::healthy(format!("{name} ok")))
    })
}

fn failing(name: &'static str, critical: bool) -> Check {
    let check = || async { Err(CheckError::new("down")) };
    if critical {
        Check::critical(name, check)
    } else {
        Check::non_critical(name, check)
    }
}

async fn run(checks: impl IntoIterator<Item = Check>) -> HealthReport {
    let mut builder = HealthChecks::builder();
    for check in checks {
        builder = builder.check(check);
    }
    match builder.build() {
        Ok(checks) => checks.run().await,
        Err(e) => panic!("valid config refused: {e}"),
    }
}

fn statuses(report: &HealthReport) -> Vec<(&str, HealthStatus)> {
    report
        .integrations
        .iter()
        .map(|entry| (entry.name.as_str(), entry.status))
        .collect()
}

// ---- Status folding ----

#[tokio::test(start_paused = true)]
async fn all_healthy_is_healthy() {
    let report = run([healthy("A"), healthy("B")]).await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert_eq!(report.http_status(), 200);
    assert_eq!(
        (
            report.summary.healthy,
            report.summary.degraded,
            report.summary.critical
        ),
        (2, 0, 0)
    );
    assert_eq!(report.integrations[0].message, "A ok");
    assert_eq!(report.integrations[0].recommendation, None);
}

#[tokio::test(start_paused = true)]
async fn no_checks_is_healthy() {
    let report = run([]).await;
    assert_eq!(report.status, HealthStatus::Healthy);
    assert!(report.integrations.is_empty());
}

#[tokio::test(start_paused = true)]
async fn one_non_critical_down_is_degraded() {
    let report = run([healthy("A"), failing("B", false)]).await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.http_status(), 200);
    assert_eq!(
        statuses(&report),
        [("A", HealthStatus::Healthy), ("B", HealthStatus::Degraded)]
    );
    assert_eq!(report.integrations[1].message, "down");
}

#[tokio::test(start_paused = true)]
async fn one_critical_down_is_critical() {
    let report = run([healthy("A"), failing("B", false), failing("C", true)]).await;
    assert_eq!(report.status, HealthStatus::Critical);
    assert_eq!(report.http_status(), 503);
    assert_eq!(
        (
            report.summary.healthy,
            report.summary.degraded,
            report.summary.critical
        ),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn critical_check_that_is_only_degraded_degrades_the_service() {
    let check = Check::critical("Database", || async {
        Ok(CheckOutcome::degraded("replica lagging 40 s").recommend("Check the replica"))
    });
    let report = run([check]).await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.http_status(), 200);
    assert_eq!(
        report.integrations[0].recommendation.as_deref(),
        Some("Check the replica")
    );
}

#[tokio::test(start_paused = true)]
async fn check_error_recommendation_is_reported() {
    let check = Check::critical("Database", || async {
        Err(CheckError::new("cannot connect").recommend("Check the host"))
    });
    let report = run([check]).await;
    let entry = &report.integrations[0];
    assert_eq!(
        (entry.status, entry.message.as_str()),
        (HealthStatus::Critical, "cannot connect")
    );
    assert_eq!(entry.recommendation.as_deref(), Some("Check the host"));
}

#[tokio::test(start_paused = true)]
async fn question_mark_turns_a_str_into_a_check_error() {
    let check = Check::non_critical("Cache", || async {
        let reachable: Result<(), ()> = Err(());
        reachable.map_err(|()| "cache unreachable")?;
        Ok(CheckOutcome::healthy("cache ok"))
    });
    let report = run([check]).await;
    assert_eq!(report.integrations[0].message, "cache unreachable");
}

// ---- Timeouts, concurrency, panics ----

#[tokio::test(start_paused = true)]
async fn hanging_check_is_cut_at_its_timeout_and_the_report_arrives_on_time() {
    let hang = Check::critical("Hangs", pending).timeout(Duration::from_secs(2));
    let started = Instant::now();
    let report = run([healthy("A"), hang]).await;
    assert_eq!(started.elapsed(), Duration::from_secs(2));
    assert_eq!(report.checked_at, started + Duration::from_secs(2));
    let entry = &report.integrations[1];
    assert_eq!(entry.status, HealthStatus::Critical);
    assert_eq!(entry.message, "timed out after 2 s");
    assert_eq!(entry.latency, Duration::from_secs(2));
    assert!(entry.recommendation.is_some());
    assert_eq!(report.integrations[0].status, HealthStatus::Healthy);
}

#[tokio::test(start_paused = true)]
async fn timed_out_check_is_dropped() {
    struct SetOnDrop(Arc<AtomicU32>);
    impl Drop for SetOnDrop {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicU32::new(0));
    let flag = Arc::clone(&dropped);
    let hang = Check::non_critical("Hangs", move || {
        let guard = SetOnDrop(Arc::clone(&flag));
        async move {
            let _guard = guard;
            pending().await
        }
    })
    .timeout(Duration::from_millis(300));
    let report = run([hang]).await;
    assert_eq!(report.integrations[0].message, "timed out after 300 ms");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn checks_run_concurrently() {
    let slow = |name: &'static str, secs: u64| {
        Check::non_critical(name, move || async move {
            sleep(Duration::from_secs(secs)).await;
            Ok(CheckOutcome::healthy("ok"))
        })
        .timeout(Duration::from_secs(10))
    };
    let started = Instant::now();
    let report = run([slow("A", 1), slow("B", 3), slow("C", 2)]).await;
    // The slowest check, not the sum.
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(report.status, HealthStatus::Healthy);
    let latencies: Vec<_> = report.integrations.iter().map(|e| e.latency).collect();
    assert_eq!(
        latencies,
        [1, 3, 2].map(Duration::from_secs),
        "each entry keeps its own latency"
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_check_becomes_an_entry() {
    let in_future = Check::critical("Panics while polled", || async {
        sleep(Duration::from_millis(10)).await;
        panic!("secret sk_live_123 leaked into a panic");
    });
    let in_closure = Check::non_critical(
        "Panics when called",
        || -> std::future::Ready<Result<CheckOutcome, CheckError>> { panic!("boom") },
    );
    let report = run([healthy("A"), in_future, in_closure]).await;
    assert_eq!(
        statuses(&report),
        [
            ("A", HealthStatus::Healthy),
            ("Panics while polled", HealthStatus::Critical),
            ("Panics when called", HealthStatus::Degraded),
        ]
    );
    assert_eq!(report.integrations[1].message, "the health check panicked");
    // The panic's payload is not reported: it could carry anything.
    assert!(!format!("{report:?}").contains("sk_live"));
}

// ---- Breakers ----

#[tokio::test(start_paused = true)]
async fn breakers_all_closed_are_healthy() {
    let checks = HealthChecks::builder()
        .breakers("Circuit Breakers", || {
            vec![closed("org-1"), closed("org-2")]
        })
        .build()
        .map_err(|e| e.to_string());
    let report = checks.expect("valid").run().await;
    let entry = &report.integrations[0];
    assert_eq!(entry.status, HealthStatus::Healthy);
    assert_eq!(entry.message, "All circuit breakers closed");
    assert_eq!(entry.recommendation, None);
}

#[tokio::test(start_paused = true)]
async fn open_breaker_degrades_naming_its_key_and_next_probe() {
    let breakers = BreakerCheck::new("Circuit Breakers", || {
        vec![
            closed("org-1"),
            snapshot(
                "org-46cf",
                BreakerState::Open,
                5,
                Some(Duration::from_millis(11_200)),
            ),
            closed("org-2"),
        ]
    })
    .dependency("Twilio");
    let report = run([healthy("Database"), breakers.into()]).await;
    assert_eq!(report.status, HealthStatus::Degraded);
    assert_eq!(report.http_status(), 200);
    let entry = &report.integrations[1];
    assert_eq!(entry.status, HealthStatus::Degraded);
    assert_eq!(
        entry.message,
        "1 of 3 circuit breakers not closed: org-46cf (open after 5 consecutive failures, next probe in 12 s)"
    );
    assert_eq!(
        entry.recommendation.as_deref(),
        Some(
            "Twilio calls for org-46cf are failing and its circuit breaker is refusing them; \
             check its Twilio credentials and Twilio's status; next probe in 12 s."
        )
    );
}

#[tokio::test(start_paused = true)]
async fn many_open_breakers_are_listed_in_key_order_up_to_a_bound() {
    let breakers = BreakerCheck::new("Circuit Breakers", || {
        let mut all: Vec<_> = (0..15)
            .rev()
            .map(|i| {
                snapshot(
                    &format!("org-{i:02}"),
                    BreakerState::Open,
                    3,
                    Some(Duration::from_secs(30 - i)),
                )
            })
            .collect();
        all.push(snapshot("org-99", BreakerState::HalfOpen, 0, None));
        all.extend((0..4).map(|i| closed(&format!("ok-{i}"))));
        all
    })
    .max_listed(3);
    let report = run([breakers.into()]).await;
    let entry = &report.integrations[0];
    assert_eq!(entry.status, HealthStatus::Degraded);
    assert_eq!(
        entry.message,
        "16 of 20 circuit breakers not closed: \
         org-00 (open after 3 consecutive failures, next probe in 30 s), \
         org-01 (open after 3 consecutive failures, next probe in 29 s), \
         org-02 (open after 3 consecutive failures, next probe in 28 s) and 13 more"
    );
    // The soonest probe among all open breakers, not just the listed ones.
    assert_eq!(
        entry.recommendation.as_deref(),
        Some(
            "Calls for 16 keys (org-00, org-01, org-02, ...) are failing and their circuit \
             breakers are refusing them; if only a few keys are affected, check their \
             credentials; if most are, check the provider's status; a probe is running now, \
             the next in 16 s."
        )
    );
}

#[tokio::test(start_paused = true)]
async fn half_open_and_forced_open_breakers_are_described() {
    let breakers = BreakerCheck::new("Breakers", || {
        vec![
            snapshot("a", BreakerState::HalfOpen, 1, None),
            snapshot("b", BreakerState::Open, 0, None),
        ]
    });
    let report = run([breakers.into()]).await;
    assert_eq!(
        report.integrations[0].message,
        "2 of 2 circuit breakers not closed: a (half-open after 1 failure, probing now), b (open, no probe scheduled)"
    );
    let only_forced = BreakerCheck::new("Breakers", || {
        vec![snapshot("b", BreakerState::Open, 0, None)]
    });
    let report = run([only_forced.into()]).await;
    let recommendation = report.integrations[0].recommendation.clone();
    assert!(
        recommendation.as_deref().is_some_and(|r| r.ends_with(
            "no probe is scheduled (a breaker forced open stays open until it is reset)."
        )),
        "{recommendation:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn open_breakers_never_make_the_service_critical() {
    let report = run([BreakerCheck::new("Breakers", || {
        vec![snapshot(
            "a",
            BreakerState::Open,
            9,
            Some(Duration::from_secs(1)),
        )]
    })
    .into()])
    .await;
    assert_eq!(report.status, HealthStatus::Degraded);
}

#[tokio::test(start_paused = true)]
async fn breakers_come_from_a_registry() {
    let registry = Arc::new(safecall::BreakerRegistry::<String>::default());
    let source = Arc::clone(&registry);
    let checks = HealthChecks::builder()
        .breakers("Circuit Breakers", move || source.snapshot())
        .build()
        .expect("valid");
    assert_eq!(checks.run().await.status, HealthStatus::Healthy);
    registry.get("org-46cf").force_open();
    assert_eq!(checks.run().await.status, HealthStatus::Degraded);
}

// ---- Caching ----

fn counted(runs: &Arc<AtomicU32>, work: Duration) -> Check {
    let runs = Arc::clone(runs);
    Check::non_critical("Counted", move || {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            sleep(work).await;
            Ok(CheckOutcome::healthy(format!("run {n}")))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn cached_report_is_served_within_the_interval_and_refreshed_after() {
    let runs = Arc::new(AtomicU32::new(0));
    let checks = HealthChecks::builder()
        .check(counted(&runs, Duration::ZERO))
        .cache_for(Duration::from_secs(5))
        .build()
        .expect("valid");
    let first = checks.run().await;
    sleep(Duration::from_millis(4_999)).await;
    let second = checks.clone().run().await; // clones share the cache
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(second, first);
    assert_eq!(second.checked_at.elapsed(), Duration::from_millis(4_999));

    sleep(Duration::from_millis(1)).await;
    let third = checks.run().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(third.integrations[0].message, "run 2");
}

#[tokio::test(start_paused = true)]
async fn without_caching_every_run_runs_the_checks() {
    let runs = Arc::new(AtomicU32::new(0));
    let checks = HealthChecks::builder()
        .check(counted(&runs, Duration::ZERO))
        .build()
        .expect("valid");
    let _ = checks.run().await;
    let _ = checks.run().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_requests_share_one_run() {
    let runs = Arc::new(AtomicU32::new(0));
    let checks = HealthChecks::builder()
        .check(counted(&runs, Duration::from_secs(1)))
        .cache_for(Duration::from_secs(5))
        .build()
        .expect("valid");
    let started = Instant::now();
    let (a, b, c) = tokio::join!(checks.run(), checks.run(), checks.run());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    assert!(a == b && b == c);
}

#[tokio::test(start_paused = true)]
async fn cancelled_run_caches_nothing() {
    let runs = Arc::new(AtomicU32::new(0));
    let checks = HealthChecks::builder()
        .check(counted(&runs, Duration::from_secs(1)))
        .cache_for(Duration::from_secs(5))
        .build()
        .expect("valid");
    let cut = tokio::time::timeout(Duration::from_millis(500), checks.run()).await;
    assert!(cut.is_err());
    let report = checks.run().await;
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    assert_eq!(report.integrations[0].message, "run 2");
}

// ---- Configuration ----

#[test]
fn bad_configs_are_refused() {
    let err = HealthChecks::builder()
        .check(healthy("A"))
        .check(healthy("A"))
        .build()
        .expect_err("duplicate");
    assert_eq!(err.field(), "check.name");
    assert_eq!(err.rule(), "must be unique, got \"A\" twice");

    let err = HealthChecks::builder()
        .check(healthy(" "))
        .build()
        .expect_err("empty");
    assert_eq!(err.field(), "check.name");

    let err = HealthChecks::builder()
        .check(healthy("A").timeout(Duration::ZERO))
        .build()
        .expect_err("zero timeout");
    assert_eq!(err.field(), "check.timeout");
}

// ---- JSON ----

#[cfg(feature = "serde")]
#[tokio::test(start_paused = true)]
async fn report_serialises_to_the_seed_shape() {
    let checks = HealthChecks::builder()
        .check(Check::critical("Database", || async {
            Ok(CheckOutcome::healthy("PostgreSQL connection active"))
        }))
        .check(Check::non_critical("Google Calendar", || async {
            Ok(CheckOutcome::degraded("No authenticated user or org_id")
                .recommend("Link a calendar"))
        }))
        .check(Check::non_critical("Twilio", || async {
            Ok(CheckOutcome::healthy("Twilio credentials configured"))
        }))
        .breakers("Circuit Breakers", || vec![closed("org-46cf")])
        .build()
        .expect("valid");
    let report = checks.run().await;
    let json = serde_json::to_value(&report).expect("serialisable");
    let expected = serde_json::json!({
        "status": "degraded",
        "integrations": [
            {"name": "Database", "status": "healthy", "message": "PostgreSQL connection active", "latency_ms": 0},
            {"name": "Google Calendar", "status": "degraded", "message": "No authenticated user or org_id",
             "recommendation": "Link a calendar", "latency_ms": 0},
            {"name": "Twilio", "status": "healthy", "message": "Twilio credentials configured", "latency_ms": 0},
            {"name": "Circuit Breakers", "status": "healthy", "message": "All circuit breakers closed", "latency_ms": 0}
        ],
        "summary": {"healthy": 3, "degraded": 1, "critical": 0}
    });
    assert_eq!(json, expected);
}

#[cfg(feature = "serde")]
#[tokio::test(start_paused = true)]
async fn latency_serialises_in_whole_milliseconds() {
    let check = Check::non_critical("Slow", || async {
        sleep(Duration::from_millis(1_250)).await;
        Ok(CheckOutcome::healthy("ok"))
    });
    let report = run([check]).await;
    let json = serde_json::to_value(&report).expect("serialisable");
    assert_eq!(json["integrations"][0]["latency_ms"], 1_250);
    assert_eq!(json["status"], "healthy");
    assert_eq!(
        serde_json::to_value(HealthStatus::Critical).expect("serialisable"),
        "critical"
    );
}

#[tokio::test(start_paused = true)]
async fn a_tripped_registry_breaker_is_described_with_its_reason_and_next_probe() {
    use safecall::{BreakerConfig, Outcome};
    let registry = Arc::new(safecall::BreakerRegistry::<String>::new(
        BreakerConfig::default()
            .consecutive_failures(2)
            .open_duration(Duration::from_secs(30)),
    ));
    let breaker = registry.get("org-46cf");
    for _ in 0..2 {
        breaker.try_acquire().unwrap().record(Outcome::Failure);
    }
    registry.get("org-ok");
    tokio::time::advance(Duration::from_secs(18)).await;
    let source = Arc::clone(&registry);
    let checks = HealthChecks::builder()
        .breakers("Circuit Breakers", move || source.snapshot())
        .build()
        .expect("valid");
    let report = checks.run().await;
    let entry = report.integration("Circuit Breakers").expect("entry");
    assert_eq!(entry.status, HealthStatus::Degraded);
    assert_eq!(
        entry.message,
        "1 of 2 circuit breakers not closed: org-46cf (open after 2 consecutive failures, next probe in 12 s)"
    );
    let recommendation = entry.recommendation.as_deref().unwrap_or_default();
    assert!(recommendation.contains("org-46cf"), "{recommendation}");
}
