//! One request through a server layer whose handler makes one outgoing call through a client
//! layer, all in-process (no sockets), side by side with the anchors in one run:
//! `cargo bench -p benches --bench layers`.
//!
//! - `bare`: the same handler and downstream `service_fn`s, boxed and mapped as the layered
//!   configurations are, with the identity layer where theirs go;
//! - `ours_forward`: `TraceHeadersLayer` + `PropagateTraceHeadersLayer::forward()`, headers only
//!   (`without_spans`);
//! - `ours_instrument`: the same in instrument mode with a server and a client span through an
//!   OpenTelemetry SDK provider (always-on sampler, no exporter), as `tower_otel` below;
//! - `ours_instrument_metrics`: the same, also recording the request in
//!   `http_server_request_duration_seconds` with an exemplar (feature `metrics`): the metrics'
//!   per-request cost is the difference to `ours_instrument`;
//! - `tower_http_request_id`: tower-http's `SetRequestId` + `PropagateRequestId` (server side
//!   only — it cannot reach outgoing calls);
//! - `tower_otel`: tower-otel's HTTP server and client layers over `tracing-opentelemetry` and
//!   an SDK tracer (always-on sampler, no exporter) with the W3C propagator.
//!
//! The request is what Envoy delivers: ten ordinary headers, `x-request-id` and B3.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};

use benches::{Svc, downstream, envoy_headers, handler};

fn roundtrip(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    // One SDK provider (always-on sampler, no exporter) for every configuration with spans:
    // tower-otel through tracing-opentelemetry (with a global propagator), ours directly.
    use opentelemetry::trace::TracerProvider as _;
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("bench")));
        let _ = tracing::subscriber::set_global_default(subscriber);
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
    }

    let bare = benches::bare();
    let ours = benches::layered;
    // Headers only: no spans.
    let ours_forward = ours(
        TraceHeadersLayer::new().without_spans(),
        PropagateTraceHeadersLayer::forward().without_spans(),
    );
    // A server span and a client span, through the same SDK provider as tower-otel.
    let ours_instrument = ours(
        TraceHeadersLayer::new().tracer_provider(&provider),
        PropagateTraceHeadersLayer::instrument().tracer_provider(&provider),
    );
    // The same, recording the request-duration histogram with an exemplar (feature `metrics`).
    let ours_instrument_metrics = {
        let mut registry = prometheus_client::registry::Registry::default();
        let metrics = tower_trace_headers::metrics::ServerMetrics::new();
        metrics.register(&mut registry);
        ours(
            TraceHeadersLayer::new()
                .tracer_provider(&provider)
                .metrics(metrics),
            PropagateTraceHeadersLayer::instrument().tracer_provider(&provider),
        )
    };
    let tower_http: Svc = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .layer(tower_http::request_id::SetRequestIdLayer::x_request_id(
                tower_http::request_id::MakeRequestUuid,
            ))
            .layer(tower_http::request_id::PropagateRequestIdLayer::x_request_id())
            .service(handler(downstream())),
    );
    let tower_otel: Svc = {
        let client = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(tower_otel::trace::HttpLayer::client(tracing::Level::INFO))
                .service(downstream()),
        );
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(tower_otel::trace::HttpLayer::server(tracing::Level::INFO))
                .service(handler(client)),
        )
    };

    let template = envoy_headers(&[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
        (
            "traceparent",
            "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
        ),
    ]);
    let request = || {
        let mut r = Request::new(());
        *r.headers_mut() = template.clone();
        r
    };
    let mut g = c.benchmark_group("layer_roundtrip");
    for (name, svc) in [
        ("bare", bare),
        ("ours_forward", ours_forward),
        ("ours_instrument", ours_instrument),
        ("ours_instrument_metrics", ours_instrument_metrics),
        ("tower_http_request_id", tower_http),
        ("tower_otel", tower_otel),
    ] {
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| {
                let mut svc = svc.clone();
                let req = request();
                async move {
                    let svc = svc.ready().await.expect("ready");
                    black_box(svc.call(req).await.expect("infallible"))
                }
            });
        });
    }
    g.finish();
}

criterion_group!(benches, roundtrip);
criterion_main!(benches);
