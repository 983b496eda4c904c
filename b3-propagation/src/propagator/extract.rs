//! Extract: the first valid context format in the extract order, with the trust policy
//! applied; the request id, `tracestate`, baggage, propagated fields and opaque headers; the
//! received values kept for forward mode.

use super::opaque::check_opaque;
use super::{ContextFormat, InboundContext, InboundFields, InboundRequestId, Propagator};
use crate::baggage::Baggage;
use crate::carrier::{Extractor, Scanned};
use crate::codec::{self, b3_multi, b3_single, grpc_trace_bin, jaeger, traceparent};
use crate::context::SpanContext;
use crate::error::{ErrorKind, ParseError};
use crate::request_context::{Received, RequestContext, opaque_slots, slot_name};
use crate::sampling::Sampling;
use crate::tracestate::TraceState;
use crate::{Format, OpaqueHeader, field, header};

impl Propagator {
    /// Decode one context format from a carrier: `None` when its headers are absent.
    #[inline]
    fn decode_format<E: Extractor + ?Sized>(
        f: ContextFormat,
        carrier: &E,
    ) -> Option<Result<SpanContext, ParseError>> {
        match f {
            ContextFormat::B3Single => b3_single::extract(carrier),
            ContextFormat::B3Multi => b3_multi::extract(carrier),
            ContextFormat::TraceParent => {
                traceparent::extract(carrier).map(|r| r.map(|tp| tp.context))
            }
            ContextFormat::Jaeger => jaeger::extract(carrier),
            ContextFormat::GrpcTraceBin => grpc_trace_bin::extract(carrier),
        }
    }

    /// Only the span context: the first valid format in the extract order, with the trust
    /// policy applied. No request id, baggage or opaque headers; never allocates.
    ///
    /// Errors of formats tried before the winner (or of all of them) are passed to
    /// `on_error`.
    pub fn extract_span<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        self.extract_span_from(carrier, on_error)
    }

    fn extract_span_from<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        mut on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        if self.config.trust.context == InboundContext::Ignore {
            return None;
        }
        for &f in &self.config.extract {
            match Self::decode_format(f, carrier) {
                Some(Ok(cx)) => return Some((self.apply_trust(cx), f)),
                Some(Err(e)) => on_error(e),
                None => {}
            }
        }
        None
    }

    #[inline]
    fn apply_trust(&self, cx: SpanContext) -> SpanContext {
        match self.config.trust.context {
            InboundContext::IgnoreSampling => cx.with_sampling(Sampling::Deferred),
            _ => cx,
        }
    }

    /// Everything a request carries: span context, `tracestate`, request id, baggage, the
    /// opaque headers, and the received values to forward verbatim. Malformed headers are
    /// treated as absent; their reasons are in [`RequestContext::errors`].
    ///
    /// Never generates a request id: see [`RequestContext::ensure_request_id`].
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> RequestContext {
        match carrier.as_header_map() {
            Some(map) => self.extract_from(&Scanned::new(map)),
            None => self.extract_from(carrier),
        }
    }

    fn extract_from<E: Extractor + ?Sized>(&self, carrier: &E) -> RequestContext {
        let c = &self.config;
        let mut cx = RequestContext::new();
        let mut errors = Vec::new();
        let winner = self.extract_span_from(carrier, |e| errors.push(e));
        let mut received = Received::default();
        let mut traceparent_ok = None;
        if let Some((span, source)) = winner {
            cx.remote = Some(span);
            cx.source = Some(source);
            received.context_verbatim = c.trust.context == InboundContext::Trust;
            // Keep the raw values of every valid context format for forward mode.
            let mut after = false;
            for &f in &c.extract {
                let valid = if f == source {
                    after = true;
                    true
                } else if after {
                    match Self::decode_format(f, carrier) {
                        Some(Ok(other)) => {
                            if f == ContextFormat::TraceParent {
                                traceparent_ok = Some(other);
                            }
                            true
                        }
                        Some(Err(e)) => {
                            errors.push(e);
                            false
                        }
                        None => false,
                    }
                } else {
                    false
                };
                if valid {
                    received.formats = received.formats.with(f);
                    received.capture(f, carrier);
                }
            }
            if source == ContextFormat::TraceParent {
                traceparent_ok = Some(span);
            }
        }

        // tracestate travels with a valid traceparent of the same trace.
        if c.extract_set.contains(ContextFormat::TraceParent)
            && let (Some(tp), Some(remote)) = (traceparent_ok, cx.remote)
            && tp.trace_id() == remote.trace_id()
        {
            let mut lines = carrier.get_all_values(&header::TRACESTATE);
            if lines.next().is_some() {
                let single = lines.next().is_none();
                // A value that is not a valid `HeaderValue` (only a raw-bytes carrier has
                // those) goes through the byte parser, which says why it is refused.
                let first = if single {
                    carrier.get_value(&header::TRACESTATE)
                } else {
                    None
                };
                let parsed = match first {
                    Some(first) => TraceState::parse_value(&first),
                    None => TraceState::parse_with(|| {
                        carrier
                            .get_all_values(&header::TRACESTATE)
                            .map(|l| (l, None))
                    }),
                };
                match parsed {
                    Ok(ts) => cx.tracestate = ts,
                    Err(e) => errors.push(e),
                }
            }
        }

        if c.request_id {
            match codec::request_id::extract(carrier) {
                Some(Ok(id)) if c.trust.request_id == InboundRequestId::Keep => {
                    cx.request_id = Some(id);
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => errors.push(e),
            }
        }

        if c.baggage {
            let (bag, dropped) = if c.prefixed_baggage {
                codec::baggage::extract(carrier)
            } else {
                match carrier.get_value(&header::BAGGAGE) {
                    Some(v) if carrier.get_all_values(&header::BAGGAGE).nth(1).is_none() => {
                        codec::baggage::decode_value(&v)
                    }
                    Some(_) => {
                        codec::baggage::decode_lines(carrier.get_all_values(&header::BAGGAGE))
                    }
                    None => (Baggage::new(), None),
                }
            };
            cx.baggage = bag;
            if let Some(e) = dropped {
                errors.push(e);
            }
        }

        // Propagated fields: one checked line each; past an edge that does not trust its
        // clients, only those declared safe there.
        for f in &c.fields {
            if c.trust.fields == InboundFields::OnlyKeptAtEdge && !f.is_kept_at_edge() {
                continue;
            }
            let mut lines = carrier.get_all_values(f.name());
            match (lines.next(), lines.next()) {
                (None, _) => {}
                (Some(_), Some(_)) => errors.push(ParseError::at(
                    Format::Field,
                    crate::error::Field::Value,
                    ErrorKind::Duplicate,
                )),
                (Some(raw), None) => match field::check_value(raw) {
                    Ok(()) => {
                        if let Some(v) = carrier.get_value(f.name()) {
                            cx.fields.push((f.name().clone(), v));
                        }
                    }
                    Err(e) => errors.push(e),
                },
            }
        }

        // Opaque headers carry a context (and a sampling decision) this hop cannot re-decide:
        // past an edge that does not trust the client's context they are checked (so a bad
        // value is still reported) but not forwarded.
        let forward_opaque = c.trust.inbound_context() == InboundContext::Trust;
        for &h in &c.opaque {
            if h == OpaqueHeader::GrpcTraceBin
                && c.extract_set.contains(ContextFormat::GrpcTraceBin)
            {
                continue; // handled as a context format
            }
            for slot in opaque_slots(h) {
                let name = slot_name(slot);
                if let Some(raw) = carrier.get(name) {
                    match check_opaque(h, raw) {
                        Ok(()) if !forward_opaque => {}
                        Ok(()) => {
                            if let Some(v) = carrier.get_value(name) {
                                received.set(slot, v);
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                }
            }
        }

        cx.received = received;
        cx.errors = errors;
        cx
    }
}
