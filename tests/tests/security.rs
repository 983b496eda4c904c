//! Hostile requests at the edge, end to end, as an operator would check them (FACTS.md: size
//! limits, `tracestate` / `baggage` limits, control characters, the untrusted edge).
//!
//! Every request is written byte by byte on a raw TCP connection, so obs-text, very long
//! values, duplicate field lines, CR / LF / NUL / DEL inside values, a 33-member `tracestate`
//! and oversized `baggage` really reach the server. Those hyper refuses itself (control
//! characters: 400, an oversized head: 431) never reach a service. Then:
//!
//! - **what reached the next hop**: the real `frontend` router (the edge: untrusted trust
//!   policy, the real server and client layers) in front of recording `user` / `order` gRPC
//!   services that keep every metadata map they receive, in instrument and forward mode;
//! - **the running mesh**: a [`LocalMesh`] (frontend → user, order → item) with its embedded
//!   collector and in-memory access log — a hostile request still gets a fresh trace joined
//!   across all four services, with a generated request id in every hop's log line, and no
//!   client-forced debug.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use b3_propagation::{Propagator, RequestId, TraceReason};
use collector::{Collector, ZipkinSpan};
use demo::{LocalMesh, MeshConfig, SERVICES, analysis};
use http::HeaderMap;
use services::access_log::AccessLog;
use services::pb::order::v1::order_service_server::{OrderService, OrderServiceServer};
use services::pb::order::v1::{GetOrderRequest, ListOrdersRequest, ListOrdersResponse, Order};
use services::pb::user::v1::user_service_server::{UserService, UserServiceServer};
use services::pb::user::v1::{GetUserRequest, User};
use services::telemetry::Telemetry;
use services::{ServiceOptions, frontend};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use tower_trace_headers::Mode;

/// Bound on every request, connection and wait.
const TIMEOUT: Duration = Duration::from_secs(10);

const TRACE: &str = "463ac35c9f6413ad48485a3953bb6124";
const SPAN: &str = "a2fb4a1d1a96d312";
const CLIENT_RID: &str = "4f9cf65f-1b6a-bc3b-8d0e-2a7c9b1e5d43"; // Envoy's ClientForced nibble

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1 over TCP.
// ---------------------------------------------------------------------------------------

/// A response head read off the wire.
#[derive(Debug)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The trace id of `traceresponse` (32 hex).
    fn trace_id(&self) -> String {
        self.header("traceresponse")
            .and_then(|v| v.get(3..35))
            .unwrap_or_else(|| panic!("no traceresponse: {self:?}"))
            .to_owned()
    }

    fn request_id(&self) -> String {
        self.header("x-request-id")
            .unwrap_or_else(|| panic!("no x-request-id: {self:?}"))
            .to_owned()
    }
}

/// `GET {path}` with these header lines written as given (no validation, no folding), on a
/// fresh connection (`connection: close`). `None` when the server closed the connection
/// without answering.
async fn raw_get(addr: SocketAddr, path: &str, headers: &[(&str, Vec<u8>)]) -> Option<RawResponse> {
    let mut req =
        format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n").into_bytes();
    for (name, value) in headers {
        req.extend_from_slice(name.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    tokio::time::timeout(TIMEOUT, async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The server may answer (431, 400) and close before reading it all.
        let _ = stream.write_all(&req).await;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
        parse_head(&raw)
    })
    .await
    .expect("request timed out")
}

fn parse_head(raw: &[u8]) -> Option<RawResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let mut lines = raw[..end].split(|&c| c == b'\n');
    let status_line = std::str::from_utf8(lines.next()?).ok()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let colon = l.iter().position(|&c| c == b':')?;
            let name = String::from_utf8_lossy(&l[..colon]).into_owned();
            Some((name, l[colon + 1..].trim_ascii().to_vec()))
        })
        .collect();
    Some(RawResponse { status, headers })
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------
// The hostile requests.
// ---------------------------------------------------------------------------------------

/// A 33-member `tracestate` (FACTS §7: more than 32 discards the whole header).
fn tracestate(members: usize) -> Vec<u8> {
    (0..members)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// `baggage` over both W3C limits of our policy (FACTS §8: 180 members, 8192 bytes).
fn oversized_baggage() -> Vec<u8> {
    (0..400)
        .map(|i| format!("key{i}={}", "v".repeat(40)))
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// One hostile request: its header lines, and whether it carries a valid client trace id the
/// edge honours (FACTS §14: an edge keeps incoming B3 ids; only sampling is not trusted).
struct Hostile {
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    client_trace: bool,
}

/// Requests hyper accepts: their hostile parts must be dropped by our layers.
#[rustfmt::skip]
fn accepted() -> Vec<Hostile> {
    let obs = |prefix: &str| { let mut v = b(prefix); v.extend_from_slice(b"\x80\xff\xc3\xa9"); v };
    vec![
        Hostile { name: "obs-text in every tracing header", client_trace: false, headers: vec![
            ("b3", obs("463ac35c9f6413ad")),
            ("x-b3-traceid", obs("463ac35c")), ("x-b3-spanid", obs("a2fb")), ("x-b3-parentspanid", obs("05e3")),
            ("x-b3-sampled", obs("1")), ("x-b3-flags", obs("1")),
            ("traceparent", obs("00-463ac35c9f6413ad48485a3953bb6124-")), ("tracestate", obs("rojo=")),
            ("baggage", obs("user=")), ("baggage-user", obs("a")), ("ot-baggage-user", obs("a")),
            ("x-request-id", obs("rid-")), ("x-ot-span-context", obs("EhQJ")), ("grpc-trace-bin", obs("AABL")),
        ]},
        Hostile { name: "very long tracing values (16 KiB each)", client_trace: false, headers: vec![
            ("b3", vec![b'a'; 16 * 1024]), ("traceparent", vec![b'0'; 16 * 1024]),
            ("x-b3-traceid", vec![b'a'; 16 * 1024]), ("x-b3-spanid", vec![b'b'; 16 * 1024]),
            ("x-request-id", vec![b'r'; 16 * 1024]), ("x-ot-span-context", vec![b'A'; 16 * 1024]),
        ]},
        Hostile { name: "duplicate lines: two traceparents, two request ids", client_trace: false, headers: vec![
            ("traceparent", format!("00-{TRACE}-{SPAN}-01").into_bytes()),
            ("traceparent", b"00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-01".to_vec()),
            ("x-request-id", b(CLIENT_RID)), ("x-request-id", b"\x80second".to_vec()),
        ]},
        Hostile { name: "x-b3-sampled 0 then 1 (first wins, then the edge ignores it)", client_trace: true, headers: vec![
            ("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN)),
            ("x-b3-sampled", b("0")), ("x-b3-sampled", b("1")),
        ]},
        Hostile { name: "valid ids, obs-text in the ignored parts (x-b3-flags, traceparent tail)", client_trace: true, headers: vec![
            ("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN)), ("x-b3-flags", obs("1")),
            ("traceparent", obs(&format!("cc-{TRACE}-{SPAN}-01-"))),
        ]},
        Hostile { name: "33-member tracestate", client_trace: true, headers: vec![
            ("traceparent", format!("00-{TRACE}-{SPAN}-01").into_bytes()), ("tracestate", tracestate(33)),
        ]},
        Hostile { name: "oversized baggage", client_trace: false, headers: vec![("baggage", oversized_baggage())] },
        Hostile { name: "client-forced debug: x-b3-flags: 1", client_trace: true, headers: vec![
            ("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN)), ("x-b3-flags", b("1")),
        ]},
        Hostile { name: "client-forced debug: b3 …-d", client_trace: true, headers: vec![
            ("b3", format!("{TRACE}-{SPAN}-d").into_bytes()),
        ]},
        Hostile { name: "client-forced sampling: x-b3-sampled: 1", client_trace: true, headers: vec![
            ("x-b3-traceid", b(TRACE)), ("x-b3-spanid", b(SPAN)), ("x-b3-sampled", b("1")),
        ]},
        Hostile { name: "client-forced sampling: traceparent …-01", client_trace: true, headers: vec![
            ("traceparent", format!("00-{TRACE}-{SPAN}-01").into_bytes()),
        ]},
        Hostile { name: "x-envoy-force-trace, x-client-trace-id, client-chosen x-request-id", client_trace: false, headers: vec![
            ("x-envoy-force-trace", b("true")), ("x-client-trace-id", b("client-1")), ("x-request-id", b(CLIENT_RID)),
        ]},
        Hostile { name: "client switches tracing off: b3: 0", client_trace: false, headers: vec![("b3", b("0"))] },
        Hostile { name: "client switches tracing off: x-b3-sampled: 0 alone", client_trace: false, headers: vec![
            ("x-b3-sampled", b("0")),
        ]},
    ]
}

/// A request hyper itself refuses, and the status it answers.
struct Refused {
    name: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    status: u16,
}

/// Requests hyper refuses before any of our code runs: CR, NUL, DEL, another control
/// character or a bare LF inside a value (400), a header block over its buffer limit (431).
/// The edge answers and keeps serving.
#[rustfmt::skip]
fn refused_by_http() -> Vec<Refused> {
    vec![
        Refused { name: "CR inside a value", status: 400,
            headers: vec![("x-b3-traceid", b"463ac35c\r9f6413ad".to_vec())] },
        Refused { name: "NUL inside a value", status: 400,
            headers: vec![("b3", b"463ac35c9f6413ad\0-a2fb4a1d1a96d312-1".to_vec())] },
        Refused { name: "DEL inside a value", status: 400,
            headers: vec![("x-request-id", b"4f9cf65f\x7f1b6a".to_vec())] },
        Refused { name: "a C0 control (SOH) inside a value", status: 400,
            headers: vec![("baggage", b"k=a\x01b".to_vec())] },
        Refused { name: "bare LF splitting a value", status: 400,
            headers: vec![("traceparent", b"00-463ac35c9f6413ad48485a3953bb6124\nx-b3-flags 1".to_vec())] },
        Refused { name: "1 MiB of headers", status: 431,
            headers: vec![("baggage", vec![b'a'; 1024 * 1024])] },
    ]
}

/// `r` is the refusal expected. Only for the oversized head may the answer be lost: the
/// server closes with our bytes unread, and the reset can overtake its 431.
fn check_refused(what: &str, refused: &Refused, r: Option<&RawResponse>) {
    match r {
        Some(r) => assert_eq!(r.status, refused.status, "{what}: {r:?}"),
        None => assert_eq!(refused.status, 431, "{what}: no answer"),
    }
}

// ---------------------------------------------------------------------------------------
// What reached the next hop: the real edge in front of recording gRPC services.
// ---------------------------------------------------------------------------------------

/// The metadata every call to `user` / `order` carried.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<(&'static str, HeaderMap)>>>);

impl Seen {
    fn push<T>(&self, service: &'static str, req: &Request<T>) {
        self.0
            .lock()
            .unwrap()
            .push((service, req.metadata().clone().into_headers()));
    }

    fn take(&self) -> Vec<(&'static str, HeaderMap)> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

struct RecordingUser(Seen);

#[tonic::async_trait]
impl UserService for RecordingUser {
    async fn get_user(&self, req: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        self.0.push("user", &req);
        Ok(Response::new(User {
            id: req.into_inner().id,
            name: "n".to_owned(),
            email: "e".to_owned(),
        }))
    }
}

struct RecordingOrder(Seen);

#[tonic::async_trait]
impl OrderService for RecordingOrder {
    async fn get_order(&self, req: Request<GetOrderRequest>) -> Result<Response<Order>, Status> {
        self.0.push("order", &req);
        Ok(Response::new(Order {
            id: req.into_inner().id,
            user_id: "u-1".to_owned(),
            items: Vec::new(),
            total_cents: 0,
        }))
    }

    async fn list_orders(
        &self,
        req: Request<ListOrdersRequest>,
    ) -> Result<Response<ListOrdersResponse>, Status> {
        self.0.push("order", &req);
        Ok(Response::new(ListOrdersResponse { orders: Vec::new() }))
    }
}

/// The real `frontend` router as the edge (`edge: true`, spans on, exported to an embedded
/// collector: the trace the edge starts is one it reports), calling recording `user` and
/// `order` services over the real traced channels.
struct Edge {
    addr: SocketAddr,
    seen: Seen,
    stops: Vec<oneshot::Sender<()>>,
}

impl Edge {
    async fn start(mode: Mode) -> Self {
        let seen = Seen::default();
        let mut stops = Vec::new();
        let mut grpc = |svc: tonic::service::Routes| {
            let (tx, rx) = oneshot::channel::<()>();
            stops.push(tx);
            async move {
                let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = l.local_addr().unwrap();
                tokio::spawn(async move {
                    tonic::transport::Server::builder()
                        .add_routes(svc)
                        .serve_with_incoming_shutdown(services::incoming(l), async {
                            let _ = rx.await;
                        })
                        .await
                        .unwrap();
                });
                addr
            }
        };
        let user = grpc(tonic::service::Routes::new(UserServiceServer::new(
            RecordingUser(seen.clone()),
        )))
        .await;
        let order = grpc(tonic::service::Routes::new(OrderServiceServer::new(
            RecordingOrder(seen.clone()),
        )))
        .await;
        let collector = Collector::new(collector::CollectorConfig::default());
        let cl = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", cl.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tokio::spawn(collector.serve(cl, async {
            let _ = rx.await;
        }));
        let telemetry = Telemetry::new("frontend", "v1", Some(&endpoint), false).unwrap();
        let opts = ServiceOptions {
            propagator: Propagator::default(),
            mode,
            spans: true,
            telemetry,
            access_log: AccessLog::Off,
            version: "v1".to_owned(),
            edge: true,
            health: services::health::Health::new(),
            serve: serve::ServeOptions::default(),
            metrics: services::metrics::Metrics::new("frontend", "v1"),
        };
        let f = frontend::Frontend::new(
            opts.user_channel(&format!("http://{user}")).unwrap(),
            opts.channel(&format!("http://{order}")).unwrap(),
        );
        let app = frontend::router(f, &opts);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        tokio::spawn(async move {
            axum::serve(l, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        Edge { addr, seen, stops }
    }

    /// Send a request; the response and the metadata of the two downstream calls it made.
    async fn call(
        &self,
        headers: &[(&str, Vec<u8>)],
    ) -> (RawResponse, Vec<(&'static str, HeaderMap)>) {
        self.seen.take();
        let resp = raw_get(self.addr, "/", headers).await.expect("an answer");
        let seen = self.seen.take();
        (resp, seen)
    }

    fn stop(self) {
        for s in self.stops {
            let _ = s.send(());
        }
    }
}

fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).map(|v| v.to_str().unwrap())
}

/// The trace id a downstream call carries (B3 or W3C), 32 hex.
fn downstream_trace(h: &HeaderMap) -> Option<String> {
    get(h, "x-b3-traceid")
        .map(|t| format!("{t:0>32}"))
        .or_else(|| get(h, "traceparent").map(|t| t[3..35].to_owned()))
        .or_else(|| get(h, "b3").map(|t| format!("{:0>32}", t.split('-').next().unwrap())))
}

/// The sampling state a downstream call carries, whatever the format: `debug`, `accept`,
/// `deny`, or `None` (deferred).
fn downstream_sampling(h: &HeaderMap) -> Option<&'static str> {
    let state = |v: &str| match v {
        "1" | "true" => Some("accept"),
        "0" | "false" => Some("deny"),
        "d" => Some("debug"),
        _ => None,
    };
    if get(h, "x-b3-flags") == Some("1") {
        return Some("debug");
    }
    if let Some(v) = get(h, "x-b3-sampled") {
        return state(v);
    }
    if let Some(b3) = get(h, "b3") {
        return b3
            .split('-')
            .nth(if b3.len() == 1 { 0 } else { 2 })
            .and_then(state);
    }
    get(h, "traceparent").map(|t| {
        if u8::from_str_radix(&t[53..55], 16).unwrap() & 1 == 1 {
            "accept"
        } else {
            "deny"
        }
    })
}

/// The same header lines with the client's sampling and debug taken out: no `x-b3-sampled`,
/// `x-b3-flags` or sampling-only `b3`, `b3` cut to `{t}-{s}`, `traceparent` flags `00`.
fn without_sampling(headers: &[(&'static str, Vec<u8>)]) -> Vec<(&'static str, Vec<u8>)> {
    headers
        .iter()
        .filter_map(|(n, v)| {
            let mut v = v.clone();
            match *n {
                "x-b3-sampled" | "x-b3-flags" => return None,
                "b3" if v.len() == 1 => return None,
                "b3" => {
                    let cut = v
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| **c == b'-')
                        .nth(1)
                        .map(|(i, _)| i);
                    v.truncate(cut.unwrap_or(v.len()));
                }
                "traceparent" if v.len() == 55 => v[53..].copy_from_slice(b"00"),
                _ => {}
            }
            Some((*n, v))
        })
        .collect()
}

/// Everything FACTS asks of what the edge sends on, for one hostile request.
fn check_downstream(what: &str, h: &Hostile, resp: &RawResponse, seen: &[(&str, HeaderMap)]) {
    assert_eq!(resp.status, 200, "{what}: {resp:?}");
    assert_eq!(
        seen.len(),
        2,
        "{what}: user and order were each called once"
    );
    let rid = resp.request_id();
    let generated = RequestId::parse(rid.as_bytes()).unwrap();
    assert!(generated.is_uuid(), "{what}: {rid}");
    assert_eq!(
        generated.trace_reason(),
        TraceReason::NotTraceable,
        "{what}"
    );
    let trace = resp.trace_id();
    let sent: Vec<&[u8]> = h.headers.iter().map(|(_, v)| v.as_slice()).collect();
    for (service, m) in seen {
        let what = format!("{what} → {service}");
        // No control character, DEL or obs-text in any downstream header.
        for (name, v) in m {
            assert!(
                v.as_bytes()
                    .iter()
                    .all(|&c| c == b'\t' || (0x20..=0x7e).contains(&c)),
                "{what}: {name}: {v:?}"
            );
        }
        // No hostile value travelled on as such (long values, obs-text, ...). A valid one a
        // client may legitimately continue (its ids) is compared below.
        for (name, v) in m {
            if name.as_str().starts_with("x-b3-") || name == "traceparent" || name == "b3" {
                continue;
            }
            for s in &sent {
                assert!(
                    v.as_bytes() != *s || s.len() < 8,
                    "{what}: {name} forwarded {v:?}"
                );
            }
        }
        // Client-forced debug never survives; Envoy-only headers are not forwarded.
        assert_eq!(get(m, "x-b3-flags"), None, "{what}");
        assert!(
            !get(m, "b3").is_some_and(|v| v.ends_with("-d") || v.contains("-d-")),
            "{what}"
        );
        assert_eq!(get(m, "x-envoy-force-trace"), None, "{what}");
        assert_eq!(get(m, "x-client-trace-id"), None, "{what}");
        // One generated request id from the edge to every call.
        assert_eq!(get(m, "x-request-id"), Some(rid.as_str()), "{what}");
        // One trace per request: the one the response names. A client's valid ids are kept
        // (FACTS §14: the edge honours incoming B3), otherwise it is fresh.
        assert_eq!(
            downstream_trace(m).as_deref(),
            Some(trace.as_str()),
            "{what}: {m:?}"
        );
        if h.client_trace {
            assert_eq!(trace, TRACE, "{what}");
        } else {
            assert_ne!(trace, TRACE, "{what}");
            assert!(
                !sent.iter().any(|s| contains(s, trace.as_bytes())),
                "{what}"
            );
        }
        // tracestate: 33 members, or one invalid member, discard the whole header (FACTS §7).
        assert_eq!(get(m, "tracestate"), None, "{what}");
        // baggage: the edge drops what the client sent (a client outside the mesh does not
        // choose the baggage its services see, nor the `baggage-*` the mesh routes on). These
        // requests send no User-Agent, so the frontend sets none either: no baggage at all.
        assert_eq!(get(m, "baggage"), None, "{what}");
        for (name, _) in m {
            let name = name.as_str();
            assert!(
                !name.starts_with("baggage-")
                    && !name.starts_with("uberctx-")
                    && !name.starts_with("ot-baggage-"),
                "{what}: {name}"
            );
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn hostile_requests_through_the_edge(mode: Mode) {
    let edge = Edge::start(mode).await;

    for h in accepted() {
        let what = format!("{mode:?}: {}", h.name);
        let (resp, seen) = edge.call(&h.headers).await;
        check_downstream(&what, &h, &resp, &seen);
        // Sampling is the edge's decision, never the client's: downstream carries the same
        // sampling state as for the same request without the client's sampling and debug.
        let (_, baseline) = edge.call(&without_sampling(&h.headers)).await;
        assert_eq!(
            (seen.len(), baseline.len()),
            (2, 2),
            "{what}: both calls went on"
        );
        for ((service, m), (_, base)) in seen.iter().zip(&baseline) {
            assert_eq!(
                downstream_sampling(m),
                downstream_sampling(base),
                "{what} → {service}"
            );
        }
    }

    // A 32-member tracestate is within the limit and travels on with its traceparent.
    let (_, seen) = edge
        .call(&[
            ("traceparent", format!("00-{TRACE}-{SPAN}-01").into_bytes()),
            ("tracestate", tracestate(32)),
        ])
        .await;
    assert_eq!(seen.len(), 2, "{mode:?}");
    for (service, m) in &seen {
        assert!(
            m["traceparent"].to_str().unwrap().contains(TRACE),
            "{mode:?} → {service}"
        );
        assert_eq!(
            m["tracestate"].as_bytes(),
            tracestate(32),
            "{mode:?} → {service}"
        );
    }

    // hyper refuses CR / NUL / bare LF inside values and oversized heads itself: never a
    // call downstream, and the edge keeps serving.
    for refused in refused_by_http() {
        let what = format!("{mode:?}: {}", refused.name);
        let resp = raw_get(edge.addr, "/", &refused.headers).await;
        check_refused(&what, &refused, resp.as_ref());
        let seen = edge.seen.take();
        assert!(seen.is_empty(), "{what}: reached {seen:?}");
        let (ok, seen) = edge.call(&[]).await;
        assert_eq!((ok.status, seen.len()), (200, 2), "{what}: still serving");
    }
    edge.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_never_reach_the_next_hop_instrument_mode() {
    hostile_requests_through_the_edge(Mode::Instrument).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_headers_never_reach_the_next_hop_forward_mode() {
    hostile_requests_through_the_edge(Mode::Forward).await;
}

// ---------------------------------------------------------------------------------------
// The running mesh: collector and access log.
// ---------------------------------------------------------------------------------------

/// The spans of `trace` once it is joined across the four services (bounded wait).
async fn joined_trace(collector: &Collector, trace: &str) -> Vec<ZipkinSpan> {
    let joined = collector
        .wait_until(TIMEOUT, |c| {
            analysis::TraceCheck::of(trace, &c.trace(trace)).joined(&SERVICES)
        })
        .await;
    let spans = collector.trace(trace);
    assert!(
        joined,
        "{trace}: {:?}",
        analysis::TraceCheck::of(trace, &spans)
    );
    spans
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_through_the_running_mesh() {
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let collector = mesh.collector.clone().unwrap();
    let mut answered = Vec::new();
    for h in accepted() {
        let resp = raw_get(mesh.frontend, "/", &h.headers)
            .await
            .expect("an answer");
        assert_eq!(resp.status, 200, "{}: {resp:?}", h.name);
        answered.push((h, resp));
    }
    let logged = mesh.access_log.lines().len();
    for refused in refused_by_http() {
        let resp = raw_get(mesh.frontend, "/", &refused.headers).await;
        check_refused(refused.name, &refused, resp.as_ref());
    }
    // Refused by hyper: no service saw them.
    assert_eq!(mesh.access_log.lines().len(), logged);
    mesh.flush().await;

    let lines: Vec<serde_json::Value> = mesh
        .access_log
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (h, resp) in &answered {
        let what = h.name;
        let trace = resp.trace_id();
        let rid = resp.request_id();
        assert_ne!(rid, CLIENT_RID, "{what}");
        if h.client_trace {
            assert_eq!(trace, TRACE, "{what}: the client's valid ids are honoured");
        } else {
            assert_ne!(trace, TRACE, "{what}: a fresh trace");
        }
        // Every hop logged this request under the edge's request id and this trace.
        let mine: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["request_id"] == rid.as_str())
            .collect();
        let services: BTreeSet<&str> = mine
            .iter()
            .map(|l| l["service"].as_str().unwrap())
            .collect();
        assert_eq!(services, SERVICES.into_iter().collect(), "{what}: {mine:?}");
        for l in &mine {
            assert!(
                trace.ends_with(l["trace_id"].as_str().unwrap()),
                "{what}: {l}"
            );
        }
        if h.client_trace {
            // The client's trace: every service reports its spans in it (their root is the
            // client's own span, which nobody here reports), none carrying the client's debug
            // flag.
            let reached = collector
                .wait_until(TIMEOUT, |c| {
                    let spans = c.trace(&trace);
                    SERVICES
                        .iter()
                        .all(|svc| spans.iter().any(|s| s.service() == Some(*svc)))
                })
                .await;
            let spans = collector.trace(&trace);
            assert!(reached, "{what}: {spans:?}");
            assert!(spans.iter().all(|s| !s.debug), "{what}");
            continue;
        }
        // A fresh trace (including when the client said "don't sample": `b3: 0`,
        // `x-b3-sampled: 0`), joined across all four services, one root, nothing debug.
        let spans = joined_trace(&collector, &trace).await;
        assert!(spans.iter().all(|s| !s.debug), "{what}");
        // The item server span hangs under an order client span of the same trace.
        let item = spans
            .iter()
            .find(|s| s.service() == Some("item") && s.kind == Some(collector::SpanKind::Server))
            .unwrap_or_else(|| panic!("{what}: no item server span"));
        let parent = item.parent_id.as_deref().unwrap();
        assert!(
            spans
                .iter()
                .any(|s| s.id == parent && s.service() == Some("order")),
            "{what}: item's parent {parent} is not an order span"
        );
    }
    // No access log line anywhere names the client's request id.
    assert!(lines.iter().all(|l| l["request_id"] != CLIENT_RID));
    mesh.stop().await;
}

/// FACTS §14 (Envoy, ids and no sampling state: "Envoy decides and adds `x-b3-sampled: 1`")
/// and the untrusted policy ("ignore inbound sampling and debug": the edge decides) say a
/// client that sends valid ids gets the edge's own sampling decision, the same as a client
/// that sends nothing (here: sampled, and joined under the client's trace id).
///
/// OpenTelemetry has no "deferred"; the server layer's `deferred_sampling` (default: accept)
/// is the edge's decision, so the SDK's `ParentBased` sampler does not drop the trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ids_at_the_edge_get_the_edges_own_sampling_decision() {
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let collector = mesh.collector.clone().unwrap();
    let resp = raw_get(
        mesh.frontend,
        "/",
        &[
            ("x-b3-traceid", b(TRACE)),
            ("x-b3-spanid", b(SPAN)),
            ("x-b3-sampled", b("1")),
        ],
    )
    .await
    .expect("an answer");
    assert_eq!((resp.status, resp.trace_id()), (200, TRACE.to_owned()));
    mesh.flush().await;
    let reported = collector
        .wait_until(TIMEOUT, |c| {
            let check = analysis::TraceCheck::of(TRACE, &c.trace(TRACE));
            SERVICES.iter().all(|s| check.services.contains(*s))
        })
        .await;
    assert!(
        reported,
        "{:?}",
        analysis::TraceCheck::of(TRACE, &collector.trace(TRACE))
    );
    mesh.stop().await;
}
