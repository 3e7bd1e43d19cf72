//! The simulator's error type.

use std::io;
use std::path::PathBuf;

/// Why a scenario could not be loaded or the simulator not started or
/// driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// The scenario file could not be read.
    #[error("cannot read scenario {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The scenario is not valid TOML or has unknown keys.
    #[error("scenario: {0}")]
    Toml(#[from] toml::de::Error),
    /// The scenario parsed but does not make sense; every problem found.
    #[error("scenario has {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address as written in the scenario.
        addr: String,
        /// What went wrong.
        source: io::Error,
    },
    /// A serial port or pty could not be opened.
    #[error("cannot open serial port {path}: {source}")]
    Serial {
        /// The port as written in the scenario.
        path: String,
        /// What went wrong.
        source: tokio_serial::Error,
    },
    /// No device has this name.
    #[error("no simulated device named {0:?}")]
    UnknownDevice(String),
    /// The device has no such signal, point name or point address.
    #[error("device {device:?} has no settable signal or point {target:?}")]
    UnknownTarget {
        /// Device name.
        device: String,
        /// What was asked for.
        target: String,
    },
}
