//! The first claim seen for each work-order key (`contract::claims`):
//! written by the event-loop task as claims arrive, waited on by the task
//! that turns messages into deliveries.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// Keys remembered; the map is cleared when full (a key that comes back
/// after that is claimed again: its copy then carries the CMMS reference
/// and is adopted, not created).
const KEYS: usize = 100_000;

/// Who claimed each key first.
#[derive(Debug, Default)]
pub struct Claims {
    first: Mutex<HashMap<String, String>>,
    changed: Notify,
}

impl Claims {
    /// Records a claim of `key` by `bridge`, unless one came first.
    pub fn record(&self, key: String, bridge: String) {
        if let Ok(mut first) = self.first.lock() {
            if first.len() >= KEYS {
                first.clear();
            }
            first.entry(key).or_insert(bridge);
        }
        self.changed.notify_waiters();
    }

    /// The bridge that claimed `key` first, if a claim arrived.
    pub fn winner(&self, key: &str) -> Option<String> {
        self.first.lock().ok()?.get(key).cloned()
    }

    /// Waits until every key of `keys` has a winner, at most `limit`.
    pub async fn settled(&self, keys: &[String], limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if keys.iter().all(|k| self.winner(k).is_some()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_claim_wins_and_waiters_wake() {
        let claims = std::sync::Arc::new(Claims::default());
        let c = claims.clone();
        let waiter = tokio::spawn(async move {
            c.settled(&["k".to_string()], Duration::from_secs(5)).await;
            c.winner("k")
        });
        tokio::task::yield_now().await;
        claims.record("k".into(), "b2".into());
        claims.record("k".into(), "b1".into());
        assert_eq!(waiter.await.unwrap().as_deref(), Some("b2"));
    }
}
