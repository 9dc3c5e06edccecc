//! Safe calls to flaky outside services: retries with exponential backoff and
//! jitter, error classification, deadlines, a retry budget, and circuit breakers
//! kept per tenant.
//!
//! `safecall` wraps any `FnMut() -> impl Future<Output = Result<T, E>>`: a reqwest
//! request, a sqlx query, a tonic call, a hand-written client. It is not tied to
//! tower. A [`SafeCall`] policy is built once and shared; each
//! [`call`](SafeCall::call) is a future that allocates nothing.
//!
//! # Examples
//!
//! The seed service's policy: 3 retries, waiting 1 s, 2 s, 4 s (no jitter here, so
//! the schedule is exact), only for errors worth another attempt:
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Backoff, Error, ErrorClass, Jitter, SafeCall};
//!
//! #[derive(Debug)]
//! struct SmsError { status: u16, retry_after: Option<Duration> }
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policy: SafeCall<SmsError> = SafeCall::builder()
//!     .max_retries(3)
//!     .backoff(Backoff::exponential(Duration::from_secs(1)).jitter(Jitter::None))
//!     .deadline(Duration::from_secs(60))
//!     .classify(|e: &SmsError| match e.status {
//!         429 | 503 => e.retry_after.map_or(ErrorClass::Transient, ErrorClass::RetryAfter),
//!         500..=599 => ErrorClass::Transient,
//!         400 => ErrorClass::CallerFault,
//!         _ => ErrorClass::Permanent,
//!     })
//!     .build()?;
//!
//! // A provider that is down for good: four attempts, at 0 s, 1 s, 3 s and 7 s.
//! let started = tokio::time::Instant::now();
//! let result: Result<(), _> = policy
//!     .call(|| async { Err(SmsError { status: 503, retry_after: None }) })
//!     .await;
//! assert!(matches!(result, Err(Error::Exhausted { attempts: 4, .. })));
//! assert_eq!(started.elapsed(), Duration::from_secs(7));
//!
//! // A request that is wrong: returned at once, never retried.
//! let result: Result<(), _> = policy
//!     .call(|| async { Err(SmsError { status: 400, retry_after: None }) })
//!     .await;
//! assert!(matches!(result, Err(Error::Permanent { attempts: 1, .. })));
//! # Ok(())
//! # }
//! ```
//!
//! # How a call runs
//!
//! - **Attempts.** `max_retries(n)` allows at most `n + 1` invocations (default
//!   3 retries). The wait before retry `k` is the [`Backoff`]'s delay `k`,
//!   jittered ([`Jitter::Full`] by default: a herd of clients must not retry in
//!   step). A zero delay retries at once without touching the timer.
//! - **Classification.** Each error is put in an [`ErrorClass`] by the policy's
//!   [`Classify`]: `Transient` is retried after the backoff delay, `RetryAfter(d)`
//!   not sooner than the server's hint, `Permanent` and `CallerFault` are returned
//!   at once.
//! - **Time.** An optional deadline covers the whole call, waits included: a wait
//!   that would end at or after it is not started, an attempt still running when it
//!   passes is dropped. An optional attempt timeout bounds each attempt; a timed
//!   out attempt is a transient failure. A server hint longer than
//!   `max_retry_after` or than the time left ends the call at once: the crate never
//!   sleeps into a certain failure.
//! - **Budget.** A [`RetryBudget`] shared by the policy's clones caps retries at a
//!   share of recent calls, so retries cannot multiply the load on a struggling
//!   service.
//! - **Errors.** A call ends with the value or an [`Error`] that says which limit
//!   ended it and how many attempts were made. The words in the names are
//!   chosen, not mixed: a *cause* is the event that made a breaker act
//!   ([`RefusalCause`]: it was tripped, forced open, cooling down or busy;
//!   [`TransitionCause`]: what moved it), a *reason* is the limit that made a
//!   call give up ([`ExhaustedReason`]), and a *kind* only tells apart two
//!   limits of the same sort ([`TimeoutKind`]: the deadline or an attempt
//!   timeout). When a refusal or a timeout ends a call after failed attempts,
//!   the operation's last error stays reachable through
//!   [`source`](std::error::Error::source) and [`Error::into_inner`].
//!
//! - **Breakers.** [`Call::breaker`] runs every attempt through a circuit
//!   [`Breaker`], usually one per tenant from a [`BreakerRegistry`]: one
//!   tenant's broken credentials trip that tenant's breaker only, and its calls
//!   then fail fast with [`Error::CircuitOpen`]. See the [`breaker`] module.
//!
//! All time comes from tokio's clock (`tokio::time`), so tests can pause and
//! advance it: every schedule, open period and deadline is exact under
//! `#[tokio::test(start_paused = true)]`.
//!
//! # Modules
//!
//! - [`backoff`], [`classify`], [`budget`]: the parts of a retry policy.
//! - [`breaker`], [`registry`]: circuit breakers, and one per key.
//! - [`fleet`]: cool-downs and opens shared across the replicas of a service
//!   (the `safecall-redis` crate implements it on Redis).
//! - [`health`]: named checks and breaker states folded into a report for a
//!   health endpoint.
//! - [`hedge`]: hedged (backup) requests against tail latency, with
//!   [`Call::hedge`].
//! - `testing` (feature `testing`): scripted operations and chaos injection, to
//!   test your own policies on a paused clock.
//! - `tower` (feature `tower`): `SafeCallLayer`, the policy and per-tenant
//!   breakers as a tower layer, with response classifiers for HTTP and gRPC.
//! - `metrics` (feature `metrics`): call outcomes, retries and breakers by
//!   state through the `metrics` crate's facade, with no tenant label.
//!
//! # Layering
//!
//! Retry in one layer of a call chain only: three layers that each retry 3 times
//! turn one failure into 64 attempts. A policy with `max_retries(0)` keeps the
//! deadlines and timeouts for the other layers.
//!
//! # Observability
//!
//! Each call runs in a `tracing` span (`safecall`, at debug level) with events for
//! each attempt (trace), retry (debug: attempt, delay, class) and give-up (debug).
//! The operation's error is never logged by the crate; the
//! [`on_retry`](SafeCallBuilder::on_retry) hook hands it to you.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod bulkhead;
mod call;
mod calls;
pub mod classify;
mod error;
pub mod fleet;
pub mod health;
pub mod hedge;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod policy;
pub mod registry;
mod sync;
#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;

pub use backoff::{Backoff, Delays, Jitter};
pub use breaker::{
    Breaker, BreakerConfig, BreakerMode, BreakerSnapshot, BreakerState, Outcome, Permit,
    RefusalCause, Rejected, Transition, TransitionCause,
};
pub use budget::RetryBudget;
pub use bulkhead::{Bulkhead, BulkheadConfig, BulkheadPermit, BulkheadRegistry, BulkheadSnapshot};
pub use call::{
    Attempt, BreakerHold, BulkheadHold, Call, ClassifyOkWith, EveryOk, Fallback, HedgeHold,
    NoBreaker, NoBulkhead, NoHedge, Plain, WithAttempt,
};
pub use classify::{
    AlwaysTransient, Classify, ErrorClass, classify_grpc_code, classify_http_status, classify_io,
    parse_retry_after, parse_retry_after_at,
};
pub use error::{ConfigError, Error, ExhaustedReason, TimeoutKind};
pub use health::{HealthChecks, HealthReport, HealthStatus};
pub use hedge::Hedge;
pub use policy::{RetryEvent, SafeCall, SafeCallBuilder};
pub use registry::BreakerRegistry;
