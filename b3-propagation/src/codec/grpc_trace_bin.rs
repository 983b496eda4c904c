//! `grpc-trace-bin`: the OpenCensus binary trace context, base64 in HTTP/2 metadata.
//!
//! The propagator forwards it **verbatim** by default; decoding it into the context is opt-in
//! (see [`Propagator`](crate::Propagator)). The `trace-headers` CLI always decodes it.
//!
//! Format (OpenCensus `encodings/BinaryEncoding.md`, <https://github.com/census-instrumentation/opencensus-specs>): version byte `0`, then optional fields
//! `0` trace id (16 bytes), `1` span id (8 bytes), `2` trace options (1 byte, bit 0 sampled).
//! Decoding stops at the first unknown field id. Padded and un-padded base64 are accepted;
//! un-padded is emitted. Trace options: bit 0 set → accept, clear → deny, absent → deferred.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::grpc_trace_bin;
//!
//! let cx = grpc_trace_bin::decode(b"AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE=")?;
//! assert_eq!(cx.trace_id().unwrap().to_string(), "4bf92f3577b34da6a3ce929d000e4736");
//! assert_eq!(grpc_trace_bin::encode(&cx).unwrap(), "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE");
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD_NO_PAD};
use http::HeaderValue;

use crate::Format;
use crate::carrier::{Extractor, Injector};
use crate::context::SpanContext;
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;
use crate::id::{SpanId, TraceId};
use crate::sampling::Sampling;

/// The longest header value decoded.
pub const MAX_LEN: usize = 256;

/// Length of a full encoding: version, 3 field ids, 16 + 8 + 1 bytes.
const FULL: usize = 29;

const FORMAT: Format = Format::GrpcTraceBin;

const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Whether `value` is base64 as gRPC reads `-bin` metadata: the standard alphabet, padding
/// optional. A `-bin` value that is not makes a gRPC peer fail the whole call, so it must never
/// be sent. Checked without allocating for values of up to 1 KiB decoded.
#[must_use]
pub fn is_base64(value: &[u8]) -> bool {
    let mut buf = [0u8; 1024];
    if base64::decoded_len_estimate(value.len()) <= buf.len() {
        LENIENT.decode_slice(value, &mut buf).is_ok()
    } else {
        LENIENT.decode(value).is_ok()
    }
}

fn err(field: Option<Field>, kind: ErrorKind) -> ParseError {
    ParseError::new(FORMAT, field, kind)
}

/// Decode a base64 header value.
///
/// # Errors
///
/// A [`ParseError`]: not base64, a version other than 0, a truncated field, a missing or
/// all-zero trace id or span id.
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
    let mut buf = [0u8; MAX_LEN];
    let n = LENIENT
        .decode_slice(value, &mut buf)
        .map_err(|_| err(None, ErrorKind::InvalidBase64))?;
    decode_bytes(&buf[..n])
}

/// Decode the binary form.
///
/// # Errors
///
/// As [`decode`].
pub fn decode_bytes(b: &[u8]) -> Result<SpanContext, ParseError> {
    let Some((&version, mut rest)) = b.split_first() else {
        return Err(err(None, ErrorKind::Empty));
    };
    if version != 0 {
        return Err(err(Some(Field::Version), ErrorKind::InvalidVersion));
    }
    let (mut trace, mut span, mut options) = (None, None, None);
    // Fields come in the order they were defined, each once (BinaryEncoding.md: decoding
    // reads them in that order and stops at the first field it does not expect); a field id
    // that does not follow the last one ends decoding like an unknown one, as OpenCensus's
    // decoders read it (they never take a repeated or earlier field).
    let mut last: Option<u8> = None;
    while let Some((&id, tail)) = rest.split_first() {
        if last.is_some_and(|l| id <= l) {
            break;
        }
        last = Some(id);
        let (field, len) = match id {
            0 => (Field::TraceId, 16),
            1 => (Field::SpanId, 8),
            2 => (Field::TraceFlags, 1),
            _ => break, // unknown field: stop, not an error
        };
        if tail.len() < len {
            return Err(err(Some(field), ErrorKind::Truncated));
        }
        let (value, tail) = tail.split_at(len);
        match id {
            0 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(value);
                trace = Some(TraceId::from_bytes(a).ok_or(err(Some(field), ErrorKind::ZeroId))?);
            }
            1 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(value);
                span = Some(SpanId::from_bytes(a).ok_or(err(Some(field), ErrorKind::ZeroId))?);
            }
            _ => options = Some(value[0]),
        }
        rest = tail;
    }
    let trace = trace.ok_or(err(Some(Field::TraceId), ErrorKind::MissingField))?;
    let span = span.ok_or(err(Some(Field::SpanId), ErrorKind::MissingField))?;
    let sampling = match options {
        Some(o) if o & 1 == 1 => Sampling::Accept,
        Some(_) => Sampling::Deny,
        None => Sampling::Deferred,
    };
    Ok(SpanContext::new(trace, span).with_sampling(sampling))
}

/// Encode as un-padded base64: version 0, trace id (a 64-bit id left-padded), span id, and
/// trace options (`1` accept or debug, `0` deny, omitted when deferred). `None` for a
/// sampling-only context.
#[must_use]
pub fn encode(cx: &SpanContext) -> Option<HeaderValue> {
    let mut b = [0u8; FULL];
    b[1] = 0;
    b[2..18].copy_from_slice(&cx.trace_id()?.to_bytes());
    b[18] = 1;
    b[19..27].copy_from_slice(&cx.span_id()?.to_bytes());
    let len = match cx.sampling().is_sampled() {
        Some(s) => {
            b[27] = 2;
            b[28] = u8::from(s);
            FULL
        }
        None => FULL - 2,
    };
    let mut out = [0u8; 40];
    let n = STANDARD_NO_PAD.encode_slice(&b[..len], &mut out).ok()?;
    HeaderValue::from_bytes(&out[..n]).ok()
}

/// Read and decode `grpc-trace-bin`: `None` when absent.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<SpanContext, ParseError>> {
    carrier.get(&header::GRPC_TRACE_BIN).map(decode)
}

/// Write `grpc-trace-bin` (removed for a sampling-only context).
pub fn inject<I: Injector + ?Sized>(cx: &SpanContext, carrier: &mut I) {
    match encode(cx) {
        Some(v) => carrier.set(&header::GRPC_TRACE_BIN, v),
        None => carrier.remove(&header::GRPC_TRACE_BIN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_errors() {
        assert_eq!(
            decode_bytes(&[1]).unwrap_err().kind(),
            ErrorKind::InvalidVersion
        );
        assert_eq!(
            decode_bytes(&[0, 0, 1, 2]).unwrap_err().kind(),
            ErrorKind::Truncated
        );
        assert_eq!(
            decode_bytes(&[0]).unwrap_err().kind(),
            ErrorKind::MissingField
        );
        assert_eq!(decode(b"!!").unwrap_err().kind(), ErrorKind::InvalidBase64);
    }

    /// Fields in their defined order, each once: a repeated or earlier field ends decoding
    /// (the first trace id stands; a span id before the trace id leaves the trace id missing).
    #[test]
    fn fields_come_in_order_once() {
        let t1 = [0x4b; 16];
        let t2 = [0x11; 16];
        let span = [0x34; 8];
        let mut repeated = vec![0, 0];
        repeated.extend_from_slice(&t1);
        repeated.push(1);
        repeated.extend_from_slice(&span);
        repeated.push(0);
        repeated.extend_from_slice(&t2);
        let cx = decode_bytes(&repeated).expect("the fields before the repeat");
        assert_eq!(cx.trace_id(), TraceId::from_bytes(t1));
        assert_eq!(cx.sampling(), Sampling::Deferred);

        let mut backwards = vec![0, 1];
        backwards.extend_from_slice(&span);
        backwards.push(0);
        backwards.extend_from_slice(&t1);
        let e = decode_bytes(&backwards).unwrap_err();
        assert_eq!(
            (e.kind(), e.field()),
            (ErrorKind::MissingField, Some(Field::TraceId))
        );
    }
}
