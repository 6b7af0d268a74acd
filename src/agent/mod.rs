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

use std::future::Future;
use std::time::Duration;

use tonic::{Code, Status};

pub use cpu::CpuLoad;

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
}

/// How the agent paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Between heartbeats.
    pub interval: Duration,
    /// Longest wait for the node's sessions to end when draining.
    pub drain_timeout: Duration,
}

/// Runs the agent for `node` until `shutdown`, then drains and deregisters it.
pub async fn run(
    client: Client,
    node: Node,
    pacing: Pacing,
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
        tokio::select! {
            _ = &mut shutdown => break,
            _ = ticker.tick() => {}
        }
        if let Err(status) = beat(&client, &node, cpu.sample()).await {
            tracing::warn!(node = %node.id, "heartbeat failed: {}", status.message());
        }
    }
    drain(&client, &node, &mut cpu, pacing).await
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
        })
        .await
}

/// One heartbeat; registers the node again if the registry forgot it.
async fn beat(client: &Client, node: &Node, load: f64) -> Result<String, Status> {
    let request = pb::HeartbeatRequest {
        node_id: node.id.clone(),
        load,
    };
    match client.heartbeat(request.clone()).await {
        Ok(reply) => Ok(reply.status),
        Err(status) if status.code() == Code::NotFound => {
            tracing::warn!(node = %node.id, "the registry forgot this node; registering again");
            register(client, node).await?;
            client.heartbeat(request).await.map(|reply| reply.status)
        }
        Err(status) => Err(status),
    }
}

/// Drains the node, waits (heartbeating) for its sessions to end, then deregisters.
async fn drain(
    client: &Client,
    node: &Node,
    cpu: &mut CpuLoad,
    pacing: Pacing,
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
        ticker.tick().await;
        match beat(client, node, cpu.sample()).await {
            Ok(status) if status != "WAITING_IDLE_TO_TERMINATE" => break true,
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
