//! End-to-end tests of what the music client tells its user, with real `music_server` and
//! `music_client` processes driven through standard input and their output read line by line:
//! answers in the user's units, start-up errors before the banner, logs that say which run they
//! belong to, and the line a typed command gets on its own console.

mod e2e;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::*;

/// A client started with exactly `args` (a null sink and an absent server unless `args` name
/// them; its temporary folder is `dir`), without waiting for anything.
fn bare_client(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(binary("music_client"));
    if !args.contains(&"--sink") {
        cmd.args(["--sink", "null"]);
    }
    if !args.contains(&"--server") {
        cmd.args(["--server", &format!("127.0.0.1:{}", free_port())]);
    }
    cmd.args(["--bind", "127.0.0.1", "--no-discovery"])
        .args(args)
        .env("TMPDIR", dir)
        .env("XDG_STATE_HOME", dir)
        .env("XDG_CONFIG_HOME", dir)
        .env("RUST_LOG", "info");
    Proc::spawn(name, cmd).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn seek_volume_channel_and_latency_answer_in_the_users_words() {
    let dir = tempfile_dir("console-words");
    let (_server, port) = server(&dir);
    let [sa, ..] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    a.send("play sample_song.wav");
    a.wait_for("loaded sample_song.wav", 30 * S);
    std::thread::sleep(S / 2);

    assert_eq!(
        answer(&mut a, "seek 99:00"),
        ["position 99:00.000 is beyond the end of the song (0:45.000)"]
    );
    assert_eq!(answer(&mut a, "volume"), ["volume 100%"]);
    assert_eq!(answer(&mut a, "volume 40"), ["volume 40%"]);
    assert_eq!(answer(&mut a, "volume"), ["volume 40%"]);
    assert_eq!(answer(&mut a, "channel"), ["playing channel: both"]);
    assert_eq!(answer(&mut a, "channel left"), ["playing channel: left"]);
    assert_eq!(answer(&mut a, "channel"), ["playing channel: left"]);
    assert_eq!(
        answer(&mut a, "latency 40"),
        ["output latency 40.0 ms: this client starts that much early to be heard in sync"]
    );
    assert_eq!(
        answer(&mut a, "latency 0"),
        [
            "output latency 0.0 ms: no extra delay; this client plays on the group's instant as \
             its sound card reports it"
        ]
    );
}

/// Asserts that a log holds `runs` start lines of `program`, each with the version, the last
/// with `arg`, and no colour code anywhere.
fn assert_log_starts_runs(text: &str, program: &str, arg: &str, runs: usize) {
    let starts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(&format!("{program} starting")))
        .collect();
    assert_eq!(starts.len(), runs, "start lines of {program}: {text}");
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    for l in &starts {
        assert!(l.contains(&version), "no {version} in {l}");
    }
    let last = starts.last().expect("a start line");
    assert!(
        last.contains(&format!("\"{arg}\"")),
        "no argument {arg} in {last}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in the log: {text:?}"
    );
}

#[test]
fn logs_start_with_the_version_and_arguments_and_carry_no_colour_codes() {
    let dir = tempfile_dir("console-logs");
    // The server logging to a standard error that is not a terminal.
    let port = free_port();
    let mut cmd = Command::new(binary("music_server"));
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--log-file", "-"]);
    let mut server = Proc::spawn("server", cmd).unwrap();
    server.wait_for("music server listening", 60 * S);
    assert_log_starts_runs(&server.output().join("\n"), "music_server", "--log-file", 1);

    // A client's log file, appended to by two runs: one start line each.
    let log = dir.join("a.log");
    let log_arg = log.to_string_lossy().into_owned();
    for run in 1..=2 {
        let p2p = free_port().to_string();
        let mut c = bare_client(&dir, "a", &["--p2p-port", &p2p, "--log-file", &log_arg]);
        c.wait_for("type `help` for commands", 30 * S);
        c.send("quit");
        assert!(c.wait_exit(10 * S).is_some(), "the client did not quit");
        let text = std::fs::read_to_string(&log).unwrap();
        assert_log_starts_runs(&text, "music_client", &p2p, run);
    }
}

#[test]
fn a_client_on_a_fallback_peer_port_writes_a_log_file_of_its_own() {
    let dir = tempfile_dir("console-fallback-log");
    let wanted = free_port();
    let p2p = wanted.to_string();
    let mut first = bare_client(&dir, "first", &["--p2p-port", &p2p]);
    first.wait_for("type `help` for commands", 30 * S);
    let mut second = bare_client(&dir, "second", &["--p2p-port", &p2p]);
    let moved = second.wait_for("is in use; listening on", 30 * S);
    second.wait_for("type `help` for commands", 30 * S);
    let taken: u16 = moved
        .rsplit("listening on ")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {moved}"));
    assert_ne!(taken, wanted);
    let logs = dir.join("music262");
    for (port, printed) in [(wanted, &first), (taken, &second)] {
        let file = logs.join(format!("client-{port}.log"));
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_log_starts_runs(&text, "music_client", &p2p, 1);
        let said = format!("log: {}", file.display());
        assert!(
            printed.output().iter().any(|l| l == &said),
            "{} does not name its log {said}: {:?}",
            printed.name,
            printed.output()
        );
    }
}

/// Two listeners on consecutive ports of loopback.
fn two_busy_ports() -> (TcpListener, TcpListener) {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if let Some(next) = port.checked_add(1)
            && let Ok(b) = TcpListener::bind(("127.0.0.1", next))
        {
            return (a, b);
        }
    }
    panic!("no two consecutive free ports on loopback");
}

/// Runs a client that must fail at start; returns all it printed (asserting a failed exit).
fn failed_start(dir: &Path, args: &[&str]) -> Vec<String> {
    let p2p = free_port().to_string();
    let mut all = vec!["--p2p-port", p2p.as_str()];
    all.extend_from_slice(args);
    let mut c = bare_client(dir, "failing", &all);
    let status = c.wait_exit(30 * S).expect("the client exits");
    assert!(!status.success(), "exit status {status} for {args:?}");
    // The reader threads may still be taking the last lines.
    std::thread::sleep(Duration::from_millis(200));
    c.output()
}

#[test]
fn start_up_errors_are_one_line_before_the_banner_and_fail_the_process() {
    let dir = tempfile_dir("console-start-errors");
    let out = failed_start(&dir, &["--sink", "wav:/nonexistent-music262/out.wav"]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(
        out[0].starts_with("error: ") && out[0].contains("/nonexistent-music262/out.wav"),
        "{out:?}"
    );

    // A busy web port whose next port is busy too: the suggestion is a port free now.
    let (busy, next) = two_busy_ports();
    let web = busy.local_addr().unwrap();
    let out = failed_start(&dir, &["--web", &web.to_string()]);
    assert_eq!(out.len(), 1, "{out:?}");
    let line = &out[0];
    assert!(
        line.starts_with(&format!(
            "error: --web {web}: the port is in use; pick another"
        )),
        "{line}"
    );
    let port = line
        .split("e.g. --web 127.0.0.1:")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no port suggested: {line}"));
    assert_ne!(
        port,
        next.local_addr().unwrap().port(),
        "a busy port: {line}"
    );
    assert!(
        TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "suggested port {port} is not free: {line}"
    );
}

#[test]
fn a_web_page_bound_to_every_address_prints_addresses_that_open_it() {
    let dir = tempfile_dir("console-web-any");
    let web_port = free_port();
    let p2p = free_port().to_string();
    let web = format!("0.0.0.0:{web_port}");
    let mut c = bare_client(&dir, "web", &["--p2p-port", &p2p, "--web", &web]);
    let line = c.wait_for("web page: ", 30 * S);
    assert!(
        line.ends_with("(listening on every address of this machine)"),
        "{line}"
    );
    let urls: Vec<&str> = line
        .split_whitespace()
        .filter(|w| w.starts_with("http://"))
        .collect();
    let loopback = format!("http://127.0.0.1:{web_port}/");
    assert_eq!(urls.first().copied(), Some(loopback.as_str()), "{line}");
    for url in urls {
        let host = url.trim_start_matches("http://").trim_end_matches('/');
        let mut s = std::net::TcpStream::connect(host).unwrap_or_else(|e| panic!("{url}: {e}"));
        s.set_read_timeout(Some(5 * S)).unwrap();
        write!(
            s,
            "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 200"), "{url}: {reply:.80}");
    }
}

/// Whether `line` is `{prefix}{m:ss.mmm}{rest} in {N} ms`.
fn says_at(line: &str, prefix: &str, rest: &str) -> bool {
    let Some(after) = line.strip_prefix(prefix) else {
        return false;
    };
    let (time, tail) = after.split_at(after.find(' ').unwrap_or(after.len()));
    let clock = time.len() >= 8
        && time.split([':', '.']).count() == 3
        && time
            .split([':', '.'])
            .all(|p| p.chars().all(|c| c.is_ascii_digit()));
    let Some(wait) = tail
        .strip_prefix(rest)
        .and_then(|t| t.strip_prefix(" in "))
        .and_then(|t| t.strip_suffix(" ms"))
    else {
        return false;
    };
    clock && wait.parse::<u32>().is_ok_and(|ms| ms < 1_000)
}

/// Posts a command line to a client's web page; returns its JSON answer.
fn post_command(web: &str, line: &str) -> serde_json::Value {
    let body = serde_json::json!({ "line": line }).to_string();
    let mut s = std::net::TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(15 * S)).unwrap();
    write!(
        s,
        "POST /command HTTP/1.1\r\nHost: {web}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let json = reply.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {reply}"))
}

#[test]
fn a_command_is_answered_where_it_was_typed_with_what_happens_where_and_when() {
    let dir = tempfile_dir("console-answers");
    let (_server, port) = server(&dir);
    let [sa, ..] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    let web = format!("127.0.0.1:{}", free_port());
    let p2p = free_port();
    let server_addr = format!("127.0.0.1:{port}");
    let mut b = bare_client(
        &dir,
        "b",
        &[
            "--server",
            &server_addr,
            "--p2p-port",
            &p2p.to_string(),
            "--web",
            &web,
        ],
    );
    b.wait_for("type `help` for commands", 30 * S);
    b.send(&format!("join {}", a.addr));
    b.wait_for(&format!("connected to peer {}", a.addr), 20 * S);
    a.wait_for(&format!("connected to peer 127.0.0.1:{p2p}"), 20 * S);

    a.send("play sample_song.wav");
    let play = a.wait_for("play sample_song.wav from", 10 * S);
    assert!(
        play.starts_with(
            "play sample_song.wav from 0:00.000 on 2 rooms once every room has loaded it (at \
             the latest in "
        ),
        "{play}"
    );
    a.wait_for("loaded sample_song.wav", 30 * S);
    b.wait_for("loaded sample_song.wav", 30 * S);
    std::thread::sleep(2 * S);

    let pause = answer(&mut a, "pause");
    assert_eq!(pause.len(), 1, "{pause:?}");
    assert!(says_at(&pause[0], "pause at ", " on 2 rooms"), "{pause:?}");
    // The other client's notice is as before.
    b.wait_for("pause sample_song.wav at", 5 * S);

    let seek = answer(&mut a, "seek 0:10");
    assert_eq!(seek.len(), 1, "{seek:?}");
    assert!(
        says_at(&seek[0], "seek to ", " (paused) on 2 rooms"),
        "{seek:?}"
    );
    assert!(seek[0].starts_with("seek to 0:10.000 "), "{seek:?}");

    // Typed on the page: the page's answer is the line the console shows.
    let reply = post_command(&web, "resume");
    assert_eq!(reply["ok"], true, "{reply}");
    let text = reply["output"].as_str().unwrap_or_default().to_string();
    assert!(says_at(&text, "resume from ", " on 2 rooms"), "{reply}");
    assert!(text.starts_with("resume from 0:10.000 "), "{reply}");
    b.wait_for("(web page) resume", 5 * S);
    b.wait_for(&text, 5 * S);
    // The other client's notice of the resume, before the next command's answer is read.
    a.wait_for("play sample_song.wav from 0:10.000", 5 * S);

    let stop = answer(&mut a, "stop");
    assert_eq!(stop.len(), 1, "{stop:?}");
    let wait = stop[0]
        .strip_prefix("stop on 2 rooms in ")
        .unwrap_or_default();
    assert!(
        wait.strip_suffix(" ms")
            .is_some_and(|ms| ms.parse::<u32>().is_ok()),
        "{stop:?}"
    );
}

#[test]
fn a_missing_sound_card_is_one_fallback_line_without_alsas_library_lines() {
    let dir = tempfile_dir("console-no-card");
    // No card by that name on any machine, and no sound server behind ALSA's default device.
    let mut cmd = Command::new(binary("music_client"));
    cmd.args(["--sink", "device", "--bind", "127.0.0.1"])
        .args(["--server", &format!("127.0.0.1:{}", free_port())])
        .args(["--p2p-port", &free_port().to_string()])
        .env("TMPDIR", dir.as_ref() as &Path)
        .env("ALSA_CARD", "music262-no-card")
        .env("PULSE_SERVER", "unix:/nonexistent-music262/pulse")
        .env("RUST_LOG", "info");
    let mut c = Proc::spawn("no-card", cmd).unwrap();
    c.wait_for("type `help` for commands", 30 * S);
    c.send("quit");
    assert!(c.wait_exit(10 * S).is_some(), "the client did not quit");
    std::thread::sleep(Duration::from_millis(200));
    let out = c.output();
    let noise: Vec<&String> = out.iter().filter(|l| l.starts_with("ALSA lib ")).collect();
    assert!(noise.is_empty(), "ALSA's own lines: {noise:?}");
    let fallback: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("no sound device ("))
        .collect();
    assert_eq!(fallback.len(), 1, "{out:?}");
    assert!(
        fallback[0].ends_with("); playing to the null sink instead")
            && fallback[0].contains("; ALSA: "),
        "{fallback:?}"
    );
}

#[test]
fn the_web_pages_peers_and_join_are_answered_with_the_consoles_text() {
    let dir = tempfile_dir("console-web-peers");
    let (_server, port) = server(&dir);
    let [sa, ..] = specs();
    let mut a = client(&dir, port, &sa, Transport::Grpc);
    a.wait_for("registered as joinable", 20 * S);
    let web = format!("127.0.0.1:{}", free_port());
    let p2p = free_port().to_string();
    let server_addr = format!("127.0.0.1:{port}");
    let mut b = bare_client(
        &dir,
        "b",
        &["--server", &server_addr, "--p2p-port", &p2p, "--web", &web],
    );
    b.wait_for("registered as joinable", 20 * S);

    let reply = post_command(&web, "peers");
    assert_eq!(reply["ok"], true, "{reply}");
    let text = reply["output"].as_str().unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("clients registered with the server (join any of them):"),
        "{reply}"
    );
    assert!(lines.contains(&format!("  {}", a.addr).as_str()), "{reply}");
    assert!(
        lines.contains(&format!("  127.0.0.1:{p2p}  (this client)").as_str()),
        "{reply}"
    );
    // The console printed the same list.
    b.wait_for("clients registered with the server", 5 * S);

    let reply = post_command(&web, &format!("join {}", a.addr));
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["output"].as_str(),
        Some(format!("joining {}...", a.addr).as_str()),
        "{reply}"
    );
    b.wait_for(&format!("connected to peer {}", a.addr), 20 * S);
}
