//! What the optional features add to a request or a call: an OpenTelemetry span, a `tracing`
//! span. Without the features this is an empty struct and every method compiles to nothing.

use b3_propagation::{RequestContext, SpanContext};
use http::{HeaderMap, Request, StatusCode};

use crate::current::RequestTrace;

/// Per-request extras, ended with the response.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::otel::OtelSpan>,
    #[cfg(feature = "tracing")]
    span: Option<tracing::Span>,
}

/// Keeps the extras entered while a future is polled.
pub(crate) struct ExtrasGuard<'a> {
    #[cfg(feature = "opentelemetry")]
    _otel: Option<opentelemetry::ContextGuard>,
    #[cfg(feature = "tracing")]
    _span: Option<tracing::span::Entered<'a>>,
    _marker: std::marker::PhantomData<&'a ()>,
}

impl Extras {
    /// Start the server-side extras for this hop's span `local`; returns `local` adjusted to
    /// the span actually started.
    #[allow(unused_variables, unused_mut)]
    pub(crate) fn server<B>(
        config: &crate::server::layer::ServerConfig,
        req: &Request<B>,
        cx: &RequestContext,
        local: SpanContext,
    ) -> (Self, SpanContext) {
        let mut extras = Extras::default();
        let mut local = local;
        #[cfg(feature = "opentelemetry")]
        {
            let info = crate::otel::RequestInfo::of(req);
            let shared =
                config.propagator.span_semantics() == b3_propagation::SpanSemantics::Shared;
            if let Some((span, adjusted)) = crate::otel::server_span(
                &config.tracer,
                &info,
                cx.remote(),
                local,
                shared,
                cx.tracestate(),
                config.deferred,
                &config.preset_works,
            ) {
                extras.otel = Some(span);
                local = adjusted;
            }
        }
        #[cfg(feature = "tracing")]
        if config.tracing_span {
            #[cfg(feature = "opentelemetry")]
            let parent = extras.otel.as_ref().map(crate::otel::OtelSpan::context);
            #[cfg(not(feature = "opentelemetry"))]
            let parent = None;
            extras.span = Some(crate::tracing_span::server_span(req, cx, &local, parent));
        }
        (extras, local)
    }

    /// Start the client-side extras for the call span `local` under `trace`.
    #[allow(unused_variables, unused_mut)]
    pub(crate) fn client<B>(
        config: &crate::client::layer::ClientConfig,
        req: &Request<B>,
        trace: &RequestTrace,
        local: SpanContext,
    ) -> (Self, SpanContext) {
        let mut extras = Extras::default();
        let mut local = local;
        #[cfg(feature = "opentelemetry")]
        {
            use opentelemetry::trace::TraceContextExt as _;
            let info = crate::otel::RequestInfo::of(req);
            // The parent: the OTel context current here (a span the application opened),
            // else the request's server span.
            let current = opentelemetry::Context::current();
            let parent = if current.span().span_context().is_valid() {
                current
            } else {
                trace.otel_context().cloned().unwrap_or(current)
            };
            if let Some((span, adjusted)) =
                crate::otel::client_span(&config.tracer, &info, &parent, local)
            {
                extras.otel = Some(span);
                local = adjusted;
            }
        }
        (extras, local)
    }

    /// The trace for `cx`, with the OpenTelemetry context of the server span.
    pub(crate) fn wrap(&self, cx: RequestContext) -> RequestTrace {
        #[cfg(feature = "opentelemetry")]
        if let Some(span) = &self.otel {
            return RequestTrace::with_otel_context(cx, span.context().clone());
        }
        RequestTrace::new(cx)
    }

    /// Enter the spans for one poll.
    pub(crate) fn enter(&self) -> ExtrasGuard<'_> {
        ExtrasGuard {
            #[cfg(feature = "opentelemetry")]
            _otel: self.otel.as_ref().map(|s| s.context().clone().attach()),
            #[cfg(feature = "tracing")]
            _span: self.span.as_ref().map(tracing::Span::enter),
            _marker: std::marker::PhantomData,
        }
    }

    /// End the spans with the response (or the failure).
    #[allow(unused_variables)]
    pub(crate) fn finish(&mut self, outcome: Result<(StatusCode, &HeaderMap), ()>) {
        #[cfg(feature = "opentelemetry")]
        if let Some(span) = self.otel.take() {
            match outcome {
                Ok((status, headers)) => span.end_with_response(status, headers),
                Err(()) => span.end_with_error(&"the service failed"),
            }
        }
        #[cfg(feature = "tracing")]
        if let (Some(span), Ok((status, _))) = (&self.span, outcome) {
            span.record("http.response.status_code", status.as_u16());
        }
    }
}
