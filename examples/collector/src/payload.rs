//! Request-body parsers for the ingestion routes, usable without a server.
//!
//! Each parser takes the raw body and returns the spans it carries, converted
//! to the collector's model and normalised exactly as they would be stored:
//! trace ids as 32 lower-case hex characters, span and parent ids as 16. A
//! body that does not decode, or that holds a single malformed id, yields a
//! [`PayloadError`] and no spans (ingestion is all or nothing).
//!
//! The HTTP handlers call these and answer 400 with the error's `Display`
//! text; the fuzz targets in `fuzz/` call them directly.

use std::fmt;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

use super::ids::{IngestError, normalize_span};
use super::model::ZipkinSpan;
use super::otlp::{Refused, convert};

/// How much memory the spans of an OTLP body may take once decoded, and once converted, per
/// byte of body (plus [`DECODED_SLACK`]): far above what real exporters send (a span of a
/// few hundred bytes becomes one of a kilobyte or so), far below what a request repeating a
/// huge service name for every span, or made of empty spans, would make.
pub const DECODED_PER_BODY_BYTE: usize = 16;

/// The allowance every OTLP body gets besides [`DECODED_PER_BODY_BYTE`], so that small
/// requests are never refused for their spans' fixed overhead.
pub const DECODED_SLACK: usize = 1 << 20;

/// The most an OTLP body of `len` bytes may take once decoded, and once converted.
fn decoded_budget(len: usize) -> usize {
    len.saturating_mul(DECODED_PER_BODY_BYTE)
        .saturating_add(DECODED_SLACK)
}

/// Why [`parse_otlp_protobuf`], [`parse_otlp_json`] or [`parse_zipkin_json`]
/// refused a request body. Nothing from a refused body is kept.
///
/// `Display` is the plain-text reason the collector answers with (status 400).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PayloadError {
    /// The body is not an OTLP `ExportTraceServiceRequest` in protobuf; the
    /// decoder's message.
    InvalidOtlpProtobuf(String),
    /// The body is not an OTLP `ExportTraceServiceRequest` in OTLP/JSON; the
    /// decoder's message.
    InvalidOtlpJson(String),
    /// The body is not a JSON array of Zipkin v2 spans; the decoder's message.
    InvalidZipkinJson(String),
    /// The body decoded, but a trace, span or parent id is malformed.
    Ids(IngestError),
    /// The spans of an OTLP body would take more than [`DECODED_PER_BODY_BYTE`] times its
    /// size (plus [`DECODED_SLACK`]) once decoded (as bounded from its bytes before decoding:
    /// an empty span is two bytes of protobuf and a struct of a few hundred) or once
    /// converted (the collector answers 413).
    TooLarge {
        /// The body's size.
        body_bytes: usize,
    },
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidOtlpProtobuf(reason) => write!(f, "invalid OTLP protobuf: {reason}"),
            Self::InvalidOtlpJson(reason) => write!(f, "invalid OTLP JSON: {reason}"),
            Self::InvalidZipkinJson(reason) => write!(f, "invalid Zipkin v2 JSON: {reason}"),
            Self::Ids(err) => err.fmt(f),
            Self::TooLarge { body_bytes } => write!(
                f,
                "the spans of this {body_bytes}-byte body would take more than {} bytes once \
                 decoded or converted (each span repeats its resource's service name): send \
                 smaller batches",
                decoded_budget(*body_bytes)
            ),
        }
    }
}

impl std::error::Error for PayloadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Ids(err) => Some(err),
            _ => None,
        }
    }
}

impl From<IngestError> for PayloadError {
    fn from(err: IngestError) -> Self {
        Self::Ids(err)
    }
}

/// Refuse a body whose decoding would allocate more than its budget (`decoded`, as
/// `crate::bound` counts it from the bytes), before it is decoded.
fn within_budget(decoded: usize, body_bytes: usize) -> Result<(), PayloadError> {
    if decoded > decoded_budget(body_bytes) {
        Err(PayloadError::TooLarge { body_bytes })
    } else {
        Ok(())
    }
}

/// Convert a decoded OTLP request from a body of `body_bytes`, within its budget.
fn from_request(
    request: &ExportTraceServiceRequest,
    body_bytes: usize,
) -> Result<Vec<ZipkinSpan>, PayloadError> {
    convert(request, decoded_budget(body_bytes)).map_err(|e| match e {
        Refused::Ids(e) => PayloadError::Ids(e),
        Refused::TooLarge => PayloadError::TooLarge { body_bytes },
    })
}

/// Parse an OTLP/HTTP protobuf body (`application/x-protobuf`): an
/// `ExportTraceServiceRequest`, converted with [`from_otlp`](crate::from_otlp).
///
/// # Errors
///
/// [`PayloadError::InvalidOtlpProtobuf`] when the bytes do not decode,
/// [`PayloadError::Ids`] when an id is malformed, [`PayloadError::TooLarge`] when decoding
/// or converting the spans would take more than the budget (bounded from the bytes before
/// decoding; a message written as a JSON array is refused so too).
pub fn parse_otlp_protobuf(body: &[u8]) -> Result<Vec<ZipkinSpan>, PayloadError> {
    within_budget(super::bound::otlp_protobuf(body), body.len())?;
    let request = ExportTraceServiceRequest::decode(body)
        .map_err(|e| PayloadError::InvalidOtlpProtobuf(e.to_string()))?;
    from_request(&request, body.len())
}

/// Parse an OTLP/JSON body (`application/json` on `/v1/traces`, hex ids): an
/// `ExportTraceServiceRequest`, converted with [`from_otlp`](crate::from_otlp).
///
/// # Errors
///
/// [`PayloadError::InvalidOtlpJson`] when the bytes do not decode,
/// [`PayloadError::Ids`] when an id is malformed, [`PayloadError::TooLarge`] when decoding
/// or converting the spans would take more than the budget (bounded from the bytes before
/// decoding; a message written as a JSON array is refused so too).
pub fn parse_otlp_json(body: &[u8]) -> Result<Vec<ZipkinSpan>, PayloadError> {
    within_budget(super::bound::otlp_json(body), body.len())?;
    let request = serde_json::from_slice::<ExportTraceServiceRequest>(body)
        .map_err(|e| PayloadError::InvalidOtlpJson(e.to_string()))?;
    from_request(&request, body.len())
}

/// Parse a Zipkin v2 JSON body (`/api/v2/spans`): an array of spans, whose
/// ids are then validated and normalised as [`Collector::ingest`] does.
///
/// [`Collector::ingest`]: super::Collector::ingest
///
/// # Example
///
/// ```
/// use collector::{PayloadError, parse_zipkin_json};
///
/// let body = br#"[{"traceId":"463AC35C9F6413AD","id":"a2fb4a1d1a96d312","name":"get"}]"#;
/// let spans = parse_zipkin_json(body)?;
/// assert_eq!(spans[0].trace_id, "0000000000000000463ac35c9f6413ad");
///
/// assert!(matches!(parse_zipkin_json(b"{}"), Err(PayloadError::InvalidZipkinJson(_))));
/// # Ok::<(), PayloadError>(())
/// ```
///
/// # Errors
///
/// [`PayloadError::InvalidZipkinJson`] when the bytes do not decode,
/// [`PayloadError::Ids`] when an id is malformed.
pub fn parse_zipkin_json(body: &[u8]) -> Result<Vec<ZipkinSpan>, PayloadError> {
    let spans = serde_json::from_slice::<Vec<ZipkinSpan>>(body)
        .map_err(|e| PayloadError::InvalidZipkinJson(e.to_string()))?;
    Ok(spans
        .into_iter()
        .map(normalize_span)
        .collect::<Result<Vec<_>, _>>()?)
}
