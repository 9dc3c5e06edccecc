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
/// jitter's random source. Kept out of the generic poll to limit
/// monomorphisation. The budget is asked last, by the caller, so that a retry that
/// will not happen for another reason never spends it. `attempts` is the
/// attempts made, or for a hedged call with attempts left the waits so far
/// (the backoff counts waits, not hedges; see `HedgeHold`'s `wait_index`).
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
    // No random draw when nothing is jittered (skipping it is only a saving).
    let random = if s.backoff.get_jitter() == Jitter::None || s.backoff.is_zero() {
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
