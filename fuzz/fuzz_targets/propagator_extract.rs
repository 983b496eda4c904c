//! The full `Propagator` on arbitrary header lines (see `fuzz_support` for the format):
//! extract never panics and agrees with the plain `Extractor` path; forward and inject write
//! only headers we may write, in visible ASCII and spaces, within the FACTS.md limits,
//! decodable by our own decoders; forwarding keeps the context; injecting a client span
//! sends that span. Run with the default propagator and with every format and opaque
//! header switched on.
#![no_main]

use b3_propagation::codec::b3_single;
use b3_propagation::{ContextFormat, OpaqueHeader, Propagator, Sampling, SpanSemantics, header};
use fuzz_support::{header_map, run_propagator};
use http::HeaderName;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

/// Forwarded byte for byte when valid. (`traceparent` and `uber-trace-id` may be re-encoded
/// in canonical form, and `x-b3-flags` other than `1` is dropped: see `REENCODED`.)
const VERBATIM: [HeaderName; 3] = [
    header::X_REQUEST_ID,
    header::GRPC_TRACE_BIN,
    header::X_OT_SPAN_CONTEXT,
];

/// Forwarded byte for byte when valid, unless a B3 value came in a form peers misread:
/// Brave's `b3: {t}-{s}-{p}` and legacy `x-b3-sampled: true` / `false` (any case) have the
/// whole context encoded again, in the formats it came in (`Propagator::forward`).
const B3: [HeaderName; 5] = [
    header::B3,
    header::X_B3_TRACE_ID,
    header::X_B3_SPAN_ID,
    header::X_B3_PARENT_SPAN_ID,
    header::X_B3_SAMPLED,
];

/// Whether `received` carries a B3 value forward mode encodes again (see [`B3`]), judged by
/// the decoder rather than by the propagator's own shortcut: a `b3` with ids, a parent and
/// no decision, or `x-b3-sampled` spelled `true` / `false` (any case) beside a trace id.
fn b3_re_encoded(received: &http::HeaderMap) -> bool {
    let deferred_with_parent = received.get(header::B3).is_some_and(|v| {
        b3_single::decode(v.as_bytes()).is_ok_and(|c| {
            !c.is_sampling_only()
                && c.parent_span_id().is_some()
                && c.sampling() == Sampling::Deferred
        })
    });
    let legacy_sampled = received.contains_key(header::X_B3_TRACE_ID)
        && received.get(header::X_B3_SAMPLED).is_some_and(|v| {
            v.as_bytes().eq_ignore_ascii_case(b"true")
                || v.as_bytes().eq_ignore_ascii_case(b"false")
        });
    deferred_with_parent || legacy_sampled
}

/// Forwarded only when received; the value may be the canonical re-encoding.
const REENCODED: [HeaderName; 3] = [
    header::X_B3_FLAGS,
    header::TRACEPARENT,
    header::UBER_TRACE_ID,
];

static DEFAULT: LazyLock<Propagator> = LazyLock::new(Propagator::default);
static EVERYTHING: LazyLock<Propagator> = LazyLock::new(|| {
    Propagator::builder()
        .extract(ContextFormat::ALL)
        .inject(ContextFormat::ALL)
        .opaque(OpaqueHeader::ALL)
        .span_semantics(SpanSemantics::Shared)
        .build()
});

fuzz_target!(|data: &[u8]| {
    let received = header_map(data);
    for p in [&*DEFAULT, &*EVERYTHING] {
        let (_, forwarded, _) = run_propagator(p, &received);
        // Trusted forward mode re-sends what arrived, byte for byte (first value wins).
        for name in &VERBATIM {
            if let Some(sent) = forwarded.get(name) {
                assert_eq!(
                    Some(sent),
                    received.get(name),
                    "{name} not forwarded verbatim"
                );
            }
        }
        let re_encoded = b3_re_encoded(&received);
        for name in &B3 {
            let Some(sent) = forwarded.get(name) else {
                continue;
            };
            if re_encoded {
                // Encoded again, in the formats that came.
                let came = if *name == header::B3 {
                    received.contains_key(header::B3)
                } else {
                    B3[1..].iter().any(|n| received.contains_key(n))
                };
                assert!(came, "{name} forwarded but its format not received");
            } else {
                assert_eq!(
                    Some(sent),
                    received.get(name),
                    "{name} not forwarded verbatim"
                );
            }
        }
        for name in &REENCODED {
            if forwarded.contains_key(name) {
                assert!(
                    received.contains_key(name),
                    "{name} forwarded but not received"
                );
            }
        }
    }
});
