//! What the optional features add to a request or a call: an OpenTelemetry span, a `tracing`
//! span. Without the features this is an empty struct and every method compiles to nothing.

use b3_propagation::RequestContext;
use http::{HeaderMap, Request, StatusCode};

use crate::current::{Correlation, RequestTrace};
use crate::hop;

/// Per-request extras, ended with the response.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::otel::OtelSpan>,
    /// The context to make current while the inner future is polled.
    #[cfg(feature = "opentelemetry")]
    current: Option<opentelemetry::Context>,
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
    /// Start the server side of the request `cx`: its server span when a tracer reports it
    /// (then set as this hop's span in `cx`), its `tracing` span. Returns the extras and the
    /// request's trace.
    #[allow(unused_variables, unused_mut)]
    pub(crate) fn server<B>(
        config: &crate::server::layer::ServerConfig,
        req: &Request<B>,
        mut cx: RequestContext,
    ) -> (Self, RequestTrace) {
        let mut extras = Extras::default();
        #[cfg(feature = "opentelemetry")]
        {
            let started = crate::otel::server_span(
                &config.tracer,
                &crate::otel::RequestInfo::of(req),
                &cx,
                &config.propagator,
                config.deferred,
                &config.preset_works,
            );
            if let Some(local) = started.local {
                cx.set_local(local);
            }
            if let Some(decided) = started.decided {
                cx.decide_sampling(decided);
            }
            extras.otel = started.span;
            extras.current = started.cx;
        }
        #[cfg(feature = "tracing")]
        if config.tracing_span {
            #[cfg(feature = "opentelemetry")]
            let parent = extras.current.as_ref();
            #[cfg(not(feature = "opentelemetry"))]
            let parent = None;
            extras.span = Some(crate::tracing_span::server_span(req, &cx, parent));
        }
        let correlation = (!config.record_baggage.is_empty()).then(|| Correlation {
            keys: config.record_baggage.clone(),
            #[cfg(feature = "tracing")]
            span: extras.span.clone(),
        });
        let trace = RequestTrace::build(
            cx,
            #[cfg(feature = "opentelemetry")]
            extras.current.clone(),
            correlation,
        );
        (extras, trace)
    }

    /// The client steps for one call under `trace` (or outside any request): write the
    /// headers and, in instrument mode with a tracer that reports it, start a client span.
    /// See [`crate::hop`].
    #[allow(unused_variables, unused_mut)]
    pub(crate) fn client<B>(
        config: &crate::client::layer::ClientConfig,
        req: &mut Request<B>,
        trace: Option<&RequestTrace>,
    ) -> Self {
        let mut extras = Extras::default();
        let propagator = &config.propagator;
        let parent = match config.mode {
            crate::Mode::Instrument => hop::reported_parent(trace),
            crate::Mode::Forward => {
                hop::write(propagator, trace, None, req.headers_mut());
                return extras;
            }
        };
        #[cfg(feature = "opentelemetry")]
        if trace.is_some() || parent.is_some() {
            // Under the innermost reported span; at a transparent hop, under the caller's.
            let (parent_cx, parent_id, like) = match &parent {
                Some(p) => (
                    p.cx.clone().or_else(|| {
                        trace.and_then(|t| {
                            t.with_context(|cx| {
                                crate::otel::remote_parent(cx, b3_propagation::Sampling::Accept)
                            })
                        })
                    }),
                    p.span.span_id(),
                    Some(p.span),
                ),
                None => (
                    trace.and_then(|t| {
                        crate::otel::remote_parent(t, b3_propagation::Sampling::Accept)
                    }),
                    trace.and_then(|t| t.span()).and_then(|s| s.span_id()),
                    trace.and_then(|t| t.span()),
                ),
            };
            let parent_cx = parent_cx.unwrap_or_default();
            if let Some((span, ours)) = crate::otel::client_span(
                &config.tracer,
                &crate::otel::RequestInfo::of(req),
                &parent_cx,
                parent_id,
                like.as_ref(),
            ) {
                hop::write(propagator, trace, Some(&ours), req.headers_mut());
                extras.current = Some(span.context().clone());
                extras.otel = Some(span);
                return extras;
            }
        }
        hop::write(
            propagator,
            trace,
            parent.as_ref().map(|p| &p.span),
            req.headers_mut(),
        );
        extras
    }

    /// Enter the spans for one poll.
    pub(crate) fn enter(&self) -> ExtrasGuard<'_> {
        ExtrasGuard {
            #[cfg(feature = "opentelemetry")]
            _otel: self.current.as_ref().map(|c| c.clone().attach()),
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
