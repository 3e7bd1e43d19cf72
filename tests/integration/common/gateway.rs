//! The gateway in the test process: a config written to a file and
//! loaded as `fieldgate run` loads it, and `app::run` until told to stop.

use std::path::{Path, PathBuf};

use fieldgate::app::AppError;
use fieldgate::config::{self, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Writes `text` to `dir/fieldgate.toml` and loads it (without the
/// process's environment); panics with every problem if it has errors.
pub fn load(dir: &Path, text: &str) -> (Config, PathBuf) {
    let path = dir.join("fieldgate.toml");
    std::fs::write(&path, text).unwrap();
    match config::load_with_env(&path, &[]) {
        Ok(l) => (l.config, path),
        Err(p) => panic!("{p}"),
    }
}

/// Runs the gateway in this process until the returned sender fires.
pub fn spawn(config: Config) -> (oneshot::Sender<()>, JoinHandle<Result<(), AppError>>) {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(fieldgate::app::run(config, async move {
        let _ = stop_rx.await;
    }));
    (stop_tx, task)
}

/// Stops a gateway from [`spawn`] and waits (at most 10 s) for a clean end;
/// panics if it had ended before it was told to.
pub async fn stop(stop: oneshot::Sender<()>, task: JoinHandle<Result<(), AppError>>) {
    let running = stop.send(()).is_ok();
    tokio::time::timeout(std::time::Duration::from_secs(10), task)
        .await
        .expect("gateway stops within 10 s")
        .expect("gateway task")
        .expect("gateway ran");
    // After the result: an early end with an error says more than this.
    assert!(running, "the gateway ended before it was told to stop");
}
