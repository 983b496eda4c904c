//! The rule that keeps traces joined, against an in-memory exporter: every span id a callee
//! receives is a span some tracer exported (or the caller's own), and the exported spans and
//! the headers tell the same story — through the tower layers, with application spans
//! (`#[tracing::instrument]` through `tracing-opentelemetry`, an OpenTelemetry span made
//! current, spawned work), with samplers that drop, and through the `reqwest` middleware.
#![cfg(all(
    feature = "tracing-opentelemetry",
    feature = "tokio",
    feature = "reqwest"
))]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{
    FutureExt as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::otel::PresetIdGenerator;
use tower_trace_headers::{PropagateTraceHeaders, PropagateTraceHeadersLayer, TraceHeadersLayer};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

type Echo = BTreeMap<String, String>;
type HttpClient = PropagateTraceHeaders<Client<HttpConnector, Empty<Bytes>>>;

const CALLER_TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const CALLER_SPAN: &str = "a2fb4a1d1a96d312";
const CALLER_PARENT: &str = "0020000000000001";

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn echo(h: &HeaderMap) -> Echo {
    h.iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

/// B: echoes the headers it received, behind `layer`.
async fn service_b(layer: TraceHeadersLayer) -> SocketAddr {
    serve(
        Router::new()
            .route("/echo", get(|h: HeaderMap| async move { Json(echo(&h)) }))
            .layer(layer),
    )
    .await
}

fn provider(exporter: &InMemorySpanExporter, sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_id_generator(PresetIdGenerator::default())
        .with_sampler(sampler)
        .build()
}

async fn get_json(client: &mut HttpClient, b: SocketAddr) -> Echo {
    let req = Request::get(format!("http://{b}/echo"))
        .body(Empty::new())
        .unwrap();
    let resp = client.ready().await.unwrap().call(req).await.unwrap();
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[derive(serde::Deserialize)]
struct How {
    how: String,
}

/// The application's own instrumentation: a `tracing` span bridged to OpenTelemetry.
#[tracing::instrument(name = "price order", skip_all)]
async fn priced(mut client: HttpClient, b: SocketAddr) -> Vec<Echo> {
    let mut first = client.clone();
    let (x, y) = tokio::join!(get_json(&mut first, b), get_json(&mut client, b));
    vec![x, y]
}

/// A: server layer, a handler that calls B in the way `?how=` names, client layer.
async fn service_a(
    b: SocketAddr,
    server: TraceHeadersLayer,
    client: PropagateTraceHeadersLayer,
    app: &SdkTracerProvider,
) -> SocketAddr {
    let client = ServiceBuilder::new()
        .layer(client)
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let tracer = app.tracer("app");
    let dispatch = tracing::Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(tracer.clone())),
    );
    serve(
        Router::new()
            .route(
                "/",
                get(move |Query(how): Query<How>| {
                    let mut client = client.clone();
                    let (tracer, dispatch) = (tracer.clone(), dispatch.clone());
                    async move {
                        let seen = match how.how.as_str() {
                            "plain" => vec![get_json(&mut client, b).await],
                            "tracing" => {
                                async { priced(client, b).await }
                                    .with_subscriber(dispatch)
                                    .await
                            }
                            "otel" => {
                                let span = tracer.start("app work");
                                let cx = opentelemetry::Context::current_with_span(span);
                                let seen = async { get_json(&mut client, b).await }
                                    .with_context(cx.clone())
                                    .await;
                                cx.span().end();
                                vec![seen]
                            }
                            "spawn" => {
                                let span = tracer.start("app work");
                                let cx = opentelemetry::Context::current_with_span(span);
                                let task = {
                                    let _in_span = cx.clone().attach();
                                    tower_trace_headers::spawn(async move {
                                        get_json(&mut client, b).await
                                    })
                                };
                                let seen = task.await.unwrap();
                                cx.span().end();
                                vec![seen]
                            }
                            "detached" => {
                                // Work the request only sets off: in no trace of its own.
                                use tower_trace_headers::FutureExt as _;
                                let task = tokio::spawn(
                                    async move { get_json(&mut client, b).await }.without_trace(),
                                );
                                vec![task.await.unwrap()]
                            }
                            other => panic!("{other}"),
                        };
                        Json(seen)
                    }
                }),
            )
            .layer(server),
    )
    .await
}

/// A and B with the layers' spans on, always sampled, into one in-memory exporter: the
/// exporter, and A's address.
async fn every_span_reported() -> (InMemorySpanExporter, SocketAddr) {
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter, Sampler::AlwaysOn);
    let b = service_b(TraceHeadersLayer::new().tracer_provider(&p)).await;
    let a = service_a(
        b,
        TraceHeadersLayer::new().tracer_provider(&p),
        PropagateTraceHeadersLayer::instrument().tracer_provider(&p),
        &p,
    )
    .await;
    (exporter, a)
}

async fn call(a: SocketAddr, how: &str, headers: &[(&'static str, &'static str)]) -> Vec<Echo> {
    let mut req = Request::get(format!("http://{a}/?how={how}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    let resp = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .unwrap();
    assert!(resp.status().is_success());
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

const SAMPLED: &[(&str, &str)] = &[
    ("x-b3-traceid", CALLER_TRACE),
    ("x-b3-spanid", CALLER_SPAN),
    ("x-b3-parentspanid", CALLER_PARENT),
    ("x-b3-sampled", "1"),
];

/// The spans of `who`: `app` (the application's own scope), or — the layers' spans all
/// carry this crate's scope — `a` (A's server span, path `/`), `a-client` (A's client spans),
/// `b` (B's server span, path `/echo`).
fn by_scope<'a>(spans: &'a [SpanData], who: &str) -> Vec<&'a SpanData> {
    let path = |s: &SpanData| {
        s.attributes
            .iter()
            .find(|kv| kv.key.as_str() == "url.path")
            .map(|kv| kv.value.as_str().into_owned())
    };
    spans
        .iter()
        .filter(|s| match who {
            "app" => s.instrumentation_scope.name() == "app",
            _ if s.instrumentation_scope.name() != "tower-trace-headers" => false,
            "a" => s.span_kind == SpanKind::Server && path(s).as_deref() == Some("/"),
            "b" => s.span_kind == SpanKind::Server && path(s).as_deref() == Some("/echo"),
            "a-client" => s.span_kind == SpanKind::Client,
            other => panic!("who is {other}?"),
        })
        .collect()
}

fn one<'a>(spans: &'a [SpanData], who: &str) -> &'a SpanData {
    let found = by_scope(spans, who);
    assert_eq!(found.len(), 1, "one {who} span: {spans:#?}");
    found[0]
}

fn id(s: &SpanData) -> String {
    s.span_context.span_id().to_string()
}

/// One trace (the caller's), and every span's parent is a reported span or the caller's.
fn assert_joined(spans: &[SpanData]) {
    let ids: BTreeSet<String> = spans.iter().map(id).collect();
    for s in spans {
        assert_eq!(
            s.span_context.trace_id().to_string(),
            CALLER_TRACE,
            "{s:#?}"
        );
        let parent = s.parent_span_id.to_string();
        assert!(
            parent == CALLER_SPAN || ids.contains(&parent),
            "orphan: {} names parent {parent}, which nobody reported",
            s.name
        );
    }
}

/// Every span id B received is a reported span (the callee's span is the client span's
/// child), and its parent header names that span's parent.
fn assert_headers_name(at_b: &Echo, span: &SpanData) {
    assert_eq!(at_b["x-b3-traceid"], CALLER_TRACE);
    assert_eq!(
        at_b["x-b3-spanid"],
        id(span),
        "the headers name {}",
        span.name
    );
    assert_eq!(
        at_b["x-b3-parentspanid"],
        span.parent_span_id.to_string(),
        "and its parent"
    );
    assert_eq!(at_b["x-b3-sampled"], "1");
    let tp = &at_b["traceparent"];
    assert_eq!(&tp[36..52], id(span), "{tp}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_span_parents_the_calls_and_the_headers_agree() {
    let (exporter, a) = every_span_reported().await;
    let seen = call(a, "plain", SAMPLED).await;
    let spans = exporter.get_finished_spans().unwrap();
    let server = one(&spans, "a");
    let client = one(&spans, "a-client");
    let b_server = one(&spans, "b");
    assert_eq!(server.parent_span_id.to_string(), CALLER_SPAN);
    assert_eq!(client.parent_span_id, server.span_context.span_id());
    assert_eq!(b_server.parent_span_id, client.span_context.span_id());
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_headers_name(&seen[0], client);
    assert_joined(&spans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_inside_a_tracing_span_are_its_children() {
    let (exporter, a) = every_span_reported().await;
    let seen = call(a, "tracing", SAMPLED).await;
    let spans = exporter.get_finished_spans().unwrap();
    let server = one(&spans, "a");
    let app = one(&spans, "app");
    assert_eq!(app.name, "price order");
    assert_eq!(
        app.parent_span_id,
        server.span_context.span_id(),
        "under the server span"
    );
    let clients = by_scope(&spans, "a-client");
    assert_eq!(clients.len(), 2);
    for client in &clients {
        assert_eq!(
            client.parent_span_id,
            app.span_context.span_id(),
            "under the app's span"
        );
    }
    assert_eq!(seen.len(), 2, "both calls reached b: {seen:?}");
    for at_b in &seen {
        // The calls ran concurrently: match by span id.
        let client = clients
            .iter()
            .find(|c| id(c) == at_b["x-b3-spanid"])
            .expect("the headers name an exported client span");
        assert_headers_name(at_b, client);
    }
    for b_server in by_scope(&spans, "b") {
        assert!(
            clients
                .iter()
                .any(|c| c.span_context.span_id() == b_server.parent_span_id),
            "the callee's server span is a client span's child"
        );
    }
    assert_joined(&spans);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_inside_an_opentelemetry_span_and_spawned_work_are_its_children() {
    for how in ["otel", "spawn"] {
        let (exporter, a) = every_span_reported().await;
        let seen = call(a, how, SAMPLED).await;
        let spans = exporter.get_finished_spans().unwrap();
        let server = one(&spans, "a");
        let app = one(&spans, "app");
        let client = one(&spans, "a-client");
        assert_eq!(app.parent_span_id, server.span_context.span_id(), "{how}");
        assert_eq!(client.parent_span_id, app.span_context.span_id(), "{how}");
        assert_headers_name(&seen[0], client);
        assert_joined(&spans);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_work_is_in_no_trace_of_the_request() {
    // `without_trace` hides the request's trace and its OpenTelemetry context (the server
    // span, current where the task is spawned): the call is a root of a trace of its own.
    let (exporter, a) = every_span_reported().await;
    let seen = call(a, "detached", SAMPLED).await;
    let spans = exporter.get_finished_spans().unwrap();
    let server = one(&spans, "a");
    assert_eq!(server.span_context.trace_id().to_string(), CALLER_TRACE);
    // Outside any request the client layer starts no span and sends no context: the callee
    // starts a trace of its own.
    assert!(by_scope(&spans, "a-client").is_empty(), "{spans:#?}");
    let at_b = &seen[0];
    for name in [
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-sampled",
        "traceparent",
        "b3",
    ] {
        assert!(!at_b.contains_key(name), "{name} sent: {at_b:?}");
    }
    let callee = one(&spans, "b");
    assert_ne!(
        callee.span_context.trace_id(),
        server.span_context.trace_id()
    );
    assert_eq!(callee.parent_span_id, opentelemetry::trace::SpanId::INVALID);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_span_under_headers_only_layers_is_named_itself() {
    // The layers report nothing (`without_spans`), the application reports its own span:
    // the app span is the caller's child, and the call names the app span itself.
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter, Sampler::AlwaysOn);
    let b = service_b(TraceHeadersLayer::new().without_spans()).await;
    let a = service_a(
        b,
        TraceHeadersLayer::new().without_spans(),
        PropagateTraceHeadersLayer::instrument().without_spans(),
        &p,
    )
    .await;
    let seen = call(a, "otel", SAMPLED).await;
    let spans = exporter.get_finished_spans().unwrap();
    let app = one(&spans, "app");
    assert_eq!(spans.len(), 1);
    assert_eq!(
        app.parent_span_id.to_string(),
        CALLER_SPAN,
        "joins the caller's trace"
    );
    assert_eq!(seen[0]["x-b3-spanid"], id(app));
    assert_eq!(seen[0]["x-b3-traceid"], CALLER_TRACE);
    assert_eq!(seen[0]["x-b3-sampled"], "1");
    // The app span's parent is not known from an OpenTelemetry span: not sent.
    assert!(!seen[0].contains_key("x-b3-parentspanid"));
    assert_joined(&spans);

    // Outside any application span, the same hop is transparent.
    let seen = call(a, "plain", SAMPLED).await;
    for (k, v) in SAMPLED {
        assert_eq!(seen[0][*k], *v, "{k}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_reported_means_transparent() {
    // (name, A's server layer, A's client layer): none of them reports a span.
    let exporter = InMemorySpanExporter::default();
    let dropping = provider(&exporter, Sampler::AlwaysOff);
    let no_exporter = SdkTracerProvider::builder().build();
    let shut_down = provider(&exporter, Sampler::AlwaysOn);
    shut_down.shutdown().unwrap();
    let cases = [
        (
            "a sampler that drops",
            TraceHeadersLayer::new().tracer_provider(&dropping),
            PropagateTraceHeadersLayer::instrument().tracer_provider(&dropping),
        ),
        (
            "a provider without an exporter, declared",
            TraceHeadersLayer::new().without_spans(),
            PropagateTraceHeadersLayer::instrument().without_spans(),
        ),
        (
            "a provider shut down",
            TraceHeadersLayer::new().tracer_provider(&shut_down),
            PropagateTraceHeadersLayer::instrument().tracer_provider(&shut_down),
        ),
        (
            "the global no-op tracer",
            TraceHeadersLayer::new(),
            PropagateTraceHeadersLayer::instrument(),
        ),
    ];
    let app = no_exporter.clone();
    for (name, server, client) in cases {
        let b = service_b(TraceHeadersLayer::new().without_spans()).await;
        let a = service_a(b, server, client, &app).await;
        for inbound in [
            SAMPLED,
            &[
                ("x-b3-traceid", CALLER_TRACE),
                ("x-b3-spanid", CALLER_SPAN),
                ("x-b3-sampled", "0"),
            ][..],
        ] {
            let seen = call(a, "plain", inbound).await;
            // The caller's span, parent and decision, unchanged: "sampled" stays sampled
            // even where the local sampler dropped.
            for (k, v) in inbound {
                assert_eq!(seen[0][*k], *v, "{name}: {k}");
            }
        }
    }
    assert!(exporter.get_finished_spans().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reqwest_middleware_names_only_reported_spans() {
    use tower_trace_headers::reqwest::TraceHeadersMiddleware;
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter, Sampler::AlwaysOn);
    let b = service_b(TraceHeadersLayer::new().without_spans()).await;
    let tracer = p.tracer("app");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(TraceHeadersMiddleware::instrument())
        .build();
    // (server layer, whether the handler opens an app span, the span the call must name)
    for (server, app_span, named) in [
        (TraceHeadersLayer::new().without_spans(), false, None),
        (TraceHeadersLayer::new().without_spans(), true, Some("app")),
        (
            TraceHeadersLayer::new().tracer_provider(&p),
            false,
            Some("a"),
        ),
    ] {
        exporter.reset();
        let client = client.clone();
        let tracer = tracer.clone();
        let a = serve(
            Router::new()
                .route(
                    "/",
                    get(move || {
                        let client = client.clone();
                        let tracer = tracer.clone();
                        async move {
                            let send = async {
                                let resp = client.get(format!("http://{b}/echo")).send().await;
                                serde_json::from_slice::<Echo>(
                                    &resp.unwrap().bytes().await.unwrap(),
                                )
                                .unwrap()
                            };
                            let seen = if app_span {
                                let cx = opentelemetry::Context::current_with_span(
                                    tracer.start("app work"),
                                );
                                let seen = send.with_context(cx.clone()).await;
                                cx.span().end();
                                seen
                            } else {
                                send.await
                            };
                            Json(vec![seen])
                        }
                    }),
                )
                .layer(server),
        )
        .await;
        let seen = &call(a, "plain", SAMPLED).await[0];
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(seen["x-b3-traceid"], CALLER_TRACE);
        assert_eq!(seen["x-b3-sampled"], "1");
        match named {
            // Nothing reported: the caller's span, unchanged.
            None => {
                assert!(spans.is_empty());
                assert_eq!(seen["x-b3-spanid"], CALLER_SPAN);
            }
            // The one reported span, the app's or the server layer's: named, never an id of
            // the middleware's own.
            Some(scope) => {
                let span = one(&spans, scope);
                assert_eq!(spans.len(), 1);
                assert_eq!(seen["x-b3-spanid"], id(span), "{scope}");
                assert_eq!(span.parent_span_id.to_string(), CALLER_SPAN);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_decision_alone_is_followed() {
    // The caller sent only its decision (`b3: 0`, `b3: 1`): no span to be the parent, but
    // the hop's parent-based sampler follows the caller's decision, not its root sampler.
    for (decision, root) in [("0", Sampler::AlwaysOn), ("1", Sampler::AlwaysOff)] {
        let exporter = InMemorySpanExporter::default();
        let p = provider(&exporter, Sampler::ParentBased(Box::new(root)));
        let b = service_b(TraceHeadersLayer::new().without_spans()).await;
        let a = service_a(
            b,
            TraceHeadersLayer::new().tracer_provider(&p),
            PropagateTraceHeadersLayer::instrument().tracer_provider(&p),
            &p,
        )
        .await;
        let seen = call(a, "plain", &[("b3", decision)]).await;
        let spans = exporter.get_finished_spans().unwrap();
        if decision == "0" {
            assert!(spans.is_empty(), "the caller said no: {spans:#?}");
            // The decision travels on, with no span id.
            assert_eq!(seen[0].get("b3").map(String::as_str), Some("0"), "{seen:?}");
            assert!(!seen[0].contains_key("x-b3-spanid"), "{seen:?}");
            assert!(!seen[0].contains_key("traceparent"), "{seen:?}");
        } else {
            // A new trace, sampled: A's server span is its root, the call names A's client
            // span, and both are exported.
            let server = one(&spans, "a");
            let client = one(&spans, "a-client");
            assert_eq!(server.parent_span_id, opentelemetry::trace::SpanId::INVALID);
            assert_eq!(client.parent_span_id, server.span_context.span_id());
            assert_eq!(
                seen[0]["x-b3-traceid"],
                server.span_context.trace_id().to_string()
            );
            assert_eq!(seen[0]["x-b3-spanid"], id(client));
            assert_eq!(seen[0]["x-b3-parentspanid"], id(server));
            assert_eq!(seen[0]["x-b3-sampled"], "1");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_semantics_without_presets_joins_from_the_first_request() {
    // No `PresetIdGenerator`: the server span cannot reuse the caller's id, so it is the
    // caller's child, from the very first request a layer sees, whose caller is a root.
    let exporter = InMemorySpanExporter::default();
    let p = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let shared = b3_propagation::Propagator::builder()
        .span_semantics(b3_propagation::SpanSemantics::Shared)
        .build();
    let b = service_b(TraceHeadersLayer::new().without_spans()).await;
    let a = service_a(
        b,
        TraceHeadersLayer::new()
            .propagator(shared.clone())
            .tracer_provider(&p),
        PropagateTraceHeadersLayer::instrument()
            .propagator(shared)
            .tracer_provider(&p),
        &p,
    )
    .await;
    let root_caller = &[
        ("x-b3-traceid", CALLER_TRACE),
        ("x-b3-spanid", CALLER_SPAN),
        ("x-b3-sampled", "1"),
    ];
    for request in 1..=2 {
        let seen = call(a, "plain", root_caller).await;
        let spans = exporter.get_finished_spans().unwrap();
        let server = one(&spans, "a");
        let client = one(&spans, "a-client");
        assert_eq!(
            server.parent_span_id.to_string(),
            CALLER_SPAN,
            "request {request}"
        );
        assert_eq!(client.parent_span_id, server.span_context.span_id());
        assert_headers_name(&seen[0], client);
        assert_joined(&spans);
        exporter.reset();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_follows_the_servers_deferred_decision() {
    // A headers-only server told to deny callers that did not decide; the client layer's
    // tracer follows that decision: it reports nothing, and the call names the caller's span.
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter, Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let b = service_b(TraceHeadersLayer::new().without_spans()).await;
    let a = service_a(
        b,
        TraceHeadersLayer::new()
            .without_spans()
            .deferred_sampling(b3_propagation::Sampling::Deny),
        PropagateTraceHeadersLayer::instrument().tracer_provider(&p),
        &p,
    )
    .await;
    let deferred = &[("x-b3-traceid", CALLER_TRACE), ("x-b3-spanid", CALLER_SPAN)];
    let seen = call(a, "plain", deferred).await;
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    assert_eq!(seen[0]["x-b3-traceid"], CALLER_TRACE);
    assert_eq!(seen[0]["x-b3-spanid"], CALLER_SPAN);
    assert!(!seen[0].contains_key("x-b3-sampled"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_names_the_span_a_decision_alone_started() {
    // A caller sends only its decision (`b3: 1`, as `curl -H 'b3: 1'` does to force a trace);
    // the server layer reports a span, which starts the trace. Forward mode's calls name that
    // span: re-sending `b3: 1` would make the next hop start a trace of its own.
    let exporter = InMemorySpanExporter::default();
    let p = provider(&exporter, Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let b = service_b(TraceHeadersLayer::new().without_spans()).await;
    let a = service_a(
        b,
        TraceHeadersLayer::new().tracer_provider(&p),
        PropagateTraceHeadersLayer::forward(),
        &p,
    )
    .await;
    let seen = call(a, "plain", &[("b3", "1")]).await;
    let spans = exporter.get_finished_spans().unwrap();
    let server = one(&spans, "a");
    let b3 = &seen[0]["b3"];
    assert_eq!(
        b3,
        &format!(
            "{}-{}-1",
            server.span_context.trace_id(),
            server.span_context.span_id()
        ),
        "{seen:?}"
    );
}
