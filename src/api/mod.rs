//! The client port: the public gRPC API of every master.
//!
//! Protobuf types stay here; handlers turn requests into domain commands or reads,
//! and every failure into a `tonic::Status` through [`crate::error::Error`].

mod cluster;

use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::Router;

use crate::auth::BearerCheck;
use crate::raft::{NodeId, Raft, SharedApplied};
use crate::state::Limits;

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
        tonic::transport::Server::builder().add_service(InterceptedService::new(cluster, check))
    }
}
