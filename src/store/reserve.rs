//! Seq reservations (pure: no I/O, time as an argument).
//!
//! A message may be published before it is written (write-behind), and
//! one acknowledged in time is never written at all; yet after a crash its
//! topic's numbering must not start again below its `seq`, or a consumer
//! that saw it would take the next message of the same number for a
//! duplicate and drop it. So the file holds, per topic, a *reservation*:
//! a seq at or above every seq that may have been published. A message
//! whose seq is above its topic's reservation waits (is not offered to the
//! forwarder) until a commit has raised the reservation. A restart after
//! a crash numbers on from the reservation: a gap, which honestly says
//! "may be lost", where reusing a number would silently lose data.
//!
//! Reservations are raised ahead of use, about [`AHEAD`] of a topic's
//! recent rate (at least [`MIN_STEP`]), once a topic has used half of its
//! step; all topics due are raised in one commit, and a commit made for
//! any other reason takes them along. So a steady stream
//! costs one small commit every half minute or so, and a message waits
//! for one only when a topic speeds up many times over.
//!
//! A clean close writes the seqs actually used, so a stop and start leaves
//! no gap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A topic's reservation covers about this much of its recent rate.
pub(super) const AHEAD: Duration = Duration::from_secs(60);

/// The smallest step a reservation is raised by (also the first one of a
/// topic, whose rate is not known yet).
pub(super) const MIN_STEP: u64 = 64;

/// The largest step: the gap a crash may leave in a very fast topic.
pub(super) const MAX_STEP: u64 = 1 << 20;

/// One topic's numbers.
#[derive(Debug, Clone)]
struct Topic {
    /// The highest seq taken in this run (or the file's, before any).
    used: u64,
    /// The highest seq the file covers: no seq above it has been offered.
    reserved: u64,
    /// The last raise: its moment and `used` then (to measure the rate).
    raised: Option<(Instant, u64)>,
    /// What the next raise adds.
    step: u64,
    /// A message was taken in this run.
    touched: bool,
}

impl Topic {
    /// Half of the step used. Only a topic used in this run is raised: the
    /// others' marks are where their numbering resumes (a raise would
    /// leave a gap at the next start).
    fn low(&self) -> bool {
        self.touched && self.reserved.saturating_sub(self.used) < self.step / 2
    }
}

/// The reservations of every topic.
#[derive(Debug, Default)]
pub(super) struct Reservations {
    topics: HashMap<String, Topic>,
    /// Some topic has used half of its step, or gone past its reservation
    /// (a raise is due).
    low: bool,
}

impl Reservations {
    /// Starts from the file's marks: every seq up to them may have been
    /// used.
    pub fn new(marks: HashMap<String, u64>) -> Reservations {
        let topics = marks
            .into_iter()
            .map(|(topic, seq)| {
                let t = Topic {
                    used: seq,
                    reserved: seq,
                    raised: None,
                    step: MIN_STEP,
                    touched: false,
                };
                (topic, t)
            })
            .collect();
        Reservations { topics, low: false }
    }

    /// Notes a message's seq. True when it is above its topic's
    /// reservation: it must not be published before a commit raises it.
    pub fn take(&mut self, topic: &str, seq: u64) -> bool {
        let t = match self.topics.get_mut(topic) {
            Some(t) => t,
            None => self.topics.entry(topic.to_owned()).or_insert(Topic {
                used: 0,
                reserved: 0,
                raised: None,
                step: MIN_STEP,
                touched: false,
            }),
        };
        t.used = t.used.max(seq);
        t.touched = true;
        self.low |= t.low();
        seq > t.reserved
    }

    /// A raise is due (some topic has used half of its step).
    pub fn low(&self) -> bool {
        self.low
    }

    /// The reservations to write with the next commit: every topic that
    /// used half of its step, raised by its rate over
    /// [`AHEAD`]. Pass them to [`written`](Self::written) once committed.
    pub fn due(&self, now: Instant) -> Vec<(String, u64)> {
        if !self.low {
            return Vec::new();
        }
        self.topics
            .iter()
            .filter(|(_, t)| t.low())
            .map(|(topic, t)| (topic.clone(), t.used.saturating_add(step(t, now))))
            .collect()
    }

    /// The reservations `marks` are on disk.
    pub fn written(&mut self, marks: &[(String, u64)], now: Instant) {
        for (topic, mark) in marks {
            if let Some(t) = self.topics.get_mut(topic) {
                t.step = step(t, now);
                t.reserved = t.reserved.max(*mark);
                t.raised = Some((now, t.used));
            }
        }
        self.low = self.topics.values().any(Topic::low);
    }

    /// Whether `seq` of `topic` is covered by its reservation.
    #[cfg(test)]
    pub fn covers(&self, topic: &str, seq: u64) -> bool {
        self.topics.get(topic).is_some_and(|t| seq <= t.reserved)
    }

    /// The seqs used in this run, per topic touched: what a clean close
    /// writes, and what numbering goes on from.
    pub fn used(&self) -> HashMap<String, u64> {
        self.topics
            .iter()
            .filter(|(_, t)| t.touched)
            .map(|(topic, t)| (topic.clone(), t.used))
            .collect()
    }
}

/// The next step of `t`: its rate since the last raise over [`AHEAD`],
/// within [`MIN_STEP`]..=[`MAX_STEP`].
fn step(t: &Topic, now: Instant) -> u64 {
    let Some((at, used_then)) = t.raised else {
        return t.step;
    };
    let elapsed = now.saturating_duration_since(at).as_secs_f64().max(1.0);
    let per_s = t.used.saturating_sub(used_then) as f64 / elapsed;
    // ok: clamped far below u64::MAX.
    ((per_s * AHEAD.as_secs_f64()).ceil() as u64).clamp(MIN_STEP, MAX_STEP)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raise(r: &mut Reservations, now: Instant) -> Vec<(String, u64)> {
        let due = r.due(now);
        r.written(&due, now);
        due
    }

    #[test]
    fn a_new_topic_waits_for_its_first_reservation() {
        let t0 = Instant::now();
        let mut r = Reservations::new(HashMap::new());
        assert!(r.take("a", 1), "nothing reserved yet");
        assert!(r.low());
        assert_eq!(raise(&mut r, t0), [("a".to_string(), 1 + MIN_STEP)]);
        assert!(r.covers("a", 1 + MIN_STEP));
        assert!(!r.covers("a", 2 + MIN_STEP));
        for seq in 2..=33 {
            assert!(!r.take("a", seq));
        }
        assert!(!r.low(), "32 of 64 left");
        assert!(!r.take("a", 34));
        assert!(r.low(), "half of the step used");
    }

    #[test]
    fn the_file_marks_count_as_used() {
        let mut r = Reservations::new(HashMap::from([("a".to_string(), 500)]));
        assert!(r.covers("a", 500));
        assert!(r.take("a", 501), "a crash may have published up to 500");
        assert!(r.used().contains_key("a"));
        assert!(!r.used().contains_key("b"));
    }

    #[test]
    fn steps_follow_the_rate() {
        let t0 = Instant::now();
        let mut r = Reservations::new(HashMap::new());
        r.take("fast", 1);
        r.take("slow", 1);
        raise(&mut r, t0);
        // 1,000 messages a second for 10 s in "fast", one in "slow".
        let mut seq = 1;
        for _ in 0..10_000 {
            seq += 1;
            r.take("fast", seq);
        }
        r.take("slow", 2);
        let t1 = t0 + Duration::from_secs(10);
        let due = raise(&mut r, t1);
        let fast = due.iter().find(|(t, _)| t == "fast").map(|(_, m)| *m);
        assert_eq!(fast, Some(seq + 60_000), "a minute ahead at the rate");
        assert!(
            due.iter().all(|(t, _)| t != "slow"),
            "slow has room: {due:?}"
        );
        assert!(r.covers("fast", seq + 60_000));
    }

    #[test]
    fn steps_stay_within_bounds() {
        let t0 = Instant::now();
        let mut r = Reservations::new(HashMap::new());
        r.take("a", 1);
        raise(&mut r, t0);
        r.take("a", 10_000_000);
        let due = raise(&mut r, t0 + Duration::from_secs(1));
        assert_eq!(due, [("a".to_string(), 10_000_000 + MAX_STEP)]);
    }

    #[test]
    fn a_failed_commit_leaves_the_reservation_due() {
        let t0 = Instant::now();
        let mut r = Reservations::new(HashMap::new());
        assert!(r.take("a", 1));
        let due = r.due(t0);
        assert_eq!(due.len(), 1);
        // Not written: still due, and the seq not covered.
        assert!(!r.covers("a", 1));
        assert_eq!(r.due(t0), due);
    }
}
