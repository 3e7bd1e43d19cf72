//! `fieldgate bridge` as a plant runs it: two gateways publishing to one
//! broker, one bridge, or two sharing the subscription (against
//! Mosquitto), and a fake Maximo. Each work order is created exactly once,
//! its reference reaches its gateway, a gateway's reconnect (which
//! republishes its open work orders) creates nothing more, and a work
//! order closed in the CMMS is closed on its gateway. The same scenario
//! against Mosquitto runs from `.ci/run` (`FIELDGATE_TEST_BROKER`).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::cmms::{self, FakeCmms};
use crate::common::subscriber::Subscriber;
use crate::common::{broker, gateway, sim, tracing, wait};
use fieldgate::app::AppError;
use fieldgate::bridge::BridgeError;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(15);
const SECRET: &str = "bridge-test-key";

const SCENARIO: &str = r#"
seed = 1
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 20.0, area = "input", address = 0, type = "f32" },
]
"#;

fn gateway_text(
    id: &str,
    data: &Path,
    sim: SocketAddr,
    broker: SocketAddr,
    prefix: &str,
) -> String {
    format!(
        r#"
[gateway]
id = "{id}"
site = "plant"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-{prefix}-{id}"
keep_alive = "5s"
topic_prefix = "{prefix}"

[store]
flush_interval = "20ms"

[http]
listen = ""

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "100ms"
timeout = "300ms"
retries = 0
asset = "PUMP-{id}"
tags = [{{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }}]

[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
"#,
        data = data.display(),
        host = broker.ip(),
        port = broker.port(),
    )
}

fn bridge_text(
    id: &str,
    data: &Path,
    broker: SocketAddr,
    prefix: &str,
    group: &str,
    fake: &str,
    key: &Path,
) -> String {
    format!(
        r#"
[bridge]
id = "{id}"
data_dir = "{data}"
shared_group = "{group}"
topic_prefix = "{prefix}"

[mqtt]
host = "{host}"
port = {port}
client_id = "{prefix}-bridge-{id}"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[[cmms]]
name = "maximo"
kind = "maximo"
url = "{fake}/maximo"
api_key_file = "{key}"
site_id = "BEDFORD"
timeout = "2s"
retry_min = "100ms"
retry_max = "1s"
poll_interval = "5s"
"#,
        data = data.display(),
        host = broker.ip(),
        port = broker.port(),
        key = key.display(),
    )
}

type GatewayTask = (oneshot::Sender<()>, JoinHandle<Result<(), AppError>>);
type BridgeTask = (oneshot::Sender<()>, JoinHandle<Result<(), BridgeError>>);

fn start_gateway(dir: &Path, text: &str) -> GatewayTask {
    std::fs::create_dir_all(dir).unwrap();
    let (config, _) = gateway::load(dir, text);
    gateway::spawn(config)
}

fn start_bridge(dir: &Path, text: &str) -> BridgeTask {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("bridge.toml");
    std::fs::write(&path, text).unwrap();
    let config = match fieldgate::config::load_bridge_with_env(&path, &[]) {
        Ok(l) => l.config,
        Err(p) => panic!("{p}"),
    };
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(fieldgate::bridge::run(config, async move {
        let _ = stop_rx.await;
    }));
    (stop, task)
}

async fn stop_bridge((stop, task): BridgeTask) {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("bridge stops within 10 s")
        .unwrap()
        .unwrap();
}

/// Work-order messages with a payload on `prefix`'s tree.
fn work_orders(sub: &Subscriber, prefix: &str) -> Vec<serde_json::Value> {
    sub.received()
        .iter()
        .filter(|r| {
            r.topic.starts_with(&format!("{prefix}/"))
                && r.topic.contains("/workorders/")
                && !r.topic.ends_with("/status")
                && !r.payload.is_empty()
        })
        .map(|r| r.json())
        .collect()
}

/// The whole scenario on the broker at `broker`, under `prefix`, with
/// `bridges` bridges (sharing the subscription when more than one).
pub async fn two_gateways(broker: SocketAddr, prefix: &str, bridges: &[&str]) {
    tracing::init();
    let sim = sim::start(SCENARIO).await;
    let fake: FakeCmms = cmms::maximo::start(SECRET).await;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("maximo.key");
    std::fs::write(&key, SECRET).unwrap();
    let sub = Subscriber::start(broker, &format!("{prefix}-view"), &format!("{prefix}/#")).await;
    // The gateways first: their work orders are raised (and retained)
    // before any bridge subscribes, as on a bridge's first start.
    let pump = sim.addr("pump").unwrap();
    let text = |id: &str| gateway_text(id, &dir.path().join(id).join("data"), pump, broker, prefix);
    let mut gw1 = start_gateway(&dir.path().join("gw1"), &text("gw1"));
    let gw2 = start_gateway(&dir.path().join("gw2"), &text("gw2"));
    sim.set("pump", "temp", 95.0).unwrap();
    let raised = sub
        .wait_until(WAIT, |m| {
            m.iter()
                .filter(|x| x.topic.contains("/workorders/") && !x.payload.is_empty())
                .count()
                >= 2
        })
        .await;
    assert!(raised, "both gateways raised a work order");
    let group = if bridges.len() > 1 {
        format!("{prefix}-bridges")
    } else {
        String::new()
    };
    let bridges: Vec<BridgeTask> = bridges
        .iter()
        .map(|id| {
            let d = dir.path().join(id);
            let text = bridge_text(id, &d, broker, prefix, &group, &fake.url(), &key);
            start_bridge(&d, &text)
        })
        .collect();

    let held = fake.clone();
    assert!(
        wait::until(WAIT, || held.created().len() >= 2).await,
        "both gateways' work orders created within {WAIT:?}: {:?}",
        fake.created()
    );
    // Both references come back to their gateways.
    let refs: Vec<String> = fake.created().iter().map(|h| h.reference.clone()).collect();
    let all_back = sub
        .wait_until(WAIT, |m| {
            refs.iter().all(|r| {
                m.iter().any(|x| {
                    x.topic.contains("/workorders/") && x.json()["cmms"]["ref"] == r.as_str()
                })
            })
        })
        .await;
    assert!(all_back, "each gateway keeps its CMMS reference");

    // gw1 restarts: it republishes its open work order on reconnect.
    gateway::stop(gw1.0, gw1.1).await;
    gw1 = start_gateway(&dir.path().join("gw1"), &text("gw1"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let created = fake.created();
    assert_eq!(
        created.len(),
        2,
        "exactly one work order per fault: {created:?}"
    );
    let keys: std::collections::BTreeSet<String> = work_orders(&sub, prefix)
        .iter()
        .map(|w| w["key"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys.len(), 2, "two work orders on MQTT: {keys:?}");

    // Closed in the CMMS: the bridges poll it and close it on the gateways.
    for r in &refs {
        fake.set_status(r, "CLOSE");
    }
    let ids: Vec<String> = work_orders(&sub, prefix)
        .iter()
        .map(|w| w["id"].as_str().unwrap_or_default().to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let cleared = sub
        .wait_until(WAIT, |m| {
            ids.iter().all(|id| {
                m.iter().any(|x| {
                    x.topic.ends_with(&format!("/workorders/{id}")) && x.payload.is_empty()
                })
            })
        })
        .await;
    assert!(cleared, "both work orders closed on their gateways");

    gateway::stop(gw1.0, gw1.1).await;
    gateway::stop(gw2.0, gw2.1).await;
    for b in bridges {
        stop_bridge(b).await;
    }
    sim.shutdown().await;
    assert_eq!(fake.problems(), Vec::<String>::new());
}

/// One bridge on the embedded broker (its shared subscriptions are not
/// sound enough for two: it panics when a member of a group reconnects);
/// two bridges sharing a group run against Mosquitto below.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_creates_each_work_order_once_and_closes_the_loop() {
    let broker = broker::start();
    two_gateways(broker, "fieldgate", &["b1"]).await;
}

/// The same against a broker from outside (Mosquitto, from `.ci/run`):
/// `FIELDGATE_TEST_BROKER=127.0.0.1:PORT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FIELDGATE_TEST_BROKER (run by .ci/run against Mosquitto)"]
async fn two_bridges_on_an_outside_broker() {
    let addr: SocketAddr = std::env::var("FIELDGATE_TEST_BROKER")
        .expect("FIELDGATE_TEST_BROKER=HOST:PORT")
        .parse()
        .expect("FIELDGATE_TEST_BROKER is HOST:PORT");
    // A prefix of this run's own, so a shared broker's other traffic and
    // retained messages do not meet it.
    let prefix = format!("fgtest{}", std::process::id());
    two_gateways(addr, &prefix, &["b1", "b2"]).await;
}
