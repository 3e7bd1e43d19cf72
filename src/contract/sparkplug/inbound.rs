//! What the edge node receives: NCMD, DCMD and the primary host's STATE.
//! Every payload is outside input: a malformed one is an error value,
//! never a panic.
//!
//! A DCMD metric that names a writable tag (by name or by alias) is a
//! write ([`MetricWrite`]); its value is kept as it came ([`Requested`]),
//! since the write desk fits it to the tag and answers a wrong type with
//! a result on the record. Every other DCMD metric is refused.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message as _;

use super::catalog::{Catalog, REBIRTH};
use super::proto::payload::{Metric, metric};
use super::proto::{Payload, datatype};
use crate::command::{Delivery, Requested, Source, WriteCommand};

/// A command of an NCMD or DCMD, one per metric.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `Node Control/Rebirth` = true: publish NBIRTH and every DBIRTH again.
    Rebirth,
    /// A DCMD metric of a writable tag: a write for the desk.
    Write(MetricWrite),
    /// A metric fieldgate does not take this command for (by name, or
    /// `#alias`).
    Refused {
        /// The metric as the command named it.
        metric: String,
        /// Why.
        why: Refusal,
    },
}

/// Why a command's metric is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No metric of that name or alias (or of that device).
    Unknown,
    /// A metric that takes no such command: a tag not made writable, an
    /// alarm metric, a node metric, `Node Control/Rebirth` set to false.
    NotWritable,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unknown => "no such metric",
            Refusal::NotWritable => "the metric takes no command",
        })
    }
}

/// A write a DCMD asks for: one metric of a writable tag.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWrite {
    /// The device (the DCMD's topic).
    pub device: String,
    /// The tag (its metric's name).
    pub tag: String,
    /// The value as the metric carried it.
    pub value: Requested,
    /// The metric's timestamp, or else the payload's: when the host says
    /// it sent the command.
    pub sent: Option<SystemTime>,
    /// Live, or the broker's retained copy (never to be written).
    pub delivery: Delivery,
}

impl MetricWrite {
    /// The write command for the desk, received at `received`, asked by
    /// `by` (a DCMD does not say who sent it).
    pub fn command(self, by: Option<String>, received: SystemTime) -> WriteCommand {
        WriteCommand {
            device: self.device,
            tag: self.tag,
            value: self.value,
            id: None,
            by,
            sent: self.sent,
            received,
            source: Source::Sparkplug,
            delivery: self.delivery,
        }
    }
}

/// A primary host application's state (`spBv1.0/STATE/{host}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostState {
    /// The host is online.
    pub online: bool,
    /// Its timestamp (ms since the epoch); `None` in the text form of
    /// Sparkplug 2.2 (`ONLINE` / `OFFLINE`).
    pub timestamp: Option<u64>,
}

/// Why an inbound Sparkplug message was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SparkplugInboundError {
    /// Not a Sparkplug B payload.
    #[error("payload does not decode: {0}")]
    Payload(String),
    /// A STATE that is neither the JSON of 3.0 nor the text of 2.2.
    #[error("STATE payload is not {{\"online\":…,\"timestamp\":…}}: {0}")]
    State(String),
}

fn decode(payload: &[u8]) -> Result<Payload, SparkplugInboundError> {
    Payload::decode(payload).map_err(|e| SparkplugInboundError::Payload(e.to_string()))
}

/// The commands of an NCMD. A metric is known by name or by alias.
pub fn node_commands(
    payload: &[u8],
    catalog: &Catalog,
) -> Result<Vec<Command>, SparkplugInboundError> {
    let payload = decode(payload)?;
    Ok(payload
        .metrics
        .iter()
        .map(|m| {
            let name = match (&m.name, m.alias) {
                (Some(name), _) => Some(name.as_str()),
                (None, Some(alias)) => catalog.node_metric_by_alias(alias).map(|d| d.name.as_str()),
                (None, None) => None,
            };
            let truthy = matches!(m.value, Some(metric::Value::BooleanValue(true)));
            match name {
                Some(REBIRTH) if truthy => Command::Rebirth,
                Some(name) => Command::Refused {
                    metric: name.to_owned(),
                    why: match catalog.node_metric(name) {
                        Some(_) => Refusal::NotWritable,
                        None => Refusal::Unknown,
                    },
                },
                None => Command::Refused {
                    metric: m.alias.map_or_else(|| "?".to_owned(), |a| format!("#{a}")),
                    why: Refusal::Unknown,
                },
            }
        })
        .collect())
}

/// The commands of a DCMD to `device`, one per metric: a write for each
/// metric (by name, or by alias) of a writable tag of the device, a
/// refusal for any other. `retained`: the message was the broker's
/// retained copy.
pub fn device_commands(
    payload: &[u8],
    device: &str,
    catalog: &Catalog,
    retained: bool,
) -> Result<Vec<Command>, SparkplugInboundError> {
    let payload = decode(payload)?;
    let defs = catalog.device(device);
    let delivery = match retained {
        true => Delivery::Retained,
        false => Delivery::Live,
    };
    Ok(payload
        .metrics
        .iter()
        .map(|m| {
            let label = match (&m.name, m.alias) {
                (Some(n), _) => n.clone(),
                (None, Some(a)) => format!("#{a}"),
                (None, None) => "?".to_owned(),
            };
            let def = defs.and_then(|d| match (&m.name, m.alias) {
                (Some(name), _) => d.metric(name),
                (None, Some(alias)) => d.metric_by_alias(alias),
                (None, None) => None,
            });
            match def {
                None => Command::Refused {
                    metric: label,
                    why: Refusal::Unknown,
                },
                Some(def) if !def.writable => Command::Refused {
                    metric: label,
                    why: Refusal::NotWritable,
                },
                Some(def) => Command::Write(MetricWrite {
                    device: device.to_owned(),
                    tag: def.name.clone(),
                    value: requested(m, def.datatype),
                    sent: m.timestamp.or(payload.timestamp).and_then(epoch_time),
                    delivery,
                }),
            }
        })
        .collect())
}

fn epoch_time(ms: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

/// The value a DCMD metric carries. Its own datatype (else the one the
/// birth gave the metric) says how to read an integer field: signed types
/// are two's complement. A Boolean sent as the integer 0 or 1 is a
/// boolean; any other kind of value is passed on as it came, for the desk
/// to refuse if the tag cannot take it.
pub fn requested(m: &Metric, birth_datatype: u32) -> Requested {
    use metric::Value as V;
    let datatype = m.datatype.unwrap_or(birth_datatype);
    if m.is_null == Some(true) {
        return Requested::Malformed("the metric is null: no value to write".to_owned());
    }
    let integer = |v: f64| match datatype {
        datatype::BOOLEAN if v == 0.0 || v == 1.0 => Requested::Bool(v == 1.0),
        _ => Requested::Number(v),
    };
    let float = |v: f64| match v.is_finite() {
        true => Requested::Number(v),
        false => Requested::Malformed(format!("{v} is not a value a tag can take")),
    };
    match &m.value {
        None => Requested::Malformed("the metric carries no value".to_owned()),
        Some(V::BooleanValue(b)) => Requested::Bool(*b),
        Some(V::IntValue(v)) => integer(match datatype {
            datatype::INT8 | datatype::INT16 | datatype::INT32 => f64::from(*v as i32),
            _ => f64::from(*v),
        }),
        Some(V::LongValue(v)) => integer(match datatype {
            datatype::INT64 => *v as i64 as f64,
            _ => *v as f64,
        }),
        // The decimal the host meant (0.1), not the nearest double of
        // the nearest single (0.10000000149…).
        Some(V::FloatValue(v)) => float(v.to_string().parse().unwrap_or(f64::from(*v))),
        Some(V::DoubleValue(v)) => float(*v),
        Some(V::StringValue(s)) => Requested::Text(s.clone()),
        Some(V::BytesValue(_)) => Requested::Malformed("a Bytes value cannot be written".into()),
        Some(V::DatasetValue(_)) => {
            Requested::Malformed("a DataSet value cannot be written".into())
        }
        Some(V::TemplateValue(_)) => {
            Requested::Malformed("a Template value cannot be written".into())
        }
        Some(V::ExtensionValue(_)) => {
            Requested::Malformed("an extension value cannot be written".into())
        }
    }
}

/// A STATE payload: `{"online":true,"timestamp":1700000000000}` (3.0), or
/// `ONLINE` / `OFFLINE` (2.2).
pub fn host_state(payload: &[u8]) -> Result<HostState, SparkplugInboundError> {
    #[derive(serde::Deserialize)]
    struct State {
        online: bool,
        timestamp: Option<u64>,
    }
    let text = std::str::from_utf8(payload)
        .map_err(|e| SparkplugInboundError::State(e.to_string()))?
        .trim();
    match text {
        "ONLINE" => Ok(HostState {
            online: true,
            timestamp: None,
        }),
        "OFFLINE" => Ok(HostState {
            online: false,
            timestamp: None,
        }),
        _ => serde_json::from_str::<State>(text)
            .map(|s| HostState {
                online: s.online,
                timestamp: s.timestamp,
            })
            .map_err(|e| SparkplugInboundError::State(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_of_both_versions() {
        assert_eq!(
            host_state(br#"{"online":true,"timestamp":5}"#),
            Ok(HostState {
                online: true,
                timestamp: Some(5)
            })
        );
        assert_eq!(host_state(b"OFFLINE").map(|s| s.online), Ok(false));
        assert!(host_state(b"{}").is_err());
        assert!(host_state(&[0xff, 0xfe]).is_err());
        assert!(host_state(b"").is_err());
    }

    #[test]
    fn rebirth_by_name_and_garbage_refused() {
        let p = Payload {
            metrics: vec![Metric {
                name: Some(REBIRTH.into()),
                value: Some(metric::Value::BooleanValue(true)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let catalog = Catalog::build::<crate::config::Device>(&[], &[]);
        assert_eq!(
            node_commands(&p.encode_to_vec(), &catalog),
            Ok(vec![Command::Rebirth])
        );
        assert!(node_commands(&[0xff, 0xff, 0xff], &catalog).is_err());
        assert!(device_commands(&[0x0a], "pump1", &catalog, false).is_err());
    }

    use crate::config::{Condition, Connection, Device, Priority, Rule, WorkOrderTemplate};
    use crate::contract::sparkplug::proto::payload::Metric;
    use crate::tag::{Area, DataType, Tag, WriteAccess};

    const AT: u64 = 1_700_000_000_000;

    fn writable(name: &str, area: Area, ty: DataType) -> Tag {
        let mut t = Tag::new(name, area, 0, ty);
        t.write = Some(WriteAccess::default());
        t
    }

    /// pump1: writable tags of every kind, one read-only tag, and the
    /// alarm metrics of `hot`.
    fn catalog() -> Catalog {
        let mut scaled = writable("scaled", Area::HoldingRegister, DataType::I16);
        scaled.scale = 0.1;
        let pump1 = Device::new(
            "pump1",
            Connection::Rtu { bus: "b".into() },
            vec![
                Tag::new("temp", Area::InputRegister, 0, DataType::F32),
                writable("setpoint", Area::HoldingRegister, DataType::F32),
                writable("run", Area::Coil, DataType::Bool),
                writable("offset", Area::HoldingRegister, DataType::I16),
                writable("total", Area::HoldingRegister, DataType::U32),
                writable("delta", Area::HoldingRegister, DataType::I64),
                writable("counter", Area::HoldingRegister, DataType::U64),
                writable("exact", Area::HoldingRegister, DataType::F64),
                writable("model", Area::HoldingRegister, DataType::String(4)),
                scaled,
            ],
        );
        let hot = Rule {
            name: "hot".into(),
            condition: Condition::Above {
                tag: "pump1.temp".into(),
                limit: 80.0,
            },
            deadband: 0.0,
            on_delay: std::time::Duration::ZERO,
            off_delay: std::time::Duration::ZERO,
            priority: Priority::Medium,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate::default(),
        };
        Catalog::build(&[pump1], &[hot])
    }

    fn alias(catalog: &Catalog, metric: &str) -> u64 {
        catalog
            .device("pump1")
            .and_then(|d| d.metric(metric))
            .and_then(|m| m.alias)
            .expect("a metric of pump1")
    }

    fn by_name(name: &str, value: metric::Value) -> Metric {
        Metric {
            name: Some(name.into()),
            value: Some(value),
            ..Default::default()
        }
    }

    fn dcmd(metrics: Vec<Metric>, timestamp: Option<u64>) -> Vec<u8> {
        Payload {
            timestamp,
            metrics,
            ..Default::default()
        }
        .encode_to_vec()
    }

    /// The commands of one DCMD to pump1, sent live.
    fn commands(metrics: Vec<Metric>) -> Vec<Command> {
        device_commands(&dcmd(metrics, Some(AT)), "pump1", &catalog(), false)
            .expect("a valid payload")
    }

    /// The value of the one write a DCMD of `metric` makes.
    fn value_of(metric: Metric) -> Requested {
        match commands(vec![metric]).as_slice() {
            [Command::Write(w)] => w.value.clone(),
            other => panic!("expected one write, got {other:?}"),
        }
    }

    fn at(ms: u64) -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_millis(ms))
    }

    #[test]
    fn a_writable_tag_by_name_is_a_write_for_the_desk() {
        let mut m = by_name("setpoint", metric::Value::FloatValue(42.5));
        m.timestamp = Some(AT - 300);
        assert_eq!(
            commands(vec![m]),
            vec![Command::Write(MetricWrite {
                device: "pump1".into(),
                tag: "setpoint".into(),
                value: Requested::Number(42.5),
                sent: at(AT - 300),
                delivery: Delivery::Live,
            })]
        );
    }

    #[test]
    fn a_writable_tag_by_alias_is_named_by_the_catalog() {
        let catalog = catalog();
        let m = Metric {
            alias: Some(alias(&catalog, "run")),
            value: Some(metric::Value::BooleanValue(true)),
            ..Default::default()
        };
        let got = device_commands(&dcmd(vec![m], Some(AT)), "pump1", &catalog, false).unwrap();
        match got.as_slice() {
            [Command::Write(w)] => {
                assert_eq!((w.tag.as_str(), &w.value), ("run", &Requested::Bool(true)));
            }
            other => panic!("expected one write, got {other:?}"),
        }
    }

    #[test]
    fn read_only_alarm_and_unknown_metrics_are_refused() {
        let catalog = catalog();
        let refused = |metric: &str, why| Command::Refused {
            metric: metric.into(),
            why,
        };
        let got = device_commands(
            &dcmd(
                vec![
                    by_name("temp", metric::Value::FloatValue(5.0)),
                    by_name("Alarms/hot/Acked", metric::Value::BooleanValue(true)),
                    by_name(
                        "Alarms/hot/State",
                        metric::Value::StringValue("normal".into()),
                    ),
                    by_name("ghost", metric::Value::BooleanValue(true)),
                    Metric {
                        alias: Some(alias(&catalog, "temp")),
                        value: Some(metric::Value::FloatValue(5.0)),
                        ..Default::default()
                    },
                    // The node's aliases are not the device's.
                    Metric {
                        alias: Some(1),
                        value: Some(metric::Value::BooleanValue(true)),
                        ..Default::default()
                    },
                    by_name(REBIRTH, metric::Value::BooleanValue(true)),
                    Metric::default(),
                ],
                Some(AT),
            ),
            "pump1",
            &catalog,
            false,
        )
        .unwrap();
        let temp_alias = format!("#{}", alias(&catalog, "temp"));
        assert_eq!(
            got,
            vec![
                refused("temp", Refusal::NotWritable),
                refused("Alarms/hot/Acked", Refusal::NotWritable),
                refused("Alarms/hot/State", Refusal::NotWritable),
                refused("ghost", Refusal::Unknown),
                refused(&temp_alias, Refusal::NotWritable),
                refused("#1", Refusal::Unknown),
                refused(REBIRTH, Refusal::Unknown),
                refused("?", Refusal::Unknown),
            ]
        );
        // A device the configuration does not have: every metric unknown.
        let got = device_commands(
            &dcmd(
                vec![by_name("setpoint", metric::Value::FloatValue(1.0))],
                None,
            ),
            "ghost",
            &catalog,
            false,
        )
        .unwrap();
        assert_eq!(got, vec![refused("setpoint", Refusal::Unknown)]);
    }

    #[test]
    fn each_datatype_gives_the_value_the_host_meant() {
        use metric::Value as V;
        let typed = |name: &str, datatype: Option<u32>, value: V| Metric {
            datatype,
            ..by_name(name, value)
        };
        let n = Requested::Number;
        for (metric, want) in [
            (
                typed("run", None, V::BooleanValue(false)),
                Requested::Bool(false),
            ),
            // A Boolean sent as an integer 0 or 1 is a boolean.
            (typed("run", None, V::IntValue(1)), Requested::Bool(true)),
            (
                typed("run", Some(datatype::BOOLEAN), V::LongValue(0)),
                Requested::Bool(false),
            ),
            // Signed integers are two's complement, in the birth's datatype
            // or the metric's own.
            (typed("offset", None, V::IntValue(-5i32 as u32)), n(-5.0)),
            (
                typed("offset", Some(datatype::INT8), V::IntValue(-1i32 as u32)),
                n(-1.0),
            ),
            (typed("total", None, V::IntValue(4_000_000_000)), n(4e9)),
            (
                typed("total", Some(datatype::INT32), V::IntValue(u32::MAX)),
                n(-1.0),
            ),
            (typed("delta", None, V::LongValue(-7i64 as u64)), n(-7.0)),
            (
                typed("counter", None, V::LongValue(1 << 40)),
                n((1u64 << 40) as f64),
            ),
            (typed("setpoint", None, V::FloatValue(0.1)), n(0.1)),
            (typed("exact", None, V::DoubleValue(-2.25)), n(-2.25)),
            (typed("scaled", None, V::DoubleValue(12.5)), n(12.5)),
            (
                typed("model", None, V::StringValue("P-10".into())),
                Requested::Text("P-10".into()),
            ),
            // A wrong kind is passed on as it came: the desk refuses it on
            // the record.
            (
                typed("setpoint", None, V::StringValue("42".into())),
                Requested::Text("42".into()),
            ),
            (typed("run", None, V::IntValue(7)), n(7.0)),
            (typed("model", None, V::DoubleValue(3.0)), n(3.0)),
        ] {
            let name = metric.name.clone();
            assert_eq!(value_of(metric), want, "{name:?}");
        }
    }

    #[test]
    fn values_no_tag_can_take_are_malformed_commands() {
        use metric::Value as V;
        let malformed = |m: Metric| matches!(value_of(m), Requested::Malformed(_));
        assert!(malformed(Metric {
            name: Some("setpoint".into()),
            ..Default::default()
        }));
        assert!(malformed(Metric {
            is_null: Some(true),
            ..by_name("setpoint", V::FloatValue(1.0))
        }));
        assert!(malformed(by_name("setpoint", V::FloatValue(f32::NAN))));
        assert!(malformed(by_name("exact", V::DoubleValue(f64::INFINITY))));
        assert!(malformed(by_name("model", V::BytesValue(vec![1, 2]))));
        assert!(malformed(by_name(
            "model",
            V::DatasetValue(Default::default())
        )));
        assert!(malformed(by_name(
            "model",
            V::TemplateValue(Default::default())
        )));
    }

    #[test]
    fn sent_is_the_metric_stamp_else_the_payload_stamp() {
        let catalog = catalog();
        let mut stamped = by_name("setpoint", metric::Value::FloatValue(1.0));
        stamped.timestamp = Some(AT - 5);
        let plain = by_name("exact", metric::Value::DoubleValue(2.0));
        let sent = |payload_ts: Option<u64>| -> Vec<Option<SystemTime>> {
            device_commands(
                &dcmd(vec![stamped.clone(), plain.clone()], payload_ts),
                "pump1",
                &catalog,
                false,
            )
            .unwrap()
            .into_iter()
            .map(|c| match c {
                Command::Write(w) => w.sent,
                other => panic!("expected a write, got {other:?}"),
            })
            .collect()
        };
        assert_eq!(sent(Some(AT)), vec![at(AT - 5), at(AT)]);
        assert_eq!(sent(None), vec![at(AT - 5), None]);
        // Any stamp at all is read without a panic (the desk judges age).
        let mut far = by_name("setpoint", metric::Value::FloatValue(1.0));
        far.timestamp = Some(u64::MAX);
        assert!(matches!(
            commands(vec![far]).as_slice(),
            [Command::Write(_)]
        ));
    }

    #[test]
    fn a_retained_dcmd_is_a_retained_write() {
        let got = device_commands(
            &dcmd(
                vec![by_name("run", metric::Value::BooleanValue(true))],
                Some(AT),
            ),
            "pump1",
            &catalog(),
            true,
        )
        .unwrap();
        match got.as_slice() {
            [Command::Write(w)] => assert_eq!(w.delivery, Delivery::Retained),
            other => panic!("expected one write, got {other:?}"),
        }
    }

    #[test]
    fn a_write_becomes_a_sparkplug_command_for_the_desk() {
        let w = MetricWrite {
            device: "pump1".into(),
            tag: "setpoint".into(),
            value: Requested::Number(42.5),
            sent: at(AT),
            delivery: Delivery::Live,
        };
        let received = UNIX_EPOCH + Duration::from_millis(AT + 20);
        assert_eq!(
            w.command(Some("scada".into()), received),
            WriteCommand {
                device: "pump1".into(),
                tag: "setpoint".into(),
                value: Requested::Number(42.5),
                id: None,
                by: Some("scada".into()),
                sent: at(AT),
                received,
                source: Source::Sparkplug,
                delivery: Delivery::Live,
            }
        );
    }

    #[test]
    fn ncmd_refusals_say_why() {
        let catalog = catalog();
        let p = dcmd(
            vec![
                by_name(REBIRTH, metric::Value::BooleanValue(false)),
                by_name("Node Info/Version", metric::Value::StringValue("9".into())),
                by_name("nope", metric::Value::BooleanValue(true)),
            ],
            None,
        );
        let whys: Vec<Refusal> = node_commands(&p, &catalog)
            .unwrap()
            .into_iter()
            .map(|c| match c {
                Command::Refused { why, .. } => why,
                other => panic!("expected a refusal, got {other:?}"),
            })
            .collect();
        assert_eq!(
            whys,
            [Refusal::NotWritable, Refusal::NotWritable, Refusal::Unknown]
        );
    }
}
