//! The fault-injecting TCP proxies on the peer links, in the manner of etcd's
//! `pkg/proxy`.
//!
//! Every master's peer port sits behind one proxy, and the membership lists the
//! proxies' addresses, so every Raft or forwarding connection between masters passes
//! through one. A proxy tells which master opened a connection by looking the
//! connecting socket up in `/proc/net/tcp` and the masters' `/proc/<pid>/fd`, so each
//! direction of each pair (`from` opened the connection, `to` is behind the proxy) is
//! controlled on its own: cut (existing connections dropped, new ones closed at once)
//! or delayed with jitter. A master can also be isolated: every connection to it is cut,
//! whoever opened it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The fault on one directed link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fault {
    /// Nothing passes.
    pub cut: bool,
    /// Every chunk waits this long...
    pub delay_ms: u64,
    /// ...plus up to this much more, at random.
    pub jitter_ms: u64,
}

/// The faults of every link and the masters' pids, shared by all proxies.
#[derive(Clone, Default)]
pub struct Network {
    faults: Arc<Mutex<BTreeMap<(u64, u64), Fault>>>,
    isolated: Arc<Mutex<BTreeSet<u64>>>,
    pids: Arc<Mutex<BTreeMap<u64, u32>>>,
    changed: Arc<watch::Sender<u64>>,
    accepting: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    closed: Arc<AtomicBool>,
}

impl Network {
    pub fn new() -> Self {
        Network {
            changed: Arc::new(watch::channel(0).0),
            ..Default::default()
        }
    }

    /// Records that master `id` runs as process `pid`.
    pub fn set_pid(&self, id: u64, pid: u32) {
        self.pids.lock().unwrap().insert(id, pid);
    }

    /// Sets the fault of the link `from` → `to`.
    pub fn set(&self, from: u64, to: u64, fault: Fault) {
        self.faults.lock().unwrap().insert((from, to), fault);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Cuts (`true`) or restores (`false`) every connection to master `to`, whoever
    /// opened it: the master hears nothing from the others.
    pub fn isolate(&self, to: u64, isolated: bool) {
        let mut set = self.isolated.lock().unwrap();
        if isolated {
            set.insert(to);
        } else {
            set.remove(&to);
        }
        drop(set);
        self.changed.send_modify(|v| *v += 1);
    }

    /// Removes every fault and isolation.
    pub fn heal(&self) {
        self.faults.lock().unwrap().clear();
        self.isolated.lock().unwrap().clear();
        self.changed.send_modify(|v| *v += 1);
    }

    /// Stops accepting on every proxy and ends every relayed connection.
    pub fn close(&self) {
        for task in self.accepting.lock().unwrap().drain(..) {
            task.abort();
        }
        // Relays end when they see every link cut.
        self.closed.store(true, Ordering::Relaxed);
        self.changed.send_modify(|v| *v += 1);
    }

    fn fault(&self, from: Option<u64>, to: u64) -> Fault {
        if self.closed.load(Ordering::Relaxed) || self.isolated.lock().unwrap().contains(&to) {
            return Fault {
                cut: true,
                ..Fault::default()
            };
        }
        from.and_then(|from| self.faults.lock().unwrap().get(&(from, to)).copied())
            .unwrap_or_default()
    }

    /// The master whose process holds the socket from local `port` to remote `to_port`.
    fn owner_of(&self, port: u16, to_port: u16) -> Option<u64> {
        let inode = socket_inode(port, to_port)?;
        let pids = self.pids.lock().unwrap().clone();
        pids.into_iter().find_map(|(id, pid)| {
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .any(|link| link.to_string_lossy() == format!("socket:[{inode}]"))
                .then_some(id)
        })
    }

    /// Serves the proxy of master `to` on `listener`, forwarding to `target`.
    pub fn serve(&self, to: u64, listener: std::net::TcpListener, target: String) {
        listener.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let listen_port = listener.local_addr().unwrap().port();
        let network = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, peer)) = listener.accept().await else {
                    continue;
                };
                let from = network.owner_of(peer.port(), listen_port);
                if from.is_none() {
                    eprintln!(
                        "proxy {to}: connection from an unknown process (port {})",
                        peer.port()
                    );
                }
                if network.fault(from, to).cut {
                    continue;
                }
                let network = network.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&target).await {
                        network.relay(inbound, outbound, from, to).await;
                    }
                });
            }
        });
        self.accepting.lock().unwrap().push(task.abort_handle());
    }

    /// Relays both ways until either side closes or the link is cut.
    async fn relay(&self, inbound: TcpStream, outbound: TcpStream, from: Option<u64>, to: u64) {
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (in_read, in_write) = inbound.into_split();
        let (out_read, out_write) = outbound.into_split();
        let mut cut = self.changed.subscribe();
        let network = self.clone();
        let is_cut = move || network.fault(from, to).cut;
        let there = self.pump(in_read, out_write, from, to);
        let back = self.pump(out_read, in_write, from, to);
        tokio::select! {
            _ = there => {}
            _ = back => {}
            _ = async { while cut.changed().await.is_ok() { if is_cut() { return; } } } => {}
        }
    }

    /// Copies one direction, delaying each chunk as the link's fault says.
    async fn pump(
        &self,
        mut from_side: tokio::net::tcp::OwnedReadHalf,
        mut to_side: tokio::net::tcp::OwnedWriteHalf,
        from: Option<u64>,
        to: u64,
    ) {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from_side.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let fault = self.fault(from, to);
            if fault.cut {
                return;
            }
            if fault.delay_ms > 0 || fault.jitter_ms > 0 {
                let jitter = if fault.jitter_ms > 0 {
                    rand::rng().random_range(0..=fault.jitter_ms)
                } else {
                    0
                };
                tokio::time::sleep(Duration::from_millis(fault.delay_ms + jitter)).await;
            }
            if to_side.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    }
}

/// The inode of the TCP socket from local `port` to remote `to_port`. Both ports are
/// needed: Linux reuses an ephemeral port for connections to different destinations.
fn socket_inode(port: u16, to_port: u16) -> Option<u64> {
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(remote), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(9))
            else {
                continue;
            };
            let port_of = |address: &str| {
                address
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if port_of(local) == Some(port) && port_of(remote) == Some(to_port) {
                return inode.parse().ok().filter(|i| *i != 0);
            }
        }
    }
    None
}
