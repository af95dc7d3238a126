//! The group state as a last-writer-wins register, relayed along links and repaired by
//! anti-entropy.

mod harness;

use harness::*;
use sync_core::*;

#[test]
fn a_load_at_a_frame_is_one_state_that_cues_every_node_there() {
    let mut net = three_in_a_chain();
    net.run_until(2 * SEC);
    let before = net.nodes[0].node.state().version.counter;
    let a = song(48_000 * 60);
    let frame = 48_000 * 7;
    let load = |frame| Command::Load {
        song: a.clone(),
        frame,
    };
    assert_eq!(
        net.command(0, load(48_000 * 60)),
        Err(CommandError::OutOfRange {
            frame: 48_000 * 60,
            frames: 48_000 * 60
        })
    );
    assert_eq!(net.nodes[0].node.state().version.counter, before);
    net.command(0, load(frame)).unwrap();
    assert_eq!(net.nodes[0].node.state().version.counter, before + 1);
    net.run_until(3 * SEC);
    for n in &net.nodes {
        assert!(matches!(n.node.state().mode, Mode::Paused { frame: f, .. } if f == frame));
        assert!(n.node.wants_song(&a));
        let other = SongRef {
            name: "other.wav".into(),
            ..a.clone()
        };
        assert!(!n.node.wants_song(&other));
    }
}

#[test]
fn concurrent_commands_converge_to_the_same_state_everywhere() {
    let mut net = three_in_a_chain();
    net.run_until(2 * SEC);
    net.command(
        0,
        Command::Load {
            song: song(48_000 * 60),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(3 * SEC);
    // Nodes 0 and 2 issue different commands at the same instant.
    net.command(
        0,
        Command::Play {
            song: None,
            frame: 0,
        },
    )
    .unwrap();
    net.command(2, Command::Seek { frame: 48_000 }).unwrap();
    net.run_until(6 * SEC);
    let s0 = net.nodes[0].node.state().clone();
    for i in 1..3 {
        assert_eq!(net.nodes[i].node.state(), &s0, "node {i}");
    }
}

#[test]
fn older_versions_are_ignored() {
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
            song: song(48_000 * 60),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(3 * SEC);
    let current = net.nodes[1].node.state().clone();
    let mut old = current.clone();
    old.version.counter -= 1;
    old.mode = Mode::Stopped { at: GroupTime(0) };
    let link = net.link_of(1, 0).unwrap();
    let t = net.local(1);
    net.nodes[1]
        .node
        .handle_message(t, link, Message::State(old));
    net.drain(1);
    assert_eq!(net.nodes[1].node.state(), &current);
    assert_eq!(net.nodes[1].node.counters().states_ignored, 1);
}

#[test]
fn states_are_relayed_along_a_chain() {
    let mut net = three_in_a_chain();
    net.run_until(2 * SEC);
    net.command(
        0,
        Command::Load {
            song: song(48_000),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(2 * SEC + 5 * MS);
    let v = net.nodes[0].node.state().version;
    assert_eq!(
        net.nodes[2].node.state().version,
        v,
        "relayed through node 1"
    );
}

#[test]
fn a_node_that_missed_a_state_is_repaired_by_anti_entropy() {
    let mut net = three_in_a_chain();
    net.run_until(2 * SEC);
    net.drop_filter = Some(Box::new(|from, to, m| {
        from == 1 && to == 2 && matches!(m, Message::State(_))
    }));
    net.command(
        0,
        Command::Load {
            song: song(48_000),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(2 * SEC + 50 * MS);
    assert_ne!(
        net.nodes[2].node.state().version,
        net.nodes[0].node.state().version
    );
    // Only the first copy is lost: later pushes get through.
    let mut dropped = false;
    net.drop_filter = Some(Box::new(move |from, to, m| {
        let d = !dropped && from == 1 && to == 2 && matches!(m, Message::State(_));
        dropped |= d;
        d
    }));
    net.run_until(2 * SEC + 1_200 * MS);
    assert_eq!(
        net.nodes[2].node.state().version,
        net.nodes[0].node.state().version
    );
}
