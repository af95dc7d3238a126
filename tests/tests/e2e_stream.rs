//! End-to-end: streamed playback. A real `music_server` serves a long FLAC (made in the test
//! with sox); real `music_client`s play it while it downloads: the first sound comes within a
//! second of `play` on both and they pause on the same frame; a client's resident memory stays
//! small however long the song; a file whose bytes no longer match the listed hash stops with
//! one line.

mod e2e;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;
use player::SystemClock;

/// Seconds of the long song: 10 minutes, 212 MB as WAV, 423 MB decoded as the client used to
/// hold it.
const LONG_S: u32 = 600;

/// A stereo 44.1 kHz FLAC of `seconds` of two tones, written by sox into `audio/name`.
fn write_flac(audio: &Path, name: &str, seconds: u32, tone: u32) {
    std::fs::create_dir_all(audio).unwrap();
    let status = Command::new("sox")
        .args(["-n", "-r", "44100", "-c", "2", "-b", "16"])
        .arg(audio.join(name))
        .args(["synth", &seconds.to_string(), "sine", &tone.to_string()])
        .args(["sine", &(tone * 3 / 2).to_string(), "gain", "-6"])
        .status()
        .unwrap_or_else(|e| panic!("sox: {e}; install sox (scripts/test does)"));
    assert!(status.success(), "sox: {status}");
}

/// A music server on a free port over `audio`.
fn stream_server(dir: &Path, audio: &Path) -> (Proc, u16) {
    let port = free_port();
    let mut cmd = server_command(dir, port, "server", "127.0.0.1");
    cmd.arg("--audio-dir").arg(audio);
    (start_server("server", cmd), port)
}

/// The instant (host monotonic) of the first trace line after `since` where the client plays
/// a frame past the first, waiting up to `timeout` for it.
fn first_sound_after(c: &Client, since: u64, timeout: Duration) -> Option<u64> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        let heard = read_trace(&c.trace)
            .into_iter()
            .find(|p| p.host_ns > since && p.playing && p.frame > 0.0)
            .map(|p| p.host_ns);
        if heard.is_some() {
            return heard;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A field of `/proc/<pid>/status` in kB (`VmRSS`, `VmHWM`).
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[test]
fn a_long_flac_sounds_within_a_second_on_two_clients_and_they_pause_on_one_frame() {
    let dir = tempfile_dir("stream-start");
    let audio = dir.join("music");
    write_flac(&audio, "long.flac", LONG_S, 220);
    let (_server, port) = stream_server(&dir, &audio);
    let [sa, sb, _] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    join(&mut b, &mut a);

    let sent = SystemClock::monotonic_ns();
    b.send("play long.flac");
    for c in [&a, &b] {
        let heard =
            first_sound_after(c, sent, 10 * S).unwrap_or_else(|| panic!("{} never played", c.name));
        let latency_ms = (heard - sent) as f64 / 1e6;
        // Loopback, two clients on a machine shared with builds: the whole download alone
        // took 4.6 s for a song of twice this length.
        assert!(
            latency_ms < 1000.0,
            "{}: first sound {latency_ms:.0} ms after play",
            c.name
        );
    }
    std::thread::sleep(3 * S);
    a.send("pause");
    b.wait_for("pause long.flac at", 5 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut a, &mut b], "paused");
    assert_eq!(frames[0], frames[1], "paused frames {frames:?}");
    assert!(
        frames[0] > 3 * 44_100,
        "it played three seconds before the pause: {frames:?}"
    );
}

#[test]
fn a_client_playing_a_long_flac_stays_small() {
    let dir = tempfile_dir("stream-memory");
    let audio = dir.join("music");
    write_flac(&audio, "long.flac", LONG_S, 330);
    let (_server, port) = stream_server(&dir, &audio);
    let [sa, ..] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    a.send("play long.flac");
    a.wait_for("loaded long.flac", 60 * S);
    // Seeks re-position the decoder; the window stays the same size.
    a.send("seek 5:00");
    std::thread::sleep(2 * S);
    a.send("seek 9:00");
    std::thread::sleep(2 * S);
    let pid = pid_of(&a);
    let (rss, peak) = (proc_kb(pid, "VmRSS"), proc_kb(pid, "VmHWM"));
    // The whole song decoded would be 423 MB; the download itself is on disk.
    assert!(peak < 100_000, "peak resident {peak} kB (now {rss} kB)");
    let status = a.ask("status", S / 2).join("\n");
    assert!(status.contains("playing"), "{status}");
}

#[test]
fn a_song_whose_bytes_do_not_match_the_listed_hash_stops_with_one_line() {
    let dir = tempfile_dir("stream-hash");
    let audio = dir.join("music");
    write_flac(&audio, "tune.flac", 120, 440);
    let (_server, port) = stream_server(&dir, &audio);
    // Listed with its hash at the server's start; replaced by other music afterwards.
    write_flac(&audio, "tune.flac", 120, 550);
    let [sa, ..] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    a.send("play tune.flac");
    let said = a.wait_for("hash mismatch", 30 * S);
    assert!(said.contains("cannot play tune.flac"), "{said}");
    std::thread::sleep(2 * S);
    let mismatches = a
        .output()
        .iter()
        .filter(|l| l.contains("hash mismatch"))
        .count();
    assert_eq!(mismatches, 1, "{:?}", a.output());
    let status = a.ask("status", S / 2).join("\n");
    assert!(!status.contains("state: playing"), "{status}");
}
