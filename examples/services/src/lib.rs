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

#![forbid(unsafe_code)]

pub mod access_log;
pub mod cli;
pub mod frontend;
pub mod health;
pub mod item;
pub mod metrics;
pub mod order;
pub mod pb;
pub mod telemetry;
pub mod user;

use std::future::Future;
use std::task::{Context, Poll};
use std::time::Duration;

use b3_propagation::{PropagatedField, Propagator, SpanSemantics, TrustPolicy};
use tower::{Layer, Service, ServiceBuilder};
use tower_trace_headers::{
    Mode, PropagateTraceHeaders, PropagateTraceHeadersLayer, TraceHeadersLayer,
};
use tracing::instrument::WithSubscriber as _;

use crate::access_log::{AccessLog, AccessLogLayer};
use crate::telemetry::Telemetry;

/// The peer of a request, for the server spans' `client.address` and `network.peer.*`: tonic
/// servers record it as `TcpConnectInfo`, axum ones served with connect info as `ConnectInfo`.
fn peer_address(extensions: &http::Extensions) -> Option<std::net::SocketAddr> {
    extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0)
        })
}

/// A listener's connections with `TCP_NODELAY` set (without it, Nagle's algorithm and
/// delayed ACKs add ~40 ms to small gRPC responses).
#[must_use]
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// A gRPC server's stop signal made of `shutdown`, and the moment to stop waiting for it:
/// `drain` after `shutdown` completed. tonic alone waits, after its signal, until every
/// connection has closed, which a client holding an HTTP/2 stream open never does: the
/// service would never exit, and never flush its spans. See [`stop_by`].
pub(crate) fn bounded_shutdown(
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (fired, stopping) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        shutdown.await;
        let _ = fired.send(());
    };
    let cut_off = async move {
        match stopping.await {
            Ok(()) => tokio::time::sleep(drain).await,
            // The server ended before any signal: nothing to cut off.
            Err(_) => std::future::pending().await,
        }
    };
    (signal, cut_off)
}

/// Run `server` until it ends or `cut_off` (see [`bounded_shutdown`]) completes; the calls
/// still open then are dropped.
pub(crate) async fn stop_by<E>(
    server: impl Future<Output = Result<(), E>>,
    cut_off: impl Future<Output = ()>,
) -> Result<(), E> {
    tokio::select! {
        result = server => result,
        () = cut_off => {
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"calls still open when the drain time ran out: stopping without them\n",
            );
            Ok(())
        }
    }
}

/// A gRPC channel that carries the current trace on every call, through
/// `tower-trace-headers`' client layer (a client span per call when the service reports
/// spans).
pub type TracedChannel = PropagateTraceHeaders<tonic::transport::Channel>;

/// A gRPC channel that carries the current trace on every call through `grpc-interceptor`'s
/// [`ClientInterceptor`](grpc_interceptor::ClientInterceptor): no client span, the calls name
/// the innermost span the service reports (the frontend's server span).
pub type InterceptedChannel = tonic::service::interceptor::InterceptedService<
    tonic::transport::Channel,
    grpc_interceptor::ClientInterceptor,
>;

/// The frontend's channel to `user`: through the client interceptor, except with shared span
/// semantics, where the callee's server span *reuses* the span id it receives: that must be a
/// client span of its own, which only the client layer makes — an interceptor would hand over
/// the frontend's server span id, and two spans would share it. See
/// [`ServiceOptions::user_channel`].
pub type UserChannel = tonic::service::interceptor::InterceptedService<
    tower::util::Either<tonic::transport::Channel, TracedChannelAsPlain>,
    UserInterceptor,
>;

/// A [`TracedChannel`] whose responses carry tonic's own body type (the client layer's
/// [`ResponseBody`](tower_trace_headers::client::ResponseBody), which ends the client span,
/// boxed), so that it can stand in for a plain `Channel`.
pub type TracedChannelAsPlain = tower::util::MapResponse<
    TracedChannel,
    fn(TracedResponse) -> http::Response<tonic::body::Body>,
>;

/// What a [`TracedChannel`] answers.
pub type TracedResponse =
    http::Response<tower_trace_headers::client::ResponseBody<tonic::body::Body>>;

/// The interceptor of a [`UserChannel`]: `grpc-interceptor`'s, or none when the client layer
/// inside carries the trace.
#[derive(Clone, Debug)]
pub enum UserInterceptor {
    /// [`grpc_interceptor::ClientInterceptor`] writes the trace.
    Trace(grpc_interceptor::ClientInterceptor),
    /// The client layer inside writes it.
    Layer,
}

impl tonic::service::Interceptor for UserInterceptor {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        match self {
            UserInterceptor::Trace(i) => i.call(request),
            UserInterceptor::Layer => Ok(request),
        }
    }
}

/// An id as an error message shows it: at most 64 characters, then `…`. The message travels
/// in the gRPC trailers, and an id of some kilobytes (a path parameter is whatever the client
/// sent) would make them too large for the caller's HTTP/2 client, turning a "not found" into
/// a protocol error.
#[must_use]
pub fn shown_id(id: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 64;
    match id.char_indices().nth(MAX) {
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &id[..end])),
        None => std::borrow::Cow::Borrowed(id),
    }
}

/// The header every service carries from each request to every call it makes, by default:
/// `end-user` (Istio routes on it; `order`'s egress sends `end-user: jason` to item-v2).
pub const DEFAULT_FIELDS: &str = "end-user";

/// The fields a client may set at the edge by default (as if from an authenticating proxy in
/// front of it): `end-user`.
pub const DEFAULT_EDGE_FIELDS: &str = "end-user";

/// The propagated fields for `propagate` (header names), those in `edge` kept at an
/// untrusted edge (`None`: [`DEFAULT_EDGE_FIELDS`], those of them that are propagated).
///
/// # Errors
///
/// A name that cannot be a propagated field, or an edge field given that is not propagated.
pub fn fields(
    propagate: &[String],
    edge: Option<&[String]>,
) -> Result<Vec<PropagatedField>, crate::cli::BoxError> {
    let names = |list: &[String]| -> Vec<String> {
        list.iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect()
    };
    let propagate = names(propagate);
    let edge = match edge {
        Some(edge) => names(edge),
        None => DEFAULT_EDGE_FIELDS
            .split(',')
            .map(str::to_owned)
            .filter(|n| propagate.contains(n))
            .collect(),
    };
    if let Some(stray) = edge.iter().find(|e| !propagate.contains(e)) {
        return Err(format!("edge field `{stray}` is not one of the propagated fields").into());
    }
    let mut out = Vec::new();
    for name in &propagate {
        let f = PropagatedField::new(name)?;
        out.push(if edge.contains(name) {
            f.kept_at_edge()
        } else {
            f
        });
    }
    Ok(out)
}

/// The default propagated fields ([`DEFAULT_FIELDS`], [`DEFAULT_EDGE_FIELDS`]).
#[must_use]
pub fn default_fields() -> Vec<PropagatedField> {
    vec![PropagatedField::from_static("end-user").kept_at_edge()]
}

/// What every service is configured with.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// Formats, trust policy, span semantics and propagated fields.
    pub propagator: Propagator,
    /// How outgoing calls carry the context.
    pub mode: Mode,
    /// Whether the service reports spans of its own — the layers' and the application's —
    /// when its telemetry exports them (off: it only carries headers, and is transparent).
    pub spans: bool,
    /// The tracer provider.
    pub telemetry: Telemetry,
    /// The access log.
    pub access_log: AccessLog,
    /// The version label (`v1`, `v2`).
    pub version: String,
    /// Whether this service is the edge (clients may not force sampling or pick request ids).
    pub edge: bool,
    /// Readiness and liveness (shared with the health endpoints and the gRPC health service).
    pub health: health::Health,
    /// How the HTTP server (the frontend's) bounds its clients: header-read timeout,
    /// connections, drain.
    pub serve: serve::ServeOptions,
    /// The service's metrics registry (`/metrics`), filled by its server layer.
    pub metrics: metrics::Metrics,
}

/// The paths no service traces or logs: health checks and metrics scrapes.
pub const UNTRACED_PATHS: [&str; 4] = [
    "/healthz",
    "/readyz",
    "/metrics",
    health::GRPC_HEALTH_PREFIX,
];

/// Whether `path` is one of the [`UNTRACED_PATHS`] (or below one), matched at a segment
/// boundary as the server layer's `skip_paths` matches them: `/healthzX` is a route like
/// any other, logged and traced.
#[must_use]
pub fn is_untraced(path: &str) -> bool {
    UNTRACED_PATHS
        .iter()
        .any(|p| tower_trace_headers::server::path_is_under(path, p))
}

impl ServiceOptions {
    /// Options for `service` with the propagator of `OTEL_PROPAGATORS` (default otherwise) and
    /// the [default fields](default_fields), instrument mode, spans on.
    ///
    /// # Errors
    ///
    /// When `OTEL_PROPAGATORS` names an unknown propagator.
    pub fn from_env(telemetry: Telemetry) -> Result<Self, b3_propagation::UnknownPropagator> {
        let service = telemetry.service().to_owned();
        Ok(ServiceOptions {
            propagator: Propagator::from_env()?
                .to_builder()
                .fields(default_fields())
                .build(),
            mode: Mode::Instrument,
            spans: true,
            telemetry,
            // Off only if no thread can be started for it.
            access_log: AccessLog::stdout().unwrap_or_default(),
            version: "v1".to_owned(),
            edge: false,
            health: health::Health::new(),
            serve: serve::ServeOptions::default(),
            metrics: metrics::Metrics::new(&service, "v1"),
        })
    }

    /// Whether this service reports spans: asked to, and its telemetry exports them.
    #[must_use]
    pub fn reports(&self) -> bool {
        self.spans && self.telemetry.exports()
    }

    /// The layer that makes this service's `tracing` dispatch current for its requests, so
    /// its own `tracing` spans are exported by its provider (the demo runs four services in
    /// one process). Outermost, around the trace-headers layer.
    #[must_use]
    pub fn dispatch_layer(&self) -> DispatchLayer {
        DispatchLayer {
            dispatch: if self.reports() {
                self.telemetry.dispatch().clone()
            } else {
                tracing::Dispatch::none()
            },
        }
    }

    /// What the admin listener serves: `/healthz`, `/readyz` and `/metrics` (none of it traced,
    /// logged or counted).
    pub fn admin_router(&self) -> axum::Router {
        self.health.router().merge(self.metrics.router())
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
        let layer = TraceHeadersLayer::new()
            .propagator(propagator)
            .echo_request_id(true)
            .trace_response(true)
            .record_baggage(["user-agent"])
            .skip_paths(UNTRACED_PATHS)
            .metrics(self.metrics.server())
            .route(|e| {
                e.get::<axum::extract::MatchedPath>()
                    .map(axum::extract::MatchedPath::as_str)
            })
            .peer_address(peer_address);
        if self.reports() {
            layer.tracer_provider(self.telemetry.provider())
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
        if self.reports() && self.mode == Mode::Instrument {
            layer.tracer_provider(self.telemetry.provider())
        } else {
            layer.without_spans()
        }
    }

    /// The access log layer for `service`.
    #[must_use]
    pub fn access_log_layer(&self, service: &str) -> AccessLogLayer {
        AccessLogLayer::new(self.access_log.clone(), service, &self.version)
    }

    fn plain_channel(uri: &str) -> Result<tonic::transport::Channel, http::uri::InvalidUri> {
        Ok(tonic::transport::Channel::from_shared(uri.to_owned())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(10))
            .connect_lazy())
    }

    /// A lazily connected, traced channel to `uri` (`http://host:port`).
    ///
    /// # Errors
    ///
    /// When `uri` is not a valid URI.
    pub fn channel(&self, uri: &str) -> Result<TracedChannel, http::uri::InvalidUri> {
        let channel = Self::plain_channel(uri)?;
        // tonic hands the layer path-only URIs: the client spans' `server.address` and
        // `server.port` come from the endpoint.
        let endpoint: http::Uri = uri.parse()?;
        let mut layer = self.client_layer();
        if let Some(host) = endpoint.host() {
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = endpoint.port_u16().or(match endpoint.scheme_str() {
                Some("https") => Some(443),
                _ => Some(80),
            });
            layer = layer.server_address(host, port);
        }
        Ok(ServiceBuilder::new().layer(layer).service(channel))
    }

    /// The frontend's channel to `user` (see [`UserChannel`]): the client interceptor, or the
    /// client layer with shared span semantics.
    ///
    /// # Errors
    ///
    /// When `uri` is not a valid URI.
    pub fn user_channel(&self, uri: &str) -> Result<UserChannel, http::uri::InvalidUri> {
        use tonic::service::interceptor::InterceptedService;
        use tower::util::Either;
        Ok(match self.semantics() {
            SpanSemantics::Shared => {
                let as_plain: fn(TracedResponse) -> http::Response<tonic::body::Body> =
                    |r| r.map(tonic::body::Body::new);
                let channel = tower::util::MapResponse::new(self.channel(uri)?, as_plain);
                InterceptedService::new(Either::Right(channel), UserInterceptor::Layer)
            }
            _ => InterceptedService::new(
                Either::Left(Self::plain_channel(uri)?),
                UserInterceptor::Trace(self.client_interceptor()),
            ),
        })
    }

    /// `grpc-interceptor`'s client interceptor with this service's propagator and mode.
    #[must_use]
    pub fn client_interceptor(&self) -> grpc_interceptor::ClientInterceptor {
        grpc_interceptor::ClientInterceptor::instrument()
            .propagator(self.propagator.clone())
            .mode(self.mode)
    }

    /// A lazily connected channel to `uri` whose calls carry the trace through the
    /// `grpc-interceptor` client interceptor (this service's propagator and mode).
    ///
    /// # Errors
    ///
    /// When `uri` is not a valid URI.
    pub fn intercepted_channel(
        &self,
        uri: &str,
    ) -> Result<InterceptedChannel, http::uri::InvalidUri> {
        Ok(tonic::service::interceptor::InterceptedService::new(
            Self::plain_channel(uri)?,
            self.client_interceptor(),
        ))
    }

    /// Whether spans are shared (Zipkin) or child spans.
    #[must_use]
    pub fn semantics(&self) -> SpanSemantics {
        self.propagator.span_semantics()
    }
}

/// Makes a service's `tracing` dispatch the default while each of its requests is handled:
/// the request's `call` and every poll of its future. See
/// [`ServiceOptions::dispatch_layer`].
#[derive(Clone, Debug)]
pub struct DispatchLayer {
    dispatch: tracing::Dispatch,
}

impl<S> Layer<S> for DispatchLayer {
    type Service = WithDispatch<S>;

    fn layer(&self, inner: S) -> WithDispatch<S> {
        WithDispatch {
            inner,
            dispatch: self.dispatch.clone(),
        }
    }
}

/// See [`DispatchLayer`].
#[derive(Clone, Debug)]
pub struct WithDispatch<S> {
    inner: S,
    dispatch: tracing::Dispatch,
}

impl<S, R> Service<R> for WithDispatch<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::WithDispatch<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let inner = &mut self.inner;
        tracing::dispatcher::with_default(&self.dispatch, || inner.call(req))
            .with_subscriber(self.dispatch.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Health checks and scrapes are untraced, and only they: a route whose name merely starts
    /// the same way is the application's.
    #[test]
    fn untraced_paths_match_whole_segments() {
        for path in [
            "/healthz",
            "/readyz",
            "/metrics",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(is_untraced(path), "{path}");
        }
        for path in ["/healthzX", "/metricsdump", "/readyz-report", "/orders/o-1"] {
            assert!(!is_untraced(path), "{path}");
        }
    }

    /// A long id is cut in messages (they travel in gRPC trailers), on a character boundary.
    #[test]
    fn ids_are_shown_short() {
        assert_eq!(shown_id("o-1"), "o-1");
        let long = "é".repeat(20_000);
        let shown = shown_id(&long);
        assert_eq!(shown.chars().count(), 65);
        assert!(shown.ends_with('…'));
        assert_eq!(shown_id(&"x".repeat(64)), "x".repeat(64));
    }

    #[tokio::test]
    async fn a_server_that_never_drains_is_stopped_after_the_drain_time() {
        // A server whose connections never close (a client holding a stream open).
        let (signal, cut_off) = bounded_shutdown(async {}, Duration::from_millis(50));
        let server = async move {
            signal.await;
            std::future::pending::<Result<(), &str>>().await
        };
        let started = std::time::Instant::now();
        let stopped = tokio::time::timeout(Duration::from_secs(10), stop_by(server, cut_off))
            .await
            .expect("stopped after the drain time");
        assert_eq!(stopped, Ok(()));
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn a_server_that_ends_gives_its_own_result() {
        // Before any signal (an error), and after one (drained in time).
        let (_signal, cut_off) = bounded_shutdown(std::future::pending(), Duration::ZERO);
        assert_eq!(stop_by(async { Err("bind") }, cut_off).await, Err("bind"));
        let (signal, cut_off) = bounded_shutdown(async {}, Duration::from_secs(3600));
        let server = async move {
            signal.await;
            Ok::<(), &str>(())
        };
        let drained = tokio::time::timeout(Duration::from_secs(10), stop_by(server, cut_off));
        assert_eq!(drained.await, Ok(Ok(())));
    }
}
