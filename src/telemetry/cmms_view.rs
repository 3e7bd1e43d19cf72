//! The CMMS connectors as `/metrics`, `/api/status`, the status page and
//! `fieldgate workorders` show them: each connector's counters (written by
//! its delivery task) beside its queue in the store, and the deliveries
//! the CMMS refused (parked) with its error text. Pure: the store's
//! answers are gathered by the caller.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::cmms::ConnectorStats;
use crate::contract::received;
use crate::store::{DeliveryKind, ParkedDelivery, SinkFigures};

/// Parked deliveries shown per connector (the newest): the status
/// document stays small however many the CMMS refused; `fieldgate
/// workorders` lists them all.
pub const PARKED_SHOWN: usize = 20;

/// Longest error text shown on the status page and in `/api/status`
/// (characters): a CMMS may answer a refusal with a whole HTML page.
pub const ERROR_SHOWN: usize = 500;

/// What the store said of the connectors' queues, for one snapshot. A
/// part is `None` when the store did not answer (or was not asked): its
/// figures are then left out rather than shown as 0.
#[derive(Debug, Clone, Default)]
pub struct SinkQueues {
    /// Every sink's queue figures.
    pub figures: Option<Vec<SinkFigures>>,
    /// The parked deliveries, all sinks.
    pub parked: Option<Vec<ParkedDelivery>>,
}

/// One CMMS connector at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorSnapshot {
    /// `[[cmms]] name`.
    pub name: String,
    /// `webhook`, `maximo`, `maintainx` or `upkeep`.
    pub kind: &'static str,
    /// The last exchange with the CMMS got an answer.
    pub reachable: bool,
    /// Deliveries the CMMS confirmed since the start.
    pub delivered: u64,
    /// Work orders created in the CMMS since the start.
    pub created: u64,
    /// Failed exchanges retried since the start.
    pub retries: u64,
    /// Deliveries parked since the start.
    pub parked_total: u64,
    /// Statuses the CMMS reported since the start.
    pub statuses: u64,
    /// The last failure's text.
    pub last_error: Option<String>,
    /// Its queue in the store; `None` when the store did not say.
    pub queue: Option<Queue>,
    /// The newest parked deliveries (at most [`PARKED_SHOWN`]), newest
    /// first; empty when none, or when the store did not say.
    pub parked: Vec<ParkedView>,
}

impl ConnectorSnapshot {
    /// Whether the connector has not exchanged anything with its CMMS
    /// yet (its `reachable` then means nothing).
    pub fn untried(&self) -> bool {
        !self.reachable
            && self.last_error.is_none()
            && self.delivered == 0
            && self.retries == 0
            && self.parked_total == 0
            && self.statuses == 0
    }
}

/// A connector's queue in the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Queue {
    /// Deliveries waiting (not parked).
    pub pending: u64,
    /// Deliveries parked.
    pub parked: u64,
    /// When the oldest waiting delivery was queued.
    pub oldest: Option<SystemTime>,
}

impl Queue {
    /// Seconds the oldest waiting delivery has waited at `now`; 0 when
    /// none waits (or its time is ahead of `now`: a clock step).
    pub fn oldest_age_s(&self, now: SystemTime) -> f64 {
        self.oldest
            .and_then(|t| now.duration_since(t).ok())
            .map_or(0.0, |d| d.as_secs_f64())
    }
}

/// A parked delivery as shown: the work order it carries (when its
/// payload reads as one) and the CMMS's error text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedView {
    /// The connector.
    pub connector: String,
    /// Its place in the queue.
    pub id: i64,
    /// A work order or a meter reading.
    pub kind: DeliveryKind,
    /// The work-order key, or the meter's name.
    pub key: String,
    /// `raised`, `updated`, `closed` or `reading`.
    pub event: String,
    /// The CMMS's error text.
    pub error: String,
    /// When it was parked.
    pub parked_at: SystemTime,
    /// The work order's id and title, when the payload reads as one.
    pub work_order: Option<ParkedWorkOrder>,
}

/// The work order a parked delivery carries.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedWorkOrder {
    /// fieldgate's id (ULID).
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its asset.
    pub asset: String,
}

impl ParkedView {
    /// The view of `p`, its error text whole.
    pub fn of(p: &ParkedDelivery) -> ParkedView {
        let d = &p.delivery;
        let work_order = match d.kind {
            DeliveryKind::WorkOrder => {
                received::work_order(&d.payload)
                    .ok()
                    .map(|wo| ParkedWorkOrder {
                        id: wo.id,
                        title: wo.title,
                        asset: wo.asset,
                    })
            }
            DeliveryKind::Meter => None,
        };
        ParkedView {
            connector: d.sink.clone(),
            id: p.id,
            kind: d.kind,
            key: d.key.clone(),
            event: d.event.clone(),
            error: p.error.clone(),
            parked_at: p.parked_at,
            work_order,
        }
    }
}

/// The newest first: by parking time, then by queue place.
pub fn newest_first(parked: &mut [ParkedView]) {
    parked.sort_by(|a, b| b.parked_at.cmp(&a.parked_at).then(b.id.cmp(&a.id)));
}

/// Each connector of `stats` (name, kind, figures; config order) with its
/// queue and newest parked deliveries from `queues`. A connector the
/// store's figures do not name has an empty queue (nothing was ever
/// queued for it) when the figures are known.
pub fn connectors(
    stats: &[(String, &'static str, Arc<ConnectorStats>)],
    queues: &SinkQueues,
) -> Vec<ConnectorSnapshot> {
    stats
        .iter()
        .map(|(name, kind, s)| {
            let queue = queues.figures.as_ref().map(|all| {
                all.iter().find(|f| f.sink == *name).map_or(
                    Queue {
                        pending: 0,
                        parked: 0,
                        oldest: None,
                    },
                    |f| Queue {
                        pending: f.pending,
                        parked: f.parked,
                        oldest: f.oldest,
                    },
                )
            });
            let mut parked: Vec<ParkedView> = queues
                .parked
                .iter()
                .flatten()
                .filter(|p| p.delivery.sink == *name)
                .map(ParkedView::of)
                .collect();
            newest_first(&mut parked);
            parked.truncate(PARKED_SHOWN);
            for p in &mut parked {
                p.error = cut(&p.error, ERROR_SHOWN);
            }
            ConnectorSnapshot {
                name: name.clone(),
                kind,
                reachable: s.reachable.load(Ordering::Relaxed),
                delivered: s.delivered.load(Ordering::Relaxed),
                created: s.created.load(Ordering::Relaxed),
                retries: s.retries.load(Ordering::Relaxed),
                parked_total: s.parked.load(Ordering::Relaxed),
                statuses: s.statuses.load(Ordering::Relaxed),
                last_error: s.last_error(),
                queue,
                parked,
            }
        })
        .collect()
}

/// `text` cut to `max` characters, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((at, _)) => {
            let mut out = text[..at].to_owned();
            out.push('…');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::store::Delivery;

    fn parked(sink: &str, id: i64, at_s: u64, payload: &[u8]) -> ParkedDelivery {
        ParkedDelivery {
            id,
            delivery: Delivery {
                sink: sink.into(),
                kind: DeliveryKind::WorkOrder,
                key: format!("key-{id}"),
                event: "raised".into(),
                topic: "fieldgate/s/gw/workorders/X".into(),
                payload: payload.to_vec(),
                created_at: UNIX_EPOCH + Duration::from_secs(at_s - 1),
            },
            error: "400 Bad Request: unknown asset P-101".into(),
            parked_at: UNIX_EPOCH + Duration::from_secs(at_s),
        }
    }

    const WORK_ORDER: &str = r#"{"schema":"fieldgate.workorder/1","id":"01M7YQ9WAWVEBEAN195PSSWWHW",
        "key":"k","type":"corrective","status":"open","priority":"high",
        "created_at":"2026-11-22T09:12:00.000Z","site":"s","gateway":"gw","asset":"P-101",
        "title":"P-101 bearing hot"}"#;

    #[test]
    fn a_connector_has_its_counters_queue_and_newest_parked_deliveries() {
        let stats = Arc::new(ConnectorStats::default());
        stats.delivered.store(5, Ordering::Relaxed);
        stats.parked.store(30, Ordering::Relaxed);
        stats.reachable.store(true, Ordering::Relaxed);
        let all = [
            ("maximo".to_owned(), "maximo", stats),
            (
                "hook".to_owned(),
                "webhook",
                Arc::new(ConnectorStats::default()),
            ),
        ];
        let mut rows: Vec<ParkedDelivery> = (1..=30)
            .map(|i| parked("maximo", i, 1000 + i as u64, WORK_ORDER.as_bytes()))
            .collect();
        rows.push(parked("gone", 99, 5000, b"not json"));
        let queues = SinkQueues {
            figures: Some(vec![SinkFigures {
                sink: "maximo".into(),
                pending: 3,
                parked: 30,
                oldest: Some(UNIX_EPOCH + Duration::from_secs(100)),
            }]),
            parked: Some(rows),
        };
        let c = connectors(&all, &queues);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].delivered, c[0].parked_total), (5, 30));
        assert!(c[0].reachable && !c[0].untried());
        let q = c[0].queue.unwrap();
        assert_eq!((q.pending, q.parked), (3, 30));
        assert_eq!(q.oldest_age_s(UNIX_EPOCH + Duration::from_secs(160)), 60.0);
        assert_eq!(c[0].parked.len(), PARKED_SHOWN);
        assert_eq!(c[0].parked[0].id, 30);
        assert_eq!(c[0].parked[19].id, 11);
        let wo = c[0].parked[0].work_order.as_ref().unwrap();
        assert_eq!(wo.id, "01M7YQ9WAWVEBEAN195PSSWWHW");
        assert_eq!(wo.title, "P-101 bearing hot");
        // Known figures that do not name a connector: nothing queued.
        assert_eq!(c[1].queue.map(|q| q.pending), Some(0));
        assert!(c[1].parked.is_empty() && c[1].untried());
    }

    #[test]
    fn unknown_queues_stay_unknown_and_odd_payloads_show_without_a_work_order() {
        let all = [(
            "hook".to_owned(),
            "webhook",
            Arc::new(ConnectorStats::default()),
        )];
        let c = connectors(&all, &SinkQueues::default());
        assert_eq!(c[0].queue, None);
        assert!(c[0].parked.is_empty());

        let mut p = parked("hook", 1, 10, b"\xff not a work order");
        p.error = "é".repeat(ERROR_SHOWN + 10);
        let queues = SinkQueues {
            figures: None,
            parked: Some(vec![p]),
        };
        let c = connectors(&all, &queues);
        assert_eq!(c[0].parked[0].work_order, None);
        assert_eq!(c[0].parked[0].error.chars().count(), ERROR_SHOWN + 1);
        assert!(c[0].parked[0].error.ends_with('…'));
    }

    #[test]
    fn a_queue_without_waiting_deliveries_is_0_s_old() {
        let q = Queue {
            pending: 0,
            parked: 1,
            oldest: None,
        };
        assert_eq!(q.oldest_age_s(SystemTime::now()), 0.0);
        let ahead = Queue {
            oldest: Some(SystemTime::now() + Duration::from_secs(60)),
            ..q
        };
        assert_eq!(ahead.oldest_age_s(SystemTime::now()), 0.0);
        assert_eq!(cut("abc", 3), "abc");
        assert_eq!(cut("abcd", 3), "abc…");
    }
}
