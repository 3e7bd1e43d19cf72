//! Opening the file: the schema and its migrations, the connection
//! settings, and moving an unusable file aside.
//!
//! # Locking
//!
//! The connection uses SQLite's normal locking in WAL mode, so other
//! processes can read the file while the gateway writes it (the
//! inspection commands, `store::inspect`); the WAL index then lives in a
//! `<name>-shm` file, counted in the disk budget. A second fieldgate is
//! kept out by `lock`, taken before the file is touched.
//!
//! # Versions
//!
//! The schema version is SQLite's `user_version` (in the file header, so it
//! changes in the same transaction as the migration). [`MIGRATIONS`] holds
//! one entry per version from the first release on: version `n` is
//! `MIGRATIONS[n - 1]`. To change the schema, append one entry; never edit
//! a released one. A file with a newer version than this build knows is
//! refused (not moved aside): it belongs to a newer fieldgate.
//!
//! # Identity and damage
//!
//! `application_id` marks the file as fieldgate's. A file that is not a
//! database, fails `PRAGMA quick_check`, or carries another application's
//! id is renamed to `<name>.corrupt-<unix time>` (with its `-wal` and
//! `-shm`) and a new store is started: never deleted, so it can be looked
//! at or recovered by hand. Once the file is open, `identity` settles the
//! store's identity for the run (a moved-aside file makes it a lost store).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::identity;
use super::lock::{self, InstanceLock};
use super::{StoreError, StoreIdentity};
use crate::config::Durability;

/// `PRAGMA application_id` of a fieldgate store: "FGAT".
pub(super) const APPLICATION_ID: i32 = 0x4647_4154;

/// Page size of new files.
const PAGE_SIZE: u32 = 4096;

/// How long opening waits for another gateway's lock (a previous process
/// still closing) before giving up; also SQLite's busy timeout.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Page cache of the connection: 8 MiB (negative = KiB).
const CACHE_KIB: i64 = -8192;

/// The schema, one entry per version: version `n` is `MIGRATIONS[n - 1]`.
pub(super) const MIGRATIONS: &[&str] = &[
    // v1: the outbox.
    //
    // `id` is assigned by the store from `meta.last_id` (kept in the same
    // transaction), so ids are never reused even when the newest rows were
    // deleted. `kind` holds `Kind::as_str`; `created_at` is ms since the
    // Unix epoch. The `(kind, created_at)` index serves both bounds (oldest
    // readings first, rows past `max_age`) and `Stats::oldest`; the primary
    // key serves `fetch_after` and `fetch_newest`.
    "CREATE TABLE outbox (
         id INTEGER PRIMARY KEY,
         topic TEXT NOT NULL,
         seq INTEGER NOT NULL,
         payload BLOB NOT NULL,
         qos INTEGER NOT NULL,
         retain INTEGER NOT NULL,
         kind TEXT NOT NULL,
         created_at INTEGER NOT NULL
     );
     CREATE INDEX outbox_kind_age ON outbox (kind, created_at);
     CREATE TABLE topic_seq (topic TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;
     CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
     INSERT INTO meta (key, value) VALUES
         ('last_id', 0), ('evicted_readings', 0), ('evicted_other', 0), ('opens', 0);",
    // v2: named state blobs (the rules engine, the work-order book, the
    // meters), each written in the same transaction as the last messages
    // queued before it, so after a crash the state is never ahead of the
    // outbox. `updated_at` is ms since the Unix epoch.
    "CREATE TABLE state (
         key TEXT PRIMARY KEY,
         value BLOB NOT NULL,
         updated_at INTEGER NOT NULL
     ) WITHOUT ROWID;",
    // v3: the history of alarm and work-order changes (and, with no change
    // of schema, of writes: kind `write`), written in the same transaction
    // as the last messages queued before them (like `state`). `id` is
    // SQLite's rowid: it only grows, since only the oldest rows of each
    // trail are ever deleted (`HISTORY_ROWS`, `WRITE_ROWS`; see `history`).
    // `at` is ms since the Unix epoch; `kind` holds `HistoryKind::as_str`;
    // `detail` is JSON text. `(kind, id)` serves "the newest N of one
    // kind"; the primary key serves the newest N of all.
    "CREATE TABLE history (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         kind TEXT NOT NULL,
         subject TEXT NOT NULL,
         event TEXT NOT NULL,
         detail TEXT NOT NULL
     );
     CREATE INDEX history_kind ON history (kind, id);",
    // v4: the change-control trail: one row per configuration the gateway
    // started with or applied on reload (`at` in ms since the Unix epoch,
    // the config's SHA-256, a one-line summary of what changed). Small and
    // rare; the newest `CONFIG_LOG_ROWS` are kept.
    "CREATE TABLE config_log (
         id INTEGER PRIMARY KEY,
         at INTEGER NOT NULL,
         hash TEXT NOT NULL,
         summary TEXT NOT NULL
     );",
    // v5: the CMMS connectors' queues. `sink_queue` holds one row per
    // delivery of a work-order or meter message to one connector (`sink`),
    // written in the same transaction as the outbox message it copies and
    // deleted once the CMMS confirmed it. AUTOINCREMENT: a delivery task
    // reads "after the last id it handled", so an id must never be given
    // again, not even after the newest rows were deleted. `kind` holds
    // `DeliveryKind::as_str`; `created_at` and `parked_at` are ms since the
    // Unix epoch; `parked` is the CMMS's error (NULL while waiting).
    // `(sink, id, created_at, parked)` serves a connector's queue in order,
    // its count and, covering, its figures (read by every `/metrics`
    // scrape): they never read the payloads, however long the backlog.
    // `sink_refs` is what each connector learned of a work order (the
    // CMMS's reference, the last status), one row per (sink, key).
    "CREATE TABLE sink_queue (
         id INTEGER PRIMARY KEY AUTOINCREMENT,
         sink TEXT NOT NULL,
         kind TEXT NOT NULL,
         key TEXT NOT NULL,
         event TEXT NOT NULL,
         topic TEXT NOT NULL,
         payload BLOB NOT NULL,
         created_at INTEGER NOT NULL,
         parked TEXT,
         parked_at INTEGER
     );
     CREATE INDEX sink_queue_sink ON sink_queue (sink, id, created_at, parked);
     CREATE TABLE sink_refs (
         sink TEXT NOT NULL,
         key TEXT NOT NULL,
         wo_id TEXT NOT NULL,
         reference TEXT NOT NULL,
         status TEXT NOT NULL,
         topic TEXT NOT NULL,
         updated_at INTEGER NOT NULL,
         PRIMARY KEY (sink, key)
     ) WITHOUT ROWID;",
];

/// The schema version that added the `state` table.
pub(super) const STATE_VERSION: i64 = 2;

/// The schema version that added the `history` table.
pub(super) const HISTORY_VERSION: i64 = 3;

/// The first schema with the `config_log` table.
pub(super) const CONFIG_LOG_VERSION: i64 = 4;

/// The first schema with the CMMS sink queues (`sink_queue`, `sink_refs`).
pub(super) const SINK_VERSION: i64 = 5;

/// Why a file cannot be used as it is.
enum Unusable {
    /// Damaged or not ours: move it aside and start again.
    MoveAside(String),
    /// Any other failure (locked, permissions, newer schema): report it and
    /// leave the file alone.
    Fail(StoreError),
}

/// Opens (creating, migrating or replacing) the store at `path`, holding
/// its lock: keep the lock until the connection is closed. Also settles
/// the store's identity for this run (`identity`). (The gateway uses
/// [`attempt`], which waits out a failing disk.)
#[cfg(test)]
pub(super) fn open(
    path: &Path,
    durability: Durability,
) -> Result<(Connection, InstanceLock, StoreIdentity), StoreError> {
    ensure_parent(path)?;
    // Before anything else: a file in use is never moved aside.
    let lock = lock::acquire(path, BUSY_TIMEOUT)?;
    let (conn, moved_aside) = open_locked(path, durability)?;
    let identity = identity::establish(&conn, path, moved_aside.as_deref())?;
    Ok((conn, lock, identity))
}

/// [`open`] once the lock is held; also returns why the previous file was
/// moved aside, if it was.
fn open_locked(
    path: &Path,
    durability: Durability,
) -> Result<(Connection, Option<String>), StoreError> {
    match try_open(path, durability) {
        Ok(conn) => Ok((conn, None)),
        Err(Unusable::Fail(e)) => Err(e),
        Err(Unusable::MoveAside(reason)) => {
            move_aside(path, &reason)?;
            let conn = try_open(path, durability).map_err(|e| match e {
                Unusable::Fail(e) => e,
                Unusable::MoveAside(reason) => {
                    let e = StoreError::Sqlite(format!(
                        "{}: a new store is unusable too: {reason}",
                        path.display()
                    ));
                    tracing::error!(error = %e, "cannot start the outbox");
                    e
                }
            })?;
            Ok((conn, Some(reason)))
        }
    }
}

/// How an attempt at opening the store went ([`attempt`]).
pub(super) enum Attempt {
    /// Open, with its lock and the store's identity for this run.
    Open(Connection, InstanceLock, StoreIdentity),
    /// Not now (the disk is full, read-only or failing): the lock if it
    /// was taken (kept, so that no other fieldgate takes the store
    /// meanwhile), and why.
    Wait(Option<InstanceLock>, StoreError),
}

/// Like [`open`], for a gateway that runs on without its file: a failure
/// of the disk is [`Attempt::Wait`] (try again later), and only what
/// waiting cannot cure is an error: another fieldgate holds the store, or
/// a newer fieldgate wrote it ([`StoreError::Refused`]). `lock` is the one
/// an earlier attempt took.
pub(super) fn attempt(
    path: &Path,
    durability: Durability,
    lock: Option<InstanceLock>,
) -> Result<Attempt, StoreError> {
    let lock = match lock {
        Some(lock) => lock,
        None => {
            if let Err(e) = ensure_parent(path) {
                return Ok(Attempt::Wait(None, e));
            }
            match lock::acquire(path, BUSY_TIMEOUT) {
                Ok(lock) => lock,
                Err(e @ StoreError::Refused(_)) => return Err(e),
                Err(e) => return Ok(Attempt::Wait(None, e)),
            }
        }
    };
    let (conn, moved_aside) = match open_locked(path, durability) {
        Ok(opened) => opened,
        Err(e @ StoreError::Refused(_)) => return Err(e),
        Err(e) => return Ok(Attempt::Wait(Some(lock), e)),
    };
    match identity::establish(&conn, path, moved_aside.as_deref()) {
        Ok(identity) => Ok(Attempt::Open(conn, lock, identity)),
        Err(e @ StoreError::Refused(_)) => Err(e),
        Err(e) => Ok(Attempt::Wait(Some(lock), e)),
    }
}

/// Creates the folder the file lives in.
fn ensure_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            let e = StoreError::Io(format!(
                "cannot create the store folder {}: {e}",
                dir.display()
            ));
            tracing::error!(error = %e, "cannot start the outbox");
            e
        }),
        _ => Ok(()),
    }
}

/// The first 16 bytes of every SQLite database file.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// Checks the header before SQLite sees the file: SQLite would delete or
/// rewrite side files (an unreadable WAL) of a file that is not a database,
/// and they are to be moved aside as they are.
fn check_magic(path: &Path) -> Result<(), Unusable> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        // Missing: a new store. Unreadable: SQLite reports it below.
        Err(_) => return Ok(()),
    };
    let mut head = Vec::with_capacity(MAGIC.len());
    if let Err(e) = file
        .by_ref()
        .take(MAGIC.len() as u64)
        .read_to_end(&mut head)
    {
        let e = StoreError::Io(format!("cannot read {}: {e}", path.display()));
        tracing::error!(error = %e, "cannot open the outbox");
        return Err(Unusable::Fail(e));
    }
    // An empty file is a new database.
    if head.is_empty() || head.as_slice() == MAGIC {
        Ok(())
    } else {
        Err(Unusable::MoveAside(
            "not an SQLite database (bad header)".into(),
        ))
    }
}

/// One attempt at opening the file as it is.
fn try_open(path: &Path, durability: Durability) -> Result<Connection, Unusable> {
    let fail = |what: &str, e: rusqlite::Error| classify(path, what, e);
    check_magic(path)?;
    // No URI parsing (the path is a plain path), no mutex (one thread owns
    // the connection).
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| fail("open", e))?;
    // Readers (`fieldgate alarms` while the gateway runs) hold the file
    // only for a query's length; a checkpoint waits for them this long.
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| fail("busy_timeout", e))?;
    // Normal locking (the default), not exclusive: see the module docs.

    // The first read: fails with NOTADB on a file of garbage.
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(|e| fail("reading the header", e))?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| fail("reading the schema", e))?;
    let fresh = app_id == 0 && objects == 0;
    if !fresh && app_id != APPLICATION_ID {
        return Err(Unusable::MoveAside(format!(
            "application_id {app_id:#x} is not fieldgate's ({APPLICATION_ID:#x})"
        )));
    }
    quick_check(&conn).map_err(|e| match e {
        Ok(report) => Unusable::MoveAside(format!("quick_check failed: {report}")),
        Err(e) => fail("quick_check", e),
    })?;
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(|e| fail("reading the schema version", e))?;
    if version > MIGRATIONS.len() as i64 {
        let e = StoreError::Refused(format!(
            "{} has schema version {version}, newer than this fieldgate knows ({}): \
             it was written by a newer release; leaving it untouched",
            path.display(),
            MIGRATIONS.len()
        ));
        tracing::error!(error = %e, "cannot start the outbox");
        return Err(Unusable::Fail(e));
    }

    if fresh {
        // Both only take effect before the first table exists.
        conn.pragma_update(None, "page_size", PAGE_SIZE)
            .map_err(|e| fail("page_size", e))?;
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(|e| fail("auto_vacuum", e))?;
    }
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| fail("journal_mode", e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        let e = StoreError::Sqlite(format!(
            "{}: SQLite refused WAL mode (journal_mode is {mode})",
            path.display()
        ));
        tracing::error!(error = %e, "cannot start the outbox");
        return Err(Unusable::Fail(e));
    }
    // FULL: the WAL is synced at every commit (survives power loss).
    // NORMAL: only at checkpoints (survives a crash of the process).
    let sync = match durability {
        Durability::Full => "FULL",
        Durability::Normal => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(|e| fail("synchronous", e))?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)
        .map_err(|e| fail("cache_size", e))?;
    conn.pragma_update(None, "temp_store", "MEMORY")
        .map_err(|e| fail("temp_store", e))?;

    migrate(&conn).map_err(|e| fail("migrating the schema", e))?;
    // Counts the opens, which helps reading a field log (and proves at
    // once that the file is writable).
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'opens'", [])
        .map_err(|e| fail("counting the opens", e))?;
    Ok(conn)
}

/// Runs `PRAGMA quick_check`: `Err(Ok(report))` when it finds damage.
fn quick_check(conn: &Connection) -> Result<(), Result<String, rusqlite::Error>> {
    let mut stmt = conn.prepare("PRAGMA quick_check").map_err(Err)?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(Err)?
        .take(5)
        .collect::<Result<_, _>>()
        .map_err(Err)?;
    if matches!(lines.as_slice(), [only] if only == "ok") {
        Ok(())
    } else {
        Err(Ok(lines.join("; ")))
    }
}

/// Applies the migrations the file lacks, each in its own transaction
/// together with its new `user_version`.
pub(super) fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let to = i as i64 + 1;
        if to <= version {
            continue;
        }
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", to)?;
        tx.commit()?;
        tracing::info!(version = to, "outbox schema migrated");
    }
    Ok(())
}

/// Sorts an SQLite failure: damage means move aside, the rest is reported.
fn classify(path: &Path, what: &str, e: rusqlite::Error) -> Unusable {
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            Unusable::MoveAside(format!("{what}: {e}"))
        }
        code => {
            let hint = match code {
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                    " (is another fieldgate using it?)"
                }
                _ => "",
            };
            let e = StoreError::Sqlite(format!("{}: {what}: {e}{hint}", path.display()));
            tracing::error!(error = %e, "cannot open the outbox");
            Unusable::Fail(e)
        }
    }
}

/// `path` with `suffix` appended to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Renames the file (and its `-wal`, `-shm`, `-journal`) to
/// `<name>.corrupt-<unix time>`.
fn move_aside(path: &Path, reason: &str) -> Result<PathBuf, StoreError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = format!(".corrupt-{secs}");
    // Two failures within a second must not overwrite the first file.
    let mut target = with_suffix(path, &base);
    let mut n = 1;
    while target.exists() || with_suffix(&target, "-wal").exists() {
        target = with_suffix(path, &format!("{base}-{n}"));
        n += 1;
        if n > 1000 {
            return Err(StoreError::Io(format!(
                "{}: too many files named {}*",
                path.display(),
                target.display()
            )));
        }
    }
    std::fs::rename(path, &target).map_err(|e| {
        let e = StoreError::Io(format!(
            "cannot move the unusable outbox {} to {}: {e}",
            path.display(),
            target.display()
        ));
        tracing::error!(error = %e, reason, "cannot start the outbox");
        e
    })?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let from = with_suffix(path, suffix);
        if from.exists() {
            let to = with_suffix(&target, suffix);
            if let Err(e) = std::fs::rename(&from, &to) {
                // The main file is already out of the way; a stale WAL left
                // behind would be ignored by the new file (salts differ),
                // but say so.
                tracing::error!(from = %from.display(), to = %to.display(), error = %e,
                    "cannot move the unusable outbox's side file");
            }
        }
    }
    tracing::error!(
        path = %path.display(),
        moved_to = %target.display(),
        reason,
        "the outbox file is unusable: moved it aside and starting a new one"
    );
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_in_order_and_only_once() {
        let conn = Connection::open_in_memory().unwrap();
        migrate(&conn).unwrap();
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
        let id: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .unwrap();
        assert_eq!(id, APPLICATION_ID);
        // Again: nothing to do (a second CREATE TABLE would fail).
        migrate(&conn).unwrap();
    }

    /// A store written by the release before history (schema v2) opens,
    /// gains the `history` table and keeps its outbox and states.
    #[test]
    fn a_v2_file_migrates_to_v3_keeping_its_rows_and_states() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        {
            // What a v2 fieldgate left behind.
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", i as i64 + 1)
                    .unwrap();
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.execute_batch(
                "INSERT INTO outbox VALUES (1, 't', 1, x'7b7d', 1, 0, 'alarm', 5);
                 UPDATE meta SET value = 1 WHERE key = 'last_id';
                 INSERT INTO state VALUES ('rules.engine', x'7b7d', 5);",
            )
            .unwrap();
        }
        let (conn, _lock, _) = open(&path, Durability::Normal).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SINK_VERSION);
        assert_eq!(MIGRATIONS.len() as i64, SINK_VERSION);
        let kept: (i64, Vec<u8>) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM outbox), value FROM state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(kept, (1, b"{}".to_vec()));
        conn.execute(
            "INSERT INTO history (at, kind, subject, event, detail)
             VALUES (1, 'alarm', 'hot', 'active_unacked', '{}')",
            [],
        )
        .unwrap();
        // The index is there for "newest N of one kind".
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM history WHERE kind = 'alarm'
                 ORDER BY id DESC LIMIT 5",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("history_kind"), "{plan}");
        // No moving aside: it was a good file.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(!names.iter().any(|n| n.contains("corrupt")), "{names:?}");
    }

    /// A store written by the release before the CMMS queues (schema v4)
    /// opens, gains `sink_queue` and `sink_refs`, and keeps every row.
    #[test]
    fn a_v4_file_migrates_to_v5_keeping_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        {
            // What a v4 fieldgate left behind.
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "journal_mode", "WAL").unwrap();
            for (i, sql) in MIGRATIONS[..4].iter().enumerate() {
                conn.execute_batch(sql).unwrap();
                conn.pragma_update(None, "user_version", i as i64 + 1)
                    .unwrap();
            }
            conn.pragma_update(None, "application_id", APPLICATION_ID)
                .unwrap();
            conn.execute_batch(
                "INSERT INTO outbox VALUES (1, 't', 1, x'7b7d', 1, 0, 'workorder', 5);
                 UPDATE meta SET value = 1 WHERE key = 'last_id';
                 INSERT INTO state VALUES ('rules.engine', x'7b7d', 5);
                 INSERT INTO history (at, kind, subject, event, detail)
                     VALUES (1, 'workorder', 'wo-1', 'raised', '{}');
                 INSERT INTO config_log (at, hash, summary) VALUES (1, 'abc', 'start');",
            )
            .unwrap();
        }
        let (conn, _lock, _) = open(&path, Durability::Normal).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SINK_VERSION);
        let kept: (i64, i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM outbox), (SELECT count(*) FROM state),
                        (SELECT count(*) FROM history), (SELECT count(*) FROM config_log)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(kept, (1, 1, 1, 1));
        // The new tables take rows; a deleted newest id is never given again.
        let insert = "INSERT INTO sink_queue (sink, kind, key, event, topic, payload, created_at)
                      VALUES ('maximo', 'workorder', 'k', 'raised', 't', x'7b7d', 1)";
        conn.execute(insert, []).unwrap();
        conn.execute("DELETE FROM sink_queue", []).unwrap();
        conn.execute(insert, []).unwrap();
        let id: i64 = conn
            .query_row("SELECT id FROM sink_queue", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, 2);
        conn.execute(
            "INSERT INTO sink_refs VALUES ('maximo', 'k', 'wo-1', '1001', 'open', 't', 1)",
            [],
        )
        .unwrap();
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT id FROM sink_queue WHERE sink = 'maximo' AND id > 0
                 ORDER BY id",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("sink_queue_sink"), "{plan}");
        // The figures read the index alone, never the payloads.
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN SELECT sink, sum(parked IS NULL), sum(parked IS NOT NULL),
                        min(CASE WHEN parked IS NULL THEN created_at END)
                 FROM sink_queue GROUP BY sink ORDER BY sink",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("COVERING INDEX sink_queue_sink"), "{plan}");
    }

    #[test]
    fn suffixes_append_to_the_file_name() {
        assert_eq!(
            with_suffix(Path::new("/a/b.db"), "-wal"),
            PathBuf::from("/a/b.db-wal")
        );
    }
}
