//! OpenTelemetry spans (feature `opentelemetry`).
//!
//! With this feature the server layer starts a `SERVER` span per request and the client
//! layer (in instrument mode) a `CLIENT` span per call, through the tracer given to the layer
//! (the global tracer by default), with HTTP or RPC semantic-convention attributes and a
//! status from the response. The spans' ids are the ids in the propagated headers, so the
//! exported spans and the headers tell the same story.
//!
//! A span counts only when it is *reported*: recording and sampled. A no-op tracer (no
//! provider installed), a sampler that drops, a provider shut down, or
//! [`without_spans`](crate::TraceHeadersLayer::without_spans) leave the hop transparent, its
//! calls naming the caller's span (see [`crate::hop`]). OpenTelemetry cannot tell from a span
//! whether its SDK provider has an exporter at all: a provider without one must be declared
//! with `without_spans()`, or its span ids would travel without ever being reported.
//!
//! The parent of a client span is the innermost reported span current where the call is
//! made: the OpenTelemetry context current then — which `tracing-opentelemetry` sets for an
//! entered `tracing` span, so `#[tracing::instrument]` spans are parents — else the server
//! span. When this hop reports no server span, the caller's span is made current as a remote
//! parent, so spans the application starts still join the caller's trace.
//!
//! **Shared span semantics** (Zipkin / Envoy `shared_span_context`) needs the server span to
//! reuse the caller's span id. The OpenTelemetry SDK always asks its id generator for ids, so
//! install [`PresetIdGenerator`] in your tracer provider: it hands the SDK the ids the layer
//! chose, and random ones otherwise. Without it, the layers adopt the SDK's ids (child
//! semantics), and the trace still joins.
//!
//! Nothing here can slow or fail a request: spans are ended and handed to the SDK's span
//! processor, whose batching and export run elsewhere.
//!
//! # Example
//!
//! ```
//! use opentelemetry_sdk::trace::SdkTracerProvider;
//! use tower_trace_headers::otel::PresetIdGenerator;
//!
//! let provider = SdkTracerProvider::builder()
//!     .with_id_generator(PresetIdGenerator::default())
//!     .build();
//! opentelemetry::global::set_tracer_provider(provider);
//! ```

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use b3_propagation::{RequestContext, Sampling, SpanContext, SpanId, TraceId, TraceState};
use http::{HeaderMap, Method, Uri};
use opentelemetry::global::{self, BoxedTracer, ObjectSafeTracer};
use opentelemetry::trace::{self as ot, Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

thread_local! {
    static PRESET: Cell<Option<(u128, u64)>> = const { Cell::new(None) };
}

/// An OpenTelemetry SDK [`IdGenerator`] that returns the ids the layers chose for the span
/// being started (so a shared server span reuses the caller's span id), and random ids
/// otherwise. See the [module docs](self).
#[derive(Clone, Debug, Default)]
pub struct PresetIdGenerator {
    fallback: RandomIdGenerator,
}

impl IdGenerator for PresetIdGenerator {
    fn new_trace_id(&self) -> ot::TraceId {
        match PRESET.with(Cell::get) {
            Some((t, _)) => ot::TraceId::from(t),
            None => self.fallback.new_trace_id(),
        }
    }

    fn new_span_id(&self) -> ot::SpanId {
        match PRESET.with(Cell::get) {
            Some((_, s)) => ot::SpanId::from(s),
            None => self.fallback.new_span_id(),
        }
    }
}

/// The tracer a layer starts spans with.
#[derive(Clone, Default)]
pub(crate) enum SpanTracer {
    /// The global tracer, looked up per request (so a provider installed later is used).
    #[default]
    Global,
    /// A given tracer.
    Given(Arc<BoxedTracer>),
    /// No spans.
    Off,
}

impl SpanTracer {
    pub(crate) fn given<T>(tracer: T) -> Self
    where
        T: ObjectSafeTracer + Send + Sync + 'static,
    {
        SpanTracer::Given(Arc::new(BoxedTracer::new(Box::new(tracer))))
    }

    fn with<R>(&self, f: impl FnOnce(&BoxedTracer) -> R) -> Option<R> {
        match self {
            SpanTracer::Global => Some(f(&global::tracer("tower-trace-headers"))),
            SpanTracer::Given(t) => Some(f(t)),
            SpanTracer::Off => None,
        }
    }
}

impl fmt::Debug for SpanTracer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SpanTracer::Global => "Global",
            SpanTracer::Given(_) => "Given",
            SpanTracer::Off => "Off",
        })
    }
}

/// What a request looks like to the span attributes.
pub(crate) struct RequestInfo<'a> {
    pub(crate) method: &'a Method,
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
}

impl<'a> RequestInfo<'a> {
    /// What `req` shows the span attributes.
    pub(crate) fn of<B>(req: &'a http::Request<B>) -> Self {
        RequestInfo {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
        }
    }

    fn is_grpc(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    }

    /// `(name, attributes)` by the HTTP / RPC semantic conventions.
    fn describe(&self, kind: SpanKind) -> (Cow<'static, str>, Vec<KeyValue>) {
        let path = self.uri.path().to_owned();
        let mut attrs = Vec::with_capacity(8);
        if self.is_grpc() {
            let full = path.trim_start_matches('/');
            let (service, method) = full.split_once('/').unwrap_or((full, ""));
            attrs.push(KeyValue::new("rpc.system", "grpc"));
            attrs.push(KeyValue::new("rpc.service", service.to_owned()));
            attrs.push(KeyValue::new("rpc.method", method.to_owned()));
            if let Some(host) = self.uri.host() {
                attrs.push(KeyValue::new("server.address", host.to_owned()));
            }
            return (Cow::Owned(full.to_owned()), attrs);
        }
        attrs.push(KeyValue::new(
            "http.request.method",
            self.method.as_str().to_owned(),
        ));
        attrs.push(KeyValue::new("url.path", path.clone()));
        if let Some(q) = self.uri.query() {
            attrs.push(KeyValue::new("url.query", q.to_owned()));
        }
        match kind {
            SpanKind::Client => {
                attrs.push(KeyValue::new("url.full", self.uri.to_string()));
                if let Some(host) = self.uri.host() {
                    attrs.push(KeyValue::new("server.address", host.to_owned()));
                }
                if let Some(port) = self.uri.port_u16() {
                    attrs.push(KeyValue::new("server.port", i64::from(port)));
                }
            }
            _ => {
                if let Some(scheme) = self.uri.scheme_str() {
                    attrs.push(KeyValue::new("url.scheme", scheme.to_owned()));
                }
                if let Some(ua) = self
                    .headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                {
                    attrs.push(KeyValue::new("user_agent.original", ua.to_owned()));
                }
            }
        }
        (Cow::Owned(format!("{} {path}", self.method)), attrs)
    }
}

fn to_remote(cx: &SpanContext, tracestate: &TraceState) -> Option<ot::SpanContext> {
    cx.to_otel(tracestate)
}

/// Start a span with the SDK handing out `ids` (when [`PresetIdGenerator`] is installed).
fn start(
    tracer: &BoxedTracer,
    builder: ot::SpanBuilder,
    parent: &Context,
    ids: Option<(TraceId, SpanId)>,
) -> global::BoxedSpan {
    PRESET.with(|p| p.set(ids.map(|(t, s)| (t.to_u128(), s.to_u64()))));
    let span = tracer.build_with_context(builder, parent);
    PRESET.with(|p| p.set(None));
    span
}

/// Whether a started span is one some tracer reports: recording and sampled. A no-op tracer
/// (no provider installed) hands back a non-recording echo of the parent; a sampler that
/// drops gives a non-recording span; a provider shut down gives an invalid one.
pub(crate) fn is_reported(span: &opentelemetry::trace::SpanRef<'_>) -> bool {
    span.is_recording() && span.span_context().is_sampled() && span.span_context().is_valid()
}

/// The OpenTelemetry context of `cx`'s span as a remote parent, a deferred decision read as
/// `deferred`: what spans started under this request join when this hop reports none.
pub(crate) fn remote_parent(cx: &RequestContext, deferred: Sampling) -> Option<Context> {
    let span = cx.span().filter(|s| !s.is_sampling_only())?;
    let span = match span.sampling() {
        Sampling::Deferred => span.with_sampling(deferred),
        _ => span,
    };
    to_remote(&span, cx.tracestate()).map(|sc| Context::new().with_remote_span_context(sc))
}

/// Our span context for a reported OpenTelemetry span, in the request's terms: the trace
/// id at the width the request's trace travels at, debug kept, sampled.
pub(crate) fn reported(
    started: &ot::SpanContext,
    like: Option<&SpanContext>,
) -> Option<SpanContext> {
    let theirs = SpanContext::from_otel(started)?;
    let trace_id = match (like.and_then(SpanContext::trace_id), theirs.trace_id()) {
        (Some(a), Some(b)) if a.to_u128() == b.to_u128() => a,
        (_, b) => b?,
    };
    let sampling = match like.map(SpanContext::sampling) {
        Some(Sampling::Debug) => Sampling::Debug,
        _ => theirs.sampling(),
    };
    let flags = like.map_or_else(
        || {
            if trace_id.is_64bit() {
                b3_propagation::TraceFlags::default()
            } else {
                b3_propagation::TraceFlags::RANDOM
            }
        },
        SpanContext::trace_flags,
    );
    Some(
        SpanContext::new(trace_id, theirs.span_id()?)
            .with_sampling(sampling)
            .with_trace_flags(flags),
    )
}

/// The innermost span current on this thread that a tracer reports (the application's own
/// span, made current by it or by `tracing-opentelemetry`, or a server layer's span), as an
/// OpenTelemetry context and in the request's terms.
pub(crate) fn current_reported(like: Option<&SpanContext>) -> Option<(Context, SpanContext)> {
    let found = Context::map_current(|cx| {
        let span = cx.span();
        if !is_reported(&span) {
            return None;
        }
        let sc = span.span_context();
        // Another trace than the request's: not this request's span.
        if let Some(t) = like.and_then(SpanContext::trace_id)
            && t.to_u128() != u128::from_be_bytes(sc.trace_id().to_bytes())
        {
            return None;
        }
        Some(cx.clone())
    })?;
    let sc = reported(found.span().span_context(), like)?;
    Some((found, sc))
}

/// An OpenTelemetry span in flight, ended with the response.
pub(crate) struct OtelSpan {
    cx: Context,
    kind: SpanKind,
}

impl OtelSpan {
    /// The context to make current while the request is handled.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// End the span with the response's status.
    pub(crate) fn end_with_response(self, status: http::StatusCode, headers: &HeaderMap) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status.as_u16()),
        ));
        let grpc = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        if let Some(code) = grpc {
            span.set_attribute(KeyValue::new("rpc.grpc.status_code", code));
        }
        let error = match self.kind {
            SpanKind::Server => {
                status.is_server_error()
                    || grpc.is_some_and(|c| matches!(c, 2 | 4 | 12 | 13 | 14 | 15))
            }
            _ => {
                status.is_client_error() || status.is_server_error() || grpc.is_some_and(|c| c != 0)
            }
        };
        if error {
            let message = match grpc {
                Some(c) => format!("grpc-status {c}"),
                None => format!("HTTP {}", status.as_u16()),
            };
            span.set_status(Status::error(message));
        }
        span.end();
    }

    /// End the span for a failed call (no response).
    pub(crate) fn end_with_error(self, error: &dyn fmt::Display) {
        let span = self.cx.span();
        span.set_status(Status::error(error.to_string()));
        span.end();
    }
}

impl fmt::Debug for OtelSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelSpan")
            .field("span_context", self.cx.span().span_context())
            .field("kind", &self.kind)
            .finish()
    }
}

/// What the server side of a hop started.
pub(crate) struct ServerSpan {
    /// The span to end with the response, when one was started (reported or not).
    pub(crate) span: Option<OtelSpan>,
    /// The context to make current while the request is handled: the server span's, or the
    /// caller's span as a remote parent.
    pub(crate) cx: Option<Context>,
    /// This hop's span, when a tracer reports it.
    pub(crate) local: Option<SpanContext>,
    /// A sampler's decision for a caller's context that arrived deferred, when one ran.
    pub(crate) decided: Option<Sampling>,
}

/// Start the server span for the request `cx`: a child of the caller's span (or, in shared
/// mode, the caller's span itself, through [`PresetIdGenerator`]), or a root.
///
/// The span counts as this hop's only when it is reported (see [`is_reported`]): otherwise
/// the hop is transparent, and what it sends names the caller's span. A caller's context
/// whose sampling is deferred is offered to the sampler as `deferred` decided it
/// (OpenTelemetry samplers know only sampled or not). `preset_works` remembers, per layer,
/// whether the tracer's provider honours preset ids (0 unknown, 1 yes, 2 no).
pub(crate) fn server_span(
    tracer: &SpanTracer,
    req: &RequestInfo<'_>,
    cx: &RequestContext,
    propagator: &b3_propagation::Propagator,
    deferred: Sampling,
    preset_works: &AtomicU8,
) -> ServerSpan {
    let remote = cx.remote().map(|r| match r.sampling() {
        Sampling::Deferred => r.with_sampling(deferred),
        _ => *r,
    });
    let remote = remote.as_ref();
    let transparent = || ServerSpan {
        span: None,
        cx: remote_parent(cx, deferred),
        local: None,
        decided: None,
    };
    let shared = propagator.span_semantics() == b3_propagation::SpanSemantics::Shared;
    // Without [`PresetIdGenerator`] the SDK picks its own span id, so the span cannot be the
    // caller's: fall back to child semantics (the trace still joins).
    let shared = shared && preset_works.load(Ordering::Relaxed) != 2;
    let local = match remote {
        Some(r) if !r.is_sampling_only() && shared => *r,
        Some(r) if !r.is_sampling_only() => {
            r.child_with_id(propagator.id_generator().new_span_id())
        }
        _ => propagator.server_span(remote),
    };
    let started = tracer.with(|t| {
        let (name, attrs) = req.describe(SpanKind::Server);
        let builder = t
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attrs);
        // Shared: the span *is* the caller's span, so its parent is the caller's parent.
        let parent_sc = match remote {
            Some(r) if shared => r
                .parent_span_id()
                .and_then(|p| to_remote(&r.with_span_id(p).with_parent(None), cx.tracestate())),
            Some(r) => to_remote(r, cx.tracestate()),
            None => None,
        };
        let parent = parent_sc.map_or_else(Context::new, |sc| {
            Context::new().with_remote_span_context(sc)
        });
        let ids = local.trace_id().zip(local.span_id());
        let span = start(t, builder, &parent, ids);
        (parent, span)
    });
    let Some((parent, span)) = started else {
        return transparent();
    };
    let started = span.span_context().clone();
    // A no-op tracer echoes the parent: nothing was started or decided here.
    let noop = !started.is_valid() || started.span_id() == parent.span().span_context().span_id();
    if noop {
        return transparent();
    }
    if let Some((_, s)) = local.trace_id().zip(local.span_id()) {
        let works = started.span_id() == ot::SpanId::from(s.to_u64());
        preset_works.store(if works { 1 } else { 2 }, Ordering::Relaxed);
    }
    let server = OtelSpan {
        cx: parent.with_span(span),
        kind: SpanKind::Server,
    };
    if !is_reported(&server.cx.span()) {
        // A sampler dropped it: transparent, with the sampler's decision for a deferred caller
        // (a caller's own decision passes untouched). The dropped span stays current, so the
        // application's spans follow the decision.
        let cx = Some(server.cx.clone());
        return ServerSpan {
            span: Some(server),
            cx,
            local: None,
            decided: Some(Sampling::Deny),
        };
    }
    let parent_id = if shared {
        local.parent_span_id()
    } else {
        remote
            .filter(|r| !r.is_sampling_only())
            .and_then(SpanContext::span_id)
    };
    let like = remote.filter(|r| !r.is_sampling_only()).unwrap_or(&local);
    let ours = reported(&started, Some(like)).map(|s| s.with_parent(parent_id));
    ServerSpan {
        cx: Some(server.cx.clone()),
        span: Some(server),
        local: ours,
        decided: Some(Sampling::Accept),
    }
}

/// Start a client span under `parent`. `Some` only when a tracer reports it: the span to end
/// with the response, and its ids in the request's terms (`parent_id` as its parent).
pub(crate) fn client_span(
    tracer: &SpanTracer,
    req: &RequestInfo<'_>,
    parent: &Context,
    parent_id: Option<SpanId>,
    like: Option<&SpanContext>,
) -> Option<(OtelSpan, SpanContext)> {
    let span = tracer.with(|t| {
        let (name, attrs) = req.describe(SpanKind::Client);
        let builder = t
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs);
        start(t, builder, parent, None)
    })?;
    let cx = parent.with_span(span);
    if !is_reported(&cx.span()) {
        // Never exported: let it go without a trace.
        return None;
    }
    let ours = reported(cx.span().span_context(), like)?.with_parent(parent_id);
    Some((
        OtelSpan {
            cx,
            kind: SpanKind::Client,
        },
        ours,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preset_ids_are_used_once() {
        let g = PresetIdGenerator::default();
        PRESET.with(|p| p.set(Some((7, 9))));
        assert_eq!(g.new_span_id(), ot::SpanId::from(9));
        assert_eq!(g.new_trace_id(), ot::TraceId::from(7));
        PRESET.with(|p| p.set(None));
        assert_ne!(g.new_span_id(), ot::SpanId::from(9));
    }
}
