//! B3 single header: `b3: {TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`.
//!
//! Rules (openzipkin/b3-propagation, Brave `B3SingleFormat`):
//! - trace id 16 or 32 lower-hex characters, span id and parent 16, sampling `1`, `0` or `d`;
//! - sampling-only forms `b3: 0`, `b3: 1`, `b3: d`; no sampling field = deferred;
//! - empty fields, more than 4 fields, more than 68 bytes, zero ids: invalid;
//! - an all-zero parent is the same as no parent;
//! - `{t}-{s}-{p}` (third field 16 characters) is accepted as a parent with deferred sampling
//!   (Brave); on inject, deferred sampling drops the parent so Envoy and OTel can read it.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::b3_single;
//! use b3_propagation::Sampling;
//!
//! let cx = b3_single::decode(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d")?;
//! assert_eq!(cx.sampling(), Sampling::Debug);
//!
//! let mut buf = [0u8; b3_single::MAX_LEN];
//! assert_eq!(b3_single::encode_to(&cx, &mut buf), "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-d");
//!
//! // `b3: 0` is a valid, sampling-only context: the deny decision is kept.
//! assert!(b3_single::decode(b"0")?.is_sampling_only());
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use http::HeaderValue;

use crate::Format;
use crate::carrier::{Extractor, Injector};
use crate::context::SpanContext;
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;
use crate::id::{SpanId, TraceId, parse16};
use crate::sampling::Sampling;

/// The longest valid value: `32 + 1 + 16 + 3 + 16` bytes.
pub const MAX_LEN: usize = 68;

const FORMAT: Format = Format::B3Single;

#[inline]
fn err(field: Field, kind: ErrorKind) -> ParseError {
    ParseError::at(FORMAT, field, kind)
}

#[inline]
fn sampling_char(b: &[u8]) -> Option<Sampling> {
    match b {
        b"1" => Some(Sampling::Accept),
        b"0" => Some(Sampling::Deny),
        b"d" => Some(Sampling::Debug),
        _ => None,
    }
}

/// Decode a `b3` header value.
///
/// # Errors
///
/// A [`ParseError`] naming the field and rule, for every malformed value (see the
/// [module docs](self)). Never panics.
pub fn decode(value: &[u8]) -> Result<SpanContext, ParseError> {
    if value.is_empty() {
        return Err(ParseError::new(FORMAT, None, ErrorKind::Empty));
    }
    if value.len() > MAX_LEN {
        return Err(ParseError::new(
            FORMAT,
            None,
            ErrorKind::TooLong {
                len: value.len(),
                max: MAX_LEN,
            },
        ));
    }
    if value.len() == 1 {
        return sampling_char(value)
            .map(SpanContext::sampling_only)
            .ok_or(err(Field::Sampling, ErrorKind::InvalidSampling));
    }

    if let Some(cx) = decode_fast(value) {
        return Ok(cx);
    }
    // Fields are found by position: no iterator state, no allocation.
    let dash = |s: &[u8]| s.iter().position(|&b| b == b'-');
    let Some(t_end) = dash(value) else {
        TraceId::parse_exact(value, FORMAT, 0)?;
        return Err(err(Field::SpanId, ErrorKind::MissingField));
    };
    let trace_id = TraceId::parse_exact(&value[..t_end], FORMAT, 0)?;
    let s_start = t_end + 1;
    let rest = &value[s_start..];
    let s_end = dash(rest).unwrap_or(rest.len());
    let span_id = SpanId::parse_exact(&rest[..s_end], FORMAT, Field::SpanId, s_start)?;
    let mut cx = SpanContext::new(trace_id, span_id);
    if s_end == rest.len() {
        return Ok(cx);
    }
    let f3_start = s_start + s_end + 1;
    let rest = &value[f3_start..];
    let f3_end = dash(rest).unwrap_or(rest.len());
    let f3 = &rest[..f3_end];
    if f3_end == rest.len() && f3.len() == 16 {
        // Brave: `{t}-{s}-{p}` is a parent with deferred sampling.
        return Ok(cx.with_parent(parse_parent(f3, f3_start)?));
    }
    let sampling = match sampling_char(f3) {
        Some(s) => s,
        None if f3.is_empty() => return Err(err(Field::Sampling, ErrorKind::Empty)),
        None => return Err(err(Field::Sampling, ErrorKind::InvalidSampling)),
    };
    cx = cx.with_sampling(sampling);
    if f3_end == rest.len() {
        return Ok(cx);
    }
    let p_start = f3_start + f3_end + 1;
    let parent = &value[p_start..];
    if dash(parent).is_some() {
        return Err(ParseError::new(FORMAT, None, ErrorKind::TooManyFields));
    }
    Ok(cx.with_parent(parse_parent(parent, p_start)?))
}

/// The common, well-formed shapes by fixed positions; `None` sends anything else (including
/// every invalid value) to the general path, which also finds the exact error.
#[inline]
fn decode_fast(v: &[u8]) -> Option<SpanContext> {
    let t = match (v.get(16), v.get(32)) {
        (Some(b'-'), _) => 16,
        (_, Some(b'-')) => 32,
        _ => return None,
    };
    let trace_id = if t == 16 {
        TraceId::from_u64(parse16(&v[..16])?)?
    } else {
        TraceId::from_u128(
            (u128::from(parse16(&v[..16])?) << 64) | u128::from(parse16(&v[16..32])?),
        )?
    };
    let span_id = SpanId::from_u64(parse16(v.get(t + 1..t + 17)?)?)?;
    let cx = SpanContext::new(trace_id, span_id);
    match v.len() - t {
        17 => Some(cx),
        19 if v[t + 17] == b'-' => Some(cx.with_sampling(sampling_char(&v[t + 18..])?)),
        36 if v[t + 17] == b'-' && v[t + 19] == b'-' => {
            let sampling = sampling_char(&v[t + 18..t + 19])?;
            let parent = SpanId::from_u64(parse16(&v[t + 20..])?);
            Some(cx.with_sampling(sampling).with_parent(parent))
        }
        _ => None,
    }
}

#[inline]
fn parse_parent(s: &[u8], offset: usize) -> Result<Option<SpanId>, ParseError> {
    if s == b"0000000000000000" {
        return Ok(None);
    }
    SpanId::parse_exact(s, FORMAT, Field::ParentSpanId, offset).map(Some)
}

/// Encode into `buf` and return the value as a string slice. Never allocates.
pub fn encode_to<'a>(cx: &SpanContext, buf: &'a mut [u8; MAX_LEN]) -> &'a str {
    let len = encode_bytes(cx, buf);
    std::str::from_utf8(&buf[..len]).unwrap_or_default()
}

fn encode_bytes(cx: &SpanContext, buf: &mut [u8; MAX_LEN]) -> usize {
    let sampling = match cx.sampling() {
        Sampling::Accept => Some(b'1'),
        Sampling::Deny => Some(b'0'),
        Sampling::Debug => Some(b'd'),
        Sampling::Deferred => None,
    };
    let (Some(trace_id), Some(span_id)) = (cx.trace_id(), cx.span_id()) else {
        return match sampling {
            Some(c) => {
                buf[0] = c;
                1
            }
            None => 0,
        };
    };
    let t = trace_id.to_hex();
    let t = t.as_bytes();
    let mut n = t.len();
    buf[..n].copy_from_slice(t);
    buf[n] = b'-';
    n += 1;
    buf[n..n + 16].copy_from_slice(span_id.to_hex().as_bytes());
    n += 16;
    if let Some(c) = sampling {
        buf[n] = b'-';
        buf[n + 1] = c;
        n += 2;
        if let Some(parent) = cx.parent_span_id() {
            buf[n] = b'-';
            buf[n + 1..n + 17].copy_from_slice(parent.to_hex().as_bytes());
            n += 17;
        }
    }
    n
}

/// Encode as a header value: static for sampling-only contexts, one allocation otherwise.
/// `None` for a sampling-only context with deferred sampling (nothing to say).
#[must_use]
pub fn encode(cx: &SpanContext) -> Option<HeaderValue> {
    if cx.is_sampling_only() {
        return match cx.sampling() {
            Sampling::Accept => Some(HeaderValue::from_static("1")),
            Sampling::Deny => Some(HeaderValue::from_static("0")),
            Sampling::Debug => Some(HeaderValue::from_static("d")),
            Sampling::Deferred => None,
        };
    }
    let mut buf = [0u8; MAX_LEN];
    let len = encode_bytes(cx, &mut buf);
    HeaderValue::from_bytes(&buf[..len]).ok()
}

/// Read the `b3` header: `None` when absent, else its decoded value (first value wins).
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<SpanContext, ParseError>> {
    carrier.get(&header::B3).map(decode)
}

/// Write the `b3` header (or remove it when there is nothing to say).
pub fn inject<I: Injector + ?Sized>(cx: &SpanContext, carrier: &mut I) {
    match encode(cx) {
        Some(v) => carrier.set(&header::B3, v),
        None => carrier.remove(&header::B3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[rustfmt::skip]
    fn invalid_data() -> Vec<(&'static str, Option<Field>, ErrorKind)> {
        vec![
            ("", None, ErrorKind::Empty),
            ("2", Some(Field::Sampling), ErrorKind::InvalidSampling),
            ("true", Some(Field::TraceId), ErrorKind::InvalidLength { len: 4 }),
            ("80f198ee56343ba864fe8b2a57d3eff7", Some(Field::SpanId), ErrorKind::MissingField),
            ("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1--05e3ac9a4f6e3b90", Some(Field::Sampling), ErrorKind::Empty),
            ("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-", Some(Field::ParentSpanId), ErrorKind::Empty),
            ("64fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90-1", None, ErrorKind::TooManyFields),
            ("80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-true", Some(Field::Sampling), ErrorKind::InvalidSampling),
            ("80f198ee56343ba864fe8b2a57d3eff7-E457B5A2E4D86BD1-1", Some(Field::SpanId), ErrorKind::InvalidCharacter { byte: b'E', index: 33 }),
            ("80f198ee56343ba864fe8b2a57d3eff7-0000000000000000-1", Some(Field::SpanId), ErrorKind::ZeroId),
            ("--", Some(Field::TraceId), ErrorKind::Empty),
        ]
    }

    #[test]
    fn invalid_values_have_exact_reasons() {
        for (input, field, kind) in invalid_data() {
            let e = decode(input.as_bytes()).expect_err(input);
            assert_eq!((e.field(), e.kind()), (field, kind), "{input}");
            assert_eq!(e.format(), Format::B3Single);
        }
    }

    #[test]
    fn three_fields_with_parent_is_deferred_with_parent() {
        let cx =
            decode(b"80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-05e3ac9a4f6e3b90").unwrap();
        assert_eq!(cx.sampling(), Sampling::Deferred);
        assert_eq!(cx.parent_span_id().unwrap().to_string(), "05e3ac9a4f6e3b90");
        // and it is re-emitted without the parent
        let mut buf = [0; MAX_LEN];
        assert_eq!(
            encode_to(&cx, &mut buf),
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1"
        );
    }

    #[test]
    fn encode_sampling_only_is_static() {
        assert_eq!(
            encode(&SpanContext::sampling_only(Sampling::Deny)).unwrap(),
            "0"
        );
        assert!(encode(&SpanContext::sampling_only(Sampling::Deferred)).is_none());
    }
}
