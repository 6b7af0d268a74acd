//! Raft on openraft: the type configuration and the state-machine adapter.

mod proposal;
mod state_machine;
mod types;

pub use proposal::{leading_term, not_leader, now_millis, propose};
pub use state_machine::{Applied, SharedApplied, Snapshot, StateMachineStore, read};
pub use types::{Entry, LogId, NodeId, Raft, SnapshotMeta, StoredMembership, TypeConfig, Vote};
