//! What a [`Call`](super::Call) holds of its policy and its breaker: a borrow
//! (`SafeCall::call`, `Call::breaker`: no reference count touched per call) or
//! an owned handle, for a call that must outlive the values it came from (the
//! response future of a tower service).

use std::sync::Arc;

use crate::breaker::{Breaker, Outcome, RawPermit};
use crate::policy::Inner;

/// The call's policy: borrowed or owned.
pub(crate) enum PolicyRef<'a, E> {
    Borrowed(&'a Inner<E>),
    #[cfg_attr(not(feature = "tower"), allow(dead_code))] // the tower layer's
    Owned(Arc<Inner<E>>),
}

impl<E> PolicyRef<'_, E> {
    #[inline(always)]
    pub(crate) fn get(&self) -> &Inner<E> {
        match self {
            PolicyRef::Borrowed(inner) => inner,
            PolicyRef::Owned(inner) => inner,
        }
    }
}

pub(crate) mod sealed {
    /// How a call holds its breaker.
    pub trait Hold {
        fn breaker(&self) -> Option<&crate::Breaker>;
    }
}

/// How a [`Call`](super::Call) holds its circuit breaker: [`NoBreaker`] (the
/// default), `&Breaker` (from [`Call::breaker`](super::Call::breaker)), or an
/// owned [`Breaker`]. Sealed: the call's type says at compile time whether a
/// breaker is asked, so a call without one pays nothing for the option.
pub trait BreakerHold: sealed::Hold {}

/// A call without a circuit breaker.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBreaker;

impl sealed::Hold for NoBreaker {
    #[inline(always)]
    fn breaker(&self) -> Option<&Breaker> {
        None
    }
}
impl BreakerHold for NoBreaker {}

impl sealed::Hold for &Breaker {
    #[inline(always)]
    fn breaker(&self) -> Option<&Breaker> {
        Some(self)
    }
}
impl BreakerHold for &Breaker {}

impl sealed::Hold for Breaker {
    #[inline(always)]
    fn breaker(&self) -> Option<&Breaker> {
        Some(self)
    }
}
impl BreakerHold for Breaker {}

/// The call's breaker holder and the permit of the attempt in flight.
/// Dropping it releases a held permit (a cancelled probe frees its slot at
/// once), as dropping a [`Permit`](crate::Permit) does.
pub(crate) struct BreakerSlot<B: BreakerHold> {
    pub(crate) hold: B,
    permit: Option<RawPermit>,
}

impl<B: BreakerHold> BreakerSlot<B> {
    pub(crate) const fn new(hold: B) -> Self {
        Self { hold, permit: None }
    }

    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&Breaker> {
        self.hold.breaker()
    }

    /// Hold the permit of the attempt in flight.
    #[inline(always)]
    pub(crate) fn hold(&mut self, raw: RawPermit) {
        self.permit = Some(raw);
    }

    /// Record how the attempt in flight ended, if a permit is held.
    #[inline(always)]
    pub(crate) fn record(&mut self, outcome: Outcome) {
        if let Some(raw) = self.permit.take() {
            if let Some(b) = self.hold.breaker() {
                b.finish_raw(raw, Some(outcome));
            }
        }
    }
}

impl<B: BreakerHold> Drop for BreakerSlot<B> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(raw) = self.permit.take() {
            if let Some(b) = self.hold.breaker() {
                b.finish_raw(raw, None);
            }
        }
    }
}
