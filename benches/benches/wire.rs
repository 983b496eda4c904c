//! Layer overhead on the wire: a bounded loopback load against two real axum services, `edge`
//! calling `backend` once per request over HTTP/1.1.
//!
//! The definition is fixed (change it only with a note in the README): every configuration
//! runs the same two handlers, and applies its layers the same way — `Router::layer` on both
//! servers and a `ServiceBuilder` layer on the edge's client, the identity layer where a
//! configuration has none — so the configurations differ only in what the layers do:
//!
//! - `bare`: nothing is forwarded (its traces fall apart);
//! - `hand_copy` (the anchor): the edge's handler copies Istio's list of headers from its
//!   request to its outgoing call, what an application writes without a library;
//! - `ours_forward`: `TraceHeadersLayer` on both servers, `PropagateTraceHeadersLayer::forward()`
//!   on the edge's client, no spans (`without_spans`);
//! - `ours_instrument`: the same layers in instrument mode with an OpenTelemetry SDK provider
//!   (always-on sampler, a batch processor over an exporter that discards): a server span per
//!   request on both services and a client span per call, all reported.
//!
//! Rounds rotate the order of the configurations (round `r` starts at configuration
//! `r mod 4`), so no configuration always runs first or last; each round sends the same number
//! of requests per configuration, 32 in flight. The table gives the median requests/s of each
//! configuration over the rounds, the spread (lowest and highest round), and its ratio to
//! `hand_copy` (the median of the per-round ratios, paired within a round). The same figures go
//! to `target/wire-bench.json`:
//! `{"configs": {"<name>": {"requests_per_s", "p50_ms", "p99_ms", "rounds": [..]}}}`.
//!
//! `cargo bench -p benches --bench wire` measures (11 rounds of 10 000 requests per
//! configuration, each round bounded to 60 s); `cargo test` runs the same code at 200 requests
//! and one round and checks the trace reaches the backend.
//!
//! `--only <configuration> --requests <n>` sends `n` requests (after 200 to warm up) to one
//! configuration and prints nothing else: for an instruction counter, whose counts do not move
//! with the machine's load as the rates do. The cost of one request on the wire is the
//! difference of two runs over the difference of their counts:
//!
//! ```text
//! cargo bench -p benches --bench wire --no-run
//! valgrind --tool=callgrind target/release/deps/wire-<hash> --only ours_forward --requests 1000
//! valgrind --tool=callgrind target/release/deps/wire-<hash> --only ours_forward --requests 3000
//! ```
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::needless_range_loop
)] // a bench binary: a panic is the report; rounds x configs read as indices

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
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::layer::util::Identity;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};
use tower_trace_headers::{PropagateTraceHeadersLayer, TraceHeadersLayer};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The edge's client. Its response body is boxed in every configuration (the layers' is their
/// own `ResponseBody`, which ends the client span with the body), so all pay the same.
type Hop = BoxCloneSyncService<Request<Empty<Bytes>>, Response<HopBody>, BoxError>;
type HopBody = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

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

const CONFIGS: [Config; 4] = [
    Config::Bare,
    Config::HandCopy,
    Config::OursForward,
    Config::OursInstrument,
];

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

/// Discards every span (the cost measured is the spans', not an exporter's).
#[derive(Debug)]
struct Discard;

impl SpanExporter for Discard {
    async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
        Ok(())
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

/// The backend answers with the trace id it received (so every run checks it arrived).
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

/// The server side of `config`, applied with `Router::layer` like every other.
fn server(router: Router, config: Config, provider: &SdkTracerProvider) -> Router {
    match config {
        Config::Bare | Config::HandCopy => router.layer(Identity::new()),
        Config::OursForward => router.layer(TraceHeadersLayer::new().without_spans()),
        Config::OursInstrument => router.layer(TraceHeadersLayer::new().tracer_provider(provider)),
    }
}

/// Start `backend` and `edge` for `config`; the edge's base URL.
async fn start(config: Config, provider: &SdkTracerProvider) -> String {
    let backend_addr = serve(server(
        Router::new().route("/", get(backend)),
        config,
        provider,
    ))
    .await;
    let raw = client();
    let hop: Hop = match config {
        Config::Bare | Config::HandCopy => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(Identity::new())
                .service(raw)
                .map_response(|r| r.map(HopBody::new))
                .map_err(BoxError::from),
        ),
        Config::OursForward => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(PropagateTraceHeadersLayer::forward().without_spans())
                .service(raw)
                .map_response(|r| r.map(HopBody::new))
                .map_err(BoxError::from),
        ),
        Config::OursInstrument => BoxCloneSyncService::new(
            ServiceBuilder::new()
                .layer(PropagateTraceHeadersLayer::instrument().tracer_provider(provider))
                .service(raw)
                .map_response(|r| r.map(HopBody::new))
                .map_err(BoxError::from),
        ),
    };
    let state = Edge {
        hop,
        backend: format!("http://{backend_addr}/"),
        copy: config == Config::HandCopy,
    };
    let edge_addr = serve(server(
        Router::new().route("/", get(edge)).with_state(state),
        config,
        provider,
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
    r
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[v.len() / 2]
}

/// Where the JSON goes: the workspace's `target/` (or `CARGO_TARGET_DIR`).
fn json_path() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
            std::path::PathBuf::from,
        )
        .join("wire-bench.json")
}

/// `--only <configuration> --requests <n>`: the one configuration to load and how many
/// requests to send it (see the module docs).
fn only() -> Option<(Config, usize)> {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
    };
    let name = value("--only")?;
    let Some(config) = CONFIGS.into_iter().find(|c| c.name() == name) else {
        panic!(
            "--only: no configuration {name:?} (one of bare, hand_copy, ours_forward, ours_instrument)"
        );
    };
    let n = value("--requests").map_or(2_000, |n| n.parse().expect("--requests: a count"));
    Some((config, n))
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (n, rounds) = if bench { (10_000, 11) } else { (200, 1) };
    let concurrency = 32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(Discard)
        .build();
    if let Some((config, n)) = only() {
        rt.block_on(async {
            let url = start(config, &provider).await;
            let _ = round(&url, 200, concurrency, Duration::from_secs(30)).await;
            let got = round(&url, n, concurrency, Duration::from_secs(600)).await;
            assert_eq!(
                got.ok,
                n,
                "{}: {} of {n} requests ok",
                config.name(),
                got.ok
            );
        });
        let _ = provider.shutdown();
        return;
    }
    rt.block_on(async {
        let mut urls = Vec::new();
        for c in CONFIGS {
            urls.push(start(c, &provider).await);
        }
        // Warm every pool and path.
        for url in &urls {
            let _ = round(url, 500.min(n), concurrency, Duration::from_secs(30)).await;
        }
        // rps[config][round], latencies[config]
        let mut rps = vec![vec![0.0; rounds]; CONFIGS.len()];
        let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); CONFIGS.len()];
        for r in 0..rounds {
            for k in 0..CONFIGS.len() {
                let i = (r + k) % CONFIGS.len();
                let c = CONFIGS[i];
                let got = round(&urls[i], n, concurrency, Duration::from_secs(60)).await;
                assert_eq!(got.ok, n, "{}: {} of {n} requests ok", c.name(), got.ok);
                // The backend saw the trace id sent to the edge (the bare edge does not
                // forward it: that is the point of the layers).
                let expected = if c == Config::Bare { 0 } else { n };
                assert_eq!(got.bodies_ok, expected, "{}: trace id reached the backend", c.name());
                rps[i][r] = got.ok as f64 / got.elapsed.as_secs_f64();
                latencies[i].extend(got.latencies_us);
            }
        }
        println!(
            "wire: {n} requests x {rounds} rounds per configuration (order rotating), {concurrency} in flight, edge -> backend over loopback HTTP/1.1"
        );
        println!(
            "{:<16} {:>11} {:>17} {:>11} {:>9} {:>9}",
            "configuration", "requests/s", "rounds min..max", "/ hand_copy", "p50 ms", "p99 ms"
        );
        let anchor = 1; // hand_copy
        let mut out = serde_json::Map::new();
        for (i, c) in CONFIGS.iter().enumerate() {
            let lat = &mut latencies[i];
            lat.sort_unstable();
            let ratios: Vec<f64> = (0..rounds).map(|r| rps[i][r] / rps[anchor][r]).collect();
            let (lo, hi) = rps[i]
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let (p50, p99) = (percentile(lat, 50.0), percentile(lat, 99.0));
            println!(
                "{:<16} {:>11.0} {:>8.0}..{:<8.0} {:>10.3}x {:>9.2} {:>9.2}",
                c.name(),
                median(&rps[i]),
                lo,
                hi,
                median(&ratios),
                p50,
                p99
            );
            out.insert(
                c.name().to_owned(),
                json!({
                    "requests_per_s": median(&rps[i]),
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "vs_hand_copy": median(&ratios),
                    "rounds": rps[i],
                }),
            );
        }
        if bench {
            let path = json_path();
            let body = serde_json::to_vec_pretty(&json!({ "configs": out })).expect("json");
            match std::fs::write(&path, body) {
                Ok(()) => println!("wrote {}", path.display()),
                Err(e) => eprintln!("could not write {}: {e}", path.display()),
            }
        }
    });
    let _ = provider.shutdown();
}
