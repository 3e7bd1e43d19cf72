//! A fleet of 200 identical pumps written once: one `[[templates]]` and
//! either 200 short `[[devices]]` or a 200-row device list. What the
//! technician sees of it (`fieldgate check`: the counts, and a mistake
//! reported once where it was written) and what the plant does with it:
//! the whole gateway in this process against one simulator listener that
//! serves the 200 pumps as unit ids 1 to 200, the embedded broker, and
//! `/api/status`. Every instance rule fires on its own pump; a reload that
//! changes the template's limit reaches every pump (but the one with a
//! limit of its own in the device list) and keeps each alarm and work
//! order. Loopback only; every wait is bounded.
//!
//! Values are driven with `Simulator::set` on named constant points, so
//! no plant model moves them behind the test's back. Tags carry a
//! deadband: a pump's data is published when it changes (the gateway
//! still judges every poll), which keeps 200 pumps' traffic small.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::subscriber::{Received, Subscriber};
use crate::common::{broker, gateway, http, schema, sim, tracing};
use fieldgate::app::AppError;
use fieldgate::config::Config;
use fieldgate::sim::Simulator;
use rumqttc::QoS;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Pumps in the fleet.
const PUMPS: usize = 200;

/// Topic prefix of the gateway under test.
const BASE: &str = "fieldgate/test/gw";

/// Longest wait for something the gateway does within a few polls of
/// every pump (each polled every second, all on one connection).
const WAIT: Duration = Duration::from_secs(20);

/// The template's rule, as its instances are named: `pump7_bearing_hot`.
fn rule(pump: usize) -> String {
    format!("pump{pump}_bearing_hot")
}

/// The asset the template gives a pump.
fn asset(pump: usize) -> String {
    format!("P-pump{pump}")
}

/// The pump template: three tags in one block of input registers (one
/// request per pump), a rule and a meter written relative to the pump.
/// `tag` is the rule's tag as written (a test misspells it).
fn template(limit: f64, tag: &str) -> String {
    format!(
        r#"
[[templates]]
name = "pump"
poll_interval = "1s"
timeout = "500ms"
retries = 0
asset = "P-{{device}}"
tags = [
  {{ name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC", deadband = 0.5 }},
  {{ name = "pressure", area = "input", address = 2, type = "f32", unit = "bar", deadband = 0.1 }},
  {{ name = "running", area = "input", address = 4, type = "bit", bit = 0 }},
]

[[templates.rules]]
name = "bearing_hot"
tag = "{tag}"
condition = "above"
limit = {limit:?}
workorder.title = "{{device}}: bearing hot ({{value}} {{unit}})"

[[templates.meters]]
name = "service"
tag = "running"
every = "2000h"
"#
    )
}

/// Tags of one pump, for the counts `check` prints.
const TAGS_PER_PUMP: usize = 3;

/// The fleet as 200 `[[devices]]` of the template, all behind `tcp`.
fn inline_devices(tcp: &str) -> String {
    (1..=PUMPS)
        .map(|i| {
            format!("\n[[devices]]\nname = \"pump{i}\"\ntemplate = \"pump\"\ntcp = \"{tcp}\"\nunit = {i}\n")
        })
        .collect()
}

/// The fleet as a device list, one row per pump, all behind `tcp`; the
/// override column is empty (the template's limit applies) except for
/// the pumps `limits` gives a cell.
fn device_list(tcp: &str, limits: &[(usize, &str)]) -> String {
    let mut csv = String::from("name,template,tcp,unit,bearing_hot.limit\n");
    for i in 1..=PUMPS {
        let limit = limits
            .iter()
            .find(|(pump, _)| *pump == i)
            .map_or("", |(_, cell)| cell);
        csv.push_str(&format!("pump{i},pump,{tcp},{i},{limit}\n"));
    }
    csv
}

/// How the devices are written.
#[derive(Clone, Copy, Debug)]
enum Written {
    /// 200 `[[devices]]` in the TOML file.
    Inline,
    /// `devices = "devices.csv"`.
    List,
}

/// A config for `check`: the gateway, the template, the devices.
fn check_config(written: Written, tag: &str) -> String {
    let head =
        "[gateway]\nid = \"gw\"\nsite = \"test\"\ndata_dir = \".\"\n\n[http]\nlisten = \"\"\n";
    match written {
        Written::Inline => format!(
            "{head}{}{}",
            template(80.0, tag),
            inline_devices("127.0.0.1:5020")
        ),
        // A top-level key: before the first table.
        Written::List => format!("devices = \"devices.csv\"\n\n{head}{}", template(80.0, tag)),
    }
}

/// Runs `fieldgate check` on `file`: its exit code and what it printed.
fn check(file: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["check", "-c"])
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Writes the config (and its device list) to a new folder and checks it.
fn check_written(
    written: Written,
    tag: &str,
    limits: &[(usize, &str)],
) -> (tempfile::TempDir, PathBuf, Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("fieldgate.toml");
    std::fs::write(&file, check_config(written, tag)).unwrap();
    std::fs::write(
        dir.path().join("devices.csv"),
        device_list("127.0.0.1:5020", limits),
    )
    .unwrap();
    let (code, out) = check(&file);
    (dir, file, code, out)
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the text"))
        + 1
}

// ---------------------------------------------------------------------------
// 1. `check`
// ---------------------------------------------------------------------------

#[test]
fn check_counts_200_pumps_from_one_template_inline_and_as_a_device_list() {
    let mut summaries = Vec::new();
    for written in [Written::Inline, Written::List] {
        let (_dir, file, code, out) = check_written(written, "bearing_temp", &[]);
        assert_eq!(code, Some(0), "{written:?}: check passes:\n{out}");
        let lines: Vec<&str> = out.lines().collect();
        let head = lines[0];
        assert!(
            head.starts_with("gateway test/gw (config ")
                && head.ends_with(&format!(
                    "): {PUMPS} devices, {} tags, 0 buses, {PUMPS} rules, {PUMPS} meters",
                    PUMPS * TAGS_PER_PUMP
                )),
            "{written:?}: {head}"
        );
        // One line per pump, each on its own unit id behind one address.
        for i in 1..=PUMPS {
            let line = lines
                .iter()
                .find(|l| l.split_whitespace().next() == Some(&format!("pump{i}")))
                .unwrap_or_else(|| panic!("{written:?}: no line for pump{i}:\n{out}"));
            assert!(
                line.ends_with(&format!(
                    "tcp 127.0.0.1:5020 unit {i}, every 1s: 3 tags in 1 request reading 5 registers"
                )),
                "{written:?}: {line}"
            );
        }
        assert_eq!(
            lines.last().copied(),
            Some(format!("{}: OK", file.display()).as_str()),
            "{written:?}: no warnings"
        );
        // The same plant either way: everything but the config hash.
        summaries.push(lines[1..lines.len() - 1].join("\n") + &head[head.find("):").unwrap()..]);
    }
    assert_eq!(summaries[0], summaries[1], "the same plant either way");
}

#[test]
fn a_mistake_in_the_template_is_reported_once_naming_the_pumps() {
    for written in [Written::Inline, Written::List] {
        let (_dir, file, code, out) = check_written(written, "bearing_tmp", &[]);
        assert_eq!(code, Some(1), "{written:?}: check fails:\n{out}");
        let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{written:?}: one error line:\n{out}");
        let line = line_of(&check_config(written, "bearing_tmp"), "\"bearing_tmp\"");
        let error = errors[0];
        assert!(
            error.starts_with(&format!(
                "error: {}:{line}: templates[0].rules[0].tag: ",
                file.display()
            )),
            "{written:?}: at the template's line {line}: {error}"
        );
        assert!(error.contains("bearing_tmp"), "{error}");
        assert!(
            error.ends_with(" (in pump1, pump2, pump3 and 197 more)"),
            "{written:?}: names the pumps: {error}"
        );
        assert_eq!(
            out.lines().last(),
            Some(format!("{}: 1 error, 0 warnings", file.display()).as_str()),
            "{written:?}:\n{out}"
        );
    }
}

#[test]
fn a_mistake_in_row_57_of_the_device_list_is_reported_at_its_line_and_column() {
    let (dir, file, code, out) = check_written(Written::List, "bearing_temp", &[(57, "hot")]);
    assert_eq!(code, Some(1), "check fails:\n{out}");
    let errors: Vec<&str> = out.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 1, "one error line:\n{out}");
    // The header is line 1: pump57 is on line 58.
    let csv = std::fs::read_to_string(dir.path().join("devices.csv")).unwrap();
    assert_eq!(line_of(&csv, "pump57,"), 58);
    assert!(
        errors[0].starts_with(&format!(
            "error: {}:58: column bearing_hot.limit: ",
            dir.path().join("devices.csv").display()
        )),
        "{}",
        errors[0]
    );
    assert!(
        !errors[0].contains("(in "),
        "a row's mistake is its own: {}",
        errors[0]
    );
    assert_eq!(
        out.lines().last(),
        Some(format!("{}: 1 error, 0 warnings", file.display()).as_str()),
        "{out}"
    );
}

// ---------------------------------------------------------------------------
// Harness: the fleet running
// ---------------------------------------------------------------------------

/// The simulated fleet: pump N is unit N on one listener, with a cool
/// bearing, a normal pressure and running.
fn scenario() -> String {
    let mut s = String::from("seed = 1\n");
    for i in 1..=PUMPS {
        s.push_str(&format!(
            r#"
[[devices]]
name = "pump{i}"
unit = {i}
listen = "127.0.0.1:0"
points = [
  {{ name = "bearing_temp", value = 55.0, area = "input", address = 0, type = "f32" }},
  {{ name = "pressure", value = 4.2, area = "input", address = 2, type = "f32" }},
  {{ name = "running", value = true, area = "input", address = 4, type = "bit", bit = 0 }},
]
"#
        ));
    }
    s
}

/// The pump with a limit of its own in the running fleet's device list,
/// and that limit.
const OWN_LIMIT_PUMP: usize = 7;
const OWN_LIMIT: &str = "88";

/// The running gateway and how to stop it.
type Running = (oneshot::Sender<()>, JoinHandle<Result<(), AppError>>);

/// Simulator, broker, subscriber and gateway of one test.
struct Fleet {
    sim: Simulator,
    broker: SocketAddr,
    http: SocketAddr,
    dir: tempfile::TempDir,
    /// Everything under `BASE/#`, in arrival order.
    sub: Subscriber,
    gateway: Option<Running>,
    reloads: mpsc::Sender<Config>,
}

impl Fleet {
    /// Starts everything with the template's `limit` and waits until the
    /// gateway is online and has published a reading of every pump.
    async fn start(limit: f64) -> Fleet {
        tracing::init();
        let sim = sim::start(&scenario()).await;
        let broker = broker::start();
        let sub = Subscriber::start(broker, "fleet-view", &format!("{BASE}/#")).await;
        let dir = tempfile::tempdir().unwrap();
        let http = broker::free_port();
        let (reloads, reload_rx) = mpsc::channel(1);
        let mut fleet = Fleet {
            sim,
            broker,
            http,
            dir,
            sub,
            gateway: None,
            reloads,
        };
        let config = fleet.write(limit);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(fieldgate::app::run_with_reloads(
            config,
            async move {
                let _ = stop_rx.await;
            },
            Some(reload_rx),
        ));
        fleet.gateway = Some((stop, task));
        let status = format!("{BASE}/status");
        let online = fleet
            .sub
            .wait_until(WAIT, |m| {
                m.iter()
                    .any(|r| r.topic == status && r.json()["state"] == "online")
            })
            .await;
        assert!(online, "gateway online within {WAIT:?}");
        let all = fleet
            .sub
            .wait_until(WAIT, |m| polled(m).len() == PUMPS)
            .await;
        assert!(
            all,
            "a reading of every pump within {WAIT:?}; {} of {PUMPS}",
            polled(&fleet.received()).len()
        );
        fleet
    }

    /// Writes the config (the template with `limit`, the device list of
    /// the fleet, in which pump7 has a limit of its own) to the test's
    /// folder and loads it as `fieldgate run` and `fieldgate reload` do.
    fn write(&self, limit: f64) -> Config {
        let tcp = self.sim.addr("pump1").unwrap().to_string();
        let list = device_list(&tcp, &[(OWN_LIMIT_PUMP, OWN_LIMIT)]);
        std::fs::write(self.dir.path().join("devices.csv"), list).unwrap();
        let text = format!(
            r#"devices = "devices.csv"

[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-fleet"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[http]
listen = "{http}"
{template}"#,
            data = self.dir.path().join("data").display(),
            host = self.broker.ip(),
            port = self.broker.port(),
            http = self.http,
            template = template(limit, "bearing_temp"),
        );
        gateway::load(self.dir.path(), &text).0
    }

    /// Changes the template's limit in the file and hands the new config
    /// to the running gateway, as `fieldgate reload` does; returns once
    /// the gateway publishes its status with the new config's hash.
    async fn reload(&self, limit: f64) {
        let config = self.write(limit);
        let hash = config.hash.clone();
        self.reloads.send(config).await.unwrap();
        let status = format!("{BASE}/status");
        let applied = self
            .sub
            .wait_until(WAIT, |m| {
                m.iter().any(|r| {
                    r.topic == status
                        && r.json()["state"] == "online"
                        && r.json()["config"] == hash.as_str()
                })
            })
            .await;
        assert!(applied, "the reload applied within {WAIT:?}");
    }

    /// Stops the gateway and the simulator; checks every alarm and
    /// work-order message against its schema.
    async fn finish(mut self) {
        if let Some((stop, task)) = self.gateway.take() {
            gateway::stop(stop, task).await;
        }
        let received = self.received();
        self.sim.shutdown().await;
        check_schemas(&received);
    }

    /// Sets the pump's bearing temperature.
    fn heat(&self, pump: usize, value: f64) {
        self.sim
            .set(&format!("pump{pump}"), "bearing_temp", value)
            .unwrap();
    }

    /// Sends an operator's acknowledgement of the pump's alarm.
    async fn ack(&self, pump: usize) {
        self.sub
            .client
            .publish(
                format!("{BASE}/alarms/{}/ack", rule(pump)),
                QoS::AtLeastOnce,
                false,
                r#"{"by":"j.smith"}"#,
            )
            .await
            .unwrap();
    }

    fn received(&self) -> Vec<Received> {
        self.sub.received()
    }

    /// Alarm messages of the pump's rule, in arrival order.
    fn alarms(&self, pump: usize) -> Vec<Value> {
        alarms_in(&self.received(), pump)
    }

    /// Waits for an alarm message of the pump in `state`, at position
    /// `from` or later among the rule's messages; returns it.
    async fn next_state(&self, pump: usize, from: usize, state: &str) -> Value {
        let found = self
            .sub
            .wait_until(WAIT, |m| {
                alarms_in(m, pump)
                    .iter()
                    .skip(from)
                    .any(|a| a["state"] == state)
            })
            .await;
        let alarms = self.alarms(pump);
        assert!(
            found,
            "pump{pump}'s alarm reaches {state} (after message {from}) within {WAIT:?}: {alarms:#?}"
        );
        alarms
            .into_iter()
            .skip(from)
            .find(|a| a["state"] == state)
            .unwrap()
    }

    /// Work-order messages (not the empty ones that clear a topic).
    fn work_orders(&self) -> Vec<Value> {
        work_orders_in(&self.received())
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

    /// Waits until the pump's data, at position `from` or later among its
    /// data messages, shows `value` for the bearing temperature: the
    /// gateway has judged that reading.
    async fn seen(&self, pump: usize, from: usize, value: f64) {
        let topic = format!("{BASE}/data/pump{pump}");
        let ok = self
            .sub
            .wait_until(WAIT, |m| {
                m.iter()
                    .filter(|r| r.topic == topic)
                    .skip(from)
                    .any(|r| r.json()["tags"]["bearing_temp"]["v"].as_f64() == Some(value))
            })
            .await;
        assert!(ok, "pump{pump} read at {value} within {WAIT:?}");
    }

    /// Data messages of the pump so far.
    fn data_count(&self, pump: usize) -> usize {
        let topic = format!("{BASE}/data/pump{pump}");
        self.received().iter().filter(|r| r.topic == topic).count()
    }

    /// `/api/status`.
    async fn status(&self) -> Value {
        let r = http::get_when_up(self.http, "/api/status").await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Polls `/api/status` until `done` holds for its alarms, by rule;
    /// returns them.
    async fn status_until(
        &self,
        what: &str,
        done: impl Fn(&std::collections::BTreeMap<String, Value>) -> bool,
    ) -> std::collections::BTreeMap<String, Value> {
        let end = tokio::time::Instant::now() + WAIT;
        loop {
            let alarms = alarms_by_rule(&self.status().await);
            if done(&alarms) {
                return alarms;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "{what} within {WAIT:?}; /api/status alarms: {alarms:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The pumps whose data has arrived at least once.
fn polled(messages: &[Received]) -> BTreeSet<String> {
    let prefix = format!("{BASE}/data/");
    messages
        .iter()
        .filter_map(|r| r.topic.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

fn alarms_in(messages: &[Received], pump: usize) -> Vec<Value> {
    let topic = format!("{BASE}/alarms/{}", rule(pump));
    messages
        .iter()
        .filter(|m| m.topic == topic && !m.payload.is_empty())
        .map(Received::json)
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

/// Distinct work-order ids, by the asset they are for.
fn wo_ids_by_asset(wos: &[Value]) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let mut out: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for wo in wos {
        out.entry(wo["asset"].as_str().unwrap_or("?").to_owned())
            .or_default()
            .insert(wo["id"].as_str().unwrap_or("?").to_owned());
    }
    out
}

/// `/api/status`'s alarms (those away from normal), by rule.
fn alarms_by_rule(status: &Value) -> std::collections::BTreeMap<String, Value> {
    status["alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["rule"].as_str().unwrap().to_owned(), a.clone()))
        .collect()
}

/// Validates every alarm and work-order message (not the empty retained
/// messages that clear a topic).
fn check_schemas(messages: &[Received]) {
    let alarm = schema::validator("alarm.json");
    let workorder = schema::validator("workorder.json");
    for m in messages {
        let Some(rest) = m.topic.strip_prefix(&format!("{BASE}/")) else {
            continue;
        };
        let levels: Vec<&str> = rest.split('/').collect();
        let validator = match levels.as_slice() {
            ["alarms", _] => &alarm,
            ["workorders", _] => &workorder,
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

// ---------------------------------------------------------------------------
// 2. Every instance fires on its own
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_overheating_pump_raises_its_own_work_order() {
    let fleet = Fleet::start(80.0).await;
    let hot = [3, 57, 120, 200];
    for pump in hot {
        fleet.heat(pump, 85.0);
    }
    for pump in hot {
        let active = fleet.next_state(pump, 0, "active_unacked").await;
        assert_eq!(active["limit"].as_f64(), Some(80.0), "{active}");
        assert_eq!(active["tag"], format!("pump{pump}.bearing_temp"));
    }
    fleet
        .wait_wo("a work order for each hot pump", |w| {
            wo_ids_by_asset(w).len() == hot.len()
        })
        .await;

    // What the CMMS got: one work order per hot pump, each about its own
    // pump and raised by its own rule.
    let wos = fleet.work_orders();
    let by_asset = wo_ids_by_asset(&wos);
    let expected: BTreeSet<String> = hot.iter().map(|p| asset(*p)).collect();
    assert_eq!(
        by_asset.keys().cloned().collect::<BTreeSet<_>>(),
        expected,
        "{wos:#?}"
    );
    for pump in hot {
        let ids = &by_asset[&asset(pump)];
        assert_eq!(ids.len(), 1, "one work order for pump{pump}: {wos:#?}");
        let wo = wos.iter().find(|w| w["asset"] == asset(pump)).unwrap();
        assert_eq!(wo["trigger"]["rule"], rule(pump));
        assert_eq!(wo["trigger"]["tag"], format!("pump{pump}.bearing_temp"));
        assert_eq!(wo["trigger"]["limit"].as_f64(), Some(80.0));
        assert_eq!(wo["trigger"]["value"].as_f64(), Some(85.0));
        assert_eq!(wo["occurrences"], 1);
        let title = wo["title"].as_str().unwrap();
        assert!(
            title.starts_with(&format!("pump{pump}: bearing hot (85")) && title.ends_with(" degC)"),
            "{title}"
        );
    }

    // The plant as the status page shows it: the hot pumps' alarms and
    // work orders, nothing for the 196 others (whose bearings never moved).
    let status = fleet.status().await;
    let alarms = alarms_by_rule(&status);
    let hot_rules: BTreeSet<String> = hot.iter().map(|p| rule(*p)).collect();
    assert_eq!(
        alarms.keys().cloned().collect::<BTreeSet<_>>(),
        hot_rules,
        "{alarms:#?}"
    );
    let open: BTreeSet<String> = status["work_orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["asset"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(open, expected);
    // Every other pump's alarm was announced normal, and only that.
    for pump in (1..=PUMPS).filter(|p| !hot.contains(p)) {
        let states: Vec<Value> = fleet
            .alarms(pump)
            .iter()
            .map(|a| a["state"].clone())
            .collect();
        assert!(
            states.iter().all(|s| s == "normal"),
            "pump{pump}: {states:?}"
        );
    }
    fleet.finish().await;
}

// ---------------------------------------------------------------------------
// 3. A reload of the template
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_of_the_template_limit_reaches_every_pump_and_keeps_each_alarm() {
    let fleet = Fleet::start(80.0).await;
    // Four pumps in alarm under the limit 80: two that the new limit 90
    // leaves in alarm, two it does not; one of each acknowledged.
    let (warm, warm_acked, hot_acked, hot) = (3, 120, 57, 200);
    let in_alarm = [warm, warm_acked, hot_acked, hot];
    for (pump, value) in [
        (warm, 85.0),
        (warm_acked, 85.0),
        (hot_acked, 93.0),
        (hot, 93.0),
    ] {
        fleet.heat(pump, value);
    }
    for pump in in_alarm {
        fleet.next_state(pump, 0, "active_unacked").await;
    }
    for pump in [warm_acked, hot_acked] {
        let n = fleet.alarms(pump).len();
        fleet.ack(pump).await;
        fleet.next_state(pump, n, "active_acked").await;
    }
    fleet
        .wait_wo("a work order for each pump in alarm", |w| {
            wo_ids_by_asset(w).len() == in_alarm.len()
        })
        .await;
    let before = fleet
        .status_until("the four alarms on the status page", |a| {
            a.len() == 4
                && [warm_acked, hot_acked].iter().all(|p| {
                    a.get(&rule(*p))
                        .is_some_and(|x| x["state"] == "active_acked")
                })
        })
        .await;
    let wos_before = wo_ids_by_asset(&fleet.work_orders());
    let seen_before: Vec<usize> = in_alarm.iter().map(|p| fleet.alarms(*p).len()).collect();

    fleet.reload(90.0).await;

    // Each pump in alarm is judged against 90 and keeps its state: those
    // still above stay as they were (acknowledged or not), those now
    // below return, as if their bearing had cooled.
    let after = fleet
        .status_until("the alarms judged against 90", |a| {
            a.len() == 3
                && a.values().all(|x| x["limit"].as_f64() == Some(90.0))
                && a.get(&rule(warm))
                    .is_some_and(|x| x["state"] == "returned_unacked")
        })
        .await;
    assert_eq!(after[&rule(hot)]["state"], "active_unacked", "{after:#?}");
    assert_eq!(
        after[&rule(hot_acked)]["state"],
        "active_acked",
        "{after:#?}"
    );
    for pump in [hot, hot_acked] {
        assert_eq!(
            after[&rule(pump)]["since"],
            before[&rule(pump)]["since"],
            "pump{pump}'s alarm is the same one"
        );
    }
    let returned = fleet
        .next_state(warm, seen_before[0], "returned_unacked")
        .await;
    assert_eq!(returned["cause"], "condition");
    assert_eq!(returned["limit"].as_f64(), Some(90.0), "{returned}");
    assert_eq!(returned["value"].as_f64(), Some(85.0), "{returned}");
    let normal = fleet.next_state(warm_acked, seen_before[1], "normal").await;
    assert_eq!(normal["cause"], "condition");
    assert_eq!(normal["limit"].as_f64(), Some(90.0), "{normal}");

    // Every other pump got the new limit too: at 85, above the old limit
    // and below the new, none alarms (nor pump7, at 88 of its own)...
    let others: Vec<usize> = (1..=PUMPS).filter(|p| !in_alarm.contains(p)).collect();
    let from: Vec<usize> = others.iter().map(|p| fleet.data_count(*p)).collect();
    for pump in &others {
        fleet.heat(*pump, 85.0);
    }
    for (pump, from) in others.iter().zip(from) {
        fleet.seen(*pump, from, 85.0).await;
    }
    let alarms = alarms_by_rule(&fleet.status().await);
    assert_eq!(
        alarms.keys().cloned().collect::<BTreeSet<_>>(),
        [warm, hot_acked, hot].map(rule).into_iter().collect(),
        "only the pumps in alarm before the reload: {alarms:#?}"
    );
    // ... and at 92 it does, against 90, with a work order of its own.
    let sample = [1, 99, 150];
    for pump in sample {
        fleet.heat(pump, 92.0);
    }
    for pump in sample {
        let active = fleet.next_state(pump, 0, "active_unacked").await;
        assert_eq!(active["limit"].as_f64(), Some(90.0), "{active}");
        assert_eq!(active["value"].as_f64(), Some(92.0), "{active}");
    }
    // A pump with a limit of its own in the device list keeps it: the
    // template's limit is what changed.
    fleet.heat(OWN_LIMIT_PUMP, 89.0);
    let own = fleet.next_state(OWN_LIMIT_PUMP, 0, "active_unacked").await;
    assert_eq!(own["limit"].as_f64(), Some(88.0), "{own}");
    fleet
        .wait_wo("a work order for each pump over its limit", |w| {
            wo_ids_by_asset(w).len() == in_alarm.len() + sample.len() + 1
        })
        .await;

    // No pump in alarm across the reload got a second work order, or a
    // second activation.
    let wos_after = wo_ids_by_asset(&fleet.work_orders());
    for pump in in_alarm {
        assert_eq!(
            wos_after[&asset(pump)],
            wos_before[&asset(pump)],
            "pump{pump} keeps its one work order"
        );
    }
    for (pump, states) in [
        (hot, vec!["normal", "active_unacked"]),
        (hot_acked, vec!["normal", "active_unacked", "active_acked"]),
        (warm, vec!["normal", "active_unacked", "returned_unacked"]),
        (
            warm_acked,
            vec!["normal", "active_unacked", "active_acked", "normal"],
        ),
    ] {
        let got: Vec<Value> = fleet
            .alarms(pump)
            .iter()
            .map(|a| a["state"].clone())
            .collect();
        assert_eq!(got, states, "pump{pump}'s alarm messages");
    }
    fleet.finish().await;
}

// ---------------------------------------------------------------------------
// 4. The work order's key across a reload
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_work_orders_key_stays_the_same_across_a_reload_of_the_template() {
    let fleet = Fleet::start(80.0).await;
    let pump = 200;
    fleet.heat(pump, 93.0);
    fleet.next_state(pump, 0, "active_unacked").await;
    fleet.wait_wo("a work order", |w| !w.is_empty()).await;
    let first = fleet.work_orders().remove(0);
    let id = first["id"].as_str().unwrap().to_owned();
    let key = first["key"].as_str().unwrap().to_owned();
    // `{site}/{gateway}/{rule}/{asset}/{n}-{id}`: the instance rule's name.
    assert_eq!(
        key,
        format!("test/gw/{}/{}/1-{id}", rule(pump), asset(pump))
    );

    fleet.reload(90.0).await;

    // Below the new limit (the old one would have held it in alarm), then
    // over it again: a second occurrence of the same fault, which updates
    // the open work order, under the same key.
    let n = fleet.alarms(pump).len();
    fleet.heat(pump, 85.0);
    let returned = fleet.next_state(pump, n, "returned_unacked").await;
    assert_eq!(returned["limit"].as_f64(), Some(90.0), "{returned}");
    let n = fleet.alarms(pump).len();
    fleet.heat(pump, 93.0);
    fleet.next_state(pump, n, "active_unacked").await;
    fleet
        .wait_wo("the work order updated", |w| {
            w.iter().any(|wo| wo["occurrences"] == 2)
        })
        .await;
    let wos = fleet.work_orders();
    let update = wos.iter().find(|wo| wo["occurrences"] == 2).unwrap();
    assert_eq!(update["id"], id.as_str(), "{wos:#?}");
    assert_eq!(update["key"], key.as_str(), "{wos:#?}");
    assert_eq!(update["trigger"]["rule"], rule(pump));
    assert!(
        wos.iter().all(|wo| wo["key"] == key.as_str()),
        "one work order, one key: {wos:#?}"
    );
    fleet.finish().await;
}
