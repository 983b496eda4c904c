//! `traceparent`: decode arbitrary bytes; a decoded value re-encodes as a 55-byte version-00
//! value of visible ASCII that decodes to the same context (random flag included), the ids
//! re-emitted verbatim; the encoding is a fixed point.
#![no_main]

use b3_propagation::codec::traceparent;
use fuzz_support::assert_token;
use libfuzzer_sys::fuzz_target;

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fuzz_target!(|data: &[u8]| {
    let Ok(tp) = traceparent::decode(data) else {
        return;
    };
    assert_ne!(tp.version, 0xff, "version ff is forbidden");
    let v = traceparent::encode(&tp.context).expect("a decoded context always has ids");
    assert_token("traceparent", v.as_bytes());
    assert_eq!(v.len(), traceparent::LEN, "{v:?}");
    assert!(
        v.as_bytes().starts_with(b"00-"),
        "re-emitted as version 00: {v:?}"
    );
    let mut buf = [0u8; traceparent::LEN];
    assert_eq!(
        traceparent::encode_to(&tp.context, &mut buf).map(str::as_bytes),
        Some(v.as_bytes())
    );

    let back = traceparent::decode(v.as_bytes()).expect("our own traceparent must decode");
    assert_eq!(back.version, 0);
    assert_eq!(back.context, tp.context, "round trip of {v:?}");
    assert_eq!(
        back.context.trace_flags(),
        tp.context.trace_flags(),
        "flags changed: {v:?}"
    );
    assert_eq!(traceparent::encode(&back.context).as_ref(), Some(&v));

    // Trace id and parent id are strict lower-hex: re-emitted exactly as received.
    let received = trim_ows(data);
    assert_eq!(
        &v.as_bytes()[2..53],
        &received[2..53],
        "ids not re-emitted verbatim"
    );
});
