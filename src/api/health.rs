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
            let commits =
                m.last_log_index <= committed || commit_progress.1.elapsed() < election_timeout;
            let in_touch = match m.current_leader {
                Some(leader) if leader == m.id => {
                    commits
                        && m.last_quorum_acked
                            .is_some_and(|acked| acked.elapsed() < election_timeout)
                }
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

async fn set_all(reporter: &HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        reporter.set_service_status(name, status).await;
    }
}
