//! `w3c-harness`: the W3C Trace Context test-suite service, with this project's layers doing
//! the propagation.
//!
//! `cargo run --bin w3c-harness -- --listen 127.0.0.1:7777`, then in a checkout of
//! `w3c/trace-context`: `python3 test/test.py http://127.0.0.1:7777/test`.

use clap::Parser;

/// The W3C Trace Context test-suite service.
#[derive(Debug, Parser)]
#[command(name = "w3c-harness", version, about)]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:7777")]
    listen: std::net::SocketAddr,
    /// Export the harness's spans to this OTLP/HTTP collector (base URL); without it they are
    /// printed on standard output.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let cli = Cli::parse();
    let provider = w3c_harness::provider(cli.otlp_endpoint.as_deref())?;
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    eprintln!(
        "w3c-harness listening on http://{}/test",
        listener.local_addr()?
    );
    axum::serve(listener, w3c_harness::router(&provider))
        .with_graceful_shutdown(services::cli::shutdown_signal())
        .await?;
    let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
