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
            // Rounding to whole nanoseconds may add at most one.
            prop_assert!(d <= previous * 3 + Duration::from_nanos(1));
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
