//! [`BreakerCheck`]: circuit breakers folded into one integration entry.

use std::fmt::{self, Display, Write as _};
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::check::{Check, CheckOutcome, DEFAULT_CHECK_TIMEOUT};
use super::plain_duration;
use crate::{BreakerSnapshot, BreakerState, TransitionCause};

/// How many keys a breaker entry names before it says "and N more".
pub const DEFAULT_MAX_LISTED: usize = 10;

/// How many keys the recommendation names.
const KEYS_IN_RECOMMENDATION: usize = 3;

/// A set of circuit breakers reported as one integration: healthy when every
/// breaker is closed, degraded when any is open or half-open.
///
/// The breakers come from a closure returning their snapshots, usually
/// `move || registry.snapshot()`, so the entry does not care where they live (one
/// registry per provider, several merged, a test's own list). The degraded entry
/// names the keys that are not closed (the first [`max_listed`](Self::max_listed)
/// in key order, plus a count of the rest), each with its state, its run of
/// failures and the time to its next probe; the recommendation says in plain words
/// what to check and when the next probe is due.
///
/// An open breaker degrades the service, never makes it critical: it protects the
/// provider from one tenant's failing calls, and the other tenants still work.
///
/// Keys are shown with their `Display`: a key must not be a secret (use a tenant
/// id, not an API key).
///
/// # Examples
///
/// ```
/// # use std::time::Duration;
/// use safecall::health::{BreakerCheck, HealthChecks, HealthStatus};
/// use safecall::{BreakerSnapshot, BreakerState};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), safecall::ConfigError> {
/// # let registry = std::sync::Arc::new(safecall::BreakerRegistry::<String>::default());
/// // `registry` is a `BreakerRegistry<String>` shared with the code making calls.
/// let checks = HealthChecks::builder()
///     .check(BreakerCheck::new("Circuit Breakers", move || registry.snapshot()).dependency("Twilio"))
///     .build()?;
/// let report = checks.run().await;
/// assert_eq!(report.status, HealthStatus::Healthy);
/// assert_eq!(report.integrations[0].message, "All circuit breakers closed");
/// # Ok(())
/// # }
/// ```
#[must_use = "a breaker check does nothing until it is added to `HealthChecks`"]
pub struct BreakerCheck<K, F> {
    name: String,
    snapshots: F,
    dependency: Option<String>,
    max_listed: usize,
    _key: PhantomData<fn() -> K>,
}

impl<K, F> BreakerCheck<K, F>
where
    K: Display + 'static,
    F: Fn() -> Vec<BreakerSnapshot<K>> + Send + Sync + 'static,
{
    /// An entry named `name` for the breakers that `snapshots` returns.
    pub fn new(name: impl Into<String>, snapshots: F) -> Self {
        Self {
            name: name.into(),
            snapshots,
            dependency: None,
            max_listed: DEFAULT_MAX_LISTED,
            _key: PhantomData,
        }
    }

    /// The provider these breakers guard ("Twilio"), named in the recommendation:
    /// "Twilio calls for org-46cf are failing ...".
    pub fn dependency(mut self, name: impl Into<String>) -> Self {
        self.dependency = Some(name.into());
        self
    }

    /// How many keys the message names before "and N more" (default
    /// [`DEFAULT_MAX_LISTED`], 10). Keeps the report small when thousands of
    /// tenants are affected.
    pub fn max_listed(mut self, max_listed: usize) -> Self {
        self.max_listed = max_listed;
        self
    }
}

impl<K, F> fmt::Debug for BreakerCheck<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerCheck")
            .field("name", &self.name)
            .field("dependency", &self.dependency)
            .field("max_listed", &self.max_listed)
            .finish_non_exhaustive()
    }
}

impl<K, F> From<BreakerCheck<K, F>> for Check
where
    K: Display + 'static,
    F: Fn() -> Vec<BreakerSnapshot<K>> + Send + Sync + 'static,
{
    fn from(check: BreakerCheck<K, F>) -> Check {
        let BreakerCheck {
            name,
            snapshots,
            dependency,
            max_listed,
            _key,
        } = check;
        // The fold runs before the future is made, so neither the snapshots nor
        // the keys need to be `Send`.
        let run = move || -> BoxFuture<'static, _> {
            let outcome = fold(&snapshots(), dependency.as_deref(), max_listed);
            Box::pin(std::future::ready(Ok(outcome)))
        };
        Check {
            name,
            critical: false,
            timeout: DEFAULT_CHECK_TIMEOUT,
            run: Arc::new(run),
        }
    }
}

/// Folds breaker snapshots into an outcome: healthy when all are closed,
/// degraded otherwise, with the keys, the next probe and a recommendation.
pub(crate) fn fold<K: Display>(
    snapshots: &[BreakerSnapshot<K>],
    dependency: Option<&str>,
    max_listed: usize,
) -> CheckOutcome {
    let mut tripped: Vec<(String, &BreakerSnapshot<K>)> = snapshots
        .iter()
        .filter(|s| s.state != BreakerState::Closed)
        .map(|s| (s.key.to_string(), s))
        .collect();
    if tripped.is_empty() {
        return CheckOutcome::healthy("All circuit breakers closed");
    }
    tripped.sort_by(|a, b| a.0.cmp(&b.0));

    let mut message = format!(
        "{} of {} circuit breaker{} not closed: ",
        tripped.len(),
        snapshots.len(),
        if snapshots.len() == 1 { "" } else { "s" },
    );
    for (i, (key, snapshot)) in tripped.iter().take(max_listed).enumerate() {
        if i > 0 {
            message.push_str(", ");
        }
        let _ = write!(message, "{key} ({})", describe(snapshot));
    }
    let unlisted = tripped.len().saturating_sub(max_listed);
    if unlisted > 0 {
        let _ = write!(message, " and {unlisted} more");
    }

    let recommendation = recommend(&tripped, dependency);
    CheckOutcome::degraded(message).recommend(recommendation)
}

/// One breaker in a few words: "open after 5 consecutive failures, next probe
/// in 12 s".
fn describe<K>(snapshot: &BreakerSnapshot<K>) -> String {
    let why = match snapshot.tripped_by {
        Some(TransitionCause::FailureRate) => format!(
            " on a {:.0} % failure rate ({} of {} calls)",
            snapshot.failure_rate * 100.0,
            snapshot.failures_in_window,
            snapshot.calls_in_window
        ),
        Some(TransitionCause::Forced) => " by hand (forced open until reset)".to_owned(),
        Some(TransitionCause::ProbeFailed) => " again after a failed probe".to_owned(),
        _ if snapshot.cooling_down => {
            " while the provider asked for quiet (Retry-After)".to_owned()
        }
        _ if snapshot.remote_hold.is_some() => snapshot
            .remote_hold
            .map(|origin| format!(" on the word of replica {origin} of the fleet"))
            .unwrap_or_default(),
        _ => match snapshot.consecutive_failures {
            0 => String::new(),
            1 => " after 1 failure".to_owned(),
            n => format!(" after {n} consecutive failures"),
        },
    };
    match (snapshot.state, snapshot.retry_in) {
        (BreakerState::HalfOpen, _) => format!("half-open{why}, probing now"),
        (_, Some(retry_in)) => {
            format!("open{why}, next probe in {}", plain_duration(retry_in))
        }
        (_, None) => format!("open{why}, no probe scheduled"),
    }
}

fn recommend<K>(tripped: &[(String, &BreakerSnapshot<K>)], dependency: Option<&str>) -> String {
    let calls = dependency.map_or_else(|| "Calls".to_owned(), |d| format!("{d} calls"));
    let provider = dependency.map_or_else(|| "the provider's".to_owned(), |d| format!("{d}'s"));
    let credentials =
        dependency.map_or_else(|| "credentials".to_owned(), |d| format!("{d} credentials"));
    let mut text = match tripped {
        [(key, _)] => format!(
            "{calls} for {key} are failing and its circuit breaker is refusing them; \
             check its {credentials} and {provider} status"
        ),
        _ => {
            let named: Vec<&str> = tripped
                .iter()
                .take(KEYS_IN_RECOMMENDATION)
                .map(|(key, _)| key.as_str())
                .collect();
            let more = if tripped.len() > KEYS_IN_RECOMMENDATION {
                ", ..."
            } else {
                ""
            };
            format!(
                "{calls} for {} keys ({}{more}) are failing and their circuit breakers \
                 are refusing them; if only a few keys are affected, check their \
                 {credentials}; if most are, check {provider} status",
                tripped.len(),
                named.join(", "),
            )
        }
    };
    let next_probe: Option<Duration> = tripped
        .iter()
        .filter(|(_, s)| s.state == BreakerState::Open)
        .filter_map(|(_, s)| s.retry_in)
        .min();
    let probing = tripped
        .iter()
        .any(|(_, s)| s.state == BreakerState::HalfOpen);
    match (next_probe, probing) {
        (Some(d), true) => {
            let _ = write!(
                text,
                "; a probe is running now, the next in {}",
                plain_duration(d)
            );
        }
        (Some(d), false) => {
            let _ = write!(text, "; next probe in {}", plain_duration(d));
        }
        (None, true) => text.push_str("; a probe is running now"),
        (None, false) => text.push_str(
            "; no probe is scheduled (a breaker forced open stays open until it is reset)",
        ),
    }
    text.push('.');
    text
}
