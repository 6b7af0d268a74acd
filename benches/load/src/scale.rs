//! `chorus-bench scale`: a cluster loaded with many sessions and connections.
//!
//! Loads `--sessions` sessions with `--connections-per-session` connections each, then
//! reports every master's memory, the snapshot's build time and the data dirs' size,
//! and the time a follower killed with SIGKILL and restarted from its data dir takes to
//! serve a linearizable read at the cluster's applied index.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::Client;

use crate::BenchResult;
use crate::chorus_cluster::Masters;
use crate::load::round;
use crate::procfs::Usage;
use crate::workload::{TIMEOUTS, Via};

#[derive(clap::Args)]
pub struct ScaleArgs {
    #[arg(long, default_value_t = 100_000)]
    sessions: u64,
    #[arg(long, default_value_t = 10)]
    connections_per_session: u64,
    /// Concurrent loading clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Bytes of `server_data` in each connection.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Extra flags for every master, e.g. `--master-args "--event-retention 1"`.
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    master_args: String,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Bytes in the files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Runs `per_client(client, k)` for k = j, j + clients, … below `count` on client j,
/// printing progress; returns the elapsed time.
async fn load<F, Fut>(
    clients: &[Client],
    count: u64,
    what: &'static str,
    per_client: F,
) -> BenchResult<Duration>
where
    F: Fn(Client, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send,
{
    let started = Instant::now();
    let done = Arc::new(AtomicU64::new(0));
    let step = clients.len() as u64;
    let tasks: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(j, client)| {
            let (client, done, per_client) = (client.clone(), done.clone(), per_client.clone());
            tokio::spawn(async move {
                let mut k = j as u64;
                while k < count {
                    per_client(client.clone(), k).await?;
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n % 100_000 == 0 {
                        println!(
                            "  {n} {what} after {:.0} s",
                            started.elapsed().as_secs_f64()
                        );
                    }
                    k += step;
                }
                Ok::<_, tonic::Status>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

pub async fn run(args: ScaleArgs) -> BenchResult {
    let extra: Vec<&str> = args.master_args.split_whitespace().collect();
    let mut masters = Masters::start(3, &extra).await?;
    let clients = masters.target().clients(Via::All, args.clients).await?;
    let sessions = args.sessions;
    let session_time = load(&clients, sessions, "sessions", |client, k| async move {
        let request = pb::CreateSessionRequest {
            custom_session_id: format!("scale-{k}"),
            ..Default::default()
        };
        client.create_session(request).await.map(drop)
    })
    .await?;
    let connections = sessions * args.connections_per_session;
    let server_data = "x".repeat(args.payload_bytes);
    let connection_time = load(&clients, connections, "connections", move |client, k| {
        let request = pb::CreateConnectionRequest {
            session_id: format!("scale-{}", k % sessions),
            server_data: server_data.clone(),
            ..Default::default()
        };
        async move { client.create_connection(request).await.map(drop) }
    })
    .await?;
    println!(
        "loaded {sessions} sessions in {:.1} s ({:.0}/s) and {connections} connections in {:.1} s ({:.0}/s)",
        session_time.as_secs_f64(),
        sessions as f64 / session_time.as_secs_f64(),
        connection_time.as_secs_f64(),
        connections as f64 / connection_time.as_secs_f64(),
    );
    let leader = masters.caught_up().await?;

    let started = Instant::now();
    let snapshot = masters
        .client_of(leader, TIMEOUTS)
        .trigger_snapshot(pb::TriggerSnapshotRequest::default())
        .await?;
    let snapshot_time = started.elapsed();
    println!(
        "snapshot at index {} built and saved by the leader in {:.0} ms",
        snapshot.snapshot_index,
        snapshot_time.as_secs_f64() * 1000.0
    );

    let mut per_master = Vec::new();
    for id in masters.ids() {
        let usage = masters.pid(id).map(Usage::of).unwrap_or_default();
        let data = dir_bytes(masters.data_dir(id));
        println!(
            "master {id}: rss {:.0} MiB, peak rss {:.0} MiB, data dir {:.0} MiB",
            usage.rss_bytes as f64 / MIB,
            usage.peak_rss_bytes as f64 / MIB,
            data as f64 / MIB
        );
        per_master.push(serde_json::json!({
            "id": id,
            "rss_mib": round(usage.rss_bytes as f64 / MIB),
            "peak_rss_mib": round(usage.peak_rss_bytes as f64 / MIB),
            "data_dir_mib": round(data as f64 / MIB),
        }));
    }

    let restarted = masters
        .ids()
        .into_iter()
        .find(|id| *id != leader)
        .ok_or("no follower")?;
    let target_index = masters
        .status(leader)
        .await
        .ok_or("the leader does not answer")?
        .last_applied;
    masters.stop(restarted, libc::SIGKILL)?;
    let started = Instant::now();
    masters.restart(restarted)?;
    serving(&masters, restarted, target_index).await?;
    let restart_time = started.elapsed();
    let usage = masters.pid(restarted).map(Usage::of).unwrap_or_default();
    println!(
        "master {restarted} killed and restarted: serving linearizable reads at index {target_index} after {:.0} ms, rss {:.0} MiB",
        restart_time.as_secs_f64() * 1000.0,
        usage.rss_bytes as f64 / MIB
    );

    let json = serde_json::json!({
        "sessions": sessions,
        "connections": connections,
        "load_writes_per_s": round((sessions + connections) as f64 / (session_time + connection_time).as_secs_f64()),
        "masters": per_master,
        "snapshot_ms": round(snapshot_time.as_secs_f64() * 1000.0),
        "restart_to_serving_ms": round(restart_time.as_secs_f64() * 1000.0),
        "restarted_rss_mib": round(usage.rss_bytes as f64 / MIB),
    });
    println!("{json}");
    Ok(())
}

/// Waits until master `id` answers a linearizable read itself, having applied `index`.
async fn serving(masters: &Masters, id: u64, index: u64) -> BenchResult {
    let deadline = Instant::now() + Duration::from_secs(300);
    let client = masters.client_of(id, TIMEOUTS);
    loop {
        let request = pb::GetSessionRequest {
            session_id: "scale-0".into(),
            consistency: pb::Consistency::Linearizable.into(),
        };
        if client.get_session(request).await.is_ok()
            && masters
                .status(id)
                .await
                .is_some_and(|s| s.last_applied >= index)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("master {id} never served\n{}", masters.logs()).into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
