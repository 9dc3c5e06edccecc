//! Test helpers for the date parsers: an independent, naive calendar (loops over
//! years and months) to check the Hinnant arithmetic against, and formatters for
//! round trips.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;

use super::http_date::{DAYS, MONTHS};

/// Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
pub(super) const RFC_EXAMPLE: i64 = 784_111_777;

pub(super) fn at(unix: i64) -> SystemTime {
    match u64::try_from(unix) {
        Ok(secs) => UNIX_EPOCH + Duration::from_secs(secs),
        Err(_) => UNIX_EPOCH - Duration::from_secs(unix.unsigned_abs()),
    }
}

pub(super) fn secs(secs: u64) -> Option<Duration> {
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
pub(super) fn naive_civil(unix: i64) -> (i64, usize, i64, i64, i64, i64, usize) {
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
pub(super) fn naive_unix(year: i64, month: usize, day: i64, h: i64, m: i64, s: i64) -> i64 {
    let mut days: i64 = (1970..year).map(naive_year_len).sum();
    days += (0..month - 1)
        .map(|mo| naive_month_len(year, mo))
        .sum::<i64>();
    (days + day - 1) * 86_400 + h * 3600 + m * 60 + s
}

pub(super) fn imf_fixdate(unix: i64) -> String {
    let (y, mo, d, h, m, s, wd) = naive_civil(unix);
    format!(
        "{}, {d:02} {} {y:04} {h:02}:{m:02}:{s:02} GMT",
        DAYS[wd], MONTHS[mo]
    )
}

pub(super) fn asctime(unix: i64) -> String {
    let (y, mo, d, h, m, s, wd) = naive_civil(unix);
    format!(
        "{} {} {d:>2} {h:02}:{m:02}:{s:02} {y:04}",
        DAYS[wd], MONTHS[mo]
    )
}

pub(super) fn any_now() -> impl Strategy<Value = SystemTime> {
    (-100_000_000_000_i64..100_000_000_000, 0_u32..1_000_000_000)
        .prop_map(|(secs, nanos)| at(secs) + Duration::from_nanos(u64::from(nanos)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_naive_formatter_is_right_about_the_rfc_example() {
        assert_eq!(imf_fixdate(RFC_EXAMPLE), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(asctime(RFC_EXAMPLE), "Sun Nov  6 08:49:37 1994");
        assert_eq!(naive_unix(1994, 11, 6, 8, 49, 37), RFC_EXAMPLE);
    }
}
