//! The Chorus workloads: what each client sends, and the set-up some of them need.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::{Client, Timeouts};
use chorus_testkit::HttpClient;
use rand::Rng;
use tonic::Status;

use crate::BenchResult;
use crate::load::{self, Report, Worker};

/// Which requests a workload sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    CreateSession,
    CreateConnection,
    Join,
    Get,
    StaleGet,
    Mix,
    /// A stale GetSession on a new connection each time: what a client's reconnect
    /// (TCP and, with TLS, the handshake) costs.
    Reconnect,
    /// CreateSession through the OpenVidu REST API (`POST /openvidu/api/sessions`).
    RestCreateSession,
    /// CreateConnection through the OpenVidu REST API, into a few sessions per client.
    RestCreateConnection,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::CreateSession => "create-session",
            Shape::CreateConnection => "create-connection",
            Shape::Join => "join",
            Shape::Get => "get",
            Shape::StaleGet => "stale-get",
            Shape::Mix => "mix",
            Shape::Reconnect => "reconnect",
            Shape::RestCreateSession => "rest-create-session",
            Shape::RestCreateConnection => "rest-create-connection",
        }
    }
}

/// Which master each client talks to first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// Client `i` starts at master `i mod n` and, like any client, then follows the
    /// leader hints in the answers.
    All,
    /// Every client starts at the leader.
    Leader,
    /// Every client starts at one follower (its writes are forwarded).
    Follower,
}

/// The masters a workload talks to.
#[derive(Clone)]
pub struct Target {
    endpoints: Vec<String>,
    api_secret: String,
    /// TLS to the masters, checked against a CA (`--cacert`).
    tls: Option<tonic::transport::ClientTlsConfig>,
    /// The masters' HTTP ports, in the order of `endpoints` (REST workloads).
    http_endpoints: Vec<String>,
}

/// Sessions a read workload reads from.
const READ_SESSIONS: usize = 1_000;
/// Connections a CreateConnection client puts in one session before opening the next:
/// under the default limit of 1,000 per session.
const CONNECTIONS_PER_SESSION: u32 = 500;

/// The timeouts of bench clients: a write may wait out an election, but a stuck
/// request must not hold a client for long.
pub const TIMEOUTS: Timeouts = Timeouts {
    attempt: Duration::from_secs(3),
    total: Duration::from_secs(10),
    backoff: Duration::from_millis(20),
    connect: Duration::from_secs(1),
};

impl Target {
    pub fn remote(endpoints: Vec<String>, api_secret: String) -> Target {
        Target {
            endpoints,
            api_secret,
            tls: None,
            http_endpoints: Vec::new(),
        }
    }

    /// This target with the masters' HTTP ports, one per endpoint in the same order.
    pub fn with_http(mut self, http_endpoints: Vec<String>) -> Target {
        self.http_endpoints = http_endpoints;
        self
    }

    /// This target over TLS, the masters' certificates checked against `ca`.
    pub fn with_ca(mut self, ca: Option<&std::path::Path>) -> BenchResult<Target> {
        self.tls = ca
            .map(|ca| chorus::tls::client_config(Some(ca), None))
            .transpose()?;
        Ok(self)
    }

    /// A client of `endpoints`, in that order, on new connections.
    fn client(&self, endpoints: &[String]) -> BenchResult<Client> {
        Ok(Client::with_tls(
            endpoints,
            &self.api_secret,
            TIMEOUTS,
            self.tls.clone(),
        )?)
    }

    /// The index of the first endpoint whose master has the role asked for.
    async fn first_with_role(&self, leader: bool) -> BenchResult<usize> {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let client = self.client(std::slice::from_ref(endpoint))?;
            let status = client.cluster_status_of(0).await?;
            if (status.role == "leader") == leader {
                return Ok(i);
            }
        }
        Err(format!(
            "no master is a {}",
            if leader { "leader" } else { "follower" }
        )
        .into())
    }

    /// The master each of `count` clients starts at, as `via` asks: `None` spreads
    /// them over all.
    async fn aim(&self, via: Via) -> BenchResult<Option<usize>> {
        Ok(match via {
            Via::All => None,
            Via::Leader => Some(self.first_with_role(true).await?),
            Via::Follower => Some(self.first_with_role(false).await?),
        })
    }

    /// One REST client per worker, on the HTTP port of the master `via` asks for
    /// (`all`: client `i` on master `i mod n`; REST clients follow no leader hints).
    pub async fn http_clients(&self, via: Via, count: usize) -> BenchResult<Vec<HttpClient>> {
        if self.http_endpoints.len() != self.endpoints.len() {
            return Err("REST workloads need the masters' HTTP ports (--http-endpoints)".into());
        }
        let fixed = self.aim(via).await?;
        Ok((0..count)
            .map(|i| {
                let at = fixed.unwrap_or(i % self.http_endpoints.len());
                HttpClient::new(&self.http_endpoints[at], Some(&self.api_secret))
            })
            .collect())
    }

    /// One client per worker, starting at the master `via` asks for and failing over
    /// to the others in turn.
    pub async fn clients(&self, via: Via, count: usize) -> BenchResult<Vec<Client>> {
        let fixed = self.aim(via).await?;
        (0..count)
            .map(|i| {
                let first = fixed.unwrap_or(i % self.endpoints.len());
                let mut order = self.endpoints.clone();
                order.rotate_left(first);
                let client = self.client(&order)?;
                // `all` is how applications use the client: it steers itself to the
                // leader. The others measure one master's path, so stay where aimed.
                Ok(match via {
                    Via::All => client,
                    Via::Leader | Via::Follower => client.without_leader_steering(),
                })
            })
            .collect()
    }
}

fn timed<T>(started: Instant, result: Result<T, Status>) -> Result<(T, Duration), String> {
    let took = started.elapsed();
    result
        .map(|value| (value, took))
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))
}

/// Media nodes the bench runs for workloads that join: a join needs its session placed
/// on a RUNNING node.
const MEDIA_NODES: usize = 4;
/// How often the bench's media nodes heartbeat (the default node timeout is 5 s).
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);

/// The bench's media nodes, heartbeating until the last worker holding them is dropped.
pub struct MediaNodes {
    heartbeats: tokio::task::JoinHandle<()>,
}

impl Drop for MediaNodes {
    fn drop(&mut self) {
        self.heartbeats.abort();
    }
}

impl MediaNodes {
    /// Registers the nodes (registering an existing one again is harmless), makes them
    /// RUNNING with a first heartbeat, and keeps them so.
    async fn start(client: Client) -> BenchResult<Arc<MediaNodes>> {
        let ids: Vec<String> = (0..MEDIA_NODES)
            .map(|i| format!("bench-node-{i}"))
            .collect();
        let beat = |client: Client, ids: Vec<String>| async move {
            for id in ids {
                let request = pb::HeartbeatRequest {
                    reports: Vec::new(),
                    node_id: id,
                    load: 10.0,
                };
                client.heartbeat(request).await?;
            }
            Ok::<_, Status>(())
        };
        for id in &ids {
            let request = pb::RegisterMediaNodeRequest {
                id: id.clone(),
                uri: format!("ws://127.0.0.1:9/{id}"),
                cores: 4,
                ..Default::default()
            };
            client.register_media_node(request).await?;
        }
        beat(client.clone(), ids.clone()).await?;
        let heartbeats = tokio::spawn(async move {
            let mut period = tokio::time::interval(HEARTBEAT_PERIOD);
            loop {
                period.tick().await;
                // A missed beat is retried at the next tick; a node times out only
                // after several.
                let _ = beat(client.clone(), ids.clone()).await;
            }
        });
        Ok(Arc::new(MediaNodes { heartbeats }))
    }
}

/// Pending connection tokens, shared by every joining client.
type TokenPool = Arc<Mutex<Vec<String>>>;

/// One Chorus client running a workload.
pub struct ChorusWorker {
    shape: Shape,
    client: Client,
    server_data: String,
    /// Sessions to read (get, stale-get).
    read_sessions: Arc<Vec<String>>,
    /// The session connections go into, and how many it has.
    session: Option<(String, u32)>,
    /// Tokens made by create-connection (when collecting) or consumed by join.
    tokens: Option<TokenPool>,
    /// Step of the mix cycle, and the mix's current session and tokens.
    step: usize,
    mix_tokens: Vec<String>,
    /// Keeps the media nodes heartbeating while a joining workload runs.
    media_nodes: Option<Arc<MediaNodes>>,
    /// Reconnect: where each operation opens its new connection.
    reconnect: Option<(Target, String)>,
    /// REST workloads: the client of one master's HTTP port.
    rest: Option<HttpClient>,
}

impl ChorusWorker {
    fn new(shape: Shape, client: Client, server_data: String) -> ChorusWorker {
        ChorusWorker {
            shape,
            client,
            server_data,
            read_sessions: Arc::default(),
            session: None,
            tokens: None,
            step: 0,
            mix_tokens: Vec::new(),
            media_nodes: None,
            reconnect: None,
            rest: None,
        }
    }

    /// A REST call, timed; anything but `expect` is an error.
    async fn rest(
        &mut self,
        method: &str,
        path: &str,
        body: &str,
        expect: u16,
    ) -> Result<(chorus_testkit::Reply, Duration), String> {
        let http = self
            .rest
            .as_mut()
            .expect("REST workers have an HTTP client");
        let started = Instant::now();
        let reply = http
            .call(method, path, Some(body))
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let took = started.elapsed();
        if reply.status != expect {
            return Err(format!("{method} {path}: {} {}", reply.status, reply.body));
        }
        Ok((reply, took))
    }

    async fn rest_create_session(&mut self) -> Result<(String, Duration), String> {
        let (reply, took) = self
            .rest("POST", "/openvidu/api/sessions", "{}", 200)
            .await?;
        let id = reply.json()["id"].as_str().unwrap_or_default().to_owned();
        Ok((id, took))
    }

    /// A REST CreateConnection into this client's current session, opening a new
    /// session (not timed) when it is full.
    async fn rest_next_connection(&mut self) -> Result<Duration, String> {
        let session = match self.session.take() {
            Some((id, n)) if n < CONNECTIONS_PER_SESSION => (id, n),
            _ => (self.rest_create_session().await?.0, 0),
        };
        let body = serde_json::json!({"role": "PUBLISHER", "data": self.server_data}).to_string();
        let path = format!("/openvidu/api/sessions/{}/connection", session.0);
        let result = self.rest("POST", &path, &body, 200).await;
        self.session = Some((session.0, session.1 + 1));
        Ok(result?.1)
    }

    async fn create_session(&self) -> Result<(String, Duration), String> {
        let started = Instant::now();
        let result = self
            .client
            .create_session(pb::CreateSessionRequest::default())
            .await;
        timed(started, result).map(|(s, took)| (s.id, took))
    }

    async fn create_connection(&self, session_id: &str) -> Result<(String, Duration), String> {
        let request = pb::CreateConnectionRequest {
            session_id: session_id.to_owned(),
            server_data: self.server_data.clone(),
            ..Default::default()
        };
        let started = Instant::now();
        let result = self.client.create_connection(request).await;
        timed(started, result).map(|(c, took)| (c.token, took))
    }

    async fn join(&self, token: String) -> Result<Duration, String> {
        let request = pb::JoinConnectionRequest {
            token,
            ip: "127.0.0.1".into(),
            ..Default::default()
        };
        let started = Instant::now();
        let result = self.client.join_connection(request).await;
        timed(started, result).map(|(_, took)| took)
    }

    async fn get(
        &self,
        session_id: String,
        consistency: pb::Consistency,
    ) -> Result<Duration, String> {
        let request = pb::GetSessionRequest {
            session_id,
            consistency: consistency.into(),
        };
        let started = Instant::now();
        let result = self.client.get_session(request).await;
        timed(started, result).map(|(_, took)| took)
    }

    fn random_read_session(&self) -> String {
        let i = rand::rng().random_range(0..self.read_sessions.len());
        self.read_sessions[i].clone()
    }

    /// A CreateConnection into this client's current session, opening a new session
    /// (not timed) when it is full.
    async fn next_connection(&mut self) -> Result<Duration, String> {
        let session = match self.session.take() {
            Some((id, n)) if n < CONNECTIONS_PER_SESSION => (id, n),
            _ => (self.create_session().await?.0, 0),
        };
        let result = self.create_connection(&session.0).await;
        self.session = Some((session.0, session.1 + 1));
        let (token, took) = result?;
        if let Some(pool) = &self.tokens {
            pool.lock().expect("token pool").push(token);
        }
        Ok(took)
    }

    /// One step of a session's life: create, 2 connections, 2 joins, 4 gets, delete.
    async fn mix_step(&mut self) -> Result<Duration, String> {
        let step = self.step;
        self.step = (self.step + 1) % 10;
        let session = self.session.as_ref().map(|(id, _)| id.clone());
        match (step, session) {
            (0, _) | (_, None) => {
                self.step = 1;
                self.mix_tokens.clear();
                let (id, took) = self.create_session().await?;
                self.session = Some((id, 0));
                Ok(took)
            }
            (1 | 2, Some(id)) => {
                let (token, took) = self.create_connection(&id).await?;
                self.mix_tokens.push(token);
                Ok(took)
            }
            (3 | 4, Some(_)) => match self.mix_tokens.pop() {
                Some(token) => self.join(token).await,
                None => Err("no token to join: a CreateConnection failed".into()),
            },
            (9, Some(id)) => {
                self.session = None;
                let request = pb::DeleteSessionRequest {
                    session_id: id,
                    ..Default::default()
                };
                let started = Instant::now();
                let result = self.client.delete_session(request).await;
                timed(started, result).map(|(_, took)| took)
            }
            (_, Some(id)) => self.get(id, pb::Consistency::Linearizable).await,
        }
    }
}

impl Worker for ChorusWorker {
    async fn op(&mut self) -> Result<Option<Duration>, String> {
        let took = match self.shape {
            Shape::CreateSession => self.create_session().await?.1,
            Shape::CreateConnection => self.next_connection().await?,
            Shape::Join => {
                let pool = self.tokens.as_ref().expect("join workers share a pool");
                let token = pool.lock().expect("token pool").pop();
                match token {
                    Some(token) => self.join(token).await?,
                    None => return Ok(None),
                }
            }
            Shape::Get => {
                let session = self.random_read_session();
                self.get(session, pb::Consistency::Linearizable).await?
            }
            Shape::StaleGet => {
                let session = self.random_read_session();
                self.get(session, pb::Consistency::Stale).await?
            }
            Shape::Mix => self.mix_step().await?,
            Shape::RestCreateSession => self.rest_create_session().await?.1,
            Shape::RestCreateConnection => self.rest_next_connection().await?,
            Shape::Reconnect => {
                let (target, endpoint) = self.reconnect.as_ref().expect("reconnect workers");
                let request = pb::GetSessionRequest {
                    session_id: self.random_read_session(),
                    consistency: pb::Consistency::Stale.into(),
                };
                let client = target
                    .client(std::slice::from_ref(endpoint))
                    .map_err(|e| e.to_string())?;
                // The new channel connects on its first call: the connection, the TLS
                // handshake and HTTP/2's are timed, the client's set-up is not.
                let started = Instant::now();
                let result = client.get_session(request).await;
                timed(started, result)?.1
            }
        };
        Ok(Some(took))
    }
}

/// Creates the sessions read workloads read, `clients` at a time.
async fn read_sessions(clients: &[Client]) -> BenchResult<Vec<String>> {
    let per_client = READ_SESSIONS.div_ceil(clients.len());
    let mut tasks = Vec::new();
    for client in clients {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..per_client {
                let session = client
                    .create_session(pb::CreateSessionRequest::default())
                    .await?;
                ids.push(session.id);
            }
            Ok::<_, Status>(ids)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.extend(task.await??);
    }
    Ok(ids)
}

/// One run of a workload: what the clients send, how many, where, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub shape: Shape,
    pub via: Via,
    pub clients: usize,
    pub duration: Duration,
    /// Bytes of `server_data` in each CreateConnection.
    pub payload_bytes: usize,
}

impl Plan {
    /// `clients` clients of `shape`, spread over the masters, for `duration`.
    pub fn new(shape: Shape, clients: usize, duration: Duration) -> Plan {
        Plan {
            shape,
            via: Via::All,
            clients,
            duration,
            payload_bytes: 0,
        }
    }
}

/// Builds the workers of a plan, doing its set-up first.
pub async fn workers(target: &Target, plan: Plan) -> BenchResult<Vec<ChorusWorker>> {
    let Plan {
        shape,
        via,
        clients,
        duration,
        payload_bytes,
    } = plan;
    let server_data = "x".repeat(payload_bytes);
    let made = target.clients(via, clients).await?;
    let mut workers: Vec<ChorusWorker> = made
        .iter()
        .map(|c| ChorusWorker::new(shape, c.clone(), server_data.clone()))
        .collect();
    if matches!(
        shape,
        Shape::RestCreateSession | Shape::RestCreateConnection
    ) {
        let rest = target.http_clients(via, clients).await?;
        for (worker, http) in workers.iter_mut().zip(rest) {
            worker.rest = Some(http);
        }
    }
    if matches!(shape, Shape::Join | Shape::Mix) {
        let nodes = MediaNodes::start(made[0].clone()).await?;
        for worker in &mut workers {
            worker.media_nodes = Some(nodes.clone());
        }
    }
    match shape {
        Shape::Get | Shape::StaleGet | Shape::Reconnect => {
            let sessions = Arc::new(read_sessions(&made).await?);
            for (i, worker) in workers.iter_mut().enumerate() {
                worker.read_sessions = sessions.clone();
                if shape == Shape::Reconnect {
                    let endpoint = target.endpoints[i % target.endpoints.len()].clone();
                    worker.reconnect = Some((target.clone(), endpoint));
                }
            }
        }
        Shape::Join => {
            // As many pending connections as the same clients create in the same time:
            // joins cost about what creations do, so the pool lasts about the run.
            let pool = TokenPool::default();
            let makers: Vec<ChorusWorker> = made
                .iter()
                .map(|c| {
                    let mut maker =
                        ChorusWorker::new(Shape::CreateConnection, c.clone(), server_data.clone());
                    maker.tokens = Some(pool.clone());
                    maker
                })
                .collect();
            let filled = load::drive(makers, duration).await;
            println!(
                "join: {} pending connections made first ({} ops/s)",
                filled.ops,
                filled.ops_per_s().round()
            );
            for worker in &mut workers {
                worker.tokens = Some(pool.clone());
            }
        }
        _ => {}
    }
    Ok(workers)
}

/// Runs a plan against `target`.
pub async fn run(target: &Target, plan: Plan) -> BenchResult<Report> {
    let mut workers = workers(target, plan).await?;
    // One unmeasured operation per client opens its connections. Not for join, whose
    // pool is sized to the run.
    if plan.shape != Shape::Join {
        for worker in &mut workers {
            worker.op().await?;
        }
    }
    Ok(load::drive(workers, plan.duration).await)
}
