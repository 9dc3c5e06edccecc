//! A small facade over the synchronisation primitives the breaker uses, so that
//! `--cfg safecall_loom` swaps std's atomics and mutex for loom's model-checked ones.

#[cfg(not(safecall_loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(safecall_loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};

#[cfg(safecall_loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(safecall_loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};

/// Lock a mutex, recovering the data if a thread panicked while holding it.
///
/// Every critical section in this crate leaves the state consistent at each
/// step (it applies one pure transition), so a poisoned lock is safe to reuse.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    #[cfg(not(safecall_loom))]
    {
        m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    #[cfg(safecall_loom)]
    {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Runs a loom model exhaustively (no preemption bound) and checks that loom
/// explored more than one interleaving: one alone means the code under test
/// does not go through this facade.
#[cfg(all(test, safecall_loom))]
pub(crate) fn model(f: impl Fn() + Sync + Send + 'static) {
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
