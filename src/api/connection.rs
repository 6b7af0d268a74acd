//! ConnectionService.

use std::ops::Bound;

use tonic::{Request, Response, Status};

use super::convert::connection;
use super::pb::connection_service_server::ConnectionService;
use super::pb::{
    Connection, CreateConnectionRequest, DeleteConnectionRequest, DeleteConnectionResponse,
    GetConnectionRequest, JoinConnectionRequest, ListConnectionsRequest, ListConnectionsResponse,
    UpdateConnectionRequest,
};
use super::{ClientApi, optional, page, parse, parse_or_default};
use crate::error::Error;
use crate::service::{Write, reused_request_id};
use crate::state::Outcome;

/// The answer to a write that yields a connection (create, join).
fn connection_answer(outcome: Outcome) -> Result<Response<Connection>, Status> {
    match outcome {
        Outcome::Connection {
            session_id,
            connection: c,
            media_node_id,
        } => Ok(Response::new(connection(
            &c,
            &session_id,
            media_node_id.as_deref(),
        ))),
        other => Err(reused_request_id(other).into()),
    }
}

#[tonic::async_trait]
impl ConnectionService for ClientApi {
    async fn create_connection(
        &self,
        request: Request<CreateConnectionRequest>,
    ) -> Result<Response<Connection>, Status> {
        let req = request.get_ref().clone();
        let write = Write::CreateConnection {
            session_id: req.session_id,
            connection_type: parse_or_default(&req.r#type, "type")?,
            role: parse_or_default(&req.role, "role")?,
            server_data: req.server_data,
            record: req.record.unwrap_or(true),
            options: None,
        };
        connection_answer(self.apply(&request, req.request_id, write).await?)
    }

    async fn get_connection(
        &self,
        request: Request<GetConnectionRequest>,
    ) -> Result<Response<Connection>, Status> {
        let req = request.get_ref();
        let applied = self.read(&request, req.consistency).await?;
        let (session, c) = applied
            .state
            .find_connection(&req.session_id, &req.connection_id)
            .map_err(Error::from)?;
        Ok(Response::new(connection(
            c,
            &session.id,
            session.media_node_id.as_deref(),
        )))
    }

    async fn list_connections(
        &self,
        request: Request<ListConnectionsRequest>,
    ) -> Result<Response<ListConnectionsResponse>, Status> {
        let req = request.get_ref();
        let applied = self.read(&request, req.consistency).await?;
        let session = applied
            .state
            .find_session(&req.session_id)
            .map_err(Error::from)?;
        let node = session.media_node_id.as_deref();
        let start = match optional(req.page_token.clone()) {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let (connections, next_page_token) = page(
            session
                .connections
                .range::<String, _>((start, Bound::Unbounded))
                .map(|(_, c)| connection(c, &session.id, node)),
            req.page_size,
            |c| c.id.clone(),
        );
        Ok(Response::new(ListConnectionsResponse {
            connections,
            next_page_token,
        }))
    }

    async fn join_connection(
        &self,
        request: Request<JoinConnectionRequest>,
    ) -> Result<Response<Connection>, Status> {
        let req = request.get_ref().clone();
        let ip = match optional(req.ip) {
            Some(ip) => ip,
            None => request
                .remote_addr()
                .map(|addr| addr.ip().to_string())
                .unwrap_or_default(),
        };
        let write = Write::JoinConnection {
            token: req.token,
            ip,
            client_data: req.client_data,
        };
        connection_answer(self.apply(&request, req.request_id, write).await?)
    }

    async fn update_connection(
        &self,
        request: Request<UpdateConnectionRequest>,
    ) -> Result<Response<Connection>, Status> {
        let req = request.get_ref().clone();
        let write = Write::UpdateConnection {
            session_id: req.session_id,
            connection_id: req.connection_id,
            role: req.role.map(|role| parse(&role, "role")).transpose()?,
            record: req.record,
        };
        connection_answer(self.apply(&request, req.request_id, write).await?)
    }

    async fn delete_connection(
        &self,
        request: Request<DeleteConnectionRequest>,
    ) -> Result<Response<DeleteConnectionResponse>, Status> {
        let req = request.get_ref().clone();
        let write = Write::DeleteConnection {
            session_id: req.session_id,
            connection_id: req.connection_id,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::ConnectionDeleted {
                session_id,
                connection_id,
                session_destroyed,
            } => Ok(Response::new(DeleteConnectionResponse {
                session_id,
                connection_id,
                session_destroyed,
            })),
            other => Err(reused_request_id(other).into()),
        }
    }
}
