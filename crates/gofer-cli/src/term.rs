//! The terminal: whether to colour (a terminal, and `NO_COLOR` unset; `CLICOLOR_FORCE=1` colours a pipe too), and a
//! progress line on stderr for long operations, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether text for this stream may carry colour: `NO_COLOR` (any non-empty value) always wins; then
/// `CLICOLOR_FORCE` (non-empty, not `0`) colours even a pipe; else only a terminal is coloured.
pub fn colour(stream_is_terminal: bool) -> bool {
    let set = |name: &str| std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0");
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    set("CLICOLOR_FORCE") || stream_is_terminal
}

/// Whether stdout may carry colour.
pub fn colour_stdout() -> bool {
    colour(std::io::stdout().is_terminal())
}

/// `text` in an SGR colour (`32` green, `31` red, …).
pub fn paint(text: &str, sgr: &str) -> String {
    format!("\x1b[{sgr}m{text}\x1b[0m")
}

/// The colour of a state or status word in tables, if it has one.
pub fn status_colour(word: &str) -> Option<&'static str> {
    match word {
        "successful" | "promoted" => Some("32"),
        "failed" | "rolled_back" => Some("31"),
        "cancelled" | "aborted" => Some("33"),
        "running" => Some("36"),
        "skipped" => Some("2"),
        _ => None,
    }
}

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const TICK: Duration = Duration::from_millis(120);

/// A line on stderr telling that a long operation goes on: a spinner, what is done, a detail (bytes sent), the time
/// so far. Drawn only when stderr is a terminal; elsewhere (a pipe, a log file, CI) it writes nothing at all.
pub struct Progress {
    shared: Option<Arc<Mutex<Line>>>,
}

struct Line {
    label: String,
    detail: String,
    started: Instant,
    frame: usize,
    /// Finished: nothing is drawn any more.
    done: bool,
    /// The terminal's columns.
    width: usize,
}

impl Line {
    /// The line, redrawn in place: cut to the terminal's width, since a line that wraps can no longer be erased.
    fn render(&self) -> String {
        let elapsed = self.started.elapsed().as_secs();
        let spinner = SPINNER[self.frame % SPINNER.len()];
        let detail = if self.detail.is_empty() { String::new() } else { format!(": {}", self.detail) };
        let text = format!("{spinner} {}{detail} ({elapsed}s)", self.label);
        let shown: String = text.chars().take(self.width.saturating_sub(1).max(1)).collect();
        format!("\r\x1b[2K{shown}")
    }
}

impl Progress {
    /// Starts the line (inside a tokio runtime) when stderr is a terminal.
    pub fn start(label: impl Into<String>) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { shared: None };
        }
        let width = rustix::termios::tcgetwinsize(std::io::stderr()).map_or(80, |w| usize::from(w.ws_col));
        let width = if width == 0 { 80 } else { width };
        let line =
            Line { label: label.into(), detail: String::new(), started: Instant::now(), frame: 0, done: false, width };
        let shared = Arc::new(Mutex::new(line));
        // The first frame at once (an operation may end before the first tick), then one per tick.
        draw(&shared);
        let ticking = shared.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(TICK).await;
                if !draw(&ticking) {
                    return;
                }
            }
        });
        Self { shared: Some(shared) }
    }

    /// Whether anything is drawn.
    pub fn shown(&self) -> bool {
        self.shared.is_some()
    }

    /// Changes the detail shown after the label.
    pub fn detail(&self, detail: String) {
        if let Some(shared) = &self.shared {
            shared.lock().unwrap_or_else(|p| p.into_inner()).detail = detail;
        }
    }

    /// Prints a line of other output (a build's warnings) above the progress line.
    pub fn println(&self, text: &str) {
        // The line's lock first, then stderr's, as the ticker takes them: never the other way round.
        let line = self.shared.as_ref().map(|shared| shared.lock().unwrap_or_else(|p| p.into_inner()));
        let mut err = std::io::stderr().lock();
        match line.as_deref() {
            Some(line) if !line.done => {
                let _ = write!(err, "\r\x1b[2K{text}\n{}", line.render());
            }
            _ => {
                let _ = writeln!(err, "{text}");
            }
        }
        let _ = err.flush();
    }

    /// Stops and erases the line (once; later calls do nothing).
    pub fn finish(&self) {
        let Some(shared) = &self.shared else { return };
        let mut line = shared.lock().unwrap_or_else(|p| p.into_inner());
        if !line.done {
            line.done = true;
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(b"\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Draws the next frame of a line; false once it is done.
fn draw(shared: &Mutex<Line>) -> bool {
    let mut line = shared.lock().unwrap_or_else(|p| p.into_inner());
    if line.done {
        return false;
    }
    line.frame += 1;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line.render().as_bytes());
    let _ = err.flush();
    true
}

/// A byte count for people: `512 B`, `3.4 MiB`.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = count as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{count} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_colours_and_other_words_none() {
        assert_eq!(status_colour("failed"), Some("31"));
        assert_eq!(status_colour("successful"), Some("32"));
        assert_eq!(status_colour("dag"), None);
        assert_eq!(paint("failed", "31"), "\x1b[31mfailed\x1b[0m");
    }

    #[test]
    fn byte_counts_read_like_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 + 400 * 1024), "3.4 MiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }

    #[test]
    fn the_progress_line_redraws_in_place() {
        let mut line = Line {
            label: "uploading".into(),
            detail: "1.0 KiB".into(),
            started: Instant::now(),
            frame: 1,
            done: false,
            width: 80,
        };
        assert_eq!(line.render(), "\r\x1b[2K⠙ uploading: 1.0 KiB (0s)");
        line.width = 12;
        assert_eq!(line.render(), "\r\x1b[2K⠙ uploading", "cut short of the last column, never wrapped");
    }
}
