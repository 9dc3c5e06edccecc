//! The health endpoint's building blocks: the service's dependencies, their
//! checks, and the axum router. `main` (in `health_endpoint.rs`) wires them to
//! the real environment; `tests/health_endpoint.rs` wires them to test doubles
//! and requests the router over real HTTP.
// Shared with the end-to-end test, which uses only some of it.
#![allow(dead_code)]

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use rusqlite::{Connection, OpenFlags};
use safecall::health::{BreakerCheck, Check, CheckError, CheckOutcome, HealthChecks};
use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, BreakerSnapshot, ConfigError, ErrorClass, Jitter,
    SafeCall,
};
use secrecy::SecretString;
use tokio::time::Instant;

/// The path the seed service serves its report on.
pub const HEALTH_PATH: &str = "/api/health/integrations";

/// Where Prometheus scrapes safecall's metrics (feature `metrics`).
pub const METRICS_PATH: &str = "/metrics";

/// The service's SQLite database, reached by URI. Each check opens a fresh
/// connection and runs `SELECT 1`, so it sees what a new request would.
#[derive(Clone)]
pub struct Database {
    uri: String,
    /// Keeps a shared in-memory database alive between checks.
    _keeper: Option<Arc<Mutex<Connection>>>,
}

impl Database {
    /// A shared in-memory database named `name`, alive as long as this value.
    pub fn in_memory(name: &str) -> rusqlite::Result<Self> {
        let uri = format!("file:{name}?mode=memory&cache=shared");
        let keeper = Connection::open_with_flags(&uri, flags() | OpenFlags::SQLITE_OPEN_CREATE)?;
        Ok(Self {
            uri,
            _keeper: Some(Arc::new(Mutex::new(keeper))),
        })
    }

    /// An existing database at `uri` (`file:/var/lib/app/db.sqlite`); it is not
    /// created if it is missing.
    pub fn at(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            _keeper: None,
        }
    }

    /// Opens a connection and runs `SELECT 1`, on a blocking thread: SQLite is
    /// a synchronous library, and a check must not block the runtime.
    pub async fn ping(&self) -> Result<(), CheckError> {
        let uri = self.uri.clone();
        let result = tokio::task::spawn_blocking(move || {
            let conn = Connection::open_with_flags(&uri, flags())?;
            conn.query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
        })
        .await;
        match result {
            Ok(Ok(1)) => Ok(()),
            Ok(Ok(other)) => Err(CheckError::new(format!("SELECT 1 returned {other}"))),
            // The SQLite error code names the problem without echoing the
            // connection string.
            Ok(Err(rusqlite::Error::SqliteFailure(e, _))) => Err(CheckError::new(format!(
                "cannot query the SQLite database ({:?})",
                e.code
            ))
            .recommend(
                "Check that the database file exists and that the service may read and write it.",
            )),
            Ok(Err(_)) => Err(CheckError::new("cannot query the SQLite database")),
            Err(_join) => Err(CheckError::new("the database check's thread failed")),
        }
    }
}

fn flags() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX
}

/// A linked Google Calendar's OAuth access token and when it expires. The
/// token is a [`SecretString`]: `Debug` redacts it, and only the code that
/// calls Google would `expose_secret()` it.
#[derive(Clone, Debug)]
pub struct CalendarToken {
    pub access_token: SecretString,
    pub expires_at: Instant,
}

/// Where the calendar token lives; a token refresher would update it.
#[derive(Clone, Debug, Default)]
pub struct CalendarTokens {
    current: Arc<RwLock<Option<CalendarToken>>>,
}

impl CalendarTokens {
    pub fn set(&self, token: Option<CalendarToken>) {
        match self.current.write() {
            Ok(mut current) => *current = token,
            Err(poisoned) => *poisoned.into_inner() = token,
        }
    }

    fn expires_at(&self) -> Option<Instant> {
        let current = match self.current.read() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        current.as_ref().map(|token| token.expires_at)
    }

    /// Healthy while a token is linked and valid; degraded otherwise (the
    /// service still takes calls, it just cannot book them).
    pub fn check(&self) -> Result<CheckOutcome, CheckError> {
        let Some(expires_at) = self.expires_at() else {
            return Ok(
                CheckOutcome::degraded("No authenticated user or org_id").recommend(
                    "Link a Google Calendar account for this organisation (OAuth consent screen).",
                ),
            );
        };
        let now = Instant::now();
        if expires_at <= now {
            let ago = now - expires_at;
            return Ok(CheckOutcome::degraded(format!(
                "Google Calendar token expired {} ago",
                minutes(ago)
            ))
            .recommend(
                "The token refresher is not renewing it: check the refresh token and the OAuth client's credentials.",
            ));
        }
        Ok(CheckOutcome::healthy(format!(
            "Google Calendar token valid for {}",
            minutes(expires_at - now)
        )))
    }
}

fn minutes(d: Duration) -> String {
    match d.as_secs().div_ceil(60) {
        1 => "1 min".to_owned(),
        n => format!("{n} min"),
    }
}

/// Twilio credentials, read from the environment. The values are never shown:
/// the check reports only whether they are there, and the auth token is a
/// [`SecretString`], so `Debug` redacts it.
#[derive(Clone, Debug, Default)]
pub struct TwilioConfig {
    pub account_sid: Option<String>,
    pub auth_token: Option<SecretString>,
}

impl TwilioConfig {
    /// Reads `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN`; empty counts as unset.
    pub fn from_env() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            account_sid: var("TWILIO_ACCOUNT_SID"),
            auth_token: var("TWILIO_AUTH_TOKEN").map(SecretString::from),
        }
    }

    pub fn check(&self) -> Result<CheckOutcome, CheckError> {
        let missing: Vec<&str> = [
            ("TWILIO_ACCOUNT_SID", self.account_sid.is_none()),
            ("TWILIO_AUTH_TOKEN", self.auth_token.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, missing)| missing.then_some(name))
        .collect();
        if !missing.is_empty() {
            let verb = if missing.len() == 1 { "is" } else { "are" };
            return Err(CheckError::new(format!("{} {verb} not set", missing.join(" and ")))
                .recommend(format!(
                    "Set {} in the service's environment and restart it; SMS and voice calls fail until then.",
                    missing.join(" and ")
                )));
        }
        if self
            .account_sid
            .as_deref()
            .is_some_and(|sid| !sid.starts_with("AC"))
        {
            return Err(
                CheckError::new("TWILIO_ACCOUNT_SID does not look like an account SID")
                    .recommend("Use the Account SID from the Twilio console (it starts with AC)."),
            );
        }
        Ok(CheckOutcome::healthy("Twilio credentials configured"))
    }
}

/// Returns the breakers' snapshots (usually `move || registry.snapshot()`).
pub type BreakerSource = Arc<dyn Fn() -> Vec<BreakerSnapshot<String>> + Send + Sync>;

/// Everything the health endpoint looks at.
pub struct Services {
    pub database: Database,
    pub calendar: CalendarTokens,
    pub twilio: TwilioConfig,
    /// The per-tenant breakers of the Twilio client.
    pub breakers: BreakerSource,
    /// Each check's timeout. The seed answers within 500 ms, so 400 ms in
    /// production.
    pub check_timeout: Duration,
    /// How long a report is served again (a load balancer may probe often).
    pub cache_for: Duration,
}

/// The checks: the database is critical (no database, no service: 503), the
/// others are not (a missing credential is the same on every instance, so
/// taking this one out of rotation would not help).
pub fn health_checks(services: Services) -> Result<HealthChecks, ConfigError> {
    let Services {
        database,
        calendar,
        twilio,
        breakers,
        check_timeout,
        cache_for,
    } = services;
    HealthChecks::builder()
        .check(
            Check::critical("Database", move || {
                let database = database.clone();
                async move {
                    database.ping().await?;
                    Ok(CheckOutcome::healthy("SQLite connection active"))
                }
            })
            .timeout(check_timeout),
        )
        .check(
            Check::non_critical("Google Calendar", move || {
                std::future::ready(calendar.check())
            })
            .timeout(check_timeout),
        )
        .check(
            Check::non_critical("Twilio", move || std::future::ready(twilio.check()))
                .timeout(check_timeout),
        )
        .check(BreakerCheck::new("Circuit Breakers", move || breakers()).dependency("Twilio"))
        .cache_for(cache_for)
        .build()
}

/// `GET /api/health/integrations`: the report as JSON, 200 when healthy or
/// degraded, 503 when critical.
pub fn router(checks: HealthChecks) -> Router {
    Router::new()
        .route(HEALTH_PATH, get(health))
        .with_state(checks)
}

async fn health(State(checks): State<HealthChecks>) -> impl IntoResponse {
    let report = checks.run().await;
    let status =
        StatusCode::from_u16(report.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(report),
    )
}

/// Installs the Prometheus recorder for the whole process, before any policy
/// is built (a policy registers its series when it is built). Durations get
/// buckets from 5 ms to 60 s, attempts one bucket per count, so Grafana's
/// `histogram_quantile` works (`examples/health_endpoint/grafana-dashboard.json`).
pub fn install_prometheus() -> Result<PrometheusHandle, BuildError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("safecall.call.duration".to_owned()),
            &[
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("safecall.call.attempts".to_owned()),
            &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0],
        )?
        .install_recorder()
}

/// The health endpoint and, beside it, `GET /metrics` in Prometheus' text
/// format.
pub fn router_with_metrics(checks: HealthChecks, prometheus: PrometheusHandle) -> Router {
    router(checks).route(
        METRICS_PATH,
        get(move || {
            let text = prometheus.render();
            async move { ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}

/// A Twilio error, as the SMS client sees it.
#[derive(Debug, Clone)]
pub struct SmsError {
    pub status: u16,
    pub retry_after: Option<Duration>,
}

/// The SMS client's policy: named `twilio` in the metrics. Short waits, so
/// the demo traffic is over in a moment.
pub fn sms_policy() -> Result<SafeCall<SmsError>, ConfigError> {
    SafeCall::builder()
        .name("twilio")
        .max_retries(2)
        .backoff(Backoff::constant(Duration::from_millis(10)).jitter(Jitter::None))
        .max_retry_after(Duration::from_secs(1))
        .classify(|e: &SmsError| match e.status {
            429 => ErrorClass::RetryAfter(e.retry_after.unwrap_or(Duration::from_secs(1))),
            500..=599 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        })
        .build()
}

/// The per-organisation breakers of the SMS client: `twilio-orgs` in the
/// metrics, where no organisation is a label.
pub fn sms_breakers() -> BreakerRegistry<String> {
    BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(30)),
    )
    .name("twilio-orgs")
}

/// A stand-in for Twilio with faults per organisation: `org-broken` is down
/// (503), `org-busy` is rate-limited for two minutes (429), `org-revoked`'s
/// credentials were revoked (401); the others work.
pub async fn stand_in_twilio(org: &str) -> Result<(), SmsError> {
    tokio::task::yield_now().await;
    match org {
        "org-broken" => Err(SmsError {
            status: 503,
            retry_after: None,
        }),
        "org-busy" => Err(SmsError {
            status: 429,
            retry_after: Some(Duration::from_secs(120)),
        }),
        "org-revoked" => Err(SmsError {
            status: 401,
            retry_after: None,
        }),
        _ => Ok(()),
    }
}

/// The organisations of the demo traffic.
pub const DEMO_ORGS: [&str; 6] = [
    "org-a",
    "org-b",
    "org-c",
    "org-broken",
    "org-busy",
    "org-revoked",
];

/// Sends two SMS per demo organisation through the policy and its breaker,
/// against the stand-in: what a service's own traffic would record. Returns
/// how many sends went through.
pub async fn send_demo_traffic(
    policy: &SafeCall<SmsError>,
    breakers: &BreakerRegistry<String>,
) -> usize {
    let mut sent = 0;
    for _ in 0..2 {
        for org in DEMO_ORGS {
            let breaker = breakers.get(org);
            if policy
                .call(|| stand_in_twilio(org))
                .breaker(&breaker)
                .await
                .is_ok()
            {
                sent += 1;
            }
        }
    }
    sent
}
