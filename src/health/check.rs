//! [`Check`]: one named probe of a dependency, and what it answers.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

/// How long a check may run before it is cut and reported as timed out, unless
/// [`Check::timeout`] says otherwise.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) type CheckFn =
    Arc<dyn Fn() -> BoxFuture<'static, Result<CheckOutcome, CheckError>> + Send + Sync>;

/// A named health check: an async probe of one dependency, with its own timeout
/// and a criticality.
///
/// The probe is a closure that returns a future of `Result<`[`CheckOutcome`]`,
/// `[`CheckError`]`>`; it is called afresh for every report. Build one with
/// [`Check::critical`] or [`Check::non_critical`]: the choice is spelled out at
/// the call site because it decides whether the service answers 503.
///
/// - A **critical** check that fails makes the whole report
///   [`Critical`](super::HealthStatus::Critical) (HTTP 503: a load balancer may take
///   the instance out). Use it for what the service cannot work without, and what
///   another instance might not lack: its database, its own disk.
/// - A **non-critical** check that fails makes the report
///   [`Degraded`](super::HealthStatus::Degraded) (HTTP 200). Use it for a provider
///   that some features need, or for a fault every instance shares (a missing
///   credential): taking every instance out would turn a partial outage into a
///   full one.
///
/// A check that answers [`CheckOutcome::degraded`] is degraded whatever its
/// criticality: the dependency works, so the service does too.
///
/// # Default
///
/// The timeout is [`DEFAULT_CHECK_TIMEOUT`] (2 s).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::health::{Check, CheckError, CheckOutcome};
///
/// let database = Check::critical("Database", || async {
///     // A real service pings its pool here.
///     let reachable = true;
///     if reachable {
///         Ok(CheckOutcome::healthy("PostgreSQL connection active"))
///     } else {
///         Err(CheckError::new("cannot reach PostgreSQL")
///             .recommend("Check the database host and the service's network access"))
///     }
/// })
/// .timeout(Duration::from_millis(400));
/// assert!(database.is_critical());
/// assert_eq!(database.name(), "Database");
/// ```
#[must_use = "a check does nothing until it is added to `HealthChecks`"]
pub struct Check {
    pub(crate) name: String,
    pub(crate) critical: bool,
    pub(crate) timeout: Duration,
    pub(crate) run: CheckFn,
}

impl Check {
    /// A check the service cannot work without: its failure makes the report
    /// critical.
    pub fn critical<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome, CheckError>> + Send + 'static,
    {
        Self::new(name.into(), true, check)
    }

    /// A check the service can limp along without: its failure makes the report
    /// degraded.
    pub fn non_critical<F, Fut>(name: impl Into<String>, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome, CheckError>> + Send + 'static,
    {
        Self::new(name.into(), false, check)
    }

    fn new<F, Fut>(name: String, critical: bool, check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<CheckOutcome, CheckError>> + Send + 'static,
    {
        Self {
            name,
            critical,
            timeout: DEFAULT_CHECK_TIMEOUT,
            run: Arc::new(move || -> BoxFuture<'static, _> { Box::pin(check()) }),
        }
    }

    /// How long the check may run; past it, the check is dropped and reported as
    /// "timed out after ...". Must be greater than zero (checked by
    /// [`HealthChecksBuilder::build`](super::HealthChecksBuilder::build)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The check's name, as the report shows it.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a failure of this check makes the report critical.
    #[must_use]
    pub fn is_critical(&self) -> bool {
        self.critical
    }
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("name", &self.name)
            .field("critical", &self.critical)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// What a check that ran to the end reports: the dependency works, fully or in
/// part.
///
/// A dependency that does not work is reported with a [`CheckError`] instead.
/// The message is shown as written: it is the check's job to keep credentials
/// out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct CheckOutcome {
    pub(crate) degraded: bool,
    pub(crate) message: String,
    pub(crate) recommendation: Option<String>,
}

impl CheckOutcome {
    /// The dependency works ("PostgreSQL connection active").
    pub fn healthy(message: impl Into<String>) -> Self {
        Self {
            degraded: false,
            message: message.into(),
            recommendation: None,
        }
    }

    /// The dependency works in part, or will stop working soon without help ("No
    /// authenticated user or org_id", "token expires in 3 min"). Reported as
    /// degraded even for a critical check.
    pub fn degraded(message: impl Into<String>) -> Self {
        Self {
            degraded: true,
            message: message.into(),
            recommendation: None,
        }
    }

    /// What a reader should do about it, in plain words.
    pub fn recommend(mut self, recommendation: impl Into<String>) -> Self {
        self.recommendation = Some(recommendation.into());
        self
    }

    /// Whether the dependency works only in part.
    #[must_use]
    pub fn is_degraded(&self) -> bool {
        self.degraded
    }

    /// The message, as the report shows it.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// A check found its dependency down: the message (and a recommendation) to
/// report.
///
/// It converts from a `&str` or a `String`, so a check can write
/// `.map_err(|_| "cannot open the database")?`. It deliberately does **not**
/// convert from arbitrary errors: an error's text can carry a credential (a URL
/// with a token in its query, a connection string with a password), so the check
/// chooses the words the report shows. The health module never formats an error
/// of its own accord, neither with `Display` nor with `Debug`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CheckError {
    pub(crate) message: String,
    pub(crate) recommendation: Option<String>,
}

impl CheckError {
    /// A failure with this message ("cannot reach PostgreSQL").
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            recommendation: None,
        }
    }

    /// What a reader should do about it, in plain words.
    #[must_use]
    pub fn recommend(mut self, recommendation: impl Into<String>) -> Self {
        self.recommendation = Some(recommendation.into());
        self
    }

    /// The message, as the report shows it.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The recommendation, if the check gave one.
    #[must_use]
    pub fn recommendation(&self) -> Option<&str> {
        self.recommendation.as_deref()
    }
}

impl From<&str> for CheckError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<String> for CheckError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}
