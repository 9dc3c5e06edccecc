//! A hedged call's attempts in flight: up to five inline slots (no `Box`, no
//! allocation), each with its own breaker permit and time limit, and the
//! timer of the next hedge. See [`crate::hedge`] for the rules.
//!
//! [`Call`](super::Call) keeps driving the call: it takes the bulkhead
//! permit, admits and makes each round's first attempt, and decides the
//! retries between rounds. A [`Flight`] runs one round: it starts the hedges,
//! polls the attempts, and hands back the winner, the failure that ends the
//! round (nothing left in flight, or a class that is not retried), or the
//! call's end at the deadline. A call without a hedge holds a [`NoFlight`]
//! (zero-sized) instead, and its code is the same as before hedging existed.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, Timeout};

use super::decide::{attempt_limit, breaker_outcome, budget_of};
use super::holders::{BreakerHold, BulkheadHold, NoHedge};
use super::measure::{self, CallEvent};
use super::{Attempt, Call, Failure, sealed};
use crate::breaker::{Breaker, Outcome, Permit, RawPermit};
use crate::error::TimeoutKind;
use crate::hedge::MAX_IN_FLIGHT;
use crate::policy::Inner;
use crate::{Error, ErrorClass, Hedge};

pin_project! {
    /// One attempt slot.
    #[project = RunProj]
    enum Run<Fut> {
        // Free.
        Empty,
        // An attempt with no time limit.
        Running { #[pin] fut: Fut },
        // An attempt under its time limit; `at_deadline` when that limit is
        // the call's deadline.
        Timed { #[pin] fut: Timeout<Fut>, at_deadline: bool },
    }
}

pin_project! {
    /// The next hedge's timer, armed once a round has a delay.
    #[project = TimerProj]
    enum Timer {
        Off,
        On { #[pin] sleep: Sleep },
    }
}

/// What a slot keeps beside its attempt.
#[derive(Debug, Default)]
struct Meta {
    /// A hedge's breaker permit (a round's first attempt keeps its permit in
    /// the call's breaker slot, as an attempt of a call without a hedge does).
    permit: Option<RawPermit>,
    /// When it started.
    started: Option<Instant>,
    /// Its attempt number.
    number: u32,
    /// Whether it was started as a hedge (not a round's first attempt).
    hedge: bool,
}

pin_project! {
    /// The attempts in flight of a hedged [`Call`](super::Call): five inline
    /// slots and the next hedge's timer. Not built or named by users: it is
    /// the type a `&Hedge` holder keeps in the call.
    ///
    /// Dropping it (the call was cancelled) drops every attempt and releases
    /// their breaker permits without counting.
    pub struct Flight<Fut> {
        #[pin] s0: Run<Fut>,
        #[pin] s1: Run<Fut>,
        #[pin] s2: Run<Fut>,
        #[pin] s3: Run<Fut>,
        #[pin] s4: Run<Fut>,
        #[pin] timer: Timer,
        meta: [Meta; MAX_IN_FLIGHT],
        in_flight: u8,
        // The breaker the hedges' permits are of: a clone, taken when the
        // call's first hedge starts, so that dropping the call releases them.
        breaker: Option<Breaker>,
        // This round's hedge delay; `None`: no hedge this round.
        delay: Option<Duration>,
        // When the latest attempt started; `None` for a round's first attempt
        // until the clock is read (the timer is armed only once that attempt
        // has not answered at its first poll).
        last_start: Option<Instant>,
        // When the round's first attempt started, for a learning hedge.
        first_start: Option<Instant>,
        // Start the next hedge now (an attempt failed while others are in flight).
        now_due: bool,
        // No further hedge in this call (a retry-after hint, an empty budget, a
        // refusal, an operation that cannot be replayed).
        stopped: bool,
        // Rounds that ended in a failure: the backoff index of the next wait.
        rounds: u32,
        // The longest retry-after hint an attempt got beside others in this
        // round: a floor for the wait if the round ends in a failure.
        hint: Option<Duration>,
    }
    impl<Fut> PinnedDrop for Flight<Fut> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(b) = this.breaker.as_ref() {
                for meta in this.meta.iter_mut() {
                    if let Some(raw) = meta.permit.take() {
                        b.finish_raw(raw, None);
                    }
                }
            }
        }
    }
}

impl<Fut> fmt::Debug for Flight<Fut> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Flight")
            .field("in_flight", &self.in_flight)
            .field("delay", &self.delay)
            .finish_non_exhaustive()
    }
}

impl<Fut> Flight<Fut> {
    /// The rounds that ended in a failure: the backoff index of the next wait.
    pub(super) fn rounds(&self) -> u32 {
        self.rounds
    }

    pub(super) fn new() -> Self {
        Self {
            s0: Run::Empty,
            s1: Run::Empty,
            s2: Run::Empty,
            s3: Run::Empty,
            s4: Run::Empty,
            timer: Timer::Off,
            meta: Default::default(),
            in_flight: 0,
            breaker: None,
            delay: None,
            last_start: None,
            first_start: None,
            now_due: false,
            stopped: false,
            rounds: 0,
            hint: None,
        }
    }
}

impl<'a, E, Op, Fut, C, B: BreakerHold, H: BulkheadHold> Call<'a, E, Op, Fut, C, B, H, NoHedge> {
    /// Hedges this call: when an attempt is slow to answer, another starts
    /// beside it, and the first success wins (the others are dropped at
    /// once). Only for idempotent operations. See [`Hedge`](Hedge) and
    /// the [`hedge`](crate::hedge) module for the rules: hedges are attempts
    /// (they count toward `max_retries`, spend the retry budget and pass the
    /// breaker), none start beside a half-open probe, and the deadline covers
    /// them all.
    ///
    /// The attempts in flight live inside the call future (up to five slots,
    /// no allocation); each holds its own breaker permit and time limit.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use safecall::{Hedge, SafeCall};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// # async fn main() {
    /// let policy: SafeCall<std::io::Error> = SafeCall::default();
    /// let hedge = Hedge::after(Duration::from_millis(100));
    /// let mut attempt = 0;
    /// let winner = policy
    ///     .call(|| {
    ///         attempt += 1;
    ///         let (n, latency) = (attempt, if attempt == 1 { 1_000 } else { 10 });
    ///         async move {
    ///             tokio::time::sleep(Duration::from_millis(latency)).await;
    ///             Ok::<_, std::io::Error>(n)
    ///         }
    ///     })
    ///     .hedge(&hedge)
    ///     .await;
    /// assert_eq!(winner.unwrap(), 2, "the hedge answered first");
    /// # }
    /// ```
    pub fn hedge(self, hedge: &'a Hedge) -> Call<'a, E, Op, Fut, C, B, H, &'a Hedge> {
        remake!(self, |classify_ok, breaker, bulkhead, _old, _none| (
            classify_ok,
            breaker,
            bulkhead,
            hedge,
            Flight::new()
        ))
    }
}

/// What the call's drive hands a flight to poll its round.
pub(super) struct Ctx<'c, E, Op, C> {
    pub(super) inner: &'c Inner<E>,
    pub(super) op: &'c mut Op,
    pub(super) classify_ok: &'c C,
    pub(super) breaker: Option<&'c Breaker>,
    /// The permit of the round's first attempt, held in the call's breaker
    /// slot.
    pub(super) first_permit: &'c mut Option<RawPermit>,
    pub(super) hedge: &'c Hedge,
    pub(super) attempts: &'c mut u32,
    pub(super) deadline: Option<Instant>,
    pub(super) last_error: &'c mut Option<E>,
}

/// How a round ended.
pub(super) enum Landed<T, E> {
    /// An attempt succeeded; the others are dropped.
    Won(T),
    /// The failure that ends the round (nothing else in flight, or a class
    /// that is not retried: the others are dropped), for the call to decide on.
    Failed(Failure<T, E>, ErrorClass),
    /// The deadline passed: the call's end.
    Ended(Result<T, Error<E>>),
}

/// One slot's attempt, ended.
enum Ended<T, E> {
    Value(T),
    Error(E),
    TimedOut { at_deadline: bool },
}

impl<Fut, T, E> Flight<Fut>
where
    Fut: Future<Output = Result<T, E>>,
{
    /// Starts a round with its first attempt, admitted and made by the call
    /// (its permit, if any, stays in the call's breaker slot). `now` is the
    /// clock if the call has read it.
    pub(super) fn first(
        mut self: Pin<&mut Self>,
        fut: Fut,
        limit: Option<(Instant, bool)>,
        probe: bool,
        hedge: &Hedge,
        now: Option<Instant>,
        number: u32,
    ) {
        let mut this = self.as_mut().project();
        *this.now_due = false;
        *this.hint = None;
        // A timer left from an earlier round would fire early.
        if let TimerProj::On { .. } = this.timer.as_mut().project() {
            this.timer.set(Timer::Off);
        }
        // A learning hedge reads the clock: its delay, and the attempt's
        // latency.
        let now = if hedge.learns() {
            Some(now.unwrap_or_else(Instant::now))
        } else {
            now
        };
        *this.first_start = now;
        // No hedge beside a half-open probe: it runs alone.
        *this.delay = if probe || *this.stopped || hedge.extra() == 0 {
            None
        } else {
            match now {
                Some(now) => hedge.delay_at(now),
                None => hedge.fixed_delay(),
            }
        };
        self.launch(fut, limit, None, now, number, false);
    }

    /// Puts an attempt in a free slot.
    fn launch(
        self: Pin<&mut Self>,
        fut: Fut,
        limit: Option<(Instant, bool)>,
        permit: Option<RawPermit>,
        now: Option<Instant>,
        number: u32,
        hedge: bool,
    ) {
        let mut this = self.project();
        let Some(i) = this.meta.iter().position(|m| m.number == 0) else {
            // Unreachable: at most `MAX_IN_FLIGHT` attempts are started. Never
            // leak the permit.
            if let (Some(b), Some(raw)) = (this.breaker.as_ref(), permit) {
                b.finish_raw(raw, None);
            }
            return;
        };
        let run = match limit {
            None => Run::Running { fut },
            Some((end, at_deadline)) => Run::Timed {
                fut: tokio::time::timeout_at(end, fut),
                at_deadline,
            },
        };
        let mut slot = match i {
            0 => this.s0,
            1 => this.s1,
            2 => this.s2,
            3 => this.s3,
            _ => this.s4,
        };
        slot.set(run);
        if let Some(meta) = this.meta.get_mut(i) {
            *meta = Meta {
                permit,
                started: now,
                number,
                hedge,
            };
        }
        *this.in_flight += 1;
        *this.last_start = now;
        // The next hedge is one delay after this attempt's start: re-arm a
        // running timer (an idle one is armed when first needed).
        if let (Some(delay), Some(now), TimerProj::On { sleep }) =
            (*this.delay, now, this.timer.as_mut().project())
        {
            sleep.reset(now + delay);
        }
    }

    /// Polls the round: the attempts in flight, then the hedges that are due.
    pub(super) fn poll_round<Op, C>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        ctx: &mut Ctx<'_, E, Op, C>,
    ) -> Poll<Landed<T, E>>
    where
        Op: sealed::MakeAttempt<Fut>,
        C: sealed::ClassifyOk<T>,
        E: 'static,
    {
        loop {
            let mut landed = None;
            {
                let this = self.as_mut().project();
                let slots = [this.s0, this.s1, this.s2, this.s3, this.s4];
                for (i, mut slot) in slots.into_iter().enumerate() {
                    let out = match slot.as_mut().project() {
                        RunProj::Empty => continue,
                        RunProj::Running { fut } => match fut.poll(cx) {
                            Poll::Pending => continue,
                            Poll::Ready(Ok(v)) => Ended::Value(v),
                            Poll::Ready(Err(e)) => Ended::Error(e),
                        },
                        RunProj::Timed { fut, at_deadline } => match fut.poll(cx) {
                            Poll::Pending => continue,
                            Poll::Ready(Ok(Ok(v))) => Ended::Value(v),
                            Poll::Ready(Ok(Err(e))) => Ended::Error(e),
                            Poll::Ready(Err(_elapsed)) => Ended::TimedOut {
                                at_deadline: *at_deadline,
                            },
                        },
                    };
                    slot.set(Run::Empty);
                    *this.in_flight -= 1;
                    landed = Some((i, out));
                    break;
                }
            }
            let failed_beside_others = match landed {
                Some((i, out)) => match self.as_mut().land(i, out, ctx) {
                    Some(done) => return Poll::Ready(done),
                    None => true,
                },
                None => false,
            };
            // A failure beside others starts the next hedge before the rest
            // are polled again.
            if !self.as_mut().start_due(cx, ctx) && !failed_beside_others {
                return Poll::Pending;
            }
        }
    }

    /// An attempt ended in slot `i`: the round's end, or `None` when the
    /// others go on.
    fn land<Op, C>(
        mut self: Pin<&mut Self>,
        i: usize,
        out: Ended<T, E>,
        ctx: &mut Ctx<'_, E, Op, C>,
    ) -> Option<Landed<T, E>>
    where
        C: sealed::ClassifyOk<T>,
        E: 'static,
    {
        let this = self.as_mut().project();
        let mut meta = std::mem::take(this.meta.get_mut(i)?);
        if !meta.hedge {
            meta.permit = ctx.first_permit.take();
            meta.started = meta.started.or(*this.first_start);
        }
        let finish = |outcome: Outcome, permit: Option<RawPermit>| {
            if let (Some(b), Some(raw)) = (ctx.breaker, permit) {
                b.finish_raw(raw, Some(outcome));
            }
        };
        let now = ctx.hedge.learns().then(Instant::now);
        if let (Some(now), Some(started), false) = (
            now,
            meta.started,
            matches!(out, Ended::TimedOut { at_deadline: true }),
        ) {
            ctx.hedge
                .record(now.saturating_duration_since(started), now);
        }
        let failure = match out {
            Ended::Value(value) => match ctx.classify_ok.classify_ok(&value) {
                None => {
                    finish(Outcome::Success, meta.permit);
                    if meta.hedge {
                        tracing::debug!(attempt = meta.number, "hedge won");
                        measure::event(&ctx.inner.settings, CallEvent::HedgeWon);
                    }
                    self.abandon(ctx, now);
                    return Some(Landed::Won(value));
                }
                Some(class) => Failure::Value(value, class),
            },
            Ended::Error(error) => Failure::Error(error),
            Ended::TimedOut { at_deadline: true } => {
                // The deadline covers every attempt: the call ends.
                finish(Outcome::Failure, meta.permit);
                self.abandon(ctx, now);
                tracing::debug!(attempts = *ctx.attempts, "deadline passed");
                return Some(Landed::Ended(Err(Error::Timeout {
                    attempts: *ctx.attempts,
                    kind: TimeoutKind::Deadline,
                    reason: None,
                    last_error: ctx.last_error.take(),
                })));
            }
            Ended::TimedOut { at_deadline: false } => Failure::TimedOut,
        };
        let class = match &failure {
            Failure::Error(error) => ctx.inner.classify.classify(error),
            Failure::Value(_, class) => *class,
            Failure::TimedOut => ctx.inner.settings.timeout_class,
        };
        finish(breaker_outcome(class), meta.permit);
        if !class.is_retryable() {
            self.abandon(ctx, now);
            return Some(Landed::Failed(failure, class));
        }
        let this = self.project();
        if *this.in_flight == 0 {
            // Nothing left in flight: the call's retry schedule resumes, not
            // sooner than a server's hint to an attempt of this round.
            *this.rounds += 1;
            let class = match (class, *this.hint) {
                (ErrorClass::RetryAfter(d), Some(hint)) => ErrorClass::RetryAfter(d.max(hint)),
                (_, Some(hint)) => ErrorClass::RetryAfter(hint),
                (class, None) => class,
            };
            return Some(Landed::Failed(failure, class));
        }
        tracing::debug!(
            attempt = meta.number,
            ?class,
            in_flight = *this.in_flight,
            "attempt failed beside others in flight"
        );
        if let Failure::Error(error) = failure {
            *ctx.last_error = Some(error);
        }
        if let ErrorClass::RetryAfter(d) = class {
            // The server asked for quiet: no further hedge in this call.
            *this.stopped = true;
            *this.hint = Some(this.hint.map_or(d, |h| h.max(d)));
        } else if this.delay.is_some() {
            *this.now_due = true;
        }
        None
    }

    /// Starts the hedges that are due: one delay after the latest attempt
    /// started, or at once after a failure, while slots, attempts, the budget
    /// and the breaker allow. Whether it started one.
    fn start_due<Op, C>(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        ctx: &mut Ctx<'_, E, Op, C>,
    ) -> bool
    where
        Op: sealed::MakeAttempt<Fut>,
    {
        let s = &ctx.inner.settings;
        let mut started = false;
        loop {
            let mut this = self.as_mut().project();
            let Some(delay) = *this.delay else {
                return started;
            };
            if *this.stopped
                || usize::from(*this.in_flight) > ctx.hedge.extra() as usize
                || *ctx.attempts > s.max_retries
            {
                return started;
            }
            let due = std::mem::take(this.now_due) || delay.is_zero() || {
                if let TimerProj::Off = this.timer.as_mut().project() {
                    // The round's first attempt did not answer at once: arm
                    // the timer from its start.
                    let since = *this.last_start.get_or_insert_with(Instant::now);
                    this.timer.set(Timer::On {
                        sleep: tokio::time::sleep_until(since + delay),
                    });
                }
                match this.timer.as_mut().project() {
                    TimerProj::On { sleep } => sleep.poll(cx).is_ready(),
                    TimerProj::Off => false,
                }
            };
            if !due {
                return started;
            }
            let now = Instant::now();
            if ctx.deadline.is_some_and(|d| now >= d) {
                return started;
            }
            let Some(permit) = self.as_mut().admit(ctx) else {
                self.as_mut().project().timer.set(Timer::Off);
                return started;
            };
            let this = self.as_mut().project();
            if permit.is_some() && this.breaker.is_none() {
                *this.breaker = ctx.breaker.cloned();
            }
            let since = this
                .last_start
                .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
            *ctx.attempts += 1;
            let number = *ctx.attempts;
            tracing::debug!(attempt = number, delay = ?since, "hedge sent");
            measure::event(s, CallEvent::HedgeSent);
            let time_left = ctx.deadline.map(|d| d.saturating_duration_since(now));
            let fut = ctx.op.make(Attempt { number, time_left });
            let limit = attempt_limit(s, Some(now), ctx.deadline);
            self.as_mut()
                .launch(fut, limit, permit, Some(now), number, true);
            started = true;
        }
    }

    /// Asks whether a hedge may start: the operation can be replayed, the
    /// breaker admits it (not as a probe) and the budget pays for it. `None`
    /// stops the call's hedging; `Some(permit)` otherwise.
    fn admit<Op, C>(self: Pin<&mut Self>, ctx: &mut Ctx<'_, E, Op, C>) -> Option<Option<RawPermit>>
    where
        Op: sealed::MakeAttempt<Fut>,
    {
        let this = self.project();
        *this.stopped = true;
        if !ctx.op.can_retry() {
            tracing::debug!("no hedge: the request could not be cloned for another attempt");
            return None;
        }
        let permit = match ctx.breaker.map(|b| b.try_acquire().map(Permit::into_raw)) {
            None => None,
            Some(Ok(raw)) if raw.is_probe() => {
                tracing::debug!("no hedge: the breaker is half-open");
                if let Some(b) = ctx.breaker {
                    b.finish_raw(raw, None);
                }
                return None;
            }
            Some(Ok(raw)) => Some(raw),
            Some(Err(refused)) => {
                tracing::debug!(retry_in = ?refused.retry_in(), cause = %refused.cause(), "no hedge: the breaker refused it");
                return None;
            }
        };
        if let Some(budget) = budget_of(&ctx.inner.settings, ctx.breaker) {
            if !budget.try_withdraw() {
                tracing::debug!("no hedge: the retry budget is empty");
                if let (Some(b), Some(raw)) = (ctx.breaker, permit) {
                    b.finish_raw(raw, None);
                }
                return None;
            }
        }
        *this.stopped = false;
        Some(permit)
    }

    /// Drops every attempt still in flight: their permits are released
    /// without counting (or count as slow calls past the breaker's
    /// threshold), and a learning hedge records how long each had run.
    fn abandon<Op, C>(self: Pin<&mut Self>, ctx: &mut Ctx<'_, E, Op, C>, now: Option<Instant>) {
        let mut this = self.project();
        if let TimerProj::On { .. } = this.timer.as_mut().project() {
            this.timer.set(Timer::Off);
        }
        if *this.in_flight == 0 {
            return;
        }
        let slots = [this.s0, this.s1, this.s2, this.s3, this.s4];
        for (mut slot, meta) in slots.into_iter().zip(this.meta.iter_mut()) {
            let mut meta = std::mem::take(meta);
            if meta.number == 0 {
                continue;
            }
            slot.set(Run::Empty);
            if !meta.hedge {
                meta.permit = ctx.first_permit.take();
                meta.started = meta.started.or(*this.first_start);
            }
            if let (Some(b), Some(raw)) = (ctx.breaker, meta.permit) {
                b.abandon_raw(raw);
            }
            if let (Some(now), Some(started)) = (now, meta.started) {
                ctx.hedge
                    .record(now.saturating_duration_since(started), now);
            }
        }
        *this.in_flight = 0;
    }
}
