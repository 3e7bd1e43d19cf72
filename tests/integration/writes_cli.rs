//! `fieldgate writes` against a real store holding write entries recorded
//! through `StoreHandle::record`, as the write desk records them. The store
//! stays open while the binary reads it, as the gateway would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldgate::config::{self, Config};
use fieldgate::store::{self, HistoryEntry, HistoryKind, StoreHandle};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[gateway]
id = "gw1"
site = "plant-a"
data_dir = "data"

[mqtt]
host = "127.0.0.1"

[[devices]]
name = "pump1"
tcp = "127.0.0.1:5020"
tags = [
  { name = "setpoint", address = 40001, type = "f32", unit = "degC" },
]
"#;

/// 2024-12-07 13:40:00 UTC (long past), and `s` seconds later.
fn t(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_733_578_800_000 + s * 1000)
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(args)
        .env_remove("FIELDGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Runs the binary and expects exit code 0; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = bin(args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{args:?}: {:?}\nstdout:\n{out}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

fn load(dir: &Path) -> (PathBuf, Config) {
    let path = dir.join("fieldgate.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let loaded = config::load_with_env(&path, &[]).unwrap();
    (path, loaded.config)
}

fn store_config(config: &Config) -> fieldgate::config::StoreConfig {
    fieldgate::config::StoreConfig {
        max_age: Duration::from_secs(100 * 365 * 86_400),
        ..config.store.clone()
    }
}

/// A write entry as the write desk records it: the detail is the result
/// message.
fn write(at: SystemTime, detail: Value) -> HistoryEntry {
    HistoryEntry {
        at,
        kind: HistoryKind::Write,
        subject: format!(
            "{}/{}",
            detail["device"].as_str().unwrap(),
            detail["tag"].as_str().unwrap()
        ),
        event: detail["result"].as_str().unwrap().to_owned(),
        detail: detail.to_string(),
    }
}

#[allow(clippy::too_many_arguments)]
fn detail(
    id: Option<&str>,
    device: &str,
    tag: &str,
    v: Value,
    by: Option<&str>,
    source: &str,
    result: &str,
    reason: Option<(&str, &str)>,
    old: Value,
    written: Value,
    read_back: Value,
    ts: &str,
) -> Value {
    json!({
        "id": id, "device": device, "tag": tag, "v": v, "by": by, "source": source,
        "result": result, "reason": reason.map(|r| r.0), "message": reason.map(|r| r.1),
        "old": old, "written": written, "read_back": read_back,
        "ts": ts, "received": ts, "took_ms": 12,
    })
}

/// What a shift of writes leaves: a verified setpoint, a refusal, a reset
/// with no answer, a write to another device, a detail cut short.
fn shift() -> Vec<HistoryEntry> {
    vec![
        write(
            t(0),
            detail(
                Some("abc"),
                "pump1",
                "setpoint",
                json!(42.5),
                Some("jdoe"),
                "mqtt",
                "verified",
                None,
                json!(40.0),
                json!(42.5),
                json!(42.5),
                "2024-12-07T13:40:00.000Z",
            ),
        ),
        write(
            t(60),
            detail(
                None,
                "pump1",
                "setpoint",
                json!(150),
                None,
                "http",
                "rejected",
                Some(("out_of_range", "out of range: 150 above max 100")),
                Value::Null,
                Value::Null,
                Value::Null,
                "2024-12-07T13:41:00.000Z",
            ),
        ),
        write(
            t(120),
            detail(
                Some("r-7"),
                "pump1",
                "reset",
                json!(true),
                Some("scada"),
                "sparkplug",
                "unknown",
                None,
                json!(false),
                json!(true),
                Value::Null,
                "2024-12-07T13:42:00.000Z",
            ),
        ),
        write(
            t(180),
            detail(
                None,
                "tank2",
                "setpoint",
                json!(3),
                Some("jdoe"),
                "mqtt",
                "written",
                None,
                json!(2),
                json!(3),
                Value::Null,
                "2024-12-07T13:43:00.000Z",
            ),
        ),
        // Not JSON: still listed, with what the entry itself says.
        HistoryEntry {
            at: t(240),
            kind: HistoryKind::Write,
            subject: "tank2/level_sp".into(),
            event: "written".into(),
            detail: "{\"device\":\"tank2\",\"ta".into(),
        },
    ]
}

async fn record(h: &StoreHandle, entries: Vec<HistoryEntry>) {
    h.record(entries).await.unwrap();
    h.flush().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_lists_the_writes_while_the_gateway_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, config) = load(dir.path());
    let (h, guard) = store::open(&store_config(&config)).unwrap();
    // An alarm change beside them is not a write.
    let mut entries = vec![HistoryEntry {
        at: t(1),
        kind: HistoryKind::Alarm,
        subject: "pump1_hot".into(),
        event: "active_unacked".into(),
        detail: "{}".into(),
    }];
    entries.extend(shift());
    record(&h, entries).await;
    let file = config.store.path.to_str().unwrap().to_owned();

    // The table, newest last, from the config as a technician types it.
    let out = ok(&["writes", "-c", config_path.to_str().unwrap()]);
    let lines: Vec<&str> = out.lines().collect();
    let head = lines[0];
    for h in [
        "TIME (UTC)",
        "DEVICE/TAG",
        "SOURCE",
        "BY",
        "OLD → WRITTEN (READ BACK)",
        "RESULT",
        "REASON",
    ] {
        assert!(head.contains(h), "{h} not in {head}");
    }
    let rows = &lines[1..6];
    let expect: [&[&str]; 5] = [
        &[
            "2024-12-07 13:40:00",
            "pump1/setpoint",
            "mqtt",
            "jdoe",
            "40.0 → 42.5 (42.5)",
            "verified",
        ],
        &[
            "2024-12-07 13:41:00",
            "pump1/setpoint",
            "http",
            "asked 150",
            "rejected",
            "out of range: 150 above max 100",
        ],
        &[
            "pump1/reset",
            "sparkplug",
            "scada",
            "false → true",
            "unknown",
        ],
        &["tank2/setpoint", "2 → 3", "written"],
        &[
            "2024-12-07 13:44:00",
            "tank2/level_sp",
            "written",
            "unreadable detail: {\"device\":\"tank2\",\"ta",
        ],
    ];
    for (row, cells) in rows.iter().zip(expect) {
        for cell in cells {
            assert!(row.contains(cell), "{cell} not in {row}\n{out}");
        }
    }
    assert!(!out.contains("pump1_hot"), "{out}");
    assert!(
        out.contains("5 writes, oldest first: 1 verified, 2 written, 1 unknown, 1 rejected."),
        "{out}"
    );
    assert!(!out.contains("--limit"), "{out}");

    // JSON: the recorded result messages, as an array, oldest first.
    let out = ok(&["writes", "--store", &file, "--json"]);
    let items: Value = serde_json::from_str(&out).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(
        items[0],
        serde_json::from_str::<Value>(&shift()[0].detail).unwrap()
    );
    assert_eq!(items[0]["id"], "abc");
    assert_eq!(items[0]["read_back"], 42.5);
    assert_eq!(items[1]["reason"], "out_of_range");
    assert_eq!(items[2]["v"], true);
    // The unreadable one: device, tag, result and time from the entry.
    assert_eq!(
        items[4],
        json!({
            "device": "tank2", "tag": "level_sp", "result": "written",
            "ts": "2024-12-07T13:44:00.000Z", "detail": "{\"device\":\"tank2\",\"ta",
        })
    );

    // Filters: a device, a tag, both.
    let out = ok(&["writes", "--store", &file, "--device", "pump1"]);
    assert!(out.contains("3 writes"), "{out}");
    assert!(!out.contains("tank2"), "{out}");
    let out = ok(&["writes", "--store", &file, "--tag", "setpoint", "--json"]);
    let items: Value = serde_json::from_str(&out).unwrap();
    let tags: Vec<(&str, &str)> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["device"].as_str().unwrap(), i["result"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tags,
        [
            ("pump1", "verified"),
            ("pump1", "rejected"),
            ("tank2", "written")
        ]
    );
    let out = ok(&[
        "writes", "--store", &file, "--device", "pump1", "--tag", "reset",
    ]);
    assert!(out.contains("1 write, oldest first: 1 unknown."), "{out}");
    let out = ok(&["writes", "--store", &file, "--device", "pump9"]);
    assert_eq!(out, "No writes recorded to device pump9.\n");

    // --limit: the newest N, and a word that older ones were left out.
    let out = ok(&["writes", "--store", &file, "--limit", "2"]);
    assert!(out.contains("2 writes, oldest first: 2 written."), "{out}");
    assert!(out.contains("tank2/setpoint") && out.contains("tank2/level_sp"));
    assert!(!out.contains("pump1"), "{out}");
    assert!(
        out.contains("Older writes not shown: --limit N shows more."),
        "{out}"
    );
    let out = ok(&["writes", "--store", &file, "--limit", "1", "--json"]);
    let items: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["tag"], "level_sp");
    // --limit 0 is bad usage.
    assert_eq!(
        bin(&["writes", "--store", &file, "--limit", "0"])
            .status
            .code(),
        Some(2)
    );

    // --since: only the last hour (the shift above is long past).
    let out = ok(&["writes", "--store", &file, "--since", "1h"]);
    assert_eq!(out, "No writes recorded in the last 1h.\n");
    let late = SystemTime::now() - Duration::from_secs(600);
    let ts = humantime::format_rfc3339_millis(late).to_string();
    record(
        &h,
        vec![write(
            late,
            detail(
                Some("late"),
                "pump1",
                "setpoint",
                json!(41),
                Some("night shift"),
                "http",
                "verified",
                None,
                json!(42.5),
                json!(41),
                json!(41),
                &ts,
            ),
        )],
    )
    .await;
    let out = ok(&["writes", "--store", &file, "--since", "1h", "--json"]);
    let items: Value = serde_json::from_str(&out).unwrap();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], "late");
    assert_eq!(items[0]["by"], "night shift");

    drop(h);
    guard.close().unwrap();
    // After the gateway stopped, the same.
    let out = ok(&["writes", "--store", &file]);
    assert!(out.contains("6 writes"), "{out}");
}

#[test]
fn a_store_without_writes_says_so_and_a_missing_one_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, config) = load(dir.path());
    // The gateway never ran: no store yet.
    let o = bin(&["writes", "-c", config_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&config.store.path.display().to_string()),
        "{err}"
    );
    assert!(o.stdout.is_empty());

    let (_h, guard) = store::open(&store_config(&config)).unwrap();
    guard.close().unwrap();
    let file = config.store.path.to_str().unwrap();
    assert_eq!(ok(&["writes", "--store", file]), "No writes recorded.\n");
    assert_eq!(ok(&["writes", "--store", file, "--json"]).trim(), "[]");
}
