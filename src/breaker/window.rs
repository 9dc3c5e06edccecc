//! The failure-rate windows: lock-free counters that many threads record into.
//!
//! A *time window* keeps `n` buckets of `width` each; a call is counted in the
//! bucket its completion time falls in, and a bucket older than `n` widths is
//! ignored and reused. Each bucket is one `AtomicU64` holding
//! `epoch:24 | failures:20 | calls:20`, so a rotation and a count are one
//! compare-and-swap: a count can never land in a bucket that was just reset
//! for a newer epoch. A bucket that reaches 2^20 - 1 calls halves both of its
//! counts (the ratio is kept, the window becomes a sample).
//!
//! A success does not read the clock while the window holds no failure: the
//! failure rate is then zero wherever the success lands, so it is only counted
//! as *pending*, in its thread's slot of a per-thread count (the crate's
//! `calls` module: no read-modify-write). Pending successes are dated at the
//! next clock reading (every 16th success of a thread, any failure, any look
//! at the statistics), spread evenly over
//! the time since the previous reading; the part of that time that has left the
//! window is dropped. Once the window may hold a failure, every outcome reads
//! the clock and lands in its exact bucket, so the trip decision is made on
//! exact counts. The estimate only ever places a success within the span
//! between two readings it really fell in.
//!
//! A *count window* keeps the last `n` outcomes in a ring of bytes, with
//! running totals; it needs no clock. The ring sits behind a mutex, with the
//! closed generation it counts: a record and a clear are then atomic with
//! respect to each other (lock-free slots and totals let a record racing a
//! clear leave the failure total off by one for good), and an outcome of an
//! earlier generation is dropped under the same lock, exactly. Only the
//! "may hold a failure" hint is read without the lock.
//!
//! # Examples
//!
//! The windows are internal; the rule they feed is public:
//!
//! ```
//! use safecall::{Breaker, BreakerConfig, BreakerState, Outcome};
//! use std::time::Duration;
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let breaker = Breaker::new(
//!     BreakerConfig::default()
//!         .no_consecutive_failures()
//!         .failure_rate(0.5, Duration::from_secs(10))
//!         .minimum_calls(4),
//! );
//! for outcome in [Outcome::Success, Outcome::Failure, Outcome::Success, Outcome::Failure] {
//!     breaker.try_acquire().unwrap().record(outcome);
//! }
//! assert_eq!(breaker.state(), BreakerState::Open);
//! # }
//! ```

use crate::breaker::config::RateRule;
use crate::calls::Calls;
use crate::sync::{AtomicU32, AtomicU64, Mutex, Ordering, lock};

const FIELD_BITS: u32 = 20;
const FIELD_MAX: u64 = (1 << FIELD_BITS) - 1;
const EPOCH_BITS: u32 = 24;
const EPOCH_MASK: u64 = (1 << EPOCH_BITS) - 1;

/// Calls and failures currently in a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WindowStats {
    pub(crate) calls: u32,
    pub(crate) failures: u32,
}

impl WindowStats {
    /// Whether these counts trip a rule of `ratio` with `minimum_calls`.
    pub(crate) fn trips(self, ratio: f64, minimum_calls: u32) -> bool {
        // `minimum_calls` is at least 1; `calls > 0` states the guard the
        // ratio needs rather than relying on that.
        self.calls >= minimum_calls
            && self.calls > 0
            && f64::from(self.failures) >= ratio * f64::from(self.calls)
    }

    /// The failure ratio, 0 when empty.
    pub(crate) fn rate(self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            f64::from(self.failures) / f64::from(self.calls)
        }
    }
}

/// A window of either kind (or none).
#[derive(Debug)]
pub(crate) enum Window {
    None,
    Time(TimeWindow),
    Count(CountWindow),
}

impl Window {
    /// A window for `rule`, counting the outcomes of closed generation
    /// `generation`.
    pub(crate) fn new(rule: RateRule, generation: u32) -> Self {
        match rule {
            RateRule::None => Window::None,
            RateRule::Time {
                buckets,
                width_nanos,
                ..
            } => Window::Time(TimeWindow::new(buckets, width_nanos)),
            RateRule::Count { calls, .. } => Window::Count(CountWindow::new(calls, generation)),
        }
    }

    /// Date the pending successes of a time window at `at`.
    pub(crate) fn settle(&self, at: u64) {
        if let Window::Time(w) = self {
            w.flush(at);
        }
    }

    /// Record one outcome of an attempt admitted in closed generation
    /// `generation` (`None`: a metrics-only shadow call, always recorded);
    /// `at` is nanoseconds since the breaker's time base (ignored by a count
    /// window).
    ///
    /// A count window drops an outcome of another generation under its lock.
    /// A time window takes its callers' word: they record failures under the
    /// machine's lock, after checking the generation there (the lock
    /// [`clear`](Self::clear) runs under), and successes after a lock-free
    /// check of the state word.
    pub(crate) fn record(&self, at: u64, failed: bool, generation: Option<u32>) {
        match self {
            Window::None => {}
            Window::Time(w) => w.record(at, failed),
            Window::Count(w) => w.record(failed, generation),
        }
    }

    pub(crate) fn stats(&self, at: u64) -> WindowStats {
        match self {
            Window::None => WindowStats::default(),
            Window::Time(w) => w.stats(at),
            Window::Count(w) => w.stats(),
        }
    }

    /// Empty the window for closed generation `generation`. Called under
    /// the machine's lock, before the generation is published.
    pub(crate) fn clear(&self, generation: u32) {
        match self {
            Window::None => {}
            Window::Time(w) => w.clear(),
            Window::Count(w) => w.clear(generation),
        }
    }

    /// Whether the window may hold a failure at `at`: when it cannot, the
    /// failure rate is zero and a success need not sum the buckets.
    #[inline]
    pub(crate) fn may_hold_failures(&self, at: u64) -> bool {
        match self {
            Window::None => false,
            Window::Time(w) => w.may_hold_failures(at),
            Window::Count(w) => w.may_hold_failures(),
        }
    }
}

/// Successes of a thread between two clock readings while the window holds
/// no failure.
const READ_EVERY: u64 = 16;

/// Slots of the pending successes' count: one cache line.
const SUCCESS_SLOTS: usize = 8;

/// Time-bucketed counts, see the module docs.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    buckets: Box<[AtomicU64]>,
    width: u64,
    /// How long a failure may stay in the window, plus a bucket of margin:
    /// `width × (buckets + 1)`, computed once for the successes' hint.
    hold: u64,
    /// 1 + the time of the latest recorded failure (0: none since cleared).
    last_failure: AtomicU64,
    /// Successes counted; those past `dated` are pending.
    successes: Calls<SUCCESS_SLOTS>,
    /// How many of `successes` have been dated (or dropped by a clear): the
    /// highest total a flush has taken.
    dated: AtomicU64,
    /// 1 + the time of the latest clock reading (0: none since cleared).
    last_read: AtomicU64,
}

fn pack(epoch: u64, failures: u64, calls: u64) -> u64 {
    // The fields occupy separate bits.
    (epoch << (2 * FIELD_BITS)) | (failures << FIELD_BITS) | calls
}

fn unpack(v: u64) -> (u64, u64, u64) {
    (
        v >> (2 * FIELD_BITS),
        (v >> FIELD_BITS) & FIELD_MAX,
        v & FIELD_MAX,
    )
}

impl TimeWindow {
    pub(crate) fn new(buckets: u32, width_nanos: u64) -> Self {
        let buckets = buckets.max(1);
        let width = width_nanos.max(1);
        Self {
            buckets: (0..buckets).map(|_| AtomicU64::new(0)).collect(),
            width,
            // A failure at `t` stays in the window at most `n × width - 1`
            // after it; one bucket more is a margin that only costs clock
            // reads.
            hold: width.saturating_mul(u64::from(buckets) + 1),
            last_failure: AtomicU64::new(0),
            successes: Calls::new(),
            dated: AtomicU64::new(0),
            last_read: AtomicU64::new(0),
        }
    }

    /// Count a success as pending; `true` if the clock must be read now: every
    /// [`READ_EVERY`]th success, and every success while the window may hold
    /// a failure (judged at the latest reading, which can only err towards
    /// reading).
    #[inline]
    pub(crate) fn defer_success(&self) -> bool {
        if self.successes.add() % READ_EVERY == 0 {
            return true;
        }
        let read = self.last_read.load(Ordering::Relaxed);
        self.may_hold_failures(read.saturating_sub(1))
    }

    /// Date the pending successes: spread evenly over the time since the
    /// previous reading, the part before the window dropped.
    pub(crate) fn flush(&self, at: u64) {
        let previous = self
            .last_read
            .fetch_max(at.saturating_add(1), Ordering::Relaxed);
        // Take what no other flush has: each success is dated once.
        let total = self.successes.total();
        let pending = total.saturating_sub(self.dated.fetch_max(total, Ordering::Relaxed));
        if pending == 0 {
            return;
        }
        // Never read: the window's time base (its creation) bounds them.
        let from = previous.saturating_sub(1).min(at);
        let span = at - from;
        let (first_idx, last_idx) = (from / self.width, at / self.width);
        // One bucket: all of them go there, without the proportional split.
        if span == 0 || first_idx == last_idx {
            self.add(at, 0, pending);
            return;
        }
        let n = self.buckets.len() as u64;
        // Buckets older than the window are skipped: they share their slots
        // with newer ones.
        let oldest = first_idx.max(last_idx.saturating_sub(n - 1));
        // How many of the pending successes fell before time `x`, if they
        // arrived evenly; the shares of consecutive buckets add up exactly.
        let before = |x: u64| -> u64 {
            let part = u128::from(pending) * u128::from(x - from) / u128::from(span);
            u64::try_from(part).unwrap_or(pending)
        };
        for idx in oldest..=last_idx {
            let lo = (idx * self.width).max(from);
            let hi = if idx == last_idx {
                at
            } else {
                ((idx + 1) * self.width).min(at)
            };
            let share = if idx == last_idx {
                pending - before(lo)
            } else {
                before(hi) - before(lo)
            };
            if share > 0 {
                self.add(lo, 0, share);
            }
        }
    }

    fn index(&self, at: u64) -> (usize, u64) {
        let idx = at / self.width;
        // The slot is the index modulo the bucket count; buckets.len() ≤ 1024.
        let slot = (idx % self.buckets.len() as u64) as usize;
        (slot, idx & EPOCH_MASK)
    }

    #[inline]
    fn may_hold_failures(&self, at: u64) -> bool {
        let last = self.last_failure.load(Ordering::Relaxed);
        last != 0 && at.saturating_sub(last - 1) < self.hold
    }

    pub(crate) fn record(&self, at: u64, failed: bool) {
        self.flush(at);
        if failed {
            self.last_failure
                .fetch_max(at.saturating_add(1), Ordering::Relaxed);
        }
        self.add(at, u64::from(failed), 1);
    }

    /// Add `calls` outcomes, `failures` of them failed, to the bucket of `at`.
    fn add(&self, at: u64, failures: u64, calls: u64) {
        let calls = calls.min(FIELD_MAX);
        let failures = failures.min(calls);
        let (slot, epoch) = self.index(at);
        let Some(bucket) = self.buckets.get(slot) else {
            return;
        };
        let mut cur = bucket.load(Ordering::Relaxed);
        loop {
            let (e, mut f, mut c) = unpack(cur);
            if e != epoch {
                let ahead = e.wrapping_sub(epoch) & EPOCH_MASK;
                // Epochs wrap: "ahead" is less than half the epoch space
                // (2^23 windows, years).
                if ahead != 0 && ahead < (1 << (EPOCH_BITS - 1)) {
                    // The bucket already holds a newer epoch: this outcome's
                    // time has left the window (a recorder that read the clock
                    // long ago). Dropping it is exact.
                    return;
                }
                f = 0;
                c = 0;
            }
            while c + calls > FIELD_MAX {
                f >>= 1;
                c >>= 1;
            }
            let new = pack(epoch, f + failures, c + calls);
            match bucket.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(actual) => cur = actual,
            }
        }
    }

    pub(crate) fn stats(&self, at: u64) -> WindowStats {
        self.flush(at);
        let (_, epoch) = self.index(at);
        let n = self.buckets.len() as u64;
        let mut s = WindowStats::default();
        for b in self.buckets.iter() {
            let (e, f, c) = unpack(b.load(Ordering::Relaxed));
            let age = epoch.wrapping_sub(e) & EPOCH_MASK;
            if age < n {
                // f, c ≤ 2^20 - 1, and at most 1024 buckets: fits in u32.
                s.calls = s.calls.saturating_add(c as u32);
                s.failures = s.failures.saturating_add(f as u32);
            }
        }
        s
    }

    pub(crate) fn clear(&self) {
        for b in self.buckets.iter() {
            b.store(0, Ordering::Relaxed);
        }
        self.last_failure.store(0, Ordering::Relaxed);
        // Successes pending now came before the clear; `last_read` stays, as
        // the lower bound of the ones to come.
        self.dated
            .fetch_max(self.successes.total(), Ordering::Relaxed);
    }
}

/// The last `n` outcomes, see the module docs.
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Mutex<Ring>,
    /// The ring's failure total, mirrored for the lock-free
    /// [`may_hold_failures`](Self::may_hold_failures): written under the lock.
    failures: AtomicU32,
}

#[derive(Debug)]
struct Ring {
    /// `EMPTY`, `OK` or `FAILED` per slot.
    slots: Box<[u8]>,
    head: usize,
    calls: u32,
    failures: u32,
    /// The closed generation whose outcomes the ring counts.
    generation: u32,
}

const EMPTY: u8 = 0;
const OK: u8 = 1;
const FAILED: u8 = 2;

impl CountWindow {
    pub(crate) fn new(n: u32, generation: u32) -> Self {
        Self {
            ring: Mutex::new(Ring {
                slots: vec![EMPTY; n.max(1) as usize].into_boxed_slice(),
                head: 0,
                calls: 0,
                failures: 0,
                generation,
            }),
            failures: AtomicU32::new(0),
        }
    }

    pub(crate) fn record(&self, failed: bool, generation: Option<u32>) {
        let mut r = lock(&self.ring);
        if generation.is_some_and(|g| g != r.generation) {
            return; // stale: it adds nothing to this generation's window
        }
        let i = r.head;
        r.head = if i + 1 == r.slots.len() { 0 } else { i + 1 };
        let new = if failed { FAILED } else { OK };
        let Some(slot) = r.slots.get_mut(i) else {
            return;
        };
        let old = std::mem::replace(slot, new);
        if old == EMPTY {
            r.calls += 1;
        }
        if old == FAILED {
            r.failures -= 1;
        }
        if failed {
            r.failures += 1;
        }
        self.failures.store(r.failures, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> WindowStats {
        let r = lock(&self.ring);
        WindowStats {
            calls: r.calls,
            failures: r.failures,
        }
    }

    fn may_hold_failures(&self) -> bool {
        self.failures.load(Ordering::Relaxed) > 0
    }

    pub(crate) fn clear(&self, generation: u32) {
        let mut r = lock(&self.ring);
        r.slots.fill(EMPTY);
        r.head = 0;
        r.calls = 0;
        r.failures = 0;
        r.generation = generation;
        self.failures.store(0, Ordering::Relaxed);
    }
}

#[cfg(all(test, safecall_loom))]
mod loom_model;

#[cfg(all(test, not(safecall_loom)))]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn pending_successes_are_spread_evenly_between_readings() {
        let w = TimeWindow::new(10, 3 * SEC);
        w.flush(0); // a reading at 0
        for _ in 0..10 {
            assert!(!w.defer_success());
        }
        // Dated at 6 s: half in 0..3 s, half in 3..6 s.
        w.flush(6 * SEC);
        assert_eq!(w.stats(6 * SEC).calls, 10);
        // At 30 s the bucket 0..3 s leaves the window with its 5.
        assert_eq!(w.stats(30 * SEC).calls, 5);
        assert_eq!(w.stats(33 * SEC).calls, 0);
    }

    #[test]
    fn pending_successes_are_spread_from_the_previous_reading() {
        let w = TimeWindow::new(10, 3 * SEC);
        w.flush(3 * SEC); // a reading at 3 s
        for _ in 0..10 {
            assert!(!w.defer_success());
        }
        // Dated at 9 s: evenly over 3..9 s, half in 3..6 s, half in 6..9 s.
        w.flush(9 * SEC);
        assert_eq!(w.stats(9 * SEC).calls, 10);
        assert_eq!(w.stats(33 * SEC).calls, 5, "the 3..6 s bucket has left");
    }

    #[test]
    fn settling_dates_the_pending_successes_at_that_instant() {
        let tw = TimeWindow::new(10, 3 * SEC);
        tw.flush(0);
        for _ in 0..10 {
            assert!(!tw.defer_success());
        }
        let w = Window::Time(tw);
        // Settled at 2 s: all in the first bucket, gone from the window at 30 s.
        w.settle(2 * SEC);
        assert_eq!(w.stats(31 * SEC).calls, 0);
    }

    #[test]
    fn a_record_older_than_its_bucket_is_dropped_not_written_over_newer_counts() {
        let w = TimeWindow::new(10, 3 * SEC);
        w.record(31 * SEC, true); // bucket 10, slot 0
        // A recorder that read the clock at 1 s (bucket 0, the same slot) and
        // records late: its outcome has left the window, it must not reset the
        // newer bucket.
        w.add(SEC, 0, 1);
        assert_eq!(
            w.stats(31 * SEC),
            WindowStats {
                calls: 1,
                failures: 1
            }
        );
    }

    #[test]
    fn a_full_bucket_halves_its_counts_and_keeps_the_ratio() {
        let w = TimeWindow::new(10, 3 * SEC);
        w.add(0, 0, FIELD_MAX - 1);
        w.add(0, 1, 1); // exactly full: no halving
        assert_eq!(
            w.stats(0),
            WindowStats {
                calls: FIELD_MAX as u32,
                failures: 1
            }
        );
        w.add(0, 1, 1); // over: halve, then count
        assert_eq!(
            w.stats(0),
            WindowStats {
                calls: (FIELD_MAX >> 1) as u32 + 1,
                failures: 1
            }
        );
    }

    #[test]
    fn every_16th_success_and_any_possible_failure_ask_for_the_clock() {
        let w = TimeWindow::new(10, 3 * SEC);
        let asks = (0..32).filter(|_| w.defer_success()).count();
        assert_eq!(asks, 2);
        w.record(SEC, true);
        assert!(w.defer_success(), "a failure is in the window");
    }

    #[test]
    fn counts_land_in_their_bucket_and_expire_bucket_by_bucket() {
        // 10 buckets of 3 s = a 30 s window.
        let w = TimeWindow::new(10, 3 * SEC);
        w.record(0, false);
        w.record(SEC, true);
        w.record(4 * SEC, true);
        assert_eq!(
            w.stats(4 * SEC),
            WindowStats {
                calls: 3,
                failures: 2
            }
        );
        // At 30 s the first bucket (0..3 s) has left the window.
        assert_eq!(
            w.stats(29 * SEC),
            WindowStats {
                calls: 3,
                failures: 2
            }
        );
        assert_eq!(
            w.stats(30 * SEC),
            WindowStats {
                calls: 1,
                failures: 1
            }
        );
        assert_eq!(
            w.stats(33 * SEC),
            WindowStats {
                calls: 0,
                failures: 0
            }
        );
        // The reused slot starts from zero.
        w.record(33 * SEC, false);
        assert_eq!(
            w.stats(33 * SEC),
            WindowStats {
                calls: 1,
                failures: 0
            }
        );
    }

    #[test]
    fn late_recorder_cannot_reset_a_newer_bucket() {
        let w = TimeWindow::new(2, SEC);
        w.record(2 * SEC, true); // slot 0, epoch 2
        w.record(0, false); // slot 0, epoch 0: older than the window
        assert_eq!(
            w.stats(2 * SEC),
            WindowStats {
                calls: 1,
                failures: 1
            }
        );
    }

    #[test]
    fn window_counts_match_a_naive_log_over_a_long_run() {
        let width = 3 * SEC;
        let w = TimeWindow::new(10, width);
        let mut log: Vec<(u64, bool)> = Vec::new();
        let mut t = 0u64;
        let mut x = 12345u64;
        for _ in 0..5000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            t += x % (2 * SEC);
            let failed = x % 3 == 0;
            w.record(t, failed);
            log.push((t, failed));
            let cur = t / width;
            let expected = log.iter().filter(|(at, _)| at / width + 10 > cur).fold(
                WindowStats::default(),
                |mut s, (_, f)| {
                    s.calls += 1;
                    s.failures += u32::from(*f);
                    s
                },
            );
            assert_eq!(w.stats(t), expected, "at {t}");
        }
    }

    #[test]
    fn saturated_bucket_halves_and_keeps_the_ratio() {
        let w = TimeWindow::new(1, SEC);
        for i in 0..(FIELD_MAX + 10) {
            w.record(0, i % 2 == 0);
        }
        let s = w.stats(0);
        assert!(s.calls < FIELD_MAX as u32 && s.calls > (FIELD_MAX / 2) as u32);
        assert!((s.rate() - 0.5).abs() < 0.01);
    }

    #[test]
    fn failure_hint_covers_exactly_the_window() {
        let w = Window::Time(TimeWindow::new(10, 3 * SEC));
        assert!(!w.may_hold_failures(0));
        w.record(5 * SEC, false, None);
        assert!(!w.may_hold_failures(5 * SEC), "successes only");
        w.record(5 * SEC, true, None);
        for t in (5 * SEC..40 * SEC).step_by(100_000_000) {
            if w.stats(t).failures > 0 {
                assert!(w.may_hold_failures(t), "at {t}");
            }
        }
        assert!(!w.may_hold_failures(40 * SEC));
        w.clear(0);
        assert!(!w.may_hold_failures(5 * SEC));
    }

    #[test]
    fn count_window_keeps_the_last_n() {
        let w = CountWindow::new(3, 0);
        w.record(true, Some(0));
        w.record(true, None);
        assert_eq!(
            w.stats(),
            WindowStats {
                calls: 2,
                failures: 2
            }
        );
        w.record(false, Some(0));
        w.record(false, Some(0));
        assert_eq!(
            w.stats(),
            WindowStats {
                calls: 3,
                failures: 1
            }
        );
        w.clear(2);
        assert_eq!(w.stats(), WindowStats::default());
        assert!(!w.may_hold_failures());
    }

    #[test]
    fn count_window_drops_outcomes_of_other_generations() {
        let w = CountWindow::new(3, 2);
        w.record(true, Some(0));
        w.record(false, Some(4));
        assert_eq!(w.stats(), WindowStats::default());
        assert!(!w.may_hold_failures());
        w.record(true, Some(2));
        assert_eq!(
            w.stats(),
            WindowStats {
                calls: 1,
                failures: 1
            }
        );
        w.clear(4);
        w.record(true, Some(2));
        assert_eq!(
            w.stats(),
            WindowStats::default(),
            "2 is stale after the clear"
        );
    }

    /// A record racing a clear must not leave the totals off: with lock-free
    /// slots and totals (0.1), a record that swapped its slot before the clear
    /// and added to the totals after it left one failure counted for good.
    #[test]
    fn count_window_totals_survive_records_racing_clears() {
        // (The 0.1 window failed about one round in four of these.)
        for _round in 0..20 {
            let n = 8;
            let w = std::sync::Arc::new(CountWindow::new(n, 0));
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let recorders: Vec<_> = (0..2)
                .map(|_| {
                    let (w, stop) = (w.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut i = 0u32;
                        while !stop.load(Ordering::Relaxed) {
                            w.record(i % 3 != 0, None);
                            i = i.wrapping_add(1);
                        }
                    })
                })
                .collect();
            for _ in 0..5_000 {
                w.clear(0);
            }
            stop.store(true, Ordering::Relaxed);
            for r in recorders {
                r.join().unwrap();
            }
            // n successes push every earlier outcome out of the ring.
            for _ in 0..n {
                w.record(false, None);
            }
            assert_eq!(
                w.stats(),
                WindowStats {
                    calls: n,
                    failures: 0
                }
            );
            assert!(!w.may_hold_failures());
        }
    }

    #[test]
    fn trip_rule_needs_minimum_calls_and_ratio() {
        let s = WindowStats {
            calls: 19,
            failures: 19,
        };
        assert!(!s.trips(0.5, 20));
        let s = WindowStats {
            calls: 20,
            failures: 10,
        };
        assert!(s.trips(0.5, 20));
        let s = WindowStats {
            calls: 20,
            failures: 9,
        };
        assert!(!s.trips(0.5, 20));
    }
}
