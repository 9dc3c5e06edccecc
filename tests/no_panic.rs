//! No panic on any input: every builder returns a value or a typed error for
//! arbitrary values, and the `Retry-After` parser for arbitrary strings.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use safecall::testing::Chaos;
use safecall::{
    Breaker, BreakerConfig, BreakerMode, BreakerRegistry, Outcome, RetryBudget, parse_retry_after,
    parse_retry_after_at,
};

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

fn ratio() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        Just(1.0),
        any::<f64>(),
        0.0f64..=1.0,
    ]
}

fn mode() -> impl Strategy<Value = BreakerMode> {
    prop_oneof![
        Just(BreakerMode::Enabled),
        Just(BreakerMode::Disabled),
        Just(BreakerMode::MetricsOnly)
    ]
}

#[derive(Debug, Clone)]
struct Rules {
    consecutive: u32,
    rate: f64,
    window: Duration,
    count: u32,
    use_count: bool,
    buckets: u32,
    minimum_calls: u32,
    slow: Option<Duration>,
}

#[derive(Debug, Clone)]
struct Recovery {
    open: Duration,
    growth: Option<(f64, Duration)>,
    jitter: f64,
    probes: u32,
    successes: u32,
    lease: Duration,
    cooldown: bool,
    mode: BreakerMode,
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        (any::<u32>(), ratio(), duration(), any::<u32>()),
        (
            any::<bool>(),
            any::<u32>(),
            any::<u32>(),
            proptest::option::of(duration()),
        ),
    )
        .prop_map(
            |((consecutive, rate, window, count), (use_count, buckets, minimum_calls, slow))| {
                Rules {
                    consecutive,
                    rate,
                    window,
                    count,
                    use_count,
                    buckets,
                    minimum_calls,
                    slow,
                }
            },
        )
}

fn recovery() -> impl Strategy<Value = Recovery> {
    (
        (
            duration(),
            proptest::option::of((ratio(), duration())),
            ratio(),
            any::<u32>(),
        ),
        (any::<u32>(), duration(), any::<bool>(), mode()),
    )
        .prop_map(
            |((open, growth, jitter, probes), (successes, lease, cooldown, mode))| Recovery {
                open,
                growth,
                jitter,
                probes,
                successes,
                lease,
                cooldown,
                mode,
            },
        )
}

fn config() -> impl Strategy<Value = BreakerConfig> {
    (
        rules(),
        recovery(),
        proptest::option::of((ratio(), duration(), any::<u32>())),
    )
        .prop_map(|(r, v, budget)| {
            let mut c = BreakerConfig::default()
                .consecutive_failures(r.consecutive)
                .window_buckets(r.buckets)
                .minimum_calls(r.minimum_calls)
                .open_duration(v.open)
                .open_jitter(v.jitter)
                .half_open_probes(v.probes)
                .successes_to_close(v.successes)
                .probe_lease(v.lease)
                .retry_after_cooldown(v.cooldown)
                .mode(v.mode)
                .seed(7);
            c = if r.use_count {
                c.count_window(r.rate, r.count)
            } else {
                c.failure_rate(r.rate, r.window)
            };
            if let Some(s) = r.slow {
                c = c.slow_call(s);
            }
            if let Some((factor, cap)) = v.growth {
                c = c.open_growth(factor, cap);
            }
            if let Some((ratio, window, min)) = budget {
                c = c.retry_budget(
                    RetryBudget::default()
                        .ratio(ratio)
                        .window(window)
                        .min_per_second(min),
                );
            }
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_breaker_config_builds_or_is_refused_and_a_built_breaker_works(
        c in config(),
        outcomes in proptest::collection::vec(0u8..4, 0..40),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            match Breaker::try_new(c.clone()) {
                Err(e) => {
                    prop_assert!(!e.field().is_empty());
                    prop_assert!(BreakerRegistry::<u32>::try_new(c).is_err());
                }
                Ok(b) => {
                    for o in outcomes {
                        if let Ok(p) = b.try_acquire() {
                            match o {
                                0 => p.record(Outcome::Success),
                                1 => p.record(Outcome::Failure),
                                2 => p.record(Outcome::RetryAfter(Duration::from_secs(1))),
                                _ => drop(p),
                            }
                        }
                        tokio::time::advance(Duration::from_millis(700)).await;
                    }
                    let _ = b.state();
                    let _ = b.snapshot();
                    b.force_open();
                    b.reset();
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_registry_options_work(max_keys in 0usize..2_000, ttl in duration(), keys in 0u32..3_000) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let r = BreakerRegistry::<u32>::new(BreakerConfig::default())
                .max_keys(max_keys)
                .idle_ttl(ttl);
            for k in 0..keys {
                let b = r.get(&k);
                if let Ok(p) = b.try_acquire() {
                    p.record(Outcome::Success);
                }
            }
            prop_assert!(r.len() <= max_keys);
            r.retain_recent();
            let _ = r.snapshot();
            Ok(())
        })?;
    }

    #[test]
    fn any_chaos_probabilities_build_or_are_refused(e in ratio(), l in ratio(), h in ratio(), a in duration(), b in duration()) {
        let built = Chaos::<()>::new(1).error(e, || ()).latency(l, a..=b).hang(h).build();
        if let Err(err) = built {
            prop_assert!(err.field().starts_with("chaos."));
        }
    }

    #[test]
    fn the_retry_after_parser_never_panics(s in ".{0,64}", now in any::<u64>()) {
        let _ = parse_retry_after(&s);
        let at = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(now));
        if let Some(at) = at {
            let _ = parse_retry_after_at(&s, at);
        }
    }
}
