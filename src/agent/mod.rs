//! `chorus agent`: the sidecar that runs next to a media server and speaks for it.
//!
//! It registers the node, then sends a heartbeat every interval carrying the host's CPU
//! load as measured from `/proc/stat` between two heartbeats. Calls go through the
//! typed client, so they follow the cluster across master failovers. A node removed
//! from the registry behind the agent's back is registered again.
//!
//! On shutdown (SIGTERM, Ctrl-C) it drains the node: WAITING_IDLE_TO_TERMINATE, so it
//! gets no new sessions, heartbeats going on while its sessions end; once it hosts
//! none (the cluster moves it to TERMINATING by itself), or the drain timeout passes,
//! it deregisters the node (forcing, in the second case, so the remaining sessions are
//! re-placed elsewhere) and exits.

mod cpu;
mod recorder;

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

pub use cpu::CpuLoad;
pub use recorder::Recorder;

use crate::api::pb;
use crate::client::Client;

/// What the agent says about its node.
#[derive(Debug, Clone)]
pub struct Node {
    /// The node's id in the registry.
    pub id: String,
    /// Where its media server listens.
    pub uri: String,
    /// The hosting environment's id for it.
    pub environment_id: String,
    /// Its CPU cores.
    pub cores: u32,
    /// Whether it records (the agent runs a recording hook).
    pub can_record: bool,
}

/// How the agent paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Between heartbeats.
    pub interval: Duration,
    /// Longest wait for the node's sessions to end when draining.
    pub drain_timeout: Duration,
}

/// Runs the agent for `node` until `shutdown`, then drains and deregisters it; with a
/// `recorder`, it runs the recording tasks the leader hands out.
pub async fn run(
    client: Client,
    node: Node,
    pacing: Pacing,
    mut recorder: Option<Recorder>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Status> {
    let mut cpu = CpuLoad::new();
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return Ok(()),
        registered = register(&client, &node) => { registered?; }
    }
    tracing::info!(node = %node.id, uri = %node.uri, "registered");
    let mut ticker = tokio::time::interval(pacing.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // A hook that finished is reported at once, not at the next tick.
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
            _ = hook_finished(&mut recorder) => {}
        }
        if let Err(status) = beat(&client, &node, cpu.sample(), recorder.as_mut()).await {
            tracing::warn!(node = %node.id, "heartbeat failed: {}", status.message());
        }
    }
    drain(&client, &node, &mut cpu, pacing, recorder).await
}

/// Resolves when a recording hook finishes; never without a recorder.
async fn hook_finished(recorder: &mut Option<Recorder>) {
    match recorder {
        Some(recorder) => recorder.finished().await,
        None => std::future::pending().await,
    }
}

/// Registers `node`; an identical registration already there is fine.
async fn register(client: &Client, node: &Node) -> Result<pb::MediaNode, Status> {
    client
        .register_media_node(pb::RegisterMediaNodeRequest {
            id: node.id.clone(),
            uri: node.uri.clone(),
            environment_id: node.environment_id.clone(),
            cores: node.cores,
            request_id: String::new(),
            can_record: node.can_record,
        })
        .await
}

/// One heartbeat, with the recorder's reports; registers the node again if the
/// registry forgot it. Hands the answer's tasks to the recorder; the node's status.
async fn beat(
    client: &Client,
    node: &Node,
    load: f64,
    recorder: Option<&mut Recorder>,
) -> Result<String, Status> {
    let request = pb::HeartbeatRequest {
        node_id: node.id.clone(),
        load,
        reports: recorder.as_ref().map(|r| r.reports()).unwrap_or_default(),
    };
    let reply = match client.heartbeat(request.clone()).await {
        Ok(reply) => reply,
        Err(status) if status.code() == Code::NotFound => {
            tracing::warn!(node = %node.id, "the registry forgot this node; registering again");
            register(client, node).await?;
            client.heartbeat(request).await?
        }
        Err(status) => return Err(status),
    };
    if let Some(recorder) = recorder {
        recorder.take_tasks(&reply.tasks);
    }
    Ok(reply.status)
}

/// Drains the node, waits (heartbeating) for its sessions to end and its recordings to
/// be finished, then deregisters.
async fn drain(
    client: &Client,
    node: &Node,
    cpu: &mut CpuLoad,
    pacing: Pacing,
    mut recorder: Option<Recorder>,
) -> Result<(), Status> {
    let current = client
        .get_media_node(pb::GetMediaNodeRequest {
            id: node.id.clone(),
            consistency: pb::Consistency::Linearizable as i32,
        })
        .await?;
    if current.status == "RUNNING" {
        tracing::info!(node = %node.id, sessions = current.session_ids.len(), "draining");
        client
            .set_media_node_status(pb::SetMediaNodeStatusRequest {
                id: node.id.clone(),
                status: "WAITING_IDLE_TO_TERMINATE".into(),
                request_id: String::new(),
            })
            .await?;
    }
    let deadline = tokio::time::Instant::now() + pacing.drain_timeout;
    let mut ticker = tokio::time::interval(pacing.interval);
    let emptied = loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = hook_finished(&mut recorder) => {}
        }
        match beat(client, node, cpu.sample(), recorder.as_mut()).await {
            Ok(status)
                if status != "WAITING_IDLE_TO_TERMINATE"
                    && recorder.as_ref().is_none_or(Recorder::is_idle) =>
            {
                break true;
            }
            Ok(_) => {}
            Err(status) => {
                tracing::warn!(node = %node.id, "heartbeat failed: {}", status.message())
            }
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
    };
    if !emptied {
        tracing::warn!(
            node = %node.id,
            timeout = ?pacing.drain_timeout,
            "sessions still running at the drain timeout; they will be re-placed"
        );
    }
    let gone = client
        .deregister_media_node(pb::DeregisterMediaNodeRequest {
            id: node.id.clone(),
            force: !emptied,
            request_id: String::new(),
        })
        .await?;
    tracing::info!(
        node = %node.id,
        displaced = gone.displaced_session_ids.len(),
        "deregistered"
    );
    Ok(())
}
