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
//! * [`sections`]: `[gateway]`, `[mqtt]`, `[store]`, `[http]`,
//!   `[sparkplug]`, `[writes]`, `[alarms]` and `[workorders]`.
//! * [`devices`]: `[[buses]]` and `[[devices]]`.
//! * [`tags`]: one tag, and the tag map of one device.
//! * [`writes`]: the write-back keys of a tag and of a device, and
//!   whether a writable tag can be written at all.
//! * [`rules`]: `[[rules]]` and `[[meters]]`, with their work-order
//!   templates.
//! * [`cmms`]: `[[cmms]]`, the CMMS connectors, and `[bridge]` of
//!   `bridge.toml`.

mod cmms;
mod devices;
mod fields;
mod rules;
mod sections;
mod tags;
mod writes;

use figment::value::{Dict, Value};
use sha2::Sha256;

use super::raw::{
    RawAlarms, RawBridge, RawBus, RawDevice, RawGateway, RawHttp, RawMeter, RawMqtt, RawRule,
    RawSparkplug, RawStore, RawWorkOrders, RawWrites,
};
use super::report::Ctx;
use super::resolved::{Connector, KeyOrder, Placed, Resolved, ResolvedBridge};
use super::{Bus, Device, GatewayConfig};

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
pub(super) fn resolve(
    ctx: &mut Ctx,
    root: &Dict,
    key_order: &KeyOrder,
    hasher: &mut Sha256,
) -> Resolved {
    let gateway = ctx.read::<RawGateway>("gateway", root.get("gateway"));
    let mqtt = ctx.read::<RawMqtt>("mqtt", root.get("mqtt"));
    let store = ctx.read::<RawStore>("store", root.get("store"));
    let http = ctx.read::<RawHttp>("http", root.get("http"));
    let alarms = ctx.read::<RawAlarms>("alarms", root.get("alarms"));
    let workorders = ctx.read::<RawWorkOrders>("workorders", root.get("workorders"));
    let writes = ctx.read::<RawWrites>("writes", root.get("writes"));
    // Unlike the other sections, `[sparkplug]` is off when it is absent.
    let sparkplug = root
        .get("sparkplug")
        .map(|v| ctx.read::<RawSparkplug>("sparkplug", Some(v)));

    let gateway = sections::gateway(ctx, gateway.unwrap_or_default());
    let mqtt = sections::mqtt(ctx, mqtt.unwrap_or_default(), &gateway);
    let store = sections::store(ctx, store.unwrap_or_default(), &gateway);
    let http = sections::http(ctx, http.unwrap_or_default());
    let alarms = sections::alarms(ctx, alarms.unwrap_or_default());
    let workorders = sections::workorders(ctx, workorders.unwrap_or_default());
    let writes = sections::writes(ctx, writes.unwrap_or_default());
    let sparkplug = sparkplug
        .flatten()
        .and_then(|raw| sections::sparkplug(ctx, raw, &gateway, &mqtt));

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
    let meter_elements = elements(ctx, root, "meters");
    let meter_names = names("meters", &meter_elements);
    let raw_meters: Vec<(String, RawMeter)> = meter_elements
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
    let (cmms, cmms_names) = connectors(ctx, root, key_order);

    Resolved {
        gateway,
        mqtt,
        store,
        http,
        sparkplug,
        writes,
        alarms,
        workorders,
        buses,
        bus_names,
        devices,
        device_names,
        rules,
        meters,
        meter_names,
        cmms,
        cmms_names,
    }
}

/// Every `[[cmms]]` element, and the names they were written with.
fn connectors(
    ctx: &mut Ctx,
    root: &Dict,
    key_order: &KeyOrder,
) -> (Vec<Connector>, Vec<Placed<String>>) {
    let elements = elements(ctx, root, "cmms");
    let names = names("cmms", &elements);
    let connectors = elements
        .into_iter()
        .map(|(i, v)| cmms::connector(ctx, format!("cmms[{i}]"), v, key_order))
        .collect();
    (connectors, names)
}

/// Resolves every section and element of a merged `bridge.toml`.
pub(super) fn resolve_bridge(ctx: &mut Ctx, root: &Dict, key_order: &KeyOrder) -> ResolvedBridge {
    let bridge = ctx.read::<RawBridge>("bridge", root.get("bridge"));
    let mqtt = ctx.read::<RawMqtt>("mqtt", root.get("mqtt"));
    let store = ctx.read::<RawStore>("store", root.get("store"));
    let mqtt = mqtt.unwrap_or_default();
    // The bridge reads the gateways' topics: one prefix, `[bridge]`'s,
    // which `[mqtt]`'s (judged there) stands for when it alone is given.
    let mqtt_prefix = mqtt.topic_prefix.clone();
    let bridge = cmms::bridge(ctx, bridge.unwrap_or_default(), mqtt_prefix.clone());
    if let Some(p) = &mqtt_prefix
        && *p != bridge.topic_prefix
    {
        ctx.error(
            "mqtt.topic_prefix",
            format!(
                "topic prefix \"{p}\" differs from [bridge] topic_prefix \"{}\": the bridge reads the gateways' topics under one prefix; keep one of them",
                bridge.topic_prefix
            ),
        );
    }

    // `[mqtt]` and `[store]` are read as the gateway's are; only their
    // defaults name the bridge rather than a gateway.
    let own_client_id = mqtt.client_id.is_none();
    let stand_in = GatewayConfig {
        id: bridge.id.clone(),
        site: String::new(),
        location: None,
        data_dir: bridge.data_dir.clone(),
        shutdown_timeout: std::time::Duration::ZERO,
    };
    let mut mqtt = sections::mqtt(ctx, mqtt, &stand_in);
    if own_client_id {
        mqtt.client_id = format!("fieldgate-bridge-{}", bridge.id);
    }
    mqtt.topic_prefix = bridge.topic_prefix.clone();
    let store = store.unwrap_or_default();
    let own_path = store.path.is_none();
    let mut store = sections::store(ctx, store, &stand_in);
    if own_path {
        store.path = bridge.data_dir.join("bridge.db");
    }
    let (cmms, cmms_names) = connectors(ctx, root, key_order);
    ResolvedBridge {
        bridge,
        mqtt,
        store,
        cmms,
        cmms_names,
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
