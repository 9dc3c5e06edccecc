//! The public API contract of DESIGN.md, written as it is there: if this file
//! stops compiling, the contract broke.

use std::time::Duration;

use safecall::{
    Backoff, Breaker, BreakerConfig, BreakerRegistry, BreakerSnapshot, BreakerState, Error,
    ErrorClass, Jitter, RetryBudget, SafeCall,
};

#[derive(Debug)]
struct MyError {
    status: u16,
    retry_after: Duration,
}

impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)
    }
}

impl std::error::Error for MyError {}

struct Client;

impl Client {
    async fn send(&self, _msg: &str) -> Result<u32, MyError> {
        Ok(1)
    }
}

struct Service {
    // A policy can be named in a struct field: generic over the error type only.
    policy: SafeCall<MyError>,
}

#[tokio::test(start_paused = true)]
async fn the_contract_compiles_and_behaves() -> Result<(), Box<dyn std::error::Error>> {
    let client = Client;
    let msg = String::from("hello");

    let policy: SafeCall<MyError> = SafeCall::builder()
        .max_retries(3)
        .backoff(
            Backoff::exponential(Duration::from_secs(1))
                .factor(2.0)
                .max_delay(Duration::from_secs(30))
                .jitter(Jitter::None),
        )
        .attempt_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(60))
        .max_retry_after(Duration::from_secs(60))
        .retry_budget(RetryBudget::default())
        .classify(|e: &MyError| match e.status {
            429 | 503 => ErrorClass::RetryAfter(e.retry_after),
            500..=599 => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        })
        .build()?;
    let service = Service {
        policy: policy.clone(),
    };

    let value: Result<u32, Error<MyError>> = service.policy.call(|| client.send(&msg)).await;
    assert_eq!(value?, 1);

    let steady = Backoff::constant(Duration::from_millis(200));
    assert_eq!(steady.delays(0).next(), Some(Duration::from_millis(200)));
    let _disabled = RetryBudget::disabled();

    let breakers: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(5)
            .open_duration(Duration::from_secs(30))
            .half_open_probes(1),
    )
    .max_keys(100_000)
    .idle_ttl(Duration::from_secs(600));
    let breaker: Breaker = breakers.get("org-46cf");
    let value = policy.call(|| client.send(&msg)).breaker(&breaker).await;
    assert_eq!(value?, 1);
    assert_eq!(breaker.state(), BreakerState::Closed);
    let snapshots: Vec<BreakerSnapshot<String>> = breakers.snapshot();
    assert_eq!(snapshots.len(), 1);
    let s = &snapshots[0];
    let (_key, _state, _failures, _retry_in): (&String, BreakerState, u32, Option<Duration>) =
        (&s.key, s.state, s.consecutive_failures, s.retry_in);
    assert_eq!(breakers.len(), 1);

    let config = BreakerConfig::default()
        .consecutive_failures(5)
        .failure_rate(0.5, Duration::from_secs(30))
        .minimum_calls(20)
        .open_duration(Duration::from_secs(30))
        .half_open_probes(1)
        .successes_to_close(1)
        .probe_lease(Duration::from_secs(30));
    let _registry: BreakerRegistry<String> = BreakerRegistry::try_new(config)?;
    breaker.force_open();
    assert_eq!(breaker.state(), BreakerState::Open);
    breaker.reset();
    assert_eq!(breaker.state(), BreakerState::Closed);
    Ok(())
}

#[test]
fn bad_breaker_configs_are_refused_where_first_used() {
    for (config, field) in [
        (
            BreakerConfig::default().failure_rate(1.5, Duration::from_secs(30)),
            "failure_rate",
        ),
        (
            BreakerConfig::default().failure_rate(0.0, Duration::from_secs(30)),
            "failure_rate",
        ),
        (
            BreakerConfig::default().failure_rate(f64::NAN, Duration::from_secs(30)),
            "failure_rate",
        ),
        (
            BreakerConfig::default().failure_rate(0.5, Duration::ZERO),
            "failure_rate",
        ),
        (
            BreakerConfig::default().half_open_probes(0),
            "half_open_probes",
        ),
    ] {
        let err = BreakerRegistry::<String>::try_new(config.clone()).unwrap_err();
        assert!(err.field().contains(field), "{err} for {field}");
        assert!(Breaker::try_new(config).is_err());
    }
}

#[test]
#[should_panic]
fn new_panics_on_a_config_try_new_refuses() {
    let _ = BreakerRegistry::<String>::new(BreakerConfig::default().half_open_probes(0));
}

#[tokio::test(start_paused = true)]
async fn error_accessors() {
    use std::error::Error as _;
    let policy: SafeCall<MyError> = SafeCall::builder()
        .max_retries(0)
        .classify(|_: &MyError| ErrorClass::Permanent)
        .build()
        .unwrap();
    let err = policy
        .call(|| async {
            Err::<(), _>(MyError {
                status: 401,
                retry_after: Duration::ZERO,
            })
        })
        .await
        .unwrap_err();
    assert_eq!(err.attempts(), 1);
    assert_eq!(err.source().map(|s| s.to_string()), Some("HTTP 401".into()));
    assert_eq!(err.into_inner().map(|e| e.status), Some(401));
}
