//! TwilioGuard: SMS for many organisations through one Twilio client, with a
//! circuit breaker per organisation, error classification by Twilio's error
//! codes, retries that never send a message twice, and batch sending.
//!
//! It runs against a local stand-in for Twilio's Messages API (axum on
//! 127.0.0.1) that injects one fault per organisation: a 503 burst, a rate
//! limit with `Retry-After`, answers lost after the message was accepted, and
//! revoked credentials. It prints a summary per organisation.
//!
//! ```text
//! cargo run --example twilio_guard
//! RUST_LOG=safecall=debug cargo run --example twilio_guard   # every retry and breaker change
//! ```
//!
//! Copying it into a real service, change:
//! - `GuardConfig::endpoint`: leave the default, `Endpoint::twilio()`
//!   (`https://api.twilio.com`; reqwest then needs a TLS feature, e.g.
//!   `rustls-tls`). Twilio's Messages API does not deduplicate by
//!   `Idempotency-Key`, so against it a send that may have gone out (the
//!   answer lost, a timeout, a 500/502/504) is not retried and ends as
//!   "unknown": reconcile those (Twilio's status callbacks, or listing the
//!   account's messages). This demo uses `Endpoint::deduplicating` because its
//!   stand-in does deduplicate; `TwilioGuard::new` refuses that for Twilio's
//!   own address. Retrying those sends safely needs a deduplicating proxy or
//!   your own outbox in between;
//! - the accounts: each org's Account SID and auth token from your secret store,
//!   kept in `SecretString`; never log them;
//! - the timings, which are scaled down here to milliseconds: backoff from 1 s,
//!   `request_timeout` ~10 s, `deadline` ~60 s, breaker `open_duration` 30 s;
//! - the stand-in server and its faults: delete them.

#[path = "twilio_guard/guard.rs"]
mod guard;
#[path = "twilio_guard/server.rs"]
mod server;

use std::collections::HashMap;

use secrecy::SecretString;

use guard::{Endpoint, GuardConfig, OrgId, OrgSummary, Sms, TwilioAccount, TwilioGuard};
use server::{Faults, StandInTwilio};

/// The demo's organisations: (org, Account SID, the fault its account gets).
fn orgs() -> Vec<(&'static str, &'static str, Faults)> {
    vec![
        (
            "acme",
            "AC00000000000000000000000000000001",
            Faults::default(),
        ),
        (
            "globex",
            "AC00000000000000000000000000000002",
            Faults {
                unavailable: 2,
                ..Faults::default()
            },
        ),
        (
            "hooli",
            "AC00000000000000000000000000000003",
            Faults {
                rate_limited: 1,
                retry_after_secs: 1,
                ..Faults::default()
            },
        ),
        (
            "initech",
            "AC00000000000000000000000000000004",
            Faults {
                drop_after_accept: 2,
                ..Faults::default()
            },
        ),
        (
            "umbrella",
            "AC00000000000000000000000000000005",
            // The stand-in refuses this account's token, as after a rotation
            // that nobody copied into the service.
            Faults {
                bad_credentials: true,
                ..Faults::default()
            },
        ),
    ]
}

/// Six reminders, one of them to a number Twilio refuses (21211).
fn reminders(org: &str) -> Vec<Sms> {
    (0..6)
        .map(|i| {
            let to = if i == 4 {
                "+1555".to_owned() // too short: not a valid E.164 number
            } else {
                format!("+1415555{:04}", 100 + i)
            };
            Sms::new(
                to,
                format!("{org}: your appointment is tomorrow at {}:00", 9 + i),
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let twilio = StandInTwilio::start().await?;
    let mut accounts = HashMap::new();
    for (org, sid, faults) in orgs() {
        let token = format!("token-{org}");
        twilio.add_account(sid, &token);
        twilio.inject(sid, faults);
        accounts.insert(
            OrgId::new(org),
            TwilioAccount {
                account_sid: sid.to_owned(),
                auth_token: SecretString::from(token),
                from: "+14155550000".to_owned(),
            },
        );
    }

    let guard = TwilioGuard::new(
        GuardConfig {
            // The stand-in answers a repeated idempotency key with the message
            // it already created, so a lost answer is retried safely here.
            // Against Twilio, keep the default (`Endpoint::twilio()`).
            endpoint: Endpoint::deduplicating(twilio.base_url()),
            ..GuardConfig::default()
        },
        accounts,
    )?;
    println!("stand-in Twilio on {}\n", twilio.base_url());

    // Every org sends its batch at the same time, through the one guard.
    let started = std::time::Instant::now();
    let batches = orgs().into_iter().map(|(org, sid, _)| {
        let guard = &guard;
        async move {
            let org = OrgId::new(org);
            let outcomes = guard.send_batch(&org, &reminders(&org.0)).await;
            (org, sid, outcomes)
        }
    });
    let results = futures::future::join_all(batches).await;
    let elapsed = started.elapsed();

    println!("per-organisation summary (6 messages each):");
    for (org, sid, outcomes) in &results {
        let summary = OrgSummary::new(&guard, org, outcomes);
        let stats = twilio.stats(sid);
        println!(
            "  {summary}\n  {:<10} stand-in saw {} requests, created {} messages, replayed {}, max per key {}",
            "",
            stats.requests,
            stats.messages,
            stats.replays,
            twilio.max_messages_per_key(sid),
        );
    }

    println!("\nfirst failure of each kind:");
    let mut seen = std::collections::BTreeSet::new();
    for (org, _, outcomes) in &results {
        for failed in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            if seen.insert(failed.reason) {
                println!(
                    "  {org:<10} {:<28} {}",
                    failed.reason.label(),
                    failed.detail
                );
            }
        }
    }
    // One more message per org after the batches: a tripped breaker answers
    // at once, without a request.
    println!("\na follow-up message per org:");
    for (org, sid, _) in &results {
        let before = twilio.stats(sid).requests;
        let outcome = guard.send_sms(org, "+14155550199", "follow-up").await;
        let requests = twilio.stats(sid).requests - before;
        match outcome {
            Ok(sent) => println!("  {org:<10} sent {} ({requests} request)", sent.sid),
            Err(failed) => println!(
                "  {org:<10} {} ({requests} requests): {}",
                failed.reason.label(),
                failed.detail
            ),
        }
    }
    println!("\ndone in {:.1} s", elapsed.as_secs_f64());
    Ok(())
}
