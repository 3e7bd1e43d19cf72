//! The configuration as the user writes it (serde, `deny_unknown_fields`).
//!
//! Values stay close to the text: strings for areas, types and orders,
//! `ConfigDuration`s, Modicon or 0-based addresses, CSV paths. `resolve`
//! turns this into the typed [`Config`](super::Config) the program runs.
//! Every field is optional here so that a missing one is reported by
//! `resolve` with its line, together with every other problem.
//! `docs/configuration.md` documents each key.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::address::RawAddress;
use super::units::{ConfigDuration, ConfigSize};

/// `[gateway]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    pub id: Option<String>,
    pub site: Option<String>,
    pub location: Option<String>,
    pub data_dir: Option<String>,
    pub shutdown_timeout: Option<ConfigDuration>,
}

/// `[mqtt.tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub enabled: Option<bool>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

/// `[mqtt]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    pub host: Option<String>,
    pub port: Option<i64>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub tls: Option<RawTls>,
    pub topic_prefix: Option<String>,
    pub qos: Option<i64>,
    pub keep_alive: Option<ConfigDuration>,
    pub max_inflight: Option<i64>,
    pub live_share: Option<f64>,
    pub per_tag_topics: Option<bool>,
    pub max_packet_size: Option<ConfigSize>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub path: Option<String>,
    pub durability: Option<String>,
    pub max_bytes: Option<ConfigSize>,
    pub max_age: Option<ConfigDuration>,
    pub flush_interval: Option<ConfigDuration>,
}

/// `[http]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub allow_actions: Option<bool>,
    pub token_file: Option<String>,
}

/// `[sparkplug]`: the Sparkplug B edge node; the section's presence turns
/// it on.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSparkplug {
    pub group_id: Option<String>,
    pub edge_node_id: Option<String>,
    pub primary_host_id: Option<String>,
    pub json_readings: Option<bool>,
    pub client_id: Option<String>,
}

/// `[alarms]`: chattering detection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlarms {
    pub chatter_count: Option<i64>,
    pub chatter_window: Option<ConfigDuration>,
    pub chatter_quiet: Option<ConfigDuration>,
}

/// `[writes]`: write-back settings shared by every writable tag.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWrites {
    pub max_age: Option<ConfigDuration>,
}

/// `[workorders]`: the flood guard.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkOrders {
    pub flood_limit: Option<i64>,
    pub flood_window: Option<ConfigDuration>,
}

/// `[[buses]]`: one RS-485 line.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    pub name: Option<String>,
    pub port: Option<String>,
    pub baud: Option<i64>,
    pub data_bits: Option<i64>,
    pub parity: Option<String>,
    pub stop_bits: Option<i64>,
    pub frame_gap: Option<ConfigDuration>,
}

/// `[[devices]]`. `tags` is either a CSV path or an array of tags; it is
/// read as a raw value and resolved element by element so that one bad
/// tag does not hide the others.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub name: Option<String>,
    pub tcp: Option<String>,
    pub bus: Option<String>,
    pub rtu_over_tcp: Option<String>,
    pub unit: Option<i64>,
    pub poll_interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
    pub retries: Option<i64>,
    pub max_registers: Option<i64>,
    pub max_bits: Option<i64>,
    pub max_gap: Option<i64>,
    pub word_order: Option<String>,
    pub max_silence: Option<ConfigDuration>,
    pub reprobe: Option<ConfigDuration>,
    pub asset: Option<String>,
    pub location: Option<String>,
    pub tags: Option<figment::value::Value>,
    pub write_functions: Option<Vec<i64>>,
    pub write_during_poll: Option<bool>,
    pub template: Option<String>,
    // A template's overrides: read from the device's table as written
    // (resolve/templates.rs), declared so that the keys are known.
    #[allow(dead_code)]
    pub rules: Option<figment::value::Value>,
    #[allow(dead_code)]
    pub meters: Option<figment::value::Value>,
}

/// The keys of `[[devices]]` (the fields of [`RawDevice`]): the columns a
/// device list may have, beside its override columns (`bearing_hot.limit`).
pub const DEVICE_FIELDS: &[&str] = &[
    "name",
    "template",
    "tcp",
    "bus",
    "rtu_over_tcp",
    "unit",
    "poll_interval",
    "timeout",
    "retries",
    "max_registers",
    "max_bits",
    "max_gap",
    "word_order",
    "max_silence",
    "reprobe",
    "asset",
    "location",
    "tags",
    "write_functions",
    "write_during_poll",
];

/// `[[templates]]`: what identical devices share. The device keys here
/// are defaults a device may override; `tags`, `rules` and `meters` are
/// read element by element (like a device's tags) so that one mistake
/// does not hide the others. No connection: that is each device's own.
// Deserialized to check how each key is written, once per template; the
// values are then taken from the table itself, merged under each device's.
#[allow(dead_code)]
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTemplate {
    pub name: Option<String>,
    pub names: Option<String>,
    pub unit: Option<i64>,
    pub poll_interval: Option<ConfigDuration>,
    pub timeout: Option<ConfigDuration>,
    pub retries: Option<i64>,
    pub max_registers: Option<i64>,
    pub max_bits: Option<i64>,
    pub max_gap: Option<i64>,
    pub word_order: Option<String>,
    pub max_silence: Option<ConfigDuration>,
    pub reprobe: Option<ConfigDuration>,
    pub asset: Option<String>,
    pub location: Option<String>,
    pub tags: Option<figment::value::Value>,
    pub write_functions: Option<Vec<i64>>,
    pub write_during_poll: Option<bool>,
    pub rules: Option<Vec<figment::value::Value>>,
    pub meters: Option<Vec<figment::value::Value>>,
}

/// The keys of a template that are device defaults, carried into each
/// device that uses it unless the device sets them itself.
pub const TEMPLATE_DEVICE_KEYS: &[&str] = &[
    "unit",
    "poll_interval",
    "timeout",
    "retries",
    "max_registers",
    "max_bits",
    "max_gap",
    "word_order",
    "max_silence",
    "reprobe",
    "asset",
    "location",
    "write_functions",
    "write_during_poll",
];

/// A tag, inline in TOML or a row of a CSV tag map (the CSV's columns
/// are these field names).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTag {
    pub name: Option<String>,
    pub area: Option<String>,
    pub address: Option<RawAddress>,
    #[serde(rename = "type")]
    pub data_type: Option<String>,
    pub bit: Option<i64>,
    pub length: Option<i64>,
    pub word_order: Option<String>,
    pub scale: Option<f64>,
    pub offset: Option<f64>,
    pub unit: Option<String>,
    pub deadband: Option<RawDeadband>,
    pub span_low: Option<f64>,
    pub span_high: Option<f64>,
    pub description: Option<String>,
    pub asset: Option<String>,
    pub alias: Option<bool>,
    pub writable: Option<bool>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub allowed: Option<RawAllowed>,
    pub max_rate: Option<i64>,
    pub confirm: Option<bool>,
    pub decimals: Option<i64>,
}

/// The column names a CSV tag map may have (the fields of [`RawTag`]).
pub const TAG_FIELDS: &[&str] = &[
    "name",
    "area",
    "address",
    "type",
    "bit",
    "length",
    "word_order",
    "scale",
    "offset",
    "unit",
    "deadband",
    "span_low",
    "span_high",
    "description",
    "asset",
    "alias",
    "writable",
    "min",
    "max",
    "allowed",
    "max_rate",
    "confirm",
    "decimals",
];

/// What separates the values of `allowed` in one CSV cell (`0|1|2`): the
/// CSV's own `,` cannot, and `;` is the column separator of spreadsheets
/// set to a decimal comma, so a `;` list would be split apart on export.
pub const ALLOWED_SEPARATOR: char = '|';

/// The values a writable tag accepts, as written: a TOML array
/// (`allowed = [0, 1, 2]`), or one CSV cell whose values are separated
/// by [`ALLOWED_SEPARATOR`] (`0|1|2`, `true|false`, `auto|manual`). In a
/// cell each value is read as `true`/`false`, a number, or else text.
#[derive(Debug, Clone, PartialEq)]
pub struct RawAllowed(pub Vec<RawState>);

impl<'de> Deserialize<'de> for RawAllowed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, SeqAccess, Visitor};

        /// One value of an array: a number, a bool or a text.
        struct Item(RawState);
        impl<'de> Deserialize<'de> for Item {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_any(One).map(Item)
            }
        }

        struct One;
        impl Visitor<'_> for One {
            type Value = RawState;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number, true or false, or a text")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawState, E> {
                Ok(RawState::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawState, E> {
                Ok(RawState::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawState, E> {
                Ok(i64::try_from(v).map_or(RawState::Float(v as f64), RawState::Int))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawState, E> {
                Ok(RawState::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawState, E> {
                Ok(RawState::Text(v.to_string()))
            }
        }

        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawAllowed;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "an array of values like [0, 1, 2] (in a CSV cell: values separated by |, like 0|1|2)",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawAllowed, A::Error> {
                let mut out = Vec::new();
                while let Some(Item(v)) = seq.next_element()? {
                    out.push(v);
                }
                Ok(RawAllowed(out))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawAllowed, E> {
                Ok(RawAllowed(vec![RawState::Bool(v)]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawAllowed, E> {
                One.visit_i64(v).map(|v| RawAllowed(vec![v]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawAllowed, E> {
                One.visit_u64(v).map(|v| RawAllowed(vec![v]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawAllowed, E> {
                One.visit_f64(v).map(|v| RawAllowed(vec![v]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawAllowed, E> {
                // An empty value (`0||2`) stays an empty text, reported
                // by resolve: an error raised here would lose its column.
                Ok(RawAllowed(
                    v.split(ALLOWED_SEPARATOR)
                        .map(|part| cell_value(part.trim()))
                        .collect(),
                ))
            }
        }
        d.deserialize_any(V)
    }
}

/// One value of a CSV `allowed` cell: `true`/`false`, a number, or text
/// ("inf" and "NaN", which parse as floats, stay texts).
fn cell_value(t: &str) -> RawState {
    if t.eq_ignore_ascii_case("true") {
        RawState::Bool(true)
    } else if t.eq_ignore_ascii_case("false") {
        RawState::Bool(false)
    } else if let Ok(i) = t.parse::<i64>() {
        RawState::Int(i)
    } else if let Some(x) = t.parse::<f64>().ok().filter(|x| x.is_finite()) {
        RawState::Float(x)
    } else {
        RawState::Text(t.to_string())
    }
}

/// A deadband: a number (engineering units) or a percentage of span (`"2%"`).
#[derive(Debug, Clone, PartialEq)]
pub enum RawDeadband {
    /// Engineering units.
    Absolute(f64),
    /// Percent of the tag's span.
    Percent(f64),
}

impl<'de> Deserialize<'de> for RawDeadband {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = RawDeadband;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number in engineering units, or a percentage of span like \"2%\"")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDeadband, E> {
                Ok(RawDeadband::Absolute(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDeadband, E> {
                Ok(RawDeadband::Absolute(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDeadband, E> {
                Ok(RawDeadband::Absolute(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDeadband, E> {
                let t = v.trim();
                let (num, percent) = match t.strip_suffix('%') {
                    Some(n) => (n.trim(), true),
                    None => (t, false),
                };
                let x: f64 = num.parse().map_err(|_| {
                    E::custom(format!(
                        "deadband \"{v}\" is not a number or a percentage like \"2%\""
                    ))
                })?;
                Ok(if percent {
                    RawDeadband::Percent(x)
                } else {
                    RawDeadband::Absolute(x)
                })
            }
        }
        d.deserialize_str(V)
    }
}

/// A number, boolean or string: the state an `equals` rule compares with.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RawState {
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string (for string tags).
    Text(String),
}

/// `[rules.workorder]` / `[meters.workorder]`: the work-order template.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkOrderTemplate {
    pub enabled: Option<bool>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub problem_code: Option<String>,
    pub procedure: Option<String>,
    pub snapshot: Option<Vec<String>>,
}

/// `[[rules]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Option<String>,
    pub tag: Option<String>,
    pub condition: Option<String>,
    pub limit: Option<f64>,
    pub low: Option<f64>,
    pub high: Option<f64>,
    pub rate: Option<f64>,
    pub per: Option<ConfigDuration>,
    pub window: Option<ConfigDuration>,
    pub after: Option<ConfigDuration>,
    pub value: Option<RawState>,
    pub expr: Option<String>,
    pub deadband: Option<f64>,
    pub on_delay: Option<ConfigDuration>,
    pub off_delay: Option<ConfigDuration>,
    pub priority: Option<String>,
    pub asset: Option<String>,
    pub location: Option<String>,
    pub workorder: Option<RawWorkOrderTemplate>,
}

/// The keys of `[[rules]]` (the fields of [`RawRule`]).
pub const RULE_KEYS: &[&str] = &[
    "name",
    "tag",
    "condition",
    "limit",
    "low",
    "high",
    "rate",
    "per",
    "window",
    "after",
    "value",
    "expr",
    "deadband",
    "on_delay",
    "off_delay",
    "priority",
    "asset",
    "location",
    "workorder",
];

/// The keys of `[[meters]]` (the fields of [`RawMeter`]).
pub const METER_KEYS: &[&str] = &[
    "name",
    "tag",
    "kind",
    "every",
    "priority",
    "asset",
    "location",
    "workorder",
];

/// The keys of a work order template (the fields of
/// [`RawWorkOrderTemplate`]).
pub const WORKORDER_KEYS: &[&str] = &[
    "enabled",
    "title",
    "description",
    "problem_code",
    "procedure",
    "snapshot",
];

/// `[[meters]]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeter {
    pub name: Option<String>,
    pub tag: Option<String>,
    pub kind: Option<String>,
    pub every: Option<RawEvery>,
    pub priority: Option<String>,
    pub asset: Option<String>,
    pub location: Option<String>,
    pub workorder: Option<RawWorkOrderTemplate>,
}

/// A meter's interval: a duration for runtime meters (`"500h"`), a count
/// for counting meters (`10000`).
#[derive(Debug, Clone, PartialEq)]
pub enum RawEvery {
    /// Written as an integer.
    Count(i64),
    /// Written as a string.
    Text(String),
}

impl<'de> Deserialize<'de> for RawEvery {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = RawEvery;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a duration like \"500h\" (runtime) or a count like 10000 (count)")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawEvery, E> {
                Ok(RawEvery::Count(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawEvery, E> {
                Ok(RawEvery::Count(v.min(i64::MAX as u64) as i64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawEvery, E> {
                Ok(RawEvery::Text(v.to_string()))
            }
        }
        d.deserialize_str(V)
    }
}

/// `[[cmms]]`: one connector. The keys of every kind are here; resolve
/// refuses those that belong to another kind than the element's, naming
/// the kind they belong to (a clearer message than an unknown key).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCmms {
    pub name: Option<String>,
    pub kind: Option<String>,
    pub url: Option<String>,
    pub timeout: Option<ConfigDuration>,
    pub retry_min: Option<ConfigDuration>,
    pub retry_max: Option<ConfigDuration>,
    pub poll_interval: Option<ConfigDuration>,
    pub ca_file: Option<String>,
    pub work_orders: Option<bool>,
    pub assets: Option<BTreeMap<String, RawId>>,
    pub locations: Option<BTreeMap<String, RawId>>,
    pub meters: Option<BTreeMap<String, RawId>>,
    pub inbound_token_file: Option<String>,
    pub inbound_secret_file: Option<String>,
    // webhook
    pub method: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub auth: Option<String>,
    pub token_file: Option<String>,
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub secret_file: Option<String>,
    pub signature_header: Option<String>,
    pub body: Option<String>,
    pub content_type: Option<String>,
    pub events: Option<Vec<String>>,
    // maximo (api_key_file also maintainx)
    pub api_key_file: Option<String>,
    pub site_id: Option<String>,
    pub object_structure: Option<String>,
    pub api_path: Option<String>,
    pub worktype_corrective: Option<String>,
    pub worktype_preventive: Option<String>,
    pub key_field: Option<String>,
    pub priorities: Option<BTreeMap<String, i64>>,
    // upkeep
    pub session_token_file: Option<String>,
}

/// An id in a CMMS (an asset, a location, a meter): text, or an integer
/// as some CMMSs number them (MaintainX), kept as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawId(pub String);

impl<'de> Deserialize<'de> for RawId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, Visitor};
        struct V;
        impl Visitor<'_> for V {
            type Value = RawId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("the CMMS's id, a string or an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawId, E> {
                Ok(RawId(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawId, E> {
                Ok(RawId(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawId, E> {
                Ok(RawId(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// `[bridge]` of `bridge.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBridge {
    pub id: Option<String>,
    pub data_dir: Option<String>,
    pub shared_group: Option<String>,
    pub topic_prefix: Option<String>,
}

/// The top-level sections and what each holds; anything else is a typo.
pub const SECTIONS: &[&str] = &[
    "gateway",
    "mqtt",
    "store",
    "http",
    "sparkplug",
    "writes",
    "alarms",
    "workorders",
    "buses",
    "templates",
    "devices",
    "rules",
    "meters",
    "cmms",
];

/// The top-level sections of `bridge.toml`.
pub const BRIDGE_SECTIONS: &[&str] = &["bridge", "mqtt", "store", "cmms"];
