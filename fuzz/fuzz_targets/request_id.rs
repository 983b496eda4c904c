//! `x-request-id`: parse arbitrary bytes under the policy (1..=255 visible ASCII, FACTS §9).
//! An accepted id is kept byte for byte, every entry point agrees, and Envoy's trace-reason
//! packing changes only the version nibble of a 36-character id.
#![no_main]

use b3_propagation::codec::request_id;
use b3_propagation::request_id::MAX_LEN;
use b3_propagation::{RequestId, TraceReason, header};
use fuzz_support::assert_token;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parsed = RequestId::parse(data);
    if let Ok(hv) = HeaderValue::from_bytes(data) {
        let shared = RequestId::from_header_value(&hv);
        assert_eq!(shared.is_ok(), parsed.is_ok());
        let mut map = HeaderMap::new();
        map.insert(header::X_REQUEST_ID, hv);
        let extracted = request_id::extract(&map).expect("present");
        assert_eq!(extracted.ok(), parsed.as_ref().ok().cloned());
    }
    let Ok(id) = parsed else {
        return;
    };
    assert_eq!(
        id.as_str().as_bytes(),
        data,
        "an accepted id is kept as received"
    );
    assert!((1..=MAX_LEN).contains(&data.len()));
    assert_token("x-request-id", id.header_value().as_bytes());

    let mut out = HeaderMap::new();
    request_id::inject(&id, &mut out);
    assert_eq!(out[&header::X_REQUEST_ID].as_bytes(), data);

    if let Some(v) = id.stable_sampling_value() {
        assert!(v < 10_000);
    }
    let uuid_shape = data.len() == 36
        && data.iter().enumerate().all(|(i, &c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    assert_eq!(id.is_uuid(), uuid_shape);
    for reason in [
        TraceReason::NotTraceable,
        TraceReason::Sampling,
        TraceReason::ServiceForced,
        TraceReason::ClientForced,
    ] {
        let packed = id.with_trace_reason(reason);
        let (a, b) = (id.as_str().as_bytes(), packed.as_str().as_bytes());
        assert_eq!(a.len(), b.len());
        assert_token("x-request-id", b);
        let changed: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        assert!(
            changed.is_empty() || changed == [14],
            "changed bytes {changed:?}"
        );
        if data.len() == 36 && reason != TraceReason::NotTraceable {
            assert_eq!(packed.trace_reason(), reason);
        }
    }
});
