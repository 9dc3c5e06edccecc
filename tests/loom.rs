//! A loom model of the breaker's admission, release and transitions.
//!
//! Run with `RUSTFLAGS="--cfg safecall_loom" cargo test --test loom --release`
//! (exhaustive: no preemption bound; well under a second).
//! Under `--cfg safecall_loom` the crate's `sync` facade swaps std's atomics and mutex
//! for loom's, so loom explores every interleaving of the fast paths (atomic
//! state word, consecutive count, refusal deadline) with the locked
//! transitions.
//!
//! The cfg is `safecall_loom`, not the customary `loom`: under `--cfg loom`
//! tokio configures out `tokio::net`, and the HTTP dev-dependencies of the
//! examples (hyper-util) no longer build.
#![cfg(safecall_loom)]

use std::time::Duration;

use loom::sync::Arc;
use loom::sync::atomic::AtomicUsize;
use loom::sync::atomic::Ordering::SeqCst;
use loom::thread;

use safecall::{Breaker, BreakerConfig, BreakerState, Outcome};

fn model(f: impl Fn() + Sync + Send + 'static) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut b = loom::model::Builder::new();
    b.preemption_bound = None;
    let before = RUNS.load(std::sync::atomic::Ordering::Relaxed);
    b.check(move || {
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let runs = RUNS.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(
        runs > 1,
        "loom explored {runs} interleaving(s): is the sync facade in use?"
    );
    eprintln!("loom explored {runs} interleavings");
}

fn config() -> BreakerConfig {
    BreakerConfig::default()
        .consecutive_failures(1)
        .no_failure_rate()
        // The model runs on the real clock: a 1 ns open period is over by
        // the time the threads run, and a lease of an hour never runs out.
        .open_duration(Duration::from_nanos(1))
        .probe_lease(Duration::from_secs(3600))
}

fn half_open(b: &Breaker) {
    b.try_acquire().expect("closed").record(Outcome::Failure);
    while b.state() != BreakerState::HalfOpen {
        std::hint::spin_loop();
    }
}

#[test]
fn racing_callers_never_hold_more_probes_than_slots() {
    model(|| {
        let b = Breaker::new(config());
        half_open(&b);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|i| {
                let (b, in_flight) = (b.clone(), Arc::clone(&in_flight));
                thread::spawn(move || {
                    let Ok(p) = b.try_acquire() else { return };
                    if !p.is_probe() {
                        return; // the other probe closed the breaker first
                    }
                    let n = in_flight.fetch_add(1, SeqCst) + 1;
                    assert!(n <= 1, "two probes in flight with one slot");
                    in_flight.fetch_sub(1, SeqCst);
                    if i == 0 {
                        p.record(Outcome::Success);
                    } else {
                        drop(p); // cancelled
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let snap = b.snapshot();
        assert_eq!(snap.probes_in_flight, 0, "no slot leaked");
        if snap.state == BreakerState::HalfOpen {
            assert!(
                b.try_acquire().unwrap().is_probe(),
                "a free slot admits the next probe"
            );
        }
    });
}

#[test]
fn concurrent_failure_and_success_trip_exactly_once() {
    model(|| {
        let b = Breaker::new(config().open_duration(Duration::from_secs(3600)));
        let p = b.try_acquire().unwrap();
        let b2 = b.clone();
        let t = thread::spawn(move || {
            if let Ok(p) = b2.try_acquire() {
                p.record(Outcome::Success);
            }
        });
        p.record(Outcome::Failure);
        t.join().unwrap();
        let snap = b.snapshot();
        assert_eq!(snap.state, BreakerState::Open);
        assert_eq!(snap.generation, 1, "one transition");
    });
}

#[test]
fn reset_racing_a_probe_leaves_no_slot_taken() {
    model(|| {
        let b = Breaker::new(config());
        half_open(&b);
        let b2 = b.clone();
        let t = thread::spawn(move || {
            if let Ok(p) = b2.try_acquire() {
                p.record(Outcome::Failure);
            }
        });
        b.reset();
        t.join().unwrap();
        let snap = b.snapshot();
        assert_eq!(snap.probes_in_flight, 0);
        // Either the probe failed before the reset (then reset closed it), or
        // after (stale: counted only), or the reset came first and the call was
        // a plain closed call whose failure trips it again.
        assert!(matches!(
            snap.state,
            BreakerState::Closed | BreakerState::Open | BreakerState::HalfOpen
        ));
        b.reset();
        assert!(b.try_acquire().is_ok());
    });
}

/// Issue 11, defect 2: a failure of a call admitted in an earlier closed
/// generation, racing the probe that closes the breaker, adds nothing to the
/// new generation's streak in any interleaving (0.1 counted it when the close
/// came first).
#[test]
fn a_stale_failure_racing_a_close_adds_nothing_to_the_new_streak() {
    model(|| {
        // Leaked so that the permit moved to the other thread borrows it for
        // 'static (a few bytes per explored interleaving).
        let b: &'static Breaker =
            Box::leak(Box::new(Breaker::new(config().consecutive_failures(2))));
        let old = b.try_acquire().unwrap(); // admitted in generation 0
        b.try_acquire().unwrap().record(Outcome::Failure);
        b.try_acquire().unwrap().record(Outcome::Failure);
        while b.state() != BreakerState::HalfOpen {
            std::hint::spin_loop();
        }
        let probe = b.try_acquire().unwrap();
        assert!(probe.is_probe());
        let t = thread::spawn(move || old.record(Outcome::Failure));
        probe.record(Outcome::Success);
        t.join().unwrap();
        let snap = b.snapshot();
        assert_eq!(snap.state, BreakerState::Closed);
        assert_eq!(snap.consecutive_failures, 0);
        // One fresh failure of the two the rule needs: still closed.
        b.try_acquire().unwrap().record(Outcome::Failure);
        assert_eq!(b.state(), BreakerState::Closed);
    });
}

/// A count window cleared by a reset while another thread records into it
/// keeps exact totals: after `n` fresh outcomes it holds exactly those.
#[test]
fn a_count_window_record_racing_a_reset_keeps_exact_totals() {
    model(|| {
        let b = Breaker::new(
            BreakerConfig::default()
                .no_consecutive_failures()
                .count_window(1.0, 2)
                .minimum_calls(2),
        );
        let b2 = b.clone();
        let t = thread::spawn(move || {
            if let Ok(p) = b2.try_acquire() {
                p.record(Outcome::Failure);
            }
        });
        b.reset();
        t.join().unwrap();
        b.reset();
        b.try_acquire().unwrap().record(Outcome::Success);
        b.try_acquire().unwrap().record(Outcome::Success);
        let snap = b.snapshot();
        assert_eq!((snap.calls_in_window, snap.failures_in_window), (2, 0));
    });
}

/// The bulkhead's permit: two threads racing for one slot never both hold it,
/// and every permit comes back.
#[test]
fn a_bulkhead_slot_is_held_by_one_thread_at_a_time() {
    use safecall::{Bulkhead, BulkheadConfig};
    model(|| {
        let b = Bulkhead::new(BulkheadConfig::max_concurrent(1));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (b, inside) = (b.clone(), Arc::clone(&inside));
                thread::spawn(move || {
                    if let Some(permit) = b.try_acquire() {
                        let n = inside.fetch_add(1, SeqCst) + 1;
                        assert_eq!(n, 1, "two holders of one slot");
                        inside.fetch_sub(1, SeqCst);
                        drop(permit);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(b.in_use(), 0);
        assert!(b.try_acquire().is_some());
    });
}
