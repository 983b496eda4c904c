//! `item`: the `item.v1.ItemService` gRPC service, alone.
//!
//! `cargo run --bin item -- --listen 127.0.0.1:8083 --service-version v2 --tail-fraction 0.1`

use std::time::Duration;

use clap::Parser;
use mesh::cli::{BoxError, ServiceArgs, run, shutdown_signal};
use mesh::services::item::Items;

/// The item service.
#[derive(Debug, Parser)]
#[command(name = "item", version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// Fraction (0..=1) of requests made slower: an injected tail-latency regression.
    #[arg(long, env = "TAIL_FRACTION", default_value_t = 0.0)]
    tail_fraction: f64,
    /// How much slower, in milliseconds.
    #[arg(long, env = "TAIL_MS", default_value_t = 80)]
    tail_ms: u64,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let opts = cli.service.options("item")?;
    let items = Items::new(&cli.service.service_version)
        .with_tail_latency(cli.tail_fraction, Duration::from_millis(cli.tail_ms));
    let listener = tokio::net::TcpListener::bind(cli.service.listen).await?;
    let server = mesh::services::item::serve(listener, items, opts.clone(), shutdown_signal());
    run("item", &opts, cli.service.listen, server).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
