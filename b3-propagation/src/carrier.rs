//! Carriers: where headers are read from ([`Extractor`]) and written to ([`Injector`]).
//!
//! The codecs are written once against these two traits. They are implemented here for
//! [`http::HeaderMap`]; `grpc-interceptor` implements them for tonic's `MetadataMap`. Header
//! names are the static [`header`](crate::header) constants, so a lookup never parses or
//! allocates a name.
//!
//! # Example
//!
//! ```
//! use b3_propagation::carrier::{Extractor, Injector};
//! use b3_propagation::header;
//! use http::{HeaderMap, HeaderValue};
//!
//! let mut headers = HeaderMap::new();
//! headers.set(&header::B3, HeaderValue::from_static("0"));
//! assert_eq!(Extractor::get(&headers, &header::B3), Some(&b"0"[..]));
//! assert_eq!(headers.get_all_values(&header::B3).count(), 1);
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};

/// Read access to a set of headers (or gRPC metadata).
pub trait Extractor {
    /// The first value of `name`, as raw bytes.
    fn get(&self, name: &HeaderName) -> Option<&[u8]>;

    /// Every value of `name`, one per field line, in order.
    fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, Self>;

    /// The first value of `name` as a [`HeaderValue`] to forward verbatim.
    ///
    /// The default builds a new value from the bytes; carriers that hold `HeaderValue`s
    /// override it with a clone, which shares the bytes instead of copying them.
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get(name)
            .and_then(|bytes| HeaderValue::from_bytes(bytes).ok())
    }

    /// Every header as `(lower-case name, value)`, for prefix matches (`baggage-*`, ...).
    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])>;

    /// The underlying `HeaderMap`, when there is one. The propagator then finds every
    /// tracing header in a single pass instead of one hashed lookup per name.
    fn as_header_map(&self) -> Option<&HeaderMap> {
        None
    }
}

/// The tracing headers of a request, captured in one pass over its `HeaderMap` and kept (the
/// values shared, not copied), to be decoded when something first needs them: the first value
/// of each tracing header (see [`scan_slot`]) inline, and in `others`, in the map's order,
/// every line of a repeated one, the prefixed baggage headers, the propagated fields and any
/// first value past the inline room. Compact, and never allocates for an ordinary request.
#[derive(Clone)]
pub(crate) struct Captured {
    /// Where each slot's first value is: a position in `values`, [`ABSENT`] or [`IN_OTHERS`].
    index: [u8; SCAN_SLOTS],
    values: [Option<HeaderValue>; INLINE],
    len: u8,
    /// Bit `i`: slot `i` came on more than one field line (all of them are in `others`).
    repeated: u32,
    others: Vec<(HeaderName, HeaderValue)>,
}

/// First values kept inline (a request through Envoy carries `x-request-id` and five to seven
/// tracing headers).
const INLINE: usize = 8;
const ABSENT: u8 = u8::MAX;
const IN_OTHERS: u8 = u8::MAX - 1;

impl Default for Captured {
    fn default() -> Self {
        Captured {
            index: [ABSENT; SCAN_SLOTS],
            values: Default::default(),
            len: 0,
            repeated: 0,
            others: Vec::new(),
        }
    }
}

/// The slot of each tracing header in [`Captured`], as [`scan_slot`] finds it.
pub(crate) mod slot {
    /// `b3`.
    pub(crate) const B3: usize = 0;
    /// `x-b3-traceid`.
    pub(crate) const X_B3_TRACE_ID: usize = 1;
    /// `x-b3-spanid`.
    pub(crate) const X_B3_SPAN_ID: usize = 2;
    /// `x-b3-parentspanid`.
    pub(crate) const X_B3_PARENT_SPAN_ID: usize = 3;
    /// `x-b3-sampled`.
    pub(crate) const X_B3_SAMPLED: usize = 4;
    /// `x-b3-flags`.
    pub(crate) const X_B3_FLAGS: usize = 5;
    /// `traceparent`.
    pub(crate) const TRACEPARENT: usize = 6;
    /// `tracestate`.
    pub(crate) const TRACESTATE: usize = 7;
    /// `baggage`.
    pub(crate) const BAGGAGE: usize = 8;
    /// `x-request-id`.
    pub(crate) const X_REQUEST_ID: usize = 9;
    /// `uber-trace-id`.
    pub(crate) const UBER_TRACE_ID: usize = 10;
    /// `grpc-trace-bin`.
    pub(crate) const GRPC_TRACE_BIN: usize = 11;
    /// `x-ot-span-context`.
    pub(crate) const X_OT_SPAN_CONTEXT: usize = 12;
    /// `x-cloud-trace-context`.
    pub(crate) const X_CLOUD_TRACE_CONTEXT: usize = 13;
    /// `sw8`.
    pub(crate) const SW8: usize = 14;
    /// `x-datadog-trace-id`.
    pub(crate) const X_DATADOG_TRACE_ID: usize = 15;
    /// `x-datadog-parent-id`.
    pub(crate) const X_DATADOG_PARENT_ID: usize = 16;
    /// `x-datadog-sampling-priority`.
    pub(crate) const X_DATADOG_SAMPLING_PRIORITY: usize = 17;
}

pub(crate) const SCAN_SLOTS: usize = slot::X_DATADOG_SAMPLING_PRIORITY + 1;

/// The slot of a tracing header name (lower case), if it is one. Dispatches on the length
/// first, so an ordinary header costs one comparison.
#[inline]
pub(crate) fn scan_slot(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    match b.len() {
        2 => (b == b"b3").then_some(slot::B3),
        3 => (b == b"sw8").then_some(slot::SW8),
        7 => (b == b"baggage").then_some(slot::BAGGAGE),
        10 => match b[0] {
            b'x' => (b == b"x-b3-flags").then_some(slot::X_B3_FLAGS),
            b't' => (b == b"tracestate").then_some(slot::TRACESTATE),
            _ => None,
        },
        11 => match b[0] {
            b'x' => (b == b"x-b3-spanid").then_some(slot::X_B3_SPAN_ID),
            b't' => (b == b"traceparent").then_some(slot::TRACEPARENT),
            _ => None,
        },
        12 => match b.get(2) {
            Some(b'b') if b == b"x-b3-traceid" => Some(slot::X_B3_TRACE_ID),
            Some(b'b') if b == b"x-b3-sampled" => Some(slot::X_B3_SAMPLED),
            Some(b'r') if b == b"x-request-id" => Some(slot::X_REQUEST_ID),
            _ => None,
        },
        13 => (b == b"uber-trace-id").then_some(slot::UBER_TRACE_ID),
        14 => (b == b"grpc-trace-bin").then_some(slot::GRPC_TRACE_BIN),
        17 => match b.get(2) {
            Some(b'b') => (b == b"x-b3-parentspanid").then_some(slot::X_B3_PARENT_SPAN_ID),
            Some(b'o') => (b == b"x-ot-span-context").then_some(slot::X_OT_SPAN_CONTEXT),
            _ => None,
        },
        18 => (b == b"x-datadog-trace-id").then_some(slot::X_DATADOG_TRACE_ID),
        19 => (b == b"x-datadog-parent-id").then_some(slot::X_DATADOG_PARENT_ID),
        21 => (b == b"x-cloud-trace-context").then_some(slot::X_CLOUD_TRACE_CONTEXT),
        27 => (b == b"x-datadog-sampling-priority").then_some(slot::X_DATADOG_SAMPLING_PRIORITY),
        _ => None,
    }
}

/// Whether `name` may be a prefixed baggage header (`baggage-*`, `ot-baggage-*`, `uberctx-*`).
#[inline]
pub(crate) fn maybe_prefixed_baggage(name: &str) -> bool {
    match name.as_bytes().first() {
        Some(b'b') => name.len() > 8 && name.starts_with("baggage-"),
        Some(b'o') => name.len() > 11 && name.starts_with("ot-baggage-"),
        Some(b'u') => name.len() > 8 && name.starts_with("uberctx-"),
        _ => false,
    }
}

impl Captured {
    /// Walk `map` once, keeping its tracing headers in this (empty) capture; with `prefixed`,
    /// the prefixed baggage headers too; and every line of each of `fields`.
    #[inline]
    pub(crate) fn scan_into(
        &mut self,
        map: &HeaderMap,
        prefixed: bool,
        fields: &[crate::PropagatedField],
    ) {
        let c = self;
        for (name, value) in map {
            match scan_slot(name.as_str()) {
                // The first line of a tracing header, with room inline: the common case.
                Some(i) if c.index[i] == ABSENT && usize::from(c.len) < INLINE => {
                    c.values[usize::from(c.len)] = Some(value.clone());
                    c.index[i] = c.len;
                    c.len += 1;
                }
                Some(i) if c.index[i] == ABSENT => c.set_slot(i, value.clone()),
                Some(i) => {
                    if c.repeated & (1 << i) == 0 {
                        c.repeated |= 1 << i;
                        // Every line of a repeated header is in `others`, in order.
                        if c.index[i] != IN_OTHERS
                            && let Some(first) = c.slot(i).cloned()
                        {
                            c.others.push((name.clone(), first));
                        }
                    }
                    c.others.push((name.clone(), value.clone()));
                }
                None if prefixed && maybe_prefixed_baggage(name.as_str()) => {
                    c.others.push((name.clone(), value.clone()));
                }
                None => {}
            }
        }
        for f in fields {
            let name = f.name();
            if scan_slot(name.as_str()).is_some()
                || (prefixed && maybe_prefixed_baggage(name.as_str()))
            {
                continue; // captured above
            }
            for value in map.get_all(name) {
                c.others.push((name.clone(), value.clone()));
            }
        }
    }

    /// Whether no tracing header was captured.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0 && self.others.is_empty()
    }

    /// The first value of slot `i`.
    #[inline]
    pub(crate) fn slot(&self, i: usize) -> Option<&HeaderValue> {
        match *self.index.get(i)? {
            ABSENT => None,
            IN_OTHERS => {
                let name = crate::request_context::slot_name(i);
                self.others.iter().find(|(n, _)| n == name).map(|(_, v)| v)
            }
            at => self.values.get(usize::from(at)).and_then(Option::as_ref),
        }
    }

    /// The first value of `name`, a tracing header's from its slot, any other from `others`.
    #[inline]
    fn get_header(&self, name: &HeaderName) -> Option<&HeaderValue> {
        match scan_slot(name.as_str()) {
            Some(i) => self.slot(i),
            None => self.others.iter().find(|(n, _)| n == name).map(|(_, v)| v),
        }
    }

    /// Whether no header of `format` came (so decoding it would find nothing).
    #[inline]
    pub(crate) fn lacks(&self, format: crate::ContextFormat) -> bool {
        use crate::ContextFormat as F;
        let absent = |i: usize| self.index.get(i).is_none_or(|&at| at == ABSENT);
        match format {
            F::B3Single => absent(slot::B3),
            F::B3Multi => (slot::X_B3_TRACE_ID..=slot::X_B3_FLAGS).all(absent),
            F::TraceParent => absent(slot::TRACEPARENT),
            F::Jaeger => absent(slot::UBER_TRACE_ID),
            F::GrpcTraceBin => absent(slot::GRPC_TRACE_BIN),
        }
    }

    /// Whether no baggage came: no `baggage` line and nothing kept in `others` (where the
    /// prefixed baggage headers go).
    #[inline]
    pub(crate) fn lacks_baggage(&self) -> bool {
        self.index[slot::BAGGAGE] == ABSENT && self.others.is_empty()
    }

    /// Keep `value` as slot `i`'s first value (the slot must be empty).
    pub(crate) fn set_slot(&mut self, i: usize, value: HeaderValue) {
        let Some(at) = self.index.get_mut(i) else {
            return;
        };
        if *at != ABSENT {
            return;
        }
        match self.values.get_mut(usize::from(self.len)) {
            Some(v) => {
                *v = Some(value);
                *at = self.len;
                self.len += 1;
            }
            None => {
                *at = IN_OTHERS;
                self.others
                    .push((crate::request_context::slot_name(i).clone(), value));
            }
        }
    }

    /// The context-format headers, as the span-only decode reads them: each slot read when a
    /// format asks for it (most formats of the extract order are never asked for: the first
    /// valid one wins).
    #[inline]
    pub(crate) fn context(&self) -> CapturedContext<'_> {
        CapturedContext(self)
    }
}

impl Extractor for Captured {
    #[inline]
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        self.get_header(name).map(HeaderValue::as_bytes)
    }

    fn get_all_values<'b>(&'b self, name: &HeaderName) -> impl Iterator<Item = &'b [u8]> + use<'b> {
        let (single, all) = match scan_slot(name.as_str()) {
            Some(i) if self.repeated & (1 << i) == 0 => (self.slot(i), None),
            _ => (None, Some(name.clone())),
        };
        let others = all.into_iter().flat_map(move |name| {
            self.others
                .iter()
                .filter(move |(n, _)| *n == name)
                .map(|(_, v)| v)
        });
        single.into_iter().chain(others).map(HeaderValue::as_bytes)
    }

    #[inline]
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get_header(name).cloned()
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Only the prefixed baggage headers are looked for this way, and those are all kept.
        self.others.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))
    }
}

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Captured")
            .field("values", &self.values.iter().flatten().collect::<Vec<_>>())
            .field("others", &self.others)
            .finish()
    }
}

/// Where the span-only decode reads the context-format headers from: a map's walk
/// ([`ContextHeaders`]) or the captured slots ([`CapturedContext`]). Both number the headers
/// as [`slot`] does.
pub(crate) trait ContextSource<'a> {
    /// The first value of context-format header `i` (a [`slot`] number).
    fn first(&self, i: usize) -> Option<&'a [u8]>;

    /// Whether `traceparent` came on more than one field line.
    fn traceparent_repeated(&self) -> bool;

    /// `b3`.
    #[inline]
    fn b3(&self) -> Option<&'a [u8]> {
        self.first(slot::B3)
    }

    /// The five `x-b3-*` headers.
    #[inline]
    fn b3_multi(&self) -> crate::codec::b3_multi::B3Headers<'a> {
        crate::codec::b3_multi::B3Headers {
            trace_id: self.first(slot::X_B3_TRACE_ID),
            span_id: self.first(slot::X_B3_SPAN_ID),
            parent_span_id: self.first(slot::X_B3_PARENT_SPAN_ID),
            sampled: self.first(slot::X_B3_SAMPLED),
            flags: self.first(slot::X_B3_FLAGS),
        }
    }

    /// The first `traceparent` line, and whether more than one arrived.
    #[inline]
    fn traceparent(&self) -> Option<(&'a [u8], bool)> {
        self.first(slot::TRACEPARENT)
            .map(|v| (v, self.traceparent_repeated()))
    }

    /// `uber-trace-id`.
    #[inline]
    fn uber_trace_id(&self) -> Option<&'a [u8]> {
        self.first(slot::UBER_TRACE_ID)
    }

    /// `grpc-trace-bin`.
    #[inline]
    fn grpc_trace_bin(&self) -> Option<&'a [u8]> {
        self.first(slot::GRPC_TRACE_BIN)
    }
}

/// The context-format headers of a [`Captured`], read from its slots on demand.
#[derive(Clone, Copy)]
pub(crate) struct CapturedContext<'a>(&'a Captured);

impl<'a> ContextSource<'a> for CapturedContext<'a> {
    #[inline]
    fn first(&self, i: usize) -> Option<&'a [u8]> {
        self.0.slot(i).map(HeaderValue::as_bytes)
    }

    #[inline]
    fn traceparent_repeated(&self) -> bool {
        self.0.repeated & (1 << slot::TRACEPARENT) != 0
    }
}

/// The context-format headers of a `HeaderMap` (the first value of each, and whether
/// `traceparent` came on more than one field line), found in one pass over it: the span-only
/// extract of an ordinary map, where one hashed lookup per name would cost more than the walk.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ContextHeaders<'a> {
    /// By [`slot`] number (`tracestate`, `baggage` and `x-request-id` stay empty).
    slots: [Option<&'a HeaderValue>; CONTEXT_SLOTS],
    traceparent_repeated: bool,
}

/// The slots up to the last context format's.
const CONTEXT_SLOTS: usize = slot::GRPC_TRACE_BIN + 1;

/// The [`slot`] of a context-format header name (lower case), if it is one. Plain compare and
/// branch, no jump table: an ordinary name costs a length test and at most two word compares.
#[inline]
fn context_slot(n: &[u8]) -> Option<usize> {
    if n.len() < 10 {
        return (n == b"b3").then_some(slot::B3);
    }
    if n.starts_with(b"x-b3-") {
        return match n.len() {
            10 => (n == b"x-b3-flags").then_some(slot::X_B3_FLAGS),
            11 => (n == b"x-b3-spanid").then_some(slot::X_B3_SPAN_ID),
            12 if n == b"x-b3-traceid" => Some(slot::X_B3_TRACE_ID),
            12 if n == b"x-b3-sampled" => Some(slot::X_B3_SAMPLED),
            17 => (n == b"x-b3-parentspanid").then_some(slot::X_B3_PARENT_SPAN_ID),
            _ => None,
        };
    }
    if n == b"traceparent" {
        Some(slot::TRACEPARENT)
    } else if n == b"uber-trace-id" {
        Some(slot::UBER_TRACE_ID)
    } else if n == b"grpc-trace-bin" {
        Some(slot::GRPC_TRACE_BIN)
    } else {
        None
    }
}

impl<'a> ContextHeaders<'a> {
    /// Walk `map` once.
    pub(crate) fn scan(map: &'a HeaderMap) -> Self {
        let mut h = ContextHeaders::default();
        for (name, value) in map {
            if let Some(i) = context_slot(name.as_str().as_bytes()) {
                // First value wins, as `HeaderMap::get`.
                match h.slots[i] {
                    None => h.slots[i] = Some(value),
                    Some(_) => h.traceparent_repeated |= i == slot::TRACEPARENT,
                }
            }
        }
        h
    }
}

impl<'a> ContextSource<'a> for ContextHeaders<'a> {
    #[inline]
    fn first(&self, i: usize) -> Option<&'a [u8]> {
        self.slots
            .get(i)
            .copied()
            .flatten()
            .map(HeaderValue::as_bytes)
    }

    #[inline]
    fn traceparent_repeated(&self) -> bool {
        self.traceparent_repeated
    }
}

/// Write access to a set of headers (or gRPC metadata).
pub trait Injector {
    /// Set `name` to `value`, replacing every value it had.
    fn set(&mut self, name: &HeaderName, value: HeaderValue);

    /// Remove every value of `name`.
    fn remove(&mut self, name: &HeaderName);

    /// A hint before writing: about `additional` headers follow. A carrier that can make
    /// room at once (a `HeaderMap`) does, instead of growing while they are set. Does nothing
    /// by default.
    #[inline]
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }

    /// Remove every span-context header — `b3`, `x-b3-*`, `traceparent`, `tracestate`,
    /// `uber-trace-id`, `grpc-trace-bin`: the headers of every
    /// [`ContextFormat`](crate::ContextFormat) — before a context is written
    /// ([`Propagator::inject`](crate::Propagator::inject) and
    /// [`forward`](crate::Propagator::forward) do): what they write is then the only context
    /// the call carries, and no header copied from elsewhere (an incoming request copied by
    /// hand) names another span or a decision the trust policy refused. By default each name
    /// is removed; a `HeaderMap` looks at its own names once, and an empty one costs nothing.
    fn remove_context_headers(&mut self) {
        remove_each(self, CONTEXT_HEADER_SLOTS);
    }

    /// Remove every opaque header of another tracer (`x-ot-span-context`,
    /// `x-cloud-trace-context`, `sw8`, `x-datadog-*`): what a propagator whose trust policy
    /// refuses the caller's context does before it writes one, so that headers copied from an
    /// incoming request (a handler passing the request on) do not carry the context the policy
    /// refused. By default each name is removed; a `HeaderMap` looks at its own names once,
    /// and an empty one costs nothing.
    fn remove_opaque_headers(&mut self) {
        remove_each(self, OPAQUE_HEADER_SLOTS);
    }

    /// Whether this carrier is gRPC metadata (an outgoing gRPC call), whose keys are
    /// `[0-9a-z_.-]` and whose values (but `-bin` ones) printable ASCII: a header outside
    /// those (a prefixed baggage key an HTTP caller sent with `*`, a value with a tab) is left
    /// out of the call instead of failing it at a peer that checks (gRPC Java does). Asked
    /// only when such a header could come (prefixed baggage, propagated fields, opaque
    /// headers), so an ordinary call never pays for it. `false` by default.
    #[inline]
    fn is_grpc_metadata(&mut self) -> bool {
        false
    }
}

/// Whether gRPC metadata can carry `name: value`: a key of `[0-9a-z_.-]` (gRPC's
/// `Custom-Metadata` grammar), and a value of printable ASCII (space to `~`), or base64 under
/// a `-bin` key (checked where binary values are written).
#[must_use]
pub fn grpc_metadata_ok(name: &str, value: &[u8]) -> bool {
    let key_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'z' | b'_' | b'.' | b'-'));
    key_ok && (name.ends_with("-bin") || value.iter().all(|b| (0x20..0x7f).contains(b)))
}

/// The slots of the span-context headers, those of every context format (see
/// [`Injector::remove_context_headers`]): not baggage or the request id, which inject writes
/// from the context itself, nor the opaque headers of other tracers (`x-ot-span-context`,
/// vendor headers), which an application may write itself. (A `grpc-trace-bin` received and
/// kept is written again after the removal.)
const CONTEXT_HEADER_SLOTS: u32 = (1 << slot::B3)
    | (1 << slot::X_B3_TRACE_ID)
    | (1 << slot::X_B3_SPAN_ID)
    | (1 << slot::X_B3_PARENT_SPAN_ID)
    | (1 << slot::X_B3_SAMPLED)
    | (1 << slot::X_B3_FLAGS)
    | (1 << slot::TRACEPARENT)
    | (1 << slot::TRACESTATE)
    | (1 << slot::UBER_TRACE_ID)
    | (1 << slot::GRPC_TRACE_BIN);

/// The slots of the opaque headers of other tracers (see [`Injector::remove_opaque_headers`]):
/// `grpc-trace-bin`, a context format, is a context header.
const OPAQUE_HEADER_SLOTS: u32 = (1 << slot::X_OT_SPAN_CONTEXT)
    | (1 << slot::X_CLOUD_TRACE_CONTEXT)
    | (1 << slot::SW8)
    | (1 << slot::X_DATADOG_TRACE_ID)
    | (1 << slot::X_DATADOG_PARENT_ID)
    | (1 << slot::X_DATADOG_SAMPLING_PRIORITY);

/// Remove from `carrier`, one name at a time, the headers of the slots in `mask`.
fn remove_each<I: Injector + ?Sized>(carrier: &mut I, mask: u32) {
    let mut slots = mask;
    while slots != 0 {
        let s = slots.trailing_zeros() as usize;
        carrier.remove(crate::request_context::slot_name(s));
        slots &= slots - 1;
    }
}

/// Remove from `map`, in one look at its names, the headers of the slots in `mask`.
fn remove_slots(map: &mut HeaderMap, mask: u32) {
    if map.is_empty() {
        return;
    }
    let mut found = 0u32;
    for name in map.keys() {
        if let Some(s) = scan_slot(name.as_str()) {
            found |= (1u32 << s) & mask;
        }
    }
    while found != 0 {
        let s = found.trailing_zeros() as usize;
        HeaderMap::remove(map, crate::request_context::slot_name(s));
        found &= found - 1;
    }
}

impl Extractor for HeaderMap {
    #[inline]
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        HeaderMap::get(self, name).map(HeaderValue::as_bytes)
    }

    #[inline]
    fn get_all_values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        HeaderMap::get_all(self, name)
            .into_iter()
            .map(HeaderValue::as_bytes)
    }

    #[inline]
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        HeaderMap::get(self, name).cloned()
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))
    }

    fn as_header_map(&self) -> Option<&HeaderMap> {
        Some(self)
    }
}

impl Injector for HeaderMap {
    #[inline]
    fn set(&mut self, name: &HeaderName, value: HeaderValue) {
        self.insert(name.clone(), value);
    }

    #[inline]
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }

    #[inline]
    fn reserve(&mut self, additional: usize) {
        // Past the map's size limit the values are set one by one as before (and refused
        // there the same way).
        let _ = self.try_reserve(additional);
    }

    /// One look at the map's names (nothing at all for an empty map, the usual outgoing
    /// call), then a removal for each context header found.
    fn remove_context_headers(&mut self) {
        remove_slots(self, CONTEXT_HEADER_SLOTS);
    }

    /// As [`remove_context_headers`](Injector::remove_context_headers): one look, if any.
    fn remove_opaque_headers(&mut self) {
        remove_slots(self, OPAQUE_HEADER_SLOTS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header;

    #[test]
    fn header_map_carrier() {
        let mut h = HeaderMap::new();
        h.append(header::TRACESTATE, HeaderValue::from_static("a=1"));
        h.append(header::TRACESTATE, HeaderValue::from_static("b=2"));
        let all: Vec<&[u8]> = h.get_all_values(&header::TRACESTATE).collect();
        assert_eq!(all, vec![&b"a=1"[..], &b"b=2"[..]]);
        Injector::set(&mut h, &header::TRACESTATE, HeaderValue::from_static("c=3"));
        assert_eq!(h.get_all_values(&header::TRACESTATE).count(), 1);
        Injector::remove(&mut h, &header::TRACESTATE);
        assert!(Extractor::get(&h, &header::TRACESTATE).is_none());
    }
}
