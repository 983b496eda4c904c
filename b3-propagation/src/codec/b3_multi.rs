//! B3 multiple headers: `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid`, `x-b3-sampled`,
//! `x-b3-flags`.
//!
//! Extract follows the B3 spec and Brave's `B3Extractor`:
//! - first value wins when a header is repeated; absent is not empty;
//! - `x-b3-sampled`: `1` / `0` (legacy `true` / `false` accepted); any other value, empty
//!   included, drops the **whole** context;
//! - `x-b3-flags: 1` is debug and wins over `x-b3-sampled: 0`; other flag values are ignored;
//! - sampling without a trace id is a valid *sampling-only* context (kept, not dropped);
//! - a trace id needs a span id; a malformed parent invalidates the context; an all-zero
//!   parent is the same as none.
//!
//! Inject writes the trace id at its received width, the parent when there is one, and
//! `x-b3-flags: 1` *instead of* `x-b3-sampled` for debug; deferred writes neither.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::b3_multi;
//! use b3_propagation::{header, Sampling};
//! use http::{HeaderMap, HeaderValue};
//!
//! let mut headers = HeaderMap::new();
//! headers.insert(header::X_B3_SAMPLED, HeaderValue::from_static("0"));
//! let cx = b3_multi::extract(&headers).unwrap()?;
//! assert!(cx.is_sampling_only());
//! assert_eq!(cx.sampling(), Sampling::Deny);
//!
//! let mut out = HeaderMap::new();
//! b3_multi::inject(&cx, &mut out);
//! assert_eq!(out["x-b3-sampled"], "0");
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use http::HeaderValue;

use crate::Format;
use crate::carrier::{Extractor, Injector};
use crate::context::SpanContext;
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;
use crate::id::{SpanId, TraceId, parse16, write_hex_u64};
use crate::sampling::Sampling;

const FORMAT: Format = Format::B3Multi;

/// The raw values of the five B3 headers (first value of each), as read from a carrier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct B3Headers<'a> {
    /// `x-b3-traceid`.
    pub trace_id: Option<&'a [u8]>,
    /// `x-b3-spanid`.
    pub span_id: Option<&'a [u8]>,
    /// `x-b3-parentspanid`.
    pub parent_span_id: Option<&'a [u8]>,
    /// `x-b3-sampled`.
    pub sampled: Option<&'a [u8]>,
    /// `x-b3-flags`.
    pub flags: Option<&'a [u8]>,
}

impl<'a> B3Headers<'a> {
    /// Read the five headers from a carrier.
    pub fn read<E: Extractor + ?Sized>(carrier: &'a E) -> Self {
        B3Headers {
            trace_id: carrier.get(&header::X_B3_TRACE_ID),
            span_id: carrier.get(&header::X_B3_SPAN_ID),
            parent_span_id: carrier.get(&header::X_B3_PARENT_SPAN_ID),
            sampled: carrier.get(&header::X_B3_SAMPLED),
            flags: carrier.get(&header::X_B3_FLAGS),
        }
    }

    /// Whether none of the five headers is present.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.trace_id.is_none()
            && self.span_id.is_none()
            && self.parent_span_id.is_none()
            && self.sampled.is_none()
            && self.flags.is_none()
    }
}

/// Decode the five header values: `None` when no B3 header is present.
///
/// # Errors
///
/// `Some(Err(_))` with the field and rule when the headers are present but malformed.
pub fn decode(h: &B3Headers<'_>) -> Option<Result<SpanContext, ParseError>> {
    if h.is_empty() {
        return None;
    }
    // `x-b3-flags` alone with a value other than `1` "can be ignored": nothing is present.
    if h.trace_id.is_none()
        && h.span_id.is_none()
        && h.parent_span_id.is_none()
        && h.sampled.is_none()
        && h.flags != Some(b"1")
    {
        return None;
    }
    if let Some(cx) = decode_fast(h) {
        return Some(Ok(cx));
    }
    Some(decode_present(h))
}

/// The common, well-formed shapes (ids present, `x-b3-sampled` absent, `1` or `0`, no
/// `x-b3-flags`) in one pass; `None` sends anything else, every invalid value included, to
/// the general path, which also finds the exact error.
#[inline]
fn decode_fast(h: &B3Headers<'_>) -> Option<SpanContext> {
    if h.flags.is_some() {
        return None;
    }
    let sampling = match h.sampled {
        None => Sampling::Deferred,
        Some(b"1") => Sampling::Accept,
        Some(b"0") => Sampling::Deny,
        Some(_) => return None,
    };
    let t = h.trace_id?;
    let trace_id = match t.len() {
        16 => TraceId::from_u64(parse16(t)?)?,
        32 => TraceId::from_u128(
            (u128::from(parse16(&t[..16])?) << 64) | u128::from(parse16(&t[16..])?),
        )?,
        _ => return None,
    };
    let span_id = SpanId::from_u64(parse16(h.span_id?)?)?;
    // An all-zero parent is the same as none.
    let parent = match h.parent_span_id {
        None => None,
        Some(p) => SpanId::from_u64(parse16(p)?),
    };
    Some(
        SpanContext::new(trace_id, span_id)
            .with_parent(parent)
            .with_sampling(sampling),
    )
}

#[inline(never)]
fn decode_present(h: &B3Headers<'_>) -> Result<SpanContext, ParseError> {
    let sampled = match h.sampled {
        None => None,
        Some(b"1") => Some(true),
        Some(b"0") => Some(false),
        Some(v) if v.eq_ignore_ascii_case(b"true") => Some(true),
        Some(v) if v.eq_ignore_ascii_case(b"false") => Some(false),
        Some(b"") => return Err(ParseError::at(FORMAT, Field::Sampling, ErrorKind::Empty)),
        Some(_) => {
            return Err(ParseError::at(
                FORMAT,
                Field::Sampling,
                ErrorKind::InvalidSampling,
            ));
        }
    };
    let sampling = if h.flags == Some(b"1") {
        Sampling::Debug
    } else {
        match sampled {
            Some(true) => Sampling::Accept,
            Some(false) => Sampling::Deny,
            None => Sampling::Deferred,
        }
    };

    let Some(trace_id) = h.trace_id else {
        if sampling != Sampling::Deferred {
            return Ok(SpanContext::sampling_only(sampling));
        }
        // A span id or parent without a trace id (and no sampling state to keep).
        return Err(ParseError::at(
            FORMAT,
            Field::TraceId,
            ErrorKind::MissingField,
        ));
    };
    let trace_id = TraceId::parse_exact(trace_id, FORMAT, 0)?;
    let Some(span_id) = h.span_id else {
        return Err(ParseError::at(
            FORMAT,
            Field::SpanId,
            ErrorKind::MissingField,
        ));
    };
    let span_id = SpanId::parse_exact(span_id, FORMAT, Field::SpanId, 0)?;
    let parent = match h.parent_span_id {
        None | Some(b"0000000000000000") => None,
        Some(p) => Some(SpanId::parse_exact(p, FORMAT, Field::ParentSpanId, 0)?),
    };
    Ok(SpanContext::new(trace_id, span_id)
        .with_parent(parent)
        .with_sampling(sampling))
}

/// Read and decode the B3 headers of a carrier: `None` when none is present.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<SpanContext, ParseError>> {
    decode(&B3Headers::read(carrier))
}

/// Write the B3 headers for `cx`, removing the ones that must not be sent (a stale parent,
/// `x-b3-sampled` next to debug, ...). Allocates once: the ids are encoded into one buffer
/// that their header values share; sampling values are static.
pub fn inject<I: Injector + ?Sized>(cx: &SpanContext, carrier: &mut I) {
    let ids = cx.trace_id().zip(cx.span_id());
    let parent = cx.parent_span_id().filter(|_| ids.is_some());
    // Stale headers go first: on the usual fresh outgoing map (no headers yet) a removal
    // costs nothing, where after the sets it would hash each name.
    if ids.is_none() {
        carrier.remove(&header::X_B3_TRACE_ID);
        carrier.remove(&header::X_B3_SPAN_ID);
    }
    if parent.is_none() {
        carrier.remove(&header::X_B3_PARENT_SPAN_ID);
    }
    let sampling = cx.sampling();
    if sampling != Sampling::Debug {
        carrier.remove(&header::X_B3_FLAGS);
    }
    if !matches!(sampling, Sampling::Accept | Sampling::Deny) {
        carrier.remove(&header::X_B3_SAMPLED);
    }
    if let Some((trace_id, span_id)) = ids {
        // The ids are encoded into one buffer, shared by the header values (one allocation
        // per call, not one per id).
        let ids = Ids::encode(trace_id, span_id, parent);
        let bytes = bytes::Bytes::from_owner(ids.buf);
        let mut at = 0;
        for (name, len) in [
            (&header::X_B3_TRACE_ID, ids.lens[0]),
            (&header::X_B3_SPAN_ID, ids.lens[1]),
            (&header::X_B3_PARENT_SPAN_ID, ids.lens[2]),
        ] {
            if len > 0 {
                set_shared(carrier, name, bytes.slice(at..at + len));
            }
            at += len;
        }
    }
    match sampling {
        Sampling::Debug => carrier.set(&header::X_B3_FLAGS, HeaderValue::from_static("1")),
        Sampling::Accept => carrier.set(&header::X_B3_SAMPLED, HeaderValue::from_static("1")),
        Sampling::Deny => carrier.set(&header::X_B3_SAMPLED, HeaderValue::from_static("0")),
        Sampling::Deferred => {}
    }
}

/// The hex ids of one inject, back to back: trace id (16 or 32 digits), span id, parent span
/// id (16 or absent).
struct Ids {
    buf: [u8; 64],
    lens: [usize; 3],
}

impl Ids {
    /// The ids' hex digits written straight into the buffer: the trace id at 16 digits when
    /// it is a 64-bit one, else 32, then the span id, then the parent's, if any.
    fn encode(trace_id: TraceId, span_id: SpanId, parent: Option<SpanId>) -> Self {
        let mut buf = [0u8; 64];
        let trace_len = usize::from(trace_id.write_hex(&mut buf));
        write_hex_u64(span_id.to_u64(), &mut buf[trace_len..trace_len + 16]);
        let parent_len = match parent {
            Some(p) => {
                write_hex_u64(p.to_u64(), &mut buf[trace_len + 16..trace_len + 32]);
                16
            }
            None => 0,
        };
        Ids {
            buf,
            lens: [trace_len, 16, parent_len],
        }
    }
}

#[inline]
fn set_shared<I: Injector + ?Sized>(carrier: &mut I, name: &http::HeaderName, value: bytes::Bytes) {
    if let Ok(v) = HeaderValue::from_maybe_shared(value) {
        carrier.set(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h<'a>(
        t: Option<&'a str>,
        s: Option<&'a str>,
        p: Option<&'a str>,
        sm: Option<&'a str>,
        f: Option<&'a str>,
    ) -> B3Headers<'a> {
        B3Headers {
            trace_id: t.map(str::as_bytes),
            span_id: s.map(str::as_bytes),
            parent_span_id: p.map(str::as_bytes),
            sampled: sm.map(str::as_bytes),
            flags: f.map(str::as_bytes),
        }
    }

    const T: &str = "463ac35c9f6413ad48485a3953bb6124";
    const S: &str = "a2fb4a1d1a96d312";
    const P: &str = "0020000000000001";

    #[rustfmt::skip]
    #[test]
    fn invalid_reasons() {
        let cases = [
            (h(Some(T), None, None, Some("1"), None), Field::SpanId, ErrorKind::MissingField, "trace id without span id"),
            (h(None, Some(S), None, None, None), Field::TraceId, ErrorKind::MissingField, "span id without trace id"),
            (h(Some(T), Some(S), Some("-"), None, None), Field::ParentSpanId, ErrorKind::InvalidLength { len: 1 }, "malformed parent"),
            (h(Some(T), Some(S), Some(""), None, None), Field::ParentSpanId, ErrorKind::Empty, "empty parent"),
            (h(Some(T), Some(S), None, Some(""), None), Field::Sampling, ErrorKind::Empty, "empty sampled"),
            (h(Some(T), Some(S), None, Some("d"), None), Field::Sampling, ErrorKind::InvalidSampling, "d is single-header only"),
            (h(Some("0000000000000000"), Some(S), None, None, None), Field::TraceId, ErrorKind::ZeroId, "zero trace id"),
        ];
        for (headers, field, kind, why) in cases {
            let e = decode(&headers).unwrap().expect_err(why);
            assert_eq!((e.field(), e.kind()), (Some(field), kind), "{why}");
        }
    }

    #[test]
    fn ignorable_flags_alone_is_absent() {
        assert!(decode(&h(None, None, None, None, Some("0"))).is_none());
    }

    #[test]
    fn sampled_is_case_insensitive_for_words() {
        let cx = decode(&h(Some(T), Some(S), None, Some("True"), None))
            .unwrap()
            .unwrap();
        assert_eq!(cx.sampling(), Sampling::Accept);
    }

    #[test]
    fn inject_clears_stale_headers() {
        let mut map = http::HeaderMap::new();
        map.insert(
            header::X_B3_PARENT_SPAN_ID,
            HeaderValue::from_static("0020000000000001"),
        );
        map.insert(header::X_B3_SAMPLED, HeaderValue::from_static("1"));
        let cx = decode(&h(Some(T), Some(S), None, None, Some("1")))
            .unwrap()
            .unwrap();
        inject(&cx, &mut map);
        assert!(map.get(header::X_B3_PARENT_SPAN_ID).is_none());
        assert!(map.get(header::X_B3_SAMPLED).is_none());
        assert_eq!(map[header::X_B3_FLAGS], "1");
    }

    /// Whatever the carrier held, exactly the headers of the context remain (the stale ones
    /// are removed before the new ones are written, so the order cannot lose one).
    #[test]
    fn inject_leaves_exactly_the_context_headers() {
        let names = [
            header::X_B3_TRACE_ID,
            header::X_B3_SPAN_ID,
            header::X_B3_PARENT_SPAN_ID,
            header::X_B3_SAMPLED,
            header::X_B3_FLAGS,
        ];
        // (decoded from, the five headers left), in the order of `names`.
        type Headers<'a> = [Option<&'a str>; 5];
        let cases: [(&Headers<'_>, Headers<'_>); 6] = [
            (
                &[Some(T), Some(S), Some(P), Some("1"), None],
                [Some(T), Some(S), Some(P), Some("1"), None],
            ),
            (
                &[Some(T), Some(S), None, Some("0"), None],
                [Some(T), Some(S), None, Some("0"), None],
            ),
            (
                &[Some(T), Some(S), Some(P), None, Some("1")],
                [Some(T), Some(S), Some(P), None, Some("1")],
            ),
            (
                &[Some(T), Some(S), None, None, None],
                [Some(T), Some(S), None, None, None],
            ),
            // Sampling only: no ids (and so no parent) stay.
            (
                &[None, None, None, Some("1"), None],
                [None, None, None, Some("1"), None],
            ),
            (
                &[None, None, None, None, Some("1")],
                [None, None, None, None, Some("1")],
            ),
        ];
        for (input, want) in cases {
            let cx = decode(&h(input[0], input[1], input[2], input[3], input[4]))
                .unwrap()
                .unwrap();
            let mut map = http::HeaderMap::new();
            map.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("x/y"));
            for name in &names {
                map.insert(name.clone(), HeaderValue::from_static("stale"));
            }
            inject(&cx, &mut map);
            for (name, want) in names.iter().zip(want) {
                assert_eq!(
                    map.get(name).map(|v| v.to_str().unwrap()),
                    want,
                    "{name} for {input:?}"
                );
            }
            assert_eq!(map[http::header::CONTENT_TYPE], "x/y");
        }
    }
}
