//! The retry budget: a cap on retries shared by every call of a policy.
//!
//! # Why budgets and not only `max_retries`?
//!
//! `max_retries(3)` bounds one call, not the load a client puts on a struggling
//! service: when every call fails, every call makes four attempts and the client
//! quadruples its traffic exactly when the service can take least. A budget bounds
//! retries across *all* calls: retries may add a fixed share (20 % by default) to
//! the calls made over a sliding window (10 s), plus a small floor (10 retries per
//! second) so a client that makes few calls can still retry. This is the scheme
//! of Finagle's and tower's retry budgets.
//!
//! First attempts are never refused, and errors that are not retried never spend
//! the budget. A policy's budget is shared by all its calls; for a budget **per
//! key**, so that one noisy tenant cannot spend the retries of the others, give
//! the breakers of a registry their own with
//! [`BreakerConfig::retry_budget`](crate::BreakerConfig::retry_budget): a call
//! through such a breaker spends the breaker's budget instead. A call refused by the budget ends with
//! [`Error::Exhausted`](crate::Error::Exhausted) and
//! [`ExhaustedReason::BudgetEmpty`](crate::ExhaustedReason::BudgetEmpty), whose
//! message says that the limit is this client's own, not the server's.
//!
//! # Cost on the hot path
//!
//! A call that succeeds at once pays one plain add into its thread's slot of the
//! budget's call counter (no read-modify-write, see the crate's `calls` module) and no clock read:
//! calls are counted as pending and dated when the budget next reads the clock
//! (at a retry decision, or every 64 calls of a thread). Pending calls are
//! dated at the *previous* reading, so the budget can only under-count recent
//! calls, never over-count them: its error is on the side of fewer retries.
//!
//! # Examples
//!
//! ```
//! use std::time::Duration;
//! use safecall::{RetryBudget, SafeCall};
//!
//! let policy: SafeCall<std::io::Error> = SafeCall::builder()
//!     .retry_budget(
//!         RetryBudget::default()
//!             .ratio(0.1)                          // retries may add 10 % ...
//!             .window(Duration::from_secs(30))     // ... to the calls of the last 30 s
//!             .min_per_second(5),                  // ... and at least 5 per second
//!     )
//!     .build()?;
//! # Ok::<(), safecall::ConfigError>(())
//! ```

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::ConfigError;

use crate::calls::Calls;

const BUCKETS: usize = 10;
const FLUSH_EVERY: u64 = 64;

/// The configuration of a retry budget (see the [module documentation](self)).
///
/// # Default
///
/// Retries may add 20 % to the calls of the last 10 s, with a floor of 10
/// retries per second. [`RetryBudget::disabled`] turns the budget off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryBudget {
    enabled: bool,
    window: Duration,
    ratio: f64,
    min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(10),
            ratio: 0.2,
            min_per_second: 10,
        }
    }
}

impl RetryBudget {
    /// No budget: only `max_retries` bounds retries.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// The share of recent calls that retries may add (default 0.2). Must be
    /// finite and at least 0; 0 leaves only the floor.
    #[must_use]
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = ratio;
        self
    }

    /// How far back calls and retries are counted (default 10 s). Must be at
    /// least 10 ms.
    #[must_use]
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Retries allowed per second of the window even with no calls to count
    /// (default 10).
    #[must_use]
    pub fn min_per_second(mut self, min_per_second: u32) -> Self {
        self.min_per_second = min_per_second;
        self
    }

    /// Whether the budget is on.
    #[must_use]
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Checks the budget.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `retry_budget.ratio` (negative or not finite) or
    /// `retry_budget.window` (shorter than 10 ms).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !self.ratio.is_finite() || self.ratio < 0.0 {
            return Err(ConfigError::new(
                "retry_budget.ratio",
                format!("must be a finite number of at least 0, got {}", self.ratio),
            ));
        }
        if self.window < Duration::from_millis(10) {
            return Err(ConfigError::new(
                "retry_budget.window",
                format!("must be at least 10 ms, got {:?}", self.window),
            ));
        }
        Ok(())
    }

    pub(crate) fn state(&self) -> Option<BudgetState> {
        self.enabled.then(|| BudgetState::new(*self))
    }
}

/// The shared state of an enabled budget.
#[derive(Debug)]
pub(crate) struct BudgetState {
    config: RetryBudget,
    slot_len: Duration,
    /// Calls counted; those past `Window::dated` are not yet dated.
    calls: Calls<16>,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    /// Time zero of the slots: the budget's creation, which is also the
    /// "previous reading" of calls counted before the first one.
    origin: Instant,
    /// The slot of the last clock reading; pending calls are dated there.
    last_slot: u64,
    /// The calls counted (`BudgetState::calls`) already dated.
    dated: u64,
    slots: [Slot; BUCKETS],
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    index: u64,
    calls: u64,
    retries: u64,
}

impl BudgetState {
    fn new(config: RetryBudget) -> Self {
        Self {
            config,
            slot_len: config.window / BUCKETS as u32,
            calls: Calls::new(),
            window: Mutex::new(Window {
                origin: Instant::now(),
                last_slot: 0,
                dated: 0,
                slots: [Slot::default(); BUCKETS],
            }),
        }
    }

    /// Counts a call (a first attempt). No clock read, except once every 64
    /// calls of a thread.
    #[inline]
    pub(crate) fn deposit(&self) {
        if self.calls.add() % FLUSH_EVERY == 0 {
            self.locked(|w, now, pending| w.date(pending, now));
        }
    }

    /// Asks to spend one retry. Reads the clock.
    pub(crate) fn try_withdraw(&self) -> bool {
        self.locked(|w, now, pending| {
            w.date(pending, now);
            let (calls, retries) = w.totals();
            let allowed = calls as f64 * self.config.ratio
                + f64::from(self.config.min_per_second) * self.config.window.as_secs_f64();
            if (retries + 1) as f64 <= allowed {
                w.current().retries += 1;
                true
            } else {
                false
            }
        })
    }

    /// Whether the window holds no call and no retry now: such a budget is
    /// equivalent to a fresh one.
    #[cfg_attr(safecall_loom, allow(dead_code))] // used by compaction, off under loom
    pub(crate) fn is_idle(&self) -> bool {
        self.locked(|w, now, pending| {
            w.date(pending, now);
            w.totals() == (0, 0)
        })
    }

    /// (calls, retries) in the window now, for tests and reports.
    #[cfg(test)]
    pub(crate) fn totals(&self) -> (u64, u64) {
        self.locked(|w, now, pending| {
            w.date(pending, now);
            w.totals()
        })
    }

    fn locked<R>(&self, f: impl FnOnce(&mut Window, u64, u64) -> R) -> R {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(w.origin);
        let slot =
            u64::try_from(elapsed.as_nanos() / self.slot_len.as_nanos().max(1)).unwrap_or(u64::MAX);
        // The calls counted since the last reading (a later reading under
        // the lock never sees fewer).
        let total = self.calls.total();
        let pending = total.wrapping_sub(w.dated);
        w.dated = total;
        f(&mut w, slot, pending)
    }
}

impl Window {
    /// Dates `pending` calls at the previous reading and moves the window to `now`.
    fn date(&mut self, pending: u64, now: u64) {
        if pending > 0 {
            let last = self.last_slot;
            if let Some(s) = self.slot_mut(last, now) {
                s.calls += pending;
            }
        }
        self.last_slot = now;
        let _ = self.slot_mut(now, now);
    }

    /// The slot `index`, reset if it held an older one; `None` if `index` has
    /// already left the window that ends at `now`.
    fn slot_mut(&mut self, index: u64, now: u64) -> Option<&mut Slot> {
        if now.saturating_sub(index) >= BUCKETS as u64 {
            return None;
        }
        let s = &mut self.slots[(index % BUCKETS as u64) as usize];
        if s.index != index {
            *s = Slot {
                index,
                ..Slot::default()
            };
        }
        Some(s)
    }

    fn current(&mut self) -> &mut Slot {
        &mut self.slots[(self.last_slot % BUCKETS as u64) as usize]
    }

    fn totals(&self) -> (u64, u64) {
        let now = self.last_slot;
        self.slots
            .iter()
            // The slot `BUCKETS` back shares its array place with the current
            // one, which `date` has reset.
            .filter(|s| now.saturating_sub(s.index) < BUCKETS as u64 && s.index <= now)
            .fold((0, 0), |(c, r), s| (c + s.calls, r + s.retries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget() -> BudgetState {
        BudgetState::new(RetryBudget::default())
    }

    #[tokio::test(start_paused = true)]
    async fn floor_allows_ten_per_second_of_window_without_calls() {
        let b = budget();
        let allowed = (0..500).filter(|_| b.try_withdraw()).count();
        assert_eq!(allowed, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_add_twenty_percent() {
        let b = budget();
        for _ in 0..1_000 {
            b.deposit();
        }
        let allowed = (0..1_000).filter(|_| b.try_withdraw()).count();
        assert_eq!(allowed, 100 + 200);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_and_calls_leave_the_window() {
        let b = budget();
        for _ in 0..1_000 {
            b.deposit();
        }
        assert_eq!((0..1_000).filter(|_| b.try_withdraw()).count(), 300);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!b.try_withdraw(), "still within the window");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.totals(), (0, 0));
        assert_eq!((0..1_000).filter(|_| b.try_withdraw()).count(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn pending_calls_are_dated_at_the_previous_reading() {
        let b = budget();
        assert!(b.try_withdraw()); // reads the clock at t = 0
        for _ in 0..10 {
            b.deposit(); // pending, not yet dated
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        // Dated at t = 0, they have left the window: an under-count, never an over-count.
        assert_eq!(b.totals(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn every_64th_call_dates_the_pending_ones() {
        let b = budget();
        for _ in 0..64 {
            b.deposit(); // the 64th reads the clock: dated at t = 0
        }
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(b.try_withdraw()); // a reading at t = 3 s
        for _ in 0..64 {
            b.deposit(); // dated at t = 3 s
        }
        tokio::time::advance(Duration::from_secs(8)).await;
        // At t = 11 s the first 64 have left the 10 s window, the next 64 have not.
        assert_eq!(b.totals(), (64, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn calls_never_read_are_dated_at_the_budgets_creation() {
        // One call a second for 10 s, no retry decision: no reading in between
        // (fewer than 64 calls), so all are dated at the creation, and have
        // left the window 10 s later. An under-count, never an over-count.
        let b = budget();
        for _ in 0..10 {
            b.deposit();
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(b.totals(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn each_64th_call_moves_the_reading_that_later_calls_are_dated_at() {
        let b = budget();
        for _ in 0..64 {
            b.deposit(); // read at 0 s
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..64 {
            b.deposit(); // dated at 0 s; read at 5 s
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..64 {
            b.deposit(); // dated at 5 s; read at 6 s
        }
        tokio::time::advance(Duration::from_secs(8)).await;
        // At 14 s what was dated at 0 s has left; what was dated at 5 s has not.
        assert_eq!(b.totals(), (64, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_is_idle_when_its_window_is_empty() {
        let b = budget();
        assert!(b.is_idle());
        b.deposit();
        assert!(!b.is_idle());
        assert!(b.try_withdraw());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(b.is_idle());
    }

    #[test]
    fn the_smallest_window_is_ten_milliseconds() {
        assert!(
            RetryBudget::default()
                .window(Duration::from_millis(10))
                .validate()
                .is_ok()
        );
        assert!(RetryBudget::default().is_enabled());
        assert!(!RetryBudget::disabled().is_enabled());
        assert!(RetryBudget::disabled().state().is_none());
    }

    #[test]
    fn bad_budgets_are_refused() {
        let r = RetryBudget::default().ratio(-0.1).validate();
        assert_eq!(r.map_err(|e| e.field()), Err("retry_budget.ratio"));
        let r = RetryBudget::default().ratio(f64::NAN).validate();
        assert_eq!(r.map_err(|e| e.field()), Err("retry_budget.ratio"));
        let r = RetryBudget::default().window(Duration::ZERO).validate();
        assert_eq!(r.map_err(|e| e.field()), Err("retry_budget.window"));
        assert!(RetryBudget::disabled().ratio(f64::NAN).validate().is_ok());
    }

    #[test]
    fn calls_counted_on_many_threads_are_all_in_the_budget() {
        // More threads than the call count has slots, so some share its
        // counter; each thread's slot is summed by the withdrawing thread.
        // A window of an hour: the wall clock cannot move the calls out.
        let b = std::sync::Arc::new(BudgetState::new(
            RetryBudget::default()
                .window(Duration::from_secs(3_600))
                .min_per_second(0),
        ));
        let threads: Vec<_> = (0..24)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        b.deposit();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 20 % of 24,000 calls, exactly.
        assert_eq!((0..10_000).filter(|_| b.try_withdraw()).count(), 4_800);
    }
}
