//! Webhook: any HTTP endpoint, with the method, headers, authentication
//! and body template the connector's section gives.
//!
//! There is no vendor reference to follow; the request keeps to common
//! conventions so that receivers need nothing fieldgate-specific:
//! * methods and headers: RFC 9110; `Basic`: RFC 7617; `Bearer`: RFC 6750;
//! * the signature: HMAC-SHA256 (RFC 2104, test vectors of RFC 4231) of
//!   the exact body bytes, sent as `sha256=<lowercase hex>`, the form
//!   GitHub's `X-Hub-Signature-256` made common;
//! * `Idempotency-Key`: the IETF HTTPAPI draft "The Idempotency-Key HTTP
//!   Header Field" (draft-ietf-httpapi-idempotency-key-header, 2023-2025
//!   revisions): the same value on every retry of one delivery, so a
//!   receiver that stores it can drop repeats.
//!
//! Not verified against any particular receiver: which answer field
//! holds its own id (`id`, `reference`, `ref`, `number` or `key` are
//! read, in that order).
//!
//! # The body
//!
//! Without a template the body is the work order's JSON exactly as it
//! went out on MQTT (the reader keeps the bytes it read, `raw`); only a
//! work order built without them (tests) sends a JSON object rebuilt
//! from its fields.

use std::fmt::Write as _;

use hmac::{Hmac, Mac};
use serde_json::Value as Json;
use sha2::Sha256;

use super::{Event, Vendor};
use crate::cmms::exchange::{self, Answer, Failure, Found, Method, Request};
use crate::config::{CmmsConfig, WebhookAuth, WebhookConfig};
use crate::contract::received::{MeterDoc, WorkOrderDoc};

/// [`Webhook::PLACEHOLDERS`].
const PLACEHOLDERS: &[&str] = &[
    "id",
    "key",
    "event",
    "type",
    "status",
    "priority",
    "created_at",
    "updated_at",
    "site",
    "gateway",
    "asset",
    "location",
    "title",
    "description",
    "problem_code",
    "procedure",
    "rule",
    "meter",
    "tag",
    "value",
    "limit",
    "unit",
    "condition",
    "since",
    "occurrences",
    "cmms_ref",
    "json",
];

/// The `User-Agent` of every webhook request.
const USER_AGENT: &str = concat!("fieldgate/", env!("CARGO_PKG_VERSION"));

/// The longest reference kept from a receiver's answer: it ends up in
/// the store, logs and the status page.
const MAX_REFERENCE: usize = 200;

/// A webhook's API: one request per work-order event, nothing to look up
/// or poll (a receiver that wants to report a status pushes it to
/// fieldgate's HTTP server).
pub struct Webhook {
    url: String,
    method: Method,
    headers: Vec<(String, String)>,
    content_type: String,
    auth: WebhookAuth,
    body: Option<String>,
}

impl Webhook {
    /// The placeholders a webhook body template may use, written `{name}`
    /// (the config check reports any other). All but `json` are
    /// substituted JSON-string-escaped (without quotes, so
    /// `"title": "{title}"` stays valid JSON); `{json}` inserts the whole
    /// work order's JSON as it is.
    pub const PLACEHOLDERS: &'static [&'static str] = PLACEHOLDERS;

    /// `template` with every known `{placeholder}` of `wo` filled in (see
    /// [`PLACEHOLDERS`](Webhook::PLACEHOLDERS)), `json` standing for
    /// `{json}`; unknown ones are left as written.
    pub fn render(template: &str, wo: &WorkOrderDoc, json: &str, event: Event) -> String {
        fill(template, |name| value(name, wo, json, event, None))
    }

    /// The vendor of a connector.
    pub fn new(config: &CmmsConfig, own: &WebhookConfig) -> Webhook {
        let method = match own.method.to_ascii_uppercase().as_str() {
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            // The config check allows only POST, PUT and PATCH.
            _ => Method::Post,
        };
        Webhook {
            url: config.url.clone(),
            method,
            headers: own.headers.clone(),
            content_type: own.content_type.clone(),
            auth: own.auth.clone(),
            body: own.body.clone(),
        }
    }

    fn body(
        &self,
        wo: &WorkOrderDoc,
        json: &[u8],
        event: Event,
        reference: Option<&str>,
    ) -> Vec<u8> {
        match &self.body {
            None => json.to_vec(),
            Some(template) => {
                let json = String::from_utf8_lossy(json);
                fill(template, |name| value(name, wo, &json, event, reference)).into_bytes()
            }
        }
    }

    fn build(
        &self,
        wo: &WorkOrderDoc,
        json: &[u8],
        event: Event,
        reference: Option<&str>,
    ) -> Result<Request, Failure> {
        let body = self.body(wo, json, event, reference);
        let headers = self.headers_for(wo, event, &body)?;
        Ok(Request {
            method: self.method,
            url: self.url.clone(),
            headers,
            body: Some(body),
        })
    }

    /// The configured headers, then fieldgate's own, then the
    /// credentials. A configured header with the name of one fieldgate
    /// sets is left out: sent twice, receivers would read either.
    fn headers_for(
        &self,
        wo: &WorkOrderDoc,
        event: Event,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, Failure> {
        let auth_header = match &self.auth {
            WebhookAuth::None => None,
            WebhookAuth::Bearer(_) | WebhookAuth::Basic { .. } => Some("Authorization"),
            WebhookAuth::Hmac { header, .. } => Some(header.as_str()),
        };
        let own = [
            "Content-Type",
            "X-Fieldgate-Event",
            "X-Fieldgate-Key",
            "Idempotency-Key",
            "User-Agent",
        ];
        let taken = |name: &str| {
            own.iter().any(|o| o.eq_ignore_ascii_case(name))
                || auth_header.is_some_and(|a| a.eq_ignore_ascii_case(name))
        };
        let mut headers: Vec<(String, String)> = self
            .headers
            .iter()
            .filter(|(name, _)| !taken(name))
            .cloned()
            .collect();
        headers.push(("Content-Type".into(), self.content_type.clone()));
        headers.push(("X-Fieldgate-Event".into(), event.as_str().into()));
        headers.push(("X-Fieldgate-Key".into(), header_safe(&wo.key)));
        headers.push(("Idempotency-Key".into(), idempotency_key(wo, event)));
        headers.push(("User-Agent".into(), USER_AGENT.into()));
        match &self.auth {
            WebhookAuth::None => {}
            WebhookAuth::Bearer(token) => {
                headers.push((
                    "Authorization".into(),
                    format!("Bearer {}", token.expose_str()),
                ));
            }
            WebhookAuth::Basic { username, password } => {
                let mut pair = username.as_bytes().to_vec();
                pair.push(b':');
                pair.extend_from_slice(password.expose());
                headers.push(("Authorization".into(), format!("Basic {}", base64(&pair))));
            }
            WebhookAuth::Hmac { secret, header } => {
                let signature = sign(secret.expose(), body).ok_or_else(|| {
                    Failure::Park("the HMAC key of the webhook cannot be used".into())
                })?;
                headers.push((header.clone(), signature));
            }
        }
        Ok(headers)
    }
}

impl Vendor for Webhook {
    fn lookup(&self, _wo: &WorkOrderDoc) -> Option<Request> {
        None
    }

    fn read_lookup(&self, _wo: &WorkOrderDoc, _answer: &Answer) -> Result<Option<Found>, Failure> {
        Ok(None)
    }

    fn create(&self, wo: &WorkOrderDoc, event: Event) -> Result<Request, Failure> {
        self.build(wo, published(wo).as_bytes(), event, None)
    }

    fn read_create(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        if !exchange::is_success(answer) {
            return Err(exchange::failure(answer, error_text(&answer.body)));
        }
        Ok(reference_in(&answer.body).map(|reference| Found {
            reference,
            status: None,
        }))
    }

    fn update(&self, wo: &WorkOrderDoc, reference: &str, event: Event) -> Option<Request> {
        // The same request as a create: a webhook has one URL; the
        // receiver tells events apart by `X-Fieldgate-Event` and finds its
        // own id in `{cmms_ref}`. It cannot fail but on an unusable HMAC
        // key, which `create` reports (parks) first.
        self.build(wo, published(wo).as_bytes(), event, Some(reference))
            .ok()
    }

    fn status(&self, _reference: &str) -> Option<Request> {
        None
    }

    fn read_status(&self, _answer: &Answer) -> Result<Option<Found>, Failure> {
        Ok(None)
    }

    fn meter(&self, _reading: &MeterDoc, _meter_id: &str) -> Option<Request> {
        None
    }
}

/// Fills `{placeholder}`s; anything else between braces (a JSON
/// template's own objects) is kept as is.
fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after
            .find('}')
            .and_then(|close| Some((close, value(&after[..close])?)))
        {
            Some((close, v)) => {
                out.push_str(&v);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of placeholder `name`, escaped for a JSON string (`json`
/// itself unescaped); `None` for an unknown name. `reference` is the
/// CMMS reference known to the caller, for `{cmms_ref}` when the work
/// order does not carry one yet.
fn value(
    name: &str,
    wo: &WorkOrderDoc,
    json: &str,
    event: Event,
    reference: Option<&str>,
) -> Option<String> {
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let t = &wo.trigger;
    let text = match name {
        "json" => return Some(json.to_owned()),
        "id" => wo.id.clone(),
        "key" => wo.key.clone(),
        "event" => event.as_str().to_owned(),
        "type" => wo.kind.clone(),
        "status" => wo.status.clone(),
        "priority" => wo.priority.clone(),
        "created_at" => wo.created_at.clone(),
        "updated_at" => wo.updated_at.clone(),
        "site" => wo.site.clone(),
        "gateway" => wo.gateway.clone(),
        "asset" => wo.asset.clone(),
        "location" => opt(&wo.location),
        "title" => wo.title.clone(),
        "description" => wo.description.clone(),
        "problem_code" => opt(&wo.problem_code),
        "procedure" => opt(&wo.procedure),
        "rule" => opt(&t.rule),
        "meter" => opt(&t.meter),
        "tag" => opt(&t.tag),
        "value" => json_text(&t.value),
        // A meter's work order has a threshold where an alarm's has a limit.
        "limit" if t.limit.is_null() => json_text(&t.threshold),
        "limit" => json_text(&t.limit),
        "unit" => opt(&t.unit),
        "condition" => opt(&t.condition),
        "since" => opt(&t.since),
        "occurrences" => wo.occurrences.to_string(),
        "cmms_ref" => wo.cmms_ref().or(reference).unwrap_or_default().to_owned(),
        _ => return None,
    };
    Some(escape(&text))
}

/// A JSON value as text: strings without quotes, `null` as nothing.
fn json_text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `text` escaped for the inside of a JSON string.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The work order's JSON as published, or rebuilt when the bytes were
/// not kept.
fn published(wo: &WorkOrderDoc) -> std::borrow::Cow<'_, str> {
    if wo.raw.is_empty() {
        std::borrow::Cow::Owned(rebuilt_json(wo))
    } else {
        std::borrow::Cow::Borrowed(&wo.raw)
    }
}

/// The work order's JSON, rebuilt from what the reader kept.
fn rebuilt_json(wo: &WorkOrderDoc) -> String {
    let t = &wo.trigger;
    serde_json::json!({
        "schema": wo.schema,
        "store": wo.store,
        "seq": wo.seq,
        "id": wo.id,
        "key": wo.key,
        "type": wo.kind,
        "status": wo.status,
        "priority": wo.priority,
        "created_at": wo.created_at,
        "updated_at": wo.updated_at,
        "site": wo.site,
        "gateway": wo.gateway,
        "asset": wo.asset,
        "location": wo.location,
        "title": wo.title,
        "description": wo.description,
        "problem_code": wo.problem_code,
        "procedure": wo.procedure,
        "trigger": {
            "rule": t.rule,
            "meter": t.meter,
            "tag": t.tag,
            "value": t.value,
            "limit": t.limit,
            "threshold": t.threshold,
            "unit": t.unit,
            "condition": t.condition,
            "since": t.since,
        },
        "occurrences": wo.occurrences,
        "cmms": wo.cmms.as_ref().map(|c| serde_json::json!({
            "ref": c.reference,
            "status": c.status,
        })),
    })
    .to_string()
}

/// `<key>:<event>:<occurrences>`: the same for every retry of one
/// delivery, another for the next event or occurrence of the work order.
fn idempotency_key(wo: &WorkOrderDoc, event: Event) -> String {
    header_safe(&format!("{}:{}:{}", wo.key, event.as_str(), wo.occurrences))
}

/// `text` as a header value: bytes outside visible ASCII (and `%`)
/// percent-encoded, since a key read from the broker may hold anything
/// and an HTTP client refuses control characters in headers. Keys made
/// by fieldgate are left as they are.
fn header_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `sha256=<lowercase hex HMAC-SHA256 of body>`; `None` only if the MAC
/// refuses the key (HMAC takes keys of any length, so never in practice).
fn sign(key: &[u8], body: &[u8]) -> Option<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    Some(out)
}

/// Standard base64 with padding (RFC 4648 §4), for `Basic`.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The receiver's id for the work order in a 2xx answer: the first of
/// `id`, `reference`, `ref`, `number`, `key` that is a non-empty string
/// or a number.
fn reference_in(body: &[u8]) -> Option<String> {
    let answer: Json = serde_json::from_slice(body).ok()?;
    let object = answer.as_object()?;
    ["id", "reference", "ref", "number", "key"]
        .iter()
        .find_map(|field| match object.get(*field)? {
            Json::String(s) => {
                let s = s.trim();
                // Kept in the store and shown: no control characters,
                // and short.
                (!s.is_empty()
                    && s.chars().count() <= MAX_REFERENCE
                    && !s.chars().any(char::is_control))
                .then(|| s.to_owned())
            }
            Json::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

/// The error text of a refusal, when the body is JSON with a usual field
/// for it (`message`, `error`, `error.message`, `detail`, `title`).
fn error_text(body: &[u8]) -> Option<String> {
    let answer: Json = serde_json::from_slice(body).ok()?;
    let object = answer.as_object()?;
    ["message", "error", "detail", "title"]
        .iter()
        .find_map(|field| match object.get(*field)? {
            Json::String(s) => Some(s.clone()),
            Json::Object(inner) => inner.get("message")?.as_str().map(str::to_owned),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmms::exchange::CmmsStatus;
    use crate::config::{CmmsKind, Secret};
    use crate::contract::received;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const WO: &str = r#"{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"01J","key":"plant/gw/pump_hot/1","type":"corrective","status":"open","priority":"high","created_at":"2026-12-07T08:00:00.000Z","updated_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing \"hot\"","description":"line 1\nline 2","problem_code":"BRG-HOT","procedure":null,"trigger":{"rule":"pump_hot","tag":"pump1.temp","value":91.5,"limit":80,"unit":"°C","condition":"above","since":"2026-12-07T07:59:00.000Z"},"readings":{},"occurrences":2,"cmms":null}"#;

    fn wo() -> WorkOrderDoc {
        received::work_order(WO.as_bytes()).unwrap()
    }

    fn own(auth: WebhookAuth, body: Option<&str>) -> WebhookConfig {
        WebhookConfig {
            method: "POST".into(),
            headers: vec![
                ("X-Site".into(), "north".into()),
                ("content-type".into(), "text/plain".into()),
            ],
            auth,
            body: body.map(str::to_owned),
            content_type: "application/json".into(),
            events: vec!["raised".into(), "updated".into(), "closed".into()],
        }
    }

    fn webhook(auth: WebhookAuth, body: Option<&str>) -> Webhook {
        let own = own(auth, body);
        let config = CmmsConfig {
            name: "hook".into(),
            kind: CmmsKind::Webhook(own.clone()),
            url: "https://hooks.example/in?x=1".into(),
            timeout: Duration::from_secs(10),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            poll_interval: None,
            ca_file: None,
            work_orders: true,
            assets: BTreeMap::new(),
            locations: BTreeMap::new(),
            meters: BTreeMap::new(),
            inbound: None,
        };
        Webhook::new(&config, &own)
    }

    fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_raised_work_order_is_posted_with_fieldgates_headers() {
        let hook = webhook(WebhookAuth::Bearer(Secret::new("tok-123")), None);
        let req = hook.create(&wo(), Event::Raised).unwrap();
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url, "https://hooks.example/in?x=1");
        assert_eq!(req.body.as_deref(), Some(WO.as_bytes()));
        let names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
        // The configured content-type is dropped: fieldgate sets its own.
        assert_eq!(
            names,
            [
                "X-Site",
                "Content-Type",
                "X-Fieldgate-Event",
                "X-Fieldgate-Key",
                "Idempotency-Key",
                "User-Agent",
                "Authorization"
            ]
        );
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        assert_eq!(header(&req, "x-fieldgate-event"), Some("raised"));
        assert_eq!(header(&req, "x-fieldgate-key"), Some("plant/gw/pump_hot/1"));
        assert_eq!(
            header(&req, "idempotency-key"),
            Some("plant/gw/pump_hot/1:raised:2")
        );
        assert_eq!(
            header(&req, "user-agent"),
            Some(concat!("fieldgate/", env!("CARGO_PKG_VERSION")))
        );
        assert_eq!(header(&req, "authorization"), Some("Bearer tok-123"));
    }

    #[test]
    fn idempotency_keys_are_stable_per_delivery_and_distinct_per_event() {
        let hook = webhook(WebhookAuth::None, None);
        let doc = wo();
        let a = hook.create(&doc, Event::Updated).unwrap();
        let b = hook.create(&doc, Event::Updated).unwrap();
        assert_eq!(header(&a, "idempotency-key"), header(&b, "idempotency-key"));
        let closed = hook.create(&doc, Event::Closed).unwrap();
        assert_ne!(
            header(&a, "idempotency-key"),
            header(&closed, "idempotency-key")
        );
        let mut next = doc.clone();
        next.occurrences += 1;
        let c = hook.create(&next, Event::Updated).unwrap();
        assert_ne!(header(&a, "idempotency-key"), header(&c, "idempotency-key"));
        assert!(header(&a, "authorization").is_none());
    }

    #[test]
    fn keys_with_control_characters_are_encoded_in_headers() {
        let hook = webhook(WebhookAuth::None, None);
        let mut doc = wo();
        doc.key = "a b\r\nc%ä".into();
        let req = hook.create(&doc, Event::Raised).unwrap();
        assert_eq!(
            header(&req, "x-fieldgate-key"),
            Some("a%20b%0D%0Ac%25%C3%A4")
        );
    }

    #[test]
    fn templates_escape_values_and_keep_unknown_placeholders() {
        let template = r#"{"t": "{title}", "d": "{description}", "e": "{event}", "v": {value}, "l": "{limit}{unit}", "n": {occurrences}, "x": "{nope}", "wo": {json}}"#;
        let out = Webhook::render(template, &wo(), WO, Event::Updated);
        let parsed: Json = serde_json::from_str(&out).unwrap();
        assert_eq!(parsed["t"], "Bearing \"hot\"");
        assert_eq!(parsed["d"], "line 1\nline 2");
        assert_eq!(parsed["e"], "updated");
        assert_eq!(parsed["v"], 91.5);
        assert_eq!(parsed["l"], "80°C");
        assert_eq!(parsed["n"], 2);
        assert_eq!(parsed["x"], "{nope}");
        assert_eq!(parsed["wo"]["key"], "plant/gw/pump_hot/1");
        assert_eq!(Webhook::render("{", &wo(), WO, Event::Raised), "{");
        assert_eq!(
            Webhook::render("{}{{id}}", &wo(), WO, Event::Raised),
            "{}{01J}"
        );
        assert_eq!(escape("a\u{1}b\\"), "a\\u0001b\\\\");
    }

    #[test]
    fn every_placeholder_has_a_value() {
        for name in Webhook::PLACEHOLDERS {
            assert!(
                value(name, &wo(), "{}", Event::Raised, None).is_some(),
                "{name}"
            );
        }
        let mut meter = wo();
        meter.trigger.limit = Json::Null;
        meter.trigger.threshold = serde_json::json!(500);
        assert_eq!(
            value("limit", &meter, "", Event::Raised, None).unwrap(),
            "500"
        );
    }

    #[test]
    fn the_trait_sends_the_rebuilt_json_and_update_fills_the_reference() {
        let hook = webhook(WebhookAuth::None, None);
        let req = hook.create(&wo(), Event::Raised).unwrap();
        let body: Json = serde_json::from_slice(req.body.as_deref().unwrap()).unwrap();
        assert_eq!(body["key"], "plant/gw/pump_hot/1");
        assert_eq!(body["trigger"]["value"], 91.5);
        assert_eq!(
            received::work_order(req.body.as_deref().unwrap()).unwrap(),
            wo()
        );

        let hook = webhook(WebhookAuth::None, Some(r#"{"ref":"{cmms_ref}"}"#));
        let req = hook.update(&wo(), "WH-7", Event::Closed).unwrap();
        assert_eq!(req.body.as_deref(), Some(&br#"{"ref":"WH-7"}"#[..]));
        assert_eq!(header(&req, "x-fieldgate-event"), Some("closed"));
        assert!(hook.lookup(&wo()).is_none());
        assert!(hook.status("WH-7").is_none());
    }

    #[test]
    fn hmac_matches_the_rfc_4231_vector_and_signs_the_sent_body() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let hook = webhook(
            WebhookAuth::Hmac {
                secret: Secret::new("s3cret"),
                header: "X-Fieldgate-Signature".into(),
            },
            Some(r#"{"title":"{title}"}"#),
        );
        let req = hook.create(&wo(), Event::Raised).unwrap();
        let body = req.body.clone().unwrap();
        assert_eq!(body, hook.body(&wo(), WO.as_bytes(), Event::Raised, None));
        assert_eq!(
            header(&req, "x-fieldgate-signature").unwrap(),
            sign(b"s3cret", &body).unwrap()
        );
        assert!(header(&req, "authorization").is_none());
    }

    #[test]
    fn basic_credentials_are_base64() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let hook = webhook(
            WebhookAuth::Basic {
                username: "Aladdin".into(),
                password: Secret::new("open sesame"),
            },
            None,
        );
        let req = hook.create(&wo(), Event::Raised).unwrap();
        // RFC 7617's example.
        assert_eq!(
            header(&req, "authorization"),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
    }

    #[test]
    fn no_secret_shows_in_the_debug_of_a_request() {
        for auth in [
            WebhookAuth::Bearer(Secret::new("tok-SECRET")),
            WebhookAuth::Basic {
                username: "u".into(),
                password: Secret::new("pw-SECRET"),
            },
        ] {
            let req = webhook(auth, None).create(&wo(), Event::Raised).unwrap();
            let shown = format!("{req:?}");
            assert!(!shown.contains("SECRET"), "{shown}");
            assert!(
                !shown.contains("Bearer ") && !shown.contains("Basic "),
                "{shown}"
            );
        }
    }

    #[test]
    fn answers_give_the_receivers_id_or_nothing() {
        let hook = webhook(WebhookAuth::None, None);
        let found = |body: &str| hook.read_create(&answer(201, body)).unwrap();
        assert_eq!(found(r#"{"id":"WH-1"}"#).unwrap().reference, "WH-1");
        assert_eq!(found(r#"{"number":42}"#).unwrap().reference, "42");
        assert_eq!(found(r#"{"id":"","ref":"R-9"}"#).unwrap().reference, "R-9");
        assert_eq!(
            found(r#"{"id":"WH-1"}"#).unwrap().status,
            None::<CmmsStatus>
        );
        assert!(found("").is_none());
        assert!(found("ok").is_none());
        assert!(found(r#"{"id":null}"#).is_none());
        assert!(found(r#"{"id":"a\nb"}"#).is_none());
        assert!(found(&format!(r#"{{"id":"{}"}}"#, "x".repeat(500))).is_none());
    }

    #[test]
    fn refusals_park_and_server_errors_retry_with_the_receivers_text() {
        let hook = webhook(WebhookAuth::None, None);
        assert_eq!(
            hook.read_create(&answer(422, r#"{"error":"unknown asset P-101"}"#)),
            Err(Failure::Park("HTTP 422: unknown asset P-101".into()))
        );
        assert_eq!(
            hook.read_create(&answer(400, r#"{"error":{"message":"bad"}}"#)),
            Err(Failure::Park("HTTP 400: bad".into()))
        );
        assert_eq!(
            hook.read_create(&answer(503, "down")),
            Err(Failure::Retry("HTTP 503: down".into()))
        );
        assert_eq!(
            hook.read_create(&answer(401, "")),
            Err(Failure::Park("HTTP 401".into()))
        );
    }

    #[test]
    fn methods_come_from_the_config() {
        let mut own = own(WebhookAuth::None, None);
        own.method = "put".into();
        let config = CmmsConfig {
            name: "hook".into(),
            kind: CmmsKind::Webhook(own.clone()),
            url: "http://h/x".into(),
            timeout: Duration::from_secs(10),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            poll_interval: None,
            ca_file: None,
            work_orders: true,
            assets: BTreeMap::new(),
            locations: BTreeMap::new(),
            meters: BTreeMap::new(),
            inbound: None,
        };
        let req = Webhook::new(&config, &own)
            .create(&wo(), Event::Raised)
            .unwrap();
        assert_eq!(req.method, Method::Put);
    }
}
