//! The forwarder's settings for tests that run it alone, against an
//! outbox in a temporary folder and a broker on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fieldgate::config::{Durability, MqttConfig, Qos, StoreConfig};
use fieldgate::mqtt::client::MqttError;
use fieldgate::mqtt::forwarder::{
    self, ForwarderConfig, ForwarderStats, INBOUND_CAPACITY, Inbound,
};
use fieldgate::shutdown::{self, ShutdownTrigger};
use fieldgate::store::StoreHandle;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Plain MQTT to `addr` as `client_id`: QoS 1, a 5 s keep-alive so that a
/// cut is noticed within a test, 20 messages in flight.
pub fn mqtt_config(addr: SocketAddr, client_id: &str) -> MqttConfig {
    MqttConfig {
        host: addr.ip().to_string(),
        port: addr.port(),
        client_id: client_id.into(),
        username: None,
        password: None,
        tls: None,
        topic_prefix: "fieldgate".into(),
        qos: Qos::AtLeastOnce,
        keep_alive: Duration::from_secs(5),
        max_inflight: 20,
        live_share: 0.5,
        per_tag_topics: false,
        max_packet_size: 1 << 20,
    }
}

/// An outbox file `outbox.db` in `dir`, committed every 20 ms, a day of
/// age and 64 MiB allowed.
pub fn outbox_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        path: dir.join("outbox.db"),
        durability: Durability::Normal,
        max_bytes: 64 << 20,
        max_age: Duration::from_secs(86_400),
        flush_interval: Duration::from_millis(20),
    }
}

/// A forwarder a test started: its counters, the inbound channel it fills,
/// its stop and its task.
pub struct Started {
    /// Its counters.
    pub stats: Arc<ForwarderStats>,
    /// What it passes on from the inbound topics.
    pub inbound: mpsc::Receiver<Inbound>,
    /// Its stop.
    pub trigger: ShutdownTrigger,
    /// Its task.
    pub task: JoinHandle<Result<(), MqttError>>,
}

/// Starts a forwarder with `cfg` over `store`.
pub fn start(cfg: ForwarderConfig, store: &StoreHandle) -> Started {
    let stats = Arc::new(ForwarderStats::default());
    let (tx, inbound) = mpsc::channel(INBOUND_CAPACITY);
    let (trigger, listener) = shutdown::channel();
    let task = tokio::spawn(forwarder::run(
        cfg,
        store.clone(),
        tx,
        stats.clone(),
        listener,
    ));
    Started {
        stats,
        inbound,
        trigger,
        task,
    }
}

/// Stops a forwarder started with [`start`]: it must end, with `Ok`,
/// within 6 s.
pub async fn stop(trigger: &ShutdownTrigger, task: JoinHandle<Result<(), MqttError>>) {
    trigger.trigger();
    let result = timeout(Duration::from_secs(6), task)
        .await
        .expect("the forwarder stops within 6 s")
        .unwrap();
    result.expect("the forwarder ends with Ok");
}
