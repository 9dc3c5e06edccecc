//! The tenant resolver: an axum middleware that finds the organisation of each
//! request's user, and provisions one for a first-time user with no setup.
//!
//! The organisation comes from the token's `org_id` claim when present; else
//! from the database, through `SafeCall` (busy/locked SQLite is retried), and
//! cached with a TTL. A user the database has never seen is inserted, and an
//! `AFTER INSERT` trigger on `users` creates their organisation and links it,
//! in the same statement: 50 concurrent first requests make one organisation.
//! A handler behind the middleware echoes what it resolved.
//!
//! ```text
//! cargo run --example tenant_resolver
//! ```
//!
//! Copying it into a real service, change:
//! - `claims_from_token`: VERIFY the token (signature, issuer, audience,
//!   expiry) with your identity provider's keys, e.g. `jsonwebtoken`; this demo
//!   decodes unsigned tokens;
//! - `Database`: your database and pool (sqlx/Postgres: the same trigger, and
//!   `INSERT .. ON CONFLICT DO NOTHING`); classify its "busy"/serialisation
//!   errors as transient;
//! - the cache TTL (how long a moved user may keep their old organisation) and
//!   the timings (`deadline` ~2 s for a lookup on the request path);
//! - the path: a file under your data directory, not the temp directory.

#[path = "tenant_resolver/app.rs"]
mod app;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::net::TcpListener;

use app::{Database, Resolver, ResolverConfig, demo_token};

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

    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server =
        tokio::spawn(axum::serve(listener, app::router(Arc::clone(&resolver))).into_future());
    let http = reqwest::Client::new();
    println!("serving {base}/api/me; alice's organisation is {alice_org}\n");

    let with_org = demo_token(&json!({ "sub": "auth0|bob", "org_id": "org-from-claims" }));
    let (status, body) = me(&http, &base, Some(&with_org)).await;
    println!("1. token with an org_id claim       → {status} {body}");

    let alice = demo_token(&json!({ "sub": "auth0|alice", "email": "alice@example.com" }));
    let (status, body) = me(&http, &base, Some(&alice)).await;
    println!("2. alice, no org claim              → {status} {body}");
    let (status, body) = me(&http, &base, Some(&alice)).await;
    println!("   alice again                      → {status} {body}");

    let before = db.organisations()?;
    let newbie = demo_token(&json!({ "sub": "auth0|newbie", "email": "newbie@example.com" }));
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

    println!(
        "\ndatabase lookups: {} (the rest came from the claims or the cache)",
        db.lookups()
    );
    server.abort();
    Ok(())
}
