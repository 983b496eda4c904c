//! With feature `opentelemetry`: the client interceptor names the span the handler opened
//! (or the tower server layer's span) — the span the in-memory exporter holds — and never an
//! id of its own; the layers' spans over real tonic follow the RPC conventions (status from
//! the trailers or a trailers-only response's headers, the server address from the layer).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use grpc_interceptor::{ClientInterceptor, RequestExt, ServerInterceptor};
use http::HeaderMap;
use opentelemetry::trace::{TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracer, SdkTracerProvider};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_trace_headers::TraceHeadersLayer;

type Log = Arc<Mutex<Vec<HeaderMap>>>;

/// B: records the metadata it received.
struct Record(Log);

/// A: calls B through the client interceptor, inside a span of its own when `tracer` is set.
struct Call {
    channel: Channel,
    tracer: Option<SdkTracer>,
}

#[tonic::async_trait]
impl Health for Record {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.0
            .lock()
            .unwrap()
            .push(request.metadata().clone().into_headers());
        Ok(Response::new(HealthCheckResponse { status: 1 }))
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

#[tonic::async_trait]
impl Health for Call {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let mut client =
            HealthClient::with_interceptor(self.channel.clone(), ClientInterceptor::instrument());
        let tracer = self.tracer.clone();
        request
            .in_trace(|request| async move {
                let Some(tracer) = tracer else {
                    return client.check(request.into_inner()).await;
                };
                // The handler's own span, a child of the caller's (the trace's OpenTelemetry
                // context is current inside `in_trace`).
                let span = tracer.start("load user");
                let cx = opentelemetry::Context::current_with_span(span);
                let result = {
                    use opentelemetry::trace::FutureExt as _;
                    client
                        .check(request.into_inner())
                        .with_context(cx.clone())
                        .await
                };
                cx.span().end();
                result
            })
            .await
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

async fn listener() -> (tokio::net::TcpListener, SocketAddr) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

async fn chain(tracer: Option<SdkTracer>, layer: Option<TraceHeadersLayer>) -> (SocketAddr, Log) {
    let log = Log::default();
    let (l, b) = listener().await;
    tokio::spawn(
        Server::builder()
            .add_service(HealthServer::with_interceptor(
                Record(log.clone()),
                ServerInterceptor::new(),
            ))
            .serve_with_incoming(TcpIncoming::from(l)),
    );
    let channel = Channel::from_shared(format!("http://{b}"))
        .unwrap()
        .connect_lazy();
    let (l, a) = listener().await;
    let service =
        HealthServer::with_interceptor(Call { channel, tracer }, ServerInterceptor::new());
    match layer {
        Some(layer) => tokio::spawn(
            Server::builder()
                .layer(layer)
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(l)),
        ),
        None => tokio::spawn(
            Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(l)),
        ),
    };
    (a, log)
}

async fn call(a: SocketAddr) {
    let mut request = Request::new(HealthCheckRequest::default());
    let m = request.metadata_mut();
    m.insert(
        "x-b3-traceid",
        "463ac35c9f6413ad48485a3953bb6124".parse().unwrap(),
    );
    m.insert("x-b3-spanid", "a2fb4a1d1a96d312".parse().unwrap());
    m.insert("x-b3-sampled", "1".parse().unwrap());
    let channel = Channel::from_shared(format!("http://{a}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel).check(request).await.unwrap();
}

fn provider(exporter: &InMemorySpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_id_generator(tower_trace_headers::otel::PresetIdGenerator::default())
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interceptor_names_the_handlers_span() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let (a, log) = chain(Some(p.tracer("app")), None).await;
    call(a).await;
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let app = &spans[0];
    assert_eq!(app.name, "load user");
    assert_eq!(
        app.parent_span_id.to_string(),
        "a2fb4a1d1a96d312",
        "the caller's child"
    );
    let at_b = log.lock().unwrap()[0].clone();
    assert_eq!(at_b["x-b3-traceid"], "463ac35c9f6413ad48485a3953bb6124");
    assert_eq!(
        at_b["x-b3-spanid"],
        app.span_context.span_id().to_string().as_str()
    );
    assert_eq!(at_b["x-b3-sampled"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interceptor_names_the_layers_reported_span() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let (a, log) = chain(None, Some(TraceHeadersLayer::new().tracer_provider(&p))).await;
    call(a).await;
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    let server = &spans[0];
    assert_eq!(server.parent_span_id.to_string(), "a2fb4a1d1a96d312");
    let at_b = log.lock().unwrap()[0].clone();
    assert_eq!(
        at_b["x-b3-spanid"],
        server.span_context.span_id().to_string().as_str()
    );
    assert_eq!(at_b["x-b3-parentspanid"], "a2fb4a1d1a96d312");

    // Without a reporting tracer the layer is transparent: the caller's span goes on.
    let (a, log) = chain(None, Some(TraceHeadersLayer::new().without_spans())).await;
    call(a).await;
    let at_b = log.lock().unwrap()[0].clone();
    assert_eq!(at_b["x-b3-spanid"], "a2fb4a1d1a96d312");
    assert!(at_b.get("x-b3-parentspanid").is_none());
}

/// A server span's or client span's attribute, as a string (`None` when absent).
fn attr(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_spans_follow_the_rpc_conventions_with_the_status_from_trailers_or_headers() {
    use opentelemetry::trace::{SpanKind, Status as SpanStatus};
    use tower::ServiceBuilder;
    use tower_trace_headers::semconv;
    use tower_trace_headers::{FutureExt as _, PropagateTraceHeadersLayer, RequestTrace};

    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    // B: a tonic server behind the server layer; `check` answers OK (in the trailers),
    // `watch` UNIMPLEMENTED (trailers-only: in the headers).
    let (l, b) = listener().await;
    tokio::spawn(
        Server::builder()
            .layer(
                TraceHeadersLayer::new()
                    .tracer_provider(&p)
                    .peer_address(|e| {
                        e.get::<tonic::transport::server::TcpConnectInfo>()
                            .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
                    }),
            )
            .add_service(HealthServer::new(Record(Log::default())))
            .serve_with_incoming(TcpIncoming::from(l)),
    );
    // A channel to B through the client layer, told B's address (tonic hands the layer
    // path-only URIs).
    let channel = Channel::from_shared(format!("http://{b}"))
        .unwrap()
        .connect_lazy();
    let channel = ServiceBuilder::new()
        .layer(
            PropagateTraceHeadersLayer::instrument()
                .tracer_provider(&p)
                .server_address(b.ip().to_string(), Some(b.port())),
        )
        .service(channel);
    let mut client = HealthClient::new(channel);
    let trace = || {
        RequestTrace::new(b3_propagation::RequestContext::from_span(
            b3_propagation::SpanContext::new_root(b3_propagation::Sampling::Accept),
        ))
    };

    let ok = client
        .check(HealthCheckRequest::default())
        .with_trace(trace())
        .await;
    assert!(ok.is_ok());
    let unimplemented = client
        .watch(HealthCheckRequest::default())
        .with_trace(trace())
        .await;
    assert_eq!(
        unimplemented.unwrap_err().code(),
        tonic::Code::Unimplemented
    );

    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 4, "{spans:#?}");
    // (method, its status code, whether the server span is an error: UNIMPLEMENTED is the
    // server's, any code but OK the client's)
    for (method, code, server_error) in [("Check", "0", false), ("Watch", "12", true)] {
        let name = format!("grpc.health.v1.Health/{method}");
        let of = |kind: SpanKind| {
            spans
                .iter()
                .find(|s| s.span_kind == kind && s.name == name)
                .unwrap_or_else(|| panic!("no {kind:?} span {name}: {spans:#?}"))
        };
        let (server, client) = (of(SpanKind::Server), of(SpanKind::Client));
        #[rustfmt::skip]
        let common = [
            (semconv::RPC_SYSTEM,           Some("grpc".to_owned())),              // required
            (semconv::RPC_GRPC_STATUS_CODE, Some(code.to_owned())),                // required (gRPC)
            (semconv::SERVER_ADDRESS,       Some(b.ip().to_string())),             // required
            (semconv::SERVER_PORT,          Some(b.port().to_string())),           // cond. required
            (semconv::RPC_SERVICE,          Some("grpc.health.v1.Health".to_owned())), // recommended
            (semconv::RPC_METHOD,           Some(method.to_owned())),              // recommended
        ];
        for span in [server, client] {
            for (key, want) in &common {
                assert_eq!(&attr(span, key), want, "{:?} {name}: {key}", span.span_kind);
            }
            assert_eq!(span.instrumentation_scope.name(), "tower-trace-headers");
        }
        // The server knows its peer: this test's client.
        assert_eq!(
            attr(server, semconv::CLIENT_ADDRESS).as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            attr(server, semconv::NETWORK_PEER_ADDRESS).as_deref(),
            Some("127.0.0.1")
        );
        assert!(attr(server, semconv::NETWORK_PEER_PORT).is_some());
        let is_error =
            |s: &opentelemetry_sdk::trace::SpanData| matches!(s.status, SpanStatus::Error { .. });
        assert_eq!(is_error(server), server_error, "{name}: server status");
        assert_eq!(is_error(client), code != "0", "{name}: client status");
        // The client span is the server span's parent: one trace.
        assert_eq!(server.parent_span_id, client.span_context.span_id());
    }
}
