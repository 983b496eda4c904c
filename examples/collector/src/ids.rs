//! Trace and span id validation and normalisation, plus the ingest error type.

use std::fmt;

use super::model::ZipkinSpan;

/// Why a payload, or a span in it, was refused. Nothing from a refused
/// payload is stored: ingestion is all or nothing per request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestError {
    /// The body could not be decoded (bad protobuf, bad JSON, wrong shape).
    Decode(String),
    /// A trace id is not 16 or 32 hex characters (8 or 16 bytes), or is all zero.
    InvalidTraceId(String),
    /// A span id is not 16 hex characters (8 bytes), or is all zero.
    InvalidSpanId(String),
    /// A parent span id is present but not 16 hex characters (8 bytes).
    InvalidParentId(String),
}

impl fmt::Display for IngestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Decode(reason) => write!(f, "cannot decode payload: {reason}"),
            Self::InvalidTraceId(id) => write!(
                f,
                "invalid trace id {id:?}: expected 16 or 32 hex characters, not all zero"
            ),
            Self::InvalidSpanId(id) => write!(
                f,
                "invalid span id {id:?}: expected 16 hex characters, not all zero"
            ),
            Self::InvalidParentId(id) => {
                write!(f, "invalid parent id {id:?}: expected 16 hex characters")
            }
        }
    }
}

impl std::error::Error for IngestError {}

/// Normalise a trace id so 64-bit and 128-bit ids of the same trace compare
/// equal: 16 or 32 hex characters (any case) become 32 lower-case hex
/// characters, a 16-character id being left-padded with zeros.
///
/// Returns `None` for anything else: wrong length, non-hex characters, or an
/// all-zero id.
///
/// ```
/// use collector::normalize_trace_id;
/// assert_eq!(
///     normalize_trace_id("463AC35C9F6413AD").as_deref(),
///     Some("0000000000000000463ac35c9f6413ad"),
/// );
/// assert_eq!(normalize_trace_id("0000000000000000"), None);
/// ```
pub fn normalize_trace_id(id: &str) -> Option<String> {
    if id.len() != 16 && id.len() != 32 {
        return None;
    }
    let lower = lower_hex_non_zero(id)?;
    if lower.len() == 16 {
        Some(format!("{lower:0>32}"))
    } else {
        Some(lower)
    }
}

/// A span id as 16 lower-case hex characters; `None` if malformed or all zero.
pub(crate) fn normalize_span_id(id: &str) -> Option<String> {
    if id.len() != 16 {
        return None;
    }
    lower_hex_non_zero(id)
}

fn lower_hex_non_zero(id: &str) -> Option<String> {
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.bytes().all(|b| b == b'0') {
        return None;
    }
    Some(id.to_ascii_lowercase())
}

/// Lower-case hex of raw id bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Validate and normalise the ids of a span received in Zipkin form.
///
/// A parent id that is all zeros means "no parent" (as Zipkin itself treats
/// it), and so does a parent id equal to the span's own (a cycle, which Zipkin
/// undoes the same way); any other malformed parent id is an error. In the
/// endpoints, as Zipkin reads them, an empty name or address is none, a port of 0
/// is no port, and an endpoint left with nothing is no endpoint.
pub(crate) fn normalize_span(mut span: ZipkinSpan) -> Result<ZipkinSpan, IngestError> {
    for slot in [&mut span.local_endpoint, &mut span.remote_endpoint] {
        if let Some(endpoint) = slot {
            for text in [
                &mut endpoint.service_name,
                &mut endpoint.ipv4,
                &mut endpoint.ipv6,
            ] {
                if text.as_deref() == Some("") {
                    *text = None;
                }
            }
            if endpoint.port == Some(0) {
                endpoint.port = None;
            }
        }
        if slot
            .as_ref()
            .is_some_and(|e| *e == crate::model::Endpoint::default())
        {
            *slot = None;
        }
    }
    span.trace_id = normalize_trace_id(&span.trace_id)
        .ok_or_else(|| IngestError::InvalidTraceId(span.trace_id.clone()))?;
    span.id =
        normalize_span_id(&span.id).ok_or_else(|| IngestError::InvalidSpanId(span.id.clone()))?;
    span.parent_id = match span.parent_id.take() {
        None => None,
        Some(p) if p.len() == 16 && p.bytes().all(|b| b == b'0') => None,
        Some(p) => Some(normalize_span_id(&p).ok_or(IngestError::InvalidParentId(p))?),
    };
    if span.parent_id.as_ref() == Some(&span.id) {
        span.parent_id = None;
    }
    Ok(span)
}
