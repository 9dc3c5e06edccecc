//! The tenant resolver: an axum middleware that finds the organisation of each
//! request's user, and provisions one for a first-time user with no setup.
//!
//! Every request's bearer token is verified first (`jsonwebtoken`, HS256:
//! signature, expiry, issuer, audience); a token that fails gets 401 and
//! nothing is looked up or provisioned. The organisation comes from the
//! verified token's `org_id` claim when present; else from the database,
//! through `SafeCall` (busy/locked SQLite is retried, within the deadline), and
//! cached with a TTL and a size bound. A user the database has never seen is inserted, and an
//! `AFTER INSERT` trigger on `users` creates their organisation and links it,
//! in the same statement: 50 concurrent first requests make one organisation.
//! A handler behind the middleware echoes what it resolved.
//!
//! ```text
//! cargo run --example tenant_resolver
//! ```
//!
//! The demo is its own identity provider: it draws a random HS256 key at
//! start-up, signs its users' tokens with it and verifies them with it.
//!
//! Copying it into a real service, change:
//! - `auth.rs`: keep `TokenVerifier`, built from your identity provider's key
//!   (an HS256 secret from your secret store, or RS256/ES256 keys from its
//!   JWKS with `Algorithm::RS256` ...), issuer and audience; delete
//!   `DemoIssuer` and the random key: your users' tokens come from the
//!   provider;
//! - `Database`: your database and pool (sqlx/Postgres: the same trigger, and
//!   `INSERT .. ON CONFLICT DO NOTHING`); classify its "busy"/serialisation
//!   errors as transient;
//! - the cache TTL (how long a moved user may keep their old organisation), its
//!   capacity, and the timings (`deadline` ~2 s for a lookup on the request
//!   path; keep the database's busy timeout well below the attempt timeout);
//! - the path: a file under your data directory, not the temp directory.

#[path = "tenant_resolver/app.rs"]
mod app;
#[path = "tenant_resolver/auth.rs"]
mod auth;
#[path = "tenant_resolver/cache.rs"]
mod cache;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use app::{AppState, Database, Resolver, ResolverConfig};
use auth::{Claims, DEMO_AUDIENCE, DEMO_ISSUER, DemoIssuer, SigningKey, TokenVerifier};

fn claims(sub: &str, email: Option<&str>, org_id: Option<&str>) -> Claims {
    Claims {
        sub: sub.to_owned(),
        email: email.map(str::to_owned),
        org_id: org_id.map(str::to_owned),
    }
}

async fn me(http: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http.get(format!("{base}/api/me"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (0, json!({ "error": e.to_string() })),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let db = Arc::new(Database::temporary("tenant-resolver-example")?);
    // An existing user, provisioned earlier (by the same trigger).
    let (alice_org, _) = db.org_for_user("auth0|alice", Some("alice@example.com"))?;
    let resolver = Arc::new(Resolver::new(Arc::clone(&db), &ResolverConfig::default())?);

    // The demo's identity provider and the service's verifier share a key
    // drawn at start-up; a real service gets its key from the provider.
    let key = SigningKey::generate()?;
    let issuer = DemoIssuer::new(&key, Duration::from_secs(600))?;
    let verifier = Arc::new(TokenVerifier::new(&key, DEMO_ISSUER, DEMO_AUDIENCE)?);
    // The right key, the wrong claims: for the refusals at the end.
    let other_issuer = DemoIssuer::new(&key, Duration::from_secs(600))?
        .with_issuer("https://auth.evil.example.com/");
    let other_audience = DemoIssuer::new(&key, Duration::from_secs(600))?
        .with_audience("https://api.example.com/billing");
    drop(key);

    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let state = AppState {
        verifier,
        resolver: Arc::clone(&resolver),
    };
    let server = tokio::spawn(axum::serve(listener, app::router(state)).into_future());
    let http = reqwest::Client::new();
    println!("serving {base}/api/me; alice's organisation is {alice_org}\n");

    let with_org = issuer.issue(&claims("auth0|bob", None, Some("org-from-claims")))?;
    let (status, body) = me(&http, &base, Some(&with_org)).await;
    println!("1. token with an org_id claim       → {status} {body}");

    let alice = issuer.issue(&claims("auth0|alice", Some("alice@example.com"), None))?;
    let (status, body) = me(&http, &base, Some(&alice)).await;
    println!("2. alice, no org claim              → {status} {body}");
    let (status, body) = me(&http, &base, Some(&alice)).await;
    println!("   alice again                      → {status} {body}");

    let before = db.organisations()?;
    let newbie = issuer.issue(&claims("auth0|newbie", Some("newbie@example.com"), None))?;
    let requests = (0..50).map(|_| me(&http, &base, Some(&newbie)));
    let answers = futures::future::join_all(requests).await;
    let mut orgs = BTreeMap::<String, u32>::new();
    let mut sources = BTreeMap::<String, u32>::new();
    for (status, body) in &answers {
        *orgs
            .entry(format!(
                "{status} {}",
                body["org_id"].as_str().unwrap_or("?")
            ))
            .or_default() += 1;
        *sources
            .entry(body["source"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    println!("3. 50 concurrent first requests for a new user:");
    println!("   answers: {orgs:?}");
    println!("   sources: {sources:?}");
    println!(
        "   organisations in the database: {before} before, {} after",
        db.organisations()?
    );

    let (status, body) = me(&http, &base, None).await;
    println!("4. no token                         → {status} {body}");

    // Tokens that must not get in, each for a user nobody has seen, claiming
    // an organisation: none of them may reach the database.
    let mallory = claims(
        "auth0|mallory",
        Some("mallory@example.com"),
        Some("org-acme"),
    );
    let forger = DemoIssuer::new(&SigningKey::generate()?, Duration::from_secs(600))?;
    let an_hour_ago = jsonwebtoken::get_current_timestamp().saturating_sub(3600);
    let refused = [
        ("unsigned (alg: none)", issuer.unsigned(&mallory)?),
        ("signed with another key", forger.issue(&mallory)?),
        ("expired", issuer.issue_at(&mallory, an_hour_ago)?),
        ("from another issuer", other_issuer.issue(&mallory)?),
        ("for another audience", other_audience.issue(&mallory)?),
    ];
    let (orgs_before, lookups_before) = (db.organisations()?, db.lookups());
    println!("5. tokens that do not verify:");
    for (what, token) in &refused {
        let (status, body) = me(&http, &base, Some(token)).await;
        println!("   {what:<31} → {status} {body}");
    }
    println!(
        "   organisations {orgs_before} → {}, database lookups {lookups_before} → {}",
        db.organisations()?,
        db.lookups()
    );

    println!(
        "\ndatabase lookups: {} (the rest came from the claims or the cache)",
        db.lookups()
    );
    server.abort();
    Ok(())
}
