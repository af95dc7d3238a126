//! A download's progress: on a terminal, a status line kept just above the prompt (a spinner
//! until the server has said the size, then a bar), redrawn a few times a second; elsewhere a
//! line at each quarter.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::HumanBytes;

use crate::console::Printer;

/// How often the status line is redrawn.
const REDRAW: Duration = Duration::from_millis(100);

/// The longest song name shown in the status line (which must fit on one terminal row).
const NAME_CHARS: usize = 20;

/// Width of the bar, in characters.
const BAR_CHARS: usize = 16;

/// The spinner's frames, one per redraw.
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Bytes so far and the size the server announced (0 until it has), shared with the redraws.
#[derive(Default)]
struct Counts {
    got: AtomicU64,
    total: AtomicU64,
}

/// The progress of one download, shown while it lives (dropping it ends the status line, also
/// when the download is aborted).
pub struct Progress {
    printer: Printer,
    name: String,
    counts: Arc<Counts>,
    /// The task redrawing the status line (on a terminal only).
    redraw: Option<tokio::task::AbortHandle>,
    /// Off a terminal: the last quarter said.
    last_pct: u64,
}

impl Progress {
    /// Starts showing the download of `name`: on a terminal (`interactive` and a console that
    /// edits lines) a spinner at once, from a task of the current runtime.
    pub fn start(printer: &Printer, name: &str, interactive: bool) -> Progress {
        let counts = Arc::new(Counts::default());
        let redraw = (interactive && printer.has_status_line()).then(|| {
            let (printer, name, counts) = (printer.clone(), name.to_string(), counts.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                for tick in 0usize.. {
                    let got = counts.got.load(Ordering::Relaxed);
                    let total = counts.total.load(Ordering::Relaxed);
                    printer.status(frame(&name, got, total, started.elapsed(), tick));
                    tokio::time::sleep(REDRAW).await;
                }
            })
            .abort_handle()
        });
        Progress {
            printer: printer.clone(),
            name: name.to_string(),
            counts,
            redraw,
            last_pct: 0,
        }
    }

    /// `got` bytes of `total` (0: not known yet) have arrived.
    pub fn update(&mut self, got: u64, total: u64) {
        self.counts.got.store(got, Ordering::Relaxed);
        self.counts.total.store(total, Ordering::Relaxed);
        if self.redraw.is_none()
            && let Some(pct) = (got * 100).checked_div(total)
            && pct >= self.last_pct + 25
            && pct < 100
        {
            self.last_pct = pct - pct % 25;
            self.printer
                .println(format!("loading {}: {}%", self.name, self.last_pct));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(redraw) = self.redraw.take() {
            redraw.abort();
            self.printer.end_status();
        }
    }
}

/// The status line after `elapsed`, at redraw number `tick`: a spinner while the size is not
/// known, then a bar with the bytes and the rate.
fn frame(name: &str, got: u64, total: u64, elapsed: Duration, tick: usize) -> String {
    let name = short_name(name);
    if total == 0 {
        let spin = SPINNER[tick % SPINNER.len()];
        return if got == 0 {
            format!("loading {name} {spin} waiting for the server")
        } else {
            format!("loading {name} {spin} {}", HumanBytes(got))
        };
    }
    let filled = ((got.min(total) as u128 * BAR_CHARS as u128) / total as u128) as usize;
    let mut bar = "=".repeat(filled);
    if filled < BAR_CHARS {
        bar.push('>');
        bar.push_str(&" ".repeat(BAR_CHARS - filled - 1));
    }
    let rate = (got as f64 / elapsed.as_secs_f64().max(1e-3)) as u64;
    format!(
        "loading {name} [{bar}] {}/{} {}/s",
        HumanBytes(got),
        HumanBytes(total),
        HumanBytes(rate)
    )
}

/// `name`, cut to [`NAME_CHARS`] with an ellipsis.
fn short_name(name: &str) -> String {
    if name.chars().count() <= NAME_CHARS {
        return name.to_string();
    }
    let mut short: String = name.chars().take(NAME_CHARS - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spinner_shows_until_the_size_is_known_then_a_bar() {
        let s = Duration::from_secs(1);
        assert_eq!(
            frame("a.wav", 0, 0, s, 0),
            "loading a.wav ⠋ waiting for the server"
        );
        assert_eq!(frame("a.wav", 2048, 0, s, 1), "loading a.wav ⠙ 2.00 KiB");
        assert_eq!(
            frame("a.wav", 1 << 20, 4 << 20, s, 2),
            format!(
                "loading a.wav [{}>{}] 1.00 MiB/4.00 MiB 1.00 MiB/s",
                "=".repeat(4),
                " ".repeat(11)
            )
        );
        assert_eq!(
            frame("a.wav", 4 << 20, 4 << 20, 2 * s, 3),
            format!(
                "loading a.wav [{}] 4.00 MiB/4.00 MiB 2.00 MiB/s",
                "=".repeat(16)
            )
        );
    }

    #[test]
    fn a_long_name_is_cut_so_the_line_fits_a_terminal_row() {
        let name = "a very long song name that goes on and on.wav";
        let line = frame(name, 3 << 20, 5 << 20, Duration::from_secs(1), 0);
        assert!(line.starts_with("loading a very long song na… ["), "{line}");
        assert!(line.chars().count() < 80, "{line}");
    }
}
