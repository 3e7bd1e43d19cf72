//! A fake IBM Maximo: the JSON REST API over the `mxwo` object structure
//! at `/maximo/oslc/os/mxwo` (or `/maximo/api/os/mxwo`, as Maximo
//! Application Suite also serves), as IBM's "Maximo REST API Guide"
//! describes it: the `apikey` header, `lean=1`, `oslc.select` and
//! `oslc.where` queries answered with `{"member": [...]}`, creates
//! answered 201 with the attributes the `properties` header asks for,
//! and errors as `{"Error": {"reasonCode", "message", "statusCode"}}`.
//!
//! It assumes the connector's default key field, `externalrefid`; any
//! `siteid` is taken.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{FakeCmms, Held, Recorded, State};

/// The attribute that carries fieldgate's key (the connector's default).
const KEY_FIELD: &str = "externalrefid";

/// WORKORDER.DESCRIPTION's length.
const MAX_DESCRIPTION: usize = 100;

/// Attributes of `mxwo` a create from fieldgate may set.
const KNOWN: &[&str] = &[
    "description",
    "description_longdescription",
    "assetnum",
    "location",
    "siteid",
    "worktype",
    "wopriority",
    "problemcode",
    "failurecode",
    "reportdate",
    KEY_FIELD,
];

/// Starts the fake, expecting `secret` as its API key.
pub async fn start(secret: &str) -> FakeCmms {
    let state = Arc::new(Mutex::new(State {
        secret: secret.to_owned(),
        ..State::default()
    }));
    let router = axum::Router::new()
        .fallback(handle)
        .with_state(state.clone());
    FakeCmms::serve(router, state).await
}

type Fake = Arc<Mutex<State>>;

async fn handle(
    Shared(fake): Shared<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lower: BTreeMap<String, String> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let delay = {
        let mut s = fake.lock().unwrap();
        s.requests.push(Recorded {
            method: method.to_string(),
            uri: uri.to_string(),
            headers: lower.clone(),
            body: body.to_vec(),
        });
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fake.lock().unwrap().down {
        return (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response();
    }
    let secret = fake.lock().unwrap().secret.clone();
    if lower.get("apikey") != Some(&secret) {
        return error(
            StatusCode::UNAUTHORIZED,
            "BMXAA7901E",
            "BMXAA7901E - You cannot log in at this time. Contact the system administrator.",
        );
    }
    let path = uri.path();
    if path != "/maximo/oslc/os/mxwo" && path != "/maximo/api/os/mxwo" {
        problem(&fake, format!("{method} {path}: not the mxwo collection"));
        return error(
            StatusCode::NOT_FOUND,
            "BMXAA8727E",
            "BMXAA8727E - The OSLC resource was not found.",
        );
    }
    if lower.get("accept").is_some_and(|a| !a.contains("json")) {
        problem(&fake, format!("Accept {:?} is not JSON", lower["accept"]));
    }
    let query = query_pairs(uri.query().unwrap_or_default());
    if query.get("lean").map(String::as_str) != Some("1") {
        problem(
            &fake,
            format!("{method} {uri}: without lean=1 Maximo answers namespaced JSON"),
        );
    }
    match method {
        Method::GET => find(&fake, &query),
        Method::POST => create(&fake, &lower, &body).await,
        _ => {
            problem(&fake, format!("{method} on the collection"));
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "BMXAA9368E",
                "BMXAA9368E - The method is not supported.",
            )
        }
    }
}

/// A query: the held work orders matching `oslc.where`, with the
/// attributes of `oslc.select`.
fn find(fake: &Fake, query: &BTreeMap<String, String>) -> Response {
    let Some(select) = query.get("oslc.select") else {
        problem(
            fake,
            "query without oslc.select (Maximo then answers links only)".into(),
        );
        return Json(json!({"member": []})).into_response();
    };
    let filter = query.get("oslc.where").map(String::as_str).unwrap_or("");
    let Some(terms) = parse_where(filter) else {
        problem(fake, format!("oslc.where not parsed: {filter:?}"));
        return error(
            StatusCode::BAD_REQUEST,
            "BMXAA8744E",
            "BMXAA8744E - The OSLC query was not parsed.",
        );
    };
    if terms.is_empty() {
        problem(fake, "query without oslc.where: every work order".into());
    }
    let s = fake.lock().unwrap();
    let members: Vec<Value> = s
        .created
        .iter()
        .filter(|held| {
            terms
                .iter()
                .all(|(a, v)| attribute(held, a).as_deref() == Some(v))
        })
        .map(|held| {
            let mut member = Map::new();
            for name in select.split(',') {
                if let Some(v) = attribute(held, name) {
                    member.insert(name.to_owned(), Value::String(v));
                }
            }
            member.insert(
                "href".into(),
                Value::String(format!("oslc/os/mxwo/_{}", held.reference)),
            );
            Value::Object(member)
        })
        .collect();
    Json(json!({
        "member": members,
        "href": "oslc/os/mxwo",
        "responseInfo": {"href": "oslc/os/mxwo"},
    }))
    .into_response()
}

async fn create(fake: &Fake, headers: &BTreeMap<String, String>, body: &[u8]) -> Response {
    if !headers
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        problem(
            fake,
            format!("create with Content-Type {:?}", headers.get("content-type")),
        );
    }
    let Some(properties) = headers.get("properties").cloned() else {
        problem(
            fake,
            "create without the properties header: the answer has no wonum".into(),
        );
        return StatusCode::CREATED.into_response();
    };
    let Ok(Value::Object(wo)) = serde_json::from_slice::<Value>(body) else {
        problem(fake, "create body is not a JSON object".into());
        return error(
            StatusCode::BAD_REQUEST,
            "BMXAA1234E",
            "BMXAA1234E - The JSON could not be parsed.",
        );
    };
    let deviations = check(&wo);
    if !deviations.is_empty() {
        let text = deviations.join("; ");
        problem(fake, text.clone());
        return error(
            StatusCode::BAD_REQUEST,
            "BMXAA4195E",
            &format!("BMXAA4195E - {text}"),
        );
    }
    let asset = wo["assetnum"].as_str().unwrap_or_default().to_owned();
    let swallow = {
        let mut s = fake.lock().unwrap();
        if s.unknown_assets.contains(&asset) {
            drop(s);
            // The reason code is illustrative; the shape is Maximo's.
            return error(
                StatusCode::BAD_REQUEST,
                "BMXAA0090E",
                &format!(
                    "BMXAA0090E - Asset {asset} is not a valid asset, or its status is not an operating status."
                ),
            );
        }
        let key = wo[KEY_FIELD].clone();
        if s.created.iter().any(|h| h.body[KEY_FIELD] == key) {
            s.problems
                .push(format!("a second work order created for key {key}"));
        }
        let reference = (1001 + s.created.len()).to_string();
        s.created.push(Held {
            reference: reference.clone(),
            body: Value::Object(wo),
            status: "WAPPR".into(),
        });
        if s.swallow_creates > 0 {
            s.swallow_creates -= 1;
            None
        } else {
            let held = s.created.last().cloned();
            held.map(|h| (reference, h))
        }
    };
    let Some((reference, held)) = swallow else {
        // Accepted, never answered: like a gateway killed mid-request.
        std::future::pending::<()>().await;
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut answer = Map::new();
    for name in properties.split(',').map(str::trim) {
        if name == "*" {
            if let Value::Object(all) = &held.body {
                answer.extend(all.clone());
            }
            answer.insert("wonum".into(), Value::String(held.reference.clone()));
            answer.insert("status".into(), Value::String(held.status.clone()));
        } else if let Some(v) = attribute(&held, name) {
            answer.insert(name.to_owned(), Value::String(v));
        }
    }
    let href = format!("oslc/os/mxwo/_{reference}");
    answer.insert("href".into(), Value::String(href.clone()));
    (
        StatusCode::CREATED,
        [("location", href)],
        Json(Value::Object(answer)),
    )
        .into_response()
}

/// What the create body gets wrong, by Maximo's rules and fieldgate's
/// mapping.
fn check(wo: &Map<String, Value>) -> Vec<String> {
    let mut wrong = Vec::new();
    let string = |name: &str, required: bool, wrong: &mut Vec<String>| match wo.get(name) {
        Some(Value::String(s)) if required && s.trim().is_empty() => {
            wrong.push(format!("{name} is empty"))
        }
        Some(Value::String(_)) => {}
        Some(other) => wrong.push(format!("{name} is not a string: {other}")),
        None if required => wrong.push(format!("a value is required for {name}")),
        None => {}
    };
    for name in ["siteid", "description", "assetnum", "worktype", KEY_FIELD] {
        string(name, true, &mut wrong);
    }
    for name in [
        "description_longdescription",
        "location",
        "problemcode",
        "failurecode",
        "reportdate",
    ] {
        string(name, false, &mut wrong);
    }
    if let Some(Value::String(d)) = wo.get("description")
        && d.chars().count() > MAX_DESCRIPTION
    {
        wrong.push(format!(
            "description has {} characters, more than {MAX_DESCRIPTION}",
            d.chars().count()
        ));
    }
    if let Some(p) = wo.get("wopriority")
        && !p.is_i64()
    {
        wrong.push(format!("wopriority is not an integer: {p}"));
    }
    if let Some(Value::String(d)) = wo.get("reportdate")
        && !iso_date(d)
    {
        wrong.push(format!(
            "reportdate {d:?} is not an ISO 8601 date-time with offset"
        ));
    }
    for name in wo.keys() {
        if !KNOWN.contains(&name.as_str()) {
            wrong.push(format!("{name} is not an attribute of mxwo"));
        }
    }
    wrong
}

/// `YYYY-MM-DDTHH:MM:SS` then `Z` or `±HH:MM`.
fn iso_date(text: &str) -> bool {
    let b = text.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let base = b.len() >= 20
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let zone = &text.get(19..).unwrap_or_default();
    base && (*zone == "Z"
        || (zone.len() == 6
            && (zone.starts_with('+') || zone.starts_with('-'))
            && digits(20..22)
            && zone.as_bytes()[3] == b':'
            && digits(23..25)))
}

/// A held work order's attribute as text.
fn attribute(held: &Held, name: &str) -> Option<String> {
    match name {
        "wonum" => Some(held.reference.clone()),
        "status" => Some(held.status.clone()),
        _ => match held.body.get(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        },
    }
}

/// `attr="value" and attr="value"`, values with backslash escapes;
/// `None` when it does not parse.
fn parse_where(filter: &str) -> Option<Vec<(String, String)>> {
    let mut terms = Vec::new();
    let mut rest = filter.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        let mut chars = rest[eq + 1..].char_indices();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?.1),
                '"' => {
                    end = Some(eq + 1 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        terms.push((name.to_owned(), value));
        rest = rest[end?..].trim_start();
        if !rest.is_empty() {
            rest = rest.strip_prefix("and ")?.trim_start();
        }
    }
    Some(terms)
}

/// The query's parameters, percent-decoded.
fn query_pairs(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16);
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%')
            .then(|| Some(hex(*b.get(i + 1)?)? * 16 + hex(*b.get(i + 2)?)?))
            .flatten();
        match (escaped, b[i]) {
            (Some(v), _) => {
                out.push(v as u8);
                i += 3;
            }
            (None, b'+') => {
                out.push(b' ');
                i += 1;
            }
            (None, c) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn problem(fake: &Fake, text: String) {
    fake.lock().unwrap().problems.push(text);
}

/// Maximo's error answer (lean JSON).
fn error(status: StatusCode, reason: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"Error": {
            "reasonCode": reason,
            "message": message,
            "statusCode": status.as_u16().to_string(),
        }})),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_clauses_parse() {
        assert_eq!(
            parse_where(r#"externalrefid="a \"b\"\\c" and siteid="BEDFORD""#).unwrap(),
            vec![
                ("externalrefid".to_owned(), r#"a "b"\c"#.to_owned()),
                ("siteid".to_owned(), "BEDFORD".to_owned())
            ]
        );
        assert!(parse_where(r#"wonum=1"#).is_none());
        assert!(parse_where(r#"wonum="1" or siteid="x""#).is_none());
        assert!(iso_date("2026-12-07T08:00:00+00:00"));
        assert!(iso_date("2026-12-07T08:00:00Z"));
        assert!(!iso_date("2026-12-07T08:00:00.123Z"));
        assert_eq!(decode("a%20b%2C%22"), "a b,\"");
    }
}
