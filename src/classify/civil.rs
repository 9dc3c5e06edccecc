//! Unix time and the proleptic Gregorian calendar, for HTTP-dates.
//!
//! The date arithmetic (civil date to Unix seconds and back) is Howard Hinnant's
//! `days_from_civil` / `civil_from_days`, written with checked arithmetic so that no
//! input can make it panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SECS_PER_DAY: i64 = 86_400;

/// A point in time as whole seconds since the Unix epoch, floored, plus the
/// nanoseconds into that second. `i128` holds any `SystemTime` without overflow.
pub(super) struct UnixTime {
    secs: i128,
    nanos: u32,
}

impl UnixTime {
    pub(super) fn from_system_time(time: SystemTime) -> Self {
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
    pub(super) fn until(&self, date: i64) -> Duration {
        let secs = i128::from(date) - self.secs;
        if secs <= 0 {
            return Duration::ZERO;
        }
        let secs = u64::try_from(secs).unwrap_or(u64::MAX);
        Duration::from_secs(secs).saturating_sub(Duration::from_nanos(u64::from(self.nanos)))
    }

    /// The civil date and second of the day (UTC); `None` only for absurd times.
    pub(super) fn civil(&self) -> Option<(i64, u32, u32, u32)> {
        let days = i64::try_from(self.secs.div_euclid(i128::from(SECS_PER_DAY))).ok()?;
        let second = u32::try_from(self.secs.rem_euclid(i128::from(SECS_PER_DAY))).ok()?;
        let (year, month, day) = civil_from_days(days)?;
        Some((year, month, day, second))
    }
}

/// Unix seconds of a validated civil date and second of the day.
pub(super) fn unix_seconds(year: i64, month: u32, day: u32, time: u32) -> Option<i64> {
    if day == 0 || day > days_in_month(year, month) {
        return None;
    }
    days_from_civil(year, month, day)?
        .checked_mul(SECS_PER_DAY)?
        .checked_add(i64::from(time))
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
    use crate::classify::test_dates::naive_civil;
    use proptest::prelude::*;

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

    proptest! {
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
