//! End-to-end tests of what the music client says on its own, with real `music_server` and
//! `music_client` processes and their output read line by line: a song that cannot be fetched
//! is reported once and not "played", a group that waits says for whom, no negative times,
//! and notices that are news.

mod e2e;

use std::time::Duration;

use e2e::*;

/// The non-empty lines a typed command gets within half a second.
fn answer(c: &mut Client, line: &str) -> Vec<String> {
    c.ask(line, S / 2)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

/// The lines printed during the next `wait`.
fn printed_during(c: &mut Client, wait: Duration) -> Vec<String> {
    c.ask("", wait)
        .into_iter()
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[test]
fn a_song_that_cannot_be_fetched_is_reported_once_and_not_played() {
    let dir = tempfile_dir("console-unfetchable");
    let (mut server, port) = server(&dir);
    let [sa, ..] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    // The playlist is known (so that `play` can name the song); then the server goes away.
    a.send("playlist");
    a.wait_for("sample_song.wav", 10 * S);
    server.kill();
    // The registration's renewal notices it first, in a line of its own.
    a.wait_for("is unreachable", 10 * S);

    let play = answer(&mut a, "play sample_song.wav");
    assert_eq!(
        play,
        [
            "play sample_song.wav from 0:00.000 on this room only once every room has loaded it \
             (at the latest in 3.0 s)",
            "loading sample_song.wav"
        ]
    );
    // Five tries over about four seconds, then one line with the reason.
    let failed = a.wait_for("cannot play sample_song.wav", 15 * S);
    let unreachable =
        format!("cannot play sample_song.wav: music server at 127.0.0.1:{port} is unreachable (");
    assert!(failed.starts_with(&unreachable), "{failed}");
    assert!(failed.contains("(gave up after 5 tries in "), "{failed}");
    let after = printed_during(&mut a, 3 * S);
    assert!(
        after
            .iter()
            .all(|l| !l.contains("sample_song.wav") && !l.contains("finished")),
        "said again: {after:?}"
    );

    let status = answer(&mut a, "status");
    assert_eq!(
        status_state(&status).as_deref(),
        Some("silent"),
        "{status:?}"
    );
    assert!(
        status.iter().any(|l| l.starts_with(&format!(
            "this room cannot play sample_song.wav: music server at 127.0.0.1:{port}"
        ))),
        "{status:?}"
    );

    // A stop while the download waits for its next try ends the tries, silently.
    a.send("stop");
    a.wait_for("stop on this room only", 5 * S);
    let replay = answer(&mut a, "play sample_song.wav");
    assert_eq!(replay.len(), 2, "{replay:?}");
    assert_eq!(replay[1], "loading sample_song.wav", "{replay:?}");
    let stop = answer(&mut a, "stop");
    assert_eq!(stop.len(), 1, "{stop:?}");
    assert!(
        stop[0].starts_with("stop on this room only in "),
        "{stop:?}"
    );
    let after = printed_during(&mut a, 6 * S);
    assert!(
        after.iter().all(|l| !l.contains("sample_song.wav")),
        "tries went on after the stop: {after:?}"
    );
}
