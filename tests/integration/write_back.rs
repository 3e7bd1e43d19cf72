//! Write-back through the whole gateway over loopback: a command on MQTT
//! or over HTTP → the write desk → the link's task → the simulator, then
//! the result on MQTT, in the answer, in the history (`fieldgate writes`)
//! and in the device's registers, read by a Modbus client of our own.
//! Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fieldgate::modbus::{Block, Endpoint, Link};
use fieldgate::sim::Simulator;
use fieldgate::tag::Area;
use rumqttc::QoS;
use serde_json::Value as Json;

use crate::common::http::{get_when_up, post};
use crate::common::subscriber::Subscriber;
use crate::common::{broker, gateway, schema, sim};

const BASE: &str = "fieldgate/test/gw";
const TOKEN: &str = "0123456789abcdef-write-token";

/// Register 10 holds the setpoint (raw 400 = 40.0 with scale 0.1),
/// register 11 the mode, register 12 a word of flags (bit 3 is the horn),
/// coil 5 a reset.
async fn simulator() -> (Simulator, SocketAddr) {
    let sim = sim::start(
        r#"
seed = 5
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
  { name = "setpoint", value = 400, area = "holding", address = 10, type = "u16" },
  { name = "mode", value = 1, area = "holding", address = 11, type = "u16" },
  { name = "flags", value = 0x0101, area = "holding", address = 12, type = "u16" },
  { name = "reset", value = false, area = "coil", address = 5, type = "bool" },
]
"#,
    )
    .await;
    let addr = sim.addr("pump").unwrap();
    (sim, addr)
}

fn config_text(dir: &Path, sim: SocketAddr, broker: SocketAddr, http: &str) -> String {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
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
client_id = "fieldgate-write-{nonce}-{sim_port}"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[http]
{http}

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "100ms"
timeout = "500ms"
max_silence = "1h"

[[devices.tags]]
name = "bearing_temp"
area = "input"
address = 0
type = "f32"

[[devices.tags]]
name = "setpoint"
area = "holding"
address = 10
type = "u16"
scale = 0.1
unit = "degC"
writable = true
min = 20.0
max = 80.0
max_rate = 3

[[devices.tags]]
name = "mode"
area = "holding"
address = 11
type = "u16"
writable = true
allowed = [0, 1, 2]

[[devices.tags]]
name = "horn"
area = "holding"
address = 12
type = "bit"
bit = 3
writable = true

[[devices.tags]]
name = "reset"
area = "coil"
address = 5
type = "bool"
writable = true
allowed = [true]

[[devices]]
name = "gone"
tcp = "{dead}"
poll_interval = "200ms"
timeout = "200ms"
retries = 0

[[devices.tags]]
name = "setpoint"
area = "holding"
address = 0
type = "u16"
writable = true
"#,
        data = dir.join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
        sim_port = sim.port(),
        dead = broker::free_port(),
    )
}

/// Reads holding registers straight from the device, as a second Modbus
/// client would.
async fn holding(sim: SocketAddr, address: u16, count: u16) -> Vec<u16> {
    let mut link = Link::new(Endpoint::Tcp(sim.to_string()));
    match link
        .read(
            1,
            Area::HoldingRegister,
            address,
            count,
            Duration::from_secs(2),
        )
        .await
    {
        Ok(Block::Registers(r)) => r,
        other => panic!("read holding {address}: {other:?}"),
    }
}

async fn coil(sim: SocketAddr, address: u16) -> bool {
    let mut link = Link::new(Endpoint::Tcp(sim.to_string()));
    match link
        .read(1, Area::Coil, address, 1, Duration::from_secs(2))
        .await
    {
        Ok(Block::Bits(b)) => b[0],
        other => panic!("read coil {address}: {other:?}"),
    }
}

/// Publishes a command and waits for its result (by `id`).
async fn command(sub: &Subscriber, device: &str, tag: &str, payload: Json) -> Json {
    let id = payload["id"].clone();
    sub.client
        .publish(
            format!("{BASE}/cmd/{device}/{tag}"),
            QoS::AtLeastOnce,
            false,
            payload.to_string(),
        )
        .await
        .unwrap();
    result(sub, device, tag, &id).await
}

async fn result(sub: &Subscriber, device: &str, tag: &str, id: &Json) -> Json {
    let topic = format!("{BASE}/cmd/{device}/{tag}/result");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let found = sub
            .messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.json())
            .find(|j| &j["id"] == id);
        if let Some(r) = found {
            if let Err(e) = schema::validator("write-result.json").validate(&r) {
                panic!("result does not match its schema: {e}\n{r}");
            }
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no result for {id} on {topic} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the gateway takes commands: its subscription to the
/// command topics is in place once a probe (to a tag that does not
/// exist, so nothing is written) is answered.
async fn wait_taking_commands(sub: &Subscriber) {
    let topic = format!("{BASE}/cmd/pump/probe/result");
    for n in 0..50 {
        let id = format!("probe-{n}");
        sub.client
            .publish(
                format!("{BASE}/cmd/pump/probe"),
                QoS::AtLeastOnce,
                false,
                serde_json::json!({"v": 0, "id": id}).to_string(),
            )
            .await
            .unwrap();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if sub
                .messages
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.topic == topic && m.json()["id"] == id.as_str())
            {
                return;
            }
        }
    }
    panic!("the gateway took no command within 10 s");
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `fieldgate writes --json`, one object per record.
fn writes_json(config: &Path) -> Vec<Json> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["writes", "--json", "-c"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fieldgate writes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    match serde_json::from_str::<Json>(&text) {
        Ok(Json::Array(items)) => items,
        _ => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_commands_are_checked_written_verified_and_recorded() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let sub = Subscriber::start(broker, "test-sub-write", &format!("{BASE}/#")).await;
    let dir = tempfile::tempdir().unwrap();
    let (config, path) = gateway::load(dir.path(), &config_text(dir.path(), sim_addr, broker, ""));
    let (stop, task) = gateway::spawn(config);
    wait_taking_commands(&sub).await;

    // A setpoint, scaled: 42.5 degC is raw 425.
    let r = command(
        &sub,
        "pump",
        "setpoint",
        serde_json::json!({"v": 42.5, "id": "c1", "by": "tester", "ts": now_ms()}),
    )
    .await;
    assert_eq!(r["result"], "verified", "{r}");
    assert_eq!(r["old"], 40.0, "{r}");
    assert_eq!(r["written"], 42.5, "{r}");
    assert_eq!(r["read_back"], 42.5, "{r}");
    assert_eq!(
        (r["by"].as_str(), r["source"].as_str()),
        (Some("tester"), Some("mqtt"))
    );
    assert_eq!(holding(sim_addr, 10, 1).await, [425]);

    // Refusals: nothing is written, each says why.
    let refused = [
        (
            "setpoint",
            serde_json::json!({"v": 120, "id": "r1"}),
            "out_of_range",
        ),
        (
            "mode",
            serde_json::json!({"v": 3, "id": "r2"}),
            "out_of_range",
        ),
        (
            "bearing_temp",
            serde_json::json!({"v": 1, "id": "r3"}),
            "not_writable",
        ),
        (
            "nope",
            serde_json::json!({"v": 1, "id": "r4"}),
            "unknown_tag",
        ),
        (
            "setpoint",
            serde_json::json!({"v": "hot", "id": "r5"}),
            "wrong_type",
        ),
        ("setpoint", serde_json::json!({"id": "r6"}), "bad_payload"),
        (
            "setpoint",
            serde_json::json!({"v": 30, "id": "r7", "ts": now_ms() - 60_000}),
            "stale",
        ),
    ];
    for (tag, payload, reason) in refused {
        let r = command(&sub, "pump", tag, payload).await;
        assert_eq!(
            (r["result"].as_str(), r["reason"].as_str()),
            (Some("rejected"), Some(reason)),
            "{r}"
        );
        assert!(r["message"].as_str().is_some_and(|m| !m.is_empty()), "{r}");
    }
    assert_eq!(holding(sim_addr, 10, 1).await, [425]);
    assert_eq!(holding(sim_addr, 11, 1).await, [1]);

    // A code from the allowed list.
    let r = command(
        &sub,
        "pump",
        "mode",
        serde_json::json!({"v": 2, "id": "m1"}),
    )
    .await;
    assert_eq!(r["result"], "verified", "{r}");
    assert_eq!(holding(sim_addr, 11, 1).await, [2]);

    // A bit of a register: the other bits are kept.
    let r = command(
        &sub,
        "pump",
        "horn",
        serde_json::json!({"v": true, "id": "h1"}),
    )
    .await;
    assert_eq!(r["result"], "verified", "{r}");
    assert_eq!(holding(sim_addr, 12, 1).await, [0x0109]);
    let r = command(
        &sub,
        "pump",
        "horn",
        serde_json::json!({"v": false, "id": "h2"}),
    )
    .await;
    assert_eq!(r["result"], "verified", "{r}");
    assert_eq!(holding(sim_addr, 12, 1).await, [0x0101]);

    // A coil.
    let r = command(
        &sub,
        "pump",
        "reset",
        serde_json::json!({"v": true, "id": "k1"}),
    )
    .await;
    assert!(
        matches!(r["result"].as_str(), Some("verified" | "written")),
        "{r}"
    );
    assert!(coil(sim_addr, 5).await);

    // The rate: three a minute (one already went, refusals do not count).
    for id in ["s2", "s3"] {
        let r = command(
            &sub,
            "pump",
            "setpoint",
            serde_json::json!({"v": 50, "id": id}),
        )
        .await;
        assert_eq!(r["result"], "verified", "{r}");
    }
    let r = command(
        &sub,
        "pump",
        "setpoint",
        serde_json::json!({"v": 55, "id": "s4"}),
    )
    .await;
    assert_eq!(r["reason"], "rate", "{r}");
    assert_eq!(holding(sim_addr, 10, 1).await, [500]);

    // A device that is not there: refused, nothing sent.
    let r = command(
        &sub,
        "gone",
        "setpoint",
        serde_json::json!({"v": 1, "id": "g1"}),
    )
    .await;
    assert_eq!(r["reason"], "device_down", "{r}");

    // A retained command is never a write at the next start. Live, the
    // broker hands it on as an ordinary message (a live command); the copy
    // it keeps is what must not act later.
    sub.client
        .publish(
            format!("{BASE}/cmd/pump/mode"),
            QoS::AtLeastOnce,
            true,
            serde_json::json!({"v": 0, "id": "live"}).to_string(),
        )
        .await
        .unwrap();
    let live = result(&sub, "pump", "mode", &Json::from("live")).await;
    assert_eq!(live["result"], "verified", "{live}");
    assert_eq!(holding(sim_addr, 11, 1).await, [0]);
    gateway::stop(stop, task).await;
    // While the gateway is away: a new retained command (the broker also
    // queues it for the gateway's session, if it keeps one).
    sub.client
        .publish(
            format!("{BASE}/cmd/pump/mode"),
            QoS::AtLeastOnce,
            true,
            serde_json::json!({"v": 2, "id": "ret"}).to_string(),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = sub.messages.lock().unwrap().len();
    let (config, _) = gateway::load(dir.path(), &config_text(dir.path(), sim_addr, broker, ""));
    let (stop, task) = gateway::spawn(config);
    let again = result(&sub, "pump", "mode", &Json::from("ret")).await;
    assert_eq!(
        (again["result"].as_str(), again["reason"].as_str()),
        (Some("rejected"), Some("stale")),
        "{again}"
    );
    // Whatever copies came (retained, queued), none wrote.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for m in sub.messages.lock().unwrap()[before..].iter() {
        let j = m.json();
        if j["id"] == "ret" {
            assert_eq!(j["result"], "rejected", "{j}");
        }
    }
    assert_eq!(holding(sim_addr, 11, 1).await, [0]);
    // Clear the retained copy, as the refusal tells the operator to.
    sub.client
        .publish(
            format!("{BASE}/cmd/pump/mode"),
            QoS::AtLeastOnce,
            true,
            Vec::new(),
        )
        .await
        .unwrap();
    gateway::stop(stop, task).await;

    // The record: every command, refusals included, oldest first.
    let records = writes_json(&path);
    let ids: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    for id in [
        "c1", "r1", "r7", "m1", "h1", "k1", "s4", "g1", "live", "ret",
    ] {
        assert!(ids.contains(&id), "{id} not in the record: {ids:?}");
    }
    let c1 = records.iter().find(|r| r["id"] == "c1").unwrap();
    assert_eq!(
        (
            c1["device"].as_str(),
            c1["tag"].as_str(),
            c1["result"].as_str()
        ),
        (Some("pump"), Some("setpoint"), Some("verified"))
    );
    assert_eq!(
        (c1["old"].clone(), c1["read_back"].clone()),
        (Json::from(40.0), Json::from(42.5))
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_writes_need_actions_and_the_token_and_answer_with_the_result() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let sub = Subscriber::start(broker, "test-sub-write-http", &format!("{BASE}/cmd/#")).await;
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        dir.path(),
        sim_addr,
        broker,
        &format!("listen = \"{http}\"\nallow_actions = true\ntoken_file = \"token\""),
    );
    let (config, _) = gateway::load(dir.path(), &text);
    let (stop, task) = gateway::spawn(config);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let path = "/api/tags/pump/setpoint/write";

    // The status says what is writable.
    let status = get_when_up(http, "/api/status").await.json();
    if let Err(e) = schema::validator("api-status.json").validate(&status) {
        panic!("{e}");
    }
    let tags = status["devices"][0]["tags"].as_array().unwrap().clone();
    let setpoint = tags.iter().find(|t| t["name"] == "setpoint").unwrap();
    assert_eq!(setpoint["write"]["max"], 80.0);
    assert_eq!(setpoint["write"]["confirm"], true);
    let temp = tags.iter().find(|t| t["name"] == "bearing_temp").unwrap();
    assert!(temp["write"].is_null());
    assert_eq!(status["writes"]["writable_tags"], 5);

    let r = post(http, path, &[], r#"{"v": 30}"#).await.unwrap();
    assert_eq!(r.status, 401, "{}", r.body);
    let r = post(http, path, &auth, r#"{"v": 33.3, "by": "ana"}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (j["result"].as_str(), j["source"].as_str()),
        (Some("verified"), Some("http"))
    );
    assert_eq!(j["by"], "ana");
    assert_eq!(holding(sim_addr, 10, 1).await, [333]);
    let r = post(http, path, &auth, r#"{"v": 90}"#).await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.json()["reason"], "out_of_range");
    let r = post(http, "/api/tags/pump/nope/write", &auth, r#"{"v": 1}"#)
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);
    let r = post(http, path, &auth, "not json").await.unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    // Signed by the caller's address when the body does not say who.
    let r = post(http, path, &auth, r#"{"v": 30}"#).await.unwrap();
    assert_eq!(r.json()["by"], "http 127.0.0.1", "{}", r.body);

    // The HTTP results go to the result topic too.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !sub
        .messages
        .lock()
        .unwrap()
        .iter()
        .any(|m| m.topic.ends_with("/cmd/pump/setpoint/result") && m.json()["by"] == "ana")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no HTTP result on MQTT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = get_when_up(http, "/api/status").await.json();
    assert_eq!(status["writes"]["verified"], 2, "{}", status["writes"]);
    assert_eq!(status["writes"]["rejected"], 3, "{}", status["writes"]);
    gateway::stop(stop, task).await;
    sim.shutdown().await;
}
