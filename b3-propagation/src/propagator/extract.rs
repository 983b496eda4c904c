//! Extract: the first valid context format in the extract order, with the trust policy
//! applied; the request id, `tracestate`, baggage, propagated fields and opaque headers; the
//! received values kept for forward mode.

use http::{HeaderMap, HeaderValue};

use super::opaque::check_opaque;
use super::{
    ContextFormat, InboundBaggage, InboundContext, InboundFields, InboundRequestId, Propagator,
};
use crate::baggage::Baggage;
use crate::carrier::{Captured, ContextHeaders, ContextSource, Extractor, slot};
use crate::codec::{self, b3_multi, b3_single, grpc_trace_bin, jaeger, traceparent};
use crate::context::{SpanContext, TraceFlags};
use crate::error::{ErrorKind, ParseError};
use crate::request_context::{
    Decided, Head, Pending, Received, RequestContext, Rest, opaque_slots, slot_name,
};
use crate::request_id::RequestId;
use crate::sampling::Sampling;
use crate::tracestate::TraceState;
use crate::{Format, OpaqueHeader, field, header};

/// Past this many field lines, the span-only extract looks the context headers up instead of
/// walking the map. Measured with the default order on the bench's 2-core VM: the walk costs
/// ~1.5 ns a line (55 ns at 12 lines, 124 ns at 57), the lookups 110–150 ns whatever the size.
const SCAN_MAX_LEN: usize = 48;

/// Decode one context format from the headers `h` found (a map's walk or the captured
/// slots), as [`Propagator::decode_format`] does from a carrier.
#[inline]
fn decode_from<'a>(
    h: &impl ContextSource<'a>,
    f: ContextFormat,
) -> Option<Result<SpanContext, ParseError>> {
    match f {
        ContextFormat::B3Single => h.b3().map(b3_single::decode),
        ContextFormat::B3Multi => b3_multi::decode(&h.b3_multi()),
        ContextFormat::TraceParent => h
            .traceparent()
            .map(|(first, repeated)| traceparent::decode_first_context(first, repeated)),
        ContextFormat::Jaeger => h.uber_trace_id().map(jaeger::decode),
        ContextFormat::GrpcTraceBin => h.grpc_trace_bin().map(grpc_trace_bin::decode),
    }
}

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
    /// policy applied, and the W3C random-trace-id flag of a same-trace `traceparent` when
    /// another format wins (the span [`extract`](Self::extract) finds). No request id,
    /// baggage or opaque headers; never allocates. On a
    /// `HeaderMap` the context headers are found in one walk over the map (looked up in a map
    /// of more than 48 field lines), with the same answer as one lookup per name.
    ///
    /// Errors of formats tried before the winner (or of all of them) are passed to
    /// `on_error`.
    pub fn extract_span<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        match carrier.as_header_map() {
            Some(map) => self.extract_span_scan(map, on_error),
            None => self.extract_span_from(carrier, on_error),
        }
    }

    /// [`extract_span`](Self::extract_span) on a `HeaderMap`, with the answer of the plain
    /// path (one lookup per name, in the extract order) at a lower cost: the context headers
    /// are found in one walk over an ordinary map, and looked up in a large one, where the walk
    /// would cost more.
    fn extract_span_scan(
        &self,
        map: &HeaderMap,
        mut on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        if self.config.trust.context == InboundContext::Ignore {
            return None;
        }
        let formats = &self.config.extract;
        if map.len() > SCAN_MAX_LEN {
            let winner = self.first_valid(formats, |f| Self::decode_format(f, map), &mut on_error);
            self.with_random_flag(
                winner,
                || raw_random_bit(map.get(&header::TRACEPARENT).map(HeaderValue::as_bytes)),
                |f| Self::decode_format(f, map),
            )
        } else {
            let headers = ContextHeaders::scan(map);
            let winner = self.first_valid(formats, |f| decode_from(&headers, f), &mut on_error);
            self.with_random_flag(
                winner,
                || raw_random_bit(headers.first(slot::TRACEPARENT)),
                |f| decode_from(&headers, f),
            )
        }
    }

    fn extract_span_from<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        mut on_error: impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        if self.config.trust.context == InboundContext::Ignore {
            return None;
        }
        let formats = &self.config.extract;
        let winner = self.first_valid(formats, |f| Self::decode_format(f, carrier), &mut on_error);
        self.with_random_flag(
            winner,
            || raw_random_bit(carrier.get(&header::TRACEPARENT)),
            |f| Self::decode_format(f, carrier),
        )
    }

    /// The first of `formats` that `decode` finds valid, with the trust policy applied; the
    /// errors of the ones before it go to `on_error`.
    #[inline]
    fn first_valid(
        &self,
        formats: &[ContextFormat],
        mut decode: impl FnMut(ContextFormat) -> Option<Result<SpanContext, ParseError>>,
        on_error: &mut impl FnMut(ParseError),
    ) -> Option<(SpanContext, ContextFormat)> {
        for &f in formats {
            match decode(f) {
                Some(Ok(cx)) => return Some((self.apply_trust(cx), f)),
                Some(Err(e)) => on_error(e),
                None => {}
            }
        }
        None
    }

    /// W3C Level 2: the random-trace-id flag goes on with the trace it describes. A winner
    /// that cannot carry it (B3, Jaeger) takes it from a valid `traceparent` of the same
    /// trace. `traceparent_random` looks at the first `traceparent`'s raw flags, so the usual
    /// request (no random bit) pays no decode; `decode` decodes a format.
    #[inline(always)]
    fn with_random_flag(
        &self,
        winner: Option<(SpanContext, ContextFormat)>,
        traceparent_random: impl FnOnce() -> bool,
        decode: impl FnOnce(ContextFormat) -> Option<Result<SpanContext, ParseError>>,
    ) -> Option<(SpanContext, ContextFormat)> {
        match winner {
            Some((remote, source))
                if source != ContextFormat::TraceParent
                    && self.config.extract_set.contains(ContextFormat::TraceParent)
                    && !remote.trace_flags().contains(TraceFlags::RANDOM)
                    && traceparent_random() =>
            {
                match decode(ContextFormat::TraceParent).and_then(Result::ok) {
                    Some(tp)
                        if tp.trace_id() == remote.trace_id()
                            && tp.trace_flags().contains(TraceFlags::RANDOM) =>
                    {
                        Some((remote.with_trace_flags(TraceFlags::RANDOM), source))
                    }
                    _ => winner,
                }
            }
            _ => winner,
        }
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
    /// From a `HeaderMap`, the tracing headers are captured in one pass (their values shared,
    /// not copied) and only the span context, `tracestate` and the request id are decoded at
    /// once; the rest is decoded, by the same rules, when first asked for (forward, inject,
    /// baggage, fields, errors).
    ///
    /// Never generates a request id: see [`RequestContext::ensure_request_id`].
    pub fn extract<E: Extractor + ?Sized>(&self, carrier: &E) -> RequestContext {
        let Some(map) = carrier.as_header_map() else {
            return self.extract_now(carrier);
        };
        let c = &self.config;
        let mut captured = Captured::default();
        captured.scan_into(map, c.baggage && c.prefixed_baggage, &c.fields);
        if captured.is_empty() {
            // No tracing header at all: nothing to decode, now or later.
            return RequestContext::default();
        }
        let d = self.decide(&captured);
        RequestContext::extracted(
            d.remote,
            d.tracestate,
            d.request_id,
            None,
            Some(Pending {
                captured,
                lazy: d.lazy,
            }),
        )
    }

    /// [`extract`](Self::extract) into `cx`, which it replaces: for a caller that keeps the
    /// context inside a larger value (a request's shared trace), which then makes it where it
    /// is kept instead of moving it there (it is most of a kilobyte, mostly the captured header
    /// values).
    ///
    /// ```
    /// use b3_propagation::{Propagator, RequestContext};
    /// use http::{HeaderMap, HeaderValue};
    ///
    /// let mut headers = HeaderMap::new();
    /// headers.insert("b3", HeaderValue::from_static("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"));
    /// let mut cx = RequestContext::new();
    /// Propagator::default().extract_into(&headers, &mut cx);
    /// assert_eq!(cx.span().unwrap().span_id().unwrap().to_string(), "e457b5a2e4d86bd1");
    /// ```
    pub fn extract_into<E: Extractor + ?Sized>(&self, carrier: &E, cx: &mut RequestContext) {
        let Some(map) = carrier.as_header_map() else {
            *cx = self.extract_now(carrier);
            return;
        };
        let c = &self.config;
        cx.extract_in_place(
            |captured| captured.scan_into(map, c.baggage && c.prefixed_baggage, &c.fields),
            |captured| self.decide(captured),
        );
    }

    /// What an extract from a `HeaderMap` decides at once from the headers it captured (see
    /// [`extract`](Self::extract)), and how to decode the rest later.
    #[inline(always)]
    fn decide(&self, captured: &Captured) -> Decided {
        let headers = captured.context();
        // The request id and `tracestate` straight from their slots: no lookup by name.
        let id = captured.slot(slot::X_REQUEST_ID);
        let (winner, tracestate, request_id, head) = self.extract_head(
            captured,
            |f| decode_from(&headers, f),
            || captured.slot(slot::TRACESTATE).is_some(),
            || raw_random_bit(captured.slot(slot::TRACEPARENT).map(HeaderValue::as_bytes)),
            || id.map(|v| RequestId::parse_shared(v.as_bytes(), || Some(v.clone()))),
        );
        Decided {
            remote: winner,
            tracestate,
            request_id,
            lazy: Some((self.clone(), head)),
        }
    }

    /// The caller's span and its `tracestate`, as [`extract`](Self::extract) finds them, and
    /// nothing else (no request id, baggage, fields or forwarded values): what an OpenTelemetry
    /// propagator hands over.
    #[cfg(feature = "opentelemetry")]
    pub(crate) fn extract_span_and_tracestate<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
    ) -> Option<(SpanContext, TraceState)> {
        let (winner, tracestate, _, _) = self.extract_head(
            carrier,
            |f| Self::decode_format(f, carrier),
            || carrier.get(&header::TRACESTATE).is_some(),
            || raw_random_bit(carrier.get(&header::TRACEPARENT)),
            || None,
        );
        winner.map(|(span, _)| (span, tracestate))
    }

    /// Extract from any carrier, decoding everything now.
    fn extract_now<E: Extractor + ?Sized>(&self, carrier: &E) -> RequestContext {
        let (winner, tracestate, request_id, head) = self.extract_head(
            carrier,
            |f| Self::decode_format(f, carrier),
            || carrier.get(&header::TRACESTATE).is_some(),
            || raw_random_bit(carrier.get(&header::TRACEPARENT)),
            || codec::request_id::extract(carrier),
        );
        let rest = self.rest_from(
            carrier,
            winner,
            &head,
            |f| Self::decode_format(f, carrier),
            |i| carrier.get(slot_name(i)),
            false,
        );
        // The values forward mode re-sends, kept from the carrier.
        let mut captured = Captured::default();
        for slot in rest.received.kept_slots() {
            if let Some(v) = carrier.get_value(slot_name(slot)) {
                captured.set_slot(slot, v);
            }
        }
        let pending = (!captured.is_empty()).then_some(Pending {
            captured,
            lazy: None,
        });
        RequestContext::extracted(winner, tracestate, request_id, Some(rest), pending)
    }

    /// The rest of an extract from `captured` (see [`extract`](Self::extract)), for the
    /// context whose caller's span is `winner`.
    pub(crate) fn decode_rest(
        &self,
        captured: &Captured,
        winner: Option<(SpanContext, ContextFormat)>,
        head: &Head,
    ) -> Rest {
        // The formats after the winner, looked up by name: most are absent, and a lookup in
        // the captured slots is cheaper than laying them all out again.
        self.rest_from(
            captured,
            winner,
            head,
            |f| {
                if captured.lacks(f) {
                    None
                } else {
                    Self::decode_format(f, captured)
                }
            },
            |i| captured.slot(i).map(HeaderValue::as_bytes),
            captured.lacks_baggage(),
        )
    }

    /// What an extract decides at once: the caller's span (the first valid format, with the
    /// trust policy applied), `tracestate`, the request id; and why any of them was refused.
    /// `has_tracestate`: whether a `tracestate` header came (asked only when it matters);
    /// `traceparent_random`: whether the first `traceparent`'s raw flags have the random bit
    /// (asked only when a winner that cannot carry it would take it);
    /// `request_id`: the carrier's first `x-request-id`, checked
    /// ([`codec::request_id::extract`]).
    #[inline]
    fn extract_head<E: Extractor + ?Sized>(
        &self,
        carrier: &E,
        decode: impl Fn(ContextFormat) -> Option<Result<SpanContext, ParseError>>,
        has_tracestate: impl FnOnce() -> bool,
        traceparent_random: impl FnOnce() -> bool,
        request_id: impl FnOnce() -> Option<Result<RequestId, ParseError>>,
    ) -> (
        Option<(SpanContext, ContextFormat)>,
        TraceState,
        Option<RequestId>,
        Head,
    ) {
        let c = &self.config;
        let mut head = Head::default();
        let winner = if c.trust.context == InboundContext::Ignore {
            None
        } else {
            self.first_valid(&c.extract, &decode, &mut |e| head.span_errors.push(e))
        };
        // A closure, not `&decode`: the compiler inlines it (23 instructions fewer a `leaf`
        // extract, measured with the instructions bench).
        #[allow(clippy::redundant_closure)]
        let winner = self.with_random_flag(winner, traceparent_random, |f| decode(f));

        // tracestate travels with a valid traceparent of the same trace: the winner, or a
        // format after it in the extract order.
        let mut tracestate = TraceState::default();
        if c.extract_set.contains(ContextFormat::TraceParent)
            && let Some((remote, source)) = winner
            && has_tracestate()
        {
            let traceparent = if source == ContextFormat::TraceParent {
                Some(remote)
            } else {
                let after = c
                    .extract
                    .iter()
                    .skip_while(|&&f| f != source)
                    .any(|&f| f == ContextFormat::TraceParent);
                after
                    .then(|| decode(ContextFormat::TraceParent).and_then(Result::ok))
                    .flatten()
            };
            match traceparent {
                Some(tp) if tp.trace_id() == remote.trace_id() => {
                    match Self::tracestate_of(carrier) {
                        Ok(ts) => tracestate = ts,
                        Err(e) => head.tracestate_error = Some(e),
                    }
                }
                Some(_) => head.other_trace_tracestate = true,
                None => {}
            }
        }

        let mut kept_id = None;
        if c.request_id {
            match request_id() {
                Some(Ok(id)) if c.trust.request_id == InboundRequestId::Keep => {
                    kept_id = Some(id);
                }
                Some(Ok(_)) | None => {}
                Some(Err(e)) => head.request_id_error = Some(e),
            }
        }
        (winner, tracestate, kept_id, head)
    }

    /// The `tracestate` of a carrier that has one.
    fn tracestate_of<E: Extractor + ?Sized>(carrier: &E) -> Result<TraceState, ParseError> {
        let single = carrier.get_all_values(&header::TRACESTATE).nth(1).is_none();
        // A value that is not a valid `HeaderValue` (only a raw-bytes carrier has those) goes
        // through the byte parser, which says why it is refused.
        let first = if single {
            carrier.get_value(&header::TRACESTATE)
        } else {
            None
        };
        match first {
            Some(first) => TraceState::parse_value(&first),
            None => TraceState::parse_with(|| {
                carrier
                    .get_all_values(&header::TRACESTATE)
                    .map(|l| (l, None))
            }),
        }
    }

    /// Baggage, propagated fields, the values to forward and every error, for the context
    /// whose caller's span is `winner` (`head`: the errors found deciding it). `no_baggage`:
    /// the carrier is known to hold no baggage header of any form (nothing to look for).
    fn rest_from<'c, E: Extractor + ?Sized>(
        &self,
        carrier: &'c E,
        winner: Option<(SpanContext, ContextFormat)>,
        head: &Head,
        decode: impl Fn(ContextFormat) -> Option<Result<SpanContext, ParseError>>,
        slot: impl Fn(usize) -> Option<&'c [u8]>,
        no_baggage: bool,
    ) -> Rest {
        let c = &self.config;
        let mut errors = head.span_errors.clone();
        let mut received = Received::default();
        if let Some((_, source)) = winner {
            received.context_verbatim = c.trust.context == InboundContext::Trust;
            // Keep the raw values of every valid context format for forward mode.
            let mut after = false;
            for &f in &c.extract {
                let valid = if f == source {
                    after = true;
                    true
                } else if after {
                    match decode(f) {
                        Some(Ok(_)) => true,
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
                    received.capture(f, &slot);
                }
            }
            // A valid `traceparent` of another trace than the winner's goes on as it came
            // (when the context does), and with it its `tracestate` (the context's own
            // `tracestate` is the winner's trace's).
            if head.other_trace_tracestate && received.context_verbatim {
                match Self::tracestate_of(carrier) {
                    // Sent as it came when that is its normal form (one `k=v,k=v` line, as
                    // tracers write it), else normalised.
                    Ok(ts) => match ts.header_value() {
                        Some(v) if Some(v.as_bytes()) == slot(crate::carrier::slot::TRACESTATE) => {
                            received.keep(crate::carrier::slot::TRACESTATE);
                        }
                        Some(v) => received.replace_tracestate(v.clone()),
                        None => {}
                    },
                    Err(e) => errors.push(e),
                }
            }
        }
        errors.extend(head.tracestate_error);
        errors.extend(head.request_id_error);

        let mut baggage = Baggage::new();
        if c.baggage && !no_baggage {
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
            // Past an edge that does not take its clients' baggage, it is still checked (a
            // malformed header has its reason) but none of it is kept.
            if c.trust.baggage == InboundBaggage::Keep {
                baggage = bag;
            }
            errors.extend(dropped);
        }

        // Propagated fields: one checked line each; past an edge that does not trust its
        // clients, only those declared safe there.
        let mut fields = Vec::new();
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
                            fields.push((f.name().clone(), v));
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
            for i in opaque_slots(h) {
                if let Some(raw) = slot(i) {
                    match check_opaque(h, raw) {
                        Ok(()) if !forward_opaque => {}
                        Ok(()) => received.keep(i),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }

        Rest {
            baggage,
            fields,
            received,
            errors,
        }
    }
}

/// Whether a `traceparent` value's flags (the two characters after the version, trace id and
/// parent id) have the random-trace-id bit: a look at one byte, before any decode. Leading
/// OWS (spaces, HTAB), which the decoder tolerates, is skipped.
pub(crate) fn raw_random_bit(value: Option<&[u8]>) -> bool {
    let Some(v) = value else {
        return false;
    };
    let start = v.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    match v.get(start + 54) {
        Some(&c @ b'0'..=b'9') => (c - b'0') & 0x2 != 0,
        Some(&c @ b'a'..=b'f') => (c - b'a' + 10) & 0x2 != 0,
        _ => false,
    }
}
