//! The delivery task: one per connector. It takes the connector's
//! deliveries from the store in order, sends them, and deletes each only
//! once the CMMS confirmed it; it polls the status of the work orders the
//! CMMS holds and reports what changed.
//!
//! # Rules
//!
//! * **In order.** A delivery is retried (5xx, 408/429, timeout, refused
//!   connection; backoff from `retry_min` to `retry_max`, with jitter)
//!   until it passes; the ones after it wait, so a CMMS sees a work
//!   order's events in the order they happened.
//! * **Never twice.** A work-order key the connector already has a
//!   reference for is never created again. Before creating, the vendor's
//!   lookup by key (where its API has one) finds a work order created by
//!   a request whose answer was lost (a timeout, or a gateway killed
//!   mid-request); a work order that already carries a CMMS reference
//!   (another bridge created it) is adopted, not created.
//! * **Refused is parked.** A 4xx (a bad asset id, a field the CMMS
//!   refuses) parks the delivery with the CMMS's text; the next ones go
//!   on. Later events of a parked work order are parked too (they would
//!   update what does not exist). A reload un-parks (`StoreHandle::sink_unpark`).
//! * **Status.** After a create the CMMS's reference is reported as
//!   `accepted` (the gateway keeps it as the work order's `cmms.ref`);
//!   every `poll_interval` the open work orders' status is read and a
//!   change is reported. A report is stored as seen only once the
//!   receiver has applied it, so a crash in between reports it again.
//! * **Never in the way.** The task owns its client; a slow CMMS only
//!   slows this task: polling, rules and MQTT never wait for it.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};

use super::client::Client;
use super::exchange::{CmmsStatus, Failure, Found};
use super::vendor::{self, Event, Vendor};
use crate::config::CmmsConfig;
use crate::contract::received::{self, WorkOrderDoc};
use crate::rules::{StatusUpdate, WoStatus};
use crate::shutdown::Shutdown;
use crate::store::{DeliveryKind, PendingDelivery, SinkRef, StoreError, StoreHandle};

/// Deliveries fetched from the store at once.
const BATCH: usize = 32;

/// A status the CMMS reported for a work order: the gateway applies it
/// like a status on its MQTT topic; `fieldgate bridge` publishes it there.
#[derive(Debug)]
pub struct Reported {
    /// The connector.
    pub sink: String,
    /// fieldgate's work-order id.
    pub wo_id: String,
    /// The work order's MQTT topic (the bridge answers on
    /// `{topic}/status`).
    pub topic: String,
    /// What the CMMS says.
    pub update: StatusUpdate,
    /// Send `()` once applied (or published); dropping it says it was
    /// not, and the report is made again at the next poll.
    pub applied: oneshot::Sender<()>,
}

/// A connector's figures: written by its task, read by the metrics, the
/// status page and `/api/status`.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    /// Deliveries the CMMS confirmed.
    pub delivered: AtomicU64,
    /// Work orders created in the CMMS.
    pub created: AtomicU64,
    /// Failed exchanges that will be retried.
    pub retries: AtomicU64,
    /// Deliveries parked (refused by the CMMS).
    pub parked: AtomicU64,
    /// Statuses reported from the CMMS.
    pub statuses: AtomicU64,
    /// Whether the last exchange with the CMMS got an answer.
    pub reachable: AtomicBool,
    /// The last failure's text (no credentials in it).
    pub last_error: Mutex<Option<String>>,
}

impl ConnectorStats {
    fn failed(&self, text: &str) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(text.to_owned());
        }
    }

    /// The last failure's text.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

/// What one delivery came to.
enum Outcome {
    /// Confirmed: delete it, keep what was learned.
    Done(Option<SinkRef>),
    /// Park it with this text.
    Park(String),
}

/// One connector's task.
pub struct Connector {
    config: CmmsConfig,
    vendor: Box<dyn Vendor>,
    client: Client,
    store: StoreHandle,
    reports: mpsc::Sender<Reported>,
    stats: Arc<ConnectorStats>,
    /// Keys whose delivery is parked in this run: their later events
    /// park too.
    parked_keys: HashSet<String>,
    /// Consecutive failures, for the backoff.
    failures: u32,
}

impl Connector {
    /// A connector on `store`, reporting statuses to `reports`.
    pub fn new(
        config: CmmsConfig,
        client: Client,
        store: StoreHandle,
        reports: mpsc::Sender<Reported>,
        stats: Arc<ConnectorStats>,
    ) -> Connector {
        Connector {
            vendor: vendor::for_config(&config),
            config,
            client,
            store,
            reports,
            stats,
            parked_keys: HashSet::new(),
            failures: 0,
        }
    }

    /// Runs until `shutdown`: deliveries in order, status polls between
    /// them. Stops between exchanges (an exchange in flight is dropped:
    /// its delivery stays in the store and is sent again at the next
    /// start, where the lookup by key finds what it may have created).
    pub async fn run(mut self, mut shutdown: Shutdown) {
        let name = self.config.name.clone();
        tracing::info!(connector = %name, kind = self.config.kind.as_str(), url = %self.config.url, "CMMS connector started");
        let mut committed = self.store.deliveries();
        let mut after = 0i64;
        let poll_every = self.config.poll_interval;
        // The first poll soon after start: statuses changed while the
        // gateway was down.
        let mut next_poll =
            poll_every.map(|_| tokio::time::Instant::now() + Duration::from_secs(2));
        loop {
            if shutdown.is_shutdown() {
                break;
            }
            if next_poll.is_some_and(|t| t <= tokio::time::Instant::now()) {
                tokio::select! {
                    _ = self.poll_statuses() => {}
                    _ = shutdown.recv() => break,
                }
                next_poll = poll_every.map(|p| tokio::time::Instant::now() + p);
            }
            let batch = match self.store.sink_pending(&name, after, BATCH).await {
                Ok(b) => b,
                Err(StoreError::Closed) => break,
                Err(e) => {
                    tracing::warn!(connector = %name, error = %e, "cannot read the connector's queue; trying again");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                        _ = shutdown.recv() => break,
                    }
                }
            };
            if batch.is_empty() {
                // Nothing waiting: sleep until a commit adds deliveries,
                // the next poll, or the stop.
                committed.borrow_and_update();
                let poll_at = next_poll;
                tokio::select! {
                    changed = committed.changed() => {
                        if changed.is_err() { break; }
                    }
                    _ = async {
                        match poll_at {
                            Some(t) => tokio::time::sleep_until(t).await,
                            None => std::future::pending().await,
                        }
                    } => {}
                    _ = shutdown.recv() => break,
                }
                continue;
            }
            for row in batch {
                let id = row.id;
                let Some(outcome) = self
                    .deliver_retrying(&row, &mut shutdown, &mut next_poll)
                    .await
                else {
                    // Stopping: the row stays for the next start.
                    tracing::info!(connector = %name, "CMMS connector stopped");
                    return;
                };
                let stored = match outcome {
                    Outcome::Done(learned) => {
                        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                        self.store.sink_done(id, learned).await
                    }
                    Outcome::Park(text) => {
                        self.stats.parked.fetch_add(1, Ordering::Relaxed);
                        self.stats.failed(&text);
                        self.parked_keys.insert(row.delivery.key.clone());
                        tracing::warn!(
                            connector = %name,
                            key = %row.delivery.key,
                            event = %row.delivery.event,
                            error = %text,
                            "the CMMS refused a delivery: parked until the next reload (fieldgate workorders shows it)"
                        );
                        self.store.sink_park(id, text).await
                    }
                };
                if let Err(e) = stored {
                    // Not deleted: the delivery is sent again after a
                    // restart, where the stored reference or the lookup
                    // keeps it from creating a second work order.
                    tracing::error!(connector = %name, error = %e, "cannot record a delivery's outcome");
                }
                after = id;
            }
        }
        tracing::info!(connector = %name, "CMMS connector stopped");
    }

    /// Delivers `row`, retrying what may pass with backoff (polling
    /// statuses while it waits, when a poll is due); `None` when stopped.
    async fn deliver_retrying(
        &mut self,
        row: &PendingDelivery,
        shutdown: &mut Shutdown,
        next_poll: &mut Option<tokio::time::Instant>,
    ) -> Option<Outcome> {
        loop {
            let result = tokio::select! {
                r = self.deliver(row) => r,
                _ = shutdown.recv() => return None,
            };
            match result {
                Ok(outcome) => {
                    self.succeeded();
                    return Some(outcome);
                }
                Err(Failure::Park(text)) => {
                    self.stats.reachable.store(true, Ordering::Relaxed);
                    self.failures = 0;
                    return Some(Outcome::Park(text));
                }
                Err(Failure::Retry(text)) => {
                    let wait = self.failed(&text);
                    let until = tokio::time::Instant::now() + wait;
                    // Polls that fall due while waiting are made (they
                    // may tell the CMMS is back), unless stopping.
                    loop {
                        let poll_at = next_poll.filter(|t| *t < until);
                        tokio::select! {
                            _ = tokio::time::sleep_until(until) => break,
                            _ = async {
                                match poll_at {
                                    Some(t) => tokio::time::sleep_until(t).await,
                                    None => std::future::pending().await,
                                }
                            } => {
                                self.poll_statuses().await;
                                *next_poll = self.config.poll_interval.map(|p| tokio::time::Instant::now() + p);
                            }
                            _ = shutdown.recv() => return None,
                        }
                    }
                }
            }
        }
    }

    fn succeeded(&mut self) {
        if self.failures > 0 {
            tracing::info!(connector = %self.config.name, "CMMS reachable again; delivering");
        }
        self.failures = 0;
        self.stats.reachable.store(true, Ordering::Relaxed);
    }

    /// Counts a failure that may pass and says how long to wait.
    fn failed(&mut self, text: &str) -> Duration {
        self.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.stats.reachable.store(false, Ordering::Relaxed);
        self.stats.failed(text);
        self.failures = self.failures.saturating_add(1);
        let wait = backoff(
            self.config.retry_min,
            self.config.retry_max,
            self.failures,
            rand::random(),
        );
        // A warning, not an error: the deliveries wait in the store and
        // nothing is lost. Logged on the first failure and then every
        // tenth, so an outage of hours does not flood the journal.
        if self.failures == 1 || self.failures.is_multiple_of(10) {
            tracing::warn!(
                connector = %self.config.name,
                error = %text,
                failures = self.failures,
                retry_in = ?wait,
                "CMMS not reachable; deliveries wait in the store"
            );
        }
        wait
    }

    /// One attempt at `row`.
    async fn deliver(&mut self, row: &PendingDelivery) -> Result<Outcome, Failure> {
        let d = &row.delivery;
        match d.kind {
            DeliveryKind::Meter => self.deliver_meter(&d.payload).await,
            DeliveryKind::WorkOrder => {
                if self.parked_keys.contains(&d.key) {
                    return Err(Failure::Park(
                        "an earlier delivery of this work order is parked".into(),
                    ));
                }
                let wo = received::work_order(&d.payload)
                    .map_err(|e| Failure::Park(format!("unreadable work order: {e}")))?;
                let event = Event::parse(&d.event).unwrap_or(Event::Updated);
                self.deliver_work_order(&wo, event, &d.topic).await
            }
        }
    }

    async fn deliver_meter(&self, payload: &[u8]) -> Result<Outcome, Failure> {
        let reading = received::meter(payload)
            .map_err(|e| Failure::Park(format!("unreadable meter message: {e}")))?;
        // The mapping may have been removed by a reload: nothing to send.
        let Some(meter_id) = self.config.meters.get(&reading.meter) else {
            return Ok(Outcome::Done(None));
        };
        let Some(request) = self.vendor.meter(&reading, meter_id) else {
            return Ok(Outcome::Done(None));
        };
        let answer = self.client.send(&request).await?;
        if super::exchange::is_success(&answer) {
            Ok(Outcome::Done(None))
        } else {
            Err(super::exchange::failure(&answer, None))
        }
    }

    async fn deliver_work_order(
        &mut self,
        wo: &WorkOrderDoc,
        event: Event,
        topic: &str,
    ) -> Result<Outcome, Failure> {
        let known = self
            .store
            .sink_ref(&self.config.name, &wo.key)
            .await
            .map_err(|e| Failure::Retry(format!("store: {e}")))?;
        if let Some(mut known) = known {
            // A raise of a key already delivered is a repeat (a bridge
            // seeing a gateway republish its open work orders).
            if event == Event::Raised {
                return Ok(Outcome::Done(None));
            }
            if let Some(request) = self.vendor.update(wo, &known.reference, event) {
                let answer = self.client.send(&request).await?;
                if !super::exchange::is_success(&answer) {
                    return Err(super::exchange::failure(&answer, None));
                }
            }
            if event == Event::Closed {
                // Ended on the gateway (the CMMS said so): no more polls.
                known.status = if wo.status == "cancelled" {
                    WoStatus::Cancelled
                } else {
                    WoStatus::Closed
                }
                .as_str()
                .to_owned();
                known.updated_at = SystemTime::now();
                return Ok(Outcome::Done(Some(known)));
            }
            return Ok(Outcome::Done(None));
        }
        if event == Event::Closed {
            // Ended before this CMMS ever had it: nothing to create.
            return Ok(Outcome::Done(None));
        }
        // Another bridge (or the CMMS itself, over MQTT) already has it.
        if let Some(reference) = wo.cmms_ref() {
            let found = Found {
                reference: reference.to_owned(),
                status: None,
            };
            return Ok(Outcome::Done(Some(self.learned(wo, topic, &found))));
        }
        if let Some(request) = self.vendor.lookup(wo) {
            let answer = self.client.send(&request).await?;
            if let Some(found) = self.vendor.read_lookup(wo, &answer)? {
                tracing::info!(
                    connector = %self.config.name,
                    key = %wo.key,
                    reference = %found.reference,
                    "the CMMS already has this work order (an earlier attempt's answer was lost): not created again"
                );
                let learned = self.learned(wo, topic, &found);
                self.report(wo, topic, &found).await;
                return Ok(Outcome::Done(Some(learned)));
            }
        }
        let request = self.vendor.create(wo, event)?;
        let answer = self.client.send(&request).await?;
        let found = self.vendor.read_create(&answer)?;
        self.stats.created.fetch_add(1, Ordering::Relaxed);
        let found = found.unwrap_or_else(|| Found {
            // A webhook that answers nothing to keep: the key stands for
            // the reference, so later events are updates.
            reference: String::new(),
            status: None,
        });
        tracing::info!(
            connector = %self.config.name,
            id = %wo.id,
            key = %wo.key,
            reference = %found.reference,
            "work order delivered to the CMMS"
        );
        let learned = self.learned(wo, topic, &found);
        if !found.reference.is_empty() {
            self.report(wo, topic, &found).await;
        }
        Ok(Outcome::Done(Some(learned)))
    }

    /// What to keep of a work order the CMMS has.
    fn learned(&self, wo: &WorkOrderDoc, topic: &str, found: &Found) -> SinkRef {
        let status = found
            .status
            .as_ref()
            .map_or(WoStatus::Accepted, CmmsStatus::wo_status);
        SinkRef {
            sink: self.config.name.clone(),
            key: wo.key.clone(),
            wo_id: wo.id.clone(),
            reference: found.reference.clone(),
            status: status.as_str().to_owned(),
            topic: topic.to_owned(),
            updated_at: SystemTime::now(),
        }
    }

    /// Tells the gateway the CMMS has the work order (its reference, and
    /// `accepted` unless it said more). Not waited for long: the status
    /// poll reports it again if this one is lost.
    async fn report(&self, wo: &WorkOrderDoc, topic: &str, found: &Found) {
        let status = found
            .status
            .as_ref()
            .map_or(WoStatus::Accepted, CmmsStatus::wo_status);
        let _ = self
            .send_report(&wo.id, topic, status, &found.reference)
            .await;
    }

    /// Sends one report and waits (bounded) until it is applied.
    async fn send_report(
        &self,
        wo_id: &str,
        topic: &str,
        status: WoStatus,
        reference: &str,
    ) -> bool {
        let (tx, rx) = oneshot::channel();
        let report = Reported {
            sink: self.config.name.clone(),
            wo_id: wo_id.to_owned(),
            topic: topic.to_owned(),
            update: StatusUpdate {
                status,
                cmms_ref: (!reference.is_empty()).then(|| reference.to_owned()),
                by: Some(self.config.name.clone()),
                note: None,
            },
            applied: tx,
        };
        if self.reports.send(report).await.is_err() {
            return false;
        }
        self.stats.statuses.fetch_add(1, Ordering::Relaxed);
        matches!(
            tokio::time::timeout(Duration::from_secs(30), rx).await,
            Ok(Ok(()))
        )
    }

    /// Reads the status of every open work order this CMMS holds and
    /// reports the changes.
    async fn poll_statuses(&mut self) {
        let refs = match self.store.sink_open_refs(&self.config.name).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(connector = %self.config.name, error = %e, "cannot list open work orders");
                return;
            }
        };
        for mut known in refs {
            let Some(request) = self.vendor.status(&known.reference) else {
                continue;
            };
            let answer = match self.client.send(&request).await {
                Ok(a) => a,
                Err(f) => {
                    self.stats.reachable.store(false, Ordering::Relaxed);
                    self.stats.failed(f.text());
                    tracing::debug!(connector = %self.config.name, error = %f.text(), "status poll failed");
                    // The CMMS is not reachable: the others would fail too.
                    return;
                }
            };
            self.stats.reachable.store(true, Ordering::Relaxed);
            let found = match self.vendor.read_status(&answer) {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(f) => {
                    tracing::warn!(connector = %self.config.name, reference = %known.reference, error = %f.text(), "cannot read a work order's status");
                    continue;
                }
            };
            let Some(status) = found.status.as_ref().map(CmmsStatus::wo_status) else {
                continue;
            };
            if status.as_str() == known.status {
                continue;
            }
            tracing::info!(
                connector = %self.config.name,
                id = %known.wo_id,
                reference = %known.reference,
                status = status.as_str(),
                "work-order status from the CMMS"
            );
            if self
                .send_report(&known.wo_id, &known.topic, status, &known.reference)
                .await
            {
                known.status = status.as_str().to_owned();
                known.updated_at = SystemTime::now();
                if let Err(e) = self.store.sink_put_ref(known).await {
                    tracing::warn!(connector = %self.config.name, error = %e, "cannot record a status; it is reported again at the next poll");
                }
            }
        }
    }
}

/// The wait after the `failures`-th failure in a row: `min × 2^(n−1)`
/// capped at `max`, scaled by a jitter in `[0.75, 1.25)` from
/// `unit_random` (a number in `[0, 1)`), so gateways retry out of step.
pub fn backoff(min: Duration, max: Duration, failures: u32, unit_random: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let base = min.saturating_mul(1u32 << exp).min(max);
    base.mul_f64(0.75 + 0.5 * unit_random.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(1), s(300), 1, 0.5), s(1));
        assert_eq!(backoff(s(1), s(300), 4, 0.5), s(8));
        assert_eq!(backoff(s(1), s(300), 40, 0.5), s(300));
        assert!(backoff(s(1), s(300), 1, 0.0) >= Duration::from_millis(750));
        assert!(backoff(s(1), s(300), 1, 0.999) < Duration::from_millis(1250));
    }
}
