//! loom models of the time window's lock-free counts: outcomes recorded into
//! one bucket at once, a record racing the reuse of its bucket's slot by a
//! newer epoch, and pending successes dated while a failure is recorded. The
//! window takes its times as arguments, so the models need no clock.
//!
//! Run with
//! `RUSTFLAGS="--cfg safecall_loom" cargo test --lib --release loom_model`
//! (with the tracker's models; exhaustive: no preemption bound).

use loom::sync::Arc;
use loom::thread;

use super::*;
use crate::sync::model;

const SEC: u64 = 1_000_000_000;

/// 10 buckets of 1 s.
fn window() -> Arc<TimeWindow> {
    Arc::new(TimeWindow::new(10, SEC))
}

#[test]
fn outcomes_recorded_at_once_into_one_bucket_are_all_counted() {
    model(|| {
        let w = window();
        let w2 = w.clone();
        let t = thread::spawn(move || w2.record(SEC / 2, true));
        w.record(SEC / 3, false);
        // A look at the counts meanwhile sees none, one or both.
        let seen = w.stats(SEC / 2);
        assert!(seen.calls <= 2 && seen.failures <= seen.calls);
        t.join().unwrap();
        assert_eq!(
            w.stats(SEC / 2),
            WindowStats {
                calls: 2,
                failures: 1
            }
        );
    });
}

#[test]
fn a_late_record_never_lands_in_its_slots_newer_epoch() {
    model(|| {
        let w = window();
        let w2 = w.clone();
        // Slot 0 of epoch 0 (a recorder that read the clock long ago) and
        // slot 0 of epoch 10, in either order.
        let t = thread::spawn(move || w2.add(SEC / 2, 1, 1));
        w.add(10 * SEC + SEC / 2, 0, 1);
        t.join().unwrap();
        // Whatever the order, the newer epoch holds its own call only: the
        // old one was dropped, or reset by the newer one.
        assert_eq!(
            w.stats(10 * SEC + SEC / 2),
            WindowStats {
                calls: 1,
                failures: 0
            }
        );
    });
}

#[test]
fn pending_successes_dated_while_a_failure_lands_are_all_counted() {
    model(|| {
        let w = window();
        w.flush(0); // a reading at 0
        let w2 = w.clone();
        let t = thread::spawn(move || {
            // Two successes counted without the clock, then dated.
            w2.defer_success();
            w2.defer_success();
            w2.flush(2 * SEC);
        });
        w.record(SEC, true);
        t.join().unwrap();
        // Each success dated once, in the window, beside the failure: the
        // failure's record may date them first (its flush takes the pending
        // count with a swap), or the other thread's flush does.
        assert_eq!(
            w.stats(3 * SEC),
            WindowStats {
                calls: 3,
                failures: 1
            }
        );
    });
}
