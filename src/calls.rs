//! A count of events written by many threads, without a read-modify-write
//! per event: the retry budget's calls and a time window's pending
//! successes, both counted on the hot path of every call.
//!
//! An atomic increment there (a locked instruction) costs more than the rest
//! of a successful call. Instead, each thread that
//! deposits owns one *slot* of the counter, given out from a process-wide
//! pool the first time the thread deposits and returned when it ends. Only
//! the owner writes its slot, so it adds with a plain load and store; a
//! slot only ever grows. Threads beyond the slots share one counter, with
//! `fetch_add` as before.
//!
//! A reader sums the slots and takes what was added since the last reading
//! (the budget under its lock; a time window with a `fetch_max` of the total
//! it has dated): an event is never lost (its slot keeps it) and never taken
//! twice (readers write nothing into the slots). A slot handed to a new thread is taken over with
//! the value the old one left: the pool's lock orders the old thread's last
//! store before the new thread's first load.
//!
//! # Examples
//!
//! The counter is internal; the budget it counts calls for is public:
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

/// The most slots a counter can have: thread slot indexes run below it.
/// The first threads that count own one; later threads (while those live),
/// and threads past a counter's own `N`, share its `shared` counter.
const SLOTS: usize = 16;

/// A count written by many threads, with `N` (at most 16) slots, see the
/// module docs.
#[derive(Debug)]
pub(crate) struct Calls<const N: usize> {
    slots: [AtomicU64; N],
    shared: AtomicU64,
}

impl<const N: usize> Calls<N> {
    pub(crate) fn new() -> Self {
        Self {
            slots: std::array::from_fn(|_| AtomicU64::new(0)),
            shared: AtomicU64::new(0),
        }
    }

    /// Counts one event. Returns the count of the slot it went into, so that
    /// the caller can act on every n-th event of a thread.
    #[inline]
    pub(crate) fn add(&self) -> u64 {
        match thread_slot().and_then(|i| self.slots.get(i)) {
            Some(slot) => {
                // Only this thread writes this slot: no lost update.
                let n = slot.load(Ordering::Relaxed).wrapping_add(1);
                slot.store(n, Ordering::Relaxed);
                n
            }
            None => self.shared.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
        }
    }

    /// Every event counted so far, as far as this thread sees the slots (a
    /// slot never shrinks: a later reading ordered after an earlier one
    /// never sees less).
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
        let c = Calls::<16>::new();
        for k in 1..=100 {
            assert_eq!(c.add(), k);
        }
        assert_eq!(c.total(), 100);
    }

    #[test]
    fn threads_past_the_slots_and_threads_that_come_and_go_lose_no_call() {
        let c = Arc::new(Calls::<16>::new());
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
