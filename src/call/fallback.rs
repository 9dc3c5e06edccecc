//! [`Fallback`]: a call that serves a stand-in value when the dependency was
//! unavailable.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::measure::FallbackCount;
use crate::Error;

pin_project! {
    /// A [`Call`](super::Call) with a fallback, from
    /// [`Call::fallback`](super::Call::fallback): resolves to the call's
    /// value, or to the fallback's when the dependency was unavailable.
    ///
    /// # Cancellation
    ///
    /// Dropping it drops the call (see [`Call`](super::Call)); the fallback
    /// is never run.
    #[must_use = "futures do nothing unless you `.await` or poll them"]
    pub struct Fallback<Fut, F> {
        #[pin]
        call: Fut,
        fallback: Option<F>,
        // Counts the fallbacks served (nothing without the `metrics` feature).
        served: FallbackCount,
    }
}

impl<Fut, F> Fallback<Fut, F> {
    pub(super) fn new(call: Fut, fallback: F, served: FallbackCount) -> Self {
        Self {
            call,
            fallback: Some(fallback),
            served,
        }
    }
}

impl<Fut: std::fmt::Debug, F> std::fmt::Debug for Fallback<Fut, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fallback")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

/// Whether `e` says the dependency was unavailable (a fallback may serve),
/// rather than that the request was wrong (it must not be papered over).
fn unavailable<E>(e: &Error<E>) -> bool {
    match e {
        Error::CircuitOpen { .. }
        | Error::Exhausted { .. }
        | Error::Timeout { .. }
        | Error::BulkheadFull { .. } => true,
        Error::Permanent { .. } => false,
    }
}

impl<Fut, F, T, E> Future for Fallback<Fut, F>
where
    Fut: Future<Output = Result<T, Error<E>>>,
    F: FnOnce(&Error<E>) -> Option<T>,
{
    type Output = Result<T, Error<E>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error = match ready!(this.call.poll(cx)) {
            Ok(value) => return Poll::Ready(Ok(value)),
            Err(error) => error,
        };
        if !unavailable(&error) {
            return Poll::Ready(Err(error));
        }
        let Some(fallback) = this.fallback.take() else {
            return Poll::Ready(Err(error));
        };
        match fallback(&error) {
            Some(value) => {
                tracing::info!(
                    target: "safecall",
                    attempts = error.attempts(),
                    error = %error,
                    "a fallback served the call"
                );
                this.served.count();
                Poll::Ready(Ok(value))
            }
            None => Poll::Ready(Err(error)),
        }
    }
}
