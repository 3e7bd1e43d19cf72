//! The checks across elements, on the resolved config: names that must be
//! unique in their section, references from devices to buses and from
//! rules and meters to tags, `expr` conditions compiled against the tags'
//! types, buses and unit ids shared, HTTP exposure. Resolving has already
//! judged each element on its own; this only checks, and records every
//! problem it finds rather than stopping at the first, so a technician
//! fixes a whole file in one pass. `fieldgate check` and reloads share it.

use std::collections::{HashMap, HashSet};

use super::report::Ctx;
use super::resolved::{Needs, Reads, Resolved};
use super::{Bus, Connection, Device, HttpConfig, expr_type};
use crate::tag::{DataType, Tag};

/// Checks `resolved`, recording problems in `ctx`.
pub(super) fn validate(ctx: &mut Ctx, resolved: &Resolved) {
    let devices: Vec<&Device> = resolved.devices.iter().map(|d| &d.value).collect();

    for placed in &resolved.devices {
        if let Connection::Rtu { bus } = &placed.value.connection {
            check_bus(ctx, &placed.field, bus, &resolved.buses);
        }
    }

    // Duplicate rule and meter names are looked for, and numbered, among
    // the elements without other errors, as `check` has always done.
    let mut rules = Vec::new();
    for entry in &resolved.rules {
        let errors_before = error_count(ctx);
        check_reads(ctx, &entry.field, &entry.reads, &devices);
        if let Some(rule) = &entry.value
            && error_count(ctx) == errors_before
        {
            rules.push(rule.name.as_str());
        }
    }
    let mut meters = Vec::new();
    for entry in &resolved.meters {
        let errors_before = error_count(ctx);
        check_reads(ctx, &entry.field, &entry.reads, &devices);
        if let Some(meter) = &entry.value
            && error_count(ctx) == errors_before
        {
            meters.push(meter.name.as_str());
        }
    }

    check_all(
        ctx,
        &resolved.buses,
        &devices,
        &rules,
        &meters,
        &resolved.http,
    );
}

fn error_count(ctx: &Ctx) -> usize {
    ctx.problems.iter().filter(|p| p.is_error()).count()
}

/// An RTU device's bus must be one of `[[buses]]`.
fn check_bus(ctx: &mut Ctx, field: &str, bus: &str, buses: &[Bus]) {
    if buses.iter().any(|b| b.name == bus) {
        return;
    }
    let known: Vec<&str> = buses.iter().map(|b| b.name.as_str()).collect();
    ctx.error(
        &format!("{field}.bus"),
        if known.is_empty() {
            format!("bus \"{bus}\" is not defined: there is no [[buses]] section")
        } else {
            format!("bus \"{bus}\" is not defined (buses: {})", known.join(", "))
        },
    );
}

/// The tags a rule or meter at `field` names must exist and be of the
/// kind it needs.
fn check_reads(ctx: &mut Ctx, field: &str, reads: &Reads, devices: &[&Device]) {
    if let Some((full, needs)) = &reads.tag {
        match find_tag(devices, full) {
            Ok((_, tag)) => match needs {
                Needs::Number if !tag.data_type.is_numeric() => ctx.error(
                    &format!("{field}.tag"),
                    format!(
                        "tag \"{full}\" is a {}, not a number; use condition \"equals\" for states",
                        tag.data_type.name()
                    ),
                ),
                Needs::Bit if !matches!(tag.data_type, DataType::Bool | DataType::Bit(_)) => ctx
                    .error(
                        &format!("{field}.tag"),
                        format!(
                            "meters count a running or start bit; tag \"{full}\" is a {}",
                            tag.data_type.name()
                        ),
                    ),
                _ => {}
            },
            Err(e) => ctx.error(&format!("{field}.tag"), e),
        }
    }
    if let Some((expr, tags)) = &reads.expr {
        let mut unknown = false;
        for t in tags {
            if let Err(e) = find_tag(devices, t) {
                ctx.error(&format!("{field}.expr"), e);
                unknown = true;
            }
        }
        // Compile it as the rules engine will, against the tags' types:
        // syntax and type errors show here, not at the first evaluation
        // on site.
        if !unknown
            && !tags.is_empty()
            && let Err(e) = crate::expr::check(expr, |full| expr_type(devices, full))
        {
            ctx.error(&format!("{field}.expr"), e);
        }
    }
    for (i, tag) in reads.snapshot.iter().enumerate() {
        if let Err(e) = find_tag(devices, tag) {
            ctx.error(&format!("{field}.workorder.snapshot[{i}]"), e);
        }
    }
}

/// Finds a tag by its full name `device.tag`.
fn find_tag<'a>(devices: &[&'a Device], full: &str) -> Result<(&'a Device, &'a Tag), String> {
    let Some((dev, tag)) = full.split_once('.') else {
        return Err(format!(
            "\"{full}\" is not a full tag name; write device.tag (e.g. pump1.bearing_temp)"
        ));
    };
    let Some(device) = devices.iter().copied().find(|d| d.name == dev) else {
        return Err(format!("tag \"{full}\": there is no device \"{dev}\""));
    };
    device
        .tag(tag)
        .map(|t| (device, t))
        .ok_or_else(|| format!("tag \"{full}\": device \"{dev}\" has no tag \"{tag}\""))
}

/// Checks across sections: unique names, buses and their use, HTTP exposure.
fn check_all(
    ctx: &mut Ctx,
    buses: &[Bus],
    devices: &[&Device],
    rules: &[&str],
    meters: &[&str],
    http: &HttpConfig,
) {
    duplicates(ctx, "buses", "bus", buses.iter().map(|b| b.name.as_str()));
    duplicates(
        ctx,
        "devices",
        "device",
        devices.iter().map(|d| d.name.as_str()),
    );
    duplicates(ctx, "rules", "rule", rules.iter().copied());
    duplicates(ctx, "meters", "meter", meters.iter().copied());

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

/// Names that must be unique within `section`.
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
