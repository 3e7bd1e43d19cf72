//! `fieldgate writes`: the write trail from the store's history, newest
//! last: every write command to a tag, carried out or refused, with who
//! sent it, the value before, the value written and read back, and the
//! result. It reads the file like `fieldgate alarms` (read-only, while the
//! gateway runs or after it stopped).
//!
//! Each entry's detail is the JSON the write desk recorded; one that
//! cannot be read (cut short, written by hand) still shows its device, tag,
//! time and result, from the entry's own columns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::ConfigArg;
use super::inspect::{self, Reported, ViewArgs};
use super::table::{self, Table};
use crate::contract::json::timestamp;
use crate::store::{HistoryEntry, HistoryKind, HistoryQuery, HistoryRecord};

const COMMAND: &str = "writes";

/// The reason or message is cut to this many characters in the table;
/// `--json` has it whole.
const MESSAGE_WIDTH: usize = 60;

/// A value (a long text) is cut to this many characters in the table.
const VALUE_WIDTH: usize = 20;

/// The latest moment RFC 3339 can write (the end of year 9999), for a
/// moment read from the file.
const LAST_MS: u64 = 253_402_300_799_999;

/// Options of `fieldgate writes`.
#[derive(Debug, Clone, clap::Args)]
pub struct WritesArgs {
    /// The configuration whose `[store] path` to read.
    #[command(flatten)]
    pub config: ConfigArg,

    /// Read this store file instead (no configuration needed).
    #[arg(long = "store", value_name = "FILE")]
    pub store: Option<PathBuf>,

    /// Only writes to this device.
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Only writes to tags of this name.
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,

    /// Show the newest N writes (that match).
    #[arg(long, value_name = "N", default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,

    /// Only writes of the last DURATION (`30m`, `12h`, `7d`).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,

    /// Print a JSON array of objects instead of a table, for scripts.
    #[arg(long)]
    pub json: bool,
}

/// Prints the writes; exit code 1 when the store cannot be read.
pub fn run(args: &WritesArgs) -> ExitCode {
    match show(args, SystemTime::now()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reported) => reported.into(),
    }
}

fn show(args: &WritesArgs, now: SystemTime) -> Result<(), Reported> {
    let view = ViewArgs {
        config: args.config.clone(),
        store: args.store.clone(),
        history: 0,
        json: args.json,
    };
    let store = inspect::open(COMMAND, &view)?;
    let limit = usize::try_from(args.limit).unwrap_or(usize::MAX);
    let mut query = query(args, now);
    // One more than shown tells whether older ones were left out.
    query.limit = limit.saturating_add(1);
    let mut records = store.history_where(&query).map_err(|e| {
        eprintln!("fieldgate {COMMAND}: {e}");
        Reported
    })?;
    let more = records.len() > limit;
    if more {
        records.drain(..records.len() - limit);
    }
    let writes: Vec<Write> = records.iter().map(Write::read).collect();
    if args.json {
        let items: Vec<Value> = writes.iter().map(Write::to_json).collect();
        return inspect::print_json(COMMAND, &items);
    }
    let mut out = String::new();
    if writes.is_empty() {
        out.push_str(&format!("No writes recorded{}.\n", filters(args)));
    } else {
        out.push_str(&write_table(&writes));
        out.push_str(&format!("\n{}\n", summary(&writes)));
        if more {
            out.push_str(&format!(
                "Older writes{} not shown: --limit N shows more.\n",
                filters(args)
            ));
        }
    }
    table::emit(&out);
    Ok(())
}

/// The history query of the arguments (without its limit): writes, to the
/// device and tag asked, since the moment asked.
fn query(args: &WritesArgs, now: SystemTime) -> HistoryQuery {
    HistoryQuery {
        kind: Some(HistoryKind::Write),
        // The subject is `{device}/{tag}`; names never hold a `/`.
        subject_prefix: args.device.as_ref().map(|d| format!("{d}/")),
        subject_suffix: args.tag.as_ref().map(|t| format!("/{t}")),
        since: args.since.map(|d| now.checked_sub(d).unwrap_or(UNIX_EPOCH)),
        limit: 0,
    }
}

/// The filters asked, in words: ` to pump1/setpoint in the last 1h`.
fn filters(args: &WritesArgs) -> String {
    let mut out = String::new();
    match (&args.device, &args.tag) {
        (Some(d), Some(t)) => out.push_str(&format!(" to {d}/{t}")),
        (Some(d), None) => out.push_str(&format!(" to device {d}")),
        (None, Some(t)) => out.push_str(&format!(" to tag {t}")),
        (None, None) => {}
    }
    if let Some(since) = args.since {
        out.push_str(&format!(
            " in the last {}",
            humantime::format_duration(since)
        ));
    }
    out
}

/// One write as recorded: the detail's fields where it has them, the
/// entry's columns where it does not.
#[derive(Debug, Clone, PartialEq)]
struct Write {
    /// When it was recorded.
    at: SystemTime,
    device: String,
    tag: String,
    /// `rejected`, `written`, `verified`, `unknown`.
    result: String,
    /// The detail as an object, or its text when it is not one.
    detail: Result<Map<String, Value>, String>,
}

impl Write {
    fn read(record: &HistoryRecord) -> Write {
        let entry: &HistoryEntry = &record.entry;
        let detail = match serde_json::from_str::<Value>(&entry.detail) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(entry.detail.clone()),
        };
        let (device, tag) = entry
            .subject
            .split_once('/')
            .unwrap_or((entry.subject.as_str(), ""));
        let mut write = Write {
            at: entry.at,
            device: device.to_owned(),
            tag: tag.to_owned(),
            result: entry.event.clone(),
            detail,
        };
        // The detail names them too; it is what was recorded whole.
        if let Some(device) = write.text("device") {
            write.device = device;
        }
        if let Some(tag) = write.text("tag") {
            write.tag = tag;
        }
        if let Some(result) = write.text("result") {
            write.result = result;
        }
        write
    }

    /// A field of the detail, when it has it and it is not null.
    fn field(&self, key: &str) -> Option<&Value> {
        self.detail
            .as_ref()
            .ok()
            .and_then(|map| map.get(key))
            .filter(|v| !v.is_null())
    }

    /// A field of the detail as text (a string as it is, anything else as
    /// JSON), when it has it.
    fn text(&self, key: &str) -> Option<String> {
        self.field(key).map(plain)
    }

    /// `old → written (read back)`, or what was asked when refused.
    fn values(&self) -> String {
        if self.detail.is_err() {
            return "-".to_owned();
        }
        let show = |v: &Value| table::truncate(&plain(v), VALUE_WIDTH);
        let asked = self.field("v");
        if self.result == "rejected" {
            return asked.map_or_else(|| "-".to_owned(), |v| format!("asked {}", show(v)));
        }
        let old = self.field("old").map_or_else(|| "-".to_owned(), show);
        let new = self
            .field("written")
            .or(asked)
            .map_or_else(|| "-".to_owned(), show);
        match self.field("read_back") {
            Some(back) => format!("{old} → {new} ({})", show(back)),
            None => format!("{old} → {new}"),
        }
    }

    /// Why it was refused, or the note of a write that is not verified.
    fn why(&self) -> String {
        match &self.detail {
            Err(raw) => table::truncate(&format!("unreadable detail: {raw}"), MESSAGE_WIDTH),
            Ok(_) => self
                .text("message")
                .or_else(|| self.text("reason"))
                .map_or_else(|| "-".to_owned(), |t| table::truncate(&t, MESSAGE_WIDTH)),
        }
    }

    /// The detail as recorded (the write's result message), with the
    /// device, tag, result and time from the entry where it lacks them;
    /// an unreadable detail as `detail`, its text.
    fn to_json(&self) -> Value {
        let mut map = match &self.detail {
            Ok(map) => map.clone(),
            Err(raw) => {
                let mut map = Map::new();
                map.insert("detail".to_owned(), Value::String(raw.clone()));
                map
            }
        };
        for (key, value) in [
            ("device", &self.device),
            ("tag", &self.tag),
            ("result", &self.result),
        ] {
            map.entry(key)
                .or_insert_with(|| Value::String(value.clone()));
        }
        map.entry("ts")
            .or_insert_with(|| Value::String(timestamp(clamped(self.at))));
        Value::Object(map)
    }
}

/// A JSON value for people: a string as it is, anything else as JSON.
fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A moment read from the file, within what RFC 3339 can write.
fn clamped(at: SystemTime) -> SystemTime {
    let ms = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .min(LAST_MS);
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn write_table(writes: &[Write]) -> String {
    let mut t = Table::new(&[
        "TIME (UTC)",
        "DEVICE/TAG",
        "SOURCE",
        "BY",
        "OLD → WRITTEN (READ BACK)",
        "RESULT",
        "REASON",
    ]);
    let or_dash = |v: Option<String>| v.map_or_else(|| "-".to_owned(), |t| table::truncate(&t, 30));
    for w in writes {
        t.row(vec![
            table::utc(w.at),
            format!("{}/{}", w.device, w.tag),
            or_dash(w.text("source")),
            or_dash(w.text("by")),
            w.values(),
            w.result.clone(),
            w.why(),
        ]);
    }
    t.render()
}

/// `3 writes, oldest first: 1 verified, 1 written, 1 rejected.`
fn summary(writes: &[Write]) -> String {
    let mut counts: Vec<(String, usize)> = ["verified", "written", "unknown", "rejected"]
        .into_iter()
        .map(|r| (r.to_owned(), 0))
        .collect();
    for w in writes {
        match counts.iter_mut().find(|(r, _)| *r == w.result) {
            Some((_, n)) => *n += 1,
            None => counts.push((w.result.clone(), 1)),
        }
    }
    let parts: Vec<String> = counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    format!(
        "{}, oldest first: {}.",
        table::count(writes.len(), "write"),
        parts.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-07 13:40:00 UTC.
    const AT_MS: u64 = 1_796_650_800_000;

    fn record(subject: &str, event: &str, detail: &str) -> HistoryRecord {
        HistoryRecord {
            id: 1,
            entry: HistoryEntry {
                at: UNIX_EPOCH + Duration::from_millis(AT_MS),
                kind: HistoryKind::Write,
                subject: subject.into(),
                event: event.into(),
                detail: detail.into(),
            },
        }
    }

    const VERIFIED: &str = r#"{"id":"abc","device":"pump1","tag":"setpoint","v":42.5,"by":"jdoe",
        "source":"mqtt","result":"verified","reason":null,"message":null,"old":40.0,
        "written":42.5,"read_back":42.5,"ts":"2026-12-07T13:40:00.123Z",
        "received":"2026-12-07T13:40:00.101Z","took_ms":12}"#;

    const REJECTED: &str = r#"{"id":null,"device":"pump1","tag":"setpoint","v":150,"by":null,
        "source":"http","result":"rejected","reason":"out_of_range",
        "message":"out of range: 150 above max 100","old":null,"written":null,
        "read_back":null,"ts":"2026-12-07T13:41:00.000Z","received":"2026-12-07T13:41:00.000Z",
        "took_ms":0}"#;

    #[test]
    fn a_verified_write_reads_old_to_new_with_its_read_back() {
        let w = Write::read(&record("pump1/setpoint", "verified", VERIFIED));
        assert_eq!((w.device.as_str(), w.tag.as_str()), ("pump1", "setpoint"));
        assert_eq!(w.values(), "40.0 → 42.5 (42.5)");
        assert_eq!(w.why(), "-");
        let out = write_table(std::slice::from_ref(&w));
        let row = out.lines().nth(1).unwrap();
        for cell in [
            "2026-12-07 13:40:00",
            "pump1/setpoint",
            "mqtt",
            "jdoe",
            "verified",
        ] {
            assert!(row.contains(cell), "{cell} not in {row}");
        }
        // JSON: the detail as recorded.
        let json = w.to_json();
        assert_eq!(json["id"], "abc");
        assert_eq!(json["took_ms"], 12);
        assert_eq!(json["ts"], "2026-12-07T13:40:00.123Z");
        assert_eq!(json, serde_json::from_str::<Value>(VERIFIED).unwrap());
    }

    #[test]
    fn a_refusal_shows_what_was_asked_and_why() {
        let w = Write::read(&record("pump1/setpoint", "rejected", REJECTED));
        assert_eq!(w.values(), "asked 150");
        assert_eq!(w.why(), "out of range: 150 above max 100");
        // Without a message, the reason's code.
        let w = Write::read(&record(
            "pump1/setpoint",
            "rejected",
            r#"{"result":"rejected","reason":"stale","v":true}"#,
        ));
        assert_eq!(
            (w.values().as_str(), w.why().as_str()),
            ("asked true", "stale")
        );
        // An unknown result: no read-back, the written value, text as is.
        let w = Write::read(&record(
            "panel/mode",
            "unknown",
            r#"{"result":"unknown","v":"auto","old":"manual","message":"no answer"}"#,
        ));
        assert_eq!(w.values(), "manual → auto");
        assert_eq!(w.why(), "no answer");
    }

    /// A detail that is not a JSON object still shows device, tag, time
    /// and result, from the entry.
    #[test]
    fn an_unreadable_detail_shows_what_it_can() {
        for detail in ["{\"device\":\"pu", "", "[1,2]", "null", "42"] {
            let w = Write::read(&record("pump1/setpoint", "written", detail));
            assert_eq!((w.device.as_str(), w.tag.as_str()), ("pump1", "setpoint"));
            assert_eq!(w.result, "written");
            assert_eq!(w.values(), "-");
            assert!(w.why().starts_with("unreadable detail: "), "{}", w.why());
            let json = w.to_json();
            assert_eq!(json["device"], "pump1");
            assert_eq!(json["tag"], "setpoint");
            assert_eq!(json["result"], "written");
            assert_eq!(json["ts"], "2026-12-07T13:40:00.000Z");
            assert_eq!(json["detail"], detail);
        }
        // A subject without a `/`, fields of odd types, a time out of range.
        let mut r = record("odd", "verified", r#"{"by":7,"old":[1],"v":{"a":1}}"#);
        r.entry.at = UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX) * 100);
        let w = Write::read(&r);
        assert_eq!((w.device.as_str(), w.tag.as_str()), ("odd", ""));
        assert_eq!(w.values(), "[1] → {\"a\":1}");
        assert!(write_table(std::slice::from_ref(&w)).contains("  7  "));
        assert_eq!(w.to_json()["ts"], "9999-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_summary_counts_each_result() {
        let writes = [
            Write::read(&record("pump1/setpoint", "verified", VERIFIED)),
            Write::read(&record("pump1/setpoint", "rejected", REJECTED)),
            Write::read(&record("pump1/setpoint", "rejected", REJECTED)),
            Write::read(&record("pump1/setpoint", "odd", "x")),
        ];
        assert_eq!(
            summary(&writes),
            "4 writes, oldest first: 1 verified, 2 rejected, 1 odd."
        );
    }

    #[test]
    fn the_filters_become_the_query_and_words() {
        let args = WritesArgs {
            config: ConfigArg {
                path: "x.toml".into(),
            },
            store: None,
            device: Some("pump1".into()),
            tag: Some("setpoint".into()),
            limit: 50,
            since: Some(Duration::from_secs(3600)),
            json: false,
        };
        let now = UNIX_EPOCH + Duration::from_millis(AT_MS);
        let q = query(&args, now);
        assert_eq!(q.kind, Some(HistoryKind::Write));
        assert_eq!(q.subject_prefix.as_deref(), Some("pump1/"));
        assert_eq!(q.subject_suffix.as_deref(), Some("/setpoint"));
        assert_eq!(q.since, Some(now - Duration::from_secs(3600)));
        assert_eq!(filters(&args), " to pump1/setpoint in the last 1h");
        let args = WritesArgs {
            device: None,
            since: None,
            ..args
        };
        assert_eq!(filters(&args), " to tag setpoint");
        assert_eq!(query(&args, now).subject_prefix, None);
    }
}
