//! [`ClientInterceptor`]: write the request's trace into the metadata of every outgoing call.
//!
//! For each call it takes, in this order:
//! 1. a [`RequestTrace`] put in the call's extensions
//!    (`request.extensions_mut().insert(trace)`);
//! 2. the one given to the interceptor ([`ClientInterceptor::trace`]), for a client
//!    made for one incoming request;
//! 3. the current one, [`RequestTrace::current`]: set while a handler's future is polled
//!    inside [`RequestExt::in_trace`](crate::RequestExt::in_trace) (or
//!    [`FutureExt::with_trace`](tower_trace_headers::FutureExt::with_trace)), or by
//!    `tower-trace-headers`' server layer.
//!
//! and writes, as the client layer of `tower-trace-headers` does:
//! - in **forward** mode ([`ClientInterceptor::forward`], what Istio asks of applications):
//!   the context headers exactly as they were received, so the sidecar makes the spans;
//! - in **instrument** mode ([`ClientInterceptor::instrument`], the default): the innermost
//!   *reported* span current where the call is made — a span the handler opened (an
//!   OpenTelemetry span, or a `tracing` span bridged by `tracing-opentelemetry`), or the
//!   server span of `tower-trace-headers`' layer — in the propagator's inject formats. An
//!   interceptor ends no span, so it never writes a span id of its own; with nothing
//!   reported at this hop it re-sends the caller's span unchanged, as forward mode does (see
//!   [`tower_trace_headers::hop`]). A callee with shared span semantics needs a client span
//!   to share: call it through `tower-trace-headers`' client layer instead (or through an
//!   Envoy sidecar).
//!
//! Both modes carry `x-request-id`, `tracestate`, baggage and the opaque headers
//! (`x-ot-span-context`, `grpc-trace-bin` — binary metadata, forwarded verbatim). With no
//! trace found, forward mode leaves the call untouched; instrument mode writes the current
//! reported span, if any (feature `opentelemetry`: an application span outside any request),
//! in the inject formats, and otherwise leaves the call untouched too.
//!
//! The interceptor runs when the call is made, so "current" means current at that moment:
//! a handler that does not wrap its future, or a task spawned without
//! [`with_current_trace`](tower_trace_headers::FutureExt::with_current_trace), has none.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{RequestContext, Sampling, SpanContext};
//! use grpc_interceptor::ClientInterceptor;
//! use tonic::service::Interceptor;
//! use tower_trace_headers::RequestTrace;
//!
//! // A span this hop reports (a server layer's, say).
//! let span = SpanContext::new_root(Sampling::Accept);
//! let trace = RequestTrace::new(RequestContext::from_span(span));
//!
//! let mut interceptor = ClientInterceptor::instrument();
//! let mut call = tonic::Request::new(());
//! call.extensions_mut().insert(trace);
//! let call = interceptor.call(call)?;
//!
//! let metadata = call.metadata();
//! assert_eq!(
//!     metadata.get("x-b3-traceid").unwrap(),
//!     span.trace_id().unwrap().to_string().as_str()
//! );
//! // The call names that span: never an id no tracer reports.
//! assert_eq!(
//!     metadata.get("x-b3-spanid").unwrap(),
//!     span.span_id().unwrap().to_string().as_str()
//! );
//! assert!(metadata.get("traceparent").is_some());
//! # Ok::<(), tonic::Status>(())
//! ```

use std::sync::Arc;

use b3_propagation::Propagator;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tower_trace_headers::{Mode, RequestTrace};

use crate::metadata::MetadataInjector;

/// A tonic [`Interceptor`] for clients: injects the request's trace into every outgoing
/// call. See the [module docs](crate::client).
///
/// Use it with a generated client's `with_interceptor(channel, ClientInterceptor::instrument())`
/// or [`tonic::service::interceptor::InterceptedService`]. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ClientInterceptor {
    config: Arc<ClientConfig>,
    trace: Option<RequestTrace>,
}

#[derive(Clone, Debug, Default)]
struct ClientConfig {
    propagator: Propagator,
    mode: Mode,
}

impl ClientInterceptor {
    fn of_mode(mode: Mode) -> Self {
        ClientInterceptor {
            config: Arc::new(ClientConfig {
                propagator: Propagator::default(),
                mode,
            }),
            trace: None,
        }
    }

    /// Forward mode: re-send the received context headers unchanged.
    #[must_use]
    pub fn forward() -> Self {
        Self::of_mode(Mode::Forward)
    }

    /// Instrument mode (the default): each call names the innermost reported span current
    /// where it is made, else the caller's span (see the [module docs](self)).
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

    /// Inject `trace` when the call carries none in its extensions (it then wins over the
    /// current trace): for a client built inside a handler for that one request.
    #[must_use]
    pub fn trace(mut self, trace: RequestTrace) -> Self {
        self.trace = Some(trace);
        self
    }

    fn inject(&self, trace: Option<&RequestTrace>, carrier: &mut MetadataInjector<'_>) {
        tower_trace_headers::hop::inject(&self.config.propagator, self.config.mode, trace, carrier);
    }
}

impl Interceptor for ClientInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        // Split the request so the attached trace is read in place while the metadata is
        // written.
        let (mut metadata, extensions, ()) = request.into_parts();
        let mut carrier = MetadataInjector::new(&mut metadata);
        match extensions.get::<RequestTrace>().or(self.trace.as_ref()) {
            Some(trace) => self.inject(Some(trace), &mut carrier),
            None => RequestTrace::with_current(|current| self.inject(current, &mut carrier)),
        }
        Ok(Request::from_parts(metadata, extensions, ()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::{RequestContext, Sampling, SpanContext};
    use tonic::metadata::MetadataValue;

    use crate::ServerInterceptor;

    fn received(pairs: &[(&'static str, &'static str)]) -> RequestTrace {
        let mut request = Request::new(());
        for (k, v) in pairs {
            request
                .metadata_mut()
                .append(*k, MetadataValue::from_static(v));
        }
        let request = ServerInterceptor::new().call(request).unwrap();
        request.extensions().get::<RequestTrace>().unwrap().clone()
    }

    const B3: [(&str, &str); 4] = [
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
        ("x-request-id", "rid-7"),
    ];

    #[test]
    fn forward_copies_what_was_received() {
        let trace = received(&B3);
        let out = ClientInterceptor::forward()
            .trace(trace)
            .call(Request::new(()))
            .unwrap();
        for (k, v) in B3 {
            assert_eq!(out.metadata().get(k).unwrap(), v, "{k}");
        }
        assert!(out.metadata().get("x-b3-parentspanid").is_none());
        assert!(out.metadata().get("traceparent").is_none());
    }

    #[test]
    fn instrument_without_a_reported_span_resends_the_callers_span() {
        // The server interceptor reports nothing: the call names the caller's span,
        // with its sampling, exactly as received.
        let trace = received(&B3);
        let out = ClientInterceptor::instrument()
            .trace(trace)
            .call(Request::new(()))
            .unwrap();
        for (k, v) in B3 {
            assert_eq!(out.metadata().get(k).unwrap(), v, "{k}");
        }
        assert!(out.metadata().get("x-b3-parentspanid").is_none());
    }

    #[test]
    fn instrument_names_the_reported_span() {
        // A span this hop reports (a server layer's): the call names it and its parent.
        let mut cx = RequestContext::new();
        let server = SpanContext::new_root(Sampling::Accept).child();
        cx.set_local(server);
        let out = ClientInterceptor::instrument()
            .trace(RequestTrace::new(cx))
            .call(Request::new(()))
            .unwrap();
        let m = out.metadata();
        let hex = |id: Option<b3_propagation::SpanId>| id.unwrap().to_string();
        assert_eq!(
            m.get("x-b3-spanid").unwrap(),
            hex(server.span_id()).as_str()
        );
        assert_eq!(
            m.get("x-b3-parentspanid").unwrap(),
            hex(server.parent_span_id()).as_str()
        );
        assert_eq!(m.get("x-b3-sampled").unwrap(), "1");
    }

    #[test]
    fn trace_sources_in_order() {
        let span = |s| SpanContext::new_root(s);
        let ext = RequestTrace::new(RequestContext::from_span(span(Sampling::Accept)));
        let given = RequestTrace::new(RequestContext::from_span(span(Sampling::Deny)));
        let current = RequestTrace::new(RequestContext::from_span(span(Sampling::Deferred)));
        let trace_id = |t: &RequestTrace| t.span().unwrap().trace_id().unwrap().to_string();
        let sent = |r: Request<()>| {
            r.metadata()
                .get("x-b3-traceid")
                .map(|v| v.to_str().unwrap().to_owned())
        };

        let _current = current.enter();
        let mut with_ext = Request::new(());
        with_ext.extensions_mut().insert(ext.clone());
        let mut given_interceptor = ClientInterceptor::instrument().trace(given.clone());
        assert_eq!(
            sent(given_interceptor.call(with_ext).unwrap()),
            Some(trace_id(&ext))
        );
        assert_eq!(
            sent(given_interceptor.call(Request::new(())).unwrap()),
            Some(trace_id(&given))
        );
        assert_eq!(
            sent(
                ClientInterceptor::instrument()
                    .call(Request::new(()))
                    .unwrap()
            ),
            Some(trace_id(&current))
        );
    }

    #[test]
    fn outside_a_request_nothing_is_written() {
        let out = ClientInterceptor::default().call(Request::new(())).unwrap();
        assert!(out.metadata().is_empty());
        assert_eq!(ClientInterceptor::default().config.mode, Mode::Instrument);
    }
}
