//! The tenant resolver's parts: the SQLite database with its provisioning
//! trigger, the resolver (verified claims → cache → database through
//! `SafeCall`), the axum middleware, and a handler that echoes the resolved
//! organisation. The token checks live in `auth.rs`, the cache in `cache.rs`.
//!
//! `main` (in `tenant_resolver.rs`) serves them on 127.0.0.1;
//! `tests/tenant_resolver.rs` drives the same code, over HTTP where it matters.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use safecall::{Backoff, ConfigError, Error, ErrorClass, Jitter, RetryBudget, SafeCall};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::auth::{AuthError, Claims, TokenVerifier};
use super::cache::TtlCache;

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
/// worth another try, and the short busy timeout (see [`DEFAULT_BUSY_TIMEOUT`])
/// leaves time for one within the lookup's deadline. Anything else (a constraint, a missing table, a corrupt
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

/// How long SQLite waits for another writer's lock before answering
/// `SQLITE_BUSY`.
///
/// Well below the lookup's attempt timeout and deadline, on purpose. SQLite
/// waits inside the blocking call, where the policy cannot interrupt it: with
/// a busy timeout longer than the deadline (it was 5 s against 3 s), a busy
/// database ends the lookup with a deadline timeout after one attempt and is
/// never retried, while the abandoned thread keeps waiting. At 250 ms a busy
/// database answers `SQLITE_BUSY` quickly, which `classify_db` calls
/// transient, and all four attempts (4 × 250 ms plus the backoff, about
/// 1.1 s) fit in the 3 s deadline. [`Resolver::new`] refuses a busy timeout
/// that is not shorter than the attempt timeout.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// The service's SQLite database: a file, opened per operation (as a pool
/// would hand out connections), in WAL mode with a short busy timeout.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    remove_on_drop: bool,
    busy_timeout: Duration,
    /// Lookups that reached the database (for the printout and the tests).
    lookups: AtomicU64,
}

impl Database {
    /// Opens (creating if needed) the database at `path` and applies the schema.
    pub fn open(path: impl AsRef<Path>) -> rusqlite::Result<Self> {
        let db = Self {
            path: path.as_ref().to_owned(),
            remove_on_drop: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
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

    /// The same database with another busy timeout, for the connections
    /// opened from now on.
    pub fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open(&self.path)?;
        conn.busy_timeout(self.busy_timeout)?;
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

    /// How many users exist.
    pub fn users(&self) -> rusqlite::Result<i64> {
        self.connect()?
            .query_row("SELECT count(*) FROM users", [], |r| r.get(0))
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
    /// The most users whose organisation is cached (see `cache.rs` for how
    /// entries are evicted). Zero caches nothing.
    pub cache_capacity: usize,
    pub max_retries: u32,
    /// The first backoff delay; zero retries at once.
    pub backoff: Duration,
    /// Per database attempt: must be longer than the database's busy timeout
    /// (see [`DEFAULT_BUSY_TIMEOUT`]), so that a busy database answers
    /// `SQLITE_BUSY` (retried) before the attempt is given up.
    pub attempt_timeout: Duration,
    /// The whole lookup, retries and waits included.
    pub deadline: Duration,
    pub retry_budget: RetryBudget,
}

impl Default for ResolverConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(60),
            cache_capacity: 10_000,
            max_retries: 3,
            backoff: Duration::from_millis(10),
            attempt_timeout: Duration::from_secs(1),
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
    /// `sub` → organisation, bounded in size and age.
    cache: Mutex<TtlCache<String>>,
}

impl Resolver {
    /// A resolver over `db`.
    ///
    /// # Errors
    ///
    /// A policy setting is invalid, or the database's busy timeout is not
    /// shorter than `attempt_timeout` and `deadline` (a busy database would
    /// then never be retried).
    pub fn new(db: Arc<Database>, config: &ResolverConfig) -> Result<Self, ConfigError> {
        let busy = db.busy_timeout();
        if busy >= config.attempt_timeout {
            return Err(ConfigError::new(
                "attempt_timeout",
                format!(
                    "must be longer than the database's busy timeout ({busy:?}), \
                     or a busy database is given up instead of retried"
                ),
            ));
        }
        if busy >= config.deadline {
            return Err(ConfigError::new(
                "deadline",
                format!("must be longer than the database's busy timeout ({busy:?})"),
            ));
        }
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
                // A timed-out attempt leaves its blocking thread running
                // until SQLite returns; the busy timeout bounds that wait.
                .attempt_timeout(config.attempt_timeout)
                .deadline(config.deadline)
                .retry_budget(config.retry_budget)
                .classify(classify_db)
                .build()?,
            cache: Mutex::new(TtlCache::new(config.cache_capacity, config.cache_ttl)),
        })
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The organisation for `claims` (from a verified token): the token's
    /// `org_id` when present, else the cache, else the database (provisioning
    /// a first-time user's).
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
        let cached = lock(&self.cache).get(&claims.sub, Instant::now());
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
        lock(&self.cache).insert(claims.sub.clone(), org_id.clone(), Instant::now());
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

/// What the middleware needs: the token verifier and the resolver.
#[derive(Debug, Clone)]
pub struct AppState {
    pub verifier: Arc<TokenVerifier>,
    pub resolver: Arc<Resolver>,
}

/// The bearer token of `Authorization: Bearer <token>`.
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(AuthError::Missing)
}

/// 401 with the RFC 6750 challenge. The body says no more than "invalid":
/// why a token failed is logged, not told to whoever sent it.
fn unauthorized(error: &AuthError) -> Response {
    let (challenge, message) = match error {
        AuthError::Missing => ("Bearer", "missing bearer token"),
        _ => (r#"Bearer error="invalid_token""#, "invalid bearer token"),
    };
    let mut response = json_error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    response
}

/// The middleware: verifies the bearer token (signature, expiry, issuer,
/// audience), resolves the organisation from its claims and hands it to the
/// handlers as an `Extension<ResolvedOrg>`. A token that does not verify gets
/// 401 before anything is looked up or provisioned.
pub async fn resolve_tenant(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let claims = bearer_token(request.headers()).and_then(|token| state.verifier.verify(token));
    let claims = match claims {
        Ok(claims) => claims,
        Err(error) => {
            // The reason, never the token.
            tracing::debug!(%error, "bearer token refused");
            return unauthorized(&error);
        }
    };
    match state.resolver.resolve(&claims).await {
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

/// The app: every route behind the token check and the resolver.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/me", get(whoami))
        .layer(middleware::from_fn_with_state(state, resolve_tenant))
}
