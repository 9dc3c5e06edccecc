//! Backoff schedules and jitter: how long to wait before each retry.
//!
//! A retry that comes back at once hits a service that has not recovered yet,
//! and a thousand clients that all wait exactly 1 s, 2 s, 4 s come back *together*:
//! the thundering herd that turns a blip into an outage. So delays grow
//! (exponentially by default) and are spread out by jitter. The default is
//! [`Jitter::Full`], the choice the AWS Architecture Blog's "Exponential Backoff
//! And Jitter" study found to need the fewest calls; `benches/` re-runs that study
//! with this very type.
//!
//! A [`Backoff`] is a pure, seeded schedule: [`Backoff::delays`] yields the delays
//! of a call's retries from a seed, with no runtime and no clock, so a schedule is
//! tested by asserting it. Every delay, jittered or not, is at most
//! [`max_delay`](Backoff::max_delay): jitter is applied *before* the cap (several
//! Rust peers add it after, so their delays exceed the cap).
//!
//! Delays are whole nanoseconds computed with integers, never rounded through
//! `f64`, so they are exact for any [`Duration`] up to [`Duration::MAX`]; only an
//! exponential schedule with a fractional factor computes its multiplier in
//! floating point ([`Backoff::scheduled_delay`] states the bound).
//!
//! | jitter | delay of retry `k` (with `d` = the capped delay of the schedule) |
//! | --- | --- |
//! | [`Jitter::None`] | `d` |
//! | [`Jitter::Full`] | uniform in `[0, d]` |
//! | [`Jitter::Equal`] | `d/2 +` uniform in `[0, d/2]` |
//! | [`Jitter::Decorrelated`] | `min(max_delay, uniform in [base, 3 × previous])`, the first retry's previous delay being `base` |
//!
//! # Examples
//!
//! The seed service's schedule, 1 s → 2 s → 4 s, without jitter:
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Backoff, Jitter};
//!
//! let backoff = Backoff::exponential(Duration::from_secs(1))
//!     .factor(2.0)
//!     .max_delay(Duration::from_secs(30))
//!     .jitter(Jitter::None);
//! let delays: Vec<_> = backoff.delays(0).take(3).collect();
//! assert_eq!(delays, [1, 2, 4].map(Duration::from_secs));
//!
//! // With the default jitter every delay stays within [0, the schedule's delay].
//! let jittered = Backoff::exponential(Duration::from_secs(1));
//! for (k, d) in jittered.delays(42).take(10).enumerate() {
//!     assert!(d <= Duration::from_secs(1 << k).min(Duration::from_secs(30)));
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::ConfigError;

/// How a delay is spread out at random, so that many clients do not retry in
/// lockstep.
///
/// See the [module documentation](self) for the formulas.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// No randomness: the schedule's delay exactly.
    None,
    /// Uniform in `[0, d]`. The default.
    #[default]
    Full,
    /// `d/2 +` uniform in `[0, d/2]`: never less than half the delay.
    Equal,
    /// `min(max_delay, uniform in [base, 3 × previous delay])`: each delay grows
    /// from the previous one at random, independently of the attempt number.
    Decorrelated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Growth {
    Constant,
    Linear,
    Exponential,
    Fibonacci,
}

/// A schedule of delays between attempts, with jitter.
///
/// Built with [`Backoff::exponential`], [`Backoff::constant`], [`Backoff::linear`]
/// or [`Backoff::fibonacci`], then tuned with [`factor`](Backoff::factor),
/// [`max_delay`](Backoff::max_delay) and [`jitter`](Backoff::jitter). Invalid values
/// (a factor below 1 or not finite, a zero base for a growing schedule, a cap below
/// the base) are refused with a [`ConfigError`] when the policy is built, never
/// clamped.
///
/// # Default
///
/// `Backoff::default()` is `exponential(1 s)`, factor 2, capped at 30 s, with
/// [`Jitter::Full`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    growth: Growth,
    base: Duration,
    factor: f64,
    max_delay: Duration,
    jitter: Jitter,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::exponential(Duration::from_secs(1))
    }
}

const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);

impl Backoff {
    /// `base × factor^(k-1)` before retry `k`: `base`, `2 × base`, `4 × base`, ...
    /// with the default factor 2, capped at 30 s unless
    /// [`max_delay`](Backoff::max_delay) says otherwise, jittered with
    /// [`Jitter::Full`] unless [`jitter`](Backoff::jitter) says otherwise.
    #[must_use]
    pub fn exponential(base: Duration) -> Self {
        Self::with_growth(Growth::Exponential, base)
    }

    /// The same delay before every retry. A zero delay retries at once, without
    /// touching the timer. Not jittered unless [`jitter`](Backoff::jitter) says so.
    #[must_use]
    pub fn constant(delay: Duration) -> Self {
        Self {
            jitter: Jitter::None,
            max_delay: delay.max(DEFAULT_MAX_DELAY),
            ..Self::with_growth(Growth::Constant, delay)
        }
    }

    /// `k × base` before retry `k`, capped and jittered as for
    /// [`exponential`](Backoff::exponential).
    #[must_use]
    pub fn linear(base: Duration) -> Self {
        Self::with_growth(Growth::Linear, base)
    }

    /// `fib(k) × base` before retry `k` (1, 1, 2, 3, 5, 8, ... × base), capped and
    /// jittered as for [`exponential`](Backoff::exponential).
    #[must_use]
    pub fn fibonacci(base: Duration) -> Self {
        Self::with_growth(Growth::Fibonacci, base)
    }

    fn with_growth(growth: Growth, base: Duration) -> Self {
        Self {
            growth,
            base,
            factor: 2.0,
            max_delay: DEFAULT_MAX_DELAY,
            jitter: Jitter::Full,
        }
    }

    /// The growth factor of an exponential schedule (default 2.0; ignored by the
    /// others). Must be finite and at least 1.0.
    #[must_use]
    pub fn factor(mut self, factor: f64) -> Self {
        self.factor = factor;
        self
    }

    /// The longest delay, jitter included (default 30 s). Must be at least the
    /// base delay.
    #[must_use]
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// How delays are spread out at random (default [`Jitter::Full`] for the
    /// growing schedules, [`Jitter::None`] for [`constant`](Backoff::constant)).
    #[must_use]
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// The base delay: the first retry's delay before jitter.
    #[must_use]
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The growth factor, as set by [`factor`](Backoff::factor).
    ///
    /// The getters of the settings with a builder method take a `get_` prefix,
    /// as [`std::process::Command::get_program`] does: the builder method owns the
    /// plain name.
    #[must_use]
    pub fn get_factor(&self) -> f64 {
        self.factor
    }

    /// The cap on every delay, jitter included, as set by
    /// [`max_delay`](Backoff::max_delay).
    #[must_use]
    pub fn get_max_delay(&self) -> Duration {
        self.max_delay
    }

    /// The jitter kind, as set by [`jitter`](Backoff::jitter).
    #[must_use]
    pub fn get_jitter(&self) -> Jitter {
        self.jitter
    }

    /// The cap on every delay.
    #[deprecated(since = "0.2.0", note = "use `get_max_delay`")]
    #[must_use]
    pub fn cap(&self) -> Duration {
        self.max_delay
    }

    /// The jitter kind.
    #[deprecated(since = "0.2.0", note = "use `get_jitter`")]
    #[must_use]
    pub fn jitter_kind(&self) -> Jitter {
        self.jitter
    }

    /// Checks the schedule.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `backoff.factor` (not finite, or below 1.0),
    /// `backoff.base` (zero for a growing schedule, or with decorrelated jitter)
    /// or `backoff.max_delay` (below the base).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.factor.is_finite() || self.factor < 1.0 {
            return Err(ConfigError::new(
                "backoff.factor",
                format!(
                    "must be a finite number of at least 1.0, got {}",
                    self.factor
                ),
            ));
        }
        let grows = self.growth != Growth::Constant;
        if self.base.is_zero() && (grows || self.jitter == Jitter::Decorrelated) {
            return Err(ConfigError::new(
                "backoff.base",
                "must be greater than zero for a growing or decorrelated schedule \
                 (use Backoff::constant(Duration::ZERO) to retry at once)",
            ));
        }
        if self.max_delay < self.base {
            return Err(ConfigError::new(
                "backoff.max_delay",
                format!(
                    "must be at least the base delay {:?}, got {:?}",
                    self.base, self.max_delay
                ),
            ));
        }
        Ok(())
    }

    /// The delays of a call's retries, in order, jittered from `seed`.
    ///
    /// The same seed gives the same schedule; the iterator never ends (the policy's
    /// `max_retries` decides how many are used).
    #[must_use]
    pub fn delays(&self, seed: u64) -> Delays {
        Delays {
            backoff: *self,
            rng: SplitMix::new(seed),
            retry: 0,
            previous: self.base,
        }
    }

    /// The delay before retry `retry` (1-based) before jitter, capped at
    /// `max_delay`. Saturates for any `retry`, never overflows.
    ///
    /// # Exactness
    ///
    /// Delays are whole nanoseconds computed with saturating integers, for any
    /// [`Duration`] up to [`Duration::MAX`]:
    ///
    /// - [`constant`](Backoff::constant), [`linear`](Backoff::linear) and
    ///   [`fibonacci`](Backoff::fibonacci) schedules are exact, and so is an
    ///   [`exponential`](Backoff::exponential) one whose factor is a whole number
    ///   (2.0, 3.0, ...): `min(max_delay, base × factor^(k-1))` to the nanosecond.
    /// - With a fractional factor (1.5, 1.1, ...), `factor^(k-1)` is computed in
    ///   `f64` from the factor's `f64` value (so `1.1` means the nearest `f64`,
    ///   1.100000000000000088…), with a relative error of at most
    ///   `(1 + 2^-53)^(k-2) - 1`, about `(k - 2) × 2^-53` (below 10^-14 for the
    ///   first 90 retries); the product with the exact base is then rounded to
    ///   the nearest nanosecond. Powers that `f64` holds exactly (1.5^k while
    ///   3^k < 2^53) give exact delays.
    ///
    /// Whatever the factor, a valid schedule never goes below the base, never
    /// above `max_delay`, and never decreases from one retry to the next.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::{Backoff, Jitter};
    ///
    /// let long = Duration::from_secs(105 * 86_400) + Duration::from_nanos(1);
    /// let b = Backoff::linear(long).max_delay(Duration::MAX).jitter(Jitter::None);
    /// assert_eq!(b.scheduled_delay(2), long * 2);
    /// assert_eq!(b.scheduled_delay(u32::MAX), long * u32::MAX);
    /// let doubling = Backoff::exponential(long).max_delay(Duration::MAX).jitter(Jitter::None);
    /// assert_eq!(doubling.scheduled_delay(64), Duration::MAX);
    /// ```
    #[must_use]
    pub fn scheduled_delay(&self, retry: u32) -> Duration {
        from_nanos(self.scheduled_nanos(retry))
    }

    /// [`scheduled_delay`](Backoff::scheduled_delay) in nanoseconds.
    fn scheduled_nanos(&self, retry: u32) -> u128 {
        let n = retry.max(1);
        let base = self.base.as_nanos();
        let raw = match self.growth {
            Growth::Constant => base,
            Growth::Linear => base.saturating_mul(u128::from(n)),
            Growth::Exponential => exponential(base, self.factor, n - 1),
            Growth::Fibonacci => fibonacci(base, n, self.max_delay.as_nanos()),
        };
        raw.min(self.max_delay.as_nanos())
    }

    /// Whether every delay of this schedule is zero (a zero base: retry at
    /// once), whatever the growth and the jitter.
    ///
    /// Only a shortcut: the general path also yields zero for such a schedule.
    pub(crate) fn is_zero(&self) -> bool {
        self.base.is_zero() || self.max_delay.is_zero()
    }

    /// The jittered delay before retry `retry` (1-based), given the previous
    /// delay of the call (for decorrelated jitter) and a uniform random `u64`.
    ///
    /// Exact for any [`Duration`]: full jitter is in `[0, d]`, equal jitter in
    /// `[d/2, d]` and decorrelated jitter in `[base, 3 × previous]`, each capped at
    /// `max_delay`. `random = u64::MAX` gives the high end; `random = 0` the low
    /// end, give or take `range / 2^64` (nothing below 2^63 ns, 292 years).
    pub(crate) fn delay(&self, retry: u32, previous: Duration, random: u64) -> Duration {
        if self.is_zero() {
            return Duration::ZERO;
        }
        let d = match self.jitter {
            Jitter::None => return self.scheduled_delay(retry),
            Jitter::Full => scale(self.scheduled_nanos(retry), random),
            Jitter::Equal => {
                let d = self.scheduled_nanos(retry);
                let half = d / 2;
                (d - half) + scale(half, random)
            }
            Jitter::Decorrelated => {
                let low = self.base.as_nanos();
                let high = previous.as_nanos().saturating_mul(3).max(low);
                low + scale(high - low, random)
            }
        };
        from_nanos(d.min(self.max_delay.as_nanos()))
    }
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Whole nanoseconds back to a `Duration`, saturating at [`Duration::MAX`]. The
/// callers cap `n` at a `Duration`'s nanoseconds, so the result is exact.
fn from_nanos(n: u128) -> Duration {
    // Up to 584 years fits a u64: a division by a constant, not a u128 one.
    if let Ok(n) = u64::try_from(n) {
        return Duration::from_nanos(n);
    }
    match u64::try_from(n / NANOS_PER_SEC) {
        // The remainder is below 10^9, so `Duration::new` cannot carry over.
        Ok(secs) => Duration::new(secs, (n % NANOS_PER_SEC) as u32),
        Err(_) => Duration::MAX,
    }
}

/// `base × factor^exp` in nanoseconds, saturating at `u128::MAX`: exact for a
/// whole-number factor; for a fractional one, `factor^exp` in `f64` (see
/// [`powi_rising`]) times the exact base, rounded to the nearest nanosecond.
fn exponential(base: u128, factor: f64, exp: u32) -> u128 {
    // A factor below 1 or NaN is refused by `validate`; unvalidated, it counts as
    // 1 (and so does 1 itself, exactly): the schedule stays at the base.
    if base == 0 || exp == 0 || factor.is_nan() || factor <= 1.0 {
        return base;
    }
    if factor.fract() == 0.0 {
        // A whole number: the cast is exact below 2^128, and saturates above,
        // where any product with a nonzero base saturates anyway.
        let factor = factor as u128;
        return factor
            .checked_pow(exp)
            .and_then(|power| base.checked_mul(power))
            .unwrap_or(u128::MAX);
    }
    mul_round(base, powi_rising(factor, exp))
}

/// `factor^exp` by binary powering, the same steps as compiler-rt's
/// `__powidf2`, written out so that the order of the multiplications is ours.
///
/// That order makes the result never decrease as `exp` grows, for any
/// `factor >= 1`: `exp + 1` differs from `exp` in a run of low bits `0111…1` that
/// becomes `1000…0`; the product of the squares for the ones (multiplied low to
/// high, starting from 1) is at most the next square, by induction with
/// `fl(a × p) <= fl(p × p)` for `a <= p` (a rounded product is monotone in each
/// factor); the higher bits then multiply both by the same squares in the same
/// order. The relative error is at most `(1 + 2^-53)^(exp-1) - 1`: the rounding
/// errors of the squares and products compound with total weight `exp - 1`.
fn powi_rising(factor: f64, mut exp: u32) -> f64 {
    let (mut power, mut square) = (1.0_f64, factor);
    loop {
        if exp & 1 == 1 {
            power *= square;
        }
        exp >>= 1;
        if exp == 0 {
            return power;
        }
        square *= square;
    }
}

/// `n × m`, rounded to the nearest whole number (halves up), saturating at
/// `u128::MAX`, for `m >= 1` (an infinite `m` saturates). Exact: `m` is
/// `mantissa × 2^shift` and the product is formed in two 64-bit halves of `n`.
fn mul_round(n: u128, m: f64) -> u128 {
    if !m.is_finite() {
        return u128::MAX;
    }
    let bits = m.to_bits();
    // m >= 1 is a normal number: the implicit leading bit is set.
    let mantissa = u128::from((bits & ((1 << 52) - 1)) | (1 << 52));
    let shift = ((bits >> 52) & 0x7ff) as i32 - 1075;
    if shift >= 0 {
        // A whole number of 2^52 or more.
        let shift = shift.unsigned_abs();
        return match n.checked_mul(mantissa) {
            Some(0) => 0,
            // A nonzero product has at most 127 leading zeros: the shift fits.
            Some(product) if shift <= product.leading_zeros() => product << shift,
            _ => u128::MAX,
        };
    }
    // 1 <= s <= 52: n × mantissa / 2^s, with n = high × 2^64 + low.
    let s = shift.unsigned_abs();
    let (high, low) = (n >> 64, n & u128::from(u64::MAX));
    // low × mantissa < 2^117 and high × mantissa < 2^117: neither overflows.
    let low = (low * mantissa + (1 << (s - 1))) >> s;
    let high = high * mantissa;
    let up = 64 - s;
    if high.leading_zeros() < up {
        return u128::MAX;
    }
    (high << up).saturating_add(low)
}

/// `fib(n) × base` (1, 1, 2, 3, 5, ... × base), saturating; stops growing once
/// past `cap`, so it takes at most about 140 steps for any `n`.
fn fibonacci(base: u128, n: u32, cap: u128) -> u128 {
    if base == 0 {
        return 0;
    }
    let (mut a, mut b) = (1_u128, 1_u128);
    for _ in 2..n {
        if base.saturating_mul(b) >= cap {
            break;
        }
        (a, b) = (b, a.saturating_add(b));
    }
    base.saturating_mul(b)
}

/// A uniform draw in `[0, d]` from a uniform `random`: `d × (random + 1) / 2^64`,
/// rounded to the nearest nanosecond, so `random = 0` gives about `d / 2^64`
/// (0 below 2^63 ns) and `random = u64::MAX` gives `d` exactly. Never more than
/// `d`, for any `d`.
fn scale(d: u128, random: u64) -> u128 {
    let r = u128::from(random) + 1; // 1 ..= 2^64
    let (high, low) = (d >> 64, d & u128::from(u64::MAX));
    // low × r <= (2^64 - 1) × 2^64, so adding 2^63 cannot overflow.
    let low = (low * r + (1 << 63)) >> 64;
    high.saturating_mul(r).saturating_add(low)
}

/// The delays of one call's retries: see [`Backoff::delays`].
#[derive(Debug, Clone)]
pub struct Delays {
    backoff: Backoff,
    rng: SplitMix,
    retry: u32,
    previous: Duration,
}

impl Iterator for Delays {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.retry = self.retry.saturating_add(1);
        let d = self
            .backoff
            .delay(self.retry, self.previous, self.rng.next_u64());
        self.previous = d;
        Some(d)
    }
}

/// SplitMix64: a tiny seedable generator, plenty for jitter.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }
}

/// SplitMix64 on an atomic counter: a seedable random source that threads share
/// without a lock (one relaxed increment per draw). Used by policies (jitter),
/// breakers (open-time jitter) and the chaos injector.
#[derive(Debug)]
pub(crate) struct SharedRng(AtomicU64);

impl SharedRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    /// A uniform random `u64`; from one thread, the same sequence as
    /// [`SplitMix`] with the same seed.
    pub(crate) fn next_u64(&self) -> u64 {
        mix(self
            .0
            .fetch_add(GOLDEN, Ordering::Relaxed)
            .wrapping_add(GOLDEN))
    }

    /// A uniform sample in `[0, 1)`.
    pub(crate) fn next_unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A seed that differs per call and per process, from std's randomly keyed
/// hasher (no `rand` needed for jitter).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x5afe_ca11);
    h.finish()
}

/// The SplitMix64 finaliser.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn exponential_without_jitter_is_the_seed_schedule() {
        let b = Backoff::exponential(S(1)).jitter(Jitter::None);
        let d: Vec<_> = b.delays(7).take(6).collect();
        assert_eq!(d, [S(1), S(2), S(4), S(8), S(16), S(30)]);
    }

    #[test]
    fn factor_and_cap_apply() {
        let b = Backoff::exponential(MS(100))
            .factor(3.0)
            .max_delay(S(1))
            .jitter(Jitter::None);
        let d: Vec<_> = b.delays(0).take(4).collect();
        assert_eq!(d, [MS(100), MS(300), MS(900), S(1)]);
    }

    #[test]
    fn constant_linear_and_fibonacci_schedules() {
        let c: Vec<_> = Backoff::constant(MS(200)).delays(1).take(3).collect();
        assert_eq!(c, [MS(200); 3]);
        let l: Vec<_> = Backoff::linear(MS(10))
            .jitter(Jitter::None)
            .delays(1)
            .take(3)
            .collect();
        assert_eq!(l, [MS(10), MS(20), MS(30)]);
        let f: Vec<_> = Backoff::fibonacci(MS(10))
            .jitter(Jitter::None)
            .delays(1)
            .take(6)
            .collect();
        assert_eq!(f, [10, 10, 20, 30, 50, 80].map(MS));
    }

    #[test]
    fn zero_constant_delay_is_valid_and_zero() {
        let b = Backoff::constant(Duration::ZERO);
        assert!(b.validate().is_ok());
        assert!(b.delays(3).take(5).all(|d| d.is_zero()));
    }

    #[test]
    fn huge_attempt_numbers_saturate_at_the_cap() {
        for growth in [
            Backoff::exponential(S(1)).factor(10.0),
            Backoff::linear(S(1)),
            Backoff::fibonacci(S(1)),
        ] {
            for k in [64, 1_000, 10_000, u32::MAX] {
                assert_eq!(growth.scheduled_delay(k), S(30));
                assert!(growth.delay(k, S(30), u64::MAX) <= S(30));
            }
        }
        let uncapped = Backoff::exponential(S(1)).max_delay(Duration::MAX);
        assert!(uncapped.scheduled_delay(u32::MAX) <= Duration::MAX);
    }

    #[test]
    fn jitter_bounds_hold_at_the_extremes_of_randomness() {
        let b = Backoff::exponential(S(1));
        assert_eq!(b.delay(3, S(1), 0), Duration::ZERO);
        assert_eq!(b.delay(3, S(1), u64::MAX), S(4));
        let e = b.jitter(Jitter::Equal);
        assert_eq!(e.delay(3, S(1), 0), S(2));
        assert_eq!(e.delay(3, S(1), u64::MAX), S(4));
        let dj = b.jitter(Jitter::Decorrelated);
        assert_eq!(dj.delay(1, S(1), 0), S(1));
        assert_eq!(dj.delay(1, S(1), u64::MAX), S(3));
        assert_eq!(dj.delay(9, S(20), u64::MAX), S(30));
    }

    #[test]
    fn jitter_bounds_hold_at_duration_max() {
        // Defect 4: the f64 arithmetic rounded these past their bounds.
        let max = Duration::MAX;
        let full = Backoff::constant(max).jitter(Jitter::Full);
        assert_eq!(full.delay(1, max, u64::MAX), max);
        assert!(full.delay(1, max, 0) <= Duration::from_secs(1));
        let equal = full.jitter(Jitter::Equal);
        assert_eq!(equal.delay(1, max, u64::MAX), max);
        // random = 0 draws d / 2^64 above the half: half a second here.
        let low = equal.delay(1, max, 0);
        assert!(
            max / 2 <= low && low <= max / 2 + Duration::from_secs(1),
            "{low:?}"
        );
        let dj = Backoff::exponential(MS(1))
            .max_delay(max)
            .jitter(Jitter::Decorrelated);
        assert_eq!(dj.delay(5, max, u64::MAX), max);
        let low = dj.delay(5, max, 0);
        assert!(MS(1) <= low && low <= MS(1) + S(4), "{low:?}");
        let odd = Duration::new(1 << 40, 1);
        assert_eq!(dj.delay(2, odd, u64::MAX), odd * 3);
    }

    #[test]
    fn a_fractional_factor_is_exact_where_its_powers_are() {
        // 1.5^k is exact in f64 while 3^k < 2^53, so these are exact products.
        let base = Duration::new(1 << 40, 1 << 20); // well past 2^53 ns
        let b = Backoff::exponential(base)
            .factor(1.5)
            .max_delay(Duration::MAX)
            .jitter(Jitter::None);
        let nanos = base.as_nanos();
        for k in 1..=20_u32 {
            let expected = nanos * 3_u128.pow(k - 1);
            let (whole, rest) = (expected >> (k - 1), expected % (1 << (k - 1)));
            // Halves round up.
            let rounded = whole + u128::from(k > 1 && rest >= 1 << (k - 2));
            assert_eq!(b.scheduled_delay(k).as_nanos(), rounded, "retry {k}");
        }
        let tenth = Backoff::exponential(MS(100))
            .factor(1.1)
            .max_delay(Duration::MAX)
            .jitter(Jitter::None);
        assert_eq!(tenth.scheduled_delay(2), MS(110));
        assert_eq!(tenth.scheduled_delay(3), MS(121));
    }

    #[test]
    fn fractional_powers_never_decrease() {
        let tiny = 1.0 + f64::EPSILON;
        for factor in [tiny, 1.000_000_1, 1.1, 1.5, 1.7, 2.0 - f64::EPSILON, 3.3] {
            let mut previous = 1.0;
            for exp in (0..5_000).chain((1 << 31) - 2_000..(1 << 31) + 2_000) {
                let power = powi_rising(factor, exp);
                assert!(power >= previous, "{factor}^{exp} = {power} < {previous}");
                previous = power;
            }
            assert_eq!(powi_rising(factor, 1), factor);
            assert_eq!(powi_rising(factor, 0), 1.0);
        }
        assert_eq!(powi_rising(1.5, 40), 1.5_f64.powi(40));
    }

    #[test]
    fn products_with_a_float_are_exact_and_saturate() {
        assert_eq!(mul_round(7, 1.5), 11); // 10.5 rounds up
        assert_eq!(mul_round(5, 1.25), 6); // 6.25
        assert_eq!(
            mul_round(u128::from(u64::MAX) << 30, 1.5),
            (u128::from(u64::MAX) << 29) * 3
        );
        assert_eq!(mul_round(3, 2f64.powi(60)), 3 << 60);
        assert_eq!(mul_round(1, 2f64.powi(130)), u128::MAX);
        assert_eq!(mul_round(1 << 100, 1.0e10), u128::MAX);
        assert_eq!(mul_round(1 << 100, 1.5e3), 1500 << 100);
        assert_eq!(mul_round(1 << 110, 1.5e6), u128::MAX);
        assert_eq!(mul_round(9, f64::INFINITY), u128::MAX);
        assert_eq!(mul_round(0, 1.0e300), 0);
        // The edges of the two branches: a factor in [2^52, 2^53) (no shift), and
        // products whose top bit lands exactly on bit 127.
        assert_eq!(mul_round(3, 2f64.powi(52)), 3 << 52);
        assert_eq!(mul_round(1, 2f64.powi(127)), 1 << 127);
        assert_eq!(mul_round(1 << 127, 1.5), 3 << 126);
    }

    #[test]
    fn jitter_draws_round_to_the_nearest_nanosecond() {
        assert_eq!(scale(3, u64::MAX), 3);
        assert_eq!(scale(3, 0), 0);
        assert_eq!(scale(3, (1 << 63) - 1), 2); // 1.5 rounds up
        assert_eq!(scale(3, (1 << 62) - 1), 1); // 0.75
        assert_eq!(scale(1 << 70, 0), 1 << 6);
        assert_eq!(scale(u128::MAX, u64::MAX), u128::MAX);
    }

    #[test]
    fn invalid_factors_do_not_panic() {
        for factor in [f64::NAN, f64::INFINITY, -2.0, 0.0, 0.5, -0.0, 1e300] {
            let b = Backoff::exponential(S(1))
                .factor(factor)
                .max_delay(Duration::MAX)
                .jitter(Jitter::None);
            for k in [0, 1, 2, 64, 10_000, u32::MAX] {
                let d = b.scheduled_delay(k);
                if factor.is_nan() || factor < 1.0 {
                    assert_eq!(d, S(1), "{factor} at {k}: counts as 1");
                }
            }
        }
        let zero = Backoff::exponential(Duration::ZERO).max_delay(Duration::MAX);
        assert_eq!(zero.scheduled_delay(200), Duration::ZERO);
        assert_eq!(
            Backoff::fibonacci(Duration::ZERO).scheduled_delay(u32::MAX),
            Duration::ZERO
        );
    }

    #[test]
    fn same_seed_same_schedule() {
        let b = Backoff::exponential(MS(5)).jitter(Jitter::Decorrelated);
        let a: Vec<_> = b.delays(99).take(20).collect();
        let c: Vec<_> = b.delays(99).take(20).collect();
        assert_eq!(a, c);
        let other: Vec<_> = b.delays(100).take(20).collect();
        assert_ne!(a, other);
    }

    #[test]
    fn a_constant_delay_above_the_default_cap_is_valid_and_kept() {
        // Mutation-testing regression: `constant` raises the cap to its delay.
        let b = Backoff::constant(S(90));
        assert!(b.validate().is_ok());
        assert_eq!(b.delays(0).take(2).collect::<Vec<_>>(), [S(90), S(90)]);
    }

    #[test]
    fn a_factor_of_exactly_one_is_valid() {
        // Mutation-testing regression: the bound is `factor >= 1`, inclusive.
        let b = Backoff::exponential(S(2)).factor(1.0).jitter(Jitter::None);
        assert!(b.validate().is_ok());
        assert_eq!(b.delays(0).take(3).collect::<Vec<_>>(), [S(2); 3]);
    }

    #[test]
    fn accessors_report_the_configuration() {
        let b = Backoff::linear(MS(5))
            .factor(3.0)
            .max_delay(S(9))
            .jitter(Jitter::Equal);
        assert_eq!(
            (b.base(), b.get_factor(), b.get_max_delay(), b.get_jitter()),
            (MS(5), 3.0, S(9), Jitter::Equal)
        );
        assert_eq!(Backoff::constant(MS(1)).get_jitter(), Jitter::None);
        assert_eq!(Backoff::default(), Backoff::exponential(S(1)));
        assert_eq!(Backoff::default().get_factor(), 2.0);
    }

    #[test]
    #[allow(deprecated)]
    fn deprecated_getters_still_answer() {
        let b = Backoff::exponential(MS(5))
            .max_delay(S(9))
            .jitter(Jitter::Equal);
        assert_eq!((b.cap(), b.jitter_kind()), (S(9), Jitter::Equal));
    }

    #[test]
    fn shared_rng_units_follow_the_sequence_and_spread_over_0_1() {
        let rng = SharedRng::new(7);
        let mut reference = SplitMix::new(7);
        let first = rng.next_unit();
        assert_eq!(
            first,
            (reference.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        );
        let draws: Vec<f64> = (0..1000).map(|_| rng.next_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / 1000.0;
        assert!((0.45..0.55).contains(&mean), "mean {mean}");
    }

    #[test]
    fn random_seeds_differ_from_call_to_call() {
        let seeds: std::collections::HashSet<u64> = (0..8).map(|_| random_seed()).collect();
        assert_eq!(seeds.len(), 8);
    }

    #[test]
    fn splitmix_matches_its_reference_output() {
        // SplitMix64 from state 0 (Steele, Lea and Flood; the values every
        // implementation is checked against).
        let mut r = SplitMix::new(0);
        assert_eq!(r.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(r.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(r.next_u64(), 0x06c4_5d18_8009_454f);
    }

    #[test]
    fn bad_schedules_are_refused_with_the_field() {
        let cases = [
            (Backoff::exponential(S(1)).factor(0.5), "backoff.factor"),
            (
                Backoff::exponential(S(1)).factor(f64::NAN),
                "backoff.factor",
            ),
            (Backoff::exponential(S(1)).factor(-2.0), "backoff.factor"),
            (
                Backoff::exponential(S(1)).factor(f64::INFINITY),
                "backoff.factor",
            ),
            (Backoff::exponential(Duration::ZERO), "backoff.base"),
            (
                Backoff::constant(Duration::ZERO).jitter(Jitter::Decorrelated),
                "backoff.base",
            ),
            (
                Backoff::exponential(S(2)).max_delay(S(1)),
                "backoff.max_delay",
            ),
        ];
        for (b, field) in cases {
            assert_eq!(b.validate().map_err(|e| e.field()), Err(field), "{b:?}");
        }
    }
}
