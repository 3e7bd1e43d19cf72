//! The watcher's lines, through [`Viewer::line`] only: every datatype,
//! aliases learnt from births, history, quality, bounds and garbage.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message as _;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Viewer;
use super::view::{MAX_LINE, MAX_METRICS, MAX_TEXT};
use crate::config::{Connection, Device};
use crate::contract::sparkplug::proto::payload::{
    DataSet, Metric, PropertySet, PropertyValue, Template, metric, property_value,
};
use crate::contract::sparkplug::proto::{Payload, datatype};
use crate::contract::sparkplug::session::NodeInfo;
use crate::contract::sparkplug::{Catalog, Current, Session, SparkplugTopics};
use crate::reading::{BadReason, Batch, Reading};
use crate::tag::{Area, DataType, Tag, Value};

/// 2023-11-14T22:13:20.000Z.
const NOW_MS: u64 = 1_700_000_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(NOW_MS)
}

fn encode(p: Payload) -> Vec<u8> {
    p.encode_to_vec()
}

fn named(name: &str, dt: u32, value: metric::Value) -> Metric {
    Metric {
        name: Some(name.into()),
        datatype: Some(dt),
        value: Some(value),
        ..Default::default()
    }
}

fn aliased(alias: u64, value: metric::Value) -> Metric {
    Metric {
        alias: Some(alias),
        value: Some(value),
        ..Default::default()
    }
}

fn props(pairs: &[(&str, property_value::Value)]) -> PropertySet {
    PropertySet {
        keys: pairs.iter().map(|(k, _)| (*k).to_owned()).collect(),
        values: pairs
            .iter()
            .map(|(_, v)| PropertyValue {
                r#type: None,
                is_null: None,
                value: Some(v.clone()),
            })
            .collect(),
    }
}

fn quality(code: i32) -> PropertySet {
    props(&[("Quality", property_value::Value::IntValue(code as u32))])
}

fn payload(seq: u64, metrics: Vec<Metric>) -> Vec<u8> {
    encode(Payload {
        timestamp: Some(NOW_MS),
        seq: Some(seq),
        metrics,
        ..Default::default()
    })
}

fn line(v: &mut Viewer, topic: &str, payload: &[u8]) -> String {
    let l = v.line(topic, payload, now());
    assert!(!l.contains('\n') && !l.contains('\r'), "one line: {l:?}");
    assert!(!l.contains('\u{1b}'), "no escape codes: {l:?}");
    l
}

#[test]
fn every_datatype_reads_as_its_type_says() {
    use metric::Value as V;
    let mut v = Viewer::new();
    let metrics = vec![
        named("i8", 1, V::IntValue(-5i32 as u32)),
        named("i16", datatype::INT16, V::IntValue(-300i32 as u32)),
        named("i32", datatype::INT32, V::IntValue(-70_000i32 as u32)),
        named("i64", datatype::INT64, V::LongValue(-5i64 as u64)),
        named("u8", 5, V::IntValue(250)),
        named("u16", datatype::UINT16, V::IntValue(65_535)),
        named("u32", datatype::UINT32, V::IntValue(u32::MAX)),
        named("u64", datatype::UINT64, V::LongValue(u64::MAX)),
        named("f32", datatype::FLOAT, V::FloatValue(1.5)),
        named("f64", datatype::DOUBLE, V::DoubleValue(-0.25)),
        named("on", datatype::BOOLEAN, V::BooleanValue(true)),
        named("s", datatype::STRING, V::StringValue("P-101".into())),
    ];
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(7, metrics));
    assert!(
        l.ends_with(
            "DDATA   g/n/d  seq=7  i8=-5, i16=-300, i32=-70000, i64=-5, u8=250, u16=65535, \
             u32=4294967295, u64=18446744073709551615, f32=1.5, f64=-0.25, on=true, s=\"P-101\""
        ),
        "{l}"
    );
    assert!(l.starts_with("2023-11-14T22:13:20.000Z  "), "{l}");

    let metrics = vec![
        named("scaled", datatype::DOUBLE, V::DoubleValue(1203.0 * 0.01)),
        named("big", datatype::DOUBLE, V::DoubleValue(-1.5e300)),
        named("tiny", datatype::FLOAT, V::FloatValue(1e-7)),
        named("text", 14, V::StringValue("a\nb".into())),
        named("when", datatype::DATETIME, V::LongValue(NOW_MS)),
        named("id", 15, V::StringValue("0f1e".into())),
        named("blob", 17, V::BytesValue(vec![1, 2, 3])),
        named("file", 18, V::BytesValue(vec![0; 10])),
        named(
            "table",
            16,
            V::DatasetValue(DataSet {
                num_of_columns: Some(2),
                columns: vec!["a".into(), "b".into()],
                types: vec![datatype::INT32, datatype::STRING],
                rows: vec![Default::default(); 3],
            }),
        ),
        named(
            "udt",
            19,
            V::TemplateValue(Template {
                template_ref: Some("Motor".into()),
                metrics: vec![Metric::default(); 2],
                ..Default::default()
            }),
        ),
        Metric {
            name: Some("gone".into()),
            datatype: Some(datatype::DOUBLE),
            is_null: Some(true),
            ..Default::default()
        },
        Metric {
            name: Some("empty".into()),
            ..Default::default()
        },
    ];
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(8, metrics));
    assert!(
        l.ends_with(
            "scaled=12.03, big=-1.5e300, tiny=1e-7, text=\"a\\nb\", when=2023-11-14T22:13:20.000Z, id=\"0f1e\", blob=<3 bytes>, \
             file=<file, 10 bytes>, table=<dataset, 2 columns, 3 rows>, \
             udt=<template Motor, 2 metrics>, gone=null, empty=?"
        ),
        "{l}"
    );
}

#[test]
fn aliases_come_from_the_births_and_show_as_alias_before_one() {
    use metric::Value as V;
    let mut v = Viewer::new();
    let ddata = payload(
        3,
        vec![
            aliased(7, V::IntValue(-2i32 as u32)),
            aliased(8, V::DoubleValue(1.25)),
        ],
    );
    // Came in mid-session: no birth seen, no name, no datatype.
    let l = line(&mut v, "spBv1.0/g/DDATA/n/pump1", &ddata);
    assert!(l.ends_with("seq=3  #7=4294967294, #8=1.25"), "{l}");

    let mut temp = named("temp", datatype::INT16, V::IntValue(20));
    temp.alias = Some(7);
    temp.properties = Some(props(&[
        ("Quality", property_value::Value::IntValue(192)),
        ("engUnit", property_value::Value::StringValue("degC".into())),
    ]));
    let mut flow = named("flow", datatype::DOUBLE, V::DoubleValue(1.0));
    flow.alias = Some(8);
    let l = line(
        &mut v,
        "spBv1.0/g/DBIRTH/n/pump1",
        &payload(1, vec![temp, flow]),
    );
    assert!(
        l.ends_with("DBIRTH  g/n/pump1  seq=1  temp=20 degC, flow=1"),
        "{l}"
    );
    let l = line(&mut v, "spBv1.0/g/DDATA/n/pump1", &ddata);
    assert!(l.ends_with("seq=3  temp=-2 degC, flow=1.25"), "{l}");
    // Aliases belong to their device: another device has not been born.
    let l = line(&mut v, "spBv1.0/g/DDATA/n/pump2", &ddata);
    assert!(l.ends_with("#7=4294967294, #8=1.25"), "{l}");
    // A new NBIRTH ends the device births of its node (they follow it).
    let nbirth = encode(Payload {
        timestamp: Some(NOW_MS),
        seq: Some(0),
        metrics: vec![
            named("bdSeq", datatype::INT64, V::LongValue(4)),
            Metric {
                alias: Some(1),
                ..named(
                    "Node Control/Rebirth",
                    datatype::BOOLEAN,
                    V::BooleanValue(false),
                )
            },
        ],
        ..Default::default()
    });
    let l = line(&mut v, "spBv1.0/g/NBIRTH/n", &nbirth);
    assert!(
        l.ends_with("NBIRTH  g/n  seq=0 bdSeq=4  Node Control/Rebirth=false"),
        "{l}"
    );
    let l = line(&mut v, "spBv1.0/g/DDATA/n/pump1", &ddata);
    assert!(l.contains("#7="), "{l}");
    // Node aliases resolve in NDATA and in a host's NCMD.
    let l = line(
        &mut v,
        "spBv1.0/g/NCMD/n",
        &payload(0, vec![aliased(1, V::BooleanValue(true))]),
    );
    assert!(
        l.ends_with("NCMD    g/n  seq=0  Node Control/Rebirth=true"),
        "{l}"
    );
}

#[test]
fn deaths_show_their_numbers() {
    use metric::Value as V;
    let mut v = Viewer::new();
    let ndeath = encode(Payload {
        timestamp: Some(NOW_MS),
        metrics: vec![named("bdSeq", datatype::INT64, V::LongValue(12))],
        ..Default::default()
    });
    let l = line(&mut v, "spBv1.0/g/NDEATH/n", &ndeath);
    assert!(l.ends_with("NDEATH  g/n  bdSeq=12"), "{l}");
    let l = line(&mut v, "spBv1.0/g/DDEATH/n/pump2", &payload(9, vec![]));
    assert!(l.ends_with("DDEATH  g/n/pump2  seq=9"), "{l}");
    let l = line(&mut v, "spBv1.0/g/NBIRTH/n", &payload(0, vec![]));
    assert!(l.ends_with("seq=0 bdSeq=?"), "{l}");
}

#[test]
fn history_and_old_stamps_are_marked() {
    use metric::Value as V;
    let mut v = Viewer::new();
    let mut m = named("temp", datatype::FLOAT, V::FloatValue(3.5));
    m.is_historical = Some(true);
    let p = encode(Payload {
        timestamp: Some(NOW_MS - 3_600_000),
        seq: Some(4),
        metrics: vec![m],
        ..Default::default()
    });
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &p);
    assert!(
        l.ends_with("seq=4 stamped 2023-11-14T21:13:20.000Z  temp=3.5 (hist)"),
        "{l}"
    );
}

#[test]
fn bad_quality_holds_until_a_good_one_is_sent() {
    use metric::Value as V;
    let mut v = Viewer::new();
    let mut birth = named("temp", datatype::FLOAT, V::FloatValue(1.0));
    birth.alias = Some(3);
    birth.properties = Some(quality(192));
    line(&mut v, "spBv1.0/g/DBIRTH/n/d", &payload(1, vec![birth]));

    let bad = Metric {
        alias: Some(3),
        is_null: Some(true),
        properties: Some(quality(0)),
        ..Default::default()
    };
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(2, vec![bad]));
    assert!(l.ends_with("temp=null [bad]"), "{l}");
    // The property is sent only when it changed: still bad.
    let still = Metric {
        alias: Some(3),
        is_null: Some(true),
        ..Default::default()
    };
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(3, vec![still]));
    assert!(l.ends_with("temp=null [bad]"), "{l}");
    let mut good = aliased(3, V::FloatValue(2.0));
    good.properties = Some(quality(192));
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(4, vec![good]));
    assert!(l.ends_with("temp=2"), "{l}");
    let mut uncertain = aliased(3, V::FloatValue(2.5));
    uncertain.properties = Some(quality(64));
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(5, vec![uncertain]));
    assert!(l.ends_with("temp=2.5 [q=64]"), "{l}");
}

#[test]
fn host_states_read_in_both_forms() {
    let mut v = Viewer::new();
    let l = line(
        &mut v,
        "spBv1.0/STATE/scada",
        br#"{"online":true,"timestamp":1700000000000}"#,
    );
    assert!(
        l.ends_with("STATE   scada  online (2023-11-14T22:13:20.000Z)"),
        "{l}"
    );
    let l = line(&mut v, "spBv1.0/STATE/scada", b"OFFLINE");
    assert!(l.ends_with("STATE   scada  offline"), "{l}");
    let l = line(&mut v, "spBv1.0/STATE/scada", b"\x1b[2J{");
    assert!(l.contains("STATE   scada  undecodable: "), "{l}");
}

#[test]
fn garbage_is_undecodable_never_a_panic() {
    let mut v = Viewer::new();
    for bad in [
        &[0xff, 0xff, 0xff][..],
        &[0x12, 0x05, 0x7a],
        // A metric whose name is not UTF-8.
        &[0x12, 0x03, 0x0a, 0x01, 0xc3],
        // A length running past the end.
        &[0x12, 0x7f],
    ] {
        let l = line(&mut v, "spBv1.0/g/DDATA/n/d", bad);
        assert!(l.contains("DDATA   g/n/d  undecodable: "), "{l}");
    }
    for topic in [
        "spBv1.0/g/NDATA",
        "spBv1.0/g/DDATA/n/d/x",
        "spBv1.0//NDATA/n",
        "spBv1.0/STATE/",
        "other/topic",
        "spBv1.0/g/NDATA/\u{1b}[31mred",
    ] {
        let l = line(&mut v, topic, &payload(0, vec![]));
        assert!(l.contains("undecodable: ") || l.contains("\\u{1b}"), "{l}");
    }
}

#[test]
fn random_bytes_never_break_a_line() {
    let mut rng = SmallRng::seed_from_u64(18);
    let mut v = Viewer::new();
    let kinds = ["NBIRTH", "NDATA", "NDEATH", "DBIRTH", "DDATA", "DCMD"];
    for i in 0..3000 {
        let len = rng.random_range(0..200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        // Half of them start as a real payload, to get past the first field.
        if i % 2 == 0 {
            let mut real = payload(i, vec![aliased(1, metric::Value::IntValue(1))]);
            real.append(&mut bytes);
            bytes = real;
        }
        let kind = kinds[i as usize % kinds.len()];
        let topic = if kind.starts_with('N') {
            format!("spBv1.0/g/{kind}/n")
        } else {
            format!("spBv1.0/g/{kind}/n/d")
        };
        let l = line(&mut v, &topic, &bytes);
        assert!(l.chars().count() <= MAX_LINE + 20, "{l}");
    }
}

#[test]
fn long_strings_and_many_metrics_are_cut_with_a_count() {
    use metric::Value as V;
    let mut v = Viewer::new();
    let long = "x".repeat(MAX_TEXT + 100);
    let l = line(
        &mut v,
        "spBv1.0/g/DDATA/n/d",
        &payload(1, vec![named("s", datatype::STRING, V::StringValue(long))]),
    );
    assert!(
        l.ends_with(&format!("s=\"{}\"…(+100 chars)", "x".repeat(MAX_TEXT))),
        "{l}"
    );

    let many: Vec<Metric> = (0..MAX_METRICS + 30)
        .map(|i| named(&format!("t{i}"), datatype::UINT16, V::IntValue(i as u32)))
        .collect();
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(2, many));
    assert!(l.ends_with(", … +30 more"), "{l}");
    assert_eq!(
        l.matches('=').count(),
        MAX_METRICS + 1,
        "seq and the metrics shown: {l}"
    );

    let huge: Vec<Metric> = (0..MAX_METRICS)
        .map(|i| {
            named(
                &format!("{i}{}", "n".repeat(5000)),
                datatype::STRING,
                V::StringValue("v".repeat(5000)),
            )
        })
        .collect();
    let l = line(&mut v, "spBv1.0/g/DDATA/n/d", &payload(3, huge));
    assert!(l.chars().count() <= MAX_LINE + 20, "{}", l.len());
    assert!(l.contains(" chars)"), "the cut is counted");
}

fn device() -> Arc<Device> {
    let mut temp = Tag::new("bearing_temp", Area::InputRegister, 0, DataType::F32);
    temp.unit = Some("degC".into());
    let mut current = Tag::new("current", Area::InputRegister, 2, DataType::U16);
    current.scale = 0.01;
    current.unit = Some("A".into());
    let delta = Tag::new("delta", Area::HoldingRegister, 3, DataType::I16);
    Arc::new(Device::new(
        "pump1",
        Connection::Rtu { bus: "b".into() },
        vec![temp, current, delta],
    ))
}

/// fieldgate's own edge-node session, as a host would see it.
#[test]
fn fieldgate_sessions_read_back_by_name() {
    let pump1 = device();
    let catalog = Arc::new(Catalog::build(std::slice::from_ref(&pump1), &[]));
    let mut session = Session::new(catalog, SparkplugTopics::new("plant", "gw"), 5);
    let info = NodeInfo {
        version: "1.0.0".into(),
        config_hash: "abc".into(),
        outbox_depth: 2,
        clock_synchronised: true,
    };
    let batch = |readings: Vec<Reading>| Batch {
        device: pump1.clone(),
        timestamp: now(),
        started: Instant::now(),
        unsynced: false,
        readings,
    };
    let mut current = Current::default();
    current.take_batch(
        &batch(vec![
            Reading::good(0, Value::Float(55.5)),
            Reading::good(1, Value::Float(12.34)),
            Reading::good(2, Value::Int(-3)),
        ]),
        true,
    );
    let mut v = Viewer::new();
    let nbirth = session.nbirth(&info, &current, NOW_MS);
    let l = line(&mut v, &nbirth.topic, &nbirth.payload);
    assert!(
        l.contains("NBIRTH  plant/gw  seq=0 bdSeq=5  Node Control/Rebirth=false, Node Info/Version=\"1.0.0\""),
        "{l}"
    );
    let dbirth = session
        .dbirth("pump1", &current.device_payload(&pump1, NOW_MS), NOW_MS)
        .unwrap();
    let l = line(&mut v, &dbirth.topic, &dbirth.payload);
    assert!(
        l.ends_with(
            "DBIRTH  plant/gw/pump1  seq=1  bearing_temp=55.5 degC, current=12.34 A, delta=-3"
        ),
        "{l}"
    );
    let rows = crate::contract::sparkplug::values::batch_payload(
        &batch(vec![
            Reading::good(0, Value::Float(56.0)),
            Reading::bad(1, BadReason::Timeout),
            Reading::good(2, Value::Int(-4)),
        ]),
        &[0, 1, 2],
    );
    let ddata = match session
        .row(
            &SparkplugTopics::new("plant", "gw").ddata("pump1"),
            &rows,
            false,
            NOW_MS,
        )
        .unwrap()
    {
        crate::contract::sparkplug::session::RowAction::Send(out) => out,
        other => panic!("{other:?}"),
    };
    let l = line(&mut v, &ddata.topic, &ddata.payload);
    assert!(
        l.ends_with(
            "DDATA   plant/gw/pump1  seq=2  bearing_temp=56 degC, current=null [bad], delta=-4"
        ),
        "{l}"
    );
}
