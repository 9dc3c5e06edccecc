//! `TwilioGuard`: SMS through Twilio's REST API with retries, error
//! classification and a circuit breaker per organisation.
//!
//! `main` (in `twilio_guard.rs`) points it at a local stand-in server;
//! `tests/twilio_guard.rs` drives the same code over real HTTP.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::stream::{self, StreamExt};
use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, BreakerState, ConfigError, Error, ErrorClass, Jitter,
    RefusalCause, RetryBudget, SafeCall, classify_http_status, parse_retry_after,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Twilio's error codes that the classification names.
pub mod codes {
    /// Authentication failure: wrong Account SID or auth token (HTTP 401).
    pub const AUTHENTICATION_FAILED: u32 = 20003;
    /// The requested resource was not found: usually a wrong Account SID (HTTP 404).
    pub const NOT_FOUND: u32 = 20404;
    /// Too many requests (HTTP 429).
    pub const TOO_MANY_REQUESTS: u32 = 20429;
    /// The 'To' number is not a valid phone number (HTTP 400).
    pub const INVALID_TO: u32 = 21211;
    /// The message body is required (HTTP 400).
    pub const BODY_REQUIRED: u32 = 21602;
}

/// Twilio's API root.
pub const TWILIO_API: &str = "https://api.twilio.com";

/// The header the guard sends so that a retried request is not a second
/// message, where the endpoint honours it (see [`Endpoint`]). Twilio's Messages
/// API does not: there the header is harmless, and the guard does not count
/// on it.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The header a deduplicating server sets on a replayed answer.
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// An organisation (tenant) of the service.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(pub String);

impl OrgId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

/// One organisation's Twilio account. The auth token is a [`SecretString`]:
/// `Debug` redacts it, and only [`TwilioGuard`] exposes it, into the
/// `Authorization` header.
#[derive(Debug, Clone)]
pub struct TwilioAccount {
    pub account_sid: String,
    pub auth_token: SecretString,
    /// The sender number (E.164) or messaging service.
    pub from: String,
}

/// A failed attempt to create a message, as Twilio (or the network) reported it.
#[derive(Debug)]
pub enum TwilioError {
    /// Twilio answered with an error: the HTTP status and, when the body could
    /// be read, Twilio's own error `code` (`{"code": 21211, "message": ..}`).
    Api {
        status: u16,
        code: Option<u32>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The request never reached Twilio (connection refused, DNS, connect
    /// timeout): certainly not accepted.
    Connect(String),
    /// The request was sent but no complete answer came back (the connection
    /// dropped, the response timed out, a 2xx body was cut short): Twilio may
    /// have accepted the message.
    Ambiguous(String),
}

impl fmt::Display for TwilioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TwilioError::Api {
                status,
                code: Some(code),
                message,
                ..
            } => write!(f, "Twilio error {code} (HTTP {status}): {message}"),
            TwilioError::Api {
                status, message, ..
            } => write!(f, "Twilio HTTP {status}: {message}"),
            TwilioError::Connect(e) => write!(f, "could not reach Twilio: {e}"),
            TwilioError::Ambiguous(e) => write!(f, "no complete answer from Twilio: {e}"),
        }
    }
}

impl std::error::Error for TwilioError {}

impl TwilioError {
    /// Could the message have been created despite this failure?
    ///
    /// Yes for a lost answer (reset, timeout, a cut body) and for a 5xx other
    /// than 503: a 500, 502 or 504 may come after the message was created (a
    /// gateway's 504 means the origin may still be working on it). No for an
    /// answer that refuses the request before taking it on (429, 503, 4xx) or
    /// a connection never made.
    pub fn may_have_been_accepted(&self) -> bool {
        match self {
            TwilioError::Ambiguous(_) => true,
            TwilioError::Api { status, .. } => (500..=599).contains(status) && *status != 503,
            TwilioError::Connect(_) => false,
        }
    }
}

/// What an endpoint does with a repeated [`IDEMPOTENCY_HEADER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdempotencyKeys {
    /// Ignored: every request may create a message. Twilio's Messages API.
    Ignored,
    /// Honoured: a repeated key gets the message the first request created,
    /// never a second one. The stand-in server; a deduplicating proxy or your
    /// own outbox in front of Twilio.
    Honoured,
}

/// Where the guard sends, and what that endpoint does with an idempotency
/// key. The two travel together, so that pointing the guard at Twilio cannot
/// keep a retry rule that was only safe against the stand-in.
///
/// # Default
///
/// [`Endpoint::twilio`]: Twilio's API, keys ignored, so a failure after which
/// the message may have been accepted is not retried ([`Ambiguity::DoNotRetry`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    base_url: String,
    keys: IdempotencyKeys,
}

impl Endpoint {
    /// Twilio's API, which does not deduplicate by idempotency key.
    pub fn twilio() -> Self {
        Self {
            base_url: TWILIO_API.to_owned(),
            keys: IdempotencyKeys::Ignored,
        }
    }

    /// An endpoint at `base_url` that honours idempotency keys (the stand-in).
    /// [`TwilioGuard::new`] refuses one that points at Twilio's own API.
    pub fn deduplicating(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            keys: IdempotencyKeys::Honoured,
        }
    }

    /// The same handling of keys at another address: `Endpoint::twilio().at(..)`
    /// is a test double (or a pass-through proxy) that behaves like Twilio.
    pub fn at(self, base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            ..self
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn keys(&self) -> IdempotencyKeys {
        self.keys
    }

    /// What the guard does with a failure after which the message may have
    /// been accepted: retry under the same key only where the key is honoured.
    pub fn ambiguity(&self) -> Ambiguity {
        match self.keys {
            IdempotencyKeys::Honoured => Ambiguity::RetryWithKey,
            IdempotencyKeys::Ignored => Ambiguity::DoNotRetry,
        }
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Self::twilio()
    }
}

/// What to do with a failure after which the message may have been accepted
/// ([`TwilioError::may_have_been_accepted`]); [`Endpoint::ambiguity`] decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ambiguity {
    /// Retry with the same idempotency key: the provider answers a repeated key
    /// with the message it already created (the stand-in server does). No
    /// double send, and no message lost to a dropped connection.
    RetryWithKey,
    /// Never retry: the message may have gone out, so a retry could send it
    /// twice. The rule against a provider that does not deduplicate by key
    /// (Twilio); the outcome is then "unknown" and the service must reconcile
    /// (Twilio's status callbacks, or listing the account's messages).
    DoNotRetry,
}

/// The classification of Twilio's errors: the table the tests check.
///
/// | failure | class | why |
/// | --- | --- | --- |
/// | 429 (code 20429) with `Retry-After` | `RetryAfter(hint)` | Twilio asked for quiet; the hint is a floor |
/// | 503, 429 without a hint | `Transient` | refused before it was taken on (503 with a hint: `RetryAfter`) |
/// | connection not established | `Transient` | the request never left: certainly not sent |
/// | 21211 invalid 'To', 21602 no body, other 4xx | `CallerFault` | this message is wrong; the account is fine |
/// | 20003 authentication failed (401), 20404 wrong account (404), 403 | `Permanent` | the org's credentials are broken: counted, trips that org's breaker |
/// | request sent, answer lost; 500, 502, 504 | with [`Ambiguity::RetryWithKey`] as any other (`Transient`), with [`Ambiguity::DoNotRetry`] `Permanent` | may have been accepted: see [`TwilioError::may_have_been_accepted`] |
pub fn classify(error: &TwilioError, ambiguity: Ambiguity) -> ErrorClass {
    if ambiguity == Ambiguity::DoNotRetry && error.may_have_been_accepted() {
        // Counted against the org's breaker like any provider failure, but
        // never sent again: the message may be out already.
        return ErrorClass::Permanent;
    }
    match error {
        TwilioError::Api {
            status,
            code,
            retry_after,
            ..
        } => match code {
            Some(codes::AUTHENTICATION_FAILED | codes::NOT_FOUND) => ErrorClass::Permanent,
            Some(codes::INVALID_TO | codes::BODY_REQUIRED) => ErrorClass::CallerFault,
            // The status decides the rest: 429/503 with a hint → RetryAfter,
            // 5xx → Transient, 401/403 → Permanent, other 4xx → CallerFault.
            _ => classify_http_status(*status, *retry_after),
        },
        TwilioError::Connect(_) | TwilioError::Ambiguous(_) => ErrorClass::Transient,
    }
}

/// The guard's settings. [`GuardConfig::default`] has the demo's scaled-down
/// timings (milliseconds); a real service wants seconds (see `twilio_guard.rs`).
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Where to send, and whether a failure after which the message may have
    /// been accepted is retried there. Default: Twilio's API, not retried.
    pub endpoint: Endpoint,
    pub max_retries: u32,
    /// The first backoff delay (exponential, factor 2, full jitter); zero
    /// retries at once.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// The longest `Retry-After` worth waiting for.
    pub max_retry_after: Duration,
    /// Per HTTP request, through reqwest, so that a timeout is classified like
    /// any other ambiguous failure (see `post_once`).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// The whole send, retries and waits included.
    pub deadline: Duration,
    pub retry_budget: RetryBudget,
    pub breaker: BreakerConfig,
    /// Messages of one batch in flight at once.
    pub concurrency: usize,
    /// How long a send may wait for an org's breaker to finish a cool-down
    /// that a `Retry-After` started, instead of failing fast. Zero: fail fast.
    pub cooldown_wait: Duration,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            endpoint: Endpoint::twilio(),
            max_retries: 3,
            backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
            request_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            deadline: Duration::from_secs(8),
            retry_budget: RetryBudget::default(),
            breaker: BreakerConfig::default()
                .consecutive_failures(3)
                .open_duration(Duration::from_secs(2)),
            concurrency: 4,
            cooldown_wait: Duration::from_secs(5),
        }
    }
}

/// The retry policy the guard sends with: Twilio's classification, the
/// config's backoff and limits.
///
/// No `attempt_timeout`: `SafeCall` counts an attempt timeout as transient and
/// retries it, but a timed-out POST may have created the message. reqwest's
/// own timeout comes back as an error that [`classify`] sees as ambiguous.
pub fn policy(config: &GuardConfig) -> Result<SafeCall<TwilioError>, ConfigError> {
    let ambiguity = config.endpoint.ambiguity();
    let backoff = if config.backoff.is_zero() {
        // Tests: retry at once, without touching the timer.
        Backoff::constant(Duration::ZERO)
    } else {
        Backoff::exponential(config.backoff)
            .max_delay(config.max_backoff)
            .jitter(Jitter::Full)
    };
    SafeCall::builder()
        .max_retries(config.max_retries)
        .backoff(backoff)
        .deadline(config.deadline)
        .max_retry_after(config.max_retry_after)
        .retry_budget(config.retry_budget)
        .classify(move |e: &TwilioError| classify(e, ambiguity))
        .build()
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Sms {
    pub to: String,
    pub body: String,
}

impl Sms {
    pub fn new(to: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            to: to.into(),
            body: body.into(),
        }
    }
}

/// A message Twilio accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Twilio's message SID (`SM...`).
    pub sid: String,
    /// HTTP requests made for this message.
    pub attempts: u32,
    /// The accepting answer was a replay of an earlier attempt's message: that
    /// attempt went through, but its answer was lost.
    pub replayed: bool,
}

/// Why a message was not sent, in the words a dashboard shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailReason {
    /// 21211: the 'To' number is not valid.
    InvalidRecipient,
    /// Another request error (4xx): the message was wrong.
    Rejected,
    /// 20003 / 401: the org's credentials are broken. Fix: re-enter them.
    BadCredentials,
    /// Twilio kept asking for quiet, or asked for longer than we wait.
    RateLimited,
    /// 5xx or unreachable, through every retry.
    ProviderUnavailable,
    /// The request went out and may have been accepted (no answer came back,
    /// or a 500/502/504), and retrying was not safe: the message may or may
    /// not have been sent.
    Unknown,
    /// The org's breaker refused the send: nothing was sent.
    CircuitOpen,
    /// The send's deadline passed.
    TimedOut,
    /// No Twilio account is configured for the org.
    NotConfigured,
}

impl FailReason {
    pub fn label(self) -> &'static str {
        match self {
            FailReason::InvalidRecipient => "invalid number",
            FailReason::Rejected => "rejected",
            FailReason::BadCredentials => "bad credentials",
            FailReason::RateLimited => "rate limited",
            FailReason::ProviderUnavailable => "provider unavailable",
            FailReason::Unknown => "unknown (may have been sent)",
            FailReason::CircuitOpen => "breaker open (not sent)",
            FailReason::TimedOut => "timed out",
            FailReason::NotConfigured => "not configured",
        }
    }
}

/// A message that was not sent (or, for [`FailReason::Unknown`], may have been).
#[derive(Debug)]
pub struct Failed {
    pub reason: FailReason,
    /// HTTP requests made for this message.
    pub attempts: u32,
    /// What ended the send, without credentials.
    pub detail: String,
}

/// One message's outcome.
pub type SmsOutcome = Result<Sent, Failed>;

/// What Twilio answers on success (a subset of the Message resource).
#[derive(Debug, Deserialize)]
struct MessageResource {
    sid: String,
}

/// Twilio's error body.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<u32>,
    message: Option<String>,
}

/// SMS through Twilio with a retry policy and a circuit breaker per org.
#[derive(Debug)]
pub struct TwilioGuard {
    http: reqwest::Client,
    base_url: String,
    policy: SafeCall<TwilioError>,
    breakers: BreakerRegistry<OrgId>,
    accounts: HashMap<OrgId, TwilioAccount>,
    concurrency: usize,
    cooldown_wait: Duration,
    /// Makes idempotency keys unique per process run and per message.
    key_prefix: String,
    next_key: AtomicU64,
}

impl TwilioGuard {
    /// A guard for `accounts` (one Twilio account per org).
    ///
    /// # Errors
    ///
    /// An invalid policy or breaker setting, an endpoint URL that does not
    /// parse, an [`Endpoint::deduplicating`] that points at Twilio's API (which
    /// does not deduplicate: retrying there sends twice), or an HTTP client
    /// that cannot be built.
    pub fn new(
        config: GuardConfig,
        accounts: HashMap<OrgId, TwilioAccount>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let url = reqwest::Url::parse(config.endpoint.base_url())?;
        let is_twilio = url
            .host_str()
            .is_some_and(|host| host == "twilio.com" || host.ends_with(".twilio.com"));
        if is_twilio && config.endpoint.keys() == IdempotencyKeys::Honoured {
            return Err(format!(
                "{url} does not deduplicate by {IDEMPOTENCY_HEADER}: \
                 use Endpoint::twilio(), which does not retry a send that may have gone out"
            )
            .into());
        }
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.connect_timeout)
            .build()?;
        Ok(Self {
            http,
            base_url: config.endpoint.base_url().trim_end_matches('/').to_owned(),
            policy: policy(&config)?,
            breakers: BreakerRegistry::try_new(config.breaker)?,
            accounts,
            concurrency: config.concurrency.max(1),
            cooldown_wait: config.cooldown_wait,
            key_prefix: format!("{:x}", random_u64()),
            next_key: AtomicU64::new(0),
        })
    }

    /// The per-org breakers, for a health endpoint or a summary.
    pub fn breakers(&self) -> &BreakerRegistry<OrgId> {
        &self.breakers
    }

    /// The state of `org`'s breaker.
    pub fn breaker_state(&self, org: &OrgId) -> BreakerState {
        self.breakers.get(org).state()
    }

    /// Sends one SMS for `org`, under a fresh idempotency key.
    pub async fn send_sms(&self, org: &OrgId, to: &str, body: &str) -> SmsOutcome {
        let key = self.new_key();
        self.send_with_key(org, to, body, &key).await
    }

    /// Sends `messages` for `org`, at most `concurrency` at a time, and returns
    /// each message's outcome in the order of `messages`.
    ///
    /// `buffer_unordered` starts the next message as soon as any one finishes
    /// (`buffered` would hold a slot until the oldest finishes: one message
    /// waiting out a `Retry-After` would stall the batch); the index puts the
    /// outcomes back in order.
    pub async fn send_batch(&self, org: &OrgId, messages: &[Sms]) -> Vec<SmsOutcome> {
        let mut outcomes: Vec<(usize, SmsOutcome)> = stream::iter(messages.iter().enumerate())
            .map(|(i, sms)| async move { (i, self.send_sms(org, &sms.to, &sms.body).await) })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        outcomes.sort_by_key(|(i, _)| *i);
        outcomes.into_iter().map(|(_, outcome)| outcome).collect()
    }

    /// Sends one SMS under the caller's idempotency key: a caller that retries
    /// a whole job (a queue redelivery) passes the same key again.
    pub async fn send_with_key(&self, org: &OrgId, to: &str, body: &str, key: &str) -> SmsOutcome {
        let Some(account) = self.accounts.get(org) else {
            return Err(Failed {
                reason: FailReason::NotConfigured,
                attempts: 0,
                detail: format!("no Twilio account for {org}"),
            });
        };
        let breaker = self.breakers.get(org);
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.base_url, account.account_sid
        );
        let mut attempts = 0u32;
        // Set when an attempt may have been accepted: a later refusal (an open
        // breaker, the deadline) must not report the message as "not sent".
        let maybe_sent = AtomicBool::new(false);
        let mut waited = Duration::ZERO;
        loop {
            // No double sends. Every attempt of this message carries the same
            // idempotency key. Where the endpoint honours it (the stand-in),
            // a failure after which the message may have been accepted (the
            // answer lost, a 500) is safe to retry: the endpoint answers a key
            // it has seen with the message it already created. Where it does
            // not (Twilio, the default `Endpoint`), `classify` ends the send on
            // such a failure, and it is reported as `FailReason::Unknown`;
            // only failures that certainly were not accepted (no connection,
            // 429, 503) are retried.
            let result = self
                .policy
                .call(|| {
                    attempts += 1;
                    let maybe_sent = &maybe_sent;
                    let post = self.post_once(&url, account, to, body, key);
                    async move {
                        let result = post.await;
                        if result
                            .as_ref()
                            .is_err_and(TwilioError::may_have_been_accepted)
                        {
                            maybe_sent.store(true, Ordering::Relaxed);
                        }
                        result
                    }
                })
                .breaker(&breaker)
                .await;
            match result {
                Ok((sid, replayed)) => {
                    return Ok(Sent {
                        sid,
                        attempts,
                        replayed,
                    });
                }
                // A `Retry-After` on another message of this org cools its
                // breaker down. Nothing was sent for this message, so waiting
                // out the cool-down and trying again is safe.
                Err(Error::CircuitOpen {
                    retry_in,
                    cause: RefusalCause::CoolingDown,
                    ..
                }) if waited + retry_in <= self.cooldown_wait => {
                    waited += retry_in;
                    tokio::time::sleep(retry_in).await;
                }
                Err(error) => {
                    let mut failed = failed(error, attempts);
                    if maybe_sent.load(Ordering::Relaxed) {
                        failed.reason = FailReason::Unknown;
                    }
                    return Err(failed);
                }
            }
        }
    }

    /// One HTTP request: `POST /2010-04-01/Accounts/{sid}/Messages.json` with a
    /// form body and basic auth, as Twilio's API takes it.
    async fn post_once(
        &self,
        url: &str,
        account: &TwilioAccount,
        to: &str,
        body: &str,
        key: &str,
    ) -> Result<(String, bool), TwilioError> {
        let response = self
            .http
            .post(url)
            .basic_auth(
                &account.account_sid,
                Some(account.auth_token.expose_secret()),
            )
            .header(IDEMPOTENCY_HEADER, key)
            .form(&[("To", to), ("From", account.from.as_str()), ("Body", body)])
            .send()
            .await
            .map_err(|e| {
                // Only a connection that was never made proves the request was
                // not sent; anything later (a reset, a timeout) is ambiguous.
                if e.is_connect() {
                    TwilioError::Connect(e.without_url().to_string())
                } else {
                    TwilioError::Ambiguous(e.without_url().to_string())
                }
            })?;
        let status = response.status();
        let headers = response.headers();
        let retry_after = headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let replayed = headers
            .get(REPLAYED_HEADER)
            .is_some_and(|v| v.as_bytes() == b"true");
        let bytes = response.bytes().await;

        if status.is_success() {
            // Accepted; without a readable body we cannot know the SID, so this
            // counts as ambiguous like a lost answer.
            let bytes = bytes.map_err(|e| TwilioError::Ambiguous(e.without_url().to_string()))?;
            let message: MessageResource = serde_json::from_slice(&bytes)
                .map_err(|e| TwilioError::Ambiguous(format!("unreadable answer: {e}")))?;
            return Ok((message.sid, replayed));
        }
        // An error status is an answer even if the body is lost.
        let parsed: Option<ErrorBody> = bytes.ok().and_then(|b| serde_json::from_slice(&b).ok());
        Err(TwilioError::Api {
            status: status.as_u16(),
            code: parsed.as_ref().and_then(|b| b.code),
            message: parsed
                .and_then(|b| b.message)
                .unwrap_or_else(|| status.to_string()),
            retry_after,
        })
    }

    fn new_key(&self) -> String {
        let n = self.next_key.fetch_add(1, Ordering::Relaxed);
        format!("sms-{}-{n}", self.key_prefix)
    }
}

/// Why a send ended, from the call's error.
fn failed(error: Error<TwilioError>, attempts: u32) -> Failed {
    let detail = match error.inner() {
        Some(inner) => format!("{error}: {inner}"),
        None => error.to_string(),
    };
    let reason = match &error {
        Error::CircuitOpen { .. } => FailReason::CircuitOpen,
        Error::Timeout { .. } => FailReason::TimedOut,
        _ => match error.inner() {
            Some(TwilioError::Api { status, code, .. }) => match (status, code) {
                (_, Some(codes::INVALID_TO)) => FailReason::InvalidRecipient,
                (401 | 403, _) | (_, Some(codes::AUTHENTICATION_FAILED | codes::NOT_FOUND)) => {
                    FailReason::BadCredentials
                }
                (429, _) => FailReason::RateLimited,
                (500..=599, _) => FailReason::ProviderUnavailable,
                _ => FailReason::Rejected,
            },
            Some(TwilioError::Connect(_)) => FailReason::ProviderUnavailable,
            Some(TwilioError::Ambiguous(_)) => FailReason::Unknown,
            None => FailReason::ProviderUnavailable,
        },
    };
    Failed {
        reason,
        attempts,
        detail,
    }
}

/// One org's outcomes, summed up for a report.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgSummary {
    pub org: OrgId,
    pub sent: u32,
    pub failed: BTreeMap<FailReason, u32>,
    /// Requests beyond the first, over all messages.
    pub retries: u32,
    pub breaker: BreakerState,
}

impl OrgSummary {
    pub fn new(guard: &TwilioGuard, org: &OrgId, outcomes: &[SmsOutcome]) -> Self {
        let mut summary = Self {
            org: org.clone(),
            sent: 0,
            failed: BTreeMap::new(),
            retries: 0,
            breaker: guard.breaker_state(org),
        };
        for outcome in outcomes {
            let attempts = match outcome {
                Ok(sent) => {
                    summary.sent += 1;
                    sent.attempts
                }
                Err(failed) => {
                    *summary.failed.entry(failed.reason).or_default() += 1;
                    failed.attempts
                }
            };
            summary.retries += attempts.saturating_sub(1);
        }
        summary
    }
}

impl fmt::Display for OrgSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failed = if self.failed.is_empty() {
            "-".to_owned()
        } else {
            self.failed
                .iter()
                .map(|(reason, n)| format!("{n} {}", reason.label()))
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "{:<10} sent {:>2}  retries {:>2}  breaker {:<9}  failed: {failed}",
            self.org.0,
            self.sent,
            self.retries,
            self.breaker.to_string(),
        )
    }
}

/// A per-process random number, from std's randomly keyed hasher (no `rand`
/// dependency for one key prefix; a service would use a UUID).
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.finish()
}
