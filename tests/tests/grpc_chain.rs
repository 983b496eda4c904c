//! Real tonic servers on 127.0.0.1:0: a test client calls service A, whose handler calls
//! service B; both are `tonic-health` services with the interceptors of this crate, and
//! record what they received.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use b3_propagation::codec::grpc_trace_bin;
use b3_propagation::error::{ErrorKind, Field};
use b3_propagation::{ContextFormat, Format, Propagator, Sampling, TrustPolicy};
use grpc_interceptor::{ClientInterceptor, Mode, RequestExt, RequestTrace, ServerInterceptor};
use http::HeaderMap;
use tonic::metadata::{AsciiMetadataValue, BinaryMetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tower_trace_headers::TraceHeadersLayer;

/// What a hop received: its metadata (after the server interceptor) and its trace.
#[derive(Clone, Debug)]
struct Seen {
    metadata: HeaderMap,
    trace: RequestTrace,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// How A's handler hands its trace to the call to B.
#[derive(Clone, Copy, Debug)]
enum Carry {
    /// `request.in_trace(..)`: current across the handler's awaits.
    InTrace,
    /// A `RequestTrace` in the outgoing call's extensions.
    Extension,
    /// `ClientInterceptor::with_trace`.
    Given,
    /// Nothing: the handler neither wraps its future nor passes the trace.
    Nothing,
}

struct Hop {
    log: Log,
    next: Option<(Channel, ClientInterceptor, Carry)>,
}

#[tonic::async_trait]
impl Health for Hop {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let trace = request
            .trace()
            .expect("ServerInterceptor installed")
            .clone();
        self.log.lock().unwrap().push(Seen {
            metadata: request.metadata().clone().into_headers(),
            trace: trace.clone(),
        });
        let Some((channel, interceptor, carry)) = &self.next else {
            return Ok(Response::new(HealthCheckResponse { status: 1 }));
        };
        let mut client = HealthClient::with_interceptor(channel.clone(), interceptor.clone());
        match carry {
            Carry::InTrace => {
                request
                    .in_trace(|request| async move {
                        // An await point before the call: the trace must survive it.
                        tokio::task::yield_now().await;
                        client.check(request.into_inner()).await
                    })
                    .await
            }
            Carry::Extension => {
                let mut call = Request::new(request.into_inner());
                call.extensions_mut().insert(trace);
                client.check(call).await
            }
            Carry::Given => {
                let mut client = HealthClient::with_interceptor(
                    channel.clone(),
                    interceptor.clone().trace(trace),
                );
                client.check(request.into_inner()).await
            }
            Carry::Nothing => {
                tokio::task::yield_now().await;
                client.check(request.into_inner()).await
            }
        }
    }

    type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

async fn serve(hop: Hop, interceptor: ServerInterceptor) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = HealthServer::with_interceptor(hop, interceptor);
    tokio::spawn(
        Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    addr
}

/// A server with `tower-trace-headers`' server layer, and optionally the interceptor too.
async fn serve_layered(hop: Hop, interceptor: Option<ServerInterceptor>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut server = Server::builder().layer(TraceHeadersLayer::new());
    match interceptor {
        Some(i) => tokio::spawn(
            server
                .add_service(HealthServer::with_interceptor(hop, i))
                .serve_with_incoming(incoming),
        ),
        None => tokio::spawn(
            server
                .add_service(HealthServer::new(hop))
                .serve_with_incoming(incoming),
        ),
    };
    addr
}

struct Chain {
    a: SocketAddr,
    a_log: Log,
    b_log: Log,
}

impl Chain {
    /// B, then A calling B with `client` and `carry`.
    async fn new(
        a_server: ServerInterceptor,
        client: ClientInterceptor,
        carry: Carry,
        b_server: ServerInterceptor,
    ) -> Chain {
        let b_log = Log::default();
        let b = serve(
            Hop {
                log: b_log.clone(),
                next: None,
            },
            b_server,
        )
        .await;
        let channel = Channel::from_shared(format!("http://{b}"))
            .unwrap()
            .connect_lazy();
        let a_log = Log::default();
        let a = serve(
            Hop {
                log: a_log.clone(),
                next: Some((channel, client, carry)),
            },
            a_server,
        )
        .await;
        Chain { a, a_log, b_log }
    }

    async fn simple(mode: Mode, carry: Carry) -> Chain {
        Chain::new(
            ServerInterceptor::new(),
            ClientInterceptor::instrument().mode(mode),
            carry,
            ServerInterceptor::new(),
        )
        .await
    }

    /// Call A with this metadata (ASCII values as raw bytes, then binary values).
    async fn call(
        &self,
        ascii: &[(&'static str, &[u8])],
        binary: &[(&'static str, BinaryMetadataValue)],
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let mut request = Request::new(HealthCheckRequest::default());
        for (k, v) in ascii {
            let v = AsciiMetadataValue::try_from(*v).unwrap();
            request.metadata_mut().append(*k, v);
        }
        for (k, v) in binary {
            request.metadata_mut().append_bin(*k, v.clone());
        }
        let channel = Channel::from_shared(format!("http://{}", self.a))
            .unwrap()
            .connect_lazy();
        let mut client = HealthClient::new(channel);
        client.check(request).await
    }

    fn a(&self) -> Seen {
        only(&self.a_log)
    }

    fn b(&self) -> Seen {
        only(&self.b_log)
    }
}

fn only(log: &Log) -> Seen {
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1, "one request per hop");
    log[0].clone()
}

fn header<'a>(m: &'a HeaderMap, name: &str) -> Option<&'a str> {
    m.get(name).map(|v| v.to_str().unwrap())
}

/// An inbound format, the headers a caller sends for it, and the trace id they carry.
struct Inbound {
    name: &'static str,
    headers: Vec<(&'static str, &'static [u8])>,
    trace_id: Option<&'static str>,
    request_id: Option<&'static str>,
}

fn inbound_formats() -> Vec<Inbound> {
    vec![
        Inbound {
            name: "b3 multi",
            headers: vec![
                ("x-b3-traceid", b"48485a3953bb6124"), // 64-bit: kept at 64 bits
                ("x-b3-spanid", b"a2fb4a1d1a96d312"),
                ("x-b3-parentspanid", b"0020000000000001"),
                ("x-b3-sampled", b"1"),
                ("x-request-id", b"4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43"),
            ],
            trace_id: Some("48485a3953bb6124"),
            request_id: Some("4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43"),
        },
        Inbound {
            name: "b3 single",
            headers: vec![(
                "b3",
                b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            )],
            trace_id: Some("80f198ee56343ba864fe8b2a57d3eff7"),
            request_id: None,
        },
        Inbound {
            name: "traceparent",
            headers: vec![
                (
                    "traceparent",
                    b"00-4bf92f3577b34da6a3ce929d000e4736-00f067aa0ba902b7-01",
                ),
                ("tracestate", b"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                ("x-request-id", b"edge-id-17"),
                ("baggage", b"user=alice"),
            ],
            trace_id: Some("4bf92f3577b34da6a3ce929d000e4736"),
            request_id: Some("edge-id-17"),
        },
        Inbound {
            name: "none",
            headers: vec![],
            trace_id: None,
            request_id: None,
        },
    ]
}

/// The checks every mode shares: one trace (or none, when none came in: nothing reports
/// here), one request id, from the caller to B.
fn check_one_trace_one_request_id(f: &Inbound, a: &Seen, b: &Seen) -> (Option<String>, String) {
    let name = f.name;
    let trace_id = a.trace.span().map(|s| s.trace_id().unwrap().to_string());
    assert_eq!(
        trace_id.as_deref(),
        f.trace_id,
        "{name}: A continues the caller's trace, and invents none"
    );
    assert_eq!(
        b.trace.remote().map(|r| r.trace_id().unwrap().to_string()),
        trace_id,
        "{name}"
    );
    assert!(
        a.trace.errors().is_empty(),
        "{name}: {:?}",
        a.trace.errors()
    );
    assert!(
        b.trace.errors().is_empty(),
        "{name}: {:?}",
        b.trace.errors()
    );

    let request_id = a.trace.request_id().unwrap().as_str().to_owned();
    if let Some(expected) = f.request_id {
        assert_eq!(request_id, expected, "{name}: kept");
    }
    // Written back into A's metadata, sent to B, the same in B's trace.
    assert_eq!(
        header(&a.metadata, "x-request-id"),
        Some(&*request_id),
        "{name}"
    );
    assert_eq!(
        header(&b.metadata, "x-request-id"),
        Some(&*request_id),
        "{name}"
    );
    assert_eq!(b.trace.request_id().unwrap().as_str(), request_id, "{name}");
    (trace_id, request_id)
}

/// B received exactly the context A received: the caller's span, no id of A's own.
fn check_transparent(f: &Inbound, a: &Seen, b: &Seen) {
    let name = f.name;
    assert!(
        a.trace.local().is_none(),
        "{name}: an interceptor reports no span"
    );
    for (k, _) in &f.headers {
        assert_eq!(
            b.metadata.get_all(*k).iter().collect::<Vec<_>>(),
            a.metadata.get_all(*k).iter().collect::<Vec<_>>(),
            "{name}: {k}"
        );
    }
    assert_eq!(
        b.trace.remote(),
        a.trace.remote(),
        "{name}: B's caller is A's caller"
    );
    // Only what came in: no new span id, no other format.
    for k in [
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-parentspanid",
        "traceparent",
    ] {
        if !f.headers.iter().any(|(h, _)| *h == k) {
            assert!(b.metadata.get(k).is_none(), "{name}: {k}");
        }
    }
}

#[tokio::test]
async fn instrument_mode_chain_is_transparent_when_nothing_reports() {
    // Interceptors end no span, and A's handler opens none: A's calls name the caller's
    // span, exactly as received (the headers-only app that must keep the trace joined).
    for f in inbound_formats() {
        let chain = Chain::simple(Mode::Instrument, Carry::InTrace).await;
        chain.call(&f.headers, &[]).await.unwrap();
        let (a, b) = (chain.a(), chain.b());
        let name = f.name;
        check_one_trace_one_request_id(&f, &a, &b);
        check_transparent(&f, &a, &b);
        if let Some(caller) = a.trace.remote() {
            assert_eq!(
                b.trace.remote().unwrap().span_id(),
                caller.span_id(),
                "{name}: the caller's span id, unchanged"
            );
            assert_eq!(
                b.trace.remote().unwrap().sampling(),
                caller.sampling(),
                "{name}"
            );
        }
        if f.name == "traceparent" {
            assert_eq!(
                header(&b.metadata, "tracestate"),
                Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
            );
            assert_eq!(header(&b.metadata, "baggage"), Some("user=alice"));
        }
        if f.name == "b3 multi" {
            // The 64-bit width and the caller's parent travel on.
            assert_eq!(
                header(&b.metadata, "x-b3-traceid"),
                Some("48485a3953bb6124")
            );
            assert_eq!(
                header(&b.metadata, "x-b3-parentspanid"),
                Some("0020000000000001")
            );
            assert_eq!(b.trace.remote().unwrap().sampling(), Sampling::Accept);
        }
    }
}

#[tokio::test]
async fn forward_mode_chain() {
    for f in inbound_formats() {
        let chain = Chain::simple(Mode::Forward, Carry::InTrace).await;
        chain.call(&f.headers, &[]).await.unwrap();
        let (a, b) = (chain.a(), chain.b());
        let name = f.name;
        check_one_trace_one_request_id(&f, &a, &b);
        // B receives exactly what A received; nothing came in, no ids go out.
        check_transparent(&f, &a, &b);
        if f.trace_id.is_none() {
            assert!(b.trace.remote().is_none(), "{name}");
        }
    }
}

#[tokio::test]
async fn every_way_to_hand_over_the_trace() {
    for carry in [Carry::InTrace, Carry::Extension, Carry::Given] {
        let chain = Chain::simple(Mode::Instrument, carry).await;
        chain
            .call(
                &[("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
                &[],
            )
            .await
            .unwrap();
        let (a, b) = (chain.a(), chain.b());
        assert_eq!(
            header(&b.metadata, "b3"),
            Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            "{carry:?}"
        );
        assert_eq!(b.trace.remote(), a.trace.remote(), "{carry:?}");
        assert_eq!(b.trace.request_id(), a.trace.request_id(), "{carry:?}");
    }
}

#[tokio::test]
async fn a_handler_that_passes_nothing_breaks_the_trace() {
    // What the docs warn about: an interceptor cannot keep the trace current across the
    // handler's awaits by itself.
    let chain = Chain::simple(Mode::Instrument, Carry::Nothing).await;
    chain
        .call(
            &[("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            &[],
        )
        .await
        .unwrap();
    let b = chain.b();
    assert!(b.metadata.get("b3").is_none());
    assert!(b.metadata.get("x-b3-traceid").is_none());
    assert!(b.trace.remote().is_none(), "B starts a new trace");
}

#[tokio::test]
async fn untrusted_edge() {
    let chain = Chain::new(
        ServerInterceptor::new().propagator(
            Propagator::builder()
                .trust(TrustPolicy::untrusted())
                .build(),
        ),
        ClientInterceptor::instrument(),
        Carry::InTrace,
        ServerInterceptor::new(),
    )
    .await;
    chain
        .call(
            &[
                ("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d"),
                ("x-request-id", b"client-chosen"),
            ],
            &[],
        )
        .await
        .unwrap();
    let (a, b) = (chain.a(), chain.b());
    assert_eq!(a.trace.remote().unwrap().sampling(), Sampling::Deferred);
    let id = a.trace.request_id().unwrap().as_str();
    assert_ne!(id, "client-chosen");
    assert_eq!(header(&a.metadata, "x-request-id"), Some(id));
    assert_eq!(header(&b.metadata, "x-request-id"), Some(id));
    // The caller's trace and span continue (A reports none), without its debug flag: the
    // edge's distrust is re-encoded, in the format it arrived in.
    assert_eq!(
        header(&b.metadata, "b3"),
        Some("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1")
    );
    assert_eq!(b.trace.remote().unwrap().sampling(), Sampling::Deferred);
    assert!(b.metadata.get("x-b3-flags").is_none());
    assert!(b.metadata.get("x-b3-sampled").is_none());
}

/// A case name, the malformed metadata, and the error it must produce.
type Malformed = (
    &'static str,
    Vec<(&'static str, Vec<u8>)>,
    Format,
    ErrorKind,
);

fn malformed() -> Vec<Malformed> {
    let long_b3 = format!(
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-{}",
        "0".repeat(600)
    );
    vec![
        (
            "oversized b3",
            vec![("b3", long_b3.into_bytes())],
            Format::B3Single,
            ErrorKind::TooLong { len: 652, max: 68 },
        ),
        (
            "oversized request id",
            vec![("x-request-id", vec![b'a'; 300])],
            Format::RequestId,
            ErrorKind::TooLong { len: 300, max: 255 },
        ),
        (
            "tab in a span id",
            vec![
                ("x-b3-traceid", b"463ac35c9f6413ad48485a3953bb6124".to_vec()),
                ("x-b3-spanid", b"a2fb4a1d\t1a96d31".to_vec()),
            ],
            Format::B3Multi,
            ErrorKind::InvalidCharacter {
                byte: b'\t',
                index: 8,
            },
        ),
        (
            "obs-text byte in b3",
            vec![(
                "b3",
                b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd\xff-1".to_vec(),
            )],
            Format::B3Single,
            ErrorKind::InvalidCharacter {
                byte: 0xff,
                index: 48,
            },
        ),
        (
            "wrong length",
            vec![
                ("x-b3-traceid", b"463ac35c9f6413ad4".to_vec()),
                ("x-b3-spanid", b"a2fb4a1d1a96d312".to_vec()),
            ],
            Format::B3Multi,
            ErrorKind::InvalidLength { len: 17 },
        ),
        (
            "upper-case hex",
            vec![(
                "traceparent",
                b"00-4BF92F3577B34DA6A3CE929D000E4736-00f067aa0ba902b7-01".to_vec(),
            )],
            Format::TraceParent,
            ErrorKind::InvalidCharacter {
                byte: b'B',
                index: 4,
            },
        ),
    ]
}

#[tokio::test]
async fn malformed_metadata_is_absent_with_a_reason() {
    for (name, headers, format, kind) in malformed() {
        let chain = Chain::simple(Mode::Forward, Carry::InTrace).await;
        let headers: Vec<(&'static str, &[u8])> =
            headers.iter().map(|(k, v)| (*k, &v[..])).collect();
        chain.call(&headers, &[]).await.expect(name); // served
        let (a, b) = (chain.a(), chain.b());
        assert!(a.trace.remote().is_none(), "{name}: treated as absent");
        let e = a.trace.errors()[0];
        assert_eq!((e.format(), e.kind()), (format, kind), "{name}: {e}");
        // Nothing malformed travels on, and A invents no span in its place (it reports
        // none): B starts no trace from A; the request keeps one id.
        assert!(
            b.trace.errors().is_empty(),
            "{name}: {:?}",
            b.trace.errors()
        );
        for (k, v) in &headers {
            assert_ne!(
                b.metadata.get(*k).map(http::HeaderValue::as_bytes),
                Some(*v),
                "{name}: {k} not forwarded"
            );
        }
        assert!(b.trace.remote().is_none(), "{name}");
        assert_eq!(b.trace.request_id(), a.trace.request_id(), "{name}");
    }
}

#[tokio::test]
async fn strict_mode_rejects_malformed_metadata() {
    for (name, headers, format, kind) in malformed() {
        let chain = Chain::new(
            ServerInterceptor::new().strict(true),
            ClientInterceptor::instrument(),
            Carry::InTrace,
            ServerInterceptor::new(),
        )
        .await;
        let headers: Vec<(&'static str, &[u8])> =
            headers.iter().map(|(k, v)| (*k, &v[..])).collect();
        let status = chain.call(&headers, &[]).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{name}");
        let message = status.message();
        assert!(
            message.contains(&format!("invalid {} header", format.header_name())),
            "{name}: {message}"
        );
        let reason = match kind {
            ErrorKind::TooLong { len, max } => format!("{len} bytes long, at most {max}"),
            ErrorKind::InvalidCharacter { index, .. } => format!("at byte {index}"),
            ErrorKind::InvalidLength { len } => format!("wrong length ({len})"),
            other => panic!("{other:?}"),
        };
        assert!(message.contains(&reason), "{name}: {message}");
        assert!(chain.a_log.lock().unwrap().is_empty(), "{name}: not served");
        assert!(chain.b_log.lock().unwrap().is_empty(), "{name}");
    }
    // Well-formed metadata passes a strict server.
    let chain = Chain::new(
        ServerInterceptor::new().strict(true),
        ClientInterceptor::instrument(),
        Carry::InTrace,
        ServerInterceptor::new().strict(true),
    )
    .await;
    chain
        .call(
            &[("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(chain.b().trace.errors(), &[]);
}

const TRACE_BIN_PADDED: &str = "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE=";
const TRACE_BIN_ID: &str = "4bf92f3577b34da6a3ce929d000e4736";

fn trace_bin_values() -> Vec<BinaryMetadataValue> {
    let padded = BinaryMetadataValue::from_static(TRACE_BIN_PADDED);
    // tonic's own encoding: unpadded.
    let unpadded = BinaryMetadataValue::from_bytes(&padded.to_bytes().unwrap());
    assert_ne!(padded.as_encoded_bytes(), unpadded.as_encoded_bytes());
    vec![padded, unpadded]
}

#[tokio::test]
async fn grpc_trace_bin_is_forwarded_verbatim() {
    for mode in [Mode::Forward, Mode::Instrument] {
        for value in trace_bin_values() {
            let chain = Chain::simple(mode, Carry::InTrace).await;
            chain
                .call(
                    &[("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
                    &[("grpc-trace-bin", value.clone())],
                )
                .await
                .unwrap();
            let (a, b) = (chain.a(), chain.b());
            let received = a.metadata.get("grpc-trace-bin").unwrap();
            assert_eq!(received.as_bytes(), value.as_encoded_bytes(), "{mode:?}");
            assert_eq!(
                b.metadata.get("grpc-trace-bin"),
                Some(received),
                "{mode:?}: byte for byte"
            );
        }
    }
}

#[tokio::test]
async fn grpc_trace_bin_as_a_context_format() {
    let propagator = Propagator::builder()
        .extract([ContextFormat::GrpcTraceBin, ContextFormat::B3Multi])
        .inject([ContextFormat::GrpcTraceBin, ContextFormat::B3Multi])
        .build();
    for mode in [Mode::Forward, Mode::Instrument] {
        for value in trace_bin_values() {
            let chain = Chain::new(
                ServerInterceptor::new().propagator(propagator.clone()),
                ClientInterceptor::instrument()
                    .propagator(propagator.clone())
                    .mode(mode),
                Carry::InTrace,
                ServerInterceptor::new().propagator(propagator.clone()),
            )
            .await;
            chain
                .call(&[], &[("grpc-trace-bin", value.clone())])
                .await
                .unwrap();
            let (a, b) = (chain.a(), chain.b());
            // Decoded at A.
            let remote = a.trace.remote().unwrap();
            assert_eq!(a.trace.source(), Some(ContextFormat::GrpcTraceBin));
            assert_eq!(remote.trace_id().unwrap().to_string(), TRACE_BIN_ID);
            assert_eq!(remote.span_id().unwrap().to_string(), "34f067aa0ba902b7");
            assert_eq!(remote.sampling(), Sampling::Accept);
            // And at B, the same trace.
            let b_remote = b.trace.remote().unwrap();
            assert_eq!(b.trace.source(), Some(ContextFormat::GrpcTraceBin));
            assert_eq!(b_remote.trace_id().unwrap().to_string(), TRACE_BIN_ID);
            // Both modes: nothing reports at A, so the caller's context goes on verbatim.
            let sent = b.metadata.get("grpc-trace-bin").unwrap();
            assert_eq!(
                sent.as_bytes(),
                value.as_encoded_bytes(),
                "{mode:?}: verbatim"
            );
            assert!(b.metadata.get("x-b3-traceid").is_none(), "{mode:?}");
            let cx = grpc_trace_bin::decode(sent.as_bytes()).unwrap();
            assert_eq!(
                cx.span_id(),
                remote.span_id(),
                "{mode:?}: the caller's span"
            );
            assert_eq!(b_remote.span_id(), remote.span_id(), "{mode:?}");
        }
    }
}

#[tokio::test]
async fn malformed_grpc_trace_bin() {
    let propagator = Propagator::builder()
        .extract([ContextFormat::GrpcTraceBin])
        .build();
    // Valid base64 (tonic sends it), but not an OpenCensus context.
    let bad = BinaryMetadataValue::from_bytes(&[0, 0, 1, 2]);
    let chain = Chain::new(
        ServerInterceptor::new().propagator(propagator.clone()),
        ClientInterceptor::forward().propagator(propagator.clone()),
        Carry::InTrace,
        ServerInterceptor::new().propagator(propagator.clone()),
    )
    .await;
    chain
        .call(&[], &[("grpc-trace-bin", bad.clone())])
        .await
        .unwrap();
    let a = chain.a();
    assert!(a.trace.remote().is_none());
    let e = a.trace.errors()[0];
    assert_eq!(e.format(), Format::GrpcTraceBin);
    assert_eq!(e.field(), Some(Field::TraceId));
    assert_eq!(e.kind(), ErrorKind::Truncated);

    let strict = Chain::new(
        ServerInterceptor::new().propagator(propagator).strict(true),
        ClientInterceptor::forward(),
        Carry::InTrace,
        ServerInterceptor::new(),
    )
    .await;
    let status = strict
        .call(&[], &[("grpc-trace-bin", bad)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("invalid grpc-trace-bin header: trace id: truncated"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn the_tower_server_layer_and_the_client_interceptor_mix() {
    for with_interceptor in [false, true] {
        let b_log = Log::default();
        let b = serve(
            Hop {
                log: b_log.clone(),
                next: None,
            },
            ServerInterceptor::new(),
        )
        .await;
        let channel = Channel::from_shared(format!("http://{b}"))
            .unwrap()
            .connect_lazy();
        let a_log = Log::default();
        // The handler passes nothing: the layer keeps the trace current.
        let hop = Hop {
            log: a_log.clone(),
            next: Some((channel, ClientInterceptor::instrument(), Carry::Nothing)),
        };
        let a = serve_layered(hop, with_interceptor.then(ServerInterceptor::new)).await;
        let chain = Chain { a, a_log, b_log };
        chain
            .call(
                &[("b3", b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
                &[],
            )
            .await
            .unwrap();
        let (a, b) = (chain.a(), chain.b());
        // No tracer reports the layer's span here: the layer is transparent too, and B's
        // caller is the span the handler saw — one trace, not two extractions.
        assert!(a.trace.local().is_none());
        let a_span = a.trace.span().unwrap();
        assert_eq!(
            a_span.trace_id().unwrap().to_string(),
            "80f198ee56343ba864fe8b2a57d3eff7"
        );
        assert_eq!(
            b.trace.remote().unwrap().span_id(),
            a_span.span_id(),
            "interceptor too: {with_interceptor}"
        );
        assert_eq!(b.trace.request_id(), a.trace.request_id());
    }
}

#[tokio::test]
async fn fields_and_app_baggage_cross_a_grpc_hop() {
    use b3_propagation::PropagatedField;
    let propagator = Propagator::builder()
        .field(PropagatedField::from_static("end-user"))
        .build();
    let b_log = Log::default();
    let b = serve(
        Hop {
            log: b_log.clone(),
            next: None,
        },
        ServerInterceptor::new().propagator(propagator.clone()),
    )
    .await;
    let channel = Channel::from_shared(format!("http://{b}"))
        .unwrap()
        .connect_lazy();
    // A's handler adds baggage before calling B (the trace is shared with the call).
    struct Tagging(Hop);
    #[tonic::async_trait]
    impl Health for Tagging {
        async fn check(
            &self,
            request: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            request
                .trace()
                .unwrap()
                .set_baggage("user-agent", "Netscape 4.7")
                .unwrap();
            self.0.check(request).await
        }
        type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;
        async fn watch(
            &self,
            _: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Err(Status::unimplemented("watch"))
        }
    }
    let a_log = Log::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap();
    let hop = Tagging(Hop {
        log: a_log.clone(),
        next: Some((
            channel,
            ClientInterceptor::instrument().propagator(propagator.clone()),
            Carry::InTrace,
        )),
    });
    tokio::spawn(
        Server::builder()
            .add_service(HealthServer::with_interceptor(
                hop,
                ServerInterceptor::new().propagator(propagator),
            ))
            .serve_with_incoming(TcpIncoming::from(listener)),
    );
    let chain = Chain { a, a_log, b_log };
    chain
        .call(&[("end-user", b"jason"), ("end-user-bad", b"x")], &[])
        .await
        .unwrap();
    let b = chain.b();
    assert_eq!(header(&b.metadata, "end-user"), Some("jason"));
    assert!(
        b.metadata.get("end-user-bad").is_none(),
        "only configured fields"
    );
    assert_eq!(
        header(&b.metadata, "baggage"),
        Some("user-agent=Netscape%204.7")
    );
    assert_eq!(
        header(&b.metadata, "baggage-user-agent"),
        Some("Netscape 4.7")
    );
    assert_eq!(
        b.trace
            .field(&http::HeaderName::from_static("end-user"))
            .unwrap(),
        "jason"
    );
}
