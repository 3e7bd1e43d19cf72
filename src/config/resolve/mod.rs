//! From the merged values to typed sections and elements: read each
//! section and element on its own (so one mistake does not hide the next),
//! and resolve defaults, durations, addresses, CSV tag maps and secrets.
//!
//! Resolving finds the problems within one element: a value out of range,
//! a tag that is not a tag, two tags of one device on the same registers,
//! a rule whose limits contradict each other. What can only be judged
//! across elements (unique names, references to tags and buses) is left
//! to [`validate`](super::validate), which runs on the result.
//!
//! * [`fields`]: required fields, ranges, durations and names.
//! * [`sections`]: `[gateway]`, `[mqtt]`, `[store]`, `[http]`, `[alarms]`
//!   and `[workorders]`.
//! * [`devices`]: `[[buses]]` and `[[devices]]`.
//! * [`tags`]: one tag, and the tag map of one device.
//! * [`rules`]: `[[rules]]` and `[[meters]]`, with their work-order
//!   templates.

mod devices;
mod fields;
mod rules;
mod sections;
mod tags;

use figment::value::{Dict, Value};
use sha2::Sha256;

use super::raw::{
    RawAlarms, RawBus, RawDevice, RawGateway, RawHttp, RawMeter, RawMqtt, RawRule, RawStore,
    RawWorkOrders,
};
use super::report::Ctx;
use super::resolved::{Placed, Resolved};
use super::{Bus, Device};

/// The `name` each element of `section` was written with, as far as it is
/// text, with the element's field path: read from the merged values, so an
/// element that does not resolve still has its name checked for duplicates.
fn names(section: &str, elements: &[(usize, Value)]) -> Vec<Placed<String>> {
    elements
        .iter()
        .filter_map(|(i, v)| {
            let name = v.find_ref("name")?.as_str()?;
            Some(Placed {
                field: format!("{section}[{i}]"),
                value: name.to_string(),
            })
        })
        .collect()
}

/// Resolves every section and element of the merged config `root`; the
/// CSV tag maps it reads go into `hasher`.
pub(super) fn resolve(ctx: &mut Ctx, root: &Dict, hasher: &mut Sha256) -> Resolved {
    let gateway = ctx.read::<RawGateway>("gateway", root.get("gateway"));
    let mqtt = ctx.read::<RawMqtt>("mqtt", root.get("mqtt"));
    let store = ctx.read::<RawStore>("store", root.get("store"));
    let http = ctx.read::<RawHttp>("http", root.get("http"));
    let alarms = ctx.read::<RawAlarms>("alarms", root.get("alarms"));
    let workorders = ctx.read::<RawWorkOrders>("workorders", root.get("workorders"));

    let gateway = sections::gateway(ctx, gateway.unwrap_or_default());
    let mqtt = sections::mqtt(ctx, mqtt.unwrap_or_default(), &gateway);
    let store = sections::store(ctx, store.unwrap_or_default(), &gateway);
    let http = sections::http(ctx, http.unwrap_or_default());
    let alarms = sections::alarms(ctx, alarms.unwrap_or_default());
    let workorders = sections::workorders(ctx, workorders.unwrap_or_default());

    let bus_elements = elements(ctx, root, "buses");
    let bus_names = names("buses", &bus_elements);
    let buses: Vec<Placed<Bus>> = bus_elements
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("buses[{i}]");
            let raw = ctx.read::<RawBus>(&field, Some(&v))?;
            let bus = devices::bus(ctx, &field, raw)?;
            Some(Placed { field, value: bus })
        })
        .collect();

    let device_elements = elements(ctx, root, "devices");
    let device_names = names("devices", &device_elements);
    let devices: Vec<Placed<Device>> = device_elements
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("devices[{i}]");
            let raw = ctx.read::<RawDevice>(&field, Some(&v))?;
            let device = devices::device(ctx, &field, raw, hasher)?;
            Some(Placed {
                field,
                value: device,
            })
        })
        .collect();

    let raw_rules: Vec<(String, RawRule)> = elements(ctx, root, "rules")
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("rules[{i}]");
            let raw = ctx.read::<RawRule>(&field, Some(&v))?;
            Some((field, raw))
        })
        .collect();
    let raw_meters: Vec<(String, RawMeter)> = elements(ctx, root, "meters")
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("meters[{i}]");
            let raw = ctx.read::<RawMeter>(&field, Some(&v))?;
            Some((field, raw))
        })
        .collect();
    let rules = raw_rules
        .into_iter()
        .map(|(field, raw)| rules::rule(ctx, field, raw))
        .collect();
    let meters = raw_meters
        .into_iter()
        .map(|(field, raw)| rules::meter(ctx, field, raw))
        .collect();

    Resolved {
        gateway,
        mqtt,
        store,
        http,
        alarms,
        workorders,
        buses,
        bus_names,
        devices,
        device_names,
        rules,
        meters,
    }
}

/// The elements of an array-of-tables section, with their indexes.
fn elements(ctx: &mut Ctx, root: &Dict, key: &str) -> Vec<(usize, Value)> {
    match root.get(key) {
        None => Vec::new(),
        Some(Value::Array(_, items)) => items.iter().cloned().enumerate().collect(),
        Some(_) => {
            ctx.error(
                key,
                format!("`{key}` must be a list of tables, written [[{key}]]"),
            );
            Vec::new()
        }
    }
}
