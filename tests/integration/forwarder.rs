//! The forwarder against a real outbox (SQLite in a temporary folder) and
//! an embedded broker on loopback: order, deletion on confirmed delivery,
//! status and Last Will, network cuts, large payloads, inbound messages.
//! Every wait is bounded.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fieldgate::config::{MqttConfig, StoreConfig};
use fieldgate::contract::Topics;
use fieldgate::contract::{OperatorAction, Request, Who};
use fieldgate::mqtt::client::MqttError;
use fieldgate::mqtt::forwarder::{ForwarderConfig, ForwarderStats, INBOUND_CAPACITY, Inbound};
use fieldgate::shutdown::ShutdownTrigger;
use fieldgate::store::{self, Kind, Lane, OutMessage, StoreGuard, StoreHandle};
use rumqttc::QoS;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use crate::common::forwarder::{self as forwarder_fixture, mqtt_config, outbox_config};
use crate::common::proxy::Proxy;
use crate::common::subscriber::{Received, Subscriber};
use crate::common::wait::{self, eventually};
use crate::common::{broker, schema, tracing};

const SITE: &str = "site";

// ---------------------------------------------------------------------------
// A gateway: outbox + forwarder.

struct Gateway {
    store: StoreHandle,
    guard: Option<StoreGuard>,
    topics: Topics,
    stats: Arc<ForwarderStats>,
    inbound: mpsc::Receiver<Inbound>,
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<Result<(), MqttError>>>,
    _dir: tempfile::TempDir,
}

impl Gateway {
    /// Opens an empty outbox; the forwarder is not started yet.
    async fn open(gateway: &str) -> (StoreHandle, StoreGuard, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            max_bytes: 256 << 20,
            max_age: Duration::from_secs(7 * 86_400),
            ..outbox_config(dir.path())
        };
        let (store, guard) = tokio::task::spawn_blocking(move || store::open(&config))
            .await
            .unwrap()
            .expect("open the outbox");
        let _ = gateway;
        (store, guard, dir)
    }

    fn start(
        (store, guard, dir): (StoreHandle, StoreGuard, tempfile::TempDir),
        gateway: &str,
        mqtt: MqttConfig,
    ) -> Gateway {
        let topics = Topics::new(&mqtt.topic_prefix, SITE, gateway);
        let cfg = ForwarderConfig {
            mqtt,
            topics: topics.clone(),
            config_hash: "0123456789abcdef".repeat(4),
            started: SystemTime::now(),
            store: None,
        };
        let started = forwarder_fixture::start(cfg, &store);
        Gateway {
            store,
            guard: Some(guard),
            topics,
            stats: started.stats,
            inbound: started.inbound,
            trigger: started.trigger,
            task: Some(started.task),
            _dir: dir,
        }
    }

    async fn stop(&mut self) {
        forwarder_fixture::stop(&self.trigger, self.task.take().unwrap()).await;
    }

    async fn close_store(&mut self) {
        let guard = self.guard.take().unwrap();
        tokio::task::spawn_blocking(move || guard.close())
            .await
            .unwrap()
            .unwrap();
    }

    async fn waiting(&self) -> u64 {
        self.store.stats().await.unwrap().messages
    }

    async fn wait_empty(&self, limit: Duration) -> bool {
        eventually(limit, async || (self.waiting().await == 0).then_some(()))
            .await
            .is_some()
    }

    fn connected(&self) -> bool {
        self.stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn reconnects(&self) -> u64 {
        self.stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn message(topic: &str, seq: u64, payload: String, qos: u8, retain: bool) -> OutMessage {
    OutMessage {
        topic: topic.to_string(),
        seq,
        payload: payload.into_bytes(),
        qos,
        retain,
        kind: if retain { Kind::Alarm } else { Kind::Reading },
        created_at: SystemTime::now().into(),
    }
}

/// The retained message a new subscriber gets on `topic`.
async fn retained(broker: SocketAddr, id: &str, topic: &str) -> Received {
    let sub = Subscriber::start_with_qos(broker, id, topic, QoS::ExactlyOnce).await;
    assert!(
        sub.wait_until(Duration::from_secs(5), |m| !m.is_empty())
            .await,
        "no retained message on {topic}"
    );
    sub.received().remove(0)
}

/// The payload with `"hist":true` first, as the forwarder sends backlog.
fn hist(payload: &str) -> Vec<u8> {
    format!("{{\"hist\":true,{}", &payload[1..]).into_bytes()
}

// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_the_outbox_in_order_then_empties_it() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw1";
    let base = format!("fieldgate/{SITE}/{gw}");
    let parts = Gateway::open(gw).await;
    let store = parts.0.clone();

    // Two data topics (QoS 1) and a retained alarm topic at QoS 2.
    const N: u64 = 240;
    let mut expected: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut seqs: HashMap<String, u64> = HashMap::new();
    let mut batch = Vec::new();
    for i in 0..N {
        let (topic, qos, retain) = match i % 4 {
            0 | 1 => (format!("{base}/data/pump1"), 1, false),
            2 => (format!("{base}/data/pump2"), 1, false),
            _ => (format!("{base}/alarms/hot"), 2, true),
        };
        let seq = seqs.entry(topic.clone()).or_default();
        *seq += 1;
        let payload = format!("{{\"seq\":{seq},\"i\":{i}}}");
        expected
            .entry(topic.clone())
            .or_default()
            .push(hist(&payload));
        batch.push(message(&topic, *seq, payload, qos, retain));
        if batch.len() == 50 {
            store.insert(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    store.insert(batch).await.unwrap();
    store.flush().await.unwrap();

    let sub =
        Subscriber::start_with_qos(broker, "sub-1", &format!("{base}/#"), QoS::ExactlyOnce).await;
    let mut gateway = Gateway::start(parts, gw, mqtt_config(broker, "fg-1"));

    let data = |m: &[Received]| {
        m.iter()
            .filter(|m| !m.topic.ends_with("/status") && !m.topic.ends_with("/ack"))
            .count()
    };
    assert!(
        sub.wait_until(Duration::from_secs(30), |m| data(m) >= N as usize)
            .await,
        "only {} of {N} messages arrived",
        data(&sub.received())
    );
    assert!(
        gateway.wait_empty(Duration::from_secs(10)).await,
        "the outbox is not empty"
    );

    // Per topic: every row once, in order, with "hist" (they were all in
    // the outbox when the connection came up).
    for (topic, want) in &expected {
        let got: Vec<Vec<u8>> = sub
            .received()
            .into_iter()
            .filter(|m| &m.topic == topic)
            .map(|m| m.payload)
            .collect();
        assert_eq!(got.len(), want.len(), "{topic}");
        for (n, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(
                String::from_utf8_lossy(g),
                String::from_utf8_lossy(w),
                "{topic} message {n}"
            );
        }
    }
    // (The QoS a subscriber sees tells nothing here: rumqttd 0.20 forwards
    // at the subscription's QoS, not min(publish, subscription). The QoS 2
    // rows being confirmed, i.e. deleted, shows the PUBREC/PUBCOMP path.)
    eprintln!(
        "received QoS: alarms {:?}, data {:?}",
        sub.on("/alarms/hot").first().map(|m| m.qos),
        sub.on("/data/").first().map(|m| m.qos)
    );
    let stats = &gateway.stats;
    assert_eq!(stats.acked.load(std::sync::atomic::Ordering::Relaxed), N);
    assert!(gateway.connected());

    // Retain: the last alarm is the broker's retained message.
    let alarm = retained(broker, "sub-alarm", &format!("{base}/alarms/hot")).await;
    assert!(alarm.retain);
    assert_eq!(
        alarm.payload,
        *expected[&format!("{base}/alarms/hot")].last().unwrap()
    );

    // Status: online, retained, valid against the schema.
    let schema = schema::validator("status.json");
    let online = retained(broker, "sub-status-1", &gateway.topics.status()).await;
    assert!(online.retain);
    let v = online.json();
    assert_eq!(v["state"], "online", "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    assert!(v["ts"].is_string() && v["started"].is_string());
    assert!(schema.is_valid(&v), "{v}");

    // The new session is announced first, so the pipeline republishes
    // the retained state.
    let first = timeout(Duration::from_secs(5), gateway.inbound.recv())
        .await
        .expect("connection announced within 5 s")
        .unwrap();
    assert_eq!(first.request, Request::BrokerConnected);

    // Inbound: an operator's ack reaches the inbound channel.
    let ack_topic = format!("{base}/alarms/hot/ack");
    sub.client
        .publish(
            &ack_topic,
            QoS::AtLeastOnce,
            false,
            br#"{"by":"op"}"#.to_vec(),
        )
        .await
        .unwrap();
    let inbound = timeout(Duration::from_secs(5), gateway.inbound.recv())
        .await
        .expect("inbound message within 5 s")
        .unwrap();
    assert_eq!(inbound.request, ack_by("op"));
    inbound.handled.done();

    // A burst beyond the inbound channel while nobody reads it (the rules
    // restarting for a reload): held in order, none dropped. (The broker
    // sends more than its in-flight limit only as the forwarder
    // acknowledges, i.e. as they are handled here.)
    let burst = INBOUND_CAPACITY + 300;
    for i in 0..burst {
        sub.client
            .publish(
                &ack_topic,
                QoS::AtLeastOnce,
                false,
                format!("{{\"by\":\"op{i}\"}}").into_bytes(),
            )
            .await
            .unwrap();
    }
    for i in 0..burst {
        let m = timeout(Duration::from_secs(10), gateway.inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("inbound message {i} of {burst} within 10 s"))
            .unwrap();
        assert_eq!(m.request, ack_by(&format!("op{i}")), "in order");
        m.handled.done();
    }
    assert_eq!(
        gateway
            .stats
            .inbound_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );

    // Stop: offline, retained, with ts; then the forwarder is gone.
    gateway.stop().await;
    assert!(!gateway.connected());
    let offline = retained(broker, "sub-status-2", &gateway.topics.status()).await;
    let v = offline.json();
    assert!(offline.retain);
    assert_eq!(v["state"], "offline", "{v}");
    assert!(v["ts"].is_string(), "a clean stop says when: {v}");
    assert!(schema.is_valid(&v), "{v}");
    gateway.close_store().await;
}

/// Rows keep coming while the network is cut for about 2 s: every seq
/// arrives at least once, each stream is in order per topic, and what
/// waited through the cut is marked `hist`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_cut_loses_nothing_and_keeps_each_stream_in_order() {
    tracing::init();
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    let gw = "gw2";
    let base = format!("fieldgate/{SITE}/{gw}");
    let parts = Gateway::open(gw).await;
    let store = parts.0.clone();
    let sub =
        Subscriber::start_with_qos(broker, "sub-2", &format!("{base}/#"), QoS::ExactlyOnce).await;
    let mut mqtt = mqtt_config(proxy.addr(), "fg-2");
    mqtt.max_inflight = 40;
    let mut gateway = Gateway::start(parts, gw, mqtt);
    assert!(wait::until(Duration::from_secs(10), || gateway.connected()).await);

    // The producer: 2 topics, a row on each every 10 ms, tagged with the
    // phase it was produced in.
    let phase = Arc::new(Mutex::new("before"));
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let producer = {
        let store = store.clone();
        let phase = phase.clone();
        let base = base.clone();
        tokio::spawn(async move {
            let mut seq = 0u64;
            loop {
                seq += 1;
                let p = *phase.lock().unwrap();
                let batch = ["pump1", "pump2"]
                    .iter()
                    .map(|d| {
                        let payload = format!("{{\"seq\":{seq},\"phase\":\"{p}\"}}");
                        message(&format!("{base}/data/{d}"), seq, payload, 1, false)
                    })
                    .collect();
                store.insert(batch).await.unwrap();
                tokio::select! {
                    _ = &mut stop_rx => break,
                    _ = sleep(Duration::from_millis(10)) => {}
                }
            }
            store.flush().await.unwrap();
            seq
        })
    };

    sleep(Duration::from_millis(800)).await;
    // First the acks stop coming back (the broker still gets and delivers
    // the publishes), then the connection drops: the window of rows in
    // flight was delivered but never confirmed, and must be sent again.
    proxy.stall();
    sleep(Duration::from_millis(500)).await;
    proxy.cut();
    assert!(
        wait::until(Duration::from_secs(5), || !gateway.connected()).await,
        "the forwarder did not notice the cut"
    );
    *phase.lock().unwrap() = "cut";
    sleep(Duration::from_secs(2)).await;
    *phase.lock().unwrap() = "late";
    store.flush().await.unwrap();
    proxy.restore();
    assert!(
        wait::until(Duration::from_secs(40), || gateway.reconnects() >= 1).await,
        "no reconnect within 40 s of the restore"
    );
    *phase.lock().unwrap() = "after";
    sleep(Duration::from_millis(800)).await;
    stop_tx.send(()).unwrap();
    let last = producer.await.unwrap();

    let topics: Vec<String> = ["pump1", "pump2"]
        .iter()
        .map(|d| format!("{base}/data/{d}"))
        .collect();
    let complete = |m: &[Received]| {
        topics.iter().all(|t| {
            let have: HashSet<u64> = m
                .iter()
                .filter(|m| &m.topic == t)
                .filter_map(|m| m.json()["seq"].as_u64())
                .collect();
            (1..=last).all(|s| have.contains(&s))
        })
    };
    assert!(
        sub.wait_until(Duration::from_secs(30), complete).await,
        "messages missing after the cut"
    );
    assert!(
        gateway.wait_empty(Duration::from_secs(10)).await,
        "the outbox is not empty"
    );

    let received = sub.received();
    let mut duplicates = 0;
    for topic in &topics {
        let mut seen: HashSet<u64> = HashSet::new();
        // Per stream, the highest seq so far.
        let mut top: HashMap<bool, u64> = HashMap::new();
        let mut hist_count = 0;
        for m in received.iter().filter(|m| &m.topic == topic) {
            let v = m.json();
            let seq = v["seq"].as_u64().unwrap();
            let is_hist = v["hist"] == Value::Bool(true);
            hist_count += usize::from(is_hist);
            let dup = !seen.insert(seq);
            duplicates += usize::from(dup);
            let top = top.entry(is_hist).or_default();
            // A message older than the newest of its stream must be a
            // duplicate (a resend after the reconnect), never a first.
            assert!(
                seq > *top || dup,
                "{topic}: seq {seq} (hist {is_hist}) first seen after {top}"
            );
            *top = (*top).max(seq);
            let phase = v["phase"].as_str().unwrap();
            if phase == "cut" {
                assert!(
                    is_hist,
                    "{topic}: seq {seq} waited through the cut but is not hist"
                );
            }
            if phase == "after" && !dup {
                assert!(!is_hist, "{topic}: seq {seq} is live data but marked hist");
            }
        }
        assert!(hist_count > 0, "{topic}: no hist message");
    }
    eprintln!(
        "{duplicates} duplicates after the cut; {} reconnects",
        gateway.reconnects()
    );
    assert!(duplicates > 0, "the unconfirmed window was not sent again");

    // The broker published the Last Will while the gateway was cut off.
    let statuses: Vec<Value> = sub.on("/status").iter().map(|m| m.json()).collect();
    let will = statuses
        .iter()
        .position(|v| v["state"] == "offline" && v.get("ts").is_none())
        .expect("the Last Will was published");
    assert!(
        statuses[will..].iter().any(|v| v["state"] == "online"),
        "online again after the cut: {statuses:?}"
    );

    gateway.stop().await;
    gateway.close_store().await;
}

/// A payload over rumqttc's 10 KiB default goes through; one over
/// `max_packet_size` is skipped (and left in the outbox) without stopping
/// the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_payloads_go_through_and_oversized_ones_are_skipped() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw3";
    let base = format!("fieldgate/{SITE}/{gw}");
    let parts = Gateway::open(gw).await;
    let store = parts.0.clone();
    let topic = format!("{base}/data/big");
    let big = format!("{{\"seq\":1,\"blob\":\"{}\"}}", "x".repeat(64 * 1024));
    let huge = format!("{{\"seq\":2,\"blob\":\"{}\"}}", "y".repeat(300 * 1024));
    let small = "{\"seq\":3}".to_string();
    store
        .insert(vec![
            message(&topic, 1, big.clone(), 1, false),
            message(&topic, 2, huge, 1, false),
            message(&topic, 3, small.clone(), 1, false),
        ])
        .await
        .unwrap();
    store.flush().await.unwrap();

    let sub =
        Subscriber::start_with_qos(broker, "sub-3", &format!("{base}/data/#"), QoS::ExactlyOnce)
            .await;
    let mut mqtt = mqtt_config(broker, "fg-3");
    mqtt.max_packet_size = 256 * 1024;
    let mut gateway = Gateway::start(parts, gw, mqtt);
    assert!(
        sub.wait_until(Duration::from_secs(15), |m| m.len() >= 2)
            .await,
        "large payload not delivered"
    );
    let got = sub.received();
    assert_eq!(got[0].payload, hist(&big));
    assert_eq!(got[1].payload, hist(&small));
    assert!(
        wait::until(Duration::from_secs(5), || gateway
            .stats
            .skipped
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1)
        .await
    );
    // Only the oversized row is left.
    assert!(
        eventually(Duration::from_secs(5), async || {
            (gateway.waiting().await == 1).then_some(())
        })
        .await
        .is_some()
    );
    let left = gateway.store.fetch_after(Lane::Json, 0, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].seq, 2);
    assert!(gateway.connected(), "the connection survived");
    gateway.stop().await;
    gateway.close_store().await;
}

/// The broker is unreachable when the gateway starts: the forwarder keeps
/// trying, then delivers once it can connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_start_is_retried() {
    tracing::init();
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    proxy.cut();
    let gw = "gw4";
    let base = format!("fieldgate/{SITE}/{gw}");
    let parts = Gateway::open(gw).await;
    let store = parts.0.clone();
    store
        .insert(vec![message(
            &format!("{base}/data/p"),
            1,
            "{\"seq\":1}".into(),
            1,
            false,
        )])
        .await
        .unwrap();
    store.flush().await.unwrap();
    let sub =
        Subscriber::start_with_qos(broker, "sub-4", &format!("{base}/data/#"), QoS::ExactlyOnce)
            .await;
    let mut gateway = Gateway::start(parts, gw, mqtt_config(proxy.addr(), "fg-4"));

    assert!(
        wait::until(Duration::from_secs(5), || gateway
            .stats
            .last_error()
            .is_some())
        .await,
        "no error recorded"
    );
    sleep(Duration::from_millis(1500)).await;
    assert!(!gateway.connected());
    assert!(
        !gateway.task.as_ref().unwrap().is_finished(),
        "the forwarder gave up"
    );
    proxy.restore();
    assert!(
        sub.wait_until(Duration::from_secs(40), |m| !m.is_empty())
            .await,
        "nothing delivered after the broker came back"
    );
    assert_eq!(
        gateway.reconnects(),
        0,
        "the first connection is not a reconnect"
    );
    assert!(gateway.wait_empty(Duration::from_secs(5)).await);
    gateway.stop().await;
    gateway.close_store().await;
}

/// When the outbox closes under it, the forwarder says offline and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ends_cleanly_when_the_store_closes() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw5";
    let parts = Gateway::open(gw).await;
    let mut gateway = Gateway::start(parts, gw, mqtt_config(broker, "fg-5"));
    assert!(wait::until(Duration::from_secs(10), || gateway.connected()).await);
    gateway.close_store().await;
    let task = gateway.task.take().unwrap();
    let result = timeout(Duration::from_secs(6), task)
        .await
        .expect("the forwarder ends within 6 s of the store closing")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    let offline = retained(broker, "sub-5", &gateway.topics.status()).await;
    assert_eq!(offline.json()["state"], "offline");
}

/// A large backlog drains while live data goes on: a row committed after
/// the connection came up arrives, without `hist`, long before the
/// backlog is through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_data_is_not_stuck_behind_the_backlog() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw6";
    let base = format!("fieldgate/{SITE}/{gw}");
    let parts = Gateway::open(gw).await;
    let store = parts.0.clone();
    const BACKLOG: u64 = 10_000;
    let old = format!("{base}/data/old");
    for chunk in (1..=BACKLOG).collect::<Vec<_>>().chunks(500) {
        let batch = chunk
            .iter()
            .map(|&seq| message(&old, seq, format!("{{\"seq\":{seq}}}"), 1, false))
            .collect();
        store.insert(batch).await.unwrap();
    }
    store.flush().await.unwrap();
    let sub =
        Subscriber::start_with_qos(broker, "sub-6", &format!("{base}/data/#"), QoS::ExactlyOnce)
            .await;
    let mut gateway = Gateway::start(parts, gw, mqtt_config(broker, "fg-6"));
    assert!(wait::until(Duration::from_secs(10), || gateway.connected()).await);
    let live = format!("{base}/data/live");
    store
        .insert(vec![message(&live, 1, "{\"seq\":1}".into(), 1, false)])
        .await
        .unwrap();
    assert!(
        sub.wait_until(Duration::from_secs(30), |m| m
            .iter()
            .any(|m| m.topic == live))
            .await,
        "the live row never arrived"
    );
    let received = sub.received();
    let backlog_before = received.iter().take_while(|m| m.topic != live).count();
    let live_msg = received.iter().find(|m| m.topic == live).unwrap();
    assert_eq!(
        live_msg.json().get("hist"),
        None,
        "live data is not history"
    );
    assert!(
        (backlog_before as u64) < BACKLOG / 2,
        "the live row came after {backlog_before} of {BACKLOG} backlog messages"
    );
    assert!(
        sub.wait_until(Duration::from_secs(60), |m| m.len() as u64 > BACKLOG)
            .await,
        "backlog not drained"
    );
    assert!(gateway.wait_empty(Duration::from_secs(10)).await);
    eprintln!("live row arrived after {backlog_before} of {BACKLOG} backlog messages");
    gateway.stop().await;
    gateway.close_store().await;
}

/// The next request whose ack is signed `by`, within 5 s; the probes of
/// [`subscribed`] met on the way are completed.
async fn next_by(inbound: &mut mpsc::Receiver<Inbound>, by: &str) -> Inbound {
    loop {
        let m = timeout(Duration::from_secs(5), inbound.recv())
            .await
            .unwrap_or_else(|_| panic!("the ack by {by} within 5 s"))
            .expect("the forwarder passes requests on");
        if m.request == Request::BrokerConnected {
            // Each new session is announced (the pipeline republishes).
            continue;
        }
        match signed(&m) {
            Some(b) if b == by => return m,
            Some(b) if b.starts_with("probe") => m.handled.done(),
            other => panic!("expected the ack by {by}, got one by {other:?}"),
        }
    }
}

/// Who signed an ack request.
fn signed(m: &Inbound) -> Option<String> {
    match &m.request {
        Request::Alarm {
            action: OperatorAction::Ack(who),
            ..
        } => who.by.clone(),
        _ => None,
    }
}

/// An operator's ack on `topic`, signed `by` (QoS 1).
async fn send_ack(operator: &Subscriber, topic: &str, by: &str) {
    operator
        .client
        .publish(
            topic,
            QoS::AtLeastOnce,
            false,
            format!("{{\"by\":\"{by}\"}}"),
        )
        .await
        .unwrap();
}

/// Waits until the forwarder's inbound subscription is in place: probes
/// are published until one comes through (each one is completed).
async fn subscribed(operator: &Subscriber, topic: &str, inbound: &mut mpsc::Receiver<Inbound>) {
    for i in 0..50 {
        send_ack(operator, topic, &format!("probe{i}")).await;
        while let Ok(Some(m)) = timeout(Duration::from_millis(200), inbound.recv()).await {
            // The announcement of the new session comes first.
            if m.request == Request::BrokerConnected {
                continue;
            }
            assert!(signed(&m).is_some_and(|b| b.starts_with("probe")));
            m.handled.done();
            return;
        }
    }
    panic!("the forwarder did not subscribe within 10 s");
}

/// Inbound messages are acknowledged to the broker only once handled, in
/// the order they arrived, and the broker's persistent session sends
/// again what was not: a request received but not handled when the
/// forwarder stops, and one sent while it is stopped, arrive after the
/// restart; once handled (in any order) and acknowledged, they never come
/// back. A malformed message is acknowledged too (else it would hold
/// back every ack after it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_are_acknowledged_only_once_handled() {
    tracing::init();
    let broker = broker::start();
    let gw = "gw-acks";
    let base = format!("fieldgate/{SITE}/{gw}");
    let ack = format!("{base}/alarms/hot/ack");
    let (store, guard, _dir) = Gateway::open(gw).await;
    let cfg = ForwarderConfig {
        mqtt: mqtt_config(broker, "fg-acks"),
        topics: Topics::new("fieldgate", SITE, gw),
        config_hash: "0123456789abcdef".repeat(4),
        started: SystemTime::now(),
        store: None,
    };
    let operator = Subscriber::start(broker, "operator-acks", &format!("{base}/status")).await;

    // 1. Received; the consumer drops it unhandled: it is passed on again.
    // It is still not handled when the forwarder stops.
    let mut first = forwarder_fixture::start(cfg.clone(), &store);
    subscribed(&operator, &ack, &mut first.inbound).await;
    send_ack(&operator, &ack, "one").await;
    drop(next_by(&mut first.inbound, "one").await);
    let unhandled = next_by(&mut first.inbound, "one").await;
    forwarder_fixture::stop(&first.trigger, first.task).await;
    drop(unhandled);

    // 2. Sent while the forwarder is stopped: the broker keeps it.
    send_ack(&operator, &ack, "two").await;

    // 3. After the restart both come, in order; handled in reverse order,
    // they are acknowledged in order (rumqttd drops a connection that acks
    // out of order). A malformed shelve request and one more ack follow.
    let mut second = forwarder_fixture::start(cfg.clone(), &store);
    let one = next_by(&mut second.inbound, "one").await;
    let two = next_by(&mut second.inbound, "two").await;
    two.handled.done();
    one.handled.done();
    operator
        .client
        .publish(
            format!("{base}/alarms/hot/shelve"),
            QoS::AtLeastOnce,
            false,
            "soon",
        )
        .await
        .unwrap();
    send_ack(&operator, &ack, "three").await;
    next_by(&mut second.inbound, "three").await.handled.done();
    sleep(Duration::from_millis(500)).await;
    assert_eq!(
        second
            .stats
            .reconnects
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "acks in order: the broker kept the connection"
    );
    forwarder_fixture::stop(&second.trigger, second.task).await;

    // 4. Everything was acknowledged: nothing comes back.
    let mut third = forwarder_fixture::start(cfg, &store);
    subscribed(&operator, &ack, &mut third.inbound).await;
    send_ack(&operator, &ack, "four").await;
    let four = next_by(&mut third.inbound, "four").await;
    four.handled.done();
    assert!(
        timeout(Duration::from_millis(500), third.inbound.recv())
            .await
            .is_err(),
        "nothing more"
    );
    forwarder_fixture::stop(&third.trigger, third.task).await;
    drop(store);
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
}

/// A message not yet acknowledged when the connection fails is sent again
/// by the broker after the reconnect, and the next connection still
/// acknowledges only what is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_message_unacknowledged_at_a_network_cut_comes_again() {
    tracing::init();
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    let gw = "gw-cut-acks";
    let base = format!("fieldgate/{SITE}/{gw}");
    let ack = format!("{base}/alarms/hot/ack");
    let (store, guard, _dir) = Gateway::open(gw).await;
    let cfg = ForwarderConfig {
        mqtt: mqtt_config(proxy.addr(), "fg-cut-acks"),
        topics: Topics::new("fieldgate", SITE, gw),
        config_hash: "0123456789abcdef".repeat(4),
        started: SystemTime::now(),
        store: None,
    };
    let operator = Subscriber::start(broker, "operator-cut", &format!("{base}/status")).await;
    let mut fw = forwarder_fixture::start(cfg.clone(), &store);
    subscribed(&operator, &ack, &mut fw.inbound).await;
    send_ack(&operator, &ack, "one").await;
    let one = next_by(&mut fw.inbound, "one").await;

    let connected = |fw: &forwarder_fixture::Started| {
        fw.stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    proxy.cut();
    assert!(wait::until(Duration::from_secs(10), || !connected(&fw)).await);
    // Handled after its connection is gone: nobody can acknowledge it.
    one.handled.done();
    proxy.restore();
    assert!(wait::until(Duration::from_secs(10), || connected(&fw)).await);
    next_by(&mut fw.inbound, "one").await.handled.done();

    // The second connection acknowledges only what is handled, too.
    send_ack(&operator, &ack, "two").await;
    let two = next_by(&mut fw.inbound, "two").await;
    forwarder_fixture::stop(&fw.trigger, fw.task).await;
    drop(two);
    let mut again = forwarder_fixture::start(cfg, &store);
    next_by(&mut again.inbound, "two").await.handled.done();
    subscribed(&operator, &ack, &mut again.inbound).await;
    forwarder_fixture::stop(&again.trigger, again.task).await;
    drop(store);
    tokio::task::spawn_blocking(move || guard.close())
        .await
        .unwrap()
        .unwrap();
}

/// The request an ack signed `by` on the rule `hot` makes.
fn ack_by(by: &str) -> Request {
    Request::Alarm {
        rule: "hot".into(),
        action: OperatorAction::Ack(Who {
            by: Some(by.into()),
            note: None,
        }),
    }
}
