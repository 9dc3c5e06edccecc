//! Error classification: is a failure worth another attempt?
//!
//! Retrying only helps when the failure is *transient*: a dropped connection, a
//! 503, a rate limit. Retrying a rejected credential or a malformed request wastes
//! the provider's patience and the caller's time, and retrying harder during an
//! outage makes it worse. So every error an operation returns is first put in a
//! class, and the class decides what happens next:
//!
//! | class | retried? | held against the breaker? |
//! | --- | --- | --- |
//! | [`ErrorClass::Transient`] | yes, after the backoff delay | yes |
//! | [`ErrorClass::RetryAfter`] | yes, not sooner than the server's hint | no: the breaker cools the key down instead |
//! | [`ErrorClass::Permanent`] | no | yes (broken credentials should trip that tenant's breaker) |
//! | [`ErrorClass::CallerFault`] | no | no (the request was wrong, not the dependency) |
//!
//! A classifier is anything that implements [`Classify`]; every
//! `Fn(&E) -> ErrorClass` closure does. Classify by type, kind or status code, never
//! by the text of a message. Ready classifiers ship for [`std::io::Error`]
//! ([`classify_io`]) and for HTTP status codes with a `Retry-After` header
//! ([`classify_http_status`], [`parse_retry_after`]), without an HTTP crate, and
//! for gRPC status codes with the server's pushback ([`classify_grpc_code`]),
//! without tonic.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Classify, ErrorClass};
//!
//! struct ApiError { status: u16, retry_after: Option<Duration> }
//!
//! let classify = |e: &ApiError| match e.status {
//!     429 | 503 => e.retry_after.map_or(ErrorClass::Transient, ErrorClass::RetryAfter),
//!     500..=599 => ErrorClass::Transient,
//!     400 | 404 | 422 => ErrorClass::CallerFault,
//!     _ => ErrorClass::Permanent,
//! };
//! let e = ApiError { status: 429, retry_after: Some(Duration::from_secs(2)) };
//! assert_eq!(classify.classify(&e), ErrorClass::RetryAfter(Duration::from_secs(2)));
//! ```

use std::time::Duration;

mod civil;
mod grpc;
mod http;
mod http_date;
mod io;
mod retry_after;
#[cfg(test)]
mod test_dates;

pub use grpc::classify_grpc_code;
pub use http::classify_http_status;
pub use io::classify_io;
pub use retry_after::{parse_retry_after, parse_retry_after_at};

/// What a failed attempt means for the rest of the call.
///
/// See the [module documentation](self) for the table of what each class does to
/// retries and to the circuit breaker.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// A passing fault: retry after the backoff delay, and count it against the
    /// breaker.
    Transient,
    /// The server asked for quiet: retry, but not sooner than this long from now.
    ///
    /// The hint is a floor: the wait is `max(hint, backoff delay)`, and jitter may
    /// only add to it. A hint longer than
    /// [`max_retry_after`](crate::SafeCallBuilder::max_retry_after) or than the time
    /// left before the deadline ends the call at once with
    /// [`Error::Exhausted`](crate::Error::Exhausted). Through a breaker, the hint cools
    /// the key down instead of counting as a failure.
    RetryAfter(Duration),
    /// Retrying cannot help (revoked credentials, a missing account): return at
    /// once, and count it against the breaker.
    Permanent,
    /// The request itself was wrong (a 400, an invalid phone number): return at
    /// once, and do **not** count it against the dependency's breaker.
    CallerFault,
}

impl ErrorClass {
    /// Whether an error of this class may be retried.
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Transient | ErrorClass::RetryAfter(_))
    }
}

/// Puts an operation's error in an [`ErrorClass`].
///
/// Implemented for every `Fn(&E) -> ErrorClass + Send + Sync + 'static`, so a
/// closure is the usual classifier; implement it on a type to share a classifier
/// between policies or to give it state.
///
/// # Examples
///
/// ```
/// use safecall::{Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum DbError { Deadlock, UniqueViolation }
///
/// struct DbClassifier;
/// impl Classify<DbError> for DbClassifier {
///     fn classify(&self, error: &DbError) -> ErrorClass {
///         match error {
///             DbError::Deadlock => ErrorClass::Transient,
///             DbError::UniqueViolation => ErrorClass::CallerFault,
///         }
///     }
/// }
/// assert_eq!(DbClassifier.classify(&DbError::Deadlock), ErrorClass::Transient);
/// ```
pub trait Classify<E>: Send + Sync + 'static {
    /// The class of `error`.
    fn classify(&self, error: &E) -> ErrorClass;
}

impl<E, F> Classify<E> for F
where
    F: Fn(&E) -> ErrorClass + Send + Sync + 'static,
{
    fn classify(&self, error: &E) -> ErrorClass {
        self(error)
    }
}

/// The default classifier: every error is [`ErrorClass::Transient`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysTransient;

impl<E> Classify<E> for AlwaysTransient {
    fn classify(&self, _error: &E) -> ErrorClass {
        ErrorClass::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_and_retry_after_are_retryable() {
        assert!(ErrorClass::Transient.is_retryable());
        assert!(ErrorClass::RetryAfter(Duration::from_secs(1)).is_retryable());
        assert!(!ErrorClass::Permanent.is_retryable());
        assert!(!ErrorClass::CallerFault.is_retryable());
    }

    #[test]
    fn the_wall_clock_parser_reads_delta_seconds() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past"
        );
    }

    #[test]
    fn the_default_classifier_calls_everything_transient() {
        assert_eq!(AlwaysTransient.classify(&"anything"), ErrorClass::Transient);
    }
}
