//! One edge-node session on the wire: from NBIRTH to NDEATH.
//!
//! A session is one MQTT connection, with its own `bdSeq` (carried by the
//! NDEATH registered as the connection's Last Will and by the NBIRTH) and
//! its own `seq`, 0 on the NBIRTH and one more (modulo 256) on every other
//! message. Births bind each metric's alias; DATA messages then carry
//! aliases only. A rebirth starts the numbering again with the same
//! `bdSeq`.
//!
//! Stored rows ([`super::values`]) become wire messages here
//! ([`Session::row`]): names become aliases, the `seq` is the session's,
//! and a row sent as history gets `is_historical` on every metric. A row
//! of a device this session has not born (it had died, or was born after
//! the row was taken) cannot be sent now and is held for the next session,
//! whose births include every device.
//!
//! The answer to a DCMD write ([`Session::metric_data`]) is a DDATA of the
//! one metric, made here with the same `seq` and aliases, but published
//! at once rather than stored: it means something only to the session
//! whose host asked.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost::Message as _;

use super::catalog::{
    BD_SEQ, CLOCK_SYNCHRONISED, CONFIG_HASH, Catalog, MetricDef, OUTBOX_DEPTH, REBIRTH, VERSION,
};
use super::proto::Payload;
use super::proto::datatype;
use super::proto::payload::{Metric, PropertyValue, metric, property_value};
use super::topics::{RowKind, SparkplugTopics};
use super::values::{
    Current, DESCRIPTION, ENG_UNIT, alarm_metrics, quality_of, quality_properties, set_value,
};
use crate::command::{WriteReport, WriteResult};
use crate::tag::Value;

/// A message to publish (QoS 0, not retained, as the specification asks
/// of every edge-node message but the NDEATH).
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    /// The topic.
    pub topic: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
}

/// What to do with a stored row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowAction {
    /// Publish this; the row is done once the broker has it.
    Send(Out),
    /// Nothing of it can ever be sent (a history of a device death, a
    /// device or metrics the configuration no longer has): delete it.
    Drop,
    /// Its device is not born in this session: keep the row for the next
    /// session, whose births include every device.
    Hold,
}

/// A stored row that is not a Sparkplug payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The row's topic is not one of this node's.
    #[error("not a device topic of this edge node: {0}")]
    Topic(String),
    /// The row's payload does not decode.
    #[error("stored payload does not decode: {0}")]
    Payload(String),
}

/// The node's own metrics at a birth or in an NDATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// fieldgate's version.
    pub version: String,
    /// The configuration's hash.
    pub config_hash: String,
    /// Messages waiting in the outbox.
    pub outbox_depth: u64,
    /// The kernel reports the wall clock synchronised.
    pub clock_synchronised: bool,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    catalog: Arc<Catalog>,
    topics: SparkplugTopics,
    bd_seq: u64,
    next_seq: u64,
    born: HashSet<String>,
    /// The quality last sent per alias: a DATA message carries the quality
    /// property only when it changed (the birth carried every one).
    quality: HashMap<u64, bool>,
    /// Metrics of stored rows left out because the configuration no longer
    /// has them (a tag removed by a reload), since the session began.
    pub unbound: u64,
}

/// The NDEATH of session `bd_seq`: the Last Will, and what a clean stop
/// publishes. It carries no `seq`.
pub fn death_certificate(topics: &SparkplugTopics, bd_seq: u64, at_ms: u64) -> Out {
    message(
        topics.ndeath(),
        at_ms,
        vec![bd_seq_metric(bd_seq, at_ms)],
        None,
    )
}

/// A message of this session: its topic, stamp, metrics and `seq`.
fn message(topic: String, at_ms: u64, metrics: Vec<Metric>, seq: Option<u64>) -> Out {
    Out {
        topic,
        payload: Payload {
            timestamp: Some(at_ms),
            metrics,
            seq,
            ..Default::default()
        }
        .encode_to_vec(),
    }
}

fn bd_seq_metric(bd_seq: u64, at_ms: u64) -> Metric {
    Metric {
        name: Some(BD_SEQ.to_owned()),
        timestamp: Some(at_ms),
        datatype: Some(datatype::INT64),
        value: Some(metric::Value::LongValue(bd_seq)),
        ..Default::default()
    }
}

/// A metric of a birth: `value`'s value and quality (if any), the
/// definition's name, alias, datatype, unit and description.
fn birth_metric(def: &MetricDef, value: Option<&Metric>, at_ms: u64) -> Metric {
    let mut m = match value {
        Some(v) => v.clone(),
        None => {
            let mut m = Metric {
                timestamp: Some(at_ms),
                ..Default::default()
            };
            match &def.initial {
                Some(v) => set_value(&mut m, def.datatype, v),
                None => {
                    m.is_null = Some(true);
                    m.properties = Some(quality_properties(false));
                }
            }
            m
        }
    };
    m.name = Some(def.name.clone());
    m.alias = def.alias;
    m.datatype = Some(def.datatype);
    m.is_historical = None;
    let text = |s: &str| PropertyValue {
        r#type: Some(datatype::STRING),
        is_null: None,
        value: Some(property_value::Value::StringValue(s.to_owned())),
    };
    for (key, v) in [(ENG_UNIT, &def.unit), (DESCRIPTION, &def.description)] {
        if let Some(v) = v {
            let props = m.properties.get_or_insert_with(Default::default);
            props.keys.push(key.to_owned());
            props.values.push(text(v));
        }
    }
    m
}

impl Session {
    /// A session numbered `bd_seq` for the node `topics` names, with the
    /// birth certificate `catalog`.
    pub fn new(catalog: Arc<Catalog>, topics: SparkplugTopics, bd_seq: u64) -> Session {
        Session {
            catalog,
            topics,
            bd_seq,
            next_seq: 0,
            born: HashSet::new(),
            quality: HashMap::new(),
            unbound: 0,
        }
    }

    /// This session's `bdSeq`.
    pub fn bd_seq(&self) -> u64 {
        self.bd_seq
    }

    /// The birth certificate in force.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The topics.
    pub fn topics(&self) -> &SparkplugTopics {
        &self.topics
    }

    /// Whether `device` has been born in this session (and not died since).
    pub fn is_born(&self, device: &str) -> bool {
        self.born.contains(device)
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq = (s + 1) % 256;
        s
    }

    fn note_qualities(&mut self, metrics: &[Metric]) {
        for m in metrics {
            if let (Some(alias), Some(q)) = (m.alias, quality_of(m)) {
                self.quality.insert(alias, q);
            } else if let Some(alias) = m.alias {
                // A metric born without the property (an alarm) is good.
                self.quality.insert(alias, true);
            }
        }
    }

    /// NBIRTH (`seq` 0): every node metric. Starts the numbering again and
    /// forgets every device's birth (a rebirth births them all again).
    pub fn nbirth(&mut self, info: &NodeInfo, current: &Current, at_ms: u64) -> Out {
        self.next_seq = 0;
        self.born.clear();
        self.quality.clear();
        let seq = self.seq();
        let catalog = self.catalog.clone();
        let mut alarms: HashMap<String, Metric> = HashMap::new();
        for (rule, alarm) in &current.node_alarms {
            for m in alarm_metrics(rule, alarm) {
                if let Some(name) = m.name.clone() {
                    alarms.insert(name, m);
                }
            }
        }
        let metrics: Vec<Metric> = catalog
            .node
            .iter()
            .map(|def| {
                let value = |v: Value| {
                    let mut m = Metric {
                        timestamp: Some(at_ms),
                        ..Default::default()
                    };
                    set_value(&mut m, def.datatype, &v);
                    m
                };
                let known = match def.name.as_str() {
                    BD_SEQ => Some(bd_seq_metric(self.bd_seq, at_ms)),
                    REBIRTH => Some(value(Value::Bool(false))),
                    VERSION => Some(value(Value::Text(info.version.clone()))),
                    CONFIG_HASH => Some(value(Value::Text(info.config_hash.clone()))),
                    OUTBOX_DEPTH => Some(value(Value::UInt(info.outbox_depth))),
                    CLOCK_SYNCHRONISED => Some(value(Value::Bool(info.clock_synchronised))),
                    name => alarms.get(name).cloned(),
                };
                birth_metric(def, known.as_ref(), at_ms)
            })
            .collect();
        self.note_qualities(&metrics);
        message(self.topics.nbirth(), at_ms, metrics, Some(seq))
    }

    /// DBIRTH of `device` with `values` (a payload by name: its metrics'
    /// latest values); `None` for a device the configuration does not have.
    pub fn dbirth(&mut self, device: &str, values: &Payload, at_ms: u64) -> Option<Out> {
        let catalog = self.catalog.clone();
        let defs = catalog.device(device)?;
        let by_name: HashMap<&str, &Metric> = values
            .metrics
            .iter()
            .filter_map(|m| Some((m.name.as_deref()?, m)))
            .collect();
        let metrics: Vec<Metric> = defs
            .metrics
            .iter()
            .map(|def| birth_metric(def, by_name.get(def.name.as_str()).copied(), at_ms))
            .collect();
        self.note_qualities(&metrics);
        self.born.insert(device.to_owned());
        let seq = self.seq();
        Some(message(
            self.topics.dbirth(device),
            at_ms,
            metrics,
            Some(seq),
        ))
    }

    /// DDEATH of `device`, if it is born.
    pub fn ddeath(&mut self, device: &str, at_ms: u64) -> Option<Out> {
        if !self.born.remove(device) {
            return None;
        }
        let seq = self.seq();
        Some(message(
            self.topics.ddeath(device),
            at_ms,
            Vec::new(),
            Some(seq),
        ))
    }

    /// NDATA with the node metrics of `info` that differ from `before`;
    /// `None` when none does.
    pub fn ndata(&mut self, info: &NodeInfo, before: &NodeInfo, at_ms: u64) -> Option<Out> {
        let mut changed: Vec<(&str, Value)> = Vec::new();
        if info.outbox_depth != before.outbox_depth {
            changed.push((OUTBOX_DEPTH, Value::UInt(info.outbox_depth)));
        }
        if info.clock_synchronised != before.clock_synchronised {
            changed.push((CLOCK_SYNCHRONISED, Value::Bool(info.clock_synchronised)));
        }
        if info.config_hash != before.config_hash {
            changed.push((CONFIG_HASH, Value::Text(info.config_hash.clone())));
        }
        let metrics: Vec<Metric> = changed
            .into_iter()
            .filter_map(|(name, v)| {
                let def = self.catalog.node_metric(name)?;
                let mut m = Metric {
                    alias: def.alias,
                    timestamp: Some(at_ms),
                    ..Default::default()
                };
                set_value(&mut m, def.datatype, &v);
                Some(m)
            })
            .collect();
        if metrics.is_empty() {
            return None;
        }
        let seq = self.seq();
        Some(message(self.topics.ndata(), at_ms, metrics, Some(seq)))
    }

    /// A DDATA of one metric of `device` (the answer to a DCMD write):
    /// `value` at good or bad quality (`good`), or null and bad without a
    /// value, stamped `at_ms`. As in every DATA message the quality
    /// property is there only when it changed. `None` when the device is
    /// not born in this session (dead: its next DBIRTH tells the value) or
    /// has no such metric.
    pub fn metric_data(
        &mut self,
        device: &str,
        metric: &str,
        value: Option<&Value>,
        good: bool,
        at_ms: u64,
    ) -> Option<Out> {
        if !self.born.contains(device) {
            return None;
        }
        let def = self.catalog.device(device)?.metric(metric)?;
        let alias = def.alias?;
        let mut m = Metric {
            alias: Some(alias),
            timestamp: Some(at_ms),
            ..Default::default()
        };
        let good = good && value.is_some();
        match value {
            Some(v) => set_value(&mut m, def.datatype, v),
            None => m.is_null = Some(true),
        }
        if self.quality.insert(alias, good) != Some(good) {
            m.properties = Some(quality_properties(good));
        }
        let seq = self.seq();
        Some(message(
            self.topics.ddata(device),
            at_ms,
            vec![m],
            Some(seq),
        ))
    }

    /// What to do with a stored row (`topic`, `payload`), sent live or as
    /// history (`historical`). `at_ms` stamps a DDEATH.
    pub fn row(
        &mut self,
        topic: &str,
        payload: &[u8],
        historical: bool,
        at_ms: u64,
    ) -> Result<RowAction, WireError> {
        let topics = self.topics.clone();
        let kind = topics
            .row_kind(topic)
            .ok_or_else(|| WireError::Topic(topic.to_owned()))?;
        match kind {
            RowKind::Death { device } => Ok(match historical {
                true => RowAction::Drop,
                false => self
                    .ddeath(device, at_ms)
                    .map_or(RowAction::Drop, RowAction::Send),
            }),
            RowKind::Birth { device } if !historical => {
                let values = decode(payload)?;
                Ok(self
                    .dbirth(device, &values, at_ms)
                    .map_or(RowAction::Drop, RowAction::Send))
            }
            RowKind::Birth { device } | RowKind::Data { device } => {
                if self.catalog.device(device).is_none() {
                    return Ok(RowAction::Drop);
                }
                if !self.born.contains(device) {
                    return Ok(RowAction::Hold);
                }
                let payload = decode(payload)?;
                Ok(self
                    .data(Some(device), payload, historical)
                    .map_or(RowAction::Drop, RowAction::Send))
            }
            RowKind::NodeData => {
                let payload = decode(payload)?;
                Ok(self
                    .data(None, payload, historical)
                    .map_or(RowAction::Drop, RowAction::Send))
            }
        }
    }

    /// A stored payload by name as DDATA (or NDATA when `device` is `None`).
    fn data(
        &mut self,
        device: Option<&str>,
        mut payload: Payload,
        historical: bool,
    ) -> Option<Out> {
        let catalog = self.catalog.clone();
        let def_of = |name: &str| match device {
            Some(d) => catalog.device(d).and_then(|c| c.metric(name)),
            None => catalog.node_metric(name),
        };
        let mut metrics = Vec::with_capacity(payload.metrics.len());
        for mut m in std::mem::take(&mut payload.metrics) {
            let Some(def) = m.name.as_deref().and_then(def_of) else {
                self.unbound += 1;
                continue;
            };
            let Some(alias) = def.alias else {
                continue;
            };
            m.alias = Some(alias);
            m.name = None;
            m.datatype = None;
            // Whether a row is history is this send's decision, whatever
            // the stored row says.
            m.is_historical = historical.then_some(true);
            if !historical
                && let Some(q) = quality_of(&m)
                && self.quality.insert(alias, q) == Some(q)
            {
                m.properties = None;
            }
            metrics.push(m);
        }
        if metrics.is_empty() {
            return None;
        }
        payload.metrics = metrics;
        payload.seq = Some(self.seq());
        let topic = match device {
            Some(d) => self.topics.ddata(d),
            None => self.topics.ndata(),
        };
        Some(Out {
            topic,
            payload: payload.encode_to_vec(),
        })
    }
}

/// The value the answer to a write shows, as the report knows it: the
/// value read back; else the value written, when the device took it; else
/// the value before the write. `None` when the report has none of them
/// (a command refused before the device was asked): the answer then
/// shows the latest reading.
pub fn answer_value(report: &WriteReport) -> Option<Value> {
    let taken = matches!(
        report.result,
        WriteResult::Written { .. } | WriteResult::Verified
    );
    report
        .read_back
        .clone()
        .or_else(|| report.written.clone().filter(|_| taken))
        .or_else(|| report.old.clone())
}

fn decode(payload: &[u8]) -> Result<Payload, WireError> {
    Payload::decode(payload).map_err(|e| WireError::Payload(e.to_string()))
}
