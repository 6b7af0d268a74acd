//! A 3-member etcd on loopback with its default timings (heartbeat 100 ms, election
//! 1000 ms), for `compare`, and the etcd side of its workloads.
//!
//! The `etcd` binary comes from Debian's `etcd-server` package;
//! `benches/install-etcd.sh` installs it when it is missing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions};

use crate::BenchResult;
use crate::load::Worker;
use crate::procfs::UsageSet;
use chorus_testkit::{Processes, free_port};

const PATIENCE: Duration = Duration::from_secs(60);

struct Member {
    name: String,
    client_url: String,
    peer_url: String,
    data_dir: PathBuf,
    log: PathBuf,
}

/// The members of one etcd cluster, killed on drop.
pub struct Etcd {
    members: BTreeMap<u64, Member>,
    pub(crate) processes: Processes,
    initial_cluster: String,
    _dir: tempfile::TempDir,
}

/// A client of the members at `endpoints` whose requests give up after `timeout`.
pub async fn connect(endpoints: &[String], timeout: Duration) -> BenchResult<Client> {
    let options = ConnectOptions::new()
        .with_timeout(timeout)
        .with_connect_timeout(Duration::from_secs(1));
    Ok(Client::connect(endpoints, Some(options)).await?)
}

impl Etcd {
    /// Starts `n` members and waits until they serve linearizable reads.
    pub async fn start(n: u64) -> BenchResult<Etcd> {
        let binary = which_etcd()?;
        let dir = tempfile::Builder::new()
            .prefix("chorus-bench-etcd-")
            .tempdir()?;
        let mut members = BTreeMap::new();
        for id in 1..=n {
            members.insert(
                id,
                Member {
                    name: format!("m{id}"),
                    client_url: format!("http://127.0.0.1:{}", free_port()),
                    peer_url: format!("http://127.0.0.1:{}", free_port()),
                    data_dir: dir.path().join(format!("m{id}")),
                    log: dir.path().join(format!("m{id}.log")),
                },
            );
        }
        let initial_cluster = members
            .values()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut etcd = Etcd {
            members,
            processes: Processes::default(),
            initial_cluster,
            _dir: dir,
        };
        for id in etcd.ids() {
            etcd.launch(id, &binary)?;
        }
        etcd.converged().await?;
        Ok(etcd)
    }

    pub fn ids(&self) -> Vec<u64> {
        self.members.keys().copied().collect()
    }

    fn launch(&mut self, id: u64, binary: &str) -> BenchResult {
        let m = self.members.get(&id).ok_or("no such member")?;
        // Only the addresses and the cluster are set: every timing is etcd's default.
        let mut command = Command::new(binary);
        command
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &m.client_url])
            .args(["--advertise-client-urls", &m.client_url])
            .args(["--listen-peer-urls", &m.peer_url])
            .args(["--initial-advertise-peer-urls", &m.peer_url])
            .args(["--initial-cluster", &self.initial_cluster])
            .args(["--initial-cluster-token", "chorus-bench"])
            .args(["--initial-cluster-state", "new"]);
        Ok(self.processes.spawn(id, command, m.log.clone())?)
    }

    pub fn endpoint(&self, id: u64) -> String {
        self.members[&id].client_url.clone()
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.ids().into_iter().map(|id| self.endpoint(id)).collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.processes.running()
    }

    pub fn usage(&self) -> UsageSet {
        UsageSet::of(
            self.ids()
                .into_iter()
                .filter_map(|id| Some((id, self.processes.pid(id)?))),
        )
    }

    pub fn restart(&mut self, id: u64) -> BenchResult {
        if !self.processes.is_running(id) {
            self.launch(id, &which_etcd()?)?;
        }
        Ok(())
    }

    /// Member `id`'s view: (its member id, the leader's member id, its raft index).
    async fn status(&self, id: u64) -> Option<(u64, u64, u64)> {
        let mut client = connect(&[self.endpoint(id)], Duration::from_secs(1))
            .await
            .ok()?;
        let status = client.status().await.ok()?;
        Some((
            status.header()?.member_id(),
            status.leader(),
            status.raft_index(),
        ))
    }

    /// Waits until every running member knows the same leader and the same raft index,
    /// and a linearizable read succeeds; returns the leader's id here.
    pub async fn converged(&self) -> BenchResult<u64> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.processes.check_alive()?;
            let mut views = BTreeMap::new();
            for id in self.running() {
                if let Some(view) = self.status(id).await {
                    views.insert(id, view);
                }
            }
            let leaders: Vec<u64> = views.values().map(|v| v.1).collect();
            let indexes: Vec<u64> = views.values().map(|v| v.2).collect();
            let agreed = views.len() == self.running().len()
                && leaders.windows(2).all(|w| w[0] == w[1])
                && indexes.windows(2).all(|w| w[0] == w[1])
                && leaders.first().is_some_and(|l| *l != 0);
            let leader = views.iter().find(|(_, v)| v.0 == v.1).map(|(id, _)| *id);
            if let (true, Some(leader)) = (agreed, leader) {
                let mut client = connect(&self.endpoints(), Duration::from_secs(2)).await?;
                if client.get("converged", None).await.is_ok() {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                return Err(
                    format!("etcd did not converge\n{}", self.processes.logs(Some(10))).into(),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The etcd binary: `$ETCD`, or `etcd` on the PATH or in `/usr/bin`.
fn which_etcd() -> BenchResult<String> {
    if let Ok(path) = std::env::var("ETCD") {
        return Ok(path);
    }
    let on_path = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|dir| PathBuf::from(dir).join("etcd"))
        .find(|p| p.is_file());
    on_path
        .map(|p| p.display().to_string())
        .ok_or_else(|| "no etcd binary: run benches/install-etcd.sh (or set ETCD)".into())
}

/// One etcd client writing or reading with the same shape as its Chorus counterpart.
pub struct EtcdWorker {
    client: Client,
    /// Puts when set: this client's key prefix and the value; gets otherwise.
    write: Option<(String, Vec<u8>)>,
    written: u64,
    /// Keys the reads pick from.
    read_keys: std::sync::Arc<Vec<String>>,
}

impl EtcdWorker {
    /// A client putting `value_bytes`-byte values under keys of its own.
    pub fn writer(client: Client, index: usize, value_bytes: usize) -> EtcdWorker {
        EtcdWorker {
            client,
            write: Some((format!("bench/{index}/"), vec![b'x'; value_bytes])),
            written: 0,
            read_keys: Default::default(),
        }
    }

    /// A client reading `keys` linearizably, at random.
    pub fn reader(client: Client, keys: std::sync::Arc<Vec<String>>) -> EtcdWorker {
        EtcdWorker {
            client,
            write: None,
            written: 0,
            read_keys: keys,
        }
    }
}

impl Worker for EtcdWorker {
    async fn op(&mut self) -> Result<Option<Duration>, String> {
        let started = Instant::now();
        let result = match &self.write {
            Some((prefix, value)) => {
                self.written += 1;
                let key = format!("{prefix}{}", self.written);
                self.client.put(key, value.clone(), None).await.map(drop)
            }
            None => {
                use rand::Rng;
                let i = rand::rng().random_range(0..self.read_keys.len());
                let key = self.read_keys[i].clone();
                self.client.get(key, None).await.map(drop)
            }
        };
        let took = started.elapsed();
        result.map(|()| Some(took)).map_err(|e| e.to_string())
    }
}
