//! What operators and the CMMS send in over MQTT, read into typed requests
//! (ack and shelve payloads, any topic, and work-order status messages
//! applied to a book holding one open work order). None of them may panic; a status either applies or is refused
//! with a reason, and never reopens or duplicates a work order.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use fieldgate::config::Config;
use fieldgate::reading::Quality;
use fieldgate::contract::inbound::{self, Request};
use fieldgate::contract::Topics;
use fieldgate::rules::{Engine, Timestamp, WoContext, WorkOrderBook};
use fieldgate::tag::Value;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
[gateway]
id = "gw"
site = "fuzz"
[http]
listen = ""
[[devices]]
name = "pump1"
tcp = "127.0.0.1:5020"
tags = [{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }]
[[rules]]
name = "hot"
tag = "pump1.temp"
condition = "above"
limit = 80.0
"#;

/// A book with one open work order, and its id.
fn book() -> &'static (WorkOrderBook, String) {
    static BOOK: OnceLock<(WorkOrderBook, String)> = OnceLock::new();
    BOOK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("fieldgate-fuzz-inbound-{}.toml", std::process::id()));
        std::fs::write(&path, CONFIG).expect("write the fuzz config");
        let config: Config = fieldgate::config::load_with_env(&path, &[]).expect("fuzz config loads").config;
        let mut engine = Engine::new(&config.rules, &config.devices, &config.alarms).expect("engine");
        let mut book = WorkOrderBook::new(&config.workorders);
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let events = engine.observe_named("pump1.temp", Some(&Value::Float(90.0)), &Quality::Good, at);
        let ctx = WoContext::of(&config);
        for e in &events {
            book.on_alarm_event(e, &config.rules[0], &ctx, Vec::new(), 7);
        }
        let id = book.open().next().expect("a work order was raised").id.clone();
        (book, id)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else {
        return;
    };
    let topics = Topics::new("fieldgate", "fuzz", "gw");
    let retained = which & 0x80 != 0;
    let received = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_050);
    match which % 4 {
        0 => {
            let _ = inbound::read(&topics, "fieldgate/fuzz/gw/alarms/hot/ack", payload, retained, received);
        }
        1 => {
            let _ = inbound::read(&topics, "fieldgate/fuzz/gw/alarms/hot/shelve", payload, retained, received);
        }
        2 => {
            // Any topic at all, up to the first NUL; the rest is the payload.
            let (topic, rest) = payload.split_at(payload.iter().position(|b| *b == 0).unwrap_or(payload.len()));
            let _ = inbound::read(&topics, &String::from_utf8_lossy(topic), rest, retained, received);
        }
        _ => {
            let (book, id) = book();
            let mut book = book.clone();
            let at = Timestamp::from(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100));
            let topic = format!("{}/status", topics.workorder(id));
            if let Ok(Some(Request::WorkOrderStatus { update, .. })) = inbound::read(&topics, &topic, payload, retained, received) {
                if book.on_status(id, &update, at).is_ok() {
                    assert_eq!(book.all().count(), 1, "a status never adds a work order");
                }
            }
        }
    }
});
