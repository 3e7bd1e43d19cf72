//! The texts of a work order for people: titles and descriptions from
//! the template's placeholders or the defaults, and how numbers, values
//! and times are written in them (the `workorder` module docs, "Texts").

use std::fmt::Write as _;

use super::context::{WoContext, precision_for};
use super::types::{WoSource, WoTrigger, WorkOrder};
use crate::config::{PLACEHOLDERS, WorkOrderTemplate};
use crate::precision::{self, Precision};
use crate::rules::meter::Measure;
use crate::rules::time::Timestamp;
use crate::tag::Value;

impl WorkOrder {
    /// A placeholder's value, for templates; `precision` is the one of
    /// the alarm's value and limit ([`WorkOrder::precision`]).
    fn placeholder(&self, name: &str, precision: Option<Precision>) -> String {
        let tag = self.trigger.tag().unwrap_or_default();
        match name {
            "rule" => self.source.name().to_owned(),
            "meter" => self.meter().unwrap_or_default().to_owned(),
            "tag" => tag.to_owned(),
            "device" => tag
                .split_once('.')
                .map(|(d, _)| d)
                .unwrap_or_default()
                .to_owned(),
            "value" => match &self.trigger {
                WoTrigger::Alarm { value, .. } => value.as_ref().map(|v| shown(v, precision)),
                WoTrigger::Meter { kind, value, .. } => Some(meter_number(*kind, *value)),
            }
            .unwrap_or_default(),
            "limit" => match &self.trigger {
                WoTrigger::Alarm { limit, .. } => limit.as_ref().map(|v| shown(v, precision)),
                WoTrigger::Meter {
                    kind, threshold, ..
                } => Some(meter_number(*kind, *threshold)),
            }
            .unwrap_or_default(),
            "unit" => self.trigger.unit().unwrap_or_default().to_owned(),
            "condition" => match &self.trigger {
                WoTrigger::Alarm { condition, .. } => condition.clone(),
                WoTrigger::Meter { kind, .. } => kind.as_str().to_owned(),
            },
            "since" => format_time(self.trigger.since()),
            "asset" => self.asset.clone(),
            "location" => self.location.clone().unwrap_or_default(),
            "site" => self.site.clone(),
            "gateway" => self.gateway.clone(),
            "priority" => self.priority.as_str().to_owned(),
            "problem_code" => self.problem_code.clone().unwrap_or_default(),
            "procedure" => self.procedure.clone().unwrap_or_default(),
            "occurrences" => self.occurrences.to_string(),
            _ => String::new(),
        }
    }

    /// Renders title and description from `template`, or the defaults;
    /// `ctx` gives the tag's precision for the alarm's value and limit.
    /// The flood guard's texts are set where it raises them.
    pub(super) fn render(&mut self, template: &WorkOrderTemplate, ctx: &WoContext<'_>) {
        if self.source == WoSource::Flood {
            return;
        }
        let precision = self.precision(ctx);
        self.title = match &template.title {
            Some(t) => fill(t, |p| self.placeholder(p, precision)),
            None => self.default_title(precision),
        };
        self.description = match &template.description {
            Some(t) => fill(t, |p| self.placeholder(p, precision)),
            None => self.default_description(precision),
        };
    }

    /// The precision of an alarm's value and limit: its tag's, when they
    /// are in the tag's units; one decimal for stale's seconds; none for
    /// a rate or an expr (`precision_for`). Looked up at each rendering
    /// rather than kept in the work order, whose fields are its saved
    /// layout and its payload.
    fn precision(&self, ctx: &WoContext<'_>) -> Option<Precision> {
        match &self.trigger {
            WoTrigger::Alarm { tag, condition, .. } => precision_for(condition, || {
                ctx.tag(tag.as_deref()?).map(|(_, t)| Precision::of(t))
            }),
            WoTrigger::Meter { .. } => None,
        }
    }

    fn default_title(&self, precision: Option<Precision>) -> String {
        match &self.trigger {
            WoTrigger::Alarm {
                limit,
                unit,
                condition,
                ..
            } => {
                let mut phrase = condition.clone();
                if let Some(limit) = limit {
                    phrase.push(' ');
                    phrase.push_str(&with_unit(&shown(limit, precision), unit.as_deref()));
                }
                format!("{}: {} ({phrase})", self.asset, self.source.name())
            }
            WoTrigger::Meter {
                meter,
                kind,
                threshold,
                ..
            } => format!(
                "{}: preventive maintenance at {} ({meter})",
                self.asset,
                meter_amount(*kind, *threshold)
            ),
        }
    }

    fn default_description(&self, precision: Option<Precision>) -> String {
        let mut d = String::new();
        match &self.trigger {
            WoTrigger::Alarm {
                rule,
                tag,
                value,
                limit,
                unit,
                condition,
                since,
            } => {
                let _ = write!(
                    d,
                    "Alarm {rule} ({condition}) became active at {}",
                    format_time(*since)
                );
                if let Some(tag) = tag {
                    let _ = write!(d, " on {tag}");
                }
                if let Some(value) = value {
                    let _ = write!(
                        d,
                        ": value {}",
                        with_unit(&shown(value, precision), unit.as_deref())
                    );
                    if let Some(limit) = limit {
                        let _ = write!(
                            d,
                            ", limit {}",
                            with_unit(&shown(limit, precision), unit.as_deref())
                        );
                    }
                }
                let _ = write!(d, ". Occurrences: {}.", self.occurrences);
            }
            WoTrigger::Meter {
                meter,
                tag,
                kind,
                value,
                threshold,
                since,
            } => {
                let _ = write!(
                    d,
                    "Meter {meter} ({} of {tag}) reached {} at {}: preventive maintenance due at {}.",
                    kind.as_str(),
                    meter_amount(*kind, *value),
                    format_time(*since),
                    meter_amount(*kind, *threshold),
                );
            }
        }
        if let Some(p) = &self.procedure {
            let _ = write!(d, " Procedure: {p}.");
        }
        d
    }
}

/// Fills `{placeholder}`s; anything else between braces is kept as is.
fn fill(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) if PLACEHOLDERS.contains(&&after[..close]) => {
                out.push_str(&value(&after[..close]));
                rest = &after[close + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `80 degC`, or `80` without a unit.
fn with_unit(value: &str, unit: Option<&str>) -> String {
    match unit {
        Some(u) if !u.is_empty() => format!("{value} {u}"),
        _ => value.to_owned(),
    }
}

/// An alarm's value or limit: with its tag's precision when it has one
/// (`81.2` for a tenth-degree register), else [`format_value`].
fn shown(v: &Value, precision: Option<Precision>) -> String {
    match precision {
        Some(p) => p.value(v),
        None => format_value(v),
    }
}

/// A meter's value or threshold as a number in its unit (hours or
/// counts), for the `{value}` and `{limit}` placeholders: `2,000`,
/// `12.5`, `0.0083` hours; `1,234` counts.
fn meter_number(kind: Measure, x: f64) -> String {
    match kind {
        Measure::Runtime => precision::hours_number(x),
        Measure::Count => precision::count(x),
    }
}

/// A meter's value or threshold with its unit, for the default texts:
/// `2,000 h`, `30 s` (a demo's meter), `1,234 count`.
fn meter_amount(kind: Measure, x: f64) -> String {
    match kind {
        Measure::Runtime => precision::hours(x),
        Measure::Count => with_unit(&precision::count(x), Some(kind.unit())),
    }
}

/// A value for people: numbers with up to three decimals.
pub fn format_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(x) => format_number(*x),
        Value::Text(s) => s.clone(),
    }
}

/// A number for people: up to three decimals, trailing zeros dropped
/// (`80`, `80.25`, `-3.142`); below 0.001 in scientific form (`1.2e-4`).
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    if x.abs() < 1e-3 {
        let s = format!("{x:.2e}");
        return match s.split_once('e') {
            Some((mantissa, exp)) => format!("{}e{exp}", trim_zeros(mantissa)),
            None => s,
        };
    }
    let s = trim_zeros(&format!("{x:.3}")).to_owned();
    if s == "-0" { "0".to_owned() } else { s }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// A time for people: RFC 3339 UTC, whole seconds (clamped to year 9999).
pub fn format_time(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(at.clamped().to_system_time()).to_string()
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;
    use crate::config::{PLACEHOLDERS, Priority};

    #[test]
    fn templates_fill_every_placeholder_and_recount_occurrences() {
        let mut rig = Rig::new();
        let mut r = rule("pump1_hot", "pump1.temp", 80.0);
        r.priority = Priority::Critical;
        r.workorder.problem_code = Some("OH".into());
        r.workorder.procedure = Some("SOP-1".into());
        let all: String = PLACEHOLDERS
            .iter()
            .map(|p| format!("{p}={{{p}}};"))
            .collect();
        r.workorder.title = Some("{asset} hot ({occurrences}x) {unknown} {".into());
        r.workorder.description = Some(all);
        let wo = raised(&rig.event(&activation("pump1_hot", 0.0, 81.23456, 80.0), &r)).clone();
        assert_eq!(wo.title, "P-101 hot (1x) {unknown} {");
        assert_eq!(
            wo.description,
            "rule=pump1_hot;tag=pump1.temp;device=pump1;value=81.23;limit=80;unit=degC;\
             condition=above;since=2025-11-21T04:40:00Z;asset=P-101;location=Hall 2;\
             site=plant-a;gateway=gw1;priority=critical;problem_code=OH;procedure=SOP-1;\
             meter=;occurrences=1;"
        );
        let ch = rig.event(&activation("pump1_hot", 5.0, 90.0, 80.0), &r);
        let w = ch[0].work_order().unwrap();
        assert_eq!(w.title, "P-101 hot (2x) {unknown} {");
        assert!(
            w.description.contains("value=81.23;"),
            "the raising value stays"
        );
        assert!(w.description.ends_with("occurrences=2;"));
    }

    #[test]
    fn alarm_values_have_their_tags_precision() {
        let mut rig = Rig::new();
        // pump1.temp read in tenths of a degree.
        let mut pump1 = (*rig.devices[0]).clone();
        pump1.tags[0].data_type = crate::tag::DataType::I16;
        pump1.tags[0].scale = 0.1;
        rig.devices[0] = std::sync::Arc::new(pump1);
        let mut r = rule("pump1_hot", "pump1.temp", 80.0);
        r.workorder.title = Some("{asset}: {value} {unit} above {limit} {unit}".into());
        let wo = raised(&rig.event(&activation("pump1_hot", 0.0, 812.0 * 0.1, 80.0), &r)).clone();
        assert_eq!(wo.title, "P-101: 81.2 degC above 80.0 degC");
        assert!(
            wo.description
                .contains(": value 81.2 degC, limit 80.0 degC."),
            "{}",
            wo.description
        );
        // The payload keeps the value in full.
        let WoTrigger::Alarm { value, .. } = &wo.trigger else {
            panic!("{:?}", wo.trigger)
        };
        assert_eq!(value, &Some(Value::Float(812.0 * 0.1)));

        // `decimals` wins over the scale.
        let mut pump1 = (*rig.devices[0]).clone();
        pump1.tags[0].decimals = Some(0);
        rig.devices[0] = std::sync::Arc::new(pump1);
        let mut r = rule("pump1_warm", "pump1.temp", 75.0);
        r.workorder.title = Some("{value} over {limit}".into());
        let wo = raised(&rig.event(&activation("pump1_warm", 1.0, 81.26, 75.0), &r)).clone();
        assert_eq!(wo.title, "81 over 75");

        // A rate is not in the tag's units: the general rule.
        let mut r = rule("pump1_rising", "pump1.temp", 0.0);
        r.condition = crate::config::Condition::Rate {
            tag: "pump1.temp".into(),
            limit: 1.5,
            per: std::time::Duration::from_secs(60),
            window: std::time::Duration::from_secs(300),
        };
        r.workorder.title = Some("{value} {unit} over {limit} {unit}".into());
        let wo = raised(&rig.event(&activation("pump1_rising", 2.0, 2.34567, 1.5), &r)).clone();
        assert_eq!(wo.title, "2.346 degC/min over 1.5 degC/min");

        // Stale: seconds with one decimal.
        let mut r = rule("pump1_silent", "pump1.temp", 0.0);
        r.condition = crate::config::Condition::Stale {
            tag: "pump1.temp".into(),
            after: std::time::Duration::from_secs(5),
        };
        r.workorder.title = Some("no data for {value} {unit} (after {limit})".into());
        let wo = raised(&rig.event(&activation("pump1_silent", 3.0, 6.003, 5.0), &r)).clone();
        assert_eq!(wo.title, "no data for 6.0 s (after 5.0)");
    }

    #[test]
    fn meters_in_hours_and_counts() {
        use crate::rules::meter::Measure;
        let amount = |kind, x| meter_amount(kind, x);
        assert_eq!(amount(Measure::Runtime, 2000.0), "2,000 h");
        assert_eq!(amount(Measure::Runtime, 30.0 / 3600.0), "30 s");
        assert_eq!(amount(Measure::Count, 1234.0), "1,234 count");
        assert_eq!(meter_number(Measure::Runtime, 1850.4), "1,850");
        assert_eq!(meter_number(Measure::Runtime, 30.0 / 3600.0), "0.0083");
        assert_eq!(meter_number(Measure::Count, 12.0), "12");
    }

    #[test]
    fn numbers_and_units_for_people() {
        assert_eq!(format_number(80.0), "80");
        assert_eq!(format_number(80.25), "80.25");
        assert_eq!(format_number(-1.23456), "-1.235");
        assert_eq!(format_number(0.00012), "1.2e-4");
        assert_eq!(format_number(-0.0001), "-1e-4");
        assert_eq!(format_number(-0.0), "0");
        assert_eq!(format_number(-0.0004999), "-5e-4");
        assert_eq!(format_number(1e20), "100000000000000000000");
        assert_eq!(format_number(f64::NAN), "NaN");
        assert_eq!(format_value(&Value::Bool(true)), "true");
        assert_eq!(format_value(&Value::UInt(u64::MAX)), u64::MAX.to_string());
        assert_eq!(format_time(Timestamp(u64::MAX)), "9999-12-31T23:59:59Z");
    }
}
