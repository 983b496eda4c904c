//! `collector`: the trace collector alone, for services (or Envoys) on this machine to report
//! to: OTLP/HTTP on `/v1/traces` (protobuf and JSON), Zipkin v2 on `/api/v2/spans`, and the
//! Zipkin v2 query API (`/api/v2/traces`, `/api/v2/trace/{id}`, `/api/v2/services`, ...).
//!
//! ```sh
//! cargo run --release --bin collector -- --listen 127.0.0.1:9411
//! OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:9411 cargo run --release --bin item -- --listen 127.0.0.1:8083
//! curl 'http://127.0.0.1:9411/api/v2/traces?limit=5'
//! ```

use clap::Parser;
use collector::{Collector, CollectorConfig};

/// A trace collector for one machine: OTLP/HTTP and Zipkin v2 in, the Zipkin v2 query API out.
#[derive(Debug, Parser)]
#[command(name = "collector", version, about)]
struct Cli {
    /// Address to listen on (OTLP/HTTP, Zipkin v2 and the query API share it).
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:9411")]
    listen: std::net::SocketAddr,
    /// Spans held; the oldest traces are dropped beyond it.
    #[arg(long, env = "COLLECTOR_MAX_SPANS", default_value_t = CollectorConfig::default().max_spans)]
    max_spans: usize,
    /// About how many bytes the spans held may take; the oldest traces are dropped beyond.
    #[arg(long, env = "COLLECTOR_MAX_BYTES", default_value_t = CollectorConfig::default().max_bytes)]
    max_bytes: usize,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, env = "COLLECTOR_MAX_BODY_BYTES", default_value_t = CollectorConfig::default().max_body_bytes)]
    max_body_bytes: usize,
    /// A client that does not send its request headers within this many milliseconds (or
    /// leaves a connection idle that long) is cut off.
    #[arg(long, env = "COLLECTOR_HEADER_READ_TIMEOUT_MS", default_value_t = 5000)]
    header_read_timeout_ms: u64,
    /// Most connections open at once.
    #[arg(long, env = "COLLECTOR_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let collector = Collector::new(CollectorConfig {
        max_spans: cli.max_spans,
        max_bytes: cli.max_bytes,
        max_body_bytes: cli.max_body_bytes,
        serve: serve::ServeOptions {
            header_read_timeout: std::time::Duration::from_millis(cli.header_read_timeout_ms),
            max_connections: cli.max_connections,
            ..serve::ServeOptions::default()
        },
    });
    // Listening for SIGTERM before saying where we listen: a supervisor that stops us as soon
    // as we are up must not kill us with the signal's default action.
    let stop = serve::stop_signal()?;
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    let addr = listener.local_addr()?;
    eprintln!(
        "collector listening on http://{addr}: OTLP/HTTP /v1/traces, Zipkin v2 /api/v2/spans, \
         query /api/v2/traces"
    );
    collector.serve(listener, stop).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
