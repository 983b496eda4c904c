//! Baggage: application key/value pairs that travel with the trace.
//!
//! Two families of headers carry baggage:
//! - W3C `baggage` (`key=value;property,key2=value2`, percent-encoded values), see
//!   [`crate::codec::baggage`];
//! - one header per item with a prefix: `baggage-<key>` (Brave), `ot-baggage-<key>`
//!   (OpenTracing, LightStep) and `uberctx-<key>` (Jaeger), with raw values.
//!
//! [`Baggage`] keeps every entry in order, remembers where it came from, and re-emits it in
//! the same family. A W3C header that was fully valid is forwarded exactly as received.
//!
//! # Example
//!
//! ```
//! use b3_propagation::baggage::{Baggage, BaggageEntry};
//!
//! let mut baggage = Baggage::new();
//! baggage.push(BaggageEntry::new("userId", "Amélie"));
//! baggage.push(BaggageEntry::new("serverNode", "DF 28"));
//! assert_eq!(baggage.get("userId"), Some("Amélie"));
//! assert_eq!(
//!     baggage.to_header_value().unwrap(),
//!     "userId=Am%C3%A9lie,serverNode=DF%2028"
//! );
//! ```

use http::HeaderValue;

use crate::codec;

/// Most members kept (the W3C ABNF cap).
pub const MAX_MEMBERS: usize = 180;
/// Most bytes kept, counting all `baggage` headers combined.
pub const MAX_BYTES: usize = 8192;

/// The header prefix of a per-item baggage header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BaggagePrefix {
    /// `baggage-<key>` (Brave).
    Baggage,
    /// `ot-baggage-<key>` (OpenTracing, LightStep, OTel `OtTracePropagator`).
    OtBaggage,
    /// `uberctx-<key>` (Jaeger).
    Uberctx,
}

impl BaggagePrefix {
    /// All prefixes, longest first (so `ot-baggage-` is tried before `baggage-`).
    pub const ALL: [BaggagePrefix; 3] = [
        BaggagePrefix::OtBaggage,
        BaggagePrefix::Baggage,
        BaggagePrefix::Uberctx,
    ];

    /// The lower-case prefix, dash included.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            BaggagePrefix::Baggage => "baggage-",
            BaggagePrefix::OtBaggage => "ot-baggage-",
            BaggagePrefix::Uberctx => "uberctx-",
        }
    }
}

/// Where a baggage entry came from, and so how it is re-emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BaggageOrigin {
    /// The W3C `baggage` header (also the origin of entries [pushed](Baggage::push) or
    /// [inserted](Baggage::insert)).
    W3c,
    /// Set by this application with [`Baggage::set`]: sent in W3C `baggage` and, after the
    /// propagator's inject set, as prefixed headers too (`baggage-<key>` for B3 peers such as
    /// Brave or an Istio route on `baggage-*`, `uberctx-<key>` for Jaeger).
    Application,
    /// A prefixed per-item header.
    Prefixed(BaggagePrefix),
    /// An item of a decoded `x-ot-span-context` (diagnostics only; not re-emitted).
    OtSpanContext,
}

impl BaggageOrigin {
    /// Whether the entry travels in the W3C `baggage` header.
    #[must_use]
    pub const fn is_w3c(self) -> bool {
        matches!(self, BaggageOrigin::W3c | BaggageOrigin::Application)
    }
}

/// A W3C baggage property: `;key` or `;key=value`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaggageProperty {
    /// The property key.
    pub key: String,
    /// The (percent-decoded) value, `None` for a key-only property.
    pub value: Option<String>,
}

/// One baggage item.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaggageEntry {
    /// The key.
    pub key: String,
    /// The value, percent-decoded (W3C) or raw (prefixed headers).
    pub value: String,
    /// W3C properties, in order.
    pub properties: Vec<BaggageProperty>,
    /// Where it came from.
    pub origin: BaggageOrigin,
}

impl BaggageEntry {
    /// A W3C entry without properties.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        BaggageEntry {
            key: key.into(),
            value: value.into(),
            properties: Vec::new(),
            origin: BaggageOrigin::W3c,
        }
    }

    /// The same entry with a property added.
    #[must_use]
    pub fn with_property(mut self, key: impl Into<String>, value: Option<String>) -> Self {
        self.properties.push(BaggageProperty {
            key: key.into(),
            value,
        });
        self
    }
}

/// An ordered list of baggage entries. See the [module docs](self).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Baggage {
    entries: Vec<BaggageEntry>,
    /// The received W3C header, while the W3C entries are exactly what it said.
    raw: Option<HeaderValue>,
}

impl Baggage {
    /// No entries.
    #[must_use]
    pub const fn new() -> Self {
        Baggage {
            entries: Vec::new(),
            raw: None,
        }
    }

    pub(crate) fn from_parts(entries: Vec<BaggageEntry>, raw: Option<HeaderValue>) -> Self {
        Baggage { entries, raw }
    }

    /// The entries, in order.
    #[must_use]
    pub fn entries(&self) -> &[BaggageEntry] {
        &self.entries
    }

    /// `(key, value)` of every entry, in order (duplicates included).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
    }

    /// The value of the first entry with this key.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Append an entry.
    pub fn push(&mut self, entry: BaggageEntry) {
        if entry.origin.is_w3c() {
            self.raw = None;
        }
        self.entries.push(entry);
    }

    /// Set `key` to `value` for every call sent from now on: the application's own baggage
    /// (origin [`BaggageOrigin::Application`]). Every entry with this key, whatever its
    /// origin, is replaced.
    ///
    /// # Errors
    ///
    /// A [`ParseError`](crate::ParseError) of format [`Format::Baggage`](crate::Format::Baggage), and nothing
    /// changes, when the key is not an HTTP token, the value holds a control character, or
    /// the baggage would pass the W3C limits ([`MAX_MEMBERS`] members, [`MAX_BYTES`] bytes
    /// encoded).
    ///
    /// ```
    /// use b3_propagation::Baggage;
    ///
    /// let mut bag = Baggage::new();
    /// bag.set("user-agent", "Mozilla/4.0 (compatible; Netscape 4.7)")?;
    /// assert_eq!(bag.to_header_value().unwrap(), "user-agent=Mozilla/4.0%20(compatible%3B%20Netscape%204.7)");
    /// assert!(bag.set("bad key", "v").is_err());
    /// assert!(bag.set("k", "line\r\nbreak").is_err());
    /// # Ok::<(), b3_propagation::ParseError>(())
    /// ```
    pub fn set(
        &mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<(), crate::ParseError> {
        let key = key.into();
        let value = value.into();
        codec::baggage::check_app_entry(&key, &value)?;
        let mut next: Vec<BaggageEntry> = self
            .entries
            .iter()
            .filter(|e| e.key != key)
            .cloned()
            .collect();
        next.push(BaggageEntry {
            key,
            value,
            properties: Vec::new(),
            origin: BaggageOrigin::Application,
        });
        codec::baggage::check_limits(&next)?;
        self.entries = next;
        self.raw = None;
        Ok(())
    }

    /// Set `key` to `value` as a W3C entry: replaces the first entry with that key (and
    /// removes the others), or appends.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        self.raw = None;
        let mut seen = false;
        self.entries.retain_mut(|e| {
            if e.key != key {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            e.value.clone_from(&value);
            true
        });
        if !seen {
            self.entries.push(BaggageEntry::new(key, value));
        }
    }

    /// Remove every entry with this key.
    pub fn remove(&mut self, key: &str) {
        let before = self.entries.len();
        self.entries.retain(|e| e.key != key);
        if self.entries.len() != before {
            self.raw = None;
        }
    }

    /// Append every entry of `other`.
    pub fn extend(&mut self, other: Baggage) {
        if self.entries.iter().all(|e| !e.origin.is_w3c()) {
            self.raw = other.raw.clone();
        } else {
            self.raw = None;
        }
        self.entries.extend(other.entries);
    }

    /// The W3C `baggage` header for the W3C entries: the received value when unchanged,
    /// otherwise encoded (within the W3C limits). `None` when there is no W3C entry.
    #[must_use]
    pub fn to_header_value(&self) -> Option<HeaderValue> {
        if let Some(raw) = &self.raw {
            return Some(raw.clone());
        }
        codec::baggage::encode(self.entries.iter().filter(|e| e.origin.is_w3c()))
    }

    /// The received W3C header, when the W3C entries are unchanged since it was decoded.
    #[must_use]
    pub fn raw_header(&self) -> Option<&HeaderValue> {
        self.raw.as_ref()
    }
}

impl FromIterator<BaggageEntry> for Baggage {
    fn from_iter<T: IntoIterator<Item = BaggageEntry>>(iter: T) -> Self {
        Baggage {
            entries: iter.into_iter().collect(),
            raw: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_first_and_drops_duplicates() {
        let mut b: Baggage = [BaggageEntry::new("k", "1"), BaggageEntry::new("k", "2")]
            .into_iter()
            .collect();
        b.insert("k", "3");
        assert_eq!(b.iter().collect::<Vec<_>>(), vec![("k", "3")]);
        b.insert("j", "4");
        assert_eq!(b.len(), 2);
        b.remove("k");
        assert_eq!(b.get("j"), Some("4"));
    }

    #[test]
    fn raw_is_dropped_on_change() {
        let raw = HeaderValue::from_static("a=1");
        let mut b = Baggage::from_parts(vec![BaggageEntry::new("a", "1")], Some(raw.clone()));
        assert_eq!(b.to_header_value(), Some(raw));
        b.insert("b", "2");
        assert_eq!(b.to_header_value().unwrap(), "a=1,b=2");
    }
}
