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

    /// Instrument mode: a child span id per call.
    #[must_use]
    pub fn instrument() -> Self {
        Self::of_mode(Mode::Instrument)
    }

    fn update(mut self, f: impl FnOnce(&mut ClientConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Use this propagator (its inject set decides the formats written in instrument mode).
    #[must_use]
    pub fn propagator(self, propagator: Propagator) -> Self {
        self.update(|c| c.propagator = propagator)
    }

    /// Switch the mode.
    #[must_use]
    pub fn mode(self, mode: Mode) -> Self {
        self.update(|c| c.mode = mode)
    }

    /// Start client spans with this tracer instead of the global one (instrument mode).
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn tracer<T>(self, tracer: T) -> Self
    where
        T: opentelemetry::global::ObjectSafeTracer + Send + Sync + 'static,
    {
        self.update(|c| c.tracer = crate::otel::SpanTracer::given(tracer))
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
