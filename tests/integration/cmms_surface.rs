//! Where a technician sees the CMMS connectors: the `/api/status` document
//! with a `cmms` section, checked against its schema, and `fieldgate
//! workorders` over a store file that holds deliveries a CMMS refused
//! (parked), read while the store is open as the gateway would hold it.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::schema;
use fieldgate::clock::WallMap;
use fieldgate::cmms::ConnectorStats;
use fieldgate::config::{self, Config};
use fieldgate::contract::rules as payload;
use fieldgate::modbus::Probes;
use fieldgate::reading::Quality;
use fieldgate::rules::{
    Engine, STATE_WORKORDERS, Timestamp, WoChange, WoContext, WorkOrder, WorkOrderBook,
};
use fieldgate::store::{self, Delivery, DeliveryKind, ParkedDelivery, SinkFigures, StoreHandle};
use fieldgate::tag::Value;
use fieldgate::telemetry::cmms_view::{self, PARKED_SHOWN};
use fieldgate::telemetry::{ProcessStats, SinkQueues, Telemetry};

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
tags = [{ name = "temp", address = 30001, type = "f32", unit = "degC" }]

[[rules]]
name = "pump1_hot"
tag = "pump1.temp"
condition = "above"
limit = 80.0
priority = "high"

[rules.workorder]
title = "Pump 1 too hot: {value} {unit}"
"#;

const STORE_ID: &str = "01KBX3J8W5R2Q9T7M4N6P0ZC1D";

fn load(dir: &Path) -> Config {
    let path = dir.join("fieldgate.toml");
    std::fs::write(&path, CONFIG).unwrap();
    config::load_with_env(&path, &[]).unwrap().config
}

/// 2026-11-21 06:00:00 UTC, and `s` seconds later.
fn t(s: u64) -> Timestamp {
    Timestamp::from_millis(1_795_240_800_000 + s * 1000)
}

/// The book after pump 1 got hot: one open work order.
fn hot_pump(config: &Config) -> (WorkOrderBook, WorkOrder) {
    let mut engine = Engine::new(&config.rules, &config.devices, &config.alarms).unwrap();
    let mut book = WorkOrderBook::new(&config.workorders);
    let events = engine.observe_named(
        "pump1.temp",
        Some(&Value::Float(91.5)),
        &Quality::Good,
        t(10),
    );
    let rule = &config.rules[0];
    let mut raised = None;
    for event in &events {
        for change in book.on_alarm_event(event, rule, &WoContext::of(config), Vec::new(), 7) {
            if let WoChange::Raised(wo) = change {
                raised = Some(*wo);
            }
        }
    }
    (book, raised.expect("a work order raised"))
}

fn work_order_payload(wo: &WorkOrder) -> Vec<u8> {
    payload::work_order(wo, 1, STORE_ID, &WallMap::IDENTITY).unwrap()
}

fn delivery(sink: &str, kind: DeliveryKind, key: &str, event: &str, payload: Vec<u8>) -> Delivery {
    Delivery {
        sink: sink.into(),
        kind,
        key: key.into(),
        event: event.into(),
        topic: format!("fieldgate/plant-a/gw1/workorders/{key}"),
        payload,
        created_at: SystemTime::now(),
    }
}

/// `/api/status` with two connectors, one with parked work orders and one
/// whose queue the store did not report, reads as its schema says.
#[test]
fn the_status_document_with_connectors_matches_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path());
    let (_, wo) = hot_pump(&config);
    let telemetry = Telemetry::new(&config, Probes::new(&config), SystemTime::now());
    let mut snapshot = telemetry.snapshot(None, ProcessStats::default());

    let maximo = Arc::new(ConnectorStats::default());
    maximo.delivered.store(4, Ordering::Relaxed);
    maximo.created.store(2, Ordering::Relaxed);
    maximo.parked.store(25, Ordering::Relaxed);
    maximo.reachable.store(true, Ordering::Relaxed);
    if let Ok(mut e) = maximo.last_error.lock() {
        *e = Some("400 Bad Request: BMXAA4195E asset P-101 is not valid".into());
    }
    let parked: Vec<ParkedDelivery> = (1..=25)
        .map(|i| ParkedDelivery {
            id: i,
            delivery: delivery(
                "maximo",
                DeliveryKind::WorkOrder,
                &wo.key,
                "raised",
                work_order_payload(&wo),
            ),
            error: "400 Bad Request: BMXAA4195E asset P-101 is not valid".into(),
            parked_at: UNIX_EPOCH + Duration::from_secs(1_795_240_800 + i as u64),
        })
        .chain(std::iter::once(ParkedDelivery {
            id: 26,
            delivery: delivery(
                "maximo",
                DeliveryKind::Meter,
                "pump1_hours",
                "reading",
                b"{}".to_vec(),
            ),
            error: "404 meter not found".into(),
            parked_at: UNIX_EPOCH + Duration::from_secs(1_795_240_700),
        }))
        .collect();
    let queues = SinkQueues {
        figures: Some(vec![SinkFigures {
            sink: "maximo".into(),
            pending: 1,
            parked: 26,
            oldest: Some(snapshot.at - Duration::from_secs(30)),
        }]),
        parked: Some(parked),
    };
    snapshot.cmms = cmms_view::connectors(
        &[
            ("maximo".into(), "maximo", maximo),
            (
                "hook".into(),
                "webhook",
                Arc::new(ConnectorStats::default()),
            ),
        ],
        &queues,
    );
    // The second connector's queue unknown: its figures are null.
    snapshot.cmms[1].queue = None;

    let json = fieldgate::http::status_json(&snapshot, telemetry.seen(), false);
    if let Err(e) = schema::validator("api-status.json").validate(&json) {
        panic!("/api/status does not match docs/schemas/api-status.json: {e}\n{json:#}");
    }
    let c = &json["cmms"][0];
    assert_eq!(c["name"], "maximo");
    assert_eq!(c["kind"], "maximo");
    assert_eq!(
        (c["pending"].as_u64(), c["parked"].as_u64()),
        (Some(1), Some(26))
    );
    assert_eq!(c["parked_total"], 25);
    assert_eq!(c["oldest_pending_age_s"], 30.0);
    let shown = c["parked_deliveries"].as_array().unwrap();
    assert_eq!(shown.len(), PARKED_SHOWN);
    assert_eq!(shown[0]["id"], 25, "newest first");
    assert_eq!(shown[0]["work_order"]["id"], wo.id.as_str());
    assert_eq!(shown[0]["work_order"]["title"], wo.title.as_str());
    assert_eq!(shown[0]["parked_at"], "2026-11-21T06:00:25.000Z");
    assert!(shown[0]["error"].as_str().unwrap().contains("BMXAA4195E"));
    let hook = &json["cmms"][1];
    assert!(hook["pending"].is_null() && hook["parked"].is_null());
    assert_eq!(hook["parked_deliveries"].as_array().map(Vec::len), Some(0));
    assert_eq!(hook["reachable"], false);

    // Without connectors: an empty list.
    snapshot.cmms.clear();
    let json = fieldgate::http::status_json(&snapshot, telemetry.seen(), false);
    assert_eq!(json["cmms"], serde_json::json!([]));
    assert!(schema::validator("api-status.json").is_valid(&json));
}

fn bin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(args)
        .env_remove("FIELDGATE_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

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

/// Parks the oldest pending delivery of `sink` with `error`.
async fn park_next(h: &StoreHandle, sink: &str, error: &str) {
    let pending = h.sink_pending(sink, 0, 1).await.unwrap();
    h.sink_park(pending[0].id, error.into()).await.unwrap();
}

/// A work order Maximo refused and a meter reading MaintainX refused show
/// after the work orders, with the CMMS's text; in `--json` the work order
/// carries them in `parked`. Before any is parked, nothing is said.
/// (Runs on the store's sink queue: `StoreHandle::insert_deliveries`,
/// `sink_park` and `Inspector::parked_deliveries`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fieldgate_workorders_lists_what_the_cmms_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path());
    let (book, wo) = hot_pump(&config);
    let store_config = config::StoreConfig {
        // Old test times (2026) must not be evicted by age.
        max_age: Duration::from_secs(100 * 365 * 86_400),
        ..config.store.clone()
    };
    let (h, guard) = store::open(&store_config).unwrap();
    h.save_state(STATE_WORKORDERS, serde_json::to_vec(&book).unwrap())
        .await
        .unwrap();
    h.insert_deliveries(vec![
        delivery(
            "maximo",
            DeliveryKind::WorkOrder,
            &wo.key,
            "raised",
            work_order_payload(&wo),
        ),
        delivery(
            "maintainx",
            DeliveryKind::Meter,
            "pump1_hours",
            "reading",
            br#"{"schema":"fieldgate.meter/1","meter":"pump1_hours","kind":"runtime","value":12.5,"ts":"2026-11-21T06:00:00.000Z"}"#.to_vec(),
        ),
    ])
    .await
    .unwrap();
    h.flush().await.unwrap();
    let file = config.store.path.to_str().unwrap().to_owned();

    // Waiting, not refused: nothing to say.
    let out = ok(&["workorders", "--store", &file]);
    assert!(out.contains(&wo.id), "{out}");
    assert!(!out.contains("Parked in CMMS connectors"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&ok(&["workorders", "--store", &file, "--json"])).unwrap();
    assert!(json[0].get("parked").is_none(), "{json:#}");

    park_next(
        &h,
        "maximo",
        "400 Bad Request: BMXAA4195E asset P-101 is not valid",
    )
    .await;
    park_next(&h, "maintainx", "404 Not Found: meter 77 does not exist").await;

    let out = ok(&["workorders", "--store", &file, "--history", "0"]);
    let section = out
        .split("Parked in CMMS connectors")
        .nth(1)
        .unwrap_or_else(|| panic!("no parked section in\n{out}"));
    assert!(section.contains("2 deliveries"), "{section}");
    let row = section
        .lines()
        .find(|l| l.starts_with("maximo"))
        .unwrap_or_else(|| panic!("no maximo row in\n{section}"));
    for cell in [
        wo.id.as_str(),
        "Pump 1 too hot",
        "raised",
        "BMXAA4195E asset P-101 is not valid",
    ] {
        assert!(row.contains(cell), "{cell} not in {row}");
    }
    let row = section
        .lines()
        .find(|l| l.starts_with("maintainx"))
        .unwrap();
    assert!(
        row.contains("meter pump1_hours") && row.contains("404 Not Found"),
        "{row}"
    );
    // --open shows them too: a refused work order is still open.
    assert!(ok(&["workorders", "--open", "--store", &file]).contains("Parked in CMMS connectors"));

    let json: serde_json::Value =
        serde_json::from_str(&ok(&["workorders", "--store", &file, "--json"])).unwrap();
    let parked = json[0]["parked"]
        .as_array()
        .unwrap_or_else(|| panic!("{json:#}"));
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0]["connector"], "maximo");
    assert_eq!(parked[0]["event"], "raised");
    assert!(parked[0]["error"].as_str().unwrap().contains("BMXAA4195E"));
    assert!(parked[0]["parked_at"].as_str().unwrap().ends_with('Z'));

    drop(h);
    guard.close().unwrap();
}
