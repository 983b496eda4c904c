//! Trace and span ids: parse and format lower-case hex without allocating.
//!
//! A [`TraceId`] is 128 bits and remembers whether it arrived as 64 bits (16 hex characters), so
//! it is re-emitted at the width it was received: a Zipkin / Envoy peer that sent
//! `48485a3953bb6124` gets `48485a3953bb6124` back, not `000000000000000048485a3953bb6124`.
//! A [`SpanId`] is 64 bits. Neither can be zero.
//!
//! # Example
//!
//! ```
//! use b3_propagation::{SpanId, TraceId};
//!
//! let short: TraceId = "48485a3953bb6124".parse()?;
//! assert!(short.is_64bit());
//! assert_eq!(short.to_string(), "48485a3953bb6124");
//! assert_eq!(short.to_hex32().as_str(), "000000000000000048485a3953bb6124");
//!
//! let long: TraceId = "000000000000000048485a3953bb6124".parse()?;
//! assert!(!long.is_64bit());
//! assert_eq!(short, long); // same id, different width
//!
//! assert!("48485A3953BB6124".parse::<TraceId>().is_err()); // lower-case only
//! assert!("0000000000000000".parse::<SpanId>().is_err()); // never zero
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::num::{NonZeroU64, NonZeroU128};
use std::str::FromStr;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::Format;
use crate::error::{ErrorKind, Field, ParseError};

/// Marks a byte that is not a lower-case hex digit in [`HEX_LOWER`].
const NOT_HEX: u8 = 0xff;

/// Lower-case hex digit values; every other byte maps to [`NOT_HEX`].
static HEX_LOWER: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Why a hex field failed, before the caller attaches the format and field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HexError {
    Length(usize),
    Char(u8, usize),
    Zero,
}

impl HexError {
    pub(crate) const fn into_parse_error(
        self,
        format: Format,
        field: Field,
        offset: usize,
    ) -> ParseError {
        let kind = match self {
            HexError::Length(len) => {
                if len == 0 {
                    ErrorKind::Empty
                } else {
                    ErrorKind::InvalidLength { len }
                }
            }
            HexError::Char(byte, index) => ErrorKind::InvalidCharacter {
                byte,
                index: index + offset,
            },
            HexError::Zero => ErrorKind::ZeroId,
        };
        ParseError::at(format, field, kind)
    }
}

/// Parse exactly 16 lower-case hex digits, `None` otherwise: the fast path of the codecs
/// (errors are then located by the byte-at-a-time parser). The check and the digit values
/// are branch-free per byte, so the compiler does all 16 bytes at once (SSE2 on x86-64);
/// the 16 nibbles are then packed into a `u64` with shifts and masks (SWAR).
#[inline]
pub(crate) fn parse16(s: &[u8]) -> Option<u64> {
    let s: &[u8; 16] = s.try_into().ok()?;
    let mut nibbles = [0u8; 16];
    let mut bad = 0u8;
    for i in 0..16 {
        let digit = s[i].wrapping_sub(b'0');
        let letter = s[i].wrapping_sub(b'a');
        let is_digit = digit < 10;
        bad |= u8::from(!(is_digit | (letter < 6)));
        nibbles[i] = if is_digit {
            digit
        } else {
            letter.wrapping_add(10)
        };
    }
    if bad != 0 {
        return None;
    }
    // Big-endian: the first digit is the most significant nibble.
    let v = u128::from_be_bytes(nibbles);
    let v = ((v >> 4) | v) & 0x00ff_00ff_00ff_00ff_00ff_00ff_00ff_00ff;
    let v = ((v >> 8) | v) & 0x0000_ffff_0000_ffff_0000_ffff_0000_ffff;
    let v = ((v >> 16) | v) & 0x0000_0000_ffff_ffff_0000_0000_ffff_ffff;
    Some((((v >> 64) as u64) << 32) | (v as u64 & 0xffff_ffff))
}

/// Parse exactly 2 lower-case hex digits (a version or flags byte), `None` otherwise.
#[inline]
pub(crate) fn parse2(hi: u8, lo: u8) -> Option<u8> {
    let (hi, lo) = (HEX_LOWER[usize::from(hi)], HEX_LOWER[usize::from(lo)]);
    // Digits are below 16; `NOT_HEX` is not.
    ((hi | lo) < 16).then_some((hi << 4) | lo)
}

/// Parse 1..=16 lower-case hex digits.
#[inline]
pub(crate) fn parse_hex_u64(s: &[u8]) -> Result<u64, HexError> {
    match parse16(s) {
        Some(v) => Ok(v),
        None => parse_hex_u64_slow(s),
    }
}

/// Byte-at-a-time parse, which also finds the first offending byte.
fn parse_hex_u64_slow(s: &[u8]) -> Result<u64, HexError> {
    if s.is_empty() || s.len() > 16 {
        return Err(HexError::Length(s.len()));
    }
    let mut v: u64 = 0;
    for (i, &b) in s.iter().enumerate() {
        let d = HEX_LOWER[b as usize];
        if d == NOT_HEX {
            return Err(HexError::Char(b, i));
        }
        v = (v << 4) | u64::from(d);
    }
    Ok(v)
}

/// Parse 1..=32 lower-case hex digits.
#[inline]
pub(crate) fn parse_hex_u128(s: &[u8]) -> Result<u128, HexError> {
    if s.len() <= 16 {
        return parse_hex_u64(s).map(u128::from);
    }
    if s.len() > 32 {
        return Err(HexError::Length(s.len()));
    }
    let split = s.len() - 16;
    let high = parse_hex_u64(&s[..split])?;
    let low = parse_hex_u64(&s[split..]).map_err(|e| match e {
        HexError::Char(b, i) => HexError::Char(b, i + split),
        other => other,
    })?;
    Ok((u128::from(high) << 64) | u128::from(low))
}

/// The two lower-case hex digits of every byte.
static HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX_DIGITS[i >> 4], HEX_DIGITS[i & 0xf]];
        i += 1;
    }
    t
};

/// Write `v` as 16 lower-case hex digits: the two digits of each byte from a table, eight
/// independent loads and stores (no carry chain through the value).
#[inline]
pub(crate) fn write_hex_u64(v: u64, out: &mut [u8]) {
    for (pair, byte) in out[..16].chunks_exact_mut(2).zip(v.to_be_bytes()) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(byte)]);
    }
}

/// Write one byte as two lower-case hex digits.
#[inline]
pub(crate) fn write_hex_u8(v: u8, out: &mut [u8]) {
    out[..2].copy_from_slice(&HEX_PAIRS[usize::from(v)]);
}

/// A fixed-size, stack-allocated hex string, as returned by the `to_hex*` methods.
#[derive(Clone, Copy)]
pub struct HexBuf<const N: usize> {
    buf: [u8; N],
    len: u8,
}

impl<const N: usize> HexBuf<N> {
    /// The hex digits.
    #[must_use]
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written, so this cannot fail; fall back to "" rather
        // than panicking if that invariant were ever broken.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }

    /// The hex digits as bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl<const N: usize> fmt::Debug for HexBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for HexBuf<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> AsRef<str> for HexBuf<N> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A 128-bit trace id that remembers if it was received as 64 bits. See the [module docs](self).
///
/// Equality and hashing compare the numeric value only, so a 64-bit id and the same id
/// zero-padded to 128 bits are the same trace (as Envoy and Zipkin treat them).
#[derive(Clone, Copy)]
pub struct TraceId {
    value: NonZeroU128,
    is_64bit: bool,
}

impl TraceId {
    /// A 128-bit trace id, or `None` for zero.
    #[must_use]
    pub const fn from_u128(value: u128) -> Option<Self> {
        match NonZeroU128::new(value) {
            Some(value) => Some(TraceId {
                value,
                is_64bit: false,
            }),
            None => None,
        }
    }

    /// A 64-bit trace id (emitted as 16 hex characters), or `None` for zero.
    #[must_use]
    pub const fn from_u64(value: u64) -> Option<Self> {
        match NonZeroU128::new(value as u128) {
            Some(value) => Some(TraceId {
                value,
                is_64bit: true,
            }),
            None => None,
        }
    }

    /// A 128-bit trace id from its big-endian bytes, or `None` for zero.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Option<Self> {
        Self::from_u128(u128::from_be_bytes(bytes))
    }

    /// A new random 128-bit id (never zero), from a fast thread-local generator.
    #[must_use]
    pub fn random() -> Self {
        Self::random_of_width(false)
    }

    /// A new random 64-bit id (never zero; Envoy's `trace_id_128bit: false` default), from a
    /// fast thread-local generator.
    #[must_use]
    pub fn random_64bit() -> Self {
        Self::random_of_width(true)
    }

    fn random_of_width(is_64bit: bool) -> Self {
        with_rng(|rng| {
            loop {
                let v: u128 = if is_64bit {
                    u128::from(rng.random::<u64>())
                } else {
                    rng.random()
                };
                if let Some(value) = NonZeroU128::new(v) {
                    return TraceId { value, is_64bit };
                }
            }
        })
    }

    /// The numeric value.
    #[must_use]
    pub const fn to_u128(self) -> u128 {
        self.value.get()
    }

    /// The big-endian bytes (always 16; a 64-bit id is left-padded with zeros).
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 16] {
        self.value.get().to_be_bytes()
    }

    /// The high 64 bits (zero for a 64-bit id).
    #[must_use]
    pub const fn high(self) -> u64 {
        (self.value.get() >> 64) as u64
    }

    /// The low 64 bits.
    #[must_use]
    pub const fn low(self) -> u64 {
        self.value.get() as u64
    }

    /// Whether the id was received (or created) as 64 bits and is emitted as 16 hex characters.
    #[must_use]
    pub const fn is_64bit(self) -> bool {
        self.is_64bit
    }

    /// The same id, emitted at 128 bits from now on.
    #[must_use]
    pub const fn into_128bit(self) -> Self {
        TraceId {
            value: self.value,
            is_64bit: false,
        }
    }

    /// The hex form at the received width: 16 or 32 characters.
    #[must_use]
    pub fn to_hex(self) -> HexBuf<32> {
        let mut buf = [0u8; 32];
        let len = self.write_hex(&mut buf);
        HexBuf { buf, len }
    }

    /// Write the hex form at the received width into `out` (at least 32 bytes): 16 digits
    /// for a 64-bit id, else 32. Returns how many were written.
    #[inline]
    pub(crate) fn write_hex(self, out: &mut [u8]) -> u8 {
        if self.is_64bit && self.high() == 0 {
            write_hex_u64(self.low(), &mut out[..16]);
            16
        } else {
            write_hex_u64(self.high(), &mut out[..16]);
            write_hex_u64(self.low(), &mut out[16..32]);
            32
        }
    }

    /// The hex form at 32 characters, as W3C `traceparent` needs.
    #[must_use]
    pub fn to_hex32(self) -> HexBuf<32> {
        let mut buf = [0u8; 32];
        write_hex_u64(self.high(), &mut buf[..16]);
        write_hex_u64(self.low(), &mut buf[16..]);
        HexBuf { buf, len: 32 }
    }

    /// Parse a B3 trace id: exactly 16 or 32 lower-case hex characters, not all zero.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] (format `x-b3-*`, field trace id) naming the rule that was broken.
    pub fn parse_b3(s: &[u8]) -> Result<Self, ParseError> {
        Self::parse_exact(s, Format::B3Multi, 0)
    }

    /// Parse exactly 16 or 32 lower-case hex characters, reporting errors for `format`.
    #[inline]
    pub(crate) fn parse_exact(s: &[u8], format: Format, offset: usize) -> Result<Self, ParseError> {
        match s.len() {
            16 => {
                if let Some(id) = parse16(s).and_then(Self::from_u64) {
                    return Ok(id);
                }
            }
            32 => {
                if let (Some(hi), Some(lo)) = (parse16(&s[..16]), parse16(&s[16..]))
                    && let Some(id) = Self::from_u128((u128::from(hi) << 64) | u128::from(lo))
                {
                    return Ok(id);
                }
            }
            _ => {}
        }
        let err = |e: HexError| e.into_parse_error(format, Field::TraceId, offset);
        match s.len() {
            16 => {
                let v = parse_hex_u64(s).map_err(err)?;
                Self::from_u64(v).ok_or_else(|| err(HexError::Zero))
            }
            32 => {
                let v = parse_hex_u128(s).map_err(err)?;
                Self::from_u128(v).ok_or_else(|| err(HexError::Zero))
            }
            len => Err(err(HexError::Length(len))),
        }
    }
}

impl PartialEq for TraceId {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Eq for TraceId {}

impl Hash for TraceId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl FromStr for TraceId {
    type Err = ParseError;

    /// Parse 16 or 32 lower-case hex characters (see [`TraceId::parse_b3`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_b3(s.as_bytes())
    }
}

/// A 64-bit span id, never zero. See the [module docs](self).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(NonZeroU64);

impl SpanId {
    /// A span id, or `None` for zero.
    #[must_use]
    pub const fn from_u64(value: u64) -> Option<Self> {
        match NonZeroU64::new(value) {
            Some(v) => Some(SpanId(v)),
            None => None,
        }
    }

    /// A span id from its big-endian bytes, or `None` for zero.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 8]) -> Option<Self> {
        Self::from_u64(u64::from_be_bytes(bytes))
    }

    /// A new random span id (never zero), from a fast thread-local generator.
    #[must_use]
    pub fn random() -> Self {
        with_rng(|rng| {
            loop {
                if let Some(v) = NonZeroU64::new(rng.random()) {
                    return SpanId(v);
                }
            }
        })
    }

    /// The numeric value.
    #[must_use]
    pub const fn to_u64(self) -> u64 {
        self.0.get()
    }

    /// The big-endian bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 8] {
        self.0.get().to_be_bytes()
    }

    /// The 16-character lower-case hex form.
    #[must_use]
    pub fn to_hex(self) -> HexBuf<16> {
        let mut buf = [0u8; 16];
        write_hex_u64(self.0.get(), &mut buf);
        HexBuf { buf, len: 16 }
    }

    /// Parse exactly 16 lower-case hex characters, not all zero.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] (format `x-b3-*`, field span id) naming the rule that was broken.
    pub fn parse_b3(s: &[u8]) -> Result<Self, ParseError> {
        Self::parse_exact(s, Format::B3Multi, Field::SpanId, 0)
    }

    #[inline]
    pub(crate) fn parse_exact(
        s: &[u8],
        format: Format,
        field: Field,
        offset: usize,
    ) -> Result<Self, ParseError> {
        if let Some(id) = parse16(s).and_then(Self::from_u64) {
            return Ok(id);
        }
        let err = |e: HexError| e.into_parse_error(format, field, offset);
        if s.len() != 16 {
            return Err(err(HexError::Length(s.len())));
        }
        let v = parse_hex_u64_slow(s).map_err(err)?;
        Self::from_u64(v).ok_or_else(|| err(HexError::Zero))
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.to_hex().as_str())
    }
}

impl FromStr for SpanId {
    type Err = ParseError;

    /// Parse exactly 16 lower-case hex characters (see [`SpanId::parse_b3`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_b3(s.as_bytes())
    }
}

thread_local! {
    /// One small, fast generator per thread, seeded once from the OS: no system call per id.
    static RNG: RefCell<SmallRng> = RefCell::new(SmallRng::from_os_rng());
}

/// Run `f` with this thread's generator.
pub(crate) fn with_rng<T>(f: impl FnOnce(&mut SmallRng) -> T) -> T {
    RNG.with(|rng| f(&mut rng.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_tables_reject_uppercase_and_signs() {
        assert_eq!(parse_hex_u64(b"00ff"), Ok(255));
        assert_eq!(parse_hex_u64(b"00FF"), Err(HexError::Char(b'F', 2)));
        assert_eq!(parse_hex_u64(b"+1"), Err(HexError::Char(b'+', 0)));
        assert_eq!(parse_hex_u64(b""), Err(HexError::Length(0)));
        assert_eq!(
            parse_hex_u64(b"00000000000000001"),
            Err(HexError::Length(17))
        );
        assert_eq!(
            parse_hex_u128(b"0000000000000000000000000000000g"),
            Err(HexError::Char(b'g', 31))
        );
        assert_eq!(parse_hex_u128(b"10000000000000000"), Ok(1u128 << 64));
    }

    #[test]
    fn swar_matches_the_table() {
        for s in [
            "0123456789abcdef",
            "fedcba9876543210",
            "ffffffffffffffff",
            "0000000000000000",
            "a2fb4a1d1a96d312",
        ] {
            assert_eq!(
                parse_hex_u64(s.as_bytes()),
                Ok(u64::from_str_radix(s, 16).unwrap()),
                "{s}"
            );
        }
        // Every byte value in every position is rejected unless it is lower-case hex.
        for pos in 0..16 {
            for b in 0..=255u8 {
                let mut s = *b"0123456789abcdef";
                s[pos] = b;
                let ok = b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
                assert_eq!(parse_hex_u64(&s).is_ok(), ok, "byte {b:#x} at {pos}");
                assert_eq!(parse_hex_u64(&s), parse_hex_u64_slow(&s));
            }
        }
    }

    #[test]
    fn hex_writes_every_nibble() {
        let mut out = [0u8; 16];
        for v in [
            0,
            1,
            u64::MAX,
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0xa2fb_4a1d_1a96_d312,
        ] {
            write_hex_u64(v, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{v:016x}"));
        }
        for shift in 0..64 {
            for nibble in 0..16u64 {
                let v = (nibble << (shift & !3)) | (1 << shift);
                write_hex_u64(v, &mut out);
                assert_eq!(std::str::from_utf8(&out).unwrap(), format!("{v:016x}"));
            }
        }
    }

    #[test]
    fn trace_id_width_is_kept() {
        let t = TraceId::parse_b3(b"48485a3953bb6124").unwrap();
        assert!(t.is_64bit());
        assert_eq!(t.to_hex().as_str(), "48485a3953bb6124");
        let t = TraceId::parse_b3(b"463ac35c9f6413ad0000000000000000").unwrap();
        assert!(!t.is_64bit());
        assert_eq!(t.to_hex().as_str(), "463ac35c9f6413ad0000000000000000");
        assert_eq!(t.low(), 0);
    }

    #[test]
    fn trace_id_errors_are_typed() {
        let e = TraceId::parse_b3(b"48485a3953bb612").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidLength { len: 15 });
        assert_eq!(e.field(), Some(Field::TraceId));
        let e = TraceId::parse_b3(b"0000000000000000").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ZeroId);
        let e = TraceId::parse_b3(b"").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Empty);
    }

    #[test]
    fn random_ids_are_nonzero_and_distinct() {
        let a = TraceId::random();
        let b = TraceId::random();
        assert_ne!(a, b);
        assert!(TraceId::random_64bit().is_64bit());
        assert_eq!(TraceId::random_64bit().high(), 0);
        assert_ne!(SpanId::random(), SpanId::random());
    }

    #[test]
    fn span_id_roundtrip() {
        let s: SpanId = "a2fb4a1d1a96d312".parse().unwrap();
        assert_eq!(s.to_string(), "a2fb4a1d1a96d312");
        assert_eq!(SpanId::from_bytes(s.to_bytes()), Some(s));
    }
}
