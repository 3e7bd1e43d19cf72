//! A read-only copy of the rules stage's state, for `/metrics` and
//! `/api/status`.
//!
//! The pipeline task owns the rules engine, the work-order book and the
//! meters; nothing else may touch them. After a step that changed any of
//! them, and at least once a tick, it builds a [`RulesView`] and publishes
//! it through a `watch` channel (`Telemetry::publish_rules`), and the HTTP
//! handlers read the latest one. Only alarms away from normal and open
//! work orders are copied, so a plant with hundreds of quiet rules costs a
//! scan, not hundreds of allocations, per tick.

use std::sync::Arc;

use crate::clock::WallMap;
use crate::config::{Device, Priority, Rule};
use crate::precision::Precision;
use crate::rules::{
    Engine, Measure, MeterState, Timestamp, WoStatus, WoType, WorkOrderBook, value_precision,
};
use crate::tag::Value;

/// Priorities in the order of the `*_by_priority` arrays.
pub const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Medium,
    Priority::High,
    Priority::Critical,
];

/// An alarm that is not normal.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmView {
    /// The rule's name.
    pub rule: String,
    /// `active_unacked`, `active_acked`, `returned_unacked` or `shelved`.
    pub state: &'static str,
    /// The rule's priority.
    pub priority: Priority,
    /// The condition holds (shelved or not).
    pub active: bool,
    /// When the state last changed (wall clock, Unix ms).
    pub since: Option<Timestamp>,
    /// The value the condition last judged.
    pub value: Option<Value>,
    /// The limit it was compared with.
    pub limit: Option<Value>,
    /// How value and limit are shown to people: the tag's precision when
    /// they are in its units, one decimal for stale's seconds, `None` for
    /// a rate or an expr.
    pub precision: Option<Precision>,
    /// Flagged as chattering.
    pub chattering: bool,
    /// When the shelf ends, while shelved (wall clock, Unix ms).
    pub shelved_until: Option<Timestamp>,
}

/// An open work order.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkOrderView {
    /// ULID.
    pub id: String,
    /// Corrective or preventive.
    pub kind: WoType,
    /// Open, accepted or in progress.
    pub status: WoStatus,
    /// Priority.
    pub priority: Priority,
    /// Asset id.
    pub asset: String,
    /// Title.
    pub title: String,
    /// When it was raised (wall clock, Unix ms).
    pub created_at: Timestamp,
    /// Activations it covers.
    pub occurrences: u64,
    /// The CMMS's own reference, once it sent one.
    pub cmms_ref: Option<String>,
}

/// A meter.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterView {
    /// The meter's name.
    pub name: String,
    /// Runtime or count.
    pub measure: Measure,
    /// Hours or count.
    pub value: f64,
    /// `h` or `count`.
    pub unit: &'static str,
    /// The next threshold (the pending one while due).
    pub next_due: f64,
    /// A threshold was reached and its work order is not closed yet.
    pub due: bool,
}

/// The rules stage's state, as the status page and the metrics show it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RulesView {
    /// Rules configured.
    pub rules: usize,
    /// Alarms not in `normal`, in config order.
    pub alarms: Vec<AlarmView>,
    /// Open work orders.
    pub work_orders: Vec<WorkOrderView>,
    /// Every meter, in config order.
    pub meters: Vec<MeterView>,
    /// Active alarms (shelved ones included) per [`PRIORITIES`].
    pub active_by_priority: [u64; 4],
    /// Alarms awaiting acknowledgement per [`PRIORITIES`].
    pub unacked_by_priority: [u64; 4],
    /// Shelved alarms.
    pub shelved: u64,
    /// Alarms flagged chattering.
    pub chattering: u64,
}

impl RulesView {
    /// Copies what the status needs out of the rules stage's parts; `wall`
    /// turns their moments (on the gateway's timeline) into wall-clock
    /// time; `devices` give the alarms' tags' precision.
    pub fn build(
        rules: &[Rule],
        devices: &[Arc<Device>],
        engine: &Engine,
        book: &WorkOrderBook,
        meters: &[MeterState],
        wall: &WallMap,
    ) -> RulesView {
        let mut view = RulesView {
            rules: rules.len(),
            ..RulesView::default()
        };
        for rule in rules {
            let Some(alarm) = engine.alarm(&rule.name) else {
                continue;
            };
            let state = alarm.state();
            let p = priority_index(rule.priority);
            if state.is_active() {
                view.active_by_priority[p] += 1;
            }
            if state.is_unacked() {
                view.unacked_by_priority[p] += 1;
            }
            if state.is_shelved() {
                view.shelved += 1;
            }
            if alarm.is_chattering() {
                view.chattering += 1;
            }
            if state == crate::rules::AlarmState::Normal {
                continue;
            }
            let trigger = engine.condition(&rule.name).and_then(|c| c.trigger());
            view.alarms.push(AlarmView {
                rule: rule.name.clone(),
                state: state.as_str(),
                priority: rule.priority,
                active: state.is_active(),
                since: alarm.changed_at().map(|t| wall.wall(t)),
                value: trigger.map(|t| t.value.clone()),
                limit: trigger.and_then(|t| t.limit.clone()),
                precision: value_precision(&rule.condition, devices),
                chattering: alarm.is_chattering(),
                shelved_until: match state {
                    crate::rules::AlarmState::Shelved { until, .. } => Some(wall.wall(until)),
                    _ => None,
                },
            });
        }
        view.work_orders = book
            .open()
            .map(|wo| WorkOrderView {
                id: wo.id.clone(),
                kind: wo.kind,
                status: wo.status,
                priority: wo.priority,
                asset: wo.asset.clone(),
                title: wo.title.clone(),
                created_at: wall.wall(wo.created_at),
                occurrences: wo.occurrences,
                cmms_ref: wo.cmms_ref.clone(),
            })
            .collect();
        view.meters = meters
            .iter()
            .map(|m| MeterView {
                name: m.name().to_owned(),
                measure: m.measure(),
                value: m.value(),
                unit: m.measure().unit(),
                next_due: m.next_due(),
                due: m.is_due(),
            })
            .collect();
        view
    }

    /// Open work orders per type: (corrective, preventive).
    pub fn work_orders_by_type(&self) -> (u64, u64) {
        let corrective = self
            .work_orders
            .iter()
            .filter(|w| w.kind == WoType::Corrective)
            .count() as u64;
        (corrective, self.work_orders.len() as u64 - corrective)
    }
}

/// The index of `p` in [`PRIORITIES`].
pub fn priority_index(p: Priority) -> usize {
    match p {
        Priority::Low => 0,
        Priority::Medium => 1,
        Priority::High => 2,
        Priority::Critical => 3,
    }
}
