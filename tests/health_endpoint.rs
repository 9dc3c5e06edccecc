//! End to end: the example's router on a real loopback listener, requested over
//! HTTP with reqwest, for a healthy, a degraded and a critical service.
//!
//! Real sockets do not mix with tokio's paused clock, so these tests run on the
//! real clock; they assert no durations.
#![cfg(feature = "serde")]

#[path = "../examples/health_endpoint/app.rs"]
mod app;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use safecall::{BreakerSnapshot, BreakerState};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

use app::{CalendarToken, CalendarTokens, Database, Services, TwilioConfig};

const AUTH_TOKEN: &str = "tw-secret-4f1e";

/// A service whose every integration works; tests break one part at a time.
fn working_services(db_name: &str) -> Services {
    let calendar = CalendarTokens::default();
    calendar.set(Some(CalendarToken {
        access_token: SecretString::from("ya29.calendar-secret"),
        expires_at: Instant::now() + Duration::from_secs(3600),
    }));
    Services {
        database: Database::in_memory(db_name).expect("in-memory SQLite"),
        calendar,
        twilio: TwilioConfig {
            account_sid: Some("AC0123456789abcdef".to_owned()),
            auth_token: Some(SecretString::from(AUTH_TOKEN)),
        },
        breakers: Arc::new(Vec::new),
        // Generous: a loaded CI machine must not turn a slow thread start into a
        // "critical" answer.
        check_timeout: Duration::from_secs(10),
        cache_for: Duration::ZERO,
    }
}

/// Serves the example's router on an ephemeral loopback port and GETs the
/// health path once; returns the status code and the JSON body.
async fn get_health(services: Services) -> (u16, Value) {
    let checks = app::health_checks(services).expect("valid checks");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let server = tokio::spawn(async move { axum::serve(listener, app::router(checks)).await });

    let response = reqwest::get(format!("http://{addr}{}", app::HEALTH_PATH))
        .await
        .expect("request");
    let status = response.status().as_u16();
    let cache_control = response.headers().get("cache-control").cloned();
    let text = response.text().await.expect("body");
    server.abort();

    assert_eq!(
        cache_control.as_ref().map(|v| v.as_bytes()),
        Some(&b"no-store"[..])
    );
    assert!(!text.contains(AUTH_TOKEN), "a credential leaked: {text}");
    assert!(
        !text.contains("calendar-secret"),
        "a credential leaked: {text}"
    );
    (status, serde_json::from_str(&text).expect("JSON body"))
}

/// The body without `latency_ms`, which depends on the machine.
fn without_latency(mut body: Value) -> Value {
    if let Some(entries) = body["integrations"].as_array_mut() {
        for entry in entries {
            if let Some(entry) = entry.as_object_mut() {
                assert!(entry.remove("latency_ms").is_some_and(|v| v.is_u64()));
            }
        }
    }
    body
}

#[tokio::test]
async fn healthy_service_answers_200_in_the_seed_shape() {
    let (status, body) = get_health(working_services("e2e-healthy")).await;
    assert_eq!(status, 200);
    let calendar_message = body["integrations"][1]["message"].clone();
    assert!(
        calendar_message
            .as_str()
            .is_some_and(|m| m.starts_with("Google Calendar token valid for")),
        "{calendar_message}"
    );
    assert_eq!(
        without_latency(body),
        json!({
            "status": "healthy",
            "integrations": [
                {"name": "Database", "status": "healthy", "message": "SQLite connection active"},
                {"name": "Google Calendar", "status": "healthy", "message": calendar_message},
                {"name": "Twilio", "status": "healthy", "message": "Twilio credentials configured"},
                {"name": "Circuit Breakers", "status": "healthy", "message": "All circuit breakers closed"}
            ],
            "summary": {"healthy": 4, "degraded": 0, "critical": 0}
        })
    );
}

#[tokio::test]
async fn open_breaker_and_missing_calendar_answer_200_degraded() {
    let mut services = working_services("e2e-degraded");
    services.calendar.set(None);
    services.twilio.auth_token = None;
    let asked = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&asked);
    services.breakers = Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut open = BreakerSnapshot::new("org-46cf".to_owned(), BreakerState::Open);
        open.consecutive_failures = 5;
        open.retry_in = Some(Duration::from_secs(12));
        vec![open]
    });
    let (status, body) = get_health(services).await;
    assert_eq!(status, 200);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(body["status"], "degraded");
    assert_eq!(
        body["summary"],
        json!({"healthy": 1, "degraded": 3, "critical": 0})
    );

    let calendar = &body["integrations"][1];
    assert_eq!(calendar["status"], "degraded");
    assert_eq!(calendar["message"], "No authenticated user or org_id");

    let twilio = &body["integrations"][2];
    assert_eq!(twilio["status"], "degraded");
    assert_eq!(twilio["message"], "TWILIO_AUTH_TOKEN is not set");

    let breakers = &body["integrations"][3];
    assert_eq!(breakers["status"], "degraded");
    assert_eq!(
        breakers["message"],
        "1 of 1 circuit breaker not closed: org-46cf (open after 5 consecutive failures, next probe in 12 s)"
    );
    assert_eq!(
        breakers["recommendation"],
        "Twilio calls for org-46cf are failing and its circuit breaker is refusing them; \
         check its Twilio credentials and Twilio's status; next probe in 12 s."
    );
}

#[tokio::test]
async fn missing_database_answers_503_critical() {
    let mut services = working_services("e2e-critical");
    // Opened without the create flag: a missing file is an error, as in production.
    let dir = std::env::temp_dir().join(format!("safecall-no-such-dir-{}", std::process::id()));
    services.database = Database::at(format!("file:{}/app.sqlite", dir.display()));
    let (status, body) = get_health(services).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "critical");
    assert_eq!(
        body["summary"],
        json!({"healthy": 3, "degraded": 0, "critical": 1})
    );
    let database = &body["integrations"][0];
    assert_eq!(database["status"], "critical");
    assert_eq!(
        database["message"],
        "cannot query the SQLite database (CannotOpen)"
    );
    assert!(database["recommendation"].is_string());
}

#[test]
fn credentials_never_show_in_debug() {
    let services = working_services("debug-redacted");
    let shown = format!("{:?} {:?}", services.twilio, services.calendar);
    assert!(!shown.contains(AUTH_TOKEN), "{shown}");
    assert!(!shown.contains("calendar-secret"), "{shown}");
    // Redacted, not missing: the values are there, as `secrecy` shows them.
    assert_eq!(shown.matches("REDACTED").count(), 2, "{shown}");
}
