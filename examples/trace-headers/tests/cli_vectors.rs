//! Every group of `spec/vectors.json` (except the library-only one) through the real
//! `trace-headers` binary, as the acceptance runner drives it (CLI.md).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const VECTORS: &str = include_str!("../../../b3-propagation/tests/data/vectors.json");

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trace-headers"))
}

fn run(cmd: Command, stdin: Option<&str>) -> Value {
    run_bytes(cmd, stdin.map(str::as_bytes))
}

fn run_bytes(mut cmd: Command, stdin: Option<&[u8]>) -> Value {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn trace-headers");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(s) = stdin {
            input.write_all(s).expect("write stdin");
        }
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

fn header_args(cmd: &mut Command, headers: &Value) {
    for (name, value) in headers.as_object().expect("headers object") {
        let values: Vec<&str> = match value {
            Value::Array(a) => a.iter().map(|v| v.as_str().expect("str")).collect(),
            v => vec![v.as_str().expect("str")],
        };
        for v in values {
            cmd.arg("-H").arg(format!("{name}: {v}"));
        }
    }
}

fn decode(case: &Value) -> Value {
    let mut cmd = bin();
    cmd.arg("decode");
    header_args(&mut cmd, &case["headers"]);
    run(cmd, None)
}

fn cli_format(name: &str) -> &'static str {
    match name {
        "b3_single" => "b3-single",
        "b3_multi" => "b3-multi",
        "traceparent" => "traceparent",
        "baggage" => "baggage",
        "request_id" => "request-id",
        "x_ot_span_context" => "ot-span-context",
        "grpc_trace_bin" => "grpc-trace-bin",
        "jaeger" => "jaeger",
        other => panic!("unknown format name {other}"),
    }
}

const CONTEXT_KEYS: [&str; 5] = [
    "trace_id",
    "trace_id_64bit",
    "span_id",
    "parent_span_id",
    "sampling",
];

fn check_context(name: &str, got: &Value, case: &Value) {
    let cx = &got["context"];
    if let Some(expect) = case.get("expect") {
        assert!(cx.is_object(), "{name}: expected a context, got {got}");
        for k in CONTEXT_KEYS {
            assert_eq!(cx[k], expect[k], "{name}: {k} in {got}");
        }
        if let Some(flags) = expect.get("trace_flags") {
            assert_eq!(&cx["trace_flags"], flags, "{name}: trace_flags");
        }
        if let Some(v) = expect.get("version_in") {
            assert_eq!(&cx["version"], v, "{name}: version");
        }
        if let Some(entries) = expect.get("entries") {
            assert_eq!(&got["baggage"], entries, "{name}: baggage");
        }
    } else {
        let why = case["invalid"].as_str().expect("expect or invalid");
        let ok = cx.is_null()
            || (cx["trace_id"].is_null()
                && cx["span_id"].is_null()
                && cx["sampling"] == "deferred");
        assert!(ok, "{name} ({why}): expected no context, got {got}");
        assert!(
            !got["errors"].as_array().expect("errors").is_empty()
                || case["headers"].as_object().is_some_and(|h| h.is_empty())
                || name.contains("wrong_name"),
            "{name}: a rejected header should be reported in errors: {got}"
        );
    }
}

fn check_headers(name: &str, out: &Value, case: &Value) {
    let out = out.as_object().expect("headers object");
    if let Some(expect) = case.get("expect_headers").and_then(Value::as_object) {
        for (k, v) in expect {
            assert_eq!(out.get(k), Some(v), "{name}: header {k} in {out:?}");
        }
    }
    if let Some(patterns) = case
        .get("expect_header_patterns")
        .and_then(Value::as_object)
    {
        for (k, p) in patterns {
            let v = out
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{name}: {k} missing"));
            assert!(
                matches_uuid4_pattern(p.as_str().expect("pattern"), v),
                "{name}: {k}={v} !~ {p}"
            );
        }
    }
    for k in case
        .get("absent_headers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = k.as_str().expect("str");
        assert!(!out.contains_key(k), "{name}: {k} must be absent: {out:?}");
    }
}

/// The only pattern the vectors use is a lower-case UUIDv4; check it exactly (no regex
/// engine needed), and refuse any other pattern so a new one is not silently accepted.
fn matches_uuid4_pattern(pattern: &str, v: &str) -> bool {
    assert_eq!(
        pattern, "[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
        "unknown pattern"
    );
    let b = v.as_bytes();
    let hex = |c: u8| c.is_ascii_digit() || (b'a'..=b'f').contains(&c);
    b.len() == 36
        && b.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            14 => c == b'4',
            19 => matches!(c, b'8' | b'9' | b'a' | b'b'),
            _ => hex(c),
        })
}

#[test]
fn every_vector_group_through_the_cli() {
    let vectors: Value = serde_json::from_str(VECTORS).expect("vectors.json");
    let groups = vectors.as_object().expect("object");
    let mut seen = BTreeSet::new();
    let mut cases = 0;
    for (group, list) in groups {
        if group == "schema" {
            continue;
        }
        let list = list.as_array().expect("group is a list");
        assert!(!list.is_empty(), "group {group} is empty");
        seen.insert(group.as_str());
        for case in list {
            let name = case["name"].as_str().expect("name");
            cases += 1;
            match group.as_str() {
                "b3_multi_extract"
                | "b3_single_extract"
                | "b3_precedence"
                | "traceparent_extract"
                | "x_ot_span_context"
                | "grpc_trace_bin"
                | "jaeger_extract" => {
                    check_context(name, &decode(case), case);
                }
                "tracestate" => {
                    let got = decode(case);
                    let e = &case["expect"];
                    let valid = e["traceparent_valid"].as_bool().expect("bool");
                    assert_eq!(
                        got["context"]["format"] == "traceparent",
                        valid,
                        "{name}: {got}"
                    );
                    let ts = if got["tracestate"].is_null() {
                        Value::Array(vec![])
                    } else {
                        got["tracestate"].clone()
                    };
                    assert_eq!(ts, e["tracestate"], "{name}");
                    let mut cmd = bin();
                    cmd.args(["convert", "--to", "traceparent"]);
                    header_args(&mut cmd, &case["headers"]);
                    let out = run(cmd, None);
                    assert_eq!(
                        out.get("tracestate").unwrap_or(&Value::Null),
                        &e["tracestate_header_out"],
                        "{name}: {out}"
                    );
                }
                "baggage_extract" | "prefixed_baggage_extract" => {
                    let got = decode(case);
                    assert_eq!(got["baggage"], case["expect"]["entries"], "{name}");
                }
                "request_id" | "envoy_request_id" => {
                    let got = decode(case);
                    match case.get("expect") {
                        Some(e) => {
                            assert_eq!(got["request_id"], e["request_id"], "{name}");
                            if let Some(info) = e.get("request_id_info") {
                                assert_eq!(&got["request_id_info"], info, "{name}");
                            }
                        }
                        None => {
                            assert!(got["request_id"].is_null(), "{name}: {got}");
                            assert!(got["request_id_info"].is_null(), "{name}: {got}");
                            assert!(
                                !got["errors"].as_array().expect("errors").is_empty(),
                                "{name}"
                            );
                        }
                    }
                }
                "envoy_request_id_library" => {
                    // Library only (RequestId::with_trace_reason); covered by
                    // b3-propagation/tests/vectors.rs.
                }
                "b3_inject"
                | "baggage_inject"
                | "request_id_inject"
                | "x_ot_span_context_inject"
                | "grpc_trace_bin_inject"
                | "jaeger_inject" => {
                    let mut cmd = bin();
                    cmd.args([
                        "encode",
                        "--format",
                        cli_format(case["format"].as_str().expect("format")),
                    ]);
                    let out = run(cmd, Some(&case["context"].to_string()));
                    check_headers(name, &out, case);
                }
                "roundtrip" => {
                    let mut cmd = bin();
                    cmd.args([
                        "convert",
                        "--to",
                        cli_format(case["inject_format"].as_str().expect("fmt")),
                    ]);
                    header_args(&mut cmd, &case["headers"]);
                    check_headers(name, &run(cmd, None), case);
                }
                other => panic!("vector group {other} is not handled by this test"),
            }
        }
    }
    let expected: BTreeSet<&str> = [
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
    .collect();
    assert_eq!(seen, expected, "a vector group is missing or new");
    assert!(cases > 250, "only {cases} cases ran");
}

#[test]
fn stdin_accepts_curl_verbose_paste() {
    let mut cmd = bin();
    cmd.args(["decode", "--stdin"]);
    let got = run(
        cmd,
        Some(
            "> GET / HTTP/1.1\r\n> Host: example\r\n> b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n>\r\n\r\nx-request-id: abc\n",
        ),
    );
    assert_eq!(
        got["context"]["trace_id"],
        "80f198ee56343ba864fe8b2a57d3eff7"
    );
    assert_eq!(got["request_id"], "abc");
}

#[test]
fn format_filter_and_usage_errors() {
    let mut cmd = bin();
    cmd.args([
        "decode",
        "--format",
        "traceparent",
        "-H",
        "b3: 1",
        "-H",
        "x-request-id: a",
    ]);
    let got = run(cmd, None);
    assert!(got["context"].is_null());
    assert!(got["request_id"].is_null());
    for key in [
        "context",
        "tracestate",
        "baggage",
        "request_id",
        "request_id_info",
        "errors",
    ] {
        assert!(got.get(key).is_some(), "{key} always present");
    }
    for bad in ["no colon", ": no name", " : no name"] {
        let status = bin().args(["decode", "-H", bad]).status().expect("run");
        assert_eq!(status.code(), Some(2), "{bad}");
    }
    let status = bin()
        .args(["encode", "--format", "nope"])
        .status()
        .expect("run");
    assert_eq!(status.code(), Some(2));
}

/// The `format` of each error `decode` reported, in order.
fn error_formats(got: &Value) -> Vec<&str> {
    got["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["format"].as_str().expect("f"))
        .collect()
}

#[test]
fn control_characters_are_reported_not_fatal() {
    let mut cmd = bin();
    cmd.args(["decode", "-H", "x-request-id: a\u{1}b", "-H", "b3: \u{7f}"]);
    let got = run(cmd, None);
    let kinds = error_formats(&got);
    assert_eq!(kinds, vec!["b3-single", "request-id"]);
}

#[test]
fn header_bytes_that_are_not_utf8_are_reported_not_fatal() {
    use std::os::unix::ffi::OsStrExt;
    let mut cmd = bin();
    cmd.arg("decode")
        .arg("-H")
        .arg(std::ffi::OsStr::from_bytes(b"x-request-id: a\xffb"))
        .arg("-H")
        .arg("b3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1");
    // `run` asserts exit 0 and one JSON object.
    let got = run(cmd, None);
    assert_eq!(got["context"]["span_id"], "e457b5a2e4d86bd1");
    assert!(got["request_id"].is_null());
    let kinds = error_formats(&got);
    assert_eq!(kinds, vec!["request-id"]);
    // The byte sent, where it was sent: not the first byte of a U+FFFD put in its place.
    assert_eq!(
        got["errors"][0]["message"], "invalid x-request-id header: invalid byte 0xff at byte 1",
        "{got}"
    );
}

/// On stdin too the bytes reach the decoders as they came: a value that is not UTF-8, a stray
/// `\r` before a CRLF line end (one `\r` is the line end's, the other is the value's), and a
/// UTF-8 byte order mark before the first line, which is no part of the first header's name.
#[test]
fn stdin_bytes_reach_the_decoders_as_they_came() {
    let mut cmd = bin();
    cmd.args(["decode", "--stdin"]);
    let got = run_bytes(
        cmd,
        Some(
            b"\xef\xbb\xbfb3: 80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1\r\n\
              x-request-id: a\xffb\r\n\
              traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\r\n",
        ),
    );
    assert_eq!(got["context"]["format"], "b3-single", "{got}");
    let messages: Vec<&str> = got["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["message"].as_str().expect("message"))
        .collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("x-request-id") && m.contains("0xff at byte 1")),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("invalid traceparent header")),
        "{messages:#?}"
    );
}

#[test]
fn every_rejected_baggage_header_is_reported() {
    let mut cmd = bin();
    cmd.args([
        "decode",
        "-H",
        "baggage-k: a\u{1}b",
        "-H",
        "uberctx-j: a\u{2}b",
        "-H",
        "ot-baggage-: x",
        "-H",
        "baggage: a=%zz",
        "-H",
        "baggage-ok: 1",
    ]);
    let got = run(cmd, None);
    let errors = got["errors"].as_array().expect("errors");
    let messages: Vec<&str> = errors
        .iter()
        .map(|e| e["message"].as_str().expect("message"))
        .collect();
    assert_eq!(errors.len(), 4, "{messages:#?}");
    for header in ["baggage-k", "uberctx-j", "ot-baggage-"] {
        assert!(
            messages.iter().any(|m| m.contains(header)),
            "{header}: {messages:#?}"
        );
    }
    assert!(errors.iter().all(|e| e["format"] == "baggage"));
    assert_eq!(got["baggage"][0]["key"], "ok");
}
