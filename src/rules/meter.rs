//! Maintenance meters: runtime hours while a boolean tag is true, or
//! counts of its rising edges, with a threshold every `every` that raises
//! a preventive work order.
//!
//! Pure: readings come in with their time, [`MeterChange`]s go out. The
//! rules task routes readings of the meter's tag to
//! [`MeterState::observe`], hands each [`MeterChange::Due`] to
//! [`WorkOrderBook::on_meter_due`](super::WorkOrderBook::on_meter_due),
//! publishes each [`MeterChange::Publish`] retained on
//! `.../meters/{name}`, and calls [`MeterState::on_work_order_closed`]
//! when the CMMS closes the meter's work order.
//!
//! # Counting
//!
//! Runtime is kept in whole milliseconds, counts as integers, so nothing
//! drifts however long the meter runs.
//!
//! * **Runtime**: the time between two *consecutive good* readings counts
//!   when the earlier one was true (the state holds until the next poll).
//!   A bad reading (or a non-boolean value) breaks the chain, so the gap
//!   around it counts nothing; so does a gap longer than
//!   [`DEFAULT_MAX_GAP`] (a gateway that was stopped knows nothing about
//!   that time), and a clock that went back (the chain restarts from the
//!   new time; nothing panics).
//! * **Count**: a good `true` after a last good `false` is one rising edge,
//!   even across bad readings in between (it started at least once). The
//!   first reading ever has no edge.
//!
//! Numbers count as booleans (non-zero is true), text as a bad reading.
//!
//! # Thresholds
//!
//! The next threshold starts at `every`. When the value reaches it,
//! [`MeterChange::Due`] is yielded exactly once and the threshold is
//! *pending* until its work order closes; then the next threshold is armed
//! at the next multiple of `every` strictly above the current value (510 h
//! at closing → 1000 h; 1010 h → 1500 h: a late service is not followed by
//! an immediate one). A meter whose template is disabled raises no work
//! order and so re-arms at once.
//!
//! # Publishing
//!
//! [`MeterChange::Publish`] asks for the meter message (retained): on the
//! first reading after [`MeterState::new`]; whenever the threshold state
//! changes (due, re-armed); when the value moved by at least one step
//! (0.01 h, or 1 count) and [`MIN_PUBLISH_INTERVAL`] has passed since the
//! last publish; and when it moved at all and [`MAX_PUBLISH_DELAY`] has
//! passed. An unchanged value is not republished: the retained message
//! still holds it. A running pump so publishes every 36 s, a fast stroke
//! counter at most every 10 s.
//!
//! # Persistence
//!
//! [`MeterState`] is serde and restores exactly. Use
//! [`MeterState::resume`] to continue a saved state under the running
//! config.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::{Timestamp, millis};
use crate::config::{Meter, MeterKind};
use crate::reading::Quality;
use crate::tag::Value;

/// Longest gap between two good readings that still counts as runtime.
pub const DEFAULT_MAX_GAP: Duration = Duration::from_secs(15 * 60);

/// Shortest time between two publishes of a moving value.
pub const MIN_PUBLISH_INTERVAL: Duration = Duration::from_secs(10);

/// Longest time a changed value waits to be published.
pub const MAX_PUBLISH_DELAY: Duration = Duration::from_secs(60);

/// Milliseconds in an hour.
const HOUR_MS: u64 = 3_600_000;

/// The runtime publish step: 0.01 h.
const RUNTIME_STEP_MS: u64 = HOUR_MS / 100;

/// What a meter measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// Hours while the tag is true.
    Runtime,
    /// Rising edges of the tag.
    Count,
}

impl Measure {
    /// The payload name: `runtime` or `count`.
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::Runtime => "runtime",
            Measure::Count => "count",
        }
    }

    /// The unit of values and thresholds: `h` or `count`.
    pub fn unit(self) -> &'static str {
        match self {
            Measure::Runtime => "h",
            Measure::Count => "count",
        }
    }

    /// An internal amount (ms or count) in the unit.
    fn display(self, amount: u64) -> f64 {
        match self {
            Measure::Runtime => amount as f64 / HOUR_MS as f64,
            Measure::Count => amount as f64,
        }
    }
}

/// A threshold was reached: raise the preventive work order.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterDue {
    /// The meter.
    pub meter: String,
    /// Runtime or count.
    pub measure: Measure,
    /// The value now (hours or count).
    pub value: f64,
    /// The threshold reached (hours or count).
    pub threshold: f64,
    /// When.
    pub at: Timestamp,
}

/// The meter message's content.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterReport {
    /// The meter.
    pub meter: String,
    /// The tag it watches.
    pub tag: String,
    /// Runtime or count.
    pub measure: Measure,
    /// The value (hours or count).
    pub value: f64,
    /// The next threshold (the pending one while due).
    pub next_due: f64,
    /// A threshold was reached and its work order is not closed yet.
    pub due: bool,
    /// When.
    pub at: Timestamp,
}

/// What a meter asks the caller to do.
#[derive(Debug, Clone, PartialEq)]
pub enum MeterChange {
    /// Raise a preventive work order.
    Due(MeterDue),
    /// Publish the meter message (retained).
    Publish(MeterReport),
}

/// The last reading, for runtime intervals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Sample {
    on: bool,
    at: Timestamp,
}

/// What was last published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Published {
    amount: u64,
    next_due: u64,
    due: bool,
    at: Timestamp,
}

/// One meter's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterState {
    name: String,
    tag: String,
    measure: Measure,
    /// The interval in ms (runtime) or edges (count), at least 1.
    every: u64,
    /// Whether due thresholds raise work orders (else re-arm at once).
    work_orders: bool,
    /// [`DEFAULT_MAX_GAP`] unless changed, in ms.
    max_gap_ms: u64,
    /// Runtime in ms, or the count.
    amount: u64,
    /// The last reading if it was good (broken by a bad one).
    prev: Option<Sample>,
    /// The last good state (kept across bad readings, for edges).
    level: Option<bool>,
    /// The armed threshold.
    next_due: u64,
    /// The threshold reached whose work order is not closed yet.
    pending: Option<u64>,
    /// The last publish.
    published: Option<Published>,
}

impl MeterState {
    /// A meter at zero, its first threshold at `every`.
    pub fn new(meter: &Meter) -> MeterState {
        let (measure, every) = Self::interval(meter);
        MeterState {
            name: meter.name.clone(),
            tag: meter.tag.clone(),
            measure,
            every,
            work_orders: meter.workorder.enabled,
            max_gap_ms: millis(DEFAULT_MAX_GAP),
            amount: 0,
            prev: None,
            level: None,
            next_due: every,
            pending: None,
            published: None,
        }
    }

    /// Continues `saved` under `meter`'s current config: the count and
    /// any pending threshold are kept; a changed `every` re-arms the next
    /// threshold at the next multiple above the value. A saved state of
    /// another kind (runtime ↔ count) or meter is not used: the meter
    /// starts at zero.
    pub fn resume(meter: &Meter, saved: MeterState) -> MeterState {
        let (measure, every) = Self::interval(meter);
        if saved.name != meter.name || saved.measure != measure {
            return MeterState::new(meter);
        }
        let mut state = MeterState {
            tag: meter.tag.clone(),
            every,
            work_orders: meter.workorder.enabled,
            ..saved
        };
        if every != saved.every {
            state.next_due = state.next_multiple();
        }
        state
    }

    /// Changes the longest gap that still counts as runtime (for tags
    /// polled less often than every few minutes).
    pub fn with_max_gap(mut self, gap: Duration) -> MeterState {
        self.max_gap_ms = millis(gap);
        self
    }

    fn interval(meter: &Meter) -> (Measure, u64) {
        match meter.kind {
            MeterKind::Runtime { every } => (Measure::Runtime, millis(every).max(1)),
            MeterKind::Count { every } => (Measure::Count, every.max(1)),
        }
    }

    /// The meter's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full name of the tag it watches.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// Runtime or count.
    pub fn measure(&self) -> Measure {
        self.measure
    }

    /// The value: hours or count.
    pub fn value(&self) -> f64 {
        self.measure.display(self.amount)
    }

    /// The value in whole units: milliseconds or count.
    pub fn raw_value(&self) -> u64 {
        self.amount
    }

    /// The next threshold (hours or count); the pending one while due.
    pub fn next_due(&self) -> f64 {
        self.measure.display(self.pending.unwrap_or(self.next_due))
    }

    /// A threshold was reached and its work order is not closed yet.
    pub fn is_due(&self) -> bool {
        self.pending.is_some()
    }

    /// The meter message as of `at` (e.g. to publish at start-up).
    pub fn report(&self, at: Timestamp) -> MeterReport {
        MeterReport {
            meter: self.name.clone(),
            tag: self.tag.clone(),
            measure: self.measure,
            value: self.value(),
            next_due: self.next_due(),
            due: self.is_due(),
            at,
        }
    }

    /// One reading of the meter's tag, taken at `at` (module docs).
    pub fn observe(
        &mut self,
        value: Option<&Value>,
        quality: &Quality,
        at: Timestamp,
    ) -> Vec<MeterChange> {
        let on = match value {
            Some(v) if quality.is_good() => as_bool(v),
            _ => None,
        };
        match on {
            None => self.prev = None,
            Some(on) => {
                match self.measure {
                    Measure::Runtime => {
                        if let Some(p) = self.prev
                            && p.on
                            && at >= p.at
                        {
                            let dt = at.millis_since(p.at);
                            if dt <= self.max_gap_ms {
                                self.amount = self.amount.saturating_add(dt);
                            }
                        }
                    }
                    Measure::Count => {
                        if on && self.level == Some(false) {
                            self.amount = self.amount.saturating_add(1);
                        }
                    }
                }
                self.prev = Some(Sample { on, at });
                self.level = Some(on);
            }
        }
        let mut out = Vec::new();
        self.check_due(at, &mut out);
        self.maybe_publish(at, &mut out);
        out
    }

    /// The CMMS closed the meter's work order: arms the next threshold
    /// and asks to publish. Nothing if no threshold was pending.
    pub fn on_work_order_closed(&mut self, at: Timestamp) -> Vec<MeterChange> {
        let mut out = Vec::new();
        if self.pending.take().is_some() {
            self.next_due = self.next_multiple();
            self.maybe_publish(at, &mut out);
        }
        out
    }

    /// The next multiple of `every` strictly above the value.
    fn next_multiple(&self) -> u64 {
        (self.amount / self.every)
            .saturating_add(1)
            .saturating_mul(self.every)
    }

    fn check_due(&mut self, at: Timestamp, out: &mut Vec<MeterChange>) {
        if self.pending.is_some() || self.amount < self.next_due {
            return;
        }
        let threshold = self.next_due;
        if self.work_orders {
            self.pending = Some(threshold);
        } else {
            self.next_due = self.next_multiple();
        }
        out.push(MeterChange::Due(MeterDue {
            meter: self.name.clone(),
            measure: self.measure,
            value: self.value(),
            threshold: self.measure.display(threshold),
            at,
        }));
    }

    fn maybe_publish(&mut self, at: Timestamp, out: &mut Vec<MeterChange>) {
        let next_due = self.pending.unwrap_or(self.next_due);
        let due = self.pending.is_some();
        let publish = match self.published {
            None => true,
            Some(p) if p.next_due != next_due || p.due != due => true,
            Some(p) => {
                let moved = self.amount.abs_diff(p.amount);
                // A clock that went back counts as a long wait.
                let waited = if at < p.at {
                    u64::MAX
                } else {
                    at.millis_since(p.at)
                };
                let step = match self.measure {
                    Measure::Runtime => RUNTIME_STEP_MS,
                    Measure::Count => 1,
                };
                (moved >= step && waited >= millis(MIN_PUBLISH_INTERVAL))
                    || (moved > 0 && waited >= millis(MAX_PUBLISH_DELAY))
            }
        };
        if publish {
            self.published = Some(Published {
                amount: self.amount,
                next_due,
                due,
                at,
            });
            out.push(MeterChange::Publish(self.report(at)));
        }
    }
}

/// A reading as a boolean: bits as they are, numbers non-zero, text none.
fn as_bool(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Text(_) => None,
        other => other.as_f64().map(|x| x != 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Priority, WorkOrderTemplate};
    use crate::reading::BadReason;

    const GOOD: Quality = Quality::Good;
    const BAD: Quality = Quality::Bad(BadReason::Timeout);

    fn t(secs: f64) -> Timestamp {
        Timestamp(1_000_000_000 + (secs * 1000.0) as u64)
    }

    fn meter(kind: MeterKind) -> Meter {
        Meter {
            name: "m".into(),
            tag: "pump1.running".into(),
            kind,
            priority: Priority::Low,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate {
                enabled: true,
                ..WorkOrderTemplate::default()
            },
        }
    }

    fn runtime(every_secs: u64) -> MeterState {
        MeterState::new(&meter(MeterKind::Runtime {
            every: Duration::from_secs(every_secs),
        }))
    }

    fn count(every: u64) -> MeterState {
        MeterState::new(&meter(MeterKind::Count { every }))
    }

    fn on(m: &mut MeterState, b: bool, secs: f64) -> Vec<MeterChange> {
        m.observe(Some(&Value::Bool(b)), &GOOD, t(secs))
    }

    fn bad(m: &mut MeterState, secs: f64) -> Vec<MeterChange> {
        m.observe(None, &BAD, t(secs))
    }

    fn dues(changes: &[MeterChange]) -> Vec<&MeterDue> {
        changes
            .iter()
            .filter_map(|c| match c {
                MeterChange::Due(d) => Some(d),
                MeterChange::Publish(_) => None,
            })
            .collect()
    }

    #[test]
    fn runtime_counts_true_intervals_between_consecutive_good_readings() {
        let mut m = runtime(3600);
        on(&mut m, true, 0.0);
        on(&mut m, true, 10.0); // +10
        on(&mut m, false, 20.0); // +10 (true until this poll)
        on(&mut m, false, 30.0);
        on(&mut m, true, 40.0);
        assert_eq!(m.raw_value(), 20_000);
        // A bad reading breaks the chain: 40→50 and 50→60 count nothing.
        bad(&mut m, 50.0);
        on(&mut m, true, 60.0);
        on(&mut m, true, 61.5); // +1.5
        assert_eq!(m.raw_value(), 21_500);
        // Bad quality with a value, and text, are not good readings.
        m.observe(Some(&Value::Bool(true)), &BAD, t(70.0));
        on(&mut m, true, 71.0);
        m.observe(Some(&Value::Text("on".into())), &GOOD, t(72.0));
        on(&mut m, true, 73.0);
        assert_eq!(m.raw_value(), 21_500);
        // Numbers: non-zero is true.
        m.observe(Some(&Value::Int(1)), &GOOD, t(74.0)); // +1 (73 was true)
        m.observe(Some(&Value::Float(0.0)), &GOOD, t(75.0)); // +1
        m.observe(Some(&Value::Int(0)), &GOOD, t(76.0));
        assert_eq!(m.raw_value(), 23_500);
        // A gap longer than the maximum (a stopped gateway) counts nothing.
        on(&mut m, true, 100.0);
        on(&mut m, true, 100.0 + 16.0 * 60.0);
        assert_eq!(m.raw_value(), 23_500);
        let mut m = m.with_max_gap(Duration::from_secs(3600));
        on(&mut m, true, 100.0 + 46.0 * 60.0); // 30 min
        assert_eq!(m.raw_value(), 23_500 + 1_800_000);
    }

    #[test]
    fn the_clock_going_back_never_panics_or_counts_backwards() {
        let mut m = runtime(3600);
        on(&mut m, true, 1000.0);
        on(&mut m, true, 1010.0);
        assert_eq!(m.raw_value(), 10_000);
        on(&mut m, true, 5.0); // back by 1005 s: nothing
        assert_eq!(m.raw_value(), 10_000);
        on(&mut m, true, 8.0); // the chain restarts from 5 s
        assert_eq!(m.raw_value(), 13_000);
        m.observe(Some(&Value::Bool(true)), &GOOD, Timestamp(0));
        m.observe(Some(&Value::Bool(true)), &GOOD, Timestamp(u64::MAX));
        m.observe(Some(&Value::Bool(true)), &GOOD, Timestamp(0));
        assert_eq!(m.raw_value(), 13_000);
    }

    #[test]
    fn a_threshold_is_due_exactly_once_and_closing_arms_the_next_multiple() {
        let mut m = runtime(100);
        let mut all = Vec::new();
        for s in 0..=150 {
            all.extend(on(&mut m, true, f64::from(s)));
        }
        let d = dues(&all);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].threshold, 100.0 / 3600.0);
        assert_eq!(d[0].at, t(100.0));
        assert_eq!(d[0].measure, Measure::Runtime);
        assert!(m.is_due());
        assert_eq!(m.next_due(), 100.0 / 3600.0, "the pending threshold");
        // Running on past the next multiples while the work order is open
        // raises nothing more.
        for s in 151..=330 {
            assert!(dues(&on(&mut m, true, f64::from(s))).is_empty());
        }
        // Closed at 330 s: the next multiple above is 400 s (not 200 or
        // 300: a late service is not followed by an immediate one).
        let ch = m.on_work_order_closed(t(330.0));
        assert!(matches!(&ch[..], [MeterChange::Publish(r)] if !r.due));
        assert_eq!(m.next_due(), 400.0 / 3600.0);
        assert!(
            m.on_work_order_closed(t(331.0)).is_empty(),
            "nothing pending"
        );
        let mut all = Vec::new();
        for s in 331..=400 {
            all.extend(on(&mut m, true, f64::from(s)));
        }
        assert_eq!(dues(&all).len(), 1);
    }

    #[test]
    fn count_meters_count_rising_edges() {
        let mut m = count(3);
        let script: &[(Option<bool>, f64)] = &[
            (Some(true), 0.0), // first reading: no edge
            (Some(true), 1.0),
            (Some(false), 2.0),
            (Some(true), 3.0), // 1
            (Some(false), 4.0),
            (None, 5.0),
            (Some(true), 6.0), // 2: false before the bad reading
            (None, 7.0),
            (Some(true), 8.0), // still on: no edge
            (Some(false), 9.0),
            (Some(true), 9.5), // 3: due
            (Some(false), 10.0),
            (Some(true), 11.0), // 4
        ];
        let mut all = Vec::new();
        for &(v, s) in script {
            all.extend(match v {
                Some(b) => on(&mut m, b, s),
                None => bad(&mut m, s),
            });
        }
        assert_eq!(m.raw_value(), 4);
        assert_eq!(m.value(), 4.0);
        let d = dues(&all);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].value, d[0].threshold, d[0].at), (3.0, 3.0, t(9.5)));
        m.on_work_order_closed(t(12.0));
        assert_eq!(m.next_due(), 6.0);
        assert_eq!(m.measure().unit(), "count");
    }

    #[test]
    fn a_meter_without_work_orders_rearms_at_once() {
        let mut cfg = meter(MeterKind::Count { every: 2 });
        cfg.workorder.enabled = false;
        let mut m = MeterState::new(&cfg);
        let mut all = Vec::new();
        for i in 0..10 {
            all.extend(on(&mut m, i % 2 == 1, f64::from(i)));
        }
        // Edges at 1, 3, 5, 7, 9: 5 counts, due at 2 and 4.
        let thresholds: Vec<f64> = dues(&all).iter().map(|d| d.threshold).collect();
        assert_eq!(thresholds, [2.0, 4.0]);
        assert!(!m.is_due());
        assert_eq!(m.next_due(), 6.0);
    }

    #[test]
    fn publishing_follows_steps_intervals_and_threshold_changes() {
        let published =
            |ch: &[MeterChange]| ch.iter().any(|c| matches!(c, MeterChange::Publish(_)));
        let mut m = runtime(3600);
        assert!(published(&on(&mut m, false, 0.0)), "first reading");
        assert!(!published(&on(&mut m, true, 10.0)), "unchanged");
        // Running: a step of 0.01 h = 36 s of runtime, at least 10 s apart.
        assert!(published(&on(&mut m, true, 46.0)), "36 s more");
        assert!(!published(&on(&mut m, true, 50.0)), "4 s more, 4 s since");
        assert!(!published(&on(&mut m, true, 81.0)), "35 s < 0.01 h");
        assert!(published(&on(&mut m, true, 82.0)), "36 s");
        assert!(!published(&on(&mut m, false, 83.0)), "1 s");
        assert!(!published(&on(&mut m, false, 141.0)), "59 s since");
        assert!(published(&on(&mut m, false, 142.0)), "changed, 60 s since");
        assert!(!published(&on(&mut m, false, 500.0)), "unchanged");
        // Threshold state changes publish at once.
        on(&mut m, true, 501.0);
        let mut ch = Vec::new();
        for s in 502..=3600 + 600 {
            ch = on(&mut m, true, f64::from(s));
            if !dues(&ch).is_empty() {
                break;
            }
        }
        assert!(matches!(&ch[..], [MeterChange::Due(_), MeterChange::Publish(r)] if r.due));
        // Counts: every edge, but 10 s apart.
        let mut c = count(100);
        assert!(published(&on(&mut c, false, 0.0)));
        assert!(!published(&on(&mut c, true, 1.0)), "1 s");
        on(&mut c, false, 2.0);
        assert!(published(&on(&mut c, true, 11.0)));
        // The clock going back publishes a changed value at once.
        on(&mut c, false, 12.0);
        assert!(published(&on(&mut c, true, 5.0)));
    }

    #[test]
    fn meters_round_trip_through_json_mid_flow_and_resume_under_a_new_config() {
        let script: Vec<(Option<bool>, f64)> = (0..400)
            .map(|i| {
                let s = f64::from(i) * 7.5;
                match i % 13 {
                    5 => (None, s),
                    k => (Some(k % 4 != 0), s),
                }
            })
            .collect();
        let run = |m: &mut MeterState, (v, s): (Option<bool>, f64)| match v {
            Some(b) => on(m, b, s),
            None => bad(m, s),
        };
        let mut straight = runtime(600);
        let reference: Vec<_> = script.iter().map(|&i| run(&mut straight, i)).collect();
        assert!(
            reference
                .iter()
                .flatten()
                .any(|c| matches!(c, MeterChange::Due(_)))
        );
        for split in (0..=script.len()).step_by(37) {
            let mut first = runtime(600);
            for &i in &script[..split] {
                run(&mut first, i);
            }
            let json = serde_json::to_string(&first).unwrap();
            let back: MeterState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, first);
            let cfg = meter(MeterKind::Runtime {
                every: Duration::from_secs(600),
            });
            let mut second = MeterState::resume(&cfg, back);
            for (k, &i) in script.iter().enumerate().skip(split) {
                assert_eq!(run(&mut second, i), reference[k], "split {split}, step {k}");
            }
        }

        // A new interval re-arms above the value; a new kind starts afresh.
        let mut m = runtime(3600);
        for s in 0..=1000 {
            on(&mut m, true, f64::from(s));
        }
        let resumed = MeterState::resume(
            &meter(MeterKind::Runtime {
                every: Duration::from_secs(300),
            }),
            m.clone(),
        );
        assert_eq!(resumed.raw_value(), 1_000_000);
        assert_eq!(resumed.next_due(), 1200.0 / 3600.0);
        let fresh = MeterState::resume(&meter(MeterKind::Count { every: 5 }), m);
        assert_eq!(fresh.raw_value(), 0);
        assert_eq!(fresh.next_due(), 5.0);
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #[test]
            fn runtime_never_exceeds_the_time_that_passed(
                steps in prop::collection::vec((-5_000i64..200_000, 0u8..4), 1..300)
            ) {
                let mut m = runtime(60);
                let mut now: i64 = 10_000_000;
                let mut forward: u64 = 0;
                let mut dues = 0;
                for (dt, kind) in steps {
                    let next = (now + dt).max(0);
                    if next > now {
                        forward += (next - now) as u64;
                    }
                    now = next;
                    let at = Timestamp(now as u64);
                    let ch = match kind {
                        0 => m.observe(None, &BAD, at),
                        1 => m.observe(Some(&Value::Bool(false)), &GOOD, at),
                        _ => m.observe(Some(&Value::Bool(true)), &GOOD, at),
                    };
                    dues += ch.iter().filter(|c| matches!(c, MeterChange::Due(_))).count();
                    if m.is_due() && kind == 3 {
                        m.on_work_order_closed(at);
                    }
                }
                prop_assert!(m.raw_value() <= forward);
                prop_assert!(dues as u64 <= m.raw_value() / 60_000);
            }
        }
    }
}
