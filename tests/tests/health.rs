//! Health and slow clients, as a kubelet, a load balancer and a hostile client see the
//! services: `/healthz` and `/readyz` on the frontend (and on an admin listener), gRPC health
//! on the gRPC services, readiness turning false when a service drains, none of it traced or
//! logged; connections that never finish their headers cut off while others are served.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use b3_propagation::Propagator;
use services::access_log::AccessLog;
use services::health::Health;
use services::telemetry::Telemetry;
use services::{ServiceOptions, frontend, user};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tower_trace_headers::Mode;

fn options(log: &AccessLog, header_read_timeout: Duration) -> ServiceOptions {
    ServiceOptions {
        propagator: Propagator::default(),
        mode: Mode::Instrument,
        spans: false,
        telemetry: Telemetry::disabled("test"),
        access_log: log.clone(),
        version: "v1".to_owned(),
        edge: true,
        health: Health::new(),
        serve: serve::ServeOptions {
            header_read_timeout,
            ..serve::ServeOptions::default()
        },
        metrics: services::metrics::Metrics::new("frontend", "v1"),
    }
}

async fn raw_get(addr: std::net::SocketAddr, path: &str) -> String {
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
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frontend_health_readiness_and_slow_clients() {
    let log = AccessLog::memory();
    let opts = options(&log, Duration::from_millis(500));
    let health = opts.health.clone();
    // Upstreams that do not exist (a loopback port bound, then let go): readiness must not
    // follow them.
    let nowhere = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let f = frontend::Frontend::new(
        opts.user_channel(&nowhere).unwrap(),
        opts.channel(&nowhere).unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(frontend::serve(l, f, opts, async {
        let _ = stopped.await;
    }));

    assert!(raw_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(raw_get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
    // Without an admin listener, its own port serves the metrics too.
    let scrape = raw_get(addr, "/metrics").await;
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    assert!(scrape.contains("application/openmetrics-text"), "{scrape}");
    // An ordinary request (its upstream down: 502) is logged; health checks are not.
    assert!(
        raw_get(addr, "/orders/o-1")
            .await
            .starts_with("HTTP/1.1 502")
    );
    let lines = log.lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("/orders/{id}"));
    let probe = raw_get(addr, "/healthz").await;
    assert!(
        !probe.to_ascii_lowercase().contains("x-request-id"),
        "not traced: {probe}"
    );

    // Slow clients: 200 connections that never finish their headers are closed within the
    // timeout, while normal requests are served.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /orders/o-1 HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    let started = Instant::now();
    for _ in 0..5 {
        assert!(raw_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    }
    for mut s in slow {
        let mut buf = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(closed.is_ok(), "a slow connection was still open after 5 s");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Draining: not ready any more, still alive.
    health.drain();
    assert!(raw_get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
    assert!(raw_get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_serving_until_drained_and_untraced() {
    let log = AccessLog::memory();
    let opts = options(&log, Duration::from_secs(5));
    let health = opts.health.clone();
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(user::serve(l, opts, std::future::pending()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let check = |name: &str| HealthCheckRequest {
        service: name.to_owned(),
    };
    let status = |r: tonic::Response<tonic_health::pb::HealthCheckResponse>| r.into_inner().status;
    let serving = ServingStatus::Serving as i32;
    let not_serving = ServingStatus::NotServing as i32;
    let resp = client.check(check("user.v1.UserService")).await.unwrap();
    assert!(resp.metadata().get("x-request-id").is_none(), "not traced");
    assert_eq!(status(resp), serving);
    assert_eq!(status(client.check(check("")).await.unwrap()), serving);
    assert!(log.lines().is_empty(), "not logged: {:?}", log.lines());

    health.drain();
    // The service by name and the server as a whole (what the kubelet's gRPC probe and
    // `grpc_health_probe` ask by default) both turn NOT_SERVING.
    for name in ["user.v1.UserService", ""] {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let s = status(client.check(check(name)).await.unwrap());
            if s == not_serving {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name:?} still {s} after draining"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
