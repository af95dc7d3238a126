//! Group-key authentication of peer frames: pure helpers shared by both transports (no I/O, no
//! clock, no randomness: the caller supplies the nonce).
//!
//! A link between two peers that share a group key goes through three steps:
//!
//! 1. each end sends an *opening* frame ([`opening_frame`]): its key id and a fresh nonce;
//! 2. each end reads the other's ([`read_opening`]), derives the link keys of both directions
//!    from the group key, both nonces and a channel binding ([`LinkKeys::derive`]), and sends a
//!    *proof*, a sealed frame without a body;
//! 3. each end checks the other's proof ([`Opener::open_proof`]); only then is the link handed
//!    to sync-core. From there on every frame is sealed ([`Sealer`]) and opened ([`Opener`]).
//!
//! Why this is sound: a frame's tag covers its channel, its counter and its body, under a key
//! that depends on both ends' nonces of this very link, so a frame cannot be altered, moved to
//! another link or session, reflected back to its sender, or replayed (the counter must be new
//! on its channel). A peer without the key cannot produce the proof, so it never reaches
//! sync-core. On QUIC the channel binding is TLS exporter keying material: the two ends of a
//! TLS session share it and nobody else does, so a man in the middle (peer certificates are
//! self-signed and not checked) ends two TLS sessions with different exporters and both proofs
//! fail. On gRPC (plain TCP) the binding is empty: frames are authenticated but not encrypted.
//!
//! Replay protection: the ordered stream of a link needs each counter to be greater than the
//! last; QUIC datagrams may be lost or reordered, so their counters are checked against a
//! sliding window ([`ReplayWindow`], [`DATAGRAM_WINDOW`] counters wide), as in IPsec.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{Hmac, KeyInit, Mac};
use prost::Message as _;
use sha2::Sha256;

use crate::client::{PeerFrame, SyncAuth};

type HmacSha256 = Hmac<Sha256>;

/// Length of a frame's tag, bytes (a full HMAC-SHA256 output).
pub const MAC_LEN: usize = 32;
/// Length of a link nonce, bytes.
pub const NONCE_LEN: usize = 16;
/// Length of a key id, bytes.
pub const KEY_ID_LEN: usize = 8;
/// Shortest group key accepted, bytes. The key is not stretched (peers derive it on every
/// start), so it should be random; this only catches an obvious mistake.
pub const MIN_KEY_LEN: usize = 12;
/// Longest group key accepted, bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// How far behind the highest datagram counter seen a datagram may still arrive.
pub const DATAGRAM_WINDOW: u64 = 128;
/// Length of the TLS exporter keying material used as a QUIC link's channel binding.
pub const CHANNEL_BINDING_LEN: usize = 32;
/// TLS exporter label of the channel binding (RFC 5705 / RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-music262-link-v1";
/// gRPC metadata key that carries the legacy-call token ([`GroupKey::legacy_token`]).
pub const LEGACY_TOKEN_METADATA: &str = "music262-auth";

const ROOT_LABEL: &[u8] = b"music262 group key v1";
const KEY_ID_LABEL: &[u8] = b"music262 key id v1";
const LINK_LABEL: &[u8] = b"music262 link v1";
const LEGACY_LABEL: &[u8] = b"music262 legacy calls v1";

/// Which channel of a link a frame travelled on; part of what its tag covers, and each has its
/// own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// The link's ordered, reliable stream (gRPC `Exchange`, the QUIC stream).
    Stream,
    /// QUIC datagrams: may be lost or reordered.
    Datagram,
}

impl Channel {
    fn byte(self) -> u8 {
        match self {
            Channel::Stream => 0,
            Channel::Datagram => 1,
        }
    }
}

/// Which end of the link this is (who dialled): the two directions get different keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This end dialled.
    Dialler,
    /// This end accepted.
    Acceptor,
}

/// Why a group key given by the user cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Shorter than [`MIN_KEY_LEN`].
    #[error("the group key is too short: {len} bytes (at least {min}; use a random one)")]
    TooShort {
        /// Its length, bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// Longer than [`MAX_KEY_LEN`].
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

/// A group key: the secret every peer of a group is given, and what is derived from it.
#[derive(Clone)]
pub struct GroupKey {
    root: [u8; 32],
    id: [u8; KEY_ID_LEN],
}

impl fmt::Debug for GroupKey {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupKey(id {})", self.fingerprint())
    }
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl GroupKey {
    /// The group key for the secret `key` (the bytes of what the user typed).
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.len() < MIN_KEY_LEN {
            return Err(KeyError::TooShort {
                len: key.len(),
                min: MIN_KEY_LEN,
            });
        }
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
        let root = hmac(ROOT_LABEL, &[key]);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&hmac(&root, &[KEY_ID_LABEL])[..KEY_ID_LEN]);
        Ok(GroupKey { root, id })
    }

    /// The key id in hex: tells keys apart in logs without revealing them.
    pub fn fingerprint(&self) -> String {
        hex(&self.id)
    }

    /// The token a caller of the legacy methods that change playback presents in the
    /// [`LEGACY_TOKEN_METADATA`] metadata entry: lowercase hex of
    /// `HMAC-SHA256(root, "music262 legacy calls v1")`. It is derived from the key rather than
    /// the key itself, so that someone who reads it off the (unencrypted) connection can send
    /// legacy commands but cannot seal peer frames.
    pub fn legacy_token(&self) -> String {
        hex(&hmac(&self.root, &[LEGACY_LABEL]))
    }

    /// Whether `presented` is the legacy token, compared in constant time.
    pub fn legacy_token_matches(&self, presented: &str) -> bool {
        // Comparing tags of both strings rather than the strings hides where they differ and
        // how long the presented one is; `verify_slice` compares in constant time.
        let want = hmac(&self.root, &[b"compare", self.legacy_token().as_bytes()]);
        let mut got = HmacSha256::new_from_slice(&self.root).expect("any key length");
        got.update(b"compare");
        got.update(presented.trim().as_bytes());
        got.verify_slice(&want).is_ok()
    }
}

/// The frame that opens a keyed link: this end's key id and `nonce` (fresh random bytes for
/// this link).
pub fn opening_frame(key: &GroupKey, nonce: [u8; NONCE_LEN]) -> PeerFrame {
    PeerFrame {
        body: None,
        auth: Some(SyncAuth {
            key_id: key.id.to_vec(),
            nonce: nonce.to_vec(),
            counter: 0,
        }),
        mac: Vec::new(),
    }
}

/// Reads the peer's opening frame and returns its nonce.
pub fn read_opening(key: &GroupKey, frame: &PeerFrame) -> Result<[u8; NONCE_LEN], AuthError> {
    let Some(auth) = &frame.auth else {
        return Err(AuthError::PeerHasNoKey);
    };
    if frame.body.is_some() || !frame.mac.is_empty() {
        return Err(AuthError::MalformedOpening("it carries a body or a tag"));
    }
    if auth.key_id.len() != KEY_ID_LEN {
        return Err(AuthError::MalformedOpening("key id of the wrong length"));
    }
    if auth.key_id != key.id {
        return Err(AuthError::DifferentKey {
            theirs: hex(&auth.key_id),
            ours: key.fingerprint(),
        });
    }
    auth.nonce
        .as_slice()
        .try_into()
        .map_err(|_| AuthError::MalformedOpening("nonce of the wrong length"))
}

/// The two directions' keys of one link, as seen from one end.
#[derive(Clone)]
pub struct LinkKeys {
    tx: [u8; 32],
    rx: [u8; 32],
}

impl fmt::Debug for LinkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkKeys(..)")
    }
}

impl LinkKeys {
    /// Derives the keys of a link from the group key, this end's role, both nonces and the
    /// channel binding (TLS exporter keying material on QUIC, empty on gRPC).
    pub fn derive(
        key: &GroupKey,
        role: Role,
        own_nonce: &[u8; NONCE_LEN],
        peer_nonce: &[u8; NONCE_LEN],
        binding: &[u8],
    ) -> Self {
        let (dialler, acceptor) = match role {
            Role::Dialler => (own_nonce, peer_nonce),
            Role::Acceptor => (peer_nonce, own_nonce),
        };
        let binding_len = (binding.len() as u64).to_le_bytes();
        let direction = |d: u8| {
            hmac(
                &key.root,
                &[LINK_LABEL, &[d], dialler, acceptor, &binding_len, binding],
            )
        };
        // Direction 0 is dialler -> acceptor.
        let (to_acceptor, to_dialler) = (direction(0), direction(1));
        match role {
            Role::Dialler => LinkKeys {
                tx: to_acceptor,
                rx: to_dialler,
            },
            Role::Acceptor => LinkKeys {
                tx: to_dialler,
                rx: to_acceptor,
            },
        }
    }

    /// The sealer of this end's frames.
    pub fn sealer(&self) -> Sealer {
        Sealer {
            key: self.tx,
            stream: AtomicU64::new(0),
            datagram: AtomicU64::new(0),
        }
    }

    /// The opener of the peer's frames on `channel`.
    pub fn opener(&self, channel: Channel) -> Opener {
        Opener {
            key: self.rx,
            channel,
            window: ReplayWindow::default(),
        }
    }
}

fn tag(key: &[u8; 32], channel: Channel, counter: u64, body: &[u8]) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).expect("any key length");
    m.update(&[channel.byte()]);
    m.update(&counter.to_le_bytes());
    m.update(body);
    m
}

/// The bytes a frame's tag covers besides channel and counter: the encoding of its body alone.
fn body_bytes(frame: &PeerFrame) -> Vec<u8> {
    PeerFrame {
        body: frame.body.clone(),
        auth: None,
        mac: Vec::new(),
    }
    .encode_to_vec()
}

/// Seals this end's frames on one link. Shared by the tasks that write the link's channels:
/// each channel's counter is atomic.
#[derive(Debug)]
pub struct Sealer {
    key: [u8; 32],
    stream: AtomicU64,
    datagram: AtomicU64,
}

impl Sealer {
    fn next(&self, channel: Channel) -> u64 {
        match channel {
            Channel::Stream => self.stream.fetch_add(1, Ordering::Relaxed),
            Channel::Datagram => self.datagram.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Seals the encoded body of a frame (the bytes of a `PeerFrame` with only its body set, as
    /// [`crate::codec::encode_to_vec`] makes them): returns those bytes followed by the `auth`
    /// and `mac` fields, which together decode as the sealed `PeerFrame`. The caller may have
    /// rewritten a transmit instant in `body` just before; the tag covers what is sent.
    pub fn seal_bytes(&self, channel: Channel, mut body: Vec<u8>) -> Vec<u8> {
        let counter = self.next(channel);
        let mac = tag(&self.key, channel, counter, &body)
            .finalize()
            .into_bytes();
        let trailer = PeerFrame {
            body: None,
            auth: Some(SyncAuth {
                key_id: Vec::new(),
                nonce: Vec::new(),
                counter,
            }),
            mac: mac.to_vec(),
        };
        trailer.encode(&mut body).expect("a Vec grows");
        body
    }

    /// Seals `frame` (its `auth` and `mac` are replaced).
    pub fn seal(&self, channel: Channel, frame: PeerFrame) -> PeerFrame {
        let counter = self.next(channel);
        let mac = tag(&self.key, channel, counter, &body_bytes(&frame))
            .finalize()
            .into_bytes();
        PeerFrame {
            body: frame.body,
            auth: Some(SyncAuth {
                key_id: Vec::new(),
                nonce: Vec::new(),
                counter,
            }),
            mac: mac.to_vec(),
        }
    }

    /// The proof frame: the first sealed frame on the stream, with no body.
    pub fn proof(&self) -> PeerFrame {
        self.seal(
            Channel::Stream,
            PeerFrame {
                body: None,
                auth: None,
                mac: Vec::new(),
            },
        )
    }

    /// Recomputes the tag of a sealed frame in place after `frame[..body_len]` (its body bytes)
    /// was changed, for a transport that rewrites a transmit instant after sealing. `frame` is
    /// what [`Sealer::seal_bytes`] or the encoding of [`Sealer::seal`] produced: the tag is its
    /// last [`MAC_LEN`] bytes.
    pub fn reseal_in_place(
        &self,
        channel: Channel,
        counter: u64,
        frame: &mut [u8],
        body_len: usize,
    ) {
        let mac = tag(&self.key, channel, counter, &frame[..body_len])
            .finalize()
            .into_bytes();
        let n = frame.len();
        frame[n - MAC_LEN..].copy_from_slice(&mac);
    }
}

/// Sliding-window replay check (RFC 4303 §3.4.3 style): the highest counter seen and a bitmap
/// of the [`DATAGRAM_WINDOW`] before it.
#[derive(Clone, Debug, Default)]
pub struct ReplayWindow {
    /// Highest counter accepted plus one (0: none yet).
    top: u64,
    /// Bit `i` set: counter `top - 1 - i` was seen.
    seen: u128,
}

impl ReplayWindow {
    /// Whether `counter` is new: neither seen nor older than the window.
    pub fn is_new(&self, counter: u64) -> bool {
        if counter >= self.top {
            return true;
        }
        let back = self.top - 1 - counter;
        back < DATAGRAM_WINDOW && self.seen & (1u128 << back) == 0
    }

    /// Records `counter` as seen (call only after its tag verified).
    pub fn mark(&mut self, counter: u64) {
        if counter >= self.top {
            let shift = counter + 1 - self.top;
            self.seen = if shift >= 128 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = counter + 1;
        } else {
            self.seen |= 1u128 << (self.top - 1 - counter);
        }
    }
}

/// Opens the peer's frames on one channel of a link.
#[derive(Debug)]
pub struct Opener {
    key: [u8; 32],
    channel: Channel,
    window: ReplayWindow,
}

impl Opener {
    /// Checks a sealed frame: its tag, then that its counter is new on this channel (on the
    /// stream: greater than every earlier one; on datagrams: within the window and unseen).
    /// Returns the frame without its seal. Nothing is recorded unless the frame is accepted.
    pub fn open(&mut self, frame: PeerFrame) -> Result<PeerFrame, AuthError> {
        let Some(auth) = &frame.auth else {
            return Err(AuthError::Unsealed);
        };
        if frame.mac.len() != MAC_LEN || !auth.nonce.is_empty() || !auth.key_id.is_empty() {
            return Err(AuthError::Unsealed);
        }
        let counter = auth.counter;
        let channel = self.channel;
        tag(&self.key, channel, counter, &body_bytes(&frame))
            .verify_slice(&frame.mac)
            .map_err(|_| AuthError::BadMac { counter, channel })?;
        let fresh = match channel {
            Channel::Stream => counter >= self.window.top,
            Channel::Datagram => self.window.is_new(counter),
        };
        if !fresh {
            return Err(AuthError::Replayed { counter, channel });
        }
        self.window.mark(counter);
        Ok(PeerFrame {
            body: frame.body,
            auth: None,
            mac: Vec::new(),
        })
    }

    /// Checks the peer's proof: the first sealed frame on the stream, with no body.
    pub fn open_proof(&mut self, frame: PeerFrame) -> Result<(), AuthError> {
        if frame.auth.as_ref().is_some_and(|a| !a.nonce.is_empty()) {
            return Err(AuthError::Handshake("a second opening frame"));
        }
        let opened = self.open(frame)?;
        if opened.body.is_some() {
            return Err(AuthError::Handshake("a message before the proof"));
        }
        Ok(())
    }

    /// Opens a frame that must carry a message.
    pub fn open_message(&mut self, frame: PeerFrame) -> Result<PeerFrame, AuthError> {
        let opened = self.open(frame)?;
        if opened.body.is_none() {
            return Err(AuthError::Handshake("a second proof"));
        }
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{SyncLeave, peer_frame};

    fn key(s: &str) -> GroupKey {
        GroupKey::new(s.as_bytes()).unwrap()
    }

    fn leave() -> PeerFrame {
        PeerFrame {
            body: Some(peer_frame::Body::Leave(SyncLeave { reason: 1 })),
            auth: None,
            mac: Vec::new(),
        }
    }

    /// Both ends of a link after the opening frames.
    fn pair(a: &GroupKey, b: &GroupKey, binding: (&[u8], &[u8])) -> (LinkKeys, LinkKeys) {
        let (na, nb) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
        (
            LinkKeys::derive(a, Role::Dialler, &na, &nb, binding.0),
            LinkKeys::derive(b, Role::Acceptor, &nb, &na, binding.1),
        )
    }

    #[test]
    fn keys_shorter_than_the_minimum_or_longer_than_the_maximum_are_refused() {
        assert_eq!(
            GroupKey::new(b"short").unwrap_err(),
            KeyError::TooShort { len: 5, min: 12 }
        );
        assert!(matches!(
            GroupKey::new(&[b'x'; MAX_KEY_LEN + 1]),
            Err(KeyError::TooLong { .. })
        ));
        assert!(GroupKey::new(&[b'x'; MIN_KEY_LEN]).is_ok());
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let k = key("correct horse battery");
        let shown = format!("{k:?}");
        assert!(!shown.contains("horse"));
        assert!(shown.contains(&k.fingerprint()));
    }

    #[test]
    fn sealed_frames_open_on_the_other_end_in_both_directions() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (b"", b""));
        let (sa, sb) = (a.sealer(), b.sealer());
        let mut ob = b.opener(Channel::Stream);
        let mut oa = a.opener(Channel::Stream);
        ob.open_proof(sa.proof()).unwrap();
        oa.open_proof(sb.proof()).unwrap();
        assert_eq!(
            ob.open_message(sa.seal(Channel::Stream, leave())).unwrap(),
            leave()
        );
        assert_eq!(
            oa.open_message(sb.seal(Channel::Stream, leave())).unwrap(),
            leave()
        );
    }

    #[test]
    fn a_frame_sealed_as_bytes_decodes_as_the_sealed_frame() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (b"", b""));
        let bytes = a
            .sealer()
            .seal_bytes(Channel::Datagram, leave().encode_to_vec());
        let frame = PeerFrame::decode(bytes.as_slice()).unwrap();
        assert_eq!(frame.auth.as_ref().unwrap().counter, 0);
        assert_eq!(
            b.opener(Channel::Datagram).open_message(frame).unwrap(),
            leave()
        );
    }

    #[test]
    fn a_forged_frame_is_refused_and_changes_nothing() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (b"", b""));
        let sa = a.sealer();
        let mut ob = b.opener(Channel::Stream);
        // An altered body under a genuine tag.
        let mut altered = sa.seal(Channel::Stream, leave());
        altered.body = Some(peer_frame::Body::Leave(SyncLeave { reason: 2 }));
        assert_eq!(
            ob.open(altered),
            Err(AuthError::BadMac {
                counter: 0,
                channel: Channel::Stream
            })
        );
        // A made-up tag.
        let mut made_up = sa.seal(Channel::Stream, leave());
        made_up.mac = vec![0xAB; MAC_LEN];
        assert!(matches!(ob.open(made_up), Err(AuthError::BadMac { .. })));
        // No seal at all.
        assert_eq!(ob.open(leave()), Err(AuthError::Unsealed));
        // The refused frames consumed no counter: the next genuine one (counter 2) opens.
        assert!(ob.open(sa.seal(Channel::Stream, leave())).is_ok());
    }

    #[test]
    fn a_replayed_frame_is_refused_on_the_stream_and_as_a_datagram() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (b"", b""));
        let sa = a.sealer();
        let mut stream = b.opener(Channel::Stream);
        let first = sa.seal(Channel::Stream, leave());
        assert!(stream.open(first.clone()).is_ok());
        assert_eq!(
            stream.open(first),
            Err(AuthError::Replayed {
                counter: 0,
                channel: Channel::Stream
            })
        );
        let mut datagrams = b.opener(Channel::Datagram);
        let d = sa.seal(Channel::Datagram, leave());
        assert!(datagrams.open(d.clone()).is_ok());
        assert!(matches!(
            datagrams.open(d),
            Err(AuthError::Replayed { counter: 0, .. })
        ));
    }

    #[test]
    fn a_frame_moved_to_another_channel_or_reflected_to_its_sender_is_refused() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (b"", b""));
        let frame = a.sealer().seal(Channel::Datagram, leave());
        assert!(matches!(
            b.opener(Channel::Stream).open(frame.clone()),
            Err(AuthError::BadMac { .. })
        ));
        assert!(matches!(
            a.opener(Channel::Datagram).open(frame),
            Err(AuthError::BadMac { .. })
        ));
    }

    #[test]
    fn frames_of_an_earlier_session_do_not_open_on_a_new_one() {
        let k = key("a shared group key");
        let (old_a, _) = pair(&k, &k, (b"", b""));
        let recorded = old_a.sealer().seal(Channel::Stream, leave());
        // Same dialler nonce replayed, but the acceptor chose a new one.
        let new_b = LinkKeys::derive(
            &k,
            Role::Acceptor,
            &[3u8; NONCE_LEN],
            &[1u8; NONCE_LEN],
            b"",
        );
        assert!(matches!(
            new_b.opener(Channel::Stream).open(recorded),
            Err(AuthError::BadMac { .. })
        ));
    }

    #[test]
    fn a_peer_with_a_different_key_is_told_apart_at_the_opening_and_cannot_seal() {
        let ours = key("a shared group key");
        let theirs = key("another group key");
        let opening = opening_frame(&theirs, [9; NONCE_LEN]);
        assert!(matches!(
            read_opening(&ours, &opening),
            Err(AuthError::DifferentKey { .. })
        ));
        assert_eq!(
            read_opening(&ours, &leave()),
            Err(AuthError::PeerHasNoKey),
            "an ordinary first frame means the peer has no key"
        );
        assert_eq!(
            read_opening(&ours, &opening_frame(&ours, [9; NONCE_LEN])),
            Ok([9; NONCE_LEN])
        );
        // Even past the opening, its proof fails.
        let (a, b) = pair(&theirs, &ours, (b"", b""));
        assert!(matches!(
            b.opener(Channel::Stream).open_proof(a.sealer().proof()),
            Err(AuthError::BadMac { .. })
        ));
    }

    #[test]
    fn ends_with_different_channel_bindings_do_not_authenticate_each_other() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (&[1; 32], &[2; 32]));
        assert!(matches!(
            b.opener(Channel::Stream).open_proof(a.sealer().proof()),
            Err(AuthError::BadMac { .. })
        ));
    }

    #[test]
    fn datagrams_may_arrive_out_of_order_within_the_window_but_not_twice_or_too_late() {
        let mut w = ReplayWindow::default();
        for c in [5, 3, 4, 0, 200] {
            assert!(w.is_new(c), "{c}");
            w.mark(c);
        }
        for c in [5, 3, 4, 200] {
            assert!(!w.is_new(c), "{c} twice");
        }
        // The window holds the newest counter and the DATAGRAM_WINDOW - 1 before it.
        let oldest = 200 + 1 - DATAGRAM_WINDOW;
        assert!(w.is_new(199) && w.is_new(oldest));
        assert!(!w.is_new(oldest - 1), "older than the window");
        assert!(!w.is_new(0));
    }

    #[test]
    fn a_resealed_frame_opens_after_its_transmit_instant_is_rewritten() {
        let k = key("a shared group key");
        let (a, b) = pair(&k, &k, (b"", b""));
        let sealer = a.sealer();
        let body = leave().encode_to_vec();
        let body_len = body.len();
        let mut bytes = sealer.seal_bytes(Channel::Stream, body);
        // Rewrite a body byte, as a transport rewrites a probe's instant, then reseal.
        bytes[body_len - 1] = 2;
        let tampered = bytes.clone();
        sealer.reseal_in_place(Channel::Stream, 0, &mut bytes, body_len);
        let mut opener = b.opener(Channel::Stream);
        assert!(matches!(
            opener.open(PeerFrame::decode(tampered.as_slice()).unwrap()),
            Err(AuthError::BadMac { .. })
        ));
        let opened = opener
            .open(PeerFrame::decode(bytes.as_slice()).unwrap())
            .unwrap();
        assert_eq!(
            opened.body,
            Some(peer_frame::Body::Leave(SyncLeave { reason: 2 }))
        );
    }

    #[test]
    fn the_legacy_token_matches_only_itself() {
        let k = key("a shared group key");
        let token = k.legacy_token();
        assert_eq!(token.len(), 64);
        assert!(k.legacy_token_matches(&token));
        assert!(!k.legacy_token_matches("a shared group key"));
        assert!(!k.legacy_token_matches(""));
        assert!(!key("another group key").legacy_token_matches(&token));
    }
}
