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

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
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
