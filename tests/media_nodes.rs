//! Media nodes against real 3-master clusters, the test playing the media nodes:
//! load-aware placement, crash detection and re-placement (also across a leader kill),
//! failover without false crashes, the status graph, draining and forced deregistering.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chorus::api::pb;
use chorus::client::Client;
use common::{
    Cluster, Heartbeats, Options, register_media_node, set_media_node_status, wait_media_node,
};
use tonic::Code;

const LINEARIZABLE: i32 = pb::Consistency::Linearizable as i32;
/// Heartbeat period of the simulated nodes, well inside the node timeout below.
const BEAT: Duration = Duration::from_millis(100);

/// A cluster whose masters declare a node CRASHED after `node_timeout_ms` of silence.
fn cluster(node_timeout_ms: u64) -> Cluster {
    Cluster::start(
        3,
        Options {
            extra_args: vec!["--node-timeout-ms".into(), node_timeout_ms.to_string()],
            ..Options::default()
        },
    )
}

async fn node(client: &Client, id: &str) -> pb::MediaNode {
    client
        .get_media_node(pb::GetMediaNodeRequest {
            id: id.into(),
            consistency: LINEARIZABLE,
        })
        .await
        .unwrap()
}

async fn session(client: &Client, id: &str) -> pb::Session {
    client
        .get_session(pb::GetSessionRequest {
            session_id: id.into(),
            consistency: LINEARIZABLE,
        })
        .await
        .unwrap()
}

/// Creates session `id` with one connection (which places it); returns the connection.
async fn session_with_connection(client: &Client, id: &str) -> pb::Connection {
    client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    client
        .create_connection(pb::CreateConnectionRequest {
            session_id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Sessions per node, read linearizably.
async fn placement(client: &Client) -> BTreeMap<String, Vec<String>> {
    let mut per_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in client
        .all_sessions(pb::Consistency::Linearizable)
        .await
        .unwrap()
    {
        per_node.entry(s.media_node_id).or_default().push(s.id);
    }
    per_node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sessions_spreads_over_the_nodes() {
    let cluster = cluster(5_000);
    cluster.leader().await;
    let client = cluster.client_all();
    let nodes = ["n1", "n2", "n3", "n4"];
    for id in nodes {
        register_media_node(&client, id).await;
        // One report each, all equally loaded; none during the burst.
        let beat = client
            .heartbeat(pb::HeartbeatRequest {
                reports: Vec::new(),
                node_id: id.into(),
                load: 20.0,
            })
            .await
            .unwrap();
        assert_eq!(beat.status, "RUNNING");
    }
    // 100 sessions from 10 concurrent clients.
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..10 {
        let client = client.clone();
        tasks.spawn(async move {
            for i in 0..10 {
                session_with_connection(&client, &format!("burst-{worker}-{i}")).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let per_node = placement(&client).await;
    let counts: Vec<usize> = nodes
        .iter()
        .map(|n| per_node.get(*n).map_or(0, Vec::len))
        .collect();
    assert_eq!(counts.iter().sum::<usize>(), 100, "{per_node:?}");
    let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(max - min <= 2, "uneven spread {counts:?}");

    // A node reporting a far higher load gets the next sessions only after the others
    // caught up with it.
    client
        .heartbeat(pb::HeartbeatRequest {
            reports: Vec::new(),
            node_id: "n1".into(),
            load: 90.0,
        })
        .await
        .unwrap();
    for i in 0..8 {
        let c = session_with_connection(&client, &format!("after-{i}")).await;
        assert_ne!(c.media_node_id, "n1", "the loaded node got session {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_node_crashes_and_its_sessions_move_with_fresh_tokens() {
    let cluster = cluster(1_000);
    cluster.leader().await;
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), BEAT);
    for id in ["n1", "n2", "n3"] {
        register_media_node(&client, id).await;
        beats.beat(id, 10.0);
    }
    for id in ["n1", "n2", "n3"] {
        wait_media_node(&cluster, &client, id, "RUNNING").await;
    }
    let mut joined = BTreeMap::new();
    for i in 0..30 {
        let c = session_with_connection(&client, &format!("s{i}")).await;
        client
            .join_connection(pb::JoinConnectionRequest {
                token: c.token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
        joined.insert(c.session_id.clone(), c);
    }
    let before = placement(&client).await;
    let victim = "n2";
    let moved: Vec<String> = before[victim].clone();
    assert!(!moved.is_empty());

    beats.silence(victim);
    wait_media_node(&cluster, &client, victim, "CRASHED").await;
    cluster
        .eventually("every session placed on a running node", || async {
            let now = placement(&client).await;
            (!now.contains_key("") && !now.contains_key(victim)).then_some(())
        })
        .await;
    let after = placement(&client).await;
    assert_eq!(after.values().map(Vec::len).sum::<usize>(), 30);
    for survivor in ["n1", "n3"] {
        let gained = after[survivor].len() - before[survivor].len();
        assert!(gained > 0, "the moved sessions were not spread: {after:?}");
    }
    for id in &moved {
        let s = session(&client, id).await;
        assert_eq!(s.displaced_reason, "nodeCrashed");
        let c = &s.connections[0];
        assert_eq!(c.status, "PENDING", "back to PENDING to re-join");
        let old = &joined[id];
        assert_eq!(c.id, old.id);
        assert_ne!(c.token, old.token, "a fresh token");
        client
            .join_connection(pb::JoinConnectionRequest {
                token: c.token.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    // Sessions on the healthy nodes were left alone.
    for s in &before["n1"] {
        assert_eq!(session(&client, s).await.connections[0].status, "ACTIVE");
    }
    // Heartbeats resume: the node runs again, and takes new sessions.
    beats.beat(victim, 0.0);
    wait_media_node(&cluster, &client, victim, "RUNNING").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_leader_places_what_the_dead_one_displaced() {
    let mut cluster = cluster(1_000);
    let leader = cluster.leader().await;
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), BEAT);
    register_media_node(&client, "only").await;
    beats.beat("only", 10.0);
    wait_media_node(&cluster, &client, "only", "RUNNING").await;
    for i in 0..20 {
        session_with_connection(&client, &format!("s{i}")).await;
    }
    // The only node dies: its sessions are displaced and wait, as no node can take them.
    beats.silence("only");
    wait_media_node(&cluster, &client, "only", "CRASHED").await;
    let waiting = placement(&client).await;
    assert_eq!(waiting.get("").map(Vec::len), Some(20), "{waiting:?}");

    // The leader that displaced them dies; a new node comes up under the next leader.
    cluster.kill(leader);
    let survivors = cluster.running();
    let client = cluster.client(&survivors);
    let beats = Heartbeats::start(client.clone(), BEAT);
    register_media_node(&client, "fresh").await;
    beats.beat("fresh", 10.0);
    cluster
        .eventually("the new leader placed every waiting session", || async {
            let now = placement(&client).await;
            (now.get("fresh").map(Vec::len) == Some(20)).then_some(())
        })
        .await;
    assert_eq!(node(&client, "fresh").await.session_ids.len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_failover_crashes_no_healthy_node() {
    let mut cluster = cluster(1_000);
    let leader = cluster.leader().await;
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), BEAT);
    for id in ["n1", "n2"] {
        register_media_node(&client, id).await;
        beats.beat(id, 10.0);
        wait_media_node(&cluster, &client, id, "RUNNING").await;
    }
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    assert_ne!(new_leader, leader);
    // Two node timeouts under the new leader: a false crash would have been declared by
    // now. (Something must not happen: there is no event to await.)
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    for id in ["n1", "n2"] {
        assert_eq!(node(&client, id).await.status, "RUNNING", "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_follow_the_graph_and_draining_nodes_empty_out() {
    let cluster = cluster(5_000);
    cluster.leader().await;
    let client = cluster.client_all();
    register_media_node(&client, "a").await;
    register_media_node(&client, "b").await;
    // Same id, same uri: idempotent; another uri: ALREADY_EXISTS.
    register_media_node(&client, "a").await;
    let other = client
        .register_media_node(pb::RegisterMediaNodeRequest {
            id: "a".into(),
            uri: "ws://elsewhere".into(),
            cores: 4,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    // launching → canceled → launching → running; running → terminated is refused.
    assert_eq!(
        set_media_node_status(&client, "a", "CANCELED")
            .await
            .unwrap()
            .status,
        "CANCELED"
    );
    assert_eq!(
        set_media_node_status(&client, "a", "LAUNCHING")
            .await
            .unwrap()
            .status,
        "LAUNCHING"
    );
    assert_eq!(
        set_media_node_status(&client, "a", "RUNNING")
            .await
            .unwrap()
            .status,
        "RUNNING"
    );
    let refused = set_media_node_status(&client, "a", "TERMINATED")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("RUNNING") && refused.message().contains("TERMINATED"),
        "{refused:?}"
    );
    assert_eq!(
        set_media_node_status(&client, "b", "RUNNING")
            .await
            .unwrap()
            .status,
        "RUNNING"
    );

    // a serves a session; it drains: no new sessions, then TERMINATING once empty.
    let on_a = client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: "on-a".into(),
            media_node_id: "a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(on_a.media_node_id, "a");
    let refused = client.deregister_media_node(pb::DeregisterMediaNodeRequest {
        id: "a".into(),
        force: false,
        request_id: String::new(),
    });
    assert_eq!(refused.await.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(
        set_media_node_status(&client, "a", "WAITING_IDLE_TO_TERMINATE")
            .await
            .unwrap()
            .status,
        "WAITING_IDLE_TO_TERMINATE"
    );
    for i in 0..4 {
        let c = session_with_connection(&client, &format!("new-{i}")).await;
        assert_eq!(c.media_node_id, "b", "a draining node got a new session");
    }
    client
        .delete_session(pb::DeleteSessionRequest {
            session_id: "on-a".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(node(&client, "a").await.status, "TERMINATING");

    // Forced deregistering moves b's sessions: with no other node, they wait.
    let gone = client
        .deregister_media_node(pb::DeregisterMediaNodeRequest {
            id: "b".into(),
            force: true,
            request_id: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(gone.displaced_session_ids.len(), 4);
    let s = session(&client, "new-0").await;
    assert_eq!(
        (s.media_node_id.as_str(), s.displaced_reason.as_str()),
        ("", "nodeDeregistered")
    );
    let missing = client
        .get_media_node(pb::GetMediaNodeRequest {
            id: "b".into(),
            consistency: LINEARIZABLE,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    // A node that comes up takes them.
    register_media_node(&client, "c").await;
    client
        .heartbeat(pb::HeartbeatRequest {
            reports: Vec::new(),
            node_id: "c".into(),
            load: 5.0,
        })
        .await
        .unwrap();
    cluster
        .eventually("the displaced sessions placed on c", || async {
            (node(&client, "c").await.session_ids.len() == 4).then_some(())
        })
        .await;
    let unknown = client
        .heartbeat(pb::HeartbeatRequest {
            reports: Vec::new(),
            node_id: "ghost".into(),
            load: 5.0,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad_load = client
        .heartbeat(pb::HeartbeatRequest {
            reports: Vec::new(),
            node_id: "c".into(),
            load: 250.0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_load.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autoscaling_advice_follows_the_load_and_reaches_every_master() {
    let cluster = Cluster::start(
        3,
        Options {
            extra_args: [
                "--autoscaling",
                "true",
                "--autoscaling-min-nodes",
                "1",
                "--autoscaling-max-nodes",
                "3",
                "--autoscaling-min-load",
                "30",
                "--autoscaling-max-load",
                "70",
            ]
            .map(String::from)
            .to_vec(),
            ..Options::default()
        },
    );
    let leader = cluster.leader().await;
    let follower = *cluster.masters.keys().find(|id| **id != leader).unwrap();
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), BEAT);
    for id in ["n1", "n2"] {
        register_media_node(&client, id).await;
    }
    // n1 serves a session, so n2 is the less busy one.
    beats.beat("n1", 90.0);
    wait_media_node(&cluster, &client, "n1", "RUNNING").await;
    session_with_connection(&client, "busy").await;
    beats.beat("n2", 90.0);
    wait_media_node(&cluster, &client, "n2", "RUNNING").await;

    // Each scripted load, and the advice every master should come to show.
    let follower_view = cluster.client(&[follower]);
    let script: [(f64, u32, &[&str]); 3] = [
        // 2 × 90 = 180 needs 3 nodes under 70: launch 1.
        (90.0, 1, &[]),
        // 2 × 10 = 20: one node carries it; drain the idle one.
        (10.0, 0, &["n2"]),
        // 2 × 50: within bounds.
        (50.0, 0, &[]),
    ];
    for (load, launch, drain) in script {
        beats.beat("n1", load);
        beats.beat("n2", load);
        cluster
            .eventually(&format!("advice for load {load}"), || async {
                let status = follower_view
                    .cluster_status(pb::GetClusterStatusRequest {})
                    .await
                    .ok()?;
                let advice = status.autoscaling?;
                (advice.launch == launch
                    && advice.drain == drain
                    && advice.average_load == load as u32
                    && advice.running == 2)
                    .then_some(())
            })
            .await;
    }
}

/// The load agent-1 reported, as master `via` knows it (only a leader does).
async fn reported(cluster: &Cluster, via: u64) -> Option<f64> {
    cluster
        .client(&[via])
        .get_media_node(pb::GetMediaNodeRequest {
            id: "agent-1".into(),
            consistency: LINEARIZABLE,
        })
        .await
        .ok()?
        .load
}

/// A `chorus agent` process, SIGKILLed if the test ends without stopping it.
struct Agent(Option<std::process::Child>);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_registers_reports_load_follows_failover_and_drains_on_sigterm() {
    let mut cluster = cluster(1_000);
    let leader = cluster.leader().await;
    let endpoints: Vec<String> = cluster
        .masters
        .values()
        .map(|m| m.client_addr.clone())
        .collect();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut agent = Agent(Some(
        std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args([
                "agent",
                "--node-id",
                "agent-1",
                "--uri",
                "ws://127.0.0.1:9/agent",
            ])
            .args(["--interval-ms", "100", "--drain-timeout-secs", "30"])
            .env("CHORUS_ENDPOINTS", endpoints.join(","))
            .env("CHORUS_API_SECRET", common::OPERATOR_SECRET)
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap(),
    ));
    let client = cluster.client_all();
    wait_media_node(&cluster, &client, "agent-1", "RUNNING").await;
    // The leader holds the load the agent measured.
    let load = cluster
        .eventually("a load reported to the leader", || {
            reported(&cluster, leader)
        })
        .await;
    assert!((0.0..=100.0).contains(&load), "{load}");
    let c = session_with_connection(&client, "on-agent").await;
    assert_eq!(c.media_node_id, "agent-1");

    // The leader dies: the agent's heartbeats reach the next one, and the node stays up.
    cluster.kill(leader);
    let new_leader = cluster.leader().await;
    cluster
        .eventually("a load reported to the new leader", || {
            reported(&cluster, new_leader)
        })
        .await;
    let client = cluster.client(&cluster.running());
    assert_eq!(node(&client, "agent-1").await.status, "RUNNING");

    // SIGTERM: the node drains; once its last session ends it is deregistered.
    let child = agent.0.as_ref().unwrap();
    // SAFETY: kill(2) on the pid of a child we have not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_media_node(&cluster, &client, "agent-1", "WAITING_IDLE_TO_TERMINATE").await;
    client
        .delete_session(pb::DeleteSessionRequest {
            session_id: "on-agent".into(),
            request_id: String::new(),
        })
        .await
        .unwrap();
    let status = agent.0.take().unwrap().wait().unwrap();
    let log = std::fs::read_to_string(log.path()).unwrap();
    assert!(status.success(), "agent exited with {status}\n{log}");
    let gone = client
        .get_media_node(pb::GetMediaNodeRequest {
            id: "agent-1".into(),
            consistency: LINEARIZABLE,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_kill_racing_a_re_placement_leaves_nothing_behind_or_doubled() {
    let mut cluster = cluster(1_000);
    let leader = cluster.leader().await;
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), BEAT);
    register_media_node(&client, "doomed").await;
    beats.beat("doomed", 0.0);
    wait_media_node(&cluster, &client, "doomed", "RUNNING").await;
    let total = 150;
    for i in 0..total {
        session_with_connection(&client, &format!("s{i}")).await;
    }
    for id in ["n2", "n3"] {
        register_media_node(&client, id).await;
        beats.beat(id, 10.0);
        wait_media_node(&cluster, &client, id, "RUNNING").await;
    }
    // The node dies; the leader is killed as soon as the crash is seen. Re-placing 150
    // sessions takes the leader some 20 ms, so the kill usually lands just after it;
    // `the_next_leader_places_what_the_dead_one_displaced` covers a leader dying with
    // the work undone. Either way: nothing left on the dead node, nothing doubled.
    beats.silence("doomed");
    wait_media_node(&cluster, &client, "doomed", "CRASHED").await;
    cluster.kill(leader);
    let client = cluster.client(&cluster.running());
    cluster
        .eventually("every session on a running node", || async {
            let now = placement(&client).await;
            (now.keys().all(|node| node == "n2" || node == "n3")).then_some(())
        })
        .await;
    let now = placement(&client).await;
    let placed: usize = now.values().map(Vec::len).sum();
    assert_eq!(placed, total, "{now:?}");
    // Each session on exactly one node: the registry agrees with the sessions.
    let mut on_nodes = 0;
    for id in ["n2", "n3"] {
        let hosted = node(&client, id).await.session_ids;
        assert_eq!(hosted.len(), now[id].len());
        on_nodes += hosted.len();
    }
    assert_eq!(on_nodes, total);
    assert!(node(&client, "doomed").await.session_ids.is_empty());
}
