//! What the optional features add to a request or a call: an OpenTelemetry span, a `tracing`
//! span. Without the features this is an empty struct and every method compiles to nothing.

use http::{HeaderMap, Request};

use crate::body::End;
use crate::current::{Correlation, RequestTrace};
use crate::hop;

/// Per-request extras, ended with the response (see [`Extras::ending`]).
#[derive(Debug, Default)]
pub(crate) struct Extras {
    #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
    state: EndState,
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
    /// Start the server side of the request whose [fresh](RequestTrace::fresh) trace is
    /// `trace`: its server span when a tracer reports it (then set as this hop's span in the
    /// trace's context), its `tracing` span. Returns the extras and the completed trace.
    #[allow(unused_variables, unused_mut)]
    pub(crate) fn server<B>(
        config: &crate::server::layer::ServerConfig,
        req: &Request<B>,
        route: Option<&str>,
        mut trace: RequestTrace,
    ) -> (Self, RequestTrace) {
        let mut extras = Extras::default();
        // A `tracing` span alone needs to know whether this is a gRPC call; with an
        // OpenTelemetry span, the request's description (below) says.
        #[cfg(feature = "tracing")]
        {
            #[cfg(feature = "opentelemetry")]
            let described = !matches!(config.tracer, crate::otel::SpanTracer::Off);
            #[cfg(not(feature = "opentelemetry"))]
            let described = false;
            if config.tracing_span && !described {
                extras.state.grpc_call = crate::semconv::is_grpc(req.headers());
            }
        }
        #[cfg(feature = "opentelemetry")]
        if matches!(config.tracer, crate::otel::SpanTracer::Off) {
            // Headers only: no span, and nothing about the request to describe. The caller's
            // span is current as a remote parent, so the application's own spans join.
            extras.current = crate::otel::remote_parent(trace.context(), config.deferred);
        } else {
            let info = crate::otel::RequestInfo::of(req)
                .route(route)
                .peer(config.peer.and_then(|f| f(req.extensions())));
            extras.state.grpc_call = info.is_grpc();
            let started = crate::otel::server_span(
                &config.tracer,
                &info,
                trace.context(),
                &config.propagator,
                config.deferred,
                &config.preset_works,
            );
            if let Some(cx) = trace.fresh_mut() {
                if let Some(local) = started.local {
                    cx.set_local(local);
                }
                if let Some(decided) = started.decided {
                    cx.decide_sampling(decided);
                }
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
            extras.span = Some(crate::tracing_span::server_span(
                req,
                trace.context(),
                parent,
            ));
        }
        let correlation = (!config.record_baggage.is_empty()).then(|| Correlation {
            keys: config.record_baggage.clone(),
            #[cfg(feature = "tracing")]
            span: extras.span.clone(),
        });
        trace.complete(
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
                hop::write(propagator, trace, None, &mut hop::Outgoing::of(req));
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
                        use opentelemetry::trace::TraceContextExt as _;
                        let remote =
                            |c: &&opentelemetry::Context| c.span().span_context().is_remote();
                        let valid =
                            |c: &&opentelemetry::Context| c.span().span_context().is_valid();
                        // The caller's span as the server side made it current (with its
                        // decision for a deferred caller), else as received; with no caller's
                        // span, a root a sampler dropped here, so that a parent-based sampler
                        // drops the call's span too instead of starting a trace per call.
                        t.otel_context()
                            .filter(remote)
                            .cloned()
                            .or_else(|| {
                                crate::otel::remote_parent(t, b3_propagation::Sampling::Accept)
                            })
                            .or_else(|| t.otel_context().filter(valid).cloned())
                    }),
                    trace.and_then(|t| t.span()).and_then(|s| s.span_id()),
                    trace.and_then(|t| t.span()),
                ),
            };
            let parent_cx = parent_cx.unwrap_or_default();
            let info = crate::otel::RequestInfo::of(req).server(config.server_address.as_ref());
            let grpc_call = info.is_grpc();
            if let Some((span, ours)) = crate::otel::client_span(
                &config.tracer,
                &info,
                &parent_cx,
                parent_id,
                like.as_ref(),
            ) {
                hop::write(propagator, trace, Some(&ours), &mut hop::Outgoing::of(req));
                extras.state.grpc_call = grpc_call;
                extras.state.client = true;
                extras.current = Some(span.context().clone());
                extras.otel = Some(span);
                return extras;
            }
        }
        hop::write(
            propagator,
            trace,
            parent.as_ref().map(|p| &p.span),
            &mut hop::Outgoing::of(req),
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

    /// The spans to end with the response (or the failure), taken out of these extras.
    pub(crate) fn ending(&mut self) -> Ending {
        Ending {
            #[cfg(feature = "opentelemetry")]
            otel: self.otel.take(),
            #[cfg(feature = "tracing")]
            span: self.span.take(),
            #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
            state: self.state,
        }
    }
}

/// What the spans of a call need to know when it ends.
#[cfg(any(feature = "opentelemetry", feature = "tracing"))]
#[derive(Clone, Copy, Debug, Default)]
struct EndState {
    /// A gRPC call (its spans carry `rpc.grpc.status_code`).
    grpc_call: bool,
    /// The client side (a call without a response is `UNAVAILABLE`, not `UNKNOWN`).
    client: bool,
    status: Option<http::StatusCode>,
    version: Option<http::Version>,
    /// The gRPC status seen in the response headers (trailers-only) or trailers.
    grpc: Option<u8>,
}

/// The spans of a call, ended with its response body (see
/// [`ResponseBody`](crate::body::ResponseBody)) or its failure.
#[derive(Debug, Default)]
pub(crate) struct Ending {
    #[cfg(feature = "opentelemetry")]
    otel: Option<crate::otel::OtelSpan>,
    #[cfg(feature = "tracing")]
    span: Option<tracing::Span>,
    #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
    state: EndState,
}

impl Ending {
    /// Whether a span waits for the end.
    pub(crate) fn is_pending(&self) -> bool {
        #[cfg(feature = "opentelemetry")]
        if self.otel.is_some() {
            return true;
        }
        #[cfg(feature = "tracing")]
        if self.span.is_some() {
            return true;
        }
        false
    }

    /// The response head is known.
    #[allow(unused_variables)]
    pub(crate) fn response<B>(&mut self, response: &http::Response<B>) {
        #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
        {
            let state = &mut self.state;
            state.status = Some(response.status());
            state.version = Some(response.version());
            if state.grpc_call {
                state.grpc = crate::semconv::grpc_status(response.headers());
            }
        }
        #[cfg(feature = "tracing")]
        if let Some(span) = &self.span {
            span.record("http.response.status_code", response.status().as_u16());
        }
    }

    /// Trailers arrived.
    #[allow(unused_variables)]
    pub(crate) fn trailers(&mut self, trailers: &HeaderMap) {
        #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
        if self.state.grpc_call
            && let Some(code) = crate::semconv::grpc_status(trailers)
        {
            self.state.grpc = Some(code);
        }
    }

    /// The response body ended (once; later calls do nothing). `error` names a body error's
    /// type.
    #[allow(unused_variables)]
    pub(crate) fn end(&mut self, how: End, error: Option<&'static str>) {
        #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
        {
            let state = self.state;
            let grpc = state.grpc_call.then(|| match (state.grpc, how) {
                (Some(code), _) => code,
                // Whoever read the body went away: CANCELLED, unless the HTTP status already
                // said what the call is (a proxy's 503 page a gRPC client drops unread).
                (None, End::Dropped) => state
                    .status
                    .and_then(crate::semconv::grpc_status_of_http)
                    .unwrap_or(1),
                // A response without a status: what a gRPC client reads from the HTTP
                // status, else UNKNOWN.
                (None, End::Complete | End::Failed) => state
                    .status
                    .and_then(crate::semconv::grpc_status_of_http)
                    .unwrap_or(2),
            });
            self.finish(grpc, error);
        }
    }

    /// The service failed: no response. `error` names the error's type.
    #[allow(unused_variables, unused_mut)]
    pub(crate) fn failed(mut self, error: &'static str) {
        #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
        {
            let state = self.state;
            // No response: the server answers UNKNOWN, the client reads UNAVAILABLE.
            let grpc = state.grpc_call.then_some(if state.client { 14 } else { 2 });
            self.finish(grpc, Some(error));
        }
    }

    #[cfg(any(feature = "opentelemetry", feature = "tracing"))]
    #[allow(unused_variables)]
    fn finish(&mut self, grpc: Option<u8>, error: Option<&'static str>) {
        #[cfg(feature = "opentelemetry")]
        if let Some(span) = self.otel.take() {
            span.end(&crate::otel::Outcome {
                status: self.state.status,
                version: self.state.version,
                grpc,
                error,
            });
        }
        #[cfg(feature = "tracing")]
        if let Some(span) = self.span.take() {
            if let Some(code) = grpc {
                span.record("rpc.grpc.status_code", code);
            }
            // The span closes when its last handle goes.
            drop(span);
        }
    }
}
