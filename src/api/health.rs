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

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};

use openraft::Instant as _;
use openraft::async_runtime::WatchReceiver;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_health::server::{HealthReporter, HealthService};

use super::SERVICE_NAMES;
use crate::network::LeaderContact;
use crate::raft::Raft;

/// Keeps `reporter` (and `ready`: SERVING or not) up to date until `stop`, checking every `tick`; contact older than
/// `election_timeout` counts as lost.
pub async fn report_health(
    raft: Raft,
    contact: LeaderContact,
    reporter: HealthReporter,
    ready: tokio::sync::watch::Sender<bool>,
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
            ready.send_replace(status == ServingStatus::Serving);
            reported = Some(status);
        }
    }
    set_all(&reporter, ServingStatus::NotServing).await;
    ready.send_replace(false);
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

/// The health service, with at most `max_watches` `Watch` streams open at once, and its
/// reporter. Each open watch holds a few kilobytes for as long as its client keeps it
/// (20,000 of them held 108 MB); past the bound a new one is RESOURCE_EXHAUSTED.
pub fn health_service(max_watches: usize) -> (HealthReporter, HealthServer<BoundedHealth>) {
    let reporter = HealthReporter::new();
    let service = BoundedHealth {
        inner: HealthService::from_health_reporter(reporter.clone()),
        watches: Arc::new(Semaphore::new(max_watches)),
        max_watches,
    };
    (reporter, HealthServer::new(service))
}

/// tonic's health service, its watches bounded.
pub struct BoundedHealth {
    inner: HealthService,
    watches: Arc<Semaphore>,
    max_watches: usize,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for BoundedHealth {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        self.inner.check(request).await
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let Ok(slot) = self.watches.clone().try_acquire_owned() else {
            return Err(Status::resource_exhausted(format!(
                "{} Health.Watch streams are open on this master, its limit \
                 (max_watch_streams): poll Health.Check, or close a watch",
                self.max_watches
            )));
        };
        let statuses = self.inner.watch(request).await?.into_inner();
        // The slot is freed when the stream is dropped: when the client goes away.
        let held = statuses.map(move |status| {
            let _ = &slot;
            status
        });
        Ok(Response::new(Box::pin(held)))
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
