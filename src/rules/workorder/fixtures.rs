//! What the work-order tests share: two pumps, a gateway, rules, alarm
//! activations and a [`Rig`] that feeds them to a book.

use std::sync::Arc;
use std::time::Duration;

use super::{StatusUpdate, WoChange, WoContext, WoError, WoStatus, WorkOrder, WorkOrderBook};
use crate::config::{
    Condition, Connection, Device, GatewayConfig, Priority, Rule, WorkOrderConfig,
    WorkOrderTemplate,
};
use crate::reading::Quality;
use crate::rules::Trigger;
use crate::rules::alarm::{AlarmEvent, AlarmState, Cause};
use crate::rules::time::Timestamp;
use crate::tag::{Area, DataType, Tag, Value};

pub(super) const GOOD: Quality = Quality::Good;

pub(super) fn t(secs: f64) -> Timestamp {
    Timestamp(1_763_700_000_000 + (secs * 1000.0) as u64)
}

pub(super) fn devices() -> Vec<Arc<Device>> {
    plain_devices().into_iter().map(Arc::new).collect()
}

fn plain_devices() -> Vec<Device> {
    let mut temp = Tag::new("temp", Area::HoldingRegister, 0, DataType::F32);
    temp.unit = Some("degC".into());
    let mut pressure = Tag::new("pressure", Area::HoldingRegister, 2, DataType::F32);
    pressure.unit = Some("bar".into());
    pressure.asset = Some("SEAL-7".into());
    let running = Tag::new("running", Area::Coil, 0, DataType::Bool);
    let tcp = Connection::Tcp {
        host: "x".into(),
        port: 502,
    };
    let mut pump1 = Device::new("pump1", tcp.clone(), vec![temp.clone(), pressure, running]);
    pump1.asset = Some("P-101".into());
    pump1.location = Some("Hall 2".into());
    let pump2 = Device::new("pump2", tcp, vec![temp]);
    vec![pump1, pump2]
}

pub(super) fn gateway() -> GatewayConfig {
    GatewayConfig {
        id: "gw1".into(),
        site: "plant-a".into(),
        location: Some("Building A".into()),
        data_dir: "/tmp".into(),
        shutdown_timeout: Duration::from_secs(5),
    }
}

pub(super) fn config() -> WorkOrderConfig {
    WorkOrderConfig {
        flood_limit: 10,
        flood_window: Duration::from_secs(600),
    }
}

pub(super) fn rule(name: &str, tag: &str, limit: f64) -> Rule {
    Rule {
        name: name.into(),
        condition: Condition::Above {
            tag: tag.into(),
            limit,
        },
        deadband: 0.0,
        on_delay: Duration::ZERO,
        off_delay: Duration::ZERO,
        priority: Priority::High,
        asset: None,
        location: None,
        workorder: WorkOrderTemplate {
            enabled: true,
            ..WorkOrderTemplate::default()
        },
    }
}

/// An activation by the condition that may raise.
pub(super) fn activation(rule: &str, secs: f64, value: f64, limit: f64) -> AlarmEvent {
    AlarmEvent {
        rule: Arc::from(rule),
        from: AlarmState::Normal,
        to: AlarmState::ActiveUnacked,
        at: t(secs),
        cause: Cause::Condition,
        trigger: Some(Trigger {
            value: Value::Float(value),
            limit: Some(Value::Float(limit)),
        }),
        activation: true,
        released: None,
        raise_work_order: true,
        chattering: false,
    }
}

/// A book with a context and a running random source.
pub(super) struct Rig {
    pub(super) book: WorkOrderBook,
    pub(super) devices: Vec<Arc<Device>>,
    pub(super) gateway: GatewayConfig,
    pub(super) random: u128,
}

impl Rig {
    pub(super) fn new() -> Rig {
        Rig {
            book: WorkOrderBook::new(&config()),
            devices: devices(),
            gateway: gateway(),
            random: 0x1234_5678_9abc_def0,
        }
    }

    pub(super) fn event(&mut self, event: &AlarmEvent, rule: &Rule) -> Vec<WoChange> {
        self.random += 1;
        let ctx = WoContext::new(&self.gateway, &self.devices);
        self.book
            .on_alarm_event(event, rule, &ctx, Vec::new(), self.random)
    }

    pub(super) fn status(
        &mut self,
        id: &str,
        update: &StatusUpdate,
        secs: f64,
    ) -> Result<Vec<WoChange>, WoError> {
        self.book.on_status(id, update, t(secs))
    }
}

/// A bare status from the CMMS: no reference, nobody, no note.
pub(super) fn update(status: WoStatus) -> StatusUpdate {
    StatusUpdate {
        status,
        cmms_ref: None,
        by: None,
        note: None,
    }
}

pub(super) fn raised(changes: &[WoChange]) -> &WorkOrder {
    match changes {
        [WoChange::Raised(wo)] => wo,
        other => panic!("expected one Raised, got {other:#?}"),
    }
}

pub(super) fn count(changes: &[WoChange], f: impl Fn(&WoChange) -> bool) -> usize {
    changes.iter().filter(|c| f(c)).count()
}
