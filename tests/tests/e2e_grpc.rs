//! End-to-end tests over gRPC with real processes on loopback: a music server and three
//! music clients whose sync clocks are skewed like separate machines (offsets of seconds,
//! drifts of ±200 ppm), null sinks and trace files.
//!
//! The accuracy asserted here is deliberately loose (1 ms): these tests prove behaviour on a
//! shared machine; the tight numbers come from the benchmark (see BENCHMARKS.md).

mod e2e;

use e2e::*;

#[test]
fn commands_typed_on_any_client_of_a_chain_reach_every_client_in_sync() {
    let dir = tempfile_dir("chain");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    // A chain: A - B - C, no A - C link.
    join(&mut b, &mut a);
    join(&mut c, &mut b);

    let list = a.ask("playlist", 2 * S);
    assert!(
        list.iter().any(|l| l.contains("2. noise-groove.wav")),
        "playlist: {list:?}"
    );

    b.send("play 2");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded noise-groove.wav", 30 * S);
    }
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    // Pause typed on the far end of the chain: everyone holds the same frame.
    let before = traces_end(&[&a, &b, &c]);
    c.send("pause");
    a.wait_for("pause noise-groove.wav at", 5 * S);
    std::thread::sleep(S);
    let frames: Vec<u64> = [&mut a, &mut b, &mut c]
        .into_iter()
        .map(|x| {
            let st = x.ask("status", S / 2);
            assert_eq!(
                status_state(&st).as_deref(),
                Some("paused"),
                "{}: {st:?}",
                x.name
            );
            status_frame(&st).expect("a frame in status")
        })
        .collect();
    assert_eq!(frames[0], frames[1], "paused frames {frames:?}");
    assert_eq!(frames[1], frames[2], "paused frames {frames:?}");
    sound_stop_spread_us(&[&a, &b, &c], before, 1_000.0);

    a.send("resume");
    b.wait_for("play noise-groove.wav from", 5 * S);
    c.wait_for("play noise-groove.wav from", 5 * S);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    b.send("stop");
    std::thread::sleep(S);
    for x in [&mut a, &mut b, &mut c] {
        let st = x.ask("status", S / 2);
        assert_eq!(
            status_state(&st).as_deref(),
            Some("stopped"),
            "{}: {st:?}",
            x.name
        );
    }
}

#[test]
fn a_late_joiner_plays_in_sync_and_departures_are_seen_on_both_sides() {
    let dir = tempfile_dir("churn");
    let (mut server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    join(&mut b, &mut a);
    // By name, as the peer-to-peer guide's example does it.
    a.send("play sample_song.wav");
    b.wait_for("loaded sample_song.wav", 30 * S);
    std::thread::sleep(3 * S);

    // C joins mid-song.
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    let peers = c.ask("peers", 2 * S);
    assert!(peers.iter().any(|l| l.contains(&a.addr)), "{peers:?}");
    assert!(peers.iter().any(|l| l.contains(&b.addr)), "{peers:?}");
    join(&mut c, &mut a);
    c.wait_for("loaded sample_song.wav", 30 * S);
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    // The server goes away: playback goes on.
    server.kill();
    std::thread::sleep(3 * S);
    assert_in_sync(&[&a, &b, &c], 2, 1_000.0);

    // `leave` closes the link on both sides.
    c.send(&format!("leave {}", a.addr));
    a.wait_for(&format!("peer {} disconnected", c.addr), 5 * S);
    let conns = c.ask("connections", S);
    assert!(!conns.iter().any(|l| l.contains(&a.addr)), "{conns:?}");
    // C learnt B as a member from A and linked to it by itself (docs/membership.md).
    assert!(conns.iter().any(|l| l.contains(&b.addr)), "{conns:?}");

    // kill -9 of B: A and C lose it, keep playing, and it leaves A's table.
    b.kill();
    a.wait_for(&format!("peer {} disconnected", b.addr), 15 * S);
    std::thread::sleep(2 * S);
    let conns = a.ask("connections", S);
    assert!(!conns.iter().any(|l| l.contains(&b.addr)), "{conns:?}");
    let st = a.ask("status", S / 2);
    assert_eq!(status_state(&st).as_deref(), Some("playing"), "{st:?}");

    // `quit` removes C on the other side too.
    c.send("quit");
    assert!(
        c.wait_exit(10 * S).is_some_and(|s| s.success()),
        "c exits cleanly"
    );
}

#[test]
fn a_declared_device_latency_re_cues_that_client_early_and_it_stays_in_sync_as_heard() {
    let dir = tempfile_dir("latency");
    let (_server, port) = server(&dir);
    let [sa, sb, _] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    join(&mut b, &mut a);
    a.send("play 1");
    for x in [&mut a, &mut b] {
        x.wait_for("loaded chimes.wav", 30 * S);
    }
    std::thread::sleep(4 * S);
    b.send("latency 40");
    b.wait_for("output latency 40.0 ms", 2 * S);
    std::thread::sleep(5 * S);
    // Traces say what is heard: B's speakers now play 40 ms after its sink, and B is heard in
    // step with A because its sink runs 40 ms ahead.
    assert_in_sync(&[&a, &b], 2, 1_000.0);
    // The change moved B's output at once; its sync loop saw a 40 ms lag and re-cued.
    let log = std::fs::read_to_string(dir.join("b.log")).unwrap();
    let recue = log
        .lines()
        .filter(|l| l.contains("re-seeking onto the timeline"))
        .filter_map(|l| l.split("error_us=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse::<i64>().ok())
        .find(|us| (-41_000..=-39_000).contains(us));
    assert!(recue.is_some(), "no re-cue by -40 ms in b.log");
    let st = b.ask("status", S / 2);
    assert!(
        st.iter().any(|l| l.contains("output latency 40.0 ms")),
        "{st:?}"
    );
    // A bad value is one line and changes nothing.
    b.send("latency 9000");
    b.wait_for("latency goes from 0 to 2000 ms", 2 * S);
    b.send("latency");
    b.wait_for("output latency 40.0 ms (set it with `latency <ms>`)", 2 * S);
}

#[test]
fn peers_lists_only_live_clients() {
    let dir = tempfile_dir("peers");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    a.wait_for("registered as joinable", 10 * S);
    b.wait_for("registered as joinable", 10 * S);
    c.wait_for("registered as joinable", 10 * S);
    let list = a.ask("peers", 2 * S);
    for x in [&b, &c] {
        assert!(
            list.iter().any(|l| l.contains(&x.addr)),
            "{} missing: {list:?}",
            x.name
        );
    }
    // B quits (unregisters at once); C dies (its 3 s lease lapses).
    b.send("quit");
    assert!(b.wait_exit(10 * S).is_some());
    c.kill();
    std::thread::sleep(5 * S);
    let list = a.ask("peers", 2 * S);
    assert!(!list.iter().any(|l| l.contains(&b.addr)), "{list:?}");
    assert!(!list.iter().any(|l| l.contains(&c.addr)), "{list:?}");
    assert!(list.iter().any(|l| l.contains(&a.addr)), "{list:?}");
}

#[test]
fn bad_input_at_the_prompt_gets_one_line_and_the_client_keeps_running() {
    let dir = tempfile_dir("bad");
    // No server at all: the client starts and says so.
    let dead = free_port();
    let [sa, sb, _] = specs();
    let mut a = client(&dir, dead, &sa, Transport::Grpc);
    a.wait_for("unreachable", 10 * S);
    let mut b = client(&dir, dead, &sb, Transport::Grpc);
    for (cmd, want) in [
        ("dance", "unknown command `dance`"),
        ("join nowhere", "is not an address"),
        (&format!("join {}", a.addr) as &str, ""),
        ("pause", "no song is loaded"),
        ("play 7", "unreachable"),
    ] {
        if want.is_empty() {
            b.send(cmd);
            continue;
        }
        let out = b.ask(cmd, S);
        assert!(out.iter().any(|l| l.contains(want)), "`{cmd}`: {out:?}");
    }
    // Joining itself, and a port where nobody listens.
    let own = b.addr.clone();
    let out = b.ask(&format!("join {own}"), S);
    assert!(out.iter().any(|l| l.contains("own address")), "{out:?}");
    let out = b.ask(&format!("join 127.0.0.1:{}", free_port()), 5 * S);
    assert!(out.iter().any(|l| l.contains("cannot join")), "{out:?}");
    assert!(b.is_running());
    // Peer features work without a server.
    let conns = b.ask("connections", S);
    assert!(conns.iter().any(|l| l.contains(&a.addr)), "{conns:?}");
}

#[test]
fn a_taken_peer_port_moves_to_the_next_free_one_with_one_line() {
    let dir = tempfile_dir("port");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = std::process::Command::new(binary("music_client"));
    cmd.args([
        "--server",
        "127.0.0.1:1",
        "--p2p-port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--sink",
        "null",
        "--log-file",
    ])
    .arg(dir.join("p.log"))
    .env("XDG_STATE_HOME", &*dir)
    .env("XDG_CONFIG_HOME", &*dir)
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::thread::sleep(3 * S);
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("peer port {port} is in use; listening on")),
        "{text}"
    );
}

const GROUP_KEY: &str = "e2e group key 0123456789";

/// The `refused:` counts of a `status` reply: links, frames, legacy calls.
fn refused_counts(lines: &[String]) -> (u64, u64, u64) {
    let line = lines
        .iter()
        .find(|l| l.contains("refused:"))
        .unwrap_or_else(|| panic!("no security line in {lines:?}"));
    let n = |what: &str| -> u64 {
        let before = line.split(what).next().unwrap_or_default();
        before
            .split_whitespace()
            .last()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no count before `{what}` in {line}"))
    };
    (n(" links"), n(" frames,"), n(" legacy calls"))
}

#[test]
fn peers_with_the_same_group_key_link_and_others_are_refused_and_counted() {
    let dir = tempfile_dir("group-key");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let key = [("MUSIC262_GROUP_KEY", GROUP_KEY)];
    let mut a = client_with_env(&dir, port, &sa, Transport::Grpc, &key);
    assert!(
        a.output()
            .iter()
            .any(|l| l.contains("group key") && l.contains("set")),
        "{:?}",
        a.output()
    );
    let mut b = client_with_env(&dir, port, &sb, Transport::Grpc, &key);
    join(&mut b, &mut a);

    // Another key: refused on both sides, with the reason, and counted.
    let mut c = client_with_env(
        &dir,
        port,
        &sc,
        Transport::Grpc,
        &[("MUSIC262_GROUP_KEY", "not the group's key at all")],
    );
    c.send(&format!("join {}", a.addr));
    c.wait_for("uses a different group key", 10 * S);
    a.wait_for("uses a different group key", 10 * S);

    // No key at all: warned at start, refused by the keyed client.
    let d_spec = ClientSpec {
        name: "d",
        offset_ms: 0.0,
        drift_ppm: 0.0,
        node_id: 0xd,
    };
    let mut d = client(&dir, port, &d_spec, Transport::Grpc);
    assert!(
        d.output()
            .iter()
            .any(|l| l.contains("warning: no group key")),
        "the keyless client warns: {:?}",
        d.output()
    );
    d.send(&format!("join {}", a.addr));
    d.wait_for("uses a group key and this client has none", 10 * S);
    // A learns why only when D's hello left before D read A's opening frame and closed the
    // link: a race on loopback (seen once in a CI run, where D closed first and A's handshake
    // just saw the stream end). Either way D is not linked, which is asserted below; the
    // transport could make it deterministic by letting a refusing keyless dialler flush its
    // hello first.
    let a_told = a.expect("the peer has no group key", 5 * S).is_ok();

    let st = a.ask("status", S);
    assert_eq!(refused_counts(&st).0, if a_told { 2 } else { 1 }, "{st:?}");
    // Only the keyed peer is linked.
    let conns = a.ask("connections", S);
    assert!(conns.iter().any(|l| l.contains(&b.addr)), "{conns:?}");
    assert!(
        !conns
            .iter()
            .any(|l| l.contains(&c.addr) || l.contains(&d.addr)),
        "{conns:?}"
    );
}

#[test]
fn a_legacy_command_without_the_group_key_is_refused_and_playback_is_unchanged() {
    let dir = tempfile_dir("legacy-key");
    let (_server, port) = server(&dir);
    let [sa, _, _] = specs();
    let mut a = client_with_env(
        &dir,
        port,
        &sa,
        Transport::Grpc,
        &[("MUSIC262_GROUP_KEY", GROUP_KEY)],
    );
    a.send("play 1");
    a.wait_for("loaded", 30 * S);
    std::thread::sleep(S);
    let before = a.ask("status", S / 2);
    assert_eq!(
        status_state(&before).as_deref(),
        Some("playing"),
        "{before:?}"
    );

    // No token, and the key itself in place of its token: refused, nothing changes.
    for token in [None, Some(GROUP_KEY)] {
        let err = music262::fleet::send_legacy_command(&a.addr, "stop", 0, token).unwrap_err();
        assert!(err.starts_with("Unauthenticated:"), "{err}");
        assert!(err.contains("music262-auth"), "{err}");
    }
    std::thread::sleep(S / 2);
    let after = a.ask("status", S / 2);
    assert_eq!(
        status_state(&after).as_deref(),
        Some("playing"),
        "{after:?}"
    );
    assert!(
        status_frame(&after) > status_frame(&before),
        "still advancing: {before:?} then {after:?}"
    );
    assert_eq!(refused_counts(&after).2, 2, "{after:?}");

    // With the token the same command is obeyed.
    let token = music262_proto_token(GROUP_KEY);
    music262::fleet::send_legacy_command(&a.addr, "stop", 0, Some(&token)).unwrap();
    std::thread::sleep(S);
    let st = a.ask("status", S / 2);
    assert_eq!(status_state(&st).as_deref(), Some("stopped"), "{st:?}");
}

/// The legacy-call token of a group key, as a script computes it (the formula of
/// `docs/security.md`): hex of HMAC-SHA256(HMAC-SHA256("music262 group key v1", key),
/// "music262 legacy calls v1").
fn music262_proto_token(key: &str) -> String {
    music262::fleet::legacy_token(key).expect("a valid key")
}

#[test]
fn a_bad_group_key_link_limit_or_device_option_stops_the_client_with_one_line() {
    for (args, env, want) in [
        (
            vec![],
            Some("short"),
            "error: --group-key / MUSIC262_GROUP_KEY: the group key is too short: 5 bytes \
             (at least 12; use a random one)",
        ),
        (
            vec!["--group-key", "tiny"],
            None,
            "error: --group-key / MUSIC262_GROUP_KEY: the group key is too short: 4 bytes \
             (at least 12; use a random one)",
        ),
        (
            vec!["--max-links", "0"],
            None,
            "error: --max-links must be at least 1",
        ),
        (
            vec!["--sink", "null", "--device-buffer-ms", "40"],
            None,
            "error: --device-buffer-ms is for --sink device, not null",
        ),
        (
            vec!["--sink", "wav:/nonexistent/x.wav", "--audio-nice", "-5"],
            None,
            "error: --audio-nice is for --sink device, not wav:/nonexistent/x.wav",
        ),
    ] {
        let mut cmd = std::process::Command::new(binary("music_client"));
        cmd.args(["--p2p-port", &free_port().to_string(), "--log-file", "-"])
            .args(&args)
            .env_remove("MUSIC262_GROUP_KEY")
            .env("XDG_CONFIG_HOME", "/nonexistent")
            .stdin(std::process::Stdio::null());
        if let Some(k) = env {
            cmd.env("MUSIC262_GROUP_KEY", k);
        }
        let out = cmd.output().expect("music_client runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.lines().any(|l| l == want),
            "{args:?}: want `{want}` in {stderr}"
        );
    }
}

#[test]
fn forged_and_replayed_frames_from_a_keyed_peer_are_refused_counted_logged_and_change_nothing() {
    use sync_core::{GroupState, GroupTime, Hello, Message, Mode, NodeId, StateVersion};
    let dir = tempfile_dir("forged");
    let (_server, port) = server(&dir);
    let [sa, _, _] = specs();
    let mut a = client_with_env(
        &dir,
        port,
        &sa,
        Transport::Grpc,
        &[("MUSIC262_GROUP_KEY", GROUP_KEY)],
    );
    a.send("play 1");
    a.wait_for("loaded", 30 * S);
    std::thread::sleep(S);
    let before = a.ask("status", S / 2);
    assert_eq!(
        status_state(&before).as_deref(),
        Some("playing"),
        "{before:?}"
    );

    // A peer that passed the handshake: its sealed hello is taken.
    let mut raw = music262::fleet::RawKeyedPeer::connect(&a.addr, GROUP_KEY).unwrap();
    raw.send_sealed(&Message::Hello(Hello {
        node_id: NodeId(0xfe),
        protocol_version: sync_core::PROTOCOL_VERSION,
        listen_addr: None,
        name: None,
    }))
    .unwrap();
    a.wait_for("connected to peer", 10 * S);
    // A forged stop (a tag that is not its own), then the hello replayed.
    raw.send_forged(&Message::State(GroupState {
        version: StateVersion::new(1_000_000, NodeId(0xfe)),
        song: None,
        mode: Mode::Stopped { at: GroupTime(0) },
        timebase: 0,
        queue: Default::default(),
    }))
    .unwrap();
    raw.replay(2).unwrap();
    std::thread::sleep(S);

    let after = a.ask("status", S / 2);
    assert_eq!(
        status_state(&after).as_deref(),
        Some("playing"),
        "{after:?}"
    );
    assert!(
        status_frame(&after) > status_frame(&before),
        "still advancing: {before:?} then {after:?}"
    );
    assert_eq!(refused_counts(&after), (0, 2, 0), "{after:?}");
    let log = std::fs::read_to_string(dir.join("a.log")).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("frame refused") && l.contains("fails authentication")),
        "the forged frame is logged"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("frame refused") && l.contains("(replay)")),
        "the replay is logged"
    );
}
