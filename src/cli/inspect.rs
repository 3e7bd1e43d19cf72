//! What `fieldgate alarms` and `fieldgate workorders` share: finding the
//! store (from the config or `--store`), opening it read-only, reading a
//! saved state, and the "recent changes" and outbox lines.
//!
//! Both only read the file, so they work while the gateway runs and after
//! it stopped: what they show is what the gateway last committed.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::de::DeserializeOwned;

use super::ConfigArg;
use super::table::{self, Table};
use crate::config;
use crate::store::{HistoryKind, Inspector};

/// Options of the inspection commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    /// The configuration whose `[store] path` to read.
    #[command(flatten)]
    pub config: ConfigArg,

    /// Read this store file instead (no configuration needed).
    #[arg(long = "store", value_name = "FILE")]
    pub store: Option<PathBuf>,

    /// Show the last N changes from the history (0 hides them).
    #[arg(long = "history", value_name = "N", default_value_t = 20)]
    pub history: usize,

    /// Print a JSON array of objects instead of tables, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// A failure already reported on stderr: exit code 1.
pub struct Reported;

impl From<Reported> for ExitCode {
    fn from(_: Reported) -> ExitCode {
        ExitCode::from(1)
    }
}

/// Opens the store the arguments name, reporting why not on stderr.
pub fn open(command: &str, args: &ViewArgs) -> Result<Inspector, Reported> {
    let path = match &args.store {
        Some(path) => path.clone(),
        None => match config::load(&args.config.path) {
            Ok(loaded) => loaded.config.store.path,
            Err(problems) => {
                // As `check` prints them, on stderr: stdout may be JSON.
                eprint!("{problems}");
                eprintln!(
                    "{}: {}, {}; cannot tell where the store is (or use --store FILE)",
                    args.config.path.display(),
                    table::count(problems.error_count(), "error"),
                    table::count(problems.warning_count(), "warning"),
                );
                return Err(Reported);
            }
        },
    };
    Inspector::open(&path).map_err(|e| {
        eprintln!("fieldgate {command}: {e}");
        Reported
    })
}

/// A saved state read as JSON into `T`; `None` when it was never saved.
pub fn load<T: DeserializeOwned>(
    command: &str,
    store: &Inspector,
    key: &str,
    what: &str,
) -> Result<Option<T>, Reported> {
    let bytes = store.state(key).map_err(|e| {
        eprintln!("fieldgate {command}: {e}");
        Reported
    })?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        eprintln!(
            "fieldgate {command}: cannot read the saved {what} in {} (state \"{key}\"): {e}",
            store.path().display()
        );
        Reported
    })
}

/// The saved-at line under a table: when the state shown was committed.
pub fn saved_line(command: &str, store: &Inspector, key: &str) -> Result<String, Reported> {
    let at = store.state_saved_at(key).map_err(|e| {
        eprintln!("fieldgate {command}: {e}");
        Reported
    })?;
    Ok(match at {
        Some(at) => format!(
            "As saved by the gateway at {} UTC in {}.\n",
            table::utc(at),
            store.path().display()
        ),
        None => String::new(),
    })
}

/// "Recent changes": the last `n` history entries of `kind`, oldest
/// first; empty when `n` is 0.
pub fn recent_changes(
    command: &str,
    store: &Inspector,
    kind: HistoryKind,
    subject: &str,
    n: usize,
) -> Result<String, Reported> {
    if n == 0 {
        return Ok(String::new());
    }
    let records = store.history(Some(kind), n).map_err(|e| {
        eprintln!("fieldgate {command}: {e}");
        Reported
    })?;
    if records.is_empty() {
        return Ok("\nRecent changes: none recorded.\n".to_owned());
    }
    let mut t = Table::new(&["TIME (UTC)", subject, "CHANGE", "DETAIL"]);
    for r in &records {
        t.row(vec![
            table::utc(r.entry.at),
            r.entry.subject.clone(),
            r.entry.event.clone(),
            table::truncate(&detail_summary(&r.entry.detail), DETAIL_WIDTH),
        ]);
    }
    Ok(format!("\nRecent changes, oldest first:\n{}", t.render()))
}

/// The outbox line: what still waits for the broker.
pub fn outbox_line(command: &str, store: &Inspector) -> Result<String, Reported> {
    let (messages, oldest) = store.outbox().map_err(|e| {
        eprintln!("fieldgate {command}: {e}");
        Reported
    })?;
    Ok(match oldest {
        Some(oldest) if messages > 0 => format!(
            "\nOutbox: {} waiting for the broker, the oldest from {} UTC.\n",
            table::count(messages as usize, "message"),
            table::utc(oldest)
        ),
        _ => "\nOutbox: empty (everything was delivered).\n".to_owned(),
    })
}

/// Prints `items` as a pretty JSON array.
pub fn print_json(command: &str, items: &[serde_json::Value]) -> Result<(), Reported> {
    let text = serde_json::to_string_pretty(items).map_err(|e| {
        eprintln!("fieldgate {command}: cannot write JSON: {e}");
        Reported
    })?;
    table::emit(&text);
    table::emit("\n");
    Ok(())
}

/// Width of the DETAIL column of the recent changes.
const DETAIL_WIDTH: usize = 60;

/// A history entry's JSON detail in a few words: a work order's title and
/// occurrences, an alarm's value and limit and what other than its
/// condition changed it (an ack, a shelf), a reason or note; the raw text
/// if it is not a JSON object.
fn detail_summary(detail: &str) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(detail)
    else {
        return detail.to_owned();
    };
    let text = |key: &str| -> Option<String> {
        match map.get(key)? {
            serde_json::Value::Null => None,
            serde_json::Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    };
    let mut parts = Vec::new();
    if let Some(title) = text("title") {
        parts.push(title);
    }
    if let Some(n) = map
        .get("occurrences")
        .and_then(|v| v.as_u64())
        .filter(|&n| n > 1)
    {
        parts.push(format!("{n} occurrences"));
    }
    if let Some(value) = text("value") {
        match text("limit") {
            Some(limit) => parts.push(format!("value {value} (limit {limit})")),
            None => parts.push(format!("value {value}")),
        }
    }
    // What caused an alarm change, unless it is the usual (the condition).
    if let Some(cause) = text("cause").filter(|c| c != "condition") {
        parts.push(format!("by {}", cause.replace('_', " ")));
    }
    for key in ["reason", "note"] {
        if let Some(t) = text(key) {
            parts.push(t);
        }
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn details_read_in_a_few_words() {
        assert_eq!(
            detail_summary(r#"{"title":"Pump 1 hot","occurrences":3,"seq":4}"#),
            "Pump 1 hot, 3 occurrences"
        );
        assert_eq!(
            detail_summary(r#"{"value":81.5,"limit":80.0,"cause":"condition"}"#),
            "value 81.5 (limit 80.0)"
        );
        assert_eq!(
            detail_summary(r#"{"value":null,"cause":"shelve_expired"}"#),
            "by shelve expired"
        );
        assert_eq!(detail_summary(r#"{"value":null}"#), "");
        assert_eq!(detail_summary("not json"), "not json");
    }
}
