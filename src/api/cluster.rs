//! ClusterService: the group's shape, and the operator's levers on it.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use tonic::{Request, Response, Status};

use super::ClientApi;
use super::pb::cluster_service_server::ClusterService;
use super::pb::{
    AddLearnerRequest, ChangeMembershipRequest, ClusterStatus, GetClusterStatusRequest, Member,
    TransferLeadershipRequest, TriggerSnapshotRequest, TriggerSnapshotResponse,
};
use crate::error::Error;
use crate::raft::{TypeConfig, not_leader, read};

/// How long TransferLeadership and TriggerSnapshot wait for their effect.
const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

/// Maps a membership-change failure: a follower cannot change membership, and a change
/// already in progress or a missing learner are the caller's to fix.
fn membership_error(me: u64, e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> Error {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(me, f.leader_id),
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            Error::FailedPrecondition(e.to_string())
        }
        RaftError::APIError(other) => Error::Unavailable(other.to_string()),
        RaftError::Fatal(fatal) => Error::Unavailable(format!("raft stopped: {fatal}")),
    }
}

impl ClientApi {
    fn status_from(&self, m: &RaftMetrics<TypeConfig>) -> ClusterStatus {
        let (last_applied, digest) = self.applied_digest();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<u64> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, node)| {
                let voter = voters.contains(id);
                let role = if Some(*id) == m.current_leader {
                    "leader"
                } else if *id == self.id {
                    role_name(m.state)
                } else if voter {
                    "follower"
                } else {
                    "learner"
                };
                let member_applied = if *id == self.id {
                    last_applied
                } else {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(id).copied().flatten())
                        .map_or(0, |log_id| log_id.index)
                };
                Member {
                    id: *id,
                    role: role.into(),
                    peer_addr: node.addr.clone(),
                    last_applied: member_applied,
                    voter,
                }
            })
            .collect();
        ClusterStatus {
            id: self.id,
            leader_id: m.current_leader.unwrap_or(0),
            term: m.current_term,
            members,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied,
            snapshot_index: m.snapshot.map_or(0, |id| id.index),
            state_digest: digest,
            role: role_name(m.state).into(),
            joint: membership.get_joint_config().len() > 1,
            purged_index: m.purged.map_or(0, |id| id.index),
        }
    }

    /// The applied index and the digest of the state at that index, computed at most
    /// once per index.
    fn applied_digest(&self) -> (u64, String) {
        let applied = read(&self.applied);
        let index = applied.last_applied.map_or(0, |id| id.index);
        let mut cached = self.digest.lock().expect("digest cache poisoned");
        if cached.1.is_empty() || cached.0 != index {
            *cached = (index, applied.state.digest_hex());
        }
        cached.clone()
    }

    fn current_status(&self) -> ClusterStatus {
        let metrics = self.raft.metrics().borrow_watched().clone();
        self.status_from(&metrics)
    }
}

#[tonic::async_trait]
impl ClusterService for ClientApi {
    async fn get_cluster_status(
        &self,
        _request: Request<GetClusterStatusRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        Ok(Response::new(self.current_status()))
    }

    async fn add_learner(
        &self,
        request: Request<AddLearnerRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let req = request.into_inner();
        if req.id == 0 {
            return Err(Error::invalid("id", "must be non-zero").into());
        }
        if req.peer_addr.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::invalid(
                "peer_addr",
                format!("`{}` is not host:port", req.peer_addr),
            )
            .into());
        }
        tracing::info!(learner = req.id, addr = %req.peer_addr, "adding a learner");
        // A blocking add waits for the learner to catch up; a learner that never answers
        // must not hold the call (and the master's shutdown) forever.
        tokio::time::timeout(
            OPERATION_DEADLINE,
            self.raft
                .add_learner(req.id, BasicNode::new(&req.peer_addr), req.blocking),
        )
        .await
        .map_err(|_| {
            Error::Unavailable(format!(
                "learner {} added but not caught up within {OPERATION_DEADLINE:?}",
                req.id
            ))
        })?
        .map_err(|e| membership_error(self.id, e))?;
        Ok(Response::new(self.current_status()))
    }

    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let req = request.into_inner();
        let voters: BTreeSet<u64> = req.voters.iter().copied().collect();
        if voters.is_empty() {
            return Err(Error::invalid("voters", "must name at least one voter").into());
        }
        if voters.len() != req.voters.len() {
            return Err(Error::invalid("voters", "lists a voter twice").into());
        }
        tracing::info!(?voters, retain = req.retain, "changing membership");
        self.raft
            .change_membership(voters, req.retain)
            .await
            .map_err(|e| membership_error(self.id, e))?;
        Ok(Response::new(self.current_status()))
    }

    async fn transfer_leadership(
        &self,
        request: Request<TransferLeadershipRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let to = request.into_inner().to;
        let metrics = self.raft.metrics().borrow_watched().clone();
        if !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == to)
        {
            return Err(Error::invalid("to", format!("master {to} is not a voter")).into());
        }
        if metrics.current_leader == Some(to) {
            return Ok(Response::new(self.status_from(&metrics)));
        }
        if metrics.state != ServerState::Leader {
            return Err(Error::Unavailable(format!(
                "this master is not the leader (leader: {})",
                metrics
                    .current_leader
                    .map_or("unknown".into(), |id| id.to_string())
            ))
            .into());
        }
        self.raft
            .trigger()
            .transfer_leader(to)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let metrics = self
            .raft
            .wait(Some(OPERATION_DEADLINE))
            .metrics(|m| m.current_leader == Some(to), "leadership transferred")
            .await
            .map_err(|e| Error::Unavailable(format!("leadership did not move to {to}: {e}")))?;
        Ok(Response::new(self.status_from(&metrics)))
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<TriggerSnapshotRequest>,
    ) -> Result<Response<TriggerSnapshotResponse>, Status> {
        let applied = self.raft.metrics().borrow_watched().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let metrics = self
            .raft
            .wait(Some(OPERATION_DEADLINE))
            .metrics(
                |m| m.snapshot.map(|s| s.index) >= applied.map(|a| a.index),
                "snapshot built",
            )
            .await
            .map_err(|e| Error::Unavailable(format!("snapshot not built: {e}")))?;
        Ok(Response::new(TriggerSnapshotResponse {
            snapshot_index: metrics.snapshot.map_or(0, |id| id.index),
        }))
    }
}
