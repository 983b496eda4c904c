//! OpenTelemetry spans (feature `opentelemetry`).
//!
//! With this feature the server layer starts a `SERVER` span per request and the client
//! layer (in instrument mode) a `CLIENT` span per call, through the tracer given to the layer
//! (the global tracer by default), with HTTP or RPC semantic-convention attributes and a
//! status from the response. The spans' ids are the ids in the propagated headers, so the
//! exported spans and the headers tell the same story.
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

use b3_propagation::{Sampling, SpanContext, SpanId, TraceId, TraceState};
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

/// Adopt the ids and sampling decision of the span actually started: the headers must name
/// the span that is exported. Width and debug of `ours` are kept. A no-op tracer (no
/// provider installed) hands back the parent's span context: then nothing was started.
fn adopt(
    ours: SpanContext,
    started: &ot::SpanContext,
    parent_cx: &Context,
    parent: Option<SpanId>,
) -> SpanContext {
    if !started.is_valid() || started.span_id() == parent_cx.span().span_context().span_id() {
        return ours;
    }
    let Some(theirs) = SpanContext::from_otel(started) else {
        return ours;
    };
    let mut out = ours;
    if theirs.trace_id() != ours.trace_id() || theirs.span_id() != ours.span_id() {
        let trace_id = match (ours.trace_id(), theirs.trace_id()) {
            (Some(a), Some(b)) if a == b => a,
            (_, Some(b)) => b.into_128bit(),
            (Some(a), None) => a,
            (None, None) => return ours,
        };
        let Some(span_id) = theirs.span_id() else {
            return ours;
        };
        out = SpanContext::new(trace_id, span_id)
            .with_parent(parent)
            .with_sampling(ours.sampling())
            .with_trace_flags(ours.trace_flags());
    }
    // The sampler decided a deferred trace; debug stays debug; a deny stays deny.
    let sampling = match (ours.sampling(), started.is_sampled()) {
        (Sampling::Debug, _) => Sampling::Debug,
        (_, true) => Sampling::Accept,
        (Sampling::Deferred | Sampling::Accept, false) => Sampling::Deny,
        (s, false) => s,
    };
    out.with_sampling(sampling)
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

/// Start the server span for `local` (this hop's span), a child of `remote` (or, in shared
/// mode, reusing its ids). Returns the span and `local` adjusted to the span started.
///
/// A `remote` whose sampling is deferred is treated as `deferred` decided it (OpenTelemetry
/// samplers know only sampled or not). `preset_works` remembers, per layer, whether the
/// tracer's provider honours preset ids (0 unknown, 1 yes, 2 no).
#[allow(clippy::too_many_arguments)] // one call site, in `Extras::server`
pub(crate) fn server_span(
    tracer: &SpanTracer,
    req: &RequestInfo<'_>,
    remote: Option<&SpanContext>,
    local: SpanContext,
    shared: bool,
    tracestate: &TraceState,
    deferred: Sampling,
    preset_works: &AtomicU8,
) -> Option<(OtelSpan, SpanContext)> {
    let decided = remote.map(|r| match r.sampling() {
        Sampling::Deferred => r.with_sampling(deferred),
        _ => *r,
    });
    // `local` keeps its own sampling: `adopt` takes the decision of the span actually started
    // (with a no-op tracer nothing is decided here, and the next hop decides).
    let remote = decided.as_ref();
    // Without [`PresetIdGenerator`] the SDK picks its own span id, so the span cannot be the
    // caller's: fall back to child semantics (the trace still joins).
    let mut local = local;
    let shared = if shared && preset_works.load(Ordering::Relaxed) == 2 {
        if let Some(r) = remote.filter(|r| !r.is_sampling_only()) {
            local = r.child();
        }
        false
    } else {
        shared
    };
    tracer.with(|t| {
        let (name, attrs) = req.describe(SpanKind::Server);
        let builder = t
            .span_builder(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attrs);
        // Shared: the span *is* the caller's span, so its parent is the caller's parent.
        let parent_sc = match remote {
            Some(r) if shared => r
                .parent_span_id()
                .and_then(|p| to_remote(&r.with_span_id(p).with_parent(None), tracestate)),
            Some(r) => to_remote(r, tracestate),
            None => None,
        };
        let parent = parent_sc.map_or_else(Context::new, |sc| {
            Context::new().with_remote_span_context(sc)
        });
        let ids = local.trace_id().zip(local.span_id());
        let span = start(t, builder, &parent, ids);
        let started = span.span_context().clone();
        let noop = started.span_id() == parent.span().span_context().span_id();
        if let Some((_, s)) = ids.filter(|_| started.is_valid() && !noop) {
            let works = started.span_id() == ot::SpanId::from(s.to_u64());
            preset_works.store(if works { 1 } else { 2 }, Ordering::Relaxed);
        }
        let parent_id = if shared {
            local.parent_span_id()
        } else {
            remote.and_then(SpanContext::span_id)
        };
        let local = adopt(local, &started, &parent, parent_id);
        let cx = parent.with_span(span);
        (
            OtelSpan {
                cx,
                kind: SpanKind::Server,
            },
            local,
        )
    })
}

/// Start a client span for `local` (a child of the current span) under `parent`.
pub(crate) fn client_span(
    tracer: &SpanTracer,
    req: &RequestInfo<'_>,
    parent: &Context,
    local: SpanContext,
) -> Option<(OtelSpan, SpanContext)> {
    tracer.with(|t| {
        let (name, attrs) = req.describe(SpanKind::Client);
        let builder = t
            .span_builder(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attrs);
        let ids = local.trace_id().zip(local.span_id());
        let span = start(t, builder, parent, ids);
        let started = span.span_context().clone();
        let local = adopt(local, &started, parent, local.parent_span_id());
        let cx = parent.with_span(span);
        (
            OtelSpan {
                cx,
                kind: SpanKind::Client,
            },
            local,
        )
    })
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
