//! The way from any master to the leader, for requests and for linearizable reads.
//!
//! - A request is executed here if this master leads, and otherwise forwarded over the
//!   peer port to the leader its Raft knows; the leader's answer is relayed unchanged.
//!   With no leader known (an election), or a leader that turns out not to be one, the
//!   request waits for Raft to name a leader and tries again, until the call's deadline;
//!   then it answers UNAVAILABLE. A request whose outcome became unknown (the leader
//!   died with it in flight) is resent only if that is harmless (see
//!   [`Request::is_resendable`]); otherwise the client hears UNAVAILABLE and decides.
//! - A linearizable read asks the leader for a read index (the leader confirms with a
//!   quorum that it still leads, then answers its commit index), waits until this
//!   master has applied that index, and is then served from local state (Raft §8,
//!   "read index").
//!
//! The peer port itself is behind [`LeaderLink`], which the network layer implements:
//! this layer sits below the transport and never names it.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use openraft::type_config::alias::WatchReceiverOf;
use tokio::time::Instant;

use super::proposer::{Proposer, read_index_by};
use super::request::{Executed, Request};
use crate::deadline::remaining;
use crate::error::Error;
use crate::raft::{NodeId, Raft, TypeConfig};

/// How long a master waits before retrying toward a leader that refused or could not
/// be reached, unless Raft reports a change sooner.
const RETRY_BACKOFF: Duration = Duration::from_millis(20);

/// The two calls a follower makes to the leader at `addr`, answered there by
/// [`Proposer::execute_by`] and [`read_index_by`]. A failure to reach the leader at all
/// (nothing was sent) is [`Error::Unreachable`]; any other transport failure is
/// [`Error::Unavailable`].
pub trait LeaderLink: Send + Sync + 'static {
    /// Has the leader at `addr` execute `request` by `deadline`.
    fn execute<'a>(
        &'a self,
        addr: &'a str,
        request: &'a Request,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Executed, Error>>;

    /// Asks the leader at `addr` for a read index by `deadline`.
    fn read_index<'a>(
        &'a self,
        addr: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<u64, Error>>;

    /// Has the master at `addr` prove it is master `id`, holder of the cluster secret,
    /// before anything is sent to it (a learner about to be added).
    fn prove_member<'a>(&'a self, id: NodeId, addr: &'a str) -> BoxFuture<'a, Result<(), Error>>;
}

/// Where a request should go now.
enum Target {
    /// This master leads.
    Here,
    /// The leader, at this peer address.
    Peer(NodeId, String),
    /// No leader known.
    Unknown,
}

/// Routes requests and read indexes to the leader.
#[derive(Clone)]
pub struct Forwarder {
    raft: Raft,
    proposer: Proposer,
    link: Arc<dyn LeaderLink>,
}

impl Forwarder {
    /// A forwarder for this master's `raft`, reaching the leader over `link`.
    pub fn new(raft: Raft, proposer: Proposer, link: Arc<dyn LeaderLink>) -> Self {
        Forwarder {
            raft,
            proposer,
            link,
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

    /// Has the leader execute `request`, waiting for one until `deadline`.
    pub async fn execute(&self, request: Request, deadline: Instant) -> Result<Executed, Error> {
        request.validate()?;
        let resendable = request.is_resendable();
        let mut metrics = self.raft.metrics();
        let mut last_error = None;
        loop {
            let target = self.target(&metrics.borrow_watched());
            let attempt = match target {
                Target::Here => Some(self.proposer.execute_by(request.clone(), deadline).await),
                Target::Peer(leader, addr) => {
                    let forward = self.link.execute(&addr, &request, deadline);
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
                Target::Here => Some(read_index_by(&self.raft, deadline).await),
                Target::Peer(leader, addr) => Some(
                    self.unless_leader_changes(leader, self.link.read_index(&addr, deadline))
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
    /// sent again (reads, and resendable requests): the abandoned one may still have
    /// been applied.
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
