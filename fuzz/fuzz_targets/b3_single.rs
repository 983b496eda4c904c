//! `b3` single header: decode arbitrary bytes; a decoded context re-encodes to visible
//! ASCII that decodes to the same context (the parent of a deferred context is dropped on
//! inject, FACTS §3), at the received trace-id width; the encoding is a fixed point and
//! equals the input unless the policy dropped a parent.
#![no_main]

use b3_propagation::Sampling;
use b3_propagation::codec::b3_single;
use fuzz_support::assert_token;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cx) = b3_single::decode(data) else {
        return;
    };
    let v = b3_single::encode(&cx).expect("a decoded b3 context always has something to say");
    assert_token("b3", v.as_bytes());
    assert!(v.len() <= b3_single::MAX_LEN, "b3 longer than 68: {v:?}");
    let mut buf = [0u8; b3_single::MAX_LEN];
    assert_eq!(b3_single::encode_to(&cx, &mut buf).as_bytes(), v.as_bytes());

    let back = b3_single::decode(v.as_bytes()).expect("our own b3 value must decode");
    let expected = if cx.sampling() == Sampling::Deferred {
        cx.with_parent(None)
    } else {
        cx
    };
    assert_eq!(back, expected, "round trip of {v:?}");
    assert_eq!(
        back.trace_id().map(|t| t.is_64bit()),
        cx.trace_id().map(|t| t.is_64bit()),
        "trace-id width changed: {v:?}"
    );
    assert_eq!(
        b3_single::encode(&back).as_ref(),
        Some(&v),
        "not a fixed point"
    );
    // The grammar is strict (lower-hex, exact lengths), so a valid value is re-emitted
    // byte for byte, except for the parents the policy drops (all-zero, or deferred).
    let parent_dropped = data.ends_with(b"-0000000000000000")
        || (cx.sampling() == Sampling::Deferred && cx.parent_span_id().is_some());
    if !parent_dropped {
        assert_eq!(v.as_bytes(), data, "valid b3 not re-emitted verbatim");
    }
});
