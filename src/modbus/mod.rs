//! Southbound: Modbus TCP, RTU and RTU over TCP.
//!
//! * Pure: [`plan`] (which requests read a device's tags, and how the
//!   plan adapts to exceptions), [`decode`]/[`encode`] (registers to
//!   values and back), [`frame`] (read requests and their replies on the
//!   wire), [`backoff`].
//! * I/O: [`transport`] opens connections and makes single requests with
//!   a timeout; [`poller`] runs one task per connection or bus.
//!
//! [`spawn_pollers`] starts one task per link and returns their handles;
//! every poll yields a [`Batch`](crate::reading::Batch) on the channel it is given.

pub mod backoff;
pub mod decode;
pub mod encode;
pub mod frame;
pub mod plan;
pub mod poller;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use transport::{Block, Endpoint, Link, PollError};

use crate::config::{Config, Connection};
use crate::reading::Batch;
use crate::shutdown::Shutdown;
use crate::telemetry::Telemetry;

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

/// Starts one poller task per link, recording into a registry of their
/// own that nobody reads (tools, tests and benchmarks; the gateway uses
/// [`spawn_pollers_observed`]).
pub fn spawn_pollers(
    config: &Config,
    batches: mpsc::Sender<Batch>,
    shutdown: &Shutdown,
) -> Vec<JoinHandle<()>> {
    let telemetry = Telemetry::new(config, std::time::SystemTime::now());
    spawn_pollers_observed(config, batches, shutdown, &telemetry)
}

/// Starts one poller task per link, recording into `telemetry`.
pub fn spawn_pollers_observed(
    config: &Config,
    batches: mpsc::Sender<Batch>,
    shutdown: &Shutdown,
    telemetry: &Telemetry,
) -> Vec<JoinHandle<()>> {
    links(config)
        .into_iter()
        .map(|(endpoint, devices)| {
            let probe = telemetry.link_probe(&endpoint);
            tokio::spawn(poller::run_link(
                Link::new(endpoint),
                devices,
                batches.clone(),
                shutdown.clone(),
                probe,
            ))
        })
        .collect()
}
