//! The flags every service binary shares (each also reads its environment variable), so each
//! service runs alone, against a real Jaeger or Tempo, or behind Envoy.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use b3_propagation::{Propagator, SpanSemantics};
use clap::{Args, ValueEnum};
use tower_trace_headers::Mode;

use crate::ServiceOptions;
use crate::access_log::AccessLog;
use crate::telemetry::Telemetry;

/// How outgoing calls carry the context.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    /// Re-send the received headers unchanged (the sidecar makes the spans).
    Forward,
    /// A child span per call.
    Instrument,
}

/// Flags shared by the four services.
#[derive(Clone, Debug, Args)]
pub struct ServiceArgs {
    /// Address to listen on.
    #[arg(long, env = "LISTEN")]
    pub listen: SocketAddr,
    /// OTLP/HTTP collector base URL (`http://host:4318`); defaults to
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the traces URL as it is), else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL); without any (or with blank values), no span
    /// is reported and the service is transparent (its calls name the caller's span, never
    /// an id nobody reports).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// Forward or instrument outgoing calls.
    #[arg(long, value_enum, env = "TRACE_MODE", ignore_case = true, default_value_t = ModeArg::Instrument)]
    pub mode: ModeArg,
    /// Zipkin shared span context (server spans reuse the caller's span id). Alone, or with
    /// `true` / `false`. Refused with `--mode forward` while spans are reported.
    #[arg(long, env = "SHARED_SPAN_CONTEXT", default_value_t = false,
          action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL", value_parser = env_flag)]
    pub shared_span_context: bool,
    /// Report no spans of our own (headers only): the service is transparent, its calls name
    /// the caller's span. Without an OTLP endpoint nothing is reported either.
    #[arg(long, env = "NO_SPANS", value_parser = env_flag)]
    pub no_spans: bool,
    /// Access log: `stdout`, `off`, or a file path.
    #[arg(long, env = "ACCESS_LOG", default_value = "stdout")]
    pub access_log: String,
    /// Version label reported in spans and access logs.
    #[arg(long, env = "SERVICE_VERSION", default_value = "v1")]
    pub service_version: String,
    /// Also serve `/healthz`, `/readyz` and `/metrics` (OpenMetrics) on this address, for the
    /// kubelet's probes and Prometheus when the service listens on the pod's loopback behind
    /// its sidecar (and because the gRPC services speak only HTTP/2), e.g. `0.0.0.0:9090`.
    /// With it, the frontend's own port (the one clients reach) serves no `/metrics`.
    #[arg(long, env = "ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// The HTTP server (the frontend's) cuts off a client that does not send its request
    /// headers within this many milliseconds, or leaves a connection idle that long.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 5000)]
    pub header_read_timeout_ms: u64,
    /// On SIGTERM, keep serving this many milliseconds after turning not-ready (`/readyz` 503,
    /// gRPC health `NOT_SERVING`) before stopping: the time Kubernetes takes to take the pod
    /// out of its Service's endpoints. Then the requests in flight drain.
    #[arg(long, env = "SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,
    /// This service faces clients: they may not force sampling or pick request ids, and only
    /// the `--edge-fields` of the propagated fields are taken from them.
    #[arg(long, env = "EDGE", value_parser = env_flag)]
    pub edge: bool,
    /// Headers carried from each request to every call it makes, comma-separated (Istio routes
    /// on `end-user`; add `x-tenant-id` and the like). Values are checked (visible ASCII, at
    /// most 4096 bytes).
    #[arg(long, env = "MESH_PROPAGATE_FIELDS", value_delimiter = ',',
          default_value = crate::DEFAULT_FIELDS)]
    pub propagate_fields: Vec<String>,
    /// Of the propagated fields, those a client may set at the edge (as if from an
    /// authenticating proxy in front of it); the others are dropped there. Default: `end-user`
    /// when it is propagated, else none.
    #[arg(long, env = "MESH_EDGE_FIELDS", value_delimiter = ',')]
    pub edge_fields: Option<Vec<String>>,
}

/// An upstream service's address: an absolute `http://` or `https://` URL with a host (a
/// bare `host:port` would be taken for a scheme and fail only when the first call is made).
///
/// # Errors
///
/// Anything else.
pub fn upstream(value: &str) -> Result<String, String> {
    let uri: http::Uri = value
        .trim()
        .parse()
        .map_err(|e| format!("`{value}` is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(value.trim().to_owned()),
        _ => Err(format!("`{value}`: expected http://host:port")),
    }
}

/// A fraction, `0..=1`.
///
/// # Errors
///
/// A value that is not a number in that range (`NaN` included).
pub fn fraction(value: &str) -> Result<f64, String> {
    let f: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("`{value}` is not in 0..=1"))
    }
}

/// A flag that its environment variable may set: `1`, `true`, `yes`, `on` (any case) and the
/// like are true; `0`, `false`, `no`, `off` and a blank value are false; anything else is an
/// error (a typo does not silently turn the flag on).
///
/// # Errors
///
/// A value that is none of those.
pub fn env_flag(value: &str) -> Result<bool, String> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
        "" | "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
        other => Err(format!(
            "`{other}` is not a boolean (true/false, 1/0, yes/no, on/off)"
        )),
    }
}

/// Any error of a service binary.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl ServiceArgs {
    /// The service options for `service`: propagator from `OTEL_PROPAGATORS`, telemetry from
    /// the flags and `OTEL_*` variables.
    ///
    /// # Errors
    ///
    /// An unknown propagator, an unusable exporter or access log path, or
    /// `--shared-span-context` with `--mode forward` while spans are reported
    /// ([`FORWARD_SHARED`]).
    pub fn options(&self, service: &str) -> Result<ServiceOptions, BoxError> {
        let telemetry = Telemetry::new(
            service,
            &self.service_version,
            self.otlp_endpoint.as_deref(),
            true,
        )?;
        if self.shared_span_context
            && matches!(self.mode, ModeArg::Forward)
            && !self.no_spans
            && telemetry.exports()
        {
            return Err(FORWARD_SHARED.into());
        }
        let metrics = crate::metrics::Metrics::new(telemetry.service(), &self.service_version);
        let semantics = if self.shared_span_context {
            SpanSemantics::Shared
        } else {
            SpanSemantics::Child
        };
        let access_log = match self.access_log.as_str() {
            "stdout" => AccessLog::stdout()?,
            "off" => AccessLog::Off,
            path => AccessLog::file(std::path::Path::new(path))?,
        };
        Ok(ServiceOptions {
            propagator: Propagator::from_env()?
                .to_builder()
                .span_semantics(semantics)
                .fields(crate::fields(
                    &self.propagate_fields,
                    self.edge_fields.as_deref(),
                )?)
                .build(),
            mode: match self.mode {
                ModeArg::Forward => Mode::Forward,
                ModeArg::Instrument => Mode::Instrument,
            },
            spans: !self.no_spans,
            telemetry,
            access_log,
            version: self.service_version.clone(),
            edge: self.edge,
            health: crate::health::Health::new()
                .with_shutdown_delay(std::time::Duration::from_millis(self.shutdown_delay_ms)),
            serve: serve::ServeOptions {
                header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
                ..serve::ServeOptions::default()
            },
            metrics,
        })
    }
}

/// Why a service that reports spans refuses shared span context in forward mode: its server
/// span would take the span id its caller sent, and in forward mode its calls send that same
/// id on, so every service's server span would have one id (and Zipkin would merge them).
pub const FORWARD_SHARED: &str = "--shared-span-context with --mode forward: each service's \
     server span would reuse the span id its caller sent, and forward mode sends that same id \
     on, so every service's span would have one id; use --mode instrument, or --no-spans";

/// With this variable set true (`1`, `true`, ...), a service also stops when its standard input
/// closes: how a parent process (`demo --processes`) stops its children gracefully without
/// sending signals.
pub const SHUTDOWN_ON_STDIN_CLOSE: &str = "SHUTDOWN_ON_STDIN_CLOSE";

/// Completes on Ctrl-C or SIGTERM ([`serve::stop_signal`], its SIGTERM handler installed
/// at this call) and, with [`SHUTDOWN_ON_STDIN_CLOSE`] set, when standard input closes. Call
/// it inside the runtime.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let signals = serve::stop_signal();
    let stdin_closed = async {
        let on = std::env::var(SHUTDOWN_ON_STDIN_CLOSE)
            .ok()
            .and_then(|v| env_flag(&v).ok())
            .unwrap_or(false);
        if !on {
            return std::future::pending::<()>().await;
        }
        let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
        // A thread of its own (not `spawn_blocking`, which the runtime would wait for when it
        // shuts down): it reads until end of file, and dies with the process otherwise.
        let reader = std::thread::Builder::new()
            .name("stdin-close".into())
            .spawn(move || {
                use std::io::Read as _;
                let mut stdin = std::io::stdin();
                let mut buf = [0u8; 256];
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                }
                let _ = closed.send(());
            });
        match reader {
            Ok(_) => {
                let _ = on_close.await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    async move {
        let signals = async move {
            match signals {
                Ok(signals) => signals.await,
                // No SIGTERM handler: Ctrl-C still stops the service.
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        };
        tokio::select! {
            () = signals => {},
            () = stdin_closed => {},
        }
    }
}

/// `frontend`'s flags.
#[derive(Clone, Debug, Args)]
pub struct FrontendArgs {
    /// The shared flags.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The user service, `http://host:port` (behind Envoy: the sidecar's egress listener).
    #[arg(long, env = "USER_ADDR", default_value = "http://127.0.0.1:8081",
          value_parser = upstream)]
    pub user: String,
    /// The order service, `http://host:port` (behind Envoy: the sidecar's egress listener).
    #[arg(long, env = "ORDER_ADDR", default_value = "http://127.0.0.1:8082",
          value_parser = upstream)]
    pub order: String,
}

/// `user`'s flags.
#[derive(Clone, Debug, Args)]
pub struct UserArgs {
    /// The shared flags.
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// `order`'s flags.
#[derive(Clone, Debug, Args)]
pub struct OrderArgs {
    /// The shared flags.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// The item service, `http://host:port` (behind Envoy: the sidecar's egress listener).
    #[arg(long, env = "ITEM_ADDR", default_value = "http://127.0.0.1:8083",
          value_parser = upstream)]
    pub item: String,
}

/// `item`'s flags.
#[derive(Clone, Debug, Args)]
pub struct ItemArgs {
    /// The shared flags.
    #[command(flatten)]
    pub service: ServiceArgs,
    /// Fraction (0..=1) of requests made slower: an injected tail-latency regression.
    #[arg(long, env = "TAIL_FRACTION", default_value_t = 0.0, value_parser = fraction)]
    pub tail_fraction: f64,
    /// How much slower, in milliseconds.
    #[arg(long, env = "TAIL_MS", default_value_t = 80)]
    pub tail_ms: u64,
}

/// Any one of the four services, with its flags: what each service binary runs (and what
/// `demo --processes` runs in each child process).
#[derive(Clone, Debug, clap::Subcommand)]
pub enum ServiceCommand {
    /// The HTTP edge.
    Frontend(FrontendArgs),
    /// gRPC `user`.
    User(UserArgs),
    /// gRPC `order`.
    Order(OrderArgs),
    /// gRPC `item`.
    Item(ItemArgs),
}

impl ServiceCommand {
    /// What a service binary's `main` does: [`run`](Self::run) on a runtime of its own, then
    /// the calls the drain cut off are ended. tonic and hyper serve each connection on a task
    /// of its own, so a call still running when the drain timed out outlives the server; it
    /// is dropped here (bounded, 1 s), which writes its access-log line (status 0), and that
    /// line then goes out with the rest instead of being lost when the process exits.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run), or when the runtime cannot be built.
    pub fn main(self) -> Result<(), BoxError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let mut log = None;
        let result = runtime.block_on(self.run_into(&mut log));
        runtime.shutdown_timeout(Duration::from_secs(1));
        if let Some(log) = log {
            log.flush(Duration::from_secs(2));
        }
        result
    }

    /// Bind, serve until Ctrl-C or SIGTERM, then flush the spans.
    ///
    /// # Errors
    ///
    /// Bad options, a port that cannot be bound, or the server's error.
    pub async fn run(self) -> Result<(), BoxError> {
        self.run_into(&mut None).await
    }

    /// [`run`](Self::run), leaving in `log` the service's access log once it is made.
    async fn run_into(self, log: &mut Option<AccessLog>) -> Result<(), BoxError> {
        use crate::{frontend, item, order, user};
        match self {
            ServiceCommand::Frontend(a) => {
                let opts = a.service.options("frontend")?;
                *log = Some(opts.access_log.clone());
                let f =
                    frontend::Frontend::new(opts.user_channel(&a.user)?, opts.channel(&a.order)?);
                let listener = tokio::net::TcpListener::bind(a.service.listen).await?;
                // The address bound (`--listen 127.0.0.1:0` picks a port).
                let local = listener.local_addr()?;
                // With an admin listener, the metrics are served there only: the frontend's
                // own port is the one clients reach.
                let server = if a.service.admin_listen.is_some() {
                    futures_util::future::Either::Left(frontend::serve_behind_admin(
                        listener,
                        f,
                        opts.clone(),
                        shutdown_signal(),
                    ))
                } else {
                    futures_util::future::Either::Right(frontend::serve(
                        listener,
                        f,
                        opts.clone(),
                        shutdown_signal(),
                    ))
                };
                run("frontend", &opts, local, a.service.admin_listen, server).await
            }
            ServiceCommand::User(a) => {
                let opts = a.service.options("user")?;
                *log = Some(opts.access_log.clone());
                let listener = tokio::net::TcpListener::bind(a.service.listen).await?;
                // The address bound (`--listen 127.0.0.1:0` picks a port).
                let local = listener.local_addr()?;
                let server = user::serve(listener, opts.clone(), shutdown_signal());
                run("user", &opts, local, a.service.admin_listen, server).await
            }
            ServiceCommand::Order(a) => {
                let opts = a.service.options("order")?;
                *log = Some(opts.access_log.clone());
                let orders = order::Orders::new(opts.channel(&a.item)?);
                let listener = tokio::net::TcpListener::bind(a.service.listen).await?;
                // The address bound (`--listen 127.0.0.1:0` picks a port).
                let local = listener.local_addr()?;
                let server = order::serve(listener, orders, opts.clone(), shutdown_signal());
                run("order", &opts, local, a.service.admin_listen, server).await
            }
            ServiceCommand::Item(a) => {
                let opts = a.service.options("item")?;
                *log = Some(opts.access_log.clone());
                let items = item::Items::new(&a.service.service_version).with_tail_latency(
                    a.tail_fraction,
                    std::time::Duration::from_millis(a.tail_ms),
                );
                let listener = tokio::net::TcpListener::bind(a.service.listen).await?;
                // The address bound (`--listen 127.0.0.1:0` picks a port).
                let local = listener.local_addr()?;
                let server = item::serve(listener, items, opts.clone(), shutdown_signal());
                run("item", &opts, local, a.service.admin_listen, server).await
            }
        }
    }
}

/// Run a service until a shutdown signal (its readiness turning false first), with its
/// health endpoints and `/metrics` on `admin` too when given, then flush its spans.
///
/// # Errors
///
/// The server's error.
pub async fn run<F, E>(
    name: &str,
    opts: &ServiceOptions,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
    server: F,
) -> Result<(), BoxError>
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    // The admin listener stays up until the service itself has stopped: through the shutdown
    // delay and the drain, probes read `/readyz` 503 (not a refused connection) and
    // Prometheus still scrapes.
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    if let Some(admin) = admin {
        let listener = tokio::net::TcpListener::bind(admin).await?;
        let admin = listener.local_addr()?;
        eprintln!("{name} health on http://{admin}/healthz, /readyz; metrics on /metrics");
        let app = opts.admin_router();
        tokio::spawn(serve::serve(
            listener,
            app,
            serve::ServeOptions::default(),
            async {
                let _ = admin_stopped.await;
            },
        ));
    }
    eprintln!("{name} listening on {listen}");
    let result = server.await.map_err(Into::into);
    let _ = admin_stop.send(());
    opts.health.drain();
    let telemetry = opts.telemetry.clone();
    let access_log = opts.access_log.clone();
    let _ = tokio::task::spawn_blocking(move || {
        access_log.flush(Duration::from_secs(2));
        telemetry.shutdown();
    })
    .await;
    result
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "svc", version)]
    struct Cli {
        #[command(flatten)]
        service: ServiceArgs,
    }

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "svc",
            "--listen",
            "127.0.0.1:1",
            "--mode",
            "forward",
            "--shared-span-context",
            "true",
        ])
        .unwrap();
        assert!(cli.service.shared_span_context);
        assert!(matches!(cli.service.mode, ModeArg::Forward));
        // Alone, as the design lists it, or with a value.
        for (args, on) in [
            (&["--shared-span-context"][..], true),
            (&["--shared-span-context", "false"][..], false),
            (&["--shared-span-context", "--edge"][..], true),
            (&[][..], false),
        ] {
            let cli = Cli::try_parse_from(
                ["svc", "--listen", "127.0.0.1:1"]
                    .iter()
                    .chain(args)
                    .copied(),
            )
            .unwrap();
            assert_eq!(cli.service.shared_span_context, on, "{args:?}");
        }
    }

    /// Forward mode with shared span context would give every service's server span the id
    /// the edge's caller sent: refused while spans are reported, allowed when they are not.
    #[tokio::test]
    async fn forward_mode_with_shared_span_context_needs_no_spans() {
        let options = |mode: &str, extra: &[&str]| {
            let cli = Cli::try_parse_from(
                [
                    "svc",
                    "--listen",
                    "127.0.0.1:1",
                    "--mode",
                    mode,
                    "--shared-span-context",
                    "--access-log",
                    "off",
                ]
                .iter()
                .chain(extra)
                .copied(),
            )
            .unwrap();
            cli.service.options("order").map(|_| ())
        };
        let otlp = ["--otlp-endpoint", "http://127.0.0.1:1"];
        let refused = options("forward", &otlp).unwrap_err();
        assert_eq!(refused.to_string(), FORWARD_SHARED);
        options("forward", &[otlp[0], otlp[1], "--no-spans"]).unwrap();
        options("instrument", &otlp).unwrap();
    }

    #[test]
    fn env_flags_read_booleans_and_refuse_typos() {
        for yes in ["1", "true", "TRUE", "yes", "on", " y "] {
            assert_eq!(env_flag(yes), Ok(true), "{yes}");
        }
        for no in ["", " ", "0", "false", "No", "off"] {
            assert_eq!(env_flag(no), Ok(false), "{no}");
        }
        assert!(env_flag("ture").is_err());
        // The flag alone still sets it.
        let cli = Cli::try_parse_from(["svc", "--listen", "127.0.0.1:1", "--no-spans", "--edge"])
            .unwrap();
        assert!(cli.service.no_spans && cli.service.edge);
    }

    #[test]
    fn without_an_endpoint_a_service_reports_nothing() {
        // The headers-only default: no exporter, so no span the layers or the app start is
        // reported, and the layers are told (transparent), instead of writing ids nobody
        // exports.
        let cli =
            Cli::try_parse_from(["svc", "--listen", "127.0.0.1:1", "--access-log", "off"]).unwrap();
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && std::env::var_os("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            let opts = cli.service.options("item").unwrap();
            assert!(!opts.telemetry.exports());
            assert!(!opts.reports());
        }
        let cli = Cli::try_parse_from([
            "svc",
            "--listen",
            "127.0.0.1:1",
            "--access-log",
            "off",
            "--otlp-endpoint",
            "http://127.0.0.1:9",
        ])
        .unwrap();
        let opts = cli.service.options("item").unwrap();
        assert!(opts.telemetry.exports() && opts.reports());
    }

    #[test]
    fn upstream_addresses_and_fractions_are_checked_when_parsed() {
        for good in [
            "http://127.0.0.1:8081",
            "https://order.mesh:443",
            "http://[::1]:80",
        ] {
            assert_eq!(upstream(good).as_deref(), Ok(good));
        }
        for bad in [
            "127.0.0.1:8081",
            "order:8082",
            "ftp://x:1",
            "http://",
            "",
            "not a url",
        ] {
            assert!(upstream(bad).is_err(), "{bad}");
        }
        for (value, ok) in [
            ("0", true),
            ("0.1", true),
            ("1", true),
            ("NaN", false),
            ("-3", false),
            ("5", false),
            ("x", false),
        ] {
            assert_eq!(fraction(value).is_ok(), ok, "{value}");
        }
        let parsed = Cli::try_parse_from(["svc", "--listen", "127.0.0.1:1"]);
        assert!(parsed.is_ok());
        // The mode in any case, as environment variables are often written.
        let cli =
            Cli::try_parse_from(["svc", "--listen", "127.0.0.1:1", "--mode", "Forward"]).unwrap();
        assert!(matches!(cli.service.mode, ModeArg::Forward));
    }

    #[test]
    fn propagated_fields_from_flags() {
        let cli = Cli::try_parse_from(["svc", "--listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(cli.service.propagate_fields, ["end-user"]);
        let fields = crate::fields(
            &cli.service.propagate_fields,
            cli.service.edge_fields.as_deref(),
        )
        .unwrap();
        assert_eq!(fields.len(), 1);
        assert!(fields[0].is_kept_at_edge());
        // Propagated fields alone: the default edge field only if it is among them.
        for (propagate, kept) in [("x-tenant-id", 0), ("end-user,x-tenant-id", 1), ("", 0)] {
            let cli = Cli::try_parse_from([
                "svc",
                "--listen",
                "127.0.0.1:1",
                "--propagate-fields",
                propagate,
            ])
            .unwrap();
            let fields = crate::fields(
                &cli.service.propagate_fields,
                cli.service.edge_fields.as_deref(),
            )
            .unwrap_or_else(|e| panic!("{propagate}: {e}"));
            assert_eq!(
                fields.iter().filter(|f| f.is_kept_at_edge()).count(),
                kept,
                "{propagate}"
            );
        }
        let cli = Cli::try_parse_from([
            "svc",
            "--listen",
            "127.0.0.1:1",
            "--propagate-fields",
            "end-user,x-tenant-id",
            "--edge-fields",
            "",
        ])
        .unwrap();
        let fields = crate::fields(
            &cli.service.propagate_fields,
            cli.service.edge_fields.as_deref(),
        )
        .unwrap();
        assert_eq!(fields.len(), 2);
        assert!(fields.iter().all(|f| !f.is_kept_at_edge()));
        for (propagate, edge) in [("x-b3-spanid", ""), ("end-user", "x-tenant-id")] {
            let err = crate::fields(&[propagate.to_owned()], Some(&[edge.to_owned()]));
            assert!(err.is_err(), "{propagate} / {edge}");
        }
    }
}
