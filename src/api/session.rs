//! SessionService.

use tonic::{Request, Response, Status};

use super::pb::session_service_server::SessionService;
use super::pb::{
    CreateSessionRequest, DeleteSessionRequest, DeleteSessionResponse, GetSessionRequest,
    ListSessionsRequest, ListSessionsResponse, Session,
};
use super::{ClientApi, optional, page, parse_or_default, unexpected};
use crate::error::Error;
use crate::leader::Write;
use crate::state::{self, Outcome};

#[tonic::async_trait]
impl SessionService for ClientApi {
    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let req = request.get_ref().clone();
        let write = Write::CreateSession {
            custom_id: optional(req.custom_session_id),
            media_mode: parse_or_default(&req.media_mode, "media_mode")?,
            recording_mode: parse_or_default(&req.recording_mode, "recording_mode")?,
            forced_video_codec: parse_or_default(&req.forced_video_codec, "forced_video_codec")?,
            allow_transcoding: req.allow_transcoding,
            media_node_id: optional(req.media_node_id),
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::Session(session) => Ok(Response::new((&session).into())),
            other => Err(unexpected(other).into()),
        }
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let req = request.get_ref();
        self.read_barrier(&request, req.consistency).await?;
        let applied = crate::raft::read(&self.applied);
        let session = applied
            .state
            .session(&req.session_id)
            .ok_or_else(|| Error::from(state::Error::not_found("session", &req.session_id)))?;
        Ok(Response::new(session.into()))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let req = request.get_ref();
        self.read_barrier(&request, req.consistency).await?;
        let applied = crate::raft::read(&self.applied);
        let after = optional(req.page_token.clone());
        let (sessions, next_page_token) = page(
            applied
                .state
                .sessions_after(after.as_deref())
                .map(Session::from),
            req.page_size,
            |s| s.id.clone(),
        );
        Ok(Response::new(ListSessionsResponse {
            sessions,
            next_page_token,
        }))
    }

    async fn delete_session(
        &self,
        request: Request<DeleteSessionRequest>,
    ) -> Result<Response<DeleteSessionResponse>, Status> {
        let req = request.get_ref().clone();
        if req.session_id.is_empty() {
            return Err(Error::invalid("session_id", "is required").into());
        }
        let write = Write::DeleteSession {
            session_id: req.session_id,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::SessionDeleted {
                session_id,
                connections_removed,
                ..
            } => Ok(Response::new(DeleteSessionResponse {
                session_id,
                connections_removed,
            })),
            other => Err(unexpected(other).into()),
        }
    }
}
