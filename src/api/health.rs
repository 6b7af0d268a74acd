//! The standard gRPC health service (`grpc.health.v1.Health`), answered from Raft's view.
//!
//! A master is SERVING while both hold:
//! - it is in touch with a leader: as leader, a quorum acknowledged it within an
//!   election timeout and, if it holds entries not yet committed, its commit index moved
//!   within one (a quorum that answers heartbeats but takes no entries cannot commit a
//!   write); as follower, an append from the leader arrived within an election timeout;
//! - it has applied everything it knew to be committed one tick (a heartbeat interval)
//!   ago, so a master replaying a long log is not sent traffic it would serve stale.
//!
//! A master cut off from the quorum turns NOT_SERVING within an election timeout plus a
//! tick. Both the whole server (`""`) and each public service report the same status.

use std::time::Duration;

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use super::SERVICE_NAMES;
use crate::network::LeaderContact;
use crate::raft::Raft;

/// Keeps `reporter` up to date until `stop`, checking every `tick`; contact older than
/// `election_timeout` counts as lost.
pub async fn report_health(
    raft: Raft,
    contact: LeaderContact,
    reporter: HealthReporter,
    tick: Duration,
    election_timeout: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut committed_a_tick_ago = None;
    // The commit index and when it was last seen to move.
    let mut commit_progress = (None, tokio::time::Instant::now());
    let mut reported = None;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let (in_touch, applied, committed) = {
            let metrics = raft.metrics();
            let m = metrics.borrow_watched();
            let committed = m.cluster_committed.map(|id| id.index);
            if committed != commit_progress.0 {
                commit_progress = (committed, tokio::time::Instant::now());
            }
            let in_touch = match m.current_leader {
                Some(leader) if leader == m.id => leads(
                    m.last_log_index,
                    committed,
                    commit_progress.1.elapsed(),
                    m.last_quorum_acked.map(|acked| acked.elapsed()),
                    election_timeout,
                ),
                Some(_) => contact
                    .last()
                    .is_some_and(|last| last.elapsed() < election_timeout),
                None => false,
            };
            (
                in_touch,
                m.last_applied.map(|id| id.index),
                m.local_committed.map(|id| id.index),
            )
        };
        let caught_up = applied >= committed_a_tick_ago;
        committed_a_tick_ago = committed;
        let status = if in_touch && caught_up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        if reported != Some(status) {
            tracing::info!(?status, in_touch, caught_up, "health changed");
            set_all(&reporter, status).await;
            reported = Some(status);
        }
    }
    set_all(&reporter, ServingStatus::NotServing).await;
}

/// Whether a leader is in touch with its group: a quorum acknowledged it within
/// `election_timeout` (`quorum_acked_ago`), and its log is committed to its end or its
/// commit index moved within `election_timeout` (`commit_moved_ago`). A quorum that
/// answers heartbeats but takes no entries cannot commit a write: that leader is not
/// serving.
fn leads(
    last_log_index: Option<u64>,
    committed: Option<u64>,
    commit_moved_ago: Duration,
    quorum_acked_ago: Option<Duration>,
    election_timeout: Duration,
) -> bool {
    let commits = last_log_index <= committed || commit_moved_ago < election_timeout;
    commits && quorum_acked_ago.is_some_and(|ago| ago < election_timeout)
}

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_serves_only_while_a_quorum_acks_it_and_its_commits_keep_up() {
        let timeout = Duration::from_millis(300);
        let (fresh, stale) = (Duration::from_millis(10), Duration::from_millis(301));
        // All committed, quorum fresh: serving, however long the commit index stood.
        assert!(leads(Some(9), Some(9), stale, Some(fresh), timeout));
        // Entries beyond the commit index, which moved lately: a write on its way.
        assert!(leads(Some(12), Some(9), fresh, Some(fresh), timeout));
        // Entries beyond it, and it stood still for an election timeout while the
        // quorum answered heartbeats: the log is wedged, not serving.
        assert!(!leads(Some(12), Some(9), stale, Some(fresh), timeout));
        // No quorum lately, or never: not serving, even with nothing to commit.
        assert!(!leads(Some(9), Some(9), fresh, Some(stale), timeout));
        assert!(!leads(Some(9), Some(9), fresh, None, timeout));
        // A new leader's blank entry not yet committed, just elected.
        assert!(leads(Some(1), None, fresh, Some(fresh), timeout));
    }
}
