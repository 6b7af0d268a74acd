//! Media-node placement on a 3-master cluster of real `chorus serve` processes:
//!
//! 1. the spread of a burst of 100 new sessions (10 concurrent clients) over 4 equally
//!    loaded nodes, as sessions per node and max − min;
//! 2. the time from a node's last heartbeat until all 1,000 of its sessions are re-placed
//!    on the other nodes, split into detection (until the node is CRASHED, bounded
//!    below by the node timeout) and re-placement (from then until the last session
//!    is on another node).
//!
//! Run with `cargo bench --bench placement`. Progress is polled every 10 ms, so each
//! figure may include up to that much observation delay.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::Client;
use common::{Cluster, Heartbeats, Options, register_media_node, set_media_node_status};

const NODE_TIMEOUT_MS: u64 = 2_000;
const BURSTS: usize = 5;
const ROUNDS: usize = 3;
const SESSIONS: usize = 1_000;
/// Concurrent clients loading sessions.
const WORKERS: usize = 10;
const POLL: Duration = Duration::from_millis(10);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = Cluster::start(
        3,
        Options {
            extra_args: vec!["--node-timeout-ms".into(), NODE_TIMEOUT_MS.to_string()],
            ..Options::default()
        },
    );
    cluster.leader().await;
    let client = cluster.client_all();
    let beats = Heartbeats::start(client.clone(), Duration::from_millis(100));

    for burst in 0..BURSTS {
        let nodes: Vec<String> = (0..4).map(|i| format!("b{burst}-n{i}")).collect();
        for id in &nodes {
            register_media_node(&client, id).await;
            beats.beat(id, 20.0);
        }
        wait_running(&client, &nodes).await;
        // Quiet the burst's nodes' reports during the burst, as a real burst between two
        // reports; they were all seen at the same load.
        for id in &nodes {
            beats.silence(id);
        }
        run_workers(&client, 100, move |i| format!("burst{burst}-{i}"), None).await;
        let mut counts = Vec::new();
        for id in &nodes {
            counts.push(node(&client, id).await.session_ids.len());
        }
        let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
        println!("burst {burst}: 100 sessions over 4 nodes: {counts:?}, max - min = {spread}");
        for id in &nodes {
            set_media_node_status(&client, id, "WAITING_IDLE_TO_TERMINATE")
                .await
                .unwrap();
        }
    }

    for round in 0..ROUNDS {
        let doomed = format!("doomed-{round}");
        let others: Vec<String> = (0..3).map(|i| format!("r{round}-n{i}")).collect();
        register_media_node(&client, &doomed).await;
        for id in &others {
            register_media_node(&client, id).await;
            beats.beat(id, 10.0);
        }
        let last_beat = Arc::new(std::sync::Mutex::new(Instant::now()));
        let beating = Arc::new(AtomicBool::new(true));
        let doomed_beats = {
            let (client, doomed, last_beat, beating) = (
                client.clone(),
                doomed.clone(),
                last_beat.clone(),
                beating.clone(),
            );
            tokio::spawn(async move {
                while beating.load(Ordering::Relaxed) {
                    let beat = pb::HeartbeatRequest {
                        reports: Vec::new(),
                        node_id: doomed.clone(),
                        load: 10.0,
                    };
                    if client.heartbeat(beat).await.is_ok() {
                        *last_beat.lock().unwrap() = Instant::now();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let mut all = others.clone();
        all.push(doomed.clone());
        wait_running(&client, &all).await;
        let node_id = doomed.clone();
        run_workers(
            &client,
            SESSIONS,
            move |i| format!("round{round}-{i}"),
            Some(node_id),
        )
        .await;
        assert_eq!(node(&client, &doomed).await.session_ids.len(), SESSIONS);

        beating.store(false, Ordering::Relaxed);
        doomed_beats.await.unwrap();
        let silent_since = *last_beat.lock().unwrap();
        let crashed = loop {
            if node(&client, &doomed).await.status == "CRASHED" {
                break silent_since.elapsed();
            }
            tokio::time::sleep(POLL).await;
        };
        let replaced = loop {
            let mut moved = 0;
            for id in &others {
                moved += node(&client, id).await.session_ids.len();
            }
            if moved == SESSIONS {
                break silent_since.elapsed();
            }
            assert!(
                silent_since.elapsed() < common::PATIENCE,
                "re-placement stalled"
            );
            tokio::time::sleep(POLL).await;
        };
        let mut spread = Vec::new();
        for id in &others {
            spread.push(node(&client, id).await.session_ids.len());
        }
        println!(
            "round {round}: last heartbeat → CRASHED {:.0} ms, → all {SESSIONS} re-placed {:.0} ms \
             (re-placement {:.0} ms), spread {spread:?} (node timeout {NODE_TIMEOUT_MS} ms)",
            ms(crashed),
            ms(replaced),
            ms(replaced - crashed)
        );
        for id in &others {
            beats.silence(id);
            set_media_node_status(&client, id, "WAITING_IDLE_TO_TERMINATE")
                .await
                .unwrap();
        }
    }
}

async fn node(client: &Client, id: &str) -> pb::MediaNode {
    client
        .get_media_node(pb::GetMediaNodeRequest {
            id: id.into(),
            consistency: pb::Consistency::Stale as i32,
        })
        .await
        .unwrap()
}

async fn wait_running(client: &Client, ids: &[String]) {
    let started = Instant::now();
    for id in ids {
        while node(client, id).await.status != "RUNNING" {
            assert!(started.elapsed() < common::PATIENCE, "{id} never ran");
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Creates `count` sessions, each with one connection, from `WORKERS` clients; with
/// `on`, each session is placed on that node at creation.
async fn run_workers(
    client: &Client,
    count: usize,
    name: impl Fn(usize) -> String + Send + Sync + 'static,
    on: Option<String>,
) {
    let name = Arc::new(name);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (client, name, on) = (client.clone(), name.clone(), on.clone());
        tasks.spawn(async move {
            for i in (worker..count).step_by(WORKERS) {
                let id = name(i);
                client
                    .create_session(pb::CreateSessionRequest {
                        custom_session_id: id.clone(),
                        media_node_id: on.clone().unwrap_or_default(),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                client
                    .create_connection(pb::CreateConnectionRequest {
                        session_id: id,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
