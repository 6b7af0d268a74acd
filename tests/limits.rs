//! What one request can do to the cluster: nothing beyond its own refusal. Real
//! 3-master clusters on loopback, attacked with oversized writes.

mod common;

use chorus::api::pb;
use common::{Cluster, Options, assert_refused};
use std::time::Duration;

use tonic::Code;

fn connection(session_id: &str, server_data: String) -> pb::CreateConnectionRequest {
    pb::CreateConnectionRequest {
        session_id: session_id.into(),
        server_data,
        ..Default::default()
    }
}

/// A 12 MiB `server_data` (under the 64 MiB message limit) used to be appended and
/// fsynced, then could never be replicated, and no write succeeded after it. It is
/// refused before it is proposed, through the leader and through a follower alike, the
/// log does not grow, and the next write succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_write_is_refused_before_the_log_and_writes_go_on() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    cluster.create_session("big").await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    let (index, _) = cluster.converged().await;
    for (via, bytes) in [
        (leader, 12 << 20),
        (follower, 12 << 20),
        (follower, 16 * 1024 + 1),
    ] {
        let refused = cluster
            .client(&[via])
            .create_connection(connection("big", "x".repeat(bytes)))
            .await;
        assert_refused(refused, Code::ResourceExhausted, "server_data");
    }
    let status = cluster.status(leader).await.unwrap();
    assert_eq!(
        status.last_log_index, index,
        "a refused write entered the log"
    );

    let created = cluster
        .client_all()
        .create_connection(connection("big", "x".repeat(16 * 1024)))
        .await
        .unwrap();
    assert_eq!(created.session_id, "big");
    cluster.converged().await;
}

/// A follower that comes back to a log of entries larger together than a peer message
/// catches up: the leader's appends are cut to what one message carries. Before, the
/// whole backlog went as one append, over the limit, refused and resent for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_catches_up_on_a_backlog_larger_than_a_peer_message() {
    let mut cluster = Cluster::start(
        3,
        Options {
            extra_args: [
                "--max-message-bytes",
                "4194304",
                "--max-data-bytes",
                "262144",
            ]
            .map(String::from)
            .to_vec(),
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster.create_session("backlog").await;
    cluster.kill(follower);
    // 40 entries of 250 KiB: 10 MB, over two messages' worth.
    let client = cluster.client_all();
    for _ in 0..40 {
        client
            .create_connection(connection("backlog", "y".repeat(250 * 1024)))
            .await
            .unwrap();
    }
    cluster.restart(follower);
    let (index, _) = cluster.converged().await;
    let status = cluster.status(follower).await.unwrap();
    assert_eq!(status.last_applied, index);
    let log = cluster.log(leader);
    assert!(
        !log.contains("message length too large"),
        "an append went over the message limit:\n{log}"
    );
}

/// Opens `n` TCP connections to `addr` that never send a byte, and waits until the
/// master has closed all but `kept` of them (a connection past the port's limit is
/// closed as soon as it is accepted). The ones still open close when the returned set
/// is dropped.
async fn idle_connections(addr: &str, n: usize, kept: usize) -> tokio::task::JoinSet<()> {
    use tokio::io::AsyncReadExt;
    let mut closed = tokio::task::JoinSet::new();
    for _ in 0..n {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        closed.spawn(async move {
            // A held connection gets the server's HTTP/2 settings and waits; one past
            // the limit reads its end (or a reset) at once.
            let mut buf = [0; 256];
            while let Ok(1..) = stream.read(&mut buf).await {}
        });
    }
    let mut closed_count = 0;
    while closed_count < n - kept {
        match tokio::time::timeout(common::PATIENCE, closed.join_next()).await {
            Ok(Some(Ok(()))) => closed_count += 1,
            Ok(Some(Err(e))) => panic!("{e}"),
            Ok(None) => break,
            Err(_) => panic!("only {closed_count} of {n} idle connections to {addr} were closed"),
        }
    }
    closed
}

/// ~1,100 idle, unauthenticated connections used to exhaust a master's descriptors (at
/// a 1,024 limit): its Raft log could not open a file, the core died and the process
/// served on as a zombie. Now each port holds at most its limit and closes the rest at
/// once: the leader, flooded on both ports under a 600-descriptor limit, goes on
/// committing, builds a snapshot (which opens files), and serves clients again once the
/// flood is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_limits_cannot_starve_the_raft_log_of_descriptors() {
    let cluster = Cluster::start(
        3,
        Options {
            extra_args: ["--max-client-connections", "64"]
                .map(String::from)
                .to_vec(),
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    cluster.create_session("before-flood").await;
    cluster.limit_open_files(leader, 600).unwrap();

    let peer_addr = cluster.masters[&leader].peer_addr.clone();
    let client_addr = cluster.client_addr(leader).to_owned();
    // The peer port's 128 slots, less the connections the other masters hold.
    let peer_flood = idle_connections(&peer_addr, 700, 128).await;
    let client_flood = idle_connections(&client_addr, 700, 64).await;

    let others: Vec<u64> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let client = cluster.client(&others);
    for i in 0..50 {
        client
            .create_session(pb::CreateSessionRequest {
                custom_session_id: format!("flood-{i}"),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    cluster.check_alive().unwrap();
    let status = cluster.status(others[0]).await.unwrap();
    assert_eq!(
        status.leader_id, leader,
        "the flooded leader lost its leadership"
    );
    drop((peer_flood, client_flood));

    // Its slots free as the flood's connections close: a fresh client gets in once the
    // master has seen them go. Then the leader's Raft core must be whole.
    let mut admin = cluster
        .eventually("the flooded leader to take clients again", || async {
            let mut admin = cluster.cluster_client(leader).await;
            admin
                .get_cluster_status(pb::GetClusterStatusRequest {})
                .await
                .ok()?;
            Some(admin)
        })
        .await;
    admin
        .trigger_snapshot(pb::TriggerSnapshotRequest {})
        .await
        .expect("the leader builds a snapshot: its files open");
    let (index, _) = cluster.converged().await;
    assert_eq!(cluster.status(leader).await.unwrap().last_applied, index);
    let log = cluster.log(leader);
    assert!(!log.contains("Too many open files"), "{log}");
}

/// With one follower down, the leader retried it about once a millisecond, burning a
/// core and writing ~17,700 WARN lines a second. Now the retries back off (to one a
/// second) and the log is rate-limited per line of code: over three seconds of a dead
/// follower the leader writes a few dozen lines and stays near idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_follower_costs_the_leader_neither_a_core_nor_a_flood_of_log_lines() {
    let mut cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster.create_session("before").await;
    cluster.kill(follower);
    cluster.create_session("after").await;
    let pid = cluster.pid(leader).unwrap();
    let (lines, cpu) = (
        cluster.log(leader).lines().count(),
        chorus_testkit::cpu_seconds(pid).unwrap(),
    );
    // The outage's length is the input here: long enough for a back-off to reach its
    // cap, and for a retry loop without one to show.
    let window = Duration::from_secs(3);
    tokio::time::sleep(window).await;
    let added = cluster.log(leader).lines().count() - lines;
    let used = chorus_testkit::cpu_seconds(pid).unwrap() - cpu;
    assert!(
        added <= 60,
        "{added} log lines in {window:?}:\n{}",
        cluster.log(leader)
    );
    // A retry loop without back-off used the whole window; heartbeats to the live
    // follower use a few percent.
    assert!(
        used < window.as_secs_f64() / 4.0,
        "{used:.2} CPU seconds in {window:?}"
    );
    cluster.restart(follower);
    cluster.converged().await;
}

/// `CreateSessionRequest` as the wire sees it, with its id as raw bytes: what a client
/// with a broken encoder (or an attacker) can send.
#[derive(Clone, PartialEq, prost::Message)]
struct RawCreateSession {
    #[prost(bytes = "vec", tag = "1")]
    custom_session_id: Vec<u8>,
}

/// A string field that is not UTF-8 fails to decode; tonic answered INTERNAL, as if the
/// server were at fault. It is INVALID_ARGUMENT naming the field, and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_string_field_that_is_not_utf8_is_invalid_argument_naming_the_field() {
    let cluster = Cluster::start(3, Options::default());
    let leader = cluster.leader().await;
    let (index, _) = cluster.converged().await;
    let channel = tonic::service::interceptor::InterceptedService::new(
        cluster.channel(leader).await,
        chorus::auth::BearerToken::new(common::OPERATOR_SECRET).unwrap(),
    );
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let refused = grpc
        .unary::<_, pb::Session, _>(
            tonic::Request::new(RawCreateSession {
                custom_session_id: vec![b'a', 0xff, 0xfe],
            }),
            "/chorus.v1.SessionService/CreateSession".parse().unwrap(),
            tonic_prost::ProstCodec::default(),
        )
        .await;
    assert_refused(refused, Code::InvalidArgument, "custom_session_id");
    assert_eq!(cluster.status(leader).await.unwrap().last_log_index, index);
}

/// A full disk used to kill the Raft core and leave the process up as a zombie, even
/// once space was freed. A follower whose disk fills now exits non-zero, naming the
/// error; the others go on; and once space is freed it starts from its data dir
/// (nothing in it damaged) and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_disk_fills_exits_and_rejoins_once_space_is_freed() {
    let mut cluster = Cluster::start(
        3,
        Options {
            extra_args: ["--max-data-bytes", "262144"].map(String::from).to_vec(),
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    cluster.create_session("disk").await;
    cluster.converged().await;
    let victim = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    cluster.kill(victim);
    let disk = chorus_testkit::SmallDisk::new(&cluster.masters[&victim].data_dir.clone(), 12 << 20)
        .expect("a tmpfs in a user namespace (util-linux's unshare)");
    cluster.wrap(victim, disk.wrapper());
    cluster.restart(victim);
    cluster.converged().await;

    // 100 writes of 250 KiB: 25 MB, twice the victim's disk.
    let client = cluster.client_all();
    for _ in 0..100 {
        client
            .create_connection(connection("disk", "z".repeat(250 * 1024)))
            .await
            .unwrap();
    }
    let exit = cluster.exit_status(victim).await;
    assert!(!exit.success(), "exit status {exit}");
    let log = cluster.log(victim);
    assert!(log.contains("No space left on device"), "{log}");

    disk.resize(256 << 20).unwrap();
    cluster.restart(victim);
    let (index, _) = cluster.converged().await;
    assert_eq!(cluster.status(victim).await.unwrap().last_applied, index);
}

/// Each open Health.Watch holds memory for as long as its client keeps it (20,000 of
/// them held 108 MB, and nothing bounded them). Past `--max-watch-streams` a new watch is
/// RESOURCE_EXHAUSTED naming the limit, checks still answer, and a closed watch frees
/// its slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watches_past_the_limit_are_refused_and_a_closed_one_frees_its_slot() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let cluster = Cluster::start(
        1,
        Options {
            extra_args: ["--max-watch-streams", "8"].map(String::from).to_vec(),
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    let mut health = HealthClient::new(cluster.channel(leader).await);
    let mut open = Vec::new();
    for _ in 0..8 {
        let watch = health
            .watch(HealthCheckRequest::default())
            .await
            .unwrap()
            .into_inner();
        open.push(watch);
    }
    let refused = health.watch(HealthCheckRequest::default()).await;
    assert_refused(
        refused.map(drop),
        Code::ResourceExhausted,
        "max_watch_streams",
    );
    health
        .check(HealthCheckRequest::default())
        .await
        .expect("checks are not watches");

    drop(open.pop());
    let health = &health;
    cluster
        .eventually("a slot freed by the closed watch", || async move {
            health
                .clone()
                .watch(HealthCheckRequest::default())
                .await
                .ok()
                .map(drop)
        })
        .await;
}
