//! Cost of decoding one full Modbus read (125 registers, the protocol's
//! maximum for function codes 3 and 4), tag by tag, as a poller does after
//! every response.
//!
//! The register map is a realistic mix for a drive or power meter:
//!
//! | tags | type            | registers |
//! |------|-----------------|-----------|
//! | 25   | f32 ABCD        | 50        |
//! | 25   | f32 CDAB        | 50        |
//! | 10   | u16             | 10        |
//! | 5    | i16, scaled 0.1 | 5         |
//! | 2    | u32 CDAB        | 4         |
//! | 1    | f64 ABCD        | 4         |
//! | 1    | string of 2     | 2         |
//! |      | total           | 125       |

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fieldgate::modbus::decode::decode;
use fieldgate::modbus::encode::encode;
use fieldgate::tag::{Area, DataType, Tag, Value, WordOrder};

/// Registers in one maximal read response.
const RESPONSE_REGISTERS: usize = 125;

/// The tags of the map above, at consecutive addresses from 0, and the
/// raw value each holds.
fn tag_map() -> Vec<(Tag, Value)> {
    let mut tags = Vec::new();
    let mut address = 0u16;
    let mut add =
        |name: String, data_type: DataType, order: WordOrder, scale: f64, value: Value| {
            let mut tag = Tag::new(name, Area::HoldingRegister, address, data_type);
            tag.word_order = order;
            tag.scale = scale;
            address += data_type.width();
            tags.push((tag, value));
        };
    for i in 0..25 {
        let v = Value::Float(230.0 + f64::from(i) * 0.37);
        add(
            format!("voltage_{i}"),
            DataType::F32,
            WordOrder::Abcd,
            1.0,
            v,
        );
    }
    for i in 0..25 {
        let v = Value::Float(12.5 - f64::from(i) * 0.11);
        add(
            format!("current_{i}"),
            DataType::F32,
            WordOrder::Cdab,
            1.0,
            v,
        );
    }
    for i in 0..10 {
        let v = Value::Int(1000 + i64::from(i));
        add(
            format!("status_{i}"),
            DataType::U16,
            WordOrder::Abcd,
            1.0,
            v,
        );
    }
    for i in 0..5 {
        let v = Value::Int(-150 + 70 * i64::from(i));
        add(format!("temp_{i}"), DataType::I16, WordOrder::Abcd, 0.1, v);
    }
    for i in 0..2 {
        let v = Value::Int(3_000_000 + i64::from(i));
        add(
            format!("runtime_s_{i}"),
            DataType::U32,
            WordOrder::Cdab,
            1.0,
            v,
        );
    }
    let energy = Value::Float(1_234_567.891);
    add(
        "energy_kwh".into(),
        DataType::F64,
        WordOrder::Abcd,
        1.0,
        energy,
    );
    let text = Value::Text("V2".into());
    add(
        "firmware".into(),
        DataType::String(2),
        WordOrder::Abcd,
        1.0,
        text,
    );
    tags
}

fn bench_decode(c: &mut Criterion) {
    let map = tag_map();
    let tags: Vec<Tag> = map.iter().map(|(t, _)| t.clone()).collect();
    let response: Vec<u16> = map
        .iter()
        .flat_map(|(t, v)| encode(v, t.data_type, t.word_order))
        .collect();
    assert_eq!(
        response.len(),
        RESPONSE_REGISTERS,
        "the map must fill one response"
    );

    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(tags.len() as u64));
    group.bench_function("125_registers_mixed", |b| {
        b.iter(|| {
            let regs = black_box(response.as_slice());
            for tag in &tags {
                let start = usize::from(tag.address);
                let end = start + usize::from(tag.width());
                let _ = black_box(decode(tag, &regs[start..end]));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench_decode);
criterion_main!(benches);
