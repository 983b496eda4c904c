//! The server side: extract the caller's headers, ensure a request id, report this hop's
//! span when a tracer samples it, and keep the trace current while the request is handled.
//!
//! [`TraceHeadersLayer`] wraps any `Service<http::Request<B>>` (an axum `Router`, a hyper
//! service, a tonic server). For every request it:
//! 1. extracts the context with the configured [`Propagator`](b3_propagation::Propagator)
//!    (first valid of `b3`, `x-b3-*`, `traceparent` by default; malformed headers count as
//!    absent, their reasons are kept);
//! 2. ensures a valid `x-request-id` — generating a UUIDv4 when it is absent, invalid or
//!    untrusted — and writes it into the request, so handlers and logs see the one id;
//! 3. with feature `opentelemetry` and a provider that samples, starts this hop's server span
//!    (shared or child semantics; a new trace when nothing came in) — with nothing reported,
//!    the hop has no span of its own and the caller's context goes on as it came (see
//!    [What a hop sends when it reports nothing](crate#what-a-hop-sends-when-it-reports-nothing));
//! 4. stores a [`RequestTrace`](crate::RequestTrace) in the request extensions and makes it
//!    current for the inner service's future on every poll;
//! 5. optionally echoes `x-request-id` and a W3C `traceresponse` on the response.
//!
//! The server span is described in [`crate::otel`] (named
//! `{method} {http.route}` with the route template [`TraceHeadersLayer::route`] finds, as
//! [`crate::semconv`] says); with feature `tracing`, a `tracing` span carrying `trace_id`,
//! `span_id` and `request_id`. Both end with the response body (see [`ResponseBody`]).
//!
//! # Example
//!
//! ```
//! use axum::{Router, routing::get};
//! use b3_propagation::{Propagator, TrustPolicy};
//! use tower_trace_headers::{RequestTrace, TraceHeadersLayer};
//!
//! async fn handler() -> String {
//!     let trace = RequestTrace::current().expect("inside a request");
//!     format!("request {}", trace.request_id().expect("always set").as_str())
//! }
//!
//! let app: Router = Router::new()
//!     .route("/", get(handler))
//!     // An edge facing clients: they may not force sampling or pick request ids.
//!     .layer(
//!         TraceHeadersLayer::new()
//!             .propagator(Propagator::builder().trust(TrustPolicy::untrusted()).build())
//!             .echo_request_id(true),
//!     );
//! ```

mod future;
pub(crate) mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::TraceHeadersLayer;
pub use self::service::{TraceHeaders, path_is_under};
pub use crate::body::ResponseBody;

/// How the server layer finds a request's route template (`/users/{id}`, not
/// `/users/42`) in the request's extensions, for span names, `http.route` and metrics labels:
/// for axum, `|e| e.get::<axum::extract::MatchedPath>().map(MatchedPath::as_str)`. See
/// [`TraceHeadersLayer::route`].
pub type RouteFn = for<'a> fn(&'a http::Extensions) -> Option<&'a str>;

/// How the server layer finds the address of a request's peer (the connection's other end)
/// in the request's extensions, for `client.address` and `network.peer.*`: for axum served
/// with `into_make_service_with_connect_info::<SocketAddr>()`,
/// `|e| e.get::<axum::extract::ConnectInfo<SocketAddr>>().map(|c| c.0)`; for tonic,
/// `|e| e.get::<tonic::transport::server::TcpConnectInfo>().and_then(|i| i.remote_addr())`.
/// See [`TraceHeadersLayer::peer_address`].
pub type PeerFn = fn(&http::Extensions) -> Option<std::net::SocketAddr>;
