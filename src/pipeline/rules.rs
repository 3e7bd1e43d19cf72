//! The rules stage: feeds polls, the clock and what operators and the
//! CMMS send into the pure rules core (`crate::rules`), and turns what
//! comes out into outbox messages, history entries and saved state.
//!
//! ```text
//! Batch ─────────► Engine::observe_batch ─► AlarmEvent ─┬─► alarms/{rule} (retained)
//! 1 s tick ──────► Engine::tick ──────────────┘          └─► WorkOrderBook ─► workorders/{id} (retained)
//! alarms/+/ack, /shelve ─► Engine::ack, shelve ─┘                 ▲
//! workorders/+/status ──────────────────────────────────────────┘ (closed: empty retained message)
//! Batch ─────────► MeterState::observe ─► meters/{name} (retained), MeterDue ─► WorkOrderBook
//! new broker session ─► every alarm, open work order and meter again (retained)
//! ```
//!
//! # Retained state
//!
//! The forwarder announces every new broker session (the first after a
//! start, and each reconnect) on the inbound channel; the stage answers
//! by queuing the current state of every alarm, open work order and meter
//! (`RulesStage::republish`), so the broker's retained messages end at
//! the newest state whatever rows an earlier run left in the outbox.
//!
//! # Persistence
//!
//! The engine, the book and the meters are saved as three state blobs
//! ([`STATE_ENGINE`], [`STATE_WORKORDERS`], [`STATE_METERS`]) handed to
//! the store in one command with the messages they produced, so the store
//! writes them in the same transaction: the saved state is never ahead of
//! the outbox, and never behind it for any alarm change or work order
//! ([`Save::Now`]): after a crash no alarm change or work-order version is
//! published twice under two seqs, and an acknowledgement the broker has
//! seen is never forgotten. Everything else (tag memories, meter amounts,
//! running delays) is saved every [`SAVE_INTERVAL`] and at shutdown; a
//! crash therefore loses at most a few seconds of meter runtime and delay
//! progress.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::data::Sequencer;
use super::sparkplug::SparkplugOut;
use crate::clock::WallMap;
use crate::cmms::{route, vendor::Event};
use crate::config::{CmmsConfig, Config, Device, GatewayConfig, Meter, Rule, WorkOrderConfig};
use crate::contract::inbound::{self, OperatorAction, Request, Who};
use crate::contract::rules as payload;
use crate::contract::sparkplug::values::{AlarmNow, epoch_millis};
use crate::contract::topics::Topics;
use crate::events::{AlarmActive, WorkOrderClosed, WorkOrderHeld, WorkOrderRaised};
use crate::reading::Batch;
use crate::rules::{
    AlarmEvent, Cause, Engine, MeterChange, MeterState, RulesError, STATE_ENGINE, STATE_METERS,
    STATE_WORKORDERS, SavedEngine, SnapshotEntry, Timestamp, WoChange, WoContext, WoError,
    WorkOrder, WorkOrderBook,
};
use crate::store::{
    Delivery, HistoryEntry, HistoryKind, Kind, OutMessage, StoreError, StoreHandle,
};
use crate::telemetry::RulesView;

/// Everything is saved at least this often while readings arrive.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(10);

/// QoS of alarm, work-order and meter messages (docs/mqtt.md): they are
/// retained state, and QoS 2 buys nothing over the outbox's at-least-once.
const STATE_QOS: u8 = 1;

/// How urgently a step's state must be saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Save {
    /// Nothing new beyond readings: the periodic save covers it.
    #[default]
    Later,
    /// An alarm or a work order changed: save with these messages.
    Now,
}

/// What one step of the stage produced, for the store.
#[derive(Debug, Default)]
pub struct Step {
    /// Messages for the outbox, in order.
    pub messages: Vec<OutMessage>,
    /// Alarm and work-order changes for the history table.
    pub history: Vec<HistoryEntry>,
    /// Work-order and meter messages for the CMMS connectors, committed
    /// with the messages they copy.
    pub deliveries: Vec<Delivery>,
    /// How soon the state must be saved.
    pub save: Save,
}

impl Step {
    fn need(&mut self, save: Save) {
        self.save = self.save.max(save);
    }
}

/// Every rule, alarm, work order and meter of the running config.
#[derive(Debug)]
pub struct RulesStage {
    engine: Engine,
    book: WorkOrderBook,
    meters: Vec<MeterState>,
    rules: Vec<Rule>,
    rule_index: HashMap<String, usize>,
    meter_configs: Vec<Meter>,
    /// Device name → (meter index, tag index in the device).
    meter_inputs: HashMap<String, Vec<(usize, usize)>>,
    gateway: GatewayConfig,
    devices: Vec<Arc<Device>>,
    workorders: WorkOrderConfig,
    topics: Topics,
    last_save: Option<Instant>,
    /// The clocks as of the step being handled: the timeline's "now"
    /// (durations, the rows' `created_at`) and how its moments read as
    /// wall-clock time in the messages. Set by every entry point.
    now: WallMap,
    /// The retained state was republished at least once (closed work
    /// orders' topics are cleared only the first time).
    republished: bool,
    /// The CMMS connectors: work orders and meter readings are queued for
    /// them with the messages they copy.
    cmms: Vec<CmmsConfig>,
    /// The Sparkplug edge node: every alarm change is also a row of its
    /// device's metrics.
    sparkplug: Option<SparkplugOut>,
}

impl RulesStage {
    /// Builds the rules of `config`, all fresh ([`restore`](Self::restore)
    /// puts back the saved state).
    pub fn new(config: &Config, topics: Topics) -> Result<RulesStage, RulesError> {
        let engine = Engine::new(&config.rules, &config.devices, &config.alarms)?;
        let mut meter_inputs: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (m, meter) in config.meters.iter().enumerate() {
            let Some((device, tag)) = meter.tag.split_once('.') else {
                continue;
            };
            let index = config
                .devices
                .iter()
                .find(|d| d.name == device)
                .and_then(|d| d.tags.iter().position(|t| t.name == tag));
            match index {
                Some(i) => meter_inputs
                    .entry(device.to_owned())
                    .or_default()
                    .push((m, i)),
                // `check` refuses this; a meter without a tag just stays put.
                None => {
                    tracing::error!(meter = %meter.name, tag = %meter.tag, "meter tag not found")
                }
            }
        }
        Ok(RulesStage {
            engine,
            book: WorkOrderBook::new(&config.workorders),
            meters: config.meters.iter().map(MeterState::new).collect(),
            rule_index: config
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| (r.name.clone(), i))
                .collect(),
            rules: config.rules.clone(),
            meter_configs: config.meters.clone(),
            meter_inputs,
            gateway: config.gateway.clone(),
            devices: config.devices.clone(),
            workorders: config.workorders.clone(),
            topics,
            last_save: None,
            now: WallMap::IDENTITY,
            republished: false,
            cmms: config.cmms.clone(),
            sparkplug: None,
        })
    }

    /// Alarm changes also go to the Sparkplug edge node as metrics.
    pub fn with_sparkplug(mut self, sparkplug: Option<SparkplugOut>) -> RulesStage {
        self.sparkplug = sparkplug;
        self
    }

    /// Puts every alarm's state where the edge node's births read it.
    fn seed_sparkplug(&self) {
        let Some(sp) = &self.sparkplug else {
            return;
        };
        let mut current = sp.current.lock().unwrap_or_else(|e| e.into_inner());
        for rule in &self.rules {
            let (Some(alarm), Some(owner)) = (
                self.engine.alarm(&rule.name),
                sp.catalog.rule_owner(&rule.name),
            ) else {
                continue;
            };
            let state = alarm.state();
            let at = alarm
                .changed_at()
                .map_or(std::time::UNIX_EPOCH, |t| self.now.system_time(t));
            let now = AlarmNow {
                state: state.as_str().to_owned(),
                active: state.is_active(),
                acked: !state.is_unacked(),
                at_ms: epoch_millis(at),
            };
            let alarms = match owner {
                Some(device) => &mut current.devices.entry(device.to_owned()).or_default().alarms,
                None => &mut current.node_alarms,
            };
            alarms.insert(rule.name.clone(), now);
        }
    }

    /// No rules and no meters: nothing to evaluate or save.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.meters.is_empty()
    }

    /// Work orders not closed yet.
    pub fn open_work_orders(&self) -> impl Iterator<Item = &WorkOrder> {
        self.book.open()
    }

    /// The rules engine (alarm states, last readings).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A copy of the alarms away from normal, the open work orders and the
    /// meters, for `/metrics` and `/api/status` (see `telemetry::rules_view`).
    pub fn view(&self) -> RulesView {
        RulesView::build(
            &self.rules,
            &self.devices,
            &self.engine,
            &self.book,
            &self.meters,
            &self.now,
        )
    }

    /// Puts back the state saved in the store, and returns the messages
    /// that clear the broker's retained topics of rules and meters that
    /// are gone from the config. The state of every alarm (a new rule's
    /// included) goes out at each new broker session
    /// ([`Request::BrokerConnected`]).
    ///
    /// A saved blob that cannot be read (written by an incompatible
    /// version) is logged, kept under `{key}.unreadable` and replaced by a
    /// fresh state.
    pub async fn restore(
        &mut self,
        store: &StoreHandle,
        seq: &mut Sequencer,
    ) -> Result<Step, StoreError> {
        // Even with no rules and no meters left: the retained messages of
        // those removed must be cleared, and open work orders kept.
        let mut step = Step::default();
        self.now = store.clock().wall_map();
        let now = self.now.at;
        if let Some(saved) = load::<SavedEngine>(store, STATE_ENGINE).await? {
            let report = self.engine.restore(&saved);
            if report.version_mismatch {
                tracing::error!(
                    "saved alarm state has another layout version; alarms start from normal"
                );
            }
            for rule in &report.conditions_reset {
                tracing::info!(%rule, "rule condition changed kind; its condition starts afresh, its alarm state is kept");
            }
            for rule in &report.unknown_rules {
                tracing::info!(%rule, "rule removed from the config; clearing its retained alarm");
                let topic = self.topics.alarm(rule);
                let n = seq.next(&topic);
                step.messages
                    .push(state_message(topic, n, Vec::new(), Kind::Alarm, now));
            }
            step.need(Save::Now);
        }
        if let Some(book) = load::<WorkOrderBook>(store, STATE_WORKORDERS).await? {
            if book.version() == crate::rules::workorder::BOOK_VERSION {
                self.book = book;
                self.book.set_config(&self.workorders);
            } else {
                tracing::error!(
                    version = book.version(),
                    "saved work-order book has another layout version; starting an empty one"
                );
            }
        }
        if let Some(saved) = load::<Vec<MeterState>>(store, STATE_METERS).await? {
            for (state, meter) in self.meters.iter_mut().zip(&self.meter_configs) {
                if let Some(old) = saved.iter().find(|s| s.name() == meter.name) {
                    *state = MeterState::resume(meter, old.clone());
                }
            }
            for gone in saved
                .iter()
                .filter(|s| !self.meter_configs.iter().any(|m| m.name == s.name()))
            {
                tracing::info!(
                    meter = gone.name(),
                    "meter removed from the config; clearing its retained value"
                );
                let topic = self.topics.meter(gone.name());
                let n = seq.next(&topic);
                step.messages
                    .push(state_message(topic, n, Vec::new(), Kind::Meter, now));
                step.need(Save::Now);
            }
        }
        self.seed_sparkplug();
        let open = self.book.open().count();
        tracing::info!(
            rules = self.rules.len(),
            meters = self.meters.len(),
            open_work_orders = open,
            active_alarms = self
                .engine
                .alarms()
                .filter(|a| a.state().is_active())
                .count(),
            "rules ready"
        );
        Ok(step)
    }

    /// One poll, started at `at` on the timeline, handled `now`:
    /// evaluates the rules and meters that watch its tags.
    pub fn on_batch(
        &mut self,
        batch: &Batch,
        at: Timestamp,
        now: WallMap,
        seq: &mut Sequencer,
        step: &mut Step,
    ) {
        if self.is_empty() {
            return;
        }
        self.now = now;
        let events = self.engine.observe_batch(batch, at);
        self.alarm_events(events, seq, step);
        let Some(inputs) = self.meter_inputs.get(&batch.device.name) else {
            return;
        };
        let mut changes = Vec::new();
        for &(m, tag) in inputs {
            let Some(reading) = batch.readings.iter().find(|r| r.tag == tag) else {
                continue;
            };
            if let Some(state) = self.meters.get_mut(m) {
                let c = state.observe(reading.value.as_ref(), &reading.quality, at);
                changes.extend(c.into_iter().map(|c| (m, c)));
            }
        }
        for (m, change) in changes {
            self.meter_change(m, change, seq, step);
        }
    }

    /// Time passes: delays, staleness, shelves and chattering that are due.
    pub fn tick(&mut self, now: WallMap, seq: &mut Sequencer, step: &mut Step) {
        if self.is_empty() {
            return;
        }
        self.now = now;
        let events = self.engine.tick(now.at);
        self.alarm_events(events, seq, step);
    }

    /// A request from an operator or the CMMS (read from its message by
    /// the forwarder, or made by the status page), received at `now`.
    pub fn on_inbound(
        &mut self,
        request: &Request,
        now: WallMap,
        seq: &mut Sequencer,
        step: &mut Step,
    ) {
        self.now = now;
        match request {
            Request::BrokerConnected => self.republish(seq, step),
            Request::Alarm { rule, action } => {
                self.operator(rule, action.clone(), now.at, seq, step)
            }
            Request::WorkOrderStatus {
                id,
                update,
                retained,
            } => match self.book.on_status(id, update, now.at) {
                Ok(changes) => {
                    if !changes.is_empty() {
                        step.need(Save::Now);
                    }
                    self.work_order_changes(changes, true, seq, step);
                }
                // Old retained statuses of work orders long closed come
                // back at every subscription: not worth a warning.
                Err(WoError::UnknownId(_)) if *retained => {
                    tracing::debug!(%id, "retained status of an unknown work order; ignored");
                }
                Err(e) => tracing::warn!(error = %e, "work-order status ignored"),
            },
            // The forwarder sends write commands to the write desk, never
            // here: nothing to apply.
            Request::Write(command) => {
                tracing::debug!(device = %command.device, tag = %command.tag,
                    "write command on the rules' channel; ignored (commands go to the write desk)");
            }
        }
    }

    /// The broker has a new session (the first after start, or a
    /// reconnect): publishes the current state of every alarm, every open
    /// work order and every meter again, retained. Queued now, these rows
    /// come after every row of their topic already in the outbox, so the
    /// broker's retained message ends at the newest state whatever the
    /// backlog resends first: the forwarder sends backlog rows in id
    /// order, and sends a backlog row without the retain flag once a newer
    /// retained row of its topic went out. Without this, an older backlog
    /// row left unconfirmed by the previous run (its newer state confirmed
    /// and deleted before the stop) went out retained after a restart and
    /// became the broker's state. The first time a stage does this, it
    /// also clears the topics of the closed work orders it keeps, which an
    /// older row could have brought back the same way.
    ///
    /// Not a change of state: no history, no save.
    fn republish(&mut self, seq: &mut Sequencer, step: &mut Step) {
        let at = self.now.at;
        let mut alarms = 0;
        for rule in &self.rules {
            let Some(alarm) = self.engine.alarm(&rule.name) else {
                continue;
            };
            let trigger = self.engine.condition(&rule.name).and_then(|c| c.trigger());
            let topic = self.topics.alarm(&rule.name);
            let n = seq.next(&topic);
            match payload::alarm_state(alarm, rule, trigger, at, n, seq.store(), &self.now) {
                Ok(p) => {
                    step.messages
                        .push(state_message(topic, n, p, Kind::Alarm, at));
                    alarms += 1;
                }
                Err(e) => {
                    tracing::error!(rule = %rule.name, error = %e, "cannot encode the alarm state")
                }
            }
        }
        let mut open = 0;
        let mut cleared = 0;
        for wo in self.book.all() {
            let is_open = wo.status.is_open();
            if !is_open && self.republished {
                continue;
            }
            let topic = self.topics.workorder(&wo.id);
            let n = seq.next(&topic);
            let body = if is_open {
                match payload::work_order(wo, n, seq.store(), &self.now) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(id = %wo.id, error = %e, "cannot encode the work order");
                        continue;
                    }
                }
            } else {
                Vec::new()
            };
            if is_open {
                open += 1;
            } else {
                cleared += 1;
            }
            step.messages
                .push(state_message(topic, n, body, Kind::WorkOrder, at));
        }
        for state in &self.meters {
            let report = state.report(at);
            let topic = self.topics.meter(&report.meter);
            let n = seq.next(&topic);
            match payload::meter(&report, n, seq.store(), &self.now) {
                Ok(p) => step
                    .messages
                    .push(state_message(topic, n, p, Kind::Meter, at)),
                Err(e) => {
                    tracing::error!(meter = %report.meter, error = %e, "cannot encode the meter")
                }
            }
        }
        self.republished = true;
        if alarms + open + cleared + self.meters.len() == 0 {
            return;
        }
        tracing::info!(
            alarms,
            open_work_orders = open,
            closed_work_orders_cleared = cleared,
            meters = self.meters.len(),
            "broker connected: republishing the current retained state"
        );
    }

    /// Whether the state should be saved now, given what `step` asks and
    /// the time since the last save. Records the save when it says yes.
    pub fn save_due(&mut self, step: &Step, now: Instant) -> bool {
        // Nothing to keep, unless a restore cleared what was removed (the
        // save then records that it is gone, so it is cleared once).
        if self.is_empty() && step.save != Save::Now {
            return false;
        }
        let since = self.last_save.map(|t| now.saturating_duration_since(t));
        let due = match step.save {
            Save::Now => true,
            Save::Later => since.is_none_or(|s| s >= SAVE_INTERVAL),
        };
        if due {
            self.last_save = Some(now);
        }
        due
    }

    /// The three state blobs, to queue with [`StoreHandle::save_state`].
    pub fn saved(&self) -> Vec<(&'static str, Vec<u8>)> {
        let mut out = Vec::with_capacity(3);
        let blobs = [
            (STATE_ENGINE, serde_json::to_vec(&self.engine.save())),
            (STATE_WORKORDERS, serde_json::to_vec(&self.book)),
            (STATE_METERS, serde_json::to_vec(&self.meters)),
        ];
        for (key, blob) in blobs {
            match blob {
                Ok(b) => out.push((key, b)),
                // Not expected (plain data); the previous save stays.
                Err(e) => tracing::error!(key, error = %e, "cannot encode the rules state"),
            }
        }
        out
    }

    fn operator(
        &mut self,
        rule: &str,
        action: OperatorAction,
        now: Timestamp,
        seq: &mut Sequencer,
        step: &mut Step,
    ) {
        let (result, what, who) = match &action {
            OperatorAction::Ack(who) => (self.engine.ack(rule, now), "ack", who),
            OperatorAction::Shelve {
                duration,
                capped,
                who,
            } => {
                if *capped {
                    tracing::warn!(%rule, max = ?inbound::MAX_SHELVE, "shelve request longer than the maximum; shortened");
                }
                (self.engine.shelve(rule, *duration, now), "shelve", who)
            }
            OperatorAction::Unshelve(who) => (self.engine.unshelve(rule, now), "unshelve", who),
        };
        match result {
            Ok(events) => {
                tracing::info!(%rule, request = what, by = who.by.as_deref().unwrap_or("-"), changed = !events.is_empty(), "operator request");
                step.history.push(HistoryEntry {
                    at: self.now.system_time(now),
                    kind: HistoryKind::Alarm,
                    subject: rule.to_owned(),
                    event: what.to_owned(),
                    detail: request_detail(&action, who),
                });
                self.alarm_events(events, seq, step);
            }
            Err(e) => tracing::warn!(error = %e, request = what, "operator request ignored"),
        }
    }

    fn alarm_events(&mut self, events: Vec<AlarmEvent>, seq: &mut Sequencer, step: &mut Step) {
        for event in events {
            let Some(&i) = self.rule_index.get(&*event.rule) else {
                continue;
            };
            let rule = &self.rules[i];
            let since = match event.cause {
                Cause::ChatterCleared => self
                    .engine
                    .alarm(&event.rule)
                    .and_then(|a| a.changed_at())
                    .unwrap_or(event.at),
                _ => event.at,
            };
            log_alarm(&event);
            let topic = self.topics.alarm(&event.rule);
            let n = seq.next(&topic);
            match payload::alarm(&event, rule, since, n, seq.store(), &self.now) {
                Ok(p) => {
                    step.history.push(HistoryEntry {
                        at: self.now.system_time(event.at),
                        kind: HistoryKind::Alarm,
                        subject: event.rule.to_string(),
                        event: event.to.as_str().to_owned(),
                        detail: String::from_utf8_lossy(&p).into_owned(),
                    });
                    step.messages
                        .push(state_message(topic, n, p, Kind::Alarm, self.now.at));
                }
                Err(e) => {
                    tracing::error!(rule = %event.rule, error = %e, "cannot encode the alarm")
                }
            }
            if let Some(sp) = &self.sparkplug {
                let at = self.now.system_time(event.at);
                step.messages
                    .extend(sp.alarm(&event.rule, event.to, at, seq, self.now.at));
            }
            step.need(Save::Now);
            // Activations, and releases of an activation chattering held
            // back (`released`), are what the book may act on.
            if !event.activation && event.released.is_none() {
                continue;
            }
            let snapshot = snapshot(
                &self.engine,
                rule.condition.tags(),
                &rule.workorder.snapshot,
            );
            let ctx = WoContext::new(&self.gateway, &self.devices);
            let changes = self
                .book
                .on_alarm_event(&event, rule, &ctx, snapshot, rand::random());
            self.work_order_changes(changes, false, seq, step);
        }
    }

    fn meter_change(
        &mut self,
        m: usize,
        change: MeterChange,
        seq: &mut Sequencer,
        step: &mut Step,
    ) {
        match change {
            MeterChange::Publish(report) => {
                let topic = self.topics.meter(&report.meter);
                let n = seq.next(&topic);
                match payload::meter(&report, n, seq.store(), &self.now) {
                    Ok(p) => {
                        let wall = self.now.system_time(self.now.at);
                        step.deliveries.extend(route::meter(
                            &self.cmms,
                            &report.meter,
                            &topic,
                            &p,
                            wall,
                        ));
                        step.messages
                            .push(state_message(topic, n, p, Kind::Meter, self.now.at))
                    }
                    Err(e) => {
                        tracing::error!(meter = %report.meter, error = %e, "cannot encode the meter")
                    }
                }
            }
            MeterChange::Due(due) => {
                let Some(meter) = self.meter_configs.get(m) else {
                    return;
                };
                tracing::info!(meter = %due.meter, value = due.value, threshold = due.threshold, "meter reached its threshold");
                let snapshot = snapshot(
                    &self.engine,
                    vec![meter.tag.as_str()],
                    &meter.workorder.snapshot,
                );
                let ctx = WoContext::new(&self.gateway, &self.devices);
                let changes = self
                    .book
                    .on_meter_due(&due, meter, &ctx, snapshot, rand::random());
                self.work_order_changes(changes, false, seq, step);
                step.need(Save::Now);
            }
        }
    }

    fn work_order_changes(
        &mut self,
        changes: Vec<WoChange>,
        from_cmms: bool,
        seq: &mut Sequencer,
        step: &mut Step,
    ) {
        for change in changes {
            let (wo, event) = match &change {
                WoChange::Raised(wo) => {
                    WorkOrderRaised {
                        id: &wo.id,
                        kind: wo.kind.as_str(),
                        asset: &wo.asset,
                        title: &wo.title,
                    }
                    .emit();
                    (wo, "raised")
                }
                WoChange::FloodRaised(wo) => {
                    tracing::error!(id = %wo.id, title = %wo.title, "alarm flood: work orders held back");
                    (wo, "flood")
                }
                WoChange::Updated(wo) => {
                    tracing::debug!(id = %wo.id, status = wo.status.as_str(), occurrences = wo.occurrences, "work order updated");
                    (wo, wo.status.as_str())
                }
                WoChange::Cleared(wo) => {
                    WorkOrderClosed {
                        id: &wo.id,
                        cmms_ref: wo.cmms_ref.as_deref(),
                    }
                    .emit();
                    (wo, "closed")
                }
                WoChange::Held { rule, asset } => {
                    WorkOrderHeld { rule, asset }.emit();
                    step.history.push(HistoryEntry {
                        at: self.now.system_time(self.now.at),
                        kind: HistoryKind::WorkOrder,
                        subject: rule.clone(),
                        event: "held".to_owned(),
                        detail: json!({ "rule": rule, "asset": asset }).to_string(),
                    });
                    continue;
                }
            };
            // An update is an occurrence, unless the CMMS sent a status.
            let event = if matches!(change, WoChange::Updated(_)) && !from_cmms {
                "updated"
            } else {
                event
            };
            let topic = self.topics.workorder(&wo.id);
            let n = seq.next(&topic);
            let cleared = matches!(change, WoChange::Cleared(_));
            match payload::work_order(wo, n, seq.store(), &self.now) {
                Ok(p) => {
                    step.history.push(HistoryEntry {
                        at: self.now.system_time(wo.updated_at),
                        kind: HistoryKind::WorkOrder,
                        subject: wo.id.clone(),
                        event: event.to_owned(),
                        detail: String::from_utf8_lossy(&p).into_owned(),
                    });
                    // The connectors get every change but the CMMS's own
                    // statuses (they came from a CMMS).
                    let routed = match change {
                        WoChange::Raised(_) | WoChange::FloodRaised(_) => Some(Event::Raised),
                        WoChange::Updated(_) if !from_cmms => Some(Event::Updated),
                        WoChange::Cleared(_) => Some(Event::Closed),
                        _ => None,
                    };
                    if let Some(e) = routed {
                        let wall = self.now.system_time(wo.updated_at);
                        step.deliveries
                            .extend(route::work_order(&self.cmms, &wo.key, e, &topic, &p, wall));
                    }
                    // Closed: an empty retained message clears the topic.
                    let body = if cleared { Vec::new() } else { p };
                    step.messages
                        .push(state_message(topic, n, body, Kind::WorkOrder, self.now.at));
                }
                Err(e) => tracing::error!(id = %wo.id, error = %e, "cannot encode the work order"),
            }
            match change {
                WoChange::Raised(_) | WoChange::FloodRaised(_) => step.need(Save::Now),
                WoChange::Updated(_) => step.need(Save::Now),
                WoChange::Cleared(wo) => {
                    step.need(Save::Now);
                    if let Some(name) = wo.meter() {
                        let at = wo.updated_at;
                        if let Some(m) = self.meters.iter().position(|s| s.name() == name) {
                            let changes = self.meters[m].on_work_order_closed(at);
                            for c in changes {
                                self.meter_change(m, c, seq, step);
                            }
                        }
                    }
                }
                WoChange::Held { .. } => {}
            }
        }
    }
}

/// The evidence in a work order: the condition's own tags, then the
/// template's `snapshot` tags, each once.
fn snapshot(engine: &Engine, own: Vec<&str>, extra: &[String]) -> Vec<SnapshotEntry> {
    let mut names: Vec<&str> = own;
    for t in extra {
        if !names.contains(&t.as_str()) {
            names.push(t);
        }
    }
    engine
        .snapshot(&names)
        .into_iter()
        .map(SnapshotEntry::from)
        .collect()
}

fn state_message(
    topic: String,
    seq: u64,
    payload: Vec<u8>,
    kind: Kind,
    created_at: Timestamp,
) -> OutMessage {
    OutMessage {
        topic,
        seq,
        payload,
        qos: STATE_QOS,
        retain: true,
        kind,
        created_at,
    }
}

fn request_detail(action: &OperatorAction, who: &Who) -> String {
    let mut detail = json!({ "by": who.by, "note": who.note });
    if let OperatorAction::Shelve { duration, .. } = action {
        detail["duration_s"] = json!(duration.as_secs());
    }
    detail.to_string()
}

fn log_alarm(event: &AlarmEvent) {
    let value = event
        .trigger
        .as_ref()
        .map(|t| crate::rules::workorder::format_value(&t.value));
    if event.activation {
        AlarmActive {
            rule: &event.rule,
            value: value.as_deref(),
            chattering: event.chattering,
        }
        .emit();
    } else if let Some(since) = event.released {
        tracing::info!(rule = %event.rule, state = event.to.as_str(), active_for = ?event.at.since(since), "chattering cleared with the alarm still active: its work order is raised now");
    } else {
        tracing::info!(rule = %event.rule, from = event.from.as_str(), to = event.to.as_str(), cause = ?event.cause, "alarm changed");
    }
}

/// Loads and parses a state blob; an unreadable one is logged and kept
/// aside under `{key}.unreadable`.
async fn load<T: serde::de::DeserializeOwned>(
    store: &StoreHandle,
    key: &str,
) -> Result<Option<T>, StoreError> {
    let Some(blob) = store.load_state(key).await? else {
        return Ok(None);
    };
    match serde_json::from_slice(&blob) {
        Ok(v) => Ok(Some(v)),
        Err(e) => {
            tracing::error!(key, error = %e, "saved rules state cannot be read; starting afresh (the old one is kept as {key}.unreadable)");
            store.save_state(&format!("{key}.unreadable"), blob).await?;
            Ok(None)
        }
    }
}
