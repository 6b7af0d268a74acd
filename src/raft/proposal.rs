//! Proposing a command: the leader stamps its clock on an op and waits for the result of
//! applying it. Used by the API handlers and the leader-only tasks alike.

use std::time::{SystemTime, UNIX_EPOCH};

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};

use super::{NodeId, Raft};
use crate::codec;
use crate::error::Error;
use crate::state::{Command, Op, Outcome};

/// The largest log entry the leader proposes, encoded. Every entry must reach every
/// follower in one append within a replication deadline; one that could not would be
/// resent for ever and wedge the log behind it. The configuration keeps the data limits
/// well under this, and the peer messages (at least 4 MiB) well over it.
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// Proposes `op` under `request_id` and returns what applying it produced.
///
/// The op's stateless checks ([`Op::check`]) and the entry's size are checked first: a
/// request that would be refused, or that could not be replicated, is answered here and
/// never enters the log. A master that is not the leader proposes nothing and answers
/// [`Error::NotLeader`].
/// Any other failure leaves the outcome unknown (the entry may still commit): only a
/// retry under the same request id is then safe.
pub async fn propose(raft: &Raft, request_id: Option<String>, op: Op) -> Result<Outcome, Error> {
    let command = Command {
        request_id,
        at: now_millis(),
        op,
    };
    command.op.check().map_err(Error::Domain)?;
    let bytes = codec::encoded_len(&command).map_err(|e| Error::Internal(e.to_string()))?;
    if bytes > MAX_ENTRY_BYTES {
        return Err(Error::Domain(crate::state::Error::ResourceExhausted(
            format!(
                "the request is {bytes} bytes as a log entry, over the limit of {MAX_ENTRY_BYTES}"
            ),
        )));
    }
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
