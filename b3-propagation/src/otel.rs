//! OpenTelemetry interop (feature `opentelemetry`).
//!
//! [`OtelPropagator`] is a [`TextMapPropagator`] usable wherever
//! `opentelemetry-propagator-b3`'s `Propagator` (or the SDK's `TraceContextPropagator`) is,
//! built from a [`Propagator`] — without their bugs:
//!
//! | input | `opentelemetry-propagator-b3` 0.33 | here |
//! |---|---|---|
//! | `b3: {t}-{s}-d` | rejected when injecting multi headers | debug, re-emitted as debug |
//! | `b3: 0`, `x-b3-sampled: 0` alone | dropped: the deny decision is lost | kept and re-emitted |
//! | 64-bit trace id | re-emitted zero-padded to 32 hex | re-emitted at 16 hex |
//! | parent span id | never sent | sent for the extracted span |
//! | `+`-prefixed / wrong-length ids | partly accepted | rejected |
//! | extract order | last valid propagator wins (composite) | first valid format wins |
//!
//! The extracted [`SpanContext`] (width, parent, debug, deferred) is stored in the OTel
//! [`Context`] next to the remote span context, so injecting that same context — or a local
//! span of the same trace — keeps what OTel's `SpanContext` cannot carry. Debug is carried in
//! OTel trace flags as bit `0x04`, as `opentelemetry-propagator-b3` does. A decision without
//! ids (`b3: 0`, `b3: 1`, `b3: d`) is extracted as a remote span context with the sampled flag
//! and no ids, which the SDK's default `ParentBased` sampler follows for the root it starts.
//! A local span that is not sampled, under a caller's context (of the same trace, or a
//! decision alone), is not named: the caller's context goes on as it came (OpenTelemetry
//! cannot say "deferred", so an undecided caller's child is dropped by the default sampler;
//! naming it would send a span id nobody exports, decided "deny"). A root the local sampler
//! dropped, with no caller, is still written as a "deny" under its own ids.
//!
//! # Example
//!
//! ```
//! use b3_propagation::otel::OtelPropagator;
//! use b3_propagation::Propagator;
//! use opentelemetry::propagation::TextMapPropagator;
//! use std::collections::HashMap;
//!
//! let propagator = OtelPropagator::new(Propagator::default());
//! let mut incoming = HashMap::new();
//! incoming.insert("b3".to_owned(), "48485a3953bb6124-a2fb4a1d1a96d312-d".to_owned());
//! let cx = propagator.extract(&incoming);
//!
//! let mut outgoing = HashMap::new();
//! propagator.inject_context(&cx, &mut outgoing);
//! assert_eq!(outgoing["x-b3-traceid"], "48485a3953bb6124"); // 64-bit kept
//! assert_eq!(outgoing["x-b3-flags"], "1"); // debug kept
//! ```

use opentelemetry::Context;
use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{
    Extractor as OtelExtractor, Injector as OtelInjector, TextMapPropagator,
};
use opentelemetry::trace::{self as ot, TraceContextExt};

use crate::carrier::{Extractor, Injector};
use crate::context::SpanContext;
use crate::header;
use crate::id::{SpanId, TraceId};
use crate::propagator::{ContextFormat, Propagator};
use crate::request_context::RequestContext;
use crate::sampling::Sampling;
use crate::tracestate::TraceState;

/// OTel trace-flags bit for B3 debug (the bit `opentelemetry-propagator-b3` uses).
pub const DEBUG_FLAG: ot::TraceFlags = ot::TraceFlags::new(0x04);

/// OpenTelemetry's trace flags for a sampling decision: accept and debug are sampled, debug
/// also sets [`DEBUG_FLAG`]; deny and deferred are not sampled.
#[must_use]
pub fn trace_flags(sampling: Sampling) -> ot::TraceFlags {
    match sampling {
        Sampling::Accept => ot::TraceFlags::SAMPLED,
        Sampling::Debug => ot::TraceFlags::SAMPLED | DEBUG_FLAG,
        Sampling::Deny | Sampling::Deferred => ot::TraceFlags::default(),
    }
}

/// A caller's sampling decision without ids (`b3: 0`, `b3: 1`, `b3: d`) as an OTel remote
/// span context: the decision's sampled flag and no ids. The SDK starts a root under it (an
/// invalid parent is none, so the trace id is the id generator's), and its default sampler,
/// `Sampler::ParentBased`, follows the flag as it would a caller's span's, so a local root
/// sampler does not decide anew. (The SDK's spec-following `ParentBasedSampler` takes a parent
/// without ids for none: its root sampler decides.) `None` for a deferred decision.
#[must_use]
pub fn decision_only(sampling: Sampling) -> Option<ot::SpanContext> {
    (sampling != Sampling::Deferred).then(|| {
        ot::SpanContext::new(
            ot::TraceId::INVALID,
            ot::SpanId::INVALID,
            trace_flags(sampling),
            true,
            ot::TraceState::default(),
        )
    })
}

impl SpanContext {
    /// The OTel span context for these ids (remote), or `None` for a sampling-only context.
    /// Accept and debug are sampled; debug also sets [`DEBUG_FLAG`]; deny and deferred are
    /// not sampled; W3C's random-trace-id bit is carried as OTel's bit `0x02`.
    #[must_use]
    pub fn to_otel(&self, tracestate: &TraceState) -> Option<ot::SpanContext> {
        let mut flags = trace_flags(self.sampling());
        if self.trace_flags().contains(crate::TraceFlags::RANDOM) {
            // W3C's random-trace-id bit, which the SDK copies to a child's flags: it must go
            // on in every `traceparent` of this trace id.
            flags = flags | ot::TraceFlags::new(crate::TraceFlags::RANDOM.bits());
        }
        let state = tracestate
            .header_value()
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.parse::<ot::TraceState>()
                    .unwrap_or_else(|_| otel_members(tracestate))
            })
            .unwrap_or_default();
        Some(ot::SpanContext::new(
            ot::TraceId::from_bytes(self.trace_id()?.to_bytes()),
            ot::SpanId::from_bytes(self.span_id()?.to_bytes()),
            flags,
            true,
            state,
        ))
    }

    /// Our span context for an OTel one, or `None` when it is invalid. A trace id whose high
    /// 64 bits are zero is taken as 64-bit; [`DEBUG_FLAG`] means debug, sampled accept, else
    /// deny; W3C's random-trace-id bit is kept. (OTel has no parent id and no deferred state.)
    #[must_use]
    pub fn from_otel(sc: &ot::SpanContext) -> Option<Self> {
        let bytes = sc.trace_id().to_bytes();
        let value = u128::from_be_bytes(bytes);
        let trace_id = if value >> 64 == 0 {
            TraceId::from_u64(value as u64)?
        } else {
            TraceId::from_u128(value)?
        };
        let span_id = SpanId::from_bytes(sc.span_id().to_bytes())?;
        let flags = sc.trace_flags();
        let sampling = if flags & DEBUG_FLAG == DEBUG_FLAG {
            Sampling::Debug
        } else if sc.is_sampled() {
            Sampling::Accept
        } else {
            Sampling::Deny
        };
        Some(
            SpanContext::new(trace_id, span_id)
                .with_sampling(sampling)
                // The random-trace-id bit, kept (DEBUG_FLAG is not a W3C bit: masked out).
                .with_trace_flags(crate::TraceFlags::new(flags.to_u8())),
        )
    }
}

/// The members of `tracestate` OpenTelemetry's own `TraceState` takes, in order: it checks
/// keys by an older grammar (one `@`, a system part of at most 14 characters), and refuses a
/// whole list for one key it does not take; here only that member is left out.
fn otel_members(tracestate: &TraceState) -> ot::TraceState {
    let kept: Vec<(&str, &str)> = tracestate
        .iter()
        .filter(|&(k, v)| ot::TraceState::from_key_value([(k, v)]).is_ok())
        .collect();
    ot::TraceState::from_key_value(kept).unwrap_or_default()
}

/// The context extracted by [`OtelPropagator`], kept in the OTel [`Context`].
#[derive(Clone, Debug)]
struct Extracted(SpanContext);

/// `cx` with `received`, the caller's span context as a request brought it (a sampling-only
/// decision, or none: [`SpanContext::sampling_only`]), kept for [`OtelPropagator`] as the
/// contexts it extracts itself keep theirs: when the span current in `cx` is one no tracer
/// reports (a sampler dropped it), the propagator sends `received` on instead of naming that
/// span. The Tower layers attach it to the context they make current for a dropped server span.
#[must_use]
pub fn with_received(cx: &Context, received: SpanContext) -> Context {
    cx.with_value(Extracted(received))
}

/// Adapts an OTel extractor to ours.
struct FromOtel<'a>(&'a dyn OtelExtractor);

impl<'x> Extractor for FromOtel<'x> {
    fn get(&self, name: &http::HeaderName) -> Option<&[u8]> {
        self.0.get(name.as_str()).map(str::as_bytes)
    }

    fn get_all_values<'a>(
        &'a self,
        name: &http::HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'x> {
        self.0
            .get_all(name.as_str())
            .unwrap_or_default()
            .into_iter()
            .map(str::as_bytes)
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0
            .keys()
            .into_iter()
            .filter_map(|k| self.0.get(k).map(|v| (k, v.as_bytes())))
    }
}

/// Adapts an OTel injector to ours (OTel injectors cannot remove, so removal is a no-op).
struct ToOtel<'a>(&'a mut dyn OtelInjector);

impl Injector for ToOtel<'_> {
    fn set(&mut self, name: &http::HeaderName, value: http::HeaderValue) {
        if let Ok(v) = value.to_str() {
            self.0.set(name.as_str(), v.to_owned());
        }
    }

    fn remove(&mut self, _name: &http::HeaderName) {}
}

/// A [`TextMapPropagator`] over a [`Propagator`]: its extract order and inject set, for the
/// span context and `tracestate` (request id and baggage are the Tower layers' business).
/// See the [module docs](self).
#[derive(Clone, Debug)]
pub struct OtelPropagator {
    inner: Propagator,
    fields: Vec<String>,
}

impl OtelPropagator {
    /// Wrap a propagator.
    #[must_use]
    pub fn new(inner: Propagator) -> Self {
        let mut fields = Vec::new();
        for f in inner.inject_formats().iter() {
            let names: &[http::HeaderName] = match f {
                ContextFormat::B3Single => &[header::B3],
                ContextFormat::B3Multi => &[
                    header::X_B3_TRACE_ID,
                    header::X_B3_SPAN_ID,
                    header::X_B3_PARENT_SPAN_ID,
                    header::X_B3_SAMPLED,
                    header::X_B3_FLAGS,
                ],
                ContextFormat::TraceParent => &[header::TRACEPARENT, header::TRACESTATE],
                ContextFormat::Jaeger => &[header::UBER_TRACE_ID],
                ContextFormat::GrpcTraceBin => &[header::GRPC_TRACE_BIN],
            };
            fields.extend(names.iter().map(|n| n.as_str().to_owned()));
        }
        OtelPropagator { inner, fields }
    }

    /// The wrapped propagator.
    #[must_use]
    pub fn propagator(&self) -> &Propagator {
        &self.inner
    }

    /// The span context to inject for an OTel context: the extracted one when the current
    /// span *is* it; otherwise the current span, keeping the extracted trace's 64-bit width
    /// and debug flag; a sampling-only extracted context when there is no valid span. A local
    /// span no tracer reports (not sampled) is never named: the extracted context of its
    /// trace goes on instead, else its decision alone (`Deny`, no ids).
    #[must_use]
    pub fn span_context_for(cx: &Context) -> Option<SpanContext> {
        let extracted = cx.get::<Extracted>().map(|e| e.0);
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return extracted.filter(SpanContext::is_sampling_only);
        }
        let mut ours = SpanContext::from_otel(sc)?;
        // A span nobody reports, under a caller's decision alone: that decision goes on as
        // it came (`b3: 0`), not the unreported span's ids.
        if let Some(e) = extracted
            && e.is_sampling_only()
            && !sc.is_sampled()
        {
            return Some(e);
        }
        if let Some(e) = extracted
            && e.trace_id() == ours.trace_id()
        {
            // A span nobody reports (not sampled, here: OpenTelemetry cannot say "deferred",
            // so the caller's undecided span arrived as not sampled and the SDK's default
            // sampler dropped its child) is not named: the caller's span goes on, with its
            // decision as it came.
            if e.span_id() == ours.span_id() || !sc.is_sampled() {
                return Some(e);
            }
            let trace_id = e.trace_id()?;
            ours = SpanContext::new(trace_id, ours.span_id()?)
                .with_sampling(
                    if e.sampling() == Sampling::Debug && ours.sampling() != Sampling::Deny {
                        Sampling::Debug
                    } else {
                        ours.sampling()
                    },
                )
                // The caller's random-trace-id bit goes on with its trace id.
                .with_trace_flags(e.trace_flags());
        } else if let Some(e) = extracted
            && e.is_sampling_only()
            && e.sampling() == Sampling::Debug
            && sc.is_sampled()
        {
            // A trace started here under a caller's `b3: d`: debug goes on (the SDK's flags
            // carry only "sampled").
            ours = ours.with_sampling(Sampling::Debug);
        }
        if !sc.is_sampled() && !sc.is_remote() {
            // A span started here that a sampler dropped, with no caller's span of its trace
            // to send instead: its decision goes on, not its ids (nobody reports them).
            return Some(SpanContext::sampling_only(Sampling::Deny));
        }
        Some(ours)
    }
}

impl TextMapPropagator for OtelPropagator {
    fn inject_context(&self, cx: &Context, injector: &mut dyn OtelInjector) {
        let Some(span) = Self::span_context_for(cx) else {
            return;
        };
        let mut rc = RequestContext::new();
        let state = cx.span().span_context().trace_state().header();
        if !state.is_empty()
            && let Ok(ts) = TraceState::parse_lines([state.as_bytes()])
        {
            rc.set_tracestate(ts);
        }
        let mut carrier = ToOtel(injector);
        self.inner
            .inject_span_formats(&span, self.inner.inject_formats(), &rc, &mut carrier);
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn OtelExtractor) -> Context {
        let carrier = FromOtel(extractor);
        // The native extract's span: the first valid format, the trust policy, and
        // `tracestate` whenever a valid `traceparent` of the same trace came (not only when it
        // won); nothing else is decoded.
        let Some((span, tracestate)) = self.inner.extract_span_and_tracestate(&carrier) else {
            return cx.clone();
        };
        let cx = cx.with_value(Extracted(span));
        match span.to_otel(&tracestate) {
            Some(sc) => cx.with_remote_span_context(sc),
            // A decision without ids (`b3: 0`, `b3: 1`, `b3: d`): a remote span context with
            // the decision's sampled flag and no ids, so the SDK's default `ParentBased`
            // sampler follows it for the root it starts here instead of deciding anew (its
            // spec-following `ParentBasedSampler` takes a parent without ids for none).
            None => match decision_only(span.sampling()) {
                Some(sc) => cx.with_remote_span_context(sc),
                None => cx,
            },
        }
    }

    fn fields(&self) -> FieldIter<'_> {
        FieldIter::new(&self.fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn extract(p: &OtelPropagator, pairs: &[(&str, &str)]) -> Context {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        p.extract(&map)
    }

    fn inject(p: &OtelPropagator, cx: &Context) -> HashMap<String, String> {
        let mut out = HashMap::new();
        p.inject_context(cx, &mut out);
        out
    }

    #[test]
    fn sampling_only_deny_survives() {
        let p = OtelPropagator::new(Propagator::default());
        let out = inject(&p, &extract(&p, &[("b3", "0")]));
        assert_eq!(out.get("x-b3-sampled").map(String::as_str), Some("0"));
        assert!(!out.contains_key("traceparent"));
    }

    #[test]
    fn parent_is_propagated_for_the_extracted_span() {
        let p = OtelPropagator::new(Propagator::default());
        let cx = extract(
            &p,
            &[
                ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
                ("x-b3-spanid", "a2fb4a1d1a96d312"),
                ("x-b3-parentspanid", "0020000000000001"),
                ("x-b3-sampled", "1"),
            ],
        );
        let out = inject(&p, &cx);
        assert_eq!(out["x-b3-parentspanid"], "0020000000000001");
        assert_eq!(out["x-b3-sampled"], "1");
    }

    #[test]
    fn conversions_keep_the_random_flag() {
        let cx = crate::codec::traceparent::decode(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03",
        )
        .unwrap()
        .context;
        assert!(cx.trace_flags().contains(crate::TraceFlags::RANDOM));
        let ot = cx.to_otel(&TraceState::new()).unwrap();
        assert_eq!(ot.trace_flags().to_u8(), 0x03);
        assert_eq!(SpanContext::from_otel(&ot).unwrap(), cx);
        // B3 debug is OTel's 0x04, not a W3C bit: it does not come back as one.
        let debug = ot::SpanContext::new(
            ot.trace_id(),
            ot.span_id(),
            ot::TraceFlags::new(0x05),
            true,
            ot::TraceState::default(),
        );
        let back = SpanContext::from_otel(&debug).unwrap();
        assert_eq!(back.sampling(), Sampling::Debug);
        assert!(!back.trace_flags().contains(crate::TraceFlags::RANDOM));
    }

    #[test]
    fn conversions_keep_width_and_debug() {
        let cx = crate::codec::b3_single::decode(b"48485a3953bb6124-a2fb4a1d1a96d312-d").unwrap();
        let ot = cx.to_otel(&TraceState::new()).unwrap();
        assert!(ot.is_sampled());
        let back = SpanContext::from_otel(&ot).unwrap();
        assert_eq!(back, cx);
        assert!(back.trace_id().unwrap().is_64bit());
        assert!(
            SpanContext::sampling_only(Sampling::Deny)
                .to_otel(&TraceState::new())
                .is_none()
        );
    }

    #[test]
    fn a_member_otel_refuses_leaves_the_others() {
        // Valid here (Trace Context Level 2 keys), refused by OpenTelemetry's older key check.
        let ts = TraceState::parse_lines([
            b"foo@@bar=1,rojo=00f067aa0ba902b7,congo=t61rcWkgMzE".as_slice()
        ])
        .unwrap();
        assert_eq!(ts.len(), 3);
        let cx =
            crate::codec::b3_single::decode(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")
                .unwrap();
        let ot = cx.to_otel(&ts).unwrap();
        assert_eq!(ot.trace_state().get("rojo"), Some("00f067aa0ba902b7"));
        assert_eq!(ot.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(ot.trace_state().get("foo@@bar"), None);
        assert_eq!(
            ot.trace_state().header(),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
        );
    }

    #[test]
    fn fields_follow_the_inject_set() {
        let p = OtelPropagator::new(
            Propagator::builder()
                .inject([ContextFormat::B3Single])
                .build(),
        );
        assert_eq!(p.fields().collect::<Vec<_>>(), vec!["b3"]);
    }
}
