//! The queues of the outbox's other sinks: the CMMS connectors. A
//! delivery (a work order or meter message for one connector) is written
//! in the same transaction as the outbox message it copies, so a crash
//! never keeps one and loses the other; it is deleted only once the CMMS
//! confirmed it ([`StoreHandle::sink_done`], committed at once). A
//! delivery the CMMS refused is parked with its error until a reload
//! ([`StoreHandle::sink_unpark`]). What each connector learned (the
//! CMMS's reference for a work-order key, the last status it reported)
//! is kept beside it (`sink_refs`), so a retry or a restart never
//! creates a work order twice and status polling resumes after a restart.

use std::time::SystemTime;

use tokio::sync::watch;

use super::{StoreError, StoreHandle};

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// A work-order message (`fieldgate.workorder/1`).
    WorkOrder,
    /// A meter message (`fieldgate.meter/1`).
    Meter,
}

impl DeliveryKind {
    /// The name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::WorkOrder => "workorder",
            DeliveryKind::Meter => "meter",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<DeliveryKind> {
        match text {
            "workorder" => Some(DeliveryKind::WorkOrder),
            "meter" => Some(DeliveryKind::Meter),
            _ => None,
        }
    }
}

/// One message for one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The connector's name (`[[cmms]] name`).
    pub sink: String,
    /// What it carries.
    pub kind: DeliveryKind,
    /// The work-order key, or the meter's name.
    pub key: String,
    /// `raised`, `updated`, `closed` (work orders) or `reading` (meters).
    pub event: String,
    /// The MQTT topic of the message (the bridge answers on
    /// `{topic}/status`).
    pub topic: String,
    /// The message as published.
    pub payload: Vec<u8>,
    /// When it was queued (wall clock).
    pub created_at: SystemTime,
}

/// A delivery waiting in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    /// Its place in the queue (only grows).
    pub id: i64,
    /// The delivery.
    pub delivery: Delivery,
}

/// A delivery the CMMS refused, parked until a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedDelivery {
    /// Its place in the queue.
    pub id: i64,
    /// The delivery.
    pub delivery: Delivery,
    /// The CMMS's error text.
    pub error: String,
    /// When it was parked.
    pub parked_at: SystemTime,
}

/// What a connector knows of one work order in its CMMS.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRef {
    /// The connector.
    pub sink: String,
    /// The work-order key.
    pub key: String,
    /// fieldgate's work-order id.
    pub wo_id: String,
    /// The CMMS's reference.
    pub reference: String,
    /// The last fieldgate status the CMMS reported (`accepted`,
    /// `in_progress`, `closed`, `cancelled`), or `open`.
    pub status: String,
    /// The work order's MQTT topic.
    pub topic: String,
    /// When it last changed.
    pub updated_at: SystemTime,
}

/// One sink's queue, for the status page, `/api/status` and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkFigures {
    /// The connector.
    pub sink: String,
    /// Deliveries waiting (not parked).
    pub pending: u64,
    /// Deliveries parked.
    pub parked: u64,
    /// When the oldest waiting delivery was queued.
    pub oldest: Option<SystemTime>,
}

impl StoreHandle {
    /// Queues deliveries with the next group commit (the bridge; the
    /// gateway's come with [`insert_step`](Self::insert_step)).
    /// [`flush`](Self::flush) waits until they are on disk.
    pub async fn insert_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), StoreError> {
        let _ = deliveries;
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// The id of the newest delivery committed: it moves when there is
    /// something new for a sink.
    pub fn deliveries(&self) -> watch::Receiver<i64> {
        watch::channel(0).1
    }

    /// Up to `limit` deliveries of `sink` after `after`, oldest first,
    /// parked ones left out.
    pub async fn sink_pending(
        &self,
        sink: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let _ = (sink, after, limit);
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// The CMMS confirmed delivery `id`: deletes it and, when given,
    /// writes what the connector learned, in one transaction committed
    /// before this returns.
    pub async fn sink_done(&self, id: i64, learned: Option<SinkRef>) -> Result<(), StoreError> {
        let _ = (id, learned);
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// The CMMS refused delivery `id`: parks it with `error` (committed
    /// before this returns).
    pub async fn sink_park(&self, id: i64, error: String) -> Result<(), StoreError> {
        let _ = (id, error);
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// Un-parks every parked delivery of `sink` (all sinks: `None`), so
    /// they are tried again in order; returns how many.
    pub async fn sink_unpark(&self, sink: Option<String>) -> Result<u64, StoreError> {
        let _ = sink;
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// The parked deliveries, oldest first.
    pub async fn sink_parked(&self) -> Result<Vec<ParkedDelivery>, StoreError> {
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// What `sink` knows of the work order `key`.
    pub async fn sink_ref(&self, sink: &str, key: &str) -> Result<Option<SinkRef>, StoreError> {
        let _ = (sink, key);
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// The work orders `sink` knows whose status has not ended (not
    /// `closed` nor `cancelled`): what status polling asks about.
    pub async fn sink_open_refs(&self, sink: &str) -> Result<Vec<SinkRef>, StoreError> {
        let _ = sink;
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// Writes (inserts or replaces) what a connector knows of a work
    /// order, committed before this returns.
    pub async fn sink_put_ref(&self, learned: SinkRef) -> Result<(), StoreError> {
        let _ = learned;
        Err(StoreError::Io("sink queues: not implemented".into()))
    }

    /// Every sink's queue figures.
    pub async fn sink_figures(&self) -> Result<Vec<SinkFigures>, StoreError> {
        Err(StoreError::Io("sink queues: not implemented".into()))
    }
}
