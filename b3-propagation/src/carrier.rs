//! Carriers: where headers are read from ([`Extractor`]) and written to ([`Injector`]).
//!
//! The codecs are written once against these two traits. They are implemented here for
//! [`http::HeaderMap`]; `grpc-interceptor` implements them for tonic's `MetadataMap`. Header
//! names are the static [`header`](crate::header) constants, so a lookup never parses or
//! allocates a name.
//!
//! # Example
//!
//! ```
//! use b3_propagation::carrier::{Extractor, Injector};
//! use b3_propagation::header;
//! use http::{HeaderMap, HeaderValue};
//!
//! let mut headers = HeaderMap::new();
//! headers.set(&header::B3, HeaderValue::from_static("0"));
//! assert_eq!(Extractor::get(&headers, &header::B3), Some(&b"0"[..]));
//! assert_eq!(headers.get_all_values(&header::B3).count(), 1);
//! ```

use http::{HeaderMap, HeaderName, HeaderValue};

/// Read access to a set of headers (or gRPC metadata).
pub trait Extractor {
    /// The first value of `name`, as raw bytes.
    fn get(&self, name: &HeaderName) -> Option<&[u8]>;

    /// Every value of `name`, one per field line, in order.
    fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, Self>;

    /// The first value of `name` as a [`HeaderValue`] to forward verbatim.
    ///
    /// The default builds a new value from the bytes; carriers that hold `HeaderValue`s
    /// override it with a clone, which shares the bytes instead of copying them.
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        self.get(name)
            .and_then(|bytes| HeaderValue::from_bytes(bytes).ok())
    }

    /// Every header as `(lower-case name, value)`, for prefix matches (`baggage-*`, ...).
    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])>;
}

/// Write access to a set of headers (or gRPC metadata).
pub trait Injector {
    /// Set `name` to `value`, replacing every value it had.
    fn set(&mut self, name: &HeaderName, value: HeaderValue);

    /// Remove every value of `name`.
    fn remove(&mut self, name: &HeaderName);
}

impl Extractor for HeaderMap {
    #[inline]
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        HeaderMap::get(self, name).map(HeaderValue::as_bytes)
    }

    #[inline]
    fn get_all_values<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        HeaderMap::get_all(self, name)
            .into_iter()
            .map(HeaderValue::as_bytes)
    }

    #[inline]
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        HeaderMap::get(self, name).cloned()
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_bytes()))
    }
}

impl Injector for HeaderMap {
    #[inline]
    fn set(&mut self, name: &HeaderName, value: HeaderValue) {
        self.insert(name.clone(), value);
    }

    #[inline]
    fn remove(&mut self, name: &HeaderName) {
        HeaderMap::remove(self, name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::header;

    #[test]
    fn header_map_carrier() {
        let mut h = HeaderMap::new();
        h.append(header::TRACESTATE, HeaderValue::from_static("a=1"));
        h.append(header::TRACESTATE, HeaderValue::from_static("b=2"));
        let all: Vec<&[u8]> = h.get_all_values(&header::TRACESTATE).collect();
        assert_eq!(all, vec![&b"a=1"[..], &b"b=2"[..]]);
        Injector::set(&mut h, &header::TRACESTATE, HeaderValue::from_static("c=3"));
        assert_eq!(h.get_all_values(&header::TRACESTATE).count(), 1);
        Injector::remove(&mut h, &header::TRACESTATE);
        assert!(Extractor::get(&h, &header::TRACESTATE).is_none());
    }
}
