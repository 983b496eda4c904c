//! Property tests: `format(parse(x)) == x` for every codec on valid input, and no decoder
//! (nor the propagator) panics on arbitrary bytes.

use b3_propagation::baggage::BaggageEntry;
use b3_propagation::codec::{
    b3_multi, b3_single, baggage, grpc_trace_bin, jaeger, ot_span_context, traceparent,
};
use b3_propagation::{Propagator, RequestId, Sampling, SpanContext, SpanId, TraceId, TraceState};
use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

fn sampling() -> impl Strategy<Value = Sampling> {
    prop_oneof![
        Just(Sampling::Accept),
        Just(Sampling::Deny),
        Just(Sampling::Debug),
        Just(Sampling::Deferred)
    ]
}

fn trace_id() -> impl Strategy<Value = TraceId> {
    prop_oneof![
        any::<u64>().prop_filter_map("nonzero", TraceId::from_u64),
        any::<u128>().prop_filter_map("nonzero", TraceId::from_u128),
    ]
}

fn span_id() -> impl Strategy<Value = SpanId> {
    any::<u64>().prop_filter_map("nonzero", SpanId::from_u64)
}

fn context() -> impl Strategy<Value = SpanContext> {
    (
        trace_id(),
        span_id(),
        proptest::option::of(span_id()),
        sampling(),
    )
        .prop_map(|(t, s, p, sm)| SpanContext::new(t, s).with_parent(p).with_sampling(sm))
}

fn lower_hex(len: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}")).expect("regex")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn ids_roundtrip(t in prop_oneof![lower_hex(16), lower_hex(32)], s in lower_hex(16)) {
        if let Ok(id) = t.parse::<TraceId>() {
            prop_assert_eq!(id.to_string(), t);
        } else {
            prop_assert!(t.bytes().all(|b| b == b'0'));
        }
        if let Ok(id) = s.parse::<SpanId>() {
            prop_assert_eq!(id.to_string(), s);
        }
    }

    #[test]
    fn b3_single_string_roundtrip(cx in context()) {
        // Every value we write parses back to the same context, and re-writes identically.
        let v = b3_single::encode(&cx).expect("ids");
        let back = b3_single::decode(v.as_bytes()).expect("valid");
        let expected = if cx.sampling() == Sampling::Deferred { cx.with_parent(None) } else { cx };
        prop_assert_eq!(back, expected);
        prop_assert_eq!(b3_single::encode(&back).expect("ids"), v);
    }

    #[test]
    fn b3_multi_roundtrip(cx in context()) {
        let mut h = HeaderMap::new();
        b3_multi::inject(&cx, &mut h);
        prop_assert_eq!(b3_multi::extract(&h).expect("present").expect("valid"), cx);
        let mut h2 = HeaderMap::new();
        b3_multi::inject(&cx, &mut h2);
        prop_assert_eq!(h, h2);
    }

    #[test]
    fn traceparent_string_roundtrip(t in lower_hex(32), s in lower_hex(16), flags in 0u8..4) {
        let v = format!("00-{t}-{s}-{flags:02x}");
        match traceparent::decode(v.as_bytes()) {
            Ok(tp) => prop_assert_eq!(traceparent::encode(&tp.context).expect("ids"), v.as_str()),
            Err(_) => prop_assert!(t.bytes().all(|b| b == b'0') || s.bytes().all(|b| b == b'0')),
        }
    }

    #[test]
    fn tracestate_roundtrip(members in proptest::collection::vec(("[a-z][a-z0-9_*/@-]{0,20}", "[!-+\\--<>-~]{1,20}"), 1..32)) {
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<String> = members.into_iter().filter(|(k, _)| seen.insert(k.clone())).map(|(k, v)| format!("{k}={v}")).collect();
        let line = unique.join(",");
        let ts = TraceState::parse_lines([line.as_bytes()]).expect("valid");
        prop_assert_eq!(ts.header_value().expect("members").to_str().expect("ascii"), line.as_str());
    }

    #[test]
    fn baggage_roundtrip(entries in proptest::collection::vec(("[A-Za-z0-9!#$&'*+.^_`|~-]{1,16}", any::<String>()), 0..20)) {
        let entries: Vec<BaggageEntry> = entries.into_iter().map(|(k, v)| BaggageEntry::new(k, v)).collect();
        let v = baggage::encode(&entries);
        let (back, dropped) = match &v {
            Some(v) => baggage::decode_lines([v.as_bytes()]),
            None => (Default::default(), None),
        };
        prop_assert!(dropped.is_none());
        prop_assert_eq!(back.entries(), entries.as_slice());
    }

    #[test]
    fn request_id_roundtrip(id in "[!-~]{1,255}") {
        let parsed = RequestId::parse(id.as_bytes()).expect("valid");
        prop_assert_eq!(parsed.as_str(), id.as_str());
    }

    #[test]
    fn binary_and_jaeger_roundtrip(cx in context()) {
        let no_parent = cx.with_parent(None);
        let gtb = grpc_trace_bin::decode(grpc_trace_bin::encode(&cx).expect("ids").as_bytes()).expect("valid");
        let expected = match cx.sampling() {
            Sampling::Debug => Sampling::Accept,
            s => s,
        };
        prop_assert_eq!(gtb.trace_id().map(TraceId::to_u128), cx.trace_id().map(TraceId::to_u128));
        prop_assert_eq!(gtb.span_id(), cx.span_id());
        prop_assert_eq!(gtb.sampling(), expected);

        let j = jaeger::decode(jaeger::encode(&cx).expect("ids").as_bytes()).expect("valid");
        let expected = match cx.sampling() {
            Sampling::Deferred => Sampling::Deny,
            s => s,
        };
        prop_assert_eq!(j, no_parent.with_sampling(expected));

        let ot = ot_span_context::decode(ot_span_context::encode(&cx, &[]).expect("ids").as_bytes()).expect("valid");
        prop_assert_eq!(ot.context.span_id(), cx.span_id());
        prop_assert_eq!(ot.context.trace_id().map(TraceId::low), cx.trace_id().map(TraceId::low));
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = b3_single::decode(&bytes);
        let _ = traceparent::decode(&bytes);
        let _ = jaeger::decode(&bytes);
        let _ = grpc_trace_bin::decode(&bytes);
        let _ = grpc_trace_bin::decode_bytes(&bytes);
        let _ = ot_span_context::decode(&bytes);
        let _ = RequestId::parse(&bytes);
        let _ = TraceState::parse_lines([bytes.as_slice()]);
        let _ = baggage::decode_lines([bytes.as_slice()]);
        let _ = baggage::decode_prefixed("baggage-x", &bytes);
        let _ = b3_multi::decode(&b3_multi::B3Headers {
            trace_id: Some(&bytes), span_id: Some(&bytes), parent_span_id: Some(&bytes), sampled: Some(&bytes), flags: Some(&bytes),
        });
    }

    #[test]
    fn propagator_never_panics_and_forwards_no_garbage(
        values in proptest::collection::vec((0usize..16, proptest::collection::vec(0x09u8..0xff, 0..80)), 0..16)
    ) {
        const NAMES: [&str; 16] = [
            "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid", "x-b3-sampled", "x-b3-flags",
            "traceparent", "tracestate", "baggage", "x-request-id", "x-ot-span-context", "grpc-trace-bin",
            "uber-trace-id", "baggage-user", "ot-baggage-x", "uberctx-y",
        ];
        let mut h = HeaderMap::new();
        for (i, v) in values {
            if let Ok(v) = HeaderValue::from_bytes(&v) {
                h.append(HeaderName::from_static(NAMES[i]), v);
            }
        }
        let p = Propagator::default();
        let cx = p.extract(&h);
        let mut out = HeaderMap::new();
        p.forward(&cx, &mut out);
        let span = p.client_span(&p.server_span(cx.remote()));
        p.inject(&span, &cx, &mut out);
        // Nothing written carries a control character (HTAB, legal HTTP whitespace, aside)
        // or a non-ASCII byte.
        for (name, v) in &out {
            prop_assert!(v.as_bytes().iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)), "{}: {:?}", name, v);
        }
    }
}
