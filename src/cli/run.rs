//! `fieldgate run`: load the config and run the gateway until a signal;
//! SIGHUP reloads the config.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::sync::mpsc;

use super::pidfile::PidFile;
use crate::config::{self, Config};

/// Loads the config (printing every problem if it is unusable) and runs.
pub fn run(path: &Path) -> ExitCode {
    let loaded = match super::load_config(path, "not started") {
        Ok(l) => l,
        Err(code) => return code,
    };
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let runtime = match super::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    // `fieldgate reload` finds us through it; without it only SIGHUP works.
    let _pid_file = PidFile::create(&loaded.config.gateway.data_dir)
        .map_err(|e| {
            tracing::warn!(dir = %loaded.config.gateway.data_dir.display(), error = %e, "cannot write the pid file; `fieldgate reload` will not find this gateway");
        })
        .ok();
    let result = runtime.block_on(async {
        let (reload_tx, reload_rx) = mpsc::channel(1);
        let hangups = tokio::spawn(reload_on_hangup(path.to_owned(), reload_tx));
        let result =
            crate::app::run_with_reloads(loaded.config, super::signal(), Some(reload_rx)).await;
        hangups.abort();
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("fieldgate: {e}");
            ExitCode::from(1)
        }
    }
}

/// On each SIGHUP, reads and validates the config file again and hands a
/// valid one to the gateway; an invalid one is logged problem by problem
/// (as `check` prints them) and the running config stays.
async fn reload_on_hangup(path: PathBuf, reloads: mpsc::Sender<Config>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloading needs a restart");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        tracing::info!(file = %path.display(), "SIGHUP: reading the configuration again");
        let file = path.clone();
        match tokio::task::spawn_blocking(move || config::load(&file)).await {
            Ok(Ok(loaded)) => {
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                if reloads.send(loaded.config).await.is_err() {
                    return;
                }
            }
            Ok(Err(problems)) => {
                for p in problems.0.iter().filter(|p| p.is_error()) {
                    tracing::error!("{p}");
                }
                tracing::error!(
                    errors = problems.error_count(),
                    "reload refused: the configuration has errors; the running configuration stays"
                );
            }
            Err(e) => tracing::error!(error = %e, "reload failed"),
        }
    }
}
