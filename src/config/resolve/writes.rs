//! Write-back settings: a tag's `writable`, `min`, `max`, `allowed`,
//! `max_rate` and `confirm`, a device's `write_functions`, and whether a
//! writable tag can be written at all (its area, its length, the function
//! codes its device accepts).
//!
//! Nothing is writable by accident: a write key on a tag that is not
//! `writable = true` is an error rather than a setting that waits for
//! someone to add the flag. Each refusal names the tag's own key, so a
//! technician is sent to the line (or the CSV cell) to change.

use crate::config::problem::Severity;
use crate::config::raw::{ALLOWED_SEPARATOR, RawAllowed, RawState};
use crate::config::report::{Ctx, TagSite};
use crate::config::{MAX_WRITE_REGISTERS, WriteFunctions};
use crate::tag::{Area, DataType, Tag, Value, WriteAccess};

/// The write keys of one tag, as written.
#[derive(Debug, Default)]
pub(super) struct RawWrite {
    /// `writable`.
    pub writable: Option<bool>,
    /// `min`.
    pub min: Option<f64>,
    /// `max`.
    pub max: Option<f64>,
    /// `allowed`.
    pub allowed: Option<RawAllowed>,
    /// `max_rate`.
    pub max_rate: Option<i64>,
    /// `confirm`.
    pub confirm: Option<bool>,
}

/// The write access of `tag` (resolved but for its write keys); `None`
/// when it is not writable or a write key has an error (reported).
pub(super) fn access(
    ctx: &mut Ctx,
    site: &TagSite,
    raw: RawWrite,
    tag: &Tag,
) -> Option<WriteAccess> {
    let err = |ctx: &mut Ctx, key: &str, msg: String| {
        ctx.tag_problem(site, Some(key), Severity::Error, msg)
    };
    if raw.writable != Some(true) {
        let given = [
            ("min", raw.min.is_some()),
            ("max", raw.max.is_some()),
            ("allowed", raw.allowed.is_some()),
            ("max_rate", raw.max_rate.is_some()),
            ("confirm", raw.confirm.is_some()),
        ];
        for (key, _) in given.iter().filter(|(_, g)| *g) {
            err(
                ctx,
                key,
                format!("{key} has no effect: the tag is not writable; add writable = true"),
            );
        }
        return None;
    }

    let errors_before = error_count(ctx);
    match tag.area {
        Area::DiscreteInput | Area::InputRegister => {
            let what = if tag.area == Area::DiscreteInput {
                "a discrete input"
            } else {
                "an input register"
            };
            err(
                ctx,
                "writable",
                format!(
                    "{what} is read-only: Modbus has no function that writes it; only coils and holding registers can be written"
                ),
            );
            return None;
        }
        Area::Coil | Area::HoldingRegister => {}
    }
    if let DataType::String(n) = tag.data_type
        && n > MAX_WRITE_REGISTERS
    {
        err(
            ctx,
            "writable",
            format!(
                "a string of {n} registers cannot be written: one write (FC16) takes at most {MAX_WRITE_REGISTERS} registers, and a tag is never written in parts"
            ),
        );
    }

    let numeric = tag.data_type.is_numeric();
    let mut bounds = [("min", raw.min), ("max", raw.max)];
    for (key, given) in &mut bounds {
        let Some(x) = *given else { continue };
        if !x.is_finite() {
            err(ctx, key, format!("{key} must be a finite number"));
            *given = None;
        } else if !numeric {
            err(
                ctx,
                key,
                format!(
                    "{key} does not apply to a {} tag: min and max bound numbers; list the values it may take in allowed",
                    tag.data_type.name()
                ),
            );
            *given = None;
        } else if let Some(range) = Range::of(tag)
            && !range.holds(x)
        {
            err(
                ctx,
                key,
                format!(
                    "{key} {} cannot be written to the register: {}",
                    num(x),
                    range.describe()
                ),
            );
        }
    }
    let [(_, min), (_, max)] = bounds;
    if let (Some(lo), Some(hi)) = (min, max)
        && lo > hi
    {
        err(
            ctx,
            "max",
            format!("max {} is below min {}", num(hi), num(lo)),
        );
    }

    let allowed_given = raw.allowed.is_some();
    let allowed = match raw.allowed {
        None => Vec::new(),
        Some(RawAllowed(values)) if values.is_empty() => {
            err(
                ctx,
                "allowed",
                "allowed is empty: no value could be written; list the values, or leave allowed out"
                    .into(),
            );
            Vec::new()
        }
        Some(RawAllowed(values)) => allowed_values(ctx, site, tag, values, min, max),
    };

    let max_rate = match raw.max_rate {
        None => None,
        Some(n) => match u32::try_from(n) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                err(
                    ctx,
                    "max_rate",
                    format!(
                        "max_rate {n} is out of range: it counts writes a minute, at least 1 (leave it out for no limit)"
                    ),
                );
                None
            }
        },
    };

    // Judged on the keys as written: one with a mistake is reported
    // already, and is no sign of a tag left open.
    if numeric && raw.min.is_none() && raw.max.is_none() && !allowed_given {
        let range = Range::of(tag)
            .map(|r| format!(" ({})", r.describe()))
            .unwrap_or_default();
        ctx.tag_problem(
            site,
            Some("writable"),
            Severity::Warning,
            format!(
                "any value the register holds can be written{range}; bound it with min and max, or list the allowed values"
            ),
        );
    }

    if error_count(ctx) > errors_before {
        return None;
    }
    Some(WriteAccess {
        min,
        max,
        allowed,
        max_rate,
        confirm: raw.confirm.unwrap_or(true),
    })
}

/// The `allowed` values of `tag`, each suited to its type, within its
/// `min`/`max` and the register; the ones that are not are reported.
fn allowed_values(
    ctx: &mut Ctx,
    site: &TagSite,
    tag: &Tag,
    values: Vec<RawState>,
    min: Option<f64>,
    max: Option<f64>,
) -> Vec<Value> {
    let type_name = tag.data_type.name();
    let mut out: Vec<Value> = Vec::new();
    for raw in values {
        if matches!(&raw, RawState::Text(t) if t.is_empty()) {
            ctx.tag_problem(
                site,
                Some("allowed"),
                Severity::Error,
                format!(
                    "allowed has an empty value; in a CSV cell, separate the values with {ALLOWED_SEPARATOR}, like 0{ALLOWED_SEPARATOR}1{ALLOWED_SEPARATOR}2"
                ),
            );
            continue;
        }
        let shown = match &raw {
            RawState::Bool(b) => b.to_string(),
            RawState::Int(i) => i.to_string(),
            RawState::Float(x) => num(*x),
            RawState::Text(t) => format!("\"{t}\""),
        };
        let value = match tag.data_type {
            DataType::Bool | DataType::Bit(_) => match raw {
                RawState::Bool(b) => Ok(Value::Bool(b)),
                RawState::Int(0) => Ok(Value::Bool(false)),
                RawState::Int(1) => Ok(Value::Bool(true)),
                RawState::Float(x) if x == 0.0 || x == 1.0 => Ok(Value::Bool(x == 1.0)),
                _ => Err(format!(
                    "allowed value {shown} does not suit a {type_name} tag: use true or false (or 1 and 0)"
                )),
            },
            DataType::String(n) => match raw {
                RawState::Text(t) => text_fits(&t, n).map(|()| Value::Text(t)),
                // A code of digits is a text for a string tag: a CSV cell
                // cannot quote it.
                RawState::Int(i) => {
                    let t = i.to_string();
                    text_fits(&t, n).map(|()| Value::Text(t))
                }
                _ => Err(format!(
                    "allowed value {shown} does not suit a string tag: write it as a text in quotes"
                )),
            },
            _ => match raw {
                RawState::Int(i) => number(tag, i as f64, &shown, min, max).map(|()| Value::Int(i)),
                RawState::Float(x) => number(tag, x, &shown, min, max).map(|()| Value::Float(x)),
                RawState::Bool(_) => Err(format!(
                    "allowed value {shown} does not suit a {type_name} tag: it takes numbers"
                )),
                RawState::Text(t) => {
                    let hint = if t.contains([';', ',']) {
                        format!(
                            " (separate the values of a CSV cell with {ALLOWED_SEPARATOR}, like 0{ALLOWED_SEPARATOR}1{ALLOWED_SEPARATOR}2)"
                        )
                    } else {
                        String::new()
                    };
                    Err(format!(
                        "allowed value \"{t}\" is a text, not a number: a {type_name} tag takes numbers{hint}"
                    ))
                }
            },
        };
        match value {
            Ok(v) if out.contains(&v) => ctx.tag_problem(
                site,
                Some("allowed"),
                Severity::Warning,
                format!("allowed value {shown} is listed twice"),
            ),
            Ok(v) => out.push(v),
            Err(message) => ctx.tag_problem(site, Some("allowed"), Severity::Error, message),
        }
    }
    out
}

/// Whether the allowed number `x` (shown as `shown`) can be written to
/// `tag`: within `min`/`max`, within the register, and for an integer
/// register without scaling a whole number.
fn number(
    tag: &Tag,
    x: f64,
    shown: &str,
    min: Option<f64>,
    max: Option<f64>,
) -> Result<(), String> {
    if !x.is_finite() {
        return Err(format!("allowed value {shown} is not a finite number"));
    }
    if let Some(lo) = min
        && x < lo
    {
        return Err(format!("allowed value {shown} is below min {}", num(lo)));
    }
    if let Some(hi) = max
        && x > hi
    {
        return Err(format!("allowed value {shown} is above max {}", num(hi)));
    }
    let Some(range) = Range::of(tag) else {
        return Ok(());
    };
    if !range.holds(x) {
        return Err(format!(
            "allowed value {shown} cannot be written to the register: {}",
            range.describe()
        ));
    }
    if range.integer && tag.is_unscaled() && x.fract() != 0.0 {
        return Err(format!(
            "allowed value {shown} is not a whole number, and a {} register without scale holds only whole numbers",
            tag.data_type.name()
        ));
    }
    Ok(())
}

/// Whether `text` fits a string tag of `registers` registers: ASCII, two
/// characters a register.
fn text_fits(text: &str, registers: u16) -> Result<(), String> {
    if !text.is_ascii() {
        return Err(format!(
            "allowed value \"{text}\" is not ASCII; a string tag holds ASCII characters only"
        ));
    }
    let room = usize::from(registers) * 2;
    if text.len() > room {
        return Err(format!(
            "allowed value \"{text}\" has {} characters; the tag's {registers} registers hold {room}",
            text.len()
        ));
    }
    Ok(())
}

/// What a numeric tag's register holds, raw and in engineering units.
struct Range {
    /// Lowest raw value.
    lo: f64,
    /// Highest raw value.
    hi: f64,
    /// Integer register: the raw value is rounded before it is written.
    integer: bool,
    /// The tag's type, scale and offset, for the message.
    data_type: DataType,
    scale: f64,
    offset: f64,
}

impl Range {
    /// The range of `tag`, `None` for a non-numeric tag (or a scale of 0,
    /// reported on its own).
    fn of(tag: &Tag) -> Option<Range> {
        // The largest f64 at or below i64::MAX and u64::MAX (2^63 and
        // 2^64 themselves do not fit).
        const I64_HI: f64 = 9_223_372_036_854_774_784.0;
        const U64_HI: f64 = 18_446_744_073_709_549_568.0;
        let (lo, hi, integer) = match tag.data_type {
            DataType::U16 => (0.0, f64::from(u16::MAX), true),
            DataType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX), true),
            DataType::U32 => (0.0, f64::from(u32::MAX), true),
            DataType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX), true),
            DataType::U64 => (0.0, U64_HI, true),
            DataType::I64 => (i64::MIN as f64, I64_HI, true),
            DataType::F32 => (-f64::from(f32::MAX), f64::from(f32::MAX), false),
            DataType::F64 => (-f64::MAX, f64::MAX, false),
            DataType::Bool | DataType::Bit(_) | DataType::String(_) => return None,
        };
        if tag.scale == 0.0 || !tag.scale.is_finite() || !tag.offset.is_finite() {
            return None;
        }
        Some(Range {
            lo,
            hi,
            integer,
            data_type: tag.data_type,
            scale: tag.scale,
            offset: tag.offset,
        })
    }

    /// Whether the engineering value `x`, scaled back (`(x − offset) /
    /// scale`, rounded for an integer register), fits the register.
    fn holds(&self, x: f64) -> bool {
        let raw = (x - self.offset) / self.scale;
        let raw = if self.integer { raw.round() } else { raw };
        raw.is_finite() && self.lo <= raw && raw <= self.hi
    }

    /// `a u16 holds 0 to 65535, which is 0 to 6553.5 in engineering
    /// units (scale 0.1, offset 0)`.
    fn describe(&self) -> String {
        let a = self.lo * self.scale + self.offset;
        let b = self.hi * self.scale + self.offset;
        let (a, b) = if a <= b { (a, b) } else { (b, a) };
        format!(
            "{} holds {} to {}, which is {} to {} in engineering units (scale {}, offset {})",
            with_article(self.data_type.name()),
            num(self.lo),
            num(self.hi),
            num(a),
            num(b),
            num(self.scale),
            num(self.offset)
        )
    }
}

/// `a u16`, `an i16`, `an f32`: the article as the name is said.
fn with_article(name: &str) -> String {
    let article = if name.starts_with(['i', 'f']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {name}")
}

/// A number for a message: as written, without the noise of binary
/// fractions (`6553.5`, not `6553.500000000001`).
fn num(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() >= 1e15 || x.abs() < 1e-6 {
        return format!("{x:e}");
    }
    let fixed = format!("{x:.6}");
    fixed
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// A device's `write_functions`: the codes given (each 5, 6, 15 or 16,
/// once), all four when the key is left out, none for `[]`.
pub(super) fn functions(ctx: &mut Ctx, field: &str, raw: Option<Vec<i64>>) -> WriteFunctions {
    let Some(codes) = raw else {
        return WriteFunctions::default();
    };
    let mut out = WriteFunctions {
        fc5: false,
        fc6: false,
        fc15: false,
        fc16: false,
    };
    for (i, code) in codes.into_iter().enumerate() {
        let at = format!("{field}.write_functions[{i}]");
        let slot = match code {
            5 => &mut out.fc5,
            6 => &mut out.fc6,
            15 => &mut out.fc15,
            16 => &mut out.fc16,
            other => {
                ctx.error(
                    &at,
                    format!(
                        "function code {other} is not a write function; use 5 (one coil), 6 (one register), 15 (coils) or 16 (registers)"
                    ),
                );
                continue;
            }
        };
        if *slot {
            ctx.error(&at, format!("function code {code} is listed twice"));
        }
        *slot = true;
    }
    out
}

/// Every writable tag of device `device` must have a function code the
/// device accepts.
pub(super) fn check_codes(
    ctx: &mut Ctx,
    device: &str,
    tags: &[(TagSite, Tag)],
    functions: &WriteFunctions,
) {
    for (site, tag) in tags.iter().filter(|(_, t)| t.write.is_some()) {
        if functions.for_tag(tag).is_some() {
            continue;
        }
        let needs = if tag.area == Area::Coil {
            "function 5 or 15"
        } else if tag.width() == 1 {
            "function 6 or 16"
        } else {
            "function 16"
        };
        let what = match tag.data_type {
            _ if tag.area == Area::Coil => "a coil".to_owned(),
            DataType::Bit(_) => "a bit of a register (written back whole)".to_owned(),
            DataType::String(1) => "a string of one register".to_owned(),
            DataType::String(n) => format!("a string of {n} registers"),
            t if t.width() == 1 => format!("{} (one register)", with_article(t.name())),
            t => format!("{} ({} registers)", with_article(t.name()), t.width()),
        };
        let accepts = functions.codes();
        let accepts = if accepts.is_empty() {
            "write_functions = [], so nothing on it is writable".to_owned()
        } else {
            format!(
                "write_functions = [{}]",
                accepts
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        ctx.tag_problem(
            site,
            Some("writable"),
            Severity::Error,
            format!(
                "the tag cannot be written: {what} needs {needs}, and device \"{device}\" has {accepts}"
            ),
        );
    }
}

fn error_count(ctx: &Ctx) -> usize {
    ctx.problems.iter().filter(|p| p.is_error()).count()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{Device, Loaded, Origin, Problems, WriteFunctions, load_with_env};
    use crate::tag::{Area, DataType, Tag, Value, WriteAccess};

    /// A gateway before its `[[devices]]`: the device sections follow it.
    const HEAD: &str = "[gateway]\nid = \"gw1\"\ndata_dir = \".\"\n\n[http]\nlisten = \"\"\n\n";

    /// Lines of `HEAD`.
    const HEAD_LINES: usize = 7;

    fn load_in(dir: &Path, text: &str, env: &[(&str, &str)]) -> Result<Loaded, Problems> {
        let path = dir.join("fieldgate.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(&path, &env)
    }

    fn load(text: &str) -> Result<Loaded, Problems> {
        let dir = tempfile::tempdir().unwrap();
        load_in(dir.path(), text, &[])
    }

    /// `HEAD` and one device `plc` with `keys` and the inline `tags`.
    fn device(keys: &str, tags: &[&str]) -> String {
        format!(
            "{HEAD}[[devices]]\nname = \"plc\"\ntcp = \"127.0.0.1:5020\"\n{keys}tags = [\n{}]\n",
            tags.iter()
                .map(|t| format!("  {{ {t} }},\n"))
                .collect::<String>()
        )
    }

    fn loaded(text: &str) -> Loaded {
        match load(text) {
            Ok(l) => l,
            Err(p) => panic!("does not load:\n{p}\n{text}"),
        }
    }

    fn plc(l: &Loaded) -> &Device {
        l.config.device("plc").unwrap()
    }

    /// Every problem of `problems` of `severity`, as `line: field: message`
    /// (TOML) or `file:line: column: message` (CSV, the file's name only).
    fn render(problems: &[crate::config::Problem], errors: bool) -> Vec<String> {
        problems
            .iter()
            .filter(|p| p.is_error() == errors)
            .map(|p| match &p.origin {
                Origin::Toml { line, .. } => {
                    format!("{}: {}: {}", line.unwrap_or(0), p.field, p.message)
                }
                Origin::Csv { file, line, column } => format!(
                    "{}:{line}: {}: {}",
                    file.file_name().unwrap().to_string_lossy(),
                    column.as_deref().unwrap_or("-"),
                    p.message
                ),
                Origin::Env { var } => format!("{var}: {}: {}", p.field, p.message),
                Origin::File { .. } => format!("file: {}: {}", p.field, p.message),
            })
            .collect()
    }

    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("loads:\n{text}"),
            Err(p) => render(&p.0, true),
        }
    }

    fn warnings(text: &str) -> Vec<String> {
        render(&loaded(text).warnings, false)
    }

    /// The line of the first tag of [`device`] with no device keys.
    const TAG_LINE: usize = HEAD_LINES + 5;

    /// The one error of one tag, expected at the first tag's line.
    fn one_error(tag: &str, keys: &str, field: &str, message: &str) {
        let text = device(keys, &[tag]);
        let got = errors(&text);
        let line = TAG_LINE + keys.lines().count();
        let want = format!("{line}: devices[0].tags[0].{field}: {message}");
        assert!(
            got.len() == 1 && got[0].starts_with(&want),
            "{tag}\nwant {want}…\ngot  {got:#?}"
        );
    }

    #[test]
    fn nothing_is_writable_by_default() {
        let l = loaded(&device("", &["name = \"sp\", address = 40001"]));
        assert_eq!(plc(&l).tags[0].write, None);
        assert_eq!(plc(&l).write_functions, WriteFunctions::default());
        assert!(!plc(&l).write_during_poll);
        assert_eq!(l.config.writes.max_age, Duration::from_secs(10));
        assert_eq!(l.config.writes_summary(), None);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn every_key_is_read() {
        let text = format!(
            "{}\n[writes]\nmax_age = \"30s\"\n",
            device(
                "write_functions = [16, 5]\nwrite_during_poll = true\n",
                &[
                    "name = \"sp\", address = 40001, type = \"f32\", scale = 0.1, writable = true, min = 0, max = 120.5, max_rate = 6, confirm = false",
                    "name = \"mode\", address = 40003, writable = true, allowed = [0, 1, 2]",
                    "name = \"reset\", address = \"00001\", writable = true, allowed = [true]",
                    "name = \"run\", address = 40004, type = \"bit\", bit = 3, writable = true, allowed = [1, 0]",
                    "name = \"recipe\", address = 40005, type = \"string\", length = 4, writable = true, allowed = [\"A-12\", \"B-7\", 42]",
                    "name = \"speed\", address = 40009, type = \"i16\", writable = true, min = -100, max = 100",
                    "name = \"temp\", address = 30001, type = \"f32\"",
                ],
            )
        );
        let l = loaded(&text);
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let d = plc(&l);
        assert_eq!(
            d.write_functions,
            WriteFunctions {
                fc5: true,
                fc6: false,
                fc15: false,
                fc16: true
            }
        );
        assert!(d.write_during_poll);
        let write = |name: &str| d.tag(name).unwrap().write.clone();
        assert_eq!(
            write("sp"),
            Some(WriteAccess {
                min: Some(0.0),
                max: Some(120.5),
                allowed: vec![],
                max_rate: Some(6),
                confirm: false,
            })
        );
        assert_eq!(
            write("mode").unwrap().allowed,
            [Value::Int(0), Value::Int(1), Value::Int(2)]
        );
        assert!(write("mode").unwrap().confirm, "confirm is on by default");
        assert_eq!(write("reset").unwrap().allowed, [Value::Bool(true)]);
        assert_eq!(
            write("run").unwrap().allowed,
            [Value::Bool(true), Value::Bool(false)]
        );
        assert_eq!(
            write("recipe").unwrap().allowed,
            [
                Value::Text("A-12".into()),
                Value::Text("B-7".into()),
                Value::Text("42".into())
            ]
        );
        assert_eq!(write("speed").unwrap().min, Some(-100.0));
        assert_eq!(write("temp"), None);
        assert_eq!(l.config.writes.max_age, Duration::from_secs(30));
        assert_eq!(
            l.config.writes_summary().as_deref(),
            Some("6 writable tags on 1 device (max_age 30s); during polls on plc")
        );
    }

    #[test]
    fn tables_of_tags_are_read_too() {
        let text = format!(
            "{HEAD}[[devices]]\nname = \"plc\"\ntcp = \"127.0.0.1:5020\"\n\n\
             [[devices.tags]]\nname = \"sp\"\naddress = 40001\nwritable = true\nmin = 0\nmax = 100\n\n\
             [[devices.tags]]\nname = \"pv\"\naddress = 30001\nmin = 0\n"
        );
        let got = errors(&text);
        assert_eq!(
            got,
            [format!(
                "{}: devices[0].tags[1].min: min has no effect: the tag is not writable; add writable = true",
                HEAD_LINES + 15
            )]
        );
        let l = loaded(&text.replace("address = 30001\nmin = 0\n", "address = 30001\n"));
        assert_eq!(
            plc(&l).tag("sp").unwrap().write.as_ref().unwrap().max,
            Some(100.0)
        );
    }

    #[test]
    fn a_write_key_without_writable_is_an_error_at_its_key() {
        for key in [
            "min = 0",
            "max = 10",
            "allowed = [1]",
            "max_rate = 2",
            "confirm = false",
        ] {
            let field = key.split(' ').next().unwrap();
            for writable in ["", ", writable = false"] {
                one_error(
                    &format!("name = \"sp\", address = 40001{writable}, {key}"),
                    "",
                    field,
                    &format!("{field} has no effect: the tag is not writable; add writable = true"),
                );
            }
        }
    }

    #[test]
    fn read_only_areas_are_refused() {
        one_error(
            "name = \"di\", address = 10001, writable = true",
            "",
            "writable",
            "a discrete input is read-only: Modbus has no function that writes it; only coils and holding registers can be written",
        );
        one_error(
            "name = \"ir\", area = \"input\", address = 4, type = \"f32\", writable = true, min = 0, max = 1",
            "",
            "writable",
            "an input register is read-only",
        );
    }

    #[test]
    fn a_string_longer_than_one_write_is_refused() {
        let tag = |n: u16| {
            format!(
                "name = \"label\", address = 40001, type = \"string\", length = {n}, writable = true"
            )
        };
        loaded(&device("", &[&tag(123)]));
        one_error(
            &tag(124),
            "",
            "writable",
            "a string of 124 registers cannot be written: one write (FC16) takes at most 123 registers",
        );
    }

    #[test]
    fn a_tag_needs_a_function_code_its_device_accepts() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "name = \"c\", address = \"00001\", writable = true",
                "write_functions = [6, 16]\n",
                "the tag cannot be written: a coil needs function 5 or 15, and device \"plc\" has write_functions = [6, 16]",
            ),
            (
                "name = \"w\", address = 40001, writable = true, min = 0, max = 9",
                "write_functions = [5, 15]\n",
                "the tag cannot be written: a u16 (one register) needs function 6 or 16, and device \"plc\" has write_functions = [5, 15]",
            ),
            (
                "name = \"b\", address = 40001, type = \"bit\", bit = 2, writable = true",
                "write_functions = [5]\n",
                "the tag cannot be written: a bit of a register (written back whole) needs function 6 or 16",
            ),
            (
                "name = \"f\", address = 40001, type = \"f32\", writable = true, min = 0, max = 9",
                "write_functions = [6]\n",
                "the tag cannot be written: an f32 (2 registers) needs function 16, and device \"plc\" has write_functions = [6]",
            ),
            (
                "name = \"s\", address = 40001, type = \"string\", length = 3, writable = true",
                "write_functions = [6]\n",
                "the tag cannot be written: a string of 3 registers needs function 16",
            ),
            (
                "name = \"i\", address = 40001, type = \"i16\", writable = true, min = 0, max = 9",
                "write_functions = []\n",
                "the tag cannot be written: an i16 (one register) needs function 6 or 16, and device \"plc\" has write_functions = [], so nothing on it is writable",
            ),
        ];
        for (tag, keys, message) in cases {
            one_error(tag, keys, "writable", message);
        }
        // One of the two is enough; FC16 writes one register too.
        for (tag, keys) in [
            (
                "name = \"c\", address = \"00001\", writable = true",
                "write_functions = [15]\n",
            ),
            (
                "name = \"w\", address = 40001, writable = true, min = 0, max = 9",
                "write_functions = [16]\n",
            ),
            (
                "name = \"s\", address = 40001, type = \"string\", length = 1, writable = true",
                "write_functions = [6]\n",
            ),
        ] {
            loaded(&device(keys, &[tag]));
        }
        // Without writable tags, any list is fine (an empty one too).
        loaded(&device(
            "write_functions = []\n",
            &["name = \"w\", address = 40001"],
        ));
    }

    #[test]
    fn write_functions_take_only_write_codes_once() {
        let text = device(
            "write_functions = [16, 3, 16]\n",
            &["name = \"w\", address = 40001"],
        );
        let line = HEAD_LINES + 4;
        assert_eq!(
            errors(&text),
            [
                format!(
                    "{line}: devices[0].write_functions[1]: function code 3 is not a write function; use 5 (one coil), 6 (one register), 15 (coils) or 16 (registers)"
                ),
                format!("{line}: devices[0].write_functions[2]: function code 16 is listed twice"),
            ]
        );
        let got = errors(&device(
            "write_functions = 16\n",
            &["name = \"w\", address = 40001"],
        ));
        assert!(
            got.len() == 1
                && got[0].starts_with(&format!("{line}: devices[0].write_functions: wrong type")),
            "{got:?}"
        );
    }

    #[test]
    fn min_and_max_bound_numbers_in_order() {
        one_error(
            "name = \"sp\", address = 40001, writable = true, min = 50, max = 10",
            "",
            "max",
            "max 10 is below min 50",
        );
        for (tag, ty) in [
            ("address = \"00001\"", "bool"),
            ("address = 40001, type = \"bit\", bit = 0", "bit"),
            ("address = 40001, type = \"string\", length = 2", "string"),
        ] {
            for key in ["min", "max"] {
                one_error(
                    &format!("name = \"t\", {tag}, writable = true, {key} = 1"),
                    "",
                    key,
                    &format!(
                        "{key} does not apply to a {ty} tag: min and max bound numbers; list the values it may take in allowed"
                    ),
                );
            }
        }
        one_error(
            "name = \"sp\", address = 40001, type = \"f32\", writable = true, min = nan, max = 1",
            "",
            "min",
            "min must be a finite number",
        );
    }

    #[test]
    fn min_and_max_must_fit_the_register_after_inverse_scaling() {
        one_error(
            "name = \"sp\", address = 40001, writable = true, min = 0, max = 70000",
            "",
            "max",
            "max 70000 cannot be written to the register: a u16 holds 0 to 65535, which is 0 to 65535 in engineering units (scale 1, offset 0)",
        );
        one_error(
            "name = \"sp\", address = 40001, writable = true, min = -1, max = 10",
            "",
            "min",
            "min -1 cannot be written to the register: a u16 holds 0 to 65535",
        );
        one_error(
            "name = \"sp\", address = 40001, scale = 0.1, offset = -20, writable = true, min = 0, max = 7000",
            "",
            "max",
            "max 7000 cannot be written to the register: a u16 holds 0 to 65535, which is -20 to 6533.5 in engineering units (scale 0.1, offset -20)",
        );
        one_error(
            "name = \"sp\", address = 40001, type = \"i16\", scale = -1, writable = true, min = -32768, max = 0",
            "",
            "min",
            "min -32768 cannot be written to the register: an i16 holds -32768 to 32767, which is -32767 to 32768 in engineering units (scale -1, offset 0)",
        );
        one_error(
            "name = \"sp\", address = 40001, type = \"f32\", writable = true, min = 0, max = 1e39",
            "",
            "max",
            "max 1e39 cannot be written to the register: an f32 holds",
        );
        // The edges themselves fit, rounded as the write rounds them.
        loaded(&device(
            "",
            &[
                "name = \"a\", address = 40001, scale = 0.1, writable = true, min = 0, max = 6553.5",
                "name = \"b\", address = 40002, type = \"i32\", writable = true, min = -2147483648, max = 2147483647",
                "name = \"c\", address = 40004, type = \"u16\", writable = true, min = -0.4, max = 65535.4",
                "name = \"d\", address = 40005, type = \"f64\", writable = true, min = -1e300, max = 1e300",
            ],
        ));
    }

    #[test]
    fn allowed_values_must_suit_the_tag() {
        let cases: &[(&str, &str)] = &[
            (
                "address = 40001, writable = true, allowed = [1, \"two\"]",
                "allowed value \"two\" is a text, not a number: a u16 tag takes numbers",
            ),
            (
                "address = 40001, writable = true, allowed = [true]",
                "allowed value true does not suit a u16 tag: it takes numbers",
            ),
            (
                "address = \"00001\", writable = true, allowed = [true, 2]",
                "allowed value 2 does not suit a bool tag: use true or false (or 1 and 0)",
            ),
            (
                "address = 40001, type = \"bit\", bit = 1, writable = true, allowed = [\"on\"]",
                "allowed value \"on\" does not suit a bit tag: use true or false (or 1 and 0)",
            ),
            (
                "address = 40001, type = \"string\", length = 2, writable = true, allowed = [true]",
                "allowed value true does not suit a string tag: write it as a text in quotes",
            ),
            (
                "address = 40001, type = \"string\", length = 2, writable = true, allowed = [\"ABCDE\"]",
                "allowed value \"ABCDE\" has 5 characters; the tag's 2 registers hold 4",
            ),
            (
                "address = 40001, type = \"string\", length = 2, writable = true, allowed = [\"Ü\"]",
                "allowed value \"Ü\" is not ASCII; a string tag holds ASCII characters only",
            ),
            (
                "address = 40001, writable = true, min = 0, max = 10, allowed = [0, 12]",
                "allowed value 12 is above max 10",
            ),
            (
                "address = 40001, writable = true, min = 5, allowed = [2]",
                "allowed value 2 is below min 5",
            ),
            (
                "address = 40001, writable = true, allowed = [70000]",
                "allowed value 70000 cannot be written to the register: a u16 holds 0 to 65535",
            ),
            (
                "address = 40001, writable = true, allowed = [1.5]",
                "allowed value 1.5 is not a whole number, and a u16 register without scale holds only whole numbers",
            ),
            (
                "address = 40001, writable = true, allowed = []",
                "allowed is empty: no value could be written; list the values, or leave allowed out",
            ),
        ];
        for (tag, message) in cases {
            one_error(&format!("name = \"t\", {tag}"), "", "allowed", message);
        }
        // Scaled, a fraction is a value like any other.
        let l = loaded(&device(
            "",
            &["name = \"t\", address = 40001, scale = 0.5, writable = true, allowed = [1.5, 2]"],
        ));
        assert_eq!(
            plc(&l).tags[0].write.as_ref().unwrap().allowed,
            [Value::Float(1.5), Value::Int(2)]
        );
        // Every bad value is reported, not only the first.
        let got = errors(&device(
            "",
            &["name = \"t\", address = 40001, writable = true, allowed = [\"a\", 1, \"b\"]"],
        ));
        assert_eq!(got.len(), 2, "{got:?}");
    }

    #[test]
    fn max_rate_counts_writes_a_minute() {
        for n in ["0", "-3", "5000000000"] {
            one_error(
                &format!("name = \"t\", address = \"00001\", writable = true, max_rate = {n}"),
                "",
                "max_rate",
                &format!(
                    "max_rate {n} is out of range: it counts writes a minute, at least 1 (leave it out for no limit)"
                ),
            );
        }
    }

    #[test]
    fn unbounded_numbers_and_repeated_values_are_warned_about() {
        let text = device(
            "",
            &[
                "name = \"a\", address = 40001, scale = 0.1, writable = true",
                "name = \"b\", address = 40002, writable = true, min = 0",
                "name = \"c\", address = 40003, writable = true, allowed = [1, 2, 1]",
                "name = \"d\", address = \"00001\", writable = true",
                "name = \"e\", address = 40004, type = \"string\", length = 2, writable = true",
            ],
        );
        assert_eq!(
            warnings(&text),
            [
                format!(
                    "{TAG_LINE}: devices[0].tags[0].writable: any value the register holds can be written \
                     (a u16 holds 0 to 65535, which is 0 to 6553.5 in engineering units (scale 0.1, offset 0)); \
                     bound it with min and max, or list the allowed values"
                ),
                format!(
                    "{}: devices[0].tags[2].allowed: allowed value 1 is listed twice",
                    TAG_LINE + 2
                ),
            ]
        );
        let l = loaded(&text);
        assert_eq!(
            plc(&l).tag("c").unwrap().write.as_ref().unwrap().allowed,
            [Value::Int(1), Value::Int(2)]
        );
    }

    const CSV_DEVICE: &str =
        "[[devices]]\nname = \"plc\"\ntcp = \"127.0.0.1:5020\"\ntags = \"tags.csv\"\n";

    fn with_csv(csv: &str) -> (tempfile::TempDir, Result<Loaded, Problems>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tags.csv"), csv).unwrap();
        let result = load_in(dir.path(), &format!("{HEAD}{CSV_DEVICE}"), &[]);
        (dir, result)
    }

    #[test]
    fn csv_columns() {
        let csv = "name,address,type,length,scale,writable,min,max,allowed,max_rate,confirm\n\
                   sp,40001,f32,,0.1,true,0,120,,6,false\n\
                   mode,40003,u16,,,TRUE,,,0|1| 2,,\n\
                   reset,00001,,,,true,,,true,,\n\
                   one,40004,u16,,,true,,,5,,\n\
                   recipe,40005,string,4,,true,,,A-12|B-7|42,,\n\
                   pv,30001,f32,,,,,,,,\n\
                   off,40010,u16,,,FALSE,,,,,\n";
        let (_dir, result) = with_csv(csv);
        let l = result.unwrap_or_else(|p| panic!("{p}\n{csv}"));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
        let write = |name: &str| plc(&l).tag(name).unwrap().write.clone();
        assert_eq!(
            write("sp"),
            Some(WriteAccess {
                min: Some(0.0),
                max: Some(120.0),
                allowed: vec![],
                max_rate: Some(6),
                confirm: false,
            })
        );
        assert_eq!(
            write("mode").unwrap().allowed,
            [Value::Int(0), Value::Int(1), Value::Int(2)]
        );
        assert_eq!(write("reset").unwrap().allowed, [Value::Bool(true)]);
        assert_eq!(write("one").unwrap().allowed, [Value::Int(5)]);
        assert_eq!(
            write("recipe").unwrap().allowed,
            [
                Value::Text("A-12".into()),
                Value::Text("B-7".into()),
                Value::Text("42".into())
            ]
        );
        assert_eq!(write("pv"), None);
        assert_eq!(write("off"), None);
    }

    #[test]
    fn csv_problems_name_the_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "name,address,min\npv,40001,0\n",
                "tags.csv:2: min: min has no effect: the tag is not writable; add writable = true",
            ),
            (
                "name,address,writable\ndi,10001,true\n",
                "tags.csv:2: writable: a discrete input is read-only",
            ),
            (
                "name,address,writable,allowed\nmode,40001,true,0;1;2\n",
                "tags.csv:2: allowed: allowed value \"0;1;2\" is a text, not a number: a u16 tag takes numbers \
                 (separate the values of a CSV cell with |, like 0|1|2)",
            ),
            (
                "name,address,writable,allowed\nmode,40001,true,0||2\n",
                "tags.csv:2: allowed: allowed has an empty value; in a CSV cell, separate the values with |, like 0|1|2",
            ),
            (
                "name,address,writable,min,max\nsp,40001,true,0,70000\n",
                "tags.csv:2: max: max 70000 cannot be written to the register: a u16 holds 0 to 65535",
            ),
            (
                "name,address,writable\nsp,40001,yes\n",
                "tags.csv:2: writable: not true or false",
            ),
            (
                "name,address,writable,max_rate\nc,00001,true,0\n",
                "tags.csv:2: max_rate: max_rate 0 is out of range",
            ),
        ];
        for (csv, want) in cases {
            let (_dir, result) = with_csv(csv);
            let got = match result {
                Ok(_) => panic!("loads:\n{csv}"),
                Err(p) => render(&p.0, true),
            };
            assert!(
                got.len() == 1 && got[0].starts_with(want),
                "{csv}\nwant {want}…\ngot  {got:#?}"
            );
        }
        // A function code the device lacks is reported at the CSV row too.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("tags.csv"),
            "name,address,type,writable,min,max\nsp,40001,f32,true,0,1\n",
        )
        .unwrap();
        let text = format!(
            "{HEAD}{}",
            CSV_DEVICE.replace("tags =", "write_functions = [6]\ntags =")
        );
        let got = render(&load_in(dir.path(), &text, &[]).unwrap_err().0, true);
        assert_eq!(
            got,
            [
                "tags.csv:2: writable: the tag cannot be written: an f32 (2 registers) needs function 16, and device \"plc\" has write_functions = [6]"
            ]
        );
    }

    #[test]
    fn max_age_is_between_a_second_and_an_hour() {
        let base = device("", &["name = \"c\", address = \"00001\", writable = true"]);
        let line = TAG_LINE + 4;
        for (value, shown) in [("\"0s\"", "0s"), ("\"500ms\"", "500ms"), ("\"2h\"", "2h")] {
            let got = errors(&format!("{base}\n[writes]\nmax_age = {value}\n"));
            assert_eq!(
                got,
                [format!(
                    "{line}: writes.max_age: {shown} is out of range (1s to 1h)"
                )]
            );
        }
        for value in ["\"1s\"", "\"1h\""] {
            loaded(&format!("{base}\n[writes]\nmax_age = {value}\n"));
        }
        let got = errors(&format!("{base}\n[writes]\nmaxage = \"5s\"\n"));
        assert_eq!(
            got,
            [format!(
                "{line}: writes.maxage: unknown key `maxage`; did you mean `max_age`?"
            )]
        );
        let got = errors(&format!("{base}\n[write]\nmax_age = \"5s\"\n"));
        assert!(
            got.len() == 1 && got[0].contains("unknown section `write`; did you mean `writes`?"),
            "{got:?}"
        );
        // The environment sets it like any key.
        let dir = tempfile::tempdir().unwrap();
        let l = load_in(dir.path(), &base, &[("FIELDGATE_WRITES__MAX_AGE", "45s")]).unwrap();
        assert_eq!(l.config.writes.max_age, Duration::from_secs(45));
        assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    }

    #[test]
    fn the_function_code_follows_the_tag_and_the_device() {
        let all = WriteFunctions::default();
        let only = |codes: &[u8]| WriteFunctions {
            fc5: codes.contains(&5),
            fc6: codes.contains(&6),
            fc15: codes.contains(&15),
            fc16: codes.contains(&16),
        };
        let coil = Tag::new("c", Area::Coil, 0, DataType::Bool);
        let word = Tag::new("w", Area::HoldingRegister, 0, DataType::U16);
        let bit = Tag::new("b", Area::HoldingRegister, 0, DataType::Bit(4));
        let float = Tag::new("f", Area::HoldingRegister, 0, DataType::F32);
        let text = Tag::new("s", Area::HoldingRegister, 0, DataType::String(1));
        assert_eq!(all.for_tag(&coil), Some(5));
        assert_eq!(only(&[15]).for_tag(&coil), Some(15));
        assert_eq!(only(&[6, 16]).for_tag(&coil), None);
        assert_eq!(all.for_tag(&word), Some(6));
        assert_eq!(only(&[16]).for_tag(&word), Some(16));
        assert_eq!(only(&[5, 15]).for_tag(&word), None);
        assert_eq!(only(&[16]).for_tag(&bit), Some(16));
        assert_eq!(all.for_tag(&float), Some(16));
        assert_eq!(only(&[5, 6, 15]).for_tag(&float), None);
        assert_eq!(only(&[6]).for_tag(&text), Some(6));
    }
}
