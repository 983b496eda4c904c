//! `order`: the `order.v1.OrderService` gRPC service, alone; calls `item`.
//!
//! `cargo run --bin order -- --listen 127.0.0.1:8082 --item http://127.0.0.1:8083`

use clap::Parser;
use services::cli::{BoxError, OrderArgs, ServiceCommand};

/// The mesh's `order.v1.OrderService` (gRPC): gets and lists orders, calling `item` for each line
/// with the trace context carried into every call.
#[derive(Debug, Parser)]
#[command(name = "order", version)]
struct Cli {
    #[command(flatten)]
    args: OrderArgs,
}

fn main() -> Result<(), BoxError> {
    ServiceCommand::Order(Cli::parse().args).main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
