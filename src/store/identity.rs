//! The store's identity: the `store` field every message carries beside
//! its `seq`, so that one `(store, topic, seq)` names one message, ever.
//!
//! # The rule
//!
//! A `seq` is only unique while the store that issued it keeps every
//! commit. So the identity (a ULID, which sorts by creation time) is made
//! new whenever the store may have lost commits or gone back in time:
//!
//! * a new file ([`StoreStart::New`]);
//! * the previous run did not stop cleanly ([`StoreStart::Renewed`]): with
//!   `durability = "normal"` a power cut loses the last commits, and a
//!   copy of a running store is in the same state;
//! * the previous store is gone ([`StoreStart::Lost`]): the file was moved
//!   aside as unusable, is missing while its marker file is there, is
//!   another file than the one last used (restored from a backup, copied
//!   from another gateway), or is that file at an earlier point than
//!   where the last run left it (an older copy put back).
//!
//! Otherwise (a clean stop and the same file) the identity is kept
//! ([`StoreStart::Kept`]). A new identity always sorts after the one it
//! replaces, when that one is known, even if the clock was stepped back. Rows already in the outbox keep the identity
//! they were written with: they are the same messages.
//!
//! # Where it lives
//!
//! In the `meta` table (integers only, so each ULID is two rows: high and
//! low 64 bits): `store_id_*` (the identity in messages), `file_id_*` (made
//! with the file, never changed) and `running` (1 from open to clean
//! close). The marker file `<name>.identity` next to the database records
//! the file id, the identity and the open count after each open: it is
//! what tells a missing, replaced or rewound file from a new one. It is
//! only a witness: when it cannot be written the gateway runs on (logged),
//! and the worst outcome is a missed or a false "lost" at the next start.
//! Restoring the data folder as a whole (marker and file together) cannot
//! be told from a clean restart.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use ulid::Ulid;

use super::schema::with_suffix;
use super::{StoreError, StoreIdentity, StoreStart};
use crate::events::StoreLost;

/// What the marker file next to the database says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Marker {
    /// The id of the file (made with it).
    pub file: Ulid,
    /// The identity messages carried.
    pub store: Ulid,
    /// The file's open count after that open.
    pub opens: i64,
}

/// What the file says about itself at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileState {
    /// `file_id`, if the file has one (not a new file, not one from before
    /// identities).
    pub file: Option<Ulid>,
    /// `store_id`.
    pub store: Option<Ulid>,
    /// The previous run did not close the file cleanly.
    pub running: bool,
    /// Opens of the file, this one included.
    pub opens: i64,
}

/// The decision, before anything is written: what started, and whether
/// the file needs a new file id and a new identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    /// What kind of start this is.
    pub start: StoreStart,
    /// Make a new identity.
    pub renew: bool,
}

/// Decides the identity of this start (pure: see the module docs).
/// `moved_aside` is the reason the previous file was moved aside, if it
/// was.
pub(super) fn decide(
    file: &FileState,
    marker: Option<&Marker>,
    moved_aside: Option<&str>,
) -> Decision {
    let previous = marker.map(|m| m.store.to_string());
    let lost = |reason: String| Decision {
        start: StoreStart::Lost {
            reason,
            previous: previous.clone(),
        },
        renew: true,
    };
    if let Some(reason) = moved_aside {
        return lost(format!(
            "the store file was unusable and moved aside: {reason}"
        ));
    }
    let (Some(file_id), Some(_)) = (file.file, file.store) else {
        // No identity yet: a new file, or one from before identities.
        return match marker {
            Some(_) if file.opens <= 1 => {
                lost("the store file was missing (its marker file was there)".into())
            }
            _ => Decision {
                start: StoreStart::New,
                renew: true,
            },
        };
    };
    match marker {
        Some(m) if m.file != file_id => lost(
            "the store file is not the one last used here (restored from a backup or copied?)"
                .into(),
        ),
        Some(m) if m.opens >= file.opens => lost(format!(
            "the store file went back in time (opened {} times, {} when last used: an older copy?)",
            file.opens, m.opens
        )),
        _ if file.running => Decision {
            start: StoreStart::Renewed {
                reason: "the previous run did not stop cleanly".into(),
            },
            renew: true,
        },
        _ => Decision {
            start: StoreStart::Kept,
            renew: false,
        },
    }
}

/// `fresh`, or the identity just after `previous` when the clock (stepped
/// back) made `fresh` sort before it: a consumer may take the later
/// identity for the newer store.
pub(super) fn later_than(fresh: Ulid, previous: Option<Ulid>) -> Ulid {
    match previous {
        Some(p) if fresh <= p => p.increment().unwrap_or(fresh),
        _ => fresh,
    }
}

/// The marker file of the store at `path`.
pub(super) fn marker_path(path: &Path) -> PathBuf {
    with_suffix(path, ".identity")
}

/// Reads the marker file; `None` when missing or unreadable (logged).
fn read_marker(path: &Path) -> Option<Marker> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the store's identity marker; ignoring it");
            return None;
        }
    };
    let parsed = parse_marker(&text);
    if parsed.is_none() {
        tracing::warn!(path = %path.display(), "the store's identity marker is not understood; ignoring it");
    }
    parsed
}

/// `file=<ulid> store=<ulid> opens=<n>`, in any order.
pub(super) fn parse_marker(text: &str) -> Option<Marker> {
    let (mut file, mut store, mut opens) = (None, None, None);
    for word in text.split_whitespace() {
        match word.split_once('=') {
            Some(("file", v)) => file = Ulid::from_string(v).ok(),
            Some(("store", v)) => store = Ulid::from_string(v).ok(),
            Some(("opens", v)) => opens = v.parse().ok(),
            _ => {}
        }
    }
    Some(Marker {
        file: file?,
        store: store?,
        opens: opens?,
    })
}

/// The marker file's text.
pub(super) fn format_marker(m: &Marker) -> String {
    format!("file={} store={} opens={}\n", m.file, m.store, m.opens)
}

/// Writes the marker (a temporary file, synced, renamed over the old one);
/// a failure is logged, not returned (see the module docs).
fn write_marker(path: &Path, m: &Marker) {
    use std::io::Write as _;
    let tmp = with_suffix(path, ".tmp");
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format_marker(m).as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        tracing::warn!(path = %path.display(), error = %e,
            "cannot write the store's identity marker; a lost store may go unnoticed at the next start");
    }
}

fn meta_ulid(conn: &Connection, name: &str) -> rusqlite::Result<Option<Ulid>> {
    let part = |key: String| -> rusqlite::Result<Option<i64>> {
        conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
    };
    let hi = part(format!("{name}_hi"))?;
    let lo = part(format!("{name}_lo"))?;
    // Stored bit for bit as i64: the casts restore the u64 halves.
    Ok(hi
        .zip(lo)
        .map(|(hi, lo)| Ulid(((hi as u64 as u128) << 64) | lo as u64 as u128)))
}

fn set_meta_ulid(conn: &Connection, name: &str, id: Ulid) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?;
    stmt.execute(params![format!("{name}_hi"), (id.0 >> 64) as u64 as i64])?;
    stmt.execute(params![format!("{name}_lo"), id.0 as u64 as i64])?;
    Ok(())
}

fn meta_int(conn: &Connection, key: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Reads, decides and records the identity of this start (the file must
/// be open and migrated). The change is committed with `synchronous =
/// FULL` whatever the durability: a `running` mark lost in a power cut
/// would hide the very rollback it is there to reveal.
pub(super) fn establish(
    conn: &Connection,
    path: &Path,
    moved_aside: Option<&str>,
) -> Result<StoreIdentity, StoreError> {
    let fail = |e: rusqlite::Error| {
        let e = StoreError::Sqlite(format!("{}: store identity: {e}", path.display()));
        tracing::error!(error = %e, "cannot start the outbox");
        e
    };
    let file = FileState {
        file: meta_ulid(conn, "file_id").map_err(fail)?,
        store: meta_ulid(conn, "store_id").map_err(fail)?,
        running: meta_int(conn, "running").map_err(fail)? == Some(1),
        opens: meta_int(conn, "opens").map_err(fail)?.unwrap_or(0),
    };
    let marker_file = marker_path(path);
    let marker = read_marker(&marker_file);
    let decision = decide(&file, marker.as_ref(), moved_aside);
    let file_id = file.file.unwrap_or_else(Ulid::generate);
    let store_id = match file.store {
        Some(id) if !decision.renew => id,
        _ => later_than(Ulid::generate(), file.store.max(marker.map(|m| m.store))),
    };
    let sync: i64 = conn
        .pragma_query_value(None, "synchronous", |r| r.get(0))
        .map_err(fail)?;
    let write = || -> rusqlite::Result<()> {
        conn.pragma_update(None, "synchronous", "FULL")?;
        let tx = conn.unchecked_transaction()?;
        set_meta_ulid(&tx, "file_id", file_id)?;
        set_meta_ulid(&tx, "store_id", store_id)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('running', 1)
             ON CONFLICT (key) DO UPDATE SET value = 1",
            [],
        )?;
        tx.commit()
    };
    let written = write();
    conn.pragma_update(None, "synchronous", sync)
        .map_err(fail)?;
    written.map_err(fail)?;
    write_marker(
        &marker_file,
        &Marker {
            file: file_id,
            store: store_id,
            opens: file.opens,
        },
    );
    let identity = StoreIdentity {
        id: store_id.to_string(),
        start: decision.start,
    };
    report(&identity);
    Ok(identity)
}

/// Says what kind of start this is: a lost store is an event (log line
/// and counter), a renewed identity a warning.
fn report(identity: &StoreIdentity) {
    match &identity.start {
        StoreStart::Lost { reason, previous } => StoreLost {
            reason,
            previous: previous.as_deref(),
            store: &identity.id,
        }
        .emit(),
        StoreStart::Renewed { reason } => tracing::warn!(
            store = %identity.id,
            reason = %reason,
            "new store identity: the outbox may have lost its last commits; \
             consumers start afresh on the new identity"
        ),
        StoreStart::New => tracing::info!(store = %identity.id, "new outbox store"),
        StoreStart::Kept => tracing::debug!(store = %identity.id, "store identity kept"),
    }
}

/// Records a clean stop (the last write before the file is closed); a
/// failure is logged: the next start then renews the identity, which is
/// safe.
pub(super) fn mark_stopped(conn: &Connection) {
    if let Err(e) = conn.execute("UPDATE meta SET value = 0 WHERE key = 'running'", []) {
        tracing::warn!(error = %e, "outbox: cannot record the clean stop; the next start renews the store identity");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulid(n: u128) -> Ulid {
        Ulid(n)
    }

    fn file(running: bool, opens: i64) -> FileState {
        FileState {
            file: Some(ulid(1)),
            store: Some(ulid(2)),
            running,
            opens,
        }
    }

    fn marker(file: u128, opens: i64) -> Marker {
        Marker {
            file: ulid(file),
            store: ulid(2),
            opens,
        }
    }

    #[test]
    fn a_clean_restart_of_the_same_file_keeps_the_identity() {
        let d = decide(&file(false, 5), Some(&marker(1, 4)), None);
        assert_eq!(d.start, StoreStart::Kept);
        assert!(!d.renew);
        // No marker (it could not be written): still the same file.
        assert!(!decide(&file(false, 5), None, None).renew);
    }

    #[test]
    fn an_unclean_stop_renews_the_identity_without_calling_it_lost() {
        let d = decide(&file(true, 5), Some(&marker(1, 4)), None);
        assert!(d.renew);
        assert!(matches!(d.start, StoreStart::Renewed { .. }));
    }

    #[test]
    fn a_new_file_is_new_unless_its_marker_says_one_was_there() {
        let fresh = FileState {
            file: None,
            store: None,
            running: false,
            opens: 1,
        };
        assert_eq!(decide(&fresh, None, None).start, StoreStart::New);
        let d = decide(&fresh, Some(&marker(1, 9)), None);
        assert!(d.renew);
        match d.start {
            StoreStart::Lost { reason, previous } => {
                assert!(reason.contains("missing"), "{reason}");
                assert_eq!(previous, Some(ulid(2).to_string()));
            }
            other => panic!("{other:?}"),
        }
        // A file from before identities (opened before) just gets one.
        let legacy = FileState { opens: 7, ..fresh };
        assert_eq!(decide(&legacy, None, None).start, StoreStart::New);
    }

    #[test]
    fn moved_aside_replaced_and_rewound_files_are_lost() {
        let fresh = FileState {
            file: None,
            store: None,
            running: false,
            opens: 1,
        };
        let lost = |d: Decision| d.renew && matches!(d.start, StoreStart::Lost { .. });
        assert!(lost(decide(&fresh, None, Some("bad header"))));
        assert!(lost(decide(&file(false, 5), Some(&marker(9, 4)), None)));
        assert!(lost(decide(&file(false, 5), Some(&marker(1, 5)), None)));
        assert!(lost(decide(&file(false, 5), Some(&marker(1, 40)), None)));
    }

    #[test]
    fn a_new_identity_sorts_after_the_one_it_replaces_even_after_a_clock_step() {
        let now = Ulid::from_parts(2_000_000, 5);
        assert_eq!(later_than(now, None), now);
        assert_eq!(later_than(now, Some(Ulid::from_parts(1_000_000, 9))), now);
        let ahead = Ulid::from_parts(3_000_000, 7);
        assert_eq!(later_than(now, Some(ahead)), Ulid::from_parts(3_000_000, 8));
        assert!(later_than(now, Some(ahead)) > ahead);
    }

    #[test]
    fn the_marker_round_trips_and_garbage_is_none() {
        let m = Marker {
            file: Ulid::generate(),
            store: Ulid::generate(),
            opens: 12,
        };
        assert_eq!(parse_marker(&format_marker(&m)), Some(m));
        assert_eq!(parse_marker("file=x store=y opens=1"), None);
        assert_eq!(parse_marker(""), None);
    }
}
