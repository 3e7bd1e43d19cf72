//! Which connectors take which message: the rows the pipeline (and the
//! bridge) queue beside a work-order or meter message. Pure.

use std::time::SystemTime;

use super::vendor::Event;
use crate::config::{CmmsConfig, CmmsKind};
use crate::store::{Delivery, DeliveryKind};

/// The deliveries of a work-order message (`event`) for every connector
/// that takes it: all connectors with `work_orders` on, webhooks only
/// for the events they list.
pub fn work_order(
    connectors: &[CmmsConfig],
    key: &str,
    event: Event,
    topic: &str,
    payload: &[u8],
    now: SystemTime,
) -> Vec<Delivery> {
    connectors
        .iter()
        .filter(|c| c.work_orders)
        .filter(|c| match &c.kind {
            CmmsKind::Webhook(w) => w.events.iter().any(|e| e == event.as_str()),
            _ => true,
        })
        .map(|c| Delivery {
            sink: c.name.clone(),
            kind: DeliveryKind::WorkOrder,
            key: key.to_owned(),
            event: event.as_str().to_owned(),
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            created_at: now,
        })
        .collect()
}

/// The deliveries of a meter message for every connector that maps the
/// meter to one of its own.
pub fn meter(
    connectors: &[CmmsConfig],
    meter: &str,
    topic: &str,
    payload: &[u8],
    now: SystemTime,
) -> Vec<Delivery> {
    connectors
        .iter()
        .filter(|c| c.meters.contains_key(meter))
        .map(|c| Delivery {
            sink: c.name.clone(),
            kind: DeliveryKind::Meter,
            key: meter.to_owned(),
            event: "reading".to_owned(),
            topic: topic.to_owned(),
            payload: payload.to_vec(),
            created_at: now,
        })
        .collect()
}
