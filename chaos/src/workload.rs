//! The workload: concurrent clients through random masters, each running a seeded mix
//! of operations and recording every one with its invocation and completion times.
//!
//! Sessions `s0`…`s7` are shared by every client so that creates, deletes and reads
//! collide; sessions `u-<client>-<n>` are each client's own and never deleted, so that
//! an acknowledged one must be there at the end. Every CreateConnection on those is
//! sent twice under one request id, as a client retrying after a lost answer would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chorus::api::pb;
use chorus::client::{Client, Timeouts, new_request_id};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;
use tonic::{Code, Status};

use crate::history::{Call, Op, Outcome, Value};

/// Shared session ids: few, so that operations collide.
const SHARED: usize = 8;
/// Media nodes the workload registers and keeps alive.
pub const NODES: [&str; 3] = ["n0", "n1", "n2"];
/// The most operations one client makes in a run, whatever the duration.
const MAX_OPS_PER_CLIENT: usize = 200_000;

/// How clients call: short attempts, so a call through a cut-off master moves on.
pub fn timeouts() -> Timeouts {
    Timeouts {
        attempt: Duration::from_millis(1_500),
        total: Duration::from_secs(4),
        ..Timeouts::default()
    }
}

/// The shared record of the run.
#[derive(Clone)]
pub struct Recorder {
    start: Instant,
    ops: Arc<Mutex<Vec<Op>>>,
}

impl Recorder {
    pub fn new(start: Instant) -> Self {
        Recorder {
            start,
            ops: Arc::default(),
        }
    }

    pub fn micros(&self, at: Instant) -> u64 {
        at.duration_since(self.start).as_micros() as u64
    }

    fn record(&self, client: usize, call: Call, invoked: Instant, outcome: Outcome) {
        let op = Op {
            client,
            call,
            invoked: self.micros(invoked),
            completed: self.micros(Instant::now()),
            outcome,
        };
        self.ops.lock().unwrap().push(op);
    }

    pub fn history(&self) -> Vec<Op> {
        let mut ops = self.ops.lock().unwrap().clone();
        ops.sort_by_key(|op| op.invoked);
        ops
    }
}

/// A definitive refusal, or an unknown outcome.
fn failed(status: &Status) -> Outcome {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            Outcome::Unknown
        }
        code => Outcome::Refused(code_name(code).to_owned()),
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        _ => "OTHER",
    }
}

/// One client.
struct Worker {
    id: usize,
    client: Client,
    rng: StdRng,
    recorder: Recorder,
    /// Tokens and connection ids seen per shared session.
    tokens: BTreeMap<String, Vec<String>>,
    connections: BTreeMap<String, Vec<String>>,
    unique: usize,
    stale_as_linearizable: bool,
}

impl Worker {
    async fn run(mut self, stop: Arc<AtomicBool>) {
        for _ in 0..MAX_OPS_PER_CLIENT {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let session = format!("s{}", self.rng.random_range(0..SHARED));
            match self.rng.random_range(0..100) {
                0..25 => self.create_session(session).await,
                25..33 => self.delete_session(session).await,
                33..48 => self.create_connection(session).await,
                48..58 => self.join(session).await,
                58..63 => self.delete_connection(session).await,
                63..80 => self.get(session, true).await,
                80..88 => self.get(session, false).await,
                88..97 => self.unique_session().await,
                _ => self.register_node().await,
            }
        }
    }

    async fn create_session(&mut self, session: String) {
        let at = Instant::now();
        let result = self
            .client
            .create_session(pb::CreateSessionRequest {
                custom_session_id: session.clone(),
                ..Default::default()
            })
            .await;
        let outcome = result.map_or_else(|e| failed(&e), |_| Outcome::Ok(Value::Done));
        self.recorder
            .record(self.id, Call::CreateSession { session }, at, outcome);
    }

    async fn delete_session(&mut self, session: String) {
        let at = Instant::now();
        let result = self
            .client
            .delete_session(pb::DeleteSessionRequest {
                session_id: session.clone(),
                request_id: String::new(),
            })
            .await;
        let outcome = result.map_or_else(|e| failed(&e), |_| Outcome::Ok(Value::Done));
        self.recorder
            .record(self.id, Call::DeleteSession { session }, at, outcome);
    }

    async fn create_connection(&mut self, session: String) {
        if let Some(c) = self.send_connection(&session, new_request_id()).await {
            self.tokens
                .entry(session.clone())
                .or_default()
                .push(c.token);
            self.connections.entry(session).or_default().push(c.id);
        }
    }

    /// One recorded CreateConnection under `request_id`.
    async fn send_connection(
        &mut self,
        session: &str,
        request_id: String,
    ) -> Option<pb::Connection> {
        let at = Instant::now();
        let result = self
            .client
            .create_connection(pb::CreateConnectionRequest {
                session_id: session.to_owned(),
                request_id: request_id.clone(),
                ..Default::default()
            })
            .await;
        let outcome = match &result {
            Ok(c) => Outcome::Ok(Value::Connection {
                id: c.id.clone(),
                token: c.token.clone(),
            }),
            Err(e) => failed(e),
        };
        let call = Call::CreateConnection {
            session: session.to_owned(),
            request_id,
        };
        self.recorder.record(self.id, call, at, outcome);
        result.ok()
    }

    async fn join(&mut self, session: String) {
        let Some(tokens) = self.tokens.get(&session).filter(|t| !t.is_empty()) else {
            return;
        };
        let token = tokens[self.rng.random_range(0..tokens.len())].clone();
        let at = Instant::now();
        let result = self
            .client
            .join_connection(pb::JoinConnectionRequest {
                token: token.clone(),
                ..Default::default()
            })
            .await;
        let outcome = result.map_or_else(|e| failed(&e), |_| Outcome::Ok(Value::Done));
        self.recorder.record(
            self.id,
            Call::JoinConnection { session, token },
            at,
            outcome,
        );
    }

    async fn delete_connection(&mut self, session: String) {
        let Some(ids) = self.connections.get(&session).filter(|c| !c.is_empty()) else {
            return;
        };
        let connection = ids[self.rng.random_range(0..ids.len())].clone();
        let at = Instant::now();
        let result = self
            .client
            .delete_connection(pb::DeleteConnectionRequest {
                session_id: session.clone(),
                connection_id: connection.clone(),
                request_id: String::new(),
            })
            .await;
        let outcome = result.map_or_else(
            |e| failed(&e),
            |r| {
                Outcome::Ok(Value::ConnectionDeleted {
                    session_destroyed: r.session_destroyed,
                })
            },
        );
        self.recorder.record(
            self.id,
            Call::DeleteConnection {
                session,
                connection,
            },
            at,
            outcome,
        );
    }

    async fn get(&mut self, session: String, linearizable: bool) {
        // With --stale-as-linearizable every read is STALE but recorded as if it were
        // linearizable: the checker must catch it.
        let consistency = if linearizable && !self.stale_as_linearizable {
            pb::Consistency::Linearizable
        } else {
            pb::Consistency::Stale
        };
        let recorded_linearizable = linearizable || self.stale_as_linearizable;
        let at = Instant::now();
        let result = self
            .client
            .get_session(pb::GetSessionRequest {
                session_id: session.clone(),
                consistency: consistency as i32,
            })
            .await;
        let outcome = match result {
            Ok(_) => Outcome::Ok(Value::Read { found: true }),
            Err(e) if e.code() == Code::NotFound => Outcome::Ok(Value::Read { found: false }),
            Err(e) => failed(&e),
        };
        self.recorder.record(
            self.id,
            Call::GetSession {
                session,
                linearizable: recorded_linearizable,
            },
            at,
            outcome,
        );
    }

    /// A session of this client's own, and a connection on it sent twice under one id.
    async fn unique_session(&mut self) {
        self.unique += 1;
        let session = format!("u-{}-{}", self.id, self.unique);
        self.create_session(session.clone()).await;
        let request_id = new_request_id();
        for _ in 0..2 {
            self.send_connection(&session, request_id.clone()).await;
        }
    }

    async fn register_node(&mut self) {
        let node = NODES[self.rng.random_range(0..NODES.len())].to_owned();
        let at = Instant::now();
        let result = self
            .client
            .register_media_node(pb::RegisterMediaNodeRequest {
                id: node.clone(),
                uri: format!("ws://127.0.0.1:9/{node}"),
                cores: 2,
                ..Default::default()
            })
            .await;
        let outcome = result.map_or_else(|e| failed(&e), |_| Outcome::Ok(Value::Done));
        self.recorder
            .record(self.id, Call::RegisterNode { node }, at, outcome);
    }
}

/// Runs `clients` workers until `stop`, each through the masters at `endpoints` in its
/// own random order, plus heartbeats for the media nodes.
pub async fn run(
    endpoints: Vec<String>,
    clients: usize,
    seed: u64,
    recorder: Recorder,
    stop: Arc<AtomicBool>,
    stale_as_linearizable: bool,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let client_through = |rng: &mut StdRng| {
        let mut order = endpoints.clone();
        order.shuffle(rng);
        // Each client stays where it starts, as long as that master answers: steering
        // to the leader would send every request there and leave the followers' paths
        // (forwarding, read index, stale reads on a cut-off master) unexercised.
        Client::with_timeouts(&order, crate::cluster::OPERATOR_SECRET, timeouts())
            .unwrap()
            .without_leader_steering()
    };
    let mut beats_rng = StdRng::seed_from_u64(seed);
    let client = client_through(&mut beats_rng);
    for id in 0..clients {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(id as u64));
        let worker = Worker {
            id,
            client: client_through(&mut rng),
            rng,
            recorder: recorder.clone(),
            tokens: BTreeMap::new(),
            connections: BTreeMap::new(),
            unique: 0,
            stale_as_linearizable,
        };
        tasks.spawn(worker.run(stop.clone()));
    }
    let beats = {
        let (client, stop) = (client.clone(), stop.clone());
        async move {
            while !stop.load(Ordering::Relaxed) {
                for node in NODES {
                    let _ = client
                        .heartbeat(pb::HeartbeatRequest {
                            reports: Vec::new(),
                            node_id: node.into(),
                            load: 20.0,
                        })
                        .await;
                }
                // The media nodes' own rhythm.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    tasks.spawn(beats);
    while tasks.join_next().await.is_some() {}
}
