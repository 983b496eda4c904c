//! `x-request-id`: the id Envoy uses to join access logs and to make a stable sampling
//! decision.
//!
//! Policy (Envoy's `x-request-id`,
//! <https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-request-id>;
//! the byte rules are this crate's): a valid id is 1..=255 bytes of visible ASCII (`0x21..=0x7e`). Control
//! characters, spaces, tabs, DEL, non-ASCII, empty and longer values are rejected (not
//! truncated) and treated as absent; the first value wins. Generated ids are lower-case
//! UUIDv4s from a fast thread-local generator — Envoy samples by the UUID and leaves a
//! non-UUID id untraced.
//!
//! Envoy packs a *trace reason* into the UUID version nibble (index 14): `9` sampling, `a`
//! service-forced, `b` client-forced. [`RequestId::trace_reason`] reads it,
//! [`RequestId::with_trace_reason`] writes it as Envoy's `setTraceReason` does, and
//! [`RequestId::stable_sampling_value`] is the value Envoy compares with its sampling
//! percentage.
//!
//! # Example
//!
//! ```
//! use b3_propagation::request_id::{RequestId, TraceReason};
//!
//! let id = RequestId::parse(b"4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43")?;
//! assert_eq!(id.trace_reason(), TraceReason::NotTraceable);
//! assert_eq!(id.stable_sampling_value(), Some(6751));
//! let sampled = id.with_trace_reason(TraceReason::Sampling);
//! assert_eq!(sampled.as_str(), "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43");
//!
//! assert!(RequestId::parse(b"abc def").is_err());
//! assert!(RequestId::generate().is_uuid());
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use std::fmt;

use http::HeaderValue;
use rand::Rng;

use crate::Format;
use crate::error::{ErrorKind, ParseError};
use crate::id::with_rng;

/// The longest id accepted.
pub const MAX_LEN: usize = 255;

/// Index of Envoy's trace-reason character (the UUID version nibble).
const TRACE_BYTE_POSITION: usize = 14;

const FORMAT: Format = Format::RequestId;

/// Why Envoy traces a request, as packed into the request id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TraceReason {
    /// No reason: `4` (a plain UUIDv4), anything else, or an id that is not 36 characters.
    NotTraceable,
    /// Random sampling chose it: `9`.
    Sampling,
    /// `x-envoy-force-trace` forced it: `a`.
    ServiceForced,
    /// `x-client-trace-id` forced it: `b`.
    ClientForced,
}

impl TraceReason {
    /// The name Envoy uses (`NotTraceable`, `Sampling`, `ServiceForced`, `ClientForced`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            TraceReason::NotTraceable => "NotTraceable",
            TraceReason::Sampling => "Sampling",
            TraceReason::ServiceForced => "ServiceForced",
            TraceReason::ClientForced => "ClientForced",
        }
    }

    const fn nibble(self) -> u8 {
        match self {
            TraceReason::NotTraceable => b'4',
            TraceReason::Sampling => b'9',
            TraceReason::ServiceForced => b'a',
            TraceReason::ClientForced => b'b',
        }
    }
}

impl fmt::Display for TraceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A validated request id. See the [module docs](self).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

/// Whether every byte is visible ASCII (`0x21..=0x7e`), eight bytes per step (SWAR).
#[inline]
fn all_visible(v: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut chunks = v.chunks_exact(8);
    let mut bad = 0u64;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_ne_bytes(word);
        // Per byte, for bytes below 0x80 (no carry crosses a byte then): x + 0x5f has its
        // high bit set iff x >= 0x21, and x + 0x01 iff x >= 0x7f. A byte of 0x80 or more is
        // bad by its own high bit (whatever the carries do to its neighbours).
        bad |= x | !x.wrapping_add(ONES * 0x5f) | x.wrapping_add(ONES);
    }
    bad & HIGH == 0
        && chunks
            .remainder()
            .iter()
            .all(|&b| b.wrapping_sub(0x21) < 0x5e)
}

/// Check the [policy](self) on raw bytes.
fn validate(v: &[u8]) -> Result<(), ParseError> {
    if v.is_empty() {
        return Err(ParseError::new(FORMAT, None, ErrorKind::Empty));
    }
    if v.len() > MAX_LEN {
        return Err(ParseError::new(
            FORMAT,
            None,
            ErrorKind::TooLong {
                len: v.len(),
                max: MAX_LEN,
            },
        ));
    }
    // The common case eight bytes at a time; locate the offending byte only on failure.
    if all_visible(v) {
        return Ok(());
    }
    if let Some(i) = v.iter().position(|&b| !(0x21..=0x7e).contains(&b)) {
        return Err(ParseError::new(
            FORMAT,
            None,
            ErrorKind::InvalidCharacter {
                byte: v[i],
                index: i,
            },
        ));
    }
    Ok(())
}

impl RequestId {
    /// Validate and copy an id.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] (format `x-request-id`) when the id breaks the [policy](self).
    pub fn parse(v: &[u8]) -> Result<Self, ParseError> {
        validate(v)?;
        HeaderValue::from_bytes(v)
            .map(RequestId)
            .map_err(|_| ParseError::new(FORMAT, None, ErrorKind::InvalidEncoding))
    }

    /// Validate a received header value, sharing its bytes (no copy, no allocation).
    ///
    /// # Errors
    ///
    /// As [`parse`](Self::parse).
    pub fn from_header_value(v: &HeaderValue) -> Result<Self, ParseError> {
        validate(v.as_bytes())?;
        Ok(RequestId(v.clone()))
    }

    /// Validate `raw`, then take the value from `shared` (a clone of the received
    /// `HeaderValue`) when it has one, so the bytes are not copied.
    pub(crate) fn parse_shared(
        raw: &[u8],
        shared: impl FnOnce() -> Option<HeaderValue>,
    ) -> Result<Self, ParseError> {
        validate(raw)?;
        match shared() {
            // The same bytes (the carrier's own value): no need to compare them.
            Some(v) if std::ptr::eq(v.as_bytes(), raw) || v.as_bytes() == raw => Ok(RequestId(v)),
            _ => Self::parse(raw),
        }
    }

    /// A new lower-case UUIDv4 (one allocation, no system call).
    #[must_use]
    pub fn generate() -> Self {
        let bytes: [u8; 16] = with_rng(|rng| rng.random());
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let s = uuid.hyphenated().encode_lower(&mut buf);
        RequestId(HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("-")))
    }

    /// The id.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Validated as visible ASCII, so this cannot fail.
        self.0.to_str().unwrap_or_default()
    }

    /// The id as a header value (clone it to send it: the bytes are shared).
    #[must_use]
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// Whether the id has the 8-4-4-4-12 hex shape of a UUID (any version, either case).
    #[must_use]
    pub fn is_uuid(&self) -> bool {
        let b = self.0.as_bytes();
        b.len() == 36
            && b.iter().enumerate().all(|(i, &c)| match i {
                8 | 13 | 18 | 23 => c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    }

    /// Envoy's trace reason (the character at index 14 of a 36-character id).
    #[must_use]
    pub fn trace_reason(&self) -> TraceReason {
        let b = self.0.as_bytes();
        if b.len() != 36 {
            return TraceReason::NotTraceable;
        }
        match b[TRACE_BYTE_POSITION] {
            b'9' => TraceReason::Sampling,
            b'a' => TraceReason::ServiceForced,
            b'b' => TraceReason::ClientForced,
            _ => TraceReason::NotTraceable,
        }
    }

    /// The id with `reason` packed in, as Envoy's `setTraceReason` (`pack_trace_reason`)
    /// does. Ids that are not 36 characters are returned unchanged.
    #[must_use]
    pub fn with_trace_reason(&self, reason: TraceReason) -> Self {
        let b = self.0.as_bytes();
        if b.len() != 36 || b[TRACE_BYTE_POSITION] == reason.nibble() {
            return self.clone();
        }
        let mut buf = [0u8; 36];
        buf.copy_from_slice(b);
        buf[TRACE_BYTE_POSITION] = reason.nibble();
        HeaderValue::from_bytes(&buf).map_or_else(|_| self.clone(), RequestId)
    }

    /// The first 8 characters read as hex (either case), modulo 10000: the value Envoy
    /// compares with `tracing.random_sampling`, so every proxy takes the same decision.
    /// `None` when there are fewer than 8 characters or they are not all hex digits.
    #[must_use]
    pub fn stable_sampling_value(&self) -> Option<u32> {
        let b = self.0.as_bytes().get(..8)?;
        let mut v: u64 = 0;
        for &c in b {
            let d = (c as char).to_digit(16)?;
            v = (v << 4) | u64::from(d);
        }
        u32::try_from(v % 10_000).ok()
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:?})", self.as_str())
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RequestId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The eight-at-a-time check says what the byte-by-byte one does, for every byte value
    /// at every position of a word and of the tail, next to any neighbour.
    #[test]
    fn all_visible_agrees_with_bytewise() {
        let naive = |v: &[u8]| v.iter().all(|b| (0x21..=0x7e).contains(b));
        for len in [1, 7, 8, 9, 16, 23, 36] {
            for at in 0..len {
                for b in 0..=255u8 {
                    for fill in [b'a', b'~', b'!', 0x7f, 0x80, 0xff, 0x20] {
                        let mut v = vec![fill; len];
                        v[at] = b;
                        assert_eq!(all_visible(&v), naive(&v), "{v:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn generated_ids_are_lowercase_uuid4() {
        for _ in 0..100 {
            let id = RequestId::generate();
            let s = id.as_str();
            assert!(id.is_uuid(), "{s}");
            assert_eq!(&s[14..15], "4");
            assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
            assert_eq!(s, s.to_ascii_lowercase());
        }
        assert_ne!(RequestId::generate(), RequestId::generate());
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(RequestId::parse(b"").unwrap_err().kind(), ErrorKind::Empty);
        assert_eq!(
            RequestId::parse(b"a\tb").unwrap_err().kind(),
            ErrorKind::InvalidCharacter {
                byte: b'\t',
                index: 1
            }
        );
        assert_eq!(
            RequestId::parse(&[b'a'; 256]).unwrap_err().kind(),
            ErrorKind::TooLong { len: 256, max: 255 }
        );
    }

    #[test]
    fn short_ids_keep_reason_unchanged() {
        let id = RequestId::parse(b"abc").unwrap();
        assert_eq!(id.with_trace_reason(TraceReason::Sampling), id);
        assert_eq!(id.stable_sampling_value(), None);
    }
}
