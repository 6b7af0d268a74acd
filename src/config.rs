//! One typed, validated configuration for a master.
//!
//! Values come, lowest precedence first, from defaults, a TOML file (`--config`, same
//! keys as the flags with `_` for `-`), `CHORUS_*` environment variables and
//! command-line flags. Each key is declared once, in the `settings!` list below, with
//! its type, default, variable and help; the flag/env layer [`ServeArgs`] and the file
//! layer [`FileConfig`] are derived from it. [`Config::resolve`] merges the layers and
//! validates the result once, so the rest of the program never sees a half-checked
//! value.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::events::Retention;
use crate::events::webhook::WebhookConfig;
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

/// The largest `max_data_bytes`: a quarter of the largest log entry
/// ([`crate::raft::MAX_ENTRY_BYTES`]), so that any entry fits with room to spare.
const MAX_DATA_BYTES: u32 = 256 * 1024;
const _: () = assert!(MAX_DATA_BYTES as usize * 4 <= crate::raft::MAX_ENTRY_BYTES);

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
    /// The HTTP port's address, if it is served.
    pub http_addr: Option<SocketAddr>,
    /// Where Raft traffic and forwarding between masters listens.
    pub peer_addr: SocketAddr,
    /// The address the other masters reach this one at, when it differs from
    /// `peer_addr` (behind NAT or a proxy); `peers` must list this one for this master.
    pub advertise_peer_addr: Option<String>,
    /// Peer addresses of the voters that form the group at first start, by node id.
    pub peers: BTreeMap<u64, String>,
    /// Directory of this master's sled database.
    pub data_dir: PathBuf,
    /// The application secret: sessions, connections and reads on the client port.
    pub api_secret: String,
    /// The operator secret: everything on the client port, membership included.
    pub operator_secret: String,
    /// The key of media-node tokens; `None`: no token is accepted.
    pub node_secret: Option<String>,
    /// Secret masters present to each other on the peer port.
    pub cluster_secret: String,
    /// TLS on the client port; `None`: plain.
    pub tls: Option<crate::tls::ServerFiles>,
    /// Mutual TLS on the peer port (`client_ca` is the peer CA); `None`: plain.
    pub peer_tls: Option<crate::tls::ServerFiles>,
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
    /// Most client-port connections open at once.
    pub max_client_connections: usize,
    /// Most concurrent calls on one client connection.
    pub max_streams_per_connection: u32,
    /// Most Health.Watch streams open at once.
    pub max_watch_streams: usize,
    /// Limits the leader stamps into the commands it proposes.
    pub limits: Limits,
    /// A RUNNING media node silent for this long is declared CRASHED.
    pub node_timeout: Duration,
    /// Autoscaling knobs; `None` when autoscaling advice is off.
    pub autoscaling: Option<Policy>,
    /// License checks; `None` when no license is configured (the status stays VALID).
    pub license: Option<LicenseConfig>,
    /// How many events are kept, and how long.
    pub event_retention: Retention,
    /// Most EventService.Watch streams open at once.
    pub max_event_watches: usize,
    /// Where events are POSTed; `None` when no webhook is configured.
    pub webhook: Option<WebhookConfig>,
}

/// Declares every key of `chorus serve` once, as `name: type [= default], "ENV_VAR"
/// [, secret];` under its help text, and derives from that one list the flag and
/// environment layer ([`ServeArgs`], clap), the file layer ([`FileConfig`], serde, the
/// same names) and the merged layer (`Settings`: flag or environment over file over
/// default; keys without a default stay optional). A new key is one entry here and its
/// use in [`Config::resolve`].
macro_rules! settings {
    ($(
        $(#[doc = $doc:literal])*
        $key:ident: $ty:ty $(= $default:expr)?, $env:literal $(, $secret:ident)?;
    )*) => {
        /// The flag and environment layer of `chorus serve`.
        #[derive(Debug, Default, Clone, clap::Args)]
        pub struct ServeArgs {
            /// TOML file with the same keys as these flags.
            #[arg(long, env = "CHORUS_CONFIG")]
            pub config: Option<PathBuf>,
            $(
                $(#[doc = $doc])*
                #[arg(long, env = $env, hide_env_values = settings!(@hidden $($secret)?))]
                pub $key: Option<$ty>,
            )*
        }

        /// The file layer: every key optional, the same names as the flags.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct FileConfig {
            $(pub $key: Option<$ty>,)*
        }

        /// Every key with its layers merged, before validation.
        struct Settings {
            $($key: settings!(@type $ty $(, $default)?),)*
        }

        impl Settings {
            fn merge(args: &ServeArgs, file: FileConfig) -> Settings {
                Settings {
                    $($key: settings!(@value args.$key.clone().or(file.$key) $(, $default)?),)*
                }
            }
        }
    };
    (@type $ty:ty, $default:expr) => { $ty };
    (@type $ty:ty) => { Option<$ty> };
    (@value $value:expr, $default:expr) => { $value.unwrap_or($default) };
    (@value $value:expr) => { $value };
    (@hidden secret) => { true };
    (@hidden) => { false };
}

settings! {
    /// This master's node id (non-zero).
    id: u64, "CHORUS_ID";
    /// Client API listen address, host:port.
    client_addr: String, "CHORUS_CLIENT_ADDR";
    /// HTTP listen address, host:port: the OpenVidu REST API (`/openvidu/api/`) and the
    /// probes (`/livez`, `/readyz`). Off unless given.
    http_addr: String, "CHORUS_HTTP_ADDR";
    /// Peer (Raft) listen address, host:port.
    peer_addr: String, "CHORUS_PEER_ADDR";
    /// The address other masters reach this one at, if not peer_addr (NAT, proxy).
    advertise_peer_addr: String, "CHORUS_ADVERTISE_PEER_ADDR";
    /// Peer addresses of all voters: 1=host:port,2=host:port,...
    peers: String, "CHORUS_PEERS";
    /// Data directory.
    data_dir: PathBuf, "CHORUS_DATA_DIR";
    /// Application secret: sessions, connections, reads (`authorization: Bearer <secret>`).
    api_secret: String, "CHORUS_API_SECRET", secret;
    /// File holding the application secret (keeps it out of `ps`).
    api_secret_file: PathBuf, "CHORUS_API_SECRET_FILE";
    /// Operator secret: membership, leadership transfer, snapshots, and everything else.
    operator_secret: String, "CHORUS_OPERATOR_SECRET", secret;
    /// File holding the operator secret.
    operator_secret_file: PathBuf, "CHORUS_OPERATOR_SECRET_FILE";
    /// Key of the media-node tokens (`chorus node token`); none: no node token works.
    node_secret: String, "CHORUS_NODE_SECRET", secret;
    /// File holding the node secret.
    node_secret_file: PathBuf, "CHORUS_NODE_SECRET_FILE";
    /// Secret masters present to each other.
    cluster_secret: String, "CHORUS_CLUSTER_SECRET", secret;
    /// File holding the cluster secret.
    cluster_secret_file: PathBuf, "CHORUS_CLUSTER_SECRET_FILE";
    /// Client port TLS: certificate chain, PEM (reloaded on SIGHUP or change).
    tls_cert: PathBuf, "CHORUS_TLS_CERT";
    /// Client port TLS: private key, PEM.
    tls_key: PathBuf, "CHORUS_TLS_KEY";
    /// Peer port mutual TLS: this master's certificate, PEM, from the peer CA.
    peer_tls_cert: PathBuf, "CHORUS_PEER_TLS_CERT";
    /// Peer port mutual TLS: this master's private key, PEM.
    peer_tls_key: PathBuf, "CHORUS_PEER_TLS_KEY";
    /// Peer port mutual TLS: the CA every master's certificate must come from.
    peer_ca: PathBuf, "CHORUS_PEER_CA";
    // The timings suit masters on one LAN. Heartbeats every 50 ms keep followers'
    // election timers far from firing. A follower campaigns once the leader's lease
    // (openraft sets it to the maximum timeout) and then its own randomized timeout have
    // passed in silence: 300 ms + 150–300 ms, so a dead leader is replaced 450–600 ms
    // after its last heartbeat, with five missed heartbeats before anyone gives up.
    /// Leader heartbeat interval, milliseconds.
    heartbeat_ms: u64 = 50, "CHORUS_HEARTBEAT_MS";
    /// Minimum election timeout, milliseconds.
    election_timeout_min_ms: u64 = 150, "CHORUS_ELECTION_TIMEOUT_MIN_MS";
    /// Maximum election timeout, milliseconds.
    election_timeout_max_ms: u64 = 300, "CHORUS_ELECTION_TIMEOUT_MAX_MS";
    // etcd's default `--snapshot-count`: a snapshot encodes the whole state while
    // applies wait (about 0.8 s at 1M connections), so it must be rare; a restart
    // replays at most this many entries.
    /// Entries applied since the last snapshot that trigger a new one.
    snapshot_logs_since_last: u64 = 100_000, "CHORUS_SNAPSHOT_LOGS_SINCE_LAST";
    // 64 MiB: large enough for a batch of appends, small enough to bound memory.
    /// Largest gRPC message, bytes.
    max_message_bytes: usize = 64 * 1024 * 1024, "CHORUS_MAX_MESSAGE_BYTES";
    // Each connection holds a file descriptor; the master checks at start that its
    // open-file limit has room for all of them.
    /// Most client-port connections open at once; more are closed on arrival.
    max_client_connections: usize = 1024, "CHORUS_MAX_CLIENT_CONNECTIONS";
    // A connection's streams share its memory budget; 128 is nginx's HTTP/2 default.
    /// Most concurrent calls (HTTP/2 streams) on one client connection.
    max_streams_per_connection: u32 = 128, "CHORUS_MAX_STREAMS_PER_CONNECTION";
    // A watch holds a few KiB for as long as its client keeps it open.
    /// Most Health.Watch streams open at once on this master.
    max_watch_streams: usize = 4096, "CHORUS_MAX_WATCH_STREAMS";
    // The limits suit a mid-sized cluster.
    /// Most sessions the cluster holds.
    max_sessions: u32 = 100_000, "CHORUS_MAX_SESSIONS";
    /// Most connections one session holds.
    max_connections_per_session: u32 = 1_000, "CHORUS_MAX_CONNECTIONS_PER_SESSION";
    // OpenVidu caps `data` fields at 10 KB in practice; 16 KiB leaves room.
    /// Largest server_data / client_data, bytes.
    max_data_bytes: u32 = 16 * 1024, "CHORUS_MAX_DATA_BYTES";
    // Five seconds of silence: several missed heartbeats of an agent sending one a
    // second, short enough that participants are moved before they give up.
    /// A RUNNING media node silent this long is CRASHED, ms.
    node_timeout_ms: u64 = 5_000, "CHORUS_NODE_TIMEOUT_MS";
    // Autoscaling as OpenVidu Pro ships it: off, one to two nodes, load 30–70 %.
    /// Give autoscaling advice (true/false).
    autoscaling: bool = false, "CHORUS_AUTOSCALING";
    /// Autoscaling: fewest media nodes to keep running.
    autoscaling_min_nodes: u32 = 1, "CHORUS_AUTOSCALING_MIN_NODES";
    /// Autoscaling: most media nodes to run.
    autoscaling_max_nodes: u32 = 2, "CHORUS_AUTOSCALING_MAX_NODES";
    /// Autoscaling: average CPU load (%) under which nodes are drained.
    autoscaling_min_load: f64 = 30.0, "CHORUS_AUTOSCALING_MIN_LOAD";
    /// Autoscaling: average CPU load (%) over which nodes are launched.
    autoscaling_max_load: f64 = 70.0, "CHORUS_AUTOSCALING_MAX_LOAD";
    /// Online licensing: the license key.
    license_key: String, "CHORUS_LICENSE_KEY", secret;
    /// Online licensing: file holding the license key.
    license_key_file: PathBuf, "CHORUS_LICENSE_KEY_FILE";
    /// Online licensing: the license authority, host:port or https://host:port.
    license_authority: String, "CHORUS_LICENSE_AUTHORITY";
    /// Online licensing: CA of the authority's certificate (default: the system's roots).
    license_ca: PathBuf, "CHORUS_LICENSE_CA";
    /// Offline licensing: the signed license file.
    license_file: PathBuf, "CHORUS_LICENSE_FILE";
    /// Offline licensing: the licensor's Ed25519 public key, hex.
    license_public_key: String, "CHORUS_LICENSE_PUBLIC_KEY";
    // A check every 5 minutes; up to a day of trust at that rate, and half an hour of
    // authority outage tolerated before any trust is earned.
    /// Time between license checks, ms.
    license_check_interval_ms: u64 = 5 * 60 * 1000, "CHORUS_LICENSE_CHECK_INTERVAL_MS";
    /// Most trust points successful checks earn.
    license_trust_cap: u32 = 288, "CHORUS_LICENSE_TRUST_CAP";
    /// Failed checks tolerated without any trust.
    license_base_allowance: u32 = 6, "CHORUS_LICENSE_BASE_ALLOWANCE";
    /// Cores each master counts for in usage and core limits; default: this host's.
    license_master_cores: u32, "CHORUS_LICENSE_MASTER_CORES";
    // A day of events, up to 100k of them (about 200 bytes each in memory and in
    // snapshots): enough for a watcher or a receiver to come back after an outage.
    /// Events kept for EventService.Watch and the webhook (newest first).
    event_retention: u64 = 100_000, "CHORUS_EVENT_RETENTION";
    /// Events older than this (log time) are dropped, ms.
    event_retention_ms: u64 = 24 * 3600 * 1000, "CHORUS_EVENT_RETENTION_MS";
    /// Most EventService.Watch streams open at once on this master.
    max_event_watches: usize = 1024, "CHORUS_MAX_EVENT_WATCHES";
    /// Webhook: the URL (http:// or https://) every event is POSTed to.
    webhook_endpoint: String, "CHORUS_WEBHOOK_ENDPOINT";
    /// Webhook: headers on every request, "Name: value,Name: value" or a JSON array.
    webhook_headers: String, "CHORUS_WEBHOOK_HEADERS", secret;
    /// Webhook: the events sent, comma-separated names; default: all.
    webhook_events: String, "CHORUS_WEBHOOK_EVENTS";
    /// Webhook: key of the X-Chorus-Signature HMAC-SHA256 of each body.
    webhook_secret: String, "CHORUS_WEBHOOK_SECRET", secret;
    /// Webhook: file holding that key.
    webhook_secret_file: PathBuf, "CHORUS_WEBHOOK_SECRET_FILE";
    /// Webhook: CA of an https endpoint's certificate (default: the system's roots).
    webhook_ca: PathBuf, "CHORUS_WEBHOOK_CA";
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

/// The webhook settings, if an endpoint is given; the other webhook keys alone are
/// refused.
fn webhook(s: &Settings) -> Result<Option<WebhookConfig>, ConfigError> {
    let secret = secret(
        "webhook_secret",
        s.webhook_secret.clone(),
        s.webhook_secret_file.as_deref(),
    )?;
    let Some(endpoint) = &s.webhook_endpoint else {
        let stray = [
            ("webhook_headers", s.webhook_headers.is_some()),
            ("webhook_events", s.webhook_events.is_some()),
            ("webhook_secret", secret.is_some()),
            ("webhook_ca", s.webhook_ca.is_some()),
        ];
        return match stray.iter().find(|(_, given)| *given) {
            Some((key, _)) => Err(invalid(key, "is only used with webhook_endpoint")),
            None => Ok(None),
        };
    };
    WebhookConfig::parse(
        endpoint,
        s.webhook_headers.as_deref(),
        s.webhook_events.as_deref(),
        secret.map(String::into_bytes),
        s.webhook_ca.clone(),
    )
    .map(Some)
    .map_err(|(key, reason)| invalid(key, reason))
}

/// The license settings: online (key and authority), offline (file and public key),
/// or none. Halves of a pair alone, or both modes at once, are refused.
fn license(s: &Settings) -> Result<Option<LicenseConfig>, ConfigError> {
    let key = secret(
        "license_key",
        s.license_key.clone(),
        s.license_key_file.as_deref(),
    )?;
    if s.license_ca.is_some() && s.license_authority.is_none() {
        return Err(invalid("license_ca", "is only used with license_authority"));
    }
    let source = match (
        key,
        s.license_authority.clone(),
        s.license_file.clone(),
        s.license_public_key.clone(),
    ) {
        (None, None, None, None) => return Ok(None),
        (Some(key), Some(authority), None, None) => {
            let authority = crate::license::authority::uri(&authority)
                .map_err(|e| invalid("license_authority", e))?;
            match (authority.scheme_str(), &s.license_ca) {
                (Some("https"), ca) => {
                    crate::tls::client_config(ca.as_deref(), None)
                        .map_err(|e| invalid("license_ca", e.to_string()))?;
                }
                (_, Some(_)) => {
                    return Err(invalid("license_ca", "needs an https:// license_authority"));
                }
                _ => {}
            }
            Source::Online {
                key,
                authority,
                ca: s.license_ca.clone(),
            }
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
    let interval = s.license_check_interval_ms;
    if interval < 100 {
        return Err(invalid("license_check_interval_ms", "must be at least 100"));
    }
    let master_cores = s
        .license_master_cores
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    if master_cores == 0 {
        return Err(invalid("license_master_cores", "must be at least 1"));
    }
    Ok(Some(LicenseConfig {
        source,
        policy: TrustPolicy {
            trust_cap: s.license_trust_cap,
            base_allowance: s.license_base_allowance,
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
        let s = Settings::merge(args, file);
        let config = Config {
            id: s.id.ok_or_else(|| invalid("id", "is required"))?,
            client_addr: parse_addr("client_addr", s.client_addr.clone())?,
            http_addr: s
                .http_addr
                .clone()
                .map(|addr| parse_addr("http_addr", Some(addr)))
                .transpose()?,
            peer_addr: parse_addr("peer_addr", s.peer_addr.clone())?,
            advertise_peer_addr: s.advertise_peer_addr.clone(),
            peers: match &s.peers {
                Some(text) => parse_peers(text)?,
                None => BTreeMap::new(),
            },
            data_dir: s
                .data_dir
                .clone()
                .ok_or_else(|| invalid("data_dir", "is required"))?,
            api_secret: secret(
                "api_secret",
                s.api_secret.clone(),
                s.api_secret_file.as_deref(),
            )?
            .ok_or_else(|| invalid("api_secret", "is required (or api_secret_file)"))?,
            operator_secret: secret(
                "operator_secret",
                s.operator_secret.clone(),
                s.operator_secret_file.as_deref(),
            )?
            .ok_or_else(|| invalid("operator_secret", "is required (or operator_secret_file)"))?,
            node_secret: secret(
                "node_secret",
                s.node_secret.clone(),
                s.node_secret_file.as_deref(),
            )?,
            cluster_secret: secret(
                "cluster_secret",
                s.cluster_secret.clone(),
                s.cluster_secret_file.as_deref(),
            )?
            .ok_or_else(|| invalid("cluster_secret", "is required (or cluster_secret_file)"))?,
            tls: tls_files(&s)?,
            peer_tls: peer_tls_files(&s)?,
            heartbeat_interval: Duration::from_millis(s.heartbeat_ms),
            election_timeout_min: Duration::from_millis(s.election_timeout_min_ms),
            election_timeout_max: Duration::from_millis(s.election_timeout_max_ms),
            snapshot_logs_since_last: s.snapshot_logs_since_last,
            max_message_bytes: s.max_message_bytes,
            max_client_connections: s.max_client_connections,
            max_streams_per_connection: s.max_streams_per_connection,
            max_watch_streams: s.max_watch_streams,
            limits: Limits {
                max_sessions: s.max_sessions,
                max_connections_per_session: s.max_connections_per_session,
                max_data_bytes: s.max_data_bytes,
            },
            node_timeout: Duration::from_millis(s.node_timeout_ms),
            autoscaling: s.autoscaling.then_some(Policy {
                min_nodes: s.autoscaling_min_nodes,
                max_nodes: s.autoscaling_max_nodes,
                min_load: s.autoscaling_min_load,
                max_load: s.autoscaling_max_load,
            }),
            license: license(&s)?,
            event_retention: Retention {
                count: s.event_retention,
                max_age: Duration::from_millis(s.event_retention_ms),
            }
            .validate()
            .map_err(|(key, reason)| invalid(key, reason))?,
            max_event_watches: s.max_event_watches,
            webhook: webhook(&s)?,
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
        let mut secrets = vec![
            ("api_secret", &self.api_secret),
            ("operator_secret", &self.operator_secret),
            ("cluster_secret", &self.cluster_secret),
        ];
        secrets.extend(self.node_secret.as_ref().map(|s| ("node_secret", s)));
        for (key, secret) in &secrets {
            if secret.len() < 8 {
                return Err(invalid(key, "must be at least 8 characters"));
            }
            if secret.starts_with("node.") {
                return Err(invalid(
                    key,
                    "must not start with `node.` (media-node tokens do)",
                ));
            }
        }
        // One secret for two roles would be one role: the operator's.
        for (i, (a, x)) in secrets.iter().enumerate() {
            for (b, y) in &secrets[i + 1..] {
                if x == y {
                    return Err(invalid(b, format!("must differ from {a}")));
                }
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
        if self.max_client_connections == 0 || self.max_streams_per_connection == 0 {
            return Err(invalid(
                "max_client_connections",
                "and max_streams_per_connection must be at least 1",
            ));
        }
        // A connection's data must fit, with everything else, in one log entry.
        if self.limits.max_data_bytes > MAX_DATA_BYTES {
            return Err(invalid(
                "max_data_bytes",
                format!("must be at most {MAX_DATA_BYTES} (256 KiB)"),
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

/// A secret given directly or in a file (its content, surrounding whitespace trimmed),
/// not both.
fn secret(
    key: &'static str,
    value: Option<String>,
    file: Option<&Path>,
) -> Result<Option<String>, ConfigError> {
    match (value, file) {
        (Some(_), Some(_)) => Err(invalid(
            key,
            "is given both directly and as a file; give one",
        )),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(invalid(key, format!("file {} is empty", path.display())));
            }
            Ok(Some(text.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

/// The client port's TLS files: both or neither.
fn tls_files(s: &Settings) -> Result<Option<crate::tls::ServerFiles>, ConfigError> {
    match (&s.tls_cert, &s.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid("tls_key", "is required with tls_cert")),
        (None, Some(_)) => Err(invalid("tls_cert", "is required with tls_key")),
    }
}

/// The peer port's mutual-TLS files: all three or none.
fn peer_tls_files(s: &Settings) -> Result<Option<crate::tls::ServerFiles>, ConfigError> {
    match (&s.peer_tls_cert, &s.peer_tls_key, &s.peer_ca) {
        (Some(cert), Some(key), Some(ca)) => Ok(Some(crate::tls::ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(ca.clone()),
        })),
        (None, None, None) => Ok(None),
        _ => Err(invalid(
            "peer_tls_cert",
            "peer_tls_cert, peer_tls_key and peer_ca go together",
        )),
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
            operator_secret: Some("operator-secret".into()),
            cluster_secret: Some("cluster-secret".into()),
            ..ServeArgs::default()
        }
    }

    #[test]
    fn defaults_fill_what_flags_leave_out() {
        let config = Config::resolve(&args()).unwrap();
        assert_eq!(config.peers.len(), 2);
        assert_eq!(config.heartbeat_interval, Duration::from_millis(50));
        assert_eq!(config.limits.max_sessions, 100_000);
        assert_eq!(config.autoscaling, None);
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
        assert_eq!(license.policy.base_allowance, 6);
        assert_eq!(license.check_interval, Duration::from_secs(300));
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
    fn every_key_reads_the_variable_named_after_it_and_secrets_stay_hidden() {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let command = <Serve as clap::CommandFactory>::command();
        let mut keys = 0;
        for arg in command.get_arguments() {
            let key = arg.get_id().as_str();
            let env = arg.get_env().and_then(|e| e.to_str());
            assert_eq!(
                env,
                Some(format!("CHORUS_{}", key.to_uppercase()).as_str()),
                "{key}"
            );
            // Webhook headers carry the receiver's credentials.
            let secret =
                key.ends_with("_secret") || key == "license_key" || key == "webhook_headers";
            assert_eq!(arg.is_hide_env_values_set(), secret, "{key}");
            keys += 1;
        }
        assert!(keys > 30, "only {keys} keys");
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
