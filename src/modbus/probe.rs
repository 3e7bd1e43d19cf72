//! What the pollers record per device and per link: acquisition's own
//! probes, handed out to whoever reads them (the metrics registry, the
//! status page) as the forwarder hands out its counters.
//!
//! # Cost on the hot path
//!
//! A poller records every request and every poll. A request costs a
//! histogram observation, one addition and one store, all relaxed atomics;
//! a good poll costs one addition, one store and one load. Nothing
//! allocates and no lock is taken unless the device changes state (from
//! polling to failing or back) or a poll fails, which already cost a
//! timeout or a refused connection.
//!
//! Link figures other than connections are not recorded twice: a link's
//! polls, errors, registers and latencies are the sums of its devices',
//! added up when a snapshot is taken.
//!
//! # One set per config
//!
//! [`Probes`] is built from a config with the same link grouping the
//! pollers use ([`links`](super::links)), so each poller is given exactly
//! the probe of its link and nobody joins them back by label. After a
//! reload, devices whose settings did not change keep their figures
//! ([`Probes::reconfigured`]).

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::histogram::{Histogram, HistogramSnapshot};
use super::transport::{Block, Endpoint, PollError};
use crate::config::{Config, Device};

/// Poll results, in the order of [`DeviceSnapshot::polls`].
pub const POLL_RESULTS: [&str; 3] = ["ok", "failed", "skipped"];

/// Request error reasons, in the order of [`DeviceSnapshot::errors`].
pub const ERROR_REASONS: [&str; 4] = ["timeout", "connection", "exception", "protocol"];

/// Where a device stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// Not polled yet.
    Starting,
    /// Its last poll was answered.
    Polling,
    /// Its polls get no answer (or its link cannot connect).
    Failing,
}

impl DeviceState {
    /// The name used in `/api/status` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Starting => "starting",
            DeviceState::Polling => "polling",
            DeviceState::Failing => "failing",
        }
    }

    fn from_u8(v: u8) -> DeviceState {
        match v {
            1 => DeviceState::Polling,
            2 => DeviceState::Failing,
            _ => DeviceState::Starting,
        }
    }
}

/// The label of a link: `tcp:host:port`, `rtu-over-tcp:host:port` or
/// `bus:{name}`.
pub fn link_label(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Tcp(addr) => format!("tcp:{addr}"),
        Endpoint::RtuOverTcp(addr) => format!("rtu-over-tcp:{addr}"),
        Endpoint::Serial(bus) => format!("bus:{}", bus.name),
    }
}

/// When the state changed and why, written only on state changes and
/// failed polls.
#[derive(Debug, Default)]
struct Detail {
    since: Option<SystemTime>,
    last_error: Option<String>,
}

/// One device's figures, written by its poller.
#[derive(Debug)]
pub struct DeviceMetrics {
    device: Arc<Device>,
    link: String,
    /// By [`POLL_RESULTS`].
    polls: [AtomicU64; 3],
    /// By [`ERROR_REASONS`].
    errors: [AtomicU64; 4],
    /// Registers and bits received in good answers.
    registers: AtomicU64,
    /// Answered requests (good or exception).
    latency: Histogram,
    /// Microseconds of the last answer; `u64::MAX` before the first.
    last_response_us: AtomicU64,
    /// Unix milliseconds of the last good poll; 0 before the first.
    last_success_ms: AtomicU64,
    /// A [`DeviceState`], read without the lock to keep good polls cheap.
    state: AtomicU8,
    detail: Mutex<Detail>,
}

/// One device's figures at one moment.
#[derive(Debug, Clone)]
pub struct DeviceSnapshot {
    /// Device name.
    pub name: String,
    /// Its link's label.
    pub link: String,
    /// Where it stands.
    pub state: DeviceState,
    /// Since when (`None` while starting).
    pub since: Option<SystemTime>,
    /// The error of the last failed poll while failing.
    pub last_error: Option<String>,
    /// Polls by [`POLL_RESULTS`].
    pub polls: [u64; 3],
    /// Request errors by [`ERROR_REASONS`].
    pub errors: [u64; 4],
    /// Registers and bits read.
    pub registers: u64,
    /// Request latencies.
    pub latency: HistogramSnapshot,
    /// Latency of the last answer.
    pub last_response: Option<Duration>,
    /// When the last good poll started.
    pub last_success: Option<SystemTime>,
}

impl DeviceMetrics {
    /// Figures at zero for `device` on the link labelled `link`.
    pub fn new(device: Arc<Device>, link: String) -> DeviceMetrics {
        DeviceMetrics {
            device,
            link,
            polls: Default::default(),
            errors: Default::default(),
            registers: AtomicU64::new(0),
            latency: Histogram::default(),
            last_response_us: AtomicU64::new(u64::MAX),
            last_success_ms: AtomicU64::new(0),
            state: AtomicU8::new(0),
            detail: Mutex::new(Detail::default()),
        }
    }

    /// The device's configuration.
    pub fn device(&self) -> &Arc<Device> {
        &self.device
    }

    /// The label of the device's link.
    pub fn link(&self) -> &str {
        &self.link
    }

    /// Where the device stands.
    pub fn state(&self) -> DeviceState {
        DeviceState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// One request finished after `elapsed` with `result`.
    pub fn request(&self, elapsed: Duration, result: &Result<Block, PollError>) {
        let answered = match result {
            Ok(Block::Registers(r)) => {
                self.registers.fetch_add(r.len() as u64, Ordering::Relaxed);
                true
            }
            Ok(Block::Bits(b)) => {
                self.registers.fetch_add(b.len() as u64, Ordering::Relaxed);
                true
            }
            Err(e) => {
                let reason = match e {
                    PollError::Timeout(_) => 0,
                    PollError::Connection(_) => 1,
                    PollError::Exception(_) => 2,
                    PollError::Protocol(_) => 3,
                };
                self.errors[reason].fetch_add(1, Ordering::Relaxed);
                // An exception is an answer and its time is the device's;
                // a timeout's time is only the configured limit.
                matches!(e, PollError::Exception(_))
            }
        };
        if answered {
            self.latency.observe(elapsed);
            let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX - 1);
            self.last_response_us.store(us, Ordering::Relaxed);
        }
    }

    /// A poll started at `at` was answered (possibly in part).
    pub fn poll_ok(&self, at: SystemTime) {
        self.polls[0].fetch_add(1, Ordering::Relaxed);
        self.last_success_ms.store(unix_ms(at), Ordering::Relaxed);
        if self.state.load(Ordering::Relaxed) != DeviceState::Polling as u8 {
            let mut d = self.detail();
            d.since = Some(at);
            d.last_error = None;
            self.state
                .store(DeviceState::Polling as u8, Ordering::Relaxed);
        }
    }

    /// A poll started at `at` got no answer, or the link could not connect.
    pub fn poll_failed(&self, at: SystemTime, error: &PollError) {
        self.polls[1].fetch_add(1, Ordering::Relaxed);
        self.failing(at, || error.to_string());
    }

    /// A poll was not sent: the device or its link is backing off.
    /// `link_error` is the link's last connection error, when the link is
    /// the reason (it makes a device that was never reached `failing`).
    pub fn poll_skipped(&self, at: SystemTime, link_error: Option<&LinkMetrics>) {
        self.polls[2].fetch_add(1, Ordering::Relaxed);
        if let Some(link) = link_error
            && self.state.load(Ordering::Relaxed) != DeviceState::Failing as u8
        {
            self.failing(at, || {
                link.last_error()
                    .unwrap_or_else(|| "link not connected".to_owned())
            });
        }
    }

    fn failing(&self, at: SystemTime, error: impl FnOnce() -> String) {
        let mut d = self.detail();
        if self.state.load(Ordering::Relaxed) != DeviceState::Failing as u8 {
            d.since = Some(at);
            self.state
                .store(DeviceState::Failing as u8, Ordering::Relaxed);
        }
        d.last_error = Some(error());
    }

    /// The current figures.
    pub fn snapshot(&self) -> DeviceSnapshot {
        let (since, last_error, state) = {
            let d = self.detail();
            // Read under the lock so state and detail agree.
            let state = DeviceState::from_u8(self.state.load(Ordering::Relaxed));
            (d.since, d.last_error.clone(), state)
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let last_response = match load(&self.last_response_us) {
            u64::MAX => None,
            us => Some(Duration::from_micros(us)),
        };
        let last_success = match load(&self.last_success_ms) {
            0 => None,
            ms => UNIX_EPOCH.checked_add(Duration::from_millis(ms)),
        };
        DeviceSnapshot {
            name: self.device.name.clone(),
            link: self.link.clone(),
            state,
            since,
            last_error: if state == DeviceState::Failing {
                last_error
            } else {
                None
            },
            polls: self.polls.each_ref().map(load),
            errors: self.errors.each_ref().map(load),
            registers: load(&self.registers),
            latency: self.latency.snapshot(),
            last_response,
            last_success,
        }
    }

    fn detail(&self) -> MutexGuard<'_, Detail> {
        // A panic elsewhere while holding it leaves plain data behind.
        self.detail.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One link's own figures: its connection. Everything else a link shows
/// is summed from its devices.
#[derive(Debug)]
pub struct LinkMetrics {
    label: String,
    connected: AtomicBool,
    /// Connections opened.
    connects: AtomicU64,
    connect_failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// One link's figures at one moment, with its devices' sums.
#[derive(Debug, Clone)]
pub struct LinkSnapshot {
    /// `tcp:host:port`, `rtu-over-tcp:host:port` or `bus:{name}`.
    pub label: String,
    /// A connection (or the serial port) is open.
    pub connected: bool,
    /// Connections opened after the first.
    pub reconnects: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Its devices' polls by [`POLL_RESULTS`].
    pub polls: [u64; 3],
    /// Its devices' request errors by [`ERROR_REASONS`].
    pub errors: [u64; 4],
    /// Registers and bits read from its devices.
    pub registers: u64,
    /// Its devices' request latencies.
    pub latency: HistogramSnapshot,
    /// The latest good poll of any of its devices.
    pub last_success: Option<SystemTime>,
}

impl LinkMetrics {
    /// Figures at zero for the link labelled `label`.
    pub fn new(label: String) -> LinkMetrics {
        LinkMetrics {
            label,
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The link's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// A connection was opened.
    pub fn connected(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
        self.connected.store(true, Ordering::Relaxed);
    }

    /// A connection attempt failed with `error`.
    pub fn connect_failed(&self, error: &PollError) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
        self.connected.store(false, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error.to_string());
    }

    /// Whether a connection is open now (after a poll: a failed request
    /// drops it).
    pub fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }

    /// The last connection error.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The link's figures, summed over `devices` (those on this link).
    pub fn snapshot<'a>(&self, devices: impl Iterator<Item = &'a DeviceSnapshot>) -> LinkSnapshot {
        let mut out = LinkSnapshot {
            label: self.label.clone(),
            connected: self.connected.load(Ordering::Relaxed),
            reconnects: self.connects.load(Ordering::Relaxed).saturating_sub(1),
            connect_failures: self.connect_failures.load(Ordering::Relaxed),
            polls: [0; 3],
            errors: [0; 4],
            registers: 0,
            latency: HistogramSnapshot::default(),
            last_success: None,
        };
        for d in devices {
            for (a, b) in out.polls.iter_mut().zip(d.polls) {
                *a += b;
            }
            for (a, b) in out.errors.iter_mut().zip(d.errors) {
                *a += b;
            }
            out.registers += d.registers;
            out.latency.add(&d.latency);
            out.last_success = out.last_success.max(d.last_success);
        }
        out
    }
}

/// What one poller task records into: its link and its devices.
#[derive(Debug, Clone)]
pub struct LinkProbe {
    /// Where the link goes.
    pub endpoint: Endpoint,
    /// The link.
    pub link: Arc<LinkMetrics>,
    devices: Vec<Arc<DeviceMetrics>>,
}

impl LinkProbe {
    /// A probe over `link` and `devices`.
    pub fn new(
        endpoint: Endpoint,
        link: Arc<LinkMetrics>,
        devices: Vec<Arc<DeviceMetrics>>,
    ) -> LinkProbe {
        LinkProbe {
            endpoint,
            link,
            devices,
        }
    }

    /// The devices polled over this link, in config order.
    pub fn devices(&self) -> &[Arc<DeviceMetrics>] {
        &self.devices
    }

    /// The figures of `device`. A device the probe does not know (not
    /// expected: both come from one config) gets figures of its own that
    /// nobody reads, rather than a panic.
    pub fn device(&self, device: &Arc<Device>) -> Arc<DeviceMetrics> {
        self.devices
            .iter()
            .find(|m| m.device.name == device.name)
            .cloned()
            .unwrap_or_else(|| {
                Arc::new(DeviceMetrics::new(device.clone(), self.link.label.clone()))
            })
    }
}

/// The probes of every link and device of one config: what the pollers
/// write, what telemetry reads. Cloning shares the figures.
#[derive(Debug, Clone, Default)]
pub struct Probes {
    /// Every device, in config order (a device on no link, which `check`
    /// refuses, is still listed, and never polled).
    devices: Vec<Arc<DeviceMetrics>>,
    /// One per link, in the order the pollers are started.
    links: Vec<LinkProbe>,
}

impl Probes {
    /// Figures at zero for every device and link of `config`.
    pub fn new(config: &Config) -> Probes {
        Probes::build(config, |_| None, |_| None)
    }

    /// The probes of a reloaded `config`: devices whose settings did not
    /// change keep their figures (and counters keep counting), links keep
    /// theirs by label; new devices start at zero.
    pub fn reconfigured(&self, config: &Config) -> Probes {
        Probes::build(
            config,
            |fresh| {
                self.devices
                    .iter()
                    .find(|o| o.device() == fresh.device() && o.link() == fresh.link())
                    .cloned()
            },
            |label| {
                self.links
                    .iter()
                    .find(|l| l.link.label() == label)
                    .map(|l| l.link.clone())
            },
        )
    }

    fn build(
        config: &Config,
        keep_device: impl Fn(&DeviceMetrics) -> Option<Arc<DeviceMetrics>>,
        keep_link: impl Fn(&str) -> Option<Arc<LinkMetrics>>,
    ) -> Probes {
        let grouped = super::links(config);
        let mut link_of: std::collections::HashMap<&str, String> = Default::default();
        for (endpoint, devices) in &grouped {
            let label = link_label(endpoint);
            for d in devices {
                link_of.insert(d.name.as_str(), label.clone());
            }
        }
        let devices: Vec<Arc<DeviceMetrics>> = config
            .devices
            .iter()
            .map(|d| {
                let link = link_of.get(d.name.as_str()).cloned().unwrap_or_default();
                let fresh = DeviceMetrics::new(Arc::clone(d), link);
                keep_device(&fresh).unwrap_or_else(|| Arc::new(fresh))
            })
            .collect();
        let links = grouped
            .into_iter()
            .map(|(endpoint, _)| {
                let label = link_label(&endpoint);
                let link =
                    keep_link(&label).unwrap_or_else(|| Arc::new(LinkMetrics::new(label.clone())));
                let on_link = devices
                    .iter()
                    .filter(|d| d.link() == label)
                    .cloned()
                    .collect();
                LinkProbe::new(endpoint, link, on_link)
            })
            .collect();
        Probes { devices, links }
    }

    /// Every device's figures, in config order.
    pub fn devices(&self) -> &[Arc<DeviceMetrics>] {
        &self.devices
    }

    /// Every link's probe, in the order the pollers are started.
    pub fn links(&self) -> &[LinkProbe] {
        &self.links
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        // A clock before 1970 (never set): 1 ms, so "never" stays 0.
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Connection;

    fn metrics() -> DeviceMetrics {
        let device = Device::new(
            "pump",
            Connection::Tcp {
                host: "127.0.0.1".into(),
                port: 502,
            },
            Vec::new(),
        );
        DeviceMetrics::new(Arc::new(device), "tcp:127.0.0.1:502".into())
    }

    #[test]
    fn requests_and_polls_are_counted() {
        let m = metrics();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000);
        m.request(Duration::from_millis(3), &Ok(Block::Registers(vec![0; 10])));
        m.request(Duration::from_millis(4), &Ok(Block::Bits(vec![true; 5])));
        m.request(Duration::from_millis(7), &Err(PollError::Exception(2)));
        m.request(
            Duration::from_secs(1),
            &Err(PollError::Timeout(Duration::from_secs(1))),
        );
        m.poll_ok(t0);
        let s = m.snapshot();
        assert_eq!(s.registers, 15);
        assert_eq!(s.errors, [1, 0, 1, 0]);
        assert_eq!(s.latency.count(), 3, "timeouts are not latencies");
        assert_eq!(s.last_response, Some(Duration::from_millis(7)));
        assert_eq!(s.polls, [1, 0, 0]);
        assert_eq!(s.state, DeviceState::Polling);
        assert_eq!(s.since, Some(t0));
        assert_eq!(s.last_success, Some(t0));
    }

    #[test]
    fn failing_keeps_its_start_and_the_latest_error() {
        let m = metrics();
        assert_eq!(m.snapshot().state, DeviceState::Starting);
        let t1 = UNIX_EPOCH + Duration::from_secs(10);
        let t2 = UNIX_EPOCH + Duration::from_secs(20);
        m.poll_failed(t1, &PollError::Timeout(Duration::from_millis(500)));
        m.poll_failed(t2, &PollError::Connection("reset".into()));
        m.poll_skipped(t2, None);
        let s = m.snapshot();
        assert_eq!(s.state, DeviceState::Failing);
        assert_eq!(s.since, Some(t1));
        assert_eq!(s.last_error.as_deref(), Some("connection: reset"));
        assert_eq!(s.polls, [0, 2, 1]);
        m.poll_ok(t2);
        let s = m.snapshot();
        assert_eq!(
            (s.state, s.since, s.last_error),
            (DeviceState::Polling, Some(t2), None)
        );
    }

    #[test]
    fn a_device_behind_a_dead_link_is_failing_with_the_link_error() {
        let m = metrics();
        let link = LinkMetrics::new("tcp:127.0.0.1:502".into());
        link.connect_failed(&PollError::Connection("refused".into()));
        m.poll_skipped(UNIX_EPOCH + Duration::from_secs(5), Some(&link));
        let s = m.snapshot();
        assert_eq!(s.state, DeviceState::Failing);
        assert_eq!(s.last_error.as_deref(), Some("connection: refused"));
        let l = link.snapshot([&s].into_iter());
        assert_eq!(
            (l.connected, l.connect_failures, l.polls),
            (false, 1, [0, 0, 1])
        );
    }
}
