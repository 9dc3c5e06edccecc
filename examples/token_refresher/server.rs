//! A stand-in for an OAuth token endpoint and a calendar API on 127.0.0.1, in
//! the shape of Google's (`POST /token` with `grant_type=refresh_token`;
//! `GET /calendar/v3/calendars/primary/events` with a bearer token), with
//! expiry, revocation and outages you can trigger.
// Shared with the tests, which use only some of it.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub const CLIENT_ID: &str = "demo-client.apps.example";
pub const CLIENT_SECRET: &str = "demo-client-secret";

#[derive(Debug, Default)]
struct Tenant {
    revoked: bool,
    /// Refresh requests for this tenant's grant.
    refresh_requests: u32,
    /// Calendar requests, and those refused with 401.
    api_requests: u32,
    api_unauthorized: u32,
}

#[derive(Debug, Default)]
struct Inner {
    /// Refresh token → tenant.
    grants: HashMap<String, String>,
    tenants: HashMap<String, Tenant>,
    /// Live access tokens → tenant.
    access: HashMap<String, String>,
    /// The next `n` token requests fail with 503.
    token_outage: u32,
    /// Lifetime of the access tokens issued, in seconds.
    expires_in: u64,
    issued: u64,
}

#[derive(Debug)]
struct Shared {
    inner: Mutex<Inner>,
    /// While set, token requests wait for a permit (to line callers up).
    gate: Mutex<Option<Arc<Semaphore>>>,
}

/// The running stand-in server.
#[derive(Debug)]
pub struct StandInGoogle {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl StandInGoogle {
    /// Serves on an ephemeral port on 127.0.0.1; tokens live `expires_in` s.
    pub async fn start(expires_in: u64) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                expires_in,
                ..Inner::default()
            }),
            gate: Mutex::new(None),
        });
        let app = Router::new()
            .route("/token", post(token))
            .route("/calendar/v3/calendars/primary/events", get(events))
            .with_state(Arc::clone(&shared));
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn token_url(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// A tenant linked its account: its grant is `refresh_token`.
    pub fn link(&self, tenant: &str, refresh_token: &str) {
        let mut inner = lock(&self.shared.inner);
        inner
            .grants
            .insert(refresh_token.to_owned(), tenant.to_owned());
        inner.tenants.entry(tenant.to_owned()).or_default().revoked = false;
    }

    /// The tenant revoked access (or the grant expired): its refresh token
    /// gets `invalid_grant`, its access tokens 401.
    pub fn revoke(&self, tenant: &str) {
        let mut inner = lock(&self.shared.inner);
        inner.tenants.entry(tenant.to_owned()).or_default().revoked = true;
        inner.access.retain(|_, t| t != tenant);
    }

    /// The tenant's access tokens die now (earlier than the client thinks):
    /// the next calendar request gets 401.
    pub fn expire_access_tokens(&self, tenant: &str) {
        lock(&self.shared.inner).access.retain(|_, t| t != tenant);
    }

    /// The next `n` token requests fail with 503.
    pub fn token_outage(&self, n: u32) {
        lock(&self.shared.inner).token_outage = n;
    }

    /// Token requests wait until [`open_gate`](Self::open_gate).
    pub fn close_gate(&self) {
        *lock(&self.shared.gate) = Some(Arc::new(Semaphore::new(0)));
    }

    pub fn open_gate(&self) {
        if let Some(gate) = lock(&self.shared.gate).take() {
            gate.add_permits(Semaphore::MAX_PERMITS);
        }
    }

    pub fn refresh_requests(&self, tenant: &str) -> u32 {
        lock(&self.shared.inner)
            .tenants
            .get(tenant)
            .map_or(0, |t| t.refresh_requests)
    }

    /// (calendar requests, of which 401)
    pub fn api_requests(&self, tenant: &str) -> (u32, u32) {
        lock(&self.shared.inner)
            .tenants
            .get(tenant)
            .map_or((0, 0), |t| (t.api_requests, t.api_unauthorized))
    }
}

impl Drop for StandInGoogle {
    fn drop(&mut self) {
        self.open_gate();
        self.task.abort();
    }
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn token(
    State(shared): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or_default();
    // Counted on arrival, before the gate.
    let tenant = {
        let mut inner = lock(&shared.inner);
        let tenant = inner.grants.get(field("refresh_token")).cloned();
        if let Some(tenant) = &tenant {
            inner
                .tenants
                .entry(tenant.clone())
                .or_default()
                .refresh_requests += 1;
        }
        tenant
    };
    let gate = lock(&shared.gate).clone();
    if let Some(gate) = gate {
        let _ = gate.acquire().await;
    }
    let mut inner = lock(&shared.inner);
    if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    if inner.token_outage > 0 {
        inner.token_outage -= 1;
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "Try again later.",
        );
    }
    if field("grant_type") != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Only refresh_token.",
        );
    }
    let revoked = tenant
        .as_ref()
        .and_then(|t| inner.tenants.get(t))
        .is_some_and(|t| t.revoked);
    let Some(tenant) = tenant.filter(|_| !revoked) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    };
    inner.issued += 1;
    let access_token = format!("ya29.stand-in-{}-{}", tenant, inner.issued);
    inner.access.insert(access_token.clone(), tenant);
    let expires_in = inner.expires_in;
    Json(json!({
        "access_token": access_token,
        "expires_in": expires_in,
        "token_type": "Bearer",
        "scope": "https://www.googleapis.com/auth/calendar.readonly",
    }))
    .into_response()
}

async fn events(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut inner = lock(&shared.inner);
    let Some(tenant) = inner.access.get(bearer).cloned() else {
        // Which tenant sent a dead token? The token's name says, in this stand-in.
        let tenant = bearer
            .strip_prefix("ya29.stand-in-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map(|(tenant, _)| tenant.to_owned());
        if let Some(t) = tenant.and_then(|t| inner.tenants.get_mut(&t)) {
            t.api_requests += 1;
            t.api_unauthorized += 1;
        }
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": {
                "code": 401,
                "message": "Request had invalid authentication credentials.",
                "status": "UNAUTHENTICATED",
            }})),
        )
            .into_response();
    };
    inner
        .tenants
        .entry(tenant.clone())
        .or_default()
        .api_requests += 1;
    Json(json!({
        "kind": "calendar#events",
        "items": [
            { "id": "evt1", "summary": format!("{tenant}: dentist, 9:00") },
            { "id": "evt2", "summary": format!("{tenant}: team sync, 11:30") },
        ],
    }))
    .into_response()
}
