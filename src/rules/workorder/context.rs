//! What the book looks up in the configuration: the site and gateway,
//! each tag's device, asset, location and unit, and which tag a rule's
//! condition watches.

use std::sync::Arc;

use crate::config::{Condition, Config, Device, GatewayConfig};
use crate::precision::Precision;
use crate::tag::Tag;

/// What the book needs from the configuration to fill in a work order.
#[derive(Debug, Clone, Copy)]
pub struct WoContext<'a> {
    /// Site id.
    pub site: &'a str,
    /// Gateway id (also the flood work order's asset).
    pub gateway: &'a str,
    /// The gateway's location (the last default for locations).
    pub location: Option<&'a str>,
    /// The devices, for tags' assets and units and devices' locations.
    pub devices: &'a [Arc<Device>],
}

impl<'a> WoContext<'a> {
    /// From `[gateway]` and the devices.
    pub fn new(gateway: &'a GatewayConfig, devices: &'a [Arc<Device>]) -> WoContext<'a> {
        WoContext {
            site: &gateway.site,
            gateway: &gateway.id,
            location: gateway.location.as_deref(),
            devices,
        }
    }

    /// From a whole configuration.
    pub fn of(config: &'a Config) -> WoContext<'a> {
        WoContext::new(&config.gateway, &config.devices)
    }

    /// A tag by full name (`device.tag`) and its device.
    pub fn tag(&self, full: &str) -> Option<(&'a Device, &'a Tag)> {
        find_tag(self.devices, full)
    }

    /// The asset: `explicit` (the rule's or meter's), else the tag's, else
    /// its device's, else the gateway id.
    pub fn asset_for(&self, explicit: Option<&str>, tag: Option<&str>) -> String {
        if let Some(a) = explicit {
            return a.to_owned();
        }
        let found = tag.and_then(|t| self.tag(t));
        found
            .and_then(|(d, t)| t.asset.as_deref().or(d.asset.as_deref()))
            .unwrap_or(self.gateway)
            .to_owned()
    }

    /// The location: `explicit`, else the tag's device's, else the
    /// gateway's.
    pub fn location_for(&self, explicit: Option<&str>, tag: Option<&str>) -> Option<String> {
        explicit
            .or_else(|| {
                tag.and_then(|t| self.tag(t))
                    .and_then(|(d, _)| d.location.as_deref())
            })
            .or(self.location)
            .map(str::to_owned)
    }

    /// The tag's engineering unit.
    fn unit(&self, tag: &str) -> Option<&'a str> {
        self.tag(tag).and_then(|(_, t)| t.unit.as_deref())
    }
}

/// A tag by full name (`device.tag`) and its device.
fn find_tag<'a>(devices: &'a [Arc<Device>], full: &str) -> Option<(&'a Device, &'a Tag)> {
    let (device, tag) = full.split_once('.')?;
    let device = devices.iter().find(|d| d.name == device)?;
    Some((device, device.tag(tag)?))
}

/// The precision a condition's value and limit are shown with, by the
/// condition's kind: `tag`'s (looked up only then) when they are the
/// tag's own value (above, below, outside, equals); one decimal for
/// stale's seconds (`6.0 s`, the gateway's clock has milliseconds nobody
/// needs); `None` for a rate (units per time) and an expr (no single
/// tag): then a number is shown with [`crate::precision::SIGNIFICANT`]
/// digits on the page, with up to three decimals in work-order texts.
pub(super) fn precision_for(
    kind: &str,
    tag: impl FnOnce() -> Option<Precision>,
) -> Option<Precision> {
    match kind {
        "above" | "below" | "outside" | "equals" => tag(),
        "stale" => Some(Precision::Decimals(1)),
        _ => None,
    }
}

/// The precision a rule's value and limit are shown with
/// (see `precision_for`).
pub fn value_precision(condition: &Condition, devices: &[Arc<Device>]) -> Option<Precision> {
    precision_for(condition.kind(), || {
        let (_, tag) = find_tag(devices, condition_tag(condition)?)?;
        Some(Precision::of(tag))
    })
}

/// The tag a condition watches, or the first of an `expr` (for defaults).
pub(super) fn condition_tag(condition: &Condition) -> Option<&str> {
    match condition {
        Condition::Above { tag, .. }
        | Condition::Below { tag, .. }
        | Condition::Outside { tag, .. }
        | Condition::Rate { tag, .. }
        | Condition::Stale { tag, .. }
        | Condition::Equals { tag, .. } => Some(tag),
        Condition::Expr { tags, .. } => tags.first().map(String::as_str),
    }
}

/// The unit of a condition's trigger value and limit.
pub(super) fn trigger_unit(condition: &Condition, ctx: &WoContext<'_>) -> Option<String> {
    match condition {
        Condition::Above { tag, .. }
        | Condition::Below { tag, .. }
        | Condition::Outside { tag, .. }
        | Condition::Equals { tag, .. } => ctx.unit(tag).map(str::to_owned),
        Condition::Rate { tag, per, .. } => {
            let per = match per.as_secs() {
                1 if per.subsec_nanos() == 0 => "s".to_owned(),
                60 if per.subsec_nanos() == 0 => "min".to_owned(),
                3600 if per.subsec_nanos() == 0 => "h".to_owned(),
                _ => humantime::format_duration(*per).to_string(),
            };
            Some(format!("{}/{per}", ctx.unit(tag).unwrap_or("1")))
        }
        Condition::Stale { .. } => Some("s".to_owned()),
        Condition::Expr { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::fixtures::*;
    use super::*;
    use crate::rules::Trigger;
    use crate::tag::Value;

    #[test]
    fn asset_and_location_defaults() {
        let devices = devices();
        let mut gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        // Rule's own, then the tag's, then the device's, then the gateway.
        assert_eq!(ctx.asset_for(Some("X-1"), Some("pump1.pressure")), "X-1");
        assert_eq!(ctx.asset_for(None, Some("pump1.pressure")), "SEAL-7");
        assert_eq!(ctx.asset_for(None, Some("pump1.temp")), "P-101");
        assert_eq!(ctx.asset_for(None, Some("pump2.temp")), "gw1");
        assert_eq!(ctx.asset_for(None, Some("nowhere.x")), "gw1");
        assert_eq!(ctx.asset_for(None, None), "gw1");
        // Rule's own, then the device's, then the gateway's.
        assert_eq!(
            ctx.location_for(Some("Roof"), Some("pump1.temp"))
                .as_deref(),
            Some("Roof")
        );
        assert_eq!(
            ctx.location_for(None, Some("pump1.temp")).as_deref(),
            Some("Hall 2")
        );
        assert_eq!(
            ctx.location_for(None, Some("pump2.temp")).as_deref(),
            Some("Building A")
        );
        gw.location = None;
        let ctx = WoContext::new(&gw, &devices);
        assert_eq!(ctx.location_for(None, Some("pump2.temp")), None);

        // An expr rule: no single tag, the asset from its first tag.
        let mut rig = Rig::new();
        let mut r = rule("jam", "pump1.temp", 0.0);
        r.condition = Condition::Expr {
            expr: "pump1.temp > 3.0 && pump1.running".into(),
            tags: vec!["pump1.temp".into(), "pump1.running".into()],
        };
        let mut ev = activation("jam", 0.0, 0.0, 0.0);
        ev.trigger = Some(Trigger {
            value: Value::Bool(true),
            limit: None,
        });
        let wo = raised(&rig.event(&ev, &r)).clone();
        assert_eq!(wo.asset, "P-101");
        assert_eq!(wo.title, "P-101: jam (expr)");
        assert_eq!(wo.trigger.tag(), None);
        assert_eq!(wo.trigger.unit(), None);
    }

    #[test]
    fn trigger_units_of_rates_and_stale() {
        let devices = devices();
        let gw = gateway();
        let ctx = WoContext::new(&gw, &devices);
        let rate = Condition::Rate {
            tag: "pump1.temp".into(),
            limit: 1.0,
            per: Duration::from_secs(60),
            window: Duration::from_secs(300),
        };
        assert_eq!(trigger_unit(&rate, &ctx).as_deref(), Some("degC/min"));
        let stale = Condition::Stale {
            tag: "pump1.temp".into(),
            after: Duration::from_secs(30),
        };
        assert_eq!(trigger_unit(&stale, &ctx).as_deref(), Some("s"));
    }
}
