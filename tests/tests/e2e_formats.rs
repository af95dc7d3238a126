//! End-to-end: a real music library. A real `music_server` serves a folder whose subfolder
//! holds a FLAC, an MP3 and an Ogg Vorbis file, tagged, made in the test with Debian's
//! encoders (`flac`, `lame`, `oggenc`; `scripts/test` installs them), plus a file it cannot
//! play; two real `music_clients` list the songs with their tags, find them by words, play the
//! FLAC named by a word of its title and pause on the same frame.

mod e2e;

use std::path::Path;
use std::process::Command;

use e2e::*;

const RATE: u32 = 44_100;
const SECONDS: u32 = 12;

/// A 12-second stereo WAV of two gliding tones over a little noise.
fn write_source(path: &Path) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut x: u32 = 262;
    for i in 0..RATE * SECONDS {
        let t = f64::from(i) / f64::from(RATE);
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let noise = (f64::from(x) / f64::from(u32::MAX) - 0.5) * 0.02;
        let l = 0.3 * (2.0 * std::f64::consts::PI * (220.0 + 20.0 * t) * t).sin() + noise;
        let r = 0.3 * (2.0 * std::f64::consts::PI * (330.0 + 10.0 * t) * t).sin() - noise;
        w.write_sample((l * 32_767.0) as i16).unwrap();
        w.write_sample((r * 32_767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Runs an encoder; a missing one fails the test with what to install.
fn encode(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| {
            panic!("{program}: {e}; install flac, lame and vorbis-tools (scripts/test does)")
        });
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// The audio folder: `album/` with the three tagged songs, and a `notes.txt`.
fn write_library(audio: &Path, scratch: &Path) {
    let album = audio.join("album");
    std::fs::create_dir_all(&album).unwrap();
    let wav = scratch.join("source.wav");
    write_source(&wav);
    let wav = wav.to_str().unwrap();
    let flac = album.join("01 cobalt.flac");
    encode(
        "flac",
        &[
            "--silent",
            "--force",
            "-T",
            "TITLE=Cobalt Sweep",
            "-T",
            "ARTIST=The Test Tones",
            "-T",
            "ALBUM=Fixtures",
            "-T",
            "TRACKNUMBER=1",
            "-o",
            flac.to_str().unwrap(),
            wav,
        ],
    );
    let mp3 = album.join("02 crimson.mp3");
    encode(
        "lame",
        &[
            "--quiet",
            "--tt",
            "Crimson Glide",
            "--ta",
            "The Test Tones",
            "--tl",
            "Fixtures",
            "--tn",
            "2",
            wav,
            mp3.to_str().unwrap(),
        ],
    );
    let ogg = album.join("03 jade.ogg");
    encode(
        "oggenc",
        &[
            "--quiet",
            "-t",
            "Jade Rise",
            "-a",
            "Other Band",
            "-l",
            "Elsewhere",
            "-o",
            ogg.to_str().unwrap(),
            wav,
        ],
    );
    std::fs::write(audio.join("notes.txt"), "not a song").unwrap();
}

/// A music server over `audio` on a free port; returns it, its port, and its console lines
/// up to "listening".
fn library_server(dir: &Path, audio: &Path) -> (Proc, u16, String) {
    let port = free_port();
    let mut cmd = Command::new(binary("music_server"));
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--audio-dir")
        .arg(audio)
        .arg("--log-file")
        .arg(dir.join("server.log"));
    let mut p = Proc::spawn("server", cmd).unwrap_or_else(|e| panic!("{e}"));
    let said = p.wait_for("music server listening", 60 * S);
    (p, port, said)
}

#[test]
fn a_flac_mp3_and_ogg_library_is_listed_found_by_words_and_played_in_sync() {
    let dir = tempfile_dir("formats");
    let audio = dir.join("music");
    write_library(&audio, &dir);
    let (server, port, _) = library_server(&dir, &audio);
    let startup = server.output().join("\n");
    assert!(
        startup.contains("skipped 1: 1 not audio"),
        "server start-up: {startup}"
    );

    let [sa, sb, _] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    join(&mut b, &mut a);

    // The playlist: title, artist and length, with the file's path in the folder.
    let list = a.ask("playlist", 2 * S);
    for want in [
        "  1. Cobalt Sweep - The Test Tones  [album/01 cobalt.flac]  0:12",
        "  2. Crimson Glide - The Test Tones  [album/02 crimson.mp3]  0:12",
        "  3. Jade Rise - Other Band  [album/03 jade.ogg]  0:12",
    ] {
        assert!(
            list.iter().any(|l| l.contains(want)),
            "`{want}` in {list:?}"
        );
    }

    // Search by artist, and a word that names nothing.
    let found = a.ask("search test tones", S);
    assert!(
        found
            .iter()
            .any(|l| l.contains("2 song(s) match `test tones`:")),
        "{found:?}"
    );
    let none = a.ask("search polka", S);
    assert!(
        none.iter().any(|l| l.contains("no song matches `polka`")),
        "{none:?}"
    );
    // Several matches are listed, not played.
    let several = a.ask("play tones", S);
    assert!(
        several
            .iter()
            .any(|l| l.contains("2 songs match `tones`; play one by its number:")),
        "{several:?}"
    );

    // The FLAC, by a word of its title, typed on B: both load it and play it in sync.
    b.send("play cobalt");
    for x in [&mut a, &mut b] {
        x.wait_for("loaded album/01 cobalt.flac", 30 * S);
    }
    std::thread::sleep(3 * S);
    a.send("pause");
    b.wait_for("pause album/01 cobalt.flac at", 5 * S);
    std::thread::sleep(S);
    let frames = frames_in_state(&mut [&mut a, &mut b], "paused");
    assert_eq!(frames[0], frames[1], "paused frames {frames:?}");
    assert!(frames[0] > 0, "it played before the pause");

    // The MP3 and the Ogg file decode and play as well, by file name and by number.
    a.send("play 02 crimson.mp3");
    b.wait_for("loaded album/02 crimson.mp3", 30 * S);
    a.send("play 3");
    b.wait_for("loaded album/03 jade.ogg", 30 * S);
}
