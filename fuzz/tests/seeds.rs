//! Writes the seed corpus (valid inputs of each kind) into `fuzz/corpus/`. Run once by hand:
//! `cargo test -p music262-fuzz --test seeds -- --ignored`; the fuzzer grows the corpus
//! from there, and the committed corpus is replayed by `tests/corpus.rs`.

use std::path::Path;

use sync_core::{
    Announce, ClockMapping, GroupState, GroupTime, Hello, LeaveReason, LocalTime, Message, Mode,
    NodeId, Probe, ProbeReply, SongRef, StateVersion,
};

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

#[test]
#[ignore = "writes the seed corpus; run by hand"]
fn write_seed_corpus() {
    let announce = Announce {
        root: NodeId(1),
        stratum: 1,
        root_seq: 9,
        root_delay: 40_000,
        parent: Some(NodeId(1)),
        state_version: StateVersion::new(3, NodeId(1)),
        mapping: ClockMapping {
            local: LocalTime(5),
            group: GroupTime(6),
            rate_ppm: 12.5,
            timebase: 77,
        },
        subtree_delay: 50_000,
        radius: 60_000,
        members: None,
    };
    let song = SongRef {
        name: "a.wav".into(),
        content_hash: "ab12".into(),
        sample_rate: 48_000,
        frames: 480_000,
    };
    let messages = [
        (
            "hello",
            Message::Hello(Hello {
                node_id: NodeId(2),
                protocol_version: 1,
                listen_addr: Some("10.0.0.2:50052".into()),
                name: None,
            }),
        ),
        (
            "probe",
            Message::Probe(Probe {
                seq: 1,
                t0: LocalTime(100),
                announce,
            }),
        ),
        (
            "reply",
            Message::ProbeReply(ProbeReply {
                seq: 1,
                t0: LocalTime(100),
                t1: LocalTime(150),
                t2: LocalTime(160),
                announce,
            }),
        ),
        (
            "playing",
            Message::State(GroupState {
                version: StateVersion::new(4, NodeId(2)).revised(NodeId(3)),
                song: Some(song.clone()),
                mode: Mode::Playing {
                    frame: 10,
                    at: GroupTime(1_000),
                },
                timebase: 77,
                queue: Default::default(),
            }),
        ),
        (
            "loading",
            Message::State(GroupState {
                version: StateVersion::new(5, NodeId(2)),
                song: Some(song.clone()),
                mode: Mode::Loading {
                    start_frame: 0,
                    deadline: GroupTime(2_000),
                },
                timebase: 77,
                queue: Default::default(),
            }),
        ),
        (
            "paused",
            Message::State(GroupState {
                version: StateVersion::new(6, NodeId(2)),
                song: Some(song),
                mode: Mode::Paused {
                    frame: 99,
                    at: GroupTime(3_000),
                },
                timebase: 77,
                queue: Default::default(),
            }),
        ),
        ("ready", Message::Ready(StateVersion::new(5, NodeId(2)))),
        (
            "gossip",
            Message::Gossip(vec!["10.0.0.3:50052".into(), "[::1]:50052".into()]),
        ),
        ("leave", Message::Leave(LeaveReason::Full)),
    ];
    for (name, m) in &messages {
        write(
            "frame_decode",
            name,
            &music262_proto::encode_to_vec(m).unwrap(),
        );
    }
    // node_inputs: arbitrary-encoded sequences; a few byte patterns that decode into inputs.
    for (i, pattern) in [
        [0u8, 1, 2, 3, 4, 5, 6, 7],
        [8, 8, 8, 3, 3, 0, 1, 2],
        [2, 0, 0, 0, 9, 9, 9, 9],
    ]
    .iter()
    .enumerate()
    {
        let mut bytes = Vec::new();
        for k in 0..64u8 {
            bytes.push(pattern[usize::from(k) % 8].wrapping_add(k));
        }
        write("node_inputs", &format!("pattern{i}"), &bytes);
    }
    // wav_decode: the formats the player supports.
    let rate = 8_000;
    let samples: Vec<f32> = (0..rate * 2)
        .map(|i| ((i as f32) * 0.05).sin() * 0.5)
        .collect();
    let song = player::Song::from_interleaved(rate as u32, 2, samples).unwrap();
    write(
        "wav_decode",
        "pcm16",
        &player::encode_wav(&song, player::WavEncoding::Pcm16).unwrap(),
    );
    write(
        "wav_decode",
        "float32",
        &player::encode_wav(&song, player::WavEncoding::Float32).unwrap(),
    );
    // legacy_command and sim_group: any bytes are a command or a scenario.
    for (i, b) in [[0u8; 40], [1u8; 40], [5u8; 40]].iter().enumerate() {
        write("legacy_command", &format!("bytes{i}"), b);
        write("sim_group", &format!("bytes{i}"), &b[..24]);
    }
}
