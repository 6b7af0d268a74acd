//! The `chorus` subcommands.
//!
//! `serve` runs one master; `dev` runs a local group of masters in one process; the
//! client commands (`cluster`, `session`, `connection`, `node`, `license`) call the API
//! of a running cluster through [`crate::client`].

mod agent;
mod client;
mod dev;
mod license;
mod log_rate;
mod output;

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
    /// Inspect and change the group of masters.
    Cluster(client::ClusterArgs),
    /// Create, show, list and delete sessions.
    Session(client::SessionArgs),
    /// Create, show, list, join and delete connections.
    Connection(client::ConnectionArgs),
    /// Register and manage media nodes.
    Node(client::NodeArgs),
    /// Watch what happens in the cluster (OpenVidu's webhook events).
    Events(client::EventsArgs),
    /// Start, stop, show, list and delete recordings.
    Recording(client::RecordingArgs),
    /// The license: cluster status, and offline license files.
    License(license::LicenseArgs),
    /// Run a license authority that checks license keys from a file.
    LicenseAuthority(license::AuthorityArgs),
    /// Run the sidecar of a media node: register, heartbeat, drain on SIGTERM.
    Agent(agent::AgentArgs),
}

impl Cli {
    /// What a binary's `main` does with its parsed arguments: starts tracing and a tokio
    /// runtime, and runs the chosen subcommand to completion on it.
    pub fn run_blocking(self) -> ExitCode {
        init_tracing();
        match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(self.run()),
            Err(e) => {
                eprintln!("chorus: cannot start the runtime: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// Runs the chosen subcommand to completion.
    pub async fn run(self) -> ExitCode {
        let called = match self.command {
            Command::Serve(args) => {
                return_large_blocks_to_the_os();
                serve(*args).await
            }
            Command::Dev(args) => {
                return_large_blocks_to_the_os();
                dev::run(args).await
            }
            Command::Cluster(args) => args.run().await.map_err(Into::into),
            Command::Session(args) => args.run().await.map_err(Into::into),
            Command::Connection(args) => args.run().await.map_err(Into::into),
            Command::Node(args) => args.run().await.map_err(Into::into),
            Command::Events(args) => args.run().await.map_err(Into::into),
            Command::Recording(args) => args.run().await.map_err(Into::into),
            Command::License(args) => args.run().await.map_err(Into::into),
            Command::Agent(args) => args.run().await.map_err(Into::into),
            Command::LicenseAuthority(args) => args.run().await,
        };
        let result = called.map_err(|e| match e.downcast::<tonic::Status>() {
            Ok(status) => format!("{}: {}", code_name(status.code()), status.message()).into(),
            Err(other) => other,
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("chorus: {e}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The canonical name of a gRPC status code, as other gRPC tools print it.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

async fn serve(args: ServeArgs) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::resolve(&args)?;
    crate::master::run(config, shutdown_signal()).await?;
    Ok(())
}

/// Makes glibc serve every allocation of 256 KiB or more with its own mapping, given back
/// to the OS when freed; for a process that runs masters (`serve`, `dev`). By default glibc raises that threshold to the size of the
/// largest block freed so far: after a master's first snapshot, its 1 MiB chunks came
/// from the heap, and the heap kept their memory. At 1M connections that held 120 to
/// 370 MiB per master after every snapshot (see BENCHMARKS.md, "Scale").
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tuning parameter; it is thread-safe.
    unsafe {
        const THRESHOLD: libc::c_int = 256 * 1024;
        if libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD) != 1 {
            tracing::warn!(
                "glibc refused M_MMAP_THRESHOLD; freed snapshot memory may stay resident"
            );
        }
    }
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

/// For test harnesses that run masters (and agents) as copies of their own binary: when
/// this process was started as `<binary> master <serve flags>` or `<binary> agent
/// <agent flags>`, runs `chorus serve` or `chorus agent` with those flags, exactly as
/// the `chorus` binary would, and returns its exit code.
pub fn run_if_master() -> Option<ExitCode> {
    let mut raw = std::env::args();
    let command = match raw.nth(1).as_deref() {
        Some("master") => "serve",
        Some("agent") => "agent",
        _ => return None,
    };
    let args = ["chorus".to_owned(), command.to_owned()]
        .into_iter()
        .chain(raw);
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    Some(cli.run_blocking())
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    tracing_subscriber::registry()
        .with(filter)
        .with(log_rate::LogRate::default())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}
