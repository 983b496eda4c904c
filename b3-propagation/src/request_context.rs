//! [`RequestContext`]: everything a request carries for tracing, as extracted by a
//! [`Propagator`].
//!
//! It holds the caller's span context (`remote`), this hop's span (`local`, set by a server
//! middleware), `tracestate`, the request id, baggage, the received header values to forward
//! verbatim, and why any header was rejected. It is what the Tower layers and gRPC
//! interceptors store in request extensions and make current.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{Propagator, RequestContext};
//! use http::{HeaderMap, HeaderValue};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("x-b3-traceid", HeaderValue::from_static("463ac35c9f6413ad48485a3953bb6124"));
//! headers.insert("x-b3-spanid", HeaderValue::from_static("A2FB4A1D1A96D312")); // upper case
//!
//! let cx: RequestContext = Propagator::default().extract(&headers);
//! assert!(cx.span().is_none()); // treated as absent...
//! assert_eq!(cx.errors()[0].to_string(),
//!     "invalid x-b3-* header: span id: invalid character 'A' at byte 0 (lower-case hex only)");
//! ```

use std::fmt;
use std::sync::OnceLock;

use http::{HeaderName, HeaderValue};

use crate::OpaqueHeader;
use crate::baggage::Baggage;
use crate::carrier::{Captured, SCAN_SLOTS, slot};
use crate::codec::{jaeger, traceparent};
use crate::context::SpanContext;
use crate::error::ParseError;
use crate::header;
use crate::propagator::{ContextFormat, FormatSet, Propagator};
use crate::request_id::RequestId;
use crate::tracestate::TraceState;

/// The header of each slot of [`Captured`] (see `carrier::slot`).
static SLOT_NAMES: [HeaderName; SCAN_SLOTS] = [
    header::B3,
    header::X_B3_TRACE_ID,
    header::X_B3_SPAN_ID,
    header::X_B3_PARENT_SPAN_ID,
    header::X_B3_SAMPLED,
    header::X_B3_FLAGS,
    header::TRACEPARENT,
    header::TRACESTATE,
    header::BAGGAGE,
    header::X_REQUEST_ID,
    header::UBER_TRACE_ID,
    header::GRPC_TRACE_BIN,
    header::X_OT_SPAN_CONTEXT,
    header::X_CLOUD_TRACE_CONTEXT,
    header::SW8,
    header::X_DATADOG_TRACE_ID,
    header::X_DATADOG_PARENT_ID,
    header::X_DATADOG_SAMPLING_PRIORITY,
];

/// The opaque headers' slots: `grpc-trace-bin` (when it is not a context format) to the last.
const OPAQUE_SLOTS: std::ops::Range<usize> = slot::GRPC_TRACE_BIN..SCAN_SLOTS;

/// The received `traceparent` when it is exactly what this crate writes (version `00`, no
/// unknown flag, no OWS): `None`. Else its re-encoding (`Some(Some(..))`: OWS tolerated on
/// receipt, spaces and HTAB, is not sent on), or `Some(None)` if it does not parse.
fn traceparent_re_encoding(v: &[u8]) -> Option<Option<HeaderValue>> {
    if is_canonical_traceparent(v) {
        // What Envoy and every W3C tracer send: no second decode on the hot path (the capture
        // runs only for a format that decoded valid, so the ids are known to be non-zero).
        return None;
    }
    let Ok(tp) = traceparent::decode(v) else {
        return Some(None);
    };
    let mut buf = [0u8; traceparent::LEN];
    let Some(canonical) = traceparent::encode_to(&tp.context, &mut buf) else {
        return Some(None);
    };
    if v == canonical.as_bytes() {
        None
    } else {
        Some(HeaderValue::from_str(canonical).ok())
    }
}

/// `00-<32 lower hex>-<16 lower hex>-0[01]`: version 00, no OWS, the common flags (any other
/// value takes the full decode).
fn is_canonical_traceparent(b: &[u8]) -> bool {
    b.len() == traceparent::LEN
        && b.starts_with(b"00-")
        && matches!(&b[53..], b"00" | b"01")
        && b.iter().enumerate().all(|(i, &c)| match i {
            2 | 35 | 52 => c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(&c),
        })
}

/// The slots of a context format.
const fn context_slots(f: ContextFormat) -> std::ops::Range<usize> {
    match f {
        ContextFormat::B3Single => slot::B3..slot::B3 + 1,
        ContextFormat::B3Multi => slot::X_B3_TRACE_ID..slot::X_B3_FLAGS + 1,
        ContextFormat::TraceParent => slot::TRACEPARENT..slot::TRACEPARENT + 1,
        ContextFormat::Jaeger => slot::UBER_TRACE_ID..slot::UBER_TRACE_ID + 1,
        ContextFormat::GrpcTraceBin => slot::GRPC_TRACE_BIN..slot::GRPC_TRACE_BIN + 1,
    }
}

/// Whether a valid `b3` value is `{t}-{s}-{p}`: ids and a parent, no sampling field.
fn is_b3_deferred_with_parent(v: &[u8]) -> bool {
    // 16 or 32 + 1 + 16 + 1 + 16; a sampling field would be one character.
    matches!(v.len(), 50 | 66) && v.get(v.len() - 17) == Some(&b'-')
}

/// The slots of an opaque header.
pub(crate) const fn opaque_slots(h: OpaqueHeader) -> std::ops::Range<usize> {
    match h {
        OpaqueHeader::GrpcTraceBin => slot::GRPC_TRACE_BIN..slot::GRPC_TRACE_BIN + 1,
        OpaqueHeader::OtSpanContext => slot::X_OT_SPAN_CONTEXT..slot::X_OT_SPAN_CONTEXT + 1,
        OpaqueHeader::CloudTraceContext => {
            slot::X_CLOUD_TRACE_CONTEXT..slot::X_CLOUD_TRACE_CONTEXT + 1
        }
        OpaqueHeader::Sw8 => slot::SW8..slot::SW8 + 1,
        OpaqueHeader::Datadog => slot::X_DATADOG_TRACE_ID..slot::X_DATADOG_SAMPLING_PRIORITY + 1,
    }
}

pub(crate) fn slot_name(slot: usize) -> &'static HeaderName {
    &SLOT_NAMES[slot]
}

/// Which received header values forward mode re-sends: captured slots, by bit, and the
/// re-encodings of values that cannot go on as received.
#[derive(Clone, Debug, Default)]
pub(crate) struct Received {
    /// Bit `i`: the captured value of slot `i` is forwarded.
    kept: u32,
    /// Values sent instead of received ones; rare, so boxed (the struct moves with every
    /// extract).
    replaced: Option<Box<Replaced>>,

    /// The context formats that arrived valid.
    pub(crate) formats: FormatSet,
    /// Whether the context is exactly what those headers say (no trust policy change).
    pub(crate) context_verbatim: bool,
}

/// Values forward mode sends instead of received ones (see [`Received`]).
#[derive(Clone, Debug, Default)]
struct Replaced {
    /// Sent instead of the received `traceparent`.
    traceparent: Option<HeaderValue>,
    /// Sent instead of the received `uber-trace-id`.
    uber_trace_id: Option<HeaderValue>,
    /// Beside a forwarded `traceparent` of another trace than the context's, its own
    /// `tracestate`, normalised (a valid one that did not come in its normal form).
    tracestate: Option<HeaderValue>,
}

impl Received {
    /// Keep the received values of a format that decoded valid, for forward mode. Only what
    /// the decoder used is kept: a value the rules say to ignore is not forwarded either.
    pub(crate) fn capture<'c>(
        &mut self,
        f: ContextFormat,
        slot_value: &impl Fn(usize) -> Option<&'c [u8]>,
    ) {
        // B3 spec (openzipkin/b3-propagation): ids without a trace id are ignored (a
        // sampling-only context). The trace id slot comes first.
        let mut b3_trace_id = false;
        for slot in context_slots(f) {
            let value = slot_value(slot);
            let kept = match (slot, value) {
                (_, None) => false,
                (slot::X_B3_SPAN_ID | slot::X_B3_PARENT_SPAN_ID, _) if !b3_trace_id => false,
                // A zero parent is no parent (Brave): not sent on either.
                (slot::X_B3_PARENT_SPAN_ID, Some(v)) if v.iter().all(|&b| b == b'0') => false,
                // ...and so is `x-b3-flags` other than `1`; debug implies accept, "so don't
                // also send the X-B3-Sampled header" (a peer reading only `x-b3-sampled: 0`,
                // as Envoy does, would take debug for deny).
                (slot::X_B3_FLAGS, Some(v)) => {
                    let debug = v == b"1";
                    if debug {
                        self.kept &= !(1 << slot::X_B3_SAMPLED);
                    }
                    debug
                }
                // Legacy `true` / `false` (any case) is accepted, not sent: Envoy reads only
                // `1` and `true`. And `{t}-{s}-{p}` (a parent with deferred sampling, Brave's
                // form) is accepted, not sent: Envoy and OpenTelemetry refuse it. The context
                // is encoded again instead (`x-b3-sampled: 1` / `0`; `b3: {t}-{s}`).
                // (A decision alone goes on as it came: encoding it again would drop the
                // formats that cannot carry a decision without ids, `traceparent` among them.)
                (slot::X_B3_SAMPLED, Some(v)) if v != b"1" && v != b"0" && b3_trace_id => {
                    self.context_verbatim = false;
                    true
                }
                (slot::B3, Some(v)) if is_b3_deferred_with_parent(v) => {
                    self.context_verbatim = false;
                    true
                }
                // `traceparent` (W3C Trace Context, version handling): a higher version is
                // re-emitted as version `00` with only the four fields, and unknown flags are
                // zeroed.
                (slot::TRACEPARENT, Some(v)) => match traceparent_re_encoding(v) {
                    None => true,
                    Some(re) => {
                        if let Some(re) = re {
                            self.replaced_mut().traceparent = Some(re);
                        }
                        false
                    }
                },
                // `uber-trace-id` (Jaeger): the parent field is not validated, so a value
                // that is not visible ASCII is re-encoded (`{trace}:{span}:0:{flags}`).
                (slot::UBER_TRACE_ID, Some(v)) if !v.iter().all(u8::is_ascii_graphic) => {
                    if let Some(re) = jaeger::decode(v).ok().and_then(|cx| jaeger::encode(&cx)) {
                        self.replaced_mut().uber_trace_id = Some(re);
                    }
                    false
                }
                (_, Some(_)) => true,
            };
            if kept {
                self.kept |= 1 << slot;
            }
            if slot == slot::X_B3_TRACE_ID {
                b3_trace_id = kept;
            }
        }
    }

    /// Forward the received value of slot `slot` (an opaque header).
    pub(crate) fn keep(&mut self, slot: usize) {
        self.kept |= 1 << slot;
    }

    /// The slots kept.
    pub(crate) fn kept_slots(&self) -> impl Iterator<Item = usize> + use<> {
        let kept = self.kept;
        (0..SCAN_SLOTS).filter(move |s| kept & (1 << s) != 0)
    }

    fn replaced_mut(&mut self) -> &mut Replaced {
        self.replaced.get_or_insert_with(Box::default)
    }

    /// Send `value`, normalised, as the `tracestate` of a forwarded `traceparent` of another
    /// trace (one that did not come in its normal form).
    pub(crate) fn replace_tracestate(&mut self, value: HeaderValue) {
        self.replaced_mut().tracestate = Some(value);
    }

    /// Send no received `tracestate` (what the application sets replaces it).
    pub(crate) fn drop_tracestate(&mut self) {
        self.kept &= !(1 << slot::TRACESTATE);
        if let Some(r) = &mut self.replaced {
            r.tracestate = None;
        }
    }

    /// The value forwarded for `slot`, if any, given the captured values: the captured one
    /// when kept (the common case, looked at first), else a replacement. (A slot whose value
    /// is replaced is never kept.)
    fn value<'a>(&'a self, slot: usize, captured: Option<&'a Captured>) -> Option<&'a HeaderValue> {
        if self.kept & (1 << slot) != 0 {
            return captured.and_then(|c| c.slot(slot));
        }
        self.replaced.as_deref().and_then(|r| match slot {
            slot::TRACEPARENT => r.traceparent.as_ref(),
            slot::UBER_TRACE_ID => r.uber_trace_id.as_ref(),
            slot::TRACESTATE => r.tracestate.as_ref(),
            _ => None,
        })
    }
}

/// What [`RequestContext`] decodes only when first asked: baggage, propagated fields, the
/// values to forward, and the errors.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rest {
    pub(crate) baggage: Baggage,
    pub(crate) fields: Vec<(HeaderName, HeaderValue)>,
    pub(crate) received: Received,
    pub(crate) errors: Vec<ParseError>,
}

/// What an extract decided at once, kept for the rest of the decode.
#[derive(Clone, Debug, Default)]
pub(crate) struct Head {
    /// The errors of the formats tried before the winner (or of all of them).
    pub(crate) span_errors: Vec<ParseError>,
    /// Why `tracestate` was refused.
    pub(crate) tracestate_error: Option<ParseError>,
    /// Why `x-request-id` was refused.
    pub(crate) request_id_error: Option<ParseError>,
    /// A `tracestate` came beside a valid `traceparent` (after the winner) of another trace
    /// than the winner's: that `traceparent`'s own, to forward with it.
    pub(crate) other_trace_tracestate: bool,
}

/// What an extract from captured headers decides at once.
pub(crate) struct Decided {
    /// The caller's span and the format it came in.
    pub(crate) remote: Option<(SpanContext, ContextFormat)>,
    pub(crate) tracestate: TraceState,
    pub(crate) request_id: Option<RequestId>,
    /// How to decode the rest when first asked.
    pub(crate) lazy: Option<(Propagator, Head)>,
}

/// The received headers behind a [`RequestContext`]: the captured values (forward mode
/// re-sends them) and, until the rest is decoded, how to decode it.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) captured: Captured,
    /// The propagator and the extract's first decisions, for a context whose rest is not
    /// decoded yet.
    pub(crate) lazy: Option<(Propagator, Head)>,
}

/// Everything a request carries for tracing. See the [module docs](self).
///
/// An extract from a `HeaderMap` decodes the span context, `tracestate` and the request id at
/// once, and captures the other tracing headers (their values shared, not copied): baggage,
/// propagated fields, the values kept for forward mode and the errors are decoded, by the same
/// rules, the first time something asks for them. A service that makes no call never pays for
/// them.
#[derive(Clone, Default)]
pub struct RequestContext {
    pub(crate) remote: Option<SpanContext>,
    pub(crate) local: Option<SpanContext>,
    pub(crate) source: Option<ContextFormat>,
    /// This hop's decision for a trace that starts here with no span of its own to name (a
    /// root a sampler dropped): the calls carry it alone.
    pub(crate) decided: Option<crate::Sampling>,
    pub(crate) tracestate: TraceState,
    pub(crate) request_id: Option<RequestId>,
    rest: OnceLock<Rest>,
    pending: Option<Pending>,
}

impl RequestContext {
    /// A context from an extract: `rest` decoded already, or (with `pending.lazy`) when
    /// first needed.
    #[inline]
    pub(crate) fn extracted(
        remote: Option<(SpanContext, ContextFormat)>,
        tracestate: TraceState,
        request_id: Option<RequestId>,
        rest: Option<Rest>,
        pending: Option<Pending>,
    ) -> Self {
        RequestContext {
            remote: remote.map(|(s, _)| s),
            local: None,
            source: remote.map(|(_, f)| f),
            decided: None,
            tracestate,
            request_id,
            rest: rest.map_or_else(OnceLock::new, OnceLock::from),
            pending,
        }
    }

    /// Make this context an extract's from a `HeaderMap`, where it is: `scan` captures the
    /// tracing headers into the (emptied) captured slots, and `decide` decides the head from
    /// them (the caller's span and its format, `tracestate`, the request id, and how to
    /// decode the rest later). Nothing captured: the default context.
    #[inline]
    pub(crate) fn extract_in_place(
        &mut self,
        scan: impl FnOnce(&mut Captured),
        decide: impl FnOnce(&Captured) -> Decided,
    ) {
        self.local = None;
        self.decided = None;
        self.rest = OnceLock::new();
        let pending = self.pending.insert(Pending {
            captured: Captured::default(),
            lazy: None,
        });
        scan(&mut pending.captured);
        let (remote, tracestate, request_id) = if pending.captured.is_empty() {
            // No tracing header at all: nothing to decode, now or later.
            self.pending = None;
            (None, TraceState::default(), None)
        } else {
            let d = decide(&pending.captured);
            pending.lazy = d.lazy;
            (d.remote, d.tracestate, d.request_id)
        };
        self.remote = remote.map(|(s, _)| s);
        self.source = remote.map(|(_, f)| f);
        self.tracestate = tracestate;
        self.request_id = request_id;
    }

    /// The rest, decoded now if it was not.
    pub(crate) fn rest(&self) -> &Rest {
        self.rest.get_or_init(|| match self.pending.as_ref() {
            Some(Pending {
                captured,
                lazy: Some((propagator, head)),
            }) => propagator.decode_rest(captured, self.remote.zip(self.source), head),
            _ => Rest::default(),
        })
    }

    fn rest_mut(&mut self) -> &mut Rest {
        let _ = self.rest();
        self.rest
            .get_mut()
            .unwrap_or_else(|| unreachable!("the rest was decoded just above"))
    }

    /// The received context headers of the valid formats, to forward.
    pub(crate) fn received_context_values(
        &self,
    ) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        let received = &self.rest().received;
        let captured = self.pending.as_ref().map(|p| &p.captured);
        received
            .formats
            .iter()
            .flat_map(context_slots)
            .filter_map(move |s| received.value(s, captured).map(|v| (&SLOT_NAMES[s], v)))
    }

    /// The received `tracestate` kept to forward: beside a `traceparent` of another trace
    /// than the context's, that one's own.
    pub(crate) fn received_tracestate(&self) -> Option<&HeaderValue> {
        let captured = self.pending.as_ref().map(|p| &p.captured);
        self.rest().received.value(slot::TRACESTATE, captured)
    }

    /// The received opaque headers, to forward.
    pub(crate) fn received_opaque(
        &self,
    ) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        let received = &self.rest().received;
        let captured = self.pending.as_ref().map(|p| &p.captured);
        let start = if received.formats.contains(ContextFormat::GrpcTraceBin) {
            slot::GRPC_TRACE_BIN + 1
        } else {
            OPAQUE_SLOTS.start
        };
        // Nothing kept there (the common case): no slot to look at.
        let end = if received.kept >> start == 0 {
            start
        } else {
            OPAQUE_SLOTS.end
        };
        (start..end).filter_map(move |s| received.value(s, captured).map(|v| (&SLOT_NAMES[s], v)))
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = self.rest();
        let received: Vec<_> = self
            .received_context_values()
            .chain(self.received_opaque())
            .map(|(n, v)| (n.as_str(), v))
            .collect();
        f.debug_struct("RequestContext")
            .field("remote", &self.remote)
            .field("local", &self.local)
            .field("source", &self.source)
            .field("decided", &self.decided)
            .field("tracestate", &self.tracestate)
            .field("request_id", &self.request_id)
            .field("baggage", &rest.baggage)
            .field("fields", &rest.fields)
            .field("received", &received)
            .field("errors", &rest.errors)
            .finish()
    }
}

impl RequestContext {
    /// An empty context: no span, no request id, no baggage.
    #[must_use]
    pub fn new() -> Self {
        RequestContext::default()
    }

    /// A context whose current span is `span` (for code that starts its own work outside a
    /// request, or tests). `span` counts as this hop's own span, which a tracer reports: the
    /// calls made under this context name it (instrument mode) and their spans take it as
    /// parent. Give it the ids of a span you export (an OpenTelemetry span you started, say:
    /// [`SpanContext::from_otel`](crate::SpanContext) with feature `opentelemetry`); for work
    /// that reports no span of its own, start from [`new`](Self::new) instead, whose calls
    /// start their trace at the next hop that reports one.
    #[must_use]
    pub fn from_span(span: SpanContext) -> Self {
        RequestContext {
            local: Some(span),
            ..RequestContext::default()
        }
    }

    /// The current span: this hop's span if set, else the caller's.
    ///
    /// A hop that reports no span of its own leaves [`local`](Self::local) unset: its current
    /// span is then the caller's, and what it sends names the caller's span, never an id no
    /// tracer reports.
    #[must_use]
    pub fn span(&self) -> Option<SpanContext> {
        self.local.or(self.remote)
    }

    /// The caller's span context (after the trust policy).
    #[must_use]
    pub fn remote(&self) -> Option<&SpanContext> {
        self.remote.as_ref()
    }

    /// This hop's span, once a server middleware set it: a span this hop reports. `None` at
    /// a hop that reports nothing (it is transparent: see [`span`](Self::span)).
    #[must_use]
    pub fn local(&self) -> Option<&SpanContext> {
        self.local.as_ref()
    }

    /// Set this hop's span. Set only a span some tracer reports: what is sent names it.
    pub fn set_local(&mut self, span: SpanContext) {
        self.local = Some(span);
    }

    /// Record this hop's sampling decision.
    ///
    /// - For a caller's context that arrived without one
    ///   ([`Sampling::Deferred`](crate::Sampling::Deferred)): the caller's ids travel on with
    ///   this decision (re-encoded, since the received headers no longer say it).
    /// - For a trace that starts here (nothing received) while this hop names no span of its
    ///   own (a root a sampler dropped): the calls carry the decision alone, with no ids, in
    ///   the B3 formats of the inject set (`x-b3-sampled: 0`, `b3: 0`; `traceparent`,
    ///   `uber-trace-id` and `grpc-trace-bin` cannot say it without ids, so they send
    ///   nothing), and the Tower layers make it the OpenTelemetry parent of the request's
    ///   spans. Peers that read a B3 decision without ids follow it instead of starting traces
    ///   of their own: Envoy (a new trace, not sampled), Brave, this crate;
    ///   `opentelemetry-propagator-b3` ignores it. A span of this hop's
    ///   ([`set_local`](Self::set_local)) is named instead, with its own decision.
    ///
    /// The first decision stands: a caller's own (or its decision alone) is never
    /// overridden, a later call changes nothing, and
    /// [`Sampling::Deferred`](crate::Sampling::Deferred) decides nothing.
    ///
    /// ```
    /// use b3_propagation::{Propagator, RequestContext, Sampling};
    /// use http::HeaderMap;
    ///
    /// let propagator = Propagator::default();
    /// let mut cx = RequestContext::new(); // no caller: a trace that starts here
    /// cx.decide_sampling(Sampling::Deny); // and a sampler dropped it
    /// assert_eq!(cx.sampling(), Sampling::Deny);
    ///
    /// let mut outgoing = HeaderMap::new();
    /// propagator.forward(&cx, &mut outgoing);
    /// assert_eq!(outgoing["x-b3-sampled"], "0"); // the decision, no ids
    /// assert!(!outgoing.contains_key("x-b3-spanid"));
    /// ```
    pub fn decide_sampling(&mut self, sampling: crate::Sampling) {
        if sampling == crate::Sampling::Deferred {
            return;
        }
        match &mut self.remote {
            Some(remote) if remote.sampling() == crate::Sampling::Deferred => {
                *remote = remote.with_sampling(sampling);
                self.rest_mut().received.context_verbatim = false;
            }
            Some(_) => {}
            None => {
                self.decided.get_or_insert(sampling);
            }
        }
    }

    /// The request's sampling decision at this hop: this hop's span's, else the caller's (as
    /// this hop [decided](Self::decide_sampling) it for a caller that deferred), else this
    /// hop's decision for a trace that starts here without a span of its own;
    /// [`Sampling::Deferred`](crate::Sampling::Deferred) when nobody decided.
    #[must_use]
    pub fn sampling(&self) -> crate::Sampling {
        self.span()
            .map(|s| s.sampling())
            .or(self.decided)
            .unwrap_or(crate::Sampling::Deferred)
    }

    /// Which format the caller's context came from.
    #[must_use]
    pub fn source(&self) -> Option<ContextFormat> {
        self.source
    }

    /// The context formats that arrived valid (forward mode re-sends these).
    #[must_use]
    pub fn received_formats(&self) -> FormatSet {
        self.rest().received.formats
    }

    /// The received value of a forwarded header (context or opaque), if kept.
    #[must_use]
    pub fn received_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        let slot = SLOT_NAMES.iter().position(|n| n == name)?;
        self.rest()
            .received
            .value(slot, self.pending.as_ref().map(|p| &p.captured))
    }

    /// The W3C `tracestate` (empty unless a valid `traceparent` of the same trace came in).
    #[must_use]
    pub fn tracestate(&self) -> &TraceState {
        &self.tracestate
    }

    /// Replace the `tracestate`: the only one forward mode sends from now on (also beside a
    /// forwarded `traceparent` of another trace, which otherwise keeps its own).
    pub fn set_tracestate(&mut self, tracestate: TraceState) {
        self.tracestate = tracestate;
        if self.pending.is_some() || self.rest.get().is_some() {
            self.rest_mut().received.drop_tracestate();
        }
    }

    /// The request id, if a valid (and trusted) one came in or was set.
    #[must_use]
    pub fn request_id(&self) -> Option<&RequestId> {
        self.request_id.as_ref()
    }

    /// Set the request id.
    pub fn set_request_id(&mut self, id: RequestId) {
        self.request_id = Some(id);
    }

    /// The request id, generating a UUIDv4 when there is none.
    pub fn ensure_request_id(&mut self) -> &RequestId {
        self.request_id.get_or_insert_with(RequestId::generate)
    }

    /// The baggage.
    #[must_use]
    pub fn baggage(&self) -> &Baggage {
        &self.rest().baggage
    }

    /// The baggage, to change it (changes reach every outgoing call made afterwards).
    pub fn baggage_mut(&mut self) -> &mut Baggage {
        &mut self.rest_mut().baggage
    }

    /// The [propagated fields](crate::field) received (or set), in configuration order.
    pub fn fields(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.rest().fields.iter().map(|(n, v)| (n, v))
    }

    /// The value of a propagated field, if received (or set).
    #[must_use]
    pub fn field(&self, name: &HeaderName) -> Option<&HeaderValue> {
        self.rest()
            .fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// Set a propagated field for every call sent from now on (replacing a received value).
    ///
    /// # Errors
    ///
    /// A [`ParseError`] of format [`Format::Field`](crate::Format::Field) when the value
    /// breaks the rules of [`field::check_value`](crate::field::check_value); nothing changes.
    pub fn set_field(
        &mut self,
        field: &crate::PropagatedField,
        value: HeaderValue,
    ) -> Result<(), ParseError> {
        crate::field::check_value(value.as_bytes())?;
        let fields = &mut self.rest_mut().fields;
        match fields.iter_mut().find(|(n, _)| n == field.name()) {
            Some((_, v)) => *v = value,
            None => fields.push((field.name().clone(), value)),
        }
        Ok(())
    }

    /// Stop sending a propagated field.
    pub fn remove_field(&mut self, name: &HeaderName) {
        self.rest_mut().fields.retain(|(n, _)| n != name);
    }

    /// Why each rejected header was rejected (rejected headers are treated as absent).
    #[must_use]
    pub fn errors(&self) -> &[ParseError] {
        &self.rest().errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_constants_name_their_headers() {
        for (slot, name) in [
            (slot::X_B3_SPAN_ID, &header::X_B3_SPAN_ID),
            (slot::X_B3_PARENT_SPAN_ID, &header::X_B3_PARENT_SPAN_ID),
            (slot::X_B3_FLAGS, &header::X_B3_FLAGS),
            (slot::TRACEPARENT, &header::TRACEPARENT),
            (slot::UBER_TRACE_ID, &header::UBER_TRACE_ID),
            (slot::GRPC_TRACE_BIN, &header::GRPC_TRACE_BIN),
        ] {
            assert_eq!(slot_name(slot), name);
        }
        // Every slot's name is the one `scan_slot` puts there.
        for (i, name) in SLOT_NAMES.iter().enumerate() {
            assert_eq!(crate::carrier::scan_slot(name.as_str()), Some(i), "{name}");
        }
    }

    #[test]
    fn canonical_traceparent_is_forwarded_as_received_else_re_encoded() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_canonical_traceparent(tp.as_bytes()));
        let v = HeaderValue::from_static(tp);
        assert_eq!(traceparent_re_encoding(v.as_bytes()), None);
        // Version 00 keeps its other flags (0x02 is Level 2's "random"): the slow path, same
        // value.
        let random = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03";
        assert!(!is_canonical_traceparent(random.as_bytes()));
        assert_eq!(traceparent_re_encoding(random.as_bytes()), None);
        for other in [
            " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(!is_canonical_traceparent(other.as_bytes()), "{other}");
            let got = traceparent_re_encoding(other.as_bytes());
            assert_eq!(
                got.flatten().as_ref().map(HeaderValue::as_bytes),
                Some(tp.as_bytes()),
                "{other}"
            );
        }
        assert!(!is_canonical_traceparent(
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"
        ));
    }
}
