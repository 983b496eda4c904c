//! `demo --break SERVICE` and the doctor: a service whose calls lose the trace headers (but
//! keep `x-request-id`) is named by `trace-headers doctor`, and only it — in-process and
//! behind real Envoy; a mesh that is not broken gets "found nothing".
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use demo::doctor_check::DoctorCheck;
use demo::envoy_mesh::{EnvoyMesh, EnvoyMeshConfig};
use demo::{LocalMesh, MeshConfig, Service};

async fn local(broken: Option<Service>) -> DoctorCheck {
    let mesh = LocalMesh::start(MeshConfig {
        break_service: broken,
        ..MeshConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", mesh.frontend);
    let outcomes = demo::load(&base, 12, 4, &[], |_| {}).await;
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    mesh.flush().await;
    let collector = mesh.collector.clone().unwrap();
    if broken.is_none() {
        let ids = outcomes.iter().filter_map(|o| o.trace_id.as_deref());
        assert!(
            demo::wait_joined(&collector, ids, Duration::from_secs(10)).await,
            "every request's trace joined before the doctor reads them"
        );
    }
    let check = DoctorCheck::run(
        &collector.spans(),
        &mesh.access_log.lines(),
        &["frontend"],
        broken.map(Service::name),
    );
    mesh.stop().await;
    check
}

fn names(check: &DoctorCheck) -> BTreeSet<String> {
    check.culprits()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_mesh_gets_found_nothing() {
    let check = local(None).await;
    assert!(names(&check).is_empty(), "{check}");
    // The doctor read all twelve requests, one trace each: "nothing" is not for want of data.
    assert_eq!(
        (check.report.requests, check.report.traces),
        (12, 12),
        "{check}"
    );
    assert_eq!(check.report.broken, 0, "{check}");
    assert!(check.as_expected());
    assert!(
        check.to_string().starts_with("doctor found nothing"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaking_order_names_order_alone_even_beside_a_concurrent_call_to_user() {
    // The frontend calls user while order calls item: user's span is running when item's
    // new trace begins, but order's call is the one nobody answered.
    let check = local(Some(Service::Order)).await;
    assert_eq!(
        names(&check),
        BTreeSet::from(["order".to_owned()]),
        "{check}"
    );
    assert_eq!(check.report.broken, check.report.requests, "{check}");
    assert!(check.as_expected(), "{check}");
    assert!(
        check
            .report
            .findings
            .iter()
            .any(|f| f.kind.as_str() == "headers-dropped"),
        "{check}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaking_the_frontend_names_the_frontend() {
    let check = local(Some(Service::Frontend)).await;
    assert_eq!(
        names(&check),
        BTreeSet::from(["frontend".to_owned()]),
        "{check}"
    );
    assert!(check.as_expected(), "{check}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_real_envoy_breaking_order_names_order_alone() {
    let mesh = EnvoyMesh::start(EnvoyMeshConfig {
        break_service: Some("order".to_owned()),
        ..EnvoyMeshConfig::default()
    })
    .await
    .unwrap();
    let outcomes = demo::load(&mesh.entry(), 12, 4, &[], |_| {}).await;
    assert!(outcomes.iter().all(|o| o.ok), "{outcomes:?}");
    mesh.flush().await;
    // Envoy sends its spans within 100 ms here; give the last ones time to land.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let check = DoctorCheck::run(
        &mesh.collector.spans(),
        &mesh.access_log.lines(),
        &[],
        Some("order"),
    );
    assert_eq!(
        names(&check),
        BTreeSet::from(["order".to_owned()]),
        "{check}"
    );
    assert_eq!(check.report.broken, 12, "{check}");
    let first = check
        .report
        .findings
        .iter()
        .find(|f| f.kind.counts_as_broken())
        .unwrap();
    assert!(
        first.explanation.contains("order-sidecar's egress"),
        "the new traces start at order's sidecar: {}",
        first.explanation
    );
    // Envoy tags every span with the request id: the broken pieces are one request each.
    assert!(first.request_id.is_some(), "{check}");
    mesh.stop().await;
}
