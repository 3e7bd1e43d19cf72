//! TEMPORARY stand-in until the history branch lands.
#![allow(missing_docs)]
use std::time::SystemTime;

use super::{StoreError, StoreHandle};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HistoryKind {
    Alarm,
    WorkOrder,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub at: SystemTime,
    pub kind: HistoryKind,
    pub subject: String,
    pub event: String,
    pub detail: String,
}

impl StoreHandle {
    pub async fn record(&self, _entries: Vec<HistoryEntry>) -> Result<(), StoreError> {
        Ok(())
    }
}
