//! The application's requests as every front end hands them to the service layer, before
//! anything non-deterministic was decided, and their validation.
//!
//! Three kinds, executed differently on the leader:
//! - a [`Write`] changes the domain state: the leader turns it into an
//!   [`Op`](crate::state::Op) and proposes it, under the client's request id;
//! - a [`MembershipChange`] goes to openraft's membership API, not the state machine;
//! - a [`Heartbeat`] is soft state for the leader's memory, logged only when it changes
//!   the node's status.
//!
//! [`Request`] is what travels to the leader (over the peer port from a follower), and
//! [`Executed`] what comes back.

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::state::{
    self, ConnectionType, HookOutcome, MediaMode, MediaNodeStatus, Outcome, RecordingAction,
    RecordingMode, RecordingProperties, Role, VideoCodec,
};

/// A domain write, as it reached the API: nothing drawn, stamped or chosen yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Write {
    /// SessionService.CreateSession.
    CreateSession {
        /// The client's id; `None`: the leader generates `ses_…`.
        custom_id: Option<String>,
        media_mode: MediaMode,
        recording_mode: RecordingMode,
        forced_video_codec: VideoCodec,
        allow_transcoding: bool,
        /// A RUNNING node to place the session on at once.
        media_node_id: Option<String>,
        /// Settings kept for the application (a JSON object).
        options: Option<Box<str>>,
        /// What its recordings look like by default.
        recording_defaults: Option<RecordingProperties>,
    },
    /// SessionService.DeleteSession.
    DeleteSession { session_id: String },
    /// ConnectionService.CreateConnection.
    CreateConnection {
        session_id: String,
        connection_type: ConnectionType,
        role: Role,
        server_data: String,
        record: bool,
        /// Settings kept for the application (a JSON object).
        options: Option<Box<str>>,
    },
    /// ConnectionService.UpdateConnection.
    UpdateConnection {
        session_id: String,
        connection_id: String,
        role: Option<Role>,
        record: Option<bool>,
    },
    /// ConnectionService.JoinConnection.
    JoinConnection {
        token: String,
        /// The participant's address, as the master that took the call saw it.
        ip: String,
        client_data: Option<String>,
    },
    /// ConnectionService.DeleteConnection.
    DeleteConnection {
        session_id: String,
        connection_id: String,
    },
    /// MediaNodeService.RegisterMediaNode.
    RegisterMediaNode {
        id: String,
        uri: String,
        environment_id: String,
        cores: u32,
        can_record: bool,
    },
    /// MediaNodeService.SetMediaNodeStatus.
    SetMediaNodeStatus { id: String, status: MediaNodeStatus },
    /// MediaNodeService.DeregisterMediaNode.
    DeregisterMediaNode { id: String, force: bool },
    /// RecordingService.Start.
    StartRecording {
        session_id: String,
        properties: RecordingProperties,
    },
    /// RecordingService.Stop.
    StopRecording { recording_id: String },
    /// RecordingService.Delete.
    DeleteRecording { recording_id: String },
}

/// A change to the group's membership or leadership (ClusterService).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipChange {
    /// Adds master `id` at `peer_addr` as a learner; `blocking` waits for it to catch up.
    AddLearner {
        id: u64,
        peer_addr: String,
        blocking: bool,
    },
    /// Makes `voters` the voters; `retain` keeps removed voters as learners.
    ChangeMembership { voters: Vec<u64>, retain: bool },
    /// Drops learners `ids` from the group.
    RemoveLearners { ids: Vec<u64> },
    /// Hands leadership to voter `to`.
    TransferLeadership { to: u64 },
}

/// A media node's heartbeat: it is alive and this loaded (CPU, 0–100), and this is
/// what its recording hook did since it last heard back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node_id: String,
    pub load: f64,
    /// Recording id → what the hook did for it.
    pub reports: Vec<(String, HookOutcome)>,
}

/// The most hook reports one heartbeat may carry.
const MAX_REPORTS: usize = 1_000;

/// What the leader answers a heartbeat: the node's status as the registry records it,
/// and what the node must do for recordings now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    pub status: MediaNodeStatus,
    /// (recording id, session id, what to do).
    pub tasks: Vec<(String, String, RecordingAction)>,
}

/// What a master asks the leader to execute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Write {
        /// Makes a resend harmless: the state machine answers it with the first result.
        request_id: Option<String>,
        write: Write,
    },
    Membership(MembershipChange),
    Heartbeat(Heartbeat),
}

/// What executing a [`Request`] produced, one variant per kind.
///
/// Its size is the outcome's: an answer made once and moved to the caller, never kept
/// in numbers, so boxing the outcome would only add an allocation per write.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Executed {
    /// The state machine's answer to a write.
    Outcome(Outcome),
    /// A membership change or leadership transfer took effect at this log index (0 for
    /// a transfer, which writes no entry of its own).
    Membership { index: u64 },
    /// The heartbeat's node, as the registry records it now, and its recording tasks.
    Heartbeat(HeartbeatAnswer),
}

impl Request {
    /// Checks what can be checked without the state, so that a malformed request is
    /// refused by the master that received it, before anything is forwarded or logged.
    /// The state machine checks all of it again: this is a fast path, not the guard.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Request::Write { request_id, write } => {
                if let Some(id) = request_id {
                    state::validate_request_id(id)?;
                }
                write.validate()
            }
            Request::Membership(change) => change.validate(),
            Request::Heartbeat(heartbeat) => heartbeat.validate(),
        }
    }

    /// Whether a master may send it again after an unknown outcome (the leader died
    /// with it in flight): a write only under a request id, which makes the resend
    /// harmless; membership changes always, as executing them twice is. A heartbeat
    /// is not: the next one comes within a second anyway.
    pub fn is_resendable(&self) -> bool {
        match self {
            Request::Write { request_id, .. } => request_id.is_some(),
            Request::Membership(_) => true,
            Request::Heartbeat(_) => false,
        }
    }
}

impl Write {
    fn validate(&self) -> Result<(), Error> {
        match self {
            Write::CreateSession {
                custom_id,
                media_node_id,
                ..
            } => {
                if let Some(id) = custom_id {
                    state::validate_session_id(id).map_err(|e| rename(e, "custom_session_id"))?;
                }
                if let Some(id) = media_node_id {
                    state::validate_media_node_id(id)?;
                }
            }
            Write::DeleteSession { session_id } => {
                if session_id.is_empty() {
                    return Err(Error::invalid("session_id", "is required"));
                }
                state::validate_session_id(session_id)?
            }
            Write::CreateConnection { session_id, .. } => state::validate_session_id(session_id)?,
            Write::JoinConnection { token, ip, .. } => {
                state::validate_token(token)?;
                if ip.len() > state::MAX_IP_LEN {
                    return Err(Error::invalid(
                        "ip",
                        format!("is longer than {} bytes", state::MAX_IP_LEN),
                    ));
                }
            }
            Write::DeleteConnection {
                session_id,
                connection_id,
            }
            | Write::UpdateConnection {
                session_id,
                connection_id,
                ..
            } => {
                state::validate_session_id(session_id)?;
                state::validate_connection_id(connection_id)?;
            }
            Write::RegisterMediaNode { id, uri, cores, .. } => {
                state::validate_media_node_id(id).map_err(|e| rename(e, "id"))?;
                if uri.is_empty() {
                    return Err(Error::invalid("uri", "is required"));
                }
                if *cores == 0 {
                    return Err(Error::invalid("cores", "must be at least 1"));
                }
            }
            Write::SetMediaNodeStatus { id, .. } | Write::DeregisterMediaNode { id, .. } => {
                state::validate_media_node_id(id).map_err(|e| rename(e, "id"))?
            }
            Write::StartRecording {
                session_id,
                properties,
            } => {
                if session_id.is_empty() {
                    return Err(Error::invalid("session_id", "is required"));
                }
                state::validate_session_id(session_id)?;
                properties.validate()?;
            }
            Write::StopRecording { recording_id } | Write::DeleteRecording { recording_id } => {
                validate_recording_id(recording_id)?
            }
        }
        Ok(())
    }
}

impl MembershipChange {
    fn validate(&self) -> Result<(), Error> {
        match self {
            MembershipChange::AddLearner { id, peer_addr, .. } => {
                if *id == 0 {
                    return Err(Error::invalid("id", "must be non-zero"));
                }
                if peer_addr.parse::<std::net::SocketAddr>().is_err() {
                    return Err(Error::invalid(
                        "peer_addr",
                        format!("`{peer_addr}` is not host:port"),
                    ));
                }
            }
            MembershipChange::ChangeMembership { voters, .. } => {
                if voters.is_empty() {
                    return Err(Error::invalid("voters", "must name at least one voter"));
                }
                let distinct: std::collections::BTreeSet<_> = voters.iter().collect();
                if distinct.len() != voters.len() {
                    return Err(Error::invalid("voters", "lists a voter twice"));
                }
            }
            MembershipChange::RemoveLearners { ids } => {
                if ids.is_empty() {
                    return Err(Error::invalid("remove_learners", "must name a learner"));
                }
                let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
                if distinct.len() != ids.len() {
                    return Err(Error::invalid("remove_learners", "lists a learner twice"));
                }
            }
            MembershipChange::TransferLeadership { to } => {
                if *to == 0 {
                    return Err(Error::invalid("to", "must be non-zero"));
                }
            }
        }
        Ok(())
    }
}

impl Heartbeat {
    fn validate(&self) -> Result<(), Error> {
        state::validate_media_node_id(&self.node_id).map_err(|e| rename(e, "node_id"))?;
        if !(0.0..=100.0).contains(&self.load) {
            return Err(Error::invalid("load", "must be a CPU load from 0 to 100"));
        }
        if self.reports.len() > MAX_REPORTS {
            return Err(Error::invalid(
                "reports",
                format!("at most {MAX_REPORTS} per heartbeat"),
            ));
        }
        for (id, outcome) in &self.reports {
            validate_recording_id(id).map_err(|e| match e {
                Error::InvalidArgument { reason, .. } => {
                    Error::invalid("reports.recording_id", reason)
                }
                other => other,
            })?;
            outcome.check()?;
        }
        Ok(())
    }
}

/// A recording id: a session id, possibly followed by `~N`.
pub fn validate_recording_id(id: &str) -> Result<(), Error> {
    let session = match id.rsplit_once('~') {
        Some((session, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => session,
        _ => id,
    };
    if id.is_empty() || state::validate_session_id(session).is_err() {
        return Err(Error::invalid(
            "recording_id",
            format!("'{id:.40}' is not a recording id (a session id, then ~N for later ones)"),
        ));
    }
    Ok(())
}

/// A domain validation error reported under the API's name for the field.
fn rename(error: state::Error, field: &str) -> Error {
    match error {
        state::Error::InvalidArgument { reason, .. } => Error::invalid(field, reason),
        other => other.into(),
    }
}

/// The answer to a write whose outcome is of another kind than the write asked for: it
/// can only be a remembered response, because the request id was first used for a
/// different operation.
pub fn reused_request_id(_outcome: Outcome) -> Error {
    Error::invalid(
        "request_id",
        "was already used for a different operation; use a fresh id per operation",
    )
}
