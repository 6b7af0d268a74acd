//! A Raft group of real `chorus serve` processes: election, replication, failover,
//! restart, catch-up by snapshot, membership changes, graceful stop, and refusal of a
//! wiped voter.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus::api::pb;
use common::{Cluster, Options};

/// Writes `n` sessions named `{prefix}-{i}` through the leader.
async fn write_sessions(cluster: &Cluster, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        cluster.create_session(&id).await;
        ids.push(id);
    }
    ids
}

/// Every id is readable, linearizably, through master `from`.
async fn assert_linearizably_present(cluster: &Cluster, from: u64, ids: &[String]) {
    for id in ids {
        cluster
            .get_session(from, id, pb::Consistency::Linearizable)
            .await
            .unwrap_or_else(|e| panic!("acknowledged session {id} not readable from {from}: {e}"));
    }
}

/// Waits for the running masters to converge, then checks each of `masters` holds
/// every id.
async fn assert_converged_with(
    cluster: &Cluster,
    masters: impl IntoIterator<Item = u64>,
    ids: &[String],
) {
    cluster.converged().await;
    for id in masters {
        assert_all_present(cluster, id, ids).await;
    }
}

async fn assert_all_present(cluster: &Cluster, from: u64, ids: &[String]) {
    let held: BTreeSet<String> = cluster.session_ids(from).await.into_iter().collect();
    for id in ids {
        assert!(
            held.contains(id),
            "master {from} lost acknowledged session {id}"
        );
    }
}

/// Runs a ClusterService call on a master of the original group that does not lead (it
/// forwards to the leader), again if an election intervenes (UNAVAILABLE), and returns
/// its answer.
async fn through_follower<F, Fut>(cluster: &Cluster, what: &str, call: F) -> pb::ClusterStatus
where
    F: Fn(pb::cluster_service_client::ClusterServiceClient<common::Authed>) -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<pb::ClusterStatus>, tonic::Status>>,
{
    cluster
        .eventually(what, || async {
            let leader = cluster.current_leader().await?;
            let follower = cluster
                .running()
                .into_iter()
                .find(|id| *id != leader && cluster.peers().contains_key(id))?;
            match call(cluster.cluster_client(follower).await).await {
                Ok(reply) => Some(reply.into_inner()),
                Err(status) if status.code() == tonic::Code::Unavailable => None,
                Err(status) => panic!("{what}: {status}"),
            }
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_masters_elect_one_leader_and_agree() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    assert!((1..=3).contains(&leader));
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 3);

    let ids = write_sessions(&cluster, "room", 20).await;
    let (applied, digest) = cluster.converged().await;
    assert!(applied >= 20, "applied {applied}");
    assert_eq!(digest.len(), 64);
    for id in 1..=3 {
        assert_all_present(&cluster, id, &ids).await;
    }
    // A duplicate custom id is refused and changes nothing.
    let mut client = cluster.session_client(leader).await;
    let err = client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: "room-0".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    let (_, after) = cluster.converged().await;
    assert_eq!(after, digest, "a refused create changed the state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_masters_elect_one_leader_and_agree() {
    let cluster = Cluster::start(5, Options::default());
    let leader = cluster.leader().await;
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(status.members.iter().filter(|m| m.voter).count(), 5);
    let ids = write_sessions(&cluster, "five", 10).await;
    assert_converged_with(&cluster, 1..=5, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_rejoins_without_loss() {
    let mut cluster = Cluster::start(3, Options::default());
    let old = cluster.leader().await;
    let before = write_sessions(&cluster, "before", 30).await;

    let killed_at = Instant::now();
    cluster.kill(old);
    let new = cluster.leader().await;
    println!("new leader {new} after {:?}", killed_at.elapsed());
    assert_ne!(new, old);
    // Every acknowledged write is on the new leader, read linearizably.
    assert_linearizably_present(&cluster, new, &before).await;
    let after = write_sessions(&cluster, "after", 10).await;

    cluster.restart(old);
    cluster.converged().await;
    let status = cluster.status(old).await.unwrap();
    assert_eq!(
        status.members.iter().filter(|m| m.voter).count(),
        3,
        "restart must not re-form the group"
    );
    assert_all_present(&cluster, old, &before).await;
    assert_all_present(&cluster, old, &after).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_down_long_catches_up_by_snapshot() {
    let mut cluster = Cluster::start(
        3,
        Options {
            snapshot_logs_since_last: 20,
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(follower);
    let ids = write_sessions(&cluster, "while-down", 80).await;
    // The survivors snapshot and purge the log the follower would need.
    cluster
        .eventually("the leader snapshotted past the follower's log", || async {
            let s = cluster.status(leader).await?;
            (s.snapshot_index >= 40 && s.purged_index >= 20).then_some(())
        })
        .await;
    cluster.restart(follower);
    assert_converged_with(&cluster, [follower], &ids).await;
    let log = cluster.log(follower);
    assert!(
        log.contains("snapshot installed"),
        "follower did not catch up by snapshot:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_to_five_and_shrinks_back_under_writes() {
    let mut cluster = Cluster::start(3, Options::default());
    cluster.leader().await;
    let addr4 = cluster.spawn_joiner(4);
    let addr5 = cluster.spawn_joiner(5);

    // Writes run throughout the membership changes.
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flag = stop.clone();
    let writer = {
        let cluster = &cluster;
        async move {
            let mut ids = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && i < 500 {
                let id = format!("during-{i}");
                cluster.create_session(&id).await;
                ids.push(id);
                i += 1;
            }
            ids
        }
    };
    let changes = async {
        for (id, addr) in [(4, &addr4), (5, &addr5)] {
            through_follower(&cluster, "add learner", |mut c| {
                let req = pb::AddLearnerRequest {
                    id,
                    peer_addr: addr.clone(),
                    blocking: true,
                };
                async move { c.add_learner(req).await }
            })
            .await;
        }
        let grown = through_follower(&cluster, "grow to five", |mut c| async move {
            c.change_membership(pb::ChangeMembershipRequest {
                voters: vec![1, 2, 3, 4, 5],
                retain: false,
                ..Default::default()
            })
            .await
        })
        .await;
        let voters: Vec<u64> = grown
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.id)
            .collect();
        assert_eq!(voters, vec![1, 2, 3, 4, 5]);
        let shrunk = through_follower(&cluster, "shrink to three", |mut c| async move {
            c.change_membership(pb::ChangeMembershipRequest {
                voters: vec![1, 2, 3],
                retain: false,
                ..Default::default()
            })
            .await
        })
        .await;
        let members: Vec<u64> = shrunk.members.iter().map(|m| m.id).collect();
        assert_eq!(members, vec![1, 2, 3]);
        stop_flag.store(true, Ordering::Relaxed);
    };
    let (ids, ()) = tokio::join!(writer, changes);
    assert!(!ids.is_empty());

    cluster.kill(4);
    cluster.kill(5);
    assert_converged_with(&cluster, 1..=3, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_leadership_over_and_exits_zero() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    write_sessions(&cluster, "term", 5).await;
    let started = Instant::now();
    let status = cluster.terminate(leader);
    assert!(status.success(), "SIGTERM exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}",
        started.elapsed()
    );
    let log = cluster.log(leader);
    assert!(log.contains("handing leadership over"), "{log}");
    assert!(
        !log.contains("still in use") && !log.contains("last flush of the store failed"),
        "the store was not closed cleanly:\n{log}"
    );
    let new = cluster.leader().await;
    assert_ne!(new, leader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wiped_voter_is_refused() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    write_sessions(&cluster, "wipe", 3).await;
    cluster.converged().await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(victim);
    std::fs::remove_dir_all(&cluster.masters[&victim].data_dir).unwrap();
    cluster.restart(victim);
    let exit = cluster.exit_status(victim).await;
    assert!(!exit.success());
    let log = cluster.log(victim);
    assert!(log.contains("Raft state was lost"), "{log}");
    // The group goes on.
    cluster.create_session("after-wipe").await;
}

/// A master whose log file was damaged while it was down (here cut to half its length)
/// used to start on a rolled-back log and could win an election without acknowledged
/// entries. It refuses to start, naming the file; the others go on with every write; and
/// the recovery the refusal describes (remove it, start it empty, add it back) works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_master_refuses_to_start_and_rejoins_by_the_documented_recovery() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let ids = write_sessions(&cluster, "kept", 50).await;
    cluster.converged().await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    cluster.kill(victim);
    let data_dir = cluster.masters[&victim].data_dir.clone();
    let db = data_dir.join("db");
    let file = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    file.set_len(file.metadata().unwrap().len() / 2).unwrap();
    drop(file);

    cluster.restart(victim);
    let exit = cluster.exit_status(victim).await;
    assert!(!exit.success(), "a damaged master started");
    let log = cluster.log(victim);
    assert!(log.contains(&db.display().to_string()), "{log}");
    assert!(log.contains("damaged"), "{log}");
    let others: Vec<u64> = (1..=3).filter(|id| *id != victim).collect();
    for id in &others {
        assert_linearizably_present(&cluster, *id, &ids).await;
    }

    // The recovery: out of the membership, an empty data dir, back as a learner, a voter.
    through_follower(&cluster, "remove the damaged master", |mut c| {
        let voters = others.clone();
        async move {
            c.change_membership(pb::ChangeMembershipRequest {
                voters,
                retain: false,
                ..Default::default()
            })
            .await
        }
    })
    .await;
    std::fs::remove_dir_all(&data_dir).unwrap();
    cluster.restart(victim);
    cluster
        .eventually("the restarted master to serve", || cluster.status(victim))
        .await;
    let peer_addr = cluster.peers()[&victim].clone();
    // Any member takes it (a follower forwards it); the new master knows no leader yet.
    let mut client = cluster.cluster_client(others[0]).await;
    client
        .add_learner(pb::AddLearnerRequest {
            id: victim,
            peer_addr,
            blocking: true,
        })
        .await
        .unwrap();
    let written = cluster.status(others[0]).await.unwrap().last_applied;
    cluster
        .eventually("the learner to catch up", || async {
            let status = cluster.status(victim).await?;
            (status.last_applied >= written).then_some(())
        })
        .await;
    let status = client
        .change_membership(pb::ChangeMembershipRequest {
            voters: vec![1, 2, 3],
            retain: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let voters: Vec<u64> = status
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.id)
        .collect();
    assert_eq!(voters, vec![1, 2, 3]);
    assert_converged_with(&cluster, [victim], &ids).await;
}

/// A master whose Raft core stops on its own (openraft's `Fatal`, here a storage error:
/// building a snapshot cannot open a file) must not serve on as a zombie: it stops, says
/// why, and exits non-zero so that its supervisor restarts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_whose_raft_fails_exits_non_zero() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    write_sessions(&cluster, "fatal", 3).await;
    cluster.converged().await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    // Connect first: once the victim may open no file, it cannot accept a connection.
    let mut client = cluster.cluster_client(victim).await;
    client
        .get_cluster_status(pb::GetClusterStatusRequest {})
        .await
        .unwrap();
    cluster.limit_open_files(victim, 3).unwrap();
    // The snapshot's own database cannot be opened: the build fails, which openraft
    // treats as fatal. The call itself fails or times out; its answer does not matter.
    let _ = client.trigger_snapshot(pb::TriggerSnapshotRequest {}).await;
    let exit = cluster.exit_status(victim).await;
    assert!(!exit.success(), "exit status {exit}");
    let log = cluster.log(victim);
    assert!(log.contains("raft stopped"), "{log}");
    // The group goes on without it, and takes it back once restarted.
    cluster.create_session("after-fatal").await;
    cluster.restart(victim);
    assert_converged_with(&cluster, [victim], &["after-fatal".to_owned()]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_follower_coming_back_does_not_depose_the_leader() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let term = cluster.status(leader).await.unwrap().term;
    let follower = (1..=3).find(|id| *id != leader).unwrap();

    // Paused for several election timeouts: on waking, its election timer has expired.
    cluster.signal(follower, libc::SIGSTOP);
    let ids = write_sessions(&cluster, "paused", 10).await;
    // The pause itself is the fault being injected: its length is the test's input (well
    // past the 600 ms maximum election timeout), not a wait for some condition.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.signal(follower, libc::SIGCONT);

    // Once it has caught up, the leader and its term are what they were: pre-vote kept
    // the woken follower from starting a disruptive election.
    assert_converged_with(&cluster, [follower], &ids).await;
    let after = cluster.status(follower).await.unwrap();
    assert_eq!(
        after.leader_id, leader,
        "the woken follower deposed the leader"
    );
    assert_eq!(after.term, term, "the term moved: an election took place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_ports_refuse_a_wrong_secret() {
    use chorus::auth::BearerToken;
    use chorus::network::pb::ProbeRequest;

    let cluster = Cluster::start(3, Options::default());
    cluster.leader().await;
    let channel = cluster.channel(1).await;
    let mut client = pb::cluster_service_client::ClusterServiceClient::with_interceptor(
        channel.clone(),
        BearerToken::new("not-the-api-secret").unwrap(),
    );
    let err = client
        .get_cluster_status(pb::GetClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);
    let err = pb::cluster_service_client::ClusterServiceClient::new(channel)
        .get_cluster_status(pb::GetClusterStatusRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated);

    for secret in [common::OPERATOR_SECRET, "wrong-cluster-secret"] {
        let mut client = cluster.peer_client(1, secret);
        let err = client.probe(ProbeRequest {}).await.unwrap_err();
        assert_eq!(
            err.code(),
            tonic::Code::Unauthenticated,
            "peer port accepted {secret}"
        );
    }
    let mut client = cluster.peer_client(1, common::CLUSTER_SECRET);
    let probe = client.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert!(probe.initialized);
    assert_eq!(probe.voters, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_append_is_refused_and_changes_nothing() {
    use chorus::network::pb::Payload;

    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let before = write_sessions(&cluster, "before", 3).await;
    let (_, digest) = cluster.converged().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();

    let mut client = cluster.peer_client(follower, common::CLUSTER_SECRET);
    let garbage = Payload {
        data: vec![0xff; 64],
    };
    let mut results = client
        .stream_append(futures::stream::iter([garbage]))
        .await
        .unwrap()
        .into_inner();
    let err = results.message().await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("undecodable Raft message"), "{err}");

    let (_, now) = cluster.converged().await;
    assert_eq!(now, digest, "the refusal changed the state");
    let after = write_sessions(&cluster, "after", 3).await;
    assert_converged_with(&cluster, cluster.running(), &[before, after].concat()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_cluster_killed_and_restarted_keeps_every_acknowledged_write() {
    // Snapshots every 20 entries, so the restart goes through snapshot, purge and log.
    let mut cluster = Cluster::start(
        3,
        Options {
            snapshot_logs_since_last: 20,
            ..Options::default()
        },
    );
    cluster.leader().await;
    let ids = write_sessions(&cluster, "crash", 60).await;
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        cluster.restart(id);
    }
    let leader = cluster.leader().await;
    assert_linearizably_present(&cluster, leader, &ids).await;
    assert_converged_with(&cluster, 1..=3, &ids).await;
}

/// A follower stops promptly on SIGTERM although the leader keeps its append stream
/// open (draining the peer port used to wait for that stream forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_follower_promptly_and_exits_zero() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    write_sessions(&cluster, "term", 5).await;
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    let started = Instant::now();
    let status = cluster.terminate(victim);
    assert!(status.success(), "SIGTERM exit status {status}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stop took {:?}\n{}",
        started.elapsed(),
        cluster.logs()
    );
    cluster.create_session("after-term").await;
}
