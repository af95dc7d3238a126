//! Bytes laid out by hand the way the original Music262 schema encodes them (tag = field
//! number << 3 | wire type; wire type 0 = varint, 2 = length-delimited) decode into the same
//! legacy values, and messages carrying only legacy fields encode to exactly those bytes. A
//! legacy field whose number or type changed would read as absent or fail to decode here.

use music262_proto::audio_service::{
    AudioChunk, ListPeersRequest, ListPeersResponse, ListSongsRequest, ListSongsResponse,
    LoadAudioRequest, PeerListRequest, PeerListResponse, PlaylistRequest, PlaylistResponse,
    RegisterPeerRequest, RegisterPeerResponse, RegisteredPeer, SongInfo, UnregisterPeerRequest,
};
use music262_proto::client::{
    ExitRequest, ExitResponse, GetPositionRequest, GetPositionResponse, GossipRequest,
    GossipResponse, MusicRequest, MusicResponse, PingRequest, PingResponse,
};
use prost::Message;

/// Base-128 varint, least significant group first, high bit = "more follows".
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

/// A varint field (wire type 0). Negative int32/int64 are sign-extended to 64 bits.
fn varint_field(number: u8, v: i64) -> Vec<u8> {
    let mut out = vec![number << 3];
    out.extend(varint(v as u64));
    out
}

/// A length-delimited field (wire type 2).
fn bytes_field(number: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    out.extend(varint(data.len() as u64));
    out.extend_from_slice(data);
    out
}

/// Checks that `bytes` decode to `expected` and that `expected` encodes back to `bytes`.
fn both_ways<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8], expected: &M) {
    let decoded = M::decode(bytes).expect("legacy bytes decode");
    assert_eq!(&decoded, expected);
    assert_eq!(
        expected.encode_to_vec(),
        bytes,
        "legacy-only message must encode to the legacy bytes"
    );
}

#[test]
fn varint_helper_matches_the_protobuf_documentation() {
    // The examples of the protobuf encoding guide.
    assert_eq!(varint(1), [0x01]);
    assert_eq!(varint(150), [0x96, 0x01]);
    assert_eq!(varint(300), [0xac, 0x02]);
    assert_eq!(varint(u64::MAX).len(), 10);
}

#[test]
fn playlist_response_song_names_is_field_1_repeated_string() {
    let bytes = [
        &[0x0a, 0x05][..],
        b"a.wav",
        &[0x0a, 0x09],
        b"b c\xc3\xa9.wav",
    ]
    .concat();
    let expected = PlaylistResponse {
        song_names: vec!["a.wav".into(), "b cé.wav".into()],
        songs: vec![],
        total_songs: 0,
    };
    both_ways(&bytes, &expected);
}

#[test]
fn load_audio_request_song_num_is_field_1_int32() {
    both_ways(
        &[0x08, 0x07],
        &LoadAudioRequest {
            song_num: 7,
            ..Default::default()
        },
    );
    // int32 -1 is sent as a sign-extended ten-byte varint.
    let minus_one = [
        0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ];
    both_ways(
        &minus_one,
        &LoadAudioRequest {
            song_num: -1,
            ..Default::default()
        },
    );
}

#[test]
fn audio_chunk_data_is_field_1_bytes() {
    let payload: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    let bytes = bytes_field(1, &payload);
    assert_eq!(&bytes[..3], &[0x0a, 0xac, 0x02]);
    both_ways(
        &bytes,
        &AudioChunk {
            data: payload,
            ..Default::default()
        },
    );
}

#[test]
fn peer_list_response_client_ips_is_field_1_repeated_string() {
    let bytes = [
        bytes_field(1, b"192.168.1.10:50052"),
        bytes_field(1, b"[::1]:50053"),
    ]
    .concat();
    both_ways(
        &bytes,
        &PeerListResponse {
            client_ips: vec!["192.168.1.10:50052".into(), "[::1]:50053".into()],
            peers: vec![],
            total_peers: 0,
        },
    );
}

#[test]
fn ping_response_t1_t2_are_fields_1_2_int32() {
    let bytes = [varint_field(1, 123_456), varint_field(2, -2)].concat();
    assert_eq!(&bytes[..4], &[0x08, 0xc0, 0xc4, 0x07]);
    both_ways(
        &bytes,
        &PingResponse {
            t1: 123_456,
            t2: -2,
            ..Default::default()
        },
    );
}

#[test]
fn music_request_legacy_fields_are_1_to_5() {
    let wall = 1_700_000_000_123_456_789i64;
    let bytes = [
        &[0x0a, 0x04][..],
        b"play",
        &varint_field(2, wall),
        &[0x18, 0xf4, 0x03], // wait_time_ms = 500
        &[0x20, 0xbc, 0x03], // position = 444
        &[0x28, 0x03],       // song_num = 3
    ]
    .concat();
    both_ways(
        &bytes,
        &MusicRequest {
            action: "play".into(),
            wall_clock_ns: wall,
            wait_time_ms: 500,
            position: 444,
            song_num: 3,
            ..Default::default()
        },
    );
    // The typed reading sees the same values.
    let cmd =
        music262_proto::legacy::parse_music_request(&MusicRequest::decode(&bytes[..]).unwrap())
            .unwrap();
    assert_eq!(cmd.action, music262_proto::legacy::LegacyAction::Play);
    assert_eq!(cmd.wait_ms, 500);
    assert_eq!(
        cmd.position,
        music262_proto::legacy::Position::ByteOffset(444)
    );
    assert_eq!(
        cmd.song,
        Some(music262_proto::legacy::SongSelector::Number(3))
    );
}

#[test]
fn music_request_fields_may_arrive_in_any_order() {
    let bytes = [&[0x28, 0x01][..], &[0x0a, 0x05], b"pause", &[0x18, 0x00]].concat();
    let m = MusicRequest::decode(&bytes[..]).unwrap();
    assert_eq!(m.action, "pause");
    assert_eq!(m.song_num, 1);
    assert_eq!(m.position_frame, None);
    assert_eq!(m.position_ms, None);
}

#[test]
fn get_position_response_position_is_field_1_int32() {
    both_ways(
        &[0x08, 0xac, 0x02],
        &GetPositionResponse {
            position: 300,
            ..Default::default()
        },
    );
}

#[test]
fn gossip_request_peer_list_is_field_1_repeated_string() {
    let bytes = [bytes_field(1, b"10.0.0.2:50052"), bytes_field(1, b"")].concat();
    both_ways(
        &bytes,
        &GossipRequest {
            peer_list: vec!["10.0.0.2:50052".into(), String::new()],
        },
    );
}

#[test]
fn legacy_empty_messages_encode_to_nothing() {
    both_ways(&[], &PlaylistRequest::default());
    both_ways(&[], &PeerListRequest::default());
    both_ways(&[], &PingRequest::default());
    both_ways(&[], &MusicResponse::default());
    both_ways(&[], &GetPositionRequest::default());
    both_ways(&[], &GossipResponse::default());
    both_ways(&[], &ExitRequest::default());
    both_ways(&[], &ExitResponse::default());
    // Additions stay absent when a legacy peer sends nothing.
    assert_eq!(PingRequest::decode(&[][..]).unwrap().send_ns, None);
}

#[test]
fn additions_are_skipped_by_a_reader_that_knows_only_legacy_fields() {
    // What an old peer sees of a new request: decode our bytes with a legacy-only message.
    #[derive(Clone, PartialEq, prost::Message)]
    struct LegacyMusicRequest {
        #[prost(string, tag = "1")]
        action: String,
        #[prost(int64, tag = "2")]
        wall_clock_ns: i64,
        #[prost(int64, tag = "3")]
        wait_time_ms: i64,
        #[prost(int32, tag = "4")]
        position: i32,
        #[prost(int32, tag = "5")]
        song_num: i32,
    }
    let new = MusicRequest {
        action: "load".into(),
        wall_clock_ns: 5,
        wait_time_ms: 6,
        position: 7,
        song_num: 8,
        position_frame: Some(9),
        position_ms: Some(10),
        song_name: "x.wav".into(),
    };
    let old = LegacyMusicRequest::decode(&new.encode_to_vec()[..]).unwrap();
    assert_eq!(
        old,
        LegacyMusicRequest {
            action: "load".into(),
            wall_clock_ns: 5,
            wait_time_ms: 6,
            position: 7,
            song_num: 8,
        }
    );
}

#[test]
fn list_totals_are_new_numbers_that_an_old_reader_skips() {
    // Only field 1 is known to an old caller of the legacy lists.
    #[derive(Clone, PartialEq, prost::Message)]
    struct LegacyList {
        #[prost(string, repeated, tag = "1")]
        names: Vec<String>,
    }
    let playlist = PlaylistResponse {
        song_names: vec!["a.wav".into()],
        songs: vec![],
        total_songs: 3,
    };
    let mut bytes = bytes_field(1, b"a.wav");
    bytes.extend(varint_field(3, 3));
    both_ways(&bytes, &playlist);
    assert_eq!(LegacyList::decode(&bytes[..]).unwrap().names, ["a.wav"]);

    let peers = PeerListResponse {
        client_ips: vec!["h:1".into()],
        peers: vec![],
        total_peers: 2,
    };
    let mut bytes = bytes_field(1, b"h:1");
    bytes.extend(varint_field(3, 2));
    both_ways(&bytes, &peers);
    assert_eq!(LegacyList::decode(&bytes[..]).unwrap().names, ["h:1"]);
}

#[test]
fn registration_tokens_are_new_fields_and_a_request_without_one_decodes_as_before() {
    let mut bytes = bytes_field(1, b"h:1");
    bytes.extend(bytes_field(4, b"abcd"));
    bytes.extend(varint_field(5, 1));
    both_ways(
        &bytes,
        &RegisterPeerRequest {
            peer_addr: "h:1".into(),
            token: "abcd".into(),
            claim: true,
            ..Default::default()
        },
    );
    // A caller of the previous version sends no token and no claim.
    let old = bytes_field(1, b"h:1");
    let req = RegisterPeerRequest::decode(&old[..]).unwrap();
    assert_eq!((req.token.as_str(), req.claim), ("", false));

    let answer = RegisterPeerResponse {
        token: "abcd".into(),
        ..Default::default()
    };
    both_ways(&bytes_field(4, b"abcd"), &answer);
    let withdraw = UnregisterPeerRequest {
        token: "abcd".into(),
        ..Default::default()
    };
    both_ways(&bytes_field(3, b"abcd"), &withdraw);
}

#[test]
fn pages_carry_their_cursor_and_total_at_their_documented_numbers() {
    let mut bytes = varint_field(1, 5);
    bytes.extend(varint_field(2, 10));
    both_ways(
        &bytes,
        &ListSongsRequest {
            offset: 5,
            limit: 10,
        },
    );
    let song = SongInfo {
        name: "a.wav".into(),
        ..Default::default()
    };
    let mut bytes = bytes_field(1, &song.encode_to_vec());
    bytes.extend(varint_field(2, 7));
    bytes.extend(varint_field(3, 6));
    both_ways(
        &bytes,
        &ListSongsResponse {
            songs: vec![song],
            total: 7,
            next_offset: 6,
        },
    );
    let mut bytes = bytes_field(1, b"h:1");
    bytes.extend(varint_field(2, 100));
    both_ways(
        &bytes,
        &ListPeersRequest {
            after: "h:1".into(),
            limit: 100,
        },
    );
    let peer = RegisteredPeer {
        peer_addr: "h:2".into(),
        ..Default::default()
    };
    let mut bytes = bytes_field(1, &peer.encode_to_vec());
    bytes.extend(bytes_field(2, b"h:2"));
    bytes.extend(varint_field(3, 9));
    both_ways(
        &bytes,
        &ListPeersResponse {
            peers: vec![peer],
            next_after: "h:2".into(),
            total: 9,
        },
    );
}
