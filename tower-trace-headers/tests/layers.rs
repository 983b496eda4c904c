//! Real servers on 127.0.0.1:0: an axum service A with the server layer calls an axum service
//! B through a hyper client with the client layer; B echoes what it received.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use b3_propagation::{Propagator, Sampling, TrustPolicy};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::{
    FutureExt, PropagateTraceHeaders, PropagateTraceHeadersLayer, RequestTrace, TraceHeadersLayer,
};

type Echo = BTreeMap<String, String>;
type HttpClient = PropagateTraceHeaders<Client<HttpConnector, Empty<Bytes>>>;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn to_echo(headers: &HeaderMap) -> Echo {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or("<binary>").to_owned(),
            )
        })
        .collect()
}

/// Service B: echoes the headers it received.
async fn service_b() -> SocketAddr {
    serve(Router::new().route(
        "/echo",
        get(|headers: HeaderMap| async move { Json(to_echo(&headers)) }),
    ))
    .await
}

fn client(layer: PropagateTraceHeadersLayer) -> HttpClient {
    let inner = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    ServiceBuilder::new().layer(layer).service(inner)
}

async fn get_json(client: &mut HttpClient, url: String) -> Echo {
    let req = Request::get(url).body(Empty::new()).unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[derive(serde::Deserialize)]
struct Calls {
    #[serde(default)]
    n: usize,
}

/// Service A: calls B (`n` times concurrently with `join_all`, plus once from a spawned task
/// when `n` > 1) and answers what B saw, plus its own view.
async fn service_a(
    b: SocketAddr,
    server: TraceHeadersLayer,
    client_layer: PropagateTraceHeadersLayer,
) -> SocketAddr {
    let app = Router::new()
        .route(
            "/",
            get(move |Query(calls): Query<Calls>| {
                let client = client(client_layer.clone());
                async move {
                    // An await point before the calls: the trace must survive it.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let n = calls.n.max(1);
                    let calls = (0..n).map(|_| {
                        let mut c = client.clone();
                        async move { get_json(&mut c, format!("http://{b}/echo")).await }
                    });
                    let mut seen: Vec<Echo> = futures_util::future::join_all(calls).await;
                    if n > 1 {
                        let mut c = client.clone();
                        let spawned = tokio::spawn(
                            async move { get_json(&mut c, format!("http://{b}/echo")).await }
                                .with_current_trace(),
                        );
                        seen.push(spawned.await.unwrap());
                    }
                    let trace = RequestTrace::current().expect("current inside the handler");
                    let mut me = Echo::new();
                    me.insert("request_id".into(), trace.request_id().unwrap().to_string());
                    // This hop's span when it reports one, else the caller's.
                    if let Some(span) = trace.span() {
                        me.insert("trace_id".into(), span.trace_id().unwrap().to_string());
                        me.insert("span_id".into(), span.span_id().unwrap().to_string());
                        me.insert("sampling".into(), span.sampling().to_string());
                    }
                    me.insert("reported".into(), trace.is_reported().to_string());
                    seen.push(me);
                    Json(seen)
                }
            }),
        )
        .layer(server);
    serve(app).await
}

async fn call_a(a: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (HeaderMap, Vec<Echo>) {
    let (headers, body) = get_raw(a, path, headers).await;
    (headers, serde_json::from_slice(&body).unwrap())
}

/// GET `path` from `a` with `headers`: the response's headers and body.
async fn get_raw(a: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (HeaderMap, Bytes) {
    let inner = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("http://{a}{path}"))
        .body(Empty::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    let resp = inner.request(req).await.unwrap();
    let headers = resp.headers().clone();
    (
        headers,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

const B3_MULTI: &[(&str, &str)] = &[
    ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
    ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ("x-b3-sampled", "1"),
    ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"),
];
const B3_SINGLE: &[(&str, &str)] = &[("b3", "48485a3953bb6124-a2fb4a1d1a96d312-d")];
const TRACEPARENT: &[(&str, &str)] = &[
    (
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    ),
    ("tracestate", "rojo=00f067aa0ba902b7"),
    ("baggage", "user=alice"),
    ("x-ot-span-context", "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ=="),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_resends_received_headers_unchanged() {
    let b = service_b().await;
    let a = service_a(
        b,
        TraceHeadersLayer::new(),
        PropagateTraceHeadersLayer::forward(),
    )
    .await;
    for inbound in [B3_MULTI, B3_SINGLE, TRACEPARENT] {
        let (_, seen) = call_a(a, "/", inbound).await;
        let at_b = &seen[0];
        for (k, v) in inbound {
            assert_eq!(
                at_b.get(*k).map(String::as_str),
                Some(*v),
                "{k} forwarded verbatim"
            );
        }
        // One request id from the first hop to the last.
        assert_eq!(at_b["x-request-id"], seen.last().unwrap()["request_id"]);
        if let Some((_, rid)) = inbound.iter().find(|(k, _)| *k == "x-request-id") {
            assert_eq!(at_b["x-request-id"], *rid);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrument_mode_without_a_tracer_resends_the_callers_span() {
    // The README's "one line on each side" with no OpenTelemetry provider: nothing at A
    // reports a span, so every call names the caller's span — never an id nobody reports.
    let b = service_b().await;
    let a = service_a(
        b,
        TraceHeadersLayer::new(),
        PropagateTraceHeadersLayer::default(),
    )
    .await;

    // B3 multi: every call (joined and spawned) carries the caller's span, parent and
    // sampling, unchanged.
    let inbound = [
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", "0020000000000001"),
        ("x-b3-sampled", "1"),
        ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"),
    ];
    let (_, seen) = call_a(a, "/?n=3", &inbound).await;
    let me = seen.last().unwrap();
    assert_eq!(me["reported"], "false");
    assert_eq!(
        me["span_id"], "a2fb4a1d1a96d312",
        "A's current span is the caller's"
    );
    let calls = &seen[..seen.len() - 1];
    assert_eq!(calls.len(), 4, "3 joined calls and 1 spawned");
    for at_b in calls {
        for (k, v) in inbound {
            assert_eq!(at_b[k], v, "{k}");
        }
        assert!(!at_b.contains_key("traceparent"), "no format invented");
    }

    // b3 single, 64-bit and debug: as received.
    let (_, seen) = call_a(a, "/", B3_SINGLE).await;
    assert_eq!(seen[0]["b3"], B3_SINGLE[0].1);
    assert!(!seen[0].contains_key("x-b3-spanid"));

    // traceparent: tracestate, baggage and the opaque header ride along.
    let (_, seen) = call_a(a, "/", TRACEPARENT).await;
    for (k, v) in TRACEPARENT {
        assert_eq!(seen[0][*k], *v, "{k}");
    }

    // Nothing inbound: no trace ids at all (the next hop that reports starts the trace), a
    // generated UUIDv4 request id, the same at B.
    let (_, seen) = call_a(a, "/", &[]).await;
    let me = seen.last().unwrap();
    assert_eq!(seen[0]["x-request-id"], me["request_id"]);
    assert_eq!(me["request_id"].len(), 36);
    assert_eq!(&me["request_id"][14..15], "4");
    for k in ["x-b3-traceid", "x-b3-spanid", "b3", "traceparent"] {
        assert!(!seen[0].contains_key(k), "{k}: {seen:?}");
    }
    assert!(!me.contains_key("span_id"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousand_concurrent_requests_do_not_cross_talk() {
    let b = service_b().await;
    let a = service_a(
        b,
        TraceHeadersLayer::new(),
        PropagateTraceHeadersLayer::instrument(),
    )
    .await;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(64)
        .build_http::<Empty<Bytes>>();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        let client = client.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let trace_id = format!("{:032x}", 0xabc0_0000_0000u64 + i + 1);
            let req = Request::get(format!("http://{a}/?n=2"))
                .header("x-b3-traceid", &trace_id)
                .header("x-b3-spanid", "a2fb4a1d1a96d312")
                .header("x-b3-sampled", "1")
                .header("x-request-id", format!("rid-{i}"))
                .body(Empty::new())
                .unwrap();
            let resp = client.request(req).await.unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let seen: Vec<Echo> = serde_json::from_slice(&body).unwrap();
            // `n=2`: b's echoes of the two calls and of the spawned one, then a's own.
            assert_eq!(seen.len(), 4, "request {i}: {seen:?}");
            for at_b in &seen[..seen.len() - 1] {
                assert_eq!(at_b["x-b3-traceid"], trace_id, "cross-talk on request {i}");
                assert_eq!(at_b["x-request-id"], format!("rid-{i}"));
            }
        });
    }
    let run = async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("bounded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_edge_does_not_let_clients_force_sampling() {
    let b = service_b().await;
    let edge = TraceHeadersLayer::new()
        .propagator(
            Propagator::builder()
                .trust(TrustPolicy::untrusted())
                .build(),
        )
        .echo_request_id(true);
    let a = service_a(b, edge, PropagateTraceHeadersLayer::instrument()).await;
    let (headers, seen) = call_a(
        a,
        "/",
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-flags", "1"),
            ("x-request-id", "client-chosen-id"),
        ],
    )
    .await;
    let at_b = &seen[0];
    assert!(
        !at_b.contains_key("x-b3-flags"),
        "debug not forced downstream"
    );
    assert!(
        !at_b.contains_key("x-b3-sampled"),
        "no decision forced downstream"
    );
    // A reports nothing: the caller's span goes on, re-encoded without the client's decision.
    assert_eq!(at_b["x-b3-spanid"], "a2fb4a1d1a96d312");
    assert_ne!(
        at_b["x-request-id"], "client-chosen-id",
        "regenerated at the edge"
    );
    assert_eq!(
        headers["x-request-id"],
        at_b["x-request-id"].as_str(),
        "echoed"
    );
    assert_eq!(
        seen.last().unwrap()["sampling"],
        Sampling::Deferred.as_str()
    );
    // The caller's trace id is kept (a client's trace can continue).
    assert_eq!(at_b["x-b3-traceid"], "463ac35c9f6413ad48485a3953bb6124");

    // The same request at a trusted hop is debug downstream.
    let a = service_a(
        b,
        TraceHeadersLayer::new(),
        PropagateTraceHeadersLayer::instrument(),
    )
    .await;
    let (_, seen) = call_a(
        a,
        "/",
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-flags", "1"),
        ],
    )
    .await;
    assert_eq!(seen[0]["x-b3-flags"], "1");
}

#[tokio::test]
async fn trace_response_and_generated_request_id_are_echoed() {
    let svc = ServiceBuilder::new()
        .layer(
            TraceHeadersLayer::new()
                .echo_request_id(true)
                .trace_response(true),
        )
        .service_fn(|req: Request<()>| async move {
            let trace = RequestTrace::from_request(&req).cloned().unwrap();
            // The generated id was written into the request for the handler to see.
            assert_eq!(
                req.headers()["x-request-id"],
                trace.request_id().unwrap().as_str()
            );
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
    let resp = svc.clone().oneshot(Request::new(())).await.unwrap();
    let rid = resp.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(rid.len(), 36);
    // No trace came in and nothing reports one here: no traceresponse to name.
    assert!(resp.headers().get("traceresponse").is_none());

    // With a caller's trace: the traceresponse names the span this hop's calls name (the
    // caller's, as nothing here reports one).
    let req = Request::get("/")
        .header("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
        .body(())
        .unwrap();
    let resp = svc.oneshot(req).await.unwrap();
    let tr = resp.headers()["traceresponse"].to_str().unwrap();
    assert_eq!(
        tr,
        "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_carries_the_trace_into_its_calls() {
    use futures_util::StreamExt as _;
    use tower_trace_headers::TraceStreamExt as _;
    let b = service_b().await;
    let client_layer = PropagateTraceHeadersLayer::forward();
    let app = Router::new()
        .route(
            "/stream",
            get(move || {
                let client = client(client_layer.clone());
                async move {
                    // Each line calls B while the server polls the response body, after this
                    // handler has returned: the stream carries the trace.
                    let lines = futures_util::stream::iter(0..3).then(move |_| {
                        let mut c = client.clone();
                        async move {
                            let seen = get_json(&mut c, format!("http://{b}/echo")).await;
                            let line = serde_json::to_string(&seen).unwrap() + "\n";
                            Ok::<_, std::convert::Infallible>(Bytes::from(line))
                        }
                    });
                    axum::body::Body::from_stream(lines.with_current_trace())
                }
            }),
        )
        .layer(TraceHeadersLayer::new());
    let a = serve(app).await;
    let (_, body) = get_raw(a, "/stream", B3_MULTI).await;
    let lines: Vec<Echo> = std::str::from_utf8(&body)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for at_b in &lines {
        for (k, v) in B3_MULTI {
            assert_eq!(at_b.get(*k).map(String::as_str), Some(*v), "{k}: {at_b:?}");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_call_carrying_its_own_trace_has_it_current_below_the_layer() {
    // Outside any request, a call whose extensions carry a trace: code below the client
    // layer (a retry layer, the connector) sees that trace while the call is polled, not
    // only while it is made.
    let trace = RequestTrace::new(b3_propagation::RequestContext::from_span(
        b3_propagation::SpanContext::new_root(Sampling::Accept),
    ));
    let below = tower::service_fn(|_req: Request<()>| async {
        tokio::task::yield_now().await;
        let seen = RequestTrace::current().and_then(|t| t.span());
        let mut response = http::Response::new(http_body_util::Empty::<bytes::Bytes>::new());
        response.extensions_mut().insert(seen);
        Ok::<_, std::convert::Infallible>(response)
    });
    let svc = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::forward())
        .service(below);
    let mut req = Request::new(());
    req.extensions_mut().insert(trace.clone());
    assert!(RequestTrace::current().is_none());
    let resp = svc.oneshot(req).await.unwrap();
    let seen = resp
        .extensions()
        .get::<Option<b3_propagation::SpanContext>>();
    assert_eq!(seen.cloned(), Some(trace.span()));
}
