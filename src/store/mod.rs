//! The SQLite outbox: everything fieldgate publishes is committed here
//! first, and deleted only once the broker has acknowledged it.
//!
//! # Invariants
//!
//! * Rows get an `id` that only grows; the forwarder publishes in `id`
//!   order (per topic), so per-topic `seq` numbers increase on the wire.
//! * A row is deleted only after its PUBACK ([`StoreHandle::delete`]).
//! * Over `max_bytes` / `max_age`, the oldest *readings* are evicted
//!   first and counted; alarm and work-order messages only when no reading
//!   is left, and that is logged as an error.
//! * One thread owns the connection; everyone else holds a cheap
//!   [`StoreHandle`] (STYLE.md, practice 3).
//!
//! (API skeleton: the owner thread is being written.)

use std::collections::HashMap;
use std::time::SystemTime;

use tokio::sync::watch;

use crate::config::StoreConfig;

/// What a message is, for eviction: readings go first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A poll's readings (evicted first).
    Reading,
    /// An alarm state change.
    Alarm,
    /// A work order or its update.
    WorkOrder,
    /// A meter value.
    Meter,
}

impl Kind {
    /// The name stored in the `kind` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Reading => "reading",
            Kind::Alarm => "alarm",
            Kind::WorkOrder => "workorder",
            Kind::Meter => "meter",
        }
    }
}

/// A message to commit, then publish.
#[derive(Debug, Clone, PartialEq)]
pub struct OutMessage {
    /// MQTT topic.
    pub topic: String,
    /// This message's sequence number within its topic (1, 2, 3, …); the
    /// store remembers the last one per topic so numbering resumes after
    /// a restart ([`StoreHandle::topic_seqs`]).
    pub seq: u64,
    /// The payload (JSON).
    pub payload: Vec<u8>,
    /// MQTT QoS (1 or 2).
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// What it is, for eviction.
    pub kind: Kind,
    /// When it was made.
    pub created_at: SystemTime,
}

/// A committed message waiting for its PUBACK.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Outbox order (only grows).
    pub id: i64,
    /// MQTT topic.
    pub topic: String,
    /// Sequence number within the topic.
    pub seq: u64,
    /// The payload.
    pub payload: Vec<u8>,
    /// MQTT QoS.
    pub qos: u8,
    /// MQTT retain flag.
    pub retain: bool,
    /// What it is.
    pub kind: Kind,
    /// When it was made.
    pub created_at: SystemTime,
}

/// Outbox figures, for metrics and tests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Rows waiting.
    pub messages: u64,
    /// Bytes of payload and topic waiting.
    pub bytes: u64,
    /// Creation time of the oldest waiting row.
    pub oldest: Option<SystemTime>,
    /// Size of the database file plus its WAL.
    pub file_bytes: u64,
    /// Rows committed since start.
    pub inserted: u64,
    /// Rows deleted after their PUBACK since start.
    pub acked: u64,
    /// Readings evicted by the bounds (since the file was created).
    pub evicted_readings: u64,
    /// Alarm / work-order / meter rows evicted (since the file was created).
    pub evicted_other: u64,
    /// Id of the newest committed row.
    pub last_id: i64,
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The owner thread has stopped.
    #[error("the store is closed")]
    Closed,
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(String),
    /// A file operation failed.
    #[error("{0}")]
    Io(String),
}

/// Cheap, cloneable access to the outbox.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    committed: watch::Receiver<i64>,
}

/// Owns the store thread: [`StoreGuard::close`] flushes, commits and joins it.
#[derive(Debug)]
pub struct StoreGuard {}

/// Opens the outbox at `config.path` (creating it, migrating it, or moving
/// a corrupt file aside) and starts its owner thread.
pub fn open(config: &StoreConfig) -> Result<(StoreHandle, StoreGuard), StoreError> {
    let _ = config;
    Err(StoreError::Closed)
}

impl StoreHandle {
    /// Queues messages for the next group commit. Waits only when the
    /// queue is full (backpressure); use [`flush`](Self::flush) to wait
    /// for the commit.
    pub async fn insert(&self, messages: Vec<OutMessage>) -> Result<(), StoreError> {
        let _ = messages;
        Err(StoreError::Closed)
    }

    /// Resolves once everything queued before the call is committed.
    pub async fn flush(&self) -> Result<(), StoreError> {
        Err(StoreError::Closed)
    }

    /// Up to `limit` rows with `id > after`, oldest first.
    pub async fn fetch_after(&self, after: i64, limit: usize) -> Result<Vec<Row>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Closed)
    }

    /// Up to `limit` of the newest rows with `id > after`, returned oldest first.
    pub async fn fetch_newest(&self, after: i64, limit: usize) -> Result<Vec<Row>, StoreError> {
        let _ = (after, limit);
        Err(StoreError::Closed)
    }

    /// Deletes rows the broker has acknowledged.
    pub async fn delete(&self, ids: Vec<i64>) -> Result<(), StoreError> {
        let _ = ids;
        Err(StoreError::Closed)
    }

    /// Current figures.
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        Err(StoreError::Closed)
    }

    /// The id of the newest committed row; changes after every commit.
    pub fn committed(&self) -> watch::Receiver<i64> {
        self.committed.clone()
    }

    /// The last sequence number committed per topic.
    pub async fn topic_seqs(&self) -> Result<HashMap<String, u64>, StoreError> {
        Err(StoreError::Closed)
    }
}

impl StoreGuard {
    /// Commits what is queued and stops the thread (blocking: call it from
    /// `spawn_blocking` in async code).
    pub fn close(self) -> Result<(), StoreError> {
        Ok(())
    }
}
