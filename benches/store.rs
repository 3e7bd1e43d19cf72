//! Insert rate of the SQLite outbox through its handle, as the pipeline
//! drives it: 100,000 readings of about 150 bytes of JSON each, queued in
//! batches of 100, then one `flush` (so the time covers every commit and
//! fsync), with `durability` full and normal.
//!
//! The goal: the outbox never limits polling below 100,000 readings/s on
//! the 2-core reference machine. Criterion reports elements/s (readings/s).
//!
//! Each iteration starts from a new store in a temporary folder (setup and
//! teardown are not timed), on a real file system: point `TMPDIR` at the
//! disk that matters.
//!
//! `at_bound_64MiB` is the worst case: the broker has been down so long
//! that the outbox is at its `max_bytes`, and every group commit also
//! evicts as many old readings as it inserts.

use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use fieldgate::config::{Durability, StoreConfig};
use fieldgate::store::{self, Kind, OutMessage, StoreGuard, StoreHandle};

/// Readings per iteration.
const READINGS: u64 = 100_000;

/// Messages per `insert` call (one pipeline batch).
const BATCH: u64 = 100;

/// About 150 bytes of the JSON a data message carries.
fn payload(seq: u64) -> Vec<u8> {
    format!(
        r#"{{"ts":1763712000{:03},"seq":{seq},"device":"pump1","tags":{{"bearing_temp":{{"v":{}.25,"q":"good"}},"flow":{{"v":12.5,"q":"good"}},"running":{{"v":true,"q":"good"}}}}}}"#,
        seq % 1000,
        60 + seq % 30
    )
    .into_bytes()
}

fn batches() -> Vec<Vec<OutMessage>> {
    let now = SystemTime::now();
    (0..READINGS / BATCH)
        .map(|b| {
            (1..=BATCH)
                .map(|i| {
                    let seq = b * BATCH + i;
                    OutMessage {
                        topic: format!("fieldgate/site1/gw1/data/pump{}", seq % 8),
                        seq,
                        payload: payload(seq),
                        qos: 1,
                        retain: false,
                        kind: Kind::Reading,
                        created_at: now.into(),
                    }
                })
                .collect()
        })
        .collect()
}

struct Setup {
    handle: StoreHandle,
    // Held so the store stays open until teardown, where it is closed.
    _guard: StoreGuard,
    // Dropped last: the store closes before its folder goes.
    _dir: tempfile::TempDir,
}

fn open(durability: Durability, max_bytes: u64) -> Setup {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = StoreConfig {
        path: dir.path().join("outbox.db"),
        durability,
        max_bytes,
        max_age: Duration::from_secs(7 * 86_400),
        flush_interval: Duration::from_millis(100),
    };
    let (handle, guard) = store::open(&config).expect("open the store");
    Setup {
        handle,
        _guard: guard,
        _dir: dir,
    }
}

async fn insert_all(handle: &StoreHandle, batches: Vec<Vec<OutMessage>>) {
    for batch in batches {
        handle.insert(batch).await.expect("insert");
    }
    handle.flush().await.expect("flush");
}

fn insert_rate(c: &mut Criterion) {
    // Like the gateway: a multi-thread runtime on the machine's cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("store_insert");
    group.throughput(Throughput::Elements(READINGS));
    group.sample_size(10);
    for (name, durability) in [("full", Durability::Full), ("normal", Durability::Normal)] {
        group.bench_function(format!("100k_readings_batches_of_100/{name}"), |b| {
            b.iter_batched(
                || (open(durability, 512 << 20), batches()),
                |(s, batches)| {
                    rt.block_on(insert_all(&s.handle, batches));
                    s
                },
                BatchSize::PerIteration,
            );
        });
    }
    // One store for all iterations: once full, it stays full.
    let full = open(Durability::Full, 64 << 20);
    while rt
        .block_on(full.handle.stats())
        .expect("stats")
        .evicted_readings
        == 0
    {
        rt.block_on(insert_all(&full.handle, batches()));
    }
    group.bench_function("100k_readings_batches_of_100/full/at_bound_64MiB", |b| {
        b.iter_batched(
            batches,
            |batches| rt.block_on(insert_all(&full.handle, batches)),
            BatchSize::PerIteration,
        );
    });
    group.finish();
    drop(full);
}

criterion_group!(benches, insert_rate);
criterion_main!(benches);
