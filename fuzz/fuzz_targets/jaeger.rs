//! Jaeger `uber-trace-id`: decode arbitrary bytes; a decoded context re-encodes as
//! `{trace}:{span16}:0:{flags}` in visible ASCII that decodes to the same context at the
//! same trace-id width, and the encoding is a fixed point.
#![no_main]

use b3_propagation::Sampling;
use b3_propagation::codec::jaeger;
use fuzz_support::assert_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cx) = jaeger::decode(data) else {
        return;
    };
    assert!(cx.parent_span_id().is_none(), "the parent is not reported");
    assert_ne!(cx.sampling(), Sampling::Deferred, "flags are mandatory");
    let v = jaeger::encode(&cx).expect("a context with ids encodes");
    assert_token("uber-trace-id", v.as_bytes());
    let fields: Vec<&[u8]> = v.as_bytes().split(|&b| b == b':').collect();
    assert_eq!(fields.len(), 4, "{v:?}");
    assert!(
        matches!(fields[0].len(), 16 | 32) && fields[1].len() == 16,
        "{v:?}"
    );
    assert_eq!(fields[2], b"0");
    let back = jaeger::decode(v.as_bytes()).expect("our own value must decode");
    assert_eq!(back, cx, "round trip of {v:?}");
    assert_eq!(
        back.trace_id().map(|t| t.is_64bit()),
        cx.trace_id().map(|t| t.is_64bit()),
        "trace-id width changed: {v:?}"
    );
    assert_eq!(jaeger::encode(&back).as_ref(), Some(&v));
});
