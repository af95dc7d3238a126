//! The codec between sync-core's typed [`Message`] and its wire form, the [`PeerFrame`]
//! envelope of `audio_sync.proto`.
//!
//! Encoding is total; decoding checks everything a peer could get wrong (a missing oneof or
//! required field, an unknown enum value, a stratum beyond 255, a non-finite rate, a zero
//! sample rate) and the size limits below, and reports it as a [`CodecError`]. No input makes
//! it panic. [`encode_to_vec`] applies the same limits before sending, so a frame this side
//! builds is a frame the other side accepts.

use prost::Message as _;
use sync_core::{
    Announce, ClockMapping, GroupState, GroupTime, Hello, LeaveReason, LocalTime, MemberInfo,
    MembersDigest, Message, Mode, NodeId, Probe, ProbeReply, Queue, QueueEntry, Repeat, SongRef,
    StateVersion, queue::MAX_ENTRIES, room_name,
};

use crate::client::{
    PeerFrame, SyncAnnounce, SyncClockMapping, SyncGossip, SyncGroupState, SyncHello, SyncLeave,
    SyncLeaveReason, SyncLoading, SyncMember, SyncMembersDigest, SyncMode, SyncPaused, SyncPlaying,
    SyncProbe, SyncProbeReply, SyncQueue, SyncQueueEntry, SyncReady, SyncRepeat, SyncSongRef,
    SyncStateVersion, SyncStopped, peer_frame, sync_mode,
};

/// Largest encoded [`PeerFrame`] accepted or produced, in bytes. A real frame is a few
/// hundred bytes; the largest legitimate one is a gossip list at its limit.
pub const MAX_FRAME_LEN: usize = 64 * 1024;
/// Most addresses in one gossip message, and most members in one members message.
pub const MAX_GOSSIP_ADDRS: usize = 64;
/// Longest peer address (`host:port`), in bytes: a 253-byte DNS name, a colon and a port.
pub const MAX_ADDR_LEN: usize = 261;
/// Longest song name, in bytes.
pub const MAX_SONG_NAME_LEN: usize = 1024;
/// Longest content hash, in hex digits (SHA-256 needs 64).
pub const MAX_CONTENT_HASH_LEN: usize = 128;

/// Why bytes or a frame could not be turned into a [`Message`] (or a message into bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The encoded frame is larger than [`MAX_FRAME_LEN`].
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Size of the frame, bytes.
        len: usize,
        /// The limit, bytes.
        max: usize,
    },
    /// The bytes are not a valid protobuf encoding of a `PeerFrame`.
    #[error("malformed frame: {0}")]
    Malformed(#[from] prost::DecodeError),
    /// A oneof or a message field that the message needs is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field holds a value outside its domain.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// Proto path of the field, e.g. `SyncAnnounce.stratum`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The frame opens a group-key handshake (it carries `auth` and no body): the peer has a
    /// group key and this end has none.
    #[error("the peer uses a group key and this client has none; link refused")]
    PeerHasKey,
    /// A string or a list is longer than its limit.
    #[error("`{field}` is too long: {len} > {max}")]
    TooLong {
        /// Proto path of the field.
        field: &'static str,
        /// Its length (bytes for strings, entries for lists).
        len: usize,
        /// The limit.
        max: usize,
    },
}

fn invalid(field: &'static str, reason: impl Into<String>) -> CodecError {
    CodecError::InvalidField {
        field,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Message -> PeerFrame (total)
// ---------------------------------------------------------------------------------------------

impl From<&Message> for PeerFrame {
    fn from(msg: &Message) -> Self {
        let body = match msg {
            Message::Hello(h) => peer_frame::Body::Hello(SyncHello {
                node_id: h.node_id.0,
                protocol_version: h.protocol_version,
                listen_addr: h.listen_addr.clone(),
                name: h.name.clone(),
            }),
            Message::Probe(p) => peer_frame::Body::Probe(SyncProbe {
                seq: p.seq,
                t0_ns: p.t0.as_nanos(),
                announce: Some(announce_to_wire(&p.announce)),
            }),
            Message::ProbeReply(r) => peer_frame::Body::ProbeReply(SyncProbeReply {
                seq: r.seq,
                t0_ns: r.t0.as_nanos(),
                t1_ns: r.t1.as_nanos(),
                t2_ns: r.t2.as_nanos(),
                announce: Some(announce_to_wire(&r.announce)),
            }),
            Message::State(s) => peer_frame::Body::State(state_to_wire(s)),
            Message::Ready(v) => peer_frame::Body::Ready(SyncReady {
                version: Some(version_to_wire(v)),
            }),
            Message::Gossip(addrs) => peer_frame::Body::Gossip(SyncGossip {
                addrs: addrs.clone(),
                members: Vec::new(),
            }),
            Message::Members(members) => peer_frame::Body::Gossip(SyncGossip {
                addrs: Vec::new(),
                members: members
                    .iter()
                    .map(|m| SyncMember {
                        addr: m.addr.clone(),
                        node_id: m.node_id.0,
                        age_ms: m.age_ms,
                        name: m.name.clone(),
                    })
                    .collect(),
            }),
            Message::Leave(reason) => peer_frame::Body::Leave(SyncLeave {
                reason: leave_reason_to_wire(*reason) as i32,
            }),
        };
        PeerFrame {
            body: Some(body),
            auth: None,
            mac: Vec::new(),
        }
    }
}

impl From<Message> for PeerFrame {
    fn from(msg: Message) -> Self {
        PeerFrame::from(&msg)
    }
}

fn version_to_wire(v: &StateVersion) -> SyncStateVersion {
    SyncStateVersion {
        counter: v.counter,
        origin: v.origin.0,
        revision: v.revision,
        revised_by: v.revised_by.0,
    }
}

fn mapping_to_wire(m: &ClockMapping) -> SyncClockMapping {
    SyncClockMapping {
        local_ns: m.local.as_nanos(),
        group_ns: m.group.as_nanos(),
        rate_ppm: m.rate_ppm,
        timebase: m.timebase,
    }
}

fn announce_to_wire(a: &Announce) -> SyncAnnounce {
    SyncAnnounce {
        root: a.root.0,
        stratum: u32::from(a.stratum),
        root_seq: a.root_seq,
        root_delay_ns: a.root_delay,
        parent: a.parent.map(|p| p.0),
        state_version: Some(version_to_wire(&a.state_version)),
        mapping: Some(mapping_to_wire(&a.mapping)),
        radius_ns: a.radius,
        subtree_delay_ns: a.subtree_delay,
        members: a.members.map(|d| SyncMembersDigest {
            count: d.count,
            hash: d.hash,
        }),
    }
}

fn state_to_wire(s: &GroupState) -> SyncGroupState {
    let kind = match s.mode {
        Mode::Stopped { at } => sync_mode::Kind::Stopped(SyncStopped {
            at_ns: at.as_nanos(),
        }),
        Mode::Loading {
            start_frame,
            deadline,
        } => sync_mode::Kind::Loading(SyncLoading {
            start_frame,
            deadline_ns: deadline.as_nanos(),
        }),
        Mode::Paused { frame, at } => sync_mode::Kind::Paused(SyncPaused {
            frame,
            at_ns: at.as_nanos(),
        }),
        Mode::Playing { frame, at } => sync_mode::Kind::Playing(SyncPlaying {
            frame,
            at_ns: at.as_nanos(),
        }),
    };
    SyncGroupState {
        version: Some(version_to_wire(&s.version)),
        song: s.song.as_ref().map(song_to_wire),
        mode: Some(SyncMode { kind: Some(kind) }),
        timebase: s.timebase,
        queue: (s.queue != Queue::default()).then(|| queue_to_wire(&s.queue)),
    }
}

fn song_to_wire(song: &SongRef) -> SyncSongRef {
    SyncSongRef {
        name: song.name.clone(),
        content_hash: song.content_hash.clone(),
        sample_rate: song.sample_rate,
        frames: song.frames,
    }
}

fn queue_to_wire(q: &Queue) -> SyncQueue {
    SyncQueue {
        entries: q
            .entries
            .iter()
            .map(|e| SyncQueueEntry {
                id: e.id,
                song: Some(song_to_wire(&e.song)),
            })
            .collect(),
        current: q.current,
        repeat: match q.repeat {
            Repeat::Off => SyncRepeat::Off,
            Repeat::One => SyncRepeat::One,
            Repeat::All => SyncRepeat::All,
        } as i32,
        shuffle_seed: q.shuffle,
        next_id: q.next_id,
    }
}

fn leave_reason_to_wire(r: LeaveReason) -> SyncLeaveReason {
    match r {
        LeaveReason::Leaving => SyncLeaveReason::Leaving,
        LeaveReason::Full => SyncLeaveReason::Full,
        LeaveReason::Duplicate => SyncLeaveReason::Duplicate,
        LeaveReason::Refused => SyncLeaveReason::Refused,
        LeaveReason::Timeout => SyncLeaveReason::Timeout,
    }
}

// ---------------------------------------------------------------------------------------------
// PeerFrame -> Message (checked)
// ---------------------------------------------------------------------------------------------

impl TryFrom<PeerFrame> for Message {
    type Error = CodecError;

    fn try_from(frame: PeerFrame) -> Result<Self, CodecError> {
        if frame.body.is_none() && frame.auth.is_some() {
            return Err(CodecError::PeerHasKey);
        }
        let msg = match frame
            .body
            .ok_or(CodecError::MissingField("PeerFrame.body"))?
        {
            peer_frame::Body::Hello(h) => Message::Hello(Hello {
                node_id: NodeId(h.node_id),
                protocol_version: h.protocol_version,
                listen_addr: h.listen_addr,
                name: h.name.as_deref().and_then(room_name),
            }),
            peer_frame::Body::Probe(p) => Message::Probe(Probe {
                seq: p.seq,
                t0: LocalTime(p.t0_ns),
                announce: announce_from_wire(
                    p.announce
                        .ok_or(CodecError::MissingField("SyncProbe.announce"))?,
                )?,
            }),
            peer_frame::Body::ProbeReply(r) => Message::ProbeReply(ProbeReply {
                seq: r.seq,
                t0: LocalTime(r.t0_ns),
                t1: LocalTime(r.t1_ns),
                t2: LocalTime(r.t2_ns),
                announce: announce_from_wire(
                    r.announce
                        .ok_or(CodecError::MissingField("SyncProbeReply.announce"))?,
                )?,
            }),
            peer_frame::Body::State(s) => Message::State(state_from_wire(s)?),
            peer_frame::Body::Ready(r) => Message::Ready(version_from_wire(
                r.version
                    .ok_or(CodecError::MissingField("SyncReady.version"))?,
            )),
            peer_frame::Body::Gossip(g) if g.members.is_empty() => Message::Gossip(g.addrs),
            peer_frame::Body::Gossip(g) => Message::Members(
                g.members
                    .into_iter()
                    .map(|m| MemberInfo {
                        addr: m.addr,
                        node_id: NodeId(m.node_id),
                        age_ms: m.age_ms,
                        name: m.name.as_deref().and_then(room_name),
                    })
                    .collect(),
            ),
            peer_frame::Body::Leave(l) => Message::Leave(leave_reason_from_wire(l.reason)?),
        };
        validate(&msg)?;
        Ok(msg)
    }
}

fn version_from_wire(v: SyncStateVersion) -> StateVersion {
    StateVersion {
        counter: v.counter,
        origin: NodeId(v.origin),
        revision: v.revision,
        revised_by: NodeId(v.revised_by),
    }
}

fn mapping_from_wire(m: SyncClockMapping) -> ClockMapping {
    ClockMapping {
        local: LocalTime(m.local_ns),
        group: GroupTime(m.group_ns),
        rate_ppm: m.rate_ppm,
        timebase: m.timebase,
    }
}

fn announce_from_wire(a: SyncAnnounce) -> Result<Announce, CodecError> {
    let stratum = u8::try_from(a.stratum)
        .map_err(|_| invalid("SyncAnnounce.stratum", format!("{} > 255", a.stratum)))?;
    Ok(Announce {
        root: NodeId(a.root),
        stratum,
        root_seq: a.root_seq,
        root_delay: a.root_delay_ns,
        parent: a.parent.map(NodeId),
        state_version: version_from_wire(
            a.state_version
                .ok_or(CodecError::MissingField("SyncAnnounce.state_version"))?,
        ),
        mapping: mapping_from_wire(
            a.mapping
                .ok_or(CodecError::MissingField("SyncAnnounce.mapping"))?,
        ),
        radius: a.radius_ns,
        subtree_delay: a.subtree_delay_ns,
        members: a.members.map(|d| MembersDigest {
            count: d.count,
            hash: d.hash,
        }),
    })
}

fn state_from_wire(s: SyncGroupState) -> Result<GroupState, CodecError> {
    let kind = s
        .mode
        .ok_or(CodecError::MissingField("SyncGroupState.mode"))?
        .kind
        .ok_or(CodecError::MissingField("SyncMode.kind"))?;
    let mode = match kind {
        sync_mode::Kind::Stopped(m) => Mode::Stopped {
            at: GroupTime(m.at_ns),
        },
        sync_mode::Kind::Loading(m) => Mode::Loading {
            start_frame: m.start_frame,
            deadline: GroupTime(m.deadline_ns),
        },
        sync_mode::Kind::Paused(m) => Mode::Paused {
            frame: m.frame,
            at: GroupTime(m.at_ns),
        },
        sync_mode::Kind::Playing(m) => Mode::Playing {
            frame: m.frame,
            at: GroupTime(m.at_ns),
        },
    };
    Ok(GroupState {
        version: version_from_wire(
            s.version
                .ok_or(CodecError::MissingField("SyncGroupState.version"))?,
        ),
        song: s.song.map(song_from_wire),
        mode,
        timebase: s.timebase,
        queue: s
            .queue
            .map(queue_from_wire)
            .transpose()?
            .unwrap_or_default(),
    })
}

fn song_from_wire(song: SyncSongRef) -> SongRef {
    SongRef {
        name: song.name,
        content_hash: song.content_hash,
        sample_rate: song.sample_rate,
        frames: song.frames,
    }
}

fn queue_from_wire(q: SyncQueue) -> Result<Queue, CodecError> {
    let repeat = match SyncRepeat::try_from(q.repeat) {
        Ok(SyncRepeat::Off) => Repeat::Off,
        Ok(SyncRepeat::One) => Repeat::One,
        Ok(SyncRepeat::All) => Repeat::All,
        Err(_) => return Err(invalid("SyncQueue.repeat", format!("{}", q.repeat))),
    };
    check_len("SyncQueue.entries", q.entries.len(), MAX_ENTRIES)?;
    let entries = q
        .entries
        .into_iter()
        .map(|e| {
            let song = e
                .song
                .ok_or(CodecError::MissingField("SyncQueueEntry.song"))?;
            Ok(QueueEntry {
                id: e.id,
                song: song_from_wire(song),
            })
        })
        .collect::<Result<Vec<_>, CodecError>>()?;
    Ok(Queue {
        entries,
        current: q.current,
        repeat,
        shuffle: q.shuffle_seed,
        next_id: q.next_id,
    })
}

fn leave_reason_from_wire(raw: i32) -> Result<LeaveReason, CodecError> {
    match SyncLeaveReason::try_from(raw) {
        Ok(SyncLeaveReason::Leaving) => Ok(LeaveReason::Leaving),
        Ok(SyncLeaveReason::Full) => Ok(LeaveReason::Full),
        Ok(SyncLeaveReason::Duplicate) => Ok(LeaveReason::Duplicate),
        Ok(SyncLeaveReason::Refused) => Ok(LeaveReason::Refused),
        Ok(SyncLeaveReason::Timeout) => Ok(LeaveReason::Timeout),
        Ok(SyncLeaveReason::Unspecified) => Err(invalid("SyncLeave.reason", "unspecified")),
        Err(_) => Err(invalid("SyncLeave.reason", format!("unknown value {raw}"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Value rules and limits, shared by both directions
// ---------------------------------------------------------------------------------------------

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), CodecError> {
    if len > max {
        Err(CodecError::TooLong { field, len, max })
    } else {
        Ok(())
    }
}

fn check_addr(field: &'static str, addr: &str) -> Result<(), CodecError> {
    if addr.is_empty() {
        return Err(invalid(field, "empty address"));
    }
    check_len(field, addr.len(), MAX_ADDR_LEN)
}

fn check_announce(field: &'static str, a: &Announce) -> Result<(), CodecError> {
    if !a.mapping.rate_ppm.is_finite() {
        return Err(invalid(
            field,
            format!("rate_ppm is {}", a.mapping.rate_ppm),
        ));
    }
    Ok(())
}

fn check_song(song: &SongRef) -> Result<(), CodecError> {
    if song.name.is_empty() {
        return Err(invalid("SyncSongRef.name", "empty"));
    }
    check_len("SyncSongRef.name", song.name.len(), MAX_SONG_NAME_LEN)?;
    check_len(
        "SyncSongRef.content_hash",
        song.content_hash.len(),
        MAX_CONTENT_HASH_LEN,
    )?;
    if !song
        .content_hash
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            "SyncSongRef.content_hash",
            "not lowercase hexadecimal",
        ));
    }
    if song.sample_rate == 0 {
        return Err(invalid("SyncSongRef.sample_rate", "zero"));
    }
    Ok(())
}

/// Checks the value rules and limits of a message: what [`Message::try_from`] enforces on
/// input and [`encode_to_vec`] on output (except the frame size, which needs the encoding).
pub fn validate(msg: &Message) -> Result<(), CodecError> {
    match msg {
        Message::Hello(h) => match &h.listen_addr {
            Some(addr) => check_addr("SyncHello.listen_addr", addr),
            None => Ok(()),
        },
        Message::Probe(p) => check_announce("SyncProbe.announce.mapping", &p.announce),
        Message::ProbeReply(r) => check_announce("SyncProbeReply.announce.mapping", &r.announce),
        Message::State(s) => {
            s.song.as_ref().map_or(Ok(()), check_song)?;
            s.queue
                .entries
                .iter()
                .try_for_each(|e| check_song(&e.song))?;
            s.queue.validate().map_err(|why| invalid("SyncQueue", why))
        }
        Message::Ready(_) | Message::Leave(_) => Ok(()),
        Message::Gossip(addrs) => {
            check_len("SyncGossip.addrs", addrs.len(), MAX_GOSSIP_ADDRS)?;
            addrs
                .iter()
                .try_for_each(|a| check_addr("SyncGossip.addrs", a))
        }
        Message::Members(members) => {
            if members.is_empty() {
                // It would read back as an empty gossip.
                return Err(invalid("SyncGossip.members", "no member"));
            }
            check_len("SyncGossip.members", members.len(), MAX_GOSSIP_ADDRS)?;
            members
                .iter()
                .try_for_each(|m| check_addr("SyncGossip.members.addr", &m.addr))
        }
    }
}

/// Encodes a message as the bytes of a [`PeerFrame`], refusing what a peer would refuse:
/// a value outside its domain, a string or list beyond its limit, or a frame larger than
/// [`MAX_FRAME_LEN`].
pub fn encode_to_vec(msg: &Message) -> Result<Vec<u8>, CodecError> {
    validate(msg)?;
    let frame = PeerFrame::from(msg);
    let len = frame.encoded_len();
    if len > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(frame.encode_to_vec())
}

/// Decodes the bytes of one [`PeerFrame`] (as produced by [`encode_to_vec`], without any
/// length prefix) into a message. Never panics; every problem is a [`CodecError`].
pub fn decode_from_bytes(bytes: &[u8]) -> Result<Message, CodecError> {
    if bytes.len() > MAX_FRAME_LEN {
        return Err(CodecError::FrameTooLarge {
            len: bytes.len(),
            max: MAX_FRAME_LEN,
        });
    }
    Message::try_from(PeerFrame::decode(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn announce() -> Announce {
        Announce {
            root: NodeId(1),
            stratum: 2,
            root_seq: 3,
            root_delay: 4,
            parent: Some(NodeId(5)),
            state_version: StateVersion::new(6, NodeId(7)).revised(NodeId(11)),
            mapping: ClockMapping {
                local: LocalTime(8),
                group: GroupTime(9),
                rate_ppm: -12.5,
                timebase: 12,
            },
            radius: 10,
            subtree_delay: 11,
            members: None,
        }
    }

    fn song() -> SongRef {
        SongRef {
            name: "a.wav".into(),
            content_hash: "00ff".into(),
            sample_rate: 48_000,
            frames: 480_000,
        }
    }

    fn wire_probe() -> PeerFrame {
        PeerFrame::from(Message::Probe(Probe {
            seq: 1,
            t0: LocalTime(2),
            announce: announce(),
        }))
    }

    #[test]
    fn every_message_kind_round_trips() {
        let msgs = [
            Message::Hello(Hello {
                node_id: NodeId(u64::MAX),
                protocol_version: sync_core::PROTOCOL_VERSION,
                listen_addr: Some("10.0.0.1:50052".into()),
                name: None,
            }),
            Message::Probe(Probe {
                seq: 1,
                t0: LocalTime(2),
                announce: announce(),
            }),
            Message::ProbeReply(ProbeReply {
                seq: 1,
                t0: LocalTime(2),
                t1: LocalTime(3),
                t2: LocalTime(4),
                announce: Announce {
                    parent: None,
                    ..announce()
                },
            }),
            Message::State(GroupState {
                version: StateVersion::new(1, NodeId(2)),
                song: Some(song()),
                mode: Mode::Paused {
                    frame: 7,
                    at: GroupTime(8),
                },
                timebase: u64::MAX,
                queue: Queue::default(),
            }),
            Message::State(GroupState::initial(0)),
            Message::Ready(StateVersion::default()),
            Message::Gossip(vec!["a:1".into(), "b:2".into()]),
            Message::Gossip(vec![]),
            Message::Members(vec![MemberInfo {
                addr: "[::1]:7".into(),
                node_id: NodeId(u64::MAX),
                age_ms: 1500,
                name: Some("Küche".into()),
            }]),
            Message::Leave(LeaveReason::Full),
        ];
        for m in msgs {
            let bytes = encode_to_vec(&m).unwrap();
            assert_eq!(decode_from_bytes(&bytes).unwrap(), m);
        }
    }

    #[test]
    fn absent_required_members_are_reported_by_name() {
        assert_eq!(
            Message::try_from(PeerFrame::default()),
            Err(CodecError::MissingField("PeerFrame.body"))
        );
        let mut f = wire_probe();
        if let Some(peer_frame::Body::Probe(p)) = &mut f.body {
            p.announce.as_mut().unwrap().mapping = None;
        }
        assert_eq!(
            Message::try_from(f),
            Err(CodecError::MissingField("SyncAnnounce.mapping"))
        );
        let f = PeerFrame {
            body: Some(peer_frame::Body::State(SyncGroupState {
                version: Some(SyncStateVersion::default()),
                song: None,
                mode: Some(SyncMode { kind: None }),
                timebase: 0,
                queue: None,
            })),
            ..PeerFrame::default()
        };
        assert_eq!(
            Message::try_from(f),
            Err(CodecError::MissingField("SyncMode.kind"))
        );
    }

    #[test]
    fn out_of_domain_values_are_refused() {
        let mut f = wire_probe();
        if let Some(peer_frame::Body::Probe(p)) = &mut f.body {
            p.announce.as_mut().unwrap().stratum = 256;
        }
        assert!(matches!(
            Message::try_from(f),
            Err(CodecError::InvalidField {
                field: "SyncAnnounce.stratum",
                ..
            })
        ));

        let mut f = wire_probe();
        if let Some(peer_frame::Body::Probe(p)) = &mut f.body {
            p.announce
                .as_mut()
                .unwrap()
                .mapping
                .as_mut()
                .unwrap()
                .rate_ppm = f64::NAN;
        }
        assert!(matches!(
            Message::try_from(f),
            Err(CodecError::InvalidField { .. })
        ));

        for reason in [0, 6, -1] {
            let f = PeerFrame {
                body: Some(peer_frame::Body::Leave(SyncLeave { reason })),
                ..PeerFrame::default()
            };
            assert!(matches!(
                Message::try_from(f),
                Err(CodecError::InvalidField {
                    field: "SyncLeave.reason",
                    ..
                })
            ));
        }

        let bad_songs = [
            SongRef {
                sample_rate: 0,
                ..song()
            },
            SongRef {
                name: String::new(),
                ..song()
            },
            SongRef {
                content_hash: "ABCD".into(),
                ..song()
            },
            SongRef {
                name: "x".repeat(MAX_SONG_NAME_LEN + 1),
                ..song()
            },
        ];
        for s in bad_songs {
            let m = Message::State(GroupState {
                song: Some(s),
                ..GroupState::initial(3)
            });
            assert!(encode_to_vec(&m).is_err(), "{m:?} was encoded");
            let bytes = PeerFrame::from(&m).encode_to_vec();
            assert!(decode_from_bytes(&bytes).is_err(), "{m:?} was accepted");
        }
    }

    #[test]
    fn a_room_name_is_read_without_control_characters_and_cut_to_its_limit() {
        let hello = |name: &str| SyncHello {
            node_id: 3,
            protocol_version: 1,
            listen_addr: None,
            name: Some(name.into()),
        };
        let read = |h: SyncHello| {
            let frame = PeerFrame {
                body: Some(peer_frame::Body::Hello(h)),
                ..PeerFrame::default()
            };
            match decode_from_bytes(&frame.encode_to_vec()).unwrap() {
                Message::Hello(h) => h.name,
                other => panic!("not a hello: {other:?}"),
            }
        };
        assert_eq!(read(hello("Kit\u{1b}[2Jchen\n")), Some("Kit[2Jchen".into()));
        assert_eq!(read(hello("\t \r")), None);
        let long = read(hello(&"é".repeat(100))).unwrap();
        assert_eq!(long, "é".repeat(sync_core::MAX_NAME_LEN / 2));
    }

    #[test]
    fn members_reach_an_older_peer_as_an_empty_gossip_and_empty_lists_are_refused() {
        let m = Message::Members(vec![MemberInfo {
            addr: "10.0.0.2:50052".into(),
            node_id: NodeId(9),
            age_ms: 0,
            name: None,
        }]);
        let frame = PeerFrame::decode(encode_to_vec(&m).unwrap().as_slice()).unwrap();
        let Some(peer_frame::Body::Gossip(g)) = frame.body else {
            panic!("members travel in the gossip body");
        };
        assert!(g.addrs.is_empty(), "an older peer dials nothing");
        assert!(encode_to_vec(&Message::Members(Vec::new())).is_err());
        let blank = Message::Members(vec![MemberInfo {
            addr: String::new(),
            node_id: NodeId(1),
            age_ms: 0,
            name: None,
        }]);
        let bytes = PeerFrame::from(&blank).encode_to_vec();
        assert!(decode_from_bytes(&bytes).is_err());
    }

    #[test]
    fn gossip_and_address_limits_hold_in_both_directions() {
        let too_many = Message::Gossip(vec!["h:1".into(); MAX_GOSSIP_ADDRS + 1]);
        assert_eq!(
            encode_to_vec(&too_many),
            Err(CodecError::TooLong {
                field: "SyncGossip.addrs",
                len: MAX_GOSSIP_ADDRS + 1,
                max: MAX_GOSSIP_ADDRS
            })
        );
        let bytes = PeerFrame::from(&too_many).encode_to_vec();
        assert!(matches!(
            decode_from_bytes(&bytes),
            Err(CodecError::TooLong { .. })
        ));
        let at_limit = Message::Gossip(vec!["h".repeat(MAX_ADDR_LEN); MAX_GOSSIP_ADDRS]);
        assert_eq!(
            decode_from_bytes(&encode_to_vec(&at_limit).unwrap()),
            Ok(at_limit)
        );
        let long_addr = Message::Gossip(vec!["h".repeat(MAX_ADDR_LEN + 1)]);
        assert!(encode_to_vec(&long_addr).is_err());
        let empty_listen = Message::Hello(Hello {
            node_id: NodeId(1),
            protocol_version: 1,
            listen_addr: Some(String::new()),
            name: None,
        });
        assert!(encode_to_vec(&empty_listen).is_err());
    }

    #[test]
    fn frames_over_the_size_limit_are_refused_before_decoding() {
        let bytes = vec![0u8; MAX_FRAME_LEN + 1];
        assert_eq!(
            decode_from_bytes(&bytes),
            Err(CodecError::FrameTooLarge {
                len: MAX_FRAME_LEN + 1,
                max: MAX_FRAME_LEN
            })
        );
    }
}
