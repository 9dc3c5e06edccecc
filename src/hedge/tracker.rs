//! The latency tracker of a [`Hedge`](super::Hedge): the latencies of recent
//! attempts, and their quantiles.
//!
//! A placeholder with the tracker's interface: a list of samples behind a
//! mutex, pruned to the window on each record. Correct, not fast; the
//! lock-free log-bucket histogram replaces it.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The latencies of the attempts of the last `window`, shared by a hedge's
/// clones.
#[derive(Debug)]
pub(crate) struct LatencyTracker {
    window: Duration,
    samples: Mutex<Vec<(Instant, Duration)>>,
}

impl LatencyTracker {
    /// A tracker of the latencies recorded in about the last `window`.
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            window,
            samples: Mutex::new(Vec::new()),
        }
    }

    fn with<R>(&self, now: Instant, f: impl FnOnce(&mut Vec<(Instant, Duration)>) -> R) -> R {
        let mut samples = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = self.window;
        samples.retain(|(at, _)| now.saturating_duration_since(*at) < window);
        f(&mut samples)
    }

    /// Records one attempt's latency, observed at `now`.
    pub(crate) fn record(&self, latency: Duration, now: Instant) {
        self.with(now, |s| s.push((now, latency)));
    }

    /// The `p`-quantile of the latencies in the window, or `None` while it
    /// holds fewer than `min_samples` (or no) samples.
    pub(crate) fn quantile(&self, p: f64, min_samples: u32, now: Instant) -> Option<Duration> {
        self.with(now, |s| {
            if s.is_empty() || s.len() < min_samples as usize {
                return None;
            }
            let mut sorted: Vec<Duration> = s.iter().map(|(_, d)| *d).collect();
            sorted.sort_unstable();
            // Nearest rank: the smallest value with at least p of the samples
            // at or below it.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let rank = (p * sorted.len() as f64).ceil() as usize;
            sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
        })
    }

    /// How many samples the window holds.
    pub(crate) fn samples(&self, now: Instant) -> u64 {
        self.with(now, |s| s.len() as u64)
    }
}
