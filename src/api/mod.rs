//! The client port: the public gRPC API of every master.
//!
//! Protobuf types stay here; handlers turn requests into domain commands or reads,
//! and every failure into a `tonic::Status` through [`crate::error::Error`].

mod cluster;
mod convert;
mod session;

use std::time::{SystemTime, UNIX_EPOCH};

use openraft::ReadPolicy;
use openraft::errors::{ClientWriteError, RaftError};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::auth::BearerCheck;
use crate::error::Error;
use crate::raft::{NodeId, Raft, SharedApplied};
use crate::state::{Command, Limits, Op, Outcome};

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

    /// Stamps `op` with the leader's clock and the request id, proposes it, and returns
    /// what applying it produced.
    async fn propose(&self, request_id: String, op: Op) -> Result<Outcome, Error> {
        let command = Command {
            request_id: optional(request_id),
            at: now_millis(),
            op,
        };
        match self.raft.client_write(command).await {
            Ok(response) => response.data.map_err(Error::Domain),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(Error::Unavailable(format!(
                    "master {} is not the leader (leader: {})",
                    self.id,
                    f.leader_id.map_or("unknown".into(), |id| id.to_string())
                )))
            }
            Err(RaftError::APIError(other)) => Err(Error::Unavailable(other.to_string())),
            Err(RaftError::Fatal(fatal)) => {
                Err(Error::Unavailable(format!("raft stopped: {fatal}")))
            }
        }
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

/// The leader's wall clock, in milliseconds since the UNIX epoch.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
