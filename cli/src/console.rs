//! The command console: line editing and history on a terminal, plain lines otherwise (so that
//! scripts and tests can drive the program through a pipe), and a printer that writes above the
//! prompt instead of through it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustyline::ExternalPrinter;
use tokio::sync::mpsc;

/// What the console read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A line (trimmed).
    Line(String),
    /// End of input (Ctrl-D, or the pipe closed).
    Eof,
    /// Ctrl-C at the prompt.
    Interrupted,
}

enum Sink {
    Stdout,
    External(Box<dyn ExternalPrinter + Send>),
}

/// Moves to the line above the prompt (the status line) and clears it: rustyline's external
/// printer starts each message at the first column of the prompt's first row.
const OVER_STATUS: &str = "\x1b[A\r\x1b[K";

/// Where lines go, and what the line just above the prompt holds.
struct Screen {
    sink: Sink,
    /// The status line (a progress bar) drawn just above the prompt, redrawn below each line
    /// printed while it lasts.
    status: Option<String>,
    /// The line just above the prompt is a status that ended: the next line printed replaces it.
    ended: bool,
}

impl Screen {
    fn write(&mut self, text: String) {
        match &mut self.sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Sink::External(p) => {
                if p.print(text.clone()).is_err() {
                    print!("{text}");
                }
            }
        }
    }
}

/// Prints whole lines without breaking the prompt, and on a terminal a status line (a progress
/// bar) kept just above the prompt. Cheap to clone.
#[derive(Clone)]
pub struct Printer {
    screen: Arc<Mutex<Screen>>,
}

impl std::fmt::Debug for Printer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Printer")
    }
}

impl Printer {
    /// A printer to standard output.
    pub fn stdout() -> Self {
        Printer {
            screen: Arc::new(Mutex::new(Screen {
                sink: Sink::Stdout,
                status: None,
                ended: false,
            })),
        }
    }

    /// Whether a status line can be drawn (the console edits lines on a terminal).
    pub fn has_status_line(&self) -> bool {
        matches!(
            self.screen.lock().expect("printer lock").sink,
            Sink::External(_)
        )
    }

    /// Prints `text` (one or more lines), above the status line if one is drawn.
    pub fn println(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        let mut screen = self.screen.lock().expect("printer lock");
        let out = match (&screen.status, screen.ended) {
            (Some(status), _) => format!("{OVER_STATUS}{text}\n{status}\n"),
            (None, true) => format!("{OVER_STATUS}{text}\n"),
            (None, false) => format!("{text}\n"),
        };
        screen.ended = false;
        screen.write(out);
    }

    /// Draws `line` as the status line just above the prompt, replacing the previous one; only
    /// on a terminal (elsewhere nothing is drawn).
    pub fn status(&self, line: impl Into<String>) {
        let line = line.into();
        let mut screen = self.screen.lock().expect("printer lock");
        if !matches!(screen.sink, Sink::External(_)) {
            return;
        }
        let out = if screen.status.is_some() || screen.ended {
            format!("{OVER_STATUS}{line}\n")
        } else {
            format!("{line}\n")
        };
        screen.ended = false;
        screen.status = Some(line);
        screen.write(out);
    }

    /// The status line ends: the next line printed takes its place.
    pub fn end_status(&self) {
        let mut screen = self.screen.lock().expect("printer lock");
        if screen.status.take().is_some() {
            screen.ended = true;
        }
    }

    /// A line was typed: it now stands between any status line and the prompt, so the next
    /// status is drawn afresh below it.
    fn typed(&self) {
        let mut screen = self.screen.lock().expect("printer lock");
        screen.status = None;
        screen.ended = false;
    }
}

/// A running console: lines arrive on `input`; print through `printer`.
pub struct Console {
    /// Lines read.
    pub input: mpsc::UnboundedReceiver<Input>,
    /// Where output goes.
    pub printer: Printer,
    /// Whether stdin is a terminal.
    pub interactive: bool,
}

/// Starts reading standard input on a thread of its own.
pub fn start(prompt: &str, history: Option<PathBuf>) -> Console {
    let (tx, rx) = mpsc::unbounded_channel();
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let printer = Printer::stdout();
    if interactive {
        let prompt = prompt.to_string();
        let (ptx, prx) = std::sync::mpsc::channel();
        let typed = printer.clone();
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || edit_lines(&prompt, history, tx, ptx, &typed))
            .expect("spawn the console thread");
        if let Ok(Some(external)) = prx.recv() {
            printer.screen.lock().expect("printer lock").sink = Sink::External(external);
        }
    } else {
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || plain_lines(tx))
            .expect("spawn the console thread");
    }
    Console {
        input: rx,
        printer,
        interactive,
    }
}

type PrinterHandoff = std::sync::mpsc::Sender<Option<Box<dyn ExternalPrinter + Send>>>;

fn edit_lines(
    prompt: &str,
    history: Option<PathBuf>,
    tx: mpsc::UnboundedSender<Input>,
    printer: PrinterHandoff,
    screen: &Printer,
) {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(e) => e,
        Err(_) => {
            let _ = printer.send(None);
            return plain_lines(tx);
        }
    };
    let external = editor
        .create_external_printer()
        .ok()
        .map(|p| Box::new(p) as Box<dyn ExternalPrinter + Send>);
    let _ = printer.send(external);
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        let read = editor.readline(prompt);
        screen.typed();
        match read {
            Ok(line) => {
                let line = line.trim().to_string();
                if !line.is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    if let Some(h) = &history {
                        let _ = editor.save_history(h);
                    }
                }
                if tx.send(Input::Line(line)).is_err() {
                    return;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => {
                if tx.send(Input::Interrupted).is_err() {
                    return;
                }
            }
            Err(_) => {
                let _ = tx.send(Input::Eof);
                return;
            }
        }
    }
}

fn plain_lines(tx: mpsc::UnboundedSender<Input>) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        match line {
            Ok(l) => {
                if tx.send(Input::Line(l.trim().to_string())).is_err() {
                    return;
                }
            }
            Err(_) => break,
        }
    }
    let _ = tx.send(Input::Eof);
}
