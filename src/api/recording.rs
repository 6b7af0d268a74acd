//! RecordingService.

use tonic::{Request, Response, Status};

use super::pb::recording_service_server::RecordingService;
use super::pb::{
    DeleteRecordingRequest, DeleteRecordingResponse, GetRecordingRequest, ListRecordingsRequest,
    ListRecordingsResponse, Recording, StartRecordingRequest, StopRecordingRequest,
};
use super::{ClientApi, optional, page, parse_or_default};
use crate::error::Error;
use crate::service::{Write, reused_request_id, validate_recording_id};
use crate::state::{self, Outcome, RecordingProperties};

/// The properties a start (or a session's defaults) asks for, OpenVidu's defaults filled
/// in for what it leaves out.
pub(super) fn properties(req: &StartRecordingRequest) -> Result<RecordingProperties, Error> {
    let output_mode = parse_or_default(&req.output_mode, "output_mode")?;
    let properties = RecordingProperties {
        name: req.name.clone(),
        output_mode,
        has_audio: req.has_audio.unwrap_or(true),
        has_video: req.has_video.unwrap_or(true),
        recording_layout: optional(req.recording_layout.clone())
            .map(|layout| super::parse(&layout, "recording_layout"))
            .transpose()?,
        custom_layout: optional(req.custom_layout.clone()),
        resolution: optional(req.resolution.clone()),
        frame_rate: (req.frame_rate != 0).then_some(req.frame_rate),
        shm_size: (req.shm_size != 0).then_some(req.shm_size),
        ignore_failed_streams: (output_mode == state::OutputMode::Individual)
            .then_some(req.ignore_failed_streams),
    }
    .completed();
    properties.validate()?;
    Ok(properties)
}

#[tonic::async_trait]
impl RecordingService for ClientApi {
    async fn start(
        &self,
        request: Request<StartRecordingRequest>,
    ) -> Result<Response<Recording>, Status> {
        let req = request.get_ref().clone();
        let write = Write::StartRecording {
            session_id: req.session_id.clone(),
            properties: properties(&req)?,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::Recording(recording) => Ok(Response::new((&*recording).into())),
            other => Err(reused_request_id(other).into()),
        }
    }

    async fn stop(
        &self,
        request: Request<StopRecordingRequest>,
    ) -> Result<Response<Recording>, Status> {
        let req = request.get_ref().clone();
        let write = Write::StopRecording {
            recording_id: req.id,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::Recording(recording) => Ok(Response::new((&*recording).into())),
            other => Err(reused_request_id(other).into()),
        }
    }

    async fn get(
        &self,
        request: Request<GetRecordingRequest>,
    ) -> Result<Response<Recording>, Status> {
        let req = request.get_ref();
        validate_recording_id(&req.id)?;
        let applied = self.read(&request, req.consistency).await?;
        let recording = applied.state.find_recording(&req.id).map_err(Error::from)?;
        Ok(Response::new(recording.into()))
    }

    async fn list(
        &self,
        request: Request<ListRecordingsRequest>,
    ) -> Result<Response<ListRecordingsResponse>, Status> {
        let req = request.get_ref();
        if !req.session_id.is_empty() {
            state::validate_session_id(&req.session_id).map_err(Error::from)?;
        }
        let applied = self.read(&request, req.consistency).await?;
        let after = optional(req.page_token.clone());
        let (recordings, next_page_token) = page(
            applied
                .state
                .recordings_after(after.as_deref())
                .filter(|r| req.session_id.is_empty() || r.session_id == req.session_id)
                .map(Recording::from),
            req.page_size,
            |r| r.id.clone(),
        );
        Ok(Response::new(ListRecordingsResponse {
            recordings,
            next_page_token,
        }))
    }

    async fn delete(
        &self,
        request: Request<DeleteRecordingRequest>,
    ) -> Result<Response<DeleteRecordingResponse>, Status> {
        let req = request.get_ref().clone();
        let write = Write::DeleteRecording {
            recording_id: req.id,
        };
        match self.apply(&request, req.request_id, write).await? {
            Outcome::RecordingDeleted { recording } => Ok(Response::new(DeleteRecordingResponse {
                recording: Some((&*recording).into()),
            })),
            other => Err(reused_request_id(other).into()),
        }
    }
}
