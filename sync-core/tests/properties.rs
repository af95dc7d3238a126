//! Property tests: arbitrary input never panics or busy-loops a node, and the state register
//! converges whatever the order of delivery.

use proptest::prelude::*;
use sync_core::*;

const SEC: u64 = 1_000_000_000;

fn song_strategy() -> BoxedStrategy<SongRef> {
    (
        prop_oneof![
            Just("a.wav".to_string()),
            Just("b.wav".to_string()),
            "[a-z]{0,3}"
        ],
        prop_oneof![Just(0u32), Just(48_000u32), any::<u32>()],
        prop_oneof![Just(0u64), 1u64..10_000_000, any::<u64>()],
    )
        .prop_map(|(name, sample_rate, frames)| SongRef {
            name,
            content_hash: "h".into(),
            sample_rate,
            frames,
        })
        .boxed()
}

fn instant() -> BoxedStrategy<u64> {
    prop_oneof![0u64..200 * SEC, any::<u64>(), Just(u64::MAX), Just(0u64)].boxed()
}

fn mode_strategy() -> BoxedStrategy<Mode> {
    prop_oneof![
        instant().prop_map(|at| Mode::Stopped { at: GroupTime(at) }),
        (any::<u64>(), instant()).prop_map(|(start_frame, d)| Mode::Loading {
            start_frame: start_frame % 10_000_000,
            deadline: GroupTime(d)
        }),
        (0u64..10_000_000, instant()).prop_map(|(frame, at)| Mode::Paused {
            frame,
            at: GroupTime(at)
        }),
        (prop_oneof![0u64..10_000_000, any::<u64>()], instant()).prop_map(|(frame, at)| {
            Mode::Playing {
                frame,
                at: GroupTime(at),
            }
        }),
    ]
    .boxed()
}

fn state_strategy() -> BoxedStrategy<GroupState> {
    (
        0u64..50,
        0u64..5,
        proptest::option::of(song_strategy()),
        mode_strategy(),
    )
        .prop_map(|(c, o, song, mode)| GroupState {
            version: StateVersion::new(c, NodeId(o)),
            song,
            mode,
            // 0 stands for "the receiving node's own time base" (see the test loop).
            timebase: if c % 3 == 0 { 5 } else { 0 },
            queue: Default::default(),
        })
        .boxed()
}

fn announce_strategy() -> BoxedStrategy<Announce> {
    (
        0u64..6,
        any::<u8>(),
        instant(),
        instant(),
        proptest::option::of(0u64..6),
        instant(),
        any::<f64>(),
        instant(),
    )
        .prop_map(|(root, stratum, seq, delay, parent, g, rate, l)| Announce {
            root: NodeId(root),
            stratum,
            root_seq: seq,
            root_delay: delay,
            parent: parent.map(NodeId),
            state_version: StateVersion::new(seq % 7, NodeId(root)),
            mapping: ClockMapping {
                local: LocalTime(l),
                group: GroupTime(g),
                rate_ppm: rate,
                timebase: seq % 3,
            },
            subtree_delay: delay / 2,
            radius: delay,
            members: None,
        })
        .boxed()
}

fn message_strategy() -> BoxedStrategy<Message> {
    prop_oneof![
        (
            0u64..6,
            prop_oneof![Just(PROTOCOL_VERSION), any::<u32>()],
            proptest::option::of("[a-z:0-9]{0,12}")
        )
            .prop_map(|(id, v, a)| Message::Hello(Hello {
                node_id: NodeId(id),
                protocol_version: v,
                listen_addr: a,
                name: None,
            })),
        (any::<u32>(), instant(), announce_strategy()).prop_map(|(seq, t0, announce)| {
            Message::Probe(Probe {
                seq,
                t0: LocalTime(t0),
                announce,
            })
        }),
        (
            0u32..20,
            instant(),
            instant(),
            instant(),
            announce_strategy()
        )
            .prop_map(|(seq, t0, t1, t2, announce)| {
                Message::ProbeReply(ProbeReply {
                    seq,
                    t0: LocalTime(t0),
                    t1: LocalTime(t1),
                    t2: LocalTime(t2),
                    announce,
                })
            }),
        state_strategy().prop_map(Message::State),
        (0u64..50, 0u64..5).prop_map(|(c, o)| Message::Ready(StateVersion::new(c, NodeId(o)))),
        proptest::collection::vec("[a-z0-9:.]{0,20}", 0..300).prop_map(Message::Gossip),
        prop_oneof![
            Just(LeaveReason::Leaving),
            Just(LeaveReason::Full),
            Just(LeaveReason::Duplicate),
            Just(LeaveReason::Refused),
            Just(LeaveReason::Timeout)
        ]
        .prop_map(Message::Leave),
    ]
    .boxed()
}

/// A group command or a link command, as a user may type either.
#[derive(Debug, Clone)]
enum AnyCommand {
    Group(Command),
    Link(LinkCommand),
}

fn command_strategy() -> BoxedStrategy<AnyCommand> {
    prop_oneof![
        6 => group_command_strategy().prop_map(AnyCommand::Group),
        4 => link_command_strategy().prop_map(AnyCommand::Link),
    ]
    .boxed()
}

fn group_command_strategy() -> BoxedStrategy<Command> {
    prop_oneof![
        (proptest::option::of(song_strategy()), any::<u64>()).prop_map(|(song, frame)| {
            Command::Play {
                song,
                frame: frame % 20_000_000,
            }
        }),
        Just(Command::Pause),
        Just(Command::Resume),
        Just(Command::Stop),
        any::<u64>().prop_map(|frame| Command::Seek {
            frame: frame % 20_000_000
        }),
        (song_strategy(), prop_oneof![Just(0u64), 0u64..200_000])
            .prop_map(|(song, frame)| Command::Load { song, frame }),
    ]
    .boxed()
}

/// Peers are named as typed, when the text names one (the console refuses the rest).
fn link_command_strategy() -> BoxedStrategy<LinkCommand> {
    let addr = || "[a-z0-9:]{0,10}".prop_filter_map("an address", |a| PeerAddr::parse(&a).ok());
    prop_oneof![
        addr().prop_map(|addr| LinkCommand::Join { addr }),
        "[a-z0-9:]{0,10}"
            .prop_filter_map("a peer", |p| PeerSelector::parse(&p).ok())
            .prop_map(|peer| LinkCommand::Leave { peer }),
        Just(LinkCommand::Gossip),
        proptest::collection::vec(addr(), 0..5)
            .prop_map(|addrs| LinkCommand::PeerAddresses { addrs }),
    ]
    .boxed()
}

#[derive(Debug, Clone)]
enum Input {
    LinkUp(u64, bool),
    LinkDown(u64),
    Message(u64, Message),
    Command(AnyCommand, Option<i64>),
    Loaded(SongRef),
    LoadFailed(SongRef),
    Position(u64, f64),
    Advance(u64),
    Timeout,
}

fn input_strategy() -> BoxedStrategy<Input> {
    prop_oneof![
        1 => (0u64..4, any::<bool>()).prop_map(|(l, out)| Input::LinkUp(l, out)),
        1 => (0u64..4).prop_map(Input::LinkDown),
        4 => (0u64..4, message_strategy()).prop_map(|(l, m)| Input::Message(l, m)),
        2 => (command_strategy(), proptest::option::of(any::<i64>())).prop_map(|(c, d)| Input::Command(c, d)),
        1 => song_strategy().prop_map(Input::Loaded),
        1 => song_strategy().prop_map(Input::LoadFailed),
        1 => (0u64..10 * SEC, any::<f64>()).prop_map(|(t, f)| Input::Position(t, f)),
        3 => prop_oneof![0u64..SEC, 0u64..100 * SEC].prop_map(Input::Advance),
        2 => Just(Input::Timeout),
    ]
    .boxed()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Whatever arrives, in whatever order, the node neither panics nor asks to be woken at an
    /// instant it has already handled (which would make its driver spin).
    #[test]
    fn no_input_sequence_panics_or_busy_loops(inputs in proptest::collection::vec(input_strategy(), 1..120)) {
        let mut now = LocalTime(50 * SEC);
        let mut node = Node::new(Config::new(NodeId(3)), 7, now);
        for input in inputs {
            match input {
                Input::LinkUp(l, out) => node.handle_link_up(
                    now,
                    LinkId(l),
                    format!("peer{l}:1"),
                    if out { Direction::Outgoing } else { Direction::Incoming },
                ),
                Input::LinkDown(l) => node.handle_link_down(now, LinkId(l)),
                Input::Message(l, m) => {
                    let m = match m {
                        Message::State(mut s) if s.timebase == 0 => {
                            s.timebase = node.state().timebase;
                            Message::State(s)
                        }
                        m => m,
                    };
                    node.handle_message(now, LinkId(l), m)
                }
                Input::Command(c, d) => {
                    let before = node.state().clone();
                    let refused = match c {
                        AnyCommand::Group(c) => node.handle_command(now, c, d).is_err(),
                        AnyCommand::Link(c) => node.handle_link_command(now, c).is_err(),
                    };
                    if refused {
                        prop_assert_eq!(node.state(), &before, "a refused command changed the state");
                    }
                }
                Input::Loaded(song) => node.handle_player(now, PlayerReport::Loaded { song }),
                Input::LoadFailed(song) => node.handle_player(now, PlayerReport::LoadFailed { song, reason: "x".into() }),
                Input::Position(t, frame) => node.handle_player(now, PlayerReport::Position { at: now - t as i64, frame }),
                Input::Advance(d) => now = now + d as i64,
                Input::Timeout => {
                    if let Some((t, _)) = node.poll_timeout() {
                        now = now.max(t);
                    }
                    node.handle_timeout(now);
                    while node.poll_output().is_some() {}
                    if let Some((t, why)) = node.poll_timeout() {
                        prop_assert!(t > now, "woken again at {:?} for {:?} after handling {:?}", t, why, now);
                    }
                }
            }
            while node.poll_output().is_some() {}
        }
    }

    /// Any interleaving of the same set of states leaves every node with the greatest one.
    #[test]
    fn last_writer_wins_converges_for_any_delivery_order(
        states in proptest::collection::vec((1u64..20, 0u64..4, 0u64..1_000), 1..12),
        seeds in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let now = LocalTime(100 * SEC);
        let song = SongRef { name: "a.wav".into(), content_hash: "h".into(), sample_rate: 48_000, frames: 48_000 * 600 };
        let states: Vec<GroupState> = states
            .into_iter()
            .map(|(c, o, f)| GroupState {
                version: StateVersion::new(c, NodeId(10 + o)),
                song: Some(song.clone()),
                mode: Mode::Paused { frame: f * 100 + c, at: GroupTime(now.0) },
                timebase: 0,
                queue: Default::default(),
            })
            .collect();
        // Versions are unique by construction in the protocol (counter + origin).
        let mut states = states;
        states.sort_by_key(|s| s.version);
        states.dedup_by_key(|s| s.version);
        let mut finals = Vec::new();
        for seed in seeds {
            // A deterministic shuffle from the seed (the order is what varies between nodes).
            let mut order: Vec<usize> = (0..states.len()).collect();
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                order.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut node = Node::new(Config::new(NodeId(1)), seed, now);
            node.handle_link_up(now, LinkId(1), "p:1".into(), Direction::Incoming);
            node.handle_message(now, LinkId(1), Message::Hello(Hello { node_id: NodeId(2), protocol_version: PROTOCOL_VERSION, listen_addr: None , name: None }));
            for i in order {
                let s = GroupState { timebase: node.state().timebase, ..states[i].clone() };
                node.handle_message(now, LinkId(1), Message::State(s));
            }
            finals.push(node.state().clone());
        }
        let max = states.iter().map(|s| s.version).max().unwrap();
        for f in &finals {
            prop_assert_eq!(f.version, max);
            prop_assert_eq!(&f.mode, &finals[0].mode);
            prop_assert_eq!(&f.song, &finals[0].song);
        }
    }
}
