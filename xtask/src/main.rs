//! `cargo xtask`: the project's chores, in Rust (the `cargo xtask` pattern: an alias in
//! `.cargo/config.toml` runs this binary).
//!
//! - `cargo xtask deploy`: regenerate `deploy/envoy/` and `deploy/k8s/` (Envoy bootstraps,
//!   Kubernetes and Istio manifests) from the one generator, `demo::envoy::deploy_files`;
//! - `cargo xtask deploy --check`: compare only; exit 1 naming every file that drifted.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Project chores.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Regenerate `deploy/envoy/` and `deploy/k8s/` from the generator.
    Deploy {
        /// Only check that the committed files match; exit 1 when they do not.
        #[arg(long)]
        check: bool,
    },
}

/// The workspace root: this crate's parent directory.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn main() -> ExitCode {
    match Cli::parse().task {
        Task::Deploy { check } => {
            let root = root();
            match demo::envoy::sync_deploy(&root, !check) {
                Ok(sync) if sync.is_clean() => {
                    println!("deploy/ matches the generator");
                    ExitCode::SUCCESS
                }
                Ok(sync) => {
                    let verb = if check { "differs" } else { "rewritten" };
                    for f in &sync.changed {
                        println!("{}: {verb}", f.display());
                    }
                    let verb = if check { "stale" } else { "removed" };
                    for f in &sync.stale {
                        println!("{}: {verb}", f.display());
                    }
                    if check {
                        eprintln!("deploy/ is out of date: run `cargo xtask deploy`");
                        ExitCode::FAILURE
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(e) => {
                    eprintln!("xtask deploy: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
