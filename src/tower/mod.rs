//! A tower [`Layer`]: every request of a service runs under a [`SafeCall`] policy,
//! optionally through a circuit breaker per key (per tenant).
//!
//! tower stacks (tonic's `Channel`, hyper-util's client, tower-http, a
//! `reqwest::Client`) take their resilience as layers. [`SafeCallLayer`] is the
//! policy as one: retries with backoff and jitter, the classification of errors
//! *and* of responses (an HTTP 503 is an `Ok(response)` to a tower service),
//! deadlines, attempt timeouts, the retry budget, and a breaker per tenant from a
//! [`BreakerRegistry`], all as [`SafeCall::call`] runs them: the layer's response
//! future drives a [`Call`](crate::Call), so a request through the layer and a call
//! through the policy follow the same rules.
//!
//! - **Attempts.** Each attempt needs its own request and its own service. The
//!   request is cloned before it is sent, if a later attempt may need it (by
//!   [`Clone`] by default, or by [`clone_request`](SafeCallLayer::clone_request));
//!   a request that cannot be cloned (a streamed body) gets **one** attempt, and a
//!   `tracing` warning says it was not retried. The service made ready by
//!   `poll_ready` serves the first attempt; each later attempt uses a fresh clone
//!   of the inner service, made ready before it is called, as tower's own `Retry`
//!   does. So the inner service must be `Clone`.
//! - **Breakers.** With [`breakers`](SafeCallLayer::breakers), a key function names
//!   each request's key and the registry gives its breaker. The breaker is asked
//!   inside the response future before each attempt: an open one ends the call with
//!   [`Error::CircuitOpen`] before the inner service is called.
//! - **Responses.** With [`classify_response`](SafeCallLayer::classify_response), a
//!   response can stand for a failure (exactly like
//!   [`Call::classify_ok`](crate::Call::classify_ok)): it is retried and held
//!   against the breaker like an error of its class, and when no attempt is left
//!   the caller gets the last response, as tower's `Retry` gives it. Ready
//!   classifiers: [`classify_http_response`] (status and `Retry-After`) and
//!   [`classify_grpc_response`] (a gRPC status in the response headers).
//! - **Errors.** The service's error is [`Error<S::Error>`](Error): it says which
//!   limit ended the call and carries the inner service's last error.
//! - **Cost.** The response future is written by hand and allocates nothing: per
//!   request, one clone of the inner service (as tower's `Retry`), one reference
//!   count on the policy, a clone of the request when a retry is possible, and a
//!   registry lookup with breakers.
//!
//! Retry in one layer of a stack only (see the [crate docs](crate#layering)); put
//! this layer outside a per-attempt timeout or load shedding, and inside a
//! concurrency limit that should count calls rather than attempts.
//!
//! # Examples
//!
//! An inner service that fails twice with a 503 response, then answers: the layer
//! retries the responses it classifies as failures.
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use safecall::tower::{SafeCallLayer, classify_http_response};
//! use safecall::{Backoff, BreakerConfig, BreakerRegistry, Jitter, SafeCall};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy: SafeCall<std::io::Error> = SafeCall::builder()
//!     .max_retries(3)
//!     .backoff(Backoff::exponential(Duration::from_millis(100)).jitter(Jitter::None))
//!     .build()?;
//! let breakers: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
//! let calls = Arc::new(AtomicU32::new(0));
//! let inner = service_fn({
//!     let calls = calls.clone();
//!     move |_req: http::Request<String>| {
//!         let n = calls.fetch_add(1, Ordering::Relaxed);
//!         async move {
//!             let status = if n < 2 { 503 } else { 200 };
//!             Ok::<_, std::io::Error>(http::Response::builder().status(status).body(())
//!                 .map_err(std::io::Error::other)?)
//!         }
//!     }
//! });
//! let layer = SafeCallLayer::new(policy)
//!     .breakers(breakers, |req: &http::Request<String>| {
//!         req.headers().get("x-tenant").and_then(|v| v.to_str().ok())
//!             .unwrap_or("unknown").to_owned()
//!     })
//!     .classify_response(classify_http_response);
//! let mut svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
//!
//! let req = http::Request::builder().header("x-tenant", "org-46cf").body(String::new())?;
//! let started = tokio::time::Instant::now();
//! let res = svc.ready().await?.call(req).await?;
//! assert_eq!(res.status(), 200);
//! assert_eq!(calls.load(Ordering::Relaxed), 3);
//! assert_eq!(started.elapsed(), Duration::from_millis(300)); // waited 100 ms, then 200 ms
//! assert_eq!(layer.registry().len(), 1); // org-46cf's breaker
//! # Ok(())
//! # }
//! ```
//!
//! # gRPC (tonic)
//!
//! Put the layer on the `Channel`, under the generated client. Two things differ
//! from HTTP:
//!
//! - **The status.** A failed unary call that a server answers at once (tonic's
//!   `Err(Status)`) is a *trailers-only* response: HTTP 200 with `grpc-status` in
//!   its **headers**, which the layer sees and [`classify_grpc_response`] reads. A
//!   status sent after response messages arrives in the trailers, after the
//!   response future has resolved: no layer below the client can retry on it (the
//!   body is already the caller's). Servers that fail before answering (the usual
//!   `UNAVAILABLE`, `RESOURCE_EXHAUSTED`) answer trailers-only.
//! - **The request.** tonic's request body is a stream (`tonic::body::Body`), not
//!   `Clone`, so without more a request gets one attempt (the complaint of
//!   grpc/grpc-rust#733 about tower's `Retry`). A unary request's body is one
//!   encoded message, there at once: buffer it (collect it into `Bytes` in a
//!   service above this layer, with a size limit, and send
//!   `http::Request<Full<Bytes>>` through the layer: an `http::Request<B>` is
//!   `Clone` when `B` is), then turn it back into a `tonic::body::Body` under the
//!   layer with `map_request(|r| r.map(tonic::body::Body::new))`.
//!   `examples/tower_grpc.rs` does exactly that in a few lines. An interceptor
//!   cannot do it: it sees the metadata, not the body. Client-streaming calls
//!   cannot be buffered: keep them out of a retrying stack, or give them a
//!   `clone_request` that returns `None`, so they take their one attempt.
//!
//! [`Layer`]: tower_layer::Layer
//! [`BreakerRegistry`]: crate::BreakerRegistry

mod http;
mod service;

use std::fmt;

use tower_layer::Layer;

use crate::call::{ClassifyOkWith, EveryOk};
use crate::{BreakerRegistry, SafeCall};
#[cfg(doc)]
use crate::{Error, ErrorClass};

pub use self::http::{classify_grpc_response, classify_http_response, retry_after_of};
pub use service::{AttemptFuture, ResponseFuture, SafeCallService};

/// A tower [`Layer`] that runs each request under a
/// [`SafeCall`] policy: see the [module documentation](self).
///
/// Its type parameters record the options set, so a layer without breakers or a
/// response classifier pays nothing for them: `B` the breakers ([`Unkeyed`] or
/// [`Keyed`]), `C` the response classifier ([`EveryOk`] or
/// [`ClassifyOkWith`]), `R` how requests are cloned ([`CloneRequest`] or
/// [`CloneRequestWith`]).
pub struct SafeCallLayer<E, B = Unkeyed, C = EveryOk, R = CloneRequest> {
    policy: SafeCall<E>,
    breakers: B,
    classify: C,
    clone_request: R,
}

impl<E, B: Clone, C: Clone, R: Clone> Clone for SafeCallLayer<E, B, C, R> {
    fn clone(&self) -> Self {
        Self {
            policy: self.policy.clone(),
            breakers: self.breakers.clone(),
            classify: self.classify.clone(),
            clone_request: self.clone_request.clone(),
        }
    }
}

impl<E, B: fmt::Debug, C, R> fmt::Debug for SafeCallLayer<E, B, C, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafeCallLayer")
            .field("policy", &self.policy)
            .field("breakers", &self.breakers)
            .finish_non_exhaustive()
    }
}

impl<E> SafeCallLayer<E> {
    /// A layer that runs each request under `policy`, without breakers or a
    /// response classifier, cloning requests with [`Clone`].
    pub fn new(policy: SafeCall<E>) -> Self {
        Self {
            policy,
            breakers: Unkeyed,
            classify: EveryOk,
            clone_request: CloneRequest,
        }
    }
}

impl<E, B, C, R> SafeCallLayer<E, B, C, R> {
    /// Runs each request through the breaker of its key: `key` names the
    /// request's key (a tenant, from a header or an extension), and the breaker is
    /// `registry.get(&key)`, created on first use of the key.
    ///
    /// The breaker is asked inside the response future before each attempt,
    /// retries included: a refusal ends the call with [`Error::CircuitOpen`]
    /// before the inner service is called. Each attempt's outcome is recorded
    /// as [`Call::breaker`](crate::Call::breaker) records it.
    ///
    /// The registry is a cheap handle: keep a clone of it (for snapshots, a
    /// health check), or reach it with [`registry`](SafeCallLayer::registry).
    pub fn breakers<K, F>(
        self,
        registry: BreakerRegistry<K>,
        key: F,
    ) -> SafeCallLayer<E, Keyed<K, F>, C, R> {
        SafeCallLayer {
            policy: self.policy,
            breakers: Keyed { registry, key },
            classify: self.classify,
            clone_request: self.clone_request,
        }
    }

    /// Classifies the inner service's responses: `f` returns `None` for a
    /// response that is a success, or the [`ErrorClass`] of the failure it stands
    /// for (a 503, a gRPC `UNAVAILABLE`).
    ///
    /// Exactly like [`Call::classify_ok`](crate::Call::classify_ok): a response
    /// classified as a failure is retried and held against the breaker like an
    /// error of that class; when no further attempt is allowed the call resolves
    /// to `Ok(last response)`; a limit of safecall's own that ends the call
    /// without a response in hand (the deadline, a breaker refusal) is the
    /// [`Error`]. [`classify_http_response`] and [`classify_grpc_response`] are
    /// ready-made ones.
    ///
    /// `f` is cloned into each response future: a closure that captures nothing,
    /// or a function, costs nothing to clone.
    pub fn classify_response<F>(self, f: F) -> SafeCallLayer<E, B, ClassifyOkWith<F>, R> {
        SafeCallLayer {
            policy: self.policy,
            breakers: self.breakers,
            classify: ClassifyOkWith(f),
            clone_request: self.clone_request,
        }
    }

    /// Clones requests with `f` instead of [`Clone`]: `f` returns `None` for a
    /// request that cannot be cloned, which then gets one attempt (a `tracing`
    /// warning says it was not retried, when it would have been).
    ///
    /// For a `reqwest::Request`, `|r: &reqwest::Request| r.try_clone()`. An
    /// `http::Request<B>` is `Clone` when its body is (`Full<Bytes>`, `String`):
    /// the default then works.
    ///
    /// `f` is cloned into each response future that may retry.
    pub fn clone_request<F>(self, f: F) -> SafeCallLayer<E, B, C, CloneRequestWith<F>> {
        SafeCallLayer {
            policy: self.policy,
            breakers: self.breakers,
            classify: self.classify,
            clone_request: CloneRequestWith(f),
        }
    }
}

impl<E, K, F, C, R> SafeCallLayer<E, Keyed<K, F>, C, R> {
    /// The registry of the layer's breakers (shared with its clones and the
    /// services it has made): for snapshots and health checks.
    pub fn registry(&self) -> &BreakerRegistry<K> {
        &self.breakers.registry
    }
}

impl<S, E, B: Clone, C: Clone, R: Clone> Layer<S> for SafeCallLayer<E, B, C, R> {
    type Service = SafeCallService<S, E, B, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        SafeCallService::new(
            inner,
            self.policy.clone(),
            self.breakers.clone(),
            self.classify.clone(),
            self.clone_request.clone(),
        )
    }
}

/// The default breakers of a [`SafeCallLayer`]: none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unkeyed;

/// The breakers of a [`SafeCallLayer`] given
/// [`breakers`](SafeCallLayer::breakers): a registry and the key function.
pub struct Keyed<K, F> {
    registry: BreakerRegistry<K>,
    key: F,
}

impl<K, F: Clone> Clone for Keyed<K, F> {
    fn clone(&self) -> Self {
        Self {
            registry: self.registry.clone(),
            key: self.key.clone(),
        }
    }
}

impl<K, F> fmt::Debug for Keyed<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyed")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The default way a [`SafeCallLayer`] clones requests: [`Clone`].
#[derive(Debug, Clone, Copy, Default)]
pub struct CloneRequest;

/// Clones requests with a `Fn(&Req) -> Option<Req>`, from
/// [`clone_request`](SafeCallLayer::clone_request).
#[derive(Clone)]
pub struct CloneRequestWith<F>(F);

impl<F> fmt::Debug for CloneRequestWith<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CloneRequestWith(..)")
    }
}

pub(crate) mod sealed {
    /// Clones a request for another attempt, if it can.
    pub trait CloneReq<Req> {
        fn clone_request(&self, req: &Req) -> Option<Req>;
    }

    use crate::call::{BreakerHold, Call, NoBreaker};

    /// Gives a request its breaker, if the layer has breakers.
    pub trait BreakerFor<Req> {
        type Hold: BreakerHold;
        fn breaker_for(&self, req: &Req) -> Self::Hold;
        fn attach<'a, E, Op, Fut, C>(
            hold: Self::Hold,
            call: Call<'a, E, Op, Fut, C, NoBreaker>,
        ) -> Call<'a, E, Op, Fut, C, Self::Hold>;
    }
}

/// How a [`SafeCallLayer`] clones requests: [`CloneRequest`] or
/// [`CloneRequestWith`]. Sealed.
pub trait CloneReq<Req>: sealed::CloneReq<Req> {}

impl<Req: Clone> sealed::CloneReq<Req> for CloneRequest {
    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}
impl<Req: Clone> CloneReq<Req> for CloneRequest {}

impl<Req, F: Fn(&Req) -> Option<Req>> sealed::CloneReq<Req> for CloneRequestWith<F> {
    #[inline]
    fn clone_request(&self, req: &Req) -> Option<Req> {
        (self.0)(req)
    }
}
impl<Req, F: Fn(&Req) -> Option<Req>> CloneReq<Req> for CloneRequestWith<F> {}

/// Which breaker, if any, a request goes through: [`Unkeyed`] or [`Keyed`].
/// Sealed.
pub trait BreakerFor<Req>: sealed::BreakerFor<Req> {}

impl<Req> sealed::BreakerFor<Req> for Unkeyed {
    type Hold = crate::NoBreaker;
    #[inline(always)]
    fn breaker_for(&self, _req: &Req) -> crate::NoBreaker {
        crate::NoBreaker
    }
    #[inline(always)]
    fn attach<'a, E, Op, Fut, C>(
        _hold: crate::NoBreaker,
        call: crate::Call<'a, E, Op, Fut, C>,
    ) -> crate::Call<'a, E, Op, Fut, C> {
        call
    }
}
impl<Req> BreakerFor<Req> for Unkeyed {}

impl<Req, K, F> sealed::BreakerFor<Req> for Keyed<K, F>
where
    F: Fn(&Req) -> K,
    K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
    type Hold = crate::Breaker;
    #[inline]
    fn breaker_for(&self, req: &Req) -> crate::Breaker {
        self.registry.get(&(self.key)(req))
    }
    #[inline]
    fn attach<'a, E, Op, Fut, C>(
        hold: crate::Breaker,
        call: crate::Call<'a, E, Op, Fut, C>,
    ) -> crate::Call<'a, E, Op, Fut, C, crate::Breaker> {
        call.breaker_owned(hold)
    }
}
impl<Req, K, F> BreakerFor<Req> for Keyed<K, F>
where
    F: Fn(&Req) -> K,
    K: std::hash::Hash + Eq + Clone + fmt::Debug + Send + Sync + 'static,
{
}
