//! Real Chorus masters for whoever needs them: the integration tests in `tests/`, the
//! chaos suite and the load generator all start, stop and watch masters through this
//! crate, and nothing else in the workspace spawns one.
//!
//! - [`free_port`]: loopback ports for masters to bind, without the race of binding
//!   port 0 and dropping it (another test's outgoing connection may take it meanwhile);
//! - [`Processes`]: child processes by id, logging to files, killed on drop;
//! - [`Network`]: fault-injecting TCP proxies on the peer links (cut, delay, isolate);
//! - [`Cluster`]: a group of `chorus serve` processes on loopback with their data dirs,
//!   logs and addresses, restartable, optionally behind the proxies, and what they
//!   report (status, leader, caught up);
//! - [`HttpClient`]: a kept-alive HTTP/1.1 client of a master's HTTP port;
//! - [`WebhookReceiver`]: a real HTTP receiver of the webhooks, which can refuse or drop.

mod cluster;
mod disk;
mod http;
mod port;
mod process;
mod proxy;
mod webhook;

pub use cluster::{Cluster, Master, Options, Program};
pub use disk::SmallDisk;
pub use http::{HttpClient, Reply};
pub use port::{free_addr, free_listener, free_port};
pub use process::{Processes, cpu_seconds};
pub use proxy::{Fault, Network};
pub use webhook::{Delivery, Mode, WebhookReceiver};
