//! Sealing this end's frames and opening the peer's: a tag over channel, counter and body,
//! and a counter that must be new on its channel.

use std::sync::atomic::{AtomicU64, Ordering};

use hmac::{KeyInit, Mac};
use prost::Message as _;

use super::{AuthError, Channel, HmacSha256, MAC_LEN, ReplayWindow};
use crate::client::{PeerFrame, SyncAuth};

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
    pub(super) key: [u8; 32],
    pub(super) stream: AtomicU64,
    pub(super) datagram: AtomicU64,
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
/// Opens the peer's frames on one channel of a link.
#[derive(Debug)]
pub struct Opener {
    pub(super) key: [u8; 32],
    pub(super) channel: Channel,
    pub(super) window: ReplayWindow,
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
    use crate::auth::testing::{key, leave, pair};
    use crate::client::{SyncLeave, peer_frame};

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
}
