//! An untrusted edge (`TrustPolicy::untrusted()`) on arbitrary header lines: everything
//! `propagator_extract` checks, plus: the extracted context never keeps the client's
//! sampling or debug decision, the client's `x-request-id` is never kept or sent, and no
//! header we interpret and send (b3, x-b3-*, traceparent, uber-trace-id, grpc-trace-bin as
//! a context format) carries an accept or debug decision, and no opaque header
//! (`x-ot-span-context`, `grpc-trace-bin` when not a context format, the vendor headers),
//! which would carry the client's decision verbatim, is sent at all.
#![no_main]

use b3_propagation::{ContextFormat, OpaqueHeader, Propagator, Sampling, TrustPolicy, header};
use fuzz_support::{check_outgoing, header_map, run_propagator};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static EDGE: LazyLock<Propagator> = LazyLock::new(|| {
    Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .build()
});
static EDGE_EVERYTHING: LazyLock<Propagator> = LazyLock::new(|| {
    Propagator::builder()
        .trust(TrustPolicy::untrusted())
        .extract(ContextFormat::ALL)
        .inject(ContextFormat::ALL)
        .opaque(OpaqueHeader::ALL)
        .build()
});

fn no_client_decision(p: &Propagator, out: &HeaderMap, received: &HeaderMap) {
    assert!(
        out.get(header::X_B3_FLAGS).is_none(),
        "x-b3-flags sent: {out:?}"
    );
    assert!(
        out.get(header::X_B3_SAMPLED).is_none(),
        "x-b3-sampled sent: {out:?}"
    );
    // `grpc-trace-bin` is interpreted only when it is a context format; otherwise it is an
    // opaque header, and opaque headers do not pass an untrusted edge.
    let grpc_is_context = p.extract_order().contains(&ContextFormat::GrpcTraceBin);
    for name in [
        "x-ot-span-context",
        "x-cloud-trace-context",
        "sw8",
        "x-datadog-trace-id",
        "x-datadog-parent-id",
        "x-datadog-sampling-priority",
    ] {
        assert!(out.get(name).is_none(), "opaque {name} sent: {out:?}");
    }
    if !grpc_is_context {
        assert!(
            out.get("grpc-trace-bin").is_none(),
            "opaque grpc-trace-bin sent: {out:?}"
        );
    }
    for (name, cx) in check_outgoing(out) {
        assert!(
            !matches!(cx.sampling(), Sampling::Accept | Sampling::Debug),
            "{name} sends the client's {:?}: {out:?}",
            cx.sampling()
        );
    }
    if let (Some(theirs), Some(ours)) = (
        received.get(header::X_REQUEST_ID),
        out.get(header::X_REQUEST_ID),
    ) {
        assert_ne!(theirs, ours, "the client's x-request-id was kept");
    }
}

fuzz_target!(|data: &[u8]| {
    let received = header_map(data);
    for p in [&*EDGE, &*EDGE_EVERYTHING] {
        let (cx, forwarded, injected) = run_propagator(p, &received);
        if let Some(remote) = cx.remote() {
            assert_eq!(
                remote.sampling(),
                Sampling::Deferred,
                "client decision kept"
            );
        }
        assert!(
            cx.request_id().is_some_and(|id| id.is_uuid()),
            "generated as a UUID"
        );
        no_client_decision(p, &forwarded, &received);
        no_client_decision(p, &injected, &received);
        assert!(
            forwarded.get(header::X_REQUEST_ID).is_none(),
            "client id forwarded"
        );
    }
});
