//! Tests of `session`: the wire form of births, data, deaths and rows.
//!
//! Every produced payload is decoded again with prost and checked the way
//! a Sparkplug host reads it: `seq`, `bdSeq`, aliases bound by the births,
//! aliases only in DATA, `is_historical`, the quality property.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use proptest::prelude::*;
use prost::Message as _;

use super::catalog::{AlarmPart, BD_SEQ, Catalog, REBIRTH, alarm_metric, tag_datatype};
use super::proto::payload::{Metric, metric, property_value};
use super::proto::{Payload, datatype};
use super::session::{NodeInfo, Out, RowAction, Session, WireError, death_certificate};
use super::topics::SparkplugTopics;
use super::values::{
    self, AlarmNow, Current, DESCRIPTION, ENG_UNIT, QUALITY_BAD, QUALITY_GOOD, quality_of,
    set_value,
};
use crate::config::{Condition, Connection, Device, Priority, Rule, WorkOrderTemplate};
use crate::reading::{BadReason, Batch, Reading};
use crate::tag::{Area, DataType, Tag, Value};

const AT: u64 = 1_700_000_000_000;
const BD_SEQ_NUMBER: u64 = 7;

fn tag(name: &str, area: Area, ty: DataType) -> Tag {
    Tag::new(name, area, 0, ty)
}

/// pump1: a scaled i16 with unit and description, a negative i16, a bit,
/// a string, a u64 counter, an f32 with a unit; pump2: an f32 and a bit.
fn devices() -> Vec<Arc<Device>> {
    let mut temp = tag("temp", Area::HoldingRegister, DataType::I16);
    temp.scale = 0.1;
    temp.unit = Some("degC".into());
    temp.description = Some("Bearing temperature".into());
    let mut flow = tag("flow", Area::InputRegister, DataType::F32);
    flow.unit = Some("m3/h".into());
    let pump1 = Device::new(
        "pump1",
        Connection::Rtu { bus: "b".into() },
        vec![
            temp,
            tag("level", Area::HoldingRegister, DataType::I16),
            tag("running", Area::Coil, DataType::Bool),
            tag("model", Area::HoldingRegister, DataType::String(4)),
            tag("starts", Area::HoldingRegister, DataType::U64),
            flow,
        ],
    );
    let pump2 = Device::new(
        "pump2",
        Connection::Rtu { bus: "b".into() },
        vec![
            tag("pressure", Area::InputRegister, DataType::F32),
            tag("fault", Area::HoldingRegister, DataType::Bit(3)),
        ],
    );
    vec![Arc::new(pump1), Arc::new(pump2)]
}

fn rule(name: &str, condition: Condition) -> Rule {
    Rule {
        name: name.into(),
        condition,
        deadband: 0.0,
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        priority: Priority::Medium,
        asset: None,
        location: None,
        workorder: WorkOrderTemplate::default(),
    }
}

/// `hot` reads pump1 only (its alarm metrics are pump1's); `jam` spans
/// both pumps (its alarm metrics are the node's).
fn rules() -> Vec<Rule> {
    vec![
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
                expr: "pump1.running and pump2.fault".into(),
                tags: vec!["pump1.running".into(), "pump2.fault".into()],
            },
        ),
    ]
}

fn catalog() -> Catalog {
    Catalog::build(&devices(), &rules())
}

fn topics() -> SparkplugTopics {
    SparkplugTopics::new("plant", "gw")
}

fn info() -> NodeInfo {
    NodeInfo {
        version: "1.2.3".into(),
        config_hash: "abc".into(),
        outbox_depth: 5,
        clock_synchronised: true,
    }
}

fn session() -> Session {
    Session::new(Arc::new(catalog()), topics(), BD_SEQ_NUMBER)
}

fn device(name: &str) -> Arc<Device> {
    devices()
        .into_iter()
        .find(|d| d.name == name)
        .expect("a test device")
}

fn batch(device: &Arc<Device>, readings: Vec<Reading>, at_ms: u64) -> Batch {
    Batch {
        device: device.clone(),
        timestamp: UNIX_EPOCH + Duration::from_millis(at_ms),
        started: Instant::now(),
        unsynced: false,
        readings,
    }
}

/// A stored DDATA row of `device`: its readings by name, as the pipeline
/// keeps them.
fn stored(name: &str, readings: Vec<Reading>, at_ms: u64) -> Vec<u8> {
    let picked: Vec<usize> = (0..readings.len()).collect();
    values::batch_payload(&batch(&device(name), readings, at_ms), &picked)
}

fn decode(out: &Out) -> Payload {
    Payload::decode(out.payload.as_slice()).expect("the session writes valid payloads")
}

fn sent(action: RowAction) -> (Out, Payload) {
    match action {
        RowAction::Send(out) => {
            let p = decode(&out);
            (out, p)
        }
        other => panic!("expected Send, got {other:?}"),
    }
}

fn by_name<'a>(p: &'a Payload, name: &str) -> &'a Metric {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn by_alias(p: &Payload, alias: u64) -> &Metric {
    p.metrics
        .iter()
        .find(|m| m.alias == Some(alias))
        .unwrap_or_else(|| panic!("no metric with alias {alias}"))
}

fn alias_of(catalog: &Catalog, device: &str, metric: &str) -> u64 {
    catalog
        .device(device)
        .and_then(|d| d.metric(metric))
        .and_then(|m| m.alias)
        .expect("a metric with an alias")
}

fn property<'a>(m: &'a Metric, key: &str) -> Option<&'a property_value::Value> {
    let props = m.properties.as_ref()?;
    let i = props.keys.iter().position(|k| k == key)?;
    props.values.get(i)?.value.as_ref()
}

fn text_property(m: &Metric, key: &str) -> Option<String> {
    match property(m, key)? {
        property_value::Value::StringValue(s) => Some(s.clone()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn quality_code(m: &Metric) -> Option<i32> {
    match property(m, values::QUALITY)? {
        property_value::Value::IntValue(v) => Some(*v as i32),
        other => panic!("the quality is not an Int32: {other:?}"),
    }
}

/// pump1 with every tag read once (`running` badly), `flow` never read.
fn current() -> Current {
    let pump1 = device("pump1");
    let mut c = Current::default();
    c.take_batch(
        &batch(
            &pump1,
            vec![
                Reading::good(0, Value::Float(42.5)),
                Reading::good(1, Value::Int(-12)),
                Reading::bad(2, BadReason::Exception(2)),
                Reading::good(3, Value::Text("P-10".into())),
                Reading::good(4, Value::UInt(u64::MAX)),
            ],
            AT - 1000,
        ),
        true,
    );
    c.take_batch(
        &batch(
            &device("pump2"),
            vec![
                Reading::good(0, Value::Float(3.25)),
                Reading::good(1, Value::Bool(false)),
            ],
            AT - 1000,
        ),
        true,
    );
    c
}

/// A session after its NBIRTH (seq 0) and pump1's DBIRTH (seq 1).
fn born() -> Session {
    let mut s = session();
    let c = current();
    s.nbirth(&info(), &c, AT);
    let values = c.device_payload(&device("pump1"), AT);
    s.dbirth("pump1", &values, AT).expect("pump1 is configured");
    s
}

fn live(s: &mut Session, topic: &str, payload: &[u8]) -> RowAction {
    s.row(topic, payload, false, AT).expect("a valid row")
}

#[test]
fn nbirth_has_seq_0_bd_seq_and_the_rebirth_control() {
    let mut s = session();
    let mut c = Current::default();
    c.node_alarms.insert(
        "jam".into(),
        AlarmNow {
            state: "active_unacked".into(),
            active: true,
            acked: false,
            at_ms: AT - 5,
        },
    );
    let out = s.nbirth(&info(), &c, AT);
    assert_eq!(out.topic, "spBv1.0/plant/NBIRTH/gw");
    let p = decode(&out);
    assert_eq!(p.seq, Some(0));
    assert_eq!(p.timestamp, Some(AT));

    let bd = by_name(&p, BD_SEQ);
    assert_eq!(bd.alias, None, "bdSeq has no alias: the NDEATH names it");
    assert_eq!(bd.datatype, Some(datatype::INT64));
    assert_eq!(bd.value, Some(metric::Value::LongValue(BD_SEQ_NUMBER)));

    let rebirth = by_name(&p, REBIRTH);
    assert!(rebirth.alias.is_some());
    assert_eq!(rebirth.datatype, Some(datatype::BOOLEAN));
    assert_eq!(rebirth.value, Some(metric::Value::BooleanValue(false)));

    let catalog = catalog();
    assert_eq!(p.metrics.len(), catalog.node.len());
    for (m, def) in p.metrics.iter().zip(&catalog.node) {
        assert_eq!(m.name.as_deref(), Some(def.name.as_str()));
        assert_eq!(m.alias, def.alias, "{}", def.name);
        assert_eq!(m.datatype, Some(def.datatype), "{}", def.name);
        assert_eq!(m.is_historical, None);
        if def.name != BD_SEQ {
            assert!(m.alias.is_some(), "{} has an alias", def.name);
        }
    }
    // The spanning rule's alarm is a node metric, with its current state.
    assert_eq!(
        by_name(&p, &alarm_metric("jam", AlarmPart::State)).value,
        Some(metric::Value::StringValue("active_unacked".into()))
    );
    assert_eq!(
        by_name(&p, &alarm_metric("jam", AlarmPart::Acked)).value,
        Some(metric::Value::BooleanValue(false))
    );
    assert_eq!(
        by_name(&p, "Node Info/Outbox Depth").value,
        Some(metric::Value::LongValue(5))
    );
    assert!(p.metrics.iter().all(|m| m.name.as_deref() != Some("hot")));
}

#[test]
fn ndeath_has_bd_seq_and_no_seq() {
    let out = death_certificate(&topics(), BD_SEQ_NUMBER, AT);
    assert_eq!(out.topic, "spBv1.0/plant/NDEATH/gw");
    let p = decode(&out);
    assert_eq!(p.seq, None);
    assert_eq!(p.metrics.len(), 1);
    let bd = &p.metrics[0];
    assert_eq!(bd.name.as_deref(), Some(BD_SEQ));
    assert_eq!(bd.alias, None);
    assert_eq!(bd.datatype, Some(datatype::INT64));
    assert_eq!(bd.value, Some(metric::Value::LongValue(BD_SEQ_NUMBER)));
}

#[test]
fn dbirth_has_every_metric_with_alias_datatype_properties_and_value() {
    let mut s = session();
    let mut c = current();
    s.nbirth(&info(), &c, AT);
    c.devices
        .get_mut("pump1")
        .expect("pump1 was read")
        .alarms
        .insert(
            "hot".into(),
            AlarmNow {
                state: "active_unacked".into(),
                active: true,
                acked: false,
                at_ms: AT - 10,
            },
        );
    let pump1 = device("pump1");
    let out = s
        .dbirth("pump1", &c.device_payload(&pump1, AT), AT)
        .expect("pump1 is configured");
    assert_eq!(out.topic, "spBv1.0/plant/DBIRTH/gw/pump1");
    assert!(s.is_born("pump1"));
    let p = decode(&out);
    assert_eq!(p.seq, Some(1));

    let catalog = catalog();
    let defs = &catalog.device("pump1").expect("pump1").metrics;
    // Six tags and the three metrics of `hot`.
    assert_eq!(defs.len(), 9);
    assert_eq!(p.metrics.len(), defs.len());
    for (m, def) in p.metrics.iter().zip(defs) {
        assert_eq!(m.name.as_deref(), Some(def.name.as_str()));
        assert!(def.alias.is_some());
        assert_eq!(m.alias, def.alias, "{}", def.name);
        assert_eq!(m.datatype, Some(def.datatype), "{}", def.name);
        assert_eq!(m.is_historical, None);
        assert_eq!(text_property(m, ENG_UNIT), def.unit, "{}", def.name);
        assert_eq!(
            text_property(m, DESCRIPTION),
            def.description,
            "{}",
            def.name
        );
    }
    for t in &pump1.tags {
        let m = by_name(&p, &t.name);
        assert_eq!(m.datatype, Some(tag_datatype(t)));
        assert!(quality_code(m).is_some(), "{} has a quality", t.name);
    }

    let temp = by_name(&p, "temp");
    assert_eq!(temp.datatype, Some(datatype::DOUBLE));
    assert_eq!(temp.value, Some(metric::Value::DoubleValue(42.5)));
    assert_eq!(temp.timestamp, Some(AT - 1000));
    assert_eq!(quality_code(temp), Some(QUALITY_GOOD));
    assert_eq!(text_property(temp, ENG_UNIT).as_deref(), Some("degC"));
    assert_eq!(
        text_property(temp, DESCRIPTION).as_deref(),
        Some("Bearing temperature")
    );

    let level = by_name(&p, "level");
    assert_eq!(level.datatype, Some(datatype::INT16));
    assert_eq!(read_back(datatype::INT16, level), Some(Value::Int(-12)));

    let running = by_name(&p, "running");
    assert_eq!(running.datatype, Some(datatype::BOOLEAN));
    assert_eq!(running.is_null, Some(true));
    assert_eq!(running.value, None);
    assert_eq!(quality_code(running), Some(QUALITY_BAD));

    assert_eq!(
        by_name(&p, "model").value,
        Some(metric::Value::StringValue("P-10".into()))
    );
    let starts = by_name(&p, "starts");
    assert_eq!(starts.datatype, Some(datatype::UINT64));
    assert_eq!(starts.value, Some(metric::Value::LongValue(u64::MAX)));

    // Never read: null, bad, with its unit all the same.
    let flow = by_name(&p, "flow");
    assert_eq!(flow.datatype, Some(datatype::FLOAT));
    assert_eq!(flow.is_null, Some(true));
    assert_eq!(quality_code(flow), Some(QUALITY_BAD));
    assert_eq!(text_property(flow, ENG_UNIT).as_deref(), Some("m3/h"));

    assert_eq!(
        by_name(&p, &alarm_metric("hot", AlarmPart::State)).value,
        Some(metric::Value::StringValue("active_unacked".into()))
    );
    assert_eq!(
        by_name(&p, &alarm_metric("hot", AlarmPart::Active)).value,
        Some(metric::Value::BooleanValue(true))
    );

    // A device the configuration does not have: nothing, and no seq used.
    assert_eq!(s.dbirth("pump9", &Payload::default(), AT), None);
    assert!(!s.is_born("pump9"));
    let next = s
        .dbirth("pump2", &c.device_payload(&device("pump2"), AT), AT)
        .expect("pump2 is configured");
    assert_eq!(decode(&next).seq, Some(2));
}

#[test]
fn a_dbirth_of_a_device_never_read_has_the_initial_alarm_state() {
    let mut s = session();
    s.nbirth(&info(), &Current::default(), AT);
    let values = Current::default().device_payload(&device("pump1"), AT);
    let p = decode(&s.dbirth("pump1", &values, AT).expect("pump1"));
    assert_eq!(
        by_name(&p, &alarm_metric("hot", AlarmPart::State)).value,
        Some(metric::Value::StringValue("normal".into()))
    );
    assert_eq!(
        by_name(&p, &alarm_metric("hot", AlarmPart::Active)).value,
        Some(metric::Value::BooleanValue(false))
    );
    assert_eq!(
        by_name(&p, &alarm_metric("hot", AlarmPart::Acked)).value,
        Some(metric::Value::BooleanValue(true))
    );
    assert!(
        p.metrics
            .iter()
            .filter(
                |m| m.datatype != Some(datatype::STRING) && m.datatype != Some(datatype::BOOLEAN)
            )
            .all(|m| m.is_null == Some(true))
    );
}

#[test]
fn seq_counts_every_message_wraps_at_256_and_restarts_on_rebirth() {
    let mut s = born();
    let t = topics().ddata("pump1");
    for i in 0..300u64 {
        let row = stored("pump1", vec![Reading::good(1, Value::Int(i as i64))], AT);
        let (out, p) = sent(live(&mut s, &t, &row));
        assert_eq!(out.topic, t);
        assert_eq!(p.seq, Some((i + 2) % 256), "message {i}");
    }
    // 302 messages so far: the DDEATH is the 303rd.
    let (_, p) = sent(live(&mut s, &topics().ddeath("pump1"), &[]));
    assert_eq!(p.seq, Some(302 % 256));

    let values = current().device_payload(&device("pump1"), AT);
    let p = decode(&s.dbirth("pump1", &values, AT).expect("pump1"));
    assert_eq!(p.seq, Some(303 % 256));

    // A rebirth starts again at 0 and forgets every device's birth.
    let p = decode(&s.nbirth(&info(), &current(), AT + 1));
    assert_eq!(p.seq, Some(0));
    assert_eq!(by_name(&p, BD_SEQ).value, Some(metric::Value::LongValue(7)));
    assert!(!s.is_born("pump1"));
    let row = stored("pump1", vec![Reading::good(1, Value::Int(1))], AT);
    assert_eq!(live(&mut s, &t, &row), RowAction::Hold);
    let p = decode(&s.dbirth("pump1", &values, AT).expect("pump1"));
    assert_eq!(p.seq, Some(1));
}

#[test]
fn live_ddata_carries_aliases_only_and_the_quality_when_it_changed() {
    let mut s = born();
    let catalog = catalog();
    let t = topics().ddata("pump1");
    let temp = alias_of(&catalog, "pump1", "temp");
    let flow = alias_of(&catalog, "pump1", "flow");

    // temp was born good: a good value carries no quality; flow was born
    // bad (never read): its first good value does.
    let row = stored(
        "pump1",
        vec![
            Reading::good(0, Value::Float(43.0)),
            Reading::good(5, Value::Float(1.5)),
        ],
        AT + 10,
    );
    let (out, p) = sent(live(&mut s, &t, &row));
    assert_eq!(out.topic, "spBv1.0/plant/DDATA/gw/pump1");
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.timestamp, Some(AT + 10));
    assert_eq!(p.metrics.len(), 2);
    for m in &p.metrics {
        assert_eq!(m.name, None, "aliases only");
        assert_eq!(m.datatype, None, "the birth gave the datatype");
        assert!(m.alias.is_some());
        assert_eq!(m.is_historical, None);
        assert_eq!(m.timestamp, Some(AT + 10));
    }
    let m = by_alias(&p, temp);
    assert_eq!(m.value, Some(metric::Value::DoubleValue(43.0)));
    assert_eq!(m.properties, None, "unchanged quality is not repeated");
    let m = by_alias(&p, flow);
    assert_eq!(m.value, Some(metric::Value::FloatValue(1.5)));
    assert_eq!(quality_of(m), Some(true), "bad at birth, good now");

    // temp goes bad: the quality is sent once, then not again.
    let bad = stored("pump1", vec![Reading::bad(0, BadReason::Timeout)], AT + 20);
    let (_, p) = sent(live(&mut s, &t, &bad));
    assert_eq!(p.metrics[0].alias, Some(temp));
    assert_eq!(p.metrics[0].is_null, Some(true));
    assert_eq!(quality_code(&p.metrics[0]), Some(QUALITY_BAD));
    let (_, p) = sent(live(&mut s, &t, &bad));
    assert_eq!(p.metrics[0].properties, None);
    // And good again: sent.
    let good = stored("pump1", vec![Reading::good(0, Value::Float(44.0))], AT + 30);
    let (_, p) = sent(live(&mut s, &t, &good));
    assert_eq!(quality_code(&p.metrics[0]), Some(QUALITY_GOOD));
    let (_, p) = sent(live(&mut s, &t, &good));
    assert_eq!(p.metrics[0].properties, None);
}

#[test]
fn history_is_marked_historical_and_keeps_its_quality() {
    let mut s = born();
    let catalog = catalog();
    let t = topics().ddata("pump1");
    let row = stored(
        "pump1",
        vec![
            Reading::good(0, Value::Float(41.0)),
            Reading::bad(1, BadReason::Timeout),
        ],
        AT - 60_000,
    );
    let (out, p) = sent(s.row(&t, &row, true, AT).expect("a valid row"));
    assert_eq!(out.topic, t);
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.timestamp, Some(AT - 60_000));
    assert_eq!(p.metrics.len(), 2);
    for m in &p.metrics {
        assert_eq!(m.is_historical, Some(true));
        assert_eq!(m.name, None);
        assert_eq!(m.datatype, None);
        assert!(m.alias.is_some());
        assert!(quality_of(m).is_some(), "history keeps every quality");
    }
    let temp = by_alias(&p, alias_of(&catalog, "pump1", "temp"));
    assert_eq!(temp.value, Some(metric::Value::DoubleValue(41.0)));
    assert_eq!(quality_code(temp), Some(QUALITY_GOOD));
    let level = by_alias(&p, alias_of(&catalog, "pump1", "level"));
    assert_eq!(quality_code(level), Some(QUALITY_BAD));

    // History does not move the live quality: level is still good live.
    let row = stored("pump1", vec![Reading::good(1, Value::Int(3))], AT + 1);
    let (_, p) = sent(live(&mut s, &t, &row));
    assert_eq!(p.metrics[0].properties, None);
    assert_eq!(p.metrics[0].is_historical, None);
}

#[test]
fn the_session_decides_what_is_history() {
    let mut s = born();
    let t = topics().ddata("pump1");
    // A stored row that says otherwise (an older version, a bad disk).
    let flagged = |flag: bool| {
        Payload {
            timestamp: Some(AT),
            metrics: vec![Metric {
                name: Some("level".into()),
                timestamp: Some(AT),
                is_historical: Some(flag),
                value: Some(metric::Value::IntValue(4)),
                ..Default::default()
            }],
            ..Default::default()
        }
        .encode_to_vec()
    };
    let (_, p) = sent(live(&mut s, &t, &flagged(true)));
    assert_eq!(p.metrics[0].is_historical, None);
    let (_, p) = sent(s.row(&t, &flagged(false), true, AT).expect("valid"));
    assert_eq!(p.metrics[0].is_historical, Some(true));
}

#[test]
fn rows_of_unborn_unknown_or_unbound_devices_and_metrics() {
    let mut s = born();
    let t = topics();
    let row = stored("pump2", vec![Reading::good(0, Value::Float(1.0))], AT);
    assert_eq!(live(&mut s, &t.ddata("pump2"), &row), RowAction::Hold);
    assert_eq!(
        s.row(&t.ddata("pump2"), &row, true, AT),
        Ok(RowAction::Hold)
    );
    assert_eq!(live(&mut s, &t.ddata("pump9"), &row), RowAction::Drop);

    // A metric the configuration no longer has is left out and counted.
    let named = |name: &str| Metric {
        name: Some(name.into()),
        timestamp: Some(AT),
        datatype: Some(datatype::DOUBLE),
        value: Some(metric::Value::DoubleValue(1.0)),
        ..Default::default()
    };
    let payload = |metrics: Vec<Metric>| {
        Payload {
            timestamp: Some(AT),
            metrics,
            ..Default::default()
        }
        .encode_to_vec()
    };
    let mixed = payload(vec![named("temp"), named("gone")]);
    let (_, p) = sent(live(&mut s, &t.ddata("pump1"), &mixed));
    assert_eq!(p.metrics.len(), 1);
    assert_eq!(
        p.metrics[0].alias,
        Some(alias_of(&catalog(), "pump1", "temp"))
    );
    assert_eq!(s.unbound, 1);
    let gone = payload(vec![named("gone"), named("pressure")]);
    assert_eq!(live(&mut s, &t.ddata("pump1"), &gone), RowAction::Drop);
    assert_eq!(s.unbound, 3);
    // Nothing sent, no seq used.
    let row = stored("pump1", vec![Reading::good(1, Value::Int(1))], AT);
    let (_, p) = sent(live(&mut s, &t.ddata("pump1"), &row));
    assert_eq!(p.seq, Some(3));
}

#[test]
fn garbage_and_foreign_rows_are_errors() {
    let mut s = born();
    let t = topics();
    for garbage in [&[0xff, 0xff, 0xff][..], &[0x0a], &[0x12, 0x05, 0x0a]] {
        assert!(
            matches!(
                s.row(&t.ddata("pump1"), garbage, false, AT),
                Err(WireError::Payload(_))
            ),
            "{garbage:?}"
        );
        assert!(matches!(
            s.row(&t.ddata("pump1"), garbage, true, AT),
            Err(WireError::Payload(_))
        ));
        assert!(matches!(
            s.row(&t.dbirth("pump1"), garbage, false, AT),
            Err(WireError::Payload(_))
        ));
        assert!(matches!(
            s.row(&t.ndata(), garbage, false, AT),
            Err(WireError::Payload(_))
        ));
    }
    for foreign in [
        "fieldgate/plant/gw/data/pump1",
        "spBv1.0/plant/NBIRTH/gw",
        "spBv1.0/other/DDATA/gw/pump1",
        "spBv1.0/plant/DDATA/gw2/pump1",
        "spBv1.0/plant/DCMD/gw/pump1",
    ] {
        assert_eq!(
            s.row(foreign, &[], false, AT),
            Err(WireError::Topic(foreign.to_owned())),
            "{foreign}"
        );
    }
}

#[test]
fn a_stored_dbirth_is_a_dbirth_live_and_ddata_as_history() {
    let mut s = session();
    s.nbirth(&info(), &Current::default(), AT);
    let t = topics();
    let catalog = catalog();
    let values = current()
        .device_payload(&device("pump1"), AT - 5)
        .encode_to_vec();

    // As history before the device is born in this session: held.
    assert_eq!(
        s.row(&t.dbirth("pump1"), &values, true, AT),
        Ok(RowAction::Hold)
    );

    let (out, p) = sent(live(&mut s, &t.dbirth("pump1"), &values));
    assert_eq!(out.topic, t.dbirth("pump1"));
    assert!(s.is_born("pump1"));
    assert_eq!(p.seq, Some(1));
    let defs = &catalog.device("pump1").expect("pump1").metrics;
    assert_eq!(p.metrics.len(), defs.len());
    for (m, def) in p.metrics.iter().zip(defs) {
        assert_eq!(m.name.as_deref(), Some(def.name.as_str()));
        assert_eq!(m.alias, def.alias);
        assert_eq!(m.datatype, Some(def.datatype));
    }

    // The same row as history: a historical DDATA of the tags it holds.
    let (out, p) = sent(s.row(&t.dbirth("pump1"), &values, true, AT).expect("valid"));
    assert_eq!(out.topic, t.ddata("pump1"));
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.metrics.len(), device("pump1").tags.len());
    for m in &p.metrics {
        assert_eq!(m.is_historical, Some(true));
        assert_eq!(m.name, None);
        assert!(m.alias.is_some());
    }

    // A birth of a device the configuration no longer has.
    let gone = Current::default()
        .device_payload(
            &Device::new("pump9", Connection::Rtu { bus: "b".into() }, vec![]),
            AT,
        )
        .encode_to_vec();
    assert_eq!(live(&mut s, &t.dbirth("pump9"), &gone), RowAction::Drop);
}

#[test]
fn a_stored_ddeath_is_sent_live_when_born_and_never_as_history() {
    let mut s = born();
    let t = topics();
    // History of a death: nothing to tell a host later.
    assert_eq!(
        s.row(&t.ddeath("pump1"), &[], true, AT),
        Ok(RowAction::Drop)
    );
    assert!(s.is_born("pump1"));

    let (out, p) = sent(live(&mut s, &t.ddeath("pump1"), &[]));
    assert_eq!(out.topic, "spBv1.0/plant/DDEATH/gw/pump1");
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.timestamp, Some(AT));
    assert!(p.metrics.is_empty());
    assert!(!s.is_born("pump1"));

    // Dead: its data waits for the next birth.
    let row = stored("pump1", vec![Reading::good(1, Value::Int(1))], AT);
    assert_eq!(live(&mut s, &t.ddata("pump1"), &row), RowAction::Hold);
    assert_eq!(
        s.row(&t.ddata("pump1"), &row, true, AT),
        Ok(RowAction::Hold)
    );
    // A second death, or one of a device never born: nothing, no seq used.
    assert_eq!(live(&mut s, &t.ddeath("pump1"), &[]), RowAction::Drop);
    assert_eq!(live(&mut s, &t.ddeath("pump2"), &[]), RowAction::Drop);
    assert_eq!(live(&mut s, &t.ddeath("pump9"), &[]), RowAction::Drop);
    let values = current().device_payload(&device("pump1"), AT);
    let p = decode(&s.dbirth("pump1", &values, AT).expect("pump1"));
    assert_eq!(p.seq, Some(3));
    let (_, p) = sent(live(&mut s, &t.ddata("pump1"), &row));
    assert_eq!(p.seq, Some(4));
}

#[test]
fn node_alarm_rows_become_ndata_with_aliases() {
    let mut s = born();
    let catalog = catalog();
    let row = values::alarm_payload(
        "jam",
        &AlarmNow {
            state: "active_unacked".into(),
            active: true,
            acked: false,
            at_ms: AT + 3,
        },
    );
    let (out, p) = sent(live(&mut s, &topics().ndata(), &row));
    assert_eq!(out.topic, "spBv1.0/plant/NDATA/gw");
    assert_eq!(p.seq, Some(2));
    assert_eq!(p.metrics.len(), 3);
    for (m, part) in p.metrics.iter().zip(AlarmPart::ALL) {
        let def = catalog
            .node_metric(&alarm_metric("jam", part))
            .expect("a node metric");
        assert_eq!(m.alias, def.alias);
        assert_eq!(m.name, None);
        assert_eq!(m.datatype, None);
    }
    // The alarm of a one-device rule is not a node metric.
    let hot = values::alarm_payload(
        "hot",
        &AlarmNow {
            state: "normal".into(),
            active: false,
            acked: true,
            at_ms: AT,
        },
    );
    assert_eq!(live(&mut s, &topics().ndata(), &hot), RowAction::Drop);
}

#[test]
fn aliases_are_unique_across_the_node_and_stable() {
    let a = catalog();
    let b = catalog();
    assert_eq!(a, b);
    let aliases = |c: &Catalog| -> Vec<(String, Option<u64>)> {
        c.node
            .iter()
            .map(|m| (m.name.clone(), m.alias))
            .chain(c.devices.iter().flat_map(|d| {
                d.metrics
                    .iter()
                    .map(|m| (format!("{}/{}", d.name, m.name), m.alias))
            }))
            .collect()
    };
    assert_eq!(aliases(&a), aliases(&b));
    let all = aliases(&a);
    assert_eq!(all.len(), a.len());
    let without: Vec<&str> = all
        .iter()
        .filter(|(_, alias)| alias.is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(without, [BD_SEQ]);
    let unique: HashSet<u64> = all.iter().filter_map(|(_, a)| *a).collect();
    assert_eq!(unique.len(), all.len() - 1, "no alias is used twice");

    assert_eq!(a.rule_owner("hot"), Some(Some("pump1")));
    assert_eq!(a.rule_owner("jam"), Some(None));
    assert_eq!(a.rule_owner("nope"), None);
    assert!(
        a.node_metric(&alarm_metric("jam", AlarmPart::Active))
            .is_some()
    );
    assert!(
        a.device("pump1")
            .and_then(|d| d.metric(&alarm_metric("hot", AlarmPart::Active)))
            .is_some()
    );
    // A rule that spans devices added or removed: the node's alarms are
    // numbered last, so no tag's alias moves.
    let device_rules: Vec<Rule> = rules().into_iter().filter(|r| r.name != "jam").collect();
    let fewer = Catalog::build(&devices(), &device_rules);
    for d in &a.devices {
        for m in &d.metrics {
            assert_eq!(
                Some(alias_of(&fewer, &d.name, &m.name)),
                m.alias,
                "{}/{}",
                d.name,
                m.name
            );
        }
    }
    let bare = Catalog::build(&devices(), &[]);
    let mut dense: Vec<u64> = aliases(&bare).iter().filter_map(|(_, a)| *a).collect();
    dense.sort_unstable();
    assert_eq!(dense, (1..=dense.len() as u64).collect::<Vec<_>>());
}

/// A metric's value read back as a host does, by its datatype: signed
/// integers from two's complement, `None` when the value is not in the
/// field the datatype names. An unsigned 64-bit value that fits in an
/// `i64` is an `Int`, as the Modbus decoder gives it.
fn read_back(dt: u32, m: &Metric) -> Option<Value> {
    use metric::Value as V;
    Some(match (dt, m.value.as_ref()?) {
        (datatype::BOOLEAN, V::BooleanValue(b)) => Value::Bool(*b),
        (datatype::STRING, V::StringValue(s)) => Value::Text(s.clone()),
        // Sign-extended into the 32 bits of `int_value`.
        (datatype::INT16 | datatype::INT32, V::IntValue(v)) => Value::Int((*v as i32).into()),
        (datatype::UINT16 | datatype::UINT32, V::IntValue(v)) => Value::Int((*v).into()),
        (datatype::INT64, V::LongValue(v)) => Value::Int(*v as i64),
        (datatype::UINT64, V::LongValue(v)) => match i64::try_from(*v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::UInt(*v),
        },
        (datatype::FLOAT, V::FloatValue(x)) => Value::Float((*x).into()),
        (datatype::DOUBLE, V::DoubleValue(x)) => Value::Float(*x),
        _ => return None,
    })
}

fn data_type() -> impl Strategy<Value = DataType> {
    prop_oneof![
        Just(DataType::Bool),
        (0u8..16).prop_map(DataType::Bit),
        Just(DataType::U16),
        Just(DataType::I16),
        Just(DataType::U32),
        Just(DataType::I32),
        Just(DataType::U64),
        Just(DataType::I64),
        Just(DataType::F32),
        Just(DataType::F64),
        (1u16..=8).prop_map(DataType::String),
    ]
}

proptest! {
    /// Whatever registers a tag of any type (scaled or not) decodes from,
    /// its value in a metric reads back the same by the datatype the
    /// birth announced.
    #[test]
    fn any_tag_value_reads_back_by_its_datatype(
        ty in data_type(),
        scale in prop_oneof![Just(1.0), Just(0.1), Just(-2.5)],
        offset in prop_oneof![Just(0.0), Just(-40.0)],
        regs in prop::collection::vec(any::<u16>(), 8),
    ) {
        let mut t = Tag::new("x", Area::HoldingRegister, 0, ty);
        t.scale = scale;
        t.offset = offset;
        let width = usize::from(t.width());
        let Ok(value) = crate::modbus::decode::decode(&t, &regs[..width]) else {
            // NaN or an infinity: never a reading.
            return Ok(());
        };
        let dt = tag_datatype(&t);
        let mut m = Metric::default();
        set_value(&mut m, dt, &value);
        prop_assert_eq!(read_back(dt, &m), Some(value));
        // Through the wire too.
        let back = Metric::decode(m.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(back, m);
    }

    /// Any value of an integer type, at the edges of its range included.
    #[test]
    fn any_integer_reads_back(
        (ty, value) in prop_oneof![
            any::<i16>().prop_map(|v| (DataType::I16, Value::Int(v.into()))),
            any::<u16>().prop_map(|v| (DataType::U16, Value::Int(v.into()))),
            any::<i32>().prop_map(|v| (DataType::I32, Value::Int(v.into()))),
            any::<u32>().prop_map(|v| (DataType::U32, Value::Int(v.into()))),
            any::<i64>().prop_map(|v| (DataType::I64, Value::Int(v))),
            (0..=i64::MAX).prop_map(|v| (DataType::U64, Value::Int(v))),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(|v| (DataType::U64, Value::UInt(v))),
            any::<f32>().prop_filter("finite", |x| x.is_finite())
                .prop_map(|v| (DataType::F32, Value::Float(v.into()))),
            any::<f64>().prop_filter("finite", |x| x.is_finite())
                .prop_map(|v| (DataType::F64, Value::Float(v))),
            any::<bool>().prop_map(|v| (DataType::Bool, Value::Bool(v))),
        ],
    ) {
        let dt = tag_datatype(&Tag::new("x", Area::HoldingRegister, 0, ty));
        let mut m = Metric::default();
        set_value(&mut m, dt, &value);
        prop_assert_eq!(read_back(dt, &m), Some(value));
    }
}

/// The answer to a DCMD write: one metric, by alias, the session's next
/// `seq`, the quality only when it changed; nothing for a device not born
/// or a metric it does not have.
#[test]
fn a_write_is_answered_by_a_ddata_of_its_one_metric() {
    let catalog = catalog();
    let mut s = born();
    let answer = |s: &mut Session, metric: &str, value: Option<Value>, good: bool| {
        s.metric_data("pump1", metric, value.as_ref(), good, AT + 5)
    };

    let out = answer(&mut s, "temp", Some(Value::Float(50.0)), true).expect("pump1 is born");
    assert_eq!(out.topic, "spBv1.0/plant/DDATA/gw/pump1");
    let p = decode(&out);
    assert_eq!(p.seq, Some(2), "after NBIRTH 0 and DBIRTH 1");
    assert_eq!(p.timestamp, Some(AT + 5));
    assert_eq!(p.metrics.len(), 1);
    let m = &p.metrics[0];
    assert_eq!(m.alias, Some(alias_of(&catalog, "pump1", "temp")));
    assert_eq!((m.name.as_deref(), m.datatype), (None, None));
    assert_eq!(m.timestamp, Some(AT + 5));
    assert_eq!(m.value, Some(metric::Value::DoubleValue(50.0)));
    assert_eq!(quality_code(m), None, "good at the birth, good now");

    // `running` was born bad: the answer says it is good again, once.
    let p = decode(&answer(&mut s, "running", Some(Value::Bool(true)), true).unwrap());
    assert_eq!(p.seq, Some(3));
    assert_eq!(p.metrics[0].value, Some(metric::Value::BooleanValue(true)));
    assert_eq!(quality_code(&p.metrics[0]), Some(QUALITY_GOOD));
    let p = decode(&answer(&mut s, "running", Some(Value::Bool(false)), true).unwrap());
    assert_eq!(p.seq, Some(4));
    assert_eq!(quality_code(&p.metrics[0]), None);

    // No value: null and bad, whatever `good` says.
    let p = decode(&answer(&mut s, "running", None, true).unwrap());
    assert_eq!(p.metrics[0].is_null, Some(true));
    assert_eq!(p.metrics[0].value, None);
    assert_eq!(quality_code(&p.metrics[0]), Some(QUALITY_BAD));

    // pump2 is not born in this session; `ghost` is no metric: no answer,
    // and no seq spent.
    assert_eq!(
        s.metric_data("pump2", "pressure", Some(&Value::Float(1.0)), true, AT),
        None
    );
    assert_eq!(answer(&mut s, "ghost", Some(Value::Int(1)), true), None);
    let p = decode(&answer(&mut s, "level", Some(Value::Int(-3)), true).unwrap());
    assert_eq!(p.seq, Some(6));
    assert_eq!(
        p.metrics[0].value,
        Some(metric::Value::IntValue(-3i32 as u32))
    );

    // After its death the device gets no answer.
    s.ddeath("pump1", AT).expect("pump1 was born");
    assert_eq!(answer(&mut s, "temp", Some(Value::Float(1.0)), true), None);
}

#[test]
fn the_answer_shows_what_the_device_holds_as_far_as_the_report_knows() {
    use crate::command::{
        Delivery, RejectReason, Requested, Source, WriteCommand, WriteReport, WriteResult,
    };
    let report =
        |result: WriteResult, old: Option<f64>, written: Option<f64>, read_back: Option<f64>| {
            WriteReport {
                command: WriteCommand {
                    device: "pump1".into(),
                    tag: "temp".into(),
                    value: Requested::Number(42.5),
                    id: None,
                    by: None,
                    sent: None,
                    received: UNIX_EPOCH,
                    source: Source::Sparkplug,
                    delivery: Delivery::Live,
                },
                old: old.map(Value::Float),
                written: written.map(Value::Float),
                read_back: read_back.map(Value::Float),
                result,
                at: UNIX_EPOCH,
                took: Duration::ZERO,
            }
        };
    let answer = |r: WriteReport| super::session::answer_value(&r);
    let f = |x: f64| Some(Value::Float(x));
    assert_eq!(
        answer(report(
            WriteResult::Verified,
            Some(1.0),
            Some(42.5),
            Some(42.5)
        )),
        f(42.5)
    );
    let mismatch = WriteResult::Written {
        note: Some("read back 42".into()),
    };
    assert_eq!(
        answer(report(mismatch, Some(1.0), Some(42.5), Some(42.0))),
        f(42.0)
    );
    // Taken without a read-back: what was written.
    assert_eq!(
        answer(report(WriteResult::Verified, Some(1.0), Some(42.5), None)),
        f(42.5)
    );
    assert_eq!(
        answer(report(
            WriteResult::Written { note: None },
            None,
            Some(42.5),
            None
        )),
        f(42.5)
    );
    // Not taken, or not known to be: the value before.
    let refused = WriteResult::Rejected(RejectReason::Refused("exception 3".into()));
    assert_eq!(answer(report(refused, Some(1.0), Some(42.5), None)), f(1.0));
    let unknown = WriteResult::Unknown("timeout".into());
    assert_eq!(answer(report(unknown, Some(1.0), Some(42.5), None)), f(1.0));
    // Refused before the device was asked: nothing (the latest reading).
    let stale = WriteResult::Rejected(RejectReason::Stale("retained".into()));
    assert_eq!(answer(report(stale, None, None, None)), None);
}
