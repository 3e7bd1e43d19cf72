//! The decisions of the demo's CMMS: a maintenance planner who accepts
//! every work order the gateway raises and signs a corrective one off once
//! the alarm that raised it has stayed back to normal for a while.
//!
//! Pure: no MQTT, no clock. [`Planner::observe`] takes what arrived on the
//! broker with the time it arrived; [`Planner::due`] says what to send now;
//! [`Planner::sent`] records that it was handed to the client. A decision
//! that could not be handed over (the client's queue was full) is simply
//! due again at the next look.
//!
//! Preventive work orders are accepted and left open: the service is
//! scheduled, not done within a demo. A closed work order is not reopened.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

/// How quickly the planner acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Time between a work order arriving and its acceptance (the planner
    /// reads it first): long enough to see `open` in the view.
    pub accept_after: Duration,
    /// How long the alarm behind a corrective work order must have been
    /// back to normal before the planner closes the work order.
    pub close_after: Duration,
    /// The first CMMS reference number (`CMMS-1001`).
    pub first_ref: u32,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            accept_after: Duration::from_secs(2),
            close_after: Duration::from_secs(5),
            first_ref: 1001,
        }
    }
}

/// A work order message as far as the planner reads it
/// (`fieldgate.workorder/1`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct WorkOrderMessage {
    /// ULID, the last level of its topic.
    pub id: String,
    /// `corrective` or `preventive`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `open`, `accepted`, `in_progress`.
    pub status: String,
    /// The asset.
    pub asset: String,
    /// The title.
    pub title: String,
    /// When it was raised (RFC 3339).
    pub created_at: String,
    /// The rule (corrective) or the meter (preventive) that raised it.
    pub trigger: TriggerMessage,
}

/// The part of a work order's trigger the planner needs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TriggerMessage {
    /// The rule, for a corrective work order.
    #[serde(default)]
    pub rule: Option<String>,
    /// The meter, for a preventive one.
    #[serde(default)]
    pub meter: Option<String>,
}

/// An alarm message as far as the planner reads it (`fieldgate.alarm/1`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlarmMessage {
    /// The rule.
    pub rule: String,
    /// Whether its condition holds.
    pub active: bool,
}

/// What arrived on the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Observation {
    /// A work order, raised or republished. `retained` is true when the
    /// broker delivered it as a retained message at subscription.
    WorkOrder {
        /// The message.
        message: WorkOrderMessage,
        /// Delivered from the broker's retained store.
        retained: bool,
    },
    /// The empty retained message that clears a closed work order.
    Cleared {
        /// The work order.
        id: String,
    },
    /// A rule's alarm state.
    Alarm(AlarmMessage),
}

/// What the planner sends to the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// `{"status":"accepted","ref":…}`.
    Accept {
        /// The work order.
        id: String,
        /// The CMMS's reference.
        cmms_ref: String,
    },
    /// `{"status":"closed","ref":…,"note":…}`.
    Close {
        /// The work order.
        id: String,
        /// The CMMS's reference.
        cmms_ref: String,
        /// Why (for the record).
        note: String,
    },
}

impl Decision {
    /// The work order it concerns.
    pub fn id(&self) -> &str {
        match self {
            Decision::Accept { id, .. } | Decision::Close { id, .. } => id,
        }
    }

    /// The status payload for `.../workorders/{id}/status`.
    pub fn payload(&self) -> String {
        let body = match self {
            Decision::Accept { cmms_ref, .. } => serde_json::json!({
                "status": "accepted",
                "ref": cmms_ref,
                "by": "demo-planner",
            }),
            Decision::Close { cmms_ref, note, .. } => serde_json::json!({
                "status": "closed",
                "ref": cmms_ref,
                "by": "demo-planner",
                "note": note,
            }),
        };
        body.to_string()
    }
}

/// Where a work order stands in the CMMS.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Received, not accepted yet.
    New,
    /// Accepted; the reference was sent.
    Accepted,
    /// The close was sent; waiting for the gateway to clear it.
    Closing,
    /// The gateway cleared it.
    Closed,
}

#[derive(Debug, Clone)]
struct Order {
    received: Instant,
    cmms_ref: String,
    corrective: bool,
    rule: Option<String>,
    stage: Stage,
}

#[derive(Debug, Clone, Copy)]
struct AlarmSeen {
    active: bool,
    /// When the planner saw it change to `active` (or first saw it).
    since: Instant,
}

/// The planner's book: work orders by id, alarms by rule.
#[derive(Debug, Clone)]
pub struct Planner {
    policy: Policy,
    started: SystemTime,
    orders: BTreeMap<String, Order>,
    alarms: HashMap<String, AlarmSeen>,
    next_ref: u32,
}

impl Planner {
    /// An empty book. Work orders created before `started` that arrive as
    /// retained messages are ignored: on a shared broker they are leftovers
    /// of an earlier run whose gateway (with another data dir) no longer
    /// knows them.
    pub fn new(policy: Policy, started: SystemTime) -> Planner {
        Planner {
            policy,
            started,
            orders: BTreeMap::new(),
            alarms: HashMap::new(),
            next_ref: policy.first_ref,
        }
    }

    /// Records what arrived at `now`. Returns true when it was a work
    /// order the planner had not seen (worth telling the operator).
    pub fn observe(&mut self, observation: Observation, now: Instant) -> bool {
        match observation {
            Observation::WorkOrder { message, retained } => {
                if self.orders.contains_key(&message.id) {
                    return false;
                }
                if retained && self.is_leftover(&message.created_at) {
                    return false;
                }
                let cmms_ref = format!("CMMS-{}", self.next_ref);
                self.next_ref += 1;
                self.orders.insert(
                    message.id.clone(),
                    Order {
                        received: now,
                        cmms_ref,
                        corrective: message.kind == "corrective",
                        rule: message.trigger.rule.clone(),
                        // A work order another CMMS run accepted already
                        // needs no second acceptance.
                        stage: match message.status.as_str() {
                            "accepted" | "in_progress" => Stage::Accepted,
                            _ => Stage::New,
                        },
                    },
                );
                true
            }
            Observation::Cleared { id } => {
                if let Some(order) = self.orders.get_mut(&id) {
                    order.stage = Stage::Closed;
                }
                false
            }
            Observation::Alarm(alarm) => {
                let changed = self
                    .alarms
                    .get(&alarm.rule)
                    .is_none_or(|seen| seen.active != alarm.active);
                if changed {
                    self.alarms.insert(
                        alarm.rule,
                        AlarmSeen {
                            active: alarm.active,
                            since: now,
                        },
                    );
                }
                false
            }
        }
    }

    fn is_leftover(&self, created_at: &str) -> bool {
        humantime::parse_rfc3339(created_at).is_ok_and(|t| t < self.started)
    }

    /// What to send at `now`, oldest work order first.
    pub fn due(&self, now: Instant) -> Vec<Decision> {
        let mut out = Vec::new();
        for (id, order) in &self.orders {
            match order.stage {
                Stage::New if now.duration_since(order.received) >= self.policy.accept_after => {
                    out.push(Decision::Accept {
                        id: id.clone(),
                        cmms_ref: order.cmms_ref.clone(),
                    });
                }
                Stage::Accepted if order.corrective => {
                    let Some(rule) = &order.rule else { continue };
                    let Some(alarm) = self.alarms.get(rule) else {
                        continue;
                    };
                    let quiet = now.duration_since(alarm.since);
                    if !alarm.active && quiet >= self.policy.close_after {
                        out.push(Decision::Close {
                            id: id.clone(),
                            cmms_ref: order.cmms_ref.clone(),
                            note: format!(
                                "alarm {rule} back to normal for {} s: signed off",
                                quiet.as_secs()
                            ),
                        });
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// Records that `decision` was handed to the MQTT client.
    pub fn sent(&mut self, decision: &Decision) {
        if let Some(order) = self.orders.get_mut(decision.id()) {
            order.stage = match decision {
                Decision::Accept { .. } => Stage::Accepted,
                Decision::Close { .. } => Stage::Closing,
            };
        }
    }

    /// The CMMS reference given to a work order.
    pub fn cmms_ref(&self, id: &str) -> Option<&str> {
        self.orders.get(id).map(|o| o.cmms_ref.as_str())
    }

    /// Work orders received, and how many of them the gateway cleared
    /// after the planner closed them.
    pub fn counts(&self) -> (usize, usize) {
        let closed = self
            .orders
            .values()
            .filter(|o| o.stage == Stage::Closed)
            .count();
        (self.orders.len(), closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(id: &str, kind: &str, rule: Option<&str>, created_at: &str) -> WorkOrderMessage {
        WorkOrderMessage {
            id: id.into(),
            kind: kind.into(),
            status: "open".into(),
            asset: "P-101".into(),
            title: "t".into(),
            created_at: created_at.into(),
            trigger: TriggerMessage {
                rule: rule.map(Into::into),
                meter: if rule.is_none() {
                    Some("pump1_runtime".into())
                } else {
                    None
                },
            },
        }
    }

    fn live(message: WorkOrderMessage) -> Observation {
        Observation::WorkOrder {
            message,
            retained: false,
        }
    }

    fn alarm(rule: &str, active: bool) -> Observation {
        Observation::Alarm(AlarmMessage {
            rule: rule.into(),
            active,
        })
    }

    const NOW: &str = "2030-01-01T00:00:00.000Z";

    fn planner() -> Planner {
        Planner::new(Policy::default(), SystemTime::UNIX_EPOCH)
    }

    #[test]
    fn accepts_after_the_delay_with_a_new_reference_each() {
        let t0 = Instant::now();
        let mut p = planner();
        assert!(p.observe(live(order("A", "corrective", Some("hot"), NOW)), t0));
        assert!(p.observe(live(order("B", "preventive", None, NOW)), t0));
        assert!(
            !p.observe(live(order("A", "corrective", Some("hot"), NOW)), t0),
            "a republish is not new"
        );
        assert!(p.due(t0 + Duration::from_secs(1)).is_empty());
        let due = p.due(t0 + Duration::from_secs(2));
        assert_eq!(
            due,
            [
                Decision::Accept {
                    id: "A".into(),
                    cmms_ref: "CMMS-1001".into()
                },
                Decision::Accept {
                    id: "B".into(),
                    cmms_ref: "CMMS-1002".into()
                },
            ]
        );
        for d in &due {
            p.sent(d);
        }
        assert!(p.due(t0 + Duration::from_secs(3)).is_empty(), "sent once");
    }

    #[test]
    fn an_unsent_decision_is_due_again() {
        let t0 = Instant::now();
        let mut p = planner();
        p.observe(live(order("A", "corrective", Some("hot"), NOW)), t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(p.due(later).len(), 1);
        assert_eq!(p.due(later).len(), 1, "not handed over: still due");
    }

    #[test]
    fn closes_a_corrective_order_once_its_alarm_stayed_normal() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = planner();
        p.observe(alarm("silent", true), t0);
        p.observe(live(order("A", "corrective", Some("silent"), NOW)), t0);
        for d in p.due(t0 + s(2)) {
            p.sent(&d);
        }
        assert!(p.due(t0 + s(10)).is_empty(), "alarm still active");
        p.observe(alarm("silent", false), t0 + s(10));
        p.observe(alarm("silent", false), t0 + s(12));
        assert!(p.due(t0 + s(14)).is_empty(), "quiet for 4 s only");
        let due = p.due(t0 + s(15));
        assert!(
            matches!(&due[..], [Decision::Close { id, cmms_ref, .. }] if id == "A" && cmms_ref == "CMMS-1001"),
            "{due:?}"
        );
        p.sent(&due[0]);
        assert!(p.due(t0 + s(20)).is_empty(), "closed once");
        assert_eq!(p.counts(), (1, 0));
        p.observe(Observation::Cleared { id: "A".into() }, t0 + s(21));
        assert_eq!(p.counts(), (1, 1));
    }

    #[test]
    fn an_alarm_that_comes_back_restarts_the_quiet_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = planner();
        p.observe(live(order("A", "corrective", Some("hot"), NOW)), t0);
        for d in p.due(t0 + s(2)) {
            p.sent(&d);
        }
        p.observe(alarm("hot", false), t0 + s(3));
        p.observe(alarm("hot", true), t0 + s(6));
        p.observe(alarm("hot", false), t0 + s(7));
        assert!(p.due(t0 + s(11)).is_empty());
        assert_eq!(p.due(t0 + s(12)).len(), 1);
    }

    #[test]
    fn preventive_orders_and_orders_without_an_alarm_stay_open() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = planner();
        p.observe(live(order("P", "preventive", None, NOW)), t0);
        p.observe(live(order("F", "corrective", Some("alarm_flood"), NOW)), t0);
        for d in p.due(t0 + s(2)) {
            p.sent(&d);
        }
        assert!(p.due(t0 + s(600)).is_empty());
    }

    #[test]
    fn retained_leftovers_of_an_earlier_run_are_ignored() {
        let t0 = Instant::now();
        let started = humantime::parse_rfc3339("2030-01-01T00:00:00Z").unwrap_or(SystemTime::now());
        let mut p = Planner::new(Policy::default(), started);
        let old = order("OLD", "corrective", Some("hot"), "2029-12-31T23:00:00.000Z");
        assert!(!p.observe(
            Observation::WorkOrder {
                message: old.clone(),
                retained: true
            },
            t0
        ));
        assert!(
            p.observe(live(old), t0),
            "a live message is a work order of this gateway"
        );
        let fresh = order("NEW", "corrective", Some("hot"), "2030-01-01T00:00:01.000Z");
        assert!(p.observe(
            Observation::WorkOrder {
                message: fresh,
                retained: true
            },
            t0
        ));
    }

    #[test]
    fn an_order_accepted_elsewhere_is_not_accepted_again() {
        let t0 = Instant::now();
        let mut p = planner();
        let mut m = order("A", "corrective", Some("hot"), NOW);
        m.status = "accepted".into();
        p.observe(live(m), t0);
        assert!(p.due(t0 + Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn payloads_are_what_the_gateway_reads() {
        let accept = Decision::Accept {
            id: "A".into(),
            cmms_ref: "CMMS-1001".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&accept.payload()).unwrap_or_default();
        assert_eq!(v["status"], "accepted");
        assert_eq!(v["ref"], "CMMS-1001");
        let close = Decision::Close {
            id: "A".into(),
            cmms_ref: "CMMS-1001".into(),
            note: "done".into(),
        };
        let v: serde_json::Value = serde_json::from_str(&close.payload()).unwrap_or_default();
        assert_eq!(v["status"], "closed");
        assert_eq!(v["note"], "done");
    }
}
