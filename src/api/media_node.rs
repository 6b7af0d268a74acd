//! MediaNodeService. Heartbeats go to the leader like writes, but only their effect on
//! a node's status is logged; the load stays in the leader's memory (see
//! [`crate::fleet::Fleet`]).

use tonic::{Request, Response, Status};

use super::convert::media_node;
use super::pb::media_node_service_server::MediaNodeService;
use super::pb::{
    DeregisterMediaNodeRequest, DeregisterMediaNodeResponse, GetMediaNodeRequest, HeartbeatRequest,
    HeartbeatResponse, ListMediaNodesRequest, ListMediaNodesResponse, MediaNode, RecordingReport,
    RecordingTask, RegisterMediaNodeRequest, SetMediaNodeStatusRequest,
};
use super::{ClientApi, optional, page, parse};
use crate::error::Error;
use crate::service::{Heartbeat, Write, reused_request_id};
use crate::state::{HookOutcome, Outcome, RecordingAction, State};

/// A hook's report as the state takes it.
fn report(r: RecordingReport) -> Result<(String, HookOutcome), Error> {
    let action: RecordingAction = super::parse(&r.action, "reports.action")?;
    let outcome = match (r.ok, action) {
        (false, _) => HookOutcome::Failed(r.error),
        (true, RecordingAction::Start) => HookOutcome::Started,
        (true, RecordingAction::Stop) => {
            let duration_ms = match r.duration {
                Some(s) if s.is_finite() && (0.0..=1e9).contains(&s) => Some((s * 1000.0) as u64),
                Some(s) => {
                    return Err(Error::invalid(
                        "reports.duration",
                        format!("must be seconds from 0 to 1e9, got {s}"),
                    ));
                }
                None => None,
            };
            HookOutcome::Finished {
                size: r.size,
                duration_ms,
                url: optional(r.url),
            }
        }
    };
    Ok((r.recording_id, outcome))
}

/// The sessions `node_id` serves, by id.
fn sessions_on(state: &State, node_id: &str) -> Vec<String> {
    state.session_ids_on(node_id).cloned().collect()
}

#[tonic::async_trait]
impl MediaNodeService for ClientApi {
    async fn register_media_node(
        &self,
        request: Request<RegisterMediaNodeRequest>,
    ) -> Result<Response<MediaNode>, Status> {
        let req = request.get_ref().clone();
        crate::auth::act_for_node(&request, &req.id)?;
        let write = Write::RegisterMediaNode {
            id: req.id,
            uri: req.uri,
            environment_id: req.environment_id,
            cores: req.cores,
            can_record: req.can_record,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::MediaNode(node) => Ok(Response::new(media_node(&node, Vec::new(), None))),
            other => Err(reused_request_id(other).into()),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.get_ref().clone();
        crate::auth::act_for_node(&request, &req.node_id)?;
        let reports = req
            .reports
            .into_iter()
            .map(report)
            .collect::<Result<Vec<_>, Error>>()?;
        let heartbeat = Heartbeat {
            node_id: req.node_id,
            load: req.load,
            reports,
        };
        let deadline = crate::deadline::of(request.metadata());
        let answer = self.service.heartbeat(heartbeat, deadline).await?;
        Ok(Response::new(HeartbeatResponse {
            status: answer.status.to_string(),
            tasks: answer
                .tasks
                .into_iter()
                .map(|(recording_id, session_id, action)| RecordingTask {
                    recording_id,
                    session_id,
                    action: action.to_string(),
                })
                .collect(),
        }))
    }

    async fn get_media_node(
        &self,
        request: Request<GetMediaNodeRequest>,
    ) -> Result<Response<MediaNode>, Status> {
        let req = request.get_ref();
        // The application reads any node; a media node only its own.
        if let Some(crate::auth::Principal::MediaNode(_)) = request.extensions().get() {
            crate::auth::act_for_node(&request, &req.id)?;
        }
        let applied = self.read(&request, req.consistency).await?;
        let load = self.service.loads();
        let node = applied
            .state
            .find_media_node(&req.id)
            .map_err(Error::from)?;
        Ok(Response::new(media_node(
            node,
            sessions_on(&applied.state, &node.id),
            load(&node.id),
        )))
    }

    async fn list_media_nodes(
        &self,
        request: Request<ListMediaNodesRequest>,
    ) -> Result<Response<ListMediaNodesResponse>, Status> {
        let req = request.get_ref();
        let applied = self.read(&request, req.consistency).await?;
        let load = self.service.loads();
        let after = optional(req.page_token.clone());
        let (media_nodes, next_page_token) = page(
            applied
                .state
                .media_nodes()
                .filter(|node| {
                    after
                        .as_deref()
                        .is_none_or(|after| node.id.as_str() > after)
                })
                .map(|node| {
                    media_node(node, sessions_on(&applied.state, &node.id), load(&node.id))
                }),
            req.page_size,
            |n| n.id.clone(),
        );
        Ok(Response::new(ListMediaNodesResponse {
            media_nodes,
            next_page_token,
        }))
    }

    async fn set_media_node_status(
        &self,
        request: Request<SetMediaNodeStatusRequest>,
    ) -> Result<Response<MediaNode>, Status> {
        let req = request.get_ref().clone();
        crate::auth::act_for_node(&request, &req.id)?;
        let write = Write::SetMediaNodeStatus {
            id: req.id,
            status: parse(&req.status, "status")?,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::MediaNode(node) => {
                let load = self.service.loads();
                let applied = crate::raft::read(&self.applied);
                Ok(Response::new(media_node(
                    &node,
                    sessions_on(&applied.state, &node.id),
                    load(&node.id),
                )))
            }
            other => Err(reused_request_id(other).into()),
        }
    }

    async fn deregister_media_node(
        &self,
        request: Request<DeregisterMediaNodeRequest>,
    ) -> Result<Response<DeregisterMediaNodeResponse>, Status> {
        let req = request.get_ref().clone();
        crate::auth::act_for_node(&request, &req.id)?;
        let write = Write::DeregisterMediaNode {
            id: req.id,
            force: req.force,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::MediaNodeDeregistered {
                media_node: node,
                displaced_sessions,
            } => Ok(Response::new(DeregisterMediaNodeResponse {
                media_node: Some(media_node(&node, displaced_sessions.clone(), None)),
                displaced_session_ids: displaced_sessions,
            })),
            other => Err(reused_request_id(other).into()),
        }
    }
}
