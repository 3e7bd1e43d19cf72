//! From the file to a [`Config`]: parse, merge, read each section and
//! element on its own (so one mistake does not hide the next), and
//! resolve defaults, durations, addresses, CSV tag maps and secrets.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::address;
use super::csv_tags;
use super::problem::{Origin, Problem, Problems, Severity};
use super::raw::*;
use super::secret::Secret;
use super::source_map::SourceMap;
use super::{
    AlarmConfig, Bus, Config, Connection, Device, Durability, ENV_PREFIX, GatewayConfig,
    HttpConfig, Loaded, MqttConfig, Parity, Qos, StoreConfig, TlsConfig, WorkOrderConfig,
    device_defaults,
};
use crate::tag::{Area, DataType, Deadband, Tag, WordOrder};

/// Collects problems with their location while a config is resolved.
pub(super) struct Ctx {
    /// The TOML file.
    pub file: PathBuf,
    /// The folder relative paths in the config are taken from.
    pub base: PathBuf,
    /// Lines of the TOML file's keys.
    pub map: SourceMap,
    /// Environment variables that override the file (`FIELDGATE_*`).
    pub env_vars: HashMap<String, String>,
    /// Everything found so far.
    pub problems: Vec<Problem>,
}

/// Where a tag was written: a TOML path or a CSV line.
#[derive(Debug, Clone)]
pub(super) enum TagSite {
    /// Inline in the TOML file at this field path.
    Toml(String),
    /// A CSV row.
    Csv {
        /// The CSV file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// Field path of the device's `tags` key plus the row index.
        field: String,
    },
}

impl Ctx {
    fn origin(&self, field: &str) -> Origin {
        let var = env_var_for(field);
        if self.env_vars.contains_key(&var) {
            return Origin::Env { var };
        }
        Origin::Toml {
            file: self.file.clone(),
            line: self.map.line(field),
        }
    }

    fn push(&mut self, severity: Severity, field: &str, message: String) {
        let origin = self.origin(field);
        self.problems.push(Problem {
            severity,
            origin,
            field: field.to_string(),
            message,
        });
    }

    /// Records an error at a TOML field path.
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, field, message.into());
    }

    /// Records a warning at a TOML field path.
    pub fn warn(&mut self, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, field, message.into());
    }

    /// Records a problem about a field of a tag, wherever the tag was written.
    pub fn tag_problem(
        &mut self,
        site: &TagSite,
        key: Option<&str>,
        severity: Severity,
        message: String,
    ) {
        match site {
            TagSite::Toml(path) => {
                let field = match key {
                    Some(k) => format!("{path}.{k}"),
                    None => path.clone(),
                };
                self.push(severity, &field, message);
            }
            TagSite::Csv { file, line, field } => self.problems.push(Problem {
                severity,
                origin: Origin::Csv {
                    file: file.clone(),
                    line: *line,
                    column: key.map(str::to_string),
                },
                field: field.clone(),
                message,
            }),
        }
    }

    /// A path from the config, relative to the config file's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// Records figment's deserialization errors under `prefix`.
    fn figment_errors(&mut self, prefix: &str, err: figment::Error) {
        for e in err {
            let mut path: Vec<String> = e.path.clone();
            if let figment::error::Kind::UnknownField(name, _) = &e.kind
                && path.last() != Some(name)
            {
                path.push(name.clone());
            }
            let field = join_path(prefix, &path);
            self.error(&field, friendly(&e.kind));
        }
    }

    /// Deserializes one value on its own, recording its errors.
    pub fn read<T: DeserializeOwned + Default>(
        &mut self,
        field: &str,
        value: Option<&Value>,
    ) -> Option<T> {
        let Some(value) = value else {
            return Some(T::default());
        };
        match value.deserialize::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.figment_errors(field, e);
                None
            }
        }
    }
}

/// The environment variable that would override `field` (`mqtt.port` →
/// `FIELDGATE_MQTT__PORT`).
fn env_var_for(field: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        field.replace('.', "__").to_ascii_uppercase()
    )
}

fn join_path(prefix: &str, rest: &[String]) -> String {
    let mut out = prefix.to_string();
    for part in rest {
        if part.parse::<usize>().is_ok() {
            out.push_str(&format!("[{part}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(part);
        }
    }
    out
}

/// figment's messages, in words a technician reads without a Rust book.
fn friendly(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(name, expected) => {
            let close = expected
                .iter()
                .min_by_key(|e| edit_distance(name, e))
                .filter(|e| edit_distance(name, e) <= 3);
            match close {
                Some(c) => format!("unknown key `{name}`; did you mean `{c}`?"),
                None => format!(
                    "unknown key `{name}`; expected one of: {}",
                    expected.join(", ")
                ),
            }
        }
        Kind::InvalidType(actual, expected) => {
            format!(
                "wrong type: found {actual}, expected {}",
                plain_type(expected)
            )
        }
        Kind::MissingField(name) => format!("missing key `{name}`"),
        other => other.to_string(),
    }
}

fn plain_type(expected: &str) -> String {
    match expected {
        "i64" | "u64" | "i32" | "u32" | "u16" | "u8" => "an integer".into(),
        "f64" | "f32" => "a number".into(),
        "a string" | "a boolean" => expected.into(),
        "bool" => "true or false".into(),
        "a sequence" => "an array".into(),
        other => other.into(),
    }
}

/// Edit distance, for "did you mean" hints.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Reads, merges and resolves a config file. See [`super::load`].
pub(super) fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, Problems> {
    let file = path.to_path_buf();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(Problems(vec![Problem {
                severity: Severity::Error,
                origin: Origin::File { file },
                field: "config".into(),
                message: format!("cannot read the config file: {e}"),
            }]));
        }
    };
    let map = match SourceMap::parse(&text) {
        Ok(m) => m,
        Err(e) => {
            return Err(Problems(vec![Problem {
                severity: Severity::Error,
                origin: Origin::Toml { file, line: e.line },
                field: "syntax".into(),
                message: format!("TOML syntax error: {}", e.message),
            }]));
        }
    };
    let base = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));

    let mut ctx = Ctx {
        file,
        base,
        map,
        env_vars: HashMap::new(),
        problems: Vec::new(),
    };

    // Environment overrides. Variables that name no section are reported,
    // because a typo in a unit file would otherwise be silently ignored.
    let mut figment = Figment::new().merge(Toml::string(&text));
    for (name, value) in env {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let section = key.split('.').next().unwrap_or("");
        if !SECTIONS.contains(&section) {
            if !CLI_ENV.contains(&rest) {
                ctx.problems.push(Problem {
                    severity: Severity::Warning,
                    origin: Origin::Env { var: name.clone() },
                    field: key.clone(),
                    message: format!(
                        "ignored: `{section}` is not a config section (use {ENV_PREFIX}SECTION__KEY, e.g. {ENV_PREFIX}MQTT__HOST)"
                    ),
                });
            }
            continue;
        }
        let parsed: Value = value.parse().unwrap_or_else(|_| Value::from(value.clone()));
        figment = figment.merge(Serialized::default(&key, parsed));
        ctx.env_vars.insert(name.clone(), value.clone());
    }

    let root: figment::value::Dict = match figment.extract() {
        Ok(d) => d,
        Err(e) => {
            ctx.figment_errors("", e);
            return Err(Problems(ctx.problems));
        }
    };
    for key in root.keys() {
        if !SECTIONS.contains(&key.as_str()) {
            let hint = SECTIONS
                .iter()
                .min_by_key(|s| edit_distance(key, s))
                .filter(|s| edit_distance(key, s) <= 3)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            ctx.error(key, format!("unknown section `{key}`{hint}"));
        }
    }

    let gateway = ctx.read::<RawGateway>("gateway", root.get("gateway"));
    let mqtt = ctx.read::<RawMqtt>("mqtt", root.get("mqtt"));
    let store = ctx.read::<RawStore>("store", root.get("store"));
    let http = ctx.read::<RawHttp>("http", root.get("http"));
    let alarms = ctx.read::<RawAlarms>("alarms", root.get("alarms"));
    let workorders = ctx.read::<RawWorkOrders>("workorders", root.get("workorders"));

    let gateway = resolve_gateway(&mut ctx, gateway.unwrap_or_default());
    let mqtt = resolve_mqtt(&mut ctx, mqtt.unwrap_or_default(), &gateway);
    let store = resolve_store(&mut ctx, store.unwrap_or_default(), &gateway);
    let http = resolve_http(&mut ctx, http.unwrap_or_default());
    let alarms = resolve_alarms(&mut ctx, alarms.unwrap_or_default());
    let workorders = resolve_workorders(&mut ctx, workorders.unwrap_or_default());

    let mut hasher = Sha256::new();
    hasher.update(text.as_bytes());

    let buses: Vec<Bus> = elements(&mut ctx, &root, "buses")
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("buses[{i}]");
            let raw = ctx.read::<RawBus>(&field, Some(&v))?;
            resolve_bus(&mut ctx, &field, raw)
        })
        .collect();

    let devices: Vec<Device> = elements(&mut ctx, &root, "devices")
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("devices[{i}]");
            let raw = ctx.read::<RawDevice>(&field, Some(&v))?;
            resolve_device(&mut ctx, &field, raw, &buses, &mut hasher)
        })
        .collect();

    let raw_rules: Vec<(String, RawRule)> = elements(&mut ctx, &root, "rules")
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("rules[{i}]");
            let raw = ctx.read::<RawRule>(&field, Some(&v))?;
            Some((field, raw))
        })
        .collect();
    let raw_meters: Vec<(String, RawMeter)> = elements(&mut ctx, &root, "meters")
        .into_iter()
        .filter_map(|(i, v)| {
            let field = format!("meters[{i}]");
            let raw = ctx.read::<RawMeter>(&field, Some(&v))?;
            Some((field, raw))
        })
        .collect();

    let rules = super::validate::resolve_rules(&mut ctx, raw_rules, &devices);
    let meters = super::validate::resolve_meters(&mut ctx, raw_meters, &devices);
    super::validate::check_all(&mut ctx, &buses, &devices, &rules, &meters, &http);

    let config = Config {
        path: path.to_path_buf(),
        hash: hex(&hasher.finalize()),
        gateway,
        mqtt,
        store,
        http,
        alarms,
        workorders,
        buses,
        devices: devices.into_iter().map(Arc::new).collect(),
        rules,
        meters,
    };
    let mut problems = Problems(ctx.problems);
    problems.sort();
    if problems.has_errors() {
        return Err(problems);
    }
    Ok(Loaded {
        config,
        warnings: problems.0,
    })
}

/// `FIELDGATE_*` variables that belong to the command line, not the file.
const CLI_ENV: &[&str] = &["CONFIG", "LOG_FORMAT", "LOG"];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The elements of an array-of-tables section, with their indexes.
fn elements(ctx: &mut Ctx, root: &figment::value::Dict, key: &str) -> Vec<(usize, Value)> {
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

/// Reads a required string field, reporting it when missing.
fn required(ctx: &mut Ctx, field: &str, value: Option<String>, what: &str) -> Option<String> {
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
    range: std::ops::RangeInclusive<i64>,
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
    value: Option<super::units::ConfigDuration>,
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

fn resolve_gateway(ctx: &mut Ctx, raw: RawGateway) -> GatewayConfig {
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
fn default_gateway_id() -> String {
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

fn read_secret(ctx: &mut Ctx, field: &str, file: &str) -> Option<Secret> {
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

fn readable_file(ctx: &mut Ctx, field: &str, file: &str) -> PathBuf {
    let path = ctx.path(file);
    if let Err(e) = std::fs::File::open(&path) {
        ctx.error(field, format!("cannot read {}: {e}", path.display()));
    }
    path
}

fn resolve_mqtt(ctx: &mut Ctx, raw: RawMqtt, gateway: &GatewayConfig) -> MqttConfig {
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

fn resolve_store(ctx: &mut Ctx, raw: RawStore, gateway: &GatewayConfig) -> StoreConfig {
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

fn resolve_http(ctx: &mut Ctx, raw: RawHttp) -> HttpConfig {
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

fn resolve_alarms(ctx: &mut Ctx, raw: RawAlarms) -> AlarmConfig {
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

fn resolve_workorders(ctx: &mut Ctx, raw: RawWorkOrders) -> WorkOrderConfig {
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

fn resolve_bus(ctx: &mut Ctx, field: &str, raw: RawBus) -> Option<Bus> {
    let name = required(ctx, &format!("{field}.name"), raw.name, "bus name")?;
    check_name(ctx, &format!("{field}.name"), "bus", &name);
    let port = required(
        ctx,
        &format!("{field}.port"),
        raw.port,
        "serial port (e.g. \"/dev/ttyUSB0\")",
    )?;
    let baud = int_in(
        ctx,
        &format!("{field}.baud"),
        raw.baud,
        19_200,
        300..=4_000_000,
        "baud rate",
    ) as u32;
    let data_bits = int_in(
        ctx,
        &format!("{field}.data_bits"),
        raw.data_bits,
        8,
        5..=8,
        "data bits",
    ) as u8;
    if data_bits != 8 {
        ctx.warn(
            &format!("{field}.data_bits"),
            format!("Modbus RTU uses 8 data bits; {data_bits} suits Modbus ASCII, which fieldgate does not speak"),
        );
    }
    let parity = match raw
        .parity
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("even") | Some("e") => Parity::Even,
        Some("none") | Some("n") => Parity::None,
        Some("odd") | Some("o") => Parity::Odd,
        Some(other) => {
            ctx.error(
                &format!("{field}.parity"),
                format!("parity \"{other}\" is not \"none\", \"even\" or \"odd\""),
            );
            Parity::Even
        }
    };
    let stop_bits = int_in(
        ctx,
        &format!("{field}.stop_bits"),
        raw.stop_bits,
        1,
        1..=2,
        "stop bits",
    ) as u8;
    if parity == Parity::None && stop_bits == 1 && raw.stop_bits.is_some() {
        ctx.warn(
            &format!("{field}.stop_bits"),
            "the Modbus serial specification asks for 2 stop bits when there is no parity; check the devices' setting",
        );
    }
    Some(Bus {
        name,
        port,
        baud,
        data_bits,
        parity,
        stop_bits,
        frame_gap: raw.frame_gap.map(|d| d.0),
    })
}

/// Parses `host:port`, `host` (port 502), `[v6]:port` or a bare v6 address.
fn parse_endpoint(text: &str) -> Result<(String, u16), String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty address; write host:port, e.g. \"192.168.1.20:502\"".into());
    }
    if let Ok(a) = t.parse::<SocketAddr>() {
        return Ok((a.ip().to_string(), a.port()));
    }
    if t.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((t.to_string(), 502));
    }
    match t.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => {
            let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                format!("\"{t}\": port \"{port}\" is not a number from 1 to 65535")
            })?;
            if host.is_empty() {
                return Err(format!("\"{t}\" has no host"));
            }
            Ok((host.to_string(), port))
        }
        Some(_) => Err(format!(
            "\"{t}\" is not host:port; write IPv6 addresses as [addr]:port"
        )),
        None => Ok((t.to_string(), 502)),
    }
}

fn resolve_device(
    ctx: &mut Ctx,
    field: &str,
    raw: RawDevice,
    buses: &[Bus],
    hasher: &mut Sha256,
) -> Option<Device> {
    let name = required(ctx, &format!("{field}.name"), raw.name, "device name")?;
    check_name(ctx, &format!("{field}.name"), "device", &name);

    let given = [
        raw.tcp.is_some(),
        raw.bus.is_some(),
        raw.rtu_over_tcp.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    let connection = if given != 1 {
        ctx.error(
            field,
            format!(
                "device \"{name}\" needs exactly one of `tcp = \"host:port\"`, `bus = \"name\"` (RTU) or `rtu_over_tcp = \"host:port\"`"
            ),
        );
        None
    } else if let Some(bus) = raw.bus {
        if !buses.iter().any(|b| b.name == bus) {
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
        Some(Connection::Rtu { bus })
    } else {
        let (key, text, rtu) = match (raw.tcp, raw.rtu_over_tcp) {
            (Some(t), _) => ("tcp", t, false),
            (None, Some(t)) => ("rtu_over_tcp", t, true),
            (None, None) => unreachable!("exactly one connection kind was given"),
        };
        match parse_endpoint(&text) {
            Ok((host, port)) if rtu => Some(Connection::RtuOverTcp { host, port }),
            Ok((host, port)) => Some(Connection::Tcp { host, port }),
            Err(e) => {
                ctx.error(&format!("{field}.{key}"), e);
                None
            }
        }
    };
    let serial = matches!(
        connection,
        Some(Connection::Rtu { .. }) | Some(Connection::RtuOverTcp { .. })
    );
    let unit_range = if serial { 1..=247 } else { 0..=255 };
    let unit = int_in(
        ctx,
        &format!("{field}.unit"),
        raw.unit,
        1,
        unit_range,
        "unit id",
    ) as u8;

    let poll_interval = raw
        .poll_interval
        .map(|d| d.0)
        .unwrap_or(device_defaults::POLL_INTERVAL);
    if poll_interval.is_zero() {
        ctx.warn(
            &format!("{field}.poll_interval"),
            "poll_interval 0 polls back to back, as fast as the device answers (meant for benchmarks)",
        );
    } else if poll_interval < Duration::from_millis(10) {
        ctx.error(
            &format!("{field}.poll_interval"),
            format!(
                "poll_interval {} is below 10ms; no Modbus device answers that fast (use \"0s\" to poll back to back)",
                humantime::format_duration(poll_interval)
            ),
        );
    }
    let default_timeout = if serial {
        device_defaults::TIMEOUT_SERIAL
    } else {
        device_defaults::TIMEOUT_TCP
    };
    let timeout = duration_in(
        ctx,
        &format!("{field}.timeout"),
        raw.timeout,
        default_timeout,
        Duration::from_millis(10),
        Duration::from_secs(60),
    );
    let retries = int_in(
        ctx,
        &format!("{field}.retries"),
        raw.retries,
        i64::from(device_defaults::RETRIES),
        0..=10,
        "retries",
    ) as u32;
    let max_registers = int_in(
        ctx,
        &format!("{field}.max_registers"),
        raw.max_registers,
        i64::from(device_defaults::MAX_REGISTERS),
        1..=125,
        "max_registers",
    ) as u16;
    let max_bits = int_in(
        ctx,
        &format!("{field}.max_bits"),
        raw.max_bits,
        i64::from(device_defaults::MAX_BITS),
        1..=2000,
        "max_bits",
    ) as u16;
    let max_gap = int_in(
        ctx,
        &format!("{field}.max_gap"),
        raw.max_gap,
        i64::from(device_defaults::MAX_GAP),
        0..=2000,
        "max_gap",
    ) as u16;
    let word_order = match raw.word_order {
        None => WordOrder::Abcd,
        Some(w) => WordOrder::parse(&w).unwrap_or_else(|| {
            ctx.error(
                &format!("{field}.word_order"),
                format!("word order \"{w}\" is not one of ABCD, CDAB, BADC, DCBA"),
            );
            WordOrder::Abcd
        }),
    };
    let max_silence = duration_in(
        ctx,
        &format!("{field}.max_silence"),
        raw.max_silence,
        device_defaults::MAX_SILENCE,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    );
    let reprobe = duration_in(
        ctx,
        &format!("{field}.reprobe"),
        raw.reprobe,
        device_defaults::REPROBE,
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    );

    let tags_field = format!("{field}.tags");
    let mut tags_file = None;
    let sites: Vec<(TagSite, RawTag)> = match raw.tags {
        None => {
            ctx.warn(
                field,
                format!("device \"{name}\" has no tags; it will be polled for nothing"),
            );
            Vec::new()
        }
        Some(Value::String(_, file)) => {
            let path = ctx.path(&file);
            tags_file = Some(path.clone());
            csv_tags::read(ctx, &tags_field, &path, hasher)
        }
        Some(Value::Array(_, items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let f = format!("{tags_field}[{i}]");
                let raw = ctx.read::<RawTag>(&f, Some(v))?;
                Some((TagSite::Toml(f), raw))
            })
            .collect(),
        Some(_) => {
            ctx.error(
                &tags_field,
                "tags must be a list of tables or the path of a CSV file (tags = \"tags/pump1.csv\")",
            );
            Vec::new()
        }
    };
    let tags = sites
        .into_iter()
        .filter_map(|(site, raw)| resolve_tag(ctx, &site, raw, word_order).map(|t| (site, t)))
        .collect::<Vec<_>>();
    super::validate::check_device_tags(ctx, &name, &tags, max_registers, max_bits);

    Some(Device {
        name,
        connection: connection?,
        unit,
        poll_interval,
        timeout,
        retries,
        max_registers,
        max_bits,
        max_gap,
        word_order,
        max_silence,
        reprobe,
        asset: raw.asset,
        location: raw.location,
        tags: tags.into_iter().map(|(_, t)| t).collect(),
        tags_file,
    })
}

/// Resolves one tag; `None` when it has an error (reported).
pub(super) fn resolve_tag(
    ctx: &mut Ctx,
    site: &TagSite,
    raw: RawTag,
    default_order: WordOrder,
) -> Option<Tag> {
    let errors_before = ctx.problems.iter().filter(|p| p.is_error()).count();
    let err = |ctx: &mut Ctx, key: &str, msg: String| {
        ctx.tag_problem(site, Some(key), Severity::Error, msg)
    };

    let name = match raw
        .name
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty())
    {
        Some(n) => n,
        None => {
            err(ctx, "name", "missing tag name".into());
            String::new()
        }
    };
    if !name.is_empty()
        && let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        err(
            ctx,
            "name",
            format!(
                "tag name \"{name}\" contains {bad:?}; use letters, digits, `_` and `-` (the device name is added in front: device.tag)"
            ),
        );
    }

    let area = match raw.area.as_deref() {
        None => None,
        Some(a) => match Area::parse(a) {
            Some(a) => Some(a),
            None => {
                err(
                    ctx,
                    "area",
                    format!("area \"{a}\" is not one of coil, discrete, input, holding"),
                );
                return None;
            }
        },
    };
    let Some(raw_address) = raw.address else {
        err(ctx, "address", "missing address".into());
        return None;
    };
    let resolved = match address::resolve(&raw_address, area) {
        Ok(r) => r,
        Err(e) => {
            err(ctx, "address", e);
            return None;
        }
    };
    if let Some(w) = &resolved.warning {
        ctx.tag_problem(site, Some("address"), Severity::Warning, w.clone());
    }
    let area = resolved.area;

    let type_name = raw
        .data_type
        .as_deref()
        .unwrap_or(if area.is_bit() { "bool" } else { "u16" });
    let data_type = match DataType::parse(type_name, raw.bit, raw.length) {
        Ok(t) => t,
        Err(e) => {
            err(ctx, e.field(), e.to_string());
            return None;
        }
    };
    if raw.bit.is_some() && !matches!(data_type, DataType::Bit(_)) {
        err(
            ctx,
            "bit",
            format!(
                "`bit` is only for type \"bit\" (this tag is {})",
                data_type.name()
            ),
        );
    }
    if raw.length.is_some() && !matches!(data_type, DataType::String(_)) {
        err(
            ctx,
            "length",
            format!(
                "`length` is only for type \"string\" (this tag is {})",
                data_type.name()
            ),
        );
    }
    if area.is_bit() && data_type != DataType::Bool {
        err(
            ctx,
            "type",
            format!(
                "a {area} is a single bit; its type must be bool (not {})",
                data_type.name()
            ),
        );
    }
    if !area.is_bit() && data_type == DataType::Bool {
        err(
            ctx,
            "type",
            format!(
                "a {area} register is 16 bits; use type \"bit\" with `bit = N` for one of its bits"
            ),
        );
    }
    let width = u32::from(data_type.width());
    if u32::from(resolved.address) + width - 1 > 65_535 {
        err(
            ctx,
            "address",
            format!(
                "a tag of type {} at address {} needs {width} registers, but only {} {} left in the 16-bit address space",
                data_type.name(),
                resolved.address,
                65_536 - u32::from(resolved.address),
                if resolved.address == 65_535 {
                    "is"
                } else {
                    "are"
                }
            ),
        );
    }
    let word_order = match raw.word_order.as_deref() {
        None => default_order,
        Some(w) => WordOrder::parse(w).unwrap_or_else(|| {
            err(
                ctx,
                "word_order",
                format!("word order \"{w}\" is not one of ABCD, CDAB, BADC, DCBA"),
            );
            default_order
        }),
    };
    let numeric = data_type.is_numeric();
    for (key, given) in [("scale", raw.scale), ("offset", raw.offset)] {
        match given {
            Some(x) if !x.is_finite() => err(ctx, key, format!("{key} must be a finite number")),
            Some(_) if !numeric => err(
                ctx,
                key,
                format!("{key} does not apply to a {} tag", data_type.name()),
            ),
            _ => {}
        }
    }
    let scale = raw.scale.unwrap_or(1.0);
    if scale == 0.0 {
        err(
            ctx,
            "scale",
            "scale 0 would turn every reading into the offset".into(),
        );
    }
    let deadband = match raw.deadband {
        None => Deadband::None,
        Some(RawDeadband::Absolute(x)) if x < 0.0 || !x.is_finite() => {
            err(
                ctx,
                "deadband",
                format!("deadband {x} must be zero or positive"),
            );
            Deadband::None
        }
        Some(RawDeadband::Absolute(0.0)) => Deadband::None,
        Some(RawDeadband::Absolute(x)) => Deadband::Absolute(x),
        Some(RawDeadband::Percent(p)) if !(0.0..=100.0).contains(&p) => {
            err(
                ctx,
                "deadband",
                format!("deadband {p}% must be between 0% and 100%"),
            );
            Deadband::None
        }
        Some(RawDeadband::Percent(p)) => {
            match (raw.span_low, raw.span_high) {
                (Some(lo), Some(hi)) if hi > lo => {}
                (Some(_), Some(_)) => {
                    err(ctx, "span_high", "span_high must be above span_low".into())
                }
                _ => err(
                    ctx,
                    "deadband",
                    "a percent deadband needs the tag's span: set span_low and span_high".into(),
                ),
            }
            if p == 0.0 {
                Deadband::None
            } else {
                Deadband::Percent(p)
            }
        }
    };
    if matches!(deadband, Deadband::Absolute(_) | Deadband::Percent(_)) && !numeric {
        err(
            ctx,
            "deadband",
            format!("a deadband does not apply to a {} tag", data_type.name()),
        );
    }

    let errors_after = ctx.problems.iter().filter(|p| p.is_error()).count();
    if errors_after > errors_before {
        return None;
    }
    Some(Tag {
        name,
        area,
        address: resolved.address,
        data_type,
        word_order,
        scale,
        offset: raw.offset.unwrap_or(0.0),
        unit: raw.unit.filter(|u| !u.trim().is_empty()),
        deadband,
        span_low: raw.span_low,
        span_high: raw.span_high,
        description: raw.description.filter(|d| !d.trim().is_empty()),
        asset: raw.asset.filter(|a| !a.trim().is_empty()),
        alias: raw.alias.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(parse_endpoint("10.0.0.5:502"), Ok(("10.0.0.5".into(), 502)));
        assert_eq!(parse_endpoint("plc1"), Ok(("plc1".into(), 502)));
        assert_eq!(parse_endpoint("plc1:5020"), Ok(("plc1".into(), 5020)));
        assert_eq!(parse_endpoint("[::1]:5020"), Ok(("::1".into(), 5020)));
        assert_eq!(parse_endpoint("::1"), Ok(("::1".into(), 502)));
        assert!(parse_endpoint("plc1:http").is_err());
        assert!(parse_endpoint(":502").is_err());
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("adress", "address"), 1);
        assert_eq!(edit_distance("flaot", "float"), 2);
    }

    #[test]
    fn env_var_names() {
        assert_eq!(env_var_for("mqtt.host"), "FIELDGATE_MQTT__HOST");
        assert_eq!(
            env_var_for("mqtt.tls.ca_file"),
            "FIELDGATE_MQTT__TLS__CA_FILE"
        );
    }
}
