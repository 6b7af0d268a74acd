//! The one semantic error of the state machine.
//!
//! Every variant is a *deterministic domain rejection*: all masters applying the same
//! command reach the same error, so an error is a legitimate, replicated result (it is
//! even remembered under the command's request id). Nothing here is retryable
//! infrastructure trouble; UNAVAILABLE belongs to the Raft and API layers.
//!
//! The variants map one to one onto gRPC codes (INVALID_ARGUMENT, NOT_FOUND,
//! ALREADY_EXISTS, FAILED_PRECONDITION, RESOURCE_EXHAUSTED); the mapping lives in the
//! API layer. `Display` is the user-facing message: it names the field or the ids, and
//! never a whole secret token.

use serde::{Deserialize, Serialize};

/// Why a command was refused. A refused command changed nothing in the state (apart
/// from the request-id memory, see `RequestLog`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// A field of the command is malformed (INVALID_ARGUMENT).
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The offending field, spelled as in the API (snake_case).
        field: String,
        /// What is wrong with it, in words a user can act on.
        reason: String,
    },
    /// The command names something that does not exist (NOT_FOUND).
    #[error("{kind} '{id}' not found")]
    NotFound {
        /// What was looked for: "session", "connection", "media node", "token".
        kind: String,
        /// Which one; for a token only a short prefix, never the secret.
        id: String,
    },
    /// The command would create something that already exists (ALREADY_EXISTS).
    #[error("{kind} '{id}' already exists")]
    AlreadyExists {
        /// What would have been created: "session", "connection", "media node", "token".
        kind: String,
        /// Which one; for a token only a short prefix, never the secret.
        id: String,
    },
    /// The command is well formed but the state does not allow it now
    /// (FAILED_PRECONDITION): token already used, node not running, license expired.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A configured limit would be exceeded (RESOURCE_EXHAUSTED); the message names it.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A recording rule refused the command (FAILED_PRECONDITION); `why` is which of
    /// OpenVidu's answers (406, 409, 501) the REST API gives.
    #[error("{message}")]
    RecordingRefused {
        why: super::Refusal,
        message: String,
    },
}

impl Error {
    /// An `InvalidArgument` for `field`.
    pub fn invalid_argument(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// A `NotFound` for the `kind` of thing named `id`.
    pub fn not_found(kind: &str, id: impl Into<String>) -> Self {
        Error::NotFound {
            kind: kind.to_owned(),
            id: id.into(),
        }
    }

    /// An `AlreadyExists` for the `kind` of thing named `id`.
    pub fn already_exists(kind: &str, id: impl Into<String>) -> Self {
        Error::AlreadyExists {
            kind: kind.to_owned(),
            id: id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_the_id() {
        let invalid = Error::invalid_argument("session_id", "must not be empty");
        assert_eq!(invalid.to_string(), "invalid session_id: must not be empty");
        assert_eq!(
            Error::not_found("session", "s1").to_string(),
            "session 's1' not found"
        );
        assert_eq!(
            Error::already_exists("media node", "n1").to_string(),
            "media node 'n1' already exists"
        );
        assert_eq!(Error::FailedPrecondition("no".into()).to_string(), "no");
    }
}
