//! How an attempt failed, and the call's end on that failure when no
//! further attempt is made.

use crate::error::TimeoutKind;
use crate::{Error, ErrorClass, ExhaustedReason};

/// How an attempt failed.
pub(super) enum Failure<T, E> {
    /// The operation's error.
    Error(E),
    /// A value that `classify_ok` put in a class of failure.
    Value(T, ErrorClass),
    /// The attempt ran past its attempt timeout.
    TimedOut,
}

impl<T, E> Failure<T, E> {
    /// The call's end on this failure when no further attempt is made:
    /// `reason` says why, `None` when its class is not retried. A value
    /// classified as a failure is the provider's last answer (as tower's retry
    /// gives); an error ends the call as `Exhausted` or `Permanent`; a timeout
    /// keeps the last error an earlier attempt returned.
    pub(super) fn end(
        self,
        attempts: u32,
        class: ErrorClass,
        reason: Option<ExhaustedReason>,
        last_error: Option<E>,
    ) -> Result<T, Error<E>> {
        match self {
            Failure::Error(source) => Err(match reason {
                Some(reason) => Error::Exhausted {
                    source,
                    attempts,
                    reason,
                },
                None => Error::Permanent {
                    source,
                    attempts,
                    class,
                },
            }),
            Failure::Value(value, _) => Ok(value),
            Failure::TimedOut => Err(Error::Timeout {
                attempts,
                kind: TimeoutKind::Attempt,
                reason,
                last_error,
            }),
        }
    }
}
