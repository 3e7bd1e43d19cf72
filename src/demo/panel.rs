//! What the live panel says: rows of text, each with a tone, made from a
//! status document. Pure, so the wording is tested without a terminal;
//! [`super::view`] draws the rows (and the tones as colours).

use std::time::Duration;

use super::events::{show_meter, show_value};
use super::status::{DeviceStatus, MeterStatus, PlantStatus, TagStatus};

/// Tags shown for each device, in this order, when it has them: what a
/// technician glances at on a pump or a motor.
pub const WATCHED_TAGS: [&str; 6] = [
    "bearing_temp",
    "vibration",
    "current",
    "discharge_pressure",
    "running",
    "fault",
];

/// At most this many of a device's tags on its row.
const TAGS_PER_DEVICE: usize = 4;

/// How a row is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    /// The title bar.
    Title,
    /// A section heading.
    Heading,
    /// Plain text.
    Normal,
    /// All well (a device polling).
    Good,
    /// Needs a look (an open work order, an alarm returned unacknowledged).
    Warn,
    /// Something is wrong (an active alarm, a failing device).
    Bad,
    /// Background (nothing yet).
    Dim,
}

/// One line of the panel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// How to draw it.
    pub tone: Tone,
    /// The text.
    pub text: String,
}

fn row(tone: Tone, text: impl Into<String>) -> Row {
    Row {
        tone,
        text: text.into(),
    }
}

/// What the panel shows besides the status document.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The latest status document; `None` until the gateway answered.
    pub status: Option<&'a PlantStatus>,
    /// Time since the demo started.
    pub elapsed: Duration,
    /// Time left with `--duration`.
    pub remaining: Option<Duration>,
    /// The broker's address.
    pub broker: &'a str,
}

/// Rows for the panel, devices, alarms, work orders and meters.
pub fn rows(frame: &Frame) -> Vec<Row> {
    let mut out = vec![row(Tone::Title, title(frame))];
    let Some(s) = frame.status else {
        out.push(row(Tone::Dim, "  waiting for the gateway's /api/status …"));
        return out;
    };
    out.push(row(Tone::Heading, "DEVICES"));
    let name_width = s.devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for d in &s.devices {
        out.push(device_row(d, name_width));
    }
    out.push(row(Tone::Heading, "ALARMS"));
    if s.alarms.is_empty() {
        out.push(row(Tone::Dim, "  none: every rule is normal"));
    }
    let rule_width = s.alarms.iter().map(|a| a.rule.len()).max().unwrap_or(0);
    for a in &s.alarms {
        let tone = if a.active { Tone::Bad } else { Tone::Warn };
        let mut text = format!("  {:rule_width$}  {:16}  {:8}", a.rule, a.state, a.priority);
        if !a.value.is_null() {
            text.push_str(&format!("  {}", show_value(&a.value, a.decimals)));
            if !a.limit.is_null() {
                text.push_str(&format!(" (limit {})", show_value(&a.limit, a.decimals)));
            }
        }
        out.push(row(tone, text));
    }
    out.push(row(Tone::Heading, "WORK ORDERS"));
    if s.work_orders.is_empty() {
        out.push(row(Tone::Dim, "  none open"));
    }
    for w in &s.work_orders {
        let tone = if w.status == "open" {
            Tone::Warn
        } else {
            Tone::Normal
        };
        let reference = w.cmms_ref.as_deref().unwrap_or("(no ref)");
        out.push(row(
            tone,
            format!(
                "  {reference:9}  {:10}  {:11}  {:8}  {}",
                w.kind, w.status, w.priority, w.title
            ),
        ));
    }
    if !s.meters.is_empty() {
        out.push(row(Tone::Heading, "METERS"));
        for m in &s.meters {
            out.push(meter_row(m));
        }
    }
    out
}

fn title(frame: &Frame) -> String {
    let mut text = format!(
        "fieldgate demo · {} · broker {}",
        clock(frame.elapsed),
        frame.broker
    );
    if let Some(left) = frame.remaining {
        text.push_str(&format!(" · ends in {}", clock(left)));
    }
    if let Some(s) = frame.status {
        text.push_str(if s.mqtt.connected {
            " · gateway connected"
        } else {
            " · gateway NOT connected"
        });
        match s.outbox {
            Some(o) => text.push_str(&format!(" · outbox {}", o.messages)),
            None => text.push_str(" · outbox ?"),
        }
        text.push_str(&format!(" · {} delivered", s.mqtt.acked));
    }
    text
}

/// A meter in its own unit: `pump1_runtime  runtime 12 s · next service
/// in 18 s` (hours from one hour on: `1,234 h`; counts grouped: `1,234`).
fn meter_row(m: &MeterStatus) -> Row {
    let mut text = format!(
        "  {}  {} {}",
        m.name,
        m.measure,
        show_meter(m.value, &m.unit)
    );
    if m.due {
        text.push_str(" · due: preventive work order raised");
        return row(Tone::Warn, text);
    }
    if let (Some(value), Some(next)) = (m.value, m.next_due) {
        let left = (next - value).max(0.0);
        text.push_str(&format!(
            " · next service in {}",
            show_meter(Some(left), &m.unit)
        ));
    }
    row(Tone::Normal, text)
}

fn device_row(d: &DeviceStatus, name_width: usize) -> Row {
    let tone = match d.state.as_str() {
        "polling" => Tone::Good,
        "failing" => Tone::Bad,
        _ => Tone::Dim,
    };
    let detail = match (&d.last_error, d.state.as_str()) {
        (Some(e), "failing") => e.clone(),
        _ => watched(&d.tags).join(" · "),
    };
    row(
        tone,
        format!(
            "  {:name_width$}  {:8}  {:22}  {detail}",
            d.name, d.state, d.link
        ),
    )
}

/// The watched tags of a device as `name value unit`.
fn watched(tags: &[TagStatus]) -> Vec<String> {
    WATCHED_TAGS
        .iter()
        .filter_map(|name| tags.iter().find(|t| t.name == *name))
        .take(TAGS_PER_DEVICE)
        .map(tag_text)
        .collect()
}

/// One tag as the panel shows it: `bearing_temp 84.31 degC` (with the
/// tag's precision), or the bad quality instead of a value.
pub fn tag_text(t: &TagStatus) -> String {
    match t.quality.as_deref() {
        None => format!("{} —", t.name),
        Some("good") => match &t.unit {
            Some(u) => format!("{} {} {u}", t.name, show_value(&t.value, t.decimals)),
            None => format!("{} {}", t.name, show_value(&t.value, t.decimals)),
        },
        Some(q) => format!("{} — ({q})", t.name),
    }
}

/// `m:ss`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

/// One line for the log: how the plant stands.
pub fn summary_line(s: &PlantStatus) -> String {
    let count = |state: &str| s.devices.iter().filter(|d| d.state == state).count();
    let active = s.alarms.iter().filter(|a| a.active).count();
    let outbox = s
        .outbox
        .map(|o| o.messages.to_string())
        .unwrap_or_else(|| "?".into());
    format!(
        "plant: {} devices ({} polling, {} failing) · {active} alarm{} active · {} work order{} open · outbox {outbox} · {} delivered",
        s.devices.len(),
        count("polling"),
        count("failing"),
        if active == 1 { "" } else { "s" },
        s.work_orders.len(),
        if s.work_orders.len() == 1 { "" } else { "s" },
        s.mqtt.acked,
    )
}

/// Lines the panel needs for a plant of this size (rows of [`rows`] with
/// every rule in alarm and a work order per rule and meter).
pub fn height(devices: usize, rules: usize, meters: usize) -> usize {
    let sections = 1 + 1 + devices + 1 + rules.max(1) + 1 + (rules + meters).max(1);
    if meters > 0 {
        sections + 1 + meters
    } else {
        sections
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::status::{AlarmStatus, MqttStatus, OutboxStatus, WorkOrderStatus};
    use serde_json::json;

    fn tag(name: &str, value: serde_json::Value, unit: Option<&str>, q: Option<&str>) -> TagStatus {
        TagStatus {
            name: name.into(),
            value,
            unit: unit.map(Into::into),
            decimals: None,
            quality: q.map(Into::into),
        }
    }

    fn plant() -> PlantStatus {
        PlantStatus {
            devices: vec![
                DeviceStatus {
                    name: "pump1".into(),
                    link: "tcp:127.0.0.1:40001".into(),
                    state: "polling".into(),
                    last_error: None,
                    tags: vec![
                        tag("asset_tag", json!("PUMP-001"), None, Some("good")),
                        tag("running", json!(true), None, Some("good")),
                        tag("bearing_temp", json!(84.3125), Some("degC"), Some("good")),
                        tag("vibration", json!(null), Some("mm/s"), Some("bad:timeout")),
                    ],
                },
                DeviceStatus {
                    name: "fan1".into(),
                    link: "bus:rs485".into(),
                    state: "failing".into(),
                    last_error: Some("no answer within 500ms".into()),
                    tags: vec![],
                },
            ],
            alarms: vec![AlarmStatus {
                rule: "pump1_bearing_hot".into(),
                state: "active_unacked".into(),
                priority: "high".into(),
                active: true,
                value: json!(84.3125),
                limit: json!(80.0),
                decimals: None,
            }],
            work_orders: vec![WorkOrderStatus {
                id: "01A".into(),
                kind: "corrective".into(),
                status: "accepted".into(),
                priority: "high".into(),
                asset: "P-101".into(),
                title: "P-101: bearing temperature 81.2 degC above 80 degC".into(),
                occurrences: 1,
                cmms_ref: Some("CMMS-1001".into()),
            }],
            meters: vec![
                MeterStatus {
                    name: "pump1_runtime".into(),
                    measure: "runtime".into(),
                    value: Some(0.0084),
                    unit: "h".into(),
                    next_due: Some(0.0083),
                    due: true,
                },
                MeterStatus {
                    name: "pump2_runtime".into(),
                    measure: "runtime".into(),
                    value: Some(1234.4),
                    unit: "h".into(),
                    next_due: Some(3084.0),
                    due: false,
                },
                MeterStatus {
                    name: "pump2_starts".into(),
                    measure: "count".into(),
                    value: Some(1234.0),
                    unit: "count".into(),
                    next_due: Some(2000.0),
                    due: false,
                },
            ],
            outbox: Some(OutboxStatus { messages: 2 }),
            mqtt: MqttStatus {
                connected: true,
                acked: 120,
            },
        }
    }

    #[test]
    fn the_panel_reads_like_the_plant() {
        let status = plant();
        let frame = Frame {
            status: Some(&status),
            elapsed: Duration::from_secs(75),
            remaining: Some(Duration::from_secs(15)),
            broker: "127.0.0.1:1883",
        };
        let rows = rows(&frame);
        let text: Vec<&str> = rows.iter().map(|r| r.text.trim_end()).collect();
        assert_eq!(
            text[0],
            "fieldgate demo · 1:15 · broker 127.0.0.1:1883 · ends in 0:15 · gateway connected · outbox 2 · 120 delivered"
        );
        assert_eq!(text[1], "DEVICES");
        assert_eq!(
            text[2],
            "  pump1  polling   tcp:127.0.0.1:40001     bearing_temp 84.31 degC · vibration — (bad:timeout) · running true"
        );
        assert_eq!(rows[2].tone, Tone::Good);
        assert_eq!(
            text[3],
            "  fan1   failing   bus:rs485               no answer within 500ms"
        );
        assert_eq!(rows[3].tone, Tone::Bad);
        assert_eq!(text[4], "ALARMS");
        assert_eq!(
            text[5],
            "  pump1_bearing_hot  active_unacked    high      84.31 (limit 80)"
        );
        assert_eq!(rows[5].tone, Tone::Bad);
        assert_eq!(text[6], "WORK ORDERS");
        assert_eq!(
            text[7],
            "  CMMS-1001  corrective  accepted     high      P-101: bearing temperature 81.2 degC above 80 degC"
        );
        assert_eq!(text[8], "METERS");
        assert_eq!(
            text[9],
            "  pump1_runtime  runtime 30 s · due: preventive work order raised"
        );
        assert_eq!(rows[9].tone, Tone::Warn);
        assert_eq!(
            text[10],
            "  pump2_runtime  runtime 1,234 h · next service in 1,850 h"
        );
        assert_eq!(
            text[11],
            "  pump2_starts  count 1,234 · next service in 766"
        );
        assert_eq!(rows.len(), 12);
        assert!(rows.len() <= height(2, 1, 3));
    }

    #[test]
    fn before_the_first_answer() {
        let frame = Frame {
            status: None,
            elapsed: Duration::from_secs(1),
            remaining: None,
            broker: "b:1",
        };
        let rows = rows(&frame);
        assert_eq!(rows[0].text, "fieldgate demo · 0:01 · broker b:1");
        assert_eq!(rows[1].tone, Tone::Dim);
    }

    #[test]
    fn the_summary_line() {
        assert_eq!(
            summary_line(&plant()),
            "plant: 2 devices (1 polling, 1 failing) · 1 alarm active · 1 work order open · outbox 2 · 120 delivered"
        );
    }

    #[test]
    fn tags_without_a_reading() {
        assert_eq!(tag_text(&tag("x", json!(null), None, None)), "x —");
        assert_eq!(
            tag_text(&tag("speed", json!(1485), Some("rpm"), Some("good"))),
            "speed 1485 rpm"
        );
        // A register of tenths: one decimal, whatever the float noise.
        let mut level = tag("level", json!(214.0 * 0.1), Some("m"), Some("good"));
        level.decimals = Some(1);
        assert_eq!(tag_text(&level), "level 21.4 m");
        level.value = json!(40.0);
        assert_eq!(tag_text(&level), "level 40.0 m");
    }
}
