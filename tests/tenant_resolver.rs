//! The `tenant_resolver` example's code, for real: its SQLite schema and
//! trigger, its token verifier, its resolver and bounded cache (under tokio's
//! paused clock), and its middleware over HTTP on 127.0.0.1.
//!
//! The HTTP tests run on the real clock and assert counts and outcomes only.

#[path = "../examples/tenant_resolver/app.rs"]
mod app;
#[path = "../examples/tenant_resolver/auth.rs"]
mod auth;
#[path = "../examples/tenant_resolver/cache.rs"]
mod cache;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::ErrorCode;
use safecall::{Error, ErrorClass, RetryBudget};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::time::Instant;

use app::{AppState, Database, DbError, Resolver, ResolverConfig, Source, classify_db};
use auth::{AuthError, Claims, DEMO_AUDIENCE, DEMO_ISSUER, DemoIssuer, SigningKey, TokenVerifier};
use cache::TtlCache;

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

const LIFETIME: Duration = Duration::from_secs(600);

/// A fresh key, the demo's issuer for it and the service's verifier for it.
fn keys() -> (SigningKey, DemoIssuer, TokenVerifier) {
    let key = SigningKey::generate().expect("random key");
    let issuer = DemoIssuer::new(&key, LIFETIME).expect("issuer");
    let verifier = TokenVerifier::new(&key, DEMO_ISSUER, DEMO_AUDIENCE).expect("verifier");
    (key, issuer, verifier)
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
async fn serve(resolver: Arc<Resolver>, verifier: TokenVerifier) -> String {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = AppState {
        verifier: Arc::new(verifier),
        resolver,
    };
    tokio::spawn(axum::serve(listener, app::router(state)).into_future());
    format!("http://{addr}")
}

/// A database, the router over it on 127.0.0.1, and the issuer whose tokens
/// the router accepts.
struct Service {
    db: Arc<Database>,
    base: String,
    /// The key the service verifies with, for issuers with other claims.
    key: SigningKey,
    issuer: DemoIssuer,
    http: reqwest::Client,
}

impl Service {
    async fn start(name: &str) -> Self {
        let db = Arc::new(Database::temporary(name).expect("db"));
        let resolver = Arc::new(
            Resolver::new(Arc::clone(&db), &config(Duration::from_secs(600))).expect("resolver"),
        );
        let (key, issuer, verifier) = keys();
        let base = serve(resolver, verifier).await;
        Self {
            db,
            base,
            key,
            issuer,
            http: reqwest::Client::new(),
        }
    }

    async fn me(&self, token: Option<&str>) -> (u16, Value) {
        me(&self.http, &self.base, token).await
    }

    /// The token got 401 with the bearer challenge, and nothing was looked up
    /// or provisioned: no user row, no organisation.
    async fn assert_refused(&self, token: &str) {
        let response = self
            .http
            .get(format!("{}/api/me", self.base))
            .bearer_auth(token)
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 401);
        let challenge = response.headers().get("www-authenticate").cloned();
        assert_eq!(
            challenge.as_ref().map(|v| v.as_bytes()),
            Some(&br#"Bearer error="invalid_token""#[..])
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body, json!({ "error": "invalid bearer token" }));
        assert_eq!(self.db.lookups(), 0, "the database was asked");
        assert_eq!(self.db.users().expect("count"), 0, "a user was inserted");
        assert_eq!(
            self.db.organisations().expect("count"),
            0,
            "an org was made"
        );
    }
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
    let Service {
        db,
        base,
        issuer,
        http,
        ..
    } = Service::start("http-race").await;
    let token = issuer.issue(&claims("auth0|newbie")).expect("token");

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
async fn the_org_claim_of_a_verified_token_wins_and_skips_the_database() {
    let service = Service::start("claims").await;
    let token = service
        .issuer
        .issue(&Claims {
            org_id: Some("org-acme".to_owned()),
            ..claims("auth0|bob")
        })
        .expect("token");

    let (status, body) = service.me(Some(&token)).await;

    assert_eq!(status, 200);
    assert_eq!(body, json!({ "org_id": "org-acme", "source": "claims" }));
    assert_eq!(service.db.lookups(), 0);
    assert_eq!(service.db.organisations().expect("count"), 0);
}

#[tokio::test]
async fn a_valid_token_for_a_new_user_provisions_one_organisation() {
    let service = Service::start("valid").await;
    let token = service
        .issuer
        .issue(&claims("auth0|newbie"))
        .expect("token");

    let (status, body) = service.me(Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["source"], "provisioned");
    let (status, again) = service.me(Some(&token)).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["source"], "cache");
    assert_eq!(again["org_id"], body["org_id"]);

    assert_eq!(service.db.lookups(), 1);
    assert_eq!(service.db.users().expect("count"), 1);
    assert_eq!(service.db.organisations().expect("count"), 1);
}

#[tokio::test]
async fn no_token_is_refused() {
    let service = Service::start("no-token").await;

    let response = service
        .http
        .get(format!("{}/api/me", service.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );
    service.assert_refused("not-a-jwt").await;
}

#[tokio::test]
async fn an_unsigned_token_is_refused_and_provisions_nothing() {
    let service = Service::start("alg-none").await;
    // Valid issuer, audience and expiry; `alg: none` and no signature.
    let token = service
        .issuer
        .unsigned(&claims("auth0|mallory"))
        .expect("token");
    service.assert_refused(&token).await;

    // Nor is an unsigned token's `org_id` believed (it would skip the database).
    let claiming = service
        .issuer
        .unsigned(&Claims {
            org_id: Some("org-acme".to_owned()),
            ..claims("auth0|mallory")
        })
        .expect("token");
    service.assert_refused(&claiming).await;
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_refused_and_provisions_nothing() {
    let service = Service::start("forged").await;
    let (_, forger, _) = keys();
    let token = forger.issue(&claims("auth0|mallory")).expect("token");
    service.assert_refused(&token).await;
}

#[tokio::test]
async fn an_expired_token_is_refused_and_provisions_nothing() {
    let service = Service::start("expired").await;
    // Issued two lifetimes ago: expired a lifetime ago, far past the leeway.
    let iat = jsonwebtoken::get_current_timestamp() - 2 * LIFETIME.as_secs();
    let token = service
        .issuer
        .issue_at(&claims("auth0|mallory"), iat)
        .expect("token");
    service.assert_refused(&token).await;
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused_and_provisions_nothing() {
    let service = Service::start("issuer").await;
    // The service's own key, so that only `iss` is wrong.
    let token = DemoIssuer::new(&service.key, LIFETIME)
        .expect("issuer")
        .with_issuer("https://auth.evil.example.com/")
        .issue(&claims("auth0|mallory"))
        .expect("token");
    service.assert_refused(&token).await;
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_and_provisions_nothing() {
    let service = Service::start("audience").await;
    // The service's own key, so that only `aud` is wrong.
    let token = DemoIssuer::new(&service.key, LIFETIME)
        .expect("issuer")
        .with_audience("https://api.example.com/billing")
        .issue(&claims("auth0|mallory"))
        .expect("token");
    service.assert_refused(&token).await;
}

/// Each bad token is refused for its own reason, so the HTTP tests above are
/// not passing by accident (say, every token refused for a malformed header).
#[test]
fn the_verifier_names_why_a_token_is_refused() {
    let key = SigningKey::generate().expect("key");
    let verifier = TokenVerifier::new(&key, DEMO_ISSUER, DEMO_AUDIENCE).expect("verifier");
    let issuer = DemoIssuer::new(&key, LIFETIME).expect("issuer");
    let (_, forger, _) = keys();
    let user = claims("auth0|alice");
    let now = jsonwebtoken::get_current_timestamp();

    let good = issuer.issue(&user).expect("token");
    assert_eq!(verifier.verify(&good), Ok(user.clone()));
    // Within the clock-skew leeway: still accepted.
    let just_expired = issuer
        .issue_at(&user, now - LIFETIME.as_secs() - 5)
        .expect("token");
    assert_eq!(verifier.verify(&just_expired), Ok(user.clone()));

    let cases: Vec<(&str, String, AuthError)> = vec![
        (
            "alg none",
            issuer.unsigned(&user).expect("token"),
            AuthError::BadSignature,
        ),
        (
            "another key",
            forger.issue(&user).expect("token"),
            AuthError::BadSignature,
        ),
        (
            "payload swapped",
            {
                let other = issuer.issue(&claims("auth0|mallory")).expect("token");
                let mut parts: Vec<&str> = good.split('.').collect();
                parts[1] = other.split('.').nth(1).expect("payload");
                parts.join(".")
            },
            AuthError::BadSignature,
        ),
        (
            "expired",
            issuer
                .issue_at(&user, now - 2 * LIFETIME.as_secs())
                .expect("token"),
            AuthError::Expired,
        ),
        (
            "issuer",
            DemoIssuer::new(&key, LIFETIME)
                .expect("issuer")
                .with_issuer("https://auth.evil.example.com/")
                .issue(&user)
                .expect("token"),
            AuthError::WrongIssuer,
        ),
        (
            "audience",
            DemoIssuer::new(&key, LIFETIME)
                .expect("issuer")
                .with_audience("https://api.example.com/billing")
                .issue(&user)
                .expect("token"),
            AuthError::WrongAudience,
        ),
        ("garbage", "not-a-jwt".to_owned(), AuthError::BadSignature),
    ];
    for (what, token, expected) in cases {
        assert_eq!(verifier.verify(&token), Err(expected), "{what}");
    }
}

#[test]
fn keys_do_not_show_in_debug() {
    let key = SigningKey::generate().expect("key");
    let verifier = TokenVerifier::new(&key, DEMO_ISSUER, DEMO_AUDIENCE).expect("verifier");
    let issuer = DemoIssuer::new(&key, LIFETIME).expect("issuer");
    for shown in [
        format!("{key:?}"),
        format!("{verifier:?}"),
        format!("{issuer:?}"),
    ] {
        assert!(shown.to_lowercase().contains("redacted"), "{shown}");
    }
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

#[tokio::test(start_paused = true)]
async fn the_resolver_caches_at_most_its_capacity() {
    let db = Arc::new(Database::temporary("capacity").expect("db"));
    let resolver = Resolver::new(
        Arc::clone(&db),
        &ResolverConfig {
            cache_capacity: 2,
            ..config(Duration::from_secs(600))
        },
    )
    .expect("resolver");
    for user in ["a", "b", "c"] {
        resolver.resolve(&claims(user)).await.expect("resolve");
    }
    assert_eq!(db.lookups(), 3);

    // "a" was the oldest: it made room for "c".
    assert_eq!(
        resolver.resolve(&claims("c")).await.expect("c").source,
        Source::Cache
    );
    assert_eq!(
        resolver.resolve(&claims("a")).await.expect("a").source,
        Source::Database
    );
    assert_eq!(db.lookups(), 4);
}

/// Regression: the busy timeout (5 s) was longer than the deadline (3 s), so
/// a busy database ended the lookup with a timeout after one attempt and was
/// never retried. Now SQLite answers `SQLITE_BUSY` within 250 ms, each attempt
/// is retried, and the lookup ends with the database's own error well within
/// the deadline. Real clock: SQLite's busy wait does not know tokio's.
#[tokio::test]
async fn a_busy_database_is_retried_within_the_deadline() {
    let db = Arc::new(Database::temporary("busy").expect("db"));
    let defaults = ResolverConfig::default();
    assert!(db.busy_timeout() * (defaults.max_retries + 1) < defaults.deadline);
    let resolver = Resolver::new(
        Arc::clone(&db),
        &ResolverConfig {
            retry_budget: RetryBudget::disabled(),
            ..defaults
        },
    )
    .expect("resolver");
    // Another writer holds the write lock and does not let go.
    let writer = rusqlite::Connection::open(db.path()).expect("open");
    writer.execute_batch("BEGIN IMMEDIATE").expect("lock");

    let error = resolver
        .resolve(&claims("alice"))
        .await
        .expect_err("the database is busy");

    assert!(matches!(error, Error::Exhausted { .. }), "{error}");
    assert_eq!(error.attempts(), 4, "{error}");
    assert_eq!(db.lookups(), 4);
    assert!(
        matches!(error.inner().map(classify_db), Some(ErrorClass::Transient)),
        "{error}"
    );

    writer.execute_batch("ROLLBACK").expect("unlock");
    let org = resolver
        .resolve(&claims("alice"))
        .await
        .expect("free again");
    assert_eq!(org.source, Source::Provisioned);
}

#[test]
fn a_busy_timeout_as_long_as_the_attempt_timeout_is_refused() {
    let db = Database::temporary("slow-busy")
        .expect("db")
        .with_busy_timeout(Duration::from_secs(5));
    let error = Resolver::new(Arc::new(db), &ResolverConfig::default()).expect_err("refused");
    assert_eq!(error.field(), "attempt_timeout");
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

#[test]
fn the_cache_serves_an_entry_for_the_ttl_only() {
    let t0 = Instant::now();
    let mut cache = TtlCache::new(10, Duration::from_secs(60));
    cache.insert("a".to_owned(), 1, t0);
    assert_eq!(cache.get("a", t0 + Duration::from_secs(59)), Some(1));
    assert_eq!(cache.get("a", t0 + Duration::from_secs(60)), None);
    assert_eq!(cache.get("b", t0), None);
}

#[test]
fn the_cache_at_capacity_drops_the_oldest_entry() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let mut cache = TtlCache::new(2, secs(60));
    cache.insert("a".to_owned(), 1, t0);
    cache.insert("b".to_owned(), 2, t0 + secs(1));
    cache.insert("c".to_owned(), 3, t0 + secs(2));

    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get("a", t0 + secs(2)), None);
    assert_eq!(cache.get("b", t0 + secs(2)), Some(2));
    assert_eq!(cache.get("c", t0 + secs(2)), Some(3));
}

#[test]
fn the_cache_drops_expired_entries_before_live_ones() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let mut cache = TtlCache::new(3, secs(10));
    cache.insert("a".to_owned(), 1, t0);
    cache.insert("b".to_owned(), 2, t0 + secs(5));
    // At 12 s "a" has expired and "b" has not: the insert drops only "a".
    cache.insert("c".to_owned(), 3, t0 + secs(12));

    assert_eq!(cache.len(), 2);
    assert_eq!(cache.get("b", t0 + secs(12)), Some(2));
    assert_eq!(cache.get("c", t0 + secs(12)), Some(3));
}

#[test]
fn the_cache_counts_a_key_inserted_again_from_its_new_insertion() {
    let t0 = Instant::now();
    let secs = Duration::from_secs;
    let mut cache = TtlCache::new(2, secs(60));
    cache.insert("a".to_owned(), 1, t0);
    cache.insert("b".to_owned(), 2, t0 + secs(1));
    cache.insert("a".to_owned(), 10, t0 + secs(2));
    // "b" is now the oldest: it makes room, and "a" keeps its new value.
    cache.insert("c".to_owned(), 3, t0 + secs(3));

    assert_eq!(cache.get("a", t0 + secs(3)), Some(10));
    assert_eq!(cache.get("b", t0 + secs(3)), None);
    assert_eq!(cache.get("c", t0 + secs(3)), Some(3));
    // "a" lives 60 s from its second insertion, not its first.
    assert_eq!(cache.get("a", t0 + secs(61)), Some(10));
}

#[test]
fn the_cache_stays_bounded_under_many_inserts() {
    let t0 = Instant::now();
    let mut cache = TtlCache::new(8, Duration::from_secs(60));
    for i in 0..10_000u32 {
        // The same few keys again and again, and a stream of new ones.
        let key = if i % 2 == 0 {
            format!("hot-{}", i % 6)
        } else {
            format!("new-{i}")
        };
        cache.insert(key, i, t0 + Duration::from_millis(u64::from(i)));
        assert!(cache.len() <= 8);
        assert!(cache.queued() <= 2 * 8 + 1, "{}", cache.queued());
    }
}

#[test]
fn a_cache_of_capacity_zero_holds_nothing() {
    let t0 = Instant::now();
    let mut cache = TtlCache::new(0, Duration::from_secs(60));
    cache.insert("a".to_owned(), 1, t0);
    assert_eq!(cache.get("a", t0), None);
    assert!(cache.is_empty());
}
