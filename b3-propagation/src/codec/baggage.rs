//! W3C `baggage` and the prefixed baggage headers (`baggage-*`, `ot-baggage-*`, `uberctx-*`).
//!
//! Decode (W3C Baggage, <https://www.w3.org/TR/baggage/>):
//! - `key OWS "=" OWS value *(OWS ";" OWS property)`, keys are HTTP tokens, values
//!   percent-decoded (invalid UTF-8 becomes U+FFFD), may be empty and may contain `=`;
//! - an invalid member (bad key, a space or other forbidden byte in the value, a malformed
//!   `%` escape) is dropped alone, the others are kept;
//! - duplicates are all kept, in order; members are kept while there are at most 180 of them
//!   and at most 8192 bytes across all `baggage` headers, the rest is dropped whole.
//!
//! Encode percent-encodes only what must be (upper-case hex), within the same limits.
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::baggage;
//!
//! let (bag, dropped) = baggage::decode_lines([&b"userId=Am%C3%A9lie, bad key=1, k=v;p=1"[..]]);
//! assert_eq!(bag.get("userId"), Some("Amélie"));
//! assert_eq!(bag.len(), 2);
//! assert!(dropped.is_some()); // why `bad key` was dropped
//! assert_eq!(bag.to_header_value().unwrap(), "userId=Am%C3%A9lie,k=v;p=1");
//! ```

use std::borrow::Cow;

use http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};

use crate::Format;
use crate::baggage::{
    Baggage, BaggageEntry, BaggageOrigin, BaggagePrefix, BaggageProperty, MAX_BYTES, MAX_MEMBERS,
};
use crate::carrier::{Extractor, Injector};
use crate::error::{ErrorKind, Field, ParseError};
use crate::header;

const FORMAT: Format = Format::Baggage;

/// Bytes that must be percent-encoded in a value: everything outside `baggage-octet`, and `%`.
const ENCODE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b',')
    .add(b';')
    .add(b'\\')
    .add(b'%');

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

fn is_baggage_octet(b: u8) -> bool {
    matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e)
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn token(s: &[u8], field: Field) -> Result<String, ParseError> {
    if s.is_empty() {
        return Err(ParseError::at(FORMAT, field, ErrorKind::Empty));
    }
    if let Some(i) = s.iter().position(|&b| !is_tchar(b)) {
        return Err(ParseError::at(
            FORMAT,
            field,
            ErrorKind::InvalidCharacter {
                byte: s[i],
                index: i,
            },
        ));
    }
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// Check the octets and `%` escapes of a value, then percent-decode it.
fn value(s: &[u8]) -> Result<String, ParseError> {
    let bad = |i: usize| {
        ParseError::at(
            FORMAT,
            Field::Value,
            ErrorKind::InvalidCharacter {
                byte: s[i],
                index: i,
            },
        )
    };
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if !is_baggage_octet(b) {
            return Err(bad(i));
        }
        if b == b'%' {
            let ok =
                s.len() > i + 2 && s[i + 1].is_ascii_hexdigit() && s[i + 2].is_ascii_hexdigit();
            if !ok {
                return Err(bad(i));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(match percent_decode(s).decode_utf8_lossy() {
        Cow::Borrowed(v) => v.to_owned(),
        Cow::Owned(v) => v,
    })
}

/// Decode one member (already split off and trimmed).
fn member(m: &[u8]) -> Result<BaggageEntry, ParseError> {
    let mut parts = m.split(|&b| b == b';');
    let kv = parts.next().unwrap_or_default();
    let Some(eq) = kv.iter().position(|&b| b == b'=') else {
        return Err(ParseError::at(
            FORMAT,
            Field::Member,
            ErrorKind::MissingField,
        ));
    };
    let key = token(trim_ows(&kv[..eq]), Field::Key)?;
    let value = value(trim_ows(&kv[eq + 1..]))?;
    let mut properties = Vec::new();
    for p in parts {
        let p = trim_ows(p);
        match p.iter().position(|&b| b == b'=') {
            Some(eq) => properties.push(BaggageProperty {
                key: token(trim_ows(&p[..eq]), Field::Key)?,
                value: Some(self::value(trim_ows(&p[eq + 1..]))?),
            }),
            None => properties.push(BaggageProperty {
                key: token(p, Field::Key)?,
                value: None,
            }),
        }
    }
    Ok(BaggageEntry {
        key,
        value,
        properties,
        origin: BaggageOrigin::W3c,
    })
}

/// Decode the field lines of `baggage`, in order. Returns the kept entries and, when any
/// member was dropped, the reason for the first one.
pub fn decode_lines<'a, I>(lines: I) -> (Baggage, Option<ParseError>)
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut entries = Vec::new();
    let mut dropped = None;
    let mut bytes = 0usize;
    let mut full = false;
    for line in lines {
        for m in line.split(|&b| b == b',') {
            let m = trim_ows(m);
            if m.is_empty() {
                continue;
            }
            if full {
                break;
            }
            let next_bytes = bytes + m.len() + usize::from(!entries.is_empty());
            if entries.len() == MAX_MEMBERS || next_bytes > MAX_BYTES {
                full = true;
                dropped.get_or_insert(ParseError::new(
                    FORMAT,
                    None,
                    if entries.len() == MAX_MEMBERS {
                        ErrorKind::TooManyMembers { max: MAX_MEMBERS }
                    } else {
                        ErrorKind::TooLong {
                            len: next_bytes,
                            max: MAX_BYTES,
                        }
                    },
                ));
                break;
            }
            match member(m) {
                Ok(e) => {
                    bytes = next_bytes;
                    entries.push(e);
                }
                Err(e) => {
                    dropped.get_or_insert(e);
                }
            }
        }
    }
    (Baggage::from_parts(entries, None), dropped)
}

/// Decode a single received `baggage` header; when every member was kept, the value is
/// remembered and forwarded verbatim. Not when the value itself breaks what we send, even
/// though its members are fine: over 8192 bytes (the member limit does not count the OWS
/// around commas), or OWS that is an HTAB or at either end. That value is re-encoded
/// instead, with the same entries.
pub fn decode_value(value: &HeaderValue) -> (Baggage, Option<ParseError>) {
    let (bag, dropped) = decode_lines([value.as_bytes()]);
    let b = value.as_bytes();
    let forwardable = b.len() <= MAX_BYTES
        && !b.contains(&b'\t')
        && b.first() != Some(&b' ')
        && b.last() != Some(&b' ');
    if dropped.is_none() && !bag.is_empty() && forwardable {
        let entries = bag.entries().to_vec();
        return (Baggage::from_parts(entries, Some(value.clone())), None);
    }
    (bag, dropped)
}

/// A byte a prefixed baggage value may hold raw: visible ASCII, space or HTAB.
fn is_prefixed_octet(b: u8) -> bool {
    (0x20..0x7f).contains(&b) || b == b'\t'
}

/// Decode one prefixed header (`baggage-<key>`, `ot-baggage-<key>`, `uberctx-<key>`).
/// `None` when `name` has none of the prefixes (or nothing after it).
pub fn decode_prefixed(name: &str, value: &[u8]) -> Option<Result<BaggageEntry, ParseError>> {
    if name.len() <= 8 || !matches!(name.as_bytes()[0], b'b' | b'B' | b'o' | b'O' | b'u' | b'U') {
        return None;
    }
    let name_lc;
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name_lc = name.to_ascii_lowercase();
        name_lc.as_str()
    } else {
        name
    };
    let (prefix, key) = BaggagePrefix::ALL.iter().find_map(|p| {
        name.strip_prefix(p.as_str())
            .filter(|k| !k.is_empty())
            .map(|k| (*p, k))
    })?;
    // A `HeaderMap` name is a token already; another carrier's may not be, and the key is
    // written back as a member key and a header name.
    if let Some(i) = key.bytes().position(|b| !is_tchar(b)) {
        return Some(Err(ParseError::at(
            FORMAT,
            Field::Key,
            ErrorKind::InvalidCharacter {
                byte: key.as_bytes()[i],
                index: i,
            },
        )));
    }
    if let Some(i) = value.iter().position(|&b| !is_prefixed_octet(b)) {
        return Some(Err(ParseError::at(
            FORMAT,
            Field::Value,
            ErrorKind::InvalidCharacter {
                byte: value[i],
                index: i,
            },
        )));
    }
    Some(Ok(BaggageEntry {
        key: key.to_owned(),
        value: String::from_utf8_lossy(value).into_owned(),
        properties: Vec::new(),
        origin: BaggageOrigin::Prefixed(prefix),
    }))
}

/// Append one member (`key=value;prop`) to `out`; `false` (and nothing appended) when the
/// key is not an HTTP token.
fn encode_member(e: &BaggageEntry, out: &mut String) -> bool {
    if e.key.is_empty() || !e.key.bytes().all(is_tchar) {
        return false;
    }
    out.push_str(&e.key);
    out.push('=');
    out.extend(utf8_percent_encode(&e.value, ENCODE));
    for p in &e.properties {
        if p.key.is_empty() || !p.key.bytes().all(is_tchar) {
            continue;
        }
        out.push(';');
        out.push_str(&p.key);
        if let Some(v) = &p.value {
            out.push('=');
            out.extend(utf8_percent_encode(v, ENCODE));
        }
    }
    true
}

/// Encode W3C entries as one `baggage` value (`None` when there is nothing to send). Entries
/// with a key that is not an HTTP token are skipped; members beyond 180 or 8192 bytes are
/// dropped whole.
pub fn encode<'a, I>(entries: I) -> Option<HeaderValue>
where
    I: IntoIterator<Item = &'a BaggageEntry>,
{
    let mut out = String::new();
    let mut count = 0;
    let mut member = String::new();
    for e in entries {
        member.clear();
        if !encode_member(e, &mut member) {
            continue;
        }
        let sep = usize::from(!out.is_empty());
        if count == MAX_MEMBERS || out.len() + sep + member.len() > MAX_BYTES {
            break;
        }
        if sep == 1 {
            out.push(',');
        }
        out.push_str(&member);
        count += 1;
    }
    if out.is_empty() {
        return None;
    }
    HeaderValue::from_str(&out).ok()
}

/// Check an entry the application sets ([`Baggage::set`]): the key an HTTP token, the value
/// free of control characters (it is percent-encoded in `baggage`, and sent raw in the
/// prefixed forms when it is visible ASCII).
pub(crate) fn check_app_entry(key: &str, value: &str) -> Result<(), ParseError> {
    token(key.as_bytes(), Field::Key)?;
    if let Some(i) = value.bytes().position(|b| b.is_ascii_control()) {
        return Err(ParseError::at(
            FORMAT,
            Field::Value,
            ErrorKind::InvalidCharacter {
                byte: value.as_bytes()[i],
                index: i,
            },
        ));
    }
    Ok(())
}

/// Whether the W3C entries fit the W3C limits once encoded.
pub(crate) fn check_limits(entries: &[BaggageEntry]) -> Result<(), ParseError> {
    let mut count = 0;
    let mut bytes = 0;
    let mut member = String::new();
    for e in entries.iter().filter(|e| e.origin.is_w3c()) {
        member.clear();
        if !encode_member(e, &mut member) {
            continue;
        }
        bytes += member.len() + usize::from(count > 0);
        count += 1;
    }
    if count > MAX_MEMBERS {
        return Err(ParseError::new(
            FORMAT,
            None,
            ErrorKind::TooManyMembers { max: MAX_MEMBERS },
        ));
    }
    if bytes > MAX_BYTES {
        return Err(ParseError::new(
            FORMAT,
            None,
            ErrorKind::TooLong {
                len: bytes,
                max: MAX_BYTES,
            },
        ));
    }
    Ok(())
}

/// Read `baggage` (all lines) and the prefixed headers of a carrier.
///
/// The prefixed entries (no specification limits them) are held to the W3C limits on their
/// own: at most [`MAX_MEMBERS`] of them, joined as `key=value,…` in at most [`MAX_BYTES`];
/// one that does not fit is dropped (reported as the first error, when none came before)
/// and the next ones are still read.
pub fn extract<E: Extractor + ?Sized>(carrier: &E) -> (Baggage, Option<ParseError>) {
    let mut lines = carrier.get_all_values(&header::BAGGAGE);
    let (mut bag, mut dropped) = match (lines.next(), lines.next()) {
        (None, _) => (Baggage::new(), None),
        (Some(_), None) => match carrier.get_value(&header::BAGGAGE) {
            Some(v) => decode_value(&v),
            None => decode_lines(carrier.get_all_values(&header::BAGGAGE)),
        },
        _ => decode_lines(carrier.get_all_values(&header::BAGGAGE)),
    };
    prefixed_headers(carrier, |_, read| match read {
        Some(Ok(entry)) => bag.push(entry),
        Some(Err(e)) => {
            dropped.get_or_insert(e);
        }
        None => {}
    });
    (bag, dropped)
}

/// Every header of `carrier`, in order, as the prefixed baggage it is: `f(name, None)` for a
/// header that is none, `Some(Ok(entry))` for an entry kept, `Some(Err(why))` for one
/// refused ([`decode_prefixed`]) or over the limits [`extract`] holds the prefixed entries to
/// (at most [`MAX_MEMBERS`], joined as `key=value,…` in at most [`MAX_BYTES`]).
pub fn prefixed_headers<E: Extractor + ?Sized>(
    carrier: &E,
    mut f: impl FnMut(&str, Option<Result<BaggageEntry, ParseError>>),
) {
    let (mut count, mut bytes) = (0usize, 0usize);
    for (name, value) in carrier.iter_headers() {
        let read = decode_prefixed(name, value).map(|read| {
            let entry = read?;
            let next = bytes + entry.key.len() + 1 + entry.value.len() + usize::from(count > 0);
            if count == MAX_MEMBERS || next > MAX_BYTES {
                let kind = if count == MAX_MEMBERS {
                    ErrorKind::TooManyMembers { max: MAX_MEMBERS }
                } else {
                    ErrorKind::TooLong {
                        len: next,
                        max: MAX_BYTES,
                    }
                };
                return Err(ParseError::new(FORMAT, None, kind));
            }
            (count, bytes) = (count + 1, next);
            Ok(entry)
        });
        f(name, read);
    }
}

/// Write `baggage` for the W3C entries and one prefixed header per prefixed entry. A prefixed
/// value is written raw, so one that is not visible ASCII (a control character, non-ASCII)
/// is skipped, as it is refused on extract.
pub fn inject<I: Injector + ?Sized>(bag: &Baggage, carrier: &mut I) {
    inject_with(bag, &[], carrier);
}

/// [`inject`], and each entry the application set ([`BaggageOrigin::Application`]) also as
/// a prefixed header for each of `app_prefixes` (`baggage-<key>`, `uberctx-<key>`, ...).
pub fn inject_with<I: Injector + ?Sized>(
    bag: &Baggage,
    app_prefixes: &[BaggagePrefix],
    carrier: &mut I,
) {
    match bag.to_header_value() {
        Some(v) => carrier.set(&header::BAGGAGE, v),
        None => carrier.remove(&header::BAGGAGE),
    }
    for e in bag.entries() {
        let (own, app): (Option<BaggagePrefix>, &[BaggagePrefix]) = match e.origin {
            BaggageOrigin::Prefixed(p) => (Some(p), &[]),
            BaggageOrigin::Application => (None, app_prefixes),
            _ => continue,
        };
        if !e.value.bytes().all(is_prefixed_octet) {
            continue;
        }
        for p in own.into_iter().chain(app.iter().copied()) {
            let name = format!("{}{}", p.as_str(), e.key);
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&e.value),
            ) {
                // A key or value gRPC metadata cannot carry stays in `baggage` only.
                if carrier.is_grpc_metadata()
                    && !crate::carrier::grpc_metadata_ok(name.as_str(), value.as_bytes())
                {
                    continue;
                }
                carrier.set(&name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_escape_drops_member() {
        let (b, e) = decode_lines([&b"k1=v1,k2=a%zzb,k3=%4"[..]]);
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![("k1", "v1")]);
        assert_eq!(e.unwrap().field(), Some(Field::Value));
    }

    #[test]
    fn encode_skips_invalid_keys() {
        let e = [
            BaggageEntry::new("bad key", "v"),
            BaggageEntry::new("ok", "a b"),
        ];
        assert_eq!(encode(&e).unwrap(), "ok=a%20b");
        assert!(encode(&e[..1]).is_none());
    }

    /// Prefixed entries are held to the W3C limits on their own: a value too large for
    /// them is dropped (the next ones still read), and past 180 entries the rest are.
    #[test]
    fn prefixed_entries_are_bounded() {
        let mut map = http::HeaderMap::new();
        map.insert("baggage-a", HeaderValue::from_static("1"));
        map.insert(
            "baggage-huge",
            HeaderValue::try_from("x".repeat(MAX_BYTES)).unwrap(),
        );
        map.insert("baggage-b", HeaderValue::from_static("2"));
        let (bag, dropped) = extract(&map);
        assert_eq!(bag.get("a"), Some("1"));
        assert_eq!(bag.get("b"), Some("2"));
        assert!(bag.get("huge").is_none());
        let e = dropped.expect("reported");
        assert!(matches!(e.kind(), ErrorKind::TooLong { .. }), "{e}");

        let mut map = http::HeaderMap::new();
        for i in 0..MAX_MEMBERS + 5 {
            map.insert(
                HeaderName::try_from(format!("uberctx-k{i}")).unwrap(),
                HeaderValue::from_static("v"),
            );
        }
        let (bag, dropped) = extract(&map);
        assert_eq!(bag.len(), MAX_MEMBERS);
        let e = dropped.expect("reported");
        assert_eq!(e.kind(), ErrorKind::TooManyMembers { max: MAX_MEMBERS });
    }

    #[test]
    fn prefixed_rejects_control_bytes() {
        assert!(decode_prefixed("baggage-k", b"a\x01b").unwrap().is_err());
        // A key that is not a token (possible in a carrier other than `HeaderMap`).
        for name in ["uberctx-a=b,c", "baggage-a b", "ot-baggage-k\u{e9}"] {
            let e = decode_prefixed(name, b"v").unwrap().unwrap_err();
            assert_eq!(e.field(), Some(Field::Key), "{name}");
            assert!(
                matches!(e.kind(), ErrorKind::InvalidCharacter { .. }),
                "{name}"
            );
        }
        assert!(decode_prefixed("baggage", b"x").is_none());
        assert!(decode_prefixed("baggage-", b"x").is_none());
        let e = decode_prefixed("OT-Baggage-UserId", b"x").unwrap().unwrap();
        assert_eq!(e.key, "userid");
        assert_eq!(e.origin, BaggageOrigin::Prefixed(BaggagePrefix::OtBaggage));
    }

    #[test]
    fn member_limit() {
        let line: Vec<String> = (0..200).map(|i| format!("k{i}=v")).collect();
        let (b, e) = decode_lines([line.join(",").as_bytes()]);
        assert_eq!(b.len(), MAX_MEMBERS);
        assert_eq!(
            e.unwrap().kind(),
            ErrorKind::TooManyMembers { max: MAX_MEMBERS }
        );
    }
}
