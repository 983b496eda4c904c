//! The services' own metrics, as a scraper reads them from the admin listeners of the mesh
//! running in-process: OpenMetrics, one registry per service with its name and version, the
//! route template (never the raw path) and the gRPC method, exemplars naming joined traces;
//! health checks and scrapes not counted; a metrics endpoint gone never fails a request.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use demo::{LocalMesh, MeshConfig, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` over a fresh connection: (head, body).
async fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    // Bounded: a server that never closes fails the test instead of hanging it.
    tokio::time::timeout(Duration::from_secs(30), s.read_to_string(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_ascii_lowercase(), body.to_owned())
}

/// The `_count` of the series of `metric` whose line contains every one of `labels`.
fn count(text: &str, metric: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}_count{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The trace ids of every exemplar in `text`.
fn exemplar_traces(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| {
            l.split_once(" # {trace_id=\"")
                .map(|(_, rest)| rest[..32].to_owned())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_exposes_its_requests_with_exemplars_of_joined_traces() {
    let mesh = LocalMesh::start(MeshConfig::default()).await.unwrap();
    let base = format!("http://{}", mesh.frontend);
    // Health checks and scrapes before and during the load: none of them counts.
    for service in [
        Service::Frontend,
        Service::User,
        Service::Order,
        Service::Item,
    ] {
        let admin = mesh.admin(service).unwrap();
        let (head, body) = get(admin, "/healthz").await;
        assert!(
            head.starts_with("http/1.1 200"),
            "{service:?} /healthz: {head}"
        );
        assert_eq!(body, "ok");
        let (head, _) = get(admin, "/readyz").await;
        assert!(
            head.starts_with("http/1.1 200"),
            "{service:?} /readyz: {head}"
        );
    }
    get(mesh.frontend, "/healthz").await;
    get(mesh.frontend, "/metrics").await;

    let outcomes = demo::load(&base, 12, 3, &[], |_| {}).await;
    assert!(
        outcomes.iter().all(|o| o.status == Some(200)),
        "{outcomes:?}"
    );
    mesh.flush().await;
    let traces: BTreeSet<String> = outcomes.iter().filter_map(|o| o.trace_id.clone()).collect();
    let orders = outcomes
        .iter()
        .filter(|o| o.path.starts_with("/orders/"))
        .count() as u64;
    let users = outcomes
        .iter()
        .filter(|o| o.path.starts_with("/users/"))
        .count() as u64;
    assert!(orders > 0 && users > 0);

    let mut scraped = Vec::new();
    for service in [
        Service::Frontend,
        Service::User,
        Service::Order,
        Service::Item,
    ] {
        let (head, text) = get(mesh.admin(service).unwrap(), "/metrics").await;
        assert!(head.starts_with("http/1.1 200"), "{service:?}: {head}");
        assert!(
            head.contains(
                "content-type: application/openmetrics-text; version=1.0.0; charset=utf-8"
            ),
            "{service:?}: {head}"
        );
        assert!(text.ends_with("# EOF\n"), "{service:?}: {text}");
        let name = format!("service_name=\"{}\"", service.name());
        assert!(
            text.contains(&name) && text.contains("service_version=\"v1\""),
            "{text}"
        );
        assert!(
            !text.contains("healthz") && !text.contains("/metrics") && !text.contains("Health"),
            "health checks and scrapes are not counted: {text}"
        );
        scraped.push((service, text));
    }
    // The frontend's own port, which clients reach, does not serve them: its admin
    // listener does (routes, latencies and exemplar trace ids are not the clients' to read).
    let (head, _) = get(mesh.frontend, "/metrics").await;
    assert!(head.starts_with("http/1.1 404"), "{head}");

    let text = |s: Service| &scraped.iter().find(|(x, _)| *x == s).unwrap().1;
    let http = "http_server_request_duration_seconds";
    let rpc = "rpc_server_call_duration_seconds";
    assert_eq!(
        count(
            text(Service::Frontend),
            http,
            &[
                "http_route=\"/orders/{id}\"",
                "http_response_status_code=\"200\""
            ]
        ),
        orders,
        "one series per route template: {}",
        text(Service::Frontend)
    );
    assert_eq!(
        count(
            text(Service::Frontend),
            http,
            &["http_route=\"/users/{id}\""]
        ),
        users
    );
    assert!(
        !text(Service::Frontend).contains("http_route=\"/orders/o-"),
        "never the raw path"
    );
    assert_eq!(
        count(
            text(Service::Order),
            rpc,
            &[
                "rpc_service=\"order.v1.OrderService\"",
                "rpc_method=\"GetOrder\"",
                "rpc_grpc_status_code=\"0\""
            ]
        ),
        orders
    );
    assert!(
        count(
            text(Service::Item),
            rpc,
            &[
                "rpc_service=\"item.v1.ItemService\"",
                "rpc_method=\"GetItem\""
            ]
        ) >= orders
    );
    assert!(
        count(
            text(Service::User),
            rpc,
            &[
                "rpc_service=\"user.v1.UserService\"",
                "rpc_method=\"GetUser\""
            ]
        ) > 0
    );

    // Every exemplar names a trace of this load, and that trace is joined in the collector.
    let collector = mesh.collector.clone().unwrap();
    for (service, text) in &scraped {
        let named = exemplar_traces(text);
        assert!(!named.is_empty(), "{service:?} has exemplars: {text}");
        for t in &named {
            assert!(
                traces.contains(t),
                "{service:?}: exemplar trace {t} is one of the load's"
            );
            let check = demo::analysis::TraceCheck::of(t, &collector.trace(t));
            assert_eq!((check.roots, check.orphans), (1, 0), "{t}: {check:?}");
        }
    }

    // Scrapes that fail — a scraper that hangs up after the head, one that never reads —
    // never fail or hold up a request: the load runs alongside them.
    let admin = mesh.admin(Service::Frontend).unwrap();
    let mut scrapers = tokio::task::JoinSet::new();
    for i in 0..8 {
        scrapers.spawn(async move {
            for _ in 0..10 {
                let Ok(mut s) = TcpStream::connect(admin).await else {
                    return;
                };
                let _ = s
                    .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
                    .await;
                if i % 2 == 0 {
                    let mut head = [0_u8; 16];
                    let _ = s.read(&mut head).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                drop(s);
            }
        });
    }
    let metrics = mesh.metrics(Service::Frontend).unwrap().clone();
    let before = count(&metrics.encode().unwrap(), http, &[]);
    let more = demo::load(&base, 8, 4, &[], |_| {}).await;
    assert!(more.iter().all(|o| o.status == Some(200)), "{more:?}");
    assert!(
        more.iter().all(|o| o.latency < Duration::from_secs(2)),
        "requests held up by scrapes: {more:?}"
    );
    while scrapers.join_next().await.is_some() {}
    let after = count(&metrics.encode().unwrap(), http, &[]);
    assert_eq!(after, before + 8, "the requests count; the scrapes do not");
    mesh.stop().await;
}
