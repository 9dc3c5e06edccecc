//! The `token_refresher` example's code, for real, over HTTP on 127.0.0.1
//! against its stand-in token endpoint and calendar API.
//!
//! Real sockets do not mix with the paused clock, so these tests run on the
//! real clock with zero backoff and assert counts and outcomes, never times.
//! They use tokio's default current-thread runtime: a spawned caller runs only
//! when the test task yields, so "every caller is queued" can be checked.

#[path = "../examples/token_refresher/server.rs"]
mod server;
#[path = "../examples/token_refresher/tokens.rs"]
mod tokens;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use safecall::{Error, ErrorClass, RetryBudget};
use secrecy::SecretString;
use tokio::time::Instant;

use server::{CLIENT_ID, CLIENT_SECRET, StandInGoogle};
use tokens::{
    CalendarClient, CalendarError, LinkStatus, OAuthClient, RefreshError, TenantTokens,
    TokenConfig, TokenError, TokenSource, classify_calendar, classify_refresh, is_fresh,
};

struct Fixture {
    google: StandInGoogle,
    oauth: Arc<OAuthClient>,
    calendar: Arc<CalendarClient>,
    config: TokenConfig,
}

impl Fixture {
    async fn new(expires_in: u64, skew: Duration) -> Self {
        let google = StandInGoogle::start(expires_in).await.expect("stand-in");
        let config = TokenConfig {
            skew,
            backoff: Duration::ZERO,
            retry_budget: RetryBudget::disabled(),
            request_timeout: Duration::from_secs(30),
            deadline: Duration::from_secs(60),
            ..TokenConfig::default()
        };
        let http = reqwest::Client::new();
        let oauth = Arc::new(
            OAuthClient::new(
                http.clone(),
                google.token_url(),
                CLIENT_ID,
                SecretString::from(CLIENT_SECRET),
                &config,
            )
            .expect("oauth"),
        );
        let calendar =
            Arc::new(CalendarClient::new(http, google.base_url(), &config).expect("calendar"));
        Self {
            google,
            oauth,
            calendar,
            config,
        }
    }

    fn tenant(&self, name: &str) -> Arc<TenantTokens> {
        let refresh_token = format!("1//refresh-{name}");
        self.google.link(name, &refresh_token);
        Arc::new(TenantTokens::linked(
            name,
            Arc::clone(&self.oauth),
            self.config.skew,
            SecretString::from(refresh_token),
        ))
    }
}

async fn yield_until(mut done: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition never held");
}

#[tokio::test]
async fn one_refresh_for_a_hundred_concurrent_callers() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("dental-co");
    // A stored token that has already expired.
    tenant.seed(SecretString::from("ya29.expired"), Duration::ZERO);

    fx.google.close_gate();
    let started = Arc::new(AtomicUsize::new(0));
    let calls: Vec<_> = (0..100)
        .map(|_| {
            let (calendar, tenant, started) = (
                Arc::clone(&fx.calendar),
                Arc::clone(&tenant),
                Arc::clone(&started),
            );
            tokio::spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                calendar.upcoming_events(&*tenant).await
            })
        })
        .collect();
    // On this single-threaded runtime, once all 100 have started, each one is
    // parked at an `.await`: the one refresher in the gated token request, the
    // other 99 queued behind it.
    yield_until(|| started.load(Ordering::SeqCst) == 100).await;
    yield_until(|| fx.google.refresh_requests("dental-co") == 1).await;
    fx.google.open_gate();

    for call in calls {
        let events = call.await.expect("task").expect("events");
        assert_eq!(events.len(), 2);
    }
    assert_eq!(fx.google.refresh_requests("dental-co"), 1);
    assert_eq!(tenant.refreshes(), 1);
    assert_eq!(fx.google.api_requests("dental-co"), (100, 0));
}

#[tokio::test]
async fn a_failing_refresh_is_shared_not_repeated() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("dental-co");
    fx.google.revoke("dental-co");

    fx.google.close_gate();
    let calls: Vec<_> = (0..20)
        .map(|_| {
            let tenant = Arc::clone(&tenant);
            tokio::spawn(async move { tenant.token().await })
        })
        .collect();
    yield_until(|| fx.google.refresh_requests("dental-co") == 1).await;
    fx.google.open_gate();

    for call in calls {
        assert_eq!(
            call.await.expect("task").expect_err("revoked"),
            TokenError::NotLinked
        );
    }
    assert_eq!(fx.google.refresh_requests("dental-co"), 1);
}

#[tokio::test]
async fn a_401_refreshes_and_retries_once() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("dental-co");
    fx.calendar.upcoming_events(&*tenant).await.expect("first");
    assert_eq!(fx.google.refresh_requests("dental-co"), 1);

    fx.google.expire_access_tokens("dental-co");
    let events = fx
        .calendar
        .upcoming_events(&*tenant)
        .await
        .expect("after 401");

    assert_eq!(events.len(), 2);
    assert_eq!(fx.google.refresh_requests("dental-co"), 2);
    // first call, the 401, and the retry with the new token
    assert_eq!(fx.google.api_requests("dental-co"), (3, 1));
    assert_eq!(fx.calendar.auth_retries(), 1);
}

#[tokio::test]
async fn a_second_401_is_not_retried_again() {
    // A token source whose tokens the API always refuses: one retry, then
    // the call ends as permanent, without SafeCall retrying it.
    struct Refused(AtomicUsize);
    impl TokenSource for Refused {
        async fn token(&self) -> Result<tokens::AccessToken, TokenError> {
            Err(TokenError::Unavailable(format!(
                "call {}",
                self.0.fetch_add(1, Ordering::SeqCst)
            )))
        }
        fn invalidate(&self, _: &tokens::AccessToken) {}
    }
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let source = Refused(AtomicUsize::new(0));
    let result = fx.calendar.upcoming_events(&source).await;
    assert!(
        matches!(
            result,
            Err(Error::Permanent {
                attempts: 1,
                source: CalendarError::Token(TokenError::Unavailable(_)),
                ..
            })
        ),
        "{result:?}"
    );
    assert_eq!(source.0.load(Ordering::SeqCst), 1, "one layer retries");

    // A stored token the server does not know: 401, refresh, retry.
    let tenant = fx.tenant("law-firm");
    tenant.seed(
        SecretString::from("ya29.not-known-to-the-server"),
        Duration::from_secs(3600),
    );
    let events = fx
        .calendar
        .upcoming_events(&*tenant)
        .await
        .expect("refreshed");
    assert_eq!(events.len(), 2);
    assert_eq!(fx.google.refresh_requests("law-firm"), 1);
}

#[tokio::test]
async fn invalid_grant_shows_not_linked() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("bakery");
    fx.google.revoke("bakery");

    let first = fx.calendar.upcoming_events(&*tenant).await;
    assert!(
        matches!(
            first,
            Err(Error::Permanent {
                attempts: 1,
                source: CalendarError::Token(TokenError::NotLinked),
                ..
            })
        ),
        "{first:?}"
    );
    assert_eq!(tenant.status(), LinkStatus::NotLinked);
    assert_eq!(tenant.status().to_string(), "Not Linked");
    assert_eq!(
        fx.google.refresh_requests("bakery"),
        1,
        "invalid_grant is not retried"
    );

    // Not linked: nobody is asked any more.
    assert_eq!(
        tenant.token().await.expect_err("not linked"),
        TokenError::NotLinked
    );
    assert_eq!(fx.google.refresh_requests("bakery"), 1);

    // The tenant links again.
    fx.google.link("bakery", "1//refresh-bakery-2");
    tenant.relink(SecretString::from("1//refresh-bakery-2"));
    assert_eq!(tenant.status(), LinkStatus::Linked);
    fx.calendar
        .upcoming_events(&*tenant)
        .await
        .expect("linked again");
}

#[tokio::test]
async fn token_endpoint_outage_is_retried() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("dental-co");
    fx.google.token_outage(2);

    tenant.token().await.expect("third request works");

    assert_eq!(fx.google.refresh_requests("dental-co"), 3);
    assert_eq!(tenant.refreshes(), 1);
    assert_eq!(tenant.status(), LinkStatus::Linked);
}

#[tokio::test]
async fn token_endpoint_down_is_unavailable_not_unlinked() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("dental-co");
    fx.google.token_outage(100);

    let error = tenant.token().await.expect_err("down");

    assert!(matches!(error, TokenError::Unavailable(_)), "{error:?}");
    assert_eq!(
        fx.google.refresh_requests("dental-co"),
        4,
        "1 + max_retries"
    );
    assert_eq!(tenant.status(), LinkStatus::Linked);
}

#[tokio::test]
async fn tokens_are_refreshed_skew_before_expiry() {
    // Tokens live 60 s. With a 10 s skew the cached token is used; with a
    // 61 s skew it is already too close to expiry, so every call refreshes.
    let fx = Fixture::new(60, Duration::from_secs(10)).await;
    let tenant = fx.tenant("a");
    tenant.token().await.expect("first");
    tenant.token().await.expect("cached");
    assert_eq!(fx.google.refresh_requests("a"), 1);

    let fx = Fixture::new(60, Duration::from_secs(61)).await;
    let tenant = fx.tenant("b");
    tenant.token().await.expect("first");
    tenant.token().await.expect("refreshed again");
    assert_eq!(fx.google.refresh_requests("b"), 2);
}

#[test]
fn freshness_rule() {
    let now = Instant::now();
    let s = Duration::from_secs;
    assert!(is_fresh(now + s(120), now, s(60)));
    assert!(!is_fresh(now + s(60), now, s(60)), "at the skew: refresh");
    assert!(!is_fresh(now + s(30), now, s(60)));
    assert!(!is_fresh(now, now, Duration::ZERO), "expired");
}

#[test]
fn refresh_classification() {
    let oauth = |status, error: &str| RefreshError::OAuth {
        status,
        error: error.to_owned(),
        retry_after: None,
    };
    assert_eq!(
        classify_refresh(&oauth(400, "invalid_grant")),
        ErrorClass::Permanent
    );
    assert_eq!(
        classify_refresh(&oauth(401, "invalid_client")),
        ErrorClass::Permanent
    );
    assert_eq!(
        classify_refresh(&oauth(503, "temporarily_unavailable")),
        ErrorClass::Transient
    );
    assert_eq!(
        classify_refresh(&oauth(500, "internal")),
        ErrorClass::Transient
    );
    assert_eq!(
        classify_refresh(&oauth(400, "invalid_scope")),
        ErrorClass::CallerFault
    );
    assert_eq!(
        classify_refresh(&RefreshError::Network("reset".into())),
        ErrorClass::Transient
    );
    assert_eq!(
        classify_refresh(&RefreshError::OAuth {
            status: 429,
            error: "rate_limit".into(),
            retry_after: Some(Duration::from_secs(2)),
        }),
        ErrorClass::RetryAfter(Duration::from_secs(2))
    );
    assert_eq!(
        classify_calendar(&CalendarError::Unauthorized),
        ErrorClass::Permanent
    );
    assert_eq!(
        classify_calendar(&CalendarError::Token(
            TokenError::Unavailable(String::new())
        )),
        ErrorClass::Permanent,
        "the refresh already retried: one layer"
    );
    assert_eq!(
        classify_calendar(&CalendarError::Status {
            status: 503,
            retry_after: None
        }),
        ErrorClass::Transient
    );
}

#[tokio::test]
async fn tokens_never_show_themselves() {
    let fx = Fixture::new(3600, Duration::from_secs(60)).await;
    let tenant = fx.tenant("dental-co");
    let token = tenant.token().await.expect("token");
    let shown = format!("{token:?} {tenant:?} {:?}", fx.oauth);
    assert!(
        shown.contains("[redacted]") || shown.contains("REDACTED"),
        "{shown}"
    );
    assert!(!shown.contains("ya29."), "{shown}");
    assert!(!shown.contains("1//refresh"), "{shown}");
    assert!(!shown.contains(CLIENT_SECRET), "{shown}");
}
