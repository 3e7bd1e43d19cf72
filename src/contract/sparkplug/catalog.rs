//! The birth certificate a configuration makes: every metric the edge
//! node will ever publish, with its alias and datatype.
//!
//! Aliases are numbered from 1 in configuration order (the node's own
//! metrics, then each device's tags and the alarm metrics of its rules,
//! then the alarms of rules that span devices), so the
//! same configuration always gives the same aliases; a reload that changes
//! them is followed by a rebirth. `bdSeq` has no alias: the NDEATH names it.
//!
//! The catalog also says which metrics take a write (a DCMD): a device's
//! tag metric whose tag the configuration makes writable. Alarm metrics
//! and node metrics never do (`Node Control/Rebirth` is a command of the
//! node, not a write).

use std::collections::HashMap;

use super::proto::datatype;
use crate::config::{Config, Device, Rule};
use crate::tag::{DataType, Tag, Value};

/// `bdSeq`: the session number in NBIRTH and NDEATH.
pub const BD_SEQ: &str = "bdSeq";
/// `Node Control/Rebirth`: a host writes `true` to it (NCMD) to get births again.
pub const REBIRTH: &str = "Node Control/Rebirth";
/// The gateway's version.
pub const VERSION: &str = "Node Info/Version";
/// The configuration's hash (as in the JSON status).
pub const CONFIG_HASH: &str = "Node Info/Config Hash";
/// Messages waiting in the outbox, both namespaces.
pub const OUTBOX_DEPTH: &str = "Node Info/Outbox Depth";
/// The kernel reports the wall clock synchronised (timestamps are true).
pub const CLOCK_SYNCHRONISED: &str = "Node Info/Clock Synchronised";

/// An alarm metric of a rule: `Alarms/{rule}/State` (the ISA-18.2 state
/// as the JSON alarm message names it), `…/Active`, `…/Acked`.
pub fn alarm_metric(rule: &str, part: AlarmPart) -> String {
    format!("Alarms/{rule}/{}", part.as_str())
}

/// The three metrics of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmPart {
    /// The state's name (`normal`, `active_unacked`, `shelved`…).
    State,
    /// The condition holds (after its delays).
    Active,
    /// The operator has acknowledged it.
    Acked,
}

impl AlarmPart {
    /// All three, in birth order.
    pub const ALL: [AlarmPart; 3] = [AlarmPart::State, AlarmPart::Active, AlarmPart::Acked];

    fn as_str(self) -> &'static str {
        match self {
            AlarmPart::State => "State",
            AlarmPart::Active => "Active",
            AlarmPart::Acked => "Acked",
        }
    }

    fn initial(self) -> Value {
        match self {
            AlarmPart::State => Value::Text("normal".to_owned()),
            AlarmPart::Active => Value::Bool(false),
            AlarmPart::Acked => Value::Bool(true),
        }
    }

    fn datatype(self) -> u32 {
        match self {
            AlarmPart::State => datatype::STRING,
            AlarmPart::Active | AlarmPart::Acked => datatype::BOOLEAN,
        }
    }
}

/// One metric of the birth certificate.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDef {
    /// The metric name (a tag's name, `Alarms/{rule}/State`, `Node Info/…`).
    pub name: String,
    /// Its alias in this configuration (`None` for `bdSeq`).
    pub alias: Option<u64>,
    /// The Sparkplug datatype code.
    pub datatype: u32,
    /// Engineering unit (`engUnit` property).
    pub unit: Option<String>,
    /// Free text (`description` property).
    pub description: Option<String>,
    /// The value a birth gives it before anything was measured: an alarm
    /// never raised is `normal`, not active, acknowledged; a tag never read
    /// is null (`None`).
    pub initial: Option<Value>,
    /// A DCMD may write it: a tag metric whose tag has `writable = true`.
    pub writable: bool,
}

/// One device's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceCatalog {
    /// The device name (the Sparkplug device id).
    pub name: String,
    /// Tags in tag order, then alarm metrics.
    pub metrics: Vec<MetricDef>,
    by_name: HashMap<String, usize>,
    by_alias: HashMap<u64, usize>,
}

impl DeviceCatalog {
    /// A metric by name.
    pub fn metric(&self, name: &str) -> Option<&MetricDef> {
        self.by_name.get(name).and_then(|&i| self.metrics.get(i))
    }

    /// A metric by alias.
    pub fn metric_by_alias(&self, alias: u64) -> Option<&MetricDef> {
        self.by_alias.get(&alias).and_then(|&i| self.metrics.get(i))
    }
}

/// The whole birth certificate of one configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Catalog {
    /// The node's metrics (`bdSeq` first, then the rebirth control, the
    /// node information and the alarms of rules that span devices).
    pub node: Vec<MetricDef>,
    /// The devices, in configuration order.
    pub devices: Vec<DeviceCatalog>,
    by_device: HashMap<String, usize>,
    node_by_name: HashMap<String, usize>,
    /// Which device (or the node, `None`) each rule's alarm metrics belong to.
    rule_owner: HashMap<String, Option<String>>,
}

/// The Sparkplug datatype of a tag: the register type when the value is
/// published unscaled; Double for any scaled number (the engineering
/// value of a scaled integer is not an integer).
pub fn tag_datatype(tag: &Tag) -> u32 {
    let scaled = !tag.is_unscaled();
    match tag.data_type {
        DataType::Bool | DataType::Bit(_) => datatype::BOOLEAN,
        DataType::String(_) => datatype::STRING,
        _ if scaled => datatype::DOUBLE,
        DataType::U16 => datatype::UINT16,
        DataType::I16 => datatype::INT16,
        DataType::U32 => datatype::UINT32,
        DataType::I32 => datatype::INT32,
        DataType::U64 => datatype::UINT64,
        DataType::I64 => datatype::INT64,
        DataType::F32 => datatype::FLOAT,
        DataType::F64 => datatype::DOUBLE,
    }
}

/// The device a rule's alarm metrics belong to: the device of every tag
/// its condition reads, or `None` (the node) when they span devices.
pub fn rule_device(rule: &Rule) -> Option<&str> {
    let tags = rule.condition.tags();
    let mut devices = tags
        .iter()
        .filter_map(|t| t.split_once('.').map(|(d, _)| d));
    let first = devices.next()?;
    devices.all(|d| d == first).then_some(first)
}

impl Catalog {
    /// The birth certificate of `config`.
    pub fn of(config: &Config) -> Catalog {
        Catalog::build(&config.devices, &config.rules)
    }

    /// The birth certificate of these devices and rules.
    pub fn build<D: std::borrow::Borrow<Device>>(devices: &[D], rules: &[Rule]) -> Catalog {
        let mut next = 1u64;
        let mut alias = || {
            let a = next;
            next += 1;
            Some(a)
        };
        let plain = |name: &str, alias: Option<u64>, datatype: u32| MetricDef {
            name: name.to_owned(),
            alias,
            datatype,
            unit: None,
            description: None,
            initial: None,
            writable: false,
        };
        let alarm = |rule: &str, part: AlarmPart, alias: Option<u64>| MetricDef {
            initial: Some(part.initial()),
            ..plain(&alarm_metric(rule, part), alias, part.datatype())
        };
        let mut node = vec![
            plain(BD_SEQ, None, datatype::INT64),
            plain(REBIRTH, alias(), datatype::BOOLEAN),
            plain(VERSION, alias(), datatype::STRING),
            plain(CONFIG_HASH, alias(), datatype::STRING),
            plain(OUTBOX_DEPTH, alias(), datatype::UINT64),
            plain(CLOCK_SYNCHRONISED, alias(), datatype::BOOLEAN),
        ];
        let mut rule_owner = HashMap::new();
        let mut device_rules: HashMap<&str, Vec<&str>> = HashMap::new();
        let mut node_rules: Vec<&str> = Vec::new();
        for rule in rules {
            let owner = rule_device(rule).filter(|d| devices.iter().any(|x| x.borrow().name == *d));
            match owner {
                Some(d) => device_rules.entry(d).or_default().push(&rule.name),
                None => node_rules.push(&rule.name),
            }
            rule_owner.insert(rule.name.clone(), owner.map(str::to_owned));
        }
        let devices: Vec<DeviceCatalog> = devices
            .iter()
            .map(|device| {
                let device: &Device = device.borrow();
                let mut metrics: Vec<MetricDef> = device
                    .tags
                    .iter()
                    .map(|tag| MetricDef {
                        name: tag.name.clone(),
                        alias: alias(),
                        datatype: tag_datatype(tag),
                        unit: tag.unit.clone(),
                        description: tag.description.clone(),
                        initial: None,
                        writable: tag.write.is_some(),
                    })
                    .collect();
                for rule in device_rules.get(device.name.as_str()).into_iter().flatten() {
                    for part in AlarmPart::ALL {
                        metrics.push(alarm(rule, part, alias()));
                    }
                }
                let by_name = index(&metrics);
                let by_alias = metrics
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| Some((m.alias?, i)))
                    .collect();
                DeviceCatalog {
                    name: device.name.clone(),
                    metrics,
                    by_name,
                    by_alias,
                }
            })
            .collect();
        // The node's alarms are numbered after every device's metrics, so
        // adding a rule that spans devices leaves the tags' aliases alone.
        for rule in node_rules {
            for part in AlarmPart::ALL {
                node.push(alarm(rule, part, alias()));
            }
        }
        let by_device = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.clone(), i))
            .collect();
        let node_by_name = index(&node);
        Catalog {
            node,
            devices,
            by_device,
            node_by_name,
            rule_owner,
        }
    }

    /// A device's metrics.
    pub fn device(&self, name: &str) -> Option<&DeviceCatalog> {
        self.by_device.get(name).and_then(|&i| self.devices.get(i))
    }

    /// A node metric by name.
    pub fn node_metric(&self, name: &str) -> Option<&MetricDef> {
        self.node_by_name.get(name).and_then(|&i| self.node.get(i))
    }

    /// A node metric by alias.
    pub fn node_metric_by_alias(&self, alias: u64) -> Option<&MetricDef> {
        self.node.iter().find(|m| m.alias == Some(alias))
    }

    /// Where a rule's alarm metrics are: `Some(Some(device))`, `Some(None)`
    /// for the node, `None` for a rule this configuration does not have.
    pub fn rule_owner(&self, rule: &str) -> Option<Option<&str>> {
        self.rule_owner.get(rule).map(|o| o.as_deref())
    }

    /// Every metric, node and devices (for tests and the docs' tables).
    pub fn len(&self) -> usize {
        self.node.len() + self.devices.iter().map(|d| d.metrics.len()).sum::<usize>()
    }

    /// Only `bdSeq` and the node metrics: no device, no rule.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

fn index(metrics: &[MetricDef]) -> HashMap<String, usize> {
    metrics
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.clone(), i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Condition, Connection, Priority, WorkOrderTemplate};
    use crate::tag::{Area, WriteAccess};

    #[test]
    fn only_writable_tags_take_writes_and_aliases_find_device_metrics() {
        let mut setpoint = Tag::new("setpoint", Area::HoldingRegister, 0, DataType::F32);
        setpoint.write = Some(WriteAccess::default());
        let device = Device::new(
            "pump1",
            Connection::Rtu { bus: "b".into() },
            vec![
                Tag::new("temp", Area::InputRegister, 0, DataType::F32),
                setpoint,
            ],
        );
        let rule = Rule {
            name: "hot".into(),
            condition: Condition::Above {
                tag: "pump1.temp".into(),
                limit: 80.0,
            },
            deadband: 0.0,
            on_delay: std::time::Duration::ZERO,
            off_delay: std::time::Duration::ZERO,
            priority: Priority::Medium,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate::default(),
        };
        let catalog = Catalog::build(&[device], &[rule]);
        let pump = catalog.device("pump1").unwrap();
        let writable: Vec<&str> = pump
            .metrics
            .iter()
            .filter(|m| m.writable)
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(writable, ["setpoint"]);
        assert!(catalog.node.iter().all(|m| !m.writable));
        for m in &pump.metrics {
            let alias = m.alias.unwrap();
            assert_eq!(pump.metric_by_alias(alias), Some(m));
        }
        // Node aliases are not the device's.
        assert_eq!(pump.metric_by_alias(1), None);
    }

    #[test]
    fn datatypes_follow_the_tag_type_and_scale() {
        let mut t = Tag::new("x", Area::HoldingRegister, 0, DataType::I16);
        assert_eq!(tag_datatype(&t), datatype::INT16);
        t.scale = 0.1;
        assert_eq!(tag_datatype(&t), datatype::DOUBLE);
        for (ty, code) in [
            (DataType::Bool, datatype::BOOLEAN),
            (DataType::Bit(3), datatype::BOOLEAN),
            (DataType::U16, datatype::UINT16),
            (DataType::U32, datatype::UINT32),
            (DataType::I32, datatype::INT32),
            (DataType::U64, datatype::UINT64),
            (DataType::I64, datatype::INT64),
            (DataType::F32, datatype::FLOAT),
            (DataType::F64, datatype::DOUBLE),
            (DataType::String(4), datatype::STRING),
        ] {
            assert_eq!(
                tag_datatype(&Tag::new("x", Area::HoldingRegister, 0, ty)),
                code,
                "{ty:?}"
            );
        }
    }
}
