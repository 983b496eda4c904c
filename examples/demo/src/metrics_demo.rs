//! `demo --prometheus`: a real Prometheus ([`crate::prometheus`]) scraping the apps' `/metrics`
//! (and, with `--envoy`, the six Envoys' `/stats/prometheus`), the seed's four queries, the apps'
//! own p95 latency by service and route, and from the slowest bucket to its trace.
//!
//! Every target gets an `app` label (the service; `front-proxy` for the edge proxy) and a
//! `version` label; Envoy's series are relabelled at scrape time so the seed's queries run as
//! written ([`envoy_seed_relabel`]), except for two adaptations, printed with the results: the
//! seed's `cluster!="local_service"` becomes `cluster!~".+-app|trace-collector|envoy-admin"`
//! (our clusters to the local app, the collector and the admin API), and its `[5m]` rate window
//! becomes [`RATE_WINDOW`], which covers a demo run (a rate needs two scrapes of a counter
//! that moved between them: the demo sends a warm-up, waits for a scrape, sends its load, and
//! waits for two more).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use collector::{Collector, ZipkinSpan};

use crate::envoy::{MeshTopology, PROXY_NAMES};
use crate::prometheus::{
    ENVOY_METRICS_PATH, Prometheus, PrometheusConfig, PrometheusError, Sample, ScrapeTarget,
    envoy_seed_relabel,
};

/// How often the demo's Prometheus scrapes every target.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(1);

/// The rate window of the demo's queries (the seed's is `5m`, for a cluster that runs for
/// days): long enough to cover a whole demo run.
pub const RATE_WINDOW: &str = "1m";

/// The clusters the seed's `cluster!="local_service"` meant to leave out, as named here: each
/// sidecar's cluster to its own app (`<svc>-app`), the collector's, the admin API's.
pub const LOCAL_CLUSTERS: &str = r#"cluster!~".+-app|trace-collector|envoy-admin""#;

/// The job of the apps' targets.
pub const APPS_JOB: &str = "apps";
/// The job of the Envoys' targets.
pub const ENVOY_JOB: &str = "envoy";

/// The seed's four queries, adapted as the [module docs](self) say: (what it answers, PromQL).
#[must_use]
pub fn seed_queries() -> [(&'static str, String); 4] {
    let w = RATE_WINDOW;
    let f = LOCAL_CLUSTERS;
    [
        (
            "p95 upstream latency (ms) by app and cluster",
            format!(
                "histogram_quantile(0.95, sum(rate(envoy_upstream_rq_time_bucket{{{f}}}[{w}])) by (le,app, cluster))"
            ),
        ),
        (
            "upstream requests per second by app and cluster",
            format!("sum(rate(envoy_upstream_rq_time_count{{{f}}}[{w}])) by (app, cluster)"),
        ),
        (
            "healthy hosts by app and cluster",
            "sum(envoy_health_check_healthy) by (app,cluster)".to_owned(),
        ),
        (
            "upstream connections opened by app and cluster",
            "sum(envoy_upstream_cx_total) by (app,cluster)".to_owned(),
        ),
    ]
}

/// The apps' own p95 latency (seconds) by service and route or gRPC method — and by version
/// when `by_version`.
#[must_use]
pub fn app_p95_queries(by_version: bool) -> [String; 2] {
    let w = RATE_WINDOW;
    let v = if by_version { ", service_version" } else { "" };
    [
        format!(
            "histogram_quantile(0.95, sum by (le, service_name{v}, http_route) (rate(http_server_request_duration_seconds_bucket[{w}])))"
        ),
        format!(
            "histogram_quantile(0.95, sum by (le, service_name{v}, rpc_method) (rate(rpc_server_call_duration_seconds_bucket[{w}])))"
        ),
    ]
}

/// An app's admin listener as a scrape target.
#[must_use]
pub fn app_target(service: &str, version: &str, admin: SocketAddr) -> ScrapeTarget {
    ScrapeTarget::new(APPS_JOB, admin.to_string())
        .label("app", service)
        .label("version", version)
}

/// The six Envoys' admin APIs as scrape targets: `app` is the service a sidecar belongs to
/// (`front-proxy` for the edge), `version` the item sidecars' version.
#[must_use]
pub fn envoy_targets(topology: &MeshTopology) -> Vec<ScrapeTarget> {
    let mut targets = vec![
        ScrapeTarget::new(ENVOY_JOB, topology.front_proxy.admin.to_string())
            .metrics_path(ENVOY_METRICS_PATH)
            .label("app", PROXY_NAMES[0])
            .label("proxy", PROXY_NAMES[0]),
    ];
    for (proxy, sidecar) in topology.sidecars() {
        let name = proxy.trim_end_matches("-sidecar");
        let (app, version) = match name.split_once("-v") {
            Some((app, v)) => (app, format!("v{v}")),
            None => (name, "v1".to_owned()),
        };
        targets.push(
            ScrapeTarget::new(ENVOY_JOB, sidecar.admin.to_string())
                .metrics_path(ENVOY_METRICS_PATH)
                .label("app", app)
                .label("version", version)
                .label("proxy", proxy),
        );
    }
    targets
}

/// A running Prometheus for one demo run.
#[derive(Debug)]
pub struct MetricsDemo {
    prometheus: Prometheus,
    started: SystemTime,
    envoy: bool,
}

impl MetricsDemo {
    /// Provision and start Prometheus scraping `targets` every [`SCRAPE_INTERVAL`] (with the
    /// seed relabelling on the [`ENVOY_JOB`]), and wait until every target is up.
    ///
    /// # Errors
    ///
    /// When Prometheus cannot be provisioned or started, or a target stays down.
    pub async fn start(targets: Vec<ScrapeTarget>) -> Result<Self, PrometheusError> {
        let envoy = targets.iter().any(|t| t.job == ENVOY_JOB);
        let mut config = PrometheusConfig::new(SCRAPE_INTERVAL);
        for t in targets {
            config = config.target(t);
        }
        if envoy {
            config = config.metric_relabel(ENVOY_JOB, envoy_seed_relabel());
        }
        let started = SystemTime::now();
        let prometheus = Prometheus::start(&config).await?;
        prometheus
            .wait_for_targets_up(Duration::from_secs(30))
            .await?;
        Ok(MetricsDemo {
            prometheus,
            started,
            envoy,
        })
    }

    /// The running Prometheus.
    #[must_use]
    pub fn prometheus(&self) -> &Prometheus {
        &self.prometheus
    }

    /// Wait until every target has been scraped `n` more times from now.
    pub async fn scrapes(&self, n: u32) {
        tokio::time::sleep(SCRAPE_INTERVAL * n + SCRAPE_INTERVAL / 2).await;
    }

    /// Run the queries and follow the slowest exemplar to its trace in `collector`.
    ///
    /// # Errors
    ///
    /// When Prometheus does not answer or rejects a query.
    pub async fn report(
        &self,
        collector: &Collector,
        by_version: bool,
    ) -> Result<MetricsReport, PrometheusError> {
        let p = &self.prometheus;
        let mut seed = Vec::new();
        if self.envoy {
            for (title, query) in seed_queries() {
                let rows = p.query(&query).await?;
                seed.push(QueryResult { title, query, rows });
            }
        }
        let mut app_p95 = Vec::new();
        for query in app_p95_queries(by_version) {
            app_p95.extend(
                p.query(&query)
                    .await?
                    .into_iter()
                    .filter(|s| s.value.is_finite()),
            );
        }
        app_p95.sort_by(|a, b| {
            let key = |s: &Sample| {
                (
                    s.metric.get("service_name").cloned(),
                    s.metric.get("service_version").cloned(),
                    route_of(&s.metric),
                )
            };
            key(a).cmp(&key(b))
        });
        let slowest = self.slowest_exemplar(collector).await?;
        Ok(MetricsReport {
            version: p.version().to_owned(),
            url: p.url().to_owned(),
            seed,
            app_p95,
            by_version,
            slowest,
        })
    }

    /// The exemplar with the largest value, among the apps' histograms, whose trace the
    /// collector has.
    async fn slowest_exemplar(
        &self,
        collector: &Collector,
    ) -> Result<Option<SlowestExemplar>, PrometheusError> {
        let series = self
            .prometheus
            .query_exemplars(
                r#"{__name__=~"http_server_request_duration_seconds_bucket|rpc_server_call_duration_seconds_bucket"}"#,
                self.started,
                SystemTime::now() + Duration::from_secs(1),
            )
            .await?;
        let mut candidates: Vec<(f64, BTreeMap<String, String>, String)> = series
            .into_iter()
            .flat_map(|s| {
                s.exemplars.into_iter().filter_map(move |e| {
                    let trace = e.labels.get("trace_id")?.clone();
                    Some((e.value, s.series_labels.clone(), trace))
                })
            })
            .collect();
        candidates.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (value, labels, trace_id) in candidates {
            let spans = collector.trace(&trace_id);
            if !spans.is_empty() {
                return Ok(Some(SlowestExemplar {
                    seconds: value,
                    labels,
                    trace_id,
                    spans,
                }));
            }
        }
        Ok(None)
    }

    /// Stop Prometheus.
    pub async fn stop(self) {
        self.prometheus.stop().await;
    }
}

/// The route label of an app series: `http_route`, else `rpc_method`.
fn route_of(labels: &BTreeMap<String, String>) -> String {
    labels
        .get("http_route")
        .or_else(|| labels.get("rpc_method"))
        .cloned()
        .unwrap_or_default()
}

/// One query and what it returned.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// What it answers.
    pub title: &'static str,
    /// The PromQL.
    pub query: String,
    /// Its rows.
    pub rows: Vec<Sample>,
}

/// An exemplar from the slowest bucket, with its trace.
#[derive(Debug, Clone)]
pub struct SlowestExemplar {
    /// The observed duration.
    pub seconds: f64,
    /// The bucket series' labels (`le`, service, route...).
    pub labels: BTreeMap<String, String>,
    /// The exemplar's trace id.
    pub trace_id: String,
    /// The trace, from the collector.
    pub spans: Vec<ZipkinSpan>,
}

/// What `demo --prometheus` prints.
#[derive(Debug, Clone)]
pub struct MetricsReport {
    /// Prometheus' version.
    pub version: String,
    /// Its URL.
    pub url: String,
    /// The seed's four queries (with `--envoy`).
    pub seed: Vec<QueryResult>,
    /// The apps' own p95 (seconds) by service and route.
    pub app_p95: Vec<Sample>,
    /// Whether [`app_p95`](Self::app_p95) is by version too.
    pub by_version: bool,
    /// From the slowest bucket to its trace.
    pub slowest: Option<SlowestExemplar>,
}

impl MetricsReport {
    /// The rows of seed query `index` (0..4).
    #[must_use]
    pub fn seed_rows(&self, index: usize) -> &[Sample] {
        self.seed.get(index).map_or(&[], |q| &q.rows)
    }
}

fn label<'a>(s: &'a Sample, name: &str) -> &'a str {
    s.metric.get(name).map_or("-", String::as_str)
}

impl fmt::Display for MetricsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "prometheus {} at {} (scrape every {} s, rate window {RATE_WINDOW}; the seed's \
             cluster!=\"local_service\" is {LOCAL_CLUSTERS} here)",
            self.version,
            self.url,
            SCRAPE_INTERVAL.as_secs()
        )?;
        if self.seed.is_empty() {
            writeln!(
                f,
                "  (the seed's four queries read Envoy's statistics: run with --envoy)"
            )?;
        }
        for (i, q) in self.seed.iter().enumerate() {
            writeln!(f, "{}", q.title)?;
            writeln!(f, "  {}", q.query)?;
            if q.rows.is_empty() {
                writeln!(f, "    (no rows)")?;
            }
            let mut rows: Vec<&Sample> = q.rows.iter().collect();
            rows.sort_by(|a, b| {
                (label(a, "app"), label(a, "cluster")).cmp(&(label(b, "app"), label(b, "cluster")))
            });
            for s in rows {
                let value = if i == 0 {
                    format!("{:.1}", s.value)
                } else if i == 1 {
                    format!("{:.2}", s.value)
                } else {
                    format!("{}", s.value)
                };
                writeln!(
                    f,
                    "    app={:<12} cluster={:<16} {value:>8}",
                    label(s, "app"),
                    label(s, "cluster")
                )?;
            }
        }
        writeln!(
            f,
            "the apps' own p95 by service{} and route (http_server_request_duration_seconds and \
             rpc_server_call_duration_seconds):",
            if self.by_version { ", version" } else { "" },
        )?;
        for s in &self.app_p95 {
            let version = if self.by_version {
                format!(" {}", label(s, "service_version"))
            } else {
                String::new()
            };
            writeln!(
                f,
                "    {:<9}{version} {:<28} {:>8.1} ms",
                label(s, "service_name"),
                route_of(&s.metric),
                s.value * 1000.0
            )?;
        }
        match &self.slowest {
            Some(e) => {
                let bucket = e.labels.get("le").map_or("-", String::as_str);
                writeln!(
                    f,
                    "slowest bucket to its trace: {} {} le={bucket}: exemplar trace_id={} ({:.1} ms), \
                     from the collector:",
                    e.labels.get("service_name").map_or("-", String::as_str),
                    route_of(&e.labels),
                    e.trace_id,
                    e.seconds * 1000.0
                )?;
                write!(f, "{}", crate::waterfall::render(&e.spans, crate::colour()))?;
            }
            None => writeln!(f, "no exemplar led to a trace in the collector")?,
        }
        Ok(())
    }
}
