//! Every case of `spec/vectors.json` (the committed copy in `tests/data/`) against the
//! library API: the `Propagator`, the codecs and the `RequestId` type. The same file also
//! drives the `trace-headers` CLI in `examples/trace-headers/tests/cli_vectors.rs`.
//!
//! A group this test does not know fails the test, so a new category cannot be skipped.

mod common;
use common::Raw;

use std::collections::BTreeSet;

use b3_propagation::baggage::{BaggageEntry, BaggageProperty};
use b3_propagation::codec::{self, baggage, grpc_trace_bin, jaeger, ot_span_context};
use b3_propagation::request_id::TraceReason;
use b3_propagation::{
    ContextFormat, Extractor, Propagator, RequestContext, RequestId, Sampling, SpanContext, SpanId,
    TraceFlags, TraceId,
};
use http::{HeaderMap, HeaderName};
use serde_json::Value;

const VECTORS: &str = include_str!("data/vectors.json");

/// A carrier for a case's `headers` object (a value or an array of values per name).
trait FromCase {
    fn from_case(headers: &Value) -> Self;
}

impl FromCase for Raw {
    fn from_case(headers: &Value) -> Self {
        let mut raw = Raw::default();
        for (name, value) in headers.as_object().into_iter().flatten() {
            let values: Vec<&str> = match value {
                Value::Array(a) => a.iter().map(|v| v.as_str().expect("str")).collect(),
                v => vec![v.as_str().expect("str")],
            };
            for v in values {
                raw.0
                    .push((name.to_ascii_lowercase(), v.as_bytes().to_vec()));
            }
        }
        raw
    }
}

fn hex(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// The vector projection of a context.
fn project(cx: &SpanContext) -> Value {
    serde_json::json!({
        "trace_id": cx.trace_id().map(|t| t.to_hex32().to_string()),
        "trace_id_64bit": cx.trace_id().is_some_and(TraceId::is_64bit),
        "span_id": cx.span_id().map(|s| s.to_string()),
        "parent_span_id": cx.parent_span_id().map(|s| s.to_string()),
        "sampling": cx.sampling().as_str(),
    })
}

fn check_expect(name: &str, got: Option<&SpanContext>, case: &Value) {
    match case.get("expect") {
        Some(expect) => {
            let got = got.unwrap_or_else(|| panic!("{name}: no context"));
            let p = project(got);
            for k in [
                "trace_id",
                "trace_id_64bit",
                "span_id",
                "parent_span_id",
                "sampling",
            ] {
                assert_eq!(p[k], expect[k], "{name}: {k}");
            }
            if let Some(flags) = expect.get("trace_flags") {
                assert_eq!(
                    got.trace_flags().to_string(),
                    flags.as_str().expect("flags"),
                    "{name}"
                );
            }
        }
        None => {
            let why = case["invalid"].as_str().expect("expect or invalid");
            assert!(got.is_none(), "{name} ({why}): got {got:?}");
        }
    }
}

/// A propagator that extracts every context format, in the CLI's order.
fn all_formats() -> Propagator {
    Propagator::builder()
        .extract([
            ContextFormat::B3Single,
            ContextFormat::B3Multi,
            ContextFormat::TraceParent,
            ContextFormat::GrpcTraceBin,
            ContextFormat::Jaeger,
        ])
        .build()
}

fn context_from(v: &Value) -> SpanContext {
    let sampling: Sampling = v["sampling"]
        .as_str()
        .unwrap_or("deferred")
        .parse()
        .expect("sampling");
    let Some(t) = hex(&v["trace_id"]) else {
        return SpanContext::sampling_only(sampling);
    };
    let t = u128::from_str_radix(&t, 16).expect("hex");
    let trace_id = if v["trace_id_64bit"] == true {
        TraceId::from_u64(t as u64)
    } else {
        TraceId::from_u128(t)
    }
    .expect("nonzero");
    let span_id: SpanId = v["span_id"]
        .as_str()
        .expect("span")
        .parse()
        .expect("span id");
    let parent = hex(&v["parent_span_id"]).map(|p| p.parse::<SpanId>().expect("parent"));
    let flags = v
        .get("trace_flags")
        .and_then(Value::as_str)
        .map_or(0, |f| u8::from_str_radix(f, 16).expect("hex"));
    SpanContext::new(trace_id, span_id)
        .with_parent(parent)
        .with_sampling(sampling)
        .with_trace_flags(TraceFlags::new(flags))
}

fn baggage_from(v: &Value) -> Vec<BaggageEntry> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|e| BaggageEntry {
            properties: e["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| BaggageProperty {
                    key: p["key"].as_str().expect("key").to_owned(),
                    value: hex(&p["value"]),
                })
                .collect(),
            ..BaggageEntry::new(
                e["key"].as_str().expect("key"),
                e["value"].as_str().expect("value"),
            )
        })
        .collect()
}

fn entries_json(entries: &[BaggageEntry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "key": e.key, "value": e.value,
                    "properties": e.properties.iter().map(|p| serde_json::json!({"key": p.key, "value": p.value})).collect::<Vec<_>>(),
                })
            })
            .collect(),
    )
}

fn check_headers(name: &str, out: &HeaderMap, case: &Value) {
    for (k, v) in case
        .get("expect_headers")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        assert_eq!(
            out.get(k).map(|h| h.to_str().expect("ascii")),
            v.as_str(),
            "{name}: {k}"
        );
    }
    for (k, _) in case
        .get("expect_header_patterns")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let v = out.get(k).unwrap_or_else(|| panic!("{name}: {k} missing"));
        let id = RequestId::parse(v.as_bytes()).expect("valid id");
        assert!(id.is_uuid() && &id.as_str()[14..15] == "4", "{name}: {id}");
    }
    for k in case
        .get("absent_headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        assert!(
            out.get(k.as_str().expect("str")).is_none(),
            "{name}: {k} must be absent"
        );
    }
}

/// Encode a context the way `encode --format` does, through the library.
fn encode(format: &str, ctx: &Value) -> HeaderMap {
    let mut out = HeaderMap::new();
    let cx = context_from(ctx);
    let bag = baggage_from(&ctx["baggage"]);
    let put = |out: &mut HeaderMap, name: &str, v: Option<http::HeaderValue>| {
        if let Some(v) = v {
            out.insert(HeaderName::from_bytes(name.as_bytes()).expect("name"), v);
        }
    };
    match format {
        "b3_single" => put(&mut out, "b3", codec::b3_single::encode(&cx)),
        "b3_multi" => codec::b3_multi::inject(&cx, &mut out),
        "traceparent" => put(&mut out, "traceparent", codec::traceparent::encode(&cx)),
        "baggage" => put(&mut out, "baggage", baggage::encode(&bag)),
        "request_id" => {
            let id = hex(&ctx["request_id"])
                .map_or_else(RequestId::generate, |s| s.parse().expect("id"));
            codec::request_id::inject(&id, &mut out);
        }
        "x_ot_span_context" => put(
            &mut out,
            "x-ot-span-context",
            ot_span_context::encode(&cx, &bag),
        ),
        "grpc_trace_bin" => put(&mut out, "grpc-trace-bin", grpc_trace_bin::encode(&cx)),
        "jaeger" => put(&mut out, "uber-trace-id", jaeger::encode(&cx)),
        other => panic!("unknown format {other}"),
    }
    out
}

/// `convert --to F` through the library: extract with a propagator, inject with another.
fn roundtrip(format: &str, headers: &Raw) -> HeaderMap {
    let mut out = HeaderMap::new();
    let inject = |f| {
        Propagator::builder()
            .inject([f])
            .request_id(false)
            .baggage(false)
            .opaque([])
            .build()
    };
    let cx: RequestContext = all_formats().extract(headers);
    let context_format = match format {
        "b3_single" => Some(ContextFormat::B3Single),
        "b3_multi" => Some(ContextFormat::B3Multi),
        "traceparent" => Some(ContextFormat::TraceParent),
        "grpc_trace_bin" => Some(ContextFormat::GrpcTraceBin),
        "jaeger" => Some(ContextFormat::Jaeger),
        _ => None,
    };
    match (context_format, format) {
        (Some(f), _) => {
            if let Some(span) = cx.remote() {
                inject(f).inject(span, &cx, &mut out);
            }
        }
        (None, "baggage") => {
            if let Some(v) = cx.baggage().to_header_value() {
                out.insert("baggage", v);
            }
        }
        (None, "request_id") => {
            let mut cx = cx;
            codec::request_id::inject(cx.ensure_request_id(), &mut out);
        }
        (None, "x_ot_span_context") => {
            if let Some(Ok(ot)) = ot_span_context::extract(headers)
                && let Some(v) = ot_span_context::encode(&ot.context, &ot.baggage)
            {
                out.insert("x-ot-span-context", v);
            }
        }
        _ => panic!("unknown format {format}"),
    }
    out
}

#[test]
fn every_vector_group_through_the_library() {
    let vectors: Value = serde_json::from_str(VECTORS).expect("vectors.json");
    let default = Propagator::default();
    let all = all_formats();
    let mut seen = BTreeSet::new();
    let mut cases = 0;
    for (group, list) in vectors.as_object().expect("object") {
        if group == "schema" {
            continue;
        }
        let list = list.as_array().expect("list");
        assert!(!list.is_empty(), "{group} is empty");
        seen.insert(group.clone());
        for case in list {
            cases += 1;
            let name = case["name"].as_str().expect("name");
            let headers = Raw::from_case(&case["headers"]);
            match group.as_str() {
                "b3_multi_extract"
                | "b3_single_extract"
                | "b3_precedence"
                | "traceparent_extract" => {
                    let cx = default.extract(&headers);
                    check_expect(name, cx.remote(), case);
                    if case.get("invalid").is_some()
                        && !case["headers"].as_object().expect("h").is_empty()
                        && !name.contains("wrong_name")
                    {
                        assert!(
                            !cx.errors().is_empty(),
                            "{name}: rejected headers are reported"
                        );
                    }
                    if let Some(v) = case.get("expect").and_then(|e| e.get("version_in")) {
                        let tp = codec::traceparent::extract(&headers)
                            .expect("present")
                            .expect("valid");
                        assert_eq!(
                            format!("{:02x}", tp.version),
                            v.as_str().expect("str"),
                            "{name}"
                        );
                    }
                }
                "tracestate" => {
                    let cx = default.extract(&headers);
                    let e = &case["expect"];
                    assert_eq!(
                        cx.source() == Some(ContextFormat::TraceParent),
                        e["traceparent_valid"] == true,
                        "{name}"
                    );
                    let kept: Vec<Value> = cx
                        .tracestate()
                        .iter()
                        .map(|(k, v)| serde_json::json!([k, v]))
                        .collect();
                    assert_eq!(Value::Array(kept), e["tracestate"], "{name}");
                    let mut out = HeaderMap::new();
                    if let Some(span) = cx.remote() {
                        Propagator::builder()
                            .inject([ContextFormat::TraceParent])
                            .build()
                            .inject(span, &cx, &mut out);
                    }
                    assert_eq!(
                        out.get("tracestate").map(|v| v.to_str().expect("ascii")),
                        e["tracestate_header_out"].as_str(),
                        "{name}"
                    );
                }
                "baggage_extract" | "prefixed_baggage_extract" => {
                    let (bag, _) = baggage::extract(&headers);
                    assert_eq!(
                        entries_json(bag.entries()),
                        case["expect"]["entries"],
                        "{name}"
                    );
                    // The propagator sees the same baggage.
                    assert_eq!(
                        default.extract(&headers).baggage().entries(),
                        bag.entries(),
                        "{name}"
                    );
                }
                "baggage_inject" => {
                    check_headers(name, &encode("baggage", &case["context"]), case);
                }
                "request_id" | "envoy_request_id" => {
                    let got = codec::request_id::extract(&headers).and_then(Result::ok);
                    assert_eq!(
                        default.extract(&headers).request_id(),
                        got.as_ref(),
                        "{name}"
                    );
                    match case.get("expect") {
                        Some(e) => {
                            let id = got.unwrap_or_else(|| panic!("{name}: no id"));
                            assert_eq!(
                                id.as_str(),
                                e["request_id"].as_str().expect("str"),
                                "{name}"
                            );
                            if let Some(info) = e.get("request_id_info") {
                                assert_eq!(
                                    id.trace_reason().as_str(),
                                    info["trace_reason"].as_str().expect("str"),
                                    "{name}"
                                );
                                assert_eq!(
                                    id.stable_sampling_value().map(u64::from),
                                    info["stable_sampling_value"].as_u64(),
                                    "{name}"
                                );
                            }
                        }
                        None => assert!(got.is_none(), "{name}"),
                    }
                }
                "envoy_request_id_library" => {
                    let id: RequestId = case["request_id"]
                        .as_str()
                        .expect("id")
                        .parse()
                        .expect("valid");
                    let reason = match case["set_reason"].as_str().expect("reason") {
                        "Sampling" => TraceReason::Sampling,
                        "ServiceForced" => TraceReason::ServiceForced,
                        "ClientForced" => TraceReason::ClientForced,
                        "NotTraceable" => TraceReason::NotTraceable,
                        other => panic!("{name}: unknown reason {other}"),
                    };
                    let out = id.with_trace_reason(reason);
                    assert_eq!(
                        out.as_str(),
                        case["expect"]["request_id_out"].as_str().expect("str"),
                        "{name}"
                    );
                    assert_eq!(out.trace_reason(), reason, "{name}");
                }
                "x_ot_span_context" => {
                    let got = ot_span_context::extract(&headers).and_then(Result::ok);
                    check_expect(name, got.as_ref().map(|o| &o.context), case);
                    if let (Some(o), Some(e)) = (&got, case.get("expect")) {
                        assert_eq!(entries_json(&o.baggage), e["entries"], "{name}");
                    }
                    // Forwarded verbatim by the propagator, valid or not.
                    let cx = default.extract(&headers);
                    let forwarded = cx.received_header(&b3_propagation::header::X_OT_SPAN_CONTEXT);
                    assert_eq!(
                        forwarded.map(|v| v.as_bytes()),
                        headers.get(&b3_propagation::header::X_OT_SPAN_CONTEXT),
                        "{name}"
                    );
                }
                "grpc_trace_bin" | "jaeger_extract" => {
                    let cx = all.extract(&headers);
                    check_expect(name, cx.remote(), case);
                }
                "b3_inject"
                | "request_id_inject"
                | "x_ot_span_context_inject"
                | "grpc_trace_bin_inject"
                | "jaeger_inject" => {
                    check_headers(
                        name,
                        &encode(case["format"].as_str().expect("format"), &case["context"]),
                        case,
                    );
                }
                "roundtrip" => {
                    check_headers(
                        name,
                        &roundtrip(case["inject_format"].as_str().expect("format"), &headers),
                        case,
                    );
                }
                other => panic!("vector group {other} is not handled by this test"),
            }
        }
    }
    let expected: BTreeSet<String> = [
        "b3_multi_extract",
        "b3_single_extract",
        "b3_precedence",
        "b3_inject",
        "traceparent_extract",
        "tracestate",
        "baggage_extract",
        "baggage_inject",
        "prefixed_baggage_extract",
        "request_id",
        "envoy_request_id",
        "envoy_request_id_library",
        "x_ot_span_context",
        "grpc_trace_bin",
        "jaeger_extract",
        "request_id_inject",
        "x_ot_span_context_inject",
        "grpc_trace_bin_inject",
        "jaeger_inject",
        "roundtrip",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(seen, expected, "a vector group is missing or new");
    assert!(cases > 250, "only {cases} cases");
}

#[test]
fn the_committed_copy_matches_the_spec() {
    // Keep tests/data/vectors.json in sync with ../shared/spec/vectors.json when it is there
    // (it is outside the repository, so CI may not have it).
    let spec =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/spec/vectors.json");
    if let Ok(text) = std::fs::read_to_string(&spec) {
        let a: Value = serde_json::from_str(&text).expect("spec json");
        let b: Value = serde_json::from_str(VECTORS).expect("copy json");
        assert_eq!(
            a,
            b,
            "tests/data/vectors.json is out of date with {}",
            spec.display()
        );
    }
}
