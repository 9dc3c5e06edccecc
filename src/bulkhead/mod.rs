//! Bulkheads: a concurrency limit, so that one tenant flooding a slow but
//! healthy dependency cannot take every connection from the others.
//!
//! # Why a bulkhead, beside a breaker?
//!
//! A breaker stops calls to a dependency that is *failing*. It does nothing when
//! the dependency is merely slow and one tenant sends it 500 concurrent
//! requests: every call succeeds, eventually, while the other tenants queue
//! behind that one. A bulkhead caps the calls in flight (per tenant, with one
//! per key from a registry) and refuses or briefly queues the rest.
//!
//! A [`Call::bulkhead`](crate::Call::bulkhead) takes one permit before its first
//! attempt and holds it across retries and waits; it is released when the call
//! ends or is dropped. A full bulkhead ends the call with
//! [`Error::BulkheadFull`](crate::Error::BulkheadFull): a limit of this client's
//! own, never retried and never held against a breaker.
//!
//! With [`max_wait`](BulkheadConfig::max_wait) zero (the default) a full
//! bulkhead refuses at once: acquiring is one compare-and-swap, no lock and no
//! allocation. With a wait, callers queue fairly (first in, first out) on
//! tokio's clock.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Bulkhead, BulkheadConfig, Error, SafeCall};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let bulkhead = Bulkhead::new(BulkheadConfig::max_concurrent(1));
//! let policy: SafeCall<std::io::Error> = SafeCall::default();
//!
//! let held = bulkhead.try_acquire().expect("a free slot");
//! let refused = policy
//!     .call(|| async { Ok::<_, std::io::Error>(1) })
//!     .bulkhead(&bulkhead)
//!     .await;
//! assert!(matches!(refused, Err(Error::BulkheadFull { attempts: 0, .. })));
//! drop(held);
//! let ok = policy
//!     .call(|| async { Ok::<_, std::io::Error>(1) })
//!     .bulkhead(&bulkhead)
//!     .await;
//! assert_eq!(ok.unwrap(), 1);
//! # }
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

use crate::ConfigError;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};

mod registry;

pub use registry::{BulkheadRegistry, BulkheadSnapshot};

/// Bit 32 of the state word: callers are queued, so a release hands its
/// permit to the queue instead of freeing it (first in, first out).
const QUEUED: u64 = 1 << 32;
const IN_USE: u64 = QUEUED - 1;

/// The configuration of a [`Bulkhead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadConfig {
    max_concurrent: u32,
    max_wait: Duration,
}

impl BulkheadConfig {
    /// At most `n` calls at once. Zero is refused with a [`ConfigError`] when
    /// the bulkhead is built.
    #[must_use]
    pub fn max_concurrent(n: u32) -> Self {
        Self {
            max_concurrent: n,
            max_wait: Duration::ZERO,
        }
    }

    /// How long a call may queue for a permit when the bulkhead is full
    /// (default zero: refuse at once). Waiters are served first in, first out,
    /// and the wait counts against the call's deadline.
    #[must_use]
    pub fn max_wait(mut self, d: Duration) -> Self {
        self.max_wait = d;
        self
    }

    fn validate(self) -> Result<Self, ConfigError> {
        if self.max_concurrent == 0 {
            return Err(ConfigError::new(
                "bulkhead.max_concurrent",
                "must be at least 1, got 0",
            ));
        }
        Ok(self)
    }
}

/// A concurrency limit: at most `max_concurrent` permits out at once.
///
/// A cheap handle (`Clone`, an `Arc` inside). See the [module docs](self).
#[derive(Clone)]
pub struct Bulkhead(Arc<Shared>);

struct Shared {
    limit: u32,
    max_wait: Duration,
    /// `QUEUED` flag | permits out.
    state: AtomicU64,
    queue: Mutex<Queue>,
    /// A ceiling shared with other bulkheads (a registry's global limit),
    /// taken after this bulkhead's own permit.
    ceiling: Option<Bulkhead>,
}

#[derive(Default)]
struct Queue {
    waiters: VecDeque<Waiter>,
    next_ticket: u64,
}

struct Waiter {
    ticket: u64,
    waker: Waker,
    /// A released permit was handed to this waiter; it owns it from now on.
    granted: bool,
}

impl fmt::Debug for Bulkhead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bulkhead")
            .field("max_concurrent", &self.0.limit)
            .field("max_wait", &self.0.max_wait)
            .field("in_use", &self.in_use())
            .finish_non_exhaustive()
    }
}

impl Bulkhead {
    /// A bulkhead with `config`.
    ///
    /// # Panics
    ///
    /// If [`try_new`](Self::try_new) refuses `config` (`max_concurrent(0)`).
    #[must_use]
    pub fn new(config: BulkheadConfig) -> Self {
        match Self::try_new(config) {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        }
    }

    /// A bulkhead with `config`.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `bulkhead.max_concurrent` if it is zero.
    pub fn try_new(config: BulkheadConfig) -> Result<Self, ConfigError> {
        Self::with_ceiling(config, None)
    }

    /// A bulkhead whose calls also take a permit of `ceiling` (after their
    /// own; the ceiling does not queue).
    pub(crate) fn with_ceiling(
        config: BulkheadConfig,
        ceiling: Option<Bulkhead>,
    ) -> Result<Self, ConfigError> {
        let config = config.validate()?;
        Ok(Self(Arc::new(Shared {
            limit: config.max_concurrent,
            max_wait: config.max_wait,
            state: AtomicU64::new(0),
            queue: Mutex::new(Queue::default()),
            ceiling,
        })))
    }

    /// The limit, `max_concurrent`.
    #[must_use]
    pub fn limit(&self) -> u32 {
        self.0.limit
    }

    /// How long a call may queue for a permit.
    #[must_use]
    pub fn max_wait(&self) -> Duration {
        self.0.max_wait
    }

    /// Permits out now (calls in flight, and permits handed to queued callers
    /// that have not taken them yet).
    #[must_use]
    pub fn in_use(&self) -> u32 {
        (self.0.state.load(Ordering::Acquire) & IN_USE) as u32
    }

    /// Callers queued for a permit now.
    #[must_use]
    pub fn queued(&self) -> u32 {
        if self.0.state.load(Ordering::Acquire) & QUEUED == 0 {
            return 0;
        }
        let q = lock(&self.0.queue);
        q.waiters.iter().filter(|w| !w.granted).count() as u32
    }

    /// Whether every permit is out.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.in_use() >= self.0.limit
    }

    /// Whether `self` and `other` are handles to the same bulkhead.
    #[must_use]
    pub fn ptr_eq(&self, other: &Bulkhead) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// A permit now, if one is free and nobody is queued before this caller:
    /// one compare-and-swap, no lock, no allocation.
    #[must_use]
    pub fn try_acquire(&self) -> Option<BulkheadPermit<'_>> {
        self.take_free().then(|| BulkheadPermit { bulkhead: self })
    }

    /// A permit, queuing for up to [`max_wait`](BulkheadConfig::max_wait)
    /// (first in, first out) when none is free.
    ///
    /// # Errors
    ///
    /// [`Full`] with how long it waited, when no permit came in time.
    ///
    /// # Cancellation
    ///
    /// Dropping the future leaves the queue; a permit handed to it meanwhile
    /// goes to the next caller.
    pub fn acquire(&self) -> Acquire<'_> {
        Acquire {
            bulkhead: self,
            ticket: None,
            started: None,
            sleep: None,
        }
    }

    /// A permit now, this bulkhead's and its ceiling's.
    #[inline]
    pub(crate) fn take_free(&self) -> bool {
        self.take_own() && self.claim_ceiling()
    }

    /// The ceiling's permit, once this bulkhead's own is taken; without it,
    /// the own permit goes back.
    #[inline]
    pub(crate) fn claim_ceiling(&self) -> bool {
        match &self.0.ceiling {
            None => true,
            Some(c) if c.take_own() => true,
            Some(_) => {
                self.release_own();
                false
            }
        }
    }

    #[inline]
    fn take_own(&self) -> bool {
        let state = &self.0.state;
        let mut s = state.load(Ordering::Relaxed);
        loop {
            if s & QUEUED != 0 || (s & IN_USE) >= u64::from(self.0.limit) {
                return false;
            }
            match state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(seen) => s = seen,
            }
        }
    }

    /// Give back a permit taken by a call (which holds it without a
    /// [`BulkheadPermit`]).
    pub(crate) fn release_permit(&self) {
        self.release();
    }

    /// Give a permit back, this bulkhead's and its ceiling's.
    fn release(&self) {
        self.release_own();
        if let Some(c) = &self.0.ceiling {
            c.release_own();
        }
    }

    /// Give this bulkhead's own permit back: to the first queued caller that
    /// has none yet, or free it.
    fn release_own(&self) {
        let state = &self.0.state;
        let mut s = state.load(Ordering::Relaxed);
        while s & QUEUED == 0 {
            match state.compare_exchange_weak(s, s - 1, Ordering::Release, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => s = seen,
            }
        }
        let mut q = lock(&self.0.queue);
        self.release_locked(&mut q);
    }

    /// [`release`](Self::release) with the queue's lock held.
    fn release_locked(&self, q: &mut Queue) {
        if let Some(w) = q.waiters.iter_mut().find(|w| !w.granted) {
            w.granted = true;
            w.waker.wake_by_ref();
            return;
        }
        self.0.state.fetch_sub(1, Ordering::Release);
        if q.waiters.is_empty() {
            self.0.state.fetch_and(!QUEUED, Ordering::Release);
        }
    }

    /// Join the queue (or take a permit, if one is free and nobody waits):
    /// `Ok(())` for a permit, `Err(ticket)` for a place in the queue.
    pub(crate) fn enqueue(&self, waker: &Waker) -> Result<(), u64> {
        let mut q = lock(&self.0.queue);
        let s = self.0.state.fetch_or(QUEUED, Ordering::AcqRel);
        if q.waiters.is_empty() && (s & IN_USE) < u64::from(self.0.limit) {
            self.0.state.fetch_add(1, Ordering::Acquire);
            self.0.state.fetch_and(!QUEUED, Ordering::Release);
            return Ok(());
        }
        let ticket = q.next_ticket;
        q.next_ticket = q.next_ticket.wrapping_add(1);
        q.waiters.push_back(Waiter {
            ticket,
            waker: waker.clone(),
            granted: false,
        });
        Err(ticket)
    }

    /// Whether the queued `ticket` has been handed a permit (then it leaves
    /// the queue owning it); otherwise its waker is refreshed.
    pub(crate) fn poll_ticket(&self, ticket: u64, waker: &Waker) -> bool {
        let mut q = lock(&self.0.queue);
        let Some(pos) = q.waiters.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        let granted = q.waiters.get(pos).is_some_and(|w| w.granted);
        if granted {
            q.waiters.remove(pos);
            if q.waiters.is_empty() {
                self.0.state.fetch_and(!QUEUED, Ordering::Release);
            }
            return true;
        }
        if let Some(w) = q.waiters.get_mut(pos) {
            if !w.waker.will_wake(waker) {
                w.waker = waker.clone();
            }
        }
        false
    }

    /// Leave the queue (a timeout, a cancelled caller). Returns whether a
    /// permit had been handed to `ticket` meanwhile: the caller then owns it.
    pub(crate) fn leave(&self, ticket: u64) -> bool {
        let mut q = lock(&self.0.queue);
        let Some(pos) = q.waiters.iter().position(|w| w.ticket == ticket) else {
            return false;
        };
        let granted = q.waiters.remove(pos).is_some_and(|w| w.granted);
        if q.waiters.is_empty() {
            self.0.state.fetch_and(!QUEUED, Ordering::Release);
        }
        granted
    }

    /// Leave the queue, giving back a permit handed to `ticket` meanwhile
    /// (its own: the ceiling's is taken only once the caller has the permit).
    pub(crate) fn cancel(&self, ticket: u64) {
        if self.leave(ticket) {
            self.release_own();
        }
    }
}

/// One permit of a [`Bulkhead`]: released when dropped.
#[must_use = "dropping the permit releases it at once"]
pub struct BulkheadPermit<'a> {
    bulkhead: &'a Bulkhead,
}

impl BulkheadPermit<'_> {
    /// The bulkhead this permit came from.
    #[must_use]
    pub fn bulkhead(&self) -> &Bulkhead {
        self.bulkhead
    }
}

impl fmt::Debug for BulkheadPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BulkheadPermit").finish_non_exhaustive()
    }
}

impl Drop for BulkheadPermit<'_> {
    fn drop(&mut self) {
        self.bulkhead.release();
    }
}

/// No permit came within [`max_wait`](BulkheadConfig::max_wait).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bulkhead full (waited {waited:?})")]
pub struct Full {
    /// How long the caller queued.
    pub waited: Duration,
}

pin_project! {
    /// The future of [`Bulkhead::acquire`].
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Acquire<'a> {
        bulkhead: &'a Bulkhead,
        ticket: Option<u64>,
        started: Option<Instant>,
        #[pin]
        sleep: Option<Sleep>,
    }

    impl PinnedDrop for Acquire<'_> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(ticket) = this.ticket.take() {
                this.bulkhead.cancel(ticket);
            }
        }
    }
}

impl fmt::Debug for Acquire<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acquire")
            .field("queued", &self.ticket.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Future for Acquire<'a> {
    type Output = Result<BulkheadPermit<'a>, Full>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let bulkhead: &'a Bulkhead = this.bulkhead;
        let permit = || BulkheadPermit { bulkhead };
        let ticket = match *this.ticket {
            Some(t) => t,
            None => {
                if bulkhead.take_free() {
                    return Poll::Ready(Ok(permit()));
                }
                let max_wait = bulkhead.max_wait();
                if max_wait.is_zero() {
                    return Poll::Ready(Err(Full {
                        waited: Duration::ZERO,
                    }));
                }
                match bulkhead.enqueue(cx.waker()) {
                    Ok(()) if bulkhead.claim_ceiling() => return Poll::Ready(Ok(permit())),
                    Ok(()) => {
                        return Poll::Ready(Err(Full {
                            waited: Duration::ZERO,
                        }));
                    }
                    Err(t) => {
                        let now = Instant::now();
                        *this.ticket = Some(t);
                        *this.started = Some(now);
                        let sleep = match now.checked_add(max_wait) {
                            Some(end) => tokio::time::sleep_until(end),
                            None => tokio::time::sleep(max_wait),
                        };
                        this.sleep.set(Some(sleep));
                        t
                    }
                }
            }
        };
        if bulkhead.poll_ticket(ticket, cx.waker()) {
            *this.ticket = None;
            if bulkhead.claim_ceiling() {
                return Poll::Ready(Ok(permit()));
            }
            let waited = this.started.map_or(Duration::ZERO, |t| {
                Instant::now().saturating_duration_since(t)
            });
            return Poll::Ready(Err(Full { waited }));
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            if sleep.poll(cx).is_ready() {
                *this.ticket = None;
                if bulkhead.leave(ticket) && bulkhead.claim_ceiling() {
                    return Poll::Ready(Ok(permit()));
                }
                let waited = this.started.map_or(Duration::ZERO, |t| {
                    Instant::now().saturating_duration_since(t)
                });
                return Poll::Ready(Err(Full { waited }));
            }
        }
        Poll::Pending
    }
}

#[cfg(all(test, not(safecall_loom)))]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_is_refused_naming_the_field() {
        let e = Bulkhead::try_new(BulkheadConfig::max_concurrent(0)).unwrap_err();
        assert_eq!(e.field(), "bulkhead.max_concurrent");
    }

    #[test]
    fn try_acquire_stops_at_the_limit_and_drop_releases() {
        let b = Bulkhead::new(BulkheadConfig::max_concurrent(2));
        let p1 = b.try_acquire().unwrap();
        let p2 = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_none());
        assert_eq!(b.in_use(), 2);
        drop(p1);
        assert_eq!(b.in_use(), 1);
        let _p3 = b.try_acquire().unwrap();
        drop(p2);
        assert_eq!(b.in_use(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_first_in_first_out() {
        let b = Bulkhead::new(BulkheadConfig::max_concurrent(1).max_wait(100 * MS));
        let held = b.try_acquire().unwrap();
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let p = b.acquire().await.unwrap();
                order.lock().unwrap().push(i);
                tokio::time::sleep(MS).await;
                drop(p);
            }));
            // Let each task join the queue before the next one.
            tokio::task::yield_now().await;
        }
        assert_eq!(b.queued(), 3);
        assert!(b.try_acquire().is_none(), "no barging past the queue");
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), [0, 1, 2]);
        assert_eq!((b.in_use(), b.queued()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn max_wait_expires_exactly() {
        let b = Bulkhead::new(BulkheadConfig::max_concurrent(1).max_wait(100 * MS));
        let _held = b.try_acquire().unwrap();
        let t0 = Instant::now();
        let err = b.acquire().await.unwrap_err();
        assert_eq!(err.waited, 100 * MS);
        assert_eq!(t0.elapsed(), 100 * MS);
        assert_eq!((b.in_use(), b.queued()), (1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_waiter_passes_its_permit_on() {
        let b = Bulkhead::new(BulkheadConfig::max_concurrent(1).max_wait(Duration::from_secs(1)));
        let held = b.try_acquire().unwrap();
        let mut first = Box::pin(b.acquire());
        assert!(futures::poll!(first.as_mut()).is_pending());
        let second = tokio::spawn({
            let b = b.clone();
            async move { b.acquire().await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        drop(held); // handed to `first`, which is then dropped unpolled
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!((b.in_use(), b.queued()), (0, 0));
    }
}
