//! Shared pieces of the benchmarks: the operation under test and a batch timer.

use std::time::{Duration, Instant};

/// The operation every case wraps: an `async fn` ready on first poll.
#[inline(never)]
pub async fn op(x: u64) -> Result<u64, Failure> {
    Ok(std::hint::black_box(x))
}

/// The error the failing cases return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure;

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure")
    }
}

impl std::error::Error for Failure {}

/// Runs `body` `iters` times inside one `block_on` and returns the time taken,
/// so the executor's entry cost is not counted per call.
pub fn time_batch<F, Fut>(rt: &tokio::runtime::Runtime, iters: u64, mut body: F) -> Duration
where
    F: FnMut(u64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            body(i).await;
        }
        start.elapsed()
    })
}
