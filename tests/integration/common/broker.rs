//! An embedded MQTT broker (rumqttd) on a free loopback port.
//!
//! rumqttd has no shutdown and does not report its port: the port is
//! picked by binding `127.0.0.1:0` and dropping the socket, and the broker
//! runs on its own thread for the rest of the test process. Each test
//! starts its own, so no two tests share a broker (or its sessions).

use std::collections::{BTreeSet, HashMap};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Largest payload the broker accepts (the forwarder tests send > 10 KiB).
pub const MAX_PAYLOAD: usize = 4 << 20;

/// Starts a broker and returns its address once it accepts connections.
pub fn start() -> SocketAddr {
    let addr = free_port();
    let config = config(addr);
    std::thread::Builder::new()
        .name(format!("rumqttd-{}", addr.port()))
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(e) = broker.start() {
                eprintln!("rumqttd on {addr} stopped: {e}");
            }
        })
        .expect("spawn the broker thread");
    wait_listening(addr);
    addr
}

/// A free loopback port (bound, then released), never one handed out
/// before in this process: the tests run side by side, and two of them
/// must not be given the same port between its release and its use.
pub fn free_port() -> SocketAddr {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.insert(addr.port()) {
            return addr;
        }
    }
}

/// Blocks until something accepts TCP connections on `addr` (at most 10 s).
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on {addr} after 10 s");
}

/// A complete rumqttd config: `Config::default()` has zero router limits.
fn config(addr: SocketAddr) -> Config {
    let server = ServerSettings {
        name: format!("v4-{}", addr.port()),
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
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 16 << 20,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}
