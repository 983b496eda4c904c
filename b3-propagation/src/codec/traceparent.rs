//! W3C `traceparent`: `{version}-{trace-id}-{parent-id}-{trace-flags}`.
//!
//! Rules (W3C Trace Context, its test suite):
//! - lower-case hex only; version `ff` forbidden; all-zero trace id or parent id invalid;
//! - version `00` is exactly 55 bytes: trailing data is invalid;
//! - a higher version is parsed at the version-00 positions, the flags followed by the end or
//!   `-`, the rest ignored, and re-emitted as version `00`;
//! - spaces and tabs around the value are tolerated; two `traceparent` field lines are invalid;
//! - flags keep bit 0 (sampled) and bit 1 (random trace id), the other bits are zeroed;
//!   sampled clear means [`Sampling::Deny`].
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::traceparent;
//! use b3_propagation::Sampling;
//!
//! let tp = traceparent::decode(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")?;
//! assert_eq!(tp.context.sampling(), Sampling::Accept);
//! assert_eq!(tp.version, 0);
//!
//! let mut buf = [0u8; traceparent::LEN];
//! assert_eq!(
//!     traceparent::encode_to(&tp.context, &mut buf),
//!     Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//! );
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use http::HeaderValue;

use crate::Format;
use crate::carrier::{Extractor, Injector};
use crate::context::{SpanContext, TraceFlags};
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;
use crate::id::{
    HexError, SpanId, TraceId, parse_hex_u64, parse_hex_u128, parse2, parse16, write_hex_u8,
    write_hex_u64,
};
use crate::sampling::Sampling;

/// The length of a version-00 value.
pub const LEN: usize = 55;

/// The longest value accepted (a future version may carry more fields).
pub const MAX_LEN: usize = 512;

const FORMAT: Format = Format::TraceParent;

/// A decoded `traceparent`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traceparent {
    /// The version received (re-emitted as `00`).
    pub version: u8,
    /// The context: trace id, span id (the W3C parent-id), sampling and random flag.
    pub context: SpanContext,
}

#[inline]
fn err(field: Option<Field>, kind: ErrorKind) -> ParseError {
    ParseError::new(FORMAT, field, kind)
}

#[inline]
fn trim_ows(mut v: &[u8]) -> (&[u8], usize) {
    let mut offset = 0;
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
        offset += 1;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    (v, offset)
}

/// Decode one `traceparent` value.
///
/// # Errors
///
/// A [`ParseError`] naming the field and rule (see the [module docs](self)). Never panics.
pub fn decode(value: &[u8]) -> Result<Traceparent, ParseError> {
    match decode_fast(value) {
        Some(context) => Ok(Traceparent {
            version: 0,
            context,
        }),
        None => decode_slow(value),
    }
}

/// A version-00 value of exactly [`LEN`] bytes, all well formed, by fixed positions (one
/// check of each byte); `None` sends anything else, every invalid value included, to the
/// general path, which also finds the exact error.
#[inline]
fn decode_fast(v: &[u8]) -> Option<SpanContext> {
    let v: &[u8; LEN] = v.try_into().ok()?;
    if v[..3] != *b"00-" || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let trace = (u128::from(parse16(&v[3..19])?) << 64) | u128::from(parse16(&v[19..35])?);
    let trace_id = TraceId::from_u128(trace)?;
    let span_id = SpanId::from_u64(parse16(&v[36..52])?)?;
    let flags = TraceFlags::new(parse2(v[53], v[54])?);
    Some(context(trace_id, span_id, flags))
}

#[inline]
fn context(trace_id: TraceId, span_id: SpanId, flags: TraceFlags) -> SpanContext {
    let sampling = if flags.contains(TraceFlags::SAMPLED) {
        Sampling::Accept
    } else {
        Sampling::Deny
    };
    SpanContext::new(trace_id, span_id)
        .with_sampling(sampling)
        .with_trace_flags(flags)
}

/// The general path: trimming, future versions and the exact error.
#[inline(never)]
fn decode_slow(value: &[u8]) -> Result<Traceparent, ParseError> {
    let (v, off) = trim_ows(value);
    if v.is_empty() {
        return Err(err(None, ErrorKind::Empty));
    }
    if v.len() > MAX_LEN {
        return Err(err(
            None,
            ErrorKind::TooLong {
                len: v.len(),
                max: MAX_LEN,
            },
        ));
    }
    // Version: two lower-hex digits followed by '-'.
    let version_end = v.iter().position(|&b| b == b'-').unwrap_or(v.len());
    if version_end != 2 {
        return Err(err(
            Some(Field::Version),
            ErrorKind::InvalidLength { len: version_end },
        ));
    }
    let version = parse_hex_u64(&v[..2]).map_err(|e| hex_err(e, Field::Version, off))? as u8;
    if version == 0xff {
        return Err(err(Some(Field::Version), ErrorKind::InvalidVersion));
    }
    if v.len() < LEN {
        return Err(err(None, ErrorKind::InvalidLength { len: v.len() }));
    }
    if version == 0 && v.len() != LEN {
        return Err(err(None, ErrorKind::TrailingData));
    }
    if version != 0 && v.len() > LEN && v[LEN] != b'-' {
        return Err(err(None, ErrorKind::TrailingData));
    }
    for (pos, field) in [(35, Field::TraceId), (52, Field::SpanId)] {
        if v[pos] != b'-' {
            // A field of the wrong length moves the separator.
            return Err(err(
                Some(field),
                ErrorKind::InvalidCharacter {
                    byte: v[pos],
                    index: pos + off,
                },
            ));
        }
    }
    let trace = parse_hex_u128(&v[3..35]).map_err(|e| hex_err(e, Field::TraceId, off + 3))?;
    let trace_id = TraceId::from_u128(trace).ok_or(err(Some(Field::TraceId), ErrorKind::ZeroId))?;
    let span = parse_hex_u64(&v[36..52]).map_err(|e| hex_err(e, Field::SpanId, off + 36))?;
    let span_id = SpanId::from_u64(span).ok_or(err(Some(Field::SpanId), ErrorKind::ZeroId))?;
    let flags =
        parse_hex_u64(&v[53..55]).map_err(|e| hex_err(e, Field::TraceFlags, off + 53))? as u8;
    Ok(Traceparent {
        version,
        context: context(trace_id, span_id, TraceFlags::new(flags)),
    })
}

fn hex_err(e: HexError, field: Field, offset: usize) -> ParseError {
    e.into_parse_error(FORMAT, field, offset)
}

/// Encode as version `00` into `buf`. `None` for a sampling-only context (W3C has no such
/// thing). Never allocates.
pub fn encode_to<'a>(cx: &SpanContext, buf: &'a mut [u8; LEN]) -> Option<&'a str> {
    write_bytes(cx, buf)?;
    std::str::from_utf8(buf).ok()
}

/// Write the header value into `buf` (`None`, and `buf` unspecified, for a sampling-only
/// context).
fn write_bytes(cx: &SpanContext, buf: &mut [u8; LEN]) -> Option<()> {
    let (trace_id, span_id) = (cx.trace_id()?, cx.span_id()?);
    buf[..3].copy_from_slice(b"00-");
    write_hex_u64(trace_id.high(), &mut buf[3..19]);
    write_hex_u64(trace_id.low(), &mut buf[19..35]);
    buf[35] = b'-';
    write_hex_u64(span_id.to_u64(), &mut buf[36..52]);
    buf[52] = b'-';
    write_hex_u8(cx.trace_flags().bits(), &mut buf[53..55]);
    Some(())
}

/// Encode as a header value (one allocation). `None` for a sampling-only context.
#[must_use]
pub fn encode(cx: &SpanContext) -> Option<HeaderValue> {
    let mut buf = [0u8; LEN];
    write_bytes(cx, &mut buf)?;
    // Hex digits and dashes: checked once, by the header value.
    HeaderValue::from_bytes(&buf).ok()
}

/// Read `traceparent`: `None` when absent; two field lines are an error.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<Traceparent, ParseError>> {
    let mut values = carrier.get_all_values(&header::TRACEPARENT);
    let first = values.next()?;
    Some(decode_first(first, values.next().is_some()))
}

/// Decode the first `traceparent` field line, or refuse the header when `repeated` (more
/// than one line arrived).
#[inline]
pub(crate) fn decode_first(first: &[u8], repeated: bool) -> Result<Traceparent, ParseError> {
    if repeated {
        return Err(err(None, ErrorKind::Duplicate));
    }
    decode(first)
}

/// [`decode_first`], the context only.
#[inline]
pub(crate) fn decode_first_context(
    first: &[u8],
    repeated: bool,
) -> Result<SpanContext, ParseError> {
    if repeated {
        return Err(err(None, ErrorKind::Duplicate));
    }
    match decode_fast(first) {
        Some(cx) => Ok(cx),
        None => decode_slow(first).map(|tp| tp.context),
    }
}

/// Write `traceparent` (removed for a sampling-only context).
pub fn inject<I: Injector + ?Sized>(cx: &SpanContext, carrier: &mut I) {
    match encode(cx) {
        Some(v) => carrier.set(&header::TRACEPARENT, v),
        None => carrier.remove(&header::TRACEPARENT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn future_version_extra_fields() {
        let tp = decode(b"cc-12345678901234567890123456789012-1234567890123456-01-what").unwrap();
        assert_eq!(tp.version, 0xcc);
        let e =
            decode(b"cc-12345678901234567890123456789012-1234567890123456-01.what").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TrailingData);
    }

    #[test]
    fn error_reasons() {
        let e = decode(b"ff-12345678901234567890123456789012-1234567890123456-01").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidVersion);
        let e = decode(b"00-12345678901234567890123456789012-1234567890123456-01.").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TrailingData);
        let e = decode(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidCharacter {
                byte: b'B',
                index: 4
            }
        );
        assert_eq!(e.field(), Some(Field::TraceId));
        let e = decode(b"00-12345678901234567890123456789012-0000000000000000-01").unwrap_err();
        assert_eq!(
            (e.field(), e.kind()),
            (Some(Field::SpanId), ErrorKind::ZeroId)
        );
        let e = decode(b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
    }

    #[test]
    fn random_flag_is_kept() {
        let tp = decode(b"00-12345678901234567890123456789012-1234567890123456-02").unwrap();
        let mut buf = [0; LEN];
        assert!(encode_to(&tp.context, &mut buf).unwrap().ends_with("-02"));
    }
}
