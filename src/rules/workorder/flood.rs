//! The flood guard: when too many corrective work orders are attempted
//! within a window, one "alarm flood" work order stands for them and the
//! rest stay alarms only (the `workorder` module docs, "Flood guard").

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::text::{format_number, format_time};
use crate::config::WorkOrderConfig;
use crate::rules::time::{Timestamp, millis};

/// What the flood guard says about one attempt to raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Fewer than the limit in the window: raise the work order.
    Raise,
    /// This attempt starts a flood: raise (or update) the flood work order
    /// instead.
    Trip,
    /// A flood is on: alarm only.
    Hold,
}

/// The flood guard's memory (the `workorder` module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct FloodGuard {
    /// `flood_limit`; 0 disables the guard.
    limit: u32,
    /// `flood_window` in milliseconds.
    window_ms: u64,
    /// The last `limit` attempts, oldest first.
    recent: VecDeque<Timestamp>,
    /// A flood is on.
    flooding: bool,
    /// Attempts that raised no work order of their own (tripped or held).
    held: u64,
}

impl FloodGuard {
    /// An empty guard for `[workorders]`.
    pub(super) fn new(config: &WorkOrderConfig) -> FloodGuard {
        FloodGuard {
            limit: config.flood_limit,
            window_ms: millis(config.flood_window),
            recent: VecDeque::new(),
            flooding: false,
            held: 0,
        }
    }

    /// Attempts younger than the window at `at`, after forgetting older
    /// ones. Attempts slightly "in the future" (batches of two devices
    /// arrive out of time order) count as young; a clock that went back by
    /// more than the window forgets them all.
    fn prune(&mut self, at: Timestamp) -> usize {
        if self
            .recent
            .back()
            .is_some_and(|&t| t.millis_since(at) > self.window_ms)
        {
            self.recent.clear();
        }
        while self
            .recent
            .front()
            .is_some_and(|&t| at.millis_since(t) >= self.window_ms)
        {
            self.recent.pop_front();
        }
        self.recent.len()
    }

    /// Applies the running `[workorders]`: the memory is kept; a smaller
    /// limit forgets the oldest attempts beyond it.
    pub(super) fn set_config(&mut self, config: &WorkOrderConfig) {
        self.limit = config.flood_limit;
        self.window_ms = millis(config.flood_window);
        while self.recent.len() > config.flood_limit as usize {
            self.recent.pop_front();
        }
    }

    /// Judges one attempt to raise at `at`, and counts it.
    pub(super) fn admit(&mut self, at: Timestamp) -> Admit {
        if self.limit == 0 {
            return Admit::Raise;
        }
        let limit = self.limit as usize;
        let verdict = if self.prune(at) >= limit {
            self.held += 1;
            if self.flooding {
                Admit::Hold
            } else {
                self.flooding = true;
                Admit::Trip
            }
        } else {
            self.flooding = false;
            Admit::Raise
        };
        self.recent.push_back(at);
        while self.recent.len() > limit {
            self.recent.pop_front();
        }
        verdict
    }

    /// Whether an attempt at `at` would be held (or trip the guard),
    /// without counting it.
    pub(super) fn is_flooding(&self, at: Timestamp) -> bool {
        let mut guard = self.clone();
        guard.limit != 0 && guard.prune(at) >= guard.limit as usize
    }

    /// `flood_limit`.
    pub(super) fn limit(&self) -> u32 {
        self.limit
    }

    /// Attempts that raised no work order of their own (tripped or held).
    pub(super) fn held(&self) -> u64 {
        self.held
    }

    /// `Alarm flood: 11 work orders in 10 minutes`.
    pub(super) fn title(&self) -> String {
        format!(
            "Alarm flood: {} work orders in {}",
            u64::from(self.limit) + 1,
            window_text(self.window_ms)
        )
    }

    /// The flood work order's description, for the attempt of `rule` at
    /// `at` that tripped the guard.
    pub(super) fn description(&self, rule: &str, at: Timestamp) -> String {
        let window = window_text(self.window_ms);
        format!(
            "More than {} work orders within {window}, the last for rule {rule} at {}. \
             Further activations are held as alarms only, without work orders, \
             until fewer than {} are raised within {window}.",
            self.limit,
            format_time(at),
            self.limit,
        )
    }
}

/// `10 minutes`, `1 minute`, `90 seconds`, `1.5 seconds`.
fn window_text(ms: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if ms.is_multiple_of(60_000) {
        plural(ms / 60_000, "minute")
    } else if ms.is_multiple_of(1000) {
        plural(ms / 1000, "second")
    } else {
        format!("{} seconds", format_number(ms as f64 / 1000.0))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fixtures::*;
    use super::*;
    use crate::config::Rule;
    use crate::rules::workorder::{FLOOD_RULE, WoChange, WoSource, WoTrigger, WoType};

    #[test]
    fn the_flood_guard_raises_one_flood_work_order_and_holds_the_rest() {
        let mut rig = Rig::new();
        let rules: Vec<Rule> = (0..12)
            .map(|i| rule(&format!("r{i}"), "pump2.temp", 80.0))
            .collect();
        let mut changes = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            changes.extend(rig.event(&activation(&r.name, i as f64 * 5.0, 90.0, 80.0), r));
        }
        assert_eq!(count(&changes, |c| matches!(c, WoChange::Raised(_))), 10);
        assert_eq!(
            count(&changes, |c| matches!(c, WoChange::FloodRaised(_))),
            1
        );
        assert_eq!(count(&changes, |c| matches!(c, WoChange::Held { .. })), 1);
        assert!(matches!(&changes[10], WoChange::FloodRaised(_)));
        assert_eq!(
            changes[11],
            WoChange::Held {
                rule: "r11".into(),
                asset: "gw1".into()
            }
        );
        let flood = changes[10].work_order().unwrap();
        assert_eq!(flood.title, "Alarm flood: 11 work orders in 10 minutes");
        assert_eq!(flood.asset, "gw1");
        assert_eq!(flood.location.as_deref(), Some("Building A"));
        assert_eq!(flood.kind, WoType::Corrective);
        assert_eq!(flood.source, WoSource::Flood);
        assert_eq!(
            flood.key,
            format!("plant-a/gw1/gateway:alarm_flood/gw1/1-{}", flood.id)
        );
        assert!(matches!(&flood.trigger, WoTrigger::Alarm { rule, .. } if rule == FLOOD_RULE));
        assert_eq!(rig.book.held(), 2);
        assert!(rig.book.is_flooding(t(60.0)));

        // Pump2's rules share the asset of the gateway-less device: the
        // device has none, so the gateway id.
        assert_eq!(
            changes[0].work_order().map(|w| w.asset.as_str()),
            Some("gw1")
        );

        // Held attempts keep the flood going: the last attempt was at 55 s,
        // so at 10 min + 10 s nine attempts are still in the window.
        let late = rule("late", "pump2.temp", 80.0);
        let ch = rig.event(&activation("late", 610.0, 90.0, 80.0), &late);
        assert!(matches!(&ch[..], [WoChange::Raised(_)]), "{ch:#?}");
        // Once the window holds fewer than the limit, raising resumes.
        assert!(!rig.book.is_flooding(t(700.0)));
        let again = rule("again", "pump2.temp", 80.0);
        let ch = rig.event(&activation("again", 700.0, 90.0, 80.0), &again);
        assert!(matches!(&ch[..], [WoChange::Raised(_)]));
    }

    #[test]
    fn a_sustained_flood_stays_held_and_a_new_flood_updates_the_open_flood_work_order() {
        let mut rig = Rig::new();
        rig.book.set_config(&WorkOrderConfig {
            flood_limit: 2,
            flood_window: Duration::from_secs(60),
        });
        let rules: Vec<Rule> = (0..20)
            .map(|i| rule(&format!("r{i}"), "pump2.temp", 80.0))
            .collect();
        let mut kinds = Vec::new();
        // One attempt every 20 s: three in a 60 s window, above the limit.
        for (i, r) in rules.iter().take(10).enumerate() {
            for c in rig.event(&activation(&r.name, i as f64 * 20.0, 90.0, 80.0), r) {
                kinds.push(match c {
                    WoChange::Raised(_) => 'R',
                    WoChange::FloodRaised(_) => 'F',
                    WoChange::Held { .. } => 'H',
                    _ => '?',
                });
            }
        }
        assert_eq!(kinds.iter().collect::<String>(), "RRFHHHHHHH");
        // Quiet, then a second flood while the first flood's work order is
        // still open: it is updated, not raised again.
        let mut kinds = Vec::new();
        let mut flood = None;
        for (i, r) in rules.iter().skip(10).take(3).enumerate() {
            for c in rig.event(&activation(&r.name, 1000.0 + i as f64, 90.0, 80.0), r) {
                if let WoChange::FloodRaised(w) = &c {
                    flood = Some(w.clone());
                }
                kinds.push(matches!(c, WoChange::Raised(_)));
            }
        }
        assert_eq!(kinds, [true, true, false]);
        let flood = flood.unwrap();
        assert_eq!(flood.occurrences, 2);
        assert_eq!(
            flood.key,
            format!("plant-a/gw1/gateway:alarm_flood/gw1/1-{}", flood.id)
        );
        assert_eq!(
            rig.book
                .open()
                .filter(|w| w.source == WoSource::Flood)
                .count(),
            1
        );
    }

    #[test]
    fn the_flood_guard_tolerates_out_of_order_times_and_forgets_on_a_big_clock_step() {
        let mut guard = FloodGuard::new(&WorkOrderConfig {
            flood_limit: 3,
            flood_window: Duration::from_secs(60),
        });
        // Batches of two devices arrive slightly out of time order: all count.
        let verdicts: Vec<Admit> = [10.0, 9.5, 10.2, 9.9]
            .iter()
            .map(|&s| guard.admit(t(s)))
            .collect();
        assert_eq!(
            verdicts,
            [Admit::Raise, Admit::Raise, Admit::Raise, Admit::Trip]
        );
        assert_eq!(guard.admit(t(11.0)), Admit::Hold);
        // A clock stepped back by more than the window: a fresh start.
        assert_eq!(guard.admit(Timestamp(t(11.0).0 - 61_000)), Admit::Raise);
        assert!(guard.recent.len() <= 3);
    }

    #[test]
    fn window_texts() {
        assert_eq!(window_text(600_000), "10 minutes");
        assert_eq!(window_text(60_000), "1 minute");
        assert_eq!(window_text(90_000), "90 seconds");
        assert_eq!(window_text(1_500), "1.5 seconds");
    }
}
