//! With feature `metrics`: the server layer's request-duration histograms, read back from the
//! OpenMetrics text a scrape gets — labels (method, route template, status; gRPC service,
//! method, status from headers or trailers), exemplars naming the request's trace, requests
//! measured to the end of their body, skipped paths not counted, the label space bounded.
#![cfg(all(feature = "metrics", feature = "opentelemetry"))]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::MatchedPath;
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use prometheus_client::registry::Registry;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_trace_headers::TraceHeadersLayer;
use tower_trace_headers::metrics::{MAX_ROUTES, OPENMETRICS_CONTENT_TYPE, ServerMetrics};

const TRACE: &str = "80f198ee56343ba864fe8b2a57d3eff7";
const SPAN: &str = "e457b5a2e4d86bd1";

fn registry() -> (Registry, ServerMetrics) {
    let mut registry = Registry::default();
    let metrics = ServerMetrics::new();
    metrics.register(&mut registry);
    (registry, metrics)
}

fn scrape(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text
}

/// The lines of `text` for `series` (a metric name with its labels, as written).
fn lines<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn app(layer: TraceHeadersLayer) -> Router {
    Router::new()
        .route("/users/{id}", get(|| async { "a user" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/slow", get(|| async { support::slow_body() }))
        .layer(
            layer
                .skip_paths(["/healthz"])
                .route(|e| e.get::<MatchedPath>().map(MatchedPath::as_str)),
        )
}

fn get_request(path: &str, sampled: &str) -> Request<Body> {
    Request::get(path)
        .header("x-b3-traceid", TRACE)
        .header("x-b3-spanid", SPAN)
        .header("x-b3-sampled", sampled)
        .body(Body::empty())
        .unwrap()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Bytes) {
    let response = app.clone().oneshot(req).await.unwrap();
    let status = response.status();
    // Reading the body to its end is what ends the measurement.
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

#[tokio::test]
async fn http_requests_by_method_route_template_and_status_with_the_trace_as_exemplar() {
    let (registry, metrics) = registry();
    // No tracer reports: the exemplar names the caller's trace (no span id of ours).
    let app = app(TraceHeadersLayer::new().without_spans().metrics(metrics));
    for id in 1..=3 {
        let (status, _) = send(&app, get_request(&format!("/users/{id}"), "1")).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, _) = send(&app, get_request("/nowhere", "1")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Not sampled: counted, but no exemplar could lead anywhere.
    let mut unsampled = get_request("/users/9", "0");
    unsampled.headers_mut().insert(
        "x-b3-traceid",
        HeaderValue::from_static("0af7651916cd43dd8448eb211c80319c"),
    );
    send(&app, unsampled).await;
    // Health checks are skipped: not counted.
    send(&app, get_request("/healthz", "1")).await;

    let text = scrape(&registry);
    assert!(
        text.contains("# TYPE http_server_request_duration_seconds histogram"),
        "{text}"
    );
    assert!(
        text.contains("# UNIT http_server_request_duration_seconds seconds"),
        "{text}"
    );
    let users = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 4"#;
    assert!(
        text.lines().any(|l| l == users),
        "one series for every user: {text}"
    );
    let missing = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="",http_response_status_code="404"} 1"#;
    assert!(
        text.lines().any(|l| l == missing),
        "no route template, no route: {text}"
    );
    assert!(
        !text.contains("healthz"),
        "skipped paths are not counted: {text}"
    );
    assert!(!text.contains("/users/1\""), "never the raw path: {text}");

    let buckets = lines(&text, "http_server_request_duration_seconds_bucket{");
    let exemplars: Vec<&str> = buckets
        .iter()
        .filter(|l| l.contains(" # {"))
        .copied()
        .collect();
    assert!(!exemplars.is_empty(), "{text}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for line in &exemplars {
        assert!(
            line.contains(&format!("# {{trace_id=\"{TRACE}\"}}")),
            "the exemplar names the sampled trace, and no span of ours: {line}"
        );
        // `# {labels} value timestamp`: when it was taken (seconds since the epoch).
        let taken: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((now - 60.0..=now).contains(&taken), "{line}");
    }
    assert!(
        !text.contains("0af7651916cd43dd8448eb211c80319c"),
        "no exemplar for an unsampled trace: {text}"
    );
}

#[tokio::test]
async fn the_exemplar_names_the_reported_server_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (registry, metrics) = registry();
    let app = app(TraceHeadersLayer::new()
        .tracer_provider(&provider)
        .metrics(metrics));
    send(&app, get_request("/users/1", "1")).await;
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    let span_id = format!(
        "{:016x}",
        u64::from_be_bytes(spans[0].span_context.span_id().to_bytes())
    );
    let text = scrape(&registry);
    let exemplar = format!("# {{trace_id=\"{TRACE}\",span_id=\"{span_id}\"}}");
    assert!(
        text.contains(&exemplar),
        "exemplar {exemplar} (the exported server span) in {text}"
    );
}

#[tokio::test]
async fn a_request_is_measured_to_the_end_of_its_body() {
    let (registry, metrics) = registry();
    let app = app(TraceHeadersLayer::new().without_spans().metrics(metrics));
    let response = app
        .clone()
        .oneshot(get_request("/slow", "1"))
        .await
        .unwrap();
    // The head is here; nothing is recorded until the body ends.
    assert!(
        !scrape(&registry).contains("/slow"),
        "recorded before the body ended"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first last");
    let text = scrape(&registry);
    let sum = lines(&text, "http_server_request_duration_seconds_sum{")
        .into_iter()
        .find(|l| l.contains("/slow"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no sum for /slow: {text}"));
    assert!(
        sum >= 0.3,
        "measured {sum} s: the body took 300 ms after the head"
    );
}

/// A gRPC server in miniature: status in the trailers, in the headers (trailers-only), or a
/// body the client stops reading.
fn grpc_app(
    metrics: ServerMetrics,
) -> tower::util::BoxCloneSyncService<
    Request<Body>,
    Response<tower_trace_headers::server::ResponseBody<Body>>,
    Infallible,
> {
    let inner = service_fn(|req: Request<Body>| async move {
        let grpc = |status: &'static str| {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static(status));
            let frames = futures_util::stream::iter([
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                Ok(http_body::Frame::trailers(trailers)),
            ]);
            Body::new(StreamBody::new(frames))
        };
        if req.uri().path() == "/shop.v1.Shop/Slow" {
            // Never answers: the client gives up first.
            std::future::pending::<()>().await;
        }
        if req.uri().path() == "/shop.v1.Shop/Panic" {
            tokio::task::yield_now().await;
            panic!("the handler panics");
        }
        let response = match req.uri().path() {
            "/shop.v1.Shop/Get" | "/shop.v1.Shop/Late" => Response::new(grpc("0")),
            p if p.starts_with("/probe.v1.P") => Response::new(grpc("0")),
            "/shop.v1.Shop/Unavailable" => {
                // A proxy's or an inner layer's answer: an HTTP status, no gRPC status.
                let mut r = Response::new(Body::empty());
                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                r
            }
            "/shop.v1.Shop/ProxyPage" => {
                // The same with a text page, which a gRPC client drops unread.
                let page = futures_util::stream::iter([
                    Ok::<_, Infallible>(Bytes::from_static(b"upstream connect error ")),
                    Ok(Bytes::from_static(b"or disconnect/reset before headers")),
                ]);
                let mut r = Response::new(Body::from_stream(page));
                *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                r
            }
            p if p.starts_with("/probe.v1.Unimplemented") => {
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert("grpc-status", HeaderValue::from_static("12"));
                r
            }
            p if p.starts_with("/probe.v1.TooLarge") || p.starts_with("/probe.v1.Invalid") => {
                // A body limit (413) or a validating layer (400) in front of the router: an
                // HTTP status and no gRPC status, for any path.
                let mut r = Response::new(Body::empty());
                *r.status_mut() = if p.starts_with("/probe.v1.TooLarge") {
                    http::StatusCode::PAYLOAD_TOO_LARGE
                } else {
                    http::StatusCode::BAD_REQUEST
                };
                r
            }
            p if p.starts_with("/probe.v1.Strict") => {
                // A strict interceptor in front of the router refusing a malformed header.
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert("grpc-status", HeaderValue::from_static("3"));
                r
            }
            "/shop.v1.Shop/Missing" => Response::new(grpc("5")),
            "/shop.v1.Shop/Unimplemented" => {
                // Trailers-only: the status in the headers, an empty body.
                let mut r = Response::new(Body::empty());
                r.headers_mut()
                    .insert("grpc-status", HeaderValue::from_static("12"));
                r
            }
            _ => {
                // A stream that never ends.
                let frames = futures_util::stream::unfold((), |()| async {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    Some((Ok::<_, Infallible>(Bytes::from_static(b"\0\0\0\0\0")), ()))
                });
                Response::new(Body::from_stream(frames))
            }
        };
        let mut response = response;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        Ok::<_, Infallible>(response)
    });
    tower::util::BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(TraceHeadersLayer::new().without_spans().metrics(metrics))
            .service(inner),
    )
}

fn grpc_request(path: &str) -> Request<Body> {
    Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("x-b3-traceid", TRACE)
        .header("x-b3-spanid", SPAN)
        .header("x-b3-sampled", "1")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn grpc_calls_by_service_method_and_status_from_trailers_headers_or_cancellation() {
    let (registry, metrics) = registry();
    let svc = grpc_app(metrics);
    for path in [
        "/shop.v1.Shop/Get",
        "/shop.v1.Shop/Get",
        "/shop.v1.Shop/Missing",
        "/shop.v1.Shop/Unimplemented",
    ] {
        let response = svc.clone().oneshot(grpc_request(path)).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    // Read as hyper reads it: up to the trailers, then let go (this body never says it has
    // ended); the status is the trailers', not a cancellation.
    let response = svc
        .clone()
        .oneshot(grpc_request("/shop.v1.Shop/Get"))
        .await
        .unwrap();
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if frame.unwrap().is_trailers() {
            break;
        }
    }
    drop(body);
    // The client reads one message of the stream and goes away: a method not seen answering
    // yet (`Watch`), and one that has (`Get`), which keeps its name.
    for path in ["/shop.v1.Shop/Watch", "/shop.v1.Shop/Get"] {
        let response = svc.clone().oneshot(grpc_request(path)).await.unwrap();
        let mut body = response.into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
    }
    // The client goes away before any answer.
    let gave_up = tokio::time::timeout(
        Duration::from_millis(20),
        svc.clone().oneshot(grpc_request("/shop.v1.Shop/Slow")),
    )
    .await;
    assert!(gave_up.is_err());
    // No gRPC status: what a client reads from the HTTP one (503: UNAVAILABLE).
    let response = svc
        .clone()
        .oneshot(grpc_request("/shop.v1.Shop/Unavailable"))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    // The same with a page the client reads a frame of and drops: still UNAVAILABLE (the
    // HTTP status said so), not CANCELLED.
    let response = svc
        .clone()
        .oneshot(grpc_request("/shop.v1.Shop/ProxyPage"))
        .await
        .unwrap();
    let mut body = response.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);

    let text = scrape(&registry);
    for (service, method, status, count) in [
        ("shop.v1.Shop", "Get", 0, 3),
        ("shop.v1.Shop", "Get", 1, 1),
        ("shop.v1.Shop", "Missing", 5, 1),
        // A method the service does not have is not kept: a made-up path is no series. Nor
        // one seen only cancelled (`Watch`, `Slow`) or answered by what stands in front of
        // the service (`Unavailable`, 503 → UNAVAILABLE): any path gets those.
        ("_OTHER", "_OTHER", 12, 1),
        ("_OTHER", "_OTHER", 1, 2),
        ("_OTHER", "_OTHER", 14, 2),
    ] {
        let line = format!(
            r#"rpc_server_call_duration_seconds_count{{rpc_system="grpc",rpc_service="{service}",rpc_method="{method}",rpc_grpc_status_code="{status}"}} {count}"#
        );
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    assert!(
        !text.contains("http_server_request_duration_seconds_count"),
        "gRPC calls are not counted as HTTP requests: {text}"
    );
}

#[tokio::test]
async fn distinct_names_are_bounded() {
    let (registry, metrics) = registry();
    let svc = grpc_app(metrics);
    for i in 0..MAX_ROUTES + 50 {
        let path = format!("/probe.v1.P{i}/Get");
        let response = svc.clone().oneshot(grpc_request(&path)).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    let text = scrape(&registry);
    let series = lines(&text, "rpc_server_call_duration_seconds_count{");
    assert_eq!(
        series.len(),
        MAX_ROUTES + 1,
        "{MAX_ROUTES} names and one _OTHER series"
    );
    assert!(
        series
            .iter()
            .any(|l| l.contains(r#"rpc_service="_OTHER",rpc_method="_OTHER""#)),
        "the rest as _OTHER"
    );
}

#[tokio::test]
async fn made_up_methods_take_no_room() {
    // A client probing more made-up paths than there is room for (each answered
    // UNIMPLEMENTED, INVALID_ARGUMENT, or only an HTTP status), and malformed ones: the service's own methods keep their series, and no
    // two series carry the same labels.
    let (registry, metrics) = registry();
    let svc = grpc_app(metrics);
    for i in 0..MAX_ROUTES + 50 {
        let path = format!("/probe.v1.Unimplemented{i}/Get");
        drop(svc.clone().oneshot(grpc_request(&path)).await.unwrap());
        let path = format!("/probe.v1.Strict{i}/Get");
        drop(svc.clone().oneshot(grpc_request(&path)).await.unwrap());
        // Read from the HTTP status, UNKNOWN (413) and INTERNAL (400) would show a method;
        // the service never answered these with a gRPC status, so they show none.
        let path = format!("/probe.v1.TooLarge{i}/Get");
        let response = svc.clone().oneshot(grpc_request(&path)).await.unwrap();
        response.into_body().collect().await.unwrap();
        let path = format!("/probe.v1.Invalid{i}/Get");
        let response = svc.clone().oneshot(grpc_request(&path)).await.unwrap();
        response.into_body().collect().await.unwrap();
    }
    for path in ["/x", "/a/b/c", "/_OTHER/_OTHER", "//Get"] {
        drop(svc.clone().oneshot(grpc_request(path)).await.unwrap());
    }
    let response = svc
        .clone()
        .oneshot(grpc_request("/shop.v1.Shop/Late"))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    let text = scrape(&registry);
    let series = lines(&text, "rpc_server_call_duration_seconds_count{");
    assert!(
        series.iter().any(|l| l.contains(
            r#"rpc_service="shop.v1.Shop",rpc_method="Late",rpc_grpc_status_code="0"} 1"#
        )),
        "{text}"
    );
    let mut labels: Vec<&str> = series
        .iter()
        .map(|l| l.rsplit_once(' ').unwrap().0)
        .collect();
    let all = labels.len();
    labels.sort_unstable();
    labels.dedup();
    assert_eq!(labels.len(), all, "one series per label set: {series:#?}");
    assert!(all <= 7, "{series:#?}");
    for status in [2, 13] {
        let other = format!(
            r#"rpc_service="_OTHER",rpc_method="_OTHER",rpc_grpc_status_code="{status}"}} {}"#,
            MAX_ROUTES + 50
        );
        assert!(series.iter().any(|l| l.ends_with(&other)), "{series:#?}");
    }
}

#[test]
fn the_content_type_is_openmetrics() {
    assert_eq!(
        OPENMETRICS_CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let (registry, _) = registry();
    assert!(
        scrape(&registry).ends_with("# EOF\n"),
        "an OpenMetrics exposition ends with # EOF"
    );
}

#[tokio::test]
async fn a_panicking_handler_is_a_failure_not_a_cancellation() {
    use futures_util::FutureExt as _;
    let (registry, metrics) = registry();
    let svc = grpc_app(metrics);
    // A layer above catches the panic (as a catch-panic layer does) and drops the call.
    let caught = std::panic::AssertUnwindSafe(svc.oneshot(grpc_request("/shop.v1.Shop/Panic")))
        .catch_unwind()
        .await;
    assert!(caught.is_err());
    let text = scrape(&registry);
    let line = r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="shop.v1.Shop",rpc_method="Panic",rpc_grpc_status_code="2"} 1"#;
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
}

#[tokio::test]
async fn a_failed_http_request_carries_the_error_type_its_span_does() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (registry, metrics) = registry();
    let inner = service_fn(|req: Request<Body>| async move {
        match req.uri().path() {
            "/fail" => Err(std::io::Error::other("the service failed")),
            "/boom" => {
                let mut r = Response::new(Body::from("no"));
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok(r)
            }
            "/torn" => {
                // The head says 200; the body fails half-way.
                let frames = futures_util::stream::iter([
                    Ok(Bytes::from_static(b"half")),
                    Err(std::io::Error::other("torn")),
                ]);
                Ok(Response::new(Body::from_stream(frames)))
            }
            _ => {
                let mut r = Response::new(Body::empty());
                *r.status_mut() = StatusCode::NOT_FOUND;
                Ok(r)
            }
        }
    });
    let svc = ServiceBuilder::new()
        .layer(
            TraceHeadersLayer::new()
                .tracer_provider(&provider)
                .metrics(metrics),
        )
        .service(inner);
    let failed = svc.clone().oneshot(get_request("/fail", "1")).await;
    assert!(failed.is_err());
    for path in ["/boom", "/torn", "/missing"] {
        let response = svc.clone().oneshot(get_request(path, "1")).await.unwrap();
        let _ = response.into_body().collect().await;
    }

    let text = scrape(&registry);
    let count = |labels: &str| {
        let line = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",http_route=\"\"{labels}}} 1"
        );
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    };
    let io = std::any::type_name::<std::io::Error>();
    let body = std::any::type_name::<axum::Error>();
    // No response head: no status, the service's error.
    count(&format!(",error_type=\"{io}\""));
    // A server error is its own type.
    count(",http_response_status_code=\"500\",error_type=\"500\"");
    // The head went out; the body's error.
    count(&format!(
        ",http_response_status_code=\"200\",error_type=\"{body}\""
    ));
    // A client error is no server error.
    count(",http_response_status_code=\"404\"");

    // The spans say the same.
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 4);
    let mut types: Vec<Option<String>> = spans
        .iter()
        .map(|s| {
            s.attributes
                .iter()
                .find(|kv| kv.key.as_str() == "error.type")
                .map(|kv| kv.value.as_str().into_owned())
        })
        .collect();
    types.sort();
    let mut expected = vec![
        None,
        Some("500".to_owned()),
        Some(body.to_owned()),
        Some(io.to_owned()),
    ];
    expected.sort();
    assert_eq!(types, expected);
}

#[tokio::test]
async fn a_body_that_panics_is_a_failure_not_a_cancellation() {
    use futures_util::FutureExt as _;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (registry, metrics) = registry();
    let inner = service_fn(|req: Request<Body>| async move {
        let grpc = req.uri().path().starts_with("/shop.v1.");
        // The head goes out; the second frame panics (a streaming handler's bug).
        let frames = futures_util::stream::unfold(0, |n| async move {
            assert!(n == 0, "the stream panics");
            Some((
                Ok::<_, Infallible>(Bytes::from_static(b"\0\0\0\0\0")),
                n + 1,
            ))
        });
        let mut response = Response::new(Body::from_stream(frames));
        if grpc {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
        }
        Ok::<_, Infallible>(response)
    });
    let svc = ServiceBuilder::new()
        .layer(
            TraceHeadersLayer::new()
                .tracer_provider(&provider)
                .metrics(metrics),
        )
        .service(inner);
    for req in [
        get_request("/stream", "1"),
        grpc_request("/shop.v1.Shop/Watch"),
    ] {
        let response = svc.clone().oneshot(req).await.unwrap();
        // A reader that catches the panic (as a task boundary does) and drops the body.
        let read = std::panic::AssertUnwindSafe(response.into_body().collect())
            .catch_unwind()
            .await;
        assert!(read.is_err());
    }

    let text = scrape(&registry);
    for line in [
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="",http_response_status_code="200",error_type="panic"} 1"#,
        r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="shop.v1.Shop",rpc_method="Watch",rpc_grpc_status_code="2"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(
            span.status,
            opentelemetry::trace::Status::error(""),
            "{span:?}"
        );
    }
}

#[tokio::test]
async fn a_response_dropped_before_its_body_is_read_is_cancelled() {
    let (registry, metrics) = registry();
    let svc = grpc_app(metrics);
    // Read once: the method is known.
    let response = svc
        .clone()
        .oneshot(grpc_request("/shop.v1.Shop/Get"))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    // The client resets the stream before the body is polled: CANCELLED, not UNKNOWN.
    drop(
        svc.clone()
            .oneshot(grpc_request("/shop.v1.Shop/Get"))
            .await
            .unwrap(),
    );
    // A trailers-only response (an empty body, which hyper never polls) keeps its status.
    drop(
        svc.clone()
            .oneshot(grpc_request("/shop.v1.Shop/Unimplemented"))
            .await
            .unwrap(),
    );
    // So does an empty answer without any gRPC status (a proxy's 503), never polled either:
    // complete, with the status a gRPC client reads from its HTTP status.
    drop(
        svc.clone()
            .oneshot(grpc_request("/shop.v1.Shop/Unavailable"))
            .await
            .unwrap(),
    );
    let text = scrape(&registry);
    for line in [
        r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="shop.v1.Shop",rpc_method="Get",rpc_grpc_status_code="0"} 1"#,
        r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="shop.v1.Shop",rpc_method="Get",rpc_grpc_status_code="1"} 1"#,
        r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="_OTHER",rpc_method="_OTHER",rpc_grpc_status_code="12"} 1"#,
        r#"rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="_OTHER",rpc_method="_OTHER",rpc_grpc_status_code="14"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
}

/// A service whose `call` itself panics (before any future exists).
#[derive(Clone)]
struct PanicsInCall;

impl tower::Service<Request<Body>> for PanicsInCall {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        panic!("call panics");
    }
}

/// A panic in the inner service's `call` (caught above, as tower-http's `CatchPanic` catches
/// it) is a failure, on the server side (span and metrics) and the client side (span), as a
/// panic while the future is polled is: not a span exported with no status, nor a request
/// never measured.
#[tokio::test]
async fn a_panic_in_call_is_a_failure() {
    use tower::Service as _;
    use tower_trace_headers::PropagateTraceHeadersLayer;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let (registry, metrics) = registry();
    let mut server = ServiceBuilder::new()
        .layer(
            TraceHeadersLayer::new()
                .tracer_provider(&provider)
                .metrics(metrics),
        )
        .service(PanicsInCall);
    let mut client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(&provider))
        .service(PanicsInCall);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        server.call(get_request("/p", "1"))
    }));
    assert!(caught.is_err());
    // The client makes a span of its own under a reported one: the application's.
    {
        use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
        let parent = provider.tracer("app").start("work");
        let _app = opentelemetry::Context::current_with_span(parent).attach();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            client.call(Request::new(Body::empty()))
        }));
        assert!(caught.is_err());
    }

    let text = scrape(&registry);
    let line = r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="",error_type="panic"} 1"#;
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
    let mut spans = exporter.get_finished_spans().unwrap();
    spans.retain(|s| s.name != "work");
    let mut kinds: Vec<String> = spans.iter().map(|s| format!("{:?}", s.span_kind)).collect();
    kinds.sort();
    assert_eq!(kinds, ["Client", "Server"], "{spans:#?}");
    for s in &spans {
        let error = s
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "error.type")
            .map(|kv| kv.value.as_str().into_owned());
        assert_eq!(error.as_deref(), Some("panic"), "{s:#?}");
        assert!(
            matches!(s.status, opentelemetry::trace::Status::Error { .. }),
            "{s:#?}"
        );
    }
}

/// A call made while another panic unwinds (from a drop guard) is not taken for a panicking
/// `call`: it goes out, and its span ends with its response.
#[tokio::test]
async fn a_call_made_while_unwinding_is_no_panic_of_its_own() {
    use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
    use tower_trace_headers::PropagateTraceHeadersLayer;
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let inner =
        service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) });
    let mut client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(&provider))
        .service(inner);

    struct CallsOnDrop<'a, S: tower::Service<Request<Body>>> {
        client: &'a mut S,
        made: &'a mut Option<S::Future>,
    }
    impl<S: tower::Service<Request<Body>>> Drop for CallsOnDrop<'_, S> {
        fn drop(&mut self) {
            *self.made = Some(self.client.call(Request::new(Body::empty())));
        }
    }
    let mut made = None;
    {
        let parent = provider.tracer("app").start("work");
        let _app = opentelemetry::Context::current_with_span(parent).attach();
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _guard = CallsOnDrop {
                client: &mut client,
                made: &mut made,
            };
            panic!("the handler panics");
        }));
        assert!(caught.is_err());
    }
    let response = made.expect("the call was made").await.unwrap();
    let _ = response.into_body().collect().await;
    let spans = exporter.get_finished_spans().unwrap();
    let call = spans
        .iter()
        .find(|s| s.span_kind == opentelemetry::trace::SpanKind::Client)
        .expect("the call's span");
    assert!(
        !call
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "error.type"),
        "{call:#?}"
    );
}

/// A client labelling an HTTP request as a gRPC call (`content-type: application/grpc`) does
/// not move it out of the HTTP metrics: the answer is not gRPC's (no gRPC `content-type`, no
/// `grpc-status`), so it counts as the HTTP request it was, under its route and status.
#[tokio::test]
async fn a_grpc_content_type_on_an_http_route_is_still_an_http_request() {
    let (registry, metrics) = registry();
    let app = app(TraceHeadersLayer::new().without_spans().metrics(metrics));
    for path in ["/users/1", "/nowhere"] {
        let mut req = get_request(path, "1");
        req.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        send(&app, req).await;
    }
    let text = scrape(&registry);
    for line in [
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="/users/{id}",http_response_status_code="200"} 1"#,
        r#"http_server_request_duration_seconds_count{http_request_method="GET",http_route="",http_response_status_code="404"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    assert!(
        !text.contains("rpc_server_call_duration_seconds_count"),
        "no gRPC call was answered: {text}"
    );

    // A real gRPC call a layer in front of the service answers with a plain page (a shedder's
    // 503, no gRPC `content-type`, no `grpc-status`): an HTTP request, by what was answered.
    let (shed_registry, metrics) = self::registry();
    let shed = ServiceBuilder::new()
        .layer(TraceHeadersLayer::new().without_spans().metrics(metrics))
        .service(service_fn(|_: Request<Body>| async {
            let mut r = Response::new(Body::from("overloaded"));
            *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            Ok::<_, Infallible>(r)
        }));
    let response = shed
        .oneshot(grpc_request("/shop.v1.Shop/Get"))
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
    let text = scrape(&shed_registry);
    let line = r#"http_server_request_duration_seconds_count{http_request_method="POST",http_route="",http_response_status_code="503",error_type="503"} 1"#;
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
    assert!(
        !text.contains("rpc_server_call_duration_seconds_count"),
        "{text}"
    );
}
