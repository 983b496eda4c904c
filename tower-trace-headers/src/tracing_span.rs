//! The `tracing` span per request (feature `tracing`).
//!
//! Every log line emitted inside the request carries `trace_id`, `span_id` and `request_id`
//! (at the width they travel in the headers), so logs and traces join; `span_id` is this
//! hop's span when it reports one, else the caller's (the span the hop's calls name). The
//! baggage keys chosen with
//! [`TraceHeadersLayer::record_baggage`](crate::TraceHeadersLayer::record_baggage) are
//! recorded in a `baggage` field (`key=value` pairs), Brave's correlation fields. With
//! feature `tracing-opentelemetry`, the span's OpenTelemetry parent is this hop's server
//! span, or the extracted context when this hop reports none: one request never shows two
//! trace ids. The span is closed when the response body ends (see
//! [`ResponseBody`](crate::server::ResponseBody)), with `http.response.status_code` and, for a
//! gRPC call, `rpc.grpc.status_code` recorded.

use b3_propagation::RequestContext;
use http::Request;

/// The server-side `tracing` span.
pub(crate) fn server_span<B>(
    req: &Request<B>,
    cx: &RequestContext,
    #[allow(unused_variables)] otel_parent: Option<&opentelemetry_parent::Context>,
) -> tracing::Span {
    let span_cx = cx.span();
    let span = tracing::info_span!(
        "request",
        otel.kind = "server",
        http.request.method = %req.method(),
        url.path = %req.uri().path(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
        request_id = tracing::field::Empty,
        baggage = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        rpc.grpc.status_code = tracing::field::Empty,
    );
    if let Some(t) = span_cx.and_then(|s| s.trace_id()) {
        span.record("trace_id", tracing::field::display(t));
    }
    if let Some(s) = span_cx.and_then(|s| s.span_id()) {
        span.record("span_id", tracing::field::display(s));
    }
    if let Some(id) = cx.request_id() {
        span.record("request_id", id.as_str());
    }
    #[cfg(feature = "tracing-opentelemetry")]
    {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let parent = match otel_parent {
            Some(p) => Some(p.clone()),
            None => cx
                .remote()
                .and_then(|r| r.to_otel(cx.tracestate()))
                .map(|sc| opentelemetry::Context::new().with_remote_span_context(sc)),
        };
        if let Some(parent) = parent {
            // Without a tracing-opentelemetry layer installed there is nothing to parent.
            let _ = span.set_parent(parent);
        }
    }
    span
}

#[cfg(feature = "opentelemetry")]
mod opentelemetry_parent {
    pub(crate) use opentelemetry::Context;
}

#[cfg(not(feature = "opentelemetry"))]
mod opentelemetry_parent {
    /// Stands in for `opentelemetry::Context` when that feature is off.
    #[derive(Debug)]
    pub(crate) enum Context {}
}
