//! Health checks: named probes of a service's dependencies, run concurrently,
//! each under its own timeout, folded with the circuit breakers' state into one
//! [`HealthReport`] that a `/health` endpoint can serve.
//!
//! # Why a report, and not a boolean
//!
//! A health endpoint is read by a load balancer (is this instance worth
//! traffic?), by a monitor (is anything wrong?) and by a person or an agent on
//! call (what is wrong, and what do I do?). A boolean serves only the first. So
//! a report says, per integration, a status, what the check saw and, when
//! something is wrong, a recommendation in plain words; the overall status is
//! the worst integration's, and [`HealthReport::http_status`] maps it to 200 or
//! 503.
//!
//! # How the status folds
//!
//! | the check | non-critical | critical |
//! | --- | --- | --- |
//! | answers [`CheckOutcome::healthy`] | healthy | healthy |
//! | answers [`CheckOutcome::degraded`] | degraded | degraded |
//! | fails ([`CheckError`]), times out or panics | degraded | critical |
//!
//! The service is healthy when every integration is, critical when any is,
//! degraded otherwise. A critical check that is only degraded (a token about to
//! expire, a replica lagging) degrades the service but keeps it in rotation:
//! 503 is for an instance that cannot serve. Circuit breakers fold in through a
//! [`BreakerCheck`]: healthy when all are closed, degraded when any is open or
//! half-open, never critical (one tenant's open breaker protects a provider;
//! the other tenants still work).
//!
//! # A check can hang, fail or panic; the report still arrives
//!
//! The checks run concurrently on the caller's task (no task is spawned and no
//! runtime feature beyond tokio's timer is needed), so a report takes as long
//! as its slowest check, and no longer than the longest timeout. A check that
//! runs past its timeout is dropped and reported as "timed out after 2 s"; a
//! check that returns an error is reported with the error's message; a check
//! that panics is reported as having panicked (the panic hook still prints it).
//! None of them stops the others or the report.
//!
//! A check runs on the caller's task, so it must not block the thread: a
//! blocking client (a synchronous database driver) belongs in
//! `tokio::task::spawn_blocking`, as `examples/health_endpoint.rs` does. A
//! timeout can drop a future, not stop a blocked thread.
//!
//! # Caching and single flight
//!
//! A hot health endpoint must not turn every probe of a load balancer into a
//! call to every provider. With [`cache_for`](HealthChecksBuilder::cache_for),
//! a report is served again until it is that old, and the requests that arrive
//! while a report is being made wait for it and share it (single flight): the
//! providers see at most one round of checks per interval, whatever the
//! request rate. Caching is off by default.
//!
//! # Secrets
//!
//! A report is meant to be shown, so it carries nothing a check did not write:
//! the module never formats an error of its own accord, neither with `Display`
//! nor with `Debug`, and a panic's payload is not reported. Write messages that
//! name the problem, never the credential ("Twilio auth token not set", not
//! the token). Breaker keys are shown with their `Display`: key breakers by
//! tenant id, never by a secret.
//!
//! All time comes from tokio's clock, so timeouts and cache ages are exact
//! under `#[tokio::test(start_paused = true)]`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use safecall::health::{Check, CheckError, HealthChecks, HealthStatus, CheckOutcome};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), safecall::ConfigError> {
//! let checks = HealthChecks::builder()
//!     .check(Check::critical("Database", || async {
//!         Ok(CheckOutcome::healthy("PostgreSQL connection active"))
//!     }))
//!     .check(
//!         Check::non_critical("Google Calendar", || async {
//!             std::future::pending().await // a provider that never answers
//!         })
//!         .timeout(Duration::from_secs(2)),
//!     )
//!     .check(Check::non_critical("Twilio", || async {
//!         Err(CheckError::new("TWILIO_AUTH_TOKEN is not set")
//!             .recommend("Set TWILIO_AUTH_TOKEN in the service's environment"))
//!     }))
//!     .cache_for(Duration::from_secs(5))
//!     .build()?;
//!
//! let started = tokio::time::Instant::now();
//! let report = checks.run().await;
//! assert_eq!(started.elapsed(), Duration::from_secs(2)); // cut at the timeout
//! assert_eq!(report.status, HealthStatus::Degraded);
//! assert_eq!(report.http_status(), 200);
//! assert_eq!(report.integrations[1].message, "timed out after 2 s");
//! assert_eq!((report.summary.healthy, report.summary.degraded), (1, 2));
//! # Ok(())
//! # }
//! ```

mod breakers;
mod check;
mod report;

use std::collections::HashSet;
use std::fmt;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::join_all;
use tokio::time::Instant;

pub use breakers::{BreakerCheck, DEFAULT_MAX_LISTED};
pub use check::{Check, CheckError, CheckOutcome, DEFAULT_CHECK_TIMEOUT};

/// The 0.1 name of [`CheckOutcome`], renamed so that it is not confused with
/// the breaker's [`Outcome`](crate::Outcome).
#[doc(hidden)]
#[deprecated(since = "0.2.0", note = "renamed to `CheckOutcome`")]
pub type Outcome = CheckOutcome;
pub use report::{HealthReport, HealthStatus, IntegrationHealth, Summary};

use crate::{BreakerSnapshot, ConfigError};

/// A set of health checks, run together into a [`HealthReport`].
///
/// Build one with [`HealthChecks::builder`], keep it (it is cheap to clone: an
/// `Arc` inside, and clones share the cache), and call [`run`](Self::run) per
/// request. See the [module documentation](self) for how statuses fold.
#[derive(Clone)]
pub struct HealthChecks {
    inner: Arc<Inner>,
}

struct Inner {
    checks: Vec<Check>,
    cache_for: Duration,
    /// The last report. Held across a run, so concurrent callers share one run.
    cache: tokio::sync::Mutex<Option<HealthReport>>,
}

impl fmt::Debug for HealthChecks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecks")
            .field("checks", &self.inner.checks)
            .field("cache_for", &self.inner.cache_for)
            .finish_non_exhaustive()
    }
}

impl HealthChecks {
    /// A builder with no checks and no caching.
    pub fn builder() -> HealthChecksBuilder {
        HealthChecksBuilder {
            checks: Vec::new(),
            cache_for: Duration::ZERO,
        }
    }

    /// Runs every check concurrently and folds the results into a report, or
    /// returns the cached report if it is younger than the cache interval.
    ///
    /// It completes within the longest check timeout (plus, with caching, the
    /// wait for a run already in flight).
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops the checks in flight; nothing is cached, and
    /// the next call (or a caller that was waiting for this run) runs the checks
    /// afresh.
    pub async fn run(&self) -> HealthReport {
        let inner = &*self.inner;
        if inner.cache_for.is_zero() {
            return run_checks(&inner.checks).await;
        }
        let mut cached = inner.cache.lock().await;
        if let Some(report) = cached.as_ref() {
            if report.checked_at.elapsed() < inner.cache_for {
                return report.clone();
            }
        }
        let report = run_checks(&inner.checks).await;
        *cached = Some(report.clone());
        report
    }
}

/// Builds [`HealthChecks`].
///
/// # Default
///
/// No checks; caching off.
#[must_use = "a builder does nothing until `build` is called"]
pub struct HealthChecksBuilder {
    checks: Vec<Check>,
    cache_for: Duration,
}

impl fmt::Debug for HealthChecksBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HealthChecksBuilder")
            .field("checks", &self.checks)
            .field("cache_for", &self.cache_for)
            .finish()
    }
}

impl HealthChecksBuilder {
    /// Adds a check: a [`Check`] or a [`BreakerCheck`]. The report lists the
    /// integrations in the order they were added.
    pub fn check(mut self, check: impl Into<Check>) -> Self {
        self.checks.push(check.into());
        self
    }

    /// Adds the circuit breakers that `snapshots` returns as one integration
    /// named `name`: shorthand for `.check(BreakerCheck::new(name, snapshots))`.
    pub fn breakers<K, F>(self, name: impl Into<String>, snapshots: F) -> Self
    where
        K: fmt::Display + 'static,
        F: Fn() -> Vec<BreakerSnapshot<K>> + Send + Sync + 'static,
    {
        self.check(BreakerCheck::new(name, snapshots))
    }

    /// Serves a report again until it is this old, and lets concurrent callers
    /// share one run (see the [module documentation](self)). Zero (the
    /// default) turns caching off: every [`run`](HealthChecks::run) runs the
    /// checks.
    pub fn cache_for(mut self, interval: Duration) -> Self {
        self.cache_for = interval;
        self
    }

    /// Checks the configuration and builds the checks.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] when a check has an empty name (`check.name`: "must not
    /// be empty"), two checks share a name (`check.name`: "must be unique"), or a
    /// check's timeout is zero (`check.timeout`: "must be greater than zero").
    pub fn build(self) -> Result<HealthChecks, ConfigError> {
        let mut names = HashSet::with_capacity(self.checks.len());
        for check in &self.checks {
            if check.name.trim().is_empty() {
                return Err(ConfigError::new("check.name", "must not be empty"));
            }
            if !names.insert(check.name.as_str()) {
                return Err(ConfigError::new(
                    "check.name",
                    format!("must be unique, got {:?} twice", check.name),
                ));
            }
            if check.timeout.is_zero() {
                return Err(ConfigError::new(
                    "check.timeout",
                    format!("must be greater than zero, got 0 for {:?}", check.name),
                ));
            }
        }
        Ok(HealthChecks {
            inner: Arc::new(Inner {
                checks: self.checks,
                cache_for: self.cache_for,
                cache: tokio::sync::Mutex::new(None),
            }),
        })
    }
}

async fn run_checks(checks: &[Check]) -> HealthReport {
    let entries = join_all(checks.iter().map(run_one)).await;
    HealthReport::from_integrations(entries)
}

/// What became of one check, before criticality is applied.
enum Finding {
    Healthy,
    Degraded,
    Down,
}

async fn run_one(check: &Check) -> IntegrationHealth {
    let started = Instant::now();
    let run = Arc::clone(&check.run);
    // The closure is called inside the guarded future, so a panic while making
    // the future is caught as well as one while polling it.
    let guarded = AssertUnwindSafe(async move { run().await }).catch_unwind();
    let result = tokio::time::timeout(check.timeout, guarded).await;
    let latency = started.elapsed();

    let (finding, message, recommendation) = match result {
        Ok(Ok(Ok(outcome))) => {
            let finding = if outcome.degraded {
                Finding::Degraded
            } else {
                Finding::Healthy
            };
            (finding, outcome.message, outcome.recommendation)
        }
        Ok(Ok(Err(error))) => (Finding::Down, error.message, error.recommendation),
        Ok(Err(_panic)) => {
            tracing::warn!(check = %check.name, "health check panicked");
            (
                Finding::Down,
                "the health check panicked".to_owned(),
                Some("The check itself failed, not necessarily the dependency: see the service's logs for the panic.".to_owned()),
            )
        }
        Err(_elapsed) => {
            tracing::warn!(check = %check.name, timeout = ?check.timeout, "health check timed out");
            (
                Finding::Down,
                format!("timed out after {}", plain_duration(check.timeout)),
                Some(format!(
                    "{} did not answer within {}: it may be slow or unreachable; check its status and the network path to it.",
                    check.name,
                    plain_duration(check.timeout)
                )),
            )
        }
    };
    let status = fold_status(finding, check.critical);
    tracing::debug!(check = %check.name, %status, ?latency, "health check finished");
    IntegrationHealth {
        name: check.name.clone(),
        status,
        message,
        recommendation,
        latency,
    }
}

/// The table in the module documentation.
fn fold_status(finding: Finding, critical: bool) -> HealthStatus {
    match (finding, critical) {
        (Finding::Healthy, _) => HealthStatus::Healthy,
        (Finding::Degraded, _) | (Finding::Down, false) => HealthStatus::Degraded,
        (Finding::Down, true) => HealthStatus::Critical,
    }
}

/// A duration in plain words: "250 ms", "2 s", "1.5 s", "12 s", "2 min 5 s".
/// Rounded up, so a wait is never understated as zero.
pub(crate) fn plain_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        let ms = if ms == 0 && !d.is_zero() { 1 } else { ms };
        return format!("{ms} ms");
    }
    if ms < 10_000 && ms % 1_000 != 0 {
        let tenths = ms.div_ceil(100);
        return if tenths % 10 == 0 {
            format!("{} s", tenths / 10)
        } else {
            format!("{}.{} s", tenths / 10, tenths % 10)
        };
    }
    let secs = ms.div_ceil(1_000);
    if secs < 120 {
        return format!("{secs} s");
    }
    match (secs / 60, secs % 60) {
        (min, 0) => format!("{min} min"),
        (min, s) => format!("{min} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_plainly_and_round_up() {
        let cases = [
            (Duration::ZERO, "0 ms"),
            (Duration::from_micros(1), "1 ms"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_secs(2), "2 s"),
            (Duration::from_millis(1_500), "1.5 s"),
            (Duration::from_millis(1_950), "2 s"),
            (Duration::from_millis(11_200), "12 s"),
            (Duration::from_secs(60), "60 s"),
            (Duration::from_secs(120), "2 min"),
            (Duration::from_secs(125), "2 min 5 s"),
        ];
        for (d, text) in cases {
            assert_eq!(plain_duration(d), text, "{d:?}");
        }
    }

    #[test]
    fn status_folds_by_criticality() {
        use HealthStatus::{Critical, Degraded, Healthy};
        assert_eq!(fold_status(Finding::Healthy, true), Healthy);
        assert_eq!(fold_status(Finding::Degraded, true), Degraded);
        assert_eq!(fold_status(Finding::Down, true), Critical);
        assert_eq!(fold_status(Finding::Healthy, false), Healthy);
        assert_eq!(fold_status(Finding::Degraded, false), Degraded);
        assert_eq!(fold_status(Finding::Down, false), Degraded);
    }
}
