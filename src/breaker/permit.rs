//! [`Permit`]: the RAII admission of one attempt, and the [`Outcome`] recorded
//! on it.
//!
//! # Examples
//!
//! A dropped permit (here: a probe cancelled by `select!`-style abandonment)
//! frees its slot without counting anything:
//!
//! ```
//! use safecall::{Breaker, BreakerConfig, BreakerState, Outcome};
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(BreakerConfig::default().consecutive_failures(1));
//! breaker.try_acquire().unwrap().record(Outcome::Failure);
//! tokio::time::advance(Duration::from_secs(30)).await;
//!
//! let probe = breaker.try_acquire().expect("probe");
//! assert!(breaker.try_acquire().is_err(), "one probe at a time");
//! drop(probe); // cancelled
//! assert!(breaker.try_acquire().is_ok(), "the slot is free again");
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::Breaker;

/// How an attempt ended, as far as the breaker is concerned.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded (a success slower than the configured
    /// [`slow_call`](crate::BreakerConfig::slow_call) threshold counts as a
    /// failure).
    Success,
    /// It failed in a way that is held against the dependency.
    Failure,
    /// The caller's fault (a 400, an invalid phone number): releases the
    /// permit without counting either way.
    Ignored,
    /// The server asked for quiet for this long: not a failure. With
    /// [`retry_after_cooldown`](crate::BreakerConfig::retry_after_cooldown)
    /// (on by default) the breaker refuses calls until then.
    RetryAfter(Duration),
}

/// What a permit holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Admitted while closed, in this generation.
    Plain { generation: u32 },
    /// A half-open probe holding a slot.
    Probe { generation: u32, ticket: u32 },
    /// Metrics-only: admitted although the breaker would have refused.
    Shadow,
    /// Disabled breaker: nothing is recorded.
    Passthrough,
    /// Already recorded.
    Done,
}

/// A permit without its borrow of the breaker: for a holder that keeps the
/// breaker beside it (a call that owns its breaker handle). Recorded or
/// released through [`Breaker::finish_raw`]; dropping it without that would
/// keep a probe slot until its lease runs out, so its holder releases it on
/// drop.
#[derive(Debug)]
pub(crate) struct RawPermit {
    kind: Kind,
    started: Option<Instant>,
}

impl RawPermit {
    /// Whether this permit holds a half-open probe slot.
    #[inline]
    pub(crate) fn is_probe(&self) -> bool {
        matches!(self.kind, Kind::Probe { .. })
    }
}

impl Breaker {
    /// Release a raw permit whose attempt was abandoned (a hedged call's
    /// loser): without counting, unless the attempt had already run for the
    /// breaker's slow-call threshold; then it counts as a slow call (a
    /// failure), so an endpoint that hangs still trips the breaker.
    pub(crate) fn abandon_raw(&self, raw: RawPermit) {
        let slow = match (self.core().settings.slow_call, raw.started) {
            (Some(limit), Some(t0)) => Instant::now().saturating_duration_since(t0) >= limit,
            _ => false,
        };
        self.finish_raw(raw, slow.then_some(Outcome::Failure));
    }

    /// Record `outcome` on a raw permit of this breaker, or release it
    /// (`None`: dropped without a record).
    #[inline(always)]
    pub(crate) fn finish_raw(&self, raw: RawPermit, outcome: Option<Outcome>) {
        if let (Some(Outcome::Success), Kind::Plain { generation }, None) =
            (outcome, raw.kind, raw.started)
        {
            self.record_success(Some(generation));
            return;
        }
        if outcome.is_none() && !matches!(raw.kind, Kind::Probe { .. }) {
            return;
        }
        self.finish(raw.kind, raw.started, outcome);
    }
}

/// Permission to run one attempt, from [`Breaker::try_acquire`].
///
/// Record how the attempt ended with [`record`](Self::record). Dropping the
/// permit without recording (the attempt was cancelled, lost a `select!`, or
/// panicked) releases it — and its half-open probe slot, if it holds one —
/// without counting anything.
///
/// It borrows the breaker (no reference-count traffic per call) and is `Send`,
/// so it can be held across an `.await` in a spawned task.
#[must_use = "dropping a permit releases it without recording the attempt's outcome"]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    kind: Kind,
    started: Option<Instant>,
}

impl<'a> Permit<'a> {
    pub(crate) fn new(breaker: &'a Breaker, kind: Kind, started: Option<Instant>) -> Self {
        Self {
            breaker,
            kind,
            started,
        }
    }

    /// Record how the attempt ended, consuming the permit.
    #[inline]
    pub fn record(mut self, outcome: Outcome) {
        let kind = std::mem::replace(&mut self.kind, Kind::Done);
        // The hot path: a success admitted while closed, with no slow-call
        // threshold to check.
        if let (Outcome::Success, Kind::Plain { generation }, None) = (outcome, &kind, self.started)
        {
            self.breaker.record_success(Some(*generation));
            return;
        }
        self.breaker.finish(kind, self.started, Some(outcome));
    }

    /// The permit without its borrow: the holder records or releases it
    /// through [`Breaker::finish_raw`].
    #[inline]
    pub(crate) fn into_raw(mut self) -> RawPermit {
        RawPermit {
            kind: std::mem::replace(&mut self.kind, Kind::Done),
            started: self.started,
        }
    }

    /// Whether this permit holds a half-open probe slot (its outcome decides
    /// whether the breaker closes).
    #[must_use]
    pub fn is_probe(&self) -> bool {
        matches!(self.kind, Kind::Probe { .. })
    }

    /// The breaker this permit was taken from.
    #[must_use]
    pub fn breaker(&self) -> &'a Breaker {
        self.breaker
    }
}

impl Drop for Permit<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Kind::Probe { .. } = self.kind {
            let kind = std::mem::replace(&mut self.kind, Kind::Done);
            self.breaker.finish(kind, self.started, None);
        }
    }
}

impl fmt::Debug for Permit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("breaker", self.breaker)
            .field("kind", &self.kind)
            .finish()
    }
}
