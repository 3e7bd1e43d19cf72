//! `[[cmms]]`: one CMMS connector on its own (its URL, timings, id maps,
//! secrets and the keys of its kind), and `[bridge]`, the section only
//! `bridge.toml` has. The meters a connector names are only written down
//! here; validate looks them up among `[[meters]]`.

use std::collections::BTreeMap;
use std::time::Duration;

use figment::value::Value;
use reqwest::header::{HeaderName, HeaderValue};

use super::fields::{check_name, check_topic_prefix, duration_in, required};
use super::sections::{default_gateway_id, read_secret, readable_file};
use crate::config::cmms::WEBHOOK_PLACEHOLDERS;
use crate::config::raw::{RawBridge, RawCmms, RawId};
use crate::config::report::Ctx;
use crate::config::resolved::{Connector, KeyOrder};
use crate::config::secret::Secret;
use crate::config::{
    BridgeSection, CmmsConfig, CmmsKind, InboundAuth, MaintainXConfig, MaximoConfig, UpKeepConfig,
    WebhookAuth, WebhookConfig,
};

/// The values of `kind`.
const KINDS: &[&str] = &["webhook", "maximo", "maintainx", "upkeep"];

/// The keys only some kinds have, with those kinds. A key of another
/// kind is refused by name rather than ignored: it is a connector
/// copied from another or a `kind` mistyped, and either way a setting
/// the user believes in would do nothing.
const KIND_KEYS: &[(&str, &[&str])] = &[
    ("method", &["webhook"]),
    ("headers", &["webhook"]),
    ("auth", &["webhook"]),
    ("token_file", &["webhook"]),
    ("username", &["webhook"]),
    ("password_file", &["webhook"]),
    ("secret_file", &["webhook"]),
    ("signature_header", &["webhook"]),
    ("body", &["webhook"]),
    ("content_type", &["webhook"]),
    ("events", &["webhook"]),
    ("api_key_file", &["maximo", "maintainx"]),
    ("site_id", &["maximo"]),
    ("object_structure", &["maximo"]),
    ("api_path", &["maximo"]),
    ("worktype_corrective", &["maximo"]),
    ("worktype_preventive", &["maximo"]),
    ("key_field", &["maximo"]),
    ("priorities", &["maximo"]),
    ("session_token_file", &["upkeep"]),
];

/// Secrets written in the config itself, with the key that names the
/// file they belong in. The config is copied, mailed and committed;
/// a file can be a systemd credential readable by the service alone.
const INLINE_SECRETS: &[(&str, &str)] = &[
    ("api_key", "api_key_file"),
    ("token", "token_file"),
    ("password", "password_file"),
    ("secret", "secret_file"),
    ("session_token", "session_token_file"),
    ("inbound_token", "inbound_token_file"),
    ("inbound_secret", "inbound_secret_file"),
];

/// The work-order events a webhook can be sent.
const EVENTS: &[&str] = &["raised", "updated", "closed"];

/// Maximo's `wopriority` for low, medium, high and critical: 1 is its
/// most urgent.
const MAXIMO_PRIORITIES: [(&str, i64); 4] =
    [("low", 4), ("medium", 3), ("high", 2), ("critical", 1)];

/// One `[[cmms]]` element at `field`, as merged. Every problem within it
/// is recorded; the connector is returned only when there is none.
/// `key_order` gives its `headers` in the order written.
pub(super) fn connector(
    ctx: &mut Ctx,
    field: String,
    value: Value,
    key_order: &KeyOrder,
) -> Connector {
    let errors_before = error_count(ctx);
    // The meters are read from the merged value, so that an element that
    // does not deserialize still has the meters it names checked.
    let meters = value
        .find_ref("meters")
        .and_then(Value::as_dict)
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    let value = without_inline_secrets(ctx, &field, value);
    let present: Vec<String> = value
        .as_dict()
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default();
    let Some(raw) = ctx.read::<RawCmms>(&field, Some(&value)) else {
        return Connector {
            field,
            meters,
            value: None,
        };
    };
    let cmms = resolve(ctx, &field, raw, &present, key_order);
    let value = cmms.filter(|_| error_count(ctx) == errors_before);
    Connector {
        field,
        meters,
        value,
    }
}

fn error_count(ctx: &Ctx) -> usize {
    ctx.problems.iter().filter(|p| p.is_error()).count()
}

/// `value` without the secrets written inline, each reported by its key
/// alone: its value is never read, so it cannot reach a message.
fn without_inline_secrets(ctx: &mut Ctx, field: &str, value: Value) -> Value {
    let Value::Dict(tag, mut dict) = value else {
        return value;
    };
    for (key, file_key) in INLINE_SECRETS {
        if dict.remove(*key).is_some() {
            ctx.error(
                &format!("{field}.{key}"),
                format!(
                    "a secret is never written in the config: put it in a file: {file_key} = \"/path/to/file\""
                ),
            );
        }
    }
    Value::Dict(tag, dict)
}

/// The connector `raw` describes, `None` when a part of it is missing.
fn resolve(
    ctx: &mut Ctx,
    field: &str,
    raw: RawCmms,
    present: &[String],
    key_order: &KeyOrder,
) -> Option<CmmsConfig> {
    let at = |key: &str| format!("{field}.{key}");
    let name = match &raw.name {
        None => {
            ctx.error(&at("name"), "missing connector name");
            None
        }
        Some(n) => check_name(ctx, &at("name"), "connector", n).then(|| n.clone()),
    };
    let kind = match raw.kind.as_deref().map(str::to_ascii_lowercase) {
        None => {
            ctx.error(&at("kind"), format!("missing kind ({})", KINDS.join(", ")));
            None
        }
        Some(k) => match KINDS.iter().find(|known| **known == k) {
            Some(known) => Some(*known),
            None => {
                ctx.error(
                    &at("kind"),
                    format!("kind \"{k}\" is not one of {}", KINDS.join(", ")),
                );
                None
            }
        },
    };
    if let Some(kind) = kind {
        for key in present {
            if let Some((_, kinds)) = KIND_KEYS.iter().find(|(k, _)| k == key)
                && !kinds.contains(&kind)
            {
                ctx.error(
                    &at(key),
                    format!(
                        "`{key}` is a key of {} connectors; this one is kind = \"{kind}\"",
                        kinds.join(" and ")
                    ),
                );
            }
        }
    }
    let url = url(ctx, &at("url"), raw.url.clone());
    let timeout = duration_in(
        ctx,
        &at("timeout"),
        raw.timeout,
        Duration::from_secs(10),
        Duration::from_secs(1),
        Duration::from_secs(300),
    );
    let retry_min = duration_in(
        ctx,
        &at("retry_min"),
        raw.retry_min,
        Duration::from_secs(1),
        Duration::from_millis(100),
        Duration::from_secs(3600),
    );
    let retry_max = duration_in(
        ctx,
        &at("retry_max"),
        raw.retry_max,
        Duration::from_secs(300),
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    );
    if retry_max < retry_min {
        ctx.error(
            &at("retry_max"),
            format!(
                "retry_max {} is shorter than retry_min {}",
                humantime::format_duration(retry_max),
                humantime::format_duration(retry_min)
            ),
        );
    }
    let poll_interval = match raw.poll_interval {
        Some(d) if d.0.is_zero() => None,
        other => Some(duration_in(
            ctx,
            &at("poll_interval"),
            other,
            Duration::from_secs(60),
            Duration::from_secs(5),
            Duration::from_secs(86_400),
        )),
    };
    let ca_file = raw
        .ca_file
        .as_deref()
        .map(|f| readable_file(ctx, &at("ca_file"), f));
    let work_orders = raw.work_orders.unwrap_or(true);
    let assets = ids(ctx, &at("assets"), raw.assets.clone());
    let locations = ids(ctx, &at("locations"), raw.locations.clone());
    let meters = ids(ctx, &at("meters"), raw.meters.clone());
    if !meters.is_empty() && kind.is_some_and(|k| k != "maintainx") {
        ctx.warn(
            &at("meters"),
            "only MaintainX takes meter readings: this connector's meters are not delivered",
        );
    }
    if !work_orders && meters.is_empty() {
        ctx.warn(
            &at("work_orders"),
            "work_orders = false and no meters: this connector delivers nothing",
        );
    }
    let inbound = match (&raw.inbound_token_file, &raw.inbound_secret_file) {
        (Some(_), Some(_)) => {
            ctx.error(
                &at("inbound_secret_file"),
                "give either inbound_token_file or inbound_secret_file, not both",
            );
            None
        }
        (Some(f), None) => {
            let token = read_secret(ctx, &at("inbound_token_file"), f);
            token
                .inspect(|t| header_safe(ctx, &at("inbound_token_file"), t))
                .map(InboundAuth::Token)
        }
        (None, Some(f)) => read_secret(ctx, &at("inbound_secret_file"), f).map(InboundAuth::Hmac),
        (None, None) => None,
    };
    let kind = match kind? {
        "webhook" => CmmsKind::Webhook(webhook(ctx, field, &raw, present, key_order)?),
        "maximo" => CmmsKind::Maximo(maximo(ctx, field, &raw)?),
        "maintainx" => CmmsKind::MaintainX(MaintainXConfig {
            api_key: secret_key(
                ctx,
                &at("api_key_file"),
                raw.api_key_file.as_deref(),
                "the API key",
            )?,
        }),
        _ => CmmsKind::UpKeep(UpKeepConfig {
            session_token: secret_key(
                ctx,
                &at("session_token_file"),
                raw.session_token_file.as_deref(),
                "the session token",
            )?,
        }),
    };
    Some(CmmsConfig {
        name: name?,
        kind,
        url: url?,
        timeout,
        retry_min,
        retry_max,
        poll_interval,
        ca_file,
        work_orders,
        assets,
        locations,
        meters,
        inbound,
    })
}

/// `url`: `http://` or `https://` with a host. It is never repeated in
/// a message, since it may carry credentials (`user:pass@`), which are
/// refused.
fn url(ctx: &mut Ctx, field: &str, text: Option<String>) -> Option<String> {
    let text = required(
        ctx,
        field,
        text,
        "url (the CMMS's address, e.g. https://cmms.example.com)",
    )?;
    let parsed = match reqwest::Url::parse(&text) {
        Ok(u) => u,
        Err(e) => {
            ctx.error(
                field,
                format!("not a URL ({e}); write e.g. https://cmms.example.com/api"),
            );
            return None;
        }
    };
    if !matches!(parsed.scheme(), "http" | "https") {
        ctx.error(
            field,
            format!(
                "the URL's scheme is `{}`; use https:// (or http://)",
                parsed.scheme()
            ),
        );
        return None;
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        ctx.error(field, "the URL has no host");
        return None;
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        ctx.error(
            field,
            "the URL holds credentials: put them in a file (the connector's *_file keys)",
        );
        return None;
    }
    Some(text)
}

/// A table of fieldgate ids → the CMMS's ids, none empty.
fn ids(
    ctx: &mut Ctx,
    field: &str,
    raw: Option<BTreeMap<String, RawId>>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, RawId(id)) in raw.unwrap_or_default() {
        let id = id.trim().to_string();
        if id.is_empty() {
            ctx.error(
                &format!("{field}.{key}"),
                format!("the CMMS id of \"{key}\" is empty"),
            );
            continue;
        }
        out.insert(key, id);
    }
    out
}

/// A secret that goes into a header as it is (an API key, a token):
/// visible ASCII only. The secret is never shown.
fn header_safe(ctx: &mut Ctx, field: &str, secret: &Secret) {
    if !secret.expose().iter().all(u8::is_ascii_graphic) {
        ctx.error(
            field,
            "the secret holds spaces or characters that cannot go in an HTTP header",
        );
    }
}

/// A required secret file that goes into a header (`what`: "the API key").
fn secret_key(ctx: &mut Ctx, field: &str, file: Option<&str>, what: &str) -> Option<Secret> {
    let Some(file) = file else {
        let key = field.rsplit('.').next().unwrap_or(field);
        ctx.error(field, format!("missing {key} (the file holding {what})"));
        return None;
    };
    let secret = read_secret(ctx, field, file)?;
    header_safe(ctx, field, &secret);
    Some(secret)
}

/// A text key with a default; written empty is an error.
fn text_or(ctx: &mut Ctx, field: &str, value: Option<&str>, default: &str) -> String {
    match value.map(str::trim) {
        None => default.to_string(),
        Some("") => {
            let key = field.rsplit('.').next().unwrap_or(field);
            ctx.error(field, format!("{key} is empty (default \"{default}\")"));
            default.to_string()
        }
        Some(v) => v.to_string(),
    }
}

/// A header name, as HTTP allows it.
fn header_name(ctx: &mut Ctx, field: &str, name: &str) -> bool {
    if HeaderName::from_bytes(name.as_bytes()).is_err() {
        ctx.error(
            field,
            format!(
                "\"{name}\" is not an HTTP header name (letters, digits and - only, no spaces)"
            ),
        );
        return false;
    }
    true
}

/// `kind = "webhook"`.
fn webhook(
    ctx: &mut Ctx,
    field: &str,
    raw: &RawCmms,
    present: &[String],
    key_order: &KeyOrder,
) -> Option<WebhookConfig> {
    let at = |key: &str| format!("{field}.{key}");
    let method = match raw
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("POST") => "POST".to_string(),
        Some(m @ ("PUT" | "PATCH")) => m.to_string(),
        Some(other) => {
            ctx.error(
                &at("method"),
                format!("method \"{other}\" is not POST, PUT or PATCH"),
            );
            "POST".to_string()
        }
    };

    // Headers in the order written: figment sorts them, the file does not.
    let mut headers: Vec<(String, String)> = raw
        .headers
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    if let Some(order) = key_order.get(&at("headers")) {
        headers.sort_by_key(|(name, _)| order.iter().position(|k| k == name).unwrap_or(usize::MAX));
    }
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in &headers {
        let hfield = format!("{field}.headers.{name}");
        let lower = name.to_ascii_lowercase();
        if lower == "authorization" {
            // Its value is a credential: never repeated, and it belongs in
            // a file, which `auth` reads.
            ctx.error(
                &hfield,
                "use auth (with token_file, or username and password_file) rather than an Authorization header",
            );
            continue;
        }
        if lower == "content-type" {
            ctx.error(
                &hfield,
                "use content_type rather than a Content-Type header",
            );
            continue;
        }
        if !header_name(ctx, &hfield, name) {
            continue;
        }
        if HeaderValue::from_str(value).is_err() {
            ctx.error(
                &hfield,
                "the value holds characters that cannot go in an HTTP header (visible ASCII and spaces only)",
            );
        }
        if seen.contains(&lower) {
            ctx.error(&hfield, format!("header {name} is given twice"));
        }
        seen.push(lower);
    }

    let auth_kind = raw.auth.as_deref().map(str::to_ascii_lowercase);
    let auth_kind = match auth_kind.as_deref() {
        None => Some("none"),
        Some(a @ ("none" | "bearer" | "basic" | "hmac")) => Some(a),
        Some(other) => {
            ctx.error(
                &at("auth"),
                format!("auth \"{other}\" is not one of none, bearer, basic, hmac"),
            );
            None
        }
    };
    if let Some(auth_kind) = auth_kind {
        for (key, owner) in [
            ("token_file", "bearer"),
            ("username", "basic"),
            ("password_file", "basic"),
            ("secret_file", "hmac"),
            ("signature_header", "hmac"),
        ] {
            if owner != auth_kind && present.iter().any(|k| k == key) {
                ctx.error(
                    &at(key),
                    format!(
                        "`{key}` is for auth = \"{owner}\"; this webhook has auth = \"{auth_kind}\""
                    ),
                );
            }
        }
    }
    let auth = match auth_kind? {
        "none" => WebhookAuth::None,
        "bearer" => WebhookAuth::Bearer(secret_key(
            ctx,
            &at("token_file"),
            raw.token_file.as_deref(),
            "the bearer token",
        )?),
        "basic" => {
            let username = match raw.username.as_deref() {
                None | Some("") => {
                    ctx.error(&at("username"), "auth = \"basic\" needs username");
                    None
                }
                Some(u) if u.contains(':') || u.chars().any(char::is_control) => {
                    ctx.error(
                        &at("username"),
                        "a basic-auth user name cannot hold `:` or control characters",
                    );
                    None
                }
                Some(u) => Some(u.to_string()),
            };
            let password = match raw.password_file.as_deref() {
                None => {
                    ctx.error(
                        &at("password_file"),
                        "auth = \"basic\" needs password_file (the file holding the password)",
                    );
                    None
                }
                Some(f) => read_secret(ctx, &at("password_file"), f),
            };
            WebhookAuth::Basic {
                username: username?,
                password: password?,
            }
        }
        _ => {
            let secret = match raw.secret_file.as_deref() {
                None => {
                    ctx.error(
                        &at("secret_file"),
                        "auth = \"hmac\" needs secret_file (the file holding the shared secret)",
                    );
                    None
                }
                Some(f) => read_secret(ctx, &at("secret_file"), f),
            };
            let header = text_or(
                ctx,
                &at("signature_header"),
                raw.signature_header.as_deref(),
                "X-Fieldgate-Signature",
            );
            header_name(ctx, &at("signature_header"), &header);
            WebhookAuth::Hmac {
                secret: secret?,
                header,
            }
        }
    };

    if let Some(body) = &raw.body {
        let unknown: Vec<&str> = placeholders(body)
            .filter(|p| !WEBHOOK_PLACEHOLDERS.contains(p))
            .collect();
        for name in unknown {
            ctx.warn(
                &at("body"),
                format!(
                    "unknown placeholder {{{name}}} is sent as written; known: {}",
                    WEBHOOK_PLACEHOLDERS.join(", ")
                ),
            );
        }
    }
    let content_type = text_or(
        ctx,
        &at("content_type"),
        raw.content_type.as_deref(),
        "application/json",
    );
    if HeaderValue::from_str(&content_type).is_err() {
        ctx.error(
            &at("content_type"),
            "the content type holds characters that cannot go in an HTTP header",
        );
    }
    let events = match &raw.events {
        None => EVENTS.iter().map(|e| e.to_string()).collect(),
        Some(list) => {
            let mut events: Vec<String> = Vec::new();
            for (i, e) in list.iter().enumerate() {
                let e = e.trim().to_ascii_lowercase();
                if !EVENTS.contains(&e.as_str()) {
                    ctx.error(
                        &format!("{field}.events[{i}]"),
                        format!("event \"{e}\" is not one of {}", EVENTS.join(", ")),
                    );
                } else if !events.contains(&e) {
                    events.push(e);
                }
            }
            if list.is_empty() {
                ctx.error(
                    &at("events"),
                    "events is empty: this webhook would send nothing (set work_orders = false to mean it)",
                );
            }
            events
        }
    };
    Some(WebhookConfig {
        method,
        headers,
        auth,
        body: raw.body.clone(),
        content_type,
        events,
    })
}

/// The placeholders of a body template: `{name}` with a name of letters,
/// digits and `_`. Other braces are text (JSON objects).
fn placeholders(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices('{').filter_map(move |(open, _)| {
        let rest = &text[open + 1..];
        let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
        (end > 0 && rest[end..].starts_with('}')).then(|| &rest[..end])
    })
}

/// `kind = "maximo"`.
fn maximo(ctx: &mut Ctx, field: &str, raw: &RawCmms) -> Option<MaximoConfig> {
    let at = |key: &str| format!("{field}.{key}");
    let api_key = secret_key(
        ctx,
        &at("api_key_file"),
        raw.api_key_file.as_deref(),
        "the API key",
    );
    let site_id = required(
        ctx,
        &at("site_id"),
        raw.site_id.clone(),
        "site_id (the Maximo site of the work orders)",
    );
    let object_structure = text_or(
        ctx,
        &at("object_structure"),
        raw.object_structure.as_deref(),
        "mxwo",
    );
    let api_path = text_or(ctx, &at("api_path"), raw.api_path.as_deref(), "oslc");
    let worktype_corrective = text_or(
        ctx,
        &at("worktype_corrective"),
        raw.worktype_corrective.as_deref(),
        "CM",
    );
    let worktype_preventive = text_or(
        ctx,
        &at("worktype_preventive"),
        raw.worktype_preventive.as_deref(),
        "PM",
    );
    let key_field = text_or(
        ctx,
        &at("key_field"),
        raw.key_field.as_deref(),
        "externalrefid",
    );
    let mut priorities = MAXIMO_PRIORITIES.map(|(_, p)| p);
    for (level, value) in raw.priorities.clone().unwrap_or_default() {
        match MAXIMO_PRIORITIES
            .iter()
            .position(|(l, _)| *l == level.to_ascii_lowercase())
        {
            Some(i) => priorities[i] = value,
            None => ctx.error(
                &format!("{field}.priorities.{level}"),
                format!("priority \"{level}\" is not one of low, medium, high, critical"),
            ),
        }
    }
    Some(MaximoConfig {
        api_key: api_key?,
        site_id: site_id?,
        object_structure,
        api_path,
        worktype_corrective,
        worktype_preventive,
        key_field,
        priorities,
    })
}

/// `[bridge]` of `bridge.toml`. `mqtt_prefix`: `[mqtt] topic_prefix`,
/// which stands for `topic_prefix` when only it is given (it is judged
/// with `[mqtt]`).
pub(super) fn bridge(ctx: &mut Ctx, raw: RawBridge, mqtt_prefix: Option<String>) -> BridgeSection {
    let id = raw.id.unwrap_or_else(default_gateway_id);
    check_name(ctx, "bridge.id", "bridge", &id);
    let data_dir = ctx.path(
        raw.data_dir
            .as_deref()
            .unwrap_or("/var/lib/fieldgate-bridge"),
    );
    let shared_group = match raw.shared_group {
        None => Some("fieldgate-bridge".to_string()),
        Some(g) if g.is_empty() => None,
        Some(g) => {
            // `$share/{group}/{filter}`: the group is one topic level.
            if g.contains(['/', '+', '#']) || g.chars().any(char::is_whitespace) {
                ctx.error(
                    "bridge.shared_group",
                    format!("shared group \"{g}\" cannot hold /, +, # or spaces (\"\" turns shared subscriptions off)"),
                );
            }
            Some(g)
        }
    };
    let topic_prefix = match raw.topic_prefix {
        Some(p) => {
            check_topic_prefix(ctx, "bridge.topic_prefix", &p);
            p
        }
        None => mqtt_prefix.unwrap_or_else(|| "fieldgate".into()),
    };
    BridgeSection {
        id,
        data_dir,
        shared_group,
        topic_prefix,
    }
}

#[cfg(test)]
mod tests {
    use super::placeholders;

    #[test]
    fn placeholders_are_names_in_braces_and_other_braces_are_text() {
        let body =
            r#"{"title": "{title}", "n": {occurrences}, "x": {}, "y": "{a b}", "z": "{json}{key}"#;
        let found: Vec<&str> = placeholders(body).collect();
        assert_eq!(found, ["title", "occurrences", "json", "key"]);
        assert_eq!(placeholders("{{title}}").collect::<Vec<_>>(), ["title"]);
        assert_eq!(placeholders("{title").count(), 0);
        assert_eq!(placeholders("").count(), 0);
    }
}
