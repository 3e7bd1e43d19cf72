//! Properties of the rules engine on random input.
//!
//! * Deadband: for any random walk of a value, an `above` rule with
//!   deadband D activates exactly once per *strict* traversal of the band
//!   [limit − D, limit] (from below limit − D to above limit), hence never
//!   more often than the walk crosses the band (from ≤ limit − D to above
//!   limit), and at least once if it crosses at all. With on- and
//!   off-delays it activates no more often than that.
//! * Robustness: any sequence of readings (good, bad, NaN, text), batches,
//!   acks, shelves, unshelves and ticks, with the clock sometimes going
//!   back, never panics.
//! * Work-order requests: an event asks for a work order
//!   (`raise_work_order`) only as an activation or as the release of one:
//!   never both, and a release (`released`) only when the chattering flag
//!   clears (`ChatterCleared`) with the alarm active and not shelved, and
//!   only for an activation of that same fault that chattering refused
//!   (unshelved, not returned since, not released yet), at the time it
//!   happened. Conversely such a refused activation still active when
//!   the flag clears is always released: nothing is lost, nothing doubled.
//! * Persistence: saving at any point, through JSON, and restoring into a
//!   fresh engine gives the same future events as not restarting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fieldgate::config::{
    AlarmConfig, Condition, Connection, Device, Priority, Rule, State, WorkOrderTemplate,
};
use fieldgate::reading::{BadReason, Batch, Quality, Reading};
use fieldgate::rules::{AlarmEvent, AlarmState, Cause, Engine, SavedEngine, Timestamp};
use fieldgate::tag::{Area, DataType, Tag, Value};
use proptest::prelude::*;

fn device(name: &str, tags: &[(&str, DataType)]) -> Device {
    Device::new(
        name,
        Connection::Tcp {
            host: "x".into(),
            port: 502,
        },
        tags.iter()
            .enumerate()
            .map(|(i, (n, dt))| Tag::new(*n, Area::HoldingRegister, i as u16 * 4, *dt))
            .collect(),
    )
}

fn rule(name: &str, condition: Condition, deadband: f64, on: u64, off: u64) -> Rule {
    Rule {
        name: name.into(),
        condition,
        deadband,
        on_delay: Duration::from_millis(on),
        off_delay: Duration::from_millis(off),
        priority: Priority::Medium,
        asset: None,
        location: None,
        workorder: WorkOrderTemplate {
            enabled: true,
            ..WorkOrderTemplate::default()
        },
    }
}

fn alarms() -> AlarmConfig {
    AlarmConfig {
        chatter_count: 3,
        chatter_window: Duration::from_secs(60),
        chatter_quiet: Duration::from_secs(120),
    }
}

/// One point of a walk: a value, or a bad reading.
#[derive(Debug, Clone, Copy)]
enum Point {
    Good(f64),
    Bad,
}

/// Runs an `above` rule over `walk` (one reading per second) and counts
/// activations.
fn activations(walk: &[Point], limit: f64, deadband: f64, on: u64, off: u64) -> usize {
    let devices = [device("d", &[("v", DataType::F64)])];
    let rules = [rule(
        "r",
        Condition::Above {
            tag: "d.v".into(),
            limit,
        },
        deadband,
        on,
        off,
    )];
    let Ok(mut engine) = Engine::new(&rules, &devices, &alarms()) else {
        return usize::MAX;
    };
    let Some(id) = engine.tag_id("d.v") else {
        return usize::MAX;
    };
    let mut count = 0;
    for (i, p) in walk.iter().enumerate() {
        let at = Timestamp::from_millis(i as u64 * 1000);
        let events = match p {
            Point::Good(x) => engine.observe(id, Some(&Value::Float(*x)), &Quality::Good, at),
            Point::Bad => engine.observe(id, None, &Quality::Bad(BadReason::Timeout), at),
        };
        count += events.iter().filter(|e| e.activation).count();
        // Ticks between readings must not add activations of their own.
        let events = engine.tick(Timestamp::from_millis(i as u64 * 1000 + 500));
        count += events.iter().filter(|e| e.activation).count();
    }
    count
}

/// Upward traversals of the band: from at or below `limit − deadband` (or
/// the start) to above `limit`. `strict` re-arms only strictly below.
fn crossings(walk: &[Point], limit: f64, deadband: f64, strict: bool) -> usize {
    let low = limit - deadband;
    let mut armed = true;
    let mut count = 0;
    for p in walk {
        let Point::Good(x) = *p else { continue };
        if armed && x > limit {
            count += 1;
            armed = false;
        } else if !armed && (x < low || (!strict && x == low)) {
            armed = true;
        }
    }
    count
}

/// Walks on a grid of halves, so values land exactly on the limit and on
/// limit − deadband, with some bad readings mixed in.
fn grid_walk() -> impl Strategy<Value = (Vec<Point>, f64, f64)> {
    (
        -10i32..10,
        0i32..20,
        0i32..8,
        prop::collection::vec((-3i32..=3, 0u8..10), 1..400),
    )
        .prop_map(|(start, limit, deadband, steps)| {
            let mut x = f64::from(start) * 0.5;
            let walk = steps
                .into_iter()
                .map(|(step, bad)| {
                    x += f64::from(step) * 0.5;
                    if bad == 0 { Point::Bad } else { Point::Good(x) }
                })
                .collect();
            (walk, f64::from(limit) * 0.5, f64::from(deadband) * 0.5)
        })
}

/// Walks with arbitrary float steps.
fn float_walk() -> impl Strategy<Value = (Vec<Point>, f64, f64)> {
    (
        -5.0f64..5.0,
        0.0f64..5.0,
        prop::collection::vec(-1.0f64..1.0, 1..400),
    )
        .prop_map(|(limit, deadband, steps)| {
            let mut x = 0.0;
            let walk = steps
                .into_iter()
                .map(|s| {
                    x += s;
                    Point::Good(x)
                })
                .collect();
            (walk, limit, deadband)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn activations_never_exceed_band_crossings((walk, limit, deadband) in grid_walk()) {
        let n = activations(&walk, limit, deadband, 0, 0);
        let all = crossings(&walk, limit, deadband, false);
        let strict = crossings(&walk, limit, deadband, true);
        prop_assert!(n <= all, "{n} activations, {all} crossings");
        prop_assert_eq!(n, strict);
        prop_assert!(all == 0 || n >= 1);
    }

    #[test]
    fn activations_never_exceed_band_crossings_float((walk, limit, deadband) in float_walk()) {
        let n = activations(&walk, limit, deadband, 0, 0);
        prop_assert!(n <= crossings(&walk, limit, deadband, false));
        prop_assert_eq!(n, crossings(&walk, limit, deadband, true));
    }

    #[test]
    fn delays_only_remove_activations(
        (walk, limit, deadband) in grid_walk(),
        on in 0u64..5_000,
        off in 0u64..5_000,
    ) {
        let n = activations(&walk, limit, deadband, on, off);
        prop_assert!(n <= crossings(&walk, limit, deadband, true));
    }
}

/// The engine of the robustness and persistence properties: every kind of
/// condition, over two devices.
fn world() -> (Vec<Device>, Vec<Rule>) {
    let devices = vec![
        device(
            "p1",
            &[
                ("temp", DataType::F32),
                ("running", DataType::Bool),
                ("mode", DataType::U16),
                ("state", DataType::String(4)),
            ],
        ),
        device("p2", &[("temp", DataType::F32)]),
    ];
    let tag = |t: &str| t.to_owned();
    let rules = vec![
        rule(
            "hot",
            Condition::Above {
                tag: tag("p1.temp"),
                limit: 80.0,
            },
            2.0,
            3_000,
            2_000,
        ),
        rule(
            "cold",
            Condition::Below {
                tag: tag("p2.temp"),
                limit: 10.0,
            },
            1.0,
            0,
            0,
        ),
        rule(
            "band",
            Condition::Outside {
                tag: tag("p2.temp"),
                low: 20.0,
                high: 60.0,
            },
            3.0,
            1_000,
            0,
        ),
        rule(
            "rising",
            Condition::Rate {
                tag: tag("p1.temp"),
                limit: 2.0,
                per: Duration::from_secs(1),
                window: Duration::from_secs(5),
            },
            0.5,
            0,
            1_000,
        ),
        rule(
            "silent",
            Condition::Stale {
                tag: tag("p2.temp"),
                after: Duration::from_secs(8),
            },
            0.0,
            0,
            0,
        ),
        rule(
            "manual",
            Condition::Equals {
                tag: tag("p1.mode"),
                value: State::Number(3.0),
            },
            0.0,
            500,
            500,
        ),
        rule(
            "fault_text",
            Condition::Equals {
                tag: tag("p1.state"),
                value: State::Text("FAULT".into()),
            },
            0.0,
            0,
            0,
        ),
        rule(
            "dry",
            Condition::Expr {
                expr: "p1.temp > 50 && !p1.running || p2.temp > p1.temp + 30".into(),
                tags: vec![],
            },
            0.0,
            2_000,
            0,
        ),
    ];
    (devices, rules)
}

const RULES: [&str; 8] = [
    "hot",
    "cold",
    "band",
    "rising",
    "silent",
    "manual",
    "fault_text",
    "dry",
];

/// One input to the engine.
#[derive(Debug, Clone)]
enum Op {
    /// A reading of tag `tag` (index into the flat tag list).
    Read {
        tag: usize,
        value: Option<Value>,
    },
    /// One poll of p1: temp, running, mode.
    Poll {
        temp: Option<f64>,
        running: bool,
        mode: u16,
    },
    Tick,
    Ack(usize),
    Shelve(usize, u64),
    Unshelve(usize),
}

/// An input and the clock step before it (milliseconds, sometimes back).
type Step = (i64, Op);

const TAGS: [&str; 5] = ["p1.temp", "p1.running", "p1.mode", "p1.state", "p2.temp"];

fn value_for(tag: usize, nan: bool) -> BoxedStrategy<Option<Value>> {
    let number = if nan {
        prop_oneof![
            8 => (-20.0f64..120.0).prop_map(Value::Float),
            1 => Just(Value::Float(f64::NAN)),
            1 => Just(Value::Text("junk".into())),
        ]
        .boxed()
    } else {
        (-20.0f64..120.0).prop_map(Value::Float).boxed()
    };
    let value = match tag {
        1 => any::<bool>().prop_map(Value::Bool).boxed(),
        2 => (0i64..5).prop_map(Value::Int).boxed(),
        3 => prop_oneof![Just("RUN"), Just("FAULT"), Just("")]
            .prop_map(|s| Value::Text(s.into()))
            .boxed(),
        _ => number,
    };
    prop_oneof![5 => value.prop_map(Some), 1 => Just(None)].boxed()
}

fn op(nan: bool) -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0usize..TAGS.len())
            .prop_flat_map(move |tag| value_for(tag, nan).prop_map(move |value| Op::Read { tag, value })),
        4 => (prop::option::weighted(0.9, 0.0f64..100.0), any::<bool>(), 0u16..5)
            .prop_map(|(temp, running, mode)| Op::Poll { temp, running, mode }),
        3 => Just(Op::Tick),
        1 => (0usize..RULES.len()).prop_map(Op::Ack),
        1 => (0usize..RULES.len(), 0u64..90).prop_map(|(r, d)| Op::Shelve(r, d)),
        1 => (0usize..RULES.len()).prop_map(Op::Unshelve),
    ]
}

fn steps(nan: bool) -> impl Strategy<Value = Vec<Step>> {
    let dt = prop_oneof![
        20 => 0i64..3_000,
        1 => -60_000i64..0,
        1 => 10_000i64..200_000,
    ];
    prop::collection::vec((dt, op(nan)), 1..300)
}

/// Applies one step at the clock `now` (updated), returning the events.
fn run(engine: &mut Engine, devices: &[Device], now: &mut i64, step: &Step) -> Vec<AlarmEvent> {
    // Start far from the epoch so a step back never goes below zero.
    *now = (*now + step.0).max(0);
    let at = Timestamp::from_millis(1_700_000_000_000 + *now as u64);
    match &step.1 {
        Op::Read { tag, value } => {
            let quality = if value.is_some() {
                Quality::Good
            } else {
                Quality::Bad(BadReason::Connection)
            };
            engine.observe_named(TAGS[*tag], value.as_ref(), &quality, at)
        }
        Op::Poll {
            temp,
            running,
            mode,
        } => {
            let batch = Batch {
                device: Arc::new(devices[0].clone()),
                timestamp: at.to_system_time(),
                started: std::time::Instant::now(),
                unsynced: false,
                readings: vec![
                    match temp {
                        Some(t) => Reading::good(0, Value::Float(*t)),
                        None => Reading::bad(0, BadReason::Timeout),
                    },
                    Reading::good(1, Value::Bool(*running)),
                    Reading::good(2, Value::Int(i64::from(*mode))),
                ],
            };
            engine.observe_batch(&batch, at)
        }
        Op::Tick => engine.tick(at),
        Op::Ack(r) => engine.ack(RULES[*r], at).unwrap_or_default(),
        Op::Shelve(r, secs) => engine
            .shelve(RULES[*r], Duration::from_secs(*secs), at)
            .unwrap_or_default(),
        Op::Unshelve(r) => engine.unshelve(RULES[*r], at).unwrap_or_default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_events_never_panic(steps in steps(true)) {
        let (devices, rules) = world();
        let mut engine = Engine::new(&rules, &devices, &alarms()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut now = 0;
        // Per rule: the activation chattering refused, while its fault
        // lasts (the model the alarm's `released` must match).
        let mut refused: HashMap<Arc<str>, Timestamp> = HashMap::new();
        for step in &steps {
            for e in run(&mut engine, &devices, &mut now, step) {
                // Every event is a real change, a chattering change or a
                // (re-)shelve.
                prop_assert!(e.from != e.to || matches!(e.cause, Cause::ChatterCleared | Cause::Shelve));
                // A work order is asked for by an activation or a release,
                // never by both and never by anything else.
                prop_assert!(!e.raise_work_order || (e.activation != e.released.is_some()));
                let annunciated = matches!(e.to, AlarmState::ActiveUnacked | AlarmState::ActiveAcked);
                if let Some(since) = e.released {
                    prop_assert_eq!(e.cause, Cause::ChatterCleared);
                    prop_assert!(annunciated && !e.chattering && !e.activation);
                    prop_assert!(e.raise_work_order, "every rule here raises work orders");
                    prop_assert_eq!(refused.remove(&e.rule), Some(since), "released what was refused");
                } else if e.cause == Cause::ChatterCleared {
                    prop_assert!(
                        !annunciated || !refused.contains_key(&e.rule),
                        "a refused activation still active when the flag clears is released: {:?}", e
                    );
                    refused.remove(&e.rule);
                }
                if e.activation && annunciated && !e.raise_work_order {
                    prop_assert!(e.chattering);
                    refused.insert(e.rule.clone(), e.at);
                } else if !annunciated {
                    refused.remove(&e.rule);
                }
            }
        }
        let saved = engine.save();
        let json = serde_json::to_string(&saved).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: SavedEngine = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.rules, saved.rules);
    }

    #[test]
    fn save_and_restore_change_nothing(steps in steps(false), split in any::<prop::sample::Index>()) {
        let (devices, rules) = world();
        let fresh = || Engine::new(&rules, &devices, &alarms()).map_err(|e| TestCaseError::fail(e.to_string()));
        let split = split.index(steps.len() + 1);

        let mut straight = fresh()?;
        let mut now = 0;
        let reference: Vec<Vec<AlarmEvent>> = steps
            .iter()
            .map(|s| run(&mut straight, &devices, &mut now, s))
            .collect();

        let mut first = fresh()?;
        let mut now = 0;
        for s in &steps[..split] {
            run(&mut first, &devices, &mut now, s);
        }
        let json = serde_json::to_string(&first.save()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        drop(first);
        let saved: SavedEngine = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut second = fresh()?;
        let report = second.restore(&saved);
        prop_assert_eq!(report.restored, RULES.len());
        for (k, s) in steps.iter().enumerate().skip(split) {
            let got = run(&mut second, &devices, &mut now, s);
            prop_assert_eq!(&got, &reference[k], "step {} after a restart at {}", k, split);
        }
        prop_assert_eq!(second.save(), straight.save());
    }
}

#[test]
fn the_world_compiles() {
    let (devices, rules) = world();
    assert!(Engine::new(&rules, &devices, &alarms()).is_ok());
}
