//! What the client says on its console: each line printed above the prompt, the last ones kept
//! for the web page, and, while a command clicked on the page runs, collected to answer the
//! page with.

use std::collections::VecDeque;

use crate::console::Printer;

/// Console lines kept for the web page.
const RECENT_LEN: usize = 30;

/// The console's output, as the loop writes it.
pub struct Transcript {
    printer: Printer,
    /// Whether recent lines are kept (only with a web page).
    keep_recent: bool,
    /// Recent console lines, oldest first.
    recent: VecDeque<String>,
    /// While a page's command runs: what it printed, to answer the page with.
    capture: Option<Vec<String>>,
}

impl Transcript {
    /// Prints through `printer`; keeps recent lines when there is a web page to show them.
    pub fn new(printer: Printer, keep_recent: bool) -> Self {
        Transcript {
            printer,
            keep_recent,
            recent: VecDeque::new(),
            capture: None,
        }
    }

    /// Prints one or more lines (and keeps them for the page and the answer to its command).
    pub fn say(&mut self, text: impl AsRef<str>) {
        let text = text.as_ref();
        if let Some(lines) = self.capture.as_mut() {
            lines.push(text.to_string());
        }
        if self.keep_recent {
            self.recent.extend(text.lines().map(str::to_string));
            while self.recent.len() > RECENT_LEN {
                self.recent.pop_front();
            }
        }
        self.printer.println(text);
    }

    /// Prints without keeping the line anywhere (the echo of a page's command).
    pub fn echo(&self, text: impl AsRef<str>) {
        self.printer.println(text);
    }

    /// Starts collecting what is said, for the answer to a page's command.
    pub fn begin_capture(&mut self) {
        self.capture = Some(Vec::new());
    }

    /// Stops collecting; returns what was said since [`Transcript::begin_capture`].
    pub fn end_capture(&mut self) -> Vec<String> {
        self.capture.take().unwrap_or_default()
    }

    /// The recent lines, oldest first (empty without a page).
    pub fn recent(&self) -> &VecDeque<String> {
        &self.recent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_command_is_answered_with_what_was_said_while_it_ran() {
        let mut t = Transcript::new(Printer::stdout(), true);
        t.say("before");
        t.begin_capture();
        t.say("one\ntwo");
        t.say("pause at 0:09.253 on 3 rooms in 20 ms");
        assert_eq!(
            t.end_capture(),
            ["one\ntwo", "pause at 0:09.253 on 3 rooms in 20 ms"]
        );
        t.say("after");
        assert!(t.end_capture().is_empty());
        assert_eq!(
            t.recent(),
            &[
                "before",
                "one",
                "two",
                "pause at 0:09.253 on 3 rooms in 20 ms",
                "after"
            ]
        );
    }

    #[test]
    fn only_the_last_lines_are_kept_and_only_with_a_page() {
        let mut with_page = Transcript::new(Printer::stdout(), true);
        let mut without = Transcript::new(Printer::stdout(), false);
        for i in 0..RECENT_LEN + 5 {
            with_page.say(format!("line {i}"));
            without.say(format!("line {i}"));
        }
        assert_eq!(with_page.recent().len(), RECENT_LEN);
        assert_eq!(
            with_page.recent().front().map(String::as_str),
            Some("line 5")
        );
        assert!(without.recent().is_empty());
    }
}
