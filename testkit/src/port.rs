//! Loopback ports for masters to bind.

use std::net::TcpListener;

/// A free loopback port for a master to bind.
///
/// Binding port 0 and dropping the listener is racy: between the drop and the master's
/// bind, an outgoing connection of a concurrently running test may take the port as its
/// ephemeral source port. Ports here come from below Linux's ephemeral range
/// (32768–60999), where no outgoing connection lands, and a process-wide counter keeps
/// concurrent users in one process from picking the same one; each is checked free.
pub fn free_port() -> u16 {
    let listener = free_listener();
    listener
        .local_addr()
        .expect("a bound listener has an address")
        .port()
}

/// A listener on a free loopback port, from the same range as [`free_port`], for a
/// listener of the caller's own (a proxy): bound at once, so there is no gap between
/// finding the port free and taking it.
pub fn free_listener() -> TcpListener {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Processes start at different offsets, so concurrent test binaries rarely collide.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (u64::from(std::process::id()) * 7919 % u64::from(SPAN)) as u32,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener;
        }
    }
}

/// `127.0.0.1:<a free port>`.
pub fn free_addr() -> String {
    format!("127.0.0.1:{}", free_port())
}
