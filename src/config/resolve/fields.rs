//! Reading one field: required strings, integers and durations within
//! their ranges, and names that go into topics.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::report::Ctx;
use crate::config::units::ConfigDuration;
use crate::config::{SPARKPLUG_ID_MAX, SPARKPLUG_NAMESPACE};

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

/// A topic prefix (`[mqtt] topic_prefix`, `[bridge] topic_prefix`):
/// non-empty, no wildcard, no `/` at either end, and not in the Sparkplug
/// namespace.
pub(super) fn check_topic_prefix(ctx: &mut Ctx, field: &str, prefix: &str) {
    if prefix.is_empty()
        || prefix.contains(['+', '#'])
        || prefix.starts_with('/')
        || prefix.ends_with('/')
    {
        ctx.error(
            field,
            format!(
                "topic prefix \"{prefix}\" must be non-empty, without + or # and without a leading or trailing /"
            ),
        );
    } else if prefix.split('/').next() == Some(SPARKPLUG_NAMESPACE) {
        // Whether `[sparkplug]` is on or not: the outbox sorts its rows
        // into the JSON and the Sparkplug lanes by this first level.
        ctx.error(
            field,
            format!(
                "topic prefix \"{prefix}\" begins with {SPARKPLUG_NAMESPACE}, the Sparkplug B namespace: \
                 the JSON topics would mix with the Sparkplug ones on the broker and in the outbox; \
                 choose another prefix"
            ),
        );
    }
}

/// A Sparkplug id (`group_id`, `edge_node_id`, `primary_host_id`): each is
/// one level of the Sparkplug topics, so it is what Sparkplug 3.0 allows
/// in a level and short enough to repeat in every message. `key` names
/// it in the message; the first problem found is reported.
pub(super) fn check_sparkplug_id(ctx: &mut Ctx, field: &str, key: &str, id: &str) {
    let problem = if id.is_empty() {
        Some(format!("{key} is empty"))
    } else if let Some(bad) = id.chars().find(|c| matches!(c, '+' | '#' | '/')) {
        Some(format!(
            "{key} \"{id}\" contains {bad:?}; Sparkplug B forbids +, # and / in ids \
             (they are MQTT's wildcards and topic-level separator)"
        ))
    } else if id.trim() != id {
        Some(format!(
            "{key} \"{id}\" begins or ends with whitespace, which every host would have to \
             repeat exactly; remove it"
        ))
    } else if let Some(bad) = id.chars().find(|c| c.is_control()) {
        Some(format!(
            "{key} contains the control character {bad:?}, which has no place in a topic"
        ))
    } else {
        let len = id.chars().count();
        (len > SPARKPLUG_ID_MAX).then(|| {
            format!(
                "{key} \"{id}\" is {len} characters long; at most {SPARKPLUG_ID_MAX}: it is a level \
                 of every Sparkplug topic, sent with every message and in every host's subscriptions"
            )
        })
    };
    if let Some(message) = problem {
        ctx.error(field, message);
    }
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
