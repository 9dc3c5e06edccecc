//! The public test kit itself: scripts and chaos behave as documented.

use std::time::Duration;

use safecall::testing::{Chaos, Script};
use safecall::{Backoff, Error, Jitter, RetryBudget, SafeCall};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(start_paused = true)]
async fn script_plays_steps_in_order_then_repeats_the_last() {
    let script = Script::<u32, &str>::new().then_err("a").then_ok(1);
    assert_eq!(script.attempt().await, Err("a"));
    assert_eq!(script.attempt().await, Ok(1));
    assert_eq!(script.attempt().await, Ok(1));
    assert_eq!(script.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn script_latency_is_on_tokios_clock() {
    let script = Script::<u32, &str>::new().then_ok(5).after(secs(3));
    let t0 = tokio::time::Instant::now();
    assert_eq!(script.attempt().await, Ok(5));
    assert_eq!(t0.elapsed(), secs(3));
}

#[tokio::test(start_paused = true)]
async fn script_start_sets_the_origin_of_attempt_times() {
    let script = Script::<u32, &str>::new().then_ok(1);
    script.start();
    tokio::time::advance(secs(2)).await;
    script.attempt().await.unwrap();
    script.assert_attempts_at(&[secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn an_empty_script_hangs() {
    let script = Script::<u32, &str>::new();
    let r = tokio::time::timeout(secs(1), script.attempt()).await;
    assert!(r.is_err());
}

#[tokio::test(start_paused = true)]
async fn non_clone_errors_are_made_per_attempt() {
    let script = Script::<u32, std::io::Error>::new()
        .then_err_with(|| std::io::ErrorKind::ConnectionReset.into())
        .then_ok_with(|| 3);
    let policy: SafeCall<std::io::Error> = SafeCall::builder()
        .backoff(Backoff::constant(secs(1)))
        .classify(safecall::classify_io)
        .build()
        .unwrap();
    assert_eq!(policy.call(|| script.attempt()).await.unwrap(), 3);
    script.assert_attempts_at(&[secs(0), secs(1)]);
}

#[test]
#[should_panic(expected = "attempt start times differ")]
fn assert_attempts_at_fails_loudly() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        let script = Script::<u32, &str>::new().then_ok(1);
        script.attempt().await.unwrap();
        script.assert_attempts_at(&[secs(1)]);
    });
}

#[tokio::test(start_paused = true)]
async fn chaos_is_reproducible_from_its_seed() {
    async fn run(seed: u64) -> Vec<Result<u32, &'static str>> {
        let chaos = Chaos::new(seed).error(0.4, || "injected").build().unwrap();
        let mut op = chaos.wrap(|| async { Ok(1) });
        let mut out = Vec::new();
        for _ in 0..50 {
            out.push(op().await);
        }
        out
    }
    assert_eq!(run(9).await, run(9).await);
    assert_ne!(run(9).await, run(10).await);
}

#[tokio::test(start_paused = true)]
async fn chaos_error_rate_is_close_to_its_probability() {
    let chaos = Chaos::new(1).error(0.25, || "x").build().unwrap();
    let mut op = chaos.wrap(|| async { Ok::<_, &str>(()) });
    let mut errors = 0;
    for _ in 0..4_000 {
        if op().await.is_err() {
            errors += 1;
        }
    }
    assert!((900..=1100).contains(&errors), "{errors}");
}

#[tokio::test(start_paused = true)]
async fn chaos_latency_stays_in_its_range() {
    let lo = Duration::from_millis(10);
    let hi = Duration::from_millis(50);
    let chaos = Chaos::<&str>::new(3).latency(1.0, lo..=hi).build().unwrap();
    let mut op = chaos.wrap(|| async { Ok(()) });
    for _ in 0..100 {
        let t0 = tokio::time::Instant::now();
        op().await.unwrap();
        let took = t0.elapsed();
        assert!(took >= lo && took <= hi, "{took:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn chaos_hangs_are_cut_by_the_policy() {
    let chaos = Chaos::<&str>::new(5).hang(1.0).build().unwrap();
    let policy: SafeCall<&str> = SafeCall::builder()
        .max_retries(2)
        .attempt_timeout(secs(1))
        .backoff(Backoff::constant(secs(1)).jitter(Jitter::None))
        .retry_budget(RetryBudget::disabled())
        .build()
        .unwrap();
    let mut op = chaos.wrap(|| async { Ok::<_, &str>(()) });
    let err = policy.call(&mut op).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { attempts: 3, .. }), "{err:?}");
}

#[test]
fn chaos_refuses_bad_probabilities() {
    let e = Chaos::new(1).error(1.5, || ()).build().unwrap_err();
    assert_eq!(e.field(), "chaos.error");
    let e = Chaos::<()>::new(1).hang(f64::NAN).build().unwrap_err();
    assert_eq!(e.field(), "chaos.hang");
    let e = Chaos::<()>::new(1)
        .latency(0.5, secs(2)..=secs(1))
        .build()
        .unwrap_err();
    assert_eq!(e.field(), "chaos.latency");
}
