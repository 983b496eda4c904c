//! With feature `opentelemetry`: server and client spans, parented correctly in child and
//! shared modes, their ids equal to the propagated headers; a failing or blocking exporter
//! never changes a response.
#![cfg(feature = "opentelemetry")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use b3_propagation::{Propagator, SpanSemantics};
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData, SpanExporter};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::otel::PresetIdGenerator;
use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};

type Echo = BTreeMap<String, String>;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// B (server layer) echoes its headers; A (server + client layers) calls B once.
async fn mesh(provider: &SdkTracerProvider, semantics: SpanSemantics) -> SocketAddr {
    let b = serve(
        Router::new()
            .route(
                "/echo",
                get(|h: HeaderMap| async move {
                    Json(
                        h.iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                            .collect::<Echo>(),
                    )
                }),
            )
            .layer(
                TraceHeadersLayer::new()
                    .propagator(Propagator::builder().span_semantics(semantics).build())
                    .tracer_provider(provider),
            ),
    )
    .await;
    let client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(provider))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    serve(
        Router::new()
            .route(
                "/",
                get(move || {
                    let mut client = client.clone();
                    async move {
                        let req = Request::get(format!("http://{b}/echo"))
                            .body(Empty::new())
                            .unwrap();
                        let resp = client.ready().await.unwrap().call(req).await.unwrap();
                        let body = resp.into_body().collect().await.unwrap().to_bytes();
                        Json(serde_json::from_slice::<Echo>(&body).unwrap())
                    }
                }),
            )
            .layer(
                TraceHeadersLayer::new()
                    .propagator(Propagator::builder().span_semantics(semantics).build())
                    .tracer_provider(provider),
            ),
    )
    .await
}

async fn call(a: SocketAddr, headers: &[(&'static str, &'static str)]) -> (http::StatusCode, Echo) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = Request::get(format!("http://{a}/"))
        .body(Empty::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    let resp = client.request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

fn provider(exporter: InMemorySpanExporter) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_id_generator(PresetIdGenerator::default())
        .build()
}

/// The layers' spans all carry this crate's scope: a hop's span is told by its kind and the
/// path it served (`url.path`) or called (`url.full`).
fn find<'a>(spans: &'a [SpanData], kind: SpanKind, path: &str) -> &'a SpanData {
    let at = |s: &SpanData| {
        s.attributes.iter().any(|kv| match kv.key.as_str() {
            "url.path" => kv.value.as_str() == path,
            "url.full" => kv.value.as_str().ends_with(path),
            _ => false,
        })
    };
    spans
        .iter()
        .find(|s| s.span_kind == kind && at(s))
        .unwrap_or_else(|| panic!("no {kind:?} span at {path}: {spans:#?}"))
}

const INBOUND: &[(&str, &str)] = &[
    ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
    ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ("x-b3-parentspanid", "0020000000000001"),
    ("x-b3-sampled", "1"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_mode_spans_are_parented_and_match_the_headers() {
    let exporter = InMemorySpanExporter::default();
    let provider = provider(exporter.clone());
    let a = mesh(&provider, SpanSemantics::Child).await;
    let (status, at_b) = call(a, INBOUND).await;
    assert!(status.is_success());
    let spans = exporter.get_finished_spans().unwrap();
    let a_server = find(&spans, SpanKind::Server, "/");
    let a_client = find(&spans, SpanKind::Client, "/echo");
    let b_server = find(&spans, SpanKind::Server, "/echo");

    let trace = a_server.span_context.trace_id().to_string();
    assert_eq!(
        trace, "463ac35c9f6413ad48485a3953bb6124",
        "remote parent applied: one trace id"
    );
    assert_eq!(a_server.parent_span_id.to_string(), "a2fb4a1d1a96d312");
    assert!(a_server.parent_span_is_remote);
    assert_eq!(a_client.parent_span_id, a_server.span_context.span_id());
    assert_eq!(b_server.parent_span_id, a_client.span_context.span_id());
    for s in [a_client, b_server] {
        assert_eq!(s.span_context.trace_id().to_string(), trace);
    }
    // The headers B received name A's client span.
    assert_eq!(
        at_b["x-b3-spanid"],
        a_client.span_context.span_id().to_string()
    );
    assert_eq!(
        at_b["x-b3-parentspanid"],
        a_server.span_context.span_id().to_string()
    );
    // No route hook on A: the method alone, never the raw path.
    assert_eq!(a_server.name, "GET");
    let method = a_server
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "http.request.method")
        .unwrap();
    assert_eq!(method.value.as_str(), "GET");
    let status = a_server
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "http.response.status_code")
        .unwrap();
    assert_eq!(status.value, opentelemetry::Value::I64(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_server_span_reuses_the_callers_span_id() {
    let exporter = InMemorySpanExporter::default();
    let provider = provider(exporter.clone());
    let a = mesh(&provider, SpanSemantics::Shared).await;
    let (_, at_b) = call(a, INBOUND).await;
    let spans = exporter.get_finished_spans().unwrap();
    let a_server = find(&spans, SpanKind::Server, "/");
    let a_client = find(&spans, SpanKind::Client, "/echo");
    let b_server = find(&spans, SpanKind::Server, "/echo");
    // Zipkin shared span: the server half has the caller's id and the caller's parent.
    assert_eq!(
        a_server.span_context.span_id().to_string(),
        "a2fb4a1d1a96d312"
    );
    assert_eq!(a_server.parent_span_id.to_string(), "0020000000000001");
    assert_eq!(a_client.parent_span_id, a_server.span_context.span_id());
    // B shares A's client span.
    assert_eq!(
        b_server.span_context.span_id(),
        a_client.span_context.span_id()
    );
    assert_eq!(
        at_b["x-b3-spanid"],
        a_client.span_context.span_id().to_string()
    );
}

#[derive(Debug)]
struct Failing;

impl SpanExporter for Failing {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Err(OTelSdkError::InternalFailure("collector down".into()))
    }
}

#[derive(Debug)]
struct Blocking;

impl SpanExporter for Blocking {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        std::thread::sleep(Duration::from_secs(2));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_or_blocking_exporters_do_not_change_responses() {
    // Reference: no spans at all.
    let baseline = {
        let provider = SdkTracerProvider::builder().build();
        let a = mesh(&provider, SpanSemantics::Child).await;
        call(a, INBOUND).await
    };
    for (name, provider) in [
        (
            "failing",
            SdkTracerProvider::builder()
                .with_simple_exporter(Failing)
                .build(),
        ),
        (
            "blocking",
            SdkTracerProvider::builder()
                .with_batch_exporter(Blocking)
                .build(),
        ),
    ] {
        let a = mesh(&provider, SpanSemantics::Child).await;
        let start = Instant::now();
        for _ in 0..20 {
            let (status, at_b) = call(a, INBOUND).await;
            assert_eq!(status, baseline.0, "{name}");
            assert_eq!(at_b["x-b3-traceid"], baseline.1["x-b3-traceid"], "{name}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{name}: 20 requests took {:?}",
            start.elapsed()
        );
        drop(provider);
    }
}

/// One request carrying trace ids with no sampling state, through `layer`: the headers the
/// handler's outgoing call carries, written by the client steps the layers and interceptors
/// share (instrument mode, no client span of its own).
async fn deferred_call(layer: TraceHeadersLayer) -> Echo {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                let mut headers = HeaderMap::new();
                tower_trace_headers::hop::inject(
                    &b3_propagation::Propagator::default(),
                    tower_trace_headers::Mode::Instrument,
                    tower_trace_headers::RequestTrace::current().as_ref(),
                    &mut headers,
                );
                Json(
                    headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
                        .collect::<Echo>(),
                )
            }),
        )
        .layer(layer);
    let a = serve(app).await;
    let (status, echo) = call(
        a,
        &[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ],
    )
    .await;
    assert!(status.is_success());
    echo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferred_sampling_is_this_hops_decision() {
    // Default: a caller's ids without a decision are traced (the SDK's ParentBased sampler
    // would otherwise drop them), and the decision travels on.
    let exporter = InMemorySpanExporter::default();
    let p = provider(exporter.clone());
    let sent = deferred_call(TraceHeadersLayer::new().tracer_provider(&p)).await;
    assert_eq!(sent["x-b3-sampled"], "1");
    let spans = exporter.get_finished_spans().unwrap();
    let server = find(&spans, SpanKind::Server, "/");
    assert_eq!(
        server.span_context.trace_id().to_string(),
        "463ac35c9f6413ad48485a3953bb6124"
    );
    assert_eq!(server.parent_span_id.to_string(), "a2fb4a1d1a96d312");
    // The call names the exported server span.
    assert_eq!(
        sent["x-b3-spanid"],
        server.span_context.span_id().to_string()
    );

    // Deny: OpenTelemetry's own reading; nothing recorded, "not sampled" travels on.
    let exporter = InMemorySpanExporter::default();
    let p = provider(exporter.clone());
    let layer = TraceHeadersLayer::new()
        .tracer_provider(&p)
        .deferred_sampling(b3_propagation::Sampling::Deny);
    let sent = deferred_call(layer).await;
    assert_eq!(sent["x-b3-sampled"], "0");
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    // Nothing reported here: the call names the caller's span, with this hop's decision.
    assert_eq!(sent["x-b3-spanid"], "a2fb4a1d1a96d312");
}

#[tokio::test(flavor = "current_thread")]
async fn recorded_baggage_is_a_server_span_attribute() {
    // The chosen keys, as received and as the application changes them; other keys never.
    let exporter = InMemorySpanExporter::default();
    let p = provider(exporter.clone());
    let svc = ServiceBuilder::new()
        .layer(
            TraceHeadersLayer::new()
                .tracer_provider(&p)
                .record_baggage(["user"]),
        )
        .service_fn(|_req: Request<()>| async move {
            let trace = tower_trace_headers::RequestTrace::current().unwrap();
            trace.set_baggage("user", "bob").unwrap();
            trace.set_baggage("other", "not recorded").unwrap();
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<
                bytes::Bytes,
            >::new()))
        });
    let req = Request::builder()
        .header("b3", "48485a3953bb6124-a2fb4a1d1a96d312-1")
        .header("baggage", "user=alice,team=web")
        .body(())
        .unwrap();
    drop(svc.oneshot(req).await.unwrap());
    let spans = exporter.get_finished_spans().unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    let recorded: Vec<(String, String)> = server
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str().starts_with("baggage."))
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    // In order: as received, then each change (the last value is the span's).
    assert_eq!(
        recorded.first().unwrap(),
        &("baggage.user".into(), "alice".into())
    );
    assert_eq!(
        recorded.last().unwrap(),
        &("baggage.user".into(), "bob".into())
    );
    assert!(
        recorded.iter().all(|(k, _)| k == "baggage.user"),
        "{recorded:?}"
    );
}

/// `b3_propagation::otel::OtelPropagator` with the SDK's default sampler: what a span started
/// under each extracted context makes the propagator send on.
#[test]
fn the_otel_propagator_keeps_the_callers_decision_through_a_local_span() {
    use opentelemetry::propagation::TextMapPropagator;
    use opentelemetry::trace::{TraceContextExt, Tracer, TracerProvider};
    use std::collections::HashMap;
    let exporter = InMemorySpanExporter::default();
    let p = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let tracer = p.tracer("app");
    let propagator = b3_propagation::otel::OtelPropagator::new(Propagator::default());
    let through_a_span = |pairs: &[(&str, &str)]| {
        let incoming: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let cx = propagator.extract(&incoming);
        let span = tracer.start_with_context("work", &cx);
        let cx = cx.with_span(span);
        let mut out = HashMap::new();
        propagator.inject_context(&cx, &mut out);
        cx.span().end();
        out
    };
    const T: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const S: &str = "e457b5a2e4d86bd1";
    // Span ids named here (not the caller's), to be found among the exported spans.
    let mut named: Vec<String> = Vec::new();
    // The caller's deny alone: the local root follows it, and `0` goes on.
    let out = through_a_span(&[("b3", "0")]);
    assert_eq!(
        out.get("x-b3-sampled").map(String::as_str),
        Some("0"),
        "{out:?}"
    );
    assert!(
        !out.contains_key("x-b3-spanid"),
        "a span nobody reports: {out:?}"
    );
    // The caller's accept alone: a sampled trace starts here and names the reported span.
    let out = through_a_span(&[("b3", "1")]);
    assert_eq!(out["x-b3-sampled"], "1", "{out:?}");
    named.push(out["x-b3-spanid"].clone());
    // Debug alone stays debug, and names the reported span too.
    let out = through_a_span(&[("b3", "d")]);
    assert_eq!(
        out.get("x-b3-flags").map(String::as_str),
        Some("1"),
        "{out:?}"
    );
    named.push(out["x-b3-spanid"].clone());
    // Ids without a decision: nothing reported here, the caller's span goes on undecided
    // (not turned into a deny naming a span nobody exports).
    let out = through_a_span(&[("x-b3-traceid", T), ("x-b3-spanid", S)]);
    assert_eq!(out["x-b3-traceid"], T, "{out:?}");
    assert_eq!(out["x-b3-spanid"], S, "{out:?}");
    assert!(!out.contains_key("x-b3-sampled"), "{out:?}");
    // A sampled caller: the reported child is named.
    let out = through_a_span(&[
        ("x-b3-traceid", T),
        ("x-b3-spanid", S),
        ("x-b3-sampled", "1"),
    ]);
    assert_eq!(out["x-b3-traceid"], T);
    assert_ne!(out["x-b3-spanid"], S);
    assert_eq!(out["x-b3-sampled"], "1");
    named.push(out["x-b3-spanid"].clone());
    // A caller's random-trace-id flag goes on through the SDK's span (W3C: it MUST be set in
    // every outgoing `traceparent` of the same trace id), sampled or not.
    for (flags, want) in [("03", "03"), ("02", "02"), ("01", "01")] {
        let out = through_a_span(&[("traceparent", &format!("00-{T}-{S}-{flags}"))]);
        let sent = &out["traceparent"];
        assert!(sent.starts_with(&format!("00-{T}-")), "{out:?}");
        assert!(sent.ends_with(&format!("-{want}")), "{flags}: {out:?}");
        if want == "03" || want == "01" {
            named.push(sent[36..52].to_owned());
        }
    }
    // Every span named here was exported.
    let exported: Vec<String> = exporter
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(|s| s.span_context.span_id().to_string())
        .collect();
    for id in &named {
        assert!(
            exported.contains(id),
            "{id} named, not exported: {exported:?}"
        );
    }
}

/// A sampler that drops server spans it decides itself and samples every other span: a
/// ratio sampler at its worst, deterministically.
#[derive(Clone, Debug)]
struct DropServerSpans;

impl opentelemetry_sdk::trace::ShouldSample for DropServerSpans {
    fn should_sample(
        &self,
        _: Option<&opentelemetry::Context>,
        _: opentelemetry::trace::TraceId,
        _: &str,
        kind: &SpanKind,
        _: &[opentelemetry::KeyValue],
        _: &[opentelemetry::trace::Link],
    ) -> opentelemetry_sdk::trace::SamplingResult {
        use opentelemetry_sdk::trace::SamplingDecision;
        opentelemetry_sdk::trace::SamplingResult {
            decision: if *kind == SpanKind::Server {
                SamplingDecision::Drop
            } else {
                SamplingDecision::RecordAndSample
            },
            attributes: Vec::new(),
            trace_state: opentelemetry::trace::TraceState::default(),
        }
    }
}

/// An instrument-mode client layer under `provider` in front of a backend that answers at
/// once, and the headers of the last call it sent.
fn recording_client(
    provider: &SdkTracerProvider,
) -> (
    impl Service<
        Request<Empty<Bytes>>,
        Response = http::Response<impl http_body::Body>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
    std::sync::Arc<std::sync::Mutex<HeaderMap>>,
) {
    let sent: std::sync::Arc<std::sync::Mutex<HeaderMap>> = std::sync::Arc::default();
    let client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(provider))
        .service(tower::service_fn({
            let sent = sent.clone();
            move |req: Request<Empty<Bytes>>| {
                *sent.lock().unwrap() = req.headers().clone();
                async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
                }
            }
        }));
    (client, sent)
}

/// One request through a server layer whose handler injects the current OpenTelemetry
/// context with `OtelPropagator` (as `opentelemetry-http` or a message producer would) and
/// makes one call through the client layer: what each of the two sent.
async fn dropped_server_span(
    sampler: impl opentelemetry_sdk::trace::ShouldSample + 'static,
    received: &[(&'static str, &'static str)],
) -> (Echo, HeaderMap, Vec<SpanData>) {
    use opentelemetry::propagation::TextMapPropagator;
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(sampler)
        .build();
    let injected: Arc<Mutex<Echo>> = Arc::default();
    let (client, sent) = recording_client(&provider);
    let handler = tower::service_fn({
        let injected = injected.clone();
        move |_: Request<Empty<Bytes>>| {
            let injected = injected.clone();
            let client = client.clone();
            async move {
                let propagator = b3_propagation::otel::OtelPropagator::new(Propagator::default());
                let mut out: HashMap<String, String> = HashMap::new();
                propagator.inject_context(&opentelemetry::Context::current(), &mut out);
                *injected.lock().unwrap() = out.into_iter().collect();
                let call = Request::get("http://backend/next")
                    .body(Empty::new())
                    .unwrap();
                let _ = client.oneshot(call).await;
                Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
            }
        }
    });
    let server = ServiceBuilder::new()
        .layer(TraceHeadersLayer::new().tracer_provider(&provider))
        .service(handler);
    let mut req = Request::get("http://frontend/").body(Empty::new()).unwrap();
    for (k, v) in received {
        req.headers_mut().insert(*k, v.parse().unwrap());
    }
    let response = server.oneshot(req).await.unwrap();
    response.into_body().collect().await.unwrap();
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    let injected = injected.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();
    (injected, sent, spans)
}

/// A server span a sampler dropped is named by nobody: the application's `OtelPropagator`
/// sends the caller's context on, as the client layer does, and a root dropped here sends
/// its decision alone and starts no client span of a trace of its own per call.
#[tokio::test]
async fn a_dropped_server_span_is_named_by_nobody() {
    use opentelemetry_sdk::trace::Sampler;
    const T: &str = "80f198ee56343ba864fe8b2a57d3eff7";
    const S: &str = "e457b5a2e4d86bd1";
    let exported = |spans: &[SpanData]| -> Vec<String> {
        spans
            .iter()
            .map(|s| s.span_context.span_id().to_string())
            .collect()
    };

    // A sampled caller; the server span dropped by a sampler that ignores the parent (a
    // ratio sampler on its own). The client span is reported, under the caller's span.
    let (injected, sent, spans) = dropped_server_span(
        DropServerSpans,
        &[
            ("x-b3-traceid", T),
            ("x-b3-spanid", S),
            ("x-b3-sampled", "1"),
        ],
    )
    .await;
    assert_eq!(injected["x-b3-traceid"], T, "{injected:?}");
    assert_eq!(
        injected["x-b3-spanid"], S,
        "the caller's span: {injected:?}"
    );
    assert_eq!(injected["x-b3-sampled"], "1", "{injected:?}");
    assert_eq!(spans.len(), 1, "the client span only: {spans:#?}");
    assert_eq!(spans[0].span_kind, SpanKind::Client);
    assert_eq!(spans[0].parent_span_id.to_string(), S);
    let named = sent["x-b3-spanid"].to_str().unwrap();
    assert_eq!(exported(&spans), [named]);

    // A caller that left the decision to this hop (ids, no sampled flag): the sampler's
    // drop is the decision, and the application's propagator and the client layer send the
    // caller's span with the same one.
    let (injected, sent, spans) =
        dropped_server_span(DropServerSpans, &[("x-b3-traceid", T), ("x-b3-spanid", S)]).await;
    assert_eq!(injected["x-b3-spanid"], S, "{injected:?}");
    assert_eq!(
        injected.get("x-b3-sampled").map(String::as_str),
        Some("0"),
        "{injected:?}"
    );
    assert_eq!(spans.len(), 1, "the client span only: {spans:#?}");
    let named = sent["x-b3-spanid"].to_str().unwrap();
    assert_eq!(exported(&spans), [named]);
    assert_eq!(
        sent["x-b3-sampled"], "1",
        "the reported client span: {sent:?}"
    );

    // No caller; the root dropped by a parent-based sampler. The application's propagator
    // sends the decision alone; the call starts no trace of its own and names nobody.
    let (injected, sent, spans) =
        dropped_server_span(Sampler::ParentBased(Box::new(DropServerSpans)), &[]).await;
    assert_eq!(
        injected.get("x-b3-sampled").map(String::as_str),
        Some("0"),
        "{injected:?}"
    );
    assert!(!injected.contains_key("x-b3-spanid"), "{injected:?}");
    assert!(!injected.contains_key("traceparent"), "{injected:?}");
    assert!(spans.is_empty(), "{spans:#?}");
    assert!(sent.get("x-b3-spanid").is_none(), "{sent:?}");
    assert!(sent.get("traceparent").is_none(), "{sent:?}");
    // The client layer sends the root's decision too, so the next hop (an Envoy sidecar, a
    // parent-based sampler) drops the trace instead of starting one of its own.
    assert_eq!(
        sent.get("x-b3-sampled").map(|v| v.as_bytes()),
        Some(&b"0"[..]),
        "the root's decision: {sent:?}"
    );
}

/// Work outside any request (a job, a queue consumer) that decided not to trace: its context
/// carries the decision alone, and under it the client layer neither reports a span (a
/// parent-based sampler follows the decision) nor names one, and sends the decision on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_decision_made_by_the_application_is_followed_and_sent() {
    use b3_propagation::{RequestContext, Sampling};
    use opentelemetry_sdk::trace::Sampler;
    use tower_trace_headers::{FutureExt as _, RequestTrace};
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .build();
    let (client, sent) = recording_client(&provider);
    let mut cx = RequestContext::new();
    cx.decide_sampling(Sampling::Deny);
    let trace = RequestTrace::new(cx);
    let call = Request::get("http://backend/next")
        .body(Empty::new())
        .unwrap();
    client.oneshot(call).with_trace(trace).await.unwrap();
    let _ = provider.force_flush();
    let spans = exporter.get_finished_spans().unwrap();
    assert!(spans.is_empty(), "the decision was followed: {spans:#?}");
    let sent = sent.lock().unwrap().clone();
    assert_eq!(sent["x-b3-sampled"], "0", "{sent:?}");
    assert!(!sent.contains_key("x-b3-spanid"), "{sent:?}");
}
