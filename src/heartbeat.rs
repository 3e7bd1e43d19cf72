//! Proof that the main loop is turning: the pipeline task beats on every
//! step (at least once a second, from its tick), and the systemd watchdog
//! and `/healthz` read how long ago that was. A loop that is stuck, not
//! merely idle, stops beating.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A shared, cheap "last seen alive" clock.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    base: Instant,
    /// Milliseconds after `base` of the last beat.
    last: Arc<AtomicU64>,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Heartbeat::new()
    }
}

impl Heartbeat {
    /// A heartbeat that has just beaten.
    pub fn new() -> Heartbeat {
        Heartbeat {
            base: Instant::now(),
            last: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The loop is alive now.
    pub fn beat(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn age(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.base.elapsed().saturating_sub(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beat_resets_the_age() {
        let h = Heartbeat::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(h.age() >= Duration::from_millis(20));
        h.clone().beat();
        assert!(h.age() < Duration::from_millis(20));
    }
}
