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
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let listener = tokio::net::TcpListener::bind(cli.listen).await?;
    eprintln!(
        "w3c-harness listening on http://{}/test",
        listener.local_addr()?
    );
    axum::serve(listener, mesh::w3c::router())
        .with_graceful_shutdown(mesh::cli::shutdown_signal())
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
