//! End to end: the health example's `/metrics` beside its health report, over
//! real HTTP on loopback, after the example's demo traffic drove faults
//! through its Twilio policy and per-organisation breakers.
//!
//! A test binary of its own: it installs the Prometheus recorder for the
//! whole process, as the example does. Real sockets do not mix with tokio's
//! paused clock, so it runs on the real clock and asserts no durations.
#![cfg(all(feature = "serde", feature = "metrics"))]

#[path = "../examples/health_endpoint/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use app::{CalendarTokens, Database, Services, TwilioConfig};

/// `name{labels} value` lines of a Prometheus text page, by `name{labels}`.
fn series(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_owned(), value.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn metrics_are_scraped_beside_the_health_report_after_faults() {
    let prometheus = app::install_prometheus().expect("the only recorder of this process");
    let policy = app::sms_policy().expect("policy");
    let breakers = app::sms_breakers();
    assert_eq!(app::send_demo_traffic(&policy, &breakers).await, 6);

    let registry = breakers.clone();
    let checks = app::health_checks(Services {
        database: Database::in_memory("safecall-health-metrics-test").expect("SQLite"),
        calendar: CalendarTokens::default(),
        twilio: TwilioConfig::default(),
        breakers: Arc::new(move || registry.snapshot()),
        check_timeout: Duration::from_secs(10),
        cache_for: Duration::ZERO,
    })
    .expect("checks");
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        axum::serve(listener, app::router_with_metrics(checks, prometheus)).await
    });

    let health = reqwest::get(format!("http://{addr}{}", app::HEALTH_PATH))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let report: serde_json::Value = health.json().await.expect("JSON");
    assert_eq!(report["status"], "degraded");

    let response = reqwest::get(format!("http://{addr}{}", app::METRICS_PATH))
        .await
        .expect("metrics");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"))
    );
    let text = response.text().await.expect("body");
    server.abort();
    let seen = series(&text);
    let value = |key: &str| seen.get(key).copied();

    // One call per organisation and round: six went through; org-broken's
    // first call used its three attempts and opened its breaker, its second
    // was refused; org-busy's hint was too long to wait for and cooled it
    // down, its second call was refused; org-revoked's 401 is permanent.
    for (outcome, calls, attempts) in [
        ("ok", 6.0, 6.0),
        ("exhausted", 2.0, 4.0),
        ("circuit_open", 2.0, 0.0),
        ("permanent", 2.0, 2.0),
        ("timeout", 0.0, 0.0),
        ("budget_empty", 0.0, 0.0),
    ] {
        let labels = format!("{{policy=\"twilio\",outcome=\"{outcome}\"}}");
        assert_eq!(
            value(&format!("safecall_call_attempts_count{labels}")),
            Some(calls),
            "{outcome}\n{text}"
        );
        assert_eq!(
            value(&format!("safecall_call_attempts_sum{labels}")),
            Some(attempts),
            "{outcome}"
        );
        assert_eq!(
            value(&format!("safecall_call_duration_count{labels}")),
            Some(calls),
            "{outcome}"
        );
        assert_eq!(
            value(&format!(
                "safecall_call_duration_bucket{{policy=\"twilio\",outcome=\"{outcome}\",le=\"+Inf\"}}"
            )),
            Some(calls),
            "{outcome}: buckets for histogram_quantile"
        );
    }
    for (policy, event, n) in [
        ("twilio", "retry", 2.0),
        ("twilio", "give_up", 2.0),
        ("twilio", "rejected", 2.0),
        ("twilio-orgs", "circuit_opened", 1.0),
        ("twilio-orgs", "cooled_down", 1.0),
        ("twilio-orgs", "circuit_closed", 0.0),
    ] {
        assert_eq!(
            value(&format!(
                "safecall_events{{policy=\"{policy}\",event=\"{event}\"}}"
            )),
            Some(n),
            "{policy} {event}"
        );
    }
    for (state, n) in [
        ("closed", 4.0),
        ("open", 1.0),
        ("cooling_down", 1.0),
        ("half_open", 0.0),
        ("forced_open", 0.0),
    ] {
        assert_eq!(
            value(&format!(
                "safecall_breakers{{registry=\"twilio-orgs\",state=\"{state}\"}}"
            )),
            Some(n),
            "{state}"
        );
    }
    assert!(!text.contains("org-"), "a tenant key as a label:\n{text}");

    // The example's Grafana dashboard queries series that the page has.
    let dashboard: serde_json::Value = serde_json::from_str(include_str!(
        "../examples/health_endpoint/grafana-dashboard.json"
    ))
    .expect("dashboard JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 4);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("safecall_"));
            for name in names {
                assert!(
                    text.lines().any(|l| l.starts_with(&format!("{name}{{"))),
                    "{name} (panel {}) is not on /metrics",
                    panel["title"]
                );
            }
        }
    }
}
