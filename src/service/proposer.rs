//! The leader's side of every request: what only the leader may decide, then a proposal.
//!
//! Whichever master received a call, the request reaches the leader as it is (forwarded
//! over the peer port by a follower), and only here is it turned into a
//! [`Command`](crate::state::Command): the leader reads its clock, draws ids, tokens and
//! token seeds from the OS-seeded CSPRNG, chooses a media node and copies its limits in.
//! A retry that reaches another leader after a failover draws again, but carries the
//! same request id, so the state machine answers it with the first result.
//!
//! [`Proposer::execute_by`] and [`read_index_by`] are the two leader-side steps, each
//! bounded by the caller's deadline; both the local path and the peer server call them.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::BasicNode;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, LinearizableReadError, RaftError};
use rand::RngCore;
use rand::distr::{Alphanumeric, SampleString};
use tokio::time::Instant;

use super::request::{Executed, Heartbeat, HeartbeatAnswer, MembershipChange, Request, Write};
use crate::error::Error;
use crate::fleet::Fleet;
use crate::raft::{Raft, SharedApplied, TypeConfig, leading_term, not_leader, propose, read};
use crate::state::{self, Limits, MediaNodeStatus, NewConnection, NewSession, Op, Outcome};

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

/// Executes requests on the leader: decides what is not deterministic and proposes.
#[derive(Clone)]
pub struct Proposer {
    raft: Raft,
    applied: SharedApplied,
    limits: Limits,
    fleet: Fleet,
    /// Proves a learner's identity before it is added.
    masters: std::sync::Arc<dyn super::forward::LeaderLink>,
}

impl Proposer {
    /// A proposer for this master's `raft`, copying `limits` into the ops they govern
    /// and placing sessions with the leader's view of the media nodes, `fleet`.
    /// `masters` reaches the other masters (to prove a learner before adding it).
    pub fn new(
        raft: Raft,
        applied: SharedApplied,
        limits: Limits,
        fleet: Fleet,
        masters: std::sync::Arc<dyn super::forward::LeaderLink>,
    ) -> Self {
        Proposer {
            raft,
            applied,
            limits,
            fleet,
            masters,
        }
    }

    /// Executes `request` if this master leads, by `deadline`; otherwise proposes
    /// nothing and answers [`Error::NotLeader`]. A request still running at the deadline
    /// has an unknown outcome, and says so.
    pub async fn execute_by(&self, request: Request, deadline: Instant) -> Result<Executed, Error> {
        tokio::time::timeout_at(deadline, self.execute(request))
            .await
            .unwrap_or_else(|_| Err(outcome_unknown()))
    }

    async fn execute(&self, request: Request) -> Result<Executed, Error> {
        match request {
            Request::Write { request_id, write } => {
                let op = self.prepare(write);
                propose(&self.raft, request_id, op)
                    .await
                    .map(Executed::Outcome)
            }
            Request::Membership(change) => {
                let index = match change {
                    MembershipChange::AddLearner {
                        id,
                        peer_addr,
                        blocking,
                    } => self.add_learner(id, peer_addr, blocking).await?,
                    MembershipChange::ChangeMembership { voters, retain } => {
                        self.change_membership(voters.into_iter().collect(), retain)
                            .await?
                    }
                    MembershipChange::RemoveLearners { ids } => {
                        self.remove_learners(ids.into_iter().collect()).await?
                    }
                    MembershipChange::TransferLeadership { to } => {
                        self.transfer_leadership(to).await?
                    }
                };
                Ok(Executed::Membership { index })
            }
            Request::Heartbeat(heartbeat) => {
                self.heartbeat(heartbeat).await.map(Executed::Heartbeat)
            }
        }
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
                options,
                recording_defaults,
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
                options,
                recording_defaults,
                limits: self.limits,
            }),
            Write::DeleteSession { session_id } => Op::DeleteSession { session_id },
            Write::CreateConnection {
                session_id,
                connection_type,
                role,
                server_data,
                record,
                options,
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
                    record,
                    options,
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
            Write::UpdateConnection {
                session_id,
                connection_id,
                role,
                record,
            } => Op::UpdateConnection {
                session_id,
                connection_id,
                role,
                record,
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
                can_record,
            } => Op::RegisterMediaNode {
                id,
                uri,
                environment_id,
                cores,
                can_record,
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
            Write::StartRecording {
                session_id,
                properties,
            } => Op::StartRecording {
                session_id,
                properties,
            },
            Write::StopRecording { recording_id } => Op::StopRecording { recording_id },
            Write::DeleteRecording { recording_id } => Op::DeleteRecording { recording_id },
        }
    }

    /// The node to place `session_id` on if its first connection arrives now: `None`
    /// when it is placed already (or gone; applying will say so).
    fn placement_for(&self, session_id: &str) -> Option<String> {
        // The term this master leads in, as every other use of the fleet keys it.
        let term = leading_term(&self.raft).ok()?;
        let applied = read(&self.applied);
        let state = &applied.state;
        let session = state.session(session_id)?;
        if session.is_placed() {
            return None;
        }
        self.fleet
            .at(term)
            .place(state, session, tokio::time::Instant::now())
    }

    /// A heartbeat reaching the leader: noted in memory, and logged only when it brings
    /// the node to RUNNING or reports what a recording hook did. Answers the node's
    /// status as the registry records it, and its recording tasks.
    async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<HeartbeatAnswer, Error> {
        let Heartbeat {
            node_id,
            load,
            reports,
        } = heartbeat;
        let status = self.node_seen(&node_id, load).await?;
        // Only a report the state still waits for becomes a command: an agent resends
        // its reports until the task is gone.
        let awaited: std::collections::HashSet<String> = read(&self.applied)
            .state
            .recording_tasks(&node_id)
            .into_iter()
            .map(|(r, _)| r.id.clone())
            .collect();
        for (recording_id, outcome) in reports {
            if awaited.contains(&recording_id) {
                let op = Op::RecordingReported {
                    media_node_id: node_id.clone(),
                    recording_id,
                    outcome,
                };
                propose(&self.raft, None, op).await?;
            }
        }
        let applied = read(&self.applied);
        let tasks = applied
            .state
            .recording_tasks(&node_id)
            .into_iter()
            .map(|(r, action)| (r.id.clone(), r.session_id.clone(), action))
            .collect();
        Ok(HeartbeatAnswer { status, tasks })
    }

    /// Notes a heartbeat's load, and logs it if it brings the node to RUNNING; the
    /// node's status.
    async fn node_seen(&self, node_id: &str, load: f64) -> Result<MediaNodeStatus, Error> {
        let node_id = node_id.to_owned();
        let term = leading_term(&self.raft)?;
        let status = read(&self.applied)
            .state
            .media_node(&node_id)
            .map(|node| node.status)
            .ok_or_else(|| Error::from(state::Error::not_found("media node", &node_id)))?;
        self.fleet
            .at(term)
            .heartbeat(&node_id, load, tokio::time::Instant::now());
        if !matches!(
            status,
            MediaNodeStatus::Launching | MediaNodeStatus::Crashed
        ) {
            return Ok(status);
        }
        tracing::info!(node = %node_id, from = %status, "media node is running");
        match propose(&self.raft, None, Op::MediaNodeSeen { id: node_id }).await? {
            Outcome::MediaNode(node) => Ok(node.status),
            other => Err(Error::Internal(format!(
                "a media node seen answered {other:?}"
            ))),
        }
    }

    async fn add_learner(&self, id: u64, peer_addr: String, blocking: bool) -> Result<u64, Error> {
        // Nothing, not even the cluster secret, goes to an address that cannot prove it
        // is master `id`; a member already at this address and id was proven before.
        let known = self
            .membership()
            .membership()
            .get_node(&id)
            .is_some_and(|node| node.addr == peer_addr);
        if !known {
            self.masters.prove_member(id, &peer_addr).await?;
        }
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
        Ok(response.log_id.index)
    }

    async fn change_membership(&self, voters: BTreeSet<u64>, retain: bool) -> Result<u64, Error> {
        tracing::info!(?voters, retain, "changing membership");
        let response = self
            .raft
            .change_membership(voters, retain)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(response.log_id.index)
    }

    /// The latest membership this master knows.
    fn membership(
        &self,
    ) -> std::sync::Arc<openraft::type_config::alias::StoredMembershipOf<crate::raft::TypeConfig>>
    {
        self.raft
            .metrics()
            .borrow_watched()
            .membership_config
            .clone()
    }

    async fn remove_learners(&self, ids: BTreeSet<u64>) -> Result<u64, Error> {
        let stored = self.membership();
        let membership = stored.membership();
        for id in &ids {
            if membership.voter_ids().any(|voter| voter == *id) {
                return Err(Error::invalid(
                    "remove_learners",
                    format!(
                        "master {id} is a voter: make it a learner first (voters without it, retain)"
                    ),
                ));
            }
            if membership.get_node(id).is_none() {
                return Err(Error::invalid(
                    "remove_learners",
                    format!("master {id} is not a member"),
                ));
            }
        }
        tracing::info!(?ids, "removing learners");
        let response = self
            .raft
            .change_membership(openraft::ChangeMembers::RemoveNodes(ids), false)
            .await
            .map_err(|e| self.membership_error(e))?;
        Ok(response.log_id.index)
    }

    async fn transfer_leadership(&self, to: u64) -> Result<u64, Error> {
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
            return Ok(0);
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
        Ok(0)
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

/// The read index this master confirms as leader by `deadline`: its commit index once a
/// quorum confirmed it still leads (Raft §8, openraft's read-index linearizer).
pub async fn read_index_by(raft: &Raft, deadline: Instant) -> Result<u64, Error> {
    let linearizer = tokio::time::timeout_at(
        deadline,
        raft.get_read_linearizer(openraft::ReadPolicy::ReadIndex),
    )
    .await
    .map_err(|_| {
        Error::Unavailable("leadership not confirmed by a quorum within the deadline".into())
    })?;
    match linearizer {
        Ok(linearizer) => Ok(linearizer.read_log_id().index()),
        Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
            Err(not_leader(*raft.node_id(), f.leader_id))
        }
        Err(e) => Err(Error::Unavailable(format!("no read index: {e}"))),
    }
}

fn outcome_unknown() -> Error {
    Error::Unavailable(
        "the write did not complete within its deadline; its outcome is unknown: retry with \
         the same request_id"
            .into(),
    )
}
