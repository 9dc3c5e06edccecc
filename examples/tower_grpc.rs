//! A tonic `Channel` behind `SafeCallLayer`: gRPC calls retried on
//! `UNAVAILABLE`, waited out on `RESOURCE_EXHAUSTED` with a server pushback, and a
//! circuit breaker per tenant keyed from the `x-tenant` metadata.
//!
//! The client and the server are tonic-health's generated code (the standard
//! `grpc.health.v1.Health` service), so no `protoc` is needed. The server is a
//! local stand-in on 127.0.0.1 that fails some tenants' calls.
//!
//! ```text
//! cargo run --example tower_grpc --features tower
//! RUST_LOG=safecall=debug cargo run --example tower_grpc --features tower   # every retry
//! ```
//!
//! # What the layer sees, and the stack that makes it work
//!
//! Under the generated client a call is an `http::Request<tonic::body::Body>`, and
//! its answer an `http::Response`: HTTP 200 whatever the gRPC status. A server that
//! fails a call without answering (tonic's `Err(Status)`, which is how `UNAVAILABLE`
//! and `RESOURCE_EXHAUSTED` are sent) makes a *trailers-only* response: the
//! `grpc-status` and its metadata (`grpc-retry-pushback-ms`) are in the response
//! **headers**, which the layer sees; `classify_grpc_response` reads them. (A status
//! sent after response messages is in the trailers, too late for any layer under
//! the client to retry.)
//!
//! tonic's request body is a stream, not `Clone`: the `BufferUnary` service below
//! collects a unary request's one message into `Bytes` (with a size limit), so the
//! request through the layer is an `http::Request<Full<Bytes>>`, which is `Clone`;
//! under the layer, `map_request` turns it back into a `tonic::body::Body`. It also
//! turns a breaker refusal into `UNAVAILABLE`, so the caller sees a gRPC status.
//! Keep client-streaming calls out of such a stack (they cannot be buffered).
//!
//! Copying it into a real service, change: the endpoint (and a TLS feature of
//! tonic for https); the timings (scaled down here: backoff from ~1 s); the
//! tenant metadata to however your requests name their tenant; and delete the
//! stand-in server. Credentials belong in metadata marked sensitive, never in
//! the logs.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use safecall::tower::{SafeCallLayer, classify_grpc_response};
use safecall::{Backoff, BreakerConfig, BreakerRegistry, Jitter, SafeCall};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower::{Service, ServiceBuilder};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The metadata that names the tenant, and the breaker's key.
const TENANT: &str = "x-tenant";

// ---- The stand-in server -------------------------------------------------------

/// One tenant's injected fault, used up call by call.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answers every call.
    None,
    /// The next `n` calls fail with `UNAVAILABLE`.
    Unavailable(u32),
    /// The next call fails with `RESOURCE_EXHAUSTED` and a pushback.
    RateLimited { pushback_ms: u32 },
    /// Every call fails with `RESOURCE_EXHAUSTED` and no pushback: out of quota.
    OutOfQuota,
    /// Every call fails with `UNAVAILABLE`: an outage.
    Down,
}

#[derive(Debug, Default)]
struct StandIn {
    faults: Mutex<HashMap<String, Fault>>,
    hits: Mutex<HashMap<String, u32>>,
}

impl StandIn {
    fn hits(&self, tenant: &str) -> u32 {
        let hits = self.hits.lock().unwrap_or_else(PoisonError::into_inner);
        hits.get(tenant).copied().unwrap_or(0)
    }
}

#[derive(Debug, Clone, Default)]
struct StandInHealth(Arc<StandIn>);

#[tonic::async_trait]
impl Health for StandInHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let tenant = request
            .metadata()
            .get(TENANT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        *self
            .0
            .hits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(tenant.clone())
            .or_default() += 1;
        let mut faults = self.0.faults.lock().unwrap_or_else(PoisonError::into_inner);
        match faults.get(&tenant).copied().unwrap_or(Fault::None) {
            Fault::None => Ok(Response::new(HealthCheckResponse {
                status: ServingStatus::Serving.into(),
            })),
            Fault::Unavailable(n) => {
                let next = if n > 1 {
                    Fault::Unavailable(n - 1)
                } else {
                    Fault::None
                };
                faults.insert(tenant, next);
                Err(Status::unavailable("warming up"))
            }
            Fault::RateLimited { pushback_ms } => {
                faults.insert(tenant, Fault::None);
                let mut status = Status::resource_exhausted("slow down");
                if let Ok(v) = pushback_ms.to_string().parse() {
                    status.metadata_mut().insert("grpc-retry-pushback-ms", v);
                }
                Err(status)
            }
            Fault::OutOfQuota => Err(Status::resource_exhausted("daily quota used up")),
            Fault::Down => Err(Status::unavailable("backend down")),
        }
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("not in this stand-in"))
    }
}

// ---- The client's buffering step ----------------------------------------------

/// The largest unary request body `BufferUnary` buffers.
const MAX_BUFFERED: usize = 4 << 20;

/// Buffers a unary call's request body so the layer under it can clone the
/// request for a retry, and turns a breaker refusal into `UNAVAILABLE`.
#[derive(Debug, Clone)]
struct BufferUnary<S> {
    inner: S,
}

impl<S> Service<http::Request<tonic::body::Body>> for BufferUnary<S>
where
    S: Service<http::Request<Full<Bytes>>, Error = safecall::Error<tonic::transport::Error>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(into_status)
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let bytes = Limited::new(body, MAX_BUFFERED).collect().await?.to_bytes();
            let req = http::Request::from_parts(parts, Full::new(bytes));
            inner.call(req).await.map_err(into_status)
        })
    }
}

/// The layer's error as the client should see it: a refusal of this client's
/// own breaker is `UNAVAILABLE` (the dependency is, for now); the rest as is.
fn into_status(e: safecall::Error<tonic::transport::Error>) -> BoxError {
    if e.is_circuit_open() {
        Box::new(Status::unavailable(e.to_string()))
    } else {
        Box::new(e)
    }
}

// ---- The demo -------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();

    let stand_in = StandInHealth::default();
    let tenants = [
        ("acme", Fault::None),
        ("globex", Fault::Unavailable(2)),
        ("hooli", Fault::RateLimited { pushback_ms: 300 }),
        ("initech", Fault::OutOfQuota),
        ("umbrella", Fault::Down),
    ];
    {
        let mut faults = stand_in
            .0
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (tenant, fault) in tenants {
            faults.insert(tenant.to_owned(), fault);
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(HealthServer::new(stand_in.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    println!("stand-in gRPC health server on {addr}\n");

    // Real time limits: connecting, and each call (tonic's own), under the
    // policy's attempt timeout and deadline.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect_lazy();

    let policy: SafeCall<tonic::transport::Error> = SafeCall::builder()
        .max_retries(3)
        .backoff(
            Backoff::exponential(Duration::from_millis(50))
                .max_delay(Duration::from_secs(2))
                .jitter(Jitter::Full),
        )
        .max_retry_after(Duration::from_secs(5))
        .attempt_timeout(Duration::from_secs(2))
        .deadline(Duration::from_secs(10))
        .on_retry(|e| {
            println!(
                "    attempt {} failed ({:?}); retrying in {:.0?}",
                e.attempt, e.class, e.delay
            );
        })
        .build()?;
    let breakers: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(3)
            .open_duration(Duration::from_secs(30)),
    );
    let layer = SafeCallLayer::new(policy)
        .breakers(breakers, |req: &http::Request<Full<Bytes>>| {
            req.headers()
                .get(TENANT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("unknown")
                .to_owned()
        })
        .classify_response(classify_grpc_response);
    let stack = ServiceBuilder::new()
        .layer_fn(|inner| BufferUnary { inner })
        .layer(layer.clone())
        .map_request(|req: http::Request<Full<Bytes>>| req.map(tonic::body::Body::new))
        .service(channel);
    let mut client = HealthClient::new(stack);

    for (tenant, fault) in tenants {
        println!("{tenant} (stand-in fault: {fault:?})");
        for n in 1..=3 {
            let mut request = Request::new(HealthCheckRequest {
                service: "calendar".to_owned(),
            });
            request.metadata_mut().insert(TENANT, tenant.parse()?);
            let before = stand_in.0.hits(tenant);
            let started = Instant::now();
            let out = client.check(request).await;
            let hits = stand_in.0.hits(tenant) - before;
            let took = started.elapsed();
            match out {
                Ok(res) => println!(
                    "  call {n}: {:?} after {hits} call(s) to the server, {took:.0?}",
                    res.into_inner().status()
                ),
                Err(status) => println!(
                    "  call {n}: {:?} \"{}\" ({hits} call(s) to the server, {took:.0?})",
                    status.code(),
                    status.message()
                ),
            }
        }
    }

    println!("\nbreakers:");
    let mut snapshots = layer.registry().snapshot();
    snapshots.sort_by(|a, b| a.key.cmp(&b.key));
    for s in snapshots {
        println!(
            "  {:<10} {:?}, {} failure(s) in a row{}",
            s.key,
            s.state,
            s.consecutive_failures,
            s.retry_in
                .map(|d| format!(", probe in {d:.0?}"))
                .unwrap_or_default()
        );
    }
    server.abort();
    Ok(())
}
