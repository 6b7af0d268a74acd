//! A Chorus cluster for the bench: real `chorus serve` processes on loopback, each with a
//! fresh data dir under one temporary directory, killed on drop.
//!
//! The processes are this binary re-executed as `chorus-bench master …`, which runs
//! `chorus serve` through the library's own command line, exactly as the `chorus` binary
//! does, so the bench needs no separately built `chorus`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::{Client, Timeouts};

use crate::BenchResult;
use crate::processes::{Processes, UsageSet};
use crate::workload::Target;

const API_SECRET: &str = "bench-api-secret";
const CLUSTER_SECRET: &str = "bench-cluster-secret";
/// How long a started or restarted cluster may take to elect and converge.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_addr() -> std::io::Result<String> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

/// One master process and where it lives.
struct Master {
    client_addr: String,
    data_dir: PathBuf,
    log: PathBuf,
}

/// The masters of one cluster.
pub struct Masters {
    masters: BTreeMap<usize, Master>,
    pub(crate) processes: Processes,
    peers: String,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Masters {
    /// Starts `n` masters with `extra_args` for `chorus serve` and waits for a leader.
    pub async fn start(n: usize, extra_args: &[&str]) -> BenchResult<Masters> {
        let dir = tempfile::Builder::new().prefix("chorus-bench-").tempdir()?;
        let mut peers = Vec::new();
        let mut masters = BTreeMap::new();
        for id in 1..=n {
            peers.push(format!("{id}={}", free_addr()?));
            masters.insert(
                id,
                Master {
                    client_addr: free_addr()?,
                    data_dir: dir.path().join(format!("master-{id}")),
                    log: dir.path().join(format!("master-{id}.log")),
                },
            );
        }
        let mut cluster = Masters {
            masters,
            processes: Processes::default(),
            peers: peers.join(","),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        };
        for id in cluster.ids() {
            cluster.launch(id)?;
        }
        cluster.caught_up().await?;
        Ok(cluster)
    }

    pub fn ids(&self) -> Vec<usize> {
        self.masters.keys().copied().collect()
    }

    fn launch(&mut self, id: usize) -> BenchResult {
        let peer_addr = self
            .peers
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{id}=")))
            .ok_or("no peer address")?
            .to_owned();
        let master = self.masters.get(&id).ok_or("no such master")?;
        let mut command = Command::new(std::env::current_exe()?);
        command
            .arg("master")
            .args(["--id", &id.to_string()])
            .args(["--client-addr", &master.client_addr])
            .args(["--peer-addr", &peer_addr])
            .args(["--peers", &self.peers])
            .arg("--data-dir")
            .arg(&master.data_dir)
            // Long create-session runs must not stop at the default 100k sessions.
            .args(["--max-sessions", "100000000"])
            .args(&self.extra_args)
            .env("CHORUS_API_SECRET", API_SECRET)
            .env("CHORUS_CLUSTER_SECRET", CLUSTER_SECRET)
            .env(
                "RUST_LOG",
                std::env::var("CHORUS_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            );
        self.processes.spawn(id, command, master.log.clone())
    }

    /// Sends `signal` to master `id` and waits for the process to end.
    pub fn stop(&mut self, id: usize, signal: i32) -> BenchResult {
        self.processes.stop(id, signal)
    }

    /// Starts a stopped master again from its data dir.
    pub fn restart(&mut self, id: usize) -> BenchResult {
        if !self.processes.is_running(id) {
            self.launch(id)?;
        }
        Ok(())
    }

    pub fn running(&self) -> Vec<usize> {
        self.processes.running()
    }

    pub fn pid(&self, id: usize) -> Option<u32> {
        self.processes.pid(id)
    }

    pub fn data_dir(&self, id: usize) -> &std::path::Path {
        &self.masters[&id].data_dir
    }

    pub fn client_addr(&self, id: usize) -> &str {
        &self.masters[&id].client_addr
    }

    /// Every running master's CPU time and memory now.
    pub fn usage(&self) -> UsageSet {
        self.processes.usage()
    }

    /// The whole cluster as a workload target.
    pub fn target(&self) -> Target {
        let endpoints = self.masters.values().map(|m| m.client_addr.clone());
        Target::remote(endpoints.collect(), API_SECRET.to_owned())
    }

    /// A client of master `id` alone.
    pub fn client_of(&self, id: usize, timeouts: Timeouts) -> BenchResult<Client> {
        Ok(Client::with_timeouts(
            &[self.client_addr(id)],
            API_SECRET,
            timeouts,
        )?)
    }

    /// Master `id`'s own status, if it answers within a second.
    pub async fn status(&self, id: usize) -> Option<pb::ClusterStatus> {
        let timeouts = Timeouts {
            attempt: Duration::from_secs(1),
            total: Duration::from_secs(1),
            ..Timeouts::default()
        };
        let client = self.client_of(id, timeouts).ok()?;
        client.cluster_status_of(0).await.ok()
    }

    /// Waits until every running master follows the same leader and has applied what
    /// that leader had applied when the wait began; returns the leader. This ends under
    /// a steady write load too.
    pub async fn caught_up(&self) -> BenchResult<usize> {
        let deadline = Instant::now() + PATIENCE;
        let mut target = None;
        loop {
            self.processes.check_alive()?;
            let mut statuses = Vec::new();
            for id in self.running() {
                statuses.extend(self.status(id).await);
            }
            let leader = statuses
                .iter()
                .find(|s| s.role == "leader")
                .map(|s| (s.id, s.last_applied));
            if let Some((leader, applied)) = leader {
                let target = *target.get_or_insert(applied);
                let all = statuses.len() == self.running().len()
                    && statuses
                        .iter()
                        .all(|s| s.leader_id == leader && s.last_applied >= target);
                if all {
                    return Ok(leader as usize);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("the masters did not catch up\n{}", self.logs()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The tail of every master's log, for failure reports.
    pub fn logs(&self) -> String {
        self.processes.logs()
    }
}
