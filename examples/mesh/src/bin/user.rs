//! `user`: the `user.v1.UserService` gRPC service, alone.
//!
//! `cargo run --bin user -- --listen 127.0.0.1:8081 --otlp-endpoint http://127.0.0.1:4318`

use clap::Parser;
use mesh::cli::{BoxError, ServiceArgs, run, shutdown_signal};

/// The user service.
#[derive(Debug, Parser)]
#[command(name = "user", version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let opts = cli.service.options("user")?;
    let listener = tokio::net::TcpListener::bind(cli.service.listen).await?;
    let server = mesh::services::user::serve(listener, opts.clone(), shutdown_signal());
    run("user", &opts, cli.service.listen, server).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
