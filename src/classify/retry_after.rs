//! The `Retry-After` header (RFC 9110 §10.2.3): delta-seconds or an HTTP-date,
//! read as the wait it asks for, with std only: no HTTP crate, no date crate.

use std::time::{Duration, SystemTime};

use super::civil::UnixTime;
use super::http_date::{ascii_digit, http_date};

/// Parses a `Retry-After` header value into the wait it asks for, counted from now.
///
/// The same as [`parse_retry_after_at`] with `now` = [`SystemTime::now()`]; see there
/// for the accepted forms.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::parse_retry_after;
///
/// assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
/// // A date in the past asks for no wait at all.
/// assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after("soon"), None);
/// ```
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse_retry_after_at(value, SystemTime::now())
}

/// Parses a `Retry-After` header value into the wait it asks for, counted from `now`.
///
/// Both forms of RFC 9110 §10.2.3 are accepted, with optional spaces or tabs
/// around the value:
///
/// - **delta-seconds**, one or more ASCII digits: `"120"` is two minutes. A value
///   too large for a `u64` saturates at `u64::MAX` seconds rather than failing
///   (a policy's `max_retry_after` then refuses to wait that long). A sign, a
///   decimal point or an exponent makes the value invalid.
/// - **HTTP-date**, in any of the three formats of RFC 9110 §5.6.7; the result is
///   the time from `now` to that date, or [`Duration::ZERO`] if it is not after
///   `now`:
///   - IMF-fixdate: `Sun, 06 Nov 1994 08:49:37 GMT`
///   - RFC 850: `Sunday, 06-Nov-94 08:49:37 GMT`. A two-digit year is read as
///     RFC 9110 says: in the century that puts the date no more than 50 years
///     after `now` (`94` read in 2025 is 1994; `74` is 2074).
///   - asctime: `Sun Nov  6 08:49:37 1994`
///
/// Every field is checked: month names, the day against the month's length (leap
/// years included, so `29 Feb 2023` is refused), hours 0–23, minutes 0–59 and
/// seconds 0–60. A leap second (`:60`) counts as the first second of the next
/// minute, so the wait is never shorter than asked. Where a server might be
/// sloppy and nothing is at stake, parsing is lenient:
///
/// - the weekday must be a real day name, short or long in any format, but need
///   not be the date's weekday (the date decides; a wrong weekday is ignored);
/// - day, month and weekday names and `GMT` are matched ignoring ASCII case;
/// - a run of spaces counts as one; a one-digit day is accepted in every format;
///   an RFC 850 date may carry a four-digit year.
///
/// The time zone must be `GMT`. Anything else (an empty value, garbage, a
/// truncated date, an impossible date) gives `None`; no input panics.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use safecall::parse_retry_after_at;
///
/// // Two minutes before the RFC's example date.
/// let now = UNIX_EPOCH + Duration::from_secs(784_111_777 - 120);
/// let two_minutes = Some(Duration::from_secs(120));
///
/// assert_eq!(parse_retry_after_at("Sun, 06 Nov 1994 08:49:37 GMT", now), two_minutes);
/// assert_eq!(parse_retry_after_at("Sunday, 06-Nov-94 08:49:37 GMT", now), two_minutes);
/// assert_eq!(parse_retry_after_at("Sun Nov  6 08:49:37 1994", now), two_minutes);
/// assert_eq!(parse_retry_after_at(" 120 ", now), two_minutes);
///
/// // Past dates mean "now"; bad values mean nothing.
/// assert_eq!(parse_retry_after_at("Sat, 05 Nov 1994 08:49:37 GMT", now), Some(Duration::ZERO));
/// assert_eq!(parse_retry_after_at("Fri, 31 Feb 2023 00:00:00 GMT", now), None);
/// assert_eq!(parse_retry_after_at("-1", now), None);
/// ```
#[must_use]
pub fn parse_retry_after_at(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return None;
    }
    if let Some(secs) = delta_seconds(value) {
        return Some(Duration::from_secs(secs));
    }
    let now = UnixTime::from_system_time(now);
    let date = http_date(value, &now)?;
    Some(now.until(date))
}

/// `1*DIGIT` as seconds, saturating at `u64::MAX`; `None` if any byte is not a digit.
fn delta_seconds(value: &str) -> Option<u64> {
    value.bytes().try_fold(0_u64, |secs, byte| {
        let digit = ascii_digit(byte)?;
        Some(secs.saturating_mul(10).saturating_add(u64::from(digit)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::test_dates::*;
    use proptest::prelude::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn delta_seconds_parse_and_saturate() {
        let now = at(RFC_EXAMPLE);
        assert_eq!(parse_retry_after_at("0", now), secs(0));
        assert_eq!(parse_retry_after_at("120", now), secs(120));
        assert_eq!(parse_retry_after_at("  120 ", now), secs(120));
        assert_eq!(parse_retry_after_at("\t7\t", now), secs(7));
        assert_eq!(parse_retry_after_at("007", now), secs(7));
        assert_eq!(
            parse_retry_after_at("18446744073709551615", now),
            secs(u64::MAX)
        );
        assert_eq!(
            parse_retry_after_at("18446744073709551616999", now),
            secs(u64::MAX)
        );
        assert_eq!(
            parse_retry_after_at(&"9".repeat(10_000), now),
            secs(u64::MAX)
        );
    }

    #[test]
    fn malformed_values_are_none() {
        let now = at(RFC_EXAMPLE);
        for value in [
            "", " ", "\t", "-1", "+1", "1.5", "1e3", "0x10", "12a", "1 2", "١٢", "１２", "soon",
            "120s", "\u{0}", "Sun", "GMT", ",,,,,", "- - -", "1\n", "\n1",
        ] {
            assert_eq!(parse_retry_after_at(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn negative_garbage_and_past_values() {
        let now = at(RFC_EXAMPLE);
        // Negative, fractional or otherwise non-numeric delays give no hint.
        for value in [
            "-1", "-0", "-120", "+5", "1.0", "120.", " - 1", "1_000", "∞", "NaN",
        ] {
            assert_eq!(parse_retry_after_at(value, now), None, "{value:?}");
        }
        // A date in the past (or now) is a hint to retry at once, not no hint.
        for value in [
            "Sun, 06 Nov 1994 08:49:36 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Thu, 01 Jan 1970 00:00:00 GMT",
            "Sunday, 06-Nov-94 08:49:36 GMT",
            "Sun Nov  6 08:49:36 1994",
        ] {
            assert_eq!(parse_retry_after_at(value, now), secs(0), "{value}");
        }
    }

    #[test]
    fn sub_second_now_and_now_before_the_epoch() {
        let now = at(RFC_EXAMPLE) - Duration::from_millis(250);
        let value = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after_at(value, now),
            Some(Duration::from_millis(250))
        );
        let now = at(RFC_EXAMPLE) + Duration::from_millis(250);
        assert_eq!(parse_retry_after_at(value, now), Some(Duration::ZERO));

        let epoch = "Thu, 01 Jan 1970 00:00:00 GMT";
        assert_eq!(parse_retry_after_at(epoch, at(-10)), secs(10));
        let now = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(
            parse_retry_after_at(epoch, now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_retry_after_at("5", now), secs(5));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(value in any::<String>(), now in any_now()) {
            let _ = parse_retry_after_at(&value, now);
        }

        #[test]
        fn delta_seconds_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_retry_after_at(&n.to_string(), UNIX_EPOCH), secs(n));
        }
    }
}
