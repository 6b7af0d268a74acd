//! Faults no test can cause from outside, injected inside real masters through their
//! failpoints (`chorus::failpoint`; the tests build the masters with them): a failing
//! fsync, and peer messages duplicated or arriving after newer ones.

mod common;

use chorus::api::pb;
use chorus::type_config::Vote;
use common::{Cluster, Options};
use openraft::storage::RaftLogStorage;

/// Creates sessions `{prefix}-{i}` for `range`, each retried until acknowledged;
/// returns their ids.
async fn create_sessions(
    cluster: &Cluster,
    prefix: &str,
    range: std::ops::Range<u32>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in range {
        let id = format!("{prefix}-{i}");
        cluster.create_session(&id).await;
        ids.push(id);
    }
    ids
}

/// Every session in `ids` is there, read linearizably through master `from`.
async fn assert_all_there(cluster: &Cluster, from: u64, ids: &[String]) {
    for id in ids {
        let read = cluster
            .get_session(from, id, pb::Consistency::Linearizable)
            .await;
        assert!(
            read.is_ok(),
            "acknowledged session {id} not found through master {from}: {read:?}\n{}",
            cluster.logs()
        );
    }
}

/// Once an fsync has failed, Linux may have dropped the pages it could not write, and a
/// later fsync succeeds without them: no flush after it can vouch for anything. A leader
/// whose fsync fails (EIO, injected) exits non-zero naming the error rather than serving
/// on; the others elect a leader and go on; nothing acknowledged is lost, before or
/// during the failure; restarted, it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fsync_ends_the_master_and_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let mut acknowledged = create_sessions(&cluster, "before", 0..10).await;

    cluster
        .failpoint(leader, "storage::fsync", "return")
        .await
        .unwrap();
    // Each is retried with its request id until some leader acknowledges it: the first
    // ones meet the failing leader.
    acknowledged.extend(create_sessions(&cluster, "during", 0..10).await);
    let exit = cluster.exit_status(leader).await;
    assert!(!exit.success(), "exit status {exit}");
    let log = cluster.log(leader);
    assert!(log.contains("failpoint storage::fsync"), "{log}");

    // The failpoint went with the process.
    cluster.restart(leader);
    cluster.converged().await;
    assert_all_there(&cluster, leader, &acknowledged).await;
}

/// The same for the high-water mark: its write failing ends the master as an fsync
/// failing does (the mark is what lets a restart see a rolled-back log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_mark_write_ends_the_master() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster.create_session("first").await;
    cluster
        .failpoint(follower, "storage::mark", "return")
        .await
        .unwrap();
    cluster.create_session("second").await;
    let exit = cluster.exit_status(follower).await;
    assert!(!exit.success(), "exit status {exit}");
    assert!(
        cluster.log(follower).contains("failpoint storage::mark"),
        "{}",
        cluster.log(follower)
    );
    cluster.restart(follower);
    cluster.converged().await;
    let ids = ["first", "second"].map(String::from);
    assert_all_there(&cluster, follower, &ids).await;
}

/// Raft must take a message that arrives twice, or after newer ones, for what it is.
/// With the leader sending half its appends twice and replaying its previous append
/// before a third of them, and sending every vote twice, writes go on, the masters
/// converge on one state and every acknowledged write is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_replayed_peer_messages_change_nothing() {
    let cluster = Cluster::start(3, Options::default());
    for id in cluster.ids() {
        cluster
            .failpoint(
                id,
                "network::append",
                "50%return(duplicate)->33%return(replay)",
            )
            .await
            .unwrap();
        cluster
            .failpoint(id, "network::unary", "return(duplicate)")
            .await
            .unwrap();
    }
    let mut acknowledged = create_sessions(&cluster, "s", 0..100).await;
    // A new election under the same faults: its votes go twice.
    let leader = cluster.leader().await;
    let next = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster
        .cluster_client(leader)
        .await
        .transfer_leadership(pb::TransferLeadershipRequest { to: next })
        .await
        .unwrap();
    acknowledged.extend(create_sessions(&cluster, "s", 100..150).await);
    let logs = cluster.logs();
    for fired in [
        "network::append: sent twice",
        "network::append: replayed the previous append",
        "network::unary: Vote sent twice",
    ] {
        assert!(logs.contains(fired), "no {fired:?} in the logs:\n{logs}");
    }
    for id in cluster.ids() {
        cluster
            .failpoint(id, "network::append", "off")
            .await
            .unwrap();
    }
    cluster.converged().await;
    for id in cluster.ids() {
        assert_all_there(&cluster, id, &acknowledged).await;
    }
}

/// A failpoint with actions `fail` cannot parse is refused naming them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failpoint_with_bad_actions_is_refused() {
    let cluster = Cluster::start(1, Options::default());
    cluster.leader().await;
    let refused = cluster
        .failpoint(1, "storage::fsync", "sometimes")
        .await
        .unwrap_err();
    assert!(refused.contains("actions"), "{refused}");
}

/// After a failed flush no later one may succeed (Linux may have dropped the pages the
/// failed fsync could not write): the store fails every write from then on, even once
/// the failpoint is gone. In this process, on the store itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_flush_the_store_fails_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = chorus::storage::open(dir.path()).unwrap();
    store.log.save_vote(&Vote::new(1, 1)).await.unwrap();
    chorus::failpoint::configure("storage::fsync", "1*return").unwrap();
    let failed = store.log.save_vote(&Vote::new(2, 1)).await.unwrap_err();
    assert!(
        failed.to_string().contains("failpoint storage::fsync"),
        "{failed}"
    );
    // Fired once: the next flush would reach the disk, and must not.
    let after = store.log.save_vote(&Vote::new(3, 1)).await.unwrap_err();
    assert!(
        after.to_string().contains("an earlier flush failed"),
        "{after}"
    );
    chorus::failpoint::configure("storage::fsync", "off").unwrap();
    let after = store.log.save_vote(&Vote::new(3, 1)).await.unwrap_err();
    assert!(
        after.to_string().contains("an earlier flush failed"),
        "{after}"
    );
}
