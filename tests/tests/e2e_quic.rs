//! End-to-end tests over QUIC with real processes on loopback: a music server and three music
//! clients dialling with `--transport quic` (frames on a QUIC stream, clock probes as
//! datagrams), clocks skewed like separate machines, null sinks and trace files; and a group
//! that mixes gRPC and QUIC links.
//!
//! As in `e2e_grpc.rs`, the accuracy asserted is deliberately loose (1 ms): these tests prove
//! behaviour on a shared machine; the numbers come from the demo and the loopback clock test.

mod e2e;

use e2e::*;

#[test]
fn commands_typed_on_any_client_of_a_quic_chain_reach_every_client_in_sync() {
    let dir = tempfile_dir("quic-chain");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Quic);
    let mut b = client(&dir, port, &sb, Transport::Quic);
    let mut c = client(&dir, port, &sc, Transport::Quic);
    // A chain: A - B - C, no A - C link.
    join(&mut b, &mut a);
    join(&mut c, &mut b);
    let conns = b.ask("connections", S);
    assert_eq!(vias(&conns), ["quic", "quic"], "{conns:?}");

    b.send("play 2");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded noise-groove.wav", 30 * S);
    }
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    // Pause typed on the far end of the chain: everyone holds the same frame, and the sound
    // stops together.
    let before = traces_end(&[&a, &b, &c]);
    c.send("pause");
    a.wait_for("pause noise-groove.wav at", 5 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut a, &mut b, &mut c], "paused");
    assert!(
        frames.windows(2).all(|w| w[0] == w[1]),
        "paused frames {frames:?}"
    );
    sound_stop_spread_us(&[&a, &b, &c], before, 1_000.0);

    a.send("resume");
    b.wait_for("play noise-groove.wav from", 5 * S);
    c.wait_for("play noise-groove.wav from", 5 * S);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    b.send("stop");
    std::thread::sleep(S);
    frames_in_state(&mut [&mut a, &mut b, &mut c], "stopped");
}

#[test]
fn a_late_quic_joiner_plays_in_sync_and_departures_are_seen_on_both_sides() {
    let dir = tempfile_dir("quic-churn");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Quic);
    let mut b = client(&dir, port, &sb, Transport::Quic);
    join(&mut b, &mut a);
    a.send("play 1");
    b.wait_for("loaded chimes.wav", 30 * S);
    std::thread::sleep(3 * S);

    // C joins mid-song.
    let mut c = client(&dir, port, &sc, Transport::Quic);
    join(&mut c, &mut a);
    c.wait_for("loaded chimes.wav", 30 * S);
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    // `leave` closes the link on both sides.
    c.send(&format!("leave {}", a.addr));
    a.wait_for(&format!("peer {} disconnected", c.addr), 5 * S);
    let conns = c.ask("connections", S);
    assert!(!conns.iter().any(|l| l.contains(&a.addr)), "{conns:?}");
    // C learnt B as a member from A and linked to it by itself (docs/membership.md).
    assert!(conns.iter().any(|l| l.contains(&b.addr)), "{conns:?}");

    // kill -9 of B: nothing is said on the wire; A and C notice the silence, keep playing, and
    // B leaves A's table.
    b.kill();
    a.wait_for(&format!("peer {} disconnected", b.addr), 15 * S);
    c.wait_for(&format!("peer {} disconnected", b.addr), 15 * S);
    std::thread::sleep(S);
    let conns = a.ask("connections", S);
    assert!(!conns.iter().any(|l| l.contains(&b.addr)), "{conns:?}");
    let st = a.ask("status", S / 2);
    assert_eq!(status_state(&st).as_deref(), Some("playing"), "{st:?}");

    // A dial to a port where nobody answers fails with one line.
    let out = a.ask(&format!("join 127.0.0.1:{}", free_port()), 5 * S);
    assert!(out.iter().any(|l| l.contains("cannot join")), "{out:?}");
    assert!(a.is_running());
}

#[test]
fn grpc_and_quic_clients_play_in_one_group() {
    let dir = tempfile_dir("mixed");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Quic);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    // B dials A over QUIC (A, a gRPC client, accepts QUIC too); C dials B over gRPC.
    join(&mut b, &mut a);
    join(&mut c, &mut b);
    let conns = b.ask("connections", S);
    let mut via = vias(&conns);
    via.sort();
    assert_eq!(via, ["grpc", "quic"], "{conns:?}");
    // (A and C may also have linked to each other by the membership rule.)
    assert!(vias(&a.ask("connections", S)).contains(&"quic".to_string()));
    assert!(vias(&c.ask("connections", S)).contains(&"grpc".to_string()));

    c.send("play 2");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded noise-groove.wav", 30 * S);
    }
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    a.send("pause");
    c.wait_for("pause noise-groove.wav at", 5 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut a, &mut b, &mut c], "paused");
    assert!(
        frames.windows(2).all(|w| w[0] == w[1]),
        "paused frames {frames:?}"
    );
}

#[test]
fn a_keyed_quic_group_plays_in_sync_and_a_quic_peer_with_another_key_is_refused() {
    let dir = tempfile_dir("quic-key");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let key = [("MUSIC262_GROUP_KEY", "quic e2e group key 9876")];
    let mut a = client_with_env(&dir, port, &sa, Transport::Quic, &key);
    let mut b = client_with_env(&dir, port, &sb, Transport::Quic, &key);
    join(&mut b, &mut a);
    let conns = b.ask("connections", S);
    assert_eq!(vias(&conns), ["quic"], "{conns:?}");

    // Every frame sealed, probes as sealed datagrams: the group still plays in sync.
    a.send("play 2");
    for x in [&mut a, &mut b] {
        x.wait_for("loaded noise-groove.wav", 30 * S);
    }
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b], 3, 1_000.0);

    let mut c = client_with_env(
        &dir,
        port,
        &sc,
        Transport::Quic,
        &[("MUSIC262_GROUP_KEY", "the key of another group")],
    );
    c.send(&format!("join {}", a.addr));
    c.wait_for("uses a different group key", 10 * S);
    a.wait_for("uses a different group key", 10 * S);
    let conns = a.ask("connections", S);
    assert!(!conns.iter().any(|l| l.contains(&c.addr)), "{conns:?}");
    // Nothing the refused peer sent reached A: it still plays the same song.
    let st = a.ask("status", S / 2);
    assert_eq!(status_state(&st).as_deref(), Some("playing"), "{st:?}");
}
