//! `[[rules]]` and `[[meters]]`, with their work-order templates. Each
//! is resolved on its own; the tags they name are written down in
//! [`Reads`] for validate to look up among the devices.

use std::time::Duration;

use super::fields::{check_name, duration_in};
use crate::config::raw::{RawEvery, RawMeter, RawRule, RawState, RawWorkOrderTemplate};
use crate::config::report::Ctx;
use crate::config::resolved::{Entry, Needs, Reads};
use crate::config::units::parse_duration;
use crate::config::{
    Condition, Meter, MeterKind, PLACEHOLDERS, Priority, Rule, State, WorkOrderTemplate,
};
use crate::expr::referenced_tags;

/// `priority`, medium when not given.
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

/// `workorder`: the template and its placeholders. Its `snapshot` tags
/// are looked up by validate.
fn template(ctx: &mut Ctx, field: &str, raw: Option<RawWorkOrderTemplate>) -> WorkOrderTemplate {
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
    WorkOrderTemplate {
        enabled: raw.enabled.unwrap_or(true),
        title: raw.title,
        description: raw.description,
        problem_code: raw.problem_code,
        procedure: raw.procedure,
        snapshot,
    }
}

/// One `[[rules]]` element at `field`. The tags it names are only
/// written down here; validate looks them up.
pub(super) fn rule(ctx: &mut Ctx, field: String, raw: RawRule) -> Entry<Rule> {
    let mut reads = Reads::default();
    let errors_before = ctx.problems.iter().filter(|p| p.is_error()).count();
    let name = raw.name.clone().unwrap_or_default();
    if raw.name.is_none() {
        ctx.error(&format!("{field}.name"), "missing rule name");
    } else {
        check_name(ctx, &format!("{field}.name"), "rule", &name);
    }
    let kind = raw.condition.as_deref().map(str::to_ascii_lowercase);
    let need_tag = !matches!(kind.as_deref(), Some("expr"));
    let needs = match kind.as_deref() {
        Some("above" | "below" | "outside" | "rate") => Needs::Number,
        _ => Needs::Any,
    };
    let full = match (&raw.tag, need_tag) {
        (Some(t), true) => {
            reads.tag = Some((t.clone(), needs));
            t.clone()
        }
        (None, true) if kind.is_some() => {
            ctx.error(
                &format!("{field}.tag"),
                "missing tag (device.tag) the rule watches",
            );
            String::new()
        }
        (Some(_), false) => {
            ctx.error(
                &format!("{field}.tag"),
                "an expr rule names its tags in `expr`; remove `tag`",
            );
            String::new()
        }
        _ => String::new(),
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
    let condition = match kind.as_deref() {
        None => {
            ctx.error(
                &format!("{field}.condition"),
                "missing condition (above, below, outside, rate, stale, equals or expr)",
            );
            None
        }
        Some("above") => Some(Condition::Above {
            tag: full,
            limit: need(ctx, "limit", raw.limit, "above"),
        }),
        Some("below") => Some(Condition::Below {
            tag: full,
            limit: need(ctx, "limit", raw.limit, "below"),
        }),
        Some("outside") => {
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
                let tags = referenced_tags(expr);
                if tags.is_empty() {
                    ctx.error(
                        &format!("{field}.expr"),
                        "the expression reads no tag (write tags as device.tag)",
                    );
                }
                reads.expr = Some((expr.clone(), tags.clone()));
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
    let workorder = template(ctx, &field, raw.workorder);
    reads.snapshot = workorder.snapshot.clone();
    let errors_after = ctx.problems.iter().filter(|p| p.is_error()).count();
    let value = match (condition, errors_after == errors_before) {
        (Some(condition), true) => Some(Rule {
            name,
            condition,
            deadband,
            on_delay,
            off_delay,
            priority,
            asset: raw.asset,
            location: raw.location,
            workorder,
        }),
        _ => None,
    };
    Entry {
        field,
        reads,
        value,
    }
}

/// One `[[meters]]` element at `field`. Its tag is only written down
/// here; validate looks it up.
pub(super) fn meter(ctx: &mut Ctx, field: String, raw: RawMeter) -> Entry<Meter> {
    let mut reads = Reads::default();
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
            reads.tag = Some((t.clone(), Needs::Bit));
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
    let workorder = template(ctx, &field, raw.workorder);
    reads.snapshot = workorder.snapshot.clone();
    let errors_after = ctx.problems.iter().filter(|p| p.is_error()).count();
    let value = match (kind, errors_after == errors_before) {
        (Some(kind), true) => Some(Meter {
            name,
            tag,
            kind,
            priority,
            asset: raw.asset,
            location: raw.location,
            workorder,
        }),
        _ => None,
    };
    Entry {
        field,
        reads,
        value,
    }
}
