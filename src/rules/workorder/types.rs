//! The work order and what it is made of: its type, status, source and
//! trigger, the readings copied into it and the CMMS's status reports;
//! the status updates the book takes, and the changes it hands back to be
//! published.
//!
//! The work order and its parts are serde because the whole book is saved
//! and restored exactly: their field names are the saved layout, so
//! renaming one breaks every saved book.

use serde::{Deserialize, Serialize};

use crate::config::Priority;
use crate::rules::TagReading;
use crate::rules::meter::Measure;
use crate::rules::time::Timestamp;
use crate::tag::Value;

/// The rule name of the flood guard's work orders.
pub const FLOOD_RULE: &str = "alarm_flood";

/// Corrective (an alarm) or preventive (a meter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WoType {
    /// Raised by an alarm (or the flood guard).
    Corrective,
    /// Raised by a meter reaching its threshold.
    Preventive,
}

impl WoType {
    /// The payload name.
    pub fn as_str(self) -> &'static str {
        match self {
            WoType::Corrective => "corrective",
            WoType::Preventive => "preventive",
        }
    }
}

/// Where a work order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WoStatus {
    /// Raised by fieldgate; the CMMS has not answered yet.
    Open,
    /// The CMMS accepted it.
    Accepted,
    /// Someone works on it.
    InProgress,
    /// Done: the slot is free for the next activation.
    Closed,
    /// Cancelled in the CMMS: ended like `Closed` (the slot is free), and
    /// told apart in the payload and the history.
    Cancelled,
}

impl WoStatus {
    /// The payload name.
    pub fn as_str(self) -> &'static str {
        match self {
            WoStatus::Open => "open",
            WoStatus::Accepted => "accepted",
            WoStatus::InProgress => "in_progress",
            WoStatus::Closed => "closed",
            WoStatus::Cancelled => "cancelled",
        }
    }

    /// Whether the work order has ended (closed or cancelled): its slot is
    /// free for the next activation.
    pub fn is_end(self) -> bool {
        matches!(self, WoStatus::Closed | WoStatus::Cancelled)
    }

    /// True until closed.
    pub fn is_open(self) -> bool {
        self != WoStatus::Closed
    }

    /// A status the CMMS may report: `accepted`, `in_progress`, `closed`
    /// (any case; `-` or a space for `_`). `open` is fieldgate's own.
    pub fn parse_cmms(text: &str) -> Option<WoStatus> {
        match text
            .trim()
            .to_ascii_lowercase()
            .replace(['-', ' '], "_")
            .as_str()
        {
            "accepted" => Some(WoStatus::Accepted),
            "in_progress" => Some(WoStatus::InProgress),
            "closed" => Some(WoStatus::Closed),
            "cancelled" | "canceled" => Some(WoStatus::Cancelled),
            _ => None,
        }
    }
}

/// What a work order is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WoSource {
    /// A rule's alarm.
    Rule(String),
    /// A maintenance meter.
    Meter(String),
    /// The flood guard.
    Flood,
}

impl WoSource {
    /// The rule, meter or flood-guard name (`alarm_flood`).
    pub fn name(&self) -> &str {
        match self {
            WoSource::Rule(n) | WoSource::Meter(n) => n,
            WoSource::Flood => FLOOD_RULE,
        }
    }

    /// The source's part of the idempotency key.
    pub(super) fn key_part(&self) -> String {
        match self {
            WoSource::Rule(n) => n.clone(),
            WoSource::Meter(n) => format!("meter:{n}"),
            WoSource::Flood => format!("gateway:{FLOOD_RULE}"),
        }
    }

    /// The slot key: `{source}/{asset}` (the source holds no `/`).
    pub(super) fn slot(&self, asset: &str) -> String {
        format!("{}/{asset}", self.key_part())
    }
}

/// What raised a work order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WoTrigger {
    /// An alarm's activation (also the flood guard's, with rule
    /// `alarm_flood` and condition `flood`).
    Alarm {
        /// The rule.
        rule: String,
        /// The tag the condition watches; `None` for `expr` and the flood.
        tag: Option<String>,
        /// The value judged (see [`Trigger`](crate::rules::Trigger)).
        #[serde(with = "super::serde_fields::opt_value")]
        value: Option<Value>,
        /// The limit it was compared with.
        #[serde(with = "super::serde_fields::opt_value")]
        limit: Option<Value>,
        /// Unit of value and limit (`degC`, `degC/s` for a rate, `s` for
        /// stale).
        unit: Option<String>,
        /// The condition kind (`above`, …, `expr`, `flood`).
        condition: String,
        /// When the alarm activated (after its on-delay).
        since: Timestamp,
    },
    /// A meter reaching its threshold.
    Meter {
        /// The meter.
        meter: String,
        /// The boolean tag it watches.
        tag: String,
        /// Runtime or count.
        kind: Measure,
        /// The meter's value when due (hours or count).
        #[serde(with = "crate::rules::saved::f64_text")]
        value: f64,
        /// The threshold reached.
        #[serde(with = "crate::rules::saved::f64_text")]
        threshold: f64,
        /// When the threshold was reached.
        since: Timestamp,
    },
}

impl WoTrigger {
    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        match self {
            WoTrigger::Alarm { tag, .. } => tag.as_deref(),
            WoTrigger::Meter { tag, .. } => Some(tag),
        }
    }

    /// The unit of value and limit.
    pub fn unit(&self) -> Option<&str> {
        match self {
            WoTrigger::Alarm { unit, .. } => unit.as_deref(),
            WoTrigger::Meter { kind, .. } => Some(kind.unit()),
        }
    }

    /// When it happened.
    pub fn since(&self) -> Timestamp {
        match self {
            WoTrigger::Alarm { since, .. } | WoTrigger::Meter { since, .. } => *since,
        }
    }
}

/// One tag's last reading, copied into a work order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotEntry {
    /// Full tag name.
    pub tag: String,
    /// The value, when the last reading was good.
    #[serde(with = "super::serde_fields::opt_value")]
    pub value: Option<Value>,
    /// Quality of the last reading (`good`, `bad:timeout`); `None` before
    /// the first.
    pub quality: Option<String>,
    /// Engineering unit.
    pub unit: Option<String>,
    /// When the last reading was taken.
    pub at: Option<Timestamp>,
}

impl From<TagReading> for SnapshotEntry {
    /// Keeps the value only when the last reading is good (as the data
    /// topics do: `v` is null when the quality is bad).
    fn from(r: TagReading) -> SnapshotEntry {
        let good = r.quality.as_ref().is_some_and(|q| q.is_good()) && r.at == r.good_at;
        SnapshotEntry {
            tag: r.name,
            value: if good { r.value } else { None },
            quality: r.quality.map(|q| q.to_string()),
            unit: r.unit,
            at: r.at,
        }
    }
}

/// The latest occurrence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Last {
    /// The value judged (for a meter, its value).
    #[serde(with = "super::serde_fields::opt_value")]
    pub value: Option<Value>,
    /// When.
    pub at: Timestamp,
}

/// One status report from the CMMS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The reported status.
    pub status: WoStatus,
    /// When fieldgate received it.
    pub at: Timestamp,
    /// The CMMS's own reference.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// Who changed it.
    pub by: Option<String>,
    /// Free text.
    pub note: Option<String>,
}

impl StatusReport {
    pub(super) fn same_as(&self, other: &StatusReport) -> bool {
        self.status == other.status
            && self.reference == other.reference
            && self.by == other.by
            && self.note == other.note
    }
}

/// A status the CMMS reports for a work order, as the book applies it.
/// The pipeline reads it from the CMMS's message, so the book never sees
/// the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The reported status: one the CMMS may report (`accepted`,
    /// `in_progress`, `closed`; see [`WoStatus::parse_cmms`]).
    pub status: WoStatus,
    /// The CMMS's own reference, if it gave one.
    pub cmms_ref: Option<String>,
    /// Who changed it.
    pub by: Option<String>,
    /// Free text.
    pub note: Option<String>,
}

/// One work order, as the book keeps it and as it is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrder {
    /// ULID; also the last topic level (`.../workorders/{id}`).
    pub id: String,
    /// Stable idempotency key (the `workorder` module docs).
    pub key: String,
    /// Corrective or preventive.
    #[serde(rename = "type")]
    pub kind: WoType,
    /// Open, accepted, in progress or closed.
    pub status: WoStatus,
    /// The rule's or meter's priority.
    #[serde(with = "super::serde_fields::priority_text")]
    pub priority: Priority,
    /// When raised.
    pub created_at: Timestamp,
    /// When last changed (update or status).
    pub updated_at: Timestamp,
    /// Rule, meter or flood guard.
    pub source: WoSource,
    /// Site id.
    pub site: String,
    /// Gateway id.
    pub gateway: String,
    /// Asset id.
    pub asset: String,
    /// Location.
    pub location: Option<String>,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// The CMMS problem code.
    pub problem_code: Option<String>,
    /// SOP / procedure reference.
    pub procedure: Option<String>,
    /// What raised it.
    pub trigger: WoTrigger,
    /// Readings of the template's `snapshot` tags when it was raised.
    pub readings: Vec<SnapshotEntry>,
    /// Activations counted: 1 when raised, + 1 per update.
    pub occurrences: u64,
    /// The latest occurrence.
    pub last: Last,
    /// The CMMS's reference, once it gave one.
    pub cmms_ref: Option<String>,
    /// Status reports from the CMMS, oldest first (the last
    /// [`MAX_HISTORY`](super::MAX_HISTORY)).
    pub history: Vec<StatusReport>,
}

impl WorkOrder {
    /// The rule that raised it (not for meters and the flood guard).
    pub fn rule(&self) -> Option<&str> {
        match &self.source {
            WoSource::Rule(n) => Some(n),
            _ => None,
        }
    }

    /// The meter that raised it: when it closes, call
    /// [`MeterState::on_work_order_closed`](crate::rules::meter::MeterState::on_work_order_closed).
    pub fn meter(&self) -> Option<&str> {
        match &self.source {
            WoSource::Meter(n) => Some(n),
            _ => None,
        }
    }

    /// The last status report, if any.
    pub fn last_report(&self) -> Option<&StatusReport> {
        self.history.last()
    }
}

/// One thing the caller publishes (and persists, by saving the book).
#[derive(Debug, Clone, PartialEq)]
pub enum WoChange {
    /// A new work order: publish it retained on `.../workorders/{id}`.
    Raised(Box<WorkOrder>),
    /// An open work order changed (another occurrence, or a status from
    /// the CMMS): republish it retained.
    Updated(Box<WorkOrder>),
    /// The activation tripped the flood guard: it raised no work order of
    /// its own. The flood work order was raised (occurrences 1) or, when
    /// the previous flood's is still open, updated: publish it retained.
    FloodRaised(Box<WorkOrder>),
    /// The flood guard held this activation: alarm only, no work order.
    Held {
        /// The rule.
        rule: String,
        /// The asset.
        asset: String,
    },
    /// The CMMS closed the work order: publish an empty retained message
    /// on `.../workorders/{id}` to clear it. For a preventive work order,
    /// tell its meter ([`WorkOrder::meter`]).
    Cleared(Box<WorkOrder>),
}

impl WoChange {
    /// The work order concerned (all but `Held`).
    pub fn work_order(&self) -> Option<&WorkOrder> {
        match self {
            WoChange::Raised(w)
            | WoChange::Updated(w)
            | WoChange::FloodRaised(w)
            | WoChange::Cleared(w) => Some(w),
            WoChange::Held { .. } => None,
        }
    }
}

/// Why a status from the CMMS was not applied. The caller logs it; the
/// book is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WoError {
    /// No work order has this id (never raised, or closed long ago).
    #[error("status for unknown work order \"{0}\"")]
    UnknownId(String),
}
