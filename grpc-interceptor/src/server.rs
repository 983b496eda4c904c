//! [`ServerInterceptor`]: extract the caller's trace from the request metadata, ensure the
//! request id and hand the trace to the handler (no span id of its own: see below).
//!
//! For every request it:
//! 1. extracts the context with its [`Propagator`] (first valid of `b3`, `x-b3-*`,
//!    `traceparent` by default). Malformed metadata counts as absent and its typed reasons are
//!    kept in [`RequestContext::errors`](b3_propagation::RequestContext::errors) — unless the
//!    interceptor is [strict](ServerInterceptor::strict), which rejects the call with
//!    `InvalidArgument` naming the header and the reason;
//! 2. ensures a valid `x-request-id` — generated when absent, malformed or untrusted (the
//!    propagator's [`TrustPolicy`](b3_propagation::TrustPolicy)) — and writes it back into the
//!    metadata;
//! 3. stores a [`RequestTrace`] in the request extensions.
//!
//! An interceptor reports no span (it never sees the response), so it derives no span id
//! of its own: the hop is transparent, its current span is the caller's, and the
//! [`ClientInterceptor`](crate::ClientInterceptor) names the caller's span — or a span the
//! handler opened and reports — in every call (see
//! [`tower_trace_headers::hop`]). For a server span with timing, use `tower-trace-headers`'
//! server layer.
//!
//! If the extensions already hold a [`RequestTrace`] (`tower-trace-headers`' server layer
//! runs before it), it is kept as is — strict mode still rejects its malformed headers — so
//! the trace the handler reads and the current one are the same.
//!
//! An interceptor runs before the handler and returns; it cannot keep the trace *current*
//! while the handler's future runs. The handler gets it with
//! [`RequestExt::trace`](crate::RequestExt::trace), and makes it current for its outgoing
//! calls with [`RequestExt::in_trace`](crate::RequestExt::in_trace) (see the
//! [crate docs](crate)).
//!
//! To intercept every service of a server, use it as a layer:
//!
//! ```
//! use grpc_interceptor::ServerInterceptor;
//! use tonic::service::interceptor::InterceptorLayer;
//! use tonic::transport::Server;
//!
//! let server = Server::builder().layer(InterceptorLayer::new(ServerInterceptor::new()));
//! # drop(server);
//! ```
//!
//! # Example
//!
//! ```
//! use b3_propagation::{Propagator, TrustPolicy};
//! use grpc_interceptor::ServerInterceptor;
//! use tonic::metadata::MetadataValue;
//! use tonic::service::Interceptor;
//! use tower_trace_headers::RequestTrace;
//!
//! // An edge: callers may not force sampling nor choose request ids.
//! let propagator = Propagator::builder().trust(TrustPolicy::untrusted()).build();
//! let mut interceptor = ServerInterceptor::new().propagator(propagator);
//!
//! let mut request = tonic::Request::new(());
//! let metadata = request.metadata_mut();
//! metadata.insert("x-b3-traceid", MetadataValue::from_static("463ac35c9f6413ad48485a3953bb6124"));
//! metadata.insert("x-b3-spanid", MetadataValue::from_static("a2fb4a1d1a96d312"));
//! metadata.insert("x-b3-sampled", MetadataValue::from_static("1"));
//! metadata.insert("x-request-id", MetadataValue::from_static("chosen-by-the-client"));
//!
//! let request = interceptor.call(request)?;
//! let trace = request.extensions().get::<RequestTrace>().unwrap();
//! assert!(trace.local().is_none()); // an interceptor reports no span of its own
//! let span = trace.span().unwrap(); // so the current span is the caller's
//! assert_eq!(span.trace_id().unwrap().to_string(), "463ac35c9f6413ad48485a3953bb6124");
//! assert_eq!(span.span_id().unwrap().to_string(), "a2fb4a1d1a96d312");
//! assert_eq!(span.sampling(), b3_propagation::Sampling::Deferred); // not trusted here
//! // Regenerated at the edge, and written back for the handler and the next hops.
//! let request_id = trace.request_id().unwrap();
//! assert_ne!(request_id.as_str(), "chosen-by-the-client");
//! assert_eq!(request.metadata().get("x-request-id").unwrap(), request_id.as_str());
//! # Ok::<(), tonic::Status>(())
//! ```

use std::fmt::Write as _;
use std::sync::Arc;

use b3_propagation::{Propagator, RequestContext};
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tower_trace_headers::RequestTrace;

/// A tonic [`Interceptor`] for servers: extracts the trace and request id from the metadata
/// and stores a [`RequestTrace`] in the request extensions. See the
/// [module docs](crate::server).
///
/// Use it with a generated server's `with_interceptor(service, ServerInterceptor::new())`,
/// or [`tonic::service::interceptor::InterceptedService`] /
/// [`InterceptorLayer`](tonic::service::interceptor::InterceptorLayer). Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct ServerInterceptor {
    config: Arc<ServerConfig>,
}

#[derive(Clone, Debug, Default)]
struct ServerConfig {
    propagator: Propagator,
    strict: bool,
    /// The decision for a caller's ids without one; `None`: [`RequestTrace::new`]'s.
    #[cfg(feature = "opentelemetry")]
    deferred: Option<b3_propagation::Sampling>,
}

impl ServerInterceptor {
    /// The default propagator (extract `b3`, `x-b3-*`, `traceparent`; trusted); malformed
    /// metadata is ignored.
    #[must_use]
    pub fn new() -> Self {
        ServerInterceptor::default()
    }

    fn update(mut self, f: impl FnOnce(&mut ServerConfig)) -> Self {
        f(Arc::make_mut(&mut self.config));
        self
    }

    /// Use this propagator: its extract order, edge trust policy
    /// ([`TrustPolicy`](b3_propagation::TrustPolicy)) and propagated fields.
    /// `Propagator::from_env()` reads `OTEL_PROPAGATORS`.
    #[must_use]
    pub fn propagator(self, propagator: Propagator) -> Self {
        self.update(|c| c.propagator = propagator)
    }

    /// Strict mode: reject a call whose tracing metadata is malformed with
    /// `Status::invalid_argument`, whose message names each rejected header and why
    /// (default: off — malformed metadata counts as absent, the reasons are in
    /// [`RequestContext::errors`](b3_propagation::RequestContext::errors)).
    #[must_use]
    pub fn strict(self, on: bool) -> Self {
        self.update(|c| c.strict = on)
    }

    /// Whether strict mode is on.
    #[must_use]
    pub fn is_strict(&self) -> bool {
        self.config.strict
    }

    /// What this hop decides when the caller's trace ids arrive with no sampling decision
    /// (B3 "deferred": no `x-b3-sampled`, or one an untrusted edge discarded), for the
    /// OpenTelemetry spans the handler starts under them. Default
    /// [`Sampling::Accept`](b3_propagation::Sampling::Accept), as `tower-trace-headers`'
    /// [`TraceHeadersLayer::deferred_sampling`](tower_trace_headers::TraceHeadersLayer::deferred_sampling);
    /// [`Sampling::Deny`](b3_propagation::Sampling::Deny) is what OpenTelemetry's
    /// `ParentBased` sampler does with a remote parent that is not sampled.
    #[cfg(feature = "opentelemetry")]
    #[cfg_attr(docsrs, doc(cfg(feature = "opentelemetry")))]
    #[must_use]
    pub fn deferred_sampling(self, decision: b3_propagation::Sampling) -> Self {
        self.update(|c| c.deferred = Some(decision))
    }
}

impl Interceptor for ServerInterceptor {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let config = &*self.config;
        // Already extracted (`tower-trace-headers`' server layer ran first): keep that trace,
        // so the handler's and the current one are the same.
        if let Some(trace) = request.extensions().get::<RequestTrace>() {
            return match config.strict.then(|| reject(trace)).flatten() {
                Some(status) => Err(status),
                None => Ok(request),
            };
        }
        let propagator = &config.propagator;
        // The request is ours: take its `HeaderMap` out (a move) so the core's one-pass
        // `HeaderMap` carrier applies and received values are shared, not copied.
        let (metadata, mut extensions, ()) = request.into_parts();
        let mut headers = metadata.into_headers();
        // Extract, and one request id from here on: generated when absent, invalid or
        // untrusted, and written back so the handler, logs and forwarded calls see it.
        let cx = tower_trace_headers::hop::receive(propagator, &mut headers);
        if config.strict
            && let Some(status) = reject(&cx)
        {
            return Err(status);
        }
        // An interceptor reports no span: this hop is transparent, its calls name the
        // caller's span (or a span the handler opens).
        #[cfg(feature = "opentelemetry")]
        let trace = match config.deferred {
            Some(decision) => RequestTrace::with_deferred_sampling(cx, decision),
            None => RequestTrace::new(cx),
        };
        #[cfg(not(feature = "opentelemetry"))]
        let trace = RequestTrace::new(cx);
        extensions.insert(trace);
        Ok(Request::from_parts(
            MetadataMap::from_headers(headers),
            extensions,
            (),
        ))
    }
}

/// Strict mode's answer: `InvalidArgument` naming every rejected header and why.
fn reject(cx: &RequestContext) -> Option<Status> {
    let (first, rest) = cx.errors().split_first()?;
    let mut message = format!("malformed tracing metadata: {first}");
    for e in rest {
        let _ = write!(message, "; {e}");
    }
    Some(Status::invalid_argument(message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::error::{ErrorKind, Field};
    use b3_propagation::{Format, Sampling, SpanSemantics, TrustPolicy};
    use tonic::metadata::MetadataValue;

    fn request(pairs: &[(&'static str, &'static str)]) -> Request<()> {
        let mut request = Request::new(());
        for (k, v) in pairs {
            request
                .metadata_mut()
                .append(*k, MetadataValue::from_static(v));
        }
        request
    }

    fn trace(request: &Request<()>) -> &RequestTrace {
        request.extensions().get::<RequestTrace>().unwrap()
    }

    #[test]
    fn extracts_and_stays_transparent() {
        let r = ServerInterceptor::new()
            .call(request(&[(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            )]))
            .unwrap();
        let t = trace(&r);
        let remote = t.remote().unwrap();
        assert_eq!(
            remote.span_id().unwrap().to_string(),
            "e457b5a2e4d86bd1",
            "the caller's span"
        );
        assert_eq!(remote.sampling(), Sampling::Accept);
        // An interceptor reports no span: no id of its own, the current span is the caller's.
        assert!(t.local().is_none());
        assert!(!t.is_reported());
        assert_eq!(t.span().as_ref(), Some(remote));
        // A request id was generated and written back.
        let id = t.request_id().unwrap();
        assert_eq!(r.metadata().get("x-request-id").unwrap(), id.as_str());
    }

    /// A caller's ids without a decision: the OpenTelemetry parent the handler's spans start
    /// under is sampled by default, and follows `deferred_sampling` when it is set, as the
    /// server layer's does.
    #[cfg(feature = "opentelemetry")]
    #[test]
    fn deferred_sampling_decides_the_handlers_parent() {
        use opentelemetry::trace::TraceContextExt;
        let ids = [
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
        ];
        let sampled = |mut interceptor: ServerInterceptor| {
            let r = interceptor.call(request(&ids)).unwrap();
            let t = trace(&r);
            assert_eq!(t.remote().unwrap().sampling(), Sampling::Deferred);
            let cx = t.otel_context().expect("a remote parent");
            let sc = cx.span().span_context().clone();
            assert!(sc.is_remote() && sc.is_valid(), "{sc:?}");
            assert_eq!(format!("{:032x}", sc.trace_id()), ids[0].1);
            sc.is_sampled()
        };
        assert!(sampled(ServerInterceptor::new()));
        assert!(sampled(
            ServerInterceptor::new().deferred_sampling(Sampling::Accept)
        ));
        assert!(!sampled(
            ServerInterceptor::new().deferred_sampling(Sampling::Deny)
        ));
        // A decision that came is the caller's, whatever the setting.
        let r = ServerInterceptor::new()
            .deferred_sampling(Sampling::Deny)
            .call(request(&[ids[0], ids[1], ("x-b3-sampled", "1")]))
            .unwrap();
        let cx = trace(&r).otel_context().expect("a remote parent");
        assert!(cx.span().span_context().is_sampled());
    }

    #[test]
    fn shared_semantics_invent_no_span_either() {
        let r = ServerInterceptor::new()
            .propagator(
                Propagator::builder()
                    .span_semantics(SpanSemantics::Shared)
                    .build(),
            )
            .call(request(&[(
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
            )]))
            .unwrap();
        let t = trace(&r);
        assert!(t.local().is_none());
        assert_eq!(t.span().as_ref(), t.remote());
    }

    #[test]
    fn no_context_invents_no_trace_and_keeps_a_valid_request_id() {
        let r = ServerInterceptor::new()
            .call(request(&[("x-request-id", "rid-1")]))
            .unwrap();
        let t = trace(&r);
        assert!(t.remote().is_none());
        // Nothing reports here: no ids at all (the next hop that reports starts the trace).
        assert!(t.span().is_none());
        assert_eq!(t.request_id().unwrap().as_str(), "rid-1");
        assert_eq!(r.metadata().get_all("x-request-id").iter().count(), 1);
    }

    #[test]
    fn malformed_metadata_is_absent_with_its_reason() {
        let r = ServerInterceptor::new()
            .call(request(&[
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "A2FB4A1D1A96D312"),
            ]))
            .unwrap();
        let t = trace(&r);
        assert!(t.remote().is_none());
        let e = t.errors()[0];
        assert_eq!(e.format(), Format::B3Multi);
        assert_eq!(e.field(), Some(Field::SpanId));
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidCharacter {
                byte: b'A',
                index: 0
            }
        );
    }

    #[test]
    fn strict_mode_rejects_with_the_reason() {
        let mut strict = ServerInterceptor::new().strict(true);
        assert!(strict.is_strict());
        let status = strict
            .call(request(&[
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "A2FB4A1D1A96D312"),
                ("x-request-id", "bad\tid"),
            ]))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "malformed tracing metadata: invalid x-b3-* header: span id: invalid character 'A' \
             at byte 0 (lower-case hex only); invalid x-request-id header: invalid byte 0x09 at byte 3"
        );
        // Well-formed metadata passes.
        assert!(strict.call(request(&[("b3", "1")])).is_ok());
    }

    #[test]
    fn a_trace_already_there_is_kept() {
        let mut first = ServerInterceptor::new();
        let mut r = first
            .call(request(&[("x-b3-traceid", "463ac35c9f6413ad4")]))
            .unwrap();
        // What only the trace already there knows: baggage written to it. And metadata that
        // would extract differently now: a valid context.
        trace(&r).set_baggage("kept", "yes").unwrap();
        r.metadata_mut().insert(
            "b3",
            MetadataValue::from_static("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
        );
        let r = ServerInterceptor::new().call(r).unwrap();
        assert_eq!(
            trace(&r).baggage().get("kept"),
            Some("yes"),
            "the same trace"
        );
        assert!(trace(&r).context().span().is_none(), "not extracted again");
        // Strict mode judges the trace already there, with its errors.
        let status = ServerInterceptor::new().strict(true).call(r).unwrap_err();
        assert!(status.message().contains("wrong length (17)"), "{status:?}");
    }

    #[test]
    fn untrusted_edge() {
        let r = ServerInterceptor::new()
            .propagator(
                Propagator::builder()
                    .trust(TrustPolicy::untrusted())
                    .build(),
            )
            .call(request(&[
                ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d"),
                ("x-request-id", "client-chosen"),
            ]))
            .unwrap();
        let t = trace(&r);
        assert_eq!(t.remote().unwrap().sampling(), Sampling::Deferred);
        let id = t.request_id().unwrap().as_str();
        assert_ne!(id, "client-chosen");
        assert_eq!(r.metadata().get("x-request-id").unwrap(), id);
    }
}
