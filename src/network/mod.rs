//! The peer port: Raft RPCs between masters over tonic.
//!
//! - [`PeerNetwork`] is openraft's network factory. It keeps one long-lived HTTP/2
//!   channel per peer address, shared by every replication stream to that peer.
//! - [`PeerServer`] answers the peer RPCs on the receiving master.
//!
//! Raft messages travel as postcard-encoded openraft types inside protobuf `bytes`
//! (see `proto/chorus/peer/v1/peer.proto`). Every call carries the cluster secret, sent
//! only to an address that proved its membership first ([`proof`]). A
//! replication stream is one long-lived gRPC stream of AppendEntries and their results;
//! the sender holds each result to openraft's `RPCOption` deadline. The other calls are
//! unary, each with that deadline.

mod client;
pub mod proof;
mod reach;
mod server;
#[cfg(test)]
mod tests;

pub use client::{PeerNetwork, probe};
pub use server::{LeaderContact, PeerServer};

/// Generated protobuf types of the peer port.
pub mod pb {
    tonic::include_proto!("chorus.peer.v1");
}

/// A snapshot travels in chunks of this size: small enough to interleave with other
/// traffic on the shared channel, large enough to keep per-message overhead negligible.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// The largest snapshot a master accepts: the whole state is held in memory twice while
/// installing, so this bounds a malicious or broken sender, not a legitimate state.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024 * 1024;
