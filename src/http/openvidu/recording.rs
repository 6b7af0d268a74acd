//! OpenVidu's recording endpoints: `/recordings/start`, `/recordings/stop/{id}`,
//! `/recordings/{id}` (GET, DELETE) and `/recordings` (`{count, items}`).
//!
//! OpenVidu's codes: 400 for a body without a session, 404 for an unknown session or
//! recording, 406 for a session with no publisher or a recording still starting, 409
//! for a session already recorded (or RELAYED) and a recording not in the status the
//! call needs, 422 for properties out of range, 501 when the session's node cannot
//! record.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{HttpApi, Problem, RecordingProperties, body, problem};
use crate::auth::Principal;
use crate::error::Error;
use crate::events::recording_json;
use crate::service::{Write, reused_request_id, validate_recording_id};
use crate::state::{self, Outcome, Refusal};

/// The body of `POST /recordings/start`: the session and the properties, side by side.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartBody {
    session: Option<String>,
    #[serde(flatten)]
    properties: RecordingProperties,
}

/// A recording rule's refusal with OpenVidu's code; anything else as everywhere.
fn recording_problem(error: Error) -> Problem {
    match &error {
        Error::Domain(state::Error::RecordingRefused { why, message }) => {
            let status = match why {
                Refusal::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
                Refusal::Conflict => StatusCode::CONFLICT,
                Refusal::Unavailable => StatusCode::NOT_IMPLEMENTED,
            };
            Problem::new(status, message.clone())
        }
        _ => problem(error),
    }
}

/// The recording id of a path, or 404 (an id that cannot exist names no recording).
fn recording_id(id: String) -> Result<String, Problem> {
    validate_recording_id(&id).map_err(|e| Problem::new(StatusCode::NOT_FOUND, e.to_string()))?;
    Ok(id)
}

fn answer(outcome: Outcome) -> Result<Response, Problem> {
    match outcome {
        Outcome::Recording(recording) => Ok(Json(recording_json(&recording)).into_response()),
        other => Err(problem(reused_request_id(other))),
    }
}

/// POST /recordings/start: 200 and the recording, `starting`.
pub(super) async fn start(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let body: StartBody = body(&bytes)?;
    let session_id = body
        .session
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::bad_request("session: is required"))?;
    let properties = body
        .properties
        .into_state("", StatusCode::UNPROCESSABLE_ENTITY)?;
    let write = Write::StartRecording {
        session_id,
        properties,
    };
    let outcome = api
        .write_mapped(&principal, "RecordingService/Start", write, |error| {
            match &error {
                Error::Domain(state::Error::InvalidArgument { .. }) => {
                    // A session id that cannot exist names no session.
                    Problem::new(StatusCode::NOT_FOUND, error.to_string())
                }
                _ => recording_problem(error),
            }
        })
        .await?;
    answer(outcome)
}

/// POST /recordings/stop/{id}: 200 and the recording, `stopped`.
pub(super) async fn stop(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let write = Write::StopRecording {
        recording_id: recording_id(id)?,
    };
    let outcome = api
        .write_mapped(
            &principal,
            "RecordingService/Stop",
            write,
            recording_problem,
        )
        .await?;
    answer(outcome)
}

/// GET /recordings/{id}: 200 or 404.
pub(super) async fn get(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let id = recording_id(id)?;
    let applied = api.read(&principal, "RecordingService/Get").await?;
    let recording = applied
        .state
        .find_recording(&id)
        .map_err(|e| problem(e.into()))?;
    Ok(Json(recording_json(recording)).into_response())
}

/// GET /recordings: every recording, `{count, items}`.
pub(super) async fn list(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
) -> Result<Response, Problem> {
    let applied = api.read(&principal, "RecordingService/List").await?;
    let items: Vec<Value> = applied
        .state
        .recordings_after(None)
        .map(recording_json)
        .collect();
    Ok(Json(serde_json::json!({ "count": items.len(), "items": items })).into_response())
}

/// DELETE /recordings/{id}: 204, 404, or 409 while it is starting or started.
pub(super) async fn delete(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let write = Write::DeleteRecording {
        recording_id: recording_id(id)?,
    };
    match api
        .write_mapped(
            &principal,
            "RecordingService/Delete",
            write,
            recording_problem,
        )
        .await?
    {
        Outcome::RecordingDeleted { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(problem(reused_request_id(other))),
    }
}
