//! Report by exception: which readings of a poll are worth publishing.
//!
//! A reading is published when
//! * it is the tag's first,
//! * its quality changed (good → bad:timeout, bad:timeout → bad:connection, …),
//! * its value moved by more than the tag's deadband since the value last
//!   published (absolute, or a percentage of `span_high − span_low`); any
//!   change of a bool or string counts,
//! * or `max_silence` has passed since the tag was last published (the
//!   heartbeat that tells a consumer the tag is alive).
//!
//! A tag with no deadband is published every poll. Pure: time comes in as
//! an argument, so tests run on a fake clock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::reading::{Batch, Quality};
use crate::tag::{Deadband, Tag, Value};

/// What was last published for a tag.
#[derive(Debug, Clone)]
struct Published {
    value: Option<Value>,
    quality: Quality,
    at: Instant,
}

/// Per-tag memory of what was last published, for every device.
#[derive(Debug, Default)]
pub struct Filter {
    devices: HashMap<String, Vec<Option<Published>>>,
    dropped: u64,
}

impl Filter {
    /// An empty filter: every tag's first reading is published.
    pub fn new() -> Filter {
        Filter::default()
    }

    /// Readings suppressed by deadbands so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets everything (after a reload changed the devices).
    pub fn reset(&mut self) {
        self.devices.clear();
    }

    /// Indexes (into `batch.readings`) of the readings to publish, and
    /// remembers them as published at `now`.
    pub fn select(&mut self, batch: &Batch, now: Instant) -> Vec<usize> {
        let device = &batch.device;
        let state = self
            .devices
            .entry(device.name.clone())
            .or_insert_with(|| vec![None; device.tags.len()]);
        if state.len() != device.tags.len() {
            *state = vec![None; device.tags.len()];
        }
        let mut out = Vec::with_capacity(batch.readings.len());
        for (i, reading) in batch.readings.iter().enumerate() {
            let Some(tag) = device.tags.get(reading.tag) else {
                continue;
            };
            let slot = &mut state[reading.tag];
            let publish = match slot {
                None => true,
                Some(last) => {
                    last.quality != reading.quality
                        || now.saturating_duration_since(last.at) >= device.max_silence
                        || moved(tag, last.value.as_ref(), reading.value.as_ref())
                }
            };
            if publish {
                *slot = Some(Published {
                    value: reading.value.clone(),
                    quality: reading.quality.clone(),
                    at: now,
                });
                out.push(i);
            } else {
                self.dropped += 1;
            }
        }
        out
    }
}

/// True when `new` differs from `last` by more than the tag's deadband.
fn moved(tag: &Tag, last: Option<&Value>, new: Option<&Value>) -> bool {
    let (Some(last), Some(new)) = (last, new) else {
        return last.is_some() != new.is_some();
    };
    let threshold = match tag.deadband {
        Deadband::None => return true,
        Deadband::Absolute(d) => d,
        Deadband::Percent(p) => match (tag.span_low, tag.span_high) {
            (Some(lo), Some(hi)) => (hi - lo).abs() * p / 100.0,
            // The config refuses a percent deadband without a span.
            _ => return true,
        },
    };
    match (last.as_f64(), new.as_f64(), last, new) {
        (_, _, Value::Bool(a), Value::Bool(b)) => a != b,
        (Some(a), Some(b), _, _) => (b - a).abs() > threshold,
        _ => last != new,
    }
}

/// The longest a tag may go unpublished by default.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::SystemTime;

    use super::*;
    use crate::config::{Connection, Device};
    use crate::reading::{BadReason, Reading};
    use crate::tag::{Area, DataType};

    fn device(deadband: Deadband) -> Arc<Device> {
        let mut temp = Tag::new("temp", Area::InputRegister, 0, DataType::F32);
        temp.deadband = deadband;
        temp.span_low = Some(0.0);
        temp.span_high = Some(200.0);
        let run = Tag::new("run", Area::Coil, 0, DataType::Bool);
        Arc::new(Device::new(
            "pump",
            Connection::Tcp {
                host: "x".into(),
                port: 502,
            },
            vec![temp, run],
        ))
    }

    fn batch(device: &Arc<Device>, temp: Option<f64>, run: bool) -> Batch {
        Batch {
            device: device.clone(),
            timestamp: SystemTime::now(),
            started: std::time::Instant::now(),
            unsynced: false,
            readings: vec![
                match temp {
                    Some(t) => Reading::good(0, Value::Float(t)),
                    None => Reading::bad(0, BadReason::Timeout),
                },
                Reading::good(1, Value::Bool(run)),
            ],
        }
    }

    #[test]
    fn no_deadband_publishes_every_poll() {
        let d = device(Deadband::None);
        let mut f = Filter::new();
        let t0 = Instant::now();
        for i in 0..5 {
            let picked = f.select(&batch(&d, Some(50.0), true), t0 + Duration::from_secs(i));
            assert!(picked.contains(&0));
        }
    }

    #[test]
    fn absolute_deadband_quality_change_and_heartbeat() {
        let d = device(Deadband::Absolute(0.5));
        let mut f = Filter::new();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        // `run` has no deadband: it is in every selection.
        let temp = |f: &mut Filter, v: Option<f64>, s: u64| {
            let picked = f.select(&batch(&d, v, true), at(s));
            assert!(picked.contains(&1));
            picked.contains(&0)
        };
        assert!(temp(&mut f, Some(50.0), 0));
        // Within the deadband (compared with 50.0, the last published).
        assert!(!temp(&mut f, Some(50.4), 1));
        assert!(!temp(&mut f, Some(50.5), 2));
        // Beyond it.
        assert!(temp(&mut f, Some(50.6), 3));
        // Quality change, then bad stays bad: once.
        assert!(temp(&mut f, None, 5));
        assert!(!temp(&mut f, None, 6));
        assert!(temp(&mut f, Some(50.6), 7));
        // Heartbeat after max_silence (60 s) even without change.
        assert!(!temp(&mut f, Some(50.6), 66));
        assert!(temp(&mut f, Some(50.6), 67));
        assert_eq!(f.dropped(), 4);
    }

    #[test]
    fn percent_deadband_uses_the_span() {
        // 1 % of 0..200 is 2.0.
        let d = device(Deadband::Percent(1.0));
        let mut f = Filter::new();
        let t0 = Instant::now();
        assert!(f.select(&batch(&d, Some(100.0), true), t0).contains(&0));
        assert!(!f.select(&batch(&d, Some(101.9), true), t0).contains(&0));
        assert!(f.select(&batch(&d, Some(97.9), true), t0).contains(&0));
    }
}
