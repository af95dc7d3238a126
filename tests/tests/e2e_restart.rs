//! Membership that outlives a restart, with real processes on loopback (gRPC; issue 29): three
//! clients linked and playing; one is killed -9 and started again with the same state
//! directory, on another peer port so that nobody's redial of its old address can bring it
//! back: it has the same node id, dials the peers it remembers, is back in the group and in
//! sync without anyone typing `join`, with the volume it had, and a pause typed afterwards
//! holds all three on one frame.
//!
//! Bounds are loose (1 ms) on purpose: this proves behaviour on a shared 2-core machine, not
//! accuracy (the benchmarks measure that).

mod e2e;

use e2e::*;

/// The node id a client printed at start (before its prompt, which `client` waited for).
fn printed_node_id(c: &Client) -> String {
    let out = c.output();
    let line = out.iter().find(|l| l.starts_with("node id "));
    line.and_then(|l| l.split(' ').nth(2))
        .unwrap_or_default()
        .to_string()
}

/// The start line about the state directory.
fn state_note(c: &Client) -> String {
    let out = c.output();
    out.into_iter()
        .find(|l| l.starts_with("state in "))
        .unwrap_or_default()
}

#[test]
fn a_client_killed_and_started_again_with_its_state_directory_is_back_in_its_group_by_itself() {
    let dir = tempfile_dir("restart");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    // C takes its node id from its state directory, not from the command line.
    let sc = ClientSpec { node_id: 0, ..sc };
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    let first_id = printed_node_id(&c);
    assert!(
        state_note(&c).contains("new node id saved"),
        "{:?}",
        c.output()
    );
    join(&mut b, &mut a);
    join(&mut c, &mut b);
    c.send("volume 40");
    c.wait_for("volume 40%", 5 * S);
    a.send("play 2");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded ", 30 * S);
    }
    // The state file is written within a couple of seconds of a change.
    let state = dir.join("c.state").join("state.toml");
    let deadline = std::time::Instant::now() + 10 * S;
    while !std::fs::read_to_string(&state).is_ok_and(|t| t.contains(&b.addr)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never named {}",
            state.display(),
            b.addr
        );
        std::thread::sleep(S / 5);
    }

    // kill -9 C, and start it again on another port with the same state directory.
    let old_addr = c.addr.clone();
    c.kill();
    b.wait_for(&format!("peer {old_addr} disconnected"), 15 * S);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    assert_ne!(c.addr, old_addr);
    assert_eq!(printed_node_id(&c), first_id, "the node id is kept");
    let note = state_note(&c);
    assert!(
        note.contains("node id kept") && note.contains(&b.addr),
        "{note}"
    );
    // Nobody types `join`: it dials B, and through the members it learns, A.
    c.wait_for(&format!("connected to peer {}", b.addr), 20 * S);
    c.wait_for("loaded noise-groove.wav", 30 * S);
    assert!(
        answer(&mut c, "volume")
            .iter()
            .any(|l| l.contains("volume 40%")),
        "the volume is restored"
    );
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 2, 1_000.0);

    // One group, one state: a pause typed on A holds all three on one frame.
    pause_holds_one_frame(&mut a, &mut [&mut b, &mut c], "noise-groove.wav");
}
