//! The whole mesh in-process on 127.0.0.1:0 with the embedded collector: every trace joined,
//! one request id across every hop and in every access-log line of that request; the W3C
//! harness contract.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use demo::{self, LocalMesh, MeshConfig, SERVICES, analysis};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// `requests` requests through `mesh`, `concurrency` at a time; its collector and their trace
/// ids, once every trace is joined there.
async fn load_joined(
    mesh: &LocalMesh,
    requests: usize,
    concurrency: usize,
) -> (collector::Collector, Vec<String>) {
    let base = format!("http://{}", mesh.frontend);
    let outcomes = demo::load(&base, requests, concurrency, &[], |_| {}).await;
    mesh.flush().await;
    let collector = mesh.collector.clone().unwrap();
    let ids: Vec<String> = outcomes.iter().filter_map(|o| o.trace_id.clone()).collect();
    assert_eq!(ids.len(), requests, "every response names its trace");
    assert!(
        demo::wait_joined(
            &collector,
            ids.iter().map(String::as_str),
            Duration::from_secs(10)
        )
        .await,
        "not every trace joined: {ids:?}"
    );
    (collector, ids)
}

async fn joined_mesh_run(config: MeshConfig, requests: usize) {
    let mesh = LocalMesh::start(config).await.unwrap();
    let base = format!("http://{}", mesh.frontend);
    let outcomes = demo::load(&base, requests, 4, &[], |_| {}).await;
    mesh.flush().await;
    let collector = mesh.collector.clone().unwrap();
    let expected: Vec<String> = outcomes.iter().filter_map(|o| o.trace_id.clone()).collect();
    assert_eq!(expected.len(), requests, "every response names its trace");
    let all_joined = demo::wait_joined(
        &collector,
        expected.iter().map(String::as_str),
        Duration::from_secs(10),
    )
    .await;
    let spans = collector.spans();
    let summary = demo::summarise(&outcomes, &spans, &SERVICES);
    assert!(all_joined, "{summary}");
    assert_eq!((summary.ok, summary.failed), (requests, 0), "{summary}");
    assert_eq!(summary.joined, requests, "{summary}");

    // Every route was exercised.
    let routes: BTreeSet<&str> = outcomes
        .iter()
        .map(|o| o.path.split('/').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(routes, BTreeSet::from(["", "orders", "users"]));

    // One request id per request, in every access-log line of every hop of that request, and
    // those lines name the request's trace.
    let lines: Vec<serde_json::Value> = mesh
        .access_log
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for o in &outcomes {
        let rid = o.request_id.as_deref().unwrap();
        assert_eq!(rid.len(), 36, "generated UUID at the edge: {rid}");
        let mine: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["request_id"] == rid).collect();
        let services: BTreeSet<&str> = mine
            .iter()
            .map(|l| l["service"].as_str().unwrap())
            .collect();
        assert_eq!(services, SERVICES.into_iter().collect(), "{rid}: {mine:?}");
        let trace = o.trace_id.as_deref().unwrap();
        for l in &mine {
            let t = l["trace_id"].as_str().unwrap();
            assert!(trace.ends_with(t), "{rid}: access log trace {t} vs {trace}");
            assert_eq!(l["status"], 200);
            // A gRPC hop's status, which an answered call sends in the trailers; none for HTTP.
            let grpc = if l["service"] == "frontend" {
                serde_json::Value::Null
            } else {
                serde_json::Value::from("0")
            };
            assert_eq!(l["grpc_status"], grpc, "{l}");
        }
    }
    // Every span of a request's trace: one trace id, its services all four.
    for t in &expected {
        let c = analysis::TraceCheck::of(t, &collector.trace(t));
        assert_eq!(c.roots, 1, "{c:?}");
        assert_eq!(c.orphans, 0, "{c:?}");
    }
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_is_joined_child_spans() {
    joined_mesh_run(MeshConfig::default(), 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trace_is_joined_shared_spans() {
    let config = MeshConfig {
        semantics: b3_propagation::SpanSemantics::Shared,
        ..MeshConfig::default()
    };
    joined_mesh_run(config, 12).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_prices_inside_its_own_span() {
    // `order` opens an in-process span (`#[tracing::instrument]`, exported by order's own
    // provider through tracing-opentelemetry): its item calls are that span's children, in
    // the exported spans and in the headers item received (item's server span is the client
    // span's child, so the trace has no orphan).
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let (collector, ids) = load_joined(&mesh, 3, 1).await;
    for t in ids.iter().map(String::as_str) {
        let spans = collector.trace(t);
        let by_id = |id: &str| spans.iter().find(|s| s.id == id);
        let priced: Vec<_> = spans.iter().filter(|s| s.name == "price order").collect();
        assert!(!priced.is_empty(), "{t}: no app span");
        for p in &priced {
            assert_eq!(p.service(), Some("order"));
            let parent = by_id(p.parent_id.as_deref().unwrap()).unwrap();
            assert_eq!(parent.service(), Some("order"), "under order's server span");
        }
        let item_clients: Vec<_> = spans
            .iter()
            .filter(|s| s.service() == Some("order") && s.name.starts_with("item.v1"))
            .collect();
        assert!(!item_clients.is_empty());
        for c in item_clients {
            let parent = by_id(c.parent_id.as_deref().unwrap()).unwrap();
            assert_eq!(
                parent.name, "price order",
                "{t}: {} under {}",
                c.name, parent.name
            );
            let served: Vec<_> = spans
                .iter()
                .filter(|s| s.service() == Some("item") && s.parent_id.as_deref() == Some(&c.id))
                .collect();
            assert_eq!(
                served.len(),
                1,
                "item's server span is the client span's child"
            );
        }
    }
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apps_reporting_nothing_are_transparent() {
    // `--no-app-spans` without Envoy: a client's span id goes through all four services
    // unchanged, under one request id, and no span is reported.
    let mesh = LocalMesh::start(MeshConfig {
        app_spans: false,
        ..MeshConfig::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", mesh.frontend);
    let outcomes = demo::load_as_client(&base, 24, 4, |_| {}).await;
    assert!(outcomes.iter().all(|o| o.ok));
    let checked = demo::transparency(&mesh.access_log.lines(), &outcomes);
    assert_eq!(checked.len(), 24);
    for t in &checked {
        assert!(t.transparent, "{t:?}");
    }
    // The frontend's traceresponse names the client's span too (nothing here reports one).
    for o in &outcomes {
        assert_eq!(
            o.trace_id.as_deref(),
            o.client_span.as_ref().map(|c| c.0.as_str())
        );
    }
    mesh.flush().await;
    assert!(mesh.collector.clone().unwrap().spans().is_empty());
    let stats = mesh.stop().await;
    assert_eq!(stats.ended, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_does_not_trust_clients() {
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let base = format!("http://{}", mesh.frontend);
    let headers = [
        (
            "b3",
            "463ac35c9f6413ad48485a3953bb6124-a2fb4a1d1a96d312-d".to_owned(),
        ),
        ("x-request-id", "client-chosen".to_owned()),
    ];
    let outcomes = demo::load(&base, 3, 1, &headers, |_| {}).await;
    for o in &outcomes {
        assert!(o.ok);
        assert_ne!(
            o.request_id.as_deref(),
            Some("client-chosen"),
            "regenerated at the edge"
        );
        // The client's trace id is kept (its trace continues) ...
        assert_eq!(
            o.trace_id.as_deref(),
            Some("463ac35c9f6413ad48485a3953bb6124")
        );
    }
    mesh.flush().await;
    // ... and is traced by the edge's own decision (debug is not trusted, sampling deferred,
    // and the edge samples) across all four services, but its debug flag did not force
    // anything: no span carries debug.
    let collector = mesh.collector.clone().unwrap();
    let joined = collector
        .wait_until(Duration::from_secs(10), |c| {
            let spans = c.trace("463ac35c9f6413ad48485a3953bb6124");
            let services: BTreeSet<&str> = spans.iter().filter_map(|s| s.service()).collect();
            services == SERVICES.into_iter().collect()
        })
        .await;
    assert!(joined, "{:?}", collector.spans());
    assert!(collector.spans().iter().all(|s| !s.debug));
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn w3c_harness_calls_back_with_a_new_parent_each_time() {
    // A receiver that records the traceparent / tracestate of each callback.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, Option<String>)>::new()));
    let record = seen.clone();
    let receiver = axum::Router::new().route(
        "/cb",
        axum::routing::post(move |h: http::HeaderMap| {
            let record = record.clone();
            async move {
                let tp = h
                    .get("traceparent")
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default();
                let ts = h.get("tracestate").map(|v| v.to_str().unwrap().to_owned());
                record.lock().unwrap().push((tp, ts));
                "ok"
            }
        }),
    );
    let rl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raddr = rl.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(rl, receiver).await.unwrap() });
    let hl = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let haddr = hl.local_addr().unwrap();
    let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let harness = w3c_harness::router(&provider);
    tokio::spawn(async move { axum::serve(hl, harness).await.unwrap() });

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let body = serde_json::json!([
        {"url": format!("http://{raddr}/cb"), "arguments": []},
        {"url": format!("http://{raddr}/cb"), "arguments": []},
    ]);
    let post = |tp: &'static str| {
        http::Request::post(format!("http://{haddr}/test"))
            .header("content-type", "application/json")
            .header("traceparent", tp)
            .header("tracestate", "foo=1 , bar=2")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap()
    };
    let resp = client
        .request(post(
            "00-12345678901234567890123456789012-1234567890123456-01",
        ))
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let _ = resp.into_body().collect().await;
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        let parents: BTreeSet<&str> = seen.iter().map(|(tp, _)| &tp[36..52]).collect();
        assert_eq!(parents.len(), 2, "a new parent id per call");
        for (tp, ts) in seen.iter() {
            assert!(
                tp.starts_with("00-12345678901234567890123456789012-"),
                "{tp}"
            );
            assert!(tp.ends_with("-01"), "{tp}");
            assert_ne!(&tp[36..52], "1234567890123456");
            assert_eq!(ts.as_deref(), Some("foo=1,bar=2"));
        }
        // Each parent id the callback received is a client span the harness reported.
        let reported: BTreeSet<String> = exporter
            .get_finished_spans()
            .unwrap()
            .iter()
            .map(|s| s.span_context.span_id().to_string())
            .collect();
        for p in &parents {
            assert!(reported.contains(*p), "{p} not reported: {reported:?}");
        }
    }
    // An invalid traceparent restarts the trace and drops tracestate.
    seen.lock().unwrap().clear();
    let resp = client
        .request(post(
            "00-00000000000000000000000000000000-1234567890123456-01",
        ))
        .await
        .unwrap();
    let _ = resp.into_body().collect().await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    for (tp, ts) in seen.iter() {
        assert_eq!(tp.len(), 55);
        assert!(!tp.contains("00000000000000000000000000000000"));
        assert_eq!(*ts, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_spans_follow_the_semantic_conventions() {
    use collector::SpanKind;
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let (collector, _) = load_joined(&mesh, 30, 4).await;
    let spans = collector.spans();
    let tag = |s: &collector::ZipkinSpan, k: &str| s.tags.get(k).cloned();

    // One frontend server span name per route, whatever the ids (`o-1`…`o-5`, `u-1`…`u-4`).
    let frontend: BTreeSet<&str> = spans
        .iter()
        .filter(|s| s.service() == Some("frontend") && s.kind == Some(SpanKind::Server))
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        frontend,
        BTreeSet::from(["GET /", "GET /orders/{id}", "GET /users/{id}"])
    );
    for s in &spans {
        let what = format!("{:?} {:?} {}", s.service(), s.kind, s.name);
        if s.name == "price order" {
            // The application's own span keeps the service's scope.
            assert_eq!(
                tag(s, "otel.scope.name").as_deref(),
                Some("order"),
                "{what}"
            );
            continue;
        }
        assert_eq!(
            tag(s, "otel.scope.name").as_deref(),
            Some("tower-trace-headers"),
            "{what}"
        );
        assert_eq!(
            tag(s, "otel.scope.version").as_deref(),
            Some(env!("CARGO_PKG_VERSION")),
            "{what}: the library's version (the workspace's)"
        );
        let grpc = s.name.contains('/') && !s.name.starts_with("GET");
        let required: &[&str] = match (grpc, s.kind) {
            (false, Some(SpanKind::Server)) => &[
                "http.request.method",
                "url.path",
                "url.scheme",
                "http.route",
                "http.response.status_code",
                "network.protocol.version",
                "server.address",
                "server.port",
                "client.address",
            ],
            (true, Some(SpanKind::Server)) => &[
                "rpc.system",
                "rpc.service",
                "rpc.method",
                "rpc.grpc.status_code",
                "server.address",
                "server.port",
                "client.address",
            ],
            (true, Some(SpanKind::Client)) => &[
                "rpc.system",
                "rpc.service",
                "rpc.method",
                "rpc.grpc.status_code",
                "server.address",
                "server.port",
            ],
            _ => panic!("unexpected span {what}"),
        };
        for key in required {
            assert!(s.tags.contains_key(*key), "{what}: {key} in {:?}", s.tags);
        }
        if grpc {
            assert_eq!(
                tag(s, "rpc.grpc.status_code").as_deref(),
                Some("0"),
                "{what}: OK, from the trailers"
            );
        }
    }
    mesh.stop().await;
}
