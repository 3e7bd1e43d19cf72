//! Bounded waits: every one gives up after its limit, so a test that
//! waits for something that never comes fails instead of hanging.

use std::time::Duration;

use tokio::time::{Instant, sleep};

/// Checks `done` every 20 ms until it holds (`true`) or `limit` passes
/// (`false`).
pub async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 100 ms until it gives a value or `limit` passes.
pub async fn eventually<T>(
    limit: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        sleep(Duration::from_millis(100)).await;
    }
}
