//! A TCP proxy in front of a master's peer port that a test can cut, in the manner of
//! etcd's `pkg/proxy`: while cut, existing connections are dropped and new ones are
//! closed at once, so the master behind it hears nothing from the others.

use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    cut: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        // Connection tasks end when they see the sender gone.
        self.cut.send_replace(true);
    }
}

impl Proxy {
    /// Listens on `listen` (already bound) and forwards every connection to `target`.
    pub fn start(listen: std::net::TcpListener, target: String) -> Proxy {
        listen.set_nonblocking(true).unwrap();
        let listener = TcpListener::from_std(listen).unwrap();
        let (cut, _) = watch::channel(false);
        let cut = Arc::new(cut);
        let accepting = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *accepting.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut cut = accepting.subscribe();
                let target = target.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { cut, task }
    }

    /// Cuts (`true`) or restores (`false`) every connection through this proxy.
    pub fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}
