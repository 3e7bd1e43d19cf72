//! The embedded MQTT broker (rumqttd) the demo starts when it is not given
//! `--broker`.
//!
//! rumqttd's `Broker::start` blocks and has no shutdown API, so
//! it runs on a thread of its own that ends with the process: the demo
//! stops everything else in order and then exits. It does not report the
//! port it bound either, so the port is chosen first: 1883, the MQTT port,
//! when it is free, so that `mosquitto_sub -h 127.0.0.1` works as it is;
//! otherwise a free port, which the banner names.

use std::net::SocketAddr;
#[cfg(feature = "embedded-broker")]
use std::time::Duration;

use super::DemoError;

/// The port tried first.
pub const MQTT_PORT: u16 = 1883;

/// How long the broker may take to accept connections.
#[cfg(feature = "embedded-broker")]
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest MQTT payload the broker takes; the gateway's packets are
/// bounded by its `[mqtt] max_packet_size` (1 MiB by default), and the
/// demo's are a few KiB.
#[cfg(feature = "embedded-broker")]
const MAX_PAYLOAD: usize = 1 << 20;

/// A broker running in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedBroker {
    /// Where it listens (loopback).
    pub addr: SocketAddr,
    /// 1883 was taken, so it took another port.
    pub moved: bool,
}

/// Starts the broker on 127.0.0.1: on `port` when given (an error if it
/// is taken), else on 1883 or, when that is taken, a free port. Returns
/// once it accepts connections.
#[cfg(feature = "embedded-broker")]
pub async fn start(port: Option<u16>) -> Result<EmbeddedBroker, DemoError> {
    let (addr, moved) = choose(port)?;
    let (failed_tx, failed_rx) = std::sync::mpsc::channel::<String>();
    let config = broker_config(addr);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            // Returns only when the broker cannot run (port taken between
            // the check and the bind).
            if let Err(e) = broker.start() {
                let _ = failed_tx.send(e.to_string());
            }
        })
        .map_err(|e| DemoError::Broker(format!("cannot start its thread: {e}")))?;
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(reason) = failed_rx.try_recv() {
            return Err(DemoError::Broker(format!(
                "cannot listen on {addr}: {reason}"
            )));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(EmbeddedBroker { addr, moved });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(DemoError::Broker(format!(
                "not accepting connections on {addr} after {START_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Without the `embedded-broker` feature there is nothing to start.
#[cfg(not(feature = "embedded-broker"))]
pub async fn start(_port: Option<u16>) -> Result<EmbeddedBroker, DemoError> {
    Err(DemoError::NoEmbeddedBroker)
}

/// The address to listen on and whether 1883 was passed over.
#[cfg(feature = "embedded-broker")]
fn choose(port: Option<u16>) -> Result<(SocketAddr, bool), DemoError> {
    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    // Bind and release: rumqttd binds itself and cannot be handed a socket.
    let probe = |port| std::net::TcpListener::bind(loopback(port)).and_then(|l| l.local_addr());
    match port {
        Some(p) => probe(p)
            .map(|a| (a, false))
            .map_err(|e| DemoError::Broker(format!("port {p} is not free: {e}"))),
        None => match probe(MQTT_PORT) {
            Ok(a) => Ok((a, false)),
            Err(_) => probe(0)
                .map(|a| (a, true))
                .map_err(|e| DemoError::Broker(format!("no free port: {e}"))),
        },
    }
}

/// A complete rumqttd configuration (its `Config::default()` has zero
/// router limits and no listener).
#[cfg(feature = "embedded-broker")]
fn broker_config(addr: SocketAddr) -> rumqttd::Config {
    use std::collections::HashMap;

    use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};

    let server = ServerSettings {
        name: "demo".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5_000,
            max_payload_size: MAX_PAYLOAD,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            // The router keeps each topic's recent messages in memory
            // segments: 4 × 1 MiB bounds what a long demo holds per topic.
            max_segment_size: MAX_PAYLOAD,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("demo".to_string(), server)])),
        ..rumqttd::Config::default()
    }
}

/// `HOST:PORT` (a `[v6]:port` too) of `--broker`.
pub fn parse_address(text: &str) -> Result<(String, u16), DemoError> {
    let bad = || DemoError::BrokerAddress(text.to_string());
    let (host, port) = text.trim().rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad());
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_addresses() {
        assert_eq!(
            parse_address("127.0.0.1:1883").ok(),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            parse_address("broker.plant.local:8883").ok(),
            Some(("broker.plant.local".into(), 8883))
        );
        assert_eq!(parse_address("[::1]:1883").ok(), Some(("::1".into(), 1883)));
        for bad in ["broker", ":1883", "host:", "host:0", "host:99999"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[cfg(feature = "embedded-broker")]
    #[test]
    fn a_taken_port_is_refused_when_forced_and_avoided_otherwise() {
        let Ok(taken) = std::net::TcpListener::bind("127.0.0.1:0") else {
            return;
        };
        let Ok(port) = taken.local_addr().map(|a| a.port()) else {
            return;
        };
        assert!(choose(Some(port)).is_err());
        match choose(None) {
            Ok((addr, moved)) => assert_eq!(moved, addr.port() != MQTT_PORT),
            Err(e) => panic!("{e}"),
        }
    }
}
