//! OAuth access tokens per tenant, refreshed ahead of expiry, one refresh at a
//! time; and a calendar client that uses them.
//!
//! `main` (in `token_refresher.rs`) points these at a local stand-in server;
//! `tests/token_refresher.rs` drives the same code over real HTTP.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use safecall::{
    Backoff, ConfigError, Error, ErrorClass, Jitter, RetryBudget, SafeCall, classify_http_status,
    parse_retry_after,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

/// An access token. `Debug` shows `[redacted]`, never the token; the only way
/// to the secret is [`AccessToken::bearer`], for the `Authorization` header.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    /// Which refresh of this tenant issued it (so that a 401 invalidates this
    /// token only, not a newer one another caller already fetched).
    pub generation: u64,
    pub expires_at: Instant,
}

impl AccessToken {
    /// The secret, for the `Authorization: Bearer` header and nothing else.
    pub fn bearer(&self) -> &str {
        self.secret.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &format_args!("[redacted]"))
            .field("generation", &self.generation)
            .field(
                "expires_in",
                &self.expires_at.saturating_duration_since(Instant::now()),
            )
            .finish()
    }
}

/// Whether `expires_at` is still far enough away: a token is refreshed `skew`
/// before it expires, so that no request leaves with a token that dies on the
/// way.
pub fn is_fresh(expires_at: Instant, now: Instant, skew: Duration) -> bool {
    now.checked_add(skew).is_some_and(|t| t < expires_at)
}

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The grant is gone (`invalid_grant`: revoked, expired, password changed):
    /// the tenant must link the account again. Refreshing will not help.
    NotLinked,
    /// The OAuth client itself is refused (`invalid_client`): a deployment
    /// problem, not the tenant's.
    Misconfigured(String),
    /// The token endpoint failed through every retry (network, 5xx).
    Unavailable(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::NotLinked => f.write_str("the account is not linked (re-link required)"),
            TokenError::Misconfigured(e) => write!(f, "the OAuth client is refused: {e}"),
            TokenError::Unavailable(e) => write!(f, "the token endpoint is unavailable: {e}"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Where a source of access tokens stands, for the app to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Linked,
    /// Shown to the tenant as "Not Linked", with a button to link again.
    NotLinked,
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            LinkStatus::Linked => "Linked",
            LinkStatus::NotLinked => "Not Linked",
        })
    }
}

/// A source of access tokens for one tenant.
///
/// Native `async fn`-style methods (return-position `impl Future`), so no
/// `async-trait` box per call; use the concrete type or a generic, not `dyn`.
pub trait TokenSource: Send + Sync {
    /// A token that is valid for at least the skew, refreshed if needed.
    fn token(&self) -> impl Future<Output = Result<AccessToken, TokenError>> + Send;

    /// The API refused `token` (401): forget it, so that the next
    /// [`token`](TokenSource::token) refreshes, unless a newer token is cached.
    fn invalidate(&self, token: &AccessToken);
}

/// A failed refresh request, as the token endpoint (or the network) reported it.
#[derive(Debug)]
pub enum RefreshError {
    /// An OAuth error answer: `{"error": "invalid_grant", ..}` and its status.
    OAuth {
        status: u16,
        error: String,
        retry_after: Option<Duration>,
    },
    /// No answer (connection refused, reset, timed out) or an unreadable one.
    Network(String),
}

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefreshError::OAuth { status, error, .. } => {
                write!(f, "token endpoint answered {status} {error}")
            }
            RefreshError::Network(e) => write!(f, "token endpoint unreachable: {e}"),
        }
    }
}

impl std::error::Error for RefreshError {}

/// The classification of refresh failures (RFC 6749 §5.2 error codes first,
/// then the status).
///
/// | failure | class |
/// | --- | --- |
/// | `invalid_grant` (revoked, expired refresh token) | `Permanent`: the tenant must re-link |
/// | `invalid_client`, `unauthorized_client` | `Permanent` |
/// | `temporarily_unavailable`, 5xx, network | `Transient` |
/// | 429 with `Retry-After` | `RetryAfter` |
/// | other 4xx | `CallerFault` |
pub fn classify_refresh(error: &RefreshError) -> ErrorClass {
    match error {
        RefreshError::OAuth {
            status,
            error,
            retry_after,
        } => match error.as_str() {
            "invalid_grant" | "invalid_client" | "unauthorized_client" => ErrorClass::Permanent,
            "temporarily_unavailable" => {
                retry_after.map_or(ErrorClass::Transient, ErrorClass::RetryAfter)
            }
            _ => classify_http_status(*status, *retry_after),
        },
        RefreshError::Network(_) => ErrorClass::Transient,
    }
}

/// Timings and limits; the defaults are the demo's (milliseconds).
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Refresh this long before the token expires.
    pub skew: Duration,
    pub max_retries: u32,
    /// The first backoff delay; zero retries at once.
    pub backoff: Duration,
    pub request_timeout: Duration,
    pub deadline: Duration,
    pub retry_budget: RetryBudget,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            skew: Duration::from_secs(60),
            max_retries: 3,
            backoff: Duration::from_millis(20),
            request_timeout: Duration::from_secs(2),
            deadline: Duration::from_secs(5),
            retry_budget: RetryBudget::default(),
        }
    }
}

fn policy<E>(
    config: &TokenConfig,
    classify: impl Fn(&E) -> ErrorClass + Send + Sync + 'static,
) -> Result<SafeCall<E>, ConfigError> {
    let backoff = if config.backoff.is_zero() {
        Backoff::constant(Duration::ZERO)
    } else {
        Backoff::exponential(config.backoff)
            .max_delay(config.backoff * 8)
            .jitter(Jitter::Full)
    };
    SafeCall::builder()
        .max_retries(config.max_retries)
        .backoff(backoff)
        .deadline(config.deadline)
        .retry_budget(config.retry_budget)
        .classify(classify)
        .build()
}

/// The app's OAuth client: the token endpoint, its credentials, and the retry
/// policy for refresh requests.
#[derive(Debug)]
pub struct OAuthClient {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    policy: SafeCall<RefreshError>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
}

impl OAuthClient {
    pub fn new(
        http: reqwest::Client,
        token_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: SecretString,
        config: &TokenConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            http,
            token_url: token_url.into(),
            client_id: client_id.into(),
            client_secret,
            policy: policy(config, classify_refresh)?,
        })
    }

    /// Exchanges `refresh_token` for an access token, retrying transient
    /// failures. Returns the token and its lifetime.
    async fn refresh(
        &self,
        refresh_token: &SecretString,
    ) -> Result<(SecretString, Duration), Error<RefreshError>> {
        self.policy.call(|| self.refresh_once(refresh_token)).await
    }

    async fn refresh_once(
        &self,
        refresh_token: &SecretString,
    ) -> Result<(SecretString, Duration), RefreshError> {
        let network = |e: reqwest::Error| RefreshError::Network(e.without_url().to_string());
        let response = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.expose_secret()),
                ("client_id", &self.client_id),
                ("client_secret", self.client_secret.expose_secret()),
            ])
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let bytes = response.bytes().await.map_err(network)?;
        if status.is_success() {
            let body: TokenResponse = serde_json::from_slice(&bytes)
                .map_err(|e| RefreshError::Network(format!("unreadable token answer: {e}")))?;
            return Ok((
                SecretString::from(body.access_token),
                Duration::from_secs(body.expires_in),
            ));
        }
        let error = serde_json::from_slice::<OAuthErrorBody>(&bytes)
            .map(|b| b.error)
            .unwrap_or_else(|_| status.to_string());
        Err(RefreshError::OAuth {
            status: status.as_u16(),
            error,
            retry_after,
        })
    }
}

#[derive(Debug)]
struct Cache {
    token: Option<AccessToken>,
    /// Bumped when a refresh ends, successful or not.
    generation: u64,
    /// How the last refresh failed; handed to the callers that waited for it.
    last_error: Option<TokenError>,
    /// `None`: not linked (never, or the grant was refused).
    refresh_token: Option<SecretString>,
}

/// One tenant's tokens: a cached access token, refreshed `skew` before it
/// expires, by one caller at a time.
///
/// # Single flight
///
/// A caller that finds no fresh token notes the cache's generation and queues
/// on an async mutex that only refreshers take. The first one through
/// refreshes; the others, when their turn comes, see that the generation has
/// moved and take its result (the new token, or its error) instead of
/// refreshing again. So 100 callers with an expired token make one refresh
/// request, and a failing token endpoint gets one retried refresh per wave of
/// callers, not 100. The mutex is tokio's (fair, and held across the refresh's
/// `.await`); the cache itself sits behind a std mutex held for a few
/// instructions, never across an `.await`. A refresher that is cancelled
/// releases the mutex and the next caller refreshes.
#[derive(Debug)]
pub struct TenantTokens {
    tenant: String,
    oauth: Arc<OAuthClient>,
    skew: Duration,
    cache: Mutex<Cache>,
    refreshing: tokio::sync::Mutex<()>,
    /// Refreshes this source started (for the printout and the tests).
    refreshes: AtomicU64,
}

impl TenantTokens {
    /// A linked tenant: it holds a refresh token and no access token yet.
    pub fn linked(
        tenant: impl Into<String>,
        oauth: Arc<OAuthClient>,
        skew: Duration,
        refresh_token: SecretString,
    ) -> Self {
        Self {
            tenant: tenant.into(),
            oauth,
            skew,
            cache: Mutex::new(Cache {
                token: None,
                generation: 0,
                last_error: None,
                refresh_token: Some(refresh_token),
            }),
            refreshing: tokio::sync::Mutex::new(()),
            refreshes: AtomicU64::new(0),
        }
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// Linked, or "Not Linked" after the provider refused the grant.
    pub fn status(&self) -> LinkStatus {
        if lock(&self.cache).refresh_token.is_some() {
            LinkStatus::Linked
        } else {
            LinkStatus::NotLinked
        }
    }

    /// The tenant linked the account again (a new OAuth consent).
    pub fn relink(&self, refresh_token: SecretString) {
        let mut cache = lock(&self.cache);
        cache.refresh_token = Some(refresh_token);
        cache.token = None;
        cache.last_error = None;
    }

    /// Refreshes this source has started.
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// Caches `token` as if a refresh had fetched it (for a token loaded from
    /// storage at start-up, and for tests).
    pub fn seed(&self, secret: SecretString, expires_in: Duration) {
        let mut cache = lock(&self.cache);
        cache.generation += 1;
        cache.token = Some(AccessToken {
            secret,
            generation: cache.generation,
            expires_at: Instant::now() + expires_in,
        });
    }

    /// A fresh cached token, or the generation to wait past.
    fn cached(&self) -> Result<AccessToken, (u64, bool)> {
        let cache = lock(&self.cache);
        match &cache.token {
            Some(t) if is_fresh(t.expires_at, Instant::now(), self.skew) => Ok(t.clone()),
            _ => Err((cache.generation, cache.refresh_token.is_some())),
        }
    }

    async fn refresh(&self, waited_for: u64) -> Result<AccessToken, TokenError> {
        let _turn = self.refreshing.lock().await;
        let refresh_token = {
            let cache = lock(&self.cache);
            if cache.generation != waited_for {
                // Someone refreshed while we queued: share the result.
                if let Some(t) = cache
                    .token
                    .as_ref()
                    .filter(|t| is_fresh(t.expires_at, Instant::now(), self.skew))
                {
                    return Ok(t.clone());
                }
                if let Some(e) = &cache.last_error {
                    return Err(e.clone());
                }
            }
            match &cache.refresh_token {
                Some(rt) => rt.clone(),
                None => return Err(TokenError::NotLinked),
            }
        };

        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let asked_at = Instant::now();
        let result = self.oauth.refresh(&refresh_token).await;

        let mut cache = lock(&self.cache);
        cache.generation += 1;
        match result {
            Ok((secret, lifetime)) => {
                let token = AccessToken {
                    secret,
                    generation: cache.generation,
                    // Counted from when we asked: errs on the early side.
                    expires_at: asked_at + lifetime,
                };
                cache.token = Some(token.clone());
                cache.last_error = None;
                Ok(token)
            }
            Err(error) => {
                let error = token_error(&error);
                if error == TokenError::NotLinked {
                    // The grant is dead: stop using it, show "Not Linked".
                    cache.refresh_token = None;
                    cache.token = None;
                    tracing::warn!(tenant = %self.tenant, "refresh token refused: tenant must re-link");
                }
                cache.last_error = Some(error.clone());
                Err(error)
            }
        }
    }
}

impl TokenSource for TenantTokens {
    async fn token(&self) -> Result<AccessToken, TokenError> {
        match self.cached() {
            Ok(token) => Ok(token),
            Err((_, false)) => Err(TokenError::NotLinked),
            Err((generation, true)) => self.refresh(generation).await,
        }
    }

    fn invalidate(&self, token: &AccessToken) {
        let mut cache = lock(&self.cache);
        if cache
            .token
            .as_ref()
            .is_some_and(|t| t.generation == token.generation)
        {
            cache.token = None;
        }
    }
}

/// What a refresh that ended with `error` means for the tenant.
fn token_error(error: &Error<RefreshError>) -> TokenError {
    match error.inner() {
        Some(RefreshError::OAuth { error: code, .. }) if code == "invalid_grant" => {
            TokenError::NotLinked
        }
        Some(e @ RefreshError::OAuth { error: code, .. })
            if code == "invalid_client" || code == "unauthorized_client" =>
        {
            TokenError::Misconfigured(e.to_string())
        }
        Some(e) => TokenError::Unavailable(format!("{error}: {e}")),
        None => TokenError::Unavailable(error.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A failed calendar request.
#[derive(Debug)]
pub enum CalendarError {
    /// 401 even with a freshly refreshed token.
    Unauthorized,
    /// Any other error status.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    Network(String),
    /// No token to send.
    Token(TokenError),
}

impl fmt::Display for CalendarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalendarError::Unauthorized => f.write_str("calendar API refused a fresh token (401)"),
            CalendarError::Status { status, .. } => write!(f, "calendar API answered {status}"),
            CalendarError::Network(e) => write!(f, "calendar API unreachable: {e}"),
            CalendarError::Token(e) => write!(f, "no access token: {e}"),
        }
    }
}

impl std::error::Error for CalendarError {}

/// Calendar errors: a token failure is not retried here, because the refresh
/// already went through its own policy (retry in one layer only).
pub fn classify_calendar(error: &CalendarError) -> ErrorClass {
    match error {
        CalendarError::Unauthorized | CalendarError::Token(_) => ErrorClass::Permanent,
        CalendarError::Status {
            status,
            retry_after,
        } => classify_http_status(*status, *retry_after),
        CalendarError::Network(_) => ErrorClass::Transient,
    }
}

/// A calendar event (a subset of Google Calendar's Event resource).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub summary: String,
}

#[derive(Deserialize)]
struct Events {
    items: Vec<Event>,
}

/// The calendar API, called with a tenant's tokens.
#[derive(Debug)]
pub struct CalendarClient {
    http: reqwest::Client,
    base_url: String,
    policy: SafeCall<CalendarError>,
    /// Requests retried after a 401 and a refresh.
    auth_retries: AtomicU64,
}

impl CalendarClient {
    pub fn new(
        http: reqwest::Client,
        base_url: impl Into<String>,
        config: &TokenConfig,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            http,
            base_url: base_url.into(),
            policy: policy(config, classify_calendar)?,
            auth_retries: AtomicU64::new(0),
        })
    }

    pub fn auth_retries(&self) -> u64 {
        self.auth_retries.load(Ordering::Relaxed)
    }

    /// The tenant's upcoming events.
    pub async fn upcoming_events<S: TokenSource>(
        &self,
        tokens: &S,
    ) -> Result<Vec<Event>, Error<CalendarError>> {
        self.policy.call(|| self.events_once(tokens)).await
    }

    /// One attempt: a 401 means the token died early (revoked, rotated, a
    /// clock skew): forget it, refresh, and try once more.
    async fn events_once<S: TokenSource>(&self, tokens: &S) -> Result<Vec<Event>, CalendarError> {
        let token = tokens.token().await.map_err(CalendarError::Token)?;
        match self.get_events(&token).await {
            Err(CalendarError::Unauthorized) => {
                self.auth_retries.fetch_add(1, Ordering::Relaxed);
                tokens.invalidate(&token);
                let token = tokens.token().await.map_err(CalendarError::Token)?;
                self.get_events(&token).await
            }
            other => other,
        }
    }

    async fn get_events(&self, token: &AccessToken) -> Result<Vec<Event>, CalendarError> {
        let network = |e: reqwest::Error| CalendarError::Network(e.without_url().to_string());
        let response = self
            .http
            .get(format!(
                "{}/calendar/v3/calendars/primary/events",
                self.base_url
            ))
            .bearer_auth(token.bearer())
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(CalendarError::Unauthorized);
        }
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Err(CalendarError::Status {
                status: status.as_u16(),
                retry_after,
            });
        }
        let events: Events = response.json().await.map_err(network)?;
        Ok(events.items)
    }
}
