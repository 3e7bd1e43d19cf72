//! Work orders: one open work order per rule (or meter) and asset, the
//! status the CMMS reports back, and the flood guard.
//!
//! Pure like the rest of `rules/`: no I/O, no clock, no randomness of its
//! own. The rules task feeds [`AlarmEvent`]s, meter [`MeterDue`]s and the
//! CMMS's status messages into a [`WorkOrderBook`], commits the book and
//! publishes what the returned [`WoChange`]s say (payloads in
//! `payload.rs`). Time comes from the event (or is passed in), and the
//! 80 random bits of each ULID are passed in by the caller, so tests are
//! deterministic.
//!
//! # Slots
//!
//! A *slot* is what a work order is about: a rule, a meter or the flood
//! guard ([`WoSource`]), and an asset. A slot holds at most one open work
//! order (status `open`, `accepted` or `in_progress`); the book keeps an
//! index from slot to that work order.
//!
//! # Raising and updating
//!
//! For each [`AlarmEvent`] of a rule (the asset is the rule's, see
//! [`WoContext::asset_for`]):
//!
//! * an event that is not an activation changes nothing (acks, returns to
//!   normal, shelving);
//! * an activation *by the condition* (`cause == Condition`) while the
//!   slot's work order is open **updates** it: `occurrences + 1`, `last`
//!   value and time, `updated_at`, re-rendered texts. This holds even when
//!   the activation may not raise (`raise_work_order == false`: shelved or
//!   chattering): it is still an occurrence the maintainer should count,
//!   and an update never creates a work order. Activations by the end of a
//!   shelf re-announce an alarm whose occurrence was already counted, so
//!   they do not update;
//! * otherwise an activation **raises** a work order only when
//!   `raise_work_order` is true (not shelved, not chattering) and the
//!   rule's template is enabled, subject to the flood guard.
//!
//! A meter's [`MeterDue`] raises a preventive work order the same way
//! (never held by the flood guard: preventive work is scheduled, not an
//! alarm, and the meter reports each threshold only once).
//!
//! # Idempotency key
//!
//! `{site}/{gateway}/{source}/{asset}/{n}`, where `{source}` is the rule
//! name, `meter:{name}` for a meter or `gateway:alarm_flood` for the flood
//! guard (names cannot hold `:` or `/`, so the three never collide), and
//! `n` counts the work orders raised for the slot so far, this one
//! included (1, 2, 3, …). The counter is part of the persisted book, so a
//! gateway that crashed after publishing but before saving the book raises
//! the same work order again with the same key (and a new ULID): the CMMS
//! drops it as a duplicate.
//!
//! # Status from the CMMS
//!
//! [`WorkOrderBook::on_status`] reads `{"status": "accepted" |
//! "in_progress" | "closed", "ref": "CMMS-123", "by": "...", "note":
//! "..."}` (only `status` is required; other fields are ignored) and
//! records it in the work order's history. `accepted` and `in_progress`
//! republish the work order ([`WoChange::Updated`]); `closed` frees the
//! slot and yields [`WoChange::Cleared`], for which the caller publishes
//! an empty retained message on the work order's topic. The next
//! activation raises a new work order. A status for a closed work order,
//! or one identical to the last recorded, changes nothing.
//!
//! # Flood guard
//!
//! The guard remembers the times of the last `flood_limit` *attempts* to
//! raise a corrective work order (raised or held; updates are not
//! attempts). An attempt at `t` counts the remembered attempts younger
//! than `flood_window` (`t - a < window`):
//!
//! * fewer than `flood_limit`: the work order is raised ([`WoChange::Raised`])
//!   and any flood is over;
//! * `flood_limit` or more, no flood yet: this attempt starts a flood. It
//!   raises no work order of its own; instead one "alarm flood" work order
//!   (rule `alarm_flood`, asset = gateway id, title `Alarm flood: N work
//!   orders in M minutes`) is raised, or updated if the previous flood's is
//!   still open ([`WoChange::FloodRaised`]);
//! * `flood_limit` or more during a flood: held, the alarm stays an alarm
//!   only ([`WoChange::Held`]).
//!
//! So with the default 10 in 10 minutes, twelve rules activating within a
//! minute give ten work orders, one flood work order and one held
//! activation. Held attempts count towards the window, so the flood lasts
//! until the *attempt* rate falls below the limit, not merely until ten
//! minutes after the last raise. A held activation is not raised later.
//! Memory is bounded: the guard keeps `flood_limit` times at most. Times
//! slightly out of order (batches of two devices) are counted as they
//! come; a clock that went back by more than the window empties it.
//!
//! # Texts
//!
//! Titles and descriptions come from the template (`title`,
//! `description`) with [`PLACEHOLDERS`] filled in, or a default text.
//! They are rendered when raised and again on every update; every
//! placeholder but `{occurrences}` refers to the activation that raised
//! the work order (`{value}`, `{limit}`, `{since}`), so only the count
//! moves. For a meter, `{rule}` and `{meter}` are the meter's name,
//! `{limit}` the threshold and `{condition}` `runtime` or `count`. Numbers
//! are written with up to three decimals (`80`, `80.25`, `1.2e-4`), times
//! as RFC 3339 UTC seconds.
//!
//! # Persistence and bounds
//!
//! The whole book is serde (`Serialize`/`Deserialize`) and restores
//! exactly, including the flood guard's memory. After restoring, call
//! [`WorkOrderBook::set_config`] with the running config (a reload may
//! have changed the flood guard). The book keeps every open work order, at
//! most [`MAX_CLOSED`] closed ones (oldest dropped first; a late status for
//! a dropped one is an unknown id) and the last [`MAX_HISTORY`] status
//! reports of each.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TagReading;
use super::alarm::{AlarmEvent, Cause};
use super::meter::{Measure, MeterDue};
use super::saved::SavedValue;
use super::time::{Timestamp, millis};
use crate::config::{
    Condition, Config, Device, GatewayConfig, Meter, PLACEHOLDERS, Priority, Rule, WorkOrderConfig,
    WorkOrderTemplate,
};
use crate::tag::{Tag, Value};

/// Layout version of a serialized [`WorkOrderBook`].
pub const BOOK_VERSION: u32 = 1;

/// Closed work orders kept for late or repeated status messages.
pub const MAX_CLOSED: usize = 256;

/// Status reports kept per work order (the newest).
pub const MAX_HISTORY: usize = 32;

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
}

impl WoStatus {
    /// The payload name.
    pub fn as_str(self) -> &'static str {
        match self {
            WoStatus::Open => "open",
            WoStatus::Accepted => "accepted",
            WoStatus::InProgress => "in_progress",
            WoStatus::Closed => "closed",
        }
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
    fn key_part(&self) -> String {
        match self {
            WoSource::Rule(n) => n.clone(),
            WoSource::Meter(n) => format!("meter:{n}"),
            WoSource::Flood => format!("gateway:{FLOOD_RULE}"),
        }
    }

    /// The slot key: `{source}/{asset}` (the source holds no `/`).
    fn slot(&self, asset: &str) -> String {
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
        /// The value judged (see [`Trigger`](super::Trigger)).
        #[serde(with = "opt_value")]
        value: Option<Value>,
        /// The limit it was compared with.
        #[serde(with = "opt_value")]
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
        #[serde(with = "super::saved::f64_text")]
        value: f64,
        /// The threshold reached.
        #[serde(with = "super::saved::f64_text")]
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
    #[serde(with = "opt_value")]
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
    #[serde(with = "opt_value")]
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
    fn same_as(&self, other: &StatusReport) -> bool {
        self.status == other.status
            && self.reference == other.reference
            && self.by == other.by
            && self.note == other.note
    }
}

/// One work order, as the book keeps it and as it is published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrder {
    /// ULID; also the last topic level (`.../workorders/{id}`).
    pub id: String,
    /// Stable idempotency key (module docs).
    pub key: String,
    /// Corrective or preventive.
    #[serde(rename = "type")]
    pub kind: WoType,
    /// Open, accepted, in progress or closed.
    pub status: WoStatus,
    /// The rule's or meter's priority.
    #[serde(with = "priority_text")]
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
    /// [`MAX_HISTORY`]).
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
    /// [`MeterState::on_work_order_closed`](super::meter::MeterState::on_work_order_closed).
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

    /// A placeholder's value, for templates.
    fn placeholder(&self, name: &str) -> String {
        let tag = self.trigger.tag().unwrap_or_default();
        match name {
            "rule" => self.source.name().to_owned(),
            "meter" => self.meter().unwrap_or_default().to_owned(),
            "tag" => tag.to_owned(),
            "device" => tag
                .split_once('.')
                .map(|(d, _)| d)
                .unwrap_or_default()
                .to_owned(),
            "value" => match &self.trigger {
                WoTrigger::Alarm { value, .. } => value.as_ref().map(format_value),
                WoTrigger::Meter { value, .. } => Some(format_number(*value)),
            }
            .unwrap_or_default(),
            "limit" => match &self.trigger {
                WoTrigger::Alarm { limit, .. } => limit.as_ref().map(format_value),
                WoTrigger::Meter { threshold, .. } => Some(format_number(*threshold)),
            }
            .unwrap_or_default(),
            "unit" => self.trigger.unit().unwrap_or_default().to_owned(),
            "condition" => match &self.trigger {
                WoTrigger::Alarm { condition, .. } => condition.clone(),
                WoTrigger::Meter { kind, .. } => kind.as_str().to_owned(),
            },
            "since" => format_time(self.trigger.since()),
            "asset" => self.asset.clone(),
            "location" => self.location.clone().unwrap_or_default(),
            "site" => self.site.clone(),
            "gateway" => self.gateway.clone(),
            "priority" => self.priority.as_str().to_owned(),
            "problem_code" => self.problem_code.clone().unwrap_or_default(),
            "procedure" => self.procedure.clone().unwrap_or_default(),
            "occurrences" => self.occurrences.to_string(),
            _ => String::new(),
        }
    }

    /// Renders title and description from `template`, or the defaults.
    /// The flood guard's texts are set where it raises them.
    fn render(&mut self, template: &WorkOrderTemplate) {
        if self.source == WoSource::Flood {
            return;
        }
        self.title = match &template.title {
            Some(t) => fill(t, |p| self.placeholder(p)),
            None => self.default_title(),
        };
        self.description = match &template.description {
            Some(t) => fill(t, |p| self.placeholder(p)),
            None => self.default_description(),
        };
    }

    fn default_title(&self) -> String {
        match &self.trigger {
            WoTrigger::Alarm {
                limit,
                unit,
                condition,
                ..
            } => {
                let mut phrase = condition.clone();
                if let Some(limit) = limit {
                    phrase.push(' ');
                    phrase.push_str(&with_unit(&format_value(limit), unit.as_deref()));
                }
                format!("{}: {} ({phrase})", self.asset, self.source.name())
            }
            WoTrigger::Meter {
                meter,
                kind,
                threshold,
                ..
            } => format!(
                "{}: preventive maintenance at {} ({meter})",
                self.asset,
                with_unit(&format_number(*threshold), Some(kind.unit()))
            ),
        }
    }

    fn default_description(&self) -> String {
        let mut d = String::new();
        match &self.trigger {
            WoTrigger::Alarm {
                rule,
                tag,
                value,
                limit,
                unit,
                condition,
                since,
            } => {
                let _ = write!(
                    d,
                    "Alarm {rule} ({condition}) became active at {}",
                    format_time(*since)
                );
                if let Some(tag) = tag {
                    let _ = write!(d, " on {tag}");
                }
                if let Some(value) = value {
                    let _ = write!(
                        d,
                        ": value {}",
                        with_unit(&format_value(value), unit.as_deref())
                    );
                    if let Some(limit) = limit {
                        let _ = write!(
                            d,
                            ", limit {}",
                            with_unit(&format_value(limit), unit.as_deref())
                        );
                    }
                }
                let _ = write!(d, ". Occurrences: {}.", self.occurrences);
            }
            WoTrigger::Meter {
                meter,
                tag,
                kind,
                value,
                threshold,
                since,
            } => {
                let _ = write!(
                    d,
                    "Meter {meter} ({} of {tag}) reached {} at {}: preventive maintenance due at {}.",
                    kind.as_str(),
                    with_unit(&format_number(*value), Some(kind.unit())),
                    format_time(*since),
                    with_unit(&format_number(*threshold), Some(kind.unit())),
                );
            }
        }
        if let Some(p) = &self.procedure {
            let _ = write!(d, " Procedure: {p}.");
        }
        d
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

/// Why a status message from the CMMS was not applied. The caller logs
/// it; the book is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WoError {
    /// No work order has this id (never raised, or closed long ago).
    #[error("status for unknown work order \"{0}\"")]
    UnknownId(String),
    /// The message is not the expected JSON object.
    #[error("work order {id}: status message is not valid: {reason}")]
    Malformed {
        /// The work order.
        id: String,
        /// What is wrong.
        reason: String,
    },
    /// The status is not one the CMMS may report.
    #[error(
        "work order {id}: unknown status \"{status}\"; expected accepted, in_progress or closed"
    )]
    UnknownStatus {
        /// The work order.
        id: String,
        /// What was sent.
        status: String,
    },
}

/// What the book needs from the configuration to fill in a work order.
#[derive(Debug, Clone, Copy)]
pub struct WoContext<'a> {
    /// Site id.
    pub site: &'a str,
    /// Gateway id (also the flood work order's asset).
    pub gateway: &'a str,
    /// The gateway's location (the last default for locations).
    pub location: Option<&'a str>,
    /// The devices, for tags' assets and units and devices' locations.
    pub devices: &'a [Arc<Device>],
}

impl<'a> WoContext<'a> {
    /// From `[gateway]` and the devices.
    pub fn new(gateway: &'a GatewayConfig, devices: &'a [Arc<Device>]) -> WoContext<'a> {
        WoContext {
            site: &gateway.site,
            gateway: &gateway.id,
            location: gateway.location.as_deref(),
            devices,
        }
    }

    /// From a whole configuration.
    pub fn of(config: &'a Config) -> WoContext<'a> {
        WoContext::new(&config.gateway, &config.devices)
    }

    /// A tag by full name (`device.tag`) and its device.
    pub fn tag(&self, full: &str) -> Option<(&'a Device, &'a Tag)> {
        let (device, tag) = full.split_once('.')?;
        let device = self.devices.iter().find(|d| d.name == device)?;
        Some((device, device.tag(tag)?))
    }

    /// The asset: `explicit` (the rule's or meter's), else the tag's, else
    /// its device's, else the gateway id.
    pub fn asset_for(&self, explicit: Option<&str>, tag: Option<&str>) -> String {
        if let Some(a) = explicit {
            return a.to_owned();
        }
        let found = tag.and_then(|t| self.tag(t));
        found
            .and_then(|(d, t)| t.asset.as_deref().or(d.asset.as_deref()))
            .unwrap_or(self.gateway)
            .to_owned()
    }

    /// The location: `explicit`, else the tag's device's, else the
    /// gateway's.
    pub fn location_for(&self, explicit: Option<&str>, tag: Option<&str>) -> Option<String> {
        explicit
            .or_else(|| {
                tag.and_then(|t| self.tag(t))
                    .and_then(|(d, _)| d.location.as_deref())
            })
            .or(self.location)
            .map(str::to_owned)
    }

    /// The tag's engineering unit.
    fn unit(&self, tag: &str) -> Option<&'a str> {
        self.tag(tag).and_then(|(_, t)| t.unit.as_deref())
    }
}

/// The tag a condition watches, or the first of an `expr` (for defaults).
fn condition_tag(condition: &Condition) -> Option<&str> {
    match condition {
        Condition::Above { tag, .. }
        | Condition::Below { tag, .. }
        | Condition::Outside { tag, .. }
        | Condition::Rate { tag, .. }
        | Condition::Stale { tag, .. }
        | Condition::Equals { tag, .. } => Some(tag),
        Condition::Expr { tags, .. } => tags.first().map(String::as_str),
    }
}

/// The unit of a condition's trigger value and limit.
fn trigger_unit(condition: &Condition, ctx: &WoContext<'_>) -> Option<String> {
    match condition {
        Condition::Above { tag, .. }
        | Condition::Below { tag, .. }
        | Condition::Outside { tag, .. }
        | Condition::Equals { tag, .. } => ctx.unit(tag).map(str::to_owned),
        Condition::Rate { tag, per, .. } => {
            let per = match per.as_secs() {
                1 if per.subsec_nanos() == 0 => "s".to_owned(),
                60 if per.subsec_nanos() == 0 => "min".to_owned(),
                3600 if per.subsec_nanos() == 0 => "h".to_owned(),
                _ => humantime::format_duration(*per).to_string(),
            };
            Some(format!("{}/{per}", ctx.unit(tag).unwrap_or("1")))
        }
        Condition::Stale { .. } => Some("s".to_owned()),
        Condition::Expr { .. } => None,
    }
}

/// The fixed part of a new work order.
struct Draft {
    kind: WoType,
    source: WoSource,
    priority: Priority,
    asset: String,
    location: Option<String>,
    problem_code: Option<String>,
    procedure: Option<String>,
    trigger: WoTrigger,
    readings: Vec<SnapshotEntry>,
    last: Last,
}

/// What the flood guard says about one attempt to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    Raise,
    Trip,
    Hold,
}

/// The flood guard's memory (module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct FloodGuard {
    /// `flood_limit`; 0 disables the guard.
    limit: u32,
    /// `flood_window` in milliseconds.
    window_ms: u64,
    /// The last `limit` attempts, oldest first.
    recent: VecDeque<Timestamp>,
    /// A flood is on.
    flooding: bool,
    /// Attempts that raised no work order of their own (tripped or held).
    held: u64,
}

impl FloodGuard {
    fn new(config: &WorkOrderConfig) -> FloodGuard {
        FloodGuard {
            limit: config.flood_limit,
            window_ms: millis(config.flood_window),
            recent: VecDeque::new(),
            flooding: false,
            held: 0,
        }
    }

    /// Attempts younger than the window at `at`, after forgetting older
    /// ones. Attempts slightly "in the future" (batches of two devices
    /// arrive out of time order) count as young; a clock that went back by
    /// more than the window forgets them all.
    fn prune(&mut self, at: Timestamp) -> usize {
        if self
            .recent
            .back()
            .is_some_and(|&t| t.millis_since(at) > self.window_ms)
        {
            self.recent.clear();
        }
        while self
            .recent
            .front()
            .is_some_and(|&t| at.millis_since(t) >= self.window_ms)
        {
            self.recent.pop_front();
        }
        self.recent.len()
    }

    fn admit(&mut self, at: Timestamp) -> Admit {
        if self.limit == 0 {
            return Admit::Raise;
        }
        let limit = self.limit as usize;
        let verdict = if self.prune(at) >= limit {
            self.held += 1;
            if self.flooding {
                Admit::Hold
            } else {
                self.flooding = true;
                Admit::Trip
            }
        } else {
            self.flooding = false;
            Admit::Raise
        };
        self.recent.push_back(at);
        while self.recent.len() > limit {
            self.recent.pop_front();
        }
        verdict
    }

    /// `Alarm flood: 11 work orders in 10 minutes`.
    fn title(&self) -> String {
        format!(
            "Alarm flood: {} work orders in {}",
            u64::from(self.limit) + 1,
            window_text(self.window_ms)
        )
    }
}

/// `10 minutes`, `1 minute`, `90 seconds`, `1.5 seconds`.
fn window_text(ms: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if ms.is_multiple_of(60_000) {
        plural(ms / 60_000, "minute")
    } else if ms.is_multiple_of(1000) {
        plural(ms / 1000, "second")
    } else {
        format!("{} seconds", format_number(ms as f64 / 1000.0))
    }
}

/// Every work order of the gateway and the state that decides the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderBook {
    /// [`BOOK_VERSION`].
    version: u32,
    /// Every kept work order by id (ULIDs sort by creation time).
    orders: BTreeMap<String, WorkOrder>,
    /// Slot (`{source}/{asset}`) → id of its open work order.
    open: BTreeMap<String, String>,
    /// Slot → work orders raised for it so far (the key's `n`).
    raised: BTreeMap<String, u64>,
    /// The flood guard.
    flood: FloodGuard,
}

impl WorkOrderBook {
    /// An empty book.
    pub fn new(config: &WorkOrderConfig) -> WorkOrderBook {
        WorkOrderBook {
            version: BOOK_VERSION,
            orders: BTreeMap::new(),
            open: BTreeMap::new(),
            raised: BTreeMap::new(),
            flood: FloodGuard::new(config),
        }
    }

    /// Applies the running `[workorders]` (after a restore or a reload).
    /// The guard's memory is kept; a smaller limit forgets the oldest
    /// attempts beyond it.
    pub fn set_config(&mut self, config: &WorkOrderConfig) {
        self.flood.limit = config.flood_limit;
        self.flood.window_ms = millis(config.flood_window);
        while self.flood.recent.len() > config.flood_limit as usize {
            self.flood.recent.pop_front();
        }
    }

    /// The layout version this book was saved with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// An alarm event of `rule` (module docs: which events raise, update
    /// or do nothing). `snapshot` is the last readings of the template's
    /// `snapshot` tags ([`Engine::snapshot`](super::Engine::snapshot)),
    /// used only when a work order is raised; `random` is the ULID's
    /// random part. The time is the event's.
    pub fn on_alarm_event(
        &mut self,
        event: &AlarmEvent,
        rule: &Rule,
        ctx: &WoContext<'_>,
        snapshot: Vec<SnapshotEntry>,
        random: u128,
    ) -> Vec<WoChange> {
        if !event.activation {
            return Vec::new();
        }
        let at = event.at;
        let tag = condition_tag(&rule.condition);
        let asset = ctx.asset_for(rule.asset.as_deref(), tag);
        let source = WoSource::Rule(event.rule.to_string());
        let slot = source.slot(&asset);
        let value = event.trigger.as_ref().map(|t| t.value.clone());
        if let Some(id) = self.open.get(&slot) {
            if event.cause != Cause::Condition {
                return Vec::new();
            }
            return match self.orders.get_mut(id) {
                Some(wo) => {
                    wo.occurrences += 1;
                    wo.last = Last { value, at };
                    wo.updated_at = at;
                    wo.render(&rule.workorder);
                    vec![WoChange::Updated(Box::new(wo.clone()))]
                }
                None => Vec::new(),
            };
        }
        if !event.raise_work_order || !rule.workorder.enabled {
            return Vec::new();
        }
        match self.flood.admit(at) {
            Admit::Raise => {}
            Admit::Trip => return vec![self.flood_work_order(event, ctx, random)],
            Admit::Hold => {
                return vec![WoChange::Held {
                    rule: event.rule.to_string(),
                    asset,
                }];
            }
        }
        let expr = matches!(rule.condition, Condition::Expr { .. });
        let draft = Draft {
            kind: WoType::Corrective,
            source,
            priority: rule.priority,
            location: ctx.location_for(rule.location.as_deref(), tag),
            asset,
            problem_code: rule.workorder.problem_code.clone(),
            procedure: rule.workorder.procedure.clone(),
            trigger: WoTrigger::Alarm {
                rule: event.rule.to_string(),
                tag: if expr { None } else { tag.map(str::to_owned) },
                value: value.clone(),
                limit: event.trigger.as_ref().and_then(|t| t.limit.clone()),
                unit: trigger_unit(&rule.condition, ctx),
                condition: rule.condition.kind().to_owned(),
                since: at,
            },
            readings: snapshot,
            last: Last { value, at },
        };
        let wo = self.insert(draft, &rule.workorder, ctx, at, random);
        vec![WoChange::Raised(Box::new(wo))]
    }

    /// A meter reached its threshold: raises its preventive work order
    /// (never held by the flood guard), or updates the open one. Nothing
    /// when the meter's template is disabled.
    pub fn on_meter_due(
        &mut self,
        due: &MeterDue,
        meter: &Meter,
        ctx: &WoContext<'_>,
        snapshot: Vec<SnapshotEntry>,
        random: u128,
    ) -> Vec<WoChange> {
        if !meter.workorder.enabled {
            return Vec::new();
        }
        let at = due.at;
        let asset = ctx.asset_for(meter.asset.as_deref(), Some(&meter.tag));
        let source = WoSource::Meter(due.meter.clone());
        let slot = source.slot(&asset);
        let last = Last {
            value: Some(Value::Float(due.value)),
            at,
        };
        if let Some(id) = self.open.get(&slot) {
            return match self.orders.get_mut(id) {
                Some(wo) => {
                    wo.occurrences += 1;
                    wo.last = last;
                    wo.updated_at = at;
                    wo.render(&meter.workorder);
                    vec![WoChange::Updated(Box::new(wo.clone()))]
                }
                None => Vec::new(),
            };
        }
        let draft = Draft {
            kind: WoType::Preventive,
            source,
            priority: meter.priority,
            location: ctx.location_for(meter.location.as_deref(), Some(&meter.tag)),
            asset,
            problem_code: meter.workorder.problem_code.clone(),
            procedure: meter.workorder.procedure.clone(),
            trigger: WoTrigger::Meter {
                meter: due.meter.clone(),
                tag: meter.tag.clone(),
                kind: due.measure,
                value: due.value,
                threshold: due.threshold,
                since: at,
            },
            readings: snapshot,
            last,
        };
        let wo = self.insert(draft, &meter.workorder, ctx, at, random);
        vec![WoChange::Raised(Box::new(wo))]
    }

    /// A status message from the CMMS for work order `id`, received at
    /// `at` (module docs). An empty payload (a cleared retained message)
    /// is ignored.
    pub fn on_status(
        &mut self,
        id: &str,
        payload: &[u8],
        at: Timestamp,
    ) -> Result<Vec<WoChange>, WoError> {
        if payload.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let Some(wo) = self.orders.get_mut(id) else {
            return Err(WoError::UnknownId(id.to_owned()));
        };
        let malformed = |reason: String| WoError::Malformed {
            id: id.to_owned(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| malformed(e.to_string()))?;
        if !json.is_object() {
            return Err(malformed(format!("expected a JSON object, not {json}")));
        }
        let msg = StatusMessage::deserialize(json).map_err(|e| malformed(e.to_string()))?;
        let Some(status) = WoStatus::parse_cmms(&msg.status) else {
            return Err(WoError::UnknownStatus {
                id: id.to_owned(),
                status: msg.status,
            });
        };
        if wo.status == WoStatus::Closed {
            return Ok(Vec::new());
        }
        let report = StatusReport {
            status,
            at,
            reference: msg.reference,
            by: msg.by,
            note: msg.note,
        };
        if wo.history.last().is_some_and(|r| r.same_as(&report)) {
            return Ok(Vec::new());
        }
        if report.reference.is_some() {
            wo.cmms_ref.clone_from(&report.reference);
        }
        wo.history.push(report);
        if wo.history.len() > MAX_HISTORY {
            let excess = wo.history.len() - MAX_HISTORY;
            wo.history.drain(..excess);
        }
        wo.status = status;
        wo.updated_at = at;
        let wo = wo.clone();
        if status != WoStatus::Closed {
            return Ok(vec![WoChange::Updated(Box::new(wo))]);
        }
        let slot = wo.source.slot(&wo.asset);
        if self.open.get(&slot).is_some_and(|open| *open == wo.id) {
            self.open.remove(&slot);
        }
        self.prune_closed();
        Ok(vec![WoChange::Cleared(Box::new(wo))])
    }

    /// A work order by id.
    pub fn get(&self, id: &str) -> Option<&WorkOrder> {
        self.orders.get(id)
    }

    /// Every kept work order, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &WorkOrder> {
        self.orders.values()
    }

    /// Open work orders (not closed), oldest first: what is retained on
    /// the broker.
    pub fn open(&self) -> impl Iterator<Item = &WorkOrder> {
        self.orders.values().filter(|w| w.status.is_open())
    }

    /// The open work order of a slot.
    pub fn open_for(&self, source: &WoSource, asset: &str) -> Option<&WorkOrder> {
        self.open
            .get(&source.slot(asset))
            .and_then(|id| self.orders.get(id))
    }

    /// Work orders raised for a slot so far (the next key's `n` is one
    /// more).
    pub fn raised_for(&self, source: &WoSource, asset: &str) -> u64 {
        self.raised.get(&source.slot(asset)).copied().unwrap_or(0)
    }

    /// Whether an attempt to raise at `at` would be held (or trip the
    /// guard), without counting it.
    pub fn is_flooding(&self, at: Timestamp) -> bool {
        let mut guard = self.flood.clone();
        guard.limit != 0 && guard.prune(at) >= guard.limit as usize
    }

    /// Activations that raised no work order of their own because of the
    /// flood guard, since the book was created.
    pub fn held(&self) -> u64 {
        self.flood.held
    }

    /// The flood guard tripped: raise its work order or update the open
    /// one.
    fn flood_work_order(
        &mut self,
        event: &AlarmEvent,
        ctx: &WoContext<'_>,
        random: u128,
    ) -> WoChange {
        let at = event.at;
        let count = Value::UInt(u64::from(self.flood.limit) + 1);
        let title = self.flood.title();
        let window = window_text(self.flood.window_ms);
        let description = format!(
            "More than {} work orders within {window}, the last for rule {} at {}. \
             Further activations are held as alarms only, without work orders, \
             until fewer than {} are raised within {window}.",
            self.flood.limit,
            event.rule,
            format_time(at),
            self.flood.limit,
        );
        let slot = WoSource::Flood.slot(ctx.gateway);
        if let Some(wo) = self.open.get(&slot).and_then(|id| self.orders.get_mut(id)) {
            wo.occurrences += 1;
            wo.last = Last {
                value: Some(count),
                at,
            };
            wo.updated_at = at;
            wo.title = title;
            wo.description = description;
            return WoChange::FloodRaised(Box::new(wo.clone()));
        }
        let draft = Draft {
            kind: WoType::Corrective,
            source: WoSource::Flood,
            priority: Priority::High,
            asset: ctx.gateway.to_owned(),
            location: ctx.location.map(str::to_owned),
            problem_code: None,
            procedure: None,
            trigger: WoTrigger::Alarm {
                rule: FLOOD_RULE.to_owned(),
                tag: None,
                value: Some(count.clone()),
                limit: Some(Value::UInt(u64::from(self.flood.limit))),
                unit: None,
                condition: "flood".to_owned(),
                since: at,
            },
            readings: Vec::new(),
            last: Last {
                value: Some(count),
                at,
            },
        };
        let mut wo = self.insert(draft, &WorkOrderTemplate::default(), ctx, at, random);
        wo.title = title;
        wo.description = description;
        if let Some(kept) = self.orders.get_mut(&wo.id) {
            kept.title.clone_from(&wo.title);
            kept.description.clone_from(&wo.description);
        }
        WoChange::FloodRaised(Box::new(wo))
    }

    /// Numbers, names and stores a new work order; returns a copy.
    fn insert(
        &mut self,
        draft: Draft,
        template: &WorkOrderTemplate,
        ctx: &WoContext<'_>,
        at: Timestamp,
        random: u128,
    ) -> WorkOrder {
        let slot = draft.source.slot(&draft.asset);
        let n = self.raised.entry(slot.clone()).or_insert(0);
        *n += 1;
        let key = format!(
            "{}/{}/{}/{}/{n}",
            ctx.site,
            ctx.gateway,
            draft.source.key_part(),
            draft.asset
        );
        let id = self.fresh_id(at, random);
        let mut wo = WorkOrder {
            id: id.clone(),
            key,
            kind: draft.kind,
            status: WoStatus::Open,
            priority: draft.priority,
            created_at: at,
            updated_at: at,
            source: draft.source,
            site: ctx.site.to_owned(),
            gateway: ctx.gateway.to_owned(),
            asset: draft.asset,
            location: draft.location,
            title: String::new(),
            description: String::new(),
            problem_code: draft.problem_code,
            procedure: draft.procedure,
            trigger: draft.trigger,
            readings: draft.readings,
            occurrences: 1,
            last: draft.last,
            cmms_ref: None,
            history: Vec::new(),
        };
        wo.render(template);
        self.open.insert(slot, id.clone());
        self.orders.insert(id, wo.clone());
        wo
    }

    /// A ULID from `at` and `random` that no kept work order has (the
    /// random part is bumped on a clash).
    fn fresh_id(&self, at: Timestamp, random: u128) -> String {
        let mut random = random;
        loop {
            let id = ulid::Ulid::from_parts(at.as_millis(), random).to_string();
            if !self.orders.contains_key(&id) {
                return id;
            }
            random = random.wrapping_add(1);
        }
    }

    /// Drops the oldest closed work orders beyond [`MAX_CLOSED`].
    fn prune_closed(&mut self) {
        let closed: Vec<String> = self
            .orders
            .values()
            .filter(|w| !w.status.is_open())
            .map(|w| w.id.clone())
            .collect();
        let excess = closed.len().saturating_sub(MAX_CLOSED);
        for id in closed.into_iter().take(excess) {
            self.orders.remove(&id);
        }
    }
}

/// The CMMS's status message.
#[derive(Debug, Deserialize)]
struct StatusMessage {
    status: String,
    #[serde(default, rename = "ref", deserialize_with = "text_or_number")]
    reference: Option<String>,
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// A reference may be sent as a string or a number.
fn text_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(serde::de::Error::custom(format!(
            "ref must be a string or a number, not {other}"
        ))),
    }
}

/// Fills `{placeholder}`s; anything else between braces is kept as is.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if PLACEHOLDERS.contains(&&after[..close]) => {
                out.push_str(&value(&after[..close]));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `80 degC`, or `80` without a unit.
fn with_unit(value: &str, unit: Option<&str>) -> String {
    match unit {
        Some(u) if !u.is_empty() => format!("{value} {u}"),
        _ => value.to_owned(),
    }
}

/// A value for people: numbers with up to three decimals.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(x) => format_number(*x),
        Value::Text(s) => s.clone(),
    }
}

/// A number for people: up to three decimals, trailing zeros dropped
/// (`80`, `80.25`, `-3.142`); below 0.001 in scientific form (`1.2e-4`).
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    if x.abs() < 1e-3 {
        let s = format!("{x:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => s,
        };
    }
    let s = trim_zeros(&format!("{x:.3}")).to_owned();
    if s == "-0" { "0".to_owned() } else { s }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A time for people: RFC 3339 UTC, whole seconds (clamped to year 9999).
pub fn format_time(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(clamp(at).to_system_time()).to_string()
}

/// The latest time RFC 3339 can write (the end of year 9999).
pub(crate) fn clamp(at: Timestamp) -> Timestamp {
    Timestamp(at.as_millis().min(253_402_300_799_999))
}

/// serde for `Option<Value>`, exact through [`SavedValue`].
mod opt_value {
    use super::{Deserialize, Deserializer, SavedValue, Serialize, Serializer, Value};

    pub fn serialize<S: Serializer>(v: &Option<Value>, s: S) -> Result<S::Ok, S::Error> {
        v.as_ref().map(SavedValue::from).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
        Ok(Option::<SavedValue>::deserialize(d)?
            .as_ref()
            .map(Value::from))
    }
}

/// serde for [`Priority`], by its config name.
mod priority_text {
    use super::{Deserialize, Deserializer, Priority, Serializer};

    pub fn serialize<S: Serializer>(p: &Priority, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Priority, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "low" => Ok(Priority::Low),
            "medium" => Ok(Priority::Medium),
            "high" => Ok(Priority::High),
            "critical" => Ok(Priority::Critical),
            other => Err(serde::de::Error::custom(format!(
                "unknown priority \"{other}\""
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::config::{AlarmConfig, Connection, MeterKind};
    use crate::reading::Quality;
    use crate::rules::alarm::AlarmState;
    use crate::rules::meter::{MeterChange, MeterState};
    use crate::rules::{Engine, Trigger};
    use crate::tag::{Area, DataType};

    const GOOD: Quality = Quality::Good;

    fn t(secs: f64) -> Timestamp {
        Timestamp(1_763_700_000_000 + (secs * 1000.0) as u64)
    }

    fn devices() -> Vec<std::sync::Arc<Device>> {
        plain_devices()
            .into_iter()
            .map(std::sync::Arc::new)
            .collect()
    }

    fn plain_devices() -> Vec<Device> {
        let mut temp = Tag::new("temp", Area::HoldingRegister, 0, DataType::F32);
        temp.unit = Some("degC".into());
        let mut pressure = Tag::new("pressure", Area::HoldingRegister, 2, DataType::F32);
        pressure.unit = Some("bar".into());
        pressure.asset = Some("SEAL-7".into());
        let running = Tag::new("running", Area::Coil, 0, DataType::Bool);
        let tcp = Connection::Tcp {
            host: "x".into(),
            port: 502,
        };
        let mut pump1 = Device::new("pump1", tcp.clone(), vec![temp.clone(), pressure, running]);
        pump1.asset = Some("P-101".into());
        pump1.location = Some("Hall 2".into());
        let pump2 = Device::new("pump2", tcp, vec![temp]);
        vec![pump1, pump2]
    }

    fn gateway() -> GatewayConfig {
        GatewayConfig {
            id: "gw1".into(),
            site: "plant-a".into(),
            location: Some("Building A".into()),
            data_dir: "/tmp".into(),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    fn config() -> WorkOrderConfig {
        WorkOrderConfig {
            flood_limit: 10,
            flood_window: Duration::from_secs(600),
        }
    }

    fn rule(name: &str, tag: &str, limit: f64) -> Rule {
        Rule {
            name: name.into(),
            condition: Condition::Above {
                tag: tag.into(),
                limit,
            },
            deadband: 0.0,
            on_delay: Duration::ZERO,
            off_delay: Duration::ZERO,
            priority: Priority::High,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate {
                enabled: true,
                ..WorkOrderTemplate::default()
            },
        }
    }

    /// An activation by the condition that may raise.
    fn activation(rule: &str, secs: f64, value: f64, limit: f64) -> AlarmEvent {
        AlarmEvent {
            rule: Arc::from(rule),
            from: AlarmState::Normal,
            to: AlarmState::ActiveUnacked,
            at: t(secs),
            cause: Cause::Condition,
            trigger: Some(Trigger {
                value: Value::Float(value),
                limit: Some(Value::Float(limit)),
            }),
            activation: true,
            raise_work_order: true,
            chattering: false,
        }
    }

    /// A book with a context and a running random source.
    struct Rig {
        book: WorkOrderBook,
        devices: Vec<Arc<Device>>,
        gateway: GatewayConfig,
        random: u128,
    }

    impl Rig {
        fn new() -> Rig {
            Rig {
                book: WorkOrderBook::new(&config()),
                devices: devices(),
                gateway: gateway(),
                random: 0x1234_5678_9abc_def0,
            }
        }

        fn event(&mut self, event: &AlarmEvent, rule: &Rule) -> Vec<WoChange> {
            self.random += 1;
            let ctx = WoContext::new(&self.gateway, &self.devices);
            self.book
                .on_alarm_event(event, rule, &ctx, Vec::new(), self.random)
        }

        fn status(&mut self, id: &str, json: &str, secs: f64) -> Result<Vec<WoChange>, WoError> {
            self.book.on_status(id, json.as_bytes(), t(secs))
        }
    }

    fn raised(changes: &[WoChange]) -> &WorkOrder {
        match changes {
            [WoChange::Raised(wo)] => wo,
            other => panic!("expected one Raised, got {other:#?}"),
        }
    }

    fn count(changes: &[WoChange], f: impl Fn(&WoChange) -> bool) -> usize {
        changes.iter().filter(|c| f(c)).count()
    }

    #[test]
    fn the_first_activation_raises_exactly_one_work_order() {
        let mut rig = Rig::new();
        let mut r = rule("pump1_hot", "pump1.temp", 80.0);
        r.workorder.problem_code = Some("OVERHEAT".into());
        r.workorder.procedure = Some("SOP-12".into());
        let changes = rig.event(&activation("pump1_hot", 0.0, 81.25, 80.0), &r);
        let wo = raised(&changes);
        assert!(ulid::Ulid::from_string(&wo.id).is_ok(), "{}", wo.id);
        assert_eq!(
            ulid::Ulid::from_string(&wo.id).map(|u| u.timestamp_ms()),
            Ok(t(0.0).as_millis())
        );
        assert_eq!(wo.key, "plant-a/gw1/pump1_hot/P-101/1");
        assert_eq!(wo.kind, WoType::Corrective);
        assert_eq!(wo.status, WoStatus::Open);
        assert_eq!(wo.priority, Priority::High);
        assert_eq!(wo.asset, "P-101");
        assert_eq!(wo.location.as_deref(), Some("Hall 2"));
        assert_eq!(wo.occurrences, 1);
        assert_eq!(wo.created_at, t(0.0));
        assert_eq!(wo.title, "P-101: pump1_hot (above 80 degC)");
        assert!(
            wo.description
                .starts_with("Alarm pump1_hot (above) became active at 2025-11-21T"),
            "{}",
            wo.description
        );
        assert!(
            wo.description.ends_with(
                "on pump1.temp: value 81.25 degC, limit 80 degC. Occurrences: 1. Procedure: SOP-12."
            ),
            "{}",
            wo.description
        );
        assert_eq!(
            wo.trigger,
            WoTrigger::Alarm {
                rule: "pump1_hot".into(),
                tag: Some("pump1.temp".into()),
                value: Some(Value::Float(81.25)),
                limit: Some(Value::Float(80.0)),
                unit: Some("degC".into()),
                condition: "above".into(),
                since: t(0.0),
            }
        );
        assert_eq!(wo.problem_code.as_deref(), Some("OVERHEAT"));
        let source = WoSource::Rule("pump1_hot".into());
        assert_eq!(rig.book.open_for(&source, "P-101"), Some(wo));
        assert_eq!(rig.book.raised_for(&source, "P-101"), 1);
        assert_eq!(rig.book.open().count(), 1);
    }

    #[test]
    fn a_hovering_value_updates_the_open_work_order_and_never_raises_a_second() {
        // No deadband, no delays: every crossing is an activation, and the
        // alarm soon chatters. Every activation counts; one work order.
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let alarms = AlarmConfig {
            chatter_count: 3,
            chatter_window: Duration::from_secs(60),
            chatter_quiet: Duration::from_secs(300),
        };
        let mut engine = Engine::new(std::slice::from_ref(&r), &devices(), &alarms).unwrap();
        let id = engine.tag_id("pump1.temp").unwrap();
        let mut rig = Rig::new();
        let mut changes = Vec::new();
        let mut activations = 0;
        for s in 0..600 {
            let v = 80.0 + 1.5 * (f64::from(s) * 0.7).sin();
            for event in engine.observe(id, Some(&Value::Float(v)), &GOOD, t(f64::from(s))) {
                activations += usize::from(event.activation);
                changes.extend(rig.event(&event, &r));
            }
        }
        assert!(activations > 50, "{activations}");
        assert_eq!(count(&changes, |c| matches!(c, WoChange::Raised(_))), 1);
        assert_eq!(
            count(&changes, |c| matches!(c, WoChange::Updated(_))),
            activations - 1
        );
        let open: Vec<_> = rig.book.open().collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].occurrences, activations as u64);
        assert!(open[0].last.at > open[0].created_at);
        assert_eq!(open[0].trigger.since(), open[0].created_at);
    }

    #[test]
    fn closing_frees_the_slot_and_the_next_activation_raises_key_n_plus_1() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let first = raised(&rig.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();
        let ch = rig.status(&first.id, r#"{"status":"closed","ref":"CMMS-1"}"#, 100.0);
        assert!(matches!(ch.as_deref(), Ok([WoChange::Cleared(w)]) if w.id == first.id));
        assert_eq!(rig.book.open().count(), 0);
        let second = raised(&rig.event(&activation("pump1_hot", 200.0, 82.0, 80.0), &r)).clone();
        assert_ne!(second.id, first.id);
        assert_eq!(second.key, "plant-a/gw1/pump1_hot/P-101/2");
        assert_eq!(second.occurrences, 1);
        // The closed one is still known (idempotent late statuses).
        assert_eq!(
            rig.book.get(&first.id).map(|w| w.status),
            Some(WoStatus::Closed)
        );
    }

    #[test]
    fn shelved_chattering_and_disabled_activations_do_not_raise() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        // Shelved or chattering: the alarm says no work order.
        let mut shelved = activation("pump1_hot", 0.0, 81.0, 80.0);
        shelved.to = AlarmState::Shelved {
            until: t(600.0),
            active: true,
        };
        shelved.raise_work_order = false;
        assert!(rig.event(&shelved, &r).is_empty());
        let mut chattering = activation("pump1_hot", 1.0, 81.0, 80.0);
        chattering.raise_work_order = false;
        chattering.chattering = true;
        assert!(rig.event(&chattering, &r).is_empty());
        // A template switched off.
        let mut off = rule("pump1_hot", "pump1.temp", 80.0);
        off.workorder.enabled = false;
        assert!(
            rig.event(&activation("pump1_hot", 2.0, 81.0, 80.0), &off)
                .is_empty()
        );
        // Events that are not activations.
        let mut ack = activation("pump1_hot", 3.0, 81.0, 80.0);
        ack.activation = false;
        ack.cause = Cause::Ack;
        assert!(rig.event(&ack, &r).is_empty());
        assert_eq!(rig.book.all().count(), 0);

        // While one is open, a chattering activation updates it, but the
        // end of a shelf (the same occurrence re-announced) does not.
        let wo = raised(&rig.event(&activation("pump1_hot", 10.0, 81.0, 80.0), &r)).clone();
        let mut chattering = activation("pump1_hot", 11.0, 83.0, 80.0);
        chattering.raise_work_order = false;
        chattering.chattering = true;
        let ch = rig.event(&chattering, &r);
        assert!(matches!(&ch[..], [WoChange::Updated(w)] if w.occurrences == 2));
        let mut unshelved = activation("pump1_hot", 12.0, 83.0, 80.0);
        unshelved.cause = Cause::Unshelve;
        assert!(rig.event(&unshelved, &r).is_empty());
        let kept = rig.book.get(&wo.id).unwrap();
        assert_eq!(kept.occurrences, 2);
        assert_eq!(
            kept.last,
            Last {
                value: Some(Value::Float(83.0)),
                at: t(11.0)
            }
        );
    }

    #[test]
    fn the_flood_guard_raises_one_flood_work_order_and_holds_the_rest() {
        let mut rig = Rig::new();
        let rules: Vec<Rule> = (0..12)
            .map(|i| rule(&format!("r{i}"), "pump2.temp", 80.0))
            .collect();
        let mut changes = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            changes.extend(rig.event(&activation(&r.name, i as f64 * 5.0, 90.0, 80.0), r));
        }
        assert_eq!(count(&changes, |c| matches!(c, WoChange::Raised(_))), 10);
        assert_eq!(
            count(&changes, |c| matches!(c, WoChange::FloodRaised(_))),
            1
        );
        assert_eq!(count(&changes, |c| matches!(c, WoChange::Held { .. })), 1);
        assert!(matches!(&changes[10], WoChange::FloodRaised(_)));
        assert_eq!(
            changes[11],
            WoChange::Held {
                rule: "r11".into(),
                asset: "gw1".into()
            }
        );
        let flood = changes[10].work_order().unwrap();
        assert_eq!(flood.title, "Alarm flood: 11 work orders in 10 minutes");
        assert_eq!(flood.asset, "gw1");
        assert_eq!(flood.location.as_deref(), Some("Building A"));
        assert_eq!(flood.kind, WoType::Corrective);
        assert_eq!(flood.source, WoSource::Flood);
        assert_eq!(flood.key, "plant-a/gw1/gateway:alarm_flood/gw1/1");
        assert!(matches!(&flood.trigger, WoTrigger::Alarm { rule, .. } if rule == FLOOD_RULE));
        assert_eq!(rig.book.held(), 2);
        assert!(rig.book.is_flooding(t(60.0)));

        // Pump2's rules share the asset of the gateway-less device: the
        // device has none, so the gateway id.
        assert_eq!(
            changes[0].work_order().map(|w| w.asset.as_str()),
            Some("gw1")
        );

        // Held attempts keep the flood going: the last attempt was at 55 s,
        // so at 10 min + 10 s nine attempts are still in the window.
        let late = rule("late", "pump2.temp", 80.0);
        let ch = rig.event(&activation("late", 610.0, 90.0, 80.0), &late);
        assert!(matches!(&ch[..], [WoChange::Raised(_)]), "{ch:#?}");
        // Once the window holds fewer than the limit, raising resumes.
        assert!(!rig.book.is_flooding(t(700.0)));
        let again = rule("again", "pump2.temp", 80.0);
        let ch = rig.event(&activation("again", 700.0, 90.0, 80.0), &again);
        assert!(matches!(&ch[..], [WoChange::Raised(_)]));
    }

    #[test]
    fn a_sustained_flood_stays_held_and_a_new_flood_updates_the_open_flood_work_order() {
        let mut rig = Rig::new();
        rig.book.set_config(&WorkOrderConfig {
            flood_limit: 2,
            flood_window: Duration::from_secs(60),
        });
        let rules: Vec<Rule> = (0..20)
            .map(|i| rule(&format!("r{i}"), "pump2.temp", 80.0))
            .collect();
        let mut kinds = Vec::new();
        // One attempt every 20 s: three in a 60 s window, above the limit.
        for (i, r) in rules.iter().take(10).enumerate() {
            for c in rig.event(&activation(&r.name, i as f64 * 20.0, 90.0, 80.0), r) {
                kinds.push(match c {
                    WoChange::Raised(_) => 'R',
                    WoChange::FloodRaised(_) => 'F',
                    WoChange::Held { .. } => 'H',
                    _ => '?',
                });
            }
        }
        assert_eq!(kinds.iter().collect::<String>(), "RRFHHHHHHH");
        // Quiet, then a second flood while the first flood's work order is
        // still open: it is updated, not raised again.
        let mut kinds = Vec::new();
        let mut flood = None;
        for (i, r) in rules.iter().skip(10).take(3).enumerate() {
            for c in rig.event(&activation(&r.name, 1000.0 + i as f64, 90.0, 80.0), r) {
                if let WoChange::FloodRaised(w) = &c {
                    flood = Some(w.clone());
                }
                kinds.push(matches!(c, WoChange::Raised(_)));
            }
        }
        assert_eq!(kinds, [true, true, false]);
        let flood = flood.unwrap();
        assert_eq!(flood.occurrences, 2);
        assert_eq!(flood.key, "plant-a/gw1/gateway:alarm_flood/gw1/1");
        assert_eq!(
            rig.book
                .open()
                .filter(|w| w.source == WoSource::Flood)
                .count(),
            1
        );
    }

    #[test]
    fn the_flood_guard_tolerates_out_of_order_times_and_forgets_on_a_big_clock_step() {
        let mut guard = FloodGuard::new(&WorkOrderConfig {
            flood_limit: 3,
            flood_window: Duration::from_secs(60),
        });
        // Batches of two devices arrive slightly out of time order: all count.
        let verdicts: Vec<Admit> = [10.0, 9.5, 10.2, 9.9]
            .iter()
            .map(|&s| guard.admit(t(s)))
            .collect();
        assert_eq!(
            verdicts,
            [Admit::Raise, Admit::Raise, Admit::Raise, Admit::Trip]
        );
        assert_eq!(guard.admit(t(11.0)), Admit::Hold);
        // A clock stepped back by more than the window: a fresh start.
        assert_eq!(guard.admit(Timestamp(t(11.0).0 - 61_000)), Admit::Raise);
        assert!(guard.recent.len() <= 3);
    }

    #[test]
    fn cmms_status_flow_accepted_in_progress_closed() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let wo = raised(&rig.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();

        let ch = rig
            .status(
                &wo.id,
                r#"{"status":"accepted","ref":"CMMS-123","by":"planner"}"#,
                10.0,
            )
            .unwrap();
        let WoChange::Updated(w) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(w.status, WoStatus::Accepted);
        assert_eq!(w.cmms_ref.as_deref(), Some("CMMS-123"));
        assert_eq!(w.updated_at, t(10.0));
        // The same message again (redelivery) changes nothing.
        let again = rig.status(
            &wo.id,
            r#"{"status":"accepted","ref":"CMMS-123","by":"planner"}"#,
            11.0,
        );
        assert_eq!(again, Ok(vec![]));

        // in_progress, without a ref (the first is kept), extra fields ignored.
        let ch = rig
            .status(
                &wo.id,
                r#"{"status":"In-Progress","note":"on site","eta":5}"#,
                20.0,
            )
            .unwrap();
        let WoChange::Updated(w) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(w.status, WoStatus::InProgress);
        assert_eq!(w.cmms_ref.as_deref(), Some("CMMS-123"));

        // Still open: an activation updates it.
        let ch = rig.event(&activation("pump1_hot", 25.0, 84.0, 80.0), &r);
        assert!(
            matches!(&ch[..], [WoChange::Updated(w)] if w.status == WoStatus::InProgress && w.occurrences == 2)
        );

        let ch = rig
            .status(&wo.id, r#"{"status":"closed","ref":4711}"#, 30.0)
            .unwrap();
        let WoChange::Cleared(w) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(w.id, wo.id);
        assert_eq!(w.status, WoStatus::Closed);
        assert_eq!(w.cmms_ref.as_deref(), Some("4711"));
        let history: Vec<_> = w.history.iter().map(|h| (h.status, h.at)).collect();
        assert_eq!(
            history,
            [
                (WoStatus::Accepted, t(10.0)),
                (WoStatus::InProgress, t(20.0)),
                (WoStatus::Closed, t(30.0))
            ]
        );
        assert_eq!(w.history[1].note.as_deref(), Some("on site"));
        // A closed work order ignores further statuses.
        assert_eq!(
            rig.status(&wo.id, r#"{"status":"closed"}"#, 40.0),
            Ok(vec![])
        );
        assert_eq!(
            rig.status(&wo.id, r#"{"status":"accepted"}"#, 41.0),
            Ok(vec![])
        );
        assert_eq!(rig.book.get(&wo.id).map(|w| w.history.len()), Some(3));
    }

    #[test]
    fn bad_status_messages_are_errors_and_change_nothing() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let wo = raised(&rig.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();
        let before = rig.book.clone();
        assert_eq!(
            rig.status(&wo.id, r#"{"status":"done"}"#, 1.0),
            Err(WoError::UnknownStatus {
                id: wo.id.clone(),
                status: "done".into()
            })
        );
        assert_eq!(
            rig.status(&wo.id, r#"{"status":"open"}"#, 1.0)
                .map_err(|e| e.to_string()),
            Err(format!(
                "work order {}: unknown status \"open\"; expected accepted, in_progress or closed",
                wo.id
            ))
        );
        assert_eq!(
            rig.status("01ARZ3NDEKTSV4RRFFQ69G5FAV", r#"{"status":"closed"}"#, 1.0),
            Err(WoError::UnknownId("01ARZ3NDEKTSV4RRFFQ69G5FAV".into()))
        );
        for bad in [
            "not json",
            r#"{"ref":"x"}"#,
            r#"["closed"]"#,
            r#"{"status":3}"#,
            r#"{"status":"closed","ref":[1]}"#,
        ] {
            assert!(
                matches!(rig.status(&wo.id, bad, 1.0), Err(WoError::Malformed { .. })),
                "{bad}"
            );
        }
        // An empty (retained-clearing) message is not a status at all.
        assert_eq!(rig.status(&wo.id, "", 1.0), Ok(vec![]));
        assert_eq!(rig.status("unknown", " \n", 1.0), Ok(vec![]));
        assert_eq!(rig.book, before);
    }

    #[test]
    fn templates_fill_every_placeholder_and_recount_occurrences() {
        let mut rig = Rig::new();
        let mut r = rule("pump1_hot", "pump1.temp", 80.0);
        r.priority = Priority::Critical;
        r.workorder.problem_code = Some("OH".into());
        r.workorder.procedure = Some("SOP-1".into());
        let all: String = PLACEHOLDERS
            .iter()
            .map(|p| format!("{p}={{{p}}};"))
            .collect();
        r.workorder.title = Some("{asset} hot ({occurrences}x) {unknown} {".into());
        r.workorder.description = Some(all);
        let wo = raised(&rig.event(&activation("pump1_hot", 0.0, 81.23456, 80.0), &r)).clone();
        assert_eq!(wo.title, "P-101 hot (1x) {unknown} {");
        assert_eq!(
            wo.description,
            "rule=pump1_hot;tag=pump1.temp;device=pump1;value=81.235;limit=80;unit=degC;\
             condition=above;since=2025-11-21T04:40:00Z;asset=P-101;location=Hall 2;\
             site=plant-a;gateway=gw1;priority=critical;problem_code=OH;procedure=SOP-1;\
             meter=;occurrences=1;"
        );
        let ch = rig.event(&activation("pump1_hot", 5.0, 90.0, 80.0), &r);
        let w = ch[0].work_order().unwrap();
        assert_eq!(w.title, "P-101 hot (2x) {unknown} {");
        assert!(
            w.description.contains("value=81.235;"),
            "the raising value stays"
        );
        assert!(w.description.ends_with("occurrences=2;"));
    }

    #[test]
    fn numbers_and_units_for_people() {
        assert_eq!(format_number(80.0), "80");
        assert_eq!(format_number(80.25), "80.25");
        assert_eq!(format_number(-1.23456), "-1.235");
        assert_eq!(format_number(0.00012), "1.2e-4");
        assert_eq!(format_number(-0.0001), "-1e-4");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(-0.0004999), "-5e-4");
        assert_eq!(format_number(1e20), "100000000000000000000");
        assert_eq!(format_number(f64::NAN), "NaN");
        assert_eq!(format_value(&Value::Bool(true)), "true");
        assert_eq!(format_value(&Value::UInt(u64::MAX)), u64::MAX.to_string());
        assert_eq!(window_text(600_000), "10 minutes");
        assert_eq!(window_text(60_000), "1 minute");
        assert_eq!(window_text(90_000), "90 seconds");
        assert_eq!(window_text(1_500), "1.5 seconds");
        assert_eq!(format_time(Timestamp(u64::MAX)), "9999-12-31T23:59:59Z");

        let devices = devices();
        let gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        let rate = Condition::Rate {
            tag: "pump1.temp".into(),
            limit: 1.0,
            per: Duration::from_secs(60),
            window: Duration::from_secs(300),
        };
        assert_eq!(trigger_unit(&rate, &ctx).as_deref(), Some("degC/min"));
        let stale = Condition::Stale {
            tag: "pump1.temp".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(trigger_unit(&stale, &ctx).as_deref(), Some("s"));
    }

    #[test]
    fn asset_and_location_defaults() {
        let devices = devices();
        let mut gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        // Rule's own, then the tag's, then the device's, then the gateway.
        assert_eq!(ctx.asset_for(Some("X-1"), Some("pump1.pressure")), "X-1");
        assert_eq!(ctx.asset_for(None, Some("pump1.pressure")), "SEAL-7");
        assert_eq!(ctx.asset_for(None, Some("pump1.temp")), "P-101");
        assert_eq!(ctx.asset_for(None, Some("pump2.temp")), "gw1");
        assert_eq!(ctx.asset_for(None, Some("nowhere.x")), "gw1");
        assert_eq!(ctx.asset_for(None, None), "gw1");
        // Rule's own, then the device's, then the gateway's.
        assert_eq!(
            ctx.location_for(Some("Roof"), Some("pump1.temp"))
                .as_deref(),
            Some("Roof")
        );
        assert_eq!(
            ctx.location_for(None, Some("pump1.temp")).as_deref(),
            Some("Hall 2")
        );
        assert_eq!(
            ctx.location_for(None, Some("pump2.temp")).as_deref(),
            Some("Building A")
        );
        gw.location = None;
        let ctx = WoContext::new(&gw, &devices);
        assert_eq!(ctx.location_for(None, Some("pump2.temp")), None);

        // An expr rule: no single tag, the asset from its first tag.
        let mut rig = Rig::new();
        let mut r = rule("jam", "pump1.temp", 0.0);
        r.condition = Condition::Expr {
            expr: "pump1.temp > 3.0 && pump1.running".into(),
            tags: vec!["pump1.temp".into(), "pump1.running".into()],
        };
        let mut ev = activation("jam", 0.0, 0.0, 0.0);
        ev.trigger = Some(Trigger {
            value: Value::Bool(true),
            limit: None,
        });
        let wo = raised(&rig.event(&ev, &r)).clone();
        assert_eq!(wo.asset, "P-101");
        assert_eq!(wo.title, "P-101: jam (expr)");
        assert_eq!(wo.trigger.tag(), None);
        assert_eq!(wo.trigger.unit(), None);
    }

    #[test]
    fn ids_are_unique_even_when_the_random_part_repeats() {
        let mut book = WorkOrderBook::new(&config());
        let devices = devices();
        let gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        let mut ids = Vec::new();
        for i in 0..5 {
            let name = format!("r{i}");
            let r = rule(&name, "pump1.temp", 80.0);
            let ch =
                book.on_alarm_event(&activation(&name, 0.0, 81.0, 80.0), &r, &ctx, Vec::new(), 7);
            ids.push(raised(&ch).id.clone());
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{ids:?}");
    }

    #[test]
    fn the_book_round_trips_through_json_mid_flow() {
        // One script, split anywhere: saving and restoring in between gives
        // the same changes as running straight through.
        #[derive(Clone)]
        enum In {
            Act(usize, f64, f64),
            Status(usize, &'static str, f64),
        }
        let rules: Vec<Rule> = (0..4)
            .map(|i| rule(&format!("r{i}"), "pump1.temp", 80.0))
            .collect();
        let mut script = vec![In::Act(0, 0.0, 81.0), In::Act(0, 1.0, 82.5)];
        for i in 1..4 {
            script.push(In::Act(i, 2.0 + i as f64, 0.1 + 0.2));
        }
        script.extend([
            In::Status(0, r#"{"status":"accepted","ref":"C-1"}"#, 10.0),
            In::Act(3, 11.0, 1e-7),
            In::Status(0, r#"{"status":"closed"}"#, 12.0),
            In::Act(0, 13.0, 99.0),
            In::Act(1, 14.0, 98.0),
            In::Status(2, r#"{"status":"in_progress","by":"Ann"}"#, 15.0),
        ]);
        let run = |rig: &mut Rig, ids: &mut Vec<String>, input: &In| -> Vec<WoChange> {
            match input {
                In::Act(i, s, v) => {
                    let r = &rules[*i];
                    let ch = rig.event(&activation(&r.name, *s, *v, 80.0), r);
                    for c in &ch {
                        if let WoChange::Raised(w) = c {
                            ids.push(w.id.clone());
                        }
                    }
                    ch
                }
                In::Status(k, json, s) => {
                    let id = ids[*k].clone();
                    rig.status(&id, json, *s).unwrap()
                }
            }
        };
        let mut straight = Rig::new();
        straight.book.set_config(&WorkOrderConfig {
            flood_limit: 3,
            flood_window: Duration::from_secs(60),
        });
        let mut ids = Vec::new();
        let reference: Vec<_> = script
            .iter()
            .map(|i| run(&mut straight, &mut ids, i))
            .collect();
        assert!(
            reference
                .iter()
                .flatten()
                .any(|c| matches!(c, WoChange::FloodRaised(_)))
        );
        for split in 0..=script.len() {
            let mut first = Rig::new();
            first.book.set_config(&WorkOrderConfig {
                flood_limit: 3,
                flood_window: Duration::from_secs(60),
            });
            let mut ids = Vec::new();
            for i in &script[..split] {
                run(&mut first, &mut ids, i);
            }
            let json = serde_json::to_string(&first.book).unwrap();
            let book: WorkOrderBook = serde_json::from_str(&json).unwrap();
            assert_eq!(book, first.book, "split {split}");
            let mut second = Rig {
                book,
                random: first.random,
                ..Rig::new()
            };
            for (k, i) in script.iter().enumerate().skip(split) {
                assert_eq!(
                    run(&mut second, &mut ids, i),
                    reference[k],
                    "split {split}, step {k}"
                );
            }
        }
    }

    #[test]
    fn a_meter_raises_one_preventive_work_order_and_its_closing_arms_the_next_threshold() {
        let meter = Meter {
            name: "pump1_hours".into(),
            tag: "pump1.running".into(),
            kind: MeterKind::Runtime {
                every: Duration::from_secs(500 * 3600),
            },
            priority: Priority::Medium,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate {
                enabled: true,
                procedure: Some("SOP-500H".into()),
                ..WorkOrderTemplate::default()
            },
        };
        let mut state = MeterState::new(&meter);
        let mut rig = Rig::new();
        let mut preventive = Vec::new();
        // 600 h of one-minute polls: running 50 min of every hour, one
        // bad poll an hour.
        for minute in 0..600 * 60u32 {
            let at = t(f64::from(minute) * 60.0);
            let changes = if minute % 60 == 59 {
                state.observe(None, &Quality::Bad(crate::reading::BadReason::Timeout), at)
            } else {
                state.observe(Some(&Value::Bool(minute % 60 < 50)), &GOOD, at)
            };
            for c in changes {
                if let MeterChange::Due(due) = c {
                    let ctx = WoContext::new(&rig.gateway, &rig.devices);
                    preventive.extend(rig.book.on_meter_due(&due, &meter, &ctx, Vec::new(), 9));
                }
            }
        }
        assert_eq!(preventive.len(), 1, "{preventive:#?}");
        let wo = raised(&preventive).clone();
        assert_eq!(wo.kind, WoType::Preventive);
        assert_eq!(wo.key, "plant-a/gw1/meter:pump1_hours/P-101/1");
        assert_eq!(
            wo.title,
            "P-101: preventive maintenance at 500 h (pump1_hours)"
        );
        assert_eq!(wo.meter(), Some("pump1_hours"));
        let WoTrigger::Meter {
            value, threshold, ..
        } = wo.trigger
        else {
            panic!("{:?}", wo.trigger)
        };
        assert_eq!(threshold, 500.0);
        assert!((500.0..500.1).contains(&value), "{value}");
        assert!(state.is_due());
        // 600 h at 50/60 running, less nothing for the bad minute (its
        // neighbours are off anyway): exactly 500 h.
        assert_eq!(state.value(), 500.0);

        let ch = rig.status(&wo.id, r#"{"status":"closed"}"#, 1e9).unwrap();
        let WoChange::Cleared(closed) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(closed.meter(), Some(state.name()));
        let changes = state.on_work_order_closed(t(1e9));
        assert!(
            matches!(&changes[..], [MeterChange::Publish(r)] if r.next_due == 1000.0 && !r.due)
        );
        assert!(!state.is_due());
        assert_eq!(state.next_due(), 1000.0);
    }

    #[test]
    fn closed_work_orders_are_bounded() {
        let mut rig = Rig::new();
        rig.book.set_config(&WorkOrderConfig {
            flood_limit: 0,
            flood_window: Duration::from_secs(1),
        });
        let r = rule("r", "pump1.temp", 80.0);
        let mut first = None;
        for i in 0..MAX_CLOSED + 10 {
            let wo = raised(&rig.event(&activation("r", i as f64, 81.0, 80.0), &r)).clone();
            first.get_or_insert(wo.id.clone());
            rig.status(&wo.id, r#"{"status":"closed"}"#, i as f64 + 0.5)
                .unwrap();
        }
        assert_eq!(rig.book.all().count(), MAX_CLOSED);
        let first = first.unwrap();
        assert_eq!(
            rig.status(&first, r#"{"status":"closed"}"#, 1e6),
            Err(WoError::UnknownId(first.clone()))
        );
        let wo = raised(&rig.event(&activation("r", 1e5, 81.0, 80.0), &r)).clone();
        assert_eq!(wo.key, format!("plant-a/gw1/r/P-101/{}", MAX_CLOSED + 11));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Act { rule: usize, dt: u64, raise: bool },
            Status { pick: usize, status: u8 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0..6usize, 0..120_000u64, any::<bool>())
                    .prop_map(|(rule, dt, raise)| Op::Act { rule, dt, raise }),
                1 => (0..64usize, 0..4u8).prop_map(|(pick, status)| Op::Status { pick, status }),
            ]
        }

        proptest! {
            #[test]
            fn one_open_work_order_per_slot_and_unique_keys(ops in prop::collection::vec(op(), 1..150)) {
                let mut rig = Rig::new();
                rig.book.set_config(&WorkOrderConfig {
                    flood_limit: 4,
                    flood_window: Duration::from_secs(120),
                });
                let rules: Vec<Rule> = (0..6)
                    .map(|i| rule(&format!("r{i}"), "pump1.temp", 80.0))
                    .collect();
                let mut now = 0.0;
                let mut ids: Vec<String> = Vec::new();
                for op in ops {
                    match op {
                        Op::Act { rule, dt, raise } => {
                            now += dt as f64 / 1000.0;
                            let mut ev = activation(&rules[rule].name, now, 81.0, 80.0);
                            ev.raise_work_order = raise;
                            for c in rig.event(&ev, &rules[rule]) {
                                prop_assert!(raise || matches!(c, WoChange::Updated(_)));
                                if let WoChange::Raised(w) | WoChange::FloodRaised(w) = &c {
                                    ids.push(w.id.clone());
                                }
                            }
                        }
                        Op::Status { pick, status } => {
                            if let Some(id) = ids.get(pick % ids.len().max(1)) {
                                let s = ["accepted", "in_progress", "closed", "bogus"][status as usize];
                                let json = format!(r#"{{"status":"{s}"}}"#);
                                let res = rig.status(id, &json, now);
                                prop_assert_eq!(res.is_err(), s == "bogus");
                            }
                        }
                    }
                }
                let mut slots = std::collections::HashSet::new();
                for w in rig.book.open() {
                    prop_assert!(slots.insert(w.source.slot(&w.asset)), "two open for one slot");
                    prop_assert_eq!(rig.book.open_for(&w.source, &w.asset), Some(w));
                }
                let mut keys = std::collections::HashSet::new();
                for w in rig.book.all() {
                    prop_assert!(keys.insert(w.key.clone()), "duplicate key {}", w.key);
                    prop_assert!(w.occurrences >= 1);
                }
            }
        }
    }
}
