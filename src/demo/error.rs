//! Why the demo could not run.

use std::path::PathBuf;

use crate::app::AppError;
use crate::config::Problems;
use crate::sim::SimError;
use crate::store::StoreError;

/// Why the demo could not run (or not finish cleanly).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The data folder (or the config written into it) could not be made.
    #[error("cannot prepare the data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration has errors (as `fieldgate check` prints them).
    #[error("{path}: the configuration has errors:\n{problems}")]
    Config {
        /// The file.
        path: PathBuf,
        /// Every problem.
        problems: Problems,
    },
    /// The scenario could not be read or the simulator not started.
    #[error("simulator: {0}")]
    Sim(#[from] SimError),
    /// The embedded broker could not start.
    #[error("embedded MQTT broker: {0}")]
    Broker(String),
    /// `--broker` is not `HOST:PORT`.
    #[error("--broker {0}: expected HOST:PORT")]
    BrokerAddress(String),
    /// This build has no embedded broker.
    #[error(
        "this fieldgate was built without the embedded broker (feature `embedded-broker`): give --broker HOST:PORT"
    )]
    NoEmbeddedBroker,
    /// The gateway could not start, or failed.
    #[error("gateway: {0}")]
    Gateway(#[from] AppError),
    /// A task of the demo (the gateway, a file read) ended abnormally, or
    /// the gateway did not stop in time.
    #[error("{0}")]
    Task(String),
    /// The gateway stopped before it was asked to.
    #[error("the gateway stopped by itself")]
    GatewayStopped,
    /// The store could not be read after the stop.
    #[error("cannot read the outbox after the stop: {0}")]
    Store(#[from] StoreError),
}
