//! The rules as a CMMS integrator or a technician sees them: a simulated
//! device, the whole gateway in this process (pollers, rules, a real
//! SQLite file, the forwarder), an embedded broker, a subscriber that
//! reads everything under `fieldgate/test/gw/#`, and a second MQTT client
//! playing the operator and the CMMS. Loopback only; every wait is
//! bounded; every alarm, work-order and meter message is checked against
//! its schema in `docs/schemas/`.
//!
//! Values are driven with `Simulator::set` on named constant points, so
//! no plant model moves them behind the test's back.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crate::common::subscriber::{Received, Subscriber, contiguous, seqs};
use crate::common::{broker, gateway, schema, sim, tracing};
use fieldgate::app::AppError;
use fieldgate::sim::Simulator;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Topic prefix of the gateway under test.
const BASE: &str = "fieldgate/test/gw";

/// The simulated device, also the gateway's device name.
const DEVICE: &str = "pump";

/// Longest wait for something the gateway does within a few polls or
/// ticks (polls every 100 ms, ticks every 1 s).
const WAIT: Duration = Duration::from_secs(5);

/// The plainest rule: `pump.temp` above 80, no deadband, no delays.
const HOT: &str = r#"
[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
"#;

/// One device with named constant points, set by the tests.
const SCENARIO: &str = r#"
seed = 1
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 20.0, area = "input", address = 0, type = "f32" },
  { name = "t2", value = 20.0, area = "input", address = 2, type = "f32" },
  { name = "t3", value = 20.0, area = "input", address = 4, type = "f32" },
  { name = "t4", value = 20.0, area = "input", address = 6, type = "f32" },
  { name = "aux", value = 4.5, area = "input", address = 8, type = "f32" },
  { name = "run", value = false, area = "coil", address = 0, type = "bool" },
]
"#;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// The gateway's config: fast polls and commits, no HTTP, then `rules`
/// (rules, meters, `[alarms]`, `[workorders]`) as each test needs.
fn config_text(
    data: &Path,
    sim: SocketAddr,
    broker: SocketAddr,
    client: &str,
    rules: &str,
) -> String {
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
client_id = "{client}"
keep_alive = "5s"

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
asset = "PUMP-001"
location = "Hall 2"
tags = [
  {{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "t2", area = "input", address = 2, type = "f32", unit = "degC" }},
  {{ name = "t3", area = "input", address = 4, type = "f32", unit = "degC" }},
  {{ name = "t4", area = "input", address = 6, type = "f32", unit = "degC" }},
  {{ name = "aux", area = "input", address = 8, type = "f32", unit = "bar" }},
  {{ name = "run", area = "coil", address = 0, type = "bool" }},
]

{rules}
"#,
        data = data.display(),
        host = broker.ip(),
        port = broker.port(),
    )
}

/// The running gateway and how to stop it.
struct Gateway {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), AppError>>,
}

/// A second MQTT client: the operator's console and the CMMS.
struct Operator {
    client: AsyncClient,
    acked: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Operator {
    async fn connect(broker: SocketAddr, id: &str) -> Operator {
        let mut options = MqttOptions::new(id, broker.ip().to_string(), broker.port());
        options.set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(options, 100);
        let acked = Arc::new(AtomicU64::new(0));
        let count = acked.clone();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::PubAck(_))) => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), ready_rx)
            .await
            .expect("operator CONNACK within 10 s")
            .unwrap();
        Operator {
            client,
            acked,
            task,
        }
    }

    /// Publishes at QoS 1 and returns once the broker confirmed it.
    async fn send(&self, topic: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        let before = self.acked.load(Ordering::SeqCst);
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .unwrap();
        let end = Instant::now() + WAIT;
        while self.acked.load(Ordering::SeqCst) <= before {
            assert!(
                Instant::now() < end,
                "no PUBACK for {topic} within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Simulator, broker, subscriber, operator and gateway of one test.
struct Site {
    sim: Simulator,
    broker: SocketAddr,
    dir: tempfile::TempDir,
    rules: String,
    /// Everything under `BASE/#`, in arrival order.
    sub: Subscriber,
    operator: Operator,
    gateway: Option<Gateway>,
    starts: usize,
}

impl Site {
    /// Starts everything and waits for the gateway's `online` status.
    async fn start(rules: &str) -> Site {
        tracing::init();
        let sim = sim::start(SCENARIO).await;
        let broker = broker::start();
        let sub = Subscriber::start(broker, "cmms-view", &format!("{BASE}/#")).await;
        let operator = Operator::connect(broker, "operator").await;
        let mut site = Site {
            sim,
            broker,
            dir: tempfile::tempdir().unwrap(),
            rules: rules.to_owned(),
            sub,
            operator,
            gateway: None,
            starts: 0,
        };
        site.start_gateway("fieldgate-test").await;
        site
    }

    /// Starts the gateway on the test's data dir and waits until it is
    /// online.
    async fn start_gateway(&mut self, client_id: &str) {
        assert!(self.gateway.is_none(), "gateway already running");
        let sim = self.sim.addr(DEVICE).unwrap();
        let text = config_text(
            &self.dir.path().join("data"),
            sim,
            self.broker,
            client_id,
            &self.rules,
        );
        let (config, _) = gateway::load(self.dir.path(), &text);
        let (stop, task) = gateway::spawn(config);
        self.gateway = Some(Gateway { stop, task });
        self.starts += 1;
        let starts = self.starts;
        let status = format!("{BASE}/status");
        let online = self
            .sub
            .wait_until(Duration::from_secs(10), |m| {
                m.iter()
                    .filter(|r| r.topic == status && r.json()["state"] == "online")
                    .count()
                    >= starts
            })
            .await;
        assert!(online, "gateway start #{starts} online within 10 s");
    }

    /// Stops the gateway with its stop future and waits for it to end.
    async fn stop_gateway(&mut self) {
        let Gateway { stop, task } = self.gateway.take().expect("gateway running");
        gateway::stop(stop, task).await;
    }

    /// Stops the gateway and the simulator.
    async fn finish(mut self) {
        if self.gateway.is_some() {
            self.stop_gateway().await;
        }
        self.sim.shutdown().await;
    }

    fn set(&self, point: &str, value: f64) {
        self.sim.set(DEVICE, point, value).unwrap();
    }

    async fn send(&self, path: &str, payload: impl Into<Vec<u8>>, retain: bool) {
        self.operator
            .send(&format!("{BASE}/{path}"), payload, retain)
            .await;
    }

    // --- What arrived ------------------------------------------------------

    fn received(&self) -> Vec<Received> {
        self.sub.received()
    }

    /// Alarm messages of `rule`, in arrival order.
    fn alarms(&self, rule: &str) -> Vec<Value> {
        alarms_in(&self.received(), rule)
    }

    fn states(&self, rule: &str) -> Vec<String> {
        states_of(&self.alarms(rule))
    }

    /// Waits for an alarm message of `rule` in state `state`, at position
    /// `from` or later among the rule's alarm messages; returns it.
    async fn next_state(&self, rule: &str, from: usize, state: &str) -> Value {
        let found = self
            .sub
            .wait_until(WAIT, |m| {
                alarms_in(m, rule)
                    .iter()
                    .skip(from)
                    .any(|a| a["state"] == state)
            })
            .await;
        let alarms = self.alarms(rule);
        assert!(
            found,
            "alarm {rule} reaches {state} (after message {from}) within {WAIT:?}; states: {:?}",
            states_of(&alarms)
        );
        alarms
            .into_iter()
            .skip(from)
            .find(|a| a["state"] == state)
            .unwrap()
    }

    /// Work-order messages (not the empty ones that clear a topic), in
    /// arrival order.
    fn work_orders(&self) -> Vec<Value> {
        work_orders_in(&self.received())
    }

    /// Distinct work-order ids, in the order they were raised.
    fn wo_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for wo in self.work_orders() {
            let id = wo["id"].as_str().unwrap().to_owned();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }

    /// Every message on `workorders/{id}`, the empty clearing one included.
    fn wo_topic(&self, id: &str) -> Vec<Received> {
        let topic = format!("{BASE}/workorders/{id}");
        self.received()
            .into_iter()
            .filter(|m| m.topic == topic)
            .collect()
    }

    /// Waits until `done` holds for the work-order messages.
    async fn wait_wo(&self, what: &str, done: impl Fn(&[Value]) -> bool) {
        let ok = self
            .sub
            .wait_until(WAIT, |m| done(&work_orders_in(m)))
            .await;
        assert!(
            ok,
            "{what} within {WAIT:?}; work orders: {:#?}",
            self.work_orders()
        );
    }

    fn meters(&self, name: &str) -> Vec<Value> {
        let topic = format!("{BASE}/meters/{name}");
        self.received()
            .iter()
            .filter(|m| m.topic == topic && !m.payload.is_empty())
            .map(Received::json)
            .collect()
    }

    /// Data messages of the device.
    fn data(&self) -> Vec<Value> {
        data_in(&self.received())
    }

    /// Waits for a data message, at position `from` or later, in which
    /// `tag` has a value for which `check` holds; returns it.
    async fn wait_data(&self, from: usize, tag: &str, check: impl Fn(&Value) -> bool) -> Value {
        let matches = |d: &Value| d["tags"][tag].get("v").is_some_and(&check);
        let ok = self
            .sub
            .wait_until(WAIT, |m| data_in(m).iter().skip(from).any(matches))
            .await;
        assert!(ok, "a reading of {tag} as expected within {WAIT:?}");
        self.data().into_iter().skip(from).find(matches).unwrap()
    }

    /// Sets `point` and waits until the gateway has published the value.
    async fn set_seen(&self, point: &str, value: f64) {
        let from = self.data().len();
        self.set(point, value);
        self.wait_data(from, point, |v| value_is(v, value)).await;
    }

    /// Checks every message received so far against its schema.
    fn check_schemas(&self) {
        check_schemas(&self.received());
    }
}

fn alarms_in(messages: &[Received], rule: &str) -> Vec<Value> {
    let topic = format!("{BASE}/alarms/{rule}");
    messages
        .iter()
        .filter(|m| m.topic == topic && !m.payload.is_empty())
        .map(Received::json)
        .collect()
}

fn states_of(alarms: &[Value]) -> Vec<String> {
    alarms
        .iter()
        .map(|a| a["state"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// `Some(id)` for a message on `BASE/workorders/{id}` (not `/status`).
fn wo_id(topic: &str) -> Option<&str> {
    let id = topic.strip_prefix(BASE)?.strip_prefix("/workorders/")?;
    (!id.contains('/')).then_some(id)
}

fn work_orders_in(messages: &[Received]) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| wo_id(&m.topic).is_some() && !m.payload.is_empty())
        .map(Received::json)
        .collect()
}

fn data_in(messages: &[Received]) -> Vec<Value> {
    let topic = format!("{BASE}/data/{DEVICE}");
    messages
        .iter()
        .filter(|m| m.topic == topic)
        .map(Received::json)
        .collect()
}

fn value_is(v: &Value, expected: f64) -> bool {
    match v {
        Value::Bool(b) => *b == (expected != 0.0),
        _ => v.as_f64() == Some(expected),
    }
}

/// An RFC 3339 time of a payload.
fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().expect("a time")).expect("an RFC 3339 time")
}

/// Validates every alarm, work-order and meter message in `messages`
/// (not the empty retained messages that clear a topic).
fn check_schemas(messages: &[Received]) {
    let alarm = schema::validator("alarm.json");
    let workorder = schema::validator("workorder.json");
    let meter = schema::validator("meter.json");
    for m in messages {
        let Some(rest) = m.topic.strip_prefix(&format!("{BASE}/")) else {
            continue;
        };
        let levels: Vec<&str> = rest.split('/').collect();
        let validator = match levels.as_slice() {
            ["alarms", _] => &alarm,
            ["workorders", _] => &workorder,
            ["meters", _] => &meter,
            _ => continue,
        };
        if m.payload.is_empty() {
            continue;
        }
        let json = m.json();
        if let Err(e) = validator.validate(&json) {
            panic!("{} does not match its schema: {e}\n{json:#}", m.topic);
        }
    }
}

/// The idempotency key `{site}/{gateway}/{source}/{asset}/{n}-{id}` of
/// the work order `wo` (`rules/workorder/mod.rs`).
fn key_of(source: &str, asset: &str, n: u32, wo: &Value) -> String {
    format!(
        "test/gw/{source}/{asset}/{n}-{}",
        wo["id"].as_str().unwrap()
    )
}

// ---------------------------------------------------------------------------
// 1. Hovering at the limit
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearing_hovering_at_its_limit_raises_exactly_one_work_order() {
    let site = Site::start(
        r#"
[[rules]]
name = "pump_bearing_hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
deadband = 2.0
on_delay = "1s"
priority = "high"
workorder = { title = "{asset}: bearing {value} {unit} above {limit} {unit}", problem_code = "BRG-HOT", procedure = "SOP-PUMP-012", snapshot = ["pump.aux"] }
"#,
    )
    .await;
    let rule = "pump_bearing_hot";
    site.wait_data(0, "temp", |v| value_is(v, 20.0)).await;

    // Across the limit and inside the deadband (never below 78), through
    // the on-delay and well after it.
    let hover = [81.0, 79.5, 81.0, 80.5, 79.0, 81.0, 79.25, 80.75, 81.0];
    for v in hover {
        site.set("temp", v);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    site.next_state(rule, 0, "active_unacked").await;
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    // Keep hovering: nothing more may come of it.
    for v in [79.5, 80.5, 79.0, 81.0] {
        site.set("temp", v);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(
        site.states(rule),
        ["normal", "active_unacked"],
        "one activation from the initial normal state"
    );
    let ids = site.wo_ids();
    assert_eq!(ids.len(), 1, "one work order: {:#?}", site.work_orders());
    let wos = site.work_orders();
    assert_eq!(wos.len(), 1, "raised once, never updated: {wos:#?}");
    let wo = &wos[0];
    assert_eq!(wo["type"], "corrective");
    assert_eq!(wo["status"], "open");
    assert_eq!(wo["priority"], "high");
    assert_eq!(wo["asset"], "PUMP-001", "the device's asset");
    assert_eq!(wo["location"], "Hall 2");
    assert_eq!(wo["key"], key_of(rule, "PUMP-001", 1, wo));
    assert_eq!(wo["occurrences"], 1);
    assert_eq!(wo["problem_code"], "BRG-HOT");
    assert_eq!(wo["procedure"], "SOP-PUMP-012");
    assert_eq!(wo["cmms"], Value::Null);
    let trigger = &wo["trigger"];
    assert_eq!(trigger["rule"], rule);
    assert_eq!(trigger["tag"], "pump.temp");
    assert_eq!(trigger["condition"], "above");
    assert_eq!(trigger["limit"].as_f64(), Some(80.0));
    assert_eq!(trigger["unit"], "degC");
    let value = trigger["value"].as_f64().expect("trigger value");
    assert!(
        hover.contains(&value),
        "trigger value {value} is one of the hovering readings"
    );
    assert!(
        wo["title"]
            .as_str()
            .unwrap()
            .starts_with("PUMP-001: bearing "),
        "{}",
        wo["title"]
    );
    // The snapshot: the rule's own tag, then the template's.
    let readings = wo["readings"].as_object().unwrap();
    let temp = &readings["pump.temp"];
    assert_eq!(temp["q"], "good");
    assert_eq!(temp["u"], "degC");
    assert!(temp["v"].is_number());
    assert!(temp["ts"].is_string());
    assert_eq!(readings["pump.aux"]["v"].as_f64(), Some(4.5));
    assert_eq!(readings["pump.aux"]["u"], "bar");

    // The alarm as the operator's screen shows it.
    let active = site.alarms(rule).pop().unwrap();
    assert_eq!(active["active"], true);
    assert_eq!(active["acked"], false);
    assert_eq!(active["cause"], "condition");
    assert_eq!(active["tag"], "pump.temp");
    assert_eq!(active["limit"].as_f64(), Some(80.0));

    // A CMMS connecting now gets exactly one retained work order.
    let late = Subscriber::start(site.broker, "late-cmms", &format!("{BASE}/workorders/+")).await;
    assert!(late.wait_until(WAIT, |m| !m.is_empty()).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let retained = late.received();
    assert_eq!(retained.len(), 1, "{retained:?}");
    assert!(retained[0].retain, "the work order is retained");
    assert_eq!(retained[0].json()["id"].as_str(), Some(ids[0].as_str()));

    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 2. On-delay
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_shorter_than_the_on_delay_raises_nothing() {
    let site = Site::start(
        r#"
[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
deadband = 2.0
on_delay = "1500ms"
"#,
    )
    .await;
    site.wait_data(0, "temp", |v| value_is(v, 20.0)).await;

    // The gateway sees the spike (it is on the data topic), for less than
    // the on-delay.
    let spike = Instant::now();
    site.set_seen("temp", 90.0).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    site.set_seen("temp", 20.0).await;
    assert!(
        spike.elapsed() < Duration::from_millis(1300),
        "the spike was short"
    );
    tokio::time::sleep(Duration::from_millis(2000)).await;

    assert_eq!(site.states("hot"), ["normal"], "no alarm from a spike");
    assert!(site.work_orders().is_empty(), "no work order from a spike");

    // The same value held past the on-delay does alarm: the rule works.
    let n = site.alarms("hot").len();
    let held = Instant::now();
    site.set("temp", 90.0);
    site.next_state("hot", n, "active_unacked").await;
    assert!(
        held.elapsed() >= Duration::from_millis(1400),
        "activated after the on-delay, not at once ({:?})",
        held.elapsed()
    );
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 3. Ack and shelve over the broker
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_ack_and_shelve_over_the_broker() {
    let site = Site::start(HOT).await;
    let rule = "hot";
    site.set("temp", 85.0);
    site.next_state(rule, 0, "active_unacked").await;

    let n = site.alarms(rule).len();
    site.send(
        "alarms/hot/ack",
        r#"{"by":"j.smith","note":"checked on site"}"#,
        false,
    )
    .await;
    let acked = site.next_state(rule, n, "active_acked").await;
    assert_eq!(acked["cause"], "ack");
    assert_eq!(acked["acked"], true);
    assert_eq!(acked["active"], true);

    let n = site.alarms(rule).len();
    site.set("temp", 20.0);
    let normal = site.next_state(rule, n, "normal").await;
    assert_eq!(normal["cause"], "condition");
    assert_eq!(normal["active"], false);

    // Shelved for 2 s while active: it comes back by itself.
    let n = site.alarms(rule).len();
    site.set("temp", 85.0);
    site.next_state(rule, n, "active_unacked").await;
    let n = site.alarms(rule).len();
    site.send("alarms/hot/shelve", r#"{"duration":"2s"}"#, false)
        .await;
    let shelved = site.next_state(rule, n, "shelved").await;
    assert_eq!(shelved["cause"], "shelve");
    assert_eq!(shelved["active"], true);
    let until = time(&shelved["shelved_until"]);
    let shelved_at = time(&shelved["ts"]);
    let length = until.duration_since(shelved_at).unwrap();
    assert!(
        (Duration::from_millis(1900)..=Duration::from_millis(2100)).contains(&length),
        "shelved for 2 s: {length:?}"
    );

    let n = site.alarms(rule).len();
    let back = site.next_state(rule, n, "active_unacked").await;
    assert_eq!(back["cause"], "shelve_expired");
    assert_eq!(back["shelved_until"], Value::Null);
    assert!(
        time(&back["ts"]) >= until,
        "not back before the shelf ended: {} < {}",
        back["ts"],
        shelved["shelved_until"]
    );
    assert_eq!(
        site.states(rule),
        [
            "normal",
            "active_unacked",
            "active_acked",
            "normal",
            "active_unacked",
            "shelved",
            "active_unacked"
        ]
    );
    let got = seqs(&site.received(), &format!("{BASE}/alarms/{rule}"));
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
    site.check_schemas();
    site.finish().await;
}

/// A retained ack would acknowledge every future alarm at each
/// reconnect. A broker passes a retained message on with the retain flag
/// only to a new subscription (to live subscribers it is an ordinary
/// message, MQTT 3.1.1 §3.3.1.3), so the gateway is restarted with a
/// fresh session to receive it as such.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_ack_is_ignored() {
    let mut site = Site::start(HOT).await;
    site.set("temp", 85.0);
    site.next_state("hot", 0, "active_unacked").await;
    site.stop_gateway().await;

    site.send("alarms/hot/ack", r#"{"by":"stuck-panel"}"#, true)
        .await;
    let n = site.alarms("hot").len();
    site.start_gateway("fieldgate-test-fresh-session").await;
    // The broker does hand it out as retained to a new subscription.
    let probe = Subscriber::start(site.broker, "probe", &format!("{BASE}/alarms/hot/ack")).await;
    assert!(probe.wait_until(WAIT, |m| m.iter().any(|r| r.retain)).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<String> = site.states("hot").into_iter().skip(n).collect();
    assert!(
        !after.iter().any(|s| s == "active_acked"),
        "a retained ack acknowledged the alarm: {after:?}"
    );
    assert_eq!(site.states("hot").last().unwrap(), "active_unacked");

    // Clearing the stray retained ack (an empty retained message, which the
    // broker hands to live subscribers as an ordinary message) must not
    // acknowledge anything either.
    site.send("alarms/hot/ack", Vec::new(), true).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(site.states("hot").last().unwrap(), "active_unacked");

    // The same ack sent live works: the gateway does listen.
    let n = site.alarms("hot").len();
    site.send("alarms/hot/ack", r#"{"by":"j.smith"}"#, false)
        .await;
    site.next_state("hot", n, "active_acked").await;
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 4. The CMMS status loop
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cmms_accepts_and_closes_and_the_next_activation_raises_a_new_work_order() {
    // Three activations within seconds: with the default chatter_count (3
    // in 60 s) the third would be chattering and raise nothing.
    let site = Site::start(
        r#"
[alarms]
chatter_count = 10

[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
deadband = 2.0
on_delay = "300ms"
"#,
    )
    .await;
    let rule = "hot";
    site.set("temp", 85.0);
    site.wait_wo("the first work order", |w| !w.is_empty())
        .await;
    let first = site.work_orders().remove(0);
    let id1 = first["id"].as_str().unwrap().to_owned();
    assert_eq!(first["key"], key_of(rule, "PUMP-001", 1, &first));
    assert_eq!(first["occurrences"], 1);

    // A second activation while it is open only updates it.
    let n = site.alarms(rule).len();
    site.set("temp", 70.0);
    site.next_state(rule, n, "returned_unacked").await;
    let n = site.alarms(rule).len();
    site.set("temp", 86.0);
    site.next_state(rule, n, "active_unacked").await;
    site.wait_wo("the update", |w| w.len() >= 2).await;
    let update = site.work_orders().remove(1);
    assert_eq!(update["id"].as_str(), Some(id1.as_str()), "same work order");
    assert_eq!(update["key"], first["key"]);
    assert_eq!(update["occurrences"], 2);
    assert_eq!(update["last"]["value"].as_f64(), Some(86.0));
    assert_eq!(update["created_at"], first["created_at"]);
    assert_eq!(site.wo_ids(), std::slice::from_ref(&id1));

    // Accepted, with the CMMS's reference.
    site.send(
        &format!("workorders/{id1}/status"),
        r#"{"status":"accepted","ref":"CMMS-1","by":"planner"}"#,
        false,
    )
    .await;
    site.wait_wo("the accepted work order", |w| {
        w.iter().any(|wo| wo["status"] == "accepted")
    })
    .await;
    let accepted = site
        .work_orders()
        .into_iter()
        .find(|wo| wo["status"] == "accepted")
        .unwrap();
    assert_eq!(accepted["id"].as_str(), Some(id1.as_str()));
    assert_eq!(accepted["cmms"]["ref"], "CMMS-1");
    assert_eq!(accepted["cmms"]["status"], "accepted");
    assert_eq!(accepted["cmms"]["by"], "planner");
    assert_eq!(accepted["occurrences"], 2);

    // Closed: the retained work order is cleared.
    site.send(
        &format!("workorders/{id1}/status"),
        r#"{"status":"closed"}"#,
        false,
    )
    .await;
    let cleared = site
        .sub
        .wait_until(WAIT, |m| {
            m.iter()
                .any(|r| wo_id(&r.topic) == Some(id1.as_str()) && r.payload.is_empty())
        })
        .await;
    assert!(cleared, "an empty message clears workorders/{id1}");
    let topic = site.wo_topic(&id1);
    let seqs: Vec<u64> = topic
        .iter()
        .filter_map(|m| m.json()["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [1, 2, 3], "raised, updated, accepted");
    assert!(
        topic.last().unwrap().payload.is_empty(),
        "the clear comes last"
    );

    let late = Subscriber::start(site.broker, "late-cmms", &format!("{BASE}/#")).await;
    assert!(
        late.wait_until(WAIT, |m| m.iter().any(|r| r.topic.ends_with("/status")))
            .await,
        "the retained status arrives"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stale: Vec<Received> = late
        .received()
        .into_iter()
        .filter(|m| wo_id(&m.topic).is_some())
        .collect();
    assert!(
        stale.is_empty(),
        "no retained work order after closing: {stale:?}"
    );

    // The next activation raises a new one.
    let n = site.alarms(rule).len();
    site.set("temp", 70.0);
    site.next_state(rule, n, "returned_unacked").await;
    site.set("temp", 87.0);
    site.wait_wo("a second work order", |w| {
        w.iter().any(|wo| wo["id"].as_str() != Some(id1.as_str()))
    })
    .await;
    let ids = site.wo_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let second = site
        .work_orders()
        .into_iter()
        .find(|wo| wo["id"].as_str() == Some(ids[1].as_str()))
        .unwrap();
    assert_ne!(ids[1], id1);
    assert_eq!(second["key"], key_of(rule, "PUMP-001", 2, &second));
    assert!(second["key"].as_str().unwrap().contains("/2-"));
    assert_eq!(second["occurrences"], 1);
    assert_eq!(second["status"], "open");
    assert_eq!(second["seq"], 1);
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 5. Restart mid-alarm
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_alarm_keeps_the_alarm_and_its_work_order() {
    let mut site = Site::start(
        r#"
[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
deadband = 2.0
on_delay = "300ms"
"#,
    )
    .await;
    let rule = "hot";
    let topic = format!("{BASE}/alarms/{rule}");
    site.set("temp", 85.0);
    site.next_state(rule, 0, "active_unacked").await;
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let id = site.wo_ids().remove(0);

    site.stop_gateway().await;
    let wos_before = site.work_orders().len();
    let last_wo = site.work_orders().pop().unwrap();
    let alarms_before = site.alarms(rule).len();

    site.start_gateway("fieldgate-test").await;
    // Several polls and ticks with the value still above the limit.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The new broker session republishes the state (retained), and that
    // is all: no work order raised or updated, the alarm unchanged.
    assert_eq!(site.wo_ids(), std::slice::from_ref(&id));
    let wos = site.work_orders();
    assert!(wos.len() > wos_before, "the open work order is republished");
    for wo in &wos[wos_before..] {
        for field in ["key", "status", "occurrences", "updated_at", "store"] {
            assert_eq!(
                wo[field], last_wo[field],
                "{field} after the restart: {wo:#}"
            );
        }
    }
    let alarms = site.alarms(rule);
    assert!(alarms.len() > alarms_before, "the alarm is republished");
    for a in &alarms[alarms_before..] {
        assert_eq!(a["state"], "active_unacked", "{a:#}");
        assert_eq!(
            a["cause"],
            Value::Null,
            "a republished state, not an event: {a:#}"
        );
    }
    let last_seq = seqs(&site.received(), &topic).into_iter().max().unwrap();
    assert_eq!(site.states(rule).last().unwrap(), "active_unacked");

    // What a console connecting now sees.
    let late = Subscriber::start(site.broker, "late-console", &format!("{BASE}/#")).await;
    let retained = late
        .wait_until(WAIT, |m| {
            m.iter().any(|r| r.topic == topic) && m.iter().any(|r| wo_id(&r.topic).is_some())
        })
        .await;
    assert!(
        retained,
        "retained alarm and work order: {:?}",
        late.received()
    );
    let alarm = late
        .received()
        .into_iter()
        .find(|r| r.topic == topic)
        .unwrap();
    assert!(alarm.retain);
    assert_eq!(alarm.json()["state"], "active_unacked");
    let wo = late
        .received()
        .into_iter()
        .find(|r| wo_id(&r.topic).is_some())
        .unwrap();
    assert_eq!(wo.json()["id"].as_str(), Some(id.as_str()));

    // An ack after the restart works, and the topic's seq goes on.
    let n = site.alarms(rule).len();
    site.send("alarms/hot/ack", r#"{"by":"night shift"}"#, false)
        .await;
    let acked = site.next_state(rule, n, "active_acked").await;
    assert_eq!(
        acked["seq"].as_u64(),
        Some(last_seq + 1),
        "seq continues after the restart"
    );
    assert_eq!(
        acked["store"], last_wo["store"],
        "a clean restart keeps the store"
    );
    let got = seqs(&site.received(), &topic);
    assert!(contiguous(&got), "{got:?}");
    assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>());
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 6. A count meter across a restart
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_count_meter_survives_a_restart_and_raises_preventive_work() {
    let mut site = Site::start(
        r#"
[[meters]]
name = "pump_starts"
tag = "pump.run"
kind = "count"
every = 3
workorder = { title = "{asset}: service after {value} starts", procedure = "SOP-PUMP-020" }
"#,
    )
    .await;
    let meter = "pump_starts";
    site.wait_data(0, "run", |v| v == &json!(false)).await;
    // Two starts.
    for _ in 0..2 {
        site.set_seen("run", 1.0).await;
        site.set_seen("run", 0.0).await;
    }
    assert!(site.work_orders().is_empty());

    site.stop_gateway().await;
    site.start_gateway("fieldgate-test").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(site.work_orders().is_empty(), "not due after two starts");

    // The third start.
    site.set_seen("run", 1.0).await;
    site.wait_wo("a preventive work order", |w| !w.is_empty())
        .await;
    let wo = site.work_orders().remove(0);
    let id = wo["id"].as_str().unwrap().to_owned();
    assert_eq!(wo["type"], "preventive");
    assert_eq!(wo["asset"], "PUMP-001");
    assert_eq!(wo["procedure"], "SOP-PUMP-020");
    assert_eq!(wo["key"], key_of("meter:pump_starts", "PUMP-001", 1, &wo));
    assert_eq!(wo["trigger"]["meter"], meter);
    assert_eq!(wo["trigger"]["kind"], "count");
    assert_eq!(wo["trigger"]["value"].as_f64(), Some(3.0));
    assert_eq!(wo["trigger"]["threshold"].as_f64(), Some(3.0));

    let due = site
        .sub
        .wait_until(WAIT, |_| {
            site.meters(meter).last().is_some_and(|m| m["due"] == true)
        })
        .await;
    assert!(due, "meter due: {:#?}", site.meters(meter));
    let m = site.meters(meter).pop().unwrap();
    assert_eq!(m["value"], 3);
    assert_eq!(m["next_due"], 3);
    assert_eq!(m["kind"], "count");
    assert_eq!(m["tag"], "pump.run");

    // Serviced: the CMMS closes it and the meter re-arms.
    site.send(
        &format!("workorders/{id}/status"),
        r#"{"status":"closed","ref":"PM-7"}"#,
        false,
    )
    .await;
    let rearmed = site
        .sub
        .wait_until(WAIT, |_| {
            site.meters(meter)
                .last()
                .is_some_and(|m| m["due"] == false && m["next_due"] == 6)
        })
        .await;
    assert!(rearmed, "meter re-armed: {:#?}", site.meters(meter));
    assert_eq!(site.meters(meter).last().unwrap()["value"], 3);
    assert!(
        site.wo_topic(&id).last().unwrap().payload.is_empty(),
        "the closed work order is cleared"
    );
    let got = seqs(&site.received(), &format!("{BASE}/meters/{meter}"));
    assert!(
        contiguous(&got),
        "meter seq continues across the restart: {got:?}"
    );
    site.check_schemas();

    // Removed from the config (no rule or meter left at all): its
    // retained value is cleared at the next start, and only then.
    site.stop_gateway().await;
    site.rules = String::new();
    site.start_gateway("fieldgate-test").await;
    let topic = format!("{BASE}/meters/{meter}");
    let cleared = site
        .sub
        .wait_until(WAIT, |m| {
            m.iter()
                .rfind(|r| r.topic == topic)
                .is_some_and(|r| r.payload.is_empty())
        })
        .await;
    assert!(cleared, "the removed meter's retained value is cleared");
    site.stop_gateway().await;
    site.start_gateway("fieldgate-test").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let clears = site
        .received()
        .iter()
        .filter(|r| r.topic == topic && r.payload.is_empty())
        .count();
    assert_eq!(clears, 1, "cleared once, not at every start");
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 7. Flood guard
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_flood_raises_one_flood_work_order_and_holds_the_rest() {
    let rules: String = ["temp", "t2", "t3", "t4"]
        .iter()
        .enumerate()
        .map(|(i, tag)| {
            format!(
                r#"
[[rules]]
name = "hot{n}"
tag = "pump.{tag}"
condition = "above"
limit = 80.0
asset = "BRG-{n}"
"#,
                n = i + 1
            )
        })
        .collect();
    let site = Site::start(&format!(
        r#"
[workorders]
flood_limit = 2
flood_window = "1m"
{rules}"#
    ))
    .await;
    for tag in ["temp", "t2", "t3", "t4"] {
        site.set(tag, 85.0);
    }
    for n in 1..=4 {
        site.next_state(&format!("hot{n}"), 0, "active_unacked")
            .await;
    }
    site.wait_wo("three work orders", |w| w.len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let wos = site.work_orders();
    assert_eq!(wos.len(), 3, "{wos:#?}");
    let (flood, corrective): (Vec<&Value>, Vec<&Value>) = wos
        .iter()
        .partition(|wo| wo["trigger"]["rule"] == "alarm_flood");
    assert_eq!(corrective.len(), 2, "two work orders before the flood");
    assert_eq!(flood.len(), 1, "one flood work order");
    let flood = flood[0];
    assert_eq!(flood["type"], "corrective");
    assert_eq!(flood["priority"], "high");
    assert_eq!(flood["title"], "Alarm flood: 3 work orders in 1 minute");
    assert_eq!(flood["trigger"]["value"].as_u64(), Some(3));
    assert_eq!(flood["asset"], "gw", "the flood is the gateway's");
    assert_eq!(flood["trigger"]["condition"], "flood");
    assert_eq!(flood["trigger"]["tag"], Value::Null);
    assert_eq!(flood["trigger"]["limit"].as_f64(), Some(2.0));
    assert_eq!(flood["key"], key_of("gateway:alarm_flood", "gw", 1, flood));
    let mut raised: Vec<&str> = corrective
        .iter()
        .map(|wo| wo["trigger"]["rule"].as_str().unwrap())
        .collect();
    raised.sort_unstable();
    raised.dedup();
    assert_eq!(raised.len(), 2, "two different rules: {raised:?}");
    for wo in &corrective {
        let rule = wo["trigger"]["rule"].as_str().unwrap();
        let n = rule.strip_prefix("hot").unwrap();
        assert_eq!(wo["asset"], format!("BRG-{n}"));
    }
    // All four alarms are there; the held ones as alarms only.
    for n in 1..=4 {
        assert_eq!(
            site.states(&format!("hot{n}")).last().unwrap(),
            "active_unacked"
        );
    }
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 8. Chattering
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chattering_alarm_raises_one_work_order_and_counts_the_rest() {
    let site = Site::start(
        r#"
[alarms]
chatter_count = 3
chatter_window = "10s"

[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
"#,
    )
    .await;
    let rule = "hot";
    let mut activations = Vec::new();
    for _ in 0..3 {
        let n = site.alarms(rule).len();
        site.set("temp", 85.0);
        activations.push(site.next_state(rule, n, "active_unacked").await);
        let n = site.alarms(rule).len();
        site.set("temp", 70.0);
        site.next_state(rule, n, "returned_unacked").await;
    }
    let flags: Vec<&Value> = activations.iter().map(|a| &a["chattering"]).collect();
    assert_eq!(
        flags,
        [&json!(false), &json!(false), &json!(true)],
        "flagged from the activation that reaches the count"
    );
    site.wait_wo("three occurrences", |w| {
        w.last().is_some_and(|wo| wo["occurrences"] == 3)
    })
    .await;
    let ids = site.wo_ids();
    assert_eq!(
        ids.len(),
        1,
        "only the first activation raised one: {ids:?}"
    );
    let occurrences: Vec<u64> = site
        .work_orders()
        .iter()
        .map(|wo| wo["occurrences"].as_u64().unwrap())
        .collect();
    assert_eq!(occurrences, [1, 2, 3]);

    // Even with its work order closed, a chattering alarm raises no new one.
    site.send(
        &format!("workorders/{}/status", ids[0]),
        r#"{"status":"closed"}"#,
        false,
    )
    .await;
    let cleared = site
        .sub
        .wait_until(WAIT, |m| {
            m.iter()
                .any(|r| wo_id(&r.topic) == Some(ids[0].as_str()) && r.payload.is_empty())
        })
        .await;
    assert!(cleared);
    let n = site.alarms(rule).len();
    site.set("temp", 85.0);
    let fourth = site.next_state(rule, n, "active_unacked").await;
    assert_eq!(fourth["chattering"], true);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(site.wo_ids(), ids, "no work order while chattering");
    site.check_schemas();
    site.finish().await;
}

/// Issue #15 item 8: a fault that begins while its rule is flagged
/// chattering, and is still there when the flag clears, gets its work
/// order then (one), with `since` the moment it began.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_still_active_when_chattering_clears_raises_its_work_order_then() {
    let site = Site::start(
        r#"
[alarms]
chatter_count = 3
chatter_window = "30s"
chatter_quiet = "5s"

[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
"#,
    )
    .await;
    let rule = "hot";
    // A hover across the limit: one work order, and the rule chatters.
    let hover = async |times: usize| {
        let mut last = Value::Null;
        for _ in 0..times {
            let n = site.alarms(rule).len();
            site.set("temp", 85.0);
            last = site.next_state(rule, n, "active_unacked").await;
            let n = site.alarms(rule).len();
            site.set("temp", 70.0);
            site.next_state(rule, n, "returned_unacked").await;
        }
        last
    };
    assert_eq!(hover(3).await["chattering"], true);
    site.wait_wo("three occurrences", |w| {
        w.last().is_some_and(|wo| wo["occurrences"] == 3)
    })
    .await;
    let first = site.wo_ids();
    assert_eq!(first.len(), 1, "{first:?}");

    // The CMMS closes it; the rule still hovers, flagged: nothing raised.
    site.send(
        &format!("workorders/{}/status", first[0]),
        r#"{"status":"closed"}"#,
        false,
    )
    .await;
    let cleared = site
        .sub
        .wait_until(WAIT, |m| {
            m.iter()
                .any(|r| wo_id(&r.topic) == Some(first[0].as_str()) && r.payload.is_empty())
        })
        .await;
    assert!(cleared);
    assert_eq!(hover(1).await["chattering"], true);

    // A clean excursion to 95 degC for 8 s, while flagged.
    let n = site.alarms(rule).len();
    site.set("temp", 95.0);
    let active = site.next_state(rule, n, "active_unacked").await;
    let began = Instant::now();
    assert_eq!(active["chattering"], true);
    assert_eq!(site.wo_ids(), first, "no work order while chattering");

    // 5 s without another activation (ticks every 1 s): the flag clears
    // with the alarm still active, and the work order is raised then.
    let released = site
        .sub
        .wait_until(Duration::from_secs(8), |m| {
            alarms_in(m, rule)
                .iter()
                .skip(n)
                .any(|a| a["cause"] == "chatter_cleared")
        })
        .await;
    assert!(
        released,
        "the flag clears within 8 s: {:?}",
        site.states(rule)
    );
    let clear = site
        .alarms(rule)
        .into_iter()
        .skip(n)
        .find(|a| a["cause"] == "chatter_cleared")
        .unwrap();
    assert_eq!(clear["state"], "active_unacked");
    assert_eq!(clear["chattering"], false);
    site.wait_wo("the held work order", |w| {
        w.iter().any(|wo| wo["id"] != first[0].as_str())
    })
    .await;
    let ids = site.wo_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let wo = site
        .work_orders()
        .into_iter()
        .find(|wo| wo["id"] == ids[1].as_str())
        .unwrap();
    assert_eq!(wo["status"], "open");
    assert_eq!(wo["occurrences"], 1);
    assert_eq!(wo["key"], key_of("hot", "PUMP-001", 2, &wo));
    assert_eq!(wo["trigger"]["value"].as_f64(), Some(95.0));
    assert_eq!(
        wo["trigger"]["since"], active["since"],
        "the work order is about the fault since it began"
    );
    let waited = time(&wo["created_at"])
        .duration_since(time(&active["since"]))
        .unwrap_or_default();
    assert!(
        waited >= Duration::from_secs(5),
        "raised only after the quiet time ({waited:?})"
    );

    // The rest of the 8 s, and its return: still one work order for it.
    tokio::time::sleep(Duration::from_secs(8).saturating_sub(began.elapsed())).await;
    let n = site.alarms(rule).len();
    site.set("temp", 70.0);
    site.next_state(rule, n, "returned_unacked").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(site.wo_ids(), ids, "one work order per fault");
    let updates = site
        .work_orders()
        .into_iter()
        .filter(|w| w["id"] == ids[1].as_str())
        .count();
    assert_eq!(updates, 1, "the release is not an occurrence");
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 9. Stale
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_device_raises_a_stale_alarm_until_it_answers_again() {
    let site = Site::start(
        r#"
[[rules]]
name = "pump_silent"
tag = "pump.temp"
condition = "stale"
after = "1s"
off_delay = "1s"
"#,
    )
    .await;
    let rule = "pump_silent";
    site.wait_data(0, "temp", |v| value_is(v, 20.0)).await;

    let n = site.alarms(rule).len();
    site.sim.set_offline(DEVICE, true).unwrap();
    let active = site.next_state(rule, n, "active_unacked").await;
    assert_eq!(active["tag"], "pump.temp");
    assert_eq!(active["limit"].as_f64(), Some(1.0));
    assert!(
        active["value"].as_f64().unwrap() >= 1.0,
        "seconds without a good reading: {}",
        active["value"]
    );
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let wo = site.work_orders().remove(0);
    assert_eq!(wo["trigger"]["condition"], "stale");
    assert_eq!(wo["trigger"]["unit"], "s");
    assert_eq!(wo["trigger"]["tag"], "pump.temp");
    assert_eq!(wo["asset"], "PUMP-001");
    let bad = site.data().iter().any(|d| {
        d["tags"]["temp"]["q"]
            .as_str()
            .is_some_and(|q| q.starts_with("bad:"))
    });
    assert!(bad, "the data topic shows the bad quality");

    // Acknowledged while silent, then back: normal after the off-delay.
    let n = site.alarms(rule).len();
    site.send("alarms/pump_silent/ack", "ack", false).await;
    site.next_state(rule, n, "active_acked").await;
    let from = site.data().len();
    let n = site.alarms(rule).len();
    site.sim.set_offline(DEVICE, false).unwrap();
    // Reconnecting waits out the poller's backoff (1 s, 2 s, ... with jitter).
    let ok = site
        .sub
        .wait_until(Duration::from_secs(10), |m| {
            alarms_in(m, rule)
                .iter()
                .skip(n)
                .any(|a| a["state"] == "normal")
        })
        .await;
    assert!(ok, "back to normal: {:?}", site.states(rule));
    let normal = site
        .alarms(rule)
        .into_iter()
        .skip(n)
        .find(|a| a["state"] == "normal")
        .unwrap();
    let good = site
        .data()
        .into_iter()
        .skip(from)
        .find(|d| d["tags"]["temp"]["q"] == "good")
        .expect("a good reading after the device returned");
    let waited = time(&normal["ts"])
        .duration_since(time(&good["ts"]))
        .unwrap_or_default();
    assert!(
        waited >= Duration::from_millis(900),
        "normal only after the 1 s off-delay ({waited:?})"
    );
    assert_eq!(normal["cause"], "condition");
    site.check_schemas();
    site.finish().await;
}

/// The gateway's MQTT session is persistent (`clean_session = false`), so
/// a status the CMMS sends while the gateway is down reaches it when it
/// comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_order_closed_while_the_gateway_is_down_is_cleared_at_restart() {
    let mut site = Site::start(HOT).await;
    site.set("temp", 85.0);
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let id = site.wo_ids().remove(0);
    site.stop_gateway().await;
    site.send(
        &format!("workorders/{id}/status"),
        r#"{"status":"closed","ref":"CMMS-9"}"#,
        false,
    )
    .await;
    site.start_gateway("fieldgate-test").await;
    let cleared = site
        .sub
        .wait_until(WAIT, |m| {
            m.iter()
                .any(|r| wo_id(&r.topic) == Some(id.as_str()) && r.payload.is_empty())
        })
        .await;
    assert!(cleared, "workorders/{id} cleared after the restart");
    site.check_schemas();
    site.finish().await;
}

// ---------------------------------------------------------------------------
// 10. Requests acknowledged to the broker once applied
// ---------------------------------------------------------------------------

/// An operator's ack and the CMMS's status sent while the gateway is
/// stopped wait in its broker session and are applied once it is back;
/// the gateway acknowledges them to the broker once committed, so the
/// next restart does not get (and apply) them again: the history, where
/// every applied request leaves one entry, has each exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_sent_while_the_gateway_is_stopped_are_applied_once_when_it_is_back() {
    let mut site = Site::start(HOT).await;
    let rule = "hot";
    site.set("temp", 85.0);
    site.next_state(rule, 0, "active_unacked").await;
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let id = site.wo_ids().remove(0);
    site.stop_gateway().await;

    let n = site.alarms(rule).len();
    site.send("alarms/hot/ack", r#"{"by":"night shift"}"#, false)
        .await;
    site.send(
        &format!("workorders/{id}/status"),
        r#"{"status":"accepted","ref":"CMMS-9"}"#,
        false,
    )
    .await;
    site.start_gateway("fieldgate-test").await;
    let acked = site.next_state(rule, n, "active_acked").await;
    assert_eq!(acked["cause"], "ack");
    site.wait_wo("the accepted status", |w| {
        w.iter().any(|wo| wo["status"] == "accepted")
    })
    .await;

    // Restarted once more: nothing comes back to be applied again.
    site.stop_gateway().await;
    site.start_gateway("fieldgate-test").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    site.stop_gateway().await;
    let history = fieldgate::store::Inspector::open(&site.dir.path().join("data/fieldgate.db"))
        .unwrap()
        .history(None, 1000)
        .unwrap();
    let applied = |subject: &str, event: &str| {
        history
            .iter()
            .filter(|h| h.entry.subject == subject && h.entry.event == event)
            .count()
    };
    assert_eq!(applied(rule, "ack"), 1, "the ack, once: {history:#?}");
    assert_eq!(applied(rule, "active_acked"), 1);
    assert_eq!(
        applied(&id, "accepted"),
        1,
        "the status, once: {history:#?}"
    );
    assert_eq!(site.states(rule).last().unwrap(), "active_acked");
    site.check_schemas();
    site.finish().await;
}

/// A broker sends a message again when its acknowledgement was lost (the
/// gateway stopped between the commit and the PUBACK): applying a request
/// twice changes nothing the second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_applied_twice_changes_nothing_the_second_time() {
    let site = Site::start(HOT).await;
    let rule = "hot";
    site.set("temp", 85.0);
    site.next_state(rule, 0, "active_unacked").await;
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let id = site.wo_ids().remove(0);
    let status = format!("workorders/{id}/status");
    let accepted = r#"{"status":"accepted","ref":"CMMS-9","by":"planner"}"#;
    for _ in 0..2 {
        site.send("alarms/hot/ack", r#"{"by":"night shift"}"#, false)
            .await;
        site.send(&status, accepted, false).await;
    }
    site.next_state(rule, 0, "active_acked").await;
    site.wait_wo("the accepted status", |w| {
        w.iter().any(|wo| wo["status"] == "accepted")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Compared by seq: the outbox itself may deliver a message twice.
    let mut alarm_seqs: Vec<u64> = site
        .alarms(rule)
        .iter()
        .filter(|a| a["state"] == "active_acked")
        .filter_map(|a| a["seq"].as_u64())
        .collect();
    alarm_seqs.dedup();
    assert_eq!(alarm_seqs.len(), 1, "one ack: {:?}", site.states(rule));
    let mut wo_seqs: Vec<u64> = site
        .work_orders()
        .iter()
        .filter(|wo| wo["status"] == "accepted")
        .filter_map(|wo| wo["seq"].as_u64())
        .collect();
    wo_seqs.dedup();
    assert_eq!(wo_seqs.len(), 1, "one update: {:#?}", site.work_orders());
    site.check_schemas();
    site.finish().await;
}
// ---------------------------------------------------------------------------
// 11. A lost store, and the retained state after a restart
// ---------------------------------------------------------------------------

/// The gateway's store file in the test's data dir.
fn store_file(site: &Site) -> std::path::PathBuf {
    site.dir.path().join("data").join("fieldgate.db")
}

/// The `online` status messages so far, oldest first.
fn online_statuses(site: &Site) -> Vec<Value> {
    let topic = format!("{BASE}/status");
    site.received()
        .iter()
        .filter(|r| r.topic == topic)
        .map(Received::json)
        .filter(|v| v["state"] == "online")
        .collect()
}

fn store_lost_total() -> u64 {
    fieldgate::events::totals()
        .iter()
        .find(|(e, _)| *e == "store_lost")
        .map(|(_, n)| *n)
        .unwrap_or(0)
}

/// The issue's reproduction: the store's header is overwritten while the
/// gateway is stopped, so the next start moves the file aside. A consumer
/// and a CMMS must be able to tell the new store from a duplicate of the
/// old one: new `store` identity (seq starts again under it), a work-order
/// key never used before, and the status says the store was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moved_aside_as_corrupt_starts_clean_under_a_new_identity() {
    let mut site = Site::start(HOT).await;
    let first_status = online_statuses(&site).remove(0);
    assert_eq!(first_status["store_start"], "new", "{first_status}");
    site.set("temp", 85.0);
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let first = site.work_orders().remove(0);
    let old_store = first["store"].as_str().unwrap().to_owned();
    assert_eq!(first_status["store"], old_store.as_str());
    let old_data: Vec<u64> = site
        .data()
        .iter()
        .filter_map(|d| d["seq"].as_u64())
        .collect();
    assert!(old_data.len() > 1, "some data before the loss");
    site.stop_gateway().await;

    // A header overwritten while stopped.
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(store_file(&site))
            .unwrap();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.write_all(b"not a database!!").unwrap();
    }
    let lost_before = store_lost_total();
    let data_before = site.data().len();
    site.start_gateway("fieldgate-test").await;

    // The status says so, retained, with both identities.
    let status = online_statuses(&site).pop().unwrap();
    assert!(
        schema::validator("status.json").is_valid(&status),
        "{status}"
    );
    assert_eq!(status["store_start"], "lost", "{status}");
    assert_eq!(status["store_previous"], old_store.as_str(), "{status}");
    let new_store = status["store"].as_str().unwrap().to_owned();
    assert_ne!(new_store, old_store);
    assert!(
        status["store_reason"]
            .as_str()
            .is_some_and(|r| r.contains("moved aside")),
        "{status}"
    );
    assert!(store_lost_total() > lost_before, "counted as store_lost");
    let aside = std::fs::read_dir(site.dir.path().join("data"))
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fieldgate.db.corrupt-")
        });
    assert!(aside, "the damaged file is kept aside");

    // Data: seq starts again at 1, under the new identity only.
    let ok = site
        .sub
        .wait_until(WAIT, |m| data_in(m).len() > data_before + 2)
        .await;
    assert!(ok, "data after the restart");
    let data_schema = schema::validator("data.json");
    let after: Vec<Value> = site.data().split_off(data_before);
    for d in &after {
        assert!(data_schema.is_valid(d), "{d}");
    }
    let new_seqs: Vec<u64> = after
        .iter()
        .filter(|d| d["store"] == new_store.as_str())
        .filter_map(|d| d["seq"].as_u64())
        .collect();
    assert_eq!(
        new_seqs.first(),
        Some(&1),
        "seq restarts under the new store"
    );
    assert!(contiguous(&new_seqs), "{new_seqs:?}");
    assert!(
        after
            .iter()
            .all(|d| d["store"] == new_store.as_str() || d["store"] == old_store.as_str()),
        "every data message names its store"
    );

    // The state was lost with the file: the alarm starts from normal, the
    // reading still above the limit raises it again, and the work order it
    // raises has a key the CMMS has never seen (the counter started again).
    site.wait_wo("a work order from the new store", |w| {
        w.iter().any(|wo| wo["store"] == new_store.as_str())
    })
    .await;
    let second = site
        .work_orders()
        .into_iter()
        .find(|wo| wo["store"] == new_store.as_str())
        .unwrap();
    assert_ne!(second["id"], first["id"]);
    assert_ne!(second["key"], first["key"], "a key is never reused");
    assert_eq!(second["key"], key_of("hot", "PUMP-001", 1, &second));
    site.check_schemas();
    site.finish().await;
}

/// Rows the previous run left unconfirmed in the outbox (older states of a
/// retained topic, whose newer states the broker confirmed before the
/// stop) are resent after a restart. Before the republish on connect, the
/// first of them to go out retained became the broker's state: the alarm
/// went back to `normal`, the closed work order came back. Now the new
/// session republishes the current state after them, and a clean restart
/// keeps the store's identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_an_older_backlog_row_does_not_stay_the_retained_state() {
    let mut site = Site::start(HOT).await;
    let rule = "hot";
    let alarm_topic = format!("{BASE}/alarms/{rule}");
    // The first session publishes every alarm's state: normal here.
    site.next_state(rule, 0, "normal").await;
    site.set("temp", 85.0);
    site.next_state(rule, 0, "active_unacked").await;
    site.wait_wo("a work order", |w| !w.is_empty()).await;
    let id = site.wo_ids().remove(0);
    let wo_topic = format!("{BASE}/workorders/{id}");
    site.send(
        &format!("workorders/{id}/status"),
        r#"{"status":"closed","ref":"CMMS-1"}"#,
        false,
    )
    .await;
    let cleared = site
        .sub
        .wait_until(WAIT, |m| {
            m.iter()
                .any(|r| r.topic == wo_topic && r.payload.is_empty())
        })
        .await;
    assert!(cleared, "the closed work order's topic is cleared");
    site.stop_gateway().await;
    let store = online_statuses(&site)[0]["store"]
        .as_str()
        .unwrap()
        .to_owned();

    // Older rows, exactly as first published, put back into the outbox as
    // if their PUBACK had never come: the alarm's `normal`, the open work
    // order.
    let received = site.received();
    let older: Vec<&Received> = [
        received
            .iter()
            .find(|r| r.topic == alarm_topic && r.json()["state"] == "normal"),
        received
            .iter()
            .find(|r| r.topic == wo_topic && !r.payload.is_empty()),
    ]
    .into_iter()
    .map(Option::unwrap)
    .collect();
    {
        let conn = rusqlite::Connection::open(store_file(&site)).unwrap();
        // Recent: within the outbox's max_age.
        let now_ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        for (r, kind) in older.iter().zip(["alarm", "workorder"]) {
            let seq = r.json()["seq"].as_i64().unwrap();
            conn.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'last_id'",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO outbox (id, topic, seq, payload, qos, retain, kind, created_at)
                 VALUES ((SELECT value FROM meta WHERE key = 'last_id'), ?1, ?2, ?3, 1, 1, ?4, ?5)",
                rusqlite::params![r.topic, seq, r.payload, kind, now_ms],
            )
            .unwrap();
        }
    }
    let from = site.received().len();
    site.start_gateway("fieldgate-test").await;

    // The backlog went out again (the fault this guards against)...
    let resent = site
        .sub
        .wait_until(WAIT, |m| {
            m[from..]
                .iter()
                .any(|r| r.topic == alarm_topic && r.json()["state"] == "normal")
        })
        .await;
    assert!(resent, "the older alarm row is resent");
    // ...and the current state after it: the alarm, and the closed work
    // order's topic cleared again.
    let settled = site
        .sub
        .wait_until(WAIT, |m| {
            let after = &m[from..];
            let normal = after
                .iter()
                .rposition(|r| r.topic == alarm_topic && r.json()["state"] == "normal");
            let active = after
                .iter()
                .rposition(|r| r.topic == alarm_topic && r.json()["state"] == "active_unacked");
            let open = after
                .iter()
                .rposition(|r| r.topic == wo_topic && !r.payload.is_empty());
            let clear = after
                .iter()
                .rposition(|r| r.topic == wo_topic && r.payload.is_empty());
            active > normal && clear > open
        })
        .await;
    assert!(
        settled,
        "the current states follow the older rows: {:#?}",
        site.received()[from..]
            .iter()
            .filter(|r| r.topic == alarm_topic || r.topic == wo_topic)
            .map(|r| (
                r.topic.clone(),
                String::from_utf8_lossy(&r.payload).into_owned()
            ))
            .collect::<Vec<_>>()
    );

    // A clean restart keeps the store's identity.
    let status = online_statuses(&site).pop().unwrap();
    assert_eq!(status["store_start"], "kept", "{status}");
    assert_eq!(status["store"], store.as_str());
    let republished = site.alarms(rule).pop().unwrap();
    assert_eq!(republished["store"], store.as_str());

    // What the broker keeps: the newest state.
    let late = Subscriber::start(site.broker, "late-console", &format!("{BASE}/#")).await;
    let got = late
        .wait_until(WAIT, |m| m.iter().any(|r| r.topic == alarm_topic))
        .await;
    assert!(got, "a retained alarm");
    // Retained messages come with the subscription; give stragglers time.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let kept = late.received();
    let alarm = kept.iter().find(|r| r.topic == alarm_topic).unwrap();
    assert!(alarm.retain);
    assert_eq!(alarm.json()["state"], "active_unacked");
    assert!(
        !kept
            .iter()
            .any(|r| r.topic == wo_topic && !r.payload.is_empty()),
        "the closed work order is not retained: {kept:?}"
    );
    site.check_schemas();
    site.finish().await;
}
