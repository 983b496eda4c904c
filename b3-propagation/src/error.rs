//! Typed, inspectable parse errors.
//!
//! Every codec returns [`ParseError`] when a header is present but malformed. The error says
//! which header ([`ParseError::format`]), which part of it ([`ParseError::field`]) and which
//! rule was broken ([`ParseError::kind`]); it is `Copy`, holds no heap data and is cheap to
//! create, so rejecting garbage never allocates.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::b3_single;
//! use b3_propagation::error::{ErrorKind, Field};
//! use b3_propagation::Format;
//!
//! let err = b3_single::decode(b"80f198ee56343ba864fe8b2a57d3eff7-E457B5A2E4D86BD1-1").unwrap_err();
//! assert_eq!(err.format(), Format::B3Single);
//! assert_eq!(err.field(), Some(Field::SpanId));
//! assert_eq!(err.kind(), ErrorKind::InvalidCharacter { byte: b'E', index: 33 });
//! assert_eq!(
//!     err.to_string(),
//!     "invalid b3 header: span id: invalid character 'E' at byte 33 (lower-case hex only)"
//! );
//! ```

use std::fmt;

use crate::Format;

/// Why a header was rejected. See the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParseError {
    format: Format,
    field: Option<Field>,
    kind: ErrorKind,
}

/// The part of a header that was wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// The trace id.
    TraceId,
    /// The span id (W3C: parent-id; the sender's span).
    SpanId,
    /// The parent span id (B3 only).
    ParentSpanId,
    /// The sampling state (`x-b3-sampled`, the third `b3` field).
    Sampling,
    /// The `traceparent` version.
    Version,
    /// The `traceparent` / Jaeger trace flags.
    TraceFlags,
    /// A list member (`tracestate`, `baggage`).
    Member,
    /// A list member's key.
    Key,
    /// A list member's value.
    Value,
}

impl Field {
    /// A short lowercase name, as used in messages.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::TraceId => "trace id",
            Field::SpanId => "span id",
            Field::ParentSpanId => "parent span id",
            Field::Sampling => "sampling state",
            Field::Version => "version",
            Field::TraceFlags => "trace flags",
            Field::Member => "list member",
            Field::Key => "key",
            Field::Value => "value",
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rule a header broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The header (or a required field) is present but empty. Absent is not empty.
    Empty,
    /// The value is longer than the format allows.
    TooLong {
        /// The length received, in bytes.
        len: usize,
        /// The largest length allowed.
        max: usize,
    },
    /// A field has the wrong number of characters.
    InvalidLength {
        /// The length received.
        len: usize,
    },
    /// A byte that the format does not allow (upper-case hex, a control character, ...).
    InvalidCharacter {
        /// The offending byte.
        byte: u8,
        /// Its position in the header value.
        index: usize,
    },
    /// An all-zero id, which every format reserves as invalid.
    ZeroId,
    /// A sampling or flags value outside the allowed set.
    InvalidSampling,
    /// A required field is missing (for example a B3 trace id without a span id).
    MissingField,
    /// More fields than the format has.
    TooManyFields,
    /// A version the format forbids (`traceparent` version `ff`).
    InvalidVersion,
    /// Data after the end of the value (`traceparent` version 00 longer than 55 bytes).
    TrailingData,
    /// The header appears more than once where the format forbids it.
    Duplicate,
    /// The value is not valid base64.
    InvalidBase64,
    /// A binary value ends in the middle of a field.
    Truncated,
    /// The binary value does not have the expected structure.
    InvalidEncoding,
    /// A list has more members than the format allows.
    TooManyMembers {
        /// The largest number of members allowed.
        max: usize,
    },
}

impl ErrorKind {
    /// A short, stable word for this kind, for logs, metric labels and JSON (`too_long`,
    /// `invalid_character`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Empty => "empty",
            ErrorKind::TooLong { .. } => "too_long",
            ErrorKind::InvalidLength { .. } => "invalid_length",
            ErrorKind::InvalidCharacter { .. } => "invalid_character",
            ErrorKind::ZeroId => "zero_id",
            ErrorKind::InvalidSampling => "invalid_sampling",
            ErrorKind::MissingField => "missing_field",
            ErrorKind::TooManyFields => "too_many_fields",
            ErrorKind::InvalidVersion => "invalid_version",
            ErrorKind::TrailingData => "trailing_data",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::InvalidBase64 => "invalid_base64",
            ErrorKind::Truncated => "truncated",
            ErrorKind::InvalidEncoding => "invalid_encoding",
            ErrorKind::TooManyMembers { .. } => "too_many_members",
        }
    }
}

impl ParseError {
    #[inline]
    pub(crate) const fn new(format: Format, field: Option<Field>, kind: ErrorKind) -> Self {
        ParseError {
            format,
            field,
            kind,
        }
    }

    #[inline]
    pub(crate) const fn at(format: Format, field: Field, kind: ErrorKind) -> Self {
        Self::new(format, Some(field), kind)
    }

    /// The header format that was rejected.
    #[must_use]
    pub const fn format(&self) -> Format {
        self.format
    }

    /// The part of the header that was wrong, when the error is about one field.
    #[must_use]
    pub const fn field(&self) -> Option<Field> {
        self.field
    }

    /// The rule that was broken.
    #[must_use]
    pub const fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} header: ", self.format.header_name())?;
        if let Some(field) = self.field {
            write!(f, "{field}: ")?;
        }
        match self.kind {
            ErrorKind::Empty => f.write_str("empty"),
            ErrorKind::TooLong { len, max } => {
                write!(f, "{len} bytes long, at most {max} allowed")
            }
            ErrorKind::InvalidLength { len } => write!(f, "wrong length ({len})"),
            ErrorKind::InvalidCharacter { byte, index } => {
                if byte.is_ascii_graphic() {
                    write!(f, "invalid character '{}' at byte {index}", byte as char)?;
                } else {
                    write!(f, "invalid byte 0x{byte:02x} at byte {index}")?;
                }
                // Only the hex fields: an upper-case letter in a key or a value is not a hex
                // digit in the wrong case.
                let hex_field = matches!(
                    self.field,
                    Some(
                        Field::TraceId
                            | Field::SpanId
                            | Field::ParentSpanId
                            | Field::Version
                            | Field::TraceFlags
                    )
                );
                if hex_field && byte.is_ascii_uppercase() && byte.is_ascii_hexdigit() {
                    f.write_str(" (lower-case hex only)")?;
                }
                Ok(())
            }
            ErrorKind::ZeroId => f.write_str("all zeros (invalid)"),
            ErrorKind::InvalidSampling => f.write_str("not an allowed value"),
            ErrorKind::MissingField => f.write_str("missing"),
            ErrorKind::TooManyFields => f.write_str("too many fields"),
            ErrorKind::InvalidVersion => f.write_str("forbidden version"),
            ErrorKind::TrailingData => f.write_str("unexpected data after the last field"),
            ErrorKind::Duplicate => f.write_str("sent more than once"),
            ErrorKind::InvalidBase64 => f.write_str("not valid base64"),
            ErrorKind::Truncated => f.write_str("truncated"),
            ErrorKind::InvalidEncoding => f.write_str("malformed binary encoding"),
            ErrorKind::TooManyMembers { max } => write!(f, "more than {max} members"),
        }
    }
}

impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_header_field_and_rule() {
        let e = ParseError::at(
            Format::B3Multi,
            Field::TraceId,
            ErrorKind::InvalidLength { len: 15 },
        );
        assert_eq!(
            e.to_string(),
            "invalid x-b3-* header: trace id: wrong length (15)"
        );
        let e = ParseError::new(
            Format::RequestId,
            None,
            ErrorKind::InvalidCharacter {
                byte: 0x01,
                index: 3,
            },
        );
        assert_eq!(
            e.to_string(),
            "invalid x-request-id header: invalid byte 0x01 at byte 3"
        );
        assert_eq!(e.kind().as_str(), "invalid_character");
    }

    /// The "lower-case hex only" hint is for the hex fields alone: an upper-case letter in a
    /// `tracestate` key or a baggage value is not a hex digit in the wrong case.
    #[test]
    fn the_hex_hint_is_for_hex_fields() {
        let upper = ErrorKind::InvalidCharacter {
            byte: b'F',
            index: 0,
        };
        let e = ParseError::at(Format::TraceParent, Field::TraceId, upper);
        assert!(e.to_string().ends_with("(lower-case hex only)"), "{e}");
        for (format, field) in [
            (Format::TraceState, Some(Field::Key)),
            (Format::Baggage, Some(Field::Value)),
            (Format::B3Single, Some(Field::Sampling)),
            (Format::RequestId, None),
        ] {
            let e = ParseError::new(format, field, upper);
            assert!(!e.to_string().contains("hex"), "{e}");
        }
    }
}
