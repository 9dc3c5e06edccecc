//! A stand-in for Twilio's Messages API on 127.0.0.1, with faults injected per
//! account: it answers `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`
//! (form body `To`, `From`, `Body`; basic auth `AccountSid:AuthToken`) the way
//! Twilio does, in status codes and error bodies. [`StandInTwilio::start`]
//! deduplicates by the `Idempotency-Key` header, as a deduplicating proxy
//! would; [`StandInTwilio::start_ignoring_keys`] ignores it, as Twilio does.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::guard::{IDEMPOTENCY_HEADER, REPLAYED_HEADER, codes};

/// Faults for one account, each used up by the requests it hits, in this
/// order: credentials, rate limit, outage, lost answer.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Refuse every request with 401 / 20003, as if the auth token were revoked.
    pub bad_credentials: bool,
    /// The next `n` requests get 429 / 20429 with `Retry-After: retry_after_secs`.
    pub rate_limited: u32,
    pub retry_after_secs: u64,
    /// The next `n` requests get 503, without creating a message.
    pub unavailable: u32,
    /// The next `n` requests that create a message lose the answer: the
    /// message is stored, then the connection drops halfway through the body.
    pub drop_after_accept: u32,
    /// The next `n` requests that create a message answer 500 after storing
    /// it, as a server that fails after doing the work.
    pub fail_after_accept: u32,
}

/// What the stand-in saw, for the summary and the tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountStats {
    /// Requests to the Messages endpoint.
    pub requests: u32,
    /// Messages created (each at most once per idempotency key).
    pub messages: u32,
    /// Requests answered from the idempotency store instead of a new message.
    pub replays: u32,
}

#[derive(Debug, Default)]
struct Account {
    auth_token: String,
    faults: Faults,
    stats: AccountStats,
    /// Idempotency key → message SID.
    by_key: HashMap<String, String>,
    /// Messages created per idempotency key (must never exceed 1).
    created_per_key: HashMap<String, u32>,
}

#[derive(Debug, Default)]
struct Shared {
    accounts: Mutex<HashMap<String, Account>>,
    next_sid: Mutex<u64>,
    /// Answer a repeated idempotency key with the message it created.
    honour_keys: bool,
}

/// The running stand-in server.
#[derive(Debug)]
pub struct StandInTwilio {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl StandInTwilio {
    /// Serves on an ephemeral port on 127.0.0.1, deduplicating by
    /// idempotency key.
    pub async fn start() -> std::io::Result<Self> {
        Self::serve(true).await
    }

    /// Serves like Twilio's Messages API: every accepted request creates a
    /// message, whatever its idempotency key.
    pub async fn start_ignoring_keys() -> std::io::Result<Self> {
        Self::serve(false).await
    }

    async fn serve(honour_keys: bool) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            honour_keys,
            ..Shared::default()
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(create_message),
            )
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// The base URL to give the guard instead of `https://api.twilio.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Opens an account that accepts `auth_token`.
    pub fn add_account(&self, account_sid: &str, auth_token: &str) {
        lock(&self.shared.accounts).insert(
            account_sid.to_owned(),
            Account {
                auth_token: auth_token.to_owned(),
                ..Account::default()
            },
        );
    }

    /// Sets the faults of an account.
    pub fn inject(&self, account_sid: &str, faults: Faults) {
        if let Some(account) = lock(&self.shared.accounts).get_mut(account_sid) {
            account.faults = faults;
        }
    }

    pub fn stats(&self, account_sid: &str) -> AccountStats {
        lock(&self.shared.accounts)
            .get(account_sid)
            .map(|a| a.stats.clone())
            .unwrap_or_default()
    }

    /// The most messages created for any one idempotency key of the account:
    /// 1 when nothing was sent twice.
    pub fn max_messages_per_key(&self, account_sid: &str) -> u32 {
        lock(&self.shared.accounts)
            .get(account_sid)
            .and_then(|a| a.created_per_key.values().copied().max())
            .unwrap_or(0)
    }
}

impl Drop for StandInTwilio {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Twilio's error body: `{"code", "message", "more_info", "status"}`.
fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

/// `(account_sid, auth_token)` from a basic `Authorization` header.
fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// E.164: `+`, a non-zero digit, then 6 to 14 more digits.
fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (7..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
    })
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut accounts = lock(&shared.accounts);
    let Some(account) = accounts.get_mut(&account_sid) else {
        return twilio_error(
            StatusCode::NOT_FOUND,
            codes::NOT_FOUND,
            "The requested resource was not found",
        );
    };
    account.stats.requests += 1;

    let authenticated = basic_auth(&headers)
        .is_some_and(|(user, token)| user == account_sid && token == account.auth_token);
    if !authenticated || account.faults.bad_credentials {
        return twilio_error(
            StatusCode::UNAUTHORIZED,
            codes::AUTHENTICATION_FAILED,
            "Authenticate",
        );
    }
    if account.faults.rate_limited > 0 {
        account.faults.rate_limited -= 1;
        let mut response = twilio_error(
            StatusCode::TOO_MANY_REQUESTS,
            codes::TOO_MANY_REQUESTS,
            "Too Many Requests",
        );
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from(account.faults.retry_after_secs),
        );
        return response;
    }
    if account.faults.unavailable > 0 {
        account.faults.unavailable -= 1;
        return twilio_error(
            StatusCode::SERVICE_UNAVAILABLE,
            20503,
            "Service temporarily unavailable",
        );
    }

    let to = form.get("To").map(String::as_str).unwrap_or_default();
    if !is_e164(to) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            codes::INVALID_TO,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if form.get("Body").is_none_or(|b| b.is_empty()) {
        return twilio_error(
            StatusCode::BAD_REQUEST,
            codes::BODY_REQUIRED,
            "Message body is required.",
        );
    }

    let key = headers
        .get(IDEMPOTENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let replay = key
        .as_ref()
        .filter(|_| shared.honour_keys)
        .and_then(|k| account.by_key.get(k));
    if let Some(sid) = replay {
        let sid = sid.clone();
        account.stats.replays += 1;
        let mut response = message_response(&sid, to);
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return response;
    }

    let sid = {
        let mut next = lock(&shared.next_sid);
        *next += 1;
        format!("SM{:032x}", *next)
    };
    account.stats.messages += 1;
    if let Some(key) = key {
        account.by_key.insert(key.clone(), sid.clone());
        *account.created_per_key.entry(key).or_default() += 1;
    }

    if account.faults.drop_after_accept > 0 {
        account.faults.drop_after_accept -= 1;
        // The message exists, but the answer never arrives whole: the headers
        // and the first bytes go out, then the body fails and hyper drops the
        // connection.
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from_static(b"{\"sid\": \"")),
            Err(std::io::Error::other("connection dropped by the stand-in")),
        ];
        return (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(futures::stream::iter(chunks)),
        )
            .into_response();
    }
    if account.faults.fail_after_accept > 0 {
        account.faults.fail_after_accept -= 1;
        return twilio_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            20500,
            "Internal Server Error",
        );
    }
    message_response(&sid, to)
}

fn message_response(sid: &str, to: &str) -> Response {
    let body = json!({ "sid": sid, "status": "queued", "to": to });
    (StatusCode::CREATED, Json(body)).into_response()
}
