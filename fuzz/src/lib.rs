//! The bodies of Music262's fuzz targets. Each takes the fuzzer's bytes, runs the code under
//! test, and panics only when a property is broken (a crash, or a wrong answer the property
//! can see). The cargo-fuzz harness in `fuzz/fuzz_targets/` calls them; so does the test that
//! replays the committed corpus (`fuzz/corpus/<target>/`), so regressions are caught without the
//! fuzzer.
#![forbid(unsafe_code)]

use arbitrary::{Arbitrary, Result, Unstructured};
use sync_core::{
    Command, Config, Direction, LinkCommand, LinkId, LocalTime, Message, Node, NodeId, PeerAddr,
    PeerSelector, PlayerReport, SongRef,
};

/// A fuzz target: takes the fuzzer's bytes, panics when a property is broken.
pub type Target = fn(&[u8]);

/// The targets by name, as the corpus folders are named.
pub const TARGETS: &[(&str, Target)] = &[
    ("frame_decode", frame_decode),
    ("legacy_command", legacy_command),
    ("wav_decode", wav_decode),
    ("node_inputs", node_inputs),
    ("sim_group", sim_group),
    ("auth_open", auth_open),
];

/// Bytes off the wire into a peer message: never a panic; whatever decodes re-encodes and
/// decodes to the same message.
pub fn frame_decode(data: &[u8]) {
    if let Ok(msg) = music262_proto::decode_from_bytes(data) {
        let bytes = music262_proto::encode_to_vec(&msg)
            .unwrap_or_else(|e| panic!("a decoded message does not encode: {e}: {msg:?}"));
        let again = music262_proto::decode_from_bytes(&bytes).expect("re-decodes");
        assert_eq!(again, msg, "round trip changed the message");
    }
}

/// One step of [`auth_open`]: what reaches the receiving end of a keyed link.
#[derive(Debug, Arbitrary)]
enum AuthStep {
    /// Any bytes, decoded as a frame by the real codec (a forger's frame).
    Raw { datagram: bool, bytes: Vec<u8> },
    /// A message (any decodable body) sealed by the genuine sender, then delivered.
    Sealed { datagram: bool, body: Vec<u8> },
    /// A frame sealed earlier delivered again, byte for byte (a replay, or a late datagram).
    Replay { index: u16 },
    /// A frame sealed earlier with one byte of its encoding changed (a tamperer).
    Tamper { index: u16, at: u16, xor: u8 },
    /// A sealed frame offered to the handshake checks (a proof, an opening).
    Handshake { index: u16 },
}

/// Frames to the receiving end of a keyed link: the genuine sender's (sealed, replayed,
/// reordered, tampered with) and a forger's (any bytes). Never a panic; a frame is accepted
/// only if the genuine sender sealed exactly that body under that counter on that channel,
/// and each sealed frame is accepted at most once (on the stream, only in increasing order).
pub fn auth_open(data: &[u8]) {
    use music262_proto::PeerFrame;
    use music262_proto::auth::{Channel, GroupKey, LinkKeys, Role};
    use prost::Message as _;
    use std::collections::BTreeSet;

    let Ok(steps) = Vec::<AuthStep>::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let key = GroupKey::new(b"fuzz group key 0123").expect("a valid key");
    let (na, nb) = ([1u8; 16], [2u8; 16]);
    let sender = LinkKeys::derive(&key, Role::Dialler, &na, &nb, b"").sealer();
    let receiver = LinkKeys::derive(&key, Role::Acceptor, &nb, &na, b"");
    let mut stream = receiver.opener(Channel::Stream);
    let mut datagrams = receiver.opener(Channel::Datagram);
    let channel = |datagram: bool| {
        if datagram {
            Channel::Datagram
        } else {
            Channel::Stream
        }
    };
    // What the genuine sender sealed: (channel, counter, body bytes), and the frames themselves.
    let mut sealed: BTreeSet<(bool, u64, Vec<u8>)> = BTreeSet::new();
    let mut sent: Vec<(bool, PeerFrame)> = Vec::new();
    let mut accepted: BTreeSet<(bool, u64)> = BTreeSet::new();
    let mut stream_top: Option<u64> = None;
    let body_bytes = |f: &PeerFrame| {
        PeerFrame {
            body: f.body.clone(),
            auth: None,
            mac: Vec::new(),
        }
        .encode_to_vec()
    };

    for step in steps.into_iter().take(64) {
        let (datagram, frame) = match step {
            AuthStep::Raw { datagram, bytes } => match PeerFrame::decode(bytes.as_slice()) {
                Ok(f) => (datagram, f),
                Err(_) => continue,
            },
            AuthStep::Sealed { datagram, body } => {
                let Ok(f) = PeerFrame::decode(body.as_slice()) else {
                    continue;
                };
                let f = sender.seal(channel(datagram), f);
                let counter = f.auth.as_ref().expect("sealed").counter;
                sealed.insert((datagram, counter, body_bytes(&f)));
                sent.push((datagram, f.clone()));
                (datagram, f)
            }
            AuthStep::Replay { index } => {
                let Some(x) = sent.get(usize::from(index) % sent.len().max(1)) else {
                    continue;
                };
                x.clone()
            }
            AuthStep::Tamper { index, at, xor } => {
                let Some((datagram, f)) = sent.get(usize::from(index) % sent.len().max(1)) else {
                    continue;
                };
                let mut bytes = f.encode_to_vec();
                if bytes.is_empty() {
                    continue;
                }
                let i = usize::from(at) % bytes.len();
                bytes[i] ^= xor.max(1);
                match PeerFrame::decode(bytes.as_slice()) {
                    Ok(f) => (*datagram, f),
                    Err(_) => continue,
                }
            }
            AuthStep::Handshake { index } => {
                if let Some((_, f)) = sent.get(usize::from(index) % sent.len().max(1)) {
                    let _ = music262_proto::auth::read_opening(&key, f);
                    // A fresh opener: the handshake's own checks, on a copy of the state.
                    let _ = receiver.opener(Channel::Stream).open_proof(f.clone());
                }
                continue;
            }
        };
        let counter = frame.auth.as_ref().map(|a| a.counter);
        let bytes = body_bytes(&frame);
        let opener = if datagram {
            &mut datagrams
        } else {
            &mut stream
        };
        if let Ok(opened) = opener.open(frame) {
            let counter = counter.expect("an accepted frame carried a counter");
            assert!(
                sealed.contains(&(datagram, counter, bytes.clone())),
                "accepted a frame the sender never sealed: counter {counter} on {:?}",
                channel(datagram)
            );
            assert!(
                accepted.insert((datagram, counter)),
                "accepted counter {counter} on {:?} twice (a replay)",
                channel(datagram)
            );
            if !datagram {
                assert!(
                    stream_top.is_none_or(|t| counter > t),
                    "stream counter {counter} accepted after {stream_top:?}"
                );
                stream_top = Some(counter);
            }
            assert_eq!(body_bytes(&opened), bytes, "opening changed the body");
            assert!(opened.auth.is_none() && opened.mac.is_empty());
        }
    }
}

/// A legacy `SendMusicCommand` from any caller: never a panic; an accepted command converts
/// back into a request that parses to the same command.
pub fn legacy_command(data: &[u8]) {
    use music262_proto::client::MusicRequest;
    use music262_proto::legacy::parse_music_request;
    let mut u = Unstructured::new(data);
    let req = (|| -> Result<MusicRequest> {
        let action = match u.int_in_range(0u8..=8)? {
            0 => "play".to_string(),
            1 => "pause".to_string(),
            2 => "resume".to_string(),
            3 => "stop".to_string(),
            4 => "load".to_string(),
            5 => "seek".to_string(),
            6 => " PLAY ".to_string(),
            _ => String::arbitrary(&mut u)?,
        };
        Ok(MusicRequest {
            action,
            wall_clock_ns: i64::arbitrary(&mut u)?,
            wait_time_ms: i64::arbitrary(&mut u)?,
            position: i32::arbitrary(&mut u)?,
            song_num: i32::arbitrary(&mut u)?,
            position_frame: Option::<u64>::arbitrary(&mut u)?,
            position_ms: Option::<u64>::arbitrary(&mut u)?,
            song_name: String::arbitrary(&mut u)?,
        })
    })();
    let Ok(req) = req else { return };
    if let Ok(cmd) = parse_music_request(&req) {
        let back = parse_music_request(&cmd.to_request())
            .unwrap_or_else(|e| panic!("{cmd:?} does not survive its own request: {e}"));
        assert_eq!(back, cmd);
    }
}

/// A song's bytes as the server sent them: never a panic; a decoded song is consistent.
pub fn wav_decode(data: &[u8]) {
    if let Ok(song) = player::decode_wav_bytes(data) {
        assert!(song.sample_rate > 0 && song.channels > 0);
        assert_eq!(
            song.samples().len() as u64,
            song.frames * u64::from(song.channels)
        );
        assert!(
            song.samples()
                .iter()
                .all(|s| s.is_finite() && s.abs() <= 1.0)
        );
    }
}

#[derive(Debug, Arbitrary)]
enum Input {
    LinkUp(u8, bool),
    LinkDown(u8),
    Message(u8, ArbitraryMessage),
    Command(ArbitraryCommand, Option<i64>),
    Loaded(ArbitrarySong),
    LoadFailed(ArbitrarySong),
    Position(u32, f64),
    Advance(u32),
    Timeout,
}

/// Frames as a peer could send them: decoded from arbitrary bytes by the real codec, so every
/// message the node sees is one the transport could hand it.
#[derive(Debug, Arbitrary)]
struct ArbitraryMessage(Vec<u8>);

#[derive(Debug, Arbitrary)]
struct ArbitrarySong {
    name: u8,
    rate: u32,
    frames: u64,
}

impl ArbitrarySong {
    fn song(&self) -> SongRef {
        SongRef {
            name: format!("s{}.wav", self.name % 4),
            content_hash: "ab".into(),
            sample_rate: self.rate,
            frames: self.frames,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum ArbitraryCommand {
    Play(Option<ArbitrarySong>, u64),
    Pause,
    Resume,
    Stop,
    Seek(u64),
    Load(ArbitrarySong),
    Join(u8),
    Leave(u8),
    Gossip,
}

/// A command for the group's playback or for the links.
enum AnyCommand {
    Group(Command),
    Link(LinkCommand),
}

impl ArbitraryCommand {
    /// The group or link command this stands for.
    fn command(&self) -> AnyCommand {
        let addr = |p: &u8| PeerAddr::parse(&format!("10.0.0.{p}:1")).expect("an address");
        AnyCommand::Group(match self {
            ArbitraryCommand::Play(s, f) => Command::Play {
                song: s.as_ref().map(ArbitrarySong::song),
                frame: *f,
            },
            ArbitraryCommand::Pause => Command::Pause,
            ArbitraryCommand::Resume => Command::Resume,
            ArbitraryCommand::Stop => Command::Stop,
            ArbitraryCommand::Seek(f) => Command::Seek { frame: *f },
            ArbitraryCommand::Load(s) => Command::Load {
                song: s.song(),
                frame: 0,
            },
            ArbitraryCommand::Join(p) => {
                return AnyCommand::Link(LinkCommand::Join { addr: addr(p) });
            }
            ArbitraryCommand::Leave(p) => {
                let peer = PeerSelector::Addr(addr(p));
                return AnyCommand::Link(LinkCommand::Leave { peer });
            }
            ArbitraryCommand::Gossip => return AnyCommand::Link(LinkCommand::Gossip),
        })
    }
}

/// Any sequence of inputs to one node: no panic, a refused command changes nothing, and the
/// node never asks to be woken at an instant it has already handled.
pub fn node_inputs(data: &[u8]) {
    let Ok(inputs) = Vec::<Input>::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let mut now = LocalTime(1_000_000_000_000);
    let mut node = Node::new(Config::new(NodeId(7)), 1, now);
    for input in inputs.into_iter().take(500) {
        match input {
            Input::LinkUp(l, out) => node.handle_link_up(
                now,
                LinkId(u64::from(l % 6)),
                format!("10.0.0.{l}:1"),
                if out {
                    Direction::Outgoing
                } else {
                    Direction::Incoming
                },
            ),
            Input::LinkDown(l) => node.handle_link_down(now, LinkId(u64::from(l % 6))),
            Input::Message(l, ArbitraryMessage(bytes)) => {
                if let Ok(m) = music262_proto::decode_from_bytes(&bytes) {
                    let m = adopt_timebase(&node, m);
                    node.handle_message(now, LinkId(u64::from(l % 6)), m);
                }
            }
            Input::Command(c, delay) => {
                let before = node.state().clone();
                let refused = match c.command() {
                    AnyCommand::Group(c) => node.handle_command(now, c, delay).is_err(),
                    AnyCommand::Link(c) => node.handle_link_command(now, c).is_err(),
                };
                if refused {
                    assert_eq!(node.state(), &before, "a refused command changed the state");
                }
            }
            Input::Loaded(s) => node.handle_player(now, PlayerReport::Loaded { song: s.song() }),
            Input::LoadFailed(s) => node.handle_player(
                now,
                PlayerReport::LoadFailed {
                    song: s.song(),
                    reason: "fuzz".into(),
                },
            ),
            Input::Position(back, frame) => node.handle_player(
                now,
                PlayerReport::Position {
                    at: now - i64::from(back),
                    frame,
                },
            ),
            Input::Advance(d) => now = now + i64::from(d) * 1_000,
            Input::Timeout => {
                if let Some((t, _)) = node.poll_timeout() {
                    now = now.max(t);
                }
                node.handle_timeout(now);
                while node.poll_output().is_some() {}
                if let Some((t, why)) = node.poll_timeout() {
                    assert!(
                        t > now,
                        "woken again at {t:?} for {why:?} after handling {now:?}"
                    );
                }
            }
        }
        while node.poll_output().is_some() {}
    }
}

/// States from the fuzzer are mostly in a time base the node has never seen (and ignored as
/// foreign); give every other one the node's own so that the register's logic is exercised.
fn adopt_timebase(node: &Node, m: Message) -> Message {
    match m {
        Message::State(mut s) if s.version.counter % 2 == 0 => {
            s.timebase = node.state().timebase;
            Message::State(s)
        }
        m => m,
    }
}

/// A small group in the deterministic simulator, its conditions chosen by the fuzzer: the
/// simulator's invariants (no panic, bounded messages, no unexplained backwards move, no
/// busy-looping timeout, convergence after quiescence) must hold after every event.
pub fn sim_group(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((scenario, peers, seed, seconds, loss)) = (|| -> Result<_> {
        Ok((
            u.int_in_range(0u8..=4)?,
            u.int_in_range(2usize..=6)?,
            u64::arbitrary(&mut u)?,
            u.int_in_range(20u32..=60)?,
            u.int_in_range(0u8..=30)?,
        ))
    })() else {
        return;
    };
    let name = ["lan", "wifi", "wan-lossy", "partition", "churn"][usize::from(scenario)];
    let Ok(mut c) =
        music262_tests::SimConfig::scenario(name, Some(peers), seed, Some(f64::from(seconds)))
    else {
        return;
    };
    c.link.loss = f64::from(loss) / 100.0;
    let (_, report) = music262_tests::run(c);
    music262_tests::assert_clean(&report);
}
