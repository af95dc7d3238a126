//! Receive instants taken at the socket.
//!
//! A frame's receive instant is the `t3`/`t1` of a clock probe. Read after HTTP/2 and protobuf
//! decoding and a task wake-up, it carries tens of microseconds of scheduling delay, and not
//! the same amount in both directions, which biases the clock offset by half the difference.
//! So the TCP stream under tonic is wrapped: every read that brings bytes records the sync
//! clock, and a frame is stamped with the instant of the last read before it was decoded (the
//! read that brought it, unless more bytes arrived in between, which only makes the sample's
//! delay look larger, and the clock filter trusts such samples less).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::peer::ClockFn;

/// Shared record of a connection's last read instant (0: nothing read yet).
#[derive(Clone, Debug, Default)]
pub struct ReadStamp(Arc<AtomicU64>);

impl ReadStamp {
    /// The instant of the last read that brought bytes, if it is not later than `now` (a
    /// clock read on another core may be a hair behind).
    pub fn last_read(&self, now: u64) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            t => Some(t.min(now)),
        }
    }

    fn record(&self, t: u64) {
        self.0.store(t, Ordering::Release);
    }
}

/// What the server learns about an accepted connection (request extension).
#[derive(Clone, Debug)]
pub struct StampedConnectInfo {
    /// The peer's address.
    pub remote_addr: Option<SocketAddr>,
    /// The connection's read stamp.
    pub stamp: ReadStamp,
}

/// A TCP stream that stamps every read.
pub struct StampedStream {
    inner: TcpStream,
    clock: ClockFn,
    stamp: ReadStamp,
}

impl std::fmt::Debug for StampedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StampedStream")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl StampedStream {
    /// Wraps `inner`; Nagle's algorithm is turned off (frames are small and latency matters).
    pub fn new(inner: TcpStream, clock: ClockFn) -> Self {
        let _ = inner.set_nodelay(true);
        StampedStream {
            inner,
            clock,
            stamp: ReadStamp::default(),
        }
    }

    /// The read stamp, shared with whoever reads frames off this connection.
    pub fn stamp(&self) -> ReadStamp {
        self.stamp.clone()
    }
}

impl AsyncRead for StampedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && buf.filled().len() > before
        {
            this.stamp.record((this.clock)());
        }
        r
    }
}

impl AsyncWrite for StampedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for StampedStream {
    type ConnectInfo = StampedConnectInfo;

    fn connect_info(&self) -> StampedConnectInfo {
        StampedConnectInfo {
            remote_addr: self.inner.peer_addr().ok(),
            stamp: self.stamp.clone(),
        }
    }
}
