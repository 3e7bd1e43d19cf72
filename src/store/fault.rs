//! What is wrong with the disk, in a word a technician can act on.
//!
//! SQLite reports a full file system in more than one way: `SQLITE_FULL`
//! when a write needs a new page, but `disk I/O error` when it cannot grow
//! its `-shm` index (which is how opening a store on a full partition
//! fails). So the error text is only the first guess; the file system's
//! own figures (`statvfs(3)`: read-only flag, free blocks) settle it.

use std::path::Path;

/// Why the store runs on its memory queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// No space left on the file system (or the quota is used up).
    Full,
    /// The file system, folder or file is not writable (mounted
    /// read-only, wrong owner or mode).
    ReadOnly,
    /// The device returns I/O errors (a failing SD card).
    Io,
    /// Anything else that keeps the file from being opened or written.
    Unavailable,
}

impl DiskFault {
    /// The name used in `/readyz`, `/api/status` and the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFault::Full => "disk_full",
            DiskFault::ReadOnly => "read_only",
            DiskFault::Io => "io_error",
            DiskFault::Unavailable => "unavailable",
        }
    }

    /// Every fault, for the metric's series.
    pub const ALL: [DiskFault; 4] = [
        DiskFault::Full,
        DiskFault::ReadOnly,
        DiskFault::Io,
        DiskFault::Unavailable,
    ];
}

/// The fault an error message describes (SQLite's and the OS's wording),
/// checked against the file system that holds `path`.
pub(super) fn classify(message: &str, path: &Path) -> DiskFault {
    let by_text = from_text(message);
    match (by_text, from_fs(path)) {
        // The file system's word wins over a generic I/O error.
        (DiskFault::Io | DiskFault::Unavailable, Some(fs)) => fs,
        (t, _) => t,
    }
}

/// The fault named by an error message.
fn from_text(message: &str) -> DiskFault {
    let m = message.to_ascii_lowercase();
    if m.contains("disk is full")
        || m.contains("disk full")
        || m.contains("no space left")
        || m.contains("os error 28")
        || m.contains("quota exceeded")
    {
        DiskFault::Full
    } else if m.contains("readonly")
        || m.contains("read-only")
        || m.contains("permission denied")
        || m.contains("os error 13")
        || m.contains("os error 30")
    {
        DiskFault::ReadOnly
    } else if m.contains("i/o error") || m.contains("input/output error") {
        DiskFault::Io
    } else {
        DiskFault::Unavailable
    }
}

/// Free space below this on the store's file system counts as full: a
/// group commit needs a few pages of WAL.
const FULL_BELOW: u64 = 64 * 1024;

/// What the file system holding `path` says: read-only, full, or nothing
/// wrong (`None`, also when it cannot be asked).
fn from_fs(path: &Path) -> Option<DiskFault> {
    // The file may not exist (a store never created): ask its folder.
    let at = if path.exists() {
        path
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty())?
    };
    let st = rustix::fs::statvfs(at).ok()?;
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        Some(DiskFault::ReadOnly)
    } else if st.f_bavail.saturating_mul(st.f_frsize.max(1)) < FULL_BELOW {
        Some(DiskFault::Full)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_their_fault() {
        let cases = [
            (
                "sqlite: group commit: database or disk is full",
                DiskFault::Full,
            ),
            (
                "cannot open the lock file /d/o.db.lock: No space left on device (os error 28)",
                DiskFault::Full,
            ),
            (
                "sqlite: group commit: attempt to write a readonly database",
                DiskFault::ReadOnly,
            ),
            (
                "cannot create the store folder /x: Permission denied (os error 13)",
                DiskFault::ReadOnly,
            ),
            ("Read-only file system (os error 30)", DiskFault::ReadOnly),
            ("/d/o.db: reading the header: disk I/O error", DiskFault::Io),
            (
                "/d/o.db: open: unable to open database file",
                DiskFault::Unavailable,
            ),
        ];
        for (text, fault) in cases {
            assert_eq!(from_text(text), fault, "{text}");
        }
    }

    /// A healthy, writable temp folder adds nothing to the text's guess.
    #[test]
    fn a_writable_folder_with_room_keeps_the_texts_word() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("o.db");
        assert_eq!(
            classify("disk I/O error", &path),
            DiskFault::Io,
            "is the temp folder nearly full?"
        );
    }
}
