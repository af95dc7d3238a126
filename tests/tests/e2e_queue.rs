//! End-to-end: the group's queue with real processes. A real `music_server` serves three short
//! WAV songs (one at another sample rate); three `music_client`s with skewed clocks share a
//! queue of them, built with `add` on one client and started with `play` on another; every
//! client goes from one song to the next by itself at the same instant, and `next` typed on two
//! clients at once leaves them all on the same song.

mod e2e;

use std::path::Path;
use std::process::Command;

use e2e::*;

/// The three songs: name, sample rate, seconds.
const SONGS: [(&str, u32, u32); 3] = [
    ("q1.wav", 48_000, 3),
    ("q2.wav", 44_100, 3),
    ("q3.wav", 48_000, 12),
];

/// A stereo WAV of a tone, `seconds` long at `rate`.
fn write_song(path: &Path, rate: u32, seconds: u32, hz: f64) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..rate * seconds {
        let t = f64::from(i) / f64::from(rate);
        let v = (0.3 * (2.0 * std::f64::consts::PI * hz * t).sin() * 32_767.0) as i16;
        w.write_sample(v).unwrap();
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
}

fn queue_server(dir: &Path) -> (Proc, u16) {
    let audio = dir.join("music");
    std::fs::create_dir_all(&audio).unwrap();
    for (i, (name, rate, seconds)) in SONGS.iter().enumerate() {
        write_song(&audio.join(name), *rate, *seconds, 220.0 * (i + 1) as f64);
    }
    let port = free_port();
    let mut cmd = Command::new(binary("music_server"));
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--audio-dir")
        .arg(&audio)
        .arg("--log-file")
        .arg(dir.join("server.log"));
    let mut p = Proc::spawn("server", cmd).unwrap_or_else(|e| panic!("{e}"));
    p.wait_for("music server listening", 60 * S);
    (p, port)
}

/// The host instants at which a client's trace starts each new song, extrapolated to the
/// song's frame 0 from its first sounding point (a song starts where the frame falls back or
/// the sample rate changes). Points past frame 0 count whatever the state word says: it reads
/// `loading` while the next song downloads ahead of the end.
fn song_starts(trace: &[TracePoint]) -> Vec<(u32, f64)> {
    let mut starts = Vec::new();
    let mut last: Option<&TracePoint> = None;
    for p in trace.iter().filter(|p| p.frame > 0.0) {
        let new_song = last.is_none_or(|l| p.sample_rate != l.sample_rate || p.frame < l.frame);
        if new_song {
            let start_ns = p.host_ns as f64 - p.frame / f64::from(p.sample_rate) * 1e9;
            starts.push((p.sample_rate, start_ns));
        }
        last = Some(p);
    }
    starts
}

/// Asks `queue` every half second until the current entry's line starts with `line`.
fn wait_current(c: &mut Client, line: &str, seconds: u64) {
    for _ in 0..seconds * 2 {
        if answer(c, "queue").iter().any(|l| l.starts_with(line)) {
            return;
        }
    }
    panic!("`{line}` never current: {:?}", answer(c, "queue"));
}

#[test]
fn a_shared_queue_advances_on_every_client_at_the_same_instant() {
    let dir = tempfile_dir("queue");
    let (_server, port) = queue_server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    join(&mut b, &mut a);
    join(&mut c, &mut a);
    std::thread::sleep(2 * S);

    let added = answer(&mut a, "add q1.wav, q2.wav, q3.wav");
    assert_eq!(added, ["queued q1.wav, q2.wav, q3.wav as entries 1-3 of 3"]);
    // Bad input is one line and changes nothing.
    assert_eq!(
        answer(&mut a, "remove 9"),
        ["there is no entry 9: the queue has 3 entries"]
    );
    std::thread::sleep(S);
    let table = answer(&mut c, "queue");
    assert_eq!(
        table,
        [
            "    1. q1.wav  (0:03.000)",
            "    2. q2.wav  (0:03.000)",
            "    3. q3.wav  (0:12.000)",
            "repeat off, shuffle off",
        ],
        "the queue as client c holds it"
    );

    b.send("play");
    for x in [&mut a, &mut b, &mut c] {
        x.wait_for("loaded q1.wav", 30 * S);
    }
    // q1 and q2 end by themselves; every client moves on without a command.
    for x in [&mut a, &mut b, &mut c] {
        wait_current(x, ">   3. q3.wav", 30);
    }
    std::thread::sleep(S);

    // `next` typed on two clients at once: the group moves by one entry, to one song (repeat
    // one, so that no song moves on by itself meanwhile).
    assert_eq!(answer(&mut b, "repeat one"), ["repeat one"]);
    a.send("previous");
    for x in [&mut a, &mut b, &mut c] {
        wait_current(x, ">   2. q2.wav", 10);
    }
    std::thread::sleep(S);
    a.send("next");
    c.send("next");
    std::thread::sleep(3 * S);
    for (who, x) in [("a", &mut a), ("b", &mut b), ("c", &mut c)] {
        let q = answer(x, "queue");
        assert!(
            q.iter().any(|l| l.starts_with(">   3. q3.wav")),
            "{who}: {q:?}"
        );
    }

    // Each song starts at the same instant on every client, where the one before it ends (read
    // at the end, once the traces are written out).
    std::thread::sleep(2 * S);
    let starts: Vec<Vec<(u32, f64)>> = [&a, &b, &c]
        .iter()
        .map(|x| song_starts(&read_trace(&x.trace)))
        .collect();
    for (who, s) in ["a", "b", "c"].iter().zip(&starts) {
        let rates: Vec<u32> = s.iter().take(3).map(|(r, _)| *r).collect();
        assert_eq!(
            rates,
            [48_000, 44_100, 48_000],
            "songs heard on {who}: {s:?}"
        );
        for k in 1..3 {
            let gap_ms = (s[k].1 - s[k - 1].1) / 1e6 - f64::from(SONGS[k - 1].2) * 1e3;
            eprintln!(
                "{who}: song {} starts {gap_ms:+.3} ms after song {k} ends",
                k + 1
            );
            assert!(gap_ms.abs() < 2.0, "{who}: timeline gap {gap_ms:.3} ms");
        }
    }
    for (i, s) in starts.iter().enumerate().skip(1) {
        for k in 1..3 {
            let apart_us = (s[k].1 - starts[0][k].1) / 1e3;
            eprintln!("song {}: client {i} vs a {apart_us:+.0} us", k + 1);
            assert!(
                apart_us.abs() < 1_000.0,
                "song {}: {apart_us:.0} us apart",
                k + 1
            );
        }
    }
}
