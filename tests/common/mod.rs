//! The integration tests' cluster: the test kit's real `chorus serve` processes on
//! loopback, with the secrets the tests use and helpers that wait for what a test
//! expects (a leader, convergence, an acknowledged write), failing with the logs.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use chorus::api::pb;
use chorus::api::pb::cluster_service_client::ClusterServiceClient;
use chorus::auth::BearerToken;
use chorus::client::Timeouts;
use chorus::network::pb::peer_client::PeerClient;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

/// The operator secret, which the tests present unless they test roles (it opens every
/// role).
pub const OPERATOR_SECRET: &str = "test-operator-secret";
/// The application secret.
pub const APP_SECRET: &str = "test-app-secret";
/// The key of media-node tokens.
pub const NODE_SECRET: &str = "test-node-secret";
pub const CLUSTER_SECRET: &str = "test-cluster-secret";

/// How long any awaited condition may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(30);

pub type Authed = InterceptedService<Channel, BearerToken>;

/// Asserts that `result` is a refusal with `code` whose message mentions `mentions`
/// (the field or limit it names).
pub fn assert_refused<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: tonic::Code,
    mentions: &str,
) {
    let e = result.unwrap_err();
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(mentions), "{mentions:?} not in {e:?}");
}

/// Settings a test may change before starting masters.
#[derive(Clone)]
pub struct Options {
    pub snapshot_logs_since_last: u64,
    /// Put every master's peer port behind a proxy of the kit's network (the addresses
    /// in `--peers` are the proxies'), so a test can cut a master off. Needs a tokio
    /// runtime.
    pub proxied: bool,
    /// More `chorus serve` flags, e.g. limits.
    pub extra_args: Vec<String>,
    /// The CA of the masters' client-port certificates: clients speak TLS.
    pub client_ca: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            snapshot_logs_since_last: 10_000,
            proxied: false,
            extra_args: Vec::new(),
            client_ca: None,
        }
    }
}

/// The kit's cluster, started as the tests want it; everything the kit offers (kill,
/// restart, signal, status, logs, the network) is reached through `Deref`.
pub struct Cluster {
    kit: chorus_testkit::Cluster,
}

impl std::ops::Deref for Cluster {
    type Target = chorus_testkit::Cluster;
    fn deref(&self) -> &Self::Target {
        &self.kit
    }
}

impl std::ops::DerefMut for Cluster {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.kit
    }
}

impl Cluster {
    /// Starts `n` masters listed in each other's `--peers`.
    pub fn start(n: u64, options: Options) -> Cluster {
        let mut kit_options = chorus_testkit::Options::new(chorus_testkit::Program::chorus(env!(
            "CARGO_BIN_EXE_chorus"
        )));
        kit_options.api_secret = APP_SECRET.into();
        kit_options.operator_secret = OPERATOR_SECRET.into();
        kit_options.node_secret = NODE_SECRET.into();
        kit_options.cluster_secret = CLUSTER_SECRET.into();
        kit_options.proxied = options.proxied;
        kit_options.client_ca = options.client_ca;
        kit_options.extra_args = vec![
            "--snapshot-logs-since-last".into(),
            options.snapshot_logs_since_last.to_string(),
        ];
        kit_options.extra_args.extend(options.extra_args);
        let kit = chorus_testkit::Cluster::start(n, kit_options).expect("starting the masters");
        Cluster { kit }
    }

    /// Starts a new master that is not in `--peers` (a joiner), returning its peer address.
    pub fn spawn_joiner(&mut self, id: u64) -> String {
        self.kit.spawn_joiner(id).expect("starting a joiner")
    }

    /// Restarts a stopped master from its data dir.
    pub fn restart(&mut self, id: u64) {
        assert!(!self.kit.is_running(id), "master {id} is still running");
        self.kit.restart(id).expect("restarting a master");
    }

    /// Sends SIGTERM to master `id` and waits for its exit status.
    pub fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        self.kit
            .stop(id, libc::SIGTERM)
            .expect("master is not running")
    }

    /// Sends `signal` (e.g. `libc::SIGSTOP`) to master `id`.
    pub fn signal(&self, id: u64, signal: i32) {
        self.kit.signal(id, signal).expect("signalling a master");
    }

    /// Every master's whole log, for failure messages.
    pub fn logs(&self) -> String {
        self.kit.logs(None)
    }

    /// Waits until master `id` exits on its own, and returns its exit status.
    pub async fn exit_status(&mut self, id: u64) -> std::process::ExitStatus {
        match self.kit.exit_status(id, PATIENCE).await {
            Ok(status) => status,
            Err(e) => panic!("{e}\n{}", self.logs()),
        }
    }

    /// A typed client of masters `ids`, tried in that order.
    pub fn client(&self, ids: &[u64]) -> chorus::client::Client {
        self.kit.client(ids, Timeouts::default())
    }

    /// A typed client of every master.
    pub fn client_all(&self) -> chorus::client::Client {
        self.kit.client_all(Timeouts::default())
    }

    pub async fn channel(&self, id: u64) -> Channel {
        let addr = self.client_addr(id);
        Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(15))
            .connect_lazy()
    }

    /// A client of master `id`'s peer port presenting `secret`.
    pub fn peer_client(&self, id: u64, secret: &str) -> PeerClient<Authed> {
        let channel =
            Channel::from_shared(format!("http://{}", self.masters[&id].listed_peer_addr))
                .unwrap()
                .connect_lazy();
        PeerClient::with_interceptor(channel, BearerToken::new(secret).unwrap())
    }

    pub async fn cluster_client(&self, id: u64) -> ClusterServiceClient<Authed> {
        ClusterServiceClient::with_interceptor(
            self.channel(id).await,
            BearerToken::new(OPERATOR_SECRET).unwrap(),
        )
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
            BearerToken::new(OPERATOR_SECRET).unwrap(),
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
                if status.leader_id != 0 && self.is_running(status.leader_id) {
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
                        .heartbeat(pb::HeartbeatRequest {
                            reports: Vec::new(),
                            node_id,
                            load,
                        })
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

/// Waits until media node `id`, read linearizably through `client`, has status `want`.
pub async fn wait_media_node(
    cluster: &Cluster,
    client: &chorus::client::Client,
    id: &str,
    want: &str,
) {
    cluster
        .eventually(&format!("media node {id} {want}"), || async {
            let node = client
                .get_media_node(pb::GetMediaNodeRequest {
                    id: id.into(),
                    consistency: pb::Consistency::Linearizable as i32,
                })
                .await
                .ok()?;
            (node.status == want).then_some(())
        })
        .await;
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
