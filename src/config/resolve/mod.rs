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
//! * [`templates`]: `[[templates]]`, and the devices, rules and meters
//!   made from them (the device list, `devices = "devices.csv"`, is read
//!   by `csv_devices`).
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
#[cfg(test)]
mod template_tests;
mod templates;
mod writes;

use std::collections::HashSet;

use figment::value::{Dict, Tag as ValueTag, Value};
use sha2::Sha256;

use super::csv_devices;
use super::raw::{
    RawAlarms, RawBridge, RawBus, RawDevice, RawGateway, RawHttp, RawMeter, RawMqtt, RawRule,
    RawSparkplug, RawStore, RawWorkOrders, RawWrites,
};
use super::report::{Ctx, OwnSite, Scope};
use super::resolved::{Connector, KeyOrder, Placed, Resolved, ResolvedBridge};
use super::{Bus, Device, GatewayConfig};
use templates::PartKind;

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

    let template_elements = elements(ctx, root, "templates");
    let templates = templates::read(ctx, template_elements, hasher);
    // `None`: the device list could not be read, so which templates it
    // uses is unknown.
    let entries = device_entries(ctx, root, &templates, hasher);
    let known = entries.is_some();
    let entries = entries.unwrap_or_default();
    let device_names = entries
        .iter()
        .filter_map(|e| {
            Some(Placed {
                field: e.field.clone(),
                value: e.value.get("name")?.as_str()?.to_string(),
            })
        })
        .collect();
    let mut used = HashSet::new();
    let mut devices: Vec<Placed<Device>> = Vec::new();
    let mut made_rules: Vec<(String, Value)> = Vec::new();
    let mut made_meters: Vec<(String, Value)> = Vec::new();
    for DeviceEntry { field, value, own } in entries {
        // A row of the device list is its own site from the start, so a
        // template it names wrong is reported at its cell.
        if let (OwnSite::Csv { .. }, Some(name)) = (&own, value.get("name").and_then(Value::as_str))
        {
            ctx.scopes.insert(
                field.clone(),
                Scope {
                    own: own.clone(),
                    template: None,
                    instance: name.to_string(),
                },
            );
        }
        let device = match value.get("template") {
            None => plain_device(ctx, &field, value, hasher),
            Some(Value::String(_, name)) => {
                let Some(template) =
                    templates::find(ctx, &format!("{field}.template"), name, &templates)
                else {
                    continue;
                };
                used.insert(template.name.clone());
                if template.broken {
                    continue;
                }
                match templates::instantiate(ctx, &field, &own, &value, template) {
                    Some(made) => {
                        let Some(raw) = ctx.read::<RawDevice>(&field, Some(&made.device)) else {
                            continue;
                        };
                        let name = raw.name.clone().unwrap_or_default();
                        ctx.current = Some((template.field.clone(), name));
                        let device =
                            devices::device(ctx, &field, raw, hasher, made.tags, made.tags_file);
                        ctx.current = None;
                        // A device that does not resolve is reported; its
                        // rules would only repeat that its tags are missing.
                        if device.is_some() {
                            made_rules.extend(made.rules);
                            made_meters.extend(made.meters);
                        }
                        device
                    }
                    // No name: resolved as written, which reports it.
                    None => plain_device(ctx, &field, value, hasher),
                }
            }
            Some(_) => {
                ctx.error(
                    &format!("{field}.template"),
                    "template is the name of a [[templates]] element (template = \"pump\")",
                );
                continue;
            }
        };
        if let Some(device) = device {
            devices.push(Placed {
                field,
                value: device,
            });
        }
    }
    if known {
        templates::unused(ctx, &templates, &used);
    }

    let raw_rules: Vec<(String, RawRule)> = elements(ctx, root, "rules")
        .into_iter()
        .map(|(i, v)| (format!("rules[{i}]"), v))
        .chain(made_rules)
        .filter_map(|(field, v)| {
            let raw = ctx.read::<RawRule>(&field, Some(&v))?;
            Some((field, raw))
        })
        .collect();
    let meter_elements: Vec<(String, Value)> = elements(ctx, root, "meters")
        .into_iter()
        .map(|(i, v)| (format!("meters[{i}]"), v))
        .chain(made_meters)
        .collect();
    let meter_names = meter_elements
        .iter()
        .filter_map(|(field, v)| {
            Some(Placed {
                field: field.clone(),
                value: v.find_ref("name")?.as_str()?.to_string(),
            })
        })
        .collect();
    let raw_meters: Vec<(String, RawMeter)> = meter_elements
        .into_iter()
        .filter_map(|(field, v)| {
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

/// A device as written: a `[[devices]]` element or a row of the device
/// list, at the field path it is resolved at (`devices[3]`).
struct DeviceEntry {
    field: String,
    value: Dict,
    own: OwnSite,
}

/// The devices of `devices`: `[[devices]]` tables, or the rows of the
/// device list it names (`devices = "devices.csv"`).
fn device_entries(
    ctx: &mut Ctx,
    root: &Dict,
    templates: &[templates::Template],
    hasher: &mut Sha256,
) -> Option<Vec<DeviceEntry>> {
    match root.get("devices") {
        None => Some(Vec::new()),
        Some(Value::String(_, file)) => {
            let path = ctx.path(file);
            let part_of = |template: &str, name: &str| part_of(templates, template, name);
            let rows = csv_devices::read(ctx, "devices", &path, &part_of, hasher)?;
            Some(
                rows.into_iter()
                    .enumerate()
                    .map(|(i, row)| DeviceEntry {
                        field: format!("devices[{i}]"),
                        value: row.value,
                        own: row.site,
                    })
                    .collect(),
            )
        }
        Some(Value::Array(_, items)) => Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let field = format!("devices[{i}]");
                    match v.as_dict() {
                        Some(d) => Some(DeviceEntry {
                            field,
                            value: d.clone(),
                            own: OwnSite::Toml,
                        }),
                        None => {
                            ctx.error(
                                &field,
                                "a device is a table of its keys, written [[devices]]",
                            );
                            None
                        }
                    }
                })
                .collect(),
        ),
        Some(_) => {
            ctx.error(
                "devices",
                "`devices` is a list of tables, written [[devices]], or the path of a device list (devices = \"devices.csv\")",
            );
            None
        }
    }
}

/// Which list of the template `template` the override column `name.KEY`
/// of a device list names: `rules` or `meters`, or why neither.
fn part_of(
    templates: &[templates::Template],
    template: &str,
    name: &str,
) -> Result<&'static str, String> {
    let Some(t) = templates.iter().find(|t| t.name == template) else {
        // The template itself is reported in its cell.
        return Ok("rules");
    };
    let lists: Vec<&'static str> = [PartKind::Rule, PartKind::Meter]
        .into_iter()
        .filter(|k| t.parts(*k).iter().any(|p| p.name == name))
        .map(PartKind::key)
        .collect();
    match lists.as_slice() {
        [one] => Ok(one),
        [] => {
            // Headers are matched without regard to case, a template's
            // names as written.
            let same = t
                .rules
                .iter()
                .chain(&t.meters)
                .find(|p| p.name.eq_ignore_ascii_case(name));
            Err(match same {
                Some(p) => format!(
                    "template \"{template}\" has no rule or meter \"{name}\"; did you mean \"{}\"? (names match as written)",
                    p.name
                ),
                None => format!(
                    "template \"{template}\" has no rule or meter \"{name}\"{}",
                    template_parts(t)
                ),
            })
        }
        _ => Err(format!(
            "template \"{template}\" has a rule and a meter named \"{name}\"; write rules.{name}.KEY or meters.{name}.KEY"
        )),
    }
}

/// `: its rules are a, b; its meters c` for a hint, or nothing.
fn template_parts(t: &templates::Template) -> String {
    let list = |kind: PartKind| {
        t.parts(kind)
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (t.rules.is_empty(), t.meters.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" (rules: {})", list(PartKind::Rule)),
        (true, false) => format!(" (meters: {})", list(PartKind::Meter)),
        (false, false) => format!(
            " (rules: {}; meters: {})",
            list(PartKind::Rule),
            list(PartKind::Meter)
        ),
    }
}

/// A device made from no template, resolved as written.
fn plain_device(ctx: &mut Ctx, field: &str, value: Dict, hasher: &mut Sha256) -> Option<Device> {
    for list in ["rules", "meters"] {
        if value.contains_key(list) {
            ctx.error(
                &format!("{field}.{list}"),
                format!(
                    "`{list}` overrides the {list} of a template, and this device has no `template`"
                ),
            );
        }
    }
    let raw = ctx.read::<RawDevice>(field, Some(&Value::Dict(ValueTag::Default, value)))?;
    devices::device(ctx, field, raw, hasher, Vec::new(), None)
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
