//! The demo: the whole mesh in one process — collector, `item`, `user`, `order`, `frontend`,
//! each with its own tracer provider and service name, on free loopback ports — a bounded
//! load, and the joined traces as terminal waterfalls.

pub mod analysis;
pub mod envoy;
pub mod processes;
pub mod waterfall;

use std::collections::BTreeMap;
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
use crate::telemetry::{ExportStats, Telemetry};

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
    /// The embedded collector's limits (see [`collector_limits`]).
    pub collector_limits: CollectorConfig,
    /// Whether the services report spans of their own (off: `--no-app-spans`, they keep their
    /// default layers but report nothing, and are transparent).
    pub app_spans: bool,
}

/// Collector limits that hold every span of `requests` requests of about `spans_per_request`
/// spans each (a warm-up's worth more), and never less than the default.
#[must_use]
pub fn collector_limits(requests: usize, spans_per_request: usize) -> CollectorConfig {
    let default = CollectorConfig::default();
    CollectorConfig {
        max_spans: requests
            .saturating_add(1_000)
            .saturating_mul(spans_per_request)
            .max(default.max_spans),
        ..default
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        MeshConfig {
            collector: None,
            semantics: SpanSemantics::Child,
            mode: Mode::Instrument,
            access_log: AccessLog::memory(),
            collector_limits: CollectorConfig::default(),
            app_spans: true,
        }
    }
}

/// The service a [`LocalMesh`] runs, for [`LocalMesh::stop_service`] and
/// [`LocalMesh::restart_service`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Service {
    /// The HTTP edge.
    Frontend,
    /// gRPC `user`.
    User,
    /// gRPC `order` (calls `item`).
    Order,
    /// gRPC `item`.
    Item,
}

impl Service {
    /// All four, in start order (callees first).
    pub const ALL: [Service; 4] = [
        Service::Item,
        Service::User,
        Service::Order,
        Service::Frontend,
    ];

    /// The service name spans are reported under.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Service::Frontend => "frontend",
            Service::User => "user",
            Service::Order => "order",
            Service::Item => "item",
        }
    }
}

/// One running service: its address, options, and how to stop it.
#[derive(Debug)]
struct Slot {
    addr: SocketAddr,
    options: ServiceOptions,
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
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
    services: BTreeMap<Service, Slot>,
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

/// Completes when `rx` turns true (or its sender is gone).
async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

impl LocalMesh {
    /// Start the collector (unless exporting elsewhere) and the four services. Every listener
    /// is bound before this returns, so the mesh is ready: no sleeps.
    ///
    /// # Errors
    ///
    /// When a port cannot be bound or an exporter cannot be built.
    pub async fn start(config: MeshConfig) -> Result<Self, BoxError> {
        let (stop, _) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let (collector, collector_addr, endpoint) = match &config.collector {
            Some(url) => (None, None, url.clone()),
            None => {
                let c = Collector::new(config.collector_limits);
                let (l, a) = bind().await?;
                let serve = c.clone().serve(l, stopped(stop.subscribe()));
                tasks.spawn(async move {
                    let _ = serve.await;
                });
                (Some(c), Some(a), format!("http://{a}"))
            }
        };

        let propagator = Propagator::from_env()?
            .to_builder()
            .span_semantics(config.semantics)
            .fields(crate::services::default_fields())
            .build();
        let mut telemetry = Vec::new();
        let mut listeners = Vec::new();
        let mut services = BTreeMap::new();
        for service in Service::ALL {
            let name = service.name();
            let t = Telemetry::new(name, "v1", Some(&endpoint), false)?;
            telemetry.push(t.clone());
            let options = ServiceOptions {
                propagator: propagator.clone(),
                mode: config.mode,
                spans: config.app_spans,
                telemetry: t,
                access_log: config.access_log.clone(),
                version: "v1".to_owned(),
                edge: service == Service::Frontend,
            };
            let (l, addr) = bind().await?;
            listeners.push((service, l));
            services.insert(
                service,
                Slot {
                    addr,
                    options,
                    stop: watch::channel(false).0,
                    task: None,
                },
            );
        }
        let addr = |s: Service| services.get(&s).map(|slot| slot.addr);
        let (Some(frontend), Some(user), Some(order), Some(item)) = (
            addr(Service::Frontend),
            addr(Service::User),
            addr(Service::Order),
            addr(Service::Item),
        ) else {
            return Err("a service was not bound".into());
        };
        let mut mesh = LocalMesh {
            collector,
            collector_addr,
            frontend,
            user,
            order,
            item,
            access_log: config.access_log,
            telemetry,
            services,
            stop,
            tasks,
        };
        for (service, listener) in listeners {
            mesh.spawn(service, listener)?;
        }
        Ok(mesh)
    }

    /// Serve `service` on `listener`, stopping on its own signal or the mesh's.
    fn spawn(&mut self, service: Service, listener: TcpListener) -> Result<(), BoxError> {
        let (item, user, order) = (self.item, self.user, self.order);
        let all = self.stop.subscribe();
        let Some(slot) = self.services.get_mut(&service) else {
            return Err(format!("unknown service {service:?}").into());
        };
        let (own_tx, own) = watch::channel(false);
        slot.stop = own_tx;
        let shutdown = async move {
            tokio::select! {
                () = stopped(all) => {},
                () = stopped(own) => {},
            }
        };
        let o = slot.options.clone();
        let task = match service {
            Service::Item => tokio::spawn(async move {
                let _ = item::serve(listener, item::Items::new("v1"), o, shutdown).await;
            }),
            Service::User => tokio::spawn(async move {
                let _ = user::serve(listener, o, shutdown).await;
            }),
            Service::Order => {
                let orders = order::Orders::new(o.channel(&format!("http://{item}"))?);
                tokio::spawn(async move {
                    let _ = order::serve(listener, orders, o, shutdown).await;
                })
            }
            Service::Frontend => {
                let f = frontend::Frontend::new(
                    o.channel(&format!("http://{user}"))?,
                    o.channel(&format!("http://{order}"))?,
                );
                tokio::spawn(async move {
                    let _ = frontend::serve(listener, f, o, shutdown).await;
                })
            }
        };
        slot.task = Some(task);
        Ok(())
    }

    /// Stop one service (gracefully: requests in flight finish) and wait, at most 5 s, until
    /// its port is closed. The others keep serving; calls to it fail until
    /// [`restart_service`](Self::restart_service).
    pub async fn stop_service(&mut self, service: Service) {
        let Some(slot) = self.services.get_mut(&service) else {
            return;
        };
        let _ = slot.stop.send(true);
        if let Some(task) = slot.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// Start a stopped service again on the same address (stops it first if it is running).
    ///
    /// # Errors
    ///
    /// When the address cannot be bound again.
    pub async fn restart_service(&mut self, service: Service) -> Result<(), BoxError> {
        self.stop_service(service).await;
        let Some(addr) = self.services.get(&service).map(|s| s.addr) else {
            return Err(format!("unknown service {service:?}").into());
        };
        let listener = TcpListener::bind(addr).await?;
        self.spawn(service, listener)
    }

    /// Export every queued span now (blocking work, done off the async threads).
    pub async fn flush(&self) {
        flush_all(&self.telemetry).await;
    }

    /// What became of the spans each service ended, summed over the four services.
    #[must_use]
    pub fn export_stats(&self) -> ExportStats {
        self.telemetry
            .iter()
            .map(Telemetry::stats)
            .fold(ExportStats::default(), |a, b| a + b)
    }

    /// Stop every service and the collector, flushing spans first; returns the final export
    /// counts (exact, since every provider is shut down).
    pub async fn stop(mut self) -> ExportStats {
        self.flush().await;
        let _ = self.stop.send(true);
        for slot in self.services.values_mut() {
            if let Some(task) = slot.task.take() {
                let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
            }
        }
        let telemetry = std::mem::take(&mut self.telemetry);
        stop_all(&self.stop, &mut self.tasks, telemetry.clone()).await;
        telemetry
            .iter()
            .map(Telemetry::stats)
            .fold(ExportStats::default(), |a, b| a + b)
    }
}

/// Export every span queued in these providers (blocking work, done off the async threads).
/// Providers are flushed in parallel, so a collector that hangs costs one export timeout, not
/// one per service.
pub(crate) async fn flush_all(telemetry: &[Telemetry]) {
    let all = telemetry.to_vec();
    let _ = tokio::task::spawn_blocking(move || {
        std::thread::scope(|scope| {
            for t in &all {
                scope.spawn(|| t.flush());
            }
        });
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
        std::thread::scope(|scope| {
            for t in &telemetry {
                scope.spawn(|| t.shutdown());
            }
        });
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
    /// When it was sent, from the start of the load.
    pub sent: Duration,
    /// The response status (`None`: no response within the timeout, or no connection).
    pub status: Option<u16>,
    /// Whether it got a 2xx.
    pub ok: bool,
    /// Latency.
    pub latency: Duration,
    /// The trace id from the `traceresponse` header (32 hex).
    pub trace_id: Option<String>,
    /// The `x-request-id` echoed.
    pub request_id: Option<String>,
    /// The span id this request was sent with, when the load played an instrumented client
    /// ([`load_as_client`]): `(trace id, span id)`.
    pub client_span: Option<(String, String)>,
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
    load_impl(base, n, concurrency, headers, false, progress).await
}

/// [`load`], each request sent as an instrumented client would: with a trace of its own
/// (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled: 1`, fresh ids per request), recorded in
/// [`Outcome::client_span`].
pub async fn load_as_client(
    base: &str,
    n: usize,
    concurrency: usize,
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> Vec<Outcome> {
    load_impl(base, n, concurrency, &[], true, progress).await
}

async fn load_impl(
    base: &str,
    n: usize,
    concurrency: usize,
    headers: &[(&'static str, String)],
    client_spans: bool,
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
    let began = Instant::now();
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
                let client_span = client_spans.then(|| {
                    let ids = b3_propagation::RandomIdGenerator::new();
                    use b3_propagation::IdGenerator as _;
                    (
                        ids.new_trace_id().to_string(),
                        ids.new_span_id().to_string(),
                    )
                });
                if let Some((trace_id, span_id)) = &client_span {
                    req = req
                        .header("x-b3-traceid", trace_id)
                        .header("x-b3-spanid", span_id)
                        .header("x-b3-sampled", "1");
                }
                let Ok(req) = req.body(Empty::new()) else {
                    break;
                };
                let start = Instant::now();
                let sent = start.duration_since(began);
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
                    let status = resp.status();
                    let body_ok = resp.into_body().collect().await.is_ok();
                    Some((status, body_ok, trace_id, request_id))
                })
                .await
                .ok()
                .flatten();
                let (status, ok, trace_id, request_id) = match result {
                    Some((status, body_ok, t, r)) => {
                        (Some(status.as_u16()), status.is_success() && body_ok, t, r)
                    }
                    None => (None, false, None, None),
                };
                out.push(Outcome {
                    path: path.clone(),
                    sent,
                    status,
                    ok,
                    latency: start.elapsed(),
                    trace_id,
                    request_id,
                    client_span,
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
    outcomes.sort_by_key(|o| o.sent);
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
    /// Requests completed per second, from the first send to the last answer.
    pub throughput: f64,
    /// Traces joined (one root, no orphans, all services).
    pub joined: usize,
    /// Traces checked (one per request).
    pub traces: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests: {} ok, {} failed, {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, traces: {} joined / {}",
            self.ok,
            self.failed,
            self.throughput,
            self.p50_ms,
            self.p99_ms,
            self.joined,
            self.traces
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
    let first = outcomes.iter().map(|o| o.sent).min().unwrap_or_default();
    let last = outcomes
        .iter()
        .map(|o| o.sent + o.latency)
        .max()
        .unwrap_or_default();
    let span = last.saturating_sub(first).as_secs_f64();
    Summary {
        throughput: if span > 0.0 {
            outcomes.len() as f64 / span
        } else {
            0.0
        },
        ok: outcomes.iter().filter(|o| o.ok).count(),
        failed: outcomes.iter().filter(|o| !o.ok).count(),
        p50_ms: analysis::percentile(&latencies, 50.0),
        p99_ms: analysis::percentile(&latencies, 99.0),
        joined,
        traces: outcomes.len(),
    }
}

/// Wait (bounded) until `collector` holds every one of `trace_ids`, each joined across
/// [`SERVICES`]; whether they all are.
pub async fn wait_joined<'a>(
    collector: &Collector,
    trace_ids: impl IntoIterator<Item = &'a str>,
    timeout: Duration,
) -> bool {
    let expected: Vec<&str> = trace_ids.into_iter().collect();
    let all_joined = |c: &Collector| {
        let traces = analysis::by_trace(&c.spans());
        expected.iter().all(|t| {
            traces
                .get(*t)
                .is_some_and(|s| analysis::TraceCheck::of(t, s).joined(&SERVICES))
        })
    };
    collector.wait_until(timeout, all_joined).await
}

/// Wait (bounded) until `collector` holds the trace of every outcome, joined across
/// [`SERVICES`]; returns every span collected.
pub async fn collected(
    collector: &Collector,
    outcomes: &[Outcome],
    timeout: Duration,
) -> Vec<ZipkinSpan> {
    let ids = outcomes.iter().filter_map(|o| o.trace_id.as_deref());
    wait_joined(collector, ids, timeout).await;
    collector.spans()
}

/// What the access logs say of one request sent as a client ([`load_as_client`]) through
/// services that report nothing: whether every service logged it under the same request id,
/// with the client's trace id and span id (every hop re-sent exactly the span it received).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transparency {
    /// The request id.
    pub request_id: String,
    /// The trace id and span id the client sent.
    pub sent: (String, String),
    /// The services that logged the request, in log order, with the trace and span id each
    /// logged.
    pub hops: Vec<(String, Option<String>, Option<String>)>,
    /// Whether all of [`SERVICES`] logged it, each with the client's trace id and span id.
    pub transparent: bool,
}

/// [`Transparency`] of every outcome sent as a client, from the services' JSON access-log
/// lines.
#[must_use]
pub fn transparency(lines: &[String], outcomes: &[Outcome]) -> Vec<Transparency> {
    let lines: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    outcomes
        .iter()
        .filter_map(|o| {
            let rid = o.request_id.as_deref()?;
            let (trace_id, span_id) = o.client_span.as_ref()?;
            let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
            let hops: Vec<(String, Option<String>, Option<String>)> = lines
                .iter()
                .filter(|l| l["request_id"] == rid)
                .map(|l| {
                    (
                        text(&l["service"]).unwrap_or_default(),
                        text(&l["trace_id"]),
                        text(&l["span_id"]),
                    )
                })
                .collect();
            let transparent = SERVICES.iter().all(|s| hops.iter().any(|(h, _, _)| h == s))
                && hops.iter().all(|(_, t, sp)| {
                    t.as_deref() == Some(trace_id.as_str())
                        && sp.as_deref() == Some(span_id.as_str())
                });
            Some(Transparency {
                request_id: rid.to_owned(),
                sent: (trace_id.clone(), span_id.clone()),
                hops,
                transparent,
            })
        })
        .collect()
}

/// Print every trace `collector` receives once it is complete (no span for a second),
/// rendered by `render`, until Ctrl-C.
pub async fn print_traces_until_ctrl_c(
    collector: &Collector,
    render: impl Fn(&[ZipkinSpan]) -> String,
) {
    let mut spans = collector.subscribe();
    let mut pending: BTreeMap<String, tokio::time::Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            s = spans.recv() => match s {
                Ok(s) => {
                    pending.insert(s.trace_id, tokio::time::Instant::now());
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
            _ = tick.tick() => {
                let quiet: Vec<String> = pending
                    .iter()
                    .filter(|(_, last)| last.elapsed() > Duration::from_secs(1))
                    .map(|(t, _)| t.clone())
                    .collect();
                for t in quiet {
                    if pending.remove(&t).is_some() {
                        print!("{}", render(&collector.trace(&t)));
                        println!();
                    }
                }
            }
        }
    }
    println!("stopping");
}

/// Whether standard output is a terminal (colour the waterfalls).
#[must_use]
pub fn colour() -> bool {
    std::io::stdout().is_terminal()
}
