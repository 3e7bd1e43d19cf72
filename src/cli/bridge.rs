//! `fieldgate bridge`: load `bridge.toml` and run the CMMS connectors for
//! every gateway on the broker until a signal (docs/cmms.md, "The
//! bridge").

use std::path::Path;
use std::process::ExitCode;

/// Loads the bridge config (printing every problem if it is unusable)
/// and runs; `check_only` stops after the check.
pub fn run(path: &Path, check_only: bool) -> ExitCode {
    let loaded = match crate::config::load_bridge(path) {
        Ok(l) => l,
        Err(problems) => {
            eprint!("{problems}");
            eprintln!(
                "{}: bridge not started: {} error(s)",
                path.display(),
                problems.error_count()
            );
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        if check_only {
            println!("{w}");
        } else {
            tracing::warn!("{w}");
        }
    }
    if check_only {
        println!(
            "{}: ok: {} connector(s)",
            path.display(),
            loaded.config.cmms.len()
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match runtime.block_on(crate::bridge::run(loaded.config, super::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("fieldgate bridge: {e}");
            ExitCode::from(1)
        }
    }
}
