//! The single-table sections: `[gateway]`, `[mqtt]`, `[store]`, `[http]`,
//! `[sparkplug]`, `[writes]`, `[alarms]` and `[workorders]`, with the
//! secrets they read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::fields::{check_name, check_sparkplug_id, check_topic_prefix, duration_in, int_in};
use crate::config::raw::{
    RawAlarms, RawGateway, RawHttp, RawMqtt, RawSparkplug, RawStore, RawWorkOrders, RawWrites,
};
use crate::config::report::Ctx;
use crate::config::secret::Secret;
use crate::config::{
    AlarmConfig, Durability, GatewayConfig, HttpConfig, MqttConfig, Qos, SPARKPLUG_ID_MAX,
    SparkplugConfig, StoreConfig, TlsConfig, WorkOrderConfig, WritesConfig,
};

/// `[gateway]`.
pub(super) fn gateway(ctx: &mut Ctx, raw: RawGateway) -> GatewayConfig {
    let id = raw.id.unwrap_or_else(default_gateway_id);
    check_name(ctx, "gateway.id", "gateway", &id);
    let site = raw.site.unwrap_or_else(|| "default".into());
    check_name(ctx, "gateway.site", "site", &site);
    let data_dir = ctx.path(raw.data_dir.as_deref().unwrap_or("/var/lib/fieldgate"));
    let shutdown_timeout = duration_in(
        ctx,
        "gateway.shutdown_timeout",
        raw.shutdown_timeout,
        Duration::from_secs(5),
        Duration::from_millis(100),
        Duration::from_secs(300),
    );
    GatewayConfig {
        id,
        site,
        location: raw.location,
        data_dir,
        shutdown_timeout,
    }
}

/// The host name, made safe for topics, or `fieldgate`.
pub(super) fn default_gateway_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .unwrap_or_default();
    let id: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() {
        "fieldgate".into()
    } else {
        id
    }
}

/// A secret read from a file named by the config.
pub(super) fn read_secret(ctx: &mut Ctx, field: &str, file: &str) -> Option<Secret> {
    let path = ctx.path(file);
    match Secret::from_file(&path) {
        Ok(s) if s.expose().is_empty() => {
            ctx.error(field, format!("secret file {} is empty", path.display()));
            None
        }
        Ok(s) => Some(s),
        Err(e) => {
            ctx.error(
                field,
                format!("cannot read secret file {}: {e}", path.display()),
            );
            None
        }
    }
}

/// A file the config names, reported when it cannot be opened.
pub(super) fn readable_file(ctx: &mut Ctx, field: &str, file: &str) -> PathBuf {
    let path = ctx.path(file);
    if let Err(e) = std::fs::File::open(&path) {
        ctx.error(field, format!("cannot read {}: {e}", path.display()));
    }
    path
}

/// `[mqtt]` (the default client id names the gateway).
pub(super) fn mqtt(ctx: &mut Ctx, raw: RawMqtt, gateway: &GatewayConfig) -> MqttConfig {
    let tls = match raw.tls {
        Some(t) if t.enabled.unwrap_or(true) => {
            let ca_file = t
                .ca_file
                .map(|f| readable_file(ctx, "mqtt.tls.ca_file", &f));
            let cert_file = t
                .cert_file
                .map(|f| readable_file(ctx, "mqtt.tls.cert_file", &f));
            let key = t
                .key_file
                .and_then(|f| read_secret(ctx, "mqtt.tls.key_file", &f));
            if cert_file.is_some() != key.is_some() {
                ctx.error(
                    "mqtt.tls",
                    "mutual TLS needs both cert_file and key_file (or neither)",
                );
            }
            Some(TlsConfig {
                ca_file,
                cert_file,
                key,
            })
        }
        _ => None,
    };
    let default_port = if tls.is_some() { 8883 } else { 1883 };
    let port = int_in(ctx, "mqtt.port", raw.port, default_port, 1..=65535, "port") as u16;
    let host = raw.host.unwrap_or_else(|| "127.0.0.1".into());
    if host.trim().is_empty() {
        ctx.error("mqtt.host", "the broker host is empty");
    }
    let password = match (raw.password, raw.password_file) {
        (Some(_), Some(_)) => {
            ctx.error(
                "mqtt.password_file",
                "give either password or password_file, not both",
            );
            None
        }
        (Some(p), None) => Some(Secret::new(p)),
        (None, Some(f)) => read_secret(ctx, "mqtt.password_file", &f),
        (None, None) => None,
    };
    if password.is_some() && raw.username.is_none() {
        ctx.error("mqtt.username", "a password is set but no username");
    }
    let qos = match raw.qos.unwrap_or(1) {
        1 => Qos::AtLeastOnce,
        2 => Qos::ExactlyOnce,
        0 => {
            ctx.error(
                "mqtt.qos",
                "QoS 0 has no acknowledgement, so the outbox could not know what was delivered; use 1 (or 2)",
            );
            Qos::AtLeastOnce
        }
        n => {
            ctx.error("mqtt.qos", format!("QoS {n} does not exist; use 1 or 2"));
            Qos::AtLeastOnce
        }
    };
    let topic_prefix = raw.topic_prefix.unwrap_or_else(|| "fieldgate".into());
    check_topic_prefix(ctx, "mqtt.topic_prefix", &topic_prefix);
    let live_share = raw.live_share.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&live_share) {
        ctx.error(
            "mqtt.live_share",
            format!("live_share {live_share} must be between 0.0 and 1.0"),
        );
    }
    let max_packet_size = raw.max_packet_size.map(|s| s.0).unwrap_or(1 << 20);
    if !(1024..=256 << 20).contains(&max_packet_size) {
        ctx.error(
            "mqtt.max_packet_size",
            "max_packet_size must be between 1KiB and 256MiB",
        );
    }
    MqttConfig {
        host,
        port,
        client_id: raw
            .client_id
            .unwrap_or_else(|| format!("fieldgate-{}-{}", gateway.site, gateway.id)),
        username: raw.username,
        password,
        tls,
        topic_prefix,
        qos,
        keep_alive: duration_in(
            ctx,
            "mqtt.keep_alive",
            raw.keep_alive,
            Duration::from_secs(30),
            Duration::from_secs(5),
            Duration::from_secs(3600),
        ),
        max_inflight: int_in(
            ctx,
            "mqtt.max_inflight",
            raw.max_inflight,
            100,
            1..=65535,
            "max_inflight",
        ) as u16,
        live_share,
        per_tag_topics: raw.per_tag_topics.unwrap_or(false),
        max_packet_size,
    }
}

/// `[store]` (the default path is in the gateway's data folder).
pub(super) fn store(ctx: &mut Ctx, raw: RawStore, gateway: &GatewayConfig) -> StoreConfig {
    let path = match raw.path {
        Some(p) => ctx.path(&p),
        None => gateway.data_dir.join("fieldgate.db"),
    };
    let durability = match raw
        .durability
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("full") => Durability::Full,
        Some("normal") => Durability::Normal,
        Some(other) => {
            ctx.error(
                "store.durability",
                format!("durability \"{other}\" is not \"full\" or \"normal\""),
            );
            Durability::Full
        }
    };
    let max_bytes = raw.max_bytes.map(|s| s.0).unwrap_or(512 << 20);
    if max_bytes < 1 << 20 {
        ctx.error(
            "store.max_bytes",
            "max_bytes below 1MiB leaves no room to buffer an outage",
        );
    }
    StoreConfig {
        path,
        durability,
        max_bytes,
        max_age: duration_in(
            ctx,
            "store.max_age",
            raw.max_age,
            Duration::from_secs(7 * 86_400),
            Duration::from_secs(60),
            Duration::from_secs(10 * 365 * 86_400),
        ),
        flush_interval: duration_in(
            ctx,
            "store.flush_interval",
            raw.flush_interval,
            Duration::from_millis(100),
            Duration::from_millis(1),
            Duration::from_secs(1),
        ),
    }
}

/// `[http]`.
pub(super) fn http(ctx: &mut Ctx, raw: RawHttp) -> HttpConfig {
    let listen_text = raw.listen.unwrap_or_else(|| "127.0.0.1:9464".into());
    let listen = if listen_text.trim().is_empty() {
        None
    } else {
        match listen_text.trim().parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                ctx.error(
                    "http.listen",
                    format!(
                        "\"{listen_text}\" is not an address:port like \"127.0.0.1:9464\" or \"[::1]:9464\" (empty disables)"
                    ),
                );
                None
            }
        }
    };
    let token = raw
        .token_file
        .and_then(|f| read_secret(ctx, "http.token_file", &f));
    if let Some(t) = &token {
        // It travels in an Authorization header: visible ASCII only.
        if !t.expose().iter().all(|b| b.is_ascii_graphic()) {
            ctx.error(
                "http.token_file",
                "the token holds spaces or characters that cannot go in an HTTP header; \
                 use letters and digits, e.g. from `openssl rand -hex 32`",
            );
        } else if t.expose().len() < 16 {
            ctx.warn(
                "http.token_file",
                format!(
                    "the token is {} characters long; use at least 16 (`openssl rand -hex 32`)",
                    t.expose().len()
                ),
            );
        }
    }
    let allow_actions = raw.allow_actions.unwrap_or(false);
    if allow_actions && token.is_none() {
        ctx.error(
            "http.allow_actions",
            "allow_actions needs token_file: acknowledging and shelving alarms over HTTP requires a bearer token",
        );
    }
    HttpConfig {
        listen,
        allow_actions,
        token,
    }
}

/// `[sparkplug]`, when the file (or the environment) has the section: its
/// defaults name the gateway and `[mqtt]`'s client. `None` when it has no
/// `group_id`. Whether `client_id` differs from `[mqtt]`'s is checked
/// across sections, by `validate`.
pub(super) fn sparkplug(
    ctx: &mut Ctx,
    raw: RawSparkplug,
    gateway: &GatewayConfig,
    mqtt: &MqttConfig,
) -> Option<SparkplugConfig> {
    let Some(group_id) = raw.group_id else {
        ctx.error(
            "sparkplug.group_id",
            "missing group_id: the Sparkplug group of this edge node (the second level of its topics)",
        );
        return None;
    };
    check_sparkplug_id(ctx, "sparkplug.group_id", "group_id", &group_id);
    let edge_node_id = match raw.edge_node_id {
        Some(id) => {
            check_sparkplug_id(ctx, "sparkplug.edge_node_id", "edge_node_id", &id);
            id
        }
        None => {
            // The gateway id's characters are judged at `gateway.id` (a
            // name is stricter than a Sparkplug id); only the length is
            // Sparkplug's own limit.
            let len = gateway.id.chars().count();
            if len > SPARKPLUG_ID_MAX {
                ctx.error(
                    "sparkplug.edge_node_id",
                    format!(
                        "edge_node_id defaults to [gateway] id \"{}\", which is {len} characters long; \
                         a Sparkplug id has at most {SPARKPLUG_ID_MAX}: set edge_node_id",
                        gateway.id
                    ),
                );
            }
            gateway.id.clone()
        }
    };
    if let Some(host) = &raw.primary_host_id {
        if host.is_empty() {
            ctx.error(
                "sparkplug.primary_host_id",
                "primary_host_id is empty; leave the key out to publish without waiting for a primary host",
            );
        } else {
            check_sparkplug_id(ctx, "sparkplug.primary_host_id", "primary_host_id", host);
        }
    }
    let client_id = match raw.client_id {
        Some(id) => {
            if id.trim().is_empty() {
                ctx.error(
                    "sparkplug.client_id",
                    "client_id is empty; leave the key out for the default ([mqtt] client_id followed by -spb)",
                );
            }
            id
        }
        None => format!("{}-spb", mqtt.client_id),
    };
    Some(SparkplugConfig {
        group_id,
        edge_node_id,
        primary_host_id: raw.primary_host_id,
        json_readings: raw.json_readings.unwrap_or(true),
        client_id,
    })
}

/// `[writes]`. `max_age` is at least 1s: a command's age is its `ts`
/// against the gateway's clock, and two clocks on a plant network agree
/// to about a second at best, so less would refuse good commands for the
/// clocks alone. At most 1h: a setpoint or a reset is someone's decision
/// about the plant as it was; an hour later it may no longer hold, and
/// whoever still wants it sends it again.
pub(super) fn writes(ctx: &mut Ctx, raw: RawWrites) -> WritesConfig {
    WritesConfig {
        max_age: duration_in(
            ctx,
            "writes.max_age",
            raw.max_age,
            WritesConfig::default().max_age,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        ),
    }
}

/// `[alarms]`.
pub(super) fn alarms(ctx: &mut Ctx, raw: RawAlarms) -> AlarmConfig {
    AlarmConfig {
        chatter_count: int_in(
            ctx,
            "alarms.chatter_count",
            raw.chatter_count,
            3,
            2..=1000,
            "chatter_count",
        ) as u32,
        chatter_window: duration_in(
            ctx,
            "alarms.chatter_window",
            raw.chatter_window,
            Duration::from_secs(60),
            Duration::from_secs(1),
            Duration::from_secs(86_400),
        ),
        chatter_quiet: duration_in(
            ctx,
            "alarms.chatter_quiet",
            raw.chatter_quiet,
            Duration::from_secs(600),
            Duration::from_secs(1),
            Duration::from_secs(7 * 86_400),
        ),
    }
}

/// `[workorders]`.
pub(super) fn workorders(ctx: &mut Ctx, raw: RawWorkOrders) -> WorkOrderConfig {
    WorkOrderConfig {
        flood_limit: int_in(
            ctx,
            "workorders.flood_limit",
            raw.flood_limit,
            10,
            1..=100_000,
            "flood_limit",
        ) as u32,
        flood_window: duration_in(
            ctx,
            "workorders.flood_window",
            raw.flood_window,
            Duration::from_secs(600),
            Duration::from_secs(1),
            Duration::from_secs(7 * 86_400),
        ),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Loaded, Problems, SparkplugConfig, load_with_env};

    /// A gateway with one device, before its `[sparkplug]` section.
    const BASE: &str = r#"[gateway]
id = "gw1"
site = "plant-a"
data_dir = "."

[http]
listen = ""

[[devices]]
name = "pump1"
tcp = "127.0.0.1:5020"
tags = [{ name = "temp", area = "input", address = 0, type = "f32" }]
"#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Loaded, Problems> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fieldgate.toml");
        std::fs::write(&path, text).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(&path, &env)
    }

    fn sparkplug(text: &str) -> SparkplugConfig {
        match load(text, &[]) {
            Ok(l) => {
                assert!(l.warnings.is_empty(), "{:?}", l.warnings);
                l.config.sparkplug.expect("[sparkplug] is on")
            }
            Err(p) => panic!("does not load:\n{p}\n{text}"),
        }
    }

    /// The errors of `text`, each as `line: field: message`.
    fn errors(text: &str, env: &[(&str, &str)]) -> Vec<String> {
        let problems = match load(text, env) {
            Ok(_) => panic!("loads:\n{text}"),
            Err(p) => p,
        };
        problems
            .0
            .iter()
            .filter(|p| p.is_error())
            .map(|p| match &p.origin {
                crate::config::Origin::Toml { line, .. } => {
                    format!("{}: {}: {}", line.unwrap_or(0), p.field, p.message)
                }
                crate::config::Origin::Env { var } => {
                    format!("{var}: {}: {}", p.field, p.message)
                }
                other => format!("{other:?}: {}: {}", p.field, p.message),
            })
            .collect()
    }

    /// The line of `[sparkplug]` written after `BASE` and a blank line;
    /// its keys follow it.
    const HEADER: usize = 14;

    #[test]
    fn without_the_section_the_edge_node_is_off() {
        let loaded = load(BASE, &[]).unwrap();
        assert_eq!(loaded.config.sparkplug, None);
    }

    #[test]
    fn the_defaults_name_the_gateway_and_its_client() {
        let s = sparkplug(&format!("{BASE}\n[sparkplug]\ngroup_id = \"plant-a\"\n"));
        assert_eq!(
            s,
            SparkplugConfig {
                group_id: "plant-a".into(),
                edge_node_id: "gw1".into(),
                primary_host_id: None,
                json_readings: true,
                client_id: "fieldgate-plant-a-gw1-spb".into(),
            }
        );
        assert_eq!(
            s.summary(),
            "group plant-a, edge node gw1, no primary host; readings on Sparkplug and JSON"
        );
        // An `[mqtt] client_id` of the user's own is the default's stem.
        let s = sparkplug(&format!(
            "{BASE}\n[mqtt]\nclient_id = \"line1\"\n\n[sparkplug]\ngroup_id = \"plant-a\"\n"
        ));
        assert_eq!(s.client_id, "line1-spb");
    }

    #[test]
    fn every_key_is_read() {
        let s = sparkplug(&format!(
            "{BASE}\n[sparkplug]\ngroup_id = \"Plant A.Line 1\"\nedge_node_id = \"Gateway 1\"\n\
             primary_host_id = \"scada-1\"\njson_readings = false\nclient_id = \"gw1-edge\"\n"
        ));
        assert_eq!(
            s,
            SparkplugConfig {
                group_id: "Plant A.Line 1".into(),
                edge_node_id: "Gateway 1".into(),
                primary_host_id: Some("scada-1".into()),
                json_readings: false,
                client_id: "gw1-edge".into(),
            }
        );
        assert_eq!(
            s.summary(),
            "group Plant A.Line 1, edge node Gateway 1, primary host scada-1; readings on Sparkplug only"
        );
        // At most 64 characters, not bytes.
        let long = "é".repeat(64);
        let s = sparkplug(&format!(
            "{BASE}\n[sparkplug]\ngroup_id = \"{long}\"\nedge_node_id = \"{}\"\n",
            "n".repeat(64)
        ));
        assert_eq!(s.group_id, long);
    }

    #[test]
    fn every_bad_id_is_an_error_at_its_line() {
        let bad: &[(&str, &str)] = &[
            ("\"\"", "is empty"),
            (
                "\"a+b\"",
                "contains '+'; Sparkplug B forbids +, # and / in ids",
            ),
            (
                "\"a#b\"",
                "contains '#'; Sparkplug B forbids +, # and / in ids",
            ),
            (
                "\"plant/a\"",
                "contains '/'; Sparkplug B forbids +, # and / in ids",
            ),
            ("\" a\"", "begins or ends with whitespace"),
            ("\"a \"", "begins or ends with whitespace"),
            ("\"a\\u0000b\"", "contains the control character '\\0'"),
            ("\"a\\tb\"", "contains the control character '\\t'"),
        ];
        let too_long = format!("\"{}\"", "g".repeat(65));
        let bad = bad
            .iter()
            .copied()
            .chain([(too_long.as_str(), "is 65 characters long; at most 64")]);
        for (value, message) in bad {
            for (key, line) in [
                ("group_id", HEADER + 1),
                ("edge_node_id", HEADER + 2),
                ("primary_host_id", HEADER + 3),
            ] {
                let mut ids = [
                    ("group_id", "\"plant-a\""),
                    ("edge_node_id", "\"gw1\""),
                    ("primary_host_id", "\"scada\""),
                ];
                ids.iter_mut().find(|(k, _)| *k == key).unwrap().1 = value;
                let section: String = ids.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
                let text = format!("{BASE}\n[sparkplug]\n{section}");
                let got = errors(&text, &[]);
                assert_eq!(got.len(), 1, "{key} = {value}: {got:?}");
                let want = format!("{line}: sparkplug.{key}: ");
                assert!(
                    got[0].starts_with(&want) && got[0].contains(message),
                    "{key} = {value}: want {want}…{message}, got {got:?}"
                );
            }
        }
    }

    #[test]
    fn an_empty_primary_host_says_how_to_go_without() {
        let got = errors(
            &format!("{BASE}\n[sparkplug]\ngroup_id = \"g\"\nprimary_host_id = \"\"\n"),
            &[],
        );
        assert_eq!(
            got,
            [format!(
                "{}: sparkplug.primary_host_id: primary_host_id is empty; leave the key out to publish without waiting for a primary host",
                HEADER + 2
            )]
        );
    }

    #[test]
    fn group_id_is_required() {
        let got = errors(&format!("{BASE}\n[sparkplug]\nedge_node_id = \"e\"\n"), &[]);
        assert_eq!(
            got,
            [format!(
                "{HEADER}: sparkplug.group_id: missing group_id: the Sparkplug group of this edge node (the second level of its topics)"
            )]
        );
        // An empty section is on, and lacks its group.
        let got = errors(&format!("{BASE}\n[sparkplug]\n"), &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with(&format!("{HEADER}: sparkplug.group_id: missing group_id")));
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_errors() {
        let got = errors(&format!("{BASE}\n[sparkplug]\ngroup = \"g\"\n"), &[]);
        assert_eq!(
            got,
            [format!(
                "{}: sparkplug.group: unknown key `group`; did you mean `group_id`?",
                HEADER + 1
            )]
        );
        let got = errors(
            &format!("{BASE}\n[sparkplug]\ngroup_id = \"g\"\njson_readings = \"no\"\n"),
            &[],
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "{}: sparkplug.json_readings: wrong type",
                HEADER + 2
            )),
            "{got:?}"
        );
    }

    #[test]
    fn the_default_edge_node_id_is_held_to_the_length_limit() {
        let long = "g".repeat(65);
        let text = format!(
            "{}\n[sparkplug]\ngroup_id = \"g\"\n",
            BASE.replace("\"gw1\"", &format!("\"{long}\""))
        );
        let got = errors(&text, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "{HEADER}: sparkplug.edge_node_id: edge_node_id defaults to [gateway] id"
            )) && got[0].contains("set edge_node_id"),
            "{got:?}"
        );
        // The gateway alone may have a long id.
        load(&BASE.replace("\"gw1\"", &format!("\"{long}\"")), &[]).unwrap();
        // A gateway id that is no name is reported once, at gateway.id.
        let text = format!(
            "{}\n[sparkplug]\ngroup_id = \"g\"\n",
            BASE.replace("\"gw1\"", "\"gw/1\"")
        );
        let got = errors(&text, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].starts_with("2: gateway.id: "), "{got:?}");
    }

    #[test]
    fn the_edge_node_needs_a_client_id_of_its_own() {
        let text = format!(
            "{BASE}\n[mqtt]\nclient_id = \"gw1\"\n\n[sparkplug]\ngroup_id = \"g\"\nclient_id = \"gw1\"\n"
        );
        let got = errors(&text, &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "{}: sparkplug.client_id: client_id \"gw1\" is also [mqtt] client_id",
                HEADER + 5
            )) && got[0].contains("(gw1-spb)"),
            "{got:?}"
        );
        let got = errors(
            &format!("{BASE}\n[sparkplug]\ngroup_id = \"g\"\nclient_id = \" \"\n"),
            &[],
        );
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "{}: sparkplug.client_id: client_id is empty",
                HEADER + 2
            )),
            "{got:?}"
        );
    }

    #[test]
    fn a_json_prefix_in_the_sparkplug_namespace_is_an_error_either_way() {
        for section in ["", "\n[sparkplug]\ngroup_id = \"g\"\n"] {
            for prefix in ["spBv1.0", "spBv1.0/plant"] {
                let text = format!("{BASE}\n[mqtt]\ntopic_prefix = \"{prefix}\"\n{section}");
                let got = errors(&text, &[]);
                assert_eq!(got.len(), 1, "{prefix}: {got:?}");
                assert!(
                    got[0].starts_with(&format!(
                        "{}: mqtt.topic_prefix: topic prefix \"{prefix}\" begins with spBv1.0, the Sparkplug B namespace",
                        HEADER + 1
                    )),
                    "{got:?}"
                );
            }
            // Only the first level counts, and only as Sparkplug writes it.
            for prefix in ["spBv1.0x", "plant/spBv1.0", "spbv1.0"] {
                let text = format!("{BASE}\n[mqtt]\ntopic_prefix = \"{prefix}\"\n{section}");
                load(&text, &[]).unwrap_or_else(|p| panic!("{prefix}:\n{p}"));
            }
        }
    }

    #[test]
    fn per_tag_topics_without_json_readings_is_warned_about() {
        let text = format!(
            "{BASE}\n[mqtt]\nper_tag_topics = true\n\n[sparkplug]\ngroup_id = \"g\"\njson_readings = false\n"
        );
        let loaded = load(&text, &[]).unwrap();
        let warnings: Vec<String> = loaded.warnings.iter().map(|w| w.field.clone()).collect();
        assert_eq!(warnings, ["mqtt.per_tag_topics"]);
        let text = text.replace("json_readings = false", "json_readings = true");
        assert!(load(&text, &[]).unwrap().warnings.is_empty());
    }

    #[test]
    fn the_environment_overrides_the_section_like_any_other() {
        let text = format!("{BASE}\n[sparkplug]\ngroup_id = \"plant-a\"\n");
        let loaded = load(
            &text,
            &[
                ("FIELDGATE_SPARKPLUG__GROUP_ID", "plant-b"),
                ("FIELDGATE_SPARKPLUG__EDGE_NODE_ID", "edge-7"),
                ("FIELDGATE_SPARKPLUG__PRIMARY_HOST_ID", "scada"),
                ("FIELDGATE_SPARKPLUG__JSON_READINGS", "false"),
                ("FIELDGATE_SPARKPLUG__CLIENT_ID", "edge-7-spb"),
            ],
        )
        .unwrap();
        assert_eq!(
            loaded.config.sparkplug,
            Some(SparkplugConfig {
                group_id: "plant-b".into(),
                edge_node_id: "edge-7".into(),
                primary_host_id: Some("scada".into()),
                json_readings: false,
                client_id: "edge-7-spb".into(),
            })
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        // A variable of the section turns it on, as the section does.
        let loaded = load(BASE, &[("FIELDGATE_SPARKPLUG__GROUP_ID", "plant-b")]).unwrap();
        assert_eq!(loaded.config.sparkplug.unwrap().group_id, "plant-b");
        // A value that reads as a number is one, as for every key: quoted,
        // it is the id.
        let got = errors(BASE, &[("FIELDGATE_SPARKPLUG__GROUP_ID", "42")]);
        assert!(
            got.len() == 1
                && got[0].contains("wrong type: found unsigned int `42`, expected a string"),
            "{got:?}"
        );
        let loaded = load(BASE, &[("FIELDGATE_SPARKPLUG__GROUP_ID", "\"42\"")]).unwrap();
        assert_eq!(loaded.config.sparkplug.unwrap().group_id, "42");
        // A bad value is reported at the variable that gave it.
        let got = errors(BASE, &[("FIELDGATE_SPARKPLUG__GROUP_ID", "plant/b")]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("FIELDGATE_SPARKPLUG__GROUP_ID: sparkplug.group_id: group_id \"plant/b\" contains '/'"),
            "{got:?}"
        );
    }
}
