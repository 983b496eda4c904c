//! The span-only extract of a `HeaderMap` finds the context headers in one walk over the map
//! (or by lookups in a large one); it must give exactly the answer of the plain path, one
//! `Extractor` lookup per name in the extract order: the same context, format and errors, for
//! every extract order and trust policy, with repeated, invalid and absent headers.

use b3_propagation::{ContextFormat, Extractor, ParseError, Propagator, SpanContext, TrustPolicy};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

/// A `HeaderMap` seen only through the [`Extractor`] trait, without the one-pass scan.
struct Plain<'a>(&'a HeaderMap);

impl<'b> Extractor for Plain<'b> {
    fn get(&self, name: &HeaderName) -> Option<&[u8]> {
        Extractor::get(self.0, name)
    }

    fn get_all_values<'a>(
        &'a self,
        name: &HeaderName,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'b> {
        self.0.get_all_values(name)
    }

    fn iter_headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter_headers()
    }
}

/// Each context header with valid, invalid and edge-case values.
#[rustfmt::skip]
const CONTEXT: &[(&str, &[&str])] = &[
    ("b3", &["463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1-0020000000000001", "a2fb4a1d1a96d312-a2fb4a1d1a96d312", "0", "d", "1", "", "x", "463ac35c9f6413ad-0000000000000000"]),
    ("x-b3-traceid", &["463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312", "463AC35C9F6413AD", "", "00000000000000000000000000000000", "463ac35c9f6413ad4848"]),
    ("x-b3-spanid", &["a2fb4a1d1a96d312", "0000000000000000", "a2fb4a1d1a96d31", "a2fb4a1d1a96d31g"]),
    ("x-b3-parentspanid", &["0020000000000001", "0000000000000000", "-", ""]),
    ("x-b3-sampled", &["1", "0", "true", "False", "d", ""]),
    ("x-b3-flags", &["1", "0", "2"]),
    ("traceparent", &["00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01", "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-00", "cc-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-03-x", " 00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01\t", "ff-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01", "00-00000000000000000000000000000000-a2fb4a1d1a96d312-01", "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-0g", "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01-"]),
    ("uber-trace-id", &["463ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1", "a2fb4a1d1a96d312:0:0:0", "x"]),
    ("grpc-trace-bin", &["AABGOsNcn2QTrUhIWjlTu2EkAaL7Sh0altMSAgE", "AAB", "!"]),
];

/// Names that look like context headers but are not, and ordinary headers.
const OTHER: &[&str] = &[
    "b4",
    "x-b3-flag",
    "x-b3-spanid2",
    "x-b3-traceie",
    "x-b3-sampleD",
    "x-b3-parentspanix",
    "x-b4-traceid",
    "tracestate",
    "traceparens",
    "uber-trace-ie",
    "grpc-trace-bim",
    "host",
    "user-agent",
    "accept",
    "content-type",
    "content-length",
    "x-request-id",
    "x-forwarded-proto",
    "x-forwarded-for",
    "x-envoy-attempt-count",
    "baggage",
];

fn header() -> impl Strategy<Value = (String, String)> {
    let context = (0..CONTEXT.len(), any::<prop::sample::Index>()).prop_map(|(i, v)| {
        let (name, values) = CONTEXT[i];
        (name.to_owned(), v.get(values).to_string())
    });
    let other = (
        prop_oneof![
            prop::sample::select(OTHER).prop_map(str::to_owned),
            (0..40u8).prop_map(|i| format!("x-filler-{i}")),
        ],
        "[ -~]{0,8}",
    );
    prop_oneof![2 => context, 3 => other, 1 => ((0..CONTEXT.len()), "[ -~]{0,60}").prop_map(|(i, v)| (CONTEXT[i].0.to_owned(), v))]
}

fn order() -> impl Strategy<Value = Vec<ContextFormat>> {
    Just(ContextFormat::ALL.to_vec())
        .prop_shuffle()
        .prop_flat_map(|all| (1..=all.len()).prop_map(move |n| all[..n].to_vec()))
}

fn trust() -> impl Strategy<Value = TrustPolicy> {
    prop_oneof![
        Just(TrustPolicy::trusted()),
        Just(TrustPolicy::untrusted()),
        Just(TrustPolicy::keep_request_id_only()),
    ]
}

/// The header lines a strategy drew, as a `HeaderMap` (lines that are not valid HTTP left out).
fn map_of(headers: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            map.append(n, v);
        }
    }
    map
}

type SpanOnly = (Option<(SpanContext, ContextFormat)>, Vec<ParseError>);

fn span_only(p: &Propagator, carrier: &impl Extractor) -> SpanOnly {
    let mut errors = Vec::new();
    let span = p.extract_span(carrier, |e| errors.push(e));
    (span, errors)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn scan_agrees_with_lookups(
        headers in prop::collection::vec(header(), 0..64),
        order in order(),
        trust in trust(),
    ) {
        let map = map_of(&headers);
        for p in [
            Propagator::default(),
            Propagator::builder().extract(order).trust(trust).build(),
        ] {
            prop_assert_eq!(span_only(&p, &map), span_only(&p, &Plain(&map)), "{:?}", map);
        }
    }
}

#[test]
fn repeated_traceparent_is_refused_by_both_paths() {
    let tp = "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01";
    let mut map = HeaderMap::new();
    map.append("traceparent", HeaderValue::from_static(tp));
    map.append("traceparent", HeaderValue::from_static(tp));
    let p = Propagator::default();
    let (span, errors) = span_only(&p, &map);
    assert!(span.is_none());
    assert_eq!(errors.len(), 1);
    assert_eq!(span_only(&p, &map), span_only(&p, &Plain(&map)));
}

#[test]
fn large_maps_agree_too() {
    // Past the walk's size limit the context headers are looked up: same answers.
    for extra in [0, 10, 30, 100] {
        let mut map = HeaderMap::new();
        for i in 0..extra {
            map.insert(
                HeaderName::try_from(format!("x-filler-{i}")).unwrap(),
                HeaderValue::from_static("1"),
            );
        }
        map.insert("x-b3-sampled", HeaderValue::from_static("0"));
        map.insert(
            "traceparent",
            HeaderValue::from_static("00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01"),
        );
        let p = Propagator::default();
        let (span, format) = p.extract_span(&map, |_| {}).unwrap();
        assert_eq!(format, ContextFormat::B3Multi, "{extra} extra headers");
        assert!(span.is_sampling_only());
        assert_eq!(span_only(&p, &map), span_only(&p, &Plain(&map)));
    }
}

/// Everything else a full extract reads: `tracestate`, baggage (W3C and prefixed), the
/// request id, a propagated field, opaque headers; valid, invalid and repeated.
#[rustfmt::skip]
const REST: &[(&str, &[&str])] = &[
    ("tracestate", &["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE,rojo=1", "=x", "a=1,a=2", ""]),
    ("baggage", &["user=alice", "user=alice;p=1,tenant=blue", "=x", "k=%ZZ", "a=1,b"]),
    ("baggage-user", &["alice", "bob", "a\tb"]),
    ("ot-baggage-tenant", &["blue"]),
    ("uberctx-k", &["v"]),
    ("x-request-id", &["4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43", "abc", "", "a b"]),
    ("end-user", &["jason", "", "a\u{7f}"]),
    ("x-ot-span-context", &["463ac35c9f6413ad;a2fb4a1d1a96d312;0000000000000000;cs", "!"]),
    ("sw8", &["1-MQ==-NQ==-3-bWVzaA==-aW5zdGFuY2U=-L2FwaS92MS9oZWFsdGg=-ZXhhbXBsZS5jb206ODA4MA==", "x"]),
    ("x-datadog-trace-id", &["1234", "x"]),
    ("x-datadog-parent-id", &["5678"]),
    ("x-cloud-trace-context", &["105445aa7843bc8bf206b12000100000/1;o=1", "x"]),
];

fn full_header() -> impl Strategy<Value = (String, String)> {
    let rest = (0..REST.len(), any::<prop::sample::Index>()).prop_map(|(i, v)| {
        let (name, values) = REST[i];
        (name.to_owned(), v.get(values).to_string())
    });
    prop_oneof![3 => header(), 2 => rest]
}

/// What two contexts say, as a user reads it, and what forward mode sends for them.
fn observed(p: &Propagator, cx: &b3_propagation::RequestContext) -> String {
    let mut forwarded = HeaderMap::new();
    p.forward(cx, &mut forwarded);
    let mut sent: Vec<_> = forwarded
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    sent.sort();
    format!(
        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        cx.remote(),
        cx.source(),
        cx.received_formats(),
        cx.tracestate(),
        cx.request_id(),
        cx.baggage().entries(),
        cx.fields().collect::<Vec<_>>(),
        cx.errors(),
        sent,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// The full extract of a `HeaderMap` (captured in one pass, decoded when first needed)
    /// says and forwards exactly what the plain path (everything decoded at once, one lookup
    /// per name) does; so does an extract into a context that held another request's
    /// (`extract_into`, which replaces all of it).
    #[test]
    fn captured_extract_agrees_with_lookups(
        headers in prop::collection::vec(full_header(), 0..48),
        before in prop::collection::vec(full_header(), 0..24),
        order in order(),
        trust in trust(),
    ) {
        let map = map_of(&headers);
        let previous = map_of(&before);
        let end_user = b3_propagation::PropagatedField::from_static("end-user");
        for p in [
            Propagator::default(),
            Propagator::builder()
                .extract(order)
                .opaque(b3_propagation::OpaqueHeader::ALL)
                .field(end_user)
                .trust(trust)
                .build(),
        ] {
            let plain = observed(&p, &p.extract(&Plain(&map)));
            prop_assert_eq!(observed(&p, &p.extract(&map)), plain.clone(), "{:?}", map);

            // The previous request's context, used: decoded, its own span set, an id made.
            let mut cx = p.extract(&previous);
            let _ = observed(&p, &cx);
            cx.set_local(SpanContext::new_root(b3_propagation::Sampling::Accept));
            cx.ensure_request_id();
            p.extract_into(&map, &mut cx);
            prop_assert_eq!(cx.local(), None);
            prop_assert_eq!(observed(&p, &cx), plain, "{:?} into {:?}", map, previous);
        }
    }
}

/// More tracing headers than the capture keeps inline, some repeated: the same answers.
#[test]
fn captured_overflow_agrees_with_lookups() {
    let mut map = HeaderMap::new();
    for (name, value) in [
        ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"),
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", "0020000000000001"),
        ("x-b3-sampled", "1"),
        ("x-b3-flags", "1"),
        ("b3", "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-1"),
        (
            "traceparent",
            "00-463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-01",
        ),
        ("tracestate", "rojo=1"),
        ("tracestate", "congo=2"),
        ("baggage", "user=alice"),
        (
            "uber-trace-id",
            "463ac35c9f6413ad48485a3953bb6124:a2fb4a1d1a96d312:0:1",
        ),
        (
            "x-ot-span-context",
            "463ac35c9f6413ad;a2fb4a1d1a96d312;0000000000000000;cs",
        ),
        ("x-datadog-trace-id", "1234"),
        ("x-datadog-parent-id", "5678"),
        ("baggage-tenant", "blue"),
        ("baggage", "tenant=blue"),
    ] {
        map.append(name, HeaderValue::from_static(value));
    }
    let p = Propagator::builder()
        .extract(ContextFormat::ALL)
        .opaque(b3_propagation::OpaqueHeader::ALL)
        .build();
    let lazy = p.extract(&map);
    assert_eq!(observed(&p, &lazy), observed(&p, &p.extract(&Plain(&map))));
    assert_eq!(lazy.tracestate().header_value().unwrap(), "rojo=1,congo=2");
    assert_eq!(lazy.baggage().get("tenant"), Some("blue"));
    assert_eq!(
        lazy.received_header(&b3_propagation::header::X_OT_SPAN_CONTEXT),
        map.get("x-ot-span-context")
    );
}
