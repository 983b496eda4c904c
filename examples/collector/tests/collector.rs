//! Tests of the embedded trace collector, against a real server on 127.0.0.1:0
//! spoken to over raw TCP (so chunked bodies without content-length can be
//! sent exactly as Envoy sends them).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use collector::{
    Annotation, Collector, CollectorConfig, Endpoint, IngestError, PayloadError, RpcStatus,
    SpanKind, ZipkinSpan, from_otlp, normalize_trace_id,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every network step of a test is bounded by this.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The Envoy-style 64-bit trace id shared by the mixed-protocol test.
const TRACE_64: &str = "a1b2c3d4e5f60718";
const TRACE_128: &str = "0000000000000000a1b2c3d4e5f60718";

// ---------------------------------------------------------------------------
// Test server and raw HTTP/1.1 client
// ---------------------------------------------------------------------------

struct Server {
    collector: Collector,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    async fn start(config: CollectorConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let collector = Collector::new(config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(collector.clone().serve(listener, async {
            let _ = rx.await;
        }));
        Self {
            collector,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    async fn default() -> Self {
        Self::start(CollectorConfig::default()).await
    }

    /// Stop the server and check `serve` returned `Ok` promptly.
    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            tx.send(()).expect("server still running");
        }
        let task = self.task.take().expect("server not stopped twice");
        let result = tokio::time::timeout(IO_TIMEOUT, task)
            .await
            .expect("serve did not return after shutdown")
            .expect("serve task panicked");
        result.expect("serve returned an error");
    }

    async fn get(&self, path: &str) -> Resp {
        send(self.addr, "GET", path, &[], Body::None).await
    }

    async fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Resp {
        send(
            self.addr,
            "POST",
            path,
            &[("content-type", content_type)],
            Body::Full(body),
        )
        .await
    }

    async fn post_zipkin(&self, spans: &Json) -> Resp {
        self.post(
            "/api/v2/spans",
            "application/json",
            spans.to_string().as_bytes(),
        )
        .await
    }

    async fn get_json(&self, path: &str) -> Json {
        let resp = self.get(path).await;
        assert_eq!(resp.status, 200, "GET {path}: {}", resp.text());
        assert_eq!(
            resp.header("content-type"),
            Some("application/json"),
            "GET {path}"
        );
        serde_json::from_slice(&resp.body).expect("JSON response body")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

enum Body<'a> {
    None,
    Full(&'a [u8]),
    Chunked(&'a [&'a [u8]]),
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`connection: close`), whole response
/// read to EOF. A connection reset after the response arrived is tolerated
/// (the server may close early on a refused body).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Resp {
    tokio::time::timeout(IO_TIMEOUT, async {
        let mut stream = TcpStream::connect(addr)
            .await
            .expect("connect to the test server");
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &body {
            Body::None => {}
            Body::Full(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
            Body::Chunked(_) => head.push_str("transfer-encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .await
            .expect("write request head");
        match body {
            Body::None => {}
            Body::Full(b) => stream.write_all(b).await.expect("write request body"),
            Body::Chunked(chunks) => {
                for chunk in chunks {
                    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
                    frame.extend_from_slice(chunk);
                    frame.extend_from_slice(b"\r\n");
                    // The server may refuse mid-body (413): ignore write errors.
                    if stream.write_all(&frame).await.is_err() {
                        break;
                    }
                    stream.flush().await.expect("flush chunk");
                }
                let _ = stream.write_all(b"0\r\n\r\n").await;
            }
        }
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
                Err(e) if !raw.is_empty() => {
                    eprintln!("ignoring read error after response: {e}");
                    break;
                }
                Err(e) => panic!("no response: {e}"),
            }
        }
        parse_response(&raw)
    })
    .await
    .expect("request timed out")
}

fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no end of response head");
    let head = std::str::from_utf8(&raw[..split]).expect("UTF-8 response head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .expect("status code")
        .parse()
        .expect("numeric status");
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').expect("header line with a colon");
            (k.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let rest = &raw[split + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        rest[..len.parse::<usize>().expect("numeric content-length")].to_vec()
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size_str = std::str::from_utf8(&data[..line_end]).expect("UTF-8 chunk size");
        let size = usize::from_str_radix(size_str.split(';').next().unwrap_or_default().trim(), 16)
            .expect("hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------
// Payload builders
// ---------------------------------------------------------------------------

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> Value {
    Value::StringValue(v.to_owned())
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    out.write_all(bytes).expect("in memory");
    out.finish().expect("in memory")
}

fn otlp_request(service: &str, scope: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s(service))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: scope.to_owned(),
                    version: "1.2.3".to_owned(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn otlp_span(trace: &str, id: &str, parent: &str, name: &str, kind: i32) -> Span {
    Span {
        trace_id: unhex(trace),
        span_id: unhex(id),
        parent_span_id: unhex(parent),
        name: name.to_owned(),
        kind,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_250_000_000,
        ..Default::default()
    }
}

fn zipkin(trace: &str, id: &str, parent: Option<&str>, service: &str, name: &str, ts: u64) -> Json {
    let mut span = json!({
        "traceId": trace,
        "id": id,
        "name": name,
        "kind": "SERVER",
        "timestamp": ts,
        "duration": 1000,
        "localEndpoint": {"serviceName": service},
    });
    if let Some(p) = parent {
        span["parentId"] = json!(p);
    }
    span
}

fn span_by_id<'a>(spans: &'a [Json], id: &str) -> &'a Json {
    spans
        .iter()
        .find(|s| s["id"] == id)
        .unwrap_or_else(|| panic!("no span {id} in {spans:?}"))
}

// ---------------------------------------------------------------------------
// Ingestion
// ---------------------------------------------------------------------------

/// The demo's situation: the frontend exports OTLP protobuf, the user service
/// OTLP JSON, and the user sidecar (Envoy) Zipkin JSON with a 64-bit trace id
/// and a shared server span. All four spans must join one trace.
#[tokio::test]
async fn otlp_protobuf_json_and_zipkin_join_one_trace() {
    let server = Server::default().await;

    // 1. frontend, OTLP protobuf: SERVER root + CLIENT call to user (error).
    let mut root = otlp_span(TRACE_128, "1111111111111111", "", "GET /", 2);
    root.attributes = vec![
        kv("http.response.status_code", Value::IntValue(200)),
        kv("http.route", s("/")),
        kv(
            "tags",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(s("a")),
                    },
                    AnyValue {
                        value: Some(s("b")),
                    },
                ],
            }),
        ),
    ];
    let mut client = otlp_span(
        TRACE_128,
        "2222222222222222",
        "1111111111111111",
        "GET user",
        3,
    );
    client.attributes = vec![
        kv("peer.service", s("user")),
        kv("network.peer.address", s("10.0.0.7")),
        kv("network.peer.port", Value::IntValue(8080)),
    ];
    client.status = Some(Status {
        message: "upstream reset".to_owned(),
        code: 2,
    });
    client.events = vec![Event {
        time_unix_nano: 1_700_000_000_100_000_000,
        name: "retry".to_owned(),
        attributes: vec![kv("attempt", Value::IntValue(2))],
        dropped_attributes_count: 0,
    }];
    let request = otlp_request("frontend", "mesh.frontend", vec![root, client]);
    let resp = server
        .post(
            "/v1/traces",
            "application/x-protobuf",
            &request.encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(
        ExportTraceServiceResponse::decode(resp.body.as_slice()).unwrap(),
        ExportTraceServiceResponse::default()
    );

    // 2. user sidecar, Zipkin v2 JSON: 64-bit trace id, shared SERVER span
    //    with the caller's client span id.
    let envoy = json!([{
        "traceId": TRACE_64,
        "id": "2222222222222222",
        "parentId": "1111111111111111",
        "name": "user.mesh.svc:8080/*",
        "kind": "SERVER",
        "timestamp": 1_700_000_000_010_000u64,
        "duration": 200_000,
        "localEndpoint": {"serviceName": "user-sidecar", "ipv4": "10.0.0.7", "port": 8080},
        "remoteEndpoint": {"ipv4": "10.0.0.5", "port": 0},
        "tags": {"response_flags": "-", "upstream_cluster": "user_local", "http.status_code": "200"},
        "annotations": [{"timestamp": 1_700_000_000_010_001u64, "value": "ws"}],
        "shared": true
    }]);
    let resp = server.post_zipkin(&envoy).await;
    assert_eq!(resp.status, 202, "{}", resp.text());

    // 3. user service, OTLP JSON with upper-case hex ids (as in the OTLP
    //    examples), string-encoded nanoseconds and integer enums.
    let otlp_json = format!(
        r#"{{
  "resourceSpans": [{{
    "resource": {{"attributes": [{{"key": "service.name", "value": {{"stringValue": "user"}}}}]}},
    "scopeSpans": [{{
      "scope": {{"name": "mesh.user"}},
      "spans": [{{
        "traceId": "{}",
        "spanId": "3333333333333333",
        "parentSpanId": "2222222222222222",
        "name": "get_user",
        "kind": 2,
        "startTimeUnixNano": "1700000000020000000",
        "endTimeUnixNano": "1700000000120000500",
        "attributes": [
          {{"key": "user.id", "value": {{"intValue": "42"}}}},
          {{"key": "cache.hit", "value": {{"boolValue": false}}}}
        ],
        "status": {{"code": 1}}
      }}]
    }}]
  }}]
}}"#,
        TRACE_128.to_ascii_uppercase()
    );
    let resp = server
        .post("/v1/traces", "application/json", otlp_json.as_bytes())
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(resp.text(), "{}");

    // One trace, reachable by both id forms.
    assert_eq!(server.collector.trace_ids(), vec![TRACE_128.to_owned()]);
    let by_64 = server.get_json(&format!("/api/v2/trace/{TRACE_64}")).await;
    let by_128 = server.get_json(&format!("/api/v2/trace/{TRACE_128}")).await;
    let by_upper = server
        .get_json(&format!("/api/v2/trace/{}", TRACE_64.to_ascii_uppercase()))
        .await;
    assert_eq!(by_64, by_128);
    assert_eq!(by_64, by_upper);
    let spans = by_64.as_array().unwrap();
    assert_eq!(spans.len(), 4);
    // Stored at 32 hex, shown as Zipkin shows a 64-bit id: 16 hex.
    assert!(spans.iter().all(|s| s["traceId"] == TRACE_64), "{spans:?}");

    let root = span_by_id(spans, "1111111111111111");
    assert_eq!(root["name"], "GET /");
    assert_eq!(root["kind"], "SERVER");
    assert!(root.get("parentId").is_none());
    assert!(root.get("shared").is_none());
    assert_eq!(root["timestamp"], 1_700_000_000_000_000u64);
    assert_eq!(root["duration"], 250_000);
    assert_eq!(root["localEndpoint"], json!({"serviceName": "frontend"}));
    assert_eq!(root["tags"]["http.response.status_code"], "200");
    assert_eq!(root["tags"]["tags"], r#"["a","b"]"#);
    assert_eq!(root["tags"]["otel.scope.name"], "mesh.frontend");
    assert_eq!(root["tags"]["otel.scope.version"], "1.2.3");
    assert!(root["tags"].get("error").is_none());

    // Two spans share id 2222…: the frontend CLIENT span and Envoy's shared
    // SERVER span.
    let shared_pair: Vec<&Json> = spans
        .iter()
        .filter(|s| s["id"] == "2222222222222222")
        .collect();
    assert_eq!(shared_pair.len(), 2);
    let client = shared_pair.iter().find(|s| s["kind"] == "CLIENT").unwrap();
    assert_eq!(client["parentId"], "1111111111111111");
    assert_eq!(client["tags"]["error"], "upstream reset");
    assert_eq!(client["tags"]["otel.status_code"], "ERROR");
    assert_eq!(
        client["remoteEndpoint"],
        json!({"serviceName": "user", "ipv4": "10.0.0.7", "port": 8080})
    );
    assert_eq!(
        client["annotations"],
        json!([{"timestamp": 1_700_000_000_100_000u64, "value": r#"{"retry":{"attempt":2}}"#}])
    );
    let envoy_span = shared_pair.iter().find(|s| s["kind"] == "SERVER").unwrap();
    assert_eq!(envoy_span["shared"], true);
    assert_eq!(envoy_span["localEndpoint"]["serviceName"], "user-sidecar");
    assert_eq!(envoy_span["localEndpoint"]["port"], 8080);
    assert_eq!(envoy_span["tags"]["upstream_cluster"], "user_local");

    let user = span_by_id(spans, "3333333333333333");
    assert_eq!(user["parentId"], "2222222222222222");
    assert_eq!(user["kind"], "SERVER");
    assert_eq!(user["timestamp"], 1_700_000_000_020_000u64);
    assert_eq!(user["duration"], 100_000);
    assert_eq!(user["tags"]["user.id"], "42");
    assert_eq!(user["tags"]["cache.hit"], "false");
    assert_eq!(user["tags"]["otel.status_code"], "OK");
    assert_eq!(user["tags"]["otel.scope.name"], "mesh.user");

    // The Rust API agrees with the HTTP API.
    let typed = server.collector.trace(TRACE_64);
    assert_eq!(typed.len(), 4);
    assert_eq!(server.collector.trace(TRACE_128), typed);
    assert_eq!(server.collector.spans(), typed, "single trace: same order");
    let services: Vec<Option<&str>> = typed.iter().map(ZipkinSpan::service).collect();
    assert_eq!(
        services,
        [
            Some("frontend"),
            Some("frontend"),
            Some("user-sidecar"),
            Some("user")
        ]
    );
    assert!(typed[2].shared);
    assert_eq!(server.collector.span_count(), 4);
    assert_eq!(server.collector.dropped_spans(), 0);

    server.stop().await;
}

#[tokio::test]
async fn chunked_zipkin_post_without_content_length_is_accepted() {
    let server = Server::default().await;
    let payload = json!([
        zipkin(
            TRACE_64,
            "00000000000000a1",
            None,
            "frontend-sidecar",
            "ingress",
            1_000_000
        ),
        zipkin(
            TRACE_64,
            "00000000000000a2",
            Some("00000000000000a1"),
            "frontend-sidecar",
            "egress",
            1_000_100
        ),
    ])
    .to_string();
    // Split mid-token, as a streaming sender would.
    let bytes = payload.as_bytes();
    let chunks: Vec<&[u8]> = vec![&bytes[..7], &bytes[7..100], &bytes[100..]];
    let resp = send(
        server.addr,
        "POST",
        "/api/v2/spans",
        &[("content-type", "application/json")],
        Body::Chunked(&chunks),
    )
    .await;
    assert_eq!(resp.status, 202, "{}", resp.text());
    let spans = server.collector.trace(TRACE_128);
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ingress", "egress"]);
    assert_eq!(spans[1].parent_id.as_deref(), Some("00000000000000a1"));
    assert_eq!(spans[0].trace_id, TRACE_128);
    server.stop().await;
}

#[tokio::test]
async fn malformed_payloads_are_refused_and_server_keeps_serving() {
    let server = Server::default().await;
    let good = zipkin(TRACE_64, "00000000000000b1", None, "svc", "op", 1);

    let bad_otlp_json_id = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"zz000000000000000000000000000001","spanId":"0000000000000001","name":"x"}]}]}]}"#;
    let zero_otlp_json_trace = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"traceId":"00000000000000000000000000000000","spanId":"0000000000000001","name":"x"}]}]}]}"#;
    let short_span_id = otlp_request(
        "svc",
        "scope",
        vec![otlp_span(TRACE_128, "00000001", "", "x", 1)],
    )
    .encode_to_vec();
    let bad_parent = otlp_request(
        "svc",
        "scope",
        vec![otlp_span(TRACE_128, "0000000000000001", "0001", "x", 1)],
    )
    .encode_to_vec();
    let zipkin_cases: Vec<(Json, &str)> = vec![
        (
            json!([zipkin("xyz", "0000000000000001", None, "s", "n", 1)]),
            "invalid trace id",
        ),
        (
            json!([zipkin(
                "a1b2c3d4e5f6071",
                "0000000000000001",
                None,
                "s",
                "n",
                1
            )]),
            "invalid trace id",
        ),
        (
            json!([zipkin(
                "a1b2c3d4e5f60718a1b2",
                "0000000000000001",
                None,
                "s",
                "n",
                1
            )]),
            "invalid trace id",
        ),
        (
            json!([zipkin(
                "0000000000000000",
                "0000000000000001",
                None,
                "s",
                "n",
                1
            )]),
            "invalid trace id",
        ),
        (
            json!([zipkin(TRACE_64, "0000000000000000", None, "s", "n", 1)]),
            "invalid span id",
        ),
        (
            json!([zipkin(TRACE_64, "00000000000001", None, "s", "n", 1)]),
            "invalid span id",
        ),
        (
            json!([zipkin(TRACE_64, "000000000000000g", None, "s", "n", 1)]),
            "invalid span id",
        ),
        (
            json!([zipkin(
                TRACE_64,
                "0000000000000001",
                Some("xyz"),
                "s",
                "n",
                1
            )]),
            "invalid parent id",
        ),
        // All or nothing: one bad span refuses the whole batch.
        (
            json!([
                good.clone(),
                zipkin("nothex!!nothex!!", "0000000000000002", None, "s", "n", 1)
            ]),
            "invalid trace id",
        ),
        (
            json!([{"traceId": TRACE_64, "id": "0000000000000001", "kind": "SIDEWAYS"}]),
            "invalid Zipkin v2 JSON",
        ),
        (
            json!({"traceId": TRACE_64, "id": "0000000000000001"}),
            "invalid Zipkin v2 JSON",
        ),
    ];

    // (path, content-type, body, expected status, expected reason)
    type RawCase<'a> = (&'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let raw_cases: Vec<RawCase<'_>> = vec![
        // Truncated length-delimited field.
        (
            "/v1/traces",
            Some("application/x-protobuf"),
            vec![0x0a, 0xff, 0xff],
            400,
            "invalid OTLP protobuf",
        ),
        (
            "/v1/traces",
            Some("application/x-protobuf"),
            short_span_id,
            400,
            "invalid span id",
        ),
        (
            "/v1/traces",
            Some("application/x-protobuf"),
            bad_parent,
            400,
            "invalid parent id",
        ),
        (
            "/v1/traces",
            Some("application/json"),
            b"{\"resourceSpans\": [".to_vec(),
            400,
            "invalid OTLP JSON",
        ),
        (
            "/v1/traces",
            Some("application/json"),
            b"not json".to_vec(),
            400,
            "invalid OTLP JSON",
        ),
        (
            "/v1/traces",
            Some("application/json"),
            bad_otlp_json_id.as_bytes().to_vec(),
            400,
            "invalid OTLP JSON",
        ),
        (
            "/v1/traces",
            Some("application/json"),
            zero_otlp_json_trace.as_bytes().to_vec(),
            400,
            "invalid trace id",
        ),
        (
            "/v1/traces",
            Some("text/plain"),
            b"{}".to_vec(),
            415,
            "unsupported content-type",
        ),
        (
            "/v1/traces",
            None,
            b"{}".to_vec(),
            415,
            "missing content-type",
        ),
        (
            "/api/v2/spans",
            Some("application/json"),
            b"[{\"traceId\":".to_vec(),
            400,
            "invalid Zipkin v2 JSON",
        ),
        (
            "/api/v2/spans",
            Some("application/json"),
            Vec::new(),
            400,
            "invalid Zipkin v2 JSON",
        ),
        (
            "/api/v2/spans",
            Some("application/x-protobuf"),
            b"\x0a\x00".to_vec(),
            415,
            "unsupported content-type",
        ),
    ];

    for (body, reason) in &zipkin_cases {
        let resp = server.post_zipkin(body).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.text());
        assert!(resp.text().contains(reason), "{body}: {}", resp.text());
        assert!(
            resp.header("content-type")
                .unwrap()
                .starts_with("text/plain"),
            "{resp:?}"
        );
    }
    for (path, content_type, body, status, reason) in &raw_cases {
        let headers: Vec<(&str, &str)> = content_type
            .iter()
            .map(|ct| ("content-type", *ct))
            .collect();
        let resp = send(server.addr, "POST", path, &headers, Body::Full(body)).await;
        assert_eq!(
            resp.status,
            *status,
            "{path} {content_type:?}: {}",
            resp.text()
        );
        assert!(resp.text().contains(reason), "{path}: {}", resp.text());
    }
    // OTLP/HTTP answers a refusal with a `google.rpc.Status` in the request's encoding.
    let resp = send(
        server.addr,
        "POST",
        "/v1/traces",
        &[("content-type", "application/x-protobuf")],
        Body::Full(&[0x0a, 0xff, 0xff]),
    )
    .await;
    assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));
    let status = RpcStatus::decode(resp.body.as_slice()).expect("a Status");
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(
        status.message.starts_with("invalid OTLP protobuf"),
        "{status:?}"
    );
    let resp = send(
        server.addr,
        "POST",
        "/v1/traces",
        &[("content-type", "application/json")],
        Body::Full(b"not json"),
    )
    .await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let status: Json = serde_json::from_slice(&resp.body).expect("JSON");
    assert_eq!(status["code"], 3, "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid OTLP JSON")
    );

    // Compression: gzip is taken (OTLP/HTTP requires it), anything else is 415, and a body
    // that is not gzip is 400.
    for (path, content_type) in [
        ("/v1/traces", "application/x-protobuf"),
        ("/api/v2/spans", "application/json"),
    ] {
        for (encoding, status, reason) in [("br", 415, "gzip"), ("gzip", 400, "invalid gzip")] {
            let resp = send(
                server.addr,
                "POST",
                path,
                &[
                    ("content-type", content_type),
                    ("content-encoding", encoding),
                ],
                Body::Full(b"\x1f\x8b\x08\x00"),
            )
            .await;
            assert_eq!(resp.status, status, "{path} {encoding}: {}", resp.text());
            assert!(resp.text().contains(reason), "{}", resp.text());
        }
    }

    // Nothing from a refused request was stored, and the server still works.
    assert_eq!(server.collector.span_count(), 0);
    let resp = server.post_zipkin(&json!([good])).await;
    assert_eq!(resp.status, 202, "{}", resp.text());
    // The same span gzipped is the same span: stored once.
    let resp = send(
        server.addr,
        "POST",
        "/api/v2/spans",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "GZIP"),
        ],
        Body::Full(&gzip(json!([good]).to_string().as_bytes())),
    )
    .await;
    assert_eq!(resp.status, 202, "{}", resp.text());
    // An explicit identity encoding and a charset parameter are fine.
    let resp = send(
        server.addr,
        "POST",
        "/v1/traces",
        &[
            ("content-type", "application/json; charset=utf-8"),
            ("content-encoding", "identity"),
        ],
        Body::Full(b"{}"),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(server.collector.span_count(), 1);
    let health = server.get("/health").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    server.stop().await;
}

#[tokio::test]
async fn oversized_bodies_get_413_chunked_or_not() {
    let server = Server::start(CollectorConfig {
        max_body_bytes: 1024,
        ..CollectorConfig::default()
    })
    .await;
    let big = vec![b' '; 4096];

    let resp = server.post("/api/v2/spans", "application/json", &big).await;
    assert_eq!(resp.status, 413, "{}", resp.text());
    let resp = server
        .post("/v1/traces", "application/x-protobuf", &big)
        .await;
    assert_eq!(resp.status, 413, "{}", resp.text());

    let chunk = [b' '; 512];
    let chunks: Vec<&[u8]> = vec![&chunk; 8];
    for (path, content_type) in [
        ("/api/v2/spans", "application/json"),
        ("/v1/traces", "application/json"),
    ] {
        let resp = send(
            server.addr,
            "POST",
            path,
            &[("content-type", content_type)],
            Body::Chunked(&chunks),
        )
        .await;
        assert_eq!(resp.status, 413, "{path}: {}", resp.text());
        // Exactly the reason: plain on the Zipkin route, a JSON `Status` on the OTLP one.
        let expected = if path == "/v1/traces" {
            r#"{"code":8,"message":"request body too large"}"#
        } else {
            "request body too large"
        };
        assert_eq!(resp.text(), expected, "{path}");
    }

    // A gzip body under the limit that inflates past it (a bomb) is 413 too, and one that
    // stays under it is taken.
    let bomb = gzip(&vec![b' '; 1 << 18]);
    assert!(bomb.len() < 1024, "{}", bomb.len());
    for (path, content_type) in [
        ("/api/v2/spans", "application/json"),
        ("/v1/traces", "application/json"),
    ] {
        let resp = send(
            server.addr,
            "POST",
            path,
            &[("content-type", content_type), ("content-encoding", "gzip")],
            Body::Full(&bomb),
        )
        .await;
        assert_eq!(resp.status, 413, "{path}: {}", resp.text());
        assert!(resp.text().contains("once decompressed"), "{}", resp.text());
    }
    let resp = send(
        server.addr,
        "POST",
        "/v1/traces",
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        Body::Full(&gzip(b"{}")),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    // A declared length over the limit is refused at once, before any body byte arrives
    // (on the OTLP route with a `Status`, as every OTLP refusal).
    let resp = send(
        server.addr,
        "POST",
        "/v1/traces",
        &[
            ("content-type", "application/x-protobuf"),
            ("content-length", "100000000"),
        ],
        Body::None,
    )
    .await;
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/x-protobuf"));
    let status = RpcStatus::decode(resp.body.as_slice()).expect("a Status");
    assert_eq!(
        (status.code, status.message.as_str()),
        (8, "request body too large")
    );
    for path in ["/api/v2/spans", "/v1/traces"] {
        let resp = send(
            server.addr,
            "POST",
            path,
            &[
                ("content-type", "application/json"),
                ("content-length", "100000000"),
            ],
            Body::None,
        )
        .await;
        assert_eq!(resp.status, 413, "{path}: {}", resp.text());
        let expected = if path == "/v1/traces" {
            r#"{"code":8,"message":"request body too large"}"#
        } else {
            "request body too large"
        };
        assert_eq!(resp.text(), expected);
    }

    // Still serving, and a body under the limit (chunked too) is fine.
    let payload = json!([zipkin(TRACE_64, "00000000000000c1", None, "svc", "op", 1)]).to_string();
    assert!(payload.len() < 1024);
    let resp = send(
        server.addr,
        "POST",
        "/api/v2/spans",
        &[("content-type", "application/json")],
        Body::Chunked(&[payload.as_bytes()]),
    )
    .await;
    assert_eq!(resp.status, 202, "{}", resp.text());
    assert_eq!(server.collector.span_count(), 1);
    server.stop().await;
}

#[tokio::test]
async fn span_cap_drops_oldest_traces_and_counts_them() {
    let server = Server::start(CollectorConfig {
        max_spans: 5,
        ..CollectorConfig::default()
    })
    .await;
    let trace = |n: u64| format!("{n:032x}");
    let batch = |t: u64, ids: std::ops::Range<u64>| {
        Json::Array(
            ids.map(|i| {
                zipkin(
                    &trace(t),
                    &format!("{i:016x}"),
                    None,
                    "svc",
                    &format!("op{i}"),
                    i,
                )
            })
            .collect(),
        )
    };

    assert_eq!(server.post_zipkin(&batch(1, 1..4)).await.status, 202);
    assert_eq!(server.post_zipkin(&batch(2, 4..6)).await.status, 202);
    assert_eq!(server.collector.span_count(), 5);
    assert_eq!(server.collector.dropped_spans(), 0);

    // Trace 3 does not fit: the oldest trace (1, three spans) goes whole.
    assert_eq!(server.post_zipkin(&batch(3, 6..8)).await.status, 202);
    assert_eq!(server.collector.span_count(), 4);
    assert_eq!(server.collector.dropped_spans(), 3);
    assert_eq!(server.collector.trace_ids(), vec![trace(2), trace(3)]);
    assert_eq!(
        server
            .get(&format!("/api/v2/trace/{}", trace(1)))
            .await
            .status,
        404
    );
    assert!(server.collector.trace(&trace(1)).is_empty());

    // A late span for trace 2 keeps it in first-seen position (still oldest).
    assert_eq!(server.post_zipkin(&batch(2, 8..9)).await.status, 202);
    assert_eq!(server.collector.span_count(), 5);

    // Trace 4 alone exceeds the cap: traces 2 and 3 go, then trace 4 loses
    // its oldest span; the newest five spans remain.
    assert_eq!(server.post_zipkin(&batch(4, 9..15)).await.status, 202);
    assert_eq!(server.collector.span_count(), 5);
    assert_eq!(server.collector.dropped_spans(), 3 + 5 + 1);
    assert_eq!(server.collector.trace_ids(), vec![trace(4)]);
    let names: Vec<String> = server
        .collector
        .spans()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["op10", "op11", "op12", "op13", "op14"]);
    server.stop().await;
}

#[tokio::test]
async fn wait_until_wakes_on_arrival_and_times_out_otherwise() {
    let server = Server::default().await;
    let collector = server.collector.clone();

    // Already true: immediate.
    assert!(
        collector
            .wait_until(Duration::ZERO, |c| c.span_count() == 0)
            .await
    );

    // Woken by the arrival, long before its 10 s timeout.
    let started = Instant::now();
    let payload = json!([
        zipkin(TRACE_64, "00000000000000d1", None, "svc", "one", 1),
        zipkin(TRACE_64, "00000000000000d2", None, "svc", "two", 2),
    ]);
    let (arrived, resp) = tokio::join!(
        collector.wait_until(Duration::from_secs(10), |c| c.trace(TRACE_64).len() == 2),
        server.post_zipkin(&payload),
    );
    assert_eq!(resp.status, 202);
    assert!(arrived);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // Never true: false after the timeout, not before, not much later.
    let started = Instant::now();
    let never = collector
        .wait_until(Duration::from_millis(100), |c| c.span_count() > 2)
        .await;
    let elapsed = started.elapsed();
    assert!(!never);
    assert!(elapsed >= Duration::from_millis(100), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // Spans arriving that do not satisfy the predicate do not end the wait.
    let third = json!([zipkin(
        TRACE_64,
        "00000000000000d3",
        None,
        "svc",
        "three",
        3
    )]);
    let started = Instant::now();
    let (never, resp) = tokio::join!(
        collector.wait_until(Duration::from_millis(100), |c| c.span_count() > 10),
        server.post_zipkin(&third),
    );
    assert_eq!(resp.status, 202);
    assert!(!never);
    assert!(started.elapsed() >= Duration::from_millis(100));
    assert_eq!(collector.span_count(), 3);
    server.stop().await;
}

#[tokio::test]
async fn subscribe_sees_every_ingested_span() {
    let server = Server::default().await;
    let mut live = server.collector.subscribe();
    let request = otlp_request(
        "order",
        "mesh.order",
        vec![otlp_span(
            TRACE_128,
            "000000000000e001",
            "",
            "place_order",
            2,
        )],
    );
    let resp = server
        .post(
            "/v1/traces",
            "application/x-protobuf",
            &request.encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status, 200);
    let resp = server
        .post_zipkin(&json!([zipkin(
            TRACE_64,
            "000000000000e002",
            Some("000000000000e001"),
            "order-sidecar",
            "egress",
            5
        )]))
        .await;
    assert_eq!(resp.status, 202);

    let first = tokio::time::timeout(IO_TIMEOUT, live.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(IO_TIMEOUT, live.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.name, "place_order");
    assert_eq!(first.service(), Some("order"));
    assert_eq!(first.kind, Some(SpanKind::Server));
    assert_eq!(second.name, "egress");
    assert_eq!(second.trace_id, TRACE_128);
    assert_eq!(second.parent_id.as_deref(), Some("000000000000e001"));
    assert!(live.try_recv().is_err(), "exactly two spans were ingested");
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Query API
// ---------------------------------------------------------------------------

/// A sender's retry stores nothing twice; an Envoy on IPv6 keeps its address.
#[tokio::test]
async fn a_retried_batch_is_stored_once_and_ipv6_endpoints_are_kept() {
    let server = Server::default().await;
    let trace = "000000000000000000000000000000f5";
    let mut call = zipkin(
        trace,
        "00000000000000e2",
        Some("00000000000000e1"),
        "frontend",
        "call",
        10,
    );
    call["kind"] = json!("CLIENT");
    call["remoteEndpoint"] = json!({"serviceName": "user", "ipv6": "2001:db8::c001", "port": 8080});
    let payload = json!([
        zipkin(trace, "00000000000000e1", None, "frontend", "get /", 5),
        call,
        zipkin(
            trace,
            "00000000000000e3",
            Some("00000000000000e2"),
            "FrontEnd",
            "Local",
            11
        ),
    ]);
    for _ in 0..2 {
        assert_eq!(server.post_zipkin(&payload).await.status, 202);
    }
    let spans = server.get_json(&format!("/api/v2/trace/{trace}")).await;
    let spans = spans.as_array().unwrap();
    assert_eq!(spans.len(), 3, "{spans:?}");
    // Names are listed lower-cased, as Zipkin stores them: one service, not two.
    assert_eq!(
        server.get_json("/api/v2/services").await,
        json!(["frontend"])
    );
    assert_eq!(
        server.get_json("/api/v2/spans?serviceName=frontend").await,
        json!(["call", "get /", "local"])
    );
    let call = span_by_id(spans, "00000000000000e2");
    assert_eq!(call["remoteEndpoint"]["ipv6"], "2001:db8::c001");

    // As Zipkin reads them: a port of 0 is no port, an empty name no name (an endpoint with
    // nothing else no endpoint), and a span that names itself as parent a root.
    let mut odd = zipkin(
        trace,
        "00000000000000e4",
        Some("00000000000000e4"),
        "frontend",
        "",
        12,
    );
    odd["localEndpoint"]["port"] = json!(0);
    odd["remoteEndpoint"] = json!({"serviceName": "", "port": 0});
    assert_eq!(server.post_zipkin(&json!([odd])).await.status, 202);
    let spans = server.get_json(&format!("/api/v2/trace/{trace}")).await;
    let odd = span_by_id(spans.as_array().unwrap(), "00000000000000e4");
    for absent in ["parentId", "name", "remoteEndpoint"] {
        assert!(odd.get(absent).is_none(), "{absent}: {odd}");
    }
    assert!(odd["localEndpoint"].get("port").is_none(), "{odd}");
    server.stop().await;
}

/// A small OTLP body naming a huge service for many spans would take gigabytes once each
/// span carries the name: 413, nothing stored, and the collector keeps serving. An ordinary
/// large batch is still taken.
#[tokio::test]
async fn an_otlp_body_that_would_blow_up_once_converted_is_413() {
    let server = Server::default().await;
    let trace = "0102030405060708090a0b0c0d0e0f11";
    let spans = |n: u64| -> Vec<Span> {
        (1..=n)
            .map(|i| otlp_span(trace, &format!("{i:016x}"), "", "op", 2))
            .collect()
    };
    let huge = otlp_request(&"s".repeat(256 * 1024), "scope", spans(3000)).encode_to_vec();
    assert!(huge.len() < 512 * 1024, "{}", huge.len());
    match collector::parse_otlp_protobuf(&huge) {
        Err(e @ PayloadError::TooLarge { .. }) => {
            assert!(e.to_string().contains("smaller batches"));
        }
        other => panic!("{:?}", other.map(|v| v.len())),
    }
    let resp = server
        .post("/v1/traces", "application/x-protobuf", &huge)
        .await;
    assert_eq!(resp.status, 413, "{}", resp.text());
    assert_eq!(server.collector.span_count(), 0);

    let ordinary = otlp_request("frontend", "scope", spans(3000)).encode_to_vec();
    let resp = server
        .post("/v1/traces", "application/x-protobuf", &ordinary)
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(server.collector.span_count(), 3000);
    server.stop().await;
}

/// A body of empty messages (two bytes of protobuf, three of JSON, each a struct of a few
/// hundred bytes once decoded) is refused from its bytes, before it is decoded: gzipped to a
/// few kilobytes it would otherwise take half a gigabyte. One of the same size with real
/// spans is taken.
#[tokio::test]
async fn a_body_of_empty_spans_is_413_before_it_is_decoded() {
    let server = Server::default().await;
    let n = 1_000_000;
    // ExportTraceServiceRequest { resource_spans: [{ scope_spans: [{ spans: [{}; n] }] }] }
    let spans = [0x12u8, 0x00].repeat(n);
    let scope = [&[0x12][..], &varint(spans.len()), &spans].concat();
    let protobuf = [&[0x0a][..], &varint(scope.len()), &scope].concat();
    let json = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{}{{}}]}}]}}]}}"#,
        "{},".repeat(n)
    );
    for (content_type, body) in [
        ("application/x-protobuf", protobuf.as_slice()),
        ("application/json", json.as_bytes()),
    ] {
        let parsed = if content_type == "application/json" {
            collector::parse_otlp_json(body)
        } else {
            collector::parse_otlp_protobuf(body)
        };
        assert!(
            matches!(parsed, Err(PayloadError::TooLarge { .. })),
            "{content_type}"
        );
        let packed = gzip(body);
        assert!(packed.len() < 64 * 1024, "{}", packed.len());
        let resp = send(
            server.addr,
            "POST",
            "/v1/traces",
            &[("content-type", content_type), ("content-encoding", "gzip")],
            Body::Full(&packed),
        )
        .await;
        assert_eq!(resp.status, 413, "{content_type}: {}", resp.text());
    }
    assert_eq!(server.collector.span_count(), 0);
    server.stop().await;
}

fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while n >= 0x80 {
        out.push(u8::try_from(n & 0x7f).unwrap_or_default() | 0x80);
        n >>= 7;
    }
    out.push(u8::try_from(n).unwrap_or_default());
    out
}

/// What the Zipkin UI asks besides traces: several traces at once, the service graph, and
/// the autocompletion lists.
#[tokio::test]
async fn trace_many_dependencies_and_autocomplete_answer_as_zipkin() {
    let server = Server::default().await;
    let (t1, t2) = (
        "100000000000000000000000000000a1",
        "100000000000000000000000000000a2",
    );
    let sec = 1_000_000u64; // µs
    let trace = |t: &str, ts: u64, failed: bool| {
        let mut call = zipkin(
            t,
            "0000000000000002",
            Some("0000000000000001"),
            "frontend",
            "call",
            ts,
        );
        call["kind"] = json!("CLIENT");
        let mut user = zipkin(
            t,
            "0000000000000003",
            Some("0000000000000002"),
            "user",
            "get",
            ts,
        );
        if failed {
            user["tags"] = json!({"error": "boom"});
        }
        json!([
            zipkin(t, "0000000000000001", None, "frontend", "get /", ts),
            call,
            user
        ])
    };
    for (t, ts, failed) in [(t1, 100 * sec, false), (t2, 200 * sec, true)] {
        assert_eq!(server.post_zipkin(&trace(t, ts, failed)).await.status, 202);
    }

    let many = server
        .get_json(&format!(
            "/api/v2/traceMany?traceIds={t2},00000000000000ff,{t1}"
        ))
        .await;
    let ids: Vec<&str> = many
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t[0]["traceId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [t2, t1],
        "in the order asked, the unknown one left out"
    );
    for bad in ["", "?traceIds=", "?traceIds=nothex"] {
        let resp = server.get(&format!("/api/v2/traceMany{bad}")).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }

    let links = server
        .get_json("/api/v2/dependencies?endTs=300000&lookback=300000")
        .await;
    assert_eq!(
        links,
        json!([{"parent": "frontend", "child": "user", "callCount": 2, "errorCount": 1}])
    );
    // Only the first trace's root falls in [50 s, 150 s].
    let links = server
        .get_json("/api/v2/dependencies?endTs=150000&lookback=100000")
        .await;
    assert_eq!(
        links,
        json!([{"parent": "frontend", "child": "user", "callCount": 1}])
    );
    assert_eq!(server.get("/api/v2/dependencies").await.status, 400);
    for bad in ["endTs=0", "endTs=150000&lookback=0"] {
        let resp = server.get(&format!("/api/v2/dependencies?{bad}")).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }

    assert_eq!(server.get_json("/api/v2/autocompleteKeys").await, json!([]));
    assert_eq!(
        server
            .get_json("/api/v2/autocompleteValues?key=http.method")
            .await,
        json!([])
    );
    assert_eq!(server.get("/api/v2/autocompleteValues").await.status, 400);
    server.stop().await;
}

#[tokio::test]
async fn the_time_window_tests_a_traces_root_timestamp() {
    let server = Server::default().await;
    let trace = "000000000000000000000000000000f4";
    let sec = 1_000_000u64; // µs
    // A root at 100 s whose child is recorded at 200 s (a late callback).
    let payload = json!([
        zipkin(
            trace,
            "00000000000000d1",
            None,
            "frontend",
            "get /",
            100 * sec
        ),
        zipkin(
            trace,
            "00000000000000d2",
            Some("00000000000000d1"),
            "item",
            "late",
            200 * sec
        ),
    ]);
    assert_eq!(server.post_zipkin(&payload).await.status, 202);
    // As Zipkin: [150 s, 250 s] holds the child only, so not the trace; [50 s, 150 s] does.
    assert_eq!(
        server
            .get_json("/api/v2/traces?endTs=250000&lookback=100000")
            .await,
        json!([])
    );
    let found = server
        .get_json("/api/v2/traces?endTs=150000&lookback=100000")
        .await;
    assert_eq!(found.as_array().map(Vec::len), Some(1), "{found}");
    server.stop().await;
}

#[tokio::test]
async fn query_api_lists_services_span_names_and_filters_traces() {
    let server = Server::default().await;
    let t1 = "000000000000000000000000000000f1";
    let t2 = "00000000000000f2";
    let t3 = "000000000000000000000000000000f3";
    let sec = 1_000_000u64; // µs
    let mut client = zipkin(
        t1,
        "00000000000000a2",
        Some("00000000000000a1"),
        "frontend",
        "get user",
        1000 * sec + 10,
    );
    client["kind"] = json!("CLIENT");
    client["remoteEndpoint"] = json!({"serviceName": "user"});
    client["duration"] = json!(5_000);
    let mut order = zipkin(
        t2,
        "00000000000000b2",
        Some("00000000000000b1"),
        "order",
        "place order",
        2000 * sec + 10,
    );
    order["tags"] = json!({"http.status_code": "500", "error": "true"});
    let payload = json!([
        zipkin(
            t1,
            "00000000000000a1",
            None,
            "frontend",
            "get /",
            1000 * sec
        ),
        client,
        zipkin(
            t1,
            "00000000000000a3",
            Some("00000000000000a2"),
            "user",
            "get user",
            1000 * sec + 20
        ),
        zipkin(
            t2,
            "00000000000000b1",
            None,
            "frontend",
            "get /",
            2000 * sec
        ),
        order,
        zipkin(
            t3,
            "00000000000000c1",
            None,
            "item",
            "list items",
            3000 * sec
        ),
    ]);
    assert_eq!(server.post_zipkin(&payload).await.status, 202);

    let ids = |traces: &Json| -> Vec<String> {
        traces
            .as_array()
            .unwrap()
            .iter()
            .map(|t| normalize_trace_id(t[0]["traceId"].as_str().unwrap()).unwrap())
            .collect()
    };
    let n1 = normalize_trace_id(t1).unwrap();
    let n1 = n1.as_str();
    let n2 = normalize_trace_id(t2).unwrap();
    let n2 = n2.as_str();
    let n3 = normalize_trace_id(t3).unwrap();
    let n3 = n3.as_str();

    assert_eq!(
        server.get_json("/api/v2/services").await,
        json!(["frontend", "item", "order", "user"])
    );
    assert_eq!(
        server.get_json("/api/v2/spans?serviceName=frontend").await,
        json!(["get /", "get user"])
    );
    assert_eq!(
        server
            .get_json("/api/v2/remoteServices?serviceName=frontend")
            .await,
        json!(["user"])
    );
    assert_eq!(
        server.get_json("/api/v2/spans?serviceName=nobody").await,
        json!([])
    );

    // All traces, most recent first; each trace is an array of its spans.
    let all = server.get_json("/api/v2/traces").await;
    assert_eq!(ids(&all), [n3, n2, n1]);
    assert_eq!(all[2].as_array().unwrap().len(), 3);
    assert_eq!(all[1].as_array().unwrap().len(), 2);

    let frontend = server.get_json("/api/v2/traces?serviceName=frontend").await;
    assert_eq!(ids(&frontend), [n2, n1]);
    let frontend_ci = server.get_json("/api/v2/traces?serviceName=FRONTEND").await;
    assert_eq!(frontend_ci, frontend);
    let limited = server
        .get_json("/api/v2/traces?serviceName=frontend&limit=1")
        .await;
    assert_eq!(ids(&limited), [n2]);
    assert_eq!(
        ids(&server.get_json("/api/v2/traces?limit=2").await),
        [n3, n2]
    );
    let by_name = server
        .get_json("/api/v2/traces?spanName=place%20order")
        .await;
    assert_eq!(ids(&by_name), [n2]);
    let service_and_name = server
        .get_json("/api/v2/traces?serviceName=frontend&spanName=get%20user")
        .await;
    assert_eq!(ids(&service_and_name), [n1]);
    assert_eq!(
        ids(&server
            .get_json("/api/v2/traces?remoteServiceName=user")
            .await),
        [n1]
    );
    assert_eq!(
        ids(&server
            .get_json("/api/v2/traces?annotationQuery=http.status_code%3D500")
            .await),
        [n2]
    );
    for query in ["error", "error=", "error%3D%20"] {
        // `key=` is `key`, as Zipkin parses it.
        assert_eq!(
            ids(&server
                .get_json(&format!("/api/v2/traces?annotationQuery={query}"))
                .await),
            [n2],
            "{query}"
        );
    }
    assert_eq!(
        ids(&server.get_json("/api/v2/traces?minDuration=2000").await),
        [n1]
    );
    // endTs/lookback in ms: window [1500 s, 2500 s] holds trace 2 only.
    let window = server
        .get_json("/api/v2/traces?endTs=2500000&lookback=1000000")
        .await;
    assert_eq!(ids(&window), [n2]);
    assert_eq!(
        server.get_json("/api/v2/traces?serviceName=nobody").await,
        json!([])
    );
    // Empty parameters, as the Zipkin UI sends them, mean "unset".
    assert_eq!(
        ids(&server
            .get_json("/api/v2/traces?serviceName=&spanName=&minDuration=&limit=")
            .await)
        .len(),
        3
    );

    // As Zipkin's `QueryRequest.test`: each criterion is met by some span of the service,
    // not all by one. Trace 1's frontend has `get /` (the root) and the 5 ms `get user`
    // client span calling `user`.
    for query in [
        "serviceName=frontend&spanName=get%20/&remoteServiceName=user",
        "serviceName=frontend&spanName=get%20/&minDuration=2000",
    ] {
        let found = server.get_json(&format!("/api/v2/traces?{query}")).await;
        assert_eq!(ids(&found), [n1], "{query}");
    }
    // ...but within the service: `user`'s span does not call `user`.
    assert_eq!(
        server
            .get_json("/api/v2/traces?serviceName=user&remoteServiceName=user")
            .await,
        json!([])
    );
    for bad in [
        "limit=abc",
        "limit=0",
        "minDuration=-1",
        "endTs=soon",
        "maxDuration=10",
        // As Zipkin's `QueryRequest` refuses them.
        "endTs=0",
        "lookback=0",
        "minDuration=0",
        "minDuration=10&maxDuration=5",
    ] {
        let resp = server.get(&format!("/api/v2/traces?{bad}")).await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }

    // Single trace: unknown → 404, malformed → 400.
    let unknown = server
        .get("/api/v2/trace/00000000000000000000000000000bad")
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.text());
    assert_eq!(server.get("/api/v2/trace/nothex").await.status, 400);
    assert_eq!(
        ids(&json!([server
            .get_json(&format!("/api/v2/trace/{t2}"))
            .await])),
        [n2]
    );

    let health = server.get("/health").await;
    assert_eq!((health.status, health.text().as_str()), (200, "ok"));
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Pure functions and the model
// ---------------------------------------------------------------------------

#[test]
fn normalize_trace_id_pads_lowercases_and_rejects_malformed() {
    assert_eq!(normalize_trace_id(TRACE_64).as_deref(), Some(TRACE_128));
    assert_eq!(normalize_trace_id(TRACE_128).as_deref(), Some(TRACE_128));
    assert_eq!(
        normalize_trace_id("5B8EFFF798038103D269B633813FC60C").as_deref(),
        Some("5b8efff798038103d269b633813fc60c")
    );
    for bad in [
        "",
        "abc",
        "a1b2c3d4e5f6071",
        "a1b2c3d4e5f607180",
        "0000000000000000",
        "00000000000000000000000000000000",
        "g1b2c3d4e5f60718",
        " a1b2c3d4e5f6071",
        "a1b2c3d4e5f60718a1b2c3d4e5f6071é",
    ] {
        assert_eq!(normalize_trace_id(bad), None, "{bad:?}");
    }
}

/// The `trace.json` example shipped with opentelemetry-proto (OTLP/JSON with
/// upper-case hex ids) decodes through the crate's serde and converts.
#[test]
fn otlp_json_example_payload_converts() {
    let example = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "my.service"}}]},
    "scopeSpans": [{
      "scope": {"name": "my.library", "version": "1.0.0",
                "attributes": [{"key": "my.scope.attribute", "value": {"stringValue": "some scope attribute"}}]},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parentSpanId": "EEE19B7EC3C1B173",
        "name": "I'm a server span",
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "kind": 2,
        "attributes": [{"key": "my.span.attr", "value": {"stringValue": "some value"}}]
      }]
    }]
  }]
}"#;
    let request: ExportTraceServiceRequest = serde_json::from_str(example).unwrap();
    assert_eq!(
        request.resource_spans[0].scope_spans[0].spans[0].trace_id,
        unhex("5b8efff798038103d269b633813fc60c")
    );
    let spans = from_otlp(&request).unwrap();
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.id, "eee19b7ec3c1b174");
    assert_eq!(span.parent_id.as_deref(), Some("eee19b7ec3c1b173"));
    assert_eq!(span.kind, Some(SpanKind::Server));
    assert_eq!(span.timestamp, 1_544_712_660_000_000);
    assert_eq!(span.duration, 1_000_000);
    assert_eq!(span.service(), Some("my.service"));
    assert_eq!(span.tags["my.span.attr"], "some value");
    assert_eq!(span.tags["otel.scope.name"], "my.library");
    assert_eq!(span.tags["otel.scope.version"], "1.0.0");
    assert_eq!(span.tags.len(), 3);
}

#[test]
fn from_otlp_maps_kinds_values_status_and_edge_cases() {
    let trace = "0102030405060708090a0b0c0d0e0f10";
    let mut spans: Vec<Span> = (0..=5)
        .map(|kind| otlp_span(trace, &format!("{:016x}", kind + 1), "", "k", kind))
        .collect();
    // Internal span with every attribute type, OK status, dropped counts,
    // an event without attributes and end before start.
    let internal = &mut spans[1];
    internal.attributes = vec![
        kv("b", Value::BoolValue(true)),
        kv("i", Value::IntValue(-7)),
        kv("d", Value::DoubleValue(1.5)),
        kv("bytes", Value::BytesValue(b"foo".to_vec())),
        kv(
            "ints",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::IntValue(1)),
                    },
                    AnyValue {
                        value: Some(Value::BoolValue(false)),
                    },
                ],
            }),
        ),
        kv(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![kv("k", s("v"))],
            }),
        ),
        kv("error", s("false")),
    ];
    internal.status = Some(Status {
        message: String::new(),
        code: 1,
    });
    internal.dropped_attributes_count = 3;
    internal.events = vec![Event {
        time_unix_nano: 2_000_000,
        name: "cache miss".to_owned(),
        attributes: Vec::new(),
        dropped_attributes_count: 0,
    }];
    internal.end_time_unix_nano = internal.start_time_unix_nano - 5;
    // Error without message; server span keeps no remote endpoint.
    spans[2].status = Some(Status {
        message: String::new(),
        code: 2,
    });
    spans[2].attributes = vec![kv("peer.service", s("db"))];
    // All-zero parent means root.
    spans[3].parent_span_id = vec![0; 8];
    spans[3].attributes = vec![
        kv("server.address", s("item.mesh")),
        kv("server.port", Value::IntValue(9000)),
    ];

    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: None,
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let out = from_otlp(&request).unwrap();
    let kinds: Vec<Option<SpanKind>> = out.iter().map(|s| s.kind).collect();
    assert_eq!(
        kinds,
        [
            None,
            None,
            Some(SpanKind::Server),
            Some(SpanKind::Client),
            Some(SpanKind::Producer),
            Some(SpanKind::Consumer)
        ]
    );
    assert!(out.iter().all(|s| s.service() == Some("unknown_service")));

    let internal = &out[1];
    let tags: Vec<(&str, &str)> = internal
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            ("b", "true"),
            ("bytes", "Zm9v"),
            ("d", "1.5"),
            ("i", "-7"),
            ("ints", "[1,false]"),
            ("map", r#"{"k":"v"}"#),
            ("otel.dropped_attributes_count", "3"),
            ("otel.status_code", "OK"),
        ]
    );
    assert_eq!(internal.duration, 1, "end before start → 1 µs");
    assert_eq!(
        internal.annotations,
        [Annotation {
            timestamp: 2_000,
            value: "cache miss".to_owned()
        }]
    );

    let server = &out[2];
    assert_eq!(server.tags["error"], "true");
    assert_eq!(server.tags["otel.status_code"], "ERROR");
    assert_eq!(server.remote_endpoint, None);

    let client = &out[3];
    assert_eq!(client.parent_id, None);
    assert_eq!(
        client.remote_endpoint,
        Some(Endpoint {
            service_name: Some("item.mesh".to_owned()),
            ipv4: None,
            ipv6: None,
            port: Some(9000),
        })
    );

    // Malformed ids are errors, not panics.
    let bad = |span: Span| ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let ok_span = otlp_span(trace, "0000000000000001", "", "x", 1);
    let mut no_trace = ok_span.clone();
    no_trace.trace_id.clear();
    assert!(matches!(
        from_otlp(&bad(no_trace)),
        Err(IngestError::InvalidTraceId(_))
    ));
    let mut long_trace = ok_span.clone();
    long_trace.trace_id.push(1);
    assert!(matches!(
        from_otlp(&bad(long_trace)),
        Err(IngestError::InvalidTraceId(_))
    ));
    let mut zero_span = ok_span.clone();
    zero_span.span_id = vec![0; 8];
    assert!(matches!(
        from_otlp(&bad(zero_span)),
        Err(IngestError::InvalidSpanId(_))
    ));
    let mut short_parent = ok_span.clone();
    short_parent.parent_span_id = vec![1; 4];
    assert!(matches!(
        from_otlp(&bad(short_parent)),
        Err(IngestError::InvalidParentId(_))
    ));
    // A 64-bit OTLP trace id is accepted and padded like a Zipkin one.
    let mut short_trace = ok_span;
    short_trace.trace_id = unhex(TRACE_64);
    assert_eq!(from_otlp(&bad(short_trace)).unwrap()[0].trace_id, TRACE_128);
}

#[test]
fn zipkin_span_json_uses_zipkin_field_names_and_omits_empty_fields() {
    let span = ZipkinSpan {
        trace_id: TRACE_128.to_owned(),
        id: "0000000000000001".to_owned(),
        parent_id: None,
        name: "op".to_owned(),
        kind: Some(SpanKind::Producer),
        timestamp: 10,
        duration: 2,
        local_endpoint: Some(Endpoint {
            service_name: Some("svc".to_owned()),
            ipv4: Some("10.0.0.1".to_owned()),
            ipv6: None,
            port: Some(80),
        }),
        remote_endpoint: None,
        tags: [("k".to_owned(), "v".to_owned())].into(),
        annotations: Vec::new(),
        shared: false,
        debug: true,
    };
    let value = serde_json::to_value(&span).unwrap();
    assert_eq!(
        value,
        json!({
            "traceId": TRACE_128,
            "id": "0000000000000001",
            "name": "op",
            "kind": "PRODUCER",
            "timestamp": 10,
            "duration": 2,
            "localEndpoint": {"serviceName": "svc", "ipv4": "10.0.0.1", "port": 80},
            "tags": {"k": "v"},
            "debug": true
        })
    );
    let back: ZipkinSpan = serde_json::from_value(value).unwrap();
    assert_eq!(back, span);

    // Lenient input: string numbers, non-string tags, nulls.
    let lenient: ZipkinSpan = serde_json::from_value(json!({
        "traceId": TRACE_64,
        "id": "0000000000000002",
        "parentId": null,
        "name": null,
        "kind": "CONSUMER",
        "timestamp": "1700000000000000",
        "duration": 12.0,
        "tags": {"n": 5, "ok": true, "gone": null, "s": "x"},
        "annotations": null,
        "shared": null,
        "remoteEndpoint": {"serviceName": "kafka", "ipv6": "::1"}
    }))
    .unwrap();
    assert_eq!(lenient.timestamp, 1_700_000_000_000_000);
    assert_eq!(lenient.duration, 12);
    assert_eq!(lenient.name, "");
    assert_eq!(lenient.kind, Some(SpanKind::Consumer));
    assert_eq!(
        lenient.tags,
        [("n", "5"), ("ok", "true"), ("s", "x")]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into()
    );
    assert_eq!(
        lenient.remote_endpoint.unwrap().service_name.as_deref(),
        Some("kafka")
    );
    assert!(!lenient.shared);
}

#[test]
fn ingest_normalises_ids_and_refuses_bad_batches_whole() {
    let collector = Collector::new(CollectorConfig::default());
    let mut span: ZipkinSpan = serde_json::from_value(json!({
        "traceId": TRACE_64.to_ascii_uppercase(),
        "id": "00000000000000AA",
        "parentId": "0000000000000000",
        "name": "x"
    }))
    .unwrap();
    assert_eq!(collector.ingest(vec![span.clone()]), Ok(1));
    let stored = &collector.spans()[0];
    assert_eq!(stored.trace_id, TRACE_128);
    assert_eq!(stored.id, "00000000000000aa");
    assert_eq!(stored.parent_id, None, "all-zero parent means root");

    span.id = "bad".to_owned();
    let good = collector.spans()[0].clone();
    assert_eq!(
        collector.ingest(vec![good, span]),
        Err(IngestError::InvalidSpanId("bad".to_owned()))
    );
    assert_eq!(collector.span_count(), 1);
    assert!(format!("{collector:?}").contains("span_count: 1"));
}

/// A Zipkin-style client (Envoy's egress, Zipkin JSON) and our server span sharing its id
/// (`shared_span_context`, exported over OTLP, which has no `shared` flag): the Zipkin API
/// marks the server half `shared: true`, as Zipkin's model and py-zipkin do, and leaves the
/// client half alone; a 64-bit trace comes back at 16 hex and is found by either width.
#[tokio::test]
async fn shared_halves_and_64_bit_ids_as_zipkin_shows_them() {
    let server = Server::start(CollectorConfig::default()).await;
    let mut client = zipkin(
        TRACE_64,
        "2222222222222222",
        Some("1111111111111111"),
        "order-sidecar",
        "item",
        1_700_000_000_000_000,
    );
    client["kind"] = json!("CLIENT");
    assert_eq!(server.post_zipkin(&json!([client])).await.status, 202);
    let shared_server = otlp_span(
        TRACE_128,
        "2222222222222222",
        "1111111111111111",
        "GetItem",
        2,
    );
    let other = otlp_span(TRACE_128, "3333333333333333", "2222222222222222", "load", 1);
    let request = otlp_request("item", "tower-trace-headers", vec![shared_server, other]);
    let resp = server
        .post(
            "/v1/traces",
            "application/x-protobuf",
            &request.encode_to_vec(),
        )
        .await;
    assert_eq!(resp.status, 200, "{}", resp.text());

    for id in [TRACE_64, TRACE_128] {
        let trace = server.get_json(&format!("/api/v2/trace/{id}")).await;
        let spans = trace.as_array().unwrap();
        assert_eq!(spans.len(), 3, "{spans:?}");
        assert!(spans.iter().all(|s| s["traceId"] == TRACE_64), "{spans:?}");
        let halves: Vec<&Json> = spans
            .iter()
            .filter(|s| s["id"] == "2222222222222222")
            .collect();
        assert_eq!(halves.len(), 2);
        for h in halves {
            match h["kind"].as_str() {
                Some("SERVER") => assert_eq!(h["shared"], true, "{h}"),
                Some("CLIENT") => assert!(h.get("shared").is_none(), "{h}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            span_by_id(spans, "3333333333333333")
                .get("shared")
                .is_none()
        );
    }
    let all = server.get_json("/api/v2/traces").await;
    assert_eq!(all[0][0]["traceId"], TRACE_64);
    // A 128-bit id stays at 32 hex.
    let wide = "4bf92f3577b34da6a3ce929d000e4736";
    let span = zipkin(
        wide,
        "4444444444444444",
        None,
        "frontend",
        "get /",
        1_700_000_001_000_000,
    );
    assert_eq!(server.post_zipkin(&json!([span])).await.status, 202);
    let trace = server.get_json(&format!("/api/v2/trace/{wide}")).await;
    assert_eq!(trace[0]["traceId"], wide);
}

/// Slow clients: connections that never finish their request headers are closed once the
/// header-read timeout passes, while ordinary requests are served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_finish_their_headers_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let timeout = std::time::Duration::from_millis(600);
    let server = Server::start(CollectorConfig {
        serve: serve::ServeOptions {
            header_read_timeout: timeout,
            ..serve::ServeOptions::default()
        },
        ..CollectorConfig::default()
    })
    .await;
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        s.write_all(b"POST /api/v2/spans HTTP/1.1\r\nhost: collector\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let started = std::time::Instant::now();
    // Served meanwhile.
    for i in 0..5u64 {
        let span = zipkin(
            &format!("{:032x}", i + 1),
            "0000000000000001",
            None,
            "frontend",
            "get /",
            1_700_000_000_000_000,
        );
        assert_eq!(server.post_zipkin(&json!([span])).await.status, 202);
    }
    for mut s in slow {
        let mut buf = Vec::new();
        let closed =
            tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "a slow connection was still open after 5 s");
    }
    let took = started.elapsed();
    assert!(took < timeout * 4, "closed after {took:?}");
    assert_eq!(server.collector.trace_ids().len(), 5);
}
