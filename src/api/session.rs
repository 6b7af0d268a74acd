//! SessionService.

use tonic::{Request, Response, Status};

use super::pb::session_service_server::SessionService;
use super::pb::{
    CreateSessionRequest, DeleteSessionRequest, DeleteSessionResponse, GetSessionRequest,
    ListSessionsRequest, ListSessionsResponse, Session,
};
use super::{ClientApi, MAX_PAGE_BYTES, optional, page_within, parse_or_default};
use crate::error::Error;
use crate::service::{Write, reused_request_id};
use crate::state::Outcome;

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
            options: None,
            recording_defaults: req
                .default_recording_properties
                .as_ref()
                .map(super::recording::properties)
                .transpose()?,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::Session(session) => Ok(Response::new((&session).into())),
            other => Err(reused_request_id(other).into()),
        }
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let req = request.get_ref();
        let applied = self.read(&request, req.consistency).await?;
        let session = applied
            .state
            .find_session(&req.session_id)
            .map_err(Error::from)?;
        Ok(Response::new(session.into()))
    }

    async fn list_sessions(
        &self,
        request: Request<ListSessionsRequest>,
    ) -> Result<Response<ListSessionsResponse>, Status> {
        let req = request.get_ref();
        let applied = self.read(&request, req.consistency).await?;
        let after = optional(req.page_token.clone());
        let (sessions, next_page_token) = page_within(
            applied.state.sessions_after(after.as_deref()),
            req.page_size,
            MAX_PAGE_BYTES,
            |s| session_weight(s),
            |s| s.id.clone(),
        );
        Ok(Response::new(ListSessionsResponse {
            sessions: sessions.into_iter().map(Session::from).collect(),
            next_page_token,
        }))
    }

    async fn delete_session(
        &self,
        request: Request<DeleteSessionRequest>,
    ) -> Result<Response<DeleteSessionResponse>, Status> {
        let req = request.get_ref().clone();
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
            other => Err(reused_request_id(other).into()),
        }
    }
}

/// Roughly what `session` weighs encoded: its connections' data, ids and tokens, and a
/// fixed allowance per message.
pub fn session_weight(session: &crate::state::Session) -> usize {
    const PER_MESSAGE: usize = 128;
    let connections: usize = session
        .connections
        .values()
        .map(|c| {
            PER_MESSAGE
                + c.id.len()
                + c.token.len()
                + c.server_data.len()
                + c.client_data.len()
                + c.ip.len()
                + c.options.as_deref().map_or(0, str::len)
        })
        .sum();
    PER_MESSAGE + session.id.len() + session.options.as_deref().map_or(0, str::len) + connections
}
