//! Through a real Prometheus (Debian's 2.42, provisioned into target/ by
//! `demo::prometheus`): every target up; the seed's four queries answering a row per app
//! and cluster over real Envoy's statistics; the apps' own histograms by service, route and
//! version; an exemplar of the slowest bucket leading to a joined trace in the collector.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use demo::envoy_mesh::{EnvoyMesh, EnvoyMeshConfig};
use demo::metrics_demo::{self, MetricsDemo};
use demo::prometheus::Sample;
use demo::{LocalMesh, MeshConfig, Service};

fn pairs(rows: &[Sample]) -> BTreeSet<(String, String)> {
    rows.iter()
        .map(|s| {
            (
                s.metric.get("app").cloned().unwrap_or_default(),
                s.metric.get("cluster").cloned().unwrap_or_default(),
            )
        })
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, c)| ((*a).to_owned(), (*c).to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_apps_metrics_through_prometheus_lead_to_joined_traces() {
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let targets = Service::ALL
        .into_iter()
        .map(|s| metrics_demo::app_target(s.name(), "v1", mesh.admin(s).unwrap()))
        .collect();
    let metrics = MetricsDemo::start(targets).await.unwrap();
    let up = metrics.prometheus().targets().await.unwrap();
    assert_eq!(up.len(), 4, "{up:?}");
    assert!(
        up.iter().all(|t| t.is_up() && t.last_error.is_none()),
        "{up:?}"
    );

    let base = format!("http://{}", mesh.frontend);
    demo::load(&base, 3, 1, &[], |_| {}).await;
    metrics.scrapes(1).await;
    let outcomes = demo::load(&base, 16, 4, &[], |_| {}).await;
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    mesh.flush().await;
    metrics.scrapes(2).await;

    let collector = mesh.collector.clone().unwrap();
    let report = metrics.report(&collector, false).await.unwrap();
    assert!(report.version.starts_with("2."), "{}", report.version);
    assert!(report.seed.is_empty(), "no Envoy, no seed queries");
    let rows: BTreeSet<(String, String)> = report
        .app_p95
        .iter()
        .map(|s| {
            let route = s
                .metric
                .get("http_route")
                .or_else(|| s.metric.get("rpc_method"))
                .cloned()
                .unwrap_or_default();
            (s.metric["service_name"].clone(), route)
        })
        .collect();
    for want in [
        ("frontend", "/orders/{id}"),
        ("frontend", "/users/{id}"),
        ("order", "GetOrder"),
        ("item", "GetItem"),
        ("user", "GetUser"),
    ] {
        assert!(
            rows.contains(&(want.0.to_owned(), want.1.to_owned())),
            "p95 row {want:?} in {rows:?}"
        );
    }
    assert!(report.app_p95.iter().all(|s| s.value > 0.0), "{report}");

    // The exemplar of the slowest bucket is a joined trace of this load.
    let slowest = report.slowest.as_ref().expect("an exemplar led to a trace");
    let check = demo::analysis::TraceCheck::of(&slowest.trace_id, &slowest.spans);
    assert_eq!((check.roots, check.orphans), (1, 0), "{check:?}");
    assert_eq!(check.services.len(), 4, "{check:?}");
    let text = report.to_string();
    assert!(text.contains(&slowest.trace_id), "{text}");
    metrics.stop().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_queries_answer_for_every_app_and_cluster_behind_real_envoy() {
    let mesh = EnvoyMesh::start(EnvoyMeshConfig {
        canary_v2_percent: 50,
        ..EnvoyMeshConfig::default()
    })
    .await
    .unwrap();
    let mut targets: Vec<_> = mesh
        .app_admins()
        .into_iter()
        .map(|(service, version, admin)| metrics_demo::app_target(service, version, admin))
        .collect();
    targets.extend(metrics_demo::envoy_targets(&mesh.topology));
    let metrics = MetricsDemo::start(targets).await.unwrap();
    let up = metrics.prometheus().targets().await.unwrap();
    assert_eq!(up.len(), 11, "5 apps and 6 Envoys: {up:?}");
    assert!(
        up.iter().all(|t| t.is_up() && t.last_error.is_none()),
        "{up:?}"
    );

    let entry = mesh.entry();
    demo::load(&entry, 3, 1, &[], |_| {}).await;
    metrics.scrapes(1).await;
    let outcomes = demo::load(&entry, 24, 4, &[], |_| {}).await;
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    mesh.flush().await;
    mesh.wait_complete(&outcomes, Duration::from_secs(15)).await;
    metrics.scrapes(2).await;
    let report = metrics.report(&mesh.collector, true).await.unwrap();
    let text = report.to_string();

    let called = set(&[
        ("front-proxy", "frontend"),
        ("frontend", "user"),
        ("frontend", "order"),
        ("order", "item-v1"),
        ("order", "item-v2"),
    ]);
    let checked = set(&[
        ("front-proxy", "frontend"),
        ("frontend", "frontend-app"),
        ("frontend", "user"),
        ("frontend", "order"),
        ("user", "user-app"),
        ("order", "order-app"),
        ("order", "item-v1"),
        ("order", "item-v2"),
        ("item", "item-v1-app"),
        ("item", "item-v2-app"),
    ]);
    // p95 and rate: every upstream the load used, local clusters filtered out.
    for i in [0, 1] {
        assert_eq!(pairs(report.seed_rows(i)), called, "query {i}:\n{text}");
        assert!(
            report
                .seed_rows(i)
                .iter()
                .all(|s| s.value.is_finite() && s.value > 0.0),
            "query {i}:\n{text}"
        );
    }
    // Health: every cluster with a health check, each host healthy.
    assert_eq!(pairs(report.seed_rows(2)), checked, "{text}");
    assert!(report.seed_rows(2).iter().all(|s| s.value >= 1.0), "{text}");
    // Connections: every checked cluster (health checks connect too) and the collector's.
    let cx = pairs(report.seed_rows(3));
    assert!(cx.is_superset(&checked), "{text}");
    assert!(
        cx.contains(&("order".to_owned(), "trace-collector".to_owned())),
        "{text}"
    );

    // The apps' own histograms by version: item v1 and v2 both.
    let versions: BTreeSet<String> = report
        .app_p95
        .iter()
        .filter(|s| s.metric.get("service_name").map(String::as_str) == Some("item"))
        .filter_map(|s| s.metric.get("service_version").cloned())
        .collect();
    assert_eq!(
        versions,
        BTreeSet::from(["v1".to_owned(), "v2".to_owned()]),
        "{text}"
    );

    // From the slowest bucket to a trace joined through the six Envoys and the apps.
    let slowest = report.slowest.as_ref().expect("an exemplar led to a trace");
    assert!(
        demo::envoy_mesh::joined(&slowest.spans, true),
        "exemplar trace {} is joined:\n{text}",
        slowest.trace_id
    );
    metrics.stop().await;
    mesh.stop().await;
}
