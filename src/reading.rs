//! What a poll yields: readings with a quality, grouped in a [`Batch`].
//!
//! A failed poll yields bad-quality readings, never silence, so rules and
//! consumers can tell "the value is 0" from "the device is gone".

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crate::config::Device;
use crate::tag::Value;

/// Why a reading is not good.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum BadReason {
    /// The device did not answer within the timeout.
    Timeout,
    /// No connection (refused, reset, serial port gone).
    Connection,
    /// The device answered with Modbus exception `code`.
    Exception(u8),
    /// The response did not match the request (unit id, function code,
    /// length) or failed its CRC: it was rejected, never trusted.
    Protocol,
    /// The registers do not hold a valid value (NaN, infinity, short data).
    Decode,
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadReason::Timeout => f.write_str("timeout"),
            BadReason::Connection => f.write_str("connection"),
            BadReason::Exception(code) => write!(f, "exception:{code}"),
            BadReason::Protocol => f.write_str("protocol"),
            BadReason::Decode => f.write_str("decode"),
        }
    }
}

/// Quality of a reading, as published: `good` or `bad:{reason}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Quality {
    /// The value is what the device holds.
    Good,
    /// There is no trustworthy value.
    Bad(BadReason),
}

impl Quality {
    /// True for `Good`.
    pub fn is_good(&self) -> bool {
        matches!(self, Quality::Good)
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quality::Good => f.write_str("good"),
            Quality::Bad(reason) => write!(f, "bad:{reason}"),
        }
    }
}

/// One tag's reading.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Index of the tag in its device's `tags`.
    pub tag: usize,
    /// The engineering value; `None` when the quality is bad.
    pub value: Option<Value>,
    /// Good, or bad with the reason.
    pub quality: Quality,
}

impl Reading {
    /// A good reading.
    pub fn good(tag: usize, value: Value) -> Reading {
        Reading {
            tag,
            value: Some(value),
            quality: Quality::Good,
        }
    }

    /// A bad reading.
    pub fn bad(tag: usize, reason: BadReason) -> Reading {
        Reading {
            tag,
            value: None,
            quality: Quality::Bad(reason),
        }
    }
}

/// Every reading of one poll of one device.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The device (its tags give the readings' names and units).
    pub device: Arc<Device>,
    /// When the poll started, by the wall clock: the stamp published with
    /// the readings.
    pub timestamp: SystemTime,
    /// When the poll started, by the monotonic clock: what the rules
    /// measure durations with (see `crate::clock`).
    pub started: Instant,
    /// The kernel did not report the wall clock synchronised when
    /// `timestamp` was taken: the stamp may be wrong (a Raspberry Pi
    /// without a real-time clock, before NTP), and data messages say so.
    pub unsynced: bool,
    /// One reading per tag of the device, in tag order.
    pub readings: Vec<Reading>,
}

impl Batch {
    /// Number of good readings.
    pub fn good_count(&self) -> usize {
        self.readings.iter().filter(|r| r.quality.is_good()).count()
    }
}
