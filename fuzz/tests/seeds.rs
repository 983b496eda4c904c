//! Writes the committed seed corpus, `fuzz/seeds/<target>/`. Deterministic: run it again after
//! changing `b3-propagation/tests/data/vectors.json` or the payloads below, and commit the
//! result.
//!
//! ```text
//! cargo test --manifest-path fuzz/Cargo.toml --test seeds -- --ignored
//! ```
//!
//! - codec targets: every value of their header in the conformance vectors (valid and invalid
//!   cases, the inject expectations included), one file per distinct value;
//! - `b3_multi`, `propagator_*`, `cli_decode`: the vectors' headers as `name: value` lines
//!   (`cli_decode` also gets the `encode` inputs, as JSON);
//! - collector targets: the hand-made payloads below; the OTLP protobuf seeds are the OTLP
//!   JSON seeds that parse, encoded with prost.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::Value;

/// At most this many seeds per target.
const MAX_SEEDS: usize = 30;
/// No seed is larger than this.
const MAX_SEED_BYTES: usize = 4096;

/// Seeds of one target: file name → bytes, first name wins for identical bytes.
#[derive(Default)]
struct Seeds {
    files: BTreeMap<String, Vec<u8>>,
    seen: BTreeSet<Vec<u8>>,
}

impl Seeds {
    fn add(&mut self, name: &str, bytes: impl Into<Vec<u8>>) {
        let bytes = bytes.into();
        if bytes.len() > MAX_SEED_BYTES || self.files.len() >= MAX_SEEDS {
            return;
        }
        if !self.seen.insert(bytes.clone()) {
            return;
        }
        let mut name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        while self.files.contains_key(&name) {
            name.push('_');
        }
        self.files.insert(name, bytes);
    }
}

/// The values of a vector header: a string, or an array of field lines.
fn values(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// `name: value` lines for a vector's headers (names lower-cased, repeated lines kept).
fn header_text(headers: &serde_json::Map<String, Value>, only: impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if !only(&name) {
            continue;
        }
        for v in values(value) {
            out.push_str(&name);
            out.push_str(": ");
            out.push_str(&v);
            out.push('\n');
        }
    }
    out
}

fn standard_base64_decode(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)?;
        bits = (bits << 6) | u32::try_from(v).ok()?;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    Some(out)
}

const OTLP_JSON: &[(&str, &str)] = &[
    (
        "spec_example",
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},"scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0","attributes":[{"key":"my.scope.attribute","value":{"stringValue":"some scope attribute"}}]},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174","parentSpanId":"EEE19B7EC3C1B173","name":"I'm a server span","startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000","kind":2,"attributes":[{"key":"my.span.attr","value":{"stringValue":"some value"}}]}]}]}]}"#,
    ),
    (
        "client_error_events",
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"frontend"}}]},"scopeSpans":[{"scope":{"name":"tower-trace-headers"},"spans":[{"traceId":"463ac35c9f6413ad48485a3953bb6124","spanId":"a2fb4a1d1a96d312","parentSpanId":"0020000000000001","name":"GET /users","kind":3,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000250000000","attributes":[{"key":"peer.service","value":{"stringValue":"user"}},{"key":"http.response.status_code","value":{"intValue":"503"}},{"key":"retry","value":{"boolValue":true}},{"key":"ratio","value":{"doubleValue":0.5}},{"key":"raw","value":{"bytesValue":"AAEC"}},{"key":"list","value":{"arrayValue":{"values":[{"intValue":"1"},{"stringValue":"x"}]}}},{"key":"map","value":{"kvlistValue":{"values":[{"key":"k","value":{"stringValue":"v"}}]}}}],"events":[{"timeUnixNano":"1700000000100000000","name":"retry","attributes":[{"key":"attempt","value":{"intValue":"2"}}]},{"timeUnixNano":"1700000000200000000","name":"done"}],"status":{"code":2,"message":"upstream unavailable"},"droppedAttributesCount":3}]}]}]}"#,
    ),
    (
        "two_resources_64bit_internal",
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"order"}}]},"scopeSpans":[{"spans":[{"traceId":"0000000000000000463ac35c9f6413ad","spanId":"0000000000000001","name":"work","kind":1,"startTimeUnixNano":"5","endTimeUnixNano":"3","status":{"code":1}}]}]},{"resource":{},"scopeSpans":[{"spans":[{"traceId":"463ac35c9f6413ad","spanId":"00000000000000ff","parentSpanId":"0000000000000000","name":"consume","kind":5}]}]}]}"#,
    ),
    (
        "producer_consumer_peer",
        r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"item"}}]},"scopeSpans":[{"spans":[{"traceId":"80f198ee56343ba864fe8b2a57d3eff7","spanId":"e457b5a2e4d86bd1","name":"publish","kind":4,"attributes":[{"key":"server.address","value":{"stringValue":"10.0.0.7"}},{"key":"server.port","value":{"intValue":"9092"}},{"key":"error","value":{"stringValue":"false"}}]}]}]}]}"#,
    ),
    ("empty_object", "{}"),
    ("no_spans", r#"{"resourceSpans":[{"scopeSpans":[]}]}"#),
    (
        "bad_span_id",
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"0000000000000000","name":"x"}]}]}]}"#,
    ),
    (
        "bad_trace_id_hex",
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174"}]}]}]}"#,
    ),
    (
        "not_an_object",
        r#"[{"traceId":"5b8efff798038103d269b633813fc60c"}]"#,
    ),
];

const ZIPKIN_JSON: &[(&str, &str)] = &[
    (
        "envoy_server_shared",
        r#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","parentId":"0020000000000001","name":"user","kind":"SERVER","timestamp":1700000000000000,"duration":250,"localEndpoint":{"serviceName":"user-sidecar","ipv4":"10.0.0.7","port":8080},"tags":{"guid:x-request-id":"4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43","http.url":"http://user/users/1","http.status_code":"200","upstream_cluster":"local_app"},"shared":true}]"#,
    ),
    (
        "client_and_root_128",
        r#"[{"traceId":"80F198EE56343BA864FE8B2A57D3EFF7","id":"e457b5a2e4d86bd1","name":"get /","kind":"CLIENT","timestamp":"1700000000000001","duration":"12","localEndpoint":{"serviceName":"frontend"},"remoteEndpoint":{"serviceName":"user","port":80},"annotations":[{"timestamp":1700000000000005,"value":"retry"}],"debug":true},{"traceId":"80f198ee56343ba864fe8b2a57d3eff7","id":"05e3ac9a4f6e3b90","parentId":"e457b5a2e4d86bd1","name":"db","tags":{"n":1,"ok":true,"x":null}}]"#,
    ),
    (
        "nulls_and_zero_parent",
        r#"[{"traceId":"000000000000000000000000000000a1","id":"00000000000000a1","parentId":"0000000000000000","name":null,"kind":null,"timestamp":null,"duration":1.5,"localEndpoint":null,"tags":null,"annotations":null,"shared":null,"debug":null}]"#,
    ),
    ("empty_array", "[]"),
    (
        "bad_parent",
        r#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","parentId":"-"}]"#,
    ),
    (
        "bad_trace_length",
        r#"[{"traceId":"463ac35c9f6413ad4","id":"a2fb4a1d1a96d312"}]"#,
    ),
    (
        "negative_timestamp",
        r#"[{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312","timestamp":-1}]"#,
    ),
    (
        "not_an_array",
        r#"{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312"}"#,
    ),
];

fn write(dir: &Path, target: &str, seeds: &Seeds) {
    let dir = dir.join(target);
    if dir.exists() {
        fs::remove_dir_all(&dir).unwrap();
    }
    fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in &seeds.files {
        fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
#[ignore = "writes fuzz/seeds/: run it on purpose, then commit the result"]
fn write_seed_corpus() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let vectors: Value = serde_json::from_slice(
        &fs::read(root.join("../b3-propagation/tests/data/vectors.json")).unwrap(),
    )
    .unwrap();

    // Cases in file order: (name, headers), plus every header value an inject case expects
    // and the encode inputs.
    let mut cases: Vec<(String, serde_json::Map<String, Value>)> = Vec::new();
    let mut encode_inputs: Vec<(String, Value)> = Vec::new();
    for (group, list) in vectors.as_object().unwrap() {
        let Some(list) = list.as_array() else {
            continue;
        };
        for case in list {
            let name = case["name"].as_str().unwrap_or(group).to_owned();
            if let Some(h) = case.get("headers").and_then(Value::as_object) {
                cases.push((name.clone(), h.clone()));
            }
            if let Some(h) = case.get("expect_headers").and_then(Value::as_object) {
                cases.push((format!("{name}_out"), h.clone()));
            }
            if let Some(cx) = case.get("context") {
                encode_inputs.push((name, cx.clone()));
            }
        }
    }

    let codec_headers: [(&str, &str); 8] = [
        ("b3_single", "b3"),
        ("traceparent", "traceparent"),
        ("tracestate", "tracestate"),
        ("baggage", "baggage"),
        ("request_id", "x-request-id"),
        ("ot_span_context", "x-ot-span-context"),
        ("grpc_trace_bin", "grpc-trace-bin"),
        ("jaeger", "uber-trace-id"),
    ];
    let mut targets: BTreeMap<&str, Seeds> = BTreeMap::new();
    for (target, header) in codec_headers {
        let seeds = targets.entry(target).or_default();
        for (name, headers) in &cases {
            for (h, v) in headers {
                if h.eq_ignore_ascii_case(header) {
                    // Several field lines: one line each for the multi-line codecs.
                    seeds.add(name, values(v).join("\n"));
                }
            }
        }
    }
    // The binary form of the valid grpc-trace-bin values (for `decode_bytes`).
    let binary: Vec<(String, Vec<u8>)> = targets["grpc_trace_bin"]
        .files
        .iter()
        .filter_map(|(n, b)| {
            let decoded = standard_base64_decode(std::str::from_utf8(b).ok()?)?;
            Some((format!("{n}_bin"), decoded))
        })
        .collect();
    for (n, b) in binary {
        targets.get_mut("grpc_trace_bin").unwrap().add(&n, b);
    }

    let b3_multi = targets.entry("b3_multi").or_default();
    for (name, headers) in &cases {
        let text = header_text(headers, |n| n.starts_with("x-b3-"));
        if !text.is_empty() {
            b3_multi.add(name, text);
        }
    }

    // The header-map targets: an even spread over all cases, all headers.
    let stride = cases.len() / MAX_SEEDS + 1;
    for (offset, target) in ["propagator_extract", "propagator_untrusted", "cli_decode"]
        .into_iter()
        .enumerate()
    {
        let seeds = targets.entry(target).or_default();
        for (name, headers) in cases.iter().skip(offset).step_by(stride) {
            seeds.add(name, header_text(headers, |_| true));
        }
    }
    let cli = targets.get_mut("cli_decode").unwrap();
    for (name, input) in encode_inputs.iter().step_by(4) {
        cli.add(
            &format!("encode_{name}"),
            serde_json::to_vec(input).unwrap(),
        );
    }

    let otlp_json = targets.entry("otlp_json").or_default();
    for (name, body) in OTLP_JSON {
        otlp_json.add(name, *body);
    }
    let otlp_protobuf = targets.entry("otlp_protobuf").or_default();
    for (name, body) in OTLP_JSON {
        if let Ok(req) = serde_json::from_str::<ExportTraceServiceRequest>(body) {
            let bytes = req.encode_to_vec();
            otlp_protobuf.add(name, bytes.clone());
            if bytes.len() > 8 {
                otlp_protobuf.add(&format!("{name}_truncated"), &bytes[..bytes.len() / 2]);
            }
        }
    }
    let zipkin = targets.entry("zipkin_json").or_default();
    for (name, body) in ZIPKIN_JSON {
        zipkin.add(name, *body);
    }

    let out = root.join("seeds");
    for (target, seeds) in &targets {
        assert!(!seeds.files.is_empty(), "no seeds for {target}");
        write(&out, target, seeds);
        println!("{target}: {} seeds", seeds.files.len());
    }
}
