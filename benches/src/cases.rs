//! Every case of the performance table as a plain loop of `n` calls, for
//! instruction counts (`benches/instructions.rs` under gungraun, or
//! `examples/hot_paths.rs` under a bare callgrind): the same operation, peers
//! and configurations as the criterion benches (`benches/overhead.rs`,
//! `benches/tower_layer.rs`).
//!
//! [`prepare`] builds a case's state (runtime, policy, breakers, a registry's
//! keys, tripped breakers) outside the count; [`Prepared::run`] then runs `n`
//! calls back to back in one `block_on`. What is left of a fixed cost (the
//! `block_on`, first-use initialisation) is the same at `n` and `2n`, so
//! instructions per call = `(Ir(2n) - Ir(n)) / n`. The state a case's loop
//! borrows is leaked (a few per process): the loop must outlive nothing.
//!
//! ```
//! use safecall_bench::cases;
//! // Prepares one case, then runs it; a name that is not in `CASES` is refused.
//! let mut case = cases::prepare("success_retry/bare_call").expect("a case");
//! assert_eq!(case.run(10), 10);
//! assert!(cases::prepare("no/such_case").is_none());
//! ```

use std::cell::Cell;
use std::collections::HashMap;
use std::future::ready;
use std::hint::black_box;
use std::time::Duration;

use layered::{Execute, Service as _, Stack};
use safecall::tower::SafeCallLayer;
use safecall::{Backoff, Breaker, BreakerConfig, BreakerRegistry, Outcome, RetryBudget, SafeCall};
use tower::ServiceBuilder;

use crate::peers::{
    Attempts, seatbelt_breaker, seatbelt_context, seatbelt_retry, tower_resilience_layer,
};
use crate::tower_call;
use crate::{
    Failure, OPEN, failsafe_breaker, key, no_budget_policy, op, recloser_breaker, runtime,
    safecall_configs, shuffled,
};

/// Long enough that an opened breaker stays open for the whole run.
const HOUR: Duration = Duration::from_secs(3600);

/// Keys of the registry case with instruction counts. Counts do not see cache
/// misses, so a larger registry would count the same: its cost is in time
/// (`success_registry_1m` in `benches/overhead.rs`).
pub const REGISTRY_KEYS: usize = 10_000;

/// Every case, named `group/function` as in criterion's output.
pub const CASES: &[&str] = &[
    "success_retry/bare_call",
    "success_retry/safecall",
    "success_retry/safecall_no_budget",
    "success_retry/tower_retry",
    "success_retry/backon",
    "success_retry/tokio_retry2",
    "success_retry/seatbelt",
    "success_breaker/safecall_default",
    "success_breaker/safecall_count",
    "success_breaker/safecall_consecutive",
    "success_breaker/recloser",
    "success_breaker/failsafe",
    "success_breaker/tower_resilience",
    "success_breaker/seatbelt",
    "success_registry_10k/map_lookup_only",
    "success_registry_10k/rwlock_map_lookup_only",
    "success_registry_10k/dashmap_lookup_only",
    "success_registry_10k/safecall_lookup_only",
    "success_registry_10k/safecall_with_lookup_only",
    "success_registry_10k/safecall",
    "success_registry_10k/safecall_with_breaker_alone",
    "success_registry_10k/recloser",
    "success_registry_10k/failsafe",
    "open_rejection/safecall_default",
    "open_rejection/safecall_count",
    "open_rejection/safecall_consecutive",
    "open_rejection/recloser",
    "open_rejection/failsafe",
    "open_rejection/tower_resilience",
    "open_rejection/seatbelt",
    "three_attempts_zero_delay/safecall",
    "three_attempts_zero_delay/tower_retry",
    "three_attempts_zero_delay/seatbelt",
    "three_attempts_zero_delay/backon",
    "three_attempts_zero_delay/tokio_retry2",
    "tower_stack_success/bare_service",
    "tower_stack_success/tower_retry",
    "tower_stack_success/safecall_layer",
    "tower_stack_success/safecall_layer_no_budget",
    "tower_stack_success/safecall_layer_breaker",
    "tower_stack_success/tower_resilience",
];

/// The policy of the zero-delay case: 3 retries, no wait, no budget.
pub fn zero_delay_policy() -> SafeCall<Failure> {
    SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(Duration::ZERO))
        .retry_budget(RetryBudget::disabled())
        .build()
        .expect("policy")
}

/// An operation that fails twice, then succeeds: 3 attempts per call. Its
/// count is a `Cell`, as a user's single-threaded harness would keep it: an
/// atomic increment per attempt (as this crate had until 2026-12-05) adds
/// some 4.5 ns to every attempt of every peer and shrinks the ratios.
pub fn fails_twice(counter: &Cell<u32>) -> impl Future<Output = Result<u64, Failure>> + use<> {
    let n = counter.get();
    counter.set(n.wrapping_add(1));
    async move {
        if n % 3 < 2 {
            Err(Failure)
        } else {
            Ok(u64::from(n))
        }
    }
}

thread_local! {
    static FAILS_TWICE_SEND: Cell<u32> = const { Cell::new(0) };
}

/// [`fails_twice`] for a peer whose service must be `Send` (seatbelt): its
/// count in a thread-local `Cell` (the runtime has one thread), still no
/// atomic read-modify-write per attempt.
pub fn fails_twice_send() -> impl Future<Output = Result<u64, Failure>> + use<> {
    FAILS_TWICE_SEND.with(fails_twice)
}

/// The attempts [`fails_twice_send`] counted on this thread, reset to 0.
pub fn take_fails_twice_send() -> u32 {
    FAILS_TWICE_SEND.with(|c| c.replace(0))
}

/// Trips a safecall breaker by its own rules (100 failures in a row).
pub fn trip(breaker: &Breaker) {
    for _ in 0..100 {
        if let Ok(p) = breaker.try_acquire() {
            p.record(Outcome::Failure);
        }
    }
}

/// A prepared case: its state, and a loop of `n` calls over it.
pub struct Prepared {
    rt: tokio::runtime::Runtime,
    calls: Calls,
}

/// A case's loop: `n` calls in one `block_on`; returns how many ended as the
/// case expects.
type Calls = Box<dyn FnMut(&tokio::runtime::Runtime, u64) -> u64>;

impl Prepared {
    /// Runs `n` calls back to back in one `block_on`; returns how many ended as
    /// the case expects (a success, or a rejection in the open-breaker cases).
    pub fn run(&mut self, n: u64) -> u64 {
        (self.calls)(&self.rt, n)
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prepared(..)")
    }
}

/// State a case's loop borrows, for the life of the process.
fn leak<T>(value: T) -> &'static T {
    Box::leak(Box::new(value))
}

/// A loop of `n` calls of one expression in one `block_on`, counting the
/// `true`s; `move` takes the state the expression uses.
macro_rules! calls {
    (|$i:ident| $call:expr) => {
        Box::new(move |rt: &tokio::runtime::Runtime, n: u64| {
            rt.block_on(async {
                let mut ok = 0u64;
                for $i in 0..n {
                    ok += u64::from(black_box($call));
                }
                ok
            })
        }) as Calls
    };
}

/// Runs case `name` for `n` calls (prepared and run at once); returns how many
/// ended as the case expects, or `None` for a name not in [`CASES`].
pub fn run(name: &str, n: u64) -> Option<u64> {
    prepare(name).map(|mut case| case.run(n))
}

/// Builds case `name`'s state; `None` for a name not in [`CASES`].
pub fn prepare(name: &str) -> Option<Prepared> {
    let (group, function) = name.split_once('/')?;
    let rt = runtime();
    let calls = match group {
        "success_retry" => success_retry(&rt, function),
        "success_breaker" => success_breaker(&rt, function),
        "success_registry_10k" => success_registry(function),
        "open_rejection" => open_rejection(&rt, function),
        "three_attempts_zero_delay" => zero_delay(&rt, function),
        "tower_stack_success" => tower_stack(function),
        _ => None,
    }?;
    let mut case = Prepared { rt, calls };
    if group == "success_registry_10k" {
        // One call per key first, as criterion's warm-up does: a breaker's
        // first recorded call sets up its window, once per key, not per call.
        case.run(REGISTRY_KEYS as u64);
    }
    Some(case)
}

fn success_retry(rt: &tokio::runtime::Runtime, function: &str) -> Option<Calls> {
    Some(match function {
        "bare_call" => calls!(|i| op(i).await.is_ok()),
        "safecall" => {
            let p: SafeCall<Failure> = SafeCall::default();
            calls!(|i| p.call(|| op(i)).await.is_ok())
        }
        "safecall_no_budget" => {
            let p = no_budget_policy();
            calls!(|i| p.call(|| op(i)).await.is_ok())
        }
        "tower_retry" => {
            let mut svc = tower::retry::Retry::new(Attempts(3), tower::service_fn(op));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "backon" => {
            use backon::Retryable;
            calls!(|i| (|| op(i))
                .retry(backon::ExponentialBuilder::default().with_max_times(3))
                .await
                .is_ok())
        }
        "tokio_retry2" => calls!(|i| {
            let strategy = tokio_retry2::strategy::ExponentialBackoff::from_millis(1000).take(3);
            tokio_retry2::Retry::spawn(strategy, || async move {
                op(i).await.map_err(tokio_retry2::RetryError::transient)
            })
            .await
            .is_ok()
        }),
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let svc = (seatbelt_retry(&ctx), Execute::new(op)).into_service();
            calls!(|i| svc.execute(i).await.is_ok())
        }
        _ => return None,
    })
}

fn success_breaker(rt: &tokio::runtime::Runtime, function: &str) -> Option<Calls> {
    use failsafe::futures::CircuitBreaker as _;
    let p: SafeCall<Failure> = SafeCall::default();
    Some(match function {
        "safecall_default" | "safecall_count" | "safecall_consecutive" => {
            let (_, config) = safecall_configs::all()
                .into_iter()
                .find(|(c, _)| function.ends_with(c))?;
            let b = Breaker::new(config);
            calls!(|i| p.call(|| op(i)).breaker(&b).await.is_ok())
        }
        "recloser" => {
            let r = leak(recloser::AsyncRecloser::from(recloser_breaker(OPEN)));
            let mut svc =
                tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| r.call(op(x))));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "failsafe" => {
            let f = leak(failsafe_breaker(OPEN));
            let mut svc =
                tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| f.call(op(x))));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "tower_resilience" => {
            let layer = tower_resilience_layer(OPEN);
            let mut svc =
                tower::retry::Retry::new(Attempts(3), layer.layer_fn(tower::service_fn(op)));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let svc = (
                seatbelt_retry(&ctx),
                seatbelt_breaker(&ctx, OPEN),
                Execute::new(op),
            )
                .into_service();
            calls!(|i| svc.execute(i).await.is_ok())
        }
        _ => return None,
    })
}

fn success_registry(function: &str) -> Option<Calls> {
    use failsafe::futures::CircuitBreaker as _;
    let p: SafeCall<Failure> = SafeCall::default();
    let keys = REGISTRY_KEYS;
    let names: &'static Vec<String> = leak((0..keys).map(key).collect());
    let probe: &'static Vec<&str> = leak(
        shuffled(keys)
            .into_iter()
            .map(|i| names[i].as_str())
            .collect(),
    );
    let k = move |i: u64| probe[(i % keys as u64) as usize];
    Some(match function {
        "map_lookup_only" => {
            let bare: HashMap<String, u64> = names.iter().cloned().zip(0..).collect();
            calls!(|i| black_box(bare.get(k(i)).copied()).is_some())
        }
        "rwlock_map_lookup_only" => {
            // DESIGN.md's anchor: a bare `RwLock<HashMap>`, read-locked per
            // lookup (a poisoned lock counts as a miss).
            let locked: std::sync::RwLock<HashMap<String, u64>> =
                std::sync::RwLock::new(names.iter().cloned().zip(0..).collect());
            calls!(|i| black_box(locked.read().ok().and_then(|m| m.get(k(i)).copied())).is_some())
        }
        "dashmap_lookup_only" => {
            let d: dashmap::DashMap<String, recloser::AsyncRecloser> = names
                .iter()
                .map(|k| (k.clone(), recloser_breaker(OPEN).into()))
                .collect();
            calls!(|i| d.get(k(i)).map(|e| e.value().clone()).is_some())
        }
        "safecall_lookup_only"
        | "safecall_with_lookup_only"
        | "safecall"
        | "safecall_with_breaker_alone" => {
            let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default())
                .max_keys(keys)
                .idle_ttl(HOUR);
            for name in names {
                drop(registry.get(name.as_str()));
            }
            match function {
                "safecall_lookup_only" => {
                    return Some(calls!(|i| {
                        drop(black_box(registry.get(k(i))));
                        true
                    }));
                }
                "safecall_with_lookup_only" => {
                    return Some(calls!(|i| {
                        black_box(registry.with(k(i), |b| b.state()));
                        true
                    }));
                }
                "safecall_with_breaker_alone" => {
                    // The borrowing lookup around a call: the call future
                    // needs the breaker for its whole life, so `with` lends it
                    // to a synchronous breaker success here, the way a caller
                    // records an outcome it already has.
                    return Some(calls!(|i| {
                        registry.with(k(i), |b| match b.try_acquire() {
                            Ok(permit) => {
                                permit.record(safecall::Outcome::Success);
                                true
                            }
                            Err(_) => false,
                        })
                    }));
                }
                _ => {}
            }
            calls!(|i| {
                let breaker = registry.get(k(i));
                p.call(|| op(i)).breaker(&breaker).await.is_ok()
            })
        }
        "recloser" => {
            let d: dashmap::DashMap<String, recloser::AsyncRecloser> = names
                .iter()
                .map(|k| (k.clone(), recloser_breaker(OPEN).into()))
                .collect();
            calls!(|i| {
                let Some(r) = d.get(k(i)).map(|e| e.value().clone()) else {
                    continue;
                };
                let mut svc =
                    tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| r.call(op(x))));
                tower_call!(&mut svc, i).is_ok()
            })
        }
        "failsafe" => {
            let d: dashmap::DashMap<String, crate::FailsafeBreaker> = names
                .iter()
                .map(|k| (k.clone(), failsafe_breaker(OPEN)))
                .collect();
            calls!(|i| {
                let Some(f) = d.get(k(i)).map(|e| e.value().clone()) else {
                    continue;
                };
                let mut svc =
                    tower::retry::Retry::new(Attempts(3), tower::service_fn(|x| f.call(op(x))));
                tower_call!(&mut svc, i).is_ok()
            })
        }
        _ => return None,
    })
}

/// The operation of the cases that trip a breaker: fails at once.
fn fail() -> std::future::Ready<Result<u64, Failure>> {
    ready(Err(Failure))
}

fn open_rejection(rt: &tokio::runtime::Runtime, function: &str) -> Option<Calls> {
    use failsafe::futures::CircuitBreaker as _;
    let p: SafeCall<Failure> = SafeCall::default();
    Some(match function {
        "safecall_default" | "safecall_count" | "safecall_consecutive" => {
            let (_, config) = safecall_configs::all()
                .into_iter()
                .find(|(c, _)| function.ends_with(c))?;
            let b = Breaker::new(config.open_duration(HOUR));
            trip(&b);
            calls!(|i| p.call(|| op(i)).breaker(&b).await.is_err())
        }
        "recloser" => {
            let r = recloser::AsyncRecloser::from(recloser_breaker(HOUR));
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = r.call(fail()).await;
                }
            });
            calls!(|i| r.call(op(i)).await.is_err())
        }
        "failsafe" => {
            let f = failsafe_breaker(HOUR);
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = f.call(fail()).await;
                }
            });
            calls!(|i| f.call(op(i)).await.is_err())
        }
        "tower_resilience" => {
            let layer = tower_resilience_layer(HOUR);
            let mut svc = layer.layer_fn(tower::service_fn(|_: u64| fail()));
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = tower_call!(&mut svc, 0);
                }
            });
            calls!(|i| tower_call!(&mut svc, i).is_err())
        }
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let svc = (
                seatbelt_breaker(&ctx, HOUR),
                Execute::new(move |_: u64| fail()),
            )
                .into_service();
            rt.block_on(async {
                for _ in 0..200 {
                    let _ = svc.execute(0).await;
                }
            });
            calls!(|i| svc.execute(i).await.is_err())
        }
        _ => return None,
    })
}

fn zero_delay(rt: &tokio::runtime::Runtime, function: &str) -> Option<Calls> {
    let c: &'static Cell<u32> = leak(Cell::new(0));
    Some(match function {
        "safecall" => {
            let p = zero_delay_policy();
            calls!(|_i| p.call(|| fails_twice(c)).await.is_ok())
        }
        "tower_retry" => {
            let mut svc =
                tower::retry::Retry::new(Attempts(3), tower::service_fn(|_: u64| fails_twice(c)));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "seatbelt" => {
            let ctx = rt.block_on(async { seatbelt_context() });
            let layer = seatbelt_retry(&ctx)
                .backoff(seatbelt::retry::Backoff::Constant)
                .base_delay(Duration::ZERO)
                .use_jitter(false);
            let svc = (layer, Execute::new(|_: u64| fails_twice_send())).into_service();
            calls!(|i| svc.execute(i).await.is_ok())
        }
        "backon" => {
            use backon::Retryable;
            calls!(|_i| (|| fails_twice(c))
                .retry(
                    backon::ConstantBuilder::default()
                        .with_delay(Duration::ZERO)
                        .with_max_times(3),
                )
                .await
                .is_ok())
        }
        "tokio_retry2" => calls!(|_i| {
            let strategy = tokio_retry2::strategy::FixedInterval::from_millis(0).take(3);
            tokio_retry2::Retry::spawn(strategy, || async {
                fails_twice(c)
                    .await
                    .map_err(tokio_retry2::RetryError::transient)
            })
            .await
            .is_ok()
        }),
        _ => return None,
    })
}

fn tower_stack(function: &str) -> Option<Calls> {
    let policy: SafeCall<Failure> = SafeCall::default();
    Some(match function {
        "bare_service" => {
            let mut svc = tower::service_fn(op);
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "tower_retry" => {
            let mut svc = ServiceBuilder::new()
                .layer(tower::retry::RetryLayer::new(Attempts(3)))
                .service(tower::service_fn(op));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "safecall_layer" => {
            let mut svc = ServiceBuilder::new()
                .layer(SafeCallLayer::new(policy))
                .service(tower::service_fn(op));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "safecall_layer_no_budget" => {
            let mut svc = ServiceBuilder::new()
                .layer(SafeCallLayer::new(no_budget_policy()))
                .service(tower::service_fn(op));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "safecall_layer_breaker" => {
            let registry: BreakerRegistry<u64> = BreakerRegistry::new(BreakerConfig::default());
            let mut svc = ServiceBuilder::new()
                .layer(SafeCallLayer::new(policy).breakers(registry, |_: &u64| 7))
                .service(tower::service_fn(op));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        "tower_resilience" => {
            let layer = tower_resilience_layer(OPEN);
            let mut svc =
                tower::retry::Retry::new(Attempts(3), layer.layer_fn(tower::service_fn(op)));
            calls!(|i| tower_call!(&mut svc, i).is_ok())
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every case runs, and each call ends as the case says (a success, or a
    /// rejection for the open-breaker cases).
    #[test]
    fn every_case_runs_and_ends_as_named() {
        // backon and tokio-retry2 sleep on the wall clock even for a zero delay.
        let sleeps = [
            "three_attempts_zero_delay/backon",
            "three_attempts_zero_delay/tokio_retry2",
        ];
        for &case in CASES.iter().filter(|c| !sleeps.contains(c)) {
            let got = run(case, 3);
            assert_eq!(got, Some(3), "{case}");
        }
    }
}
