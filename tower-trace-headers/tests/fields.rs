//! Propagated fields and the baggage an application writes: they cross a hop, hostile values
//! are refused with a typed reason, the edge policy applies, and nothing leaks between
//! requests (1,000 concurrent ones).
#![cfg(feature = "tokio")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use b3_propagation::error::{ErrorKind, Field};
use b3_propagation::{Format, PropagatedField, Propagator, TrustPolicy};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_trace_headers::{PropagateTraceHeadersLayer, RequestTrace, TraceHeadersLayer};

type Echo = BTreeMap<String, String>;
type HttpClient = tower_trace_headers::PropagateTraceHeaders<
    Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
>;

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn echo(h: &HeaderMap) -> Echo {
    h.iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn propagator(trust: TrustPolicy) -> Propagator {
    Propagator::builder()
        .field(PropagatedField::from_static("end-user").kept_at_edge())
        .field(PropagatedField::from_static("x-tenant-id"))
        .trust(trust)
        .build()
}

#[derive(serde::Deserialize)]
struct Params {
    /// Set as baggage `user-agent` by the handler.
    ua: Option<String>,
    /// Set as the `x-tenant-id` field by the handler.
    tenant: Option<String>,
}

/// A: the server layer with `trust`, a handler that sets what `Params` ask for, then calls
/// B twice: once directly, once from a spawned task. Answers what B saw, plus the errors A
/// recorded.
async fn service_a(b: SocketAddr, trust: TrustPolicy) -> SocketAddr {
    let client = ServiceBuilder::new()
        .layer(PropagateTraceHeadersLayer::forward().propagator(propagator(trust)))
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>());
    let tenant = PropagatedField::from_static("x-tenant-id");
    let app = Router::new().route(
        "/",
        get(move |Query(p): Query<Params>| {
            let client = client.clone();
            let tenant = tenant.clone();
            async move {
                let trace = RequestTrace::current().unwrap();
                let mut refused = Vec::new();
                if let Some(ua) = p.ua
                    && let Err(e) = trace.set_baggage("user-agent", ua)
                {
                    refused.push(e.to_string());
                }
                if let Some(t) = p.tenant {
                    let value = HeaderValue::from_bytes(t.as_bytes()).unwrap();
                    if let Err(e) = trace.set_field(&tenant, value) {
                        refused.push(e.to_string());
                    }
                }
                let get = |mut c: HttpClient| async move {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let req = Request::get(format!("http://{b}/echo"))
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let resp = ServiceExt::ready(&mut c)
                        .await
                        .unwrap()
                        .call(req)
                        .await
                        .unwrap();
                    let body = resp.into_body().collect().await.unwrap().to_bytes();
                    serde_json::from_slice::<Echo>(&body).unwrap()
                };
                let direct = get(client.clone()).await;
                let spawned = tower_trace_headers::spawn(get(client)).await.unwrap();
                let mut me = Echo::new();
                me.insert("refused".into(), refused.join("; "));
                me.insert(
                    "errors".into(),
                    trace
                        .errors()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                );
                Json(vec![direct, spawned, me])
            }
        }),
    );
    serve(app.layer(TraceHeadersLayer::new().propagator(propagator(trust)))).await
}

async fn service_b() -> SocketAddr {
    serve(Router::new().route("/echo", get(|h: HeaderMap| async move { Json(echo(&h)) }))).await
}

async fn call(a: SocketAddr, query: &str, headers: &[(&str, &[u8])]) -> Vec<Echo> {
    let mut req = Request::get(format!("http://{a}/?{query}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    let resp = Client::builder(TokioExecutor::new())
        .build_http()
        .request(req)
        .await
        .unwrap();
    serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fields_and_app_baggage_cross_the_hop() {
    let b = service_b().await;
    let a = service_a(b, TrustPolicy::trusted()).await;
    let seen = call(
        a,
        "ua=Mozilla/4.0%20(compatible;%20Netscape%204.7)",
        &[
            ("end-user", b"jason"),
            ("x-tenant-id", b"acme"),
            ("baggage", b"item-version=v2"),
        ],
    )
    .await;
    for at_b in &seen[..2] {
        assert_eq!(at_b["end-user"], "jason");
        assert_eq!(at_b["x-tenant-id"], "acme");
        // The received entry and the application's, in W3C form ...
        assert_eq!(
            at_b["baggage"],
            "item-version=v2,user-agent=Mozilla/4.0%20(compatible%3B%20Netscape%204.7)"
        );
        // ... and the application's as the prefixed header B3 peers (and Istio routes) read.
        assert_eq!(
            at_b["baggage-user-agent"],
            "Mozilla/4.0 (compatible; Netscape 4.7)"
        );
    }
    assert_eq!(seen[2]["refused"], "");

    // The application replaces a received field for the rest of the request.
    let seen = call(a, "tenant=globex", &[("x-tenant-id", b"acme")]).await;
    assert_eq!(seen[0]["x-tenant-id"], "globex");
    assert_eq!(seen[1]["x-tenant-id"], "globex", "spawned work too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_values_are_refused_with_a_reason() {
    let b = service_b().await;
    let a = service_a(b, TrustPolicy::trusted()).await;
    // Received: a tab and an obs-text byte (hyper refuses CR, LF and NUL before any layer).
    let seen = call(
        a,
        "",
        &[("end-user", b"ja\tson"), ("x-tenant-id", b"ac\xffme")],
    )
    .await;
    for at_b in &seen[..2] {
        assert!(!at_b.contains_key("end-user"));
        assert!(!at_b.contains_key("x-tenant-id"));
    }
    assert!(
        seen[2]["errors"]
            .contains("invalid propagated field header: value: invalid byte 0x09 at byte 2"),
        "{}",
        seen[2]["errors"]
    );
    assert!(seen[2]["errors"].contains("invalid byte 0xff at byte 2"));

    // Set by the application: a control character, an oversized value.
    let long = "a".repeat(5000);
    let seen = call(a, &format!("ua=a%0D%0Ab&tenant={long}"), &[]).await;
    for at_b in &seen[..2] {
        assert!(!at_b.contains_key("baggage"));
        assert!(!at_b.contains_key("baggage-user-agent"));
        assert!(!at_b.contains_key("x-tenant-id"));
    }
    let refused = &seen[2]["refused"];
    assert!(
        refused.contains("invalid baggage header: value: invalid byte 0x0d at byte 1"),
        "{refused}"
    );
    assert!(
        refused.contains("invalid propagated field header: value: 5000 bytes long, at most 4096"),
        "{refused}"
    );

    // The typed reasons, as a program sees them.
    let trace = RequestTrace::new(b3_propagation::RequestContext::new());
    let e = trace.set_baggage("bad key", "v").unwrap_err();
    assert_eq!(
        (e.format(), e.field(), e.kind()),
        (
            Format::Baggage,
            Some(Field::Key),
            ErrorKind::InvalidCharacter {
                byte: b' ',
                index: 3
            }
        )
    );
    for i in 0..180 {
        trace.set_baggage(format!("k{i}"), "v").unwrap();
    }
    let e = trace.set_baggage("one-more", "v").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooManyMembers { max: 180 });
    assert_eq!(trace.baggage().len(), 180, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_edge_keeps_only_the_fields_declared_for_it() {
    let b = service_b().await;
    let edge = service_a(b, TrustPolicy::untrusted()).await;
    let seen = call(
        edge,
        "",
        &[("end-user", b"jason"), ("x-tenant-id", b"acme")],
    )
    .await;
    for at_b in &seen[..2] {
        assert_eq!(at_b["end-user"], "jason", "declared kept_at_edge");
        assert!(
            !at_b.contains_key("x-tenant-id"),
            "a client may not pick its tenant"
        );
    }
    // What the application sets itself is its own decision, edge or not.
    let seen = call(edge, "tenant=acme", &[]).await;
    assert_eq!(seen[0]["x-tenant-id"], "acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_leaks_between_a_thousand_concurrent_requests() {
    let b = service_b().await;
    let a = service_a(b, TrustPolicy::trusted()).await;
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(128));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000u32 {
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            // Odd requests set baggage and a field; even ones set nothing and must see none.
            let (query, user) = if i % 2 == 1 {
                (format!("ua=agent-{i}&tenant=t-{i}"), format!("user-{i}"))
            } else {
                (String::new(), format!("user-{i}"))
            };
            let seen = call(a, &query, &[("end-user", user.as_bytes())]).await;
            for at_b in &seen[..2] {
                assert_eq!(at_b["end-user"], user, "request {i}");
                if i % 2 == 1 {
                    assert_eq!(
                        at_b["baggage-user-agent"],
                        format!("agent-{i}"),
                        "request {i}"
                    );
                    assert_eq!(at_b["x-tenant-id"], format!("t-{i}"), "request {i}");
                } else {
                    assert!(
                        !at_b.contains_key("baggage-user-agent"),
                        "request {i}: {at_b:?}"
                    );
                    assert!(!at_b.contains_key("baggage"), "request {i}: {at_b:?}");
                    assert!(!at_b.contains_key("x-tenant-id"), "request {i}: {at_b:?}");
                }
            }
        });
    }
    let run = async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("bounded");
}
