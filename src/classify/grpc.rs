//! A ready classifier for gRPC status codes, with std only: no tonic, no gRPC crate.
//!
//! A code is an `i32` as gRPC defines it (0 `OK` … 16 `UNAUTHENTICATED`), so a tonic
//! user passes `status.code() as i32` and a user of another stack passes what it
//! holds. The server's pushback (gRPC A6's `grpc-retry-pushback-ms` trailer, or a
//! `google.rpc.RetryInfo` detail) arrives as a `Duration`; reading it is left to the
//! caller, because A6 gives it a third meaning that a `Duration` cannot carry ("do
//! not retry"): see [`classify_grpc_code`].
//!
//! gRPC's own guidance is narrower than HTTP's custom: A6 leaves the retryable codes
//! to each service (`retryableStatusCodes` is opt-in), and AIP-194 names `UNAVAILABLE`
//! as the only code to retry by default. The table follows it, with two reasoned
//! exceptions (`DEADLINE_EXCEEDED`, and `RESOURCE_EXHAUSTED` with a pushback).

use std::time::Duration;

use super::ErrorClass;

// The codes of gRPC's `status.proto` (google.rpc.Code) by name, for the match below.
const OK: i32 = 0;
const CANCELLED: i32 = 1;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const ALREADY_EXISTS: i32 = 6;
const RESOURCE_EXHAUSTED: i32 = 8;
const FAILED_PRECONDITION: i32 = 9;
const ABORTED: i32 = 10;
const OUT_OF_RANGE: i32 = 11;
const UNAVAILABLE: i32 = 14;

/// Classifies a gRPC status code, with the server's pushback if any.
///
/// `code` is the status code as an `i32` (`status.code() as i32` with tonic).
/// `pushback` is the server's request to wait before retrying, read from the
/// `grpc-retry-pushback-ms` trailer (gRPC A6) or from a `google.rpc.RetryInfo`
/// detail; it is used for `UNAVAILABLE`, `DEADLINE_EXCEEDED` and
/// `RESOURCE_EXHAUSTED` only, and ignored for every other code.
///
/// | code | class | why |
/// | --- | --- | --- |
/// | 14 `UNAVAILABLE` with a pushback | `RetryAfter(pushback)` | the server said when to come back |
/// | 14 `UNAVAILABLE` | `Transient` | AIP-194: the one code to retry by default, a passing network or server condition |
/// | 4 `DEADLINE_EXCEEDED` | `Transient` (`RetryAfter` with a pushback) | an attempt ran out of time: the same class as safecall's own attempt timeout (see below) |
/// | 8 `RESOURCE_EXHAUSTED` with a pushback | `RetryAfter(pushback)` | a server that says when to come back is rate limiting, not out of quota |
/// | 8 `RESOURCE_EXHAUSTED` | `Permanent` | AIP-194: perhaps a quota that resets in hours, and retries may be billed; counted, so that tenant's breaker trips |
/// | 16 `UNAUTHENTICATED`, 7 `PERMISSION_DENIED` | `Permanent` | the credentials were refused or lack the right (401, 403): that tenant's breaker should trip |
/// | 12 `UNIMPLEMENTED` | `Permanent` | the server cannot do this at all (501) |
/// | 13 `INTERNAL`, 2 `UNKNOWN` | `Permanent` | a broken invariant or an unhandled server error: AIP-194 does not retry them (the request may have been half done), and a server that keeps failing should trip the breaker |
/// | 15 `DATA_LOSS` | `Permanent` | unrecoverable loss or corruption: surface it at once (AIP-194), and count it |
/// | 3 `INVALID_ARGUMENT`, 5 `NOT_FOUND`, 6 `ALREADY_EXISTS`, 9 `FAILED_PRECONDITION`, 11 `OUT_OF_RANGE` | `CallerFault` | the request was wrong; the service is fine (as HTTP 4xx) |
/// | 10 `ABORTED` | `CallerFault` | a concurrency conflict: the same request conflicts again; the whole read-modify-write must be retried (as HTTP 409, see below) |
/// | 1 `CANCELLED` | `CallerFault` | usually the caller cancelled: a retry would undo the cancel, and the dependency did nothing wrong |
/// | 0 `OK` | `CallerFault` | not an error: the service answered, so it must not trip the breaker, and asking again gets the same answer (as `classify_http_status` does for 1xx–3xx) |
/// | below 0, above 16 | `Permanent` | not a gRPC code: read as `UNKNOWN`, as tonic's `Code::from_i32` and grpc-java's `Status.fromCodeValue` do |
///
/// **`DEADLINE_EXCEEDED`.** AIP-194 does not retry it because the application's
/// deadline must be honoured. Under safecall the application's deadline is the
/// policy's [`deadline`](crate::SafeCallBuilder::deadline), which safecall honours
/// itself: once it has passed, no retry starts whatever the class (a gRPC timeout
/// sent from [`Attempt::time_left`](crate::Attempt::time_left) ends with it). A gRPC
/// deadline that fires before it is a per-attempt limit (the attempt timeout, or a
/// fixed one, sent as the gRPC timeout), and a timed out attempt is `Transient` in
/// this crate; any other class would make the outcome depend on which of two equal
/// timers fired first, safecall's or gRPC's. Like a 504, the server may have
/// done the work: for a method that is not idempotent, match 4 before calling this
/// function.
///
/// **`UNKNOWN` and `INTERNAL`.** Besides a server's own failures, tonic reports some
/// transport failures in the middle of a call with these codes (an HTTP/2 stream
/// reset, a connection lost after the request went out), when the server may or
/// may not have acted. An idempotent operation can match 2 and 13 first and return
/// `Transient`, as `classify_http_status` does for a 500.
///
/// **`ABORTED`.** An operation that re-reads and rewrites on every attempt (it retries
/// the whole transaction, as AIP-194 asks) can match 10 first and return
/// `Transient`, or `RetryAfter` with the pushback (Cloud Spanner sends one with
/// its aborts).
///
/// # Server pushback
///
/// With `UNAVAILABLE` or `DEADLINE_EXCEEDED` (retried anyway), or with
/// `RESOURCE_EXHAUSTED` (which it makes worth retrying), a pushback wins over the
/// class the code alone would have: the retry waits at least that long (a floor,
/// like `Retry-After`), and, through a breaker, cools the key down instead of
/// counting as a failure. A pushback cannot make a wrong request right or a refused
/// credential valid, so the other codes ignore it, as gRPC's own clients retry only
/// their retryable codes however the server pushes back. `Some(Duration::ZERO)` is
/// a pushback of zero: `RetryAfter(Duration::ZERO)`.
///
/// A6 gives the trailer three meanings: absent (no pushback: pass `None`), a
/// non-negative count of milliseconds (retry after it: pass `Some`), or a negative or
/// unparseable value (**do not retry**; grpc-go reads several values the same way).
/// The third has no `Duration`, and passing `None` for it would retry an
/// `UNAVAILABLE` the server asked not to retry. Classify it yourself: `Permanent`
/// where this function would retry (not retried, and counted, as gRPC counts it
/// against its retry throttle), the class of the code otherwise. The example does.
///
/// # Examples
///
/// A client's error type, as it might be built from a `tonic::Status`
/// (`code: status.code() as i32`, and the trailer from
/// `status.metadata().get("grpc-retry-pushback-ms")` with `to_str`), classified with
/// every reading of the pushback:
///
/// ```
/// use std::time::Duration;
/// use safecall::{classify_grpc_code, Classify, ErrorClass};
///
/// #[derive(Debug)]
/// struct RpcError { code: i32, pushback_ms: Option<String> }
///
/// let classify = |e: &RpcError| {
///     let Some(value) = e.pushback_ms.as_deref() else {
///         return classify_grpc_code(e.code, None);
///     };
///     // gRPC A6: a signed 32-bit count of milliseconds; a negative or
///     // unparseable one asks the client not to retry.
///     match value.parse::<i32>().ok().and_then(|ms| u64::try_from(ms).ok()) {
///         Some(ms) => classify_grpc_code(e.code, Some(Duration::from_millis(ms))),
///         None => match classify_grpc_code(e.code, None) {
///             class if class.is_retryable() => ErrorClass::Permanent,
///             class => class,
///         },
///     }
/// };
/// let rpc = |code, pushback: Option<&str>| RpcError { code, pushback_ms: pushback.map(str::to_owned) };
///
/// // UNAVAILABLE: retried, after the server's pushback if it gave one, never if it said not to.
/// assert_eq!(classify.classify(&rpc(14, None)), ErrorClass::Transient);
/// assert_eq!(
///     classify.classify(&rpc(14, Some("250"))),
///     ErrorClass::RetryAfter(Duration::from_millis(250))
/// );
/// assert_eq!(classify.classify(&rpc(14, Some("-1"))), ErrorClass::Permanent);
///
/// // RESOURCE_EXHAUSTED: a rate limit with a pushback is waited out; without one it may be a quota.
/// assert_eq!(
///     classify.classify(&rpc(8, Some("2000"))),
///     ErrorClass::RetryAfter(Duration::from_secs(2))
/// );
/// assert_eq!(classify.classify(&rpc(8, None)), ErrorClass::Permanent);
///
/// // A wrong request stays the caller's fault, whatever the trailer says.
/// assert_eq!(classify.classify(&rpc(3, Some("-1"))), ErrorClass::CallerFault);
/// assert_eq!(classify.classify(&rpc(16, None)), ErrorClass::Permanent);
/// ```
#[must_use]
pub fn classify_grpc_code(code: i32, pushback: Option<Duration>) -> ErrorClass {
    match code {
        UNAVAILABLE | DEADLINE_EXCEEDED => {
            pushback.map_or(ErrorClass::Transient, ErrorClass::RetryAfter)
        }
        RESOURCE_EXHAUSTED => pushback.map_or(ErrorClass::Permanent, ErrorClass::RetryAfter),
        INVALID_ARGUMENT | NOT_FOUND | ALREADY_EXISTS | FAILED_PRECONDITION | OUT_OF_RANGE
        | ABORTED | CANCELLED | OK => ErrorClass::CallerFault,
        // UNKNOWN, PERMISSION_DENIED, UNIMPLEMENTED, INTERNAL, DATA_LOSS,
        // UNAUTHENTICATED, and every value outside 0..=16 (read as UNKNOWN).
        _ => ErrorClass::Permanent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code of gRPC's `status.proto`, by name, with the class the table gives
    /// it without a pushback.
    const TABLE: [(i32, &str, ErrorClass); 17] = [
        (0, "OK", ErrorClass::CallerFault),
        (1, "CANCELLED", ErrorClass::CallerFault),
        (2, "UNKNOWN", ErrorClass::Permanent),
        (3, "INVALID_ARGUMENT", ErrorClass::CallerFault),
        (4, "DEADLINE_EXCEEDED", ErrorClass::Transient),
        (5, "NOT_FOUND", ErrorClass::CallerFault),
        (6, "ALREADY_EXISTS", ErrorClass::CallerFault),
        (7, "PERMISSION_DENIED", ErrorClass::Permanent),
        (8, "RESOURCE_EXHAUSTED", ErrorClass::Permanent),
        (9, "FAILED_PRECONDITION", ErrorClass::CallerFault),
        (10, "ABORTED", ErrorClass::CallerFault),
        (11, "OUT_OF_RANGE", ErrorClass::CallerFault),
        (12, "UNIMPLEMENTED", ErrorClass::Permanent),
        (13, "INTERNAL", ErrorClass::Permanent),
        (14, "UNAVAILABLE", ErrorClass::Transient),
        (15, "DATA_LOSS", ErrorClass::Permanent),
        (16, "UNAUTHENTICATED", ErrorClass::Permanent),
    ];

    #[test]
    fn every_code_maps_as_documented() {
        for (i, &(code, name, class)) in TABLE.iter().enumerate() {
            assert_eq!(usize::try_from(code), Ok(i), "the table is in code order");
            assert_eq!(classify_grpc_code(code, None), class, "{code} {name}");
        }
    }

    #[test]
    fn the_named_constants_are_grpcs_numbers() {
        let named = [
            (OK, "OK"),
            (CANCELLED, "CANCELLED"),
            (INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            (DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED"),
            (NOT_FOUND, "NOT_FOUND"),
            (ALREADY_EXISTS, "ALREADY_EXISTS"),
            (RESOURCE_EXHAUSTED, "RESOURCE_EXHAUSTED"),
            (FAILED_PRECONDITION, "FAILED_PRECONDITION"),
            (ABORTED, "ABORTED"),
            (OUT_OF_RANGE, "OUT_OF_RANGE"),
            (UNAVAILABLE, "UNAVAILABLE"),
        ];
        for (code, name) in named {
            assert!(
                TABLE.iter().any(|&(c, n, _)| c == code && n == name),
                "{name} = {code}"
            );
        }
    }

    #[test]
    fn codes_outside_the_enum_are_read_as_unknown() {
        for code in [i32::MIN, -1, 17, 18, 100, 200, 503, i32::MAX] {
            assert_eq!(
                classify_grpc_code(code, None),
                ErrorClass::Permanent,
                "{code}"
            );
            assert_eq!(
                classify_grpc_code(code, Some(Duration::from_secs(1))),
                ErrorClass::Permanent,
                "{code} with a pushback"
            );
        }
    }

    #[test]
    fn only_unavailable_deadline_exceeded_and_resource_exhausted_use_the_pushback() {
        let pushback = Duration::from_millis(1500);
        for &(code, name, class) in &TABLE {
            let expected = match code {
                4 | 8 | 14 => ErrorClass::RetryAfter(pushback),
                _ => class,
            };
            assert_eq!(
                classify_grpc_code(code, Some(pushback)),
                expected,
                "{code} {name} with a pushback"
            );
        }
    }

    #[test]
    fn a_zero_pushback_is_still_a_hint() {
        for code in [4, 8, 14] {
            assert_eq!(
                classify_grpc_code(code, Some(Duration::ZERO)),
                ErrorClass::RetryAfter(Duration::ZERO),
                "{code}"
            );
        }
    }

    #[test]
    fn a_huge_pushback_is_passed_on_for_the_policy_to_bound() {
        // The policy's max_retry_after and the breaker's max_cooldown bound it;
        // the classifier neither clamps nor drops it.
        let forever = Duration::from_millis(u64::from(u32::MAX));
        assert_eq!(
            classify_grpc_code(14, Some(forever)),
            ErrorClass::RetryAfter(forever)
        );
    }
}
