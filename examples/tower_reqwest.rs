//! A `reqwest::Client` as a tower service behind `SafeCallLayer`: retries with
//! backoff, 503s and 429s classified from the responses (with `Retry-After`), and
//! a circuit breaker per tenant keyed from the `X-Tenant` header.
//!
//! It runs against a local stand-in for a calendar API (axum on 127.0.0.1) that
//! injects one fault per tenant, and prints what each request went through.
//!
//! ```text
//! cargo run --example tower_reqwest --features tower
//! RUST_LOG=safecall=debug cargo run --example tower_reqwest --features tower   # every retry
//! ```
//!
//! Copying it into a real service, change:
//! - the base URL (and give reqwest a TLS feature, e.g. `rustls-tls`, for https);
//! - the tokens: from your secret store, sent in a header marked sensitive (as
//!   here) and never logged; keep secrets out of URLs, which reqwest's errors
//!   print;
//! - the timings, scaled down here: backoff from ~1 s, the breaker's
//!   `open_duration` 30 s (kept), the attempt timeout and deadline to your SLO;
//! - the stand-in server and its faults: delete them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use safecall::tower::{SafeCallLayer, retry_after_of};
use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, ErrorClass, Jitter, SafeCall, classify_http_status,
};
use tower::{Service, ServiceBuilder, ServiceExt};

/// The header that names the tenant, and the breaker's key.
const TENANT: &str = "x-tenant";

/// One tenant's injected fault, used up request by request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answers every request.
    None,
    /// The next `n` requests get a 503.
    Unavailable(u32),
    /// The next request gets a 429 with `Retry-After: secs`.
    RateLimited { secs: u64 },
    /// Every request gets a 503: an outage.
    Down,
    /// Every request gets a 401: the token was revoked.
    Revoked,
}

#[derive(Debug, Default)]
struct StandIn {
    faults: Mutex<HashMap<String, Fault>>,
    hits: Mutex<HashMap<String, u32>>,
}

impl StandIn {
    fn hits(&self, tenant: &str) -> u32 {
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        hits.get(tenant).copied().unwrap_or(0)
    }
}

/// `GET /v1/events`: the stand-in's one endpoint.
async fn events(State(state): State<Arc<StandIn>>, headers: HeaderMap) -> Response {
    let tenant = headers
        .get(TENANT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if headers.get("authorization").is_none() {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    *state
        .hits
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(tenant.clone())
        .or_default() += 1;
    let mut faults = state.faults.lock().unwrap_or_else(PoisonError::into_inner);
    let fault = faults.get(&tenant).copied().unwrap_or(Fault::None);
    match fault {
        Fault::None => (StatusCode::OK, "[\"standup 09:00\"]").into_response(),
        Fault::Unavailable(n) => {
            let next = if n > 1 {
                Fault::Unavailable(n - 1)
            } else {
                Fault::None
            };
            faults.insert(tenant, next);
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Fault::RateLimited { secs } => {
            faults.insert(tenant, Fault::None);
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", secs.to_string())],
            )
                .into_response()
        }
        Fault::Down => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Fault::Revoked => StatusCode::UNAUTHORIZED.into_response(),
    }
}

/// A 4xx or 5xx response stands for a failure of its status's class, with the
/// server's `Retry-After` as the floor of the wait.
fn classify_response(res: &reqwest::Response) -> Option<ErrorClass> {
    let status = res.status().as_u16();
    (status >= 400).then(|| classify_http_status(status, retry_after_of(res.headers())))
}

/// The request's tenant: the breaker's key. A request without one shares the
/// `unknown` breaker.
fn tenant_of(req: &reqwest::Request) -> String {
    req.headers()
        .get(TENANT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    // The stand-in, on an ephemeral loopback port.
    let stand_in = Arc::new(StandIn::default());
    let tenants = [
        ("acme", Fault::None),
        ("globex", Fault::Unavailable(2)),
        ("hooli", Fault::RateLimited { secs: 1 }),
        ("initech", Fault::Down),
        ("umbrella", Fault::Revoked),
    ];
    {
        let mut faults = stand_in
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (tenant, fault) in tenants {
            faults.insert(tenant.to_owned(), fault);
        }
    }
    let app = axum::Router::new()
        .route("/v1/events", get(events))
        .with_state(Arc::clone(&stand_in));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    println!("stand-in calendar API on {base}\n");

    // The policy: 3 retries, jittered exponential backoff from 50 ms, a server's
    // hint honoured up to 5 s, 2 s per attempt, 10 s for the whole call.
    let policy: SafeCall<reqwest::Error> = SafeCall::builder()
        .max_retries(3)
        .backoff(
            Backoff::exponential(Duration::from_millis(50))
                .max_delay(Duration::from_secs(2))
                .jitter(Jitter::Full),
        )
        .max_retry_after(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(10))
        .on_retry(|e| {
            let what = if e.value_classified {
                "a failure response"
            } else {
                "a transport error"
            };
            println!(
                "    attempt {} got {what} ({:?}); retrying in {:.0?}",
                e.attempt, e.class, e.delay
            );
        })
        .build()?;
    // A breaker per tenant: 3 failed attempts in a row open it for 30 s.
    let breakers: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(30)),
    );
    let layer = SafeCallLayer::new(policy)
        .breakers(breakers, tenant_of)
        .classify_response(classify_response)
        .clone_request(reqwest::Request::try_clone);

    // reqwest's own timeouts too: an attempt never hangs on a dead peer.
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(client.clone());

    for (tenant, fault) in tenants {
        println!("{tenant} (stand-in fault: {fault:?})");
        for n in 1..=3 {
            let mut token =
                reqwest::header::HeaderValue::from_str(&format!("Bearer demo-token-{tenant}"))?;
            token.set_sensitive(true); // never printed by Debug, never logged
            let req = client
                .get(format!("{base}/v1/events"))
                .header(TENANT, tenant)
                .header(reqwest::header::AUTHORIZATION, token)
                .build()?;
            let before = stand_in.hits(tenant);
            let started = Instant::now();
            let out = svc.ready().await?.call(req).await;
            let hits = stand_in.hits(tenant) - before;
            let took = started.elapsed();
            match out {
                Ok(res) => println!(
                    "  request {n}: {} after {hits} request(s) to the server, {took:.0?}",
                    res.status()
                ),
                Err(e) => {
                    println!("  request {n}: {e} ({hits} request(s) to the server, {took:.0?})")
                }
            }
        }
    }

    println!("\nbreakers:");
    let mut snapshots = layer.registry().snapshot();
    snapshots.sort_by(|a, b| a.key.cmp(&b.key));
    for s in snapshots {
        println!(
            "  {:<10} {:?}, {} failure(s) in a row{}",
            s.key,
            s.state,
            s.consecutive_failures,
            s.retry_in
                .map(|d| format!(", probe in {d:.0?}"))
                .unwrap_or_default()
        );
    }
    server.abort();
    Ok(())
}
