//! The sending side of the append stream against a scripted peer on loopback: a real
//! tonic server whose `StreamAppend` hands every request it receives to the test and
//! answers only what the test tells it to.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use openraft::errors::RPCError;
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, StreamAppendError, StreamAppendResult,
};
use openraft::{BasicNode, EntryPayload};
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

use super::pb::peer_server::{Peer, PeerServer};
use super::pb::{self, SnapshotChunk};
use super::{PeerNetwork, client::PeerConnection, client::within_budget};
use crate::auth::BearerCheck;
use crate::codec;
use crate::raft::{Entry, TypeConfig, Vote};

type C = TypeConfig;

const SECRET: &str = "test-cluster-secret";
/// Long enough that no result in these tests is overdue by accident.
const PATIENCE: Duration = Duration::from_secs(10);

/// A peer whose append streams are driven by the test.
struct Scripted {
    /// Every request received, on any stream, as it arrives.
    received: mpsc::UnboundedSender<AppendEntriesRequest<C>>,
    /// The results each `StreamAppend` call answers with, one channel per call in the
    /// order they open.
    answers: Mutex<VecDeque<mpsc::UnboundedReceiver<StreamAppendResult<C>>>>,
    /// How many `StreamAppend` calls were opened.
    opened: AtomicUsize,
}

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not scripted"))
}

#[tonic::async_trait]
impl Peer for Scripted {
    type StreamAppendStream = futures::stream::BoxStream<'static, Result<pb::Payload, Status>>;

    async fn stream_append(
        &self,
        request: Request<Streaming<pb::Payload>>,
    ) -> Result<Response<Self::StreamAppendStream>, Status> {
        self.opened.fetch_add(1, Ordering::SeqCst);
        let answers = self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .ok_or_else(|| Status::resource_exhausted("no more streams scripted"))?;
        let mut requests = request.into_inner();
        let received = self.received.clone();
        tokio::spawn(async move {
            while let Some(Ok(payload)) = requests.next().await {
                let _ = received.send(codec::decode(&payload.data).unwrap());
            }
        });
        let answers = futures::stream::unfold(answers, |mut answers| async move {
            let answer = answers.recv().await?;
            let data = codec::encode(&answer).unwrap();
            Some((Ok(pb::Payload { data }), answers))
        });
        Ok(Response::new(Box::pin(answers)))
    }

    async fn vote(&self, _: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        unused()
    }

    async fn pre_vote(&self, _: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        unused()
    }

    async fn install_snapshot(
        &self,
        _: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<pb::Payload>, Status> {
        unused()
    }

    async fn transfer_leader(
        &self,
        _: Request<pb::Payload>,
    ) -> Result<Response<pb::Payload>, Status> {
        unused()
    }

    async fn probe(
        &self,
        _: Request<pb::ProbeRequest>,
    ) -> Result<Response<pb::ProbeReply>, Status> {
        unused()
    }

    async fn forward(&self, _: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        unused()
    }

    async fn read_index(&self, _: Request<pb::Payload>) -> Result<Response<pb::Payload>, Status> {
        unused()
    }
}

/// The scripted peer, and the connection of master 1 to it.
struct Harness {
    connection: PeerConnection,
    received: mpsc::UnboundedReceiver<AppendEntriesRequest<C>>,
    /// The answers of each `StreamAppend` call, in the order the calls open.
    answers: Vec<mpsc::UnboundedSender<StreamAppendResult<C>>>,
    peer: Arc<Scripted>,
}

impl Harness {
    /// Sends `request` alone, the peer's `stream`-th call answering `result`.
    async fn single_append(
        &mut self,
        stream: usize,
        request: AppendEntriesRequest<C>,
        result: StreamAppendResult<C>,
    ) -> AppendEntriesResponse<C> {
        self.answers[stream].send(result).unwrap();
        self.connection
            .append_entries(request, RPCOption::new(PATIENCE))
            .await
            .unwrap()
    }
}

/// A scripted peer that accepts `streams` calls of `StreamAppend`.
async fn harness(streams: usize) -> Harness {
    let (received_tx, received) = mpsc::unbounded_channel();
    let (answers, receivers): (Vec<_>, VecDeque<_>) =
        (0..streams).map(|_| mpsc::unbounded_channel()).unzip();
    let peer = Arc::new(Scripted {
        received: received_tx,
        answers: Mutex::new(receivers),
        opened: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let check = BearerCheck::new(SECRET);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(InterceptedService::new(
                PeerServer::from_arc(peer.clone()),
                check,
            ))
            .add_service(super::pb::membership_server::MembershipServer::new(
                super::proof::Prover::new(2, &addr, SECRET),
            ))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let mut network = PeerNetwork::new(1, SECRET, 1 << 20).unwrap();
    let connection = network.new_client(2, &BasicNode::new(addr)).await;
    Harness {
        connection,
        received,
        answers,
        peer,
    }
}

/// An append of `n` blank entries after index `prev`, in term 1.
fn append(prev: u64, n: u64) -> AppendEntriesRequest<C> {
    let log_id = |index| openraft::testing::log_id::<C>(1, 1, index);
    AppendEntriesRequest {
        vote: Vote::new_committed(1, 1),
        prev_log_id: (prev > 0).then(|| log_id(prev)),
        leader_commit: None,
        entries: (prev + 1..=prev + n)
            .map(|index| Entry {
                log_id: log_id(index),
                payload: EntryPayload::Blank,
            })
            .collect(),
    }
}

fn matching(index: u64) -> StreamAppendResult<C> {
    Ok(Some(openraft::testing::log_id::<C>(1, 1, index)))
}

/// An open-ended input: openraft's request stream as the test feeds it.
fn input() -> (
    mpsc::UnboundedSender<AppendEntriesRequest<C>>,
    futures::stream::BoxStream<'static, AppendEntriesRequest<C>>,
) {
    let (requests, input) = mpsc::unbounded_channel();
    let input = futures::stream::unfold(input, |mut input| async move {
        Some((input.recv().await?, input))
    });
    (requests, Box::pin(input))
}

#[tokio::test]
async fn a_request_leaves_after_the_result_before_it_and_results_keep_their_order() {
    let mut h = harness(1).await;
    let (requests, input) = input();
    let mut results = h
        .connection
        .stream_append(input, RPCOption::new(PATIENCE))
        .await
        .unwrap();
    for prev in [0, 2, 4] {
        requests.send(append(prev, 2)).unwrap();
    }
    for (prev, last) in [(0, 2), (2, 4), (4, 6)] {
        // openraft polls the results all along; the peer's side runs meanwhile.
        let peer_side = async {
            let received = tokio::time::timeout(PATIENCE, h.received.recv())
                .await
                .expect("a request did not leave")
                .unwrap();
            assert_eq!(
                received.prev_log_id.map(|id| id.index),
                (prev > 0).then_some(prev)
            );
            // The next request, queued since the start, stays until this one has its
            // result.
            assert!(
                tokio::time::timeout(Duration::from_millis(200), h.received.recv())
                    .await
                    .is_err(),
                "a request left before the result of the one before it"
            );
            h.answers[0].send(matching(last)).unwrap();
        };
        let (result, ()) = tokio::join!(results.next(), peer_side);
        assert_eq!(result.unwrap().unwrap(), matching(last));
    }
}

#[tokio::test]
async fn append_streams_and_single_appends_share_one_grpc_stream() {
    let mut h = harness(1).await;
    for prev in [0, 1] {
        h.answers[0].send(matching(prev + 1)).unwrap();
        let results: Vec<_> = h
            .connection
            .stream_append(
                futures::stream::iter([append(prev, 1)]),
                RPCOption::new(PATIENCE),
            )
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].as_ref().unwrap(), &matching(prev + 1));
    }
    let response = h.single_append(0, append(2, 1), matching(3)).await;
    assert_eq!(response, AppendEntriesResponse::Success);
    assert_eq!(h.peer.opened.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_overdue_result_ends_the_stream_and_the_next_opens_a_new_grpc_stream() {
    let option = RPCOption::new(Duration::from_millis(200));
    let mut h = harness(2).await;
    let (requests, input) = input();
    let mut results = h
        .connection
        .stream_append(input, option.clone())
        .await
        .unwrap();
    // Waiting for openraft's next request has no deadline.
    assert!(
        tokio::time::timeout(option.soft_ttl() * 3, results.next())
            .await
            .is_err(),
        "an idle stream ended"
    );
    requests.send(append(0, 1)).unwrap();
    h.answers[0].send(matching(1)).unwrap();
    assert_eq!(results.next().await.unwrap().unwrap(), matching(1));
    // The next request is never answered.
    let started = tokio::time::Instant::now();
    requests.send(append(1, 1)).unwrap();
    match results.next().await {
        Some(Err(RPCError::Timeout(_))) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        started.elapsed() >= option.soft_ttl(),
        "timed out {:?} after the request, before its deadline",
        started.elapsed()
    );
    assert!(
        results.next().await.is_none(),
        "the stream ends after a timeout"
    );
    drop(results);

    // The overdue result must not be read as the next request's: a new call carries it.
    let response = h.single_append(1, append(1, 1), matching(2)).await;
    assert_eq!(response, AppendEntriesResponse::Success);
    assert_eq!(h.peer.opened.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_single_append_reads_its_result_as_an_append_entries_response() {
    let cases = [
        (matching(3), AppendEntriesResponse::Success),
        (
            matching(1),
            AppendEntriesResponse::PartialSuccess(matching(1).unwrap()),
        ),
        (
            Err(StreamAppendError::Conflict(openraft::testing::log_id::<C>(
                1, 1, 1,
            ))),
            AppendEntriesResponse::Conflict,
        ),
        (
            Err(StreamAppendError::HigherVote(Vote::new(2, 3))),
            AppendEntriesResponse::HigherVote(Vote::new(2, 3)),
        ),
    ];
    for (answer, expected) in cases {
        let mut h = harness(1).await;
        let response = h.single_append(0, append(1, 2), answer).await;
        assert_eq!(response, expected);
    }
}

#[test]
fn an_append_over_the_budget_is_cut_to_a_prefix_committing_no_further() {
    let mut request = append(4, 10);
    request.leader_commit = Some(openraft::testing::log_id::<C>(1, 1, 14));
    let whole = codec::encoded_len(&request).unwrap();
    assert!(within_budget(&request, whole).is_none(), "it fits whole");

    let entry = codec::encoded_len(&request.entries[0]).unwrap();
    let prefix = within_budget(&request, entry * 3).unwrap();
    assert_eq!(prefix.entries, request.entries[..3]);
    assert_eq!(prefix.prev_log_id, request.prev_log_id);
    assert_eq!(prefix.leader_commit, Some(prefix.entries[2].log_id));

    // One entry always goes, whatever the budget.
    assert_eq!(within_budget(&request, 1).unwrap().entries.len(), 1);
}
