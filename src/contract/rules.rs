//! The JSON payloads of the rules' topics (`docs/mqtt.md`), each with a
//! JSON Schema in `docs/schemas/`:
//!
//! | topic | payload | schema |
//! |---|---|---|
//! | `.../workorders/{id}` | [`work_order`] | `workorder.json` (`fieldgate.workorder/1`) |
//! | `.../alarms/{rule}` | [`alarm`], [`alarm_state`] | `alarm.json` (`fieldgate.alarm/1`) |
//! | `.../meters/{meter}` | [`meter`] | `meter.json` (`fieldgate.meter/1`) |
//!
//! These are rare messages, so they go through serde structs rather than
//! the hand-written writer of the data topics. Times are RFC 3339 UTC with
//! milliseconds (`2026-11-21T06:38:25.305Z`), like every other payload;
//! values are JSON numbers, booleans or strings, `null` when absent or not
//! finite. Optional fields are written as `null` rather than left out, so
//! a consumer sees every field of the version it reads. Every message
//! carries the topic's `seq` (from the caller's per-topic sequencer, as
//! for the data topics) and beside it `store`, the store's identity (one
//! `(store, topic, seq)` names one message), and the forwarder may add `"hist":true` to one
//! that waited in the outbox; the schemas allow both.

use std::collections::BTreeMap;

use serde::Serialize;

use super::json::{Json, timestamp};
use crate::clock::WallMap;
use crate::config::{Condition, Rule};
use crate::rules::Timestamp;
use crate::rules::alarm::{Alarm, AlarmEvent, AlarmState, Cause};
use crate::rules::condition::Trigger;
use crate::rules::meter::{Measure, MeterReport};
use crate::rules::workorder::{SnapshotEntry, WoTrigger, WorkOrder};

/// `schema` of the work-order message.
pub const WORKORDER_SCHEMA: &str = "fieldgate.workorder/1";
/// `schema` of the alarm message.
pub const ALARM_SCHEMA: &str = "fieldgate.alarm/1";
/// `schema` of the meter message.
pub const METER_SCHEMA: &str = "fieldgate.meter/1";

/// A payload could not be encoded (cannot happen with these types; the
/// error is passed on rather than hidden behind an empty message, which
/// would clear a retained topic).
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the {what} message: {source}")]
pub struct PayloadError {
    what: &'static str,
    #[source]
    source: serde_json::Error,
}

fn encode(what: &'static str, message: &impl Serialize) -> Result<Vec<u8>, PayloadError> {
    serde_json::to_vec(message).map_err(|source| PayloadError { what, source })
}

/// RFC 3339 UTC with milliseconds (clamped to the end of year 9999, the
/// format's limit: a shelf "forever" ends there).
pub fn rfc3339(at: Timestamp) -> String {
    timestamp(at.clamped().to_system_time())
}

/// A moment of the gateway's timeline (every moment the rules keep), as
/// wall-clock RFC 3339 through `wall`, the map taken as the message is
/// written.
fn stamp(wall: &WallMap, at: Timestamp) -> String {
    rfc3339(wall.wall(at))
}

/// An `f64` as JSON, `null` if not finite.
fn number(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

#[derive(Serialize)]
struct WorkOrderMessage<'a> {
    schema: &'static str,
    store: &'a str,
    seq: u64,
    id: &'a str,
    key: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    status: &'static str,
    priority: &'static str,
    created_at: String,
    updated_at: String,
    site: &'a str,
    gateway: &'a str,
    asset: &'a str,
    location: Option<&'a str>,
    title: &'a str,
    description: &'a str,
    problem_code: Option<&'a str>,
    procedure: Option<&'a str>,
    trigger: TriggerMessage<'a>,
    readings: BTreeMap<&'a str, ReadingMessage<'a>>,
    occurrences: u64,
    last: LastMessage<'a>,
    cmms: Option<CmmsMessage<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum TriggerMessage<'a> {
    Alarm {
        rule: &'a str,
        tag: Option<&'a str>,
        value: Json<'a>,
        limit: Json<'a>,
        unit: Option<&'a str>,
        condition: &'a str,
        since: String,
    },
    Meter {
        meter: &'a str,
        tag: &'a str,
        kind: &'static str,
        value: Option<f64>,
        threshold: Option<f64>,
        unit: &'static str,
        since: String,
    },
}

#[derive(Serialize)]
struct ReadingMessage<'a> {
    v: Json<'a>,
    q: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    u: Option<&'a str>,
    ts: Option<String>,
}

#[derive(Serialize)]
struct LastMessage<'a> {
    value: Json<'a>,
    at: String,
}

#[derive(Serialize)]
struct CmmsMessage<'a> {
    #[serde(rename = "ref")]
    reference: Option<&'a str>,
    status: &'static str,
    status_at: String,
    by: Option<&'a str>,
    note: Option<&'a str>,
}

/// The work order (`fieldgate.workorder/1`), retained on
/// `.../workorders/{id}` while open; `seq` is the topic's next sequence
/// number in the store `store` (its identity); `wall` turns the work
/// order's moments into wall-clock time.
pub fn work_order(
    wo: &WorkOrder,
    seq: u64,
    store: &str,
    wall: &WallMap,
) -> Result<Vec<u8>, PayloadError> {
    let trigger = match &wo.trigger {
        WoTrigger::Alarm {
            rule,
            tag,
            value,
            limit,
            unit,
            condition,
            since,
        } => TriggerMessage::Alarm {
            rule,
            tag: tag.as_deref(),
            value: Json(value.as_ref()),
            limit: Json(limit.as_ref()),
            unit: unit.as_deref(),
            condition,
            since: stamp(wall, *since),
        },
        WoTrigger::Meter {
            meter,
            tag,
            kind,
            value,
            threshold,
            since,
        } => TriggerMessage::Meter {
            meter,
            tag,
            kind: kind.as_str(),
            value: number(*value),
            threshold: number(*threshold),
            unit: kind.unit(),
            since: stamp(wall, *since),
        },
    };
    let readings = wo
        .readings
        .iter()
        .map(|r: &SnapshotEntry| {
            (
                r.tag.as_str(),
                ReadingMessage {
                    v: Json(r.value.as_ref()),
                    q: r.quality.as_deref(),
                    u: r.unit.as_deref(),
                    ts: r.at.map(|t| stamp(wall, t)),
                },
            )
        })
        .collect();
    let cmms = wo.last_report().map(|r| CmmsMessage {
        reference: wo.cmms_ref.as_deref(),
        status: r.status.as_str(),
        status_at: stamp(wall, r.at),
        by: r.by.as_deref(),
        note: r.note.as_deref(),
    });
    let message = WorkOrderMessage {
        schema: WORKORDER_SCHEMA,
        store,
        seq,
        id: &wo.id,
        key: &wo.key,
        kind: wo.kind.as_str(),
        status: wo.status.as_str(),
        priority: wo.priority.as_str(),
        created_at: stamp(wall, wo.created_at),
        updated_at: stamp(wall, wo.updated_at),
        site: &wo.site,
        gateway: &wo.gateway,
        asset: &wo.asset,
        location: wo.location.as_deref(),
        title: &wo.title,
        description: &wo.description,
        problem_code: wo.problem_code.as_deref(),
        procedure: wo.procedure.as_deref(),
        trigger,
        readings,
        occurrences: wo.occurrences,
        last: LastMessage {
            value: Json(wo.last.value.as_ref()),
            at: stamp(wall, wo.last.at),
        },
        cmms,
    };
    encode("work order", &message)
}

#[derive(Serialize)]
struct AlarmMessage<'a> {
    schema: &'static str,
    store: &'a str,
    seq: u64,
    rule: &'a str,
    state: &'static str,
    active: bool,
    acked: bool,
    shelved_until: Option<String>,
    chattering: bool,
    priority: &'static str,
    tag: Option<&'a str>,
    value: Json<'a>,
    limit: Json<'a>,
    since: String,
    ts: String,
    cause: Option<Cause>,
}

/// The message without its `seq`, `store` and `ts` (set by the caller).
fn alarm_message<'a>(
    rule: &'a Rule,
    state: AlarmState,
    chattering: bool,
    trigger: Option<&'a Trigger>,
    since: Timestamp,
    cause: Option<Cause>,
    wall: &WallMap,
) -> AlarmMessage<'a> {
    let tag = match &rule.condition {
        Condition::Above { tag, .. }
        | Condition::Below { tag, .. }
        | Condition::Outside { tag, .. }
        | Condition::Rate { tag, .. }
        | Condition::Stale { tag, .. }
        | Condition::Equals { tag, .. } => Some(tag.as_str()),
        Condition::Expr { .. } => None,
    };
    AlarmMessage {
        schema: ALARM_SCHEMA,
        store: "",
        seq: 0,
        rule: &rule.name,
        state: state.as_str(),
        active: state.is_active(),
        acked: !state.is_unacked(),
        shelved_until: match state {
            AlarmState::Shelved { until, .. } => Some(rfc3339(wall.wall(until).clamped())),
            _ => None,
        },
        chattering,
        priority: rule.priority.as_str(),
        tag,
        value: Json(trigger.map(|t| &t.value)),
        limit: Json(trigger.and_then(|t| t.limit.as_ref())),
        since: stamp(wall, since),
        ts: String::new(),
        cause,
    }
}

/// The alarm state after `event` (`fieldgate.alarm/1`), retained on
/// `.../alarms/{rule}`. `since` is when the alarm entered its state:
/// [`Alarm::changed_at`], which is `event.at` except for a
/// `chatter_cleared` event (the state did not change). `seq` is the
/// topic's next sequence number in the store `store`; `wall` turns
/// moments into wall-clock time.
pub fn alarm(
    event: &AlarmEvent,
    rule: &Rule,
    since: Timestamp,
    seq: u64,
    store: &str,
    wall: &WallMap,
) -> Result<Vec<u8>, PayloadError> {
    let mut message = alarm_message(
        rule,
        event.to,
        event.chattering,
        event.trigger.as_ref(),
        since,
        Some(event.cause),
        wall,
    );
    message.seq = seq;
    message.store = store;
    message.ts = stamp(wall, event.at);
    encode("alarm", &message)
}

/// An alarm's current state without an event (`cause` is `null`), e.g.
/// to publish every alarm at start-up. `trigger` is the condition's
/// ([`ConditionState::trigger`](super::ConditionState::trigger)).
pub fn alarm_state(
    alarm: &Alarm,
    rule: &Rule,
    trigger: Option<&Trigger>,
    at: Timestamp,
    seq: u64,
    store: &str,
    wall: &WallMap,
) -> Result<Vec<u8>, PayloadError> {
    let mut message = alarm_message(
        rule,
        alarm.state(),
        alarm.is_chattering(),
        trigger,
        alarm.changed_at().unwrap_or(at),
        None,
        wall,
    );
    message.seq = seq;
    message.store = store;
    message.ts = stamp(wall, at);
    encode("alarm", &message)
}

#[derive(Serialize)]
struct MeterMessage<'a> {
    schema: &'static str,
    store: &'a str,
    seq: u64,
    meter: &'a str,
    tag: &'a str,
    kind: &'static str,
    value: Amount,
    unit: &'static str,
    next_due: Amount,
    due: bool,
    ts: String,
}

/// A meter amount: whole counts, or hours to 4 decimals (0.36 s), so
/// `500.0027777…` reads `500.0028`.
#[derive(Serialize)]
#[serde(untagged)]
enum Amount {
    Count(u64),
    Hours(f64),
}

impl Amount {
    fn of(measure: Measure, x: f64) -> Amount {
        match measure {
            // Counts are whole numbers below 2^64 (`as` saturates).
            Measure::Count => Amount::Count(x as u64),
            Measure::Runtime if x.is_finite() => Amount::Hours((x * 10_000.0).round() / 10_000.0),
            Measure::Runtime => Amount::Hours(0.0),
        }
    }
}

/// The meter message (`fieldgate.meter/1`), retained on
/// `.../meters/{meter}`. `seq` is the topic's next sequence number in
/// the store `store`; `wall` turns the report's moment into wall-clock
/// time.
pub fn meter(
    report: &MeterReport,
    seq: u64,
    store: &str,
    wall: &WallMap,
) -> Result<Vec<u8>, PayloadError> {
    let message = MeterMessage {
        schema: METER_SCHEMA,
        store,
        seq,
        meter: &report.meter,
        tag: &report.tag,
        kind: report.measure.as_str(),
        value: Amount::of(report.measure, report.value),
        unit: report.measure.unit(),
        next_due: Amount::of(report.measure, report.next_due),
        due: report.due,
        ts: stamp(wall, report.at),
    };
    encode("meter", &message)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;

    use super::*;

    /// A store identity, as the store makes them.
    const STORE: &str = "01KBX3J8W5R2Q9T7M4N6P0ZC1D";
    use crate::config::{
        AlarmConfig, Connection, Device, GatewayConfig, Meter, MeterKind, Priority,
        WorkOrderConfig, WorkOrderTemplate,
    };
    use crate::reading::{BadReason, Quality};
    use crate::rules::meter::{MeterChange, MeterState};
    use crate::rules::workorder::{SnapshotEntry, WoChange, WoContext, WorkOrderBook};
    use crate::rules::{Engine, TagReading};
    use crate::tag::{Area, DataType, Tag, Value};

    fn t(secs: f64) -> Timestamp {
        Timestamp(1_763_700_000_000 + (secs * 1000.0) as u64)
    }

    fn validator(name: &str) -> jsonschema::Validator {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs/schemas")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    /// Parses a payload and checks it against `schema`, with every error.
    fn check(schema: &jsonschema::Validator, payload: &[u8]) -> serde_json::Value {
        let value: serde_json::Value = serde_json::from_slice(payload).unwrap();
        let errors: Vec<String> = schema
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{errors:#?}\n{value:#}");
        value
    }

    fn devices() -> Vec<std::sync::Arc<Device>> {
        plain_devices()
            .into_iter()
            .map(std::sync::Arc::new)
            .collect()
    }

    fn plain_devices() -> Vec<Device> {
        let mut temp = Tag::new("temp", Area::HoldingRegister, 0, DataType::F32);
        temp.unit = Some("degC".into());
        let mut flow = Tag::new("flow", Area::HoldingRegister, 2, DataType::F32);
        flow.unit = Some("m3/h".into());
        let running = Tag::new("running", Area::Coil, 0, DataType::Bool);
        let strokes = Tag::new("stroke", Area::Coil, 1, DataType::Bool);
        let mut pump1 = Device::new(
            "pump1",
            Connection::Tcp {
                host: "x".into(),
                port: 502,
            },
            vec![temp, flow, running, strokes],
        );
        pump1.asset = Some("P-101".into());
        vec![pump1]
    }

    fn gateway() -> GatewayConfig {
        GatewayConfig {
            id: "gw1".into(),
            site: "plant-a".into(),
            location: None,
            data_dir: "/tmp".into(),
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    fn rule(name: &str, condition: Condition) -> Rule {
        Rule {
            name: name.into(),
            condition,
            deadband: 0.0,
            on_delay: Duration::ZERO,
            off_delay: Duration::ZERO,
            priority: Priority::Medium,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate {
                enabled: true,
                snapshot: vec![
                    "pump1.temp".into(),
                    "pump1.flow".into(),
                    "pump1.running".into(),
                ],
                ..WorkOrderTemplate::default()
            },
        }
    }

    fn hot() -> Rule {
        rule(
            "pump1_hot",
            Condition::Above {
                tag: "pump1.temp".into(),
                limit: 80.0,
            },
        )
    }

    fn jam() -> Rule {
        rule(
            "pump1_jam",
            Condition::Expr {
                expr: "pump1.flow < 1.0 && pump1.running".into(),
                tags: vec!["pump1.flow".into(), "pump1.running".into()],
            },
        )
    }

    fn alarms() -> AlarmConfig {
        AlarmConfig {
            chatter_count: 3,
            chatter_window: Duration::from_secs(60),
            chatter_quiet: Duration::from_secs(300),
        }
    }

    #[test]
    fn work_order_payloads_match_the_schema() {
        let schema = validator("workorder.json");
        let devices = devices();
        let gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        let (hot, jam) = (hot(), jam());
        let mut engine = Engine::new(&[hot.clone(), jam.clone()], &devices, &alarms()).unwrap();
        let mut book = WorkOrderBook::new(&WorkOrderConfig {
            flood_limit: 2,
            flood_window: Duration::from_secs(600),
        });
        let mut published = Vec::new();
        let snapshot = |engine: &Engine, rule: &Rule| -> Vec<SnapshotEntry> {
            engine
                .snapshot(&rule.workorder.snapshot)
                .into_iter()
                .map(SnapshotEntry::from)
                .collect()
        };
        // Flow read bad, running never read when hot raises; then the jam.
        let e1 = engine.observe_named(
            "pump1.flow",
            None,
            &Quality::Bad(BadReason::Timeout),
            t(0.0),
        );
        assert!(e1.is_empty());
        let e2 = engine.observe_named(
            "pump1.temp",
            Some(&Value::Float(81.5)),
            &Quality::Good,
            t(1.0),
        );
        let hot_snapshot = snapshot(&engine, &hot);
        assert_eq!(hot_snapshot.len(), 3);
        published.extend(book.on_alarm_event(&e2[0], &hot, &ctx, hot_snapshot, 42));
        let mut events = engine.observe_named(
            "pump1.flow",
            Some(&Value::Float(0.25)),
            &Quality::Good,
            t(2.0),
        );
        events.extend(engine.observe_named(
            "pump1.running",
            Some(&Value::Bool(true)),
            &Quality::Good,
            t(3.0),
        ));
        assert_eq!(events.len(), 1);
        let jam_snapshot = snapshot(&engine, &jam);
        published.extend(book.on_alarm_event(&events[0], &jam, &ctx, jam_snapshot, 42));
        // The flood guard (limit 2): a third rule trips it.
        let third = rule(
            "pump1_cold",
            Condition::Below {
                tag: "pump1.temp".into(),
                limit: 5.0,
            },
        );
        let mut ev = e2[0].clone();
        ev.rule = Arc::from("pump1_cold");
        ev.at = t(4.0);
        published.extend(book.on_alarm_event(&ev, &third, &ctx, Vec::new(), 43));
        // Another occurrence of the hot alarm.
        let mut again = e2[0].clone();
        again.at = t(30.0);
        published.extend(book.on_alarm_event(&again, &hot, &ctx, Vec::new(), 44));

        // A preventive one from a meter.
        let meter = Meter {
            name: "pump1_starts".into(),
            tag: "pump1.stroke".into(),
            kind: MeterKind::Count { every: 2 },
            priority: Priority::Low,
            asset: None,
            location: Some("Pit 3".into()),
            workorder: WorkOrderTemplate {
                enabled: true,
                ..WorkOrderTemplate::default()
            },
        };
        let mut state = MeterState::new(&meter);
        for i in 0..6 {
            for c in state.observe(
                Some(&Value::Bool(i % 2 == 1)),
                &Quality::Good,
                t(40.0 + f64::from(i)),
            ) {
                if let MeterChange::Due(due) = c {
                    published.extend(book.on_meter_due(&due, &meter, &ctx, Vec::new(), 45));
                }
            }
        }

        let kinds: Vec<&str> = published
            .iter()
            .map(|c| match c {
                WoChange::Raised(_) => "raised",
                WoChange::Updated(_) => "updated",
                WoChange::FloodRaised(_) => "flood",
                WoChange::Held { .. } => "held",
                WoChange::Cleared(_) => "cleared",
            })
            .collect();
        assert_eq!(kinds, ["raised", "raised", "flood", "updated", "raised"]);

        // CMMS statuses: accepted with a reference, then closed.
        let hot_id = published[0].work_order().unwrap().id.clone();
        published.extend(
            book.on_status(
                &hot_id,
                &crate::rules::StatusUpdate {
                    status: crate::rules::WoStatus::Accepted,
                    cmms_ref: Some("CMMS-9".into()),
                    by: Some("Bo".into()),
                    note: None,
                },
                t(50.0),
            )
            .unwrap(),
        );
        let closed = crate::rules::StatusUpdate {
            status: crate::rules::WoStatus::Closed,
            cmms_ref: None,
            by: None,
            note: None,
        };
        published.extend(book.on_status(&hot_id, &closed, t(60.0)).unwrap());

        let mut seq = 0;
        let mut seen = Vec::new();
        for change in &published {
            let Some(wo) = change.work_order() else {
                continue;
            };
            seq += 1;
            let payload = work_order(wo, seq, STORE, &WallMap::IDENTITY).unwrap();
            seen.push(check(&schema, &payload));
            // With the forwarder's "hist" too.
            let mut hist = b"{\"hist\":true,".to_vec();
            hist.extend_from_slice(&payload[1..]);
            check(&schema, &hist);
        }

        let hot_msg = &seen[0];
        assert_eq!(hot_msg["schema"], "fieldgate.workorder/1");
        assert_eq!(hot_msg["seq"], 1);
        assert_eq!(hot_msg["type"], "corrective");
        assert_eq!(hot_msg["status"], "open");
        assert_eq!(
            hot_msg["key"],
            format!(
                "plant-a/gw1/pump1_hot/P-101/1-{}",
                hot_msg["id"].as_str().unwrap()
            )
        );
        assert_eq!(hot_msg["created_at"], "2025-11-21T04:40:01.000Z");
        assert_eq!(hot_msg["location"], serde_json::Value::Null);
        assert_eq!(hot_msg["cmms"], serde_json::Value::Null);
        assert_eq!(
            hot_msg["trigger"],
            json!({"rule": "pump1_hot", "tag": "pump1.temp", "value": 81.5, "limit": 80.0,
                   "unit": "degC", "condition": "above", "since": "2025-11-21T04:40:01.000Z"})
        );
        assert_eq!(
            hot_msg["readings"],
            json!({
                "pump1.temp": {"v": 81.5, "q": "good", "u": "degC", "ts": "2025-11-21T04:40:01.000Z"},
                "pump1.flow": {"v": null, "q": "bad:timeout", "u": "m3/h", "ts": "2025-11-21T04:40:00.000Z"},
                "pump1.running": {"v": null, "q": null, "ts": null}
            })
        );
        let jam_msg = &seen[1];
        assert_eq!(jam_msg["trigger"]["tag"], serde_json::Value::Null);
        assert_eq!(jam_msg["trigger"]["value"], true);
        assert_eq!(jam_msg["trigger"]["limit"], serde_json::Value::Null);
        assert_eq!(jam_msg["trigger"]["condition"], "expr");
        let flood_msg = &seen[2];
        assert_eq!(
            flood_msg["title"],
            "Alarm flood: 3 work orders in 10 minutes"
        );
        assert_eq!(flood_msg["trigger"]["condition"], "flood");
        assert_eq!(flood_msg["asset"], "gw1");
        let update = &seen[3];
        assert_eq!(update["occurrences"], 2);
        assert_eq!(
            update["last"],
            json!({"value": 81.5, "at": "2025-11-21T04:40:30.000Z"})
        );
        let preventive = &seen[4];
        assert_eq!(preventive["type"], "preventive");
        assert_eq!(preventive["location"], "Pit 3");
        assert_eq!(
            preventive["trigger"],
            json!({"meter": "pump1_starts", "tag": "pump1.stroke", "kind": "count", "value": 2.0,
                   "threshold": 2.0, "unit": "count", "since": "2025-11-21T04:40:43.000Z"})
        );
        let accepted = &seen[5];
        assert_eq!(accepted["status"], "accepted");
        assert_eq!(
            accepted["cmms"],
            json!({"ref": "CMMS-9", "status": "accepted", "status_at": "2025-11-21T04:40:50.000Z",
                   "by": "Bo", "note": null})
        );
        let closed = &seen[6];
        assert_eq!(closed["status"], "closed");
        assert_eq!(closed["cmms"]["ref"], "CMMS-9");
        assert!(matches!(published.last(), Some(WoChange::Cleared(_))));
    }

    #[test]
    fn the_work_order_schema_is_strict() {
        let schema = validator("workorder.json");
        let devices = devices();
        let gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        let mut book = WorkOrderBook::new(&WorkOrderConfig {
            flood_limit: 10,
            flood_window: Duration::from_secs(600),
        });
        let mut engine = Engine::new(&[hot()], &devices, &alarms()).unwrap();
        let ev = engine.observe_named(
            "pump1.temp",
            Some(&Value::Float(90.0)),
            &Quality::Good,
            t(0.0),
        );
        let ch = book.on_alarm_event(&ev[0], &hot(), &ctx, Vec::new(), 1);
        let good = check(
            &schema,
            &work_order(ch[0].work_order().unwrap(), 1, STORE, &WallMap::IDENTITY).unwrap(),
        );
        let broken = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            f(&mut v);
            !schema.is_valid(&v)
        };
        assert!(broken(&|v| v["extra"] = json!(1)));
        assert!(
            broken(&|v| v["type"] = json!("preventive")),
            "a preventive needs a meter trigger"
        );
        assert!(broken(&|v| v["id"] = json!("not-a-ulid")));
        assert!(broken(&|v| v["seq"] = json!(0)));
        assert!(broken(&|v| v["status"] = json!("done")));
        assert!(broken(&|v| v["created_at"] = json!("2025-11-21T04:40:00Z")));
        assert!(broken(
            &|v| v["readings"] = json!({"a.b": {"v": 1, "q": "meh", "ts": null}})
        ));
        assert!(broken(&|v| {
            v.as_object_mut().map(|o| o.remove("occurrences"));
        }));
    }

    #[test]
    fn alarm_payloads_match_the_schema() {
        let schema = validator("alarm.json");
        let devices = devices();
        let (hot, jam) = (hot(), jam());
        let mut engine = Engine::new(&[hot.clone(), jam.clone()], &devices, &alarms()).unwrap();
        let mut events = Vec::new();
        events.extend(engine.observe_named(
            "pump1.temp",
            Some(&Value::Float(85.0)),
            &Quality::Good,
            t(0.0),
        ));
        events.extend(engine.ack("pump1_hot", t(1.0)).unwrap());
        events.extend(engine.shelve("pump1_hot", Duration::MAX, t(2.0)).unwrap());
        events.extend(engine.unshelve("pump1_hot", t(3.0)).unwrap());
        events.extend(engine.observe_named(
            "pump1.temp",
            Some(&Value::Float(20.0)),
            &Quality::Good,
            t(4.0),
        ));
        events.extend(
            engine
                .shelve("pump1_hot", Duration::from_secs(60), t(5.0))
                .unwrap(),
        );
        events.extend(engine.tick(t(65.0)));
        events.extend(engine.observe_named(
            "pump1.flow",
            Some(&Value::Float(0.0)),
            &Quality::Good,
            t(70.0),
        ));
        events.extend(engine.observe_named(
            "pump1.running",
            Some(&Value::Bool(true)),
            &Quality::Good,
            t(71.0),
        ));
        let mut messages = Vec::new();
        for (i, event) in events.iter().enumerate() {
            let rule = if &*event.rule == "pump1_hot" {
                &hot
            } else {
                &jam
            };
            // As the caller would, right after the event: the state's start.
            messages.push(check(
                &schema,
                &alarm(
                    event,
                    rule,
                    event.at,
                    i as u64 + 1,
                    STORE,
                    &WallMap::IDENTITY,
                )
                .unwrap(),
            ));
        }
        let states: Vec<&str> = messages
            .iter()
            .map(|m| m["state"].as_str().unwrap_or("?"))
            .collect();
        assert_eq!(
            states,
            [
                "active_unacked",
                "active_acked",
                "shelved",
                "active_unacked",
                "returned_unacked",
                "shelved",
                "normal",
                "active_unacked"
            ]
        );
        assert_eq!(
            messages[0],
            json!({"schema": "fieldgate.alarm/1", "store": STORE, "seq": 1, "rule": "pump1_hot",
                   "state": "active_unacked", "active": true, "acked": false,
                   "shelved_until": null, "chattering": false, "priority": "medium",
                   "tag": "pump1.temp", "value": 85.0, "limit": 80.0,
                   "since": "2025-11-21T04:40:00.000Z", "ts": "2025-11-21T04:40:00.000Z",
                   "cause": "condition"})
        );
        // Shelved "forever": the end of year 9999, the format's limit.
        assert_eq!(messages[2]["shelved_until"], "9999-12-31T23:59:59.999Z");
        assert_eq!(messages[2]["cause"], "shelve");
        assert_eq!(messages[6]["cause"], "shelve_expired");
        assert_eq!(messages[7]["tag"], serde_json::Value::Null);
        assert_eq!(messages[7]["value"], true);

        // A state without an event, e.g. at start-up.
        let a = engine.alarm("pump1_hot").unwrap();
        let state = check(
            &schema,
            &alarm_state(
                a,
                &hot,
                engine.condition("pump1_hot").and_then(|c| c.trigger()),
                t(100.0),
                9,
                STORE,
                &WallMap::IDENTITY,
            )
            .unwrap(),
        );
        assert_eq!(state["cause"], serde_json::Value::Null);
        assert_eq!(state["since"], "2025-11-21T04:41:05.000Z");
        let fresh = Alarm::new("pump1_hot", crate::rules::AlarmTiming::of(&hot, &alarms()));
        let state = check(
            &schema,
            &alarm_state(&fresh, &hot, None, t(100.0), 1, STORE, &WallMap::IDENTITY).unwrap(),
        );
        assert_eq!(
            (state["state"].as_str(), state["acked"].as_bool()),
            (Some("normal"), Some(true))
        );
        assert_eq!(state["value"], serde_json::Value::Null);

        let mut bad = messages[0].clone();
        bad["shelved_until"] = json!("2025-11-21T04:40:00.000Z");
        assert!(!schema.is_valid(&bad), "shelved_until only when shelved");
    }

    #[test]
    fn meter_payloads_match_the_schema() {
        let schema = validator("meter.json");
        let report = MeterReport {
            meter: "pump1_hours".into(),
            tag: "pump1.running".into(),
            measure: Measure::Runtime,
            value: 500.002_777_777_7,
            next_due: 500.0,
            due: true,
            at: t(0.0),
        };
        let v = check(
            &schema,
            &meter(&report, 3, STORE, &WallMap::IDENTITY).unwrap(),
        );
        assert_eq!(
            v,
            json!({"schema": "fieldgate.meter/1", "store": STORE, "seq": 3, "meter": "pump1_hours",
                   "tag": "pump1.running", "kind": "runtime", "value": 500.0028, "unit": "h",
                   "next_due": 500.0, "due": true, "ts": "2025-11-21T04:40:00.000Z"})
        );
        let count = MeterReport {
            measure: Measure::Count,
            value: 1234.0,
            next_due: 2000.0,
            due: false,
            ..report
        };
        let v = check(
            &schema,
            &meter(&count, 1, STORE, &WallMap::IDENTITY).unwrap(),
        );
        assert_eq!(
            (v["value"].as_u64(), v["unit"].as_str()),
            (Some(1234), Some("count"))
        );
        assert_eq!(v["next_due"].as_u64(), Some(2000));
        let mut bad = v.clone();
        bad["unit"] = json!("h");
        assert!(!schema.is_valid(&bad), "a count is not in hours");

        // From a real meter.
        let mut state = MeterState::new(&runtime_meter());
        state.observe(Some(&Value::Bool(true)), &Quality::Good, t(0.0));
        state.observe(Some(&Value::Bool(true)), &Quality::Good, t(90.0));
        let v = check(
            &schema,
            &meter(&state.report(t(90.0)), 2, STORE, &WallMap::IDENTITY).unwrap(),
        );
        assert_eq!(v["value"], 0.025);
        assert_eq!(v["next_due"], 1.0);
    }

    #[test]
    fn snapshot_entries_keep_values_only_for_good_readings() {
        let r = TagReading {
            name: "pump1.temp".into(),
            value: Some(Value::Float(50.0)),
            quality: Some(Quality::Bad(BadReason::Timeout)),
            unit: None,
            at: Some(t(5.0)),
            good_at: Some(t(1.0)),
        };
        let e = SnapshotEntry::from(r.clone());
        assert_eq!((e.value, e.quality.as_deref()), (None, Some("bad:timeout")));
        let good = TagReading {
            quality: Some(Quality::Good),
            at: Some(t(1.0)),
            ..r
        };
        assert_eq!(SnapshotEntry::from(good).value, Some(Value::Float(50.0)));
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Timestamp(u64::MAX)), "9999-12-31T23:59:59.999Z");
    }

    /// A runtime meter of `pump1.running`, due every hour.
    fn runtime_meter() -> Meter {
        Meter {
            name: "m".into(),
            tag: "pump1.running".into(),
            kind: MeterKind::Runtime {
                every: Duration::from_secs(3600),
            },
            priority: Priority::Low,
            asset: None,
            location: None,
            workorder: WorkOrderTemplate::default(),
        }
    }

    #[test]
    fn moments_are_written_as_the_wall_clock_reads_them_now() {
        // The wall clock stepped 8 days ahead of the timeline: a meter
        // reading taken 90 s into the timeline reads 8 days later, as the
        // clock says now, and the timeline itself never moved.
        let mut state = MeterState::new(&runtime_meter());
        state.observe(Some(&Value::Bool(true)), &Quality::Good, t(0.0));
        let eight_days = 8 * 86_400_000;
        let wall = WallMap {
            at: t(100.0),
            offset_ms: eight_days as i64,
        };
        let v: serde_json::Value =
            serde_json::from_slice(&meter(&state.report(t(90.0)), 1, STORE, &wall).unwrap())
                .unwrap();
        assert_eq!(
            v["ts"],
            rfc3339(Timestamp(t(90.0).as_millis() + eight_days))
        );
    }
}
