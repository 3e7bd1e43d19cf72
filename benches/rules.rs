//! Cost of rule evaluation per reading per rule, with 1,000 rules over
//! 1,000 tags (the target: well under 1 µs).
//!
//! The plant: 100 devices of 10 `f32` tags each. Every tag has one rule:
//!
//! | tags (index in device) | rule                                   | count |
//! |------------------------|----------------------------------------|-------|
//! | 0, 4, 8                | `above`, deadband 2, on-delay 5 s      | 300   |
//! | 1, 5, 9                | `below`, deadband 2, off-delay 5 s     | 290   |
//! | 2, 6                   | `outside` 20–80, deadband 2            | 200   |
//! | 3, 7                   | `rate` 3/s over 10 s                   | 200   |
//! | 9 of every 10th device | `expr` over tags 8 and 9 instead       | 10    |
//!
//! so 1,000 rules and 1,010 rule evaluations per sweep of one reading per
//! tag (the 20 tags an `expr` reads are watched twice). Values random-walk
//! around the limits, so some alarms come and go, as in a plant.
//!
//! Benchmarks (throughput is in rule evaluations):
//! * `observe/sweep`: 1,000 readings through [`Engine::observe`].
//! * `observe_batch/sweep`: the same readings as 100 polls of 10 tags.
//! * `tick`: one tick over all 1,000 rules.
//! * `expr/one`: one reading of a tag watched by one `expr` rule only.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use fieldgate::config::{
    AlarmConfig, Condition, Connection, Device, Priority, Rule, WorkOrderTemplate,
};
use fieldgate::reading::{Batch, Quality, Reading};
use fieldgate::rules::{Engine, TagId, Timestamp};
use fieldgate::tag::{Area, DataType, Tag, Value};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const DEVICES: usize = 100;
const TAGS_PER_DEVICE: usize = 10;
/// Pre-computed sweeps of values, replayed in a loop.
const SWEEPS: usize = 64;

fn device(d: usize) -> Device {
    Device::new(
        format!("d{d}"),
        Connection::Tcp {
            host: "x".into(),
            port: 502,
        },
        (0..TAGS_PER_DEVICE)
            .map(|j| {
                Tag::new(
                    format!("t{j}"),
                    Area::HoldingRegister,
                    j as u16 * 2,
                    DataType::F32,
                )
            })
            .collect(),
    )
}

fn rule(name: String, condition: Condition) -> Rule {
    Rule {
        name,
        condition,
        deadband: 2.0,
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        priority: Priority::Medium,
        asset: None,
        location: None,
        workorder: WorkOrderTemplate {
            enabled: true,
            ..WorkOrderTemplate::default()
        },
    }
}

fn plant() -> (Vec<Device>, Vec<Rule>) {
    let devices: Vec<Device> = (0..DEVICES).map(device).collect();
    let mut rules = Vec::new();
    for d in 0..DEVICES {
        for j in 0..TAGS_PER_DEVICE {
            let tag = format!("d{d}.t{j}");
            let name = format!("r{d}_{j}");
            let mut r = match j % 4 {
                _ if j == 9 && d % 10 == 0 => rule(
                    name,
                    Condition::Expr {
                        expr: format!("d{d}.t8 > 60 && d{d}.t9 < 40"),
                        tags: vec![format!("d{d}.t8"), format!("d{d}.t9")],
                    },
                ),
                0 => rule(name, Condition::Above { tag, limit: 70.0 }),
                1 => rule(name, Condition::Below { tag, limit: 30.0 }),
                2 => rule(
                    name,
                    Condition::Outside {
                        tag,
                        low: 20.0,
                        high: 80.0,
                    },
                ),
                _ => rule(
                    name,
                    Condition::Rate {
                        tag,
                        limit: 3.0,
                        per: Duration::from_secs(1),
                        window: Duration::from_secs(10),
                    },
                ),
            };
            match j % 4 {
                0 => r.on_delay = Duration::from_secs(5),
                1 => r.off_delay = Duration::from_secs(5),
                _ => {}
            }
            rules.push(r);
        }
    }
    (devices, rules)
}

fn alarms() -> AlarmConfig {
    AlarmConfig {
        chatter_count: 3,
        chatter_window: Duration::from_secs(60),
        chatter_quiet: Duration::from_secs(300),
    }
}

/// `SWEEPS` sweeps of one value per tag: random walks between 0 and 100.
fn walks() -> Vec<Vec<Value>> {
    let mut rng = SmallRng::seed_from_u64(7);
    let mut x: Vec<f64> = (0..DEVICES * TAGS_PER_DEVICE)
        .map(|_| rng.random_range(10.0..90.0))
        .collect();
    (0..SWEEPS)
        .map(|_| {
            x.iter_mut()
                .map(|v| {
                    *v = (*v + rng.random_range(-4.0..4.0)).clamp(0.0, 100.0);
                    Value::Float(*v)
                })
                .collect()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let (devices, rules) = plant();
    let engine = || Engine::new(&rules, &devices, &alarms()).unwrap_or_else(|e| panic!("{e}"));
    let sweeps = walks();
    let names = engine();
    let ids: Vec<TagId> = (0..DEVICES)
        .flat_map(|d| (0..TAGS_PER_DEVICE).map(move |j| format!("d{d}.t{j}")))
        .map(|name| {
            names
                .tag_id(&name)
                .unwrap_or_else(|| panic!("no tag {name}"))
        })
        .collect();
    let evaluations = (DEVICES * TAGS_PER_DEVICE + 2 * DEVICES / 10) as u64;
    const START: u64 = 1_700_000_000_000;

    let mut group = c.benchmark_group("observe");
    group.throughput(Throughput::Elements(evaluations));
    let mut e = engine();
    let mut n = 0usize;
    let mut events = 0usize;
    group.bench_function("sweep", |b| {
        b.iter(|| {
            let at = Timestamp::from_millis(START + n as u64 * 1000);
            let values = &sweeps[n % SWEEPS];
            for (id, v) in ids.iter().zip(values) {
                events += e.observe(*id, Some(v), &Quality::Good, at).len();
            }
            n += 1;
        })
    });
    group.finish();
    black_box(events);

    let batches: Vec<Vec<Batch>> = sweeps
        .iter()
        .map(|values| {
            devices
                .iter()
                .enumerate()
                .map(|(d, dev)| Batch {
                    device: Arc::new(dev.clone()),
                    timestamp: Timestamp::from_millis(START).to_system_time(),
                    started: std::time::Instant::now(),
                    unsynced: false,
                    readings: (0..TAGS_PER_DEVICE)
                        .map(|j| Reading::good(j, values[d * TAGS_PER_DEVICE + j].clone()))
                        .collect(),
                })
                .collect()
        })
        .collect();
    let mut group = c.benchmark_group("observe_batch");
    group.throughput(Throughput::Elements(evaluations));
    let mut e = engine();
    let mut n = 0usize;
    group.bench_function("sweep", |b| {
        b.iter_batched_ref(
            || {
                // Each sweep one second later than the one before.
                let polls = batches[n % SWEEPS].clone();
                let at = Timestamp::from_millis(START + n as u64 * 1000);
                n += 1;
                (polls, at)
            },
            |(polls, at)| {
                for poll in polls.iter() {
                    black_box(e.observe_batch(poll, *at));
                }
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("tick");
    group.throughput(Throughput::Elements(rules.len() as u64));
    let mut e = engine();
    for (id, v) in ids.iter().zip(&sweeps[0]) {
        e.observe(*id, Some(v), &Quality::Good, Timestamp::from_millis(START));
    }
    let mut n = 0u64;
    group.bench_function("all_rules", |b| {
        b.iter(|| {
            n += 1;
            black_box(e.tick(Timestamp::from_millis(START + n * 100)))
        })
    });
    group.finish();

    // d0.t8 is watched by its own `above` rule and by the `expr` rule
    // r0_9; d0.t0 by one `above` rule only. The difference is the cost of
    // one `expr` evaluation (the expression stays true: no events).
    let mut group = c.benchmark_group("single_rule");
    group.throughput(Throughput::Elements(1));
    let mut e = engine();
    let t8 = ids[8];
    let t0 = ids[0];
    e.observe(
        ids[9],
        Some(&Value::Float(35.0)),
        &Quality::Good,
        Timestamp::from_millis(START),
    );
    let mut n = 0u64;
    group.bench_function("expr_plus_above", |b| {
        b.iter(|| {
            n += 1;
            let v = Value::Float(if n.is_multiple_of(2) { 61.0 } else { 62.0 });
            black_box(e.observe(
                t8,
                Some(&v),
                &Quality::Good,
                Timestamp::from_millis(START + n),
            ))
        })
    });
    let mut n = 0u64;
    group.bench_function("above", |b| {
        b.iter(|| {
            n += 1;
            let v = Value::Float(if n.is_multiple_of(2) { 61.0 } else { 62.0 });
            black_box(e.observe(
                t0,
                Some(&v),
                &Quality::Good,
                Timestamp::from_millis(START + n),
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
