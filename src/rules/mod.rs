//! Rules and alarms: the pure core that turns readings into alarm events.
//!
//! Nothing here does I/O, spawns a task or reads a clock: every entry
//! point takes the time as an argument, so every timer is tested without
//! waiting and a restored state means the same thing after a restart. The rules
//! task around it feeds readings, ticks, acks and shelve requests in, and
//! commits the [`AlarmEvent`]s that come out to the outbox.
//!
//! # Layout
//!
//! * `mod.rs`: the [`Engine`], which holds every rule, routes each reading
//!   to the rules that watch its tag, keeps the last reading of every tag
//!   (for `expr` rules and work-order snapshots), and saves and restores
//!   the whole state.
//! * [`condition`]: is a rule's condition met right now? Limits with
//!   deadband hysteresis, rate over a window, stale, equals, and the latch
//!   of `expr`.
//! * `expr` conditions are compiled and run by [`crate::expr`], the same
//!   compiler `fieldgate check` uses.
//! * [`alarm`]: the ISA-18.2 state machine of one rule: on- and
//!   off-delays, acknowledgement, shelving, chattering.
//! * [`workorder`]: the [`WorkOrderBook`]: one
//!   open work order per rule and asset, updates, the CMMS's status
//!   reports, the flood guard, idempotency keys.
//! * [`meter`]: runtime and count meters and their preventive thresholds.
//! * [`payload`]: the JSON of work orders (`fieldgate.workorder/1`), alarm
//!   states (`fieldgate.alarm/1`) and meters (`fieldgate.meter/1`).
//! * `saved`: the persisted form ([`SavedEngine`]).
//! * `time`: [`Timestamp`], milliseconds since the Unix epoch.
//! * `tests.rs`: engine tests on a fake clock (each module has its own).
//!
//! # Routing
//!
//! Tags are numbered once, device by device in config order ([`TagId`]);
//! each tag keeps the list of rules that watch it. A reading costs
//! O(rules watching its tag), never O(all rules). [`Engine::observe_batch`]
//! first records every reading of a poll, then evaluates each affected rule
//! once, so an `expr` over two tags of one device never sees one tag new
//! and the other from the previous poll.
//!
//! # Persistence
//!
//! [`Engine::save`] returns everything that decides future events: each
//! alarm's state, running delays, chattering history (with an activation
//! it held back) and shelf; each condition's memory (hysteresis latch,
//! rate samples, staleness clock); and the last reading of every tag.
//! [`Engine::restore`] puts it back, so a restarted gateway continues
//! exactly where it stopped, given the same inputs. The caller saves
//! after every batch that produced events and periodically otherwise
//! (delays and rate windows move without events);
//! what it loses is what happened since its last save. On a reload, build
//! the new engine from the new config and restore the old engine's save:
//! rules are matched by name, a rule whose condition changed kind starts
//! its condition afresh (keeping its alarm), and rules that are gone are
//! reported.
//!
//! One consequence of exactness: a `stale` rule's clock kept running while
//! the gateway was down, so a tick before the first poll after a long
//! outage finds its tags stale. An on-delay longer than one poll interval
//! absorbs that.

pub(crate) mod alarm;
pub(crate) mod condition;
pub(crate) mod meter;
mod saved;
mod state_keys;
mod time;
pub(crate) mod workorder;
pub use state_keys::*;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub use alarm::{Alarm, AlarmEvent, AlarmState, AlarmTiming, Cause, SavedAlarm};
pub use condition::{ConditionState, SavedCondition, SavedSample, Trigger};
pub use meter::{Measure, MeterChange, MeterDue, MeterReport, MeterState};
pub use saved::{SAVED_VERSION, SavedEngine, SavedRule, SavedTag, SavedValue};
pub use time::Timestamp;
pub use workorder::{
    BOOK_VERSION, FLOOD_RULE, Last, MAX_CLOSED, MAX_HISTORY, SnapshotEntry, StatusReport,
    StatusUpdate, WoChange, WoContext, WoError, WoSource, WoStatus, WoTrigger, WoType, WorkOrder,
    WorkOrderBook, format_number, format_time, format_value, value_precision,
};

use crate::config::{AlarmConfig, Condition, Device, Rule};
use crate::expr::{CompiledExpr, ExprEngine, ExprError};
use crate::reading::{Batch, Quality};
use crate::tag::Value;

/// Why an [`Engine`] cannot be built, or a request names no rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A rule watches a tag no device has (the config check reports this
    /// first; the engine refuses it too rather than watch nothing).
    #[error("rule \"{rule}\": unknown tag \"{tag}\"")]
    UnknownTag {
        /// The rule.
        rule: String,
        /// The full tag name.
        tag: String,
    },
    /// An `expr` rule's expression does not compile or check.
    #[error("rule \"{rule}\": {source}")]
    Expr {
        /// The rule.
        rule: String,
        /// What is wrong with it.
        #[source]
        source: ExprError,
    },
    /// Two rules share a name (acks and topics could not tell them apart).
    #[error("two rules are named \"{0}\"")]
    DuplicateRule(String),
    /// An ack or shelve request names no rule.
    #[error("there is no rule named \"{0}\"")]
    UnknownRule(String),
}

/// A tag's number in an [`Engine`]: its position among all devices' tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagId(u32);

impl TagId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// The last reading of a tag, for work-order snapshots.
#[derive(Debug, Clone, PartialEq)]
pub struct TagReading {
    /// Full tag name (`device.tag`).
    pub name: String,
    /// The last good value (kept while readings are bad).
    pub value: Option<Value>,
    /// Quality of the last reading; `None` before the first.
    pub quality: Option<Quality>,
    /// Engineering unit.
    pub unit: Option<String>,
    /// When the last reading was taken.
    pub at: Option<Timestamp>,
    /// When the last good value was read.
    pub good_at: Option<Timestamp>,
}

/// What [`Engine::restore`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Rules whose state was restored.
    pub restored: usize,
    /// Rules restored whose condition changed kind: their condition starts
    /// afresh, their alarm state is kept.
    pub conditions_reset: Vec<String>,
    /// Saved rules no longer configured: their state is dropped.
    pub unknown_rules: Vec<String>,
    /// The save has another layout version and was not used.
    pub version_mismatch: bool,
}

/// One tag's memory.
#[derive(Debug, Clone)]
struct TagSlot {
    name: String,
    unit: Option<String>,
    quality: Option<Quality>,
    at: Option<Timestamp>,
    good: Option<Value>,
    good_at: Option<Timestamp>,
    /// Indexes of the rules that watch this tag.
    watchers: Vec<u32>,
}

impl TagSlot {
    fn record(&mut self, value: Option<&Value>, quality: &Quality, at: Timestamp) {
        if let (Some(v), true) = (value, quality.is_good()) {
            self.good = Some(v.clone());
            self.good_at = Some(at);
        }
        self.quality = Some(quality.clone());
        self.at = Some(at);
    }

    /// The current reading's value, if it is good.
    fn current(&self) -> Option<&Value> {
        match &self.quality {
            Some(q) if q.is_good() && self.at == self.good_at => self.good.as_ref(),
            _ => None,
        }
    }

    fn reading(&self) -> TagReading {
        TagReading {
            name: self.name.clone(),
            value: self.good.clone(),
            quality: self.quality.clone(),
            unit: self.unit.clone(),
            at: self.at,
            good_at: self.good_at,
        }
    }
}

/// What a rule reads.
#[derive(Debug, Clone)]
enum Inputs {
    One(TagId),
    Expr {
        compiled: Box<CompiledExpr>,
        tags: Vec<TagId>,
    },
}

/// One rule at run time.
#[derive(Debug, Clone)]
struct RuleSlot {
    condition: ConditionState,
    alarm: Alarm,
    inputs: Inputs,
    work_orders: bool,
    /// Batch stamp: evaluated once per batch.
    stamp: u64,
}

/// Every rule and alarm of a configuration.
#[derive(Debug)]
pub struct Engine {
    rules: Vec<RuleSlot>,
    by_name: HashMap<Arc<str>, usize>,
    tags: Vec<TagSlot>,
    by_tag: HashMap<String, TagId>,
    /// Device name → (first tag id, number of tags).
    devices: HashMap<String, (u32, u32)>,
    exprs: ExprEngine,
    expr_failures: u64,
    stamp: u64,
    /// Rules to evaluate for the current batch (kept to reuse its memory).
    affected: Vec<u32>,
}

impl Engine {
    /// Builds the rules of a configuration: every rule `Normal`, every
    /// condition fresh. Compiles `expr` rules.
    pub fn new<D: std::borrow::Borrow<Device>>(
        rules: &[Rule],
        devices: &[D],
        alarms: &AlarmConfig,
    ) -> Result<Engine, RulesError> {
        let mut tags = Vec::new();
        let mut by_tag = HashMap::new();
        let mut device_ranges = HashMap::new();
        for device in devices.iter().map(std::borrow::Borrow::borrow) {
            let base = tags.len() as u32;
            for tag in &device.tags {
                let name = format!("{}.{}", device.name, tag.name);
                by_tag.insert(name.clone(), TagId(tags.len() as u32));
                tags.push(TagSlot {
                    name,
                    unit: tag.unit.clone(),
                    quality: None,
                    at: None,
                    good: None,
                    good_at: None,
                    watchers: Vec::new(),
                });
            }
            device_ranges.insert(device.name.clone(), (base, device.tags.len() as u32));
        }
        let exprs = ExprEngine::new();
        let mut slots = Vec::with_capacity(rules.len());
        let mut by_name = HashMap::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let name: Arc<str> = Arc::from(rule.name.as_str());
            if by_name.insert(name.clone(), i).is_some() {
                return Err(RulesError::DuplicateRule(rule.name.clone()));
            }
            let lookup = |tag: &str| {
                by_tag
                    .get(tag)
                    .copied()
                    .ok_or_else(|| RulesError::UnknownTag {
                        rule: rule.name.clone(),
                        tag: tag.to_owned(),
                    })
            };
            let inputs = match &rule.condition {
                Condition::Above { tag, .. }
                | Condition::Below { tag, .. }
                | Condition::Outside { tag, .. }
                | Condition::Rate { tag, .. }
                | Condition::Stale { tag, .. }
                | Condition::Equals { tag, .. } => Inputs::One(lookup(tag)?),
                Condition::Expr { expr, .. } => {
                    let compiled = exprs
                        .compile(expr, |full| crate::config::expr_type(devices, full))
                        .map_err(|source| RulesError::Expr {
                            rule: rule.name.clone(),
                            source,
                        })?;
                    let ids = compiled
                        .tags()
                        .iter()
                        .map(|t| lookup(t))
                        .collect::<Result<Vec<_>, _>>()?;
                    Inputs::Expr {
                        compiled: Box::new(compiled),
                        tags: ids,
                    }
                }
            };
            match &inputs {
                Inputs::One(id) => tags[id.index()].watchers.push(i as u32),
                Inputs::Expr { tags: ids, .. } => {
                    for id in ids {
                        tags[id.index()].watchers.push(i as u32);
                    }
                }
            }
            slots.push(RuleSlot {
                condition: ConditionState::new(&rule.condition, rule.deadband),
                alarm: Alarm::new(name, AlarmTiming::of(rule, alarms)),
                inputs,
                work_orders: rule.workorder.enabled,
                stamp: 0,
            });
        }
        Ok(Engine {
            rules: slots,
            by_name,
            tags,
            by_tag,
            devices: device_ranges,
            exprs,
            expr_failures: 0,
            stamp: 0,
            affected: Vec::new(),
        })
    }

    /// The id of a tag by full name (`device.tag`).
    pub fn tag_id(&self, full_name: &str) -> Option<TagId> {
        self.by_tag.get(full_name).copied()
    }

    /// The id of a device's tag by its index in the device's `tags` (as in
    /// [`Reading::tag`](crate::reading::Reading)).
    pub fn device_tag(&self, device: &str, index: usize) -> Option<TagId> {
        let &(base, count) = self.devices.get(device)?;
        let index = u32::try_from(index).ok().filter(|&i| i < count)?;
        Some(TagId(base + index))
    }

    /// One reading of one tag, taken at `at`: records it and evaluates the
    /// rules that watch the tag. Returns the alarm events, in order.
    pub fn observe(
        &mut self,
        tag: TagId,
        value: Option<&Value>,
        quality: &Quality,
        at: impl Into<Timestamp>,
    ) -> Vec<AlarmEvent> {
        let at = at.into();
        let mut out = Vec::new();
        let Some(slot) = self.tags.get_mut(tag.index()) else {
            return out;
        };
        slot.record(value, quality, at);
        for k in 0..slot.watchers.len() {
            let rule = self.tags[tag.index()].watchers[k];
            self.evaluate(rule as usize, at, &mut out);
        }
        out
    }

    /// [`observe`](Self::observe) by full tag name; a tag the engine does
    /// not know yields nothing.
    pub fn observe_named(
        &mut self,
        full_name: &str,
        value: Option<&Value>,
        quality: &Quality,
        at: impl Into<Timestamp>,
    ) -> Vec<AlarmEvent> {
        match self.tag_id(full_name) {
            Some(id) => self.observe(id, value, quality, at),
            None => Vec::new(),
        }
    }

    /// Every reading of one poll, taken at `at` (the poll's start on the
    /// timeline): records them all, then evaluates each affected rule
    /// once. Readings of unknown devices or tags are ignored.
    pub fn observe_batch(&mut self, batch: &Batch, at: Timestamp) -> Vec<AlarmEvent> {
        let mut out = Vec::new();
        let Some(&(base, count)) = self.devices.get(&batch.device.name) else {
            return out;
        };
        self.stamp += 1;
        let stamp = self.stamp;
        let mut affected = std::mem::take(&mut self.affected);
        affected.clear();
        for reading in &batch.readings {
            let Some(index) = u32::try_from(reading.tag).ok().filter(|&i| i < count) else {
                continue;
            };
            let slot = &mut self.tags[(base + index) as usize];
            slot.record(reading.value.as_ref(), &reading.quality, at);
            for &rule in &slot.watchers {
                let r = &mut self.rules[rule as usize];
                if r.stamp != stamp {
                    r.stamp = stamp;
                    affected.push(rule);
                }
            }
        }
        for &rule in &affected {
            self.evaluate(rule as usize, at, &mut out);
        }
        self.affected = affected;
        out
    }

    /// Time passes: staleness, delays, shelves and chattering that are due.
    /// Call it every second or so; it costs O(all rules).
    pub fn tick(&mut self, at: Timestamp) -> Vec<AlarmEvent> {
        let mut out = Vec::new();
        for rule in &mut self.rules {
            let start = out.len();
            let met = rule.condition.tick(at);
            rule.alarm
                .update(met, at, rule.condition.trigger(), &mut out);
            finish(rule.work_orders, &mut out[start..]);
        }
        out
    }

    /// An operator acknowledges `rule`'s alarm. No events when there is
    /// nothing to acknowledge.
    pub fn ack(
        &mut self,
        rule: &str,
        at: impl Into<Timestamp>,
    ) -> Result<Vec<AlarmEvent>, RulesError> {
        let at = at.into();
        let r = self.rule_mut(rule)?;
        let mut out = Vec::new();
        r.alarm.ack(at, r.condition.trigger(), &mut out);
        finish(r.work_orders, &mut out);
        Ok(out)
    }

    /// An operator shelves `rule`'s alarm for `duration`.
    pub fn shelve(
        &mut self,
        rule: &str,
        duration: Duration,
        at: impl Into<Timestamp>,
    ) -> Result<Vec<AlarmEvent>, RulesError> {
        let at = at.into();
        let r = self.rule_mut(rule)?;
        let mut out = Vec::new();
        r.alarm
            .shelve(duration, at, r.condition.trigger(), &mut out);
        finish(r.work_orders, &mut out);
        Ok(out)
    }

    /// An operator ends `rule`'s shelf early.
    pub fn unshelve(
        &mut self,
        rule: &str,
        at: impl Into<Timestamp>,
    ) -> Result<Vec<AlarmEvent>, RulesError> {
        let at = at.into();
        let r = self.rule_mut(rule)?;
        let mut out = Vec::new();
        r.alarm.unshelve(at, r.condition.trigger(), &mut out);
        finish(r.work_orders, &mut out);
        Ok(out)
    }

    /// A rule's alarm.
    pub fn alarm(&self, rule: &str) -> Option<&Alarm> {
        self.by_name.get(rule).map(|&i| &self.rules[i].alarm)
    }

    /// Every alarm, in config order.
    pub fn alarms(&self) -> impl Iterator<Item = &Alarm> {
        self.rules.iter().map(|r| &r.alarm)
    }

    /// A rule's condition.
    pub fn condition(&self, rule: &str) -> Option<&ConditionState> {
        self.by_name.get(rule).map(|&i| &self.rules[i].condition)
    }

    /// The last reading of a tag.
    pub fn reading(&self, full_name: &str) -> Option<TagReading> {
        self.tag_id(full_name)
            .map(|id| self.tags[id.index()].reading())
    }

    /// The last readings of `names` (a work order's `snapshot`), skipping
    /// unknown names.
    pub fn snapshot<S: AsRef<str>>(&self, names: &[S]) -> Vec<TagReading> {
        names
            .iter()
            .filter_map(|n| self.reading(n.as_ref()))
            .collect()
    }

    /// `expr` evaluations that failed (operation limit, arithmetic error)
    /// and so kept the rule's last verdict.
    pub fn expr_failures(&self) -> u64 {
        self.expr_failures
    }

    /// Everything needed to continue exactly (see the module docs).
    pub fn save(&self) -> SavedEngine {
        SavedEngine {
            version: SAVED_VERSION,
            rules: self
                .rules
                .iter()
                .map(|r| SavedRule {
                    name: r.alarm.name().to_string(),
                    alarm: r.alarm.save(),
                    condition: r.condition.save(),
                })
                .collect(),
            tags: self
                .tags
                .iter()
                .filter_map(|t| {
                    Some(SavedTag {
                        name: t.name.clone(),
                        quality: t.quality.as_ref()?.to_string(),
                        at: t.at?,
                        good: t.good.as_ref().map(SavedValue::from),
                        good_at: t.good_at,
                    })
                })
                .collect(),
        }
    }

    /// Puts back a [`save`](Self::save), matching rules and tags by name.
    pub fn restore(&mut self, saved: &SavedEngine) -> RestoreReport {
        let mut report = RestoreReport::default();
        if saved.version != SAVED_VERSION {
            report.version_mismatch = true;
            return report;
        }
        for s in &saved.rules {
            let Some(&i) = self.by_name.get(s.name.as_str()) else {
                report.unknown_rules.push(s.name.clone());
                continue;
            };
            let rule = &mut self.rules[i];
            rule.alarm.restore(&s.alarm);
            if !rule.condition.restore(&s.condition) {
                report.conditions_reset.push(s.name.clone());
            }
            report.restored += 1;
        }
        for s in &saved.tags {
            let Some(id) = self.tag_id(&s.name) else {
                continue;
            };
            let slot = &mut self.tags[id.index()];
            slot.quality = Some(saved::parse_quality(&s.quality));
            slot.at = Some(s.at);
            slot.good = s.good.as_ref().map(Value::from);
            slot.good_at = s.good_at;
        }
        report
    }

    fn rule_mut(&mut self, rule: &str) -> Result<&mut RuleSlot, RulesError> {
        match self.by_name.get(rule) {
            Some(&i) => Ok(&mut self.rules[i]),
            None => Err(RulesError::UnknownRule(rule.to_owned())),
        }
    }

    /// Judges rule `i` on its tags' current readings.
    fn evaluate(&mut self, i: usize, at: Timestamp, out: &mut Vec<AlarmEvent>) {
        let rule = &mut self.rules[i];
        let met = match &mut rule.inputs {
            Inputs::One(id) => {
                let slot = &self.tags[id.index()];
                match &slot.quality {
                    Some(q) => rule.condition.observe(slot.current(), q, at),
                    None => rule.condition.is_met(),
                }
            }
            Inputs::Expr { compiled, tags } => {
                // Every tag's current reading good, or no verdict at all:
                // a bad reading neither trips nor clears an expression
                // (a `stale` rule reports the dead device).
                let values: Option<Vec<&Value>> = tags
                    .iter()
                    .map(|id| self.tags[id.index()].current())
                    .collect();
                match values.map(|v| self.exprs.eval(compiled, &v)) {
                    Some(Ok(result)) => rule.condition.observe_expr(result, at),
                    Some(Err(_)) => {
                        self.expr_failures += 1;
                        rule.condition.is_met()
                    }
                    None => rule.condition.is_met(),
                }
            }
        };
        let start = out.len();
        rule.alarm.update(met, at, rule.condition.trigger(), out);
        finish(rule.work_orders, &mut out[start..]);
    }
}

/// A rule whose work-order template is disabled never raises one.
fn finish(work_orders: bool, events: &mut [AlarmEvent]) {
    if !work_orders {
        for e in events {
            e.raise_work_order = false;
        }
    }
}

#[cfg(test)]
mod tests;
