//! The owner thread: takes commands from the handles, groups writes into
//! one transaction per `flush_interval` (or sooner when a group fills),
//! answers reads, and does upkeep when idle.
//!
//! # Groups
//!
//! Inserts and acknowledged deletes wait in memory until the group commits:
//! `flush_interval` after the first of them, at once when a group is full
//! ([`GROUP_ROWS`] rows, the budget's group bytes, or [`DELETE_BATCH`] ids),
//! or when someone calls `flush`. Reads leave out ids whose deletion is
//! waiting, so a deleted row is never fetched again.
//!
//! Named states and history entries wait too, and are written with the
//! *last* chunk of the group (a group larger than one transaction is
//! split): whatever was queued before them is then committed in the same
//! transaction or an earlier one, so after a crash neither is ahead of the
//! outbox.
//!
//! # Failures
//!
//! A failed commit keeps its group in memory and is retried with a growing
//! backoff; `flush` callers get the error. While commits fail, at most
//! [`FAILING_HOLD`] messages and history entries wait in memory; beyond
//! that the thread stops taking commands, so the handles' senders wait
//! (backpressure), and it keeps retrying.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use super::db::Outbox;
use super::evict;
use super::{HistoryEntry, OutMessage, Row, Stats, StoreError};

/// Rows per group transaction, at most.
pub(super) const GROUP_ROWS: usize = 5_000;

/// Acknowledged ids waiting for their deletion; more start a commit.
pub(super) const DELETE_BATCH: usize = 20_000;

/// Upkeep (bounds by age, vacuum, checkpoint, eviction log) runs this
/// often when idle.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed upkeep, wait this long before the next.
const UPKEEP_BACKOFF: Duration = Duration::from_secs(30);

/// First and longest wait before retrying a failed commit.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// While commits fail, at most this many messages wait in memory.
pub(super) const FAILING_HOLD: usize = 4 * GROUP_ROWS;

/// Commit attempts at shutdown before giving up on what is queued.
const CLOSE_ATTEMPTS: u32 = 3;

/// A reply to the handle that asked.
pub(super) type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// What a handle asks of the owner thread.
pub(super) enum Command {
    /// Queue for the next group commit. The permit holds the messages'
    /// bytes against the handle's queue budget; it is released once they
    /// are in the group.
    Insert(Vec<OutMessage>, OwnedSemaphorePermit),
    /// Reply once everything queued before is committed.
    Flush(Reply<()>),
    /// Rows after an id, oldest first.
    FetchAfter {
        after: i64,
        limit: usize,
        reply: Reply<Vec<Row>>,
    },
    /// The newest rows after an id, oldest first.
    FetchNewest {
        after: i64,
        limit: usize,
        reply: Reply<Vec<Row>>,
    },
    /// Acknowledged rows; the reply comes once fetches leave them out.
    Delete {
        ids: Vec<i64>,
        reply: oneshot::Sender<()>,
    },
    /// The figures.
    Stats(Reply<Stats>),
    /// The last seq per topic.
    TopicSeqs(Reply<HashMap<String, u64>>),
    /// Write a named state with the next group (the latest value wins).
    SaveState { key: String, value: Vec<u8> },
    /// The last committed value of a named state.
    LoadState {
        key: String,
        reply: Reply<Option<Vec<u8>>>,
    },
    /// Write history entries with the next group.
    Record(Vec<HistoryEntry>),
    /// Append to the config log now (its own small transaction).
    RecordConfig {
        hash: String,
        summary: String,
        reply: Reply<()>,
    },
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Insert(m, _) => write!(f, "Insert({} messages)", m.len()),
            Command::Flush(_) => f.write_str("Flush"),
            Command::FetchAfter { after, limit, .. } => write!(f, "FetchAfter({after}, {limit})"),
            Command::FetchNewest { after, limit, .. } => {
                write!(f, "FetchNewest({after}, {limit})")
            }
            Command::Delete { ids, .. } => write!(f, "Delete({} ids)", ids.len()),
            Command::Stats(_) => f.write_str("Stats"),
            Command::TopicSeqs(_) => f.write_str("TopicSeqs"),
            Command::SaveState { key, value } => {
                write!(f, "SaveState({key}, {} bytes)", value.len())
            }
            Command::LoadState { key, .. } => write!(f, "LoadState({key})"),
            Command::Record(entries) => write!(f, "Record({} entries)", entries.len()),
            Command::RecordConfig { hash, .. } => write!(f, "RecordConfig({hash})"),
        }
    }
}

/// Runs the owner thread until the guard closes it or every handle is
/// gone; then commits what is queued, checkpoints and closes the file.
pub(super) fn run(
    db: Outbox,
    rt: tokio::runtime::Runtime,
    mut rx: mpsc::Receiver<Command>,
    mut close: oneshot::Receiver<()>,
    committed: watch::Sender<i64>,
    flush_interval: Duration,
) -> Result<(), StoreError> {
    let now = Instant::now();
    let mut owner = Owner {
        group_bytes: db.budget().group_bytes,
        max_message_bytes: db.budget().max_message_bytes,
        db,
        committed,
        flush_interval,
        pending: Vec::new(),
        pending_bytes: 0,
        deletes: BTreeSet::new(),
        states: BTreeMap::new(),
        history: Vec::new(),
        since: None,
        waiters: Vec::new(),
        failing: None,
        more: true,
        next_upkeep: now,
    };
    rt.block_on(async {
        let mut closing = false;
        loop {
            let deadline = owner.deadline(Instant::now());
            let accepting = !owner.holding();
            if closing && !accepting {
                // Commits fail and memory is full: stop here rather than
                // wait forever; shutdown makes its last attempts.
                break;
            }
            tokio::select! {
                biased;
                // Resolves when the guard closes (or is dropped).
                _ = &mut close, if !closing => {
                    closing = true;
                    // Senders now get `Closed`; what is buffered is still
                    // received below.
                    rx.close();
                }
                cmd = rx.recv(), if accepting => match cmd {
                    Some(cmd) => {
                        owner.handle(cmd);
                        // Take whatever else is queued, so one commit
                        // covers it.
                        while !owner.full() && !owner.holding() {
                            match rx.try_recv() {
                                Ok(cmd) => owner.handle(cmd),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                () = tokio::time::sleep_until(deadline.into()) => {}
            }
            owner.tick(Instant::now());
        }
    });
    owner.shutdown()
}

/// The state of a failing commit.
#[derive(Debug, Clone, Copy)]
struct Failing {
    retry_at: Instant,
    backoff: Duration,
}

struct Owner {
    db: Outbox,
    committed: watch::Sender<i64>,
    flush_interval: Duration,
    group_bytes: u64,
    max_message_bytes: u64,
    /// Messages of the next group, in arrival order.
    pending: Vec<OutMessage>,
    /// Their estimated footprint.
    pending_bytes: u64,
    /// Acknowledged ids whose deletion is not committed yet (ordered, so
    /// the oldest go first and fetches can skip them cheaply).
    deletes: BTreeSet<i64>,
    /// Named states to write with the last chunk of the next group, so a
    /// state is never committed ahead of the messages queued before it.
    states: BTreeMap<String, Vec<u8>>,
    /// History entries to write with the last chunk of the next group (for
    /// the same reason as `states`), in arrival order.
    history: Vec<HistoryEntry>,
    /// When the oldest waiting insert or delete arrived.
    since: Option<Instant>,
    /// `flush` callers waiting for the next commit.
    waiters: Vec<Reply<()>>,
    failing: Option<Failing>,
    /// Upkeep has more to do right away.
    more: bool,
    next_upkeep: Instant,
}

impl Owner {
    fn has_writes(&self) -> bool {
        !self.pending.is_empty()
            || !self.deletes.is_empty()
            || !self.states.is_empty()
            || !self.history.is_empty()
    }

    /// A group is full: commit without waiting for the interval.
    fn full(&self) -> bool {
        !self.waiters.is_empty()
            || self.pending.len() >= GROUP_ROWS
            || self.pending_bytes >= self.group_bytes
            || self.deletes.len() >= DELETE_BATCH
            || self.history.len() >= GROUP_ROWS
    }

    /// Commits fail and no more messages (or history entries) fit in
    /// memory.
    fn holding(&self) -> bool {
        self.failing.is_some() && self.pending.len() + self.history.len() >= FAILING_HOLD
    }

    fn deadline(&self, now: Instant) -> Instant {
        if self.has_writes() {
            let due = self.since.map_or(now, |t| t + self.flush_interval);
            match self.failing {
                Some(f) => due.max(f.retry_at),
                None => due,
            }
        } else if self.more {
            now
        } else {
            self.next_upkeep
        }
    }

    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Insert(messages, held) => {
                // In the group from here on: its bytes no longer count
                // against the queue.
                drop(held);
                for m in messages {
                    let bytes = evict::footprint(m.topic.len(), m.payload.len());
                    if bytes > self.max_message_bytes {
                        self.db.reject(&m);
                        continue;
                    }
                    self.pending_bytes += bytes;
                    self.pending.push(m);
                }
                if self.has_writes() && self.since.is_none() {
                    self.since = Some(now);
                }
            }
            Command::Flush(reply) => {
                if self.has_writes() {
                    self.waiters.push(reply);
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::FetchAfter {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.db.fetch_after(after, limit, &self.deletes));
            }
            Command::FetchNewest {
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.db.fetch_newest(after, limit, &self.deletes));
            }
            Command::Delete { ids, reply } => {
                self.deletes.extend(ids);
                if self.has_writes() && self.since.is_none() {
                    self.since = Some(now);
                }
                let _ = reply.send(());
            }
            Command::Stats(reply) => {
                let _ = reply.send(self.db.stats());
            }
            Command::TopicSeqs(reply) => {
                let _ = reply.send(self.db.topic_seqs());
            }
            Command::SaveState { key, value } => {
                self.states.insert(key, value);
                if self.since.is_none() {
                    self.since = Some(now);
                }
            }
            Command::RecordConfig {
                hash,
                summary,
                reply,
            } => {
                let _ = reply.send(self.db.record_config(&hash, &summary));
            }
            Command::Record(entries) => {
                self.history.extend(entries);
                if self.since.is_none() {
                    self.since = Some(now);
                }
            }
            Command::LoadState { key, reply } => {
                // A value not yet committed is the newest one.
                let queued = self.states.get(&key).cloned();
                let _ = reply.send(match queued {
                    Some(v) => Ok(Some(v)),
                    None => self.db.load_state(&key),
                });
            }
        }
    }

    fn tick(&mut self, now: Instant) {
        if self.has_writes() {
            let retry_ok = self.failing.is_none_or(|f| now >= f.retry_at);
            let interval_over = self.since.is_none_or(|t| now >= t + self.flush_interval);
            // A flush asks for an attempt now, even while backing off.
            if !self.waiters.is_empty() || (retry_ok && (self.full() || interval_over)) {
                self.commit_all();
            }
        } else if self.more || now >= self.next_upkeep {
            self.upkeep(now);
        }
    }

    /// How many of the pending messages go into the next transaction,
    /// given the bytes left in the group after its deletes.
    fn chunk_len(&self, budget: u64, at_least_one: bool) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for m in self.pending.iter().take(GROUP_ROWS) {
            bytes += evict::footprint(m.topic.len(), m.payload.len());
            if bytes > budget && (n > 0 || !at_least_one) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Commits everything waiting, one group transaction at a time. A
    /// deletion rewrites the pages of the rows it removes, so deletes count
    /// against a group's bytes like inserts (at the average row size).
    fn commit_all(&mut self) {
        while self.has_writes() {
            let avg = self.db.avg_row_bytes();
            let max_deletes = (self.group_bytes / avg).max(1) as usize;
            let deletes: Vec<i64> = self.deletes.iter().take(max_deletes).copied().collect();
            let left = self.group_bytes.saturating_sub(deletes.len() as u64 * avg);
            let n = self.chunk_len(left, deletes.is_empty());
            // States and history ride with the last chunk of what is queued.
            let last_chunk = n == self.pending.len();
            let states: Vec<(String, Vec<u8>)> = if last_chunk {
                self.states
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            } else {
                Vec::new()
            };
            let history = if last_chunk { &self.history[..] } else { &[] };
            let recorded = history.len();
            match self
                .db
                .commit(&self.pending[..n], &deletes, &states, history)
            {
                Ok(c) => {
                    let bytes: u64 = self.pending[..n]
                        .iter()
                        .map(|m| evict::footprint(m.topic.len(), m.payload.len()))
                        .sum();
                    self.pending_bytes = self.pending_bytes.saturating_sub(bytes);
                    self.pending.drain(..n);
                    for id in &deletes {
                        self.deletes.remove(id);
                    }
                    for (key, value) in &states {
                        // A newer value queued meanwhile stays queued.
                        if self.states.get(key) == Some(value) {
                            self.states.remove(key);
                        }
                    }
                    // Nothing is queued during a commit: these are the
                    // entries just written.
                    self.history.drain(..recorded);
                    if c.inserted > 0 {
                        // The forwarder waits on this.
                        self.committed.send_replace(c.last_id);
                    }
                    self.more |= c.more;
                    self.failing = None;
                }
                Err(e) => {
                    let backoff = self
                        .failing
                        .map_or(RETRY_MIN, |f| (f.backoff * 2).min(RETRY_MAX));
                    self.failing = Some(Failing {
                        retry_at: Instant::now() + backoff,
                        backoff,
                    });
                    for w in self.waiters.drain(..) {
                        let _ = w.send(Err(e.clone()));
                    }
                    return;
                }
            }
        }
        self.since = None;
        self.pending_bytes = 0;
        for w in self.waiters.drain(..) {
            let _ = w.send(Ok(()));
        }
    }

    fn upkeep(&mut self, now: Instant) {
        match self.db.maintain(now) {
            Ok(more) => {
                self.more = more;
                self.next_upkeep = now + UPKEEP_INTERVAL;
            }
            Err(_) => {
                // Logged where it failed; do not repeat it every second.
                self.more = false;
                self.next_upkeep = now + UPKEEP_BACKOFF;
            }
        }
    }

    /// Commits what is queued (a few attempts), then closes the file.
    fn shutdown(mut self) -> Result<(), StoreError> {
        for _ in 0..CLOSE_ATTEMPTS {
            if !self.has_writes() {
                break;
            }
            self.commit_all();
        }
        let lost = self.pending.len();
        let lost_history = self.history.len();
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(StoreError::Closed));
        }
        let closed = self.db.close();
        if lost > 0 || lost_history > 0 {
            let e = StoreError::Sqlite(format!(
                "{lost} queued messages and {lost_history} history entries \
                 could not be committed before closing"
            ));
            tracing::error!(error = %e, "outbox closed with messages lost");
            return Err(e);
        }
        closed
    }
}
