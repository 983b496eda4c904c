//! `item`: the `item.v1.ItemService` gRPC service, alone.
//!
//! `cargo run --bin item -- --listen 127.0.0.1:8083 --service-version v2 --tail-fraction 0.1`

use clap::Parser;
use services::cli::{BoxError, ItemArgs, ServiceCommand};

/// The mesh's `item.v1.ItemService` (gRPC): looks items up (v1, or v2 as the canary), with the
/// trace context it receives continued in its spans.
#[derive(Debug, Parser)]
#[command(name = "item", version)]
struct Cli {
    #[command(flatten)]
    args: ItemArgs,
}

fn main() -> Result<(), BoxError> {
    ServiceCommand::Item(Cli::parse().args).main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
