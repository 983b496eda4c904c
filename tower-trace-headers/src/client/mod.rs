//! The client side: inject the current request's tracing headers into every outgoing call.
//!
//! [`PropagateTraceHeadersLayer`] wraps an HTTP client service (a hyper-util `Client`, a
//! tonic `Channel`, any `Service<http::Request<B>>`). For each outgoing request it takes the
//! trace attached to the request (a [`RequestTrace`](crate::RequestTrace) in its extensions)
//! or else the current one, and writes:
//! - in **forward** mode ([`PropagateTraceHeadersLayer::forward`], what Istio asks of
//!   applications): the context headers exactly as they were received — shared
//!   `HeaderValue`s, no re-encoding, no allocation — so the sidecar creates the spans;
//! - in **instrument** mode ([`PropagateTraceHeadersLayer::instrument`]): the innermost
//!   span some tracer reports, in the propagator's inject formats — with feature
//!   `opentelemetry`, a client span per call under it, named and described as
//!   [`crate::semconv`] says; when nothing at this hop is reported, the caller's context as
//!   forward mode sends it (see [`crate::hop`]: a span id is sent only for a span someone
//!   reports).
//!
//! The response comes back in a [`ResponseBody`], which ends the client span with the body:
//! when it has been read to its end (so a gRPC call's status is read from its trailers, and
//! the span covers the whole response), when it fails, or when it is dropped (a body the
//! application does not read to its end ends the span then, where it lets go of it).
//!
//! Both modes carry `x-request-id`, `tracestate`, baggage and the opaque headers
//! (`x-ot-span-context`, `grpc-trace-bin`, ...). Outside any request, forward mode writes
//! nothing; instrument mode writes only the ids of a reported span the application made
//! current (its own OpenTelemetry span, or the client span started under it).
//!
//! # Example
//!
//! ```
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_trace_headers::PropagateTraceHeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
//! let client = ServiceBuilder::new()
//!     .layer(PropagateTraceHeadersLayer::instrument())
//!     .service(client);
//! // `client.call(request)` now carries the current trace on every call.
//! # drop(client);
//! # }
//! ```

mod future;
pub(crate) mod layer;
mod service;

pub use self::future::ResponseFuture;
pub use self::layer::{Mode, PropagateTraceHeadersLayer};
pub use self::service::PropagateTraceHeaders;
pub use crate::body::ResponseBody;
