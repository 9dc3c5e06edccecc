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
