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

/// The tracing headers of a `HeaderMap`, found in one pass over it.
pub(crate) struct Scanned<'a> {
    map: &'a HeaderMap,
    slots: [Option<&'a HeaderValue>; SCAN_SLOTS],
    /// Bit `i`: slot `i` has more than one field line.
    repeated: u32,
    /// Whether a prefixed baggage header is present.
    prefixed: bool,
}

const SCAN_SLOTS: usize = 18;

/// The slot of a tracing header name (lower case), if it is one. Dispatches on the length
/// first, so an ordinary header costs one comparison.
#[inline]
fn scan_slot(name: &str) -> Option<usize> {
    let b = name.as_bytes();
    match b.len() {
        2 => (b == b"b3").then_some(0),
        3 => (b == b"sw8").then_some(14),
        7 => (b == b"baggage").then_some(8),
        10 => match b[0] {
            b'x' => (b == b"x-b3-flags").then_some(5),
            b't' => (b == b"tracestate").then_some(7),
            _ => None,
        },
        11 => match b[0] {
            b'x' => (b == b"x-b3-spanid").then_some(2),
            b't' => (b == b"traceparent").then_some(6),
            _ => None,
        },
        12 => match b.get(2) {
            Some(b'b') if b == b"x-b3-traceid" => Some(1),
            Some(b'b') if b == b"x-b3-sampled" => Some(4),
            Some(b'r') if b == b"x-request-id" => Some(9),
            _ => None,
        },
        13 => (b == b"uber-trace-id").then_some(10),
        14 => (b == b"grpc-trace-bin").then_some(11),
        17 => match b.get(2) {
            Some(b'b') => (b == b"x-b3-parentspanid").then_some(3),
            Some(b'o') => (b == b"x-ot-span-context").then_some(12),
            _ => None,
        },
        18 => (b == b"x-datadog-trace-id").then_some(15),
        19 => (b == b"x-datadog-parent-id").then_some(16),
        21 => (b == b"x-cloud-trace-context").then_some(13),
        27 => (b == b"x-datadog-sampling-priority").then_some(17),
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

impl<'a> Scanned<'a> {
    pub(crate) fn new(map: &'a HeaderMap) -> Self {
        let mut s = Scanned {
            map,
            slots: [None; SCAN_SLOTS],
            repeated: 0,
            prefixed: false,
        };
        for (name, value) in map {
            let name = name.as_str();
            match scan_slot(name) {
                Some(i) => match s.slots[i] {
                    None => s.slots[i] = Some(value),
                    Some(_) => s.repeated |= 1 << i,
                },
                None => s.prefixed |= maybe_prefixed_baggage(name),
            }
        }
        s
    }
}

impl<'a> Extractor for Scanned<'a> {
    #[inline]
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        match scan_slot(name.as_str()) {
            Some(i) => self.slots[i].map(HeaderValue::as_bytes),
            None => HeaderMap::get(self.map, name).map(HeaderValue::as_bytes),
        }
    }

    fn get_all_values<'b>(
        &'b self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'b [u8]> + use<'a, 'b> {
        let (single, all) = match scan_slot(name.as_str()) {
            Some(i) if self.repeated & (1 << i) == 0 => (self.slots[i], None),
            _ => (None, Some(HeaderMap::get_all(self.map, name).into_iter())),
        };
        single
            .into_iter()
            .chain(all.into_iter().flatten())
            .map(HeaderValue::as_bytes)
    }

    #[inline]
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        match scan_slot(name.as_str()) {
            Some(i) => self.slots[i].cloned(),
            None => HeaderMap::get(self.map, name).cloned(),
        }
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        // Only the prefixed baggage headers are looked for this way: skip the walk when the
        // scan saw none.
        self.map
            .iter()
            .take(if self.prefixed { usize::MAX } else { 0 })
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
    }
}

/// The context-format headers of a `HeaderMap` (the first value of each, and whether
/// `traceparent` came on more than one field line), found in one pass over it: the span-only
/// extract of an ordinary map, where one hashed lookup per name would cost more than the walk.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ContextHeaders<'a> {
    slots: [Option<&'a HeaderValue>; CONTEXT_SLOTS],
    traceparent_repeated: bool,
}

const CONTEXT_SLOTS: usize = 9;
const B3: usize = 0;
const X_B3_TRACE_ID: usize = 1;
const X_B3_SPAN_ID: usize = 2;
const X_B3_PARENT_SPAN_ID: usize = 3;
const X_B3_SAMPLED: usize = 4;
const X_B3_FLAGS: usize = 5;
const TRACEPARENT: usize = 6;
const UBER_TRACE_ID: usize = 7;
const GRPC_TRACE_BIN: usize = 8;

/// The slot of a context-format header name (lower case), if it is one. Plain compare and
/// branch, no jump table: an ordinary name costs a length test and at most two word compares.
#[inline]
fn context_slot(n: &[u8]) -> Option<usize> {
    if n.len() < 10 {
        return (n == b"b3").then_some(B3);
    }
    if n.starts_with(b"x-b3-") {
        return match n.len() {
            10 => (n == b"x-b3-flags").then_some(X_B3_FLAGS),
            11 => (n == b"x-b3-spanid").then_some(X_B3_SPAN_ID),
            12 if n == b"x-b3-traceid" => Some(X_B3_TRACE_ID),
            12 if n == b"x-b3-sampled" => Some(X_B3_SAMPLED),
            17 => (n == b"x-b3-parentspanid").then_some(X_B3_PARENT_SPAN_ID),
            _ => None,
        };
    }
    if n == b"traceparent" {
        Some(TRACEPARENT)
    } else if n == b"uber-trace-id" {
        Some(UBER_TRACE_ID)
    } else if n == b"grpc-trace-bin" {
        Some(GRPC_TRACE_BIN)
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
                    Some(_) => h.traceparent_repeated |= i == TRACEPARENT,
                }
            }
        }
        h
    }

    #[inline]
    fn get(&self, slot: usize) -> Option<&'a [u8]> {
        self.slots[slot].map(HeaderValue::as_bytes)
    }

    /// `b3`.
    #[inline]
    pub(crate) fn b3(&self) -> Option<&'a [u8]> {
        self.get(B3)
    }

    /// The five `x-b3-*` headers.
    #[inline]
    pub(crate) fn b3_multi(&self) -> crate::codec::b3_multi::B3Headers<'a> {
        crate::codec::b3_multi::B3Headers {
            trace_id: self.get(X_B3_TRACE_ID),
            span_id: self.get(X_B3_SPAN_ID),
            parent_span_id: self.get(X_B3_PARENT_SPAN_ID),
            sampled: self.get(X_B3_SAMPLED),
            flags: self.get(X_B3_FLAGS),
        }
    }

    /// The first `traceparent` line, and whether more than one arrived.
    #[inline]
    pub(crate) fn traceparent(&self) -> Option<(&'a [u8], bool)> {
        self.get(TRACEPARENT)
            .map(|v| (v, self.traceparent_repeated))
    }

    /// `uber-trace-id`.
    #[inline]
    pub(crate) fn uber_trace_id(&self) -> Option<&'a [u8]> {
        self.get(UBER_TRACE_ID)
    }

    /// `grpc-trace-bin`.
    #[inline]
    pub(crate) fn grpc_trace_bin(&self) -> Option<&'a [u8]> {
        self.get(GRPC_TRACE_BIN)
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
