//! A real Prometheus (Debian's 2.42, provisioned on first use) scraping two
//! endpoints served by this test on loopback: an app's OpenMetrics
//! `/metrics` (a `prometheus-client` histogram with a `trace_id` exemplar)
//! and an imitation of Envoy 1.40's `/stats/prometheus` (classic text
//! format, native `envoy_cluster_*` names), relabelled so the seed's
//! queries run as written.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::routing::get;
use demo::prometheus::{
    ENVOY_METRICS_PATH, Health, MetricRelabel, Prometheus, PrometheusConfig, PrometheusError,
    SEED_QUERIES, Sample, ScrapeTarget, envoy_seed_relabel, prometheus_binary_at, promtool_binary,
};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabels {
    trace_id: String,
}

type Durations = Family<
    RouteLabels,
    HistogramWithExemplars<TraceLabels>,
    fn() -> HistogramWithExemplars<TraceLabels>,
>;

fn new_histogram() -> HistogramWithExemplars<TraceLabels> {
    HistogramWithExemplars::new(exponential_buckets(0.005, 2.0, 10))
}

/// What the test server serves, and the `Accept` headers it was sent.
struct Endpoints {
    registry: Registry,
    /// Scrapes of the Envoy imitation so far: its counters grow per scrape,
    /// so `rate()` has something to say.
    envoy_scrapes: AtomicU64,
    /// `(path, Accept)` of every scrape.
    accepts: Mutex<Vec<(&'static str, String)>>,
}

impl Endpoints {
    fn record(&self, path: &'static str, headers: &HeaderMap) {
        let accept = headers
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        self.accepts.lock().unwrap().push((path, accept));
    }

    fn accept_of(&self, path: &str) -> Option<String> {
        let accepts = self.accepts.lock().unwrap();
        accepts
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, a)| a.clone())
    }
}

async fn app_metrics(
    State(endpoints): State<Arc<Endpoints>>,
    headers: HeaderMap,
) -> impl axum::response::IntoResponse {
    endpoints.record("/metrics", &headers);
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, &endpoints.registry).unwrap();
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Envoy 1.40's `/stats/prometheus` shape: classic text format, native
/// names, `envoy_cluster_name` labels; a histogram in milliseconds.
async fn envoy_stats(
    State(endpoints): State<Arc<Endpoints>>,
    headers: HeaderMap,
) -> impl axum::response::IntoResponse {
    endpoints.record(ENVOY_METRICS_PATH, &headers);
    let n = endpoints.envoy_scrapes.fetch_add(1, Ordering::Relaxed) + 1;
    let mut body = String::new();
    body.push_str("# TYPE envoy_cluster_upstream_cx_total counter\n");
    body.push_str("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"item-v1\"} 3\n");
    body.push_str("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"local_service\"} 7\n");
    body.push_str("# TYPE envoy_cluster_health_check_healthy gauge\n");
    body.push_str("envoy_cluster_health_check_healthy{envoy_cluster_name=\"item-v1\"} 1\n");
    body.push_str("# TYPE envoy_server_live gauge\n");
    body.push_str("envoy_server_live 1\n");
    body.push_str("# TYPE envoy_cluster_upstream_rq_time histogram\n");
    for cluster in ["item-v1", "local_service"] {
        for (le, count) in [("1", 0), ("25", n), ("+Inf", n)] {
            body.push_str(&format!(
                "envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name=\"{cluster}\",le=\"{le}\"}} {count}\n"
            ));
        }
        body.push_str(&format!(
            "envoy_cluster_upstream_rq_time_sum{{envoy_cluster_name=\"{cluster}\"}} {}\n",
            10 * n
        ));
        body.push_str(&format!(
            "envoy_cluster_upstream_rq_time_count{{envoy_cluster_name=\"{cluster}\"}} {n}\n"
        ));
    }
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
}

/// Serves `endpoints` on a free loopback port until the sender is dropped.
async fn serve(endpoints: Arc<Endpoints>) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/metrics", get(app_metrics))
        .route(ENVOY_METRICS_PATH, get(envoy_stats))
        .with_state(endpoints);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    (addr, stop)
}

/// The row of `samples` whose labels include all of `labels`.
fn row<'a>(samples: &'a [Sample], labels: &[(&str, &str)]) -> Option<&'a Sample> {
    samples.iter().find(|s| {
        labels
            .iter()
            .all(|(k, v)| s.metric.get(*k).map(String::as_str) == Some(*v))
    })
}

/// Run `promql` until `accept` likes the answer (bounded).
async fn query_until(
    prometheus: &Prometheus,
    promql: &str,
    accept: impl Fn(&[Sample]) -> bool,
) -> Vec<Sample> {
    let began = Instant::now();
    loop {
        let samples = prometheus.query(promql).await.unwrap();
        if accept(&samples) || began.elapsed() > Duration::from_secs(15) {
            return samples;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_envoy_and_app_metrics_with_exemplars() {
    let mut registry = Registry::default();
    let durations: Durations = Family::new_with_constructor(new_histogram);
    registry.register(
        "demo_request_duration_seconds",
        "Request durations",
        durations.clone(),
    );
    let route = RouteLabels {
        route: "/orders".to_owned(),
    };
    durations.get_or_create(&route).observe(
        0.043,
        Some(TraceLabels {
            trace_id: TRACE_ID.to_owned(),
        }),
        Some(SystemTime::now()),
    );
    durations.get_or_create(&route).observe(0.004, None, None);
    let endpoints = Arc::new(Endpoints {
        registry,
        envoy_scrapes: AtomicU64::new(0),
        accepts: Mutex::new(Vec::new()),
    });
    let (addr, _stop) = serve(endpoints.clone()).await;

    let config = PrometheusConfig::new(Duration::from_secs(1))
        .target(ScrapeTarget::new("app", addr.to_string()).label("app", "frontend"))
        .target(
            ScrapeTarget::new("envoy", addr.to_string())
                .metrics_path(ENVOY_METRICS_PATH)
                .label("app", "frontend"),
        )
        .metric_relabel("envoy", envoy_seed_relabel());
    let test_began = Instant::now();
    let prometheus = Prometheus::start(&config).await.unwrap();
    let started = test_began.elapsed();
    assert!(
        prometheus.version().starts_with("2."),
        "{}",
        prometheus.version()
    );
    let targets = prometheus
        .wait_for_targets_up(Duration::from_secs(15))
        .await
        .unwrap();
    let up = test_began.elapsed();
    assert_eq!(targets.len(), 2, "{targets:?}");
    for t in &targets {
        assert_eq!(t.health, Health::Up, "{t:?}");
        assert_eq!(t.labels.get("app").map(String::as_str), Some("frontend"));
        assert!(t.last_error.is_none(), "{t:?}");
    }
    eprintln!(
        "prometheus {} at {}: ready after {started:?}, targets up after {up:?}",
        prometheus.version(),
        prometheus.url()
    );

    // What Prometheus 2.42 asks for: OpenMetrics first (exemplars need it).
    let accept = endpoints.accept_of("/metrics").unwrap();
    eprintln!("Accept: {accept}");
    assert!(
        accept.starts_with("application/openmetrics-text"),
        "{accept}"
    );

    // The seed's Envoy queries, as written.
    let cx = prometheus.query(SEED_QUERIES[3]).await.unwrap();
    let item = row(&cx, &[("app", "frontend"), ("cluster", "item-v1")])
        .unwrap_or_else(|| panic!("{cx:?}"));
    assert_eq!(item.value, 3.0);
    let local = row(&cx, &[("cluster", "local_service")]).unwrap();
    assert_eq!(local.value, 7.0);
    let healthy = prometheus.query(SEED_QUERIES[2]).await.unwrap();
    assert_eq!(
        row(&healthy, &[("app", "frontend"), ("cluster", "item-v1")]).map(|s| s.value),
        Some(1.0),
        "{healthy:?}"
    );
    let buckets = prometheus
        .query("envoy_upstream_rq_time_bucket")
        .await
        .unwrap();
    assert!(
        row(
            &buckets,
            &[
                ("cluster", "item-v1"),
                ("le", "25"),
                ("envoy_cluster_name", "item-v1")
            ]
        )
        .is_some(),
        "{buckets:?}"
    );
    // Renamed, not copied: the native name is gone, unlabelled series keep theirs.
    assert!(
        prometheus
            .query("envoy_cluster_upstream_cx_total")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        prometheus.query("envoy_server_live").await.unwrap().len(),
        1
    );
    // The rate queries need two scrapes of the growing counters.
    let rates = query_until(&prometheus, SEED_QUERIES[1], |s| {
        s.iter().any(|s| s.value > 0.0)
    })
    .await;
    let rate = row(&rates, &[("app", "frontend"), ("cluster", "item-v1")])
        .unwrap_or_else(|| panic!("{rates:?}"));
    assert!(rate.value > 0.0, "{rates:?}");
    assert!(
        row(&rates, &[("cluster", "local_service")]).is_none(),
        "{rates:?}"
    );
    let p95 = query_until(&prometheus, SEED_QUERIES[0], |s| {
        s.iter().any(|s| s.value.is_finite())
    })
    .await;
    let p95 = row(&p95, &[("app", "frontend"), ("cluster", "item-v1")])
        .unwrap_or_else(|| panic!("{p95:?}"));
    assert!(p95.value > 1.0 && p95.value <= 25.0, "{p95:?}");

    // The app's histogram.
    let count = prometheus
        .query(r#"demo_request_duration_seconds_count{job="app",route="/orders"}"#)
        .await
        .unwrap();
    assert_eq!(count.len(), 1, "{count:?}");
    assert_eq!(count[0].value, 2.0);
    assert_eq!(
        count[0].metric.get("app").map(String::as_str),
        Some("frontend")
    );
    let median = prometheus
        .query("histogram_quantile(0.5, sum by (le) (demo_request_duration_seconds_bucket))")
        .await
        .unwrap();
    assert!(
        median[0].value > 0.0 && median[0].value <= 0.005,
        "{median:?}"
    );

    // Its exemplar, read back.
    let now = SystemTime::now();
    let began = Instant::now();
    let series = loop {
        let series = prometheus
            .query_exemplars(
                "demo_request_duration_seconds_bucket",
                now - Duration::from_secs(600),
                now + Duration::from_secs(60),
            )
            .await
            .unwrap();
        if !series.is_empty() || began.elapsed() > Duration::from_secs(10) {
            break series;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let exemplar = series
        .iter()
        .flat_map(|s| s.exemplars.iter().map(move |e| (s, e)))
        .find(|(_, e)| e.labels.get("trace_id").map(String::as_str) == Some(TRACE_ID));
    let (series, exemplar) = exemplar.unwrap_or_else(|| panic!("{series:?}"));
    assert_eq!(exemplar.value, 0.043);
    assert_eq!(
        series.series_labels.get("route").map(String::as_str),
        Some("/orders")
    );
    assert_eq!(
        series.series_labels.get("le").map(String::as_str),
        Some("0.08")
    );
    assert!(exemplar.timestamp > 1.6e9, "{exemplar:?}");

    // Scalars, and Prometheus' own errors.
    let two = prometheus.query("1 + 1").await.unwrap();
    assert_eq!(two.len(), 1);
    assert_eq!(two[0].value, 2.0);
    assert!(two[0].metric.is_empty());
    match prometheus.query("sum(").await {
        Err(PrometheusError::Api {
            error_type,
            error,
            status,
            ..
        }) => {
            assert_eq!(error_type, "bad_data", "{error}");
            assert_eq!(status, 400);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(
            prometheus.query("up[1m]").await,
            Err(PrometheusError::Decode { .. })
        ),
        "a matrix is not an instant vector"
    );
    let info = prometheus.build_info().await.unwrap();
    assert!(info.version.starts_with(prometheus.version()), "{info:?}");

    let run_dir = prometheus.log_path().parent().unwrap().to_path_buf();
    assert!(run_dir.is_dir());
    prometheus.stop().await;
    assert!(!run_dir.exists(), "stop removes the run directory");
    eprintln!("whole test: {:?}", test_began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_targets_are_listed() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = PrometheusConfig::new(Duration::from_millis(500))
        .target(ScrapeTarget::new("gone", closed.to_string()).label("app", "nobody"));
    let prometheus = Prometheus::start(&config).await.unwrap();
    let err = prometheus
        .wait_for_targets_up(Duration::from_secs(9))
        .await
        .unwrap_err();
    let PrometheusError::TargetsNotUp { targets, .. } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].health, Health::Down, "{targets:?}");
    let last_error = targets[0].last_error.as_deref().unwrap_or("");
    assert!(last_error.contains("connection refused"), "{last_error}");
    let text = err.to_string();
    assert!(
        text.contains("job gone") && text.contains(&closed.to_string()),
        "{text}"
    );
    // Dropping kills it and removes its run directory.
    let run_dir = prometheus.log_path().parent().unwrap().to_path_buf();
    drop(prometheus);
    assert!(!run_dir.exists());
}

fn seed_config() -> PrometheusConfig {
    PrometheusConfig::new(Duration::from_secs(15))
        .target(
            ScrapeTarget::new("envoy", "127.0.0.1:9901")
                .metrics_path(ENVOY_METRICS_PATH)
                .label("app", "frontend"),
        )
        .target(
            ScrapeTarget::new("envoy", "127.0.0.1:9902")
                .metrics_path(ENVOY_METRICS_PATH)
                .label("app", "order"),
        )
        .target(ScrapeTarget::new("apps", "127.0.0.1:3000").label("app", "frontend"))
        .target(
            ScrapeTarget::new("apps", "127.0.0.1:3001")
                .metrics_path("/admin/metrics")
                .label("app", "user"),
        )
        .metric_relabel("envoy", envoy_seed_relabel())
        .metric_relabel("apps", [MetricRelabel::drop(&["__name__"], "go_.*")])
        .job_scrape_interval("apps", Duration::from_millis(2500))
}

#[test]
fn yaml_groups_targets_by_job() {
    let yaml = seed_config().to_yaml().unwrap();
    let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        parsed["global"]["scrape_interval"].as_str(),
        Some("15s"),
        "{yaml}"
    );
    assert_eq!(
        parsed["global"]["scrape_timeout"].as_str(),
        Some("10s"),
        "{yaml}"
    );
    assert_eq!(
        parsed["global"]["evaluation_interval"].as_str(),
        Some("15s"),
        "{yaml}"
    );
    let jobs = parsed["scrape_configs"].as_sequence().unwrap();
    assert_eq!(jobs.len(), 2, "{yaml}");

    let envoy = &jobs[0];
    assert_eq!(envoy["job_name"].as_str(), Some("envoy"));
    assert_eq!(envoy["metrics_path"].as_str(), Some(ENVOY_METRICS_PATH));
    assert!(
        envoy.get("scrape_interval").is_none(),
        "inherits the global one: {yaml}"
    );
    let statics = envoy["static_configs"].as_sequence().unwrap();
    assert_eq!(statics.len(), 2);
    assert_eq!(statics[1]["targets"][0].as_str(), Some("127.0.0.1:9902"));
    assert_eq!(statics[1]["labels"]["app"].as_str(), Some("order"));
    let relabel: Vec<MetricRelabel> =
        serde_yaml_ng::from_value(envoy["metric_relabel_configs"].clone()).unwrap();
    assert_eq!(relabel, envoy_seed_relabel());
    let rename = &envoy["metric_relabel_configs"][0];
    assert_eq!(rename["source_labels"][0].as_str(), Some("__name__"));
    assert_eq!(
        rename["source_labels"][1].as_str(),
        Some("envoy_cluster_name")
    );
    assert_eq!(rename["regex"].as_str(), Some("envoy_cluster_(.+);.+"));
    assert_eq!(rename["target_label"].as_str(), Some("__name__"));
    assert_eq!(rename["replacement"].as_str(), Some("envoy_${1}"));
    assert_eq!(rename["action"].as_str(), Some("replace"));
    let copy = &envoy["metric_relabel_configs"][1];
    assert_eq!(
        copy["source_labels"][0].as_str(),
        Some("envoy_cluster_name")
    );
    assert_eq!(copy["target_label"].as_str(), Some("cluster"));

    let apps = &jobs[1];
    assert_eq!(apps["job_name"].as_str(), Some("apps"));
    assert_eq!(apps["scrape_interval"].as_str(), Some("2500ms"));
    assert_eq!(apps["scrape_timeout"].as_str(), Some("2500ms"));
    assert_eq!(apps["metrics_path"].as_str(), Some("/metrics"));
    let statics = apps["static_configs"].as_sequence().unwrap();
    assert!(statics[0]["labels"].get("__metrics_path__").is_none());
    assert_eq!(
        statics[1]["labels"]["__metrics_path__"].as_str(),
        Some("/admin/metrics"),
        "a target's own path: {yaml}"
    );
    assert_eq!(
        apps["metric_relabel_configs"][0]["action"].as_str(),
        Some("drop")
    );
}

#[test]
fn promtool_accepts_the_generated_config() {
    let promtool = promtool_binary().unwrap();
    let dir = std::env::temp_dir().join(format!("prometheus-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("prometheus.yml");
    std::fs::write(&file, seed_config().to_yaml().unwrap()).unwrap();
    let out = demo::bounded::run(
        std::process::Command::new(promtool)
            .args(["check", "config"])
            .arg(&file),
        std::time::Duration::from_secs(120),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[rustfmt::skip]
fn invalid_configs() -> Vec<(PrometheusConfig, &'static str)> {
    let one = |t: ScrapeTarget| PrometheusConfig::new(Duration::from_secs(1)).target(t);
    vec![
        (one(ScrapeTarget::new("", "127.0.0.1:1")), "empty job"),
        (one(ScrapeTarget::new("j", "")), "empty address"),
        (one(ScrapeTarget::new("j", "http://127.0.0.1:1/")), "a URL, not host:port"),
        (one(ScrapeTarget::new("j", "127.0.0.1:1").metrics_path("metrics")), "relative path"),
        (one(ScrapeTarget::new("j", "127.0.0.1:1").label("app-name", "x")), "bad label name"),
        (PrometheusConfig::new(Duration::ZERO), "zero interval"),
        (one(ScrapeTarget::new("j", "127.0.0.1:1")).job_scrape_interval("j", Duration::ZERO), "zero job interval"),
    ]
}

#[test]
fn invalid_configs_are_rejected() {
    for (config, why) in invalid_configs() {
        match config.to_yaml() {
            Err(PrometheusError::InvalidConfig { .. }) => {}
            other => panic!("{why}: {other:?}"),
        }
    }
}

#[test]
fn prometheus_bin_must_name_an_executable_file() {
    let dir = std::env::temp_dir().join(format!("prometheus-bin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("not-executable");
    std::fs::write(&plain, "#!/bin/sh\n").unwrap();
    for path in [dir.clone(), plain, dir.join("missing")] {
        match prometheus_binary_at(&path) {
            Err(PrometheusError::BinInvalid { path: reported }) => {
                assert_eq!(reported, path);
                let text = PrometheusError::BinInvalid { path: reported }.to_string();
                assert!(text.contains("PROMETHEUS_BIN"), "{text}");
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        prometheus_binary_at("/bin/sh").unwrap(),
        std::path::PathBuf::from("/bin/sh")
    );
}
