//! `order`: the `order.v1.OrderService` gRPC service, alone; calls `item`.
//!
//! `cargo run --bin order -- --listen 127.0.0.1:8082 --item http://127.0.0.1:8083`

use clap::Parser;
use mesh::cli::{BoxError, ServiceArgs, run, shutdown_signal};
use mesh::services::order::Orders;

/// The order service.
#[derive(Debug, Parser)]
#[command(name = "order", version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// The item service (behind Envoy: the sidecar's egress listener).
    #[arg(long, env = "ITEM_ADDR", default_value = "http://127.0.0.1:8083")]
    item: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let opts = cli.service.options("order")?;
    let orders = Orders::new(opts.channel(&cli.item)?);
    let listener = tokio::net::TcpListener::bind(cli.service.listen).await?;
    let server = mesh::services::order::serve(listener, orders, opts.clone(), shutdown_signal());
    run("order", &opts, cli.service.listen, server).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
