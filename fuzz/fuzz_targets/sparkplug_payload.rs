//! The Sparkplug B edge node's readers of bytes: NCMD, DCMD and STATE from
//! anyone on the broker, and the stored rows of the outbox turned into
//! wire messages by one session (a row of the outbox may be anything a
//! bad disk or an older version left). None may panic, and whatever the
//! session sends keeps the rules a host checks: `seq` one more (mod 256)
//! on every message after the NBIRTH's 0, names and datatypes in births
//! only, aliases bound by the birth certificate, `is_historical` on every
//! metric of a history.
//!
//! The input is a sequence of operations on one session, each a header
//! byte, a length byte and that many payload bytes:
//!
//! | header bits | meaning                                                  |
//! |-------------|----------------------------------------------------------|
//! | 5-7         | 0 NCMD, 1 DCMD, 2 STATE, 3 rebirth (NBIRTH), 4-7 a row    |
//! | 0-1         | row kind: DDATA, DBIRTH, DDEATH, NDATA                   |
//! | 2-3         | device: pump1, pump2, pump9 (not configured), pump1      |
//! | 4           | the row is sent as history; a DCMD was retained          |
//!
//! Operations 6 and 7 build the row's payload from the bytes (metric
//! names of the catalog and others, any value field) so that the fuzzer
//! reaches the alias and quality logic without first learning protobuf;
//! a DCMD with header bit 0 set does the same.
//!
//! Some tags are writable: a DCMD's writes must name a writable tag of
//! the DCMD's device, one command per metric, and each write is answered
//! as the edge node answers it, by a one-metric DDATA of the session,
//! held to the same rules as every other DATA message.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fieldgate::command::{Delivery, Requested};
use fieldgate::config::{Condition, Connection, Device, Priority, Rule, WorkOrderTemplate};
use fieldgate::contract::sparkplug::inbound::{
    Command, device_commands, host_state, node_commands,
};
use fieldgate::contract::sparkplug::proto::Payload;
use fieldgate::contract::sparkplug::proto::payload::{Metric, metric};
use fieldgate::contract::sparkplug::session::{NodeInfo, RowAction, Session, WireError};
use fieldgate::contract::sparkplug::{Catalog, Current, SparkplugTopics};
use fieldgate::tag::{Area, DataType, Tag, Value, WriteAccess};
use libfuzzer_sys::fuzz_target;
use prost::Message as _;

const AT: u64 = 1_800_000_000_000;

fn rule(name: &str, condition: Condition) -> Rule {
    Rule {
        name: name.into(),
        condition,
        deadband: 0.0,
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        priority: Priority::High,
        asset: None,
        location: None,
        workorder: WorkOrderTemplate::default(),
    }
}

/// A tag that takes writes.
fn writable(mut tag: Tag) -> Tag {
    tag.write = Some(WriteAccess::default());
    tag
}

/// Two pumps (pump1 born at the start, pump2 not), a rule on pump1 and one
/// spanning both (node metrics); pump1's `temp` and `level` are read-only,
/// its other tags and pump2's `setpoint` take writes.
fn fixture() -> &'static (Arc<Catalog>, Vec<Device>, Vec<String>) {
    static FIXTURE: OnceLock<(Arc<Catalog>, Vec<Device>, Vec<String>)> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut temp = Tag::new("temp", Area::HoldingRegister, 0, DataType::I16);
        temp.scale = 0.1;
        temp.unit = Some("degC".into());
        let rtu = || Connection::Rtu { bus: "b".into() };
        let devices = vec![
            Device::new(
                "pump1",
                rtu(),
                vec![
                    temp,
                    Tag::new("level", Area::HoldingRegister, 1, DataType::I16),
                    writable(Tag::new("running", Area::Coil, 0, DataType::Bool)),
                    writable(Tag::new(
                        "model",
                        Area::HoldingRegister,
                        2,
                        DataType::String(4),
                    )),
                    writable(Tag::new("starts", Area::HoldingRegister, 6, DataType::U64)),
                ],
            ),
            Device::new(
                "pump2",
                rtu(),
                vec![
                    Tag::new("pressure", Area::InputRegister, 0, DataType::F32),
                    writable(Tag::new(
                        "setpoint",
                        Area::HoldingRegister,
                        0,
                        DataType::F32,
                    )),
                ],
            ),
        ];
        let rules = vec![
            rule(
                "hot",
                Condition::Above {
                    tag: "pump1.temp".into(),
                    limit: 80.0,
                },
            ),
            rule(
                "jam",
                Condition::Expr {
                    expr: "pump1.running and pump2.pressure > 3".into(),
                    tags: vec!["pump1.running".into(), "pump2.pressure".into()],
                },
            ),
        ];
        let catalog = Catalog::build(&devices, &rules);
        let mut names: Vec<String> = catalog
            .node
            .iter()
            .chain(catalog.devices.iter().flat_map(|d| d.metrics.iter()))
            .map(|m| m.name.clone())
            .collect();
        names.push("gone".into());
        names.push(String::new());
        (Arc::new(catalog), devices, names)
    })
}

fn info() -> NodeInfo {
    NodeInfo {
        version: "fuzz".into(),
        config_hash: "0".into(),
        outbox_depth: 0,
        clock_synchronised: true,
    }
}

/// A payload by name from bytes: each metric takes three bytes (name,
/// value kind, value) and may carry the quality property.
fn structured(bytes: &[u8], names: &[String]) -> Vec<u8> {
    let metrics = bytes
        .chunks(3)
        .map(|c| {
            let pick = |i: usize| c.get(i).copied().unwrap_or(0);
            let v = pick(2);
            let mut m = Metric {
                name: Some(names[usize::from(pick(0)) % names.len()].clone()),
                timestamp: Some(AT - u64::from(v)),
                datatype: Some(u32::from(pick(1) >> 4)),
                ..Default::default()
            };
            m.value = match pick(1) % 8 {
                0 => Some(metric::Value::IntValue(
                    u32::from(v).wrapping_mul(0x0101_0101),
                )),
                1 => Some(metric::Value::LongValue(u64::from(v) << 56)),
                2 => Some(metric::Value::FloatValue(f32::from(v) - 128.0)),
                3 => Some(metric::Value::DoubleValue(f64::from(v) / 3.0)),
                4 => Some(metric::Value::BooleanValue(v & 1 == 1)),
                5 => Some(metric::Value::StringValue(format!("{v}"))),
                6 => Some(metric::Value::BytesValue(vec![v])),
                _ => {
                    m.is_null = Some(true);
                    None
                }
            };
            if pick(1) & 8 != 0 {
                m.properties = Some(fieldgate::contract::sparkplug::values::quality_properties(
                    v & 2 == 0,
                ));
            }
            m
        })
        .collect();
    Payload {
        timestamp: Some(AT),
        metrics,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Checks a message the session sent; `expected_seq` is the seq it must
/// carry.
fn check(out_payload: &[u8], topic: &str, historical: bool, expected_seq: u64) {
    let p = Payload::decode(out_payload).expect("the session sends valid payloads");
    assert_eq!(p.seq, Some(expected_seq), "seq of {topic}");
    let catalog = &fixture().0;
    if topic.contains("/DBIRTH/") {
        for m in &p.metrics {
            assert!(
                m.name.is_some() && m.alias.is_some() && m.datatype.is_some(),
                "{m:?}"
            );
            assert_eq!(m.is_historical, None);
        }
    } else if topic.contains("/DDATA/") || topic.contains("/NDATA/") {
        assert!(!p.metrics.is_empty(), "an empty DATA is never sent");
        for m in &p.metrics {
            assert_eq!(m.name, None);
            assert_eq!(m.datatype, None);
            let alias = m.alias.expect("DATA carries aliases");
            let known = catalog.node_metric_by_alias(alias).is_some()
                || catalog
                    .devices
                    .iter()
                    .any(|d| d.metrics.iter().any(|x| x.alias == Some(alias)));
            assert!(known, "alias {alias} is bound by a birth");
            assert_eq!(m.is_historical, historical.then_some(true));
        }
    } else {
        assert!(topic.contains("/DDEATH/"), "{topic}");
        assert!(p.metrics.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let (catalog, devices, names) = fixture();
    let topics = SparkplugTopics::new("plant", "gw");
    let mut session = Session::new(catalog.clone(), topics.clone(), 3);
    let current = Current::default();
    session.nbirth(&info(), &current, AT);
    let pump1 = current.device_payload(&devices[0], AT);
    session
        .dbirth("pump1", &pump1, AT)
        .expect("pump1 is configured");
    let mut next_seq: u64 = 2;

    let mut rest = data;
    while let [header, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let (payload, after) = tail.split_at(n);
        rest = after;
        match header >> 5 {
            0 => {
                let _ = node_commands(payload, catalog);
            }
            1 => {
                let device = ["pump1", "pump2", "pump9", "pump1"][usize::from((header >> 2) & 3)];
                let retained = header & 0x10 != 0;
                let built;
                let payload = if header & 1 != 0 {
                    built = structured(payload, names);
                    built.as_slice()
                } else {
                    payload
                };
                let Ok(commands) = device_commands(payload, device, catalog, retained) else {
                    continue;
                };
                let metrics = Payload::decode(payload).map_or(0, |p| p.metrics.len());
                assert_eq!(commands.len(), metrics, "one command per metric");
                for c in commands {
                    let w = match c {
                        Command::Write(w) => w,
                        Command::Refused { .. } => continue,
                        Command::Rebirth => panic!("a DCMD asked for a rebirth"),
                    };
                    assert_eq!(w.device, device);
                    let def = catalog
                        .device(device)
                        .and_then(|d| d.metric(&w.tag))
                        .expect("a write names a metric of its device");
                    assert!(def.writable, "{} is not writable", w.tag);
                    let delivery = match retained {
                        true => Delivery::Retained,
                        false => Delivery::Live,
                    };
                    assert_eq!(w.delivery, delivery);
                    // Answered as the edge node answers a report.
                    let value = match &w.value {
                        Requested::Bool(b) => Some(Value::Bool(*b)),
                        Requested::Number(x) => {
                            assert!(x.is_finite(), "{x} reached the desk");
                            Some(Value::Float(*x))
                        }
                        Requested::Text(s) => Some(Value::Text(s.clone())),
                        Requested::Malformed(_) => None,
                    };
                    let born = session.is_born(device);
                    let out = session.metric_data(device, &w.tag, value.as_ref(), true, AT);
                    assert_eq!(out.is_some(), born, "answered only while born");
                    if let Some(out) = out {
                        assert!(out.topic.contains("/DDATA/"), "{}", out.topic);
                        check(&out.payload, &out.topic, false, next_seq);
                        next_seq = (next_seq + 1) % 256;
                    }
                }
            }
            2 => {
                let _ = host_state(payload);
            }
            3 => {
                let out = session.nbirth(&info(), &current, AT);
                let p = Payload::decode(out.payload.as_slice()).expect("valid NBIRTH");
                assert_eq!(p.seq, Some(0));
                assert!(!session.is_born("pump1"));
                next_seq = 1;
            }
            op => {
                let device = ["pump1", "pump2", "pump9", "pump1"][usize::from((header >> 2) & 3)];
                let topic = match header & 3 {
                    0 => topics.ddata(device),
                    1 => topics.dbirth(device),
                    2 => topics.ddeath(device),
                    _ => topics.ndata(),
                };
                let historical = header & 0x10 != 0;
                let built;
                let payload = if op >= 6 {
                    built = structured(payload, names);
                    built.as_slice()
                } else {
                    payload
                };
                match session.row(&topic, payload, historical, AT) {
                    Ok(RowAction::Send(out)) => {
                        // A stored birth sent as history is DDATA.
                        check(&out.payload, &out.topic, historical, next_seq);
                        next_seq = (next_seq + 1) % 256;
                    }
                    Ok(RowAction::Drop | RowAction::Hold) => {}
                    Err(WireError::Payload(_)) => {}
                    Err(e @ WireError::Topic(_)) => panic!("{topic} is this node's: {e}"),
                }
            }
        }
    }
});
