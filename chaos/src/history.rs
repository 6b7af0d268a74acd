//! The recorded client history: every operation with its invocation and completion
//! times (microseconds since the run started) and what came back.

use serde::Serialize;

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Call {
    /// CreateSession with a custom id (colliding ids on purpose).
    CreateSession { session: String },
    /// DeleteSession.
    DeleteSession { session: String },
    /// CreateConnection on a session.
    CreateConnection { session: String, request_id: String },
    /// JoinConnection with a token a CreateConnection returned.
    JoinConnection { session: String, token: String },
    /// DeleteConnection.
    DeleteConnection { session: String, connection: String },
    /// GetSession, linearizable or not.
    GetSession { session: String, linearizable: bool },
    /// RegisterMediaNode and a heartbeat for it.
    RegisterNode { node: String },
}

impl Call {
    /// The session this call is about, if any: the unit of the per-key checks.
    pub fn session(&self) -> Option<&str> {
        match self {
            Call::CreateSession { session }
            | Call::DeleteSession { session }
            | Call::CreateConnection { session, .. }
            | Call::JoinConnection { session, .. }
            | Call::DeleteConnection { session, .. }
            | Call::GetSession { session, .. } => Some(session),
            Call::RegisterNode { .. } => None,
        }
    }

    /// Whether it may change the state.
    pub fn is_write(&self) -> bool {
        !matches!(self, Call::GetSession { .. })
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Success; for reads, whether the session existed is in `found`.
    Ok(Value),
    /// A definitive refusal with this gRPC code (NOT_FOUND, ALREADY_EXISTS, …).
    Refused(String),
    /// No definitive answer (timeout, UNAVAILABLE after retries): maybe applied.
    Unknown,
}

/// The part of a successful answer the checkers use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Value {
    /// Nothing more than success.
    Done,
    /// A created connection: its id and token.
    Connection { id: String, token: String },
    /// A deleted connection: whether the session went with it.
    ConnectionDeleted { session_destroyed: bool },
    /// A read: whether the session was found.
    Read { found: bool },
}

/// One completed operation.
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// The client that made it.
    pub client: usize,
    pub call: Call,
    /// Microseconds since the start of the run.
    pub invoked: u64,
    pub completed: u64,
    pub outcome: Outcome,
}

impl Op {
    pub fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok(_))
    }
}
