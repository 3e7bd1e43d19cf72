//! Backlog drain: fill the outbox with N readings while the broker is
//! "down", then let the forwarder drain them to a broker, beside a bare
//! rumqttc QoS 1 publisher sending as many messages of the same size to
//! the same broker. Figures go in BENCHMARKS.md.
//!
//! ```text
//! cargo run --release --example drain -- [READINGS] [BROKER_HOST:PORT] [READINGS_PER_MESSAGE]
//! ```
//! Defaults: 1,000,000 readings, 127.0.0.1:1883, 10 readings per message
//! (a device poll of 10 tags). Peak RSS is the process's VmHWM after the
//! fill and after the drain (the bare publisher runs last).
//!
//! This is a micro-benchmark of one stage: the store and the forwarder
//! in-process, with no subscriber. The authoritative figure is W5 of the
//! load harness (`fieldgate-load W5`, BENCHMARKS.md): the gateway as its
//! own process, the backlog made by real polls, and delivery counted at a
//! subscriber, with loss checked; use this one to profile the drain loop.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use fieldgate::config::{self, Durability, StoreConfig};
use fieldgate::contract::topics::Topics;
use fieldgate::mqtt::forwarder::{self, ForwarderConfig, ForwarderStats};
use fieldgate::shutdown;
use fieldgate::store::{self, Kind, OutMessage};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn vm_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn payload(seq: u64, per_message: usize) -> Vec<u8> {
    let mut s = format!("{{\"ts\":\"2026-11-21T06:38:25.305Z\",\"seq\":{seq},\"tags\":{{");
    for i in 0..per_message {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "\"r{i}\":{{\"v\":{},\"q\":\"good\",\"u\":\"degC\"}}",
            50 + i
        ));
    }
    s.push_str("}}");
    s.into_bytes()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let readings: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let broker = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:1883".into());
    let per_message: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10);
    let messages = readings / per_message as u64;
    let (host, port) = broker.rsplit_once(':').expect("HOST:PORT");
    let port: u16 = port.parse().expect("port");

    let dir = tempfile::tempdir().expect("temp dir");
    let store_config = StoreConfig {
        path: dir.path().join("drain.db"),
        durability: Durability::Normal,
        max_bytes: 4 << 30,
        max_age: Duration::from_secs(86_400),
        flush_interval: Duration::from_millis(100),
    };
    let (handle, guard) = store::open(&store_config).expect("store opens");
    let topic = "fieldgate/bench/drain/data/plc".to_string();
    let fill = Instant::now();
    let mut seq = 0;
    while seq < messages {
        // Batches of 64, as the pipeline inserts them.
        let batch: Vec<OutMessage> = (0..64.min(messages - seq))
            .map(|_| {
                seq += 1;
                OutMessage {
                    topic: topic.clone(),
                    seq,
                    payload: payload(seq, per_message),
                    qos: 1,
                    retain: false,
                    kind: Kind::Reading,
                    created_at: SystemTime::now().into(),
                }
            })
            .collect();
        handle.insert(batch).await.expect("insert");
    }
    handle.flush().await.expect("flush");
    let fill_s = fill.elapsed().as_secs_f64();
    let size = payload(1, per_message).len();
    println!(
        "filled {messages} messages ({readings} readings, {size} bytes each) in {fill_s:.1} s: {:.0} readings/s; VmHWM {} KiB",
        readings as f64 / fill_s,
        vm_hwm_kib()
    );

    let mut mqtt = config::load_with_env(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml")),
        &[],
    )
    .expect("demo config loads")
    .config
    .mqtt;
    mqtt.host = host.to_string();
    mqtt.port = port;
    mqtt.client_id = format!("fieldgate-drain-{}", std::process::id());
    let (trigger, listener) = shutdown::channel();
    let (inbound_tx, _inbound_rx) = tokio::sync::mpsc::channel(16);
    let stats = Arc::new(ForwarderStats::default());
    let drain = Instant::now();
    let task = tokio::spawn(forwarder::run(
        ForwarderConfig {
            mqtt,
            topics: Topics::new("fieldgate", "bench", "drain"),
            config_hash: "0".repeat(64),
            started: SystemTime::now(),
            store: None,
        },
        handle.clone(),
        inbound_tx,
        stats,
        listener,
    ));
    let mut peak_rss = vm_rss_kib();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_rss = peak_rss.max(vm_rss_kib());
        let s = handle.stats().await.expect("stats");
        if s.messages == 0 {
            break;
        }
        if drain.elapsed() > Duration::from_secs(1800) {
            println!("gave up after 30 minutes with {} messages left", s.messages);
            break;
        }
    }
    let drain_s = drain.elapsed().as_secs_f64();
    trigger.trigger();
    let _ = task.await;
    println!(
        "fieldgate drained {messages} messages in {drain_s:.1} s: {:.0} messages/s, {:.0} readings/s; peak RSS while draining {} KiB",
        messages as f64 / drain_s,
        readings as f64 / drain_s,
        peak_rss
    );
    drop(handle);
    let _ = tokio::task::spawn_blocking(move || guard.close()).await;

    // Bare rumqttc: the same number of messages of the same size, QoS 1,
    // counting PUBACKs, with the same in-flight window (100).
    let mut options = MqttOptions::new(format!("bare-{}", std::process::id()), host, port);
    options.set_inflight(100);
    options.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let body = payload(1, per_message);
    let bare = Instant::now();
    let publisher = tokio::spawn(async move {
        for _ in 0..messages {
            if client
                .publish(
                    "fieldgate/bench/bare",
                    QoS::AtLeastOnce,
                    false,
                    body.clone(),
                )
                .await
                .is_err()
            {
                break;
            }
        }
        client
    });
    let mut acked = 0;
    while acked < messages {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::PubAck(_))) => acked += 1,
            Ok(_) => {}
            Err(e) => {
                println!("bare publisher: {e}");
                break;
            }
        }
    }
    let bare_s = bare.elapsed().as_secs_f64();
    let _ = publisher.await;
    println!(
        "bare rumqttc published {acked} messages in {bare_s:.1} s: {:.0} messages/s; fieldgate/bare = {:.2}",
        acked as f64 / bare_s,
        (messages as f64 / drain_s) / (acked as f64 / bare_s)
    );
}
