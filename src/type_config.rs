//! The openraft type configuration of Chorus: the bottom layer that storage, Raft and
//! the peer network share, beside [`crate::state`] whose types it names.
//!
//! Log entries carry a [`Command`]; applying one yields a [`Response`]. Nodes are
//! identified by `u64` and addressed by their peer-port address ([`BasicNode`]).

use openraft::BasicNode;

use crate::state::{Command, Response};

openraft::declare_raft_types!(
    /// Chorus's Raft types.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = u64,
        Node = BasicNode,
);

/// A master's Raft node id.
pub type NodeId = u64;
/// A log entry of Chorus's log.
pub type Entry = openraft::type_config::alias::EntryOf<TypeConfig>;
/// A log id (term, leader, index).
pub type LogId = openraft::type_config::alias::LogIdOf<TypeConfig>;
/// A persisted vote.
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
/// A membership config with the log id that introduced it.
pub type StoredMembership = openraft::type_config::alias::StoredMembershipOf<TypeConfig>;
/// Metadata of a snapshot.
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
