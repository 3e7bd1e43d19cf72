//! The live and backlog streams of one connection (pure: no I/O, no
//! tokio).
//!
//! Two cursors in the outbox share the in-flight window: the live stream
//! above the newest row committed at the CONNACK, the backlog below it
//! (and the ranges the live stream passed over). This part decides how
//! many rows each stream may fetch and where it fetches from; the task
//! does the fetching. A backlog row is marked `"hist":true` on the wire
//! ([`with_hist`]).

use std::collections::VecDeque;

use crate::store::Row;

/// Which stream a row went out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stream {
    /// Rows committed after the CONNACK, newest first when behind.
    Live,
    /// Rows that waited through an outage or were passed over, oldest first.
    Backlog,
}

/// Cursors of the live and backlog streams in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Streams {
    /// Rows in flight at most, both streams together.
    window: usize,
    /// The live stream's share of the window.
    live_cap: usize,
    /// The backlog's share: the rest of the window.
    backlog_cap: usize,
    /// The live stream has sent everything up to here (or passed it over).
    pub(super) live_after: i64,
    /// The last live fetch came back short and nothing was committed since.
    live_dry: bool,
    /// Id ranges `(after, upto]` for the backlog, ascending and disjoint,
    /// all at or below `live_after`.
    backlog: VecDeque<(i64, i64)>,
}

/// The live stream's share of a window: at least one slot each when the
/// share is strictly between 0 and 1 and the window allows it.
fn live_cap(window: usize, live_share: f64) -> usize {
    let share = if live_share.is_finite() {
        live_share.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let cap = (window as f64 * share).round() as usize;
    let cap = cap.min(window);
    if window >= 2 && share > 0.0 && share < 1.0 {
        cap.clamp(1, window - 1)
    } else {
        cap
    }
}

impl Streams {
    /// At a CONNACK: everything up to `committed` is backlog.
    pub(super) fn new(committed: i64, window: usize, live_share: f64) -> Streams {
        let committed = committed.max(0);
        let live_cap = live_cap(window, live_share);
        let mut backlog = VecDeque::new();
        if committed > 0 {
            backlog.push_back((0, committed));
        }
        Streams {
            window,
            live_cap,
            backlog_cap: window - live_cap,
            live_after: committed,
            live_dry: false,
            backlog,
        }
    }

    /// New rows were committed.
    pub(super) fn new_commits(&mut self) {
        self.live_dry = false;
    }

    /// How many rows each stream may fetch now, given the rows in flight
    /// and `room`, the packets that may be handed over.
    pub(super) fn quotas(&self, live_in: usize, backlog_in: usize, room: usize) -> (usize, usize) {
        let free = self.window.saturating_sub(live_in + backlog_in).min(room);
        let has_live = !self.live_dry;
        let has_backlog = !self.backlog.is_empty();
        let mut live = if has_live {
            self.live_cap.saturating_sub(live_in).min(free)
        } else {
            0
        };
        let mut backlog = if has_backlog {
            self.backlog_cap.saturating_sub(backlog_in).min(free - live)
        } else {
            0
        };
        let spare = free - live - backlog;
        if has_live && !has_backlog {
            live += spare;
        } else if has_backlog && !has_live {
            backlog += spare;
        }
        (live, backlog)
    }

    /// Whether the live stream, about to fetch `asked` rows with the newest
    /// committed id at `committed`, may be behind: more rows may wait above
    /// its cursor than its share of the window and than it may send now.
    /// If not, it goes on in order (`fetch_after`), so a momentarily small
    /// quota (the backlog borrowed the window while no live data came) does
    /// not turn live rows into history. If so, it fetches the newest
    /// [`live_probe`](Self::live_probe) rows and [`live_probed`](Self::live_probed)
    /// tells: the id distance only bounds the rows of its lane waiting (the
    /// other lane's rows take ids in the same order).
    pub(super) fn live_behind(&self, committed: i64, asked: usize) -> bool {
        let lag = u64::try_from(committed.saturating_sub(self.live_after)).unwrap_or(0);
        lag > self.live_cap.max(asked) as u64
    }

    /// How many of the newest rows a live stream that may be behind
    /// fetches (`fetch_newest`) before it sends `asked`: one more than may
    /// wait while it keeps up, so that the answer says whether it does.
    /// (At most its share of the window plus one, 51 rows by default, and
    /// only while the ids say "behind"; the rows not sent are fetched
    /// again.)
    pub(super) fn live_probe(&self, asked: usize) -> usize {
        self.live_cap.max(asked) + 1
    }

    /// The live stream, allowed `asked` rows, got the newest
    /// [`live_probe`](Self::live_probe) rows of its lane (oldest first):
    /// returns those it sends. All of them came back: it is behind, sends
    /// the newest `asked` and passes the others over to the backlog. Fewer:
    /// they are every row waiting, and it sends the oldest `asked`, in
    /// order, as `fetch_after` would have returned them.
    pub(super) fn live_probed(&mut self, asked: usize, mut rows: Vec<Row>) -> Vec<Row> {
        if rows.len() >= self.live_probe(asked) {
            let rows = rows.split_off(rows.len() - asked);
            self.live_fetched(asked, &rows, true);
            rows
        } else {
            rows.truncate(asked);
            self.live_fetched(asked, &rows, false);
            rows
        }
    }

    /// The live stream asked for `asked` rows and got `rows` (oldest first),
    /// the newest ones if `newest`.
    pub(super) fn live_fetched(&mut self, asked: usize, rows: &[Row], newest: bool) {
        if rows.len() < asked {
            self.live_dry = true;
        }
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        if newest && rows.len() == asked && first.id > self.live_after + 1 {
            // Possibly more rows between the cursor and the newest ones:
            // the live stream could not keep up; they become backlog.
            self.push_backlog(self.live_after, first.id - 1);
        }
        self.live_after = self.live_after.max(last.id);
    }

    /// Appends `(after, upto]` to the backlog, merged with the last range
    /// when they touch.
    fn push_backlog(&mut self, after: i64, upto: i64) {
        match self.backlog.back_mut() {
            Some(back) if back.1 == after => back.1 = upto,
            _ => self.backlog.push_back((after, upto)),
        }
    }

    /// Rows `first..=last` fetched by `stream` were not handed over: the
    /// backlog takes them (again).
    pub(super) fn give_back(&mut self, stream: Stream, first: i64, last: i64) {
        match stream {
            // Above every backlog range: append.
            Stream::Live => self.push_backlog(first - 1, last),
            // Below the rest of the backlog: prepend.
            Stream::Backlog => self.backlog.push_front((first - 1, last)),
        }
    }

    /// The range the backlog drains next: `fetch_after(after, …)`, keeping
    /// ids `≤ upto`.
    pub(super) fn backlog_next(&self) -> Option<(i64, i64)> {
        self.backlog.front().copied()
    }

    /// The backlog asked for `asked` rows after its cursor and got `rows`;
    /// returns how many of them (from the front) belong to the backlog.
    pub(super) fn backlog_fetched(&mut self, asked: usize, rows: &[Row]) -> usize {
        let Some(front) = self.backlog.front_mut() else {
            return 0;
        };
        let upto = front.1;
        let n = rows.iter().take_while(|r| r.id <= upto).count();
        if let Some(last) = rows[..n].last() {
            front.0 = last.id;
        }
        if n < rows.len() || rows.len() < asked || front.0 >= upto {
            self.backlog.pop_front();
        }
        n
    }
}

/// The payload with `"hist":true` as the first member, when it is a JSON
/// object; anything else unchanged.
pub(super) fn with_hist(payload: Vec<u8>) -> Vec<u8> {
    let Some(open) = payload.iter().position(|b| !b.is_ascii_whitespace()) else {
        return payload;
    };
    if payload[open] != b'{' {
        return payload;
    }
    let rest = &payload[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let field: &[u8] = if empty {
        b"\"hist\":true"
    } else {
        b"\"hist\":true,"
    };
    let mut out = Vec::with_capacity(payload.len() + field.len());
    out.extend_from_slice(&payload[..=open]);
    out.extend_from_slice(field);
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::store::Kind;

    fn row(id: i64) -> Row {
        Row {
            id,
            topic: "t".into(),
            seq: id as u64,
            payload: b"{}".to_vec(),
            qos: 1,
            retain: false,
            kind: Kind::Reading,
            created_at: crate::clock::Timestamp(0),
        }
    }

    fn rows(ids: impl IntoIterator<Item = i64>) -> Vec<Row> {
        ids.into_iter().map(row).collect()
    }

    #[test]
    fn hist_is_injected_into_json_objects_only() {
        assert_eq!(
            with_hist(br#"{"ts":"x","seq":1}"#.to_vec()),
            br#"{"hist":true,"ts":"x","seq":1}"#.to_vec()
        );
        assert_eq!(with_hist(b"{}".to_vec()), br#"{"hist":true}"#.to_vec());
        assert_eq!(
            with_hist(b"  { }".to_vec()),
            br#"  {"hist":true }"#.to_vec()
        );
        assert_eq!(with_hist(b"[1,2]".to_vec()), b"[1,2]".to_vec());
        assert_eq!(with_hist(Vec::new()), Vec::<u8>::new());
        let v: serde_json::Value =
            serde_json::from_slice(&with_hist(br#"{"a":{"b":1}}"#.to_vec())).unwrap();
        assert_eq!(v["hist"], true);
        assert_eq!(v["a"]["b"], 1);
    }

    #[test]
    fn live_share_splits_the_window() {
        assert_eq!(live_cap(100, 0.5), 50);
        assert_eq!(live_cap(100, 0.0), 0);
        assert_eq!(live_cap(100, 1.0), 100);
        assert_eq!(live_cap(100, 0.001), 1);
        assert_eq!(live_cap(100, 0.999), 99);
        assert_eq!(live_cap(1, 0.5), 1);
        assert_eq!(live_cap(1, 0.4), 0);
    }

    #[test]
    fn quotas_share_and_lend() {
        let mut s = Streams::new(1000, 100, 0.5);
        assert_eq!(s.backlog_next(), Some((0, 1000)));
        assert_eq!(s.quotas(0, 0, 100), (50, 50));
        assert_eq!(s.quotas(50, 10, 100), (0, 40));
        assert_eq!(s.quotas(0, 0, 30), (30, 0), "packet ids first to live");
        // Live has nothing: the backlog borrows the whole window.
        s.live_fetched(50, &[], false);
        assert!(s.live_dry);
        assert_eq!(s.quotas(0, 0, 100), (0, 100));
        assert_eq!(s.quotas(0, 70, 100), (0, 30));
        // New rows: live takes its share back as slots free up.
        s.new_commits();
        assert_eq!(s.quotas(0, 100, 100), (0, 0));
        assert_eq!(s.quotas(0, 90, 100), (10, 0));
        // Backlog drained: live may use the whole window.
        s.backlog.clear();
        assert_eq!(s.quotas(0, 0, 100), (100, 0));
        s.live_fetched(100, &rows(1001..=1003), false);
        assert_eq!(s.quotas(0, 0, 100), (0, 0), "nothing to do");
    }

    #[test]
    fn live_only_and_backlog_only_shares() {
        let s = Streams::new(10, 20, 0.0);
        assert_eq!(s.quotas(0, 0, 20), (0, 20));
        let mut s = Streams::new(10, 20, 1.0);
        assert_eq!(s.quotas(0, 0, 20), (20, 0));
        s.live_fetched(20, &[], false);
        assert_eq!(s.quotas(0, 0, 20), (0, 20));
        let mut s = Streams::new(10, 20, 0.0);
        s.backlog.clear();
        assert_eq!(
            s.quotas(0, 0, 20),
            (20, 0),
            "live borrows when the backlog is done"
        );
    }

    #[test]
    fn live_stream_passes_rows_over_to_the_backlog() {
        let mut s = Streams::new(100, 10, 0.5);
        assert!(!s.live_behind(104, 5), "5 waiting: in order");
        assert!(!s.live_behind(103, 2), "3 waiting, share 5: in order");
        assert!(s.live_behind(154, 5));
        // Live asks for the 5 newest: 100 < id < 150 were passed over.
        s.live_fetched(5, &rows(150..=154), true);
        assert_eq!(s.live_after, 154);
        assert_eq!(
            s.backlog,
            VecDeque::from([(0, 149)]),
            "merged with (0, 100]"
        );
        // A short answer: nothing passed over.
        s.live_fetched(5, &rows(155..=156), true);
        assert_eq!(s.live_after, 156);
        assert!(s.live_dry);
        s.new_commits();
        // In order: a full answer passes nothing over.
        s.live_fetched(2, &rows(157..=158), false);
        assert_eq!(s.backlog, VecDeque::from([(0, 149)]));
        s.live_fetched(5, &rows(300..=304), true);
        assert_eq!(s.backlog, VecDeque::from([(0, 149), (158, 299)]));
        // The backlog drains its ranges in order and never beyond them.
        assert_eq!(s.backlog_fetched(5, &rows([1, 2, 3, 4, 5])), 5);
        assert_eq!(s.backlog_next(), Some((5, 149)));
        assert_eq!(s.backlog_fetched(5, &rows([148, 149, 150, 151, 152])), 2);
        assert_eq!(s.backlog_next(), Some((158, 299)));
        assert_eq!(s.backlog_fetched(5, &rows([159, 299])), 2);
        assert_eq!(s.backlog_next(), None);
    }

    #[test]
    fn backlog_range_ends_exactly_at_its_upper_id() {
        let mut s = Streams::new(3, 10, 0.5);
        assert_eq!(s.backlog_fetched(3, &rows([1, 2, 3])), 3);
        assert_eq!(s.backlog_next(), None);
        let mut s = Streams::new(0, 10, 0.5);
        assert_eq!(s.backlog_next(), None);
        assert_eq!(s.backlog_fetched(3, &rows([1])), 0);
    }

    #[test]
    fn nothing_is_sent_twice_within_a_connection() {
        // Simulate the streams against an outbox that grows while both
        // streams run, and check every id is sent exactly once, each
        // stream in increasing order.
        let mut outbox: Vec<i64> = (1..=500).collect();
        let mut s = Streams::new(500, 16, 0.5);
        let mut sent_live = Vec::new();
        let mut sent_backlog = Vec::new();
        let mut next = 501;
        for round in 0..400 {
            // 0–15 new rows per round: sometimes more than live can take.
            for _ in 0..(round * 7 % 16) {
                outbox.push(next);
                next += 1;
            }
            s.new_commits();
            let (live, backlog) = s.quotas(0, 0, 16);
            if live > 0 {
                let newer: Vec<i64> = outbox
                    .iter()
                    .copied()
                    .filter(|&i| i > s.live_after)
                    .collect();
                let newest = s.live_behind(next - 1, live);
                let got = if newest {
                    rows(newer[newer.len().saturating_sub(live)..].to_vec())
                } else {
                    rows(newer.into_iter().take(live).collect::<Vec<_>>())
                };
                s.live_fetched(live, &got, newest);
                sent_live.extend(got.iter().map(|r| r.id));
            }
            if let (true, Some((after, _))) = (backlog > 0, s.backlog_next()) {
                let got = rows(
                    outbox
                        .iter()
                        .copied()
                        .filter(|&i| i > after)
                        .take(backlog)
                        .collect::<Vec<_>>(),
                );
                let n = s.backlog_fetched(backlog, &got);
                sent_backlog.extend(got[..n].iter().map(|r| r.id));
            }
        }
        assert!(sent_live.windows(2).all(|w| w[0] < w[1]));
        assert!(sent_backlog.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<i64> = sent_live.iter().chain(&sent_backlog).copied().collect();
        all.sort();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "an id was sent twice");
        assert_eq!(all, (1..next).collect::<Vec<_>>(), "an id was never sent");
        assert!(
            sent_backlog.iter().any(|&i| i > 500),
            "live passed rows over"
        );
    }

    /// The other lane's rows (Sparkplug) take ids in the same order: the
    /// id distance above the live cursor counts them too. With 30 rows
    /// of the lane waiting among 30 foreign ones, and 5 slots free, the
    /// ids alone say "behind" (60 > 50); the live stream keeps up all the
    /// same (30 ≤ 50) and must send in order, passing nothing over.
    #[test]
    fn foreign_ids_above_the_cursor_do_not_make_live_rows_history() {
        let mut s = Streams::new(1000, 100, 0.5);
        let ours: Vec<i64> = (1001..=1060).filter(|i| i % 2 == 1).collect();
        let (live, _) = s.quotas(45, 50, 100);
        assert_eq!(live, 5);
        assert!(s.live_behind(1060, live), "the ids alone say behind");
        let probe = s.live_probe(live);
        assert_eq!(probe, 51);
        // The newest `probe` rows of the lane: all 30 of them.
        let got = rows(ours[ours.len().saturating_sub(probe)..].to_vec());
        let sent = s.live_probed(live, got);
        assert_eq!(
            sent.iter().map(|r| r.id).collect::<Vec<_>>(),
            [1001, 1003, 1005, 1007, 1009],
            "the oldest, in order"
        );
        assert_eq!(s.live_after, 1009);
        assert_eq!(
            s.backlog,
            VecDeque::from([(0, 1000)]),
            "nothing passed over"
        );
        assert!(!s.live_dry);

        // Really behind: 60 rows of the lane among 60 foreign ones.
        let mut s = Streams::new(1000, 100, 0.5);
        let ours: Vec<i64> = (1001..=1120).filter(|i| i % 2 == 1).collect();
        let got = rows(ours[ours.len() - 51..].to_vec());
        let sent = s.live_probed(5, got);
        assert_eq!(
            sent.iter().map(|r| r.id).collect::<Vec<_>>(),
            [1111, 1113, 1115, 1117, 1119],
            "the newest"
        );
        // The 55 passed over (1001..=1109) are the backlog's, with the
        // foreign ids between them (its fetches skip those).
        assert_eq!(s.backlog, VecDeque::from([(0, 1110)]));
        assert_eq!(s.live_after, 1119);
    }

    /// One connection against an outbox where the other lane's rows
    /// interleave with ours (many more of them, at random), with rows in
    /// flight acknowledged a few at a time, driven as the task drives the
    /// streams (the store model returns only rows of ours). While the live
    /// stream keeps up (checked: never more of ours waiting than its
    /// share), none of ours committed after the CONNACK goes out in the
    /// backlog (`hist`), although the ids said "behind" with more waiting
    /// than asked many times; during a burst it falls behind and passes
    /// rows over; every row of ours goes out exactly once, each stream in
    /// id order.
    #[test]
    fn interleaved_foreign_ids_lose_nothing_and_make_no_needless_history() {
        struct Sim {
            /// Rows waiting: id, and whether it is ours.
            outbox: Vec<(i64, bool)>,
            /// Every id of ours committed.
            ours: Vec<i64>,
            next: i64,
            rng: u64,
            streams: Streams,
            window: usize,
            flight: VecDeque<(i64, Stream)>,
            live: Vec<i64>,
            backlog: Vec<i64>,
            /// The most rows of ours waiting above the live cursor at a
            /// live fetch.
            most_waiting: usize,
            /// Live fetches where the ids said behind and more of ours
            /// waited than were asked: a fetch of the newest `asked`
            /// would have passed rows over while the stream kept up.
            misleading: usize,
        }
        impl Sim {
            fn random(&mut self, n: u64) -> u64 {
                self.rng = self
                    .rng
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (self.rng >> 33) % n
            }
            /// Commits `ours` of our rows and `foreign` others, mixed.
            fn commit(&mut self, mut ours: usize, mut foreign: usize) {
                while ours + foreign > 0 {
                    let mine = foreign == 0
                        || (ours > 0 && self.random((ours + foreign) as u64) < ours as u64);
                    if mine {
                        ours -= 1;
                        self.ours.push(self.next);
                    } else {
                        foreign -= 1;
                    }
                    self.outbox.push((self.next, mine));
                    self.next += 1;
                }
                self.streams.new_commits();
            }
            /// The store: our rows after `after`, oldest first.
            fn ours_after(&self, after: i64) -> Vec<i64> {
                self.outbox
                    .iter()
                    .filter(|(id, mine)| *mine && *id > after)
                    .map(|(id, _)| *id)
                    .collect()
            }
            /// The broker acknowledges the oldest `n` in flight.
            fn ack(&mut self, n: usize) {
                for _ in 0..n.min(self.flight.len()) {
                    if let Some((id, _)) = self.flight.pop_front() {
                        self.outbox.retain(|(i, _)| *i != id);
                    }
                }
            }
            fn in_flight(&self, stream: Stream) -> usize {
                self.flight.iter().filter(|(_, s)| *s == stream).count()
            }
            /// What `task::refill` does.
            fn refill(&mut self) {
                for _ in 0..8 {
                    let (live_in, backlog_in) = (
                        self.in_flight(Stream::Live),
                        self.in_flight(Stream::Backlog),
                    );
                    let room = self.window - self.flight.len();
                    let (live, backlog) = self.streams.quotas(live_in, backlog_in, room);
                    if live == 0 && backlog == 0 {
                        return;
                    }
                    if live > 0 {
                        let after = self.streams.live_after;
                        let ours = self.ours_after(after);
                        let behind = self.streams.live_behind(self.next - 1, live);
                        self.most_waiting = self.most_waiting.max(ours.len());
                        if behind && ours.len() > live && ours.len() <= self.streams.live_cap {
                            self.misleading += 1;
                        }
                        let got = if behind {
                            let probe = self.streams.live_probe(live);
                            let newest = rows(ours[ours.len().saturating_sub(probe)..].to_vec());
                            self.streams.live_probed(live, newest)
                        } else {
                            let got = rows(ours.into_iter().take(live).collect::<Vec<_>>());
                            self.streams.live_fetched(live, &got, false);
                            got
                        };
                        for r in got {
                            self.live.push(r.id);
                            self.flight.push_back((r.id, Stream::Live));
                        }
                    }
                    if let (true, Some((after, _))) = (backlog > 0, self.streams.backlog_next()) {
                        let got = rows(
                            self.ours_after(after)
                                .into_iter()
                                .take(backlog)
                                .collect::<Vec<_>>(),
                        );
                        let n = self.streams.backlog_fetched(backlog, &got);
                        for r in &got[..n] {
                            self.backlog.push(r.id);
                            self.flight.push_back((r.id, Stream::Backlog));
                        }
                    }
                }
            }
        }

        let mut sim = Sim {
            outbox: Vec::new(),
            ours: Vec::new(),
            next: 1,
            rng: 7,
            // Replaced at the CONNACK below.
            streams: Streams::new(0, 16, 0.5),
            window: 16,
            flight: VecDeque::new(),
            live: Vec::new(),
            backlog: Vec::new(),
            most_waiting: 0,
            misleading: 0,
        };
        // What waited through the outage: 4,000 ids, half ours (the
        // backlog keeps its share of the window busy for a while).
        sim.commit(2000, 2000);
        let connack = sim.next - 1;
        sim.streams = Streams::new(connack, sim.window, 0.5);
        // Keeping up: 0–1 of ours a round among 0–14 foreign rows, while
        // the broker acknowledges 0–3 of the rows in flight (the window
        // stays full: the live stream gets a slot or two at a time, fewer
        // than wait at times, yet more than come on average).
        for _ in 0..1500 {
            let ours = sim.random(2) as usize;
            let foreign = sim.random(15) as usize;
            sim.commit(ours, foreign);
            let acked = sim.random(4) as usize;
            sim.ack(acked);
            sim.refill();
        }
        assert!(
            sim.most_waiting <= sim.streams.live_cap,
            "the live stream kept up: {} waited at most",
            sim.most_waiting
        );
        assert!(
            sim.misleading > 0,
            "the ids misled the live stream at times"
        );
        // A few quiet rounds: what waits goes out live before the burst.
        for _ in 0..10 {
            sim.ack(4);
            sim.refill();
        }
        let kept_up = sim.next - 1;
        // A burst the live stream cannot keep up with, then quiet until
        // everything is acknowledged (bounded).
        for round in 0..5000 {
            if round < 40 {
                sim.commit(30, 30);
            }
            sim.ack(4);
            sim.refill();
            if round >= 40 && sim.flight.is_empty() {
                break;
            }
        }
        // (The backlog sends what the live stream passed over after what
        // waited through the outage: only now is all of it sent.)
        let needless: Vec<i64> = sim
            .backlog
            .iter()
            .copied()
            .filter(|&id| id > connack && id <= kept_up)
            .collect();
        assert!(
            needless.is_empty(),
            "rows of ours went out as history while the live stream kept up: {needless:?}"
        );
        assert!(
            sim.backlog.iter().any(|&id| id > kept_up),
            "the burst was passed over to the backlog"
        );
        assert!(sim.live.windows(2).all(|w| w[0] < w[1]));
        assert!(sim.backlog.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<i64> = sim.live.iter().chain(&sim.backlog).copied().collect();
        all.sort();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "an id was sent twice");
        let unsent: Vec<i64> = sim
            .ours
            .iter()
            .copied()
            .filter(|id| !unique.contains(id))
            .collect();
        assert!(unsent.is_empty(), "never sent: {unsent:?}");
    }

    #[test]
    fn hist_leaves_anything_but_an_object_alone() {
        for payload in [&b"  "[..], b"null", b"\"{}\"", b"42", b"not json"] {
            assert_eq!(with_hist(payload.to_vec()), payload.to_vec());
        }
        assert_eq!(
            with_hist(b"\n{\"v\":1}".to_vec()),
            b"\n{\"hist\":true,\"v\":1}".to_vec(),
            "leading whitespace is kept"
        );
    }

    #[test]
    fn a_share_that_is_not_a_number_is_half() {
        assert_eq!(live_cap(10, f64::NAN), 5);
        assert_eq!(live_cap(10, f64::INFINITY), 5);
        assert_eq!(live_cap(10, -1.0), 0);
        assert_eq!(live_cap(10, 2.0), 10);
        assert_eq!(live_cap(0, 0.5), 0);
        assert_eq!(live_cap(2, 0.9), 1, "one slot left for the backlog");
    }

    #[test]
    fn a_fresh_outbox_has_no_backlog() {
        let s = Streams::new(-5, 10, 0.5);
        assert_eq!(s.live_after, 0);
        assert_eq!(s.backlog_next(), None);
        assert_eq!(
            s.quotas(0, 0, 10),
            (10, 0),
            "live lends nothing, borrows all"
        );
    }

    #[test]
    fn rows_not_handed_over_go_back_to_the_backlog() {
        let mut s = Streams::new(10, 10, 0.5);
        s.live_fetched(3, &rows(11..=13), false);
        // Live rows 12..=13 could not be handed over: after every range.
        s.give_back(Stream::Live, 12, 13);
        assert_eq!(s.backlog, VecDeque::from([(0, 10), (11, 13)]));
        // Backlog rows 1..=4 could not be handed over: drained first.
        assert_eq!(s.backlog_fetched(4, &rows(1..=4)), 4);
        s.give_back(Stream::Backlog, 1, 4);
        assert_eq!(s.backlog, VecDeque::from([(0, 4), (4, 10), (11, 13)]));
        assert_eq!(s.backlog_next(), Some((0, 4)));
        // A live give-back touching the last range merges with it.
        s.live_fetched(2, &rows(14..=15), false);
        s.give_back(Stream::Live, 14, 15);
        assert_eq!(s.backlog.back(), Some(&(11, 15)));
    }

    #[test]
    fn a_stream_lends_its_share_and_takes_it_back() {
        let mut s = Streams::new(100, 10, 0.5);
        // Nothing live yet: the backlog may fill the window.
        s.live_fetched(5, &[], false);
        assert_eq!(s.quotas(0, 0, 10), (0, 10));
        // New rows while the backlog holds all slots: nothing free.
        s.new_commits();
        assert_eq!(s.quotas(0, 10, 10), (0, 0));
        // As backlog rows are acknowledged, live gets the slots first.
        assert_eq!(s.quotas(0, 7, 10), (3, 0));
        assert_eq!(s.quotas(0, 4, 10), (5, 1), "live never beyond its share");
    }
}
