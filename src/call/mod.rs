//! The [`Call`] future: one call under a policy, attempt after attempt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, Timeout};

use crate::breaker::{Breaker, Outcome, Permit, RawPermit};
use crate::error::TimeoutKind;
use crate::policy::{Inner, RetryEvent};
use crate::{Error, ErrorClass, ExhaustedReason};

/// The same call with other holders (before its first poll): every other
/// field moves across. Defined before the submodules, which use it too.
macro_rules! remake {
    ($call:expr, |$c:ident, $b:ident, $h:ident| ($new_c:expr, $new_b:expr, $new_h:expr)) => {{
        remake!($call, |$c, $b, $h, hedge, flight| (
            $new_c, $new_b, $new_h, hedge, flight
        ))
    }};
    (
        $call:expr,
        |$c:ident, $b:ident, $h:ident, $g:ident, $f:ident|
        ($new_c:expr, $new_b:expr, $new_h:expr, $new_g:expr, $new_f:expr)
    ) => {{
        let Call {
            inner,
            op,
            classify_ok: $c,
            breaker: $b,
            bulkhead: $h,
            hedge: $g,
            flight: $f,
            attempts,
            started,
            finished,
            previous_delay,
            last_error,
            deadline,
            span,
            measure,
            state,
        } = $call;
        Call {
            inner,
            op,
            classify_ok: $new_c,
            breaker: $new_b,
            bulkhead: $new_h,
            hedge: $new_g,
            flight: $new_f,
            attempts,
            started,
            finished,
            previous_delay,
            last_error,
            deadline,
            span,
            measure,
            state,
        }
    }};
}

/// Polls a new or running attempt without a time limit: its success ends
/// the call, its failure is the value. (Inside the call's poll: `$this` is
/// its projection.)
macro_rules! poll_running {
    ($this:ident, $cx:ident, $fut:expr) => {
        match ready!($fut.poll($cx)) {
            Ok(value) => match $this.classify_ok.classify_ok(&value) {
                None => {
                    $this.breaker.record(Outcome::Success);
                    *$this.finished = true;
                    return Poll::Ready(Ok(value));
                }
                Some(class) => Failure::Value(value, class),
            },
            Err(error) => Failure::Error(error),
        }
    };
}

/// Ends the call refused by its breaker. (Inside the call's poll: `$this` is
/// its projection, `$s` the policy's settings.)
macro_rules! refused {
    ($this:ident, $s:ident, $refused:expr) => {{
        let refused = $refused;
        tracing::debug!(attempts = *$this.attempts, retry_in = ?refused.retry_in(), cause = %refused.cause(), "circuit open");
        measure::event($s, CallEvent::Rejected);
        $this.state.as_mut().project_replace(State::Done);
        return Poll::Ready(Err(Error::CircuitOpen {
            retry_in: refused.retry_in(),
            cause: refused.cause(),
            attempts: *$this.attempts,
            last_error: $this.last_error.take(),
        }));
    }};
}

mod decide;
mod failure;
mod fallback;
mod flight;
mod holders;
mod measure;

use decide::{Next, attempt_limit, breaker_outcome, budget_of, decide, refused_after, withdraw};
use failure::Failure;
pub use fallback::Fallback;
use holders::{Acquired, BreakerSlot, BulkheadSlot, PolicyRef, Queued};
pub use holders::{BreakerHold, BulkheadHold, HedgeHold, NoBreaker, NoBulkhead, NoHedge};
use measure::{CallEvent, Measure};

/// Far enough ahead to stand for "no end" (a wait with neither a bound nor a
/// deadline cannot happen: `max_wait` is finite) without overflowing.
const FAR: Duration = Duration::from_secs(86_400 * 365);

/// What [`SafeCall::call_with`](crate::SafeCall::call_with) hands the operation
/// before each attempt.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempt {
    /// This attempt's number, from 1.
    pub number: u32,
    /// The time left before the call's deadline; `None` without a deadline. Pass
    /// it downstream (as a gRPC deadline, an HTTP timeout) so the callee stops
    /// working for a caller that has already given up.
    pub time_left: Option<Duration>,
}

pub(crate) mod sealed {
    /// Makes one attempt's future.
    pub trait MakeAttempt<Fut> {
        fn make(&mut self, attempt: super::Attempt) -> Fut;

        /// Whether another attempt can be made after the ones made so far: an
        /// operation that replays a request it could not clone cannot. The call
        /// asks before each retry, and never calls `make` again after `false`.
        #[inline(always)]
        fn can_retry(&self) -> bool {
            true
        }
    }

    /// Classifies a successful attempt's value: `None` for a success, the
    /// class of failure it stands for otherwise.
    pub trait ClassifyOk<T> {
        fn classify_ok(&self, value: &T) -> Option<crate::ErrorClass>;
    }
}

/// The `classify_ok` of a [`Call`] that has none: every value is a success.
/// A zero-sized type whose check compiles away.
#[derive(Debug, Clone, Copy, Default)]
pub struct EveryOk;

impl<T> sealed::ClassifyOk<T> for EveryOk {
    #[inline(always)]
    fn classify_ok(&self, _value: &T) -> Option<ErrorClass> {
        None
    }
}

/// The `classify_ok` of a [`Call`] given one, from
/// [`Call::classify_ok`]: a `Fn(&T) -> Option<ErrorClass>`.
#[derive(Clone)]
pub struct ClassifyOkWith<F>(pub(crate) F);

impl<F> fmt::Debug for ClassifyOkWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClassifyOkWith(..)")
    }
}

impl<T, F: Fn(&T) -> Option<ErrorClass>> sealed::ClassifyOk<T> for ClassifyOkWith<F> {
    #[inline]
    fn classify_ok(&self, value: &T) -> Option<ErrorClass> {
        (self.0)(value)
    }
}

/// The operation of [`SafeCall::call`](crate::SafeCall::call): a `FnMut() -> Fut`.
#[derive(Clone)]
pub struct Plain<F>(pub(crate) F);

/// The operation of [`SafeCall::call_with`](crate::SafeCall::call_with): a
/// `FnMut(Attempt) -> Fut`.
#[derive(Clone)]
pub struct WithAttempt<F>(pub(crate) F);

impl<F> fmt::Debug for Plain<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plain(..)")
    }
}

impl<F> fmt::Debug for WithAttempt<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WithAttempt(..)")
    }
}

impl<F: FnMut() -> Fut, Fut> sealed::MakeAttempt<Fut> for Plain<F> {
    #[inline]
    fn make(&mut self, _attempt: Attempt) -> Fut {
        (self.0)()
    }
}

impl<F: FnMut(Attempt) -> Fut, Fut> sealed::MakeAttempt<Fut> for WithAttempt<F> {
    #[inline]
    fn make(&mut self, attempt: Attempt) -> Fut {
        (self.0)(attempt)
    }
}

pin_project! {
    /// One call under a [`SafeCall`](crate::SafeCall) policy: a future that makes
    /// attempts, waits between them, and resolves to the first success or to the
    /// [`Error`] that ended the call.
    ///
    /// Made by [`SafeCall::call`](crate::SafeCall::call) and
    /// [`SafeCall::call_with`](crate::SafeCall::call_with). It borrows the policy
    /// (no reference count is touched) and allocates nothing. It is `Send` when
    /// the operation and its future are.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops the attempt in flight (every attempt, for a hedged
    /// call) or the wait, and releases their breaker permits without
    /// counting; the operation is not invoked again. Polling it again after
    /// it has resolved returns `Poll::Pending`.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Call<
        'a,
        E,
        Op,
        Fut,
        C = EveryOk,
        B: BreakerHold = NoBreaker,
        H: BulkheadHold = NoBulkhead,
        G: HedgeHold = NoHedge,
    > {
        inner: PolicyRef<'a, E>,
        op: Op,
        classify_ok: C,
        // The breaker, if any, and the permit of the attempt in flight.
        breaker: BreakerSlot<B>,
        // The bulkhead, if any: the call's permit, or its place in the queue.
        bulkhead: BulkheadSlot<H>,
        // The hedge, if any.
        hedge: G,
        // A hedged call's attempts in flight (nothing without a hedge).
        #[pin]
        flight: G::Flight<Fut>,
        attempts: u32,
        started: bool,
        // Resolved with a success whose attempt future is left in `state`
        // (dropped with the call): cheaper than replacing the state.
        finished: bool,
        previous_delay: Duration,
        deadline: Option<Instant>,
        // The operation's error from the latest attempt that returned one and
        // was retried: a timeout or a refusal that ends the call later keeps it.
        last_error: Option<E>,
        // The call's span, made only if a subscriber may want debug spans.
        span: Option<tracing::Span>,
        // The call's metrics (nothing without the `metrics` feature).
        measure: Measure,
        #[pin]
        state: State<Fut>,
    }
}

pin_project! {
    #[project = StateProj]
    #[project_replace = StateReplace]
    enum State<Fut> {
        // About to make an attempt.
        Start,
        // Polls the attempt; no time limit applies.
        Running { #[pin] fut: Fut },
        // Polls a hedged call's attempts in flight (in `flight`).
        Hedged,
        // Resolved.
        Done,
        // Every state that holds a timer, behind one variant: replacing the
        // state tests one tag for what to drop (no jump table over seven
        // variants), and a call that never armed a timer never runs the
        // timer's drop.
        Timer { #[pin] timer: Timer<Fut> },
    }
}

pin_project! {
    #[project = TimerProj]
    enum Timer<Fut> {
        // Polls the attempt under its time limit; `at_deadline` when that limit
        // is the call's deadline rather than the attempt timeout.
        Timed { #[pin] fut: Timeout<Fut>, at_deadline: bool },
        // Polls the wait before the next attempt.
        Waiting { #[pin] sleep: Sleep },
        // Queued for a bulkhead permit until `sleep` ends (`max_wait`, or the
        // deadline when `at_deadline`).
        Queued { #[pin] sleep: Sleep, since: Instant, at_deadline: bool },
    }
}

impl<E, Op: fmt::Debug, Fut, C, B: BreakerHold, H: BulkheadHold, G: HedgeHold> fmt::Debug
    for Call<'_, E, Op, Fut, C, B, H, G>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("op", &self.op)
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<'a, E, Op, Fut> Call<'a, E, Op, Fut> {
    pub(crate) fn new(inner: &'a Inner<E>, op: Op) -> Self {
        Self::with_policy(PolicyRef::Borrowed(inner), op)
    }

    /// A call that owns its policy (one reference count per call): for a
    /// future that must outlive the policy's borrow.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the tower layer's
    pub(crate) fn new_owned(inner: std::sync::Arc<Inner<E>>, op: Op) -> Self {
        Self::with_policy(PolicyRef::Owned(inner), op)
    }

    fn with_policy(inner: PolicyRef<'a, E>, op: Op) -> Self {
        let previous_delay = inner.get().settings.backoff.base();
        Self {
            inner,
            op,
            classify_ok: EveryOk,
            breaker: BreakerSlot::new(NoBreaker),
            bulkhead: BulkheadSlot::new(NoBulkhead),
            hedge: NoHedge,
            flight: holders::NoFlight,
            attempts: 0,
            started: false,
            finished: false,
            previous_delay,
            last_error: None,
            deadline: None,
            span: None,
            measure: Measure::default(),
            state: State::Start,
        }
    }
}

impl<'a, E, Op, Fut, B: BreakerHold, H: BulkheadHold, G: HedgeHold>
    Call<'a, E, Op, Fut, EveryOk, B, H, G>
{
    /// Classifies the operation's successes too: `f` returns `None` for a value
    /// that is a success, or the [`ErrorClass`] of the failure it stands for
    /// (an HTTP client's `Ok(response)` for a 503).
    ///
    /// A value classified as a failure is retried and held against the
    /// breaker exactly like an error of that class. When no further attempt is
    /// allowed (retries used up, a class that is not retried, an empty budget,
    /// a hint too long to wait for, a wait that would not fit before the
    /// deadline), the call resolves to `Ok(last value)`: the caller gets the
    /// provider's last answer, as tower's retry does. A limit of the call's
    /// own that ends it without an answer in hand, the deadline passing during
    /// an attempt or a breaker refusal, ends it with the [`Error`] as usual.
    /// The `on_retry` hook and the tracing events say that the attempt's value
    /// was classified ([`RetryEvent::value_classified`]).
    ///
    /// Without `classify_ok` the check costs nothing: the default classifier
    /// is a zero-sized type whose `None` compiles away.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::{classify_http_status, Backoff, Jitter, SafeCall};
    ///
    /// struct Response { status: u16 }
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy: SafeCall<std::io::Error> = SafeCall::builder()
    ///     .max_retries(2)
    ///     .backoff(Backoff::constant(Duration::from_millis(100)).jitter(Jitter::None))
    ///     .build()
    ///     .unwrap();
    /// let mut statuses = [503, 503, 200].into_iter();
    /// let response = policy
    ///     .call(|| {
    ///         let status = statuses.next().unwrap_or(200);
    ///         async move { Ok::<_, std::io::Error>(Response { status }) }
    ///     })
    ///     .classify_ok(|r: &Response| match r.status {
    ///         s if s < 400 => None,
    ///         s => Some(classify_http_status(s, None)),
    ///     })
    ///     .await
    ///     .unwrap();
    /// assert_eq!(response.status, 200);
    ///
    /// // Retries used up: the provider's last answer, not an error.
    /// let last = policy
    ///     .call(|| async { Ok::<_, std::io::Error>(Response { status: 503 }) })
    ///     .classify_ok(|r: &Response| (r.status >= 500).then(|| classify_http_status(r.status, None)))
    ///     .await
    ///     .unwrap();
    /// assert_eq!(last.status, 503);
    /// # }
    /// ```
    ///
    /// [`RetryEvent::value_classified`]: crate::RetryEvent::value_classified
    pub fn classify_ok<T, F>(self, f: F) -> Call<'a, E, Op, Fut, ClassifyOkWith<F>, B, H, G>
    where
        F: Fn(&T) -> Option<ErrorClass>,
    {
        remake!(self, |_old, breaker, bulkhead| (
            ClassifyOkWith(f),
            breaker,
            bulkhead
        ))
    }

    /// [`classify_ok`](Self::classify_ok) with any classifier of values
    /// ([`EveryOk`] included), for a caller generic over it.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the tower layer's
    pub(crate) fn with_classify_ok<C>(self, classify_ok: C) -> Call<'a, E, Op, Fut, C, B, H, G> {
        remake!(self, |_old, breaker, bulkhead| (
            classify_ok,
            breaker,
            bulkhead
        ))
    }
}

impl<'a, E, Op, Fut, C, B: BreakerHold, H: BulkheadHold, G: HedgeHold>
    Call<'a, E, Op, Fut, C, B, H, G>
{
    /// Serves `f`'s value when the dependency was unavailable: the call ended
    /// with [`Error::CircuitOpen`], [`Error::Exhausted`] or [`Error::Timeout`]
    /// and `f` returns `Some` (a cached answer, a default). `None` returns the
    /// error. Never run for [`Error::Permanent`]: a wrong request must not be
    /// papered over. A `tracing` event (INFO, target `safecall`) says a
    /// fallback served the call. Chain it last.
    ///
    /// # Examples
    ///
    /// ```
    /// use safecall::{Breaker, BreakerConfig, SafeCall};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy: SafeCall<&str> = SafeCall::builder().max_retries(0).build().unwrap();
    /// let breaker = Breaker::new(BreakerConfig::default());
    /// breaker.force_open(); // the provider is isolated
    /// let cached = "yesterday's rates";
    /// let rates = policy
    ///     .call(|| async { Ok::<_, &str>("today's rates") })
    ///     .breaker(&breaker)
    ///     .fallback(|_| Some(cached))
    ///     .await;
    /// assert_eq!(rates.unwrap(), "yesterday's rates");
    ///
    /// // A wrong request is never papered over.
    /// let policy: SafeCall<&str> = SafeCall::builder()
    ///     .classify(|_: &&str| safecall::ErrorClass::CallerFault)
    ///     .build()
    ///     .unwrap();
    /// let wrong = policy
    ///     .call(|| async { Err::<&str, _>("bad phone number") })
    ///     .fallback(|_| Some(cached))
    ///     .await;
    /// assert!(matches!(wrong, Err(safecall::Error::Permanent { .. })));
    /// # }
    /// ```
    pub fn fallback<T, F>(self, f: F) -> Fallback<Self, F>
    where
        F: FnOnce(&Error<E>) -> Option<T>,
    {
        let served = measure::FallbackCount::of(&self.inner.get().settings);
        Fallback::new(self, f, served)
    }
}

impl<'a, E, Op, Fut, C, H: BulkheadHold, G: HedgeHold> Call<'a, E, Op, Fut, C, NoBreaker, H, G> {
    /// Runs every attempt of this call through `breaker`.
    ///
    /// The breaker is asked before **each** attempt, retries included: a refusal
    /// ends the call at once with [`Error::CircuitOpen`] (never a wait), so a
    /// breaker that opens mid-call stops the retries. Each attempt's outcome is
    /// recorded: a success or a failure (a transient or permanent error, or an
    /// attempt that ran out of time); an [`ErrorClass::CallerFault`] releases the
    /// permit without counting; an [`ErrorClass::RetryAfter`] hint cools the
    /// breaker's key down until the hinted time (if the breaker's config allows)
    /// without counting as a failure. If the breaker has a retry budget of its
    /// own ([`BreakerConfig::retry_budget`](crate::BreakerConfig::retry_budget)),
    /// the call spends that one instead of the policy's: a budget per key.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::{BreakerConfig, BreakerRegistry, BreakerState, Error, SafeCall};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy: SafeCall<&str> = SafeCall::builder().max_retries(0).build().unwrap();
    /// let breakers: BreakerRegistry<String> =
    ///     BreakerRegistry::new(BreakerConfig::default().consecutive_failures(2));
    /// let breaker = breakers.get("org-46cf");
    /// for _ in 0..2 {
    ///     let _ = policy.call(|| async { Err::<(), _>("down") }).breaker(&breaker).await;
    /// }
    /// assert_eq!(breaker.state(), BreakerState::Open);
    /// let refused = policy.call(|| async { Ok::<_, &str>(()) }).breaker(&breaker).await;
    /// assert!(matches!(refused, Err(Error::CircuitOpen { attempts: 0, .. })));
    /// # }
    /// ```
    pub fn breaker(self, breaker: &'a Breaker) -> Call<'a, E, Op, Fut, C, &'a Breaker, H, G> {
        self.with_breaker(breaker)
    }

    /// [`breaker`](Self::breaker) with an owned handle, for a call that must
    /// outlive the breaker's borrow.
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the tower layer's
    pub(crate) fn breaker_owned(self, breaker: Breaker) -> Call<'a, E, Op, Fut, C, Breaker, H, G> {
        self.with_breaker(breaker)
    }

    fn with_breaker<B: BreakerHold>(self, hold: B) -> Call<'a, E, Op, Fut, C, B, H, G> {
        remake!(self, |classify_ok, _old, bulkhead| (
            classify_ok,
            BreakerSlot::new(hold),
            bulkhead
        ))
    }
}

impl<'a, E, Op, Fut, C, B: BreakerHold, G: HedgeHold> Call<'a, E, Op, Fut, C, B, NoBulkhead, G> {
    /// Runs the call under `bulkhead`: one permit, taken before the first
    /// attempt and held across retries and waits, released when the call ends
    /// or is dropped.
    ///
    /// A full bulkhead ends the call with [`Error::BulkheadFull`] (a limit of
    /// this client's own: never retried, never held against a breaker), at
    /// once, or after queuing first in, first out for up to the bulkhead's
    /// [`max_wait`](crate::BulkheadConfig::max_wait). The wait counts against
    /// the call's deadline: a deadline that passes while queued ends the call
    /// with [`Error::Timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::{Bulkhead, BulkheadConfig, Error, SafeCall};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let bulkhead = Bulkhead::new(
    ///     BulkheadConfig::max_concurrent(1).max_wait(Duration::from_millis(50)),
    /// );
    /// let policy: SafeCall<std::io::Error> = SafeCall::default();
    /// let _busy = bulkhead.try_acquire().unwrap(); // a slow call in flight
    /// let refused = policy
    ///     .call(|| async { Ok::<_, std::io::Error>(()) })
    ///     .bulkhead(&bulkhead)
    ///     .await;
    /// assert!(matches!(refused, Err(Error::BulkheadFull { attempts: 0, .. })));
    /// # }
    /// ```
    pub fn bulkhead(
        self,
        bulkhead: &'a crate::Bulkhead,
    ) -> Call<'a, E, Op, Fut, C, B, &'a crate::Bulkhead, G> {
        remake!(self, |classify_ok, breaker, _old| (
            classify_ok,
            breaker,
            BulkheadSlot::new(bulkhead)
        ))
    }
}

impl<E: 'static, Op, Fut, T, C, B: BreakerHold, H: BulkheadHold, G: HedgeHold> Future
    for Call<'_, E, Op, Fut, C, B, H, G>
where
    Op: sealed::MakeAttempt<Fut>,
    Fut: Future<Output = Result<T, E>>,
    C: sealed::ClassifyOk<T>,
{
    type Output = Result<T, Error<E>>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let out = self.as_mut().drive(cx);
        if let Poll::Ready(_result) = &out {
            let this = self.project();
            // The call has ended: its bulkhead permit goes back now, not when
            // the future is dropped.
            this.bulkhead.release();
            // With the `metrics` feature: the call's outcome, attempts and
            // duration, recorded once.
            #[cfg(feature = "metrics")]
            this.measure
                .finish(&this.inner.get().settings, _result, *this.attempts);
        }
        out
    }
}

impl<E: 'static, Op, Fut, T, C, B: BreakerHold, H: BulkheadHold, G: HedgeHold>
    Call<'_, E, Op, Fut, C, B, H, G>
where
    Op: sealed::MakeAttempt<Fut>,
    Fut: Future<Output = Result<T, E>>,
    C: sealed::ClassifyOk<T>,
{
    /// Drives the call: attempts, waits, the retry decisions. `Pending`
    /// again once it has resolved.
    #[inline(always)]
    fn drive(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T, Error<E>>> {
        let mut this = self.as_mut().project();
        if *this.finished {
            return Poll::Pending;
        }
        let (first_failure, at_start) = if *this.started {
            (None, false)
        } else {
            *this.started = true;
            let s = &this.inner.get().settings;
            if let Some(budget) = budget_of(s, this.breaker.get()) {
                budget.deposit();
            }
            // The quick first poll: a policy without a time limit or
            // metrics, a call without a bulkhead or a hedge (both known from
            // its type), and no subscriber at DEBUG (so none at TRACE either:
            // the call has no span and the attempt no event). The first
            // attempt is made and polled at once; what the general path would
            // do on top is nothing for such a call. Apart from the general
            // path, which it goes on to only when the attempt fails, so that
            // a success touches none of it.
            if s.plain
                && !this.bulkhead.pending()
                && this.hedge.hedge().is_none()
                && !tracing::level_enabled!(tracing::Level::DEBUG)
            {
                let admission = this
                    .breaker
                    .get()
                    .map(|b| b.try_acquire().map(Permit::into_raw));
                match admission {
                    None => {}
                    Some(Ok(raw)) => this.breaker.hold(raw),
                    Some(Err(refused)) => refused!(this, s, refused),
                }
                *this.attempts = 1;
                let fut = this.op.make(Attempt {
                    number: 1,
                    time_left: None,
                });
                this.state.as_mut().project_replace(State::Running { fut });
                match this.state.as_mut().project() {
                    StateProj::Running { fut } => (Some(poll_running!(this, cx, fut)), false),
                    // Cannot be: the general path polls the state.
                    _ => (None, false),
                }
            } else {
                (None, true)
            }
        };
        self.drive_on(cx, first_failure, at_start)
    }

    /// The general path: the set-up of a first poll that did not take the
    /// quick one (`at_start`), then the round loop. `first_failure` is the
    /// failure of the attempt the quick first poll made.
    #[inline(always)]
    fn drive_on(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut first_failure: Option<Failure<T, E>>,
        mut at_start: bool,
    ) -> Poll<Result<T, Error<E>>> {
        let mut this = self.project();
        let inner: &Inner<E> = this.inner.get();
        let s = &inner.settings;
        let timed = s.timed;
        // `at_start` says the state is known to be `Start` (a first poll,
        // or the state just replaced by `Start`): the round goes there
        // without reading the state back.
        let mut first_now = None;
        // Ends the call at its deadline (with the last error retried, if any).
        macro_rules! deadline_passed {
            () => {{
                this.state.as_mut().project_replace(State::Done);
                return Poll::Ready(Err(Error::Timeout {
                    attempts: *this.attempts,
                    kind: TimeoutKind::Deadline,
                    reason: None,
                    last_error: this.last_error.take(),
                }));
            }};
        }
        if at_start {
            if timed {
                if let Some(d) = s.deadline {
                    let now = Instant::now();
                    *this.deadline = now.checked_add(d);
                    first_now = Some(now);
                }
            }
            let started = this.measure.start(s, first_now);
            if timed && s.attempt_timeout.is_some() {
                // The first attempt's time limit shares the metrics' reading.
                first_now = first_now.or(started);
            }
            if tracing::level_enabled!(tracing::Level::DEBUG) {
                *this.span = Some(tracing::debug_span!(
                    "safecall",
                    max_retries = s.max_retries
                ));
            }
        }
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        loop {
            // The class of a hedged call's failure, classified in its flight.
            let mut classified = None;
            let failure = match first_failure.take() {
                // The quick first poll's attempt failed.
                Some(failure) => failure,
                None => {
                    let proj = if at_start {
                        at_start = false;
                        StateProj::Start
                    } else {
                        this.state.as_mut().project()
                    };
                    match proj {
                        StateProj::Start => {
                            // Without a time limit: no clock read, nothing to check.
                            let (now, time_left) = if timed {
                                let now = first_now.take().unwrap_or_else(Instant::now);
                                let time_left =
                                    this.deadline.map(|d| d.saturating_duration_since(now));
                                if time_left == Some(Duration::ZERO) {
                                    deadline_passed!();
                                }
                                (Some(now), time_left)
                            } else {
                                (None, None)
                            };
                            if this.bulkhead.pending() {
                                // The call's permit, before its first attempt.
                                match this.bulkhead.acquire(cx.waker()) {
                                    Acquired::Held => {}
                                    Acquired::Refused => {
                                        tracing::debug!("bulkhead full");
                                        measure::event(s, CallEvent::BulkheadRejected);
                                        this.state.as_mut().project_replace(State::Done);
                                        return Poll::Ready(Err(Error::BulkheadFull {
                                            waited: Duration::ZERO,
                                            attempts: *this.attempts,
                                        }));
                                    }
                                    Acquired::Queued { max_wait } => {
                                        let since = now.unwrap_or_else(Instant::now);
                                        let own = since.checked_add(max_wait);
                                        let (end, at_deadline) = match (own, *this.deadline) {
                                            (Some(own), Some(d)) if d <= own => (d, true),
                                            (Some(own), _) => (own, false),
                                            (None, Some(d)) => (d, true),
                                            (None, None) => (since + FAR, false),
                                        };
                                        this.state.set(State::Timer {
                                            timer: Timer::Queued {
                                                sleep: tokio::time::sleep_until(end),
                                                since,
                                                at_deadline,
                                            },
                                        });
                                        continue;
                                    }
                                }
                            }
                            let admission = this
                                .breaker
                                .get()
                                .map(|b| b.try_acquire().map(Permit::into_raw));
                            if let Some(admission) = admission {
                                match admission {
                                    Ok(raw) => this.breaker.hold(raw),
                                    Err(refused) => refused!(this, s, refused),
                                }
                            }
                            *this.attempts += 1;
                            tracing::trace!(attempt = *this.attempts, ?time_left, "attempt");
                            let fut = this.op.make(Attempt {
                                number: *this.attempts,
                                time_left,
                            });
                            if let (Some(hedge), Some(flight)) =
                                (this.hedge.hedge(), G::flight(this.flight.as_mut()))
                            {
                                // A hedged call: the round's first attempt, and the
                                // hedges beside it, run in the flight.
                                let limit = attempt_limit(s, now, *this.deadline);
                                let probe = this
                                    .breaker
                                    .parts()
                                    .1
                                    .as_ref()
                                    .is_some_and(RawPermit::is_probe);
                                flight.first(fut, limit, probe, hedge, now, *this.attempts);
                                this.state.as_mut().project_replace(State::Hedged);
                                continue;
                            }
                            // `project_replace`, not `set`: the state is `Start`,
                            // which needs no drop (saves the generic drop glue's call).
                            match attempt_limit(s, now, *this.deadline) {
                                None => {
                                    this.state.as_mut().project_replace(State::Running { fut });
                                    // Polled at once: the state was just written, so
                                    // no dispatch on it.
                                    match this.state.as_mut().project() {
                                        StateProj::Running { fut } => poll_running!(this, cx, fut),
                                        _ => continue,
                                    }
                                }
                                Some((end, at_deadline)) => {
                                    this.state.as_mut().project_replace(State::Timer {
                                        timer: Timer::Timed {
                                            fut: tokio::time::timeout_at(end, fut),
                                            at_deadline,
                                        },
                                    });
                                    continue;
                                }
                            }
                        }
                        StateProj::Running { fut } => poll_running!(this, cx, fut),
                        StateProj::Timer { timer } => match timer.project() {
                            TimerProj::Timed { fut, at_deadline } => match ready!(fut.poll(cx)) {
                                Ok(Ok(value)) => match this.classify_ok.classify_ok(&value) {
                                    None => {
                                        this.breaker.record(Outcome::Success);
                                        *this.finished = true;
                                        return Poll::Ready(Ok(value));
                                    }
                                    Some(class) => Failure::Value(value, class),
                                },
                                Ok(Err(error)) => Failure::Error(error),
                                Err(_elapsed) if *at_deadline => {
                                    // Cut by the deadline: evidence of a slow dependency, like
                                    // an attempt timeout.
                                    this.breaker.record(Outcome::Failure);
                                    tracing::debug!(attempts = *this.attempts, "deadline passed");
                                    deadline_passed!();
                                }
                                Err(_elapsed) => Failure::TimedOut,
                            },
                            TimerProj::Waiting { sleep } => {
                                ready!(sleep.poll(cx));
                                this.state.set(State::Start);
                                continue;
                            }
                            TimerProj::Queued {
                                sleep,
                                since,
                                at_deadline,
                            } => {
                                let (since, at_deadline) = (*since, *at_deadline);
                                match this.bulkhead.poll_queued(cx.waker()) {
                                    Queued::Held => {
                                        this.state.set(State::Start);
                                        continue;
                                    }
                                    Queued::Refused => {
                                        // The bulkhead's ceiling (a registry's global
                                        // limit) is full: it does not queue.
                                        this.state.as_mut().project_replace(State::Done);
                                        let waited =
                                            Instant::now().saturating_duration_since(since);
                                        tracing::debug!(?waited, "bulkhead ceiling full");
                                        return Poll::Ready(Err(Error::BulkheadFull {
                                            waited,
                                            attempts: *this.attempts,
                                        }));
                                    }
                                    Queued::Waiting => {}
                                }
                                ready!(sleep.poll(cx));
                                if this.bulkhead.leave_queue() {
                                    // Handed a permit at the last moment: take it.
                                    this.state.set(State::Start);
                                    continue;
                                }
                                this.state.as_mut().project_replace(State::Done);
                                let attempts = *this.attempts;
                                if at_deadline {
                                    tracing::debug!(
                                        "deadline passed while queued for the bulkhead"
                                    );
                                    deadline_passed!();
                                }
                                let waited = Instant::now().saturating_duration_since(since);
                                tracing::debug!(?waited, "bulkhead full");
                                measure::event(s, CallEvent::BulkheadRejected);
                                return Poll::Ready(Err(Error::BulkheadFull { waited, attempts }));
                            }
                        },
                        StateProj::Hedged => {
                            let (Some(hedge), Some(flight)) =
                                (this.hedge.hedge(), G::flight(this.flight.as_mut()))
                            else {
                                this.state.as_mut().project_replace(State::Done);
                                return Poll::Pending;
                            };
                            let (breaker, first_permit) = this.breaker.parts();
                            let mut ctx = flight::Ctx {
                                inner,
                                op: &mut *this.op,
                                classify_ok: &*this.classify_ok,
                                breaker,
                                first_permit,
                                hedge,
                                attempts: &mut *this.attempts,
                                deadline: *this.deadline,
                                last_error: &mut *this.last_error,
                            };
                            match ready!(flight.poll_round(cx, &mut ctx)) {
                                flight::Landed::Won(value) => {
                                    this.state.as_mut().project_replace(State::Done);
                                    return Poll::Ready(Ok(value));
                                }
                                flight::Landed::Ended(result) => {
                                    this.state.as_mut().project_replace(State::Done);
                                    return Poll::Ready(result);
                                }
                                flight::Landed::Failed(failure, class) => {
                                    classified = Some(class);
                                    failure
                                }
                            }
                        }
                        StateProj::Done => return Poll::Pending,
                    }
                }
            };

            // The attempt failed: with the operation's error, with a value
            // classified as a failure, or by running past its attempt timeout.
            let class = match (&failure, classified) {
                (_, Some(class)) => class,
                (Failure::Error(error), None) => inner.classify.classify(error),
                (Failure::Value(_, class), None) => *class,
                (Failure::TimedOut, None) => s.timeout_class,
            };
            this.breaker.record(breaker_outcome(class));
            let attempts = *this.attempts;
            if !class.is_retryable() {
                tracing::debug!(attempts, ?class, "not retryable");
                if matches!(failure, Failure::Value(..)) {
                    this.measure.value_failed(None);
                }
                this.state.as_mut().project_replace(State::Done);
                return Poll::Ready(failure.end(attempts, class, None, this.last_error.take()));
            }
            let mut next = decide(
                &inner.settings,
                class,
                G::wait_index(&this.flight, attempts, s.max_retries),
                this.previous_delay,
                *this.deadline,
            );
            if let Next::Retry { delay, .. } = next {
                if let Some((retry_in, cause)) = refused_after(this.breaker.get(), delay) {
                    tracing::debug!(
                        attempts,
                        ?retry_in,
                        %cause,
                        "circuit open: not waiting for a refusal"
                    );
                    measure::event(s, CallEvent::Rejected);
                    this.state.as_mut().project_replace(State::Done);
                    return Poll::Ready(Err(Error::CircuitOpen {
                        retry_in,
                        cause,
                        attempts,
                        last_error: match failure {
                            Failure::Error(error) => Some(error),
                            _ => this.last_error.take(),
                        },
                    }));
                }
                if !this.op.can_retry() {
                    // Never silent: the call would have been retried.
                    tracing::warn!(
                        attempts,
                        ?class,
                        "not retried: the request could not be cloned for another attempt"
                    );
                    next = Next::GiveUp(ExhaustedReason::NotReplayable);
                } else if !withdraw(&inner.settings, this.breaker.get()) {
                    next = Next::GiveUp(ExhaustedReason::BudgetEmpty);
                }
            }
            match next {
                Next::GiveUp(reason) => {
                    tracing::debug!(
                        attempts,
                        ?class,
                        %reason,
                        value_classified = matches!(failure, Failure::Value(..)),
                        "giving up"
                    );
                    measure::event(s, CallEvent::GiveUp);
                    if matches!(failure, Failure::Value(..)) {
                        this.measure.value_failed(Some(reason));
                    }
                    this.state.as_mut().project_replace(State::Done);
                    return Poll::Ready(failure.end(
                        attempts,
                        class,
                        Some(reason),
                        this.last_error.take(),
                    ));
                }
                Next::Retry { delay, now } => {
                    let value_classified = matches!(failure, Failure::Value(..));
                    tracing::debug!(
                        attempt = attempts,
                        ?delay,
                        ?class,
                        value_classified,
                        "retrying"
                    );
                    if let Some(hook) = &inner.on_retry {
                        hook(&RetryEvent {
                            attempt: attempts,
                            delay,
                            class,
                            error: match &failure {
                                Failure::Error(error) => Some(error),
                                _ => None,
                            },
                            value_classified,
                        });
                    }
                    measure::event(s, CallEvent::Retry);
                    if let Failure::Error(error) = failure {
                        *this.last_error = Some(error);
                    }
                    if delay.is_zero() {
                        this.state.as_mut().project_replace(State::Start);
                        at_start = true;
                    } else {
                        let sleep = match now.and_then(|n| n.checked_add(delay)) {
                            Some(at) => tokio::time::sleep_until(at),
                            None => tokio::time::sleep(delay),
                        };
                        this.state.set(State::Timer {
                            timer: Timer::Waiting { sleep },
                        });
                    }
                }
            }
        }
    }
}
