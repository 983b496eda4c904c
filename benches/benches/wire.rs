//! Layer overhead on the wire: a bounded loopback load against two real axum services, `edge`
//! calling `backend` once per request over HTTP/1.1, without layers and with
//! [`TraceHeadersLayer`] on both servers plus [`PropagateTraceHeadersLayer`] on the edge's
//! client. The configurations alternate over several rounds; the median throughput of each is
//! reported with its ratio to `bare`.
//!
//! `bare` forwards nothing (its traces fall apart); `hand_copy` is what an application writes
//! without a library, copying Istio's list of headers from each request to its outgoing call;
//! `ours_forward` / `ours_instrument` are the layers (headers only: the crate's `opentelemetry`
//! feature is off under `cargo bench`).
//!
//! `cargo bench -p benches --bench wire` runs the measurement (20 000 requests per
//! configuration and round, 32 in flight, 5 rounds, each round bounded to 60 s).
//! `cargo test` runs the same code once at a small bound and checks the headers arrive.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)] // a bench binary: a panic is the report

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Hop = BoxCloneSyncService<Request<Empty<Bytes>>, Response<Incoming>, BoxError>;

/// What Envoy delivers: ordinary headers, `x-request-id` and B3.
const ENVOY_HEADERS: [(&str, &str); 9] = [
    ("user-agent", "curl/8.5.0"),
    ("accept", "*/*"),
    ("x-forwarded-proto", "http"),
    ("x-envoy-expected-rq-timeout-ms", "15000"),
    ("x-request-id", "4f9cf65f-1b6a-9c3b-8d0e-2a7c9b1e5d43"),
    ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
    ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ("x-b3-parentspanid", "0020000000000001"),
    ("x-b3-sampled", "1"),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Config {
    Bare,
    HandCopy,
    OursForward,
    OursInstrument,
}

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Bare => "bare",
            Config::HandCopy => "hand_copy",
            Config::OursForward => "ours_forward",
            Config::OursInstrument => "ours_instrument",
        }
    }
}

#[derive(Clone)]
struct Edge {
    hop: Hop,
    backend: String,
    /// Copy the tracing headers by hand (what an application writes without a library).
    copy: bool,
}

/// The headers Istio asks applications to copy from each request to its outgoing calls.
const COPIED: [&str; 8] = [
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "traceparent",
];

async fn edge(State(edge): State<Edge>, headers: HeaderMap) -> Result<Bytes, StatusCode> {
    let mut req = Request::get(&edge.backend)
        .body(Empty::new())
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    if edge.copy {
        for name in COPIED {
            if let Some(v) = headers.get(name) {
                req.headers_mut().insert(name, v.clone());
            }
        }
    }
    let resp = edge
        .hop
        .oneshot(req)
        .await
        .map_err(|_| StatusCode::BAD_GATEWAY)?;
    if !resp.status().is_success() {
        return Err(StatusCode::BAD_GATEWAY);
    }
    resp.into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|_| StatusCode::BAD_GATEWAY)
}

/// The backend answers with the trace id it received (so the smoke run can check it).
async fn backend(headers: HeaderMap) -> String {
    let b3 = headers
        .get("x-b3-traceid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    format!("hello {b3}")
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    addr
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Start `backend` and `edge` for `config`; the edge's base URL.
async fn start(config: Config) -> String {
    let traced = |r: Router| match config {
        Config::Bare | Config::HandCopy => r,
        Config::OursForward | Config::OursInstrument => r.layer(TraceHeadersLayer::new()),
    };
    let backend_addr = serve(traced(Router::new().route("/", get(backend)))).await;
    let raw = client();
    let hop: Hop = match config {
        Config::Bare | Config::HandCopy => BoxCloneSyncService::new(raw.map_err(BoxError::from)),
        Config::OursForward | Config::OursInstrument => {
            let layer = if config == Config::OursForward {
                PropagateTraceHeadersLayer::forward()
            } else {
                PropagateTraceHeadersLayer::instrument()
            };
            BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .layer(layer)
                    .service(raw)
                    .map_err(BoxError::from),
            )
        }
    };
    let state = Edge {
        hop,
        backend: format!("http://{backend_addr}/"),
        copy: config == Config::HandCopy,
    };
    let edge_addr = serve(traced(
        Router::new().route("/", get(edge)).with_state(state),
    ))
    .await;
    format!("http://{edge_addr}/")
}

struct Round {
    ok: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    bodies_ok: usize,
}

/// `n` requests, `concurrency` at a time, stopping early at `limit`.
async fn round(url: &str, n: usize, concurrency: usize, limit: Duration) -> Round {
    let client = client();
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + limit;
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
        workers.spawn(async move {
            let mut out = (0usize, 0usize, Vec::new());
            while next.fetch_add(1, Ordering::Relaxed) < n && Instant::now() < deadline {
                let mut req = Request::get(&url).body(Empty::<Bytes>::new()).unwrap();
                for (k, v) in ENVOY_HEADERS {
                    req.headers_mut()
                        .insert(HeaderName::from_static(k), HeaderValue::from_static(v));
                }
                let t = Instant::now();
                let Ok(Ok(resp)) =
                    tokio::time::timeout(Duration::from_secs(10), client.request(req)).await
                else {
                    continue;
                };
                let ok = resp.status().is_success();
                let body = resp.into_body().collect().await.map(|b| b.to_bytes());
                out.2
                    .push(u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX));
                if ok {
                    out.0 += 1;
                    if body.is_ok_and(|b| b.ends_with(ENVOY_HEADERS[5].1.as_bytes())) {
                        out.1 += 1;
                    }
                }
            }
            Ok::<_, Infallible>(out)
        });
    }
    let mut r = Round {
        ok: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::with_capacity(n),
        bodies_ok: 0,
    };
    while let Some(Ok(Ok((ok, bodies_ok, mut lat)))) = workers.join_next().await {
        r.ok += ok;
        r.bodies_ok += bodies_ok;
        r.latencies_us.append(&mut lat);
    }
    r.elapsed = start.elapsed();
    r.latencies_us.sort_unstable();
    r
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if bench { (20_000, 5) } else { (200, 1) };
    let concurrency = 32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let configs = [
            Config::Bare,
            Config::HandCopy,
            Config::OursForward,
            Config::OursInstrument,
        ];
        let mut urls = Vec::new();
        for c in configs {
            urls.push((c, start(c).await));
        }
        // Warm every pool and path.
        for (_, url) in &urls {
            let _ = round(url, 500.min(n), concurrency, Duration::from_secs(30)).await;
        }
        let mut results: Vec<(Config, Vec<f64>, Vec<u64>)> =
            configs.iter().map(|c| (*c, Vec::new(), Vec::new())).collect();
        for _ in 0..rounds {
            for (i, (c, url)) in urls.iter().enumerate() {
                let r = round(url, n, concurrency, Duration::from_secs(60)).await;
                assert_eq!(r.ok, n, "{}: {} of {n} requests ok", c.name(), r.ok);
                // The backend saw the trace id sent to the edge (the bare edge does not
                // forward it: that is the point of the layers).
                let expected = if *c == Config::Bare { 0 } else { n };
                assert_eq!(r.bodies_ok, expected, "{}: trace id reached the backend", c.name());
                results[i].1.push(r.ok as f64 / r.elapsed.as_secs_f64());
                results[i].2.extend(r.latencies_us);
            }
        }
        println!(
            "wire: {n} requests x {rounds} rounds per configuration, {concurrency} in flight, edge -> backend over loopback HTTP/1.1"
        );
        println!(
            "{:<16} {:>12} {:>9} {:>9} {:>9}",
            "configuration", "requests/s", "vs bare", "p50 ms", "p99 ms"
        );
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut bare_rps = 0.0;
        for (c, rps, lat) in &mut results {
            lat.sort_unstable();
            let m = median(rps);
            if *c == Config::Bare {
                bare_rps = m;
            }
            println!(
                "{:<16} {:>12.0} {:>8.3}x {:>9.2} {:>9.2}",
                c.name(),
                m,
                m / bare_rps,
                percentile(lat, 50.0),
                percentile(lat, 99.0)
            );
        }
    });
}
