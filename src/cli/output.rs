//! Human and machine output: aligned tables, `key: value` blocks, times, and JSON.
//!
//! Everything printed to a terminal goes through [`clean`], because some values (an
//! audience a workload asked for, a refusal reason) come from outside and could otherwise
//! carry terminal escape sequences.

use std::fmt::Write as _;
use std::io::{self, Write as _};

use serde::Serialize;

use super::error::CliError;

/// Columns are separated by this many spaces.
const COLUMN_GAP: usize = 2;

/// Shown for an empty cell.
const EMPTY: &str = "-";

/// A table with a header row, printed with every column padded to its widest cell.
#[derive(Debug, Clone, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headers.
    pub fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_string()).collect()],
        }
    }

    /// Adds a row; empty cells show as "-", control characters are escaped.
    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.rows.push(
            cells
                .into_iter()
                .map(|cell| match cell.as_ref() {
                    "" => EMPTY.to_string(),
                    text => clean(text),
                })
                .collect(),
        );
    }

    /// The table as text, one line per row, each ending in a newline. Trailing spaces are
    /// trimmed so that the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                // Writing to a String cannot fail.
                let _ = write!(line, "{cell:<width$}{:gap$}", "", gap = COLUMN_GAP);
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `key: value` lines with the values aligned; empty values show as "-".
pub fn key_values(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (key, value) in pairs {
        let value = if value.is_empty() {
            EMPTY.to_string()
        } else {
            clean(value)
        };
        let label = format!("{key}:");
        // Writing to a String cannot fail.
        let _ = writeln!(out, "{label:<width$} {value}");
    }
    out
}

/// Escapes control characters (ANSI escapes, newlines, carriage returns) so that a value
/// prints as exactly what it is.
pub fn clean(text: &str) -> String {
    if !text.chars().any(char::is_control) {
        return text.to_string();
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

pub use mayfly_sdk::clock::rfc3339;

/// RFC 3339, or `None` for 0 (the API's "never").
pub fn optional_rfc3339(unix: i64) -> Option<String> {
    (unix != 0).then(|| rfc3339(unix))
}

/// "in 4m12s", "3m ago" or "now", relative to `now` (both Unix seconds).
pub fn relative(unix: i64, now: i64) -> String {
    let delta = unix.saturating_sub(now);
    match delta {
        0 => "now".to_string(),
        d if d > 0 => format!("in {}", compact_duration(d.unsigned_abs())),
        d => format!("{} ago", compact_duration(d.unsigned_abs())),
    }
}

/// "2027-01-31T00:00:00Z (in 89d23h)".
pub fn time_and_relative(unix: i64, now: i64) -> String {
    format!("{} ({})", rfc3339(unix), relative(unix, now))
}

/// A duration in its two most significant units: "4m12s", "1h", "2d3h", "0s".
pub fn compact_duration(secs: u64) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let Some(first) = UNITS.iter().position(|(size, _)| secs >= *size) else {
        return "0s".to_string();
    };
    let (size, name) = UNITS[first];
    let mut out = format!("{}{name}", secs / size);
    if let Some((next, next_name)) = UNITS.get(first + 1) {
        let count = (secs % size) / next;
        if count > 0 {
            // Writing to a String cannot fail.
            let _ = write!(out, "{count}{next_name}");
        }
    }
    out
}

/// Writes `text` to standard output as it is.
///
/// # Errors
/// [`CliError::Output`] if standard output is closed or fails.
pub fn stdout(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| CliError::Output {
            broken_pipe: e.kind() == io::ErrorKind::BrokenPipe,
            reason: e.to_string(),
        })
}

/// Writes one line to standard output.
///
/// # Errors
/// [`CliError::Output`] if standard output is closed or fails.
pub fn stdout_line(line: &str) -> Result<(), CliError> {
    stdout(&format!("{line}\n"))
}

/// Writes one line to standard error. Failures are ignored: there is nowhere left to
/// report them.
pub fn stderr_line(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// Prints `value` as pretty JSON on standard output.
///
/// # Errors
/// [`CliError::Output`] if it cannot be encoded or written.
pub fn json<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Output {
        reason: e.to_string(),
        broken_pipe: false,
    })?;
    stdout_line(&text)
}

/// Prints `value` as one line of compact JSON on standard output (JSON lines).
///
/// # Errors
/// [`CliError::Output`] if it cannot be encoded or written.
pub fn json_line<T: Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string(value).map_err(|e| CliError::Output {
        reason: e.to_string(),
        broken_pipe: false,
    })?;
    stdout_line(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims() {
        let mut table = Table::new(&["ID", "SPIFFE ID", "OWNER"]);
        table.row(["e1", "spiffe://td/long/path", "alice"]);
        table.row(["entry-22", "spiffe://td/a", ""]);
        assert_eq!(
            table.render(),
            "ID        SPIFFE ID              OWNER\n\
             e1        spiffe://td/long/path  alice\n\
             entry-22  spiffe://td/a          -\n"
        );
    }

    #[test]
    fn table_counts_characters_not_bytes() {
        let mut table = Table::new(&["A", "B"]);
        table.row(["été", "x"]);
        assert_eq!(table.render(), "A    B\nété  x\n");
    }

    #[test]
    fn table_with_only_headers() {
        assert_eq!(Table::new(&["ID", "OWNER"]).render(), "ID  OWNER\n");
    }

    #[test]
    fn cells_cannot_inject_terminal_escapes() {
        let mut table = Table::new(&["REASON"]);
        table.row(["bad\u{1b}[2Jthing\nnext"]);
        let text = table.render();
        assert!(!text.contains('\u{1b}'));
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("bad\\u{1b}[2Jthing\\nnext"), "{text}");
    }

    #[test]
    fn key_values_align() {
        let text = key_values(&[("id", "e1".into()), ("spiffe id", "spiffe://td/a".into())]);
        assert_eq!(text, "id:        e1\nspiffe id: spiffe://td/a\n");
        assert_eq!(key_values(&[("owner", String::new())]), "owner: -\n");
    }

    #[test]
    fn compact_durations() {
        assert_eq!(compact_duration(0), "0s");
        assert_eq!(compact_duration(59), "59s");
        assert_eq!(compact_duration(60), "1m");
        assert_eq!(compact_duration(252), "4m12s");
        assert_eq!(compact_duration(3_600), "1h");
        assert_eq!(compact_duration(3_720), "1h2m");
        assert_eq!(compact_duration(3_601), "1h");
        assert_eq!(compact_duration(90_061), "1d1h");
        assert_eq!(compact_duration(86_400 + 59), "1d");
        assert_eq!(compact_duration(90 * 86_400), "90d");
    }

    #[test]
    fn relative_times() {
        assert_eq!(relative(1_252, 1_000), "in 4m12s");
        assert_eq!(relative(820, 1_000), "3m ago");
        assert_eq!(relative(1_000, 1_000), "now");
        assert!(relative(i64::MIN, i64::MAX).ends_with(" ago"));
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(rfc3339(1_801_353_600), "2027-01-31T00:00:00Z");
        assert_eq!(rfc3339(i64::MAX), format!("unix:{}", i64::MAX));
        assert_eq!(optional_rfc3339(0), None);
        assert_eq!(
            time_and_relative(1_801_353_600, 1_801_353_600 - 252),
            "2027-01-31T00:00:00Z (in 4m12s)"
        );
    }
}
