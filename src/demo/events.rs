//! What changed in the plant between two status documents, as one line
//! each, and the tally of the whole run for the final summary.
//!
//! Pure: the view fetches the documents and prints the lines. A change
//! that starts and ends between two documents (half a second apart) is
//! not seen; the rules' delays make that rare for alarms, and the tally
//! counts work orders by id, so none is missed while it stays open.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value as JsonValue;

use super::status::{AlarmStatus, DeviceStatus, PlantStatus, WorkOrderStatus};
use crate::precision::{self, Precision};
use crate::tag::Value;

/// One change, printed as one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A device's link state changed.
    Device {
        /// The device.
        name: String,
        /// `starting`, `polling` or `failing`.
        state: String,
        /// Why, while failing.
        error: Option<String>,
    },
    /// An alarm entered a state away from normal, or changed state.
    Alarm {
        /// The rule.
        rule: String,
        /// The new state.
        state: String,
        /// The alarm's priority.
        priority: String,
        /// The value judged and its limit.
        value: JsonValue,
        /// The limit.
        limit: JsonValue,
        /// Decimals they are shown with (`None`: significant digits).
        decimals: Option<u8>,
    },
    /// An alarm went back to normal (left the status document).
    AlarmNormal {
        /// The rule.
        rule: String,
    },
    /// A work order appeared.
    WorkOrderRaised(WorkOrderStatus),
    /// A work order's status changed (what the CMMS reported).
    WorkOrderStatus {
        /// The work order.
        id: String,
        /// The asset.
        asset: String,
        /// The new status.
        status: String,
        /// The CMMS reference.
        cmms_ref: Option<String>,
    },
    /// A work order left the document: the CMMS closed it.
    WorkOrderClosed {
        /// The work order.
        id: String,
        /// The asset.
        asset: String,
        /// The CMMS reference.
        cmms_ref: Option<String>,
    },
    /// A meter reached its threshold.
    MeterDue {
        /// The meter.
        name: String,
        /// `runtime` or `count`.
        measure: String,
        /// Its value.
        value: Option<f64>,
        /// Its unit.
        unit: String,
    },
    /// The gateway's broker connection came up or went down.
    Broker {
        /// Connected now.
        connected: bool,
    },
}

/// Every change from `before` to `after`, devices first, then alarms,
/// work orders, meters and the broker.
pub fn changes(before: &PlantStatus, after: &PlantStatus) -> Vec<Change> {
    let mut out = Vec::new();
    for d in &after.devices {
        let old = before.devices.iter().find(|o| o.name == d.name);
        if old.is_none_or(|o| o.state != d.state) && d.state != "starting" {
            out.push(device_change(d));
        }
    }
    for a in &after.alarms {
        let old = before.alarms.iter().find(|o| o.rule == a.rule);
        if old.is_none_or(|o| o.state != a.state) {
            out.push(alarm_change(a));
        }
    }
    for a in &before.alarms {
        if !after.alarms.iter().any(|n| n.rule == a.rule) {
            out.push(Change::AlarmNormal {
                rule: a.rule.clone(),
            });
        }
    }
    for w in &after.work_orders {
        match before.work_orders.iter().find(|o| o.id == w.id) {
            None => out.push(Change::WorkOrderRaised(w.clone())),
            Some(o) if o.status != w.status => out.push(Change::WorkOrderStatus {
                id: w.id.clone(),
                asset: w.asset.clone(),
                status: w.status.clone(),
                cmms_ref: w.cmms_ref.clone(),
            }),
            Some(_) => {}
        }
    }
    for w in &before.work_orders {
        if !after.work_orders.iter().any(|n| n.id == w.id) {
            out.push(Change::WorkOrderClosed {
                id: w.id.clone(),
                asset: w.asset.clone(),
                cmms_ref: w.cmms_ref.clone(),
            });
        }
    }
    for m in &after.meters {
        let was_due = before.meters.iter().any(|o| o.name == m.name && o.due);
        if m.due && !was_due {
            out.push(Change::MeterDue {
                name: m.name.clone(),
                measure: m.measure.clone(),
                value: m.value,
                unit: m.unit.clone(),
            });
        }
    }
    if before.mqtt.connected != after.mqtt.connected {
        out.push(Change::Broker {
            connected: after.mqtt.connected,
        });
    }
    out
}

fn device_change(d: &DeviceStatus) -> Change {
    Change::Device {
        name: d.name.clone(),
        state: d.state.clone(),
        error: d.last_error.clone().filter(|_| d.state == "failing"),
    }
}

fn alarm_change(a: &AlarmStatus) -> Change {
    Change::Alarm {
        rule: a.rule.clone(),
        state: a.state.clone(),
        priority: a.priority.clone(),
        value: a.value.clone(),
        limit: a.limit.clone(),
        decimals: a.decimals,
    }
}

/// A value of the status document as a person reads it: a number with
/// the `decimals` the document gives for it (its tag's precision), or
/// with significant digits when it gives none; `—` for null.
pub fn show_value(v: &JsonValue, decimals: Option<u8>) -> String {
    let precision = Precision::from_decimals(decimals);
    match v {
        JsonValue::Null => "—".into(),
        JsonValue::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => precision.value(&Value::Int(i)),
            (_, Some(u), _) => precision.value(&Value::UInt(u)),
            (_, _, Some(x)) => precision.number(x),
            _ => n.to_string(),
        },
        JsonValue::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A meter's amount in its own unit: `1,850 h`, `30 s`, `1,234`; `—`
/// when unknown.
pub fn show_meter(value: Option<f64>, unit: &str) -> String {
    value.map_or_else(|| "—".into(), |x| precision::meter(unit, x))
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Device { name, state, error } => {
                write!(f, "device {name}: {state}")?;
                if let Some(e) = error {
                    write!(f, " ({e})")?;
                }
                Ok(())
            }
            Change::Alarm {
                rule,
                state,
                priority,
                value,
                limit,
                decimals,
            } => {
                write!(f, "alarm {rule}: {state} ({priority})")?;
                if !value.is_null() {
                    write!(f, ", value {}", show_value(value, *decimals))?;
                    if !limit.is_null() {
                        write!(f, ", limit {}", show_value(limit, *decimals))?;
                    }
                }
                Ok(())
            }
            Change::AlarmNormal { rule } => write!(f, "alarm {rule}: normal"),
            Change::WorkOrderRaised(w) => write!(
                f,
                "work order raised: {} {} {} \"{}\" [{}]",
                w.kind, w.priority, w.asset, w.title, w.id
            ),
            Change::WorkOrderStatus {
                id,
                asset,
                status,
                cmms_ref,
            } => {
                write!(f, "work order {status}: {asset} [{id}]")?;
                if let Some(r) = cmms_ref {
                    write!(f, " as {r}")?;
                }
                Ok(())
            }
            Change::WorkOrderClosed {
                id,
                asset,
                cmms_ref,
            } => {
                write!(f, "work order closed: {asset} [{id}]")?;
                if let Some(r) = cmms_ref {
                    write!(f, " ({r}); its retained message is cleared")?;
                }
                Ok(())
            }
            Change::MeterDue {
                name,
                measure,
                value,
                unit,
            } => write!(
                f,
                "meter {name}: due at {measure} {}",
                show_meter(*value, unit)
            ),
            Change::Broker { connected: true } => write!(f, "gateway connected to the broker"),
            Change::Broker { connected: false } => {
                write!(f, "gateway lost the broker (it buffers in the outbox)")
            }
        }
    }
}

/// What happened over the whole run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Work orders seen, by id: (type, asset).
    pub work_orders: BTreeMap<String, (String, String)>,
    /// Work orders that left the document (closed by the CMMS).
    pub closed: BTreeSet<String>,
    /// Rules whose alarm became active.
    pub alarms: BTreeSet<String>,
    /// Messages the broker acknowledged (the gateway's counter, as last read).
    pub delivered: u64,
}

impl Tally {
    /// Adds what one document and its changes tell.
    pub fn add(&mut self, status: &PlantStatus, changes: &[Change]) {
        for w in &status.work_orders {
            self.work_orders
                .entry(w.id.clone())
                .or_insert_with(|| (w.kind.clone(), w.asset.clone()));
        }
        for a in status.alarms.iter().filter(|a| a.active) {
            self.alarms.insert(a.rule.clone());
        }
        for c in changes {
            if let Change::WorkOrderClosed { id, .. } = c {
                self.closed.insert(id.clone());
            }
        }
        self.delivered = self.delivered.max(status.mqtt.acked);
    }

    /// Work orders of one type.
    pub fn of_type(&self, kind: &str) -> usize {
        self.work_orders.values().filter(|(k, _)| k == kind).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::status::{MeterStatus, MqttStatus};
    use serde_json::json;

    fn device(name: &str, state: &str) -> DeviceStatus {
        DeviceStatus {
            name: name.into(),
            link: "tcp:127.0.0.1:1".into(),
            state: state.into(),
            last_error: (state == "failing").then(|| "connection refused".into()),
            tags: Vec::new(),
        }
    }

    fn alarm(rule: &str, state: &str) -> AlarmStatus {
        AlarmStatus {
            rule: rule.into(),
            state: state.into(),
            priority: "high".into(),
            active: state.starts_with("active"),
            value: json!(82.123),
            limit: json!(80.0),
            decimals: Some(1),
        }
    }

    fn order(id: &str, status: &str) -> WorkOrderStatus {
        WorkOrderStatus {
            id: id.into(),
            kind: "corrective".into(),
            status: status.into(),
            priority: "high".into(),
            asset: "P-101".into(),
            title: "P-101: hot".into(),
            occurrences: 1,
            cmms_ref: (status != "open").then(|| "CMMS-1001".into()),
        }
    }

    #[test]
    fn every_kind_of_change_in_order() {
        let before = PlantStatus {
            devices: vec![device("pump1", "polling"), device("pump2", "polling")],
            alarms: vec![alarm("old", "returned_unacked")],
            work_orders: vec![order("A", "open"), order("B", "accepted")],
            meters: vec![MeterStatus {
                name: "runtime".into(),
                measure: "runtime".into(),
                value: Some(0.008),
                unit: "h".into(),
                next_due: Some(0.0083),
                due: false,
            }],
            ..PlantStatus::default()
        };
        let mut after = before.clone();
        after.devices[1] = device("pump2", "failing");
        after.alarms = vec![alarm("hot", "active_unacked")];
        after.work_orders = vec![order("A", "accepted"), order("C", "open")];
        after.meters[0].due = true;
        after.mqtt = MqttStatus {
            connected: true,
            acked: 5,
        };
        let lines: Vec<String> = changes(&before, &after)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "device pump2: failing (connection refused)",
                "alarm hot: active_unacked (high), value 82.1, limit 80.0",
                "alarm old: normal",
                "work order accepted: P-101 [A] as CMMS-1001",
                "work order raised: corrective high P-101 \"P-101: hot\" [C]",
                "work order closed: P-101 [B] (CMMS-1001); its retained message is cleared",
                "meter runtime: due at runtime 29 s",
                "gateway connected to the broker",
            ]
        );
        assert!(changes(&after, &after).is_empty(), "nothing changed");
    }

    #[test]
    fn starting_devices_are_not_news() {
        let after = PlantStatus {
            devices: vec![device("pump1", "starting")],
            ..PlantStatus::default()
        };
        assert!(changes(&PlantStatus::default(), &after).is_empty());
    }

    #[test]
    fn the_tally_counts_each_work_order_once() {
        let mut tally = Tally::default();
        let first = PlantStatus {
            alarms: vec![
                alarm("hot", "active_unacked"),
                alarm("old", "returned_unacked"),
            ],
            work_orders: vec![order("A", "open")],
            ..PlantStatus::default()
        };
        tally.add(&first, &changes(&PlantStatus::default(), &first));
        let second = PlantStatus {
            work_orders: vec![],
            mqtt: MqttStatus {
                connected: true,
                acked: 42,
            },
            ..PlantStatus::default()
        };
        tally.add(&second, &changes(&first, &second));
        assert_eq!(tally.work_orders.len(), 1);
        assert_eq!(tally.of_type("corrective"), 1);
        assert_eq!(tally.closed.len(), 1);
        assert_eq!(tally.alarms.iter().collect::<Vec<_>>(), ["hot"]);
        assert_eq!(tally.delivered, 42);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(show_value(&json!(80.0), None), "80");
        assert_eq!(show_value(&json!(80.0), Some(1)), "80.0");
        assert_eq!(show_value(&json!(214.0 * 0.1), Some(1)), "21.4");
        assert_eq!(show_value(&json!(82.126), None), "82.13");
        assert_eq!(show_value(&json!(-0.001), Some(2)), "0.00");
        assert_eq!(show_value(&json!(1485), Some(0)), "1485");
        assert_eq!(show_value(&json!(3), Some(1)), "3.0");
        assert_eq!(show_value(&json!(3), None), "3");
        assert_eq!(show_value(&json!(null), None), "—");
        assert_eq!(show_value(&json!(true), Some(1)), "true");
        assert_eq!(show_value(&json!("PUMP-001"), None), "PUMP-001");
        assert_eq!(show_meter(Some(30.0 / 3600.0), "h"), "30 s");
        assert_eq!(show_meter(Some(1850.4), "h"), "1,850 h");
        assert_eq!(show_meter(Some(1234.0), "count"), "1,234");
        assert_eq!(show_meter(None, "h"), "—");
    }
}
