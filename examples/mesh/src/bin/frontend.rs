//! `frontend`: the HTTP/1.1 JSON entry (`/`, `/users/{id}`, `/orders/{id}`), alone; calls
//! `user` and `order` over gRPC.
//!
//! `cargo run --bin frontend -- --listen 127.0.0.1:8080 --user http://127.0.0.1:8081 --order http://127.0.0.1:8082`

use clap::Parser;
use mesh::cli::{BoxError, ServiceArgs, run, shutdown_signal};
use mesh::services::frontend::Frontend;

/// The frontend.
#[derive(Debug, Parser)]
#[command(name = "frontend", version, about)]
struct Cli {
    #[command(flatten)]
    service: ServiceArgs,
    /// The user service (behind Envoy: the sidecar's egress listener).
    #[arg(long, env = "USER_ADDR", default_value = "http://127.0.0.1:8081")]
    user: String,
    /// The order service (behind Envoy: the sidecar's egress listener).
    #[arg(long, env = "ORDER_ADDR", default_value = "http://127.0.0.1:8082")]
    order: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let cli = Cli::parse();
    let opts = cli.service.options("frontend")?;
    let frontend = Frontend::new(opts.channel(&cli.user)?, opts.channel(&cli.order)?);
    let listener = tokio::net::TcpListener::bind(cli.service.listen).await?;
    let server =
        mesh::services::frontend::serve(listener, frontend, opts.clone(), shutdown_signal());
    run("frontend", &opts, cli.service.listen, server).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
