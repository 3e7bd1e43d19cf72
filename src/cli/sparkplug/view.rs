//! The pure core of `fieldgate sparkplug watch`: one received message
//! becomes one readable line. No I/O; the moment of receipt is an
//! argument.
//!
//! ```text
//! 2026-11-21T09:08:39.064Z  NBIRTH  plant-a/gw1  seq=0 bdSeq=3  Node Control/Rebirth=false, Node Info/Version="0.1.0", …
//! 2026-11-21T09:08:39.065Z  DBIRTH  plant-a/gw1/pump1  seq=1  bearing_temp=55.2 degC, current=12.34 A, running=true
//! 2026-11-21T09:08:39.612Z  DDATA   plant-a/gw1/pump1  seq=2  bearing_temp=55.4 degC
//! 2026-11-21T09:08:41.002Z  DDATA   plant-a/gw1/pump2  seq=3  bearing_temp=null [bad]
//! 2026-11-21T09:08:45.000Z  STATE   scada  online (2026-11-21T09:08:44.990Z)
//! ```
//!
//! Births teach the viewer each metric's name (by alias), datatype, unit
//! and quality; DATA messages carry aliases only, so a viewer that came in
//! mid-session shows `#alias` until the next birth (a host's rebirth
//! request brings one). The quality property is sent only when it changed,
//! so the last one seen is what a metric shows.
//!
//! Everything here is outside input: a payload or topic that cannot be
//! read gives `undecodable: <why>` on its line, never a panic, and every
//! line is bounded ([`MAX_METRICS`], [`MAX_TEXT`], [`MAX_NAME`],
//! [`MAX_LINE`]) and free of control characters.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;

use crate::contract::sparkplug::NAMESPACE;
use crate::contract::sparkplug::catalog::BD_SEQ;
use crate::contract::sparkplug::inbound::host_state;
use crate::contract::sparkplug::proto::payload::{Metric, PropertySet, metric, property_value};
use crate::contract::sparkplug::proto::{Payload, datatype};
use crate::contract::sparkplug::values::{
    ENG_UNIT, QUALITY, QUALITY_BAD, QUALITY_GOOD, epoch_millis,
};

/// Metrics shown on one line; the rest are counted (`… +N more`).
pub const MAX_METRICS: usize = 12;
/// Characters of a string value shown (a SHA-256 in hex fits); the rest
/// are counted.
pub const MAX_TEXT: usize = 64;
/// Characters of a name, an id or a unit shown.
pub const MAX_NAME: usize = 64;
/// Characters of a whole line, at most (before the count of what was cut).
pub const MAX_LINE: usize = 2000;
/// Nodes and devices whose births are remembered. Beyond it, new ones are
/// shown with `#alias` (a broker of hostile publishers cannot make the
/// viewer grow without bound).
pub const MAX_KNOWN: usize = 10_000;
/// A payload stamped further than this from its receipt shows its stamp
/// (history, a backlog, a wrong clock).
pub const STAMP_SHOWN_BEYOND: Duration = Duration::from_secs(5);

/// The latest moment RFC 3339 can write: 9999-12-31T23:59:59.999Z.
const MAX_RFC3339_MS: u64 = 253_402_300_799_999;

/// What a birth said about one metric.
#[derive(Debug, Clone, Default)]
struct Def {
    datatype: Option<u32>,
    unit: Option<String>,
}

/// What the viewer knows of one node or device.
#[derive(Debug, Clone, Default)]
struct Known {
    /// Alias → name, from the last birth.
    names: HashMap<u64, String>,
    /// Name → datatype and unit, from the last birth.
    defs: HashMap<String, Def>,
    /// The last quality seen per metric (by name, or `#alias`).
    quality: HashMap<String, i64>,
}

/// A node (`device` `None`) or a device.
type Key = (String, String, Option<String>);

/// The viewer: the births it has seen, and the lines it makes.
#[derive(Debug, Default)]
pub struct Viewer {
    known: HashMap<Key, Known>,
}

/// What a topic names.
#[derive(Debug, PartialEq, Eq)]
enum Topic<'a> {
    /// `spBv1.0/STATE/{host}`.
    State { host: &'a str },
    /// `spBv1.0/{group}/{kind}/{node}[/{device}]`.
    Message {
        group: &'a str,
        kind: &'a str,
        node: &'a str,
        device: Option<&'a str>,
    },
}

fn parse_topic(topic: &str) -> Result<Topic<'_>, String> {
    let rest = topic
        .strip_prefix(NAMESPACE)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| format!("not in the {NAMESPACE} namespace"))?;
    if let Some(host) = rest.strip_prefix("STATE/") {
        if host.is_empty() || host.contains('/') {
            return Err("a STATE topic names one host".into());
        }
        return Ok(Topic::State { host });
    }
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("an empty topic level".into());
    }
    match parts.as_slice() {
        [group, kind, node] => Ok(Topic::Message {
            group,
            kind,
            node,
            device: None,
        }),
        [group, kind, node, device] => Ok(Topic::Message {
            group,
            kind,
            node,
            device: Some(device),
        }),
        _ => Err(format!(
            "{} levels after {NAMESPACE}, not 3 or 4",
            parts.len()
        )),
    }
}

impl Viewer {
    /// A viewer that has seen no birth yet.
    pub fn new() -> Viewer {
        Viewer::default()
    }

    /// The line for a message on `topic` with `payload`, received at
    /// `received`. Births are remembered for the lines after them.
    pub fn line(&mut self, topic: &str, payload: &[u8], received: SystemTime) -> String {
        let received_ms = epoch_millis(received);
        let mut line = format!("{}  ", wall_text(received_ms));
        match parse_topic(topic) {
            Err(why) => {
                let _ = write!(
                    line,
                    "{:<6}  {}  undecodable: {}",
                    "?",
                    clip(topic, MAX_NAME * 4),
                    why
                );
            }
            Ok(Topic::State { host }) => {
                let _ = write!(line, "{:<6}  {}  ", "STATE", clip(host, MAX_NAME));
                match host_state(payload) {
                    Ok(state) => {
                        line.push_str(if state.online { "online" } else { "offline" });
                        if let Some(ts) = state.timestamp {
                            let _ = write!(line, " ({})", wall_text(ts));
                        }
                    }
                    Err(e) => {
                        let _ = write!(line, "undecodable: {}", clip(&e.to_string(), MAX_LINE));
                    }
                }
            }
            Ok(Topic::Message {
                group,
                kind,
                node,
                device,
            }) => {
                let _ = write!(
                    line,
                    "{:<6}  {}/{}",
                    clip(kind, MAX_NAME),
                    clip(group, MAX_NAME),
                    clip(node, MAX_NAME)
                );
                if let Some(d) = device {
                    let _ = write!(line, "/{}", clip(d, MAX_NAME));
                }
                line.push_str("  ");
                match Payload::decode(payload) {
                    Ok(p) => {
                        let key = (group.to_owned(), node.to_owned(), device.map(str::to_owned));
                        self.payload_text(&mut line, kind, key, &p, received_ms);
                    }
                    Err(e) => {
                        let _ = write!(line, "undecodable: {}", clip(&e.to_string(), MAX_LINE));
                    }
                }
            }
        }
        bound(line)
    }

    fn payload_text(&mut self, line: &mut String, kind: &str, key: Key, p: &Payload, now: u64) {
        let node_session = matches!(kind, "NBIRTH" | "NDEATH");
        let mut head: Vec<String> = Vec::new();
        match p.seq {
            Some(seq) => head.push(format!("seq={seq}")),
            // An NDEATH has none (it is written at CONNECT time).
            None if kind != "NDEATH" => head.push("seq=-".into()),
            None => {}
        }
        if node_session {
            let bd_seq = p
                .metrics
                .iter()
                .find(|m| m.name.as_deref() == Some(BD_SEQ))
                .and_then(|m| match m.value {
                    Some(metric::Value::LongValue(v)) => Some(v.to_string()),
                    Some(metric::Value::IntValue(v)) => Some(v.to_string()),
                    _ => None,
                });
            head.push(format!("bdSeq={}", bd_seq.as_deref().unwrap_or("?")));
        }
        if let Some(ts) = p.timestamp
            && ts.abs_diff(now) > STAMP_SHOWN_BEYOND.as_millis() as u64
        {
            head.push(format!("stamped {}", wall_text(ts)));
        }
        line.push_str(&head.join(" "));

        if matches!(kind, "NBIRTH" | "DBIRTH") {
            self.learn(kind, &key, p);
        }
        if !self.known.contains_key(&key) && self.known.len() < MAX_KNOWN {
            // Mid-session: no names yet, but the qualities are followed.
            self.known.insert(key.clone(), Known::default());
        }
        let mut scratch = Known::default();
        let known = self.known.get_mut(&key).unwrap_or(&mut scratch);

        let shown: Vec<&Metric> = p
            .metrics
            .iter()
            .filter(|m| !(node_session && m.name.as_deref() == Some(BD_SEQ)))
            .collect();
        if shown.is_empty() {
            return;
        }
        line.push_str("  ");
        for (i, m) in shown.iter().take(MAX_METRICS).enumerate() {
            if i > 0 {
                line.push_str(", ");
            }
            line.push_str(&metric_text(m, known));
        }
        if shown.len() > MAX_METRICS {
            let _ = write!(line, ", … +{} more", shown.len() - MAX_METRICS);
        }
    }

    /// A birth replaces what was known of its node or device; an NBIRTH
    /// also forgets the node's devices (their births follow it).
    fn learn(&mut self, kind: &str, key: &Key, p: &Payload) {
        if kind == "NBIRTH" {
            self.known
                .retain(|(g, n, d), _| !(g == &key.0 && n == &key.1 && d.is_some()));
        }
        if !self.known.contains_key(key) && self.known.len() >= MAX_KNOWN {
            return;
        }
        let mut known = Known::default();
        for m in &p.metrics {
            let Some(name) = &m.name else {
                continue;
            };
            if let Some(alias) = m.alias {
                known.names.insert(alias, name.clone());
            }
            known.defs.insert(
                name.clone(),
                Def {
                    datatype: m.datatype,
                    unit: property_text(m.properties.as_ref(), ENG_UNIT),
                },
            );
        }
        self.known.insert(key.clone(), known);
    }
}

/// `name=value unit [bad] (hist)`, the name resolved through the births.
fn metric_text(m: &Metric, known: &mut Known) -> String {
    let name = match (&m.name, m.alias) {
        (Some(n), _) => Some(n.clone()),
        (None, Some(a)) => known.names.get(&a).cloned(),
        (None, None) => None,
    };
    let key = match (&name, m.alias) {
        (Some(n), _) => n.clone(),
        (None, Some(a)) => format!("#{a}"),
        (None, None) => "?".to_owned(),
    };
    let def = name.as_ref().and_then(|n| known.defs.get(n));
    let datatype = m.datatype.or(def.and_then(|d| d.datatype));
    let unit = property_text(m.properties.as_ref(), ENG_UNIT).or(def.and_then(|d| d.unit.clone()));
    let quality = match quality_code(m.properties.as_ref()) {
        Some(q) => {
            known.quality.insert(key.clone(), q);
            Some(q)
        }
        None => known.quality.get(&key).copied(),
    };

    let mut out = format!("{}={}", clip(&key, MAX_NAME), value_text(m, datatype));
    if let Some(u) = unit.filter(|_| m.is_null != Some(true)) {
        let _ = write!(out, " {}", clip(&u, MAX_NAME));
    }
    match quality {
        None => {}
        Some(q) if q == i64::from(QUALITY_GOOD) => {}
        Some(q) if q == i64::from(QUALITY_BAD) => out.push_str(" [bad]"),
        Some(q) => {
            let _ = write!(out, " [q={q}]");
        }
    }
    if m.is_historical == Some(true) {
        out.push_str(" (hist)");
    }
    out
}

/// A metric's value, read as its datatype says (signed integers travel
/// in two's complement).
fn value_text(m: &Metric, datatype: Option<u32>) -> String {
    use metric::Value as V;
    if m.is_null == Some(true) {
        return "null".into();
    }
    let Some(value) = &m.value else {
        return "?".into();
    };
    match (value, datatype) {
        (V::IntValue(v), Some(1)) => (*v as u8 as i8).to_string(),
        (V::IntValue(v), Some(datatype::INT16)) => (*v as u16 as i16).to_string(),
        (V::IntValue(v), Some(datatype::INT32)) => (*v as i32).to_string(),
        (V::IntValue(v), Some(5)) => (*v as u8).to_string(),
        (V::IntValue(v), Some(datatype::UINT16)) => (*v as u16).to_string(),
        (V::IntValue(v), _) => v.to_string(),
        (V::LongValue(v), Some(datatype::INT64)) => (*v as i64).to_string(),
        (V::LongValue(v), Some(datatype::DATETIME)) => wall_text(*v),
        (V::LongValue(v), _) => v.to_string(),
        (V::FloatValue(f), _) => number_text(*f, f64::from(*f)),
        (V::DoubleValue(f), _) => double_text(*f),
        (V::BooleanValue(b), _) => b.to_string(),
        (V::StringValue(s), _) => quoted(s),
        (V::BytesValue(b), Some(18)) => format!("<file, {} bytes>", b.len()),
        (V::BytesValue(b), _) => format!("<{} bytes>", b.len()),
        (V::DatasetValue(d), _) => format!(
            "<dataset, {} columns, {} rows>",
            d.num_of_columns.unwrap_or(d.columns.len() as u64),
            d.rows.len()
        ),
        (V::TemplateValue(t), _) => {
            let what = match (&t.template_ref, t.is_definition) {
                (_, Some(true)) => "template definition".to_owned(),
                (Some(r), _) => format!("template {}", clip(r, MAX_NAME)),
                (None, _) => "template".to_owned(),
            };
            format!("<{what}, {} metrics>", t.metrics.len())
        }
        (V::ExtensionValue(_), _) => "<extension>".into(),
    }
}

/// A double to 10 significant digits, shortest form: a scaled reading
/// (`1203 × 0.01`) shows as `12.03`, not `12.030000000000001`.
fn double_text(x: f64) -> String {
    let rounded = format!("{x:.9e}").parse::<f64>().unwrap_or(x);
    number_text(rounded, rounded)
}

/// Plain decimals for everyday magnitudes, the exponent form beyond
/// (`1e300` is not 301 digits).
fn number_text<T: std::fmt::Display + std::fmt::LowerExp>(x: T, as_f64: f64) -> String {
    let abs = as_f64.abs();
    if abs != 0.0 && !(1e-6..1e15).contains(&abs) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

/// The quality property's code, if the metric carries one.
fn quality_code(props: Option<&PropertySet>) -> Option<i64> {
    let props = props?;
    let i = props.keys.iter().position(|k| k == QUALITY)?;
    match props.values.get(i)?.value {
        Some(property_value::Value::IntValue(v)) => Some(i64::from(v as i32)),
        Some(property_value::Value::LongValue(v)) => Some(v as i64),
        _ => None,
    }
}

/// A string property (`engUnit`).
fn property_text(props: Option<&PropertySet>, key: &str) -> Option<String> {
    let props = props?;
    let i = props.keys.iter().position(|k| k == key)?;
    match &props.values.get(i)?.value {
        Some(property_value::Value::StringValue(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC (clamped to year 9999).
fn wall_text(ms: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.min(MAX_RFC3339_MS));
    humantime::format_rfc3339_millis(t).to_string()
}

/// `s` without control characters (escaped), cut to `max` characters with
/// `…` where it was cut.
fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A string value, quoted and escaped, cut to [`MAX_TEXT`] characters with
/// the count of the rest.
fn quoted(s: &str) -> String {
    let n = s.chars().count();
    if n <= MAX_TEXT {
        return format!("{s:?}");
    }
    let head: String = s.chars().take(MAX_TEXT).collect();
    format!("{head:?}…(+{} chars)", n - MAX_TEXT)
}

/// The line cut to [`MAX_LINE`] characters, with the count of the rest.
fn bound(line: String) -> String {
    let n = line.chars().count();
    if n <= MAX_LINE {
        return line;
    }
    let mut out: String = line.chars().take(MAX_LINE).collect();
    let _ = write!(out, "… (+{} chars)", n - MAX_LINE);
    out
}
