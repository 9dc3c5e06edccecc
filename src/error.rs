//! The errors a call can end with, and the error a bad configuration is refused with.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use crate::breaker::RefusalCause;

/// Why [`Error::Exhausted`] gave up: which limit allowed no further attempt.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExhaustedReason {
    /// Every attempt that `max_retries` allows was made.
    RetriesUsedUp,
    /// This client's own retry budget was empty: the policy has retried too much
    /// lately across all of its calls. The limit is local, not the server's.
    BudgetEmpty,
    /// The next wait would end at or after the call's deadline, so it was not
    /// started.
    DeadlineTooClose,
    /// The server asked to wait longer than `max_retry_after` allows.
    RetryAfterTooLong {
        /// The server's hint.
        hint: Duration,
    },
    /// The attempt would have been retried, but its request could not be
    /// cloned for another attempt (a streamed body, say): the `clone_request`
    /// of the tower layer (feature `tower`) returned `None`. A `tracing`
    /// warning says so when it happens.
    NotReplayable,
}

impl fmt::Display for ExhaustedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExhaustedReason::RetriesUsedUp => f.write_str("retries used up"),
            ExhaustedReason::BudgetEmpty => f.write_str(
                "this client's retry budget is empty (a local limit on retries, not the server's)",
            ),
            ExhaustedReason::DeadlineTooClose => {
                f.write_str("the next wait would not fit before the deadline")
            }
            ExhaustedReason::NotReplayable => {
                f.write_str("the request could not be cloned for another attempt")
            }
            ExhaustedReason::RetryAfterTooLong { hint } => {
                write!(
                    f,
                    "the server asked to wait {hint:?}, longer than max_retry_after"
                )
            }
        }
    }
}

/// Which time limit [`Error::Timeout`] reports.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// The deadline of the whole call passed.
    Deadline,
    /// The last allowed attempt ran past its attempt timeout.
    Attempt,
}

/// How a call through [`SafeCall`](crate::SafeCall) failed.
///
/// Every variant carries `attempts`: how many times the operation was actually
/// invoked. [`Display`](fmt::Display) describes this layer only ("gave up after 4
/// attempts: retries used up"); the operation's own error is reached through
/// [`std::error::Error::source`] or [`Error::into_inner`], so an error chain never
/// shows it twice.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// The classifier said retrying cannot help ([`ErrorClass::Permanent`] or
    /// [`ErrorClass::CallerFault`]); returned at once.
    ///
    /// [`ErrorClass::Permanent`]: crate::ErrorClass::Permanent
    /// [`ErrorClass::CallerFault`]: crate::ErrorClass::CallerFault
    #[error("failed after {attempts} attempt{}: not retryable ({class:?})", plural(*.attempts))]
    Permanent {
        /// The operation's error.
        #[source]
        source: E,
        /// How many times the operation was invoked.
        attempts: u32,
        /// The class the classifier gave `source`.
        class: crate::ErrorClass,
    },
    /// The last attempt failed and no further attempt was allowed.
    #[error("gave up after {attempts} attempt{}: {reason}", plural(*.attempts))]
    Exhausted {
        /// The last attempt's error.
        #[source]
        source: E,
        /// How many times the operation was invoked.
        attempts: u32,
        /// Which limit allowed no further attempt.
        reason: ExhaustedReason,
    },
    /// The deadline passed (an attempt in flight was dropped), or the last
    /// allowed attempt hit its attempt timeout.
    #[error("timed out after {attempts} attempt{}: {}", plural(*.attempts), TimeoutText(*.kind, *.reason))]
    Timeout {
        /// How many times the operation was invoked.
        attempts: u32,
        /// Which limit passed.
        kind: TimeoutKind,
        /// For [`TimeoutKind::Attempt`], why no further attempt was made after
        /// the one that timed out (retries used up, budget empty, deadline too
        /// close); `None` for the call's deadline, or when the timeout's class
        /// is not retryable.
        reason: Option<ExhaustedReason>,
        /// The operation's last error, from an earlier attempt that failed
        /// before the one that timed out (or the deadline passed); `None` if
        /// no attempt returned one.
        #[source]
        last_error: Option<E>,
    },
    /// The circuit breaker refused an attempt; the operation was not invoked for
    /// it.
    #[error("circuit open ({cause}) after {attempts} attempt{}: next probe allowed in {retry_in:?}", plural(*.attempts))]
    CircuitOpen {
        /// Time until the breaker lets a probe through.
        retry_in: Duration,
        /// Why the breaker refused: tripped by failures, forced open, cooling
        /// down on a server's retry-after hint, or half-open and busy.
        cause: RefusalCause,
        /// How many times the operation was invoked before the refusal.
        attempts: u32,
        /// The operation's last error when the breaker refused a retry in the
        /// middle of the call; `None` when the first attempt was refused (or
        /// no attempt returned an error).
        #[source]
        last_error: Option<E>,
    },
    /// The call's [`Bulkhead`](crate::Bulkhead) had no free permit (within its
    /// `max_wait`, if it queues): a limit of this client's own, never retried
    /// and never held against a breaker. The operation was not invoked.
    #[error("bulkhead full after {attempts} attempt{}: no free permit (waited {waited:?}; a limit of this client's own)", plural(*.attempts))]
    BulkheadFull {
        /// How long the call queued for a permit (zero without `max_wait`).
        waited: Duration,
        /// How many times the operation was invoked (always 0: the permit is
        /// taken before the first attempt).
        attempts: u32,
    },
}

/// Displays a timeout's limit and, after an attempt timeout, why the call
/// stopped there.
struct TimeoutText(TimeoutKind, Option<ExhaustedReason>);

impl fmt::Display for TimeoutText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            TimeoutKind::Deadline => f.write_str("the call's deadline passed"),
            TimeoutKind::Attempt => {
                f.write_str("the last attempt hit its attempt timeout")?;
                match self.1 {
                    Some(reason) => write!(f, " ({reason})"),
                    None => Ok(()),
                }
            }
        }
    }
}

fn plural(n: u32) -> &'static str {
    if n == 1 { "" } else { "s" }
}

impl<E> Error<E> {
    /// How many times the operation was invoked.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        match self {
            Error::Permanent { attempts, .. }
            | Error::Exhausted { attempts, .. }
            | Error::Timeout { attempts, .. }
            | Error::CircuitOpen { attempts, .. }
            | Error::BulkheadFull { attempts, .. } => *attempts,
        }
    }

    /// The operation's own last error, where there is one: the error the call
    /// ended on ([`Error::Permanent`], [`Error::Exhausted`]), or the last error
    /// an earlier attempt returned before a timeout or a breaker refusal ended
    /// the call.
    ///
    /// `None` when no attempt returned an error (the first attempt was
    /// refused, or every attempt timed out).
    #[must_use]
    pub fn into_inner(self) -> Option<E> {
        match self {
            Error::Permanent { source, .. } | Error::Exhausted { source, .. } => Some(source),
            Error::Timeout { last_error, .. } | Error::CircuitOpen { last_error, .. } => last_error,
            Error::BulkheadFull { .. } => None,
        }
    }

    /// A reference to the operation's own last error, where there is one (see
    /// [`into_inner`](Self::into_inner)).
    #[must_use]
    pub fn inner(&self) -> Option<&E> {
        match self {
            Error::Permanent { source, .. } | Error::Exhausted { source, .. } => Some(source),
            Error::Timeout { last_error, .. } | Error::CircuitOpen { last_error, .. } => {
                last_error.as_ref()
            }
            Error::BulkheadFull { .. } => None,
        }
    }

    /// Whether the call was refused by an open circuit breaker.
    #[must_use]
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Error::CircuitOpen { .. })
    }

    /// Whether the call was refused by a full bulkhead.
    #[must_use]
    pub fn is_bulkhead_full(&self) -> bool {
        matches!(self, Error::BulkheadFull { .. })
    }

    /// Whether the call ended on a time limit.
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }
}

/// A configuration was refused: names the field and the rule it broke.
///
/// Returned by [`SafeCallBuilder::build`](crate::SafeCallBuilder::build) and by
/// the `try_` constructors of breakers and registries. A bad value is never
/// clamped into range silently.
///
/// # Examples
///
/// ```
/// use safecall::{Backoff, SafeCall};
/// use std::time::Duration;
///
/// let err = SafeCall::<std::io::Error>::builder()
///     .backoff(Backoff::exponential(Duration::from_secs(1)).factor(0.5))
///     .build()
///     .unwrap_err();
/// assert_eq!(err.field(), "backoff.factor");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration: `{field}` {rule}")]
pub struct ConfigError {
    field: &'static str,
    rule: Cow<'static, str>,
}

impl ConfigError {
    /// A refusal of `field` for breaking `rule` (phrased to follow the field
    /// name: "must be at least 1.0, got 0.5").
    pub fn new(field: &'static str, rule: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field,
            rule: rule.into(),
        }
    }

    /// The refused field, as its builder method path (`"backoff.factor"`).
    #[must_use]
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// The rule the value broke.
    #[must_use]
    pub fn rule(&self) -> &str {
        &self.rule
    }
}
