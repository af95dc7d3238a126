//! What a transport counts, and the per-peer frame limit it applies.

use std::sync::atomic::{AtomicU64, Ordering};

use music262_proto::auth::Refusal;
use music262_proto::limits::{PEER_FRAMES_PER_SECOND, RateLimit};

/// What went over a transport, and what it refused, since it was made. A transport without
/// the thing counted leaves it at 0 (datagrams on gRPC, legacy calls on QUIC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames sent as datagrams (clock probes and replies).
    pub datagrams_sent: u64,
    /// Frames received as datagrams.
    pub datagrams_received: u64,
    /// Frames written to link streams.
    pub stream_frames_sent: u64,
    /// Frames read from link streams.
    pub stream_frames_received: u64,
    /// Frames received that could not be decoded (reported as a `Frame` event with an error,
    /// and dropped).
    pub undecodable: u64,
    /// Links refused by the group-key handshake and frames refused by their seal (forged,
    /// replayed, unsealed).
    pub auth_refused: u64,
    /// Frames dropped by the per-peer rate limit.
    pub rate_limited: u64,
    /// Legacy calls that change playback, refused for want of the group key's token or beyond
    /// the caller's rate.
    pub legacy_refused: u64,
}

/// [`Counters`] as a transport's tasks bump them.
#[derive(Debug, Default)]
pub struct AtomicCounters {
    /// See [`Counters::datagrams_sent`].
    pub datagrams_sent: AtomicU64,
    /// See [`Counters::datagrams_received`].
    pub datagrams_received: AtomicU64,
    /// See [`Counters::stream_frames_sent`].
    pub stream_frames_sent: AtomicU64,
    /// See [`Counters::stream_frames_received`].
    pub stream_frames_received: AtomicU64,
    /// See [`Counters::undecodable`].
    pub undecodable: AtomicU64,
    /// See [`Counters::auth_refused`].
    pub auth_refused: AtomicU64,
    /// See [`Counters::rate_limited`].
    pub rate_limited: AtomicU64,
    /// See [`Counters::legacy_refused`].
    pub legacy_refused: AtomicU64,
}

/// Adds one to a counter.
pub fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl AtomicCounters {
    /// The counts now.
    pub fn snapshot(&self) -> Counters {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            datagrams_sent: get(&self.datagrams_sent),
            datagrams_received: get(&self.datagrams_received),
            stream_frames_sent: get(&self.stream_frames_sent),
            stream_frames_received: get(&self.stream_frames_received),
            undecodable: get(&self.undecodable),
            auth_refused: get(&self.auth_refused),
            rate_limited: get(&self.rate_limited),
            legacy_refused: get(&self.legacy_refused),
        }
    }
}

/// One link's incoming frame limit (`music262_proto::limits::PEER_FRAMES_PER_SECOND`), over
/// every channel of the link.
#[derive(Debug)]
pub struct PeerRateLimit(RateLimit);

impl PeerRateLimit {
    /// A full bucket at `now` (ns of the sync clock).
    pub fn new(now: u64) -> Self {
        PeerRateLimit(RateLimit::per_peer(now))
    }

    /// Applies the limit to one frame arriving at `now`: `Ok` takes it; `Err` drops it,
    /// counted in `counters.rate_limited`, with the refusal to report (at most once a second).
    pub fn admit(&mut self, now: u64, counters: &AtomicCounters) -> Result<(), Option<Refusal>> {
        if self.0.allow(now) {
            return Ok(());
        }
        bump(&counters.rate_limited);
        Err(self.0.take_report(now).map(|dropped| Refusal::RateLimited {
            dropped,
            per_second: PEER_FRAMES_PER_SECOND,
        }))
    }
}
