//! The owner thread: takes commands from the handles, groups writes into
//! one transaction per `flush_interval` (or sooner when a group fills),
//! answers reads, and does upkeep when idle.
//!
//! # Groups
//!
//! A message taken is offered to the forwarder at once, unless it must be
//! committed first (below), and waits in memory (`held`) until the broker
//! acknowledges it (then it is dropped, never written) or it is due:
//! `flush_interval` after it was taken ([`OUTAGE_GROUP`] at least while the
//! broker is down). A commit writes the oldest messages up to the last one
//! due; at once when a group is full ([`GROUP_ROWS`] rows or the budget's
//! group bytes, more while the broker is down), or when someone calls
//! `flush`, everything. Acknowledged deletes of written rows wait up to
//! [`DELETE_LAG`] (or [`DELETE_BATCH`] ids). Reads leave out ids whose
//! deletion is waiting, so a deleted row is never fetched again.
//!
//! A message that is not a reading (an alarm change, a work order, a
//! meter), or whose seq is above its topic's reservation (`reserve`), is
//! *held*: it and everything taken after it are offered only after the
//! commit that writes it (or raises the reservation), made as soon as the
//! queued commands are taken.
//!
//! Named states, history entries and CMMS deliveries wait too, and are
//! written with the *last* chunk of the commit (a commit larger than one
//! transaction is split): every message held before them is then
//! committed in the same transaction or an earlier one, so after a crash
//! none is ahead of the outbox. Readings may stay in memory: no state is
//! made from them. Seq reservations ride with the last chunk too.
//!
//! A connector's command that writes (`sinks`) commits the open group
//! first, then its own transaction, before it replies.
//!
//! # Ids
//!
//! The thread gives every message its outbox id when it takes it (the
//! next above every id given before, in this process or in the file), so
//! a message keeps its id from the memory queue to the file.
//!
//! # Failures: degraded mode
//!
//! A failed commit (after the disk-full evictions of `db`) keeps its group
//! in memory and the store becomes *degraded*: from then on every message
//! it takes is offered to the forwarder at once from the memory queue
//! (`held`), the committed id the forwarder watches is the newest offered
//! one, and a message the broker acknowledges is dropped from memory like
//! a deleted row. The thread never stops taking commands, whatever the
//! disk does, so the pipeline never waits on it: the memory queue keeps to
//! its bound by evicting (readings first, counted). The disk is retried
//! with a growing backoff ([`RETRY_MIN`]..[`RETRY_MAX`]); once a commit
//! (and the write of the id and seq marks) succeeds, what memory holds is
//! on disk and the store is ok again. `flush` callers get the error while
//! it lasts. Failed retries are not logged one by one: a `store degraded`
//! line says how it stands at most once a minute.
//!
//! A store whose file cannot be opened at start (a full, read-only or
//! failing disk) starts degraded with no file and tries to open it again
//! ([`REOPEN_MIN`]..[`REOPEN_MAX`]), holding the lock if it got it. Its
//! ids go on from the file's last id if the file can at least be read,
//! else from a base no file reaches by counting.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot, watch};

use super::db::{Marks, Opened, Outbox};
use super::evict::{self, Budget};
use super::fault::{self, DiskFault};
use super::held::Queue;
use super::inspect::Inspector;
use super::lock::InstanceLock;
use super::reserve::Reservations;
use super::sinks::{self, Answered, Delivery, SinkCommand};
use super::{
    BROKER_DOWN, Degraded, HistoryEntry, Kind, Lane, OutMessage, Row, Stats, StoreError,
    StoreIdentity, StoreStart,
};
use crate::clock::Clock;
use crate::config::StoreConfig;
use crate::events::{StoreDegraded, StoreRecovered};

/// Rows per group transaction, at most.
pub(super) const GROUP_ROWS: usize = 5_000;

/// Acknowledged ids waiting for their deletion; more start a commit.
pub(super) const DELETE_BATCH: usize = 20_000;

/// While the broker is down, groups are at least this far apart (and not
/// cut short by [`GROUP_ROWS`]): nothing can be delivered, so an outage
/// costs at most four commits a second whatever the rate, and does not
/// wear an SD card faster than running does.
pub(super) const OUTAGE_GROUP: Duration = Duration::from_millis(250);

/// An acknowledged row's deletion waits at most this long for a commit.
/// Deleting late costs nothing but a duplicate after a crash (delivery is
/// at least once), so deletions wait for a commit made anyway.
pub(super) const DELETE_LAG: Duration = Duration::from_secs(1);

/// A seq reservation that is due (a topic used half of its step) waits at
/// most this long for a commit made anyway: half a step is about 30 s of
/// the topic's rate.
const RESERVE_LAG: Duration = Duration::from_secs(1);

/// Upkeep (bounds by age, vacuum, checkpoint, eviction log) runs this
/// often when idle.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

/// After a failed upkeep, wait this long before the next.
const UPKEEP_BACKOFF: Duration = Duration::from_secs(30);

/// First and longest wait before retrying a failed commit.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// First and longest wait before trying again to open a file that could
/// not be opened.
const REOPEN_MIN: Duration = Duration::from_secs(1);
const REOPEN_MAX: Duration = Duration::from_secs(30);

/// At most one `store degraded` line per this interval.
const HEALTH_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// While the disk fails, at most this many history entries wait in memory
/// (the oldest go first); they are small and rare, but not bounded else.
pub(super) const HISTORY_HOLD: usize = 4 * GROUP_ROWS;

/// While the disk fails, at most this many CMMS deliveries wait in memory
/// (the oldest meters go first), as many as history entries.
pub(super) const DELIVERIES_HOLD: usize = HISTORY_HOLD;

/// At most one line per this interval about deliveries dropped from
/// memory.
const DROPPED_LOG_INTERVAL: Duration = Duration::from_secs(60);

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
    /// A pipeline step, taken whole so that one transaction commits it:
    /// messages (as `Insert`), then history, then named states, then the
    /// CMMS deliveries.
    Step {
        messages: Vec<OutMessage>,
        held: OwnedSemaphorePermit,
        history: Vec<HistoryEntry>,
        states: Vec<(String, Vec<u8>)>,
        deliveries: Vec<Delivery>,
    },
    /// CMMS deliveries to write with the next group (the bridge's).
    Deliveries(Vec<Delivery>),
    /// A connector's question or answer about its queue (see `sinks`).
    Sink(SinkCommand),
    /// Reply once everything queued before is committed.
    Flush(Reply<()>),
    /// Rows of a lane after an id, oldest first.
    FetchAfter {
        lane: Lane,
        after: i64,
        limit: usize,
        reply: Reply<Vec<Row>>,
    },
    /// The newest rows of a lane after an id, oldest first.
    FetchNewest {
        lane: Lane,
        after: i64,
        limit: usize,
        reply: Reply<Vec<Row>>,
    },
    /// Acknowledged rows: fetches after this leave them out.
    Delete { ids: Vec<i64> },
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
    /// Tests: set the file's page cap (see `Outbox::cap_pages`), to make
    /// commits meet a real `SQLITE_FULL`.
    #[cfg(test)]
    CapPages(Option<i64>, oneshot::Sender<()>),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Insert(m, _) => write!(f, "Insert({} messages)", m.len()),
            Command::Step {
                messages,
                history,
                states,
                deliveries,
                ..
            } => write!(
                f,
                "Step({} messages, {} history, {} states, {} deliveries)",
                messages.len(),
                history.len(),
                states.len(),
                deliveries.len()
            ),
            Command::Deliveries(d) => write!(f, "Deliveries({})", d.len()),
            Command::Sink(cmd) => write!(f, "{cmd:?}"),
            Command::Flush(_) => f.write_str("Flush"),
            Command::FetchAfter {
                lane, after, limit, ..
            } => write!(f, "FetchAfter({lane:?}, {after}, {limit})"),
            Command::FetchNewest {
                lane, after, limit, ..
            } => write!(f, "FetchNewest({lane:?}, {after}, {limit})"),
            Command::Delete { ids, .. } => write!(f, "Delete({} ids)", ids.len()),
            Command::Stats(_) => f.write_str("Stats"),
            Command::TopicSeqs(_) => f.write_str("TopicSeqs"),
            Command::SaveState { key, value } => {
                write!(f, "SaveState({key}, {} bytes)", value.len())
            }
            Command::LoadState { key, .. } => write!(f, "LoadState({key})"),
            Command::Record(entries) => write!(f, "Record({} entries)", entries.len()),
            Command::RecordConfig { hash, .. } => write!(f, "RecordConfig({hash})"),
            #[cfg(test)]
            Command::CapPages(pages, _) => write!(f, "CapPages({pages:?})"),
        }
    }
}

/// How the store starts: its file open, or not (yet).
pub(super) struct Start {
    config: StoreConfig,
    /// The memory queue's bound.
    memory_bytes: u64,
    db: Option<Outbox>,
    /// Held while the file cannot be opened.
    lock: Option<InstanceLock>,
    /// Why the file could not be opened.
    error: Option<StoreError>,
    /// The newest id in use: the file's, or where a store without its
    /// file goes on from.
    last_id: i64,
    /// The newest sink delivery id in the file (0 without one).
    sink_last: i64,
    /// The last seq per topic, read from a file that cannot be written.
    seqs: HashMap<String, u64>,
    /// The timeline: the file's, or resumed from what can be read of it.
    clock: Clock,
    /// This run's identity: the file's, or a new one when it cannot be
    /// opened (the messages held in memory carry it to the end of the
    /// run, even once the file opens).
    identity: StoreIdentity,
}

/// Ids of a store that could read nothing of its file start here, far
/// above what counting from 1 reaches, plus the wall clock in ms (scaled)
/// so that two such starts do not reuse each other's ids either.
const DETACHED_BASE: i64 = 1 << 61;

impl Start {
    /// Opens the file, or prepares to run without it. An error only when
    /// the store must not be used ([`StoreError::Refused`]).
    pub fn attempt(config: &StoreConfig, memory_bytes: u64) -> Result<Start, StoreError> {
        match Outbox::attempt(config, None)? {
            Opened::Ready(db) => Ok(Start {
                config: config.clone(),
                memory_bytes,
                last_id: db.last_id(),
                sink_last: db.sink_last(),
                clock: *db.clock(),
                identity: db.identity().clone(),
                db: Some(*db),
                lock: None,
                error: None,
                seqs: HashMap::new(),
            }),
            Opened::Waiting(lock, error) => {
                let (last_id, seqs) = resume_point(config);
                // Numbers may go on from what the file shows, yet what it
                // last committed is unknown: a new identity tells any
                // consumer to start afresh.
                let identity = StoreIdentity {
                    id: ulid::Ulid::generate().to_string(),
                    start: StoreStart::Renewed {
                        reason: format!(
                            "the store file cannot be used ({error}): messages are held in memory"
                        ),
                    },
                };
                Ok(Start {
                    config: config.clone(),
                    memory_bytes,
                    db: None,
                    lock,
                    error: Some(error),
                    last_id,
                    sink_last: 0,
                    seqs,
                    clock: resume_clock(config),
                    identity,
                })
            }
        }
    }

    /// The newest id in use.
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// The newest sink delivery id in the file.
    pub fn sink_last(&self) -> i64 {
        self.sink_last
    }

    /// The timeline the store runs on.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// This run's identity.
    pub fn identity(&self) -> &StoreIdentity {
        &self.identity
    }
}

/// The timeline of a store whose file cannot be opened: resumed from the
/// anchor the file holds if it can be read, else a new one.
fn resume_clock(config: &StoreConfig) -> Clock {
    let anchor = Inspector::open(&config.path)
        .or_else(|_| Inspector::open_snapshot(&config.path))
        .ok()
        .and_then(|i| i.anchor().ok().flatten());
    Clock::resume(anchor.as_ref()).0
}

/// Where a store that cannot write its file goes on numbering: from the
/// file's last id and seqs when it can at least be read (as a reader, or
/// as it stands on disk when there is no WAL: the lock is ours, so nobody
/// writes it); from the start when there is no file; else from
/// [`DETACHED_BASE`] (and the seqs start again: the messages then carry
/// numbers a consumer has seen, which only a new store identity can tell
/// apart).
fn resume_point(config: &StoreConfig) -> (i64, HashMap<String, u64>) {
    match std::fs::metadata(&config.path) {
        // No store file (nothing, or something else in its place): no id
        // is used yet.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (0, HashMap::new()),
        Ok(m) if !m.is_file() => return (0, HashMap::new()),
        _ => {}
    }
    let read = Inspector::open(&config.path)
        .or_else(|_| Inspector::open_snapshot(&config.path))
        .and_then(|i| i.resume_point());
    match read {
        Ok(point) => point,
        Err(e) => {
            let ms = super::db::to_ms(SystemTime::now()).clamp(0, 1 << 44);
            tracing::warn!(error = %e,
                "the outbox file cannot be read either: numbering messages apart from it until it opens");
            (DETACHED_BASE + (ms << 10), HashMap::new())
        }
    }
}

/// Runs `f` with logging off in this thread: the failures of an attempt
/// made while the store is degraded are summed up by the once-a-minute
/// line instead.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), f)
}

/// What the owner thread tells the handles, without being asked.
pub(super) struct Watches {
    /// The newest outbox id the forwarder may publish.
    pub committed: watch::Sender<i64>,
    /// The newest sink delivery id committed.
    pub deliveries: watch::Sender<i64>,
}

/// Runs the owner thread until the guard closes it or every handle is
/// gone; then commits what is queued, checkpoints and closes the file.
pub(super) fn run(
    start: Start,
    rt: tokio::runtime::Runtime,
    mut rx: mpsc::Receiver<Command>,
    mut close: oneshot::Receiver<()>,
    watches: Watches,
    broker: Arc<AtomicU8>,
) -> Result<(), StoreError> {
    let mut owner = Owner::new(start, watches, broker);
    rt.block_on(async {
        let mut closing = false;
        loop {
            let deadline = owner.deadline(Instant::now());
            tokio::select! {
                biased;
                // Resolves when the guard closes (or is dropped).
                _ = &mut close, if !closing => {
                    closing = true;
                    // Senders now get `Closed`; what is buffered is still
                    // received below.
                    rx.close();
                }
                // Always taken, whatever the disk does: the pipeline never
                // waits on a failing disk (the memory queue is bounded by
                // eviction instead).
                cmd = rx.recv() => match cmd {
                    Some(cmd) => {
                        owner.handle(cmd);
                        // Take whatever else is queued, so one commit
                        // covers it.
                        while !owner.full() {
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

/// Why and since when the store is degraded.
#[derive(Debug, Clone)]
struct Fault {
    fault: DiskFault,
    reason: String,
    since_wall: SystemTime,
    since: Instant,
    /// Held messages written to the disk since it started.
    written: u64,
}

struct Owner {
    /// The file; `None` while it cannot be opened.
    db: Option<Outbox>,
    /// The timeline rows are stamped with (the handle's).
    clock: Clock,
    /// This run's identity (the handle's).
    identity: StoreIdentity,
    /// The store's lock while the file is not open (the outbox holds it
    /// once it is).
    lock: Option<InstanceLock>,
    config: StoreConfig,
    committed: watch::Sender<i64>,
    /// The newest sink delivery id committed (the connectors watch it).
    delivered: watch::Sender<i64>,
    flush_interval: Duration,
    group_bytes: u64,
    max_message_bytes: u64,
    /// Messages not yet in the file, with their ids, offered to the
    /// forwarder (up to `hold`) and written if not acknowledged by their
    /// group commit; while degraded, the memory queue.
    pending: Queue,
    /// The id the next message gets.
    next_id: i64,
    /// The forwarder may read ids up to this (the committed watch).
    offered: i64,
    /// The lowest id that must be committed before it is offered (an
    /// alarm, work-order or meter message, or a seq above its topic's
    /// reservation); everything from it on waits for the next commit,
    /// which is made at once. `None` while degraded.
    hold: Option<i64>,
    /// Seq reservations per topic.
    reservations: Reservations,
    /// A reservation is due by then.
    reserve_at: Option<Instant>,
    /// What the forwarder says of the broker ([`BROKER_DOWN`]…).
    broker: Arc<AtomicU8>,
    /// Messages acknowledged before they were written, since start.
    unwritten: u64,
    /// Closing: every message still in memory is written.
    closing: bool,
    /// Acknowledged ids whose deletion is not committed yet (ordered, so
    /// the oldest go first and fetches can skip them cheaply).
    deletes: BTreeSet<i64>,
    /// Named states to write with the last chunk of the next group, so a
    /// state is never committed ahead of the messages queued before it.
    states: BTreeMap<String, Vec<u8>>,
    /// History entries to write with the last chunk of the next group (for
    /// the same reason as `states`), in arrival order.
    history: Vec<HistoryEntry>,
    /// CMMS deliveries to write with the last chunk of the next group
    /// (with the messages they copy), in arrival order.
    deliveries: Vec<Delivery>,
    /// When the oldest waiting state, history entry or delivery arrived.
    since: Option<Instant>,
    /// When the oldest waiting deletion arrived.
    deletes_since: Option<Instant>,
    /// `flush` callers waiting for the next commit.
    waiters: Vec<Reply<()>>,
    failing: Option<Failing>,
    /// Upkeep has more to do right away.
    more: bool,
    next_upkeep: Instant,
    /// Set while the disk cannot take the outbox.
    degraded: Option<Fault>,
    /// The next attempt at opening the file, and the wait after it.
    reopen_at: Instant,
    reopen_backoff: Duration,
    /// The last seq per topic when the file is not open.
    seqs: HashMap<String, u64>,
    /// Ids renumbered after a file turned out to hold them: acks of these
    /// are ignored (they named the messages' old ids).
    stale: Option<(i64, i64)>,
    /// Evicted from memory since start: readings, others.
    evicted: (u64, u64),
    /// Refused for their size while the file was not open.
    rejected: u64,
    /// History entries dropped at [`HISTORY_HOLD`].
    history_dropped: u64,
    /// Deliveries dropped at [`DELIVERIES_HOLD`], and their log line.
    deliveries_dropped: u64,
    deliveries_log: evict::RateLimited,
    /// When the next health line may be logged, and whether the last one
    /// said degraded.
    next_log: Instant,
    logged_degraded: bool,
}

impl Owner {
    fn new(mut start: Start, watches: Watches, broker: Arc<AtomicU8>) -> Owner {
        let now = Instant::now();
        let marks = match &mut start.db {
            Some(db) => db.topic_seqs().unwrap_or_else(|_| start.seqs.clone()),
            None => start.seqs.clone(),
        };
        let config = start.config;
        let flush_interval = config.flush_interval.min(super::MAX_FLUSH_INTERVAL);
        let budget = match &start.db {
            Some(db) => *db.budget(),
            None => Budget::new(config.max_bytes, 4096),
        };
        let mut owner = Owner {
            group_bytes: budget.group_bytes,
            max_message_bytes: budget.max_message_bytes,
            db: start.db,
            lock: start.lock,
            config,
            committed: watches.committed,
            delivered: watches.deliveries,
            flush_interval,
            pending: Queue::new(start.memory_bytes),
            next_id: start.last_id.saturating_add(1),
            offered: start.last_id,
            hold: None,
            reservations: Reservations::new(marks),
            reserve_at: None,
            broker,
            unwritten: 0,
            closing: false,
            deletes: BTreeSet::new(),
            states: BTreeMap::new(),
            history: Vec::new(),
            deliveries: Vec::new(),
            since: None,
            deletes_since: None,
            waiters: Vec::new(),
            failing: None,
            more: true,
            next_upkeep: now,
            degraded: None,
            reopen_at: now + REOPEN_MIN,
            reopen_backoff: REOPEN_MIN,
            seqs: start.seqs,
            clock: start.clock,
            identity: start.identity,
            stale: None,
            evicted: (0, 0),
            rejected: 0,
            history_dropped: 0,
            deliveries_dropped: 0,
            deliveries_log: evict::RateLimited::new(DROPPED_LOG_INTERVAL),
            next_log: now,
            logged_degraded: false,
        };
        if let Some(e) = start.error {
            owner.degrade(&e, now);
        }
        owner.log_health(now);
        owner
    }

    fn has_writes(&self) -> bool {
        !self.pending.is_empty()
            || !self.deletes.is_empty()
            || !self.states.is_empty()
            || !self.history.is_empty()
            || !self.deliveries.is_empty()
    }

    /// The forwarder said the broker is down: nothing can be delivered.
    fn broker_down(&self) -> bool {
        self.broker.load(Ordering::Relaxed) == BROKER_DOWN
    }

    /// Rows per transaction: larger while the broker is down, so that
    /// fewer commits (fsyncs) carry an outage's messages.
    fn chunk_rows(&self) -> usize {
        if self.broker_down() {
            4 * GROUP_ROWS
        } else {
            GROUP_ROWS
        }
    }

    /// A group is full: commit without waiting for the interval.
    fn full(&self) -> bool {
        let rows = self.chunk_rows();
        let bytes = if self.broker_down() {
            2 * self.group_bytes
        } else {
            self.group_bytes
        };
        !self.waiters.is_empty()
            || self.pending.len() >= rows
            || self.pending.bytes() >= bytes
            || self.deletes.len() >= DELETE_BATCH
            || self.history.len() >= GROUP_ROWS
            || self.deliveries.len() >= GROUP_ROWS
    }

    /// The group interval: `flush_interval`, and at least [`OUTAGE_GROUP`]
    /// while the broker is down.
    fn interval(&self) -> Duration {
        if self.broker_down() {
            self.flush_interval.max(OUTAGE_GROUP)
        } else {
            self.flush_interval
        }
    }

    /// How many of the oldest messages in memory a commit now writes: all
    /// of them for a `flush`, a full group, a close, or a degraded store
    /// (whose memory queue is the outbox); else up to the last one that is
    /// due (taken a group interval ago, and not acknowledged) or that must
    /// be committed before it is offered (not a reading). Only a prefix is
    /// written, so every id in memory stays above every id in the file.
    fn must_write(&self, now: Instant) -> usize {
        if self.closing || self.degraded.is_some() || self.full() {
            return self.pending.len();
        }
        let interval = self.interval();
        let due = now
            .checked_sub(interval)
            .map_or(0, |cutoff| self.pending.taken_upto(cutoff));
        let held = self
            .pending
            .iter()
            .rposition(|(_, m)| m.kind != Kind::Reading)
            .map_or(0, |i| i + 1);
        due.max(held)
    }

    /// When the next commit is due, if anything waits for one: at once for
    /// a held message, a `flush` or a full group; else `flush_interval`
    /// after the oldest unwritten message was taken (the write-behind
    /// deadline; [`OUTAGE_GROUP`] at least while the broker is down), or
    /// after the oldest state or history entry; [`DELETE_LAG`] after the
    /// oldest deletion; [`RESERVE_LAG`] after a reservation fell due.
    fn due(&self, now: Instant) -> Option<Instant> {
        if self.hold.is_some() || self.full() {
            return Some(now);
        }
        let interval = self.interval();
        [
            self.pending.first_taken().map(|t| t + interval),
            self.since.map(|t| t + interval),
            self.deletes_since.map(|t| t + DELETE_LAG),
            self.reserve_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn deadline(&self, now: Instant) -> Instant {
        let due = if self.db.is_none() {
            self.reopen_at
        } else if let Some(f) = self.failing {
            // Degraded: the next retry, whether or not anything waits
            // (an empty retry writes the marks, which tells whether the
            // disk takes writes again).
            self.due(now).map_or(f.retry_at, |t| t.max(f.retry_at))
        } else if let Some(t) = self.due(now) {
            t
        } else if self.more {
            now
        } else {
            self.next_upkeep
        };
        if self.degraded.is_some() {
            due.min(self.next_log.max(now))
        } else {
            due
        }
    }

    /// The store can no longer write (or open) its file: offer what memory
    /// holds, and note why.
    fn degrade(&mut self, e: &StoreError, now: Instant) {
        let reason = e.to_string();
        let fault = fault::classify(&reason, &self.config.path);
        match &mut self.degraded {
            Some(d) => {
                d.fault = fault;
                d.reason = reason;
            }
            None => {
                self.degraded = Some(Fault {
                    fault,
                    reason,
                    since_wall: SystemTime::now(),
                    since: now,
                    written: 0,
                });
            }
        }
        self.offer();
    }

    /// Offers the messages taken so far to the forwarder: all of them while
    /// degraded, else those below the first held one.
    fn offer(&mut self) {
        let upto = match self.hold {
            Some(held) if self.degraded.is_none() => held - 1,
            _ => self.next_id.saturating_sub(1),
        };
        if upto > self.offered {
            self.offered = upto;
            self.committed.send_replace(upto);
        }
    }

    /// Logs how the store stands, at most once per [`HEALTH_LOG_INTERVAL`]:
    /// while degraded, and once when it is ok again.
    fn log_health(&mut self, now: Instant) {
        if now < self.next_log {
            return;
        }
        if let Some(d) = &self.degraded {
            StoreDegraded {
                fault: d.fault.as_str(),
                reason: &d.reason,
                for_s: now.saturating_duration_since(d.since).as_secs(),
                held: self.pending.len() as u64,
                held_bytes: self.pending.bytes(),
                max_bytes: self.pending.limit(),
                evicted_readings: self.evicted.0,
                evicted_other: self.evicted.1,
            }
            .emit();
            self.logged_degraded = true;
            self.next_log = now + HEALTH_LOG_INTERVAL;
        }
    }

    /// Everything held is on disk and the marks are written: ok again.
    fn recovered(&mut self, now: Instant) {
        let Some(d) = self.degraded.take() else {
            return;
        };
        // Said at once (a recovery is what the technician waits for), but
        // only after a degraded line: a disk that flaps says so at most
        // twice a minute.
        if std::mem::take(&mut self.logged_degraded) {
            StoreRecovered {
                after_s: now.saturating_duration_since(d.since).as_secs(),
                written: d.written,
            }
            .emit();
        }
    }

    /// Keeps the memory queue within its bound.
    fn evict_memory(&mut self) {
        let d = self.pending.evict();
        self.evicted.0 += d.readings;
        self.evicted.1 += d.other;
        if self.history.len() > HISTORY_HOLD {
            let n = self.history.len() - HISTORY_HOLD;
            self.history.drain(..n);
            self.history_dropped += n as u64;
        }
        let t = sinks::trim_held(&mut self.deliveries, DELIVERIES_HOLD);
        let n = t.meters + t.work_orders;
        self.deliveries_dropped += n;
        if let Some(n) = self.deliveries_log.add(n, Instant::now()) {
            tracing::error!(
                dropped = n,
                total = self.deliveries_dropped,
                work_orders = t.work_orders,
                held = self.deliveries.len(),
                "store degraded: CMMS deliveries dropped from memory at its bound (the oldest meters first)"
            );
        }
    }

    /// Messages into the group, each with the next id (one too large for
    /// `max_bytes` is refused, counted and logged).
    fn take_messages(&mut self, messages: Vec<OutMessage>, now: Instant) {
        for m in messages {
            let bytes = evict::footprint(m.topic.len(), m.payload.len());
            if bytes > self.max_message_bytes {
                match &mut self.db {
                    Some(db) => db.reject(&m),
                    None => {
                        self.rejected += 1;
                        tracing::error!(topic = %m.topic, seq = m.seq,
                                    bytes = m.payload.len(), limit = self.max_message_bytes,
                                    "outbox: message too large for store.max_bytes; dropped");
                    }
                }
                continue;
            }
            let id = self.next_id;
            self.next_id = id.saturating_add(1);
            let unreserved = self.reservations.take(&m.topic, m.seq);
            // Alarm changes, work orders and meters go out only once they
            // are committed with the rules state that made them (a crash
            // must not publish a change and then forget it); any message
            // only once its seq is reserved. A degraded store cannot
            // promise either and publishes at once.
            if self.hold.is_none()
                && self.degraded.is_none()
                && (m.kind != Kind::Reading || unreserved)
            {
                self.hold = Some(id);
            }
            self.pending.push(id, m, now);
        }
        if self.reservations.low() && self.reserve_at.is_none() {
            self.reserve_at = Some(now + RESERVE_LAG);
        }
        self.offer();
        self.evict_memory();
    }

    /// History entries into the group.
    fn take_history(&mut self, entries: Vec<HistoryEntry>, now: Instant) {
        if entries.is_empty() {
            return;
        }
        self.history.extend(entries);
        if self.degraded.is_some() {
            self.evict_memory();
        }
        if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// CMMS deliveries into the group.
    fn take_deliveries(&mut self, deliveries: Vec<Delivery>, now: Instant) {
        if deliveries.is_empty() {
            return;
        }
        self.deliveries.extend(deliveries);
        if self.degraded.is_some() {
            self.evict_memory();
        }
        if self.since.is_none() {
            self.since = Some(now);
        }
    }

    /// A connector's command: answered from the file, after committing
    /// the open group when it writes (so it is never ahead of what was
    /// queued before it), in a transaction of its own committed before
    /// the reply.
    fn sink(&mut self, cmd: SinkCommand) {
        if self.db.is_none() {
            let reason = self
                .degraded
                .as_ref()
                .map_or_else(|| "not open".to_owned(), |d| d.reason.clone());
            cmd.fail(StoreError::Io(format!(
                "store degraded: the CMMS queues are in the store file, which cannot be opened ({reason})"
            )));
            return;
        }
        if cmd.writes() && self.has_writes() {
            self.commit_all();
            if let Some(d) = self.degraded.as_ref().filter(|_| self.failing.is_some()) {
                cmd.fail(StoreError::Io(format!(
                    "store degraded ({}): what was queued before cannot be committed, \
                     so the CMMS queue is not changed: {}",
                    d.fault.as_str(),
                    d.reason
                )));
                return;
            }
        }
        let Some(db) = &mut self.db else {
            return;
        };
        if cmd.answer(db, &self.deliveries) == Answered::Unparked {
            // Same value, yet seen as a change: connectors look again.
            self.delivered.send_modify(|_| {});
        }
    }

    /// A named state into the group (the newest value of a key wins).
    fn take_state(&mut self, key: String, value: Vec<u8>, now: Instant) {
        self.states.insert(key, value);
        if self.since.is_none() {
            self.since = Some(now);
        }
    }

    fn handle(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Insert(messages, held) => {
                // In the group from here on: its bytes no longer count
                // against the queue.
                drop(held);
                self.take_messages(messages, now);
            }
            Command::Step {
                messages,
                held,
                history,
                states,
                deliveries,
            } => {
                drop(held);
                self.take_messages(messages, now);
                self.take_history(history, now);
                for (key, value) in states {
                    self.take_state(key, value, now);
                }
                self.take_deliveries(deliveries, now);
            }
            Command::Deliveries(deliveries) => self.take_deliveries(deliveries, now),
            Command::Sink(cmd) => self.sink(cmd),
            Command::Flush(reply) => {
                if let Some(d) = self.degraded.as_ref().filter(|_| self.db.is_none()) {
                    let _ = reply.send(Err(StoreError::Io(format!(
                        "store degraded ({}): {}",
                        d.fault.as_str(),
                        d.reason
                    ))));
                } else if self.has_writes() {
                    self.waiters.push(reply);
                } else {
                    let _ = reply.send(Ok(()));
                }
            }
            Command::FetchAfter {
                lane,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.fetch_after(lane, after, limit));
            }
            Command::FetchNewest {
                lane,
                after,
                limit,
                reply,
            } => {
                let _ = reply.send(self.fetch_newest(lane, after, limit));
            }
            Command::Delete { ids } => {
                let disk_last = self.db.as_ref().map_or(0, |db| db.last_id());
                for id in ids {
                    if self.stale.is_some_and(|(a, b)| (a..=b).contains(&id)) {
                        continue;
                    }
                    if id > disk_last {
                        // In memory (or evicted from it meanwhile):
                        // acknowledged before its group commit, so it is
                        // never written.
                        if id <= self.offered && self.pending.acked(id) {
                            self.unwritten += 1;
                        }
                    } else {
                        self.deletes.insert(id);
                    }
                }
                if !self.deletes.is_empty() && self.deletes_since.is_none() {
                    self.deletes_since = Some(now);
                }
            }
            Command::Stats(reply) => {
                let _ = reply.send(Ok(self.stats(now)));
            }
            Command::TopicSeqs(reply) => {
                let from_file = match &mut self.db {
                    Some(db) => db.topic_seqs(),
                    None => Err(StoreError::Closed),
                };
                let from_file = match from_file {
                    Ok(seqs) => Ok(seqs),
                    // Degraded: what could be read at start.
                    Err(_) if self.degraded.is_some() => Ok(self.seqs.clone()),
                    Err(e) => Err(e),
                };
                // The file holds reservations; numbering goes on from the
                // seqs used in this run (a reload) where there are some.
                let _ = reply.send(from_file.map(|mut seqs| {
                    seqs.extend(self.reservations.used());
                    seqs
                }));
            }
            Command::SaveState { key, value } => self.take_state(key, value, now),
            Command::RecordConfig {
                hash,
                summary,
                reply,
            } => {
                let _ = reply.send(match &mut self.db {
                    Some(db) => db.record_config(&hash, &summary),
                    None => Err(StoreError::Io(
                        "store degraded: the config log is not written".into(),
                    )),
                });
            }
            Command::Record(entries) => self.take_history(entries, now),
            Command::LoadState { key, reply } => {
                // A value not yet committed is the newest one.
                let queued = self.states.get(&key).cloned();
                let from_file = match (&queued, &mut self.db) {
                    (Some(_), _) => Ok(None),
                    (None, Some(db)) => db.load_state(&key),
                    (None, None) => Err(StoreError::Closed),
                };
                let _ = reply.send(match (queued, from_file) {
                    (Some(v), _) => Ok(Some(v)),
                    (None, Ok(v)) => Ok(v),
                    // Degraded: start without it rather than not at all.
                    (None, Err(_)) if self.degraded.is_some() => {
                        tracing::error!(
                            key,
                            "store degraded: a saved state cannot be read; starting without it"
                        );
                        Ok(None)
                    }
                    (None, Err(e)) => Err(e),
                });
            }
            #[cfg(test)]
            Command::CapPages(pages, reply) => {
                if let Some(db) = &mut self.db {
                    db.cap_pages(pages);
                }
                let _ = reply.send(());
            }
        }
    }

    /// Rows of `lane` after `after`: the file's, then the memory queue's
    /// offered ones (all above the file's). The file's answer is short
    /// only when it has no more rows of the lane, so the two make one run
    /// in id order. When the file cannot be read but memory has rows of
    /// the lane to offer, those are returned alone so that live
    /// publishing goes on (the forwarder's backlog restarts from the
    /// oldest row at its next connection).
    fn fetch_after(
        &mut self,
        lane: Lane,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = Vec::new();
        if let Some(db) = &mut self.db
            && after < db.last_id()
        {
            match db.fetch_after(lane, after, limit, &self.deletes) {
                Ok(r) => rows = r,
                Err(e) if self.pending.after(lane, after, self.offered, 1).is_empty() => {
                    return Err(e);
                }
                Err(_) => {}
            }
        }
        if rows.len() < limit {
            let from = rows.last().map_or(after, |r| r.id);
            rows.extend(
                self.pending
                    .after(lane, from, self.offered, limit - rows.len()),
            );
        }
        Ok(rows)
    }

    /// The newest rows of `lane` after `after`, oldest first: the memory
    /// queue's (the newest ids), then as many of the file's as are
    /// missing, before them.
    fn fetch_newest(
        &mut self,
        lane: Lane,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        let held = self.pending.newest(lane, after, self.offered, limit);
        if held.len() >= limit {
            return Ok(held);
        }
        let mut rows = Vec::new();
        if let Some(db) = &mut self.db
            && after < db.last_id()
        {
            match db.fetch_newest(lane, after, limit - held.len(), &self.deletes) {
                Ok(r) => rows = r,
                Err(e) if held.is_empty() => return Err(e),
                Err(_) => {}
            }
        }
        rows.extend(held);
        Ok(rows)
    }

    /// The figures: the file's (as of the last commit) plus the memory
    /// queue's offered messages, and the store's state.
    fn stats(&mut self, now: Instant) -> Stats {
        let mut st = match &mut self.db {
            Some(db) => match db.stats() {
                Ok(st) => st,
                Err(_) => db.figures(),
            },
            None => Stats {
                max_bytes: Budget::new(self.config.max_bytes, 4096).max_bytes,
                ..Stats::default()
            },
        };
        let held = self.pending.figures_upto(self.offered);
        st.held = held.messages;
        st.held_bytes = held.bytes;
        st.messages += held.messages;
        st.bytes += held.bytes;
        st.sparkplug_messages += held.sparkplug;
        if let Some(t) = held.oldest {
            let age = self.clock.now().since(t);
            st.oldest_age = Some(st.oldest_age.map_or(age, |o| o.max(age)));
        }
        st.identity = Some(self.identity.clone());
        st.unwritten = self.unwritten;
        st.acked += self.unwritten;
        st.last_id = st.last_id.max(self.offered);
        st.rejected += self.rejected;
        st.held_max_bytes = self.pending.limit();
        st.held_evicted_readings = self.evicted.0;
        st.held_evicted_other = self.evicted.1;
        st.held_deliveries = self.deliveries.len() as u64;
        st.held_deliveries_dropped = self.deliveries_dropped;
        st.evicted_readings += self.evicted.0;
        st.evicted_other += self.evicted.1;
        st.degraded = self.degraded.as_ref().map(|d| Degraded {
            fault: d.fault,
            reason: d.reason.clone(),
            since: d.since_wall,
            duration: now.saturating_duration_since(d.since),
        });
        st
    }

    fn tick(&mut self, now: Instant) {
        if self.db.is_none() && now >= self.reopen_at {
            self.reopen(now);
        }
        if self.db.is_some() {
            let retry_ok = self.failing.is_none_or(|f| now >= f.retry_at);
            // Degraded, an attempt with nothing to write still probes
            // the disk.
            let due = match self.due(now) {
                None if self.degraded.is_some() => Some(now),
                due => due,
            };
            // A flush asks for an attempt now, even while backing off.
            if !self.waiters.is_empty() || (retry_ok && due.is_some_and(|t| now >= t)) {
                self.commit_all();
            } else if self.degraded.is_none() && (self.more || now >= self.next_upkeep) {
                // Also between the commits of a steady stream: messages
                // in flight are no reason to put off the bounds.
                self.upkeep(now);
            }
        }
        self.log_health(now);
    }

    /// Tries to open the file that could not be opened.
    fn reopen(&mut self, now: Instant) {
        let lock = self.lock.take();
        let config = self.config.clone();
        match quietly(|| Outbox::attempt(&config, lock)) {
            Ok(Opened::Ready(db)) => {
                let db = *db;
                let file_last = db.last_id();
                if self
                    .pending
                    .first_id()
                    .is_some_and(|first| first <= file_last)
                {
                    // The file holds ids this process gave to messages in
                    // memory (it could not be read at start): give them new
                    // ids above both, and ignore acks of the old ones.
                    let first = self.pending.first_id().unwrap_or(0);
                    let newest = self.next_id.saturating_sub(1);
                    self.stale = Some((first, newest));
                    self.next_id = self.pending.renumber(file_last.max(newest) + 1);
                    tracing::warn!(
                        file_last,
                        held = self.pending.len(),
                        "outbox: the reopened file had used the ids of messages held in memory; \
                         renumbered them (they may be published twice)"
                    );
                    self.offer();
                } else if self.next_id <= file_last {
                    self.next_id = file_last + 1;
                }
                // Deliveries the file held (from before this run) can go.
                let sink_last = db.sink_last();
                self.delivered.send_if_modified(|last| {
                    let newer = sink_last > *last;
                    *last = (*last).max(sink_last);
                    newer
                });
                self.group_bytes = db.budget().group_bytes;
                self.max_message_bytes = db.budget().max_message_bytes;
                // One timeline for the whole run: rows already stamped on it.
                let mut db = db;
                db.set_clock(self.clock);
                self.db = Some(db);
                self.failing = None;
                self.more = true;
                tracing::info!(path = %self.config.path.display(),
                    held = self.pending.len(), "outbox file open again; writing what memory holds");
                self.commit_all();
            }
            Ok(Opened::Waiting(lock, e)) => {
                self.lock = lock;
                self.degrade(&e, now);
                self.reopen_backoff = (self.reopen_backoff * 2).min(REOPEN_MAX);
                self.reopen_at = now + self.reopen_backoff;
            }
            Err(e) => {
                // Another fieldgate took the store, or a newer one wrote it:
                // never write it; keep trying (it may go away).
                self.degrade(&e, now);
                self.reopen_backoff = REOPEN_MAX;
                self.reopen_at = now + REOPEN_MAX;
            }
        }
    }

    /// How many of the pending messages go into the next transaction,
    /// given the bytes left in the group after its deletes.
    fn chunk_len(&self, budget: u64, at_least_one: bool, limit: usize) -> usize {
        let mut bytes = 0;
        let mut n = 0;
        for (_, m) in self.pending.iter().take(self.chunk_rows().min(limit)) {
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
    /// While degraded, ends with the id and seq marks (the probe that
    /// tells the disk takes writes again).
    fn commit_all(&mut self) {
        let Some(mut db) = self.db.take() else {
            return;
        };
        let result = if self.degraded.is_some() {
            // Each failed retry would log its own lines: the health line
            // says it once a minute instead.
            quietly(|| self.commit_with(&mut db))
        } else {
            self.commit_with(&mut db)
        };
        self.db = Some(db);
        let now = Instant::now();
        match result {
            Ok(()) => {
                self.failing = None;
                for w in self.waiters.drain(..) {
                    let _ = w.send(Ok(()));
                }
                self.recovered(now);
            }
            Err(e) => {
                let backoff = self
                    .failing
                    .map_or(RETRY_MIN, |f| (f.backoff * 2).min(RETRY_MAX));
                self.failing = Some(Failing {
                    retry_at: now + backoff,
                    backoff,
                });
                for w in self.waiters.drain(..) {
                    let _ = w.send(Err(e.clone()));
                }
                self.degrade(&e, now);
                self.evict_memory();
            }
        }
    }

    fn commit_with(&mut self, db: &mut Outbox) -> Result<(), StoreError> {
        let now = Instant::now();
        // Reservations ride with the last chunk: every seq offered after
        // this commit is covered by then.
        let mut marks = Marks {
            seqs: self.reservations.due(now),
            last_id: self.next_id.saturating_sub(1),
        };
        if !self.has_writes() && marks.seqs.is_empty() && self.degraded.is_none() {
            return Ok(());
        }
        let mut to_write = self.must_write(now);
        loop {
            let avg = db.avg_row_bytes();
            let max_deletes = (self.group_bytes / avg).max(1) as usize;
            let deletes: Vec<i64> = self.deletes.iter().take(max_deletes).copied().collect();
            let left = self.group_bytes.saturating_sub(deletes.len() as u64 * avg);
            let n = self.chunk_len(left, deletes.is_empty(), to_write);
            // States, history and marks ride with the last chunk of what
            // this commit writes: every alarm, work-order and meter message
            // queued before a state is in it or an earlier one (readings
            // may stay in memory: no state is made from them).
            let last_chunk = n == to_write;
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
            let deliveries = if last_chunk {
                &self.deliveries[..]
            } else {
                &[]
            };
            let delivered = deliveries.len();
            let chunk_marks = if last_chunk {
                std::mem::take(&mut marks)
            } else {
                Marks::default()
            };
            let c = db.commit(
                &self.pending.as_slice()[..n],
                &deletes,
                &states,
                history,
                deliveries,
                &chunk_marks,
            )?;
            self.pending.written(n);
            to_write -= n;
            if let Some(d) = &mut self.degraded {
                d.written += n as u64;
            }
            for id in &deletes {
                self.deletes.remove(id);
            }
            for (key, value) in &states {
                // A newer value queued meanwhile stays queued.
                if self.states.get(key) == Some(value) {
                    self.states.remove(key);
                }
            }
            // Nothing is queued during a commit: these are the entries
            // just written.
            self.history.drain(..recorded);
            self.deliveries.drain(..delivered);
            if let Some(id) = c.sink_last {
                self.delivered.send_if_modified(|last| {
                    let newer = id > *last;
                    *last = (*last).max(id);
                    newer
                });
            }
            self.reservations.written(&chunk_marks.seqs, now);
            if c.inserted > 0 && c.last_id > self.offered {
                // Written: it may be offered, held or not.
                self.offered = c.last_id;
                self.committed.send_replace(c.last_id);
            }
            self.more |= c.more;
            if to_write == 0 && self.deletes.is_empty() {
                break;
            }
        }
        if self.degraded.is_some() {
            // The probe: a real write, so success says the disk takes
            // writes again.
            db.write_marks(self.next_id.saturating_sub(1))?;
        }
        // Everything taken is written or acknowledged, every seq reserved.
        self.hold = None;
        self.since = None;
        self.deletes_since = None;
        if !self.reservations.low() {
            self.reserve_at = None;
        }
        self.offer();
        Ok(())
    }

    fn upkeep(&mut self, now: Instant) {
        let Some(db) = &mut self.db else {
            return;
        };
        match db.maintain(now) {
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
        self.closing = true;
        for _ in 0..CLOSE_ATTEMPTS {
            if !self.has_writes() || self.db.is_none() {
                break;
            }
            self.commit_all();
        }
        let lost = self.pending.len();
        let lost_history = self.history.len();
        let lost_deliveries = self.deliveries.len();
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(StoreError::Closed));
        }
        let closed = match self.db.take() {
            Some(mut db) => {
                // The marks hold reservations: bring them down to the seqs
                // used, so the next start numbers on without a gap.
                if let Err(e) = db.write_used_seqs(&self.reservations.used()) {
                    tracing::warn!(error = %e, "outbox: the seqs used could not be written at close; the next start leaves a gap in the numbering");
                }
                db.close()
            }
            None => Ok(()),
        };
        if lost > 0 || lost_history > 0 || lost_deliveries > 0 {
            let e = StoreError::Sqlite(format!(
                "{lost} queued messages, {lost_history} history entries and \
                 {lost_deliveries} CMMS deliveries could not be committed before closing"
            ));
            tracing::error!(error = %e, "outbox closed with messages lost");
            return Err(e);
        }
        closed
    }
}
