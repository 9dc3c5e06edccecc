//! A health endpoint in the seed service's shape: `GET /api/health/integrations`
//! answers with a JSON report of each integration (database, Google Calendar,
//! Twilio, the per-tenant circuit breakers), HTTP 200 when healthy or degraded and
//! 503 when critical, with a plain-words recommendation for anything wrong.
//! Beside it, `GET /metrics` serves safecall's metrics in Prometheus' text format
//! (feature `metrics`, through `metrics-exporter-prometheus`): call outcomes,
//! retries and the breakers by state, with no tenant label.
//!
//! Run it:
//!
//! ```text
//! cargo run --example health_endpoint --features serde,metrics -- --once   # print both, exit
//! PORT=8080 cargo run --example health_endpoint --features serde,metrics   # serve until Ctrl-C
//! curl -i http://127.0.0.1:8080/api/health/integrations
//! curl http://127.0.0.1:8080/metrics
//! ```
//!
//! At start it sends a few SMS through the Twilio client's policy to a
//! stand-in with faults (one organisation down, one rate-limited, one with
//! revoked credentials), so both pages have something to show. A Grafana
//! dashboard for these metrics is in `examples/health_endpoint/grafana-dashboard.json`.
//!
//! It reads `TWILIO_ACCOUNT_SID`, `TWILIO_AUTH_TOKEN` and `GOOGLE_CALENDAR_TOKEN`
//! from the environment (and never prints them); unset, those integrations show
//! as degraded. The database is a real SQLite database, in memory.
//!
//! Copying it into a real service, change:
//! - `Database`: ping your pool (`sqlx::query("SELECT 1")`), not a fresh SQLite
//!   connection;
//! - `CalendarTokens`: read the tokens your OAuth refresher keeps, per tenant;
//! - `TwilioConfig`: load credentials from your secret store, kept in
//!   `secrecy::SecretString` as here;
//! - the breaker source: `move || registry.snapshot()` on the registry your
//!   Twilio client calls through (the snapshot also brings the breakers'
//!   gauge up to date with the clock);
//! - the demo traffic: your clients' calls record the metrics; install the
//!   recorder before building their policies;
//! - which checks are critical: only what this instance cannot serve without.

#[path = "health_endpoint/app.rs"]
mod app;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::time::Instant;

use app::{CalendarToken, CalendarTokens, Database, Services, TwilioConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let once = std::env::args().skip(1).any(|arg| arg == "--once");

    // The recorder first: policies register their series when they are built.
    let prometheus = app::install_prometheus()?;

    // In a service this registry is the one the Twilio client calls through,
    // so the endpoint shows the breakers that guard real traffic.
    let policy = app::sms_policy()?;
    let registry = app::sms_breakers();
    let sent = app::send_demo_traffic(&policy, &registry).await;
    eprintln!(
        "demo traffic: {sent} of {} SMS sent",
        2 * app::DEMO_ORGS.len()
    );

    let calendar = CalendarTokens::default();
    if let Some(token) = std::env::var("GOOGLE_CALENDAR_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        // A real service knows the expiry from the OAuth response.
        calendar.set(Some(CalendarToken {
            access_token: SecretString::from(token),
            expires_at: Instant::now() + Duration::from_secs(3600),
        }));
    }

    let checks = app::health_checks(Services {
        database: Database::in_memory("safecall-health-example")?,
        calendar,
        twilio: TwilioConfig::from_env(),
        breakers: Arc::new(move || registry.snapshot()),
        check_timeout: Duration::from_millis(400),
        cache_for: Duration::from_secs(2),
    })?;

    if once {
        let report = checks.run().await;
        println!("{}", serde_json::to_string_pretty(&report)?);
        eprintln!("status {} (HTTP {})", report.status, report.http_status());
        println!("\n# GET {}\n{}", app::METRICS_PATH, prometheus.render());
        return Ok(());
    }

    // The exporter drains its histograms when it renders; between scrapes,
    // upkeep keeps them from growing.
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port.parse()?,
        Err(_) => 0,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    println!(
        "serving http://{addr}{} and http://{addr}{} (Ctrl-C to stop)",
        app::HEALTH_PATH,
        app::METRICS_PATH,
        addr = listener.local_addr()?,
    );
    axum::serve(listener, app::router_with_metrics(checks, prometheus))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
