use std::sync::Arc;

use b3_propagation::Propagator;
use tower_layer::Layer;

use super::TraceHeaders;

/// Applies [`TraceHeaders`] to a service. See the [module docs](crate::server).
#[derive(Clone, Debug)]
pub struct TraceHeadersLayer {
    pub(crate) config: Arc<ServerConfig>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ServerConfig {
    pub(crate) propagator: Propagator,
    pub(crate) echo_request_id: bool,
    pub(crate) trace_response: bool,
    /// Baggage keys recorded in the request's spans.
    pub(crate) record_baggage: Arc<[String]>,
    /// Path prefixes passed through untouched (health checks, metrics scrapes).
    pub(crate) skip_paths: Arc<[String]>,
    /// Finds a request's route template.
    pub(crate) route: Option<super::RouteFn>,
    /// Finds a request's peer address.
    #[cfg(feature = "opentelemetry")]
    pub(crate) peer: Option<super::PeerFn>,
    #[cfg(feature = "metrics")]
    pub(crate) metrics: Option<crate::metrics::ServerMetrics>,
    #[cfg(feature = "opentelemetry")]
    pub(crate) tracer: crate::otel::SpanTracer,
    /// This hop's decision for a caller's trace whose sampling is deferred.
    #[cfg(feature = "opentelemetry")]
    pub(crate) deferred: b3_propagation::Sampling,
    /// Whether the tracer honours preset ids (see `otel::server_span`).
    #[cfg(feature = "opentelemetry")]
    pub(crate) preset_works: Arc<std::sync::atomic::AtomicU8>,
    #[cfg(feature = "tracing")]
    pub(crate) tracing_span: bool,
}

impl ServerConfig {
    /// Whether something reads the route: a span or the metrics.
    pub(crate) fn uses_route(&self) -> bool {
        #[cfg(feature = "opentelemetry")]
        if !matches!(self.tracer, crate::otel::SpanTracer::Off) {
            return true;
        }
        #[cfg(feature = "metrics")]
        if self.metrics.is_some() {
            return true;
        }
        false
    }
}

impl Default for TraceHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceHeadersLayer {
    /// The default propagator (extract `b3`, `x-b3-*`, `traceparent`; inject `x-b3-*` and
    /// `traceparent`; trusted; child spans), no response headers.
    #[must_use]
    pub fn new() -> Self {
        TraceHeadersLayer {
            config: Arc::new(ServerConfig {
                #[cfg(feature = "tracing")]
                tracing_span: true,
                #[cfg(feature = "opentelemetry")]
                deferred: b3_propagation::Sampling::Accept,
                ..ServerConfig::default()
            }),
        }
    }

    fn update(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Use this propagator: its extract order, edge trust policy
    /// ([`TrustPolicy`](b3_propagation::TrustPolicy)), span semantics and propagated fields.
    /// `Propagator::from_env()` reads `OTEL_PROPAGATORS`.
    #[must_use]
    pub fn propagator(self, propagator: Propagator) -> Self {
        self.update(|c| c.propagator = propagator)
    }

    /// Echo `x-request-id` on every response (Envoy only does it for forced traces).
    #[must_use]
    pub fn echo_request_id(self, on: bool) -> Self {
        self.update(|c| c.echo_request_id = on)
    }

    /// Send a W3C `traceresponse` header naming the span this hop's calls name — its server
    /// span when a tracer reports it, else (a transparent hop) the caller's — so a client can
    /// find the trace of its request.
    #[must_use]
    pub fn trace_response(self, on: bool) -> Self {
        self.update(|c| c.trace_response = on)
    }

    /// Pass requests under one of these paths straight to the inner service, untouched: no
    /// extract, no span, no request id, no trace current. For the requests that are not part
    /// of any trace — health checks (`/grpc.health.v1.Health/`, `/healthz`), metrics scrapes
    /// (`/metrics`).
    ///
    /// A path matches at a segment boundary: `/healthz` matches `/healthz` and
    /// `/healthz/ready`, not `/healthzX` (a route of the application, traced as any other);
    /// one ending in `/` matches every path below it (`/grpc.health.v1.Health/Check`).
    #[must_use]
    pub fn skip_paths<I, P>(self, prefixes: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        let prefixes: Arc<[String]> = prefixes.into_iter().map(Into::into).collect();
        self.update(|c| c.skip_paths = prefixes)
    }

    /// How to find a request's route template (`/users/{id}`) in its extensions: the server
    /// span is named `{method} {route}` and carries it as `http.route` (feature
    /// `opentelemetry`), and it is the `http_route` label of the [metrics](crate::metrics)
    /// (feature `metrics`) — a low-cardinality name, never the raw path. Without a route the
    /// span is named `{method}` alone, as the semantic conventions say (see
    /// [`crate::semconv`]).
    ///
    /// For axum, whose router puts a `MatchedPath` in the extensions of the requests a
    /// `Router::layer` sees (so apply this layer with `Router::layer`, not around the
    /// router): `.route(|e| e.get::<MatchedPath>().map(MatchedPath::as_str))`. gRPC calls
    /// need none: their path is the method.
    ///
    /// ```
    /// use axum::{Router, extract::MatchedPath, routing::get};
    /// use tower_trace_headers::TraceHeadersLayer;
    ///
    /// let app: Router = Router::new()
    ///     .route("/orders/{id}", get(|| async { "an order" }))
    ///     // Spans named `GET /orders/{id}`, whatever the id.
    ///     .layer(TraceHeadersLayer::new().route(|e| e.get::<MatchedPath>().map(MatchedPath::as_str)));
    /// # let _ = app;
    /// ```
    #[must_use]
    pub fn route(self, route: super::RouteFn) -> Self {
        self.update(|c| c.route = Some(route))
    }

    /// How to find the address of a request's peer in its extensions, for the server span's
    /// `network.peer.address` / `network.peer.port`, and `client.address` when no proxy names
    /// the original client (`X-Forwarded-For`). See [`PeerFn`](super::PeerFn) for axum and
    /// tonic.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn peer_address(self, peer: super::PeerFn) -> Self {
        self.update(|c| c.peer = Some(peer))
    }

    /// Record each request's duration, status and route in these histograms, with an
    /// exemplar naming its trace (see [`crate::metrics`]).
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[must_use]
    pub fn metrics(self, metrics: crate::metrics::ServerMetrics) -> Self {
        self.update(|c| c.metrics = Some(metrics))
    }

    /// Record these baggage keys in the request's spans whenever they are received or the
    /// application sets them (Brave's *correlation fields*): in the `tracing` span's
    /// `baggage` field (feature `tracing`, so every log line of the request shows them) and as
    /// `baggage.<key>` attributes of the server span (feature `opentelemetry`).
    #[must_use]
    pub fn record_baggage<I, K>(self, keys: I) -> Self
    where
        I: IntoIterator<Item = K>,
        K: Into<String>,
    {
        let keys: Arc<[String]> = keys.into_iter().map(Into::into).collect();
        self.update(|c| c.record_baggage = keys)
    }

    /// Start server spans with this provider instead of the global one. The spans'
    /// instrumentation scope is this crate's ([`otel::scope`](crate::otel::scope): name,
    /// version, the schema of the semantic conventions followed), whichever the provider; the
    /// application's own spans keep theirs.
    ///
    /// Without it the global provider is looked up for each span (so a provider set after the
    /// layer was built is used), which takes the global provider's lock and boxes a tracer per
    /// span; a service that sets its provider once at start-up saves both by passing it here.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    /// use tower_trace_headers::TraceHeadersLayer;
    ///
    /// let provider = SdkTracerProvider::builder().build();
    /// let layer = TraceHeadersLayer::new().tracer_provider(&provider);
    /// # drop(layer);
    /// ```
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn tracer_provider<P>(self, provider: &P) -> Self
    where
        P: opentelemetry::trace::TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as opentelemetry::trace::Tracer>::Span: Send + Sync + 'static,
    {
        let tracer = crate::otel::SpanTracer::from_provider(provider);
        self.update(|c| {
            c.tracer = tracer;
            c.preset_works = Arc::default();
        })
    }

    /// What this hop decides when the caller's trace ids arrive with no sampling decision
    /// (B3 "deferred": no `x-b3-sampled`, or one an untrusted edge discarded). Default
    /// [`Sampling::Accept`](b3_propagation::Sampling::Accept): trace it, as Envoy does with its
    /// default 100 % random sampling. OpenTelemetry has no "deferred": its `ParentBased`
    /// sampler drops a remote parent that is not sampled, which is what
    /// [`Sampling::Deny`](b3_propagation::Sampling::Deny) gives. A trace started here (no ids
    /// received) is decided by the tracer's own sampler instead.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn deferred_sampling(self, decision: b3_propagation::Sampling) -> Self {
        self.update(|c| c.deferred = decision)
    }

    /// Do not start OpenTelemetry spans (headers only): this hop reports nothing and is
    /// transparent (see [`crate::hop`]). Use it when the tracer's provider exports nothing
    /// (an SDK provider without an exporter cannot be told from one that exports).
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn without_spans(self) -> Self {
        self.update(|c| c.tracer = crate::otel::SpanTracer::Off)
    }

    /// Whether to open a `tracing` span per request (default: on). It carries `trace_id`,
    /// `span_id` and `request_id` to every log line of the request; it is not a second
    /// report of the request. With feature `opentelemetry` the layer reports the server span
    /// itself, so an application that also exports its `tracing` spans through
    /// `tracing-opentelemetry` should leave this crate's spans out of that layer — e.g.
    /// `.with_filter(filter_fn(|m| !m.target().starts_with("tower_trace_headers")))` — or the
    /// request shows twice.
    #[cfg(feature = "tracing")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
    #[must_use]
    pub fn tracing_span(self, on: bool) -> Self {
        self.update(|c| c.tracing_span = on)
    }
}

impl<S> Layer<S> for TraceHeadersLayer {
    type Service = TraceHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceHeaders {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
