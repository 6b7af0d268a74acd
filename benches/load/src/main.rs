//! `chorus-bench`: Chorus's load generator.
//!
//! ```text
//! cargo run --release -p chorus-bench -- <workload> [--clients C] [--seconds S] …
//! cargo run --release -p chorus-bench -- failover --signal kill|term [--rounds R]
//! cargo run --release -p chorus-bench -- compare --clients C --seconds S
//! cargo run --release -p chorus-bench -- scale [--sessions N] [--connections-per-session K]
//! ```
//!
//! Workloads run against a cluster the bench starts itself (3 or 5 real `chorus serve`
//! processes on loopback, fresh data dirs; the processes are this binary re-executed as
//! `chorus-bench master …`) or against `--endpoints`. Every run prints what it measured
//! and ends with one JSON object on its own line, for scripts.

mod chorus_cluster;
mod etcd;
mod failover;
mod load;
mod procfs;
mod recording;
mod scale;
mod workload;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::chorus_cluster::Masters;
use crate::workload::{Shape, Via};

#[derive(Parser)]
#[command(
    name = "chorus-bench",
    about = "Load, failover and scale benchmarks for Chorus"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CreateSession: one new session per operation.
    CreateSession(LoadArgs),
    /// CreateConnection into a few sessions per client.
    CreateConnection(LoadArgs),
    /// JoinConnection of pending connections created beforehand.
    Join(LoadArgs),
    /// Linearizable GetSession of existing sessions.
    Get(LoadArgs),
    /// Stale (local) GetSession of existing sessions.
    StaleGet(LoadArgs),
    /// A session's life: create, 2 connections, 2 joins, 4 linearizable gets, delete.
    Mix(LoadArgs),
    /// A stale GetSession on a new connection each time (TCP, and TLS with --cacert).
    Reconnect(LoadArgs),
    /// CreateSession through the OpenVidu REST API (HTTP/1.1, one kept-alive
    /// connection per client).
    RestCreateSession(LoadArgs),
    /// CreateConnection through the OpenVidu REST API.
    RestCreateConnection(LoadArgs),
    /// Time from killing the leader to the first write through a surviving master.
    Failover(failover::FailoverArgs),
    /// The same shapes and failover against a 3-member etcd and a 3-master Chorus.
    Compare(failover::CompareArgs),
    /// Load many sessions and connections; memory, snapshot and restart figures.
    Scale(scale::ScaleArgs),
    /// Recording start time, and restart after its media node is SIGKILLed.
    Recording(recording::RecordingArgs),
}

/// Arguments shared by every workload.
#[derive(Args, Clone)]
pub struct LoadArgs {
    /// Concurrent clients, each with its own connections and one request in flight.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// How long the measured phase lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Masters to start when no `--endpoints` are given: 3 or 5.
    #[arg(long, default_value_t = 3)]
    masters: usize,
    /// Run against these masters (`host:port,…`) instead of starting a cluster.
    #[arg(long, value_delimiter = ',')]
    endpoints: Vec<String>,
    /// The HTTP ports of `--endpoints`' masters, in the same order (REST workloads).
    #[arg(long, value_delimiter = ',')]
    http_endpoints: Vec<String>,
    /// The API secret of `--endpoints`.
    #[arg(long, env = "CHORUS_API_SECRET", hide_env_values = true)]
    api_secret: Option<String>,
    /// Which master each client talks to first: `all` spreads clients over the
    /// masters, `leader` and `follower` aim every client at one of that role.
    #[arg(long, value_enum, default_value_t = Via::All)]
    via: Via,
    /// Bytes of `server_data` in each CreateConnection.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// CA of the masters' client-port certificates: clients speak TLS (the masters'
    /// `--tls-cert`/`--tls-key` go in --master-args).
    #[arg(long, env = "CHORUS_CACERT")]
    cacert: Option<std::path::PathBuf>,
    /// Extra `chorus serve` flags for the masters the bench starts, e.g.
    /// `--master-args "--snapshot-logs-since-last 100000"`.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    master_args: String,
    /// Start a webhook receiver in this process and point the masters at it: the
    /// report adds events delivered, the delivery lag (proposal → receiver) and how
    /// long the webhook took to catch up after the load.
    #[arg(long)]
    webhook: bool,
}

fn main() -> ExitCode {
    if let Some(code) = chorus::cli::run_if_master() {
        return code;
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async move {
        match cli.command {
            Command::CreateSession(args) => run_workload(Shape::CreateSession, args).await,
            Command::CreateConnection(args) => run_workload(Shape::CreateConnection, args).await,
            Command::Join(args) => run_workload(Shape::Join, args).await,
            Command::Get(args) => run_workload(Shape::Get, args).await,
            Command::StaleGet(args) => run_workload(Shape::StaleGet, args).await,
            Command::Mix(args) => run_workload(Shape::Mix, args).await,
            Command::Reconnect(args) => run_workload(Shape::Reconnect, args).await,
            Command::RestCreateSession(args) => run_workload(Shape::RestCreateSession, args).await,
            Command::RestCreateConnection(args) => {
                run_workload(Shape::RestCreateConnection, args).await
            }
            Command::Failover(args) => failover::run(args).await,
            Command::Compare(args) => failover::compare(args).await,
            Command::Scale(args) => scale::run(args).await,
            Command::Recording(args) => recording::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chorus-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

pub type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs one workload against the given or a fresh cluster and prints its report.
async fn run_workload(shape: Shape, args: LoadArgs) -> BenchResult {
    let receiver = if args.webhook {
        if !args.endpoints.is_empty() {
            return Err("--webhook needs masters the bench starts (no --endpoints)".into());
        }
        Some(chorus_testkit::WebhookReceiver::start(None).await?)
    } else {
        None
    };
    let masters = if args.endpoints.is_empty() {
        {
            let mut extra: Vec<String> = args
                .master_args
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if let Some(receiver) = &receiver {
                extra.extend(["--webhook-endpoint".into(), receiver.url()]);
            }
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            Some(Masters::start_with_ca(args.masters as u64, &extra, args.cacert.clone()).await?)
        }
    } else {
        None
    };
    let target = match &masters {
        Some(masters) => masters.target(),
        None => workload::Target::remote(
            args.endpoints.clone(),
            args.api_secret
                .clone()
                .ok_or("--endpoints needs --api-secret or CHORUS_API_SECRET")?,
        )
        .with_http(args.http_endpoints.clone()),
    }
    .with_ca(args.cacert.as_deref())?;
    let usage_before = masters.as_ref().map(Masters::usage);
    let plan = workload::Plan {
        shape,
        via: args.via,
        clients: args.clients,
        duration: Duration::from_secs(args.seconds),
        payload_bytes: args.payload_bytes,
    };
    let report = workload::run(&target, plan).await?;
    let usage = masters
        .as_ref()
        .zip(usage_before)
        .map(|(m, before)| m.usage().since(&before));
    report.print(shape.name(), args.clients, usage.as_ref());
    if let (Some(receiver), Some(masters)) = (&receiver, &masters) {
        report_webhook(receiver, masters).await?;
    }
    Ok(())
}

/// How long the webhook may take to catch up after the load before the bench gives up.
const WEBHOOK_CATCH_UP: Duration = Duration::from_secs(120);

/// Waits (bounded) for the webhook to deliver the last event, then prints what it
/// delivered and with what lag.
pub async fn report_webhook(
    receiver: &chorus_testkit::WebhookReceiver,
    masters: &Masters,
) -> BenchResult {
    let ended = std::time::Instant::now();
    let last = masters.last_event_id().await?;
    let backlog = last.saturating_sub(
        receiver
            .accepted()
            .iter()
            .map(|d| d.event_id)
            .max()
            .unwrap_or(0),
    );
    let caught_up = tokio::time::timeout(
        WEBHOOK_CATCH_UP,
        receiver.wait_for(|d| d.iter().any(|d| d.event_id >= last)),
    )
    .await
    .is_ok();
    let catch_up = ended.elapsed();
    let deliveries = receiver.accepted();
    let mut lags: Vec<u64> = deliveries
        .iter()
        .map(|d| d.received_ms.saturating_sub(d.timestamp))
        .collect();
    lags.sort_unstable();
    let at = |q: f64| {
        lags.get(((lags.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0)
    };
    let mut seen = std::collections::BTreeSet::new();
    let repeats = deliveries
        .iter()
        .filter(|d| !seen.insert(d.event_id))
        .count();
    println!(
        "webhook: {} events delivered ({repeats} repeats), lag p50 {} ms p99 {} ms max {} ms; \
         backlog at the end of the load {backlog}, caught up {} in {:.1} s",
        seen.len(),
        at(0.5),
        at(0.99),
        lags.last().copied().unwrap_or(0),
        if caught_up { "" } else { "NOT" },
        catch_up.as_secs_f64()
    );
    Ok(())
}
