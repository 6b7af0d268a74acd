//! The connections a port accepts, bounded: at most so many open at once, each closed
//! once it has sent nothing for [`IDLE_TIMEOUT`].
//!
//! Without a bound, ~1,100 idle TCP connections that never said a word (no secret
//! needed) used up a master's file descriptors, and the next file its Raft log opened
//! failed. A connection past the limit is accepted and closed at once, so the listen
//! backlog never fills and the caller learns at once; a failed `accept` (out of
//! descriptors after all) backs off instead of spinning. Live HTTP/2 peers are never
//! idle that long: the server pings every connection more often than that (see
//! [`KEEPALIVE_INTERVAL`]), and a live peer answers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The connections a port serves: [`bounded`], then through a TLS handshake when the
/// port has TLS.
pub fn accept(
    listener: TcpListener,
    limit: usize,
    tls: Option<Arc<crate::tls::ServerTls>>,
) -> futures::stream::BoxStream<'static, io::Result<Accepted>> {
    use futures::StreamExt;
    let connections = Box::pin(bounded(listener, limit));
    match tls {
        None => connections.map(|c| c.map(Accepted::Plain)).boxed(),
        Some(tls) => crate::tls::incoming(connections, tls)
            .map(|c| c.map(|stream| Accepted::Tls(Box::new(stream))))
            .boxed(),
    }
}

/// A connection a port serves, plain or TLS.
pub enum Accepted {
    Plain(Bounded),
    Tls(Box<tokio_rustls::server::TlsStream<Bounded>>),
}

impl Connected for Accepted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match self {
            Accepted::Plain(stream) => stream.connect_info(),
            Accepted::Tls(stream) => stream.get_ref().0.connect_info(),
        }
    }
}

/// Forwards each I/O call to the plain or the TLS stream.
macro_rules! either {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            Accepted::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            Accepted::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl AsyncRead for Accepted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        either!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for Accepted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        either!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Accepted::Plain(s) => s.is_write_vectored(),
            Accepted::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        either!(self, s => s.poll_shutdown(cx))
    }
}

/// A connection that has sent nothing this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the server pings an HTTP/2 connection (well under [`IDLE_TIMEOUT`], so a
/// live peer's answers keep it open), and how long it waits for the answer.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(20);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// The first pause after `accept` fails; it doubles up to a second.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// The connections accepted on `listener`, at most `limit` open at once.
pub fn bounded(
    listener: TcpListener,
    limit: usize,
) -> impl Stream<Item = io::Result<Bounded>> + Send + 'static {
    let slots = Arc::new(Semaphore::new(limit));
    futures::stream::unfold(
        (listener, slots, ACCEPT_RETRY),
        move |(listener, slots, mut retry)| async move {
            loop {
                match listener.accept().await {
                    Ok((stream, from)) => {
                        retry = ACCEPT_RETRY;
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            tracing::warn!(%from, limit, "connection refused: too many open");
                            drop(stream);
                            continue;
                        };
                        // Nagle's algorithm off: a small gRPC reply held back waiting
                        // for the peer's delayed ACK costs tens of milliseconds.
                        let _ = stream.set_nodelay(true);
                        let accepted = Bounded::new(stream, slot);
                        return Some((Ok(accepted), (listener, slots, retry)));
                    }
                    Err(e) => {
                        tracing::warn!("accept failed, pausing {retry:?}: {e}");
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(Duration::from_secs(1));
                    }
                }
            }
        },
    )
}

/// An accepted connection holding one of its port's slots until it closes.
pub struct Bounded {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// When a byte was last read.
    last_read: Instant,
    /// Fires at the latest [`IDLE_TIMEOUT`] after `last_read`; moved on lazily, when it
    /// fires, rather than on every read of a busy connection.
    idle: Pin<Box<Sleep>>,
}

impl Bounded {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit) -> Self {
        Bounded {
            stream,
            _slot: slot,
            last_read: Instant::now(),
            idle: Box::pin(tokio::time::sleep(IDLE_TIMEOUT)),
        }
    }
}

impl Connected for Bounded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Bounded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.last_read = Instant::now();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => loop {
                match self.idle.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => {
                        let due = self.last_read + IDLE_TIMEOUT;
                        if due <= Instant::now() {
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                format!("nothing received for {IDLE_TIMEOUT:?}"),
                            )));
                        }
                        // Bytes came since it was set: wait out the rest from the last.
                        self.idle.as_mut().reset(due);
                    }
                }
            },
            ready => ready,
        }
    }
}

impl AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn past_the_limit_a_connection_is_closed_at_once_and_a_freed_slot_is_reused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = Box::pin(bounded(listener, 2));
        let _a = TcpStream::connect(addr).await.unwrap();
        let first = accepted.next().await.unwrap().unwrap();
        let _b = TcpStream::connect(addr).await.unwrap();
        let _second = accepted.next().await.unwrap().unwrap();
        // The third is accepted and dropped: its reader sees the end at once.
        let mut third = TcpStream::connect(addr).await.unwrap();
        let waiting = accepted.next();
        tokio::pin!(waiting);
        let mut byte = [0; 1];
        tokio::select! {
            read = third.read(&mut byte) => assert_eq!(read.unwrap_or(0), 0, "closed"),
            _ = &mut waiting => panic!("a third connection was let in"),
        }
        drop(first);
        let mut fourth = TcpStream::connect(addr).await.unwrap();
        let mut served = waiting.await.unwrap().unwrap();
        fourth.write_all(b"x").await.unwrap();
        served.read_exact(&mut byte).await.unwrap();
        assert_eq!(&byte, b"x");
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_silent_for_the_idle_timeout_is_closed_and_one_that_talks_is_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut accepted = Box::pin(bounded(listener, 4));
        let mut talker = TcpStream::connect(addr).await.unwrap();
        let mut talking = accepted.next().await.unwrap().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let mut silent = accepted.next().await.unwrap().unwrap();
        let mut byte = [0; 1];
        let silent_read = tokio::spawn(async move { silent.read(&mut byte).await });
        for _ in 0..3 {
            tokio::time::sleep(IDLE_TIMEOUT / 2).await;
            talker.write_all(b"x").await.unwrap();
            let mut got = [0; 1];
            talking.read_exact(&mut got).await.unwrap();
        }
        let error = silent_read.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    }
}
