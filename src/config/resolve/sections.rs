//! The single-table sections: `[gateway]`, `[mqtt]`, `[store]`, `[http]`,
//! `[alarms]` and `[workorders]`, with the secrets they read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::fields::{check_name, duration_in, int_in};
use crate::config::raw::{RawAlarms, RawGateway, RawHttp, RawMqtt, RawStore, RawWorkOrders};
use crate::config::report::Ctx;
use crate::config::secret::Secret;
use crate::config::{
    AlarmConfig, Durability, GatewayConfig, HttpConfig, MqttConfig, Qos, StoreConfig, TlsConfig,
    WorkOrderConfig,
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
    if topic_prefix.is_empty()
        || topic_prefix.contains(['+', '#'])
        || topic_prefix.starts_with('/')
        || topic_prefix.ends_with('/')
    {
        ctx.error(
            "mqtt.topic_prefix",
            format!(
                "topic prefix \"{topic_prefix}\" must be non-empty, without + or # and without a leading or trailing /"
            ),
        );
    }
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
