//! Plain-text tables and the small formats the inspection commands share:
//! times in UTC, truncated text, and writing to stdout without a panic
//! when the reader (`| head`) goes away.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// The latest moment RFC 3339 can write (the end of year 9999); later
/// times (a shelf "forever") are shown as this.
const LAST_MS: u128 = 253_402_300_799_999;

/// Columns separated by two spaces, each as wide as its widest cell.
#[derive(Debug, Clone)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column headings.
    pub fn new(headings: &[&str]) -> Table {
        Table {
            rows: vec![headings.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row (as many cells as headings).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines, without trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let line: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

/// A moment for people: `2026-11-21 06:38:25`, UTC (the headings say so),
/// to the second.
pub fn utc(at: SystemTime) -> String {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
        .min(LAST_MS);
    // Within humantime's range now: it cannot panic.
    let at = UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(at)
        .to_string()
        .replacen('T', " ", 1)
        .trim_end_matches('Z')
        .to_owned()
}

/// `text` cut to `width` characters, with `…` when it was longer; on one
/// line.
pub fn truncate(text: &str, width: usize) -> String {
    let line = text.replace(['\n', '\r', '\t'], " ");
    if line.chars().count() <= width {
        return line;
    }
    let mut cut: String = line.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `n thing` or `n things`.
pub fn count(n: usize, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

/// Writes `text` to stdout. A closed pipe (`fieldgate alarms | head`)
/// ends the output quietly instead of panicking like `print!`.
pub fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn columns_line_up_without_trailing_spaces() {
        let mut t = Table::new(&["RULE", "STATE"]);
        t.row(vec!["pump1_hot".into(), "active_unacked".into()]);
        t.row(vec!["tank".into(), String::new()]);
        assert_eq!(
            t.render(),
            "RULE       STATE\npump1_hot  active_unacked\ntank\n"
        );
    }

    #[test]
    fn times_are_utc_seconds_and_never_panic() {
        let at = UNIX_EPOCH + Duration::from_millis(1_795_000_000_999);
        assert_eq!(utc(at), "2026-11-18 11:06:40");
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01 00:00:00");
        let far = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 100);
        assert_eq!(utc(far), "9999-12-31 23:59:59");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("Pump 1 overheating", 10), "Pump 1 ov…");
        assert_eq!(truncate("two\nlines", 20), "two lines");
        assert_eq!(count(1, "alarm"), "1 alarm");
        assert_eq!(count(0, "alarm"), "0 alarms");
    }
}
