//! `x-b3-*`: the five header values from header lines (raw bytes for `decode`, then an
//! `http::HeaderMap` for `extract`). A decoded context injects visible-ASCII headers that
//! extract to the same context, also when injected over the received headers (stale
//! `x-b3-parentspanid` / `x-b3-sampled` must be removed), and inject is a fixed point.
#![no_main]

use b3_propagation::codec::b3_multi::{self, B3Headers};
use b3_propagation::{Sampling, SpanContext, header};
use fuzz_support::{assert_token, header_lines, header_map};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;

fn check_injected(cx: &SpanContext, out: &HeaderMap) {
    for (name, value) in out {
        assert!(
            name.as_str().starts_with("x-b3-"),
            "unexpected header {name}"
        );
        assert_token(name.as_str(), value.as_bytes());
    }
    let widths = |c: &SpanContext| c.trace_id().map(|t| t.is_64bit());
    match (cx.trace_id(), cx.span_id()) {
        (Some(t), Some(s)) => {
            assert_eq!(
                out[&header::X_B3_TRACE_ID].as_bytes(),
                t.to_hex().as_bytes()
            );
            assert_eq!(out[&header::X_B3_SPAN_ID].as_bytes(), s.to_hex().as_bytes());
        }
        _ => assert!(out.get(&header::X_B3_TRACE_ID).is_none()),
    }
    // Debug is sent as `x-b3-flags: 1` alone, never next to `x-b3-sampled` (FACTS §2).
    if cx.sampling() == Sampling::Debug {
        assert_eq!(out[&header::X_B3_FLAGS], "1");
        assert!(out.get(&header::X_B3_SAMPLED).is_none());
    }
    let back = b3_multi::extract(out)
        .expect("injected headers are present")
        .expect("our own x-b3-* headers must decode");
    assert_eq!(&back, cx, "round trip of {out:?}");
    assert_eq!(widths(&back), widths(cx), "trace-id width changed: {out:?}");
}

fuzz_target!(|data: &[u8]| {
    // Raw bytes, NUL and non-ASCII included: first value of each name wins.
    let mut raw = B3Headers::default();
    for (name, value) in header_lines(data) {
        let slot = match name.to_ascii_lowercase().as_slice() {
            b"x-b3-traceid" => &mut raw.trace_id,
            b"x-b3-spanid" => &mut raw.span_id,
            b"x-b3-parentspanid" => &mut raw.parent_span_id,
            b"x-b3-sampled" => &mut raw.sampled,
            b"x-b3-flags" => &mut raw.flags,
            _ => continue,
        };
        slot.get_or_insert(value);
    }
    let raw_result = b3_multi::decode(&raw);

    let received = header_map(data);
    let extracted = b3_multi::extract(&received);
    // Same bytes, same answer (when every value was a valid HeaderValue).
    if B3Headers::read(&received) == raw {
        assert_eq!(
            extracted.as_ref().map(|r| r.as_ref().ok()),
            raw_result.as_ref().map(|r| r.as_ref().ok())
        );
    }
    for result in [raw_result, extracted].into_iter().flatten() {
        let Ok(cx) = result else { continue };
        let mut fresh = HeaderMap::new();
        b3_multi::inject(&cx, &mut fresh);
        check_injected(&cx, &fresh);

        let mut over = received.clone();
        b3_multi::inject(&cx, &mut over);
        let back = b3_multi::extract(&over).expect("present").expect("decodes");
        assert_eq!(
            back, cx,
            "inject over the received headers left stale values"
        );

        let mut again = HeaderMap::new();
        b3_multi::inject(&back, &mut again);
        assert_eq!(again, fresh, "not a fixed point");
    }
});
