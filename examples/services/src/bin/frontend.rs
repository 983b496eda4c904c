//! `frontend`: the HTTP/1.1 JSON entry (`/`, `/users/{id}`, `/orders/{id}`), alone; calls
//! `user` and `order` over gRPC.
//!
//! `cargo run --bin frontend -- --listen 127.0.0.1:8080 --user http://127.0.0.1:8081 --order http://127.0.0.1:8082`

use clap::Parser;
use services::cli::{BoxError, FrontendArgs, ServiceCommand};

/// The mesh's HTTP entry: serves `/users/{id}` and `/orders/{id}` as JSON, calling `user` and
/// `order` over gRPC, with the trace context carried into every call.
#[derive(Debug, Parser)]
#[command(name = "frontend", version)]
struct Cli {
    #[command(flatten)]
    args: FrontendArgs,
}

fn main() -> Result<(), BoxError> {
    ServiceCommand::Frontend(Cli::parse().args).main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
