//! SessionService.

use rand::distr::{Alphanumeric, SampleString};
use tonic::{Request, Response, Status};

use super::pb::session_service_server::SessionService;
use super::pb::{
    CreateSessionRequest, DeleteSessionRequest, DeleteSessionResponse, GetSessionRequest,
    ListSessionsRequest, ListSessionsResponse, Session,
};
use super::{ClientApi, optional, parse_or_default};
use crate::error::Error;
use crate::state::{self, NewSession, Op, Outcome};

/// Random characters after `ses_` in a generated session id (62^16 ≈ 2^95).
const GENERATED_ID_CHARS: usize = 16;
/// Page size when the request names none.
const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page served, whatever the request asks.
const MAX_PAGE_SIZE: usize = 1000;

/// An outcome of another kind than the op asked for can only be a remembered response:
/// the request id was first used for a different operation.
fn unexpected(_outcome: Outcome) -> Error {
    Error::invalid(
        "request_id",
        "was already used for a different operation; use a fresh id per operation",
    )
}

#[tonic::async_trait]
impl SessionService for ClientApi {
    async fn create_session(
        &self,
        request: Request<CreateSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let req = request.into_inner();
        let session_id = match optional(req.custom_session_id) {
            Some(id) => {
                state::validate_session_id(&id).map_err(|e| match e {
                    state::Error::InvalidArgument { reason, .. } => {
                        Error::invalid("custom_session_id", reason)
                    }
                    other => other.into(),
                })?;
                id
            }
            None => format!(
                "ses_{}",
                Alphanumeric.sample_string(&mut rand::rng(), GENERATED_ID_CHARS)
            ),
        };
        let new = NewSession {
            session_id,
            media_mode: parse_or_default(&req.media_mode)?,
            recording_mode: parse_or_default(&req.recording_mode)?,
            forced_video_codec: parse_or_default(&req.forced_video_codec)?,
            allow_transcoding: req.allow_transcoding,
            media_node_id: optional(req.media_node_id),
            limits: self.limits,
        };
        match self.propose(req.request_id, Op::CreateSession(new)).await? {
            Outcome::Session(session) => Ok(Response::new((&session).into())),
            other => Err(unexpected(other).into()),
        }
    }

    async fn get_session(
        &self,
        request: Request<GetSessionRequest>,
    ) -> Result<Response<Session>, Status> {
        let req = request.into_inner();
        self.read_barrier(req.consistency).await?;
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
        let req = request.into_inner();
        let page_size = match req.page_size as usize {
            0 => DEFAULT_PAGE_SIZE,
            n => n.min(MAX_PAGE_SIZE),
        };
        self.read_barrier(req.consistency).await?;
        let applied = crate::raft::read(&self.applied);
        let after = optional(req.page_token);
        let mut sessions: Vec<Session> = applied
            .state
            .sessions_after(after.as_deref())
            .take(page_size + 1)
            .map(Session::from)
            .collect();
        let next_page_token = if sessions.len() > page_size {
            sessions.truncate(page_size);
            sessions.last().map(|s| s.id.clone()).unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListSessionsResponse {
            sessions,
            next_page_token,
        }))
    }

    async fn delete_session(
        &self,
        request: Request<DeleteSessionRequest>,
    ) -> Result<Response<DeleteSessionResponse>, Status> {
        let req = request.into_inner();
        if req.session_id.is_empty() {
            return Err(Error::invalid("session_id", "is required").into());
        }
        let op = Op::DeleteSession {
            session_id: req.session_id,
        };
        match self.propose(req.request_id, op).await? {
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
