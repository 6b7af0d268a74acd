//! The service layer: what every front end (the gRPC API, the peer port's forwarding,
//! later the OpenVidu REST API) asks of the cluster, said once.
//!
//! - [`request`]: the application's requests by kind ([`Write`], [`MembershipChange`],
//!   [`Heartbeat`]) and their validation, with the API's field names;
//! - [`Proposer`]: the leader's side: draws ids and tokens, stamps limits, picks a media
//!   node, proposes; [`Proposer::execute_by`] and [`read_index_by`] are the only
//!   "execute on the leader by a deadline" and "read index by a deadline";
//! - [`Forwarder`]: the route from any master to the leader, over a [`LeaderLink`] that
//!   the network layer implements;
//! - [`Service`]: the handle front ends hold: typed calls, each bounded by the caller's
//!   deadline, answering [`Error`](crate::error::Error), whose mapping to a gRPC status
//!   lives in one place ([`crate::error`]).
//!
//! Front ends are translations: they parse their wire format into these requests, call
//! [`Service`], and map the answer back. Business rules stay in [`crate::state`].
//!
//! # Adding an operation
//!
//! A new domain write touches:
//! 1. `state/`: its [`Op`](crate::state::Op) and [`Outcome`] variants
//!    (`state/command.rs`) and the rule that applies it (the domain type's module,
//!    dispatched from `state/machine.rs`);
//! 2. `service/request.rs`: its [`Write`] variant and validation;
//! 3. `service/proposer.rs`: turning that write into the op (ids, time, limits);
//! 4. each front end's one mapping: the proto message and handler (`proto/`,
//!    `api/<service>.rs`), and the typed client and CLI if it has a command.
//!
//! Nothing in the forwarding, the peer port, the error mapping or the leader tasks
//! changes.

mod forward;
mod proposer;
mod request;

use std::sync::{Arc, RwLockReadGuard};
use std::time::Duration;

use openraft::RaftMetrics;
use openraft::async_runtime::WatchReceiver;
use tokio::time::Instant;

pub use forward::{Forwarder, LeaderLink};
pub use proposer::{Proposer, read_index_by};
pub use request::{
    Executed, Heartbeat, HeartbeatAnswer, MembershipChange, Request, Write, reused_request_id,
    validate_recording_id,
};

use crate::error::Error;
use crate::fleet::Fleet;
use crate::raft::{Applied, Raft, SharedApplied, TypeConfig, leading_term, read};
use crate::state::Outcome;

/// How long a master waits to see a membership change, a new leader or a snapshot that
/// the leader already completed.
const OPERATION_DEADLINE: Duration = Duration::from_secs(10);

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (read index).
    #[default]
    Linearizable,
    /// This master's state as it is now, possibly behind the leader.
    Stale,
}

/// What front ends call: every request of the application, routed to the leader as
/// needed and bounded by the caller's deadline.
#[derive(Clone)]
pub struct Service {
    raft: Raft,
    applied: SharedApplied,
    forwarder: Forwarder,
    fleet: Fleet,
}

impl Service {
    /// The service of this master's `raft`, reaching the leader over `link`.
    pub fn new(
        raft: Raft,
        applied: SharedApplied,
        proposer: Proposer,
        link: Arc<dyn LeaderLink>,
        fleet: Fleet,
    ) -> Self {
        Service {
            forwarder: Forwarder::new(raft.clone(), proposer, link),
            raft,
            applied,
            fleet,
        }
    }

    /// Has the leader apply `write` under `request_id`; its outcome, or the state
    /// machine's refusal.
    pub async fn write(
        &self,
        request_id: Option<String>,
        write: Write,
        deadline: Instant,
    ) -> Result<Outcome, Error> {
        match self
            .forwarder
            .execute(Request::Write { request_id, write }, deadline)
            .await?
        {
            Executed::Outcome(outcome) => Ok(outcome),
            other => Err(mismatch("write", &other)),
        }
    }

    /// Delivers a media node's heartbeat to the leader; the node's status and tasks.
    pub async fn heartbeat(
        &self,
        heartbeat: Heartbeat,
        deadline: Instant,
    ) -> Result<HeartbeatAnswer, Error> {
        match self
            .forwarder
            .execute(Request::Heartbeat(heartbeat), deadline)
            .await?
        {
            Executed::Heartbeat(status) => Ok(status),
            other => Err(mismatch("heartbeat", &other)),
        }
    }

    /// Has the leader change the membership or leadership, then waits until this master
    /// sees the change, and answers its Raft metrics then.
    pub async fn change_membership(
        &self,
        change: MembershipChange,
        deadline: Instant,
    ) -> Result<RaftMetrics<TypeConfig>, Error> {
        let transfer_to = match &change {
            MembershipChange::TransferLeadership { to } => Some(*to),
            _ => None,
        };
        let index = match self
            .forwarder
            .execute(Request::Membership(change), deadline)
            .await?
        {
            Executed::Membership { index } => index,
            other => return Err(mismatch("membership change", &other)),
        };
        let wait = self.raft.wait(Some(OPERATION_DEADLINE));
        match transfer_to {
            // The leader saw `to` take over; this master learns it with `to`'s first
            // append.
            Some(to) => wait
                .metrics(|m| m.current_leader == Some(to), "new leader known here")
                .await
                .map_err(|e| {
                    Error::Unavailable(format!("leadership moved, but not seen here: {e}"))
                }),
            None => wait
                .applied_index_at_least(Some(index), "membership change applied here")
                .await
                .map_err(|e| {
                    Error::Unavailable(format!("membership changed, not yet seen here: {e}"))
                }),
        }
    }

    /// Has this master build a snapshot of what it applied; the snapshot's index.
    pub async fn trigger_snapshot(&self) -> Result<u64, Error> {
        let applied = self.raft.metrics().borrow_watched().last_applied;
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        let metrics = self
            .raft
            .wait(Some(OPERATION_DEADLINE))
            .metrics(
                |m| m.snapshot.map(|s| s.index) >= applied.map(|a| a.index),
                "snapshot built",
            )
            .await
            .map_err(|e| Error::Unavailable(format!("snapshot not built: {e}")))?;
        Ok(metrics.snapshot.map_or(0, |id| id.index))
    }

    /// This master's applied state, once it is as fresh as `consistency` asks.
    pub async fn read(
        &self,
        consistency: Consistency,
        deadline: Instant,
    ) -> Result<RwLockReadGuard<'_, Applied>, Error> {
        if consistency == Consistency::Linearizable {
            self.forwarder.linearize(deadline).await?;
        }
        Ok(read(&self.applied))
    }

    /// This master's applied state as it is now, possibly behind the leader.
    pub fn local(&self) -> RwLockReadGuard<'_, Applied> {
        read(&self.applied)
    }

    /// The loads the media nodes reported, as a lookup: empty unless this master leads
    /// (the loads are the leader's soft state).
    pub fn loads(&self) -> impl Fn(&str) -> Option<f64> + '_ {
        let term = leading_term(&self.raft).ok();
        move |node_id| term.and_then(|term| self.fleet.at(term).load(node_id))
    }
}

/// The leader answered with another kind of result than the request's: a bug, or
/// masters of incompatible versions.
fn mismatch(asked: &str, answer: &Executed) -> Error {
    Error::Internal(format!("the leader answered a {asked} with {answer:?}"))
}
