//! Fits the loaded demo configuration to what actually runs on this
//! machine, and changes nothing else: the gateway then runs exactly what
//! `fieldgate check` validated, through the same code as `fieldgate run`.
//!
//! Pure: the orchestrator finds out where things are (ports, pty path,
//! folder) and hands them over in a [`Placement`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::{Config, Connection};

/// Where the parts the demo started are.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The demo's data folder.
    pub data_dir: PathBuf,
    /// The broker's host.
    pub broker_host: String,
    /// The broker's port.
    pub broker_port: u16,
    /// The broker is the embedded one: plain MQTT, no credentials.
    pub embedded_broker: bool,
    /// The HTTP address to use instead of `[http] listen`, when that one
    /// is taken.
    pub http: Option<SocketAddr>,
    /// Simulated TCP (or RTU-over-TCP) devices: name → bound address.
    pub endpoints: BTreeMap<String, SocketAddr>,
    /// Simulated RTU devices: name → path of the pty to open.
    pub serial_ports: BTreeMap<String, String>,
}

/// The configuration to run, and what was left as it was.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The adjusted configuration.
    pub config: Config,
    /// Devices the simulator does not serve (polled as configured; they
    /// will fail unless something real answers there).
    pub not_simulated: Vec<String>,
}

impl Placement {
    /// Applies the placement to `config`.
    pub fn apply(&self, mut config: Config) -> Placed {
        // The data folder and the store: a demo must never write into the
        // data dir of a real gateway on the same machine, and a fresh
        // folder gives the fresh start the scenario's story assumes.
        let store_file = config
            .store
            .path
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("fieldgate.db"));
        config.gateway.data_dir = self.data_dir.clone();
        config.store.path = self.data_dir.join(store_file);

        // The broker: the one the demo started, or --broker. The embedded
        // one speaks plain MQTT without accounts.
        config.mqtt.host = self.broker_host.clone();
        config.mqtt.port = self.broker_port;
        if self.embedded_broker {
            config.mqtt.tls = None;
            config.mqtt.username = None;
            config.mqtt.password = None;
        }

        // The HTTP port, only when the configured one is taken (another
        // gateway, or a second demo): the start would fail otherwise.
        if let Some(addr) = self.http {
            config.http.listen = Some(addr);
        }

        // The simulator's listeners are on free ports (two demos, or a
        // test, can run side by side), known only once they are bound.
        let mut not_simulated = Vec::new();
        for device in &mut config.devices {
            let device = std::sync::Arc::make_mut(device);
            match &mut device.connection {
                Connection::Tcp { host, port } | Connection::RtuOverTcp { host, port } => {
                    match self.endpoints.get(&device.name) {
                        Some(addr) => {
                            *host = addr.ip().to_string();
                            *port = addr.port();
                        }
                        None => not_simulated.push(device.name.clone()),
                    }
                }
                Connection::Rtu { .. } => {
                    if !self.serial_ports.contains_key(&device.name) {
                        not_simulated.push(device.name.clone());
                    }
                }
            }
        }

        // The pty's path is chosen by the kernel when the simulator opens
        // it: each bus gets the pty of the simulated devices on it.
        for bus in &mut config.buses {
            let on_bus = config
                .devices
                .iter()
                .filter(|d| matches!(&d.connection, Connection::Rtu { bus: b } if *b == bus.name));
            if let Some(path) = on_bus.filter_map(|d| self.serial_ports.get(&d.name)).next() {
                bus.port = path.clone();
            }
        }
        Placed {
            config,
            not_simulated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn demo_config() -> Config {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config/demo.toml"));
        match crate::config::load_with_env(path, &[]) {
            Ok(l) => l.config,
            Err(p) => panic!("{p}"),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn only_what_the_environment_forces_changes() {
        let original = demo_config();
        let placement = Placement {
            data_dir: PathBuf::from("/tmp/demo-x"),
            broker_host: "127.0.0.1".into(),
            broker_port: 41883,
            embedded_broker: true,
            http: Some(addr(49464)),
            endpoints: BTreeMap::from([
                ("pump1".into(), addr(40001)),
                ("pump2".into(), addr(40002)),
                ("motor1".into(), addr(40003)),
            ]),
            serial_ports: BTreeMap::from([("fan1".into(), "/dev/pts/9".into())]),
        };
        let placed = placement.apply(original.clone());
        assert!(
            placed.not_simulated.is_empty(),
            "{:?}",
            placed.not_simulated
        );
        let c = placed.config;
        assert_eq!(c.gateway.data_dir, Path::new("/tmp/demo-x"));
        assert_eq!(c.store.path, Path::new("/tmp/demo-x/fieldgate.db"));
        assert_eq!((c.mqtt.host.as_str(), c.mqtt.port), ("127.0.0.1", 41883));
        assert_eq!(c.http.listen, Some(addr(49464)));
        assert_eq!(c.buses[0].port, "/dev/pts/9");
        let endpoint = |name: &str| c.device(name).and_then(|d| d.connection.endpoint());
        assert_eq!(endpoint("pump1").as_deref(), Some("127.0.0.1:40001"));
        assert_eq!(endpoint("motor1").as_deref(), Some("127.0.0.1:40003"));

        // Everything else is as loaded.
        let mut expected = original;
        expected.gateway.data_dir = c.gateway.data_dir.clone();
        expected.store.path = c.store.path.clone();
        expected.mqtt.host = c.mqtt.host.clone();
        expected.mqtt.port = c.mqtt.port;
        expected.http.listen = c.http.listen;
        expected.buses = c.buses.clone();
        for (e, d) in expected.devices.iter_mut().zip(&c.devices) {
            std::sync::Arc::make_mut(e).connection = d.connection.clone();
        }
        assert_eq!(c, expected);
    }

    #[test]
    fn devices_the_simulator_lacks_are_reported_and_kept() {
        let original = demo_config();
        let placement = Placement {
            data_dir: PathBuf::from("/tmp/demo-y"),
            broker_host: "broker.local".into(),
            broker_port: 1883,
            embedded_broker: false,
            http: None,
            endpoints: BTreeMap::from([("pump1".into(), addr(40001))]),
            serial_ports: BTreeMap::new(),
        };
        let placed = placement.apply(original.clone());
        assert_eq!(placed.not_simulated, ["pump2", "motor1", "fan1"]);
        assert_eq!(placed.config.http.listen, original.http.listen);
        assert_eq!(placed.config.buses, original.buses);
        assert_eq!(
            placed.config.device("pump2").map(|d| &d.connection),
            original.device("pump2").map(|d| &d.connection)
        );
    }
}
