//! The checks across elements, on the resolved config: names that must be
//! unique in their section, references from devices to buses and from
//! rules and meters to tags, `expr` conditions compiled against the tags'
//! types, buses and unit ids shared, HTTP exposure, CMMS connectors'
//! names, the meters they name and their plain-HTTP addresses (for
//! `bridge.toml` too), the Sparkplug edge node's client id beside
//! `[mqtt]`'s. Resolving has already
//! judged each element on its own; this only checks, and records every
//! problem it finds rather than stopping at the first, so a technician
//! fixes a whole file in one pass. `fieldgate check` and reloads share it.

use std::cell::OnceCell;
use std::collections::{HashMap, HashSet};

use super::report::Ctx;
use super::resolved::{Connector, Needs, Placed, Reads, Resolved, ResolvedBridge};
use super::{
    Bus, CmmsConfig, CmmsKind, Connection, Device, HttpConfig, MqttConfig, SparkplugConfig,
    WebhookAuth, expr_type,
};
use crate::expr::ExprEngine;
use crate::tag::{DataType, Tag};

/// Checks `resolved`, recording problems in `ctx`.
pub(super) fn validate(ctx: &mut Ctx, resolved: &Resolved) {
    let devices: Vec<&Device> = resolved.devices.iter().map(|d| &d.value).collect();
    let buses: Vec<&Bus> = resolved.buses.iter().map(|b| &b.value).collect();

    for placed in &resolved.devices {
        if let Connection::Rtu { bus } = &placed.value.connection {
            check_bus(ctx, &placed.field, bus, &buses);
        }
    }

    // One expression engine for every `expr` rule: building one (its
    // sandbox and packages) costs more than compiling a rule, and a
    // template makes one such rule per device.
    let engine = OnceCell::new();

    // Duplicate rule and meter names are looked for among the elements
    // without other errors, as `check` has always done (a rule that did
    // not resolve has no name to trust); each keeps its own field path.
    let mut rules = Vec::new();
    for entry in &resolved.rules {
        let errors_before = error_count(ctx);
        check_reads(ctx, &entry.field, &entry.reads, &devices, &engine);
        if let Some(rule) = &entry.value
            && error_count(ctx) == errors_before
        {
            rules.push((entry.field.as_str(), rule.name.as_str()));
        }
    }
    let mut meters = Vec::new();
    for entry in &resolved.meters {
        let errors_before = error_count(ctx);
        check_reads(ctx, &entry.field, &entry.reads, &devices, &engine);
        if let Some(meter) = &entry.value
            && error_count(ctx) == errors_before
        {
            meters.push((entry.field.as_str(), meter.name.as_str()));
        }
    }

    duplicates(ctx, "bus", &placed_names(&resolved.bus_names));
    duplicates(ctx, "device", &placed_names(&resolved.device_names));
    duplicates(ctx, "rule", &rules);
    duplicates(ctx, "meter", &meters);

    check_mqtt(ctx, &resolved.mqtt);
    if let Some(sparkplug) = &resolved.sparkplug {
        check_sparkplug(ctx, sparkplug, &resolved.mqtt);
    }
    check_all(ctx, &resolved.buses, &resolved.devices, &resolved.http);
    check_cmms(
        ctx,
        &resolved.cmms,
        &resolved.cmms_names,
        Some(&resolved.meter_names),
    );
}

/// Checks a resolved `bridge.toml`, recording problems in `ctx`.
pub(super) fn validate_bridge(ctx: &mut Ctx, resolved: &ResolvedBridge) {
    check_mqtt(ctx, &resolved.mqtt);
    // A bridge has no meters of its own: the gateways' meters it names
    // are known only from the messages they publish.
    check_cmms(ctx, &resolved.cmms, &resolved.cmms_names, None);
    if resolved.cmms_names.is_empty() && resolved.cmms.is_empty() {
        ctx.warn(
            "cmms",
            "there is no [[cmms]] section: the bridge delivers nothing",
        );
    }
}

/// CMMS connectors: unique names, `meters` keys that are `[[meters]]`
/// names (when `meters` is given: the gateway's config), and plain
/// HTTP beyond this machine.
fn check_cmms(
    ctx: &mut Ctx,
    connectors: &[Connector],
    names: &[Placed<String>],
    meters: Option<&[Placed<String>]>,
) {
    duplicates(ctx, "connector", &placed_names(names));
    if let Some(meters) = meters {
        let known: Vec<&str> = meters.iter().map(|m| m.value.as_str()).collect();
        for c in connectors {
            for meter in &c.meters {
                if !known.contains(&meter.as_str()) {
                    ctx.error(
                        &format!("{}.meters.{meter}", c.field),
                        if known.is_empty() {
                            format!(
                                "meter \"{meter}\" is not defined: there is no [[meters]] section"
                            )
                        } else {
                            format!(
                                "meter \"{meter}\" is not defined (meters: {})",
                                known.join(", ")
                            )
                        },
                    );
                }
            }
        }
    }
    for c in connectors {
        if let Some(cmms) = &c.value {
            check_cmms_url(ctx, &format!("{}.url", c.field), cmms);
        }
    }
}

/// Work orders and credentials sent over plain HTTP beyond this machine
/// can be read by anyone on the way: warned, as for the broker.
fn check_cmms_url(ctx: &mut Ctx, field: &str, cmms: &CmmsConfig) {
    let Ok(url) = reqwest::Url::parse(&cmms.url) else {
        return;
    };
    let host = url.host_str().unwrap_or_default();
    if url.scheme() != "http" || is_loopback(host) {
        return;
    }
    let credentials = match &cmms.kind {
        CmmsKind::Webhook(w) => {
            matches!(w.auth, WebhookAuth::Bearer(_) | WebhookAuth::Basic { .. })
                || !w.headers.is_empty()
        }
        _ => true,
    };
    let what = if credentials {
        "credentials and work orders are"
    } else {
        "work orders are"
    };
    ctx.warn(
        field,
        format!("{what} sent in clear text to {host} (http://); use https://"),
    );
}

/// `names` as (field path, name) pairs, for [`duplicates`].
fn placed_names(names: &[Placed<String>]) -> Vec<(&str, &str)> {
    names
        .iter()
        .map(|n| (n.field.as_str(), n.value.as_str()))
        .collect()
}

fn error_count(ctx: &Ctx) -> usize {
    ctx.problems.iter().filter(|p| p.is_error()).count()
}

/// An RTU device's bus must be one of `[[buses]]`.
fn check_bus(ctx: &mut Ctx, field: &str, bus: &str, buses: &[&Bus]) {
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
fn check_reads(
    ctx: &mut Ctx,
    field: &str,
    reads: &Reads,
    devices: &[&Device],
    engine: &OnceCell<ExprEngine>,
) {
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
            && let Err(e) = engine
                .get_or_init(ExprEngine::new)
                .compile(expr, |full| expr_type(devices, full))
        {
            ctx.error(&format!("{field}.expr"), e.to_string());
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

/// Checks across sections: buses and their use, HTTP exposure. Problems
/// name each element by its own field path, not by its rank among the
/// elements that resolved, so they point at the right line after a
/// broken element.
fn check_all(ctx: &mut Ctx, buses: &[Placed<Bus>], devices: &[Placed<Device>], http: &HttpConfig) {
    let mut ports: HashMap<&str, &str> = HashMap::new();
    for Placed { field, value: bus } in buses {
        if let Some(other) = ports.insert(&bus.port, &bus.name) {
            ctx.error(
                &format!("{field}.port"),
                format!(
                    "serial port {} is already used by bus \"{other}\"",
                    bus.port
                ),
            );
        }
        if !devices
            .iter()
            .any(|d| matches!(&d.value.connection, Connection::Rtu { bus: b } if b == &bus.name))
        {
            ctx.warn(
                field,
                format!("bus \"{}\" is not used by any device", bus.name),
            );
        }
    }

    // Two devices answering to the same unit id on one line would both answer.
    let mut seen: HashMap<(String, u8), &str> = HashMap::new();
    for Placed { field, value: d } in devices {
        // A unit id refused by resolving stands at its default here: it
        // is reported already, and is not a second device's.
        let unit_field = format!("{field}.unit");
        if ctx
            .problems
            .iter()
            .any(|p| p.is_error() && p.field == unit_field)
        {
            continue;
        }
        let line = match &d.connection {
            Connection::Rtu { bus } => format!("bus {bus}"),
            other => other.endpoint().unwrap_or_default(),
        };
        if let Some(first) = seen.insert((line.clone(), d.unit), &d.name) {
            ctx.error(
                &format!("{field}.unit"),
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

/// Credentials sent without TLS to a broker beyond this machine can be
/// read by anyone on the way: warned, since a plant network may be
/// trusted, but never silently.
fn check_mqtt(ctx: &mut Ctx, mqtt: &MqttConfig) {
    if mqtt.tls.is_some()
        || (mqtt.username.is_none() && mqtt.password.is_none())
        || is_loopback(&mqtt.host)
    {
        return;
    }
    let host = if mqtt.host.contains(':') {
        format!("[{}]", mqtt.host)
    } else {
        mqtt.host.clone()
    };
    ctx.warn(
        "mqtt.host",
        format!(
            "credentials are sent in clear text to {host}:{}; enable [mqtt.tls]",
            mqtt.port
        ),
    );
}

/// The edge node beside the JSON forwarder: two connections to one
/// broker, and what `json_readings = false` leaves of the JSON readings.
fn check_sparkplug(ctx: &mut Ctx, sparkplug: &SparkplugConfig, mqtt: &MqttConfig) {
    if sparkplug.client_id == mqtt.client_id {
        ctx.error(
            "sparkplug.client_id",
            format!(
                "client_id \"{}\" is also [mqtt] client_id: a broker keeps one connection per client id, \
                 so the edge node and the JSON forwarder would take turns throwing each other off; \
                 leave it out for the default ({}-spb)",
                sparkplug.client_id, mqtt.client_id
            ),
        );
    }
    if !sparkplug.json_readings && mqtt.per_tag_topics {
        ctx.warn(
            "mqtt.per_tag_topics",
            "per_tag_topics has no effect: [sparkplug] json_readings = false publishes readings in Sparkplug only",
        );
    }
}

/// Whether `host` is this machine: a loopback address or `localhost`.
/// Other names are not resolved here, so they count as remote.
fn is_loopback(host: &str) -> bool {
    let host = host.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Names that must be unique among `names` (field path, name), each
/// duplicate reported at its own element.
fn duplicates(ctx: &mut Ctx, what: &str, names: &[(&str, &str)]) {
    let mut seen = HashSet::new();
    for (field, name) in names {
        if !name.is_empty() && !seen.insert(*name) {
            ctx.error(
                &format!("{field}.name"),
                format!("duplicate {what} name \"{name}\""),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts_are_this_machine() {
        for host in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
            "localhost",
            "LocalHost.",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "192.168.1.5",
            "::ffff:10.0.0.1",
            "broker.plant.local",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
