//! A Chorus cluster for the bench: real `chorus serve` processes on loopback, each with a
//! fresh data dir under one temporary directory, killed on drop.
//!
//! The processes are this binary re-executed as `chorus-bench master …`, which runs
//! `chorus serve` through the library's own command line, exactly as the `chorus` binary
//! does, so the bench needs no separately built `chorus`.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::{Client, Timeouts};
use clap::Parser;

use crate::BenchResult;
use crate::procfs::Usage;
use crate::workload::Target;

const API_SECRET: &str = "bench-api-secret";
const CLUSTER_SECRET: &str = "bench-cluster-secret";
/// How long a started or restarted cluster may take to elect and converge.
const PATIENCE: Duration = Duration::from_secs(60);

/// When this process was started as `chorus-bench master …`, runs the master and
/// returns its exit code.
pub fn run_as_master() -> Option<ExitCode> {
    let mut raw = std::env::args();
    if raw.nth(1).as_deref() != Some("master") {
        return None;
    }
    let args = ["chorus".to_owned(), "serve".to_owned()]
        .into_iter()
        .chain(raw);
    let cli = match chorus::cli::Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    chorus::cli::init_tracing();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    Some(runtime.block_on(cli.run()))
}

fn free_addr() -> std::io::Result<String> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.to_string())
}

/// One master process and where it lives.
struct Master {
    client_addr: String,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// The masters of one cluster.
pub struct Masters {
    masters: BTreeMap<usize, Master>,
    peers: String,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Masters {
    fn drop(&mut self) {
        for master in self.masters.values_mut() {
            if let Some(mut child) = master.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Per-master usage at one moment.
#[derive(Debug, Clone)]
pub struct UsageSet(pub BTreeMap<usize, Usage>);

impl UsageSet {
    /// Milliseconds of CPU, all processes together, per operation.
    pub fn cpu_per_op(&self, ops: u64) -> f64 {
        let cpu: Duration = self.0.values().map(|u| u.cpu).sum();
        cpu.as_secs_f64() * 1000.0 / ops.max(1) as f64
    }

    /// CPU used since `before`; memory as now.
    pub fn since(&self, before: &UsageSet) -> UsageSet {
        UsageSet(
            self.0
                .iter()
                .map(|(id, now)| {
                    let cpu_before = before.0.get(id).map(|u| u.cpu).unwrap_or_default();
                    let usage = Usage {
                        cpu: now.cpu.saturating_sub(cpu_before),
                        ..*now
                    };
                    (*id, usage)
                })
                .collect(),
        )
    }
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
                    child: None,
                },
            );
        }
        let mut cluster = Masters {
            masters,
            peers: peers.join(","),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
            _dir: dir,
        };
        for id in cluster.ids() {
            cluster.launch(id)?;
        }
        cluster.converged().await?;
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
        let master = self.masters.get_mut(&id).ok_or("no such master")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&master.log)?;
        let child = Command::new(std::env::current_exe()?)
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
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        master.child = Some(child);
        Ok(())
    }

    /// Sends `signal` to master `id` and waits for the process to end.
    pub fn stop(&mut self, id: usize, signal: i32) -> BenchResult {
        let master = self.masters.get_mut(&id).ok_or("no such master")?;
        if let Some(mut child) = master.child.take() {
            // SAFETY: kill(2) on the pid of a child not yet reaped.
            unsafe { libc::kill(child.id() as i32, signal) };
            child.wait()?;
        }
        Ok(())
    }

    /// Starts a stopped master again from its data dir.
    pub fn restart(&mut self, id: usize) -> BenchResult {
        if self.masters[&id].child.is_none() {
            self.launch(id)?;
        }
        Ok(())
    }

    pub fn running(&self) -> Vec<usize> {
        self.masters
            .iter()
            .filter(|(_, m)| m.child.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn pid(&self, id: usize) -> Option<u32> {
        self.masters[&id].child.as_ref().map(Child::id)
    }

    pub fn data_dir(&self, id: usize) -> &std::path::Path {
        &self.masters[&id].data_dir
    }

    pub fn client_addr(&self, id: usize) -> &str {
        &self.masters[&id].client_addr
    }

    /// Every running master's CPU time and memory now.
    pub fn usage(&self) -> UsageSet {
        UsageSet(
            self.running()
                .into_iter()
                .filter_map(|id| Some((id, Usage::of(self.pid(id)?))))
                .collect(),
        )
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

    /// An error naming a master whose process ended by itself (a failed bind, a
    /// panic), with the logs, so a start that cannot succeed fails at once.
    fn check_alive(&self) -> BenchResult {
        let ended = self.running().into_iter().find(|id| {
            // Ended but not yet reaped: a zombie, state `Z` after the command name.
            self.pid(*id).is_some_and(|pid| {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let state = stat
                    .rfind(')')
                    .and_then(|i| stat[i + 1..].split_whitespace().next());
                state.is_none_or(|state| state == "Z")
            })
        });
        match ended {
            Some(id) => Err(format!("master {id} exited\n{}", self.logs()).into()),
            None => Ok(()),
        }
    }

    /// Waits until every running master knows the same leader, has applied its whole
    /// log and holds the same state; returns the leader.
    pub async fn converged(&self) -> BenchResult<usize> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.check_alive()?;
            let mut seen: Option<(u64, u64, String)> = None;
            let mut agree = true;
            for id in self.running() {
                match self.status(id).await {
                    Some(s) if s.leader_id != 0 && s.last_applied == s.last_log_index => {
                        let this = (s.leader_id, s.last_applied, s.state_digest);
                        match &seen {
                            None => seen = Some(this),
                            Some(prev) => agree &= *prev == this,
                        }
                    }
                    _ => agree = false,
                }
            }
            if let (true, Some((leader, _, _))) = (agree, seen) {
                return Ok(leader as usize);
            }
            if Instant::now() > deadline {
                return Err(format!("the masters did not converge\n{}", self.logs()).into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until every running master follows the same leader and has applied what
    /// that leader had applied when the wait began; returns the leader. Unlike
    /// [`Masters::converged`], this ends under a steady write load.
    pub async fn caught_up(&self) -> BenchResult<usize> {
        let deadline = Instant::now() + PATIENCE;
        let mut target = None;
        loop {
            self.check_alive()?;
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
        self.masters
            .iter()
            .map(|(id, m)| {
                let text = std::fs::read_to_string(&m.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(10)..].join("\n");
                format!("---- master {id} ----\n{tail}\n")
            })
            .collect()
    }
}
