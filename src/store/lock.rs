//! One fieldgate per store file.
//!
//! Two gateways on one outbox would publish the same rows twice and
//! delete each other's acknowledged ones. SQLite's exclusive locking mode
//! would prevent that, but it also keeps every other process out, and
//! `fieldgate alarms` / `fieldgate workorders` must read the file while the
//! gateway runs. So the connection uses normal locking (readers and the
//! writer side by side in WAL mode) and the single writer is enforced by an
//! advisory lock on a file next to the database, `<name>.lock`.
//!
//! The lock is on a file of its own, never on the database: on POSIX,
//! closing any descriptor of a file drops the process's `fcntl` locks on
//! it, including SQLite's. The file is left in place when the lock is
//! released (deleting it would let two processes each lock a different
//! file of the same name). The operating system releases the lock when the
//! process dies, so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use super::StoreError;
use super::schema::with_suffix;

/// Held for as long as the store has the file open.
#[derive(Debug)]
pub(super) struct InstanceLock {
    /// Closing it releases the lock.
    _file: File,
}

/// How often a held lock is tried again while waiting.
const RETRY_EVERY: Duration = Duration::from_millis(20);

/// Takes the lock of the store at `path`. While another process (or
/// another store in this one) holds it, tries again for up to `wait` (a
/// previous gateway may still be closing), then fails.
pub(super) fn acquire(path: &Path, wait: Duration) -> Result<InstanceLock, StoreError> {
    let lock_path = with_suffix(path, ".lock");
    let fail = |e: StoreError| {
        tracing::error!(error = %e, "cannot start the outbox");
        e
    };
    let file = open_lock_file(&lock_path).map_err(|e| {
        fail(StoreError::Io(format!(
            "cannot open the lock file {}: {e}",
            lock_path.display()
        )))
    })?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(InstanceLock { _file: file }),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(RETRY_EVERY);
            }
            Err(TryLockError::WouldBlock) => {
                return Err(fail(StoreError::Refused(format!(
                    "{}: the store is in use (is another fieldgate using it?)",
                    path.display()
                ))));
            }
            Err(TryLockError::Error(e)) => {
                return Err(fail(StoreError::Io(format!(
                    "cannot lock {}: {e}",
                    lock_path.display()
                ))));
            }
        }
    }
}

/// Opens (creating) the lock file; an existing one is opened read-only
/// when it cannot be opened for writing (a full or read-only file system,
/// where the store is then run from memory): `flock` needs no write access,
/// so a second fieldgate is still kept out.
fn open_lock_file(lock_path: &Path) -> std::io::Result<File> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
    {
        Ok(file) => Ok(file),
        Err(e) => OpenOptions::new().read(true).open(lock_path).map_err(|_| e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_store_fails_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        let first = acquire(&path, Duration::ZERO).unwrap();
        let err = acquire(&path, Duration::from_millis(50)).unwrap_err();
        assert!(err.to_string().contains("another fieldgate"), "{err}");
        // A lock released while waiting is taken.
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        let _again = acquire(&path, Duration::from_secs(10)).unwrap();
        release.join().unwrap();
    }

    /// A lock file that cannot be written (a read-only file system, or a
    /// full one) is still locked through a read-only descriptor.
    #[test]
    fn a_read_only_lock_file_still_keeps_a_second_one_out() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbox.db");
        drop(acquire(&path, Duration::ZERO).unwrap());
        let lock_path = with_suffix(&path, ".lock");
        std::fs::set_permissions(&lock_path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let first = acquire(&path, Duration::ZERO).unwrap();
        let err = acquire(&path, Duration::ZERO).unwrap_err();
        assert!(matches!(err, StoreError::Refused(_)), "{err}");
        drop(first);
    }
}
