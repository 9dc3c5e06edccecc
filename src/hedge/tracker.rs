//! The latency tracker behind `Hedge::at_percentile`: a lock-free log-bucket
//! histogram over a rotating window, with a cached quantile.
//!
//! # Why a histogram, why two half-windows, why a cache
//!
//! A hedge delay must follow the service's latency as it is now: the p95 of
//! the last few seconds, not of the day. Keeping the samples themselves costs
//! memory per call and a sort per read; a histogram of fixed buckets costs
//! neither, and its error is bounded by the bucket width. The buckets are
//! *log-linear*: each power of two of nanoseconds is cut into 8 equal
//! sub-buckets, so a bucket `[lo, lo + w)` has `w <= lo / 8`. The value
//! reported for a bucket is the largest latency it holds, `lo + w - 1`: a
//! quantile is never below the exact one and less than 1/8 (12.5 %) above it,
//! as DESIGN.md promises. Rounding up, not to the midpoint, is deliberate: a
//! hedge at the p-quantile then never fires earlier than the true p-quantile,
//! so the histogram's rounding never makes it hedge more than `1 - p` of the
//! calls. Latencies below 16 ns are exact; latencies of `2^36` ns (68.7 s)
//! and more count as `2^36 - 1` ns, the top bucket's largest value.
//!
//! The window is two half-windows, *current* and *previous*, numbered by
//! `(now - start) / half` where `start` is the tracker's creation and `half`
//! is half the window (at least 1 ms). A read counts both, so a latency
//! recorded at `t` counts until the end of the half-window after the one `t`
//! fell in: for between `window / 2` and `window`, then it ages out at once.
//! Old data is never swept: each counter carries the number of its
//! half-window (its *tag*), a counter whose tag is not the current or the
//! previous one reads as zero, and the first record of a new half-window in a
//! counter restarts it. A record is one compare-and-swap on its bucket and one
//! on its half-window's total, so a record and a rotation never race: no
//! record is lost or counted twice (a reader may see a racing record in the
//! total before it sees it in the bucket, or the reverse). The only ones dropped are those that
//! arrive with a `now` older than the counter's current half-window minus one
//! (the caller read the clock, then was descheduled across two rotations):
//! such a latency has already aged out, and counting it would wipe newer
//! counts.
//!
//! A hedged call reads the quantile once, so the read must be cheap. The
//! computed quantile is cached with the `p` it answers, the records it was
//! computed from, and the ticks it holds for: until `half / 8` after it was
//! computed or the end of its half-window, whichever comes first. A read that
//! finds it fresh is seven atomic loads (the cache behind a sequence counter):
//! as a half-window's count only grows, a cache computed from at least
//! `min_samples` records proves the window still holds them. Otherwise the
//! reader counts the two half-window totals against `min_samples`, scans the
//! 2 × 272 buckets (6,700 instructions, 1 to 2 µs) and stores the result; one
//! reader at a time stores, the others use what they computed.
//!
//! What a read may miss: the scan is not a snapshot, so records racing it may
//! or may not be in it; a reader whose `now` is one half-window behind a
//! racing record may miss the previous half-window's count in the bucket that
//! record restarted (the next half-window's first read recomputes anyway).
//!
//! Tags are the half-window number modulo `2^32`: a counter left untouched
//! for a multiple of `2^32` half-windows (at least 49 days, at the 1 ms
//! minimum half-window) could be read as current once, and one untouched for
//! `2^32 - 2^16` to `2^32` half-windows drops the records into it for at most
//! `2^16` half-windows. A counter saturates at `2^32 - 1` records per
//! half-window and bucket.
//!
//! # Memory
//!
//! 2 half-windows × (272 buckets + 1 total) × 8 bytes, plus the cache (48
//! bytes), the start instant and the widths: 4,448 bytes per tracker (see the
//! `memory_is_as_documented` test), held once per `Hedge` and shared by its
//! clones. Nothing is allocated per record or per read.
//!
//! # Examples
//!
//! The tracker is internal; [`Hedge::at_percentile`](crate::Hedge::at_percentile)
//! is its public face:
//!
//! ```
//! use std::time::Duration;
//! use safecall::{Hedge, SafeCall};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let policy: SafeCall<std::io::Error> = SafeCall::default();
//! let hedge = Hedge::at_percentile(0.5).min_samples(3);
//! for ms in [10, 20, 30] {
//!     let answer = || async move {
//!         tokio::time::sleep(Duration::from_millis(ms)).await;
//!         Ok::<_, std::io::Error>(())
//!     };
//!     policy.call(answer).hedge(&hedge).await.unwrap();
//! }
//! assert_eq!(hedge.samples(), 3);
//! // The p50, 20 ms, rounded up to its bucket: never below, < 12.5 % above.
//! let delay = hedge.delay().unwrap();
//! assert!(delay >= Duration::from_millis(20) && delay < Duration::from_micros(22_500));
//! # }
//! ```

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::sync::{AtomicU64, Ordering};

/// Sub-buckets per power of two: `2^SUB_BITS`.
const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Latencies are clamped below `2^MAX_EXP` ns (68.7 s).
const MAX_EXP: u32 = 36;
const MAX_NANOS: u64 = (1 << MAX_EXP) - 1;
/// `SUB` exact buckets below `SUB` ns, then `SUB` per power of two from
/// `2^SUB_BITS` to `2^(MAX_EXP - 1)`.
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 1) as usize) * SUB as usize;
/// The shortest half-window.
const MIN_HALF: u64 = 1_000_000;
/// A record whose half-window is behind a counter's by less than this many
/// half-windows is dropped as stale (it has aged out); further behind, it is
/// taken as the tag having wrapped, and restarts the counter.
const STALE_HORIZON: u32 = 1 << 16;

/// The bucket a latency of `nanos` falls in.
fn bucket_of(nanos: u64) -> usize {
    let v = nanos.min(MAX_NANOS);
    if v < SUB {
        // Lossless: v < 8.
        return v as usize;
    }
    let k = 63 - v.leading_zeros(); // k >= SUB_BITS
    let sub = (v >> (k - SUB_BITS)) & (SUB - 1);
    // Lossless: the index is below BUCKETS.
    (u64::from(k - SUB_BITS + 1) * SUB + sub) as usize
}

/// The lowest latency in bucket `i` and the bucket's width, in ns.
fn bucket_bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB {
        return (i, 1);
    }
    // Lossless: i / SUB <= MAX_EXP - SUB_BITS + 1.
    let k = (i / SUB) as u32 + SUB_BITS - 1;
    let width = 1 << (k - SUB_BITS);
    ((1 << k) + (i % SUB) * width, width)
}

/// The latency reported for bucket `i`: the largest it holds, at most
/// `width - 1 < lo / 8` above every latency in it.
fn bucket_value(i: usize) -> u64 {
    let (lo, width) = bucket_bounds(i);
    lo + width - 1
}

/// A counter word: `tag:32 | count:32`, the count of records in the
/// half-window whose number is `tag` (modulo `2^32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counter(u64);

impl Counter {
    const COUNT_MAX: u64 = u32::MAX as u64;

    fn new(tag: u32, count: u64) -> Self {
        Counter((u64::from(tag) << 32) | count.min(Self::COUNT_MAX))
    }

    fn tag(self) -> u32 {
        // Lossless: the high half.
        (self.0 >> 32) as u32
    }

    fn count(self) -> u64 {
        self.0 & Self::COUNT_MAX
    }

    /// The count if this counter holds half-window `tag`, else zero.
    fn count_in(self, tag: u32) -> u64 {
        if self.tag() == tag { self.count() } else { 0 }
    }
}

/// The tag of half-window `epoch`.
fn tag_of(epoch: u64) -> u32 {
    // Truncation intended: tags are epochs modulo 2^32 (see the module docs).
    epoch as u32
}

/// Count one record of half-window `tag` in `cell`.
fn bump(cell: &AtomicU64, tag: u32) {
    let mut current = cell.load(Ordering::Relaxed);
    loop {
        let c = Counter(current);
        let next = match c.tag().wrapping_sub(tag) {
            0 => Counter::new(tag, c.count() + 1),
            ahead if ahead < STALE_HORIZON => return, // aged out already
            _ => Counter::new(tag, 1),                // an older half-window: restart
        };
        if next == c {
            return; // saturated
        }
        match cell.compare_exchange_weak(current, next.0, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return,
            Err(seen) => current = seen,
        }
    }
}

/// One half-window's counts.
struct Half {
    total: AtomicU64,
    buckets: [AtomicU64; BUCKETS],
}

impl Half {
    fn new() -> Self {
        Half {
            total: AtomicU64::new(0),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    fn total(&self, tag: u32) -> u64 {
        Counter(self.total.load(Ordering::Relaxed)).count_in(tag)
    }

    fn bucket(&self, i: usize, tag: u32) -> u64 {
        Counter(self.buckets[i].load(Ordering::Relaxed)).count_in(tag)
    }
}

/// A computed quantile and where it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cached {
    /// The `p` it answers, as `f64` bits.
    p: u64,
    /// The quantile, in ns.
    value: u64,
    /// The ticks it is used for: `from..until`, within one half-window
    /// (`until` 0: never computed).
    from: u64,
    until: u64,
    /// The records it was computed from. Within a half-window the count only
    /// grows, so a read that needs at most this many need not count again.
    samples: u64,
}

/// The last computed quantile, behind a sequence counter: odd while one
/// reader stores, so a read that sees the same even value before and after
/// loading the fields saw one store's fields.
struct Cache {
    seq: AtomicU64,
    p: AtomicU64,
    value: AtomicU64,
    from: AtomicU64,
    until: AtomicU64,
    samples: AtomicU64,
}

impl Cache {
    fn new() -> Self {
        Cache {
            seq: AtomicU64::new(0),
            p: AtomicU64::new(0),
            value: AtomicU64::new(0),
            from: AtomicU64::new(0),
            until: AtomicU64::new(0),
            samples: AtomicU64::new(0),
        }
    }

    /// The cached result, if no store raced the read.
    fn load(&self) -> Option<Cached> {
        let before = self.seq.load(Ordering::Acquire);
        if before % 2 == 1 {
            return None;
        }
        // Acquire: a field read from a racing store synchronises with it, so
        // the second `seq` load sees that store's odd value (or later).
        let cached = Cached {
            p: self.p.load(Ordering::Acquire),
            value: self.value.load(Ordering::Acquire),
            from: self.from.load(Ordering::Acquire),
            until: self.until.load(Ordering::Acquire),
            samples: self.samples.load(Ordering::Acquire),
        };
        (self.seq.load(Ordering::Relaxed) == before).then_some(cached)
    }

    /// Store a result unless another reader is storing one.
    fn store(&self, c: Cached) {
        let seq = self.seq.load(Ordering::Relaxed);
        if seq % 2 == 1
            || self
                .seq
                .compare_exchange(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.p.store(c.p, Ordering::Release);
        self.value.store(c.value, Ordering::Release);
        self.from.store(c.from, Ordering::Release);
        self.until.store(c.until, Ordering::Release);
        self.samples.store(c.samples, Ordering::Release);
        self.seq.store(seq + 2, Ordering::Release);
    }
}

/// Recent latencies, for a hedge delay at a quantile of them (see the module
/// docs). `Send + Sync`; a `Hedge` holds one in an `Arc` shared by its clones.
pub(crate) struct LatencyTracker {
    /// Half-window `e` counts in `halves[e % 2]`.
    halves: [Half; 2],
    cache: Cache,
    /// The origin of the ticks (ns since it) and the half-window numbers.
    start: Instant,
    /// Half the window, in ns (at least `MIN_HALF`).
    half: u64,
    /// How long a computed quantile is used before it is recomputed, in ns.
    refresh: u64,
}

impl fmt::Debug for LatencyTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyTracker")
            .field("window", &Duration::from_nanos(self.half.saturating_mul(2)))
            .finish_non_exhaustive()
    }
}

impl LatencyTracker {
    /// A tracker whose two half-windows cover about `window` (half of it at
    /// least 1 ms), starting now.
    pub(crate) fn new(window: Duration) -> Self {
        let half = u64::try_from(window.as_nanos() / 2)
            .unwrap_or(u64::MAX)
            .max(MIN_HALF);
        LatencyTracker {
            halves: [Half::new(), Half::new()],
            cache: Cache::new(),
            start: Instant::now(),
            half,
            refresh: half / 8,
        }
    }

    /// Nanoseconds from the start to `now` (0 before it).
    fn tick(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }

    fn half(&self, epoch: u64) -> &Half {
        // Lossless: 0 or 1.
        &self.halves[(epoch % 2) as usize]
    }

    /// Record one latency observed at `now`. Lock-free: two
    /// compare-and-swaps, usually once each.
    pub(crate) fn record(&self, latency: Duration, now: Instant) {
        let epoch = self.tick(now) / self.half;
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        let half = self.half(epoch);
        let tag = tag_of(epoch);
        bump(&half.buckets[bucket_of(nanos)], tag);
        bump(&half.total, tag);
    }

    /// The records in the window at `now`.
    pub(crate) fn samples(&self, now: Instant) -> u64 {
        self.samples_in(self.tick(now) / self.half)
    }

    fn samples_in(&self, epoch: u64) -> u64 {
        let previous = epoch.wrapping_sub(1);
        self.half(epoch).total(tag_of(epoch)) + self.half(previous).total(tag_of(previous))
    }

    /// The `p`-quantile (nearest rank; `p` clamped to `[0, 1]`) of the
    /// latencies in the window at `now`, rounded up to its bucket's largest
    /// value (never below the exact quantile, less than 12.5 % above); `None`
    /// while the window holds fewer than `min_samples` (or no) records.
    ///
    /// Usually a few atomic loads: the result is cached and recomputed on a
    /// new half-window, for another `p`, or after `window / 16`.
    pub(crate) fn quantile(&self, p: f64, min_samples: u32, now: Instant) -> Option<Duration> {
        let tick = self.tick(now);
        let p_bits = p.to_bits();
        if let Some(c) = self.cache.load() {
            // Fresh, and computed from enough records (the count has not
            // fallen since: the half-window is the same).
            if c.p == p_bits
                && (c.from..c.until).contains(&tick)
                && c.samples >= u64::from(min_samples)
            {
                return Some(Duration::from_nanos(c.value));
            }
        }
        let epoch = tick / self.half;
        let samples = self.samples_in(epoch);
        if samples == 0 || samples < u64::from(min_samples) {
            return None;
        }
        let (value, counted) = self.compute(p, epoch)?;
        let from = epoch.saturating_mul(self.half);
        self.cache.store(Cached {
            p: p_bits,
            value,
            from,
            until: tick
                .saturating_add(self.refresh)
                .min(from.saturating_add(self.half)),
            samples: counted,
        });
        Some(Duration::from_nanos(value))
    }

    /// Scan the buckets of half-window `epoch` and the one before: the
    /// quantile and the records counted.
    fn compute(&self, p: f64, epoch: u64) -> Option<(u64, u64)> {
        let previous = epoch.wrapping_sub(1);
        let (current, older) = (self.half(epoch), self.half(previous));
        let (tag, older_tag) = (tag_of(epoch), tag_of(previous));
        let mut counts = [0_u64; BUCKETS];
        let mut n = 0_u64;
        for (i, count) in counts.iter_mut().enumerate() {
            *count = current.bucket(i, tag) + older.bucket(i, older_tag);
            n += *count;
        }
        if n == 0 {
            return None;
        }
        // Nearest rank: the smallest latency with at least p * n at or below
        // it. NaN ranks 0, clamped to 1. Exact for n < 2^53.
        #[allow(clippy::cast_precision_loss)]
        let rank = (p.clamp(0.0, 1.0) * n as f64).ceil() as u64;
        let rank = rank.clamp(1, n);
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some((bucket_value(i), n));
            }
        }
        Some((bucket_value(BUCKETS - 1), n)) // unreachable: seen ends at n >= rank
    }
}

#[cfg(all(test, not(safecall_loom)))]
mod tests;

#[cfg(all(test, safecall_loom))]
mod loom_model;
