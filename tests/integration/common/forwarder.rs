//! The forwarder's settings for tests that run it alone, against an
//! outbox in a temporary folder and a broker on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use fieldgate::config::{Durability, MqttConfig, Qos, StoreConfig};

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
