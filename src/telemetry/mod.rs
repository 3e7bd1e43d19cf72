//! Telemetry: what the gateway knows about itself, for `/metrics` and
//! `/api/status` (`docs/metrics.md`).
//!
//! # Layout
//!
//! * this file: the [`Telemetry`] registry, built once from the config and
//!   shared by `Arc`, and the [`Snapshot`] it produces;
//! * [`seen`]: what the pipeline last saw of each device (last readings
//!   and trend);
//! * [`rules_view`]: the copy of the rules state the pipeline publishes;
//! * [`trend`]: each tag's last minutes, for the status page's sparklines;
//! * [`process`]: RSS, CPU time, file descriptors and threads from `/proc`;
//! * [`cmms_view`]: the CMMS connectors with their queues and parked
//!   deliveries;
//! * [`sparkplug_view`]: the Sparkplug edge node, when `[sparkplug]` is on;
//! * [`prometheus`]: the text exposition, a pure function of a snapshot.
//!
//! # Who writes what
//!
//! | figure | written by | how |
//! |---|---|---|
//! | device and link figures | the poller of the link | atomics ([`Probes`], owned by `modbus`) |
//! | last readings and trend per device | the pipeline task | [`Telemetry::keep_last`] |
//! | rules view, pipeline heartbeat | the pipeline task | [`Telemetry::publish_rules`] (a `watch`) |
//! | MQTT figures | the forwarder | [`ForwarderStats`] atomics |
//! | outbox figures | the store thread | asked for at each scrape |
//! | CMMS connector figures | each connector's delivery task | [`ConnectorStats`] atomics |
//! | CMMS queues and parked deliveries | the store thread | asked for at each scrape, when connectors are configured |
//! | Sparkplug edge node figures | the edge node's task | [`EdgeNodeStats`] atomics |
//! | Sparkplug rows waiting | the store thread | with the outbox figures, at each scrape |
//!
//! Readers (the HTTP handlers) never block a writer for longer than a copy.

pub mod cmms_view;
pub(crate) mod process;
pub mod prometheus;
mod rules_view;
mod seen;
pub mod sparkplug_view;
pub(crate) mod trend;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

pub use cmms_view::{ConnectorSnapshot, ParkedView, ParkedWorkOrder, Queue, SinkQueues};
pub use process::ProcessStats;
pub use rules_view::{AlarmView, MeterView, RulesView, WorkOrderView};
pub use seen::DeviceSeen;
pub use sparkplug_view::SparkplugSnapshot;
pub use trend::{TREND_POINTS, TREND_SPAN, TREND_STEP, Trend};

use crate::cmms::ConnectorStats;
use crate::command::WriteStats;
use crate::config::{Config, SparkplugConfig};
use crate::heartbeat::Heartbeat;
use crate::modbus::{DeviceMetrics, DeviceSnapshot, LinkSnapshot, Probes};
use crate::mqtt::forwarder::ForwarderStats;
use crate::mqtt::sparkplug::EdgeNodeStats;
use crate::reading::Batch;
use crate::store::Stats;

/// Who this gateway is, for `fieldgate_build_info` and `/api/status`.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayInfo {
    /// `[gateway] id`.
    pub id: String,
    /// `[gateway] site`.
    pub site: String,
    /// fieldgate's version.
    pub version: &'static str,
    /// SHA-256 (hex) of the config and its tag maps.
    pub config_hash: String,
    /// When the process started.
    pub started: SystemTime,
    /// When the process started, by the monotonic clock: uptime is
    /// measured from it, so a step of the wall clock does not change it.
    pub booted: Instant,
}

/// The metrics registry of one running config.
#[derive(Debug)]
pub struct Telemetry {
    info: GatewayInfo,
    /// What the pollers record (read only here).
    probes: Probes,
    /// What the pipeline last saw of every device, in config order.
    seen: Vec<Arc<DeviceSeen>>,
    /// Device name → index in `seen`, for [`keep_last`](Self::keep_last).
    by_name: HashMap<String, usize>,
    mqtt: Arc<ForwarderStats>,
    /// The Sparkplug edge node's figures (all zero when it is off).
    sparkplug: Arc<EdgeNodeStats>,
    /// `[sparkplug]` of the running config: whether the edge node is
    /// shown, and who it is.
    sparkplug_config: Option<SparkplugConfig>,
    /// Each CMMS connector's figures, in config order (written by its
    /// delivery task).
    cmms: Vec<(String, Arc<ConnectorStats>)>,
    /// Each connector's kind (`webhook`, `maximo`…), in the same order.
    cmms_kinds: Vec<&'static str>,
    /// The latest rules view. A `watch` rather than a lock: the pipeline
    /// replaces it without waiting for readers, and a later status page can
    /// subscribe to changes.
    /// Shared with the registries of later configs (reloads), so that
    /// subscribers keep their channel.
    rules: Arc<watch::Sender<Arc<RulesView>>>,
    /// The pipeline's heartbeat (also fed to the systemd watchdog).
    heartbeat: Heartbeat,
    /// The write desk's counters (carried over reloads).
    writes: Arc<WriteStats>,
    /// Writable tags in the running config.
    writable_tags: usize,
}

/// Everything `/metrics` and `/api/status` show, taken at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Who this gateway is.
    pub info: GatewayInfo,
    /// When the snapshot was taken.
    pub at: SystemTime,
    /// Every device, in config order.
    pub devices: Vec<DeviceSnapshot>,
    /// Every link, in the pollers' order.
    pub links: Vec<LinkSnapshot>,
    /// The outbox's figures; `None` when the store did not answer.
    pub store: Option<Stats>,
    /// The forwarder's figures.
    pub mqtt: MqttSnapshot,
    /// The rules stage's state.
    pub rules: Arc<RulesView>,
    /// Readings the deadband filter kept back, per device in config order.
    pub suppressed: Vec<u64>,
    /// Every named event's count ([`crate::events`]).
    pub events: Vec<(&'static str, u64)>,
    /// The process's resources (fields `None` where unknown).
    pub process: ProcessStats,
    /// Every CMMS connector, in config order.
    pub cmms: Vec<ConnectorSnapshot>,
    /// The Sparkplug edge node; `None` when `[sparkplug]` is off.
    pub sparkplug: Option<SparkplugSnapshot>,
    /// The write desk's figures.
    pub writes: WritesSnapshot,
    /// Time since the pipeline task last published (its heartbeat).
    pub pipeline_idle: Duration,
    /// Time since the process started (monotonic).
    pub uptime: Duration,
    /// Whether the kernel reports the wall clock synchronised (NTP);
    /// `None` when it would not say. Timestamps made while it is not may
    /// be wrong.
    pub clock_synced: Option<bool>,
}

/// The write desk's figures at one moment (counts since the start).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WritesSnapshot {
    /// Writable tags in the running configuration.
    pub writable_tags: usize,
    /// Commands received, by any path.
    pub received: u64,
    /// Results `rejected`.
    pub rejected: u64,
    /// Results `written`.
    pub written: u64,
    /// Results `verified`.
    pub verified: u64,
    /// Results `unknown`.
    pub unknown: u64,
    /// Commands that never reached the write desk (its queue was full or
    /// it was stopping): not answered, not recorded, only counted here
    /// and logged.
    pub dropped: u64,
}

impl WritesSnapshot {
    fn of(
        stats: &WriteStats,
        writable_tags: usize,
        mqtt: &ForwarderStats,
        sparkplug: &EdgeNodeStats,
    ) -> WritesSnapshot {
        use std::sync::atomic::Ordering::Relaxed;
        WritesSnapshot {
            dropped: mqtt.writes_dropped.load(Relaxed) + sparkplug.dcmd_busy.load(Relaxed),
            writable_tags,
            received: stats.received.load(Relaxed),
            rejected: stats.rejected.load(Relaxed),
            written: stats.written.load(Relaxed),
            verified: stats.verified.load(Relaxed),
            unknown: stats.unknown.load(Relaxed),
        }
    }
}

/// The forwarder's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttSnapshot {
    /// A session with the broker is up.
    pub connected: bool,
    /// CONNACKs after the first.
    pub reconnects: u64,
    /// Outbox rows written to the network (resends included).
    pub published: u64,
    /// Outbox rows the broker confirmed.
    pub acked: u64,
    /// Inbound messages passed to the rules.
    pub inbound: u64,
    /// Inbound messages dropped (channel full).
    pub inbound_dropped: u64,
    /// Rows skipped because they can never be sent.
    pub skipped: u64,
    /// The last connection or store error.
    pub last_error: Option<String>,
}

impl MqttSnapshot {
    /// Reads the forwarder's counters.
    pub fn of(stats: &ForwarderStats) -> MqttSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MqttSnapshot {
            connected: stats.connected.load(Ordering::Relaxed),
            reconnects: load(&stats.reconnects),
            published: load(&stats.published),
            acked: load(&stats.acked),
            inbound: load(&stats.inbound),
            inbound_dropped: load(&stats.inbound_dropped),
            skipped: load(&stats.skipped),
            last_error: stats.last_error(),
        }
    }
}

impl Telemetry {
    /// A registry for `config` that reads the pollers' `probes` (at zero
    /// for everything else).
    pub fn new(config: &Config, probes: Probes, started: SystemTime) -> Telemetry {
        let seen: Vec<Arc<DeviceSeen>> = config
            .devices
            .iter()
            .map(|d| Arc::new(DeviceSeen::new(Arc::clone(d))))
            .collect();
        let by_name = seen
            .iter()
            .enumerate()
            .map(|(i, d)| (d.device().name.clone(), i))
            .collect();
        Telemetry {
            info: GatewayInfo {
                id: config.gateway.id.clone(),
                site: config.gateway.site.clone(),
                version: env!("CARGO_PKG_VERSION"),
                config_hash: config.hash.clone(),
                started,
                booted: Instant::now(),
            },
            probes,
            seen,
            by_name,
            mqtt: Arc::new(ForwarderStats::default()),
            sparkplug: Arc::new(EdgeNodeStats::default()),
            sparkplug_config: config.sparkplug.clone(),
            cmms: config
                .cmms
                .iter()
                .map(|c| (c.name.clone(), Arc::new(ConnectorStats::default())))
                .collect(),
            cmms_kinds: config.cmms.iter().map(|c| c.kind.as_str()).collect(),
            rules: Arc::new(watch::Sender::new(Arc::new(RulesView::default()))),
            heartbeat: Heartbeat::new(),
            writes: Arc::new(WriteStats::default()),
            writable_tags: config
                .devices
                .iter()
                .flat_map(|d| &d.tags)
                .filter(|t| t.write.is_some())
                .count(),
        }
    }

    /// The registry of a reloaded `config` over its new `probes`: devices
    /// whose settings did not change keep their last readings and trend.
    /// The MQTT and Sparkplug counters, the rules view's channel and the
    /// heartbeat carry over; the Sparkplug edge node is shown as the new
    /// `[sparkplug]` says (or not at all without it).
    pub fn reconfigured(&self, config: &Config, probes: Probes) -> Telemetry {
        let mut next = Telemetry::new(config, probes, self.info.started);
        next.info.booted = self.info.booted;
        for d in &mut next.seen {
            if let Some(old) = self.seen.iter().find(|o| o.device() == d.device()) {
                *d = old.clone();
            }
        }
        next.mqtt = self.mqtt.clone();
        next.sparkplug = self.sparkplug.clone();
        // A connector kept by name keeps its counters.
        for (name, stats) in &mut next.cmms {
            if let Some((_, old)) = self.cmms.iter().find(|(n, _)| n == name) {
                *stats = old.clone();
            }
        }
        next.rules = self.rules.clone();
        next.heartbeat = self.heartbeat.clone();
        next.writes = self.writes.clone();
        next
    }

    /// The pollers' probes this registry reads.
    pub fn probes(&self) -> &Probes {
        &self.probes
    }

    /// The pipeline's heartbeat.
    pub fn heartbeat(&self) -> &Heartbeat {
        &self.heartbeat
    }

    /// Who this gateway is.
    pub fn info(&self) -> &GatewayInfo {
        &self.info
    }

    /// The counters the forwarder writes (give it this one).
    pub fn mqtt_stats(&self) -> Arc<ForwarderStats> {
        self.mqtt.clone()
    }

    /// The write desk's counters (shared with the desk).
    pub fn write_stats(&self) -> Arc<WriteStats> {
        self.writes.clone()
    }

    /// The figures the Sparkplug edge node writes (give it this one).
    pub fn sparkplug_stats(&self) -> Arc<EdgeNodeStats> {
        self.sparkplug.clone()
    }

    /// The figures each CMMS connector writes (give them these), in
    /// config order.
    pub fn cmms_stats(&self) -> &[(String, Arc<ConnectorStats>)] {
        &self.cmms
    }

    /// Each connector's name, kind and figures, in config order.
    fn cmms_named(&self) -> Vec<(String, &'static str, Arc<ConnectorStats>)> {
        self.cmms
            .iter()
            .zip(self.cmms_kinds.iter().chain(std::iter::repeat(&"")))
            .map(|((name, stats), kind)| (name.clone(), *kind, stats.clone()))
            .collect()
    }

    /// Every device's figures, in config order.
    pub fn devices(&self) -> &[Arc<DeviceMetrics>] {
        self.probes.devices()
    }

    /// What the pipeline last saw of every device, in config order (the
    /// same order as [`devices`](Self::devices)).
    pub fn seen(&self) -> &[Arc<DeviceSeen>] {
        &self.seen
    }

    /// Keeps `batch` as its device's last readings, for `/api/status`.
    ///
    /// Called by the pipeline task once it is done with the batch rather
    /// than by the poller: the batch is moved here instead of cloned, so
    /// the poller's hot path stays as it was and no reading is copied.
    /// (The last values are therefore those the pipeline has seen, at
    /// most the batch channel behind the poller.)
    pub fn keep_last(&self, batch: Batch, suppressed: u64) {
        if let Some(&i) = self.by_name.get(batch.device.name.as_str()) {
            // Freed here, outside the device's lock.
            drop(self.seen[i].keep_last(batch, suppressed));
        }
    }

    /// Publishes the rules stage's state; also the pipeline's heartbeat.
    pub fn publish_rules(&self, view: RulesView) {
        self.rules.send_replace(Arc::new(view));
        self.beat();
    }

    /// The latest rules view.
    pub fn rules(&self) -> Arc<RulesView> {
        self.rules.borrow().clone()
    }

    /// A receiver that sees every new rules view (for live pages).
    pub fn subscribe_rules(&self) -> watch::Receiver<Arc<RulesView>> {
        self.rules.subscribe()
    }

    /// Records that the pipeline task is alive.
    pub fn beat(&self) {
        self.heartbeat.beat();
    }

    /// Time since the pipeline's last heartbeat (since start before it).
    pub fn pipeline_idle(&self) -> Duration {
        self.heartbeat.age()
    }

    /// Everything at this moment, the CMMS connectors' queues unknown;
    /// `store` and `process` are gathered by the caller (they take I/O).
    pub fn snapshot(&self, store: Option<Stats>, process: ProcessStats) -> Snapshot {
        self.snapshot_with(store, process, &SinkQueues::default())
    }

    /// Whether CMMS connectors are configured (their queues are then worth
    /// asking the store for).
    pub fn has_cmms(&self) -> bool {
        !self.cmms.is_empty()
    }

    /// Everything at this moment, with what the store said of the CMMS
    /// connectors' queues (`sinks`); `store`, `process` and `sinks` are
    /// gathered by the caller (they take I/O).
    pub fn snapshot_with(
        &self,
        store: Option<Stats>,
        process: ProcessStats,
        sinks: &SinkQueues,
    ) -> Snapshot {
        let devices: Vec<DeviceSnapshot> = self.devices().iter().map(|d| d.snapshot()).collect();
        let sparkplug = self
            .sparkplug_config
            .as_ref()
            .map(|c| SparkplugSnapshot::of(c, &self.sparkplug, store.as_ref()));
        let links: Vec<LinkSnapshot> = self
            .probes
            .links()
            .iter()
            .map(|l| {
                l.link
                    .snapshot(devices.iter().filter(|d| d.link == l.link.label()))
            })
            .collect();
        Snapshot {
            info: self.info.clone(),
            at: SystemTime::now(),
            devices,
            links,
            store,
            mqtt: MqttSnapshot::of(&self.mqtt),
            rules: self.rules(),
            suppressed: self.seen.iter().map(|d| d.suppressed()).collect(),
            events: crate::events::totals().to_vec(),
            process,
            cmms: cmms_view::connectors(&self.cmms_named(), sinks),
            sparkplug,
            writes: WritesSnapshot::of(
                &self.writes,
                self.writable_tags,
                &self.mqtt,
                &self.sparkplug,
            ),
            pipeline_idle: self.pipeline_idle(),
            uptime: self.info.booted.elapsed(),
            clock_synced: crate::clock::wall_clock_synced(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        config_with("")
    }

    /// The test config with `extra` after `[gateway]`.
    fn config_with(extra: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldgate.toml");
        std::fs::write(
            &path,
            r#"
[gateway]
id = "gw"
site = "s"
data_dir = "/tmp/x"
[[buses]]
name = "line1"
port = "/dev/ttyUSB0"
[[devices]]
name = "a"
tcp = "127.0.0.1:5020"
tags = [{ name = "t", area = "holding", address = 0, type = "u16" }]
[[devices]]
name = "b"
tcp = "127.0.0.1:5020"
unit = 2
tags = [{ name = "t", area = "holding", address = 0, type = "u16" }]
[[devices]]
name = "c"
bus = "line1"
tags = [{ name = "t", area = "holding", address = 0, type = "u16" }]
"#
            .replace("[[buses]]", &format!("{extra}\n[[buses]]")),
        )
        .unwrap();
        match crate::config::load_with_env(&path, &[]) {
            Ok(l) => l.config,
            Err(p) => panic!("{p}"),
        }
    }

    #[test]
    fn links_sum_their_devices() {
        let config = config();
        let t = Telemetry::new(&config, Probes::new(&config), SystemTime::now());
        let probe = t
            .probes()
            .links()
            .iter()
            .find(|l| matches!(l.endpoint, crate::modbus::Endpoint::Tcp(_)))
            .unwrap();
        assert_eq!(probe.link.label(), "tcp:127.0.0.1:5020");
        for d in probe.devices() {
            d.poll_ok(SystemTime::now());
        }
        let s = t.snapshot(None, ProcessStats::default());
        assert_eq!(s.devices.len(), 3);
        let tcp = s
            .links
            .iter()
            .find(|l| l.label.starts_with("tcp:"))
            .unwrap();
        assert_eq!(tcp.polls, [2, 0, 0]);
        let bus = s.links.iter().find(|l| l.label == "bus:line1").unwrap();
        assert_eq!(bus.polls, [0, 0, 0]);
        assert_eq!(s.devices[2].link, "bus:line1");
    }

    #[test]
    fn the_last_batch_is_kept_per_device() {
        let config = config();
        let t = Telemetry::new(&config, Probes::new(&config), SystemTime::now());
        let device = config.devices[1].clone();
        t.keep_last(
            Batch {
                device: device.clone(),
                timestamp: SystemTime::now(),
                started: std::time::Instant::now(),
                unsynced: false,
                readings: vec![crate::reading::Reading::good(0, crate::tag::Value::Int(7))],
            },
            2,
        );
        let n = t.seen()[1].with_last(|b| b.map(|b| b.readings.len()));
        assert_eq!(n, Some(1));
        assert!(t.seen()[0].with_last(|b| b.is_none()));
    }

    #[test]
    fn the_edge_node_is_shown_only_when_sparkplug_is_on() {
        let off = config();
        let t = Telemetry::new(&off, Probes::new(&off), SystemTime::now());
        assert_eq!(t.snapshot(None, ProcessStats::default()).sparkplug, None);

        let on = config_with(
            "[mqtt]\nhost = \"127.0.0.1\"\n[sparkplug]\ngroup_id = \"plant\"\nprimary_host_id = \"scada\"\n",
        );
        let t = t.reconfigured(&on, Probes::new(&on));
        let stats = t.sparkplug_stats();
        stats.sessions.store(1, Ordering::Relaxed);
        stats.bd_seq.store(7, Ordering::Relaxed);
        let store = Stats {
            sparkplug_messages: 3,
            ..Stats::default()
        };
        let s = t
            .snapshot(Some(store), ProcessStats::default())
            .sparkplug
            .expect("the edge node is shown");
        assert_eq!(
            (s.group_id.as_str(), s.edge_node_id.as_str()),
            ("plant", "gw")
        );
        assert_eq!(s.primary_host_id.as_deref(), Some("scada"));
        assert_eq!((s.bd_seq, s.outbox_messages), (Some(7), Some(3)));

        // Turned off by a reload: gone, its counters kept for a later one.
        let t = t.reconfigured(&off, Probes::new(&off));
        assert_eq!(t.snapshot(None, ProcessStats::default()).sparkplug, None);
        assert_eq!(t.sparkplug_stats().bd_seq.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn the_heartbeat_moves() {
        let config = config();
        let t = Telemetry::new(&config, Probes::new(&config), SystemTime::now());
        t.beat();
        assert!(t.pipeline_idle() < Duration::from_secs(5));
    }
}
