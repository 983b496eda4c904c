//! tonic interceptors that carry the trace and the request id across every gRPC hop, so the
//! gRPC services of an Envoy / Istio mesh show up in the same trace as the sidecars' spans.
//!
//! - [`ServerInterceptor`] reads the caller's context from the request metadata (B3 single
//!   and multi, `traceparent` / `tracestate`, baggage, the opaque `x-ot-span-context` and
//!   `grpc-trace-bin`), ensures one `x-request-id` and stores a [`RequestTrace`] in the
//!   request extensions (it reports no span, so it makes no span id of its own: the hop is
//!   transparent);
//! - [`ClientInterceptor`] writes that trace into the metadata of every outgoing call, in
//!   forward mode (the received headers as they are, what Istio asks of applications) or
//!   instrument mode (the innermost span this hop reports: one the handler opened, or the
//!   server layer's; with none, the caller's span goes on unchanged — never an id nobody
//!   reports, see [`tower_trace_headers::hop`]);
//! - [`metadata`] has the [`Extractor`](b3_propagation::Extractor) /
//!   [`Injector`](b3_propagation::Injector) carriers over tonic's `MetadataMap`, so every codec
//!   of [`b3_propagation`] works on gRPC metadata, binary `-bin` metadata included.
//!
//! # Interceptors or tower layers?
//!
//! A tonic interceptor is a synchronous function of the request's metadata and extensions
//! (`FnMut(Request<()>) -> Result<Request<()>, Status>`): it runs before the handler and
//! returns. So it can read and write headers, but it cannot time the call, see the response,
//! or keep the trace *current* while the handler's future runs — the handler does that
//! itself, in one line ([`RequestExt::in_trace`]).
//!
//! The layers of [`tower_trace_headers`] wrap the whole call instead:
//!
//! | | interceptors (this crate) | tower layers ([`tower_trace_headers`]) |
//! |---|---|---|
//! | server | `XxxServer::with_interceptor(service, ServerInterceptor::new())`, per service | `Server::builder().layer(TraceHeadersLayer::new())`, every service |
//! | client | `XxxClient::with_interceptor(channel, ClientInterceptor::instrument())` | `XxxClient::new(ServiceBuilder::new().layer(PropagateTraceHeadersLayer::instrument()).service(channel))` |
//! | trace current in the handler | inside [`request.in_trace(..)`](RequestExt::in_trace) | across every `.await`, automatically |
//! | spans with timing (OpenTelemetry, `tracing`) | no | yes (features `opentelemetry`, `tracing`) |
//! | response headers (`x-request-id` echo, `traceresponse`) | no | yes |
//! | reject malformed metadata (`InvalidArgument`) | yes ([strict mode](ServerInterceptor::strict)) | no |
//!
//! **Use the interceptors** for the simple case: headers in, headers out, nothing else —
//! the sidecars make the spans. They fit where a service already has interceptors, or where
//! only some services of a server should take part.
//!
//! **Use the tower layers** when the service reports its own spans (with durations and
//! status), or when handlers should not have to do anything: the context is current across
//! every `.await` of every handler with no code.
//!
//! They mix: the [`ClientInterceptor`] injects the trace made current by the server layer,
//! and the [`ServerInterceptor`] stores the same [`RequestTrace`] type the layers use.
//!
//! # Example: interceptors
//!
//! A frontend service calls a backend service; both use the interceptors. The frontend's
//! handler runs its work inside [`RequestExt::in_trace`], so the client interceptor of its
//! outgoing call finds the trace. (The services implement `tonic-health`'s generated `Health`
//! service, to keep the example free of code generation.)
//!
//! ```
//! use grpc_interceptor::{ClientInterceptor, RequestExt, ServerInterceptor};
//! use tonic::service::interceptor::InterceptedService;
//! use tonic::transport::server::TcpIncoming;
//! use tonic::transport::{Channel, Server};
//! use tonic::{Request, Response, Status};
//! use tonic_health::pb::health_client::HealthClient;
//! use tonic_health::pb::health_server::{Health, HealthServer};
//! use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
//!
//! struct Frontend {
//!     backend: HealthClient<InterceptedService<Channel, ClientInterceptor>>,
//! }
//!
//! #[tonic::async_trait]
//! impl Health for Frontend {
//!     async fn check(
//!         &self,
//!         request: Request<HealthCheckRequest>,
//!     ) -> Result<Response<HealthCheckResponse>, Status> {
//!         let mut backend = self.backend.clone();
//!         // The trace the ServerInterceptor stored is current inside, across every .await:
//!         // the backend client's interceptor writes it into the call.
//!         request
//!             .in_trace(|request| async move { backend.check(request.into_inner()).await })
//!             .await
//!     }
//! #   type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;
//! #   async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
//! #       Err(Status::unimplemented("watch"))
//! #   }
//! }
//!
//! struct Backend;
//!
//! #[tonic::async_trait]
//! impl Health for Backend {
//!     async fn check(
//!         &self,
//!         request: Request<HealthCheckRequest>,
//!     ) -> Result<Response<HealthCheckResponse>, Status> {
//!         let trace = request.trace().ok_or_else(|| Status::internal("no interceptor"))?;
//!         // The span this hop's calls name: the caller's (an interceptor reports none).
//!         let span = trace.span().expect("the caller sent a context");
//!         // Tell the caller what arrived here.
//!         let mut response = Response::new(HealthCheckResponse::default());
//!         let seen = response.metadata_mut();
//!         seen.insert("trace-id", span.trace_id().unwrap().to_string().parse().unwrap());
//!         seen.insert("request-id", trace.request_id().unwrap().as_str().parse().unwrap());
//!         Ok(response)
//!     }
//! #   type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;
//! #   async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
//! #       Err(Status::unimplemented("watch"))
//! #   }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The backend.
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let backend_addr = listener.local_addr()?;
//! let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
//! let backend = HealthServer::with_interceptor(Backend, ServerInterceptor::new());
//! tokio::spawn(Server::builder().add_service(backend).serve_with_incoming(incoming));
//!
//! // The frontend, with an instrumented client to the backend.
//! let channel = Channel::from_shared(format!("http://{backend_addr}"))?.connect_lazy();
//! let backend = HealthClient::with_interceptor(channel, ClientInterceptor::instrument());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let frontend_addr = listener.local_addr()?;
//! let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
//! let frontend = HealthServer::with_interceptor(Frontend { backend }, ServerInterceptor::new());
//! tokio::spawn(Server::builder().add_service(frontend).serve_with_incoming(incoming));
//!
//! // A caller (or its sidecar) sends a traceparent and a request id.
//! let mut request = Request::new(HealthCheckRequest::default());
//! request.metadata_mut().insert(
//!     "traceparent",
//!     "00-4bf92f3577b34da6a3ce929d000e4736-00f067aa0ba902b7-01".parse()?,
//! );
//! request.metadata_mut().insert("x-request-id", "7b5e1c2a-8f3d-4e6b-9a1c-2d3e4f5a6b7c".parse()?);
//! let channel = Channel::from_shared(format!("http://{frontend_addr}"))?.connect().await?;
//! let response = HealthClient::new(channel).check(request).await?;
//!
//! // Two hops later: the same trace, the same request id.
//! assert_eq!(response.metadata().get("trace-id").unwrap(), "4bf92f3577b34da6a3ce929d000e4736");
//! assert_eq!(response.metadata().get("request-id").unwrap(), "7b5e1c2a-8f3d-4e6b-9a1c-2d3e4f5a6b7c");
//! # Ok(())
//! # }
//! ```
//!
//! A handler that does not wrap its work still has its trace in
//! [`request.trace()`](RequestExt::trace), and can hand it to a call explicitly: in the
//! call's extensions (`call.extensions_mut().insert(trace.clone())`) or to the interceptor
//! ([`ClientInterceptor::trace`]). A task it spawns needs
//! [`with_current_trace`](tower_trace_headers::FutureExt::with_current_trace) (or
//! `with_trace`), as with the layers.
//!
//! # Example: tower layers
//!
//! The same two services with `tower-trace-headers`: no code in the handlers, and (with its
//! `opentelemetry` or `tracing` feature) a timed span per call.
//!
//! ```
//! use tonic::transport::server::TcpIncoming;
//! use tonic::transport::{Channel, Server};
//! use tonic::{Request, Response, Status};
//! use tonic_health::pb::health_client::HealthClient;
//! use tonic_health::pb::health_server::{Health, HealthServer};
//! use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
//! use tower::ServiceBuilder;
//! use tower_trace_headers::{PropagateTraceHeaders, PropagateTraceHeadersLayer, RequestTrace, TraceHeadersLayer};
//!
//! struct Frontend {
//!     backend: HealthClient<PropagateTraceHeaders<Channel>>,
//! }
//!
//! #[tonic::async_trait]
//! impl Health for Frontend {
//!     async fn check(
//!         &self,
//!         request: Request<HealthCheckRequest>,
//!     ) -> Result<Response<HealthCheckResponse>, Status> {
//!         tokio::task::yield_now().await;
//!         // Current across every .await, with no wrapping: the layer polls the handler
//!         // inside the request's trace.
//!         assert!(RequestTrace::current().is_some());
//!         self.backend.clone().check(request.into_inner()).await
//!     }
//! #   type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;
//! #   async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
//! #       Err(Status::unimplemented("watch"))
//! #   }
//! }
//!
//! struct Backend;
//!
//! #[tonic::async_trait]
//! impl Health for Backend {
//!     async fn check(
//!         &self,
//!         _request: Request<HealthCheckRequest>,
//!     ) -> Result<Response<HealthCheckResponse>, Status> {
//!         let trace = RequestTrace::current().ok_or_else(|| Status::internal("no layer"))?;
//!         let mut response = Response::new(HealthCheckResponse::default());
//!         let trace_id = trace.span().unwrap().trace_id().unwrap();
//!         response.metadata_mut().insert("trace-id", trace_id.to_string().parse().unwrap());
//!         Ok(response)
//!     }
//! #   type WatchStream = tonic::codegen::tokio_stream::Empty<Result<HealthCheckResponse, Status>>;
//! #   async fn watch(&self, _: Request<HealthCheckRequest>) -> Result<Response<Self::WatchStream>, Status> {
//! #       Err(Status::unimplemented("watch"))
//! #   }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let backend_addr = listener.local_addr()?;
//! tokio::spawn(
//!     Server::builder()
//!         .layer(TraceHeadersLayer::new())
//!         .add_service(HealthServer::new(Backend))
//!         .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
//! );
//!
//! let channel = Channel::from_shared(format!("http://{backend_addr}"))?.connect_lazy();
//! let channel = ServiceBuilder::new()
//!     .layer(PropagateTraceHeadersLayer::instrument())
//!     .service(channel);
//! let backend = HealthClient::new(channel);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let frontend_addr = listener.local_addr()?;
//! tokio::spawn(
//!     Server::builder()
//!         .layer(TraceHeadersLayer::new())
//!         .add_service(HealthServer::new(Frontend { backend }))
//!         .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
//! );
//!
//! let mut request = Request::new(HealthCheckRequest::default());
//! request.metadata_mut().insert("b3", "4bf92f3577b34da6a3ce929d000e4736-00f067aa0ba902b7-1".parse()?);
//! let channel = Channel::from_shared(format!("http://{frontend_addr}"))?.connect().await?;
//! let response = HealthClient::new(channel).check(request).await?;
//! assert_eq!(response.metadata().get("trace-id").unwrap(), "4bf92f3577b34da6a3ce929d000e4736");
//! # Ok(())
//! # }
//! ```
//!
//! # Malformed metadata
//!
//! A malformed tracing header never fails a call by default: it is treated as absent, and
//! why it was rejected is in [`RequestContext::errors`](b3_propagation::RequestContext::errors)
//! (a typed [`ParseError`](b3_propagation::ParseError): which header, which field, which
//! rule), readable in the handler through [`RequestExt::trace`]. With
//! [`ServerInterceptor::strict`] the call is rejected instead, with `InvalidArgument` and a
//! message naming each header and reason.
//!
//! # Feature flags
//!
//! | Name | Description | Default |
//! |---|---|---|
//! | `opentelemetry` | The client interceptor names the OpenTelemetry span current where a call is made (a span the handler opened, or a `tracing` span bridged by `tracing-opentelemetry`) when a tracer reports it; the trace's OpenTelemetry context is current inside [`RequestExt::in_trace`], so the handler's spans join the caller's trace | no |
//!
//! The spans of the tower layers are features of [`tower_trace_headers`].

#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod client;
pub mod metadata;
pub mod server;

use std::future::Future;

pub use tower_trace_headers::{FutureExt, Mode, RequestTrace, WithTrace};

pub use crate::client::ClientInterceptor;
pub use crate::server::ServerInterceptor;

mod sealed {
    pub trait Sealed {}
    impl<T> Sealed for tonic::Request<T> {}
}

/// Access to the request's trace from a handler. Implemented for [`tonic::Request`].
///
/// ```
/// use grpc_interceptor::{RequestExt, RequestTrace, ServerInterceptor};
/// use tonic::service::Interceptor;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), tonic::Status> {
/// // What tonic hands a handler after the ServerInterceptor ran.
/// let request = ServerInterceptor::new().call(tonic::Request::new(()))?;
///
/// let request_id = request.trace().unwrap().request_id().unwrap().clone();
/// let seen = request
///     .in_trace(|_request| async move {
///         tokio::task::yield_now().await;
///         // Current here, after the await, and in every call made from here.
///         RequestTrace::current().unwrap().request_id().unwrap().clone()
///     })
///     .await;
/// assert_eq!(seen, request_id);
/// # Ok(()) }
/// ```
pub trait RequestExt: sealed::Sealed + Sized {
    /// The [`RequestTrace`] that the [`ServerInterceptor`] (or `tower-trace-headers`' server
    /// layer) stored in the extensions; `None` when neither is installed.
    fn trace(&self) -> Option<&RequestTrace>;

    /// Run `handler(self)` with this request's trace current on every poll of its future,
    /// so code after any `.await` — and the [`ClientInterceptor`] of every call it makes —
    /// sees it. Without a stored trace, the trace current at this call (if any) is used.
    ///
    /// In a handler: `request.in_trace(|request| async move { ... }).await`, or
    /// `request.in_trace(|request| self.handle(request)).await`.
    fn in_trace<F, Fut>(self, handler: F) -> WithTrace<Fut>
    where
        F: FnOnce(Self) -> Fut,
        Fut: Future;
}

impl<T> RequestExt for tonic::Request<T> {
    #[inline]
    fn trace(&self) -> Option<&RequestTrace> {
        self.extensions().get::<RequestTrace>()
    }

    fn in_trace<F, Fut>(self, handler: F) -> WithTrace<Fut>
    where
        F: FnOnce(Self) -> Fut,
        Fut: Future,
    {
        let trace = self.trace().cloned().or_else(RequestTrace::current);
        // The handler's synchronous part (building its future) runs in the trace too.
        let future = {
            let _current = trace.as_ref().map(RequestTrace::enter);
            handler(self)
        };
        WithTrace::new(future, trace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::{RequestContext, Sampling, SpanContext};
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    fn new_trace() -> RequestTrace {
        RequestTrace::new(RequestContext::from_span(SpanContext::new_root(
            Sampling::Accept,
        )))
    }

    /// Poll a future that is ready at once.
    fn ready<F: Future>(f: F) -> F::Output {
        match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(out) => out,
            Poll::Pending => panic!("not ready"),
        }
    }

    fn current_span() -> Option<SpanContext> {
        RequestTrace::current().and_then(|t| t.span())
    }

    #[test]
    fn in_trace_uses_the_stored_trace() {
        let stored = new_trace();
        let mut request = tonic::Request::new(());
        request.extensions_mut().insert(stored.clone());
        assert_eq!(
            request.trace().and_then(|t| t.span()),
            stored.span(),
            "free function"
        );
        let other = new_trace();
        let _ambient = other.enter();
        let (at_setup, at_poll) = ready(request.in_trace(|_| {
            let at_setup = current_span();
            async move { (at_setup, current_span()) }
        }));
        assert_eq!(at_setup, stored.span(), "the handler's setup runs in it");
        assert_eq!(at_poll, stored.span(), "and its future");
        assert_eq!(current_span(), other.span(), "restored after");
    }

    #[test]
    fn in_trace_falls_back_to_the_current_trace() {
        let request = tonic::Request::new(());
        assert!(request.trace().is_none());
        let current = new_trace();
        let future = {
            let _g = current.enter();
            request.in_trace(|_| async { current_span() })
        };
        // Polled later, outside: it still runs in the trace current when it was made.
        assert_eq!(ready(future), current.span());
        // With neither, no trace.
        assert_eq!(
            ready(tonic::Request::new(()).in_trace(|_| async { current_span() })),
            None
        );
    }
}
