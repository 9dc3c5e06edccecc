//! A learning hedge (`Hedge::at_percentile`) over time, on tokio's paused
//! clock: it follows the latency as it moves, forgets what left its window, and
//! its quantile is never below the exact one and less than 12.5 % above.

use std::time::Duration;

use safecall::{Hedge, SafeCall};
use tokio::time::{Instant, advance, sleep};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The window a learning hedge keeps latencies for, at most (DESIGN.md leaves
/// it to the crate; the README says about 10 s).
const WINDOW: Duration = Duration::from_secs(10);

fn policy() -> SafeCall<std::io::Error> {
    SafeCall::builder()
        .retry_budget(safecall::RetryBudget::disabled())
        .build()
        .unwrap()
}

/// One call whose only attempt answers after `latency`; returns when it ended.
async fn call(policy: &SafeCall<std::io::Error>, hedge: &Hedge, latency: Duration) -> Instant {
    policy
        .call(|| async move {
            sleep(latency).await;
            Ok::<_, std::io::Error>(())
        })
        .hedge(hedge)
        .await
        .unwrap();
    Instant::now()
}

/// Whether `got` is `exact` rounded up by the histogram: never below it, less
/// than 12.5 % above.
fn rounds_up(got: Duration, exact: Duration) -> bool {
    got >= exact && (got - exact) * 8 < exact
}

#[tokio::test(start_paused = true)]
async fn a_learning_hedge_forgets_latencies_after_its_window() {
    let policy = policy();
    let hedge = Hedge::at_percentile(0.5).min_samples(3);
    for _ in 0..3 {
        call(&policy, &hedge, ms(400)).await;
    }
    assert_eq!(hedge.samples(), 3);
    let learnt = hedge.delay().expect("three samples");
    assert!(rounds_up(learnt, ms(400)), "{learnt:?}");

    advance(WINDOW).await;
    assert_eq!(hedge.samples(), 0, "aged out");
    assert_eq!(hedge.delay(), None, "no samples, no fallback: no hedge");
    let with_fallback = hedge.clone().fallback_delay(ms(50));
    assert_eq!(with_fallback.delay(), Some(ms(50)), "the fallback again");
}

#[tokio::test(start_paused = true)]
async fn the_learnt_delay_follows_the_latency_as_it_moves() {
    let policy = policy();
    let hedge = Hedge::at_percentile(0.9).min_samples(20);
    let start = Instant::now();
    // A service answering in 10 ms for 2 s...
    while start.elapsed() < Duration::from_secs(2) {
        call(&policy, &hedge, ms(10)).await;
    }
    let fast = hedge.delay().expect("learnt");
    assert!(rounds_up(fast, ms(10)), "{fast:?}");
    // ...then in 100 ms: once the fast answers have left the window, the delay
    // is the new p90.
    let slowed = Instant::now();
    while slowed.elapsed() < WINDOW {
        call(&policy, &hedge, ms(100)).await;
    }
    let slow = hedge.delay().expect("learnt");
    assert!(rounds_up(slow, ms(100)), "{slow:?}");
}

#[tokio::test(start_paused = true)]
async fn clones_learn_together() {
    let policy = policy();
    let hedge = Hedge::at_percentile(0.5).min_samples(4);
    let clones = [hedge.clone(), hedge.clone()];
    for (i, clone) in clones.iter().enumerate() {
        call(&policy, clone, ms(20 * (i as u64 + 1))).await;
        call(&policy, clone, ms(20 * (i as u64 + 1))).await;
    }
    assert_eq!(hedge.samples(), 4);
    let p50 = hedge.delay().expect("four samples from two clones");
    assert!(rounds_up(p50, ms(20)), "{p50:?}");
}
