//! Songs: a peer loads the song and joins the timeline, the group waits for it a bounded time,
//! and the song's end stops every node.

mod harness;

use harness::*;
use sync_core::*;

#[test]
fn a_peer_without_the_song_loads_it_and_joins_the_timeline() {
    let mut net = three_in_a_chain();
    // Node 2 loads slowly: 2 s, within the initiator's bounded wait.
    net.nodes[2].load_delay = Some(2 * SEC);
    net.run_until(3 * SEC);
    net.command(
        0,
        Command::Play {
            song: Some(song(48_000 * 60)),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(4 * SEC);
    // Node 0 waits for its neighbour (node 1, ready quickly), not for node 2 two hops away.
    assert!(
        net.frame(0).is_some(),
        "initiator started once its peers were ready"
    );
    assert!(net.frame(2).is_none(), "node 2 still loading");
    net.run_until(8 * SEC);
    let frames = playing_frames(&mut net, &[0, 1, 2]);
    assert!(
        spread(&frames) / 48_000.0 < 50e-6,
        "node 2 joined in sync: {frames:?}"
    );
}

#[test]
fn a_stuck_peer_does_not_hold_the_group_longer_than_the_ready_timeout() {
    let mut net = Net::new(&skewed_clocks(2));
    net.nodes[1].load_delay = None; // never loads
    net.connect(LinkSpec {
        a: 0,
        b: 1,
        delay_ab: MS,
        delay_ba: MS,
    });
    net.run_until(2 * SEC);
    net.command(
        0,
        Command::Play {
            song: Some(song(48_000 * 60)),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(4 * SEC);
    assert!(
        net.frame(0).is_none(),
        "waiting for the peer within the timeout"
    );
    net.run_until(5 * SEC + 100 * MS);
    let f = net
        .frame(0)
        .expect("started at the deadline without the stuck peer");
    // Deadline 3 s after the command: about 0.1 s of song played.
    assert!((f - 4_800.0).abs() < 48.0 * 10.0, "frame {f}");
}

#[test]
fn a_peer_that_cannot_load_is_named_while_waited_for_then_not_waited_for_again() {
    let mut net = star_of_three();
    net.nodes[2].load_delay = None; // never loads
    net.run_until(2 * SEC);
    let play = Command::Play {
        song: Some(song(48_000 * 60)),
        frame: 0,
    };
    net.command(0, play.clone()).unwrap();
    net.run_until(3 * SEC);
    let now = net.local(0);
    let wait = net.nodes[0].node.load_wait(now).expect("waiting");
    assert_eq!(wait.waiting_for, [NodeId(102)], "{wait:?}");
    assert!(wait.not_waited.is_empty() && !wait.loading_here, "{wait:?}");
    assert_eq!(wait.deadline.since(wait.since), 3 * SEC as i64, "{wait:?}");
    assert!(
        net.nodes[1].node.load_wait(net.local(1)).is_none(),
        "only the initiator waits"
    );

    // At the deadline the group starts without it, and says so once.
    net.run_until(5 * SEC + 100 * MS);
    assert!(net.frame(0).is_some() && net.frame(1).is_some());
    let (version, without) = net.nodes[0]
        .node
        .started_without()
        .expect("deadline passed");
    assert_eq!(version, wait.version);
    assert_eq!(without, [NodeId(102)]);
    assert!(net.nodes[0].node.load_wait(net.local(0)).is_none());

    // The next play waits only for the peer that loads: it starts in well under a second.
    net.command(0, Command::Stop).unwrap();
    net.run_until(6 * SEC);
    net.command(0, play).unwrap();
    let wait = net.nodes[0].node.load_wait(net.local(0)).expect("loading");
    assert_eq!(wait.not_waited, [NodeId(102)], "{wait:?}");
    net.run_until(6 * SEC + 200 * MS);
    assert!(
        net.frame(0).is_some(),
        "the group waited for the peer that cannot load"
    );
    assert!(net.frame(1).is_some());
    assert!(net.frame(2).is_none());
}

#[test]
fn the_song_end_stops_every_node() {
    let mut net = three_in_a_chain();
    net.run_until(2 * SEC);
    net.command(
        0,
        Command::Play {
            song: Some(song(48_000 * 2)),
            frame: 0,
        },
    )
    .unwrap();
    net.run_until(6 * SEC);
    for i in 0..3 {
        assert!(
            net.events(i)
                .any(|e| matches!(e, Event::SongFinished { .. })),
            "node {i}"
        );
        assert_eq!(
            net.nodes[i].node.timeline_at(net.local(i)),
            Timeline::Finished
        );
    }
    assert_eq!(
        net.command(1, Command::Pause),
        Err(CommandError::NotPlaying)
    );
}
