//! A live status line under a command's log lines: redrawn in place on a terminal, a plain
//! line now and then when the output is a file or a pipe (as progress bars do).
//!
//! Every line a command prints while the status is shown goes through [`Console::line`], which
//! clears the status, prints the line and draws the status again, so the two never mix.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How often a plain (not a terminal) status line is printed at most.
const PLAIN_EVERY: Duration = Duration::from_secs(1);

/// The console: log lines above, one status line below.
pub struct Console {
    terminal: bool,
    state: Mutex<State>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("terminal", &self.terminal)
            .finish_non_exhaustive()
    }
}

struct State {
    /// Where it all goes.
    out: Box<dyn Write + Send>,
    /// The status drawn now (terminal only).
    shown: Option<String>,
    /// When the last plain status line was printed.
    last_plain: Option<Instant>,
}

impl Console {
    /// A console on stdout, redrawing when stdout is a terminal.
    pub fn stdout() -> Self {
        Self::new(std::io::stdout().is_terminal(), Box::new(std::io::stdout()))
    }

    /// A console on `out` that redraws (`terminal`) or prints plain lines.
    pub fn new(terminal: bool, out: Box<dyn Write + Send>) -> Self {
        Self {
            terminal,
            state: Mutex::new(State {
                out,
                shown: None,
                last_plain: None,
            }),
        }
    }

    /// Prints a log line (above the status on a terminal).
    pub fn line(&self, text: &str) {
        let mut state = self.state.lock();
        let mut out = String::new();
        if self.terminal && state.shown.is_some() {
            out.push_str("\r\x1b[2K");
        }
        out.push_str(text);
        out.push('\n');
        if self.terminal
            && let Some(status) = &state.shown
        {
            out.push_str(status);
        }
        state.write(&out);
    }

    /// Shows `status`: redrawn in place on a terminal; otherwise printed as a line at most
    /// once every second.
    pub fn status(&self, status: &str) {
        let mut state = self.state.lock();
        if self.terminal {
            state.write(&format!("\r\x1b[2K{status}"));
            state.shown = Some(status.to_owned());
        } else if state
            .last_plain
            .is_none_or(|at| at.elapsed() >= PLAIN_EVERY)
        {
            state.write(&format!("{status}\n"));
            state.last_plain = Some(Instant::now());
        }
    }

    /// Takes the status line away (terminal), so what follows starts on a clean line.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        if self.terminal && state.shown.take().is_some() {
            state.write("\r\x1b[2K");
        }
    }
}

impl State {
    /// Writes `text`, ending the program quietly when the output is gone (as `say!` does).
    fn write(&mut self, text: &str) {
        let out = &mut self.out;
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer whose bytes the test can read.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().clone()).unwrap()
        }
    }

    #[test]
    fn on_a_terminal_lines_go_above_a_status_redrawn_in_place() {
        let out = Shared::default();
        let console = Console::new(true, Box::new(out.clone()));
        console.status("a");
        console.status("b");
        console.line("event");
        console.clear();
        assert_eq!(out.text(), "\r\x1b[2Ka\r\x1b[2Kb\r\x1b[2Kevent\nb\r\x1b[2K");
    }

    #[test]
    fn without_a_terminal_status_lines_are_plain_and_at_most_one_a_second() {
        let out = Shared::default();
        let console = Console::new(false, Box::new(out.clone()));
        console.status("a");
        console.status("b"); // within the second: not printed
        console.line("event");
        console.clear();
        assert_eq!(out.text(), "a\nevent\n");
        assert!(!out.text().contains('\x1b'));
    }
}
