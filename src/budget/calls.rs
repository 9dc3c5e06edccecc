//! The budget's count of calls, without a read-modify-write per call.
//!
//! Every call of a policy deposits into its budget, so the deposit is on the
//! hot path of every call; an atomic increment there (a locked instruction)
//! costs more than the rest of a successful call. Instead, each thread that
//! deposits owns one *slot* of the counter, given out from a process-wide
//! pool the first time the thread deposits and returned when it ends. Only
//! the owner writes its slot, so it adds with a plain load and store; a
//! slot only ever grows. Threads beyond the slots share one counter, with
//! `fetch_add` as before.
//!
//! The budget reads the sum of the slots under its lock and dates what was
//! added since its last reading: a call is never lost (its slot keeps it) and
//! never counted twice (the reader writes nothing into the slots; it keeps
//! the total it has dated). A slot handed to a new thread is taken over with
//! the value the old one left: the pool's lock orders the old thread's last
//! store before the new thread's first load.
//!
//! # Examples
//!
//! The counter is internal; the budget it counts for is public:
//!
//! ```
//! use safecall::SafeCall;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy: SafeCall<std::io::Error> = SafeCall::default(); // a budget of 20 %
//! for _ in 0..100 {
//!     policy.call(|| async { Ok::<_, std::io::Error>(()) }).await.unwrap();
//! }
//! # }
//! ```

use crate::sync::{AtomicU64, Ordering};

/// Slots per counter: the first 16 threads that deposit own one; later
/// threads (while those 16 live) share [`Calls::shared`].
const SLOTS: usize = 16;

/// A count of calls written by many threads, see the module docs.
#[derive(Debug)]
pub(crate) struct Calls {
    slots: [AtomicU64; SLOTS],
    shared: AtomicU64,
}

impl Calls {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            shared: AtomicU64::new(0),
        }
    }

    /// Counts one call. Returns the count of the slot it went into, so that
    /// the caller can act on every n-th call of a thread.
    #[inline]
    pub(crate) fn add(&self) -> u64 {
        match thread_slot().and_then(|i| self.slots.get(i)) {
            Some(slot) => {
                // Only this thread writes this slot: no lost update.
                let n = slot.load(Ordering::Relaxed) + 1;
                slot.store(n, Ordering::Relaxed);
                n
            }
            None => self.shared.fetch_add(1, Ordering::Relaxed) + 1,
        }
    }

    /// Every call counted so far (as far as this thread sees the slots).
    /// Read under the budget's lock, two readings are ordered, and the
    /// later one never sees a slot smaller than the earlier one did.
    pub(crate) fn total(&self) -> u64 {
        self.slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .fold(self.shared.load(Ordering::Relaxed), u64::wrapping_add)
    }
}

/// This thread's slot: `None` for a thread past the slots, or one that is
/// ending (its thread-locals already gone).
#[cfg(not(safecall_loom))]
#[inline]
fn thread_slot() -> Option<usize> {
    thread_local! {
        static SLOT: pool::Slot = pool::Slot::take();
    }
    SLOT.try_with(pool::Slot::index).ok().flatten()
}

/// Under loom every model thread runs on one OS thread, so they would share
/// one thread-local slot: they count in the shared counter instead.
#[cfg(safecall_loom)]
#[inline]
fn thread_slot() -> Option<usize> {
    None
}

#[cfg(not(safecall_loom))]
mod pool {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, PoisonError};

    use super::SLOTS;

    /// Slots never given out yet start at this index.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    /// Slots given back by threads that ended.
    static FREE: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    /// A thread's slot index, the same in every counter; given back to the
    /// pool when the thread ends.
    pub(super) struct Slot(Option<usize>);

    impl Slot {
        pub(super) fn take() -> Self {
            let reused = FREE.lock().unwrap_or_else(PoisonError::into_inner).pop();
            Slot(reused.or_else(|| {
                let i = NEXT.fetch_add(1, Ordering::Relaxed);
                if i >= SLOTS {
                    // Keep the index from ever wrapping back into range.
                    NEXT.store(SLOTS, Ordering::Relaxed);
                    return None;
                }
                Some(i)
            }))
        }

        pub(super) fn index(&self) -> Option<usize> {
            self.0
        }
    }

    impl Drop for Slot {
        fn drop(&mut self) {
            if let Some(i) = self.0 {
                // The lock orders this thread's last store into the slot
                // before the first load of the thread that takes it next.
                FREE.lock().unwrap_or_else(PoisonError::into_inner).push(i);
            }
        }
    }
}

#[cfg(all(test, not(safecall_loom)))]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn one_thread_counts_every_call() {
        let c = Calls::new();
        for k in 1..=100 {
            assert_eq!(c.add(), k);
        }
        assert_eq!(c.total(), 100);
    }

    #[test]
    fn threads_past_the_slots_and_threads_that_come_and_go_lose_no_call() {
        let c = Arc::new(Calls::new());
        // More threads at once than slots: some share the counter.
        let threads: Vec<_> = (0..SLOTS + 8)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        c.add();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // Then threads one after another, taking over slots given back.
        for _ in 0..40 {
            let c = c.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    c.add();
                }
            })
            .join()
            .unwrap();
        }
        assert_eq!(c.total(), (SLOTS as u64 + 8) * 1_000 + 400);
    }
}
