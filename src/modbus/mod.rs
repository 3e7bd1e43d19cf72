//! Southbound: Modbus TCP, RTU and RTU over TCP.
//!
//! * Pure: [`plan`] (which requests read a device's tags, and how the
//!   plan adapts to exceptions), [`decode`]/[`encode`] (registers to
//!   values and back), [`frame`] (read and write requests and their
//!   replies on the wire), [`write`] (a value to write turned into
//!   registers, and the write job), [`backoff`].
//! * I/O: [`transport`] opens connections and makes single requests with
//!   a timeout; [`poller`] runs one task per connection or bus.
//! * Figures: [`probe`] (what the pollers record, handed out as
//!   [`Probes`] to readers) and its [`histogram`].
//!
//! [`spawn_pollers`] starts one task per link and returns their handles;
//! every poll yields a [`Batch`](crate::reading::Batch) on the channel it is given.
//! [`spawn_pollers_writable`] also gives each link task a queue of write
//! jobs, one sender per device in the returned [`write::Writers`]: writes
//! go through the task that owns the line, ahead of its next poll.

mod backoff;
pub mod decode;
pub mod encode;
pub mod frame;
pub(crate) mod histogram;
pub mod plan;
pub(crate) mod poller;
pub(crate) mod probe;
pub(crate) mod transport;
pub mod write;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use probe::{
    DeviceMetrics, DeviceSnapshot, DeviceState, LinkMetrics, LinkProbe, LinkSnapshot, Probes,
    link_label,
};
pub use transport::{Block, Endpoint, Link, PollError, WriteError};

use crate::config::{Config, Connection};
use crate::reading::Batch;
use crate::shutdown::Shutdown;

/// The link each device is polled over: devices behind the same TCP
/// endpoint share a connection, devices on a bus share the bus.
pub fn links(config: &Config) -> Vec<(Endpoint, Vec<Arc<crate::config::Device>>)> {
    let mut by_key: BTreeMap<String, (Endpoint, Vec<Arc<crate::config::Device>>)> = BTreeMap::new();
    for device in &config.devices {
        let endpoint = match &device.connection {
            Connection::Tcp { .. } => {
                Endpoint::Tcp(device.connection.endpoint().unwrap_or_default())
            }
            Connection::RtuOverTcp { .. } => {
                Endpoint::RtuOverTcp(device.connection.endpoint().unwrap_or_default())
            }
            Connection::Rtu { bus } => match config.bus(bus) {
                Some(b) => Endpoint::Serial(b.clone()),
                None => continue, // validation rejects this
            },
        };
        let key = endpoint.to_string();
        by_key
            .entry(key)
            .or_insert_with(|| (endpoint, Vec::new()))
            .1
            .push(Arc::clone(device));
    }
    by_key.into_values().collect()
}

/// Starts one poller task per link, recording into probes of their own
/// that nobody reads (tools, tests and benchmarks; the gateway uses
/// [`spawn_pollers_observed`]).
pub fn spawn_pollers(
    config: &Config,
    batches: mpsc::Sender<Batch>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    spawn_pollers_observed(&Probes::new(config), batches, shutdown)
}

/// Starts one poller task per link of `probes`, like
/// [`spawn_pollers_observed`], each also taking write jobs for its devices
/// from the queue in the returned [`write::Writers`].
pub fn spawn_pollers_writable(
    probes: &Probes,
    batches: mpsc::Sender<Batch>,
    shutdown: &Shutdown,
) -> (Vec<JoinHandle<()>>, write::Writers) {
    let mut writers = write::Writers::default();
    let handles = probes
        .links()
        .iter()
        .map(|probe| {
            // One queue per link: its task is the only one on the line.
            let (tx, rx) = mpsc::channel(write::JOBS_CAPACITY);
            let devices: Vec<_> = probe.devices().iter().map(|d| d.device().clone()).collect();
            for d in &devices {
                writers.insert(d.name.clone(), tx.clone());
            }
            tokio::spawn(poller::run_link(
                Link::new(probe.endpoint.clone()),
                devices,
                batches.clone(),
                shutdown.clone(),
                probe.clone(),
                Some(rx),
            ))
        })
        .collect();
    (handles, writers)
}

/// Starts one poller task per link of `probes`, each recording into its
/// link's probe.
pub fn spawn_pollers_observed(
    probes: &Probes,
    batches: mpsc::Sender<Batch>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    probes
        .links()
        .iter()
        .map(|probe| {
            let devices = probe.devices().iter().map(|d| d.device().clone()).collect();
            tokio::spawn(poller::run_link(
                Link::new(probe.endpoint.clone()),
                devices,
                batches.clone(),
                shutdown.clone(),
                probe.clone(),
                None,
            ))
        })
        .collect()
}
