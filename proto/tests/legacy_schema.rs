//! The schema itself, read back from the compiled `FileDescriptorSet`: every legacy field keeps
//! the message, name, number, type and label of the original Music262 protocol, and every
//! legacy method its service, name, types and streaming flags. The tables below are the
//! original protocol written out by hand; a change to any legacy element fails here.

use music262_proto::FILE_DESCRIPTOR_SET;
use prost_reflect::{Cardinality, DescriptorPool, Kind};

fn pool() -> DescriptorPool {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET).expect("the embedded descriptor set decodes")
}

/// The scalar types used by the legacy protocol, as `.proto` spells them.
#[derive(Clone, Copy, Debug, PartialEq)]
enum T {
    String,
    Bytes,
    Int32,
    Int64,
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        other => format!("{other:?}"),
    }
}

impl T {
    fn name(self) -> &'static str {
        match self {
            T::String => "string",
            T::Bytes => "bytes",
            T::Int32 => "int32",
            T::Int64 => "int64",
        }
    }
}

/// (message, field, number, type, repeated) of every field of the original protocol.
const LEGACY_FIELDS: &[(&str, &str, u32, T, bool)] = &[
    (
        "audio_service.PlaylistResponse",
        "song_names",
        1,
        T::String,
        true,
    ),
    (
        "audio_service.LoadAudioRequest",
        "song_num",
        1,
        T::Int32,
        false,
    ),
    ("audio_service.AudioChunk", "data", 1, T::Bytes, false),
    (
        "audio_service.PeerListResponse",
        "client_ips",
        1,
        T::String,
        true,
    ),
    ("client.PingResponse", "t1", 1, T::Int32, false),
    ("client.PingResponse", "t2", 2, T::Int32, false),
    ("client.MusicRequest", "action", 1, T::String, false),
    ("client.MusicRequest", "wall_clock_ns", 2, T::Int64, false),
    ("client.MusicRequest", "wait_time_ms", 3, T::Int64, false),
    ("client.MusicRequest", "position", 4, T::Int32, false),
    ("client.MusicRequest", "song_num", 5, T::Int32, false),
    ("client.GetPositionResponse", "position", 1, T::Int32, false),
    ("client.GossipRequest", "peer_list", 1, T::String, true),
];

/// Messages of the original protocol that had no fields (additions may give them some).
const LEGACY_EMPTY_MESSAGES: &[&str] = &[
    "audio_service.PlaylistRequest",
    "audio_service.PeerListRequest",
    "client.PingRequest",
    "client.MusicResponse",
    "client.GetPositionRequest",
    "client.GossipResponse",
    "client.ExitRequest",
    "client.ExitResponse",
];

/// (service, method, input, output, client streaming, server streaming).
const LEGACY_METHODS: &[(&str, &str, &str, &str, bool, bool)] = &[
    (
        "audio_service.audio_service",
        "GetPlaylist",
        "audio_service.PlaylistRequest",
        "audio_service.PlaylistResponse",
        false,
        false,
    ),
    (
        "audio_service.audio_service",
        "LoadAudio",
        "audio_service.LoadAudioRequest",
        "audio_service.AudioChunk",
        false,
        true,
    ),
    (
        "audio_service.audio_service",
        "GetPeerClientIPs",
        "audio_service.PeerListRequest",
        "audio_service.PeerListResponse",
        false,
        false,
    ),
    (
        "client.ClientHandler",
        "Ping",
        "client.PingRequest",
        "client.PingResponse",
        false,
        false,
    ),
    (
        "client.ClientHandler",
        "SendMusicCommand",
        "client.MusicRequest",
        "client.MusicResponse",
        false,
        false,
    ),
    (
        "client.ClientHandler",
        "GetPosition",
        "client.GetPositionRequest",
        "client.GetPositionResponse",
        false,
        false,
    ),
    (
        "client.ClientHandler",
        "Gossip",
        "client.GossipRequest",
        "client.GossipResponse",
        false,
        false,
    ),
    (
        "client.ClientHandler",
        "Exit",
        "client.ExitRequest",
        "client.ExitResponse",
        false,
        false,
    ),
];

/// Methods this project added, with their shapes.
const ADDED_METHODS: &[(&str, &str, &str, &str, bool, bool)] = &[
    (
        "audio_service.audio_service",
        "RegisterPeer",
        "audio_service.RegisterPeerRequest",
        "audio_service.RegisterPeerResponse",
        false,
        false,
    ),
    (
        "audio_service.audio_service",
        "UnregisterPeer",
        "audio_service.UnregisterPeerRequest",
        "audio_service.UnregisterPeerResponse",
        false,
        false,
    ),
    (
        "audio_service.audio_service",
        "ListSongs",
        "audio_service.ListSongsRequest",
        "audio_service.ListSongsResponse",
        false,
        false,
    ),
    (
        "audio_service.audio_service",
        "ListPeers",
        "audio_service.ListPeersRequest",
        "audio_service.ListPeersResponse",
        false,
        false,
    ),
    (
        "audio_service.audio_service",
        "GetCover",
        "audio_service.CoverRequest",
        "audio_service.CoverResponse",
        false,
        false,
    ),
    (
        "client.ClientHandler",
        "Exchange",
        "client.PeerFrame",
        "client.PeerFrame",
        true,
        true,
    ),
];

#[test]
fn files_keep_their_names_and_packages() {
    let pool = pool();
    let files: Vec<(String, String)> = pool
        .files()
        .map(|f| (f.name().to_owned(), f.package_name().to_owned()))
        .collect();
    assert!(files.contains(&("audio_service.proto".into(), "audio_service".into())));
    assert!(files.contains(&("audio_sync.proto".into(), "client".into())));
    for f in pool.files() {
        assert_eq!(
            f.file_descriptor_proto().syntax(),
            "proto3",
            "{} must stay proto3",
            f.name()
        );
    }
}

#[test]
fn every_legacy_field_keeps_name_number_type_and_label() {
    let pool = pool();
    for &(message, field, number, ty, repeated) in LEGACY_FIELDS {
        let msg = pool
            .get_message_by_name(message)
            .unwrap_or_else(|| panic!("legacy message {message} is missing"));
        let f = msg
            .get_field_by_name(field)
            .unwrap_or_else(|| panic!("legacy field {message}.{field} is missing"));
        assert_eq!(f.number(), number, "{message}.{field}: number");
        assert_eq!(kind_name(&f.kind()), ty.name(), "{message}.{field}: type");
        let want = if repeated {
            Cardinality::Repeated
        } else {
            Cardinality::Optional
        };
        assert_eq!(f.cardinality(), want, "{message}.{field}: label");
        // A plain proto3 scalar: no explicit presence (`optional`), no oneof, no packing change
        // for scalars, and the field number belongs to this field alone.
        assert!(
            f.containing_oneof().is_none(),
            "{message}.{field} moved into a oneof"
        );
        if !repeated {
            assert!(
                !f.supports_presence(),
                "{message}.{field} became `optional`"
            );
        }
        assert_eq!(
            msg.get_field(number).map(|g| g.name().to_owned()),
            Some(field.to_owned()),
            "{message}: number {number} belongs to another field"
        );
    }
}

#[test]
fn legacy_messages_without_fields_still_exist() {
    let pool = pool();
    for &message in LEGACY_EMPTY_MESSAGES {
        assert!(
            pool.get_message_by_name(message).is_some(),
            "legacy message {message} is missing"
        );
    }
}

#[test]
fn additions_never_reuse_a_legacy_number() {
    let pool = pool();
    for &(message, field, number, _, _) in LEGACY_FIELDS {
        let msg = pool.get_message_by_name(message).unwrap();
        let same_number: Vec<_> = msg
            .fields()
            .filter(|f| f.number() == number)
            .map(|f| f.name().to_owned())
            .collect();
        assert_eq!(same_number, vec![field.to_owned()], "{message}");
    }
}

fn check_methods(table: &[(&str, &str, &str, &str, bool, bool)]) {
    let pool = pool();
    for &(service, method, input, output, client_streaming, server_streaming) in table {
        let svc = pool
            .get_service_by_name(service)
            .unwrap_or_else(|| panic!("service {service} is missing"));
        let m = svc
            .methods()
            .find(|m| m.name() == method)
            .unwrap_or_else(|| panic!("method {service}/{method} is missing"));
        assert_eq!(m.input().full_name(), input, "{service}/{method}: input");
        assert_eq!(m.output().full_name(), output, "{service}/{method}: output");
        assert_eq!(
            m.is_client_streaming(),
            client_streaming,
            "{service}/{method}: client streaming"
        );
        assert_eq!(
            m.is_server_streaming(),
            server_streaming,
            "{service}/{method}: server streaming"
        );
    }
}

#[test]
fn every_legacy_method_keeps_its_shape() {
    check_methods(LEGACY_METHODS);
}

#[test]
fn added_methods_have_their_documented_shape() {
    check_methods(ADDED_METHODS);
}

#[test]
fn generated_servers_answer_at_the_legacy_paths() {
    // The gRPC path of a method is `/{package}.{service}/{method}`: what an old client calls.
    assert_eq!(
        music262_proto::audio_service::audio_service_server::SERVICE_NAME,
        "audio_service.audio_service"
    );
    assert_eq!(
        music262_proto::client::client_handler_server::SERVICE_NAME,
        "client.ClientHandler"
    );
}

#[test]
fn every_message_and_field_is_documented() {
    let pool = pool();
    for file in pool.files() {
        let proto = file.file_descriptor_proto();
        let info = proto
            .source_code_info
            .as_ref()
            .expect("descriptor keeps source info");
        let documented: std::collections::BTreeSet<Vec<i32>> = info
            .location
            .iter()
            .filter(|l| {
                l.leading_comments
                    .as_deref()
                    .is_some_and(|c| !c.trim().is_empty())
            })
            .map(|l| l.path.clone())
            .collect();
        // Paths: 4 = message_type, 2 = field, 8 = oneof_decl; 5 = enum_type, 2 = value;
        // 6 = service, 2 = method.
        for (mi, m) in proto.message_type.iter().enumerate() {
            let mp = vec![4, mi as i32];
            assert!(
                documented.contains(&mp),
                "{}: message {}",
                file.name(),
                m.name()
            );
            for (fi, f) in m.field.iter().enumerate() {
                let fp = [mp.clone(), vec![2, fi as i32]].concat();
                assert!(
                    documented.contains(&fp),
                    "{}: field {}.{}",
                    file.name(),
                    m.name(),
                    f.name()
                );
            }
            for (oi, o) in m.oneof_decl.iter().enumerate() {
                // Synthetic oneofs of proto3 `optional` fields carry no comment of their own.
                if o.name().starts_with('_') {
                    continue;
                }
                let op = [mp.clone(), vec![8, oi as i32]].concat();
                assert!(documented.contains(&op), "oneof {}.{}", m.name(), o.name());
            }
        }
        for (ei, e) in proto.enum_type.iter().enumerate() {
            let ep = vec![5, ei as i32];
            assert!(documented.contains(&ep), "enum {}", e.name());
            for (vi, v) in e.value.iter().enumerate() {
                let vp = [ep.clone(), vec![2, vi as i32]].concat();
                assert!(documented.contains(&vp), "enum value {}", v.name());
            }
        }
        for (si, s) in proto.service.iter().enumerate() {
            let sp = vec![6, si as i32];
            assert!(documented.contains(&sp), "service {}", s.name());
            for (xi, x) in s.method.iter().enumerate() {
                let xp = [sp.clone(), vec![2, xi as i32]].concat();
                assert!(documented.contains(&xp), "method {}", x.name());
            }
        }
    }
}

#[test]
fn peer_frame_numbers_14_and_15_are_the_group_key_fields_outside_the_body() {
    let pool = pool();
    let frame = pool.get_message_by_name("client.PeerFrame").unwrap();
    for (n, name) in [(14, "auth"), (15, "mac")] {
        let f = frame.get_field(n).expect("group-key field");
        assert_eq!(f.name(), name);
        assert!(
            f.containing_oneof().is_none(),
            "{name} is not a body member"
        );
    }
}
