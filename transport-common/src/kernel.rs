//! The kernel's receive instant of what a socket read: `SO_TIMESTAMPNS`, read with each
//! `recvmsg` as a control message (Linux and Android; elsewhere every call fails with
//! `Unsupported` and the transports stamp a read when it returns).
//!
//! The kernel stamps on its realtime clock; [`to_sync_clock`] moves that instant onto the
//! node's sync clock by the bytes' age (`sync_core::time::kernel_instant`).

use std::net::SocketAddrV4;
use std::time::{SystemTime, UNIX_EPOCH};

/// What one `recvmsg` brought.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    /// Bytes read (or peeked at).
    pub bytes: usize,
    /// The source, for an IPv4 datagram socket (`None` on a connected stream).
    pub from: Option<SocketAddrV4>,
    /// The kernel's receive instant, ns since the Unix epoch on the realtime clock, if it gave
    /// one (for TCP: of the last segment the read took).
    pub kernel_ns: Option<i128>,
}

/// The kernel's instant `kernel_ns` (realtime) on the sync clock `clock`, read just after the
/// `recvmsg` that gave it. The bytes' age is the realtime clock minus the stamp, so both clocks
/// must be read at one instant: the sync clock is read between two realtime reads, and of a few
/// tries the tightest bracket is kept (a thread preempted between two reads would otherwise
/// add the pause to the age and stamp the bytes that much early).
pub fn to_sync_clock(kernel_ns: i128, clock: &dyn Fn() -> u64) -> u64 {
    let realtime = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128)
    };
    let mut best: Option<(i128, i128, u64)> = None;
    for _ in 0..BRACKET_TRIES {
        let before = realtime();
        let now = clock();
        let after = realtime();
        let width = after - before;
        if best.is_none_or(|(w, _, _)| width < w) {
            best = Some((width, before + width / 2, now));
        }
        if width <= TIGHT_BRACKET_NS {
            break;
        }
    }
    let (_, realtime, now) = best.expect("at least one try");
    sync_core::time::kernel_instant(kernel_ns, realtime, now)
}

/// Reads of the clocks tried at most, for a tight bracket.
const BRACKET_TRIES: usize = 4;
/// A bracket this narrow (ns) is as good as the clocks' reads: no more tries.
const TIGHT_BRACKET_NS: i128 = 2_000;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub use linux::{enable, recv};

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::io::{self, IoSliceMut};
    use std::net::SocketAddrV4;
    use std::os::fd::{AsFd, AsRawFd};

    use nix::sys::socket::{
        ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt,
    };

    use super::Received;

    /// Room for the timestamp's control message (32 bytes with its header) and what else a
    /// socket may have enabled (quinn-udp's packet info and traffic class).
    const CMSG_BUF: usize = 256;

    /// A control-message buffer aligned for `cmsghdr`.
    #[repr(C, align(16))]
    struct CmsgBuf([u8; CMSG_BUF]);

    /// Turns receive timestamps on for `socket`; an error if the kernel refuses.
    pub fn enable(socket: &impl AsFd) -> io::Result<()> {
        setsockopt(socket, sockopt::ReceiveTimestampns, &true).map_err(io::Error::from)
    }

    /// One non-blocking `recvmsg` into `buf` (with `peek`, leaving the data queued), with the
    /// kernel's receive instant if timestamps are on. `WouldBlock` when nothing waits.
    pub fn recv(socket: &impl AsRawFd, buf: &mut [u8], peek: bool) -> io::Result<Received> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut cmsg = CmsgBuf([0; CMSG_BUF]);
        let flags = if peek {
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let msg = recvmsg::<SockaddrIn>(socket.as_raw_fd(), &mut iov, Some(&mut cmsg.0), flags)
            .map_err(io::Error::from)?;
        let kernel_ns = msg.cmsgs().ok().and_then(|mut cmsgs| {
            cmsgs.find_map(|c| match c {
                ControlMessageOwned::ScmTimestampns(ts) => {
                    Some(i128::from(ts.tv_sec()) * 1_000_000_000 + i128::from(ts.tv_nsec()))
                }
                _ => None,
            })
        });
        Ok(Received {
            bytes: msg.bytes,
            from: msg.address.map(SocketAddrV4::from),
            kernel_ns,
        })
    }
}

/// Elsewhere: no kernel receive stamps.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn enable<S>(_: &S) -> std::io::Result<()> {
    Err(unsupported())
}

/// Elsewhere: no kernel receive stamps.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub fn recv<S>(_: &S, _: &mut [u8], _: bool) -> std::io::Result<Received> {
    Err(unsupported())
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn unsupported() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "kernel receive timestamps need Linux",
    )
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn a_datagram_is_peeked_at_with_its_source_and_kernel_instant_then_read() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        enable(&rx).unwrap();
        let mut buf = [0u8; 8];
        let nothing = recv(&rx, &mut buf, true).unwrap_err();
        assert_eq!(nothing.kind(), io::ErrorKind::WouldBlock);
        tx.send_to(b"probe", rx.local_addr().unwrap()).unwrap();
        let peeked = loop {
            match recv(&rx, &mut buf[..1], true) {
                Ok(r) => break r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
                Err(e) => panic!("{e}"),
            }
        };
        let std::net::SocketAddr::V4(from) = tx.local_addr().unwrap() else {
            panic!()
        };
        assert_eq!(peeked.from, Some(from));
        let stamp = peeked.kernel_ns.expect("Linux stamps UDP receives");
        let read = recv(&rx, &mut buf, false).unwrap();
        assert_eq!(
            (&buf[..read.bytes], read.kernel_ns),
            (&b"probe"[..], Some(stamp))
        );
        // On the sync clock: no later than the clock read after the receive.
        assert!(to_sync_clock(stamp, &|| 1_000_000_000) <= 1_000_000_000);
    }
}
