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
//! one forwarded call's headers (the rest of the context decoded). Without arguments (as
//! `cargo bench` runs it) it does 1 000 of each and prints nothing to compare.
#![allow(missing_docs)]

use std::hint::black_box;

use b3_propagation::Propagator;
use http::{HeaderMap, HeaderName, HeaderValue};

fn request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "frontend.default.svc.cluster.local:8080"),
        ("user-agent", "curl/8.5.0"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip, deflate"),
        ("content-type", "application/json"),
        ("content-length", "0"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-for", "10.0.0.7"),
        ("x-envoy-expected-rq-timeout-ms", "15000"),
        ("x-envoy-attempt-count", "1"),
        ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"),
        ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-sampled", "1"),
    ] {
        h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    h
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
        _ => {
            run("leaf", 1_000);
            run("forward", 1_000);
        }
    }
}
