//! The memory queue: messages with their ids, not (yet) written.
//!
//! Every message gets its outbox id when the owner thread takes it, and
//! waits here until the broker acknowledges it or its group commits,
//! whichever comes first (write-behind: a message acknowledged in time is
//! never written). While the disk works a message stays here at most one
//! `flush_interval`. While it does not (full, read-only, failing, or never
//! opened) the queue is the outbox: the forwarder is offered its messages
//! like committed rows, a message acknowledged by the broker leaves it
//! like a deleted row, and it keeps to [`MEMORY_BYTES`](super::MEMORY_BYTES)
//! by evicting in the disk bounds' order (oldest readings first, then
//! meters, alarms, work orders), counting what it evicts.
//!
//! Ids only grow and the queue only ever writes its oldest messages to
//! the disk, so every id here is above every id in the file: a read is
//! the file's rows followed by the queue's.
//!
//! A message that leaves the queue without being written (acknowledged,
//! or evicted) still used its topic's `seq`: the seq reservations
//! (`reserve`) keep numbering from repeating after a restart.

use crate::clock::Timestamp;
use std::collections::VecDeque;
use std::time::Instant;

use super::evict::{EVICTION_ORDER, footprint};
use super::{Kind, Lane, OutMessage, Row};

/// An eviction brings the queue down to this share of its bound (in
/// tenths), so it does not run again at every insert.
const EVICT_TO_TENTHS: u64 = 9;

/// Messages waiting for the disk, oldest (lowest id) first.
#[derive(Debug)]
pub(super) struct Queue {
    rows: VecDeque<(i64, OutMessage)>,
    /// When each row was taken, in the same order (a separate deque, so
    /// that the rows stay one slice for the commit).
    taken: VecDeque<Instant>,
    /// Their footprint (as the disk budget counts it).
    bytes: u64,
    /// The bound on `bytes`.
    limit: u64,
}

/// What [`Queue::figures_upto`] counts.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Figures {
    /// Messages.
    pub messages: u64,
    /// Their topic and payload bytes.
    pub bytes: u64,
    /// The oldest creation time among them.
    pub oldest: Option<Timestamp>,
    /// Those of the Sparkplug lane.
    pub sparkplug: u64,
}

/// What an eviction removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dropped {
    /// Readings.
    pub readings: u64,
    /// Meters, alarms and work orders.
    pub other: u64,
}

fn row(id: i64, m: &OutMessage) -> Row {
    Row {
        id,
        topic: m.topic.clone(),
        seq: m.seq,
        payload: m.payload.clone(),
        qos: m.qos,
        retain: m.retain,
        kind: m.kind,
        created_at: m.created_at,
    }
}

fn size(m: &OutMessage) -> u64 {
    footprint(m.topic.len(), m.payload.len())
}

impl Queue {
    /// An empty queue bounded at `limit` bytes.
    pub fn new(limit: u64) -> Queue {
        Queue {
            rows: VecDeque::new(),
            taken: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Nothing waits.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Their footprint.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The bound.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// The id of the oldest message.
    pub fn first_id(&self) -> Option<i64> {
        self.rows.front().map(|(id, _)| *id)
    }

    /// How many of the oldest messages were taken at or before `cutoff`.
    pub fn taken_upto(&self, cutoff: Instant) -> usize {
        self.taken.partition_point(|t| *t <= cutoff)
    }

    /// When the oldest message was taken.
    pub fn first_taken(&self) -> Option<Instant> {
        self.taken.front().copied()
    }

    /// The messages with ids up to `upto`: how many, their topic and
    /// payload bytes, the oldest creation time among them, and how many
    /// are of the Sparkplug lane.
    pub fn figures_upto(&self, upto: i64) -> Figures {
        let end = self.rows.partition_point(|(id, _)| *id <= upto);
        let mut f = Figures {
            messages: end as u64,
            ..Figures::default()
        };
        for (_, m) in self.rows.range(..end) {
            f.bytes += (m.topic.len() + m.payload.len()) as u64;
            f.oldest = Some(f.oldest.map_or(m.created_at, |o| o.min(m.created_at)));
            if Lane::of(&m.topic) == Lane::Sparkplug {
                f.sparkplug += 1;
            }
        }
        f
    }

    /// Appends a message taken at `now`; `id` must be above every id
    /// already queued.
    pub fn push(&mut self, id: i64, m: OutMessage, now: Instant) {
        debug_assert!(self.rows.back().is_none_or(|(last, _)| *last < id));
        self.bytes += size(&m);
        self.rows.push_back((id, m));
        self.taken.push_back(now);
    }

    /// The messages, oldest first, as one slice.
    pub fn as_slice(&mut self) -> &[(i64, OutMessage)] {
        self.rows.make_contiguous()
    }

    /// The messages, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &(i64, OutMessage)> + ExactSizeIterator {
        self.rows.iter()
    }

    /// Removes the `n` oldest (written to the disk).
    pub fn written(&mut self, n: usize) {
        let n = n.min(self.rows.len());
        for (_, m) in self.rows.drain(..n) {
            self.bytes = self.bytes.saturating_sub(size(&m));
        }
        self.taken.drain(..n);
    }

    /// Removes the message `id` (the broker acknowledged it); false when it
    /// is not here.
    pub fn acked(&mut self, id: i64) -> bool {
        let Ok(i) = self.rows.binary_search_by_key(&id, |(id, _)| *id) else {
            return false;
        };
        // Acks come mostly in order: near the front, cheap to remove.
        if let Some((_, m)) = self.rows.remove(i) {
            self.bytes = self.bytes.saturating_sub(size(&m));
        }
        self.taken.remove(i);
        true
    }

    /// Over the bound: evicts the oldest messages of each kind in eviction
    /// order (readings first) until the queue is within nine tenths of it.
    pub fn evict(&mut self) -> Dropped {
        let mut dropped = Dropped::default();
        if self.bytes <= self.limit {
            return dropped;
        }
        let target = self.limit / 10 * EVICT_TO_TENTHS;
        let mut bytes = self.bytes;
        let mut out = vec![false; self.rows.len()];
        for kind in EVICTION_ORDER {
            for (i, (_, m)) in self.rows.iter().enumerate() {
                if bytes <= target {
                    break;
                }
                if m.kind == kind {
                    out[i] = true;
                    bytes = bytes.saturating_sub(size(m));
                    if kind == Kind::Reading {
                        dropped.readings += 1;
                    } else {
                        dropped.other += 1;
                    }
                }
            }
        }
        let rows = std::mem::take(&mut self.rows);
        let taken = std::mem::take(&mut self.taken);
        for (((id, m), at), out) in rows.into_iter().zip(taken).zip(out) {
            if !out {
                self.rows.push_back((id, m));
                self.taken.push_back(at);
            }
        }
        self.bytes = bytes;
        dropped
    }

    /// Up to `limit` messages of `lane` with `after < id <= upto`, oldest
    /// first.
    pub fn after(&self, lane: Lane, after: i64, upto: i64, limit: usize) -> Vec<Row> {
        let start = self.rows.partition_point(|(id, _)| *id <= after);
        self.rows
            .range(start..)
            .take_while(|(id, _)| *id <= upto)
            .filter(|(_, m)| Lane::of(&m.topic) == lane)
            .take(limit)
            .map(|(id, m)| row(*id, m))
            .collect()
    }

    /// Up to `limit` of the newest messages of `lane` with
    /// `after < id <= upto`, oldest first.
    pub fn newest(&self, lane: Lane, after: i64, upto: i64, limit: usize) -> Vec<Row> {
        let start = self.rows.partition_point(|(id, _)| *id <= after);
        let end = self.rows.partition_point(|(id, _)| *id <= upto);
        let mut rows: Vec<Row> = self
            .rows
            .range(start..end.max(start))
            .rev()
            .filter(|(_, m)| Lane::of(&m.topic) == lane)
            .take(limit)
            .map(|(id, m)| row(*id, m))
            .collect();
        rows.reverse();
        rows
    }

    /// Gives every message a new id from `first` on, in order (after the
    /// file turned out to hold ids the queue had used).
    pub fn renumber(&mut self, first: i64) -> i64 {
        let mut id = first;
        for (old, _) in self.rows.iter_mut() {
            *old = id;
            id = id.saturating_add(1);
        }
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn msg(topic: &str, seq: u64, kind: Kind, bytes: usize) -> OutMessage {
        OutMessage {
            topic: topic.into(),
            seq,
            payload: vec![b'x'; bytes],
            qos: 1,
            retain: false,
            kind,
            created_at: SystemTime::now().into(),
        }
    }

    /// At the bound the oldest readings go first; an alarm stays while any
    /// reading can go, and the evictions are counted.
    #[test]
    fn eviction_takes_the_oldest_readings_first() {
        let one = size(&msg("t", 0, Kind::Reading, 935));
        assert_eq!(one, 1000);
        let mut q = Queue::new(10 * one);
        q.push(1, msg("a", 1, Kind::Alarm, 935), Instant::now());
        for i in 2..=11 {
            q.push(i, msg("t", i as u64, Kind::Reading, 935), Instant::now());
        }
        let d = q.evict();
        // 11 000 bytes down to 9 000: two readings.
        assert_eq!(
            d,
            Dropped {
                readings: 2,
                other: 0
            }
        );
        let ids: Vec<i64> = q.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 4, 5, 6, 7, 8, 9, 10, 11]);
        assert_eq!(q.bytes(), 9 * one);
        assert_eq!(q.taken.len(), 9);
    }

    #[test]
    fn with_no_reading_left_the_others_go_oldest_first() {
        let mut q = Queue::new(2000);
        for i in 1..=4 {
            q.push(i, msg("w", i as u64, Kind::WorkOrder, 935), Instant::now());
        }
        let d = q.evict();
        assert_eq!(d.other, 3);
        assert_eq!(q.first_id(), Some(4));
    }

    #[test]
    fn reads_and_acks_by_id() {
        let mut q = Queue::new(1 << 20);
        for i in 10..20 {
            q.push(i, msg("t", i as u64, Kind::Reading, 10), Instant::now());
        }
        let ids = |rows: Vec<Row>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let json = Lane::Json;
        assert_eq!(ids(q.after(json, 0, 12, 100)), [10, 11, 12]);
        assert_eq!(ids(q.after(json, 15, 100, 2)), [16, 17]);
        assert_eq!(ids(q.newest(json, 0, 100, 3)), [17, 18, 19]);
        assert_eq!(ids(q.newest(json, 18, 100, 3)), [19]);
        assert_eq!(ids(q.newest(json, 0, 11, 5)), [10, 11]);
        assert!(q.after(Lane::Sparkplug, 0, 100, 100).is_empty());
        assert!(q.acked(15));
        assert!(!q.acked(15));
        assert!(!q.acked(3));
        assert_eq!(ids(q.after(json, 14, 100, 2)), [16, 17]);
        q.written(3);
        assert_eq!(q.first_id(), Some(13));
        assert_eq!(q.len(), 6);
        assert_eq!(q.taken.len(), 6);
    }

    /// Lanes interleave in one id order; a read of one lane skips the
    /// other's messages and still gives `limit` of its own when it has
    /// them, oldest first.
    #[test]
    fn reads_keep_to_their_lane() {
        let mut q = Queue::new(1 << 20);
        let spb = format!("{}g/DDATA/n", super::super::SPARKPLUG_TOPIC_PREFIX);
        for i in 1..=10 {
            let topic = if i % 2 == 0 { spb.as_str() } else { "data/d" };
            q.push(i, msg(topic, i as u64, Kind::Reading, 10), Instant::now());
        }
        let ids = |rows: Vec<Row>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
        let (json, spb) = (Lane::Json, Lane::Sparkplug);
        assert_eq!(ids(q.after(json, 0, 100, 3)), [1, 3, 5]);
        assert_eq!(ids(q.after(spb, 3, 100, 2)), [4, 6]);
        assert_eq!(ids(q.after(json, 0, 6, 100)), [1, 3, 5]);
        assert_eq!(ids(q.newest(json, 0, 100, 2)), [7, 9]);
        assert_eq!(ids(q.newest(spb, 0, 100, 2)), [8, 10]);
        assert_eq!(ids(q.newest(spb, 0, 7, 10)), [2, 4, 6]);
        assert_eq!(ids(q.newest(json, 8, 100, 10)), [9]);
        assert!(q.newest(spb, 10, 100, 10).is_empty());
        let f = q.figures_upto(7);
        assert_eq!((f.messages, f.sparkplug), (7, 3));
    }
}
