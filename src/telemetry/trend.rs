//! The last minutes of every tag, for the status page's sparklines.
//!
//! Technicians read a trend faster than a number, so the page draws each
//! tag's last [`TREND_SPAN`] as a small line. The points live here, in
//! memory only (the outbox holds the real history): one `f32` per tag per
//! [`TREND_STEP`], in a ring per device. That is 240 bytes per tag, fixed
//! at start, whatever the poll rate: 1,000 tags cost 240 KB, 20,000 tags
//! 4.8 MB.
//!
//! A slot keeps the last good value read within it; a slot without one
//! (not polled, bad quality, a text tag) is `NaN`, drawn as a gap. The
//! pipeline task writes (with each batch, in
//! [`Telemetry::keep_last`](super::Telemetry::keep_last)); the HTTP
//! handlers read a copy. Pure: time is an argument.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::reading::Reading;
use crate::tag::Value;

/// The time one point stands for.
pub const TREND_STEP: Duration = Duration::from_secs(5);

/// Points kept per tag.
pub const TREND_POINTS: usize = 60;

/// The time the points cover (5 minutes).
pub const TREND_SPAN: Duration = Duration::from_secs(TREND_STEP.as_secs() * TREND_POINTS as u64);

/// One device's rings: `TREND_POINTS` slots per tag.
#[derive(Debug, Clone)]
pub struct Trend {
    /// Tag `t`'s slot for step number `s` is
    /// `t * TREND_POINTS + s % TREND_POINTS`.
    points: Vec<f32>,
    /// The newest step written (steps are whole [`TREND_STEP`]s since the
    /// Unix epoch); `None` before the first batch.
    newest: Option<u64>,
}

/// The step a time falls in.
pub fn step_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / TREND_STEP.as_secs())
        .unwrap_or(0)
}

/// The start of step `step`.
pub fn step_start(step: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(step * TREND_STEP.as_secs())
}

impl Trend {
    /// Empty rings for `tags` tags.
    pub fn new(tags: usize) -> Trend {
        Trend {
            points: vec![f32::NAN; tags * TREND_POINTS],
            newest: None,
        }
    }

    /// Records a poll's good numeric readings in the step of `at`, its
    /// time. A poll older than the rings (a clock stepped back by more
    /// than [`TREND_SPAN`]) starts the rings over.
    pub fn record(&mut self, at: SystemTime, readings: &[Reading]) {
        let step = step_of(at);
        match self.newest {
            Some(newest) if step <= newest => {
                if newest - step >= TREND_POINTS as u64 {
                    // The clock went back a long way: the old points would
                    // be drawn in the future.
                    self.points.fill(f32::NAN);
                    self.newest = Some(step);
                }
            }
            Some(newest) => {
                self.clear_between(newest, step);
                self.newest = Some(step);
            }
            None => self.newest = Some(step),
        }
        let slot = (step % TREND_POINTS as u64) as usize;
        for r in readings {
            let Some(ring) = self
                .points
                .get_mut(r.tag * TREND_POINTS..(r.tag + 1) * TREND_POINTS)
            else {
                continue;
            };
            let point = if r.quality.is_good() {
                r.value.as_ref().and_then(plot_value)
            } else {
                None
            };
            // A bad reading after a good one in the same step keeps the
            // good one: the gap shows only when a whole step was bad.
            match point {
                Some(x) => ring[slot] = x,
                None if !ring[slot].is_nan() => {}
                None => ring[slot] = f32::NAN,
            }
        }
    }

    /// Empties the slots of the steps after `from` up to and including
    /// `to` (they were not polled, or are being reused).
    fn clear_between(&mut self, from: u64, to: u64) {
        let gap = (to - from).min(TREND_POINTS as u64);
        for k in 1..=gap {
            let slot = ((from + k) % TREND_POINTS as u64) as usize;
            for ring in self.points.chunks_exact_mut(TREND_POINTS) {
                ring[slot] = f32::NAN;
            }
        }
    }

    /// Tag `tag`'s points, oldest first, for the [`TREND_POINTS`] steps
    /// ending with `now`'s (`None` where there is no point).
    pub fn series(&self, tag: usize, now: SystemTime) -> Vec<Option<f32>> {
        let end = step_of(now);
        let (Some(ring), Some(newest)) = (
            self.points
                .get(tag * TREND_POINTS..(tag + 1) * TREND_POINTS),
            self.newest,
        ) else {
            return vec![None; TREND_POINTS];
        };
        (0..TREND_POINTS as u64)
            .map(|i| {
                // Steps end-59 ..= end; only those the rings still hold.
                let step = (end + i + 1).checked_sub(TREND_POINTS as u64)?;
                if step > newest || newest - step >= TREND_POINTS as u64 {
                    return None;
                }
                let x = ring[(step % TREND_POINTS as u64) as usize];
                (!x.is_nan()).then_some(x)
            })
            .collect()
    }
}

/// A value as a point: numbers as they are, a bit as 0 or 1, text not.
fn plot_value(v: &Value) -> Option<f32> {
    let x = match v {
        Value::Bool(b) => f32::from(u8::from(*b)),
        Value::Int(i) => *i as f32,
        Value::UInt(u) => *u as f32,
        Value::Float(x) => *x as f32,
        Value::Text(_) => return None,
    };
    x.is_finite().then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{BadReason, Quality};

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn bad(tag: usize) -> Reading {
        Reading {
            tag,
            value: None,
            quality: Quality::Bad(BadReason::Timeout),
        }
    }

    #[test]
    fn each_step_keeps_its_last_good_value() {
        let mut trend = Trend::new(2);
        trend.record(at(0), &[Reading::good(0, Value::Float(1.0))]);
        trend.record(at(1), &[Reading::good(0, Value::Float(2.0))]);
        trend.record(at(2), &[bad(0)]);
        trend.record(at(5), &[Reading::good(0, Value::UInt(3))]);
        let s = trend.series(0, at(5));
        assert_eq!(s.len(), TREND_POINTS);
        assert_eq!(&s[TREND_POINTS - 2..], &[Some(2.0), Some(3.0)]);
        assert!(s[..TREND_POINTS - 2].iter().all(Option::is_none));
        // The other tag was never read.
        assert!(trend.series(1, at(5)).iter().all(Option::is_none));
    }

    #[test]
    fn steps_not_polled_are_gaps_and_time_moves_the_window() {
        let mut trend = Trend::new(1);
        trend.record(at(0), &[Reading::good(0, Value::Bool(true))]);
        trend.record(at(20), &[Reading::good(0, Value::Int(-4))]);
        let s = trend.series(0, at(20));
        assert_eq!(
            &s[TREND_POINTS - 5..],
            &[Some(1.0), None, None, None, Some(-4.0)]
        );
        // A minute later with nothing polled: the points have moved left.
        let s = trend.series(0, at(80));
        assert_eq!(s[TREND_POINTS - 1], None);
        assert_eq!(s[TREND_POINTS - 13], Some(-4.0));
        // After the span, nothing is left.
        assert!(trend.series(0, at(20 + 300)).iter().all(Option::is_none));
    }

    #[test]
    fn a_wrapped_ring_shows_no_old_points() {
        let mut trend = Trend::new(1);
        trend.record(at(0), &[Reading::good(0, Value::Float(7.0))]);
        // Exactly one span later the same slot is reused.
        trend.record(at(300), &[Reading::good(0, Value::Float(8.0))]);
        let s = trend.series(0, at(300));
        assert_eq!(s.iter().flatten().count(), 1);
        assert_eq!(s[TREND_POINTS - 1], Some(8.0));
    }

    #[test]
    fn a_bad_step_is_a_gap_and_text_is_not_drawn() {
        let mut trend = Trend::new(2);
        trend.record(
            at(0),
            &[bad(0), Reading::good(1, Value::Text("run".into()))],
        );
        assert!(trend.series(0, at(0)).iter().all(Option::is_none));
        assert!(trend.series(1, at(0)).iter().all(Option::is_none));
        // A reading for a tag the device does not have is ignored.
        trend.record(at(0), &[Reading::good(9, Value::Float(1.0))]);
    }

    #[test]
    fn a_clock_stepped_far_back_starts_over() {
        let mut trend = Trend::new(1);
        trend.record(at(1000), &[Reading::good(0, Value::Float(1.0))]);
        trend.record(at(0), &[Reading::good(0, Value::Float(2.0))]);
        let s = trend.series(0, at(0));
        assert_eq!(s.iter().flatten().collect::<Vec<_>>(), vec![&2.0]);
    }
}
