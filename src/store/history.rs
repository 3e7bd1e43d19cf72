//! The `history` table (schema v3): alarm and work-order changes, and
//! write commands, kept for people (`fieldgate alarms`, `fieldgate
//! workorders`, `fieldgate writes`), never published.
//!
//! # Bounds
//!
//! History shares the file with the outbox but is not evicted with it (it
//! is not waiting for anything). It has bounds of its own instead, kept in
//! the commit that adds entries, in two trails that never prune each
//! other ([`Trail`]):
//!
//! * alarm and work-order changes: at most [`HISTORY_ROWS`] rows and three
//!   quarters of the budget's `history_bytes`;
//! * writes: at most [`WRITE_ROWS`] rows and a quarter of `history_bytes`.
//!   They are the change-control trail (who wrote which setpoint, when,
//!   from what to what): with one shared bound, an alarm flood of a few
//!   hours would prune months of writes.
//!
//! `history_bytes` is an eighth of the outbox's target, by the same
//! estimate as outbox rows, so that with a small `max_bytes` the history
//! never crowds out the readings a network outage leaves waiting. Beyond
//! a trail's bounds its oldest entries go, by id, found through the
//! `(kind, id)` index (a few index entries per kind, whatever the other
//! trail holds).
//!
//! [`HISTORY_ROWS`]: super::HISTORY_ROWS
//! [`WRITE_ROWS`]: super::WRITE_ROWS

use rusqlite::{Connection, params};

use super::db::to_ms;
use super::evict::ROW_OVERHEAD;
use super::{HISTORY_ROWS, HistoryEntry, HistoryKind, WRITE_ROWS};

/// Adds an entry; SQLite assigns the next id.
const INSERT: &str = "INSERT INTO history (at, kind, subject, event, detail)
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// The estimated footprint of a row, in SQL (as [`footprint`]).
macro_rules! row_bytes {
    () => {
        "octet_length(kind) + octet_length(subject) + octet_length(event) + octet_length(detail)"
    };
}

/// Drops the oldest N write entries, returning their text bytes.
const PRUNE_WRITES: &str = concat!(
    "DELETE FROM history WHERE id IN
         (SELECT id FROM history WHERE kind = 'write' ORDER BY id LIMIT ?1)
     RETURNING ",
    row_bytes!()
);

/// The kinds of the changes trail, as an SQL list (a test keeps it equal
/// to every kind but `write`).
macro_rules! change_kinds {
    () => {
        "'alarm', 'workorder'"
    };
}

/// Drops the oldest N alarm and work-order entries, returning their text
/// bytes. The `IN` list walks the `(kind, id)` index once per kind and
/// stops at the N-th: it never passes over the write trail.
const PRUNE_CHANGES: &str = concat!(
    "DELETE FROM history WHERE id IN
         (SELECT id FROM history WHERE kind IN (",
    change_kinds!(),
    ") ORDER BY id LIMIT ?1)
     RETURNING ",
    row_bytes!()
);

/// Which bounds an entry counts against (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Trail {
    /// Alarm and work-order changes.
    Changes,
    /// Write commands.
    Writes,
}

impl Trail {
    /// The trail of a kind.
    pub(super) fn of(kind: HistoryKind) -> Trail {
        match kind {
            HistoryKind::Alarm | HistoryKind::WorkOrder => Trail::Changes,
            HistoryKind::Write => Trail::Writes,
        }
    }
}

/// Rows and their estimated footprint (as [`footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Count {
    /// Rows.
    pub rows: u64,
    /// Their estimated footprint.
    pub bytes: u64,
}

/// What the table holds, by trail.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Kept {
    /// Alarm and work-order changes.
    pub changes: Count,
    /// Writes.
    pub writes: Count,
}

impl Kept {
    fn trail(&mut self, trail: Trail) -> &mut Count {
        match trail {
            Trail::Changes => &mut self.changes,
            Trail::Writes => &mut self.writes,
        }
    }
}

/// The bounds of the table, by trail: at most this many rows and
/// estimated bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Limits {
    /// Alarm and work-order changes.
    pub changes: Count,
    /// Writes.
    pub writes: Count,
}

impl Limits {
    /// The bounds within the history's share of the file: a quarter of it
    /// for writes, the rest for the other changes.
    pub(super) fn within(history_bytes: u64) -> Limits {
        let writes = history_bytes / 4;
        Limits {
            changes: Count {
                rows: HISTORY_ROWS as u64,
                bytes: history_bytes - writes,
            },
            writes: Count {
                rows: WRITE_ROWS as u64,
                bytes: writes,
            },
        }
    }
}

/// The estimated footprint of one entry: its text plus the row overhead of
/// the outbox's estimate (the id, `at`, the record header, the index).
pub(super) fn footprint(e: &HistoryEntry) -> u64 {
    (e.kind.as_str().len() + e.subject.len() + e.event.len() + e.detail.len()) as u64 + ROW_OVERHEAD
}

/// What the table holds now (at open). Rows of a kind this build does not
/// know (a newer release's, left by a downgrade) are not counted, nor
/// pruned: that release keeps them within bounds of its own.
pub(super) fn measure(conn: &Connection) -> rusqlite::Result<Kept> {
    let sql = concat!(
        "SELECT kind = 'write', count(*), coalesce(sum(",
        row_bytes!(),
        "), 0) FROM history WHERE kind IN (",
        change_kinds!(),
        ", 'write') GROUP BY kind = 'write'"
    );
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    let mut kept = Kept::default();
    while let Some(r) = rows.next()? {
        let writes: bool = r.get(0)?;
        let n = r.get::<_, i64>(1)?.max(0) as u64;
        let text = r.get::<_, i64>(2)?.max(0) as u64;
        *kept.trail(if writes {
            Trail::Writes
        } else {
            Trail::Changes
        }) = Count {
            rows: n,
            bytes: text + n * ROW_OVERHEAD,
        };
    }
    Ok(kept)
}

/// Inserts `entries` in order and prunes the oldest of each trail beyond
/// its `limits`, inside the caller's transaction. Returns what the table
/// then holds, given what it held before (`kept`).
pub(super) fn write(
    tx: &Connection,
    entries: &[HistoryEntry],
    kept: Kept,
    limits: Limits,
) -> rusqlite::Result<Kept> {
    let mut kept = kept;
    if entries.is_empty() {
        return Ok(kept);
    }
    let mut stmt = tx.prepare_cached(INSERT)?;
    let (mut changes, mut writes) = (false, false);
    for e in entries {
        stmt.execute(params![
            to_ms(e.at),
            e.kind.as_str(),
            e.subject,
            e.event,
            e.detail
        ])?;
        let trail = Trail::of(e.kind);
        let count = kept.trail(trail);
        count.rows += 1;
        count.bytes += footprint(e);
        match trail {
            Trail::Changes => changes = true,
            Trail::Writes => writes = true,
        }
    }
    // A trail nothing was added to is within its bounds already.
    if changes {
        bound(tx, Trail::Changes, &mut kept.changes, limits.changes)?;
    }
    if writes {
        bound(tx, Trail::Writes, &mut kept.writes, limits.writes)?;
    }
    Ok(kept)
}

/// Prunes the oldest entries of `trail` until it is within `limit`.
fn bound(tx: &Connection, trail: Trail, kept: &mut Count, limit: Count) -> rusqlite::Result<()> {
    if kept.rows > limit.rows {
        prune_oldest(tx, trail, kept.rows - limit.rows, kept)?;
    }
    while kept.bytes > limit.bytes && kept.rows > 0 {
        let avg = (kept.bytes / kept.rows).max(1);
        let n = (kept.bytes - limit.bytes).div_ceil(avg).max(1);
        if prune_oldest(tx, trail, n, kept)? == 0 {
            break;
        }
    }
    Ok(())
}

/// Drops the oldest `n` entries of `trail`; takes what it deleted off
/// `kept` and returns how many.
fn prune_oldest(tx: &Connection, trail: Trail, n: u64, kept: &mut Count) -> rusqlite::Result<u64> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    match trail {
        Trail::Writes => prune(tx, PRUNE_WRITES, n, kept),
        Trail::Changes => prune(tx, PRUNE_CHANGES, n, kept),
    }
}

/// Runs a prune statement; takes what it deleted off `kept`.
fn prune(tx: &Connection, sql: &str, arg: i64, kept: &mut Count) -> rusqlite::Result<u64> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query([arg])?;
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let text = row.get::<_, i64>(0)?.max(0) as u64;
        kept.rows = kept.rows.saturating_sub(1);
        kept.bytes = kept.bytes.saturating_sub(text + ROW_OVERHEAD);
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn).unwrap();
        conn
    }

    fn entry(subject: &str, detail_len: usize) -> HistoryEntry {
        of(HistoryKind::WorkOrder, subject, detail_len)
    }

    fn of(kind: HistoryKind, subject: &str, detail_len: usize) -> HistoryEntry {
        HistoryEntry {
            at: SystemTime::now(),
            kind,
            subject: subject.into(),
            event: "raised".into(),
            detail: "x".repeat(detail_len),
        }
    }

    fn subjects(conn: &Connection) -> Vec<(i64, String)> {
        let mut stmt = conn
            .prepare("SELECT id, subject FROM history ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn names(conn: &Connection) -> Vec<String> {
        subjects(conn).into_iter().map(|(_, s)| s).collect()
    }

    /// Rows only, and as many for both trails.
    fn rows(n: u64) -> Limits {
        let bound = Count {
            rows: n,
            bytes: u64::MAX,
        };
        Limits {
            changes: bound,
            writes: bound,
        }
    }

    #[test]
    fn the_row_bound_drops_the_oldest_by_id() {
        let conn = table();
        let limits = rows(5);
        let batch: Vec<_> = ["a", "b", "c"].map(|s| entry(s, 10)).into();
        let kept = write(&conn, &batch, Kept::default(), limits).unwrap();
        assert_eq!(kept.changes.rows, 3);
        let batch: Vec<_> = ["d", "e", "f", "g"].map(|s| entry(s, 10)).into();
        let kept = write(&conn, &batch, kept, limits).unwrap();
        assert_eq!(
            subjects(&conn),
            [(3, "c"), (4, "d"), (5, "e"), (6, "f"), (7, "g")].map(|(id, s)| (id, s.to_owned()))
        );
        assert_eq!(kept, measure(&conn).unwrap());
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_until_it_fits() {
        let conn = table();
        let one = footprint(&entry("a", 1000));
        let limits = Limits {
            changes: Count {
                rows: 1000,
                bytes: 3 * one + one / 2,
            },
            writes: Count::default(),
        };
        let batch: Vec<_> = ["a", "b", "c", "d", "e"].map(|s| entry(s, 1000)).into();
        let kept = write(&conn, &batch, Kept::default(), limits).unwrap();
        assert_eq!(
            kept.changes,
            Count {
                rows: 3,
                bytes: 3 * one
            }
        );
        assert_eq!(kept, measure(&conn).unwrap());
        assert_eq!(names(&conn), ["c", "d", "e"]);
        // Nothing to write: nothing changes.
        assert_eq!(write(&conn, &[], kept, limits).unwrap(), kept);
    }

    /// A flood of alarm changes prunes alarm changes only: the writes
    /// before it stay, and a burst of writes prunes writes only.
    #[test]
    fn each_trail_keeps_to_its_own_bounds() {
        let conn = table();
        let limits = rows(3);
        let mut kept = Kept::default();
        let writes: Vec<_> = ["w1", "w2"].map(|s| of(HistoryKind::Write, s, 10)).into();
        kept = write(&conn, &writes, kept, limits).unwrap();
        // The flood: 50 alarm changes, in one commit and then one by one.
        let flood: Vec<_> = (0..40)
            .map(|i| of(HistoryKind::Alarm, &format!("a{i}"), 10))
            .collect();
        kept = write(&conn, &flood, kept, limits).unwrap();
        for i in 40..50 {
            let one = [of(HistoryKind::Alarm, &format!("a{i}"), 10)];
            kept = write(&conn, &one, kept, limits).unwrap();
        }
        assert_eq!(names(&conn), ["w1", "w2", "a47", "a48", "a49"]);
        assert_eq!(kept, measure(&conn).unwrap());
        assert_eq!(kept.writes.rows, 2);
        assert_eq!(kept.changes.rows, 3);
        // Writes beyond their bound: the oldest writes go, not alarms.
        let more: Vec<_> = ["w3", "w4"].map(|s| of(HistoryKind::Write, s, 10)).into();
        kept = write(&conn, &more, kept, limits).unwrap();
        assert_eq!(names(&conn), ["w2", "a47", "a48", "a49", "w3", "w4"]);
        assert_eq!(kept, measure(&conn).unwrap());

        // Bytes too: the writes' share is theirs.
        let one = footprint(&of(HistoryKind::WorkOrder, "b0", 500));
        let limits = Limits {
            changes: Count {
                rows: 100,
                bytes: 2 * one,
            },
            writes: Count {
                rows: 100,
                bytes: 3 * footprint(&of(HistoryKind::Write, "w1", 10)),
            },
        };
        let big: Vec<_> = (0..6)
            .map(|i| of(HistoryKind::WorkOrder, &format!("b{i}"), 500))
            .collect();
        kept = write(&conn, &big, kept, limits).unwrap();
        assert_eq!(names(&conn), ["w2", "w3", "w4", "b4", "b5"]);
        assert_eq!(kept, measure(&conn).unwrap());
    }

    /// Rows of a kind this build does not know are left alone: neither
    /// counted nor pruned.
    #[test]
    fn an_unknown_kind_is_left_alone() {
        let conn = table();
        conn.execute(
            "INSERT INTO history (at, kind, subject, event, detail)
             VALUES (0, 'future', 'f', 'x', '{}')",
            [],
        )
        .unwrap();
        let kept = measure(&conn).unwrap();
        assert_eq!(kept, Kept::default());
        let batch: Vec<_> = ["a", "b", "c"].map(|s| entry(s, 10)).into();
        let kept = write(&conn, &batch, kept, rows(2)).unwrap();
        assert_eq!(names(&conn), ["f", "b", "c"]);
        assert_eq!(kept, measure(&conn).unwrap());
    }

    /// The prune and the measure list every kind of the changes trail.
    #[test]
    fn the_changes_are_every_kind_but_write() {
        let listed: Vec<String> = HistoryKind::ALL
            .into_iter()
            .filter(|&k| Trail::of(k) == Trail::Changes)
            .map(|k| format!("'{}'", k.as_str()))
            .collect();
        assert_eq!(change_kinds!(), listed.join(", "));
        assert!(PRUNE_CHANGES.contains(change_kinds!()), "{PRUNE_CHANGES}");
        assert_eq!(HistoryKind::Write.as_str(), "write");
        assert_eq!(Trail::of(HistoryKind::Write), Trail::Writes);
        assert!(PRUNE_WRITES.contains("kind = 'write'"));
    }

    /// Each prune walks the `(kind, id)` index: it never scans the other
    /// trail.
    #[test]
    fn the_prunes_use_the_kind_index() {
        let conn = table();
        for sql in [PRUNE_CHANGES, PRUNE_WRITES] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([1], |r| r.get::<_, String>(3))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert!(
                plan.iter()
                    .any(|l| l
                        .starts_with("SEARCH history USING COVERING INDEX history_kind (kind=?)")),
                "{plan:?}"
            );
            assert!(
                !plan.iter().any(|l| l.starts_with("SCAN history")),
                "{plan:?}"
            );
        }
    }

    #[test]
    fn the_write_share_is_a_quarter_of_the_history() {
        let limits = Limits::within(1000);
        assert_eq!(limits.writes.bytes, 250);
        assert_eq!(limits.changes.bytes, 750);
        assert_eq!(limits.writes.rows, WRITE_ROWS as u64);
        assert_eq!(limits.changes.rows, HISTORY_ROWS as u64);
    }
}
