//! One tag, inline or from a CSV row, and the tag map of one device.

use std::collections::HashMap;

use super::writes::{self, RawWrite};
use crate::config::address;
use crate::config::problem::Severity;
use crate::config::raw::{RawDeadband, RawTag};
use crate::config::report::{Ctx, TagSite};
use crate::tag::{Area, DataType, Deadband, Tag, WordOrder};

/// The most digits after the point a tag may show: beyond a float's
/// precision for any value an instrument reads.
const MAX_DECIMALS: u8 = 9;

/// Resolves one tag; `None` when it has an error (reported).
pub(super) fn tag(
    ctx: &mut Ctx,
    site: &TagSite,
    mut raw: RawTag,
    default_order: WordOrder,
) -> Option<Tag> {
    let errors_before = ctx.problems.iter().filter(|p| p.is_error()).count();
    let err = |ctx: &mut Ctx, key: &str, msg: String| {
        ctx.tag_problem(site, Some(key), Severity::Error, msg)
    };
    let write = RawWrite {
        writable: raw.writable,
        min: raw.min,
        max: raw.max,
        allowed: raw.allowed.take(),
        max_rate: raw.max_rate,
        confirm: raw.confirm,
    };

    let name = match raw
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
    {
        Some(n) => n,
        None => {
            err(ctx, "name", "missing tag name".into());
            String::new()
        }
    };
    if !name.is_empty()
        && let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        err(
            ctx,
            "name",
            format!(
                "tag name \"{name}\" contains {bad:?}; use letters, digits, `_` and `-` (the device name is added in front: device.tag)"
            ),
        );
    }

    let area = match raw.area.as_deref() {
        None => None,
        Some(a) => match Area::parse(a) {
            Some(a) => Some(a),
            None => {
                err(
                    ctx,
                    "area",
                    format!("area \"{a}\" is not one of coil, discrete, input, holding"),
                );
                return None;
            }
        },
    };
    let Some(raw_address) = raw.address else {
        err(ctx, "address", "missing address".into());
        return None;
    };
    let resolved = match address::resolve(&raw_address, area) {
        Ok(r) => r,
        Err(e) => {
            err(ctx, "address", e);
            return None;
        }
    };
    if let Some(w) = &resolved.warning {
        ctx.tag_problem(site, Some("address"), Severity::Warning, w.clone());
    }
    let area = resolved.area;

    let type_name = raw
        .data_type
        .as_deref()
        .unwrap_or(if area.is_bit() { "bool" } else { "u16" });
    let data_type = match DataType::parse(type_name, raw.bit, raw.length) {
        Ok(t) => t,
        Err(e) => {
            err(ctx, e.field(), e.to_string());
            return None;
        }
    };
    if raw.bit.is_some() && !matches!(data_type, DataType::Bit(_)) {
        err(
            ctx,
            "bit",
            format!(
                "`bit` is only for type \"bit\" (this tag is {})",
                data_type.name()
            ),
        );
    }
    if raw.length.is_some() && !matches!(data_type, DataType::String(_)) {
        err(
            ctx,
            "length",
            format!(
                "`length` is only for type \"string\" (this tag is {})",
                data_type.name()
            ),
        );
    }
    if area.is_bit() && data_type != DataType::Bool {
        err(
            ctx,
            "type",
            format!(
                "a {area} is a single bit; its type must be bool (not {})",
                data_type.name()
            ),
        );
    }
    if !area.is_bit() && data_type == DataType::Bool {
        err(
            ctx,
            "type",
            format!(
                "a {area} register is 16 bits; use type \"bit\" with `bit = N` for one of its bits"
            ),
        );
    }
    let width = u32::from(data_type.width());
    if u32::from(resolved.address) + width - 1 > 65_535 {
        err(
            ctx,
            "address",
            format!(
                "a tag of type {} at address {} needs {width} registers, but only {} {} left in the 16-bit address space",
                data_type.name(),
                resolved.address,
                65_536 - u32::from(resolved.address),
                if resolved.address == 65_535 {
                    "is"
                } else {
                    "are"
                }
            ),
        );
    }
    let word_order = match raw.word_order.as_deref() {
        None => default_order,
        Some(w) => WordOrder::parse(w).unwrap_or_else(|| {
            err(
                ctx,
                "word_order",
                format!("word order \"{w}\" is not one of ABCD, CDAB, BADC, DCBA"),
            );
            default_order
        }),
    };
    let numeric = data_type.is_numeric();
    for (key, given) in [("scale", raw.scale), ("offset", raw.offset)] {
        match given {
            Some(x) if !x.is_finite() => err(ctx, key, format!("{key} must be a finite number")),
            Some(_) if !numeric => err(
                ctx,
                key,
                format!("{key} does not apply to a {} tag", data_type.name()),
            ),
            _ => {}
        }
    }
    let scale = raw.scale.unwrap_or(1.0);
    if scale == 0.0 {
        err(
            ctx,
            "scale",
            "scale 0 would turn every reading into the offset".into(),
        );
    }
    let deadband = match raw.deadband {
        None => Deadband::None,
        Some(RawDeadband::Absolute(x)) if x < 0.0 || !x.is_finite() => {
            err(
                ctx,
                "deadband",
                format!("deadband {x} must be zero or positive"),
            );
            Deadband::None
        }
        Some(RawDeadband::Absolute(0.0)) => Deadband::None,
        Some(RawDeadband::Absolute(x)) => Deadband::Absolute(x),
        Some(RawDeadband::Percent(p)) if !(0.0..=100.0).contains(&p) => {
            err(
                ctx,
                "deadband",
                format!("deadband {p}% must be between 0% and 100%"),
            );
            Deadband::None
        }
        Some(RawDeadband::Percent(p)) => {
            match (raw.span_low, raw.span_high) {
                (Some(lo), Some(hi)) if hi > lo => {}
                (Some(_), Some(_)) => {
                    err(ctx, "span_high", "span_high must be above span_low".into())
                }
                _ => err(
                    ctx,
                    "deadband",
                    "a percent deadband needs the tag's span: set span_low and span_high".into(),
                ),
            }
            if p == 0.0 {
                Deadband::None
            } else {
                Deadband::Percent(p)
            }
        }
    };
    if matches!(deadband, Deadband::Absolute(_) | Deadband::Percent(_)) && !numeric {
        err(
            ctx,
            "deadband",
            format!("a deadband does not apply to a {} tag", data_type.name()),
        );
    }

    let decimals = match raw.decimals {
        None => None,
        Some(d) if (0..=i64::from(MAX_DECIMALS)).contains(&d) && numeric => Some(d as u8),
        Some(_) if !numeric => {
            err(
                ctx,
                "decimals",
                format!("`decimals` does not apply to a {} tag", data_type.name()),
            );
            None
        }
        Some(d) => {
            err(
                ctx,
                "decimals",
                format!("decimals {d} is not from 0 to {MAX_DECIMALS}"),
            );
            None
        }
    };

    let mut tag = Tag {
        name,
        area,
        address: resolved.address,
        data_type,
        word_order,
        scale,
        offset: raw.offset.unwrap_or(0.0),
        unit: raw.unit.filter(|u| !u.trim().is_empty()),
        deadband,
        span_low: raw.span_low,
        span_high: raw.span_high,
        description: raw.description.filter(|d| !d.trim().is_empty()),
        asset: raw.asset.filter(|a| !a.trim().is_empty()),
        alias: raw.alias.unwrap_or(false),
        write: None,
        decimals,
    };
    // Judged on the tag as resolved: its area, type, scale and offset.
    tag.write = writes::access(ctx, site, write, &tag);

    let errors_after = ctx.problems.iter().filter(|p| p.is_error()).count();
    if errors_after > errors_before {
        return None;
    }
    Some(tag)
}

/// The tag map of one device: tag names unique, no two tags on the same
/// registers unless one is an `alias`, no tag longer than one request.
pub(super) fn check_map(
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
