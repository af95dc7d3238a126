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

/// Prints whole lines without breaking the prompt. Cheap to clone.
#[derive(Clone)]
pub struct Printer {
    sink: Arc<Mutex<Sink>>,
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
            sink: Arc::new(Mutex::new(Sink::Stdout)),
        }
    }

    /// Prints `text` (one or more lines).
    pub fn println(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        let mut sink = self.sink.lock().expect("printer lock");
        match &mut *sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            Sink::External(p) => {
                if p.print(format!("{text}\n")).is_err() {
                    println!("{text}");
                }
            }
        }
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
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || edit_lines(&prompt, history, tx, ptx))
            .expect("spawn the console thread");
        if let Ok(Some(external)) = prx.recv() {
            *printer.sink.lock().expect("printer lock") = Sink::External(external);
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
        match editor.readline(prompt) {
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
