//! Per-peer rate limits, pure (the caller passes the time): a token bucket that both
//! transports apply to each link's incoming frames before any decoding or tag check, so that a
//! flooding peer costs little and cannot starve the others, and that the gRPC peer endpoint
//! applies to each caller of the legacy methods that change anything. Also the size limits of
//! the music server's messages.

/// Frames a peer may send per second, sustained. A healthy link carries at most about 45: clock
/// probes and replies at 20 per second each while a link is refined, plus states, readiness and
/// gossip.
pub const PEER_FRAMES_PER_SECOND: u32 = 200;
/// Frames a peer may send in one burst above the sustained rate (a link's opening burst of
/// probes, a flurry of commands).
pub const PEER_FRAME_BURST: u32 = 400;

/// Legacy calls that change playback or links (`SendMusicCommand`, `Gossip`, `Exit`) one caller
/// (IP address) may make per second, sustained: a remote control or a script sends a few.
pub const LEGACY_CALLS_PER_SECOND: u32 = 20;
/// Such calls one caller may make in one burst.
pub const LEGACY_CALL_BURST: u32 = 40;

/// Largest message a music client and the music server accept from each other (tonic's
/// decoding limit on both sides): 4 MiB, so that a song chunk, a page of a list or a legacy list
/// answer always passes.
pub const SERVER_MESSAGE_BYTES: usize = 4 << 20;
/// Largest encoded page of `ListSongs` and `ListPeers`: 1 MiB, at least 800 songs with names of
/// the longest kind.
pub const LIST_PAGE_BYTES: usize = 1 << 20;
/// Largest encoded answer of the legacy `GetPlaylist` and `GetPeerClientIPs`: 4 MiB (the
/// receive limit most gRPC implementations default to) less 64 KiB of slack.
pub const LEGACY_LIST_BYTES: usize = (4 << 20) - (64 << 10);
/// Most registrations a music server holds at once; more are refused.
pub const MAX_REGISTRATIONS: usize = 100_000;

/// A token bucket: `burst` tokens at most, refilled at `per_second`.
#[derive(Clone, Debug)]
pub struct RateLimit {
    per_second: u64,
    burst: u64,
    /// Tokens, in millionths (so that refills of a fraction of a token are not lost).
    micro_tokens: u64,
    last_ns: u64,
    dropped: u64,
    /// Drops already reported, and when the last report was made.
    reported: u64,
    reported_at: Option<u64>,
}

impl RateLimit {
    /// A full bucket at `now_ns`.
    pub fn new(per_second: u32, burst: u32, now_ns: u64) -> Self {
        RateLimit {
            per_second: u64::from(per_second),
            burst: u64::from(burst.max(1)),
            micro_tokens: u64::from(burst.max(1)) * 1_000_000,
            last_ns: now_ns,
            dropped: 0,
            reported: 0,
            reported_at: None,
        }
    }

    /// The limit of one peer link ([`PEER_FRAMES_PER_SECOND`], [`PEER_FRAME_BURST`]).
    pub fn per_peer(now_ns: u64) -> Self {
        RateLimit::new(PEER_FRAMES_PER_SECOND, PEER_FRAME_BURST, now_ns)
    }

    /// Whether one more frame arriving at `now_ns` is within the limit (it then uses a token);
    /// a frame beyond it is counted in [`RateLimit::dropped`]. A clock that goes backwards
    /// refills nothing.
    pub fn allow(&mut self, now_ns: u64) -> bool {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now_ns);
        // tokens/s * ns / 1e9 * 1e6 micro-tokens = tokens/s * ns / 1000.
        let refill = u128::from(self.per_second) * u128::from(elapsed) / 1_000;
        let cap = self.burst * 1_000_000;
        self.micro_tokens = (u128::from(self.micro_tokens) + refill).min(u128::from(cap)) as u64;
        if self.micro_tokens >= 1_000_000 {
            self.micro_tokens -= 1_000_000;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Frames refused so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Drops not yet reported, at most once per second: a flood is logged a line a second, not
    /// a line a frame.
    pub fn take_report(&mut self, now_ns: u64) -> Option<u64> {
        let due = self
            .reported_at
            .is_none_or(|t| now_ns.saturating_sub(t) >= 1_000_000_000);
        if self.dropped > self.reported && due {
            let n = self.dropped - self.reported;
            self.reported = self.dropped;
            self.reported_at = Some(now_ns);
            Some(n)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_peer_flooding_beyond_its_rate_is_cut_to_the_burst_then_the_sustained_rate() {
        let mut r = RateLimit::new(100, 50, 0);
        // 1000 frames at one instant: the burst passes, the rest is dropped.
        let passed = (0..1000).filter(|_| r.allow(SEC)).count();
        assert_eq!(passed, 50);
        assert_eq!(r.dropped(), 950);
        // Over the next second, at 1000 frames per second, about 100 pass.
        let passed = (1..=1000).filter(|i| r.allow(SEC + i * SEC / 1000)).count();
        assert!((99..=101).contains(&passed), "{passed}");
    }

    #[test]
    fn a_peer_within_its_rate_is_never_limited() {
        let mut r = RateLimit::per_peer(0);
        // 100 frames per second for a minute.
        assert!((0..6_000).all(|i| r.allow(i * SEC / 100)));
        assert_eq!(r.dropped(), 0);
    }

    #[test]
    fn drops_are_reported_at_most_once_a_second() {
        let mut r = RateLimit::new(10, 1, 0);
        assert!(r.allow(0));
        assert_eq!(r.take_report(0), None, "nothing dropped yet");
        assert!(!r.allow(0) && !r.allow(0));
        assert_eq!(r.take_report(0), Some(2));
        assert!(!r.allow(1));
        assert_eq!(r.take_report(1), None, "within the second");
        assert_eq!(r.take_report(1_000_000_000), Some(1));
        assert_eq!(r.take_report(3_000_000_000), None, "nothing new");
    }

    #[test]
    fn a_clock_going_backwards_refills_nothing() {
        let mut r = RateLimit::new(10, 1, 5 * SEC);
        assert!(r.allow(5 * SEC));
        assert!(!r.allow(0));
        assert!(!r.allow(5 * SEC));
        assert!(r.allow(5 * SEC + SEC / 10));
    }
}
