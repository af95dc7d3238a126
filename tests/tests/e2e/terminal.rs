//! A process on a pseudo-terminal (util-linux `script` makes it and relays it), and the screen
//! a terminal would show of it: enough of a VT100 (cursor moves, line and screen erases,
//! scrolling, the cursor-position query) to see what a user sees after line editing and
//! progress bars have drawn over each other.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Rows and columns of the emulated terminal.
pub const ROWS: usize = 24;
/// Columns of the emulated terminal.
pub const COLS: usize = 100;

/// What a terminal shows: its rows of characters and the cursor.
#[derive(Clone, Debug)]
pub struct Screen {
    rows: Vec<Vec<char>>,
    row: usize,
    col: usize,
    /// An escape sequence being read (after ESC).
    escape: Option<String>,
    /// Bytes of a UTF-8 character being read.
    partial: Vec<u8>,
    /// Answers the program asked for (the cursor position), to send back.
    replies: Vec<u8>,
}

impl Default for Screen {
    fn default() -> Self {
        Screen {
            rows: vec![vec![' '; COLS]; ROWS],
            row: 0,
            col: 0,
            escape: None,
            partial: Vec::new(),
            replies: Vec::new(),
        }
    }
}

impl Screen {
    /// The text of every row, trailing blanks cut.
    pub fn lines(&self) -> Vec<String> {
        self.rows
            .iter()
            .map(|r| r.iter().collect::<String>().trim_end().to_string())
            .collect()
    }

    /// The row the cursor is on.
    pub fn cursor_row(&self) -> usize {
        self.row
    }

    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.partial.push(b);
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    let c = s.chars().next().expect("one character");
                    self.partial.clear();
                    self.char(c);
                }
                Err(e) if e.error_len().is_some() => self.partial.clear(),
                Err(_) => {}
            }
        }
    }

    fn char(&mut self, c: char) {
        if let Some(seq) = self.escape.as_mut() {
            seq.push(c);
            let done = match seq.as_bytes() {
                [b'['] => false,
                [b'[', .., last] => (0x40..=0x7e).contains(last),
                _ => true,
            };
            if done {
                let seq = self.escape.take().expect("in an escape");
                self.escape_sequence(&seq);
            }
            return;
        }
        match c {
            '\x1b' => self.escape = Some(String::new()),
            '\r' => self.col = 0,
            '\n' => self.line_feed(),
            '\x08' => self.col = self.col.saturating_sub(1),
            c if c < ' ' => {}
            c => {
                if self.col >= COLS {
                    self.col = 0;
                    self.line_feed();
                }
                self.rows[self.row][self.col] = c;
                self.col += 1;
            }
        }
    }

    fn line_feed(&mut self) {
        if self.row + 1 == ROWS {
            self.rows.remove(0);
            self.rows.push(vec![' '; COLS]);
        } else {
            self.row += 1;
        }
    }

    fn escape_sequence(&mut self, seq: &str) {
        let Some(body) = seq.strip_prefix('[') else {
            return;
        };
        let (params, last) = body.split_at(body.len() - 1);
        let params = params.trim_start_matches('?');
        let nums: Vec<usize> = params.split(';').map(|p| p.parse().unwrap_or(0)).collect();
        let n = nums.first().copied().unwrap_or(0).max(1);
        match last {
            "A" => self.row = self.row.saturating_sub(n),
            "B" => self.row = (self.row + n).min(ROWS - 1),
            "C" => self.col = (self.col + n).min(COLS - 1),
            "D" => self.col = self.col.saturating_sub(n),
            "G" => self.col = (n - 1).min(COLS - 1),
            "H" => {
                self.row = (n - 1).min(ROWS - 1);
                self.col = nums.get(1).copied().unwrap_or(1).max(1) - 1;
            }
            "K" => {
                let row = &mut self.rows[self.row];
                let range = match nums.first().copied().unwrap_or(0) {
                    0 => self.col.min(COLS)..COLS,
                    1 => 0..(self.col + 1).min(COLS),
                    _ => 0..COLS,
                };
                row[range].fill(' ');
            }
            "J" => {
                let from = match nums.first().copied().unwrap_or(0) {
                    0 => self.row + 1,
                    _ => 0,
                };
                if nums.first().copied().unwrap_or(0) == 0 {
                    let col = self.col.min(COLS);
                    self.rows[self.row][col..].fill(' ');
                }
                for r in &mut self.rows[from..] {
                    r.fill(' ');
                }
            }
            "n" if params == "6" => {
                let reply = format!("\x1b[{};{}R", self.row + 1, self.col + 1);
                self.replies.extend_from_slice(reply.as_bytes());
            }
            _ => {}
        }
    }
}

/// A process whose standard streams are a pseudo-terminal, and the screen it draws.
pub struct Terminal {
    child: Child,
    /// The terminal's keyboard (also where answers to the program's queries go).
    input: Arc<Mutex<ChildStdin>>,
    screen: Arc<Mutex<Screen>>,
    /// When the program last wrote anything.
    last_output: Arc<Mutex<Instant>>,
    /// Everything it wrote.
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    /// Starts `cmd` (its program, arguments and added environment) on a new pseudo-terminal of
    /// [`ROWS`] × [`COLS`].
    pub fn spawn(cmd: Command) -> Terminal {
        let mut line = format!("stty rows {ROWS} cols {COLS} && exec");
        for word in std::iter::once(cmd.get_program()).chain(cmd.get_args()) {
            let word = word.to_str().expect("UTF-8 arguments");
            line.push_str(&format!(" '{}'", word.replace('\'', "'\\''")));
        }
        let mut script = Command::new("script");
        script
            .args([
                "--quiet",
                "--flush",
                "--return",
                "--command",
                &line,
                "/dev/null",
            ])
            .env("TERM", "xterm")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (key, value) in cmd.get_envs() {
            match value {
                Some(v) => script.env(key, v),
                None => script.env_remove(key),
            };
        }
        let mut child = script.spawn().expect("run script (util-linux)");
        let input = Arc::new(Mutex::new(child.stdin.take().expect("piped")));
        let mut output = child.stdout.take().expect("piped");
        let screen = Arc::new(Mutex::new(Screen::default()));
        let last_output = Arc::new(Mutex::new(Instant::now()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (s, last, all, answer) = (
            screen.clone(),
            last_output.clone(),
            raw.clone(),
            input.clone(),
        );
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = output.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let replies = {
                    let mut screen = s.lock().expect("screen");
                    screen.feed(&buf[..n]);
                    std::mem::take(&mut screen.replies)
                };
                all.lock().expect("raw").extend_from_slice(&buf[..n]);
                *last.lock().expect("instant") = Instant::now();
                if !replies.is_empty() {
                    let mut to = answer.lock().expect("input");
                    let _ = to.write_all(&replies);
                    let _ = to.flush();
                }
            }
        });
        Terminal {
            child,
            input,
            screen,
            last_output,
            raw,
        }
    }

    /// Types `text` (a `\r` is the Enter key).
    pub fn type_text(&mut self, text: &str) {
        let mut input = self.input.lock().expect("input");
        input.write_all(text.as_bytes()).expect("type");
        input.flush().expect("type");
    }

    /// Everything the program wrote so far, escape sequences included.
    pub fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().expect("raw")).into_owned()
    }

    /// The screen once the program has written nothing for `quiet` (at most `timeout` later).
    pub fn settled(&self, quiet: Duration, timeout: Duration) -> Screen {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline
            && self.last_output.lock().expect("instant").elapsed() < quiet
        {
            std::thread::sleep(quiet / 4);
        }
        self.screen.lock().expect("screen").clone()
    }

    /// Waits until a settled screen shows `needle` on some row.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Screen {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.settled(Duration::from_millis(30), Duration::from_millis(500));
            if screen.lines().iter().any(|l| l.contains(needle)) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "nothing like `{needle}` on the screen within {timeout:?}:\n{}",
                screen.lines().join("\n")
            );
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_screen_follows_cursor_moves_erases_and_scrolling() {
    let mut s = Screen::default();
    s.feed(b"one\r\ntwo\r\n> ab");
    s.feed(b"\r\x1b[K\x1b[A\r\x1b[Kbar\r\n> ab");
    assert_eq!(&s.lines()[..3], ["one", "bar", "> ab"]);
    assert_eq!(s.cursor_row(), 2);
    s.feed("\x1b[6n".as_bytes());
    assert_eq!(s.replies, b"\x1b[3;5R");
    for i in 0..ROWS {
        s.feed(format!("\r\nline {i}").as_bytes());
    }
    assert_eq!(s.lines()[ROWS - 1], format!("line {}", ROWS - 1));
    assert_eq!(s.cursor_row(), ROWS - 1);
}
