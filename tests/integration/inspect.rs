//! `fieldgate alarms` and `fieldgate workorders` against a real store that
//! holds what the rules task saves: the engine, the work-order book and the
//! meters, built from real `rules` types, plus their history. The store
//! stays open while the binary reads it, as the gateway would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fieldgate::clock::WallMap;
use fieldgate::config::{self, Config};
use fieldgate::contract::rules as payload;
use fieldgate::reading::Quality;
use fieldgate::rules::{
    AlarmEvent, Engine, MeterState, STATE_ENGINE, STATE_METERS, STATE_WORKORDERS, Timestamp,
    WoChange, WoContext, WorkOrder, WorkOrderBook,
};
use fieldgate::store::{self, HistoryEntry, HistoryKind, Kind, OutMessage, StoreHandle};
use fieldgate::tag::Value;

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
  { name = "temp", address = 30001, type = "f32", unit = "degC" },
  { name = "pressure", address = 30003, type = "f32", unit = "bar" },
]

[[rules]]
name = "pump1_hot"
tag = "pump1.temp"
condition = "above"
limit = 80.0
priority = "high"

[rules.workorder]
title = "Pump 1 too hot: {value} {unit} above {limit} {unit}, please check the bearing and the cooling water supply"

[[rules]]
name = "pump1_low_pressure"
tag = "pump1.pressure"
condition = "below"
limit = 2.0

[[rules]]
name = "pump1_very_hot"
tag = "pump1.temp"
condition = "above"
limit = 120.0
"#;

/// 2026-11-21 06:00:00 UTC, and `s` seconds later.
fn t(s: u64) -> Timestamp {
    Timestamp::from_millis(1_795_240_800_000 + s * 1000)
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(args)
        .env_remove("FIELDGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs the binary and expects exit code 0; returns stdout.
fn ok(args: &[&str]) -> String {
    let o = bin(args);
    assert!(
        o.status.success(),
        "{args:?}: {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn load(dir: &Path) -> (PathBuf, Config) {
    let path = dir.join("fieldgate.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let loaded = config::load_with_env(&path, &[]).unwrap();
    (path, loaded.config)
}

/// What the gateway knows after a short, eventful run.
struct Plant {
    engine: Engine,
    book: WorkOrderBook,
    history: Vec<HistoryEntry>,
    random: u128,
}

impl Plant {
    fn new(config: &Config) -> Plant {
        Plant {
            engine: Engine::new(&config.rules, &config.devices, &config.alarms).unwrap(),
            book: WorkOrderBook::new(&config.workorders),
            history: Vec::new(),
            random: 0x5eed,
        }
    }

    /// One reading: its alarm events, and the work orders they raise, go
    /// into the history as the rules task records them.
    fn read(&mut self, config: &Config, tag: &str, v: f64, at: Timestamp) {
        let events = self
            .engine
            .observe_named(tag, Some(&Value::Float(v)), &Quality::Good, at);
        for event in events {
            self.alarm_changed(config, &event);
            let rule = config
                .rules
                .iter()
                .find(|r| *r.name == *event.rule)
                .unwrap();
            self.random += 1;
            let changes = self.book.on_alarm_event(
                &event,
                rule,
                &WoContext::of(config),
                Vec::new(),
                self.random,
            );
            self.work_orders_changed(&changes, at);
        }
    }

    fn alarm_changed(&mut self, config: &Config, event: &AlarmEvent) {
        let rule = config
            .rules
            .iter()
            .find(|r| *r.name == *event.rule)
            .unwrap();
        let detail = payload::alarm(
            event,
            rule,
            event.at,
            1,
            "01KBX3J8W5R2Q9T7M4N6P0ZC1D",
            &WallMap::IDENTITY,
        )
        .unwrap();
        self.history.push(HistoryEntry {
            at: event.at.to_system_time(),
            kind: HistoryKind::Alarm,
            subject: event.rule.to_string(),
            event: event.to.as_str().to_string(),
            detail: String::from_utf8(detail).unwrap(),
        });
    }

    fn work_orders_changed(&mut self, changes: &[WoChange], at: Timestamp) {
        for change in changes {
            let (event, wo) = match change {
                WoChange::Raised(wo) => ("raised", wo),
                WoChange::Updated(wo) => (wo.status.as_str(), wo),
                WoChange::Cleared(wo) => ("closed", wo),
                other => panic!("unexpected {other:?}"),
            };
            self.history.push(HistoryEntry {
                at: at.to_system_time(),
                kind: HistoryKind::WorkOrder,
                subject: wo.id.clone(),
                event: event.to_string(),
                detail: String::from_utf8(
                    payload::work_order(wo, 1, "01KBX3J8W5R2Q9T7M4N6P0ZC1D", &WallMap::IDENTITY)
                        .unwrap(),
                )
                .unwrap(),
            });
        }
    }

    fn status(&mut self, id: &str, json: &str, at: Timestamp) {
        let update = fieldgate::contract::inbound::work_order_status(id, json.as_bytes())
            .unwrap()
            .unwrap();
        let changes = self.book.on_status(id, &update, at).unwrap();
        self.work_orders_changed(&changes, at);
    }

    fn work_order_of(&self, rule: &str) -> WorkOrder {
        self.book
            .all()
            .find(|w| w.rule() == Some(rule))
            .unwrap()
            .clone()
    }
}

/// The run: pump 1 gets hot (a work order the CMMS accepts), its pressure
/// drops and recovers (a work order the CMMS closes); `pump1_very_hot`
/// never trips.
fn eventful_run(config: &Config) -> Plant {
    let mut plant = Plant::new(config);
    plant.read(config, "pump1.temp", 60.0, t(0));
    plant.read(config, "pump1.pressure", 3.0, t(0));
    plant.read(config, "pump1.temp", 91.5, t(10));
    plant.read(config, "pump1.pressure", 1.2, t(20));
    plant.read(config, "pump1.pressure", 3.1, t(30));
    let hot = plant.work_order_of("pump1_hot").id;
    let low = plant.work_order_of("pump1_low_pressure").id;
    plant.status(&hot, r#"{"status":"accepted","ref":"CMMS-42"}"#, t(40));
    plant.status(&low, r#"{"status":"closed","ref":"CMMS-7"}"#, t(50));
    plant
}

/// Saves the plant as the rules task does (and one alarm message still
/// waiting for the broker).
async fn save(h: &StoreHandle, plant: &Plant) {
    h.insert(vec![OutMessage {
        topic: "fieldgate/plant-a/gw1/alarms/pump1_hot".into(),
        seq: 1,
        payload: b"{}".to_vec(),
        qos: 1,
        retain: true,
        kind: Kind::Alarm,
        created_at: t(10),
    }])
    .await
    .unwrap();
    let engine = serde_json::to_vec(&plant.engine.save()).unwrap();
    let book = serde_json::to_vec(&plant.book).unwrap();
    let meters = serde_json::to_vec(&Vec::<MeterState>::new()).unwrap();
    h.save_state(STATE_ENGINE, engine).await.unwrap();
    h.save_state(STATE_WORKORDERS, book).await.unwrap();
    h.save_state(STATE_METERS, meters).await.unwrap();
    h.record(plant.history.clone()).await.unwrap();
    h.flush().await.unwrap();
}

fn store_config(config: &Config) -> fieldgate::config::StoreConfig {
    fieldgate::config::StoreConfig {
        // Old test messages (2026) must not be evicted by age.
        max_age: Duration::from_secs(100 * 365 * 86_400),
        ..config.store.clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_sees_alarms_and_work_orders_while_the_gateway_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (config_path, config) = load(dir.path());
    let plant = eventful_run(&config);
    let (h, guard) = store::open(&store_config(&config)).unwrap();
    save(&h, &plant).await;
    let file = config.store.path.to_str().unwrap().to_owned();
    let hot = plant.work_order_of("pump1_hot");
    let low = plant.work_order_of("pump1_low_pressure");

    // alarms: needs attention first, then the rest, then what happened.
    let out = ok(&["alarms", "--store", &file]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("RULE"), "{out}");
    assert!(lines[0].contains("SINCE (UTC)") && lines[0].contains("SHELVED UNTIL"));
    assert!(lines[1].starts_with("pump1_hot") && lines[1].contains("active_unacked"));
    assert!(lines[1].contains("2026-11-21 06:00:10"), "{out}");
    assert!(lines[2].starts_with("pump1_low_pressure") && lines[2].contains("returned_unacked"));
    assert!(lines[3].starts_with("pump1_very_hot") && lines[3].contains("normal"));
    assert!(out.contains("3 alarms: 1 active, 2 awaiting acknowledgement, 0 shelved."));
    assert!(out.contains("Recent changes"), "{out}");
    assert!(out.contains("value 91.5 (limit 80.0)"), "{out}");
    assert!(
        out.contains("Outbox: 1 message waiting for the broker"),
        "{out}"
    );
    // Only alarm changes among them.
    assert!(!out.contains(&hot.id), "{out}");

    // --history N keeps the newest N; 0 hides them.
    let out = ok(&["alarms", "--store", &file, "--history", "1"]);
    let recent = out.split("Recent changes").nth(1).unwrap();
    assert_eq!(recent.matches("pump1_").count(), 1, "{out}");
    assert!(recent.contains("normal") || recent.contains("returned_unacked"));
    let out = ok(&["alarms", "--store", &file, "--history", "0"]);
    assert!(!out.contains("Recent changes"), "{out}");

    // The same through the config, as a technician would type it.
    let out = ok(&["alarms", "-c", config_path.to_str().unwrap()]);
    assert!(out.contains("pump1_hot"), "{out}");

    // JSON for scripts.
    let out = ok(&["alarms", "--store", &file, "--json"]);
    let alarms: serde_json::Value = serde_json::from_str(&out).unwrap();
    let alarms = alarms.as_array().unwrap();
    assert_eq!(alarms.len(), 3);
    assert_eq!(alarms[0]["rule"], "pump1_hot");
    assert_eq!(alarms[0]["state"], "active_unacked");
    assert_eq!(alarms[0]["active"], true);
    assert_eq!(alarms[0]["since"], "2026-11-21T06:00:10.000Z");
    assert_eq!(alarms[1]["acked"], false);

    // workorders --open: the accepted one, not the closed one.
    let out = ok(&["workorders", "--open", "--store", &file]);
    assert!(out.lines().next().unwrap().starts_with("ID"), "{out}");
    let row = out.lines().find(|l| l.starts_with(&hot.id)).unwrap();
    for cell in [
        "corrective",
        "accepted",
        "high",
        "CMMS-42",
        "2026-11-21 06:00:10",
    ] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    // The long title is cut.
    assert!(row.contains("Pump 1 too hot: 91.5 degC"), "{row}");
    assert!(row.ends_with('…'), "{row}");
    let table = out.split("\n\n").next().unwrap();
    assert!(!table.contains(&low.id), "{out}");
    assert!(out.contains("2 work orders kept, 1 open."), "{out}");
    // Recent work-order changes: raised, accepted, and the closed one.
    let recent = out.split("Recent changes").nth(1).unwrap();
    assert!(recent.contains("raised") && recent.contains("accepted"));
    assert!(
        recent.contains(&low.id) && recent.contains("closed"),
        "{out}"
    );

    // All kept work orders.
    let out = ok(&["workorders", "--store", &file, "--history", "0"]);
    let row = out.lines().find(|l| l.starts_with(&low.id)).unwrap();
    assert!(row.contains("closed") && row.contains("CMMS-7"), "{row}");

    // JSON: the published work-order message, without seq.
    let out = ok(&["workorders", "--open", "--store", &file, "--json"]);
    let orders: serde_json::Value = serde_json::from_str(&out).unwrap();
    let orders = orders.as_array().unwrap();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["id"], hot.id.as_str());
    assert_eq!(orders[0]["status"], "accepted");
    assert_eq!(orders[0]["schema"], "fieldgate.workorder/1");
    assert_eq!(orders[0]["cmms"]["ref"], "CMMS-42");
    assert!(orders[0].get("seq").is_none());

    drop(h);
    guard.close().unwrap();
    // After the gateway stopped, the same.
    let out = ok(&["workorders", "--store", &file]);
    assert!(out.contains(&hot.id), "{out}");
}

#[test]
fn a_store_without_saved_state_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (_, config) = load(dir.path());
    let (_h, guard) = store::open(&store_config(&config)).unwrap();
    guard.close().unwrap();
    let file = config.store.path.to_str().unwrap();
    let out = ok(&["alarms", "--store", file]);
    assert!(
        out.contains("No alarm state saved yet — the gateway has not run rules on this store"),
        "{out}"
    );
    assert!(out.contains("Recent changes: none recorded."), "{out}");
    let out = ok(&["workorders", "--open", "--store", file]);
    assert!(out.contains("No work orders saved yet"), "{out}");
    assert_eq!(ok(&["alarms", "--store", file, "--json"]).trim(), "[]");
    assert_eq!(ok(&["workorders", "--store", file, "--json"]).trim(), "[]");
}

#[test]
fn a_missing_store_or_a_broken_config_exits_1_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere").join("fieldgate.db");
    for command in ["alarms", "workorders"] {
        let o = bin(&[command, "--store", missing.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(1));
        let err = stderr(&o);
        assert!(err.contains(&missing.display().to_string()), "{err}");
        assert!(
            err.contains("has `fieldgate run` used this config?"),
            "{err}"
        );
        assert!(stdout(&o).is_empty());
    }
    // The config is fine but the gateway never ran: no store yet.
    let (config_path, config) = load(dir.path());
    let o = bin(&["alarms", "-c", config_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&config.store.path.display().to_string()),
        "{}",
        stderr(&o)
    );
    // A config with errors: its problems, as `check` prints them.
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "[gateway]\nid = \"gw1\"\nbogus = 1\n").unwrap();
    let o = bin(&["workorders", "-c", broken.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("bogus"), "{err}");
    assert!(err.contains("broken.toml"), "{err}");
}
