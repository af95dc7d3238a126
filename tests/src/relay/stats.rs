//! The relay's counters: what it received, sent on, lost and delayed, per direction.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Counters of one direction, since the relay started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DirectionStats {
    /// Datagrams received from the sender.
    pub datagrams_in: u64,
    /// Datagrams sent on (a duplicated one counts twice).
    pub datagrams_out: u64,
    /// Datagrams the model lost.
    pub datagrams_dropped: u64,
    /// Datagrams the model duplicated.
    pub datagrams_duplicated: u64,
    /// Payload bytes of the datagrams received.
    pub udp_bytes_in: u64,
    /// Payload bytes of the datagrams sent on.
    pub udp_bytes_out: u64,
    /// Stream bytes read from the sender.
    pub tcp_bytes_in: u64,
    /// Stream bytes written to the receiver.
    pub tcp_bytes_out: u64,
    /// Segments the stream bytes were cut into.
    pub tcp_segments: u64,
    /// Segments delivered later than the largest delay of the model: a retransmission of
    /// their own, or waiting behind one (head-of-line blocking), or queued behind the
    /// bandwidth limit if there is one.
    pub tcp_segments_stalled: u64,
    /// Sum of the delays decided for delivered packets and segments, nanoseconds.
    pub delay_sum_ns: u64,
    /// Number of delays in `delay_sum_ns`.
    pub delay_count: u64,
    /// Largest decided delay, nanoseconds.
    pub delay_max_ns: u64,
}

impl DirectionStats {
    /// Mean decided delay in milliseconds (0 when nothing was delivered).
    pub fn mean_delay_ms(&self) -> f64 {
        if self.delay_count == 0 {
            0.0
        } else {
            self.delay_sum_ns as f64 / self.delay_count as f64 / 1e6
        }
    }

    /// Fraction of received datagrams the model lost.
    pub fn datagram_loss(&self) -> f64 {
        if self.datagrams_in == 0 {
            0.0
        } else {
            self.datagrams_dropped as f64 / self.datagrams_in as f64
        }
    }

    /// Bytes sent on, both protocols.
    pub fn bytes_out(&self) -> u64 {
        self.udp_bytes_out + self.tcp_bytes_out
    }

    /// The counters accumulated since `earlier` (delay maximum: the larger one).
    pub fn since(&self, earlier: &DirectionStats) -> DirectionStats {
        DirectionStats {
            datagrams_in: self.datagrams_in - earlier.datagrams_in,
            datagrams_out: self.datagrams_out - earlier.datagrams_out,
            datagrams_dropped: self.datagrams_dropped - earlier.datagrams_dropped,
            datagrams_duplicated: self.datagrams_duplicated - earlier.datagrams_duplicated,
            udp_bytes_in: self.udp_bytes_in - earlier.udp_bytes_in,
            udp_bytes_out: self.udp_bytes_out - earlier.udp_bytes_out,
            tcp_bytes_in: self.tcp_bytes_in - earlier.tcp_bytes_in,
            tcp_bytes_out: self.tcp_bytes_out - earlier.tcp_bytes_out,
            tcp_segments: self.tcp_segments - earlier.tcp_segments,
            tcp_segments_stalled: self.tcp_segments_stalled - earlier.tcp_segments_stalled,
            delay_sum_ns: self.delay_sum_ns - earlier.delay_sum_ns,
            delay_count: self.delay_count - earlier.delay_count,
            delay_max_ns: self.delay_max_ns,
        }
    }
}

/// Counters of a whole relay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RelayStats {
    /// Seconds since the relay started.
    pub uptime_s: f64,
    /// UDP sessions opened (client addresses seen).
    pub udp_sessions: u64,
    /// TCP connections accepted.
    pub tcp_connections: u64,
    /// Clients towards the target.
    pub to_target: DirectionStats,
    /// The target back towards clients.
    pub from_target: DirectionStats,
}

/// The live counters of one direction, added to by the forwarding threads.
#[derive(Default)]
pub(super) struct Counters {
    pub(super) datagrams_in: AtomicU64,
    pub(super) datagrams_out: AtomicU64,
    pub(super) datagrams_dropped: AtomicU64,
    pub(super) datagrams_duplicated: AtomicU64,
    pub(super) udp_bytes_in: AtomicU64,
    pub(super) udp_bytes_out: AtomicU64,
    pub(super) tcp_bytes_in: AtomicU64,
    pub(super) tcp_bytes_out: AtomicU64,
    pub(super) tcp_segments: AtomicU64,
    pub(super) tcp_segments_stalled: AtomicU64,
    pub(super) delay_sum_ns: AtomicU64,
    pub(super) delay_count: AtomicU64,
    pub(super) delay_max_ns: AtomicU64,
}

impl Counters {
    pub(super) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn delay(&self, ns: u64) {
        Self::add(&self.delay_sum_ns, ns);
        Self::add(&self.delay_count, 1);
        self.delay_max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> DirectionStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            datagrams_in: g(&self.datagrams_in),
            datagrams_out: g(&self.datagrams_out),
            datagrams_dropped: g(&self.datagrams_dropped),
            datagrams_duplicated: g(&self.datagrams_duplicated),
            udp_bytes_in: g(&self.udp_bytes_in),
            udp_bytes_out: g(&self.udp_bytes_out),
            tcp_bytes_in: g(&self.tcp_bytes_in),
            tcp_bytes_out: g(&self.tcp_bytes_out),
            tcp_segments: g(&self.tcp_segments),
            tcp_segments_stalled: g(&self.tcp_segments_stalled),
            delay_sum_ns: g(&self.delay_sum_ns),
            delay_count: g(&self.delay_count),
            delay_max_ns: g(&self.delay_max_ns),
        }
    }
}
