//! What resolving hands to validating: every section and element typed,
//! each element with its field path, and for rules and meters the tags
//! they name as written, so the checks across elements can look them up
//! and report them where they were written.

use std::collections::HashMap;

use super::{
    AlarmConfig, BridgeSection, Bus, CmmsConfig, Device, GatewayConfig, HttpConfig, Meter,
    MqttConfig, Rule, SparkplugConfig, StoreConfig, WorkOrderConfig,
};

/// The keys of some tables in the order the file writes them (figment
/// keeps tables sorted), by field path: `cmms[0].headers` → `["X-B",
/// "X-A"]`. Only the tables whose order matters are recorded.
pub(super) type KeyOrder = HashMap<String, Vec<String>>;

/// The configuration as resolved, before the checks across elements.
#[derive(Debug)]
pub(super) struct Resolved {
    /// `[gateway]`.
    pub gateway: GatewayConfig,
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[http]`.
    pub http: HttpConfig,
    /// `[sparkplug]`, when the section is there and has a `group_id`.
    pub sparkplug: Option<SparkplugConfig>,
    /// `[writes]`.
    pub writes: crate::config::WritesConfig,
    /// `[alarms]`.
    pub alarms: AlarmConfig,
    /// `[workorders]`.
    pub workorders: WorkOrderConfig,
    /// The buses that resolved.
    pub buses: Vec<Placed<Bus>>,
    /// The name of every `[[buses]]` element that has one, resolved or
    /// not, so a duplicate is reported even beside another mistake.
    pub bus_names: Vec<Placed<String>>,
    /// The devices that resolved.
    pub devices: Vec<Placed<Device>>,
    /// The name of every `[[devices]]` element that has one, resolved or
    /// not (a device without a connection does not resolve, and its
    /// duplicate name must still be reported).
    pub device_names: Vec<Placed<String>>,
    /// Every rule that could be read, resolved or not.
    pub rules: Vec<Entry<Rule>>,
    /// Every meter that could be read, resolved or not.
    pub meters: Vec<Entry<Meter>>,
    /// The name of every `[[meters]]` element that has one, resolved or
    /// not: what a connector's `meters` may name.
    pub meter_names: Vec<Placed<String>>,
    /// Every `[[cmms]]` element that could be read, resolved or not.
    pub cmms: Vec<Connector>,
    /// The name of every `[[cmms]]` element that has one.
    pub cmms_names: Vec<Placed<String>>,
}

/// `bridge.toml` as resolved, before the checks across elements.
#[derive(Debug)]
pub(super) struct ResolvedBridge {
    /// `[bridge]`.
    pub bridge: BridgeSection,
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// Every `[[cmms]]` element that could be read, resolved or not.
    pub cmms: Vec<Connector>,
    /// The name of every `[[cmms]]` element that has one.
    pub cmms_names: Vec<Placed<String>>,
}

/// A `[[cmms]]` element as resolved: kept when resolving it found an
/// error, because the meters it names are still checked.
#[derive(Debug)]
pub(super) struct Connector {
    /// Its field path (`cmms[1]`).
    pub field: String,
    /// The keys of its `meters` table, as written: fieldgate meter names.
    pub meters: Vec<String>,
    /// The connector, `None` when resolving it found an error.
    pub value: Option<CmmsConfig>,
}

/// An element with the field path it was written at (`devices[2]`).
#[derive(Debug)]
pub(super) struct Placed<T> {
    /// Its field path.
    pub field: String,
    /// The element.
    pub value: T,
}

/// A rule or meter as resolved. Kept even when resolving it found an
/// error, because the tags it names are still checked: one mistake does
/// not hide the next.
#[derive(Debug)]
pub(super) struct Entry<T> {
    /// Its field path (`rules[3]`).
    pub field: String,
    /// The tags it names.
    pub reads: Reads,
    /// The element, `None` when resolving it found an error.
    pub value: Option<T>,
}

/// The tags a rule or meter names, as written (full names, `device.tag`).
#[derive(Debug, Default)]
pub(super) struct Reads {
    /// The tag it watches (`tag = ...`) and what kind of tag it needs.
    pub tag: Option<(String, Needs)>,
    /// An `expr` condition: its text and the tags it names.
    pub expr: Option<(String, Vec<String>)>,
    /// The tags its work orders copy (`workorder.snapshot`).
    pub snapshot: Vec<String>,
}

/// What kind of tag a rule or meter needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Needs {
    /// Any tag (`stale`, `equals`).
    Any,
    /// A number (`above`, `below`, `outside`, `rate`).
    Number,
    /// A running or start bit (meters).
    Bit,
}
