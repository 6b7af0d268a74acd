//! MediaNodeService. Heartbeats go to the leader like writes, but only their effect on
//! a node's status is logged; the load stays in the leader's memory (see
//! [`crate::fleet::Fleet`]).

use tonic::{Request, Response, Status};

use super::convert::media_node;
use super::pb::media_node_service_server::MediaNodeService;
use super::pb::{
    DeregisterMediaNodeRequest, DeregisterMediaNodeResponse, GetMediaNodeRequest, HeartbeatRequest,
    HeartbeatResponse, ListMediaNodesRequest, ListMediaNodesResponse, MediaNode,
    RegisterMediaNodeRequest, SetMediaNodeStatusRequest,
};
use super::{ClientApi, optional, page, parse};
use crate::error::Error;
use crate::service::{Heartbeat, Write, reused_request_id};
use crate::state::{Outcome, State};

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
        let heartbeat = Heartbeat {
            node_id: req.node_id,
            load: req.load,
        };
        let deadline = crate::deadline::of(request.metadata());
        let status = self.service.heartbeat(heartbeat, deadline).await?;
        Ok(Response::new(HeartbeatResponse {
            status: status.to_string(),
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
