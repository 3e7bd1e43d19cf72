//! Values and qualities as Sparkplug metrics, and what the pipeline keeps.
//!
//! A row of the Sparkplug lane holds a payload *by name*: the metrics'
//! names, datatypes, values, timestamps and quality, with no `seq` and no
//! alias, because both belong to the session that will send the row, which
//! may be hours later (the primary host was offline) and after a restart.
//! The edge node turns it into the wire form ([`super::session`]).
//!
//! [`Current`] holds every device's latest readings and alarm states: the
//! births are made of it. The pipeline updates it before it queues the
//! rows of the same step, so a birth taken after the newest offered row is
//! never older than that row.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message as _;

use super::catalog::{AlarmPart, alarm_metric, tag_datatype};
use super::proto::payload::{Metric, PropertySet, PropertyValue, metric, property_value};
use super::proto::{Payload, datatype};
use crate::config::Device;
use crate::reading::{BadReason, Batch, Quality, Reading};
use crate::tag::Value;

/// The property carrying a metric's quality (`Int32`): [`QUALITY_GOOD`]
/// or [`QUALITY_BAD`], the codes Sparkplug hosts (Ignition's among them)
/// read as OPC quality.
pub const QUALITY: &str = "Quality";
/// OPC "good".
pub const QUALITY_GOOD: i32 = 192;
/// OPC "bad".
pub const QUALITY_BAD: i32 = 0;
/// The property carrying a metric's engineering unit.
pub const ENG_UNIT: &str = "engUnit";
/// The property carrying a metric's description.
pub const DESCRIPTION: &str = "description";

/// Milliseconds since the Unix epoch (0 before it: a clock that wrong is
/// flagged unsynchronised elsewhere).
pub fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Sets `m`'s value from `value`, in the field `datatype` asks for.
/// Signed integers go in two's complement, as the specification says.
pub fn set_value(m: &mut Metric, datatype: u32, value: &Value) {
    use metric::Value as V;
    let v = match (datatype, value) {
        (datatype::BOOLEAN, v) => V::BooleanValue(v.as_f64().is_some_and(|x| x != 0.0)),
        (datatype::STRING, Value::Text(s)) => V::StringValue(s.clone()),
        (datatype::STRING, v) => V::StringValue(v.to_string()),
        (_, Value::Text(s)) => V::StringValue(s.clone()),
        (datatype::FLOAT, v) => V::FloatValue(v.as_f64().unwrap_or(f64::NAN) as f32),
        (datatype::DOUBLE, v) => V::DoubleValue(v.as_f64().unwrap_or(f64::NAN)),
        (datatype::INT16 | datatype::INT32, Value::Int(i)) => V::IntValue(*i as i32 as u32),
        (datatype::UINT16 | datatype::UINT32, Value::Int(i)) => V::IntValue(*i as u32),
        (datatype::INT64, Value::Int(i)) => V::LongValue(*i as u64),
        (datatype::UINT64 | datatype::DATETIME, Value::Int(i)) => V::LongValue(*i as u64),
        (
            datatype::INT16 | datatype::INT32 | datatype::UINT16 | datatype::UINT32,
            Value::UInt(u),
        ) => V::IntValue(*u as u32),
        (_, Value::UInt(u)) => V::LongValue(*u),
        (datatype::INT16 | datatype::INT32 | datatype::UINT16 | datatype::UINT32, v) => {
            V::IntValue(v.as_f64().unwrap_or(0.0) as i64 as u32)
        }
        (_, v) => V::DoubleValue(v.as_f64().unwrap_or(f64::NAN)),
    };
    m.value = Some(v);
}

/// The quality property set.
pub fn quality_properties(good: bool) -> PropertySet {
    PropertySet {
        keys: vec![QUALITY.to_owned()],
        values: vec![PropertyValue {
            r#type: Some(datatype::INT32),
            is_null: None,
            value: Some(property_value::Value::IntValue(
                (if good { QUALITY_GOOD } else { QUALITY_BAD }) as u32,
            )),
        }],
    }
}

/// The quality a metric carries, if it has the property.
pub fn quality_of(m: &Metric) -> Option<bool> {
    let props = m.properties.as_ref()?;
    let i = props.keys.iter().position(|k| k == QUALITY)?;
    match props.values.get(i)?.value {
        Some(property_value::Value::IntValue(v)) => Some(v as i32 == QUALITY_GOOD),
        _ => None,
    }
}

/// One reading as a metric by name.
pub fn reading_metric(device: &Device, reading: &Reading, at_ms: u64) -> Option<Metric> {
    let tag = device.tags.get(reading.tag)?;
    let datatype = tag_datatype(tag);
    let mut m = Metric {
        name: Some(tag.name.clone()),
        timestamp: Some(at_ms),
        datatype: Some(datatype),
        properties: Some(quality_properties(reading.quality.is_good())),
        ..Default::default()
    };
    match (&reading.value, &reading.quality) {
        (Some(v), Quality::Good) => set_value(&mut m, datatype, v),
        _ => m.is_null = Some(true),
    }
    Some(m)
}

/// A stored payload by name: the readings at `picked` of one poll.
pub fn batch_payload(batch: &Batch, picked: &[usize]) -> Vec<u8> {
    let at = epoch_millis(batch.timestamp);
    let metrics = picked
        .iter()
        .filter_map(|&i| batch.readings.get(i))
        .filter_map(|r| reading_metric(&batch.device, r, at))
        .collect();
    Payload {
        timestamp: Some(at),
        metrics,
        ..Default::default()
    }
    .encode_to_vec()
}

/// A device is down for Sparkplug when a poll had readings and every one
/// failed for lack of an answer (timeout or no connection). A device that
/// answers with exceptions or garbage is alive and its metrics are bad.
pub fn is_down(batch: &Batch) -> bool {
    !batch.readings.is_empty()
        && batch.readings.iter().all(|r| {
            matches!(
                r.quality,
                Quality::Bad(BadReason::Timeout | BadReason::Connection)
            )
        })
}

/// An alarm's state as its three metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmNow {
    /// The state's name, as in the JSON alarm message.
    pub state: String,
    /// The condition holds.
    pub active: bool,
    /// Acknowledged.
    pub acked: bool,
    /// When it entered this state (ms since the epoch).
    pub at_ms: u64,
}

/// The three metrics of an alarm, by name.
pub fn alarm_metrics(rule: &str, alarm: &AlarmNow) -> Vec<Metric> {
    AlarmPart::ALL
        .into_iter()
        .map(|part| {
            let mut m = Metric {
                name: Some(alarm_metric(rule, part)),
                timestamp: Some(alarm.at_ms),
                ..Default::default()
            };
            m.value = Some(match part {
                AlarmPart::State => metric::Value::StringValue(alarm.state.clone()),
                AlarmPart::Active => metric::Value::BooleanValue(alarm.active),
                AlarmPart::Acked => metric::Value::BooleanValue(alarm.acked),
            });
            m.datatype = Some(match part {
                AlarmPart::State => datatype::STRING,
                _ => datatype::BOOLEAN,
            });
            m
        })
        .collect()
}

/// A stored payload by name: one alarm's change.
pub fn alarm_payload(rule: &str, alarm: &AlarmNow) -> Vec<u8> {
    Payload {
        timestamp: Some(alarm.at_ms),
        metrics: alarm_metrics(rule, alarm),
        ..Default::default()
    }
    .encode_to_vec()
}

/// One device now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceNow {
    /// It answers (false after a poll that got no answer at all).
    pub alive: bool,
    /// The latest reading of each tag (by tag index) and its stamp (ms).
    pub readings: Vec<Option<(Reading, u64)>>,
    /// The alarms of its rules, by rule name.
    pub alarms: BTreeMap<String, AlarmNow>,
}

impl DeviceNow {
    /// Its last poll got no answer: it is dead for Sparkplug until it
    /// answers again (a device known only from an alarm, never polled, is
    /// not).
    pub fn is_down(&self) -> bool {
        !self.alive && !self.readings.is_empty()
    }
}

/// Every device's latest readings and alarm states, and the node's
/// alarms: what births are made of.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Current {
    /// By device name.
    pub devices: HashMap<String, DeviceNow>,
    /// Alarms of rules that span devices (node metrics).
    pub node_alarms: BTreeMap<String, AlarmNow>,
}

/// [`Current`], shared between the pipeline (which writes it once per
/// step) and the edge node (which reads it at each birth). The lock is
/// held for a copy of one device's readings at most, never across I/O.
pub type SharedCurrent = Arc<Mutex<Current>>;

impl Current {
    /// Takes one poll: its readings become the device's latest.
    pub fn take_batch(&mut self, batch: &Batch, alive: bool) {
        let at = epoch_millis(batch.timestamp);
        let now = self.devices.entry(batch.device.name.clone()).or_default();
        now.alive = alive;
        let n = batch.device.tags.len();
        if now.readings.len() != n {
            now.readings.resize(n, None);
        }
        for r in &batch.readings {
            if let Some(slot) = now.readings.get_mut(r.tag) {
                *slot = Some((r.clone(), at));
            }
        }
    }

    /// Every metric of `device` with its latest value, by name: the values
    /// of its DBIRTH (tags never read yet are null with bad quality).
    pub fn device_payload(&self, device: &Device, at_ms: u64) -> Payload {
        let now = self.devices.get(&device.name);
        let mut metrics = Vec::with_capacity(device.tags.len());
        for (i, tag) in device.tags.iter().enumerate() {
            let latest = now.and_then(|d| d.readings.get(i)).and_then(Option::as_ref);
            let m = match latest {
                Some((r, at)) => reading_metric(device, r, *at),
                None => None,
            };
            metrics.push(m.unwrap_or_else(|| Metric {
                name: Some(tag.name.clone()),
                timestamp: Some(at_ms),
                datatype: Some(tag_datatype(tag)),
                is_null: Some(true),
                properties: Some(quality_properties(false)),
                ..Default::default()
            }));
        }
        if let Some(now) = now {
            for (rule, alarm) in &now.alarms {
                metrics.extend(alarm_metrics(rule, alarm));
            }
        }
        Payload {
            timestamp: Some(at_ms),
            metrics,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tag::{Area, DataType, Tag};
    use std::time::{Duration, Instant};

    fn device() -> Arc<Device> {
        Arc::new(Device::new(
            "pump1",
            crate::config::Connection::Rtu { bus: "b".into() },
            vec![
                Tag::new("temp", Area::HoldingRegister, 0, DataType::I16),
                Tag::new("run", Area::Coil, 0, DataType::Bool),
            ],
        ))
    }

    fn batch(readings: Vec<Reading>) -> Batch {
        Batch {
            device: device(),
            timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            started: Instant::now(),
            unsynced: false,
            readings,
        }
    }

    #[test]
    fn signed_integers_are_twos_complement() {
        let mut m = Metric::default();
        set_value(&mut m, datatype::INT16, &Value::Int(-5));
        assert_eq!(m.value, Some(metric::Value::IntValue(0xFFFF_FFFB)));
        set_value(&mut m, datatype::INT64, &Value::Int(-1));
        assert_eq!(m.value, Some(metric::Value::LongValue(u64::MAX)));
        set_value(&mut m, datatype::UINT64, &Value::UInt(u64::MAX));
        assert_eq!(m.value, Some(metric::Value::LongValue(u64::MAX)));
        set_value(&mut m, datatype::FLOAT, &Value::Float(1.5));
        assert_eq!(m.value, Some(metric::Value::FloatValue(1.5)));
        set_value(&mut m, datatype::BOOLEAN, &Value::Bool(true));
        assert_eq!(m.value, Some(metric::Value::BooleanValue(true)));
    }

    #[test]
    fn a_stored_payload_has_names_quality_and_no_seq() {
        let b = batch(vec![
            Reading::good(0, Value::Int(-3)),
            Reading::bad(1, BadReason::Exception(2)),
        ]);
        let p = Payload::decode(batch_payload(&b, &[0, 1]).as_slice()).unwrap();
        assert_eq!(p.seq, None);
        assert_eq!(p.timestamp, Some(1_700_000_000_123));
        assert_eq!(p.metrics[0].name.as_deref(), Some("temp"));
        assert_eq!(p.metrics[0].alias, None);
        assert_eq!(quality_of(&p.metrics[0]), Some(true));
        assert_eq!(p.metrics[1].is_null, Some(true));
        assert_eq!(p.metrics[1].value, None);
        assert_eq!(quality_of(&p.metrics[1]), Some(false));
        assert!(!is_down(&b));
        assert!(is_down(&batch(vec![
            Reading::bad(0, BadReason::Timeout),
            Reading::bad(1, BadReason::Connection)
        ])));
    }

    #[test]
    fn a_birth_has_every_tag_even_unread() {
        let mut c = Current::default();
        c.take_batch(&batch(vec![Reading::good(0, Value::Int(7))]), true);
        let p = c.device_payload(&device(), 5);
        assert_eq!(p.metrics.len(), 2);
        assert_eq!(p.metrics[0].value, Some(metric::Value::IntValue(7)));
        assert_eq!(p.metrics[1].is_null, Some(true));
    }
}
