//! The work-order book: every work order of the gateway, one open per
//! slot, the counters of the idempotency keys and the flood guard's
//! memory; what raises, updates and closes a work order (the `workorder`
//! module docs say when).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::{WoContext, condition_tag, trigger_unit};
use super::flood::{Admit, FloodGuard};
use super::types::{
    FLOOD_RULE, Last, SnapshotEntry, StatusReport, StatusUpdate, WoChange, WoError, WoSource,
    WoStatus, WoTrigger, WoType, WorkOrder,
};
use crate::config::{Condition, Meter, Priority, Rule, WorkOrderConfig, WorkOrderTemplate};
use crate::rules::alarm::{AlarmEvent, Cause};
use crate::rules::meter::MeterDue;
use crate::rules::time::Timestamp;
use crate::tag::Value;

/// Layout version of a serialized [`WorkOrderBook`].
pub const BOOK_VERSION: u32 = 1;

/// Closed work orders kept for late or repeated status messages.
pub const MAX_CLOSED: usize = 256;

/// Status reports kept per work order (the newest).
pub const MAX_HISTORY: usize = 32;

/// The fixed part of a new work order.
struct Draft {
    kind: WoType,
    source: WoSource,
    priority: Priority,
    asset: String,
    location: Option<String>,
    problem_code: Option<String>,
    procedure: Option<String>,
    trigger: WoTrigger,
    readings: Vec<SnapshotEntry>,
    last: Last,
}

/// Every work order of the gateway and the state that decides the next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkOrderBook {
    /// [`BOOK_VERSION`].
    version: u32,
    /// Every kept work order by id (ULIDs sort by creation time).
    orders: BTreeMap<String, WorkOrder>,
    /// Slot (`{source}/{asset}`) → id of its open work order.
    open: BTreeMap<String, String>,
    /// Slot → work orders raised for it so far (the key's `n`).
    raised: BTreeMap<String, u64>,
    /// The flood guard.
    flood: FloodGuard,
}

impl WorkOrderBook {
    /// An empty book.
    pub fn new(config: &WorkOrderConfig) -> WorkOrderBook {
        WorkOrderBook {
            version: BOOK_VERSION,
            orders: BTreeMap::new(),
            open: BTreeMap::new(),
            raised: BTreeMap::new(),
            flood: FloodGuard::new(config),
        }
    }

    /// Applies the running `[workorders]` (after a restore or a reload).
    /// The guard's memory is kept; a smaller limit forgets the oldest
    /// attempts beyond it.
    pub fn set_config(&mut self, config: &WorkOrderConfig) {
        self.flood.set_config(config);
    }

    /// The layout version this book was saved with.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// An alarm event of `rule` (the `workorder` module docs: which events
    /// raise, update or do nothing). `snapshot` is the last readings of the
    /// template's `snapshot` tags
    /// ([`Engine::snapshot`](crate::rules::Engine::snapshot)), used only
    /// when a work order is raised; `random` is the ULID's random part.
    /// The time is the event's.
    pub fn on_alarm_event(
        &mut self,
        event: &AlarmEvent,
        rule: &Rule,
        ctx: &WoContext<'_>,
        snapshot: Vec<SnapshotEntry>,
        random: u128,
    ) -> Vec<WoChange> {
        // A release asks for the work order its held activation was
        // refused; it is not an occurrence of its own.
        if !event.activation && event.released.is_none() {
            return Vec::new();
        }
        let at = event.at;
        let tag = condition_tag(&rule.condition);
        let asset = ctx.asset_for(rule.asset.as_deref(), tag);
        let source = WoSource::Rule(event.rule.to_string());
        let slot = source.slot(&asset);
        let value = event.trigger.as_ref().map(|t| t.value.clone());
        if let Some(id) = self.open.get(&slot) {
            // Only the condition adds an occurrence: a shelf's end
            // re-announces one, and a release's activation already
            // updated this work order when it happened.
            if event.cause != Cause::Condition || !event.activation {
                return Vec::new();
            }
            return match self.orders.get_mut(id) {
                Some(wo) => {
                    wo.occurrences += 1;
                    wo.last = Last { value, at };
                    wo.updated_at = at;
                    wo.render(&rule.workorder, ctx);
                    vec![WoChange::Updated(Box::new(wo.clone()))]
                }
                None => Vec::new(),
            };
        }
        if !event.raise_work_order || !rule.workorder.enabled {
            return Vec::new();
        }
        match self.flood.admit(at) {
            Admit::Raise => {}
            Admit::Trip => return vec![self.flood_work_order(event, ctx, random)],
            Admit::Hold => {
                return vec![WoChange::Held {
                    rule: event.rule.to_string(),
                    asset,
                }];
            }
        }
        let expr = matches!(rule.condition, Condition::Expr { .. });
        let draft = Draft {
            kind: WoType::Corrective,
            source,
            priority: rule.priority,
            location: ctx.location_for(rule.location.as_deref(), tag),
            asset,
            problem_code: rule.workorder.problem_code.clone(),
            procedure: rule.workorder.procedure.clone(),
            trigger: WoTrigger::Alarm {
                rule: event.rule.to_string(),
                tag: if expr { None } else { tag.map(str::to_owned) },
                value: value.clone(),
                limit: event.trigger.as_ref().and_then(|t| t.limit.clone()),
                unit: trigger_unit(&rule.condition, ctx),
                condition: rule.condition.kind().to_owned(),
                // A released work order is about the fault that began
                // when its held activation did.
                since: event.released.unwrap_or(at),
            },
            readings: snapshot,
            last: Last { value, at },
        };
        let wo = self.insert(draft, &rule.workorder, ctx, at, random);
        vec![WoChange::Raised(Box::new(wo))]
    }

    /// A meter reached its threshold: raises its preventive work order
    /// (never held by the flood guard), or updates the open one. Nothing
    /// when the meter's template is disabled.
    pub fn on_meter_due(
        &mut self,
        due: &MeterDue,
        meter: &Meter,
        ctx: &WoContext<'_>,
        snapshot: Vec<SnapshotEntry>,
        random: u128,
    ) -> Vec<WoChange> {
        if !meter.workorder.enabled {
            return Vec::new();
        }
        let at = due.at;
        let asset = ctx.asset_for(meter.asset.as_deref(), Some(&meter.tag));
        let source = WoSource::Meter(due.meter.clone());
        let slot = source.slot(&asset);
        let last = Last {
            value: Some(Value::Float(due.value)),
            at,
        };
        if let Some(id) = self.open.get(&slot) {
            return match self.orders.get_mut(id) {
                Some(wo) => {
                    wo.occurrences += 1;
                    wo.last = last;
                    wo.updated_at = at;
                    wo.render(&meter.workorder, ctx);
                    vec![WoChange::Updated(Box::new(wo.clone()))]
                }
                None => Vec::new(),
            };
        }
        let draft = Draft {
            kind: WoType::Preventive,
            source,
            priority: meter.priority,
            location: ctx.location_for(meter.location.as_deref(), Some(&meter.tag)),
            asset,
            problem_code: meter.workorder.problem_code.clone(),
            procedure: meter.workorder.procedure.clone(),
            trigger: WoTrigger::Meter {
                meter: due.meter.clone(),
                tag: meter.tag.clone(),
                kind: due.measure,
                value: due.value,
                threshold: due.threshold,
                since: at,
            },
            readings: snapshot,
            last,
        };
        let wo = self.insert(draft, &meter.workorder, ctx, at, random);
        vec![WoChange::Raised(Box::new(wo))]
    }

    /// A status the CMMS reported for work order `id`, received at `at`
    /// (the `workorder` module docs). A closed work order ignores it.
    pub fn on_status(
        &mut self,
        id: &str,
        update: &StatusUpdate,
        at: Timestamp,
    ) -> Result<Vec<WoChange>, WoError> {
        let Some(wo) = self.orders.get_mut(id) else {
            return Err(WoError::UnknownId(id.to_owned()));
        };
        if wo.status.is_end() {
            return Ok(Vec::new());
        }
        let status = update.status;
        let report = StatusReport {
            status,
            at,
            reference: update.cmms_ref.clone(),
            by: update.by.clone(),
            note: update.note.clone(),
        };
        if wo.history.last().is_some_and(|r| r.same_as(&report)) {
            return Ok(Vec::new());
        }
        if report.reference.is_some() {
            wo.cmms_ref.clone_from(&report.reference);
        }
        wo.history.push(report);
        if wo.history.len() > MAX_HISTORY {
            let excess = wo.history.len() - MAX_HISTORY;
            wo.history.drain(..excess);
        }
        wo.status = status;
        wo.updated_at = at;
        let wo = wo.clone();
        if !status.is_end() {
            return Ok(vec![WoChange::Updated(Box::new(wo))]);
        }
        let slot = wo.source.slot(&wo.asset);
        if self.open.get(&slot).is_some_and(|open| *open == wo.id) {
            self.open.remove(&slot);
        }
        self.prune_closed();
        Ok(vec![WoChange::Cleared(Box::new(wo))])
    }

    /// A work order by id.
    pub fn get(&self, id: &str) -> Option<&WorkOrder> {
        self.orders.get(id)
    }

    /// Every kept work order, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &WorkOrder> {
        self.orders.values()
    }

    /// Open work orders (not closed), oldest first: what is retained on
    /// the broker.
    pub fn open(&self) -> impl Iterator<Item = &WorkOrder> {
        self.orders.values().filter(|w| w.status.is_open())
    }

    /// The open work order of a slot.
    pub fn open_for(&self, source: &WoSource, asset: &str) -> Option<&WorkOrder> {
        self.open
            .get(&source.slot(asset))
            .and_then(|id| self.orders.get(id))
    }

    /// Work orders raised for a slot so far (the next key's `n` is one
    /// more).
    pub fn raised_for(&self, source: &WoSource, asset: &str) -> u64 {
        self.raised.get(&source.slot(asset)).copied().unwrap_or(0)
    }

    /// Whether an attempt to raise at `at` would be held (or trip the
    /// guard), without counting it.
    pub fn is_flooding(&self, at: Timestamp) -> bool {
        self.flood.is_flooding(at)
    }

    /// Activations that raised no work order of their own because of the
    /// flood guard, since the book was created.
    pub fn held(&self) -> u64 {
        self.flood.held()
    }

    /// The flood guard tripped: raise its work order or update the open
    /// one.
    fn flood_work_order(
        &mut self,
        event: &AlarmEvent,
        ctx: &WoContext<'_>,
        random: u128,
    ) -> WoChange {
        let at = event.at;
        let count = Value::UInt(u64::from(self.flood.limit()) + 1);
        let title = self.flood.title();
        let description = self.flood.description(&event.rule, at);
        let slot = WoSource::Flood.slot(ctx.gateway);
        if let Some(wo) = self.open.get(&slot).and_then(|id| self.orders.get_mut(id)) {
            wo.occurrences += 1;
            wo.last = Last {
                value: Some(count),
                at,
            };
            wo.updated_at = at;
            wo.title = title;
            wo.description = description;
            return WoChange::FloodRaised(Box::new(wo.clone()));
        }
        let draft = Draft {
            kind: WoType::Corrective,
            source: WoSource::Flood,
            priority: Priority::High,
            asset: ctx.gateway.to_owned(),
            location: ctx.location.map(str::to_owned),
            problem_code: None,
            procedure: None,
            trigger: WoTrigger::Alarm {
                rule: FLOOD_RULE.to_owned(),
                tag: None,
                value: Some(count.clone()),
                limit: Some(Value::UInt(u64::from(self.flood.limit()))),
                unit: None,
                condition: "flood".to_owned(),
                since: at,
            },
            readings: Vec::new(),
            last: Last {
                value: Some(count),
                at,
            },
        };
        let mut wo = self.insert(draft, &WorkOrderTemplate::default(), ctx, at, random);
        wo.title = title;
        wo.description = description;
        if let Some(kept) = self.orders.get_mut(&wo.id) {
            kept.title.clone_from(&wo.title);
            kept.description.clone_from(&wo.description);
        }
        WoChange::FloodRaised(Box::new(wo))
    }

    /// Numbers, names and stores a new work order; returns a copy.
    fn insert(
        &mut self,
        draft: Draft,
        template: &WorkOrderTemplate,
        ctx: &WoContext<'_>,
        at: Timestamp,
        random: u128,
    ) -> WorkOrder {
        let slot = draft.source.slot(&draft.asset);
        let id = self.fresh_id(at, random);
        let n = self.raised.entry(slot.clone()).or_insert(0);
        *n += 1;
        // The id makes the key unique for ever, even when the book (and
        // its counter) is lost with the store: see the module docs.
        let key = format!(
            "{}/{}/{}/{}/{n}-{id}",
            ctx.site,
            ctx.gateway,
            draft.source.key_part(),
            draft.asset
        );
        let mut wo = WorkOrder {
            id: id.clone(),
            key,
            kind: draft.kind,
            status: WoStatus::Open,
            priority: draft.priority,
            created_at: at,
            updated_at: at,
            source: draft.source,
            site: ctx.site.to_owned(),
            gateway: ctx.gateway.to_owned(),
            asset: draft.asset,
            location: draft.location,
            title: String::new(),
            description: String::new(),
            problem_code: draft.problem_code,
            procedure: draft.procedure,
            trigger: draft.trigger,
            readings: draft.readings,
            occurrences: 1,
            last: draft.last,
            cmms_ref: None,
            history: Vec::new(),
        };
        wo.render(template, ctx);
        self.open.insert(slot, id.clone());
        self.orders.insert(id, wo.clone());
        wo
    }

    /// A ULID from `at` and `random` that no kept work order has (the
    /// random part is bumped on a clash).
    fn fresh_id(&self, at: Timestamp, random: u128) -> String {
        let mut random = random;
        loop {
            let id = ulid::Ulid::from_parts(at.as_millis(), random).to_string();
            if !self.orders.contains_key(&id) {
                return id;
            }
            random = random.wrapping_add(1);
        }
    }

    /// Drops the oldest closed work orders beyond [`MAX_CLOSED`].
    fn prune_closed(&mut self) {
        let closed: Vec<String> = self
            .orders
            .values()
            .filter(|w| !w.status.is_open())
            .map(|w| w.id.clone())
            .collect();
        let excess = closed.len().saturating_sub(MAX_CLOSED);
        for id in closed.into_iter().take(excess) {
            self.orders.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fixtures::*;
    use super::*;
    use crate::config::{AlarmConfig, MeterKind};
    use crate::reading::Quality;
    use crate::rules::Engine;
    use crate::rules::alarm::AlarmState;
    use crate::rules::meter::{MeterChange, MeterState};

    #[test]
    fn the_first_activation_raises_exactly_one_work_order() {
        let mut rig = Rig::new();
        let mut r = rule("pump1_hot", "pump1.temp", 80.0);
        r.workorder.problem_code = Some("OVERHEAT".into());
        r.workorder.procedure = Some("SOP-12".into());
        let changes = rig.event(&activation("pump1_hot", 0.0, 81.25, 80.0), &r);
        let wo = raised(&changes);
        assert!(ulid::Ulid::from_string(&wo.id).is_ok(), "{}", wo.id);
        assert_eq!(
            ulid::Ulid::from_string(&wo.id).map(|u| u.timestamp_ms()),
            Ok(t(0.0).as_millis())
        );
        assert_eq!(wo.key, format!("plant-a/gw1/pump1_hot/P-101/1-{}", wo.id));
        assert_eq!(wo.kind, WoType::Corrective);
        assert_eq!(wo.status, WoStatus::Open);
        assert_eq!(wo.priority, Priority::High);
        assert_eq!(wo.asset, "P-101");
        assert_eq!(wo.location.as_deref(), Some("Hall 2"));
        assert_eq!(wo.occurrences, 1);
        assert_eq!(wo.created_at, t(0.0));
        assert_eq!(wo.title, "P-101: pump1_hot (above 80 degC)");
        assert!(
            wo.description
                .starts_with("Alarm pump1_hot (above) became active at 2025-11-21T"),
            "{}",
            wo.description
        );
        assert!(
            wo.description.ends_with(
                "on pump1.temp: value 81.25 degC, limit 80 degC. Occurrences: 1. Procedure: SOP-12."
            ),
            "{}",
            wo.description
        );
        assert_eq!(
            wo.trigger,
            WoTrigger::Alarm {
                rule: "pump1_hot".into(),
                tag: Some("pump1.temp".into()),
                value: Some(Value::Float(81.25)),
                limit: Some(Value::Float(80.0)),
                unit: Some("degC".into()),
                condition: "above".into(),
                since: t(0.0),
            }
        );
        assert_eq!(wo.problem_code.as_deref(), Some("OVERHEAT"));
        let source = WoSource::Rule("pump1_hot".into());
        assert_eq!(rig.book.open_for(&source, "P-101"), Some(wo));
        assert_eq!(rig.book.raised_for(&source, "P-101"), 1);
        assert_eq!(rig.book.open().count(), 1);
    }

    #[test]
    fn a_hovering_value_updates_the_open_work_order_and_never_raises_a_second() {
        // No deadband, no delays: every crossing is an activation, and the
        // alarm soon chatters. Every activation counts; one work order.
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let alarms = AlarmConfig {
            chatter_count: 3,
            chatter_window: Duration::from_secs(60),
            chatter_quiet: Duration::from_secs(300),
        };
        let mut engine = Engine::new(std::slice::from_ref(&r), &devices(), &alarms).unwrap();
        let id = engine.tag_id("pump1.temp").unwrap();
        let mut rig = Rig::new();
        let mut changes = Vec::new();
        let mut activations = 0;
        for s in 0..600 {
            let v = 80.0 + 1.5 * (f64::from(s) * 0.7).sin();
            for event in engine.observe(id, Some(&Value::Float(v)), &GOOD, t(f64::from(s))) {
                activations += usize::from(event.activation);
                changes.extend(rig.event(&event, &r));
            }
        }
        assert!(activations > 50, "{activations}");
        assert_eq!(count(&changes, |c| matches!(c, WoChange::Raised(_))), 1);
        assert_eq!(
            count(&changes, |c| matches!(c, WoChange::Updated(_))),
            activations - 1
        );
        let open: Vec<_> = rig.book.open().collect();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].occurrences, activations as u64);
        assert!(open[0].last.at > open[0].created_at);
        assert_eq!(open[0].trigger.since(), open[0].created_at);
    }

    /// The `ChatterCleared` event releasing an activation held since
    /// `since`.
    fn release(rule: &str, secs: f64, since: f64, value: f64) -> AlarmEvent {
        let mut e = activation(rule, secs, value, 80.0);
        e.from = AlarmState::ActiveUnacked;
        e.cause = Cause::ChatterCleared;
        e.activation = false;
        e.released = Some(t(since));
        e
    }

    #[test]
    fn a_release_raises_the_held_work_order_once_and_updates_nothing() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let wo = raised(&rig.event(&release("pump1_hot", 200.0, 80.0, 94.0), &r)).clone();
        assert_eq!(wo.occurrences, 1);
        assert_eq!(wo.created_at, t(200.0));
        assert_eq!(wo.trigger.since(), t(80.0), "the fault began when held");
        assert_eq!(wo.last.at, t(200.0));
        assert_eq!(wo.key, format!("plant-a/gw1/pump1_hot/P-101/1-{}", wo.id));
        // A release never updates an open work order: its activation was
        // counted when it happened.
        assert!(
            rig.event(&release("pump1_hot", 300.0, 250.0, 95.0), &r)
                .is_empty()
        );
        assert_eq!(rig.book.get(&wo.id).unwrap().occurrences, 1);
        // A release the rule's template refuses (disabled) raises nothing.
        let mut rig = Rig::new();
        let mut refused = release("pump1_hot", 200.0, 80.0, 94.0);
        refused.raise_work_order = false;
        assert!(rig.event(&refused, &r).is_empty());
        let mut off = rule("pump1_hot", "pump1.temp", 80.0);
        off.workorder.enabled = false;
        assert!(
            rig.event(&release("pump1_hot", 200.0, 80.0, 94.0), &off)
                .is_empty()
        );
        // A chatter_cleared with nothing released is nothing.
        let mut plain = release("pump1_hot", 200.0, 80.0, 94.0);
        plain.released = None;
        plain.raise_work_order = false;
        assert!(rig.event(&plain, &r).is_empty());
        assert_eq!(rig.book.all().count(), 0);
    }

    #[test]
    fn a_fault_during_the_chatter_gets_one_work_order_when_the_flag_clears() {
        // Issue #15 item 8 in the pure core: a hover (one work order),
        // closed by the CMMS; then a clean excursion while flagged
        // chattering, still active when the flag clears.
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let alarms = AlarmConfig {
            chatter_count: 3,
            chatter_window: Duration::from_secs(60),
            chatter_quiet: Duration::from_secs(5),
        };
        let mut engine = Engine::new(std::slice::from_ref(&r), &devices(), &alarms).unwrap();
        let id = engine.tag_id("pump1.temp").unwrap();
        let mut rig = Rig::new();
        let mut changes = Vec::new();
        let feed = |engine: &mut Engine, rig: &mut Rig, v: Option<f64>, secs: f64| {
            let at = t(secs);
            let events = match v {
                Some(v) => engine.observe(id, Some(&Value::Float(v)), &GOOD, at),
                None => engine.tick(at),
            };
            events
                .iter()
                .flat_map(|e| rig.event(e, &r))
                .collect::<Vec<_>>()
        };
        for i in 0..8 {
            let s = f64::from(i) * 0.5;
            let v = if i % 2 == 0 { 81.0 } else { 79.0 };
            changes.extend(feed(&mut engine, &mut rig, Some(v), s));
        }
        assert!(engine.alarm("pump1_hot").unwrap().is_chattering());
        let first = raised(&changes[..1]).clone();
        rig.status(&first.id, &update(WoStatus::Closed), 4.0)
            .unwrap();
        // Hovering again from 10 s: chattering at once (its activations
        // at 2 and 3 s are still in the 60 s window), so nothing raised.
        for i in 0..6 {
            let s = 10.0 + f64::from(i) * 0.5;
            let v = if i % 2 == 0 { 81.0 } else { 79.0 };
            assert!(feed(&mut engine, &mut rig, Some(v), s).is_empty(), "{s}");
        }
        assert!(engine.alarm("pump1_hot").unwrap().is_chattering());
        // The excursion at 15 s, 3 s after the last activation: 95 degC
        // for 8 s. Held; released 5 s of quiet later, still active.
        for i in 0..=8 {
            let s = 15.0 + f64::from(i);
            let ch = feed(&mut engine, &mut rig, Some(95.0), s);
            if s == 20.0 {
                let wo = raised(&ch);
                assert_eq!(wo.trigger.since(), t(15.0));
                assert_eq!(wo.key, format!("plant-a/gw1/pump1_hot/P-101/2-{}", wo.id));
            } else {
                assert!(ch.is_empty(), "one work order per fault ({s})");
            }
        }
        assert!(feed(&mut engine, &mut rig, Some(20.0), 23.5).is_empty());
        assert_eq!(rig.book.open().count(), 1);
    }

    #[test]
    fn a_book_lost_with_its_store_never_reuses_a_key() {
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let mut before = Rig::new();
        let old = raised(&before.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();
        // A fresh book (the store was lost): the counter starts again, in
        // the same millisecond even; the key does not repeat.
        let mut after = Rig::new();
        after.random = 0x0bad_cafe;
        let new = raised(&after.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();
        assert!(old.key.contains("/1-") && new.key.contains("/1-"));
        assert_ne!(new.key, old.key);
        // The key is the work order's for good: an update keeps it.
        let update = after.event(&activation("pump1_hot", 50.0, 83.0, 80.0), &r);
        assert!(
            update
                .iter()
                .filter_map(WoChange::work_order)
                .all(|w| w.key == new.key),
            "{update:?}"
        );
    }

    #[test]
    fn closing_frees_the_slot_and_the_next_activation_raises_key_n_plus_1() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let first = raised(&rig.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();
        let ch = rig.status(
            &first.id,
            &StatusUpdate {
                cmms_ref: Some("CMMS-1".into()),
                ..update(WoStatus::Closed)
            },
            100.0,
        );
        assert!(matches!(ch.as_deref(), Ok([WoChange::Cleared(w)]) if w.id == first.id));
        assert_eq!(rig.book.open().count(), 0);
        let second = raised(&rig.event(&activation("pump1_hot", 200.0, 82.0, 80.0), &r)).clone();
        assert_ne!(second.id, first.id);
        assert_eq!(
            second.key,
            format!("plant-a/gw1/pump1_hot/P-101/2-{}", second.id)
        );
        assert_eq!(second.occurrences, 1);
        // The closed one is still known (idempotent late statuses).
        assert_eq!(
            rig.book.get(&first.id).map(|w| w.status),
            Some(WoStatus::Closed)
        );
    }

    #[test]
    fn shelved_chattering_and_disabled_activations_do_not_raise() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        // Shelved or chattering: the alarm says no work order.
        let mut shelved = activation("pump1_hot", 0.0, 81.0, 80.0);
        shelved.to = AlarmState::Shelved {
            until: t(600.0),
            active: true,
        };
        shelved.raise_work_order = false;
        assert!(rig.event(&shelved, &r).is_empty());
        let mut chattering = activation("pump1_hot", 1.0, 81.0, 80.0);
        chattering.raise_work_order = false;
        chattering.chattering = true;
        assert!(rig.event(&chattering, &r).is_empty());
        // A template switched off.
        let mut off = rule("pump1_hot", "pump1.temp", 80.0);
        off.workorder.enabled = false;
        assert!(
            rig.event(&activation("pump1_hot", 2.0, 81.0, 80.0), &off)
                .is_empty()
        );
        // Events that are not activations.
        let mut ack = activation("pump1_hot", 3.0, 81.0, 80.0);
        ack.activation = false;
        ack.cause = Cause::Ack;
        assert!(rig.event(&ack, &r).is_empty());
        assert_eq!(rig.book.all().count(), 0);

        // While one is open, a chattering activation updates it, but the
        // end of a shelf (the same occurrence re-announced) does not.
        let wo = raised(&rig.event(&activation("pump1_hot", 10.0, 81.0, 80.0), &r)).clone();
        let mut chattering = activation("pump1_hot", 11.0, 83.0, 80.0);
        chattering.raise_work_order = false;
        chattering.chattering = true;
        let ch = rig.event(&chattering, &r);
        assert!(matches!(&ch[..], [WoChange::Updated(w)] if w.occurrences == 2));
        let mut unshelved = activation("pump1_hot", 12.0, 83.0, 80.0);
        unshelved.cause = Cause::Unshelve;
        assert!(rig.event(&unshelved, &r).is_empty());
        let kept = rig.book.get(&wo.id).unwrap();
        assert_eq!(kept.occurrences, 2);
        assert_eq!(
            kept.last,
            Last {
                value: Some(Value::Float(83.0)),
                at: t(11.0)
            }
        );
    }

    #[test]
    fn cmms_status_flow_accepted_in_progress_closed() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        let wo = raised(&rig.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r)).clone();

        let accepted = StatusUpdate {
            cmms_ref: Some("CMMS-123".into()),
            by: Some("planner".into()),
            ..update(WoStatus::Accepted)
        };
        let ch = rig.status(&wo.id, &accepted, 10.0).unwrap();
        let WoChange::Updated(w) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(w.status, WoStatus::Accepted);
        assert_eq!(w.cmms_ref.as_deref(), Some("CMMS-123"));
        assert_eq!(w.updated_at, t(10.0));
        // The same message again (redelivery) changes nothing.
        let again = rig.status(&wo.id, &accepted, 11.0);
        assert_eq!(again, Ok(vec![]));

        // in_progress, without a ref (the first is kept).
        let in_progress = StatusUpdate {
            note: Some("on site".into()),
            ..update(WoStatus::InProgress)
        };
        let ch = rig.status(&wo.id, &in_progress, 20.0).unwrap();
        let WoChange::Updated(w) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(w.status, WoStatus::InProgress);
        assert_eq!(w.cmms_ref.as_deref(), Some("CMMS-123"));

        // Still open: an activation updates it.
        let ch = rig.event(&activation("pump1_hot", 25.0, 84.0, 80.0), &r);
        assert!(
            matches!(&ch[..], [WoChange::Updated(w)] if w.status == WoStatus::InProgress && w.occurrences == 2)
        );

        let closed = StatusUpdate {
            cmms_ref: Some("4711".into()),
            ..update(WoStatus::Closed)
        };
        let ch = rig.status(&wo.id, &closed, 30.0).unwrap();
        let WoChange::Cleared(w) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(w.id, wo.id);
        assert_eq!(w.status, WoStatus::Closed);
        assert_eq!(w.cmms_ref.as_deref(), Some("4711"));
        let history: Vec<_> = w.history.iter().map(|h| (h.status, h.at)).collect();
        assert_eq!(
            history,
            [
                (WoStatus::Accepted, t(10.0)),
                (WoStatus::InProgress, t(20.0)),
                (WoStatus::Closed, t(30.0))
            ]
        );
        assert_eq!(w.history[1].note.as_deref(), Some("on site"));
        // A closed work order ignores further statuses.
        assert_eq!(
            rig.status(&wo.id, &update(WoStatus::Closed), 40.0),
            Ok(vec![])
        );
        assert_eq!(
            rig.status(&wo.id, &update(WoStatus::Accepted), 41.0),
            Ok(vec![])
        );
        assert_eq!(rig.book.get(&wo.id).map(|w| w.history.len()), Some(3));
    }

    #[test]
    fn a_status_for_an_unknown_work_order_is_an_error_and_changes_nothing() {
        let mut rig = Rig::new();
        let r = rule("pump1_hot", "pump1.temp", 80.0);
        raised(&rig.event(&activation("pump1_hot", 0.0, 81.0, 80.0), &r));
        let before = rig.book.clone();
        assert_eq!(
            rig.status("01ARZ3NDEKTSV4RRFFQ69G5FAV", &update(WoStatus::Closed), 1.0),
            Err(WoError::UnknownId("01ARZ3NDEKTSV4RRFFQ69G5FAV".into()))
        );
        assert_eq!(rig.book, before);
    }

    #[test]
    fn ids_are_unique_even_when_the_random_part_repeats() {
        let mut book = WorkOrderBook::new(&config());
        let devices = devices();
        let gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        let mut ids = Vec::new();
        for i in 0..5 {
            let name = format!("r{i}");
            let r = rule(&name, "pump1.temp", 80.0);
            let ch =
                book.on_alarm_event(&activation(&name, 0.0, 81.0, 80.0), &r, &ctx, Vec::new(), 7);
            ids.push(raised(&ch).id.clone());
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 5, "{ids:?}");
    }

    #[test]
    fn the_book_round_trips_through_json_mid_flow() {
        // One script, split anywhere: saving and restoring in between gives
        // the same changes as running straight through.
        #[derive(Clone)]
        enum In {
            Act(usize, f64, f64),
            Status(usize, StatusUpdate, f64),
        }
        let rules: Vec<Rule> = (0..4)
            .map(|i| rule(&format!("r{i}"), "pump1.temp", 80.0))
            .collect();
        let mut script = vec![In::Act(0, 0.0, 81.0), In::Act(0, 1.0, 82.5)];
        for i in 1..4 {
            script.push(In::Act(i, 2.0 + i as f64, 0.1 + 0.2));
        }
        script.extend([
            In::Status(
                0,
                StatusUpdate {
                    cmms_ref: Some("C-1".into()),
                    ..update(WoStatus::Accepted)
                },
                10.0,
            ),
            In::Act(3, 11.0, 1e-7),
            In::Status(0, update(WoStatus::Closed), 12.0),
            In::Act(0, 13.0, 99.0),
            In::Act(1, 14.0, 98.0),
            In::Status(
                2,
                StatusUpdate {
                    by: Some("Ann".into()),
                    ..update(WoStatus::InProgress)
                },
                15.0,
            ),
        ]);
        let run = |rig: &mut Rig, ids: &mut Vec<String>, input: &In| -> Vec<WoChange> {
            match input {
                In::Act(i, s, v) => {
                    let r = &rules[*i];
                    let ch = rig.event(&activation(&r.name, *s, *v, 80.0), r);
                    for c in &ch {
                        if let WoChange::Raised(w) = c {
                            ids.push(w.id.clone());
                        }
                    }
                    ch
                }
                In::Status(k, status, s) => {
                    let id = ids[*k].clone();
                    rig.status(&id, status, *s).unwrap()
                }
            }
        };
        let mut straight = Rig::new();
        straight.book.set_config(&WorkOrderConfig {
            flood_limit: 3,
            flood_window: Duration::from_secs(60),
        });
        let mut ids = Vec::new();
        let reference: Vec<_> = script
            .iter()
            .map(|i| run(&mut straight, &mut ids, i))
            .collect();
        assert!(
            reference
                .iter()
                .flatten()
                .any(|c| matches!(c, WoChange::FloodRaised(_)))
        );
        for split in 0..=script.len() {
            let mut first = Rig::new();
            first.book.set_config(&WorkOrderConfig {
                flood_limit: 3,
                flood_window: Duration::from_secs(60),
            });
            let mut ids = Vec::new();
            for i in &script[..split] {
                run(&mut first, &mut ids, i);
            }
            let json = serde_json::to_string(&first.book).unwrap();
            let book: WorkOrderBook = serde_json::from_str(&json).unwrap();
            assert_eq!(book, first.book, "split {split}");
            let mut second = Rig {
                book,
                random: first.random,
                ..Rig::new()
            };
            for (k, i) in script.iter().enumerate().skip(split) {
                assert_eq!(
                    run(&mut second, &mut ids, i),
                    reference[k],
                    "split {split}, step {k}"
                );
            }
        }
    }

    #[test]
    fn a_meter_raises_one_preventive_work_order_and_its_closing_arms_the_next_threshold() {
        let meter = Meter {
            name: "pump1_hours".into(),
            tag: "pump1.running".into(),
            kind: MeterKind::Runtime {
                every: Duration::from_secs(500 * 3600),
            },
            priority: Priority::Medium,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate {
                enabled: true,
                procedure: Some("SOP-500H".into()),
                ..WorkOrderTemplate::default()
            },
        };
        let mut state = MeterState::new(&meter);
        let mut rig = Rig::new();
        let mut preventive = Vec::new();
        // 600 h of one-minute polls: running 50 min of every hour, one
        // bad poll an hour.
        for minute in 0..600 * 60u32 {
            let at = t(f64::from(minute) * 60.0);
            let changes = if minute % 60 == 59 {
                state.observe(None, &Quality::Bad(crate::reading::BadReason::Timeout), at)
            } else {
                state.observe(Some(&Value::Bool(minute % 60 < 50)), &GOOD, at)
            };
            for c in changes {
                if let MeterChange::Due(due) = c {
                    let ctx = WoContext::new(&rig.gateway, &rig.devices);
                    preventive.extend(rig.book.on_meter_due(&due, &meter, &ctx, Vec::new(), 9));
                }
            }
        }
        assert_eq!(preventive.len(), 1, "{preventive:#?}");
        let wo = raised(&preventive).clone();
        assert_eq!(wo.kind, WoType::Preventive);
        assert_eq!(
            wo.key,
            format!("plant-a/gw1/meter:pump1_hours/P-101/1-{}", wo.id)
        );
        assert_eq!(
            wo.title,
            "P-101: preventive maintenance at 500 h (pump1_hours)"
        );
        assert_eq!(wo.meter(), Some("pump1_hours"));
        let WoTrigger::Meter {
            value, threshold, ..
        } = wo.trigger
        else {
            panic!("{:?}", wo.trigger)
        };
        assert_eq!(threshold, 500.0);
        assert!((500.0..500.1).contains(&value), "{value}");
        assert!(state.is_due());
        // 600 h at 50/60 running, less nothing for the bad minute (its
        // neighbours are off anyway): exactly 500 h.
        assert_eq!(state.value(), 500.0);

        let ch = rig.status(&wo.id, &update(WoStatus::Closed), 1e9).unwrap();
        let WoChange::Cleared(closed) = &ch[0] else {
            panic!("{ch:#?}")
        };
        assert_eq!(closed.meter(), Some(state.name()));
        let changes = state.on_work_order_closed(t(1e9));
        assert!(
            matches!(&changes[..], [MeterChange::Publish(r)] if r.next_due == 1000.0 && !r.due)
        );
        assert!(!state.is_due());
        assert_eq!(state.next_due(), 1000.0);
    }

    #[test]
    fn closed_work_orders_are_bounded() {
        let mut rig = Rig::new();
        rig.book.set_config(&WorkOrderConfig {
            flood_limit: 0,
            flood_window: Duration::from_secs(1),
        });
        let r = rule("r", "pump1.temp", 80.0);
        let mut first = None;
        for i in 0..MAX_CLOSED + 10 {
            let wo = raised(&rig.event(&activation("r", i as f64, 81.0, 80.0), &r)).clone();
            first.get_or_insert(wo.id.clone());
            rig.status(&wo.id, &update(WoStatus::Closed), i as f64 + 0.5)
                .unwrap();
        }
        assert_eq!(rig.book.all().count(), MAX_CLOSED);
        let first = first.unwrap();
        assert_eq!(
            rig.status(&first, &update(WoStatus::Closed), 1e6),
            Err(WoError::UnknownId(first.clone()))
        );
        let wo = raised(&rig.event(&activation("r", 1e5, 81.0, 80.0), &r)).clone();
        assert_eq!(
            wo.key,
            format!("plant-a/gw1/r/P-101/{}-{}", MAX_CLOSED + 11, wo.id)
        );
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Op {
            Act { rule: usize, dt: u64, raise: bool },
            Status { pick: usize, status: u8 },
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0..6usize, 0..120_000u64, any::<bool>())
                    .prop_map(|(rule, dt, raise)| Op::Act { rule, dt, raise }),
                1 => (0..64usize, 0..4u8).prop_map(|(pick, status)| Op::Status { pick, status }),
            ]
        }

        proptest! {
            #[test]
            fn one_open_work_order_per_slot_and_unique_keys(ops in prop::collection::vec(op(), 1..150)) {
                let mut rig = Rig::new();
                rig.book.set_config(&WorkOrderConfig {
                    flood_limit: 4,
                    flood_window: Duration::from_secs(120),
                });
                let rules: Vec<Rule> = (0..6)
                    .map(|i| rule(&format!("r{i}"), "pump1.temp", 80.0))
                    .collect();
                let mut now = 0.0;
                let mut ids: Vec<String> = Vec::new();
                for op in ops {
                    match op {
                        Op::Act { rule, dt, raise } => {
                            now += dt as f64 / 1000.0;
                            let mut ev = activation(&rules[rule].name, now, 81.0, 80.0);
                            ev.raise_work_order = raise;
                            for c in rig.event(&ev, &rules[rule]) {
                                prop_assert!(raise || matches!(c, WoChange::Updated(_)));
                                if let WoChange::Raised(w) | WoChange::FloodRaised(w) = &c {
                                    ids.push(w.id.clone());
                                }
                            }
                        }
                        Op::Status { pick, status } => {
                            if let Some(id) = ids.get(pick % ids.len().max(1)) {
                                let s = ["accepted", "in_progress", "closed", "bogus"][status as usize];
                                // "bogus" is refused as it is read; every
                                // status the CMMS may send applies.
                                match WoStatus::parse_cmms(s) {
                                    Some(status) => {
                                        let res = rig.status(id, &update(status), now);
                                        prop_assert!(res.is_ok());
                                    }
                                    None => prop_assert_eq!(s, "bogus"),
                                }
                            }
                        }
                    }
                }
                let mut slots = std::collections::HashSet::new();
                for w in rig.book.open() {
                    prop_assert!(slots.insert(w.source.slot(&w.asset)), "two open for one slot");
                    prop_assert_eq!(rig.book.open_for(&w.source, &w.asset), Some(w));
                }
                let mut keys = std::collections::HashSet::new();
                for w in rig.book.all() {
                    prop_assert!(keys.insert(w.key.clone()), "duplicate key {}", w.key);
                    prop_assert!(w.occurrences >= 1);
                }
            }
        }
    }
}
