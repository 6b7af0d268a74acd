//! Chorus: a highly available control plane for video-conferencing clusters.
//!
//! Three or five masters form one Raft group (openraft) whose replicated state machine
//! ([`state`]) holds the sessions, their connections, the media-node registry and the
//! license trust counters. The layers, from the inside out:
//!
//! - [`state`]: the pure domain state machine: `apply(index, Command) -> Response`;
//!   beside it [`type_config`] (openraft's type configuration), [`codec`] (the one
//!   binary encoding) and [`error`] (the one error of the request path);
//! - [`storage`]: the Raft log, vote and snapshots in sled, fsync-durable;
//! - [`raft`]: the Raft handle and the adapter from its state machine to [`state`];
//! - [`fleet`]: the leader's soft view of the media nodes, and autoscaling advice;
//! - [`service`]: the service layer: the application's requests, their validation,
//!   the leader's side of them and the route to the leader, under every front end;
//! - [`network`]: Raft RPCs and forwarding between masters over tonic (the peer port);
//! - [`api`]: the public gRPC API (the client port);
//! - [`client`]: the typed client of that API, with failover and retries;
//! - [`events`]: events as applications receive them: the Watch feed, retention, webhooks;
//! - [`leader`]: tasks that run only on the leader and act by proposing commands;
//! - [`license`]: license files and the license authority;
//! - [`master`]: one master, its start-up and graceful shutdown;
//! - [`agent`]: the media-node sidecar;
//! - [`cli`]: the `chorus` subcommands;
//! - [`failpoint`]: fault injection for the tests and the chaos suite (a build feature).

pub mod agent;
pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod codec;
pub mod config;
pub mod deadline;
pub mod error;
pub mod events;
pub mod failpoint;
pub mod fleet;
pub mod http;
pub mod leader;
pub mod license;
pub mod master;
pub mod network;
pub mod raft;
pub mod service;
pub mod state;
pub mod storage;
pub mod tls;
pub mod type_config;
