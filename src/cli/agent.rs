//! `chorus agent`: the media-node sidecar (see [`crate::agent`]).

use std::time::Duration;

use clap::Args;
use tonic::Status;

use super::client::{Endpoints, secret_from};
use crate::agent::{Node, Pacing};

/// Arguments of `chorus agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    #[command(flatten)]
    endpoints: Endpoints,
    /// The node's token (`chorus node token ID`), presented instead of --api-secret:
    /// it opens this node's registration and heartbeats only.
    #[arg(long, env = "CHORUS_NODE_TOKEN", hide_env_values = true)]
    node_token: Option<String>,
    /// File holding the node's token; used over --node-token.
    #[arg(long, env = "CHORUS_NODE_TOKEN_FILE")]
    node_token_file: Option<std::path::PathBuf>,
    /// The media node's id in the registry.
    #[arg(long, env = "CHORUS_NODE_ID")]
    node_id: String,
    /// Where its media server listens (e.g. ws://10.0.0.5:8888/kurento).
    #[arg(long, env = "CHORUS_NODE_URI")]
    uri: String,
    /// The hosting environment's id for the node (a cloud instance id, say).
    #[arg(long, default_value = "")]
    environment_id: String,
    /// CPU cores to declare; default: those of this host.
    #[arg(long)]
    cores: Option<u32>,
    /// Milliseconds between heartbeats.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Seconds to wait for the node's sessions to end when stopping, before they are
    /// moved elsewhere.
    #[arg(long, default_value_t = 300)]
    drain_timeout_secs: u64,
    /// The program that records on this node: run as `PATH start|stop RECORDING_ID
    /// SESSION_ID`; `stop` may print `{"size": …, "duration": …, "url": …}`. Without
    /// it the node cannot record.
    #[arg(long, env = "CHORUS_RECORDING_HOOK")]
    recording_hook: Option<std::path::PathBuf>,
}

impl AgentArgs {
    pub async fn run(self) -> Result<(), Status> {
        if self.interval_ms == 0 {
            return Err(Status::invalid_argument("--interval-ms must be positive"));
        }
        let client = match secret_from(&self.node_token, &self.node_token_file)? {
            Some(token) => self.endpoints.client_presenting(&token)?,
            None => self.endpoints.operator_client()?,
        };
        let cores = self
            .cores
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
        if let Some(hook) = &self.recording_hook
            && !hook.is_file()
        {
            return Err(Status::invalid_argument(format!(
                "--recording-hook: {} is not a file",
                hook.display()
            )));
        }
        let node = Node {
            id: self.node_id,
            uri: self.uri,
            environment_id: self.environment_id,
            cores,
            can_record: self.recording_hook.is_some(),
        };
        let recorder = self.recording_hook.map(crate::agent::Recorder::new);
        let pacing = Pacing {
            interval: Duration::from_millis(self.interval_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
        };
        crate::agent::run(client, node, pacing, recorder, super::shutdown_signal()).await
    }
}
