//! A fixed number of extracts of the request Envoy delivers (ten ordinary headers,
//! `x-request-id` and B3 multi), for an instruction counter, whose counts do not move with the
//! load of a shared machine as timings do:
//!
//! ```text
//! cargo bench -p benches --bench instructions --no-run
//! valgrind --tool=callgrind target/release/deps/instructions-<hash> leaf 20000
//! valgrind --tool=callgrind target/release/deps/instructions-<hash> forward 20000
//! ```
//!
//! Divide "Collected" by the count. `leaf`: the extract alone (what a service that makes no
//! call pays; the request id is read, as the server layer does); `forward`: the extract and
//! one forwarded call's headers (the rest of the context decoded); `layers`: `layers.rs`'s
//! `ours_forward` round trip (a server layer whose handler makes one call through a client
//! layer, headers only, in-process), `bare` the same without layers. Without arguments (as
//! `cargo bench` runs it) it does 1 000 of each and prints nothing to compare.
#![allow(missing_docs)]

use std::hint::black_box;

use b3_propagation::Propagator;
use http::{HeaderMap, Request, Response};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::server::ResponseBody;
use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};

use benches::{downstream, envoy_headers, handler};

fn roundtrip(layers: bool, n: u64) {
    let svc = if layers {
        let client = BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(|r: Response<ResponseBody<()>>| r.map(drop))
                .layer(PropagateTraceHeadersLayer::forward().without_spans())
                .service(downstream()),
        );
        BoxCloneSyncService::new(
            ServiceBuilder::new()
                .map_response(|r: Response<ResponseBody<()>>| r.map(drop))
                .layer(TraceHeadersLayer::new().without_spans())
                .service(handler(client)),
        )
    } else {
        handler(downstream())
    };
    let template = request();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        for _ in 0..n {
            let mut req = Request::new(());
            *req.headers_mut() = template.clone();
            let mut svc = svc.clone();
            let svc = svc.ready().await.expect("ready");
            black_box(svc.call(req).await.expect("infallible"));
        }
    });
}

/// The B3 multi request: [`benches::ENVOY`] and three `x-b3-*` headers.
fn request() -> HeaderMap {
    envoy_headers(&[
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ])
}

fn run(mode: &str, n: u64) {
    let headers = request();
    let p = Propagator::default();
    let mut out = HeaderMap::with_capacity(32);
    for _ in 0..n {
        let cx = p.extract(black_box(&headers));
        black_box(cx.request_id());
        if mode == "forward" {
            out.clear();
            p.forward(&cx, &mut out);
            black_box(&out);
        }
        black_box(cx);
    }
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with("--"));
    match (args.next(), args.next().and_then(|n| n.parse().ok())) {
        (Some(mode), Some(n)) if mode == "leaf" || mode == "forward" => run(&mode, n),
        (Some(mode), Some(n)) if mode == "layers" || mode == "bare" => {
            roundtrip(mode == "layers", n);
        }
        _ => {
            run("leaf", 1_000);
            run("forward", 1_000);
            roundtrip(false, 1_000);
            roundtrip(true, 1_000);
        }
    }
}
