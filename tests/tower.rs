//! The tower layer (feature `tower`): retries through `ServiceBuilder`, keyed
//! breakers refusing before the inner service is called, classified responses,
//! requests that cannot be cloned, `poll_ready`, `Send`, cancellation, and one
//! test over loopback HTTP. Paused clock everywhere but the loopback test.

mod support;

use std::convert::Infallible;
use std::future::{Ready, pending, ready};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use safecall::tower::{SafeCallLayer, classify_http_response};
use safecall::{
    Backoff, BreakerConfig, BreakerRegistry, BreakerState, Error, ErrorClass, ExhaustedReason,
    Jitter, SafeCall,
};
use support::{TestError, ms, status};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

/// `max_retries` retries, 100 ms apart, no jitter, no budget.
fn policy<E>(max_retries: u32) -> SafeCall<E> {
    SafeCall::builder()
        .max_retries(max_retries)
        .backoff(Backoff::constant(ms(100)).jitter(Jitter::None))
        .retry_budget(safecall::RetryBudget::disabled())
        .build()
        .unwrap()
}

/// A request with a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Req {
    tenant: &'static str,
}

fn tenant(req: &Req) -> String {
    req.tenant.to_owned()
}

/// An inner service that counts its calls and fails the first `failures`.
fn failing(
    calls: &Arc<AtomicU32>,
    failures: u32,
) -> impl Service<Req, Response = u32, Error = TestError, Future = Ready<Result<u32, TestError>>>
+ Clone
+ use<> {
    let calls = Arc::clone(calls);
    service_fn(move |_req: Req| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        ready(if n <= failures {
            Err(status(503))
        } else {
            Ok(n)
        })
    })
}

#[tokio::test(start_paused = true)]
async fn retries_through_service_builder_on_the_policys_schedule() {
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = ServiceBuilder::new()
        .layer(SafeCallLayer::new(policy::<TestError>(3)))
        .service(failing(&calls, 2));
    let started = Instant::now();
    let out = svc.ready().await.unwrap().call(Req { tenant: "a" }).await;
    assert_eq!(out.unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(started.elapsed(), ms(200));

    // Retries used up: the policy's error, carrying the inner service's last one.
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = SafeCallLayer::new(policy::<TestError>(1)).layer(failing(&calls, 10));
    let out = svc.ready().await.unwrap().call(Req { tenant: "a" }).await;
    match out {
        Err(Error::Exhausted {
            attempts: 2,
            reason: ExhaustedReason::RetriesUsedUp,
            source,
        }) => assert_eq!(source, status(503)),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_keyed_breaker_refuses_inside_the_future_before_the_inner_service_is_called() {
    let calls = Arc::new(AtomicU32::new(0));
    let registry: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(2)
            .open_duration(Duration::from_secs(30)),
    );
    let layer = SafeCallLayer::new(policy::<TestError>(0)).breakers(registry, tenant);
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(failing(&calls, 2));
    let acme = Req { tenant: "acme" };
    for _ in 0..2 {
        let out = svc.ready().await.unwrap().call(acme.clone()).await;
        assert!(
            matches!(out, Err(Error::Exhausted { attempts: 1, .. })),
            "{out:?}"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(layer.registry().get("acme").state(), BreakerState::Open);

    // Open: refused when polled, and the inner service never sees the request.
    let fut = svc.ready().await.unwrap().call(acme.clone());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "not called by Service::call"
    );
    match fut.await {
        Err(Error::CircuitOpen {
            attempts: 0,
            retry_in,
            ..
        }) => assert_eq!(retry_in, Duration::from_secs(30)),
        other => panic!("{other:?}"),
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2, "not called by the future");

    // Another tenant's breaker is its own.
    let out = svc
        .ready()
        .await
        .unwrap()
        .call(Req { tenant: "globex" })
        .await;
    assert_eq!(out.unwrap(), 3);
    assert_eq!(layer.registry().len(), 2);
}

/// A response with an HTTP status.
fn response(status: u16) -> http::Response<()> {
    http::Response::builder().status(status).body(()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn classified_responses_are_retried_and_the_last_one_returned() {
    let calls = Arc::new(AtomicU32::new(0));
    let inner = {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Req| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            ready(Ok::<_, TestError>(response(if n < 1 { 503 } else { 200 })))
        })
    };
    let mut svc = SafeCallLayer::new(policy::<TestError>(2))
        .classify_response(classify_http_response)
        .layer(inner);
    let out = svc.ready().await.unwrap().call(Req { tenant: "a" }).await;
    assert_eq!(out.unwrap().status(), 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Always 503: three attempts, then the provider's last answer (not an error).
    let calls = Arc::new(AtomicU32::new(0));
    let inner = {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Req| {
            calls.fetch_add(1, Ordering::SeqCst);
            ready(Ok::<_, TestError>(response(503)))
        })
    };
    let mut svc = SafeCallLayer::new(policy::<TestError>(2))
        .classify_response(|r: &http::Response<()>| {
            (r.status().as_u16() >= 500).then_some(ErrorClass::Transient)
        })
        .layer(inner);
    let started = Instant::now();
    let out = svc.ready().await.unwrap().call(Req { tenant: "a" }).await;
    assert_eq!(out.unwrap().status(), 503);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(started.elapsed(), ms(200));
}

/// A request that is not `Clone` (a streamed body, say).
#[derive(Debug)]
struct Streamed;

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_cloned_gets_one_attempt_and_a_warning() {
    let (subscriber, logs) = support::capture_logs(tracing::Level::WARN);
    let _guard = tracing::subscriber::set_default(subscriber);
    let calls = Arc::new(AtomicU32::new(0));
    let inner = {
        let calls = Arc::clone(&calls);
        service_fn(move |_req: Streamed| {
            calls.fetch_add(1, Ordering::SeqCst);
            ready(Err::<u32, _>(status(503)))
        })
    };
    let mut svc = SafeCallLayer::new(policy::<TestError>(3))
        .clone_request(|_: &Streamed| None)
        .layer(inner);
    let out = svc.ready().await.unwrap().call(Streamed).await;
    assert!(
        matches!(
            out,
            Err(Error::Exhausted {
                attempts: 1,
                reason: ExhaustedReason::NotReplayable,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let text = logs.text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("not retried"), "{text}");

    // A request that could not be cloned and succeeds is not worth a warning.
    let before = logs.text().len();
    let inner = service_fn(|_req: Streamed| ready(Ok::<_, TestError>(7)));
    let mut svc = SafeCallLayer::new(policy::<TestError>(3))
        .clone_request(|_: &Streamed| None)
        .layer(inner);
    assert_eq!(svc.ready().await.unwrap().call(Streamed).await.unwrap(), 7);
    assert_eq!(logs.text().len(), before);
}

#[tokio::test(start_paused = true)]
async fn a_clone_request_function_is_used_for_every_retry() {
    let calls = Arc::new(AtomicU32::new(0));
    let clones = Arc::new(AtomicU32::new(0));
    let mut svc = SafeCallLayer::new(policy::<TestError>(3))
        .clone_request({
            let clones = Arc::clone(&clones);
            move |r: &Req| {
                clones.fetch_add(1, Ordering::SeqCst);
                Some(r.clone())
            }
        })
        .layer(failing(&calls, 3));
    let out = svc.ready().await.unwrap().call(Req { tenant: "a" }).await;
    assert_eq!(out.unwrap(), 4);
    // Attempts 1 to 3 keep a copy for the next; the last one sends the copy.
    assert_eq!(clones.load(Ordering::SeqCst), 3);
}

/// An inner service whose readiness the test sets, and that counts its clones.
#[derive(Clone)]
struct Gate {
    ready: Arc<AtomicBool>,
    fail: Arc<AtomicBool>,
    readied: Arc<AtomicU32>,
}

impl Service<Req> for Gate {
    type Response = u32;
    type Error = TestError;
    type Future = Ready<Result<u32, TestError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), TestError>> {
        if self.fail.load(Ordering::SeqCst) {
            return Poll::Ready(Err(status(500)));
        }
        if self.ready.load(Ordering::SeqCst) {
            self.readied.fetch_add(1, Ordering::SeqCst);
            Poll::Ready(Ok(()))
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        ready(Err(status(503)))
    }
}

#[tokio::test(start_paused = true)]
async fn poll_ready_is_the_inner_services() {
    let gate = Gate {
        ready: Arc::new(AtomicBool::new(false)),
        fail: Arc::new(AtomicBool::new(false)),
        readied: Arc::new(AtomicU32::new(0)),
    };
    let mut svc = SafeCallLayer::new(policy::<TestError>(2)).layer(gate.clone());
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(svc.poll_ready(&mut cx).is_pending(), "inner not ready");
    gate.ready.store(true, Ordering::SeqCst);
    assert!(matches!(svc.poll_ready(&mut cx), Poll::Ready(Ok(()))));

    // The first attempt uses the service made ready; each retry readies a clone.
    let out = svc.call(Req { tenant: "a" }).await;
    assert!(
        matches!(out, Err(Error::Exhausted { attempts: 3, .. })),
        "{out:?}"
    );
    assert_eq!(gate.readied.load(Ordering::SeqCst), 3);

    // A failed `poll_ready` fails the service: no attempt.
    gate.fail.store(true, Ordering::SeqCst);
    match svc.poll_ready(&mut cx) {
        Poll::Ready(Err(Error::Permanent {
            attempts: 0,
            source,
            ..
        })) => assert_eq!(source, status(500)),
        other => panic!("{other:?}"),
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

#[tokio::test(start_paused = true)]
async fn the_future_is_send_when_the_inner_ones_is_and_needs_nothing_more() {
    let calls = Arc::new(AtomicU32::new(0));
    let registry: BreakerRegistry<String> = BreakerRegistry::new(BreakerConfig::default());
    let mut svc = SafeCallLayer::new(policy::<TestError>(1))
        .breakers(registry, tenant)
        .classify_response(|_: &u32| None)
        .layer(failing(&calls, 1));
    let fut = assert_send(svc.ready().await.unwrap().call(Req { tenant: "a" }));
    assert_eq!(tokio::spawn(fut).await.unwrap().unwrap(), 2);

    // An inner future that is neither `Send` nor `'static`-free of `Rc`: the
    // layer asks nothing of it.
    let local = std::rc::Rc::new(AtomicU32::new(0));
    let inner = service_fn(move |_req: Req| {
        let local = std::rc::Rc::clone(&local);
        async move { Ok::<_, Infallible>(local.fetch_add(1, Ordering::SeqCst)) }
    });
    let mut svc = SafeCallLayer::new(policy::<Infallible>(1)).layer(inner);
    assert_eq!(
        svc.ready()
            .await
            .unwrap()
            .call(Req { tenant: "a" })
            .await
            .unwrap(),
        0
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_mid_attempt_releases_the_probe_permit() {
    let registry: BreakerRegistry<String> = BreakerRegistry::new(
        BreakerConfig::default()
            .consecutive_failures(1)
            .open_duration(Duration::from_secs(1))
            .half_open_probes(1),
    );
    let layer = SafeCallLayer::new(policy::<TestError>(0)).breakers(registry, tenant);
    let hang = Arc::new(AtomicBool::new(true));
    let inner = {
        let hang = Arc::clone(&hang);
        service_fn(move |_req: Req| {
            let hang = hang.load(Ordering::SeqCst);
            async move {
                if hang {
                    pending::<()>().await;
                }
                Ok::<_, TestError>(1)
            }
        })
    };
    let mut svc = layer.clone().layer(inner);
    let breaker = layer.registry().get("acme");
    // Trip it with one failure, then wait out the open time: half-open.
    if let Ok(p) = breaker.try_acquire() {
        p.record(safecall::Outcome::Failure);
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(breaker.state(), BreakerState::HalfOpen);

    let acme = Req { tenant: "acme" };
    {
        let mut probe = pin!(svc.ready().await.unwrap().call(acme.clone()));
        let waker = futures::task::noop_waker();
        assert!(
            probe
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        // The only probe slot is taken: another call is refused.
        let busy = svc.ready().await.unwrap().call(acme.clone()).await;
        assert!(
            matches!(busy, Err(Error::CircuitOpen { attempts: 0, .. })),
            "{busy:?}"
        );
    } // The probe is dropped mid-attempt.

    hang.store(false, Ordering::SeqCst);
    let out = svc.ready().await.unwrap().call(acme).await;
    assert_eq!(out.unwrap(), 1, "the slot was released");
    assert_eq!(breaker.state(), BreakerState::Closed);
}

/// Over loopback HTTP: a `reqwest::Client` as a tower service behind the layer,
/// against a server that answers 503 twice (with `Retry-After: 0`), then 200.
#[tokio::test]
async fn a_reqwest_client_behind_the_layer_retries_503s_over_loopback() {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    let hits = Arc::new(AtomicU32::new(0));
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post({
            let hits = Arc::clone(&hits);
            move || {
                let n = hits.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < 2 {
                        (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "0")]).into_response()
                    } else {
                        (StatusCode::OK, "sent").into_response()
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let policy: SafeCall<reqwest::Error> = SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(ms(10)).jitter(Jitter::None))
        .attempt_timeout(Duration::from_secs(10))
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut svc = ServiceBuilder::new()
        .layer(
            SafeCallLayer::new(policy)
                .clone_request(reqwest::Request::try_clone)
                .classify_response(|r: &reqwest::Response| {
                    (r.status().as_u16() >= 400).then(|| {
                        safecall::classify_http_status(
                            r.status().as_u16(),
                            safecall::tower::retry_after_of(r.headers()),
                        )
                    })
                }),
        )
        .service(client.clone());
    let req = client
        .post(format!("http://{addr}/sms"))
        .body("hello")
        .build()
        .unwrap();
    let res = svc.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "sent");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    server.abort();
}

/// A tonic-health server whose `check` fails each tenant's first calls with the
/// statuses listed for it, then answers `SERVING`.
#[derive(Default)]
struct Script {
    statuses: std::sync::Mutex<std::collections::HashMap<String, Vec<tonic::Status>>>,
    calls: AtomicU32,
}

#[derive(Default, Clone)]
struct ScriptedHealth(Arc<Script>);

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for ScriptedHealth {
    async fn check(
        &self,
        request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<tonic_health::pb::HealthCheckResponse>, tonic::Status> {
        self.0.calls.fetch_add(1, Ordering::SeqCst);
        let tenant = request
            .metadata()
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let next = self
            .0
            .statuses
            .lock()
            .unwrap()
            .get_mut(&tenant)
            .and_then(|s| (!s.is_empty()).then(|| s.remove(0)));
        match next {
            Some(status) => Err(status),
            None => Ok(tonic::Response::new(
                tonic_health::pb::HealthCheckResponse {
                    status: tonic_health::pb::health_check_response::ServingStatus::Serving.into(),
                },
            )),
        }
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<
        Result<tonic_health::pb::HealthCheckResponse, tonic::Status>,
    >;

    async fn watch(
        &self,
        _request: tonic::Request<tonic_health::pb::HealthCheckRequest>,
    ) -> Result<tonic::Response<Self::WatchStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("watch"))
    }
}

/// Over loopback gRPC: a tonic `Channel` behind the layer, under tonic-health's
/// generated client, with unary bodies buffered above the layer so requests can
/// be cloned. Trailers-only statuses are seen and classified by the layer.
#[tokio::test]
async fn a_tonic_channel_behind_the_layer_retries_unavailable_over_loopback() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use safecall::tower::classify_grpc_response;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    type BoxError = Box<dyn std::error::Error + Send + Sync>;

    let health = ScriptedHealth::default();
    {
        let mut script = health.0.statuses.lock().unwrap();
        script.insert(
            "globex".to_owned(),
            vec![
                tonic::Status::unavailable("warming up"),
                tonic::Status::unavailable("warming up"),
            ],
        );
        script.insert(
            "initech".to_owned(),
            vec![tonic::Status::resource_exhausted("quota")],
        );
        let mut pushback = tonic::Status::resource_exhausted("slow down");
        pushback
            .metadata_mut()
            .insert("grpc-retry-pushback-ms", "20".parse().unwrap());
        script.insert("hooli".to_owned(), vec![pushback]);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                health.clone(),
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10))
        .connect_lazy();

    let policy: SafeCall<tonic::transport::Error> = SafeCall::builder()
        .max_retries(3)
        .backoff(Backoff::constant(ms(10)).jitter(Jitter::None))
        .deadline(Duration::from_secs(30))
        .build()
        .unwrap();
    let stack = ServiceBuilder::new()
        .layer(SafeCallLayer::new(policy).classify_response(classify_grpc_response))
        .map_request(|req: http::Request<Full<Bytes>>| req.map(tonic::body::Body::new))
        .service(channel);
    let buffered = service_fn(move |req: http::Request<tonic::body::Body>| {
        let mut stack = stack.clone();
        async move {
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let req = http::Request::from_parts(parts, Full::new(bytes));
            stack.ready().await?.call(req).await.map_err(BoxError::from)
        }
    });
    let mut client = HealthClient::new(buffered);
    let check = |tenant: &'static str| {
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        req.metadata_mut()
            .insert("x-tenant", tenant.parse().unwrap());
        req
    };

    // UNAVAILABLE twice, then served: three calls to the server.
    let res = client.check(check("globex")).await.unwrap();
    assert_eq!(
        res.into_inner().status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
    assert_eq!(health.0.calls.load(Ordering::SeqCst), 3);

    // RESOURCE_EXHAUSTED with a pushback: waited out, then served.
    let started = std::time::Instant::now();
    client.check(check("hooli")).await.unwrap();
    assert_eq!(health.0.calls.load(Ordering::SeqCst), 5);
    assert!(started.elapsed() >= ms(20));

    // RESOURCE_EXHAUSTED without one (a quota): not retried; the caller gets the
    // server's status.
    let status = client.check(check("initech")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(health.0.calls.load(Ordering::SeqCst), 6);
    server.abort();
}
