//! A fixed number of extracts of the request Envoy delivers (ten ordinary headers,
//! `x-request-id` and B3 multi), injects, or round trips through the layers, for an
//! instruction counter, whose counts do not move with the
//! load of a shared machine as timings do:
//!
//! ```text
//! cargo bench -p benches --bench instructions --no-run
//! valgrind --tool=callgrind target/release/deps/instructions-<hash> leaf 20000
//! valgrind --tool=callgrind target/release/deps/instructions-<hash> forward 20000
//! ```
//!
//! (the same for `inject` and `inject_otel`, 20 000; `bare`, `layers`, `instrument` and
//! `instrument_global`, 10 000)
//!
//! Divide "Collected" by the count. `leaf`: the extract alone (what a service that makes no
//! call pays; the request id is read, as the server layer does); `forward`: the extract and
//! one forwarded call's headers (the rest of the context decoded); `inject`: B3 multi inject
//! of a sampled span with a parent into a cleared map, `inject_otel` the same context through
//! `opentelemetry-propagator-b3` (which does not send the parent); `layers`: `layers.rs`'s
//! `ours_forward` round trip (a server layer whose handler makes one call through a client
//! layer, headers only, in-process), `instrument` the same in instrument mode (a server and a
//! client span through an OpenTelemetry SDK provider, always-on sampler, a batch processor over
//! an exporter that discards, as the wire bench, its queue large enough to hold every span
//! until shutdown), `instrument_global` the same through the global provider (the layers'
//! default tracer, looked up for each span), `bare` the same without layers. Without arguments (as
//! `cargo bench` runs it) it does 1 000 of each and prints nothing to compare.
#![allow(missing_docs)]

use std::hint::black_box;

use b3_propagation::Propagator;
use http::{HeaderMap, Request};
use tower::{Service, ServiceExt};
use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};

use benches::envoy_headers;

/// What the round trip runs: no layer, the layers headers only, or in instrument mode.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Layers {
    Bare,
    Forward,
    Instrument,
    /// Instrument mode through the global provider (the layers' default tracer).
    InstrumentGlobal,
}

/// Discards every span (what is counted is the spans' cost, not an exporter's).
#[derive(Debug)]
struct Discard;

impl opentelemetry_sdk::trace::SpanExporter for Discard {
    async fn export(
        &self,
        _batch: Vec<opentelemetry_sdk::trace::SpanData>,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        Ok(())
    }
}

fn roundtrip(layers: Layers, n: u64) {
    // As the wire bench: always-on sampler, a batch processor over an exporter that discards;
    // its queue holds every span of the run and exports them at shutdown, so the count does
    // not depend on when its thread runs (under callgrind, rarely: a full queue would drop).
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};
    let room = usize::try_from(2 * n + 16).unwrap_or(usize::MAX);
    let processor = BatchSpanProcessor::builder(Discard)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(room)
                .with_max_export_batch_size(room)
                .with_scheduled_delay(std::time::Duration::from_secs(3600))
                .build(),
        )
        .build();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    let (server, client) = match layers {
        Layers::Bare => (None, None),
        Layers::Forward => (
            Some(TraceHeadersLayer::new().without_spans()),
            Some(PropagateTraceHeadersLayer::forward().without_spans()),
        ),
        Layers::Instrument => (
            Some(TraceHeadersLayer::new().tracer_provider(&provider)),
            Some(PropagateTraceHeadersLayer::instrument().tracer_provider(&provider)),
        ),
        Layers::InstrumentGlobal => {
            opentelemetry::global::set_tracer_provider(provider.clone());
            (
                Some(TraceHeadersLayer::new()),
                Some(PropagateTraceHeadersLayer::instrument()),
            )
        }
    };
    let svc = match (server, client) {
        (Some(server), Some(client)) => benches::layered(server, client),
        _ => benches::bare(),
    };
    let template = request();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for _ in 0..n {
            let mut req = Request::new(());
            *req.headers_mut() = template.clone();
            let mut svc = svc.clone();
            let svc = svc.ready().await.expect("ready");
            black_box(svc.call(req).await.expect("infallible"));
        }
    });
    let _ = provider.shutdown();
}

/// The B3 multi request: [`benches::ENVOY`] and three `x-b3-*` headers.
fn request() -> HeaderMap {
    envoy_headers(&[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ])
}

fn run(mode: &str, n: u64) {
    let headers = request();
    let p = Propagator::default();
    let mut out = HeaderMap::with_capacity(32);
    for _ in 0..n {
        let cx = p.extract(black_box(&headers));
        black_box(cx.request_id());
        if mode == "forward" {
            out.clear();
            p.forward(&cx, &mut out);
            black_box(&out);
        }
        black_box(cx);
    }
}

/// B3 multi inject of a sampled span with a parent into a cleared map, as the `propagation`
/// bench's `b3_multi_inject` group.
fn inject(n: u64) {
    let span = b3_propagation::codec::b3_single::decode(
        b"463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1-0020000000000001",
    )
    .expect("valid");
    let p = Propagator::builder()
        .inject([b3_propagation::ContextFormat::B3Multi])
        .build();
    let empty = b3_propagation::RequestContext::new();
    let mut out = HeaderMap::with_capacity(32);
    for _ in 0..n {
        out.clear();
        p.inject(black_box(&span), &empty, &mut out);
        black_box(&out);
    }
}

/// The same inject through `opentelemetry-propagator-b3` (the `propagation` bench's `otel`),
/// for a ratio that does not move with the machine's load.
fn inject_otel(n: u64) {
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
    let span = SpanContext::new(
        TraceId::from_hex("463ac35c9f6413ad48485a3953bb6124").expect("trace id"),
        SpanId::from_hex("a2fb4a1d1a96d312").expect("span id"),
        TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(span);
    let otel = opentelemetry_propagator_b3::Propagator::with_encoding(
        opentelemetry_propagator_b3::B3Encoding::MultipleHeader,
    );
    let mut out = HeaderMap::with_capacity(32);
    for _ in 0..n {
        out.clear();
        otel.inject_context(
            black_box(&cx),
            &mut opentelemetry_http::HeaderInjector(&mut out),
        );
        black_box(&out);
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    match (args.next(), args.next().and_then(|n| n.parse().ok())) {
        (Some(mode), Some(n)) if mode == "leaf" || mode == "forward" => run(&mode, n),
        (Some(mode), Some(n)) if mode == "inject" => inject(n),
        (Some(mode), Some(n)) if mode == "inject_otel" => inject_otel(n),
        (Some(mode), Some(n)) if mode == "bare" => roundtrip(Layers::Bare, n),
        (Some(mode), Some(n)) if mode == "layers" => roundtrip(Layers::Forward, n),
        (Some(mode), Some(n)) if mode == "instrument" => roundtrip(Layers::Instrument, n),
        (Some(mode), Some(n)) if mode == "instrument_global" => {
            roundtrip(Layers::InstrumentGlobal, n);
        }
        _ => {
            run("leaf", 1_000);
            run("forward", 1_000);
            inject(1_000);
            inject_otel(1_000);
            roundtrip(Layers::Bare, 1_000);
            roundtrip(Layers::Forward, 1_000);
            roundtrip(Layers::Instrument, 1_000);
            // Last: it sets the global provider.
            roundtrip(Layers::InstrumentGlobal, 1_000);
        }
    }
}
