//! Properties of every backoff schedule and jitter kind, over seeds and attempts.

use std::time::Duration;

use proptest::prelude::*;
use safecall::{Backoff, Jitter};

fn jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![
        Just(Jitter::None),
        Just(Jitter::Full),
        Just(Jitter::Equal),
        Just(Jitter::Decorrelated),
    ]
}

fn schedule() -> impl Strategy<Value = Backoff> {
    (
        1u64..10_000_000_000,
        1.0f64..20.0,
        0u64..1_000_000_000_000,
        jitter(),
        0u8..4,
    )
        .prop_map(|(base, factor, extra, jitter, kind)| {
            let base = Duration::from_nanos(base);
            let b = match kind {
                0 => Backoff::exponential(base).factor(factor),
                1 => Backoff::linear(base),
                2 => Backoff::fibonacci(base),
                _ => Backoff::constant(base),
            };
            b.max_delay(base + Duration::from_nanos(extra))
                .jitter(jitter)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_delay_is_within_zero_and_max_delay(b in schedule(), seed: u64, skip in 0usize..200) {
        prop_assert!(b.validate().is_ok());
        for d in b.delays(seed).skip(skip).take(50) {
            prop_assert!(d <= b.get_max_delay(), "{d:?} > {:?}", b.get_max_delay());
        }
    }

    #[test]
    fn equal_jitter_keeps_at_least_half(b in schedule(), seed: u64) {
        let b = b.jitter(Jitter::Equal);
        for (k, d) in b.delays(seed).take(60).enumerate() {
            let scheduled = b.scheduled_delay(k as u32 + 1);
            prop_assert!(d >= scheduled / 2 && d <= scheduled, "{d:?} vs {scheduled:?}");
        }
    }

    #[test]
    fn full_jitter_stays_below_the_schedule(b in schedule(), seed: u64) {
        let b = b.jitter(Jitter::Full);
        for (k, d) in b.delays(seed).take(60).enumerate() {
            prop_assert!(d <= b.scheduled_delay(k as u32 + 1));
        }
    }

    #[test]
    fn decorrelated_jitter_is_at_least_base_and_at_most_three_times_the_previous(
        b in schedule(), seed: u64,
    ) {
        let b = b.jitter(Jitter::Decorrelated);
        let mut previous = b.base();
        for d in b.delays(seed).take(60) {
            prop_assert!(d >= b.base());
            prop_assert!(d <= b.get_max_delay());
            // Exact: the draw is made in whole nanoseconds, without rounding up.
            prop_assert!(d <= previous * 3);
            previous = d;
        }
    }

    #[test]
    fn no_overflow_or_panic_at_any_attempt(b in schedule(), k: u32) {
        prop_assert!(b.scheduled_delay(k) <= b.get_max_delay());
    }

    #[test]
    fn arbitrary_values_never_panic_the_builder(
        base: u64, nanos in 0u32..1_000_000_000, factor: f64, cap: u64, j in jitter(),
    ) {
        let b = Backoff::exponential(Duration::new(base, nanos))
            .factor(factor)
            .max_delay(Duration::from_secs(cap))
            .jitter(j);
        if b.validate().is_ok() {
            for d in b.delays(1).take(100) {
                prop_assert!(d <= b.get_max_delay());
            }
        }
    }
}

#[test]
fn attempt_ten_thousand_with_factor_ten_saturates() {
    let b = Backoff::exponential(Duration::from_secs(1))
        .factor(10.0)
        .max_delay(Duration::from_secs(3600));
    assert_eq!(b.scheduled_delay(10_000), Duration::from_secs(3600));
    assert!(b.delays(5).nth(10_000).unwrap() <= Duration::from_secs(3600));
}

// Defect 4 (issue 11): schedules were computed in f64 nanoseconds, so a delay
// past 2^53 ns (about 104 days) lost its last nanoseconds, `Duration::MAX` did not
// come back as itself, and a huge base overshot by milliseconds. Without jitter
// every delay is now exact for any `Duration`; these properties pin that over the
// whole range, against references computed here with `Duration`'s own checked
// arithmetic.

const DAY: Duration = Duration::from_secs(86_400);

/// Any `Duration`, with the edges that broke the f64 arithmetic weighted in.
fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..=u64::MAX >> 1, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s >> 20, n)),
        (1u64..1 << 20).prop_map(|n| Duration::from_nanos((1 << 53) + n)),
        (0u64..1_000_000_000).prop_map(Duration::from_nanos),
        Just(Duration::MAX),
        Just(DAY * 105 + Duration::from_nanos(1)),
        Just(Duration::new(u64::MAX, 0)),
        Just(Duration::new(u64::MAX - 1, 999_999_999)),
        Just(Duration::from_nanos(u64::MAX)),
    ]
}

fn nonzero_duration() -> impl Strategy<Value = Duration> {
    any_duration().prop_map(|d| d.max(Duration::from_nanos(1)))
}

/// `a × k`, saturating at `Duration::MAX`.
fn times(a: Duration, k: u32) -> Duration {
    a.checked_mul(k).unwrap_or(Duration::MAX)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn constant_delays_are_exact_for_any_duration(d in any_duration(), k: u32, seed: u64) {
        let b = Backoff::constant(d);
        prop_assert!(b.validate().is_ok());
        prop_assert_eq!(b.scheduled_delay(k), d);
        for delay in b.delays(seed).take(3) {
            prop_assert_eq!(delay, d);
        }
    }

    #[test]
    fn linear_delays_are_exact_for_any_duration(
        base in nonzero_duration(), cap in any_duration(), k: u32,
    ) {
        let b = Backoff::linear(base).max_delay(cap.max(base)).jitter(Jitter::None);
        prop_assert_eq!(b.scheduled_delay(k), times(base, k.max(1)).min(cap.max(base)));
    }

    #[test]
    fn integer_factor_exponential_delays_are_exact_for_any_duration(
        base in nonzero_duration(), cap in any_duration(), factor in 1u32..=16, k in 1u32..200,
    ) {
        let cap = cap.max(base);
        let b = Backoff::exponential(base)
            .factor(f64::from(factor))
            .max_delay(cap)
            .jitter(Jitter::None);
        let mut expected = base;
        for _ in 1..k {
            expected = times(expected, factor);
        }
        prop_assert_eq!(b.scheduled_delay(k), expected.min(cap));
        let delays: Vec<_> = b.delays(0).take(3).collect();
        let first_three: Vec<_> = (1..=3).map(|k| b.scheduled_delay(k)).collect();
        prop_assert_eq!(delays, first_three);
    }

    #[test]
    fn fibonacci_delays_are_exact_for_any_duration(
        base in nonzero_duration(), cap in any_duration(), k in 1u32..300,
    ) {
        let cap = cap.max(base);
        let b = Backoff::fibonacci(base).max_delay(cap).jitter(Jitter::None);
        let (mut a, mut c) = (base, base);
        for _ in 2..k {
            (a, c) = (c, a.checked_add(c).unwrap_or(Duration::MAX));
        }
        prop_assert_eq!(b.scheduled_delay(k), c.min(cap));
    }

    #[test]
    fn fractional_factor_delays_grow_from_base_to_max_delay(
        base in nonzero_duration(), cap in any_duration(), factor in 1.0f64..4.0, k in 1u32..2_000,
    ) {
        let cap = cap.max(base);
        let b = Backoff::exponential(base).factor(factor).max_delay(cap).jitter(Jitter::None);
        let (this, next) = (b.scheduled_delay(k), b.scheduled_delay(k + 1));
        prop_assert!(base <= this && this <= next && next <= cap, "{this:?} {next:?}");
        // Below the cap, within f64's relative error of base × factor^(k-1).
        let exact = base.as_nanos() as f64 * factor.powi(k as i32 - 1);
        if exact < cap.as_nanos() as f64 * 0.999 {
            let error = (this.as_nanos() as f64 - exact).abs();
            prop_assert!(error <= exact * 1e-12 + 1.0, "{this:?} vs {exact} ns");
        }
    }

    #[test]
    fn jittered_delays_stay_within_their_bounds_for_any_duration(
        base in nonzero_duration(), cap in any_duration(), factor in 1.0f64..4.0, seed: u64,
        kind in 0u8..3,
    ) {
        let cap = cap.max(base);
        let b = match kind {
            0 => Backoff::exponential(base).factor(factor),
            1 => Backoff::linear(base),
            _ => Backoff::constant(base),
        }
        .max_delay(cap);
        for (k, d) in b.jitter(Jitter::Full).delays(seed).take(20).enumerate() {
            prop_assert!(d <= b.scheduled_delay(k as u32 + 1));
        }
        for (k, d) in b.jitter(Jitter::Equal).delays(seed).take(20).enumerate() {
            let scheduled = b.scheduled_delay(k as u32 + 1);
            prop_assert!(scheduled / 2 <= d && d <= scheduled, "{d:?} vs {scheduled:?}");
        }
        let mut previous = base;
        for d in b.jitter(Jitter::Decorrelated).delays(seed).take(20) {
            let high = previous.checked_mul(3).unwrap_or(Duration::MAX).min(cap);
            prop_assert!(base <= d && d <= high, "{d:?} not in [{base:?}, {high:?}]");
            previous = d;
        }
    }
}

#[test]
fn a_constant_of_105_days_and_a_nanosecond_is_not_a_nanosecond_short() {
    let d = DAY * 105 + Duration::from_nanos(1);
    assert_eq!(Backoff::constant(d).delays(0).next(), Some(d));
    let linear = Backoff::linear(d)
        .max_delay(Duration::MAX)
        .jitter(Jitter::None);
    assert_eq!(linear.scheduled_delay(3), d * 3);
}

#[test]
fn duration_max_comes_back_as_itself() {
    assert_eq!(
        Backoff::constant(Duration::MAX).scheduled_delay(1),
        Duration::MAX
    );
    let b = Backoff::exponential(Duration::MAX)
        .max_delay(Duration::MAX)
        .jitter(Jitter::None);
    assert_eq!(b.scheduled_delay(1), Duration::MAX);
    assert_eq!(b.scheduled_delay(u32::MAX), Duration::MAX);
}

#[test]
fn an_exponential_schedule_from_a_huge_base_does_not_overshoot() {
    for base in [
        Duration::new(1 << 40, 123_456_789),
        Duration::new(u64::MAX / 3, 1),
        Duration::new(u64::MAX - 1, 999_999_999),
    ] {
        let b = Backoff::exponential(base)
            .max_delay(Duration::MAX)
            .jitter(Jitter::None);
        let delays: Vec<_> = b.delays(0).take(3).collect();
        assert_eq!(delays, [base, times(base, 2), times(base, 4)], "{base:?}");
    }
}
