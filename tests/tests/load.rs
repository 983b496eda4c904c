//! Bounded load with each service in its own process (the CI-sized version of
//! `demo --processes --requests 20000 --concurrency 64`): nothing fails, every trace is joined,
//! and no service's memory grows with the number of requests.
//!
//! The services run as child processes of this very test binary (`harness = false`: its
//! `main` runs a service when started as one), so the test needs no other binary built.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::process::ExitCode;

use demo::processes::{self, LoadOptions};
use tower_trace_headers::Mode;

/// Growth allowed per service between the warm-up and the end of the load: buffers and
/// allocator arenas settle, but per-request state must not accumulate.
const MAX_GROWTH: i64 = 24 * 1024 * 1024;

async fn bounded_load(mode: Mode, shared_span_context: bool, requests: usize) {
    let run = processes::run(
        &std::env::current_exe().unwrap(),
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
    assert_eq!(
        run.memory.len(),
        4,
        "one reading per service: {:?}",
        run.memory
    );
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

fn main() -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if let Some(result) = processes::run_child_service().await {
            // A child: one of the four services.
            return match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("service: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        eprintln!("test four_processes_under_load ...");
        bounded_load(Mode::Instrument, false, 2_000).await;
        eprintln!("test four_processes_under_load ... ok");
        ExitCode::SUCCESS
    })
}
