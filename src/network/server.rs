//! The receiving side of the peer port.

use std::sync::{Arc, Mutex, OnceLock};

use futures::StreamExt;
use futures::stream::BoxStream;
use openraft::async_runtime::WatchReceiver;
use openraft::raft::{AppendEntriesRequest, StreamAppendError, TransferLeaderRequest, VoteRequest};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::pb::peer_server::Peer;
use super::pb::{self, snapshot_chunk};
use crate::codec;
use crate::error::Error;
use crate::raft::{Raft, SharedApplied, Snapshot, SnapshotMeta, TypeConfig, Vote};
use crate::service::{self, Executed, Proposer, read_index_by};

type C = TypeConfig;

/// When this master last heard from a leader that it accepted as such (an append or
/// heartbeat that did not carry a stale vote). A follower that has not heard from one
/// for an election timeout is cut off, whatever leader its metrics still name.
#[derive(Clone, Default)]
pub struct LeaderContact(Arc<Mutex<Option<tokio::time::Instant>>>);

impl LeaderContact {
    fn touch(&self) {
        *self.0.lock().expect("leader contact poisoned") = Some(tokio::time::Instant::now());
    }

    /// The last contact, if any.
    pub fn last(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().expect("leader contact poisoned")
    }
}

/// What the peer server needs once Raft runs.
struct Running {
    raft: Raft,
    applied: SharedApplied,
    proposer: Proposer,
}

/// Serves the peer RPCs. Raft RPCs answer UNAVAILABLE until [`PeerServer::set_raft`]
/// hands over the Raft handle: a master probes its peers before it starts Raft, and
/// must not vote or accept entries before that check passed.
#[derive(Clone)]
pub struct PeerServer {
    raft: Arc<OnceLock<Running>>,
    leader_contact: LeaderContact,
    max_snapshot_bytes: usize,
    /// Cancelled when this master stops: long-lived calls (append streams) end then, so
    /// that draining the port does not wait for a leader that never closes them.
    stopping: CancellationToken,
    /// This master's store was empty at start: until Raft runs, it truthfully knows no
    /// group. A master with data answers probes only once Raft runs and knows its
    /// membership, never "no group" in between.
    pristine: bool,
}

impl PeerServer {
    /// A server that accepts snapshots up to `max_snapshot_bytes`, and ends its append
    /// streams once `stopping` is cancelled.
    pub fn new(max_snapshot_bytes: usize, pristine: bool, stopping: CancellationToken) -> Self {
        PeerServer {
            raft: Arc::default(),
            leader_contact: LeaderContact::default(),
            max_snapshot_bytes,
            stopping,
            pristine,
        }
    }

    /// Starts serving Raft RPCs with `raft`, and forwarded writes with `proposer`.
    pub fn set_raft(&self, raft: Raft, applied: SharedApplied, proposer: Proposer) {
        let running = Running {
            raft,
            applied,
            proposer,
        };
        if self.raft.set(running).is_err() {
            tracing::warn!("the peer server already had a Raft handle");
        }
    }

    /// When this master last heard from its leader.
    pub fn leader_contact(&self) -> LeaderContact {
        self.leader_contact.clone()
    }

    fn running(&self) -> Result<&Running, Status> {
        self.raft
            .get()
            .ok_or_else(|| Status::unavailable("this master has not started Raft yet"))
    }

    fn raft(&self) -> Result<&Raft, Status> {
        self.running().map(|running| &running.raft)
    }
}

fn decode<T: serde::de::DeserializeOwned>(payload: &pb::Payload) -> Result<T, Status> {
    codec::decode(&payload.data)
        .map_err(|e| Status::invalid_argument(format!("undecodable Raft message: {e}")))
}

fn reply<T: serde::Serialize>(value: &T) -> Result<Response<pb::Payload>, Status> {
    let data =
        codec::encode(value).map_err(|e| Status::internal(format!("cannot encode reply: {e}")))?;
    Ok(Response::new(pb::Payload { data }))
}

/// A Raft that is shutting down or has failed answers UNAVAILABLE: the sender treats the
/// peer as unreachable and backs off.
fn fatal(e: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

#[tonic::async_trait]
impl Peer for PeerServer {
    type StreamAppendStream = BoxStream<'static, Result<pb::Payload, Status>>;

    async fn stream_append(
        &self,
        request: Request<Streaming<pb::Payload>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        let raft = self.raft()?.clone();
        // A request that fails to arrive or to decode ends the input; Raft still answers
        // the ones before it, and then the stream ends with that failure.
        let failure: Arc<Mutex<Option<Status>>> = Arc::default();
        let requests = {
            let failure = failure.clone();
            request.into_inner().scan((), move |(), message| {
                let request =
                    message.and_then(|payload| decode::<AppendEntriesRequest<C>>(&payload));
                futures::future::ready(match request {
                    Ok(request) => Some(request),
                    Err(status) => {
                        *failure.lock().expect("stream failure poisoned") = Some(status);
                        None
                    }
                })
            })
        };
        let leader_contact = self.leader_contact.clone();
        let results = raft.stream_append(requests).map(move |result| {
            let result = result.map_err(fatal)?;
            if !matches!(result, Err(StreamAppendError::HigherVote(_))) {
                leader_contact.touch();
            }
            codec::encode(&result)
                .map(|data| pb::Payload { data })
                .map_err(|e| Status::internal(format!("cannot encode reply: {e}")))
        });
        let failed = futures::stream::once(async move {
            failure.lock().expect("stream failure poisoned").take()
        })
        .filter_map(|failure| futures::future::ready(failure.map(Err)));
        // The leader keeps its append stream open for as long as it replicates here; a
        // stopping master ends it, or draining the port would wait for it forever.
        let stopping = self.stopping.clone();
        let stopped = futures::stream::once(async move {
            stopping
                .is_cancelled()
                .then(|| Status::unavailable("this master is stopping"))
        })
        .filter_map(|stopped| futures::future::ready(stopped.map(Err)));
        let results = results
            .chain(failed)
            .take_until(self.stopping.clone().cancelled_owned())
            .chain(stopped);
        Ok(Response::new(Box::pin(results)))
    }

    async fn vote(&self, request: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        let req: VoteRequest<C> = decode(request.get_ref())?;
        let resp = self.raft()?.vote(req).await.map_err(fatal)?;
        reply(&resp)
    }

    async fn pre_vote(
        &self,
        request: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        let req: VoteRequest<C> = decode(request.get_ref())?;
        let resp = self.raft()?.pre_vote(req).await.map_err(fatal)?;
        reply(&resp)
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::Payload>, Status> {
        let raft = self.raft()?.clone();
        let mut stream = request.into_inner();
        let header = match stream.next().await {
            Some(Ok(pb::SnapshotChunk {
                kind: Some(snapshot_chunk::Kind::Header(header)),
            })) => header,
            Some(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "a snapshot stream must start with its header",
                ));
            }
        };
        let (vote, meta): (Vote, SnapshotMeta) = codec::decode(&header)
            .map_err(|e| Status::invalid_argument(format!("bad snapshot header: {e}")))?;
        // openraft asserts this (and would take the master down): a snapshot must come
        // from a leader no newer than the vote that sends it.
        if meta
            .last_log_id
            .is_some_and(|id| id.leader_id > vote.leader_id)
        {
            return Err(Status::invalid_argument(
                "snapshot is newer than the vote that sends it",
            ));
        }
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk?.kind {
                Some(snapshot_chunk::Kind::Data(bytes)) => {
                    if data.len() + bytes.len() > self.max_snapshot_bytes {
                        return Err(Status::resource_exhausted(format!(
                            "snapshot larger than {} bytes",
                            self.max_snapshot_bytes
                        )));
                    }
                    data.extend_from_slice(&bytes);
                }
                _ => return Err(Status::invalid_argument("a snapshot stream has one header")),
            }
        }
        // Check the data decodes before openraft sees it: a corrupt transfer is refused here
        // rather than failing inside the state machine.
        codec::decode::<crate::state::State>(&data)
            .map_err(|e| Status::invalid_argument(format!("snapshot data does not decode: {e}")))?;
        tracing::info!(
            index = meta.last_log_id.map(|id| id.index),
            bytes = data.len(),
            "snapshot received"
        );
        let snapshot = Snapshot {
            meta,
            snapshot: crate::storage::SnapshotData::Bytes(data),
        };
        let resp = raft
            .install_full_snapshot(vote, snapshot)
            .await
            .map_err(fatal)?;
        reply(&resp)
    }

    async fn transfer_leader(
        &self,
        request: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        let req: TransferLeaderRequest<C> = decode(request.get_ref())?;
        let resp = self
            .raft()?
            .handle_transfer_leader(req)
            .await
            .map_err(fatal)?;
        reply(&resp)
    }

    async fn probe(
        &self,
        _request: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeReply>, Status> {
        let Some(Running { raft, applied, .. }) = self.raft.get() else {
            if self.pristine {
                return Ok(Response::new(pb::ProbeReply::default()));
            }
            return Err(Status::unavailable("this master is starting"));
        };
        let metrics = raft.metrics().borrow_watched().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let learners: Vec<u64> = membership.learner_ids().collect();
        let joined = {
            let applied = crate::raft::read(applied);
            voters
                .iter()
                .chain(&learners)
                .copied()
                .filter(|id| applied.state.has_joined(*id))
                .collect()
        };
        Ok(Response::new(pb::ProbeReply {
            initialized: !voters.is_empty(),
            voters,
            learners,
            joined,
        }))
    }

    async fn forward(
        &self,
        request: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        let deadline = crate::deadline::of(request.metadata());
        let forwarded: service::Request = decode(request.get_ref())?;
        let running = self.running()?;
        let result: Result<Executed, Error> =
            running.proposer.execute_by(forwarded, deadline).await;
        reply(&result)
    }

    async fn read_index(
        &self,
        request: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        let deadline = crate::deadline::of(request.metadata());
        let result: Result<u64, Error> = read_index_by(self.raft()?, deadline).await;
        reply(&result)
    }
}
