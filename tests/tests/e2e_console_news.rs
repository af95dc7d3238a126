//! End-to-end tests of what the music client says on its own, with real `music_server` and
//! `music_client` processes and their output read line by line: a song that cannot be fetched
//! is reported once and not "played", a group that waits says for whom, no negative times,
//! and notices that are news.

mod e2e;

use std::time::Duration;

use e2e::*;

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

    // Read with waits, not a fixed window: the machine may be loaded.
    let from = a.output().len();
    a.send("play sample_song.wav");
    a.wait_for("loading sample_song.wav", 5 * S);
    assert_eq!(
        a.output()[from..],
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
    a.send("play sample_song.wav");
    a.wait_for("loading sample_song.wav", 5 * S);
    a.send("stop");
    a.wait_for("stop on this room only in ", 5 * S);
    let after = printed_during(&mut a, 6 * S);
    assert!(
        after.iter().all(|l| !l.contains("sample_song.wav")),
        "tries went on after the stop: {after:?}"
    );
}

#[test]
fn a_group_names_the_room_it_waits_for_then_plays_without_it() {
    let dir = tempfile_dir("console-waits");
    let (_server, port) = server(&dir);
    let [sa, sb, _] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    // B's music server does not exist: B cannot load any song.
    let mut b = client(&dir, free_port(), &sb, Transport::Grpc);
    join(&mut b, &mut a);

    a.send("play sample_song.wav");
    a.wait_for(
        "play sample_song.wav from 0:00.000 on 2 rooms once every room",
        5 * S,
    );
    // Said once, half a second into the wait (this room may still be loading too).
    let notice = a.wait_for("waiting for ", 10 * S);
    let waiting = format!("{} to load (", b.addr);
    assert!(
        notice.contains(&waiting) && notice.ends_with(" s of at most 3.0 s)"),
        "{notice}"
    );
    // Asked while the group still waits (the deadline is 2.5 s after the notice), maybe for
    // this room too.
    let status = answer(&mut a, "status");
    assert!(
        status.iter().any(|l| l.starts_with("waiting for ")
            && l.contains(&waiting)
            && l.ends_with(" s of at most 3.0 s)")),
        "{status:?}"
    );
    let without = a.wait_for("playing without", 10 * S);
    assert_eq!(
        without,
        format!(
            "playing without {}: not loaded in time; it joins in sync when it has \
             sample_song.wav",
            b.addr
        )
    );
    // The notice and the `status` answer, nothing more; this room loaded the song meanwhile
    // (before or after the notice, as the machine's load decides).
    let said = a.output();
    assert!(
        said.iter().any(|l| l.starts_with("loaded sample_song.wav")),
        "{said:?}"
    );
    let waits = said.iter().filter(|l| l.starts_with("waiting for")).count();
    assert_eq!(waits, 2, "{said:?}");
    assert_eq!(
        said.iter()
            .filter(|l| l.starts_with("playing without"))
            .count(),
        1
    );
    b.wait_for("cannot play sample_song.wav: music server at", 15 * S);

    // The next play does not wait for the room that could not load.
    assert_eq!(answer(&mut a, "stop").len(), 1);
    a.send("play sample_song.wav");
    std::thread::sleep(S);
    let status = answer(&mut a, "status");
    assert_eq!(
        status_state(&status).as_deref(),
        Some("playing"),
        "{status:?}"
    );
    let after = printed_during(&mut a, 4 * S);
    assert!(
        after
            .iter()
            .all(|l| !l.starts_with("waiting for") && !l.starts_with("playing without")),
        "{after:?}"
    );
}

/// The `in_ms=` values of a log's lines containing `what`.
fn in_ms(log: &std::path::Path, what: &str) -> Vec<f64> {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    text.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| l.split("in_ms=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect()
}

#[test]
fn a_play_that_needs_loading_is_logged_with_no_negative_wait() {
    let dir = tempfile_dir("console-no-negative");
    let (_server, port) = server(&dir);
    let [sa, sb, _] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    join(&mut b, &mut a);
    a.send("play sample_song.wav");
    a.wait_for("loaded sample_song.wav", 30 * S);
    b.wait_for("loaded sample_song.wav", 30 * S);
    std::thread::sleep(S);
    let issued = in_ms(&dir.join("a.log"), "command issued here");
    let received = in_ms(&dir.join("b.log"), "command received");
    // The loading state, waiting at most 3 s; then the start.
    assert!(
        !issued.is_empty() && !received.is_empty(),
        "{issued:?} {received:?}"
    );
    for ms in issued.iter().chain(&received) {
        assert!((0.0..=3_000.0).contains(ms), "{issued:?} {received:?}");
    }
}

/// The lines of `c` since `from` that start with `prefix`.
fn said_since(c: &Client, from: usize, prefix: &str) -> Vec<String> {
    c.output()[from..]
        .iter()
        .filter(|l| l.starts_with(prefix))
        .cloned()
        .collect()
}

#[test]
fn notices_are_news_a_late_joiner_hears_where_the_group_is_and_a_dead_reference_changes_nothing() {
    let dir = tempfile_dir("console-news");
    let (_server, port) = server(&dir);
    let [sa, sb, sc] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let mut b = client(&dir, port, &sb, Transport::Grpc);
    join(&mut b, &mut a);
    a.send("play sample_song.wav");
    b.wait_for("play sample_song.wav from 0:00.000 (loading)", 10 * S);
    b.wait_for("play sample_song.wav from 0:00.000 (by", 30 * S);
    std::thread::sleep(4 * S);

    // A late joiner is told where the group is, once.
    let mut c = client(&dir, port, &sc, Transport::Grpc);
    let from = c.output().len();
    join(&mut c, &mut b);
    c.wait_for("loaded sample_song.wav", 30 * S);
    std::thread::sleep(2 * S);
    let plays = said_since(&c, from, "play sample_song.wav");
    assert_eq!(plays.len(), 1, "{plays:?}");
    assert!(
        !plays[0].starts_with("play sample_song.wav from 0:00.000")
            && !plays[0].starts_with("play sample_song.wav from 0:01.")
            && plays[0].ends_with(&format!("(by {})", a.addr)),
        "{plays:?}"
    );

    // The reference dies: the survivors re-state the state in a new time base, which is no
    // news; playback goes on.
    let (b_from, c_from) = (b.output().len(), c.output().len());
    a.kill();
    b.wait_for(&format!("peer {} disconnected", a.addr), 20 * S);
    std::thread::sleep(4 * S);
    for (who, from) in [(&b, b_from), (&c, c_from)] {
        let notices: Vec<String> = said_since(who, from, "play ")
            .into_iter()
            .chain(said_since(who, from, "stop"))
            .collect();
        assert!(notices.is_empty(), "{}: {notices:?}", who.name);
    }
    let status = answer(&mut c, "status");
    assert_eq!(
        status_state(&status).as_deref(),
        Some("playing"),
        "{status:?}"
    );
}
