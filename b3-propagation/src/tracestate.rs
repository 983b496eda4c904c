//! W3C `tracestate`: vendor key/value pairs that travel with `traceparent`.
//!
//! Rules (W3C Trace Context Level 2, <https://www.w3.org/TR/trace-context-2/>, and its test
//! suite):
//! - parsed only when `traceparent` is valid; several field lines are combined in order;
//! - keys `[a-z0-9][a-z0-9_\-*/@]{0,255}`, values 1..=256 printable characters without `,`
//!   or `=` and not ending in a space; empty members and spaces / tabs around commas are fine;
//! - any invalid member or more than 32 members discards the **whole** header;
//! - a duplicate key keeps its first occurrence.
//!
//! The kept members are stored as one normalised `HeaderValue` (`k=v,k=v`). A single,
//! already-normal field line (the usual case) is kept as received without copying.
//!
//! # Example
//!
//! ```
//! use b3_propagation::TraceState;
//!
//! let ts = TraceState::parse_lines([&b"rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE"[..]])?;
//! assert_eq!(ts.get("congo"), Some("t61rcWkgMzE"));
//! assert_eq!(ts.header_value().unwrap(), "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
//!
//! assert!(TraceState::parse_lines([&b"FOO=1"[..]]).is_err()); // upper-case key: discarded
//! # Ok::<(), b3_propagation::error::ParseError>(())
//! ```

use std::fmt;

use http::HeaderValue;

use crate::Format;
use crate::error::{ErrorKind, Field, ParseError};

/// Most members a `tracestate` may hold.
pub const MAX_MEMBERS: usize = 32;
/// Longest key.
pub const MAX_KEY_LEN: usize = 256;
/// Longest value.
pub const MAX_VALUE_LEN: usize = 256;

const FORMAT: Format = Format::TraceState;

/// A validated, normalised `tracestate`. See the [module docs](self).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TraceState {
    /// `None` when there are no members; otherwise `k=v[,k=v]*`.
    value: Option<HeaderValue>,
}

fn is_key_start(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn is_key_char(b: u8) -> bool {
    is_key_start(b) || matches!(b, b'_' | b'-' | b'*' | b'/' | b'@')
}

fn is_value_char(b: u8) -> bool {
    matches!(b, 0x20..=0x2b | 0x2d..=0x3c | 0x3e..=0x7e)
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

/// Validate one (trimmed, non-empty) member and split it into key and value.
fn member(m: &[u8]) -> Result<(&[u8], &[u8]), ParseError> {
    let Some(eq) = m.iter().position(|&b| b == b'=') else {
        return Err(ParseError::at(
            FORMAT,
            Field::Member,
            ErrorKind::MissingField,
        ));
    };
    let (key, value) = (&m[..eq], &m[eq + 1..]);
    if key.is_empty() {
        return Err(ParseError::at(FORMAT, Field::Key, ErrorKind::Empty));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ParseError::at(
            FORMAT,
            Field::Key,
            ErrorKind::TooLong {
                len: key.len(),
                max: MAX_KEY_LEN,
            },
        ));
    }
    if !is_key_start(key[0]) {
        return Err(ParseError::at(
            FORMAT,
            Field::Key,
            ErrorKind::InvalidCharacter {
                byte: key[0],
                index: 0,
            },
        ));
    }
    if let Some(i) = key.iter().position(|&b| !is_key_char(b)) {
        return Err(ParseError::at(
            FORMAT,
            Field::Key,
            ErrorKind::InvalidCharacter {
                byte: key[i],
                index: i,
            },
        ));
    }
    if value.is_empty() {
        return Err(ParseError::at(FORMAT, Field::Value, ErrorKind::Empty));
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(ParseError::at(
            FORMAT,
            Field::Value,
            ErrorKind::TooLong {
                len: value.len(),
                max: MAX_VALUE_LEN,
            },
        ));
    }
    if let Some(i) = value.iter().position(|&b| !is_value_char(b)) {
        return Err(ParseError::at(
            FORMAT,
            Field::Value,
            ErrorKind::InvalidCharacter {
                byte: value[i],
                index: eq + 1 + i,
            },
        ));
    }
    // `nblk-chr` last: a trailing space would have been trimmed as OWS, so this only fires
    // for a value made of spaces only.
    if value.last() == Some(&b' ') {
        return Err(ParseError::at(
            FORMAT,
            Field::Value,
            ErrorKind::InvalidCharacter {
                byte: b' ',
                index: eq + value.len(),
            },
        ));
    }
    Ok((key, value))
}

fn members(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|m| !m.is_empty())
}

impl TraceState {
    /// An empty `tracestate`.
    #[must_use]
    pub const fn new() -> Self {
        TraceState { value: None }
    }

    /// Parse the field lines of `tracestate`, in order.
    ///
    /// # Errors
    ///
    /// The first invalid member, or [`ErrorKind::TooManyMembers`]: the whole header is then
    /// discarded, as the W3C test suite expects.
    pub fn parse_lines<'a, I>(lines: I) -> Result<Self, ParseError>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: Clone,
    {
        let lines = lines.into_iter();
        Self::parse_with(|| lines.clone().map(|l| (l, None)))
    }

    /// Like [`parse_lines`](Self::parse_lines) for a single received `HeaderValue`, which is
    /// kept (shared, not copied) when it is already in normal form.
    ///
    /// # Errors
    ///
    /// As [`parse_lines`](Self::parse_lines).
    pub fn parse_value(value: &HeaderValue) -> Result<Self, ParseError> {
        Self::parse_with(|| std::iter::once((value.as_bytes(), Some(value))))
    }

    /// Parse the lines `make()` yields; `make` is called a second time only when the value
    /// must be rebuilt (several lines, OWS, empty members or duplicates).
    pub(crate) fn parse_with<'a, I, F>(make: F) -> Result<Self, ParseError>
    where
        F: Fn() -> I,
        I: Iterator<Item = (&'a [u8], Option<&'a HeaderValue>)>,
    {
        let mut count = 0usize;
        let mut lines_with_members = 0usize;
        let mut single: Option<(&[u8], Option<&HeaderValue>)> = None;
        for (line, hv) in make() {
            let mut line_members = 0;
            for m in members(line) {
                member(m)?;
                count += 1;
                line_members += 1;
                if count > MAX_MEMBERS {
                    return Err(ParseError::new(
                        FORMAT,
                        None,
                        ErrorKind::TooManyMembers { max: MAX_MEMBERS },
                    ));
                }
            }
            if line_members > 0 {
                lines_with_members += 1;
                single = Some((line, hv));
            }
        }
        if count == 0 {
            return Ok(TraceState::new());
        }
        // Fast path: one line, already `k=v,k=v` with no OWS, empty members or duplicates.
        if lines_with_members == 1
            && let Some((line, hv)) = single.filter(|(line, _)| is_normal(line))
        {
            let value = match hv {
                Some(hv) => hv.clone(),
                None => HeaderValue::from_bytes(line)
                    .map_err(|_| ParseError::new(FORMAT, None, ErrorKind::InvalidEncoding))?,
            };
            return Ok(TraceState { value: Some(value) });
        }
        let mut out: Vec<u8> = Vec::new();
        let mut kept: Vec<&[u8]> = Vec::with_capacity(count);
        for (line, _) in make() {
            for m in members(line) {
                let (key, _) = member(m)?;
                if kept.contains(&key) {
                    continue; // duplicate key: keep the first
                }
                kept.push(key);
                if !out.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(m);
            }
        }
        let value = HeaderValue::from_bytes(&out)
            .map_err(|_| ParseError::new(FORMAT, None, ErrorKind::InvalidEncoding))?;
        Ok(TraceState { value: Some(value) })
    }

    /// The normalised header value, or `None` when there are no members (an empty
    /// `tracestate` SHOULD NOT be sent).
    #[must_use]
    pub fn header_value(&self) -> Option<&HeaderValue> {
        self.value.as_ref()
    }

    /// The members, in order, as `(key, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let bytes = self.value.as_ref().map_or(&[][..], HeaderValue::as_bytes);
        members(bytes).filter_map(|m| {
            let eq = m.iter().position(|&b| b == b'=')?;
            let key = std::str::from_utf8(&m[..eq]).ok()?;
            let value = std::str::from_utf8(&m[eq + 1..]).ok()?;
            Some((key, value))
        })
    }

    /// The value of `key`, if present.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Number of members.
    #[must_use]
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no members.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.value.is_none()
    }

    /// A copy with `key=value` moved or added to the front (how a vendor updates its entry),
    /// dropping the right-most member if that would exceed 32.
    ///
    /// # Errors
    ///
    /// A [`ParseError`] when `key` or `value` is not valid.
    pub fn insert(&self, key: &str, value: &str) -> Result<Self, ParseError> {
        let mut m = Vec::with_capacity(key.len() + value.len() + 1);
        m.extend_from_slice(key.as_bytes());
        m.push(b'=');
        m.extend_from_slice(value.as_bytes());
        if trim_ows(&m).len() != m.len() || m.iter().filter(|&&b| b == b',').count() > 0 {
            return Err(ParseError::at(
                FORMAT,
                Field::Value,
                ErrorKind::InvalidCharacter {
                    byte: b',',
                    index: 0,
                },
            ));
        }
        member(&m)?;
        let mut out = m;
        let mut n = 1;
        for (k, v) in self.iter() {
            if k == key {
                continue;
            }
            if n == MAX_MEMBERS {
                break;
            }
            out.push(b',');
            out.extend_from_slice(k.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
            n += 1;
        }
        let value = HeaderValue::from_bytes(&out)
            .map_err(|_| ParseError::new(FORMAT, None, ErrorKind::InvalidEncoding))?;
        Ok(TraceState { value: Some(value) })
    }

    /// A copy no longer than `max_len` bytes, removing whole members as the W3C spec says:
    /// first members longer than 128 bytes (from the right), then from the end.
    #[must_use]
    pub fn truncated(&self, max_len: usize) -> Self {
        let Some(v) = &self.value else {
            return self.clone();
        };
        if v.len() <= max_len {
            return self.clone();
        }
        let mut list: Vec<&[u8]> = members(v.as_bytes()).collect();
        let total =
            |l: &[&[u8]]| l.iter().map(|m| m.len()).sum::<usize>() + l.len().saturating_sub(1);
        while total(&list) > max_len {
            if let Some(i) = list.iter().rposition(|m| m.len() > 128) {
                list.remove(i);
            } else {
                list.pop();
            }
        }
        let joined = list.join(&b","[..]);
        TraceState {
            value: if joined.is_empty() {
                None
            } else {
                HeaderValue::from_bytes(&joined).ok()
            },
        }
    }
}

/// `k=v[,k=v]*` with no OWS, no empty member and no duplicate key.
fn is_normal(line: &[u8]) -> bool {
    if line.is_empty() || line.first() == Some(&b',') || line.last() == Some(&b',') {
        return false;
    }
    let mut keys: [&[u8]; MAX_MEMBERS] = [&[]; MAX_MEMBERS];
    for (i, m) in line.split(|&b| b == b',').enumerate() {
        if m.is_empty() || trim_ows(m).len() != m.len() || i >= MAX_MEMBERS {
            return false;
        }
        let key = &m[..m.iter().position(|&b| b == b'=').unwrap_or(m.len())];
        if keys[..i].contains(&key) {
            return false;
        }
        keys[i] = key;
    }
    true
}

impl fmt::Debug for TraceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &[&str]) -> Result<TraceState, ParseError> {
        TraceState::parse_lines(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn normalises_and_dedups() {
        let ts = parse(&["foo=1 \t , bar=2", "", "foo=3,baz=4"]).unwrap();
        assert_eq!(ts.header_value().unwrap(), "foo=1,bar=2,baz=4");
        assert_eq!(ts.len(), 3);
    }

    #[test]
    fn normal_single_line_is_shared() {
        let hv = HeaderValue::from_static("a=1,b=2");
        let ts = TraceState::parse_value(&hv).unwrap();
        assert_eq!(ts.header_value(), Some(&hv));
    }

    #[test]
    fn invalid_member_reasons() {
        assert_eq!(parse(&["foo =1"]).unwrap_err().field(), Some(Field::Key));
        assert_eq!(
            parse(&["foo=bar=baz"]).unwrap_err().field(),
            Some(Field::Value)
        );
        assert_eq!(parse(&["foo="]).unwrap_err().kind(), ErrorKind::Empty);
        assert_eq!(parse(&["foo"]).unwrap_err().kind(), ErrorKind::MissingField);
    }

    #[test]
    fn insert_moves_to_front_and_caps() {
        let many: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        let ts = parse(&[&many.join(",")]).unwrap();
        let ts2 = ts.insert("new", "x").unwrap();
        assert_eq!(ts2.len(), 32);
        assert_eq!(ts2.iter().next(), Some(("new", "x")));
        assert_eq!(ts2.get("k31"), None);
        let ts3 = ts2.insert("k5", "y").unwrap();
        assert_eq!(ts3.iter().next(), Some(("k5", "y")));
        assert_eq!(ts3.len(), 32);
        assert!(ts.insert("Bad", "x").is_err());
        assert!(ts.insert("k", "a,b").is_err());
    }

    #[test]
    fn truncation_removes_long_members_first() {
        let long = format!("big={}", "x".repeat(200));
        let ts = parse(&[&format!("a=1,{long},b=2")]).unwrap();
        assert_eq!(ts.truncated(100).header_value().unwrap(), "a=1,b=2");
        assert_eq!(ts.truncated(3).header_value().unwrap(), "a=1");
        assert!(ts.truncated(1).is_empty());
    }
}
