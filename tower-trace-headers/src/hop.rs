//! What one hop does with the tracing headers, written once and shared by the tower layers,
//! the tonic interceptors of `grpc-interceptor` and the [`reqwest`](crate::reqwest)
//! middleware.
//!
//! # The rule that keeps traces joined
//!
//! A span id goes into an outgoing header only if some tracer reports that span.
//!
//! - **Server side** ([`receive`]): extract the caller's context, ensure one `x-request-id`
//!   and write it back into the request. This hop's own span is set only when a tracer
//!   reports it (the server layer with feature `opentelemetry` and a provider that samples
//!   it); otherwise the hop is *transparent*: its current span is the caller's.
//! - **Client side** ([`inject`]): in [`Mode::Forward`] the received headers go on as they
//!   came. In [`Mode::Instrument`] the call is a child of the *innermost reported span*
//!   current where it is made — a span the application opened (a `tracing` span bridged by
//!   `tracing-opentelemetry`, or an OpenTelemetry span it made current), else the server
//!   layer's span — and when nothing at this hop is reported, instrument mode re-sends the
//!   caller's context exactly as forward mode does. The caller's sampling decision passes
//!   untouched: a local sampler that drops does not turn "sampled" into "deny".
//! - A client that can time the call (the tower client layer, feature `opentelemetry`)
//!   starts a client span under that parent and names it in the headers, with the parent as
//!   `x-b3-parentspanid`. A tonic interceptor or a `reqwest` middleware never ends a span,
//!   so it names the parent itself: never an id of its own.
//!
//! A hop that reports nothing and received no context sends no span id at all (the request
//! id, baggage and fields still travel): the next hop that reports — an Envoy sidecar — starts
//! the trace. A root that a sampler dropped here (the server layer with a tracer, no caller)
//! sends its decision alone in the B3 formats of the inject set (`x-b3-sampled: 0`, `b3: 0`;
//! see [`RequestContext::decide_sampling`]), so the hops below that read it (Envoy, Brave,
//! this library) drop the trace too instead of starting their own.
//!
//! **Shared span semantics.** A callee with shared span semantics (Envoy's
//! `shared_span_context`, [`SpanSemantics::Shared`](b3_propagation::SpanSemantics::Shared))
//! reuses the span id it receives for its server span, so a call must name a client span of
//! its own: only a client that times the call (the tower client layer) makes one. An
//! interceptor or the `reqwest` middleware would hand over this hop's span, and two spans
//! would share its id. Behind an Envoy sidecar, which makes the client span, this cannot
//! happen.
//!
//! # Example
//!
//! A headers-only hop (no tracer reports anything) re-sends the caller's span, in instrument
//! mode too:
//!
//! ```
//! use b3_propagation::Propagator;
//! use http::{HeaderMap, HeaderValue};
//! use tower_trace_headers::{Mode, RequestTrace, hop};
//!
//! let propagator = Propagator::default();
//! let mut incoming = HeaderMap::new();
//! incoming.insert("x-b3-traceid", HeaderValue::from_static("463ac35c9f6413ad48485a3953bb6124"));
//! incoming.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
//! incoming.insert("x-b3-sampled", HeaderValue::from_static("1"));
//!
//! let cx = hop::receive(&propagator, &mut incoming);
//! assert!(incoming.contains_key("x-request-id")); // generated and written back
//! let trace = RequestTrace::new(cx);
//!
//! let mut outgoing = HeaderMap::new();
//! hop::inject(&propagator, Mode::Instrument, Some(&trace), &mut outgoing);
//! assert_eq!(outgoing["x-b3-spanid"], "a2fb4a1d1a96d312"); // the caller's span, unchanged
//! assert_eq!(outgoing["x-b3-sampled"], "1");
//! assert_eq!(outgoing["x-request-id"], incoming["x-request-id"]);
//! ```

use b3_propagation::header::X_REQUEST_ID;
use b3_propagation::{Injector, Propagator, RequestContext, SpanContext};
use http::HeaderMap;

use crate::client::Mode;
use crate::current::RequestTrace;

/// The server steps every hop takes before any span: extract the caller's context with
/// `propagator`, ensure a valid `x-request-id` (generated when absent, invalid or
/// untrusted) and write it into `headers`, so handlers, logs and forwarded calls see the
/// one id. This hop's span is left unset: set it ([`RequestContext::set_local`]) only for a
/// span some tracer reports.
///
/// A propagator built with [`request_id(false)`](b3_propagation::PropagatorBuilder::request_id)
/// neither reads nor makes an id: `headers` keep whatever `x-request-id` came.
#[inline]
pub fn receive(propagator: &Propagator, headers: &mut HeaderMap) -> RequestContext {
    let mut cx = RequestContext::new();
    receive_into(propagator, headers, &mut cx);
    cx
}

/// [`receive`] into `cx`, which it replaces (the server layer makes the context where its
/// trace keeps it).
#[inline]
pub(crate) fn receive_into(
    propagator: &Propagator,
    headers: &mut HeaderMap,
    cx: &mut RequestContext,
) {
    propagator.extract_into(&*headers, cx);
    // A request id the extract kept is the header's (first) value already: only a generated
    // one (none came, or an invalid or untrusted one) is written. With request ids off, the
    // header is not this library's to touch.
    if propagator.propagates_request_id() && cx.request_id().is_none() {
        let request_id = cx.ensure_request_id().header_value();
        if headers.get(&X_REQUEST_ID) != Some(request_id) {
            headers.insert(X_REQUEST_ID, request_id.clone());
        }
    }
}

/// The innermost reported span current for a call made for `trace`.
pub(crate) struct Parent {
    /// Its ids, in the request's terms.
    pub(crate) span: SpanContext,
    /// Its OpenTelemetry context, to start a client span under.
    #[cfg(feature = "opentelemetry")]
    pub(crate) cx: Option<opentelemetry::Context>,
}

/// The innermost span current here that some tracer reports: the application's own
/// (feature `opentelemetry`: the current OpenTelemetry span, which `tracing-opentelemetry`
/// sets for an entered `tracing` span), else this hop's server span. `None` when nothing at
/// this hop is reported.
pub(crate) fn reported_parent(trace: Option<&RequestTrace>) -> Option<Parent> {
    let local = trace.and_then(|t| t.local().copied());
    #[cfg(feature = "opentelemetry")]
    {
        let like = trace.and_then(|t| t.span());
        if let Some((cx, span)) = crate::otel::current_reported(like.as_ref()) {
            // This hop's own server span: its parent is known.
            let span = match local {
                Some(l) if l.span_id() == span.span_id() => l,
                _ => span,
            };
            return Some(Parent { span, cx: Some(cx) });
        }
    }
    Some(Parent {
        span: local?,
        #[cfg(feature = "opentelemetry")]
        cx: trace.and_then(RequestTrace::otel_context).cloned(),
    })
}

/// Write the context for one outgoing call: `span` when this hop has a reported span to
/// name, else the caller's context as received.
pub(crate) fn write<I: Injector + ?Sized>(
    propagator: &Propagator,
    trace: Option<&RequestTrace>,
    span: Option<&SpanContext>,
    carrier: &mut I,
) {
    match (trace, span) {
        (Some(t), Some(s)) => t.with_context(|cx| propagator.inject(s, cx, carrier)),
        (Some(t), None) => t.with_context(|cx| propagator.forward(cx, carrier)),
        // The application's span outside any request: its ids alone.
        (None, Some(s)) => propagator.inject(s, &RequestContext::new(), carrier),
        (None, None) => {}
    }
}

/// The headers of an outgoing call, as a carrier that also makes room for the `host` header
/// an HTTP/1 client (hyper) adds after the layers: the map is sized once, not grown when
/// `host` arrives.
pub(crate) struct Outgoing<'a> {
    map: &'a mut HeaderMap,
    extra: usize,
    /// Whether the call is gRPC's, once asked.
    grpc: Option<bool>,
}

impl<'a> Outgoing<'a> {
    pub(crate) fn of<B>(req: &'a mut http::Request<B>) -> Self {
        let host = req.version() < http::Version::HTTP_2
            && !req.headers().contains_key(http::header::HOST);
        Outgoing {
            extra: usize::from(host),
            map: req.headers_mut(),
            grpc: None,
        }
    }

    /// Whether the call is a gRPC (or gRPC-Web) call, whose peer reads `-bin` values as
    /// base64 and takes only gRPC's metadata keys and values: its `content-type`, looked at
    /// once.
    fn grpc(&mut self) -> bool {
        *self.grpc.get_or_insert_with(|| {
            self.map
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
        })
    }
}

/// The `HeaderMap` carrier's own behaviour, with the room for `host` added once, and on a
/// gRPC call no `-bin` value a gRPC peer cannot decode (as `grpc-interceptor`'s carrier).
impl Injector for Outgoing<'_> {
    #[inline]
    fn set(&mut self, name: &http::HeaderName, value: http::HeaderValue) {
        // A `-bin` name (prefixed baggage whose key ends so, a propagated field, a received
        // `grpc-trace-bin`) is binary metadata to a gRPC peer, which fails the whole call on a
        // value that is not base64: such a value is not sent on a gRPC call.
        // gRPC and gRPC-Web alike read `-bin` values as base64.
        if name.as_str().ends_with("-bin")
            && self.grpc()
            && !b3_propagation::codec::grpc_trace_bin::is_base64(value.as_bytes())
        {
            Injector::remove(&mut *self.map, name);
            return;
        }
        Injector::set(&mut *self.map, name, value);
    }

    #[inline]
    fn remove(&mut self, name: &http::HeaderName) {
        Injector::remove(&mut *self.map, name);
    }

    fn reserve(&mut self, additional: usize) {
        Injector::reserve(&mut *self.map, additional + std::mem::take(&mut self.extra));
    }

    #[inline]
    fn remove_context_headers(&mut self) {
        Injector::remove_context_headers(&mut *self.map);
    }

    #[inline]
    fn remove_opaque_headers(&mut self) {
        Injector::remove_opaque_headers(&mut *self.map);
    }

    fn is_grpc_metadata(&mut self) -> bool {
        self.grpc()
    }
}

/// The client steps for a caller that cannot time the call (a tonic interceptor, a
/// `reqwest` middleware): write `trace` (the request's, or `None` outside any request) into
/// an outgoing call. In [`Mode::Instrument`] the headers name the innermost reported span
/// current here, else the caller's span; in [`Mode::Forward`] the received headers go on as
/// they came. See the [module docs](self).
pub fn inject<I: Injector + ?Sized>(
    propagator: &Propagator,
    mode: Mode,
    trace: Option<&RequestTrace>,
    carrier: &mut I,
) {
    let parent = match mode {
        Mode::Instrument => reported_parent(trace),
        Mode::Forward => None,
    };
    write(propagator, trace, parent.as_ref().map(|p| &p.span), carrier);
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::Sampling;
    use http::HeaderValue;

    /// With request ids off, the received `x-request-id` is left as it came (valid, invalid or
    /// absent): none is read, generated, written back or sent on.
    #[test]
    fn request_ids_off_leave_the_header_alone() {
        let propagator = Propagator::builder().request_id(false).build();
        for received in [Some("rid-1"), Some("bad id"), None] {
            let mut headers = HeaderMap::new();
            headers.insert("x-b3-traceid", HeaderValue::from_static("463ac35c9f6413ad"));
            headers.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
            if let Some(id) = received {
                headers.insert(
                    X_REQUEST_ID,
                    HeaderValue::from_bytes(id.as_bytes()).expect("value"),
                );
            }
            let before = headers.clone();
            let cx = receive(&propagator, &mut headers);
            assert_eq!(headers, before, "{received:?}");
            assert!(cx.request_id().is_none(), "{received:?}");
            assert!(cx.span().is_some(), "{received:?}");

            let trace = RequestTrace::new(cx);
            let mut req = http::Request::new(());
            write(&propagator, Some(&trace), None, &mut Outgoing::of(&mut req));
            assert!(!req.headers().contains_key(X_REQUEST_ID), "{received:?}");
            assert_eq!(req.headers()["x-b3-spanid"], "a2fb4a1d1a96d312");
        }
        // On by default: an absent id is generated and written back.
        let mut headers = HeaderMap::new();
        let cx = receive(&Propagator::default(), &mut headers);
        let id = cx.request_id().expect("generated");
        assert_eq!(headers[X_REQUEST_ID], id.as_str());
    }

    /// The headers `write` puts on an outgoing call for `trace` (no span of this hop's): a
    /// gRPC call's when `grpc`, else an HTTP one's.
    fn written(propagator: &Propagator, trace: &RequestTrace, grpc: bool) -> HeaderMap {
        let mut req = http::Request::new(());
        if grpc {
            req.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
        }
        write(propagator, Some(trace), None, &mut Outgoing::of(&mut req));
        req.into_parts().0.headers
    }

    /// On a gRPC call, a `-bin` value that is not base64 is not sent (a gRPC peer would fail
    /// the call); on an HTTP call a `-bin` suffix means nothing.
    #[test]
    fn a_grpc_call_gets_no_undecodable_bin_value() {
        let propagator = Propagator::builder().prefixed_baggage(true).build();
        let trace = RequestTrace::new(RequestContext::from_span(SpanContext::new_root(
            Sampling::Accept,
        )));
        trace.set_baggage("user-bin", "alice").expect("baggage");
        trace.set_baggage("pic-bin", "AAEC").expect("baggage");
        for grpc in [true, false] {
            let h = &written(&propagator, &trace, grpc);
            assert_eq!(h.contains_key("baggage-user-bin"), !grpc, "{h:?}");
            assert_eq!(h["baggage-pic-bin"], "AAEC", "{h:?}");
            // The W3C header still carries both.
            let w3c = h["baggage"].to_str().expect("ascii");
            assert!(w3c.contains("user-bin=alice"), "{w3c}");
        }
    }

    /// On a gRPC call, no header gRPC metadata cannot carry: a prefixed baggage key with `*`
    /// or a value with a tab (received from an HTTP caller) stays off it; an HTTP call gets
    /// them as they came.
    #[test]
    fn a_grpc_call_gets_only_what_grpc_carries() {
        let propagator = Propagator::default();
        let mut received = HeaderMap::new();
        received.insert("x-b3-traceid", HeaderValue::from_static("463ac35c9f6413ad"));
        received.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        received.insert("baggage-a*b", HeaderValue::from_static("x"));
        received.insert("uberctx-tab", HeaderValue::from_static("a\tb"));
        received.insert("baggage-ok", HeaderValue::from_static("fine"));
        let trace = RequestTrace::new(receive(&propagator, &mut received));
        for grpc in [true, false] {
            let h = &written(&propagator, &trace, grpc);
            assert_eq!(h["baggage-ok"], "fine", "{h:?}");
            assert_eq!(h.contains_key("baggage-a*b"), !grpc, "{h:?}");
            assert_eq!(h.contains_key("uberctx-tab"), !grpc, "{h:?}");
        }
    }

    /// The outgoing map is sized once for the propagator's headers and the `host` an HTTP/1
    /// client adds: it does not grow when `host` arrives.
    #[test]
    fn outgoing_makes_room_for_host() {
        let propagator = Propagator::builder().prefixed_baggage(false).build();
        let mut cx = RequestContext::from_span(SpanContext::new_root(Sampling::Accept));
        cx.ensure_request_id();
        let trace = RequestTrace::new(cx);
        trace.set_baggage("tenant", "blue").expect("baggage");
        let mut req = http::Request::new(());
        write(&propagator, Some(&trace), None, &mut Outgoing::of(&mut req));
        // x-b3-traceid, -spanid, -sampled, traceparent, x-request-id, baggage: as many as a
        // map sized for exactly these holds, so without the room for `host` it would grow.
        assert_eq!(req.headers().len(), 6, "{:?}", req.headers());
        let mut exact = HeaderMap::new();
        exact.reserve(6);
        assert!(
            exact.capacity() < 7,
            "the test's premise: {}",
            exact.capacity()
        );
        let capacity = req.headers().capacity();
        req.headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("item:8080"));
        assert_eq!(req.headers().capacity(), capacity);

        // HTTP/2 carries the authority in the URI: no room for `host`.
        let mut req = http::Request::builder()
            .version(http::Version::HTTP_2)
            .body(())
            .expect("request");
        let mut out = Outgoing::of(&mut req);
        assert_eq!(out.extra, 0);
        out.reserve(3);
        assert!(req.headers().capacity() >= 3);
    }
}
