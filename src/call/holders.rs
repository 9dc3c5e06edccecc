//! What a [`Call`](super::Call) holds of its policy and its breaker: a borrow
//! (`SafeCall::call`, `Call::breaker`: no reference count touched per call) or
//! an owned handle, for a call that must outlive the values it came from (the
//! response future of a tower service).

use std::pin::Pin;
use std::sync::Arc;

use super::flight::Flight;
use crate::Hedge;
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

    /// The breaker, and the permit of the attempt in flight (a hedged call's
    /// round's first attempt: its flight records or releases it).
    #[inline(always)]
    pub(crate) fn parts(&mut self) -> (Option<&Breaker>, &mut Option<RawPermit>) {
        (self.hold.breaker(), &mut self.permit)
    }

    /// Record how the attempt in flight ended, if a permit is held.
    #[inline(always)]
    pub(crate) fn record(&mut self, outcome: Outcome) {
        // The holder first: without a breaker (known from the type) there is
        // no permit, and nothing to read or write.
        if let Some(b) = self.hold.breaker() {
            if let Some(raw) = self.permit.take() {
                b.finish_raw(raw, Some(outcome));
            }
        }
    }
}

impl<B: BreakerHold> Drop for BreakerSlot<B> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(b) = self.hold.breaker() {
            if let Some(raw) = self.permit.take() {
                b.finish_raw(raw, None);
            }
        }
    }
}

pub(crate) mod sealed_bulkhead {
    /// How a call holds its bulkhead.
    pub trait Hold {
        fn bulkhead(&self) -> Option<&crate::Bulkhead>;
    }
}

/// How a [`Call`](super::Call) holds its [`Bulkhead`](crate::Bulkhead):
/// [`NoBulkhead`] (the default) or `&Bulkhead` (from
/// [`Call::bulkhead`](super::Call::bulkhead)). Sealed, like [`BreakerHold`]:
/// a call without a bulkhead pays nothing for the option.
pub trait BulkheadHold: sealed_bulkhead::Hold {}

/// A call without a bulkhead.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoBulkhead;

impl sealed_bulkhead::Hold for NoBulkhead {
    #[inline(always)]
    fn bulkhead(&self) -> Option<&crate::Bulkhead> {
        None
    }
}
impl BulkheadHold for NoBulkhead {}

impl sealed_bulkhead::Hold for &crate::Bulkhead {
    #[inline(always)]
    fn bulkhead(&self) -> Option<&crate::Bulkhead> {
        Some(self)
    }
}
impl BulkheadHold for &crate::Bulkhead {}

/// The call's bulkhead holder, its place in the bulkhead's queue and whether
/// it holds its permit. Dropping it leaves the queue and releases the permit:
/// a cancelled call frees its slot at once.
pub(crate) struct BulkheadSlot<H: BulkheadHold> {
    pub(crate) hold: H,
    pub(crate) ticket: Option<u64>,
    pub(crate) holding: bool,
}

impl<H: BulkheadHold> BulkheadSlot<H> {
    pub(crate) const fn new(hold: H) -> Self {
        Self {
            hold,
            ticket: None,
            holding: false,
        }
    }

    /// Whether the call has yet to get its permit.
    #[inline(always)]
    pub(crate) fn pending(&self) -> bool {
        !self.holding && sealed_bulkhead::Hold::bulkhead(&self.hold).is_some()
    }

    /// Take the call's permit now, or join the queue: `Refused` when the
    /// bulkhead is full and does not queue.
    pub(crate) fn acquire(&mut self, waker: &std::task::Waker) -> Acquired {
        let Some(b) = sealed_bulkhead::Hold::bulkhead(&self.hold) else {
            return Acquired::Held;
        };
        if b.take_free() {
            self.holding = true;
            return Acquired::Held;
        }
        let max_wait = b.max_wait();
        if max_wait.is_zero() {
            return Acquired::Refused;
        }
        match b.enqueue(waker) {
            Ok(()) if b.claim_ceiling() => {
                self.holding = true;
                Acquired::Held
            }
            Ok(()) => Acquired::Refused,
            Err(ticket) => {
                self.ticket = Some(ticket);
                Acquired::Queued { max_wait }
            }
        }
    }

    /// While queued: whether the permit has come (then the call holds it),
    /// or came but its bulkhead's ceiling is full.
    pub(crate) fn poll_queued(&mut self, waker: &std::task::Waker) -> Queued {
        let (Some(b), Some(ticket)) = (sealed_bulkhead::Hold::bulkhead(&self.hold), self.ticket)
        else {
            return Queued::Held;
        };
        if !b.poll_ticket(ticket, waker) {
            return Queued::Waiting;
        }
        self.ticket = None;
        if b.claim_ceiling() {
            self.holding = true;
            Queued::Held
        } else {
            Queued::Refused
        }
    }

    /// The wait is over: leave the queue. Whether the permit came at the last
    /// moment (then the call holds it).
    pub(crate) fn leave_queue(&mut self) -> bool {
        if let (Some(b), Some(ticket)) = (sealed_bulkhead::Hold::bulkhead(&self.hold), self.ticket)
        {
            self.ticket = None;
            if b.leave(ticket) && b.claim_ceiling() {
                self.holding = true;
            }
        }
        self.holding
    }
}

/// What [`BulkheadSlot::poll_queued`] found.
pub(crate) enum Queued {
    Waiting,
    Held,
    Refused,
}

/// What [`BulkheadSlot::acquire`] did.
pub(crate) enum Acquired {
    Held,
    Refused,
    Queued { max_wait: std::time::Duration },
}

impl<H: BulkheadHold> BulkheadSlot<H> {
    /// Leave the queue and give back the permit, if held.
    #[inline(always)]
    pub(crate) fn release(&mut self) {
        if let Some(b) = sealed_bulkhead::Hold::bulkhead(&self.hold) {
            if let Some(ticket) = self.ticket.take() {
                b.cancel(ticket);
            }
            if self.holding {
                self.holding = false;
                b.release_permit();
            }
        }
    }
}

impl<H: BulkheadHold> Drop for BulkheadSlot<H> {
    #[inline(always)]
    fn drop(&mut self) {
        self.release();
    }
}

pub(crate) mod sealed_hedge {
    use std::pin::Pin;

    /// How a call holds its hedge, and where its attempts in flight live.
    pub trait Hold {
        /// The attempts in flight: [`NoFlight`] without a hedge.
        type Flight<Fut>;
        fn hedge(&self) -> Option<&crate::Hedge>;
        fn flight<Fut>(flight: Pin<&mut Self::Flight<Fut>>)
        -> Option<Pin<&mut super::Flight<Fut>>>;
        fn new_flight<Fut>() -> Self::Flight<Fut>;
        /// What the retry decision counts: the attempts made when none is
        /// left (it gives up), else the backoff index of the next wait. A
        /// call without a hedge waits once per attempt: the attempts made.
        /// A hedged call counts the rounds that ended in a failure.
        fn wait_index<Fut>(flight: &Self::Flight<Fut>, attempts: u32, max_retries: u32) -> u32;
    }
}

/// How a [`Call`](super::Call) holds its [`Hedge`]: [`NoHedge`] (the
/// default) or `&Hedge` (from [`Call::hedge`](super::Call::hedge)). Sealed,
/// like [`BreakerHold`](super::BreakerHold): a call without a hedge holds no
/// slots and pays nothing for the option.
pub trait HedgeHold: sealed_hedge::Hold {}

/// A call without a hedge.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHedge;

/// The attempts in flight of a call without a hedge: none (its one attempt
/// lives in the call's state).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFlight;

impl sealed_hedge::Hold for NoHedge {
    type Flight<Fut> = NoFlight;

    #[inline(always)]
    fn hedge(&self) -> Option<&Hedge> {
        None
    }

    #[inline(always)]
    fn flight<Fut>(_flight: Pin<&mut NoFlight>) -> Option<Pin<&mut Flight<Fut>>> {
        None
    }

    #[inline(always)]
    fn new_flight<Fut>() -> NoFlight {
        NoFlight
    }

    #[inline(always)]
    fn wait_index<Fut>(_flight: &NoFlight, attempts: u32, _max_retries: u32) -> u32 {
        attempts
    }
}
impl HedgeHold for NoHedge {}

impl sealed_hedge::Hold for &Hedge {
    type Flight<Fut> = Flight<Fut>;

    #[inline(always)]
    fn hedge(&self) -> Option<&Hedge> {
        Some(self)
    }

    #[inline(always)]
    fn flight<Fut>(flight: Pin<&mut Flight<Fut>>) -> Option<Pin<&mut Flight<Fut>>> {
        Some(flight)
    }

    #[inline(always)]
    fn new_flight<Fut>() -> Flight<Fut> {
        Flight::new()
    }

    #[inline(always)]
    fn wait_index<Fut>(flight: &Flight<Fut>, attempts: u32, max_retries: u32) -> u32 {
        if attempts > max_retries {
            attempts
        } else {
            flight.rounds()
        }
    }
}
impl HedgeHold for &Hedge {}
