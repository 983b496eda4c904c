//! A real Prometheus for tests and the demo: provisioned from Debian's
//! `prometheus` package, configured from typed scrape targets, run on a free
//! loopback port, and queried through its HTTP API.
//!
//! # Provisioning
//!
//! [`prometheus_binary`] returns `PROMETHEUS_BIN` when it is set (it must name
//! an executable file). Otherwise it fetches Debian's `prometheus` package
//! (Prometheus 2.42 on Debian 12) once into `<target>/prometheus-deb/`, where
//! `<target>` is the workspace `target/` directory ([`target_dir`]):
//! `apt-get download prometheus` in a scratch directory (after an
//! `apt-get update` if the first attempt fails), then `dpkg-deb -x` into
//! `<target>/prometheus-deb/root`.
//! Nothing is installed system-wide; the binary is
//! `root/usr/bin/prometheus`, with `promtool` beside it
//! ([`promtool_binary`]). As for Envoy, the work happens under an exclusive
//! lock on `<target>/prometheus-deb.lock`, so parallel tests fetch once, and
//! a marker file (`<target>/prometheus-deb.ready`, holding the output of
//! `prometheus --version` and the binary's path) is written last; later calls
//! only read it. That `apt-get` fetch is the only network access.
//!
//! # Envoy's names and the seed's queries
//!
//! The seed queries Envoy statistics as `envoy_upstream_rq_time_bucket`,
//! `envoy_health_check_healthy`, `envoy_upstream_cx_total`, … with a
//! `cluster` label ([`SEED_QUERIES`]): those names came from a
//! statsd_exporter mapping. Envoy 1.40's own `/stats/prometheus` names them
//! `envoy_cluster_upstream_rq_time_bucket`, `envoy_cluster_health_check_healthy`,
//! `envoy_cluster_upstream_cx_total`, labelled `envoy_cluster_name`. We
//! relabel at scrape time ([`envoy_seed_relabel`], `metric_relabel_configs`
//! on the Envoy job) so the seed's queries run as written: every series
//! carrying `envoy_cluster_name` loses the `envoy_cluster_` prefix of its
//! name (keeping `envoy_`), and gains a `cluster` label with the same value.
//! The `app` label the seed groups by is a per-target label of the scrape
//! config ([`ScrapeTarget::label`]).
//!
//! # Timing
//!
//! Prometheus answers `/-/ready` within a fraction of a second, but 2.x
//! hands static targets to its scrape manager on a fixed 5 s tick (no flag
//! changes it), so the first scrape happens about 5 s plus one interval
//! after the start: give [`Prometheus::wait_for_targets_up`] 10 s or more.
//!
//! # Exemplars
//!
//! Prometheus is started with `--enable-feature=exemplar-storage`. It reads
//! exemplars only from OpenMetrics scrapes: its `Accept` header prefers
//! `application/openmetrics-text`, and a target answering with the classic
//! text format (`text/plain; version=0.0.4`, as Envoy does) is parsed without
//! exemplars. [`Prometheus::query_exemplars`] reads them back.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), demo::prometheus::PrometheusError> {
//! use demo::prometheus::{
//!     ENVOY_METRICS_PATH, Prometheus, PrometheusConfig, ScrapeTarget, envoy_seed_relabel,
//! };
//! use std::time::Duration;
//!
//! let config = PrometheusConfig::new(Duration::from_secs(1))
//!     .target(ScrapeTarget::new("envoy", "127.0.0.1:9901")
//!         .metrics_path(ENVOY_METRICS_PATH)
//!         .label("app", "frontend"))
//!     .metric_relabel("envoy", envoy_seed_relabel());
//! let prometheus = Prometheus::start(&config).await?;
//! prometheus.wait_for_targets_up(Duration::from_secs(10)).await?;
//! for sample in prometheus.query("sum(envoy_upstream_cx_total) by (app, cluster)").await? {
//!     println!("{:?} {}", sample.metric, sample.value);
//! }
//! prometheus.stop().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, ExitStatus, Stdio};

use crate::bounded::{output_text, provision as run, tail};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

use crate::envoy::target_dir;

/// Where Envoy's admin API serves Prometheus text (Envoy 1.40).
pub const ENVOY_METRICS_PATH: &str = "/stats/prometheus";

/// The seed's Envoy queries (FACTS §15), as written. With
/// [`envoy_seed_relabel`] on the Envoy job and an `app` label per target
/// they run against Envoy 1.40 unchanged.
pub const SEED_QUERIES: [&str; 4] = [
    r#"histogram_quantile(0.95, sum(rate(envoy_upstream_rq_time_bucket{cluster!="local_service"}[5m])) by (le,app, cluster))"#,
    r#"sum(rate(envoy_upstream_rq_time_count{cluster!="local_service"}[5m])) by (app, cluster)"#,
    "sum(envoy_health_check_healthy) by (app,cluster)",
    "sum(envoy_upstream_cx_total) by (app,cluster)",
];

/// How long Prometheus may take to answer `/-/ready` after it is spawned.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long one API request may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(10);

/// How many free ports [`Prometheus::start`] tries when Prometheus cannot
/// bind the one it was given (another process took it in between).
const BIND_ATTEMPTS: usize = 5;

/// The longest scrape timeout Prometheus is configured with (its default).
const MAX_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Errors

/// Why Prometheus could not be provisioned, configured, started or asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum PrometheusError {
    /// `PROMETHEUS_BIN` is set but does not name an executable file.
    BinInvalid {
        /// The value of `PROMETHEUS_BIN`.
        path: PathBuf,
    },
    /// No workspace `target/` directory could be found.
    NoTargetDir,
    /// `apt-get` failed (or could not be run) even after `apt-get update`.
    AptFailed {
        /// The command, e.g. `apt-get download prometheus`.
        command: String,
        /// What it printed, or why it could not be run.
        output: String,
    },
    /// `apt-get download` succeeded but left no `prometheus_*.deb`.
    DebNotFound {
        /// The directory it ran in.
        dir: PathBuf,
    },
    /// `dpkg-deb -x` failed (or could not be run).
    DpkgFailed {
        /// The package file.
        deb: PathBuf,
        /// What it printed, or why it could not be run.
        output: String,
    },
    /// The package was unpacked but the expected executable is not there.
    BinaryNotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// `prometheus --version` failed or printed no version.
    VersionFailed {
        /// The executable.
        path: PathBuf,
        /// What it printed, or why it could not be run.
        output: String,
    },
    /// The [`PrometheusConfig`] cannot be turned into a Prometheus config.
    InvalidConfig {
        /// What is wrong.
        reason: String,
    },
    /// Prometheus exited before it was ready.
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Its log file (kept for inspection).
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// Prometheus did not answer `/-/ready` with 200 in time.
    NotReady {
        /// Its base URL.
        url: String,
        /// How long we waited.
        waited: Duration,
        /// The last answer or error from `/-/ready`.
        last: String,
        /// Its log file (kept for inspection).
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// An HTTP request to Prometheus failed (connection, body).
    Http {
        /// The URL asked.
        url: String,
        /// The transport error.
        message: String,
    },
    /// An HTTP request to Prometheus did not complete within [`API_TIMEOUT`].
    Timeout {
        /// The URL asked.
        url: String,
        /// How long we waited.
        after: Duration,
    },
    /// Prometheus answered with a non-success status and no API error.
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// Prometheus answered `"status": "error"`.
    Api {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// Prometheus' `errorType`, e.g. `bad_data`.
        error_type: String,
        /// Prometheus' `error`.
        error: String,
    },
    /// Prometheus' answer is not what its API documents.
    Decode {
        /// The URL asked.
        url: String,
        /// What did not match.
        message: String,
    },
    /// Not every active target was up (and scraped) in time.
    TargetsNotUp {
        /// How long we waited.
        waited: Duration,
        /// The active targets as last seen (all of them).
        targets: Vec<TargetHealth>,
    },
    /// A file-system operation failed.
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: io::Error,
    },
}

impl fmt::Display for PrometheusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BinInvalid { path } => write!(
                f,
                "PROMETHEUS_BIN is set to {} but that is not an executable file",
                path.display()
            ),
            Self::NoTargetDir => {
                f.write_str("cannot find the workspace target/ directory (set CARGO_TARGET_DIR)")
            }
            Self::AptFailed { command, output } => write!(
                f,
                "`{command}` failed: Prometheus is fetched from Debian's `prometheus` package \
                 (needs apt-get and a reachable Debian mirror, as root); or set PROMETHEUS_BIN:\n{output}"
            ),
            Self::DebNotFound { dir } => write!(
                f,
                "`apt-get download prometheus` left no prometheus_*.deb in {}",
                dir.display()
            ),
            Self::DpkgFailed { deb, output } => {
                write!(f, "`dpkg-deb -x {}` failed:\n{output}", deb.display())
            }
            Self::BinaryNotFound { path } => write!(
                f,
                "the prometheus package was unpacked but {} is not there",
                path.display()
            ),
            Self::VersionFailed { path, output } => write!(
                f,
                "`{} --version` did not print a version: {output}",
                path.display()
            ),
            Self::InvalidConfig { reason } => write!(f, "invalid Prometheus config: {reason}"),
            Self::Exited {
                status,
                log,
                log_tail,
            } => write!(
                f,
                "prometheus exited ({status}) before it was ready; log {}:\n{log_tail}",
                log.display()
            ),
            Self::NotReady {
                url,
                waited,
                last,
                log,
                log_tail,
            } => write!(
                f,
                "prometheus at {url} not ready after {waited:?} (last: {last}); log {}:\n{log_tail}",
                log.display()
            ),
            Self::Http { url, message } => write!(f, "GET {url}: {message}"),
            Self::Timeout { url, after } => write!(f, "GET {url}: no answer within {after:?}"),
            Self::Status { url, status, body } => write!(f, "GET {url}: HTTP {status}: {body}"),
            Self::Api {
                url,
                status,
                error_type,
                error,
            } => write!(
                f,
                "GET {url}: Prometheus error {error_type} (HTTP {status}): {error}"
            ),
            Self::Decode { url, message } => {
                write!(f, "GET {url}: unexpected answer: {message}")
            }
            Self::TargetsNotUp { waited, targets } => {
                if targets.is_empty() {
                    return write!(f, "no active scrape targets after {waited:?}");
                }
                write!(f, "scrape targets not up after {waited:?}:")?;
                for t in targets.iter().filter(|t| !t.is_up()) {
                    write!(f, "\n  job {} {}: {}", t.job, t.scrape_url, t.health)?;
                    match (&t.last_error, &t.last_scrape) {
                        (Some(error), _) => write!(f, " ({error})")?,
                        (None, None) => f.write_str(" (not scraped yet)")?,
                        (None, Some(_)) => {}
                    }
                }
                Ok(())
            }
            Self::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl Error for PrometheusError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> PrometheusError {
    move |source| PrometheusError::Io {
        context: context.into(),
        source,
    }
}

// ---------------------------------------------------------------------------
// Provisioning

/// The Prometheus binary: `PROMETHEUS_BIN` if set (checked by
/// [`prometheus_binary_at`]), else Debian's `prometheus` package fetched once
/// into `<target>/prometheus-deb/` (see the [module docs](self)).
///
/// Blocking: the first call downloads and unpacks the package; afterwards it
/// only reads a marker file.
///
/// # Errors
///
/// [`PrometheusError`] naming what failed: `PROMETHEUS_BIN`, `apt-get`,
/// `dpkg-deb`, or `prometheus --version`.
pub fn prometheus_binary() -> Result<PathBuf, PrometheusError> {
    if let Some(path) = std::env::var_os("PROMETHEUS_BIN").filter(|p| !p.is_empty()) {
        return prometheus_binary_at(path);
    }
    provision_deb()
}

/// `path` if it names an executable file: how `PROMETHEUS_BIN` is checked.
///
/// # Errors
///
/// [`PrometheusError::BinInvalid`] when it is missing, not a regular file,
/// or (on Unix) not executable.
pub fn prometheus_binary_at(path: impl Into<PathBuf>) -> Result<PathBuf, PrometheusError> {
    let path = path.into();
    if is_executable_file(&path) {
        Ok(path)
    } else {
        Err(PrometheusError::BinInvalid { path })
    }
}

/// `promtool`, beside the binary [`prometheus_binary`] returns.
///
/// # Errors
///
/// As [`prometheus_binary`], and [`PrometheusError::BinaryNotFound`] when
/// there is no `promtool` beside it.
pub fn promtool_binary() -> Result<PathBuf, PrometheusError> {
    let path = prometheus_binary()?.with_file_name("promtool");
    if is_executable_file(&path) {
        Ok(path)
    } else {
        Err(PrometheusError::BinaryNotFound { path })
    }
}

fn is_executable_file(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// The first line of the marker: what kind of install it records.
const MARKER_KIND: &str = "debian prometheus package";

fn provision_deb() -> Result<PathBuf, PrometheusError> {
    let target = target_dir().ok_or(PrometheusError::NoTargetDir)?;
    let marker = target.join("prometheus-deb.ready");
    if let Some(bin) = read_marker(&marker) {
        return Ok(bin);
    }
    fs::create_dir_all(&target).map_err(io_err(format!("creating {}", target.display())))?;
    let lock_path = target.join("prometheus-deb.lock");
    let lock =
        File::create(&lock_path).map_err(io_err(format!("creating {}", lock_path.display())))?;
    lock.lock()
        .map_err(io_err(format!("locking {}", lock_path.display())))?;
    // Another process may have finished while we waited for the lock.
    if let Some(bin) = read_marker(&marker) {
        return Ok(bin);
    }
    let result = install_deb(&target.join("prometheus-deb"), &marker);
    // Dropping the file releases the lock; unlock explicitly to be clear.
    let _ = lock.unlock();
    result
}

fn install_deb(dir: &Path, marker: &Path) -> Result<PathBuf, PrometheusError> {
    let _ = fs::remove_file(marker);
    // Whatever an interrupted run left is redone.
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(io_err(format!("removing {}", dir.display())))?;
    }
    let download = dir.join("download");
    fs::create_dir_all(&download).map_err(io_err(format!("creating {}", download.display())))?;
    if apt_get(&download, &["download", "prometheus"]).is_err() {
        // The package lists may be missing or stale (a fresh container).
        apt_get(&download, &["update"])?;
        apt_get(&download, &["download", "prometheus"])?;
    }
    let deb = fs::read_dir(&download)
        .map_err(io_err(format!("reading {}", download.display())))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("prometheus_") && n.ends_with(".deb"))
        })
        .ok_or_else(|| PrometheusError::DebNotFound {
            dir: download.clone(),
        })?;
    let root = dir.join("root");
    let out = run(StdCommand::new("dpkg-deb").arg("-x").arg(&deb).arg(&root)).map_err(|e| {
        PrometheusError::DpkgFailed {
            deb: deb.clone(),
            output: e.to_string(),
        }
    })?;
    if !out.status.success() {
        return Err(PrometheusError::DpkgFailed {
            deb,
            output: output_text(&out),
        });
    }
    let bin = root.join("usr").join("bin").join("prometheus");
    if !is_executable_file(&bin) {
        return Err(PrometheusError::BinaryNotFound { path: bin });
    }
    let version = binary_version_line(&bin)?;
    // The package is no longer needed once unpacked.
    let _ = fs::remove_dir_all(&download);
    let mut text = format!("{MARKER_KIND}\n{version}\n").into_bytes();
    text.extend_from_slice(bin.as_os_str().as_encoded_bytes());
    fs::write(marker, text).map_err(io_err(format!("writing {}", marker.display())))?;
    Ok(bin)
}

fn apt_get(dir: &Path, args: &[&str]) -> Result<(), PrometheusError> {
    let command = format!("apt-get {}", args.join(" "));
    let out = run(StdCommand::new("apt-get")
        .args(["-q", "-o", "Dpkg::Use-Pty=0"])
        .args(args)
        .current_dir(dir))
    .map_err(|e| PrometheusError::AptFailed {
        command: command.clone(),
        output: e.to_string(),
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PrometheusError::AptFailed {
            command,
            output: output_text(&out),
        })
    }
}

/// The first line of `prometheus --version`, e.g. `prometheus, version
/// 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+b6)`.
fn binary_version_line(bin: &Path) -> Result<String, PrometheusError> {
    let out =
        run(StdCommand::new(bin).arg("--version")).map_err(|e| PrometheusError::VersionFailed {
            path: bin.to_path_buf(),
            output: e.to_string(),
        })?;
    let text = output_text(&out);
    match text.lines().next() {
        Some(line) if out.status.success() && parse_version(line).is_some() => {
            Ok(line.trim().to_owned())
        }
        _ => Err(PrometheusError::VersionFailed {
            path: bin.to_path_buf(),
            output: text,
        }),
    }
}

/// `2.42.0` from `prometheus, version 2.42.0+ds (branch: …)`: the word after
/// `version`, without build metadata.
fn parse_version(line: &str) -> Option<String> {
    let rest = line.split_once("version ")?.1;
    let word = rest.split_whitespace().next()?;
    let core = word.split('+').next()?;
    core.starts_with(|c: char| c.is_ascii_digit())
        .then(|| core.to_owned())
}

/// The executable recorded in `marker`, if it is complete and still there.
fn read_marker(marker: &Path) -> Option<PathBuf> {
    let text = fs::read_to_string(marker).ok()?;
    let mut lines = text.lines();
    if lines.next()? != MARKER_KIND {
        return None;
    }
    parse_version(lines.next()?)?;
    let bin = PathBuf::from(lines.next()?.trim());
    is_executable_file(&bin).then_some(bin)
}

// ---------------------------------------------------------------------------
// Configuration

/// One endpoint Prometheus scrapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// The job (one `scrape_config` per job; Prometheus' `job` label).
    pub job: String,
    /// `host:port`.
    pub address: String,
    /// The path scraped, e.g. `/metrics` or [`ENVOY_METRICS_PATH`].
    pub metrics_path: String,
    /// Labels added to every series of this target (e.g. `app`).
    pub labels: BTreeMap<String, String>,
}

impl ScrapeTarget {
    /// `address` (`host:port`) in `job`, scraped at `/metrics`, no labels.
    #[must_use]
    pub fn new(job: impl Into<String>, address: impl Into<String>) -> Self {
        ScrapeTarget {
            job: job.into(),
            address: address.into(),
            metrics_path: "/metrics".to_owned(),
            labels: BTreeMap::new(),
        }
    }

    /// Scrape `path` instead of `/metrics`.
    #[must_use]
    pub fn metrics_path(mut self, path: impl Into<String>) -> Self {
        self.metrics_path = path.into();
        self
    }

    /// Add the label `name="value"` to every series of this target.
    #[must_use]
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }
}

/// What a relabel rule does (Prometheus' `action`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RelabelAction {
    /// Set `target_label` to `replacement` (with `regex` groups expanded)
    /// when `regex` matches the joined `source_labels`.
    #[default]
    Replace,
    /// Keep only series whose joined `source_labels` match `regex`.
    Keep,
    /// Drop series whose joined `source_labels` match `regex`.
    Drop,
    /// Copy labels whose names match `regex` to the names `replacement` gives.
    LabelMap,
    /// Remove labels whose names match `regex`.
    LabelDrop,
    /// Remove labels whose names do not match `regex`.
    LabelKeep,
}

/// One relabel rule, as Prometheus' `relabel_config` (used here in a job's
/// `metric_relabel_configs`, applied to every scraped series). Unset fields
/// take Prometheus' defaults (`separator: ;`, `regex: (.*)`,
/// `replacement: $1`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricRelabel {
    /// The labels whose values are joined with `separator` and matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    /// Joins the `source_labels` values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    /// The (fully anchored, RE2) regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// The label written by [`RelabelAction::Replace`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    /// The value written, with `${1}`… for `regex` groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    /// What the rule does.
    #[serde(default)]
    pub action: RelabelAction,
}

impl MetricRelabel {
    /// [`RelabelAction::Replace`]: when `regex` matches the `source_labels`
    /// values joined by `;`, set `target_label` to `replacement`.
    #[must_use]
    pub fn replace(
        source_labels: &[&str],
        regex: &str,
        target_label: &str,
        replacement: &str,
    ) -> Self {
        MetricRelabel {
            source_labels: source_labels.iter().map(|&l| l.to_owned()).collect(),
            regex: Some(regex.to_owned()),
            target_label: Some(target_label.to_owned()),
            replacement: Some(replacement.to_owned()),
            action: RelabelAction::Replace,
            ..MetricRelabel::default()
        }
    }

    /// [`RelabelAction::Keep`]: keep only series whose joined
    /// `source_labels` match `regex`.
    #[must_use]
    pub fn keep(source_labels: &[&str], regex: &str) -> Self {
        MetricRelabel {
            source_labels: source_labels.iter().map(|&l| l.to_owned()).collect(),
            regex: Some(regex.to_owned()),
            action: RelabelAction::Keep,
            ..MetricRelabel::default()
        }
    }

    /// [`RelabelAction::Drop`]: drop series whose joined `source_labels`
    /// match `regex`.
    #[must_use]
    pub fn drop(source_labels: &[&str], regex: &str) -> Self {
        MetricRelabel {
            source_labels: source_labels.iter().map(|&l| l.to_owned()).collect(),
            regex: Some(regex.to_owned()),
            action: RelabelAction::Drop,
            ..MetricRelabel::default()
        }
    }
}

/// The `metric_relabel_configs` that make Envoy 1.40's native names answer
/// the seed's queries ([`SEED_QUERIES`]) as written; see the
/// [module docs](self). For series carrying `envoy_cluster_name`:
///
/// 1. `envoy_cluster_<rest>` is renamed `envoy_<rest>`
///    (`envoy_cluster_upstream_rq_time_bucket` → `envoy_upstream_rq_time_bucket`);
/// 2. `envoy_cluster_name` is copied into `cluster`.
#[must_use]
pub fn envoy_seed_relabel() -> Vec<MetricRelabel> {
    vec![
        MetricRelabel::replace(
            &["__name__", "envoy_cluster_name"],
            "envoy_cluster_(.+);.+",
            "__name__",
            "envoy_${1}",
        ),
        MetricRelabel::replace(&["envoy_cluster_name"], "(.+)", "cluster", "${1}"),
    ]
}

/// Per-job settings beyond the targets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobOptions {
    /// Scrape this job at another interval than the global one.
    pub scrape_interval: Option<Duration>,
    /// The job's `metric_relabel_configs`, in order.
    pub metric_relabel: Vec<MetricRelabel>,
}

/// What Prometheus scrapes, and how often. Turned into Prometheus' YAML by
/// [`to_yaml`](Self::to_yaml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// The global `scrape_interval` (each job's unless it sets its own).
    pub scrape_interval: Duration,
    /// The global `evaluation_interval` (rules; none are configured here).
    pub evaluation_interval: Duration,
    /// Every target; grouped by [`ScrapeTarget::job`], one `scrape_config`
    /// per job in order of first appearance.
    pub targets: Vec<ScrapeTarget>,
    /// Settings per job name (jobs without targets are ignored).
    pub jobs: BTreeMap<String, JobOptions>,
}

impl PrometheusConfig {
    /// No targets; scrape and evaluation every `scrape_interval`.
    #[must_use]
    pub fn new(scrape_interval: Duration) -> Self {
        PrometheusConfig {
            scrape_interval,
            evaluation_interval: scrape_interval,
            targets: Vec::new(),
            jobs: BTreeMap::new(),
        }
    }

    /// Add a target.
    #[must_use]
    pub fn target(mut self, target: ScrapeTarget) -> Self {
        self.targets.push(target);
        self
    }

    /// Append `rules` to `job`'s `metric_relabel_configs`.
    #[must_use]
    pub fn metric_relabel(
        mut self,
        job: impl Into<String>,
        rules: impl IntoIterator<Item = MetricRelabel>,
    ) -> Self {
        self.jobs
            .entry(job.into())
            .or_default()
            .metric_relabel
            .extend(rules);
        self
    }

    /// Scrape `job` every `interval` instead of [`scrape_interval`](Self::scrape_interval).
    #[must_use]
    pub fn job_scrape_interval(mut self, job: impl Into<String>, interval: Duration) -> Self {
        self.jobs.entry(job.into()).or_default().scrape_interval = Some(interval);
        self
    }

    /// The Prometheus configuration file: a `global` section
    /// (`scrape_interval`, `scrape_timeout`, `evaluation_interval`) and one
    /// `scrape_config` per job with its `metrics_path`, one
    /// `static_configs` entry per target (carrying the target's labels, and
    /// `__metrics_path__` when it differs from the job's), and the job's
    /// `metric_relabel_configs`.
    ///
    /// # Errors
    ///
    /// [`PrometheusError::InvalidConfig`] for an empty job or address, a
    /// path not starting with `/`, a zero interval, or a label name that is
    /// not a Prometheus label name.
    pub fn to_yaml(&self) -> Result<String, PrometheusError> {
        let file = self.file()?;
        serde_yaml_ng::to_string(&file).map_err(|e| PrometheusError::InvalidConfig {
            reason: e.to_string(),
        })
    }

    fn file(&self) -> Result<ConfigFile, PrometheusError> {
        let invalid = |reason: String| PrometheusError::InvalidConfig { reason };
        if self.scrape_interval.is_zero() || self.evaluation_interval.is_zero() {
            return Err(invalid("intervals must be positive".to_owned()));
        }
        let mut scrape_configs: Vec<ScrapeConfigFile> = Vec::new();
        for t in &self.targets {
            if t.job.is_empty() {
                return Err(invalid(format!("target {} has an empty job", t.address)));
            }
            if t.address.is_empty() || t.address.contains('/') {
                return Err(invalid(format!(
                    "target {:?} of job {} is not host:port",
                    t.address, t.job
                )));
            }
            if !t.metrics_path.starts_with('/') {
                return Err(invalid(format!(
                    "metrics path {:?} of {} does not start with /",
                    t.metrics_path, t.address
                )));
            }
            if let Some(name) = t.labels.keys().find(|n| !is_label_name(n)) {
                return Err(invalid(format!(
                    "label name {name:?} of {} is not a Prometheus label name",
                    t.address
                )));
            }
            let index = match scrape_configs.iter().position(|c| c.job_name == t.job) {
                Some(i) => i,
                None => {
                    let options = self.jobs.get(&t.job);
                    let interval = options.and_then(|o| o.scrape_interval);
                    if interval.is_some_and(|i| i.is_zero()) {
                        return Err(invalid(format!("job {} has a zero interval", t.job)));
                    }
                    scrape_configs.push(ScrapeConfigFile {
                        job_name: t.job.clone(),
                        scrape_interval: interval.map(prometheus_duration),
                        scrape_timeout: interval
                            .map(|i| prometheus_duration(i.min(MAX_SCRAPE_TIMEOUT))),
                        metrics_path: t.metrics_path.clone(),
                        static_configs: Vec::new(),
                        metric_relabel_configs: options
                            .map(|o| o.metric_relabel.clone())
                            .unwrap_or_default(),
                    });
                    scrape_configs.len() - 1
                }
            };
            let config = &mut scrape_configs[index];
            let mut labels = t.labels.clone();
            if t.metrics_path != config.metrics_path {
                labels.insert("__metrics_path__".to_owned(), t.metrics_path.clone());
            }
            config.static_configs.push(StaticConfigFile {
                targets: vec![t.address.clone()],
                labels,
            });
        }
        Ok(ConfigFile {
            global: GlobalFile {
                scrape_interval: prometheus_duration(self.scrape_interval),
                scrape_timeout: prometheus_duration(self.scrape_interval.min(MAX_SCRAPE_TIMEOUT)),
                evaluation_interval: prometheus_duration(self.evaluation_interval),
            },
            scrape_configs,
        })
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Prometheus duration: whole seconds as `5s`, else milliseconds
/// (`1500ms`), never below `1ms`.
fn prometheus_duration(d: Duration) -> String {
    let ms = d.as_millis().max(1);
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[derive(Debug, Serialize)]
struct ConfigFile {
    global: GlobalFile,
    scrape_configs: Vec<ScrapeConfigFile>,
}

#[derive(Debug, Serialize)]
struct GlobalFile {
    scrape_interval: String,
    scrape_timeout: String,
    evaluation_interval: String,
}

#[derive(Debug, Serialize)]
struct ScrapeConfigFile {
    job_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    scrape_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scrape_timeout: Option<String>,
    metrics_path: String,
    static_configs: Vec<StaticConfigFile>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    metric_relabel_configs: Vec<MetricRelabel>,
}

#[derive(Debug, Serialize)]
struct StaticConfigFile {
    targets: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------
// API answers

/// One element of an instant query's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included when the query keeps it);
    /// empty for a scalar result.
    pub metric: BTreeMap<String, String>,
    /// The value (`NaN` and infinities included).
    pub value: f64,
    /// The evaluation time, Unix seconds.
    pub timestamp: f64,
}

/// A scrape target's state (`/api/v1/targets`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// The last scrape succeeded.
    Up,
    /// The last scrape failed.
    Down,
    /// Not scraped yet (or a state this client does not know).
    Unknown,
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        })
    }
}

/// An active scrape target as Prometheus sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetHealth {
    /// The scrape pool (the job name).
    pub job: String,
    /// The URL scraped.
    pub scrape_url: String,
    /// The target's labels after relabelling (`job`, `instance`, ours).
    pub labels: BTreeMap<String, String>,
    /// Whether the last scrape worked.
    pub health: Health,
    /// Why the last scrape failed.
    pub last_error: Option<String>,
    /// When it was last scraped (RFC 3339, as Prometheus reports it); `None`
    /// before the first scrape.
    pub last_scrape: Option<String>,
    /// How long the last scrape took, in seconds.
    pub last_scrape_duration: f64,
}

impl TargetHealth {
    /// Up and scraped at least once.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.health == Health::Up && self.last_scrape.is_some()
    }
}

/// One exemplar (`/api/v1/query_exemplars`).
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Its labels, e.g. `trace_id`.
    pub labels: BTreeMap<String, String>,
    /// The observed value.
    pub value: f64,
    /// When it was observed, Unix seconds.
    pub timestamp: f64,
}

/// The exemplars of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct ExemplarSeries {
    /// The series' labels (e.g. a `_bucket` series with its `le`).
    pub series_labels: BTreeMap<String, String>,
    /// Its exemplars in the queried range.
    pub exemplars: Vec<Exemplar>,
}

/// `/api/v1/status/buildinfo`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct BuildInfo {
    /// E.g. `2.42.0+ds`.
    pub version: String,
    /// The VCS revision.
    #[serde(default)]
    pub revision: String,
    /// The VCS branch.
    #[serde(default)]
    pub branch: String,
    /// The Go version it was built with.
    #[serde(default)]
    pub go_version: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<RawSample>),
    Scalar(RawValue),
    Matrix(serde::de::IgnoredAny),
    String(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct RawSample {
    metric: BTreeMap<String, String>,
    value: RawValue,
}

/// `[<unix seconds>, "<value>"]`.
#[derive(Deserialize)]
struct RawValue(f64, String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetsData {
    active_targets: Vec<RawTarget>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTarget {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    scrape_pool: String,
    scrape_url: String,
    #[serde(default)]
    last_error: String,
    #[serde(default)]
    last_scrape: String,
    #[serde(default)]
    last_scrape_duration: f64,
    health: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExemplarSeries {
    series_labels: BTreeMap<String, String>,
    #[serde(default)]
    exemplars: Vec<RawExemplar>,
}

#[derive(Deserialize)]
struct RawExemplar {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: String,
    timestamp: f64,
}

fn parse_float(url: &str, text: &str) -> Result<f64, PrometheusError> {
    // Prometheus writes `NaN`, `+Inf`, `-Inf`; Rust parses those.
    text.parse().map_err(|_| PrometheusError::Decode {
        url: url.to_owned(),
        message: format!("{text:?} is not a number"),
    })
}

// ---------------------------------------------------------------------------
// The process

/// A running Prometheus on a free loopback port, with its config, TSDB and
/// log in a run directory of its own (`<target>/prometheus-runs/<unique>`).
/// Dropping it kills the process and removes the directory; so does
/// [`stop`](Self::stop), waiting for the process to exit. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    url: String,
    version: String,
    run_dir: PathBuf,
    log_path: PathBuf,
    client: Client<HttpConnector, Empty<Bytes>>,
}

static RUNS: AtomicU64 = AtomicU64::new(0);

impl Prometheus {
    /// Provision Prometheus ([`prometheus_binary`]) and start it with
    /// `config`; returns once `/-/ready` answers 200 (within
    /// [`READY_TIMEOUT`]).
    ///
    /// # Errors
    ///
    /// [`PrometheusError`] when provisioning fails, the config is invalid,
    /// or Prometheus exits or is not ready in time (with the end of its log).
    pub async fn start(config: &PrometheusConfig) -> Result<Prometheus, PrometheusError> {
        let binary = tokio::task::spawn_blocking(prometheus_binary)
            .await
            .map_err(|e| PrometheusError::Io {
                context: "provisioning prometheus".to_owned(),
                source: io::Error::other(e.to_string()),
            })??;
        Self::start_with_binary(&binary, config).await
    }

    /// [`start`](Self::start) with a given Prometheus executable.
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start), without the provisioning.
    pub async fn start_with_binary(
        binary: &Path,
        config: &PrometheusConfig,
    ) -> Result<Prometheus, PrometheusError> {
        let yaml = config.to_yaml()?;
        let runs = target_dir()
            .ok_or(PrometheusError::NoTargetDir)?
            .join("prometheus-runs");
        fs::create_dir_all(&runs).map_err(io_err(format!("creating {}", runs.display())))?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let run_dir = runs.join(format!(
            "{}-{}-{nanos}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir(&run_dir).map_err(io_err(format!("creating {}", run_dir.display())))?;
        let config_path = run_dir.join("prometheus.yml");
        fs::write(&config_path, yaml)
            .map_err(io_err(format!("writing {}", config_path.display())))?;
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut last_error = None;
        for attempt in 0..BIND_ATTEMPTS {
            let tsdb = run_dir.join(format!("data-{attempt}"));
            let log_path = run_dir.join(format!("prometheus-{attempt}.log"));
            let port = free_port().map_err(io_err("finding a free loopback port"))?;
            let url = format!("http://127.0.0.1:{port}");
            let log = File::create(&log_path)
                .map_err(io_err(format!("creating {}", log_path.display())))?;
            let log_err = log
                .try_clone()
                .map_err(io_err(format!("opening {}", log_path.display())))?;
            let child = Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!("--storage.tsdb.path={}", tsdb.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--enable-feature=exemplar-storage")
                .arg("--log.level=warn")
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log_err)
                .kill_on_drop(true)
                .spawn()
                .map_err(io_err(format!("starting {}", binary.display())))?;
            let mut prometheus = Prometheus {
                child: Some(child),
                url,
                version: String::new(),
                run_dir: run_dir.clone(),
                log_path,
                client: client.clone(),
            };
            match prometheus.wait_ready(READY_TIMEOUT).await {
                Ok(()) => {
                    let info = prometheus.build_info().await?;
                    prometheus.version = info.version.split('+').next().unwrap_or("").to_owned();
                    return Ok(prometheus);
                }
                Err(e) => {
                    let bind_failed = matches!(&e, PrometheusError::Exited { log_tail, .. }
                        if log_tail.contains("address already in use"));
                    // Keep the run directory so the log can be read.
                    prometheus.keep_run_dir();
                    if !bind_failed {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or(PrometheusError::InvalidConfig {
            reason: "no start attempt".to_owned(),
        }))
    }

    /// Poll `/-/ready` until it answers 200, the process exits, or `timeout`.
    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), PrometheusError> {
        let began = Instant::now();
        let ready_url = format!("{}/-/ready", self.url);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(PrometheusError::Exited {
                    status,
                    log: self.log_path.clone(),
                    log_tail: self.log_tail(),
                });
            }
            let last = match self.get(&ready_url, Duration::from_secs(1)).await {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => {
                    format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim())
                }
                Err(e) => e.to_string(),
            };
            if began.elapsed() >= timeout {
                return Err(PrometheusError::NotReady {
                    url: self.url.clone(),
                    waited: began.elapsed(),
                    last,
                    log: self.log_path.clone(),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The base URL, e.g. `http://127.0.0.1:40123`.
    #[must_use]
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The version the server reports, without build metadata (`2.42.0`
    /// for Debian's `2.42.0+ds`).
    #[must_use]
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Prometheus' log (stdout and stderr, `--log.level=warn`).
    #[must_use]
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last few kilobytes of the log.
    #[must_use]
    pub fn log_tail(&self) -> String {
        let text = fs::read(&self.log_path).unwrap_or_default();
        tail(String::from_utf8_lossy(&text).trim(), 4000).to_owned()
    }

    /// Kill Prometheus, wait for it to exit, and remove its run directory.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
        let _ = fs::remove_dir_all(&self.run_dir);
    }

    /// Do not remove the run directory on drop (a failed start).
    fn keep_run_dir(&mut self) {
        self.run_dir = PathBuf::new();
    }

    /// An instant query (`/api/v1/query`) at the current time. Vector
    /// results give one [`Sample`] per series; a scalar result gives one
    /// [`Sample`] without labels.
    ///
    /// # Errors
    ///
    /// [`PrometheusError::Api`] with Prometheus' `errorType` and `error`
    /// (e.g. `bad_data` for a syntax error), [`PrometheusError::Decode`] for
    /// matrix or string results, or a transport error.
    pub async fn query(&self, promql: &str) -> Result<Vec<Sample>, PrometheusError> {
        let url = format!("{}/api/v1/query?query={}", self.url, encode(promql));
        match self.api::<QueryData>(&url).await? {
            QueryData::Vector(samples) => samples
                .into_iter()
                .map(|s| {
                    Ok(Sample {
                        value: parse_float(&url, &s.value.1)?,
                        timestamp: s.value.0,
                        metric: s.metric,
                    })
                })
                .collect(),
            QueryData::Scalar(v) => Ok(vec![Sample {
                metric: BTreeMap::new(),
                value: parse_float(&url, &v.1)?,
                timestamp: v.0,
            }]),
            QueryData::Matrix(_) => Err(PrometheusError::Decode {
                url,
                message: "a range vector (matrix) result; query an instant vector".to_owned(),
            }),
            QueryData::String(_) => Err(PrometheusError::Decode {
                url,
                message: "a string result; query an instant vector or a scalar".to_owned(),
            }),
        }
    }

    /// The active scrape targets (`/api/v1/targets?state=active`).
    ///
    /// # Errors
    ///
    /// [`PrometheusError::Api`], [`PrometheusError::Decode`] or a transport
    /// error.
    pub async fn targets(&self) -> Result<Vec<TargetHealth>, PrometheusError> {
        let url = format!("{}/api/v1/targets?state=active", self.url);
        let data = self.api::<TargetsData>(&url).await?;
        Ok(data
            .active_targets
            .into_iter()
            .map(|t| TargetHealth {
                job: t.scrape_pool,
                scrape_url: t.scrape_url,
                labels: t.labels,
                health: match t.health.as_str() {
                    "up" => Health::Up,
                    "down" => Health::Down,
                    _ => Health::Unknown,
                },
                last_error: Some(t.last_error).filter(|e| !e.is_empty()),
                // Go's zero time means "never scraped".
                last_scrape: Some(t.last_scrape)
                    .filter(|s| !s.is_empty() && !s.starts_with("0001-01-01")),
                last_scrape_duration: t.last_scrape_duration,
            })
            .collect())
    }

    /// Wait until there is at least one active target and every one is up
    /// and has been scraped at least once; returns them.
    ///
    /// # Errors
    ///
    /// [`PrometheusError::TargetsNotUp`] listing the targets that are not
    /// (with their last scrape error) when `timeout` passes, or the error of
    /// the last [`targets`](Self::targets) call.
    pub async fn wait_for_targets_up(
        &self,
        timeout: Duration,
    ) -> Result<Vec<TargetHealth>, PrometheusError> {
        let began = Instant::now();
        loop {
            let result = self.targets().await;
            if let Ok(targets) = &result
                && !targets.is_empty()
                && targets.iter().all(TargetHealth::is_up)
            {
                return result;
            }
            if began.elapsed() >= timeout {
                return Err(match result {
                    Ok(targets) => PrometheusError::TargetsNotUp {
                        waited: began.elapsed(),
                        targets,
                    },
                    Err(e) => e,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The exemplars of the series `promql` selects between `start` and
    /// `end` (`/api/v1/query_exemplars`). Only OpenMetrics scrapes carry
    /// exemplars (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// [`PrometheusError::Api`] (e.g. `end` before `start`),
    /// [`PrometheusError::Decode`] or a transport error.
    pub async fn query_exemplars(
        &self,
        promql: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<ExemplarSeries>, PrometheusError> {
        let url = format!(
            "{}/api/v1/query_exemplars?query={}&start={}&end={}",
            self.url,
            encode(promql),
            unix_seconds(start),
            unix_seconds(end)
        );
        let data = self
            .api::<Option<Vec<RawExemplarSeries>>>(&url)
            .await?
            .unwrap_or_default();
        data.into_iter()
            .map(|s| {
                Ok(ExemplarSeries {
                    series_labels: s.series_labels,
                    exemplars: s
                        .exemplars
                        .into_iter()
                        .map(|e| {
                            Ok(Exemplar {
                                value: parse_float(&url, &e.value)?,
                                labels: e.labels,
                                timestamp: e.timestamp,
                            })
                        })
                        .collect::<Result<_, PrometheusError>>()?,
                })
            })
            .collect()
    }

    /// The server's build information (`/api/v1/status/buildinfo`).
    ///
    /// # Errors
    ///
    /// [`PrometheusError::Api`], [`PrometheusError::Decode`] or a transport
    /// error.
    pub async fn build_info(&self) -> Result<BuildInfo, PrometheusError> {
        let url = format!("{}/api/v1/status/buildinfo", self.url);
        self.api(&url).await
    }

    /// GET `url`, within [`API_TIMEOUT`], and unwrap Prometheus' envelope.
    async fn api<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, PrometheusError> {
        let (status, body) = self.get(url, API_TIMEOUT).await?;
        let envelope: Envelope<T> = serde_json::from_slice(&body).map_err(|e| {
            if (200..300).contains(&status) {
                PrometheusError::Decode {
                    url: url.to_owned(),
                    message: e.to_string(),
                }
            } else {
                PrometheusError::Status {
                    url: url.to_owned(),
                    status,
                    body: tail(String::from_utf8_lossy(&body).trim(), 2000).to_owned(),
                }
            }
        })?;
        if envelope.status != "success" {
            return Err(PrometheusError::Api {
                url: url.to_owned(),
                status,
                error_type: envelope.error_type.unwrap_or_default(),
                error: envelope.error.unwrap_or_default(),
            });
        }
        envelope.data.ok_or_else(|| PrometheusError::Decode {
            url: url.to_owned(),
            message: "no data".to_owned(),
        })
    }

    /// GET `url`; the status and the whole body, within `timeout`.
    async fn get(&self, url: &str, timeout: Duration) -> Result<(u16, Bytes), PrometheusError> {
        let http_err = |message: String| PrometheusError::Http {
            url: url.to_owned(),
            message,
        };
        let req = http::Request::get(url)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| http_err(e.to_string()))?;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| http_err(error_chain(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| http_err(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| PrometheusError::Timeout {
                url: url.to_owned(),
                after: timeout,
            })?
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            // SIGKILL is quick; wait (briefly) so the TSDB is not written
            // while it is removed.
            for _ in 0..100 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if !self.run_dir.as_os_str().is_empty() {
            let _ = fs::remove_dir_all(&self.run_dir);
        }
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> io::Result<u16> {
    let listener = StdTcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    Ok(listener.local_addr()?.port())
}

fn encode(value: &str) -> String {
    utf8_percent_encode(value, NON_ALPHANUMERIC).to_string()
}

/// Unix seconds with milliseconds, as Prometheus' API takes them.
fn unix_seconds(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => format!("{}.{:03}", d.as_secs(), d.subsec_millis()),
        Err(before) => {
            let d = before.duration();
            format!("-{}.{:03}", d.as_secs(), d.subsec_millis())
        }
    }
}

/// An error and its sources, `: `-joined (hyper's errors say little alone).
fn error_chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        #[rustfmt::skip]
        let cases = [
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(15), "15s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(10), "1ms"),
            (Duration::ZERO, "1ms"),
        ];
        for (d, want) in cases {
            assert_eq!(prometheus_duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn versions() {
        #[rustfmt::skip]
        let cases = [
            ("prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+b6)", Some("2.42.0")),
            ("prometheus, version 3.5.0 (branch: HEAD, revision: abc)", Some("3.5.0")),
            ("prometheus, version unknown", None),
            ("usage: prometheus", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_version(line).as_deref(), want, "{line}");
        }
    }

    #[test]
    fn label_names() {
        assert!(is_label_name("app"));
        assert!(is_label_name("__metrics_path__"));
        assert!(is_label_name("a1_b"));
        assert!(!is_label_name(""));
        assert!(!is_label_name("1a"));
        assert!(!is_label_name("a-b"));
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(unix_seconds(t), "1700000000.123");
    }

    #[test]
    fn query_results_decode() {
        let vector =
            r#"{"resultType":"vector","result":[{"metric":{"app":"a"},"value":[1.5,"NaN"]}]}"#;
        let QueryData::Vector(v) = serde_json::from_str(vector).unwrap() else {
            panic!("not a vector");
        };
        assert_eq!(v[0].metric["app"], "a");
        assert!(parse_float("u", &v[0].value.1).unwrap().is_nan());
        let scalar = r#"{"resultType":"scalar","result":[1.5,"+Inf"]}"#;
        let QueryData::Scalar(s) = serde_json::from_str(scalar).unwrap() else {
            panic!("not a scalar");
        };
        assert_eq!(parse_float("u", &s.1).unwrap(), f64::INFINITY);
    }

    #[test]
    fn marker_must_be_complete() {
        let dir = std::env::temp_dir().join(format!("prometheus-marker-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let marker = dir.join("m");
        fs::write(
            &marker,
            format!("{MARKER_KIND}\nprometheus, version 2.42.0\n"),
        )
        .unwrap();
        assert_eq!(read_marker(&marker), None, "no binary path");
        fs::write(
            &marker,
            format!("{MARKER_KIND}\nprometheus, version 2.42.0\n/nonexistent/prometheus"),
        )
        .unwrap();
        assert_eq!(read_marker(&marker), None, "binary gone");
        let _ = fs::remove_dir_all(&dir);
    }
}
