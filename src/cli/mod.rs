//! The `chorus` subcommands.
//!
//! `serve` runs one master; `dev` runs a local group of masters in one process. The client
//! commands arrive with the client API.

mod dev;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, ServeArgs};

/// Chorus: a highly available control plane for video-conferencing clusters.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one master.
    Serve(Box<ServeArgs>),
    /// Run a local group of masters on loopback, with a temporary data dir.
    Dev(dev::DevArgs),
}

impl Cli {
    /// Runs the chosen subcommand to completion.
    pub async fn run(self) -> ExitCode {
        let result = match self.command {
            Command::Serve(args) => serve(*args).await,
            Command::Dev(args) => dev::run(args).await,
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chorus: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::resolve(&args)?;
    crate::master::run(config, shutdown_signal()).await?;
    Ok(())
}

/// A future that resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed
/// when this is called, not when the future is first polled, so a signal that arrives
/// while the master is still starting is not lost to the default action (death).
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM received"),
                _ = int.recv() => tracing::info!("SIGINT received"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot listen for signals ({e}); stopping only when killed");
                std::future::pending::<()>().await
            }
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
