//! Fault tests with real processes on loopback (gRPC): a peer killed mid-song and started
//! again, the music server stopped and started again, a peer cut off from the group for
//! seconds (its process stopped: every link goes silent at once) and a peer whose sync clock
//! steps forward. In each, the live peers keep playing in sync, every peer converges to one
//! group state, and the returning peer rejoins the timeline.
//!
//! Bounds are loose (1 ms) on purpose: these prove behaviour on a shared 2-core machine, not
//! accuracy (the benchmarks measure that).

mod e2e;

use e2e::*;

/// C of [`specs`]: offset -2 s, drift -200 ppm.
fn spec_c() -> ClientSpec {
    let [_, _, c] = specs();
    c
}

/// Three skewed clients on a server (C as `sc`, with `c_env`), all linked, playing `song`
/// (loaded everywhere).
fn playing_trio(
    dir: &std::path::Path,
    port: u16,
    song: &str,
    sc: ClientSpec,
    c_env: &[(&str, &str)],
    transport: Transport,
) -> [Client; 3] {
    let [sa, sb, _] = specs();
    let mut a = client(dir, port, &sa, transport);
    let mut b = client(dir, port, &sb, transport);
    let mut c = client_with_env(dir, port, &sc, transport, c_env);
    join(&mut b, &mut a);
    join(&mut c, &mut a);
    join(&mut c, &mut b);
    a.send(&format!("play {song}"));
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded ", 30 * S);
    }
    [a, b, c]
}

#[test]
fn a_peer_killed_mid_song_and_restarted_on_its_port_rejoins_the_timeline_in_sync() {
    let dir = tempfile_dir("fault-restart");
    let (_server, port) = server(&dir);
    let [mut a, mut b, mut c] = playing_trio(&dir, port, "2", spec_c(), &[], Transport::Grpc);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 2, 1_000.0);

    // kill -9 mid-song: the two others lose it and play on, in sync.
    let c_port = c.port;
    c.kill();
    a.wait_for(&format!("peer {} disconnected", c.addr), 15 * S);
    b.wait_for(&format!("peer {} disconnected", c.addr), 15 * S);
    std::thread::sleep(3 * S);
    assert_in_sync(&[&a, &b], 2, 1_000.0);

    // The same node started again on the same port (a new trace): once joined, it loads the
    // song and plays at the group's position, not from the start.
    let sc = ClientSpec {
        name: "c-again",
        ..specs()[2]
    };
    let mut c = client_on(&dir, port, &sc, Transport::Grpc, &[], c_port);
    join(&mut c, &mut a);
    c.wait_for("loaded noise-groove.wav", 30 * S);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);

    // One state again: a pause typed on the returning peer holds everyone on one frame.
    c.send("pause");
    a.wait_for("pause noise-groove.wav at", 5 * S);
    b.wait_for("pause noise-groove.wav at", 5 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut a, &mut b, &mut c], "paused");
    assert!(
        frames[0] > 48_000 * 10,
        "paused at {frames:?}, not mid-song"
    );
    assert!(
        frames.iter().all(|f| *f == frames[0]),
        "paused frames {frames:?}"
    );
}

#[test]
fn the_server_stopped_and_restarted_on_its_port_is_found_again_and_serves_the_next_song() {
    let dir = tempfile_dir("fault-server");
    let (mut server, port) = server(&dir);
    let [mut a, mut b, mut c] = playing_trio(&dir, port, "1", spec_c(), &[], Transport::Grpc);
    std::thread::sleep(4 * S);

    // The server stops: every client says so once and the song plays on, in sync.
    server.kill();
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("playback goes on, retrying", 15 * S);
    }
    std::thread::sleep(2 * S);
    assert_in_sync(&[&a, &b, &c], 2, 1_000.0);

    // It comes back on the same port: each client registers again by itself.
    let _server = server_on(&dir, port, "server-again");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("reachable; registered as joinable", 20 * S);
    }
    let peers = b.ask("peers", 2 * S);
    for x in [&a, &c] {
        assert!(
            peers.iter().any(|l| l.contains(&x.addr)),
            "{} missing from `peers` after the restart: {peers:?}",
            x.name
        );
    }

    // A song none of them has loaded yet comes from the restarted server, to every peer, and
    // plays in sync.
    c.send("play 2");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded noise-groove.wav", 30 * S);
    }
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);
}

/// C cut off from A and B for 4 s while they pause, then healed (links over `transport`).
#[cfg(target_os = "linux")]
fn partition_case(name: &str, transport: Transport) {
    let dir = tempfile_dir(name);
    let (_server, port) = server(&dir);
    let [mut a, mut b, mut c] = playing_trio(&dir, port, "2", spec_c(), &[], transport);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 2, 1_000.0);

    // SIGSTOP: C neither sends nor reads, on every link, as behind a partition. Four seconds
    // is past the suspect delay (2 s) and short of removal (6 s), so the links survive and the
    // heal goes through them.
    signal(&c, "STOP");
    std::thread::sleep(2 * S);
    assert_in_sync(&[&a, &b], 1, 1_000.0);
    a.send("pause");
    b.wait_for("pause noise-groove.wav at", 5 * S);
    std::thread::sleep(2 * S);
    let held = frames_in_state(&mut [&mut a, &mut b], "paused");
    assert_eq!(held[0], held[1], "paused frames on the live side {held:?}");

    // The heal: C learns the pause it missed (anti-entropy) and holds the same frame, not
    // the one it reached on its own.
    signal(&c, "CONT");
    c.wait_for("pause noise-groove.wav at", 10 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut a, &mut b, &mut c], "paused");
    assert!(
        frames.iter().all(|f| *f == held[0]),
        "paused frames after the heal {frames:?}, live side held {held:?}"
    );

    // And it is on the timeline again: a resume typed on it plays everyone in sync.
    c.send("resume");
    a.wait_for("play noise-groove.wav from", 5 * S);
    b.wait_for("play noise-groove.wav from", 5 * S);
    std::thread::sleep(6 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);
}

#[cfg(target_os = "linux")]
#[test]
fn a_peer_cut_off_for_seconds_misses_a_pause_and_converges_to_it_when_the_partition_heals() {
    partition_case("fault-partition", Transport::Grpc);
}

#[cfg(target_os = "linux")]
#[test]
fn a_quic_peer_cut_off_for_seconds_misses_a_pause_and_converges_to_it_when_the_partition_heals() {
    partition_case("fault-partition-quic", Transport::Quic);
}

/// How a group fared after C's clock stepped: sync error (us) of A against B and of A against
/// C (C's trace put back on the host clock), over the last 3 s.
struct AfterStep {
    ab_p99: f64,
    ac_p99: f64,
    ac_max: f64,
}

/// Three clients playing; C's sync clock (offset -2 s, drift `c_drift_ppm`) steps forward by
/// half a second mid-song; measured 15 s after the step.
fn clock_step_case(name: &str, c_drift_ppm: f64) -> AfterStep {
    const STEP_MS: u64 = 500;
    let dir = tempfile_dir(name);
    let (_server, port) = server(&dir);
    let sc = ClientSpec {
        drift_ppm: c_drift_ppm,
        ..specs()[2]
    };
    // C's clock steps 14 s after it starts: after the song has loaded and settled.
    let step = STEP_MS.to_string();
    let [a, b, mut c] = playing_trio(
        &dir,
        port,
        "2",
        sc,
        &[
            ("MUSIC262_CLOCK_STEP_AT_S", "14"),
            ("MUSIC262_CLOCK_STEP_MS", &step),
        ],
        Transport::Grpc,
    );
    std::thread::sleep(6 * S);
    let log = dir.join("c.log");
    assert!(
        clock_step_instant(&log).is_none(),
        "the clock stepped before the group settled; raise MUSIC262_CLOCK_STEP_AT_S"
    );
    assert_in_sync(&[&a, &b, &c], 2, 1_000.0);

    // Wait for the step, then give the group time to notice and correct.
    let deadline = std::time::Instant::now() + 20 * S;
    let at = loop {
        if let Some(at) = clock_step_instant(&log) {
            break at;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "C's clock never stepped"
        );
        std::thread::sleep(S / 5);
    };
    std::thread::sleep(15 * S);
    let st = c.ask("status", S / 2);
    assert_eq!(status_state(&st).as_deref(), Some("playing"), "c: {st:?}");

    let ta = read_trace(&a.trace);
    let tb = read_trace(&b.trace);
    let tc = unstep_trace(&read_trace(&c.trace), at, STEP_MS * 1_000_000);
    // The traces reach about 12-14 s past the step on a loaded machine (the files are written
    // in blocks and the clients are stopped right after `status`).
    assert!(
        last_instant(&tc) > at + 10_000_000_000,
        "C's trace does not reach 10 s past the step"
    );
    let (_, ab_p99, _) = sync_error_stats(&ta, &tb, 3, "a vs b");
    let (_, ac_p99, ac_max) = sync_error_stats(&ta, &tc, 3, "a vs c (after the step)");
    AfterStep {
        ab_p99,
        ac_p99,
        ac_max,
    }
}

#[test]
fn a_peer_whose_sync_clock_steps_forward_does_not_disturb_the_others() {
    let r = clock_step_case("fault-clock-step-others", 0.0);
    // A and B never saw a fault: still playing in sync with each other, whatever C does.
    assert!(r.ab_p99 < 1_000.0, "a vs b: p99 {:.0} us", r.ab_p99);
}

/// Back on the group's timeline after its clock stepped: within a millisecond of A, not half
/// a second off, and steady over the last three seconds (a peer still slewing at the
/// controller's limit would move by 1.5 ms over them). The clock filter sees three probe
/// samples in a row that its fitted line cannot explain, forgets the samples from before the
/// step and probes quickly again; the node then re-steps its group time (measured: about 1 s
/// after the step, then within 12 us of A). Before that fix, the filter kept the pre-step
/// samples for its whole 300 s span and C stayed 499.9 ms ahead in 2 runs of 5.
#[test]
fn a_peer_whose_sync_clock_steps_half_a_second_forward_comes_back_in_sync() {
    let r = clock_step_case("fault-clock-step", 0.0);
    assert!(
        r.ac_p99 < 1_000.0 && r.ac_max < 2_000.0,
        "a vs c after the step: p99 {:.0} us, max {:.0} us",
        r.ac_p99,
        r.ac_max
    );
}

/// The same step on a peer whose crystal also runs 200 ppm slow: its frequency is fitted
/// afresh from the post-step samples (measured: 320 us off 1.4 s after the step, 10 us after
/// 12 s). Before the fix it drifted away at about 200 us/s after re-stepping, its frequency
/// estimate spoilt by fitting across the step.
#[test]
fn a_drifting_peer_whose_sync_clock_steps_forward_comes_back_in_sync() {
    let r = clock_step_case("fault-clock-step-drift", -200.0);
    assert!(
        r.ac_p99 < 1_000.0 && r.ac_max < 2_000.0,
        "a vs c after the step: p99 {:.0} us, max {:.0} us",
        r.ac_p99,
        r.ac_max
    );
}
