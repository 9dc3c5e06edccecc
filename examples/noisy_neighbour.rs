//! Noisy neighbours: one tenant floods a slow but healthy dependency with 500
//! concurrent requests while four others send their normal traffic. Without a
//! bulkhead the others queue behind the flood; with one bulkhead per tenant the
//! flood is cut to its share (the rest refused at once, a limit of this
//! client's own) and the others keep their latency.
//!
//! It runs against a local stand-in (axum on 127.0.0.1) that serves 16 requests
//! at a time, 20 ms each, like a provider with a fixed connection pool, and
//! prints the other tenants' p50/p99 latency and errors for both runs.
//!
//! ```text
//! cargo run --example noisy_neighbour
//! ```
//!
//! Each tenant gets its bulkhead from a `BulkheadRegistry`, made on first use.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use safecall::{
    Bulkhead, BulkheadConfig, BulkheadRegistry, Error, ErrorClass, RetryBudget, SafeCall,
};
use tokio::sync::Semaphore;

/// The stand-in's capacity: requests served at once, and the time each takes.
const CAPACITY: usize = 16;
const SERVICE_TIME: Duration = Duration::from_millis(20);
/// The flood, and the others' traffic.
const FLOOD: usize = 500;
const QUIET_TENANTS: usize = 4;
const QUIET_REQUESTS: usize = 5;
/// Each tenant's share of the dependency, with a bulkhead.
const PER_TENANT: u32 = 4;

async fn slow(State(pool): State<Arc<Semaphore>>) -> &'static str {
    // A provider with a fixed pool: requests beyond it wait for a slot.
    let Ok(_slot) = pool.acquire().await else {
        return "closed";
    };
    tokio::time::sleep(SERVICE_TIME).await;
    "ok"
}

#[derive(Debug)]
struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

/// What the other tenants saw in one run.
struct Seen {
    latencies: Vec<Duration>,
    errors: usize,
    flood_refused: usize,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One call, timed: through the tenant's bulkhead when there is one.
async fn one(
    client: reqwest::Client,
    url: Arc<str>,
    policy: SafeCall<HttpError>,
    bulkhead: Option<Bulkhead>,
) -> (Duration, Result<String, Error<HttpError>>) {
    let started = Instant::now();
    let op = || {
        let (client, url) = (client.clone(), Arc::clone(&url));
        async move {
            let resp = client
                .get(&*url)
                .send()
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            resp.text().await.map_err(|e| HttpError(e.to_string()))
        }
    };
    let result = match &bulkhead {
        Some(b) => policy.call(op).bulkhead(b).await,
        None => policy.call(op).await,
    };
    (started.elapsed(), result)
}

async fn run(
    client: &reqwest::Client,
    url: &Arc<str>,
    policy: &SafeCall<HttpError>,
    bulkheads: Option<&BulkheadRegistry<String>>,
) -> Seen {
    let bulkhead_of = |tenant: &str| bulkheads.map(|r| r.get(tenant));
    // The noisy tenant keeps 500 requests in flight for as long as the others
    // run (a refused one tries again 10 ms later).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| {
            let (client, url, policy) = (client.clone(), Arc::clone(url), policy.clone());
            let (bulkhead, stop) = (bulkhead_of("noisy"), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut refused = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (_, r) = one(
                        client.clone(),
                        Arc::clone(&url),
                        policy.clone(),
                        bulkhead.clone(),
                    )
                    .await;
                    if matches!(r, Err(Error::BulkheadFull { .. })) {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                refused
            })
        })
        .collect();
    // The others start once the flood is in flight.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let quiet: Vec<_> = (0..QUIET_TENANTS)
        .map(|t| {
            let (client, url, policy) = (client.clone(), Arc::clone(url), policy.clone());
            let bulkhead = bulkhead_of(&format!("tenant-{t}"));
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for _ in 0..QUIET_REQUESTS {
                    seen.push(
                        one(
                            client.clone(),
                            Arc::clone(&url),
                            policy.clone(),
                            bulkhead.clone(),
                        )
                        .await,
                    );
                }
                seen
            })
        })
        .collect();
    let mut out = Seen {
        latencies: Vec::new(),
        errors: 0,
        flood_refused: 0,
    };
    for q in quiet {
        for (latency, result) in q.await.unwrap_or_default() {
            match result {
                Ok(_) => out.latencies.push(latency),
                Err(_) => out.errors += 1,
            }
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        out.flood_refused += f.await.unwrap_or(0);
    }
    out.latencies.sort();
    out
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let pool = Arc::new(Semaphore::new(CAPACITY));
    let app = axum::Router::new()
        .route("/slow", get(slow))
        .with_state(pool);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url: Arc<str> = format!("http://{}/slow", listener.local_addr()?).into();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    // One layer retries; this one only bounds each call (a slow provider is
    // not a failing one: nothing to retry here).
    let policy: SafeCall<HttpError> = SafeCall::builder()
        .max_retries(0)
        .deadline(Duration::from_secs(10))
        .retry_budget(RetryBudget::disabled())
        .classify(|_: &HttpError| ErrorClass::Transient)
        .build()?;
    let bulkheads: BulkheadRegistry<String> =
        BulkheadRegistry::new(BulkheadConfig::max_concurrent(PER_TENANT));
    println!(
        "stand-in: {CAPACITY} requests at a time, {SERVICE_TIME:?} each; \
         one tenant sends {FLOOD} at once, {QUIET_TENANTS} others {QUIET_REQUESTS} each in turn"
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8} {:>14}",
        "the other tenants' calls", "p50", "p99", "errors", "flood refused"
    );
    for (label, map) in [
        ("without a bulkhead", None),
        ("with a bulkhead per tenant (4)", Some(&bulkheads)),
    ] {
        let seen = run(&client, &url, &policy, map).await;
        println!(
            "{label:<34} {:>10.1?} {:>10.1?} {:>8} {:>14}",
            percentile(&seen.latencies, 0.50),
            percentile(&seen.latencies, 0.99),
            seen.errors,
            seen.flood_refused,
        );
    }
    server.abort();
    Ok(())
}
