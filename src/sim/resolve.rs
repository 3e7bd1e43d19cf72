//! Checks a [`Scenario`] and turns it into the [`Plan`] the simulator
//! runs: durations parsed, names resolved to indices, devices grouped into
//! servers. Every problem is collected, so one run reports them all
//! rather than one per try.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use super::plant::{Model, Signal};
use super::point::{Point, Source, Target, find_target};
use super::scenario::{ConstValue, DeviceSpec, EventSpec, PointSpec, Scenario};
use super::script::{Action, Event};
use crate::tag::{Area, DataType, Value, WordOrder};

/// Model step and image refresh interval when the scenario sets none.
pub(crate) const DEFAULT_TICK: Duration = Duration::from_millis(100);

/// A checked scenario.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub seed: u64,
    pub tick: Duration,
    pub devices: Vec<DevicePlan>,
    pub servers: Vec<ServerPlan>,
    pub events: Vec<Event>,
}

/// One device, resolved.
#[derive(Debug, Clone)]
pub(crate) struct DevicePlan {
    pub name: String,
    pub unit: u8,
    pub model: Model,
    pub points: Vec<Point>,
    /// Holding registers `0..registers` carry the load pattern.
    pub registers: u16,
    /// Holding ranges (end exclusive) that are never served.
    pub holes: Vec<Range<u32>>,
    /// Function codes answered with exception 01.
    pub refuse_functions: Vec<u8>,
}

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Transport {
    /// Modbus TCP on this listen address.
    Tcp(String),
    /// RTU framing on TCP connections to this listen address.
    RtuOverTcp(String),
    /// RTU on a serial port.
    Serial {
        path: String,
        baud: u32,
        parity: Parity,
    },
    /// RTU on an in-process pseudo terminal, named by the scenario text.
    Pty(String),
}

/// Serial parity (our own type, converted at the edge).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Parity {
    None,
    Even,
    Odd,
}

/// One server and the devices (indices) it serves.
#[derive(Debug, Clone)]
pub(crate) struct ServerPlan {
    pub transport: Transport,
    pub devices: Vec<usize>,
}

fn duration(text: &str, field: &str, problems: &mut Vec<String>) -> Option<Duration> {
    match humantime::parse_duration(text.trim()) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(format!("{field}: {text:?} is not a duration ({e})"));
            None
        }
    }
}

/// Checks everything; on success the plan, else every problem found.
pub(crate) fn resolve(s: &Scenario) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let tick = match &s.tick {
        Some(t) => duration(t, "tick", &mut problems).unwrap_or(DEFAULT_TICK),
        None => DEFAULT_TICK,
    };
    if tick.is_zero() {
        problems.push("tick: must be longer than zero".into());
    }

    let mut names = HashSet::new();
    let mut devices = Vec::with_capacity(s.devices.len());
    let mut transports = Vec::with_capacity(s.devices.len());
    for (i, d) in s.devices.iter().enumerate() {
        let at = format!("devices[{i}] ({:?})", d.name);
        if d.name.trim().is_empty() {
            problems.push(format!("{at}: name is empty"));
        } else if !names.insert(d.name.as_str()) {
            problems.push(format!("{at}: a second device with this name"));
        }
        transports.push(transport(d, &at, &mut problems));
        devices.push(device(d, &at, &mut problems));
    }

    let servers = group(&s.devices, &transports, &mut problems);
    let events = s
        .events
        .iter()
        .enumerate()
        .filter_map(|(i, e)| event(e, i, &s.devices, &devices, &mut problems))
        .collect();

    if problems.is_empty() {
        Ok(Plan {
            seed: s.seed,
            tick,
            devices,
            servers,
            events,
        })
    } else {
        Err(problems)
    }
}

fn transport(d: &DeviceSpec, at: &str, problems: &mut Vec<String>) -> Option<Transport> {
    let given = [&d.listen, &d.serial, &d.rtu_over_tcp];
    if given.iter().filter(|t| t.is_some()).count() != 1 {
        problems.push(format!(
            "{at}: give exactly one of `listen`, `serial` or `rtu_over_tcp`"
        ));
        return None;
    }
    if d.serial.is_none() && (d.baud.is_some() || d.parity.is_some()) {
        problems.push(format!("{at}: `baud` and `parity` need `serial`"));
    }
    if let Some(addr) = &d.listen {
        return Some(Transport::Tcp(addr.trim().to_string()));
    }
    if let Some(addr) = &d.rtu_over_tcp {
        return Some(Transport::RtuOverTcp(addr.trim().to_string()));
    }
    let path = d.serial.as_deref().unwrap_or_default().trim().to_string();
    if !(1..=247).contains(&d.unit) {
        problems.push(format!("{at}: an RTU unit id is 1 to 247, not {}", d.unit));
    }
    if path == "pty" || path.starts_with("pty:") {
        return Some(Transport::Pty(path));
    }
    let parity = match d.parity.as_deref().map(str::trim) {
        None | Some("none") => Parity::None,
        Some("even") => Parity::Even,
        Some("odd") => Parity::Odd,
        Some(other) => {
            problems.push(format!(
                "{at}: parity {other:?} is not `none`, `even` or `odd`"
            ));
            Parity::None
        }
    };
    Some(Transport::Serial {
        path,
        baud: d.baud.unwrap_or(9600),
        parity,
    })
}

/// Groups devices into servers: same transport text, same server.
fn group(
    specs: &[DeviceSpec],
    transports: &[Option<Transport>],
    problems: &mut Vec<String>,
) -> Vec<ServerPlan> {
    let mut servers: BTreeMap<Transport, Vec<usize>> = BTreeMap::new();
    let mut serial_paths: HashMap<&str, &Transport> = HashMap::new();
    let mut tcp_addrs: HashMap<&str, &Transport> = HashMap::new();
    for (i, t) in transports.iter().enumerate() {
        let Some(t) = t else { continue };
        match t {
            Transport::Serial { path, .. } => {
                if let Some(other) = serial_paths.insert(path, t).filter(|o| *o != t) {
                    problems.push(format!(
                        "devices[{i}]: serial port {path:?} is used with different settings ({other:?})"
                    ));
                }
            }
            Transport::Tcp(a) | Transport::RtuOverTcp(a) => {
                let port_zero = a.ends_with(":0");
                if let Some(other) = tcp_addrs.insert(a, t).filter(|o| *o != t && !port_zero) {
                    problems.push(format!(
                        "devices[{i}]: {a:?} is used both for Modbus TCP and RTU over TCP ({other:?})"
                    ));
                }
            }
            Transport::Pty(_) => {}
        }
        servers.entry(t.clone()).or_default().push(i);
    }
    for (t, devices) in &servers {
        let mut units = HashMap::new();
        for &i in devices {
            if let Some(first) = units.insert(specs[i].unit, i) {
                problems.push(format!(
                    "devices[{i}] ({:?}): unit {} is already served by {:?} on {t:?}",
                    specs[i].name, specs[i].unit, specs[first].name
                ));
            }
        }
    }
    servers
        .into_iter()
        .map(|(transport, devices)| ServerPlan { transport, devices })
        .collect()
}

fn device(d: &DeviceSpec, at: &str, problems: &mut Vec<String>) -> DevicePlan {
    let model = match &d.model {
        None => Model::Generic,
        Some(m) => Model::parse(m).unwrap_or_else(|| {
            problems.push(format!(
                "{at}: model {m:?} is not `pump`, `motor` or `generic`"
            ));
            Model::Generic
        }),
    };
    let holes = d
        .holes
        .iter()
        .filter_map(|h| {
            let r = parse_range(h);
            if r.is_none() {
                problems.push(format!(
                    "{at}: hole {h:?} is not `start-end` or `address` (0 to 65535)"
                ));
            }
            r
        })
        .collect();
    let points: Vec<Point> = d
        .points
        .iter()
        .enumerate()
        .filter_map(|(j, p)| point(p, model, &format!("{at}.points[{j}]"), problems))
        .collect();
    check_overlaps(&points, at, problems);
    for code in &d.refuse_functions {
        if !(1..=127).contains(code) {
            problems.push(format!(
                "{at}: refuse_functions: {code} is not a function code (1 to 127)"
            ));
        }
    }
    DevicePlan {
        name: d.name.clone(),
        unit: d.unit,
        model,
        points,
        registers: d.registers,
        holes,
        refuse_functions: d.refuse_functions.clone(),
    }
}

/// `"10-19"` (inclusive) or `"10"`, as an end-exclusive range.
fn parse_range(text: &str) -> Option<Range<u32>> {
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    (a <= b).then(|| u32::from(a)..u32::from(b) + 1)
}

fn data_type(p: &PointSpec, at: &str, problems: &mut Vec<String>) -> Option<DataType> {
    let t = match DataType::parse(&p.data_type, p.bit.map(i64::from), p.length.map(i64::from)) {
        Ok(t) => t,
        Err(e) => {
            problems.push(format!("{at}: {e}"));
            return None;
        }
    };
    if p.bit.is_some() && !matches!(t, DataType::Bit(_)) {
        problems.push(format!("{at}: `bit` is only for type `bit`"));
    }
    if p.length.is_some() && !matches!(t, DataType::String(_)) {
        problems.push(format!("{at}: `length` is only for type `string`"));
    }
    Some(t)
}

fn point(p: &PointSpec, model: Model, at: &str, problems: &mut Vec<String>) -> Option<Point> {
    let before = problems.len();
    let area = Area::parse(&p.area);
    if area.is_none() {
        problems.push(format!(
            "{at}: area {:?} is not coil, discrete, input or holding",
            p.area
        ));
    }
    let data_type = data_type(p, at, problems);
    let order = match &p.word_order {
        None => WordOrder::Abcd,
        Some(o) => WordOrder::parse(o).unwrap_or_else(|| {
            problems.push(format!(
                "{at}: word_order {o:?} is not ABCD, CDAB, BADC or DCBA"
            ));
            WordOrder::Abcd
        }),
    };
    let scale = p.scale.unwrap_or(1.0);
    let offset = p.offset.unwrap_or(0.0);
    if scale == 0.0 || !scale.is_finite() || !offset.is_finite() {
        problems.push(format!(
            "{at}: scale must be finite and non-zero, offset finite"
        ));
    }
    let source = source(p, model, at, problems);
    let (area, data_type, source) = (area?, data_type?, source?);

    if area.is_bit() && data_type != DataType::Bool {
        problems.push(format!(
            "{at}: a {area} holds type `bool`, not `{}`",
            data_type.name()
        ));
    }
    if source == Source::Clock && (area.is_bit() || !data_type.is_numeric()) {
        problems.push(format!(
            "{at}: `clock_ms` needs a register area and a numeric type (u64 holds it whole)"
        ));
    }
    let is_text = matches!(source, Source::Constant(Value::Text(_)));
    let is_string = matches!(data_type, DataType::String(_));
    if is_text != is_string {
        problems.push(format!(
            "{at}: type `string` needs a text `value`, and a text value needs type `string`"
        ));
    }
    let p = Point {
        name: p.name.clone(),
        source,
        area,
        address: p.address,
        data_type,
        order,
        scale,
        offset,
        pin: None,
    };
    if p.range().end > 1 << 16 {
        problems.push(format!("{at}: runs past address 65535"));
    }
    (problems.len() == before).then_some(p)
}

fn source(p: &PointSpec, model: Model, at: &str, problems: &mut Vec<String>) -> Option<Source> {
    let given = [p.signal.is_some(), p.value.is_some(), p.ramp.is_some()];
    if given.iter().filter(|g| **g).count() != 1 {
        problems.push(format!(
            "{at}: give exactly one of `signal`, `value` or `ramp`"
        ));
        return None;
    }
    if let Some(name) = &p.signal {
        let Some(signal) = Signal::parse(name) else {
            let known: Vec<_> = Signal::ALL.iter().map(|s| s.as_str()).collect();
            problems.push(format!(
                "{at}: unknown signal {name:?} (known: {})",
                known.join(", ")
            ));
            return None;
        };
        if !model.has(signal) {
            problems.push(format!("{at}: a {model} has no signal `{signal}`"));
            return None;
        }
        return Some(if signal == Signal::ClockMs {
            Source::Clock
        } else {
            Source::Signal(signal)
        });
    }
    if let Some(v) = &p.value {
        return Some(Source::Constant(match v {
            ConstValue::Bool(b) => Value::Bool(*b),
            ConstValue::Int(i) => Value::Int(*i),
            ConstValue::Float(x) => Value::Float(*x),
            ConstValue::Text(t) => Value::Text(t.clone()),
        }));
    }
    let r = p.ramp.as_ref()?;
    let period = duration(&r.period, &format!("{at}.ramp.period"), problems)?;
    if period.is_zero() {
        problems.push(format!("{at}: ramp period must be longer than zero"));
    }
    Some(Source::Sawtooth {
        from: r.from,
        to: r.to,
        period,
    })
}

/// Two points may not share an address, except bit points on different
/// bits of one register.
fn check_overlaps(points: &[Point], at: &str, problems: &mut Vec<String>) {
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by_key(|p| (p.area, p.address));
    for area in Area::ALL {
        let mut end = 0u32;
        let mut last: Option<&Point> = None;
        for p in sorted.iter().filter(|p| p.area == area) {
            let r = p.range();
            if let Some(prev) = last.filter(|_| r.start < end) {
                let bits_apart = match (prev.data_type, p.data_type) {
                    (DataType::Bit(a), DataType::Bit(b)) => a != b && prev.address == p.address,
                    _ => false,
                };
                if !bits_apart {
                    problems.push(format!(
                        "{at}: points at {area} {} and {} overlap",
                        prev.address, p.address
                    ));
                }
            }
            if r.end >= end {
                end = r.end;
                last = Some(p);
            }
        }
    }
}

fn event(
    e: &EventSpec,
    i: usize,
    specs: &[DeviceSpec],
    devices: &[DevicePlan],
    problems: &mut Vec<String>,
) -> Option<Event> {
    let at_field = format!("events[{i}]");
    let before = problems.len();
    let at = duration(&e.at, &format!("{at_field}.at"), problems);
    let lasts = e
        .duration
        .as_ref()
        .and_then(|d| duration(d, &format!("{at_field}.for"), problems));
    let device = specs.iter().position(|d| d.name == e.device);
    if device.is_none() {
        problems.push(format!("{at_field}: no device named {:?}", e.device));
    }
    let actions = [
        e.ramp_to.is_some(),
        e.set.is_some(),
        e.offline.is_some(),
        e.exception.is_some(),
    ];
    if actions.iter().filter(|a| **a).count() != 1 {
        problems.push(format!(
            "{at_field}: give exactly one of `ramp_to`, `set`, `offline` or `exception`"
        ));
        return None;
    }
    if e.over.is_some() && e.ramp_to.is_none() {
        problems.push(format!("{at_field}: `over` belongs to `ramp_to`"));
    }
    let needs_signal = e.ramp_to.is_some() || e.set.is_some();
    if needs_signal != e.signal.is_some() {
        problems.push(format!(
            "{at_field}: `signal` goes with `ramp_to` or `set`, and they need it"
        ));
    }
    let device = device?;
    let plan = devices.get(device)?;
    let target = e.signal.as_deref().and_then(|s| {
        let t = find_target(plan.model, &plan.points, s);
        if t.is_none() {
            problems.push(format!(
                "{at_field}: device {:?} (a {}) has no signal or point {s:?}",
                e.device, plan.model
            ));
        }
        t
    });
    let (action, lasts) = if let Some(to) = e.ramp_to {
        let over = match &e.over {
            Some(o) => duration(o, &format!("{at_field}.over"), problems),
            None => {
                problems.push(format!("{at_field}: `ramp_to` needs `over` (\"0s\" jumps)"));
                None
            }
        };
        let signal = match target {
            Some(Target::Signal(s)) if s.is_analog() => Some(s),
            Some(_) => {
                problems.push(format!(
                    "{at_field}: only analog model signals ramp (bearing_temp, vibration, current, pressure, speed)"
                ));
                None
            }
            None => None,
        };
        (
            signal
                .zip(over)
                .map(|(signal, over)| Action::Ramp { signal, to, over }),
            lasts,
        )
    } else if let Some(value) = e.set {
        (target.map(|target| Action::Set { target, value }), lasts)
    } else if let Some(o) = &e.offline {
        if e.duration.is_some() {
            problems.push(format!(
                "{at_field}: `offline` is itself the duration; drop `for`"
            ));
        }
        let d = duration(o, &format!("{at_field}.offline"), problems);
        (d.map(|_| Action::Offline(true)), d)
    } else {
        let code = e.exception.unwrap_or(0);
        if code == 0 || code >= 0x80 {
            problems.push(format!("{at_field}: exception code must be 1 to 127"));
        }
        (Some(Action::Exception(Some(code))), lasts)
    };
    if problems.len() != before {
        return None;
    }
    Some(Event {
        at: at?,
        device,
        action: action?,
        lasts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        let s: Scenario = match toml::from_str(text) {
            Ok(s) => s,
            Err(e) => return vec![format!("toml: {e}")],
        };
        resolve(&s).err().unwrap_or_default()
    }

    #[test]
    fn reports_every_problem_at_once() {
        let p = problems(
            r#"
            tick = "soon"
            [[devices]]
            name = "p1"
            unit = 1
            listen = "127.0.0.1:0"
            serial = "/dev/ttyS0"
            model = "pump"
            holes = ["20-10"]
            points = [
                { signal = "pressure", area = "input", address = 0, type = "f32" },
                { signal = "pressure", area = "input", address = 1, type = "f32" },
                { signal = "bogus", area = "input", address = 10, type = "f32" },
                { value = 1, area = "coil", address = 0, type = "u16" },
                { value = "x", area = "holding", address = 0, type = "u16" },
                { signal = "clock_ms", area = "discrete", address = 0, type = "bool" },
            ]
            [[devices]]
            name = "m1"
            unit = 1
            listen = "127.0.0.1:5020"
            model = "motor"
            points = [{ signal = "pressure", area = "input", address = 0, type = "f32" }]
            [[events]]
            at = "1s"
            device = "nobody"
            offline = "1s"
            [[events]]
            at = "1s"
            device = "m1"
            signal = "running"
            ramp_to = 1.0
            over = "1s"
        "#,
        );
        let expect = [
            "tick",
            "exactly one of `listen`",
            "hole \"20-10\"",
            "overlap",
            "unknown signal \"bogus\"",
            "a coil holds type `bool`",
            "`clock_ms` needs a register area",
            "text `value`",
            "a motor has no signal `pressure`",
            "no device named \"nobody\"",
            "only analog model signals ramp",
        ];
        for e in expect {
            assert!(p.iter().any(|p| p.contains(e)), "missing {e:?} in {p:#?}");
        }
        assert_eq!(p.len(), expect.len(), "{p:#?}");
    }

    #[test]
    fn groups_devices_by_listen_text() {
        let text = r#"
            [[devices]]
            name = "a"
            unit = 1
            listen = "127.0.0.1:0"
            [[devices]]
            name = "b"
            unit = 2
            listen = "127.0.0.1:0"
            [[devices]]
            name = "c"
            unit = 1
            serial = "pty"
            [[devices]]
            name = "d"
            unit = 1
            serial = "pty"
            [[events]]
            at = "300ms"
            device = "a"
            exception = 4
            for = "1s"
        "#;
        let p = problems(text);
        assert_eq!(p.len(), 1, "{p:#?}");
        assert!(p[0].contains("unit 1 is already served by \"c\""));
        let mut s: Scenario = toml::from_str(text).unwrap_or_default();
        s.devices[3].unit = 4;
        let plan = resolve(&s).map_err(|p| p.join("; "));
        let plan = plan.as_ref();
        assert_eq!(plan.map(|p| p.servers.len()), Ok(2));
        assert_eq!(
            plan.map(|p| p.events[0].lasts),
            Ok(Some(Duration::from_secs(1)))
        );
    }

    #[test]
    fn bits_may_share_a_register() {
        let p = problems(
            r#"
            [[devices]]
            name = "a"
            unit = 1
            listen = "127.0.0.1:0"
            model = "pump"
            points = [
                { signal = "running", area = "holding", address = 5, type = "bit", bit = 0 },
                { signal = "fault", area = "holding", address = 5, type = "bit", bit = 1 },
                { signal = "runtime_hours", area = "holding", address = 6, type = "u32", scale = 0.1 },
            ]
            holes = ["100-109", "200"]
        "#,
        );
        assert!(p.is_empty(), "{p:#?}");
    }
}
