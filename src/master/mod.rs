//! One master: storage, Raft, the peer port and the client port, started and stopped
//! together.
//!
//! Start-up order matters:
//! 1. open the sled store (the state is rebuilt from its snapshot);
//! 2. serve the peer port, answering only probes, so that peers starting at the same
//!    time can find each other;
//! 3. if the store is pristine, decide with the peers whether to form the group
//!    ([`formation`]); a master with a wiped data dir is refused here;
//! 4. start Raft and let the peer port serve Raft RPCs; initialize if this master
//!    forms the group;
//! 5. serve the client port.
//!
//! Each step is a function below, failing with its own [`StartError`].
//!
//! Shutdown runs the other way: a leader first hands leadership to a caught-up
//! follower, then both ports stop, then Raft, then the store is flushed. A Raft that
//! stops on its own (openraft's `Fatal`: a storage error, a panic in its core) stops the
//! master too: [`run`] returns [`RunError::RaftStopped`] and `chorus serve` exits
//! non-zero, so that a supervisor restarts it instead of it serving on as a zombie.

mod formation;
pub(crate) mod incoming;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::service::interceptor::InterceptedService;
use tracing::Instrument;

pub use formation::{Formation, FormationError};

use crate::api::ClientApi;
use crate::auth::{BearerCheck, Credentials};
use crate::config::Config;
use crate::fleet::Fleet;
use crate::network::pb::peer_server::PeerServer as PeerGrpc;
use crate::network::{PeerNetwork, PeerServer};
use crate::raft::{NodeId, Raft, SharedApplied, StateMachineStore};
use crate::service::{Proposer, Service};
use crate::storage::FlusherThread;

/// Why a master could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("storage: {0}")]
    Storage(#[from] std::io::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the cluster secret cannot be sent in a header: {0}")]
    ClusterSecret(String),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Formation(#[from] FormationError),
    #[error("raft configuration: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("raft did not start: {0}")]
    RaftStart(String),
    #[error("initializing the group: {0}")]
    Initialize(String),
    #[error("server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error(
        "the open-file limit is {limit}, under the {needed} this master needs ({clients} client \
         connections, {peers} peer connections and {reserve} for its own files): raise it \
         (ulimit -n, systemd's LimitNOFILE) or lower max_client_connections"
    )]
    OpenFiles {
        limit: u64,
        needed: u64,
        clients: u64,
        peers: u64,
        reserve: u64,
    },
}

/// Why a running master stopped other than by being asked to.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Start(#[from] StartError),
    /// openraft's core stopped on its own (a storage error, a panic): the master cannot
    /// take part in the group any more, so it stops and exits non-zero for its
    /// supervisor to restart it, rather than serve on as a zombie.
    #[error("raft stopped: {0}")]
    RaftStopped(String),
}

/// The bound listening sockets of a master.
pub struct Listeners {
    client: TcpListener,
    peer: TcpListener,
    /// The HTTP port, when served.
    http: Option<TcpListener>,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> Result<Self, StartError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        Ok(Listeners {
            client: bind(config.client_addr).await?,
            peer: bind(config.peer_addr).await?,
            http: match config.http_addr {
                Some(addr) => Some(bind(addr).await?),
                None => None,
            },
        })
    }

    /// Binds free ports on 127.0.0.1: client, peer and HTTP.
    pub async fn bind_loopback() -> std::io::Result<Self> {
        Ok(Listeners {
            client: TcpListener::bind("127.0.0.1:0").await?,
            peer: TcpListener::bind("127.0.0.1:0").await?,
            http: Some(TcpListener::bind("127.0.0.1:0").await?),
        })
    }

    /// The bound HTTP-port address, if there is one.
    pub fn http_addr(&self) -> std::io::Result<Option<SocketAddr>> {
        self.http.as_ref().map(TcpListener::local_addr).transpose()
    }

    /// The bound client-port address.
    pub fn client_addr(&self) -> std::io::Result<SocketAddr> {
        self.client.local_addr()
    }

    /// The bound peer-port address.
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.peer.local_addr()
    }
}

/// How long a stopping master waits for Raft to release the store and the last flush.
const STORE_CLOSE_DEADLINE: Duration = Duration::from_secs(5);

/// How long a stopping master lets calls on its peer port finish.
const PEER_DRAIN_DEADLINE: Duration = Duration::from_secs(1);

/// How long a leader shutting down waits for a follower to take over.
const HANDOVER_DEADLINE: Duration = Duration::from_secs(3);

/// Most connections the peer port holds open: each other master keeps one, a few more
/// come and go (probes at start, a joiner); the rest is room for restarts.
const PEER_CONNECTIONS: usize = 128;
/// Most concurrent calls on one peer connection: Raft keeps a handful open (an append
/// stream, votes, a snapshot), forwarded client calls the rest.
const PEER_STREAMS: u32 = 1024;
/// File descriptors a master needs beyond its connections: sled's files, snapshot
/// databases being written and read, the mark, logs.
const FILE_RESERVE: u64 = 256;

/// A running master.
pub struct Master {
    id: NodeId,
    raft: Raft,
    applied: SharedApplied,
    tasks: Tasks,
    flusher: FlusherThread,
}

/// The master's background tasks: owned, instrumented with its span, and stopped
/// together.
#[derive(Clone)]
struct Tasks {
    stop: CancellationToken,
    tracker: TaskTracker,
    span: tracing::Span,
}

impl Tasks {
    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task.instrument(self.span.clone()));
    }

    /// Cancels every task and waits until all have ended.
    async fn stop(&self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Step 1: opens the sled store; the state is rebuilt from its snapshot later.
fn open_store(config: &Config) -> Result<crate::storage::Store, StartError> {
    let opening = std::time::Instant::now();
    let store = crate::storage::open(&config.data_dir)?;
    tracing::info!(
        elapsed_ms = opening.elapsed().as_millis() as u64,
        "storage opened"
    );
    Ok(store)
}

/// Step 2: serves the peer port, answering only probes until Raft runs, so that peers
/// starting at the same time can find each other.
fn serve_peer_port(
    config: &Config,
    listener: TcpListener,
    tls: Option<Arc<crate::tls::ServerTls>>,
    pristine: bool,
    tasks: &Tasks,
) -> PeerServer {
    let peer_server = PeerServer::new(
        crate::network::MAX_SNAPSHOT_BYTES,
        pristine,
        tasks.stop.clone(),
    );
    let service = InterceptedService::new(
        PeerGrpc::new(peer_server.clone())
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes),
        BearerCheck::new(&config.cluster_secret),
    );
    let router = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(incoming::KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(incoming::KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(PEER_STREAMS)
        .add_service(service)
        // Open: it is how a master proves its membership before it is sent the secret.
        .add_service(
            crate::network::pb::membership_server::MembershipServer::new(
                crate::network::proof::Prover::new(
                    config.id,
                    &advertised_peer_addr(config),
                    &config.cluster_secret,
                ),
            ),
        );
    #[cfg(feature = "failpoints")]
    let router = router.add_service(InterceptedService::new(
        crate::network::pb::failpoints_server::FailpointsServer::new(
            crate::failpoint::service::FailpointService,
        ),
        BearerCheck::new(&config.cluster_secret),
    ));
    let stop = tasks.stop.clone();
    tasks.spawn(async move {
        let serve = router.serve_with_incoming_shutdown(
            incoming::accept(listener, PEER_CONNECTIONS, tls),
            stop.clone().cancelled_owned(),
        );
        // Nothing on the peer port is worth waiting for once Raft is down: every call on
        // it may be retried elsewhere. Drain briefly, then let the rest go.
        let drained = async {
            stop.cancelled().await;
            tokio::time::sleep(PEER_DRAIN_DEADLINE).await;
        };
        tokio::select! {
            result = serve => if let Err(e) = result {
                tracing::error!("peer port stopped: {e}");
            },
            _ = drained => tracing::warn!(
                "peer calls still open {PEER_DRAIN_DEADLINE:?} after stopping; closing the port"
            ),
        }
    });
    peer_server
}

/// The address the other masters reach this one at: `--advertise-peer-addr`, else its
/// entry in `--peers`, else the address it listens on.
fn advertised_peer_addr(config: &Config) -> String {
    config
        .advertise_peer_addr
        .clone()
        .or_else(|| config.peers.get(&config.id).cloned())
        .unwrap_or_else(|| config.peer_addr.to_string())
}

/// Step 4: starts Raft on the store, with the state rebuilt from the latest snapshot.
async fn start_raft(
    config: &Config,
    network: &PeerNetwork,
    log: crate::storage::LogStore,
    snapshots: crate::storage::SnapshotStore,
) -> Result<(Raft, SharedApplied, tokio::sync::watch::Receiver<u64>), StartError> {
    let state_machine = StateMachineStore::open(snapshots)?;
    let applied = state_machine.applied();
    let last_event = state_machine.last_event();
    let raft = Raft::new(
        config.id,
        raft_config(config)?,
        network.clone(),
        log,
        state_machine,
    )
    .await
    .map_err(|e| StartError::RaftStart(e.to_string()))?;
    Ok((raft, applied, last_event))
}

/// Initializes the group with every listed voter (only the master that forms it).
async fn initialize(config: &Config, raft: &Raft) -> Result<(), StartError> {
    let members: BTreeMap<u64, BasicNode> = config
        .peers
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    tracing::info!(voters = ?members.keys().collect::<Vec<_>>(), "initializing the group");
    raft.initialize(members)
        .await
        .map_err(|e| StartError::Initialize(e.to_string()))
}

/// The tasks that run beside the ports: change logging and the leader-only tasks.
fn spawn_background_tasks(
    config: &Config,
    raft: &Raft,
    applied: &SharedApplied,
    fleet: &Fleet,
    events: &crate::events::EventFeed,
    tasks: &Tasks,
) {
    tasks.spawn(log_changes(raft.clone(), tasks.stop.clone()));
    tasks.spawn(crate::events::keep_retention(
        raft.clone(),
        applied.clone(),
        config.event_retention,
        tasks.stop.clone(),
    ));
    if let Some(webhook) = config.webhook.clone() {
        tasks.spawn(crate::events::webhook::deliver(
            raft.clone(),
            applied.clone(),
            events.clone(),
            webhook,
            tasks.stop.clone(),
        ));
    }
    tasks.spawn(crate::leader::record_joined_masters(
        raft.clone(),
        applied.clone(),
        tasks.stop.clone(),
    ));
    tasks.spawn(crate::leader::tend_media_nodes(
        raft.clone(),
        applied.clone(),
        fleet.clone(),
        config.node_timeout,
        config.autoscaling,
        tasks.stop.clone(),
    ));
    if let Some(license) = config.license.clone() {
        tracing::info!(mode = license.source.mode(), "license checks on");
        if let crate::license::Source::Offline { file, public_key } = &license.source {
            // Verified here to tell the operator at once; the leader's checks decide.
            match crate::license::file::load(file, public_key) {
                Ok(terms) => tracing::info!(
                    licensee = %terms.licensee,
                    max_cores = terms.max_cores,
                    not_after = terms.not_after,
                    "license file verified"
                ),
                Err(e) => tracing::error!("{e}"),
            }
        }
        tasks.spawn(crate::leader::check_license(
            raft.clone(),
            applied.clone(),
            license,
            tasks.stop.clone(),
        ));
    }
}

/// The openraft configuration derived from ours.
fn raft_config(config: &Config) -> Result<Arc<openraft::Config>, openraft::ConfigError> {
    let raft_config = openraft::Config {
        cluster_name: "chorus".into(),
        heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
        election_timeout_min: config.election_timeout_min.as_millis() as u64,
        election_timeout_max: config.election_timeout_max.as_millis() as u64,
        // A partitioned master that comes back must not depose a healthy leader.
        enable_pre_vote: Some(true),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs_since_last),
        // Keep half a snapshot interval of log so a briefly lagging follower catches up
        // from the log instead of needing a whole snapshot.
        max_in_snapshot_log_to_keep: config.snapshot_logs_since_last / 2,
        // Purge in batches (fewer, larger sled deletes), but never so large that a small
        // snapshot interval would keep the log from being purged at all.
        purge_batch_size: (config.snapshot_logs_since_last / 10).clamp(1, 256),
        // The whole snapshot travels in one streamed RPC; give it time.
        install_snapshot_timeout: 60_000,
        // A restarted leader must win a new election, whose first entry tells it what is
        // committed. Restoring leadership at once (openraft's default) would let it serve
        // a read index from its persisted commit mark, which lags (it is not fsynced on
        // its own): a linearizable read after a whole-cluster restart then missed the
        // last acknowledged write.
        enable_leader_restore: Some(false),
        ..Default::default()
    };
    raft_config.validate().map(Arc::new)
}

impl Master {
    /// Starts a master on already-bound listeners. Returns once Raft runs and both ports
    /// serve; a pristine master first waits for its peers (see [`formation`]).
    pub async fn start(config: Config, listeners: Listeners) -> Result<Master, StartError> {
        let span = tracing::info_span!("master", id = config.id);
        let tasks = Tasks {
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
            span: span.clone(),
        };
        match Self::start_steps(config, listeners, &tasks)
            .instrument(span)
            .await
        {
            Ok(master) => Ok(master),
            Err(e) => {
                tasks.stop().await;
                Err(e)
            }
        }
    }

    /// The steps of start-up, in order (see the module doc).
    async fn start_steps(
        config: Config,
        listeners: Listeners,
        tasks: &Tasks,
    ) -> Result<Master, StartError> {
        check_open_files(&config)?;
        let store = open_store(&config)?;
        let pristine = store.pristine;
        let mut network =
            PeerNetwork::new(config.id, &config.cluster_secret, config.max_message_bytes)
                .map_err(|e| StartError::ClusterSecret(e.message().to_owned()))?;
        let client_tls = config
            .tls
            .clone()
            .map(|files| crate::tls::ServerTls::load("client", files))
            .transpose()?;
        let peer_tls = match config.peer_tls.clone() {
            Some(files) => {
                network = network.with_tls(files.clone())?;
                Some(crate::tls::ServerTls::load("peer", files)?)
            }
            None => None,
        };
        // The HTTP port serves the client port's certificate, offering HTTP/1.1 too.
        let http_tls = match (&config.tls, &listeners.http) {
            (Some(files), Some(_)) => Some(crate::tls::ServerTls::load_for(
                "http",
                files.clone(),
                crate::tls::HTTP,
            )?),
            _ => None,
        };
        let watched: Vec<_> = client_tls
            .iter()
            .chain(&peer_tls)
            .chain(&http_tls)
            .cloned()
            .collect();
        let reloaded = network.clone();
        tasks.spawn(crate::tls::watch(
            watched,
            move |port| {
                if port == "peer" {
                    reloaded.reload_tls();
                }
            },
            tasks.stop.clone(),
        ));
        let peer_server = serve_peer_port(&config, listeners.peer, peer_tls, pristine, tasks);
        let formation = if pristine {
            Some(formation::decide(&config, &network, tasks.stop.clone().cancelled_owned()).await?)
        } else {
            None
        };
        let (raft, applied, last_event) =
            start_raft(&config, &network, store.log, store.snapshots).await?;
        let events = crate::events::EventFeed::new(last_event, tasks.stop.clone());
        let fleet = Fleet::default();
        let network = Arc::new(network);
        let proposer = Proposer::new(
            raft.clone(),
            applied.clone(),
            config.limits,
            fleet.clone(),
            network.clone(),
        );
        peer_server.set_raft(raft.clone(), applied.clone(), proposer.clone());
        if formation == Some(Formation::Initialize) {
            initialize(&config, &raft).await?;
        }
        spawn_background_tasks(&config, &raft, &applied, &fleet, &events, tasks);
        let (health_reporter, health_service) =
            crate::api::health_service(config.max_watch_streams);
        let (ready, readiness) = tokio::sync::watch::channel(false);
        tasks.spawn(crate::api::report_health(
            raft.clone(),
            peer_server.leader_contact(),
            health_reporter,
            ready,
            config.heartbeat_interval,
            config.election_timeout_max,
            tasks.stop.clone(),
        ));
        let service = Service::new(raft.clone(), applied.clone(), proposer, network, fleet);
        let credentials = Credentials::new(
            &config.api_secret,
            &config.operator_secret,
            config.node_secret.as_deref(),
        );
        if let Some(listener) = listeners.http {
            let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: config.http_addr.unwrap_or(config.client_addr),
                source,
            })?;
            let router = crate::http::HttpApi::new(service.clone(), credentials.clone(), readiness)
                .router(crate::http::body_limit(config.limits.max_data_bytes));
            let incoming = incoming::accept(listener, config.max_client_connections, http_tls);
            tasks.spawn(crate::http::serve(
                router,
                incoming,
                local_addr,
                tasks.stop.clone(),
            ));
        }
        let api = ClientApi::new(
            config.id,
            raft.clone(),
            applied.clone(),
            service,
            config.license.clone(),
            config.max_message_bytes,
            crate::api::EventWatches::new(events, config.max_event_watches),
        );
        let transport = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(incoming::KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(incoming::KEEPALIVE_TIMEOUT))
            .max_concurrent_streams(config.max_streams_per_connection);
        let router = api.router(transport, credentials, health_service)?;
        let client_incoming =
            incoming::accept(listeners.client, config.max_client_connections, client_tls);
        let client_stop = tasks.stop.clone();
        tasks.spawn(async move {
            let result = router
                .serve_with_incoming_shutdown(client_incoming, client_stop.cancelled_owned())
                .await;
            if let Err(e) = result {
                tracing::error!("client port stopped: {e}");
            }
        });
        tracing::info!(
            id = config.id,
            client = %config.client_addr,
            peer = %config.peer_addr,
            http = ?config.http_addr,
            "master started"
        );
        Ok(Master {
            id: config.id,
            raft,
            applied,
            tasks: tasks.clone(),
            flusher: store.flusher,
        })
    }

    /// This master's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The applied state.
    pub fn applied(&self) -> &SharedApplied {
        &self.applied
    }

    /// Waits until this master knows a leader and the group's membership, and returns
    /// the leader's id.
    pub async fn wait_for_leader(&self) -> NodeId {
        let mut metrics = self.raft.metrics();
        loop {
            {
                let m = metrics.borrow_watched();
                let has_voters = m
                    .membership_config
                    .membership()
                    .voter_ids()
                    .next()
                    .is_some();
                if let (Some(leader), true) = (m.current_leader, has_voters) {
                    return leader;
                }
            }
            if metrics.changed().await.is_err() {
                // Raft stopped; no leader will come.
                std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves if Raft stops without being asked to (openraft's `Fatal`: a storage
    /// error, a panic in its core), with the reason. A master in that state can neither
    /// vote nor apply, so the caller stops it.
    pub async fn raft_failure(&self) -> String {
        let mut metrics = self.raft.metrics();
        loop {
            if let Err(fatal) = &metrics.borrow_watched().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "the Raft core ended".into();
            }
        }
    }

    /// Stops gracefully: hands leadership over if this master leads, stops serving,
    /// shuts Raft down and lets the store flush.
    pub async fn shutdown(self) {
        self.stop(true).await
    }

    /// Stops; `hand_over` asks a leader to pass leadership on first, which is pointless
    /// when the whole group is stopping (as `chorus dev` does on Ctrl-C).
    pub async fn stop(self, hand_over: bool) {
        if hand_over {
            self.hand_over_leadership().await;
        }
        // Stop accepting calls, then stop Raft before draining the servers: calls still
        // waiting on Raft (a write without quorum, say) get an error and answer
        // UNAVAILABLE instead of holding the drain up forever.
        self.tasks.stop.cancel();
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        self.tasks.stop().await;
        match self.flusher.finished(STORE_CLOSE_DEADLINE).await {
            Some(Ok(())) => {}
            Some(Err(e)) => tracing::error!("last flush of the store failed: {e}"),
            None => tracing::warn!("the store was still in use after {STORE_CLOSE_DEADLINE:?}"),
        }
        tracing::info!(id = self.id, "master stopped");
    }

    /// If this master leads, transfers leadership to the most caught-up voter and waits
    /// (bounded) until another master leads, so clients see one quick election-free
    /// handover instead of an election timeout.
    async fn hand_over_leadership(&self) {
        let metrics = self.raft.metrics().borrow_watched().clone();
        if metrics.state != ServerState::Leader {
            return;
        }
        let Some(replication) = &metrics.replication else {
            return;
        };
        let voters: Vec<u64> = metrics.membership_config.membership().voter_ids().collect();
        let target = replication
            .iter()
            .filter(|(id, _)| **id != self.id && voters.contains(id))
            .max_by_key(|(_, matched)| matched.map(|m| m.index))
            .map(|(id, _)| *id);
        let Some(target) = target else {
            return;
        };
        tracing::info!(to = target, "handing leadership over before stopping");
        if let Err(e) = self.raft.trigger().transfer_leader(target).await {
            tracing::warn!("leadership transfer failed: {e}");
            return;
        }
        let handed_over = self
            .raft
            .wait(Some(HANDOVER_DEADLINE))
            .metrics(
                |m| m.current_leader.is_some_and(|leader| leader != self.id),
                "another master leads",
            )
            .await;
        if handed_over.is_err() {
            tracing::warn!("no other master took over within {HANDOVER_DEADLINE:?}");
        }
    }
}

/// Raises the open-file limit to its hard maximum, and refuses to start if even that
/// leaves too little room: connections must run out of their own limits, never out of
/// descriptors the Raft log needs.
fn check_open_files(config: &Config) -> Result<(), StartError> {
    let limit = raise_open_files()?;
    let (clients, peers) = (
        config.max_client_connections as u64,
        PEER_CONNECTIONS as u64,
    );
    let needed = clients + peers + FILE_RESERVE;
    if limit < needed {
        return Err(StartError::OpenFiles {
            limit,
            needed,
            clients,
            peers,
            reserve: FILE_RESERVE,
        });
    }
    Ok(())
}

/// Raises this process's open-file limit to its hard limit, as far as it may, and
/// returns the limit now in force.
pub fn raise_open_files() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Runs a master until `shutdown` resolves, then stops it gracefully. If Raft stops on
/// its own first, the master stops and the error says why, so that the process exits
/// non-zero and its supervisor restarts it.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    let listeners = Listeners::bind(&config).await?;
    let master = Master::start(config, listeners).await?;
    tokio::select! {
        _ = shutdown => {
            master.shutdown().await;
            Ok(())
        }
        reason = master.raft_failure() => {
            tracing::error!("raft stopped on its own ({reason}); stopping this master");
            master.stop(false).await;
            Err(RunError::RaftStopped(reason))
        }
    }
}

/// Logs one line per leadership change and per membership change.
async fn log_changes(raft: Raft, stop: CancellationToken) {
    let mut metrics = raft.metrics();
    let mut leader = None;
    let mut membership = None;
    loop {
        {
            let m = metrics.borrow_watched();
            if m.current_leader != leader {
                leader = m.current_leader;
                match leader {
                    Some(leader) => tracing::info!(term = m.current_term, leader, "leader elected"),
                    None => tracing::info!(term = m.current_term, "no leader"),
                }
            }
            let config = m.membership_config.clone();
            if membership.as_ref() != Some(&config) {
                tracing::info!(
                    index = config.log_id().map(|id| id.index),
                    membership = %config.membership(),
                    "membership changed"
                );
                membership = Some(config);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
        }
    }
}
