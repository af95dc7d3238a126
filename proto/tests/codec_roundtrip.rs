//! The codec against arbitrary input: every valid `sync_core::Message` survives
//! bytes → message unchanged, and any bytes at all give a message or an error, never a panic.

use music262_proto::client::{PeerFrame, SyncGossip, peer_frame};
use music262_proto::codec::{
    CodecError, MAX_ADDR_LEN, MAX_FRAME_LEN, MAX_GOSSIP_ADDRS, decode_from_bytes, encode_to_vec,
};
use proptest::prelude::*;
use prost::Message as _;
use sync_core::{
    Announce, ClockMapping, GroupState, GroupTime, Hello, LeaveReason, LocalTime, MemberInfo,
    Message, Mode, NodeId, Probe, ProbeReply, Queue, Repeat, SongRef, StateVersion,
};

fn node_id() -> impl Strategy<Value = NodeId> {
    any::<u64>().prop_map(NodeId)
}

fn version() -> impl Strategy<Value = StateVersion> {
    (any::<u64>(), node_id(), any::<u32>(), node_id()).prop_map(
        |(counter, origin, revision, by)| StateVersion {
            counter,
            origin,
            revision,
            revised_by: by,
        },
    )
}

fn addr() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,40}:[0-9]{1,5}",
        "\\[[0-9a-f:]{2,39}\\]:[0-9]{1,5}",
        // Any non-empty text up to the limit, including multi-byte characters.
        proptest::string::string_regex(".{1,60}").unwrap(),
    ]
    .prop_filter("within the address limit", |a| {
        !a.is_empty() && a.len() <= MAX_ADDR_LEN
    })
}

fn mapping() -> impl Strategy<Value = ClockMapping> {
    (
        any::<u64>(),
        any::<u64>(),
        prop_oneof![-2_000.0f64..2_000.0, Just(0.0), -1e12f64..1e12],
        any::<u64>(),
    )
        .prop_map(|(l, g, rate_ppm, timebase)| ClockMapping {
            local: LocalTime(l),
            group: GroupTime(g),
            rate_ppm,
            timebase,
        })
}

fn announce() -> impl Strategy<Value = Announce> {
    (
        (node_id(), any::<u8>(), any::<u64>(), any::<u64>()),
        (
            proptest::option::of(node_id()),
            version(),
            mapping(),
            any::<u64>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (root, stratum, root_seq, root_delay),
                (parent, state_version, mapping, radius, subtree_delay),
            )| {
                Announce {
                    root,
                    stratum,
                    root_seq,
                    root_delay,
                    parent,
                    state_version,
                    mapping,
                    radius,
                    subtree_delay,
                    members: None,
                }
            },
        )
}

/// A valid queue: up to five entries with distinct ids, maybe one current, any repeat and
/// shuffle.
fn queue() -> impl Strategy<Value = Queue> {
    (
        proptest::collection::vec(song(), 0..5),
        any::<prop::sample::Index>(),
        any::<bool>(),
        prop_oneof![Just(Repeat::Off), Just(Repeat::One), Just(Repeat::All)],
        proptest::option::of(any::<u64>()),
    )
        .prop_map(|(songs, pick, has_current, repeat, shuffle)| {
            let mut q = Queue {
                repeat,
                shuffle,
                ..Queue::default()
            };
            if !songs.is_empty() {
                q.add(&songs).expect("five entries fit");
                q.current = has_current.then(|| q.entries[pick.index(songs.len())].id);
            }
            q
        })
}

fn song() -> impl Strategy<Value = SongRef> {
    (
        proptest::string::string_regex(".{1,80}").unwrap(),
        "([0-9a-f]{64})?",
        1u32..=u32::MAX,
        any::<u64>(),
    )
        .prop_map(|(name, content_hash, sample_rate, frames)| SongRef {
            name,
            content_hash,
            sample_rate,
            frames,
        })
}

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![
        any::<u64>().prop_map(|t| Mode::Stopped { at: GroupTime(t) }),
        (any::<u64>(), any::<u64>()).prop_map(|(f, t)| Mode::Loading {
            start_frame: f,
            deadline: GroupTime(t)
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(f, t)| Mode::Paused {
            frame: f,
            at: GroupTime(t)
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(f, t)| Mode::Playing {
            frame: f,
            at: GroupTime(t)
        }),
    ]
}

fn leave_reason() -> impl Strategy<Value = LeaveReason> {
    prop_oneof![
        Just(LeaveReason::Leaving),
        Just(LeaveReason::Full),
        Just(LeaveReason::Duplicate),
        Just(LeaveReason::Refused),
        Just(LeaveReason::Timeout),
    ]
}

/// A room name as a receiver keeps it: printable, trimmed, at most 64 bytes.
fn name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]([A-Za-z0-9 ]{0,30}[A-Za-z0-9])?"
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            node_id(),
            any::<u32>(),
            proptest::option::of(addr()),
            proptest::option::of(name())
        )
            .prop_map(
                |(node_id, protocol_version, listen_addr, name)| Message::Hello(Hello {
                    node_id,
                    protocol_version,
                    listen_addr,
                    name,
                })
            ),
        (any::<u32>(), any::<u64>(), announce()).prop_map(|(seq, t0, announce)| {
            Message::Probe(Probe {
                seq,
                t0: LocalTime(t0),
                announce,
            })
        }),
        (
            any::<u32>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            announce()
        )
            .prop_map(
                |(seq, t0, t1, t2, announce)| Message::ProbeReply(ProbeReply {
                    seq,
                    t0: LocalTime(t0),
                    t1: LocalTime(t1),
                    t2: LocalTime(t2),
                    announce,
                })
            ),
        (
            version(),
            proptest::option::of(song()),
            mode(),
            any::<u64>(),
            queue()
        )
            .prop_map(|(version, song, mode, timebase, queue)| Message::State(
                GroupState {
                    version,
                    song,
                    mode,
                    timebase,
                    queue,
                }
            )),
        version().prop_map(Message::Ready),
        proptest::collection::vec(addr(), 0..=MAX_GOSSIP_ADDRS).prop_map(Message::Gossip),
        proptest::collection::vec(
            (
                addr(),
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(name())
            ),
            1..=MAX_GOSSIP_ADDRS
        )
        .prop_map(|m| Message::Members(
            m.into_iter()
                .map(|(addr, id, age_ms, name)| MemberInfo {
                    addr,
                    node_id: NodeId(id),
                    age_ms,
                    name,
                })
                .collect()
        )),
        leave_reason().prop_map(Message::Leave),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_messages_survive_encoding_unchanged(msg in message()) {
        let bytes = encode_to_vec(&msg).expect("a valid message encodes");
        prop_assert!(bytes.len() <= MAX_FRAME_LEN);
        prop_assert_eq!(decode_from_bytes(&bytes), Ok(msg.clone()));
        // The frame type converts the same way as the bytes.
        prop_assert_eq!(Message::try_from(PeerFrame::from(&msg)), Ok(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_from_bytes(&bytes);
    }

    #[test]
    fn damaged_frames_decode_or_fail_cleanly(
        msg in message(),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let bytes = encode_to_vec(&msg).unwrap();
        // Truncated anywhere.
        let _ = decode_from_bytes(&bytes[..cut.index(bytes.len() + 1)]);
        // Bytes overwritten anywhere.
        let mut damaged = bytes.clone();
        if !damaged.is_empty() {
            for (at, value) in flips {
                let i = at.index(damaged.len());
                damaged[i] = value;
            }
        }
        if let Ok(decoded) = decode_from_bytes(&damaged) {
            // Whatever decodes is itself a valid message, so it encodes again.
            prop_assert!(encode_to_vec(&decoded).is_ok());
        }
    }
}

#[test]
fn bad_bytes_give_errors() {
    let cases: &[(&str, &[u8])] = &[
        ("empty frame (no body)", &[]),
        ("truncated varint", &[0x08, 0xff]),
        ("length beyond the end", &[0x0a, 0x05, 0x08]),
        ("wire type 7 does not exist", &[0x0f]),
        ("field number 0", &[0x00, 0x01]),
        ("group wire type", &[0x0b]),
        (
            "hello with invalid UTF-8 address",
            &[0x0a, 0x04, 0x1a, 0x02, 0xff, 0xfe],
        ),
        ("leave with unknown reason", &[0x3a, 0x02, 0x08, 0x09]),
        ("leave with unspecified reason", &[0x3a, 0x00]),
        ("probe without announce", &[0x12, 0x02, 0x08, 0x01]),
        ("state without mode", &[0x22, 0x02, 0x0a, 0x00]),
        ("ready without version", &[0x2a, 0x00]),
    ];
    for (what, bytes) in cases {
        assert!(
            decode_from_bytes(bytes).is_err(),
            "{what}: {bytes:02x?} decoded"
        );
    }
    assert_eq!(
        decode_from_bytes(&[]),
        Err(CodecError::MissingField("PeerFrame.body"))
    );
}

#[test]
fn oversized_frames_are_refused_with_a_clear_error() {
    // A gossip frame far over the limit, as a misbehaving peer could send it.
    let frame = PeerFrame {
        body: Some(peer_frame::Body::Gossip(SyncGossip {
            addrs: vec!["x".repeat(200); 400],
            members: Vec::new(),
        })),
        ..PeerFrame::default()
    };
    let bytes = frame.encode_to_vec();
    assert!(bytes.len() > MAX_FRAME_LEN);
    let err = decode_from_bytes(&bytes).unwrap_err();
    assert_eq!(
        err,
        CodecError::FrameTooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN
        }
    );
    assert!(err.to_string().contains("exceeds the limit of 65536 bytes"));
}

#[test]
fn unknown_fields_from_a_newer_peer_are_ignored() {
    // A Ready frame followed by a field this version does not know (number 13, varint).
    let mut bytes = encode_to_vec(&Message::Ready(StateVersion::new(3, NodeId(4)))).unwrap();
    bytes.extend_from_slice(&[13 << 3, 0x01]);
    assert_eq!(
        decode_from_bytes(&bytes),
        Ok(Message::Ready(StateVersion::new(3, NodeId(4))))
    );
}
