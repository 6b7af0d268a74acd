//! The way from any master to the leader, for writes and for linearizable reads.
//!
//! - A write is executed here if this master leads, and otherwise forwarded over the
//!   peer port to the leader its Raft knows; the leader's answer is relayed unchanged.
//!   With no leader known (an election), or a leader that turns out not to be one, the
//!   write waits for Raft to name a leader and tries again, until the call's deadline;
//!   then it answers UNAVAILABLE. A write whose outcome became unknown (the leader died
//!   with it in flight) is resent only if it carries a request id, which makes the resend
//!   harmless; otherwise the client hears UNAVAILABLE and decides.
//! - A linearizable read asks the leader for a read index (the leader confirms with a
//!   quorum that it still leads, then answers its commit index), waits until this
//!   master has applied that index, and is then served from local state (Raft §8,
//!   "read index"). On the leader this is openraft's own read-index linearizer.

use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{LinearizableReadError, RaftError};
use openraft::type_config::alias::WatchReceiverOf;
use openraft::{RaftMetrics, ReadPolicy};
use tokio::time::Instant;

use crate::deadline::remaining;
use crate::error::Error;
use crate::leader::{Proposer, Write, Written};
use crate::network::PeerNetwork;
use crate::raft::{NodeId, Raft, TypeConfig};

/// How long a master waits before retrying toward a leader that refused or could not
/// be reached, unless Raft reports a change sooner.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// Where a request should go now.
enum Target {
    /// This master leads.
    Here,
    /// The leader, at this peer address.
    Peer(NodeId, String),
    /// No leader known.
    Unknown,
}

/// Routes writes and read indexes to the leader.
#[derive(Clone)]
pub struct Forwarder {
    raft: Raft,
    proposer: Proposer,
    network: PeerNetwork,
}

impl Forwarder {
    /// A forwarder for this master's `raft`, reaching peers over `network`.
    pub fn new(raft: Raft, proposer: Proposer, network: PeerNetwork) -> Self {
        Forwarder {
            raft,
            proposer,
            network,
        }
    }

    fn target(&self, metrics: &RaftMetrics<TypeConfig>) -> Target {
        match metrics.current_leader {
            Some(leader) if leader == metrics.id => Target::Here,
            Some(leader) => match metrics.membership_config.membership().get_node(&leader) {
                Some(node) => Target::Peer(leader, node.addr.clone()),
                None => Target::Unknown,
            },
            None => Target::Unknown,
        }
    }

    /// Has the leader execute `write`, waiting for one until `deadline`.
    pub async fn write(
        &self,
        request_id: Option<String>,
        write: Write,
        deadline: Instant,
    ) -> Result<Written, Error> {
        write.validate()?;
        if let Some(id) = &request_id {
            crate::state::validate_request_id(id)?;
        }
        let resendable = request_id.is_some() || write.is_idempotent();
        let mut metrics = self.raft.metrics();
        let mut last_error = None;
        loop {
            let target = self.target(&metrics.borrow_watched());
            let attempt = match target {
                Target::Here => Some(
                    tokio::time::timeout_at(
                        deadline,
                        self.proposer.execute(request_id.clone(), write.clone()),
                    )
                    .await
                    .unwrap_or_else(|_| Err(outcome_unknown())),
                ),
                Target::Peer(leader, addr) => {
                    let forward = crate::network::forward(
                        &self.network,
                        &addr,
                        request_id.as_deref(),
                        &write,
                        deadline,
                    );
                    if resendable {
                        Some(self.unless_leader_changes(leader, forward).await)
                    } else {
                        Some(forward.await)
                    }
                }
                Target::Unknown => None,
            };
            match attempt {
                None => {}
                Some(Err(e @ (Error::NotLeader { .. } | Error::Unreachable(_)))) => {
                    last_error = Some(e)
                }
                Some(Err(e @ Error::Unavailable(_))) if resendable => last_error = Some(e),
                Some(result) => return result,
            }
            if !wait_for_change(&mut metrics, deadline).await {
                return Err(gave_up(last_error));
            }
        }
    }

    /// Returns once this master's state reflects every write acknowledged before the
    /// call, or UNAVAILABLE at `deadline`.
    pub async fn linearize(&self, deadline: Instant) -> Result<(), Error> {
        let mut metrics = self.raft.metrics();
        let mut last_error = None;
        loop {
            let target = self.target(&metrics.borrow_watched());
            let index = match target {
                Target::Here => Some(self.local_read_index(deadline).await),
                Target::Peer(leader, addr) => Some(
                    self.unless_leader_changes(
                        leader,
                        crate::network::read_index(&self.network, &addr, deadline),
                    )
                    .await,
                ),
                Target::Unknown => None,
            };
            match index {
                Some(Ok(index)) => return self.await_applied(index, deadline).await,
                // A read changes nothing: any failure may be retried.
                Some(Err(e)) => last_error = Some(e),
                None => {}
            }
            if !wait_for_change(&mut metrics, deadline).await {
                return Err(gave_up(last_error));
            }
        }
    }

    /// Runs `call` to the leader this master knows, but gives up as soon as Raft names
    /// another one: a leader that was paused or cut off neither answers nor refuses,
    /// and its successor can take the request at once. Only for requests that may be
    /// sent again (reads, and writes under a request id): the abandoned one may still
    /// have been applied.
    async fn unless_leader_changes<T>(
        &self,
        leader: NodeId,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let mut metrics = self.raft.metrics();
        let changed = async {
            loop {
                if metrics.borrow_watched().current_leader != Some(leader) {
                    return;
                }
                if metrics.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            result = call => result,
            _ = changed => Err(Error::Unavailable(
                "the leader changed while the request was in flight".into(),
            )),
        }
    }

    /// The read index confirmed by this master as leader.
    async fn local_read_index(&self, deadline: Instant) -> Result<u64, Error> {
        let linearizer = tokio::time::timeout_at(
            deadline,
            self.raft.get_read_linearizer(ReadPolicy::ReadIndex),
        )
        .await
        .map_err(|_| {
            Error::Unavailable("leadership not confirmed by a quorum within the deadline".into())
        })?;
        match linearizer {
            Ok(linearizer) => Ok(linearizer.read_log_id().index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => {
                Err(crate::raft::not_leader(*self.raft.node_id(), f.leader_id))
            }
            Err(e) => Err(Error::Unavailable(format!("no read index: {e}"))),
        }
    }

    /// Waits until this master has applied `index`.
    async fn await_applied(&self, index: u64, deadline: Instant) -> Result<(), Error> {
        self.raft
            .wait(Some(remaining(deadline)))
            .applied_index_at_least(Some(index), "read index applied")
            .await
            .map(|_| ())
            .map_err(|_| {
                Error::Unavailable(format!(
                    "this master has not applied the leader's read index {index} within the \
                     deadline: it lags behind or is cut off from the leader; retry elsewhere"
                ))
            })
    }
}

/// Waits for Raft's view to change (or a short backoff), unless `deadline` has come.
async fn wait_for_change(
    metrics: &mut WatchReceiverOf<TypeConfig, RaftMetrics<TypeConfig>>,
    deadline: Instant,
) -> bool {
    let now = Instant::now();
    if now >= deadline {
        return false;
    }
    let _ = tokio::time::timeout_at(deadline.min(now + RETRY_BACKOFF), metrics.changed()).await;
    Instant::now() < deadline
}

fn outcome_unknown() -> Error {
    Error::Unavailable(
        "the write did not complete within its deadline; its outcome is unknown: retry with \
         the same request_id"
            .into(),
    )
}

/// The answer once the deadline came: the last failure seen, or the lack of a leader.
fn gave_up(last_error: Option<Error>) -> Error {
    match last_error {
        Some(Error::NotLeader { .. }) | None => {
            Error::Unavailable("no leader could be reached within the deadline; retry".into())
        }
        Some(Error::Unreachable(m)) => Error::Unavailable(m),
        Some(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn giving_up_never_reports_not_leader() {
        let not_leader = Error::NotLeader {
            me: 1,
            leader: Some(2),
        };
        assert!(
            matches!(gave_up(Some(not_leader)), Error::Unavailable(m) if !m.contains("not the leader"))
        );
        assert!(matches!(gave_up(None), Error::Unavailable(_)));
        assert!(
            matches!(gave_up(Some(Error::Unreachable("x".into()))), Error::Unavailable(m) if m == "x")
        );
    }
}
