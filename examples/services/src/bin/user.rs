//! `user`: the `user.v1.UserService` gRPC service, alone.
//!
//! `cargo run --bin user -- --listen 127.0.0.1:8081 --otlp-endpoint http://127.0.0.1:4318`

use clap::Parser;
use services::cli::{BoxError, ServiceCommand, UserArgs};

/// The mesh's `user.v1.UserService` (gRPC): looks users up, with the trace context it receives
/// continued in its spans.
#[derive(Debug, Parser)]
#[command(name = "user", version)]
struct Cli {
    #[command(flatten)]
    args: UserArgs,
}

fn main() -> Result<(), BoxError> {
    ServiceCommand::User(Cli::parse().args).main()
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
