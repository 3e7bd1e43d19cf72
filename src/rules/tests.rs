//! Engine tests on a fake clock: routing, delays through the engine,
//! deadband hover, bad quality, staleness, `expr` over a batch, operator
//! requests, snapshots, and save/restore.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::{Connection, Priority, State, WorkOrderTemplate};
use crate::reading::{BadReason, Reading};
use crate::tag::{Area, DataType, Tag};

const GOOD: Quality = Quality::Good;
const TIMEOUT: Quality = Quality::Bad(BadReason::Timeout);

fn t(secs: f64) -> Timestamp {
    Timestamp((secs * 1000.0) as u64)
}

fn device(name: &str, tags: &[(&str, DataType)]) -> Device {
    Device::new(
        name,
        Connection::Tcp {
            host: "x".into(),
            port: 502,
        },
        tags.iter()
            .enumerate()
            .map(|(i, (n, dt))| {
                let mut tag = Tag::new(*n, Area::HoldingRegister, i as u16 * 4, *dt);
                if dt.is_numeric() {
                    tag.unit = Some("degC".into());
                }
                tag
            })
            .collect(),
    )
}

fn devices() -> Vec<std::sync::Arc<Device>> {
    plain_devices()
        .into_iter()
        .map(std::sync::Arc::new)
        .collect()
}

fn plain_devices() -> Vec<Device> {
    vec![
        device(
            "pump1",
            &[
                ("temp", DataType::F32),
                ("current", DataType::F32),
                ("running", DataType::Bool),
                ("fault", DataType::Bit(3)),
            ],
        ),
        device("pump2", &[("temp", DataType::F32)]),
    ]
}

fn rule(name: &str, condition: Condition) -> Rule {
    Rule {
        name: name.into(),
        condition,
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

fn above(name: &str, tag: &str, limit: f64) -> Rule {
    rule(
        name,
        Condition::Above {
            tag: tag.into(),
            limit,
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

fn engine(rules: &[Rule]) -> Engine {
    Engine::new(rules, &devices(), &alarms()).unwrap()
}

fn float(x: f64) -> Value {
    Value::Float(x)
}

fn activations(events: &[AlarmEvent]) -> usize {
    events.iter().filter(|e| e.activation).count()
}

#[test]
fn a_value_hovering_at_the_limit_raises_one_alarm() {
    let mut r = above("hot", "pump1.temp", 80.0);
    r.deadband = 2.0;
    r.on_delay = Duration::from_secs(5);
    r.off_delay = Duration::from_secs(10);
    let mut e = engine(&[r]);
    let id = e.tag_id("pump1.temp").unwrap();
    let mut events = Vec::new();
    // Ten minutes at 1 s polls, wobbling ±1.5 around the limit after a rise.
    for s in 0..600 {
        let v = if s < 30 {
            70.0 + f64::from(s) / 3.0
        } else {
            80.0 + 1.5 * (f64::from(s) * 0.7).sin()
        };
        events.extend(e.observe(id, Some(&float(v)), &GOOD, t(f64::from(s))));
    }
    assert_eq!(activations(&events), 1, "{events:#?}");
    assert_eq!(e.alarm("hot").unwrap().state(), AlarmState::ActiveUnacked);
    // Then it really cools down: one return, after the off-delay.
    for s in 600..620 {
        events.extend(e.observe(id, Some(&float(70.0)), &GOOD, t(f64::from(s))));
    }
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].to, AlarmState::ReturnedUnacked);
    assert_eq!(events[1].at, t(610.0));
}

#[test]
fn without_deadband_or_delays_the_same_hover_chatters() {
    let mut e = engine(&[above("hot", "pump1.temp", 80.0)]);
    let id = e.tag_id("pump1.temp").unwrap();
    let mut events = Vec::new();
    for s in 0..600 {
        let v = 80.0 + 1.5 * (f64::from(s) * 0.7).sin();
        events.extend(e.observe(id, Some(&float(v)), &GOOD, t(f64::from(s))));
    }
    assert!(activations(&events) > 50);
    // Chattering: only the first two raise work orders.
    assert_eq!(events.iter().filter(|e| e.raise_work_order).count(), 2);
    assert!(e.alarm("hot").unwrap().is_chattering());
}

#[test]
fn on_delay_through_the_engine_and_tick() {
    let mut r = above("hot", "pump1.temp", 80.0);
    r.on_delay = Duration::from_secs(10);
    let mut e = engine(&[r]);
    // Above for 9 s, then back: nothing.
    assert!(
        e.observe_named("pump1.temp", Some(&float(90.0)), &GOOD, t(0.0))
            .is_empty()
    );
    assert!(e.tick(t(9.0)).is_empty());
    assert!(
        e.observe_named("pump1.temp", Some(&float(70.0)), &GOOD, t(9.5))
            .is_empty()
    );
    assert!(e.tick(t(30.0)).is_empty());
    // Above for 10 s: the tick ends the delay without a new reading.
    e.observe_named("pump1.temp", Some(&float(90.0)), &GOOD, t(40.0));
    let ev = e.tick(t(50.0));
    assert_eq!(ev.len(), 1);
    assert!(ev[0].activation && ev[0].raise_work_order);
    assert_eq!(
        ev[0].trigger,
        Some(Trigger {
            value: float(90.0),
            limit: Some(float(80.0))
        })
    );
    assert_eq!(&*ev[0].rule, "hot");
}

#[test]
fn bad_quality_never_trips_a_limit_rule() {
    let mut e = engine(&[
        above("hot", "pump1.temp", 80.0),
        rule(
            "cold",
            Condition::Below {
                tag: "pump1.temp".into(),
                limit: 10.0,
            },
        ),
    ]);
    let id = e.tag_id("pump1.temp").unwrap();
    for s in 0..100 {
        // Whatever value rides along with a bad quality.
        let junk = if s % 2 == 0 { 1e9 } else { -1e9 };
        let ev = e.observe(id, Some(&float(junk)), &TIMEOUT, t(f64::from(s)));
        assert!(ev.is_empty());
        assert!(e.observe(id, None, &TIMEOUT, t(f64::from(s))).is_empty());
    }
    // A real excursion, then the device drops out: the alarm stays.
    assert_eq!(e.observe(id, Some(&float(90.0)), &GOOD, t(100.0)).len(), 1);
    assert!(e.observe(id, None, &TIMEOUT, t(101.0)).is_empty());
    assert!(e.alarm("hot").unwrap().state().is_active());
}

#[test]
fn stale_from_bad_readings_and_from_tick() {
    let stale = rule(
        "silent",
        Condition::Stale {
            tag: "pump1.temp".into(),
            after: Duration::from_secs(30),
        },
    );
    let mut e = engine(&[stale]);
    let id = e.tag_id("pump1.temp").unwrap();
    e.observe(id, Some(&float(20.0)), &GOOD, t(0.0));
    // The device stops answering: bad readings every second.
    let mut events = Vec::new();
    for s in 1..=40 {
        events.extend(e.observe(id, None, &TIMEOUT, t(f64::from(s))));
    }
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].at, t(30.0));
    assert_eq!(
        events[0].trigger.as_ref().map(|t| t.value.clone()),
        Some(float(30.0))
    );
    // A good reading clears it.
    let ev = e.observe(id, Some(&float(20.0)), &GOOD, t(41.0));
    assert_eq!(ev[0].to, AlarmState::ReturnedUnacked);

    // Silence, with no readings at all: ticks find it.
    assert!(e.tick(t(70.0)).is_empty());
    let ev = e.tick(t(71.0));
    assert_eq!(ev.len(), 1);
    assert!(ev[0].activation);
}

#[test]
fn expr_sees_a_whole_batch_at_once() {
    let r = rule(
        "dry_run",
        Condition::Expr {
            expr: "pump1.current > 20 && !pump1.running".into(),
            tags: vec!["pump1.current".into(), "pump1.running".into()],
        },
    );
    let mut e = engine(&[r]);
    let devs = devices();
    let dev = devs[0].clone();
    let batch = |secs: f64, current: Option<f64>, running: Option<bool>| Batch {
        device: dev.clone(),
        timestamp: UNIX_EPOCH + Duration::from_secs_f64(secs),
        started: std::time::Instant::now(),
        unsynced: false,
        readings: vec![
            match current {
                Some(c) => Reading::good(1, float(c)),
                None => Reading::bad(1, BadReason::Timeout),
            },
            match running {
                Some(b) => Reading::good(2, Value::Bool(b)),
                None => Reading::bad(2, BadReason::Timeout),
            },
        ],
    };
    // Only one tag known so far: no verdict.
    let only_current = Batch {
        readings: vec![Reading::good(1, float(30.0))],
        ..batch(0.0, None, None)
    };
    assert!(e.observe_batch(&only_current, t(0.0)).is_empty());
    assert!(
        e.observe_batch(&batch(1.0, Some(5.0), Some(false)), t(1.0))
            .is_empty()
    );
    // Current rises as the pump starts, in the same poll: never true.
    assert!(
        e.observe_batch(&batch(2.0, Some(25.0), Some(true)), t(2.0))
            .is_empty()
    );
    // The pump stops but current stays: true.
    let ev = e.observe_batch(&batch(3.0, Some(25.0), Some(false)), t(3.0));
    assert_eq!(ev.len(), 1);
    assert_eq!(
        ev[0].trigger,
        Some(Trigger {
            value: Value::Bool(true),
            limit: None
        })
    );
    // The device drops out: no verdict, nothing changes.
    assert!(e.observe_batch(&batch(4.0, None, None), t(4.0)).is_empty());
    assert!(e.condition("dry_run").unwrap().is_met());
    // One tag back, the other still bad: still no verdict (a frozen value
    // must not clear the alarm any more than trip it).
    assert!(
        e.observe_batch(&batch(5.0, Some(0.0), None), t(5.0))
            .is_empty()
    );
    let ev = e.observe_batch(&batch(6.0, Some(0.0), Some(false)), t(6.0));
    assert_eq!(ev[0].to, AlarmState::ReturnedUnacked);
}

#[test]
fn equals_a_fault_bit() {
    let r = rule(
        "fault",
        Condition::Equals {
            tag: "pump1.fault".into(),
            value: State::Bool(true),
        },
    );
    let mut e = engine(&[r]);
    let id = e.device_tag("pump1", 3).unwrap();
    assert_eq!(Some(id), e.tag_id("pump1.fault"));
    assert!(
        e.observe(id, Some(&Value::Bool(false)), &GOOD, t(0.0))
            .is_empty()
    );
    let ev = e.observe(id, Some(&Value::Bool(true)), &GOOD, t(1.0));
    assert!(ev[0].activation);
    assert_eq!(e.device_tag("pump1", 4), None);
    assert_eq!(e.device_tag("nope", 0), None);
}

#[test]
fn a_reading_reaches_only_the_rules_that_watch_its_tag() {
    let mut e = engine(&[
        above("a", "pump1.temp", 10.0),
        above("b", "pump2.temp", 10.0),
        above("c", "pump1.temp", 20.0),
    ]);
    let ev = e.observe_named("pump1.temp", Some(&float(50.0)), &GOOD, t(0.0));
    let names: Vec<&str> = ev.iter().map(|e| &*e.rule).collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(e.alarm("b").unwrap().state(), AlarmState::Normal);
    assert!(
        e.observe_named("pump9.x", Some(&float(1.0)), &GOOD, t(1.0))
            .is_empty()
    );
}

#[test]
fn operator_requests_by_rule_name() {
    let mut e = engine(&[above("hot", "pump1.temp", 80.0)]);
    e.observe_named("pump1.temp", Some(&float(90.0)), &GOOD, t(0.0));
    let ev = e.ack("hot", t(1.0)).unwrap();
    assert_eq!(ev[0].to, AlarmState::ActiveAcked);
    assert!(e.ack("hot", t(2.0)).unwrap().is_empty());
    let ev = e.shelve("hot", Duration::from_secs(60), t(3.0)).unwrap();
    assert_eq!(
        ev[0].to,
        AlarmState::Shelved {
            until: t(63.0),
            active: true
        }
    );
    // The shelf ends by itself, with the condition still there.
    let ev = e.tick(t(63.0));
    assert_eq!(ev[0].to, AlarmState::ActiveUnacked);
    assert_eq!(ev[0].cause, Cause::ShelveExpired);
    e.shelve("hot", Duration::from_secs(60), t(70.0)).unwrap();
    let ev = e.unshelve("hot", t(71.0)).unwrap();
    assert_eq!(ev[0].cause, Cause::Unshelve);
    assert_eq!(
        e.ack("nope", t(72.0)),
        Err(RulesError::UnknownRule("nope".into()))
    );
    assert!(e.shelve("nope", Duration::ZERO, t(72.0)).is_err());
    assert!(e.unshelve("nope", t(72.0)).is_err());
}

#[test]
fn disabled_work_orders_are_never_raised() {
    let mut r = above("hot", "pump1.temp", 80.0);
    r.workorder.enabled = false;
    let mut e = engine(&[r]);
    let ev = e.observe_named("pump1.temp", Some(&float(90.0)), &GOOD, t(0.0));
    assert!(ev[0].activation && !ev[0].raise_work_order);
}

#[test]
fn snapshot_of_last_readings() {
    let mut e = engine(&[above("hot", "pump1.temp", 80.0)]);
    e.observe_named("pump1.temp", Some(&float(42.0)), &GOOD, t(1.0));
    e.observe_named("pump1.temp", None, &TIMEOUT, t(2.0));
    let snap = e.snapshot(&["pump1.temp", "pump2.temp", "nope.x"]);
    assert_eq!(
        snap,
        [
            TagReading {
                name: "pump1.temp".into(),
                value: Some(float(42.0)),
                quality: Some(TIMEOUT),
                unit: Some("degC".into()),
                at: Some(t(2.0)),
                good_at: Some(t(1.0)),
            },
            TagReading {
                name: "pump2.temp".into(),
                value: None,
                quality: None,
                unit: Some("degC".into()),
                at: None,
                good_at: None,
            }
        ]
    );
}

#[test]
fn construction_errors() {
    let devs = devices();
    let err = Engine::new(&[above("x", "pump1.nope", 1.0)], &devs, &alarms()).unwrap_err();
    assert_eq!(err.to_string(), "rule \"x\": unknown tag \"pump1.nope\"");
    let bad = rule(
        "x",
        Condition::Expr {
            expr: "pump1.running > 3".into(),
            tags: vec!["pump1.running".into()],
        },
    );
    let err = Engine::new(&[bad], &devs, &alarms()).unwrap_err();
    assert!(err.to_string().contains("cannot compare"), "{err}");
    let dup = [above("x", "pump1.temp", 1.0), above("x", "pump2.temp", 1.0)];
    assert_eq!(
        Engine::new(&dup, &devs, &alarms()).unwrap_err(),
        RulesError::DuplicateRule("x".into())
    );
}

/// Inputs for the save/restore test.
#[derive(Clone)]
enum Input {
    Value(&'static str, Option<f64>, f64),
    Tick(f64),
    Ack(&'static str, f64),
    Shelve(&'static str, u64, f64),
}

fn apply(e: &mut Engine, input: &Input) -> Vec<AlarmEvent> {
    match input {
        Input::Value(tag, Some(v), s) => e.observe_named(tag, Some(&float(*v)), &GOOD, t(*s)),
        Input::Value(tag, None, s) => e.observe_named(tag, None, &TIMEOUT, t(*s)),
        Input::Tick(s) => e.tick(t(*s)),
        Input::Ack(r, s) => e.ack(r, t(*s)).unwrap_or_default(),
        Input::Shelve(r, d, s) => e
            .shelve(r, Duration::from_secs(*d), t(*s))
            .unwrap_or_default(),
    }
}

#[test]
fn restore_continues_exactly_mid_delay_shelved_and_chattering() {
    let mut hot = above("hot", "pump1.temp", 80.0);
    hot.on_delay = Duration::from_secs(10);
    hot.deadband = 1.0;
    let rising = rule(
        "rising",
        Condition::Rate {
            tag: "pump2.temp".into(),
            limit: 1.0,
            per: Duration::from_secs(1),
            window: Duration::from_secs(5),
        },
    );
    let silent = rule(
        "silent",
        Condition::Stale {
            tag: "pump2.temp".into(),
            after: Duration::from_secs(10),
        },
    );
    let dry = rule(
        "dry",
        Condition::Expr {
            expr: "pump1.current > 20 && pump2.temp < 50".into(),
            tags: vec![],
        },
    );
    let rules = [hot, rising, silent, dry];
    let mut script = Vec::new();
    for i in 0..200u32 {
        let s = f64::from(i);
        let temp = 75.0 + 10.0 * (s * 0.3).sin();
        script.push(Input::Value("pump1.temp", Some(temp), s));
        let p2 = if i % 37 < 25 {
            Some(f64::from(i % 13) * 2.0)
        } else {
            None
        };
        script.push(Input::Value("pump2.temp", p2, s + 0.25));
        script.push(Input::Value(
            "pump1.current",
            Some(f64::from(i % 30)),
            s + 0.5,
        ));
        if i % 17 == 0 {
            script.push(Input::Ack("hot", s + 0.75));
        }
        if i == 50 || i == 120 {
            script.push(Input::Shelve("hot", 30, s + 0.8));
            script.push(Input::Shelve("dry", 45, s + 0.8));
        }
        script.push(Input::Tick(s + 0.9));
    }
    let mut straight = engine(&rules);
    let reference: Vec<Vec<AlarmEvent>> = script.iter().map(|i| apply(&mut straight, i)).collect();
    let all: Vec<&AlarmEvent> = reference.iter().flatten().collect();
    assert!(all.iter().any(|e| e.chattering), "the script chatters");
    assert!(all.iter().any(|e| e.to.is_shelved()), "the script shelves");
    for rule in ["hot", "rising", "silent", "dry"] {
        assert!(all.iter().any(|e| &*e.rule == rule), "{rule} acts");
    }
    for split in (0..script.len()).step_by(7) {
        let mut first = engine(&rules);
        for i in &script[..split] {
            apply(&mut first, i);
        }
        let json = serde_json::to_string(&first.save()).unwrap();
        let saved: SavedEngine = serde_json::from_str(&json).unwrap();
        let mut second = engine(&rules);
        let report = second.restore(&saved);
        assert_eq!(report.restored, 4);
        for (k, i) in script.iter().enumerate().skip(split) {
            assert_eq!(
                apply(&mut second, i),
                reference[k],
                "split {split}, step {k}"
            );
        }
    }
}

#[test]
fn restore_after_a_reload_matches_rules_by_name() {
    let mut e = engine(&[
        above("hot", "pump1.temp", 80.0),
        above("old", "pump2.temp", 1.0),
    ]);
    e.observe_named("pump1.temp", Some(&float(90.0)), &GOOD, t(0.0));
    let saved = e.save();
    // "hot" now watches the rate; "old" is gone.
    let hot = rule(
        "hot",
        Condition::Rate {
            tag: "pump1.temp".into(),
            limit: 1.0,
            per: Duration::from_secs(1),
            window: Duration::from_secs(5),
        },
    );
    let mut f = engine(&[hot, above("new", "pump2.temp", 1.0)]);
    let report = f.restore(&saved);
    assert_eq!(
        report,
        RestoreReport {
            restored: 1,
            conditions_reset: vec!["hot".into()],
            unknown_rules: vec!["old".into()],
            version_mismatch: false,
        }
    );
    assert_eq!(f.alarm("hot").unwrap().state(), AlarmState::ActiveUnacked);
    assert_eq!(f.reading("pump1.temp").unwrap().value, Some(float(90.0)));
    let mut other = saved.clone();
    other.version += 1;
    assert!(engine(&[]).restore(&other).version_mismatch);
}

#[test]
fn the_engine_can_move_to_its_task() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Engine>();
    send_sync::<AlarmEvent>();
}
