//! Raft on openraft: the handle type and the thin adapter from openraft's state machine
//! to [`crate::state`]. The type configuration itself sits below, in
//! [`crate::type_config`], so that storage needs nothing from here.

mod proposal;
mod state_machine;

pub use proposal::{MAX_ENTRY_BYTES, leading_term, not_leader, now_millis, propose};
pub use state_machine::{Applied, SharedApplied, Snapshot, StateMachineStore, read};

pub use crate::type_config::{
    Entry, LogId, NodeId, SnapshotMeta, StoredMembership, TypeConfig, Vote,
};

/// The Raft handle of a master.
pub type Raft = openraft::Raft<TypeConfig, StateMachineStore>;
