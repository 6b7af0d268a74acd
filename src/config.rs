//! One typed, validated configuration for a master.
//!
//! Values come, lowest precedence first, from the defaults below, a TOML file
//! (`--config`, same keys as the flags with `_` for `-`), `CHORUS_*` environment variables
//! and command-line flags. [`ServeArgs`] is the flag/env layer and [`FileConfig`] the
//! file layer; [`Config::resolve`] merges them and validates the result once, so the rest
//! of the program never sees a half-checked value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::fleet::Policy;
use crate::license::{LicenseConfig, Source};
use crate::state::{Limits, TrustPolicy};

/// A configuration that cannot run, with the key that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: `{key}` {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("config: cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config: {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
}

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Everything a master needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// This master's Raft node id (non-zero).
    pub id: u64,
    /// Where the public gRPC API listens.
    pub client_addr: SocketAddr,
    /// Where Raft traffic and forwarding between masters listens.
    pub peer_addr: SocketAddr,
    /// The address the other masters reach this one at, when it differs from
    /// `peer_addr` (behind NAT or a proxy); `peers` must list this one for this master.
    pub advertise_peer_addr: Option<String>,
    /// Peer addresses of the voters that form the group at first start, by node id.
    pub peers: BTreeMap<u64, String>,
    /// Directory of this master's sled database.
    pub data_dir: PathBuf,
    /// Bearer secret clients present on the client port.
    pub api_secret: String,
    /// Secret masters present to each other on the peer port.
    pub cluster_secret: String,
    /// Interval between the leader's heartbeats.
    pub heartbeat_interval: Duration,
    /// Lower bound of the randomized election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomized election timeout.
    pub election_timeout_max: Duration,
    /// Build a snapshot once this many entries were applied since the last one.
    pub snapshot_logs_since_last: u64,
    /// Largest gRPC message accepted or sent, on both ports.
    pub max_message_bytes: usize,
    /// Limits the leader stamps into the commands it proposes.
    pub limits: Limits,
    /// A RUNNING media node silent for this long is declared CRASHED.
    pub node_timeout: Duration,
    /// Autoscaling knobs; `None` when autoscaling advice is off.
    pub autoscaling: Option<Policy>,
    /// License checks; `None` when no license is configured (the status stays VALID).
    pub license: Option<LicenseConfig>,
}

/// Defaults: the timings suit masters on one LAN; the limits suit a mid-sized cluster.
pub mod defaults {
    /// Heartbeats every 50 ms keep followers' election timers far from firing.
    pub const HEARTBEAT_MS: u64 = 50;
    /// A follower campaigns once the leader's lease (openraft sets it to the maximum
    /// timeout) and then its own randomized timeout have passed in silence: 300 ms +
    /// 150–300 ms, so a dead leader is replaced 450–600 ms after its last heartbeat, with
    /// five missed heartbeats before anyone gives up.
    pub const ELECTION_TIMEOUT_MIN_MS: u64 = 150;
    pub const ELECTION_TIMEOUT_MAX_MS: u64 = 300;
    /// Snapshot every 100k entries, etcd's default `--snapshot-count`: a snapshot
    /// encodes the whole state while applies wait (about 0.8 s at 1M connections), so it
    /// must be rare; a restart replays at most this many entries.
    pub const SNAPSHOT_LOGS_SINCE_LAST: u64 = 100_000;
    /// 64 MiB: large enough for a batch of appends, small enough to bound memory.
    pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
    pub const MAX_SESSIONS: u32 = 100_000;
    pub const MAX_CONNECTIONS_PER_SESSION: u32 = 1_000;
    /// OpenVidu caps `data` fields at 10 KB in practice; 16 KiB leaves room.
    pub const MAX_DATA_BYTES: u32 = 16 * 1024;
    /// Autoscaling as OpenVidu Pro ships it: off, one to two nodes, load 30–70 %.
    pub const AUTOSCALING: bool = false;
    pub const AUTOSCALING_MIN_NODES: u32 = 1;
    pub const AUTOSCALING_MAX_NODES: u32 = 2;
    pub const AUTOSCALING_MIN_LOAD: f64 = 30.0;
    pub const AUTOSCALING_MAX_LOAD: f64 = 70.0;
    /// A license check every 5 minutes.
    pub const LICENSE_CHECK_INTERVAL_MS: u64 = 5 * 60 * 1000;
    /// Up to a day of trust at one check every 5 minutes...
    pub const LICENSE_TRUST_CAP: u32 = 288;
    /// ...and half an hour of authority outage tolerated before any trust is earned.
    pub const LICENSE_BASE_ALLOWANCE: u32 = 6;
    /// Five seconds of silence: several missed heartbeats of an agent sending one a
    /// second, short enough that participants are moved before they give up.
    pub const NODE_TIMEOUT_MS: u64 = 5_000;
}

/// The file layer: every key optional, the same names as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub id: Option<u64>,
    pub client_addr: Option<String>,
    pub peer_addr: Option<String>,
    pub advertise_peer_addr: Option<String>,
    pub peers: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub api_secret: Option<String>,
    pub cluster_secret: Option<String>,
    pub heartbeat_ms: Option<u64>,
    pub election_timeout_min_ms: Option<u64>,
    pub election_timeout_max_ms: Option<u64>,
    pub snapshot_logs_since_last: Option<u64>,
    pub max_message_bytes: Option<usize>,
    pub max_sessions: Option<u32>,
    pub max_connections_per_session: Option<u32>,
    pub max_data_bytes: Option<u32>,
    pub node_timeout_ms: Option<u64>,
    pub autoscaling: Option<bool>,
    pub autoscaling_min_nodes: Option<u32>,
    pub autoscaling_max_nodes: Option<u32>,
    pub autoscaling_min_load: Option<f64>,
    pub autoscaling_max_load: Option<f64>,
    pub license_key: Option<String>,
    pub license_authority: Option<String>,
    pub license_file: Option<PathBuf>,
    pub license_public_key: Option<String>,
    pub license_check_interval_ms: Option<u64>,
    pub license_trust_cap: Option<u32>,
    pub license_base_allowance: Option<u32>,
    pub license_master_cores: Option<u32>,
}

impl FileConfig {
    /// Reads and parses a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

/// The flag and environment layer of `chorus serve`.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ServeArgs {
    /// TOML file with the same keys as these flags.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    /// This master's node id (non-zero).
    #[arg(long, env = "CHORUS_ID")]
    pub id: Option<u64>,
    /// Client API listen address, host:port.
    #[arg(long, env = "CHORUS_CLIENT_ADDR")]
    pub client_addr: Option<String>,
    /// Peer (Raft) listen address, host:port.
    #[arg(long, env = "CHORUS_PEER_ADDR")]
    pub peer_addr: Option<String>,
    /// The address other masters reach this one at, if not peer_addr (NAT, proxy).
    #[arg(long, env = "CHORUS_ADVERTISE_PEER_ADDR")]
    pub advertise_peer_addr: Option<String>,
    /// Peer addresses of all voters: 1=host:port,2=host:port,...
    #[arg(long, env = "CHORUS_PEERS")]
    pub peers: Option<String>,
    /// Data directory.
    #[arg(long, env = "CHORUS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Secret clients present as `authorization: Bearer <secret>`.
    #[arg(long, env = "CHORUS_API_SECRET", hide_env_values = true)]
    pub api_secret: Option<String>,
    /// Secret masters present to each other.
    #[arg(long, env = "CHORUS_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Leader heartbeat interval, milliseconds.
    #[arg(long, env = "CHORUS_HEARTBEAT_MS")]
    pub heartbeat_ms: Option<u64>,
    /// Minimum election timeout, milliseconds.
    #[arg(long, env = "CHORUS_ELECTION_TIMEOUT_MIN_MS")]
    pub election_timeout_min_ms: Option<u64>,
    /// Maximum election timeout, milliseconds.
    #[arg(long, env = "CHORUS_ELECTION_TIMEOUT_MAX_MS")]
    pub election_timeout_max_ms: Option<u64>,
    /// Entries applied since the last snapshot that trigger a new one.
    #[arg(long, env = "CHORUS_SNAPSHOT_LOGS_SINCE_LAST")]
    pub snapshot_logs_since_last: Option<u64>,
    /// Largest gRPC message, bytes.
    #[arg(long, env = "CHORUS_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Most sessions the cluster holds.
    #[arg(long, env = "CHORUS_MAX_SESSIONS")]
    pub max_sessions: Option<u32>,
    /// Most connections one session holds.
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS_PER_SESSION")]
    pub max_connections_per_session: Option<u32>,
    /// Largest server_data / client_data, bytes.
    #[arg(long, env = "CHORUS_MAX_DATA_BYTES")]
    pub max_data_bytes: Option<u32>,
    /// A RUNNING media node silent this long is CRASHED, ms.
    #[arg(long, env = "CHORUS_NODE_TIMEOUT_MS")]
    pub node_timeout_ms: Option<u64>,
    /// Give autoscaling advice (true/false).
    #[arg(long, env = "CHORUS_AUTOSCALING")]
    pub autoscaling: Option<bool>,
    /// Autoscaling: fewest media nodes to keep running.
    #[arg(long, env = "CHORUS_AUTOSCALING_MIN_NODES")]
    pub autoscaling_min_nodes: Option<u32>,
    /// Autoscaling: most media nodes to run.
    #[arg(long, env = "CHORUS_AUTOSCALING_MAX_NODES")]
    pub autoscaling_max_nodes: Option<u32>,
    /// Autoscaling: average CPU load (%) under which nodes are drained.
    #[arg(long, env = "CHORUS_AUTOSCALING_MIN_LOAD")]
    pub autoscaling_min_load: Option<f64>,
    /// Autoscaling: average CPU load (%) over which nodes are launched.
    #[arg(long, env = "CHORUS_AUTOSCALING_MAX_LOAD")]
    pub autoscaling_max_load: Option<f64>,
    /// Online licensing: the license key.
    #[arg(long, env = "CHORUS_LICENSE_KEY", hide_env_values = true)]
    pub license_key: Option<String>,
    /// Online licensing: the license authority, host:port.
    #[arg(long, env = "CHORUS_LICENSE_AUTHORITY")]
    pub license_authority: Option<String>,
    /// Offline licensing: the signed license file.
    #[arg(long, env = "CHORUS_LICENSE_FILE")]
    pub license_file: Option<PathBuf>,
    /// Offline licensing: the licensor's Ed25519 public key, hex.
    #[arg(long, env = "CHORUS_LICENSE_PUBLIC_KEY")]
    pub license_public_key: Option<String>,
    /// Time between license checks, ms.
    #[arg(long, env = "CHORUS_LICENSE_CHECK_INTERVAL_MS")]
    pub license_check_interval_ms: Option<u64>,
    /// Most trust points successful checks earn.
    #[arg(long, env = "CHORUS_LICENSE_TRUST_CAP")]
    pub license_trust_cap: Option<u32>,
    /// Failed checks tolerated without any trust.
    #[arg(long, env = "CHORUS_LICENSE_BASE_ALLOWANCE")]
    pub license_base_allowance: Option<u32>,
    /// Cores each master counts for in usage and core limits; default: this host's.
    #[arg(long, env = "CHORUS_LICENSE_MASTER_CORES")]
    pub license_master_cores: Option<u32>,
}

/// The license settings: online (key and authority), offline (file and public key),
/// or none. Halves of a pair alone, or both modes at once, are refused.
fn license(args: &ServeArgs, file: &FileConfig) -> Result<Option<LicenseConfig>, ConfigError> {
    macro_rules! pick {
        ($key:ident) => {
            args.$key.clone().or(file.$key.clone())
        };
    }
    let source = match (
        pick!(license_key),
        pick!(license_authority),
        pick!(license_file),
        pick!(license_public_key),
    ) {
        (None, None, None, None) => return Ok(None),
        (Some(key), Some(authority), None, None) => {
            let authority = crate::license::authority::uri(&authority)
                .map_err(|e| invalid("license_authority", e))?;
            Source::Online { key, authority }
        }
        (None, None, Some(file), Some(public_key)) => Source::Offline { file, public_key },
        (Some(_), None, None, None) => {
            return Err(invalid("license_authority", "is required with license_key"));
        }
        (None, Some(_), None, None) => {
            return Err(invalid("license_key", "is required with license_authority"));
        }
        (None, None, Some(_), None) => {
            return Err(invalid(
                "license_public_key",
                "is required with license_file",
            ));
        }
        (None, None, None, Some(_)) => {
            return Err(invalid(
                "license_file",
                "is required with license_public_key",
            ));
        }
        _ => {
            return Err(invalid(
                "license_key",
                "choose online (license_key, license_authority) or offline (license_file, \
                 license_public_key) licensing, not both",
            ));
        }
    };
    let interval = pick!(license_check_interval_ms).unwrap_or(defaults::LICENSE_CHECK_INTERVAL_MS);
    if interval < 100 {
        return Err(invalid("license_check_interval_ms", "must be at least 100"));
    }
    let master_cores = pick!(license_master_cores)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    if master_cores == 0 {
        return Err(invalid("license_master_cores", "must be at least 1"));
    }
    Ok(Some(LicenseConfig {
        source,
        policy: TrustPolicy {
            trust_cap: pick!(license_trust_cap).unwrap_or(defaults::LICENSE_TRUST_CAP),
            base_allowance: pick!(license_base_allowance)
                .unwrap_or(defaults::LICENSE_BASE_ALLOWANCE),
        },
        check_interval: Duration::from_millis(interval),
        master_cores,
    }))
}

impl Config {
    /// Merges defaults, the file named by `--config` (if any), and the flag/env layer,
    /// then validates.
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        macro_rules! pick {
            ($key:ident) => {
                args.$key.clone().or(file.$key.clone())
            };
        }
        let id = pick!(id).ok_or_else(|| invalid("id", "is required"))?;
        let client_addr = parse_addr("client_addr", pick!(client_addr))?;
        let peer_addr = parse_addr("peer_addr", pick!(peer_addr))?;
        let peers = match pick!(peers) {
            Some(text) => parse_peers(&text)?,
            None => BTreeMap::new(),
        };
        let config = Config {
            id,
            client_addr,
            peer_addr,
            advertise_peer_addr: pick!(advertise_peer_addr),
            peers,
            data_dir: pick!(data_dir).ok_or_else(|| invalid("data_dir", "is required"))?,
            api_secret: pick!(api_secret).ok_or_else(|| invalid("api_secret", "is required"))?,
            cluster_secret: pick!(cluster_secret)
                .ok_or_else(|| invalid("cluster_secret", "is required"))?,
            heartbeat_interval: Duration::from_millis(
                pick!(heartbeat_ms).unwrap_or(defaults::HEARTBEAT_MS),
            ),
            election_timeout_min: Duration::from_millis(
                pick!(election_timeout_min_ms).unwrap_or(defaults::ELECTION_TIMEOUT_MIN_MS),
            ),
            election_timeout_max: Duration::from_millis(
                pick!(election_timeout_max_ms).unwrap_or(defaults::ELECTION_TIMEOUT_MAX_MS),
            ),
            snapshot_logs_since_last: pick!(snapshot_logs_since_last)
                .unwrap_or(defaults::SNAPSHOT_LOGS_SINCE_LAST),
            max_message_bytes: pick!(max_message_bytes).unwrap_or(defaults::MAX_MESSAGE_BYTES),
            limits: Limits {
                max_sessions: pick!(max_sessions).unwrap_or(defaults::MAX_SESSIONS),
                max_connections_per_session: pick!(max_connections_per_session)
                    .unwrap_or(defaults::MAX_CONNECTIONS_PER_SESSION),
                max_data_bytes: pick!(max_data_bytes).unwrap_or(defaults::MAX_DATA_BYTES),
            },
            node_timeout: Duration::from_millis(
                pick!(node_timeout_ms).unwrap_or(defaults::NODE_TIMEOUT_MS),
            ),
            autoscaling: pick!(autoscaling)
                .unwrap_or(defaults::AUTOSCALING)
                .then(|| Policy {
                    min_nodes: pick!(autoscaling_min_nodes)
                        .unwrap_or(defaults::AUTOSCALING_MIN_NODES),
                    max_nodes: pick!(autoscaling_max_nodes)
                        .unwrap_or(defaults::AUTOSCALING_MAX_NODES),
                    min_load: pick!(autoscaling_min_load).unwrap_or(defaults::AUTOSCALING_MIN_LOAD),
                    max_load: pick!(autoscaling_max_load).unwrap_or(defaults::AUTOSCALING_MAX_LOAD),
                }),
            license: license(args, &file)?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the relations between values that parsing alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(invalid("id", "must be non-zero"));
        }
        // A master missing from `peers` is allowed: it is a joiner that starts empty and
        // waits to be added as a learner.
        if let Some(addr) = self.peers.get(&self.id) {
            let listed: Option<SocketAddr> = addr.parse().ok();
            let mismatch = match &self.advertise_peer_addr {
                Some(advertised) => advertised != addr,
                None => listed.is_some_and(|listed| listed.port() != self.peer_addr.port()),
            };
            if mismatch {
                return Err(invalid(
                    "peers",
                    format!(
                        "lists {addr} for this master (id {}) but it is reached at {}",
                        self.id,
                        self.advertise_peer_addr
                            .clone()
                            .unwrap_or_else(|| self.peer_addr.to_string())
                    ),
                ));
            }
        }
        for (key, secret) in [
            ("api_secret", &self.api_secret),
            ("cluster_secret", &self.cluster_secret),
        ] {
            if secret.len() < 8 {
                return Err(invalid(key, "must be at least 8 characters"));
            }
        }
        if let Some(policy) = &self.autoscaling {
            if policy.max_nodes == 0 || policy.min_nodes > policy.max_nodes {
                return Err(invalid(
                    "autoscaling_max_nodes",
                    "must be at least 1 and at least autoscaling_min_nodes",
                ));
            }
            let in_range = |load: f64| (0.0..=100.0).contains(&load);
            if !in_range(policy.min_load)
                || !in_range(policy.max_load)
                || policy.min_load >= policy.max_load
            {
                return Err(invalid(
                    "autoscaling_max_load",
                    "loads are percentages with autoscaling_min_load < autoscaling_max_load",
                ));
            }
        }
        if self.node_timeout < Duration::from_millis(100) {
            return Err(invalid("node_timeout_ms", "must be at least 100"));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(invalid("heartbeat_ms", "must be positive"));
        }
        if self.election_timeout_min <= self.heartbeat_interval {
            return Err(invalid(
                "election_timeout_min_ms",
                "must exceed heartbeat_ms",
            ));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return Err(invalid(
                "election_timeout_max_ms",
                "must exceed election_timeout_min_ms",
            ));
        }
        if self.snapshot_logs_since_last == 0 {
            return Err(invalid("snapshot_logs_since_last", "must be positive"));
        }
        // A snapshot chunk (1 MiB) and a full append batch must fit in one message.
        if self.max_message_bytes < 4 * 1024 * 1024 {
            return Err(invalid(
                "max_message_bytes",
                "must be at least 4194304 (4 MiB)",
            ));
        }
        if self.limits.max_sessions == 0 || self.limits.max_connections_per_session == 0 {
            return Err(invalid(
                "max_sessions",
                "limits must be positive (max_sessions, max_connections_per_session)",
            ));
        }
        Ok(())
    }
}

fn parse_addr(key: &'static str, value: Option<String>) -> Result<SocketAddr, ConfigError> {
    let value = value.ok_or_else(|| invalid(key, "is required"))?;
    value
        .parse()
        .map_err(|e| invalid(key, format!("is not host:port ({value}): {e}")))
}

/// Parses `1=host:port,2=host:port`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| invalid("peers", format!("entry `{item}` is not id=host:port")))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| invalid("peers", format!("entry `{item}` has a bad id")))?;
        if id == 0 {
            return Err(invalid("peers", "node ids must be non-zero"));
        }
        let addr = addr.trim();
        if addr.parse::<SocketAddr>().is_err() && !addr.contains(':') {
            return Err(invalid("peers", format!("entry `{item}` has no port")));
        }
        if peers.insert(id, addr.to_owned()).is_some() {
            return Err(invalid("peers", format!("node {id} is listed twice")));
        }
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ServeArgs {
        ServeArgs {
            id: Some(1),
            client_addr: Some("127.0.0.1:7000".into()),
            peer_addr: Some("127.0.0.1:7100".into()),
            peers: Some("1=127.0.0.1:7100,2=127.0.0.1:7101".into()),
            data_dir: Some("/tmp/x".into()),
            api_secret: Some("api-secret".into()),
            cluster_secret: Some("cluster-secret".into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_fill_what_flags_leave_out() {
        let config = Config::resolve(&args()).unwrap();
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(config.limits.max_sessions, defaults::MAX_SESSIONS);
    }

    #[test]
    fn file_is_overridden_by_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chorus.toml");
        std::fs::write(&path, "heartbeat_ms = 70\nid = 9\nmax_sessions = 5\n").unwrap();
        let mut a = args();
        a.config = Some(path);
        let config = Config::resolve(&a).unwrap();
        assert_eq!(config.id, 1, "flag wins over file");
        assert_eq!(config.heartbeat_interval, Duration::from_millis(70));
        assert_eq!(config.limits.max_sessions, 5);
    }

    #[test]
    fn bad_values_name_their_key() {
        type Mutation = fn(&mut ServeArgs);
        let cases: Vec<(Mutation, &str)> = vec![
            (|a| a.id = Some(0), "`id`"),
            (|a| a.client_addr = Some("nope".into()), "`client_addr`"),
            (|a| a.peers = Some("1=a:1,1=b:2".into()), "`peers`"),
            (|a| a.peers = Some("x=a:1".into()), "`peers`"),
            (|a| a.api_secret = Some("short".into()), "`api_secret`"),
            (
                |a| a.election_timeout_max_ms = Some(100),
                "`election_timeout_max_ms`",
            ),
            (|a| a.data_dir = None, "`data_dir`"),
            (|a| a.node_timeout_ms = Some(5), "`node_timeout_ms`"),
            (|a| a.license_key = Some("k".into()), "`license_authority`"),
            (
                |a| {
                    a.license_key = Some("k".into());
                    a.license_authority = Some("bad host:1".into());
                },
                "`license_authority`",
            ),
            (
                |a| a.license_file = Some("l.json".into()),
                "`license_public_key`",
            ),
            (
                |a| {
                    a.license_key = Some("k".into());
                    a.license_authority = Some("127.0.0.1:1".into());
                    a.license_file = Some("l.json".into());
                },
                "not both",
            ),
            (
                |a| {
                    a.autoscaling = Some(true);
                    a.autoscaling_min_nodes = Some(3);
                    a.autoscaling_max_nodes = Some(2);
                },
                "`autoscaling_max_nodes`",
            ),
        ];
        for (mutate, key) in cases {
            let mut a = args();
            mutate(&mut a);
            let err = Config::resolve(&a).unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn a_license_is_online_or_offline_with_its_policy() {
        let mut a = args();
        assert_eq!(Config::resolve(&a).unwrap().license, None);
        a.license_key = Some("KEY".into());
        a.license_authority = Some("127.0.0.1:9".into());
        a.license_trust_cap = Some(5);
        let license = Config::resolve(&a).unwrap().license.unwrap();
        assert_eq!(license.source.mode(), "online");
        assert_eq!(license.policy.trust_cap, 5);
        assert_eq!(
            license.policy.base_allowance,
            defaults::LICENSE_BASE_ALLOWANCE
        );
        assert_eq!(
            license.check_interval,
            Duration::from_millis(defaults::LICENSE_CHECK_INTERVAL_MS)
        );
        // An address no client could dial is refused here, not at the first check.
        a.license_authority = Some("not a host:port".into());
        assert!(matches!(
            Config::resolve(&a),
            Err(ConfigError::Invalid {
                key: "license_authority",
                ..
            })
        ));
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chorus.toml");
        std::fs::write(&path, "hearbeat_ms = 70\n").unwrap();
        let mut a = args();
        a.config = Some(path);
        assert!(matches!(
            Config::resolve(&a),
            Err(ConfigError::Parse { .. })
        ));
    }
}
