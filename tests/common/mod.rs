//! A cluster of real `chorus serve` processes on loopback, for integration tests.
//!
//! Every master is a child process with its own data dir under one temporary directory
//! and ports the OS handed out. Dropping the cluster SIGKILLs every process still
//! running, so a failing test leaves nothing behind.

#![allow(dead_code)]

mod proxy;
pub use proxy::Proxy;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chorus::api::pb;
use chorus::api::pb::cluster_service_client::ClusterServiceClient;
use chorus::auth::BearerToken;
use chorus::network::pb::peer_client::PeerClient;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

pub const API_SECRET: &str = "test-api-secret";
pub const CLUSTER_SECRET: &str = "test-cluster-secret";

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub type Authed = InterceptedService<Channel, BearerToken>;

/// A free loopback port for a master to bind.
///
/// Ports come from below Linux's ephemeral range (32768–60999), so the many outgoing
/// connections of concurrently running tests cannot take one between this check and the
/// master's bind; a process-wide counter keeps concurrent tests from picking the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (u64::from(std::process::id()) * 7919 % u64::from(SPAN)) as u32,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// One master process.
pub struct Master {
    pub id: u64,
    pub client_addr: String,
    pub peer_addr: String,
    pub data_dir: PathBuf,
    child: Option<Child>,
    log: PathBuf,
}

impl Drop for Master {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Master {
    /// SIGKILLs the process (no-op if it is not running).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let mut child = self.child.take().expect("master is not running");
        child.wait().unwrap()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The master's stderr log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Settings a test may change before starting masters.
#[derive(Clone)]
pub struct Options {
    pub snapshot_logs_since_last: u64,
    /// Put a cuttable [`Proxy`] in front of every master's peer port (the addresses in
    /// `--peers` are the proxies'), so a test can cut a master off. Needs a tokio runtime.
    pub proxied: bool,
    /// More `chorus serve` flags, e.g. limits.
    pub extra_args: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot_logs_since_last: 10_000,
            proxied: false,
            extra_args: Vec::new(),
        }
    }
}

pub struct Cluster {
    pub masters: BTreeMap<u64, Master>,
    pub peers: BTreeMap<u64, String>,
    pub options: Options,
    /// With `Options::proxied`, the proxy in front of each master's peer port.
    pub proxies: BTreeMap<u64, Proxy>,
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` masters listed in each other's `--peers`.
    pub fn start(n: u64, options: Options) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            masters: BTreeMap::new(),
            peers: BTreeMap::new(),
            proxies: BTreeMap::new(),
            options,
            dir,
        };
        for id in 1..=n {
            cluster
                .peers
                .insert(id, format!("127.0.0.1:{}", free_port()));
        }
        for id in 1..=n {
            let listed = cluster.peers[&id].clone();
            let peer_addr = if cluster.options.proxied {
                let real = format!("127.0.0.1:{}", free_port());
                let listener = TcpListener::bind(&listed).unwrap();
                cluster
                    .proxies
                    .insert(id, Proxy::start(listener, real.clone()));
                real
            } else {
                listed
            };
            cluster.spawn(id, peer_addr, format!("127.0.0.1:{}", free_port()));
        }
        cluster
    }

    /// A typed client of masters `ids`, tried in that order.
    pub fn client(&self, ids: &[u64]) -> chorus::client::Client {
        let endpoints: Vec<&str> = ids
            .iter()
            .map(|id| self.masters[id].client_addr.as_str())
            .collect();
        chorus::client::Client::new(&endpoints, API_SECRET).unwrap()
    }

    /// A typed client of every master.
    pub fn client_all(&self) -> chorus::client::Client {
        let ids: Vec<u64> = self.masters.keys().copied().collect();
        self.client(&ids)
    }

    /// Starts a new master that is not in `--peers` (a joiner), returning its peer address.
    pub fn spawn_joiner(&mut self, id: u64) -> String {
        let peer_addr = format!("127.0.0.1:{}", free_port());
        self.spawn(id, peer_addr.clone(), format!("127.0.0.1:{}", free_port()));
        peer_addr
    }

    fn spawn(&mut self, id: u64, peer_addr: String, client_addr: String) {
        let data_dir = self.dir.path().join(format!("master-{id}"));
        let log = self.dir.path().join(format!("master-{id}.log"));
        let mut master = Master {
            id,
            client_addr,
            peer_addr,
            data_dir,
            child: None,
            log,
        };
        self.launch(&mut master);
        self.masters.insert(id, master);
    }

    fn launch(&self, master: &mut Master) {
        let peers: Vec<String> = self
            .peers
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&master.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_chorus"))
            .arg("serve")
            .args(["--id", &master.id.to_string()])
            .args(["--client-addr", &master.client_addr])
            .args(["--peer-addr", &master.peer_addr])
            .args(
                self.proxies
                    .contains_key(&master.id)
                    .then(|| ["--advertise-peer-addr", &self.peers[&master.id]])
                    .into_iter()
                    .flatten(),
            )
            .args(["--peers", &peers.join(",")])
            .arg("--data-dir")
            .arg(&master.data_dir)
            .args([
                "--snapshot-logs-since-last",
                &self.options.snapshot_logs_since_last.to_string(),
            ])
            .args(&self.options.extra_args)
            .env("CHORUS_API_SECRET", API_SECRET)
            .env("CHORUS_CLUSTER_SECRET", CLUSTER_SECRET)
            .env("RUST_LOG", "info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        master.child = Some(child);
    }

    /// Restarts a stopped master from its data dir.
    pub fn restart(&mut self, id: u64) {
        let mut master = self.masters.remove(&id).unwrap();
        assert!(!master.is_running(), "master {id} is still running");
        self.launch(&mut master);
        self.masters.insert(id, master);
    }

    pub fn master(&mut self, id: u64) -> &mut Master {
        self.masters.get_mut(&id).unwrap()
    }

    pub fn running(&self) -> Vec<u64> {
        self.masters
            .values()
            .filter(|m| m.is_running())
            .map(|m| m.id)
            .collect()
    }

    /// All logs, for failure messages.
    pub fn logs(&self) -> String {
        self.masters
            .values()
            .map(|m| format!("---- master {} ----\n{}", m.id, m.log()))
            .collect()
    }

    pub async fn channel(&self, id: u64) -> Channel {
        let addr = &self.masters[&id].client_addr;
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(15))
            .connect_lazy()
    }

    /// A client of master `id`'s peer port presenting `secret`.
    pub fn peer_client(&self, id: u64, secret: &str) -> PeerClient<Authed> {
        let channel = Channel::from_shared(format!("http://{}", self.peers[&id]))
            .unwrap()
            .connect_lazy();
        PeerClient::with_interceptor(channel, BearerToken::new(secret).unwrap())
    }

    pub async fn cluster_client(&self, id: u64) -> ClusterServiceClient<Authed> {
        ClusterServiceClient::with_interceptor(
            self.channel(id).await,
            BearerToken::new(API_SECRET).unwrap(),
        )
    }

    /// The status as master `id` reports it, or None if it does not answer.
    pub async fn status(&self, id: u64) -> Option<pb::ClusterStatus> {
        let mut client = self.cluster_client(id).await;
        // A paused (SIGSTOP) master accepts the TCP connection but never answers, and
        // tonic does not enforce grpc-timeout on the client side: bound the call here.
        let call = client.get_cluster_status(pb::GetClusterStatusRequest {});
        match tokio::time::timeout(Duration::from_secs(1), call).await {
            Ok(Ok(reply)) => Some(reply.into_inner()),
            _ => None,
        }
    }

    /// Polls until `check` holds, failing the test with the logs after [`PATIENCE`].
    pub async fn eventually<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{}", self.logs());
            }
            // Polling a separate process: there is no event to await across the boundary.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every running master agrees on one leader, and returns it.
    pub async fn leader(&self) -> u64 {
        let running = self.running();
        self.eventually("one leader known to every running master", || {
            let running = running.clone();
            async move {
                let mut leader = None;
                for id in running {
                    let status = self.status(id).await?;
                    if status.leader_id == 0 || leader.is_some_and(|l| l != status.leader_id) {
                        return None;
                    }
                    leader = Some(status.leader_id);
                }
                let leader = leader?;
                // The leader must itself be running and say so.
                let own = self.status(leader).await?;
                (own.role == "leader").then_some(leader)
            }
        })
        .await
    }

    /// Waits until every running master knows a leader, has applied its whole log, and
    /// all are at the same index with the same digest. Meant for quiet periods.
    pub async fn converged(&self) -> (u64, String) {
        let running = self.running();
        self.eventually(
            "all running masters at the same applied index and digest",
            || {
                let running = running.clone();
                async move {
                    let mut seen: Option<(u64, String)> = None;
                    for id in running {
                        let s = self.status(id).await?;
                        // Applied all of its log: a master restarted from a snapshot
                        // agrees with the others on a stale state until the new leader's
                        // commit reaches it, and that must not count as converged.
                        if s.leader_id == 0 || s.last_applied != s.last_log_index {
                            return None;
                        }
                        let this = (s.last_applied, s.state_digest);
                        match &seen {
                            None => seen = Some(this),
                            Some(prev) if *prev != this => return None,
                            Some(_) => {}
                        }
                    }
                    seen
                }
            },
        )
        .await
    }
}

pub type SessionClient = chorus::api::pb::session_service_client::SessionServiceClient<Authed>;

impl Cluster {
    pub async fn session_client(&self, id: u64) -> SessionClient {
        chorus::api::pb::session_service_client::SessionServiceClient::with_interceptor(
            self.channel(id).await,
            BearerToken::new(API_SECRET).unwrap(),
        )
    }

    /// Creates session `id` through whichever master leads, retrying with the same
    /// request id across elections until it is acknowledged. Returns the session.
    pub async fn create_session(&self, id: &str) -> pb::Session {
        let request = pb::CreateSessionRequest {
            custom_session_id: id.into(),
            request_id: format!("create-{id}"),
            ..Default::default()
        };
        self.eventually(&format!("session {id} acknowledged"), || {
            let request = request.clone();
            async move {
                let leader = self.current_leader().await?;
                let mut client = self.session_client(leader).await;
                match client.create_session(request).await {
                    Ok(reply) => Some(reply.into_inner()),
                    Err(status) if status.code() == tonic::Code::Unavailable => None,
                    Err(status) if status.code() == tonic::Code::Cancelled => None,
                    Err(status) => panic!("creating {id}: {status}"),
                }
            }
        })
        .await
    }

    /// The leader some running master currently knows of, if any.
    pub async fn current_leader(&self) -> Option<u64> {
        for id in self.running() {
            if let Some(status) = self.status(id).await {
                if status.leader_id != 0
                    && self
                        .masters
                        .get(&status.leader_id)
                        .is_some_and(|m| m.is_running())
                {
                    return Some(status.leader_id);
                }
            }
        }
        None
    }

    /// Reads session `id` from master `from` with the given consistency.
    pub async fn get_session(
        &self,
        from: u64,
        id: &str,
        consistency: pb::Consistency,
    ) -> Result<pb::Session, tonic::Status> {
        let mut client = self.session_client(from).await;
        client
            .get_session(pb::GetSessionRequest {
                session_id: id.into(),
                consistency: consistency as i32,
            })
            .await
            .map(|r| r.into_inner())
    }

    /// Every session id master `from` holds (stale read), all pages.
    pub async fn session_ids(&self, from: u64) -> Vec<String> {
        let mut client = self.session_client(from).await;
        let mut ids = Vec::new();
        let mut page_token = String::new();
        loop {
            let page = client
                .list_sessions(pb::ListSessionsRequest {
                    page_size: 50,
                    page_token,
                    consistency: pb::Consistency::Stale as i32,
                })
                .await
                .unwrap()
                .into_inner();
            ids.extend(page.sessions.into_iter().map(|s| s.id));
            if page.next_page_token.is_empty() {
                return ids;
            }
            page_token = page.next_page_token;
        }
    }
}

impl Master {
    /// The exit status, if the process has exited (it is then reaped and forgotten).
    pub fn try_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        let status = self.child.as_mut()?.try_wait().unwrap()?;
        self.child = None;
        Some(status)
    }
}

impl Cluster {
    /// Waits until master `id` exits on its own, and returns its exit status.
    pub async fn exit_status(&mut self, id: u64) -> std::process::ExitStatus {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(exit) = self.master(id).try_exit_status() {
                return exit;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "master {id} kept running\n{}",
                self.logs()
            );
            // A child process's exit cannot be awaited through std; poll it.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Master {
    /// Lowers the running process's open-file limit to `n` descriptors (prlimit(2)), so
    /// that opening any further file fails with EMFILE.
    pub fn limit_open_files(&self, n: u64) {
        let pid = self.child.as_ref().expect("master is not running").id() as i32;
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let new = libc::rlimit {
            rlim_cur: n,
            rlim_max: n,
        };
        // SAFETY: prlimit(2) on the pid of a child we have not yet reaped, with valid
        // pointers to two rlimit structs.
        let rc = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &new, &mut old) };
        assert_eq!(
            rc,
            0,
            "prlimit({pid}) failed: {}",
            std::io::Error::last_os_error()
        );
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to the running process.
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("master is not running").id() as i32;
        // SAFETY: kill(2) on the pid of a child we have not yet reaped.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal}) failed");
    }
}

/// Media nodes played by the test: a task sends a heartbeat for each beating node every
/// `period` through the typed client (so it follows failovers), until silenced or dropped.
pub struct Heartbeats {
    beating: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Heartbeats {
    pub fn start(client: chorus::client::Client, period: Duration) -> Heartbeats {
        let beating = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::<String, f64>::new()));
        let nodes = beating.clone();
        let task = tokio::spawn(async move {
            loop {
                let now: Vec<(String, f64)> = nodes
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(id, load)| (id.clone(), *load))
                    .collect();
                for (node_id, load) in now {
                    // A failed beat is just a missed beat; the next one follows.
                    let _ = client
                        .heartbeat(pb::HeartbeatRequest { node_id, load })
                        .await;
                }
                // The media nodes' own rhythm, not a wait for a condition.
                tokio::time::sleep(period).await;
            }
        });
        Heartbeats { beating, task }
    }

    /// Starts (or updates) heartbeats of `node` reporting `load`.
    pub fn beat(&self, node: &str, load: f64) {
        self.beating.lock().unwrap().insert(node.to_owned(), load);
    }

    /// Stops `node`'s heartbeats, as if it died.
    pub fn silence(&self, node: &str) {
        self.beating.lock().unwrap().remove(node);
    }
}

/// Registers media node `id` (4 cores) through `client`.
pub async fn register_media_node(client: &chorus::client::Client, id: &str) {
    client
        .register_media_node(pb::RegisterMediaNodeRequest {
            id: id.into(),
            uri: format!("ws://127.0.0.1:9/{id}"),
            cores: 4,
            ..Default::default()
        })
        .await
        .unwrap();
}

/// Asks to move media node `id` to `status`.
pub async fn set_media_node_status(
    client: &chorus::client::Client,
    id: &str,
    status: &str,
) -> Result<pb::MediaNode, tonic::Status> {
    client
        .set_media_node_status(pb::SetMediaNodeStatusRequest {
            id: id.into(),
            status: status.into(),
            request_id: String::new(),
        })
        .await
}
