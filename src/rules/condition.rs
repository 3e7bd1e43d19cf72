//! Per-rule condition state: is the rule's condition *met* right now?
//!
//! "Met" is the raw verdict, before the alarm's on- and off-delays
//! (`alarm.rs` applies those). It already includes the deadband's
//! hysteresis, because hysteresis depends on the value, which the alarm
//! never sees.
//!
//! | condition | becomes met when            | stays met until                      |
//! |-----------|-----------------------------|--------------------------------------|
//! | `above`   | value > limit               | value < limit − deadband             |
//! | `below`   | value < limit               | value > limit + deadband             |
//! | `outside` | value > high or value < low | low + deadband < value < high − deadband |
//! | `rate`    | \|rate\| > limit            | \|rate\| < limit − deadband          |
//! | `stale`   | no good reading for `after` | the next good reading                |
//! | `equals`  | value equals the state      | value differs                        |
//! | `expr`    | the expression is true      | the expression is false              |
//!
//! The deadband is in the tag's engineering units (for `rate`, in units per
//! `per`). `stale`, `equals` and `expr` have no value to apply it to and
//! ignore it; their off-delay does the debouncing.
//!
//! # Bad readings
//!
//! A reading counts as good when its quality is good *and* it carries a
//! value. Anything else never changes an `above`, `below`, `outside`,
//! `rate`, `equals` or `expr` condition: the condition keeps its last
//! verdict. The alternatives are both worse: clearing would send a
//! "returned to normal" for a device that merely stopped answering while
//! it was in alarm, and tripping would turn every network glitch into a
//! process alarm. A dead device is `stale`'s business, which is exactly
//! what bad readings feed. The same holds for values a condition cannot
//! judge (text for a limit, NaN): they are ignored.
//!
//! # Rate
//!
//! The rate is the average over at least `window`: the change from the
//! newest sample that is at least `window` old to the current reading,
//! divided by the time between them, times `per`. Until the samples span a
//! whole window (after start or a clock jump) the rate is not judged and
//! the condition keeps its verdict. Memory is bounded by decimation: a new
//! sample replaces the newest one unless it is at least `window / 32` after
//! the one before, so a window holds at most about 70 samples whatever the
//! poll rate, and the reference sample is at most `window / 32` (or one
//! poll interval) older than ideal.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::saved::{SavedValue, f64_text};
use super::time::{Timestamp, millis};
use crate::config::{Condition, State};
use crate::reading::Quality;
use crate::tag::Value;

/// Decimation: the rate window keeps one sample per `window / RATE_STEPS`.
const RATE_STEPS: u64 = 32;

/// Hard cap on the samples of a rate window, whatever the clock does.
const RATE_MAX_SAMPLES: usize = 2 * RATE_STEPS as usize + 8;

/// Relative tolerance of `equals` on numbers: a scaled register rarely
/// lands exactly on `3.0`.
const EQUALS_EPSILON: f64 = 1e-9;

/// What the condition last judged, for alarm messages and work orders.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    /// The value judged: the reading for limits (while an alarm is held
    /// inside the deadband, the last reading beyond the limit) and
    /// `equals`, the rate (in
    /// units per `per`) for `rate`, the seconds without a good reading for
    /// `stale`, the expression's result for `expr`.
    pub value: Value,
    /// The limit it was compared with: the limit (for `outside`, the one
    /// nearer the value), the rate limit, `after` in seconds, the state for
    /// `equals`; `None` for `expr`.
    pub limit: Option<Value>,
}

/// The condition's configuration, reduced to what evaluation needs.
#[derive(Debug, Clone)]
enum Spec {
    Above {
        limit: f64,
        clear: f64,
    },
    Below {
        limit: f64,
        clear: f64,
    },
    Outside {
        low: f64,
        high: f64,
        clear_low: f64,
        clear_high: f64,
    },
    Rate {
        limit: f64,
        clear: f64,
        per_secs: f64,
        window_ms: u64,
        step_ms: u64,
    },
    Stale {
        after_ms: u64,
    },
    Equals {
        state: State,
    },
    Expr,
}

/// The memory of one rule's condition and its verdict.
#[derive(Debug, Clone)]
pub struct ConditionState {
    kind: &'static str,
    spec: Spec,
    met: bool,
    trigger: Option<Trigger>,
    /// `rate` only: (time, value), oldest first; the front is the newest
    /// sample at least a window old once the window is covered.
    samples: VecDeque<(Timestamp, f64)>,
    /// `stale` only: when the last good reading came.
    last_good: Option<Timestamp>,
    /// `stale` only: when the rule first saw a reading or a tick; staleness
    /// counts from here until the first good reading.
    watch_since: Option<Timestamp>,
}

impl ConditionState {
    /// A fresh, unmet condition. A negative or NaN `deadband` counts as
    /// zero (the config check refuses both).
    pub fn new(condition: &Condition, deadband: f64) -> ConditionState {
        let db = if deadband.is_finite() && deadband > 0.0 {
            deadband
        } else {
            0.0
        };
        let spec = match condition {
            Condition::Above { limit, .. } => Spec::Above {
                limit: *limit,
                clear: limit - db,
            },
            Condition::Below { limit, .. } => Spec::Below {
                limit: *limit,
                clear: limit + db,
            },
            Condition::Outside { low, high, .. } => Spec::Outside {
                low: *low,
                high: *high,
                clear_low: low + db,
                clear_high: high - db,
            },
            Condition::Rate {
                limit, per, window, ..
            } => {
                let window_ms = millis(*window).max(1);
                Spec::Rate {
                    limit: limit.abs(),
                    clear: limit.abs() - db,
                    per_secs: per.as_secs_f64(),
                    window_ms,
                    step_ms: window_ms / RATE_STEPS,
                }
            }
            Condition::Stale { after, .. } => Spec::Stale {
                after_ms: millis(*after),
            },
            Condition::Equals { value, .. } => Spec::Equals {
                state: value.clone(),
            },
            Condition::Expr { .. } => Spec::Expr,
        };
        ConditionState {
            kind: condition.kind(),
            spec,
            met: false,
            trigger: None,
            samples: VecDeque::new(),
            last_good: None,
            watch_since: None,
        }
    }

    /// The condition's config name (`above`, `rate`, …).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The current verdict.
    pub fn is_met(&self) -> bool {
        self.met
    }

    /// What was last judged, if anything.
    pub fn trigger(&self) -> Option<&Trigger> {
        self.trigger.as_ref()
    }

    /// True for `expr` conditions, which take [`observe_expr`](Self::observe_expr).
    pub fn is_expr(&self) -> bool {
        matches!(self.spec, Spec::Expr)
    }

    /// Judges a reading of the rule's tag taken at `at`; returns the verdict.
    ///
    /// `expr` conditions ignore this (see [`observe_expr`](Self::observe_expr)).
    pub fn observe(&mut self, value: Option<&Value>, quality: &Quality, at: Timestamp) -> bool {
        let good = match value {
            Some(v) if quality.is_good() => Some(v),
            _ => None,
        };
        if let Spec::Stale { .. } = self.spec {
            match good {
                Some(_) => {
                    self.last_good = Some(at);
                    self.watch_since.get_or_insert(at);
                    self.judge_stale(at);
                }
                None => self.judge_stale(at),
            }
            return self.met;
        }
        let Some(value) = good else {
            return self.met;
        };
        match &self.spec {
            Spec::Above { limit, clear } => {
                let (limit, clear) = (*limit, *clear);
                if let Some(x) = number(value) {
                    self.met = latch(self.met, x > limit, x < clear);
                    self.judged(x > limit, value, Value::Float(limit));
                }
            }
            Spec::Below { limit, clear } => {
                let (limit, clear) = (*limit, *clear);
                if let Some(x) = number(value) {
                    self.met = latch(self.met, x < limit, x > clear);
                    self.judged(x < limit, value, Value::Float(limit));
                }
            }
            Spec::Outside {
                low,
                high,
                clear_low,
                clear_high,
            } => {
                let (low, high, clear_low, clear_high) = (*low, *high, *clear_low, *clear_high);
                if let Some(x) = number(value) {
                    let out = x > high || x < low;
                    let back = x < clear_high && x > clear_low;
                    self.met = latch(self.met, out, back);
                    // Name the nearer limit: the one crossed, or about to be.
                    let nearer = if x >= low + (high - low) / 2.0 {
                        high
                    } else {
                        low
                    };
                    self.judged(out, value, Value::Float(nearer));
                }
            }
            Spec::Rate { .. } => {
                if let Some(x) = number(value) {
                    self.judge_rate(x, at);
                }
            }
            Spec::Equals { state } => {
                let equal = equals(value, state);
                let limit = state_value(state);
                self.met = equal;
                self.set_trigger(value.clone(), limit);
            }
            Spec::Stale { .. } | Spec::Expr => {}
        }
        self.met
    }

    /// Takes the result of an `expr` condition evaluated at `at` (the caller
    /// evaluates only when every tag it reads has a good value). Other
    /// conditions ignore it.
    pub fn observe_expr(&mut self, result: bool, _at: Timestamp) -> bool {
        if let Spec::Expr = self.spec {
            self.met = result;
            self.trigger = Some(Trigger {
                value: Value::Bool(result),
                limit: None,
            });
        }
        self.met
    }

    /// Time passes without a reading: only `stale` can change.
    pub fn tick(&mut self, at: Timestamp) -> bool {
        if let Spec::Stale { .. } = self.spec {
            self.judge_stale(at);
        }
        self.met
    }

    /// Records a limit judgement. While the latch holds a value inside the
    /// deadband (met, but not beyond the limit), the trigger keeps the last
    /// reading that was beyond it: an alarm whose on-delay ends on such a
    /// reading must not report "79 degC above 80 degC".
    fn judged(&mut self, beyond: bool, value: &Value, limit: Value) {
        if beyond || !self.met || self.trigger.is_none() {
            self.set_trigger(value.clone(), limit);
        }
    }

    fn set_trigger(&mut self, value: Value, limit: Value) {
        self.trigger = Some(Trigger {
            value,
            limit: Some(limit),
        });
    }

    fn judge_stale(&mut self, at: Timestamp) {
        let Spec::Stale { after_ms } = self.spec else {
            return;
        };
        let since = *self.watch_since.get_or_insert(at);
        let reference = match self.last_good {
            Some(t) => t,
            None => since,
        };
        if at < reference {
            // The clock went back: count staleness from the new "now"
            // rather than wait for the clock to catch up with the old one.
            if self.last_good.is_some() {
                self.last_good = Some(at);
            } else {
                self.watch_since = Some(at);
            }
        }
        let elapsed = at.millis_since(reference);
        self.met = elapsed >= after_ms;
        self.trigger = Some(Trigger {
            value: Value::Float(elapsed as f64 / 1000.0),
            limit: Some(Value::Float(after_ms as f64 / 1000.0)),
        });
    }

    fn judge_rate(&mut self, x: f64, at: Timestamp) {
        let Spec::Rate {
            limit,
            clear,
            per_secs,
            window_ms,
            step_ms,
        } = self.spec
        else {
            return;
        };
        if self.samples.back().is_some_and(|&(t, _)| at < t) {
            // The clock went back: the old samples lie in the "future".
            self.samples.clear();
        }
        let len = self.samples.len();
        match (len >= 2).then(|| self.samples[len - 2].0) {
            Some(committed) if at.millis_since(committed) < step_ms => {
                if let Some(last) = self.samples.back_mut() {
                    *last = (at, x);
                }
            }
            _ => self.samples.push_back((at, x)),
        }
        let boundary = Timestamp(at.0.saturating_sub(window_ms));
        while self.samples.len() >= 2 && self.samples[1].0 <= boundary {
            self.samples.pop_front();
        }
        while self.samples.len() > RATE_MAX_SAMPLES {
            self.samples.pop_front();
        }
        let Some(&(t0, x0)) = self.samples.front() else {
            return;
        };
        let dt = at.millis_since(t0);
        if dt < window_ms {
            return;
        }
        let rate = (x - x0) / (dt as f64 / 1000.0) * per_secs;
        if rate.is_finite() {
            self.met = latch(self.met, rate.abs() > limit, rate.abs() < clear);
            self.set_trigger(Value::Float(rate), Value::Float(limit));
        }
    }

    /// The memory to persist.
    pub fn save(&self) -> SavedCondition {
        SavedCondition {
            kind: self.kind.to_owned(),
            met: self.met,
            value: self.trigger.as_ref().map(|t| SavedValue::from(&t.value)),
            limit: self
                .trigger
                .as_ref()
                .and_then(|t| t.limit.as_ref())
                .map(SavedValue::from),
            samples: self
                .samples
                .iter()
                .map(|&(at, value)| SavedSample { at, value })
                .collect(),
            last_good: self.last_good,
            watch_since: self.watch_since,
        }
    }

    /// Restores persisted memory. Returns false, and leaves the condition
    /// fresh, when the saved memory belongs to another kind of condition
    /// (the rule was redefined between save and restore).
    pub fn restore(&mut self, saved: &SavedCondition) -> bool {
        if saved.kind != self.kind {
            return false;
        }
        self.met = saved.met;
        self.trigger = saved.value.as_ref().map(|v| Trigger {
            value: Value::from(v),
            limit: saved.limit.as_ref().map(Value::from),
        });
        // Keep the newest samples if a save holds more than the cap.
        let skip = saved.samples.len().saturating_sub(RATE_MAX_SAMPLES);
        self.samples = saved
            .samples
            .iter()
            .skip(skip)
            .map(|s| (s.at, s.value))
            .collect();
        self.last_good = saved.last_good;
        self.watch_since = saved.watch_since;
        true
    }
}

/// The hysteresis latch: an unmet condition becomes met on `trip`; a met
/// one stays met until `clear`.
fn latch(met: bool, trip: bool, clear: bool) -> bool {
    if met { !clear } else { trip }
}

/// A value a limit can judge: any finite number (`true` is 1).
fn number(v: &Value) -> Option<f64> {
    v.as_f64().filter(|x| x.is_finite())
}

/// `equals`: a bit against a bit (or a register used as a flag: non-zero
/// is true), numbers within a tiny relative tolerance, text exactly (the
/// decoder already strips the NUL and space padding). Different kinds
/// never match.
fn equals(v: &Value, state: &State) -> bool {
    match (state, v) {
        (State::Bool(b), Value::Bool(x)) => x == b,
        (State::Bool(b), other) => number(other).is_some_and(|x| (x != 0.0) == *b),
        (State::Number(n), other) => {
            number(other).is_some_and(|x| (x - n).abs() <= EQUALS_EPSILON * n.abs().max(1.0))
        }
        (State::Text(t), Value::Text(x)) => x == t,
        (State::Text(_), _) => false,
    }
}

fn state_value(state: &State) -> Value {
    match state {
        State::Bool(b) => Value::Bool(*b),
        State::Number(n) => Value::Float(*n),
        State::Text(t) => Value::Text(t.clone()),
    }
}

/// The persisted memory of a condition (see [`ConditionState::save`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedCondition {
    /// The condition's kind; memory of another kind is not restored.
    pub kind: String,
    /// The verdict (the hysteresis latch).
    pub met: bool,
    /// The value last judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<SavedValue>,
    /// The limit it was compared with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<SavedValue>,
    /// `rate`: the window's samples, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<SavedSample>,
    /// `stale`: time of the last good reading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_good: Option<Timestamp>,
    /// `stale`: when watching started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_since: Option<Timestamp>,
}

/// One sample of a rate window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SavedSample {
    /// When it was read.
    pub at: Timestamp,
    /// The value (exact text, see `saved.rs`).
    #[serde(with = "f64_text")]
    pub value: f64,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reading::BadReason;

    const GOOD: Quality = Quality::Good;

    fn t(secs: f64) -> Timestamp {
        Timestamp((secs * 1000.0) as u64)
    }

    fn above(limit: f64, deadband: f64) -> ConditionState {
        ConditionState::new(
            &Condition::Above {
                tag: "p.t".into(),
                limit,
            },
            deadband,
        )
    }

    fn feed(c: &mut ConditionState, values: &[f64]) -> Vec<bool> {
        values
            .iter()
            .enumerate()
            .map(|(i, v)| c.observe(Some(&Value::Float(*v)), &GOOD, t(i as f64)))
            .collect()
    }

    #[test]
    fn above_with_deadband_latches_until_below_limit_minus_deadband() {
        let mut c = above(80.0, 5.0);
        let got = feed(&mut c, &[70.0, 80.0, 80.1, 79.0, 75.0, 74.9, 80.0, 81.0]);
        assert_eq!(got, [false, false, true, true, true, false, false, true]);
        let trig = c.trigger().cloned();
        assert_eq!(
            trig,
            Some(Trigger {
                value: Value::Float(81.0),
                limit: Some(Value::Float(80.0))
            })
        );
    }

    #[test]
    fn inside_the_deadband_the_trigger_keeps_the_last_value_beyond_the_limit() {
        let value = |c: &ConditionState| c.trigger().map(|t| t.value.clone());
        let mut c = above(80.0, 2.0);
        feed(&mut c, &[79.0]);
        assert_eq!(value(&c), Some(Value::Float(79.0)));
        feed(&mut c, &[81.5, 79.0, 80.0]);
        // Still met (above 78), but 79 and 80 are not "above 80".
        assert!(c.is_met());
        assert_eq!(value(&c), Some(Value::Float(81.5)));
        feed(&mut c, &[77.0]);
        assert!(!c.is_met());
        assert_eq!(value(&c), Some(Value::Float(77.0)));
    }

    #[test]
    fn below_and_outside_mirror_the_hysteresis() {
        let mut c = ConditionState::new(
            &Condition::Below {
                tag: "p.t".into(),
                limit: 2.0,
            },
            0.5,
        );
        assert_eq!(
            feed(&mut c, &[3.0, 1.9, 2.4, 2.5, 2.6]),
            [false, true, true, true, false]
        );

        let mut c = ConditionState::new(
            &Condition::Outside {
                tag: "p.t".into(),
                low: 10.0,
                high: 20.0,
            },
            1.0,
        );
        let got = feed(&mut c, &[15.0, 20.5, 19.5, 18.9, 9.0, 10.5, 11.5]);
        assert_eq!(got, [false, true, true, false, true, true, false]);
        // Beyond the low side, the low limit is named.
        c.observe(Some(&Value::Float(5.0)), &GOOD, t(10.0));
        assert_eq!(
            c.trigger().and_then(|t| t.limit.clone()),
            Some(Value::Float(10.0))
        );
    }

    #[test]
    fn bad_quality_never_trips_or_clears_a_limit() {
        let mut c = above(80.0, 0.0);
        let bad = Quality::Bad(BadReason::Timeout);
        // A bad reading with an absurd value attached changes nothing.
        assert!(!c.observe(Some(&Value::Float(1e9)), &bad, t(0.0)));
        assert!(!c.observe(None, &GOOD, t(1.0)));
        assert!(c.observe(Some(&Value::Float(90.0)), &GOOD, t(2.0)));
        assert!(c.observe(None, &bad, t(3.0)));
        assert!(c.observe(Some(&Value::Float(0.0)), &bad, t(4.0)));
        // Text and NaN cannot be judged either.
        assert!(c.observe(Some(&Value::Text("x".into())), &GOOD, t(5.0)));
        assert!(c.observe(Some(&Value::Float(f64::NAN)), &GOOD, t(6.0)));
        assert!(!c.observe(Some(&Value::Int(3)), &GOOD, t(7.0)));
    }

    #[test]
    fn stale_from_bad_readings_and_from_tick() {
        let cond = Condition::Stale {
            tag: "p.t".into(),
            after: Duration::from_secs(30),
        };
        let bad = Quality::Bad(BadReason::Connection);
        let mut c = ConditionState::new(&cond, 0.0);
        assert!(!c.observe(Some(&Value::Int(1)), &GOOD, t(0.0)));
        assert!(!c.observe(None, &bad, t(29.9)));
        assert!(c.observe(None, &bad, t(30.0)));
        assert!(c.observe(None, &bad, t(31.0)));
        assert_eq!(
            c.trigger().map(|t| t.value.clone()),
            Some(Value::Float(31.0))
        );
        assert!(!c.observe(Some(&Value::Int(1)), &GOOD, t(32.0)));

        // With no reading at all, ticks find it stale, counting from the
        // first tick.
        let mut c = ConditionState::new(&cond, 0.0);
        assert!(!c.tick(t(100.0)));
        assert!(!c.tick(t(129.0)));
        assert!(c.tick(t(130.0)));
        // The clock going back restarts the count instead of panicking.
        assert!(!c.tick(t(50.0)));
        assert!(!c.tick(t(79.0)));
        assert!(c.tick(t(80.0)));
    }

    fn rate(limit: f64, per: u64, window: u64, deadband: f64) -> ConditionState {
        ConditionState::new(
            &Condition::Rate {
                tag: "p.t".into(),
                limit,
                per: Duration::from_secs(per),
                window: Duration::from_secs(window),
            },
            deadband,
        )
    }

    #[test]
    fn rate_over_a_window() {
        // 5 units per minute, over 60 s, polled every second.
        let mut c = rate(5.0, 60, 60, 1.0);
        let mut v = 20.0;
        let mut met = Vec::new();
        for s in 0..=200 {
            // Rises at 6/min from 60 s to 130 s, then flat.
            if (60..130).contains(&s) {
                v += 0.1;
            }
            met.push(c.observe(Some(&Value::Float(v)), &GOOD, t(s as f64)));
        }
        // Not judged before a full window.
        assert!(met[..60].iter().all(|m| !m));
        // Over 60 s of rise at 6/min, rate = 6 > 5: met once the window
        // holds enough of the ramp (a rise of 5 makes exactly 5 per minute).
        assert!(!met[105]);
        assert!(met[112]);
        assert!(met[130]);
        // Clears once the window's average falls below 5 − 1 = 4.
        assert!(!met[200]);
        let r = c.trigger().map(|t| t.value.clone());
        assert_eq!(r, Some(Value::Float(0.0)));
        // Memory stays bounded.
        assert!(c.samples.len() <= RATE_MAX_SAMPLES);
    }

    #[test]
    fn rate_memory_is_bounded_at_a_fast_poll() {
        let mut c = rate(1.0, 1, 10, 0.0);
        for i in 0..100_000u64 {
            c.observe(Some(&Value::Float(i as f64)), &GOOD, Timestamp(i));
            assert!(c.samples.len() <= RATE_MAX_SAMPLES);
        }
        // 1 unit per ms is 1000 per second.
        assert!(c.is_met());
        let rate = c
            .trigger()
            .and_then(|t| t.value.as_f64())
            .unwrap_or_default();
        assert!((rate - 1000.0).abs() < 1e-6, "{rate}");
        // Falling just as fast is a rate too (absolute value).
        let mut c = rate_down();
        assert!(c.is_met());
        c.observe(Some(&Value::Float(0.0)), &GOOD, Timestamp(0));
        assert!(c.is_met(), "a clock jump back keeps the verdict");
    }

    fn rate_down() -> ConditionState {
        let mut c = rate(1.0, 1, 10, 0.0);
        for i in 0..30_000u64 {
            c.observe(Some(&Value::Float(-(i as f64))), &GOOD, Timestamp(i));
        }
        c
    }

    #[test]
    fn equals_a_fault_bit_a_mode_and_text() {
        let mut c = ConditionState::new(
            &Condition::Equals {
                tag: "p.fault".into(),
                value: State::Bool(true),
            },
            0.0,
        );
        assert!(!c.observe(Some(&Value::Bool(false)), &GOOD, t(0.0)));
        assert!(c.observe(Some(&Value::Bool(true)), &GOOD, t(1.0)));
        assert!(c.observe(None, &Quality::Bad(BadReason::Timeout), t(2.0)));
        assert!(!c.observe(Some(&Value::Bool(false)), &GOOD, t(3.0)));
        // A register used as a flag.
        assert!(c.observe(Some(&Value::Int(4)), &GOOD, t(4.0)));

        let mut mode = ConditionState::new(
            &Condition::Equals {
                tag: "p.mode".into(),
                value: State::Number(3.0),
            },
            0.0,
        );
        assert!(mode.observe(Some(&Value::Int(3)), &GOOD, t(0.0)));
        assert!(mode.observe(Some(&Value::Float(0.1 * 30.0)), &GOOD, t(1.0)));
        assert!(!mode.observe(Some(&Value::Float(3.001)), &GOOD, t(2.0)));
        assert!(!mode.observe(Some(&Value::Text("3".into())), &GOOD, t(3.0)));

        let mut text = ConditionState::new(
            &Condition::Equals {
                tag: "p.state".into(),
                value: State::Text("FAULT".into()),
            },
            0.0,
        );
        assert!(text.observe(Some(&Value::Text("FAULT".into())), &GOOD, t(0.0)));
        assert!(!text.observe(Some(&Value::Text("RUN".into())), &GOOD, t(1.0)));
        assert!(!text.observe(Some(&Value::Bool(true)), &GOOD, t(2.0)));
    }

    #[test]
    fn save_and_restore_keep_the_memory() {
        let mut c = rate(5.0, 60, 60, 1.0);
        for s in 0..90 {
            c.observe(
                Some(&Value::Float(f64::from(s) * 0.13)),
                &GOOD,
                t(f64::from(s)),
            );
        }
        let saved = c.save();
        let json = serde_json::to_string(&saved).unwrap();
        let back: SavedCondition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, saved);
        let mut d = rate(5.0, 60, 60, 1.0);
        assert!(d.restore(&back));
        assert_eq!(d.samples, c.samples);
        assert_eq!(d.trigger(), c.trigger());
        for s in 90..200 {
            let v = Value::Float(f64::from(s) * 0.2);
            assert_eq!(
                c.observe(Some(&v), &GOOD, t(f64::from(s))),
                d.observe(Some(&v), &GOOD, t(f64::from(s)))
            );
        }
        // Memory of another kind is refused.
        let mut other = above(1.0, 0.0);
        assert!(!other.restore(&saved));
        assert!(other.trigger().is_none());
    }
}
