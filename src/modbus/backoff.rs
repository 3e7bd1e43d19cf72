//! Reconnect delays: exponential from 1 s to 60 s, with jitter so that
//! many gateways (or many devices) do not retry in lock-step after a
//! shared outage. Pure: the random source is passed in.

use std::time::Duration;

/// First delay after a failure.
pub const INITIAL: Duration = Duration::from_secs(1);
/// Longest delay; polling never stops for good.
pub const MAX: Duration = Duration::from_secs(60);

/// Exponential backoff state of one connection or device.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A fresh backoff (no failure yet).
    pub fn new() -> Backoff {
        Backoff::default()
    }

    /// Records a failure and returns how long to wait before the next try:
    /// `INITIAL × 2^(n−1)` capped at `MAX`, then scaled by a jitter factor
    /// in `[0.75, 1.25)` taken from `unit_random` (a number in `[0, 1)`).
    pub fn fail(&mut self, unit_random: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(16);
        let base = INITIAL.saturating_mul(1 << exp).min(MAX);
        let jitter = 0.75 + 0.5 * unit_random.clamp(0.0, 1.0);
        base.mul_f64(jitter).min(MAX.mul_f64(1.25))
    }

    /// Records a success: the next failure starts again at `INITIAL`.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_sixty_seconds_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..10).map(|_| b.fail(0.5).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]);
        b.reset();
        assert_eq!(b.fail(0.5), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        let mut b = Backoff::new();
        assert_eq!(b.fail(0.0), Duration::from_millis(750));
        let mut b = Backoff::new();
        assert!(b.fail(0.999) < Duration::from_millis(1250));
    }
}
