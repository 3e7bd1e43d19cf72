//! Write-back commands: what someone asks to write to a tag, and what came
//! of it. Plain data shared by every path in (MQTT, Sparkplug DCMD, the
//! status page), the write desk that judges them, the link task that
//! executes them and the history that records them. Pure: no I/O.
//!
//! A command names a device and a tag in the plant's words and carries
//! the value in engineering units; the desk checks it against the tag's
//! write settings and the link's task turns it into registers.

use std::fmt;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;

use crate::tag::Value;

/// Where a command came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `{prefix}/{site}/{gateway}/cmd/{device}/{tag}`.
    Mqtt,
    /// A Sparkplug B DCMD.
    Sparkplug,
    /// The status page or `POST /api/tags/{device}/{tag}/write`.
    Http,
}

impl Source {
    /// The name in results and the history.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Mqtt => "mqtt",
            Source::Sparkplug => "sparkplug",
            Source::Http => "http",
        }
    }
}

/// How the message carrying a command was delivered: a write must come
/// from someone asking now, never from a copy the broker kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    /// Published while the gateway was subscribed.
    Live,
    /// The broker's retained copy, sent because we subscribed.
    Retained,
    /// Queued by the broker while the gateway was disconnected (it
    /// arrived before this connection's subscriptions were confirmed).
    Queued,
}

/// The value a command asks for, as it came: JSON numbers, booleans and
/// strings, not yet fitted to the tag's type (the desk does that, so a
/// wrong type is a result on the record rather than a parse error).
#[derive(Debug, Clone, PartialEq)]
pub enum Requested {
    /// A JSON boolean.
    Bool(bool),
    /// A JSON number.
    Number(f64),
    /// A JSON string.
    Text(String),
    /// The payload could not be read as a command (why): kept as a
    /// command so that the refusal is on the record and answered.
    Malformed(String),
}

impl fmt::Display for Requested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Requested::Bool(b) => write!(f, "{b}"),
            Requested::Number(x) => write!(f, "{x}"),
            Requested::Text(s) => write!(f, "{s:?}"),
            Requested::Malformed(_) => f.write_str("(unreadable)"),
        }
    }
}

/// One write command, read from whichever path it came by.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteCommand {
    /// The device, by name.
    pub device: String,
    /// The tag, by name.
    pub tag: String,
    /// What to write, in engineering units.
    pub value: Requested,
    /// The sender's id for the command, echoed in the result (cut to a
    /// sane length by the parser).
    pub id: Option<String>,
    /// Who asks (a person or a system), for the record.
    pub by: Option<String>,
    /// When the sender says it sent the command, if it says.
    pub sent: Option<SystemTime>,
    /// When the gateway received it (wall clock).
    pub received: SystemTime,
    /// The path it came by.
    pub source: Source,
    /// How it was delivered.
    pub delivery: Delivery,
}

/// Why a command was not carried out. Nothing was written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RejectReason {
    /// No device or tag of that name.
    #[error("unknown tag {device}/{tag}")]
    UnknownTag {
        /// Device asked.
        device: String,
        /// Tag asked.
        tag: String,
    },
    /// The tag is not made writable in the configuration.
    #[error("tag is not writable (set `writable = true` on it)")]
    NotWritable,
    /// The payload could not be read as a command.
    #[error("bad payload: {0}")]
    BadPayload(String),
    /// The value does not suit the tag's type.
    #[error("wrong type: {0}")]
    WrongType(String),
    /// Outside the tag's `min`/`max`, or not one of its `allowed` values.
    #[error("out of range: {0}")]
    OutOfRange(String),
    /// Fits the limits but not the register (after inverse scaling).
    #[error("does not fit the register: {0}")]
    NotRepresentable(String),
    /// More writes to this tag in the last minute than `max_rate`.
    #[error("rate limit: at most {per_minute} writes a minute to this tag")]
    Rate {
        /// The tag's `max_rate`.
        per_minute: u32,
    },
    /// Older than `[writes] max_age`, retained, or queued while the
    /// gateway was disconnected.
    #[error("stale: {0}")]
    Stale(String),
    /// The device is down or its link cannot be opened; nothing was sent.
    #[error("device down: {0}")]
    DeviceDown(String),
    /// The device answered the write with a Modbus exception: it refused
    /// it, nothing changed.
    #[error("device refused the write: {0}")]
    Refused(String),
    /// The gateway is stopping, reloading, or too busy to take it.
    #[error("not accepted now: {0}")]
    Busy(String),
}

impl RejectReason {
    /// A short stable word for the reason, in results and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::UnknownTag { .. } => "unknown_tag",
            RejectReason::NotWritable => "not_writable",
            RejectReason::BadPayload(_) => "bad_payload",
            RejectReason::WrongType(_) => "wrong_type",
            RejectReason::OutOfRange(_) => "out_of_range",
            RejectReason::NotRepresentable(_) => "not_representable",
            RejectReason::Rate { .. } => "rate",
            RejectReason::Stale(_) => "stale",
            RejectReason::DeviceDown(_) => "device_down",
            RejectReason::Refused(_) => "device_refused",
            RejectReason::Busy(_) => "busy",
        }
    }
}

/// What came of a command.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteResult {
    /// Not carried out; nothing was written.
    Rejected(RejectReason),
    /// The device acknowledged the write. With `confirm`, the read-back
    /// did not match or could not be made (`note` says which).
    Written {
        /// Why it is not `verified`, when confirmation was asked.
        note: Option<String>,
    },
    /// Written, and read back equal (after scale and word order).
    Verified,
    /// No answer to the write: it may or may not have happened. Never
    /// retried: a pulse or a counter reset is not idempotent.
    Unknown(String),
}

impl WriteResult {
    /// `rejected`, `written`, `verified` or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteResult::Rejected(_) => "rejected",
            WriteResult::Written { .. } => "written",
            WriteResult::Verified => "verified",
            WriteResult::Unknown(_) => "unknown",
        }
    }

    /// The reason or note, for people.
    pub fn reason(&self) -> Option<String> {
        match self {
            WriteResult::Rejected(r) => Some(r.to_string()),
            WriteResult::Written { note } => note.clone(),
            WriteResult::Verified => None,
            WriteResult::Unknown(why) => Some(why.clone()),
        }
    }
}

/// The whole record of one command: what was asked, the values before and
/// after, and the result. Published on the result topic, kept in the
/// history, returned to the status page.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteReport {
    /// The command.
    pub command: WriteCommand,
    /// The value the device held just before the write (read on the
    /// link's task), when it was read.
    pub old: Option<Value>,
    /// The value written, in engineering units, as fitted to the tag.
    pub written: Option<Value>,
    /// The value read back after the write, when confirmation was made.
    pub read_back: Option<Value>,
    /// What came of it.
    pub result: WriteResult,
    /// When the result was known (wall clock).
    pub at: SystemTime,
    /// How long the command took from receipt to result.
    pub took: Duration,
}

/// A command on its way to the write desk, with where to send the report
/// (the status page waits for it; MQTT and Sparkplug get theirs
/// published).
#[derive(Debug)]
pub struct WriteOrder {
    /// The command.
    pub command: WriteCommand,
    /// Receives the report, when someone waits for it.
    pub reply: Option<oneshot::Sender<WriteReport>>,
}

impl WriteOrder {
    /// An order nobody waits on (its report is published).
    pub fn new(command: WriteCommand) -> WriteOrder {
        WriteOrder {
            command,
            reply: None,
        }
    }

    /// An order whose report the returned receiver gets.
    pub fn waited(command: WriteCommand) -> (WriteOrder, oneshot::Receiver<WriteReport>) {
        let (tx, rx) = oneshot::channel();
        (
            WriteOrder {
                command,
                reply: Some(tx),
            },
            rx,
        )
    }
}

/// Capacity of the channel into the write desk: commands are rare; a
/// burst beyond this is refused as busy rather than queued late.
pub const ORDERS_CAPACITY: usize = 64;

/// Counters of the write desk, read by the metrics and the status.
#[derive(Debug, Default)]
pub struct WriteStats {
    /// Commands received, by any path.
    pub received: std::sync::atomic::AtomicU64,
    /// Results `rejected`.
    pub rejected: std::sync::atomic::AtomicU64,
    /// Results `written`.
    pub written: std::sync::atomic::AtomicU64,
    /// Results `verified`.
    pub verified: std::sync::atomic::AtomicU64,
    /// Results `unknown`.
    pub unknown: std::sync::atomic::AtomicU64,
}

impl WriteStats {
    /// Counts one result.
    pub fn count(&self, result: &WriteResult) {
        use std::sync::atomic::Ordering::Relaxed;
        let counter = match result {
            WriteResult::Rejected(_) => &self.rejected,
            WriteResult::Written { .. } => &self.written,
            WriteResult::Verified => &self.verified,
            WriteResult::Unknown(_) => &self.unknown,
        };
        counter.fetch_add(1, Relaxed);
    }
}
