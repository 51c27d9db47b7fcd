//! How results are shown: aligned tables for people, JSON for scripts. Data goes to stdout only.

use std::io::Write;

use gofer_api::epoch_millis;
use serde::Serialize;

/// The output format chosen with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Table,
    Json,
}

/// What people see of a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// `key: value` lines.
    Fields(Vec<(&'static str, String)>),
    /// Rows under a header, columns aligned.
    Table { header: Vec<&'static str>, rows: Vec<Vec<String>> },
    /// Text as it is.
    Text(String),
    /// Several views, a blank line between them.
    Stacked(Vec<View>),
}

impl View {
    pub fn table(header: &[&'static str], rows: Vec<Vec<String>>) -> Self {
        Self::Table { header: header.to_vec(), rows }
    }
}

/// Prints a value the way `--output` asks: its view for people, the value itself as JSON for scripts.
pub fn print<T: crate::views::Show + ?Sized>(format: Format, value: &T) -> anyhow::Result<()> {
    match format {
        Format::Json => json(value),
        Format::Table => render(&value.view()),
    }
}

/// Prints a view for people.
pub fn render(view: &View) -> anyhow::Result<()> {
    match view {
        View::Fields(pairs) => fields(pairs),
        View::Table { header, rows } => table(header, rows),
        View::Text(text) => {
            println!("{}", text.trim_end());
            Ok(())
        }
        View::Stacked(views) => {
            for (i, view) in views.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                render(view)?;
            }
            Ok(())
        }
    }
}

/// Prints a value as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}

/// The widest a table cell is shown; longer text ends in `…` (the whole of it is in `--output json`).
const MAX_CELL: usize = 60;

/// A value as one table cell: on one line, control characters (which could move the cursor or recolour the
/// terminal) shown as spaces, and cut at [`MAX_CELL`] characters.
fn cell(text: &str) -> String {
    let mut shown: String = text.chars().take(MAX_CELL + 1).map(|c| if c.is_control() { ' ' } else { c }).collect();
    if shown.chars().count() > MAX_CELL {
        shown = shown.chars().take(MAX_CELL - 1).collect();
        shown.push('…');
    }
    shown
}

/// Prints rows under a header, columns padded to their widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|c| cell(c)).collect()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let colour = crate::term::colour_stdout();
    let line = |cells: Vec<&str>| -> String {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            match crate::term::status_colour(cell) {
                Some(sgr) if colour => text.push_str(&crate::term::paint(cell, sgr)),
                _ => text.push_str(cell),
            }
            if i + 1 < cells.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                text.extend(std::iter::repeat_n(' ', width.saturating_sub(cell.chars().count()) + 2));
            }
        }
        text.trim_end().to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// Prints `key: value` lines. Values keep their line breaks; other control characters are shown as spaces.
fn fields(pairs: &[(&str, String)]) -> anyhow::Result<()> {
    let width = pairs.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0) + 1;
    let mut out = std::io::stdout().lock();
    let colour = crate::term::colour_stdout();
    for (key, value) in pairs {
        let mut value: String = value.chars().map(|c| if c.is_control() && c != '\n' { ' ' } else { c }).collect();
        if let Some(sgr) = crate::term::status_colour(&value).filter(|_| colour && matches!(*key, "status" | "state")) {
            value = crate::term::paint(&value, sgr);
        }
        let label = format!("{key}:");
        let pad = width.saturating_sub(label.chars().count()) + 2;
        writeln!(out, "{label}{}{value}", " ".repeat(pad))?;
    }
    Ok(())
}

/// "3m ago" for an epoch-millisecond time; "-" for 0 (not yet).
pub fn ago(millis: u64) -> String {
    if millis == 0 {
        return "-".into();
    }
    let elapsed = epoch_millis().saturating_sub(millis);
    format!("{} ago", human_duration(elapsed))
}

/// "1.2s", "3m4s", "2h5m" for a span in milliseconds.
pub fn human_duration(millis: u64) -> String {
    let secs = millis / 1000;
    match secs {
        0..=59 if millis < 10_000 => format!("{:.1}s", millis as f64 / 1000.0),
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{}s", secs / 60, secs % 60),
        3600..=86_399 => format!("{}h{}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{}h", secs / 86_400, (secs % 86_400) / 3600),
    }
}

/// How long something between `start` and `end` took; running things count up to now.
pub fn took(start: u64, end: u64) -> String {
    match (start, end) {
        (0, _) => "-".into(),
        (s, 0) => human_duration(epoch_millis().saturating_sub(s)),
        (s, e) => human_duration(e.saturating_sub(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_one_short_line_whatever_the_input() {
        assert_eq!(cell("plain"), "plain");
        assert_eq!(cell("two\nlines\x1b[31m"), "two lines [31m");
        let long = cell(&"x".repeat(1_000_000));
        assert_eq!(long.chars().count(), MAX_CELL);
        assert!(long.ends_with('…'));
        table(&["A", "B"], &[vec!["y".repeat(70_000), "z".into()]]).unwrap();
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(1234), "1.2s");
        assert_eq!(human_duration(42_000), "42s");
        assert_eq!(human_duration(184_000), "3m4s");
        assert_eq!(human_duration(7_500_000), "2h5m");
        assert_eq!(took(0, 0), "-");
        assert_eq!(took(1000, 3500), "2.5s");
    }
}
