#[cfg(feature = "opentelemetry")]
use std::borrow::Cow;
use std::sync::Arc;

use b3_propagation::Propagator;
use tower_layer::Layer;

use super::PropagateTraceHeaders;

/// How the client layer writes the context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Mode {
    /// Re-send the received context headers unchanged (Istio's model).
    Forward,
    /// A child span per call of the innermost span this hop reports (the default); with none
    /// reported, the caller's context goes on unchanged, as in forward mode (see
    /// [`crate::hop`]).
    ///
    /// An OpenTelemetry span counts as reported when it is sampled and recording, and an SDK
    /// provider without an exporter (trace ids for log correlation only) cannot be told from
    /// one that exports: a service whose provider exports nothing uses [`Mode::Forward`],
    /// whose calls never name a span of this hop.
    #[default]
    Instrument,
}

/// Applies [`PropagateTraceHeaders`] to a client service. See the
/// [module docs](crate::client).
#[derive(Clone, Debug)]
pub struct PropagateTraceHeadersLayer {
    pub(crate) config: Arc<ClientConfig>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ClientConfig {
    pub(crate) propagator: Propagator,
    pub(crate) mode: Mode,
    #[cfg(feature = "opentelemetry")]
    pub(crate) tracer: crate::otel::SpanTracer,
    /// The server the calls go to, when their URI does not say.
    #[cfg(feature = "opentelemetry")]
    pub(crate) server_address: Option<crate::otel::ServerAddress>,
}

impl Default for PropagateTraceHeadersLayer {
    fn default() -> Self {
        Self::instrument()
    }
}

impl PropagateTraceHeadersLayer {
    fn of_mode(mode: Mode) -> Self {
        PropagateTraceHeadersLayer {
            config: Arc::new(ClientConfig {
                mode,
                ..ClientConfig::default()
            }),
        }
    }

    /// Forward mode: re-send the received headers unchanged.
    #[must_use]
    pub fn forward() -> Self {
        Self::of_mode(Mode::Forward)
    }

    /// Instrument mode: each call names the innermost span a tracer reports (a client span
    /// of its own with feature `opentelemetry` and a tracer that reports it), or, when
    /// nothing at this hop is reported, re-sends the caller's context as forward mode does.
    #[must_use]
    pub fn instrument() -> Self {
        Self::of_mode(Mode::Instrument)
    }

    fn update(mut self, f: impl FnOnce(&mut ClientConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Use this propagator: its inject set decides the formats a reported span is written in
    /// (instrument mode); with nothing reported at this hop, the received context headers go
    /// on as they came, whatever the inject set.
    #[must_use]
    pub fn propagator(self, propagator: Propagator) -> Self {
        self.update(|c| c.propagator = propagator)
    }

    /// Switch the mode.
    #[must_use]
    pub fn mode(self, mode: Mode) -> Self {
        self.update(|c| c.mode = mode)
    }

    /// Start client spans with this provider instead of the global one (instrument mode).
    /// The spans' instrumentation scope is this crate's ([`otel::scope`](crate::otel::scope)),
    /// whichever the provider.
    ///
    /// Without it the global provider is looked up for each span (so a provider set after the
    /// layer was built is used), which takes the global provider's lock and boxes a tracer per
    /// span; a service that sets its provider once at start-up saves both by passing it here.
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
        self.update(|c| c.tracer = tracer)
    }

    /// The server the calls go to, for the client spans' `server.address` / `server.port`
    /// when a request's URI does not name it. A tonic `Channel` hands its layers path-only
    /// URIs (`/package.Service/Method`), so a layer over a channel needs this; a request
    /// whose URI has an authority (a hyper client's) is described by it instead. IPv6
    /// addresses go without brackets.
    ///
    /// ```
    /// use tonic::transport::Channel;
    /// use tower::ServiceBuilder;
    /// use tower_trace_headers::PropagateTraceHeadersLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let channel = Channel::from_static("http://order:50051").connect_lazy();
    /// let channel = ServiceBuilder::new()
    ///     .layer(PropagateTraceHeadersLayer::instrument().server_address("order", Some(50051)))
    ///     .service(channel);
    /// # drop(channel);
    /// # }
    /// ```
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn server_address(self, host: impl Into<Cow<'static, str>>, port: Option<u16>) -> Self {
        let host = host.into();
        self.update(|c| c.server_address = Some(crate::otel::ServerAddress { host, port }))
    }

    /// Do not start OpenTelemetry client spans (headers only).
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn without_spans(self) -> Self {
        self.update(|c| c.tracer = crate::otel::SpanTracer::Off)
    }
}

impl<S> Layer<S> for PropagateTraceHeadersLayer {
    type Service = PropagateTraceHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateTraceHeaders {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
