//! Size and age bounds: how the disk budget is split, which rows go first,
//! and the rate-limited log lines that report it.
//!
//! # How `max_bytes` is kept
//!
//! The footprint is the database file plus its WAL and the WAL's index,
//! the `-shm` file (the connection uses normal locking so that readers can
//! share the file; see `schema`). [`Budget`] sets aside room for the index
//! (`shm_bytes`, 32 KiB per 4,062 WAL frames of the WAL's share) and splits
//! the rest of `max_bytes` in two:
//!
//! * the **WAL** gets `wal_limit` (1/8 of the bound, 128 KiB–32 MiB): SQLite
//!   checkpoints once the WAL holds a quarter of that, `journal_size_limit`
//!   truncates the file back to the limit when it restarts, and one group
//!   transaction is kept small enough (`group_bytes`) that a checkpoint plus
//!   the next transaction still fits. The owner thread also checks the
//!   file's real size after every commit and runs `wal_checkpoint(TRUNCATE)`
//!   if it is ever over.
//! * the **database file** gets the rest, enforced twice: after every group
//!   the live pages (`page_count - freelist_count`) are brought back under
//!   `target_bytes` by evicting the oldest rows (freed pages are reused by
//!   the next inserts, so the file stops growing), and `max_page_count` is a
//!   hard cap: a group that would still grow the file past it fails with
//!   `SQLITE_FULL`, which is handled like a full disk (evict, retry).
//!   `auto_vacuum = INCREMENTAL` lets idle time hand free pages back to the
//!   file system in small steps (after a backlog drained, or when the bound
//!   was lowered).
//!
//! # Order
//!
//! The `history` table is not the outbox's: its rows count in the file
//! like any others but are never evicted here; it keeps to its own bounds
//! (`history_bytes`, an eighth of `target_bytes`, split between the
//! alarm and work-order changes and the writes, and `HISTORY_ROWS` and
//! `WRITE_ROWS`; see `history`).
//!
//! Readings go first, oldest first. Meter, alarm and work-order rows are
//! evicted only when no reading is left (in that order: a meter value and an
//! alarm state are superseded by the next one, a work order is not), and
//! that is logged as an error.

use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::Kind;

/// The smallest bound the store works with; a smaller `max_bytes` is raised
/// to this (with a warning), since the schema, one WAL and one group commit
/// need room of their own.
pub const MIN_MAX_BYTES: u64 = 512 * 1024;

/// Estimated bytes a row costs beyond its topic and payload: the record
/// header, the other columns, the cell pointer and the index entry.
pub(super) const ROW_OVERHEAD: u64 = 64;

/// Size of one block of the `-shm` index, and the WAL frames the first
/// block maps (SQLite's `WALINDEX_PGSZ` and `HASHTABLE_NPAGE_ONE`).
const SHM_BLOCK: u64 = 32 * 1024;
const SHM_FRAMES_PER_BLOCK: u64 = 4062;

/// At most this many rows are evicted per transaction, whatever the budget
/// says, so one eviction never makes a large WAL.
const MAX_EVICT_ROWS: u64 = 20_000;

/// Eviction order: readings, then the kinds whose next message supersedes
/// the old one, then work orders.
pub(super) const EVICTION_ORDER: [Kind; 4] =
    [Kind::Reading, Kind::Meter, Kind::Alarm, Kind::WorkOrder];

/// How `max_bytes` is split between the database file and its WAL, in
/// bytes unless named otherwise (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The bound in force (`max_bytes`, at least [`MIN_MAX_BYTES`]).
    pub max_bytes: u64,
    /// SQLite page size of the file.
    pub page_size: u64,
    /// `journal_size_limit`: the WAL's share.
    pub wal_limit: u64,
    /// Room set aside for the WAL's `-shm` index.
    pub shm_bytes: u64,
    /// `wal_autocheckpoint`, in pages.
    pub checkpoint_pages: u64,
    /// `max_page_count`: hard cap of the database file, in pages.
    pub max_pages: u64,
    /// Live pages are brought back under this after every group commit.
    pub target_bytes: u64,
    /// Estimated footprint of one group transaction.
    pub group_bytes: u64,
    /// The `history` table's share of the file (estimated like outbox
    /// rows): beyond it its oldest entries are pruned, so history never
    /// crowds out the outbox.
    pub history_bytes: u64,
    /// Larger messages are refused (they would not fit within the WAL's or
    /// the file's share).
    pub max_message_bytes: u64,
}

impl Budget {
    /// Splits `max_bytes` for a file with pages of `page_size` bytes.
    pub fn new(max_bytes: u64, page_size: u64) -> Budget {
        let page_size = page_size.clamp(512, 65_536);
        let max_bytes = max_bytes.max(MIN_MAX_BYTES);
        let round = |b: u64| b / page_size * page_size;
        let wal_limit = round((max_bytes / 8).clamp(128 << 10, 32 << 20));
        // With the checkpoint at a quarter of the WAL and a group at an
        // eighth, the WAL peaks at about 1/4 + 2 x 1/8 x 1.25 (the inserts
        // and the rows evicted for them) plus a few tree pages: under the
        // limit.
        let group_bytes = (wal_limit / 8).clamp(16 << 10, 2 << 20);
        let checkpoint_pages = (wal_limit / 4 / page_size).max(8);
        // The index maps WAL frames in 32 KiB blocks (4,062 frames in the
        // first, which also holds the header; 4,096 in each next), and the
        // file keeps the largest size the WAL reached until it is closed.
        let shm_bytes = ((wal_limit / page_size) / SHM_FRAMES_PER_BLOCK + 1) * SHM_BLOCK;
        // A few pages of slack for the WAL header and frame headers.
        let db_cap = max_bytes.saturating_sub(wal_limit + shm_bytes + 4 * page_size);
        let max_pages = (db_cap / page_size).max(16);
        // Room for one more group (plus its index entries) above the
        // target, so the next group normally never meets the hard cap.
        let target_bytes = db_cap
            .saturating_sub(group_bytes * 5 / 2 + 4 * page_size)
            .max(8 * page_size);
        Budget {
            max_bytes,
            page_size,
            wal_limit,
            shm_bytes,
            checkpoint_pages,
            max_pages,
            target_bytes,
            group_bytes,
            history_bytes: target_bytes / 8,
            // A message is at most two groups: with its evictions it still
            // fits in the WAL's share, and beside a full outbox in the file.
            max_message_bytes: (target_bytes / 4).min(group_bytes * 2),
        }
    }

    /// How many rows one eviction transaction may delete, given the
    /// average footprint of a row.
    pub fn evict_rows(&self, avg_row_bytes: u64) -> u64 {
        (self.group_bytes / avg_row_bytes.max(1)).clamp(16, MAX_EVICT_ROWS)
    }
}

/// The estimated footprint of one message.
pub(super) fn footprint(topic_len: usize, payload_len: usize) -> u64 {
    (topic_len + payload_len) as u64 + ROW_OVERHEAD
}

/// Counts to log at most once per interval: the first occurrence is
/// reported at once, later ones are summed until the interval has passed.
#[derive(Debug, Clone)]
pub struct RateLimited {
    every: Duration,
    last: Option<Instant>,
    unreported: u64,
}

impl RateLimited {
    /// A limiter that lets one line through per `every`.
    pub fn new(every: Duration) -> RateLimited {
        RateLimited {
            every,
            last: None,
            unreported: 0,
        }
    }

    /// Adds `n` occurrences; returns the count to log now, if a line is due.
    pub fn add(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.unreported += n;
        self.due(now)
    }

    /// The count to log now, if any is unreported and a line is due.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self.unreported == 0 {
            return None;
        }
        let due = match self.last {
            None => true,
            Some(last) => now.saturating_duration_since(last) >= self.every,
        };
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.unreported))
        } else {
            None
        }
    }

    /// Whatever is unreported, regardless of the interval (at shutdown).
    pub fn take(&mut self) -> Option<u64> {
        match std::mem::take(&mut self.unreported) {
            0 => None,
            n => Some(n),
        }
    }
}

/// Rows one transaction evicted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Evicted {
    /// Readings.
    pub readings: u64,
    /// Meter, alarm and work-order rows.
    pub other: u64,
    /// Their topic and payload bytes.
    pub bytes: u64,
    /// Those of the Sparkplug lane (of any kind).
    pub sparkplug: u64,
}

impl Evicted {
    pub fn rows(&self) -> u64 {
        self.readings + self.other
    }

    fn add(&mut self, kind: Kind, gone: Gone) {
        if kind == Kind::Reading {
            self.readings += gone.rows;
        } else {
            self.other += gone.rows;
        }
        self.bytes += gone.bytes;
        self.sparkplug += gone.sparkplug;
    }
}

/// What one `DELETE … RETURNING` of outbox rows removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Gone {
    /// Rows.
    pub rows: u64,
    /// Their topic and payload bytes.
    pub bytes: u64,
    /// Those of the Sparkplug lane.
    pub sparkplug: u64,
}

impl Gone {
    /// Counts one row returned as `(bytes, is_sparkplug)`: the columns of
    /// `returning_gone!`.
    pub fn count(&mut self, r: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
        self.rows += 1;
        self.bytes += r.get::<_, i64>(0)?.max(0) as u64;
        if r.get::<_, bool>(1)? {
            self.sparkplug += 1;
        }
        Ok(())
    }
}

/// What a delete of outbox rows returns for [`Gone::count`]: each row's
/// topic and payload bytes, and whether it is of the Sparkplug lane.
macro_rules! returning_gone {
    () => {
        concat!(
            "RETURNING octet_length(topic) + length(payload), ",
            $crate::store::sparkplug_sql!()
        )
    };
}
pub(super) use returning_gone;

/// Bytes of live pages: what the file would need after a full vacuum.
pub(super) fn used_bytes(conn: &Connection, page_size: u64) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    Ok((pages.saturating_sub(free)).max(0) as u64 * page_size)
}

/// Deletes up to `limit` of the oldest rows of `kind` created before
/// `before` (ms since the epoch); returns what went.
fn evict_kind(conn: &Connection, kind: Kind, before: i64, limit: u64) -> rusqlite::Result<Gone> {
    let mut stmt = conn.prepare_cached(concat!(
        "DELETE FROM outbox WHERE id IN (
             SELECT id FROM outbox WHERE kind = ?1 AND created_at < ?2
             ORDER BY created_at, id LIMIT ?3) ",
        returning_gone!()
    ))?;
    let mut rows = stmt.query(rusqlite::params![
        kind.as_str(),
        before,
        i64::try_from(limit).unwrap_or(i64::MAX)
    ])?;
    let mut gone = Gone::default();
    while let Some(row) = rows.next()? {
        gone.count(row)?;
    }
    Ok(gone)
}

/// Whether any reading is waiting.
fn any_reading(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE kind = 'reading')")?
        .query_row([], |r| r.get(0))
}

/// Evicts up to `limit` of the oldest rows created before `before`,
/// readings first; other kinds only when no reading is left at all.
pub(super) fn evict_oldest(
    conn: &Connection,
    before: i64,
    limit: u64,
    out: &mut Evicted,
) -> rusqlite::Result<u64> {
    let mut left = limit;
    for kind in EVICTION_ORDER {
        if left == 0 {
            break;
        }
        if kind != Kind::Reading && any_reading(conn)? {
            // Readings remain (only younger than `before`): the others wait.
            break;
        }
        let gone = evict_kind(conn, kind, before, left)?;
        out.add(kind, gone);
        left -= gone.rows.min(left);
    }
    Ok(limit - left)
}

/// What [`enforce`] needs to know about the outbox.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    /// The split of `max_bytes`.
    pub budget: Budget,
    /// Rows older than this (ms since the epoch) are due, when the age is
    /// checked in this transaction.
    pub age_cutoff: Option<i64>,
    /// Rows in the outbox now (inside the transaction).
    pub rows: u64,
}

/// Brings the outbox back within its bounds, inside the caller's
/// transaction, deleting at most one eviction chunk. Returns whether more
/// remains to be done (another transaction should follow).
pub(super) fn enforce(
    conn: &Connection,
    bounds: Bounds,
    out: &mut Evicted,
) -> rusqlite::Result<bool> {
    let budget = bounds.budget;
    let used = used_bytes(conn, budget.page_size)?;
    let avg = (used / bounds.rows.max(1)).max(ROW_OVERHEAD);
    let chunk = budget.evict_rows(avg);
    let mut left = chunk;
    if let Some(cutoff) = bounds.age_cutoff {
        let n = evict_oldest(conn, cutoff, left, out)?;
        left -= n;
        if left == 0 {
            return Ok(true);
        }
    }
    let mut used = used_bytes(conn, budget.page_size)?;
    // Deleting rows frees a page only once it is empty, so evict in steps
    // and measure again.
    for _ in 0..16 {
        if used <= budget.target_bytes {
            return Ok(false);
        }
        if left == 0 {
            return Ok(true);
        }
        // Aim a little below the target so the next group does not have to
        // evict again at once.
        let excess = used - budget.target_bytes + budget.group_bytes / 4;
        let want = excess.div_ceil(avg).clamp(1, left);
        let n = evict_oldest(conn, i64::MAX, want, out)?;
        if n == 0 {
            // Nothing left to evict: only the schema remains.
            return Ok(false);
        }
        left -= n;
        used = used_bytes(conn, budget.page_size)?;
    }
    Ok(used > budget.target_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_fits_in_max_bytes() {
        for max in [
            MIN_MAX_BYTES,
            1 << 20,
            2 << 20,
            64 << 20,
            512 << 20,
            8 << 30,
        ] {
            for page in [1024, 4096, 8192] {
                let b = Budget::new(max, page);
                let db = b.max_pages * b.page_size;
                assert!(db + b.wal_limit + b.shm_bytes <= max, "{max} {page}: {b:?}");
                assert!(
                    b.target_bytes + 2 * b.group_bytes <= db,
                    "{max} {page}: {b:?}"
                );
                // The WAL peak: checkpoint threshold plus one group's inserts
                // and evictions (x 1.25 for page fill) plus 8 tree pages.
                let peak =
                    b.checkpoint_pages * b.page_size + b.group_bytes * 5 / 2 + 8 * b.page_size;
                if page == 4096 {
                    assert!(peak <= b.wal_limit, "{max}: {b:?}");
                }
                assert!(b.max_message_bytes > 0);
            }
        }
    }

    #[test]
    fn small_bounds_are_raised() {
        assert_eq!(Budget::new(1000, 4096), Budget::new(MIN_MAX_BYTES, 4096));
        assert_eq!(Budget::new(0, 4096).max_bytes, MIN_MAX_BYTES);
    }

    #[test]
    fn evict_rows_is_bounded() {
        let b = Budget::new(2 << 20, 4096);
        assert_eq!(b.evict_rows(0), MAX_EVICT_ROWS.min(b.group_bytes));
        assert_eq!(b.evict_rows(u64::MAX), 16);
        assert_eq!(b.evict_rows(256), b.group_bytes / 256);
    }

    #[test]
    fn rate_limited_reports_first_then_once_per_interval() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let mut r = RateLimited::new(minute);
        assert_eq!(r.due(t0), None);
        assert_eq!(r.add(5, t0), Some(5));
        assert_eq!(r.add(3, t0 + Duration::from_secs(10)), None);
        assert_eq!(r.add(2, t0 + Duration::from_secs(59)), None);
        assert_eq!(r.due(t0 + Duration::from_secs(59)), None);
        assert_eq!(r.due(t0 + minute), Some(5));
        assert_eq!(r.due(t0 + 2 * minute), None);
        assert_eq!(r.add(1, t0 + minute + Duration::from_secs(1)), None);
        assert_eq!(r.take(), Some(1));
        assert_eq!(r.take(), None);
    }

    fn outbox() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn).unwrap();
        conn
    }

    fn put(conn: &Connection, id: i64, kind: Kind, created_at: i64) {
        conn.execute(
            "INSERT INTO outbox (id, topic, seq, payload, qos, retain, kind, created_at)
             VALUES (?1, 't', ?1, x'00112233', 1, 0, ?2, ?3)",
            rusqlite::params![id, kind.as_str(), created_at],
        )
        .unwrap();
    }

    fn ids(conn: &Connection) -> Vec<i64> {
        let mut stmt = conn.prepare("SELECT id FROM outbox ORDER BY id").unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn readings_go_first_oldest_first() {
        let conn = outbox();
        put(&conn, 1, Kind::Alarm, 10);
        put(&conn, 2, Kind::Reading, 30);
        put(&conn, 3, Kind::Reading, 20);
        put(&conn, 4, Kind::WorkOrder, 5);
        put(&conn, 5, Kind::Meter, 40);
        let mut ev = Evicted::default();
        assert_eq!(evict_oldest(&conn, i64::MAX, 1, &mut ev).unwrap(), 1);
        assert_eq!(ids(&conn), [1, 2, 4, 5]);
        assert_eq!(evict_oldest(&conn, i64::MAX, 1, &mut ev).unwrap(), 1);
        assert_eq!(
            ev,
            Evicted {
                readings: 2,
                other: 0,
                bytes: 10,
                sparkplug: 0,
            }
        );
        // No reading left: meters, then alarms, then work orders.
        assert_eq!(evict_oldest(&conn, i64::MAX, 2, &mut ev).unwrap(), 2);
        assert_eq!(ids(&conn), [4]);
        assert_eq!(ev.other, 2);
        assert_eq!(evict_oldest(&conn, i64::MAX, 5, &mut ev).unwrap(), 1);
        assert_eq!(evict_oldest(&conn, i64::MAX, 5, &mut ev).unwrap(), 0);
        assert_eq!(ev.rows(), 5);
    }

    #[test]
    fn age_spares_other_kinds_while_readings_remain() {
        let conn = outbox();
        put(&conn, 1, Kind::Alarm, 10);
        put(&conn, 2, Kind::Reading, 20);
        put(&conn, 3, Kind::Reading, 100);
        let mut ev = Evicted::default();
        // Both the alarm and the first reading are older than 50; only the
        // reading goes, since a younger reading is still waiting.
        assert_eq!(evict_oldest(&conn, 50, 10, &mut ev).unwrap(), 1);
        assert_eq!(ids(&conn), [1, 3]);
        conn.execute("DELETE FROM outbox WHERE id = 3", []).unwrap();
        assert_eq!(evict_oldest(&conn, 50, 10, &mut ev).unwrap(), 1);
        assert_eq!(ids(&conn), Vec::<i64>::new());
        assert_eq!(
            ev,
            Evicted {
                readings: 1,
                other: 1,
                bytes: 10,
                sparkplug: 0,
            }
        );
    }
}
