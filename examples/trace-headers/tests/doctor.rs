//! `trace-headers doctor` (and `decode --text`) through the real binary, on recorded spans:
//! Zipkin v2 JSON from the Envoy demo (`tests/data/doctor/`, see its README), a file, standard
//! input, and the workspace's collector over HTTP.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use collector::{Collector, CollectorConfig};
use serde_json::Value;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/doctor");

fn data(name: &str) -> String {
    format!("{DATA}/{name}")
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trace-headers"))
}

fn run_with(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut cmd = bin();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn trace-headers");
    {
        let mut input = child.stdin.take().expect("stdin");
        if let Some(bytes) = stdin {
            input.write_all(bytes).expect("write stdin");
        }
    }
    child.wait_with_output().expect("wait")
}

fn run(args: &[&str]) -> Output {
    run_with(args, None)
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `doctor --json ARGS…`: the exit code and the one JSON object printed.
fn doctor_json(args: &[&str]) -> (i32, Value) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let out = run(&all);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON object ({e}): {}\nstderr: {}",
            stdout(&out),
            stderr(&out)
        )
    });
    (code(&out), json)
}

fn broken_findings(report: &Value) -> Vec<&Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            let kind = f["kind"].as_str().expect("kind");
            ![
                "edge-restart",
                "client-parent",
                "request-id-reused",
                "request-id-dropped",
            ]
            .contains(&kind)
        })
        .collect()
}

/// `doctor --json -` on `spans`: who is named for the break whose new trace began at
/// `callee` (the finding explaining that the call "arrived at {callee}").
fn culprit_at(spans: &str, callee: &str) -> String {
    let out = run_with(&["doctor", "--json", "-"], Some(spans.as_bytes()));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let arrived = format!("arrived at {callee}");
    let found = broken_findings(&report)
        .into_iter()
        .find(|f| {
            f["explanation"]
                .as_str()
                .is_some_and(|e| e.contains(&arrived))
        })
        .map(|f| f["service"].as_str().expect("service").to_owned());
    found.unwrap_or_else(|| panic!("a finding at {callee}: {report}"))
}

#[test]
fn a_trace_joined_through_the_mesh_has_no_findings() {
    // An array of traces, as /api/v2/traces answers.
    let (code, report) = doctor_json(&[&data("joined.json")]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["requests"], 2);
    assert_eq!(report["traces"], 2);
    assert_eq!(report["broken"], 0);
    assert_eq!(report["findings"], Value::Array(Vec::new()), "{report}");

    let out = run(&["doctor", &data("joined.json")]);
    assert_eq!(self::code(&out), 0);
    assert!(
        stdout(&out).contains("no broken request"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn headers_dropped_by_order_names_order_and_only_order() {
    let (code, report) = doctor_json(&[&data("headers-dropped.json")]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        (&report["requests"], &report["traces"], &report["broken"]),
        (&Value::from(1), &Value::from(4), &Value::from(1))
    );
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{report}");
    let f = &findings[0];
    assert_eq!(f["kind"], "headers-dropped");
    assert_eq!(f["service"], "order");
    assert_eq!(f["request_id"], "4c94190f-d385-907b-b87a-d677620d19c3");
    // The trace order received first, then the three its calls to item started.
    let traces = f["trace_ids"].as_array().expect("trace_ids");
    assert_eq!(traces.len(), 4);
    assert_eq!(traces[0], "d098d452136dcc0b8ae5964e25fa9c3e");
    assert_eq!(f["span_ids"].as_array().expect("span_ids").len(), 3);
    let why = f["explanation"].as_str().expect("explanation");
    for words in [
        "order received trace d098d452… (request 4c94190f…)",
        "its 3 calls to item started new traces at order-sidecar's egress",
        "order forwards x-request-id but not the trace headers",
    ] {
        assert!(why.contains(words), "{why:?} lacks {words:?}");
    }

    let out = run(&["doctor", &data("headers-dropped.json")]);
    assert_eq!(self::code(&out), 1);
    let text = stdout(&out);
    assert!(text.contains("BROKEN  headers-dropped  order"), "{text}");
    assert!(text.contains("change: order"), "{text}");
}

/// The same request without the trace order received (not yet flushed, or sampled away): its
/// three calls are still one finding against order, which names no received trace and does
/// not claim that no other trace carries the request id.
#[test]
fn headers_dropped_without_the_received_trace_is_one_finding() {
    let fixture = std::fs::read_to_string(data("headers-dropped.json")).expect("fixture");
    let spans: Vec<Value> = serde_json::from_str(&fixture).expect("an array of spans");
    let received = "d098d452136dcc0b8ae5964e25fa9c3e";
    let cut: Vec<Value> = spans
        .into_iter()
        .filter(|s| s["traceId"] != received)
        .collect();
    let spans = serde_json::to_string(&cut).expect("JSON");
    let out = run_with(&["doctor", "--json", "-"], Some(spans.as_bytes()));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(code(&out), 1, "{report}");
    assert_eq!(
        (&report["traces"], &report["broken"]),
        (&Value::from(3), &Value::from(1))
    );
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{report}");
    let f = &findings[0];
    assert_eq!(
        (&f["kind"], &f["service"]),
        (&Value::from("headers-dropped"), &Value::from("order"))
    );
    assert_eq!(
        f["trace_ids"].as_array().expect("trace_ids").len(),
        3,
        "{f}"
    );
    assert_eq!(f["span_ids"].as_array().expect("span_ids").len(), 3, "{f}");
    let why = f["explanation"].as_str().expect("explanation");
    for words in [
        "In request 4c94190f…, order's 3 calls to item started new traces at order-sidecar's egress",
        "order forwards x-request-id but not the trace headers",
    ] {
        assert!(why.contains(words), "{why:?} lacks {words:?}");
    }
    assert!(!why.contains("received trace"), "{why}");

    // Alone, the first of them is still the trace of a request that shares its id with none.
    let first: Vec<&Value> = cut
        .iter()
        .filter(|s| s["traceId"] == cut[0]["traceId"])
        .collect();
    let spans = serde_json::to_string(&first).expect("JSON");
    let out = run_with(&["doctor", "--json", "-"], Some(spans.as_bytes()));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let why = report["findings"][0]["explanation"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("no other trace carries its request id"),
        "{report}"
    );
}

#[test]
fn span_ids_order_never_reported_name_order() {
    let (code, report) = doctor_json(&[&data("unreported-parent.json")]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["broken"], 1);
    let findings = broken_findings(&report);
    assert_eq!(findings.len(), 1, "{report}");
    let f = findings[0];
    assert_eq!(f["kind"], "unreported-parent");
    assert_eq!(f["service"], "order");
    assert_eq!(f["span_ids"].as_array().expect("span_ids").len(), 3);
    let why = f["explanation"].as_str().expect("explanation");
    assert!(
        why.starts_with("order-sidecar's egress spans name parents nobody reported (3): order writes span ids into its calls that it never reports"),
        "{why}"
    );
}

#[test]
fn unreadable_input_exits_2_with_a_message() {
    let dir = std::env::temp_dir().join(format!("doctor-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, body).expect("write");
        p.display().to_string()
    };
    let not_json = file("not-json.json", "this is not JSON");
    let object = file(
        "object.json",
        r#"{"traceId":"463ac35c9f6413ad","id":"a2fb4a1d1a96d312"}"#,
    );
    let numbers = file("numbers.json", "[1, 2, 3]");
    let bad_id = file(
        "bad-id.json",
        r#"[[{"traceId":"xyz","id":"a2fb4a1d1a96d312"}]]"#,
    );
    let empty = file("empty.json", "");
    let not_a_log = file("not-a-log.txt", "hello\nworld\n");
    let missing = dir.join("missing.json").display().to_string();
    let joined = data("joined.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec![&not_json], "not a JSON array"),
        (vec![&object], "not a JSON array"),
        (vec![&numbers], "neither a span"),
        (vec![&bad_id], "invalid trace id"),
        (vec![&empty], "empty"),
        (vec![&missing], "cannot read the file"),
        (vec!["http://127.0.0.1:9"], "127.0.0.1:9"),
        (vec!["https://127.0.0.1:9"], "https:// is not supported"),
        (vec!["--access-log", &not_a_log, &joined], "not-a-log.txt"),
        (
            vec!["--access-log", &missing, &joined],
            "cannot read the access log",
        ),
    ];
    for (args, message) in cases {
        for json in [false, true] {
            let mut all = vec!["doctor"];
            if json {
                all.push("--json");
            }
            all.extend(args.iter().copied());
            let out = run(&all);
            let err = stderr(&out);
            assert_eq!(code(&out), 2, "{all:?}: {err}");
            assert!(err.starts_with("trace-headers doctor: "), "{all:?}: {err}");
            assert!(err.contains(message), "{all:?}: {err:?} lacks {message:?}");
            assert!(!err.contains("panicked"), "{all:?}: {err}");
            assert!(out.stdout.is_empty(), "{all:?}: {}", stdout(&out));
        }
    }
    // Standard input, garbage and empty.
    for input in [&b"\x00\xff garbage"[..], b"", b"[{"] {
        let out = run_with(&["doctor", "-"], Some(input));
        assert_eq!(code(&out), 2, "{input:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with("trace-headers doctor: -: "),
            "{}",
            stderr(&out)
        );
    }
    // No source at all is a usage error, and so are a limit or a lookback of 0 (Zipkin
    // refuses them).
    assert_eq!(code(&run(&["doctor"])), 2);
    for zero in [["--limit", "0"], ["--lookback-ms", "0"]] {
        let out = run(&["doctor", zero[0], zero[1], "http://127.0.0.1:9411"]);
        assert_eq!(code(&out), 2, "{zero:?}: {}", stderr(&out));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two shapes real meshes produce that are one trace: Envoy's ingress span sharing its
/// caller's id with no parent id, and an Envoy line naming a 128-bit trace and its low half.
#[test]
fn a_shared_half_and_a_low_half_are_one_trace() {
    for args in [
        vec![data("shared-half.json")],
        vec![
            data("low-half.json"),
            "--access-log".to_owned(),
            data("low-half.log"),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, report) = doctor_json(&args);
        assert_eq!(code, 0, "{args:?}: {report}");
        assert_eq!(
            (&report["traces"], &report["broken"]),
            (&Value::from(1), &Value::from(0)),
            "{args:?}: {report}"
        );
        assert_eq!(report["findings"], Value::Array(Vec::new()), "{report}");
    }
}

#[test]
fn access_logs_join_request_ids_to_traces() {
    // Apps only, no request id on their spans: order drops the trace headers, so each call
    // to item starts a trace of its own, and nothing but the access logs says they belong to
    // the request the frontend received (the client sent its own B3 context through a front
    // proxy whose tracing is off).
    let spans = data("apps-only.json");
    let (code, alone) = doctor_json(&[&spans]);
    assert_eq!(code, 0, "{alone}");
    assert_eq!(
        (&alone["requests"], &alone["broken"]),
        (&Value::from(4), &Value::from(0))
    );

    // Our JSON lines (item), one Envoy JSON line (the edge) and one Envoy default-format line.
    let log = data("access.log");
    let (code, joined) = doctor_json(&["--access-log", &log, &spans]);
    assert_eq!(code, 1, "{joined}");
    assert_eq!(
        (&joined["requests"], &joined["traces"], &joined["broken"]),
        (&Value::from(1), &Value::from(4), &Value::from(1))
    );
    let findings = broken_findings(&joined);
    assert_eq!(findings.len(), 1, "{joined}");
    assert_eq!(findings[0]["kind"], "headers-dropped");
    assert_eq!(findings[0]["service"], "order");
    assert_eq!(
        findings[0]["request_id"],
        "8f0e2b1c-5d4a-9b3e-a1c7-2e6d9f4b0a85"
    );
    assert_eq!(
        findings[0]["trace_ids"][0],
        "a01ba826cae2f5bea73bbcdf24a5916e"
    );
    // The client's span is outside the mesh: noted, not counted.
    let client = joined["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["kind"] == "client-parent")
        .expect("a client-parent note");
    assert_eq!(client["service"], "frontend");

    // Without the edge's line the frontend's trace joins nothing: two requests.
    let dir = std::env::temp_dir().join(format!("doctor-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let text = std::fs::read_to_string(&log).expect("access.log");
    let items_only: String = text
        .lines()
        .filter(|l| !l.contains("\"proxy\""))
        .map(|l| format!("{l}\n"))
        .collect();
    let partial = dir.join("items.log");
    std::fs::write(&partial, items_only).expect("write");
    let (_, partial_report) =
        doctor_json(&["--access-log", &partial.display().to_string(), &spans]);
    assert_eq!(partial_report["requests"], 2, "{partial_report}");
    let _ = std::fs::remove_dir_all(&dir);

    // The default-format line has a request id and no trace id: counted in the text summary.
    let out = run(&["doctor", "--access-log", &log, &spans]);
    assert!(
        stdout(&out).contains("1 request id appears only in access-log lines"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_json_output_has_exactly_the_contracts_shape() {
    let (_, report) = doctor_json(&[&data("headers-dropped.json"), &data("edge-restart.json")]);
    let keys: Vec<&str> = report
        .as_object()
        .expect("one object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["requests", "traces", "broken", "findings"]);
    for key in ["requests", "traces", "broken"] {
        assert!(report[key].is_u64(), "{key}: {report}");
    }
    assert!(report["broken"].as_u64() <= report["requests"].as_u64());
    let findings = report["findings"].as_array().expect("findings");
    assert!(findings.len() >= 2, "{report}");
    for f in findings {
        let keys: Vec<&str> = f
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "kind",
                "service",
                "request_id",
                "trace_ids",
                "span_ids",
                "explanation"
            ]
        );
        assert!(f["kind"].is_string() && f["service"].is_string() && f["explanation"].is_string());
        assert!(f["request_id"].is_string() || f["request_id"].is_null());
        for list in ["trace_ids", "span_ids"] {
            for id in f[list].as_array().expect("array") {
                let id = id.as_str().expect("string id");
                let len = if list == "trace_ids" { 32 } else { 16 };
                assert!(
                    id.len() == len && id.bytes().all(|b| b.is_ascii_hexdigit()),
                    "{list}: {id}"
                );
            }
        }
    }
}

#[test]
fn an_edge_restarting_the_clients_trace_is_expected_not_broken() {
    let (code, report) = doctor_json(&[&data("edge-restart.json")]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (&report["requests"], &report["broken"]),
        (&Value::from(1), &Value::from(0))
    );
    let f = &report["findings"][0];
    assert_eq!(f["kind"], "edge-restart");
    assert_eq!(f["service"], "front-proxy");
    // The same, at an edge named nothing like one: the first server hop of the request.
    let renamed = std::fs::read_to_string(data("edge-restart.json"))
        .expect("fixture")
        .replace("front-proxy", "web");
    let out = run_with(&["doctor", "--json", "-"], Some(renamed.as_bytes()));
    assert_eq!(self::code(&out), 0, "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["findings"][0]["kind"], "edge-restart");
    assert_eq!(report["findings"][0]["service"], "web");
}

#[test]
fn a_service_whose_name_merely_contains_edge_is_no_edge() {
    // `frontend` calls out without the context it received; `ledger` starts a trace of its
    // own for the same request. `ledger` contains "edge" but is no edge: nothing restarted by
    // policy, the frontend dropped the headers.
    let spans = r#"[
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"a3ce929d0e0e4736","kind":"SERVER","timestamp":1000,"duration":900,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"1111111111111111","parentId":"a3ce929d0e0e4736","kind":"CLIENT","timestamp":1100,"duration":700,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"00000000000000005b8efff798038103","id":"5b8efff798038103","kind":"SERVER","timestamp":1200,"duration":500,"localEndpoint":{"serviceName":"SERVICE"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}}
]"#;
    for name in ["ledger", "knowledge-base", "billing"] {
        let input = spans.replace("SERVICE", name);
        let out = run_with(&["doctor", "--json", "-"], Some(input.as_bytes()));
        assert_eq!(code(&out), 1, "{name}: {}", stdout(&out));
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
        let f = &report["findings"][0];
        assert_eq!(f["kind"], "headers-dropped", "{name}: {report}");
        assert_eq!(f["service"], "frontend", "{name}: {report}");
    }
}

#[test]
fn concurrent_calls_name_every_application_that_could_have_made_the_call() {
    // The frontend calls `order` and `user` at once; one of them called `item` without the
    // trace headers, and no client span says which. Both are named; the frontend (their
    // parent) and the frontend's call that `order` answered are not.
    let spans = r#"[
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000a","kind":"SERVER","timestamp":1000,"duration":1000,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000b","parentId":"000000000000000a","kind":"CLIENT","timestamp":1010,"duration":900,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000c","parentId":"000000000000000b","kind":"SERVER","timestamp":1020,"duration":880,"localEndpoint":{"serviceName":"order"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000d","parentId":"000000000000000a","kind":"CLIENT","timestamp":1010,"duration":300,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000e","parentId":"000000000000000d","kind":"SERVER","timestamp":1030,"duration":250,"localEndpoint":{"serviceName":"user"}},
 {"traceId":"00000000000000005b8efff798038103","id":"5b8efff798038103","kind":"SERVER","timestamp":1100,"duration":50,"localEndpoint":{"serviceName":"item"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}}
]"#;
    let out = run_with(&["doctor", "--json", "-"], Some(spans.as_bytes()));
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let f = &report["findings"][0];
    assert_eq!(f["kind"], "headers-dropped", "{report}");
    let culprit = f["service"].as_str().expect("service");
    let other = match culprit {
        "user" => "order",
        "order" => "user",
        _ => panic!("neither order nor user: {report}"),
    };
    let explanation = f["explanation"].as_str().expect("explanation");
    assert!(
        explanation.contains(&format!("the culprit may be {other} instead")),
        "{explanation}"
    );
    assert!(!explanation.contains("frontend was"), "{explanation}");

    // Made one at a time (the user call over before `order` began), `order` alone is named.
    let sequential = spans.replace(
        r#""timestamp":1010,"duration":300"#,
        r#""timestamp":1002,"duration":6"#,
    );
    let sequential = sequential.replace(
        r#""timestamp":1030,"duration":250"#,
        r#""timestamp":1003,"duration":4"#,
    );
    let out = run_with(&["doctor", "--json", "-"], Some(sequential.as_bytes()));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let f = &report["findings"][0];
    assert_eq!(f["service"], "order", "{report}");
    assert!(
        !f["explanation"]
            .as_str()
            .expect("explanation")
            .contains("may be"),
        "{report}"
    );
}

#[test]
fn two_breaks_in_a_row_name_each_caller() {
    // The frontend's call to `order` loses the headers (its client span is never answered),
    // and so does `order`'s call to `item` (`order` reports no client span). Meanwhile the
    // frontend calls `user` with the headers, later than `order` began. `item`'s trace is
    // `order`'s break, not the frontend's: the frontend's one unanswered call arrived at
    // `order`, in the second trace.
    let spans = r#"[
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000a","kind":"SERVER","timestamp":1000,"duration":1000,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000b","parentId":"000000000000000a","kind":"CLIENT","name":"order.v1.OrderService/GetOrder","timestamp":1010,"duration":900,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000d","parentId":"000000000000000a","kind":"CLIENT","timestamp":1040,"duration":300,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000e","parentId":"000000000000000d","kind":"SERVER","timestamp":1050,"duration":250,"localEndpoint":{"serviceName":"user"}},
 {"traceId":"000000000000000000000000000000c1","id":"00000000000000c1","kind":"SERVER","name":"order.v1.OrderService/GetOrder","timestamp":1020,"duration":880,"localEndpoint":{"serviceName":"order"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"000000000000000000000000000000c2","id":"00000000000000c2","kind":"SERVER","timestamp":1100,"duration":50,"localEndpoint":{"serviceName":"item"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}}
]"#;
    let out = run_with(&["doctor", "--json", "-"], Some(spans.as_bytes()));
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let mut culprits: Vec<(String, String)> = broken_findings(&report)
        .iter()
        .map(|f| {
            assert_eq!(f["kind"], "headers-dropped", "{report}");
            (
                f["service"].as_str().expect("service").to_owned(),
                f["explanation"].as_str().expect("explanation").to_owned(),
            )
        })
        .collect();
    culprits.sort();
    let names: Vec<&str> = culprits.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(names, ["frontend", "order"], "{report}");
    for (_, explanation) in &culprits {
        assert!(!explanation.contains("may be"), "{explanation}");
    }

    // The frontend's two calls, both unanswered and both running when `item` began: one
    // arrived at `order`, the other may be the one that reached `item`, so the frontend is
    // still named for it.
    let user = r#"
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000e","parentId":"000000000000000d","kind":"SERVER","timestamp":1050,"duration":250,"localEndpoint":{"serviceName":"user"}},"#;
    assert!(spans.contains(user));
    let both = spans.replace(user, "").replace(
        r#""timestamp":1040,"duration":300"#,
        r#""timestamp":1040,"duration":800"#,
    );
    assert_eq!(culprit_at(&both, "item"), "frontend");

    // The second trace serves another RPC than the frontend's unanswered call: that call did
    // not arrive there, so it may be the one that reached `item`.
    let elsewhere = spans.replace(
        r#""name":"order.v1.OrderService/GetOrder","timestamp":1020,"duration":880,"localEndpoint":{"serviceName":"order"}"#,
        r#""name":"user.v1.UserService/GetUser","timestamp":1020,"duration":880,"localEndpoint":{"serviceName":"user"}"#,
    );
    assert_ne!(elsewhere, spans);
    assert_eq!(culprit_at(&elsewhere, "item"), "frontend");
}

#[test]
fn a_break_beside_a_call_is_not_taken_for_the_calls_arrival() {
    // Over HTTP (no RPC names, no remote service): the frontend's unanswered call began at
    // 1010; `user` (answered, no client spans) called `audit` without headers at 1015, and
    // `item` began at 1020. Nothing says the frontend's call arrived at `audit`: the frontend
    // is still named for `item`.
    let spans = r#"[
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000a","kind":"SERVER","timestamp":1000,"duration":1000,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000b","parentId":"000000000000000a","kind":"CLIENT","name":"GET","timestamp":1010,"duration":490,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000d","parentId":"000000000000000a","kind":"CLIENT","name":"GET","timestamp":1005,"duration":300,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000e","parentId":"000000000000000d","kind":"SERVER","name":"GET /users","timestamp":1008,"duration":250,"localEndpoint":{"serviceName":"user"}},
 {"traceId":"000000000000000000000000000000c1","id":"00000000000000c1","kind":"SERVER","name":"GET /audit","timestamp":1015,"duration":100,"localEndpoint":{"serviceName":"audit"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"000000000000000000000000000000c2","id":"00000000000000c2","kind":"SERVER","name":"GET /items","timestamp":1020,"duration":50,"localEndpoint":{"serviceName":"item"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}}
]"#;
    assert_eq!(culprit_at(spans, "item"), "frontend");

    // Each call arrives in one trace, with evidence. The frontend's first call (gRPC) arrived
    // at `order`; `order` (no client spans) called `stock` over HTTP without headers, during
    // that call; the frontend's second call, named by nothing, began after `stock` and reached
    // `item`. Two traces began during the frontend's calls, but only one provably for one of
    // them: the frontend is named for `item`.
    let spans = r#"[
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000a","kind":"SERVER","timestamp":1000,"duration":1000,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000b","parentId":"000000000000000a","kind":"CLIENT","name":"order.v1.OrderService/GetOrder","timestamp":1010,"duration":900,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000d","parentId":"000000000000000a","kind":"CLIENT","timestamp":1080,"duration":420,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"000000000000000000000000000000c1","id":"00000000000000c1","kind":"SERVER","name":"order.v1.OrderService/GetOrder","timestamp":1020,"duration":880,"localEndpoint":{"serviceName":"order"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"000000000000000000000000000000c3","id":"00000000000000c3","kind":"SERVER","name":"POST /reserve","timestamp":1060,"duration":400,"localEndpoint":{"serviceName":"stock"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"000000000000000000000000000000c2","id":"00000000000000c2","kind":"SERVER","name":"item.v1.ItemService/GetItem","timestamp":1100,"duration":50,"localEndpoint":{"serviceName":"item"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}}
]"#;
    assert_eq!(culprit_at(spans, "item"), "frontend");
}

#[test]
fn a_call_reached_only_counts_while_the_application_it_reached_runs() {
    // The frontend's call to `order` lost the headers; `order` (no client spans) called
    // `stock` with them and had ended when `item` began, `stock` still running. `stock` was
    // not reached by the frontend's call, and `order` was not running: the frontend is named.
    let spans = r#"[
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000a","kind":"SERVER","timestamp":1000,"duration":1000,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","id":"000000000000000b","parentId":"000000000000000a","kind":"CLIENT","name":"order.v1.OrderService/GetOrder","timestamp":1010,"duration":900,"localEndpoint":{"serviceName":"frontend"}},
 {"traceId":"000000000000000000000000000000c1","id":"00000000000000c1","kind":"SERVER","name":"order.v1.OrderService/GetOrder","timestamp":1020,"duration":60,"localEndpoint":{"serviceName":"order"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
 {"traceId":"000000000000000000000000000000c1","id":"00000000000000c4","parentId":"00000000000000c1","kind":"SERVER","name":"stock.v1.StockService/Reserve","timestamp":1030,"duration":470,"localEndpoint":{"serviceName":"stock"}},
 {"traceId":"000000000000000000000000000000c2","id":"00000000000000c2","kind":"SERVER","name":"item.v1.ItemService/GetItem","timestamp":1100,"duration":50,"localEndpoint":{"serviceName":"item"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}}
]"#;
    assert_eq!(culprit_at(spans, "item"), "frontend");
}

/// One host's clock a millisecond behind: order's server span began 200 µs into the frontend's
/// call that lost the trace headers, but order's clock stamps it 422 µs before the front
/// proxy's root. The request still entered at the front proxy: the frontend is named for
/// order's trace, and the front proxy restarted nothing.
#[test]
fn a_callee_whose_clock_is_behind_does_not_start_the_request() {
    let spans = std::fs::read_to_string(data("clock-skew.json")).expect("fixture");
    let (code, report) = doctor_json(&[&data("clock-skew.json")]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        (&report["requests"], &report["traces"], &report["broken"]),
        (&Value::from(1), &Value::from(2), &Value::from(1))
    );
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{report}");
    let f = &findings[0];
    assert_eq!(
        (&f["kind"], &f["service"]),
        (&Value::from("headers-dropped"), &Value::from("frontend"))
    );
    assert_eq!(
        f["trace_ids"],
        serde_json::json!([
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00000000000000005b8efff798038103"
        ])
    );
    assert_eq!(f["span_ids"], serde_json::json!(["5b8efff798038103"]));
    let why = f["explanation"].as_str().expect("explanation");
    assert!(
        why.starts_with(
            "frontend received trace 4bf92f35… (request 3d48b776…) and its call to order \
             arrived at order without trace headers"
        ),
        "{why}"
    );

    // Without the edge's span the frontend is where the request began: order's trace is still
    // the frontend's call, not order's caller the frontend.
    let edge = spans
        .lines()
        .find(|l| l.contains(r#""front-proxy""#))
        .expect("the edge's span");
    let no_edge = spans
        .replace(&format!("{edge}\n"), "")
        .replace(r#""parentId":"a3ce929d0e0e4736","#, "");
    assert_eq!(culprit_at(&no_edge, "order"), "frontend");

    // Without the frontend's client span nothing names order's caller, but the request entered
    // at the edge: a break named after order, not an edge restart.
    let client = spans
        .lines()
        .find(|l| l.contains(r#""CLIENT""#))
        .expect("the client span");
    let no_client = spans.replace(&format!("{client}\n"), "");
    let out = run_with(&["doctor", "--json", "-"], Some(no_client.as_bytes()));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(self::code(&out), 1, "{report}");
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(
        (&findings[0]["kind"], &findings[0]["service"]),
        (&Value::from("headers-dropped"), &Value::from("order"))
    );
}

/// Envoy flushes its spans in batches: the front proxy's span of `GET /orders/o-2` has not
/// reached the collector. Its child, frontend-sidecar's ingress, names a parent nobody
/// reported. With the front proxy's access-log line of that request (the edge saw it; it fronts
/// the frontend in the other request), the edge's span is what is missing; without it, a
/// client may have called the frontend directly with its own context (noted, not counted).
#[test]
fn an_edge_span_missing_from_one_request_is_unreported_not_a_clients() {
    let fixture = std::fs::read_to_string(data("joined.json")).expect("fixture");
    let mut traces: Vec<Value> = serde_json::from_str(&fixture).expect("an array of traces");
    for trace in &mut traces {
        if let Some(spans) = trace.as_array_mut() {
            spans.retain(|s| s["id"] != "f4481f2e4586a2b7");
        }
    }
    let input = serde_json::to_string(&traces).expect("JSON");
    let dir = std::env::temp_dir().join(format!("doctor-edge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let spans = dir.join("spans.json");
    std::fs::write(&spans, &input).expect("write");
    let log = dir.join("edge.log");
    std::fs::write(
        &log,
        concat!(
            r#"{"authority":"shop.example.com","duration_ms":16,"listener":"edge","method":"GET","#,
            r#""path":"/orders/o-2","protocol":"HTTP/1.1","proxy":"front-proxy","#,
            r#""request_id":"fab3bc9d-88fb-94fa-84c3-5ca0f6415b28","status":200,"#,
            r#""time":"2026-12-06T22:05:34.643Z","trace_id":"51a48c691ab3cc18f4481f2e4586a2b7","#,
            r#""upstream_cluster":"frontend"}"#,
            "\n"
        ),
    )
    .expect("write");
    let (code, report) = doctor_json(&[
        "--access-log",
        &log.display().to_string(),
        &spans.display().to_string(),
    ]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        (&report["requests"], &report["broken"]),
        (&Value::from(2), &Value::from(1))
    );
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{report}");
    let f = &findings[0];
    assert_eq!(
        (&f["kind"], &f["service"]),
        (
            &Value::from("unreported-parent"),
            &Value::from("front-proxy")
        )
    );
    assert_eq!(f["span_ids"], serde_json::json!(["e8531c88a53b0534"]));

    // The spans alone: nothing shows the edge saw this request.
    let (code, report) = doctor_json(&[&spans.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 0, "{report}");
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{report}");
    assert_eq!(
        (&findings[0]["kind"], &findings[0]["service"]),
        (
            &Value::from("client-parent"),
            &Value::from("frontend-sidecar")
        )
    );
}

/// A caller that gave up (its call timed out, or it answered at once and left the work to
/// its callee) is still the caller: the frontend's 1 s call to order, unanswered, holds the
/// start of order's trace, which goes on for 8 s with a call to an outside service of its own.
/// The frontend's short trace fits inside that call, but the call names `stripe`, and the
/// frontend called out while order's trace began: the frontend is named, not order.
#[test]
fn a_caller_that_timed_out_is_still_the_caller() {
    let spans = r#"[
{"traceId":"1f0e2d3c4b5a69788796a5b4c3d2e1f0","id":"1f0e2d3c4b5a6978","name":"POST /checkout","kind":"SERVER","timestamp":1796594734000000,"duration":1010000,"localEndpoint":{"serviceName":"frontend"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
{"traceId":"1f0e2d3c4b5a69788796a5b4c3d2e1f0","id":"8796a5b4c3d2e1f0","parentId":"1f0e2d3c4b5a6978","name":"POST","kind":"CLIENT","timestamp":1796594734000100,"duration":1000000,"localEndpoint":{"serviceName":"frontend"},"remoteEndpoint":{"serviceName":"order"}},
{"traceId":"5b8efff7980381035b8efff798038103","id":"5b8efff798038103","name":"POST /orders","kind":"SERVER","timestamp":1796594734005000,"duration":8100000,"localEndpoint":{"serviceName":"order"},"tags":{"http.request.header.x-request-id":"3d48b776-a796-92d9-8cd9-55cf73e43c5e"}},
{"traceId":"5b8efff7980381035b8efff798038103","id":"00f067aa0ba902b7","parentId":"5b8efff798038103","name":"POST","kind":"CLIENT","timestamp":1796594734006000,"duration":8000000,"localEndpoint":{"serviceName":"order"},"remoteEndpoint":{"serviceName":"stripe"}}
]"#;
    assert_eq!(culprit_at(spans, "order"), "frontend");
    let out = run_with(&["doctor", "--json", "-"], Some(spans.as_bytes()));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let f = &broken_findings(&report)[0];
    assert_eq!(
        f["trace_ids"][0], "1f0e2d3c4b5a69788796a5b4c3d2e1f0",
        "{report}"
    );
    assert_eq!(f["span_ids"], serde_json::json!(["5b8efff798038103"]));
}

/// A partner traced outside the mesh calls the edge, which starts a trace of its own (as an
/// edge that trusts no client does), in under a millisecond: Envoy logs `0`. A duration of 0 ms
/// is under one millisecond, not "any length": the partner's 2.5 ms span does not fit in it,
/// so the request began at the partner, and the edge restarted the trace (noted, not counted).
#[test]
fn a_zero_millisecond_edge_line_does_not_swallow_the_client() {
    let spans = r#"[
{"traceId":"7a1c44e0b9d2f3a58e6b0c1d2e3f4a5b","id":"7a1c44e0b9d2f3a5","name":"GET /sync","kind":"SERVER","timestamp":1796594734820000,"duration":2500,"localEndpoint":{"serviceName":"partner"},"tags":{"http.request.header.x-request-id":"4c94190f-d385-907b-b87a-d677620d19c3"}},
{"traceId":"7a1c44e0b9d2f3a58e6b0c1d2e3f4a5b","id":"8e6b0c1d2e3f4a5b","parentId":"7a1c44e0b9d2f3a5","name":"GET","kind":"CLIENT","timestamp":1796594734821000,"duration":900,"localEndpoint":{"serviceName":"partner"},"remoteEndpoint":{"serviceName":"front-proxy"}},
{"traceId":"d098d452136dcc0b8ae5964e25fa9c3e","id":"8ae5964e25fa9c3e","name":"frontend","kind":"SERVER","timestamp":1796594734821100,"duration":700,"localEndpoint":{"serviceName":"front-proxy"},"tags":{"component":"proxy","guid:x-request-id":"4c94190f-d385-907b-b87a-d677620d19c3"}}
]"#;
    let dir = std::env::temp_dir().join(format!("doctor-zero-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("spans.json");
    std::fs::write(&file, spans).expect("write");
    // A 0 ms line, and a line without a duration (which proves nothing either way).
    for duration in [r#","duration_ms":0"#, ""] {
        let log = dir.join("edge.log");
        std::fs::write(
            &log,
            format!(
                concat!(
                    r#"{{"proxy":"front-proxy","listener":"edge","#,
                    r#""request_id":"4c94190f-d385-907b-b87a-d677620d19c3","#,
                    r#""trace_id":"d098d452136dcc0b8ae5964e25fa9c3e","#,
                    r#""time":"2026-12-06T22:05:34.821Z"{}}}"#,
                    "\n"
                ),
                duration
            ),
        )
        .expect("write");
        let (code, report) = doctor_json(&[
            "--access-log",
            &log.display().to_string(),
            &file.display().to_string(),
        ]);
        assert_eq!(code, 0, "{duration:?}: {report}");
        assert!(broken_findings(&report).is_empty(), "{report}");
        let kinds: Vec<&Value> = report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .map(|f| &f["kind"])
            .collect();
        assert_eq!(kinds, [&Value::from("edge-restart")], "{report}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decode_text_names_the_exact_header_and_why_one_was_ignored() {
    let out = run(&[
        "decode",
        "--text",
        "-H",
        "x-b3-traceid: 80f198ee56343ba864fe8b2a57d3eff7",
        "-H",
        "x-b3-spanid: E457B5A2E4D86BD1",
        "-H",
        "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "-H",
        "b3: 0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-1",
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("context: from b3 (b3-single)"), "{text}");
    assert!(
        text.contains("rejected: x-b3-spanid: invalid character 'E' at byte 0 (lower-case hex only) [invalid_character]"),
        "{text}"
    );
    assert!(
        text.contains("ignored: traceparent: valid, but b3 comes first"),
        "{text}"
    );
    assert!(
        text.contains("same trace, another span id (b7ad6b7169203331)"),
        "{text}"
    );
    assert!(!text.contains("x-b3-*"), "{text}");

    // Without --text the output is still the JSON of the contract.
    let out = run(&["decode", "-H", "x-b3-spanid: E457B5A2E4D86BD1"]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(json["errors"][0]["format"], "b3-multi");
}

/// POST a Zipkin v2 JSON body to the collector, as Envoy does.
fn post_spans(addr: std::net::SocketAddr, body: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the collector");
    let head = format!(
        "POST /api/v2/spans HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("write head");
    stream.write_all(body).expect("write body");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read answer");
    answer
}

/// The fixture's spans moved to end a second ago, so a one-hour lookback finds them.
fn recent(fixture: &str) -> Vec<u8> {
    let mut spans: Value =
        serde_json::from_str(&std::fs::read_to_string(data(fixture)).expect("fixture"))
            .expect("JSON");
    let list = spans.as_array_mut().expect("spans");
    let last = list
        .iter()
        .filter_map(|s| Some(s["timestamp"].as_u64()? + s["duration"].as_u64()?))
        .max()
        .expect("timestamps");
    let now = u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_micros(),
    )
    .expect("micros");
    let shift = |v: &mut Value| {
        if let Some(t) = v.as_u64() {
            *v = Value::from(t + (now - 1_000_000 - last));
        }
    };
    for s in list.iter_mut() {
        shift(&mut s["timestamp"]);
        if let Some(annotations) = s.get_mut("annotations").and_then(Value::as_array_mut) {
            for a in annotations {
                shift(&mut a["timestamp"]);
            }
        }
    }
    serde_json::to_vec(&spans).expect("serialise")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zipkin_api_is_read_with_explicit_limit_and_lookback() {
    let collector = Collector::new(CollectorConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(collector.clone().serve(listener, async {
        let _ = stopped.await;
    }));

    let body = recent("headers-dropped.json");
    let answer = tokio::task::spawn_blocking(move || post_spans(addr, &body))
        .await
        .expect("post");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    assert_eq!(collector.trace_ids().len(), 4);

    let base = format!("http://{addr}");
    let (all, limited, too_short) = tokio::task::spawn_blocking(move || {
        (
            doctor_json(&[&base]),
            doctor_json(&["--limit", "2", "--lookback-ms", "60000", &base]),
            // The spans ended a second ago: a 200 ms look back sees none of them.
            doctor_json(&["--lookback-ms", "200", &base]),
        )
    })
    .await
    .expect("doctor");
    let (code, report) = all;
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        (&report["traces"], &report["broken"]),
        (&Value::from(4), &Value::from(1))
    );
    let f = &report["findings"][0];
    assert_eq!(
        (&f["kind"], &f["service"]),
        (&Value::from("headers-dropped"), &Value::from("order"))
    );
    // `--limit 2`: the two most recent traces only.
    assert_eq!(limited.1["traces"], 2, "{}", limited.1);
    // `--lookback-ms` is sent and honoured.
    assert_eq!(too_short.1["traces"], 0, "{}", too_short.1);
    assert_eq!(too_short.0, 0, "{}", too_short.1);

    let _ = stop.send(());
    server.await.expect("join").expect("serve");
}
