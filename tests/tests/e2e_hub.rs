//! The hub of a star killed, with real processes on loopback (gRPC; issues 24 and 29): four
//! clients, three of which joined the fourth only. The leaves learn each other as members from
//! the hub's gossip and link by themselves, so when the hub is killed -9 they stay one group
//! (one reference, one state: a pause typed on one holds all three on one frame) and play on in
//! sync; the hub started again on its port is dialled back by them, with nobody typing `join`.
//!
//! Bounds are loose (1 ms) on purpose: this proves behaviour on a shared 2-core machine, not
//! accuracy (the benchmarks measure that).

mod e2e;

use e2e::*;

/// The fourth client, skewed unlike the three of [`specs`].
fn spec_d() -> ClientSpec {
    ClientSpec {
        name: "d",
        offset_ms: 800.0,
        drift_ppm: -90.0,
        node_id: 0xd,
    }
}

#[test]
fn the_leaves_of_a_star_stay_one_group_when_the_hub_is_killed_and_the_hub_rejoins_by_itself() {
    let dir = tempfile_dir("hub");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    // The hub is A, the lowest id: the group's clock reference dies with it.
    let mut hub = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    let mut d = client(&dir, port, &spec_d(), Transport::Grpc);
    for leaf in [&mut b, &mut c, &mut d] {
        join(leaf, &mut hub);
    }
    // Nobody types more: within a few members rounds (2 s) the leaves link to each other.
    b.wait_for(&format!("connected to peer {}", c.addr), 15 * S);
    c.wait_for(&format!("connected to peer {}", d.addr), 15 * S);
    hub.send("play 2");
    for x in [&mut hub, &mut b, &mut c, &mut d] {
        x.wait_for("loaded ", 30 * S);
    }
    std::thread::sleep(6 * S);
    assert_in_sync(&[&hub, &b, &c, &d], 2, 1_000.0);

    // kill -9 the hub: the leaves lose it and stay one group.
    let hub_port = hub.port;
    let hub_addr = hub.addr.clone();
    hub.kill();
    for leaf in [&mut b, &mut c, &mut d] {
        leaf.wait_for(&format!("peer {hub_addr} disconnected"), 15 * S);
    }
    std::thread::sleep(3 * S);
    assert_in_sync(&[&b, &c, &d], 2, 1_000.0);
    c.send("pause");
    b.wait_for("pause noise-groove.wav at", 5 * S);
    d.wait_for("pause noise-groove.wav at", 5 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut b, &mut c, &mut d], "paused");
    assert!(frames[0] > 48_000 * 5, "paused at {frames:?}, not mid-song");
    assert!(
        frames.iter().all(|f| *f == frames[0]),
        "paused frames {frames:?}"
    );
    // And they keep playing together.
    d.send("resume");
    std::thread::sleep(5 * S);
    assert_in_sync(&[&b, &c, &d], 2, 1_000.0);

    // The hub starts again on its port: the leaves redial it (nobody types `join`), it loads
    // the song and plays at the group's position.
    let again = ClientSpec {
        name: "a-again",
        ..specs()[0]
    };
    let mut hub = client_on(&dir, port, &again, Transport::Grpc, &[], hub_port);
    hub.wait_for("connected to peer", 20 * S);
    hub.wait_for("loaded noise-groove.wav", 30 * S);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&hub, &b, &c, &d], 3, 1_000.0);
    // One state with it too: a pause typed on the returned hub holds all four on one frame.
    hub.send("pause");
    for leaf in [&mut b, &mut c, &mut d] {
        leaf.wait_for("pause noise-groove.wav at", 5 * S);
    }
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut hub, &mut b, &mut c, &mut d], "paused");
    assert!(
        frames.iter().all(|f| *f == frames[0]),
        "paused frames {frames:?}"
    );
}
