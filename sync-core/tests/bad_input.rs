//! Bad input: impossible messages and refused commands change nothing, and merging with another
//! group does not move playback.

mod harness;

use harness::*;
use sync_core::*;

#[test]
fn impossible_messages_are_dropped_and_reported() {
    let mut net = Net::new(&skewed_clocks(2));
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(2 * SEC);
    net.command(
        0,
        Command::Load {
            song: song(48_000),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(3 * SEC);
    let before = net.nodes[1].node.state().clone();
    let link = net.link_of(1, 0).unwrap();
    let t = net.local(1);
    let g = net.nodes[1].node.group_time(t);
    let v = StateVersion::new(1_000, NodeId(100));
    let tb = net.nodes[1].node.state().timebase;
    let bad_states = [
        GroupState {
            version: v,
            timebase: tb,
            queue: Default::default(),
            song: Some(song(48_000)),
            mode: Mode::Playing {
                frame: 96_000,
                at: g,
            },
        },
        GroupState {
            version: v,
            timebase: tb,
            queue: Default::default(),
            song: Some(song(48_000)),
            mode: Mode::Playing {
                frame: 0,
                at: g + 3_600 * SEC as i64,
            },
        },
        GroupState {
            version: v,
            timebase: tb,
            queue: Default::default(),
            song: Some(SongRef {
                sample_rate: 0,
                ..song(48_000)
            }),
            mode: Mode::Playing { frame: 0, at: g },
        },
        GroupState {
            version: v,
            timebase: tb,
            queue: Default::default(),
            song: None,
            mode: Mode::Paused { frame: 0, at: g },
        },
    ];
    for s in bad_states {
        net.nodes[1].node.handle_message(t, link, Message::State(s));
    }
    let mut a = Announce {
        root: NodeId(1),
        stratum: 200,
        root_seq: 0,
        root_delay: 0,
        parent: None,
        state_version: v,
        mapping: ClockMapping::identity(t, tb),
        subtree_delay: 0,
        radius: 0,
        members: None,
    };
    net.nodes[1].node.handle_message(
        t,
        link,
        Message::Probe(Probe {
            seq: 1,
            t0: t,
            announce: a,
        }),
    );
    a.stratum = 1;
    a.mapping.rate_ppm = f64::NAN;
    net.nodes[1].node.handle_message(
        t,
        link,
        Message::Probe(Probe {
            seq: 2,
            t0: t,
            announce: a,
        }),
    );
    net.nodes[1].node.handle_message(
        t,
        link,
        Message::ProbeReply(ProbeReply {
            seq: 9_999,
            t0: t,
            t1: t,
            t2: t,
            announce: a,
        }),
    );
    net.nodes[1].node.handle_message(
        t,
        link,
        Message::Hello(Hello {
            node_id: NodeId(5),
            protocol_version: 99,
            listen_addr: None,
            name: None,
        }),
    );
    net.drain(1);
    assert_eq!(net.nodes[1].node.state(), &before, "nothing changed");
    assert_eq!(net.nodes[1].node.counters().bad_messages, 8);
    let reasons: Vec<BadInput> = net
        .events(1)
        .filter_map(|e| match e {
            Event::BadMessage { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(reasons.contains(&BadInput::InvalidState("frame beyond the song")));
    assert!(reasons.contains(&BadInput::InvalidState("instant too far ahead")));
    assert!(reasons.contains(&BadInput::InvalidState("sample rate")));
    assert!(reasons.contains(&BadInput::InvalidAnnounce("stratum")));
    assert!(reasons.contains(&BadInput::InvalidAnnounce("clock rate")));
    assert!(reasons.contains(&BadInput::UnexpectedReply));
    assert!(reasons.contains(&BadInput::RepeatedHello));
    // The node still works.
    net.run_until(5 * SEC);
    assert_eq!(net.nodes[1].node.peer_count(), 1);
}

#[test]
fn a_probe_overtaking_the_hello_is_dropped_quietly_but_a_state_before_it_is_refused() {
    let t = LocalTime::from_nanos(SEC);
    let mut n = Node::new(Config::new(NodeId(9)), 1, t);
    n.handle_link_up(t, LinkId(1), "peer:1".into(), Direction::Incoming);
    let announce = Announce {
        root: NodeId(3),
        stratum: 1,
        root_seq: 0,
        root_delay: 0,
        parent: None,
        state_version: n.state().version,
        mapping: ClockMapping::identity(t, n.sync_status().mapping.timebase),
        subtree_delay: 0,
        radius: 0,
        members: None,
    };
    n.handle_message(
        t,
        LinkId(1),
        Message::Probe(Probe {
            seq: 1,
            t0: t,
            announce,
        }),
    );
    assert_eq!(
        n.counters().bad_messages,
        0,
        "a datagram may overtake the hello"
    );
    let state = n.state().clone();
    n.handle_message(t, LinkId(1), Message::State(state));
    assert_eq!(n.counters().bad_messages, 1);
    let mut refused = Vec::new();
    while let Some(o) = n.poll_output() {
        if let Output::Event(Event::BadMessage { reason, .. }) = o {
            refused.push(reason);
        }
    }
    assert_eq!(refused, vec![BadInput::BeforeHandshake]);
}

#[test]
fn refused_commands_change_nothing() {
    let mut net = Net::new(&skewed_clocks(1));
    let before = net.nodes[0].node.state().clone();
    assert_eq!(net.command(0, Command::Pause), Err(CommandError::NoSong));
    assert_eq!(net.command(0, Command::Resume), Err(CommandError::NoSong));
    assert_eq!(
        net.command(
            0,
            Command::Play {
                song: Some(song(100)),
                frame: 100
            }
        ),
        Err(CommandError::OutOfRange {
            frame: 100,
            frames: 100
        })
    );
    let t = net.local(0);
    assert_eq!(
        net.nodes[0]
            .node
            .handle_command(t, Command::Stop, Some(1_000 * SEC as i64)),
        Err(CommandError::TooFarAhead(1_000_000))
    );
    assert_eq!(net.nodes[0].node.state(), &before);
    assert!(net.nodes[0].node.poll_output().is_none());
}

#[test]
fn merging_with_a_group_under_another_reference_does_not_move_playback() {
    // Nodes 1 and 2 play; node 0 (the lowest id) is alone with its own group time.
    let mut net = Net::new(&skewed_clocks(3));
    net.connect(LinkSpec {
        a: 1,
        b: 2,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(3 * SEC);
    net.command(
        1,
        Command::Play {
            song: Some(song(48_000 * 300)),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(10 * SEC);
    let starts: Vec<u32> = (1..3).map(|i| net.nodes[i].player.starts).collect();
    let before = net.frame(1).unwrap();
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(11 * SEC);
    // Group time stepped by seconds on nodes 1 and 2, yet the song went on where it was.
    assert!(
        net.events(1)
            .any(|e| matches!(e, Event::GroupTimeStepped { by } if by.abs() > SEC as i64))
    );
    let after = net.frame(1).unwrap();
    assert!(
        (after - before - 48_000.0).abs() < 48.0,
        "moved from {before} to {after}"
    );
    assert_eq!(net.nodes[1].node.sync_status().root, net.nodes[0].node.id());
    net.run_until(16 * SEC);
    let frames = playing_frames(&mut net, &[0, 1, 2]);
    assert!(
        spread(&frames) / 48_000.0 < 20e-6,
        "merged group in sync: {frames:?}"
    );
    let now: Vec<u32> = (1..3).map(|i| net.nodes[i].player.starts).collect();
    assert_eq!(starts, now, "no re-seek on the nodes that were playing");
}
