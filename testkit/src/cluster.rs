//! A group of real `chorus serve` processes on loopback: each master with its own data
//! dir and log under one temporary directory, ports from [`free_port`], optionally its
//! peer port behind a fault proxy, killed on drop.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::{Client, Timeouts};

use crate::port::{free_addr, free_listener};
use crate::process::Processes;
use crate::proxy::Network;

/// The executable that runs a master, and the arguments before `chorus serve`'s flags.
#[derive(Debug, Clone)]
pub struct Program {
    pub path: PathBuf,
    pub args: Vec<String>,
}

impl Program {
    /// The `chorus` binary at `path` (an integration test's `CARGO_BIN_EXE_chorus`).
    pub fn chorus(path: impl Into<PathBuf>) -> Program {
        Program {
            path: path.into(),
            args: vec!["serve".into()],
        }
    }

    /// The running executable itself, re-executed as `<exe> <subcommand> …`: a harness
    /// binary (the chaos suite, the load generator) whose `subcommand` runs `chorus
    /// serve` through the library's own command line, so it needs no separately built
    /// `chorus`.
    pub fn current_exe(subcommand: &str) -> io::Result<Program> {
        Ok(Program {
            path: std::env::current_exe()?,
            args: vec![subcommand.into()],
        })
    }
}

/// How the masters of a [`Cluster`] are started.
#[derive(Debug, Clone)]
pub struct Options {
    pub program: Program,
    /// The application secret.
    pub api_secret: String,
    /// The operator secret, which [`Cluster::client`] presents (it opens every role).
    pub operator_secret: String,
    /// The key of media-node tokens.
    pub node_secret: String,
    pub cluster_secret: String,
    /// The CA of the masters' client-port certificates, when they serve TLS (their
    /// `--tls-cert` and `--tls-key` go in `extra_args`): clients then speak TLS.
    pub client_ca: Option<PathBuf>,
    /// Put every master's peer port behind a proxy of [`Cluster::network`] (the
    /// addresses in `--peers` are the proxies'), so that links can be cut or delayed.
    /// Needs a tokio runtime.
    pub proxied: bool,
    /// More `chorus serve` flags, e.g. limits and timeouts.
    pub extra_args: Vec<String>,
    /// The masters' `RUST_LOG`.
    pub log_filter: String,
    /// The prefix of the temporary directory holding data dirs and logs.
    pub dir_prefix: String,
}

impl Options {
    pub fn new(program: Program) -> Options {
        Options {
            program,
            api_secret: "testkit-api-secret".into(),
            operator_secret: "testkit-operator-secret".into(),
            node_secret: "testkit-node-secret".into(),
            cluster_secret: "testkit-cluster-secret".into(),
            client_ca: None,
            proxied: false,
            extra_args: Vec::new(),
            log_filter: "info,openraft=warn".into(),
            dir_prefix: "chorus-".into(),
        }
    }
}

/// Where one master lives.
#[derive(Debug, Clone)]
pub struct Master {
    pub id: u64,
    pub client_addr: String,
    /// Its HTTP port (the OpenVidu REST API, probes).
    pub http_addr: String,
    /// The address the master binds for its peer port.
    pub peer_addr: String,
    /// The address the others reach it at: its proxy's if proxied, else `peer_addr`.
    pub listed_peer_addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

/// The masters, their processes and the network between them.
pub struct Cluster {
    pub masters: BTreeMap<u64, Master>,
    pub options: Options,
    /// The proxies on the peer links (idle unless [`Options::proxied`]).
    pub network: Network,
    processes: Processes,
    /// The members named in `--peers`: the masters started with the cluster.
    peers: BTreeMap<u64, String>,
    /// Commands a master's program is started under (see [`Cluster::wrap`]).
    wrappers: BTreeMap<u64, Vec<String>>,
    dir: tempfile::TempDir,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.network.close();
    }
}

impl Cluster {
    /// Starts masters `1..=n`, each listing all of them in `--peers`.
    pub fn start(n: u64, options: Options) -> io::Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix(&options.dir_prefix)
            .tempdir()?;
        let mut cluster = Cluster {
            masters: BTreeMap::new(),
            options,
            network: Network::new(),
            processes: Processes::default(),
            peers: BTreeMap::new(),
            wrappers: BTreeMap::new(),
            dir,
        };
        for id in 1..=n {
            let master = cluster.place(id)?;
            cluster.peers.insert(id, master.listed_peer_addr.clone());
            cluster.masters.insert(id, master);
        }
        for id in 1..=n {
            cluster.launch(id)?;
        }
        Ok(cluster)
    }

    /// Starts master `id`, not in `--peers` (a joiner to add with AddLearner), and
    /// returns the peer address the others reach it at.
    pub fn spawn_joiner(&mut self, id: u64) -> io::Result<String> {
        assert!(!self.masters.contains_key(&id), "master {id} exists");
        let master = self.place(id)?;
        let listed = master.listed_peer_addr.clone();
        self.masters.insert(id, master);
        self.launch(id)?;
        Ok(listed)
    }

    /// Addresses, data dir and log for master `id`, and its proxy if proxied.
    fn place(&self, id: u64) -> io::Result<Master> {
        let peer_addr = free_addr();
        let listed_peer_addr = if self.options.proxied {
            let listener = free_listener();
            let listed = listener.local_addr()?.to_string();
            self.network.serve(id, listener, peer_addr.clone());
            listed
        } else {
            peer_addr.clone()
        };
        Ok(Master {
            id,
            client_addr: free_addr(),
            http_addr: free_addr(),
            peer_addr,
            listed_peer_addr,
            data_dir: self.dir.path().join(format!("master-{id}")),
            log: self.dir.path().join(format!("master-{id}.log")),
        })
    }

    fn launch(&mut self, id: u64) -> io::Result<()> {
        let master = &self.masters[&id];
        let peers: Vec<String> = self.peers.iter().map(|(i, a)| format!("{i}={a}")).collect();
        let options = &self.options;
        let mut command = match self.wrappers.get(&id) {
            Some(wrapper) => {
                let mut command = Command::new(&wrapper[0]);
                command.args(&wrapper[1..]).arg(&options.program.path);
                command
            }
            None => Command::new(&options.program.path),
        };
        command
            .args(&options.program.args)
            .args(["--id", &id.to_string()])
            .args(["--client-addr", &master.client_addr])
            .args(["--http-addr", &master.http_addr])
            .args(["--peer-addr", &master.peer_addr])
            .args(["--advertise-peer-addr", &master.listed_peer_addr])
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&master.data_dir)
            .args(&options.extra_args)
            .env("CHORUS_API_SECRET", &options.api_secret)
            .env("CHORUS_OPERATOR_SECRET", &options.operator_secret)
            .env("CHORUS_NODE_SECRET", &options.node_secret)
            .env("CHORUS_CLUSTER_SECRET", &options.cluster_secret)
            .env("RUST_LOG", &options.log_filter);
        self.processes.spawn(id, command, master.log.clone())?;
        if let Some(pid) = self.processes.pid(id) {
            self.network.set_pid(id, pid);
        }
        Ok(())
    }

    /// From its next start on, master `id` runs as `wrapper… <program> <args>` (e.g.
    /// under `nsenter`, to see a file system mounted in another namespace).
    pub fn wrap(&mut self, id: u64, wrapper: Vec<String>) {
        assert!(!wrapper.is_empty(), "an empty wrapper");
        self.wrappers.insert(id, wrapper);
    }

    /// Master `id` starts as its program alone again.
    pub fn unwrap(&mut self, id: u64) {
        self.wrappers.remove(&id);
    }

    /// Starts a stopped master again from its data dir (no-op if it is running).
    pub fn restart(&mut self, id: u64) -> io::Result<()> {
        if self.processes.is_running(id) {
            return Ok(());
        }
        self.launch(id)
    }

    /// The members named in `--peers` (the masters started with the cluster, not the
    /// joiners), at the addresses the others reach them.
    pub fn peers(&self) -> &BTreeMap<u64, String> {
        &self.peers
    }

    /// Every master ever started, running or not.
    pub fn ids(&self) -> Vec<u64> {
        self.masters.keys().copied().collect()
    }

    /// The masters running and not paused.
    pub fn running(&self) -> Vec<u64> {
        self.processes.running()
    }

    /// Whether master `id` runs (paused or not).
    pub fn is_running(&self, id: u64) -> bool {
        self.processes.is_running(id)
    }

    pub fn pid(&self, id: u64) -> Option<u32> {
        self.processes.pid(id)
    }

    pub fn client_addr(&self, id: u64) -> &str {
        &self.masters[&id].client_addr
    }

    /// Master `id`'s HTTP port, host:port.
    pub fn http_addr(&self, id: u64) -> &str {
        &self.masters[&id].http_addr
    }

    pub fn data_dir(&self, id: u64) -> &Path {
        &self.masters[&id].data_dir
    }

    /// Where the data dirs and logs are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// SIGKILLs master `id` (no-op if it is not running).
    pub fn kill(&mut self, id: u64) {
        self.processes.kill(id);
    }

    /// Sends `signal` to master `id` without waiting.
    pub fn signal(&self, id: u64, signal: i32) -> io::Result<()> {
        self.processes.signal(id, signal)
    }

    /// Sends `signal` to master `id` and waits for it to end.
    pub fn stop(&mut self, id: u64, signal: i32) -> io::Result<ExitStatus> {
        self.processes.stop(id, signal)
    }

    /// Waits for master `id`, already signalled, to end.
    pub fn reap(&mut self, id: u64) -> io::Result<ExitStatus> {
        self.processes.reap(id)
    }

    /// SIGSTOPs master `id`: it keeps its sockets and answers nothing.
    pub fn pause(&mut self, id: u64) {
        self.processes.pause(id);
    }

    pub fn resume(&mut self, id: u64) {
        self.processes.resume(id);
    }

    /// The exit status, if master `id` has exited (it is then reaped).
    pub fn try_exit_status(&mut self, id: u64) -> Option<ExitStatus> {
        self.processes.try_exit_status(id)
    }

    /// Waits up to `patience` for master `id` to exit on its own.
    pub async fn exit_status(&mut self, id: u64, patience: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + patience;
        loop {
            if let Some(status) = self.try_exit_status(id) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(io::Error::other(format!("master {id} kept running")));
            }
            // A child's exit cannot be awaited through std: poll it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lowers master `id`'s open-file limit to `n` descriptors.
    pub fn limit_open_files(&self, id: u64, n: u64) -> io::Result<()> {
        self.processes.limit_open_files(id, n)
    }

    /// An error naming a master that exited by itself, with the logs.
    pub fn check_alive(&self) -> Result<(), String> {
        self.processes.check_alive()
    }

    /// Master `id`'s whole log so far.
    pub fn log(&self, id: u64) -> String {
        self.processes.log(id)
    }

    /// Every master's log, or its last `tail` lines, for failure reports.
    pub fn logs(&self, tail: Option<usize>) -> String {
        self.processes.logs(tail)
    }

    /// A client of masters `ids`, tried in that order, presenting the operator secret.
    pub fn client(&self, ids: &[u64], timeouts: Timeouts) -> Client {
        self.client_presenting(ids, timeouts, &self.options.operator_secret)
    }

    /// A client of masters `ids` presenting `credential` (the application secret, a
    /// media-node token…), over TLS when [`Options::client_ca`] is set.
    pub fn client_presenting(&self, ids: &[u64], timeouts: Timeouts, credential: &str) -> Client {
        let endpoints: Vec<&str> = ids.iter().map(|id| self.client_addr(*id)).collect();
        let tls = self.options.client_ca.as_ref().map(|ca| {
            chorus::tls::client_config(Some(ca), None).expect("the client CA is a certificate")
        });
        Client::with_tls(&endpoints, credential, timeouts, tls)
            .expect("the masters' client addresses are valid endpoints")
    }

    /// A client of every master.
    pub fn client_all(&self, timeouts: Timeouts) -> Client {
        self.client(&self.ids(), timeouts)
    }

    /// Sets failpoint `name` of master `id` to `actions` ("off" removes it; see
    /// `chorus::failpoint`). The masters must be built with the `failpoints` feature
    /// (this kit's feature of the same name), or this is UNIMPLEMENTED. It speaks plain
    /// text to the peer port: not for masters whose peer port is mutual TLS.
    pub async fn failpoint(&self, id: u64, name: &str, actions: &str) -> Result<(), String> {
        use chorus::network::pb::{SetFailpointRequest, failpoints_client::FailpointsClient};
        let addr = format!("http://{}", self.masters[&id].peer_addr);
        let endpoint = tonic::transport::Endpoint::from_shared(addr)
            .map_err(|e| e.to_string())?
            .connect_timeout(Duration::from_secs(1))
            .timeout(Duration::from_secs(2));
        // A master just started may not listen yet.
        let deadline = Instant::now() + Duration::from_secs(10);
        let channel = loop {
            match endpoint.connect().await {
                Ok(channel) => break channel,
                Err(e) if Instant::now() > deadline => {
                    return Err(format!("master {id}'s peer port: {e}"));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let token = chorus::auth::BearerToken::new(&self.options.cluster_secret)
            .map_err(|e| e.to_string())?;
        FailpointsClient::with_interceptor(channel, token)
            .set(SetFailpointRequest {
                name: name.into(),
                actions: actions.into(),
            })
            .await
            .map_err(|e| format!("failpoint {name} on master {id}: {}", e.message()))?;
        Ok(())
    }

    /// Master `id`'s own status, if it answers within a second (a paused master
    /// accepts the connection and never answers).
    pub async fn status(&self, id: u64) -> Option<pb::ClusterStatus> {
        let timeouts = Timeouts {
            attempt: Duration::from_secs(1),
            total: Duration::from_secs(1),
            ..Timeouts::default()
        };
        self.client(&[id], timeouts).cluster_status_of(0).await.ok()
    }

    /// Waits up to `patience` until every running master follows the same leader and
    /// has applied what that leader had applied when the wait began; returns the
    /// leader. This ends under a steady write load too.
    pub async fn caught_up(&self, patience: Duration) -> Result<u64, String> {
        let deadline = Instant::now() + patience;
        let mut target = None;
        loop {
            self.check_alive()?;
            let running = self.running();
            let mut statuses = Vec::new();
            for id in &running {
                statuses.extend(self.status(*id).await);
            }
            let leader = statuses
                .iter()
                .find(|s| s.role == "leader")
                .map(|s| (s.id, s.last_applied));
            if let Some((leader, applied)) = leader {
                let target = *target.get_or_insert(applied);
                let all = statuses.len() == running.len()
                    && statuses
                        .iter()
                        .all(|s| s.leader_id == leader && s.last_applied >= target);
                if all {
                    return Ok(leader);
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the masters did not catch up\n{}",
                    self.logs(Some(30))
                ));
            }
            // Polling other processes: there is no event to await across the boundary.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
