//! Faults: the tracing backend failing in every way it can, and a service restarting under
//! load. Requests must not notice a broken collector (same outcome, latency within noise);
//! the spans lost are counted and the outage reported once per service, not per request.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use demo::{self, LocalMesh, MeshConfig, SERVICES, Service};
use services::pb::user::v1::GetUserRequest;
use services::pb::user::v1::user_service_client::UserServiceClient;
use tokio::net::TcpListener;

const REQUESTS: usize = 120;
const CONCURRENCY: usize = 4;

/// How a fake collector misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// Nothing listens: every connection is refused.
    Refuse,
    /// Accepts, reads the request, never answers (the exporter's timeout must fire).
    Hang,
    /// Answers 200, but only after a second.
    Slow,
    /// Answers 500 at once.
    Error500,
}

/// A collector that misbehaves as `fault` says; returns its base URL and how many export
/// requests reached it.
async fn fake_collector(fault: Fault) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    if fault == Fault::Refuse {
        drop(listener);
        return (url, hits);
    }
    async fn export(
        State((fault, hits)): State<(Fault, Arc<AtomicUsize>)>,
        _body: axum::body::Bytes,
    ) -> StatusCode {
        hits.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Hang => std::future::pending().await,
            Fault::Slow => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                StatusCode::OK
            }
            Fault::Error500 | Fault::Refuse => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
    let app = Router::new()
        .route("/v1/traces", post(export))
        .with_state((fault, hits.clone()));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

/// One bounded load against a fresh mesh exporting to `collector` (`None`: the embedded
/// one); returns the outcomes, the p50 in ms, the export counts and how long stopping took.
async fn run(
    collector: Option<String>,
) -> (demo::Summary, services::telemetry::ExportStats, Duration) {
    let mesh = LocalMesh::start(MeshConfig {
        collector,
        ..MeshConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", mesh.frontend);
    let outcomes = demo::load(&base, REQUESTS, CONCURRENCY, &[], |_| {}).await;
    let summary = demo::summarise(&outcomes, &[], &SERVICES);
    let stopping = Instant::now();
    let stats = mesh.stop().await;
    (summary, stats, stopping.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_collector_never_touches_requests() {
    // Warm up (connection pools, lazy statics), then the baseline against a healthy collector.
    let _ = run(None).await;
    let (base, base_stats, _) = run(None).await;
    assert_eq!((base.ok, base.failed), (REQUESTS, 0), "{base}");
    assert!(base_stats.ended > 0);
    assert_eq!(base_stats.dropped(), 0, "{base_stats:?}");
    assert_eq!(base_stats.reports, 0, "{base_stats:?}");
    eprintln!(
        "baseline: p50 {:.1} ms, p99 {:.1} ms, {base_stats:?}",
        base.p50_ms, base.p99_ms
    );

    for fault in [Fault::Refuse, Fault::Hang, Fault::Slow, Fault::Error500] {
        let (url, hits) = fake_collector(fault).await;
        let (s, stats, stop_took) = run(Some(url)).await;
        eprintln!(
            "{fault:?}: p50 {:.1} ms, p99 {:.1} ms, stop {:.1} s, {} exports reached it, {stats:?}",
            s.p50_ms,
            s.p99_ms,
            stop_took.as_secs_f64(),
            hits.load(Ordering::Relaxed)
        );
        assert_eq!((s.ok, s.failed), (REQUESTS, 0), "{fault:?}: {s}");
        // Within noise: export work is on the batch processors' own threads.
        assert!(
            s.p50_ms <= base.p50_ms * 2.0 + 10.0,
            "{fault:?}: p50 {:.1} ms vs baseline {:.1} ms",
            s.p50_ms,
            base.p50_ms
        );
        // Stopping is bounded by the export timeout, not by how many batches failed.
        assert!(
            stop_took < Duration::from_secs(15),
            "{fault:?}: {stop_took:?}"
        );
        assert!(stats.ended > 0, "{fault:?}: {stats:?}");
        match fault {
            Fault::Slow => {
                assert!(hits.load(Ordering::Relaxed) > 0);
                assert_eq!(stats.dropped(), 0, "{fault:?}: {stats:?}");
                assert_eq!(stats.reports, 0, "{fault:?}: {stats:?}");
            }
            Fault::Refuse | Fault::Hang | Fault::Error500 => {
                if fault != Fault::Refuse {
                    assert!(hits.load(Ordering::Relaxed) > 0, "{fault:?}");
                }
                // Every span is accounted for as dropped…
                assert_eq!(stats.exported, 0, "{fault:?}: {stats:?}");
                assert_eq!(stats.dropped(), stats.ended, "{fault:?}: {stats:?}");
                assert_eq!(stats.failed, stats.ended, "{fault:?}: {stats:?}");
                // …and the outage reported once per service, however many exports failed.
                assert_eq!(stats.reports, SERVICES.len() as u64, "{fault:?}: {stats:?}");
                assert!(
                    stats.failed_exports >= stats.reports,
                    "{fault:?}: {stats:?}"
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_export_is_reported_once_per_outage() {
    // Many failed exports in one outage: still one report per service.
    let (url, hits) = fake_collector(Fault::Error500).await;
    let mesh = LocalMesh::start(MeshConfig {
        collector: Some(url),
        ..MeshConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", mesh.frontend);
    for _ in 0..5 {
        let outcomes = demo::load(&base, 20, 2, &[], |_| {}).await;
        assert!(outcomes.iter().all(|o| o.ok));
        mesh.flush().await;
    }
    let stats = mesh.stop().await;
    assert!(hits.load(Ordering::Relaxed) >= 5 * SERVICES.len());
    assert!(
        stats.failed_exports >= 5 * SERVICES.len() as u64,
        "{stats:?}"
    );
    assert_eq!(stats.reports, SERVICES.len() as u64, "{stats:?}");
    assert_eq!(stats.dropped(), stats.ended, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_restarting_mid_load() {
    let mut mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let base = format!("http://{}", mesh.frontend);
    let collector = mesh.collector.clone().unwrap();

    // A bounded load runs while `item` goes down and comes back.
    let load = tokio::spawn({
        let base = base.clone();
        async move { demo::load(&base, 1_500, CONCURRENCY, &[], |_| {}).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let began = Instant::now();
    mesh.stop_service(Service::Item).await;
    let down = Instant::now();

    // While it is down: `user` still answers directly, the frontend answers fast with 502.
    let mut users = UserServiceClient::connect(format!("http://{}", mesh.user))
        .await
        .unwrap();
    let user = users
        .get_user(GetUserRequest { id: "u-1".into() })
        .await
        .unwrap();
    assert_eq!(user.into_inner().id, "u-1");
    let during = demo::load(&base, 6, 2, &[], |_| {}).await;
    for o in &during {
        assert_eq!(o.status, Some(502), "{o:?}");
        assert!(o.latency < Duration::from_secs(3), "{o:?}");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    mesh.restart_service(Service::Item).await.unwrap();
    let up = Instant::now();

    let outcomes = load.await.unwrap();
    assert_eq!(outcomes.len(), 1_500);
    // Sent times are relative to the load's start, which was ~300 ms before `began`.
    let load_start = began - Duration::from_millis(300);
    let sent_at = |o: &demo::Outcome| load_start + o.sent;
    // The outage was real: something in the load failed while `item` was down.
    let failed: Vec<&demo::Outcome> = outcomes.iter().filter(|o| !o.ok).collect();
    assert!(
        !failed.is_empty(),
        "the load finished before the outage; make it longer"
    );
    for o in &failed {
        assert_eq!(o.status, Some(502), "a failure is a clean 502: {o:?}");
    }
    // Requests sent well after the restart all succeed and their traces are joined again.
    let after: Vec<&demo::Outcome> = outcomes
        .iter()
        .filter(|o| sent_at(o) > up + Duration::from_millis(500))
        .collect();
    assert!(
        after.len() >= 50,
        "only {} requests after the restart (down {:?} after the load began, up {:?} later)",
        after.len(),
        down - began,
        up - down
    );
    assert!(after.iter().all(|o| o.ok), "after the restart: {after:?}");
    mesh.flush().await;
    let ids = after.iter().filter_map(|o| o.trace_id.as_deref());
    let joined = demo::wait_joined(&collector, ids, Duration::from_secs(10)).await;
    assert!(joined, "traces resume after the restart");
    eprintln!(
        "restart: {} ok, {} failed while item was down, {} after restart all joined",
        outcomes.iter().filter(|o| o.ok).count(),
        failed.len(),
        after.len()
    );
    mesh.stop().await;
}
