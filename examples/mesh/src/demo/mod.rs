//! The demo: the whole mesh in one process — collector, `item`, `user`, `order`, `frontend`,
//! each with its own tracer provider and service name, on free loopback ports — a bounded
//! load, and the joined traces as terminal waterfalls.

pub mod analysis;
pub mod envoy;
pub mod waterfall;

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use b3_propagation::{Propagator, SpanSemantics};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_trace_headers::Mode;

use crate::access_log::AccessLog;
use crate::collector::{Collector, CollectorConfig, ZipkinSpan};
use crate::services::{ServiceOptions, frontend, item, order, user};
use crate::telemetry::Telemetry;

/// The four services every joined trace must contain.
pub const SERVICES: [&str; 4] = ["frontend", "user", "order", "item"];

/// How to run the local mesh.
#[derive(Clone, Debug)]
pub struct MeshConfig {
    /// Export spans here instead of an embedded collector (a base URL, OTLP/HTTP).
    pub collector: Option<String>,
    /// Shared or child spans.
    pub semantics: SpanSemantics,
    /// Forward or instrument mode for outgoing calls.
    pub mode: Mode,
    /// Where access logs go.
    pub access_log: AccessLog,
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            collector: None,
            semantics: SpanSemantics::Child,
            mode: Mode::Instrument,
            access_log: AccessLog::memory(),
        }
    }
}

/// A running local mesh.
#[derive(Debug)]
pub struct LocalMesh {
    /// The embedded collector, when there is one.
    pub collector: Option<Collector>,
    /// Its address.
    pub collector_addr: Option<SocketAddr>,
    /// The frontend (the entry point).
    pub frontend: SocketAddr,
    /// `user`.
    pub user: SocketAddr,
    /// `order`.
    pub order: SocketAddr,
    /// `item`.
    pub item: SocketAddr,
    /// The access log every service writes to.
    pub access_log: AccessLog,
    telemetry: Vec<Telemetry>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// Any error starting the mesh.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl LocalMesh {
    /// Start the collector (unless exporting elsewhere) and the four services. Every listener
    /// is bound before this returns, so the mesh is ready: no sleeps.
    ///
    /// # Errors
    ///
    /// When a port cannot be bound or an exporter cannot be built.
    pub async fn start(config: MeshConfig) -> Result<Self, BoxError> {
        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();

        let (collector, collector_addr, endpoint) = match &config.collector {
            Some(url) => (None, None, url.clone()),
            None => {
                let c = Collector::new(CollectorConfig::default());
                let (l, a) = bind().await?;
                let serve = c.clone().serve(l, shutdown());
                tasks.spawn(async move {
                    let _ = serve.await;
                });
                (Some(c), Some(a), format!("http://{a}"))
            }
        };

        let propagator = Propagator::from_env()?
            .to_builder()
            .span_semantics(config.semantics)
            .build();
        let mut telemetry = Vec::new();
        let mut options = |service: &str, version: &str| -> Result<ServiceOptions, BoxError> {
            let t = Telemetry::new(service, version, Some(&endpoint), false)?;
            telemetry.push(t.clone());
            Ok(ServiceOptions {
                propagator: propagator.clone(),
                mode: config.mode,
                spans: true,
                telemetry: t,
                access_log: config.access_log.clone(),
                version: version.to_owned(),
                edge: service == "frontend",
            })
        };

        let (item_l, item_a) = bind().await?;
        let (user_l, user_a) = bind().await?;
        let (order_l, order_a) = bind().await?;
        let (front_l, front_a) = bind().await?;

        let o = options("item", "v1")?;
        let s = shutdown();
        tasks.spawn(async move {
            let _ = item::serve(item_l, item::Items::new("v1"), o, s).await;
        });
        let o = options("user", "v1")?;
        let s = shutdown();
        tasks.spawn(async move {
            let _ = user::serve(user_l, o, s).await;
        });
        let o = options("order", "v1")?;
        let orders = order::Orders::new(o.channel(&format!("http://{item_a}"))?);
        let s = shutdown();
        tasks.spawn(async move {
            let _ = order::serve(order_l, orders, o, s).await;
        });
        let o = options("frontend", "v1")?;
        let f = frontend::Frontend::new(
            o.channel(&format!("http://{user_a}"))?,
            o.channel(&format!("http://{order_a}"))?,
        );
        let s = shutdown();
        tasks.spawn(async move {
            let _ = frontend::serve(front_l, f, o, s).await;
        });

        Ok(LocalMesh {
            collector,
            collector_addr,
            frontend: front_a,
            user: user_a,
            order: order_a,
            item: item_a,
            access_log: config.access_log,
            telemetry,
            stop,
            tasks,
        })
    }

    /// Export every queued span now (blocking work, done off the async threads).
    pub async fn flush(&self) {
        flush_all(&self.telemetry).await;
    }

    /// Stop every service and the collector, flushing spans first.
    pub async fn stop(mut self) {
        self.flush().await;
        stop_all(
            &self.stop,
            &mut self.tasks,
            std::mem::take(&mut self.telemetry),
        )
        .await;
    }
}

/// Export every span queued in these providers (blocking work, done off the async threads).
pub(crate) async fn flush_all(telemetry: &[Telemetry]) {
    let all = telemetry.to_vec();
    let _ = tokio::task::spawn_blocking(move || {
        for t in &all {
            t.flush();
        }
    })
    .await;
}

/// Signal the services to stop, wait (bounded) for their tasks, then shut the providers down.
pub(crate) async fn stop_all(
    stop: &watch::Sender<bool>,
    tasks: &mut JoinSet<()>,
    telemetry: Vec<Telemetry>,
) {
    let _ = stop.send(true);
    while tokio::time::timeout(Duration::from_secs(5), tasks.join_next())
        .await
        .ok()
        .flatten()
        .is_some()
    {}
    let _ = tokio::task::spawn_blocking(move || {
        for t in &telemetry {
            t.shutdown();
        }
    })
    .await;
}

/// The routes the load cycles through.
#[must_use]
pub fn paths(n: usize) -> Vec<String> {
    let users = ["u-1", "u-2", "u-3", "u-4"];
    let orders = ["o-1", "o-2", "o-3", "o-4", "o-5"];
    (0..n)
        .map(|i| match i % 3 {
            0 => "/".to_owned(),
            1 => format!("/users/{}", users[(i / 3) % users.len()]),
            _ => format!("/orders/{}", orders[(i / 3) % orders.len()]),
        })
        .collect()
}

/// One request's outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The path requested.
    pub path: String,
    /// Whether it got a 2xx.
    pub ok: bool,
    /// Latency.
    pub latency: Duration,
    /// The trace id from the `traceresponse` header (32 hex).
    pub trace_id: Option<String>,
    /// The `x-request-id` echoed.
    pub request_id: Option<String>,
}

/// Send `n` requests to `base` (e.g. `http://127.0.0.1:8000`), `concurrency` at a time, each
/// bounded by a timeout. `progress` is called with the number done, about once a second.
pub async fn load(
    base: &str,
    n: usize,
    concurrency: usize,
    headers: &[(&'static str, String)],
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> Vec<Outcome> {
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(concurrency.max(1))
        .build_http::<Empty<Bytes>>();
    let paths = Arc::new(paths(n));
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let headers: Arc<Vec<(&'static str, String)>> = Arc::new(headers.to_vec());
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1).min(n.max(1)) {
        let (client, paths, next, done, headers, base) = (
            client.clone(),
            paths.clone(),
            next.clone(),
            done.clone(),
            headers.clone(),
            base.to_owned(),
        );
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let mut req = http::Request::get(format!("{base}{path}"));
                for (k, v) in headers.iter() {
                    req = req.header(*k, v);
                }
                let Ok(req) = req.body(Empty::new()) else {
                    break;
                };
                let start = Instant::now();
                let result = tokio::time::timeout(Duration::from_secs(30), async {
                    let resp = client.request(req).await.ok()?;
                    let trace_id = resp
                        .headers()
                        .get("traceresponse")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.get(3..35))
                        .map(str::to_owned);
                    let request_id = resp
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let ok = resp.status().is_success();
                    let body_ok = resp.into_body().collect().await.is_ok();
                    Some((ok && body_ok, trace_id, request_id))
                })
                .await
                .ok()
                .flatten();
                let (ok, trace_id, request_id) = result.unwrap_or((false, None, None));
                out.push(Outcome {
                    path: path.clone(),
                    ok,
                    latency: start.elapsed(),
                    trace_id,
                    request_id,
                });
                done.fetch_add(1, Ordering::Relaxed);
            }
            out
        });
    }
    let reporter = {
        let done = done.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                progress(done.load(Ordering::Relaxed));
            }
        })
    };
    let mut outcomes = Vec::with_capacity(n);
    while let Some(r) = workers.join_next().await {
        if let Ok(mut o) = r {
            outcomes.append(&mut o);
        }
    }
    reporter.abort();
    outcomes
}

/// The demo's summary of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Requests answered 2xx.
    pub ok: usize,
    /// Requests that failed.
    pub failed: usize,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Traces joined (one root, no orphans, all services).
    pub joined: usize,
    /// Traces checked (one per request).
    pub traces: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests: {} ok, {} failed, p50 {:.1} ms, p99 {:.1} ms, traces: {} joined / {}",
            self.ok, self.failed, self.p50_ms, self.p99_ms, self.joined, self.traces
        )
    }
}

/// Summarise outcomes against the collected spans: every request's trace (from its
/// `traceresponse`) must be joined with spans from all of `services`.
#[must_use]
pub fn summarise(outcomes: &[Outcome], spans: &[ZipkinSpan], services: &[&str]) -> Summary {
    let mut latencies: Vec<f64> = outcomes
        .iter()
        .map(|o| o.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let traces = analysis::by_trace(spans);
    let joined = outcomes
        .iter()
        .filter(|o| {
            o.trace_id
                .as_ref()
                .and_then(|t| traces.get(t))
                .is_some_and(|s| analysis::TraceCheck::of("", s).joined(services))
        })
        .count();
    Summary {
        ok: outcomes.iter().filter(|o| o.ok).count(),
        failed: outcomes.iter().filter(|o| !o.ok).count(),
        p50_ms: analysis::percentile(&latencies, 50.0),
        p99_ms: analysis::percentile(&latencies, 99.0),
        joined,
        traces: outcomes.len(),
    }
}

/// Whether standard output is a terminal (colour the waterfalls).
#[must_use]
pub fn colour() -> bool {
    std::io::stdout().is_terminal()
}
