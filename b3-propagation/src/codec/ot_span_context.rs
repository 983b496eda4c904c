//! `x-ot-span-context`: the LightStep / OpenTracing binary carrier, base64-encoded.
//!
//! The propagator forwards this header **verbatim** and never interprets it. This module
//! decodes it for diagnostics (the `trace-headers` CLI) and can encode one for tests.
//!
//! Encoding (Envoy's OpenTracing driver, `source/extensions/tracers/common/ot`, with LightStep's
//! `lightstep_carrier.proto`): standard base64 (with padding) of the protobuf
//! `lightstep.BinaryCarrier { BasicTracerCarrier basic_ctx = 2 }`, where
//! `BasicTracerCarrier { fixed64 trace_id = 1; fixed64 span_id = 2; bool sampled = 3;
//! map<string, string> baggage_items = 4 }`. The trace id is 64-bit only, there is no parent;
//! sampled maps to accept, otherwise deny.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::ot_span_context;
//! use b3_propagation::Sampling;
//!
//! let ot = ot_span_context::decode(b"EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ==")?;
//! assert_eq!(ot.context.trace_id().unwrap().to_string(), "8448eb211c80319c");
//! assert_eq!(ot.context.sampling(), Sampling::Accept);
//! assert_eq!(ot_span_context::encode(&ot.context, &[]).unwrap(), "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ==");
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use http::HeaderValue;
use prost::Message;

use crate::Format;
use crate::baggage::{BaggageEntry, BaggageOrigin};
use crate::carrier::Extractor;
use crate::context::SpanContext;
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;
use crate::id::{SpanId, TraceId};
use crate::sampling::Sampling;

/// The longest header value decoded.
pub const MAX_LEN: usize = 8192;

const FORMAT: Format = Format::OtSpanContext;

/// Standard alphabet, padding optional on decode.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

#[derive(Clone, PartialEq, Message)]
struct BinaryCarrier {
    #[prost(bytes = "vec", repeated, tag = "1")]
    deprecated_text_ctx: Vec<Vec<u8>>,
    #[prost(message, optional, tag = "2")]
    basic_ctx: Option<BasicTracerCarrier>,
}

#[derive(Clone, PartialEq, Message)]
struct BasicTracerCarrier {
    #[prost(fixed64, tag = "1")]
    trace_id: u64,
    #[prost(fixed64, tag = "2")]
    span_id: u64,
    #[prost(bool, tag = "3")]
    sampled: bool,
    #[prost(btree_map = "string, string", tag = "4")]
    baggage_items: BTreeMap<String, String>,
}

/// A decoded `x-ot-span-context`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtSpanContext {
    /// The context: 64-bit trace id, span id, accept or deny.
    pub context: SpanContext,
    /// The baggage items (origin [`BaggageOrigin::OtSpanContext`]), sorted by key.
    pub baggage: Vec<BaggageEntry>,
}

/// Decode a header value.
///
/// # Errors
///
/// A [`ParseError`] when the value is not base64, not the protobuf above, or has zero ids.
pub fn decode(value: &[u8]) -> Result<OtSpanContext, ParseError> {
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
    let bytes = LENIENT
        .decode(value)
        .map_err(|_| ParseError::new(FORMAT, None, ErrorKind::InvalidBase64))?;
    let carrier = BinaryCarrier::decode(bytes.as_slice())
        .map_err(|_| ParseError::new(FORMAT, None, ErrorKind::InvalidEncoding))?;
    let Some(basic) = carrier.basic_ctx else {
        return Err(ParseError::new(FORMAT, None, ErrorKind::MissingField));
    };
    let trace_id = TraceId::from_u64(basic.trace_id).ok_or(ParseError::at(
        FORMAT,
        Field::TraceId,
        ErrorKind::ZeroId,
    ))?;
    let span_id = SpanId::from_u64(basic.span_id).ok_or(ParseError::at(
        FORMAT,
        Field::SpanId,
        ErrorKind::ZeroId,
    ))?;
    let sampling = if basic.sampled {
        Sampling::Accept
    } else {
        Sampling::Deny
    };
    Ok(OtSpanContext {
        context: SpanContext::new(trace_id, span_id).with_sampling(sampling),
        baggage: basic
            .baggage_items
            .into_iter()
            .map(|(key, value)| BaggageEntry {
                key,
                value,
                properties: Vec::new(),
                origin: BaggageOrigin::OtSpanContext,
            })
            .collect(),
    })
}

/// Encode a context (and baggage items) as Envoy's LightStep driver did: the low 64 bits of
/// the trace id, the span id, `sampled` for accept or debug. `None` for a sampling-only
/// context.
#[must_use]
pub fn encode(cx: &SpanContext, baggage: &[BaggageEntry]) -> Option<HeaderValue> {
    let carrier = BinaryCarrier {
        deprecated_text_ctx: Vec::new(),
        basic_ctx: Some(BasicTracerCarrier {
            trace_id: cx.trace_id()?.low(),
            span_id: cx.span_id()?.to_u64(),
            sampled: cx.sampling().is_sampled() == Some(true),
            baggage_items: baggage
                .iter()
                .map(|e| (e.key.clone(), e.value.clone()))
                .collect(),
        }),
    };
    HeaderValue::from_str(&STANDARD.encode(carrier.encode_to_vec())).ok()
}

/// Read and decode `x-ot-span-context` (diagnostics): `None` when absent.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> Option<Result<OtSpanContext, ParseError>> {
    carrier.get(&header::X_OT_SPAN_CONTEXT).map(decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_rejected_not_panicking() {
        assert!(decode(b"notvalidcontext").is_err());
        assert_eq!(
            decode(b"not base64!").unwrap_err().kind(),
            ErrorKind::InvalidBase64
        );
        assert_eq!(
            decode(b"AAAA").unwrap_err().kind(),
            ErrorKind::InvalidEncoding
        );
        assert_eq!(decode(b"").unwrap_err().kind(), ErrorKind::Empty);
        // a BinaryCarrier without basic_ctx
        assert_eq!(decode(b"CgA=").unwrap_err().kind(), ErrorKind::MissingField);
    }
}
