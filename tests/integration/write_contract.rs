//! Write commands over MQTT, as far as the forwarder takes them: a command
//! published to `cmd/{device}/{tag}` on the embedded broker reaches the
//! write desk's channel with what the sender said and how the broker
//! delivered it (live, its retained copy, or queued while the gateway was
//! away), is acknowledged at once (never delivered twice), and never
//! reaches the rules' inbound channel. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use fieldgate::command::{Delivery, Requested, Source, WriteCommand, WriteOrder};
use fieldgate::contract::{Request, Topics};
use fieldgate::mqtt::client::MqttError;
use fieldgate::mqtt::forwarder::{
    self, ForwarderConfig, ForwarderStats, INBOUND_CAPACITY, Inbound,
};
use fieldgate::shutdown::{self, ShutdownTrigger};
use fieldgate::store::{self, StoreGuard, StoreHandle};
use rumqttc::QoS;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::common::forwarder::{self as forwarder_fixture, mqtt_config, outbox_config};
use crate::common::subscriber::Subscriber;
use crate::common::{broker, tracing, wait};

const SITE: &str = "site";

/// A forwarder with a write desk's channel, over its own outbox.
struct Gateway {
    stats: Arc<ForwarderStats>,
    inbound: mpsc::Receiver<Inbound>,
    writes: mpsc::Receiver<WriteOrder>,
    trigger: ShutdownTrigger,
    task: JoinHandle<Result<(), MqttError>>,
}

/// An empty outbox in a folder of its own.
async fn outbox() -> (StoreHandle, StoreGuard, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = outbox_config(dir.path());
    let (store, guard) = tokio::task::spawn_blocking(move || store::open(&config))
        .await
        .unwrap()
        .expect("open the outbox");
    (store, guard, dir)
}

async fn close((store, guard, dir): (StoreHandle, StoreGuard, tempfile::TempDir)) {
    drop(store);
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
    drop(dir);
}

fn config(broker: SocketAddr, client_id: &str, gateway: &str) -> ForwarderConfig {
    ForwarderConfig {
        mqtt: mqtt_config(broker, client_id),
        topics: Topics::new("fieldgate", SITE, gateway),
        config_hash: "0123456789abcdef".repeat(4),
        started: SystemTime::now(),
        store: None,
    }
}

impl Gateway {
    fn start(cfg: ForwarderConfig, store: &StoreHandle) -> Gateway {
        let stats = Arc::new(ForwarderStats::default());
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
        let (writes_tx, writes) = mpsc::channel(fieldgate::command::ORDERS_CAPACITY);
        let (trigger, listener) = shutdown::channel();
        let task = tokio::spawn(forwarder::run_with_updates(
            cfg,
            store.clone(),
            inbound_tx,
            Some(writes_tx),
            stats.clone(),
            listener,
            None,
        ));
        Gateway {
            stats,
            inbound,
            writes,
            trigger,
            task,
        }
    }

    async fn stop(self) -> (mpsc::Receiver<Inbound>, mpsc::Receiver<WriteOrder>) {
        forwarder_fixture::stop(&self.trigger, self.task).await;
        (self.inbound, self.writes)
    }

    /// The next write command, within 5 s; probes met on the way are
    /// skipped.
    async fn next_command(&mut self) -> WriteCommand {
        loop {
            let order = timeout(Duration::from_secs(5), self.writes.recv())
                .await
                .expect("a write command within 5 s")
                .expect("the forwarder hands commands on");
            assert!(order.reply.is_none(), "nobody waits on an MQTT command");
            if order.command.device != "probe" {
                return order.command;
            }
        }
    }

    /// Waits until a command published now arrives live: the forwarder's
    /// subscription of this connection is confirmed.
    async fn subscribed(&mut self, operator: &Subscriber, base: &str) {
        for i in 0..50 {
            send(
                operator,
                &format!("{base}/cmd/probe/x"),
                &format!(r#"{{"v":{i}}}"#),
            )
            .await;
            while let Ok(Some(order)) =
                timeout(Duration::from_millis(200), self.writes.recv()).await
            {
                if order.command.device == "probe" && order.command.delivery == Delivery::Live {
                    return;
                }
            }
        }
        panic!("the forwarder did not subscribe within 10 s");
    }

    /// The rules' inbound channel had nothing but the announcements of new
    /// sessions.
    fn rules_saw_no_command(&mut self) {
        while let Ok(m) = self.inbound.try_recv() {
            assert_eq!(m.request, Request::BrokerConnected, "{:?}", m.request);
        }
    }
}

/// Publishes `payload` on `topic` at QoS 1, not retained.
async fn send(operator: &Subscriber, topic: &str, payload: &str) {
    operator
        .client
        .publish(topic, QoS::AtLeastOnce, false, payload.to_owned())
        .await
        .unwrap();
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

/// A live command reaches the write desk with every field the sender set,
/// a malformed one too (to be refused with its answer), and neither
/// reaches the rules. A QoS 1 command is acknowledged at once: after a
/// restart under the same persistent session nothing comes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_reaches_the_write_desk_with_its_fields_and_never_the_rules() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw-cmd";
    let base = format!("fieldgate/{SITE}/{gw}");
    let outbox = outbox().await;
    let cfg = config(broker, "fg-cmd", gw);
    let operator = Subscriber::start(broker, "operator-cmd", &format!("{base}/status")).await;

    let mut gateway = Gateway::start(cfg.clone(), &outbox.0);
    gateway.subscribed(&operator, &base).await;

    let sent = SystemTime::now();
    let before = SystemTime::now();
    send(
        &operator,
        &format!("{base}/cmd/pump1/setpoint"),
        &format!(
            r#"{{"v":42.5,"id":"a1","by":"jdoe","ts":{}}}"#,
            millis(sent)
        ),
    )
    .await;
    let command = gateway.next_command().await;
    let after = SystemTime::now();
    assert!(
        command.received >= before && command.received <= after,
        "{command:?}"
    );
    assert_eq!(
        command,
        WriteCommand {
            device: "pump1".into(),
            tag: "setpoint".into(),
            value: Requested::Number(42.5),
            id: Some("a1".into()),
            by: Some("jdoe".into()),
            sent: Some(SystemTime::UNIX_EPOCH + Duration::from_millis(millis(sent))),
            received: command.received,
            source: Source::Mqtt,
            delivery: Delivery::Live,
        }
    );

    // At QoS 0 and malformed: still a command, with its id.
    operator
        .client
        .publish(
            format!("{base}/cmd/valve2/open"),
            QoS::AtMostOnce,
            false,
            r#"{"id":"b2","value":true}"#,
        )
        .await
        .unwrap();
    let bad = gateway.next_command().await;
    assert_eq!((bad.device.as_str(), bad.tag.as_str()), ("valve2", "open"));
    assert_eq!(bad.id.as_deref(), Some("b2"));
    assert!(matches!(bad.value, Requested::Malformed(_)), "{bad:?}");
    assert_eq!(bad.delivery, Delivery::Live);

    // A result (ours, or anyone's) is not a command; an ack still goes to
    // the rules.
    send(
        &operator,
        &format!("{base}/cmd/pump1/setpoint/result"),
        r#"{"v":1}"#,
    )
    .await;
    send(
        &operator,
        &format!("{base}/alarms/hot/ack"),
        r#"{"by":"ana"}"#,
    )
    .await;
    let ack = loop {
        let m = timeout(Duration::from_secs(5), gateway.inbound.recv())
            .await
            .expect("the ack within 5 s")
            .unwrap();
        if m.request != Request::BrokerConnected {
            break m;
        }
    };
    assert!(
        matches!(ack.request, Request::Alarm { .. }),
        "{:?}",
        ack.request
    );
    ack.handled.done();
    assert!(
        timeout(Duration::from_millis(300), gateway.writes.recv())
            .await
            .is_err(),
        "the result topic brought nothing"
    );
    gateway.rules_saw_no_command();
    assert!(gateway.stats.writes.load(Ordering::Relaxed) >= 3);
    assert_eq!(gateway.stats.writes_dropped.load(Ordering::Relaxed), 0);
    let (_, writes) = gateway.stop().await;
    drop(writes);

    // Same client id: the broker kept the session. The commands were
    // acknowledged on receipt, nobody having completed anything: none
    // comes again.
    let mut gateway = Gateway::start(cfg, &outbox.0);
    gateway.subscribed(&operator, &base).await;
    assert!(
        timeout(Duration::from_millis(500), gateway.next_command())
            .await
            .is_err(),
        "a command is delivered once"
    );
    gateway.rules_saw_no_command();
    gateway.stop().await;
    close(outbox).await;
}

/// A command the broker kept while the gateway was away arrives marked
/// queued (the desk refuses it as stale), one published after the
/// subscription live; none goes to the rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_queued_while_the_gateway_was_away_arrives_queued() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw-queued";
    let base = format!("fieldgate/{SITE}/{gw}");
    let outbox = outbox().await;
    let cfg = config(broker, "fg-queued", gw);
    let operator = Subscriber::start(broker, "operator-queued", &format!("{base}/status")).await;

    // The first run leaves a persistent session subscribed to cmd/+/+.
    let mut gateway = Gateway::start(cfg.clone(), &outbox.0);
    gateway.subscribed(&operator, &base).await;
    gateway.stop().await;

    // Sent while the gateway is away: the broker queues it.
    send(
        &operator,
        &format!("{base}/cmd/pump1/setpoint"),
        r#"{"v":7,"id":"q1"}"#,
    )
    .await;
    send(
        &operator,
        &format!("{base}/cmd/pump1/reset"),
        r#"{"v":true,"id":"q2"}"#,
    )
    .await;
    // Let the broker take both before the gateway is back.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut gateway = Gateway::start(cfg, &outbox.0);
    for id in ["q1", "q2"] {
        let queued = gateway.next_command().await;
        assert_eq!(queued.id.as_deref(), Some(id), "{queued:?}");
        assert_eq!(queued.delivery, Delivery::Queued, "{queued:?}");
    }
    gateway.subscribed(&operator, &base).await;
    send(
        &operator,
        &format!("{base}/cmd/pump1/setpoint"),
        r#"{"v":8,"id":"l1"}"#,
    )
    .await;
    let live = gateway.next_command().await;
    assert_eq!(
        (live.id.as_deref(), live.delivery),
        (Some("l1"), Delivery::Live)
    );
    gateway.rules_saw_no_command();
    gateway.stop().await;
    close(outbox).await;
}

/// A retained command arrives marked retained (the desk refuses it); the
/// empty message that clears it asks for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retained_command_arrives_retained_and_its_clearing_asks_for_nothing() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw-retained";
    let base = format!("fieldgate/{SITE}/{gw}");
    let topic = format!("{base}/cmd/pump1/setpoint");
    let outbox = outbox().await;
    let operator = Subscriber::start(broker, "operator-retained", &format!("{base}/status")).await;
    operator
        .client
        .publish(&topic, QoS::AtLeastOnce, true, r#"{"v":50,"id":"r1"}"#)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A new gateway (no session yet) subscribes and gets the broker's copy.
    let mut gateway = Gateway::start(config(broker, "fg-retained", gw), &outbox.0);
    let retained = gateway.next_command().await;
    assert_eq!(retained.id.as_deref(), Some("r1"), "{retained:?}");
    assert_eq!(retained.delivery, Delivery::Retained);
    assert_eq!(retained.value, Requested::Number(50.0));
    gateway.subscribed(&operator, &base).await;

    // Clearing it: an empty retained message, delivered to us.
    operator
        .client
        .publish(&topic, QoS::AtLeastOnce, true, Vec::<u8>::new())
        .await
        .unwrap();
    assert!(
        timeout(Duration::from_millis(500), gateway.next_command())
            .await
            .is_err(),
        "an empty message is no command"
    );

    // The write desk is gone: a command is dropped, counted, never
    // passed to the rules.
    gateway.writes.close();
    send(&operator, &topic, r#"{"v":51,"id":"d1"}"#).await;
    let stats = gateway.stats.clone();
    assert!(
        wait::until(Duration::from_secs(5), || {
            stats.writes_dropped.load(Ordering::Relaxed) == 1
        })
        .await,
        "the dropped command is counted"
    );
    gateway.rules_saw_no_command();
    gateway.stop().await;
    close(outbox).await;
}
