//! Proposing a command: the leader stamps its clock on an op and waits for the result of
//! applying it. Used by the API handlers and the leader-only tasks alike.

use std::time::{SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};

use super::{NodeId, Raft};
use crate::error::Error;
use crate::state::{Command, Op, Outcome};

/// Proposes `op` under `request_id` and returns what applying it produced.
///
/// A master that is not the leader proposes nothing and answers [`Error::NotLeader`].
/// Any other failure leaves the outcome unknown (the entry may still commit): only a
/// retry under the same request id is then safe.
pub async fn propose(raft: &Raft, request_id: Option<String>, op: Op) -> Result<Outcome, Error> {
    let command = Command {
        request_id,
        at: now_millis(),
        op,
    };
    match raft.client_write(command).await {
        Ok(response) => response.data.map_err(Error::Domain),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(not_leader(*raft.node_id(), f.leader_id))
        }
        Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Err(Error::Unavailable(
            "leadership changed while the write was in flight; its outcome is unknown: retry with \
             the same request_id"
                .into(),
        )),
        Err(RaftError::APIError(other)) => Err(Error::Unavailable(other.to_string())),
        Err(RaftError::Fatal(fatal)) => Err(Error::Unavailable(format!("raft stopped: {fatal}"))),
    }
}

/// The term in which this master leads, or [`Error::NotLeader`] naming the leader it
/// knows. Reads Raft's metrics in place, without copying them.
pub fn leading_term(raft: &Raft) -> Result<u64, Error> {
    let metrics = raft.metrics();
    let m = metrics.borrow_watched();
    if m.current_leader == Some(m.id) {
        Ok(m.current_term)
    } else {
        Err(not_leader(m.id, m.current_leader))
    }
}

/// The error of a master asked to do what only the leader does.
pub fn not_leader(me: NodeId, leader: Option<NodeId>) -> Error {
    Error::NotLeader { me, leader }
}

/// The leader's wall clock, in milliseconds since the UNIX epoch.
pub fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
