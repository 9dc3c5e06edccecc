//! Shared pieces of the benchmarks: the operation under test, a batch timer, and
//! every breaker configured once, equivalently across crates.
//!
//! # Equivalent configurations
//!
//! | crate | rule | open for |
//! | --- | --- | --- |
//! | safecall default | 5 failures in a row, or ≥ 50 % failures over a 30 s time window (10 buckets, ≥ 20 calls) | 30 s |
//! | safecall `count` | 5 failures in a row, or ≥ 50 % failures over the last 100 calls (≥ 100 calls) | 30 s |
//! | safecall `consecutive` | 5 failures in a row | 30 s |
//! | failsafe | ≥ 50 % failures over a 30 s window (≥ 20 calls), or 5 failures in a row | 30 s |
//! | recloser (its default) | ≥ 50 % failures over the last 100 calls | 30 s |
//! | tower-resilience (its default) | ≥ 50 % failures over the last 100 calls | 30 s |
//! | seatbelt | ≥ 50 % failures over a 30 s window, ≥ 20 calls | 30 s |
//!
//! failsafe's and seatbelt's time windows are the nearest to safecall's default;
//! recloser and tower-resilience only count calls, like safecall's `count`.

use std::time::{Duration, Instant};

use safecall::{BreakerConfig, RetryBudget, SafeCall};

pub mod cases;

/// The operation every case wraps: an `async fn` ready on first poll, written
/// as a user's own harness writes it, so the compiler may inline it into each
/// crate's call path as it would in the user's build.
///
/// It used to be `#[inline(never)]` with a `black_box` inside: that kept every
/// crate from seeing the operation, and cost a bare call 13 instructions and a
/// tower retry 41 more than the plain `async fn` a user writes (callgrind; in
/// time, bare 1.9 → 11 ns, tower 3 → 33 ns), so the bench crate disagreed with
/// independent harnesses (see `benches/README.md`, "Why two harnesses
/// disagreed"). Each case `black_box`es the call's result instead.
#[inline]
pub async fn op(x: u64) -> Result<u64, Failure> {
    Ok(x)
}

/// The error the failing cases return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure")
    }
}

impl std::error::Error for Failure {}

/// Runs `body` `iters` times inside one `block_on` and returns the time taken,
/// so the executor's entry cost is not counted per call.
pub fn time_batch<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut body: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            body(i).await;
        }
        start.elapsed()
    })
}

/// The current-thread runtime of the single-threaded cases, built as users
/// build theirs (`enable_all`: the timer and, where tokio has it, I/O).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// How long an opened breaker stays open in the rejection cases.
pub const OPEN: Duration = Duration::from_secs(30);
/// Keys of the registry cases.
pub fn key(i: usize) -> String {
    format!("org-{i:07}")
}

/// A fixed pseudo-random visiting order of `n` keys (no cache-friendly sequence).
pub fn shuffled(n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        order.swap(i, (x % (i as u64 + 1)) as usize);
    }
    order
}

/// safecall's breaker configurations (see the module docs).
pub mod safecall_configs {
    use super::*;

    /// The default: consecutive failures and a 30 s time window.
    pub fn default() -> BreakerConfig {
        BreakerConfig::default()
    }

    /// Consecutive failures and a window of the last 100 calls (recloser's and
    /// tower-resilience's rule).
    pub fn count() -> BreakerConfig {
        BreakerConfig::default()
            .count_window(0.5, 100)
            .minimum_calls(100)
    }

    /// Consecutive failures only.
    pub fn consecutive() -> BreakerConfig {
        BreakerConfig::default().no_failure_rate()
    }

    /// The three, named.
    pub fn all() -> [(&'static str, BreakerConfig); 3] {
        [
            ("default", default()),
            ("count", count()),
            ("consecutive", consecutive()),
        ]
    }
}

/// The retry policy of the breaker cases: safecall's defaults (3 retries,
/// jittered exponential backoff, retry budget on).
pub fn default_policy() -> SafeCall<Failure> {
    SafeCall::default()
}

/// A policy without a retry budget.
pub fn no_budget_policy() -> SafeCall<Failure> {
    SafeCall::builder()
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy")
}

/// failsafe's policy type for [`failsafe_breaker`].
pub type FailsafePolicy = failsafe::failure_policy::OrElse<
    failsafe::failure_policy::SuccessRateOverTimeWindow<failsafe::backoff::Constant>,
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::Constant>,
>;
/// failsafe's breaker (an `Arc` inside; `Clone` shares it).
pub type FailsafeBreaker = failsafe::StateMachine<FailsafePolicy, ()>;

/// failsafe configured like safecall's default: ≥ 50 % failures (a required
/// success rate of 0.5) over 30 s with at least 20 calls, or 5 in a row; open `open`.
pub fn failsafe_breaker(open: Duration) -> FailsafeBreaker {
    use failsafe::FailurePolicy;
    use failsafe::failure_policy::{consecutive_failures, success_rate_over_time_window};
    let open = failsafe::backoff::constant(open);
    let policy = success_rate_over_time_window(0.5, 20, Duration::from_secs(30), open.clone())
        .or_else(consecutive_failures(5, open));
    failsafe::Config::new().failure_policy(policy).build()
}

/// recloser with its defaults made explicit: ≥ 50 % of the last 100 calls; open `open`.
pub fn recloser_breaker(open: Duration) -> recloser::Recloser {
    recloser::Recloser::custom()
        .error_rate(0.5)
        .closed_len(100)
        .open_wait(open)
        .build()
}

/// The peers' pieces, configured once (see the crate docs).
pub mod peers {
    use std::future::{Ready, ready};
    use std::time::Duration;

    use seatbelt::{RecoveryInfo, ResilienceContext};

    use crate::Failure;

    /// tower's retry policy for the benches: retry any error, up to `n` times, at once.
    #[derive(Clone, Copy)]
    pub struct Attempts(pub u32);

    impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for Attempts {
        type Future = Ready<()>;

        fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
            match result {
                Ok(_) => None,
                Err(_) if self.0 == 0 => None,
                Err(_) => {
                    self.0 -= 1;
                    Some(ready(()))
                }
            }
        }

        fn clone_request(&mut self, req: &Req) -> Option<Req> {
            Some(req.clone())
        }
    }

    pub fn recovery(out: &Result<u64, Failure>) -> RecoveryInfo {
        match out {
            Ok(_) => RecoveryInfo::never(),
            Err(_) => RecoveryInfo::retry(),
        }
    }

    pub fn seatbelt_context() -> ResilienceContext<u64, Result<u64, Failure>> {
        ResilienceContext::new(tick::Clock::new_tokio())
    }

    /// seatbelt's retry layer: 3 retries, its default exponential backoff.
    pub fn seatbelt_retry(
        ctx: &ResilienceContext<u64, Result<u64, Failure>>,
    ) -> seatbelt::retry::RetryLayer<
        u64,
        Result<u64, Failure>,
        seatbelt::typestates::Set,
        seatbelt::typestates::Set,
    > {
        seatbelt::retry::Retry::layer("retry", ctx)
            .max_retry_attempts(3)
            .clone_input()
            .recovery_with(|out: &Result<u64, Failure>, _| recovery(out))
    }

    /// seatbelt's breaker layer configured like safecall's default time window.
    pub fn seatbelt_breaker(
        ctx: &ResilienceContext<u64, Result<u64, Failure>>,
        open: Duration,
    ) -> seatbelt::breaker::BreakerLayer<
        u64,
        Result<u64, Failure>,
        seatbelt::typestates::Set,
        seatbelt::typestates::Set,
    > {
        seatbelt::breaker::Breaker::layer("breaker", ctx)
            .recovery_with(|out: &Result<u64, Failure>, _| recovery(out))
            .rejected_input_error(|_, _| Failure)
            .failure_threshold(0.5)
            .min_throughput(20)
            .sampling_duration(Duration::from_secs(30))
            .break_duration(open)
    }

    pub fn tower_resilience_layer(
        open: Duration,
    ) -> tower_resilience::circuitbreaker::CircuitBreakerLayer {
        tower_resilience::circuitbreaker::CircuitBreakerLayer::builder()
            .failure_rate_threshold(0.5)
            .sliding_window_size(100)
            .wait_duration_in_open(open)
            .build()
            .expect("tower-resilience config")
    }
}

/// A global allocator that counts allocations (and reallocations) and
/// forwards everything to the system's: a bench that reports allocations per
/// call installs it with
/// `#[global_allocator] static ALLOC: CountingAlloc = CountingAlloc;` and
/// reads [`allocations`].
pub struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Allocations (and reallocations) counted so far, on every thread.
pub fn allocations() -> u64 {
    ALLOCATIONS.load(std::sync::atomic::Ordering::Relaxed)
}

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on as is.
        unsafe { std::alloc::System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        // SAFETY: `p` came from `System` through this allocator.
        unsafe { std::alloc::System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `p` came from `System` through this allocator.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

/// Calls a tower service once, the way a user writes it in place:
/// `svc.ready().await?.call(i).await`. A macro, not an `async fn`: the
/// helper function's future was not inlined into the loop, which charged the
/// tower peers about 23 instructions a call that a user's code does not pay
/// (found by an independent harness, 2026-12-05).
#[macro_export]
macro_rules! tower_call {
    ($svc:expr, $i:expr) => {{
        match ::tower::ServiceExt::ready($svc).await {
            Ok(svc) => ::tower::Service::call(svc, $i).await,
            Err(e) => Err(e),
        }
    }};
}
