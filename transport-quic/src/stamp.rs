//! Clock-probe instants taken as close to the socket as quinn lets us.
//!
//! * **Receive.** quinn reads the UDP socket in its endpoint driver and hands a datagram to the
//!   application only after decryption, in another task. The endpoint is therefore built on
//!   [`StampedSocket`], a wrapper of quinn's own tokio socket that reads the sync clock as soon
//!   as a `recvmsg` batch returns and records it per source address ([`RxStamps`]). A frame read
//!   from a connection is stamped with the last receive instant of that connection's address:
//!   the packet that carried it, unless more packets from the same peer arrived in between,
//!   which only makes the sample's delay look larger (the clock filter trusts such samples
//!   less). quinn-udp parses the control messages of `recvmsg` itself and exposes no receive
//!   time, so kernel timestamps (`SO_TIMESTAMPNS`) are out of reach without patching it.
//! * **Transmit.** The bytes of a QUIC packet are encrypted, so a probe's `t0`/`t2` cannot be
//!   rewritten at the socket as the TCP transport does. They are rewritten in the encoded frame
//!   (the `fixed64` field, found by its tag and provisional value) immediately before the
//!   frame is handed to quinn ([`restamp`]). Both directions are then stamped at the same
//!   points (before quinn on the way out, after `recvmsg` on the way in), so quinn's own path
//!   to the socket appears in both one-way delays and cancels out of the offset.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use sync_core::Message;

use crate::ClockFn;

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

/// quinn's UDP socket, stamping every receive batch with the sync clock.
pub struct StampedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    clock: ClockFn,
    stamps: RxStamps,
}

impl fmt::Debug for StampedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StampedSocket")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl StampedSocket {
    /// Wraps `inner`, recording receive instants into `stamps`.
    pub fn new(inner: Arc<dyn AsyncUdpSocket>, clock: ClockFn, stamps: RxStamps) -> Self {
        StampedSocket {
            inner,
            clock,
            stamps,
        }
    }
}

impl AsyncUdpSocket for StampedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let r = self.inner.poll_recv(cx, bufs, meta);
        if let Poll::Ready(Ok(n)) = &r {
            let now = (self.clock)();
            for m in meta.iter().take(*n) {
                self.stamps.record(m.addr, now);
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

/// Stamps a probe's transmit instant (`t0`, or a reply's `t2`, kept at or after `t1`) with `now`
/// before it is encoded; other messages are left alone.
pub fn stamp_message(message: &mut Message, now: u64) {
    match message {
        Message::Probe(p) => p.t0 = sync_core::LocalTime(now),
        Message::ProbeReply(r) => r.t2 = sync_core::LocalTime(now).max(r.t1),
        _ => {}
    }
}

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

/// Rewrites the instant at `stamp` in `bytes` with `now` (never earlier than the value there).
pub fn restamp(bytes: &mut [u8], stamp: Option<TxStamp>, now: u64) {
    if let Some(s) = stamp
        && let Some(field) = bytes.get_mut(s.offset..s.offset + 8)
    {
        field.copy_from_slice(&now.max(s.floor).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use music262_proto::codec::{decode_from_bytes, encode_to_vec};
    use sync_core::{
        Announce, ClockMapping, GroupTime, LocalTime, NodeId, Probe, ProbeReply, StateVersion,
    };

    fn announce(local: u64) -> Announce {
        Announce {
            root: NodeId(1),
            stratum: 0,
            root_seq: 0,
            root_delay: 0,
            parent: None,
            state_version: StateVersion::default(),
            // The mapping's anchor often equals the node's `now`, i.e. the provisional t0: the
            // search must not rewrite it by mistake.
            mapping: ClockMapping {
                local: LocalTime(local),
                group: GroupTime(local),
                rate_ppm: 0.0,
                timebase: local,
            },
            subtree_delay: 0,
            radius: 0,
        }
    }

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
}
