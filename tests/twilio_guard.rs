//! The `twilio_guard` example's code, for real: its classification table, its
//! policy under tokio's paused clock, and the guard over HTTP on 127.0.0.1
//! against the example's stand-in server.
//!
//! Real sockets do not mix with the paused clock, so the HTTP tests run on the
//! real clock with zero backoff and assert counts and outcomes, never times.

#[path = "../examples/twilio_guard/guard.rs"]
mod guard;
#[path = "../examples/twilio_guard/server.rs"]
mod server;

use std::collections::HashMap;
use std::time::Duration;

use safecall::{
    Backoff, BreakerConfig, BreakerState, Error, ErrorClass, Jitter, RetryBudget, SafeCall,
};
use secrecy::SecretString;
use tokio::time::Instant;

use guard::{
    Ambiguity, Endpoint, FailReason, GuardConfig, IdempotencyKeys, OrgId, Sms, TWILIO_API,
    TwilioAccount, TwilioError, TwilioGuard, classify, codes,
};
use server::{Faults, StandInTwilio};

fn api(status: u16, code: Option<u32>, retry_after: Option<u64>) -> TwilioError {
    TwilioError::Api {
        status,
        code,
        message: String::new(),
        retry_after: retry_after.map(Duration::from_secs),
    }
}

#[test]
fn classification_table() {
    use Ambiguity::{DoNotRetry, RetryWithKey};
    use ErrorClass::{CallerFault, Permanent, RetryAfter, Transient};
    let secs = Duration::from_secs;
    let table: Vec<(TwilioError, Ambiguity, ErrorClass)> = vec![
        // Rate limits: the hint is kept (a floor), no hint is plain transient.
        (
            api(429, Some(codes::TOO_MANY_REQUESTS), Some(3)),
            RetryWithKey,
            RetryAfter(secs(3)),
        ),
        (
            api(429, Some(codes::TOO_MANY_REQUESTS), None),
            RetryWithKey,
            Transient,
        ),
        (api(503, None, Some(2)), RetryWithKey, RetryAfter(secs(2))),
        (api(503, None, Some(2)), DoNotRetry, RetryAfter(secs(2))),
        // Refused before it was taken on, or unreachable: transient.
        (api(503, Some(20503), None), RetryWithKey, Transient),
        (api(503, Some(20503), None), DoNotRetry, Transient),
        (
            api(429, Some(codes::TOO_MANY_REQUESTS), None),
            DoNotRetry,
            Transient,
        ),
        // A server error that may have come after the message was created:
        // retried only where the key makes it safe.
        (api(500, None, None), RetryWithKey, Transient),
        (api(502, None, None), RetryWithKey, Transient),
        (api(500, None, None), DoNotRetry, Permanent),
        (api(502, None, None), DoNotRetry, Permanent),
        (api(504, None, None), DoNotRetry, Permanent),
        (
            TwilioError::Connect("refused".into()),
            DoNotRetry,
            Transient,
        ),
        // The message is wrong: the caller's fault.
        (
            api(400, Some(codes::INVALID_TO), None),
            RetryWithKey,
            CallerFault,
        ),
        (
            api(400, Some(codes::BODY_REQUIRED), None),
            RetryWithKey,
            CallerFault,
        ),
        (api(400, Some(21610), None), RetryWithKey, CallerFault),
        (api(422, None, None), RetryWithKey, CallerFault),
        // The org's account is broken: permanent, counted by its breaker.
        (
            api(401, Some(codes::AUTHENTICATION_FAILED), None),
            RetryWithKey,
            Permanent,
        ),
        (api(401, None, None), RetryWithKey, Permanent),
        (api(403, Some(20005), None), RetryWithKey, Permanent),
        (
            api(404, Some(codes::NOT_FOUND), None),
            RetryWithKey,
            Permanent,
        ),
        // Maybe accepted: retried only when the key makes it safe.
        (
            TwilioError::Ambiguous("reset".into()),
            RetryWithKey,
            Transient,
        ),
        (
            TwilioError::Ambiguous("reset".into()),
            DoNotRetry,
            Permanent,
        ),
    ];
    for (error, ambiguity, expected) in table {
        assert_eq!(
            classify(&error, ambiguity),
            expected,
            "{error} with {ambiguity:?}"
        );
    }
}

/// The example's policy waits at least the server's `Retry-After`, whatever
/// its own (shorter, jittered) backoff says.
#[tokio::test(start_paused = true)]
async fn retry_after_is_a_floor() {
    let policy: SafeCall<TwilioError> = guard::policy(&GuardConfig::default()).expect("policy");
    let started = Instant::now();
    let mut calls = 0;
    let sid = policy
        .call(|| {
            calls += 1;
            let first = calls == 1;
            async move {
                if first {
                    Err(api(429, Some(codes::TOO_MANY_REQUESTS), Some(3)))
                } else {
                    Ok("SM1")
                }
            }
        })
        .await
        .expect("sent on the second attempt");
    assert_eq!(sid, "SM1");
    assert_eq!(calls, 2);
    let waited = started.elapsed();
    let max_backoff = GuardConfig::default().max_backoff;
    assert!(waited >= Duration::from_secs(3), "waited {waited:?}");
    assert!(
        waited <= Duration::from_secs(3) + max_backoff,
        "waited {waited:?}"
    );
}

const FROM: &str = "+14155550000";

/// A stand-in with one account per `(org, sid, faults)` and a guard for them
/// with zero backoff and no retry budget.
async fn setup(
    orgs: &[(&str, &str, Faults)],
    tweak: impl FnOnce(&mut GuardConfig),
) -> (StandInTwilio, TwilioGuard) {
    let twilio = StandInTwilio::start().await.expect("stand-in");
    let mut accounts = HashMap::new();
    for (org, sid, faults) in orgs {
        let token = format!("secret-{org}");
        twilio.add_account(sid, &token);
        twilio.inject(sid, faults.clone());
        accounts.insert(
            OrgId::new(*org),
            TwilioAccount {
                account_sid: (*sid).to_owned(),
                auth_token: SecretString::from(token),
                from: FROM.to_owned(),
            },
        );
    }
    let mut config = GuardConfig {
        // The stand-in deduplicates by key; tests that need Twilio's rules
        // set `Endpoint::twilio().at(..)` in `tweak`.
        endpoint: Endpoint::deduplicating(twilio.base_url()),
        backoff: Duration::ZERO,
        retry_budget: RetryBudget::disabled(),
        // Generous: only a wedged test would reach these.
        request_timeout: Duration::from_secs(30),
        deadline: Duration::from_secs(60),
        ..GuardConfig::default()
    };
    tweak(&mut config);
    let guard = TwilioGuard::new(config, accounts).expect("guard");
    (twilio, guard)
}

fn messages(n: usize) -> Vec<Sms> {
    (0..n)
        .map(|i| Sms::new(format!("+1415555{:04}", i), format!("message {i}")))
        .collect()
}

#[tokio::test]
async fn no_double_send_when_answers_are_lost() {
    let sid = "AC1";
    let (twilio, guard) = setup(
        &[(
            "initech",
            sid,
            Faults {
                drop_after_accept: 3,
                ..Faults::default()
            },
        )],
        // Three lost answers in a row must not open the breaker here: this
        // test is about deduplication.
        |c| c.breaker = BreakerConfig::default().consecutive_failures(10),
    )
    .await;
    let org = OrgId::new("initech");

    let outcomes = guard.send_batch(&org, &messages(10)).await;

    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let replayed = outcomes
        .iter()
        .filter(|o| o.as_ref().is_ok_and(|s| s.replayed))
        .count();
    assert_eq!(replayed, 3, "each lost answer is recovered by a replay");
    let stats = twilio.stats(sid);
    assert_eq!(stats.messages, 10, "one message per SMS");
    assert_eq!(stats.requests, 13);
    assert_eq!(stats.replays, 3);
    assert_eq!(twilio.max_messages_per_key(sid), 1, "nothing sent twice");
    assert_eq!(guard.breaker_state(&org), BreakerState::Closed);
}

#[test]
fn the_default_endpoint_is_twilio_and_does_not_retry_a_send_that_may_have_gone_out() {
    let endpoint = GuardConfig::default().endpoint;
    assert_eq!(endpoint, Endpoint::twilio());
    assert_eq!(endpoint.base_url(), TWILIO_API);
    assert_eq!(endpoint.keys(), IdempotencyKeys::Ignored);
    assert_eq!(endpoint.ambiguity(), Ambiguity::DoNotRetry);
    // Moving it keeps the rule; only a deduplicating endpoint retries.
    let moved = Endpoint::twilio().at("http://127.0.0.1:1");
    assert_eq!(moved.ambiguity(), Ambiguity::DoNotRetry);
    assert_eq!(
        Endpoint::deduplicating("http://127.0.0.1:1").ambiguity(),
        Ambiguity::RetryWithKey
    );
}

#[test]
fn a_deduplicating_endpoint_at_twilios_address_is_refused() {
    for url in [
        TWILIO_API,
        "https://api.twilio.com/",
        "https://messaging.twilio.com",
    ] {
        let error = TwilioGuard::new(
            GuardConfig {
                endpoint: Endpoint::deduplicating(url),
                ..GuardConfig::default()
            },
            HashMap::new(),
        )
        .expect_err("Twilio does not deduplicate");
        assert!(error.to_string().contains("Endpoint::twilio()"), "{error}");
    }
    // The default and a deduplicating stand-in are fine.
    TwilioGuard::new(GuardConfig::default(), HashMap::new()).expect("default");
    TwilioGuard::new(
        GuardConfig {
            endpoint: Endpoint::deduplicating("http://127.0.0.1:1"),
            ..GuardConfig::default()
        },
        HashMap::new(),
    )
    .expect("stand-in");
}

/// A stand-in that ignores idempotency keys, as Twilio does, with one
/// account ("AC1" for org "initech") and `faults`; a guard for it with the
/// default configuration, moved to the stand-in's address, or with `endpoint`.
async fn like_twilio(
    faults: Faults,
    endpoint: impl FnOnce(String) -> Endpoint,
) -> (StandInTwilio, TwilioGuard) {
    let twilio = StandInTwilio::start_ignoring_keys()
        .await
        .expect("stand-in");
    twilio.add_account("AC1", "secret");
    twilio.inject("AC1", faults);
    let config = GuardConfig {
        endpoint: endpoint(twilio.base_url()),
        backoff: Duration::ZERO,
        retry_budget: RetryBudget::disabled(),
        request_timeout: Duration::from_secs(30),
        deadline: Duration::from_secs(60),
        ..GuardConfig::default()
    };
    let guard = TwilioGuard::new(
        config,
        HashMap::from([(
            OrgId::new("initech"),
            TwilioAccount {
                account_sid: "AC1".into(),
                auth_token: SecretString::from("secret"),
                from: FROM.into(),
            },
        )]),
    )
    .expect("guard");
    (twilio, guard)
}

/// Issue 11: the default paired Twilio's address with retrying a lost
/// answer under a key Twilio ignores, which sends the message twice.
#[tokio::test]
async fn by_default_a_lost_answer_is_sent_once_where_keys_are_ignored() {
    let (twilio, guard) = like_twilio(
        Faults {
            drop_after_accept: 1,
            ..Faults::default()
        },
        |url| GuardConfig::default().endpoint.at(url),
    )
    .await;

    let failed = guard
        .send_sms(&OrgId::new("initech"), "+14155550100", "hello")
        .await
        .expect_err("the answer was lost");

    assert_eq!(failed.reason, FailReason::Unknown);
    assert_eq!(failed.attempts, 1);
    let stats = twilio.stats("AC1");
    assert_eq!((stats.requests, stats.messages), (1, 1));
    assert_eq!(twilio.max_messages_per_key("AC1"), 1, "sent once");
}

#[tokio::test]
async fn by_default_a_500_after_the_message_was_created_is_sent_once() {
    let (twilio, guard) = like_twilio(
        Faults {
            fail_after_accept: 1,
            ..Faults::default()
        },
        |url| GuardConfig::default().endpoint.at(url),
    )
    .await;

    let failed = guard
        .send_sms(&OrgId::new("initech"), "+14155550100", "hello")
        .await
        .expect_err("the server failed after creating it");

    assert_eq!(failed.reason, FailReason::Unknown);
    assert_eq!(failed.attempts, 1);
    assert_eq!(twilio.stats("AC1").messages, 1);
    assert_eq!(twilio.max_messages_per_key("AC1"), 1, "sent once");
}

#[tokio::test]
async fn by_default_a_503_burst_is_still_retried() {
    let (twilio, guard) = like_twilio(
        Faults {
            unavailable: 2,
            ..Faults::default()
        },
        |url| GuardConfig::default().endpoint.at(url),
    )
    .await;

    let sent = guard
        .send_sms(&OrgId::new("initech"), "+14155550100", "hello")
        .await
        .expect("sent on the third attempt");

    assert_eq!(sent.attempts, 3);
    let stats = twilio.stats("AC1");
    assert_eq!((stats.requests, stats.messages), (3, 1));
}

/// What the default prevents, shown on the same stand-in: retrying a lost
/// answer where keys are ignored sends the message twice. (The guard refuses
/// this configuration for Twilio's own address.)
#[tokio::test]
async fn retrying_a_lost_answer_where_keys_are_ignored_would_send_twice() {
    let (twilio, guard) = like_twilio(
        Faults {
            drop_after_accept: 1,
            ..Faults::default()
        },
        Endpoint::deduplicating,
    )
    .await;

    let sent = guard
        .send_sms(&OrgId::new("initech"), "+14155550100", "hello")
        .await
        .expect("the retry got an answer");

    assert_eq!(sent.attempts, 2);
    assert!(!sent.replayed);
    assert_eq!(twilio.stats("AC1").messages, 2);
    assert_eq!(twilio.max_messages_per_key("AC1"), 2, "sent twice");
}

#[tokio::test]
async fn bad_credentials_open_only_that_orgs_breaker() {
    let (twilio, guard) = setup(
        &[
            (
                "umbrella",
                "AC1",
                Faults {
                    bad_credentials: true,
                    ..Faults::default()
                },
            ),
            ("acme", "AC2", Faults::default()),
        ],
        |c| c.breaker = BreakerConfig::default().consecutive_failures(3),
    )
    .await;
    let (umbrella, acme) = (OrgId::new("umbrella"), OrgId::new("acme"));

    for _ in 0..5 {
        let failed = guard
            .send_sms(&umbrella, "+14155550100", "hi")
            .await
            .expect_err("refused");
        assert!(
            matches!(
                failed.reason,
                FailReason::BadCredentials | FailReason::CircuitOpen
            ),
            "{failed:?}"
        );
        assert!(failed.attempts <= 1, "a permanent error is not retried");
    }
    let outcomes = guard.send_batch(&acme, &messages(5)).await;

    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(guard.breaker_state(&umbrella), BreakerState::Open);
    assert_eq!(guard.breaker_state(&acme), BreakerState::Closed);
    assert_eq!(
        twilio.stats("AC1").requests,
        3,
        "the open breaker kept the last two sends off the wire"
    );
    let open: Vec<OrgId> = guard
        .breakers()
        .snapshot()
        .into_iter()
        .filter(|s| s.state != BreakerState::Closed)
        .map(|s| s.key)
        .collect();
    assert_eq!(open, vec![umbrella]);
}

#[tokio::test]
async fn invalid_numbers_are_not_retried_or_counted() {
    let (twilio, guard) = setup(&[("acme", "AC1", Faults::default())], |c| {
        c.breaker = BreakerConfig::default().consecutive_failures(2);
    })
    .await;
    let org = OrgId::new("acme");

    for _ in 0..5 {
        let failed = guard
            .send_sms(&org, "+1555", "hi")
            .await
            .expect_err("invalid");
        assert_eq!(failed.reason, FailReason::InvalidRecipient);
        assert_eq!(failed.attempts, 1);
    }

    assert_eq!(guard.breaker_state(&org), BreakerState::Closed);
    assert_eq!(twilio.stats("AC1").requests, 5);
}

#[tokio::test]
async fn a_503_burst_is_retried() {
    let (twilio, guard) = setup(
        &[(
            "globex",
            "AC1",
            Faults {
                unavailable: 2,
                ..Faults::default()
            },
        )],
        |_| {},
    )
    .await;

    let sent = guard
        .send_sms(&OrgId::new("globex"), "+14155550100", "hi")
        .await
        .expect("sent on the third attempt");

    assert_eq!(sent.attempts, 3);
    assert!(!sent.replayed);
    let stats = twilio.stats("AC1");
    assert_eq!((stats.requests, stats.messages), (3, 1));
}

#[tokio::test]
async fn retry_after_header_reaches_the_policy() {
    // A hint longer than `max_retry_after` ends the send at once: the header
    // was parsed, and the guard does not sleep into a certain failure.
    let (twilio, guard) = setup(
        &[(
            "hooli",
            "AC1",
            Faults {
                rate_limited: 1,
                retry_after_secs: 120,
                ..Faults::default()
            },
        )],
        |_| {},
    )
    .await;

    let failed = guard
        .send_sms(&OrgId::new("hooli"), "+14155550100", "hi")
        .await
        .expect_err("the hint is too long to wait for");

    assert_eq!(failed.reason, FailReason::RateLimited);
    assert_eq!(failed.attempts, 1);
    assert_eq!(twilio.stats("AC1").requests, 1);
}

#[tokio::test]
async fn retry_after_hint_is_passed_through() {
    // With max_retries(0) the call ends on the 429 and hands back the error,
    // so the parsed hint can be checked exactly.
    let twilio = StandInTwilio::start().await.expect("stand-in");
    twilio.add_account("AC1", "secret");
    twilio.inject(
        "AC1",
        Faults {
            rate_limited: 1,
            retry_after_secs: 7,
            ..Faults::default()
        },
    );
    let config = GuardConfig {
        endpoint: Endpoint::deduplicating(twilio.base_url()),
        max_retries: 0,
        ..GuardConfig::default()
    };
    let guard = TwilioGuard::new(
        config,
        HashMap::from([(
            OrgId::new("hooli"),
            TwilioAccount {
                account_sid: "AC1".into(),
                auth_token: SecretString::from("secret"),
                from: FROM.into(),
            },
        )]),
    )
    .expect("guard");

    let failed = guard
        .send_sms(&OrgId::new("hooli"), "+14155550100", "hi")
        .await
        .expect_err("rate limited");
    assert_eq!(failed.reason, FailReason::RateLimited);
    assert!(
        failed.detail.contains("Twilio error 20429 (HTTP 429)"),
        "{}",
        failed.detail
    );
    // The hint cooled the org's breaker down: the next send fails fast,
    // without a request, if the guard may not wait that long.
    let snapshot = guard.breakers().get(&OrgId::new("hooli")).snapshot();
    assert!(snapshot.cooling_down);
    assert_eq!(snapshot.state, BreakerState::Open);
}

#[tokio::test]
async fn connection_errors_are_retried_then_reported() {
    // A port with nothing listening: the connection is refused every time.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let guard = TwilioGuard::new(
        GuardConfig {
            // Twilio's rules: a connection never made is retried there too.
            endpoint: Endpoint::twilio().at(format!("http://{addr}")),
            backoff: Duration::ZERO,
            retry_budget: RetryBudget::disabled(),
            breaker: BreakerConfig::default().consecutive_failures(10),
            ..GuardConfig::default()
        },
        HashMap::from([(
            OrgId::new("acme"),
            TwilioAccount {
                account_sid: "AC1".into(),
                auth_token: SecretString::from("secret"),
                from: FROM.into(),
            },
        )]),
    )
    .expect("guard");

    let failed = guard
        .send_sms(&OrgId::new("acme"), "+14155550100", "hi")
        .await
        .expect_err("nothing listens");

    assert_eq!(failed.reason, FailReason::ProviderUnavailable);
    assert_eq!(failed.attempts, 4, "1 + max_retries");
    assert!(
        failed.detail.contains("retries used up"),
        "{}",
        failed.detail
    );
}

#[tokio::test]
async fn batch_outcomes_come_back_in_input_order() {
    let (_twilio, guard) = setup(&[("acme", "AC1", Faults::default())], |c| {
        c.concurrency = 3;
    })
    .await;
    let batch: Vec<Sms> = (0..12)
        .map(|i| {
            let to = if i % 4 == 1 {
                "+1555".to_owned()
            } else {
                format!("+1415555{i:04}")
            };
            Sms::new(to, format!("message {i}"))
        })
        .collect();

    let outcomes = guard.send_batch(&OrgId::new("acme"), &batch).await;

    assert_eq!(outcomes.len(), 12);
    for (i, outcome) in outcomes.iter().enumerate() {
        match outcome {
            Ok(_) => assert_ne!(i % 4, 1, "message {i}"),
            Err(failed) => {
                assert_eq!(i % 4, 1, "message {i}");
                assert_eq!(failed.reason, FailReason::InvalidRecipient);
            }
        }
    }
}

#[test]
fn credentials_are_redacted() {
    let account = TwilioAccount {
        account_sid: "AC1".into(),
        auth_token: SecretString::from("tw-secret-4f1e"),
        from: FROM.into(),
    };
    let shown = format!("{account:?}");
    assert!(!shown.contains("tw-secret-4f1e"), "{shown}");
}

/// The policy ends a send that the breaker refuses at once, with the backoff
/// never slept on (checked under the paused clock).
#[tokio::test(start_paused = true)]
async fn open_breaker_refuses_without_waiting() {
    let policy: SafeCall<TwilioError> = SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::exponential(Duration::from_secs(1)).jitter(Jitter::None))
        .classify(|e: &TwilioError| classify(e, Ambiguity::RetryWithKey))
        .build()
        .expect("policy");
    let breaker = safecall::Breaker::new(BreakerConfig::default().consecutive_failures(1));
    let started = Instant::now();
    let first: Result<(), _> = policy
        .call(|| async { Err(api(401, Some(codes::AUTHENTICATION_FAILED), None)) })
        .breaker(&breaker)
        .await;
    assert!(matches!(first, Err(Error::Permanent { attempts: 1, .. })));
    let second: Result<(), _> = policy.call(|| async { Ok(()) }).breaker(&breaker).await;
    assert!(matches!(
        second,
        Err(Error::CircuitOpen { attempts: 0, .. })
    ));
    assert_eq!(started.elapsed(), Duration::ZERO);
}
