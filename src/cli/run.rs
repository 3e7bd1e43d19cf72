//! `fieldgate run`: load the config and run the gateway until a signal.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

/// Loads the config (printing every problem if it is unusable) and runs.
pub fn run(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(problems) => {
            eprint!("{problems}");
            eprintln!(
                "{}: not started: {} error(s)",
                path.display(),
                problems.error_count()
            );
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(crate::app::run(loaded.config, super::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("fieldgate: {e}");
            ExitCode::from(1)
        }
    }
}
