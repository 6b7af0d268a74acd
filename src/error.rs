//! The one error type of the request path, and its single mapping to gRPC statuses.
//!
//! Domain rejections come from the state machine and are deterministic; the rest come
//! from consensus. Retryable conditions (no leader, no quorum, shutting down) are kept
//! apart as [`Error::Unavailable`], the only variant a client should retry.

use serde::{Deserialize, Serialize};

use crate::state;

/// A request that did not succeed. Serializable: a follower relays the leader's error
/// for a forwarded write unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Error {
    /// The state machine refused the command.
    #[error(transparent)]
    Domain(#[from] state::Error),
    /// Bad input caught before proposing.
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    /// The operation needs something this cluster's state does not allow now.
    #[error("{0}")]
    FailedPrecondition(String),
    /// No leader, no quorum, or this master is stopping: retry, possibly elsewhere.
    #[error("{0}")]
    Unavailable(String),
    /// The master a request was for could not be reached: nothing was sent, so the
    /// request may be resent elsewhere.
    #[error("{0}")]
    Unreachable(String),
    /// This master is not the leader, so it did not propose anything: the caller may
    /// resend the request to the leader, whether or not it carries a request id.
    #[error("master {me} is not the leader (leader: {})", leader.map_or("unknown".into(), |id| id.to_string()))]
    NotLeader {
        /// The master that refused.
        me: u64,
        /// The leader it knows, if any.
        leader: Option<u64>,
    },
    /// A bug or a storage failure: never caused by input.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Bad input in `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        use tonic::Status;
        let message = error.to_string();
        match error {
            Error::Domain(domain) => match domain {
                state::Error::InvalidArgument { .. } => Status::invalid_argument(message),
                state::Error::NotFound { .. } => Status::not_found(message),
                state::Error::AlreadyExists { .. } => Status::already_exists(message),
                state::Error::FailedPrecondition(_) | state::Error::RecordingRefused { .. } => {
                    Status::failed_precondition(message)
                }
                state::Error::ResourceExhausted(_) => Status::resource_exhausted(message),
            },
            Error::InvalidArgument { .. } => Status::invalid_argument(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::Unavailable(_) | Error::Unreachable(_) | Error::NotLeader { .. } => {
                Status::unavailable(message)
            }
            Error::Internal(_) => Status::internal(message),
        }
    }
}
