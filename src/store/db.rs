//! What the owner thread does with its connection: group commits (with
//! the disk-full retry), reads, bounds upkeep and figures.
//!
//! In-memory figures (`last_id`, row and byte counts, eviction counts) are
//! changed only after the transaction that changed the file has committed,
//! so a rolled-back group leaves them as they were.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::evict::{
    self, Bounds, Budget, Evicted, Gone, MIN_MAX_BYTES, RateLimited, returning_gone,
};
use super::history::{self, Kept};
use super::lock::InstanceLock;
use super::sinks::{self, Delivery};
use super::{
    HistoryEntry, Kind, Lane, OutMessage, Row, Stats, StoreError, StoreIdentity, sparkplug_sql,
};
use super::{identity, schema};
use crate::clock::{Anchor, Clock, Resumed, Timestamp};
use crate::config::StoreConfig;
use crate::events::ReadingsEvicted;

/// The state key of the timeline's [`Anchor`].
pub(super) const STATE_CLOCK: &str = "clock";

/// The anchor is written at least this often (in a commit that happens
/// anyway) and with every saved state: how much of the timeline a crash
/// on another boot, with an unsynchronised clock, can take back.
const ANCHOR_INTERVAL: Duration = Duration::from_secs(10);

/// With no other commit (the broker confirms everything in time), upkeep
/// commits the anchor alone this often, and checkpoints only this often
/// (or when the WAL grows past a quarter of its share): each is an fsync
/// during which the store thread takes no message, so a healthy gateway
/// pauses once a minute, not every few seconds.
const IDLE_INTERVAL: Duration = Duration::from_secs(60);
/// How often rows are checked against `max_age`.
const AGE_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// At most one eviction line per this interval (with the count since the
/// last line).
const EVICTION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Attempts at a group commit that meets a full disk (each after evicting).
const FULL_ATTEMPTS: u32 = 4;

/// Free pages beyond this share of the file are handed back to the file
/// system when idle (after a backlog drained).
const VACUUM_FREE_SHARE: u64 = 4;

const INSERT: &str = "INSERT INTO outbox (id, topic, seq, payload, qos, retain, kind, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const DELETE_ONE: &str = concat!("DELETE FROM outbox WHERE id = ?1 ", returning_gone!());
/// A run of consecutive acknowledged ids (a backlog drained in order) in
/// one statement: far cheaper than one statement a row. (Every id of a
/// run was acknowledged, whichever lane its row is of.)
const DELETE_RANGE: &str = concat!(
    "DELETE FROM outbox WHERE id BETWEEN ?1 AND ?2 ",
    returning_gone!()
);
/// Writes a named state blob (v2).
const UPSERT_STATE: &str = "INSERT INTO state (key, value, updated_at) VALUES (?1, ?2, ?3)
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
/// A topic's mark only rises here: it may be a reservation above the
/// rows' seqs (see `reserve`).
const UPSERT_SEQ: &str = "INSERT INTO topic_seq (topic, seq) VALUES (?1, ?2)
     ON CONFLICT (topic) DO UPDATE SET seq = max(seq, excluded.seq)";
// The fetches of one lane: a range scan of the primary key from `?1` on
// (or down to it), in id order, leaving out the other lane's rows as it
// goes, and stopping at `?2` rows of the lane (`select` stops reading at
// its `limit`). No sort, no temporary table (a test checks the plan).
const FETCH_AFTER_JSON: &str = concat!(
    "SELECT id, topic, seq, payload, qos, retain, kind, created_at
     FROM outbox WHERE id > ?1 AND NOT (",
    sparkplug_sql!(),
    ") ORDER BY id LIMIT ?2"
);
const FETCH_AFTER_SPARKPLUG: &str = concat!(
    "SELECT id, topic, seq, payload, qos, retain, kind, created_at
     FROM outbox WHERE id > ?1 AND ",
    sparkplug_sql!(),
    " ORDER BY id LIMIT ?2"
);
const FETCH_NEWEST_JSON: &str = concat!(
    "SELECT id, topic, seq, payload, qos, retain, kind, created_at
     FROM outbox WHERE id > ?1 AND NOT (",
    sparkplug_sql!(),
    ") ORDER BY id DESC LIMIT ?2"
);
const FETCH_NEWEST_SPARKPLUG: &str = concat!(
    "SELECT id, topic, seq, payload, qos, retain, kind, created_at
     FROM outbox WHERE id > ?1 AND ",
    sparkplug_sql!(),
    " ORDER BY id DESC LIMIT ?2"
);

/// The fetch of `lane`'s rows, oldest first or `newest` first.
fn fetch_sql(lane: Lane, newest: bool) -> &'static str {
    match (lane, newest) {
        (Lane::Json, false) => FETCH_AFTER_JSON,
        (Lane::Sparkplug, false) => FETCH_AFTER_SPARKPLUG,
        (Lane::Json, true) => FETCH_NEWEST_JSON,
        (Lane::Sparkplug, true) => FETCH_NEWEST_SPARKPLUG,
    }
}

/// Owns the connection (see the module docs).
pub(super) struct Outbox {
    conn: Connection,
    path: PathBuf,
    wal_path: PathBuf,
    shm_path: PathBuf,
    budget: Budget,
    max_age: Duration,
    /// The timeline rows are stamped with and aged on (see `crate::clock`).
    clock: Clock,
    next_anchor: Option<Instant>,
    /// The file was made with `auto_vacuum = INCREMENTAL`.
    incremental_vacuum: bool,
    /// A commit since the last checkpoint: the WAL has frames to move.
    wal_dirty: bool,
    /// The last idle checkpoint.
    checkpointed: Option<Instant>,
    last_id: i64,
    messages: u64,
    bytes: u64,
    /// Rows of the Sparkplug lane (counted at open, then kept with every
    /// insert, delete and eviction: no scan per figure).
    sparkplug: u64,
    inserted: u64,
    acked: u64,
    rejected: u64,
    evicted_readings: u64,
    evicted_other: u64,
    reading_log: RateLimited,
    other_log: RateLimited,
    /// The disk-full retries of group commits.
    full_log: RateLimited,
    next_age_check: Option<Instant>,
    /// What the `history` table holds.
    history: Kept,
    /// The newest delivery id the file gave (`sink_queue`).
    sink_last: i64,
    /// The per-connector bound's count and log lines.
    sink_overflow: sinks::Overflow,
    /// This run's identity (fixed at open).
    identity: StoreIdentity,
    /// Held until the connection is closed (declared after `conn`, so it
    /// is dropped after it too): a second fieldgate cannot open the file.
    _lock: super::lock::InstanceLock,
}

/// What a file holds, read when it is opened.
struct FileFigures {
    page_size: i64,
    auto_vacuum: i64,
    meta_last: i64,
    evicted_readings: u64,
    evicted_other: u64,
    kept: Kept,
    max_id: i64,
    messages: i64,
    bytes: i64,
    sparkplug: i64,
    sink_last: i64,
}

/// What a group commit did.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Committed {
    /// Id of the newest committed row.
    pub last_id: i64,
    /// Rows inserted.
    pub inserted: u64,
    /// The bounds need another transaction.
    pub more: bool,
    /// Id of the newest delivery written, if any were.
    pub sink_last: Option<i64>,
}

/// Marks raised with a commit (they only ever rise in the file).
#[derive(Debug, Clone, Default)]
pub(super) struct Marks {
    /// Seq reservations per topic (see `reserve`).
    pub seqs: Vec<(String, u64)>,
    /// The newest id given, written or not.
    pub last_id: i64,
}

/// Changes of one transaction, applied to the figures once it committed.
#[derive(Debug, Default)]
struct Delta {
    last_id: i64,
    inserted: u64,
    inserted_bytes: u64,
    /// Of the inserted rows, those of the Sparkplug lane.
    inserted_sparkplug: u64,
    /// The acknowledged rows deleted.
    acked: Gone,
    evicted: Evicted,
    more: bool,
    /// What the `history` table holds after the transaction.
    history: Kept,
    /// What writing the deliveries did.
    sinks: sinks::Written,
}

/// SQLite's failure as a `StoreError`, logged once here with its context.
fn fail(context: &str, e: rusqlite::Error) -> StoreError {
    tracing::error!(error = %e, "outbox: {context} failed");
    StoreError::Sqlite(format!("{context}: {e}"))
}

fn is_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::DiskFull)
}

/// `t` as ms since the Unix epoch (negative before it).
pub(super) fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The inverse of [`to_ms`] (clamped to the epoch if out of range).
pub(super) fn from_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// A timeline moment as the `created_at` column holds it.
fn timeline_ms(t: Timestamp) -> i64 {
    i64::try_from(t.as_millis()).unwrap_or(i64::MAX)
}

/// The timeline, continued from the anchor saved in `conn` (or a new one),
/// with a line saying how the time the gateway was off was bridged.
fn resume_clock(conn: &Connection) -> Result<Clock, StoreError> {
    let saved: Option<Vec<u8>> = conn
        .query_row(
            "SELECT value FROM state WHERE key = ?1",
            [STATE_CLOCK],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| fail("loading the clock's anchor", e))?;
    let anchor = saved.and_then(|b| match serde_json::from_slice::<Anchor>(&b) {
        Ok(a) => Some(a),
        Err(e) => {
            tracing::warn!(error = %e, "outbox: the clock's anchor is unreadable; ages restart from now");
            None
        }
    });
    let (clock, how) = Clock::resume(anchor.as_ref());
    match how {
        Resumed::Fresh => tracing::debug!("timeline starts at the wall clock's reading"),
        Resumed::SameBoot(off) => {
            tracing::info!(
                since_last_save_s = off.as_secs(),
                "timeline resumed (same boot: the time since the last save is known)"
            )
        }
        Resumed::WallClock(off) => tracing::info!(
            since_last_save_s = off.as_secs(),
            "timeline resumed (new boot, synchronised clock: the time since the last save from the wall clock)"
        ),
        Resumed::Unknown => tracing::warn!(
            "timeline resumed without knowing how long the gateway was off (new boot, clock not synchronised): message ages count from the last save"
        ),
    }
    Ok(clock)
}

fn kind_from(name: &str) -> Option<Kind> {
    evict::EVICTION_ORDER
        .into_iter()
        .find(|k| k.as_str() == name)
}

fn row_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    let kind: String = r.get(6)?;
    let kind = kind_from(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            6,
            rusqlite::types::Type::Text,
            format!("unknown kind {kind:?}").into(),
        )
    })?;
    Ok(Row {
        id: r.get(0)?,
        topic: r.get(1)?,
        // Stored as i64 bit for bit: the cast back restores any u64.
        seq: r.get::<_, i64>(2)? as u64,
        payload: r.get(3)?,
        qos: r.get(4)?,
        retain: r.get(5)?,
        kind,
        created_at: Timestamp(u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0)),
    })
}

fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn file_len(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// How [`Outbox::attempt`] went.
pub(super) enum Opened {
    /// The file is open.
    Ready(Box<Outbox>),
    /// Not now: the lock if it was taken, and why.
    Waiting(Option<InstanceLock>, StoreError),
}

impl Outbox {
    /// Opens the file (see `schema`) and applies the bounds.
    #[cfg(test)]
    pub fn open(config: &StoreConfig) -> Result<Outbox, StoreError> {
        let (conn, lock, identity) = schema::open(&config.path, config.durability)?;
        Outbox::from_conn(config, conn, lock, identity).map_err(|(e, _lock)| e)
    }

    /// Opens the file if the disk lets it ([`schema::attempt`]): an error
    /// only when the store must not be used at all
    /// ([`StoreError::Refused`]). `lock` is the one an earlier attempt took.
    pub fn attempt(config: &StoreConfig, lock: Option<InstanceLock>) -> Result<Opened, StoreError> {
        Ok(
            match schema::attempt(&config.path, config.durability, lock)? {
                schema::Attempt::Open(conn, lock, identity) => {
                    match Outbox::from_conn(config, conn, lock, identity) {
                        Ok(outbox) => Opened::Ready(Box::new(outbox)),
                        Err((e, lock)) => Opened::Waiting(Some(lock), e),
                    }
                }
                schema::Attempt::Wait(lock, e) => Opened::Waiting(lock, e),
            },
        )
    }

    /// Reads the figures of a freshly opened connection; on failure hands
    /// the lock back, so that a gateway waiting for its disk keeps it.
    fn from_conn(
        config: &StoreConfig,
        conn: Connection,
        lock: InstanceLock,
        identity: StoreIdentity,
    ) -> Result<Outbox, (StoreError, InstanceLock)> {
        let figures = match Outbox::figures_of(&conn) {
            Ok(figures) => figures,
            Err(e) => return Err((e, lock)),
        };
        let clock = match resume_clock(&conn) {
            Ok(clock) => clock,
            Err(e) => return Err((e, lock)),
        };
        let mut outbox = Outbox::with_figures(config, conn, lock, figures, clock, identity);
        if let Err(e) = outbox.set_max_pages() {
            let Outbox { _lock, .. } = outbox;
            return Err((e, _lock));
        }
        tracing::info!(
            path = %outbox.path.display(),
            store = %outbox.identity.id,
            rows = outbox.messages,
            last_id = outbox.last_id,
            max_bytes = outbox.budget.max_bytes,
            "outbox open"
        );
        Ok(outbox)
    }

    /// What the file holds: page size, auto-vacuum mode, last id, counts.
    fn figures_of(conn: &Connection) -> Result<FileFigures, StoreError> {
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .map_err(|e| fail("reading page_size", e))?;
        let auto_vacuum: i64 = conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .map_err(|e| fail("reading auto_vacuum", e))?;
        let meta = |key: &str| -> Result<i64, StoreError> {
            conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map(|v| v.unwrap_or(0))
                .map_err(|e| fail("reading meta", e))
        };
        let meta_last = meta("last_id")?;
        let evicted_readings = meta("evicted_readings")?.max(0) as u64;
        let evicted_other = meta("evicted_other")?.max(0) as u64;
        let kept = history::measure(conn).map_err(|e| fail("measuring the history", e))?;
        // The one scan of the outbox: from here on the figures are kept
        // with every change.
        let (max_id, messages, bytes, sparkplug): (i64, i64, i64, i64) = conn
            .query_row(
                concat!(
                    "SELECT coalesce(max(id), 0), count(*),
                        coalesce(sum(octet_length(topic) + length(payload)), 0),
                        coalesce(sum(",
                    sparkplug_sql!(),
                    "), 0)
                     FROM outbox"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .map_err(|e| fail("counting the outbox", e))?;
        let sink_last = sinks::last_id(conn).map_err(|e| fail("reading the sink queues", e))?;
        Ok(FileFigures {
            page_size,
            auto_vacuum,
            meta_last,
            evicted_readings,
            evicted_other,
            kept,
            max_id,
            messages,
            bytes,
            sparkplug,
            sink_last,
        })
    }

    /// The outbox of an open connection, with the bounds applied.
    fn with_figures(
        config: &StoreConfig,
        conn: Connection,
        lock: InstanceLock,
        f: FileFigures,
        clock: Clock,
        identity: StoreIdentity,
    ) -> Outbox {
        let FileFigures {
            page_size,
            auto_vacuum,
            meta_last,
            evicted_readings,
            evicted_other,
            kept,
            max_id,
            messages,
            bytes,
            sparkplug,
            sink_last,
        } = f;
        let budget = Budget::new(config.max_bytes, page_size.max(0) as u64);
        if config.max_bytes < MIN_MAX_BYTES {
            tracing::warn!(
                max_bytes = config.max_bytes,
                using = MIN_MAX_BYTES,
                "store.max_bytes is below the smallest workable bound; using that"
            );
        }
        // Limits of this connection: a failure here shows at the first
        // commit, which then retries.
        for (name, value) in [
            ("journal_size_limit", budget.wal_limit as i64),
            ("wal_autocheckpoint", budget.checkpoint_pages as i64),
        ] {
            if let Err(e) = conn.pragma_update(None, name, value) {
                tracing::warn!(error = %e, pragma = name, "outbox: cannot set a connection limit");
            }
        }
        Outbox {
            conn,
            path: config.path.clone(),
            wal_path: schema::with_suffix(&config.path, "-wal"),
            shm_path: schema::with_suffix(&config.path, "-shm"),
            budget,
            max_age: config.max_age,
            clock,
            next_anchor: None,
            wal_dirty: true,
            checkpointed: None,
            incremental_vacuum: auto_vacuum == 2,
            last_id: meta_last.max(max_id),
            messages: messages.max(0) as u64,
            bytes: bytes.max(0) as u64,
            sparkplug: sparkplug.max(0) as u64,
            inserted: 0,
            acked: 0,
            rejected: 0,
            evicted_readings,
            evicted_other,
            reading_log: RateLimited::new(EVICTION_LOG_INTERVAL),
            other_log: RateLimited::new(EVICTION_LOG_INTERVAL),
            full_log: RateLimited::new(EVICTION_LOG_INTERVAL),
            next_age_check: None,
            history: kept,
            sink_last,
            sink_overflow: sinks::Overflow::new(),
            identity,
            _lock: lock,
        }
    }

    /// The timeline, continued from the file's saved anchor.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Runs on `clock` from now on: a store that opens its file late goes
    /// on with the timeline its rows in memory were stamped on.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// This run's identity.
    pub fn identity(&self) -> &StoreIdentity {
        &self.identity
    }

    /// Id of the newest committed row.
    pub fn last_id(&self) -> i64 {
        self.last_id
    }

    /// Id of the newest delivery the file gave (0 for none).
    pub fn sink_last(&self) -> i64 {
        self.sink_last
    }

    /// Estimated footprint of an average waiting row.
    pub fn avg_row_bytes(&self) -> u64 {
        match self.messages {
            0 => evict::ROW_OVERHEAD,
            n => self.bytes / n + evict::ROW_OVERHEAD,
        }
    }

    /// How `max_bytes` is split.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Sets the hard cap of the file (SQLite keeps it at least at the
    /// current size, so it is set again after a vacuum).
    fn set_max_pages(&mut self) -> Result<(), StoreError> {
        let pages = i64::try_from(self.budget.max_pages).unwrap_or(i64::MAX);
        self.conn
            .pragma_update_and_check(None, "max_page_count", pages, |r| r.get::<_, i64>(0))
            .map(|_| ())
            .map_err(|e| fail("setting max_page_count", e))
    }

    /// Counts and logs a message refused for its size (it could never fit
    /// within the bound together with anything else).
    pub fn reject(&mut self, m: &OutMessage) {
        self.rejected += 1;
        tracing::error!(
            topic = %m.topic,
            seq = m.seq,
            bytes = m.payload.len(),
            limit = self.budget.max_message_bytes,
            "outbox: message too large for store.max_bytes; dropped"
        );
    }

    /// Commits one group: applies the acknowledged `deletes`, inserts
    /// `messages` with the ids the owner thread gave them (each above the
    /// last committed one), records their topics' seqs, writes the
    /// named `states`, the `history` entries (pruning the oldest beyond
    /// [`HISTORY_ROWS`](super::HISTORY_ROWS), and writes beyond
    /// [`WRITE_ROWS`](super::WRITE_ROWS)) and the sink `deliveries`
    /// (within each sink's bound, `sinks`), raises the `marks` (seq reservations per topic,
    /// and the newest id given), and keeps the bounds, all in one
    /// transaction. On a full disk (`SQLITE_FULL`, also raised by the
    /// `max_page_count` cap) it evicts and tries again.
    #[allow(clippy::too_many_arguments)]
    pub fn commit(
        &mut self,
        messages: &[(i64, OutMessage)],
        deletes: &[i64],
        states: &[(String, Vec<u8>)],
        history: &[HistoryEntry],
        deliveries: &[Delivery],
        marks: &Marks,
    ) -> Result<Committed, StoreError> {
        let now = Instant::now();
        let age_due = self.next_age_check.is_none_or(|t| now >= t);
        let anchor_due = !states.is_empty() || self.next_anchor.is_none_or(|t| now >= t);
        let group_bytes: u64 = messages
            .iter()
            .map(|(_, m)| evict::footprint(m.topic.len(), m.payload.len()))
            .sum();
        for attempt in 1..=FULL_ATTEMPTS {
            match self.try_commit(
                messages, deletes, states, history, deliveries, marks, age_due, anchor_due,
            ) {
                Ok(delta) => {
                    if age_due {
                        self.next_age_check = Some(now + AGE_CHECK_INTERVAL);
                    }
                    if anchor_due {
                        self.next_anchor = Some(now + ANCHOR_INTERVAL);
                    }
                    return Ok(self.apply(delta, now));
                }
                Err(e) if is_full(&e) => {
                    self.rollback();
                    // Once a minute at most: on a full disk this happens
                    // at every group.
                    if let Some(times) = self.full_log.add(1, Instant::now()) {
                        tracing::warn!(
                            attempt,
                            rows = messages.len(),
                            times,
                            "outbox: disk full (SQLITE_FULL) committing a group; evicting and retrying"
                        );
                    }
                    // Room for this group twice over: the freed pages take
                    // its rows, and the WAL its frames.
                    let freed = self.make_room(group_bytes.saturating_mul(2) * attempt as u64)?;
                    self.checkpoint("TRUNCATE");
                    if freed == 0 && attempt > 1 {
                        break;
                    }
                }
                Err(e) => {
                    self.rollback();
                    return Err(fail("group commit", e));
                }
            }
        }
        let e = StoreError::Sqlite(format!(
            "disk full: cannot commit {} messages even after evicting",
            messages.len()
        ));
        tracing::error!(error = %e, "outbox: group commit failed");
        Err(e)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_commit(
        &mut self,
        messages: &[(i64, OutMessage)],
        deletes: &[i64],
        states: &[(String, Vec<u8>)],
        history: &[HistoryEntry],
        deliveries: &[Delivery],
        marks: &Marks,
        age_due: bool,
        anchor_due: bool,
    ) -> rusqlite::Result<Delta> {
        let age_cutoff = age_due.then(|| self.age_cutoff());
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut d = Delta {
            last_id: self.last_id,
            history: self.history,
            ..Delta::default()
        };
        if !deletes.is_empty() {
            let mut one = tx.prepare_cached(DELETE_ONE)?;
            let mut range = tx.prepare_cached(DELETE_RANGE)?;
            // `deletes` is in increasing order (the owner thread keeps it
            // sorted); a run of consecutive ids goes in one statement.
            let mut i = 0;
            while i < deletes.len() {
                let first = deletes[i];
                let mut j = i;
                while j + 1 < deletes.len() && deletes[j + 1] == deletes[j] + 1 {
                    j += 1;
                }
                let mut rows = if j == i {
                    one.query([first])?
                } else {
                    range.query(params![first, deletes[j]])?
                };
                while let Some(r) = rows.next()? {
                    d.acked.count(r)?;
                }
                i = j + 1;
            }
        }
        if !messages.is_empty() {
            let mut seqs: HashMap<&str, u64> = HashMap::new();
            let mut stmt = tx.prepare_cached(INSERT)?;
            for (id, m) in messages {
                // Ids only grow (the owner thread gives them); a duplicate
                // fails the insert (only a damaged `meta` could get here).
                d.last_id = *id;

                stmt.execute(params![
                    d.last_id,
                    m.topic,
                    m.seq as i64,
                    m.payload,
                    m.qos,
                    m.retain,
                    m.kind.as_str(),
                    timeline_ms(m.created_at),
                ])?;
                seqs.insert(&m.topic, m.seq);
                d.inserted_bytes += (m.topic.len() + m.payload.len()) as u64;
                if Lane::of(&m.topic) == Lane::Sparkplug {
                    d.inserted_sparkplug += 1;
                }
            }
            d.inserted = messages.len() as u64;
            let mut stmt = tx.prepare_cached(UPSERT_SEQ)?;
            for (topic, seq) in seqs {
                stmt.execute(params![topic, seq as i64])?;
            }
            tx.prepare_cached("UPDATE meta SET value = ?1 WHERE key = 'last_id'")?
                .execute([d.last_id])?;
        }
        if !marks.seqs.is_empty() {
            let mut stmt = tx.prepare_cached(UPSERT_SEQ)?;
            for (topic, seq) in &marks.seqs {
                stmt.execute(params![topic, *seq as i64])?;
            }
        }
        if marks.last_id > d.last_id {
            // Ids of messages acknowledged before they were written are
            // not given again either.
            tx.prepare_cached("UPDATE meta SET value = max(value, ?1) WHERE key = 'last_id'")?
                .execute([marks.last_id])?;
        }
        if !states.is_empty() || anchor_due {
            let now = to_ms(SystemTime::now());
            let mut stmt = tx.prepare_cached(UPSERT_STATE)?;
            for (key, value) in states {
                stmt.execute(params![key, value, now])?;
            }
            // With every saved state, so the rules' moments are never
            // ahead of the timeline a restart resumes.
            if let Ok(anchor) = serde_json::to_vec(&self.clock.anchor()) {
                stmt.execute(params![STATE_CLOCK, anchor, now])?;
            }
        }
        let limits = history::Limits::within(self.budget.history_bytes);
        d.history = history::write(&tx, history, d.history, limits)?;
        // Only the outbox is evicted below: the sink queues keep to their
        // own bound, here.
        d.sinks = sinks::write(&tx, deliveries)?;
        let bounds = Bounds {
            budget: self.budget,
            age_cutoff,
            rows: (self.messages + d.inserted).saturating_sub(d.acked.rows),
        };
        d.more = evict::enforce(&tx, bounds, &mut d.evicted)?;
        if d.evicted.rows() > 0 {
            record_evictions(&tx, &d.evicted)?;
        }
        tx.commit()?;
        Ok(d)
    }

    /// Rows created before this (on the timeline) are past `max_age`: a
    /// step of the wall clock ages nothing.
    fn age_cutoff(&self) -> i64 {
        timeline_ms(self.clock.now().saturating_sub(self.max_age))
    }

    /// Updates the figures after a commit and logs its evictions.
    fn apply(&mut self, d: Delta, now: Instant) -> Committed {
        self.wal_dirty = true;
        self.last_id = d.last_id;
        self.history = d.history;
        self.inserted += d.inserted;
        self.acked += d.acked.rows;
        self.messages =
            (self.messages + d.inserted).saturating_sub(d.acked.rows + d.evicted.rows());
        self.bytes =
            (self.bytes + d.inserted_bytes).saturating_sub(d.acked.bytes + d.evicted.bytes);
        self.sparkplug = (self.sparkplug + d.inserted_sparkplug)
            .saturating_sub(d.acked.sparkplug + d.evicted.sparkplug);
        self.note_evictions(&d.evicted, now);
        if let Some(id) = d.sinks.last_id {
            self.sink_last = self.sink_last.max(id);
        }
        self.sink_overflow.note(&d.sinks, now);
        self.check_wal();
        Committed {
            last_id: self.last_id,
            inserted: d.inserted,
            more: d.more,
            sink_last: d.sinks.last_id,
        }
    }

    fn note_evictions(&mut self, e: &Evicted, now: Instant) {
        self.evicted_readings += e.readings;
        self.evicted_other += e.other;
        if let Some(n) = self.reading_log.add(e.readings, now) {
            self.log_readings(n);
        }
        if let Some(n) = self.other_log.add(e.other, now) {
            self.log_other(n);
        }
    }

    fn log_readings(&self, n: u64) {
        self.eviction_event(n, false).emit();
    }

    fn log_other(&self, n: u64) {
        self.eviction_event(n, true).emit();
    }

    fn eviction_event(&self, evicted: u64, not_readings: bool) -> ReadingsEvicted {
        ReadingsEvicted {
            evicted,
            total: if not_readings {
                self.evicted_other
            } else {
                self.evicted_readings
            },
            waiting: self.messages,
            max_bytes: self.budget.max_bytes,
            max_age_s: self.max_age.as_secs(),
            not_readings,
        }
    }

    /// Ends a transaction a failed statement left open.
    fn rollback(&self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "outbox: rollback failed");
        }
    }

    /// Evicts at least `bytes` (estimated) of the oldest rows, in a
    /// transaction of its own; returns the rows evicted.
    fn make_room(&mut self, bytes: u64) -> Result<u64, StoreError> {
        let rows = bytes.div_ceil(self.avg_row_bytes()).max(1);
        let mut ev = Evicted::default();
        let result = (|| -> rusqlite::Result<()> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            evict::evict_oldest(&tx, i64::MAX, rows, &mut ev)?;
            record_evictions(&tx, &ev)?;
            tx.commit()
        })();
        match result {
            Ok(()) => {
                let n = ev.rows();
                self.messages = self.messages.saturating_sub(n);
                self.bytes = self.bytes.saturating_sub(ev.bytes);
                self.sparkplug = self.sparkplug.saturating_sub(ev.sparkplug);
                self.note_evictions(&ev, Instant::now());
                Ok(n)
            }
            Err(e) if is_full(&e) => {
                // Not even room for the deletion's WAL frames: give back
                // what a checkpoint can, the caller tries again.
                self.rollback();
                self.checkpoint("TRUNCATE");
                Ok(0)
            }
            Err(e) => {
                self.rollback();
                Err(fail("evicting for room", e))
            }
        }
    }

    /// Runs a checkpoint; failures are logged (the next one will retry).
    fn checkpoint(&self, mode: &str) {
        let sql = format!("PRAGMA wal_checkpoint({mode})");
        let result = self
            .conn
            .query_row(&sql, [], |r| r.get::<_, i64>(0))
            .map(|_busy| ());
        if let Err(e) = result {
            tracing::warn!(error = %e, mode, "outbox: checkpoint failed");
        }
    }

    /// The WAL is over its share (a group larger than planned): move it
    /// into the database file and cut it back.
    fn check_wal(&self) {
        if file_len(&self.wal_path) > self.budget.wal_limit {
            self.checkpoint("TRUNCATE");
        }
    }

    /// Up to `limit` rows of `lane` with `id > after`, oldest first,
    /// leaving out `skip` (acknowledged, deletion not yet committed).
    pub fn fetch_after(
        &mut self,
        lane: Lane,
        after: i64,
        limit: usize,
        skip: &BTreeSet<i64>,
    ) -> Result<Vec<Row>, StoreError> {
        self.select(fetch_sql(lane, false), after, limit, skip)
    }

    /// Up to `limit` of the newest rows of `lane` with `id > after`,
    /// oldest first.
    pub fn fetch_newest(
        &mut self,
        lane: Lane,
        after: i64,
        limit: usize,
        skip: &BTreeSet<i64>,
    ) -> Result<Vec<Row>, StoreError> {
        let mut rows = self.select(fetch_sql(lane, true), after, limit, skip)?;
        rows.reverse();
        Ok(rows)
    }

    /// Up to `limit` rows of `sql` (a fetch of one lane) that are not in
    /// `skip`, in the statement's order.
    fn select(
        &self,
        sql: &str,
        after: i64,
        limit: usize,
        skip: &BTreeSet<i64>,
    ) -> Result<Vec<Row>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // Ask for as many more as could be skipped (`skip` holds both
        // lanes' ids: more than this lane can skip, never fewer), so the
        // answer is short only when the lane has no more rows. Reading
        // stops at `limit`, so asking too many costs nothing.
        let skippable = skip.range(after.saturating_add(1)..).count();
        let want = sql_limit(limit.saturating_add(skippable));
        let result = (|| {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut rows = stmt.query(params![after, want])?;
            let mut out = Vec::with_capacity(limit.min(4096));
            while let Some(r) = rows.next()? {
                let id: i64 = r.get(0)?;
                if !skip.contains(&id) {
                    out.push(row_from(r)?);
                    if out.len() == limit {
                        break;
                    }
                }
            }
            Ok(out)
        })();
        result.map_err(|e| fail("fetching rows", e))
    }

    /// Writes the newest id given (messages acknowledged before they were
    /// written used ids too): the probe of a degraded store, a real write,
    /// so success means the disk takes writes again. (Their seqs are
    /// covered by the reservations of the next commit.)
    pub fn write_marks(&mut self, last_id: i64) -> Result<(), StoreError> {
        self.wal_dirty = true;
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "UPDATE meta SET value = max(value, ?1) WHERE key = 'last_id'",
                [last_id],
            )?;
            tx.commit()
        };
        let result = write(&mut self.conn);
        self.rollback();
        result.map_err(|e| {
            let full = is_full(&e);
            let e = fail("writing the id and seq marks", e);
            if full {
                StoreError::Sqlite(format!("disk full: {e}"))
            } else {
                e
            }
        })
    }

    /// At a clean close: sets each topic's mark to the seq actually used
    /// (`used`), below its reservation, so the next start numbers on
    /// without a gap.
    pub fn write_used_seqs(&mut self, used: &HashMap<String, u64>) -> Result<(), StoreError> {
        if used.is_empty() {
            return Ok(());
        }
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO topic_seq (topic, seq) VALUES (?1, ?2)
                     ON CONFLICT (topic) DO UPDATE SET seq = excluded.seq",
                )?;
                for (topic, seq) in used {
                    stmt.execute(params![topic, *seq as i64])?;
                }
            }
            tx.commit()
        };
        let result = write(&mut self.conn);
        self.rollback();
        result.map_err(|e| fail("writing the seqs used", e))
    }

    /// The figures kept in memory, without asking the file (`oldest` is
    /// left out): what a degraded store can still say.
    pub fn figures(&self) -> Stats {
        Stats {
            messages: self.messages,
            bytes: self.bytes,
            sparkplug_messages: self.sparkplug,
            oldest_age: None,
            file_bytes: self.file_bytes(),
            inserted: self.inserted,
            acked: self.acked,
            evicted_readings: self.evicted_readings,
            evicted_other: self.evicted_other,
            last_id: self.last_id,
            rejected: self.rejected,
            max_bytes: self.budget.max_bytes,
            identity: Some(self.identity.clone()),
            sink_meters_dropped: self.sink_overflow.meters_dropped,
            ..Stats::default()
        }
    }

    /// The figures, as of the last commit.
    pub fn stats(&mut self) -> Result<Stats, StoreError> {
        let mut oldest: Option<i64> = None;
        {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT min(created_at) FROM outbox WHERE kind = ?1")
                .map_err(|e| fail("stats", e))?;
            for kind in evict::EVICTION_ORDER {
                let min: Option<i64> = stmt
                    .query_row([kind.as_str()], |r| r.get(0))
                    .map_err(|e| fail("stats", e))?;
                oldest = match (oldest, min) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(Stats {
            oldest_age: oldest.map(|t| {
                self.clock
                    .now()
                    .since(Timestamp(u64::try_from(t).unwrap_or(0)))
            }),
            ..self.figures()
        })
    }

    /// Database file plus WAL and its `-shm` index, as the file system
    /// reports them.
    pub fn file_bytes(&self) -> u64 {
        file_len(&self.path) + file_len(&self.wal_path) + file_len(&self.shm_path)
    }

    /// Runs `f` on the connection (a read of committed data: the owner
    /// thread is the only writer and holds no transaction open).
    pub fn read<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        f(&self.conn).map_err(|e| fail(what, e))
    }

    /// Runs `f` in a transaction of its own, committed (durable as
    /// `durability` says) before this returns; rolled back if it fails.
    pub fn write<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.wal_dirty = true;
        let result = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })();
        self.rollback();
        self.check_wal();
        result.map_err(|e| fail(what, e))
    }

    /// Appends to the config log and keeps its newest
    /// [`CONFIG_LOG_ROWS`](super::CONFIG_LOG_ROWS) rows, in one transaction.
    pub fn record_config(&mut self, hash: &str, summary: &str) -> Result<(), StoreError> {
        self.wal_dirty = true;
        let write = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO config_log (at, hash, summary) VALUES (?1, ?2, ?3)",
                params![to_ms(SystemTime::now()), hash, summary],
            )?;
            let keep = i64::try_from(super::CONFIG_LOG_ROWS).unwrap_or(i64::MAX);
            let upto = tx.last_insert_rowid().saturating_sub(keep);
            if upto > 0 {
                tx.execute("DELETE FROM config_log WHERE id <= ?1", [upto])?;
            }
            tx.commit()
        };
        // A failed transaction rolls back when dropped.
        write(&mut self.conn).map_err(|e| fail("recording the config", e))
    }

    /// The last committed value of a named state, if any.
    pub fn load_state(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.conn
            .prepare_cached("SELECT value FROM state WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row([key], |r| r.get(0)).optional())
            .map_err(|e| fail("loading state", e))
    }

    /// The last seq committed per topic.
    pub fn topic_seqs(&mut self) -> Result<HashMap<String, u64>, StoreError> {
        let result = (|| {
            let mut stmt = self
                .conn
                .prepare_cached("SELECT topic, seq FROM topic_seq")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })?;
            rows.collect::<rusqlite::Result<HashMap<_, _>>>()
        })();
        result.map_err(|e| fail("reading topic seqs", e))
    }

    /// One bounded step of upkeep while idle: bounds (age, size, or a
    /// lowered `max_bytes`), handing free pages back, a checkpoint, and
    /// the eviction log. Returns whether more remains.
    pub fn maintain(&mut self, now: Instant) -> Result<bool, StoreError> {
        let mut more = false;
        let used = evict::used_bytes(&self.conn, self.budget.page_size)
            .map_err(|e| fail("measuring the outbox", e))?;
        // With no row in the file the age bound has nothing to do: a gateway
        // whose broker confirms everything in time then commits only the
        // timeline's anchor, every IDLE_INTERVAL.
        let age_due = self.next_age_check.is_none_or(|t| now >= t) && self.messages > 0;
        let anchor_due = self
            .next_anchor
            .is_none_or(|t| now >= t + (IDLE_INTERVAL - ANCHOR_INTERVAL));
        if used > self.budget.target_bytes || age_due || anchor_due {
            // An empty group: only the bounds (and the anchor when due).
            more |= self
                .commit(&[], &[], &[], &[], &[], &Marks::default())?
                .more;
        }
        if self.incremental_vacuum {
            more |= self.vacuum_step()?;
        }
        // Only when something was committed since the last one, and not
        // more often than IDLE_INTERVAL unless the WAL grows.
        let wal = file_len(&self.wal_path);
        let checkpoint_due = self.checkpointed.is_none_or(|t| now >= t + IDLE_INTERVAL)
            || wal > self.budget.wal_limit / 4;
        if self.wal_dirty && wal > 0 && checkpoint_due {
            self.checkpoint("PASSIVE");
            self.wal_dirty = false;
            self.checkpointed = Some(now);
        }
        if let Some(n) = self.reading_log.due(now) {
            self.log_readings(n);
        }
        if let Some(n) = self.other_log.due(now) {
            self.log_other(n);
        }
        Ok(more)
    }

    /// Hands up to one group's worth of free pages back to the file system
    /// when many are free or the file is over its cap.
    fn vacuum_step(&mut self) -> Result<bool, StoreError> {
        let pragma = |name: &str| -> Result<u64, StoreError> {
            self.conn
                .pragma_query_value(None, name, |r| r.get::<_, i64>(0))
                .map(|v| v.max(0) as u64)
                .map_err(|e| fail("measuring the outbox", e))
        };
        let pages = pragma("page_count")?;
        let free = pragma("freelist_count")?;
        let over = pages > self.budget.max_pages;
        if free == 0 || !(over || free * VACUUM_FREE_SHARE > pages) {
            return Ok(false);
        }
        // Moving a page also rewrites its parent and pointer-map entry:
        // a quarter of a group keeps the WAL within its share.
        let step = (self.budget.group_bytes / 4 / self.budget.page_size).max(1);
        let result = (|| {
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA incremental_vacuum({step})"))?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        })();
        result.map_err(|e| fail("incremental vacuum", e))?;
        // Let the file shrink now, not at the next automatic checkpoint.
        self.checkpoint("TRUNCATE");
        // Bring the hard cap down with the file (SQLite keeps it at least
        // at the file's size).
        self.set_max_pages()?;
        Ok(free > step)
    }

    /// Logs what is unreported, saves the timeline's anchor, checkpoints
    /// and closes the connection.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.save_anchor();
        if let Some(n) = self.reading_log.take() {
            self.log_readings(n);
        }
        if let Some(n) = self.other_log.take() {
            self.log_other(n);
        }
        identity::mark_stopped(&self.conn);
        self.checkpoint("TRUNCATE");
        let path = std::mem::take(&mut self.path);
        self.conn
            .close()
            .map_err(|(_, e)| fail("closing the outbox", e))?;
        tracing::info!(path = %path.display(), "outbox closed");
        Ok(())
    }

    /// Writes the timeline's anchor at once (at close; a failure is logged:
    /// the next start then resumes from the previous anchor).
    fn save_anchor(&self) {
        let Ok(anchor) = serde_json::to_vec(&self.clock.anchor()) else {
            return;
        };
        let now = to_ms(SystemTime::now());
        if let Err(e) = self
            .conn
            .execute(UPSERT_STATE, params![STATE_CLOCK, anchor, now])
        {
            tracing::warn!(error = %e, "outbox: cannot save the clock's anchor");
        }
    }

    /// Lowers the hard cap, to meet `SQLITE_FULL` in tests: to the file's
    /// current size (`Some(0)`), to `n` pages, or back to the budget's
    /// (`None`).
    #[cfg(test)]
    pub fn cap_pages(&mut self, pages: Option<i64>) {
        match pages {
            Some(0) => {
                let now: i64 = self
                    .conn
                    .pragma_query_value(None, "page_count", |r| r.get(0))
                    .unwrap();
                self.conn
                    .pragma_update(None, "max_page_count", now)
                    .unwrap();
            }
            Some(n) => self.conn.pragma_update(None, "max_page_count", n).unwrap(),
            None => self.set_max_pages().unwrap(),
        }
    }
}

/// Adds the evictions to the persisted counts (inside the transaction that
/// evicted, so the counts survive restarts and match the rows).
fn record_evictions(conn: &Connection, e: &Evicted) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached("UPDATE meta SET value = value + ?2 WHERE key = ?1")?;
    if e.readings > 0 {
        stmt.execute(params!["evicted_readings", e.readings as i64])?;
    }
    if e.other > 0 {
        stmt.execute(params!["evicted_other", e.other as i64])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Durability;

    #[test]
    fn times_round_trip_to_the_millisecond() {
        for ms in [0, 1, 1_700_000_000_123, -1, -86_400_000] {
            assert_eq!(to_ms(from_ms(ms)), ms);
        }
    }

    fn reading(i: u64, bytes: usize) -> (i64, OutMessage) {
        (
            i as i64,
            OutMessage {
                topic: "fieldgate/s/g/data/pump1".into(),
                seq: i,
                payload: vec![b'x'; bytes],
                qos: 1,
                retain: false,
                kind: Kind::Reading,
                created_at: SystemTime::now().into(),
            },
        )
    }

    /// A full disk (here the hard cap) mid-group evicts the oldest
    /// readings and commits the group; nothing committed is lost except
    /// what was counted as evicted.
    #[test]
    fn disk_full_evicts_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("o.db"),
            durability: Durability::Normal,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(3600),
            flush_interval: Duration::from_millis(10),
        };
        let mut db = Outbox::open(&config).unwrap();
        let none = BTreeSet::new();
        let first: Vec<_> = (1..=200).map(|i| reading(i, 1000)).collect();
        db.commit(&first, &[], &[], &[], &[], &Marks::default())
            .unwrap();
        let pages: i64 = db
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        // No room for one more page: the next group meets SQLITE_FULL.
        db.cap_pages(Some(pages));
        let second: Vec<_> = (201..=220).map(|i| reading(i, 1000)).collect();
        let c = db
            .commit(&second, &[], &[], &[], &[], &Marks::default())
            .unwrap();
        assert_eq!(c.inserted, 20);
        assert_eq!(c.last_id, 220);
        let s = db.stats().unwrap();
        assert!(s.evicted_readings > 0, "{s:?}");
        assert_eq!(s.messages + s.evicted_readings, 220);
        let rows = db.fetch_after(Lane::Json, 0, 1000, &none).unwrap();
        assert_eq!(rows.len() as u64, s.messages);
        // The oldest went; the new group is whole.
        assert_eq!(rows.last().map(|r| r.id), Some(220));
        assert_eq!(rows[0].id, 1 + s.evicted_readings as i64);
        db.close().unwrap();
    }

    fn test_config(dir: &std::path::Path) -> StoreConfig {
        StoreConfig {
            path: dir.join("o.db"),
            durability: Durability::Normal,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(3600),
            flush_interval: Duration::from_millis(10),
        }
    }

    fn change(subject: &str) -> HistoryEntry {
        HistoryEntry {
            at: SystemTime::now(),
            kind: super::super::HistoryKind::Alarm,
            subject: subject.into(),
            event: "active_unacked".into(),
            detail: "{}".into(),
        }
    }

    fn subjects(db: &Outbox) -> Vec<(i64, String)> {
        let mut stmt = db
            .conn
            .prepare("SELECT id, subject FROM history ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// The Sparkplug predicate in SQL is the prefix of the Rust side.
    #[test]
    fn the_sql_lane_is_the_topic_prefix() {
        let prefix = super::super::SPARKPLUG_TOPIC_PREFIX;
        assert_eq!(
            sparkplug_sql!(),
            format!("substr(topic, 1, {}) = '{prefix}'", prefix.chars().count())
        );
    }

    /// Each lane's fetch is a range scan of the primary key in id order,
    /// filtered as it goes: no other index, no sort.
    #[test]
    fn a_lane_fetch_scans_the_primary_key_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let db = Outbox::open(&test_config(dir.path())).unwrap();
        for lane in [Lane::Json, Lane::Sparkplug] {
            for newest in [false, true] {
                let sql = fetch_sql(lane, newest);
                let mut stmt = db
                    .conn
                    .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                    .unwrap();
                let plan: Vec<String> = stmt
                    .query_map(params![0, 10], |r| r.get::<_, String>(3))
                    .unwrap()
                    .map(Result::unwrap)
                    .collect();
                assert_eq!(plan.len(), 1, "{lane:?} {newest}: {plan:?}");
                assert!(
                    plan[0].contains("USING INTEGER PRIMARY KEY (rowid>?)"),
                    "{lane:?} {newest}: {plan:?}"
                );
            }
        }
        db.close().unwrap();
    }

    /// A message of either lane, made `at` ms into the timeline.
    fn lane_message(id: i64, sparkplug: bool, kind: Kind, at: u64) -> (i64, OutMessage) {
        let topic = if sparkplug {
            format!(
                "{}plant/DDATA/gw/pump1",
                super::super::SPARKPLUG_TOPIC_PREFIX
            )
        } else {
            "fieldgate/s/g/data/pump1".to_string()
        };
        (
            id,
            OutMessage {
                topic,
                seq: id as u64,
                payload: vec![b'x'; 1000],
                qos: 1,
                retain: false,
                kind,
                created_at: Timestamp(at),
            },
        )
    }

    /// The rows in the file, each with its kind and whether Sparkplug
    /// (told by the Rust side).
    fn rows_in_file(db: &Outbox) -> Vec<(i64, String, bool)> {
        let mut stmt = db
            .conn
            .prepare("SELECT id, kind, topic FROM outbox ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| {
            let topic: String = r.get(2)?;
            Ok((r.get(0)?, r.get(1)?, Lane::of(&topic) == Lane::Sparkplug))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn sparkplug_in_file(db: &Outbox) -> u64 {
        rows_in_file(db).iter().filter(|(_, _, s)| *s).count() as u64
    }

    /// The bounds evict the oldest readings first whatever their lane (the
    /// alarms of both stay), and the kept Sparkplug count matches the file
    /// after evictions by the budget and by a full disk, after deletes,
    /// and after a reopen (which counts it once).
    #[test]
    fn eviction_ignores_lanes_and_the_sparkplug_count_follows() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            max_bytes: MIN_MAX_BYTES,
            ..test_config(dir.path())
        };
        let mut db = Outbox::open(&config).unwrap();
        let t0 = db.clock().now().as_millis();
        // Two alarms of each lane first, then readings, a third Sparkplug.
        let mut next = 1;
        let mut group = Vec::new();
        for sparkplug in [true, false, true, false] {
            group.push(lane_message(next, sparkplug, Kind::Alarm, t0 + next as u64));
            next += 1;
        }
        for _ in 0..120 {
            for _ in 0..10 {
                let sparkplug = next % 3 == 0;
                group.push(lane_message(
                    next,
                    sparkplug,
                    Kind::Reading,
                    t0 + next as u64,
                ));
                next += 1;
            }
            db.commit(&group, &[], &[], &[], &[], &Marks::default())
                .unwrap();
            group.clear();
            assert_eq!(db.figures().sparkplug_messages, sparkplug_in_file(&db));
        }
        let s = db.stats().unwrap();
        assert!(s.evicted_readings > 100, "{s:?}");
        assert_eq!(s.evicted_other, 0);
        let rows = rows_in_file(&db);
        let ids: Vec<i64> = rows.iter().map(|r| r.0).collect();
        // The alarms, then the newest readings without a hole: the oldest
        // went, Sparkplug or not.
        let first_reading = 5 + s.evicted_readings as i64;
        let want: Vec<i64> = (1..=4).chain(first_reading..next).collect();
        assert_eq!(ids, want);
        assert_eq!(s.messages, rows.len() as u64);
        assert_eq!(s.sparkplug_messages, sparkplug_in_file(&db));

        // A full disk: `make_room` evicts, the count follows.
        let pages: i64 = db
            .conn
            .pragma_query_value(None, "page_count", |r| r.get(0))
            .unwrap();
        db.cap_pages(Some(pages));
        let before = db.figures().evicted_readings;
        let group: Vec<_> = (next..next + 20)
            .map(|id| lane_message(id, id % 2 == 0, Kind::Reading, t0 + id as u64))
            .collect();
        next += 20;
        db.commit(&group, &[], &[], &[], &[], &Marks::default())
            .unwrap();
        assert!(db.figures().evicted_readings > before);
        assert_eq!(db.figures().sparkplug_messages, sparkplug_in_file(&db));
        db.cap_pages(None);

        // Deletes of either lane, one by one and as a range.
        let rows = rows_in_file(&db);
        let spb: Vec<i64> = rows.iter().filter(|r| r.2).map(|r| r.0).take(5).collect();
        let run: Vec<i64> = (next - 10..next).collect();
        let mut deletes: Vec<i64> = spb.iter().copied().chain(run).collect();
        deletes.sort();
        deletes.dedup();
        db.commit(&[], &deletes, &[], &[], &[], &Marks::default())
            .unwrap();
        let left = sparkplug_in_file(&db);
        assert_eq!(db.figures().sparkplug_messages, left);
        assert!(left > 0);
        db.close().unwrap();

        let db = Outbox::open(&config).unwrap();
        assert_eq!(db.figures().sparkplug_messages, left);
        db.close().unwrap();
    }

    /// Messages and history are one transaction: when the history cannot
    /// be written, the messages are not committed either.
    #[test]
    fn history_and_messages_commit_or_fail_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Outbox::open(&test_config(dir.path())).unwrap();
        let none = BTreeSet::new();
        db.conn
            .execute_batch("ALTER TABLE history RENAME TO gone")
            .unwrap();
        let err = db.commit(
            &[reading(1, 10)],
            &[],
            &[],
            &[change("hot")],
            &[],
            &Marks::default(),
        );
        assert!(err.is_err());
        assert!(db.fetch_after(Lane::Json, 0, 10, &none).unwrap().is_empty());
        assert_eq!(db.last_id(), 0);
        db.conn
            .execute_batch("ALTER TABLE gone RENAME TO history")
            .unwrap();
        let c = db
            .commit(
                &[reading(1, 10)],
                &[],
                &[],
                &[change("hot")],
                &[],
                &Marks::default(),
            )
            .unwrap();
        assert_eq!(c.last_id, 1);
        assert_eq!(subjects(&db), [(1, "hot".to_string())]);
        db.close().unwrap();
    }
}
