//! Acquisition over loopback against the built-in simulator: the real
//! Modbus TCP / RTU stacks on both sides, fieldgate's pollers in between.
//! Every wait is bounded.

use std::collections::HashMap;
use std::time::Duration;

use fieldgate::config::Config;
use fieldgate::modbus;
use fieldgate::reading::{Batch, Quality};
use fieldgate::shutdown::{self, ShutdownTrigger};
use fieldgate::tag::Value;
use tokio::sync::mpsc;

use crate::common::{gateway, sim};

/// The config of `text`; the pollers need no data folder, so the file's
/// folder goes at once.
fn load(text: &str) -> Config {
    let dir = tempfile::tempdir().unwrap();
    gateway::load(dir.path(), text).0
}

/// Starts the pollers of `config`; batches arrive on the receiver.
fn start(
    config: &Config,
) -> (
    ShutdownTrigger,
    mpsc::Receiver<Batch>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (trigger, listener) = shutdown::channel();
    let (tx, rx) = mpsc::channel(256);
    let handles = modbus::spawn_pollers(config, tx, &listener);
    (trigger, rx, handles)
}

async fn stop(trigger: ShutdownTrigger, handles: Vec<tokio::task::JoinHandle<()>>) {
    trigger.trigger();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("poller stops within 5 s of shutdown")
            .unwrap();
    }
}

async fn next_batch(rx: &mut mpsc::Receiver<Batch>, device: &str) -> Batch {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let batch = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no batch from {device} within 10 s"))
            .expect("channel open");
        if batch.device.name == device {
            return batch;
        }
    }
}

fn values(batch: &Batch) -> HashMap<String, (Option<Value>, Quality)> {
    batch
        .readings
        .iter()
        .map(|r| {
            (
                batch.device.tags[r.tag].name.clone(),
                (r.value.clone(), r.quality.clone()),
            )
        })
        .collect()
}

const TYPES: [(&str, &str, &str); 8] = [
    ("u16", "40000", "40000"),
    ("i16", "-1234", "-1234"),
    ("u32", "3000000000", "3000000000"),
    ("i32", "-123456789", "-123456789"),
    ("u64", "9000000000000", "9000000000000"),
    ("i64", "-9000000000000", "-9000000000000"),
    ("f32", "21.5", "21.5"),
    ("f64", "-1234.5678", "-1234.5678"),
];
const ORDERS: [&str; 4] = ["ABCD", "CDAB", "BADC", "DCBA"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_word_order_reads_back_through_the_gateway() {
    // The simulator serves constants of every type in every order; the
    // gateway reads them with the same map.
    let mut sim_points = String::new();
    let mut tags = String::new();
    let mut address = 0u16;
    for (ty, value, _) in TYPES {
        for order in ORDERS {
            let width = match ty {
                "u16" | "i16" => 1,
                "u32" | "i32" | "f32" => 2,
                _ => 4,
            };
            sim_points.push_str(&format!(
                "[[devices.points]]\narea = \"holding\"\naddress = {address}\ntype = \"{ty}\"\nword_order = \"{order}\"\nvalue = {value}\n"
            ));
            tags.push_str(&format!(
                "  {{ name = \"{ty}_{order}\", area = \"holding\", address = {address}, type = \"{ty}\", word_order = \"{order}\" }},\n"
            ));
            address += width;
        }
    }
    let extra_sim = format!(
        r#"[[devices.points]]
area = "holding"
address = {a}
type = "string"
length = 4
value = "PUMP-01"
[[devices.points]]
area = "holding"
address = {b}
type = "string"
length = 4
word_order = "BADC"
value = "PUMP-01"
[[devices.points]]
area = "holding"
address = {c}
type = "bit"
bit = 5
value = true
[[devices.points]]
area = "input"
address = 0
type = "i16"
scale = 0.1
value = -12.3
[[devices.points]]
area = "coil"
address = 3
type = "bool"
value = true
[[devices.points]]
area = "discrete"
address = 7
type = "bool"
value = false
"#,
        a = address,
        b = address + 4,
        c = address + 8
    );
    let sim = sim::start(&format!(
        "seed = 1\n[[devices]]\nname = \"plc\"\nunit = 5\nlisten = \"127.0.0.1:0\"\n{sim_points}{extra_sim}"
    )).await;
    let addr = sim.addr("plc").unwrap();
    let config = load(&format!(
        r#"
[[devices]]
name = "plc"
tcp = "{addr}"
unit = 5
poll_interval = "200ms"
tags = [
{tags}  {{ name = "label", area = "holding", address = {a}, type = "string", length = 4 }},
  {{ name = "label_swapped", area = "holding", address = {b}, type = "string", length = 4, word_order = "BADC" }},
  {{ name = "bit5", area = "holding", address = {c}, type = "bit", bit = 5 }},
  {{ name = "scaled", area = "input", address = 0, type = "i16", scale = 0.1 }},
  {{ name = "coil3", area = "coil", address = 3 }},
  {{ name = "di7", area = "discrete", address = 7 }},
]

[[devices]]
name = "ghost"
tcp = "{addr}"
unit = 9
poll_interval = "200ms"
tags = [ {{ name = "x", address = 40001 }} ]
"#,
        a = address,
        b = address + 4,
        c = address + 8
    ));
    let (trigger, mut rx, handles) = start(&config);
    let batch = next_batch(&mut rx, "plc").await;
    let got = values(&batch);
    for (ty, _, expected) in TYPES {
        for order in ORDERS {
            let name = format!("{ty}_{order}");
            let (value, quality) = &got[&name];
            assert_eq!(quality, &Quality::Good, "{name}");
            let text = value.as_ref().unwrap().to_string();
            assert_eq!(text, expected, "{name}");
        }
    }
    assert_eq!(got["label"].0, Some(Value::Text("PUMP-01".into())));
    assert_eq!(got["label_swapped"].0, Some(Value::Text("PUMP-01".into())));
    assert_eq!(got["bit5"].0, Some(Value::Bool(true)));
    match &got["scaled"].0 {
        Some(Value::Float(x)) => assert!((x + 12.3).abs() < 1e-9, "{x}"),
        other => panic!("scaled: {other:?}"),
    }
    assert_eq!(got["coil3"].0, Some(Value::Bool(true)));
    assert_eq!(got["di7"].0, Some(Value::Bool(false)));

    // A unit id the gateway on the other side does not know: the TCP
    // server answers exception 0x0B, which is a quality, not a value.
    let ghost = next_batch(&mut rx, "ghost").await;
    assert_eq!(ghost.readings[0].value, None);
    assert_eq!(ghost.readings[0].quality.to_string(), "bad:exception:11");

    stop(trigger, handles).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hole_inside_a_merged_read_is_split_around() {
    let sim = sim::start(
        r#"
[[devices]]
name = "meter"
unit = 1
listen = "127.0.0.1:0"
registers = 12
holes = ["5-7"]
"#,
    )
    .await;
    let addr = sim.addr("meter").unwrap();
    // 0-4 and 8-9 merge into one read of 0-9 (gap 3 <= max_gap), which
    // the device refuses; 6 is really unsupported.
    let config = load(&format!(
        r#"
[[devices]]
name = "meter"
tcp = "{addr}"
poll_interval = "100ms"
tags = [
  {{ name = "r0", area = "holding", address = 0 }},
  {{ name = "r4", area = "holding", address = 4 }},
  {{ name = "r6", area = "holding", address = 6 }},
  {{ name = "r8", area = "holding", address = 8 }},
  {{ name = "r9", area = "holding", address = 9 }},
]
"#
    ));
    let (trigger, mut rx, handles) = start(&config);
    for _ in 0..3 {
        let got = values(&next_batch(&mut rx, "meter").await);
        for good in ["r0", "r4", "r8", "r9"] {
            assert_eq!(got[good].1, Quality::Good, "{good}: {got:?}");
        }
        assert_eq!(got["r6"].1.to_string(), "bad:exception:2");
    }
    stop(trigger, handles).await;
    sim.shutdown().await;
}

/// On paused time: the request timeout and the reconnect backoff are
/// tokio timers, and the poller and the simulator share this one thread
/// over loopback, so the seconds of backoff pass at once.
#[tokio::test(start_paused = true)]
async fn a_device_that_dies_reads_bad_and_comes_back() {
    let sim = sim::start(
        r#"
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [ { signal = "bearing_temp", area = "input", address = 0, type = "f32" } ]
"#,
    )
    .await;
    let addr = sim.addr("pump").unwrap();
    let config = load(&format!(
        r#"
[[devices]]
name = "pump"
tcp = "{addr}"
poll_interval = "100ms"
timeout = "200ms"
retries = 0
tags = [ {{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }} ]
"#
    ));
    let (trigger, mut rx, handles) = start(&config);
    let got = values(&next_batch(&mut rx, "pump").await);
    match &got["temp"].0 {
        Some(Value::Float(t)) => assert!((20.0..120.0).contains(t), "bearing temp {t}"),
        other => panic!("{other:?}"),
    }

    sim.set_offline("pump", true).unwrap();
    let mut bad = None;
    for _ in 0..50 {
        let b = next_batch(&mut rx, "pump").await;
        if !b.readings[0].quality.is_good() {
            bad = Some(b.readings[0].quality.to_string());
            break;
        }
    }
    let bad = bad.expect("readings turn bad while the device is offline");
    assert!(bad == "bad:timeout" || bad == "bad:connection", "{bad}");

    sim.set_offline("pump", false).unwrap();
    let mut back = false;
    // Backoff starts at about 1 s; 100 polls of 100 ms bound the wait.
    for _ in 0..100 {
        if next_batch(&mut rx, "pump").await.readings[0]
            .quality
            .is_good()
        {
            back = true;
            break;
        }
    }
    assert!(back, "the device is polled again after it comes back");
    stop(trigger, handles).await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_on_an_rtu_bus_does_not_starve_the_other() {
    let sim = sim::start(
        r#"
[[devices]]
name = "meter"
unit = 1
serial = "pty"
baud = 19200
model = "pump"
points = [ { signal = "current", area = "input", address = 0, type = "f32" } ]
"#,
    )
    .await;
    let port = sim.serial_path("meter").unwrap();
    let config = load(&format!(
        r#"
[[buses]]
name = "line1"
port = "{port}"
baud = 19200
parity = "none"
stop_bits = 2

[[devices]]
name = "meter"
bus = "line1"
unit = 1
poll_interval = "100ms"
timeout = "300ms"
tags = [ {{ name = "current", area = "input", address = 0, type = "f32" }} ]

[[devices]]
name = "silent"
bus = "line1"
unit = 2
poll_interval = "100ms"
timeout = "300ms"
tags = [ {{ name = "current", area = "input", address = 0, type = "f32" }} ]
"#
    ));
    let (trigger, mut rx, handles) = start(&config);
    let mut good = 0;
    let mut silent_bad = 0;
    let mut silent_good = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(batch)) = tokio::time::timeout_at(end, rx.recv()).await {
        let ok = batch.readings[0].quality.is_good();
        match (batch.device.name.as_str(), ok) {
            ("meter", true) => good += 1,
            ("silent", false) => silent_bad += 1,
            ("silent", true) => silent_good += 1,
            _ => {}
        }
    }
    // 4 s at 100 ms is 40 polls. The silent device costs one 300 ms
    // timeout per probe, and probes back off from 1 s: the meter keeps
    // well over half its rate. (Behaviour, not a benchmark: the bound is loose.)
    assert!(good >= 20, "meter polled {good} times in 4 s");
    assert!(
        silent_bad >= 10,
        "the silent device still yields bad readings ({silent_bad})"
    );
    assert_eq!(silent_good, 0);
    stop(trigger, handles).await;
    sim.shutdown().await;
}
