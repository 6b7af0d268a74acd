//! Chorus: a highly available control plane for video-conferencing clusters.
//!
//! Three or five masters form one Raft group (openraft) whose replicated state machine
//! ([`state`]) holds the sessions, their connections, the media-node registry and the
//! license trust counters. The layers, from the inside out:
//!
//! - [`state`]: the pure domain state machine: `apply(index, Command) -> Response`;
//! - [`storage`]: the Raft log, vote and snapshots in sled, fsync-durable;
//! - [`raft`]: openraft's types and the adapter from its state machine to [`state`];
//! - [`network`]: Raft RPCs between masters over tonic (the peer port);
//! - [`api`]: the public gRPC API (the client port);
//! - [`client`]: the typed client of that API, with failover and retries;
//! - [`leader`]: tasks that run only on the leader and act by proposing commands;
//! - [`license`]: license files and the license authority;
//! - [`master`]: one master, its start-up and graceful shutdown;
//! - [`agent`]: the media-node sidecar;
//! - [`cli`]: the `chorus` subcommands.

pub mod agent;
pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod deadline;
pub mod error;
pub mod leader;
pub mod license;
pub mod master;
pub mod network;
pub mod raft;
pub mod state;
pub mod storage;
