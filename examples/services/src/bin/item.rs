//! `item`: the `item.v1.ItemService` gRPC service, alone.
//!
//! `cargo run --bin item -- --listen 127.0.0.1:8083 --service-version v2 --tail-fraction 0.1`

use clap::Parser;
use services::cli::{BoxError, ItemArgs, ServiceCommand};

/// The item service.
#[derive(Debug, Parser)]
#[command(name = "item", version, about)]
struct Cli {
    #[command(flatten)]
    args: ItemArgs,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    ServiceCommand::Item(Cli::parse().args).run().await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
