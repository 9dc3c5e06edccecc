//! The [`Call`] future: one call under a policy, attempt after attempt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, Timeout};

use crate::error::TimeoutKind;
use crate::policy::{Inner, RetryEvent, Settings};
use crate::{Error, ErrorClass, ExhaustedReason, Jitter};

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

mod sealed {
    /// Makes one attempt's future.
    pub trait MakeAttempt<Fut> {
        fn make(&mut self, attempt: super::Attempt) -> Fut;
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
    /// Dropping it drops the attempt in flight or the wait; the operation is not
    /// invoked again. Polling it again after it has resolved returns
    /// `Poll::Pending`.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Call<'a, E, Op, Fut> {
        inner: &'a Inner<E>,
        op: Op,
        attempts: u32,
        started: bool,
        previous_delay: Duration,
        deadline: Option<Instant>,
        span: tracing::Span,
        #[pin]
        state: State<Fut>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<Fut> {
        // About to make an attempt.
        Start,
        // Polls the attempt; no time limit applies.
        Running { #[pin] fut: Fut },
        // Polls the attempt under its time limit; `at_deadline` when that limit
        // is the call's deadline rather than the attempt timeout.
        Timed { #[pin] fut: Timeout<Fut>, at_deadline: bool },
        // Polls the wait before the next attempt.
        Waiting { #[pin] sleep: Sleep },
        // Resolved.
        Done,
    }
}

impl<E, Op, Fut> fmt::Debug for Call<'_, E, Op, Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("attempts", &self.attempts)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

impl<'a, E, Op, Fut> Call<'a, E, Op, Fut> {
    pub(crate) fn new(inner: &'a Inner<E>, op: Op) -> Self {
        Self {
            inner,
            op,
            attempts: 0,
            started: false,
            previous_delay: inner.settings.backoff.base(),
            deadline: None,
            span: tracing::Span::none(),
            state: State::Start,
        }
    }
}

/// What happens after a retryable failure.
enum Next {
    Retry {
        delay: Duration,
        now: Option<Instant>,
    },
    GiveUp(ExhaustedReason),
}

/// The retry decision: pure but for the clock (read only with a deadline) and the
/// budget. Kept out of the generic poll to limit monomorphisation.
fn decide(
    s: &Settings,
    class: ErrorClass,
    attempts: u32,
    previous: &mut Duration,
    deadline: Option<Instant>,
) -> Next {
    if attempts > s.max_retries {
        return Next::GiveUp(ExhaustedReason::RetriesUsedUp);
    }
    let random = if s.backoff.jitter_kind() == Jitter::None {
        0
    } else {
        s.random()
    };
    let mut delay = s.backoff.delay(attempts, *previous, random);
    if let ErrorClass::RetryAfter(hint) = class {
        if hint > s.max_retry_after {
            return Next::GiveUp(ExhaustedReason::RetryAfterTooLong { hint });
        }
        delay = delay.max(hint);
    }
    let mut now = None;
    if let Some(deadline) = deadline {
        let t = Instant::now();
        match t.checked_add(delay) {
            Some(end) if end < deadline => now = Some(t),
            _ => return Next::GiveUp(ExhaustedReason::DeadlineTooClose),
        }
    }
    if let Some(budget) = &s.budget {
        if !budget.try_withdraw() {
            return Next::GiveUp(ExhaustedReason::BudgetEmpty);
        }
    }
    *previous = delay;
    Next::Retry { delay, now }
}

/// The time limit of the next attempt, if any: `(end, whether it is the deadline)`.
fn attempt_limit(
    s: &Settings,
    now: Option<Instant>,
    deadline: Option<Instant>,
) -> Option<(Instant, bool)> {
    let own = s
        .attempt_timeout
        .and_then(|t| now.and_then(|n| n.checked_add(t)));
    match (own, deadline) {
        (Some(own), Some(deadline)) if deadline <= own => Some((deadline, true)),
        (Some(own), _) => Some((own, false)),
        (None, Some(deadline)) => Some((deadline, true)),
        (None, None) => None,
    }
}

impl<E: 'static, Op, Fut, T> Future for Call<'_, E, Op, Fut>
where
    Op: sealed::MakeAttempt<Fut>,
    Fut: Future<Output = Result<T, E>>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let s = &this.inner.settings;
        let mut first_now = None;
        if !*this.started {
            *this.started = true;
            if let Some(budget) = &s.budget {
                budget.deposit();
            }
            if let Some(d) = s.deadline {
                let now = Instant::now();
                *this.deadline = now.checked_add(d);
                first_now = Some(now);
            }
            *this.span = tracing::debug_span!("safecall", max_retries = s.max_retries);
        }
        let _entered = this.span.enter();
        loop {
            let failure = match this.state.as_mut().project() {
                StateProj::Start => {
                    let now = first_now.take().or_else(|| {
                        (s.deadline.is_some() || s.attempt_timeout.is_some()).then(Instant::now)
                    });
                    let time_left = match (*this.deadline, now) {
                        (Some(d), Some(n)) => Some(d.saturating_duration_since(n)),
                        _ => None,
                    };
                    if time_left == Some(Duration::ZERO) {
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Timeout {
                            attempts: *this.attempts,
                            kind: TimeoutKind::Deadline,
                        }));
                    }
                    *this.attempts += 1;
                    tracing::trace!(attempt = *this.attempts, ?time_left, "attempt");
                    let fut = this.op.make(Attempt {
                        number: *this.attempts,
                        time_left,
                    });
                    match attempt_limit(s, now, *this.deadline) {
                        None => this.state.set(State::Running { fut }),
                        Some((end, at_deadline)) => this.state.set(State::Timed {
                            fut: tokio::time::timeout_at(end, fut),
                            at_deadline,
                        }),
                    }
                    continue;
                }
                StateProj::Running { fut } => match ready!(fut.poll(cx)) {
                    Ok(value) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(value));
                    }
                    Err(error) => Some(error),
                },
                StateProj::Timed { fut, at_deadline } => match ready!(fut.poll(cx)) {
                    Ok(Ok(value)) => {
                        this.state.set(State::Done);
                        return Poll::Ready(Ok(value));
                    }
                    Ok(Err(error)) => Some(error),
                    Err(_elapsed) if *at_deadline => {
                        tracing::debug!(attempts = *this.attempts, "deadline passed");
                        this.state.set(State::Done);
                        return Poll::Ready(Err(Error::Timeout {
                            attempts: *this.attempts,
                            kind: TimeoutKind::Deadline,
                        }));
                    }
                    Err(_elapsed) => None,
                },
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Start);
                    continue;
                }
                StateProj::Done => return Poll::Pending,
            };

            // The attempt failed: with the operation's error, or (`None`) by
            // running past its attempt timeout.
            let inner = *this.inner;
            let class = match &failure {
                Some(error) => inner.classify.classify(error),
                None => ErrorClass::Transient,
            };
            let attempts = *this.attempts;
            if !class.is_retryable() {
                tracing::debug!(attempts, ?class, "not retryable");
                this.state.set(State::Done);
                return Poll::Ready(Err(match failure {
                    Some(source) => Error::Permanent {
                        source,
                        attempts,
                        class,
                    },
                    None => Error::Timeout {
                        attempts,
                        kind: TimeoutKind::Attempt,
                    },
                }));
            }
            match decide(
                &inner.settings,
                class,
                attempts,
                this.previous_delay,
                *this.deadline,
            ) {
                Next::GiveUp(reason) => {
                    tracing::debug!(attempts, ?class, %reason, "giving up");
                    this.state.set(State::Done);
                    return Poll::Ready(Err(match failure {
                        Some(source) => Error::Exhausted {
                            source,
                            attempts,
                            reason,
                        },
                        None => Error::Timeout {
                            attempts,
                            kind: TimeoutKind::Attempt,
                        },
                    }));
                }
                Next::Retry { delay, now } => {
                    tracing::debug!(attempt = attempts, ?delay, ?class, "retrying");
                    if let Some(hook) = &inner.on_retry {
                        hook(&RetryEvent {
                            attempt: attempts,
                            delay,
                            class,
                            error: failure.as_ref(),
                        });
                    }
                    drop(failure);
                    if delay.is_zero() {
                        this.state.set(State::Start);
                    } else {
                        let sleep = match now.and_then(|n| n.checked_add(delay)) {
                            Some(at) => tokio::time::sleep_until(at),
                            None => tokio::time::sleep(delay),
                        };
                        this.state.set(State::Waiting { sleep });
                    }
                }
            }
        }
    }
}
