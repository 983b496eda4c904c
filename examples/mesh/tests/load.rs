//! Bounded load with each service in its own process (the CI-sized version of
//! `demo --processes --requests 20000 --concurrency 64`): nothing fails, every trace is joined,
//! and no service's memory grows with the number of requests.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::Path;

use mesh::demo::processes::{self, LoadOptions};
use tower_trace_headers::Mode;

/// Growth allowed per service between the warm-up and the end of the load: buffers and
/// allocator arenas settle, but per-request state must not accumulate.
const MAX_GROWTH: i64 = 24 * 1024 * 1024;

async fn bounded_load(mode: Mode, shared_span_context: bool, requests: usize) {
    let run = processes::run(
        Path::new(env!("CARGO_BIN_EXE_demo")),
        &LoadOptions {
            requests,
            concurrency: 64,
            mode,
            shared_span_context,
        },
        |line| eprintln!("{line}"),
        |_| {},
    )
    .await
    .unwrap();
    let summary = run.summary();
    eprintln!(
        "{summary}; {:.0} requests/s; memory {:?}",
        run.throughput(),
        run.memory
    );
    assert_eq!((summary.ok, summary.failed), (requests, 0), "{summary}");
    assert_eq!(summary.joined, requests, "{summary}");
    for m in &run.memory {
        if cfg!(target_os = "linux") {
            let growth = m.growth().unwrap();
            assert!(
                growth < MAX_GROWTH,
                "{}: RSS grew by {growth} bytes over {requests} requests: {m:?}",
                m.service.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_under_load() {
    bounded_load(Mode::Instrument, false, 2_000).await;
}
