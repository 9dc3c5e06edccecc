//! The layer's service, its response future, and the operation that hands the
//! [`Call`] one attempt after another.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::{BreakerFor, CloneReq};
use crate::call::Call;
use crate::call::sealed::{ClassifyOk, MakeAttempt};
use crate::{Attempt, Error, ErrorClass, SafeCall};

/// The service of a [`SafeCallLayer`](super::SafeCallLayer): each request runs
/// under the policy, through its key's breaker if the layer has breakers.
///
/// The inner service must be `Clone` (one clone per request, and one per retry)
/// and its error `'static` (the policy's classifier is a `'static` trait object);
/// nothing is asked of its future (neither `Send` nor `'static`).
///
/// `poll_ready` is the inner service's. An error from the inner service's
/// `poll_ready` is returned as [`Error::Permanent`] with `attempts: 0`: tower
/// takes a service whose `poll_ready` failed to be failed for good, so no
/// request is tried.
pub struct SafeCallService<S, E, B, C, R> {
    inner: S,
    policy: SafeCall<E>,
    breakers: B,
    classify: C,
    clone_request: R,
}

impl<S, E, B, C, R> SafeCallService<S, E, B, C, R> {
    pub(super) fn new(
        inner: S,
        policy: SafeCall<E>,
        breakers: B,
        classify: C,
        clone_request: R,
    ) -> Self {
        Self {
            inner,
            policy,
            breakers,
            classify,
            clone_request,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone, E, B: Clone, C: Clone, R: Clone> Clone for SafeCallService<S, E, B, C, R> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            breakers: self.breakers.clone(),
            classify: self.classify.clone(),
            clone_request: self.clone_request.clone(),
        }
    }
}

impl<S: fmt::Debug, E, B: fmt::Debug, C, R> fmt::Debug for SafeCallService<S, E, B, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeCallService")
            .field("inner", &self.inner)
            .field("policy", &self.policy)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<S, Req, B, C, R> Service<Req> for SafeCallService<S, S::Error, B, C, R>
where
    S: Service<Req> + Clone,
    S::Error: 'static,
    B: BreakerFor<Req>,
    C: ClassifyOk<S::Response> + Clone,
    R: CloneReq<Req> + Clone,
{
    type Response = S::Response;
    type Error = Error<S::Error>;
    type Future = ResponseFuture<S, Req, B::Hold, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner
            .poll_ready(cx)
            .map_err(|source| Error::Permanent {
                source,
                attempts: 0,
                class: ErrorClass::Permanent,
            })
    }

    fn call(&mut self, req: Req) -> Self::Future {
        // The service made ready by `poll_ready` serves the first attempt; a
        // clone (not yet ready) takes its place, as in tower's `Retry`.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let hold = self.breakers.breaker_for(&req);
        let inner = self.policy.inner();
        let op = Replay {
            service,
            request: Some(req),
            clone_request: self.clone_request.clone(),
            last: inner.settings.max_retries.saturating_add(1),
        };
        let call = Call::new_owned(std::sync::Arc::clone(inner), op)
            .with_classify_ok(self.classify.clone());
        ResponseFuture {
            call: B::attach(hold, call),
        }
    }
}

/// The operation of the layer's [`Call`]: the first attempt sends the request
/// on the service made ready by `poll_ready`; each later one sends a copy on a
/// fresh clone of the service.
pub(crate) struct Replay<S, Req, R> {
    service: S,
    // The request until the first attempt; then the copy kept for the next
    // attempt, `None` once none can be made.
    request: Option<Req>,
    clone_request: R,
    // The number of the last attempt the policy allows: it needs no copy.
    last: u32,
}

impl<S, Req, R> Replay<S, Req, R>
where
    R: CloneReq<Req>,
{
    /// The request for attempt `number`, keeping a copy if a later attempt may
    /// need one.
    #[inline]
    fn request_for(&mut self, number: u32) -> Option<Req> {
        let kept = self.request.take()?;
        if number >= self.last {
            return Some(kept);
        }
        if number <= 1 {
            // Send the original; keep a copy (or nothing: one attempt only).
            self.request = self.clone_request.clone_request(&kept);
            Some(kept)
        } else {
            // Send a copy; keep the original for the attempt after.
            match self.clone_request.clone_request(&kept) {
                Some(copy) => {
                    self.request = Some(kept);
                    Some(copy)
                }
                None => Some(kept),
            }
        }
    }
}

impl<S, Req, R> MakeAttempt<AttemptFuture<S, Req>> for Replay<S, Req, R>
where
    S: Service<Req> + Clone,
    R: CloneReq<Req>,
{
    #[inline]
    fn make(&mut self, attempt: Attempt) -> AttemptFuture<S, Req> {
        let Some(req) = self.request_for(attempt.number) else {
            // Not reached: the call asks `can_retry` before each retry.
            return AttemptFuture::new(AttemptState::Lost);
        };
        AttemptFuture::new(if attempt.number <= 1 {
            AttemptState::Called {
                fut: self.service.call(req),
            }
        } else {
            AttemptState::Readying {
                service: self.service.clone(),
                request: Some(req),
            }
        })
    }

    #[inline]
    fn can_retry(&self) -> bool {
        self.request.is_some()
    }
}

impl<S, Req, R> fmt::Debug for Replay<S, Req, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Replay")
            .field("replayable", &self.request.is_some())
            .finish_non_exhaustive()
    }
}

pin_project! {
    /// One attempt through the inner service: its response future, or a fresh
    /// clone of the service being made ready before the request is sent.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct AttemptFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: AttemptState<S, Req>,
    }
}

pin_project! {
    #[project = AttemptProj]
    enum AttemptState<S, Req>
    where
        S: Service<Req>,
    {
        // Polls the inner service's response future.
        Called { #[pin] fut: S::Future },
        // Polls a clone of the inner service until it is ready, then calls it.
        Readying { service: S, request: Option<Req> },
        // No request to send; never made (see `Replay::make`).
        Lost,
    }
}

impl<S: Service<Req>, Req> AttemptFuture<S, Req> {
    fn new(state: AttemptState<S, Req>) -> Self {
        Self { state }
    }
}

impl<S: Service<Req>, Req> Future for AttemptFuture<S, Req> {
    type Output = Result<S::Response, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        loop {
            match state.as_mut().project() {
                AttemptProj::Called { fut } => return fut.poll(cx),
                AttemptProj::Readying { service, request } => {
                    ready!(service.poll_ready(cx))?;
                    let Some(req) = request.take() else {
                        state.set(AttemptState::Lost);
                        continue;
                    };
                    let fut = service.call(req);
                    state.set(AttemptState::Called { fut });
                }
                AttemptProj::Lost => {
                    tracing::error!("safecall: an attempt without a request (a bug)");
                    return Poll::Pending;
                }
            }
        }
    }
}

impl<S: Service<Req>, Req> fmt::Debug for AttemptFuture<S, Req> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.state {
            AttemptState::Called { .. } => "AttemptFuture::Called",
            AttemptState::Readying { .. } => "AttemptFuture::Readying",
            AttemptState::Lost => "AttemptFuture::Lost",
        })
    }
}

pin_project! {
    /// The response future of [`SafeCallService`]: the request's whole call under
    /// the policy, attempts and waits included. Allocates nothing.
    ///
    /// It is `Send` when the inner service, its future and the request are.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops the attempt in flight or the wait, and releases a
    /// breaker permit held by the attempt without counting it.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct ResponseFuture<S, Req, H, C, R>
    where
        S: Service<Req>,
        S::Error: 'static,
        H: crate::BreakerHold,
    {
        #[pin]
        call: Call<'static, S::Error, Replay<S, Req, R>, AttemptFuture<S, Req>, C, H>,
    }
}

impl<S, Req, H, C, R> Future for ResponseFuture<S, Req, H, C, R>
where
    S: Service<Req> + Clone,
    S::Error: 'static,
    H: crate::BreakerHold,
    C: ClassifyOk<S::Response>,
    R: CloneReq<Req>,
{
    type Output = Result<S::Response, Error<S::Error>>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().call.poll(cx)
    }
}

impl<S, Req, H, C, R> fmt::Debug for ResponseFuture<S, Req, H, C, R>
where
    S: Service<Req>,
    S::Error: 'static,
    H: crate::BreakerHold,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("call", &self.call)
            .finish()
    }
}
