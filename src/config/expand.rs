//! `fieldgate check --expand`: the buses, devices, rules and meters of a
//! loaded configuration written back as TOML, every setting spelled out, so a
//! technician sees what a template, a default or a CSV tag map made.
//!
//! The text loads back to the same [`Bus`]es, [`Device`]s, [`Rule`]s and
//! [`Meter`]s (alone, or in place of those sections of the file, beside
//! its other sections): tags are written inline with their
//! `area` and 0-based address, durations with a unit, numbers so that
//! they parse to the same `f64`, and texts quoted by `toml_edit`, which
//! escapes whatever they hold.

use std::fmt::{self, Write as _};
use std::time::Duration;

use super::report::edit_distance;
use super::{
    Bus, Condition, Config, Connection, Device, Meter, MeterKind, Parity, Rule, State,
    WorkOrderTemplate,
};
use crate::tag::{DataType, Deadband, Tag, Value};

/// Renders `config`'s devices and the rules and meters on them as TOML:
/// every bus, device, rule and meter when `device` is `None`; else that
/// device, its bus, and the rules and meters that read one of its tags
/// (an `expr` rule that also reads another device's tags is shown too).
pub fn expand(config: &Config, device: Option<&str>) -> Result<String, UnknownDevice> {
    let devices: Vec<&Device> = match device {
        None => config.devices.iter().map(|d| &**d).collect(),
        Some(name) => vec![
            config
                .device(name)
                .ok_or_else(|| UnknownDevice::new(name, config))?,
        ],
    };
    let on_shown = |full: &str| match device {
        None => true,
        Some(name) => full.split_once('.').is_some_and(|(d, _)| d == name),
    };
    let mut out = Toml::default();
    // The buses the devices are on, so the text loads by itself.
    for bus in &config.buses {
        let used = devices
            .iter()
            .any(|d| matches!(&d.connection, Connection::Rtu { bus: b } if *b == bus.name));
        if device.is_none() || used {
            write_bus(&mut out, bus);
        }
    }
    for d in &devices {
        write_device(&mut out, d);
    }
    for rule in &config.rules {
        if rule.condition.tags().into_iter().any(on_shown) {
            write_rule(&mut out, rule);
        }
    }
    for meter in &config.meters {
        if on_shown(&meter.tag) {
            write_meter(&mut out, meter);
        }
    }
    Ok(out.text)
}

/// A device name that is not in the configuration, with the names it
/// may have been meant as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownDevice {
    /// The name asked for.
    pub name: String,
    /// Device names a typo away from it, closest first (at most five).
    pub close: Vec<String>,
    /// Every device name, in the configuration's order.
    pub devices: Vec<String>,
}

/// The most device names a message lists.
const LISTED: usize = 12;

impl UnknownDevice {
    fn new(name: &str, config: &Config) -> UnknownDevice {
        let devices: Vec<String> = config.devices.iter().map(|d| d.name.clone()).collect();
        let wanted = name.to_ascii_lowercase();
        let mut close: Vec<(usize, &String)> = devices
            .iter()
            .map(|d| (edit_distance(&wanted, &d.to_ascii_lowercase()), d))
            .filter(|(dist, _)| *dist <= 2)
            .collect();
        close.sort();
        UnknownDevice {
            name: name.to_owned(),
            close: close.into_iter().take(5).map(|(_, d)| d.clone()).collect(),
            devices,
        }
    }
}

impl fmt::Display for UnknownDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no device \"{}\"", self.name)?;
        if !self.close.is_empty() {
            return write!(f, "; did you mean {}?", either(&self.close, "or"));
        }
        if self.devices.is_empty() {
            return f.write_str("; the configuration has no devices");
        }
        let mut names: Vec<String> = self.devices.iter().take(LISTED).cloned().collect();
        if self.devices.len() > LISTED {
            names.push(format!("{} more", self.devices.len() - LISTED));
        }
        write!(f, "; the devices are {}", either(&names, "and"))
    }
}

impl std::error::Error for UnknownDevice {}

/// `a`, `a or b`, `a, b or c`.
fn either(names: &[String], word: &str) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} {word} {last}", rest.join(", ")),
    }
}

/// The text being written: tables separated by a blank line, one
/// `key = value` a line.
#[derive(Default)]
struct Toml {
    text: String,
}

impl Toml {
    fn table(&mut self, header: &str) {
        if !self.text.is_empty() {
            self.text.push('\n');
        }
        self.text.push_str(header);
        self.text.push('\n');
    }

    fn set(&mut self, key: &str, value: impl Into<toml_edit::Value>) {
        // A String cannot fail to take a write.
        let _ = writeln!(self.text, "{key} = {}", value.into());
    }

    fn text(&mut self, key: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.set(key, v);
        }
    }

    fn number(&mut self, key: &str, value: f64) {
        self.set(key, number(value));
    }

    fn duration(&mut self, key: &str, value: Duration) {
        self.set(key, duration(value));
    }
}

/// A number for a key the config reads as `f64`, which takes integers
/// too: a whole number is written as one (`limit = 80`, as people write
/// it), anything else as TOML's float, whose text is Rust's shortest one
/// that parses back to the same `f64`.
fn number(x: f64) -> toml_edit::Value {
    // 2^53: every whole f64 below it is an i64 that converts back exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    if x.is_finite() && x.fract() == 0.0 && x.abs() < EXACT {
        toml_edit::Value::from(x as i64)
    } else {
        float(x)
    }
}

/// A TOML float (it keeps its point: `2.0`), with an exponent when very
/// large or small (`1e300`, `2.5e-7`) rather than hundreds of digits.
/// Rust writes both forms as the shortest text that parses back to `x`.
fn float(x: f64) -> toml_edit::Value {
    let magnitude = x.abs();
    if x.is_finite()
        && x != 0.0
        && !(1e-5..1e16).contains(&magnitude)
        && let Ok(value) = format!("{x:e}").parse::<toml_edit::Value>()
    {
        return value;
    }
    toml_edit::Value::from(x)
}

/// A duration in the largest one unit that holds it whole (`"2000h"`,
/// `"90m"`, `"1500ms"`): what the config's duration parser reads back to
/// the same value, and easier to compare than `"1h 30m"`.
fn duration(d: Duration) -> String {
    const UNITS: [(u128, &str); 6] = [
        (3_600_000_000_000, "h"),
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    let (size, unit) = UNITS
        .into_iter()
        .find(|(size, _)| ns.is_multiple_of(*size))
        .unwrap_or((1, "ns"));
    format!("{}{unit}", ns / size)
}

fn array<V: Into<toml_edit::Value>>(items: impl IntoIterator<Item = V>) -> toml_edit::Value {
    let mut array: toml_edit::Array = items.into_iter().collect();
    array.fmt();
    toml_edit::Value::Array(array)
}

fn write_bus(out: &mut Toml, bus: &Bus) {
    out.table("[[buses]]");
    out.set("name", bus.name.as_str());
    out.set("port", bus.port.as_str());
    out.set("baud", i64::from(bus.baud));
    out.set("data_bits", i64::from(bus.data_bits));
    out.set(
        "parity",
        match bus.parity {
            Parity::None => "none",
            Parity::Even => "even",
            Parity::Odd => "odd",
        },
    );
    // One stop bit without parity is warned about only when written, as
    // a choice to check; as the default it is left to say so.
    if bus.parity != Parity::None || bus.stop_bits != 1 {
        out.set("stop_bits", i64::from(bus.stop_bits));
    }
    if let Some(gap) = bus.frame_gap {
        out.duration("frame_gap", gap);
    }
}

fn write_device(out: &mut Toml, d: &Device) {
    match &d.template {
        // The template's name is only for people: the device below holds
        // all it gave, so the text loads without it.
        Some(t) => out.table(&format!("# made from template \"{t}\"\n[[devices]]")),
        None => out.table("[[devices]]"),
    }
    out.set("name", d.name.as_str());
    match &d.connection {
        Connection::Tcp { .. } => out.text("tcp", d.connection.endpoint().as_deref()),
        Connection::RtuOverTcp { .. } => {
            out.text("rtu_over_tcp", d.connection.endpoint().as_deref())
        }
        Connection::Rtu { bus } => out.set("bus", bus.as_str()),
    }
    out.set("unit", i64::from(d.unit));
    out.duration("poll_interval", d.poll_interval);
    out.duration("timeout", d.timeout);
    out.set("retries", i64::from(d.retries));
    out.set("max_registers", i64::from(d.max_registers));
    out.set("max_bits", i64::from(d.max_bits));
    out.set("max_gap", i64::from(d.max_gap));
    out.set("word_order", d.word_order.as_str());
    out.duration("max_silence", d.max_silence);
    out.duration("reprobe", d.reprobe);
    out.text("asset", d.asset.as_deref());
    out.text("location", d.location.as_deref());
    out.set(
        "write_functions",
        array(d.write_functions.codes().into_iter().map(i64::from)),
    );
    out.set("write_during_poll", d.write_during_poll);
    for tag in &d.tags {
        write_tag(out, d, tag);
    }
}

/// One tag, as `[[devices.tags]]`: where it is and its type always, the
/// other keys when they differ from their defaults.
fn write_tag(out: &mut Toml, device: &Device, tag: &Tag) {
    out.table("[[devices.tags]]");
    out.set("name", tag.name.as_str());
    // With `area` given the address is always the 0-based one, whatever
    // its digits look like.
    out.set("area", tag.area.as_str());
    out.set("address", i64::from(tag.address));
    out.set("type", tag.data_type.name());
    match tag.data_type {
        DataType::Bit(bit) => out.set("bit", i64::from(bit)),
        DataType::String(length) => out.set("length", i64::from(length)),
        _ => {}
    }
    if tag.word_order != device.word_order {
        out.set("word_order", tag.word_order.as_str());
    }
    // Scale and offset are refused on tags that are not numbers.
    if tag.data_type.is_numeric() {
        if tag.scale != 1.0 {
            out.number("scale", tag.scale);
        }
        if tag.offset != 0.0 {
            out.number("offset", tag.offset);
        }
    }
    out.text("unit", tag.unit.as_deref());
    match tag.deadband {
        Deadband::None => {}
        Deadband::Absolute(x) => out.number("deadband", x),
        Deadband::Percent(p) => out.set("deadband", format!("{p}%")),
    }
    if let Some(low) = tag.span_low {
        out.number("span_low", low);
    }
    if let Some(high) = tag.span_high {
        out.number("span_high", high);
    }
    if let Some(decimals) = tag.decimals {
        out.set("decimals", i64::from(decimals));
    }
    out.text("description", tag.description.as_deref());
    out.text("asset", tag.asset.as_deref());
    if tag.alias {
        out.set("alias", true);
    }
    if let Some(write) = &tag.write {
        out.set("writable", true);
        if let Some(min) = write.min {
            out.number("min", min);
        }
        if let Some(max) = write.max {
            out.number("max", max);
        }
        if !write.allowed.is_empty() {
            out.set("allowed", array(write.allowed.iter().map(allowed)));
        }
        if let Some(rate) = write.max_rate {
            out.set("max_rate", i64::from(rate));
        }
        out.set("confirm", write.confirm);
    }
}

/// An `allowed` value, written as the kind it was read as: an integer
/// stays one and a float keeps its point (`2.0`), since the two are
/// different values of a tag.
fn allowed(value: &Value) -> toml_edit::Value {
    match value {
        Value::Bool(b) => toml_edit::Value::from(*b),
        Value::Int(i) => toml_edit::Value::from(*i),
        // Never made by the config (an integer beyond i64 reads as a
        // float); written the way it would be read back.
        Value::UInt(u) => float(*u as f64),
        Value::Float(x) => float(*x),
        Value::Text(t) => toml_edit::Value::from(t.as_str()),
    }
}

fn write_rule(out: &mut Toml, rule: &Rule) {
    out.table("[[rules]]");
    out.set("name", rule.name.as_str());
    match &rule.condition {
        Condition::Expr { .. } => {}
        other => out.text("tag", other.tags().first().copied()),
    }
    out.set("condition", rule.condition.kind());
    match &rule.condition {
        Condition::Above { limit, .. } | Condition::Below { limit, .. } => {
            out.number("limit", *limit)
        }
        Condition::Outside { low, high, .. } => {
            out.number("low", *low);
            out.number("high", *high);
        }
        Condition::Rate {
            limit, per, window, ..
        } => {
            out.number("rate", *limit);
            out.duration("per", *per);
            out.duration("window", *window);
        }
        Condition::Stale { after, .. } => out.duration("after", *after),
        Condition::Equals { value, .. } => match value {
            State::Bool(b) => out.set("value", *b),
            State::Number(x) => out.number("value", *x),
            State::Text(t) => out.set("value", t.as_str()),
        },
        Condition::Expr { expr, .. } => out.set("expr", expr.as_str()),
    }
    out.number("deadband", rule.deadband);
    out.duration("on_delay", rule.on_delay);
    out.duration("off_delay", rule.off_delay);
    out.set("priority", rule.priority.as_str());
    out.text("asset", rule.asset.as_deref());
    out.text("location", rule.location.as_deref());
    write_workorder(out, "[rules.workorder]", &rule.workorder);
}

fn write_meter(out: &mut Toml, meter: &Meter) {
    out.table("[[meters]]");
    out.set("name", meter.name.as_str());
    out.set("tag", meter.tag.as_str());
    match meter.kind {
        MeterKind::Runtime { every } => {
            out.set("kind", "runtime");
            out.duration("every", every);
        }
        MeterKind::Count { every } => {
            out.set("kind", "count");
            // The config reads counts as i64 and refuses any below 1.
            out.set("every", i64::try_from(every).unwrap_or(i64::MAX));
        }
    }
    out.set("priority", meter.priority.as_str());
    out.text("asset", meter.asset.as_deref());
    out.text("location", meter.location.as_deref());
    write_workorder(out, "[meters.workorder]", &meter.workorder);
}

fn write_workorder(out: &mut Toml, header: &str, w: &WorkOrderTemplate) {
    out.table(header);
    out.set("enabled", w.enabled);
    out.text("title", w.title.as_deref());
    out.text("description", w.description.as_deref());
    out.text("problem_code", w.problem_code.as_deref());
    out.text("procedure", w.procedure.as_deref());
    if !w.snapshot.is_empty() {
        out.set("snapshot", array(w.snapshot.iter().map(String::as_str)));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Loaded, load_with_env};

    fn load_in(dir: &Path, name: &str, text: &str) -> Loaded {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        match load_with_env(&path, &[]) {
            Ok(l) => l,
            Err(p) => panic!("does not load:\n{p}\n{text}"),
        }
    }

    /// What every test config has before its devices.
    const HEAD: &str = "[gateway]\nid = \"gw1\"\ndata_dir = \".\"\n\n[http]\nlisten = \"\"\n\n";

    /// Loads `HEAD` + `text`, expands it whole, loads `HEAD` + the
    /// expansion, and checks that both give the same configuration and
    /// the same number of warnings. Returns the expansion.
    fn round_trip(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let first = load_in(dir.path(), "fieldgate.toml", &format!("{HEAD}{text}"));
        let expanded = expand(&first.config, None).unwrap();
        let second = load_in(dir.path(), "expanded.toml", &format!("{HEAD}{expanded}"));
        let same = |c: &Config| {
            let mut c = c.clone();
            c.path = Default::default();
            c.hash = String::new();
            for d in &mut c.devices {
                let d = std::sync::Arc::make_mut(d);
                d.tags_file = None;
                d.template = None;
            }
            c
        };
        assert_eq!(same(&first.config), same(&second.config), "{expanded}");
        assert_eq!(
            first.warnings.len(),
            second.warnings.len(),
            "{:?}\n{:?}\n{expanded}",
            first.warnings,
            second.warnings
        );
        expanded
    }

    /// Every device setting, every kind of tag key, every condition and
    /// meter kind, and texts that need escaping.
    const EVERYTHING: &str = r#"
[[buses]]
name = "line1"
port = "/dev/ttyUSB0"

[[buses]]
name = "line2"
port = "/dev/serial/by-id/usb-FTDI \"A\""
baud = 9600
parity = "none"
stop_bits = 2
frame_gap = "2ms"

[[buses]]
name = "line3"
port = "COM3"
baud = 115200
parity = "odd"
data_bits = 7

[[buses]]
name = "line4"
port = "/dev/ttyS1"
parity = "none"

[[devices]]
name = "pump7"
tcp = "10.0.0.7:5020"
unit = 7
poll_interval = "1500ms"
timeout = "2s"
retries = 3
max_registers = 100
max_bits = 1000
max_gap = 0
word_order = "CDAB"
max_silence = "90s"
reprobe = "1h"
asset = "P-007 \"main\""
location = "Hall 2\\bay 3\nnorth — Straße"
write_functions = [5, 6, 16]
write_during_poll = true
tags = [
  { name = "temp", address = 30001, type = "f32", scale = 0.1, offset = -40, unit = "°C", deadband = "2.5%", span_low = -40, span_high = 160.5, decimals = 1, description = "bearing 'DE'\ttab", asset = "M-7" },
  { name = "temp_raw", area = "input", address = 0, type = "u32", word_order = "ABCD", alias = true, deadband = 0.3 },
  { name = "big", area = "holding", address = 40001, type = "i64", scale = 1e-7, offset = 1e300 },
  { name = "status", address = 40010, type = "bit", bit = 15 },
  { name = "label", address = 40020, type = "string", length = 8, word_order = "BADC" },
  { name = "running", address = 10001 },
  { name = "speed_sp", address = 40030, type = "f32", writable = true, min = -0.5, max = 80, max_rate = 6, confirm = false },
  { name = "mode", address = 40032, writable = true, allowed = [0, 1, 2.0, 3.5], scale = 0.5 },
  { name = "recipe", address = 40040, type = "string", length = 2, writable = true, allowed = ["A-1", "42"] },
  { name = "reset", address = "00001", writable = true, allowed = [true] },
  { name = "enable", address = 40050, type = "bit", bit = 3, writable = true, allowed = [false, true] },
]

[[devices]]
name = "drive1"
bus = "line1"
unit = 12
tags = [ { name = "hz", area = "holding", address = 65534, type = "u16" } ]

[[devices]]
name = "meter-v6"
rtu_over_tcp = "[fe80::1]:4001"
write_functions = []
tags = [ { name = "kwh", address = 300001, type = "u64" } ]

[[rules]]
name = "hot"
tag = "pump7.temp"
condition = "above"
limit = 80
deadband = 2.5
on_delay = "10s"
off_delay = "1m 30s"
priority = "critical"
asset = "P-007"
location = "Hall 2"
[rules.workorder]
title = "{device}: bearing hot ({value} {unit})"
description = """Check the "DE" bearing.
Line two \\ with a backslash.
"""
problem_code = "BRG-HOT"
procedure = "SOP-12"
snapshot = ["pump7.temp", "drive1.hz"]

[[rules]]
name = "cold"
tag = "pump7.temp"
condition = "below"
limit = -12.75
priority = "low"
workorder.enabled = false

[[rules]]
name = "band"
tag = "drive1.hz"
condition = "outside"
low = 10
high = 60.000000000000014

[[rules]]
name = "climb"
tag = "pump7.temp"
condition = "rate"
rate = 0.1
per = "1m"
window = "5m"

[[rules]]
name = "silent"
tag = "meter-v6.kwh"
condition = "stale"
after = "45s"
priority = "high"

[[rules]]
name = "tripped"
tag = "pump7.status"
condition = "equals"
value = true

[[rules]]
name = "mode3"
tag = "pump7.mode"
condition = "equals"
value = 3

[[rules]]
name = "wrong_recipe"
tag = "pump7.label"
condition = "equals"
value = "B-7 \"x\""

[[rules]]
name = "both"
condition = "expr"
expr = "pump7.temp > 70 && drive1.hz < 5"

[[meters]]
name = "service"
tag = "pump7.running"
every = "2000h"
priority = "low"
asset = "P-007"
location = "Hall 2"
workorder.title = "Service {device}"

[[meters]]
name = "starts"
tag = "pump7.running"
kind = "count"
every = 10000
"#;

    #[test]
    fn every_field_round_trips() {
        let text = round_trip(EVERYTHING);
        for line in [
            "tcp = \"10.0.0.7:5020\"",
            "poll_interval = \"1500ms\"",
            "max_silence = \"90s\"",
            "reprobe = \"1h\"",
            "write_functions = [5, 6, 16]",
            "write_functions = []",
            "rtu_over_tcp = \"[fe80::1]:4001\"",
            "bus = \"line1\"",
            "area = \"input\"\naddress = 0\ntype = \"f32\"",
            "deadband = \"2.5%\"",
            "offset = -40\n",
            "scale = 1e-7\noffset = 1e300\n",
            "allowed = [0, 1, 2.0, 3.5]",
            "allowed = [\"A-1\", \"42\"]",
            "limit = 80\n",
            "off_delay = \"90s\"",
            "every = \"2000h\"",
            "every = 10000",
            "[rules.workorder]\nenabled = false",
            "parity = \"none\"\nstop_bits = 2\nframe_gap = \"2ms\"",
            "parity = \"none\"\n\n[[devices]]",
            "data_bits = 7\nparity = \"odd\"\nstop_bits = 1\n",
        ] {
            assert!(text.contains(line), "no {line:?} in\n{text}");
        }
        // The tag's own order only where it differs from its device's.
        assert_eq!(text.matches("word_order = \"ABCD\"").count(), 3, "{text}");
    }

    #[test]
    fn defaults_are_written_out() {
        let text = round_trip(
            "[[devices]]\nname = \"p1\"\ntcp = \"plc1\"\ntags = [ { name = \"t\", address = 40001 } ]\n",
        );
        assert_eq!(
            text,
            "[[devices]]\n\
             name = \"p1\"\n\
             tcp = \"plc1:502\"\n\
             unit = 1\n\
             poll_interval = \"1s\"\n\
             timeout = \"1s\"\n\
             retries = 1\n\
             max_registers = 125\n\
             max_bits = 2000\n\
             max_gap = 10\n\
             word_order = \"ABCD\"\n\
             max_silence = \"1m\"\n\
             reprobe = \"5m\"\n\
             write_functions = [5, 6, 15, 16]\n\
             write_during_poll = false\n\
             \n\
             [[devices.tags]]\n\
             name = \"t\"\n\
             area = \"holding\"\n\
             address = 0\n\
             type = \"u16\"\n"
        );
    }

    #[test]
    fn one_device_and_what_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_in(dir.path(), "f.toml", &format!("{HEAD}{EVERYTHING}"));
        let text = expand(&loaded.config, Some("drive1")).unwrap();
        let names = |header: &str| -> Vec<String> {
            text.split(header)
                .skip(1)
                .filter_map(|t| t.lines().nth(1))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(names("[[buses]]"), ["name = \"line1\""]);
        assert_eq!(names("[[devices]]"), ["name = \"drive1\""]);
        // `hot` has a snapshot of drive1 but watches pump7: not shown.
        assert_eq!(
            names("[[rules]]"),
            ["name = \"band\"", "name = \"both\""],
            "{text}"
        );
        assert!(names("[[meters]]").is_empty());
        let text = expand(&loaded.config, Some("pump7")).unwrap();
        assert!(!text.contains("[[buses]]"), "{text}");
        assert_eq!(text.matches("[[rules]]").count(), 7);
        assert_eq!(text.matches("[[meters]]").count(), 2);
    }

    #[test]
    fn an_unknown_device_names_the_close_ones() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_in(dir.path(), "f.toml", &format!("{HEAD}{EVERYTHING}"));
        let err = expand(&loaded.config, Some("pump8")).unwrap_err();
        assert_eq!(err.close, ["pump7"]);
        assert_eq!(err.to_string(), "no device \"pump8\"; did you mean pump7?");
        let err = expand(&loaded.config, Some("boiler")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no device \"boiler\"; the devices are pump7, drive1 and meter-v6"
        );
        let many = UnknownDevice {
            name: "x".into(),
            close: vec!["a1".into(), "a2".into(), "a3".into()],
            devices: vec![],
        };
        assert_eq!(
            many.to_string(),
            "no device \"x\"; did you mean a1, a2 or a3?"
        );
        let none = UnknownDevice {
            name: "x".into(),
            close: vec![],
            devices: vec![],
        };
        assert_eq!(
            none.to_string(),
            "no device \"x\"; the configuration has no devices"
        );
        let lots = UnknownDevice {
            name: "x".into(),
            close: vec![],
            devices: (1..=14).map(|i| format!("p{i}")).collect(),
        };
        assert!(lots.to_string().ends_with("p11, p12 and 2 more"), "{lots}");
    }

    #[test]
    fn durations_take_their_largest_whole_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(7_200_000), "2000h"),
            (Duration::from_secs(5400), "90m"),
            (Duration::from_secs(86_400 * 7), "168h"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(1750), "1750us"),
            (Duration::new(1, 1), "1000000001ns"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want);
            assert_eq!(crate::config::units::parse_duration(want), Ok(d));
        }
    }

    #[test]
    fn numbers_parse_back_to_the_same_f64() {
        for x in [
            80.0,
            -0.5,
            0.1,
            1e-7,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            9_007_199_254_740_992.0,
            123_456_789.123_456_78,
        ] {
            let text = format!("x = {}", number(x));
            let doc: toml_edit::DocumentMut = text.parse().unwrap();
            let back = doc["x"]
                .as_float()
                .or(doc["x"].as_integer().map(|i| i as f64));
            assert_eq!(back, Some(x), "{text}");
        }
        for x in [2.0, 1e300, 2.5e-7, -1e16, 1e-5, 0.0] {
            let text = format!("x = {}", float(x));
            let doc: toml_edit::DocumentMut = text.parse().unwrap();
            assert_eq!(doc["x"].as_float(), Some(x), "{text}");
        }
        assert_eq!(number(80.0).to_string(), "80");
        assert_eq!(number(0.1).to_string(), "0.1");
        assert_eq!(number(1e300).to_string(), "1e300");
        assert_eq!(number(-2.5e-7).to_string(), "-2.5e-7");
        assert_eq!(allowed(&Value::Float(2.0)).to_string(), "2.0");
        assert_eq!(allowed(&Value::Float(1e20)).to_string(), "1e20");
    }

    #[test]
    fn any_text_round_trips() {
        let texts = [
            "plain",
            "quote \" and 'single'",
            "back\\slash \\n not a newline",
            "\nleading newline",
            "lines\r\nwith CRLF\n",
            "tab\there, bell \u{7}, delete \u{7f}",
            "unicode: Ωμέγα 水泵 🚰",
            "'''triple''' and \"\"\"triple\"\"\"",
            "",
        ];
        let mut rules = String::new();
        for (i, t) in texts.iter().enumerate() {
            rules.push_str(&format!(
                "[[rules]]\nname = \"r{i}\"\ntag = \"p1.t\"\ncondition = \"above\"\nlimit = 1\nlocation = {}\n[rules.workorder]\ndescription = {}\n\n",
                toml_edit::Value::from(*t),
                toml_edit::Value::from(*t),
            ));
        }
        let text = round_trip(&format!(
            "[[devices]]\nname = \"p1\"\ntcp = \"plc1\"\ntags = [ {{ name = \"t\", address = 40001 }} ]\n\n{rules}"
        ));
        assert_eq!(text.matches("[[rules]]").count(), texts.len());
    }

    #[test]
    fn a_device_without_tags_stays_without() {
        let text = round_trip("[[devices]]\nname = \"p1\"\ntcp = \"plc1\"\n");
        assert!(!text.contains("tags"), "{text}");
    }
}
