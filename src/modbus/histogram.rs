//! A lock-free latency histogram with fixed buckets sized for Modbus.
//!
//! Recording is two relaxed atomic additions (the bucket and the sum) and
//! a search of twelve bounds: cheap enough for every request of a poller
//! that answers thousands of requests a second. The count is the sum of
//! the buckets, so it needs no atomic of its own.
//!
//! A reader may see a bucket and the sum from slightly different moments;
//! Prometheus tolerates that (the next scrape is consistent again), and it
//! is the price of never taking a lock on the hot path.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds: 1 ms (a fast TCP answer
/// on a LAN) to 5 s (the longest sensible timeout on a slow serial bus).
pub const BOUNDS_US: [u64; 12] = [
    1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000, 2_000_000,
    5_000_000,
];

/// The bounds as Prometheus `le` label values (seconds), in the same order.
pub const BOUNDS_LE: [&str; 12] = [
    "0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5",
];

/// Buckets: one per bound, then the overflow (`+Inf`).
const SLOTS: usize = BOUNDS_US.len() + 1;

/// A histogram of durations, shared by `Arc` and written with atomics.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the overflow is last).
    buckets: [AtomicU64; SLOTS],
    /// Sum of all observations, in microseconds.
    sum_us: AtomicU64,
}

/// A copy of a [`Histogram`] at one moment, for rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative; the overflow is last).
    pub buckets: [u64; SLOTS],
    /// Sum of all observations, in microseconds.
    pub sum_us: u64,
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let slot = BOUNDS_US
            .iter()
            .position(|&bound| us <= bound)
            .unwrap_or(BOUNDS_US.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut out = HistogramSnapshot {
            sum_us: self.sum_us.load(Ordering::Relaxed),
            ..HistogramSnapshot::default()
        };
        for (to, from) in out.buckets.iter_mut().zip(&self.buckets) {
            *to = from.load(Ordering::Relaxed);
        }
        out
    }
}

impl HistogramSnapshot {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Sum of the observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// Cumulative counts per bound (what `_bucket{le=…}` shows), without
    /// the `+Inf` bucket, which equals [`count`](Self::count).
    pub fn cumulative(&self) -> [u64; BOUNDS_US.len()] {
        let mut out = [0; BOUNDS_US.len()];
        let mut running = 0;
        for (i, slot) in out.iter_mut().enumerate() {
            running += self.buckets[i];
            *slot = running;
        }
        out
    }

    /// Adds another histogram's counts (a link is the sum of its devices).
    pub fn add(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_inclusive_and_overflow_goes_last() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(1)); // le="0.001" includes 1 ms
        h.observe(Duration::from_micros(1_001));
        h.observe(Duration::from_secs(9));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 2);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[SLOTS - 1], 1);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_us, 500 + 1_000 + 1_001 + 9_000_000);
        let c = s.cumulative();
        assert_eq!(c[0], 2);
        assert_eq!(c[1], 3);
        assert_eq!(c[BOUNDS_US.len() - 1], 3);
    }

    #[test]
    fn labels_match_bounds() {
        for (us, le) in BOUNDS_US.iter().zip(BOUNDS_LE) {
            let seconds: f64 = le.parse().unwrap();
            assert_eq!((seconds * 1e6).round() as u64, *us);
        }
    }
}
