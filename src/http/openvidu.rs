//! The OpenVidu 2.x REST API (`/openvidu/api/…`), as openvidu-node-client 2.32 and
//! openvidu-java-client call it: paths, methods, JSON names, status codes.
//!
//! Each handler parses its body into the service layer's request, calls the service,
//! and renders the answer in OpenVidu's JSON. Rules stay in [`crate::state`]; what is
//! checked here is the wire format only (JSON types, OpenVidu's enums and the shapes of
//! settings Chorus stores without acting on them). Which secret may call what is the
//! gRPC role table's ([`crate::auth::permitted`]): each endpoint names the gRPC method
//! it stands for.

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use rand::distr::{Alphanumeric, SampleString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

mod recording;

use super::{HttpApi, Problem};
use crate::auth::{Principal, permitted};
use crate::error::Error;
use crate::service::{Consistency, Write, reused_request_id};
use crate::state::{
    self, Connection, ConnectionStatus, ConnectionType, MediaMode, MediaNode, MediaNodeStatus,
    Outcome, RecordingMode, Role, Session, VideoCodec,
};

/// The OpenVidu version whose API this is.
const OPENVIDU_API_VERSION: &str = "2.32.2";

/// How long a request may wait for a leader, as a gRPC call without a deadline.
const DEADLINE: Duration = crate::deadline::DEFAULT_TIMEOUT;

/// Most a session list may weigh (ids, tokens and data of its connections) before it
/// is refused: OpenVidu's list has no paging, and an unbounded one would be built under
/// the state's read lock. The gRPC `ListSessions` pages.
const MAX_LIST_BYTES: usize = 32 << 20;

pub(super) fn router(api: HttpApi) -> Router<HttpApi> {
    let not_yet = |what: &'static str| {
        move || async move {
            Problem::new(
                StatusCode::NOT_IMPLEMENTED,
                format!("{what} are not supported by Chorus yet"),
            )
        }
    };
    Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route(
            "/sessions/{session}",
            get(get_session).delete(delete_session),
        )
        .route(
            "/sessions/{session}/connection",
            post(create_connection).get(list_connections),
        )
        .route(
            "/sessions/{session}/connection/{connection}",
            get(get_connection)
                .patch(update_connection)
                .delete(delete_connection),
        )
        .route(
            "/sessions/{session}/stream/{stream}",
            axum::routing::any(not_yet("streams (force-unpublish)")),
        )
        .route("/tokens", post(create_token))
        .route("/config", get(config))
        .route("/health", get(health))
        .route(
            "/media-nodes",
            get(list_media_nodes).post(add_media_node).put(not_yet(
                "media node autodiscovery (nodes join with `chorus agent`)",
            )),
        )
        .route(
            "/media-nodes/{node}",
            get(get_media_node)
                .patch(set_media_node_status)
                .delete(remove_media_node),
        )
        .route("/recordings", get(recording::list))
        .route("/recordings/start", post(recording::start))
        .route("/recordings/stop/{recording}", post(recording::stop))
        .route(
            "/recordings/{recording}",
            get(recording::get).delete(recording::delete),
        )
        .route(
            "/broadcast/{*rest}",
            axum::routing::any(not_yet("broadcasts")),
        )
        .route("/signal", axum::routing::any(not_yet("signals")))
        .route("/restart", axum::routing::any(not_yet("restarts")))
        // Behind the secret too, as OpenVidu: an unknown path is 401 to a stranger.
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(api, authenticate))
}

/// HTTP Basic `OPENVIDUAPP:<secret>`: the application secret, or the operator secret
/// (compared in constant time by [`crate::auth::Credentials`]). 401 otherwise.
async fn authenticate(State(api): State<HttpApi>, mut request: Request, next: Next) -> Response {
    let principal = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or("missing `Authorization: Basic …` (OPENVIDUAPP:<secret>)")
        .and_then(|value| {
            let encoded = value
                .as_bytes()
                .strip_prefix(b"Basic ")
                .ok_or("`Authorization` is not `Basic …`")?;
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|_| "`Authorization: Basic` is not base64")
        })
        .and_then(|decoded| {
            let secret = decoded
                .strip_prefix(b"OPENVIDUAPP:")
                .ok_or("the user must be OPENVIDUAPP")?;
            match api.credentials.secret(secret) {
                Some(principal @ (Principal::Application | Principal::Operator)) => Ok(principal),
                _ => Err("wrong secret"),
            }
        });
    match principal {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(reason) => Problem::new(StatusCode::UNAUTHORIZED, reason).into_response(),
    }
}

/// Refuses the caller unless the role table lets it call gRPC `method`.
fn allow(principal: &Principal, method: &str) -> Result<(), Problem> {
    permitted(&format!("/chorus.v1.{method}"), principal)
        .map_err(|status| Problem::new(StatusCode::FORBIDDEN, status.message()))
}

impl HttpApi {
    /// Has the leader apply `write` under a request id of its own, so that the service
    /// may resend it if the leader dies with it in flight.
    async fn write(
        &self,
        principal: &Principal,
        method: &str,
        write: Write,
    ) -> Result<Outcome, Problem> {
        self.write_mapped(principal, method, write, problem).await
    }

    /// As [`HttpApi::write`], with the endpoint's own mapping of errors.
    async fn write_mapped(
        &self,
        principal: &Principal,
        method: &str,
        write: Write,
        map: impl FnOnce(Error) -> Problem,
    ) -> Result<Outcome, Problem> {
        allow(principal, method)?;
        let request_id = format!("http_{}", Alphanumeric.sample_string(&mut rand::rng(), 24));
        self.service
            .write(Some(request_id), write, Instant::now() + DEADLINE)
            .await
            .map_err(map)
    }

    /// The applied state after a read index: what every write acknowledged before this
    /// request began is in it.
    async fn read(
        &self,
        principal: &Principal,
        method: &str,
    ) -> Result<std::sync::RwLockReadGuard<'_, crate::raft::Applied>, Problem> {
        allow(principal, method)?;
        self.service
            .read(Consistency::Linearizable, Instant::now() + DEADLINE)
            .await
            .map_err(problem)
    }
}

/// The HTTP status of a service error, OpenVidu's where it has one.
fn problem(error: Error) -> Problem {
    use tonic::Code;
    // The one classification of errors, `impl From<Error> for tonic::Status`, read as
    // HTTP: rules are not mapped twice.
    let code = tonic::Status::from(error.clone()).code();
    let status = match code {
        Code::InvalidArgument | Code::ResourceExhausted => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::Unavailable => {
            let mut problem = Problem::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string());
            problem.retry_after = Some(Duration::from_secs(1));
            return problem;
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    Problem::new(status, camel_case_fields(&error))
}

/// The error's message with the fields it names spelled as the REST API spells them.
fn camel_case_fields(error: &Error) -> String {
    let rename =
        |field: &str, reason: &str, prefix: &str| format!("{prefix}{}: {reason}", rest_name(field));
    match error {
        Error::Domain(state::Error::InvalidArgument { field, reason }) => {
            rename(field, reason, "invalid ")
        }
        Error::InvalidArgument { field, reason } => rename(field, reason, ""),
        other => other.to_string(),
    }
}

fn rest_name(field: &str) -> String {
    match field {
        "server_data" => "data".into(),
        "connection_type" => "type".into(),
        "media_node_id" => "mediaNode".into(),
        _ => {
            let mut out = String::with_capacity(field.len());
            let mut upper = false;
            for c in field.chars() {
                if c == '_' {
                    upper = true;
                } else if upper {
                    out.push(c.to_ascii_uppercase());
                    upper = false;
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// As [`problem`], but a missing session is 400: OpenVidu's answer on the endpoints
/// that address one of a session's connections (404 is for the connection).
fn connection_problem(error: Error) -> Problem {
    match &error {
        Error::Domain(state::Error::NotFound { kind, .. }) if kind == "session" => {
            Problem::bad_request(error.to_string())
        }
        _ => problem(error),
    }
}

/// Parses a JSON body; an empty one is `T::default()`. Errors name the field.
fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, Problem> {
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(T::default()),
        // serde would take an array for a struct, field by field.
        Some(b'{') => {}
        Some(_) => {
            return Err(Problem::bad_request(
                "the body is not the JSON object expected",
            ));
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            Problem::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            Problem::bad_request(format!("the body is not the JSON object expected: {inner}"))
        } else {
            Problem::bad_request(format!("{path}: {inner}"))
        }
    })?;
    deserializer
        .end()
        .map_err(|e| Problem::bad_request(format!("the body has more after its JSON: {e}")))?;
    Ok(value)
}

/// Parses one of the domain's wire names in REST field `field`, as the gRPC API does.
fn parse<T>(value: Option<&str>, field: &str) -> Result<Option<T>, Problem>
where
    T: std::str::FromStr<Err = state::Error>,
{
    value
        .map(|text| crate::api::parse(text, field).map_err(problem))
        .transpose()
}

/// A JSON object of settings, as the state keeps them.
fn options_text(options: Map<String, Value>) -> Option<Box<str>> {
    (!options.is_empty()).then(|| Value::Object(options).to_string().into_boxed_str())
}

fn options_of(text: Option<&str>) -> Map<String, Value> {
    match text.map(serde_json::from_str::<Value>) {
        Some(Ok(Value::Object(map))) => map,
        _ => Map::new(),
    }
}

// ---------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SessionBody {
    media_mode: Option<String>,
    recording_mode: Option<String>,
    custom_session_id: Option<String>,
    forced_video_codec: Option<String>,
    allow_transcoding: Option<bool>,
    default_recording_properties: Option<RecordingProperties>,
    media_node: Option<MediaNodeRef>,
}

/// `{"id": "…"}`, as OpenVidu names a media node in a body.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct MediaNodeRef {
    id: String,
}

/// OpenVidu's RecordingProperties, checked and completed with OpenVidu's defaults, and
/// kept with the session for the recordings to come.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
struct RecordingProperties {
    // Options, like every field: an explicit `null` means "the default", as OpenVidu
    // takes it, and the defaults are filled in by `completed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_audio: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    has_video: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    recording_layout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    custom_layout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resolution: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shm_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ignore_failed_streams: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    media_node: Option<MediaNodeRef>,
}

impl RecordingProperties {
    /// The state's properties, OpenVidu's defaults filled in for what the body leaves
    /// out; errors name the field as `{prefix}{field}` in the REST API's spelling. An
    /// unknown name is 400, a value out of range `out_of_range`.
    fn into_state(
        self,
        prefix: &str,
        out_of_range: StatusCode,
    ) -> Result<state::RecordingProperties, Problem> {
        let field = |name: &str| format!("{prefix}{name}");
        let output_mode =
            parse::<state::OutputMode>(self.output_mode.as_deref(), &field("outputMode"))?
                .unwrap_or_default();
        let recording_layout = parse::<state::RecordingLayout>(
            self.recording_layout.as_deref(),
            &field("recordingLayout"),
        )?;
        if let Some(node) = &self.media_node {
            state::validate_media_node_id(&node.id)
                .map_err(|e| Problem::bad_request(format!("{}: {e}", field("mediaNode.id"))))?;
        }
        let properties = state::RecordingProperties {
            name: self.name.unwrap_or_default(),
            output_mode,
            has_audio: self.has_audio.unwrap_or(true),
            has_video: self.has_video.unwrap_or(true),
            recording_layout,
            custom_layout: self.custom_layout,
            resolution: self.resolution,
            frame_rate: self.frame_rate,
            shm_size: self.shm_size,
            ignore_failed_streams: self.ignore_failed_streams,
        }
        .completed();
        properties.validate().map_err(|e| match e {
            state::Error::InvalidArgument {
                field: name,
                reason,
            } => Problem::new(
                out_of_range,
                format!(
                    "{}: {}",
                    field(&rest_name(&name)),
                    camel_case_words(&reason)
                ),
            ),
            other => problem(other.into()),
        })?;
        Ok(properties)
    }
}

/// `has_audio and has_video` as `hasAudio and hasVideo`: a state message's field names
/// in the REST API's spelling.
fn camel_case_words(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            if word.contains('_') {
                rest_name(word)
            } else {
                word.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// POST /sessions: 200 and the session; 409 if the custom id exists (the node client
/// then fetches it); 400 for a bad body.
async fn create_session(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let body: SessionBody = body(&bytes)?;
    let custom_id = body.custom_session_id.filter(|id| !id.is_empty());
    let recording_defaults = body
        .default_recording_properties
        .map(|p| p.into_state("defaultRecordingProperties.", StatusCode::BAD_REQUEST))
        .transpose()?;
    let mut options = Map::new();
    if let Some(id) = &custom_id {
        options.insert("customSessionId".into(), Value::String(id.clone()));
    }
    let media_node_id = match body.media_node {
        Some(node) if !node.id.is_empty() => Some(node.id),
        _ => None,
    };
    let write = Write::CreateSession {
        custom_id,
        media_mode: parse::<MediaMode>(body.media_mode.as_deref(), "mediaMode")?
            .unwrap_or_default(),
        recording_mode: parse::<RecordingMode>(body.recording_mode.as_deref(), "recordingMode")?
            .unwrap_or_default(),
        forced_video_codec: parse::<VideoCodec>(
            body.forced_video_codec.as_deref(),
            "forcedVideoCodec",
        )?
        .unwrap_or_default(),
        allow_transcoding: body.allow_transcoding.unwrap_or(false),
        media_node_id,
        options: options_text(options),
        recording_defaults,
    };
    let method = "SessionService/CreateSession";
    match api
        .write_mapped(&principal, method, write, |error| match &error {
            // Only an existing custom id is 409: the node client answers any 409 by
            // fetching the session it asked for. A media node that does not exist or
            // does not run is a bad body parameter to OpenVidu; so is whatever else
            // the state refuses (an expired license says so).
            Error::Domain(state::Error::NotFound { .. }) => {
                Problem::bad_request(format!("mediaNode: {error}"))
            }
            Error::Domain(state::Error::FailedPrecondition(_)) | Error::FailedPrecondition(_) => {
                Problem::bad_request(error.to_string())
            }
            _ => problem(error),
        })
        .await?
    {
        Outcome::Session(session) => {
            let applied = api.service.local();
            Ok(Json(session_json(&applied.state, &session, true)).into_response())
        }
        other => Err(problem(reused_request_id(other))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SessionQuery {
    pending_connections: Option<bool>,
    web_rtc_stats: Option<bool>,
}

/// GET /sessions: every session, `{numberOfElements, content}`.
async fn list_sessions(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<SessionQuery>,
) -> Result<Response, Problem> {
    let _ = query.web_rtc_stats;
    let pending = query.pending_connections.unwrap_or(false);
    let applied = api.read(&principal, "SessionService/ListSessions").await?;
    within_budget(&applied.state, applied.state.sessions())?;
    let content: Vec<_> = applied
        .state
        .sessions()
        .map(|s| session_json(&applied.state, s, pending))
        .collect();
    Ok(Json(List::of(content)).into_response())
}

/// Refuses an answer that would render `sessions` heavier than [`MAX_LIST_BYTES`]
/// (413): OpenVidu's lists have no paging, and the answer is built under the state's
/// read lock.
fn within_budget<'a>(
    state: &state::State,
    sessions: impl Iterator<Item = &'a Session>,
) -> Result<(), Problem> {
    let weight: usize = sessions.map(crate::api::session_weight).sum();
    if weight > MAX_LIST_BYTES {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the answer would hold about {} MiB of sessions ({} in the cluster), over the \
                 {} MiB one answer may; page through them with the gRPC \
                 SessionService.ListSessions",
                weight >> 20,
                state.session_count(),
                MAX_LIST_BYTES >> 20
            ),
        ));
    }
    Ok(())
}

/// GET /sessions/{id}: 200 or 404.
async fn get_session(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(session_id): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Result<Response, Problem> {
    let applied = api.read(&principal, "SessionService/GetSession").await?;
    let session = applied
        .state
        .find_session(&session_id)
        .map_err(|e| problem(e.into()))?;
    let pending = query.pending_connections.unwrap_or(false);
    Ok(Json(session_json(&applied.state, session, pending)).into_response())
}

/// DELETE /sessions/{id}: 204 or 404.
async fn delete_session(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(session_id): Path<String>,
) -> Result<Response, Problem> {
    let write = Write::DeleteSession { session_id };
    match api
        .write(&principal, "SessionService/DeleteSession", write)
        .await?
    {
        Outcome::SessionDeleted { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(problem(reused_request_id(other))),
    }
}

/// `{numberOfElements, content}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct List<T> {
    number_of_elements: usize,
    content: Vec<T>,
}

impl<T> List<T> {
    fn of(content: Vec<T>) -> Self {
        List {
            number_of_elements: content.len(),
            content,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionJson<'a> {
    id: &'a str,
    object: &'static str,
    created_at: u64,
    media_mode: &'static str,
    recording_mode: &'static str,
    forced_video_codec: &'static str,
    forced_video_codec_resolved: &'static str,
    allow_transcoding: bool,
    media_node_id: Option<&'a str>,
    connections: List<ConnectionJson<'a>>,
    recording: bool,
    broadcasting: bool,
    /// `customSessionId` (when the client chose the id) and
    /// `defaultRecordingProperties`.
    #[serde(flatten)]
    options: Map<String, Value>,
    session_id: &'a str,
}

fn session_json<'a>(state: &'a state::State, s: &'a Session, pending: bool) -> SessionJson<'a> {
    let mut options = options_of(s.options.as_deref());
    options.insert(
        "defaultRecordingProperties".into(),
        crate::events::properties_json(&s.recording_defaults),
    );
    let connections = s
        .connections
        .values()
        .filter(|c| pending || c.status == ConnectionStatus::Active)
        .map(|c| connection_json(state, s, c))
        .collect();
    SessionJson {
        id: &s.id,
        object: "session",
        created_at: s.created_at,
        media_mode: s.media_mode.as_str(),
        recording_mode: s.recording_mode.as_str(),
        forced_video_codec: s.forced_video_codec.as_str(),
        forced_video_codec_resolved: match s.forced_video_codec {
            VideoCodec::MediaServerPreferredOptions => VideoCodec::Vp8.as_str(),
            codec => codec.as_str(),
        },
        allow_transcoding: s.allow_transcoding,
        media_node_id: s.media_node_id.as_deref(),
        connections: List::of(connections),
        recording: s.recording.is_some(),
        broadcasting: false,
        options,
        session_id: &s.id,
    }
}

// ---------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ConnectionBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<String>,
    record: Option<bool>,
    role: Option<String>,
    kurento_options: Option<KurentoOptions>,
    rtsp_uri: Option<String>,
    adaptative_bitrate: Option<bool>,
    only_play_with_subscribers: Option<bool>,
    network_cache: Option<u32>,
    custom_ice_servers: Option<Vec<IceServer>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
struct KurentoOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    video_max_recv_bandwidth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_min_recv_bandwidth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_max_send_bandwidth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_min_send_bandwidth: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_filters: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
struct IceServer {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

/// Most ICE servers one connection may list.
const MAX_ICE_SERVERS: usize = 16;

impl ConnectionBody {
    /// The write it asks for, checked as OpenVidu checks it.
    fn into_write(self, session_id: String) -> Result<Write, Problem> {
        let kind = parse::<ConnectionType>(self.kind.as_deref(), "type")?.unwrap_or_default();
        let role = parse::<Role>(self.role.as_deref(), "role")?.unwrap_or_default();
        let mut options = Map::new();
        match kind {
            ConnectionType::WebRtc => {
                if let Some(kurento) = self.kurento_options {
                    if let Some(filters) = &kurento.allowed_filters
                        && filters.len() > 64
                    {
                        return Err(Problem::bad_request(
                            "kurentoOptions.allowedFilters: at most 64 filters",
                        ));
                    }
                    options.insert(
                        "kurentoOptions".into(),
                        serde_json::to_value(kurento).unwrap_or_default(),
                    );
                }
            }
            ConnectionType::IpCam => {
                let uri = self
                    .rtsp_uri
                    .filter(|uri| !uri.is_empty())
                    .ok_or_else(|| Problem::bad_request("rtspUri: is required for type IPCAM"))?;
                let scheme = uri.split_once("://").map(|(scheme, _)| scheme);
                if !matches!(scheme, Some("rtsp" | "rtsps" | "file" | "http" | "https")) {
                    return Err(Problem::bad_request(format!(
                        "rtspUri: must be an rtsp://, rtsps://, file://, http:// or https:// URI, \
                         got '{uri:.60}'"
                    )));
                }
                options.insert("rtspUri".into(), Value::String(uri));
                options.insert(
                    "adaptativeBitrate".into(),
                    Value::Bool(self.adaptative_bitrate.unwrap_or(true)),
                );
                options.insert(
                    "onlyPlayWithSubscribers".into(),
                    Value::Bool(self.only_play_with_subscribers.unwrap_or(true)),
                );
                options.insert(
                    "networkCache".into(),
                    Value::from(self.network_cache.unwrap_or(2000)),
                );
            }
        }
        if let Some(servers) = self.custom_ice_servers {
            if servers.len() > MAX_ICE_SERVERS {
                return Err(Problem::bad_request(format!(
                    "customIceServers: at most {MAX_ICE_SERVERS} servers"
                )));
            }
            for (i, server) in servers.iter().enumerate() {
                let turn = server.url.starts_with("turn:") || server.url.starts_with("turns:");
                let stun = server.url.starts_with("stun:") || server.url.starts_with("stuns:");
                if !turn && !stun {
                    return Err(Problem::bad_request(format!(
                        "customIceServers[{i}].url: must start with stun:, stuns:, turn: or \
                         turns:, got '{:.60}'",
                        server.url
                    )));
                }
                if turn && (server.username.is_none() || server.credential.is_none()) {
                    return Err(Problem::bad_request(format!(
                        "customIceServers[{i}]: a TURN server needs username and credential"
                    )));
                }
            }
            options.insert(
                "customIceServers".into(),
                serde_json::to_value(servers).unwrap_or_default(),
            );
        }
        Ok(Write::CreateConnection {
            session_id,
            connection_type: kind,
            // An IP camera only publishes.
            role: if kind == ConnectionType::IpCam {
                Role::Publisher
            } else {
                role
            },
            server_data: self.data.unwrap_or_default(),
            record: self.record.unwrap_or(true),
            options: options_text(options),
        })
    }
}

/// POST /sessions/{id}/connection: 200 and the connection; 404 without the session.
async fn create_connection(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(session_id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let write = body::<ConnectionBody>(&bytes)?.into_write(session_id)?;
    let outcome = api
        .write(&principal, "ConnectionService/CreateConnection", write)
        .await?;
    Ok(Json(connection_answer(&api, outcome).await?).into_response())
}

/// The JSON of a write's connection. The media node's address (in the token URL) is
/// looked up here; a node registered an instant ago may not have reached this master
/// yet, and is then read after a read index.
async fn connection_answer(api: &HttpApi, outcome: Outcome) -> Result<Value, Problem> {
    let Outcome::Connection {
        session_id,
        connection,
        media_node_id,
    } = outcome
    else {
        return Err(problem(reused_request_id(outcome)));
    };
    let render = |state: &state::State| {
        let node = media_node_id.as_deref().and_then(|id| state.media_node(id));
        let json = ConnectionJson::new(&session_id, node, &connection);
        (
            node.is_some(),
            serde_json::to_value(json).unwrap_or_default(),
        )
    };
    let (found, json) = render(&api.service.local().state);
    if found || media_node_id.is_none() {
        return Ok(json);
    }
    // The write is done: a read that fails now must not turn it into an error (the
    // application would create the connection again). Without the node, the token
    // comes bare, as for an unplaced session.
    match api
        .service
        .read(Consistency::Linearizable, Instant::now() + DEADLINE)
        .await
    {
        Ok(applied) => Ok(render(&applied.state).1),
        Err(_) => Ok(json),
    }
}

/// GET /sessions/{id}/connection: the session's connections.
async fn list_connections(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(session_id): Path<String>,
) -> Result<Response, Problem> {
    let applied = api
        .read(&principal, "ConnectionService/ListConnections")
        .await?;
    let session = applied
        .state
        .find_session(&session_id)
        .map_err(|e| problem(e.into()))?;
    let content = session
        .connections
        .values()
        .map(|c| connection_json(&applied.state, session, c))
        .collect();
    Ok(Json(List::of(content)).into_response())
}

/// GET /sessions/{id}/connection/{cid}: 200; 400 without the session, 404 without the
/// connection.
async fn get_connection(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path((session_id, connection_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let applied = api
        .read(&principal, "ConnectionService/GetConnection")
        .await?;
    let (session, connection) = applied
        .state
        .find_connection(&session_id, &connection_id)
        .map_err(|e| connection_problem(e.into()))?;
    Ok(Json(connection_json(&applied.state, session, connection)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct UpdateBody {
    role: Option<String>,
    record: Option<bool>,
}

/// PATCH /sessions/{id}/connection/{cid}: changes `role` and `record`; 200 and the
/// connection, 400 for a bad body, 404 without the session or the connection.
async fn update_connection(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path((session_id, connection_id)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let update: UpdateBody = body(&bytes)?;
    let write = Write::UpdateConnection {
        session_id,
        connection_id,
        role: parse::<Role>(update.role.as_deref(), "role")?,
        record: update.record,
    };
    let outcome = api
        .write(&principal, "ConnectionService/UpdateConnection", write)
        .await?;
    Ok(Json(connection_answer(&api, outcome).await?).into_response())
}

/// DELETE /sessions/{id}/connection/{cid}: 204; 400 without the session, 404 without
/// the connection.
async fn delete_connection(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path((session_id, connection_id)): Path<(String, String)>,
) -> Result<Response, Problem> {
    let write = Write::DeleteConnection {
        session_id,
        connection_id,
    };
    let method = "ConnectionService/DeleteConnection";
    match api
        .write_mapped(&principal, method, write, connection_problem)
        .await?
    {
        Outcome::ConnectionDeleted { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(problem(reused_request_id(other))),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionJson<'a> {
    id: &'a str,
    object: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    session_id: &'a str,
    created_at: u64,
    active_at: Option<u64>,
    location: Option<&'a str>,
    ip: Option<&'a str>,
    platform: Option<&'a str>,
    /// The URL the browser client is given.
    token: String,
    server_data: &'a str,
    client_data: Option<&'a str>,
    record: bool,
    role: &'static str,
    publishers: [(); 0],
    subscribers: [(); 0],
    custom_ice_servers: Value,
    /// `kurentoOptions`, or an IP camera's `rtspUri`, `adaptativeBitrate`,
    /// `onlyPlayWithSubscribers` and `networkCache`.
    #[serde(flatten)]
    options: Map<String, Value>,
    connection_id: &'a str,
}

impl<'a> ConnectionJson<'a> {
    fn new(session_id: &'a str, media_node: Option<&'a MediaNode>, c: &'a Connection) -> Self {
        let active = c.status == ConnectionStatus::Active;
        let mut options = options_of(c.options.as_deref());
        let custom_ice_servers = options
            .remove("customIceServers")
            .unwrap_or_else(|| Value::Array(Vec::new()));
        ConnectionJson {
            id: &c.id,
            object: "connection",
            kind: c.connection_type.as_str(),
            status: if active { "active" } else { "pending" },
            session_id,
            created_at: c.created_at,
            active_at: c.active_at,
            location: active.then_some(""),
            ip: active.then_some(c.ip.as_str()),
            platform: active.then_some(""),
            token: token_url(media_node, session_id, &c.token),
            server_data: &c.server_data,
            client_data: active.then_some(c.client_data.as_str()),
            record: c.record,
            role: c.role.as_str(),
            publishers: [],
            subscribers: [],
            custom_ice_servers,
            options,
            connection_id: &c.id,
        }
    }
}

fn connection_json<'a>(
    state: &'a state::State,
    session: &'a Session,
    c: &'a Connection,
) -> ConnectionJson<'a> {
    let node = session
        .media_node_id
        .as_deref()
        .and_then(|id| state.media_node(id));
    ConnectionJson::new(&session.id, node, c)
}

/// The URL a browser client is given for `token`: the signalling address of the
/// session's media node (its registered `uri`) with `sessionId` and `token` as query
/// parameters. The node's side takes `token` from it and redeems it with
/// JoinConnection. A session not yet placed has no node: the token comes alone.
fn token_url(node: Option<&MediaNode>, session_id: &str, token: &str) -> String {
    match node {
        Some(node) => {
            let separator = if node.uri.contains('?') { '&' } else { '?' };
            format!(
                "{}{separator}sessionId={session_id}&token={token}",
                node.uri
            )
        }
        None => token.to_owned(),
    }
}

// ---------------------------------------------------------------------------------
// Tokens (deprecated in OpenVidu 2.16, still called by older applications)
// ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TokenBody {
    session: Option<String>,
    #[serde(flatten)]
    connection: ConnectionBody,
}

/// POST /tokens: a connection, answered as OpenVidu's Token object; 400 for a bad body,
/// 404 without the session.
async fn create_token(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let body: TokenBody = body(&bytes)?;
    let session_id = body
        .session
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Problem::bad_request("session: is required"))?;
    let write = body.connection.into_write(session_id)?;
    let outcome = api
        .write(&principal, "ConnectionService/CreateConnection", write)
        .await?;
    let connection = connection_answer(&api, outcome).await?;
    let field = |name: &str| connection.get(name).cloned().unwrap_or(Value::Null);
    let mut token = Map::new();
    token.insert("id".into(), field("token"));
    token.insert("object".into(), Value::String("token".into()));
    for (to, from) in [
        ("token", "token"),
        ("connectionId", "connectionId"),
        ("session", "sessionId"),
        ("createdAt", "createdAt"),
        ("role", "role"),
        ("data", "serverData"),
        ("record", "record"),
        ("customIceServers", "customIceServers"),
    ] {
        token.insert(to.into(), field(from));
    }
    if let Some(kurento) = connection.get("kurentoOptions") {
        token.insert("kurentoOptions".into(), kurento.clone());
    }
    Ok(Json(Value::Object(token)).into_response())
}

// ---------------------------------------------------------------------------------
// Configuration and health
// ---------------------------------------------------------------------------------

/// GET /config: what this deployment is and does, in OpenVidu's names where they apply.
async fn config(Extension(principal): Extension<Principal>) -> Result<Response, Problem> {
    allow(&principal, "ClusterService/GetClusterStatus")?;
    Ok(Json(serde_json::json!({
        "VERSION": OPENVIDU_API_VERSION,
        "CHORUS_VERSION": env!("CARGO_PKG_VERSION"),
        "OPENVIDU_EDITION": "chorus",
        "OPENVIDU_CDR": false,
        "OPENVIDU_RECORDING": true,
        "OPENVIDU_WEBHOOK": false,
        "OPENVIDU_SESSIONS_GARBAGE_INTERVAL": 0,
        "OPENVIDU_STREAMS_FORCED_VIDEO_CODEC": VideoCodec::default().as_str(),
        "OPENVIDU_STREAMS_ALLOW_TRANSCODING": false,
    }))
    .into_response())
}

/// GET /health: `{"status": "UP"}` (200) while this master serves, `"DOWN"` (503)
/// otherwise: the same test as `/readyz`.
async fn health(State(api): State<HttpApi>) -> Response {
    if api.is_ready() {
        Json(serde_json::json!({"status": "UP"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Extension(super::OwnBody),
            Json(serde_json::json!({"status": "DOWN"})),
        )
            .into_response()
    }
}

// ---------------------------------------------------------------------------------
// Media nodes (OpenVidu Pro)
// ---------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
struct MediaNodeQuery {
    sessions: Option<bool>,
    extra_info: Option<bool>,
    wait: Option<bool>,
    deletion_strategy: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MediaNodeJson {
    id: String,
    object: &'static str,
    environment_id: String,
    ip: String,
    uri: String,
    connected: bool,
    connection_time: u64,
    launching_time: u64,
    load: Option<f64>,
    /// OpenVidu's status spelling (`running`, `waiting-idle-to-terminate`…), plus
    /// Chorus's `crashed`.
    status: String,
    cores: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    sessions: Option<Vec<Value>>,
    /// The recordings it is starting, making or finishing.
    recordings: Vec<Value>,
    broadcasts: [(); 0],
}

fn media_node_json(
    api: &HttpApi,
    state: &state::State,
    node: &MediaNode,
    with_sessions: bool,
) -> MediaNodeJson {
    let host = node
        .uri
        .split_once("://")
        .map_or(node.uri.as_str(), |(_, rest)| rest);
    let host = host.split(['/', '?']).next().unwrap_or_default();
    let ip = match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let sessions = with_sessions.then(|| {
        state
            .session_ids_on(&node.id)
            .filter_map(|id| state.session(id))
            .map(|s| serde_json::to_value(session_json(state, s, false)).unwrap_or_default())
            .collect()
    });
    MediaNodeJson {
        id: node.id.clone(),
        object: "mediaNode",
        environment_id: node.environment_id.clone(),
        ip: ip.trim_start_matches('[').trim_end_matches(']').to_owned(),
        uri: node.uri.clone(),
        connected: node.status.can_host_sessions(),
        connection_time: node.registered_at,
        launching_time: node.registered_at,
        load: api.service.loads()(&node.id),
        status: node.status.openvidu_name(),
        cores: node.cores,
        sessions,
        recordings: state
            .recordings_on(&node.id)
            .map(crate::events::recording_json)
            .collect(),
        broadcasts: [],
    }
}

/// The JSON of a write's media node.
fn media_node_answer(api: &HttpApi, outcome: Outcome) -> Result<Response, Problem> {
    match outcome {
        Outcome::MediaNode(node) => {
            let applied = api.service.local();
            Ok(Json(media_node_json(api, &applied.state, &node, false)).into_response())
        }
        other => Err(problem(reused_request_id(other))),
    }
}

/// GET /media-nodes: every registered node.
async fn list_media_nodes(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<MediaNodeQuery>,
) -> Result<Response, Problem> {
    let _ = query.extra_info;
    let applied = api
        .read(&principal, "MediaNodeService/ListMediaNodes")
        .await?;
    let with_sessions = query.sessions.unwrap_or(false);
    if with_sessions {
        within_budget(&applied.state, applied.state.sessions())?;
    }
    let content = applied
        .state
        .media_nodes()
        .map(|n| media_node_json(&api, &applied.state, n, with_sessions))
        .collect();
    Ok(Json(List::of(content)).into_response())
}

/// GET /media-nodes/{id}: 200 or 404.
async fn get_media_node(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(node_id): Path<String>,
    Query(query): Query<MediaNodeQuery>,
) -> Result<Response, Problem> {
    let applied = api
        .read(&principal, "MediaNodeService/GetMediaNode")
        .await?;
    let node = applied
        .state
        .find_media_node(&node_id)
        .map_err(|e| problem(e.into()))?;
    if query.sessions.unwrap_or(false) {
        let hosted = applied
            .state
            .session_ids_on(&node_id)
            .filter_map(|id| applied.state.session(id));
        within_budget(&applied.state, hosted)?;
    }
    let json = media_node_json(&api, &applied.state, node, query.sessions.unwrap_or(false));
    Ok(Json(json).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct AddMediaNodeBody {
    uri: Option<String>,
    environment_id: Option<String>,
    /// Chorus: the node's id (default `media_<environmentId>`, or a random one).
    id: Option<String>,
    /// Chorus: its CPU cores, for license metering (default 1).
    cores: Option<u32>,
}

/// POST /media-nodes: registers a node, LAUNCHING until its agent's first heartbeat;
/// 200 and the node, 400 for a bad body, 409 if the id is registered differently.
async fn add_media_node(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let body: AddMediaNodeBody = body(&bytes)?;
    let uri = body
        .uri
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Problem::bad_request("uri: is required"))?;
    let environment_id = body.environment_id.unwrap_or_default();
    let id = body.id.filter(|id| !id.is_empty()).unwrap_or_else(|| {
        if environment_id.is_empty() {
            format!("media_{}", Alphanumeric.sample_string(&mut rand::rng(), 12))
        } else {
            format!("media_{environment_id}")
        }
    });
    let write = Write::RegisterMediaNode {
        id,
        uri,
        environment_id,
        cores: body.cores.unwrap_or(1),
        can_record: false,
    };
    let outcome = api
        .write(&principal, "MediaNodeService/RegisterMediaNode", write)
        .await?;
    media_node_answer(&api, outcome)
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusBody {
    status: Option<String>,
}

/// PATCH /media-nodes/{id}: moves the node along the status graph; 200 and the node,
/// 204 if it already had that status, 400 for a bad status, 404 without the node, 409
/// for a move the graph does not allow.
async fn set_media_node_status(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(node_id): Path<String>,
    bytes: Bytes,
) -> Result<Response, Problem> {
    let body: StatusBody = body(&bytes)?;
    let status = parse::<MediaNodeStatus>(body.status.as_deref(), "status")?
        .ok_or_else(|| Problem::bad_request("status: is required"))?;
    allow(&principal, "MediaNodeService/SetMediaNodeStatus")?;
    let current = {
        let applied = api
            .read(&principal, "MediaNodeService/GetMediaNode")
            .await?;
        applied
            .state
            .find_media_node(&node_id)
            .map_err(|e| problem(e.into()))?
            .status
    };
    if current == status {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let write = Write::SetMediaNodeStatus {
        id: node_id,
        status,
    };
    let outcome = api
        .write(&principal, "MediaNodeService/SetMediaNodeStatus", write)
        .await?;
    media_node_answer(&api, outcome)
}

/// DELETE /media-nodes/{id}?deletion-strategy=…: `now` removes it at once, displacing
/// its sessions (they are placed elsewhere); `if-no-sessions` (the default) removes it
/// only if it hosts none (409 otherwise); `when-no-sessions` removes it at once if it
/// hosts none (204), or drains it (202): it takes no new sessions and becomes
/// TERMINATING when its last one ends, to be deregistered then.
async fn remove_media_node(
    State(api): State<HttpApi>,
    Extension(principal): Extension<Principal>,
    Path(node_id): Path<String>,
    Query(query): Query<MediaNodeQuery>,
) -> Result<Response, Problem> {
    let _ = query.wait;
    let strategy = query
        .deletion_strategy
        .as_deref()
        .unwrap_or("if-no-sessions");
    let deregister = |force| Write::DeregisterMediaNode {
        id: node_id.clone(),
        force,
    };
    let method = "MediaNodeService/DeregisterMediaNode";
    allow(&principal, method)?;
    let write = match strategy {
        "now" => deregister(true),
        "if-no-sessions" => deregister(false),
        "when-no-sessions" => {
            let hosted = {
                let applied = api
                    .read(&principal, "MediaNodeService/GetMediaNode")
                    .await?;
                applied
                    .state
                    .find_media_node(&node_id)
                    .map_err(|e| problem(e.into()))?;
                applied.state.hosted_on(&node_id)
            };
            if hosted == 0 {
                deregister(false)
            } else {
                let drain = Write::SetMediaNodeStatus {
                    id: node_id.clone(),
                    status: MediaNodeStatus::WaitingIdleToTerminate,
                };
                api.write(&principal, "MediaNodeService/SetMediaNodeStatus", drain)
                    .await?;
                return Ok(StatusCode::ACCEPTED.into_response());
            }
        }
        other => {
            return Err(Problem::bad_request(format!(
                "deletion-strategy: unknown value '{other:.40}'; expected one of now, \
                 if-no-sessions, when-no-sessions"
            )));
        }
    };
    match api.write(&principal, method, write).await? {
        Outcome::MediaNodeDeregistered { .. } => Ok(StatusCode::NO_CONTENT.into_response()),
        other => Err(problem(reused_request_id(other))),
    }
}
