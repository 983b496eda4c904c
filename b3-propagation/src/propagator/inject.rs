//! Inject and forward: a span in the inject formats, or the received headers as they came,
//! plus the request id, baggage, propagated fields and opaque headers.

use super::{ContextFormat, FormatSet, Propagator};
use crate::carrier::Injector;
use crate::codec::{self, b3_multi, b3_single, grpc_trace_bin, jaeger, traceparent};
use crate::context::SpanContext;
use crate::header;
use crate::request_context::RequestContext;

impl Propagator {
    /// Write `span` in every inject format, plus the request context's `tracestate` (when
    /// `traceparent` is written), request id, baggage and opaque headers. Any other span-context
    /// header the carrier held is removed first (see [`Injector::remove_context_headers`]).
    ///
    /// Allocates once per id-carrying format (B3 multi shares one buffer among its ids);
    /// sampling values and forwarded values are shared.
    pub fn inject<I: Injector + ?Sized>(
        &self,
        span: &SpanContext,
        cx: &RequestContext,
        carrier: &mut I,
    ) {
        let formats = self.config.inject;
        self.clear_carrier(carrier);
        carrier.reserve(span_formats_len(formats) + self.rest_len(cx));
        self.inject_span_formats(span, formats, cx, carrier);
        self.inject_rest(cx, formats, carrier);
    }

    /// Write `span` in each of `formats` (with `cx`'s `tracestate` beside `traceparent`): the
    /// one format dispatch, shared by inject, forward and the OpenTelemetry propagator.
    pub(crate) fn inject_span_formats<I: Injector + ?Sized>(
        &self,
        span: &SpanContext,
        formats: FormatSet,
        cx: &RequestContext,
        carrier: &mut I,
    ) {
        let traceparent = formats.contains(ContextFormat::TraceParent);
        let tracestate = if traceparent && !span.is_sampling_only() {
            cx.tracestate.header_value()
        } else {
            None
        };
        // A stale `tracestate` goes before anything is written: on a fresh outgoing map that
        // costs nothing (the codecs remove their own stale headers first for the same reason).
        if traceparent && tracestate.is_none() {
            carrier.remove(&header::TRACESTATE);
        }
        for f in formats.iter() {
            match f {
                ContextFormat::B3Single => b3_single::inject(span, carrier),
                ContextFormat::B3Multi => b3_multi::inject(span, carrier),
                ContextFormat::TraceParent => {
                    traceparent::inject(span, carrier);
                    if let Some(ts) = tracestate {
                        carrier.set(&header::TRACESTATE, ts.clone());
                    }
                }
                ContextFormat::Jaeger => jaeger::inject(span, carrier),
                ContextFormat::GrpcTraceBin => grpc_trace_bin::inject(span, carrier),
            }
        }
    }

    /// The prefixed forms of baggage the application writes, after the inject set: B3 peers
    /// (Brave, Istio routing on `baggage-*` headers) read `baggage-<key>`, Jaeger peers
    /// `uberctx-<key>`. None when prefixed baggage is off.
    fn app_baggage_prefixes(&self) -> &'static [crate::baggage::BaggagePrefix] {
        use crate::baggage::BaggagePrefix as P;
        let c = &self.config;
        if !c.prefixed_baggage {
            return &[];
        }
        let b3 =
            c.inject.contains(ContextFormat::B3Multi) || c.inject.contains(ContextFormat::B3Single);
        match (b3, c.inject.contains(ContextFormat::Jaeger)) {
            (true, true) => &[P::Baggage, P::Uberctx],
            (true, false) => &[P::Baggage],
            (false, true) => &[P::Uberctx],
            (false, false) => &[],
        }
    }

    /// Before a context is written: the span-context headers the carrier held go, and so do
    /// the opaque headers of other tracers when the trust policy refuses the caller's context
    /// (copied from an incoming request, they would carry what the policy refused).
    #[inline]
    fn clear_carrier<I: Injector + ?Sized>(&self, carrier: &mut I) {
        carrier.remove_context_headers();
        if self.config.trust.inbound_context() != super::InboundContext::Trust {
            carrier.remove_opaque_headers();
        }
    }

    /// About how many headers [`inject_rest`](Self::inject_rest) writes (a hint to reserve).
    fn rest_len(&self, cx: &RequestContext) -> usize {
        let c = &self.config;
        let request_id = usize::from(c.request_id && cx.request_id.is_some());
        let rest = cx.rest();
        let baggage = if c.baggage && !rest.baggage.is_empty() {
            1 + self.app_baggage_prefixes().len() * rest.baggage.len()
        } else {
            0
        };
        // Opaque headers are rare: not counted (the carrier grows if they come).
        request_id + baggage + rest.fields.len()
    }

    /// The request id, baggage, opaque headers and fields, after the span formats `written`
    /// (which own their headers: a received `grpc-trace-bin` kept as an opaque value does not
    /// replace the one written for this call's span).
    fn inject_rest<I: Injector + ?Sized>(
        &self,
        cx: &RequestContext,
        written: FormatSet,
        carrier: &mut I,
    ) {
        let c = &self.config;
        if c.request_id
            && let Some(id) = &cx.request_id
        {
            codec::request_id::inject(id, carrier);
        }
        let rest = cx.rest();
        if c.baggage && !rest.baggage.is_empty() {
            codec::baggage::inject_with(&rest.baggage, self.app_baggage_prefixes(), carrier);
        }
        let own_bin = written.contains(ContextFormat::GrpcTraceBin);
        for (name, value) in cx.received_opaque() {
            if own_bin && *name == header::GRPC_TRACE_BIN {
                continue;
            }
            if carrier.is_grpc_metadata()
                && !crate::carrier::grpc_metadata_ok(name.as_str(), value.as_bytes())
            {
                continue;
            }
            carrier.set(name, value.clone());
        }
        for (name, value) in &rest.fields {
            // A field gRPC metadata cannot carry (a name or a value it refuses) stays off a
            // gRPC call, which it would fail at a strict peer.
            if carrier.is_grpc_metadata()
                && !crate::carrier::grpc_metadata_ok(name.as_str(), value.as_bytes())
            {
                continue;
            }
            carrier.set(name, value.clone());
        }
    }

    /// Forward mode (what Istio asks of applications): re-send the received context headers
    /// exactly as they arrived (shared bytes, no re-encoding), plus request id, `tracestate`
    /// (the context's; beside a `traceparent` of another trace than the context's, that
    /// one's own, checked, as it came when in its normal one-line form, else normalised),
    /// baggage and opaque headers. Values a peer would misread are not sent as they came: a
    /// higher `traceparent` version and an `uber-trace-id` with unchecked bytes are encoded
    /// again; a zero `x-b3-parentspanid` and an `x-b3-sampled` beside `x-b3-flags: 1` are left
    /// out; legacy `x-b3-sampled: true` / `false` with ids and Brave's `b3: {t}-{s}-{p}` have
    /// the whole context encoded again. When the trust policy changed the context, or nothing was
    /// received, the context is encoded instead, in the formats it arrived in (else the inject
    /// set): the caller's ids, or this hop's span for a trace that starts here (no ids
    /// received, or only a sampling decision: dropped by the trust policy, or kept with a
    /// [local](RequestContext::local) span to name, in the decision's formats), and with no
    /// span to name, the caller's decision alone or this hop's for a trace that starts here
    /// (see [`RequestContext::decide_sampling`]). Any other span-context
    /// header the carrier held is removed first (see [`Injector::remove_context_headers`]): a
    /// call carries only what the decoder accepted.
    pub fn forward<I: Injector + ?Sized>(&self, cx: &RequestContext, carrier: &mut I) {
        self.clear_carrier(carrier);
        let r = &cx.rest().received;
        // A caller that sent only its decision (`b3: 1`) named no span: when this hop has a
        // span of its own, the trace starts there, and the calls must name it (re-sending the
        // decision alone would start another trace at the next hop).
        let trace_starts_here =
            cx.local.is_some() && cx.remote.is_some_and(|s| s.is_sampling_only());
        let written = if r.context_verbatim && !r.formats.is_empty() && !trace_starts_here {
            carrier.reserve(span_formats_len(r.formats) + self.rest_len(cx));
            for (name, value) in cx.received_context_values() {
                carrier.set(name, value.clone());
            }
            if r.formats.contains(ContextFormat::TraceParent)
                && let Some(ts) = cx
                    .tracestate
                    .header_value()
                    .or_else(|| cx.received_tracestate())
            {
                carrier.set(&header::TRACESTATE, ts.clone());
            }
            r.formats
        } else {
            let formats = if r.formats.is_empty() {
                self.config.inject
            } else {
                r.formats
            };
            carrier.reserve(span_formats_len(formats) + self.rest_len(cx));
            // The caller's ids, re-encoded. Without ids (nothing received, or a sampling-only
            // context whose decision the trust policy dropped) the trace starts here: this
            // hop's span, so the next hop joins it.
            match (cx.remote.filter(|s| !s.is_sampling_only()), &cx.local) {
                (Some(remote), _) => self.inject_span_formats(&remote, formats, cx, carrier),
                (None, Some(local)) => self.inject_span_formats(local, formats, cx, carrier),
                (None, None) => {
                    // A caller's decision alone, else this hop's for a trace that starts
                    // here with no span to name (a root a sampler dropped): the next hops
                    // follow it.
                    let decision = cx
                        .remote
                        .or_else(|| cx.decided.map(SpanContext::sampling_only));
                    if let Some(decision) = &decision {
                        self.inject_span_formats(decision, formats, cx, carrier);
                    }
                }
            }
            formats
        };
        self.inject_rest(cx, written, carrier);
    }
}

/// About how many headers the span formats `formats` write (a hint to reserve): one load.
fn span_formats_len(formats: FormatSet) -> usize {
    usize::from(SPAN_FORMATS_LEN[usize::from(formats.bits())])
}

/// How many headers a span format writes.
const fn format_len(f: ContextFormat) -> u8 {
    match f {
        // x-b3-traceid, x-b3-spanid, x-b3-parentspanid, x-b3-sampled or x-b3-flags
        ContextFormat::B3Multi => 4,
        // traceparent, tracestate
        ContextFormat::TraceParent => 2,
        ContextFormat::B3Single | ContextFormat::Jaeger | ContextFormat::GrpcTraceBin => 1,
    }
}

/// [`span_formats_len`] of every set, by its bits.
const SPAN_FORMATS_LEN: [u8; 1 << ContextFormat::ALL.len()] = {
    let mut table = [0; 1 << ContextFormat::ALL.len()];
    let mut bits = 0;
    while bits < table.len() {
        let mut i = 0;
        while i < ContextFormat::ALL.len() {
            let f = ContextFormat::ALL[i];
            if bits & (1 << f as usize) != 0 {
                table[bits] += format_len(f);
            }
            i += 1;
        }
        bits += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_set_lists_and_counts_its_formats() {
        for bits in 0..(1u8 << ContextFormat::ALL.len()) {
            let set = ContextFormat::ALL
                .into_iter()
                .filter(|f| bits & (1 << *f as u8) != 0)
                .fold(FormatSet::EMPTY, FormatSet::with);
            assert_eq!(set.bits(), bits);
            // Its formats in `ALL` order, each once.
            let listed: Vec<_> = set.iter().collect();
            let want: Vec<_> = ContextFormat::ALL
                .into_iter()
                .filter(|f| set.contains(*f))
                .collect();
            assert_eq!(listed, want, "{bits:#07b}");
            let want: usize = set.iter().map(|f| usize::from(format_len(f))).sum();
            assert_eq!(span_formats_len(set), want, "{bits:#07b}");
        }
        let b3_and_w3c = FormatSet::EMPTY
            .with(ContextFormat::B3Multi)
            .with(ContextFormat::TraceParent);
        assert_eq!(span_formats_len(b3_and_w3c), 6);
    }
}
