//! The MQTT broker of a run.
//!
//! * `embedded` (default for W1, W2, W4, W6): rumqttd, the broker behind
//!   `fieldgate demo`, in a child process of this harness
//!   (`fieldgate-load broker-child PORT`), so that its CPU is counted
//!   apart from the subscriber's and it can be stopped.
//! * `mosquitto`: a Mosquitto of the run's own on a free port, with its
//!   configuration and persistence file in the run's folder. W3 and W5
//!   always use this one: W3 restarts the broker, and only a broker that
//!   keeps the subscriber's session across its restart (Mosquitto with
//!   `persistence true`) can tell a message the gateway lost from one the
//!   broker dropped because no session was there to take it. rumqttd keeps
//!   sessions in memory only.
//! * `HOST:PORT`: a broker that is already running (e.g. the shared
//!   Mosquitto on 127.0.0.1:1883); never stopped. Topics carry the run's
//!   own gateway id, and client ids the harness's pid.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::procs::{self, Proc};

/// Which broker the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerChoice {
    /// rumqttd in a child process.
    Embedded,
    /// Our own Mosquitto.
    Mosquitto,
    /// Somebody else's broker.
    External(String, u16),
}

impl BrokerChoice {
    /// `embedded`, `mosquitto` or `HOST:PORT`.
    pub fn parse(text: &str) -> Result<BrokerChoice> {
        match text {
            "embedded" => Ok(BrokerChoice::Embedded),
            "mosquitto" => Ok(BrokerChoice::Mosquitto),
            other => {
                let (host, port) = other
                    .rsplit_once(':')
                    .context("--broker: embedded, mosquitto or HOST:PORT")?;
                Ok(BrokerChoice::External(
                    host.to_string(),
                    port.parse().context("--broker: bad port")?,
                ))
            }
        }
    }

    /// Name for the results.
    pub fn label(&self) -> String {
        match self {
            BrokerChoice::Embedded => "rumqttd 0.20 (embedded)".into(),
            BrokerChoice::Mosquitto => format!("mosquitto {}", mosquitto_version()),
            BrokerChoice::External(h, p) => format!("external {h}:{p}"),
        }
    }
}

/// A broker a run uses; stopped on drop when the run started it.
pub struct Broker {
    /// The choice it came from.
    pub choice: BrokerChoice,
    /// Where it listens.
    pub host: String,
    /// Its port.
    pub port: u16,
    proc: Option<Proc>,
    conf: Option<PathBuf>,
    log: PathBuf,
}

impl Broker {
    /// Starts it (not for `External`) and waits until it accepts
    /// connections. `persistent`: Mosquitto keeps sessions and queued
    /// messages across its restarts.
    pub fn start(choice: &BrokerChoice, dir: &Path, persistent: bool) -> Result<Broker> {
        let mut broker = match choice {
            BrokerChoice::External(host, port) => Broker {
                choice: choice.clone(),
                host: host.clone(),
                port: *port,
                proc: None,
                conf: None,
                log: dir.join("broker.log"),
            },
            BrokerChoice::Embedded | BrokerChoice::Mosquitto => Broker {
                choice: choice.clone(),
                host: "127.0.0.1".into(),
                port: procs::free_port()?,
                proc: None,
                conf: None,
                log: dir.join("broker.log"),
            },
        };
        if *choice == BrokerChoice::Mosquitto {
            broker.conf = Some(mosquitto_conf(dir, broker.port, persistent)?);
        }
        broker.resume()?;
        Ok(broker)
    }

    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Its process id, when it is our child.
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// Stops it (SIGTERM: Mosquitto then saves its persistence file).
    pub fn stop(&mut self) -> Result<()> {
        match self.proc.take() {
            Some(mut p) => {
                p.stop(Duration::from_secs(10));
                Ok(())
            }
            None if matches!(self.choice, BrokerChoice::External(..)) => {
                bail!("an external broker cannot be stopped by the harness")
            }
            None => Ok(()),
        }
    }

    /// Starts it (again) on the same port and waits until it accepts
    /// connections (bounded: 10 s).
    pub fn resume(&mut self) -> Result<()> {
        let mut command = match (&self.choice, &self.conf) {
            (BrokerChoice::External(..), _) => {
                return procs::wait_port(&self.addr(), Duration::from_secs(5));
            }
            (BrokerChoice::Mosquitto, Some(conf)) => {
                let mut c = Command::new("mosquitto");
                c.arg("-c").arg(conf);
                c
            }
            _ => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("broker-child").arg(self.port.to_string());
                c
            }
        };
        command.env("RUST_LOG", "warn");
        // A restart appends to the same log.
        let log = self.log.with_extension(format!(
            "{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0)
        ));
        self.proc = Some(Proc::spawn("broker", command, &log, false)?);
        procs::wait_port(&self.addr(), Duration::from_secs(10))
    }
}

/// Our Mosquitto's configuration: loopback, anonymous, no limit on the
/// queue of a subscriber that falls behind (the default 1000 QoS 1
/// messages would drop the rest, a loss that is the broker's, not the
/// gateway's), and a 100-message in-flight window towards it.
fn mosquitto_conf(dir: &Path, port: u16, persistent: bool) -> Result<PathBuf> {
    let mq = dir.join("mosquitto");
    std::fs::create_dir_all(&mq)?;
    // Mosquitto started as root drops to its own user: let it write here.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&mq, std::fs::Permissions::from_mode(0o777))?;
    let conf = dir.join("mosquitto.conf");
    let persistence = if persistent {
        format!(
            "persistence true\npersistence_location {}/\nautosave_interval 1\n",
            mq.display()
        )
    } else {
        "persistence false\n".to_string()
    };
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}\
             max_queued_messages 0\nmax_inflight_messages 100\nlog_dest stderr\nlog_type error\nlog_type warning\n"
        ),
    )?;
    Ok(conf)
}

fn mosquitto_version() -> String {
    Command::new("mosquitto")
        .arg("-h")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into())
}

/// `broker-child PORT`: runs rumqttd on 127.0.0.1:PORT until killed. The
/// configuration is the demo's (src/demo/broker.rs), with room for the
/// bigger W2 messages and more connections.
pub fn run_child(port: u16) -> Result<()> {
    use std::collections::HashMap;

    use rumqttd::{ConnectionSettings, RouterConfig, ServerSettings};

    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let server = ServerSettings {
        name: "load".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 5_000,
            max_payload_size: 4 << 20,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        id: 0,
        router: RouterConfig {
            max_connections: 64,
            max_outgoing_packet_count: 200,
            max_segment_size: 4 << 20,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("load".to_string(), server)])),
        ..rumqttd::Config::default()
    };
    // Blocks for the life of the process (rumqttd has no shutdown).
    rumqttd::Broker::new(config)
        .start()
        .map_err(|e| anyhow::anyhow!("rumqttd on {listen}: {e}"))
}
