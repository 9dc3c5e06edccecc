//! A ready classifier for HTTP status codes, with std only: no HTTP crate. The
//! server's `Retry-After` hint is read by `parse_retry_after` (in `retry_after.rs`).

use std::time::Duration;

use super::ErrorClass;

/// Classifies an HTTP response status, with the server's `Retry-After` hint if any.
///
/// `retry_after` is the parsed `Retry-After` header ([`parse_retry_after`](super::parse_retry_after)); it is
/// used for 429, 503 and 413 only, and ignored for every other status.
///
/// | status | class | why |
/// | --- | --- | --- |
/// | 429, 503 with a hint | `RetryAfter(hint)` | the server said when to come back |
/// | 429, 503 without a hint | `Transient` | rate limited or overloaded: back off and retry |
/// | 413 with a hint | `RetryAfter(hint)` | RFC 9110 §15.5.14: a `Retry-After` says the condition is temporary and when to try again |
/// | 408 Request Timeout | `Transient` | the server tired of waiting for the request; a new attempt may be quicker |
/// | 421 Misdirected Request | `Transient` | RFC 9110 §15.5.20 lets the client retry on another connection |
/// | 425 Too Early | `Transient` | retry once the handshake is complete (RFC 8470) |
/// | 500, 502, 504 and other 5xx | `Transient` | a server or gateway failure, usually passing |
/// | 401, 407 | `Permanent` | the credentials were refused: retrying repeats it, and that tenant's breaker should trip |
/// | 403 | `Permanent` | the credentials lack the right; same as above |
/// | 402 | `Permanent` | the account needs paying: every call of that tenant fails until it is fixed |
/// | 501, 505 | `Permanent` | the server cannot do this at all (method or HTTP version) |
/// | 511 | `Permanent` | network authentication is required (a captive portal) |
/// | 400, 404, 405, 409, 410, 411, 413 without a hint, 414, 415, 422 and other 4xx | `CallerFault` | the request was wrong; the service is fine |
/// | 100–399 | `CallerFault` | not an error: the service answered, so it must not trip the breaker; asking again gets the same answer |
/// | below 100, above 599 | `Transient` | not a valid status; RFC 9110 §15 says to treat it as a 5xx |
///
/// A 409 Conflict is the caller's fault by default: the request clashes with the
/// resource's state and will clash again. An API that answers 409 to a lost
/// optimistic-concurrency race means "try again": match on 409 before calling this
/// function (see the example).
///
/// # Examples
///
/// A client's error type, as it might be built from a reqwest response
/// (`status: response.status().as_u16()`, and the header from
/// `response.headers().get(RETRY_AFTER)` with `to_str`), classified with this
/// function, [`parse_retry_after`](super::parse_retry_after) and [`classify_io`](super::classify_io):
///
/// ```
/// use std::time::Duration;
/// use safecall::{classify_http_status, classify_io, parse_retry_after, Classify, ErrorClass};
///
/// #[derive(Debug)]
/// enum ApiError {
///     /// The server answered with an error status.
///     Status { status: u16, retry_after: Option<String> },
///     /// No answer: connect failure, reset, timeout.
///     Transport(std::io::Error),
/// }
///
/// let classify = |e: &ApiError| match e {
///     ApiError::Status { status: 409, .. } => ErrorClass::Transient, // this API's "retry the race"
///     ApiError::Status { status, retry_after } => {
///         let hint = retry_after.as_deref().and_then(parse_retry_after);
///         classify_http_status(*status, hint)
///     }
///     ApiError::Transport(io) => classify_io(io),
/// };
///
/// let limited = ApiError::Status { status: 429, retry_after: Some("7".to_owned()) };
/// assert_eq!(classify.classify(&limited), ErrorClass::RetryAfter(Duration::from_secs(7)));
///
/// let revoked = ApiError::Status { status: 401, retry_after: None };
/// assert_eq!(classify.classify(&revoked), ErrorClass::Permanent);
///
/// let bad_number = ApiError::Status { status: 422, retry_after: None };
/// assert_eq!(classify.classify(&bad_number), ErrorClass::CallerFault);
///
/// let reset = ApiError::Transport(std::io::ErrorKind::ConnectionReset.into());
/// assert_eq!(classify.classify(&reset), ErrorClass::Transient);
/// ```
#[must_use]
pub fn classify_http_status(status: u16, retry_after: Option<Duration>) -> ErrorClass {
    match status {
        429 | 503 => retry_after.map_or(ErrorClass::Transient, ErrorClass::RetryAfter),
        // Content Too Large is the request's fault unless the server says, with a
        // Retry-After, that the limit is temporary (RFC 9110 §15.5.14).
        413 => retry_after.map_or(ErrorClass::CallerFault, ErrorClass::RetryAfter),
        408 | 421 | 425 => ErrorClass::Transient,
        401 | 402 | 403 | 407 => ErrorClass::Permanent,
        400..=499 => ErrorClass::CallerFault,
        501 | 505 | 511 => ErrorClass::Permanent,
        // Listed for the reader: the catch-all below says the same.
        500..=599 => ErrorClass::Transient,
        100..=399 => ErrorClass::CallerFault,
        _ => ErrorClass::Transient,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::parse_retry_after_at;
    use crate::classify::test_dates::{RFC_EXAMPLE, at};

    #[test]
    fn statuses_map_as_documented() {
        let cases: &[(&[u16], ErrorClass)] = &[
            (
                &[408, 421, 425, 500, 502, 504, 506, 507, 508, 599],
                ErrorClass::Transient,
            ),
            (&[401, 402, 403, 407, 501, 505, 511], ErrorClass::Permanent),
            (
                &[
                    400, 404, 405, 406, 409, 410, 411, 412, 413, 414, 415, 416, 422, 423, 431, 451,
                    499,
                ],
                ErrorClass::CallerFault,
            ),
            (
                &[100, 101, 200, 204, 301, 302, 304, 399],
                ErrorClass::CallerFault,
            ),
            (&[0, 99, 600, 999, u16::MAX], ErrorClass::Transient),
        ];
        for (statuses, class) in cases {
            for &status in *statuses {
                assert_eq!(classify_http_status(status, None), *class, "{status}");
            }
        }
    }

    #[test]
    fn only_429_503_and_413_use_the_hint() {
        let hint = Some(Duration::from_secs(3));
        for status in [429, 503] {
            assert_eq!(classify_http_status(status, None), ErrorClass::Transient);
            assert_eq!(
                classify_http_status(status, hint),
                ErrorClass::RetryAfter(Duration::from_secs(3))
            );
        }
        assert_eq!(
            classify_http_status(429, Some(Duration::ZERO)),
            ErrorClass::RetryAfter(Duration::ZERO)
        );
        assert_eq!(classify_http_status(500, hint), ErrorClass::Transient);
        assert_eq!(classify_http_status(401, hint), ErrorClass::Permanent);
        assert_eq!(classify_http_status(400, hint), ErrorClass::CallerFault);
        assert_eq!(classify_http_status(414, hint), ErrorClass::CallerFault);
    }

    #[test]
    fn a_413_with_retry_after_is_temporary() {
        // RFC 9110 §15.5.14: "If the condition is temporary, the server SHOULD
        // generate a Retry-After header field".
        let hint = parse_retry_after_at("120", at(RFC_EXAMPLE));
        assert_eq!(
            classify_http_status(413, hint),
            ErrorClass::RetryAfter(Duration::from_secs(120))
        );
        let date = parse_retry_after_at("Sun, 06 Nov 1994 08:49:37 GMT", at(RFC_EXAMPLE - 5));
        assert_eq!(
            classify_http_status(413, date),
            ErrorClass::RetryAfter(Duration::from_secs(5))
        );
        // Without the hint, or with one that does not parse, the request was too big.
        assert_eq!(classify_http_status(413, None), ErrorClass::CallerFault);
        let garbage = parse_retry_after_at("later", at(RFC_EXAMPLE));
        assert_eq!(classify_http_status(413, garbage), ErrorClass::CallerFault);
    }
}
