//! The tenant resolver's parts: the SQLite database with its provisioning
//! trigger, the resolver (claims → cache → database through `SafeCall`), the
//! axum middleware, and a handler that echoes the resolved organisation.
//!
//! `main` (in `tenant_resolver.rs`) serves them on 127.0.0.1;
//! `tests/tenant_resolver.rs` drives the same code, over HTTP where it matters.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Extension, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use safecall::{Backoff, ConfigError, Error, ErrorClass, Jitter, RetryBudget, SafeCall};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

/// The seed's schema: a user row without an organisation gets one from the
/// `AFTER INSERT` trigger, in the same statement (so in the same transaction).
///
/// Inside a trigger, `last_insert_rowid()` is the row the trigger itself just
/// inserted: the new organisation.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS organisations (
    id         INTEGER PRIMARY KEY,
    public_id  TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE IF NOT EXISTS users (
    id          INTEGER PRIMARY KEY,
    external_id TEXT NOT NULL UNIQUE,   -- the identity provider's `sub`
    email       TEXT,
    org_id      INTEGER REFERENCES organisations(id)
);
CREATE TRIGGER IF NOT EXISTS provision_organisation
AFTER INSERT ON users
WHEN NEW.org_id IS NULL
BEGIN
    INSERT INTO organisations (public_id, name)
    VALUES ('org-' || lower(hex(randomblob(6))),
            coalesce(NEW.email, NEW.external_id) || '''s organisation');
    UPDATE users SET org_id = last_insert_rowid() WHERE id = NEW.id;
END;
";

/// A database failure, for the resolver's retry policy.
#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    /// The blocking task panicked or was cancelled.
    Task(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "database: {e}"),
            DbError::Task(e) => write!(f, "database task: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sqlite(e)
    }
}

/// Busy or locked: another writer held the database past the busy timeout;
/// worth another try. Anything else (a constraint, a missing table, a corrupt
/// file) will not get better by retrying.
pub fn classify_db(error: &DbError) -> ErrorClass {
    match error {
        DbError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
            if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            ErrorClass::Transient
        }
        _ => ErrorClass::Permanent,
    }
}

/// The service's SQLite database: a file, opened per operation (as a pool
/// would hand out connections), in WAL mode with a busy timeout.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    remove_on_drop: bool,
    /// Lookups that reached the database (for the printout and the tests).
    lookups: AtomicU64,
}

impl Database {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: impl AsRef<Path>) -> rusqlite::Result<Self> {
        let db = Self {
            path: path.as_ref().to_owned(),
            remove_on_drop: false,
            lookups: AtomicU64::new(0),
        };
        let conn = db.connect()?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(db)
    }

    /// A fresh database in the temp directory, deleted on drop.
    pub fn temporary(name: &str) -> rusqlite::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "safecall-{name}-{}-{}.sqlite",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut db = Self::open(path)?;
        db.remove_on_drop = true;
        Ok(db)
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        Ok(conn)
    }

    /// The organisation of user `sub`, provisioning one for a first-time user.
    /// Returns the organisation's public id and whether this call created it.
    ///
    /// Idempotent under concurrency: `INSERT .. ON CONFLICT DO NOTHING`
    /// inserts the user at most once (SQLite serialises writers), so the
    /// trigger runs at most once; every other caller inserts nothing and
    /// reads the organisation the winner's trigger linked.
    pub fn org_for_user(&self, sub: &str, email: Option<&str>) -> Result<(String, bool), DbError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let conn = self.connect()?;
        let find = |conn: &Connection| {
            conn.query_row(
                "SELECT o.public_id FROM users u JOIN organisations o ON o.id = u.org_id
                 WHERE u.external_id = ?1",
                [sub],
                |row| row.get::<_, String>(0),
            )
            .optional()
        };
        if let Some(org) = find(&conn)? {
            return Ok((org, false));
        }
        let inserted = conn.execute(
            "INSERT INTO users (external_id, email) VALUES (?1, ?2)
             ON CONFLICT (external_id) DO NOTHING",
            params![sub, email],
        )?;
        let org = find(&conn)?.ok_or(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows))?;
        Ok((org, inserted == 1))
    }

    /// How many organisations exist.
    pub fn organisations(&self) -> rusqlite::Result<i64> {
        self.connect()?
            .query_row("SELECT count(*) FROM organisations", [], |r| r.get(0))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if self.remove_on_drop {
            for suffix in ["", "-wal", "-shm"] {
                let mut path = self.path.clone().into_os_string();
                path.push(suffix);
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

/// The claims the resolver reads from the bearer token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user, as the identity provider names them.
    pub sub: String,
    pub email: Option<String>,
    /// Present once the identity provider knows the user's organisation.
    pub org_id: Option<String>,
}

/// The claims of a JWT-shaped bearer token.
///
/// DEMO ONLY: this decodes the payload without checking the signature. A real
/// service verifies it (e.g. `jsonwebtoken::decode` with the provider's keys,
/// issuer, audience and expiry) before trusting a single claim.
pub fn claims_from_token(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// An unsigned JWT-shaped token with `claims` (`alg: none`): for the demo and
/// the tests only.
pub fn demo_token(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// Where the resolved organisation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Claims,
    Cache,
    Database,
    /// The database, and this request provisioned it.
    Provisioned,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Claims => "claims",
            Source::Cache => "cache",
            Source::Database => "database",
            Source::Provisioned => "provisioned",
        }
    }
}

/// The request's organisation, put in the request's extensions by the
/// middleware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedOrg {
    pub org_id: String,
    pub source: Source,
}

/// The resolver's settings; the defaults are the demo's.
#[derive(Debug, Clone)]
pub struct ResolverConfig {
    /// How long a user → organisation answer is reused.
    pub cache_ttl: Duration,
    pub max_retries: u32,
    /// The first backoff delay; zero retries at once.
    pub backoff: Duration,
    pub deadline: Duration,
    pub retry_budget: RetryBudget,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(60),
            max_retries: 3,
            backoff: Duration::from_millis(10),
            deadline: Duration::from_secs(3),
            retry_budget: RetryBudget::default(),
        }
    }
}

/// Resolves the organisation of a request's user.
#[derive(Debug)]
pub struct Resolver {
    db: Arc<Database>,
    policy: SafeCall<DbError>,
    ttl: Duration,
    /// `sub` → (organisation, when it was looked up).
    cache: Mutex<HashMap<String, (String, Instant)>>,
}

impl Resolver {
    pub fn new(db: Arc<Database>, config: &ResolverConfig) -> Result<Self, ConfigError> {
        let backoff = if config.backoff.is_zero() {
            Backoff::constant(Duration::ZERO)
        } else {
            Backoff::exponential(config.backoff)
                .max_delay(config.backoff * 8)
                .jitter(Jitter::Full)
        };
        Ok(Self {
            db,
            policy: SafeCall::builder()
                .max_retries(config.max_retries)
                .backoff(backoff)
                .deadline(config.deadline)
                .retry_budget(config.retry_budget)
                .classify(classify_db)
                .build()?,
            ttl: config.cache_ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The organisation for `claims`: the token's `org_id` when present, else
    /// the cache, else the database (provisioning a first-time user's).
    ///
    /// # Errors
    ///
    /// The database failed through the policy's retries.
    pub async fn resolve(&self, claims: &Claims) -> Result<ResolvedOrg, Error<DbError>> {
        if let Some(org_id) = &claims.org_id {
            return Ok(ResolvedOrg {
                org_id: org_id.clone(),
                source: Source::Claims,
            });
        }
        let now = Instant::now();
        let cached = lock(&self.cache)
            .get(&claims.sub)
            .filter(|(_, at)| now.duration_since(*at) < self.ttl)
            .map(|(org_id, _)| org_id.clone());
        if let Some(org_id) = cached {
            return Ok(ResolvedOrg {
                org_id,
                source: Source::Cache,
            });
        }
        let (org_id, provisioned) = self
            .policy
            .call(|| {
                let db = Arc::clone(&self.db);
                let (sub, email) = (claims.sub.clone(), claims.email.clone());
                async move {
                    // rusqlite blocks: run it off the async worker threads.
                    tokio::task::spawn_blocking(move || db.org_for_user(&sub, email.as_deref()))
                        .await
                        .map_err(|e| DbError::Task(e.to_string()))?
                }
            })
            .await?;
        lock(&self.cache).insert(claims.sub.clone(), (org_id.clone(), Instant::now()));
        Ok(ResolvedOrg {
            org_id,
            source: if provisioned {
                Source::Provisioned
            } else {
                Source::Database
            },
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// The middleware: reads the bearer token's claims, resolves the organisation
/// and hands it to the handlers as an `Extension<ResolvedOrg>`.
pub async fn resolve_tenant(
    State(resolver): State<Arc<Resolver>>,
    mut request: Request,
    next: Next,
) -> Response {
    let claims = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(claims_from_token);
    let Some(claims) = claims else {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "missing or unreadable bearer token",
        );
    };
    match resolver.resolve(&claims).await {
        Ok(org) => {
            request.extensions_mut().insert(org);
            next.run(request).await
        }
        Err(error) => {
            // The error names the database failure; it carries no credential.
            tracing::warn!(%error, "tenant resolution failed");
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "tenant lookup unavailable, try again",
            )
        }
    }
}

/// `GET /api/me`: echoes the resolved organisation.
async fn whoami(Extension(org): Extension<ResolvedOrg>) -> Json<Value> {
    Json(json!({ "org_id": org.org_id, "source": org.source.as_str() }))
}

/// The app: every route behind the resolver.
pub fn router(resolver: Arc<Resolver>) -> Router {
    Router::new()
        .route("/api/me", get(whoami))
        .layer(middleware::from_fn_with_state(resolver, resolve_tenant))
}
