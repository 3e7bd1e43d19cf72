//! Cost of telemetry on the poller's hot path, and of a scrape.
//!
//! * `record`: what a poller adds to one good poll of one request: time
//!   the request, record it (histogram, registers, last response) and
//!   record the poll (counter, last success). Compare with the time of a
//!   poll itself (about 9 µs against the simulator on loopback for 125
//!   registers, BENCHMARKS.md).
//! * `render`: `/metrics` for 50 devices on 5 links, from the snapshot to
//!   the text, as each scrape does (the store round trip and `/proc`
//!   aside).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use fieldgate::config::{Connection, Device};
use fieldgate::modbus::{Block, DeviceMetrics, LinkMetrics, PollError};
use fieldgate::telemetry::prometheus::render;
use fieldgate::telemetry::{GatewayInfo, MqttSnapshot, ProcessStats, Snapshot};

fn device(i: usize) -> Arc<Device> {
    Arc::new(Device::new(
        format!("device{i}"),
        Connection::Tcp {
            host: format!("10.0.0.{}", i / 10),
            port: 502,
        },
        Vec::new(),
    ))
}

fn record(c: &mut Criterion) {
    let m = DeviceMetrics::new(device(0), "tcp:10.0.0.0:502".into());
    let answer: Result<Block, PollError> = Ok(Block::Registers(vec![0; 125]));
    let at = SystemTime::now();
    c.bench_function("record one request and one good poll", |b| {
        b.iter(|| {
            let sent = Instant::now();
            m.request(sent.elapsed(), black_box(&answer));
            m.poll_ok(black_box(at));
        })
    });
}

fn scrape(c: &mut Criterion) {
    let devices: Vec<DeviceMetrics> = (0..50)
        .map(|i| DeviceMetrics::new(device(i), format!("tcp:10.0.0.{}:502", i / 10)))
        .collect();
    for d in &devices {
        for k in 0..100u64 {
            d.request(
                Duration::from_micros(500 + k * 37),
                &Ok(Block::Registers(vec![0; 10])),
            );
        }
        d.poll_ok(SystemTime::now());
    }
    let snapshots: Vec<_> = devices.iter().map(|d| d.snapshot()).collect();
    let links = (0..5)
        .map(|l| {
            let label = format!("tcp:10.0.0.{l}:502");
            LinkMetrics::new(label.clone()).snapshot(snapshots.iter().filter(|d| d.link == label))
        })
        .collect();
    let snapshot = Snapshot {
        info: GatewayInfo {
            id: "gw".into(),
            site: "site".into(),
            version: "0.1.0",
            config_hash: "0".repeat(64),
            started: SystemTime::now(),
            booted: std::time::Instant::now(),
        },
        at: SystemTime::now(),
        devices: snapshots,
        links,
        store: Some(Default::default()),
        mqtt: MqttSnapshot::default(),
        rules: Arc::new(Default::default()),
        suppressed: vec![0; 50],
        events: fieldgate::events::totals().to_vec(),
        process: ProcessStats::default(),
        cmms: Vec::new(),
        sparkplug: None,
        writes: fieldgate::telemetry::WritesSnapshot::default(),
        pipeline_idle: Duration::ZERO,
        uptime: Duration::ZERO,
        clock_synced: Some(true),
    };
    c.bench_function("render /metrics, 50 devices", |b| {
        b.iter(|| render(black_box(&snapshot)).len())
    });
}

criterion_group!(benches, record, scrape);
criterion_main!(benches);
