//! HTTP-dates (RFC 9110 §5.6.7) in their three formats: IMF-fixdate, RFC 850 and
//! asctime, with std only. Strict where the date would be wrong (every field is
//! checked), lenient where nothing is at stake (weekday, case, runs of spaces):
//! `parse_retry_after_at` documents the rules.

use super::civil::{UnixTime, unix_seconds};

pub(super) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
pub(super) const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const LONG_DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// An HTTP-date as Unix seconds, in any of the three formats.
pub(super) fn http_date(value: &str, now: &UnixTime) -> Option<i64> {
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

pub(super) fn ascii_digit(byte: u8) -> Option<u8> {
    byte.is_ascii_digit().then(|| byte.wrapping_sub(b'0'))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::classify::parse_retry_after_at;
    use crate::classify::test_dates::*;
    use proptest::prelude::*;

    #[test]
    fn the_httpdate_crates_vectors() {
        // The vectors of the `httpdate` crate's tests, read from the epoch: the
        // RFC's example in all three formats, a 2016 date, and a walk through
        // 1970-1999 by hours, days, months and years.
        let from_epoch = at(0);
        for (value, unix) in [
            ("Sun, 06 Nov 1994 08:49:37 GMT", RFC_EXAMPLE),
            ("Sunday, 06-Nov-94 08:49:37 GMT", RFC_EXAMPLE),
            ("Sun Nov  6 08:49:37 1994", RFC_EXAMPLE),
            ("Sun, 02 Oct 2016 14:44:11 GMT", 1_475_419_451),
            ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
            ("Thu, 01 Jan 1970 01:00:00 GMT", 3_600),
            ("Fri, 02 Jan 1970 01:00:00 GMT", 90_000),
            ("Sun, 01 Feb 1970 01:00:00 GMT", 2_682_000),
            ("Tue, 03 Mar 1970 01:00:00 GMT", 5_274_000),
            ("Wed, 03 Mar 1971 01:00:05 GMT", 36_810_005),
            ("Mon, 30 Aug 1971 01:00:05 GMT", 52_362_005),
            ("Mon, 08 Nov 1971 01:00:05 GMT", 58_410_005),
            ("Fri, 26 Mar 1999 01:00:05 GMT", 922_410_005),
        ] {
            let expected = u64::try_from(unix).ok();
            assert_eq!(
                parse_retry_after_at(value, from_epoch),
                expected.map(Duration::from_secs),
                "{value}"
            );
        }
        // Its malformed ones: a bad separator in the time, and no 29 Feb 1900.
        for value in [
            "Sun Nov 10 08*00:00 2000",
            "Sunday, 06-Nov-94 08+49:37 GMT",
            "Thu, 29 Feb 1900 00:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after_at(value, from_epoch), None, "{value}");
        }
        // `httpdate` refuses years before 1970 (it returns a `SystemTime`);
        // a Retry-After date that far back is simply in the past: no wait.
        assert_eq!(
            parse_retry_after_at("Sun Nov 10 08:00:00 1000", from_epoch),
            secs(0)
        );
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

    fn date_ish() -> impl Strategy<Value = String> {
        "[SundayMonTueWdhFriSatJanFebMrApyJulAgOctNvDcGT0-9 ,:\\-\t]{0,40}"
    }

    proptest! {
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
        fn formatted_dates_round_trip(
            date in -62_167_219_200_i64..=253_402_300_799, // 0000-01-01 ..= 9999-12-31
            now in -62_167_219_200_i64..=253_402_300_799,
        ) {
            let expected = secs(u64::try_from(date - now).unwrap_or(0));
            prop_assert_eq!(parse_retry_after_at(&imf_fixdate(date), at(now)), expected);
            prop_assert_eq!(parse_retry_after_at(&asctime(date), at(now)), expected);
        }
    }
}
