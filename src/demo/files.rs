//! The demo's files: its configuration, tag maps and scenario, built into
//! the binary so that an installed `fieldgate demo` needs no source tree,
//! and the data folder it runs in.
//!
//! The built-in configuration is written into the data folder and loaded
//! from there by the normal loader (CSV tag maps are read relative to the
//! config file), so it goes through exactly what `fieldgate run -c` does.

use std::io;
use std::path::{Path, PathBuf};

use crate::sim::{Scenario, SimError};

/// `config/demo.toml`, as built in.
pub const CONFIG: &str = include_str!("../../config/demo.toml");

/// `config/sim/demo.toml`, as built in.
pub const SCENARIO: &str = include_str!("../../config/sim/demo.toml");

/// The tag maps `config/demo.toml` names, as built in.
const TAG_MAPS: [(&str, &str); 2] = [
    ("pump1.csv", include_str!("../../config/tags/pump1.csv")),
    ("motor.csv", include_str!("../../config/tags/motor.csv")),
];

/// The built-in scenario.
pub fn scenario() -> Result<Scenario, SimError> {
    Scenario::from_toml_str(SCENARIO)
}

/// The file `config/demo.toml` names as `[http] token_file`.
pub const TOKEN_FILE: &str = "demo.token";

/// Writes the built-in configuration and its tag maps under
/// `{dir}/config/` and returns the config file's path. The status page's
/// token (`demo.token`) is new for every run, rather than the placeholder
/// in the source tree, so a demo left running on a shared machine cannot
/// be acknowledged by a token anyone can read on GitHub.
pub fn write_config(dir: &Path) -> io::Result<PathBuf> {
    let config_dir = dir.join("config");
    std::fs::create_dir_all(config_dir.join("tags"))?;
    for (name, text) in TAG_MAPS {
        std::fs::write(config_dir.join("tags").join(name), text)?;
    }
    let token: String = (0..16)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::write(config_dir.join(TOKEN_FILE), format!("{token}\n"))?;
    let path = config_dir.join("demo.toml");
    std::fs::write(&path, CONFIG)?;
    Ok(path)
}

/// The folder the demo keeps its store (and written config) in.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    temporary: bool,
}

impl DataDir {
    /// `given`, created if missing and kept afterwards; or a new folder
    /// under the system's temporary directory, removed by
    /// [`DataDir::finish`].
    pub fn prepare(given: Option<&Path>) -> io::Result<DataDir> {
        let (path, temporary) = match given {
            Some(p) => (p.to_path_buf(), false),
            None => (
                std::env::temp_dir().join(format!(
                    "fieldgate-demo-{}",
                    ulid::Ulid::generate().to_string().to_lowercase()
                )),
                true,
            ),
        };
        std::fs::create_dir_all(&path)?;
        Ok(DataDir { path, temporary })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True for a folder the demo made and removes at the end.
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Removes a temporary folder (a given one stays, for
    /// `fieldgate alarms --store` and friends afterwards).
    pub fn finish(self) -> io::Result<()> {
        if self.temporary {
            std::fs::remove_dir_all(&self.path)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_files_load_and_check_clean() {
        let dir = match DataDir::prepare(None) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert!(dir.is_temporary());
        let path = match write_config(dir.path()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let loaded = match crate::config::load_with_env(&path, &[]) {
            Ok(l) => l,
            Err(p) => panic!("{p}"),
        };
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(loaded.config.devices.len(), 4);
        if let Err(e) = scenario() {
            panic!("{e}");
        }
        let kept = dir.path().to_path_buf();
        if let Err(e) = dir.finish() {
            panic!("{e}");
        }
        assert!(!kept.exists(), "a temporary folder is removed");
    }
}
