//! ClusterService: the group's shape, and the operator's levers on it.

use std::collections::BTreeSet;

use openraft::async_runtime::WatchReceiver;
use openraft::{RaftMetrics, ServerState};
use tonic::{Request, Response, Status};

use super::pb::cluster_service_server::ClusterService;
use super::pb::{
    AddLearnerRequest, ChangeMembershipRequest, ClusterStatus, GetClusterStatusRequest, Member,
    TransferLeadershipRequest, TriggerSnapshotRequest, TriggerSnapshotResponse,
};
use super::{ClientApi, pb};
use crate::raft::{TypeConfig, read};
use crate::service::MembershipChange;

fn role_name(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl ClientApi {
    fn status_from(&self, m: &RaftMetrics<TypeConfig>) -> ClusterStatus {
        let (last_applied, digest) = self.applied_digest();
        let applied = read(&self.applied);
        let events = applied.state.events();
        let (last_event_id, oldest_event_id, webhook_delivered, webhook_gaps) = (
            events.last_id(),
            events.oldest_id(),
            events.delivered(),
            events.gaps(),
        );
        let autoscaling = applied.state.autoscaling().map(|a| pb::AutoscalingAdvice {
            launch: a.launch,
            drain: a.drain.clone(),
            running: a.running,
            average_load: a.average_load,
            decided_at: a.decided_at,
        });
        drop(applied);
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
            autoscaling,
            last_event_id,
            oldest_event_id,
            webhook_delivered,
            webhook_gaps,
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

    /// Has the leader make `change`, then answers this master's status once it sees it.
    async fn membership_write<T>(
        &self,
        request: &Request<T>,
        change: MembershipChange,
    ) -> Result<Response<ClusterStatus>, Status> {
        let deadline = crate::deadline::of(request.metadata());
        let metrics = self.service.change_membership(change, deadline).await?;
        Ok(Response::new(self.status_from(&metrics)))
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
        let req = request.get_ref().clone();
        let change = MembershipChange::AddLearner {
            id: req.id,
            peer_addr: req.peer_addr,
            blocking: req.blocking,
        };
        self.membership_write(&request, change).await
    }

    async fn change_membership(
        &self,
        request: Request<ChangeMembershipRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let req = request.get_ref();
        let change = if req.voters.is_empty() && !req.remove_learners.is_empty() {
            MembershipChange::RemoveLearners {
                ids: req.remove_learners.clone(),
            }
        } else if !req.remove_learners.is_empty() {
            return Err(Status::invalid_argument(
                "remove_learners: give either voters or learners to remove, not both",
            ));
        } else {
            MembershipChange::ChangeMembership {
                voters: req.voters.clone(),
                retain: req.retain,
            }
        };
        self.membership_write(&request, change).await
    }

    async fn transfer_leadership(
        &self,
        request: Request<TransferLeadershipRequest>,
    ) -> Result<Response<ClusterStatus>, Status> {
        let to = request.get_ref().to;
        self.membership_write(&request, MembershipChange::TransferLeadership { to })
            .await
    }

    async fn trigger_snapshot(
        &self,
        _request: Request<TriggerSnapshotRequest>,
    ) -> Result<Response<TriggerSnapshotResponse>, Status> {
        let snapshot_index = self.service.trigger_snapshot().await?;
        Ok(Response::new(TriggerSnapshotResponse { snapshot_index }))
    }
}
