//! [`SafeCall`]: the retry policy, and its builder.
//!
//! A policy is built once and shared: it is cheap to clone (an `Arc` inside), and
//! its clones share the retry budget and the jitter's random source. Its type
//! names the operation's error type only, so a service can keep one in a struct
//! field (`policy: SafeCall<TwilioError>`); the success type is chosen per call.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Backoff, ErrorClass, Jitter, SafeCall};
//!
//! #[derive(Debug)]
//! struct ApiError { status: u16 }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy: SafeCall<ApiError> = SafeCall::builder()
//!     .max_retries(3)
//!     .backoff(Backoff::exponential(Duration::from_secs(1)).jitter(Jitter::None))
//!     .deadline(Duration::from_secs(60))
//!     .classify(|e: &ApiError| match e.status {
//!         500..=599 => ErrorClass::Transient,
//!         _ => ErrorClass::Permanent,
//!     })
//!     .build()?;
//!
//! let mut failures = 2;
//! let value = policy
//!     .call(|| {
//!         let fail = failures > 0;
//!         failures -= 1;
//!         async move { if fail { Err(ApiError { status: 503 }) } else { Ok("sent") } }
//!     })
//!     .await;
//! assert_eq!(value.ok(), Some("sent"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::{SharedRng, random_seed};
use crate::budget::BudgetState;
use crate::call::{Call, Plain, WithAttempt};
use crate::classify::AlwaysTransient;
use crate::{Attempt, Backoff, Classify, ConfigError, ErrorClass, RetryBudget};

/// What the `on_retry` hook is told before each retry.
#[derive(Debug)]
#[non_exhaustive]
pub struct RetryEvent<'a, E> {
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    /// How long the call now waits before the next attempt.
    pub delay: Duration,
    /// The failure's class.
    pub class: ErrorClass,
    /// The operation's error; `None` when the attempt hit its attempt timeout
    /// or succeeded with a value classified as a failure.
    pub error: Option<&'a E>,
    /// Whether the attempt succeeded with a value that
    /// [`Call::classify_ok`](crate::Call::classify_ok) classified as a failure.
    pub value_classified: bool,
}

type OnRetry<E> = Box<dyn Fn(&RetryEvent<'_, E>) + Send + Sync>;

/// The settings of a policy that do not depend on the error type.
pub(crate) struct Settings {
    pub(crate) max_retries: u32,
    pub(crate) backoff: Backoff,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) deadline: Option<Duration>,
    /// Whether a call has a time limit (a deadline or an attempt timeout),
    /// hence reads the clock: one test on the hot path instead of two.
    pub(crate) timed: bool,
    /// Whether a call needs nothing of the policy before its first attempt
    /// but the budget's deposit: no time limit and no metrics. Such a call
    /// makes its first attempt on a quick path.
    pub(crate) plain: bool,
    /// Whether every delay of the backoff is zero: the retry decision then
    /// needs neither the schedule nor a random draw.
    pub(crate) zero_delay: bool,
    pub(crate) max_retry_after: Duration,
    pub(crate) timeout_class: ErrorClass,
    pub(crate) budget: Option<BudgetState>,
    rng: SharedRng,
    /// The policy's name: the `policy` label of its metrics.
    pub(crate) name: &'static str,
    /// `None` for a policy built with `metrics(false)`.
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::PolicyMetrics>,
}

/// As derived, without the flags derived from the other settings.
impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Settings");
        d.field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("max_retry_after", &self.max_retry_after)
            .field("timeout_class", &self.timeout_class)
            .field("budget", &self.budget)
            .field("rng", &self.rng)
            .field("name", &self.name);
        #[cfg(feature = "metrics")]
        d.field("metrics", &self.metrics);
        d.finish()
    }
}

impl Settings {
    /// A uniform random `u64` from the policy's seeded source (lock-free).
    pub(crate) fn random(&self) -> u64 {
        self.rng.next_u64()
    }
}

pub(crate) struct Inner<E> {
    pub(crate) settings: Settings,
    pub(crate) classify: Box<dyn Classify<E>>,
    pub(crate) on_retry: Option<OnRetry<E>>,
}

/// A retry policy: how many attempts, how long to wait between them, which
/// errors are worth another attempt, and the time limits of a call.
///
/// Build one with [`SafeCall::builder`] (or take [`SafeCall::default`]), then make
/// calls with [`call`](SafeCall::call) or [`call_with`](SafeCall::call_with). See
/// the [crate documentation](crate) for the semantics.
///
/// # Layering
///
/// Retry in **one** layer of a call chain. If a gateway, a client library and a
/// service each retry 3 times, one failure at the bottom becomes 64 attempts. A
/// policy with `max_retries(0)` still applies deadlines, timeouts and breakers:
/// use it for the other layers.
pub struct SafeCall<E> {
    inner: Arc<Inner<E>>,
}

impl<E> Clone for SafeCall<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> fmt::Debug for SafeCall<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeCall")
            .field("settings", &self.inner.settings)
            .field("on_retry", &self.inner.on_retry.is_some())
            .finish_non_exhaustive()
    }
}

impl<E> Default for SafeCall<E> {
    /// The default policy: see [`SafeCallBuilder`]'s `# Default` section.
    fn default() -> Self {
        SafeCallBuilder::new().build_unchecked()
    }
}

impl<E> SafeCall<E> {
    /// The shared policy, for a call that owns its reference (the tower layer's).
    #[cfg_attr(not(feature = "tower"), allow(dead_code))]
    pub(crate) fn inner(&self) -> &Arc<Inner<E>> {
        &self.inner
    }

    /// A builder with the defaults of [`SafeCallBuilder`].
    pub fn builder() -> SafeCallBuilder<E> {
        SafeCallBuilder::new()
    }

    /// Calls `op` under this policy: `op` makes a fresh attempt each time it is
    /// called.
    ///
    /// The returned [`Call`] is a future; it allocates nothing. Add a circuit
    /// breaker with [`Call::breaker`].
    ///
    /// # Errors
    ///
    /// The future resolves to an [`Error`](crate::Error) that says which limit
    /// ended the call: a permanent error, retries or budget exhausted, a time limit,
    /// or an open breaker.
    ///
    /// # Cancellation
    ///
    /// Dropping the future drops the attempt in flight or the wait, and nothing
    /// more is invoked. A breaker permit held by the attempt is released without
    /// counting.
    pub fn call<T, F, Fut>(&self, op: F) -> Call<'_, E, Plain<F>, Fut>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Call::new(&self.inner, Plain(op))
    }

    /// Like [`call`](SafeCall::call), but hands the operation an [`Attempt`]: the
    /// attempt number and the time left before the deadline, so a client can pass
    /// the deadline downstream (a gRPC deadline, an HTTP timeout) and log the
    /// attempt.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::SafeCall;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy: SafeCall<std::io::Error> = SafeCall::builder()
    ///     .deadline(Duration::from_secs(5))
    ///     .build()
    ///     .unwrap();
    /// let seen = policy
    ///     .call_with(|attempt| async move {
    ///         Ok::<_, std::io::Error>((attempt.number, attempt.time_left))
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(seen, (1, Some(Duration::from_secs(5))));
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As for [`call`](SafeCall::call).
    pub fn call_with<T, F, Fut>(&self, op: F) -> Call<'_, E, WithAttempt<F>, Fut>
    where
        F: FnMut(Attempt) -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        Call::new(&self.inner, WithAttempt(op))
    }

    /// The most retries a call makes (`max_retries + 1` attempts at most).
    #[must_use]
    pub fn max_retries(&self) -> u32 {
        self.inner.settings.max_retries
    }

    /// The policy's name ([`SafeCallBuilder::name`]).
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.inner.settings.name
    }

    /// The backoff schedule.
    #[must_use]
    pub fn backoff(&self) -> &Backoff {
        &self.inner.settings.backoff
    }
}

/// Builds a [`SafeCall`]; [`build`](SafeCallBuilder::build) checks every value.
///
/// # Default
///
/// | setting | default |
/// | --- | --- |
/// | [`max_retries`](SafeCallBuilder::max_retries) | 3 (at most 4 attempts) |
/// | [`backoff`](SafeCallBuilder::backoff) | exponential from 1 s, factor 2, capped at 30 s, [`Jitter::Full`](crate::Jitter::Full) |
/// | [`attempt_timeout`](SafeCallBuilder::attempt_timeout) | none |
/// | [`deadline`](SafeCallBuilder::deadline) | none |
/// | [`max_retry_after`](SafeCallBuilder::max_retry_after) | 60 s |
/// | [`attempt_timeout_class`](SafeCallBuilder::attempt_timeout_class) | [`ErrorClass::Transient`] |
/// | [`retry_budget`](SafeCallBuilder::retry_budget) | 20 % of the calls of the last 10 s, at least 10 per second |
/// | [`classify`](SafeCallBuilder::classify) | every error [`ErrorClass::Transient`] |
/// | [`seed`](SafeCallBuilder::seed) | random per policy |
/// | [`name`](SafeCallBuilder::name) | `"default"` |
/// | `metrics` (feature `metrics`) | `true`: every call is recorded |
#[must_use = "a builder does nothing until `build` is called"]
pub struct SafeCallBuilder<E> {
    max_retries: u32,
    backoff: Backoff,
    attempt_timeout: Option<Duration>,
    deadline: Option<Duration>,
    max_retry_after: Duration,
    timeout_class: ErrorClass,
    budget: RetryBudget,
    classify: Box<dyn Classify<E>>,
    on_retry: Option<OnRetry<E>>,
    seed: Option<u64>,
    name: &'static str,
    #[cfg(feature = "metrics")]
    metrics: bool,
}

impl<E> fmt::Debug for SafeCallBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeCallBuilder")
            .field("max_retries", &self.max_retries)
            .field("backoff", &self.backoff)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("deadline", &self.deadline)
            .field("max_retry_after", &self.max_retry_after)
            .field("timeout_class", &self.timeout_class)
            .field("budget", &self.budget)
            .field("seed", &self.seed)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<E> Default for SafeCallBuilder<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> SafeCallBuilder<E> {
    /// A builder with the defaults (see `# Default`).
    pub fn new() -> Self {
        Self {
            max_retries: 3,
            backoff: Backoff::default(),
            attempt_timeout: None,
            deadline: None,
            max_retry_after: Duration::from_secs(60),
            timeout_class: ErrorClass::Transient,
            budget: RetryBudget::default(),
            classify: Box::new(AlwaysTransient),
            on_retry: None,
            seed: None,
            name: "default",
            #[cfg(feature = "metrics")]
            metrics: true,
        }
    }

    /// At most `n` retries, so at most `n + 1` attempts (default 3). Zero makes a
    /// policy that never retries but still applies time limits and breakers.
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// The schedule of waits between attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// A time limit on each attempt (default none). An attempt that runs past it
    /// is dropped and counts as a transient failure: retried, and held against
    /// the breaker. Each attempt gets `min(attempt_timeout, time left before the
    /// deadline)`. Must not be zero.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// How an attempt that ran past its attempt timeout is classified (default
    /// [`ErrorClass::Transient`]: retried, and held against the breaker).
    ///
    /// A timed-out attempt may still have been carried out by the server. For an
    /// operation that is not idempotent (an SMS, a payment) without an
    /// idempotency key, say [`ErrorClass::Permanent`]: the call then ends with
    /// [`Error::Timeout`](crate::Error::Timeout) instead of trying again, and the
    /// breaker still counts it. [`ErrorClass::CallerFault`] ends the call
    /// without counting it; a [`ErrorClass::RetryAfter`] hint is a floor for the
    /// next wait, as for an error.
    pub fn attempt_timeout_class(mut self, class: ErrorClass) -> Self {
        self.timeout_class = class;
        self
    }

    /// A time limit on the whole call, waits included (default none). A wait that
    /// would end at or after it is not started; an attempt still running when it
    /// passes is dropped and the call ends with
    /// [`Error::Timeout`](crate::Error::Timeout). Must not be zero.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// The longest server hint ([`ErrorClass::RetryAfter`]) worth waiting for
    /// (default 60 s). A longer hint ends the call at once with
    /// [`Error::Exhausted`](crate::Error::Exhausted): never sleep into a certain
    /// failure.
    pub fn max_retry_after(mut self, max: Duration) -> Self {
        self.max_retry_after = max;
        self
    }

    /// The retry budget shared by every call of the policy and its clones
    /// (default on: see [`RetryBudget`]). [`RetryBudget::disabled`] turns it off.
    pub fn retry_budget(mut self, budget: RetryBudget) -> Self {
        self.budget = budget;
        self
    }

    /// How errors are classified (default: every error is transient). Takes a
    /// closure `Fn(&E) -> ErrorClass` or any [`Classify`] implementation, such as
    /// [`classify_io`](crate::classify_io).
    pub fn classify(mut self, classify: impl Classify<E>) -> Self {
        self.classify = Box::new(classify);
        self
    }

    /// A hook called before each retry with the failed attempt, the delay and the
    /// error: for metrics and logs. It runs on the caller's task: keep it quick.
    pub fn on_retry(mut self, hook: impl Fn(&RetryEvent<'_, E>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Box::new(hook));
        self
    }

    /// Seeds the jitter's random source, for reproducible schedules in tests
    /// (default: a random seed per policy).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Names the policy (default `"default"`): the `policy` label of its
    /// metrics (feature `metrics`, see `safecall::metrics`). A
    /// `&'static str`, so the
    /// label's values stay a fixed set: name a policy per provider
    /// (`"twilio"`, `"google-calendar"`), never per tenant.
    pub fn name(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Whether the policy records metrics (feature `metrics`; default
    /// `true`). A policy built with `false` registers nothing and its calls
    /// skip the two clock reads and the recording: one branch per call. For
    /// a policy on a path too hot to measure, or one whose calls another
    /// policy's metrics already count (an inner layer).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn metrics(mut self, record: bool) -> Self {
        self.metrics = record;
        self
    }

    /// Checks every setting and builds the policy.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field and the rule: a bad
    /// [`Backoff`](Backoff::validate) or [`RetryBudget`](RetryBudget::validate), a
    /// zero `attempt_timeout` or `deadline`.
    pub fn build(self) -> Result<SafeCall<E>, ConfigError> {
        self.backoff.validate()?;
        self.budget.validate()?;
        if self.attempt_timeout.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new(
                "attempt_timeout",
                "must be greater than zero",
            ));
        }
        if self.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::new("deadline", "must be greater than zero"));
        }
        Ok(self.build_unchecked())
    }

    fn build_unchecked(self) -> SafeCall<E> {
        let seed = self.seed.unwrap_or_else(random_seed);
        let timed = self.deadline.is_some() || self.attempt_timeout.is_some();
        #[cfg(feature = "metrics")]
        let metrics = self.metrics;
        #[cfg(not(feature = "metrics"))]
        let metrics = false;
        SafeCall {
            inner: Arc::new(Inner {
                settings: Settings {
                    max_retries: self.max_retries,
                    backoff: self.backoff,
                    attempt_timeout: self.attempt_timeout,
                    deadline: self.deadline,
                    timed,
                    plain: !timed && !metrics,
                    zero_delay: self.backoff.is_zero(),
                    max_retry_after: self.max_retry_after,
                    timeout_class: self.timeout_class,
                    budget: self.budget.state(),
                    rng: SharedRng::new(seed),
                    name: self.name,
                    #[cfg(feature = "metrics")]
                    metrics: self
                        .metrics
                        .then(|| crate::metrics::PolicyMetrics::new(self.name)),
                },
                classify: self.classify,
                on_retry: self.on_retry,
            }),
        }
    }
}
