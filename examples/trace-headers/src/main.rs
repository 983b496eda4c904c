//! `trace-headers`: decode, encode and convert mesh tracing headers. See `spec/CLI.md`.

use std::io::Read;
use std::process::ExitCode;

use b3_propagation::Format;
use clap::{Parser, Subcommand, ValueEnum};
use trace_headers::{Headers, convert, decode, encode};

/// Decode, encode and convert the tracing headers of an Envoy / Istio mesh.
///
/// Formats: b3-single, b3-multi, traceparent, baggage, request-id, ot-span-context,
/// grpc-trace-bin, jaeger. Output is one JSON object on stdout.
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
        #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
        headers: Vec<String>,
        /// Also read `Name: value` lines from stdin (`> ` prefixes from `curl -v` are dropped).
        #[arg(long)]
        stdin: bool,
        /// Decode only this format.
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
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
        headers: Vec<String>,
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

fn headers_from(args: &[String]) -> Result<Headers, ExitCode> {
    let mut h = Headers::default();
    for a in args {
        if let Err(e) = h.push_line(a) {
            return Err(usage(&e.to_string()));
        }
    }
    Ok(h)
}

fn read_stdin() -> Result<String, ExitCode> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .read_to_end(&mut bytes)
        .map_err(|e| usage(&format!("reading stdin: {e}")))?;
    // Keep invalid UTF-8 visible to the codecs as U+FFFD rather than failing.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn run(cli: Cli) -> Result<serde_json::Value, ExitCode> {
    Ok(match cli.command {
        Command::Decode {
            headers,
            stdin,
            format,
        } => {
            let mut h = headers_from(&headers)?;
            if stdin {
                for skipped in h.push_text(&read_stdin()?) {
                    eprintln!("trace-headers: skipped a line without ':': {skipped:?}");
                }
            }
            decode(&h, format.map(Format::from))
        }
        Command::Encode { format } => {
            let text = read_stdin()?;
            let input: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(&format!("stdin is not JSON: {e}")))?;
            encode(&input, format.into()).map_err(|e| usage(&e.to_string()))?
        }
        Command::Convert { to, headers } => convert(&headers_from(&headers)?, to.into()),
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(v) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
