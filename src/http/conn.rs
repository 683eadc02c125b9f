//! One connection's clock. [`Timed`] wraps the socket (below TLS) and closes a connection
//! that takes longer than the header read timeout from the first byte of a request (or of
//! the connection) to its handler starting, or that stays idle between requests longer than
//! the keep-alive timeout. While a request is being handled (a long export, an endless
//! `/mpegts` body, a publisher's upload) there is no deadline. Works the same for HTTP/1.1,
//! HTTP/2 and TLS handshakes, which hyper's own header timeout does not cover.

use crate::stats::names;
use futures_util::task::AtomicWaker;
use metrics::counter;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// Requests of one connection being handled (a response body still being sent counts).
#[derive(Debug, Default)]
pub(super) struct Busy {
    requests: AtomicUsize,
    /// The connection's reader: woken when the last request ends, so that the keep-alive
    /// deadline starts even if nothing else wakes the connection.
    reader: AtomicWaker,
}

impl Busy {
    /// Counts a request until the guard (kept with its response body) drops.
    pub(super) fn start(self: &Arc<Self>) -> BusyGuard {
        self.requests.fetch_add(1, Ordering::AcqRel);
        BusyGuard(self.clone())
    }

    fn busy(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }
}

#[derive(Debug)]
pub(super) struct BusyGuard(Arc<Busy>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        if self.0.requests.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of the next request (keep-alive deadline), or of the
    /// first one (header deadline).
    Idle,
    /// Bytes of a request arrived; its handler has not started (header deadline).
    Head,
    /// A handler runs: no deadline.
    Handling,
}

/// A socket with the front door's deadlines.
#[derive(Debug)]
pub(super) struct Timed<IO> {
    io: IO,
    busy: Arc<Busy>,
    phase: Phase,
    deadline: Pin<Box<Sleep>>,
    header: Duration,
    idle: Duration,
}

impl<IO> Timed<IO> {
    pub(super) fn new(io: IO, busy: Arc<Busy>, header: Duration, idle: Duration) -> Self {
        Timed {
            io,
            busy,
            phase: Phase::Idle,
            // A new connection must send its first request (or TLS hello) in time.
            deadline: Box::pin(tokio::time::sleep(header)),
            header,
            idle,
        }
    }

    fn follow_handlers(&mut self) {
        match (self.phase, self.busy.busy()) {
            (Phase::Idle | Phase::Head, true) => self.phase = Phase::Handling,
            (Phase::Handling, false) => {
                self.phase = Phase::Idle;
                self.deadline.as_mut().reset(Instant::now() + self.idle);
            }
            _ => {}
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Timed<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.follow_handlers();
                if buf.filled().len() > before && this.phase == Phase::Idle {
                    this.phase = Phase::Head;
                    this.deadline.as_mut().reset(Instant::now() + this.header);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.busy.reader.register(cx.waker());
                this.follow_handlers();
                if this.phase != Phase::Handling && this.deadline.as_mut().poll(cx).is_ready() {
                    let reason = if this.phase == Phase::Head {
                        "header_timeout"
                    } else {
                        "idle_timeout"
                    };
                    counter!(names::CONNECTIONS_REFUSED, "reason" => reason).increment(1);
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, reason)));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Timed<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Open connections against `[server] max_connections`.
#[derive(Debug, Default)]
pub(super) struct Connections(AtomicUsize);

impl Connections {
    /// Takes a place, or `None` when `max` are open.
    pub(super) fn open(self: &Arc<Self>, max: usize) -> Option<Open> {
        let mut n = self.0.load(Ordering::Acquire);
        loop {
            if n >= max {
                return None;
            }
            match self
                .0
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    metrics::gauge!(names::CONNECTIONS_OPEN).increment(1.0);
                    return Some(Open(self.clone()));
                }
                Err(now) => n = now,
            }
        }
    }
}

/// One open connection's place.
#[derive(Debug)]
pub(super) struct Open(Arc<Connections>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!(names::CONNECTIONS_OPEN).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn silent_and_slow_heads_time_out_handled_requests_do_not() {
        let busy = Arc::new(Busy::default());
        let (_client, server) = tokio::io::duplex(1024);
        let mut timed = Timed::new(
            server,
            busy.clone(),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        let mut buf = [0u8; 64];
        // Silent connection: closed after the header timeout.
        let err = timed.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(1024);
        let mut timed = Timed::new(
            server,
            busy.clone(),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(timed.read(&mut buf).await.unwrap() > 0);
        // The handler starts: no deadline while it runs (even for minutes).
        let guard = busy.start();
        let read = tokio::time::timeout(Duration::from_secs(300), timed.read(&mut buf)).await;
        assert!(read.is_err(), "no deadline while handling");
        drop(guard);
        // Idle between requests: the keep-alive deadline (60 s), not the header one.
        let started = Instant::now();
        let err = timed.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_secs(60));
        drop(client);
    }

    #[test]
    fn connections_are_limited() {
        let c = Arc::new(Connections::default());
        let a = c.open(2).unwrap();
        let _b = c.open(2).unwrap();
        assert!(c.open(2).is_none());
        drop(a);
        assert!(c.open(2).is_some());
    }
}
