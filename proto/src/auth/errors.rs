//! Why a key, a link, a frame or a call was refused.

use super::Channel;

/// Why a group key given by the user cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_LEN`](super::MIN_KEY_LEN).
    #[error("the group key is too short: {len} bytes (at least {min}; use a random one)")]
    TooShort {
        /// Its length, bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Longer than [`MAX_KEY_LEN`](super::MAX_KEY_LEN).
    #[error("the group key is too long: {len} bytes (at most {max})")]
    TooLong {
        /// Its length, bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
}

/// Why a frame of a keyed link was refused. Each variant says what the peer got wrong; none of
/// them changes any state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The peer sent an ordinary frame where an opening frame was due: it has no group key.
    #[error("the peer has no group key (this client has one); link refused")]
    PeerHasNoKey,
    /// The peer's opening frame names another key.
    #[error("the peer uses a different group key (key id {theirs}, ours {ours}); link refused")]
    DifferentKey {
        /// The peer's key id, hex.
        theirs: String,
        /// Ours, hex.
        ours: String,
    },
    /// An opening frame that is not one (wrong lengths, a body, a tag).
    #[error("malformed opening frame: {0}")]
    MalformedOpening(&'static str),
    /// A frame without `auth` or with a tag of the wrong length.
    #[error("unauthenticated frame (no valid group-key seal)")]
    Unsealed,
    /// The tag does not verify: forged, altered, or sealed with another key or link.
    #[error("frame {counter} on the {channel:?} channel fails authentication (forged or altered)")]
    BadMac {
        /// The counter it claimed.
        counter: u64,
        /// Its channel.
        channel: Channel,
    },
    /// The counter was already seen (or is older than the window): a replay.
    #[error("frame {counter} on the {channel:?} channel was already received (replay)")]
    Replayed {
        /// The counter.
        counter: u64,
        /// Its channel.
        channel: Channel,
    },
    /// The proof frame carried a body, or a later frame carried none.
    #[error("unexpected frame during the group-key handshake: {0}")]
    Handshake(&'static str),
}

/// Why a transport refused a link, a frame or a call, for the driver to count and log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A link or a frame failed the group-key checks.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The peer sent frames faster than [`crate::limits::PEER_FRAMES_PER_SECOND`]; `dropped`
    /// frames were dropped since the last report.
    #[error("the peer exceeds {per_second} frames per second; {dropped} frames dropped")]
    RateLimited {
        /// Frames dropped since the last report.
        dropped: u64,
        /// The sustained limit.
        per_second: u32,
    },
    /// A caller made legacy calls that change playback or links faster than
    /// [`crate::limits::LEGACY_CALLS_PER_SECOND`]; `dropped` were refused since the last report.
    #[error("the caller exceeds {per_second} legacy calls per second; {dropped} calls refused")]
    LegacyRateLimited {
        /// Calls refused since the last report.
        dropped: u64,
        /// The sustained limit.
        per_second: u32,
    },
    /// A legacy call that changes playback came without the group key's token.
    #[error("legacy `{method}` call without the group key refused (UNAUTHENTICATED)")]
    LegacyUnauthenticated {
        /// The method.
        method: &'static str,
    },
}
