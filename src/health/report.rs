//! [`HealthReport`]: what a run of the checks found.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// How well something works: one integration, or the service as a whole.
///
/// Ordered from best to worst (`Healthy < Degraded < Critical`), so the
/// overall status is the worst of the integrations'. The set is closed on
/// purpose: these three words are the contract of the
/// `/api/health/integrations` endpoint, and monitors match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum HealthStatus {
    /// Everything works.
    Healthy,
    /// Working, but something needs attention: a non-critical dependency is
    /// down, or a dependency works only in part.
    Degraded,
    /// A dependency the service cannot work without is down.
    Critical,
}

impl HealthStatus {
    /// The status as the JSON report spells it: `"healthy"`, `"degraded"` or
    /// `"critical"`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Critical => "critical",
        }
    }

    /// The HTTP status code a health endpoint answers with: 200 for healthy and
    /// degraded (the instance can still serve), 503 for critical (take it out of
    /// rotation).
    #[must_use]
    pub fn http_status(self) -> u16 {
        match self {
            HealthStatus::Healthy | HealthStatus::Degraded => 200,
            HealthStatus::Critical => 503,
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One integration's entry in a [`HealthReport`].
///
/// Its `status` is the integration's effect on the service: a non-critical check
/// that is down shows as `degraded`, a critical one as `critical` (the message
/// says what happened). So the report's status is always the worst entry's.
///
/// With the `serde` feature it serialises as
/// `{"name", "status", "message", "recommendation"?, "latency_ms"}`:
/// `recommendation` is left out when there is none, and `latency_ms` is a whole
/// number of milliseconds.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct IntegrationHealth {
    /// The check's name ("Database").
    pub name: String,
    /// The integration's effect on the service.
    pub status: HealthStatus,
    /// What the check found, in the check's own words ("PostgreSQL connection
    /// active"), or what went wrong with the check ("timed out after 2 s").
    pub message: String,
    /// What to do about it, in plain words; `None` when all is well.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub recommendation: Option<String>,
    /// How long the check ran (its timeout, if it was cut).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "latency_ms", serialize_with = "serialize_millis")
    )]
    pub latency: Duration,
}

#[cfg(feature = "serde")]
fn serialize_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// How many integrations are in each state.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct Summary {
    /// Integrations that are healthy.
    pub healthy: usize,
    /// Integrations that are degraded.
    pub degraded: usize,
    /// Integrations that are critical.
    pub critical: usize,
}

/// The result of running a set of [`HealthChecks`](super::HealthChecks): the
/// overall status, one entry per integration (in the order the checks were
/// added), and a count per status.
///
/// The overall status is the worst entry's: healthy when every integration is,
/// critical when any is, degraded otherwise. A report with no integrations is
/// healthy.
///
/// With the `serde` feature it serialises to the seed service's
/// `/api/health/integrations` shape:
///
/// ```json
/// {"status":"degraded",
///  "integrations":[{"name":"Database","status":"healthy","message":"PostgreSQL connection active","latency_ms":3}, ...],
///  "summary":{"healthy":3,"degraded":1,"critical":0}}
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct HealthReport {
    /// The service's status: the worst of the integrations'.
    pub status: HealthStatus,
    /// One entry per check, in the order the checks were added.
    pub integrations: Vec<IntegrationHealth>,
    /// How many integrations are in each state.
    pub summary: Summary,
    /// When the report was finished (tokio's clock). A cached report keeps the
    /// time it was made: `checked_at.elapsed()` is its age. Not serialised.
    #[cfg_attr(feature = "serde", serde(skip))]
    pub checked_at: Instant,
}

impl HealthReport {
    /// Folds entries into a report: the status is the worst entry's.
    pub(crate) fn from_integrations(integrations: Vec<IntegrationHealth>) -> Self {
        let mut summary = Summary::default();
        let mut status = HealthStatus::Healthy;
        for entry in &integrations {
            match entry.status {
                HealthStatus::Healthy => summary.healthy += 1,
                HealthStatus::Degraded => summary.degraded += 1,
                HealthStatus::Critical => summary.critical += 1,
            }
            status = status.max(entry.status);
        }
        Self {
            status,
            integrations,
            summary,
            checked_at: Instant::now(),
        }
    }

    /// The HTTP status code to answer with: 200 for healthy and degraded, 503 for
    /// critical.
    #[must_use]
    pub fn http_status(&self) -> u16 {
        self.status.http_status()
    }

    /// The entry of the integration with this name, if there is one.
    #[must_use]
    pub fn integration(&self, name: &str) -> Option<&IntegrationHealth> {
        self.integrations.iter().find(|entry| entry.name == name)
    }
}
