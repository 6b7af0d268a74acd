//! `chorus dev`: a whole group of masters on loopback in one process.
//!
//! Every master gets its own sled database under one temporary directory, its own
//! ports chosen by the OS, and the same generated secrets. Ctrl-C stops them all
//! through the same graceful path as `chorus serve`, then removes the directory.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};

use crate::config::{Config, ServeArgs};
use crate::master::{self, Listeners};

/// Arguments of `chorus dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// How many masters to run (3 or 5 make sense; 1 works for experiments).
    #[arg(long, default_value_t = 3)]
    nodes: u64,
}

/// How long `dev` waits for the first leader before saying the group failed to form.
const FORMATION_DEADLINE: Duration = Duration::from_secs(30);

pub async fn run(args: DevArgs) -> Result<(), Box<dyn std::error::Error>> {
    if args.nodes == 0 || args.nodes > 9 {
        return Err("--nodes must be between 1 and 9".into());
    }
    let stopped = super::shutdown_signal();
    let dir = tempfile::Builder::new().prefix("chorus-dev-").tempdir()?;
    let secret = || Alphanumeric.sample_string(&mut rand::rng(), 32);
    let (api_secret, operator_secret, node_secret, cluster_secret) =
        (secret(), secret(), secret(), secret());

    let mut listeners = BTreeMap::new();
    for id in 1..=args.nodes {
        listeners.insert(id, Listeners::bind_loopback().await?);
    }
    let peers = listeners
        .iter()
        .map(|(id, l)| Ok(format!("{id}={}", l.peer_addr()?)))
        .collect::<std::io::Result<Vec<_>>>()?
        .join(",");
    let mut endpoints = Vec::new();
    let mut http = Vec::new();
    let mut starting = Vec::new();
    for (id, l) in listeners {
        // The same resolution as `chorus serve`, so dev runs with exactly its defaults.
        let config = Config::resolve(&ServeArgs {
            id: Some(id),
            client_addr: Some(l.client_addr()?.to_string()),
            http_addr: l.http_addr()?.map(|a| a.to_string()),
            peer_addr: Some(l.peer_addr()?.to_string()),
            peers: Some(peers.clone()),
            data_dir: Some(dir.path().join(format!("master-{id}"))),
            api_secret: Some(api_secret.clone()),
            operator_secret: Some(operator_secret.clone()),
            node_secret: Some(node_secret.clone()),
            cluster_secret: Some(cluster_secret.clone()),
            ..ServeArgs::default()
        })?;
        endpoints.push(config.client_addr.to_string());
        http.extend(config.http_addr);
        starting.push(master::Master::start(config, l));
    }
    // The masters find each other while starting, so they must start together.
    let masters = futures::future::try_join_all(starting).await?;

    // Print the endpoints only once every master knows the leader, so the first command
    // pasted into another terminal works whichever endpoint it reaches.
    let formed = futures::future::join_all(masters.iter().map(|m| m.wait_for_leader()));
    match tokio::time::timeout(FORMATION_DEADLINE, formed).await {
        Ok(leaders) => tracing::info!(leader = leaders[0], "dev cluster formed"),
        Err(_) => return Err("no leader elected within 30s".into()),
    }
    // Written, not println!'d: a reader that went away (`chorus dev | head -1`) must not
    // take the cluster down with a broken-pipe panic.
    // OPENVIDU_URL and OPENVIDU_SECRET are the names OpenVidu's tutorials read; any
    // master's HTTP port serves the REST API.
    let export = format!(
        "export CHORUS_ENDPOINTS={} CHORUS_API_SECRET={api_secret} \
         CHORUS_OPERATOR_SECRET={operator_secret} CHORUS_NODE_SECRET={node_secret} \
         OPENVIDU_URL=http://{} OPENVIDU_SECRET={api_secret}",
        endpoints.join(","),
        http.first().map(ToString::to_string).unwrap_or_default()
    );
    let _ = writeln!(std::io::stdout(), "{export}");
    tracing::info!(
        masters = masters.len(),
        dir = %dir.path().display(),
        "dev cluster running; Ctrl-C stops it"
    );

    // A master whose Raft failed could not rejoin without a restart: stop them all and
    // say so, as a supervisor of `chorus serve` would see it exit.
    let failure = {
        let failures = masters
            .iter()
            .map(|m| Box::pin(async move { (m.id(), m.raft_failure().await) }));
        tokio::select! {
            _ = stopped => None,
            ((id, reason), _, _) = futures::future::select_all(failures) => Some((id, reason)),
        }
    };
    // The whole group stops: no leadership handover, every master at once.
    futures::future::join_all(masters.into_iter().map(|m| m.stop(false))).await;
    match failure {
        None => Ok(()),
        Some((id, reason)) => Err(format!("master {id}: raft stopped: {reason}").into()),
    }
}
