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
        let mut map = HeaderMap::new();
        for (name, value) in &headers {
            if let (Ok(n), Ok(v)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
                map.append(n, v);
            }
        }
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
