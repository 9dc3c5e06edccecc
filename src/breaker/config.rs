//! [`BreakerConfig`]: the knobs of a breaker, validated once into [`Settings`].
//!
//! # Examples
//!
//! ```
//! use safecall::{Breaker, BreakerConfig};
//! use std::time::Duration;
//!
//! let config = BreakerConfig::default()
//!     .consecutive_failures(5)
//!     .failure_rate(0.5, Duration::from_secs(30))
//!     .minimum_calls(20)
//!     .open_duration(Duration::from_secs(30))
//!     .open_growth(2.0, Duration::from_secs(300))
//!     .half_open_probes(1);
//! let breaker = Breaker::try_new(config)?;
//! # Ok::<(), safecall::ConfigError>(())
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::{SharedRng, random_seed};
use crate::breaker::Transition;
use crate::{ConfigError, RetryBudget};

/// How a breaker acts on what it records.
///
/// # Default
///
/// [`BreakerMode::Enabled`].
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerMode {
    /// Record outcomes, trip, and refuse calls while open.
    #[default]
    Enabled,
    /// Let every call through and record nothing: the breaker is switched off.
    Disabled,
    /// Record outcomes and move through the states as usual (the state and the
    /// snapshots report what *would* have happened, and a `tracing` event says
    /// "would have opened"), but never refuse a call: for tuning thresholds on
    /// live traffic.
    MetricsOnly,
}

type Listener = Arc<dyn Fn(&Transition<'_>) + Send + Sync>;

/// The configuration of a circuit breaker: trip rules, open time, half-open
/// probing, and modes.
///
/// Builder-style: every method takes and returns the config by value. Nothing
/// is checked until the config is used by [`Breaker::try_new`] or
/// [`BreakerRegistry::try_new`], which refuse a bad value with a
/// [`ConfigError`] naming the field and the rule; a value is never clamped.
///
/// # Default
///
/// | knob | default |
/// | --- | --- |
/// | [`consecutive_failures`](Self::consecutive_failures) | 5 |
/// | [`failure_rate`](Self::failure_rate) | 50 % over 30 s, in 10 buckets ([`window_buckets`](Self::window_buckets)) |
/// | [`minimum_calls`](Self::minimum_calls) | 20 |
/// | [`open_duration`](Self::open_duration) | 30 s |
/// | [`open_growth`](Self::open_growth) | none (every open period lasts `open_duration`) |
/// | [`half_open_probes`](Self::half_open_probes) | 1 |
/// | [`successes_to_close`](Self::successes_to_close) | 1 |
/// | [`probe_lease`](Self::probe_lease) | the open duration |
/// | [`slow_call`](Self::slow_call) | none |
/// | [`retry_after_cooldown`](Self::retry_after_cooldown) | on |
/// | [`max_cooldown`](Self::max_cooldown) | 60 s |
/// | [`mode`](Self::mode) | [`BreakerMode::Enabled`] |
///
/// [`Breaker::try_new`]: crate::Breaker::try_new
/// [`BreakerRegistry::try_new`]: crate::BreakerRegistry::try_new
#[derive(Clone)]
#[must_use = "a config does nothing until a breaker or registry is built from it"]
pub struct BreakerConfig {
    consecutive_failures: Option<u32>,
    rate: Option<(f64, RateWindow)>,
    window_buckets: u32,
    minimum_calls: u32,
    slow_call: Option<Duration>,
    open_duration: Duration,
    growth: Option<(f64, Duration)>,
    jitter: f64,
    seed: Option<u64>,
    half_open_probes: u32,
    successes_to_close: u32,
    probe_lease: Option<Duration>,
    retry_after_cooldown: bool,
    max_cooldown: Duration,
    mode: BreakerMode,
    listener: Option<Listener>,
    retry_budget: Option<RetryBudget>,
}

#[derive(Debug, Clone, Copy)]
enum RateWindow {
    Time(Duration),
    Count(u32),
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: Some(5),
            rate: Some((0.5, RateWindow::Time(Duration::from_secs(30)))),
            window_buckets: 10,
            minimum_calls: 20,
            slow_call: None,
            open_duration: Duration::from_secs(30),
            growth: None,
            jitter: 0.0,
            seed: None,
            half_open_probes: 1,
            successes_to_close: 1,
            probe_lease: None,
            retry_after_cooldown: true,
            max_cooldown: Duration::from_secs(60),
            mode: BreakerMode::Enabled,
            listener: None,
            retry_budget: None,
        }
    }
}

impl fmt::Debug for BreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BreakerConfig")
            .field("consecutive_failures", &self.consecutive_failures)
            .field("rate", &self.rate)
            .field("window_buckets", &self.window_buckets)
            .field("minimum_calls", &self.minimum_calls)
            .field("slow_call", &self.slow_call)
            .field("open_duration", &self.open_duration)
            .field("growth", &self.growth)
            .field("jitter", &self.jitter)
            .field("half_open_probes", &self.half_open_probes)
            .field("successes_to_close", &self.successes_to_close)
            .field("probe_lease", &self.probe_lease)
            .field("retry_after_cooldown", &self.retry_after_cooldown)
            .field("max_cooldown", &self.max_cooldown)
            .field("mode", &self.mode)
            .field("retry_budget", &self.retry_budget)
            .field(
                "listener",
                &self.listener.as_ref().map(|_| "Fn(&Transition)"),
            )
            .finish_non_exhaustive()
    }
}

/// # Trip rules
impl BreakerConfig {
    /// Trip after `n` counted failures in a row (default 5). Must be at least 1.
    pub fn consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Turn the consecutive-failure rule off (only the failure rate trips).
    pub fn no_consecutive_failures(mut self) -> Self {
        self.consecutive_failures = None;
        self
    }

    /// Trip when the failure ratio over the last `window` reaches `ratio`
    /// (default 0.5 over 30 s), once the window holds at least
    /// [`minimum_calls`](Self::minimum_calls).
    ///
    /// `ratio` must be in (0, 1]; `window` must be non-zero. The window is kept
    /// in [`window_buckets`](Self::window_buckets) buckets (default 10) that
    /// expire one by one. While the window holds no failure a success reads no
    /// clock (it is dated at the next reading, every 16th success); a failure,
    /// and every outcome while one may be in the window, reads the clock once
    /// and is counted exactly.
    pub fn failure_rate(mut self, ratio: f64, window: Duration) -> Self {
        self.rate = Some((ratio, RateWindow::Time(window)));
        self
    }

    /// Like [`failure_rate`](Self::failure_rate), over the last `calls`
    /// recorded calls instead of a time window (no clock read per call).
    pub fn count_window(mut self, ratio: f64, calls: u32) -> Self {
        self.rate = Some((ratio, RateWindow::Count(calls)));
        self
    }

    /// Turn the failure-rate rule off (only consecutive failures trip).
    pub fn no_failure_rate(mut self) -> Self {
        self.rate = None;
        self
    }

    /// How many buckets a time window is kept in (default 10, at least 1).
    pub fn window_buckets(mut self, n: u32) -> Self {
        self.window_buckets = n;
        self
    }

    /// The fewest calls the window must hold before the failure rate can trip
    /// (default 20, at least 1).
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// Count a success that took at least `threshold` as a failure. Reads the
    /// clock when a call is admitted and when it is recorded.
    pub fn slow_call(mut self, threshold: Duration) -> Self {
        self.slow_call = Some(threshold);
        self
    }
}

/// # Open and half-open
impl BreakerConfig {
    /// How long the breaker refuses calls after it trips (default 30 s,
    /// non-zero).
    pub fn open_duration(mut self, d: Duration) -> Self {
        self.open_duration = d;
        self
    }

    /// Lengthen the open time each time a probe fails: the `k`-th re-open in a
    /// row lasts `open_duration * factor^k`, capped at `cap`. `factor` must be
    /// finite and at least 1; `cap` at least the open duration. Closing resets
    /// the growth.
    pub fn open_growth(mut self, factor: f64, cap: Duration) -> Self {
        self.growth = Some((factor, cap));
        self
    }

    /// Shorten each open period by a random fraction of up to `ratio` of it
    /// (in [0, 1], default 0), so that many clients do not probe in lockstep.
    /// Jitter only shortens: an open period never exceeds its growth cap.
    pub fn open_jitter(mut self, ratio: f64) -> Self {
        self.jitter = ratio;
        self
    }

    /// Seed the jitter's random source (a splitmix64), for reproducible tests.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// How many probes may be in flight at once while half-open (default 1, at
    /// least 1).
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// How many probe successes close the breaker (default 1, at least 1).
    pub fn successes_to_close(mut self, n: u32) -> Self {
        self.successes_to_close = n;
        self
    }

    /// How long a probe holds its half-open slot (default: the open
    /// duration). A probe still running after its lease frees its slot, so a
    /// hung probe cannot wedge the breaker; its late outcome is treated as stale.
    pub fn probe_lease(mut self, d: Duration) -> Self {
        self.probe_lease = Some(d);
        self
    }
}

/// # Modes and observation
impl BreakerConfig {
    /// Whether an [`Outcome::RetryAfter`](crate::Outcome::RetryAfter) cools
    /// the breaker down until the server's hinted time (default on): the key's
    /// other calls are then refused at once with the time left. The hint never
    /// counts as a failure.
    pub fn retry_after_cooldown(mut self, on: bool) -> Self {
        self.retry_after_cooldown = on;
        self
    }

    /// The longest a server's hint may cool a key down (default 60 s).
    ///
    /// The hint is the server's word, so it is bounded: a longer one (a
    /// day-long quota reset, a misbehaving server) cools the key for
    /// `max_cooldown` only, and the next call after it is a probe that learns
    /// the provider's current answer. This includes a hint the policy refused
    /// to wait for ([`ExhaustedReason::RetryAfterTooLong`]). Without the bound
    /// one response could lock a tenant out for as long as the server liked
    /// (and keep its breaker from ever being evicted).
    ///
    /// A zero bound is refused with a [`ConfigError`] (to switch cool-downs
    /// off, use [`retry_after_cooldown(false)`](Self::retry_after_cooldown)).
    ///
    /// # Examples
    ///
    /// ```
    /// use safecall::{Breaker, BreakerConfig, Error, ErrorClass, RefusalCause, SafeCall};
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let breaker = Breaker::new(BreakerConfig::default().max_cooldown(Duration::from_secs(60)));
    /// let policy: SafeCall<&str> = SafeCall::builder()
    ///     .classify(|_: &&str| ErrorClass::RetryAfter(Duration::from_secs(86_400)))
    ///     .build()
    ///     .unwrap();
    /// // The server asks for a day of quiet: too long to wait for, but the key
    /// // cools down for a minute only.
    /// let _ = policy.call(|| async { Err::<(), _>("quota") }).breaker(&breaker).await;
    /// let refused = breaker.try_acquire().unwrap_err();
    /// assert_eq!(refused.cause(), RefusalCause::CoolingDown);
    /// assert_eq!(refused.retry_in(), Duration::from_secs(60));
    /// tokio::time::advance(Duration::from_secs(60)).await;
    /// assert!(breaker.try_acquire().is_ok());
    /// # }
    /// ```
    ///
    /// [`ExhaustedReason::RetryAfterTooLong`]: crate::ExhaustedReason::RetryAfterTooLong
    pub fn max_cooldown(mut self, max: Duration) -> Self {
        self.max_cooldown = max;
        self
    }

    /// Set the [`BreakerMode`] (default [`BreakerMode::Enabled`]).
    pub fn mode(mut self, mode: BreakerMode) -> Self {
        self.mode = mode;
        self
    }

    /// Give each breaker a retry budget of its own (default none: calls use
    /// their policy's budget).
    ///
    /// A call through a breaker that has one spends retries from the breaker's
    /// budget **instead of** the policy's: in a registry this is a budget per key,
    /// so one noisy tenant cannot spend the retries of the others. Each key's
    /// budget has its own floor, so size `min_per_second` for one tenant (the
    /// floor multiplies with the number of busy keys). The budget lives with the
    /// breaker's statistics, allocated on first use and given back when an idle
    /// breaker is compacted or evicted.
    ///
    /// # Examples
    ///
    /// ```
    /// use safecall::{BreakerConfig, BreakerRegistry, RetryBudget};
    ///
    /// let per_tenant: BreakerRegistry<String> = BreakerRegistry::new(
    ///     BreakerConfig::default().retry_budget(RetryBudget::default().min_per_second(1)),
    /// );
    /// ```
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.retry_budget = Some(budget);
        self
    }

    /// Call `listener` after every state transition (outside any lock, on the
    /// thread whose call caused it). It may call back into the breaker.
    pub fn on_transition(
        mut self,
        listener: impl Fn(&Transition<'_>) + Send + Sync + 'static,
    ) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// Check every field, returning the validated settings.
    pub(crate) fn validate(&self) -> Result<Settings, ConfigError> {
        fn at_least_one(field: &'static str, n: u32) -> Result<u32, ConfigError> {
            if n == 0 {
                Err(ConfigError::new(field, "must be at least 1, got 0"))
            } else {
                Ok(n)
            }
        }
        fn ratio_ok(field: &'static str, r: f64) -> Result<f64, ConfigError> {
            if r.is_nan() || r <= 0.0 || r > 1.0 {
                Err(ConfigError::new(
                    field,
                    format!("must be in (0, 1], got {r}"),
                ))
            } else {
                Ok(r)
            }
        }
        fn nonzero(field: &'static str, d: Duration) -> Result<Duration, ConfigError> {
            if d.is_zero() {
                Err(ConfigError::new(field, "must be greater than zero"))
            } else {
                Ok(d)
            }
        }

        let consecutive = match self.consecutive_failures {
            Some(n) => at_least_one("consecutive_failures", n)?,
            None => u32::MAX,
        };
        let rate = match self.rate {
            None => RateRule::None,
            Some((ratio, RateWindow::Time(window))) => {
                let ratio = ratio_ok("failure_rate.ratio", ratio)?;
                let window = nonzero("failure_rate.window", window)?;
                let buckets = at_least_one("window_buckets", self.window_buckets)?;
                if buckets > 1024 {
                    return Err(ConfigError::new(
                        "window_buckets",
                        format!("must be at most 1024, got {buckets}"),
                    ));
                }
                let width = window.as_nanos() / u128::from(buckets);
                if width == 0 {
                    return Err(ConfigError::new(
                        "failure_rate.window",
                        format!("must be at least {buckets} ns (one per bucket), got {window:?}"),
                    ));
                }
                RateRule::Time {
                    ratio,
                    buckets,
                    width_nanos: u64::try_from(width).unwrap_or(u64::MAX),
                }
            }
            Some((ratio, RateWindow::Count(calls))) => {
                let ratio = ratio_ok("count_window.ratio", ratio)?;
                let calls = at_least_one("count_window.calls", calls)?;
                if calls > 1 << 20 {
                    return Err(ConfigError::new(
                        "count_window.calls",
                        format!("must be at most {}, got {calls}", 1u32 << 20),
                    ));
                }
                RateRule::Count { ratio, calls }
            }
        };
        let minimum_calls = at_least_one("minimum_calls", self.minimum_calls)?;
        let slow_call = match self.slow_call {
            Some(d) => Some(nonzero("slow_call", d)?),
            None => None,
        };
        let open_duration = nonzero("open_duration", self.open_duration)?;
        let (growth_factor, growth_cap) = match self.growth {
            None => (1.0, open_duration),
            Some((factor, cap)) => {
                if !factor.is_finite() || factor < 1.0 {
                    return Err(ConfigError::new(
                        "open_growth.factor",
                        format!("must be finite and at least 1.0, got {factor}"),
                    ));
                }
                if cap < open_duration {
                    return Err(ConfigError::new(
                        "open_growth.cap",
                        format!("must be at least open_duration ({open_duration:?}), got {cap:?}"),
                    ));
                }
                (factor, cap)
            }
        };
        if self.jitter.is_nan() || !(0.0..=1.0).contains(&self.jitter) {
            return Err(ConfigError::new(
                "open_jitter",
                format!("must be in [0, 1], got {}", self.jitter),
            ));
        }
        let half_open_probes = at_least_one("half_open_probes", self.half_open_probes)?;
        if half_open_probes > 1024 {
            return Err(ConfigError::new(
                "half_open_probes",
                format!("must be at most 1024, got {half_open_probes}"),
            ));
        }
        let successes_to_close = at_least_one("successes_to_close", self.successes_to_close)?;
        let probe_lease = nonzero("probe_lease", self.probe_lease.unwrap_or(open_duration))?;
        let max_cooldown = nonzero("max_cooldown", self.max_cooldown)?;
        let seed = self.seed.unwrap_or_else(random_seed);
        if let Some(budget) = &self.retry_budget {
            budget.validate()?;
        }
        Ok(Settings {
            consecutive,
            rate,
            minimum_calls,
            slow_call,
            open_duration,
            growth_factor,
            growth_cap,
            jitter: self.jitter,
            rng: SharedRng::new(seed),
            half_open_probes,
            successes_to_close,
            probe_lease,
            retry_after_cooldown: self.retry_after_cooldown,
            max_cooldown,
            mode: self.mode,
            listener: self.listener.clone(),
            retry_budget: self.retry_budget.filter(RetryBudget::is_enabled),
            feed: std::sync::OnceLock::new(),
            #[cfg(feature = "metrics")]
            metrics: Arc::new(crate::metrics::BreakerMetrics::standalone()),
        })
    }
}

/// The failure-rate rule, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum RateRule {
    None,
    Time {
        ratio: f64,
        buckets: u32,
        width_nanos: u64,
    },
    Count {
        ratio: f64,
        calls: u32,
    },
}

/// A validated [`BreakerConfig`], shared (behind an `Arc`) by every breaker
/// built from it.
pub(crate) struct Settings {
    /// `u32::MAX` when the rule is off.
    pub(crate) consecutive: u32,
    pub(crate) rate: RateRule,
    pub(crate) minimum_calls: u32,
    pub(crate) slow_call: Option<Duration>,
    pub(crate) open_duration: Duration,
    pub(crate) growth_factor: f64,
    pub(crate) growth_cap: Duration,
    pub(crate) jitter: f64,
    rng: SharedRng,
    pub(crate) half_open_probes: u32,
    pub(crate) successes_to_close: u32,
    pub(crate) probe_lease: Duration,
    pub(crate) retry_after_cooldown: bool,
    /// The longest cool-down a hint may cause.
    pub(crate) max_cooldown: Duration,
    pub(crate) mode: BreakerMode,
    pub(crate) listener: Option<Listener>,
    /// A retry budget per breaker, if asked for (and enabled).
    pub(crate) retry_budget: Option<RetryBudget>,
    /// The registry's feed to a fleet's state sync, set once by
    /// `BreakerRegistry::sync`.
    pub(crate) feed: std::sync::OnceLock<crate::fleet::Feed>,
    /// Where the breaker's events and gauge are counted: its registry's (set
    /// by the registry), else a standalone breaker's own.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Arc<crate::metrics::BreakerMetrics>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("consecutive", &self.consecutive)
            .field("rate", &self.rate)
            .field("minimum_calls", &self.minimum_calls)
            .field("open_duration", &self.open_duration)
            .field("half_open_probes", &self.half_open_probes)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// A uniform sample in [0, 1) from the shared splitmix64 source.
    pub(crate) fn next_unit(&self) -> f64 {
        self.rng.next_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(c: BreakerConfig) -> &'static str {
        match c.validate() {
            Ok(_) => "ok",
            Err(e) => e.field(),
        }
    }

    #[test]
    fn default_config_is_valid() {
        assert_eq!(field(BreakerConfig::default()), "ok");
    }

    #[test]
    fn bad_values_are_refused_by_field() {
        let d = BreakerConfig::default;
        let s = Duration::from_secs(1);
        assert_eq!(field(d().consecutive_failures(0)), "consecutive_failures");
        assert_eq!(field(d().failure_rate(0.0, s)), "failure_rate.ratio");
        assert_eq!(field(d().failure_rate(1.5, s)), "failure_rate.ratio");
        assert_eq!(field(d().failure_rate(f64::NAN, s)), "failure_rate.ratio");
        assert_eq!(field(d().failure_rate(1.0, s)), "ok");
        assert_eq!(
            field(d().failure_rate(0.5, Duration::ZERO)),
            "failure_rate.window"
        );
        assert_eq!(field(d().window_buckets(0)), "window_buckets");
        assert_eq!(field(d().count_window(0.5, 0)), "count_window.calls");
        assert_eq!(field(d().count_window(-0.5, 10)), "count_window.ratio");
        assert_eq!(field(d().minimum_calls(0)), "minimum_calls");
        assert_eq!(field(d().open_duration(Duration::ZERO)), "open_duration");
        assert_eq!(field(d().half_open_probes(0)), "half_open_probes");
        assert_eq!(field(d().successes_to_close(0)), "successes_to_close");
        assert_eq!(field(d().probe_lease(Duration::ZERO)), "probe_lease");
        assert_eq!(field(d().slow_call(Duration::ZERO)), "slow_call");
        assert_eq!(field(d().open_growth(0.5, s * 60)), "open_growth.factor");
        assert_eq!(
            field(d().open_growth(f64::NAN, s * 60)),
            "open_growth.factor"
        );
        assert_eq!(
            field(d().open_growth(f64::INFINITY, s * 60)),
            "open_growth.factor"
        );
        assert_eq!(field(d().open_growth(2.0, s)), "open_growth.cap");
        assert_eq!(field(d().open_jitter(1.5)), "open_jitter");
        assert_eq!(field(d().open_jitter(f64::NAN)), "open_jitter");
    }

    #[test]
    fn refusal_names_the_rule() {
        let e = BreakerConfig::default()
            .failure_rate(2.0, Duration::from_secs(1))
            .validate()
            .unwrap_err();
        assert_eq!(e.rule(), "must be in (0, 1], got 2");
    }

    #[test]
    fn seeded_source_is_reproducible_and_in_range() {
        let a = BreakerConfig::default().seed(7).validate().unwrap();
        let b = BreakerConfig::default().seed(7).validate().unwrap();
        for _ in 0..1000 {
            let x = a.next_unit();
            assert_eq!(x, b.next_unit());
            assert!((0.0..1.0).contains(&x));
        }
    }
}
