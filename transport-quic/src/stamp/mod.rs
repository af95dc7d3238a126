//! Clock-probe instants taken as close to the socket as quinn lets us.
//!
//! * **Receive.** quinn reads the UDP socket in its endpoint driver and hands a datagram to the
//!   application only after decryption, in another task. The endpoint is therefore built on
//!   [`StampedSocket`], a wrapper of quinn's own tokio socket that records a receive instant
//!   per source address ([`RxStamps`]). A frame read from a connection is stamped with the
//!   last receive instant of that connection's address: the packet that carried it, unless
//!   more packets from the same peer arrived in between, which only makes the sample's delay
//!   look larger (the clock filter trusts such samples less). The instant is the kernel's
//!   (`SO_TIMESTAMPNS`, taken when the datagram reached the socket): quinn-udp parses the
//!   control messages of `recvmsg` itself and exposes no receive time, so the wrapper peeks at
//!   each datagram first ([`kernel`]). Where the kernel gives none, the sync clock is read as
//!   soon as the `recvmsg` batch returns, which is late by however long the runtime took to
//!   wake (see the end of this comment).
//! * **Transmit.** The bytes of a QUIC packet are encrypted, so a probe's `t0`/`t2` cannot be
//!   rewritten at the socket as the TCP transport does. They are written into the encoded frame
//!   (the `fixed64` field, found by its tag and provisional value) just before the frame is
//!   handed to quinn ([`restamp`]). That instant is not when the packet leaves: quinn queues
//!   the datagram, wakes the connection's driver task, and that task builds, encrypts and
//!   sends the packet when the runtime gets to it. The wait is not the same in both
//!   directions. A probe leaves a process that was idle (its timer fired), a reply leaves one
//!   that is busy receiving. Measured between three `music_client`s on loopback, a probe
//!   waited at least 33–44 µs from hand-off to `sendmsg`, and 115–185 µs at the median; a
//!   reply waited at least 17–24 µs, and 70–85 µs at the median. The offset
//!   `((t1 − t0) + (t2 − t3)) / 2` is off by half the difference, always with the same sign.
//!   Those exchanges were logged and replayed through sync-core's clock filter, 12 links
//!   over 3 runs. The p99 error of each link's estimate after 10 s averaged 102 µs with
//!   hand-off stamps, 65 µs with the stamps below, and 51 µs with the true socket instants of
//!   both `t0` and `t2`.
//!
//!   So the socket reports when the packet really left. Before a probe or reply is handed to
//!   quinn, a [`TxTicket`] is taken for the peer's address ([`TxStamps`]); [`StampedSocket`]
//!   fills it with the clock read just before the first successful `sendmsg` to that
//!   address, which carries the datagram (see [`TxStamps`]). Each end uses its own tickets,
//!   with no change on the wire ([`ProbeTx`]):
//!   - **`t0`, exactly.** The reply echoes the probe's `t0`, and sync-core accepts an echo
//!     between its own stamp and the reply's arrival. When a reply comes back, the transport
//!     puts the socket's instant for that probe in place of the echo. This removes the larger
//!     wait completely, whatever peer answered.
//!   - **`t2`, predicted.** A reply is gone once handed over, so its `t2` cannot be corrected
//!     afterwards. It is stamped as hand-off plus the expected wait: the second least of the
//!     waits that the link's last 32 replies measured. The clock filter fits the lower
//!     envelope of each one-way series, so the samples it rests on are the least delayed
//!     replies, and those replies waited about the least. A median would overshoot them and
//!     pull the backward envelope below the truth. Taking the second least rather than the
//!     least means one unusually quick packet cannot set the lead.
//!
//!   Probes that go on the stream (a peer taking no datagrams) are stamped before quinn as
//!   before; all our peers take datagrams.
//!
//!   The receive side had the same kind of bias. Read when the runtime's thread wakes and
//!   calls `recvmsg`, a probe reaching a responder that idled 0.5 s since the last one was
//!   stamped late: in the same runs the least one-way delay of probes was 13–60 µs while they
//!   came every 50 ms, and 70–125 µs once they came every 0.5 s, against 20–45 µs for replies
//!   (the requester had just sent and was still awake). That floor is uneven and changes over
//!   time, so it biased the offset and tilted the filter's fitted frequency. Kernel receive
//!   timestamps ([`kernel`]) remove it: `tests/rx_stamps.rs` blocks the reading thread for
//!   2 ms after each datagram is sent; stamped when read, every datagram is 2.1 ms late,
//!   stamped by the kernel 7–70 µs after the clock read before `sendto` (unoptimised build).
//!
//! The pieces: [`StampedSocket`] (the socket wrapper), the per-address tables it writes
//! ([`RxStamps`], [`TxStamps`] and their [`TxTicket`]s), [`kernel`] (its kernel receive
//! timestamps), the frame rewrite ([`find_tx_stamp`], [`restamp`]) and [`ProbeTx`] (what one
//! link makes of the transmit tickets).

mod by_address;
mod frame;
pub mod kernel;
mod probe_tx;
mod socket;

use std::net::{IpAddr, SocketAddr};

pub use by_address::{RxStamps, TxStamps, TxTicket};
pub use frame::{TxStamp, find_tx_stamp, restamp};
pub use probe_tx::ProbeTx;
pub use socket::StampedSocket;

/// IPv4-mapped IPv6 addresses and plain IPv4 ones name the same peer.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// A socket address written the short way, for tests.
#[cfg(test)]
fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}
