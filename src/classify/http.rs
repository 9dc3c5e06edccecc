//! A ready classifier for HTTP status codes, and a `Retry-After` parser, with std
//! only: no HTTP crate, no date crate.
//!
//! The date arithmetic (civil date to Unix seconds and back) is Howard Hinnant's
//! `days_from_civil` / `civil_from_days`, written with checked arithmetic so that no
//! input can make it panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::ErrorClass;

const SECS_PER_DAY: i64 = 86_400;
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Classifies an HTTP response status, with the server's `Retry-After` hint if any.
///
/// `retry_after` is the parsed `Retry-After` header ([`parse_retry_after`]); it is
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
/// function, [`parse_retry_after`] and [`classify_io`](super::classify_io):
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
        // (Listed for the reader: the catch-all below says the same, so a
        // mutant deleting this arm is equivalent.)
        500..=599 => ErrorClass::Transient,
        100..=399 => ErrorClass::CallerFault,
        _ => ErrorClass::Transient,
    }
}

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

fn ascii_digit(byte: u8) -> Option<u8> {
    byte.is_ascii_digit().then(|| byte.wrapping_sub(b'0'))
}

/// A point in time as whole seconds since the Unix epoch, floored, plus the
/// nanoseconds into that second. `i128` holds any `SystemTime` without overflow.
struct UnixTime {
    secs: i128,
    nanos: u32,
}

impl UnixTime {
    fn from_system_time(time: SystemTime) -> Self {
        match time.duration_since(UNIX_EPOCH) {
            Ok(after) => UnixTime {
                secs: i128::from(after.as_secs()),
                nanos: after.subsec_nanos(),
            },
            Err(before) => {
                let before = before.duration();
                let secs = -i128::from(before.as_secs());
                match before.subsec_nanos() {
                    0 => UnixTime { secs, nanos: 0 },
                    nanos => UnixTime {
                        secs: secs - 1,
                        nanos: 1_000_000_000 - nanos,
                    },
                }
            }
        }
    }

    /// The wait from `self` until the whole second `date`, zero if not after `self`.
    fn until(&self, date: i64) -> Duration {
        let secs = i128::from(date) - self.secs;
        if secs <= 0 {
            return Duration::ZERO;
        }
        let secs = u64::try_from(secs).unwrap_or(u64::MAX);
        Duration::from_secs(secs).saturating_sub(Duration::from_nanos(u64::from(self.nanos)))
    }

    /// The civil date and second of the day (UTC); `None` only for absurd times.
    fn civil(&self) -> Option<(i64, u32, u32, u32)> {
        let days = i64::try_from(self.secs.div_euclid(i128::from(SECS_PER_DAY))).ok()?;
        let second = u32::try_from(self.secs.rem_euclid(i128::from(SECS_PER_DAY))).ok()?;
        let (year, month, day) = civil_from_days(days)?;
        Some((year, month, day, second))
    }
}

/// An HTTP-date as Unix seconds, in any of the three formats.
fn http_date(value: &str, now: &UnixTime) -> Option<i64> {
    let mut fields = [""; 6];
    let mut count = 0_usize;
    for field in value.split(' ').filter(|field| !field.is_empty()) {
        *fields.get_mut(count)? = field;
        count += 1;
    }
    match (count, fields) {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        (6, [weekday, day, month, year, time, zone]) => {
            weekday_name(weekday.strip_suffix(',')?)?;
            gmt(zone)?;
            let year = i64::from(number(year, 4, 4)?);
            unix_seconds(
                year,
                month_number(month)?,
                number(day, 1, 2)?,
                time_of_day(time)?,
            )
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        (4, [weekday, date, time, zone, _, _]) => {
            weekday_name(weekday.strip_suffix(',')?)?;
            gmt(zone)?;
            let mut parts = date.split('-');
            let (day, month, year) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            let (day, month, time) = (number(day, 1, 2)?, month_number(month)?, time_of_day(time)?);
            let year = match year.len() {
                2 => two_digit_year(number(year, 2, 2)?, month, day, time, now)?,
                _ => i64::from(number(year, 4, 4)?),
            };
            unix_seconds(year, month, day, time)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        (5, [weekday, month, day, time, year, _]) => {
            weekday_name(weekday)?;
            let year = i64::from(number(year, 4, 4)?);
            unix_seconds(
                year,
                month_number(month)?,
                number(day, 1, 2)?,
                time_of_day(time)?,
            )
        }
        _ => None,
    }
}

/// RFC 9110 §5.6.7: a two-digit year that would put the date more than 50 years
/// after `now` is the most recent past year with the same last two digits.
fn two_digit_year(yy: u32, month: u32, day: u32, time: u32, now: &UnixTime) -> Option<i64> {
    let (now_year, now_month, now_day, now_time) = now.civil()?;
    let latest = (now_year.checked_add(50)?, now_month, now_day, now_time);
    // Start in the century after now's and step back: at most twice, since
    // `year - 200` is before now's year and so never past `latest`.
    let mut year = now_year
        .checked_sub(now_year.rem_euclid(100))?
        .checked_add(100)?
        .checked_add(i64::from(yy))?;
    while (year, month, day, time) > latest {
        year = year.checked_sub(100)?;
    }
    Some(year)
}

/// Unix seconds of a validated civil date and second of the day.
fn unix_seconds(year: i64, month: u32, day: u32, time: u32) -> Option<i64> {
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    days_from_civil(year, month, day)?
        .checked_mul(SECS_PER_DAY)?
        .checked_add(i64::from(time))
}

/// `HH:MM:SS` as seconds into the day; `:60` (a leap second) is allowed.
fn time_of_day(field: &str) -> Option<u32> {
    let mut parts = field.split(':');
    let (hour, minute, second) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (hour, minute, second) = (
        number(hour, 2, 2)?,
        number(minute, 2, 2)?,
        number(second, 2, 2)?,
    );
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(hour * 3600 + minute * 60 + second)
}

/// A decimal of `min..=max` ASCII digits (at most 9, so it cannot overflow).
fn number(field: &str, min: usize, max: usize) -> Option<u32> {
    if !(min..=max.min(9)).contains(&field.len()) {
        return None;
    }
    field.bytes().try_fold(0_u32, |value, byte| {
        value
            .checked_mul(10)?
            .checked_add(u32::from(ascii_digit(byte)?))
    })
}

fn month_number(name: &str) -> Option<u32> {
    let index = MONTHS
        .iter()
        .position(|month| month.eq_ignore_ascii_case(name))?;
    u32::try_from(index).ok()?.checked_add(1)
}

fn weekday_name(name: &str) -> Option<()> {
    DAYS.iter()
        .chain(LONG_DAYS.iter())
        .any(|day| day.eq_ignore_ascii_case(name))
        .then_some(())
}

fn gmt(zone: &str) -> Option<()> {
    zone.eq_ignore_ascii_case("GMT").then_some(())
}

fn is_leap_year(year: i64) -> bool {
    year.rem_euclid(4) == 0 && (year.rem_euclid(100) != 0 || year.rem_euclid(400) == 0)
}

/// Days in `month` (1–12) of `year`; 0 for a month out of range.
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Hinnant's `days_from_civil`).
/// `month` must be 1–12 and `day` 1–31; `None` on overflow.
fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    let (month, day) = (i64::from(month), i64::from(day));
    // Years start on 1 March, so that the leap day is the last day of the year.
    let year = if month <= 2 {
        year.checked_sub(1)?
    } else {
        year
    };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400); // 0..=399
    let shifted_month = if month > 2 { month - 3 } else { month + 9 }; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1; // 0..=365
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era.checked_mul(146_097)?
        .checked_add(day_of_era)?
        .checked_sub(719_468)
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Hinnant's
/// `civil_from_days`), as (year, month 1–12, day 1–31); `None` on overflow.
fn civil_from_days(days: i64) -> Option<(i64, u32, u32)> {
    let days = days.checked_add(719_468)?;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097); // 0..=146_096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153; // March = 0
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = era.checked_mul(400)?.checked_add(year_of_era)?;
    let year = if month <= 2 {
        year.checked_add(1)?
    } else {
        year
    };
    Some((year, u32::try_from(month).ok()?, u32::try_from(day).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
    const RFC_EXAMPLE: i64 = 784_111_777;

    fn at(unix: i64) -> SystemTime {
        match u64::try_from(unix) {
            Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
            Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
        }
    }

    fn secs(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    // An independent, naive calendar (day-by-year and day-by-month loops) to check
    // the Hinnant arithmetic against, and to format dates for round trips.
    fn naive_year_len(year: i64) -> i64 {
        if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 {
            366
        } else {
            365
        }
    }

    fn naive_month_len(year: i64, month: usize) -> i64 {
        let lens = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if month == 1 && naive_year_len(year) == 366 {
            29
        } else {
            lens[month]
        }
    }

    /// (year, month index 0–11, day 1–31, hour, minute, second, weekday index Mon = 0).
    fn naive_civil(unix: i64) -> (i64, usize, i64, i64, i64, i64, usize) {
        let (mut days, second_of_day) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
        let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
        let mut year = 1970;
        while days < 0 {
            year -= 1;
            days += naive_year_len(year);
        }
        while days >= naive_year_len(year) {
            days -= naive_year_len(year);
            year += 1;
        }
        let mut month = 0;
        while days >= naive_month_len(year, month) {
            days -= naive_month_len(year, month);
            month += 1;
        }
        let (h, m, s) = (
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
        );
        (year, month, days + 1, h, m, s, weekday)
    }

    /// Unix seconds of a date in 1970 or later.
    fn naive_unix(year: i64, month: usize, day: i64, h: i64, m: i64, s: i64) -> i64 {
        let mut days: i64 = (1970..year).map(naive_year_len).sum();
        days += (0..month - 1)
            .map(|mo| naive_month_len(year, mo))
            .sum::<i64>();
        (days + day - 1) * 86_400 + h * 3600 + m * 60 + s
    }

    fn imf_fixdate(unix: i64) -> String {
        let (y, mo, d, h, m, s, wd) = naive_civil(unix);
        format!(
            "{}, {d:02} {} {y:04} {h:02}:{m:02}:{s:02} GMT",
            DAYS[wd], MONTHS[mo]
        )
    }

    fn asctime(unix: i64) -> String {
        let (y, mo, d, h, m, s, wd) = naive_civil(unix);
        format!(
            "{} {} {d:>2} {h:02}:{m:02}:{s:02} {y:04}",
            DAYS[wd], MONTHS[mo]
        )
    }

    #[test]
    fn the_naive_formatter_is_right_about_the_rfc_example() {
        assert_eq!(imf_fixdate(RFC_EXAMPLE), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(asctime(RFC_EXAMPLE), "Sun Nov  6 08:49:37 1994");
        assert_eq!(naive_unix(1994, 11, 6, 8, 49, 37), RFC_EXAMPLE);
    }

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
    fn rfc_examples_in_all_three_formats() {
        let two_minutes_before = at(RFC_EXAMPLE - 120);
        for value in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after_at(value, two_minutes_before),
                secs(120),
                "{value}"
            );
            assert_eq!(
                parse_retry_after_at(value, at(RFC_EXAMPLE)),
                secs(0),
                "{value}"
            );
            assert_eq!(
                parse_retry_after_at(value, at(RFC_EXAMPLE + 1)),
                secs(0),
                "{value}"
            );
            assert_eq!(
                parse_retry_after_at(value, at(1_750_000_000)),
                secs(0),
                "{value}"
            );
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

    #[test]
    fn lenient_where_nothing_is_at_stake() {
        let now = at(RFC_EXAMPLE - 120);
        for value in [
            "Mon, 06 Nov 1994 08:49:37 GMT",       // wrong weekday
            "Sunday, 06 Nov 1994 08:49:37 GMT",    // long name in IMF-fixdate
            "Sun, 06-Nov-94 08:49:37 GMT",         // short name in RFC 850
            "sun, 06 NOV 1994 08:49:37 gmt",       // ASCII case
            "Sun,  06 Nov   1994 08:49:37  GMT",   // runs of spaces
            " \tSun, 06 Nov 1994 08:49:37 GMT\t ", // surrounding whitespace
            "Sun, 6 Nov 1994 08:49:37 GMT",        // one-digit day
            "Sunday, 06-Nov-1994 08:49:37 GMT",    // four-digit RFC 850 year
            "Sun Nov 6 08:49:37 1994",             // asctime, single space
            "Sun Nov 06 08:49:37 1994",            // asctime, zero-padded
        ] {
            assert_eq!(parse_retry_after_at(value, now), secs(120), "{value}");
        }
    }

    #[test]
    fn strict_where_the_date_would_be_wrong() {
        let now = at(RFC_EXAMPLE - 120);
        for value in [
            "Fri, 31 Feb 2023 00:00:00 GMT", // no 31 Feb
            "Wed, 29 Feb 2023 00:00:00 GMT", // 2023 is not a leap year
            "Thu, 29 Feb 1900 00:00:00 GMT", // nor is 1900
            "Sun, 31 Apr 2024 00:00:00 GMT", // April has 30 days
            "Sun, 00 Nov 1994 08:49:37 GMT", // day zero
            "Sun, 32 Jan 1994 08:49:37 GMT", // day 32
            "Sun, 06 Nox 1994 08:49:37 GMT", // month name
            "Sun, 06 November 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT", // hour
            "Sun, 06 Nov 1994 08:60:00 GMT", // minute
            "Sun, 06 Nov 1994 08:49:61 GMT", // second
            "Sun, 06 Nov 1994 8:49:37 GMT",  // one-digit hour
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 94 08:49:37 GMT", // two-digit year in IMF-fixdate
            "Sun, 06 Nov 01994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC", // zone
            "Sun, 06 Nov 1994 08:49:37 +0000",
            "Sun, 06 Nov 1994 08:49:37", // truncated
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Sux, 06 Nov 1994 08:49:37 GMT", // weekday name
            "Sun 06 Nov 1994 08:49:37 GMT",  // comma missing
            "Sun,06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94-1 08:49:37 GMT",
            "Sunday, 06-Nov 08:49:37 GMT",
            "Sunday, 06-Nov-994 08:49:37 GMT",
            "Sun, Nov  6 08:49:37 1994", // comma in asctime
            "Sun Nov  6 08:49:37 94",
            "Sun Nov  6 08:49:37 1994 GMT",
            "Sun Nov 31 08:49:37 1994",
            "Sun Nov 006 08:49:37 1994",
        ] {
            assert_eq!(parse_retry_after_at(value, now), None, "{value}");
        }
    }

    #[test]
    fn every_truncation_of_a_date_is_none() {
        let now = at(RFC_EXAMPLE - 120);
        for full in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            for end in 0..full.len() {
                let truncated = &full[..end];
                assert_eq!(parse_retry_after_at(truncated, now), None, "{truncated:?}");
            }
        }
    }

    #[test]
    fn leap_days_and_leap_seconds() {
        let now = at(naive_unix(2024, 2, 28, 0, 0, 0));
        assert_eq!(
            parse_retry_after_at("Thu, 29 Feb 2024 00:00:00 GMT", now),
            secs(86_400)
        );
        assert_eq!(
            parse_retry_after_at("Thu Feb 29 00:00:00 2024", now),
            secs(86_400)
        );
        assert_eq!(
            parse_retry_after_at("Tue, 29 Feb 2000 00:00:00 GMT", at(0)),
            secs(951_782_400)
        );
        // 23:59:60 counts as the next day's first second: never earlier than asked.
        let now = at(naive_unix(2016, 12, 31, 23, 59, 0));
        assert_eq!(
            parse_retry_after_at("Sat, 31 Dec 2016 23:59:60 GMT", now),
            secs(60)
        );
        assert_eq!(
            parse_retry_after_at("Sat, 31 Dec 2016 23:59:59 GMT", now),
            secs(59)
        );
    }

    #[test]
    fn far_past_and_far_future_dates() {
        let now = at(RFC_EXAMPLE);
        assert_eq!(
            parse_retry_after_at("Sat, 01 Jan 0000 00:00:00 GMT", now),
            secs(0)
        );
        assert_eq!(
            parse_retry_after_at("Thu, 01 Jan 1970 00:00:00 GMT", now),
            secs(0)
        );
        let end = naive_unix(9999, 12, 31, 23, 59, 59);
        assert_eq!(end, 253_402_300_799);
        let expected = u64::try_from(end - RFC_EXAMPLE).unwrap();
        assert_eq!(
            parse_retry_after_at("Fri, 31 Dec 9999 23:59:59 GMT", now),
            secs(expected)
        );
    }

    #[test]
    fn two_digit_years_follow_the_fifty_year_rule() {
        let jan_2025 = naive_unix(2025, 1, 1, 0, 0, 0);
        let now = at(jan_2025);
        let wait_until =
            |year| secs(u64::try_from(naive_unix(year, 1, 1, 0, 0, 0) - jan_2025).unwrap());
        // Exactly 50 years ahead is still the future...
        assert_eq!(
            parse_retry_after_at("Friday, 01-Jan-75 00:00:00 GMT", now),
            wait_until(2075)
        );
        assert_eq!(
            parse_retry_after_at("Monday, 01-Jan-74 00:00:00 GMT", now),
            wait_until(2074)
        );
        // ...one second more is the past century.
        assert_eq!(
            parse_retry_after_at("Friday, 01-Jan-75 00:00:01 GMT", now),
            secs(0)
        );
        assert_eq!(
            parse_retry_after_at("Sunday, 06-Nov-94 08:49:37 GMT", now),
            secs(0)
        );
        assert_eq!(
            parse_retry_after_at("Wednesday, 01-Jan-25 00:00:10 GMT", now),
            secs(10)
        );

        // Late in a century, a small year is the next century.
        let jan_2090 = naive_unix(2090, 1, 1, 0, 0, 0);
        let expected = naive_unix(2110, 1, 1, 0, 0, 0) - jan_2090;
        let value = "Wednesday, 01-Jan-10 00:00:00 GMT";
        assert_eq!(
            parse_retry_after_at(value, at(jan_2090)),
            secs(u64::try_from(expected).unwrap())
        );

        // The century is chosen before the leap day is checked: 29-Feb-00 is 2000
        // (a leap year) seen from 1999, but 1900 seen from 1930 and 2100 seen from
        // 2060, and neither of those is a leap year.
        let value = "Tuesday, 29-Feb-00 00:00:00 GMT";
        let feb_2000 = naive_unix(2000, 2, 29, 0, 0, 0);
        assert_eq!(parse_retry_after_at(value, at(feb_2000 - 5)), secs(5));
        let jan_1930 = -1_262_304_000; // 40 years of 365 days and 10 leap days before 1970
        assert_eq!(parse_retry_after_at(value, at(jan_1930)), None);
        assert_eq!(
            parse_retry_after_at(value, at(naive_unix(2060, 1, 1, 0, 0, 0))),
            None
        );
        let value = "Thursday, 28-Feb-00 00:00:00 GMT";
        // 1900-02-28: 30 years of 365 days, 7 leap days (1904..=1928), less 58 days of 1900.
        let feb_1900 = jan_1930 - (30 * 365 + 7 - 58) * 86_400;
        assert_eq!(parse_retry_after_at(value, at(feb_1900 - 3)), secs(3));
    }

    #[test]
    fn civil_arithmetic_matches_known_days() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(1969, 12, 31), Some(-1));
        assert_eq!(days_from_civil(0, 1, 1), Some(-719_528));
        assert_eq!(civil_from_days(0), Some((1970, 1, 1)));
        assert_eq!(civil_from_days(-1), Some((1969, 12, 31)));
        assert_eq!(civil_from_days(11_017), Some((2000, 3, 1)));
        // Era and century edges (mutation-testing regressions): the last day
        // of a 400-year era, and the days around skipped leap days.
        assert_eq!(civil_from_days(11_016), Some((2000, 2, 29)));
        assert_eq!(civil_from_days(157_113), Some((2400, 2, 29)));
        assert_eq!(civil_from_days(47_540), Some((2100, 2, 28)));
        assert_eq!(civil_from_days(47_541), Some((2100, 3, 1)));
        assert_eq!(civil_from_days(-25_508), Some((1900, 3, 1)));
        assert_eq!(civil_from_days(-134_774), Some((1601, 1, 1)));
        assert_eq!(civil_from_days(24_855), Some((2038, 1, 19)));
        assert_eq!(days_from_civil(i64::MAX, 12, 31), None);
        assert_eq!(days_from_civil(i64::MIN, 1, 1), None);
        assert_eq!(civil_from_days(i64::MAX), None);
        let _ = civil_from_days(i64::MIN); // must not panic
    }

    fn date_ish() -> impl Strategy<Value = String> {
        "[SundayMonTueWdhFriSatJanFebMrApyJulAgOctNvDcGT0-9 ,:\\-\t]{0,40}"
    }

    fn any_now() -> impl Strategy<Value = SystemTime> {
        (-100_000_000_000_i64..100_000_000_000, 0_u32..1_000_000_000)
            .prop_map(|(secs, nanos)| at(secs) + Duration::from_nanos(u64::from(nanos)))
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic(value in any::<String>(), now in any_now()) {
            let _ = parse_retry_after_at(&value, now);
        }

        #[test]
        fn date_ish_strings_never_panic(value in date_ish(), now in any_now()) {
            let _ = parse_retry_after_at(&value, now);
        }

        #[test]
        fn dates_with_one_byte_changed_never_panic(
            index in 0_usize..31,
            byte in any::<u8>(),
            now in any_now(),
        ) {
            for full in ["Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
                let mut bytes = full.as_bytes().to_vec();
                if let Some(slot) = bytes.get_mut(index) {
                    *slot = byte;
                }
                let value = String::from_utf8_lossy(&bytes);
                let _ = parse_retry_after_at(&value, now);
            }
        }

        #[test]
        fn delta_seconds_round_trip(n in any::<u64>()) {
            prop_assert_eq!(parse_retry_after_at(&n.to_string(), UNIX_EPOCH), secs(n));
        }

        #[test]
        fn formatted_dates_round_trip(
            date in -62_167_219_200_i64..=253_402_300_799, // 0000-01-01 ..= 9999-12-31
            now in -62_167_219_200_i64..=253_402_300_799,
        ) {
            let expected = secs(u64::try_from(date - now).unwrap_or(0));
            prop_assert_eq!(parse_retry_after_at(&imf_fixdate(date), at(now)), expected);
            prop_assert_eq!(parse_retry_after_at(&asctime(date), at(now)), expected);
        }

        #[test]
        fn civil_round_trips(days in -1_000_000_000_i64..1_000_000_000) {
            let (year, month, day) = civil_from_days(days).unwrap();
            prop_assert!((1..=12).contains(&month));
            prop_assert!(day >= 1 && day <= days_in_month(year, month));
            prop_assert_eq!(days_from_civil(year, month, day), Some(days));
        }

        #[test]
        fn civil_matches_the_naive_calendar(unix in -62_167_219_200_i64..=253_402_300_799) {
            let (year, month, day, h, m, s, _) = naive_civil(unix);
            let time = u32::try_from(h * 3600 + m * 60 + s).unwrap();
            let month = u32::try_from(month + 1).unwrap();
            let day = u32::try_from(day).unwrap();
            prop_assert_eq!(unix_seconds(year, month, day, time), Some(unix));
        }
    }
}
