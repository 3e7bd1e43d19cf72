//! Named internal events: one type per notable occurrence, whose
//! [`emit`](DeviceDown::emit) writes its log line and bumps its counter in
//! one place, so the journal and `/metrics` cannot disagree.
//!
//! Each counter counts log lines (or, for [`ReadingsSuppressed`], which is
//! not logged, readings): `fieldgate_events_total{event="device_down"}`
//! rises by one exactly when the journal gets one "device not answering"
//! line. The counters are process-wide and never reset, not even by a
//! reload, as Prometheus expects of a counter. Figures that are state
//! rather than occurrences (a device's polls, the outbox depth) stay with
//! their owners' probes.
//!
//! This module is at the bottom of the layers: every stage may emit, and
//! it knows nothing of them but names and texts.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every event's counter label, in the order of [`totals`].
pub const EVENTS: [&str; 16] = [
    "device_down",
    "device_back",
    "link_down",
    "link_up",
    "broker_connected",
    "broker_lost",
    "readings_evicted",
    "readings_suppressed",
    "alarm_active",
    "work_order_raised",
    "work_order_closed",
    "work_order_held",
    "config_refused",
    "store_lost",
    "store_degraded",
    "store_recovered",
];

static COUNTS: [AtomicU64; EVENTS.len()] = [const { AtomicU64::new(0) }; EVENTS.len()];

/// Every event's counter, by its place in [`EVENTS`].
#[derive(Clone, Copy)]
enum Counter {
    DeviceDown,
    DeviceBack,
    LinkDown,
    LinkUp,
    BrokerConnected,
    BrokerLost,
    ReadingsEvicted,
    ReadingsSuppressed,
    AlarmActive,
    WorkOrderRaised,
    WorkOrderClosed,
    WorkOrderHeld,
    ConfigRefused,
    StoreLost,
    StoreDegraded,
    StoreRecovered,
}

/// Adds `n` to `counter`: one relaxed atomic addition (suppressed readings
/// are counted on every poll).
fn count(counter: Counter, n: u64) {
    COUNTS[counter as usize].fetch_add(n, Ordering::Relaxed);
}

/// Every event's count so far, in the order of [`EVENTS`].
pub fn totals() -> [(&'static str, u64); EVENTS.len()] {
    std::array::from_fn(|i| (EVENTS[i], COUNTS[i].load(Ordering::Relaxed)))
}

/// A device stopped answering; it is probed with backoff from now on.
pub struct DeviceDown<'a, E: Display> {
    /// The device.
    pub device: &'a str,
    /// Why its poll failed.
    pub error: &'a E,
    /// When it is probed next.
    pub retry_in: Duration,
}

impl<E: Display> DeviceDown<'_, E> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(
            device = %self.device, error = %self.error, retry_in = ?self.retry_in,
            "device not answering; probing with backoff"
        );
        count(Counter::DeviceDown, 1);
    }
}

/// A device that was down answers again.
pub struct DeviceBack<'a> {
    /// The device.
    pub device: &'a str,
    /// How long it was down (whole seconds).
    pub down_for: Duration,
}

impl DeviceBack<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(device = %self.device, down_for = ?self.down_for, "device answering again");
        count(Counter::DeviceBack, 1);
    }
}

/// A link (TCP endpoint or serial bus) cannot be opened; retried with
/// backoff.
pub struct LinkDown<'a, L: Display, E: Display> {
    /// The link.
    pub link: &'a L,
    /// Why it cannot be opened.
    pub error: &'a E,
}

impl<L: Display, E: Display> LinkDown<'_, L, E> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(link = %self.link, error = %self.error, "cannot connect; retrying with backoff");
        count(Counter::LinkDown, 1);
    }
}

/// A link that could not be opened is connected again.
pub struct LinkUp<'a, L: Display> {
    /// The link.
    pub link: &'a L,
}

impl<L: Display> LinkUp<'_, L> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(link = %self.link, "connected");
        count(Counter::LinkUp, 1);
    }
}

/// The broker accepted a connection (CONNACK).
pub struct BrokerConnected<'a, B: Display> {
    /// The broker's address.
    pub broker: &'a B,
    /// The newest committed outbox row at this moment: what waits up to
    /// here is the backlog.
    pub backlog_upto: i64,
    /// For a reconnection: how long the broker was away and how many
    /// attempts failed meanwhile.
    pub again: Option<(Duration, u32)>,
}

impl<B: Display> BrokerConnected<'_, B> {
    /// Logs and counts it.
    pub fn emit(self) {
        match self.again {
            Some((down, failed_attempts)) => tracing::info!(
                broker = %self.broker, down = ?down, failed_attempts, backlog_upto = self.backlog_upto,
                "reconnected to the MQTT broker"
            ),
            None => tracing::info!(
                broker = %self.broker, backlog_upto = self.backlog_upto,
                "connected to the MQTT broker"
            ),
        }
        count(Counter::BrokerConnected, 1);
    }
}

/// An established connection to the broker was lost.
pub struct BrokerLost<'a, B: Display, E: Display> {
    /// The broker's address.
    pub broker: &'a B,
    /// What went wrong, explained.
    pub error: &'a E,
    /// Messages sent and not yet confirmed: they are sent again.
    pub in_flight: usize,
}

impl<B: Display, E: Display> BrokerLost<'_, B, E> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(
            broker = %self.broker, error = %self.error, in_flight = self.in_flight,
            "connection to the MQTT broker lost; unconfirmed messages will be sent again"
        );
        count(Counter::BrokerLost, 1);
    }
}

/// The outbox evicted messages to stay within its bounds. Logged at most
/// once per interval by its caller with what was evicted since the last
/// line, so the counter adds up exactly what the journal says.
pub struct ReadingsEvicted {
    /// Messages evicted since the last line.
    pub evicted: u64,
    /// Evicted since the store was created.
    pub total: u64,
    /// Messages still waiting.
    pub waiting: u64,
    /// `max_bytes`.
    pub max_bytes: u64,
    /// `max_age`, in seconds.
    pub max_age_s: u64,
    /// No reading was left: alarms, meters or work orders were evicted.
    pub not_readings: bool,
}

impl ReadingsEvicted {
    /// Logs and counts it.
    pub fn emit(self) {
        let ReadingsEvicted {
            evicted,
            total,
            waiting,
            max_bytes,
            max_age_s,
            not_readings,
        } = self;
        if not_readings {
            tracing::error!(
                evicted,
                total,
                waiting,
                max_bytes,
                max_age_s,
                "outbox over its bounds with no reading left: evicted the oldest meter/alarm/work-order messages"
            );
        } else {
            tracing::warn!(
                evicted,
                total,
                waiting,
                max_bytes,
                max_age_s,
                "outbox over its bounds: evicted the oldest readings"
            );
        }
        count(Counter::ReadingsEvicted, evicted);
    }
}

/// The store cannot use its disk and keeps the outbox in memory: logged
/// when it starts and then at most once a minute while it lasts (the
/// store thread keeps the pace), with what memory holds and has evicted.
pub struct StoreDegraded<'a> {
    /// `disk_full`, `read_only`, `io_error` or `unavailable`.
    pub fault: &'a str,
    /// The error as SQLite or the OS reported it.
    pub reason: &'a str,
    /// How long it has lasted.
    pub for_s: u64,
    /// Messages held in memory.
    pub held: u64,
    /// Their bytes, and the memory queue's bound.
    pub held_bytes: u64,
    /// The memory queue's bound.
    pub max_bytes: u64,
    /// Readings evicted from memory at its bound since start.
    pub evicted_readings: u64,
    /// Alarm, meter and work-order messages evicted from memory since start.
    pub evicted_other: u64,
}

impl StoreDegraded<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::error!(
            fault = self.fault,
            reason = self.reason,
            for_s = self.for_s,
            held = self.held,
            held_bytes = self.held_bytes,
            max_bytes = self.max_bytes,
            evicted_readings = self.evicted_readings,
            evicted_other = self.evicted_other,
            "store degraded: the disk cannot take the outbox; holding it in memory, publishing \
             on, retrying the disk"
        );
        count(Counter::StoreDegraded, 1);
    }
}

/// The store writes to its disk again: what memory held is on disk.
pub struct StoreRecovered {
    /// How long the store was degraded.
    pub after_s: u64,
    /// Messages written from memory to the disk on recovery.
    pub written: u64,
}

impl StoreRecovered {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(
            after_s = self.after_s,
            written = self.written,
            "store ok: the disk takes the outbox again"
        );
        count(Counter::StoreRecovered, 1);
    }
}

/// Readings the deadband filter kept back (report by exception). Not
/// logged: it happens on nearly every poll.
pub struct ReadingsSuppressed {
    /// How many.
    pub count: u64,
}

impl ReadingsSuppressed {
    /// Counts it.
    pub fn emit(self) {
        if self.count > 0 {
            count(Counter::ReadingsSuppressed, self.count);
        }
    }
}

/// An alarm became active.
pub struct AlarmActive<'a> {
    /// The rule.
    pub rule: &'a str,
    /// The value that tripped it, as text.
    pub value: Option<&'a str>,
    /// The rule is flagged chattering.
    pub chattering: bool,
}

impl AlarmActive<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(rule = %self.rule, value = self.value.unwrap_or("-"), chattering = self.chattering, "alarm active");
        count(Counter::AlarmActive, 1);
    }
}

/// A work order was raised.
pub struct WorkOrderRaised<'a> {
    /// Its id.
    pub id: &'a str,
    /// `corrective` or `preventive`.
    pub kind: &'a str,
    /// The asset.
    pub asset: &'a str,
    /// Its title.
    pub title: &'a str,
}

impl WorkOrderRaised<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(id = %self.id, kind = self.kind, asset = %self.asset, title = %self.title, "work order raised");
        count(Counter::WorkOrderRaised, 1);
    }
}

/// The CMMS closed a work order.
pub struct WorkOrderClosed<'a> {
    /// Its id.
    pub id: &'a str,
    /// The CMMS's reference.
    pub cmms_ref: Option<&'a str>,
}

impl WorkOrderClosed<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::info!(id = %self.id, cmms_ref = self.cmms_ref.unwrap_or("-"), "work order closed by the CMMS");
        count(Counter::WorkOrderClosed, 1);
    }
}

/// An alarm flood held back a work order (the flood's own work order says
/// so to the CMMS).
pub struct WorkOrderHeld<'a> {
    /// The rule whose activation was held.
    pub rule: &'a str,
    /// Its asset.
    pub asset: &'a str,
}

impl WorkOrderHeld<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::warn!(rule = %self.rule, asset = %self.asset, "alarm flood: activation held, no work order raised");
        count(Counter::WorkOrderHeld, 1);
    }
}

/// A reload was refused: the running configuration stays.
pub struct ConfigRefused<'a, E: Display> {
    /// Why.
    pub error: &'a E,
    /// The running configuration's short hash.
    pub running: &'a str,
}

impl<E: Display> ConfigRefused<'_, E> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::error!(error = %self.error, config = self.running, "reload refused; the running configuration stays");
        count(Counter::ConfigRefused, 1);
    }
}

/// The store the previous run used is gone (moved aside as unusable,
/// missing, replaced or an older copy): the gateway starts on a new store
/// identity, with whatever state the file holds now.
pub struct StoreLost<'a> {
    /// Why it is considered lost.
    pub reason: &'a str,
    /// The identity the lost store's messages carried, if known.
    pub previous: Option<&'a str>,
    /// The new identity.
    pub store: &'a str,
}

impl StoreLost<'_> {
    /// Logs and counts it.
    pub fn emit(self) {
        tracing::error!(
            reason = self.reason,
            previous = self.previous.unwrap_or("-"),
            store = self.store,
            "the outbox store was lost: starting clean under a new store identity \
             (sequence numbers and work-order keys do not continue the old store's)"
        );
        count(Counter::StoreLost, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(event: &str) -> u64 {
        totals()
            .iter()
            .find(|(e, _)| *e == event)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }

    #[test]
    fn each_emit_counts_once_and_suppression_counts_readings() {
        let before = total("work_order_closed");
        WorkOrderClosed {
            id: "01J",
            cmms_ref: None,
        }
        .emit();
        assert!(total("work_order_closed") > before);
        let before = total("readings_suppressed");
        ReadingsSuppressed { count: 7 }.emit();
        assert!(total("readings_suppressed") >= before + 7);
    }

    #[test]
    fn counters_are_in_the_order_of_their_labels() {
        assert_eq!(Counter::DeviceDown as usize, 0);
        assert_eq!(Counter::StoreRecovered as usize, EVENTS.len() - 1);
        assert_eq!(
            EVENTS[Counter::ReadingsSuppressed as usize],
            "readings_suppressed"
        );
    }

    #[test]
    fn every_event_has_a_counter() {
        assert_eq!(totals().len(), EVENTS.len());
        let mut names = EVENTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EVENTS.len(), "labels are unique");
    }
}
