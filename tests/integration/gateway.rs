//! The whole gateway over loopback: simulator → pollers → pipeline →
//! SQLite outbox → forwarder → embedded broker → a subscriber. Real
//! protocols, a real SQLite file; network faults through a TCP proxy;
//! a crash by `kill -9` of a child process. Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::proxy::Proxy;
use crate::common::subscriber::{
    Received, Subscriber, contiguous, contiguous_across_a_crash, seqs,
};
use crate::common::{broker, gateway, schema, sim};
use fieldgate::sim::Simulator;

const DATA: &str = "fieldgate/test/gw/data/pump";

async fn simulator() -> (Simulator, SocketAddr) {
    let sim = sim::start(
        r#"
seed = 3
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
  { signal = "current", area = "input", address = 2, type = "u16", scale = 0.01 },
  { signal = "running", area = "holding", address = 0, type = "bit", bit = 0 },
  { name = "asset", value = "PUMP-001", area = "holding", address = 1, type = "string", length = 4 },
]
"#,
    )
    .await;
    let addr = sim.addr("pump").unwrap();
    (sim, addr)
}

fn config_text(dir: &Path, sim: SocketAddr, broker: SocketAddr, extra_mqtt: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-test-{nonce}"
keep_alive = "5s"
{extra_mqtt}

[store]
durability = "full"
flush_interval = "20ms"

[http]
listen = ""

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "100ms"
timeout = "500ms"
tags = [
  {{ name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "current", area = "input", address = 2, type = "u16", scale = 0.01, unit = "A" }},
  {{ name = "running", area = "holding", address = 0, type = "bit", bit = 0 }},
  {{ name = "asset", area = "holding", address = 1, type = "string", length = 4 }},
]
"#,
        data = dir.join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
    )
}

fn data_count(messages: &[Received]) -> usize {
    messages.iter().filter(|m| m.topic == DATA).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readings_arrive_in_order_and_match_the_published_schemas() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let sub = Subscriber::start(broker, "test-sub-order", "fieldgate/#").await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = gateway::load(
        dir.path(),
        &config_text(dir.path(), sim_addr, broker, "per_tag_topics = true"),
    );
    let (stop, gateway) = gateway::spawn(config);

    assert!(
        sub.wait_until(Duration::from_secs(20), |m| data_count(m) >= 15)
            .await,
        "15 polls published within 20 s"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), gateway)
        .await
        .expect("gateway stops within 10 s")
        .unwrap()
        .unwrap();
    let offline = |m: &[Received]| {
        m.iter()
            .any(|r| r.topic.ends_with("/status") && r.json()["state"] == "offline")
    };
    assert!(
        sub.wait_until(Duration::from_secs(5), offline).await,
        "offline status after a clean stop"
    );

    let messages = sub.received();
    // No fault: exactly 1, 2, 3, ... in arrival order, nothing twice.
    let got = seqs(&messages, DATA);
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());

    let data = schema::validator("data.json");
    let tag = schema::validator("data-tag.json");
    let status = schema::validator("status.json");
    for m in &messages {
        let json = m.json();
        let validator = if m.topic == DATA {
            &data
        } else if m.topic.starts_with(&format!("{DATA}/")) {
            &tag
        } else if m.topic.ends_with("/status") {
            &status
        } else {
            panic!("unexpected topic {}", m.topic)
        };
        if let Err(e) = validator.validate(&json) {
            panic!("{} does not match its schema: {e}\n{json}", m.topic);
        }
    }
    let first = messages.iter().find(|m| m.topic == DATA).unwrap().json();
    assert_eq!(first["tags"]["asset"]["v"], "PUMP-001");
    assert_eq!(first["tags"]["bearing_temp"]["u"], "degC");
    assert_eq!(first["tags"]["running"]["q"], "good");
    let temp = first["tags"]["bearing_temp"]["v"].as_f64().unwrap();
    assert!((20.0..120.0).contains(&temp), "{temp}");
    // Per-tag topics carry their own sequence.
    let per_tag = seqs(&messages, &format!("{DATA}/current"));
    assert_eq!(per_tag, (1..=per_tag.len() as u64).collect::<Vec<_>>());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_cut_to_the_broker_loses_nothing() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    let sub = Subscriber::start(broker, "test-sub-outage", DATA).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = gateway::load(
        dir.path(),
        &config_text(dir.path(), sim_addr, proxy.addr(), ""),
    );
    let (stop, gateway) = gateway::spawn(config);

    assert!(
        sub.wait_until(Duration::from_secs(20), |m| data_count(m) >= 5)
            .await
    );
    proxy.cut();
    let before = data_count(&sub.received());
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore();
    // 2 s at 100 ms is about 20 polls buffered; wait for them and more.
    let drained = sub
        .wait_until(Duration::from_secs(30), |m| {
            let s = seqs(m, DATA);
            contiguous(&s) && s.iter().max().copied().unwrap_or(0) >= before as u64 + 25
        })
        .await;
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    let messages = sub.received();
    let got = seqs(&messages, DATA);
    assert!(drained, "every seq from 1 arrived after the cut: {got:?}");

    // Order: the live stream and the historical stream each increase.
    let data: Vec<serde_json::Value> = messages
        .iter()
        .filter(|m| m.topic == DATA)
        .map(|m| m.json())
        .collect();
    let hist: Vec<u64> = data
        .iter()
        .filter(|j| j["hist"] == true)
        .map(|j| j["seq"].as_u64().unwrap())
        .collect();
    let live: Vec<u64> = data
        .iter()
        .filter(|j| j["hist"] != true)
        .map(|j| j["seq"].as_u64().unwrap())
        .collect();
    assert!(
        !hist.is_empty(),
        "messages buffered through the cut are marked hist"
    );
    let increasing = |v: &[u64]| v.windows(2).all(|w| w[0] <= w[1]);
    assert!(increasing(&hist), "hist stream in order: {hist:?}");
    assert!(increasing(&live), "live stream in order: {live:?}");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_started_while_the_broker_is_down_buffers_and_delivers() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    proxy.cut();
    let sub = Subscriber::start(broker, "test-sub-late", DATA).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = gateway::load(
        dir.path(),
        &config_text(dir.path(), sim_addr, proxy.addr(), ""),
    );
    let (stop, gateway) = gateway::spawn(config);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        data_count(&sub.received()),
        0,
        "nothing gets through while cut"
    );
    proxy.restore();
    let ok = sub
        .wait_until(Duration::from_secs(30), |m| {
            let s = seqs(m, DATA);
            contiguous(&s) && s.len() >= 15
        })
        .await;
    stop.send(()).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway).await;
    assert!(ok, "{:?}", seqs(&sub.received(), DATA));
    sim.shutdown().await;
}

fn start_child(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fieldgate run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_loses_nothing_committed() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    let sub = Subscriber::start(broker, "test-sub-crash", "fieldgate/test/gw/#").await;
    let dir = tempfile::tempdir().unwrap();
    let (_, path) = gateway::load(
        dir.path(),
        &config_text(dir.path(), sim_addr, proxy.addr(), ""),
    );

    let mut child = start_child(&path);
    assert!(
        sub.wait_until(Duration::from_secs(20), |m| data_count(m) >= 5)
            .await
    );
    // Hold the broker's acks back so that rows are committed but not yet
    // confirmed when the process dies: they must be sent again.
    proxy.stall();
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    proxy.restore();
    let seen = seqs(&sub.received(), DATA).into_iter().max().unwrap_or(0);

    let mut child = start_child(&path);
    let ok = sub
        .wait_until(Duration::from_secs(30), |m| {
            let s = seqs(m, DATA);
            contiguous_across_a_crash(&s, seen) && s.iter().max().copied().unwrap_or(0) >= seen + 10
        })
        .await;
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let status = child.wait().unwrap();
    assert!(
        ok,
        "every seq published before the crash arrived, and every one after it: {:?}",
        seqs(&sub.received(), DATA)
    );
    assert!(status.success(), "a SIGTERM stop exits 0 ({status})");
    sim.shutdown().await;
}
