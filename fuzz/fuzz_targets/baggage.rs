//! W3C `baggage`: the input's `\n`-separated lines are field lines. Decoding never panics
//! and keeps at most 180 members; the kept entries encode to visible ASCII within 8192
//! bytes that decodes without error to the same entries (or, when re-encoding made the
//! value longer than the limit, to a prefix of them: whole members dropped, FACTS §8), and
//! the encoding is a fixed point. A single valid line decoded as a `HeaderValue` (the
//! propagator's path, which may forward it verbatim) gives the same entries.
#![no_main]

use b3_propagation::baggage::{BaggageOrigin, MAX_BYTES, MAX_MEMBERS};
use b3_propagation::codec::baggage;
use fuzz_support::{assert_token, lines};
use http::HeaderValue;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let lines = lines(data);
    let (bag, _dropped) = baggage::decode_lines(lines.iter().copied());
    assert!(bag.len() <= MAX_MEMBERS);
    assert!(bag.entries().iter().all(|e| e.origin == BaggageOrigin::W3c));

    if let [line] = lines.as_slice()
        && let Ok(hv) = HeaderValue::from_bytes(line)
    {
        let (from_value, dropped) = baggage::decode_value(&hv);
        assert_eq!(from_value.entries(), bag.entries());
        if let Some(raw) = from_value.raw_header() {
            assert!(
                dropped.is_none(),
                "kept the raw header of a partly dropped value"
            );
            assert_eq!(raw, &hv);
        }
        // What the propagator would forward for this header.
        if let Some(out) = from_value.to_header_value() {
            assert!(
                out.len() <= MAX_BYTES,
                "forwarded baggage is {} bytes",
                out.len()
            );
        }
    }

    let Some(v) = baggage::encode(bag.entries()) else {
        return;
    };
    assert_token("baggage", v.as_bytes());
    assert!(v.len() <= MAX_BYTES, "encoded baggage is {} bytes", v.len());
    let (back, dropped) = baggage::decode_lines([v.as_bytes()]);
    assert!(
        dropped.is_none(),
        "our own baggage {v:?} lost a member: {dropped:?}"
    );
    assert!(!back.is_empty());
    assert!(
        bag.entries().starts_with(back.entries()),
        "round trip of {v:?} changed the entries"
    );
    assert_eq!(
        baggage::encode(back.entries()).as_ref(),
        Some(&v),
        "not a fixed point"
    );
});
