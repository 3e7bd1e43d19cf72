//! Sparkplug DCMD writes as a host application sees them: the edge node
//! alone (no pollers, no pipeline) on the embedded broker and a real
//! store, the test host ([`Host`]) sending DCMDs, and the test itself
//! playing the write desk: it holds the receiver of the node's
//! [`WriteOrder`]s and answers each with a [`WriteReport`]. Every wait is
//! bounded; at the end the whole exchange is held against the
//! specification's rules ([`Host::assert_valid`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::sparkplug::{Host, Kind, Named, SpMessage, Val, now_ms, resolve};
use crate::common::{broker, gateway, tracing};
use fieldgate::command::{
    Delivery, ORDERS_CAPACITY, RejectReason, Requested, Source, WriteOrder, WriteReport,
    WriteResult,
};
use fieldgate::contract::sparkplug::SharedCurrent;
use fieldgate::contract::sparkplug::proto::Payload;
use fieldgate::contract::sparkplug::proto::payload::{Metric, metric};
use fieldgate::mqtt::sparkplug::{self, DCMD_BY, EdgeNodeConfig, EdgeNodeStats};
use fieldgate::reading::{Batch, Reading};
use fieldgate::tag::{Value, WriteAccess};
use fieldgate::{shutdown, store};
use prost::Message as _;
use rumqttc::QoS;
use tokio::sync::mpsc;
use tokio::time::timeout;

const GROUP: &str = "plant";
const NODE: &str = "gw";
const DEVICE: &str = "pump";
const WAIT: Duration = Duration::from_secs(10);

/// One device, never polled here: `temp` is read-only, `setpoint` is
/// made writable by the test (as `writable = true` does).
fn config_text(data: &std::path::Path, broker: std::net::SocketAddr) -> String {
    format!(
        r#"
[gateway]
id = "{NODE}"
site = "test"
data_dir = "{data}"

[mqtt]
host = "{host}"
port = {port}
client_id = "spw-json"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[http]
listen = ""

[sparkplug]
group_id = "{GROUP}"

[[devices]]
name = "{DEVICE}"
tcp = "127.0.0.1:1"
tags = [
  {{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "setpoint", area = "holding", address = 0, type = "f32", unit = "degC" }},
]
"#,
        data = data.display(),
        host = broker.ip(),
        port = broker.port(),
    )
}

fn dcmd(metric: Metric) -> Vec<u8> {
    Payload {
        timestamp: Some(now_ms()),
        metrics: vec![metric],
        ..Default::default()
    }
    .encode_to_vec()
}

fn float(name: Option<&str>, alias: Option<u64>, v: f32, timestamp: Option<u64>) -> Metric {
    Metric {
        name: name.map(str::to_owned),
        alias,
        timestamp,
        value: Some(metric::Value::FloatValue(v)),
        ..Default::default()
    }
}

/// The next order the node hands to the desk.
async fn next_order(orders: &mut mpsc::Receiver<WriteOrder>) -> WriteOrder {
    timeout(WAIT, orders.recv())
        .await
        .expect("a write order within 10 s")
        .expect("the node holds the sender")
}

/// The desk's answer to `order`.
fn report(
    order: WriteOrder,
    result: WriteResult,
    old: Option<f32>,
    written: Option<f32>,
    read_back: Option<f32>,
) {
    let value = |v: Option<f32>| v.map(|x| Value::Float(f64::from(x)));
    let report = WriteReport {
        command: order.command,
        old: value(old),
        written: value(written),
        read_back: value(read_back),
        result,
        at: SystemTime::now(),
        took: Duration::from_millis(30),
    };
    let reply = order.reply.expect("a DCMD write waits for its report");
    reply.send(report).expect("the node waits for the report");
}

/// The DDATA values of `setpoint` from message `from` on, as a host names
/// them.
fn setpoints(messages: &[SpMessage], from: usize) -> Vec<Named> {
    resolve(messages)
        .into_iter()
        .filter(|n| {
            n.kind == Kind::DData
                && n.index >= from
                && n.name == "setpoint"
                && n.device.as_deref() == Some(DEVICE)
        })
        .collect()
}

/// Waits for the next DDATA of `setpoint` from message `from` on.
async fn answer(host: &Host, from: usize) -> Named {
    assert!(
        host.wait_until(WAIT, |m| !setpoints(m, from).is_empty())
            .await,
        "a DDATA of setpoint after message {from}"
    );
    setpoints(&host.messages(), from).remove(0)
}

/// A retained DCMD (the broker's copy, at subscription) reaches the desk
/// as retained; a live DCMD by alias reaches it with its stamp, and its
/// verified read-back comes back as a DDATA of that metric; a DCMD to a
/// read-only tag makes no order; with the desk gone a write is answered
/// at once with the latest reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dcmd_write_goes_to_the_desk_and_its_result_comes_back_as_ddata() {
    tracing::init();
    let broker = broker::start();
    let host = Host::start(broker, "spw-host").await;
    let dir = tempfile::tempdir().unwrap();
    let (mut config, _) = gateway::load(dir.path(), &config_text(&dir.path().join("data"), broker));
    let mut pump = (*config.devices[0]).clone();
    pump.tags[1].write = Some(WriteAccess::default());
    let pump = Arc::new(pump);
    config.devices = vec![pump.clone()];

    // A DCMD the broker keeps, waiting before the node ever connects.
    let dcmd_topic = format!("spBv1.0/{GROUP}/DCMD/{NODE}/{DEVICE}");
    host.client
        .publish(
            dcmd_topic.clone(),
            QoS::AtLeastOnce,
            true,
            dcmd(float(Some("setpoint"), None, 99.0, None)),
        )
        .await
        .unwrap();
    host.wait_for(WAIT, 0, Kind::DCmd, Some(DEVICE))
        .await
        .expect("the broker took the retained DCMD");

    // The latest readings: setpoint 20 (what an answer without a value
    // from the device shows).
    let current = SharedCurrent::default();
    current.lock().unwrap().take_batch(
        &Batch {
            device: pump.clone(),
            timestamp: SystemTime::now(),
            started: std::time::Instant::now(),
            unsynced: false,
            readings: vec![
                Reading::good(0, Value::Float(18.0)),
                Reading::good(1, Value::Float(20.0)),
            ],
        },
        true,
    );
    let store_config = config.store.clone();
    let (store, guard) = tokio::task::spawn_blocking(move || store::open(&store_config))
        .await
        .unwrap()
        .unwrap();
    let (orders_tx, mut orders) = mpsc::channel::<WriteOrder>(ORDERS_CAPACITY);
    let cfg = EdgeNodeConfig::of(&config)
        .expect("[sparkplug] is on")
        .with_writes(orders_tx);
    let stats = Arc::new(EdgeNodeStats::default());
    let (trigger, listener) = shutdown::channel();
    let node = tokio::spawn(sparkplug::run(
        cfg,
        store.clone(),
        current,
        stats.clone(),
        listener,
    ));

    let dbirth = host
        .wait_for(WAIT, 0, Kind::DBirth, Some(DEVICE))
        .await
        .expect("DBIRTH of the pump");
    let alias = dbirth
        .metric("setpoint")
        .and_then(|m| m.alias)
        .expect("setpoint has an alias");

    // The retained copy: an order marked retained (the desk refuses it as
    // stale, before asking the device); the answer shows the latest
    // reading.
    let order = next_order(&mut orders).await;
    let c = &order.command;
    assert_eq!((c.device.as_str(), c.tag.as_str()), (DEVICE, "setpoint"));
    assert_eq!(c.value, Requested::Number(99.0));
    assert_eq!(c.delivery, Delivery::Retained);
    assert_eq!(c.source, Source::Sparkplug);
    assert_eq!(c.by.as_deref(), Some(DCMD_BY));
    assert_eq!(c.id, None);
    let stale = WriteResult::Rejected(RejectReason::Stale("retained".into()));
    report(order, stale, None, None, None);
    let got = answer(&host, dbirth.index).await;
    assert_eq!(got.value, Val::Float(20.0), "the latest reading");
    assert_eq!(got.quality, None, "born good, good still");

    // Live: a read-only tag by name, then the writable one by alias.
    let from = host.len();
    host.dcmd_raw(
        GROUP,
        NODE,
        DEVICE,
        dcmd(float(Some("temp"), None, 5.0, None)),
    )
    .await;
    let stamp = now_ms() - 250;
    host.dcmd_raw(
        GROUP,
        NODE,
        DEVICE,
        dcmd(float(None, Some(alias), 42.5, Some(stamp))),
    )
    .await;
    // Orders come in the order of the DCMDs: the first is the setpoint's,
    // so `temp` made none.
    let order = next_order(&mut orders).await;
    let c = &order.command;
    assert_eq!(c.tag, "setpoint");
    assert_eq!(c.value, Requested::Number(42.5));
    assert_eq!(c.delivery, Delivery::Live);
    assert_eq!(c.sent, Some(UNIX_EPOCH + Duration::from_millis(stamp)));
    assert!(c.received >= UNIX_EPOCH + Duration::from_millis(stamp));
    report(
        order,
        WriteResult::Verified,
        Some(20.0),
        Some(42.5),
        Some(42.5),
    );
    let got = answer(&host, from).await;
    assert_eq!(got.value, Val::Float(42.5), "the value read back");
    assert_eq!(got.quality, None, "still good: no quality property");
    assert!(!got.historical);
    assert!(orders.try_recv().is_err(), "no order for the read-only tag");

    // The desk is gone: nothing written, the latest reading at once.
    drop(orders);
    let from = host.len();
    host.dcmd_raw(
        GROUP,
        NODE,
        DEVICE,
        dcmd(float(Some("setpoint"), None, 7.0, None)),
    )
    .await;
    let got = answer(&host, from).await;
    assert_eq!(got.value, Val::Float(20.0), "the latest reading");

    assert_eq!(stats.dcmd_writes.load(Ordering::Relaxed), 2);
    assert_eq!(stats.dcmd_answers.load(Ordering::Relaxed), 3);
    assert_eq!(stats.dcmd_busy.load(Ordering::Relaxed), 1);
    assert_eq!(stats.inbound_refused.load(Ordering::Relaxed), 1, "temp");

    trigger.trigger();
    timeout(WAIT, node)
        .await
        .expect("the node stops within 10 s")
        .expect("node task")
        .expect("node ran");
    host.wait_for(WAIT, 0, Kind::NDeath, None)
        .await
        .expect("NDEATH at the stop");
    host.assert_valid();
    drop(store);
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
}
