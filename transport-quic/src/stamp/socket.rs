//! quinn's UDP socket wrapped to record when datagrams really came in and went out.

use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use transport_common::ClockFn;

use super::{RxStamps, TxStamps, canonical, kernel};

/// quinn's UDP socket, stamping every received datagram (with the kernel's instant when
/// [`StampedSocket::with_kernel_stamps`] could enable it, else with the sync clock when the
/// `recvmsg` batch returns) and filling transmit tickets ([`TxStamps`]) when it sends.
pub struct StampedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    clock: ClockFn,
    stamps: RxStamps,
    tx: TxStamps,
    kernel: Option<kernel::Peeker>,
}

impl fmt::Debug for StampedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StampedSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl StampedSocket {
    /// Wraps `inner`, recording receive instants into `stamps` and filling the transmit
    /// tickets of `tx`.
    pub fn new(
        inner: Arc<dyn AsyncUdpSocket>,
        clock: ClockFn,
        stamps: RxStamps,
        tx: TxStamps,
    ) -> Self {
        StampedSocket {
            inner,
            clock,
            stamps,
            tx,
            kernel: None,
        }
    }

    /// Stamps received datagrams with the kernel's receive instant, read from `socket` (the
    /// UDP socket `inner` wraps, or a clone of it): see [`kernel`]. Where the kernel refuses
    /// (or this is not Linux, or the socket is not IPv4), receives stay stamped when `recvmsg`
    /// returns; this is logged once at debug level.
    pub fn with_kernel_stamps(mut self, socket: &std::net::UdpSocket) -> Self {
        match kernel::Peeker::new(socket) {
            Ok(peeker) => self.kernel = Some(peeker),
            Err(e) => kernel::unavailable(&e),
        }
        self
    }

    /// Whether received datagrams are stamped by the kernel.
    pub fn kernel_stamps(&self) -> bool {
        self.kernel.is_some()
    }
}

impl AsyncUdpSocket for StampedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        // Read before `sendmsg`, as a receive is read after `recvmsg`: both one-way delays then
        // span the same path (kernel to kernel). Only a send that succeeded fills tickets: on
        // `WouldBlock` quinn retries the same packet later.
        if self.tx.count.load(Ordering::Relaxed) == 0 {
            return self.inner.try_send(transmit);
        }
        let at = (self.clock)();
        let r = self.inner.try_send(transmit);
        if r.is_ok() {
            self.tx.record(transmit.destination, at);
        }
        r
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        // With kernel stamps, the next datagram is peeked at for its instant and source, then
        // quinn reads that datagram alone (this task is the socket's only reader, so it is the
        // one peeked at). With nothing to peek at, quinn's read registers for readiness.
        let peeked = match &self.kernel {
            Some(k) if !bufs.is_empty() && !meta.is_empty() => k.peek(&self.clock),
            _ => None,
        };
        let (bufs, meta) = match peeked {
            Some(_) => (&mut bufs[..1], &mut meta[..1]),
            None => (bufs, meta),
        };
        let r = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &r {
            let now = (self.clock)();
            for m in meta.iter().take(*n) {
                let at = match peeked {
                    Some(p) if canonical(p.from) == canonical(m.addr) => p.at.unwrap_or(now),
                    _ => now,
                };
                self.stamps.record(m.addr, at);
            }
        }
        r
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::addr;
    use std::sync::atomic::AtomicU64;

    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[test]
    fn kernel_stamps_are_not_enabled_on_ipv6_sockets() {
        let Ok(v6) = std::net::UdpSocket::bind("[::1]:0") else {
            return; // no IPv6 here
        };
        let s = StampedSocket::new(
            Arc::new(FakeSocket {
                would_block: false.into(),
            }),
            Arc::new(|| 1),
            RxStamps::default(),
            TxStamps::default(),
        )
        .with_kernel_stamps(&v6);
        assert!(!s.kernel_stamps());
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let s = s.with_kernel_stamps(&v4);
        assert!(s.kernel_stamps());
    }

    #[test]
    fn without_kernel_stamps_a_batch_is_stamped_when_read() {
        let fake = Arc::new(FakeSocket {
            would_block: false.into(),
        });
        let stamps = RxStamps::default();
        let socket =
            StampedSocket::new(fake, Arc::new(|| 777), stamps.clone(), TxStamps::default());
        assert!(!socket.kernel_stamps());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut buf = [0u8; 16];
        let mut bufs = [IoSliceMut::new(&mut buf)];
        let mut meta = [RecvMeta::default()];
        assert!(socket.poll_recv(&mut cx, &mut bufs, &mut meta).is_pending());
        assert_eq!(stamps.stamp(addr("127.0.0.1:1"), 1_000), 1_000);
    }

    #[derive(Debug)]
    struct AlwaysWritable;

    impl UdpPoller for AlwaysWritable {
        fn poll_writable(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A socket whose sends succeed or would block, as told.
    #[derive(Debug)]
    struct FakeSocket {
        would_block: std::sync::atomic::AtomicBool,
    }

    impl AsyncUdpSocket for FakeSocket {
        fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
            Box::pin(AlwaysWritable)
        }
        fn try_send(&self, _: &Transmit<'_>) -> io::Result<()> {
            if self.would_block.load(Ordering::Relaxed) {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        }
        fn poll_recv(
            &self,
            _: &mut Context<'_>,
            _: &mut [IoSliceMut<'_>],
            _: &mut [RecvMeta],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(addr("127.0.0.1:9"))
        }
    }

    #[test]
    fn the_socket_fills_tickets_with_the_instant_before_a_send_that_succeeded() {
        let fake = Arc::new(FakeSocket {
            would_block: true.into(),
        });
        let now = Arc::new(AtomicU64::new(1_000));
        let clock: ClockFn = {
            let now = now.clone();
            Arc::new(move || now.fetch_add(1, Ordering::Relaxed))
        };
        let tx = TxStamps::default();
        let socket = StampedSocket::new(fake.clone(), clock, RxStamps::default(), tx.clone());
        let peer = addr("127.0.0.1:4000");
        let ticket = tx.ticket(peer);
        let transmit = |to| Transmit {
            destination: to,
            ecn: None,
            contents: &[0u8; 4],
            segment_size: None,
            src_ip: None,
        };
        // quinn retries a send that would block: it has not left yet.
        assert!(socket.try_send(&transmit(peer)).is_err());
        assert_eq!(ticket.sent_at(), None);
        fake.would_block.store(false, Ordering::Relaxed);
        socket.try_send(&transmit(addr("127.0.0.1:5000"))).unwrap();
        assert_eq!(ticket.sent_at(), None, "another peer's packet");
        now.store(2_000, Ordering::Relaxed);
        socket.try_send(&transmit(peer)).unwrap();
        assert_eq!(ticket.sent_at(), Some(2_000), "read before sendmsg");
        // With no ticket waiting, sends do not read the clock.
        let before = now.load(Ordering::Relaxed);
        socket.try_send(&transmit(peer)).unwrap();
        assert_eq!(now.load(Ordering::Relaxed), before);
    }
}
