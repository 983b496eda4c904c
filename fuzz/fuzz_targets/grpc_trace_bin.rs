//! `grpc-trace-bin` (OpenCensus binary context): decode arbitrary bytes both as the base64
//! header value and as the binary form. A decoded context re-encodes as un-padded standard
//! base64 that decodes to the same context, and the encoding is a fixed point.
#![no_main]

use b3_propagation::codec::grpc_trace_bin;
use b3_propagation::{Sampling, SpanContext};
use fuzz_support::assert_token;
use libfuzzer_sys::fuzz_target;

fn check(cx: &SpanContext) {
    assert!(!cx.is_sampling_only());
    assert!(cx.parent_span_id().is_none());
    assert_ne!(cx.sampling(), Sampling::Debug);
    let v = grpc_trace_bin::encode(cx).expect("a context with ids encodes");
    assert_token("grpc-trace-bin", v.as_bytes());
    assert!(!v.as_bytes().contains(&b'='), "emitted un-padded: {v:?}");
    let back = grpc_trace_bin::decode(v.as_bytes()).expect("our own value must decode");
    assert_eq!(&back, cx, "round trip of {v:?}");
    assert_eq!(grpc_trace_bin::encode(&back).as_ref(), Some(&v));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(cx) = grpc_trace_bin::decode(data) {
        check(&cx);
    }
    if let Ok(cx) = grpc_trace_bin::decode_bytes(data) {
        check(&cx);
    }
});
