//! Reading one field: required strings, integers and durations within
//! their ranges, and names that go into topics.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::report::Ctx;
use crate::config::units::ConfigDuration;

/// A name used in topics and tag references: letters, digits, `_` and `-`.
pub(super) fn check_name(ctx: &mut Ctx, field: &str, what: &str, name: &str) -> bool {
    if name.is_empty() {
        ctx.error(field, format!("{what} name is empty"));
        return false;
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        ctx.error(
            field,
            format!(
                "{what} name \"{name}\" contains {bad:?}; use letters, digits, `_` and `-` only \
                 (names appear in MQTT topics and rule expressions)"
            ),
        );
        return false;
    }
    true
}

/// Reads a required string field, reporting it when missing.
pub(super) fn required(
    ctx: &mut Ctx,
    field: &str,
    value: Option<String>,
    what: &str,
) -> Option<String> {
    match value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
    {
        Some(v) => Some(v),
        None => {
            ctx.error(field, format!("missing {what}"));
            None
        }
    }
}

/// An integer field with a default and an inclusive range.
pub(super) fn int_in(
    ctx: &mut Ctx,
    field: &str,
    value: Option<i64>,
    default: i64,
    range: RangeInclusive<i64>,
    what: &str,
) -> i64 {
    let v = value.unwrap_or(default);
    if range.contains(&v) {
        v
    } else {
        ctx.error(
            field,
            format!(
                "{what} {v} is out of range ({}–{})",
                range.start(),
                range.end()
            ),
        );
        default
    }
}

/// A duration field with a default and bounds.
pub(super) fn duration_in(
    ctx: &mut Ctx,
    field: &str,
    value: Option<ConfigDuration>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    let v = value.map(|d| d.0).unwrap_or(default);
    if v < min || v > max {
        ctx.error(
            field,
            format!(
                "{} is out of range ({} to {})",
                humantime::format_duration(v),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        );
        return default;
    }
    v
}
