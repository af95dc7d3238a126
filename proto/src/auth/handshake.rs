//! The link handshake: the opening frames that exchange key ids and nonces, and the keys of
//! both directions derived from them ([`LinkKeys`]).

use std::fmt;
use std::sync::atomic::AtomicU64;

use super::{
    AuthError, Channel, GroupKey, KEY_ID_LEN, LINK_LABEL, NONCE_LEN, Opener, ReplayWindow, Role,
    Sealer, hex, hmac,
};
use crate::client::{PeerFrame, SyncAuth};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::testing::{key, leave, pair};

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
}
