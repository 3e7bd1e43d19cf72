//! The SQLite outbox: everything fieldgate publishes goes through it, and
//! what the broker has not acknowledged in time is written here, and
//! deleted only once the broker has acknowledged it.
//!
//! # Write-behind
//!
//! The owner thread offers a message to the forwarder as soon as it takes
//! it (the [`StoreHandle::committed`] watch is the newest id offered), so
//! a reading is published within milliseconds of its poll. A message stays
//! in memory until the broker acknowledges it ([`StoreHandle::delete`]:
//! dropped, never written, counted in [`Stats::unwritten`]) or its group
//! commit comes due, `flush_interval` after it was taken (then it is
//! written, and deleted on its acknowledgement like any row). While the
//! broker is down (the forwarder says so: [`StoreHandle::broker_connected`])
//! nothing can be acknowledged, and groups are at least 250 ms apart.
//!
//! # Invariants
//!
//! 1. At every instant a message is acknowledged by the broker, or
//!    committed to the store, or younger than `flush_interval` (than
//!    `max(flush_interval, 250 ms)` while the broker is down): the window
//!    a group commit made before publishing had too.
//! 2. No `seq` is ever issued twice for one topic, including for messages
//!    published and never written: a message whose seq is above its
//!    topic's reservation in the file is not offered before a commit
//!    raises it (`reserve`); a restart after a crash numbers on above the
//!    reservation (a gap), a clean close writes the seqs used (no gap).
//! 3. Alarm, work-order and meter messages are offered only once committed,
//!    with the named states queued with or after them in the same
//!    transaction (the rules state that produced them): a crash never
//!    leaves the saved state behind or ahead of what was published. Their
//!    CMMS deliveries (see "CMMS sinks") are in that transaction too.
//!    Whatever is taken after such a message waits for the same commit.
//! 4. Rows get an `id` that only grows, given when the owner thread takes
//!    a message, and are offered in `id` order, so per-topic `seq` numbers
//!    increase on the wire (the forwarder's live and backlog streams each
//!    keep it). Only the oldest messages in memory are ever written, so
//!    every id in memory is above every id in the file.
//!
//! Only a degraded store (below) gives up 1 to 3, and says so.
//!
//! # Also
//!
//! * A row is deleted only after its PUBACK ([`StoreHandle::delete`]); a
//!   message held only in memory is dropped from memory on its PUBACK the
//!   same way.
//! * The owner thread never stops taking commands, whatever the disk does
//!   (see "Degraded mode"): the pipeline never waits on a failing disk.
//! * Over `max_bytes` / `max_age`, the oldest *readings* are evicted
//!   first and counted; alarm and work-order messages only when no reading
//!   is left, and that is logged as an error.
//! * One thread owns the connection; everyone else holds a cheap
//!   [`StoreHandle`] (an SQLite connection is not `Sync`, and one writer
//!   makes group commits and their order simple).
//!
//! # Lanes
//!
//! Two publishers read the outbox: the JSON forwarder ([`Lane::Json`])
//! and the Sparkplug B edge node ([`Lane::Sparkplug`]). A row's lane is its
//! topic's namespace ([`SPARKPLUG_TOPIC_PREFIX`]), so it needs no column.
//! The lanes share one id order, one `max_bytes` / `max_age` budget and
//! one eviction order (the oldest readings first, whatever their lane): a
//! publisher that cannot deliver takes room from the other too.
//! [`StoreHandle::fetch_after`] and [`StoreHandle::fetch_newest`] return
//! only the rows of the lane asked for, from the file and from memory, in
//! id order, and fewer than asked only when no more rows of the lane are
//! offered; in the file that is a scan of the primary key from the cursor,
//! which passes over the other lane's rows on its way (no index of its
//! own). Each publisher deletes only its own rows, by id
//! ([`StoreHandle::delete`] takes ids of either lane). The committed watch
//! moves for both lanes' rows, so a publisher may wake to find none of its
//! own. [`Stats`] are the whole outbox's, with the Sparkplug lane's share
//! in [`Stats::sparkplug_messages`] (counted once when the file opens,
//! then kept with every insert, delete and eviction).
//!
//! # Layout
//!
//! * this file: the public types, [`open`], the [`StoreHandle`] everyone
//!   holds and the [`StoreGuard`] that stops the owner thread;
//! * `thread`: the owner thread, which groups writes into transactions;
//! * `db`: what it does with the connection (commits, reads, figures);
//! * `held`: the messages in memory, not (yet) written;
//! * `reserve`: the seq reservations (pure);
//! * `evict`: the disk budget, the eviction order and its log lines;
//! * `history`: the `history` table and its own bounds;
//! * `sinks`: the CMMS connectors' queues (`sink_queue`, `sink_refs`),
//!   their bound and the commands a connector uses;
//! * `schema`: migrations, connection settings, moving a damaged file aside;
//! * `lock`: one fieldgate per store file;
//! * `identity`: the store's identity (the `store` field of every message)
//!   and how a lost or rewound store is told from a restart;
//! * [`inspect`]: read-only access for the inspection commands, which
//!   works while the gateway runs.
//!
//! # Durability
//!
//! The file is in WAL mode. Writes are grouped into one transaction per
//! `flush_interval` (sooner when a group fills), so an SD card sees one
//! fsync per group with `durability = "full"` (which survives a power cut),
//! or one per checkpoint with `"normal"` (which survives a crash of the
//! process, not of the OS); with the broker up and quick, hardly any group
//! is needed. [`StoreHandle::insert`] only queues; [`StoreHandle::flush`]
//! writes everything taken and says when it is on disk.
//!
//! # Bounds
//!
//! The database file plus its WAL stay under `max_bytes` (the split is
//! described in `evict`), and rows older than `max_age` are evicted.
//! Evictions are counted in [`Stats`] and in the file (they survive
//! restarts), and logged at most once a minute. A full disk is handled like
//! the bound: evict, then retry the commit.
//!
//! # Degraded mode
//!
//! When a commit still fails (the disk is full with nothing left to evict,
//! read-only, or returns I/O errors), or the file cannot be opened at all,
//! the store is *degraded* ([`Stats::degraded`]: the [`DiskFault`], the
//! error, since when):
//!
//! * what the file cannot take waits in a memory queue bounded at
//!   [`MEMORY_BYTES`] (counted like the disk budget); at the bound the
//!   oldest readings are evicted first, then meters, alarms and work
//!   orders, and counted ([`Stats::held_evicted_readings`], also in
//!   `evicted_readings`);
//! * every message is offered to the forwarder at once, alarms and work
//!   orders too, and seqs beyond their reservation (nothing can be
//!   committed first), so live publishing goes on while the broker is up;
//!   nothing then survives a crash but what the file took before (a flush
//!   reports the error), and the next start renews the store's identity;
//! * the disk is retried with a growing backoff (at most 30 s); when it
//!   takes writes again, what memory holds is written with its ids, and
//!   the store is ok again without a restart;
//! * a message that leaves memory unwritten (acknowledged or evicted)
//!   still used its topic's seq: the first commit that succeeds raises the
//!   reservations above every seq used, so numbering never repeats after a
//!   restart (unless the process dies first: then the renewed identity
//!   tells consumers to start afresh);
//! * a file that cannot be opened at start is tried again (every 1 s,
//!   backing off to 30 s), holding the lock when it could be taken, so a
//!   second fieldgate is kept out all along (a lock file that exists is
//!   locked through a read-only descriptor on a full or read-only disk;
//!   when none can be made, no fieldgate can write this store either).
//!   Ids and seqs go on from the file as it can still be read; a file that
//!   cannot be read at all numbers ids apart from it and seqs from 1.
//!   Rows the file held are published after its reopening, from the next
//!   connection of the forwarder on;
//! * history entries and CMMS deliveries wait in memory too (bounded by
//!   count, counted when dropped) and are written with the messages once
//!   the disk takes writes; a connector's commands answer an error while
//!   there is no file;
//! * a `store degraded` line is logged when it starts and at most once a
//!   minute while it lasts; `store ok` when it ends.
//!
//! Only a store held by another fieldgate or written by a newer one
//! refuses to open ([`StoreError::Refused`]).
//!
//! # History
//!
//! Alarm and work-order changes are also kept in a `history` table
//! ([`StoreHandle::record`]) so a technician can see, with `fieldgate
//! alarms` and `fieldgate workorders`, what was raised while the network
//! was down; so is every write command, carried out or refused (`fieldgate
//! writes`). History is not part of the outbox: it is never published nor
//! evicted by the bounds above. It takes no more than an eighth of the
//! outbox's share of `max_bytes`, split in two trails with bounds of their
//! own: alarm and work-order changes keep the newest [`HISTORY_ROWS`]
//! (three quarters of that share), writes the newest [`WRITE_ROWS`] (a
//! quarter), so a flood of alarms never prunes the write trail. Older
//! entries are pruned in the commit that adds new ones.
//!
//! # CMMS sinks
//!
//! The CMMS connectors have queues of their own in the same file
//! (`sinks`): a delivery (a work-order or meter message for one
//! connector) is queued with the step that made the message
//! ([`StoreHandle::insert_step`]) and committed in the same transaction
//! as the message, deleted only once the CMMS confirmed it
//! ([`StoreHandle::sink_done`]), parked when the CMMS refused it. The
//! queues are not the outbox: they are never published, nor evicted by
//! the outbox's bounds; each keeps to its own ([`SINK_ROWS`]: the oldest
//! meter deliveries go first, work orders never).
//!
//! # Identity
//!
//! Every message carries the store's identity ([`StoreHandle::identity`])
//! beside its `seq`, so one `(store, topic, seq)` names one message ever.
//! The identity is renewed whenever the store may have gone back in time
//! (a new file, an unclean stop, a file moved aside, missing, replaced or
//! rewound: the rule is in `identity`); [`StoreStart`] says which.
//!
//! # Readers
//!
//! The owner thread is the only writer. Other processes may read the file
//! at any time through an [`Inspector`] (WAL mode lets readers and the
//! writer work side by side); a second fieldgate is kept out by `lock`,
//! not by SQLite's locking.

mod db;
mod evict;
mod fault;
mod held;
mod history;
mod identity;
pub mod inspect;
mod lock;
mod reserve;
mod schema;
mod sinks;
mod thread;

#[cfg(test)]
mod degraded_tests;
#[cfg(test)]
mod lanes_tests;
#[cfg(test)]
mod sinks_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_behind_tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use tokio::sync::{Semaphore, mpsc, oneshot, watch};

use crate::clock::{Clock, Timestamp};
use crate::config::StoreConfig;
use thread::Command;

pub use evict::MIN_MAX_BYTES;
pub use fault::DiskFault;
pub use inspect::{HistoryQuery, HistoryRecord, Inspector};
pub use sinks::{
    Delivery, DeliveryKind, ENDED_REFS, ParkedDelivery, PendingDelivery, SINK_ROWS, SinkFigures,
    SinkRef,
};

/// Commands (an insert batch, a fetch, a flush…) queued for the owner
/// thread. When it is full, callers wait in `send` (backpressure reaches
/// the pipeline and, through it, the pollers); nothing is dropped. With the
/// pipeline's batches of about 100 messages this holds about 25,000
/// messages, a quarter of a second at 100,000 readings/s. What the queued
/// inserts may hold in bytes is bounded apart ([`QUEUE_BYTES`]).
pub const QUEUE_CAPACITY: usize = 256;

/// Topic and payload bytes of the inserts queued for the owner thread, at
/// most. Counting commands alone does not bound memory: a pipeline step of
/// 64 polls of a 1,000-tag device is 2 MB, and 256 of them held 450 MB in
/// the load harness's W2 (BENCHMARKS.md). When an insert would go beyond
/// this, its caller waits (the same backpressure as a full queue) until the
/// owner thread has taken earlier inserts into its group, whose own size is
/// bounded by the group commit. An insert larger than the whole budget
/// waits for all of it and then goes through alone.
pub const QUEUE_BYTES: usize = 16 << 20;

/// The longest `flush_interval` used (the config loader's own maximum);
/// a longer one is shortened to this.
pub const MAX_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// What the memory queue may hold while the disk cannot take the outbox
/// (see "Degraded mode" in the module docs), counted as the disk budget
/// counts rows (topic, payload and 64 bytes each): about 100,000 readings
/// of 250 bytes. At the bound the oldest readings are evicted first, and
/// counted.
pub const MEMORY_BYTES: u64 = 32 << 20;

/// What the forwarder last said of the broker: nothing yet (a store used
/// without a forwarder behaves as if the broker were up).
const BROKER_UNKNOWN: u8 = 0;
/// A session with the broker is up.
const BROKER_UP: u8 = 1;
/// No session: nothing can be delivered (groups are longer).
const BROKER_DOWN: u8 = 2;

/// The topic prefix of the Sparkplug B namespace: rows whose topic starts
/// with it are the edge node's ([`Lane::Sparkplug`]). The same literal is
/// `contract::sparkplug::NAMESPACE` followed by `/` (a test keeps the two
/// equal; the store sits beside the contract, below it in no way).
pub const SPARKPLUG_TOPIC_PREFIX: &str = "spBv1.0/";

/// Whether an outbox row is of the Sparkplug lane, as an SQL expression
/// for `concat!`: its topic starts with [`SPARKPLUG_TOPIC_PREFIX`] (a
/// test keeps the two equal). Filtering on it scans rows in id order,
/// like any fetch: the lane needs no column or index of its own.
macro_rules! sparkplug_sql {
    () => {
        "substr(topic, 1, 8) = 'spBv1.0/'"
    };
}
pub(crate) use sparkplug_sql;

/// Which publisher takes a row: the outbox holds the JSON tree's messages
/// and the Sparkplug edge node's side by side, in one id order, under one
/// `max_bytes`; each publisher fetches and deletes only its own. A row's
/// lane is its topic's namespace, so it needs no column of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// The JSON topic tree (`mqtt::forwarder`).
    Json,
    /// The Sparkplug B namespace (`spBv1.0/…`, the edge node).
    Sparkplug,
}

impl Lane {
    /// The lane of a row with this topic.
    pub fn of(topic: &str) -> Lane {
        if topic.starts_with(SPARKPLUG_TOPIC_PREFIX) {
            Lane::Sparkplug
        } else {
            Lane::Json
        }
    }
}

/// What a message is, for eviction: readings go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A poll's readings (evicted first).
    Reading,
    /// An alarm state change.
    Alarm,
    /// A work order or its update.
    WorkOrder,
    /// A meter value.
    Meter,
}

impl Kind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reading => "reading",
            Kind::Alarm => "alarm",
            Kind::WorkOrder => "workorder",
            Kind::Meter => "meter",
        }
    }
}

/// Alarm and work-order history entries kept, at most: the newest ones.
/// Older entries are pruned in the commit that inserts new ones. A store
/// with a small `max_bytes` keeps fewer: history takes at most an eighth
/// of the outbox's share of the file (writes a quarter of that, apart:
/// [`WRITE_ROWS`]), so it never crowds out the readings waiting for the
/// broker.
pub const HISTORY_ROWS: usize = 50_000;

/// Config log rows kept (the newest); one per start or applied reload.
pub const CONFIG_LOG_ROWS: usize = 1_000;

/// Write entries kept, at most: the newest ones. They are the write
/// trail auditors ask for (who changed which setpoint, when, from what to
/// what), so they keep to bounds of their own: alarm and work-order
/// entries, however many a flood brings, never push a write out, and
/// writes never push out alarm changes either. About 500 bytes each, so
/// 20,000 is some 10 MB; a store with a small `max_bytes` keeps fewer
/// (writes take at most a quarter of the history's share of the file).
pub const WRITE_ROWS: usize = 20_000;

/// What a history entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryKind {
    /// A rule's alarm changed state.
    Alarm,
    /// A work order was raised, updated, held, or changed by the CMMS.
    WorkOrder,
    /// A write command to a tag, carried out or refused (kept within
    /// [`WRITE_ROWS`], apart from the other kinds).
    Write,
}

impl HistoryKind {
    /// Every kind, for parsing.
    const ALL: [HistoryKind; 3] = [
        HistoryKind::Alarm,
        HistoryKind::WorkOrder,
        HistoryKind::Write,
    ];

    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryKind::Alarm => "alarm",
            HistoryKind::WorkOrder => "workorder",
            HistoryKind::Write => "write",
        }
    }

    /// The kind stored as `name`, if this build knows it.
    pub fn parse(name: &str) -> Option<HistoryKind> {
        HistoryKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// One alarm or work-order change, or one write, kept in the `history`
/// table.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// When it happened (kept to the millisecond).
    pub at: SystemTime,
    /// What it is about.
    pub kind: HistoryKind,
    /// The rule name (alarms), the work-order id (work orders), or
    /// `{device}/{tag}` (writes; names never hold a `/`).
    pub subject: String,
    /// A short word: the alarm state (`active_unacked`, `normal`,
    /// `shelved`…), the work-order change (`raised`, `updated`,
    /// `accepted`, `in_progress`, `closed`, `held`, `flood`), or the
    /// write's result (`rejected`, `written`, `verified`, `unknown`).
    pub event: String,
    /// JSON text: the payload that was published, or a small object (for
    /// a write, the result message: who, what, old, written, read back,
    /// result and reason).
    pub detail: String,
}

/// A message to commit, then publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    /// MQTT topic.
    pub topic: String,
    /// This message's sequence number within its topic (1, 2, 3, …); the
    /// store remembers the last one per topic so numbering resumes after
    /// a restart ([`StoreHandle::topic_seqs`]).
    pub seq: u64,
    /// The payload (JSON).
    pub payload: Vec<u8>,
    /// MQTT QoS (1 or 2).
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// What it is, for eviction.
    pub kind: Kind,
    /// When it was made, on the gateway's timeline (what `max_age` is
    /// measured on; see `crate::clock`).
    pub created_at: Timestamp,
}

/// A committed message waiting for its PUBACK.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Outbox order (only grows).
    pub id: i64,
    /// MQTT topic.
    pub topic: String,
    /// Sequence number within the topic.
    pub seq: u64,
    /// The payload.
    pub payload: Vec<u8>,
    /// MQTT QoS.
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// What it is.
    pub kind: Kind,
    /// When it was made, on the gateway's timeline.
    pub created_at: Timestamp,
}

/// Outbox figures, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Rows waiting (both lanes).
    pub messages: u64,
    /// Of them, the Sparkplug lane's ([`Lane::Sparkplug`]): rows and
    /// messages held in memory, as `messages` counts them (kept with every
    /// change, not counted per call).
    pub sparkplug_messages: u64,
    /// Bytes of payload and topic waiting.
    pub bytes: u64,
    /// Age of the oldest waiting row, on the timeline (a step of the wall
    /// clock does not age it).
    pub oldest_age: Option<std::time::Duration>,
    /// Size of the database file plus its WAL and `-shm` index.
    pub file_bytes: u64,
    /// Rows committed since start.
    pub inserted: u64,
    /// Messages the broker acknowledged before their group commit was
    /// due, so never written, since start.
    pub unwritten: u64,
    /// Messages the broker acknowledged since start: rows deleted after
    /// their PUBACK, and messages dropped from memory (`unwritten`).
    pub acked: u64,
    /// Readings evicted by the bounds (since the file was created).
    pub evicted_readings: u64,
    /// Alarm / work-order / meter rows evicted (since the file was created).
    pub evicted_other: u64,
    /// Id of the newest committed row.
    pub last_id: i64,
    /// Messages refused since start because they alone were too large for
    /// `max_bytes` (logged as errors).
    pub rejected: u64,
    /// The size bound in force (`max_bytes`, raised to [`MIN_MAX_BYTES`]
    /// if it was set lower).
    pub max_bytes: u64,
    /// The store's identity for this run (`None` only in hand-made figures).
    pub identity: Option<StoreIdentity>,
    /// Set while the store runs on its memory queue (the disk cannot take
    /// the outbox); `None` when it is ok.
    pub degraded: Option<Degraded>,
    /// Messages in memory, not written: published and waiting for their
    /// acknowledgement or their group commit, or held because the disk
    /// cannot take them (included in `messages`).
    pub held: u64,
    /// Their topic and payload bytes (included in `bytes`).
    pub held_bytes: u64,
    /// The memory queue's bound ([`MEMORY_BYTES`]).
    pub held_max_bytes: u64,
    /// Readings evicted from the memory queue at its bound, since start
    /// (included in `evicted_readings`).
    pub held_evicted_readings: u64,
    /// Alarm / work-order / meter messages evicted from the memory queue,
    /// since start (included in `evicted_other`).
    pub held_evicted_other: u64,
    /// CMMS deliveries waiting in memory for their group commit (for a
    /// disk that takes writes again, while degraded).
    pub held_deliveries: u64,
    /// CMMS deliveries dropped from memory at its bound while the disk
    /// failed, since start (the oldest meters first).
    pub held_deliveries_dropped: u64,
    /// Meter deliveries dropped at a CMMS queue's bound ([`SINK_ROWS`]),
    /// since start.
    pub sink_meters_dropped: u64,
}

/// The store cannot use its file: what is wrong and since when.
#[derive(Debug, Clone, PartialEq)]
pub struct Degraded {
    /// What kind of fault.
    pub fault: DiskFault,
    /// The error as SQLite or the OS reported it.
    pub reason: String,
    /// When it started (wall clock, to show).
    pub since: SystemTime,
    /// How long it has lasted (monotonic).
    pub duration: std::time::Duration,
}

/// The store's identity for this run: what every message carries as
/// `store` beside its `seq` (docs/mqtt.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    /// A ULID (sorts by creation time: a later identity is a newer one).
    pub id: String,
    /// Why the identity is what it is.
    pub start: StoreStart,
}

/// How this run's store relates to the previous run's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreStart {
    /// The same file, stopped cleanly: the identity is kept.
    Kept,
    /// A new file with no trace of an earlier one (or the first start of a
    /// file from before identities).
    New,
    /// The same file after an unclean stop: it may have lost its last
    /// commits, so the identity is new; its state is kept.
    Renewed {
        /// Why.
        reason: String,
    },
    /// The previous store is gone (moved aside as unusable, missing,
    /// replaced, or an older copy): a new identity, and whatever state the
    /// file holds now (none for a new file).
    Lost {
        /// What happened, for the log and the status.
        reason: String,
        /// The identity the previous store's messages carried, if known.
        previous: Option<String>,
    },
}

impl StoreStart {
    /// `kept`, `new`, `renewed` or `lost`, as in the status.
    pub fn as_str(&self) -> &'static str {
        match self {
            StoreStart::Kept => "kept",
            StoreStart::New => "new",
            StoreStart::Renewed { .. } => "renewed",
            StoreStart::Lost { .. } => "lost",
        }
    }

    /// The reason given for a renewed or lost store.
    pub fn reason(&self) -> Option<&str> {
        match self {
            StoreStart::Renewed { reason } | StoreStart::Lost { reason, .. } => Some(reason),
            StoreStart::Kept | StoreStart::New => None,
        }
    }
}

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The owner thread has stopped.
    #[error("the store is closed")]
    Closed,
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
    /// The store must not be used, whatever the disk does: another
    /// fieldgate holds it, or a newer fieldgate wrote it.
    #[error("{0}")]
    Refused(String),
}

/// Cheap, cloneable access to the outbox: a sender to the owner thread's
/// queue ([`QUEUE_CAPACITY`]) and a view of the committed id.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    committed: watch::Receiver<i64>,
    /// The newest sink delivery id committed (see `sinks`).
    deliveries: watch::Receiver<i64>,
    /// Fixed for the life of the thread.
    identity: Arc<StoreIdentity>,
    tx: mpsc::Sender<Command>,
    /// Permits for [`QUEUE_BYTES`]: an insert holds its bytes' worth until
    /// the owner thread has taken it.
    queued_bytes: Arc<Semaphore>,
    /// The timeline, continued from the file's saved anchor.
    clock: Clock,
    /// What the forwarder says of the broker (`BROKER_UP`…), read by the
    /// owner thread when it times its groups.
    broker: Arc<AtomicU8>,
}

/// Owns the store thread: [`StoreGuard::close`] flushes, commits and joins it.
///
/// Dropping the guard does the same (errors are logged, not returned).
#[derive(Debug)]
pub struct StoreGuard {
    /// Dropping it tells the owner thread to stop taking commands, commit
    /// what is queued and close the file.
    close: Option<oneshot::Sender<()>>,
    /// The owner thread; joined by `close` or on drop.
    thread: Option<JoinHandle<Result<(), StoreError>>>,
}

/// Opens the outbox at `config.path` (creating it, migrating it, or moving
/// a corrupt file aside) and starts its owner thread.
///
/// Blocking (it checks the whole file with `PRAGMA quick_check`): call it
/// before the runtime starts or from `spawn_blocking`. Fails only when the
/// store must not be used ([`StoreError::Refused`]: another process holds
/// it, or it was written by a newer fieldgate) or the thread cannot start;
/// a damaged file is moved aside instead, and a disk that does not let the
/// file be opened (full, read-only, failing) starts the store degraded, on
/// its memory queue, trying the file again (see "Degraded mode" above).
pub fn open(config: &StoreConfig) -> Result<(StoreHandle, StoreGuard), StoreError> {
    open_bounded(config, MEMORY_BYTES)
}

/// [`open`] with the memory queue bounded at `memory_bytes`.
pub(crate) fn open_bounded(
    config: &StoreConfig,
    memory_bytes: u64,
) -> Result<(StoreHandle, StoreGuard), StoreError> {
    let start = thread::Start::attempt(config, memory_bytes)?;
    // The owner thread needs timers of its own (group deadlines, upkeep)
    // and must not depend on the caller's runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .map_err(|e| {
            let e = StoreError::Io(format!("cannot start the store thread's timer: {e}"));
            tracing::error!(error = %e, "cannot start the outbox");
            e
        })?;
    let identity = Arc::new(start.identity().clone());
    let clock = start.clock();
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    let (committed_tx, committed_rx) = watch::channel(start.last_id());
    let (deliveries_tx, deliveries_rx) = watch::channel(start.sink_last());
    let (close_tx, close_rx) = oneshot::channel();
    let broker = Arc::new(AtomicU8::new(BROKER_UNKNOWN));
    let owner_broker = Arc::clone(&broker);
    let thread = std::thread::Builder::new()
        .name("fieldgate-store".into())
        .spawn(move || {
            let watches = thread::Watches {
                committed: committed_tx,
                deliveries: deliveries_tx,
            };
            thread::run(start, rt, rx, close_rx, watches, owner_broker)
        })
        .map_err(|e| {
            let e = StoreError::Io(format!("cannot start the store thread: {e}"));
            tracing::error!(error = %e, "cannot start the outbox");
            e
        })?;
    Ok((
        StoreHandle {
            committed: committed_rx,
            deliveries: deliveries_rx,
            identity,
            tx,
            queued_bytes: Arc::new(Semaphore::new(QUEUE_BYTES)),
            clock,
            broker,
        },
        StoreGuard {
            close: Some(close_tx),
            thread: Some(thread),
        },
    ))
}

impl StoreHandle {
    /// The gateway's timeline: resumed from what the file saved, so
    /// moments kept in it (rows' ages, the rules' delays) go on across a
    /// restart. Every duration is measured on it (see `crate::clock`).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The forwarder tells whether a session with the broker is up. While
    /// it is not, nothing can be delivered and groups are longer (at most
    /// four commits a second; see `thread`).
    pub fn broker_connected(&self, up: bool) {
        let v = if up { BROKER_UP } else { BROKER_DOWN };
        self.broker.store(v, Ordering::Relaxed);
    }

    /// Sends a command and waits for its reply.
    async fn ask<T>(
        &self,
        make: impl FnOnce(thread::Reply<T>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues messages for the next group commit. Waits only when the
    /// queue is full, in commands or in bytes (backpressure); use
    /// [`flush`](Self::flush) to wait for the commit.
    ///
    /// Rows get their ids in the order they are queued. A message too
    /// large to ever fit within `max_bytes` is dropped, logged and counted
    /// in [`Stats::rejected`].
    pub async fn insert(&self, messages: Vec<OutMessage>) -> Result<(), StoreError> {
        if messages.is_empty() {
            return Ok(());
        }
        let held = self.hold(&messages).await?;
        self.tx
            .send(Command::Insert(messages, held))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Queues one step of the pipeline as one command: its messages, then
    /// its history entries, then the named states (the rules state that
    /// produced them), then the CMMS deliveries of its work-order and
    /// meter messages. The owner thread takes them together, so they are
    /// committed in one transaction: after a crash the saved state is
    /// never behind (nor ahead of) the messages it produced, no alarm
    /// change is published twice, and a work order is never kept for the
    /// MQTT path yet lost for a CMMS (nor the other way round). Waits like
    /// [`insert`](Self::insert).
    pub async fn insert_step(
        &self,
        messages: Vec<OutMessage>,
        history: Vec<HistoryEntry>,
        states: Vec<(String, Vec<u8>)>,
        deliveries: Vec<Delivery>,
    ) -> Result<(), StoreError> {
        if messages.is_empty() && history.is_empty() && states.is_empty() && deliveries.is_empty() {
            return Ok(());
        }
        let held = self.hold(&messages).await?;
        self.tx
            .send(Command::Step {
                messages,
                held,
                history,
                states,
                deliveries,
            })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Takes the messages' bytes out of the queue's budget ([`QUEUE_BYTES`]),
    /// waiting while it is spent.
    async fn hold(
        &self,
        messages: &[OutMessage],
    ) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        let bytes: usize = messages
            .iter()
            .map(|m| m.topic.len() + m.payload.len())
            .sum();
        // ok: QUEUE_BYTES fits in u32.
        let permits = bytes.clamp(1, QUEUE_BYTES) as u32;
        Arc::clone(&self.queued_bytes)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Resolves once everything queued before the call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.ask(Command::Flush).await
    }

    /// Up to `limit` rows of `lane` with `id > after`, oldest first.
    ///
    /// Only rows offered (see [`committed`](Self::committed)) are
    /// returned, and fewer than `limit` only when no more rows of the lane
    /// wait: the other lane's rows are passed over, however many there are.
    pub async fn fetch_after(
        &self,
        lane: Lane,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        self.ask(|reply| Command::FetchAfter {
            lane,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Up to `limit` of the newest rows of `lane` with `id > after`,
    /// returned oldest first.
    pub async fn fetch_newest(
        &self,
        lane: Lane,
        after: i64,
        limit: usize,
    ) -> Result<Vec<Row>, StoreError> {
        self.ask(|reply| Command::FetchNewest {
            lane,
            after,
            limit,
            reply,
        })
        .await
    }

    /// Deletes rows the broker has acknowledged.
    ///
    /// Resolves once the ids are queued (it does not wait for the owner
    /// thread: a drain would stall on every round trip). The owner thread
    /// takes commands in order, so no fetch asked after this returns them
    /// again; a message still in memory is dropped, never written; the
    /// deletion of a written row is committed with a later group (after a
    /// crash before that, it is delivered again: at least once). Unknown
    /// ids are ignored.
    pub async fn delete(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Command::Delete { ids })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Current figures, as of the last commit.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        self.ask(Command::Stats).await
    }

    /// The newest id the forwarder may publish: every message taken up to
    /// it is in memory or written (or already acknowledged). Moves as
    /// messages are taken (write-behind), and after the commit of a held
    /// one (see "Write-behind" above).
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.clone()
    }

    /// The store's identity for this run (every message carries its `id`
    /// beside `seq`).
    pub fn identity(&self) -> &StoreIdentity {
        &self.identity
    }

    /// The last sequence number committed per topic.
    pub async fn topic_seqs(&self) -> Result<HashMap<String, u64>, StoreError> {
        self.ask(Command::TopicSeqs).await
    }

    /// Queues a named state (the rules engine's, the work-order book's)
    /// to be written with the next group commit, in the same transaction
    /// as the last messages queued before it: after a crash the saved
    /// state is never ahead of the outbox. The latest value of a key wins.
    pub async fn save_state(&self, key: &str, value: Vec<u8>) -> Result<(), StoreError> {
        self.tx
            .send(Command::SaveState {
                key: key.to_string(),
                value,
            })
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Records a configuration the gateway started with or applied (its
    /// hash and what changed) in the config log, and waits for the commit.
    pub async fn record_config(&self, hash: &str, summary: &str) -> Result<(), StoreError> {
        let (hash, summary) = (hash.to_string(), summary.to_string());
        self.ask(|reply| Command::RecordConfig {
            hash,
            summary,
            reply,
        })
        .await
    }

    /// Queues history entries, written with the next group commit in the
    /// same transaction as the last messages queued before them (like
    /// [`save_state`](Self::save_state)): after a crash, history never
    /// tells of a change whose messages were lost. Entries keep their
    /// order. An empty `entries` does nothing.
    ///
    /// While commits fail the entries stay queued and are retried with
    /// the messages.
    pub async fn record(&self, entries: Vec<HistoryEntry>) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Command::Record(entries))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// Tests: sets the file's page cap (`Some(0)`: its current size;
    /// `None`: the budget's), so that commits meet a real `SQLITE_FULL`.
    #[cfg(test)]
    pub(crate) async fn cap_pages(&self, pages: Option<i64>) {
        let (reply, done) = oneshot::channel();
        if self.tx.send(Command::CapPages(pages, reply)).await.is_ok() {
            let _ = done.await;
        }
    }

    /// The newest value of a named state (queued or committed), if any.
    pub async fn load_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_string();
        self.ask(|reply| Command::LoadState { key, reply }).await
    }
}

impl StoreGuard {
    /// Commits what is queued and stops the thread (blocking: call it from
    /// `spawn_blocking` in async code).
    ///
    /// Handles still held get [`StoreError::Closed`] from then on.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), StoreError> {
        // Dropping the sender is the signal.
        self.close.take();
        match self.thread.take() {
            Some(thread) => thread.join().unwrap_or_else(|_| {
                let e = StoreError::Io("the store thread panicked".into());
                tracing::error!(error = %e, "outbox");
                Err(e)
            }),
            None => Ok(()),
        }
    }
}

impl Drop for StoreGuard {
    fn drop(&mut self) {
        // The thread has logged any failure.
        let _ = self.stop();
    }
}
