//! Ready classifiers for `http` responses, HTTP's and gRPC's, for
//! [`SafeCallLayer::classify_response`](super::SafeCallLayer::classify_response).

use std::time::Duration;

use http::{HeaderMap, Response, StatusCode, header::RETRY_AFTER};

use crate::{ErrorClass, classify_grpc_code, classify_http_status, parse_retry_after};

/// The server's `Retry-After` hint in `headers`, if it has a valid one: delta-seconds
/// or an HTTP-date (read against the wall clock), as [`parse_retry_after`] reads
/// them. The first `Retry-After` header counts; a malformed one is `None`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::tower::retry_after_of;
///
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(retry_after_of(&headers), None);
/// headers.insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("7"));
/// assert_eq!(retry_after_of(&headers), Some(Duration::from_secs(7)));
/// ```
#[must_use]
pub fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// Classifies an HTTP response for
/// [`classify_response`](super::SafeCallLayer::classify_response): `None` (a
/// success) below 400, else [`classify_http_status`] with the response's
/// `Retry-After` ([`retry_after_of`]).
///
/// So a 503 or a 429 is retried (not sooner than its `Retry-After`), a 500 is
/// retried, a 401 is not retried and counts against the breaker, and a 404 or a
/// 422 is the caller's fault: returned at once, not counted. For a client whose
/// response type is not an `http::Response` (reqwest's), pass its status and
/// headers to [`classify_http_status`] and [`retry_after_of`] the same way.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::ErrorClass;
/// use safecall::tower::classify_http_response;
///
/// let res = |status: u16, retry_after: Option<&'static str>| {
///     let mut b = http::Response::builder().status(status);
///     if let Some(v) = retry_after { b = b.header("retry-after", v); }
///     b.body(()).unwrap()
/// };
/// assert_eq!(classify_http_response(&res(200, None)), None);
/// assert_eq!(classify_http_response(&res(503, None)), Some(ErrorClass::Transient));
/// assert_eq!(
///     classify_http_response(&res(429, Some("2"))),
///     Some(ErrorClass::RetryAfter(Duration::from_secs(2)))
/// );
/// assert_eq!(classify_http_response(&res(404, None)), Some(ErrorClass::CallerFault));
/// ```
#[must_use]
pub fn classify_http_response<B>(res: &Response<B>) -> Option<ErrorClass> {
    let status = res.status();
    if status.as_u16() < 400 {
        return None;
    }
    Some(classify_http_status(
        status.as_u16(),
        retry_after_of(res.headers()),
    ))
}

/// The header of gRPC A6's server pushback.
const PUSHBACK: &str = "grpc-retry-pushback-ms";

/// Classifies a gRPC response seen below the client (a tower layer on tonic's
/// `Channel`), for [`classify_response`](super::SafeCallLayer::classify_response).
///
/// - A `grpc-status` in the response **headers** (a trailers-only response: what
///   a server sends when it fails a call without answering, tonic's
///   `Err(Status)`): `None` for `0` (`OK`), else [`classify_grpc_code`] with the
///   `grpc-retry-pushback-ms` header as the pushback. A negative or malformed
///   pushback means "do not retry" (gRPC A6): a code that would be retried is then
///   `Permanent`. A malformed `grpc-status` is read as `UNKNOWN`.
/// - No `grpc-status`, HTTP status other than 200 (a proxy or load balancer
///   answered): the code gRPC's HTTP-to-gRPC mapping gives it (429, 502, 503,
///   504 are `UNAVAILABLE`, retried, after a `Retry-After` if there is one; 401
///   `UNAUTHENTICATED`; 403 `PERMISSION_DENIED`; 404 `UNIMPLEMENTED`; 400
///   `INTERNAL`; the rest `UNKNOWN`).
/// - Otherwise `None`: the call has begun answering, and its status comes in the
///   trailers, after the response future has resolved, too late for a layer to
///   retry. (A layer cannot tell a stream that will end well from one that will
///   not; the client sees that status as its error.)
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::ErrorClass;
/// use safecall::tower::classify_grpc_response;
///
/// let trailers_only = |code: &'static str, pushback: Option<&'static str>| {
///     let mut b = http::Response::builder().header("grpc-status", code);
///     if let Some(ms) = pushback { b = b.header("grpc-retry-pushback-ms", ms); }
///     b.body(()).unwrap()
/// };
/// assert_eq!(classify_grpc_response(&trailers_only("14", None)), Some(ErrorClass::Transient));
/// assert_eq!(
///     classify_grpc_response(&trailers_only("8", Some("250"))),
///     Some(ErrorClass::RetryAfter(Duration::from_millis(250)))
/// );
/// assert_eq!(classify_grpc_response(&trailers_only("14", Some("-1"))), Some(ErrorClass::Permanent));
/// assert_eq!(classify_grpc_response(&trailers_only("3", None)), Some(ErrorClass::CallerFault));
/// assert_eq!(classify_grpc_response(&trailers_only("0", None)), None);
///
/// // A response that has begun answering: its status comes later, in the trailers.
/// let answering = http::Response::builder().header("content-type", "application/grpc").body(()).unwrap();
/// assert_eq!(classify_grpc_response(&answering), None);
/// ```
#[must_use]
pub fn classify_grpc_response<B>(res: &Response<B>) -> Option<ErrorClass> {
    let headers = res.headers();
    match headers.get("grpc-status") {
        Some(value) => {
            // UNKNOWN (2) for a value that is not a code.
            let code = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<i32>().ok())
                .unwrap_or(2);
            if code == 0 {
                return None;
            }
            Some(grpc_class(code, headers))
        }
        None if res.status() == StatusCode::OK => None,
        None => {
            let status = res.status().as_u16();
            let code = match status {
                400 => 13,
                401 => 16,
                403 => 7,
                404 => 12,
                429 | 502 | 503 | 504 => 14,
                _ => 2,
            };
            let hint = if matches!(status, 429 | 503) {
                retry_after_of(headers)
            } else {
                None
            };
            Some(classify_grpc_code(code, hint))
        }
    }
}

/// A code's class with the pushback in `headers` (gRPC A6's three readings).
fn grpc_class(code: i32, headers: &HeaderMap) -> ErrorClass {
    let Some(value) = headers.get(PUSHBACK) else {
        return classify_grpc_code(code, None);
    };
    let ms = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .and_then(|ms| u64::try_from(ms).ok());
    match ms {
        Some(ms) => classify_grpc_code(code, Some(Duration::from_millis(ms))),
        // "Do not retry": counted like the code's refusal, never retried.
        None => match classify_grpc_code(code, None) {
            class if class.is_retryable() => ErrorClass::Permanent,
            class => class,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&'static str, &'static str)]) -> Response<()> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap_or_default()
    }

    #[test]
    fn http_statuses_below_400_are_successes() {
        for status in [100, 200, 204, 301, 304, 399] {
            assert_eq!(
                classify_http_response(&response(status, &[])),
                None,
                "{status}"
            );
        }
    }

    #[test]
    fn http_failures_use_the_status_table_and_the_hint() {
        let hinted = [("retry-after", "3")];
        assert_eq!(
            classify_http_response(&response(503, &hinted)),
            Some(ErrorClass::RetryAfter(Duration::from_secs(3)))
        );
        assert_eq!(
            classify_http_response(&response(500, &hinted)),
            Some(ErrorClass::Transient)
        );
        assert_eq!(
            classify_http_response(&response(401, &[])),
            Some(ErrorClass::Permanent)
        );
        assert_eq!(
            classify_http_response(&response(429, &[("retry-after", "soon")])),
            Some(ErrorClass::Transient),
            "a malformed hint is no hint"
        );
    }

    #[test]
    fn grpc_status_in_headers_is_classified_with_its_pushback() {
        let r = |code, pushback: Option<&'static str>| {
            let mut h = vec![("grpc-status", code)];
            h.extend(pushback.map(|p| (PUSHBACK, p)));
            classify_grpc_response(&response(200, &h))
        };
        assert_eq!(r("0", None), None);
        assert_eq!(r("14", None), Some(ErrorClass::Transient));
        assert_eq!(
            r("14", Some("100")),
            Some(ErrorClass::RetryAfter(Duration::from_millis(100)))
        );
        assert_eq!(r("14", Some("-5")), Some(ErrorClass::Permanent));
        assert_eq!(r("14", Some("x")), Some(ErrorClass::Permanent));
        assert_eq!(r("8", None), Some(ErrorClass::Permanent));
        assert_eq!(
            r("8", Some("2000")),
            Some(ErrorClass::RetryAfter(Duration::from_secs(2)))
        );
        assert_eq!(r("5", Some("-1")), Some(ErrorClass::CallerFault));
        assert_eq!(r("16", None), Some(ErrorClass::Permanent));
        assert_eq!(r("garbage", None), Some(ErrorClass::Permanent), "UNKNOWN");
    }

    #[test]
    fn grpc_without_a_status_maps_the_http_status() {
        let r = |status| classify_grpc_response(&response(status, &[]));
        assert_eq!(r(200), None, "the status comes in the trailers");
        for status in [429, 502, 503, 504] {
            assert_eq!(r(status), Some(ErrorClass::Transient), "{status}");
        }
        assert_eq!(r(401), Some(ErrorClass::Permanent));
        assert_eq!(r(404), Some(ErrorClass::Permanent), "UNIMPLEMENTED");
        assert_eq!(r(400), Some(ErrorClass::Permanent), "INTERNAL");
        assert_eq!(
            classify_grpc_response(&response(503, &[("retry-after", "4")])),
            Some(ErrorClass::RetryAfter(Duration::from_secs(4)))
        );
    }
}
