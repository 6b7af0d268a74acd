//! The sending side of the peer port: openraft's network over tonic channels.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use openraft::base::{BoxFuture, BoxStream};
use openraft::errors::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, StreamAppendError,
    StreamAppendResult, TransferLeaderRequest, TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkFactory};
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::pb::peer_client::PeerClient;
use super::pb::{self, snapshot_chunk};
use super::proof::Proven;
use super::reach::Reach;
use crate::auth::BearerToken;
use crate::codec;
use crate::error::Error;
use crate::raft::{NodeId, Snapshot, TypeConfig, Vote};
use crate::service::{Executed, LeaderLink, Request};

type C = TypeConfig;
type Client = PeerClient<InterceptedService<Channel, PeerToken>>;

/// How long a first connection to a peer may take before the RPC counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a proof of membership may take.
const PROVE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a learner about to be added may take to answer its proof at all.
const JOINER_PATIENCE: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive pings notice a dead peer on an idle channel.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// The most bytes of entries one append carries (less if the peer message limit is
/// lower): a longer batch is cut, its prefix sent, and openraft sends the rest next, so
/// no batch is ever too large to arrive. At least two of the largest log entries fit.
const APPEND_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The slowest transfer an append's deadline allows for: openraft's soft deadline
/// (a fraction of the heartbeat interval) suits a heartbeat, not megabytes on a busy
/// link and disk, so an append gets one more second per this many bytes.
const APPEND_BYTES_PER_SECOND: u64 = 32 * 1024 * 1024;

/// Adds the cluster secret to a call, and refuses to (the call is never sent) while
/// the address has not proven its membership (see [`proof`]).
#[derive(Clone)]
struct PeerToken {
    token: BearerToken,
    proven: Arc<Proven>,
    addr: Arc<str>,
}

impl tonic::service::Interceptor for PeerToken {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if self.proven.id() == 0 {
            return Err(tonic::Status::unavailable(format!(
                "the master at {} has not proven its membership; nothing sent",
                self.addr
            )));
        }
        self.token.call(request)
    }
}

/// openraft's network factory: one long-lived channel per peer address.
#[derive(Clone)]
pub struct PeerNetwork {
    id: NodeId,
    token: BearerToken,
    secret: Arc<[u8]>,
    max_message_bytes: usize,
    /// Mutual TLS: the files, and the client settings made from them.
    tls: Option<Arc<PeerTls>>,
    /// Per peer address: the channel, whether the peer can be reached, what it proved.
    channels: Arc<Mutex<HashMap<String, Peer>>>,
    /// Moved on when the channels are replaced (new TLS certificates): connections
    /// made before take the new channel at their next call.
    generation: Arc<AtomicU64>,
}

/// The peer port's TLS files and the client settings last made from them.
struct PeerTls {
    files: crate::tls::ServerFiles,
    config: Mutex<tonic::transport::ClientTlsConfig>,
}

/// One peer address's channel, reachability and proof, shared by every user.
#[derive(Clone)]
struct Peer {
    channel: Channel,
    reach: Arc<Reach>,
    proven: Arc<Proven>,
}

fn peer_tls_config(
    files: &crate::tls::ServerFiles,
) -> Result<tonic::transport::ClientTlsConfig, crate::tls::TlsError> {
    crate::tls::client_config(files.client_ca.as_deref(), Some((&files.cert, &files.key)))
}

impl PeerNetwork {
    /// A network for master `id` presenting `cluster_secret` to its peers.
    pub fn new(
        id: NodeId,
        cluster_secret: &str,
        max_message_bytes: usize,
    ) -> Result<Self, tonic::Status> {
        Ok(PeerNetwork {
            id,
            token: BearerToken::new(cluster_secret)?,
            secret: cluster_secret.as_bytes().into(),
            max_message_bytes,
            tls: None,
            channels: Arc::default(),
            generation: Arc::default(),
        })
    }

    /// This network speaking mutual TLS: it presents the certificate in `files` and
    /// checks each peer's against the peer CA (`files.client_ca`) and its address.
    pub fn with_tls(
        mut self,
        files: crate::tls::ServerFiles,
    ) -> Result<Self, crate::tls::TlsError> {
        let config = peer_tls_config(&files)?;
        self.tls = Some(Arc::new(PeerTls {
            files,
            config: Mutex::new(config),
        }));
        Ok(self)
    }

    /// Reads the TLS files again; channels opened from now on present the new
    /// certificate (open ones keep theirs until they reconnect).
    pub fn reload_tls(&self) {
        let Some(tls) = &self.tls else { return };
        match peer_tls_config(&tls.files) {
            Ok(config) => {
                *tls.config.lock().expect("peer tls poisoned") = config;
                self.channels.lock().expect("channel map poisoned").clear();
                self.generation.fetch_add(1, Ordering::AcqRel);
                tracing::info!("peer client certificates reloaded");
            }
            Err(e) => tracing::error!("peer client certificates not reloaded: {e}"),
        }
    }

    /// The client for `addr`, once the master there proved its membership.
    async fn client(&self, addr: &str) -> Result<Client, tonic::Status> {
        let (client, peer) = self
            .peer(addr)
            .map_err(|e| tonic::Status::unavailable(format!("bad peer address {addr}: {e}")))?;
        self.prove(&peer, addr, None)
            .await
            .map_err(|e| tonic::Status::unavailable(e.reason))?;
        Ok(client)
    }

    /// Has the master at `addr` prove it is master `id` (before it is added to the
    /// group, so that it receives nothing otherwise). One that does not answer yet (a
    /// joiner still starting) is asked again for up to [`JOINER_PATIENCE`]; a wrong
    /// answer is final.
    pub async fn prove_member(&self, id: NodeId, addr: &str) -> Result<(), String> {
        let (_, peer) = self
            .peer(addr)
            .map_err(|e| format!("bad peer address {addr}: {e}"))?;
        let deadline = tokio::time::Instant::now() + JOINER_PATIENCE;
        loop {
            match self.prove(&peer, addr, Some(id)).await {
                Ok(()) => return Ok(()),
                Err(e) if e.unreachable && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.reason),
            }
        }
    }

    async fn prove(
        &self,
        peer: &Peer,
        addr: &str,
        expected: Option<NodeId>,
    ) -> Result<(), super::proof::Unproven> {
        super::proof::ensure(
            &peer.proven,
            peer.channel.clone(),
            addr,
            expected,
            &self.secret,
            PROVE_TIMEOUT,
        )
        .await
    }

    /// The client for `addr` and the peer's shared state.
    fn peer(&self, addr: &str) -> Result<(Client, Peer), tonic::transport::Error> {
        let peer = {
            let mut channels = self.channels.lock().expect("channel map poisoned");
            match channels.get(addr) {
                Some(peer) => peer.clone(),
                None => {
                    let scheme = if self.tls.is_some() { "https" } else { "http" };
                    let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))?
                        .connect_timeout(CONNECT_TIMEOUT)
                        .tcp_nodelay(true)
                        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                        .keep_alive_while_idle(true);
                    if let Some(tls) = &self.tls {
                        let mut config = tls.config.lock().expect("peer tls poisoned").clone();
                        if let Some(host) = endpoint.uri().host() {
                            config = config.domain_name(crate::client::server_name(host));
                        }
                        endpoint = endpoint.tls_config(config)?;
                    }
                    let peer = Peer {
                        channel: endpoint.connect_lazy(),
                        reach: Arc::default(),
                        proven: Arc::default(),
                    };
                    channels.insert(addr.to_owned(), peer.clone());
                    peer
                }
            }
        };
        let token = PeerToken {
            token: self.token.clone(),
            proven: peer.proven.clone(),
            addr: addr.into(),
        };
        let client = PeerClient::with_interceptor(peer.channel.clone(), token)
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        Ok((client, peer))
    }
}

impl RaftNetworkFactory<C> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerConnection {
        let generation = self.generation.load(Ordering::Acquire);
        let peer = self.peer(&node.addr).map_err(|e| e.to_string());
        let (reach, proven) = match &peer {
            Ok((_, peer)) => (peer.reach.clone(), peer.proven.clone()),
            Err(_) => Default::default(),
        };
        PeerConnection {
            id: self.id,
            target,
            addr: node.addr.clone(),
            reach,
            proven,
            network: self.clone(),
            generation,
            client: peer.map(|(client, _)| client),
            appends: None,
            append_budget: APPEND_BATCH_BYTES.min(self.max_message_bytes / 2),
        }
    }
}

/// The Raft traffic to one peer.
pub struct PeerConnection {
    id: NodeId,
    target: NodeId,
    /// The peer's address, and whether it can be reached.
    addr: String,
    reach: Arc<Reach>,
    /// What the address proved; the network makes the proof.
    proven: Arc<Proven>,
    network: PeerNetwork,
    /// The network's generation `client` was made in.
    generation: u64,
    /// An address that cannot even form a URI is remembered as the error it gave.
    client: Result<Client, String>,
    /// The open append session, between two append streams.
    appends: Option<AppendSession>,
    /// The most bytes one append message carries.
    append_budget: usize,
}

fn unreachable(e: impl std::fmt::Display) -> Unreachable<C> {
    Unreachable::from_string(e.to_string())
}

/// Maps a gRPC failure: transport and availability errors mean the peer is unreachable
/// (openraft backs off); anything else is a network error (retried soon).
fn status_error(status: tonic::Status) -> RPCError<C> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            RPCError::Unreachable(unreachable(status))
        }
        _ => RPCError::Network(NetworkError::from_string(status.to_string())),
    }
}

fn codec_error(e: std::io::Error) -> RPCError<C> {
    RPCError::Network(NetworkError::new(&e))
}

impl PeerConnection {
    /// After new TLS certificates, takes the new channel and lets the open append
    /// stream (on the old one) go.
    fn refresh(&mut self) {
        let generation = self.network.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        let peer = self.network.peer(&self.addr).map_err(|e| e.to_string());
        if let Ok((_, peer)) = &peer {
            (self.reach, self.proven) = (peer.reach.clone(), peer.proven.clone());
        }
        self.client = peer.map(|(client, _)| client);
        self.appends = None;
        self.generation = generation;
    }

    /// The client, once the peer proved it is master `target`; a peer that cannot is
    /// unreachable (and backed off), and is sent nothing.
    async fn client(&mut self) -> Result<Client, RPCError<C>> {
        self.refresh();
        let client = self
            .client
            .clone()
            .map_err(|e| RPCError::Unreachable(unreachable(e)))?;
        if self.proven.id() != self.target {
            let proved = match self.network.peer(&self.addr) {
                Ok((_, peer)) => {
                    self.network
                        .prove(&peer, &self.addr, Some(self.target))
                        .await
                }
                Err(e) => Err(e.to_string().into()),
            };
            if let Err(reason) = proved {
                let error = RPCError::Unreachable(unreachable(reason));
                self.reach.failed(&self.addr, &error);
                return Err(error);
            }
        }
        Ok(client)
    }

    /// Maps a call's outcome, telling the peer's [`Reach`] whether it answered.
    fn observe<T>(&self, outcome: Result<T, tonic::Status>) -> Result<T, RPCError<C>> {
        match outcome {
            Ok(reply) => {
                self.reach.answered(&self.addr);
                Ok(reply)
            }
            Err(status) => {
                let error = status_error(status);
                if matches!(error, RPCError::Unreachable(_)) {
                    // Its next connection may lead elsewhere: it proves itself again.
                    self.proven.forget();
                    self.reach.failed(&self.addr, &error);
                } else {
                    self.reach.answered(&self.addr);
                }
                Err(error)
            }
        }
    }

    /// The error of a call not made: the peer is in its back-off.
    fn backing_off(&self) -> RPCError<C> {
        RPCError::Unreachable(unreachable(format!(
            "master {} at {} is unreachable; backing off",
            self.target, self.addr
        )))
    }

    fn timeout(&self, action: RPCTypes, timeout: Duration) -> Timeout<C> {
        Timeout {
            action,
            id: self.id,
            target: self.target,
            timeout,
        }
    }

    /// Sends one postcard-encoded request with the RPC's deadline and decodes the reply.
    async fn unary<Req, Resp, F, Fut>(
        &mut self,
        action: RPCTypes,
        request: &Req,
        option: &RPCOption,
        call: F,
    ) -> Result<Resp, RPCError<C>>
    where
        Req: serde::Serialize,
        Resp: serde::de::DeserializeOwned,
        F: Fn(Client, tonic::Request<pb::Payload>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<pb::Payload>, tonic::Status>>,
    {
        let deadline = option.soft_ttl();
        let data = codec::encode(request).map_err(codec_error)?;
        // A back-off spends part of the caller's deadline, never more than all of it.
        let Some(deadline) = self.reach.ready(deadline).await else {
            return Err(self.backing_off());
        };
        if crate::failpoint::hit("network::unary").as_deref() == Some("duplicate") {
            tracing::info!("failpoint network::unary: {action:?} sent twice");
            let mut twin = tonic::Request::new(pb::Payload { data: data.clone() });
            twin.set_timeout(deadline);
            let _ = tokio::time::timeout(deadline, call(self.client().await?, twin)).await;
        }
        let mut request = tonic::Request::new(pb::Payload { data });
        request.set_timeout(deadline);
        let reply = tokio::time::timeout(deadline, call(self.client().await?, request))
            .await
            .map_err(|_| RPCError::Timeout(self.timeout(action, deadline)))?;
        let reply = self.observe(reply)?;
        codec::decode(&reply.into_inner().data).map_err(codec_error)
    }
}

/// The results of one append stream, as openraft takes them.
type AppendResults<'s> = BoxStream<'s, Result<StreamAppendResult<C>, RPCError<C>>>;

/// An open `StreamAppend` call to the peer. openraft opens an append stream per
/// replication session and per heartbeat; they all go over this one gRPC stream, one
/// request at a time, so a heartbeat costs a message each way rather than an HTTP/2
/// stream with its headers and trailers. It is dropped after any error or refusal, so a
/// late result can never be taken for a later request's.
///
/// One request at a time: the next leaves when the previous result is back, and carries
/// every entry appended meanwhile. Measured with `chorus-bench create-session` (4
/// alternating rounds each), letting 2 or any number await their results sent more,
/// smaller appends: at 64 clients they cost 0.162 and 0.167 ms of CPU per write against
/// 0.142 ms (9.2k and 9.1k writes/s against 10.3k), and with one client their p50 was no
/// better (0.916 and 0.904 ms against 0.872 ms).
struct AppendSession {
    requests: futures::channel::mpsc::UnboundedSender<pb::Payload>,
    results: tonic::Streaming<pb::Payload>,
    /// The last request sent, for the `network::append` failpoint's `replay`.
    #[cfg(feature = "failpoints")]
    previous: Option<Vec<u8>>,
}

impl AppendSession {
    /// Sends `request` and waits for its result, at most `ttl` plus the time its size
    /// needs.
    async fn exchange(
        &mut self,
        request: &AppendEntriesRequest<C>,
        ttl: Duration,
        timeout: &Timeout<C>,
    ) -> Result<StreamAppendResult<C>, RPCError<C>> {
        let data = codec::encode(request).map_err(codec_error)?;
        let ttl = ttl + Duration::from_secs_f64(data.len() as f64 / APPEND_BYTES_PER_SECOND as f64);
        #[cfg(feature = "failpoints")]
        {
            let previous = self.previous.replace(data.clone());
            let extra = match crate::failpoint::hit("network::append").as_deref() {
                Some("duplicate") => Some(("sent twice", data.clone())),
                Some("replay") => previous.map(|p| ("replayed the previous append", p)),
                _ => None,
            };
            if let Some((what, extra)) = extra {
                tracing::info!("failpoint network::append: {what}");
                // Its result, whatever it is, is not the caller's: read and dropped.
                let _ = self.send_and_receive(extra, ttl, timeout).await?;
            }
        }
        self.send_and_receive(data, ttl, timeout).await
    }

    async fn send_and_receive(
        &mut self,
        data: Vec<u8>,
        ttl: Duration,
        timeout: &Timeout<C>,
    ) -> Result<StreamAppendResult<C>, RPCError<C>> {
        self.requests
            .unbounded_send(pb::Payload { data })
            .map_err(|_| RPCError::Unreachable(unreachable("the append stream is closed")))?;
        match tokio::time::timeout(ttl, self.results.next()).await {
            Err(_) => Err(RPCError::Timeout(timeout.clone())),
            Ok(Some(Ok(payload))) => codec::decode(&payload.data).map_err(codec_error),
            Ok(Some(Err(status))) => Err(status_error(status)),
            Ok(None) => Err(RPCError::Network(NetworkError::from_string(
                "the peer ended the append stream",
            ))),
        }
    }
}

impl PeerConnection {
    /// The open append session, or a new one.
    async fn append_session(&mut self, ttl: Duration) -> Result<AppendSession, RPCError<C>> {
        self.refresh();
        if let Some(session) = self.appends.take() {
            return Ok(session);
        }
        let (requests, outgoing) = futures::channel::mpsc::unbounded();
        // The back-off first: proving an unreachable peer must not spin either.
        let Some(ttl) = self.reach.ready(ttl).await else {
            return Err(self.backing_off());
        };
        let mut client = self.client().await?;
        let opened = tokio::time::timeout(ttl, client.stream_append(outgoing))
            .await
            .map_err(|_| RPCError::Timeout(self.timeout(RPCTypes::AppendEntries, ttl)))?;
        let results = self.observe(opened)?.into_inner();
        Ok(AppendSession {
            requests,
            results,
            #[cfg(feature = "failpoints")]
            previous: None,
        })
    }
}

/// `request` cut to the longest prefix of its entries that encodes within `budget`
/// bytes (at least one entry, which the entry size limit keeps well under any budget),
/// announcing a commit no further than its last entry; `None` if it fits whole.
pub(super) fn within_budget(
    request: &AppendEntriesRequest<C>,
    budget: usize,
) -> Option<AppendEntriesRequest<C>> {
    if request.entries.len() < 2 || codec::encoded_len(request).ok()? <= budget {
        return None;
    }
    let mut bytes = 0;
    let mut take = 0;
    for entry in &request.entries {
        bytes += codec::encoded_len(entry).ok()?;
        if take > 0 && bytes > budget {
            break;
        }
        take += 1;
    }
    if take == request.entries.len() {
        return None;
    }
    let entries = request.entries[..take].to_vec();
    let last = entries.last().map(|entry| entry.log_id);
    Some(AppendEntriesRequest {
        vote: request.vote,
        prev_log_id: request.prev_log_id,
        leader_commit: request.leader_commit.min(last),
        entries,
    })
}

impl RaftNetworkV2<C> for PeerConnection {
    type SnapshotData = crate::storage::SnapshotData;

    /// One request as a stream of one (openraft itself only ever streams).
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<C>, RPCError<C>> {
        let last = rpc
            .entries
            .last()
            .map(|entry| entry.log_id)
            .or(rpc.prev_log_id);
        let mut results = self
            .stream_append(futures::stream::iter([rpc]), option)
            .await?;
        let result = results.next().await;
        // Polled to its end, the stream hands its session back for the next one.
        while results.next().await.is_some() {}
        match result {
            Some(Ok(Ok(matching))) if matching == last => Ok(AppendEntriesResponse::Success),
            Some(Ok(Ok(matching))) => Ok(AppendEntriesResponse::PartialSuccess(matching)),
            Some(Ok(Err(StreamAppendError::Conflict(_)))) => Ok(AppendEntriesResponse::Conflict),
            Some(Ok(Err(StreamAppendError::HigherVote(vote)))) => {
                Ok(AppendEntriesResponse::HigherVote(vote))
            }
            Some(Err(e)) => Err(e),
            None => Err(RPCError::Network(NetworkError::from_string(
                "the peer ended the append stream without an answer",
            ))),
        }
    }

    /// The requests go one at a time over the connection's [`AppendSession`]. A result
    /// that takes longer than `option.soft_ttl()` ends the stream with a timeout; waiting
    /// for openraft's next request has no deadline.
    fn stream_append<'s, S>(
        &'s mut self,
        input: S,
        option: RPCOption,
    ) -> BoxFuture<'s, Result<AppendResults<'s>, RPCError<C>>>
    where
        S: Stream<Item = AppendEntriesRequest<C>> + OptionalSend + Unpin + 'static,
    {
        Box::pin(async move {
            let ttl = option.soft_ttl();
            let timeout = self.timeout(RPCTypes::AppendEntries, ttl);
            let budget = self.append_budget;
            let session = self.append_session(ttl).await?;
            let slot = &mut self.appends;
            let results = futures::stream::unfold(Some((input, session, slot)), move |state| {
                let timeout = timeout.clone();
                async move {
                    let (mut input, mut session, slot) = state?;
                    let Some(request) = input.next().await else {
                        // Every request has its result: the next stream reuses the session.
                        *slot = Some(session);
                        return None;
                    };
                    let Some(prefix) = within_budget(&request, budget) else {
                        let result = session.exchange(&request, ttl, &timeout).await;
                        let go_on = matches!(result, Ok(Ok(_)));
                        return Some((result, go_on.then_some((input, session, slot))));
                    };
                    // Only a prefix goes: the stream ends after its result (the session,
                    // with nothing in flight, is kept), and openraft sends the rest from
                    // where the peer's log now matches.
                    let result = session.exchange(&prefix, ttl, &timeout).await;
                    if matches!(result, Ok(Ok(_))) {
                        *slot = Some(session);
                    }
                    Some((result, None))
                }
            });
            Ok(Box::pin(results) as AppendResults<'s>)
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.unary(RPCTypes::Vote, &rpc, &option, |mut c, r| async move {
            c.vote(r).await
        })
        .await
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<C>,
        option: RPCOption,
    ) -> Result<VoteResponse<C>, RPCError<C>> {
        self.unary(RPCTypes::Vote, &rpc, &option, |mut c, r| async move {
            c.pre_vote(r).await
        })
        .await
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<C>, StreamingError<C>> {
        let deadline = option.hard_ttl();
        let header = codec::encode(&(vote, &snapshot.meta)).map_err(codec_error)?;
        let data = snapshot.snapshot.into_bytes().await.map_err(codec_error)?;
        let bytes = data.len();
        let chunks: Vec<pb::SnapshotChunk> = std::iter::once(snapshot_chunk::Kind::Header(header))
            .chain(
                data.chunks(super::SNAPSHOT_CHUNK_BYTES)
                    .map(|c| snapshot_chunk::Kind::Data(c.to_vec())),
            )
            .map(|kind| pb::SnapshotChunk { kind: Some(kind) })
            .collect();
        let mut request = tonic::Request::new(futures::stream::iter(chunks));
        request.set_timeout(deadline);
        let mut client = self.client().await.map_err(StreamingError::from)?;
        let send = async move {
            let reply = client
                .install_snapshot(request)
                .await
                .map_err(status_error)?;
            codec::decode::<SnapshotResponse<C>>(&reply.into_inner().data).map_err(codec_error)
        };
        tracing::info!(target = self.target, bytes, "sending snapshot");
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            result = tokio::time::timeout(deadline, send) => match result {
                Ok(reply) => Ok(reply?),
                Err(_) => Err(StreamingError::Timeout(self.timeout(RPCTypes::InstallSnapshot, deadline))),
            },
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<C>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<C>, RPCError<C>> {
        self.unary(
            RPCTypes::TransferLeader,
            &req,
            &option,
            |mut c, r| async move { c.transfer_leader(r).await },
        )
        .await
    }
}

/// Asks the master at `addr` what it knows of the group (used before this master's Raft
/// starts, to refuse re-initializing a formed group).
pub async fn probe(
    network: &PeerNetwork,
    addr: &str,
    deadline: Duration,
) -> Result<pb::ProbeReply, tonic::Status> {
    let mut client = network.client(addr).await?;
    let mut request = tonic::Request::new(pb::ProbeRequest {});
    request.set_timeout(deadline);
    match tokio::time::timeout(deadline, client.probe(request)).await {
        Ok(reply) => Ok(reply?.into_inner()),
        Err(_) => Err(tonic::Status::deadline_exceeded("probe timed out")),
    }
}

/// Calls the master at `addr` with a postcard-encoded `request` by `deadline` and
/// decodes its postcard `Result` reply. Any transport failure is UNAVAILABLE.
async fn call_master<Req, Resp, F, Fut>(
    network: &PeerNetwork,
    addr: &str,
    request: &Req,
    deadline: tokio::time::Instant,
    call: F,
) -> Result<Resp, Error>
where
    Req: serde::Serialize,
    Resp: serde::de::DeserializeOwned,
    F: FnOnce(Client, tonic::Request<pb::Payload>) -> Fut,
    Fut: Future<Output = Result<tonic::Response<pb::Payload>, tonic::Status>>,
{
    let client = network
        .client(addr)
        .await
        .map_err(|status| Error::Unreachable(status.message().to_owned()))?;
    let data = codec::encode(request).map_err(|e| Error::Internal(e.to_string()))?;
    let mut request = tonic::Request::new(pb::Payload { data });
    request.set_timeout(crate::deadline::remaining(deadline));
    let reply = tokio::time::timeout_at(deadline, call(client, request))
        .await
        .map_err(|_| Error::Unavailable(format!("master at {addr} did not answer in time")))?
        .map_err(|status| {
            if let Ok((_, peer)) = network.peer(addr) {
                peer.proven.forget();
            }
            if never_sent(&status) {
                Error::Unreachable(format!(
                    "master at {addr} unreachable: {}",
                    status.message()
                ))
            } else {
                Error::Unavailable(format!(
                    "call to master at {addr} failed: {}",
                    status.message()
                ))
            }
        })?;
    codec::decode::<Result<Resp, Error>>(&reply.into_inner().data)
        .map_err(|e| Error::Internal(format!("undecodable reply from {addr}: {e}")))?
}

/// Forwarding to the leader rides the same channels as Raft.
impl LeaderLink for PeerNetwork {
    fn execute<'a>(
        &'a self,
        addr: &'a str,
        request: &'a Request,
        deadline: tokio::time::Instant,
    ) -> futures::future::BoxFuture<'a, Result<Executed, Error>> {
        Box::pin(call_master(
            self,
            addr,
            request,
            deadline,
            |mut c, r| async move { c.forward(r).await },
        ))
    }

    fn read_index<'a>(
        &'a self,
        addr: &'a str,
        deadline: tokio::time::Instant,
    ) -> futures::future::BoxFuture<'a, Result<u64, Error>> {
        Box::pin(call_master(
            self,
            addr,
            &(),
            deadline,
            |mut c, r| async move { c.read_index(r).await },
        ))
    }

    fn prove_member<'a>(
        &'a self,
        id: NodeId,
        addr: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            PeerNetwork::prove_member(self, id, addr)
                .await
                .map_err(|reason| Error::FailedPrecondition(format!("not added: {reason}")))
        })
    }
}

/// Whether a failed call never left this master: its connection could not be made.
fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(error) = source {
        if error.is::<tonic::ConnectError>() {
            return true;
        }
        source = error.source();
    }
    false
}
