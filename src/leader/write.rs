//! Client writes as the leader executes them.
//!
//! A [`Write`] is what a client asked for, before anything non-deterministic was
//! decided. Whichever master received the call, the write travels to the leader as it
//! is (forwarded over the peer port by a follower), and only the leader turns it into a
//! [`Command`](crate::state::Command): it reads its clock, draws ids, tokens and token
//! seeds from the OS-seeded CSPRNG, chooses a media node and copies its limits in. A
//! retry that reaches another leader after a failover draws again, but carries the same
//! request id, so the state machine answers it with the first result.
//!
//! Membership changes are writes too (they must reach the leader), but they go to
//! openraft's membership API instead of the state machine.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::BasicNode;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use rand::RngCore;
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use super::fleet::Fleet;
use crate::error::Error;
use crate::raft::{Raft, SharedApplied, TypeConfig, leading_term, not_leader, propose, read};
use crate::state::{
    self, ConnectionType, Limits, MediaMode, MediaNodeStatus, NewConnection, NewSession, Op,
    Outcome, RecordingMode, Role, VideoCodec,
};

/// Random characters after `ses_` in a generated session id (62^16 ≈ 2^95).
const SESSION_ID_CHARS: usize = 16;
/// Random characters after `con_` in a connection id.
const CONNECTION_ID_CHARS: usize = 16;
/// Random characters after `tok_` in a token (62^24 ≈ 2^143): unguessable.
const TOKEN_CHARS: usize = 24;
/// How long a blocking AddLearner waits for the learner to catch up.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(10);
/// How long TransferLeadership waits for the target to lead.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(10);

/// A client's write, as it reached the API: nothing drawn, stamped or chosen yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Write {
    /// SessionService.CreateSession.
    CreateSession {
        /// The client's id; `None`: the leader generates `ses_…`.
        custom_id: Option<String>,
        media_mode: MediaMode,
        recording_mode: RecordingMode,
        forced_video_codec: VideoCodec,
        allow_transcoding: bool,
        /// A RUNNING node to place the session on at once.
        media_node_id: Option<String>,
    },
    /// SessionService.DeleteSession.
    DeleteSession { session_id: String },
    /// ConnectionService.CreateConnection.
    CreateConnection {
        session_id: String,
        connection_type: ConnectionType,
        role: Role,
        server_data: String,
    },
    /// ConnectionService.JoinConnection.
    JoinConnection {
        token: String,
        /// The participant's address, as the master that took the call saw it.
        ip: String,
        client_data: Option<String>,
    },
    /// ConnectionService.DeleteConnection.
    DeleteConnection {
        session_id: String,
        connection_id: String,
    },
    /// MediaNodeService.RegisterMediaNode.
    RegisterMediaNode {
        id: String,
        uri: String,
        environment_id: String,
        cores: u32,
    },
    /// MediaNodeService.SetMediaNodeStatus.
    SetMediaNodeStatus { id: String, status: MediaNodeStatus },
    /// MediaNodeService.DeregisterMediaNode.
    DeregisterMediaNode { id: String, force: bool },
    /// MediaNodeService.Heartbeat: soft state for the leader's memory, logged only when
    /// it changes the node's status (LAUNCHING or CRASHED to RUNNING).
    Heartbeat { node_id: String, load: f64 },
    /// ClusterService.AddLearner.
    AddLearner {
        id: u64,
        peer_addr: String,
        blocking: bool,
    },
    /// ClusterService.ChangeMembership.
    ChangeMembership { voters: BTreeSet<u64>, retain: bool },
    /// ClusterService.TransferLeadership.
    TransferLeadership { to: u64 },
}

/// What executing a [`Write`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Written {
    /// The state machine's answer to a domain write.
    Outcome(Outcome),
    /// A membership change or leadership transfer took effect at this log index (0 for
    /// a transfer, which writes no entry of its own).
    Cluster { index: u64 },
}

impl Write {
    /// Checks what can be checked without the state, so that a malformed request is
    /// refused by the master that received it, before anything is forwarded or logged.
    /// The state machine checks all of it again: this is a fast path, not the guard.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Write::CreateSession {
                custom_id,
                media_node_id,
                ..
            } => {
                if let Some(id) = custom_id {
                    state::validate_session_id(id).map_err(|e| rename(e, "custom_session_id"))?;
                }
                if let Some(id) = media_node_id {
                    state::validate_media_node_id(id)?;
                }
            }
            Write::DeleteSession { session_id } => state::validate_session_id(session_id)?,
            Write::CreateConnection { session_id, .. } => state::validate_session_id(session_id)?,
            Write::JoinConnection { token, ip, .. } => {
                state::validate_token(token)?;
                if ip.len() > state::MAX_IP_LEN {
                    return Err(Error::invalid(
                        "ip",
                        format!("is longer than {} bytes", state::MAX_IP_LEN),
                    ));
                }
            }
            Write::DeleteConnection {
                session_id,
                connection_id,
            } => {
                state::validate_session_id(session_id)?;
                state::validate_connection_id(connection_id)?;
            }
            Write::RegisterMediaNode { id, uri, cores, .. } => {
                state::validate_media_node_id(id).map_err(|e| rename(e, "id"))?;
                if uri.is_empty() {
                    return Err(Error::invalid("uri", "is required"));
                }
                if *cores == 0 {
                    return Err(Error::invalid("cores", "must be at least 1"));
                }
            }
            Write::SetMediaNodeStatus { id, .. } | Write::DeregisterMediaNode { id, .. } => {
                state::validate_media_node_id(id).map_err(|e| rename(e, "id"))?
            }
            Write::Heartbeat { node_id, load } => {
                state::validate_media_node_id(node_id).map_err(|e| rename(e, "node_id"))?;
                if !(0.0..=100.0).contains(load) {
                    return Err(Error::invalid("load", "must be a CPU load from 0 to 100"));
                }
            }
            Write::AddLearner { id, peer_addr, .. } => {
                if *id == 0 {
                    return Err(Error::invalid("id", "must be non-zero"));
                }
                if peer_addr.parse::<std::net::SocketAddr>().is_err() {
                    return Err(Error::invalid(
                        "peer_addr",
                        format!("`{peer_addr}` is not host:port"),
                    ));
                }
            }
            Write::ChangeMembership { voters, .. } => {
                if voters.is_empty() {
                    return Err(Error::invalid("voters", "must name at least one voter"));
                }
            }
            Write::TransferLeadership { to } => {
                if *to == 0 {
                    return Err(Error::invalid("to", "must be non-zero"));
                }
            }
        }
        Ok(())
    }

    /// Whether executing it twice is harmless, so that a master may resend it after an
    /// unknown outcome even without a request id.
    pub fn is_idempotent(&self) -> bool {
        matches!(
            self,
            Write::AddLearner { .. }
                | Write::ChangeMembership { .. }
                | Write::TransferLeadership { .. }
        )
    }
}

/// A domain validation error reported under the API's name for the field.
fn rename(error: state::Error, field: &str) -> Error {
    match error {
        state::Error::InvalidArgument { reason, .. } => Error::invalid(field, reason),
        other => other.into(),
    }
}

/// Executes writes on the leader: decides what is not deterministic and proposes.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    applied: SharedApplied,
    limits: Limits,
    fleet: Fleet,
}

impl Proposer {
    /// A proposer for this master's `raft`, copying `limits` into the ops they govern
    /// and placing sessions with the leader's view of the media nodes, `fleet`.
    pub fn new(raft: Raft, applied: SharedApplied, limits: Limits, fleet: Fleet) -> Self {
        Proposer {
            raft,
            applied,
            limits,
            fleet,
        }
    }

    /// Executes `write` if this master leads; otherwise proposes nothing and answers
    /// [`Error::NotLeader`].
    pub async fn execute(
        &self,
        request_id: Option<String>,
        write: Write,
    ) -> Result<Written, Error> {
        let op = match write {
            Write::AddLearner {
                id,
                peer_addr,
                blocking,
            } => return self.add_learner(id, peer_addr, blocking).await,
            Write::ChangeMembership { voters, retain } => {
                return self.change_membership(voters, retain).await;
            }
            Write::TransferLeadership { to } => return self.transfer_leadership(to).await,
            Write::Heartbeat { node_id, load } => return self.heartbeat(node_id, load).await,
            domain => self.prepare(domain),
        };
        propose(&self.raft, request_id, op)
            .await
            .map(Written::Outcome)
    }

    /// Turns a domain write into an op: draws ids and tokens, copies limits, picks a node.
    fn prepare(&self, write: Write) -> Op {
        let mut rng = rand::rng();
        match write {
            Write::CreateSession {
                custom_id,
                media_mode,
                recording_mode,
                forced_video_codec,
                allow_transcoding,
                media_node_id,
            } => Op::CreateSession(NewSession {
                session_id: custom_id.unwrap_or_else(|| {
                    format!(
                        "ses_{}",
                        Alphanumeric.sample_string(&mut rng, SESSION_ID_CHARS)
                    )
                }),
                media_mode,
                recording_mode,
                forced_video_codec,
                allow_transcoding,
                media_node_id,
                limits: self.limits,
            }),
            Write::DeleteSession { session_id } => Op::DeleteSession { session_id },
            Write::CreateConnection {
                session_id,
                connection_type,
                role,
                server_data,
            } => {
                let place_on = self.placement_for(&session_id);
                Op::CreateConnection(NewConnection {
                    session_id,
                    connection_id: format!(
                        "{}{}",
                        state::CONNECTION_ID_PREFIX,
                        Alphanumeric.sample_string(&mut rng, CONNECTION_ID_CHARS)
                    ),
                    token: format!(
                        "{}{}",
                        state::TOKEN_PREFIX,
                        Alphanumeric.sample_string(&mut rng, TOKEN_CHARS)
                    ),
                    connection_type,
                    role,
                    server_data,
                    place_on,
                    limits: self.limits,
                })
            }
            Write::JoinConnection {
                token,
                ip,
                client_data,
            } => Op::JoinConnection {
                token,
                ip,
                client_data,
                limits: self.limits,
            },
            Write::DeleteConnection {
                session_id,
                connection_id,
            } => Op::DeleteConnection {
                session_id,
                connection_id,
            },
            Write::RegisterMediaNode {
                id,
                uri,
                environment_id,
                cores,
            } => Op::RegisterMediaNode {
                id,
                uri,
                environment_id,
                cores,
            },
            Write::SetMediaNodeStatus { id, status } => Op::SetMediaNodeStatus { id, status },
            Write::DeregisterMediaNode { id, force } => {
                let mut token_seed = [0u8; 32];
                rng.fill_bytes(&mut token_seed);
                Op::DeregisterMediaNode {
                    id,
                    force,
                    token_seed,
                }
            }
            Write::AddLearner { .. }
            | Write::ChangeMembership { .. }
            | Write::TransferLeadership { .. }
            | Write::Heartbeat { .. } => {
                unreachable!("membership writes and heartbeats are executed before prepare")
            }
        }
    }

    /// The node to place `session_id` on if its first connection arrives now: `None`
    /// when it is placed already (or gone; applying will say so).
    fn placement_for(&self, session_id: &str) -> Option<String> {
        // The term this master leads in, as every other use of the fleet keys it.
        let term = leading_term(&self.raft).ok()?;
        let applied = read(&self.applied);
        let state = &applied.state;
        if state.session(session_id)?.is_placed() {
            return None;
        }
        self.fleet
            .at(term)
            .place(state, tokio::time::Instant::now())
    }

    /// A heartbeat reaching the leader: noted in memory, and logged only when it brings
    /// the node to RUNNING. Answers the node as the registry records it.
    async fn heartbeat(&self, node_id: String, load: f64) -> Result<Written, Error> {
        let term = leading_term(&self.raft)?;
        let node = read(&self.applied)
            .state
            .media_node(&node_id)
            .cloned()
            .ok_or_else(|| Error::from(state::Error::not_found("media node", &node_id)))?;
        self.fleet
            .at(term)
            .heartbeat(&node_id, load, tokio::time::Instant::now());
        if !matches!(
            node.status,
            MediaNodeStatus::Launching | MediaNodeStatus::Crashed
        ) {
            return Ok(Written::Outcome(Outcome::MediaNode(node)));
        }
        tracing::info!(node = %node_id, from = %node.status, "media node is running");
        propose(&self.raft, None, Op::MediaNodeSeen { id: node_id })
            .await
            .map(Written::Outcome)
    }

    async fn add_learner(
        &self,
        id: u64,
        peer_addr: String,
        blocking: bool,
    ) -> Result<Written, Error> {
        tracing::info!(learner = id, addr = %peer_addr, "adding a learner");
        // A blocking add waits for the learner to catch up; one that never answers must
        // not hold the call forever.
        let response = tokio::time::timeout(
            LEARNER_CATCH_UP,
            self.raft
                .add_learner(id, BasicNode::new(&peer_addr), blocking),
        )
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "learner {id} added but not caught up within {LEARNER_CATCH_UP:?}"
            ))
        })?
        .map_err(|e| self.membership_error(e))?;
        Ok(Written::Cluster {
            index: response.log_id.index,
        })
    }

    async fn change_membership(
        &self,
        voters: BTreeSet<u64>,
        retain: bool,
    ) -> Result<Written, Error> {
        tracing::info!(?voters, retain, "changing membership");
        let response = self
            .raft
            .change_membership(voters, retain)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(Written::Cluster {
            index: response.log_id.index,
        })
    }

    async fn transfer_leadership(&self, to: u64) -> Result<Written, Error> {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == to)
        {
            return Err(Error::invalid("to", format!("master {to} is not a voter")));
        }
        if metrics.current_leader == Some(to) {
            return Ok(Written::Cluster { index: 0 });
        }
        if metrics.current_leader != Some(metrics.id) {
            return Err(not_leader(metrics.id, metrics.current_leader));
        }
        tracing::info!(to, "transferring leadership");
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        self.raft
            .wait(Some(TRANSFER_DEADLINE))
            .metrics(|m| m.current_leader == Some(to), "leadership transferred")
            .await
            .map_err(|e| Error::Unavailable(format!("leadership did not move to {to}: {e}")))?;
        Ok(Written::Cluster { index: 0 })
    }

    /// Maps a membership-change failure: a follower cannot change membership, and a
    /// change already in progress or a missing learner are the caller's to fix.
    fn membership_error(&self, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                not_leader(*self.raft.node_id(), f.leader_id)
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Error::FailedPrecondition(e.to_string())
            }
            RaftError::APIError(other) => Error::Unavailable(other.to_string()),
            RaftError::Fatal(fatal) => Error::Unavailable(format!("raft stopped: {fatal}")),
        }
    }
}
