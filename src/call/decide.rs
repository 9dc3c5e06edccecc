//! The retry decision of a call: what a failed attempt leads to (another
//! attempt after a delay, or the end of the call), the budget it spends, and
//! the time limit of the next attempt. Pure but for the clock and the jitter's
//! random source; kept out of the generic poll to limit monomorphisation.

use std::time::Duration;

use tokio::time::Instant;

use crate::breaker::{Breaker, Outcome, RefusalCause};
use crate::budget::BudgetState;
use crate::policy::Settings;
use crate::{ErrorClass, ExhaustedReason, Jitter};

/// How an attempt's failure counts for the breaker.
pub(super) fn breaker_outcome(class: ErrorClass) -> Outcome {
    match class {
        ErrorClass::Transient | ErrorClass::Permanent => Outcome::Failure,
        ErrorClass::CallerFault => Outcome::Ignored,
        ErrorClass::RetryAfter(hint) => Outcome::RetryAfter(hint),
    }
}

/// What happens after a retryable failure.
pub(super) enum Next {
    Retry {
        delay: Duration,
        now: Option<Instant>,
    },
    GiveUp(ExhaustedReason),
}

/// The retry decision: pure but for the clock (read only with a deadline) and the
/// jitter's random source. The budget is asked last, by the caller, so that a
/// retry that will not happen for another reason never spends it. `attempts` is
/// the attempts made, or for a hedged call with attempts left the waits so far
/// (the backoff counts waits, not hedges; see `HedgeHold`'s `wait_index`).
///
/// Inline only for the decisions that need no schedule: retries used up, and
/// a zero delay with neither a hint nor a deadline to weigh (what
/// [`decide_slow`] would return for them, without its call). The rest is kept
/// out of the generic poll to limit monomorphisation.
#[inline]
pub(super) fn decide(
    s: &Settings,
    class: ErrorClass,
    attempts: u32,
    previous: &mut Duration,
    deadline: Option<Instant>,
) -> Next {
    if attempts > s.max_retries {
        return Next::GiveUp(ExhaustedReason::RetriesUsedUp);
    }
    if s.zero_delay && deadline.is_none() && !matches!(class, ErrorClass::RetryAfter(_)) {
        *previous = Duration::ZERO;
        return Next::Retry {
            delay: Duration::ZERO,
            now: None,
        };
    }
    decide_slow(s, class, attempts, previous, deadline)
}

/// [`decide`] for a call with retries left whose delay needs the schedule, a
/// hint or the deadline.
#[inline(never)]
fn decide_slow(
    s: &Settings,
    class: ErrorClass,
    attempts: u32,
    previous: &mut Duration,
    deadline: Option<Instant>,
) -> Next {
    let mut delay = if s.zero_delay {
        Duration::ZERO
    } else {
        // No random draw when nothing is jittered (skipping it is only a saving).
        let random = if s.backoff.get_jitter() == Jitter::None {
            0
        } else {
            s.random()
        };
        s.backoff.delay(attempts, *previous, random)
    };
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
    *previous = delay;
    Next::Retry { delay, now }
}

/// The budget a call spends: its breaker's own, else the policy's.
#[inline]
pub(super) fn budget_of<'a>(
    s: &'a Settings,
    breaker: Option<&'a Breaker>,
) -> Option<&'a BudgetState> {
    breaker
        .and_then(Breaker::retry_budget)
        .or(s.budget.as_ref())
}

/// Spends one retry from the call's budget, if it has one.
#[inline]
pub(super) fn withdraw(s: &Settings, breaker: Option<&Breaker>) -> bool {
    budget_of(s, breaker).is_none_or(BudgetState::try_withdraw)
}

/// If `breaker` is open and will still refuse after `delay`, the time until it
/// lets a probe through and why: waiting for it would sleep into a certain
/// refusal.
#[inline]
pub(super) fn refused_after(
    breaker: Option<&Breaker>,
    delay: Duration,
) -> Option<(Duration, RefusalCause)> {
    breaker
        .and_then(|b| b.core().open_refusal())
        .filter(|(retry_in, _)| *retry_in > delay)
}

/// The time limit of the next attempt, if any: `(end, whether it is the deadline)`.
#[inline]
pub(super) fn attempt_limit(
    s: &Settings,
    now: Option<Instant>,
    deadline: Option<Instant>,
) -> Option<(Instant, bool)> {
    if !s.timed {
        // Neither an attempt timeout nor a deadline (the call's deadline
        // comes from the policy's).
        return None;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backoff, SafeCall};

    /// The inline decision agrees with the full one wherever it answers:
    /// every class, with and without a deadline, retries left or not.
    #[tokio::test(start_paused = true)]
    async fn the_zero_delay_shortcut_decides_as_the_full_decision_does() {
        let policy: SafeCall<()> = SafeCall::builder()
            .max_retries(2)
            .backoff(Backoff::constant(Duration::ZERO))
            .max_retry_after(Duration::from_secs(1))
            .seed(7)
            .build()
            .unwrap();
        let s = &policy.inner().settings;
        assert!(s.zero_delay);
        let classes = [
            ErrorClass::Transient,
            ErrorClass::Permanent,
            ErrorClass::CallerFault,
            ErrorClass::RetryAfter(Duration::from_millis(300)),
            ErrorClass::RetryAfter(Duration::from_secs(2)),
        ];
        let now = Instant::now();
        let deadlines = [None, Some(now + Duration::from_millis(500)), Some(now)];
        let mut compared = 0;
        for class in classes {
            for deadline in deadlines {
                for attempts in 1..=3 {
                    let (mut fast_prev, mut slow_prev) =
                        (Duration::from_secs(9), Duration::from_secs(9));
                    let fast = decide(s, class, attempts, &mut fast_prev, deadline);
                    let slow = if attempts > s.max_retries {
                        Next::GiveUp(ExhaustedReason::RetriesUsedUp)
                    } else {
                        decide_slow(s, class, attempts, &mut slow_prev, deadline)
                    };
                    let same = match (fast, slow) {
                        (Next::Retry { delay: a, now: m }, Next::Retry { delay: b, now: n }) => {
                            a == b && m == n
                        }
                        (Next::GiveUp(a), Next::GiveUp(b)) => a == b,
                        _ => false,
                    };
                    assert!(same, "{class:?} {deadline:?} {attempts}");
                    assert_eq!(fast_prev, slow_prev, "{class:?} {deadline:?} {attempts}");
                    compared += 1;
                }
            }
        }
        assert_eq!(compared, 45);
    }
}
