//! The probe's transmit instant in its encoded frame: found by its key and provisional value,
//! rewritten just before the frame is handed to quinn.

use sync_core::Message;

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
}
