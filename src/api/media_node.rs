//! MediaNodeService. Heartbeats go to the leader like writes, but only their effect on
//! a node's status is logged; the load stays in the leader's memory (see
//! [`crate::leader::Fleet`]).

use tonic::{Request, Response, Status};

use super::convert::media_node;
use super::pb::media_node_service_server::MediaNodeService;
use super::pb::{
    DeregisterMediaNodeRequest, DeregisterMediaNodeResponse, GetMediaNodeRequest, HeartbeatRequest,
    HeartbeatResponse, ListMediaNodesRequest, ListMediaNodesResponse, MediaNode,
    RegisterMediaNodeRequest, SetMediaNodeStatusRequest,
};
use super::{ClientApi, optional, page, parse, unexpected};
use crate::error::Error;
use crate::leader::Write;
use crate::state::{self, Outcome, State};

impl ClientApi {
    /// The loads the media nodes reported, as a lookup: empty unless this master leads
    /// (the loads are the leader's soft state).
    fn loads(&self) -> impl Fn(&str) -> Option<f64> + '_ {
        let term = crate::raft::leading_term(&self.raft).ok();
        move |node_id| term.and_then(|term| self.fleet.at(term).load(node_id))
    }
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
        let write = Write::RegisterMediaNode {
            id: req.id,
            uri: req.uri,
            environment_id: req.environment_id,
            cores: req.cores,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::MediaNode(node) => Ok(Response::new(media_node(&node, Vec::new(), None))),
            other => Err(unexpected(other).into()),
        }
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        let req = request.get_ref().clone();
        let write = Write::Heartbeat {
            node_id: req.node_id,
            load: req.load,
        };
        match self.apply(&request, String::new(), write).await? {
            Outcome::MediaNode(node) => Ok(Response::new(HeartbeatResponse {
                status: node.status.to_string(),
            })),
            other => Err(unexpected(other).into()),
        }
    }

    async fn get_media_node(
        &self,
        request: Request<GetMediaNodeRequest>,
    ) -> Result<Response<MediaNode>, Status> {
        let req = request.get_ref();
        self.read_barrier(&request, req.consistency).await?;
        let load = self.loads();
        let applied = crate::raft::read(&self.applied);
        let node = applied
            .state
            .media_node(&req.id)
            .ok_or_else(|| Error::from(state::Error::not_found("media node", &req.id)))?;
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
        self.read_barrier(&request, req.consistency).await?;
        let load = self.loads();
        let applied = crate::raft::read(&self.applied);
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
        let write = Write::SetMediaNodeStatus {
            id: req.id,
            status: parse(&req.status, "status")?,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::MediaNode(node) => {
                let load = self.loads();
                let applied = crate::raft::read(&self.applied);
                Ok(Response::new(media_node(
                    &node,
                    sessions_on(&applied.state, &node.id),
                    load(&node.id),
                )))
            }
            other => Err(unexpected(other).into()),
        }
    }

    async fn deregister_media_node(
        &self,
        request: Request<DeregisterMediaNodeRequest>,
    ) -> Result<Response<DeregisterMediaNodeResponse>, Status> {
        let req = request.get_ref().clone();
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
            other => Err(unexpected(other).into()),
        }
    }
}
