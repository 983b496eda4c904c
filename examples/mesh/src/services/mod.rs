//! The four services of the field mesh. Each runs alone (its binary) or in the demo's process;
//! each uses the project's layers exactly as a user would — one server layer, one client
//! layer per channel, nothing at call sites.
//!
//! - [`frontend`]: HTTP/1.1 JSON (`/`, `/users/{id}`, `/orders/{id}`), calls `user` and
//!   `order` over gRPC;
//! - [`user`]: the `user.v1.UserService`;
//! - [`order`]: `order.v1.OrderService`, calls `item` once per line item, concurrently;
//! - [`item`]: `item.v1.ItemService`, one item deliberately slower, an optional injected tail
//!   latency (the canary's regression).

pub mod frontend;
pub mod item;
pub mod order;
pub mod user;

use std::time::Duration;

use b3_propagation::{Propagator, SpanSemantics, TrustPolicy};
use tower::ServiceBuilder;
use tower_trace_headers::{
    Mode, PropagateTraceHeaders, PropagateTraceHeadersLayer, TraceHeadersLayer,
};

use crate::access_log::{AccessLog, AccessLogLayer};
use crate::telemetry::Telemetry;

/// A listener's connections with `TCP_NODELAY` set (without it, Nagle's algorithm and
/// delayed ACKs add ~40 ms to small gRPC responses).
#[must_use]
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A gRPC channel that carries the current trace on every call.
pub type TracedChannel = PropagateTraceHeaders<tonic::transport::Channel>;

/// What every service is configured with.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Formats, trust policy and span semantics.
    pub propagator: Propagator,
    /// How outgoing calls carry the context.
    pub mode: Mode,
    /// Whether the service reports its own spans (off: it only forwards headers).
    pub spans: bool,
    /// The tracer provider.
    pub telemetry: Telemetry,
    /// The access log.
    pub access_log: AccessLog,
    /// The version label (`v1`, `v2`).
    pub version: String,
    /// Whether this service is the edge (clients may not force sampling or pick request ids).
    pub edge: bool,
}

impl ServiceOptions {
    /// Options for `service` with the propagator of `OTEL_PROPAGATORS` (default otherwise),
    /// instrument mode, spans on.
    ///
    /// # Errors
    ///
    /// When `OTEL_PROPAGATORS` names an unknown propagator.
    pub fn from_env(telemetry: Telemetry) -> Result<Self, b3_propagation::UnknownPropagator> {
        Ok(ServiceOptions {
            propagator: Propagator::from_env()?,
            mode: Mode::Instrument,
            spans: true,
            telemetry,
            access_log: AccessLog::Stdout,
            version: "v1".to_owned(),
            edge: false,
        })
    }

    /// The server layer.
    #[must_use]
    pub fn server_layer(&self) -> TraceHeadersLayer {
        let mut propagator = self.propagator.clone();
        if self.edge {
            propagator = propagator
                .to_builder()
                .trust(TrustPolicy::untrusted())
                .build();
        }
        let layer = TraceHeadersLayer::with_propagator(propagator)
            .echo_request_id(true)
            .trace_response(true);
        if self.spans {
            layer.tracer(self.telemetry.tracer())
        } else {
            layer.without_spans()
        }
    }

    /// The client layer.
    #[must_use]
    pub fn client_layer(&self) -> PropagateTraceHeadersLayer {
        let layer = PropagateTraceHeadersLayer::instrument()
            .propagator(self.propagator.clone())
            .mode(self.mode);
        if self.spans && self.mode == Mode::Instrument {
            layer.tracer(self.telemetry.tracer())
        } else {
            layer.without_spans()
        }
    }

    /// The access log layer for `service`.
    #[must_use]
    pub fn access_log_layer(&self, service: &str) -> AccessLogLayer {
        AccessLogLayer::new(self.access_log.clone(), service, &self.version)
    }

    /// A lazily connected, traced channel to `uri` (`http://host:port`).
    ///
    /// # Errors
    ///
    /// When `uri` is not a valid URI.
    pub fn channel(&self, uri: &str) -> Result<TracedChannel, http::uri::InvalidUri> {
        let channel = tonic::transport::Channel::from_shared(uri.to_owned())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy();
        Ok(ServiceBuilder::new()
            .layer(self.client_layer())
            .service(channel))
    }

    /// Whether spans are shared (Zipkin) or child spans.
    #[must_use]
    pub fn semantics(&self) -> SpanSemantics {
        self.propagator.span_semantics()
    }
}
