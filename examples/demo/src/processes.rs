//! The mesh as four operating-system processes (`demo --processes`): each service runs in a
//! child process of its own, so its memory can be measured on its own (resident set size from
//! `/proc`), while the collector and the load stay in the demo's process.
//!
//! The children are the demo binary itself, started with [`SERVICE_ENV`] set: `cargo run
//! --release --bin demo -- --processes` builds nothing more than the demo.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tower_trace_headers::Mode;

use super::{BoxError, Outcome, SERVICES, Service, Summary};
use collector::{Collector, ZipkinSpan};

/// When this variable is set, the demo binary runs one service instead (its arguments are
/// those of [`services::cli::ServiceCommand`]).
pub const SERVICE_ENV: &str = "MESH_DEMO_SERVICE";

/// What a child process parses: one service and its flags.
#[derive(Debug, clap::Parser)]
#[command(name = "demo")]
struct ServiceCli {
    #[command(subcommand)]
    service: services::cli::ServiceCommand,
}

/// In a child started by [`run`] ([`SERVICE_ENV`] set): run the service its arguments name
/// until it is told to stop, and return how that went. `None` in any other process. A binary
/// that [`run`] re-executes calls this first thing in `main` (the demo does; so does the
/// integration test of `--processes`).
pub async fn run_child_service() -> Option<Result<(), BoxError>> {
    use clap::Parser as _;
    std::env::var_os(SERVICE_ENV)?;
    Some(match ServiceCli::try_parse() {
        Ok(cli) => cli.service.run().await,
        Err(e) => Err(e.into()),
    })
}

/// A free loopback port (bound, then released for the child to bind).
fn free_port() -> std::io::Result<SocketAddr> {
    StdListener::bind("127.0.0.1:0")?.local_addr()
}

/// The four services running as child processes.
#[derive(Debug)]
pub struct ProcessMesh {
    children: Vec<(Service, Child)>,
    /// The frontend's address.
    pub frontend: SocketAddr,
}

/// Resident set size of `pid` in bytes (Linux `/proc`; `None` elsewhere).
#[must_use]
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

impl ProcessMesh {
    /// Start `item`, `user`, `order` and `frontend` from `exe` (the demo binary), exporting to
    /// `collector` (an OTLP/HTTP base URL), and wait (at most 20 s) until each accepts
    /// connections.
    ///
    /// # Errors
    ///
    /// A child that cannot be started, exits early, or never listens.
    pub async fn start(
        exe: &Path,
        collector: &str,
        mode: Mode,
        shared_span_context: bool,
    ) -> Result<Self, BoxError> {
        let mut addrs = Vec::new();
        for service in Service::ALL {
            addrs.push((service, free_port()?));
        }
        let addr = |s: Service| {
            addrs
                .iter()
                .find(|(x, _)| *x == s)
                .map_or_else(String::new, |(_, a)| format!("http://{a}"))
        };
        let mode = if mode == Mode::Forward {
            "forward"
        } else {
            "instrument"
        };
        let mut mesh = ProcessMesh {
            children: Vec::new(),
            frontend: addrs
                .iter()
                .find(|(s, _)| *s == Service::Frontend)
                .map(|(_, a)| *a)
                .ok_or("no frontend address")?,
        };
        for (service, listen) in &addrs {
            let mut cmd = Command::new(exe);
            // As the in-process mesh, the children ignore the caller's environment (its
            // `OTEL_SERVICE_NAME` would rename all four, its `ADMIN_LISTEN` make three fail to
            // bind): everything they need is on their command line.
            cmd.env_clear();
            for keep in [
                "PATH",
                "HOME",
                "TMPDIR",
                "RUST_BACKTRACE",
                "RUST_LOG",
                // What a re-executed binary may need to load or to write its coverage.
                "LD_LIBRARY_PATH",
                "LLVM_PROFILE_FILE",
            ] {
                if let Some(v) = std::env::var_os(keep) {
                    cmd.env(keep, v);
                }
            }
            cmd.env(SERVICE_ENV, "1")
                // Stopped by closing its standard input (see `stop`): no signal to send.
                .env(services::cli::SHUTDOWN_ON_STDIN_CLOSE, "1")
                .arg(service.name())
                .args(["--listen", &listen.to_string()])
                .args(["--otlp-endpoint", collector])
                .args(["--mode", mode])
                .args(["--shared-span-context", &shared_span_context.to_string()])
                .args(["--access-log", "off"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            match service {
                Service::Frontend => {
                    cmd.args(["--user", &addr(Service::User)])
                        .args(["--order", &addr(Service::Order)])
                        .arg("--edge");
                }
                Service::Order => {
                    cmd.args(["--item", &addr(Service::Item)]);
                }
                Service::User | Service::Item => {}
            }
            mesh.children.push((*service, cmd.spawn()?));
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        for (service, listen) in &addrs {
            loop {
                if tokio::net::TcpStream::connect(listen).await.is_ok() {
                    break;
                }
                if let Some((_, child)) = mesh.children.iter_mut().find(|(s, _)| s == service)
                    && let Ok(Some(status)) = child.try_wait()
                {
                    mesh.stop().await;
                    return Err(format!("{} exited: {status}", service.name()).into());
                }
                if Instant::now() > deadline {
                    mesh.stop().await;
                    return Err(format!("{} did not listen on {listen}", service.name()).into());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(mesh)
    }

    /// Each service's resident set size now, in bytes.
    #[must_use]
    pub fn rss(&self) -> Vec<(Service, Option<u64>)> {
        self.children
            .iter()
            .map(|(s, c)| (*s, rss_bytes(c.id())))
            .collect()
    }

    /// Each child's process id.
    #[must_use]
    pub fn pids(&self) -> Vec<(Service, u32)> {
        self.children.iter().map(|(s, c)| (*s, c.id())).collect()
    }

    /// Close every child's standard input (each then drains, flushes its spans and exits, as
    /// on SIGTERM), wait at most 10 s, then kill what is left.
    pub async fn stop(mut self) {
        for (_, child) in &mut self.children {
            drop(child.stdin.take());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for ProcessMesh {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What [`run`] does.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Requests measured (after a warm-up of a tenth of them, between 1 and 1 000).
    pub requests: usize,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Forward or instrument.
    pub mode: Mode,
    /// Zipkin shared span context.
    pub shared_span_context: bool,
}

/// One service's resident set size, in bytes, after the warm-up and after the load.
#[derive(Clone, Copy, Debug)]
pub struct Memory {
    /// The service.
    pub service: Service,
    /// After the warm-up.
    pub before: Option<u64>,
    /// After the load.
    pub after: Option<u64>,
}

impl Memory {
    /// `after - before`, in bytes (negative when memory was returned).
    #[must_use]
    pub fn growth(&self) -> Option<i64> {
        let (a, b) = (
            i64::try_from(self.after?).ok()?,
            i64::try_from(self.before?).ok()?,
        );
        Some(a - b)
    }
}

/// The result of [`run`].
#[derive(Debug)]
pub struct LoadRun {
    /// Warm-up requests sent before measuring.
    pub warm_up: usize,
    /// The measured requests.
    pub outcomes: Vec<Outcome>,
    /// Wall time of the measured requests.
    pub elapsed: Duration,
    /// Every span the collector received (warm-up included).
    pub spans: Vec<ZipkinSpan>,
    /// Each service's memory.
    pub memory: Vec<Memory>,
}

impl LoadRun {
    /// Measured requests per second.
    #[must_use]
    pub fn throughput(&self) -> f64 {
        self.outcomes.len() as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Outcomes, latencies and joined traces.
    #[must_use]
    pub fn summary(&self) -> Summary {
        super::summarise(&self.outcomes, &self.spans, &SERVICES)
    }
}

/// Run the embedded collector here and the four services as child processes of `exe` (a
/// binary that runs a service when [`SERVICE_ENV`] is set: the demo), send a warm-up and then
/// `options.requests` requests, measure each service's RSS before and after, stop the services
/// (each flushes its spans) and collect the traces. `say` gets the start-up lines; `progress`
/// the number of requests done, about once a second.
///
/// # Errors
///
/// When the collector cannot bind or a service does not start.
pub async fn run(
    exe: &Path,
    options: &LoadOptions,
    say: impl Fn(String),
    progress: impl Fn(usize) + Send + Sync + 'static,
) -> Result<LoadRun, BoxError> {
    let collector = Collector::new(super::collector_limits(options.requests, 16));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let collector_url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(collector.clone().serve(listener, async move {
        let _ = stopped.await;
    }));
    let mesh = ProcessMesh::start(
        exe,
        &collector_url,
        options.mode,
        options.shared_span_context,
    )
    .await?;
    let base = format!("http://{}", mesh.frontend);
    let pids: Vec<String> = mesh
        .pids()
        .iter()
        .map(|(s, pid)| format!("{} pid {pid}", s.name()))
        .collect();
    say(format!(
        "mesh up (one process per service): {}; frontend {base}",
        pids.join(", ")
    ));
    say(format!("collector: {collector_url}/api/v2/traces"));

    let warm_up = (options.requests / 10).clamp(1, 1_000);
    let _ = super::load(&base, warm_up, options.concurrency, &[], |_| {}).await;
    let before = mesh.rss();
    let start = Instant::now();
    let outcomes = super::load(&base, options.requests, options.concurrency, &[], progress).await;
    let elapsed = start.elapsed();
    let after = mesh.rss();
    mesh.stop().await;

    let spans = super::collected(&collector, &outcomes, Duration::from_secs(60)).await;
    let _ = stop.send(());
    let _ = server.await;
    let memory = before
        .iter()
        .zip(&after)
        .map(|((service, before), (_, after))| Memory {
            service: *service,
            before: *before,
            after: *after,
        })
        .collect();
    Ok(LoadRun {
        warm_up,
        outcomes,
        elapsed,
        spans,
        memory,
    })
}
