//! The typed Rust client of the Chorus API, used by the CLI, the tests, the chaos suite
//! and the benches.
//!
//! A [`Client`] knows every master's client-port address. Each call goes to the
//! preferred master; when a master is unreachable or answers UNAVAILABLE (it lost the
//! leader, or is stopping), the same request goes to the next one, until the call's
//! overall timeout. The preferred master is the leader once the client has learned which
//! endpoint that is: every answer names the answering master and the leader it knows
//! (headers `chorus-master-id`, `chorus-leader-id`), so a client steers itself to the
//! leader within a few calls and its writes skip the forwarding hop. Until then, and when
//! the leader is not among its endpoints, it stays with the master that answered last. Writes always carry a `request_id` (one is drawn when the caller
//! gave none) and every retry of a write reuses it, so a write whose first attempt was
//! applied before its answer got lost is not applied again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tonic::Status> {
//! use chorus::api::pb;
//! let client = chorus::client::Client::new(&["127.0.0.1:7001", "127.0.0.1:7002"], "secret")?;
//! let session = client.create_session(pb::CreateSessionRequest::default()).await?;
//! let token = client
//!     .create_connection(pb::CreateConnectionRequest {
//!         session_id: session.id.clone(),
//!         ..Default::default()
//!     })
//!     .await?
//!     .token;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use tokio::time::Instant;
use tonic::codegen::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::api::pb;
use crate::auth::BearerToken;

/// One master's channel, with the API secret on every call.
pub type Authed = InterceptedService<Channel, BearerToken>;

/// An endpoint's master id before it answered.
const UNKNOWN: u64 = 0;
/// An endpoint never heard from, after an attempt there failed.
const FAILED: u64 = u64::MAX;

/// The largest answer the client accepts (a long list page).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// Random characters in a drawn request id (62^22 ≈ 2^131).
const REQUEST_ID_CHARS: usize = 22;

/// How long calls may take.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// One attempt against one master. Long enough for a write to wait out an
    /// election on a master that is still in touch with the others.
    pub attempt: Duration,
    /// The whole call, every retry included.
    pub total: Duration,
    /// How long to wait before another round when every master refused.
    pub backoff: Duration,
    /// How long to wait for a TCP connection to a master.
    pub connect: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            attempt: Duration::from_secs(3),
            total: Duration::from_secs(15),
            backoff: Duration::from_millis(100),
            connect: Duration::from_secs(1),
        }
    }
}

/// A client of a Chorus cluster; cheap to clone, safe to share between tasks.
#[derive(Clone)]
pub struct Client {
    endpoints: Arc<[String]>,
    channels: Arc<[Authed]>,
    /// Where calls start: the leader when known, else the master that answered last.
    preferred: Arc<AtomicUsize>,
    /// Each endpoint's master id as its answers told; before any answer `UNKNOWN`, or
    /// `FAILED` once an attempt there failed, so it is not probed for the leader. A known
    /// id is kept through failures: an address keeps its master, and a master that comes
    /// back and leads is found again by its id.
    ids: Arc<[AtomicU64]>,
    /// Whether answers steer `preferred` to the leader.
    steer: bool,
    timeouts: Timeouts,
}

/// Whether another master (or the same one later) may succeed where this attempt failed.
fn retryable(status: &Status) -> bool {
    matches!(
        status.code(),
        // UNAVAILABLE: no leader, no quorum, master stopping or unreachable.
        // DEADLINE_EXCEEDED: the attempt's own timeout. CANCELLED/UNKNOWN: the
        // connection broke mid-call.
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

/// The name a server's certificate must hold for URI host `host`: an IPv6 address
/// without the brackets URIs put around it (rustls takes the bare address).
pub fn server_name(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

/// A fresh idempotency key.
pub fn new_request_id() -> String {
    format!(
        "req_{}",
        Alphanumeric.sample_string(&mut rand::rng(), REQUEST_ID_CHARS)
    )
}

/// Fills an empty request id in.
fn ensure_request_id(id: &mut String) {
    if id.is_empty() {
        *id = new_request_id();
    }
}

impl Client {
    /// A client of the masters at `endpoints` (`host:port` or `http://host:port`),
    /// presenting `api_secret`, with default timeouts.
    pub fn new(endpoints: &[impl AsRef<str>], api_secret: &str) -> Result<Self, Status> {
        Self::with_timeouts(endpoints, api_secret, Timeouts::default())
    }

    /// A client with chosen timeouts.
    pub fn with_timeouts(
        endpoints: &[impl AsRef<str>],
        api_secret: &str,
        timeouts: Timeouts,
    ) -> Result<Self, Status> {
        Self::with_tls(endpoints, api_secret, timeouts, None)
    }

    /// A client speaking TLS to every endpoint when `tls` is given (see
    /// [`crate::tls::client_config`]: `--cacert`); `https://` endpoints need it.
    pub fn with_tls(
        endpoints: &[impl AsRef<str>],
        api_secret: &str,
        timeouts: Timeouts,
        tls: Option<tonic::transport::ClientTlsConfig>,
    ) -> Result<Self, Status> {
        if endpoints.is_empty() {
            return Err(Status::invalid_argument("no endpoints given"));
        }
        let token = BearerToken::new(api_secret)?;
        let mut names = Vec::new();
        let mut channels = Vec::new();
        for endpoint in endpoints {
            let endpoint = endpoint.as_ref().trim();
            let scheme = if tls.is_some() { "https" } else { "http" };
            if tls.is_some() && endpoint.starts_with("http://") {
                return Err(Status::invalid_argument(format!(
                    "endpoint `{endpoint}` is plain http:// but TLS was asked for (--cacert): \
                     use https:// or host:port"
                )));
            }
            let uri = if endpoint.contains("://") {
                endpoint.to_owned()
            } else {
                format!("{scheme}://{endpoint}")
            };
            let bad = |e: tonic::transport::Error| {
                Status::invalid_argument(format!("endpoint `{endpoint}`: {e}"))
            };
            let mut channel = Endpoint::from_shared(uri)
                .map_err(bad)?
                .connect_timeout(timeouts.connect)
                .tcp_nodelay(true);
            if let Some(tls) = &tls {
                let tls = match channel.uri().host() {
                    Some(host) => tls.clone().domain_name(server_name(host)),
                    None => tls.clone(),
                };
                channel = channel.tls_config(tls).map_err(bad)?;
            }
            let channel = channel.connect_lazy();
            names.push(endpoint.to_owned());
            channels.push(InterceptedService::new(channel, token.clone()));
        }
        let n_endpoints = names.len();
        Ok(Client {
            endpoints: names.into(),
            channels: channels.into(),
            preferred: Arc::default(),
            ids: (0..n_endpoints).map(|_| AtomicU64::new(UNKNOWN)).collect(),
            steer: true,
            timeouts,
        })
    }

    /// This client with leader steering off: calls start at the master that answered
    /// last (the first endpoint at first), for measuring or testing one master's path.
    pub fn without_leader_steering(mut self) -> Self {
        self.steer = false;
        self
    }

    /// The endpoint the next call starts at.
    pub fn preferred_endpoint(&self) -> &str {
        &self.endpoints[self.preferred.load(Ordering::Relaxed)]
    }

    /// The masters this client knows, in the order given.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// Sends `message` with `call`, trying the masters in turn (see the module doc).
    async fn call<M, R, F, Fut>(&self, message: M, call: F) -> Result<R, Status>
    where
        M: Clone,
        F: Fn(Authed, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let deadline = Instant::now() + self.timeouts.total;
        let first = self.preferred.load(Ordering::Relaxed);
        let n = self.channels.len();
        let mut attempt = 0;
        loop {
            let i = (first + attempt) % n;
            let left = deadline.saturating_duration_since(Instant::now());
            let limit = self.timeouts.attempt.min(left);
            let mut request = Request::new(message.clone());
            request.set_timeout(limit);
            let result = tokio::time::timeout(limit, call(self.channels[i].clone(), request))
                .await
                .unwrap_or_else(|_| {
                    Err(Status::deadline_exceeded(format!(
                        "{} did not answer within {limit:?}",
                        self.endpoints[i]
                    )))
                });
            let status = match result {
                Ok(response) => {
                    self.steer_after(i, response.metadata());
                    return Ok(response.into_inner());
                }
                Err(status) if retryable(&status) => {
                    let _ = self.ids[i].compare_exchange(
                        UNKNOWN,
                        FAILED,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    status
                }
                Err(status) => return Err(status),
            };
            attempt += 1;
            if attempt % n == 0 {
                tokio::time::sleep_until(deadline.min(Instant::now() + self.timeouts.backoff))
                    .await;
            }
            if Instant::now() >= deadline {
                return Err(Status::new(
                    status.code(),
                    format!(
                        "no master answered within {:?}; last error from {}: {}",
                        self.timeouts.total,
                        self.endpoints[i],
                        status.message()
                    ),
                ));
            }
        }
    }

    /// Picks where the next call starts, after endpoint `answered` answered with
    /// `metadata`: the leader's endpoint when known; an endpoint not heard from yet when
    /// the leader is someone else (its answer will tell who it is); else `answered`.
    fn steer_after(&self, answered: usize, metadata: &tonic::metadata::MetadataMap) {
        let header = |name| {
            metadata
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
        };
        let mut next = answered;
        if let (true, Some(master)) = (self.steer, header(crate::api::MASTER_HEADER)) {
            self.ids[answered].store(master, Ordering::Relaxed);
            let leader = header(crate::api::LEADER_HEADER).unwrap_or(0);
            if leader != 0 && leader != master {
                let n = self.ids.len();
                let known = (0..n).find(|j| self.ids[*j].load(Ordering::Relaxed) == leader);
                let unheard = (1..n)
                    .map(|k| (answered + k) % n)
                    .find(|j| self.ids[*j].load(Ordering::Relaxed) == UNKNOWN);
                next = known.or(unheard).unwrap_or(answered);
            }
        }
        self.preferred.store(next, Ordering::Relaxed);
    }

    /// `call` on one master only, with no retry: for tools that inspect each master.
    async fn call_one<M, R, F, Fut>(&self, index: usize, message: M, call: F) -> Result<R, Status>
    where
        F: FnOnce(Authed, Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<R>, Status>>,
    {
        let channel = self
            .channels
            .get(index)
            .ok_or_else(|| Status::invalid_argument(format!("no endpoint #{index}")))?;
        let mut request = Request::new(message);
        request.set_timeout(self.timeouts.attempt);
        tokio::time::timeout(self.timeouts.attempt, call(channel.clone(), request))
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")))
            .map(tonic::Response::into_inner)
    }
}

/// The generated client of a service over an authenticated channel.
macro_rules! service {
    ($client:ident, $channel:expr) => {
        $client::new($channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    };
}

use pb::cluster_service_client::ClusterServiceClient;
use pb::connection_service_client::ConnectionServiceClient;
use pb::event_service_client::EventServiceClient;
use pb::license_service_client::LicenseServiceClient;
use pb::media_node_service_client::MediaNodeServiceClient;
use pb::recording_service_client::RecordingServiceClient;
use pb::session_service_client::SessionServiceClient;

/// Defines a retried call: `$name(request) -> response` over `$service::$method`.
macro_rules! rpc {
    ($(#[$doc:meta])* $name:ident, $service:ident, $method:ident, $req:ty => $resp:ty) => {
        $(#[$doc])*
        pub async fn $name(&self, request: $req) -> Result<$resp, Status> {
            self.call(request, |channel, request| async move {
                service!($service, channel).$method(request).await
            })
            .await
        }
    };
    ($(#[$doc:meta])* write $name:ident, $service:ident, $method:ident, $req:ty => $resp:ty) => {
        $(#[$doc])*
        ///
        /// Draws a `request_id` when the request has none; every retry reuses it.
        pub async fn $name(&self, mut request: $req) -> Result<$resp, Status> {
            ensure_request_id(&mut request.request_id);
            self.call(request, |channel, request| async move {
                service!($service, channel).$method(request).await
            })
            .await
        }
    };
}

impl Client {
    rpc!(
        /// SessionService.CreateSession.
        write create_session, SessionServiceClient, create_session,
        pb::CreateSessionRequest => pb::Session
    );
    rpc!(
        /// SessionService.GetSession.
        get_session, SessionServiceClient, get_session,
        pb::GetSessionRequest => pb::Session
    );
    rpc!(
        /// SessionService.ListSessions (one page).
        list_sessions, SessionServiceClient, list_sessions,
        pb::ListSessionsRequest => pb::ListSessionsResponse
    );
    rpc!(
        /// SessionService.DeleteSession.
        write delete_session, SessionServiceClient, delete_session,
        pb::DeleteSessionRequest => pb::DeleteSessionResponse
    );
    rpc!(
        /// ConnectionService.CreateConnection.
        write create_connection, ConnectionServiceClient, create_connection,
        pb::CreateConnectionRequest => pb::Connection
    );
    rpc!(
        /// ConnectionService.GetConnection.
        get_connection, ConnectionServiceClient, get_connection,
        pb::GetConnectionRequest => pb::Connection
    );
    rpc!(
        /// ConnectionService.ListConnections (one page).
        list_connections, ConnectionServiceClient, list_connections,
        pb::ListConnectionsRequest => pb::ListConnectionsResponse
    );
    rpc!(
        /// ConnectionService.JoinConnection.
        write join_connection, ConnectionServiceClient, join_connection,
        pb::JoinConnectionRequest => pb::Connection
    );
    rpc!(
        /// ConnectionService.UpdateConnection.
        write update_connection, ConnectionServiceClient, update_connection,
        pb::UpdateConnectionRequest => pb::Connection
    );
    rpc!(
        /// ConnectionService.DeleteConnection.
        write delete_connection, ConnectionServiceClient, delete_connection,
        pb::DeleteConnectionRequest => pb::DeleteConnectionResponse
    );
    rpc!(
        /// MediaNodeService.RegisterMediaNode.
        write register_media_node, MediaNodeServiceClient, register_media_node,
        pb::RegisterMediaNodeRequest => pb::MediaNode
    );
    rpc!(
        /// MediaNodeService.Heartbeat.
        heartbeat, MediaNodeServiceClient, heartbeat,
        pb::HeartbeatRequest => pb::HeartbeatResponse
    );
    rpc!(
        /// MediaNodeService.GetMediaNode.
        get_media_node, MediaNodeServiceClient, get_media_node,
        pb::GetMediaNodeRequest => pb::MediaNode
    );
    rpc!(
        /// MediaNodeService.ListMediaNodes (one page).
        list_media_nodes, MediaNodeServiceClient, list_media_nodes,
        pb::ListMediaNodesRequest => pb::ListMediaNodesResponse
    );
    rpc!(
        /// MediaNodeService.SetMediaNodeStatus.
        write set_media_node_status, MediaNodeServiceClient, set_media_node_status,
        pb::SetMediaNodeStatusRequest => pb::MediaNode
    );
    rpc!(
        /// MediaNodeService.DeregisterMediaNode.
        write deregister_media_node, MediaNodeServiceClient, deregister_media_node,
        pb::DeregisterMediaNodeRequest => pb::DeregisterMediaNodeResponse
    );
    rpc!(
        /// RecordingService.Start.
        write start_recording, RecordingServiceClient, start,
        pb::StartRecordingRequest => pb::Recording
    );
    rpc!(
        /// RecordingService.Stop.
        write stop_recording, RecordingServiceClient, stop,
        pb::StopRecordingRequest => pb::Recording
    );
    rpc!(
        /// RecordingService.Get.
        get_recording, RecordingServiceClient, get,
        pb::GetRecordingRequest => pb::Recording
    );
    rpc!(
        /// RecordingService.List (one page).
        list_recordings, RecordingServiceClient, list,
        pb::ListRecordingsRequest => pb::ListRecordingsResponse
    );
    rpc!(
        /// RecordingService.Delete.
        write delete_recording, RecordingServiceClient, delete,
        pb::DeleteRecordingRequest => pb::DeleteRecordingResponse
    );
    rpc!(
        /// LicenseService.GetLicenseStatus.
        license_status, LicenseServiceClient, get_license_status,
        pb::GetLicenseStatusRequest => pb::LicenseStatus
    );
    rpc!(
        /// ClusterService.GetClusterStatus, from whichever master answers.
        cluster_status, ClusterServiceClient, get_cluster_status,
        pb::GetClusterStatusRequest => pb::ClusterStatus
    );
    rpc!(
        /// ClusterService.AddLearner.
        add_learner, ClusterServiceClient, add_learner,
        pb::AddLearnerRequest => pb::ClusterStatus
    );
    rpc!(
        /// ClusterService.ChangeMembership.
        change_membership, ClusterServiceClient, change_membership,
        pb::ChangeMembershipRequest => pb::ClusterStatus
    );
    rpc!(
        /// ClusterService.TransferLeadership.
        transfer_leadership, ClusterServiceClient, transfer_leadership,
        pb::TransferLeadershipRequest => pb::ClusterStatus
    );
    rpc!(
        /// ClusterService.TriggerSnapshot.
        trigger_snapshot, ClusterServiceClient, trigger_snapshot,
        pb::TriggerSnapshotRequest => pb::TriggerSnapshotResponse
    );

    /// EventService.Watch that survives the loss of a master: the events from
    /// `request.from_event_id` on (0: those still to come), in order, each once.
    ///
    /// When the stream breaks (its master died or stops), the watch reopens on the next
    /// master from the id after the last one received, so nothing is missed or repeated;
    /// it gives up when no master takes it for the client's total timeout. OUT_OF_RANGE
    /// (the next id is no longer retained) and other refusals end the stream with
    /// that error.
    pub fn watch_events(
        &self,
        request: pb::WatchRequest,
    ) -> impl futures::Stream<Item = Result<pb::Event, Status>> + Send + 'static {
        let watch = Resuming {
            client: self.clone(),
            request,
            stream: None,
            ended: false,
        };
        futures::stream::unfold(watch, |mut watch| async move {
            let item = watch.next().await?;
            Some((item, watch))
        })
    }

    /// Opens a watch on some master, trying each in turn until the total timeout.
    async fn open_watch(
        &self,
        request: &pb::WatchRequest,
    ) -> Result<(tonic::Streaming<pb::Event>, u64), Status> {
        let deadline = Instant::now() + self.timeouts.total;
        let n = self.channels.len();
        let first = self.preferred.load(Ordering::Relaxed);
        let mut attempt = 0;
        loop {
            let i = (first + attempt) % n;
            // No deadline on the request: the stream lives as long as the watcher wants;
            // only the opening is bounded.
            let opened = tokio::time::timeout(
                self.timeouts.attempt,
                service!(EventServiceClient, self.channels[i].clone())
                    .watch(Request::new(request.clone())),
            )
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("no answer in time")));
            let status = match opened {
                Ok(response) => {
                    let from = response
                        .metadata()
                        .get(crate::api::WATCH_FROM_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(request.from_event_id);
                    self.preferred.store(i, Ordering::Relaxed);
                    return Ok((response.into_inner(), from));
                }
                Err(status) if retryable(&status) => status,
                Err(status) => return Err(status),
            };
            attempt += 1;
            if attempt % n == 0 {
                tokio::time::sleep_until(deadline.min(Instant::now() + self.timeouts.backoff))
                    .await;
            }
            if Instant::now() >= deadline {
                return Err(Status::new(
                    status.code(),
                    format!(
                        "no master took the watch within {:?}; last error from {}: {}",
                        self.timeouts.total,
                        self.endpoints[i],
                        status.message()
                    ),
                ));
            }
            // Another master's stream starts over at the master that answered next.
            self.preferred.store((i + 1) % n, Ordering::Relaxed);
        }
    }

    /// ClusterService.GetClusterStatus from the master at `endpoints()[index]`, without
    /// retrying elsewhere: what that master itself sees.
    pub async fn cluster_status_of(&self, index: usize) -> Result<pb::ClusterStatus, Status> {
        self.call_one(
            index,
            pb::GetClusterStatusRequest {},
            |channel, request| async move {
                service!(ClusterServiceClient, channel)
                    .get_cluster_status(request)
                    .await
            },
        )
        .await
    }

    /// Every session, following the pages.
    pub async fn all_sessions(
        &self,
        consistency: pb::Consistency,
    ) -> Result<Vec<pb::Session>, Status> {
        let all = follow_pages(String::new(), |page_token| {
            self.list_sessions(pb::ListSessionsRequest {
                page_size: 0,
                page_token,
                consistency: consistency as i32,
            })
        })
        .await?;
        Ok(all.sessions)
    }
}

/// A list answer that may continue on another page.
pub trait Paged {
    /// The token of the next page, empty after the last.
    fn next_page_token(&mut self) -> &mut String;
    /// Appends the items of the `next` page and takes over its token.
    fn absorb(&mut self, next: Self);
}

macro_rules! paged {
    ($response:ty, $items:ident) => {
        impl Paged for $response {
            fn next_page_token(&mut self) -> &mut String {
                &mut self.next_page_token
            }
            fn absorb(&mut self, next: Self) {
                self.$items.extend(next.$items);
                self.next_page_token = next.next_page_token;
            }
        }
    };
}
paged!(pb::ListSessionsResponse, sessions);
paged!(pb::ListConnectionsResponse, connections);
paged!(pb::ListMediaNodesResponse, media_nodes);
paged!(pb::ListRecordingsResponse, recordings);

/// The state of [`Client::watch_events`].
struct Resuming {
    client: Client,
    /// Its `from_event_id` is the next id wanted once a stream has opened.
    request: pb::WatchRequest,
    stream: Option<tonic::Streaming<pb::Event>>,
    ended: bool,
}

impl Resuming {
    async fn next(&mut self) -> Option<Result<pb::Event, Status>> {
        loop {
            if self.ended {
                return None;
            }
            let stream = match &mut self.stream {
                Some(stream) => stream,
                None => match self.client.open_watch(&self.request).await {
                    Ok((stream, from)) => {
                        // Resuming from where this stream started, even if it ends before
                        // its first event (a watch of events still to come).
                        self.request.from_event_id = from;
                        self.stream.insert(stream)
                    }
                    Err(status) => {
                        self.ended = true;
                        return Some(Err(status));
                    }
                },
            };
            match stream.message().await {
                Ok(Some(event)) => {
                    self.request.from_event_id = event.event_id + 1;
                    return Some(Ok(event));
                }
                Ok(None) => self.stream = None,
                Err(status) if retryable(&status) => {
                    tracing::debug!("event watch broke ({status}); resuming elsewhere");
                    self.stream = None;
                    let n = self.client.channels.len();
                    let at = self.client.preferred.load(Ordering::Relaxed);
                    self.client.preferred.store((at + 1) % n, Ordering::Relaxed);
                }
                Err(status) => {
                    self.ended = true;
                    return Some(Err(status));
                }
            }
        }
    }
}

/// Fetches the page at `first_token` with `fetch`, then every page after it, as one
/// answer whose `next_page_token` is empty.
pub async fn follow_pages<R, F, Fut>(first_token: String, mut fetch: F) -> Result<R, Status>
where
    R: Paged,
    F: FnMut(String) -> Fut,
    Fut: Future<Output = Result<R, Status>>,
{
    let mut all = fetch(first_token).await?;
    while !all.next_page_token().is_empty() {
        let next = fetch(std::mem::take(all.next_page_token())).await?;
        all.absorb(next);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawn_request_ids_are_distinct_and_kept() {
        let mut a = String::new();
        let mut b = String::new();
        ensure_request_id(&mut a);
        ensure_request_id(&mut b);
        assert!(a.starts_with("req_") && a.len() == 4 + REQUEST_ID_CHARS);
        assert_ne!(a, b);
        let mut given = "mine".to_owned();
        ensure_request_id(&mut given);
        assert_eq!(given, "mine");
        crate::state::validate_request_id(&a).expect("a drawn id is a valid request id");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
        ] {
            assert!(retryable(&Status::new(code, "")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::ResourceExhausted,
            Code::Unauthenticated,
            Code::Internal,
        ] {
            assert!(!retryable(&Status::new(code, "")), "{code:?}");
        }
    }

    #[tokio::test]
    async fn pages_are_followed_until_the_last_and_merged() {
        let mut asked = Vec::new();
        let all = follow_pages(String::new(), |token| {
            asked.push(token.clone());
            let (id, next) = match token.as_str() {
                "" => ("a", "a"),
                "a" => ("b", "b"),
                _ => ("c", ""),
            };
            std::future::ready(Ok(pb::ListSessionsResponse {
                sessions: vec![pb::Session {
                    id: id.into(),
                    ..Default::default()
                }],
                next_page_token: next.into(),
            }))
        })
        .await
        .unwrap();
        let ids: Vec<&str> = all.sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(asked, ["", "a", "b"]);
        assert!(all.next_page_token.is_empty());
    }

    #[test]
    fn no_endpoints_is_an_error() {
        let none: [&str; 0] = [];
        assert_eq!(
            Client::new(&none, "s").err().map(|s| s.code()),
            Some(Code::InvalidArgument)
        );
    }
}
