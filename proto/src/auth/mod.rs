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

//!
//! The pieces: [`GroupKey`] (the secret and what is derived from it), the handshake
//! ([`opening_frame`], [`read_opening`], [`LinkKeys`]), sealing and opening frames ([`Sealer`],
//! [`Opener`]), the datagram [`ReplayWindow`], and the errors ([`KeyError`], [`AuthError`],
//! [`Refusal`]).

mod errors;
mod handshake;
mod key;
mod replay;
mod seal;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub use errors::{AuthError, KeyError, Refusal};
pub use handshake::{LinkKeys, opening_frame, read_opening};
pub use key::GroupKey;
pub use replay::ReplayWindow;
pub use seal::{Opener, Sealer};

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

/// What the tests of every part start from.
#[cfg(test)]
mod testing {
    use super::*;
    use crate::client::{PeerFrame, SyncLeave, peer_frame};

    pub(super) fn key(s: &str) -> GroupKey {
        GroupKey::new(s.as_bytes()).unwrap()
    }

    pub(super) fn leave() -> PeerFrame {
        PeerFrame {
            body: Some(peer_frame::Body::Leave(SyncLeave { reason: 1 })),
            auth: None,
            mac: Vec::new(),
        }
    }

    /// Both ends of a link after the opening frames.
    pub(super) fn pair(
        a: &GroupKey,
        b: &GroupKey,
        binding: (&[u8], &[u8]),
    ) -> (LinkKeys, LinkKeys) {
        let (na, nb) = ([1u8; NONCE_LEN], [2u8; NONCE_LEN]);
        (
            LinkKeys::derive(a, Role::Dialler, &na, &nb, binding.0),
            LinkKeys::derive(b, Role::Acceptor, &nb, &na, binding.1),
        )
    }
}
