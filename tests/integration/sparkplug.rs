//! The Sparkplug B edge node as a host application sees it: the simulator,
//! the whole gateway (in this process, or as a child process for `kill
//! -9`), the embedded broker, and a test host ([`Host`]) that decodes
//! every `spBv1.0/#` message, sends commands and its STATE, and holds the
//! whole exchange against the specification's rules at the end of each
//! test ([`Host::assert_valid`]). Loopback only; every wait is bounded.
//!
//! Values are driven with `Simulator::set` on named constant points, so
//! nothing moves behind a test's back; `run` and `asset` have no deadband
//! (published every poll), every other tag has one (published on change
//! only).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::proxy::Proxy;
use crate::common::sparkplug::{Host, Kind, SpMessage, Val, now_ms, property, quality, resolve};
use crate::common::subscriber::{Received, Subscriber};
use crate::common::{broker, gateway, sim, tracing};
use fieldgate::app::AppError;
use fieldgate::contract::sparkplug::proto::Payload;
use fieldgate::contract::sparkplug::proto::datatype;
use fieldgate::contract::sparkplug::proto::payload::{Metric, metric};
use fieldgate::sim::Simulator;
use fieldgate::store::inspect::Inspector;
use prost::Message as _;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const GROUP: &str = "plant";
/// The edge node id: `[gateway] id`.
const NODE: &str = "gw";
const DEVICE: &str = "pump";
/// The JSON data topic of the device.
const JSON_DATA: &str = "fieldgate/test/gw/data/pump";
/// Longest wait for something that takes a few polls or a reconnection.
const WAIT: Duration = Duration::from_secs(10);

/// One device with named constant points of several types.
const SCENARIO: &str = r#"
seed = 1
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 20.0, area = "input", address = 0, type = "f32" },
  { name = "count", value = 0, area = "input", address = 2, type = "u16" },
  { name = "level", value = 12.5, area = "input", address = 3, type = "i16", scale = 0.1 },
  { name = "total", value = 70000, area = "input", address = 4, type = "u32" },
  { name = "run", value = true, area = "coil", address = 0, type = "bool" },
  { name = "asset", value = "PUMP", area = "holding", address = 0, type = "string", length = 2 },
]
"#;

/// The gateway's tags: (name, Sparkplug datatype, unit).
const TAGS: [(&str, u32, Option<&str>); 6] = [
    ("temp", datatype::FLOAT, Some("degC")),
    ("count", datatype::UINT16, None),
    ("level", datatype::DOUBLE, Some("m")),
    ("total", datatype::UINT32, Some("m3")),
    ("run", datatype::BOOLEAN, None),
    ("asset", datatype::STRING, None),
];

/// `pump.temp` above 80, alarm only.
const HOT: &str = r#"
[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
workorder = { enabled = false }
"#;

/// `pump.run` without a good reading for 1 s, alarm only.
const SILENT: &str = r#"
[[rules]]
name = "silent"
tag = "pump.run"
condition = "stale"
after = "1s"
workorder = { enabled = false }
"#;

fn config_text(
    data: &Path,
    sim: SocketAddr,
    broker: SocketAddr,
    client: &str,
    poll: &str,
    sparkplug: &str,
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

[sparkplug]
group_id = "{GROUP}"
{sparkplug}

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "{poll}"
timeout = "300ms"
retries = 0
tags = [
  {{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC", deadband = 0.5 }},
  {{ name = "count", area = "input", address = 2, type = "u16", deadband = 0.5 }},
  {{ name = "level", area = "input", address = 3, type = "i16", scale = 0.1, unit = "m", deadband = 0.05 }},
  {{ name = "total", area = "input", address = 4, type = "u32", unit = "m3", deadband = 0.5 }},
  {{ name = "run", area = "coil", address = 0, type = "bool" }},
  {{ name = "asset", area = "holding", address = 0, type = "string", length = 2, description = "asset tag" }},
]

{rules}
"#,
        data = data.display(),
        host = broker.ip(),
        port = broker.port(),
    )
}

/// A gateway running in this process: its stop and its task.
type Running = (oneshot::Sender<()>, JoinHandle<Result<(), AppError>>);

/// The simulator, the broker, the host, a JSON subscriber and the gateway
/// in this process.
struct Site {
    sim: Simulator,
    host: Host,
    json: Subscriber,
    /// Between the gateway and the broker, when asked for.
    proxy: Option<Proxy>,
    dir: TempDir,
    gateway: Option<Running>,
}

impl Site {
    async fn start(name: &str, poll: &str, sparkplug: &str, rules: &str) -> Site {
        Site::start_with(name, poll, sparkplug, rules, false).await
    }

    /// With `proxy`, the gateway reaches the broker through a [`Proxy`].
    async fn start_with(name: &str, poll: &str, sparkplug: &str, rules: &str, proxy: bool) -> Site {
        tracing::init();
        let sim = sim::start(SCENARIO).await;
        let broker = broker::start();
        let host = Host::start(broker, &format!("{name}-host")).await;
        let json = Subscriber::start(broker, &format!("{name}-json"), "fieldgate/#").await;
        let proxy = match proxy {
            true => Some(Proxy::start(broker).await),
            false => None,
        };
        let dir = tempfile::tempdir().unwrap();
        let text = config_text(
            &dir.path().join("data"),
            sim.addr(DEVICE).unwrap(),
            proxy.as_ref().map_or(broker, Proxy::addr),
            &format!("{name}-gw"),
            poll,
            sparkplug,
            rules,
        );
        let (config, _) = gateway::load(dir.path(), &text);
        let gateway = Some(gateway::spawn(config));
        Site {
            sim,
            host,
            json,
            proxy,
            dir,
            gateway,
        }
    }

    /// Stops the gateway (a clean stop: its NDEATH).
    async fn stop_gateway(&mut self) {
        if let Some((stop, task)) = self.gateway.take() {
            gateway::stop(stop, task).await;
        }
    }

    /// Rows left in the outbox of a stopped gateway.
    fn outbox_left(&self) -> u64 {
        let store = self.dir.path().join("data").join("fieldgate.db");

        Inspector::open(&store).unwrap().outbox().unwrap().0
    }

    /// Stops everything, then holds the whole exchange against the rules;
    /// after a clean stop the broker has confirmed every row, JSON and
    /// Sparkplug: the outbox is empty.
    async fn finish(mut self) {
        self.stop_gateway().await;
        assert_eq!(self.outbox_left(), 0, "rows left in the outbox");
        self.host.assert_valid();
        self.sim.shutdown().await;
    }
}

/// Every named metric of DDATA messages called `name`, from index `from`.
fn ddata_of(
    messages: &[SpMessage],
    from: usize,
    name: &str,
) -> Vec<crate::common::sparkplug::Named> {
    resolve(messages)
        .into_iter()
        .filter(|n| {
            n.kind == Kind::DData
                && n.index >= from
                && n.name == name
                && n.device.as_deref() == Some(DEVICE)
        })
        .collect()
}

/// The last value `name` took (births and DDATA).
fn latest(messages: &[SpMessage], name: &str) -> Option<Val> {
    resolve(messages)
        .into_iter()
        .rfind(|n| n.name == name)
        .map(|n| n.value)
}

/// Checks a DBIRTH of the pump: every tag with its datatype and unit,
/// good with a value or (`values_known` false: born before the first
/// poll) bad and null; the alarm metrics of `hot` when `rules`.
fn check_dbirth(m: &SpMessage, values_known: bool, rules: bool) {
    for (name, dt, unit) in TAGS {
        let x = m
            .metric(name)
            .unwrap_or_else(|| panic!("DBIRTH #{} lacks {name}", m.index));
        assert_eq!(x.datatype, Some(dt), "datatype of {name}");
        assert!(x.alias.is_some(), "{name} has an alias");
        assert_eq!(
            property(x, "engUnit"),
            unit.map(|u| Val::Text(u.into())),
            "engUnit of {name}"
        );
        match (quality(x), Val::of(x)) {
            (Some(192), v) if v != Val::Null => {}
            (Some(0), Val::Null) if !values_known => {}
            other => panic!("{name} in DBIRTH #{}: quality and value {other:?}", m.index),
        }
    }
    assert_eq!(
        property(m.metric("asset").unwrap(), "description"),
        Some(Val::Text("asset tag".into()))
    );
    if rules {
        for (part, dt) in [
            ("State", datatype::STRING),
            ("Active", datatype::BOOLEAN),
            ("Acked", datatype::BOOLEAN),
        ] {
            let name = format!("Alarms/hot/{part}");
            let x = m
                .metric(&name)
                .unwrap_or_else(|| panic!("DBIRTH lacks {name}"));
            assert_eq!(x.datatype, Some(dt), "{name}");
        }
    }
}

/// The simulator's values as the DBIRTH and DDATA must show them.
fn check_values(messages: &[SpMessage], temp: f32) {
    for (name, want) in [
        ("temp", Val::Float(temp)),
        ("count", Val::Int(0)),
        ("level", Val::Double(12.5)),
        ("total", Val::Int(70000)),
        ("run", Val::Bool(true)),
        ("asset", Val::Text("PUMP".into())),
    ] {
        assert_eq!(latest(messages, name), Some(want), "latest value of {name}");
    }
}

fn json_data(messages: &[Received]) -> Vec<serde_json::Value> {
    messages
        .iter()
        .filter(|m| m.topic == JSON_DATA)
        .map(Received::json)
        .collect()
}

/// NBIRTH with bdSeq and the node metrics; DBIRTH with every tag; DDATA by
/// exception (a constant tag is not repeated, `run` is, every poll); the
/// alarm metrics move when the rule fires; the JSON tree still carries the
/// readings; a rebirth's DBIRTH carries every value, good; the clean stop
/// publishes the session's NDEATH.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_then_data_by_exception_with_alarm_metrics() {
    let mut site = Site::start("sp-births", "100ms", "", HOT).await;
    let host = &site.host;
    let nbirth = host
        .wait_for(WAIT, 0, Kind::NBirth, None)
        .await
        .expect("NBIRTH");
    assert_eq!(nbirth.topic, format!("spBv1.0/{GROUP}/NBIRTH/{NODE}"));
    assert!(!nbirth.retain, "NBIRTH is not retained");
    assert_eq!(nbirth.seq(), Some(0));
    let bd = nbirth.metric("bdSeq").expect("bdSeq in NBIRTH");
    assert_eq!(bd.datatype, Some(datatype::INT64));
    assert_eq!(bd.alias, None, "bdSeq has no alias");
    let bd_seq = nbirth.bd_seq().unwrap();
    assert_eq!(
        Val::of(nbirth.metric("Node Control/Rebirth").unwrap()),
        Val::Bool(false)
    );
    for (name, dt) in [
        ("Node Info/Version", datatype::STRING),
        ("Node Info/Config Hash", datatype::STRING),
        ("Node Info/Outbox Depth", datatype::UINT64),
        ("Node Info/Clock Synchronised", datatype::BOOLEAN),
    ] {
        let m = nbirth
            .metric(name)
            .unwrap_or_else(|| panic!("NBIRTH lacks {name}"));
        assert_eq!(m.datatype, Some(dt), "{name}");
        assert_ne!(Val::of(m), Val::Null, "{name} has a value");
    }
    let dbirth = host
        .wait_for(WAIT, nbirth.index, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH");
    assert_eq!(
        dbirth.topic,
        format!("spBv1.0/{GROUP}/DBIRTH/{NODE}/{DEVICE}")
    );
    check_dbirth(&dbirth, false, true);
    assert_eq!(
        Val::of(dbirth.metric("Alarms/hot/State").unwrap()),
        Val::Text("normal".into())
    );
    assert_eq!(
        Val::of(dbirth.metric("Alarms/hot/Acked").unwrap()),
        Val::Bool(true)
    );

    // By exception: `run` (no deadband) every poll, constants once.
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, 0, "run").len() >= 12)
            .await,
        "12 polls of run in DDATA"
    );
    let messages = host.messages();
    for (name, _, _) in TAGS.iter().filter(|t| t.0 != "run" && t.0 != "asset") {
        let n = ddata_of(&messages, 0, name).len();
        assert!(n <= 1, "{name} did not change, yet came in {n} DDATA");
    }
    check_values(&messages, 20.0);
    let first_run = &ddata_of(&messages, 0, "run")[0];
    assert!(first_run.quality.is_none() || first_run.quality == Some(192));

    // The JSON tree is untouched.
    let json = json_data(&site.json.received());
    assert!(
        json.len() >= 5,
        "JSON data beside Sparkplug: {}",
        json.len()
    );
    assert!(json.iter().all(|j| j["tags"]["run"]["v"] == true));

    // The rule fires and returns: its metrics move in DDATA.
    let from = host.len();
    site.sim.set(DEVICE, "temp", 95.0).unwrap();
    let alarm_is = |m: &[SpMessage], state: &str, active: bool| {
        let named = resolve(m);
        named.iter().any(|n| {
            n.index >= from
                && n.kind == Kind::DData
                && n.name == "Alarms/hot/State"
                && n.value == Val::Text(state.into())
                && named.iter().any(|a| {
                    a.index == n.index
                        && a.name == "Alarms/hot/Active"
                        && a.value == Val::Bool(active)
                })
        })
    };
    assert!(
        host.wait_until(WAIT, |m| alarm_is(m, "active_unacked", true))
            .await,
        "Alarms/hot/State active_unacked in DDATA"
    );
    assert!(
        ddata_of(&host.messages(), from, "temp")
            .iter()
            .any(|n| n.value == Val::Float(95.0)),
        "temp 95 in DDATA"
    );
    site.sim.set(DEVICE, "temp", 20.0).unwrap();
    assert!(
        host.wait_until(WAIT, |m| alarm_is(m, "returned_unacked", false))
            .await,
        "Alarms/hot/State returned_unacked in DDATA"
    );

    // A rebirth: every value known now, good.
    let from = host.len();
    host.rebirth(GROUP, NODE).await;
    let reborn = host
        .wait_for(WAIT, from, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH after a rebirth request");
    check_dbirth(&reborn, true, true);
    assert_eq!(
        Val::of(reborn.metric("Alarms/hot/State").unwrap()),
        Val::Text("returned_unacked".into())
    );
    check_values(&host.messages(), 20.0);

    let from = site.host.len();
    site.stop_gateway().await;
    let death = site
        .host
        .wait_for(WAIT, from, Kind::NDeath, None)
        .await
        .expect("NDEATH on a clean stop");
    assert_eq!(death.bd_seq(), Some(bd_seq));
    site.finish().await;
}

/// The device stops answering: DDEATH, and no DDATA of it (nor a DBIRTH
/// at a rebirth, nor the alarm its silence raises); it answers again:
/// DBIRTH with its current values and alarm states, then DDATA, in the
/// same session; nothing stays in the outbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_stops_answering_dies_and_is_born_again() {
    let site = Site::start("sp-ddeath", "100ms", "", SILENT).await;
    let host = &site.host;
    let dbirth = host
        .wait_for(WAIT, 0, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH");
    host.wait_for(WAIT, dbirth.index, Kind::DData, Some(DEVICE))
        .await
        .expect("DDATA");
    assert_eq!(
        Val::of(dbirth.metric("Alarms/silent/State").unwrap()),
        Val::Text("normal".into())
    );
    site.sim.set_offline(DEVICE, true).unwrap();
    let death = host
        .wait_for(WAIT, dbirth.index, Kind::DDeath, Some(DEVICE))
        .await
        .expect("DDEATH when the device stops answering");
    assert!(death.payload.as_ref().unwrap().metrics.is_empty());
    // Away, the value changes: the next birth has it.
    site.sim.set(DEVICE, "count", 7.0).unwrap();
    // A rebirth meanwhile births the device that does not answer with its
    // metrics at bad quality (so that its history can still go out), and
    // its DDEATH follows at once.
    let from = host.len();
    host.rebirth(GROUP, NODE).await;
    let nbirth = host
        .wait_for(WAIT, from, Kind::NBirth, None)
        .await
        .expect("NBIRTH after a rebirth request");
    let born_down = host
        .wait_for(WAIT, nbirth.index, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH of the device at the rebirth");
    assert!(
        born_down
            .payload
            .as_ref()
            .unwrap()
            .metrics
            .iter()
            .filter(|m| !m.name.as_deref().unwrap_or("").starts_with("Alarms/"))
            .all(|m| m.is_null == Some(true)),
        "a device that does not answer is born with null values"
    );
    let buried = host
        .wait_for(WAIT, born_down.index, Kind::DDeath, Some(DEVICE))
        .await
        .expect("DDEATH right after the births");
    // Long enough for the stale alarm to fire while the device is dead:
    // no DDATA then, its state is in the next DBIRTH.
    tokio::time::sleep(
        (death.at + Duration::from_secs(2)).saturating_duration_since(Instant::now()),
    )
    .await;
    site.sim.set_offline(DEVICE, false).unwrap();
    let reborn = host
        .wait_for(
            Duration::from_secs(15),
            buried.index,
            Kind::DBirth,
            Some(DEVICE),
        )
        .await
        .expect("DBIRTH when the device answers again");
    check_dbirth(&reborn, true, false);
    assert_eq!(Val::of(reborn.metric("count").unwrap()), Val::Int(7));
    assert_eq!(
        Val::of(reborn.metric("Alarms/silent/State").unwrap()),
        Val::Text("active_unacked".into()),
        "the alarm raised while the device was dead, in its DBIRTH"
    );
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, reborn.index, "Alarms/silent/State")
            .iter()
            .any(|n| n.value == Val::Text("returned_unacked".into())))
            .await,
        "the alarm returns, in DDATA"
    );
    let messages = host.messages();
    let births: Vec<u64> = messages
        .iter()
        .filter(|m| m.kind == Some(Kind::NBirth))
        .filter_map(SpMessage::bd_seq)
        .collect();
    assert_eq!(births.len(), 2, "the first birth and the rebirth");
    assert_eq!(births[0], births[1], "the node's session went on");
    // `finish` finds the outbox empty: no row was held for the dead device.
    site.finish().await;
}

/// Node Control/Rebirth: NBIRTH again, same bdSeq, seq 0, then every
/// DBIRTH. A storm of 50 requests is a few rebirths, at least 2 s apart,
/// and data goes on. Malformed or refused NCMD and DCMD change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebirth_requests_are_answered_merged_and_bad_commands_ignored() {
    let site = Site::start("sp-rebirth", "100ms", "", "").await;
    let host = &site.host;
    let nbirth = host
        .wait_for(WAIT, 0, Kind::NBirth, None)
        .await
        .expect("NBIRTH");
    let bd_seq = nbirth.bd_seq().unwrap();
    host.wait_for(WAIT, nbirth.index, Kind::DData, Some(DEVICE))
        .await
        .expect("DDATA");

    // Bad and refused commands.
    let from = host.len();
    let payload = |name: Option<&str>, alias: Option<u64>, value: metric::Value| {
        Payload {
            timestamp: Some(now_ms()),
            metrics: vec![Metric {
                name: name.map(str::to_owned),
                alias,
                value: Some(value),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    };
    host.ncmd_raw(GROUP, NODE, vec![0xff, 0xff, 0xff]).await;
    host.ncmd_raw(GROUP, NODE, b"{\"rebirth\":true}".to_vec())
        .await;
    host.ncmd_raw(
        GROUP,
        NODE,
        payload(
            Some("Node Control/Rebirth"),
            None,
            metric::Value::BooleanValue(false),
        ),
    )
    .await;
    host.ncmd_raw(
        GROUP,
        NODE,
        payload(
            Some("Node Info/Version"),
            None,
            metric::Value::StringValue("9".into()),
        ),
    )
    .await;
    host.ncmd_raw(
        GROUP,
        NODE,
        payload(None, Some(9999), metric::Value::BooleanValue(true)),
    )
    .await;
    host.ncmd_raw(GROUP, NODE, Vec::new()).await;
    host.dcmd_raw(GROUP, NODE, DEVICE, vec![0x0a]).await;
    host.dcmd_raw(
        GROUP,
        NODE,
        DEVICE,
        payload(Some("temp"), None, metric::Value::FloatValue(5.0)),
    )
    .await;
    host.dcmd_raw(
        GROUP,
        NODE,
        "ghost",
        payload(Some("x"), None, metric::Value::BooleanValue(true)),
    )
    .await;
    // A rebirth for another node is not ours.
    host.rebirth(GROUP, "other").await;
    let after_bad = host.len();
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, after_bad, "run").len() >= 5)
            .await,
        "data goes on after bad commands"
    );
    let messages = host.messages();
    assert!(
        !messages[from..]
            .iter()
            .any(|m| m.kind == Some(Kind::NBirth)),
        "no rebirth from a malformed or refused command"
    );
    assert!(
        !ddata_of(&messages, from, "temp")
            .iter()
            .any(|n| n.value == Val::Float(5.0)),
        "the DCMD wrote nothing"
    );

    // One request, one rebirth.
    let from = host.len();
    host.rebirth(GROUP, NODE).await;
    let again = host
        .wait_for(WAIT, from, Kind::NBirth, None)
        .await
        .expect("NBIRTH after Node Control/Rebirth");
    assert_eq!(again.bd_seq(), Some(bd_seq), "a rebirth keeps the bdSeq");
    assert_eq!(again.seq(), Some(0));
    let dbirth = host
        .wait_for(WAIT, again.index, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH after the rebirth");
    assert_eq!(dbirth.seq(), Some(1));
    check_dbirth(&dbirth, true, false);

    // A storm: merged, at most one rebirth per 2 s.
    let from = host.len();
    let storm = Instant::now();
    for _ in 0..50 {
        host.rebirth(GROUP, NODE).await;
    }
    tokio::time::sleep(Duration::from_millis(4500).saturating_sub(storm.elapsed())).await;
    let messages = host.messages();
    let births: Vec<&SpMessage> = messages[from..]
        .iter()
        .filter(|m| m.kind == Some(Kind::NBirth))
        .collect();
    assert!(
        (1..=3).contains(&births.len()),
        "50 requests in 4.5 s made {} rebirths",
        births.len()
    );
    for pair in births.windows(2) {
        let gap = pair[1].at.duration_since(pair[0].at);
        assert!(gap >= Duration::from_millis(1800), "rebirths {gap:?} apart");
    }
    let last = births.last().unwrap().index;
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, last, "run").len() >= 3)
            .await,
        "data goes on after the storm"
    );
    assert!(site.gateway.as_ref().is_some_and(|g| !g.1.is_finished()));
    site.finish().await;
}

/// Fast polls, no deadband on `run`: over 256 messages in one session, so
/// the checker sees seq go 255 → 0 without a rebirth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seq_wraps_from_255_to_0() {
    let site = Site::start("sp-wrap", "10ms", "", "").await;
    let host = &site.host;
    let nbirth = host
        .wait_for(WAIT, 0, Kind::NBirth, None)
        .await
        .expect("NBIRTH");
    let wrapped = |m: &[SpMessage]| {
        let seqs: Vec<u64> = m[nbirth.index..]
            .iter()
            .filter(|x| {
                x.kind
                    .is_some_and(|k| k.is_from_node() && k != Kind::NDeath)
            })
            .filter_map(SpMessage::seq)
            .collect();
        seqs.windows(2).any(|w| w == [255, 0]) && seqs.len() > 300
    };
    assert!(
        host.wait_until(Duration::from_secs(20), wrapped).await,
        "seq went 255 → 0 within 20 s ({} messages)",
        host.len()
    );
    assert_eq!(
        host.of(Kind::NBirth).len(),
        1,
        "no rebirth: the wrap is within one session"
    );
    site.finish().await;
}

/// The gateway binary as a child process, killed if the test ends first.
struct Binary(Child);

impl Drop for Binary {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_binary(config: &Path) -> Binary {
    let child = Command::new(env!("CARGO_BIN_EXE_fieldgate"))
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fieldgate run");
    Binary(child)
}

/// SIGTERM, then waits (at most 10 s) for the exit.
fn terminate(Binary(child): &mut Binary) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("fieldgate did not stop within 10 s of SIGTERM");
}

/// `kill -9`: the broker publishes the Will, the NDEATH of that session's
/// bdSeq N; the restart is N+1, never N again; after a clean stop (the
/// node's own NDEATH) the next start is N+2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bd_seq_moves_on_across_kill_9_and_a_clean_stop() {
    tracing::init();
    let sim = sim::start(SCENARIO).await;
    let broker = broker::start();
    let host = Host::start(broker, "sp-kill-host").await;
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(
        &dir.path().join("data"),
        sim.addr(DEVICE).unwrap(),
        broker,
        "sp-kill-gw",
        "100ms",
        "",
        "",
    );
    let (_, path): (_, PathBuf) = gateway::load(dir.path(), &text);
    let limit = Duration::from_secs(20);

    let mut child = spawn_binary(&path);
    let first = host.wait_for(limit, 0, Kind::NBirth, None).await;
    let data = match &first {
        Some(b) => host.wait_for(WAIT, b.index, Kind::DData, None).await,
        None => None,
    };
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let first = first.expect("NBIRTH of the first run");
    data.expect("DDATA of the first run");
    let n = first.bd_seq().unwrap();
    let will = host
        .wait_for(WAIT, first.index, Kind::NDeath, None)
        .await
        .expect("the broker publishes the NDEATH Will after kill -9");
    assert_eq!(
        will.bd_seq(),
        Some(n),
        "the Will carries the session's bdSeq"
    );

    let mut child = spawn_binary(&path);
    let second = host.wait_for(limit, will.index, Kind::NBirth, None).await;
    let data = match &second {
        Some(b) => host.wait_for(WAIT, b.index, Kind::DData, None).await,
        None => None,
    };
    terminate(&mut child);
    let second = second.expect("NBIRTH after the restart");
    data.expect("DDATA after the restart");
    assert_eq!(
        second.bd_seq(),
        Some((n + 1) % 256),
        "restart after kill -9"
    );
    let death = host
        .wait_for(WAIT, second.index, Kind::NDeath, None)
        .await
        .expect("NDEATH of a clean stop");
    assert_eq!(death.bd_seq(), Some((n + 1) % 256));

    let mut child = spawn_binary(&path);
    let third = host.wait_for(limit, death.index, Kind::NBirth, None).await;
    terminate(&mut child);
    let third = third.expect("NBIRTH after the clean stop");
    assert_eq!(
        third.bd_seq(),
        Some((n + 2) % 256),
        "restart after a clean stop"
    );
    let births: Vec<Option<u64>> = host
        .of(Kind::NBirth)
        .iter()
        .map(SpMessage::bd_seq)
        .collect();
    assert_eq!(births.len(), 3, "one NBIRTH per run: {births:?}");
    host.wait_for(WAIT, third.index, Kind::NDeath, None)
        .await
        .expect("NDEATH of the last stop");
    host.assert_valid();
    sim.shutdown().await;
}

/// Sets `count` one higher every 100 ms while waiting (at most `limit`)
/// for `done`; returns whether it came.
async fn count_until(
    sim: &Simulator,
    counter: &mut u64,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        *counter += 1;
        sim.set(DEVICE, "count", *counter as f64).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With a primary host: nothing before its STATE says online; births then
/// data when it does; NDEATH and silence when it goes offline, while the
/// values it misses wait in the outbox; when it is back, a new session
/// (new bdSeq) sends them as history (`is_historical`, in order) beside
/// live data, and none is lost. STATEs older than the last are ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_host_gates_the_session_and_gets_what_it_missed_as_history() {
    let site = Site::start("sp-primary", "50ms", "primary_host_id = \"scada\"", "").await;
    let host = &site.host;
    let sim = &site.sim;
    let json = &site.json;
    assert!(
        json.wait_until(WAIT, |m| !json_data(m).is_empty()).await,
        "the gateway polls"
    );
    let mut counter = 0u64;
    let node_messages = |m: &[SpMessage], from: usize| {
        m[from..]
            .iter()
            .filter(|x| x.kind.is_some_and(Kind::is_from_node))
            .count()
    };

    // No STATE: nothing published.
    count_until(sim, &mut counter, Duration::from_secs(1), || false).await;
    assert_eq!(
        node_messages(&host.messages(), 0),
        0,
        "nothing before the host is online"
    );

    // Online: births, then data (what waited is history).
    let t1 = now_ms();
    host.state("scada", true, t1).await;
    let mut nbirth = None;
    count_until(sim, &mut counter, WAIT, || {
        let m = host.messages();
        nbirth = m.iter().find(|x| x.kind == Some(Kind::NBirth)).cloned();
        nbirth
            .as_ref()
            .is_some_and(|b| m[b.index..].iter().any(|x| x.kind == Some(Kind::DData)))
    })
    .await;
    let nbirth = nbirth.expect("NBIRTH once the host is online");
    let b1 = nbirth.bd_seq().unwrap();

    // Offline: NDEATH, then silence while the values go on changing.
    let t2 = now_ms().max(t1 + 1);
    host.state("scada", false, t2).await;
    let mut death = None;
    count_until(sim, &mut counter, WAIT, || {
        death = host
            .messages()
            .into_iter()
            .skip(nbirth.index)
            .find(|x| x.kind == Some(Kind::NDeath));
        death.is_some()
    })
    .await;
    let death = death.expect("NDEATH when the primary host goes offline");
    assert_eq!(death.bd_seq(), Some(b1));
    let away_from = counter + 1;
    count_until(sim, &mut counter, Duration::from_millis(1500), || false).await;
    // An older STATE saying online changes nothing.
    host.state("scada", true, t2 - 500).await;
    count_until(sim, &mut counter, Duration::from_secs(1), || false).await;
    assert_eq!(
        node_messages(&host.messages(), death.index + 1),
        0,
        "silence while the host is offline (an older STATE is ignored)"
    );
    let away_to = counter;

    // Back online: a new session, the births, history and live data.
    let t3 = now_ms().max(t2 + 1);
    host.state("scada", true, t3).await;
    let mut reborn = None;
    count_until(sim, &mut counter, WAIT, || {
        reborn = host
            .messages()
            .into_iter()
            .skip(death.index)
            .find(|x| x.kind == Some(Kind::NBirth));
        reborn.is_some()
    })
    .await;
    let reborn = reborn.expect("NBIRTH when the host is back");
    let b2 = reborn.bd_seq().unwrap();
    assert_ne!(b2, b1, "a new session has a new bdSeq");
    count_until(sim, &mut counter, Duration::from_secs(1), || false).await;
    let last = counter;
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, reborn.index, "count")
            .iter()
            .any(|n| n.value == Val::Int(last)))
            .await,
        "the last count ({last}) arrives"
    );

    // An older STATE saying offline is ignored too.
    let before_old = host.len();
    host.state("scada", false, t3 - 1).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !host.messages()[before_old..]
            .iter()
            .any(|x| x.kind == Some(Kind::NDeath)),
        "an older offline STATE is ignored"
    );

    let messages = host.messages();
    // Every DDATA of the new session is history or live as a whole.
    for m in messages[reborn.index..]
        .iter()
        .filter(|m| m.kind == Some(Kind::DData))
    {
        let flags: Vec<bool> = m
            .payload
            .as_ref()
            .unwrap()
            .metrics
            .iter()
            .map(|x| x.is_historical == Some(true))
            .collect();
        assert!(
            flags.iter().all(|f| *f) || flags.iter().all(|f| !f),
            "DDATA #{} mixes historical and live metrics",
            m.index
        );
    }
    let counts = ddata_of(&messages, reborn.index, "count");
    let (history, live): (Vec<_>, Vec<_>) = counts.into_iter().partition(|n| n.historical);
    assert!(!history.is_empty(), "the missed values come as history");
    assert!(!live.is_empty(), "live data beside the history");
    for part in [&history, &live] {
        for w in part.windows(2) {
            assert!(
                w[0].timestamp < w[1].timestamp && w[0].value.as_f64() < w[1].value.as_f64(),
                "in order: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
    }
    let historical: Vec<u64> = history
        .iter()
        .filter_map(|n| n.value.as_f64().map(|v| v as u64))
        .collect();
    for v in away_from..=away_to {
        assert!(
            historical.contains(&v),
            "count {v}, set while the host was away ({away_from}..={away_to}), is in the history: {historical:?}"
        );
    }
    // Nothing lost, over the whole test.
    let seen: std::collections::HashSet<u64> = resolve(&messages)
        .into_iter()
        .filter(|n| n.name == "count")
        .filter_map(|n| n.value.as_f64().map(|v| v as u64))
        .collect();
    let missing: Vec<u64> = (1..=last).filter(|v| !seen.contains(v)).collect();
    assert!(missing.is_empty(), "counts never published: {missing:?}");
    site.finish().await;
}

/// `json_readings = false`: no JSON data messages, but the status and
/// the alarms stay on the JSON tree; readings and alarm metrics go on in
/// Sparkplug.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_json_readings_alarms_and_status_stay_on_the_json_tree() {
    let site = Site::start("sp-nojson", "100ms", "json_readings = false", HOT).await;
    let host = &site.host;
    let json = &site.json;
    host.wait_for(WAIT, 0, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH");
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, 0, "run").len() >= 5)
            .await,
        "readings in DDATA"
    );
    site.sim.set(DEVICE, "temp", 95.0).unwrap();
    assert!(
        json.wait_until(WAIT, |m| m
            .iter()
            .any(|x| x.topic == "fieldgate/test/gw/alarms/hot"
                && x.json()["state"] == "active_unacked"))
            .await,
        "the JSON alarm message"
    );
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, 0, "Alarms/hot/State")
            .iter()
            .any(|n| n.value == Val::Text("active_unacked".into())))
            .await,
        "the alarm metrics in DDATA"
    );
    let received = json.received();
    assert!(
        received
            .iter()
            .any(|x| x.topic == "fieldgate/test/gw/status" && x.json()["state"] == "online"),
        "the JSON status"
    );
    let data: Vec<&str> = received
        .iter()
        .filter(|x| x.topic.contains("/data/"))
        .map(|x| x.topic.as_str())
        .collect();
    assert!(data.is_empty(), "JSON data messages: {data:?}");
    site.finish().await;
}

/// A rebirth asked within 2 s of the last birth waits for the 2 s, then
/// comes, even when nothing else happens (a plant whose values stand
/// still: here one poll every 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_rebirth_comes_in_a_quiet_plant() {
    let site = Site::start("sp-quiet", "30s", "", "").await;
    let host = &site.host;
    let nbirth = host
        .wait_for(WAIT, 0, Kind::NBirth, None)
        .await
        .expect("NBIRTH");
    host.wait_for(WAIT, nbirth.index, Kind::DData, Some(DEVICE))
        .await
        .expect("the first poll's DDATA");
    let asked = Instant::now();
    let from = host.len();
    host.rebirth(GROUP, NODE).await;
    let again = host
        .wait_for(Duration::from_secs(6), from, Kind::NBirth, None)
        .await
        .expect("NBIRTH after Node Control/Rebirth");
    let due = (nbirth.at + Duration::from_secs(2)).max(asked);
    assert!(
        again.at <= due + Duration::from_millis(1500),
        "the rebirth came {:?} after it was due",
        again.at.duration_since(due)
    );
    host.wait_for(WAIT, again.index, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH after the rebirth");
    site.finish().await;
}

/// The checker itself: each broken rule is named, with the message's
/// index and topic.
#[test]
fn the_checker_names_every_broken_rule() {
    use crate::common::sparkplug::check;
    let metric = |name: Option<&str>, alias: Option<u64>, dt: Option<u32>| Metric {
        name: name.map(str::to_owned),
        alias,
        datatype: dt,
        value: Some(metric::Value::LongValue(3)),
        ..Default::default()
    };
    let bytes = |seq: Option<u64>, metrics: Vec<Metric>| {
        Payload {
            timestamp: Some(1),
            seq,
            metrics,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let n = |kind: &str| format!("spBv1.0/g/{kind}/n");
    let d = |kind: &str| format!("spBv1.0/g/{kind}/n/d");
    let bd = |v: u64| Metric {
        name: Some("bdSeq".into()),
        datatype: Some(datatype::INT64),
        value: Some(metric::Value::LongValue(v)),
        ..Default::default()
    };
    let good_birth = vec![bd(3), metric(Some("a"), Some(1), Some(4))];
    let dmetric = vec![metric(Some("t"), Some(2), Some(4))];
    let data = vec![metric(None, Some(2), None)];
    let messages: Vec<(String, Vec<u8>)> = vec![
        (d("DDATA"), bytes(Some(1), data.clone())),
        (n("NBIRTH"), bytes(Some(0), good_birth.clone())),
        (d("DDATA"), bytes(Some(1), data.clone())),
        (d("DBIRTH"), bytes(Some(2), dmetric.clone())),
        (d("DDATA"), bytes(Some(4), data.clone())),
        (
            d("DDATA"),
            bytes(Some(5), vec![metric(Some("t"), Some(2), None)]),
        ),
        (
            d("DDATA"),
            bytes(Some(6), vec![metric(None, Some(9), None)]),
        ),
        (d("DDEATH"), bytes(Some(7), vec![])),
        (d("DDATA"), bytes(Some(8), data.clone())),
        (
            d("DBIRTH"),
            bytes(
                Some(9),
                vec![
                    metric(None, Some(2), Some(4)),
                    metric(Some("u"), None, None),
                    metric(Some("v"), Some(1), Some(4)),
                ],
            ),
        ),
        (n("NDEATH"), bytes(Some(10), vec![bd(4)])),
        (n("NBIRTH"), bytes(Some(1), vec![bd(5)])),
        (n("NBIRTH"), bytes(Some(0), vec![bd(6)])),
        (n("NDATA"), vec![0xff, 0xff]),
        (n("NCMD"), vec![0xff]),
    ];
    let messages: Vec<SpMessage> = messages
        .into_iter()
        .enumerate()
        .map(|(i, (t, p))| SpMessage::new(i, t, p, false))
        .collect();
    let found: Vec<String> = check(&messages).iter().map(|v| v.to_string()).collect();
    let expected = [
        "#0 spBv1.0/g/DDATA/n/d: DData outside a session (no NBIRTH before it)",
        "#2 spBv1.0/g/DDATA/n/d: DDATA of d before its DBIRTH",
        "#4 spBv1.0/g/DDATA/n/d: seq 4, expected 3",
        "#5 spBv1.0/g/DDATA/n/d: DATA metric carries a name (\"t\")",
        "#6 spBv1.0/g/DDATA/n/d: alias 9 not bound by the latest birth",
        "#8 spBv1.0/g/DDATA/n/d: DDATA of d after its DDEATH and before a DBIRTH",
        "#9 spBv1.0/g/DBIRTH/n/d: birth metric without a name (alias Some(2))",
        "#9 spBv1.0/g/DBIRTH/n/d: birth metric \"u\" without a datatype",
        "#9 spBv1.0/g/DBIRTH/n/d: birth metric \"u\" without an alias",
        "#9 spBv1.0/g/DBIRTH/n/d: alias 1 already bound by another birth of the node",
        "#10 spBv1.0/g/NDEATH/n: NDEATH carries a seq (Some(10))",
        "#10 spBv1.0/g/NDEATH/n: NDEATH bdSeq 4 is not the session's NBIRTH bdSeq 3",
        "#11 spBv1.0/g/NBIRTH/n: NBIRTH seq is Some(1), not 0",
        "#12 spBv1.0/g/NBIRTH/n: NBIRTH of a new session (bdSeq 6) while session bdSeq 5 had no NDEATH",
        "#13 spBv1.0/g/NDATA/n: payload (2 bytes) does not decode as a Sparkplug B payload",
    ];
    assert_eq!(found, expected, "{found:#?}");
}

/// The connection breaks while the broker's SUBACKs are held back: the
/// broker publishes the Will (that session's NDEATH); the next session
/// (a later bdSeq) sends again, as history, every row the broker had not
/// confirmed (those the host already saw included) and those of the
/// outage, so nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_ends_the_session_by_its_will_and_loses_nothing() {
    let site = Site::start_with("sp-lost", "50ms", "", "", true).await;
    let host = &site.host;
    let sim = &site.sim;
    let proxy = site.proxy.as_ref().unwrap();
    let nbirth = host
        .wait_for(WAIT, 0, Kind::NBirth, None)
        .await
        .expect("NBIRTH");
    let b1 = nbirth.bd_seq().unwrap();
    let mut counter = 0u64;
    count_until(sim, &mut counter, Duration::from_millis(800), || false).await;
    proxy.stall();
    let stalled_from = counter + 1;
    count_until(sim, &mut counter, Duration::from_millis(700), || false).await;
    proxy.cut();
    let mut will = None;
    count_until(sim, &mut counter, WAIT, || {
        will = host
            .messages()
            .into_iter()
            .find(|m| m.kind == Some(Kind::NDeath));
        will.is_some()
    })
    .await;
    let will = will.expect("the broker publishes the Will when the connection breaks");
    assert_eq!(will.bd_seq(), Some(b1));
    count_until(sim, &mut counter, Duration::from_millis(1000), || false).await;
    let away_to = counter;
    proxy.restore();
    let mut reborn = None;
    count_until(sim, &mut counter, Duration::from_secs(15), || {
        reborn = host
            .messages()
            .into_iter()
            .skip(will.index)
            .find(|m| m.kind == Some(Kind::NBirth));
        reborn.is_some()
    })
    .await;
    let reborn = reborn.expect("NBIRTH of the next session");
    // Every connection attempt is a session of its own: the attempts the
    // cut refused used a number each.
    let b2 = reborn.bd_seq().unwrap();
    assert!(
        (1..=10).contains(&((b2 + 256 - b1) % 256)),
        "the next session's bdSeq {b2} follows {b1}"
    );
    count_until(sim, &mut counter, Duration::from_millis(500), || false).await;
    let last = counter;
    assert!(
        host.wait_until(WAIT, |m| ddata_of(m, reborn.index, "count")
            .iter()
            .any(|n| n.value == Val::Int(last)))
            .await,
        "the last count ({last}) arrives"
    );
    let messages = host.messages();
    let historical: Vec<u64> = ddata_of(&messages, reborn.index, "count")
        .iter()
        .filter(|n| n.historical)
        .filter_map(|n| n.value.as_f64().map(|v| v as u64))
        .collect();
    for v in stalled_from..=away_to {
        assert!(
            historical.contains(&v),
            "count {v} (unconfirmed or missed, {stalled_from}..={away_to}) is in the history: {historical:?}"
        );
    }
    let seen: std::collections::HashSet<u64> = resolve(&messages)
        .into_iter()
        .filter(|n| n.name == "count")
        .filter_map(|n| n.value.as_f64().map(|v| v as u64))
        .collect();
    let missing: Vec<u64> = (1..=last).filter(|v| !seen.contains(v)).collect();
    assert!(missing.is_empty(), "counts never published: {missing:?}");
    site.finish().await;
}
