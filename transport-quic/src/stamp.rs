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
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use sync_core::Message;

use transport_common::ClockFn;

/// Remote addresses remembered at most; beyond this the table starts afresh (a flood of
/// spoofed sources must not grow memory; real peers are restamped by their next packet).
const MAX_SOURCES: usize = 4096;

/// The last receive instant per source address, written by [`StampedSocket`].
#[derive(Clone, Debug, Default)]
pub struct RxStamps {
    last: Arc<Mutex<BTreeMap<SocketAddr, u64>>>,
}

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

impl RxStamps {
    /// Records that bytes from `from` were read at `at`.
    pub fn record(&self, from: SocketAddr, at: u64) {
        let mut last = self.last.lock().expect("rx stamps lock");
        let from = canonical(from);
        if last.len() >= MAX_SOURCES && !last.contains_key(&from) {
            last.clear();
        }
        last.insert(from, at);
    }

    /// The receive instant for a frame from `from` handed over at `now`: the last read from that
    /// address, if any and not later than `now` (a clock read on another core may be a hair
    /// behind), else `now`.
    pub fn stamp(&self, from: SocketAddr, now: u64) -> u64 {
        self.last
            .lock()
            .expect("rx stamps lock")
            .get(&canonical(from))
            .map_or(now, |t| (*t).min(now))
    }
}

/// A transmit instant to be read at the socket: the sync clock just before the first
/// `sendmsg` to the peer's address that succeeds after the ticket was taken ([`TxStamps`]).
#[derive(Clone, Debug, Default)]
pub struct TxTicket(Arc<AtomicU64>);

impl TxTicket {
    /// The instant the socket sent, once it has (`None` before).
    pub fn sent_at(&self) -> Option<u64> {
        match self.0.load(Ordering::Acquire) {
            0 => None,
            t => Some(t),
        }
    }

    fn fill(&self, at: u64) {
        // 0 means "not yet"; a sync clock reading of exactly 0 is one nanosecond late.
        self.0.store(at.max(1), Ordering::Release);
    }
}

/// Tickets waiting for the next UDP send to their destination, filled by [`StampedSocket`].
///
/// A ticket is taken just before a probe (or reply) is handed to quinn. In quinn 0.11,
/// `Connection::send_datagram` queues the datagram under the connection's lock, and the
/// connection's driver task holds that lock while it builds packets and passes them to
/// `try_send`. So the first packet sent to that address after the hand-off was built after the
/// datagram was queued, and carries it. A packet built earlier can still be sent between the
/// ticket and the hand-off, and so can a packet quinn held back because the socket would
/// block, an ACK-only packet sent while the congestion window is full, or a packet of
/// another connection to the same address. Each of these fills the ticket too early, but
/// never before the instant written into the frame. These cases are rare, and in them the
/// stamp is no better than before, never worse.
#[derive(Clone, Debug, Default)]
pub struct TxStamps {
    waiting: Arc<Mutex<BTreeMap<SocketAddr, Vec<TxTicket>>>>,
    /// How many tickets wait, so that the socket's hot path takes no lock when none does.
    count: Arc<AtomicUsize>,
}

/// Tickets waiting at most; beyond this the table starts afresh (a peer whose connection died
/// with probes queued must not grow memory; its tickets are simply never filled).
const MAX_WAITING: usize = 1024;

impl TxStamps {
    /// A ticket for the next send to `to`.
    pub fn ticket(&self, to: SocketAddr) -> TxTicket {
        let ticket = TxTicket::default();
        let mut waiting = self.waiting.lock().expect("tx stamps lock");
        if self.count.load(Ordering::Relaxed) >= MAX_WAITING {
            waiting.clear();
            self.count.store(0, Ordering::Relaxed);
        }
        waiting
            .entry(canonical(to))
            .or_default()
            .push(ticket.clone());
        self.count.fetch_add(1, Ordering::Relaxed);
        ticket
    }

    /// Records that a UDP send to `to` succeeded, the clock read `at` just before it: fills
    /// every ticket waiting for that address.
    pub fn record(&self, to: SocketAddr, at: u64) {
        if self.count.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut waiting = self.waiting.lock().expect("tx stamps lock");
        if let Some(tickets) = waiting.remove(&canonical(to)) {
            self.count.fetch_sub(tickets.len(), Ordering::Relaxed);
            for t in tickets {
                t.fill(at);
            }
        }
    }
}

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

/// Kernel receive timestamps (`SO_TIMESTAMPNS`) of quinn's socket.
///
/// quinn-udp reads the socket with `recvmmsg` and parses the control messages itself; it
/// exposes no receive time. So [`StampedSocket`] peeks at the next datagram first
/// (`recvmsg(MSG_PEEK | MSG_DONTWAIT)` on the same socket, one byte of payload) for its
/// `SCM_TIMESTAMPNS` and source, and then lets quinn read that one datagram, with everything
/// quinn-udp parses (ECN, destination address, GRO segments) untouched. It costs one more
/// system call per datagram and reads one datagram per call instead of a batch; the peer
/// links carry far fewer packets than that could limit.
///
/// Linux enables receive timestamping for the whole stack from a work queue, and stamps a
/// datagram that arrived before that when it is read: the first few datagrams after start-up
/// may be stamped as before.
///
/// Only IPv4 sockets. The timestamp takes 32 bytes of quinn-udp's 88-byte control buffer and
/// comes first. On an IPv4 socket the rest is `IP_PKTINFO` (32) and `IP_TOS` (24), which
/// still fit; a GRO batch adds `UDP_GRO` (24) before them, and then the kernel drops
/// `IP_TOS` whole (ECN unknown for that batch, which quinn tolerates). On an IPv6 socket
/// `IPV6_PKTINFO` (40) and `IPV6_TCLASS` (24) would not fit and the kernel would cut the last
/// one short, so kernel stamps are not enabled there.
pub mod kernel {
    use super::*;

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
                let now = clock();
                let from = SocketAddr::V4(msg.from?);
                let at = match msg.kernel_ns {
                    Some(k) => Some(kernel::to_sync_clock(k, now)),
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
}

/// Where a probe's transmit instant sits in its encoded frame, to be rewritten at the last
/// moment with [`restamp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxStamp {
    /// Offset of the eight little-endian bytes of the instant.
    pub offset: usize,
    /// The instant encoded there; a rewrite never moves it earlier (a probe reply's `t2` must
    /// stay at or after its `t1`).
    pub floor: u64,
}

/// Protobuf key of `SyncProbe.t0_ns` (field 2, fixed64).
const PROBE_T0_KEY: u8 = (2 << 3) | 1;
/// Protobuf key of `SyncProbeReply.t2_ns` (field 4, fixed64).
const REPLY_T2_KEY: u8 = (4 << 3) | 1;

/// Finds the transmit instant of a probe or probe reply in its encoding `bytes` (the field's
/// key followed by the value encoded); `None` for other messages.
pub fn find_tx_stamp(message: &Message, bytes: &[u8]) -> Option<TxStamp> {
    let (key, value) = match message {
        Message::Probe(p) => (PROBE_T0_KEY, p.t0.0),
        Message::ProbeReply(r) => (REPLY_T2_KEY, r.t2.0),
        _ => return None,
    };
    let mut needle = [0u8; 9];
    needle[0] = key;
    needle[1..].copy_from_slice(&value.to_le_bytes());
    bytes
        .windows(9)
        .position(|w| w == needle)
        .map(|pos| TxStamp {
            offset: pos + 1,
            floor: value,
        })
}

/// Rewrites the instant at `stamp` in `bytes` with `now` (never earlier than the value there);
/// returns the instant written.
pub fn restamp(bytes: &mut [u8], stamp: Option<TxStamp>, now: u64) -> Option<u64> {
    let s = stamp?;
    let field = bytes.get_mut(s.offset..s.offset + 8)?;
    let at = now.max(s.floor);
    field.copy_from_slice(&at.to_le_bytes());
    Some(at)
}

/// Probes remembered per link until their reply (sync-core keeps 8 outstanding).
const PROBES_KEPT: usize = 16;
/// Replies whose socket instant is awaited, per link.
const REPLIES_KEPT: usize = 16;
/// Measured hand-off → socket delays of replies the lead is taken from, per link.
const DELAYS_KEPT: usize = 32;
/// A lead never exceeds this. A lead this long means nearly every recent reply waited
/// longer, so the wait is real. The cap still keeps a process stalled for seconds from
/// stamping its replies far ahead.
const MAX_LEAD_NS: u64 = 5_000_000;

/// One link's transmit instants of clock probes, as the socket saw them.
#[derive(Debug, Default)]
pub struct ProbeTx {
    /// Probes sent, oldest first: sequence number, `t0` as written in the frame, ticket.
    probes: VecDeque<(u32, u64, TxTicket)>,
    /// Replies handed to quinn whose socket instant is not known yet: hand-off, ticket.
    replies: VecDeque<(u64, TxTicket)>,
    /// Recent hand-off → socket delays of replies, oldest first.
    delays: VecDeque<u64>,
}

impl ProbeTx {
    /// Remembers that probe `seq`, stamped `t0` in its frame, was handed to quinn, its socket
    /// instant to come in `ticket`.
    pub fn probe_sent(&mut self, seq: u32, t0: u64, ticket: TxTicket) {
        self.probes.retain(|(s, ..)| *s != seq);
        if self.probes.len() >= PROBES_KEPT {
            self.probes.pop_front();
        }
        self.probes.push_back((seq, t0, ticket));
    }

    /// Replaces the echoed `t0` of a reply to one of our probes by the instant the socket
    /// really sent that probe, if known (and the echo is the `t0` we wrote, and the socket's
    /// instant not earlier). Returns whether it did.
    pub fn fix_reply(&mut self, seq: u32, t0: &mut u64) -> bool {
        let Some(pos) = self.probes.iter().position(|(s, ..)| *s == seq) else {
            return false;
        };
        let (_, stamped, ticket) = self.probes.remove(pos).expect("index from position");
        match ticket.sent_at() {
            Some(sent) if *t0 == stamped && sent >= stamped => {
                *t0 = sent;
                true
            }
            _ => false,
        }
    }

    /// Remembers that a reply was handed to quinn at `handoff`, its socket instant to come in
    /// `ticket`.
    pub fn reply_sent(&mut self, handoff: u64, ticket: TxTicket) {
        self.harvest();
        if self.replies.len() >= REPLIES_KEPT {
            self.replies.pop_front();
        }
        self.replies.push_back((handoff, ticket));
    }

    /// How long after its hand-off the next reply is expected to leave the socket: the
    /// `LEAD_PERCENTILE` of the recent replies' measured waits (0 before any is known).
    pub fn reply_lead(&mut self) -> u64 {
        self.harvest();
        if self.delays.is_empty() {
            return 0;
        }
        let mut d: Vec<u64> = self.delays.iter().copied().collect();
        d.sort_unstable();
        d[(d.len() - 1) * LEAD_PERCENTILE / 100].min(MAX_LEAD_NS)
    }

    /// Moves the replies whose socket instant has come into the delays (a reply whose packet
    /// never left stays until newer ones push it out).
    fn harvest(&mut self) {
        let delays = &mut self.delays;
        self.replies
            .retain(|(handoff, ticket)| match ticket.sent_at() {
                Some(sent) => {
                    if delays.len() >= DELAYS_KEPT {
                        delays.pop_front();
                    }
                    delays.push_back(sent.saturating_sub(*handoff));
                    false
                }
                None => true,
            });
    }
}

/// Which of the recent reply waits is the lead, in percent (0: the least). With the
/// [`DELAYS_KEPT`] waits known, 5 % selects the second least.
const LEAD_PERCENTILE: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;
    use music262_proto::codec::{decode_from_bytes, encode_to_vec};
    use sync_core::{LocalTime, Probe, ProbeReply};
    use transport_common::probe::stamp_message;
    // The mapping's anchor often equals the node's `now`, i.e. the provisional t0: the search
    // must not rewrite it by mistake, so the announces below are anchored there.
    use transport_common::testing::announce;

    #[test]
    fn a_probes_t0_is_rewritten_in_place_and_nothing_else() {
        let mut m = Message::Probe(Probe {
            seq: 7,
            t0: LocalTime(1),
            announce: announce(5_000),
        });
        stamp_message(&mut m, 5_000);
        let mut bytes = encode_to_vec(&m).unwrap();
        let stamp = find_tx_stamp(&m, &bytes).expect("t0 found");
        restamp(&mut bytes, Some(stamp), 6_000);
        match decode_from_bytes(&bytes).unwrap() {
            Message::Probe(p) => {
                assert_eq!(p.t0, LocalTime(6_000));
                assert_eq!(p.seq, 7);
                assert_eq!(p.announce, announce(5_000));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_replys_t2_is_rewritten_but_never_before_t1() {
        let mut m = Message::ProbeReply(ProbeReply {
            seq: 1,
            t0: LocalTime(10),
            t1: LocalTime(9_000),
            t2: LocalTime(0),
            announce: announce(9_000),
        });
        stamp_message(&mut m, 8_000);
        let mut bytes = encode_to_vec(&m).unwrap();
        let stamp = find_tx_stamp(&m, &bytes).expect("t2 found");
        assert_eq!(stamp.floor, 9_000, "t2 raised to t1");
        restamp(&mut bytes, Some(stamp), 8_500);
        let Message::ProbeReply(r) = decode_from_bytes(&bytes).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!((r.t1, r.t2), (LocalTime(9_000), LocalTime(9_000)));
        restamp(&mut bytes, Some(stamp), 9_500);
        let Message::ProbeReply(r) = decode_from_bytes(&bytes).unwrap() else {
            panic!("not a reply")
        };
        assert_eq!(
            (r.t0, r.t1, r.t2),
            (LocalTime(10), LocalTime(9_000), LocalTime(9_500))
        );
    }

    #[test]
    fn receive_stamps_are_per_source_and_never_in_the_future() {
        let s = RxStamps::default();
        let a: SocketAddr = "127.0.0.1:1000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:1000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2000".parse().unwrap();
        assert_eq!(s.stamp(a, 50), 50, "nothing read yet: now");
        s.record(mapped, 40);
        s.record(b, 45);
        assert_eq!(s.stamp(a, 50), 40);
        assert_eq!(s.stamp(b, 50), 45);
        assert_eq!(s.stamp(b, 44), 44);
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

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

    #[test]
    fn a_ticket_is_filled_by_the_next_send_to_its_address_only() {
        let tx = TxStamps::default();
        let a = tx.ticket(addr("127.0.0.1:1000"));
        let b = tx.ticket(addr("127.0.0.1:2000"));
        assert_eq!((a.sent_at(), b.sent_at()), (None, None));
        tx.record(addr("127.0.0.1:2000"), 50);
        assert_eq!((a.sent_at(), b.sent_at()), (None, Some(50)));
        // The socket may name the peer as an IPv4-mapped IPv6 address.
        tx.record(addr("[::ffff:127.0.0.1]:1000"), 60);
        assert_eq!(a.sent_at(), Some(60));
        // A filled ticket keeps its instant; a later ticket waits for a later send.
        tx.record(addr("127.0.0.1:1000"), 70);
        let c = tx.ticket(addr("127.0.0.1:1000"));
        assert_eq!((a.sent_at(), c.sent_at()), (Some(60), None));
        tx.record(addr("127.0.0.1:1000"), 80);
        assert_eq!(c.sent_at(), Some(80));
        assert_eq!(tx.count.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn tickets_never_sent_do_not_grow_the_table_without_bound() {
        let tx = TxStamps::default();
        for port in 0..3 * MAX_WAITING {
            let _ = tx.ticket(SocketAddr::from(([127, 0, 0, 1], port as u16)));
        }
        assert!(tx.count.load(Ordering::Relaxed) <= MAX_WAITING);
        let waiting: usize = tx.waiting.lock().unwrap().values().map(Vec::len).sum();
        assert_eq!(waiting, tx.count.load(Ordering::Relaxed));
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

    fn filled(at: u64) -> TxTicket {
        let t = TxTicket::default();
        t.fill(at);
        t
    }

    #[test]
    fn a_replys_echoed_t0_becomes_the_instant_the_socket_sent_the_probe() {
        let mut p = ProbeTx::default();
        p.probe_sent(5, 1_000, filled(1_300));
        p.probe_sent(6, 2_000, TxTicket::default());
        p.probe_sent(7, 3_000, filled(3_200));
        let mut t0 = 1_000;
        assert!(p.fix_reply(5, &mut t0));
        assert_eq!(t0, 1_300);
        // Once only: a duplicated reply keeps its echo.
        let mut t0 = 1_000;
        assert!(!p.fix_reply(5, &mut t0));
        assert_eq!(t0, 1_000);
        // Not sent yet (as far as the socket told): the echo stays.
        let mut t0 = 2_000;
        assert!(!p.fix_reply(6, &mut t0));
        assert_eq!(t0, 2_000);
        // An echo that is not what we wrote is left for the node to judge.
        let mut t0 = 2_999;
        assert!(!p.fix_reply(7, &mut t0));
        assert_eq!(t0, 2_999);
        let mut t0 = 9;
        assert!(!p.fix_reply(99, &mut t0), "unknown probe");
        assert_eq!(t0, 9);
    }

    #[test]
    fn a_socket_instant_before_the_stamp_is_not_used() {
        let mut p = ProbeTx::default();
        p.probe_sent(1, 1_000, filled(900));
        let mut t0 = 1_000;
        assert!(!p.fix_reply(1, &mut t0));
        assert_eq!(t0, 1_000);
    }

    #[test]
    fn only_the_latest_probes_are_remembered() {
        let mut p = ProbeTx::default();
        for seq in 0..(PROBES_KEPT as u32 + 4) {
            p.probe_sent(seq, 10 * seq as u64 + 1, filled(10 * seq as u64 + 5));
        }
        let mut t0 = 1;
        assert!(!p.fix_reply(0, &mut t0), "forgotten");
        let last = PROBES_KEPT as u32 + 3;
        let mut t0 = 10 * last as u64 + 1;
        assert!(p.fix_reply(last, &mut t0));
        assert_eq!(t0, 10 * last as u64 + 5);
    }

    #[test]
    fn the_reply_lead_is_a_low_percentile_of_measured_waits() {
        let mut p = ProbeTx::default();
        assert_eq!(p.reply_lead(), 0, "nothing measured yet");
        let pending = TxTicket::default();
        p.reply_sent(0, pending.clone());
        // Waits of 10, 20, ... 200 us, handed over in shuffled order; one never sent.
        for k in [
            7u64, 3, 19, 1, 12, 5, 16, 9, 20, 2, 14, 11, 18, 6, 4, 13, 8, 15, 10, 17,
        ] {
            let handoff = 1_000_000 * k;
            p.reply_sent(handoff, filled(handoff + 10_000 * k));
        }
        // The 5th percentile of 20 waits: the least of them.
        assert_eq!(p.reply_lead(), 10_000);
        // A wait measured late (its packet left after later ones) still counts, and one
        // unusually short wait does not move the lead.
        pending.fill(5_000);
        p.reply_sent(0, TxTicket::default());
        assert_eq!(p.delays.len(), 21);
        assert!(p.delays.contains(&5_000));
        assert_eq!(p.reply_lead(), 10_000);
        // With all 32 known, the second least.
        for _ in 0..DELAYS_KEPT {
            p.reply_sent(0, filled(30_000));
        }
        p.reply_sent(0, filled(1_000));
        p.reply_sent(0, filled(2_000));
        assert_eq!(p.reply_lead(), 2_000);
    }

    #[test]
    fn the_reply_lead_forgets_old_waits_and_is_bounded() {
        let mut p = ProbeTx::default();
        for i in 0..DELAYS_KEPT as u64 {
            p.reply_sent(i, filled(i + 1_000));
        }
        assert_eq!(p.reply_lead(), 1_000);
        // The process stalls for a while: every recent reply waited 50 ms.
        for i in 0..DELAYS_KEPT as u64 {
            p.reply_sent(i, filled(i + 50_000_000));
        }
        assert_eq!(p.reply_lead(), MAX_LEAD_NS);
        assert_eq!(p.delays.len(), DELAYS_KEPT);
    }
}
