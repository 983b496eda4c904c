//! `demo`: the traced mesh on embedded defaults — collector, frontend, user, order, item — a
//! bounded load, the joined traces as waterfalls, and a one-line summary.
//!
//! `cargo run --release --bin demo [-- --requests N --concurrency C --json PATH --serve ...]`

use std::process::ExitCode;
use std::time::Duration;

use b3_propagation::SpanSemantics;
use clap::{Parser, ValueEnum};
use collector::ZipkinSpan;
use demo::processes;
use demo::{LocalMesh, MeshConfig, SERVICES, Service, analysis, metrics_demo, waterfall};
use services::access_log::AccessLog;
use tower_trace_headers::Mode;

/// Run the traced mesh locally and show the joined traces.
#[derive(Debug, Parser)]
#[command(name = "demo", version, about)]
struct Cli {
    /// Requests to send.
    #[arg(long, default_value_t = 30)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Write every collected span here, as one Zipkin v2 JSON array.
    #[arg(long, value_name = "PATH")]
    json: Option<std::path::PathBuf>,
    /// Send spans to this OTLP/HTTP collector (base URL, `http://` or `https://`) instead of
    /// the embedded one.
    #[arg(long, value_name = "URL", value_parser = collector_url)]
    collector: Option<String>,
    /// Run every hop through real Envoy proxies (front proxy and sidecars).
    #[arg(long)]
    envoy: bool,
    /// With `--envoy`: percent of item calls sent to item-v2 (which has an injected tail
    /// latency), with a breakdown by version.
    #[arg(long, value_name = "PERCENT", default_value_t = 0, requires = "envoy",
          value_parser = clap::value_parser!(u32).range(0..=100))]
    canary: u32,
    /// With `--envoy`: keep the Envoy configs, logs and access logs in this directory.
    #[arg(long, value_name = "DIR", requires = "envoy")]
    envoy_dir: Option<std::path::PathBuf>,
    /// How applications carry the context: forward the received headers, or add their own
    /// spans.
    #[arg(long, value_enum, default_value_t = ModeArg::Instrument)]
    mode: ModeArg,
    /// Zipkin shared span context (server spans reuse the caller's span id). Alone, or with
    /// a boolean (`true` / `false`, `1` / `0`, ... as the services read it).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", value_name = "BOOL",
          value_parser = services::cli::env_flag)]
    shared_span_context: bool,
    /// Keep the mesh up after the run, print each trace as it completes, stop on Ctrl-C
    /// (with `--envoy`: through the front proxy).
    #[arg(long)]
    serve: bool,
    /// The apps keep their default layers but report no span of their own: they are
    /// transparent. With `--envoy`, Envoy's spans alone join one trace per request; without
    /// it, the load plays an instrumented client and the access logs show one request id
    /// and the client's span id at every hop.
    #[arg(long)]
    no_app_spans: bool,
    /// Run each service in a process of its own and report each one's memory (resident set
    /// size) after a warm-up and at the end.
    #[arg(long, conflicts_with_all = ["envoy", "collector", "serve", "no_app_spans"])]
    processes: bool,
    /// How many waterfalls to print.
    #[arg(long, default_value_t = 3)]
    waterfalls: usize,
    /// Scrape the apps' `/metrics` (and, with `--envoy`, the six Envoys' statistics) with a
    /// real Prometheus (Debian's package, fetched once into target/; `PROMETHEUS_BIN`
    /// overrides), then print the seed's four queries, the apps' p95 by service and route, and
    /// the trace of an exemplar from the slowest bucket. With `--serve`, Prometheus stays up.
    #[arg(long, conflicts_with_all = ["processes", "collector"])]
    prometheus: bool,
    /// Break the trace at SERVICE (frontend or order, the services that call others): its
    /// outgoing calls forward `x-request-id` but lose the trace headers, as a
    /// half-instrumented app does; the summary then says which hop `trace-headers doctor`
    /// names (without it, that the doctor found nothing).
    #[arg(long = "break", value_name = "SERVICE", value_parser = clap::builder::PossibleValuesParser::new(demo::doctor_check::BREAKABLE),
          conflicts_with_all = ["processes", "collector", "no_app_spans"])]
    break_service: Option<String>,
}

/// What a child of `demo --processes` parses: one service and its flags.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModeArg {
    Forward,
    Instrument,
}

fn progress(total: usize) -> impl Fn(usize) + Send + Sync + 'static {
    move |done| {
        if total >= 200 && done < total {
            eprintln!("  sent {done}/{total}");
        }
    }
}

fn print_waterfalls(spans: &[ZipkinSpan], outcomes: &[demo::Outcome], n: usize) {
    let traces = analysis::by_trace(spans);
    let colour = demo::colour();
    // A few distinct routes, in the order they were sent.
    let mut shown = Vec::new();
    for o in outcomes {
        if shown.len() == n {
            break;
        }
        let route = o.path.split('/').nth(1).unwrap_or("").to_owned();
        if shown.iter().any(|(r, _): &(String, _)| *r == route) {
            continue;
        }
        if let Some(t) = o.trace_id.as_ref().and_then(|t| traces.get(t)) {
            shown.push((route, t.clone()));
            println!(
                "GET {}  x-request-id: {}",
                o.path,
                o.request_id.as_deref().unwrap_or("-")
            );
            print!("{}", waterfall::render(t, colour));
            println!();
        }
    }
}

async fn run(args: Cli) -> Result<demo::Summary, demo::BoxError> {
    let mode = match args.mode {
        ModeArg::Forward => Mode::Forward,
        ModeArg::Instrument => Mode::Instrument,
    };
    if args.envoy {
        if args.collector.is_some() {
            return Err("--envoy runs with the embedded collector".into());
        }
        return demo::envoy_mesh::run(&demo::envoy_mesh::DemoOptions {
            requests: args.requests,
            concurrency: args.concurrency,
            mode,
            shared_span_context: args.shared_span_context,
            canary_v2_percent: args.canary,
            baggage_requests: 3,
            waterfalls: args.waterfalls,
            json: args.json,
            dir: args.envoy_dir,
            app_spans: !args.no_app_spans,
            compare: true,
            serve: args.serve,
            prometheus: args.prometheus,
            break_service: args.break_service.clone(),
        })
        .await;
    }
    if args.shared_span_context && mode == Mode::Forward && !args.no_app_spans {
        // Without Envoy the apps' server spans are the trace: in forward mode every hop would
        // send the caller's span id on, and with shared span context every server span would
        // take it.
        return Err(format!("{} (or add --envoy)", services::cli::FORWARD_SHARED).into());
    }
    if args.processes {
        return run_processes(&args, mode).await;
    }
    let semantics = if args.shared_span_context {
        SpanSemantics::Shared
    } else {
        SpanSemantics::Child
    };
    let mesh = LocalMesh::start(MeshConfig {
        collector: args.collector.clone(),
        semantics,
        mode,
        // Every line of the run, for the doctor (a mesh left up keeps the newest).
        access_log: AccessLog::memory_with_capacity(
            args.requests
                .saturating_mul(16)
                .max(services::access_log::MEMORY_LINES),
        ),
        collector_limits: demo::collector_limits(args.requests, 16),
        app_spans: !args.no_app_spans,
        break_service: Service::ALL
            .into_iter()
            .find(|s| Some(s.name()) == args.break_service.as_deref()),
    })
    .await?;
    let base = format!("http://{}", mesh.frontend);
    println!(
        "mesh up: frontend {base}  user {}  order {}  item {}",
        mesh.user, mesh.order, mesh.item
    );
    if let Some(c) = mesh.collector_addr {
        println!("collector: http://{c}/api/v2/traces (Zipkin v2 API; OTLP at /v1/traces)");
    }

    if args.no_app_spans {
        if args.prometheus {
            return Err(
                "--prometheus without --envoy follows exemplars to the apps' traces: drop \
                 --no-app-spans, or add --envoy"
                    .into(),
            );
        }
        return run_transparent(&args, mesh, &base).await;
    }
    let metrics = if args.prometheus {
        let targets = Service::ALL
            .into_iter()
            .filter_map(|s| {
                mesh.admin(s)
                    .map(|admin| metrics_demo::app_target(s.name(), "v1", admin))
            })
            .collect();
        let m = metrics_demo::MetricsDemo::start(targets).await?;
        println!(
            "prometheus {} at {}: scraping the 4 apps every {} s",
            m.prometheus().version(),
            m.prometheus().url(),
            metrics_demo::SCRAPE_INTERVAL.as_secs()
        );
        // Every route once, then a scrape: the load's counts then rise between two scrapes.
        let _ = demo::load(&base, 3, 1, &[], |_| {}).await;
        m.scrapes(1).await;
        Some(m)
    } else {
        None
    };
    let outcomes = demo::load(
        &base,
        args.requests,
        args.concurrency,
        &[],
        progress(args.requests),
    )
    .await;
    mesh.flush().await;

    let spans = match &mesh.collector {
        // Broken on purpose, the traces never join: do not wait for them (the spans are
        // flushed already).
        Some(c) if args.break_service.is_some() => {
            demo::collected(c, &outcomes, Duration::from_millis(500)).await
        }
        Some(c) => demo::collected(c, &outcomes, Duration::from_secs(10)).await,
        None => Vec::new(),
    };

    print_waterfalls(&spans, &outcomes, args.waterfalls);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&spans)?)?;
        println!("wrote {} spans to {}", spans.len(), path.display());
    }

    if let (Some(m), Some(collector)) = (&metrics, &mesh.collector) {
        m.scrapes(2).await;
        print!("{}", m.report(collector, false).await?);
        println!();
    }
    if args.serve {
        if let Some(m) = &metrics {
            println!(
                "metrics: {}/graph (Prometheus, scraping the apps)",
                m.prometheus().url()
            );
        }
        serve(&mesh, &base).await;
    }
    if let Some(m) = metrics {
        m.stop().await;
    }
    let summary = if let Some(collector) = &mesh.collector {
        let mut summary = demo::summarise(&outcomes, &spans, &SERVICES);
        summary.doctor = Some(demo::doctor_check::DoctorCheck::run(
            &collector.spans(),
            &mesh.access_log.lines(),
            &["frontend"],
            args.break_service.as_deref(),
        ));
        summary
    } else {
        println!(
            "spans sent to {}; traces are checked against the embedded collector only",
            args.collector.as_deref().unwrap_or("")
        );
        let mut s = demo::summarise(&outcomes, &[], &SERVICES);
        s.traces = 0;
        s
    };
    let exported = mesh.stop().await;
    println!(
        "spans: {} ended, {} exported, {} dropped",
        exported.ended,
        exported.exported,
        exported.dropped()
    );
    Ok(summary)
}

/// `--no-app-spans` without Envoy: nothing reports a span, so there is no trace to draw.
/// The load plays an instrumented client (a trace and span id of its own per request), and
/// the access logs show what every hop did with it: one request id, and the client's span id
/// at all four services — each hop re-sent exactly the span it received.
async fn run_transparent(
    args: &Cli,
    mesh: LocalMesh,
    base: &str,
) -> Result<demo::Summary, demo::BoxError> {
    let outcomes = demo::load_as_client(
        base,
        args.requests,
        args.concurrency,
        progress(args.requests),
    )
    .await;
    let lines = mesh.access_log.lines();
    let checked = demo::transparency(&lines, &outcomes);
    if let Some(t) = checked.iter().find(|t| t.transparent).or(checked.first()) {
        println!(
            "apps report nothing: a client sent trace {} span {}; the access-log lines of its \
             request (x-request-id {}) at every hop:",
            t.sent.0, t.sent.1, t.request_id
        );
        for (service, trace, span) in &t.hops {
            println!(
                "  {service:<9} trace {}  span {}",
                trace.as_deref().unwrap_or("-"),
                span.as_deref().unwrap_or("-")
            );
        }
        println!();
    }
    if args.serve {
        println!("serving: curl {base}/orders/o-3  (nothing reports spans: see the access logs)");
        println!("Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
    }
    let spans = mesh
        .collector
        .as_ref()
        .map(|c| c.spans())
        .unwrap_or_default();
    let mut summary = demo::summarise(&outcomes, &[], &SERVICES);
    summary.joined = checked.iter().filter(|t| t.transparent).count();
    println!(
        "spans reported: {} (none expected); joined = one request id and the client's span id \
         at all four services",
        spans.len()
    );
    let exported = mesh.stop().await;
    println!(
        "spans: {} ended, {} exported, {} dropped",
        exported.ended,
        exported.exported,
        exported.dropped()
    );
    Ok(summary)
}

/// `--serve`: keep the mesh up, print each trace's waterfall once it is complete, stop on
/// Ctrl-C.
async fn serve(mesh: &LocalMesh, base: &str) {
    println!();
    println!("serving: curl {base}/  |  curl {base}/users/u-2  |  curl {base}/orders/o-3");
    if let Some(c) = mesh.collector_addr {
        println!("traces:  curl http://{c}/api/v2/traces?limit=5");
    }
    println!("Ctrl-C to stop");
    let Some(collector) = mesh.collector.clone() else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    let colour = demo::colour();
    demo::print_traces_until_ctrl_c(&collector, |spans| waterfall::render(spans, colour)).await;
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:.1}", b as f64 / 1_048_576.0),
    )
}

/// `--processes`: the collector here, each service in a child process; RSS per service after a
/// warm-up and after the load.
async fn run_processes(args: &Cli, mode: Mode) -> Result<demo::Summary, demo::BoxError> {
    let run = processes::run(
        &std::env::current_exe()?,
        &processes::LoadOptions {
            requests: args.requests,
            concurrency: args.concurrency,
            mode,
            shared_span_context: args.shared_span_context,
        },
        |line| println!("{line}"),
        progress(args.requests),
    )
    .await?;
    print_waterfalls(&run.spans, &run.outcomes, args.waterfalls);
    println!(
        "memory (RSS, MiB) after {} warm-up requests -> after {} more:",
        run.warm_up, args.requests
    );
    for m in &run.memory {
        let growth = m.growth().map_or_else(
            || "n/a".to_owned(),
            |g| format!("{:+.1}", g as f64 / 1_048_576.0),
        );
        println!(
            "  {:<9} {:>7} -> {:>7}  ({growth})",
            m.service.name(),
            mib(m.before),
            mib(m.after)
        );
    }
    println!(
        "throughput: {:.0} requests/s over {:.1} s at concurrency {}",
        run.throughput(),
        run.elapsed.as_secs_f64(),
        args.concurrency
    );
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&run.spans)?)?;
        println!("wrote {} spans to {}", run.spans.len(), path.display());
    }
    Ok(run.summary())
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(result) = processes::run_child_service().await {
        // A child of `demo --processes`: it ran one service.
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo service: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Cli::parse();
    match run(args).await {
        Ok(summary) => {
            println!("{summary}");
            if summary.as_expected() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--collector`: an absolute `http` / `https` URL with a host (an empty or relative value is
/// refused, not taken for an address).
fn collector_url(value: &str) -> Result<String, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("not a URL ({e}): {value:?}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(value.to_owned()),
        _ => Err(format!(
            "expected an http:// or https:// URL with a host, like http://127.0.0.1:4318: {value:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn collector_urls_are_absolute_http() {
        for ok in [
            "http://127.0.0.1:4318",
            "https://otel.example:4318/",
            "http://collector",
        ] {
            assert_eq!(super::collector_url(ok).as_deref(), Ok(ok));
        }
        for bad in [
            "",
            " ",
            "127.0.0.1:4318",
            "/v1/traces",
            "ftp://host",
            "http://",
        ] {
            assert!(super::collector_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn processes_refuse_what_they_cannot_do() {
        use clap::Parser;
        // The child services always report spans: a flag asking otherwise is an error, not
        // ignored.
        for other in ["--no-app-spans", "--envoy", "--serve"] {
            assert!(
                super::Cli::try_parse_from(["demo", "--processes", other]).is_err(),
                "{other}"
            );
        }
        assert!(super::Cli::try_parse_from(["demo", "--processes"]).is_ok());
    }

    #[test]
    fn shared_span_context_alone_or_with_a_value() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            super::Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
                .unwrap()
                .shared_span_context
        };
        assert!(parse(&["--shared-span-context"]));
        assert!(parse(&["--shared-span-context", "--envoy"]));
        assert!(parse(&["--shared-span-context", "true"]));
        assert!(!parse(&["--shared-span-context", "false"]));
        // As the services read it.
        assert!(parse(&["--shared-span-context", "1"]));
        assert!(!parse(&["--shared-span-context", "off"]));
        assert!(
            super::Cli::try_parse_from(["demo", "--shared-span-context", "ture"]).is_err(),
            "a typo is an error"
        );
        assert!(!parse(&[]));
    }
}
