//! `{data_dir}/fieldgate.pid`: how `fieldgate reload` finds the running
//! gateway. Written when `run` starts, removed when it stops; a file left
//! by a crash is simply overwritten by the next start.

use std::path::{Path, PathBuf};

/// The pid file's name inside `data_dir`.
pub const PID_FILE: &str = "fieldgate.pid";

/// The running gateway's pid file; removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's id to `{data_dir}/fieldgate.pid`.
    pub fn create(data_dir: &Path) -> std::io::Result<PidFile> {
        std::fs::create_dir_all(data_dir)?;
        let path = data_dir.join(PID_FILE);
        std::fs::write(&path, format!("{}\n", std::process::id()))?;
        Ok(PidFile { path })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own: a second gateway (refused by the store lock) must
        // not remove the first one's file.
        if read(&self.path).ok() == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The pid in a pid file.
pub fn read(path: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold a process id", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_read_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = PidFile::create(dir.path()).unwrap();
        assert_eq!(
            read(&dir.path().join(PID_FILE)).unwrap(),
            std::process::id()
        );
        drop(file);
        assert!(!dir.path().join(PID_FILE).exists());
    }
}
