//! Carriers over tonic's [`MetadataMap`]: [`MetadataExtractor`] and [`MetadataInjector`], so
//! every codec of [`b3_propagation`] reads and writes gRPC metadata unchanged.
//!
//! They are newtypes because neither the carrier traits nor `MetadataMap` belong to this
//! crate. Both know gRPC's two kinds of metadata:
//!
//! - ASCII metadata (`x-b3-traceid`, `traceparent`, `x-request-id`, ...) is read and written
//!   as is;
//! - binary metadata (names ending in `-bin`, here `grpc-trace-bin`) is base64 on the wire and
//!   `MetadataMap` keeps it encoded. The codecs see the **encoded** bytes, as they would in an
//!   `http::HeaderMap` (`grpc_trace_bin::decode` takes base64), and
//!   [`MetadataInjector`] writes a value it is given **verbatim** — no decode / re-encode, so a
//!   forwarded `grpc-trace-bin` reaches the next hop byte for byte (padded or not). A value
//!   that is not base64 is dropped instead of being written under a `-bin` name: gRPC peers
//!   fail the whole call on malformed binary metadata.
//!
//! The interceptors of this crate own the request, so they do not need these types to
//! *extract*: they take the `http::HeaderMap` out of the metadata
//! ([`MetadataMap::into_headers`], a move) and use the core's one-pass `HeaderMap` carrier,
//! which also forwards values without copying them. Use [`MetadataExtractor`] where you only
//! have a `&MetadataMap` (a handler, response metadata, a test).
//!
//! # Example
//!
//! ```
//! use b3_propagation::codec::grpc_trace_bin;
//! use b3_propagation::{Propagator, RequestContext, SpanContext, Sampling};
//! use grpc_interceptor::metadata::{MetadataExtractor, MetadataInjector};
//! use tonic::metadata::MetadataMap;
//!
//! let propagator = Propagator::default();
//! let span = propagator.new_root(Sampling::Accept);
//!
//! // Write x-b3-*, traceparent, and grpc-trace-bin as binary metadata.
//! let mut metadata = MetadataMap::new();
//! propagator.inject(&span, &RequestContext::new(), &mut MetadataInjector::new(&mut metadata));
//! grpc_trace_bin::inject(&span, &mut MetadataInjector::new(&mut metadata));
//! assert!(metadata.get_bin("grpc-trace-bin").is_some());
//!
//! // Read them back.
//! let cx = propagator.extract(&MetadataExtractor::new(&metadata));
//! let remote = cx.remote().unwrap();
//! assert_eq!((remote.trace_id(), remote.span_id()), (span.trace_id(), span.span_id()));
//! let bin = grpc_trace_bin::extract(&MetadataExtractor::new(&metadata)).unwrap()?;
//! assert_eq!(bin.trace_id(), span.trace_id());
//! # Ok::<(), b3_propagation::ParseError>(())
//! ```

use std::fmt;

use b3_propagation::carrier::{Extractor, Injector};
use b3_propagation::codec::grpc_trace_bin;
use http::{HeaderMap, HeaderName, HeaderValue};
use tonic::metadata::MetadataMap;

/// Whether `name` is binary metadata (gRPC: the name ends in `-bin`).
#[inline]
fn is_binary(name: &str) -> bool {
    name.ends_with("-bin")
}

/// Reads tracing headers from a [`MetadataMap`]. See the [module docs](self).
///
/// `-bin` metadata is read in its encoded (base64) form. It reads through the `HeaderMap`
/// under the metadata: a forwarded value is shared, not copied, and the propagator finds
/// every tracing header in one pass ([`Extractor::as_header_map`]).
#[derive(Clone, Copy)]
pub struct MetadataExtractor<'a>(&'a MetadataMap);

impl<'a> MetadataExtractor<'a> {
    /// Read from `metadata`.
    #[inline]
    #[must_use]
    pub fn new(metadata: &'a MetadataMap) -> Self {
        MetadataExtractor(metadata)
    }

    /// The metadata read from.
    #[inline]
    #[must_use]
    pub fn get_ref(&self) -> &'a MetadataMap {
        self.0
    }
}

impl<'a> From<&'a MetadataMap> for MetadataExtractor<'a> {
    #[inline]
    fn from(metadata: &'a MetadataMap) -> Self {
        MetadataExtractor(metadata)
    }
}

impl fmt::Debug for MetadataExtractor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetadataExtractor").field(self.0).finish()
    }
}

/// The `HeaderMap` under `map`: every value as it came on the wire (`-bin` ones base64, as
/// gRPC sends them), shared.
#[inline]
fn headers(map: &MetadataMap) -> &HeaderMap {
    map.as_ref()
}

impl<'m> Extractor for MetadataExtractor<'m> {
    #[inline]
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        Extractor::get(headers(self.0), name)
    }

    fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'm> {
        Extractor::get_all_values(headers(self.0), name)
    }

    #[inline]
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        Extractor::get_value(headers(self.0), name)
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        Extractor::iter_headers(headers(self.0))
    }

    #[inline]
    fn as_header_map(&self) -> Option<&HeaderMap> {
        Some(headers(self.0))
    }
}

/// Writes tracing headers into a [`MetadataMap`]. See the [module docs](self).
///
/// Writes never copy a value: the `HeaderName` and `HeaderValue` given are stored as they are
/// (`set` replaces every value the name had), and the propagator's size hint reserves room
/// for them once ([`Injector::reserve`]). A value set under a `-bin` name is
/// written verbatim and must be base64 as gRPC reads it (padded or not); any other value
/// removes the name instead, since the peer would fail the call on it.
///
/// It also reads (as [`MetadataExtractor`] does), so code can check what it wrote.
pub struct MetadataInjector<'a>(&'a mut MetadataMap);

impl<'a> MetadataInjector<'a> {
    /// Write into `metadata`.
    #[inline]
    #[must_use]
    pub fn new(metadata: &'a mut MetadataMap) -> Self {
        MetadataInjector(metadata)
    }

    /// The metadata written to.
    #[inline]
    #[must_use]
    pub fn get_ref(&self) -> &MetadataMap {
        self.0
    }

    /// The metadata written to, mutably.
    #[inline]
    pub fn get_mut(&mut self) -> &mut MetadataMap {
        self.0
    }

    /// The metadata written to.
    #[inline]
    #[must_use]
    pub fn into_inner(self) -> &'a mut MetadataMap {
        self.0
    }
}

impl<'a> From<&'a mut MetadataMap> for MetadataInjector<'a> {
    #[inline]
    fn from(metadata: &'a mut MetadataMap) -> Self {
        MetadataInjector(metadata)
    }
}

impl fmt::Debug for MetadataInjector<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("MetadataInjector").field(&*self.0).finish()
    }
}

impl<'m> Extractor for MetadataInjector<'m> {
    #[inline]
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        Extractor::get(headers(self.0), name)
    }

    fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'm> {
        Extractor::get_all_values(headers(self.0), name)
    }

    #[inline]
    fn get_value(&self, name: &HeaderName) -> Option<HeaderValue> {
        Extractor::get_value(headers(self.0), name)
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        Extractor::iter_headers(headers(self.0))
    }

    #[inline]
    fn as_header_map(&self) -> Option<&HeaderMap> {
        Some(headers(self.0))
    }
}

impl MetadataInjector<'_> {
    /// Change the `HeaderMap` the metadata wraps: two moves, no copy, no allocation.
    ///
    /// tonic 0.14 builds a `MetadataValue` only by copying (`HeaderValue` gives no `Bytes`
    /// back), and a binary one only from decoded bytes, which it re-encodes. Through the
    /// `HeaderMap`, the value given is stored as it is: shared, and verbatim.
    #[inline]
    fn headers_mut<R>(&mut self, f: impl FnOnce(&mut HeaderMap) -> R) -> R {
        let mut headers = std::mem::take(&mut *self.0).into_headers();
        let r = f(&mut headers);
        *self.0 = MetadataMap::from_headers(headers);
        r
    }
}

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, name: &HeaderName, value: HeaderValue) {
        // A `-bin` value a peer cannot decode would fail the whole call there.
        if is_binary(name.as_str()) && !grpc_trace_bin::is_base64(value.as_bytes()) {
            self.remove(name);
            return;
        }
        self.headers_mut(|h| h.insert(name.clone(), value));
    }

    fn remove(&mut self, name: &HeaderName) {
        self.headers_mut(|h| h.remove(name));
    }

    #[inline]
    fn is_grpc_metadata(&mut self) -> bool {
        true
    }

    fn reserve(&mut self, additional: usize) {
        // Past the map's size limit the values are set one by one (and refused there).
        self.headers_mut(|h| {
            let _ = h.try_reserve(additional);
        });
    }

    fn remove_context_headers(&mut self) {
        // One conversion for all of them.
        self.headers_mut(Injector::remove_context_headers);
    }

    fn remove_opaque_headers(&mut self) {
        self.headers_mut(Injector::remove_opaque_headers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use b3_propagation::codec::grpc_trace_bin;
    use b3_propagation::header;
    use b3_propagation::{
        Baggage, ContextFormat, OpaqueHeader, Propagator, RequestContext, RequestId, Sampling,
        SpanContext,
    };
    use tonic::metadata::{KeyAndValueRef, MetadataValue};

    /// Metadata gets no header gRPC cannot carry (a strict peer fails the call on it): a
    /// prefixed baggage key an HTTP caller sent with `*`, a value with a tab.
    #[test]
    fn metadata_gets_only_what_grpc_carries() {
        let mut received = HeaderMap::new();
        received.insert("x-b3-traceid", HeaderValue::from_static("463ac35c9f6413ad"));
        received.insert("x-b3-spanid", HeaderValue::from_static("a2fb4a1d1a96d312"));
        received.insert("baggage-a*b", HeaderValue::from_static("x"));
        received.insert("baggage-ok", HeaderValue::from_static("fine"));
        received.insert("uberctx-tab", HeaderValue::from_static("a\tb"));
        let p = Propagator::default();
        let cx = p.extract(&received);
        let mut map = MetadataMap::new();
        p.forward(&cx, &mut MetadataInjector::new(&mut map));
        let headers = AsRef::<HeaderMap>::as_ref(&map);
        assert_eq!(headers["baggage-ok"], "fine", "{headers:?}");
        assert_eq!(headers["x-b3-spanid"], "a2fb4a1d1a96d312", "{headers:?}");
        assert!(!headers.contains_key("baggage-a*b"), "{headers:?}");
        assert!(!headers.contains_key("uberctx-tab"), "{headers:?}");
    }

    /// The extractor reads the `HeaderMap` under the metadata: a forwarded value is the
    /// received one, shared (not a copy), and the propagator gets the map for its one-pass
    /// capture.
    #[test]
    fn reads_share_the_received_values() {
        let mut map = MetadataMap::new();
        map.insert("x-b3-traceid", "463ac35c9f6413ad".parse().expect("ascii"));
        map.insert_bin(
            "grpc-trace-bin",
            MetadataValue::from_bytes(&[
                0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
            ]),
        );
        let ex = MetadataExtractor::new(&map);
        assert!(std::ptr::eq(
            ex.as_header_map().expect("the map"),
            AsRef::<HeaderMap>::as_ref(&map)
        ));
        for name in [header::X_B3_TRACE_ID, header::GRPC_TRACE_BIN] {
            let got = ex.get_value(&name).expect("present");
            let held = AsRef::<HeaderMap>::as_ref(&map)
                .get(&name)
                .expect("present");
            assert_eq!(
                got.as_bytes().as_ptr(),
                held.as_bytes().as_ptr(),
                "{name}: shared"
            );
            assert_eq!(ex.get(&name), Some(held.as_bytes()), "{name}: encoded form");
        }
    }

    /// Every header the core knows, and prefixed baggage.
    fn all_headers() -> Vec<HeaderName> {
        vec![
            header::B3,
            header::X_B3_TRACE_ID,
            header::X_B3_SPAN_ID,
            header::X_B3_PARENT_SPAN_ID,
            header::X_B3_SAMPLED,
            header::X_B3_FLAGS,
            header::TRACEPARENT,
            header::TRACESTATE,
            header::TRACERESPONSE,
            header::BAGGAGE,
            header::X_REQUEST_ID,
            header::X_OT_SPAN_CONTEXT,
            header::GRPC_TRACE_BIN,
            header::UBER_TRACE_ID,
            header::X_CLOUD_TRACE_CONTEXT,
            header::SW8,
            header::X_DATADOG_TRACE_ID,
            header::X_DATADOG_PARENT_ID,
            header::X_DATADOG_SAMPLING_PRIORITY,
            header::X_ENVOY_FORCE_TRACE,
            header::X_CLIENT_TRACE_ID,
            HeaderName::from_static("baggage-user"),
            HeaderName::from_static("ot-baggage-tenant"),
            HeaderName::from_static("uberctx-region"),
        ]
    }

    const TRACE_BIN: &str = "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE=";

    #[test]
    fn every_header_round_trips() {
        for name in all_headers() {
            let value = if is_binary(name.as_str()) {
                HeaderValue::from_static(TRACE_BIN)
            } else {
                HeaderValue::from_static("v-1")
            };
            let mut map = MetadataMap::new();
            MetadataInjector::new(&mut map).set(&name, value.clone());
            assert_eq!(map.len(), 1, "{name}");
            // tonic sees it as the right kind of metadata.
            if is_binary(name.as_str()) {
                assert!(map.get_bin(name.as_str()).is_some(), "{name}");
            } else {
                assert_eq!(map.get(name.as_str()).unwrap(), "v-1", "{name}");
            }
            let ex = MetadataExtractor::new(&map);
            assert_eq!(ex.get(&name), Some(value.as_bytes()), "{name}");
            assert_eq!(ex.get_value(&name).as_ref(), Some(&value), "{name}");
            assert_eq!(
                ex.get_all_values(&name).collect::<Vec<_>>(),
                [value.as_bytes()],
                "{name}"
            );
            assert_eq!(
                ex.iter_headers().collect::<Vec<_>>(),
                [(name.as_str(), value.as_bytes())],
                "{name}"
            );
            MetadataInjector::new(&mut map).remove(&name);
            assert!(map.is_empty(), "{name}");
        }
    }

    #[test]
    fn set_replaces_every_value_and_reads_all() {
        let mut map = MetadataMap::new();
        map.append("tracestate", MetadataValue::from_static("a=1"));
        map.append("tracestate", MetadataValue::from_static("b=2"));
        map.append_bin("grpc-trace-bin", MetadataValue::from_bytes(b"one"));
        map.append_bin("grpc-trace-bin", MetadataValue::from_bytes(b"two"));
        let ex = MetadataExtractor::new(&map);
        assert_eq!(
            ex.get_all_values(&header::TRACESTATE).collect::<Vec<_>>(),
            [&b"a=1"[..], b"b=2"]
        );
        assert_eq!(
            ex.get_all_values(&header::GRPC_TRACE_BIN)
                .collect::<Vec<_>>(),
            [&b"b25l"[..], b"dHdv"] // encoded
        );
        let mut inj = MetadataInjector::new(&mut map);
        inj.set(&header::TRACESTATE, HeaderValue::from_static("c=3"));
        inj.set(&header::GRPC_TRACE_BIN, HeaderValue::from_static("dGhyZWU"));
        assert_eq!(inj.get_all_values(&header::TRACESTATE).count(), 1);
        assert_eq!(inj.get_all_values(&header::GRPC_TRACE_BIN).count(), 1);
        assert_eq!(
            map.get_bin("grpc-trace-bin").unwrap().to_bytes().unwrap(),
            &b"three"[..]
        );
    }

    #[test]
    fn binary_values_are_kept_verbatim() {
        for encoded in [
            TRACE_BIN,                                 // padded
            "AABL+S81d7NNpqPOkp0ADkc2ATTwZ6oLqQK3AgE", // unpadded
            "",
        ] {
            let mut map = MetadataMap::new();
            MetadataInjector::new(&mut map)
                .set(&header::GRPC_TRACE_BIN, HeaderValue::from_static(encoded));
            let v = map.get_bin("grpc-trace-bin").unwrap();
            assert_eq!(v.as_encoded_bytes(), encoded.as_bytes());
            if !encoded.is_empty() {
                let cx = grpc_trace_bin::decode(v.as_encoded_bytes()).unwrap();
                assert_eq!(
                    cx.trace_id().unwrap().to_string(),
                    "4bf92f3577b34da6a3ce929d000e4736"
                );
                assert_eq!(&v.to_bytes().unwrap()[..2], &[0, 0]);
            }
        }
        // The encoder's output reaches tonic as tonic itself would have encoded it.
        let span = Propagator::default().new_root(Sampling::Accept);
        let mut map = MetadataMap::new();
        grpc_trace_bin::inject(&span, &mut MetadataInjector::new(&mut map));
        let ours = map.get_bin("grpc-trace-bin").unwrap();
        let tonics = MetadataValue::from_bytes(&ours.to_bytes().unwrap());
        assert_eq!(ours.as_encoded_bytes(), tonics.as_encoded_bytes());
        let back = grpc_trace_bin::extract(&MetadataExtractor::new(&map))
            .unwrap()
            .unwrap();
        // (grpc-trace-bin has no W3C `random` flag: compare what it carries.)
        assert_eq!(back.trace_id(), span.trace_id());
        assert_eq!(back.span_id(), span.span_id());
        assert_eq!(back.sampling(), span.sampling());
    }

    #[test]
    fn invalid_base64_is_never_written_under_a_bin_name() {
        for bad in ["not base64!", "A", "AB=C", "AAAA====="] {
            let mut map = MetadataMap::new();
            map.insert_bin("grpc-trace-bin", MetadataValue::from_bytes(b"old"));
            MetadataInjector::new(&mut map)
                .set(&header::GRPC_TRACE_BIN, HeaderValue::from_static(bad));
            assert!(map.is_empty(), "{bad}");
        }
        // The check is for -bin names only.
        let mut map = MetadataMap::new();
        MetadataInjector::new(&mut map).set(&header::B3, HeaderValue::from_static("A"));
        assert_eq!(map.get("b3").unwrap(), "A");
    }

    #[test]
    fn inject_leaves_no_other_context_in_the_metadata() {
        // Metadata copied from the incoming call by hand: another span in `b3`, a binary
        // context. Inject writes its own, and nothing else names a span.
        let mut map = MetadataMap::new();
        map.insert(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"
                .parse()
                .unwrap(),
        );
        map.insert_bin(
            "grpc-trace-bin",
            MetadataValue::from_bytes(&[
                0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 1, 2, 3, 4, 5, 6,
                7, 8, 2, 1,
            ]),
        );
        map.insert("x-tenant", "t-1".parse().unwrap());
        let p = Propagator::default();
        let span = SpanContext::new_root(Sampling::Accept);
        p.inject(
            &span,
            &RequestContext::new(),
            &mut MetadataInjector::new(&mut map),
        );
        assert!(map.get("b3").is_none(), "{map:?}");
        assert!(map.get_bin("grpc-trace-bin").is_none(), "{map:?}");
        assert_eq!(map.get("x-tenant").unwrap(), "t-1");
        assert_eq!(
            map.get("x-b3-spanid").unwrap().to_str().unwrap(),
            span.span_id().unwrap().to_string()
        );
    }

    #[test]
    fn long_binary_values_are_checked_too() {
        let long = "QUJD".repeat(1000); // 3000 bytes decoded: past the stack buffer
        assert!(grpc_trace_bin::is_base64(long.as_bytes()));
        assert!(!grpc_trace_bin::is_base64(format!("{long}!").as_bytes()));
    }

    /// A request context with every kind of header.
    fn everything() -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in [
            (
                "b3",
                "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
            ),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-sampled", "1"),
            (
                "traceparent",
                "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
            ),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
            (
                "uber-trace-id",
                "80f198ee56343ba864fe8b2a57d3eff7:e457b5a2e4d86bd1:0:1",
            ),
            ("baggage", "user=alice,tenant=t%201"),
            ("baggage-region", "eu"),
            ("x-request-id", "4f9cf65f-1b6a-4c3b-8d0e-2a7c9b1e5d43"),
            ("x-ot-span-context", "EhQJnDGAHCHrSIQRMTMgaXFrrbcYAQ=="),
            ("grpc-trace-bin", TRACE_BIN),
        ] {
            h.append(k, HeaderValue::from_static(v));
        }
        h
    }

    fn propagators() -> Vec<Propagator> {
        vec![
            Propagator::default(),
            Propagator::builder()
                .extract(ContextFormat::ALL)
                .inject(ContextFormat::ALL)
                .opaque(OpaqueHeader::ALL)
                .build(),
            Propagator::builder()
                .extract([ContextFormat::GrpcTraceBin, ContextFormat::TraceParent])
                .inject([ContextFormat::GrpcTraceBin])
                .build(),
        ]
    }

    #[test]
    fn extract_from_metadata_equals_extract_from_headers() {
        for p in propagators() {
            let headers = everything();
            let metadata = MetadataMap::from_headers(headers.clone());
            let from_headers = p.extract(&headers);
            let from_metadata = p.extract(&MetadataExtractor::new(&metadata));
            assert!(
                from_metadata.errors().is_empty(),
                "{:?}",
                from_metadata.errors()
            );
            assert_eq!(format!("{from_headers:?}"), format!("{from_metadata:?}"));
        }
    }

    #[test]
    fn forward_into_metadata_is_verbatim() {
        for p in propagators() {
            let headers = everything();
            let cx = p.extract(&headers);
            let mut out = MetadataMap::new();
            p.forward(&cx, &mut MetadataInjector::new(&mut out));
            let out = out.into_headers();
            for (name, value) in &out {
                if name == "tracestate" {
                    // Two lines in, one out: the same members.
                    assert_eq!(value, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
                    continue;
                }
                if name.as_str().starts_with("baggage") {
                    continue; // re-encoded from the parsed baggage
                }
                assert_eq!(Some(value), headers.get(name), "{name}");
            }
            assert_eq!(out["grpc-trace-bin"], TRACE_BIN);
            assert_eq!(out["x-request-id"], headers["x-request-id"]);
        }
    }

    #[test]
    fn inject_then_extract_round_trips() {
        for p in propagators() {
            let span = p.new_root(Sampling::Accept);
            let mut cx = RequestContext::from_span(span);
            cx.set_request_id(RequestId::generate());
            let mut bag = Baggage::new();
            bag.insert("user", "alice");
            *cx.baggage_mut() = bag;
            let mut metadata = MetadataMap::new();
            p.inject(&span, &cx, &mut MetadataInjector::new(&mut metadata));
            let back = p.extract(&MetadataExtractor::new(&metadata));
            assert!(back.errors().is_empty(), "{:?}", back.errors());
            let remote = back.remote().unwrap();
            assert_eq!(remote.trace_id(), span.trace_id());
            assert_eq!(remote.span_id(), span.span_id());
            assert_eq!(back.request_id(), cx.request_id());
            assert_eq!(back.baggage().get("user"), Some("alice"));
        }
    }

    /// A tiny deterministic generator: no dependency, reproducible failures.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
            let len = (self.next() % (max as u64 + 1)) as usize;
            (0..len)
                .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
                .collect()
        }
    }

    #[test]
    fn no_panic_on_any_key_or_value() {
        let name_chars = b"abcdefghijklmnopqrstuvwxyz0123456789-_.!#$%&'*+^`|~";
        let value_bytes: Vec<u8> = (0..=255).collect();
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let fixed = all_headers();
        for i in 0..5_000 {
            let mut name = rng.bytes(name_chars, 20);
            if i % 3 == 0 {
                name.extend_from_slice(b"-bin");
            }
            let Ok(name) = HeaderName::from_bytes(&name) else {
                continue;
            };
            let value = rng.bytes(&value_bytes, 40);
            let Ok(value) = HeaderValue::from_bytes(&value) else {
                continue;
            };
            let mut map = MetadataMap::new();
            let mut inj = MetadataInjector::new(&mut map);
            inj.set(&name, value.clone());
            inj.set(&fixed[i % fixed.len()], value.clone());
            for n in [&name, &fixed[i % fixed.len()]] {
                let _ = inj.get(n);
                let _ = inj.get_value(n);
                let _ = inj.get_all_values(n).count();
            }
            let _ = inj.iter_headers().count();
            // Whatever was written, tonic can read it back as metadata.
            for entry in map.iter() {
                if let KeyAndValueRef::Binary(_, v) = entry {
                    assert!(v.to_bytes().is_ok(), "{name}: {value:?}");
                }
            }
            // And the propagators cope with it.
            for p in propagators() {
                let cx = p.extract(&MetadataExtractor::new(&map));
                p.forward(&cx, &mut MetadataInjector::new(&mut MetadataMap::new()));
            }
            MetadataInjector::new(&mut map).remove(&name);
        }
    }

    #[test]
    fn debug_shows_the_metadata() {
        let mut map = MetadataMap::new();
        map.insert("b3", MetadataValue::from_static("1"));
        assert!(format!("{:?}", MetadataExtractor::from(&map)).contains("b3"));
        assert!(format!("{:?}", MetadataInjector::from(&mut map)).contains("b3"));
    }
}
