//! End-to-end tests of the music client on a terminal (a pseudo-terminal and the screen it
//! would show): a download's progress is a status line above the prompt that never covers the
//! prompt or what is being typed, a spinner until the size is known.

mod e2e;
#[path = "e2e/terminal.rs"]
mod terminal;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::*;
use terminal::Terminal;

/// Bytes per second the proxy lets through from the server.
const THROTTLE: usize = 2_000_000;

/// A TCP proxy on loopback to `port` whose answers arrive at [`THROTTLE`]: a download of a song
/// takes seconds, long enough to watch its progress. Returns the proxy's port.
fn slow_proxy(port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (mut up_from, mut up_to) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut up_from, &mut up_to);
            });
            let (mut down_from, mut down_to) = (server, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = down_from.read(&mut buf) {
                    if n == 0 || down_to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_secs_f64(n as f64 / THROTTLE as f64));
                }
            });
        }
    });
    proxy
}

#[test]
fn a_download_is_a_status_line_above_the_prompt_that_leaves_typed_input_alone() {
    let dir = tempfile_dir("console-terminal");
    let (_server, port) = server(&dir);
    let proxy = slow_proxy(port);
    let mut cmd = Command::new(binary("music_client"));
    cmd.args(["--sink", "null", "--bind", "127.0.0.1"])
        .args(["--server", &format!("127.0.0.1:{proxy}")])
        .args(["--p2p-port", &free_port().to_string()])
        .env("TMPDIR", &*dir)
        .env("RUST_LOG", "info");
    let mut term = Terminal::spawn(cmd);
    term.wait_for("type `help` for commands", 30 * S);
    term.wait_for("music262>", 10 * S);

    term.type_text("play sample_song.wav\r");
    term.wait_for("loading sample_song.wav ", 30 * S);
    // Typed while the song downloads, not sent yet.
    term.type_text("stat");

    let mut bars = 0;
    let deadline = Instant::now() + 60 * S;
    loop {
        let screen = term.settled(Duration::from_millis(40), S);
        let lines = screen.lines();
        let at = screen.cursor_row();
        let shown = || lines.join("\n");
        assert!(
            !lines.iter().any(|l| l.contains(" 0 B/")),
            "an empty bar:\n{}",
            shown()
        );
        assert_eq!(
            lines[at],
            "music262> stat",
            "the prompt row does not show the typed input:\n{}",
            shown()
        );
        if at > 0 && lines[at - 1].starts_with("loading sample_song.wav [") {
            bars += 1;
        }
        if lines
            .iter()
            .any(|l| l.starts_with("loaded sample_song.wav"))
        {
            // The finished bar gave its row to the line that says so.
            assert!(
                lines[at - 1].starts_with("loaded sample_song.wav ("),
                "{}",
                shown()
            );
            assert!(
                !lines
                    .iter()
                    .any(|l| l.starts_with("loading sample_song.wav [")),
                "a finished bar left on the screen:\n{}",
                shown()
            );
            break;
        }
        assert!(Instant::now() < deadline, "no download end:\n{}", shown());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(bars >= 2, "the bar was seen above the prompt {bars} times");

    // The first status frame, drawn before the server said the size, was a spinner.
    let raw = term.raw();
    let first = raw
        .split("loading sample_song.wav ")
        .nth(1)
        .and_then(|f| f.split(['\r', '\n', '\x1b']).next())
        .unwrap_or_default();
    assert!(
        first.ends_with("waiting for the server") && !first.contains('['),
        "first frame: {first:?}"
    );

    // The typed input is still whole: finishing it runs the command.
    term.type_text("us\r");
    term.wait_for("security: ", 10 * S);
}
