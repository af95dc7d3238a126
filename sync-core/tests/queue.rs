//! The group's queue through the node: edits replicated with the state, the transition to the
//! next entry made by every node alone on the same group instant, and convergence whatever the
//! order in which edits arrive.

mod harness;

use harness::*;
use proptest::prelude::*;
use sync_core::*;

fn named(name: &str, seconds: u64) -> SongRef {
    SongRef {
        name: name.into(),
        content_hash: "ab".into(),
        sample_rate: 48_000,
        frames: 48_000 * seconds,
    }
}

fn mesh_of_three() -> Net {
    let mut net = Net::new(&skewed_clocks(3));
    mesh(&mut net, 3, MS);
    net.run_until(2 * SEC);
    net
}

/// Every state node `i` accepted for the song named `name`, in order.
fn accepted_for(net: &Net, i: usize, name: &str) -> Vec<GroupState> {
    net.events(i)
        .filter_map(|e| match e {
            Event::StateAccepted { state, .. }
                if state.song.as_ref().is_some_and(|s| s.name == name) =>
            {
                Some(state.clone())
            }
            _ => None,
        })
        .collect()
}

fn queue_command(net: &mut Net, i: usize, c: QueueCommand) -> Result<(), CommandError> {
    net.command(i, Command::Queue(c))
}

#[test]
fn the_queue_advances_on_every_node_at_the_song_end_and_stops_after_the_last() {
    let mut net = mesh_of_three();
    let songs = [named("a.wav", 2), named("b.wav", 3), named("c.wav", 2)];
    queue_command(&mut net, 1, QueueCommand::Add(songs.to_vec())).unwrap();
    net.run_until(3 * SEC);
    queue_command(&mut net, 2, QueueCommand::Start).unwrap();
    net.run_until(20 * SEC);
    let first = accepted_for(&net, 0, "a.wav");
    let Some(Mode::Playing { frame: 0, at }) = first.last().map(|s| s.mode) else {
        panic!("a.wav never played: {first:?}");
    };
    // Each transition is one state, the same on every node, anchored where the song before
    // it ends: its first frame is heard one frame period after the last frame of the other.
    let mut end = at + 2 * SEC as i64;
    for (name, seconds) in [("b.wav", 3), ("c.wav", 2)] {
        let on_0 = accepted_for(&net, 0, name);
        assert_eq!(on_0.len(), 1, "one transition to {name}: {on_0:?}");
        assert_eq!(on_0[0].mode, Mode::Playing { frame: 0, at: end });
        for i in 1..3 {
            assert_eq!(accepted_for(&net, i, name), on_0, "node {i}, {name}");
        }
        end = end + seconds * SEC as i64;
    }
    // After the last entry the group stops: every node said the song finished.
    for i in 0..3 {
        let finished: Vec<&str> = net
            .events(i)
            .filter_map(|e| match e {
                Event::SongFinished { song } => Some(song.name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(finished, ["c.wav"], "node {i}");
    }
}

#[test]
fn repeat_all_wraps_to_the_first_entry() {
    let mut net = mesh_of_three();
    queue_command(
        &mut net,
        0,
        QueueCommand::Add(vec![named("a.wav", 1), named("b.wav", 1)]),
    )
    .unwrap();
    queue_command(&mut net, 0, QueueCommand::Repeat(Repeat::All)).unwrap();
    queue_command(&mut net, 0, QueueCommand::Start).unwrap();
    net.run_until(8 * SEC);
    for i in 0..3 {
        let a = accepted_for(&net, i, "a.wav");
        assert!(
            a.iter()
                .filter(|s| s.version.revised_by == NodeId(0))
                .count()
                >= 2,
            "node {i} came back to a.wav twice: {a:?}"
        );
    }
}

#[test]
fn next_typed_on_two_nodes_at_once_moves_the_group_by_one_entry() {
    let mut net = mesh_of_three();
    let songs = [named("a.wav", 60), named("b.wav", 60), named("c.wav", 60)];
    queue_command(&mut net, 0, QueueCommand::Add(songs.to_vec())).unwrap();
    queue_command(&mut net, 0, QueueCommand::Start).unwrap();
    net.run_until(6 * SEC);
    queue_command(&mut net, 0, QueueCommand::Next).unwrap();
    queue_command(&mut net, 2, QueueCommand::Next).unwrap();
    net.run_until(10 * SEC);
    let s0 = net.nodes[0].node.state().clone();
    assert_eq!(s0.song.as_ref().map(|s| s.name.as_str()), Some("b.wav"));
    for i in 1..3 {
        assert_eq!(net.nodes[i].node.state(), &s0, "node {i}");
    }
}

#[test]
fn a_refused_queue_edit_changes_nothing() {
    let mut net = mesh_of_three();
    let before = net.nodes[0].node.state().clone();
    for c in [
        QueueCommand::Next,
        QueueCommand::Remove(1),
        QueueCommand::Move { from: 1, to: 2 },
        QueueCommand::Clear,
        QueueCommand::Add(Vec::new()),
        QueueCommand::Start,
    ] {
        assert!(queue_command(&mut net, 0, c.clone()).is_err(), "{c:?}");
    }
    assert_eq!(net.nodes[0].node.state(), &before);
}

#[test]
fn removing_the_playing_entry_plays_the_next_one() {
    let mut net = mesh_of_three();
    let songs = [named("a.wav", 60), named("b.wav", 60)];
    queue_command(&mut net, 0, QueueCommand::Add(songs.to_vec())).unwrap();
    queue_command(&mut net, 0, QueueCommand::Start).unwrap();
    net.run_until(6 * SEC);
    queue_command(&mut net, 1, QueueCommand::Remove(1)).unwrap();
    net.run_until(10 * SEC);
    for i in 0..3 {
        let s = net.nodes[i].node.state();
        assert_eq!(s.song.as_ref().map(|s| s.name.as_str()), Some("b.wav"));
        assert_eq!(s.queue.entries.len(), 1);
        assert!(matches!(s.mode, Mode::Playing { .. }), "node {i}: {s:?}");
    }
}

/// A queue edit for the property test, positions taken modulo the queue's length.
#[derive(Clone, Debug)]
enum Edit {
    Add(u8),
    Remove(u8),
    Move(u8, u8),
    Next,
    Repeat(u8),
    Shuffle(bool),
    Clear,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => any::<u8>().prop_map(Edit::Add),
        1 => any::<u8>().prop_map(Edit::Remove),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Edit::Move(a, b)),
        1 => Just(Edit::Next),
        1 => any::<u8>().prop_map(Edit::Repeat),
        1 => any::<bool>().prop_map(Edit::Shuffle),
        1 => Just(Edit::Clear),
    ]
}

fn to_command(e: &Edit, len: usize) -> QueueCommand {
    let at = |x: u8| usize::from(x) % len.max(1) + 1;
    match *e {
        Edit::Add(x) => QueueCommand::Add(vec![named(&format!("{x}.wav"), 10)]),
        Edit::Remove(x) => QueueCommand::Remove(at(x)),
        Edit::Move(a, b) => QueueCommand::Move {
            from: at(a),
            to: at(b),
        },
        Edit::Next => QueueCommand::Next,
        Edit::Repeat(x) => {
            QueueCommand::Repeat([Repeat::Off, Repeat::One, Repeat::All][x as usize % 3])
        }
        Edit::Shuffle(on) => QueueCommand::Shuffle(on),
        Edit::Clear => QueueCommand::Clear,
    }
}

fn linked_node(id: u64, now: LocalTime) -> Node {
    let mut node = Node::new(Config::new(NodeId(id)), id, now);
    node.handle_link_up(now, LinkId(1), "p:1".into(), Direction::Incoming);
    node.handle_message(
        now,
        LinkId(1),
        Message::Hello(Hello {
            node_id: NodeId(999),
            protocol_version: PROTOCOL_VERSION,
            listen_addr: None,
            name: None,
        }),
    );
    while node.poll_output().is_some() {}
    node
}

fn deliver(node: &mut Node, now: LocalTime, s: &GroupState) {
    let s = GroupState {
        timebase: node.state().timebase,
        ..s.clone()
    };
    node.handle_message(now, LinkId(1), Message::State(s));
    while node.poll_output().is_some() {}
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Three nodes edit the queue concurrently, now and then hearing one another's states;
    /// every state they made, delivered to fresh nodes in any order and some twice, leaves
    /// them all with the same queue and current entry (an old or repeated edit is ignored).
    #[test]
    fn any_delivery_order_of_the_same_edits_gives_the_same_queue(
        edits in proptest::collection::vec((0usize..3, edit(), any::<bool>()), 1..24),
        seeds in proptest::collection::vec(any::<u64>(), 3),
    ) {
        let now = LocalTime(100 * SEC);
        let mut editors: Vec<Node> = (1..=3).map(|id| linked_node(id, now)).collect();
        let mut made: Vec<GroupState> = Vec::new();
        for (who, e, share) in &edits {
            let len = editors[*who].state().queue.entries.len();
            if editors[*who].handle_command(now, Command::Queue(to_command(e, len)), None).is_ok() {
                let s = editors[*who].state().clone();
                while editors[*who].poll_output().is_some() {}
                if *share {
                    for (j, other) in editors.iter_mut().enumerate() {
                        if j != *who {
                            deliver(other, now, &s);
                        }
                    }
                }
                made.push(s);
            }
        }
        prop_assume!(!made.is_empty());
        let mut finals = Vec::new();
        for seed in seeds {
            // Every state once, half of them twice, in an order drawn from the seed.
            let mut order: Vec<(u64, usize)> = (0..made.len())
                .chain(0..made.len() / 2)
                .enumerate()
                .map(|(k, i)| ((k as u64 + 1).wrapping_mul(seed | 1).rotate_left(29), i))
                .collect();
            order.sort_unstable();
            let order = order.into_iter().map(|(_, i)| i);
            let mut node = linked_node(50, now);
            for i in order {
                deliver(&mut node, now, &made[i]);
            }
            finals.push(node.state().clone());
        }
        let newest = made.iter().max_by_key(|s| s.version).unwrap();
        for f in &finals {
            prop_assert_eq!(f.version, newest.version);
            prop_assert_eq!(&f.queue, &newest.queue);
            prop_assert_eq!(&f.song, &newest.song);
            prop_assert_eq!(f.queue.play_order(), finals[0].queue.play_order());
        }
    }
}
