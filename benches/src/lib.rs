//! The side-by-side benchmarks of this workspace against the crates people use today; the
//! code is in `benches/` (`cargo bench -p benches --bench propagation | layers | wire | instructions`).

use std::convert::Infallible;
use std::hint::black_box;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use tower::layer::util::Identity;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt, service_fn};

/// The round trips' response body: empty (and free), a body as the layers' responses need.
pub type Empty = http_body_util::Empty<bytes::Bytes>;

/// A boxed in-process service, as the round-trip benches compose them.
pub type Svc = BoxCloneSyncService<Request<()>, Response<Empty>, Infallible>;

/// The service an outgoing call reaches: reads the headers it got, answers empty.
pub fn downstream() -> Svc {
    BoxCloneSyncService::new(service_fn(|req: Request<()>| async move {
        black_box(req.headers().len());
        Ok::<_, Infallible>(Response::new(Empty::new()))
    }))
}

/// A handler that makes one call through `client`.
pub fn handler(client: Svc) -> Svc {
    BoxCloneSyncService::new(service_fn(move |_req: Request<()>| {
        let client = client.clone();
        async move { client.oneshot(Request::new(())).await }
    }))
}

/// The in-process round trip without layers, built the way the layered configurations are
/// (a boxed server stack whose handler calls through a boxed client stack, each mapping its
/// response, with the identity layer where theirs go), so that a configuration minus `bare`
/// is what its layers cost and not the benches' plumbing.
pub fn bare() -> Svc {
    let client = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|r: Response<Empty>| r)
            .layer(Identity::new())
            .service(downstream()),
    );
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|r: Response<Empty>| r)
            .layer(Identity::new())
            .service(handler(client)),
    )
}

/// The in-process round trip through `server` and, for the handler's call, `client`: the
/// layered configurations of the round-trip benches. Each stack ends its response body where
/// a server or the caller would (the layers' spans end with it).
pub fn layered(
    server: tower_trace_headers::TraceHeadersLayer,
    client: tower_trace_headers::PropagateTraceHeadersLayer,
) -> Svc {
    use tower_trace_headers::server::ResponseBody;
    let client = BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|r: Response<ResponseBody<Empty>>| r.map(|_| Empty::new()))
            .layer(client)
            .service(downstream()),
    );
    BoxCloneSyncService::new(
        ServiceBuilder::new()
            .map_response(|r: Response<ResponseBody<Empty>>| r.map(|_| Empty::new()))
            .layer(server)
            .service(handler(client)),
    )
}

/// What Envoy delivers to an application besides the tracing headers: ten ordinary headers and
/// `x-request-id`.
pub const ENVOY: [(&str, &str); 11] = [
    ("host", "frontend.default.svc.cluster.local:8080"),
    ("user-agent", "curl/8.5.0"),
    ("accept", "*/*"),
    ("accept-encoding", "gzip, deflate"),
    ("content-type", "application/json"),
    ("content-length", "0"),
    ("x-forwarded-proto", "http"),
    ("x-forwarded-for", "10.0.0.7"),
    ("x-envoy-expected-rq-timeout-ms", "15000"),
    ("x-envoy-attempt-count", "1"),
    ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"),
];

/// A request's headers as Envoy delivers them: [`ENVOY`], then `tracing`.
pub fn envoy_headers(tracing: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in ENVOY.iter().chain(tracing) {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
}
