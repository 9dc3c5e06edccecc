//! A deterministic test kit for your own policies: scripted operations and chaos.
//!
//! Resilience code is only trusted when its failure handling is tested, and a test
//! that sleeps for real is slow and flaky. Everything here runs on tokio's clock,
//! so under `#[tokio::test(start_paused = true)]` a schedule of minutes runs in
//! microseconds and can be asserted exactly.
//!
//! - [`Script`]: an operation that plays a fixed sequence of outcomes and
//!   latencies and records when each attempt started, so a test can check its
//!   [`SafeCall`](crate::SafeCall) configuration with
//!   [`assert_attempts_at`](Script::assert_attempts_at).
//! - [`Chaos`]: a wrapper around any operation that injects errors, latency or
//!   hangs with given probabilities from a seeded random source: for fault drills
//!   and soak tests. It does nothing unless you construct it.
//!
//! Enabled by the `testing` feature: add it to your dev-dependencies only,
//! `safecall = { version = "0.1", features = ["testing"] }`.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use safecall::testing::Script;
//! use safecall::{Backoff, Jitter, SafeCall};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy: SafeCall<&str> = SafeCall::builder()
//!     .backoff(Backoff::exponential(Duration::from_secs(1)).jitter(Jitter::None))
//!     .build()
//!     .unwrap();
//! let script = Script::new()
//!     .then_err("503")
//!     .then_err("503")
//!     .then_ok(42);
//! assert_eq!(policy.call(|| script.attempt()).await.unwrap(), 42);
//! script.assert_attempts_at(&[0, 1, 3].map(Duration::from_secs));
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::ConfigError;
use crate::backoff::SharedRng;

type Make<T, E> = Arc<dyn Fn() -> Result<T, E> + Send + Sync>;

enum Outcome<T, E> {
    Ready(Make<T, E>),
    Hang,
}

impl<T, E> Clone for Outcome<T, E> {
    fn clone(&self) -> Self {
        match self {
            Outcome::Ready(make) => Outcome::Ready(Arc::clone(make)),
            Outcome::Hang => Outcome::Hang,
        }
    }
}

struct Step<T, E> {
    latency: Duration,
    outcome: Outcome<T, E>,
}

impl<T, E> Clone for Step<T, E> {
    fn clone(&self) -> Self {
        Self {
            latency: self.latency,
            outcome: self.outcome.clone(),
        }
    }
}

struct ScriptState<T, E> {
    steps: VecDeque<Step<T, E>>,
    last: Option<Step<T, E>>,
    origin: Option<Instant>,
    started: Vec<Duration>,
}

/// A scripted operation: plays its steps in order, then repeats the last one.
///
/// Each step is an outcome (`Ok`, `Err`, or a hang that never completes) after an
/// optional latency. Clones share the script, so one can be moved into the
/// operation's closure and the other kept for assertions. Times are measured on
/// tokio's clock from the script's first attempt, or from [`Script::start`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::testing::Script;
/// use safecall::{Error, SafeCall};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() {
/// let policy: SafeCall<String> = SafeCall::builder()
///     .attempt_timeout(Duration::from_secs(2))
///     .max_retries(1)
///     .build()
///     .unwrap();
/// let script: Script<u32, String> = Script::new().then_hang();
/// let err = policy.call(|| script.attempt()).await.unwrap_err();
/// assert!(matches!(err, Error::Timeout { attempts: 2, .. }));
/// assert_eq!(script.calls(), 2);
/// # }
/// ```
pub struct Script<T, E> {
    state: Arc<Mutex<ScriptState<T, E>>>,
}

impl<T, E> Clone for Script<T, E> {
    fn clone(&self) -> Self {
        Self {
            state: Arc::clone(&self.state),
        }
    }
}

impl<T, E> fmt::Debug for Script<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("Script")
            .field("steps_left", &s.steps.len())
            .field("attempts_at", &s.started)
            .finish()
    }
}

impl<T, E> Default for Script<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Script<T, E> {
    /// An empty script; add steps with the `then_*` methods.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: Arc::new(Mutex::new(ScriptState {
                steps: VecDeque::new(),
                last: None,
                origin: None,
                started: Vec::new(),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ScriptState<T, E>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(self, latency: Duration, outcome: Outcome<T, E>) -> Self {
        self.lock().steps.push_back(Step { latency, outcome });
        self
    }

    /// Next, fail with an error made by `make` (for error types that are not
    /// `Clone`, such as `std::io::Error`).
    #[must_use]
    pub fn then_err_with(self, make: impl Fn() -> E + Send + Sync + 'static) -> Self {
        self.push(
            Duration::ZERO,
            Outcome::Ready(Arc::new(move || Err(make()))),
        )
    }

    /// Next, succeed with a value made by `make`.
    #[must_use]
    pub fn then_ok_with(self, make: impl Fn() -> T + Send + Sync + 'static) -> Self {
        self.push(Duration::ZERO, Outcome::Ready(Arc::new(move || Ok(make()))))
    }

    /// Next, never complete (until the policy's timeout or deadline drops it).
    #[must_use]
    pub fn then_hang(self) -> Self {
        self.push(Duration::ZERO, Outcome::Hang)
    }

    /// Gives the step added last a latency: it completes `latency` after the
    /// attempt starts. Without steps, does nothing.
    #[must_use]
    pub fn after(self, latency: Duration) -> Self {
        if let Some(step) = self.lock().steps.back_mut() {
            step.latency = latency;
        }
        self
    }

    /// Starts the script's clock now, so attempt times are measured from here
    /// rather than from the first attempt.
    pub fn start(&self) {
        self.lock().origin = Some(Instant::now());
    }

    /// How many attempts were made.
    #[must_use]
    pub fn calls(&self) -> u32 {
        u32::try_from(self.lock().started.len()).unwrap_or(u32::MAX)
    }

    /// When each attempt started, from the script's start (see
    /// [`start`](Script::start)).
    #[must_use]
    pub fn attempts_at(&self) -> Vec<Duration> {
        self.lock().started.clone()
    }

    /// Asserts that the attempts started exactly at `expected`.
    ///
    /// # Panics
    ///
    /// Panics (as `assert_eq!` does) when the times differ: it is a test assertion.
    #[track_caller]
    pub fn assert_attempts_at(&self, expected: &[Duration]) {
        let actual = self.attempts_at();
        assert_eq!(actual, expected, "attempt start times differ");
    }

    /// Makes the next attempt: records its start time and plays the next step.
    ///
    /// A script with no steps hangs.
    pub fn attempt(&self) -> ScriptAttempt<T, E> {
        let now = Instant::now();
        let step = {
            let mut s = self.lock();
            let origin = *s.origin.get_or_insert(now);
            s.started.push(now.saturating_duration_since(origin));
            match s.steps.pop_front() {
                Some(step) => {
                    s.last = Some(step.clone());
                    Some(step)
                }
                None => s.last.clone(),
            }
        };
        let (latency, outcome) = match step {
            Some(step) => (step.latency, step.outcome),
            None => (Duration::ZERO, Outcome::Hang),
        };
        ScriptAttempt {
            outcome,
            sleep: (!latency.is_zero()).then(|| Box::pin(tokio::time::sleep(latency))),
        }
    }
}

impl<T: Clone + Send + Sync + 'static, E> Script<T, E> {
    /// Next, succeed with `value`.
    #[must_use]
    pub fn then_ok(self, value: T) -> Self {
        self.push(
            Duration::ZERO,
            Outcome::Ready(Arc::new(move || Ok(value.clone()))),
        )
    }
}

impl<T, E: Clone + Send + Sync + 'static> Script<T, E> {
    /// Next, fail with `error`.
    #[must_use]
    pub fn then_err(self, error: E) -> Self {
        self.push(
            Duration::ZERO,
            Outcome::Ready(Arc::new(move || Err(error.clone()))),
        )
    }
}

/// One attempt of a [`Script`]: a future.
#[must_use = "futures do nothing unless you `.await` or poll them"]
pub struct ScriptAttempt<T, E> {
    outcome: Outcome<T, E>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<T, E> fmt::Debug for ScriptAttempt<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptAttempt").finish_non_exhaustive()
    }
}

impl<T, E> Future for ScriptAttempt<T, E> {
    type Output = Result<T, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        if let Some(sleep) = self.sleep.as_mut() {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        match &self.outcome {
            Outcome::Ready(make) => Poll::Ready(make()),
            Outcome::Hang => Poll::Pending,
        }
    }
}

/// Injects faults into any operation, from a seeded random source.
///
/// Per attempt, in this order: with probability `hang` the attempt never
/// completes; with probability `error` it fails with an injected error without
/// calling the operation; otherwise, with probability `latency`, it waits a
/// random time in the latency range before calling the operation. The same seed
/// gives the same faults in the same order.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use safecall::testing::Chaos;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), safecall::ConfigError> {
/// let chaos = Chaos::new(7)
///     .error(0.3, || "injected")
///     .latency(0.5, Duration::from_millis(10)..=Duration::from_millis(200))
///     .build()?;
/// let mut op = chaos.wrap(|| async { Ok::<_, &str>(1) });
/// let mut failures = 0;
/// for _ in 0..100 {
///     if op().await.is_err() {
///         failures += 1;
///     }
/// }
/// assert!((15..=45).contains(&failures));
/// # Ok(())
/// # }
/// ```
pub struct Chaos<E> {
    inner: Arc<ChaosInner<E>>,
}

struct ChaosInner<E> {
    rng: SharedRng,
    hang: f64,
    error: f64,
    make_error: Option<Arc<dyn Fn() -> E + Send + Sync>>,
    latency: f64,
    latency_range: (Duration, Duration),
}

impl<E> Clone for Chaos<E> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<E> fmt::Debug for Chaos<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaos")
            .field("hang", &self.inner.hang)
            .field("error", &self.inner.error)
            .field("latency", &self.inner.latency)
            .field("latency_range", &self.inner.latency_range)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Chaos`]; see [`Chaos::new`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ChaosBuilder<E> {
    seed: u64,
    hang: f64,
    error: f64,
    make_error: Option<Arc<dyn Fn() -> E + Send + Sync>>,
    latency: f64,
    latency_range: (Duration, Duration),
}

impl<E> fmt::Debug for ChaosBuilder<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosBuilder")
            .field("seed", &self.seed)
            .finish_non_exhaustive()
    }
}

impl<E> Chaos<E> {
    /// Starts a chaos injector with no faults, seeded with `seed`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(seed: u64) -> ChaosBuilder<E> {
        ChaosBuilder {
            seed,
            hang: 0.0,
            error: 0.0,
            make_error: None,
            latency: 0.0,
            latency_range: (Duration::ZERO, Duration::ZERO),
        }
    }

    fn chance(&self, p: f64) -> bool {
        if p <= 0.0 {
            return false;
        }
        self.inner.rng.next_unit() < p
    }

    fn pick_latency(&self) -> Duration {
        let (lo, hi) = self.inner.latency_range;
        let x = self.inner.rng.next_u64();
        let span = hi.saturating_sub(lo).as_nanos();
        let offset = if span == 0 {
            0
        } else {
            u128::from(x) % (span + 1)
        };
        lo + Duration::from_nanos(u64::try_from(offset).unwrap_or(u64::MAX))
    }

    /// Wraps `op`: the returned closure makes attempts with faults injected.
    pub fn wrap<F, Fut, T>(&self, mut op: F) -> impl FnMut() -> Chaotic<Fut, E> + use<F, Fut, T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let chaos = self.clone();
        move || chaos.attempt(&mut op)
    }

    /// Makes one attempt of `op` with faults injected.
    pub fn attempt<F, Fut, T>(&self, op: &mut F) -> Chaotic<Fut, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        if self.chance(self.inner.hang) {
            return Chaotic { kind: Kind::Hang };
        }
        if let Some(make) = &self.inner.make_error {
            if self.chance(self.inner.error) {
                return Chaotic {
                    kind: Kind::Fail {
                        error: Some(make()),
                    },
                };
            }
        }
        if self.chance(self.inner.latency) {
            return Chaotic {
                kind: Kind::Delayed {
                    sleep: tokio::time::sleep(self.pick_latency()),
                    fut: op(),
                },
            };
        }
        Chaotic {
            kind: Kind::Run { fut: op() },
        }
    }
}

impl<E> ChaosBuilder<E> {
    /// With probability `p`, an attempt fails with `make()` without calling the
    /// operation.
    pub fn error(mut self, p: f64, make: impl Fn() -> E + Send + Sync + 'static) -> Self {
        self.error = p;
        self.make_error = Some(Arc::new(make));
        self
    }

    /// With probability `p`, an attempt waits a uniform random time in `range`
    /// before calling the operation.
    pub fn latency(mut self, p: f64, range: std::ops::RangeInclusive<Duration>) -> Self {
        self.latency = p;
        self.latency_range = (*range.start(), *range.end());
        self
    }

    /// With probability `p`, an attempt never completes.
    pub fn hang(mut self, p: f64) -> Self {
        self.hang = p;
        self
    }

    /// Checks the probabilities and builds the injector.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `chaos.error`, `chaos.latency` or `chaos.hang` for
    /// a probability outside `[0, 1]` (or NaN), or `chaos.latency` for an empty
    /// range.
    pub fn build(self) -> Result<Chaos<E>, ConfigError> {
        for (field, p) in [
            ("chaos.error", self.error),
            ("chaos.latency", self.latency),
            ("chaos.hang", self.hang),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(ConfigError::new(
                    field,
                    format!("must be a probability in [0, 1], got {p}"),
                ));
            }
        }
        if self.latency_range.0 > self.latency_range.1 {
            return Err(ConfigError::new(
                "chaos.latency",
                format!(
                    "range must not be empty, got {:?}..={:?}",
                    self.latency_range.0, self.latency_range.1
                ),
            ));
        }
        Ok(Chaos {
            inner: Arc::new(ChaosInner {
                rng: SharedRng::new(self.seed),
                hang: self.hang,
                error: self.error,
                make_error: self.make_error,
                latency: self.latency,
                latency_range: self.latency_range,
            }),
        })
    }
}

pin_project! {
    /// One attempt made through [`Chaos`]: the operation's future with a fault
    /// injected, or untouched.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Chaotic<Fut, E> {
        #[pin]
        kind: Kind<Fut, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<Fut, E> {
        Run { #[pin] fut: Fut },
        Delayed { #[pin] sleep: Sleep, #[pin] fut: Fut },
        Fail { error: Option<E> },
        Hang,
    }
}

impl<Fut, E> fmt::Debug for Chaotic<Fut, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chaotic").finish_non_exhaustive()
    }
}

impl<Fut, T, E> Future for Chaotic<Fut, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, E>> {
        match self.project().kind.project() {
            KindProj::Run { fut } => fut.poll(cx),
            KindProj::Delayed { sleep, fut } => {
                if sleep.is_elapsed() {
                    return fut.poll(cx);
                }
                match sleep.poll(cx) {
                    Poll::Ready(()) => fut.poll(cx),
                    Poll::Pending => Poll::Pending,
                }
            }
            KindProj::Fail { error } => match error.take() {
                Some(e) => Poll::Ready(Err(e)),
                None => Poll::Pending,
            },
            KindProj::Hang => Poll::Pending,
        }
    }
}
