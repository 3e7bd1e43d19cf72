//! A fake webhook receiver, as a careful one is written: it checks the
//! credentials (`Authorization: Bearer <secret>`, `Basic` with the secret
//! as password, or `X-Fieldgate-Signature: sha256=<hex HMAC-SHA256 of
//! the body>` keyed with the secret), fieldgate's headers, and that a
//! JSON body is JSON; it keeps every `Idempotency-Key` it accepted and
//! answers a repeat with the first answer's id instead of taking the work
//! order twice. New work orders get `{"id": "WH-<n>"}` (201).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{FakeCmms, Held, Recorded, State};

#[derive(Clone)]
struct Fake {
    state: Arc<Mutex<State>>,
    /// Idempotency-Key → the id answered.
    seen: Arc<Mutex<BTreeMap<String, String>>>,
}

/// Starts the fake, expecting `secret` as its credential (an empty one:
/// no credentials expected).
pub async fn start(secret: &str) -> FakeCmms {
    let state = Arc::new(Mutex::new(State {
        secret: secret.to_owned(),
        ..State::default()
    }));
    let fake = Fake {
        state: state.clone(),
        seen: Arc::default(),
    };
    let router = axum::Router::new().fallback(handle).with_state(fake);
    FakeCmms::serve(router, state).await
}

async fn handle(
    Shared(fake): Shared<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h: BTreeMap<String, String> = headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let (delay, secret) = {
        let mut s = fake.state.lock().unwrap();
        s.requests.push(Recorded {
            method: method.to_string(),
            uri: uri.to_string(),
            headers: h.clone(),
            body: body.to_vec(),
        });
        (s.delay, s.secret.clone())
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if fake.state.lock().unwrap().down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "maintenance"})),
        )
            .into_response();
    }
    let problem = |text: String| fake.state.lock().unwrap().problems.push(text);
    if !matches!(method, Method::POST | Method::PUT | Method::PATCH) {
        problem(format!(
            "{method} {uri}: a webhook delivery is POST, PUT or PATCH"
        ));
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if !secret.is_empty() {
        match authenticated(&h, &secret, &body) {
            Ok(true) => {}
            Ok(false) => {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": "invalid credentials"})),
                )
                    .into_response();
            }
            Err(deviation) => {
                problem(deviation.clone());
                return (StatusCode::UNAUTHORIZED, Json(json!({"error": deviation})))
                    .into_response();
            }
        }
    }
    for deviation in header_deviations(&h) {
        problem(deviation);
    }
    let json_body = h
        .get("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    let parsed = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v,
        Err(e) if json_body => {
            problem(format!("Content-Type is JSON but the body is not: {e}"));
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": "invalid JSON"})),
            )
                .into_response();
        }
        Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
    };
    if let Some(asset) = parsed.get("asset").and_then(Value::as_str)
        && fake
            .state
            .lock()
            .unwrap()
            .unknown_assets
            .iter()
            .any(|a| a == asset)
    {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"error": format!("unknown asset {asset}")})),
        )
            .into_response();
    }
    let key = h.get("idempotency-key").cloned().unwrap_or_default();
    let (id, swallow) = {
        let mut seen = fake.seen.lock().unwrap();
        if let Some(id) = seen.get(&key).filter(|_| !key.is_empty()) {
            return (StatusCode::OK, Json(json!({"id": id}))).into_response();
        }
        let mut s = fake.state.lock().unwrap();
        let id = format!("WH-{}", s.created.len() + 1);
        s.created.push(Held {
            reference: id.clone(),
            body: parsed,
            status: "received".into(),
        });
        seen.insert(key, id.clone());
        let swallow = s.swallow_creates > 0;
        if swallow {
            s.swallow_creates -= 1;
        }
        (id, swallow)
    };
    if swallow {
        // Taken, never answered: like a gateway killed mid-request.
        std::future::pending::<()>().await;
    }
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

/// Whether the request carries the secret: `Ok(false)` for wrong or
/// missing credentials (a configuration mistake, answered 401),
/// `Err` for a malformed credential header (a fieldgate bug).
fn authenticated(h: &BTreeMap<String, String>, secret: &str, body: &[u8]) -> Result<bool, String> {
    if let Some(signature) = h.get("x-fieldgate-signature") {
        let hex = signature
            .strip_prefix("sha256=")
            .filter(|x| {
                x.len() == 64
                    && x.bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            .ok_or_else(|| format!("signature {signature:?} is not sha256=<64 lowercase hex>"))?;
        let digest: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        return Ok(mac.verify_slice(&digest).is_ok());
    }
    match h.get("authorization") {
        None => Ok(false),
        Some(a) if a.starts_with("Bearer ") => Ok(a["Bearer ".len()..] == *secret),
        Some(a) if a.starts_with("Basic ") => {
            let pair = base64_decode(&a["Basic ".len()..])
                .ok_or_else(|| format!("Basic credentials {a:?} are not base64"))?;
            let pair = String::from_utf8(pair)
                .map_err(|_| "Basic credentials are not UTF-8".to_owned())?;
            let (_, password) = pair
                .split_once(':')
                .ok_or_else(|| "Basic credentials without ':'".to_owned())?;
            Ok(password == secret)
        }
        Some(a) => Err(format!(
            "Authorization {:?} is neither Bearer nor Basic",
            a.split(' ').next()
        )),
    }
}

/// fieldgate's own headers, as its documentation promises them.
fn header_deviations(h: &BTreeMap<String, String>) -> Vec<String> {
    let mut wrong = Vec::new();
    let event = h.get("x-fieldgate-event").map(String::as_str);
    if !matches!(event, Some("raised" | "updated" | "closed")) {
        wrong.push(format!("X-Fieldgate-Event is {event:?}"));
    }
    let key = h
        .get("x-fieldgate-key")
        .map(String::as_str)
        .unwrap_or_default();
    if key.is_empty() {
        wrong.push("no X-Fieldgate-Key".into());
    }
    let idempotency = h
        .get("idempotency-key")
        .map(String::as_str)
        .unwrap_or_default();
    let expected_prefix = format!("{key}:{}:", event.unwrap_or_default());
    match idempotency.strip_prefix(&expected_prefix) {
        Some(n) if n.parse::<u64>().is_ok_and(|n| n >= 1) => {}
        _ => wrong.push(format!(
            "Idempotency-Key {idempotency:?} is not <key>:<event>:<occurrences>"
        )),
    }
    if !h
        .get("user-agent")
        .is_some_and(|u| u.starts_with("fieldgate/"))
    {
        wrong.push(format!("User-Agent is {:?}", h.get("user-agent")));
    }
    if !h.contains_key("content-type") {
        wrong.push("no Content-Type".into());
    }
    wrong
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::new();
    for chunk in text.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len().saturating_sub(1)]);
    }
    Some(out)
}
