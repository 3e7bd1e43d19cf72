//! The checks that span more than one field: names that must be unique,
//! registers claimed twice, references between sections, rules that make
//! no sense. Each `check_*` records every problem it finds; none stops at
//! the first (STYLE.md, practice 6). `fieldgate check` and reloads share them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::problem::Severity;
use super::raw::{RawEvery, RawMeter, RawRule, RawState, RawWorkOrderTemplate};
use super::resolve::{Ctx, TagSite, check_name, duration_in};
use super::units::parse_duration;
use super::{
    Bus, Condition, Connection, Device, HttpConfig, Meter, MeterKind, PLACEHOLDERS, Priority, Rule,
    State, WorkOrderTemplate,
};
use crate::tag::{DataType, Tag};

/// Tag names unique per device; no two tags on the same registers unless
/// one is an `alias`; strings no longer than one request.
pub(super) fn check_device_tags(
    ctx: &mut Ctx,
    device: &str,
    tags: &[(TagSite, Tag)],
    max_registers: u16,
    max_bits: u16,
) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    for (i, (site, tag)) in tags.iter().enumerate() {
        if let Some(first) = names.insert(&tag.name, i) {
            names.insert(&tags[first].1.name, first);
            ctx.tag_problem(
                site,
                Some("name"),
                Severity::Error,
                format!(
                    "duplicate tag name \"{}\" in device \"{device}\" (first defined {})",
                    tag.name,
                    describe_site(&tags[first].0)
                ),
            );
        }
        let limit = if tag.area.is_bit() {
            max_bits
        } else {
            max_registers
        };
        if tag.width() > limit {
            ctx.tag_problem(
                site,
                Some("length"),
                Severity::Error,
                format!(
                    "the tag needs {} registers but the device reads at most {limit} per request, and a tag is never split",
                    tag.width()
                ),
            );
        }
    }

    // Sweep each area by address; `open` holds the tags that still reach
    // the current address.
    let mut order: Vec<usize> = (0..tags.len()).collect();
    order.sort_by_key(|&i| (tags[i].1.area, tags[i].1.address));
    let mut open: Vec<usize> = Vec::new();
    for &i in &order {
        let tag = &tags[i].1;
        open.retain(|&j| {
            let other = &tags[j].1;
            other.area == tag.area
                && u32::from(other.address) + u32::from(other.width()) > u32::from(tag.address)
        });
        for &j in &open {
            let other = &tags[j].1;
            if tag.alias || other.alias {
                continue;
            }
            if let (DataType::Bit(a), DataType::Bit(b)) = (tag.data_type, other.data_type)
                && a != b
            {
                continue;
            }
            ctx.tag_problem(
                &tags[i].0,
                Some("address"),
                Severity::Error,
                format!(
                    "{} {}–{} overlaps tag \"{}\" ({} {}–{}, {}); set `alias = true` on one of them if both views are meant",
                    tag.area,
                    tag.address,
                    u32::from(tag.address) + u32::from(tag.width()) - 1,
                    other.name,
                    other.area,
                    other.address,
                    u32::from(other.address) + u32::from(other.width()) - 1,
                    describe_site(&tags[j].0)
                ),
            );
        }
        open.push(i);
    }
}

fn describe_site(site: &TagSite) -> String {
    match site {
        TagSite::Toml(path) => format!("at {path}"),
        TagSite::Csv { file, line, .. } => format!("at {}:{line}", file.display()),
    }
}

/// Finds a tag by its full name `device.tag`.
fn find_tag<'a>(devices: &'a [Device], full: &str) -> Result<(&'a Device, &'a Tag), String> {
    let Some((dev, tag)) = full.split_once('.') else {
        return Err(format!(
            "\"{full}\" is not a full tag name; write device.tag (e.g. pump1.bearing_temp)"
        ));
    };
    let Some(device) = devices.iter().find(|d| d.name == dev) else {
        return Err(format!("tag \"{full}\": there is no device \"{dev}\""));
    };
    device
        .tag(tag)
        .map(|t| (device, t))
        .ok_or_else(|| format!("tag \"{full}\": device \"{dev}\" has no tag \"{tag}\""))
}

fn priority(ctx: &mut Ctx, field: &str, text: Option<&str>) -> Priority {
    match text.map(str::to_ascii_lowercase).as_deref() {
        None | Some("medium") => Priority::Medium,
        Some("low") => Priority::Low,
        Some("high") => Priority::High,
        Some("critical") => Priority::Critical,
        Some(other) => {
            ctx.error(
                field,
                format!("priority \"{other}\" is not one of critical, high, medium, low"),
            );
            Priority::Medium
        }
    }
}

fn template(
    ctx: &mut Ctx,
    field: &str,
    raw: Option<RawWorkOrderTemplate>,
    devices: &[Device],
) -> WorkOrderTemplate {
    let raw = raw.unwrap_or_default();
    for (key, text) in [("title", &raw.title), ("description", &raw.description)] {
        let Some(text) = text else { continue };
        let mut rest = text.as_str();
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                ctx.error(&format!("{field}.workorder.{key}"), "a `{` is never closed");
                break;
            };
            let name = &rest[open + 1..open + close];
            if !PLACEHOLDERS.contains(&name) {
                ctx.error(
                    &format!("{field}.workorder.{key}"),
                    format!(
                        "unknown placeholder {{{name}}}; known: {}",
                        PLACEHOLDERS.join(", ")
                    ),
                );
            }
            rest = &rest[open + close + 1..];
        }
    }
    let snapshot = raw.snapshot.unwrap_or_default();
    for (i, tag) in snapshot.iter().enumerate() {
        if let Err(e) = find_tag(devices, tag) {
            ctx.error(&format!("{field}.workorder.snapshot[{i}]"), e);
        }
    }
    WorkOrderTemplate {
        enabled: raw.enabled.unwrap_or(true),
        title: raw.title,
        description: raw.description,
        problem_code: raw.problem_code,
        procedure: raw.procedure,
        snapshot,
    }
}

/// Resolves `[[rules]]` against the devices' tags.
pub(super) fn resolve_rules(
    ctx: &mut Ctx,
    raws: Vec<(String, RawRule)>,
    devices: &[Device],
) -> Vec<Rule> {
    let mut rules = Vec::new();
    for (field, raw) in raws {
        let errors_before = ctx.problems.iter().filter(|p| p.is_error()).count();
        let name = raw.name.clone().unwrap_or_default();
        if raw.name.is_none() {
            ctx.error(&format!("{field}.name"), "missing rule name");
        } else {
            check_name(ctx, &format!("{field}.name"), "rule", &name);
        }
        let kind = raw.condition.as_deref().map(str::to_ascii_lowercase);
        let need_tag = !matches!(kind.as_deref(), Some("expr"));
        let tag = match (&raw.tag, need_tag) {
            (Some(t), true) => match find_tag(devices, t) {
                Ok((_, tag)) => Some((t.clone(), tag.clone())),
                Err(e) => {
                    ctx.error(&format!("{field}.tag"), e);
                    None
                }
            },
            (None, true) if kind.is_some() => {
                ctx.error(
                    &format!("{field}.tag"),
                    "missing tag (device.tag) the rule watches",
                );
                None
            }
            (Some(_), false) => {
                ctx.error(
                    &format!("{field}.tag"),
                    "an expr rule names its tags in `expr`; remove `tag`",
                );
                None
            }
            _ => None,
        };
        let numeric = |ctx: &mut Ctx, tag: &Option<(String, Tag)>| {
            if let Some((full, t)) = tag
                && !t.data_type.is_numeric()
            {
                ctx.error(
                    &format!("{field}.tag"),
                    format!(
                        "tag \"{full}\" is a {}, not a number; use condition \"equals\" for states",
                        t.data_type.name()
                    ),
                );
            }
        };
        let need = |ctx: &mut Ctx, key: &str, v: Option<f64>, cond: &str| -> f64 {
            match v {
                Some(x) if x.is_finite() => x,
                Some(_) => {
                    ctx.error(
                        &format!("{field}.{key}"),
                        format!("{key} must be a finite number"),
                    );
                    0.0
                }
                None => {
                    ctx.error(
                        &format!("{field}.{key}"),
                        format!("condition \"{cond}\" needs `{key}`"),
                    );
                    0.0
                }
            }
        };
        let full = tag.as_ref().map(|(f, _)| f.clone()).unwrap_or_default();
        let condition = match kind.as_deref() {
            None => {
                ctx.error(
                    &format!("{field}.condition"),
                    "missing condition (above, below, outside, rate, stale, equals or expr)",
                );
                None
            }
            Some("above") => {
                numeric(ctx, &tag);
                Some(Condition::Above {
                    tag: full,
                    limit: need(ctx, "limit", raw.limit, "above"),
                })
            }
            Some("below") => {
                numeric(ctx, &tag);
                Some(Condition::Below {
                    tag: full,
                    limit: need(ctx, "limit", raw.limit, "below"),
                })
            }
            Some("outside") => {
                numeric(ctx, &tag);
                let low = need(ctx, "low", raw.low, "outside");
                let high = need(ctx, "high", raw.high, "outside");
                if raw.low.is_some() && raw.high.is_some() && low >= high {
                    ctx.error(
                        &format!("{field}.low"),
                        format!("low {low} is not below high {high}"),
                    );
                }
                Some(Condition::Outside {
                    tag: full,
                    low,
                    high,
                })
            }
            Some("rate") => {
                numeric(ctx, &tag);
                let limit = need(ctx, "rate", raw.rate, "rate");
                if raw.rate.is_some() && limit <= 0.0 {
                    ctx.error(
                        &format!("{field}.rate"),
                        "rate must be above 0 (the sign of the change does not matter)",
                    );
                }
                let per = duration_in(
                    ctx,
                    &format!("{field}.per"),
                    raw.per,
                    Duration::from_secs(1),
                    Duration::from_secs(1),
                    Duration::from_secs(86_400),
                );
                let window = duration_in(
                    ctx,
                    &format!("{field}.window"),
                    raw.window,
                    Duration::from_secs(60),
                    Duration::from_secs(1),
                    Duration::from_secs(86_400),
                );
                Some(Condition::Rate {
                    tag: full,
                    limit,
                    per,
                    window,
                })
            }
            Some("stale") => match raw.after {
                Some(after) if !after.0.is_zero() => Some(Condition::Stale {
                    tag: full,
                    after: after.0,
                }),
                Some(_) => {
                    ctx.error(&format!("{field}.after"), "after must be longer than 0s");
                    None
                }
                None => {
                    ctx.error(
                        &format!("{field}.after"),
                        "condition \"stale\" needs `after` (e.g. \"30s\")",
                    );
                    None
                }
            },
            Some("equals") => match &raw.value {
                Some(v) => Some(Condition::Equals {
                    tag: full,
                    value: match v {
                        RawState::Bool(b) => State::Bool(*b),
                        RawState::Int(i) => State::Number(*i as f64),
                        RawState::Float(x) => State::Number(*x),
                        RawState::Text(s) => State::Text(s.clone()),
                    },
                }),
                None => {
                    ctx.error(
                        &format!("{field}.value"),
                        "condition \"equals\" needs `value`",
                    );
                    None
                }
            },
            Some("expr") => match &raw.expr {
                Some(expr) if !expr.trim().is_empty() => {
                    let tags = crate::expr::referenced_tags(expr);
                    if tags.is_empty() {
                        ctx.error(
                            &format!("{field}.expr"),
                            "the expression reads no tag (write tags as device.tag)",
                        );
                    }
                    let mut unknown = false;
                    for t in &tags {
                        if let Err(e) = find_tag(devices, t) {
                            ctx.error(&format!("{field}.expr"), e);
                            unknown = true;
                        }
                    }
                    // Compile it as the rules engine will, against the
                    // tags' types: syntax and type errors show here, not
                    // at the first evaluation on site.
                    if !unknown
                        && !tags.is_empty()
                        && let Err(e) =
                            crate::expr::check(expr, |full| super::expr_type(devices, full))
                    {
                        ctx.error(&format!("{field}.expr"), e);
                    }
                    Some(Condition::Expr {
                        expr: expr.clone(),
                        tags,
                    })
                }
                _ => {
                    ctx.error(&format!("{field}.expr"), "condition \"expr\" needs `expr`");
                    None
                }
            },
            Some(other) => {
                ctx.error(
                    &format!("{field}.condition"),
                    format!("unknown condition \"{other}\"; use above, below, outside, rate, stale, equals or expr"),
                );
                None
            }
        };
        let deadband = raw.deadband.unwrap_or(0.0);
        if !deadband.is_finite() || deadband < 0.0 {
            ctx.error(
                &format!("{field}.deadband"),
                format!("deadband {deadband} must be zero or positive"),
            );
        }
        if let Some(Condition::Outside { low, high, .. }) = &condition
            && deadband > 0.0
            && deadband >= high - low
        {
            ctx.error(
                    &format!("{field}.deadband"),
                    format!("deadband {deadband} is as wide as the band {low}–{high}: the alarm could never return to normal"),
                );
        }
        let max_delay = Duration::from_secs(7 * 86_400);
        let on_delay = duration_in(
            ctx,
            &format!("{field}.on_delay"),
            raw.on_delay,
            Duration::ZERO,
            Duration::ZERO,
            max_delay,
        );
        let off_delay = duration_in(
            ctx,
            &format!("{field}.off_delay"),
            raw.off_delay,
            Duration::ZERO,
            Duration::ZERO,
            max_delay,
        );
        let priority = priority(ctx, &format!("{field}.priority"), raw.priority.as_deref());
        let workorder = template(ctx, &field, raw.workorder, devices);
        let errors_after = ctx.problems.iter().filter(|p| p.is_error()).count();
        if let (Some(condition), true) = (condition, errors_after == errors_before) {
            rules.push(Rule {
                name,
                condition,
                deadband,
                on_delay,
                off_delay,
                priority,
                asset: raw.asset,
                location: raw.location,
                workorder,
            });
        }
    }
    rules
}

/// Resolves `[[meters]]` against the devices' tags.
pub(super) fn resolve_meters(
    ctx: &mut Ctx,
    raws: Vec<(String, RawMeter)>,
    devices: &[Device],
) -> Vec<Meter> {
    let mut meters = Vec::new();
    for (field, raw) in raws {
        let errors_before = ctx.problems.iter().filter(|p| p.is_error()).count();
        let name = raw.name.clone().unwrap_or_default();
        if raw.name.is_none() {
            ctx.error(&format!("{field}.name"), "missing meter name");
        } else {
            check_name(ctx, &format!("{field}.name"), "meter", &name);
        }
        let tag = match &raw.tag {
            None => {
                ctx.error(
                    &format!("{field}.tag"),
                    "missing tag (a boolean device.tag, e.g. pump1.running)",
                );
                String::new()
            }
            Some(t) => {
                match find_tag(devices, t) {
                    Ok((_, tag)) if !matches!(tag.data_type, DataType::Bool | DataType::Bit(_)) => {
                        ctx.error(
                            &format!("{field}.tag"),
                            format!(
                                "meters count a running or start bit; tag \"{t}\" is a {}",
                                tag.data_type.name()
                            ),
                        )
                    }
                    Ok(_) => {}
                    Err(e) => ctx.error(&format!("{field}.tag"), e),
                }
                t.clone()
            }
        };
        let kind = match (
            raw.kind.as_deref().map(str::to_ascii_lowercase).as_deref(),
            &raw.every,
        ) {
            (_, None) => {
                ctx.error(
                    &format!("{field}.every"),
                    "missing `every`: \"500h\" for runtime, a count for count",
                );
                None
            }
            (None | Some("runtime"), Some(RawEvery::Text(t))) => match parse_duration(t) {
                Ok(d) if !d.is_zero() => Some(MeterKind::Runtime { every: d }),
                Ok(_) => {
                    ctx.error(&format!("{field}.every"), "every must be longer than 0");
                    None
                }
                Err(e) => {
                    ctx.error(&format!("{field}.every"), e);
                    None
                }
            },
            (None | Some("runtime"), Some(RawEvery::Count(n))) => {
                ctx.error(
                    &format!("{field}.every"),
                    format!("a runtime meter's interval is a duration; write \"{n}h\""),
                );
                None
            }
            (Some("count"), Some(RawEvery::Count(n))) if *n > 0 => {
                Some(MeterKind::Count { every: *n as u64 })
            }
            (Some("count"), Some(_)) => {
                ctx.error(
                    &format!("{field}.every"),
                    "a count meter's interval is a whole number above 0",
                );
                None
            }
            (Some(other), _) => {
                ctx.error(
                    &format!("{field}.kind"),
                    format!("meter kind \"{other}\" is not runtime or count"),
                );
                None
            }
        };
        let priority = priority(ctx, &format!("{field}.priority"), raw.priority.as_deref());
        let workorder = template(ctx, &field, raw.workorder, devices);
        let errors_after = ctx.problems.iter().filter(|p| p.is_error()).count();
        if let (Some(kind), true) = (kind, errors_after == errors_before) {
            meters.push(Meter {
                name,
                tag,
                kind,
                priority,
                asset: raw.asset,
                location: raw.location,
                workorder,
            });
        }
    }
    meters
}

/// Checks across sections: unique names, buses and their use, HTTP exposure.
pub(super) fn check_all(
    ctx: &mut Ctx,
    buses: &[Bus],
    devices: &[Device],
    rules: &[Rule],
    meters: &[Meter],
    http: &HttpConfig,
) {
    duplicates(ctx, "buses", "bus", buses.iter().map(|b| b.name.as_str()));
    duplicates(
        ctx,
        "devices",
        "device",
        devices.iter().map(|d| d.name.as_str()),
    );
    duplicates(ctx, "rules", "rule", rules.iter().map(|r| r.name.as_str()));
    duplicates(
        ctx,
        "meters",
        "meter",
        meters.iter().map(|m| m.name.as_str()),
    );

    let mut ports: HashMap<&str, &str> = HashMap::new();
    for (i, bus) in buses.iter().enumerate() {
        if let Some(other) = ports.insert(&bus.port, &bus.name) {
            ctx.error(
                &format!("buses[{i}].port"),
                format!(
                    "serial port {} is already used by bus \"{other}\"",
                    bus.port
                ),
            );
        }
        if !devices
            .iter()
            .any(|d| matches!(&d.connection, Connection::Rtu { bus: b } if b == &bus.name))
        {
            ctx.warn(
                &format!("buses[{i}]"),
                format!("bus \"{}\" is not used by any device", bus.name),
            );
        }
    }

    // Two devices answering to the same unit id on one line would both answer.
    let mut seen: HashMap<(String, u8), &str> = HashMap::new();
    for (i, d) in devices.iter().enumerate() {
        let line = match &d.connection {
            Connection::Rtu { bus } => format!("bus {bus}"),
            other => other.endpoint().unwrap_or_default(),
        };
        if let Some(first) = seen.insert((line.clone(), d.unit), &d.name) {
            ctx.error(
                &format!("devices[{i}].unit"),
                format!(
                    "unit id {} on {line} is already used by device \"{first}\"",
                    d.unit
                ),
            );
        }
    }

    if let Some(addr) = http.listen
        && !addr.ip().is_loopback()
        && http.token.is_none()
    {
        ctx.warn(
                "http.listen",
                format!("the HTTP server listens on {addr}, beyond this machine, with no token: anyone on the network can read the plant's values"),
            );
    }
}

fn duplicates<'a>(ctx: &mut Ctx, section: &str, what: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen = HashSet::new();
    for (i, name) in names.enumerate() {
        if !name.is_empty() && !seen.insert(name) {
            ctx.error(
                &format!("{section}[{i}].name"),
                format!("duplicate {what} name \"{name}\""),
            );
        }
    }
}
