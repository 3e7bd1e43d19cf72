//! The fake UpKeep (REST API v2), as its reference and the integrations
//! that implement it describe it: a `Session-Token` header on every
//! request; `POST /api/v2/work-orders/` with `title` (a non-empty
//! string), `priority` (an integer 0–3), `asset`/`location` (string ids)
//! and nothing outside the create's fields (`assetId`/`locationId` are the
//! answer's names, not the create's), answering `{"success": true,
//! "result": {...}}` with string ids; `GET /api/v2/work-orders/{id}` with
//! the held `status` (`open`, `onHold`, `inProgress`, `complete`);
//! `GET /api/v2/work-orders` answering `{"success": true, "results":
//! [...]}`, newest first (the default a published wrapper of the API
//! documents), filtered by `title` (whole), `asset` and `location`, cut at
//! `limit` after `offset`. UpKeep's reference for the list could not be
//! read: the parameters taken are those public clients send (`limit`,
//! `offset`, `location`, `isComplete`) and those the wrapper lists
//! (`title`, `asset`, `status`, `category`, `priority`, `includes`); the
//! ones not simulated are recorded, any other is refused. Errors are
//! `{"success": false, "message": "..."}`.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::maintainx::query_pairs;
use super::{FakeCmms, Held, Recorded, State};

/// Starts the fake, expecting `secret` as its credential.
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

/// The fields the create takes.
const CREATE_FIELDS: &[&str] = &[
    "title",
    "description",
    "priority",
    "category",
    "dueDate",
    "asset",
    "location",
    "assignedToUser",
    "additionalUsers",
    "team",
    "parts",
    "respectivePartQuantityUsed",
    "decreaseInventory",
    "time",
    "cost",
];

async fn handle(
    Shared(state): Shared<Arc<Mutex<State>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let delay = {
        let mut s = state.lock().unwrap();
        s.requests.push(Recorded {
            method: method.to_string(),
            uri: uri.to_string(),
            headers: headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: body.to_vec(),
        });
        s.delay
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let path = uri.path().to_owned();
    let swallow = {
        let mut s = state.lock().unwrap();
        if s.down {
            return refused(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        }
        let token = headers
            .get("session-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if token != s.secret {
            return refused(StatusCode::UNAUTHORIZED, "Invalid session token");
        }
        match (method.clone(), path.as_str()) {
            (Method::POST, "/api/v2/work-orders/" | "/api/v2/work-orders") => {
                match create(&mut s, &headers, &body) {
                    Created::Answer(response) => return response,
                    Created::Swallowed => true,
                }
            }
            (Method::GET, "/api/v2/work-orders" | "/api/v2/work-orders/") => {
                return list(&mut s, uri.query(), &body);
            }
            (Method::GET, p) if p.starts_with("/api/v2/work-orders/") => {
                return get(&mut s, &p["/api/v2/work-orders/".len()..], &body);
            }
            _ => {
                s.problems.push(format!(
                    "{method} {path}: not an UpKeep endpoint the connector uses"
                ));
                return refused(StatusCode::NOT_FOUND, "Not found");
            }
        }
    };
    if swallow {
        // Held, and never answered: the connection stays open until the
        // test ends.
        std::future::pending::<()>().await;
    }
    StatusCode::INTERNAL_SERVER_ERROR.into_response()
}

enum Created {
    Answer(Response),
    Swallowed,
}

fn create(s: &mut State, headers: &HeaderMap, body: &[u8]) -> Created {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        s.problems.push(format!(
            "POST /api/v2/work-orders/: Content-Type is {content_type:?}, not application/json"
        ));
    }
    let doc: Value = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        Err(e) => {
            s.problems
                .push(format!("POST /api/v2/work-orders/: body is not JSON: {e}"));
            return Created::Answer(refused(StatusCode::BAD_REQUEST, "Invalid JSON"));
        }
    };
    let found = create_problems(&doc);
    if !found.is_empty() {
        let first = found[0].clone();
        s.problems.extend(
            found
                .into_iter()
                .map(|p| format!("POST /api/v2/work-orders/: {p}")),
        );
        return Created::Answer(refused(StatusCode::BAD_REQUEST, &first));
    }
    if let Some(asset) = doc.get("asset").and_then(Value::as_str)
        && s.unknown_assets.iter().any(|u| u == asset)
    {
        return Created::Answer(refused(
            StatusCode::BAD_REQUEST,
            &format!("Asset {asset} does not exist"),
        ));
    }
    // UpKeep's ids: ten letters and digits.
    let id = format!("Wo{:08}", s.created.len() + 1);
    s.created.push(Held {
        reference: id.clone(),
        body: doc.clone(),
        status: "open".to_owned(),
    });
    if s.swallow_creates > 0 {
        s.swallow_creates -= 1;
        return Created::Swallowed;
    }
    let mut result = doc;
    result["id"] = json!(id);
    result["status"] = json!("open");
    result["createdAt"] = json!("2026-12-07T08:00:00.000Z");
    result["updatedAt"] = json!("2026-12-07T08:00:00.000Z");
    Created::Answer(
        (
            StatusCode::OK,
            axum::Json(json!({"success": true, "result": result})),
        )
            .into_response(),
    )
}

/// Deviations of a create body from the reference.
fn create_problems(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let Some(fields) = doc.as_object() else {
        return vec!["the body is not a JSON object".to_owned()];
    };
    for name in fields.keys() {
        match name.as_str() {
            "assetId" | "locationId" => found.push(format!(
                "field {name:?}: the create takes \"asset\" / \"location\""
            )),
            n if !CREATE_FIELDS.contains(&n) => {
                found.push(format!("field {name:?} is not in the reference"))
            }
            _ => {}
        }
    }
    match doc.get("title") {
        Some(Value::String(t)) if !t.trim().is_empty() => {}
        other => found.push(format!("title must be a non-empty string, is {other:?}")),
    }
    if let Some(p) = doc.get("priority")
        && p.as_u64().is_none_or(|p| p > 3)
    {
        found.push(format!("priority must be an integer from 0 to 3, is {p}"));
    }
    for name in ["description", "asset", "location", "category"] {
        if let Some(v) = doc.get(name)
            && !v.is_string()
        {
            found.push(format!("{name} must be a string, is {v}"));
        }
    }
    found
}

fn get(s: &mut State, id: &str, body: &[u8]) -> Response {
    if !body.is_empty() {
        s.problems
            .push(format!("GET /api/v2/work-orders/{id}: a GET with a body"));
    }
    let Some(held) = s.created.iter().find(|h| h.reference == id) else {
        return refused(StatusCode::NOT_FOUND, "Work order not found");
    };
    let mut result = held.body.clone();
    result["id"] = json!(held.reference);
    result["status"] = json!(held.status);
    result["createdAt"] = json!("2026-12-07T08:00:00.000Z");
    result["updatedAt"] = json!("2026-12-07T08:00:00.000Z");
    (
        StatusCode::OK,
        axum::Json(json!({"success": true, "result": result})),
    )
        .into_response()
}

/// The list's parameters the fake knows of but does not simulate.
const LIST_PARAMS_NOT_SIMULATED: &[&str] =
    &["isComplete", "status", "category", "priority", "includes"];

/// `GET /api/v2/work-orders`: the held work orders the query selects,
/// newest first.
fn list(s: &mut State, query: Option<&str>, body: &[u8]) -> Response {
    fn refuse(s: &mut State, text: String) -> Response {
        s.problems.push(format!("GET /api/v2/work-orders: {text}"));
        refused(StatusCode::BAD_REQUEST, &text)
    }
    if !body.is_empty() {
        s.problems
            .push("GET /api/v2/work-orders: a GET with a body".to_owned());
    }
    let pairs = match query_pairs(query.unwrap_or_default()) {
        Ok(pairs) => pairs,
        Err(e) => return refuse(s, e),
    };
    let (mut title, mut asset, mut location) = (None, None, None);
    let (mut limit, mut offset) = (100usize, 0usize);
    for (name, value) in pairs {
        match name.as_str() {
            "title" => title = Some(value),
            "asset" => asset = Some(value),
            "location" => location = Some(value),
            "limit" | "offset" => match value.parse::<usize>() {
                Ok(n) if name == "offset" => offset = n,
                Ok(n) if n > 0 => limit = n,
                _ => {
                    return refuse(
                        s,
                        format!("{name} must be a positive integer, is {value:?}"),
                    );
                }
            },
            n if LIST_PARAMS_NOT_SIMULATED.contains(&n) => s.problems.push(format!(
                "GET /api/v2/work-orders: the fake does not simulate {n}"
            )),
            n => return refuse(s, format!("{n} is not a known parameter of the list")),
        }
    }
    let field = |h: &Held, name: &str| h.body.get(name).and_then(Value::as_str).map(str::to_owned);
    let results: Vec<Value> = s
        .created
        .iter()
        .rev()
        .filter(|h| title.is_none() || field(h, "title") == title)
        .filter(|h| asset.is_none() || field(h, "asset") == asset)
        .filter(|h| location.is_none() || field(h, "location") == location)
        .skip(offset)
        .take(limit)
        .map(|held| {
            let mut result = held.body.clone();
            result["id"] = json!(held.reference);
            result["status"] = json!(held.status);
            result["createdAt"] = json!("2026-12-07T08:00:00.000Z");
            result["updatedAt"] = json!("2026-12-07T08:00:00.000Z");
            result
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({"success": true, "results": results})),
    )
        .into_response()
}

/// UpKeep's error shape.
fn refused(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"success": false, "message": message})),
    )
        .into_response()
}
