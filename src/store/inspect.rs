//! Read-only access to a store file, for `fieldgate alarms`,
//! `fieldgate workorders` and the CMMS queues.
//!
//! An [`Inspector`] opens the file read-only with a connection of its own,
//! beside the gateway's: in WAL mode a reader sees the last committed state
//! and never blocks the writer, and each query is its own short read
//! transaction, so it never holds the WAL back from a checkpoint for
//! long. It needs read access to the file, its `-wal` and its `-shm`
//! index; when nobody has the file open (no `-wal`), read access to the
//! file alone is enough. It never writes, migrates or moves anything.
//!
//! Files of older releases read as far as they go (no `history` table
//! before schema v3: no history; no CMMS queues before v5: none waiting);
//! a file of a newer release is refused, as the gateway refuses it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};

use super::db::{from_ms, to_ms};
use super::schema::{
    APPLICATION_ID, CONFIG_LOG_VERSION, HISTORY_VERSION, MIGRATIONS, SINK_VERSION, STATE_VERSION,
    with_suffix,
};
use super::sinks::{self, ParkedDelivery, SinkFigures};
use super::{HistoryEntry, HistoryKind, StoreError};
use crate::clock::{Anchor, Timestamp, WallMap};

/// How long a query waits while the gateway holds a lock it cannot share
/// (the start of a checkpoint, a recovery after a crash).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A committed history entry, with its place in the `history` table.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRecord {
    /// Order of recording (only grows).
    pub id: i64,
    /// The entry.
    pub entry: HistoryEntry,
}

/// Which history entries to read ([`Inspector::history_where`]); every
/// condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Of this kind only (`None`: every kind).
    pub kind: Option<HistoryKind>,
    /// Subjects that start with this (`"pump1/"`: the writes to device
    /// `pump1`).
    pub subject_prefix: Option<String>,
    /// Subjects that end with this (`"/setpoint"`: the writes to tags
    /// named `setpoint`).
    pub subject_suffix: Option<String>,
    /// Recorded at or after this moment.
    pub since: Option<SystemTime>,
    /// The newest this many of those that match (0: none).
    pub limit: usize,
}

/// The character count of `text`, as an SQL integer.
fn chars(text: &str) -> SqlValue {
    SqlValue::Integer(i64::try_from(text.chars().count()).unwrap_or(i64::MAX))
}

/// A read-only view of a store file (see the module docs).
#[derive(Debug)]
pub struct Inspector {
    conn: Connection,
    path: PathBuf,
    /// The file's schema version (`user_version`).
    version: i64,
}

/// Opens `path` read-only and reads its header: the connection, its
/// `application_id` and its schema version. `immutable` reads the file
/// without locks or WAL (only when no writer can have it open).
fn connect(path: &Path, immutable: bool) -> rusqlite::Result<(Connection, i32, i64)> {
    // No mutex: one thread uses the connection.
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = if immutable {
        let uri = format!("file:{}?immutable=1", uri_path(path)?);
        Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?
    } else {
        // No URI parsing: the path is a plain path.
        Connection::open_with_flags(path, flags)?
    };
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((conn, app_id, version))
}

/// `path` for a `file:` URI: the characters a URI gives meaning to are
/// escaped.
fn uri_path(path: &Path) -> rusqlite::Result<String> {
    let text = path
        .to_str()
        .ok_or_else(|| rusqlite::Error::InvalidPath(path.to_owned()))?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// SQLite's failure as a `StoreError` naming the file.
fn fail(path: &Path, what: &str, e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite(format!("{}: {what}: {e}", path.display()))
}

impl Inspector {
    /// Opens the store at `path` read-only. Fails if there is no file, it
    /// is not a fieldgate store, or a newer fieldgate wrote it.
    pub fn open(path: &Path) -> Result<Inspector, StoreError> {
        // SQLite would report a missing file as "unable to open"; say what
        // it means.
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                return Err(StoreError::Io(format!(
                    "{} is not a store file",
                    path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Io(format!(
                    "no store at {} — has `fieldgate run` used this config?",
                    path.display()
                )));
            }
            Err(e) => {
                return Err(StoreError::Io(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        }
        let (conn, app_id, version) = match connect(path, false) {
            Ok(opened) => opened,
            // A reader of a WAL file needs its `-shm` index, which SQLite
            // creates next to the file if it is missing: a user who may not
            // write the folder cannot read a store nobody has open. With no
            // WAL there is no writer (the gateway keeps one while it has the
            // file open, and deletes it on close), so the file is read as it
            // stands, without locks.
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen)
                ) && !with_suffix(path, "-wal").exists() =>
            {
                connect(path, true).map_err(|e| fail(path, "reading the header", e))?
            }
            Err(e) => return Err(fail(path, "reading the header", e)),
        };
        // A file created but never migrated (version 0) is an empty store.
        if version > 0 && app_id != APPLICATION_ID {
            return Err(StoreError::Sqlite(format!(
                "{} is not a fieldgate store (application_id {app_id:#x})",
                path.display()
            )));
        }
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::Sqlite(format!(
                "{} has schema version {version}, newer than this fieldgate knows ({known}): \
                 use the fieldgate that wrote it",
                path.display()
            )));
        }
        Ok(Inspector {
            conn,
            path: path.to_owned(),
            version,
        })
    }

    /// Reads the file as it stands, without locks, WAL or `-shm` (which a
    /// full or read-only disk may not let SQLite create): for a gateway
    /// that holds the store's lock but cannot open the file for writing.
    /// Refused when the WAL holds anything (it would be missed); a failed
    /// open may leave an empty one behind.
    pub(super) fn open_snapshot(path: &Path) -> Result<Inspector, StoreError> {
        let wal = std::fs::metadata(with_suffix(path, "-wal")).map_or(0, |m| m.len());
        if wal > 0 {
            return Err(StoreError::Io(format!(
                "{}: a WAL is present; a snapshot would miss it",
                path.display()
            )));
        }
        let (conn, app_id, version) =
            connect(path, true).map_err(|e| fail(path, "reading the header", e))?;
        if (version > 0 && app_id != APPLICATION_ID) || version > MIGRATIONS.len() as i64 {
            return Err(StoreError::Sqlite(format!(
                "{} is not a store this fieldgate reads",
                path.display()
            )));
        }
        Ok(Inspector {
            conn,
            path: path.to_owned(),
            version,
        })
    }

    /// The file this reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's schema version.
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    /// The last committed value of a named state, if any.
    pub fn state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.saved_state(key)?.map(|(value, _)| value))
    }

    /// When a named state was last committed, if ever.
    pub fn state_saved_at(&self, key: &str) -> Result<Option<SystemTime>, StoreError> {
        Ok(self.saved_state(key)?.map(|(_, at)| at))
    }

    fn saved_state(&self, key: &str) -> Result<Option<(Vec<u8>, SystemTime)>, StoreError> {
        if self.version < STATE_VERSION {
            return Ok(None);
        }
        self.conn
            .query_row(
                "SELECT value, updated_at FROM state WHERE key = ?1",
                [key],
                |r| Ok((r.get(0)?, from_ms(r.get(1)?))),
            )
            .optional()
            .map_err(|e| fail(&self.path, "reading a state", e))
    }

    /// The newest `limit` history entries (of one kind, or all), returned
    /// oldest first.
    pub fn history(
        &self,
        kind: Option<HistoryKind>,
        limit: usize,
    ) -> Result<Vec<HistoryRecord>, StoreError> {
        self.history_where(&HistoryQuery {
            kind,
            limit,
            ..HistoryQuery::default()
        })
    }

    /// The newest `query.limit` history entries that match `query`,
    /// returned oldest first.
    pub fn history_where(&self, query: &HistoryQuery) -> Result<Vec<HistoryRecord>, StoreError> {
        if self.version < HISTORY_VERSION || query.limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        // Only the conditions asked for are in the SQL, so that one of a
        // kind walks the `(kind, id)` index backwards from the newest row
        // and the rest the primary key; the others filter as it goes.
        let mut sql = String::from("SELECT id, at, kind, subject, event, detail FROM history");
        let mut args: Vec<SqlValue> = Vec::new();
        // Each `?` takes the next value, in the order they appear.
        let mut and = |cond: &str, values: Vec<SqlValue>| {
            sql.push_str(if args.is_empty() { " WHERE " } else { " AND " });
            sql.push_str(cond);
            args.extend(values);
        };
        if let Some(kind) = query.kind {
            and("kind = ?", vec![SqlValue::Text(kind.as_str().to_owned())]);
        }
        // SQLite's `substr` and `length` count characters, as this does.
        if let Some(prefix) = query.subject_prefix.as_deref().filter(|p| !p.is_empty()) {
            and(
                "substr(subject, 1, ?) = ?",
                vec![chars(prefix), SqlValue::Text(prefix.to_owned())],
            );
        }
        if let Some(suffix) = query.subject_suffix.as_deref().filter(|s| !s.is_empty()) {
            and(
                "substr(subject, -?) = ?",
                vec![chars(suffix), SqlValue::Text(suffix.to_owned())],
            );
        }
        if let Some(since) = query.since {
            and("at >= ?", vec![SqlValue::Integer(to_ms(since))]);
        }
        sql.push_str(" ORDER BY id DESC LIMIT ?");
        args.push(SqlValue::Integer(limit));
        let result = (|| {
            let mut stmt = self.conn.prepare(&sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(args.iter()))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                let name: String = r.get(2)?;
                // Only a newer release writes other kinds, and its files
                // are refused at open; skip rather than fail on a stray one.
                let Some(kind) = HistoryKind::parse(&name) else {
                    continue;
                };
                out.push(HistoryRecord {
                    id: r.get(0)?,
                    entry: HistoryEntry {
                        at: from_ms(r.get(1)?),
                        kind,
                        subject: r.get(3)?,
                        event: r.get(4)?,
                        detail: r.get(5)?,
                    },
                });
            }
            out.reverse();
            Ok(out)
        })();
        result.map_err(|e| fail(&self.path, "reading the history", e))
    }

    /// The newest `limit` entries of the config log, oldest first: when
    /// each configuration was started or applied, its hash, what changed.
    pub fn config_log(&self, limit: usize) -> Result<Vec<ConfigRecord>, StoreError> {
        if self.version < CONFIG_LOG_VERSION || limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let result = (|| {
            let mut stmt = self
                .conn
                .prepare("SELECT at, hash, summary FROM config_log ORDER BY id DESC LIMIT ?1")?;
            let mut rows = stmt.query([limit])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(ConfigRecord {
                    at: from_ms(r.get(0)?),
                    hash: r.get(1)?,
                    summary: r.get(2)?,
                });
            }
            out.reverse();
            Ok(out)
        })();
        result.map_err(|e| fail(&self.path, "reading the config log", e))
    }

    /// The CMMS deliveries parked with the CMMS's error, oldest first.
    pub fn parked_deliveries(&self) -> Result<Vec<ParkedDelivery>, StoreError> {
        if self.version < SINK_VERSION {
            return Ok(Vec::new());
        }
        sinks::parked(&self.conn).map_err(|e| fail(&self.path, "reading the parked deliveries", e))
    }

    /// Every CMMS connector's queue figures (connectors with deliveries
    /// only, by name).
    pub fn sink_figures(&self) -> Result<Vec<SinkFigures>, StoreError> {
        if self.version < SINK_VERSION {
            return Ok(Vec::new());
        }
        sinks::figures(&self.conn).map_err(|e| fail(&self.path, "reading the CMMS queues", e))
    }

    /// Messages waiting in the outbox, and when the oldest of them was
    /// made.
    pub fn outbox(&self) -> Result<(u64, Option<SystemTime>), StoreError> {
        if self.version < 1 {
            return Ok((0, None));
        }
        self.conn
            .query_row("SELECT count(*), min(created_at) FROM outbox", [], |r| {
                let count: i64 = r.get(0)?;
                let oldest: Option<i64> = r.get(1)?;
                Ok((count.max(0) as u64, oldest))
            })
            .map_err(|e| fail(&self.path, "counting the outbox", e))
            .and_then(|(count, oldest)| {
                let map = self.wall_map()?;
                let oldest =
                    oldest.map(|t| map.system_time(Timestamp(u64::try_from(t).unwrap_or(0))));
                Ok((count, oldest))
            })
    }

    /// The timeline's anchor the file saved last, if any.
    pub fn anchor(&self) -> Result<Option<Anchor>, StoreError> {
        Ok(self
            .saved_state(super::db::STATE_CLOCK)?
            .and_then(|(blob, _)| serde_json::from_slice::<Anchor>(&blob).ok()))
    }

    /// How the moments the file keeps (rows' `created_at`, the rules'
    /// state) read as wall-clock time: through the timeline's last saved
    /// anchor (see `crate::clock`), or as they are in a file without one.
    pub fn wall_map(&self) -> Result<WallMap, StoreError> {
        Ok(self
            .saved_state(super::db::STATE_CLOCK)?
            .and_then(|(blob, _)| serde_json::from_slice::<Anchor>(&blob).ok())
            .map(|a| a.wall_map())
            .unwrap_or(WallMap::IDENTITY))
    }

    /// The newest outbox id the file has used and the last seq of every
    /// topic: where a gateway that cannot open the file for writing goes
    /// on numbering, so that what it publishes from memory repeats
    /// neither.
    pub(super) fn resume_point(&self) -> Result<(i64, HashMap<String, u64>), StoreError> {
        if self.version < 1 {
            return Ok((0, HashMap::new()));
        }
        let result = (|| {
            let last: i64 = self.conn.query_row(
                "SELECT max(coalesce((SELECT value FROM meta WHERE key = 'last_id'), 0),
                            coalesce((SELECT max(id) FROM outbox), 0))",
                [],
                |r| r.get(0),
            )?;
            let mut stmt = self.conn.prepare("SELECT topic, seq FROM topic_seq")?;
            let seqs = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })?
                .collect::<rusqlite::Result<HashMap<_, _>>>()?;
            Ok((last, seqs))
        })();
        result.map_err(|e| fail(&self.path, "reading the last id and seqs", e))
    }
}

/// One entry of the config log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigRecord {
    /// When the configuration was started or applied.
    pub at: SystemTime,
    /// Its SHA-256 (as in the status message).
    pub hash: String,
    /// What changed.
    pub summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock-free way in (for a reader who may not create the `-shm`
    /// index) reads the same file, whatever its name holds.
    #[test]
    fn an_immutable_read_finds_the_file_by_its_exact_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd 100%?#.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", 3).unwrap();
        }
        assert_eq!(
            uri_path(Path::new("/a b/100%?#")).unwrap(),
            "/a b/100%25%3f%23"
        );
        let (_conn, _, version) = connect(&path, true).unwrap();
        assert_eq!(version, 3);
        let (_conn, _, version) = connect(&path, false).unwrap();
        assert_eq!(version, 3);
    }
}
