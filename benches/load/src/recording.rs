//! `chorus-bench recording`: how long a recording takes to start, and to start again
//! after its media node dies.
//!
//! Three masters and two `chorus agent`s (this binary re-executed as `chorus-bench agent
//! …`) whose recording hook does nothing. Each round of the first figure starts a
//! recording of a session with a joined publisher and times `StartRecording` to the
//! `recordingStatusChanged` event saying `started`. Each round of the second records an
//! ALWAYS session, SIGKILLs the agent of its node, re-joins the publisher as soon as
//! the session is placed on the other node, and times the kill to the new recording's
//! `started`; the killed agent is then restarted. Times come from the event stream, not
//! from polling. Starts are asked at a random point of the agents' heartbeat period
//! (the agent learns of a start with its next heartbeat).

use std::path::Path;
use std::time::{Duration, Instant};

use chorus::api::pb;
use chorus::client::Client;
use futures::{Stream, StreamExt};

use crate::BenchResult;
use crate::chorus_cluster::{Masters, OPERATOR_SECRET};
use crate::workload::Via;

/// Longest any one awaited step may take before the bench gives up.
const STEP: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct RecordingArgs {
    /// Rounds of each figure.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// The masters' `--node-timeout-ms`.
    #[arg(long, default_value_t = 5_000)]
    node_timeout_ms: u64,
    /// The agents' `--interval-ms` (between heartbeats).
    #[arg(long, default_value_t = 1_000)]
    interval_ms: u64,
}

/// A `chorus agent` with a hook that succeeds at once; killed on drop.
struct Agent {
    child: std::process::Child,
}

impl Agent {
    fn start(masters: &Masters, node: &str, hook: &Path, interval_ms: u64) -> BenchResult<Agent> {
        let endpoints: Vec<String> = masters
            .ids()
            .into_iter()
            .map(|id| masters.client_addr(id).to_owned())
            .collect();
        let child = std::process::Command::new(std::env::current_exe()?)
            .args(["agent", "--node-id", node])
            .args(["--uri", &format!("ws://127.0.0.1:9/{node}")])
            .args(["--interval-ms", &interval_ms.to_string()])
            .arg("--recording-hook")
            .arg(hook)
            .env("CHORUS_ENDPOINTS", endpoints.join(","))
            .env("CHORUS_API_SECRET", OPERATOR_SECRET)
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()?;
        Ok(Agent { child })
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The events of `session_id` from the leader's next event on.
async fn events_of(
    client: &Client,
    session_id: &str,
) -> BenchResult<impl Stream<Item = Result<pb::Event, tonic::Status>> + Unpin> {
    let status = client
        .cluster_status(pb::GetClusterStatusRequest::default())
        .await?;
    Ok(Box::pin(client.watch_events(pb::WatchRequest {
        from_event_id: status.last_event_id + 1,
        events: vec!["recordingStatusChanged".into(), "sessionPlaced".into()],
        session_id: session_id.into(),
    })))
}

/// Reads `events` until one satisfies `wanted`; its JSON body.
async fn until(
    events: &mut (impl Stream<Item = Result<pb::Event, tonic::Status>> + Unpin),
    what: &str,
    wanted: impl Fn(&pb::Event, &serde_json::Value) -> bool,
) -> BenchResult<serde_json::Value> {
    let read = async {
        while let Some(event) = events.next().await {
            let event = event?;
            let body: serde_json::Value = serde_json::from_str(&event.json)?;
            if wanted(&event, &body) {
                return Ok(body);
            }
        }
        Err("the event stream ended".into())
    };
    let found: BenchResult<serde_json::Value> = tokio::time::timeout(STEP, read)
        .await
        .map_err(|_| format!("no {what} within {STEP:?}"))?;
    found
}

fn started(id: &str) -> impl Fn(&pb::Event, &serde_json::Value) -> bool + '_ {
    move |event, body| {
        event.event == "recordingStatusChanged" && body["id"] == id && body["status"] == "started"
    }
}

async fn wait_running(client: &Client, node: &str) -> BenchResult {
    let deadline = Instant::now() + STEP;
    loop {
        let status = client
            .get_media_node(pb::GetMediaNodeRequest {
                id: node.into(),
                consistency: pb::Consistency::Linearizable as i32,
            })
            .await
            .map(|n| n.status);
        if status.as_deref().ok() == Some("RUNNING") {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("media node {node} not RUNNING within {STEP:?}").into());
        }
        // Polling the registry: a separate process registers the node.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A session with a joined publisher; the connection.
async fn with_publisher(client: &Client, id: &str, mode: &str) -> BenchResult<pb::Connection> {
    client
        .create_session(pb::CreateSessionRequest {
            custom_session_id: id.into(),
            recording_mode: mode.into(),
            ..Default::default()
        })
        .await?;
    let connection = client
        .create_connection(pb::CreateConnectionRequest {
            session_id: id.into(),
            ..Default::default()
        })
        .await?;
    Ok(client
        .join_connection(pb::JoinConnectionRequest {
            token: connection.token,
            ..Default::default()
        })
        .await?)
}

async fn delete_session(client: &Client, session_id: String) -> BenchResult {
    client
        .delete_session(pb::DeleteSessionRequest {
            session_id,
            request_id: String::new(),
        })
        .await?;
    Ok(())
}

fn summary(label: &str, times: &[Duration]) -> serde_json::Value {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    let max = ms[ms.len() - 1];
    println!(
        "{label}: median {median:.0} ms, min {:.0} ms, max {max:.0} ms over {} rounds",
        ms[0],
        ms.len()
    );
    serde_json::json!({
        "rounds_ms": ms.iter().map(|m| crate::load::round(*m)).collect::<Vec<_>>(),
        "median_ms": crate::load::round(median),
        "max_ms": crate::load::round(max),
    })
}

pub async fn run(args: RecordingArgs) -> BenchResult {
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let timeout = args.node_timeout_ms.to_string();
    let masters = Masters::start(3, &["--node-timeout-ms", &timeout]).await?;
    let dir = tempfile::tempdir()?;
    let hook = dir.path().join("hook.sh");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n")?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    let nodes = ["rec-a", "rec-b"];
    let mut agents = Vec::new();
    let client = masters
        .target()
        .clients(Via::All, 1)
        .await?
        .pop()
        .ok_or("no client")?;
    for node in nodes {
        agents.push(Agent::start(&masters, node, &hook, args.interval_ms)?);
        wait_running(&client, node).await?;
    }

    let mut to_started = Vec::new();
    for round in 0..args.rounds {
        let session = format!("start-{round}");
        with_publisher(&client, &session, "MANUAL").await?;
        let mut events = events_of(&client, &session).await?;
        // At a random point of the agent's heartbeat period, as an application would.
        let phase = rand::random_range(0..args.interval_ms.max(1));
        tokio::time::sleep(Duration::from_millis(phase)).await;
        let asked = Instant::now();
        let recording = client
            .start_recording(pb::StartRecordingRequest {
                session_id: session.clone(),
                ..Default::default()
            })
            .await?;
        until(&mut events, "started", started(&recording.id)).await?;
        to_started.push(asked.elapsed());
        drop(events);
        delete_session(&client, session).await?;
    }

    let mut to_replaced = Vec::new();
    for round in 0..args.rounds {
        let session = format!("crash-{round}");
        let mut events = events_of(&client, &session).await?;
        let alice = with_publisher(&client, &session, "ALWAYS").await?;
        until(&mut events, "started", started(&session)).await?;
        let victim = nodes
            .iter()
            .position(|n| *n == alice.media_node_id)
            .ok_or("the session is on no agent's node")?;
        let killed = Instant::now();
        agents[victim].child.kill()?;
        agents[victim].child.wait()?;
        until(&mut events, "re-placement", |event, body| {
            event.event == "sessionPlaced" && body["mediaNodeId"] != alice.media_node_id.as_str()
        })
        .await?;
        let moved = client
            .get_connection(pb::GetConnectionRequest {
                session_id: session.clone(),
                connection_id: alice.id.clone(),
                consistency: pb::Consistency::Linearizable as i32,
            })
            .await?;
        client
            .join_connection(pb::JoinConnectionRequest {
                token: moved.token,
                ..Default::default()
            })
            .await?;
        let next = format!("{session}~1");
        until(&mut events, "the replacement started", started(&next)).await?;
        to_replaced.push(killed.elapsed());
        drop(events);
        delete_session(&client, session).await?;
        agents[victim] = Agent::start(&masters, nodes[victim], &hook, args.interval_ms)?;
        wait_running(&client, nodes[victim]).await?;
    }

    println!(
        "3 masters, 2 agents, heartbeat every {} ms, node timeout {} ms",
        args.interval_ms, args.node_timeout_ms
    );
    let start = summary("StartRecording → started", &to_started);
    let replaced = summary("node SIGKILL → replacement recording started", &to_replaced);
    println!(
        "{}",
        serde_json::json!({
            "interval_ms": args.interval_ms,
            "node_timeout_ms": args.node_timeout_ms,
            "start_to_started": start,
            "crash_to_replacement_started": replaced,
        })
    );
    Ok(())
}
