//! Per-tenant circuit breakers: one tenant's provider fails, its breaker opens,
//! and every other tenant keeps working.
//!
//! Run it with `cargo run --example per_tenant`. Five organisations send through
//! one shared policy and one `BreakerRegistry`; `org-broken`'s credentials are
//! revoked (its provider answers 401 to everything). Its breaker trips after three
//! counted failures and then refuses at once, without calling the provider, while
//! the others carry on. After the open period a probe is let through; the tenant
//! fixes its credentials and the breaker closes.
//!
//! To copy into a service: keep one registry per dependency (Twilio, Google
//! Calendar, ...), keyed by the tenant, created at start-up and shared (it is
//! `Send + Sync`; wrap it in an `Arc`). New tenants need no setup: a breaker is
//! created on first use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, BreakerSnapshot, Error, ErrorClass, Jitter, SafeCall,
};

#[derive(Debug)]
struct ProviderError {
    status: u16,
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "provider answered HTTP {}", self.status)
    }
}

impl std::error::Error for ProviderError {}

/// A stand-in provider: every tenant is served, except that a tenant whose
/// credentials are revoked gets 401.
struct Provider {
    revoked: AtomicBool,
    requests: AtomicU32,
}

impl Provider {
    async fn send(&self, org: &str) -> Result<&'static str, ProviderError> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(2)).await;
        if org == "org-broken" && self.revoked.load(Ordering::Relaxed) {
            Err(ProviderError { status: 401 })
        } else {
            Ok("sent")
        }
    }
}

const ORGS: [&str; 5] = ["org-46cf", "org-9a1e", "org-broken", "org-c03d", "org-f7b2"];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "safecall=info".into()),
        )
        .with_target(false)
        .init();

    let policy: SafeCall<ProviderError> = SafeCall::builder()
        .max_retries(2)
        .backoff(Backoff::exponential(Duration::from_millis(5)).jitter(Jitter::Full))
        .classify(|e: &ProviderError| match e.status {
            401 | 403 => ErrorClass::Permanent, // broken credentials: count against the tenant
            400 | 422 => ErrorClass::CallerFault,
            _ => ErrorClass::Transient,
        })
        .build()?;
    let breakers: Arc<BreakerRegistry<String>> = Arc::new(BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_duration(Duration::from_millis(500)),
    ));
    let provider = Arc::new(Provider {
        revoked: AtomicBool::new(true),
        requests: AtomicU32::new(0),
    });

    println!("Round  {}", ORGS.map(|o| format!("{o:<11}")).join(" "));
    for round in 1..=8 {
        if round == 7 {
            println!("\nBreakers after round 6:");
            print_table(&breakers.snapshot());
            println!(
                "\n       (org-broken re-links its account; 500 ms later a probe is let through)"
            );
            provider.revoked.store(false, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut row = Vec::new();
        for org in ORGS {
            let breaker = breakers.get(org);
            let result = policy.call(|| provider.send(org)).breaker(&breaker).await;
            row.push(match result {
                Ok(_) => "sent".to_owned(),
                Err(Error::CircuitOpen { .. }) => "refused".to_owned(),
                Err(e) => format!("fail/{}", e.inner().map_or(0, |e| e.status)),
            });
        }
        println!(
            "{round:>5}  {}",
            row.iter()
                .map(|c| format!("{c:<11}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }

    println!(
        "\nThe provider saw {} requests: refused calls never reach it.\n",
        provider.requests.load(Ordering::Relaxed)
    );
    println!("Breakers at the end:");
    print_table(&breakers.snapshot());
    Ok(())
}

fn print_table(snapshots: &[BreakerSnapshot<String>]) {
    let mut rows: Vec<_> = snapshots.iter().collect();
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    println!(
        "{:<12} {:<10} {:>12} {:>10} {:>12} {:>10}",
        "key", "state", "consecutive", "window", "generation", "retry in"
    );
    for s in rows {
        println!(
            "{:<12} {:<10} {:>12} {:>10} {:>12} {:>10}",
            s.key,
            format!("{:?}", s.state),
            s.consecutive_failures,
            format!("{}/{}", s.failures_in_window, s.calls_in_window),
            s.generation,
            s.retry_in
                .map_or("-".to_owned(), |d| format!("{} ms", d.as_millis())),
        );
    }
}
