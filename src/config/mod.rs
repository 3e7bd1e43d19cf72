//! Configuration: load, resolve and validate `fieldgate.toml`.
//!
//! # Layers
//!
//! figment merges built-in defaults ← the TOML file ← `FIELDGATE_`
//! environment variables (nested keys joined with `__`, e.g.
//! `FIELDGATE_MQTT__HOST`). The merged values are read into the
//! [`raw`] structs as the user wrote them, then [`load()`] turns them into a
//! [`Config`] with `Duration`s, 0-based addresses, tags read from CSV
//! files and secrets read from their files.
//!
//! # Steps
//!
//! Loading (`load.rs`: the file, the lines of its keys, the environment)
//! is followed by two steps that never call each other. `resolve/` reads
//! each section and element on its own into typed values and reports what
//! is wrong within it; `validate.rs` then takes the resolved result
//! (`resolved.rs`) and checks what spans elements: unique names, and the
//! buses and tags that devices, rules and meters refer to. `report.rs`
//! gives both the file, line and field of each problem.
//!
//! # Problems
//!
//! Loading never stops at the first mistake. Every problem is collected
//! with its file, line and field path, so `fieldgate check` (and a reload)
//! can report all of them at once. Warnings are kept beside the config.

mod address;
mod bridge;
mod cmms;
mod csv_devices;
mod csv_file;
mod csv_tags;
pub(crate) mod diff;
mod expand;
mod load;
mod problem;
pub(crate) mod raw;
mod report;
mod resolve;
mod resolved;
mod secret;
mod source_map;
pub(crate) mod units;
mod validate;

use std::borrow::Borrow;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use address::{RawAddress, Resolved as ResolvedAddress, resolve as resolve_address};
pub use bridge::{LoadedBridge, load_bridge, load_bridge_with_env};
pub use cmms::{
    BridgeConfig, BridgeSection, CmmsConfig, CmmsKind, InboundAuth, MaintainXConfig, MaximoConfig,
    UpKeepConfig, WEBHOOK_PLACEHOLDERS, WebhookAuth, WebhookConfig,
};
pub use expand::{UnknownDevice, expand};
pub use problem::{Origin, Problem, Problems, Severity};
pub use secret::Secret;
pub use source_map::SourceMap;
pub use units::format_size;

use crate::expr::ExprType;
use crate::tag::{Tag, WordOrder};

/// Where `run` and `check` look when `-c` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/fieldgate/fieldgate.toml";

/// Prefix of the environment variables that override the file.
pub const ENV_PREFIX: &str = "FIELDGATE_";

/// The first level of every Sparkplug B 3.0 topic. A JSON topic tree may
/// not start with it (`[mqtt] topic_prefix`): the two would mix on the
/// broker, and the outbox tells its two lanes apart by this level.
pub const SPARKPLUG_NAMESPACE: &str = "spBv1.0";

/// The longest Sparkplug id `[sparkplug]` accepts (`group_id`,
/// `edge_node_id`, `primary_host_id`), in characters: each id is a level
/// of every topic the edge node publishes or watches, so it travels in
/// every message and in every subscription of a host application.
pub const SPARKPLUG_ID_MAX: usize = 64;

/// The most registers one write (FC16) takes: the request's 253-byte PDU
/// holds the function code, the address, the count, the byte count and
/// 123 registers. `check` refuses a writable string longer than this,
/// since a tag is never written in parts.
pub const MAX_WRITE_REGISTERS: u16 = 123;

/// A loaded, valid configuration and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings (the config is usable anyway).
    pub warnings: Vec<Problem>,
}

/// Loads, resolves and validates a configuration file.
///
/// On failure the [`Problems`] hold every error and warning found.
pub fn load(path: &Path) -> Result<Loaded, Problems> {
    load::load(path, &std::env::vars().collect::<Vec<_>>())
}

/// Like [`load()`], with the environment given explicitly (tests).
pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Loaded, Problems> {
    load::load(path, env)
}

/// The kind of value the tag `device.tag` among `devices` gives an `expr`
/// condition, `None` when there is no such tag. `fieldgate check` and the
/// rules engine both compile expressions with it, so they agree.
pub fn expr_type<D: Borrow<Device>>(devices: &[D], full: &str) -> Option<ExprType> {
    let (dev, tag) = full.split_once('.')?;
    let device = devices.iter().map(Borrow::borrow).find(|d| d.name == dev)?;
    device.tag(tag).map(|t| ExprType::of(t.data_type))
}

/// The configuration the program runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 (hex) of the file and every CSV it includes: the config
    /// hash published in the status message.
    pub hash: String,
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[alarms]`.
    pub alarms: AlarmConfig,
    /// `[workorders]`.
    pub workorders: WorkOrderConfig,
    /// `[[buses]]`.
    pub buses: Vec<Bus>,
    /// `[[devices]]`, shared: the pollers, the rules and the metrics hold
    /// the same copy (a big tag map costs its memory once; change one with
    /// `Arc::make_mut`).
    pub devices: Vec<Arc<Device>>,
    /// `[[rules]]`.
    pub rules: Vec<Rule>,
    /// `[[meters]]`.
    pub meters: Vec<Meter>,
    /// `[[cmms]]`: the REST connectors.
    pub cmms: Vec<CmmsConfig>,
    /// `[sparkplug]`: the Sparkplug B edge node, when the section is there.
    pub sparkplug: Option<SparkplugConfig>,
    /// `[writes]`: write-back settings (writes happen only to tags made
    /// writable).
    pub writes: WritesConfig,
}

impl Config {
    /// The bus a device is on, if it is an RTU device.
    pub fn bus(&self, name: &str) -> Option<&Bus> {
        self.buses.iter().find(|b| b.name == name)
    }

    /// A device by name.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices.iter().find(|d| d.name == name).map(|d| &**d)
    }

    /// Writable tags, and the devices that have at least one.
    pub fn writable(&self) -> (usize, usize) {
        self.devices
            .iter()
            .map(|d| d.tags.iter().filter(|t| t.write.is_some()).count())
            .filter(|n| *n > 0)
            .fold((0, 0), |(tags, devices), n| (tags + n, devices + 1))
    }

    /// One line for `fieldgate check`'s summary when any tag is writable:
    /// `3 writable tags on 2 devices (max_age 10s)`, and the devices whose
    /// writes may go between the requests of a poll. `None` when nothing
    /// is writable.
    pub fn writes_summary(&self) -> Option<String> {
        let (tags, devices) = self.writable();
        if tags == 0 {
            return None;
        }
        let s = |n: usize| if n == 1 { "" } else { "s" };
        let mut out = format!(
            "{tags} writable tag{} on {devices} device{} (max_age {})",
            s(tags),
            s(devices),
            humantime::format_duration(self.writes.max_age)
        );
        let during: Vec<&str> = self
            .devices
            .iter()
            .filter(|d| d.write_during_poll && d.tags.iter().any(|t| t.write.is_some()))
            .map(|d| d.name.as_str())
            .collect();
        if !during.is_empty() {
            out.push_str(&format!("; during polls on {}", during.join(", ")));
        }
        Some(out)
    }

    /// The short hash shown to people (first 12 hex digits).
    pub fn short_hash(&self) -> &str {
        &self.hash[..self.hash.len().min(12)]
    }
}

/// `[gateway]`: who this gateway is.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// Gateway id, used in topics and work-order keys.
    pub id: String,
    /// Site id, used in topics and work-order keys.
    pub site: String,
    /// Where the gateway is (free text, copied into work orders).
    pub location: Option<String>,
    /// Folder for the store and other state.
    pub data_dir: PathBuf,
    /// How long a graceful shutdown may take before it is forced.
    pub shutdown_timeout: Duration,
}

/// MQTT quality of service for published messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos {
    /// At least once: the broker acknowledges with PUBACK.
    AtLeastOnce,
    /// Exactly once: the PUBREC/PUBREL/PUBCOMP handshake.
    ExactlyOnce,
}

/// `[mqtt.tls]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    /// CA certificate(s) that sign the broker's certificate (PEM). `None`
    /// uses the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// Client certificate for mutual TLS (PEM).
    pub cert_file: Option<PathBuf>,
    /// Client private key for mutual TLS (PEM), read from `key_file`.
    pub key: Option<Secret>,
}

/// `[mqtt]`: the northbound broker.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT client id (persistent sessions are keyed by it).
    pub client_id: String,
    /// User name.
    pub username: Option<String>,
    /// Password, from `password` or `password_file`.
    pub password: Option<Secret>,
    /// TLS, when enabled.
    pub tls: Option<TlsConfig>,
    /// First topic level (default `fieldgate`).
    pub topic_prefix: String,
    /// QoS of published messages.
    pub qos: Qos,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// Messages in flight at once.
    pub max_inflight: u16,
    /// Share of the in-flight window that serves the newest data first
    /// while a backlog drains (0.0–1.0).
    pub live_share: f64,
    /// Also publish one message per tag on `.../data/{device}/{tag}`.
    pub per_tag_topics: bool,
    /// Largest MQTT packet, each way.
    pub max_packet_size: u64,
}

/// How hard the store works to survive a power cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync every group commit: survives power loss.
    Full,
    /// fsync at checkpoints: survives a crash of fieldgate, not of the OS.
    Normal,
}

/// `[store]`: the SQLite outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    /// Database file.
    pub path: PathBuf,
    /// fsync policy.
    pub durability: Durability,
    /// Size bound of the database; oldest readings are evicted beyond it.
    pub max_bytes: u64,
    /// Age bound; older readings are evicted.
    pub max_age: Duration,
    /// Longest time a write waits for its group commit.
    pub flush_interval: Duration,
}

/// `[sparkplug]`: the Sparkplug B 3.0 edge node beside (or instead of the
/// readings of) the JSON topic tree. It uses `[mqtt]`'s broker, TLS and
/// credentials on a connection of its own (its Last Will is the NDEATH).
/// The section's presence turns it on.
///
/// The three ids are non-empty, at most [`SPARKPLUG_ID_MAX`] characters,
/// without `+`, `#` or `/` (Sparkplug 3.0 forbids them: they are MQTT's
/// wildcards and level separator), control characters, or whitespace at
/// either end. Device and tag names become device ids and metric names;
/// their own rules (letters, digits, `_`, `-`) already keep them valid.
#[derive(Debug, Clone, PartialEq)]
pub struct SparkplugConfig {
    /// `group_id`: the Sparkplug group (the second level of every topic).
    pub group_id: String,
    /// `edge_node_id` (default: `[gateway] id`).
    pub edge_node_id: String,
    /// `primary_host_id`: wait for this host's `STATE` before births, and
    /// buffer while it is offline. `None`: publish whenever connected.
    pub primary_host_id: Option<String>,
    /// `json_readings` (default true): readings also go to the JSON tree.
    /// Status, alarms, work orders and meters always do (the CMMS reads
    /// them there), as do the inbound topics.
    pub json_readings: bool,
    /// `client_id` of the edge node's MQTT connection (default:
    /// `[mqtt] client_id` followed by `-spb`; never `[mqtt] client_id`
    /// itself, since a broker keeps one connection per client id).
    pub client_id: String,
}

impl SparkplugConfig {
    /// One line for `fieldgate check`'s summary: `group plant-a, edge
    /// node gw1, primary host scada; readings on Sparkplug and JSON`.
    pub fn summary(&self) -> String {
        let host = match &self.primary_host_id {
            Some(h) => format!("primary host {h}"),
            None => "no primary host".to_owned(),
        };
        let readings = if self.json_readings {
            "Sparkplug and JSON"
        } else {
            "Sparkplug only"
        };
        format!(
            "group {}, edge node {}, {host}; readings on {readings}",
            self.group_id, self.edge_node_id
        )
    }
}

/// `[http]`: health, metrics and the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Listen address; `None` disables the server.
    pub listen: Option<SocketAddr>,
    /// Whether ack/shelve may be done over HTTP (with the token).
    pub allow_actions: bool,
    /// Bearer token for actions, read from `token_file`.
    pub token: Option<Secret>,
}

/// `[alarms]`: chattering detection.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmConfig {
    /// Activations within `chatter_window` that flag a rule as chattering.
    pub chatter_count: u32,
    /// Window for counting activations.
    pub chatter_window: Duration,
    /// Quiet time after which a chattering rule may raise work orders again.
    pub chatter_quiet: Duration,
}

/// `[workorders]`: the flood guard.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrderConfig {
    /// More work orders than this within `flood_window` is a flood.
    pub flood_limit: u32,
    /// Window of the flood guard.
    pub flood_window: Duration,
}

/// Serial parity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    /// No parity bit.
    None,
    /// Even parity (the Modbus default).
    Even,
    /// Odd parity.
    Odd,
}

/// `[[buses]]`: one RS-485 line shared by RTU devices.
#[derive(Debug, Clone, PartialEq)]
pub struct Bus {
    /// Bus name, referenced by devices.
    pub name: String,
    /// Serial port (`/dev/ttyUSB0`).
    pub port: String,
    /// Baud rate.
    pub baud: u32,
    /// Data bits (Modbus RTU uses 8).
    pub data_bits: u8,
    /// Parity.
    pub parity: Parity,
    /// Stop bits (1 or 2).
    pub stop_bits: u8,
    /// Silence between frames; `None` = the standard's 3.5 characters
    /// (1.75 ms above 19200 baud).
    pub frame_gap: Option<Duration>,
}

impl Bus {
    /// The inter-frame silence: 3.5 character times (11 bits each) at
    /// this baud rate, fixed at 1.75 ms above 19200 baud as the Modbus
    /// serial line specification requires, unless overridden.
    pub fn frame_gap(&self) -> Duration {
        if let Some(gap) = self.frame_gap {
            return gap;
        }
        if self.baud > 19_200 {
            Duration::from_micros(1_750)
        } else {
            Duration::from_secs_f64(3.5 * 11.0 / f64::from(self.baud.max(1)))
        }
    }
}

/// How a device is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// Modbus TCP.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port (default 502).
        port: u16,
    },
    /// Modbus RTU on a named serial bus.
    Rtu {
        /// The bus's name.
        bus: String,
    },
    /// RTU framing on a TCP socket (serial-to-Ethernet converters).
    RtuOverTcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
}

impl Connection {
    /// `host:port` for the TCP kinds.
    pub fn endpoint(&self) -> Option<String> {
        match self {
            Connection::Tcp { host, port } | Connection::RtuOverTcp { host, port } => {
                Some(if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                })
            }
            Connection::Rtu { .. } => None,
        }
    }
}

/// `[[devices]]`: one Modbus device (one unit id).
#[derive(Debug, Clone, PartialEq)]
pub struct Device {
    /// Device name, used in topics.
    pub name: String,
    /// How it is reached.
    pub connection: Connection,
    /// Modbus unit id (slave address).
    pub unit: u8,
    /// Time between polls.
    pub poll_interval: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries of a failed request before the poll counts as failed.
    pub retries: u32,
    /// Largest register read (FC3/FC4), 1–125.
    pub max_registers: u16,
    /// Largest bit read (FC1/FC2), 1–2000.
    pub max_bits: u16,
    /// Largest hole filled to merge two reads.
    pub max_gap: u16,
    /// Default word order of the device's tags.
    pub word_order: WordOrder,
    /// Heartbeat: a tag is published at least this often.
    pub max_silence: Duration,
    /// How often addresses refused with exception 01/02/03 are asked again.
    pub reprobe: Duration,
    /// Asset id in the maintenance system.
    pub asset: Option<String>,
    /// Where the device is (copied into work orders).
    pub location: Option<String>,
    /// The device's tags.
    pub tags: Vec<Tag>,
    /// The CSV file the tags came from, if any.
    pub tags_file: Option<PathBuf>,
    /// `write_functions`: the Modbus function codes the device accepts for
    /// writes (some take only FC16, even for one register).
    pub write_functions: WriteFunctions,
    /// `write_during_poll` (default false): a write may go between the
    /// requests of a poll already under way rather than after it.
    pub write_during_poll: bool,
    /// The `[[templates]]` element the device was made from, if any: its
    /// tags, settings, rules and meters are already in this device and
    /// in the config's rules and meters; the name is kept for people.
    pub template: Option<String>,
}

/// The write function codes a device accepts: FC5 (one coil), FC6 (one
/// register), FC15 (coils), FC16 (registers). All four by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WriteFunctions {
    /// FC5, write single coil.
    pub fc5: bool,
    /// FC6, write single register.
    pub fc6: bool,
    /// FC15, write multiple coils.
    pub fc15: bool,
    /// FC16, write multiple registers.
    pub fc16: bool,
}

impl Default for WriteFunctions {
    fn default() -> WriteFunctions {
        WriteFunctions {
            fc5: true,
            fc6: true,
            fc15: true,
            fc16: true,
        }
    }
}

impl WriteFunctions {
    /// True when function code `code` is accepted.
    pub fn accepts(&self, code: u8) -> bool {
        match code {
            5 => self.fc5,
            6 => self.fc6,
            15 => self.fc15,
            16 => self.fc16,
            _ => false,
        }
    }

    /// The function code a write to `tag` goes with, `None` when the
    /// device accepts none that suits it: FC5 (else FC15) for a coil; FC6
    /// (else FC16) for one register, a bit of one included (the register
    /// is read, changed and written back whole); FC16 for more. `check`
    /// refuses a writable tag without one, and the write plan uses the
    /// same choice.
    pub fn for_tag(&self, tag: &Tag) -> Option<u8> {
        let (single, multiple) = if tag.area == crate::tag::Area::Coil {
            (Some(5), 15)
        } else if tag.width() == 1 {
            (Some(6), 16)
        } else {
            (None, 16)
        };
        single
            .filter(|c| self.accepts(*c))
            .or(Some(multiple).filter(|c| self.accepts(*c)))
    }

    /// The accepted codes, lowest first.
    pub fn codes(&self) -> Vec<u8> {
        [5, 6, 15, 16]
            .into_iter()
            .filter(|c| self.accepts(*c))
            .collect()
    }
}

/// `[writes]`: settings of write-back shared by every writable tag.
#[derive(Debug, Clone, PartialEq)]
pub struct WritesConfig {
    /// `max_age` (default 10 s): a command older than this, by its `ts`
    /// or by its arrival while the gateway was disconnected, is refused as
    /// stale, so a queued command does not fire an hour late.
    pub max_age: Duration,
}

impl Default for WritesConfig {
    fn default() -> WritesConfig {
        WritesConfig {
            max_age: Duration::from_secs(10),
        }
    }
}

/// Device defaults, shared by the config loader and [`Device::new`].
pub mod device_defaults {
    use std::time::Duration;

    /// `poll_interval`.
    pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
    /// `timeout` over TCP.
    pub const TIMEOUT_TCP: Duration = Duration::from_secs(1);
    /// `timeout` on serial lines (RTU and RTU over TCP).
    pub const TIMEOUT_SERIAL: Duration = Duration::from_millis(500);
    /// `retries`.
    pub const RETRIES: u32 = 1;
    /// `max_registers`: the protocol's limit for FC3/FC4.
    pub const MAX_REGISTERS: u16 = 125;
    /// `max_bits`: the protocol's limit for FC1/FC2.
    pub const MAX_BITS: u16 = 2000;
    /// `max_gap`.
    pub const MAX_GAP: u16 = 10;
    /// `max_silence`.
    pub const MAX_SILENCE: Duration = Duration::from_secs(60);
    /// `reprobe`.
    pub const REPROBE: Duration = Duration::from_secs(300);
}

impl Device {
    /// A device with every setting at its default (unit 1), for code that
    /// builds devices rather than loading them: tests, benchmarks, tools.
    pub fn new(name: impl Into<String>, connection: Connection, tags: Vec<Tag>) -> Device {
        use device_defaults as d;
        let timeout = match connection {
            Connection::Tcp { .. } => d::TIMEOUT_TCP,
            _ => d::TIMEOUT_SERIAL,
        };
        Device {
            name: name.into(),
            connection,
            unit: 1,
            poll_interval: d::POLL_INTERVAL,
            timeout,
            retries: d::RETRIES,
            max_registers: d::MAX_REGISTERS,
            max_bits: d::MAX_BITS,
            max_gap: d::MAX_GAP,
            word_order: WordOrder::Abcd,
            max_silence: d::MAX_SILENCE,
            reprobe: d::REPROBE,
            asset: None,
            location: None,
            tags,
            tags_file: None,
            write_functions: WriteFunctions::default(),
            write_during_poll: false,
            template: None,
        }
    }

    /// A tag by short name.
    pub fn tag(&self, name: &str) -> Option<&Tag> {
        self.tags.iter().find(|t| t.name == name)
    }
}

/// Alarm priority (ISA-18.2), also the work order's priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Priority {
    /// Config and payload name.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
            Priority::Critical => "critical",
        }
    }
}

/// The state an `equals` rule compares a tag with.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    /// A bit.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string.
    Text(String),
}

/// What makes a rule's alarm active. Tag names are full (`device.tag`).
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Value above `limit`.
    Above {
        /// Full tag name.
        tag: String,
        /// Limit.
        limit: f64,
    },
    /// Value below `limit`.
    Below {
        /// Full tag name.
        tag: String,
        /// Limit.
        limit: f64,
    },
    /// Value outside `[low, high]`.
    Outside {
        /// Full tag name.
        tag: String,
        /// Lower limit.
        low: f64,
        /// Upper limit.
        high: f64,
    },
    /// Rate of change beyond `limit` units per `per`, measured over `window`.
    Rate {
        /// Full tag name.
        tag: String,
        /// Units per `per` (absolute value is compared).
        limit: f64,
        /// The time unit of the rate.
        per: Duration,
        /// How far back the rate is measured.
        window: Duration,
    },
    /// No good reading for `after`.
    Stale {
        /// Full tag name.
        tag: String,
        /// How long without a good reading.
        after: Duration,
    },
    /// Value equals a state (fault bit set, mode = 3).
    Equals {
        /// Full tag name.
        tag: String,
        /// The state.
        value: State,
    },
    /// A boolean expression over several tags.
    Expr {
        /// The expression text.
        expr: String,
        /// Full names of the tags it reads.
        tags: Vec<String>,
    },
}

impl Condition {
    /// The full names of the tags it reads.
    pub fn tags(&self) -> Vec<&str> {
        match self {
            Condition::Above { tag, .. }
            | Condition::Below { tag, .. }
            | Condition::Outside { tag, .. }
            | Condition::Rate { tag, .. }
            | Condition::Stale { tag, .. }
            | Condition::Equals { tag, .. } => vec![tag.as_str()],
            Condition::Expr { tags, .. } => tags.iter().map(String::as_str).collect(),
        }
    }

    /// The condition's config name.
    pub fn kind(&self) -> &'static str {
        match self {
            Condition::Above { .. } => "above",
            Condition::Below { .. } => "below",
            Condition::Outside { .. } => "outside",
            Condition::Rate { .. } => "rate",
            Condition::Stale { .. } => "stale",
            Condition::Equals { .. } => "equals",
            Condition::Expr { .. } => "expr",
        }
    }
}

/// A work-order template.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkOrderTemplate {
    /// Whether activations raise work orders.
    pub enabled: bool,
    /// Title, with `{placeholders}`.
    pub title: Option<String>,
    /// Description, with `{placeholders}`.
    pub description: Option<String>,
    /// The CMMS problem code.
    pub problem_code: Option<String>,
    /// SOP / procedure reference.
    pub procedure: Option<String>,
    /// Full names of tags whose values are copied into the work order.
    pub snapshot: Vec<String>,
}

/// Placeholders a work-order title or description may use.
pub const PLACEHOLDERS: &[&str] = &[
    "rule",
    "tag",
    "device",
    "value",
    "limit",
    "unit",
    "condition",
    "since",
    "asset",
    "location",
    "site",
    "gateway",
    "priority",
    "problem_code",
    "procedure",
    "meter",
    "occurrences",
];

/// `[[rules]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Rule name, used in topics.
    pub name: String,
    /// The condition.
    pub condition: Condition,
    /// Hysteresis for the return to normal, in engineering units.
    pub deadband: f64,
    /// The condition must hold this long before the alarm activates.
    pub on_delay: Duration,
    /// The condition must be clear this long before the alarm returns.
    pub off_delay: Duration,
    /// Priority of the alarm and its work orders.
    pub priority: Priority,
    /// Asset concerned (defaults to the tag's, then the device's).
    pub asset: Option<String>,
    /// Location (defaults to the device's, then the gateway's).
    pub location: Option<String>,
    /// The work-order template.
    pub workorder: WorkOrderTemplate,
}

/// What a meter counts.
#[derive(Debug, Clone, PartialEq)]
pub enum MeterKind {
    /// Running time while a boolean tag is true; a work order every `every`.
    Runtime {
        /// Interval between preventive work orders.
        every: Duration,
    },
    /// Rising edges of a boolean tag; a work order every `every` edges.
    Count {
        /// Interval between preventive work orders.
        every: u64,
    },
}

/// `[[meters]]`: preventive maintenance by runtime or count.
#[derive(Debug, Clone, PartialEq)]
pub struct Meter {
    /// Meter name, used in topics.
    pub name: String,
    /// Full name of the boolean tag it watches.
    pub tag: String,
    /// Runtime or count, with the interval.
    pub kind: MeterKind,
    /// Priority of its work orders.
    pub priority: Priority,
    /// Asset concerned.
    pub asset: Option<String>,
    /// Location.
    pub location: Option<String>,
    /// The work-order template.
    pub workorder: WorkOrderTemplate,
}
