//! With feature `opentelemetry`: the layers' spans as the OpenTelemetry semantic conventions
//! say (`tower_trace_headers::semconv`), read back from an in-memory exporter — per span kind,
//! the attributes the stable HTTP and the (1.37, development) RPC conventions require or
//! recommend, with their values; names that stay low-cardinality across ids; gRPC status
//! codes from trailers, headers or cancellation, on every gRPC span; spans that end with the
//! response body; the library's own instrumentation scope.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, MatchedPath};
use axum::routing::get;
use b3_propagation::{RequestContext, Sampling, SpanContext};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::Value;
use opentelemetry::trace::{SpanKind, Status};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use tower_trace_headers::semconv;
use tower_trace_headers::{PropagateTraceHeadersLayer, RequestTrace, TraceHeadersLayer};

fn provider(exporter: &InMemorySpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build()
}

/// What an attribute must be.
#[derive(Debug)]
enum Want {
    Str(&'static str),
    String(String),
    Int(i64),
    /// Present, any value.
    Any,
    Absent,
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

/// Each row of `table` holds on `span`: the assertion message names the span and the row.
fn check(span: &SpanData, table: &[(&str, Want)]) {
    for (key, want) in table {
        let got = attr(span, key);
        let ok = match (want, got) {
            (Want::Absent, None) | (Want::Any, Some(_)) => true,
            (Want::Str(s), Some(Value::String(v))) => v.as_str() == *s,
            (Want::String(s), Some(Value::String(v))) => v.as_str() == s,
            (Want::Int(i), Some(Value::I64(v))) => v == i,
            _ => false,
        };
        assert!(
            ok,
            "{:?} span {:?}: {key} should be {want:?}, is {got:?}\n{:#?}",
            span.span_kind, span.name, span.attributes
        );
    }
}

fn is_error(span: &SpanData) -> bool {
    matches!(span.status, Status::Error { .. })
}

// ---------------------------------------------------------------------------------------
// HTTP

/// A frontend in miniature, served for real (HTTP/1.1 on loopback), its layer applied with
/// `Router::layer` so axum's `MatchedPath` is there, the peer from `ConnectInfo`.
async fn http_server(provider: &SdkTracerProvider) -> SocketAddr {
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "an order" }))
        .route("/users/{id}", get(|| async { "a user" }))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
        )
        .route("/slow", get(|| async { support::slow_body() }))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(
            TraceHeadersLayer::new()
                .tracer_provider(provider)
                .route(|e| e.get::<MatchedPath>().map(MatchedPath::as_str))
                .peer_address(|e| e.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

type HttpClient = tower_trace_headers::PropagateTraceHeaders<
    Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
>;

fn http_client(provider: &SdkTracerProvider) -> HttpClient {
    ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(provider))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>())
}

/// A trace to call under (client spans are started for calls made within a request).
fn a_trace() -> RequestTrace {
    RequestTrace::new(RequestContext::from_span(SpanContext::new_root(
        Sampling::Accept,
    )))
}

/// `method url` through the client layer; the status and the body, read to its end.
async fn send(client: &mut HttpClient, method: Method, url: &str) -> (StatusCode, Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header(http::header::USER_AGENT, "semconv-test/1.0")
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(a_trace());
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

fn one(spans: &[SpanData], kind: SpanKind) -> &SpanData {
    let found: Vec<_> = spans.iter().filter(|s| s.span_kind == kind).collect();
    assert_eq!(found.len(), 1, "one {kind:?} span: {spans:#?}");
    found[0]
}

/// The stable HTTP server span: every attribute required (or conditionally required, the
/// condition met) and the recommended ones the layer can know.
#[rustfmt::skip]
fn http_server_table(port: u16) -> Vec<(&'static str, Want)> {
    vec![
        (semconv::HTTP_REQUEST_METHOD,       Want::Str("GET")),                 // required
        (semconv::URL_PATH,                  Want::Str("/orders/o-1")),         // required
        (semconv::URL_SCHEME,                Want::Str("http")),                // required
        (semconv::URL_QUERY,                 Want::Str("full=1")),              // cond. required: sent
        (semconv::HTTP_ROUTE,                Want::Str("/orders/{id}")),        // cond. required: known
        (semconv::HTTP_RESPONSE_STATUS_CODE, Want::Int(200)),                   // cond. required: sent
        (semconv::SERVER_ADDRESS,            Want::Str("127.0.0.1")),           // recommended (Host)
        (semconv::SERVER_PORT,               Want::Int(i64::from(port))),       // cond. required: address set
        (semconv::NETWORK_PROTOCOL_VERSION,  Want::Str("1.1")),                 // recommended
        (semconv::CLIENT_ADDRESS,            Want::Str("127.0.0.1")),           // recommended
        (semconv::NETWORK_PEER_ADDRESS,      Want::Str("127.0.0.1")),           // recommended
        (semconv::NETWORK_PEER_PORT,         Want::Any),                        // recommended: peer known
        (semconv::USER_AGENT_ORIGINAL,       Want::Str("semconv-test/1.0")),    // recommended
        (semconv::ERROR_TYPE,                Want::Absent),                     // cond. required: no error
        (semconv::HTTP_REQUEST_METHOD_ORIGINAL, Want::Absent),                  // a standard method
        (semconv::RPC_SYSTEM,                Want::Absent),
    ]
}

/// The stable HTTP client span.
#[rustfmt::skip]
fn http_client_table(port: u16) -> Vec<(&'static str, Want)> {
    vec![
        (semconv::HTTP_REQUEST_METHOD,       Want::Str("GET")),                                     // required
        (semconv::SERVER_ADDRESS,            Want::Str("127.0.0.1")),                               // required
        (semconv::SERVER_PORT,               Want::Int(i64::from(port))),                           // required
        (semconv::URL_FULL,                  Want::String(format!("http://127.0.0.1:{port}/orders/o-1?full=1"))), // required
        (semconv::HTTP_RESPONSE_STATUS_CODE, Want::Int(200)),                                       // cond. required: received
        (semconv::NETWORK_PROTOCOL_VERSION,  Want::Str("1.1")),                                     // recommended
        (semconv::ERROR_TYPE,                Want::Absent),                                         // cond. required: no error
        (semconv::HTTP_ROUTE,                Want::Absent),                                         // a server's
        (semconv::RPC_SYSTEM,                Want::Absent),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_spans_carry_what_the_stable_conventions_require_and_recommend() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let addr = http_server(&p).await;
    let mut client = http_client(&p);
    let (status, _) = send(
        &mut client,
        Method::GET,
        &format!("http://{addr}/orders/o-1?full=1"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let spans = exporter.get_finished_spans().unwrap();

    let server = one(&spans, SpanKind::Server);
    assert_eq!(server.name, "GET /orders/{id}", "{{method}} {{http.route}}");
    check(server, &http_server_table(addr.port()));
    assert!(!is_error(server));

    let client_span = one(&spans, SpanKind::Client);
    assert_eq!(client_span.name, "GET", "no url.template: {{method}} alone");
    check(client_span, &http_client_table(addr.port()));
    assert!(!is_error(client_span));
}

/// A presigned URL's signature and credential never reach a span: the conventions' keys keep
/// their names and lose their values in the server's `url.query` and the client's `url.full`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_url_values_are_redacted_on_both_sides() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let addr = http_server(&p).await;
    let mut client = http_client(&p);
    let query = "X-Amz-Credential=AKIAEXAMPLE%2F20261207&X-Amz-Expires=60&sig=c2VjcmV0&a=1";
    let (status, _) = send(
        &mut client,
        Method::GET,
        &format!("http://{addr}/orders/o-1?{query}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let spans = exporter.get_finished_spans().unwrap();
    let kept = "X-Amz-Credential=REDACTED&X-Amz-Expires=60&sig=REDACTED&a=1";
    check(
        one(&spans, SpanKind::Server),
        &[(semconv::URL_QUERY, Want::Str(kept))],
    );
    check(
        one(&spans, SpanKind::Client),
        &[(
            semconv::URL_FULL,
            Want::String(format!("http://{addr}/orders/o-1?{kept}")),
        )],
    );
    let everything = format!("{spans:?}");
    assert!(!everything.contains("AKIAEXAMPLE"), "{everything}");
    assert!(!everything.contains("c2VjcmV0"), "{everything}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_errors_by_the_server_and_client_rules() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let addr = http_server(&p).await;
    let mut client = http_client(&p);
    // (method, path, status, server span name, server error.type, client error.type)
    #[rustfmt::skip]
    let cases = [
        (Method::GET, "/fail", 500, "GET /fail", Some("500"), Some("500")),
        // 4xx: the client's error, not the server's; no route matched: `{method}` alone.
        (Method::GET, "/nowhere/42", 404, "GET", None, Some("404")),
        // A method the conventions do not know: `_OTHER`, and `HTTP` in the name.
        (Method::from_bytes(b"PURGE").unwrap(), "/nowhere", 404, "HTTP", None, Some("404")),
    ];
    for (method, path, status, name, server_error, client_error) in cases {
        exporter.reset();
        let custom = method.as_str() == "PURGE";
        let (got, _) = send(&mut client, method, &format!("http://{addr}{path}")).await;
        assert_eq!(got.as_u16(), status, "{path}");
        let spans = exporter.get_finished_spans().unwrap();
        let server = one(&spans, SpanKind::Server);
        let client_span = one(&spans, SpanKind::Client);
        assert_eq!(server.name, name, "{path}");
        let want = |e: Option<&'static str>| e.map_or(Want::Absent, Want::Str);
        check(
            server,
            &[
                (
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    Want::Int(i64::from(status)),
                ),
                (semconv::ERROR_TYPE, want(server_error)),
                (semconv::HTTP_ROUTE, route(name)),
            ],
        );
        assert_eq!(is_error(server), server_error.is_some(), "{path}: server");
        check(
            client_span,
            &[
                (
                    semconv::HTTP_RESPONSE_STATUS_CODE,
                    Want::Int(i64::from(status)),
                ),
                (semconv::ERROR_TYPE, want(client_error)),
            ],
        );
        assert_eq!(
            is_error(client_span),
            client_error.is_some(),
            "{path}: client"
        );
        if custom {
            for span in [server, client_span] {
                check(
                    span,
                    &[
                        (semconv::HTTP_REQUEST_METHOD, Want::Str("_OTHER")),
                        (semconv::HTTP_REQUEST_METHOD_ORIGINAL, Want::Str("PURGE")),
                    ],
                );
            }
            assert_eq!(client_span.name, "HTTP");
        }
    }
}

/// The `http.route` a server span named `name` carries: the name's route, if any.
fn route(name: &'static str) -> Want {
    name.split_once(' ')
        .map_or(Want::Absent, |(_, route)| Want::Str(route))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_names_stay_low_cardinality_across_ids() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let addr = http_server(&p).await;
    let mut client = http_client(&p);
    for i in 1..=50 {
        for path in [format!("/orders/o-{i}"), format!("/users/u-{i}")] {
            let (status, _) = send(&mut client, Method::GET, &format!("http://{addr}{path}")).await;
            assert_eq!(status, StatusCode::OK);
        }
    }
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 200);
    let names = |kind| {
        spans
            .iter()
            .filter(|s| s.span_kind == kind)
            .map(|s| s.name.to_string())
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        names(SpanKind::Server),
        BTreeSet::from(["GET /orders/{id}".to_owned(), "GET /users/{id}".to_owned()]),
        "one server span name per route, 100 ids"
    );
    assert_eq!(
        names(SpanKind::Client),
        BTreeSet::from(["GET".to_owned()]),
        "client spans: the method alone"
    );
    let paths: BTreeSet<_> = spans
        .iter()
        .filter_map(|s| attr(s, semconv::URL_PATH))
        .map(|v| v.as_str().into_owned())
        .collect();
    assert_eq!(paths.len(), 100, "the raw path stays in url.path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_end_with_the_response_body() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let addr = http_server(&p).await;
    let mut client = http_client(&p);
    let mut req = Request::get(format!("http://{addr}/slow"))
        .body(Empty::new())
        .unwrap();
    req.extensions_mut().insert(a_trace());
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The head is here, the body is not: neither span has ended.
    assert!(
        exporter.get_finished_spans().unwrap().is_empty(),
        "a span ended with the response head"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first last");
    let spans = exporter.get_finished_spans().unwrap();
    for kind in [SpanKind::Server, SpanKind::Client] {
        let span = one(&spans, kind.clone());
        let took = span.end_time.duration_since(span.start_time).unwrap();
        assert!(
            took >= Duration::from_millis(300),
            "{kind:?} span took {took:?}: the body's last byte came 300 ms after the head"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scope_is_the_library_whichever_the_provider() {
    let scope_is_ours = |span: &SpanData| {
        let scope = &span.instrumentation_scope;
        assert_eq!(scope.name(), "tower-trace-headers");
        assert_eq!(scope.version(), Some(env!("CARGO_PKG_VERSION")));
        assert_eq!(
            scope.schema_url(),
            Some("https://opentelemetry.io/schemas/1.37.0")
        );
        assert_eq!(semconv::SCHEMA_URL, scope.schema_url().unwrap());
    };
    // A provider given to the layers.
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let addr = http_server(&p).await;
    send(
        &mut http_client(&p),
        Method::GET,
        &format!("http://{addr}/orders/o-1"),
    )
    .await;
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 2);
    spans.iter().for_each(scope_is_ours);

    // The global provider (the only test of this file that installs one).
    let exporter = InMemorySpanExporter::default();
    opentelemetry::global::set_tracer_provider(provider(&exporter));
    let svc = ServiceBuilder::new()
        .layer(TraceHeadersLayer::new())
        .service(service_fn(|_: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::from("ok")))
        }));
    let resp = svc
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    resp.into_body().collect().await.unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    spans.iter().for_each(scope_is_ours);
}

// ---------------------------------------------------------------------------------------
// gRPC

/// A gRPC server in miniature: `Get` answers OK in the trailers, `Missing` NOT_FOUND in the
/// trailers, `Unimplemented` in the headers (trailers-only), `Broken` a 503 without any
/// status (an unavailable proxy), and anything else a stream that never ends.
fn grpc_handler() -> tower::util::BoxCloneSyncService<Request<Body>, Response<Body>, Infallible> {
    tower::util::BoxCloneSyncService::new(service_fn(|req: Request<Body>| async move {
        let grpc = |status: &'static str| {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static(status));
            let frames = futures_util::stream::iter([
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            Body::new(StreamBody::new(frames))
        };
        let path = req.uri().path();
        let mut response = match path.rsplit('/').next() {
            Some("Get") => Response::new(grpc("0")),
            Some("Missing") => Response::new(grpc("5")),
            Some("Unimplemented") => {
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert("grpc-status", HeaderValue::from_static("12"));
                r
            }
            Some("Broken") => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
                r
            }
            _ => {
                let frames = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((Ok::<_, Infallible>(Bytes::from_static(b"\0\0\0\0\0")), ()))
                });
                Response::new(Body::from_stream(frames))
            }
        };
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        Ok::<_, Infallible>(response)
    }))
}

fn grpc_request(uri: &str) -> Request<Body> {
    let mut req = Request::post(uri)
        .version(http::Version::HTTP_2)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(a_trace());
    req
}

/// Send `req` through `svc`: read the body to its end, or (`Watch`) one frame then go away.
async fn grpc_call<S, B>(svc: S, req: Request<Body>)
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let watch = req.uri().path().ends_with("/Watch");
    let response = svc.oneshot(req).await.unwrap();
    let mut body = std::pin::pin!(response.into_body());
    if watch {
        body.frame().await.unwrap().unwrap();
    } else {
        while body.frame().await.is_some() {}
    }
}

/// The (1.37, development) RPC server span of a gRPC call.
#[rustfmt::skip]
fn grpc_server_table(method: &'static str, code: i64) -> Vec<(&'static str, Want)> {
    vec![
        (semconv::RPC_SYSTEM,               Want::Str("grpc")),          // required
        (semconv::RPC_GRPC_STATUS_CODE,     Want::Int(code)),            // required (gRPC)
        (semconv::SERVER_ADDRESS,           Want::Str("shop.internal")), // required (:authority)
        (semconv::SERVER_PORT,              Want::Int(50051)),           // cond. required
        (semconv::RPC_SERVICE,              Want::Str("shop.v1.Shop")),  // recommended
        (semconv::RPC_METHOD,               Want::Str(method)),          // recommended
        (semconv::HTTP_REQUEST_METHOD,      Want::Absent),               // an RPC span
        (semconv::HTTP_RESPONSE_STATUS_CODE, Want::Absent),
    ]
}

/// The RPC client span of a gRPC call: a tonic-like path-only URI, the server address from
/// the layer.
#[rustfmt::skip]
fn grpc_client_table(method: &'static str, code: i64) -> Vec<(&'static str, Want)> {
    vec![
        (semconv::RPC_SYSTEM,               Want::Str("grpc")),          // required
        (semconv::RPC_GRPC_STATUS_CODE,     Want::Int(code)),            // required (gRPC)
        (semconv::SERVER_ADDRESS,           Want::Str("shop")),          // required
        (semconv::SERVER_PORT,              Want::Int(50051)),           // cond. required
        (semconv::RPC_SERVICE,              Want::Str("shop.v1.Shop")),  // recommended
        (semconv::RPC_METHOD,               Want::Str(method)),          // recommended
        (semconv::URL_FULL,                 Want::Absent),               // an RPC span
        (semconv::HTTP_RESPONSE_STATUS_CODE, Want::Absent),
    ]
}

#[tokio::test]
async fn grpc_spans_carry_the_status_code_always_with_the_rpc_status_rules() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let server = ServiceBuilder::new()
        .layer(TraceHeadersLayer::new().tracer_provider(&p))
        .service(grpc_handler());
    let client = ServiceBuilder::new()
        .layer(
            PropagateTraceHeadersLayer::instrument()
                .tracer_provider(&p)
                .server_address("shop", Some(50051)),
        )
        .service(grpc_handler());
    // (method, status code and where it comes from, server span error, client span error)
    #[rustfmt::skip]
    let cases = [
        ("Get",           0,  false, false), // OK, in the trailers
        ("Missing",       5,  false, true),  // NOT_FOUND: the client's error only
        ("Unimplemented", 12, true,  true),  // trailers-only: in the headers
        ("Watch",         1,  false, true),  // the reader went away: CANCELLED
        ("Broken",        14, true,  true),  // no status, HTTP 503: UNAVAILABLE
    ];
    for (method, code, server_error, client_error) in cases {
        exporter.reset();
        let authority = format!("http://shop.internal:50051/shop.v1.Shop/{method}");
        grpc_call(server.clone(), grpc_request(&authority)).await;
        grpc_call(
            client.clone(),
            grpc_request(&format!("/shop.v1.Shop/{method}")),
        )
        .await;
        let spans = exporter.get_finished_spans().unwrap();
        let server_span = one(&spans, SpanKind::Server);
        let client_span = one(&spans, SpanKind::Client);
        for span in [server_span, client_span] {
            assert_eq!(
                span.name,
                format!("shop.v1.Shop/{method}"),
                "$package.$service/$method"
            );
        }
        check(server_span, &grpc_server_table(method, code));
        check(client_span, &grpc_client_table(method, code));
        assert_eq!(
            is_error(server_span),
            server_error,
            "{method}: server status"
        );
        assert_eq!(
            is_error(client_span),
            client_error,
            "{method}: client status"
        );
    }
}

#[tokio::test]
async fn a_failed_call_ends_its_spans_with_the_error() {
    #[derive(Debug)]
    struct Refused;
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let failing = || service_fn(|_: Request<Body>| async { Err::<Response<Body>, _>(Refused) });
    let server = ServiceBuilder::new()
        .layer(TraceHeadersLayer::new().tracer_provider(&p))
        .service(failing());
    let client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(&p))
        .service(failing());
    let mut req = Request::get("http://example.com/x")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(a_trace());
    assert!(server.oneshot(req).await.is_err());
    assert!(
        client
            .oneshot(grpc_request("/shop.v1.Shop/Get"))
            .await
            .is_err()
    );
    let spans = exporter.get_finished_spans().unwrap();
    let server_span = one(&spans, SpanKind::Server);
    assert!(is_error(server_span));
    let error_type = attr(server_span, semconv::ERROR_TYPE).unwrap().as_str();
    assert!(
        error_type.ends_with("Refused"),
        "{error_type}: the error's type"
    );
    let client_span = one(&spans, SpanKind::Client);
    assert!(is_error(client_span));
    check(
        client_span,
        &[(semconv::RPC_GRPC_STATUS_CODE, Want::Int(14))],
    );
}

#[tokio::test]
async fn a_call_dropped_before_its_response_ends_cancelled() {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let never =
        service_fn(|_: Request<Body>| std::future::pending::<Result<Response<Body>, Infallible>>());
    let client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(&p))
        .service(never);
    // A timeout above the call gives up: the call's future is dropped before any response.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        client.oneshot(grpc_request("/shop.v1.Shop/Get")),
    )
    .await;
    assert!(gave_up.is_err());
    let spans = exporter.get_finished_spans().unwrap();
    let client_span = one(&spans, SpanKind::Client);
    check(
        client_span,
        &[(semconv::RPC_GRPC_STATUS_CODE, Want::Int(1))],
    );
    assert!(is_error(client_span), "CANCELLED is a client error");
}

#[tokio::test]
async fn a_call_that_panics_ends_failed_not_cancelled() {
    use futures_util::FutureExt as _;
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter);
    let panics = service_fn(|_: Request<Body>| async {
        tokio::task::yield_now().await;
        panic!("the connector panics");
        #[allow(unreachable_code)]
        Ok::<Response<Body>, Infallible>(Response::new(Body::empty()))
    });
    let client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(&p))
        .service(panics);
    let mut req = Request::get("http://example.com/x")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(a_trace());
    let caught = std::panic::AssertUnwindSafe(client.oneshot(req))
        .catch_unwind()
        .await;
    assert!(caught.is_err());
    let spans = exporter.get_finished_spans().unwrap();
    let client_span = one(&spans, SpanKind::Client);
    assert!(is_error(client_span));
    assert_eq!(
        attr(client_span, semconv::ERROR_TYPE).unwrap().as_str(),
        "panic"
    );
}
