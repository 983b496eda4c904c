//! Jaeger `uber-trace-id`: `{trace-id}:{span-id}:{parent-span-id}:{flags}`.
//!
//! Policy (Jaeger's propagation format, <https://www.jaegertracing.io/docs/client-libraries/#propagation-format>, made strict where peers disagree): trace id 1..=32 and span id 1..=16 lower-hex characters, left-padded,
//! not all zero; the (deprecated) parent is not validated and not reported; flags are 1–2
//! lower-hex digits, bit 0 sampled, bit 1 debug. Sampled → accept (debug when the debug bit is
//! also set); not sampled → deny. A URL-encoded `%3A` separator is accepted when the value has
//! no `:`. The trace id is 64-bit when it has at most 16 characters. Inject writes
//! `{trace}:{span16}:0:{flags}` with flags `1` accept, `3` debug, `0` otherwise.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::jaeger;
//! use b3_propagation::Sampling;
//!
//! let cx = jaeger::decode(b"4d0000000000000016:17c29:0:1")?;
//! assert_eq!(cx.span_id().unwrap().to_string(), "0000000000017c29");
//! assert_eq!(
//!     jaeger::encode(&cx.with_sampling(Sampling::Debug)).unwrap(),
//!     "000000000000004d0000000000000016:0000000000017c29:0:3"
//! );
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use http::HeaderValue;

use crate::Format;
use crate::carrier::{Extractor, Injector};
use crate::context::SpanContext;
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;
use crate::id::{HexError, SpanId, TraceId, parse_hex_u64, parse_hex_u128};
use crate::sampling::Sampling;

/// The longest value accepted.
pub const MAX_LEN: usize = 256;

const FORMAT: Format = Format::Jaeger;

fn err(field: Option<Field>, kind: ErrorKind) -> ParseError {
    ParseError::new(FORMAT, field, kind)
}

/// Split on `:` (or on `%3A` / `%3a` when there is no `:`) into exactly four fields.
fn fields(v: &[u8]) -> Result<[&[u8]; 4], ParseError> {
    let mut out: [&[u8]; 4] = [&[]; 4];
    let mut n = 0;
    if v.contains(&b':') {
        for f in v.split(|&b| b == b':') {
            if n == 4 {
                return Err(err(None, ErrorKind::TooManyFields));
            }
            out[n] = f;
            n += 1;
        }
    } else {
        let mut rest = v;
        loop {
            let sep = rest
                .windows(3)
                .position(|w| w[0] == b'%' && w[1] == b'3' && (w[2] == b'A' || w[2] == b'a'));
            if n == 4 {
                return Err(err(None, ErrorKind::TooManyFields));
            }
            match sep {
                Some(i) => {
                    out[n] = &rest[..i];
                    rest = &rest[i + 3..];
                    n += 1;
                }
                None => {
                    out[n] = rest;
                    n += 1;
                    break;
                }
            }
        }
    }
    if n != 4 {
        return Err(err(None, ErrorKind::MissingField));
    }
    Ok(out)
}

/// Decode an `uber-trace-id` value.
///
/// # Errors
///
/// A [`ParseError`] naming the field and rule (see the [module docs](self)).
pub fn decode(value: &[u8]) -> Result<SpanContext, ParseError> {
    if value.is_empty() {
        return Err(err(None, ErrorKind::Empty));
    }
    if value.len() > MAX_LEN {
        return Err(err(
            None,
            ErrorKind::TooLong {
                len: value.len(),
                max: MAX_LEN,
            },
        ));
    }
    let [t, s, _parent, f] = fields(value)?;
    let hex = |e: HexError, field| e.into_parse_error(FORMAT, field, 0);
    let trace = parse_hex_u128(t).map_err(|e| hex(e, Field::TraceId))?;
    let trace_id = if t.len() <= 16 {
        TraceId::from_u64(trace as u64)
    } else {
        TraceId::from_u128(trace)
    }
    .ok_or(err(Some(Field::TraceId), ErrorKind::ZeroId))?;
    let span = parse_hex_u64(s).map_err(|e| hex(e, Field::SpanId))?;
    let span_id = SpanId::from_u64(span).ok_or(err(Some(Field::SpanId), ErrorKind::ZeroId))?;
    if f.is_empty() || f.len() > 2 {
        return Err(err(
            Some(Field::TraceFlags),
            ErrorKind::InvalidLength { len: f.len() },
        ));
    }
    let flags = parse_hex_u64(f).map_err(|e| hex(e, Field::TraceFlags))?;
    let sampling = match (flags & 1 == 1, flags & 2 == 2) {
        (true, true) => Sampling::Debug,
        (true, false) => Sampling::Accept,
        (false, _) => Sampling::Deny,
    };
    Ok(SpanContext::new(trace_id, span_id).with_sampling(sampling))
}

/// Encode: `None` for a sampling-only context.
#[must_use]
pub fn encode(cx: &SpanContext) -> Option<HeaderValue> {
    let t = cx.trace_id()?.to_hex();
    let s = cx.span_id()?.to_hex();
    let flags = match cx.sampling() {
        Sampling::Accept => b'1',
        Sampling::Debug => b'3',
        Sampling::Deny | Sampling::Deferred => b'0',
    };
    let mut buf = [0u8; 32 + 1 + 16 + 3 + 1];
    let tl = t.as_bytes().len();
    buf[..tl].copy_from_slice(t.as_bytes());
    buf[tl] = b':';
    buf[tl + 1..tl + 17].copy_from_slice(s.as_bytes());
    buf[tl + 17..tl + 20].copy_from_slice(b":0:");
    buf[tl + 20] = flags;
    HeaderValue::from_bytes(&buf[..tl + 21]).ok()
}

/// Read and decode `uber-trace-id`: `None` when absent.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<SpanContext, ParseError>> {
    carrier.get(&header::UBER_TRACE_ID).map(decode)
}

/// Write `uber-trace-id` (removed for a sampling-only context).
pub fn inject<I: Injector + ?Sized>(cx: &SpanContext, carrier: &mut I) {
    match encode(cx) {
        Some(v) => carrier.set(&header::UBER_TRACE_ID, v),
        None => carrier.remove(&header::UBER_TRACE_ID),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_errors() {
        assert_eq!(
            decode(b"1:2:3").unwrap_err().kind(),
            ErrorKind::MissingField
        );
        assert_eq!(
            decode(b"1:2:3:4:5").unwrap_err().kind(),
            ErrorKind::TooManyFields
        );
        assert_eq!(
            decode(b"1%3A2%3A0%3A1%3A5").unwrap_err().kind(),
            ErrorKind::TooManyFields
        );
        assert_eq!(
            decode(b"1:2:0:").unwrap_err().field(),
            Some(Field::TraceFlags)
        );
        assert_eq!(decode(b"1:2:0:1").unwrap().sampling(), Sampling::Accept);
    }
}
