//! Every answer on the client port names the master that gave it and the leader that
//! master knows, in the response headers `chorus-master-id` and `chorus-leader-id`
//! (`0`: no leader known). A client can then send its next calls straight to the
//! leader: a write skips the forwarding hop, a linearizable read the read-index hop.
//! The typed [`crate::client::Client`] does.

use std::pin::Pin;
use std::task::{Context, Poll};

use openraft::async_runtime::WatchReceiver;
use tonic::codegen::http::{HeaderValue, Request, Response};

use crate::raft::{NodeId, Raft};

/// The header naming the answering master.
pub const MASTER_HEADER: &str = "chorus-master-id";
/// The header naming the leader the answering master knows.
pub const LEADER_HEADER: &str = "chorus-leader-id";

/// Adds both headers to every response.
#[derive(Clone)]
pub struct LeaderHintLayer {
    id: NodeId,
    raft: Raft,
}

impl LeaderHintLayer {
    pub fn new(id: NodeId, raft: Raft) -> Self {
        LeaderHintLayer { id, raft }
    }
}

impl<S> tower::Layer<S> for LeaderHintLayer {
    type Service = LeaderHint<S>;

    fn layer(&self, inner: S) -> LeaderHint<S> {
        LeaderHint {
            inner,
            master: HeaderValue::from(self.id),
            raft: self.raft.clone(),
        }
    }
}

/// The service [`LeaderHintLayer`] wraps around the client port's router.
#[derive(Clone)]
pub struct LeaderHint<S> {
    inner: S,
    master: HeaderValue,
    raft: Raft,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower::Service<Request<B>> for LeaderHint<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        let master = self.master.clone();
        let raft = self.raft.clone();
        Box::pin(async move {
            let mut response = answer.await?;
            // Read when the answer is ready: a write that waited out an election
            // names the leader that executed it.
            let leader = raft.metrics().borrow_watched().current_leader.unwrap_or(0);
            let headers = response.headers_mut();
            headers.insert(MASTER_HEADER, master);
            headers.insert(LEADER_HEADER, HeaderValue::from(leader));
            Ok(response)
        })
    }
}
