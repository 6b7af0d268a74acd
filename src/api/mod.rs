//! The client port: the public gRPC API of every master.
//!
//! Protobuf types stay here; handlers turn requests into domain commands or reads,
//! and every failure into a `tonic::Status` through [`crate::error::Error`].

mod cluster;
mod convert;
mod session;

use openraft::ReadPolicy;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::auth::BearerCheck;
use crate::error::Error;
use crate::raft::{NodeId, Raft, SharedApplied};
use crate::state::{Limits, Op, Outcome};

/// Generated protobuf types of the public API.
pub mod pb {
    tonic::include_proto!("chorus.v1");
}

/// Everything the API handlers share.
#[derive(Clone)]
pub struct ClientApi {
    id: NodeId,
    raft: Raft,
    applied: SharedApplied,
    limits: Limits,
    max_message_bytes: usize,
    /// The state digest and the applied index it was computed at: hashing the whole
    /// state is O(state), and status is polled far more often than the state changes.
    digest: std::sync::Arc<std::sync::Mutex<(u64, String)>>,
}

impl ClientApi {
    /// The API of master `id`.
    pub fn new(
        id: NodeId,
        raft: Raft,
        applied: SharedApplied,
        limits: Limits,
        max_message_bytes: usize,
    ) -> Self {
        ClientApi {
            id,
            raft,
            applied,
            limits,
            max_message_bytes,
            digest: Default::default(),
        }
    }

    /// A router serving every service, each behind the API-secret check.
    pub fn router(self, check: BearerCheck) -> Router {
        let cluster = pb::cluster_service_server::ClusterServiceServer::new(self.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        let session = pb::session_service_server::SessionServiceServer::new(self.clone())
            .max_decoding_message_size(self.max_message_bytes)
            .max_encoding_message_size(self.max_message_bytes);
        tonic::transport::Server::builder()
            .add_service(InterceptedService::new(cluster, check.clone()))
            .add_service(InterceptedService::new(session, check))
    }

    /// Proposes `op` (see [`crate::raft::propose`]); an empty request id means none.
    async fn propose(&self, request_id: String, op: Op) -> Result<Outcome, Error> {
        crate::raft::propose(&self.raft, optional(request_id), op).await
    }

    /// Waits until a read of the local state is as fresh as `consistency` asks.
    async fn read_barrier(&self, consistency: i32) -> Result<(), Error> {
        match pb::Consistency::try_from(consistency) {
            Ok(pb::Consistency::Stale) => Ok(()),
            Ok(pb::Consistency::Linearizable) => self
                .raft
                .ensure_linearizable(ReadPolicy::ReadIndex)
                .await
                .map(|_| ())
                .map_err(|e| {
                    Error::Unavailable(format!("linearizable read not possible here: {e}"))
                }),
            Err(_) => Err(Error::invalid(
                "consistency",
                format!("unknown value {consistency}"),
            )),
        }
    }
}

/// Proto3 has no absent strings: an empty one means "not given".
fn optional(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Parses a wire name, or takes the default when the field is empty.
fn parse_or_default<T>(value: &str) -> Result<T, Error>
where
    T: Default + std::str::FromStr<Err = crate::state::Error>,
{
    if value.is_empty() {
        Ok(T::default())
    } else {
        value.parse().map_err(Error::Domain)
    }
}
