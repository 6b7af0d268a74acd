//! The masters under test: real `chorus serve` processes on loopback, each with its own
//! data dir, its peer port behind a fault proxy, killed on drop.
//!
//! The processes are this very binary re-executed as `chorus-chaos master …`, which
//! runs `chorus serve` through the library's own command line (the `chorus` binary's
//! `main` does nothing more), so the suite needs no separately built `chorus`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus::api::pb;
use chorus::client::{Client, Timeouts};

use crate::proxy::Network;

pub const API_SECRET: &str = "chaos-api-secret";
const CLUSTER_SECRET: &str = "chaos-cluster-secret";
/// A media node silent this long is CRASHED.
pub const NODE_TIMEOUT_MS: u64 = 3_000;

fn free_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// One master.
pub struct Master {
    pub client_addr: String,
    real_peer_addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// The group of masters and the network between them.
pub struct Cluster {
    pub masters: BTreeMap<usize, Master>,
    /// Peer addresses as the membership knows them: the proxies'.
    peers: BTreeMap<usize, String>,
    pub network: Network,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.ids() {
            self.kill(id);
        }
    }
}

impl Cluster {
    /// Starts `n` masters that form a group by themselves.
    pub fn start(n: usize) -> Cluster {
        let network = Network::new();
        let mut peers = BTreeMap::new();
        let mut masters = BTreeMap::new();
        let dir = tempfile::Builder::new()
            .prefix("chorus-chaos-")
            .tempdir()
            .unwrap();
        for id in 1..=n {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            peers.insert(id, listener.local_addr().unwrap().to_string());
            let real = free_addr();
            network.serve(id, listener, real.clone());
            masters.insert(
                id,
                Master {
                    client_addr: free_addr(),
                    real_peer_addr: real,
                    data_dir: dir.path().join(format!("master-{id}")),
                    log: dir.path().join(format!("master-{id}.log")),
                    child: None,
                    paused: false,
                },
            );
        }
        let mut cluster = Cluster {
            masters,
            peers,
            network,
            dir,
        };
        for id in cluster.ids() {
            cluster.launch(id);
        }
        cluster
    }

    pub fn ids(&self) -> Vec<usize> {
        self.masters.keys().copied().collect()
    }

    pub fn running(&self) -> Vec<usize> {
        self.masters
            .iter()
            .filter(|(_, m)| m.child.is_some() && !m.paused)
            .map(|(id, _)| *id)
            .collect()
    }

    fn launch(&mut self, id: usize) {
        let peers: Vec<String> = self.peers.iter().map(|(i, a)| format!("{i}={a}")).collect();
        let master = &self.masters[&id];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&master.log)
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .arg("master")
            .args(["--id", &id.to_string()])
            .args(["--client-addr", &master.client_addr])
            .args(["--peer-addr", &master.real_peer_addr])
            .args(["--advertise-peer-addr", &self.peers[&id]])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&master.data_dir)
            .args(["--node-timeout-ms", &NODE_TIMEOUT_MS.to_string()])
            .args(["--snapshot-logs-since-last", "500"])
            .env("CHORUS_API_SECRET", API_SECRET)
            .env("CHORUS_CLUSTER_SECRET", CLUSTER_SECRET)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.network.set_pid(id, child.id());
        let master = self.masters.get_mut(&id).unwrap();
        master.child = Some(child);
        master.paused = false;
    }

    fn signal(&self, id: usize, signal: i32) {
        if let Some(child) = &self.masters[&id].child {
            // SAFETY: kill(2) on the pid of a child we have not yet reaped.
            unsafe { libc::kill(child.id() as i32, signal) };
        }
    }

    pub fn kill(&mut self, id: usize) {
        self.resume(id);
        if let Some(mut child) = self.masters.get_mut(&id).unwrap().child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Restarts a killed master from its data dir.
    pub fn restart(&mut self, id: usize) {
        if self.masters[&id].child.is_none() {
            self.launch(id);
        }
    }

    pub fn pause(&mut self, id: usize) {
        self.signal(id, libc::SIGSTOP);
        self.masters.get_mut(&id).unwrap().paused = true;
    }

    pub fn resume(&mut self, id: usize) {
        if self.masters[&id].paused {
            self.signal(id, libc::SIGCONT);
            self.masters.get_mut(&id).unwrap().paused = false;
        }
    }

    /// A client of every master, for the workload.
    pub fn client(&self, timeouts: Timeouts) -> Client {
        let endpoints: Vec<&str> = self
            .masters
            .values()
            .map(|m| m.client_addr.as_str())
            .collect();
        Client::with_timeouts(&endpoints, API_SECRET, timeouts).unwrap()
    }

    /// A client of master `id` alone.
    pub fn client_of(&self, id: usize, timeouts: Timeouts) -> Client {
        Client::with_timeouts(&[&self.masters[&id].client_addr], API_SECRET, timeouts).unwrap()
    }

    /// Master `id`'s own status, if it answers within a second.
    pub async fn status(&self, id: usize) -> Option<pb::ClusterStatus> {
        let timeouts = Timeouts {
            attempt: Duration::from_secs(1),
            total: Duration::from_secs(1),
            ..Timeouts::default()
        };
        self.client_of(id, timeouts).cluster_status_of(0).await.ok()
    }

    /// The leader, as the running masters that answer see it (the most common answer).
    pub async fn leader(&self) -> Option<usize> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.running() {
            if let Some(s) = self.status(id).await {
                if s.leader_id != 0 {
                    *votes.entry(s.leader_id).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(id, _)| id as usize)
            .filter(|id| self.running().contains(id))
    }

    /// The tail of every master's log, for failure reports.
    pub fn logs(&self) -> String {
        self.masters
            .iter()
            .map(|(id, m)| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("---- master {id} ----\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// Where the data dirs and logs are.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}
