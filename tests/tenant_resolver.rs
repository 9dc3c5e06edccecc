//! The `tenant_resolver` example's code, for real: its SQLite schema and
//! trigger, its resolver and cache (under tokio's paused clock), and its
//! middleware over HTTP on 127.0.0.1.
//!
//! The HTTP tests run on the real clock and assert counts and outcomes only.

#[path = "../examples/tenant_resolver/app.rs"]
mod app;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::ErrorCode;
use safecall::{ErrorClass, RetryBudget};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use app::{Claims, Database, DbError, Resolver, ResolverConfig, Source, classify_db, demo_token};

fn config(ttl: Duration) -> ResolverConfig {
    ResolverConfig {
        cache_ttl: ttl,
        backoff: Duration::ZERO,
        retry_budget: RetryBudget::disabled(),
        deadline: Duration::from_secs(60),
        ..ResolverConfig::default()
    }
}

fn claims(sub: &str) -> Claims {
    Claims {
        sub: sub.to_owned(),
        email: Some(format!("{sub}@example.com")),
        org_id: None,
    }
}

#[test]
fn the_trigger_provisions_and_links_an_organisation() {
    let db = Database::temporary("trigger").expect("db");
    let (org, created) = db
        .org_for_user("u1", Some("u1@example.com"))
        .expect("provision");
    assert!(created);
    assert!(org.starts_with("org-"), "{org}");
    let (again, created) = db.org_for_user("u1", None).expect("lookup");
    assert_eq!((again.as_str(), created), (org.as_str(), false));
    let (other, _) = db.org_for_user("u2", None).expect("provision");
    assert_ne!(other, org, "one organisation per new user");
    assert_eq!(db.organisations().expect("count"), 2);
}

#[test]
fn fifty_concurrent_first_lookups_make_one_organisation() {
    // No cache in front: fifty connections race to insert the same new user.
    let db = Arc::new(Database::temporary("race").expect("db"));
    let barrier = Arc::new(std::sync::Barrier::new(50));
    let threads: Vec<_> = (0..50)
        .map(|_| {
            let (db, barrier) = (Arc::clone(&db), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                db.org_for_user("auth0|newbie", Some("newbie@example.com"))
            })
        })
        .collect();
    let results: Vec<(String, bool)> = threads
        .into_iter()
        .map(|t| t.join().expect("thread").expect("lookup"))
        .collect();

    let orgs: HashSet<&str> = results.iter().map(|(org, _)| org.as_str()).collect();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1);
    assert_eq!(db.organisations().expect("count"), 1);
}

/// Serves the example's router on 127.0.0.1 and returns its base URL.
async fn serve(resolver: Arc<Resolver>) -> String {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(axum::serve(listener, app::router(resolver)).into_future());
    format!("http://{addr}")
}

async fn me(http: &reqwest::Client, base: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = http.get(format!("{base}/api/me"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_first_requests_get_one_organisation() {
    let db = Arc::new(Database::temporary("http-race").expect("db"));
    let resolver = Arc::new(
        Resolver::new(Arc::clone(&db), &config(Duration::from_secs(600))).expect("resolver"),
    );
    let base = serve(resolver).await;
    let http = reqwest::Client::new();
    let token = demo_token(&json!({ "sub": "auth0|newbie", "email": "newbie@example.com" }));

    let answers = futures::future::join_all((0..50).map(|_| me(&http, &base, Some(&token)))).await;

    let orgs: HashSet<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 200, "{body}");
            body["org_id"].as_str().expect("org_id").to_owned()
        })
        .collect();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    let provisioned = answers
        .iter()
        .filter(|(_, body)| body["source"] == "provisioned")
        .count();
    assert_eq!(provisioned, 1);
    assert_eq!(db.organisations().expect("count"), 1);
}

#[tokio::test]
async fn the_org_claim_wins_and_skips_the_database() {
    let db = Arc::new(Database::temporary("claims").expect("db"));
    let resolver = Arc::new(
        Resolver::new(Arc::clone(&db), &config(Duration::from_secs(600))).expect("resolver"),
    );
    let base = serve(resolver).await;
    let http = reqwest::Client::new();
    let token = demo_token(&json!({ "sub": "auth0|bob", "org_id": "org-acme" }));

    let (status, body) = me(&http, &base, Some(&token)).await;

    assert_eq!(status, 200);
    assert_eq!(body, json!({ "org_id": "org-acme", "source": "claims" }));
    assert_eq!(db.lookups(), 0);
    assert_eq!(db.organisations().expect("count"), 0);
}

#[tokio::test]
async fn no_token_is_refused() {
    let db = Arc::new(Database::temporary("no-token").expect("db"));
    let resolver =
        Arc::new(Resolver::new(db, &config(Duration::from_secs(600))).expect("resolver"));
    let base = serve(resolver).await;
    let http = reqwest::Client::new();

    assert_eq!(me(&http, &base, None).await.0, 401);
    assert_eq!(me(&http, &base, Some("not-a-jwt")).await.0, 401);
}

#[tokio::test(start_paused = true)]
async fn lookups_are_cached_for_the_ttl() {
    let db = Arc::new(Database::temporary("ttl").expect("db"));
    let resolver =
        Resolver::new(Arc::clone(&db), &config(Duration::from_secs(60))).expect("resolver");
    let alice = claims("alice");

    let first = resolver.resolve(&alice).await.expect("first");
    assert_eq!(first.source, Source::Provisioned);
    assert_eq!(db.lookups(), 1);

    tokio::time::advance(Duration::from_secs(59)).await;
    let cached = resolver.resolve(&alice).await.expect("cached");
    assert_eq!(cached.source, Source::Cache);
    assert_eq!(cached.org_id, first.org_id);
    assert_eq!(db.lookups(), 1);

    tokio::time::advance(Duration::from_secs(1)).await;
    let again = resolver.resolve(&alice).await.expect("expired");
    assert_eq!(again.source, Source::Database);
    assert_eq!(again.org_id, first.org_id);
    assert_eq!(db.lookups(), 2);
}

#[tokio::test]
async fn a_broken_database_is_not_retried() {
    let db = Arc::new(Database::temporary("broken").expect("db"));
    rusqlite::Connection::open(db.path())
        .and_then(|c| c.execute_batch("DROP TABLE users"))
        .expect("break it");
    let resolver =
        Resolver::new(Arc::clone(&db), &config(Duration::from_secs(60))).expect("resolver");

    let error = resolver
        .resolve(&claims("alice"))
        .await
        .expect_err("no table");

    assert_eq!(error.attempts(), 1, "{error}");
    assert_eq!(db.lookups(), 1);
}

#[test]
fn busy_and_locked_are_transient_the_rest_permanent() {
    let failure = |code| {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error {
                code,
                extended_code: 0,
            },
            None,
        ))
    };
    assert_eq!(
        classify_db(&failure(ErrorCode::DatabaseBusy)),
        ErrorClass::Transient
    );
    assert_eq!(
        classify_db(&failure(ErrorCode::DatabaseLocked)),
        ErrorClass::Transient
    );
    assert_eq!(
        classify_db(&failure(ErrorCode::ConstraintViolation)),
        ErrorClass::Permanent
    );
    assert_eq!(
        classify_db(&DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)),
        ErrorClass::Permanent
    );
}
