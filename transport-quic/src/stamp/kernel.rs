//! Kernel receive timestamps (`SO_TIMESTAMPNS`) of quinn's socket.
//!
//! quinn-udp reads the socket with `recvmmsg` and parses the control messages itself; it
//! exposes no receive time. So [`StampedSocket`] peeks at the next datagram first
//! (`recvmsg(MSG_PEEK | MSG_DONTWAIT)` on the same socket, one byte of payload) for its
//! `SCM_TIMESTAMPNS` and source, and then lets quinn read that one datagram, with everything
//! quinn-udp parses (ECN, destination address, GRO segments) untouched. It costs one more
//! system call per datagram and reads one datagram per call instead of a batch; the peer
//! links carry far fewer packets than that could limit.
//!
//! Linux enables receive timestamping for the whole stack from a work queue, and stamps a
//! datagram that arrived before that when it is read: the first few datagrams after start-up
//! may be stamped as before.
//!
//! Only IPv4 sockets. The timestamp takes 32 bytes of quinn-udp's 88-byte control buffer and
//! comes first. On an IPv4 socket the rest is `IP_PKTINFO` (32) and `IP_TOS` (24), which
//! still fit; a GRO batch adds `UDP_GRO` (24) before them, and then the kernel drops
//! `IP_TOS` whole (ECN unknown for that batch, which quinn tolerates). On an IPv6 socket
//! `IPV6_PKTINFO` (40) and `IPV6_TCLASS` (24) would not fit and the kernel would cut the last
//! one short, so kernel stamps are not enabled there.
//!
//! [`StampedSocket`]: super::StampedSocket

use std::fmt;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
use std::io;
use std::net::SocketAddr;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use transport_common::ClockFn;

/// Logs, once per process, that receives are stamped when read.
pub(super) fn unavailable(why: &dyn fmt::Display) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    LOGGED.call_once(|| {
        tracing::debug!(%why, "no kernel receive timestamps on the QUIC socket; receives are stamped when read");
    });
}

/// A datagram peeked at: its source and, if the kernel stamped it, its instant on the sync
/// clock.
#[derive(Clone, Copy, Debug)]
pub(super) struct Peeked {
    pub(super) from: SocketAddr,
    pub(super) at: Option<u64>,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) use linux::Peeker;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::net::SocketAddr;

    use transport_common::{ClockFn, kernel};

    use super::Peeked;

    /// A clone of quinn's socket with `SO_TIMESTAMPNS` on, to peek at the next datagram.
    #[derive(Debug)]
    pub struct Peeker {
        socket: std::net::UdpSocket,
        missing: std::sync::atomic::AtomicBool,
    }

    impl Peeker {
        pub(in super::super) fn new(socket: &std::net::UdpSocket) -> std::io::Result<Self> {
            if !socket.local_addr()?.is_ipv4() {
                return Err(std::io::Error::other("not an IPv4 socket"));
            }
            let socket = socket.try_clone()?;
            kernel::enable(&socket)?;
            Ok(Peeker {
                socket,
                missing: false.into(),
            })
        }

        /// The next datagram's source and instant, without reading it; `None` if there
        /// is none yet (or the peek failed: quinn's own read then reports the error).
        pub(in super::super) fn peek(&self, clock: &ClockFn) -> Option<Peeked> {
            let mut byte = [0u8; 1];
            let msg = kernel::recv(&self.socket, &mut byte, true).ok()?;
            let from = SocketAddr::V4(msg.from?);
            let at = match msg.kernel_ns {
                Some(k) => Some(kernel::to_sync_clock(k, &**clock)),
                None => {
                    if !self
                        .missing
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        super::unavailable(&"a datagram came without SO_TIMESTAMPNS");
                    }
                    None
                }
            };
            Some(Peeked { from, at })
        }
    }
}

/// Elsewhere: no kernel stamps.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[derive(Debug)]
pub(super) struct Peeker;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Peeker {
    pub(super) fn new(_: &std::net::UdpSocket) -> io::Result<Self> {
        Err(io::Error::other("kernel receive timestamps need Linux"))
    }

    pub(super) fn peek(&self, _: &ClockFn) -> Option<Peeked> {
        None
    }
}
