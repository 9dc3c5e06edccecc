//! The OAuth token refresher: each tenant's access token is cached and
//! refreshed ahead of expiry, one refresh at a time however many requests need
//! it; a 401 from the API forgets the token, refreshes and retries once; a
//! refused grant (`invalid_grant`) marks the tenant "Not Linked" instead of
//! retrying, while network errors and 5xx from the token endpoint are retried
//! through `SafeCall`.
//!
//! It runs against a local stand-in for Google's token endpoint and Calendar
//! API (axum on 127.0.0.1) and walks through each case, printing what the
//! server saw. Tokens are kept in `SecretString` / `AccessToken`, whose `Debug`
//! prints `[redacted]`; nothing here prints a token.
//!
//! ```text
//! cargo run --example token_refresher
//! RUST_LOG=safecall=debug cargo run --example token_refresher   # every retry
//! ```
//!
//! Copying it into a real service, change:
//! - the URLs: `https://oauth2.googleapis.com/token` and
//!   `https://www.googleapis.com` (reqwest then needs a TLS feature);
//! - the client ID and secret: from your secret store, into `SecretString`;
//! - the refresh tokens: from your database, per tenant (encrypted at rest);
//!   on `NotLinked`, store the status and show the tenant a "link again" button;
//! - the timings, scaled down here: `skew` 60 s is realistic; backoff from
//!   ~500 ms, `request_timeout` ~10 s, `deadline` ~30 s;
//! - the stand-in server: delete it.

#[path = "token_refresher/server.rs"]
mod server;
#[path = "token_refresher/tokens.rs"]
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use server::{CLIENT_ID, CLIENT_SECRET, StandInGoogle};
use tokens::{CalendarClient, OAuthClient, TenantTokens, TokenConfig, TokenSource};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    // Tokens live an hour; the client refreshes 60 s before they expire.
    let google = StandInGoogle::start(3600).await?;
    let config = TokenConfig::default();
    let http = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .build()?;
    let oauth = Arc::new(OAuthClient::new(
        http.clone(),
        google.token_url(),
        CLIENT_ID,
        SecretString::from(CLIENT_SECRET),
        &config,
    )?);
    let calendar = Arc::new(CalendarClient::new(http, google.base_url(), &config)?);

    let tenant = |name: &str| {
        let refresh_token = format!("1//refresh-{name}");
        google.link(name, &refresh_token);
        Arc::new(TenantTokens::linked(
            name,
            Arc::clone(&oauth),
            config.skew,
            SecretString::from(refresh_token),
        ))
    };
    let dental = tenant("dental-co");
    let law = tenant("law-firm");
    let bakery = tenant("bakery");
    println!("stand-in Google on {}\n", google.base_url());

    // 1. Single flight: 100 requests, no token yet.
    google.close_gate(); // hold the first refresh until every caller is queued
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (calendar, dental) = (Arc::clone(&calendar), Arc::clone(&dental));
            tokio::spawn(async move { calendar.upcoming_events(&*dental).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    google.open_gate();
    let mut ok = 0;
    for call in calls {
        ok += usize::from(call.await?.is_ok());
    }
    println!("1. single flight: 100 concurrent calls with no token");
    println!(
        "   {ok}/100 succeeded; token endpoint saw {} refresh request(s)",
        google.refresh_requests("dental-co")
    );

    // 2. Refresh ahead of expiry: a cached token with 30 s left, skew 60 s.
    law.seed(
        SecretString::from("ya29.loaded-from-storage"),
        Duration::from_secs(30),
    );
    let events = calendar.upcoming_events(&*law).await?;
    println!("\n2. refresh ahead: law-firm's stored token expires in 30 s (< 60 s skew)");
    println!(
        "   refreshed before use: {} refresh; {} events, first: {:?}",
        google.refresh_requests("law-firm"),
        events.len(),
        events.first().map(|e| &e.summary)
    );

    // 3. A 401: the provider dropped the token early.
    google.expire_access_tokens("dental-co");
    let before = google.refresh_requests("dental-co");
    let result = calendar.upcoming_events(&*dental).await;
    let (requests, unauthorized) = google.api_requests("dental-co");
    println!("\n3. 401 → refresh → retry once: dental-co's token revoked server-side");
    println!(
        "   {}; refreshes +{}, calendar 401s so far {unauthorized} of {requests} requests",
        if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        },
        google.refresh_requests("dental-co") - before,
    );

    // 4. The token endpoint has a bad moment: 503 twice, retried.
    google.token_outage(2);
    google.expire_access_tokens("dental-co");
    let before = google.refresh_requests("dental-co");
    let result = calendar.upcoming_events(&*dental).await;
    println!("\n4. token endpoint answers 503 twice (transient: retried by SafeCall)");
    println!(
        "   {}; token requests for the one refresh: {}",
        if result.is_ok() {
            "succeeded"
        } else {
            "failed"
        },
        google.refresh_requests("dental-co") - before,
    );

    // 5. The tenant revoked access: invalid_grant → "Not Linked", no retries.
    google.revoke("bakery");
    let first = calendar.upcoming_events(&*bakery).await;
    let second = calendar.upcoming_events(&*bakery).await;
    println!("\n5. bakery revoked access (invalid_grant: permanent)");
    if let Err(e) = &first {
        println!(
            "   first call: {e}: {}",
            e.inner().map(ToString::to_string).unwrap_or_default()
        );
    }
    println!(
        "   second call failed: {}; token requests in all: {} (the second call asked nobody)",
        second.is_err(),
        google.refresh_requests("bakery"),
    );

    println!("\ntenants:");
    for t in [&dental, &law, &bakery] {
        println!(
            "  {:<10} {:<10} refreshes started: {}",
            t.tenant(),
            t.status(),
            t.refreshes()
        );
    }
    println!(
        "\n401 retries: {}; a token as Debug shows it: {:?}",
        calendar.auth_retries(),
        dental.token().await?
    );
    Ok(())
}
