//! End-to-end test of a pause measured on the sound, not on the held frame: three music
//! clients on loopback with skewed clocks (offsets of seconds, drifts of ±200 ppm), the pause
//! typed at the far end of a chain, and the instant each one's output stopped advancing (from
//! its trace, interpolated between position lines) compared across them. The held frame is the
//! same everywhere by construction (every peer reads it from the same state); the instants
//! are what a listener hears.
//!
//! The bound is issue 31's (100 µs with skewed clocks); the measured spread is printed (2.4 µs
//! on a machine shared with five builds, load average 12, when the test was written).

mod e2e;

use e2e::*;
use music262::fleet::pause_instant_ns;

#[test]
fn a_pause_stops_the_sound_at_the_same_instant_on_every_client() {
    let dir = tempfile_dir("pause-sound");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    join(&mut b, &mut a);
    join(&mut c, &mut b);

    a.send("play sample_song.wav");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded sample_song.wav", 30 * S);
    }
    std::thread::sleep(8 * S);
    assert_in_sync(&[&a, &b, &c], 3, 1_000.0);
    let before = [&a, &b, &c]
        .iter()
        .map(|x| last_instant(&read_trace(&x.trace)))
        .max()
        .expect("three traces");

    c.send("pause");
    a.wait_for("pause sample_song.wav at", 5 * S);
    std::thread::sleep(2 * S);
    let stopped: Vec<(String, u64)> = [&a, &b, &c]
        .iter()
        .map(|x| {
            let trace = read_trace(&x.trace);
            let at = pause_instant_ns(&trace, before)
                .unwrap_or_else(|| panic!("{}: no pause in the trace after {before}", x.name));
            (x.name.clone(), at)
        })
        .collect();
    let lo = stopped.iter().map(|s| s.1).min().expect("three");
    let hi = stopped.iter().map(|s| s.1).max().expect("three");
    let spread_us = (hi - lo) as f64 / 1e3;
    eprintln!("sound stopped at {stopped:?}: spread {spread_us:.1} us");
    assert!(
        spread_us <= 100.0,
        "the sound stopped {spread_us:.1} us apart: {stopped:?}"
    );
    // And it stopped after the pause was typed, within the lead and a slow machine's delays.
    assert!(lo > before && lo - before < 3_000_000_000, "{stopped:?}");
}
