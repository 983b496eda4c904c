//! Extract / inject side by side with the crates people use today, in one run:
//! `cargo bench -p benches --bench propagation`.
//!
//! - `ours`: this crate's default `Propagator` (span context only: the like-for-like call);
//! - `otel`: `opentelemetry-propagator-b3` 0.33 through `opentelemetry-http`'s
//!   `HeaderExtractor` / `HeaderInjector`, or `opentelemetry_sdk`'s `TraceContextPropagator`;
//! - `zipkin`: `http-zipkin` 1.1 (B3 groups only);
//! - `floor`: the header lookups the default propagator makes for that input, no parsing.
//!
//! Every input is a realistic `HeaderMap` as Envoy delivers it: `x-request-id`, the tracing
//! headers and ten ordinary headers.
#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use b3_propagation::{ContextFormat, Propagator, RequestContext, header};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};

fn envoy_request(tracing: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(32);
    for (k, v) in benches::ENVOY.iter().chain(tracing) {
        let value =
            HeaderValue::from_maybe_shared(Bytes::from_static(v.as_bytes())).expect("valid");
        h.append(HeaderName::from_static(k), value);
    }
    h
}

const MULTI: [(&str, &str); 4] = [
    ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
    ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ("x-b3-parentspanid", "0020000000000001"),
    ("x-b3-sampled", "1"),
];
const SINGLE: [(&str, &str); 1] = [(
    "b3",
    "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1-0020000000000001",
)];
const TRACEPARENT: [(&str, &str); 1] = [(
    "traceparent",
    "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
)];

fn extract(c: &mut Criterion) {
    let ours = Propagator::default();
    let otel_b3 = opentelemetry_propagator_b3::Propagator::new();
    let otel_w3c = opentelemetry_sdk::propagation::TraceContextPropagator::new();

    let multi = envoy_request(&MULTI);
    let mut g = c.benchmark_group("b3_multi_extract");
    g.bench_function("ours", |b| {
        b.iter(|| ours.extract_span(black_box(&multi), |_| {}));
    });
    g.bench_function("otel", |b| {
        b.iter(|| otel_b3.extract(&HeaderExtractor(black_box(&multi))));
    });
    g.bench_function("zipkin", |b| {
        b.iter(|| http_zipkin::get_trace_context(black_box(&multi)));
    });
    g.bench_function("floor", |b| {
        b.iter(|| {
            let h = black_box(&multi);
            (
                h.get(&header::B3),
                h.get(&header::X_B3_TRACE_ID),
                h.get(&header::X_B3_SPAN_ID),
                h.get(&header::X_B3_PARENT_SPAN_ID),
                h.get(&header::X_B3_SAMPLED),
                h.get(&header::X_B3_FLAGS),
            )
        });
    });
    g.finish();

    let single = envoy_request(&SINGLE);
    let mut g = c.benchmark_group("b3_single_extract");
    g.bench_function("ours", |b| {
        b.iter(|| ours.extract_span(black_box(&single), |_| {}));
    });
    g.bench_function("otel", |b| {
        b.iter(|| otel_b3.extract(&HeaderExtractor(black_box(&single))));
    });
    g.bench_function("zipkin", |b| {
        b.iter(|| http_zipkin::get_trace_context(black_box(&single)));
    });
    g.bench_function("floor", |b| b.iter(|| black_box(&single).get(&header::B3)));
    g.finish();

    let tp = envoy_request(&TRACEPARENT);
    let mut g = c.benchmark_group("traceparent_extract");
    g.bench_function("ours", |b| {
        b.iter(|| ours.extract_span(black_box(&tp), |_| {}));
    });
    g.bench_function("otel", |b| {
        b.iter(|| otel_w3c.extract(&HeaderExtractor(black_box(&tp))));
    });
    g.bench_function("floor", |b| {
        b.iter(|| {
            let h = black_box(&tp);
            let mut all = h.get_all(&header::TRACEPARENT).iter();
            (
                h.get(&header::B3),
                h.get(&header::X_B3_TRACE_ID),
                h.get(&header::X_B3_SPAN_ID),
                h.get(&header::X_B3_PARENT_SPAN_ID),
                h.get(&header::X_B3_SAMPLED),
                h.get(&header::X_B3_FLAGS),
                all.next(),
                all.next(),
            )
        });
    });
    g.finish();

    // Not a comparison: the full extract. `ours_*`: what a service that makes no call pays
    // (the tracing headers captured, span, tracestate and request id decoded); `*_then_rest`:
    // the rest decoded too (baggage, fields, opaque headers, the forward set), as the first
    // forwarded call does.
    let mut g = c.benchmark_group("full_extract");
    for (name, headers) in [("b3_multi", &multi), ("traceparent", &tp)] {
        g.bench_function(format!("ours_{name}"), |b| {
            b.iter(|| ours.extract(black_box(headers)));
        });
        g.bench_function(format!("ours_{name}_then_rest"), |b| {
            b.iter(|| {
                let cx = ours.extract(black_box(headers));
                black_box(cx.errors().len());
                cx
            });
        });
    }
    g.finish();
}

fn inject(c: &mut Criterion) {
    let span = b3_propagation::codec::b3_single::decode(SINGLE[0].1.as_bytes()).expect("valid");
    let ot_span = opentelemetry::trace::SpanContext::new(
        opentelemetry::trace::TraceId::from_bytes(span.trace_id().expect("ids").to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(span.span_id().expect("ids").to_bytes()),
        opentelemetry::trace::TraceFlags::SAMPLED,
        true,
        Default::default(),
    );
    let ot_cx = opentelemetry::Context::new().with_remote_span_context(ot_span);
    let zipkin_cx = zipkin::TraceContext::builder()
        .trace_id(zipkin::TraceId::from(
            span.trace_id().expect("ids").to_bytes(),
        ))
        .span_id(zipkin::SpanId::from(
            span.span_id().expect("ids").to_bytes(),
        ))
        .parent_id(zipkin::SpanId::from(
            span.parent_span_id().expect("parent").to_bytes(),
        ))
        .sampled(true)
        .build();
    let empty = RequestContext::new();
    let ours = |f| Propagator::builder().inject([f]).build();

    let groups: [(&str, ContextFormat); 3] = [
        ("b3_multi_inject", ContextFormat::B3Multi),
        ("b3_single_inject", ContextFormat::B3Single),
        ("traceparent_inject", ContextFormat::TraceParent),
    ];
    for (name, format) in groups {
        let p = ours(format);
        let mut out = HeaderMap::with_capacity(32);
        let mut g = c.benchmark_group(name);
        g.bench_function("ours", |b| {
            b.iter(|| {
                out.clear();
                p.inject(black_box(&span), &empty, &mut out);
            });
        });
        match format {
            ContextFormat::B3Multi | ContextFormat::B3Single => {
                let encoding = if format == ContextFormat::B3Multi {
                    opentelemetry_propagator_b3::B3Encoding::MultipleHeader
                } else {
                    opentelemetry_propagator_b3::B3Encoding::SingleHeader
                };
                let otel = opentelemetry_propagator_b3::Propagator::with_encoding(encoding);
                g.bench_function("otel", |b| {
                    b.iter(|| {
                        out.clear();
                        otel.inject_context(black_box(&ot_cx), &mut HeaderInjector(&mut out));
                    });
                });
                g.bench_function("zipkin", |b| {
                    b.iter(|| {
                        out.clear();
                        if format == ContextFormat::B3Multi {
                            http_zipkin::set_trace_context(black_box(zipkin_cx), &mut out);
                        } else {
                            http_zipkin::set_trace_context_single(black_box(zipkin_cx), &mut out);
                        }
                    });
                });
            }
            _ => {
                let otel = opentelemetry_sdk::propagation::TraceContextPropagator::new();
                g.bench_function("otel", |b| {
                    b.iter(|| {
                        out.clear();
                        otel.inject_context(black_box(&ot_cx), &mut HeaderInjector(&mut out));
                    });
                });
            }
        }
        g.finish();
    }
}

criterion_group!(benches, extract, inject);
criterion_main!(benches);
