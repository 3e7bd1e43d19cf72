//! Planning a large device: 10,000 tags, a realistic mix of `u16` and
//! `f32` with small gaps, over holding registers, input registers and
//! coils. Register with `[[bench]] name = "plan" harness = false`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use fieldgate::modbus::plan::{Limits, ReadPlan, plan};
use fieldgate::tag::{Area, DataType, Tag};

/// Tags in the benchmark.
const TAGS: usize = 10_000;

/// A small deterministic generator (xorshift64), so that every run plans
/// the same device without a dependency on `rand`'s algorithms.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 10,000 tags spread round-robin over three areas. Registers are 70 %
/// `u16`, 30 % `f32`; coils are `Bool`. Most tags follow the previous one
/// directly, some after a gap of 1..=15 (so some gaps exceed the default
/// `max_gap` of 10), as on a meter whose map has reserved blocks.
fn device() -> Vec<Tag> {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let areas = [Area::HoldingRegister, Area::InputRegister, Area::Coil];
    let mut next = [0u16; 3];
    (0..TAGS)
        .map(|i| {
            let slot = i % areas.len();
            let area = areas[slot];
            let data_type = if area.is_bit() {
                DataType::Bool
            } else if rng.below(10) < 7 {
                DataType::U16
            } else {
                DataType::F32
            };
            let gap = if rng.below(4) == 0 {
                rng.below(15) as u16 + 1
            } else {
                0
            };
            let address = next[slot].saturating_add(gap);
            next[slot] = address.saturating_add(data_type.width());
            Tag::new(format!("tag{i}"), area, address, data_type)
        })
        .collect()
}

fn bench_plan(c: &mut Criterion) {
    let tags = device();
    let limits = Limits::default();
    c.bench_function("plan 10k tags", |b| {
        b.iter(|| plan(black_box(&tags), black_box(limits)))
    });

    // Config order need not be address order: the same tags shuffled.
    let mut shuffled = tags.clone();
    let mut rng = XorShift(42);
    for i in (1..shuffled.len()).rev() {
        shuffled.swap(i, rng.below(i as u64 + 1) as usize);
    }
    c.bench_function("plan 10k tags, shuffled", |b| {
        b.iter(|| plan(black_box(&shuffled), black_box(limits)))
    });

    let meter = Limits {
        max_registers: 40,
        ..limits
    };
    c.bench_function("plan 10k tags, 40-register meter", |b| {
        b.iter(|| plan(black_box(&tags), black_box(meter)))
    });

    c.bench_function("ReadPlan::new 10k tags", |b| {
        b.iter(|| ReadPlan::new(black_box(&tags), black_box(limits)))
    });

    // Splitting: the first request refused with 02, on a fresh plan each
    // time (cloning is outside the measurement).
    let live = ReadPlan::new(&tags, limits);
    c.bench_function("on_exception on a merged request", |b| {
        b.iter_batched(
            || live.clone(),
            |mut p| {
                let change = p.on_exception(0, 2);
                // Returned so that dropping the plan is not measured.
                (p, change)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
