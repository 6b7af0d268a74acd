//! What goes into the Raft log: a `Command` (an `Op` stamped by the leader) and the
//! `Response` that applying it yields on every master.
//!
//! The leader does all the non-deterministic work *before* proposing: it reads its
//! wall clock into `at`, draws connection ids, tokens and token seeds from a CSPRNG,
//! picks media nodes, and copies its configured `Limits` into the op. Applying the
//! command is then a pure function of the state and these bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    AutoscalingAdvice, CheckOutcome, Connection, ConnectionType, Error, HookOutcome, License,
    MediaMode, MediaNode, MediaNodeStatus, Recording, RecordingMode, RecordingProperties, Role,
    Session, TrustPolicy, VideoCodec,
};

/// Wall-clock milliseconds since the UNIX epoch, as stamped by the leader.
pub type Millis = u64;

/// The result of applying one command; an `Err` changed nothing (see `State::apply`).
pub type Response = Result<Outcome, Error>;

/// One entry of the replicated log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The client's idempotency key: a retried command with the same id returns the
    /// first response instead of applying again. At most 128 bytes.
    pub request_id: Option<String>,
    /// The leader's wall clock when it proposed the command. The state keeps the
    /// maximum seen, so log time never runs backwards after a failover.
    pub at: Millis,
    /// What to do.
    pub op: Op,
}

/// The limits the leader is configured with, copied into the ops they govern so that
/// applying stays deterministic even if masters are configured differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Most sessions the cluster holds at once.
    pub max_sessions: u32,
    /// Most connections (pending and active) one session holds at once.
    pub max_connections_per_session: u32,
    /// Largest `server_data` or `client_data`, in bytes.
    pub max_data_bytes: u32,
}

/// The request to create a session (payload of `Op::CreateSession`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    /// The final id: the client's custom id, or one the leader generated (`ses_…`).
    pub session_id: String,
    /// How media flows between participants.
    pub media_mode: MediaMode,
    /// Whether recording starts by itself.
    pub recording_mode: RecordingMode,
    /// The video codec every publisher must use.
    pub forced_video_codec: VideoCodec,
    /// Whether the media node may transcode streams that do not match the codec.
    pub allow_transcoding: bool,
    /// A media node the client insists on; it must exist and be RUNNING.
    pub media_node_id: Option<String>,
    /// Settings kept for the application (a JSON object, see `Session::options`).
    pub options: Option<Box<str>>,
    /// What the session's recordings look like unless a start says otherwise (and what
    /// ALWAYS recordings look like); `None`: OpenVidu's defaults.
    pub recording_defaults: Option<RecordingProperties>,
    /// The leader's limits.
    pub limits: Limits,
}

/// The request to create a connection (payload of `Op::CreateConnection`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewConnection {
    /// The session the connection joins.
    pub session_id: String,
    /// `con_…`, drawn by the leader.
    pub connection_id: String,
    /// `tok_…`, drawn by the leader from a CSPRNG.
    pub token: String,
    /// WEBRTC or IPCAM.
    pub connection_type: ConnectionType,
    /// What the participant may do.
    pub role: Role,
    /// Opaque data the application attaches; at most `limits.max_data_bytes`.
    pub server_data: String,
    /// Whether the participant is recorded.
    pub record: bool,
    /// Settings kept for the application (a JSON object, see `Connection::options`).
    pub options: Option<Box<str>>,
    /// The node the leader chose in case the session is still unplaced. Used only if
    /// it is RUNNING; otherwise the session stays unplaced and the connection is
    /// created anyway.
    pub place_on: Option<String>,
    /// The leader's limits.
    pub limits: Limits,
}

/// Every state change the cluster can make.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// The leader saw master `id` durably store log entries. Returns
    /// `Outcome::MasterJoined`. Lets a master starting with an empty data dir tell
    /// "never joined" (safe to start) from "wiped" (must not vote again).
    MasterJoined {
        /// The master's Raft node id.
        id: u64,
    },
    /// Create a session. Returns `Outcome::Session`.
    CreateSession(NewSession),
    /// Delete a session and all its connections. Returns `Outcome::SessionDeleted`.
    DeleteSession {
        /// The session to delete.
        session_id: String,
    },
    /// Place an unplaced session on a RUNNING node. Returns `Outcome::Placed`.
    PlaceSession {
        /// The unplaced session.
        session_id: String,
        /// The RUNNING node the leader chose.
        media_node_id: String,
    },
    /// Create a PENDING connection. Returns `Outcome::Connection`.
    CreateConnection(NewConnection),
    /// Use a token: its PENDING connection becomes ACTIVE. Returns `Outcome::Connection`.
    JoinConnection {
        /// The token the participant presents.
        token: String,
        /// The participant's address as the API saw it; at most 64 bytes.
        ip: String,
        /// Data the participant attaches; replaces the connection's `client_data` if given.
        client_data: Option<String>,
        /// The leader's limits (for `client_data`).
        limits: Limits,
    },
    /// Change a connection's role or whether it is recorded. Returns
    /// `Outcome::Connection`.
    UpdateConnection {
        /// The connection's session.
        session_id: String,
        /// The connection.
        connection_id: String,
        /// The new role; `None` keeps it.
        role: Option<Role>,
        /// Whether it is recorded from now on; `None` keeps it.
        record: Option<bool>,
    },
    /// Remove a connection; the last ACTIVE one leaving destroys the session.
    /// Returns `Outcome::ConnectionDeleted`.
    DeleteConnection {
        /// The connection's session.
        session_id: String,
        /// The connection.
        connection_id: String,
    },
    /// Add a media node in LAUNCHING, or confirm an identical registration.
    /// Returns `Outcome::MediaNode`.
    RegisterMediaNode {
        /// The node's id.
        id: String,
        /// Where the media server listens; non-empty, at most 512 bytes.
        uri: String,
        /// The hosting environment's id for the node (e.g. a cloud instance id); may be empty.
        environment_id: String,
        /// CPU cores, for license metering; at least 1.
        cores: u32,
        /// Whether its agent runs a recording hook.
        can_record: bool,
    },
    /// Move a node along the status graph. Returns `Outcome::MediaNode`.
    SetMediaNodeStatus {
        /// The node.
        id: String,
        /// The wanted status.
        status: MediaNodeStatus,
    },
    /// A heartbeat that changes the node's status: LAUNCHING or CRASHED become
    /// RUNNING; any other status is left as is. Returns `Outcome::MediaNode`.
    MediaNodeSeen {
        /// The node that sent the heartbeat.
        id: String,
    },
    /// The leader's liveness check gave up on a RUNNING node: it becomes CRASHED and
    /// its sessions are displaced. Returns `Outcome::MediaNodeCrashed`.
    MediaNodeCrashed {
        /// The silent node.
        id: String,
        /// Fresh CSPRNG bytes from which the displaced connections' new tokens derive.
        token_seed: [u8; 32],
    },
    /// Remove a node from the registry. Refused while it hosts sessions unless
    /// `force`, which displaces them first. Returns `Outcome::MediaNodeDeregistered`.
    DeregisterMediaNode {
        /// The node.
        id: String,
        /// Displace the node's sessions instead of refusing.
        force: bool,
        /// Fresh CSPRNG bytes from which the displaced connections' new tokens derive.
        token_seed: [u8; 32],
    },
    /// The result of one license check. Returns `Outcome::License`.
    LicenseChecked {
        /// What the authority (or the offline license file) said.
        outcome: CheckOutcome,
        /// The leader's trust policy.
        policy: TrustPolicy,
    },
    /// The leader's autoscaling advice changed. Returns `Outcome::AutoscalingAdvised`.
    AutoscalingAdvised(AutoscalingAdvice),
    /// Core-minutes metered over the log-time window `since..until`, per node (media
    /// nodes, and masters as `master-<id>`). `since` must be where the last record
    /// ended (`None` for the first), so a window is never metered twice, even when a
    /// deposed leader's record arrives late. Returns `Outcome::License`.
    UsageRecorded {
        /// Where the last record ended, as the leader read it.
        since: Option<Millis>,
        /// Where this one ends.
        until: Millis,
        /// Node id → core-minutes to add.
        minutes: BTreeMap<String, u64>,
    },
    /// Retention: drop the events before `keep_from`. Returns `Outcome::EventsTrimmed`.
    TrimEvents {
        /// The oldest event id to keep.
        keep_from: u64,
    },
    /// The webhook receiver acknowledged every event up to `through`. Returns
    /// `Outcome::WebhookDelivered`.
    WebhookDelivered {
        /// The last event id delivered (or, past a gap, given up on).
        through: u64,
        /// The first of the events up to `through` that retention dropped before the
        /// sender read them (a gap), if any.
        lost_from: Option<u64>,
    },
    /// Start recording a session on its media node. Returns `Outcome::Recording`.
    StartRecording {
        session_id: String,
        properties: RecordingProperties,
    },
    /// Stop a started recording. Returns `Outcome::Recording`.
    StopRecording { recording_id: String },
    /// Forget a recording that is not active. Returns `Outcome::RecordingDeleted`.
    DeleteRecording { recording_id: String },
    /// What a media node's hook did for a recording, as its agent reported it.
    /// Returns `Outcome::RecordingReported`.
    RecordingReported {
        media_node_id: String,
        recording_id: String,
        outcome: HookOutcome,
    },
}

impl Op {
    /// The checks that need no state (the shapes and sizes of its fields), the same
    /// that applying it makes: the leader runs them before proposing, so a request
    /// that would be refused never enters the log.
    pub fn check(&self) -> Result<(), Error> {
        match self {
            Op::CreateConnection(new) => {
                super::connection::check_data_size("server_data", &new.server_data, new.limits)?;
                super::connection::check_options("options", new.options.as_deref())
            }
            Op::CreateSession(new) => {
                super::connection::check_options("options", new.options.as_deref())
            }
            Op::JoinConnection {
                token,
                ip,
                client_data,
                limits,
            } => super::connection::check_join(token, ip, client_data.as_deref(), *limits),
            Op::RegisterMediaNode {
                id,
                uri,
                environment_id,
                cores,
                ..
            } => super::media_node::check_registration(id, uri, environment_id, *cores),
            Op::StartRecording { properties, .. } => properties.validate(),
            Op::RecordingReported { outcome, .. } => outcome.check(),
            _ => Ok(()),
        }
    }
}

/// What a successful op returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A log entry that is not a command (Raft's own blank and membership entries) was
    /// applied; the domain state did not change.
    RaftInternal,
    /// Master `id` is recorded as holding log entries.
    MasterJoined {
        /// The master's Raft node id.
        id: u64,
    },
    /// The session just created.
    Session(Session),
    /// A session was deleted.
    SessionDeleted {
        /// Its id.
        session_id: String,
        /// Which incarnation of that id was deleted.
        incarnation: u64,
        /// How many connections went with it.
        connections_removed: u32,
    },
    /// A session was placed on a media node.
    Placed {
        /// The session.
        session_id: String,
        /// The node now serving it.
        media_node_id: String,
    },
    /// The connection after it was created or joined.
    Connection {
        /// Its session.
        session_id: String,
        /// The connection.
        connection: Connection,
        /// The node serving its session; `None` while the session waits for placement.
        media_node_id: Option<String>,
    },
    /// A connection was deleted.
    ConnectionDeleted {
        /// Its session.
        session_id: String,
        /// The connection.
        connection_id: String,
        /// Whether it was the last ACTIVE connection, so the session went with it
        /// (OpenVidu's `lastParticipantLeft`).
        session_destroyed: bool,
    },
    /// The media node after the op.
    MediaNode(MediaNode),
    /// A node was declared CRASHED.
    MediaNodeCrashed {
        /// The node, now CRASHED.
        media_node: MediaNode,
        /// Sessions it hosted, now unplaced and waiting for the leader to re-place them.
        displaced_sessions: Vec<String>,
    },
    /// A node left the registry.
    MediaNodeDeregistered {
        /// The node as it was when removed.
        media_node: MediaNode,
        /// Sessions it hosted (only with `force`), now unplaced.
        displaced_sessions: Vec<String>,
    },
    /// The license after the op.
    License(License),
    /// The advice as recorded.
    AutoscalingAdvised(AutoscalingAdvice),
    /// Retention dropped the events before `oldest`.
    EventsTrimmed {
        /// The oldest event id held now (the next to come if none is held).
        oldest: u64,
    },
    /// The webhook's delivered mark after the op.
    WebhookDelivered {
        /// Every event up to this id is delivered.
        delivered: u64,
        /// Events `(first, last)` that retention dropped before delivery, if the mark
        /// jumped over any.
        lost: Option<(u64, u64)>,
    },
    /// The recording after the op.
    Recording(Box<Recording>),
    /// A recording was deleted; as it was.
    RecordingDeleted { recording: Box<Recording> },
    /// A hook's report applied: the recording after it, or `None` if the report no
    /// longer applied (a resend, or the recording moved on).
    RecordingReported { recording: Option<Box<Recording>> },
}

impl std::fmt::Display for Command {
    /// A one-line summary for logs: the op's name and the request id, never the
    /// op's data (which may hold tokens).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match &self.op {
            Op::CreateSession(_) => "CreateSession",
            Op::DeleteSession { .. } => "DeleteSession",
            Op::PlaceSession { .. } => "PlaceSession",
            Op::CreateConnection(_) => "CreateConnection",
            Op::JoinConnection { .. } => "JoinConnection",
            Op::UpdateConnection { .. } => "UpdateConnection",
            Op::DeleteConnection { .. } => "DeleteConnection",
            Op::RegisterMediaNode { .. } => "RegisterMediaNode",
            Op::SetMediaNodeStatus { .. } => "SetMediaNodeStatus",
            Op::MediaNodeSeen { .. } => "MediaNodeSeen",
            Op::MediaNodeCrashed { .. } => "MediaNodeCrashed",
            Op::DeregisterMediaNode { .. } => "DeregisterMediaNode",
            Op::LicenseChecked { .. } => "LicenseChecked",
            Op::UsageRecorded { .. } => "UsageRecorded",
            Op::MasterJoined { .. } => "MasterJoined",
            Op::AutoscalingAdvised(_) => "AutoscalingAdvised",
            Op::TrimEvents { .. } => "TrimEvents",
            Op::WebhookDelivered { .. } => "WebhookDelivered",
            Op::StartRecording { .. } => "StartRecording",
            Op::StopRecording { .. } => "StopRecording",
            Op::DeleteRecording { .. } => "DeleteRecording",
            Op::RecordingReported { .. } => "RecordingReported",
        };
        match &self.request_id {
            Some(id) => write!(f, "{name}(request_id={id:.40})"),
            None => f.write_str(name),
        }
    }
}
