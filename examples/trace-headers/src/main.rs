//! `trace-headers`: decode, encode and convert mesh tracing headers, and find the hop that
//! broke a trace. See `spec/CLI.md` and `DOCTOR.md`.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use b3_propagation::Format;
use clap::{Parser, Subcommand, ValueEnum};
use trace_headers::doctor::{self, Evidence, Query, Source};
use trace_headers::{Headers, convert, decode, decode_text, encode};

/// Decode, encode and convert the tracing headers of an Envoy / Istio mesh; find the hop
/// that broke a trace.
///
/// Formats: b3-single, b3-multi, traceparent, baggage, request-id, ot-span-context,
/// grpc-trace-bin, jaeger. `decode`, `encode` and `convert` print one JSON object on stdout.
#[derive(Debug, Parser)]
#[command(name = "trace-headers", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode headers: context, tracestate, baggage, request id and why anything was rejected.
    Decode {
        /// A header, `Name: value` (repeatable; repeated names are separate field lines).
        /// Values are bytes: what is not UTF-8 reaches the decoders as it is, as on stdin.
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<OsString>,
        /// Also read `Name: value` lines from stdin (`> ` prefixes from `curl -v` are dropped).
        #[arg(long)]
        stdin: bool,
        /// Decode only this format.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Print for people instead of JSON: the context and the header it came from, the
        /// valid headers that lost to it, and each rejected header with the reason.
        #[arg(long)]
        text: bool,
    },
    /// Encode the JSON context read on stdin as the headers of one format.
    Encode {
        /// The format to write.
        #[arg(long, value_enum)]
        format: FormatArg,
    },
    /// Decode headers, then encode the context as another format.
    Convert {
        /// The format to write.
        #[arg(long, value_enum)]
        to: FormatArg,
        /// A header, `Name: value` (repeatable).
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<OsString>,
    },
    /// Find the hop that broke a trace: read spans (and access logs), group them by request
    /// and trace, and name the application or proxy that must change. Exit 0 when no
    /// request is broken, 1 when one is, 2 on unreadable input. See DOCTOR.md.
    Doctor {
        /// An access log (repeatable): the services' JSON lines, Envoy's JSON lines, or
        /// Envoy's default text format.
        #[arg(long = "access-log", value_name = "FILE")]
        access_logs: Vec<PathBuf>,
        /// Print one JSON object: {"requests", "traces", "broken", "findings"}.
        #[arg(long)]
        json: bool,
        /// Most traces to read from a Zipkin API.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// How far back to read from a Zipkin API, in milliseconds (at least 1, as Zipkin
        /// requires).
        #[arg(
            long = "lookback-ms",
            value_name = "MS",
            default_value_t = 3_600_000,
            value_parser = clap::value_parser!(u64).range(1..)
        )]
        lookback_ms: u64,
        /// How long to wait for a Zipkin API, in milliseconds.
        #[arg(long = "timeout-ms", value_name = "MS", default_value_t = 10_000)]
        timeout_ms: u64,
        /// Treat this service as the mesh's edge, besides those recognised (repeatable).
        #[arg(long = "edge", value_name = "SERVICE")]
        edges: Vec<String>,
        /// A Zipkin v2 JSON file (an array of spans, or of traces), `-` for standard input,
        /// or a Zipkin v2 API base URL (`http://host:9411`).
        #[arg(required = true, value_name = "SOURCE")]
        sources: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    B3Single,
    B3Multi,
    Traceparent,
    Baggage,
    RequestId,
    OtSpanContext,
    GrpcTraceBin,
    Jaeger,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Self {
        match f {
            FormatArg::B3Single => Format::B3Single,
            FormatArg::B3Multi => Format::B3Multi,
            FormatArg::Traceparent => Format::TraceParent,
            FormatArg::Baggage => Format::Baggage,
            FormatArg::RequestId => Format::RequestId,
            FormatArg::OtSpanContext => Format::OtSpanContext,
            FormatArg::GrpcTraceBin => Format::GrpcTraceBin,
            FormatArg::Jaeger => Format::Jaeger,
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("trace-headers: {msg}");
    ExitCode::from(2)
}

fn headers_from(args: &[OsString]) -> Result<Headers, ExitCode> {
    let mut h = Headers::default();
    for a in args {
        // Header data is bytes (obs-text is legal in a value): not UTF-8 is the decoders' to
        // judge, as on stdin, not a usage error.
        if let Err(e) = h.push_line(a.as_encoded_bytes()) {
            return Err(usage(&e.to_string()));
        }
    }
    Ok(h)
}

fn read_stdin() -> Result<Vec<u8>, ExitCode> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| usage(&format!("reading stdin: {e}")))?;
    Ok(bytes)
}

/// The doctor's options, from the command line.
struct DoctorArgs {
    access_logs: Vec<PathBuf>,
    json: bool,
    query: Query,
    edges: Vec<String>,
    sources: Vec<String>,
}

/// `doctor`: the report on stdout and its exit code (0 nothing broken, 1 broken), or 2 with
/// a message on stderr when some input cannot be read.
fn doctor(args: DoctorArgs) -> Result<(String, ExitCode), ExitCode> {
    let fail = |e: doctor::DoctorError| {
        eprintln!("trace-headers doctor: {e}");
        ExitCode::from(2)
    };
    let mut evidence = Evidence {
        edges: args.edges,
        ..Evidence::default()
    };
    for arg in &args.sources {
        evidence
            .spans
            .extend(doctor::read_source(&Source::from_arg(arg), &args.query).map_err(fail)?);
    }
    for path in &args.access_logs {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            fail(doctor::DoctorError::new(
                &name,
                format!("cannot read the access log: {e}"),
            ))
        })?;
        let log = doctor::parse_access_log(&String::from_utf8_lossy(&bytes))
            .map_err(|e| fail(e.with_source(name.clone())))?;
        if log.skipped > 0 {
            eprintln!(
                "trace-headers doctor: {name}: skipped {} line(s) in no known access-log format",
                log.skipped
            );
        }
        evidence.logs.extend(log.records);
    }
    let report = doctor::analyse(&evidence);
    let code = if report.is_broken() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    };
    let out = if args.json {
        report.to_json().to_string()
    } else {
        report.to_text().trim_end().to_owned()
    };
    Ok((out, code))
}

fn run(cli: Cli) -> Result<(String, ExitCode), ExitCode> {
    let ok = |v: serde_json::Value| Ok((v.to_string(), ExitCode::SUCCESS));
    match cli.command {
        Command::Decode {
            headers,
            stdin,
            format,
            text,
        } => {
            let mut h = headers_from(&headers)?;
            if stdin {
                for skipped in h.push_text(&read_stdin()?) {
                    eprintln!(
                        "trace-headers: skipped a line that is not 'Name: value': {skipped:?}"
                    );
                }
            }
            if text {
                let out = decode_text(&h, format.map(Format::from));
                return Ok((out.trim_end().to_owned(), ExitCode::SUCCESS));
            }
            ok(decode(&h, format.map(Format::from)))
        }
        Command::Encode { format } => {
            let text = read_stdin()?;
            let input: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| usage(&format!("stdin is not JSON: {e}")))?;
            ok(encode(&input, format.into()).map_err(|e| usage(&e.to_string()))?)
        }
        Command::Convert { to, headers } => ok(convert(&headers_from(&headers)?, to.into())),
        Command::Doctor {
            access_logs,
            json,
            limit,
            lookback_ms,
            timeout_ms,
            edges,
            sources,
        } => doctor(DoctorArgs {
            access_logs,
            json,
            query: Query {
                limit,
                lookback_ms,
                timeout: std::time::Duration::from_millis(timeout_ms),
            },
            edges,
            sources,
        }),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok((out, code)) => {
            // A reader that went away (`| head`) is not an error worth a panic.
            let mut stdout = std::io::stdout().lock();
            match writeln!(stdout, "{out}").and_then(|()| stdout.flush()) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("trace-headers: writing the output: {e}");
                    ExitCode::from(2)
                }
                _ => code,
            }
        }
        Err(code) => code,
    }
}
