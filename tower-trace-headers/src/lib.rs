//! Tower layers that make every call of a request part of one trace: the server layer
//! extracts the caller's tracing headers (B3, `traceparent`, `x-request-id`, baggage, ...),
//! keeps the request's trace current across `.await` and into spawned tasks, and the client
//! layer injects it into every outgoing call — HTTP or gRPC, forward or instrument mode.
//!
//! It is the one line a service author adds so that the service shows up in its mesh's
//! traces: no code at call sites, no lost context across `.await` or `tokio::spawn`, the
//! same `x-request-id` from the edge to the innermost service.
//!
//! # Example
//!
//! An axum service that calls another service through a hyper client:
//!
//! ```
//! use axum::{Router, routing::get};
//! use http_body_util::Empty;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_trace_headers::{PropagateTraceHeadersLayer, RequestTrace, TraceHeadersLayer};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! // Client side: every request made with this client carries the current trace.
//! let client = ServiceBuilder::new()
//!     .layer(PropagateTraceHeadersLayer::instrument())
//!     .service(Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>());
//!
//! // Server side: one layer on the router.
//! let app: Router = Router::new()
//!     .route("/", get(move || {
//!         let mut client = client.clone();
//!         async move {
//!             let request = http::Request::get("http://127.0.0.1:9/next").body(Empty::new()).unwrap();
//!             // x-b3-*, traceparent, x-request-id and baggage are added here.
//!             let status = match client.ready().await {
//!                 Ok(client) => client.call(request).await.map(|r| r.status()).ok(),
//!                 Err(_) => None,
//!             };
//!             let trace = RequestTrace::current().expect("inside the request");
//!             format!("request {} answered {status:?}", trace.request_id().unwrap())
//!         }
//!     }))
//!     .layer(TraceHeadersLayer::new());
//! # let _ = app; Ok(()) }
//! ```
//!
//! # What a hop sends when it reports nothing
//!
//! A span id goes into an outgoing header only if some tracer reports that span (see
//! [`hop`]). Without the `opentelemetry` feature, with no provider installed, a sampler that
//! drops, or [`without_spans`](TraceHeadersLayer::without_spans), this hop reports nothing:
//! instrument mode then re-sends the caller's span id, parent and sampling unchanged (as
//! forward mode does), so the next hop — an Envoy sidecar — still joins the caller's trace.
//! With a provider that samples, the server span and a client span per call are reported, and
//! the headers name them; a span the application opens (`#[tracing::instrument]` with
//! `tracing-opentelemetry`) is the parent of the calls made inside it.
//!
//! # Where each piece lives
//!
//! - [`server`]: [`TraceHeadersLayer`] (extract, ensure `x-request-id`, report this hop's
//!   span when sampled, keep the trace current, optional `x-request-id` / `traceresponse`
//!   echo);
//! - [`client`]: [`PropagateTraceHeadersLayer`] (forward or instrument);
//! - [`current`]: [`RequestTrace::current`], the application's baggage and fields
//!   ([`RequestTrace::set_baggage`], [`RequestTrace::set_field`]),
//!   [`FutureExt::with_current_trace`] and `spawn` (feature `tokio`) for spawned tasks,
//!   [`FutureExt::without_trace`] for work outside any request;
//! - [`hop`]: the steps every hop takes, shared with `grpc-interceptor` and the `reqwest`
//!   middleware;
//! - the codecs, the [`Propagator`](b3_propagation::Propagator) and the trust policy come
//!   from [`b3_propagation`].
//!
//! # Frameworks
//!
//! - axum 0.8: `Router::layer(TraceHeadersLayer::new())`;
//! - hyper 1 / hyper-util: wrap the service (`ServiceBuilder::new().layer(..).service(svc)`)
//!   or the legacy `Client`;
//! - tonic 0.14: `Server::builder().layer(TraceHeadersLayer::new())`, and a `Channel` in
//!   `ServiceBuilder::new().layer(PropagateTraceHeadersLayer::instrument()).service(channel)`
//!   (the `grpc-interceptor` crate offers interceptors for the simple case):
//!
//! ```
//! use tonic::transport::{Channel, Server};
//! use tower::ServiceBuilder;
//! use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // Server: every gRPC request is extracted and its trace kept current.
//! let server = Server::builder().layer(TraceHeadersLayer::new());
//! // Client: every call on this channel carries the current trace.
//! let channel = Channel::from_static("http://127.0.0.1:50051").connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .layer(PropagateTraceHeadersLayer::instrument())
//!     .service(channel);
//! // Generated clients take it as is: `UserServiceClient::new(channel)`.
//! # drop((server, channel));
//! # }
//! ```
//!
//! # Feature flags
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `opentelemetry` | Server and client spans through an OpenTelemetry tracer (the global one by default), and [`otel::PresetIdGenerator`] for shared spans | no |
//! | `tracing` | A `tracing` span per request with `trace_id`, `span_id`, `request_id` | no |
//! | `tracing-opentelemetry` | With both: the `tracing` span's parent is this hop's span | no |
//! | `reqwest` | [`reqwest::TraceHeadersMiddleware`] for `reqwest-middleware` | no |
//! | `tokio` | [`spawn`]: `tokio::spawn` that keeps the request's trace and current span in the task | no |
//! | `metrics` | [`metrics::ServerMetrics`]: request-duration histograms (OpenTelemetry HTTP / RPC convention names) in a `prometheus-client` registry, with exemplars naming each bucket's trace | no |

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod builder_ext;
pub mod client;
pub mod current;
mod extras;
pub mod hop;
#[cfg(feature = "opentelemetry")]
mod intern;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
#[cfg(feature = "opentelemetry")]
#[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
pub mod otel;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
pub mod semconv;
pub mod server;
#[cfg(feature = "tracing")]
mod tracing_span;

pub use crate::builder_ext::ServiceBuilderExt;
pub use crate::client::{Mode, PropagateTraceHeaders, PropagateTraceHeadersLayer};
#[cfg(feature = "tokio")]
pub use crate::current::spawn;
pub use crate::current::{CurrentGuard, FutureExt, RequestTrace, TraceStreamExt, WithTrace};
pub use crate::server::{TraceHeaders, TraceHeadersLayer};
