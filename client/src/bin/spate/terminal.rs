//! Terminal niceties that must never leak into pipes: colour and progress lines appear only
//! when the stream is a terminal (and colour only without `NO_COLOR`). Errors are always one
//! line on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often a progress line is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// Whether stderr is a terminal that wants colour.
fn stderr_colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Whether stdout is a terminal that wants colour.
pub fn stdout_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// `text` in bold when `colour`, as it is otherwise.
pub fn bold(text: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

/// Prints `error` as one line: `error: cause: cause: ...`.
pub fn print_error(error: &anyhow::Error) {
    let mut line = String::new();
    for (index, cause) in error.chain().enumerate() {
        let text = cause.to_string();
        // thiserror sources are often already part of the outer message; skip repeats.
        if index > 0 && line.contains(&text) {
            continue;
        }
        if index > 0 {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    print_error_line(&line);
}

/// Prints `error: LINE` on stderr, as one line whatever `line` holds.
pub fn print_error_line(line: &str) {
    let line = line.replace('\n', " ");
    let label = if stderr_colour() {
        "\x1b[1;31merror\x1b[0m"
    } else {
        "error"
    };
    eprintln!("{label}: {line}");
}

/// A status line on stderr, redrawn in place at most every [`PROGRESS_INTERVAL`]; inert when
/// stderr is not a terminal.
pub struct Progress {
    enabled: bool,
    last_drawn: Instant,
    drawn: bool,
}

impl Progress {
    pub fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            last_drawn: Instant::now(),
            drawn: false,
        }
    }

    /// Redraws with `message()` if the interval passed. The closure is only called then.
    pub fn tick(&mut self, message: impl FnOnce() -> String) {
        if !self.enabled || self.last_drawn.elapsed() < PROGRESS_INTERVAL {
            return;
        }
        self.last_drawn = Instant::now();
        self.drawn = true;
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{}", message());
        let _ = stderr.flush();
    }

    /// Clears the line, so the final output starts on a clean one.
    pub fn finish(&mut self) {
        if self.drawn {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.drawn = false;
        }
    }
}
