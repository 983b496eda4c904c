//! `x-ot-span-context` (base64 LightStep `BinaryCarrier`): decode arbitrary bytes; a
//! decoded value re-encodes as padded standard base64 that decodes to the same 64-bit
//! context and baggage items, and the encoding is a fixed point.
#![no_main]

use b3_propagation::Sampling;
use b3_propagation::baggage::BaggageOrigin;
use b3_propagation::codec::ot_span_context;
use fuzz_support::assert_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ot) = ot_span_context::decode(data) else {
        return;
    };
    let cx = ot.context;
    assert!(cx.trace_id().is_some_and(|t| t.is_64bit()), "64-bit only");
    assert!(cx.parent_span_id().is_none());
    assert!(matches!(cx.sampling(), Sampling::Accept | Sampling::Deny));
    assert!(
        ot.baggage
            .iter()
            .all(|e| e.origin == BaggageOrigin::OtSpanContext)
    );
    assert!(
        ot.baggage.windows(2).all(|w| w[0].key < w[1].key),
        "sorted, unique keys"
    );

    let v = ot_span_context::encode(&cx, &ot.baggage).expect("a context with ids encodes");
    assert_token("x-ot-span-context", v.as_bytes());
    assert_eq!(v.len() % 4, 0, "standard base64 with padding: {v:?}");
    let back = ot_span_context::decode(v.as_bytes()).expect("our own value must decode");
    assert_eq!(back, ot, "round trip of {v:?}");
    assert_eq!(
        ot_span_context::encode(&back.context, &back.baggage).as_ref(),
        Some(&v)
    );
});
