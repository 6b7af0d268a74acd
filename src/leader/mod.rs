//! The leader-only tasks: they run while this master leads and act only by proposing
//! commands, so that what they decide is replicated like any client write. (Client
//! requests are executed on the leader by the service layer's
//! [`Proposer`](crate::service::Proposer).)
//!
//! - [`record_joined_masters`] records each master that holds the log;
//! - [`tend_media_nodes`] declares silent nodes CRASHED, places every session waiting
//!   for a node and keeps the autoscaling advice ([`crate::fleet::advise`]) up to date,
//!   reading the leader's soft view of the nodes ([`crate::fleet::Fleet`]);
//! - [`check_license`] meters usage and checks the license.

mod license;
mod media_nodes;

pub use license::check_license;
pub use media_nodes::tend_media_nodes;

use std::collections::BTreeSet;

use openraft::ServerState;
use openraft::async_runtime::WatchReceiver;
use tokio_util::sync::CancellationToken;

use crate::raft::{Raft, SharedApplied, propose, read};
use crate::state::Op;

/// Records in the replicated state every master that has durably stored log entries
/// (the leader itself, and each follower or learner once it acknowledged an append).
///
/// A master that later starts with an empty data dir asks its peers whether it was
/// recorded: if so its Raft state was lost and it is refused, because voting again with
/// a forgotten vote could elect two leaders in one term. A master never recorded is new
/// and may start empty. Until a master is recorded (one replication round after it first
/// stores entries) a wipe goes unnoticed; that window is the price of not asking
/// operators to declare each start "new" or "existing" as etcd does.
pub async fn record_joined_masters(raft: Raft, applied: SharedApplied, stop: CancellationToken) {
    let mut metrics = raft.metrics();
    // Masters known to be recorded. Records are never removed, so once known, an id
    // needs no further look at the state: metrics change on every apply, and this keeps
    // the state lock off that path.
    let mut known = BTreeSet::new();
    loop {
        // Copy what is needed and release the metrics borrow before taking the state
        // lock: openraft cannot publish metrics while a borrow is held.
        let candidates: Vec<u64> = {
            let m = metrics.borrow_watched();
            if m.state == ServerState::Leader {
                let replicated = m
                    .replication
                    .iter()
                    .flatten()
                    .filter(|(_, matched)| matched.is_some())
                    .map(|(id, _)| *id);
                std::iter::once(m.id)
                    .chain(replicated)
                    .filter(|id| !known.contains(id))
                    .collect()
            } else {
                Vec::new()
            }
        };
        let mut to_record = Vec::new();
        if !candidates.is_empty() {
            let applied = read(&applied);
            for id in candidates {
                if applied.state.has_joined(id) {
                    known.insert(id);
                } else {
                    to_record.push(id);
                }
            }
        }
        for id in to_record {
            let proposed = tokio::select! {
                _ = stop.cancelled() => return,
                proposed = propose(&raft, None, Op::MasterJoined { id }) => proposed,
            };
            match proposed {
                Ok(_) => {
                    tracing::info!(master = id, "recorded master as holding the log");
                    known.insert(id);
                }
                Err(e) => {
                    tracing::debug!(master = id, "could not record master: {e}");
                    break;
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
