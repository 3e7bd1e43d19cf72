//! The `history` table (schema v3): alarm and work-order changes kept for
//! people (`fieldgate alarms`, `fieldgate workorders`), never published.
//!
//! # Bounds
//!
//! History shares the file with the outbox but is not evicted with it (it
//! is not waiting for anything). It has bounds of its own instead, kept in
//! the commit that adds entries: at most [`HISTORY_ROWS`] rows, and at most
//! the budget's `history_bytes` (an eighth of the outbox's target, by the
//! same estimate as outbox rows), so that with a small `max_bytes` the
//! history never crowds out the readings a network outage leaves waiting.
//! Beyond either bound the oldest entries go, by id: a range delete on the
//! primary key.
//!
//! [`HISTORY_ROWS`]: super::HISTORY_ROWS

use rusqlite::{Connection, params};

use super::HistoryEntry;
use super::db::to_ms;
use super::evict::ROW_OVERHEAD;

/// Adds an entry; SQLite assigns the next id.
const INSERT: &str = "INSERT INTO history (at, kind, subject, event, detail)
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// The estimated footprint of a row, in SQL (as [`footprint`]).
macro_rules! row_bytes {
    () => {
        "octet_length(kind) + octet_length(subject) + octet_length(event) + octet_length(detail)"
    };
}

/// Drops the entries up to an id (the oldest), returning their text bytes.
const PRUNE_UPTO: &str = concat!(
    "DELETE FROM history WHERE id <= ?1 RETURNING ",
    row_bytes!()
);

/// Drops the oldest N entries, returning their text bytes.
const PRUNE_OLDEST: &str = concat!(
    "DELETE FROM history WHERE id IN (SELECT id FROM history ORDER BY id LIMIT ?1) RETURNING ",
    row_bytes!()
);

/// What the table holds (estimated bytes, as [`footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Kept {
    /// Rows.
    pub rows: u64,
    /// Their estimated footprint.
    pub bytes: u64,
}

/// The bounds of the table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// At most this many rows.
    pub rows: u64,
    /// At most this many estimated bytes.
    pub bytes: u64,
}

/// The estimated footprint of one entry: its text plus the row overhead of
/// the outbox's estimate (the id, `at`, the record header, the index).
pub(super) fn footprint(e: &HistoryEntry) -> u64 {
    (e.kind.as_str().len() + e.subject.len() + e.event.len() + e.detail.len()) as u64 + ROW_OVERHEAD
}

/// What the table holds now (at open).
pub(super) fn measure(conn: &Connection) -> rusqlite::Result<Kept> {
    let sql = concat!(
        "SELECT count(*), coalesce(sum(",
        row_bytes!(),
        "), 0) FROM history"
    );
    conn.query_row(sql, [], |r| {
        let rows: i64 = r.get(0)?;
        let text: i64 = r.get(1)?;
        let rows = rows.max(0) as u64;
        Ok(Kept {
            rows,
            bytes: text.max(0) as u64 + rows * ROW_OVERHEAD,
        })
    })
}

/// Inserts `entries` in order and prunes the oldest beyond `limits`, inside
/// the caller's transaction. Returns what the table then holds, given what
/// it held before (`kept`).
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
    for e in entries {
        stmt.execute(params![
            to_ms(e.at),
            e.kind.as_str(),
            e.subject,
            e.event,
            e.detail
        ])?;
        kept.rows += 1;
        kept.bytes += footprint(e);
    }
    // Ids only grow and only the oldest are deleted, so the newest
    // `limits.rows` are the ids above this one.
    let keep = i64::try_from(limits.rows).unwrap_or(i64::MAX);
    let upto = tx.last_insert_rowid().saturating_sub(keep);
    if upto > 0 {
        prune(tx, PRUNE_UPTO, upto, &mut kept)?;
    }
    while kept.bytes > limits.bytes && kept.rows > 0 {
        let avg = (kept.bytes / kept.rows).max(1);
        let n = (kept.bytes - limits.bytes).div_ceil(avg).max(1);
        if prune(
            tx,
            PRUNE_OLDEST,
            i64::try_from(n).unwrap_or(i64::MAX),
            &mut kept,
        )? == 0
        {
            break;
        }
    }
    Ok(kept)
}

/// Runs a prune statement; takes what it deleted off `kept`.
fn prune(tx: &Connection, sql: &str, arg: i64, kept: &mut Kept) -> rusqlite::Result<u64> {
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
    use crate::store::HistoryKind;

    fn table() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&conn).unwrap();
        conn
    }

    fn entry(subject: &str, detail_len: usize) -> HistoryEntry {
        HistoryEntry {
            at: SystemTime::now(),
            kind: HistoryKind::WorkOrder,
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

    #[test]
    fn the_row_bound_drops_the_oldest_by_id() {
        let conn = table();
        let limits = Limits {
            rows: 5,
            bytes: u64::MAX,
        };
        let batch: Vec<_> = ["a", "b", "c"].map(|s| entry(s, 10)).into();
        let kept = write(&conn, &batch, Kept::default(), limits).unwrap();
        assert_eq!(kept.rows, 3);
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
            rows: 1000,
            bytes: 3 * one + one / 2,
        };
        let batch: Vec<_> = ["a", "b", "c", "d", "e"].map(|s| entry(s, 1000)).into();
        let kept = write(&conn, &batch, Kept::default(), limits).unwrap();
        assert_eq!(
            kept,
            Kept {
                rows: 3,
                bytes: 3 * one
            }
        );
        assert_eq!(kept, measure(&conn).unwrap());
        assert_eq!(
            subjects(&conn)
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>(),
            ["c", "d", "e"]
        );
        // Nothing to write: nothing changes.
        assert_eq!(write(&conn, &[], kept, limits).unwrap(), kept);
    }
}
