//! The fake MaintainX (REST API v1), as its OpenAPI document describes
//! it: `POST /v1/workorders` (`title` required, `priority` one of `NONE`,
//! `LOW`, `MEDIUM`, `HIGH`, `assetId`/`locationId` integers, `type` one of
//! `OTHER`, `REACTIVE`, `PREVENTIVE`, `externalData` an object, number or
//! string, nothing outside the documented fields) answering `200 {"id"}`
//! with ids from 1000 up; `GET /v1/workorders/{id}` answering
//! `{"workOrder": {...}}`; `GET /v1/workorders` (`getWorkorders`) with the
//! documented query parameters (`title`, `assets`, `locations`, `statuses`
//! filter the held work orders, `sort` orders them, `limit` from 1 to 200;
//! any other parameter the reference lists is recorded as not simulated,
//! an unknown one is refused), answering `{"workOrders": [...],
//! "nextCursor"}` with the fields the reference lists for a listed work
//! order (`description` among them, not `externalData`); how MaintainX
//! matches `title` is not documented, the fake matches it whole;
//! `POST /v1/meterreadings` taking an array of
//! `{"meterId", "value", "readingDate"}` and answering 201. Errors as
//! MaintainX gives them: 401 with no body, `{"errors": [{"error",
//! "fieldPath", "fieldValue"}]}` for a refused body, `{"error"}` for a
//! missing resource.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

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

/// The fields the create takes (`postWorkorders`).
const CREATE_FIELDS: &[&str] = &[
    "assetId",
    "assignees",
    "estimatedTime",
    "requesterId",
    "workRequestId",
    "workOrderTemplateId",
    "categories",
    "description",
    "dueDate",
    "externalData",
    "isParent",
    "startDate",
    "locationId",
    "priority",
    "procedure",
    "procedureTemplateId",
    "repeatability",
    "skipRestHook",
    "title",
    "type",
    "extraFields",
    "vendorIds",
    "partsUsed",
    "parentId",
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
            return errors(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", None);
        }
        // The reference: `Authorization: bearer {token}` (scheme in any case).
        let expected = s.secret.clone();
        let authorized = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, token)| {
                scheme.eq_ignore_ascii_case("bearer") && token == expected
            });
        if !authorized {
            // MaintainX's "Invalid token": 401, no body.
            return (
                StatusCode::UNAUTHORIZED,
                [(header::CONTENT_TYPE, "text/plain")],
                "",
            )
                .into_response();
        }
        check_accept(&mut s, &headers);
        match (method.clone(), path.as_str()) {
            (Method::POST, "/v1/workorders") => match create(&mut s, &headers, &body) {
                Created::Answer(response) => return response,
                Created::Swallowed => true,
            },
            (Method::POST, "/v1/meterreadings") => return meter_readings(&mut s, &headers, &body),
            (Method::GET, "/v1/workorders") => return list(&mut s, uri.query(), &body),
            (Method::GET, p) if p.starts_with("/v1/workorders/") => {
                return get(&mut s, &p["/v1/workorders/".len()..], &body);
            }
            _ => {
                s.problems.push(format!(
                    "{method} {path}: not a MaintainX endpoint the connector uses"
                ));
                return (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": "Not Found"})),
                )
                    .into_response();
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
    check_json_content_type(s, headers, "POST /v1/workorders");
    let doc: Value = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        Err(e) => {
            s.problems
                .push(format!("POST /v1/workorders: body is not JSON: {e}"));
            return Created::Answer(errors(StatusCode::BAD_REQUEST, "Invalid JSON", None));
        }
    };
    let found = create_problems(&doc);
    if !found.is_empty() {
        let first = found[0].clone();
        s.problems.extend(
            found
                .into_iter()
                .map(|p| format!("POST /v1/workorders: {p}")),
        );
        return Created::Answer(errors(StatusCode::BAD_REQUEST, &first, None));
    }
    // An asset MaintainX does not know: the field error shape (the exact
    // text MaintainX gives is not documented).
    if let Some(asset) = doc.get("assetId").filter(|a| !a.is_null())
        && s.unknown_assets.contains(&asset.to_string())
    {
        return Created::Answer(errors(
            StatusCode::BAD_REQUEST,
            "Asset not found",
            Some(("assetId", asset.clone())),
        ));
    }
    let id = 1000 + s.created.len() as u64;
    s.created.push(Held {
        reference: id.to_string(),
        body: doc,
        status: "OPEN".to_owned(),
    });
    if s.swallow_creates > 0 {
        s.swallow_creates -= 1;
        return Created::Swallowed;
    }
    Created::Answer((StatusCode::OK, axum::Json(json!({ "id": id }))).into_response())
}

/// Deviations of a create body from the reference.
fn create_problems(doc: &Value) -> Vec<String> {
    let mut found = Vec::new();
    let Some(fields) = doc.as_object() else {
        return vec!["the body is not a JSON object".to_owned()];
    };
    for name in fields.keys() {
        if !CREATE_FIELDS.contains(&name.as_str()) {
            found.push(format!("field {name:?} is not in the reference"));
        }
    }
    match doc.get("title") {
        Some(Value::String(t)) if !t.trim().is_empty() => {}
        other => found.push(format!("title must be a non-empty string, is {other:?}")),
    }
    if let Some(d) = doc.get("description")
        && !(d.is_string() || d.is_null())
    {
        found.push(format!("description must be a string, is {d}"));
    }
    if let Some(p) = doc.get("priority")
        && !matches!(p.as_str(), Some("NONE" | "LOW" | "MEDIUM" | "HIGH"))
    {
        found.push(format!(
            "priority must be NONE, LOW, MEDIUM or HIGH, is {p}"
        ));
    }
    if let Some(t) = doc.get("type")
        && !matches!(t.as_str(), Some("OTHER" | "REACTIVE" | "PREVENTIVE"))
    {
        found.push(format!(
            "type must be OTHER, REACTIVE or PREVENTIVE, is {t}"
        ));
    }
    for name in ["assetId", "locationId"] {
        if let Some(v) = doc.get(name)
            && !(v.is_i64() || v.is_u64() || v.is_null())
        {
            found.push(format!("{name} must be an integer, is {v}"));
        }
    }
    if let Some(e) = doc.get("externalData")
        && !(e.is_object() || e.is_number() || e.is_string())
    {
        found.push(format!(
            "externalData must be an object, number or string, is {e}"
        ));
    }
    if let Some(c) = doc.get("categories")
        && !c.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        found.push(format!("categories must be an array of strings, is {c}"));
    }
    if let Some(x) = doc.get("extraFields")
        && !x
            .as_object()
            .is_some_and(|o| o.values().all(Value::is_string))
    {
        found.push(format!("extraFields must map labels to strings, is {x}"));
    }
    found
}

fn get(s: &mut State, id: &str, body: &[u8]) -> Response {
    if !body.is_empty() {
        s.problems
            .push(format!("GET /v1/workorders/{id}: a GET with a body"));
    }
    if id.parse::<u64>().is_err() {
        s.problems
            .push(format!("GET /v1/workorders/{id}: the id is not an integer"));
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "id must be an integer"})),
        )
            .into_response();
    }
    let Some(held) = s.created.iter().find(|h| h.reference == id) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Not Found."})),
        )
            .into_response();
    };
    let id: u64 = id.parse().unwrap_or_default();
    let order = json!({
        "id": id,
        "sequentialId": id - 999,
        "organizationId": 1,
        "creatorId": 1,
        "title": held.body.get("title").cloned().unwrap_or(Value::Null),
        "description": held.body.get("description").cloned().unwrap_or(Value::Null),
        "priority": held.body.get("priority").cloned().unwrap_or(json!("NONE")),
        "assetId": held.body.get("assetId").cloned().unwrap_or(Value::Null),
        "locationId": held.body.get("locationId").cloned().unwrap_or(Value::Null),
        "externalData": held.body.get("externalData").cloned().unwrap_or(Value::Null),
        "status": held.status,
        "createdAt": "2026-12-07T08:00:00.000Z",
        "updatedAt": "2026-12-07T08:00:00.000Z",
    });
    (StatusCode::OK, axum::Json(json!({ "workOrder": order }))).into_response()
}

/// The query parameters `getWorkorders` documents.
const LIST_PARAMS: &[&str] = &[
    "cursor",
    "limit",
    "title",
    "assets",
    "notAssets",
    "locations",
    "notLocations",
    "parts",
    "notParts",
    "vendors",
    "notVendors",
    "assignees",
    "teams",
    "categories",
    "notCategories",
    "priorities",
    "statuses",
    "partStatuses",
    "parentSubWorkOrderTypes",
    "show_upcoming",
    "updatedAt[gte]",
    "updatedAt[lte]",
    "createdAt[gte]",
    "createdAt[lte]",
    "sort",
    "expand",
];

/// The values of `sort`.
const SORTS: &[&str] = &[
    "updatedAt",
    "createdAt",
    "dueDate",
    "startedAt",
    "completedAt",
    "-updatedAt",
    "-createdAt",
    "-dueDate",
    "-startedAt",
    "-completedAt",
];

/// The values of `statuses`.
const STATUSES: &[&str] = &[
    "OPEN",
    "IN_PROGRESS",
    "ON_HOLD",
    "DONE",
    "CANCELED",
    "SKIPPED",
];

/// `createdAt` of the `index`-th work order held: one second apart.
fn created_at(index: usize) -> String {
    format!(
        "2026-12-07T08:{:02}:{:02}.000Z",
        (index / 60) % 60,
        index % 60
    )
}

/// `GET /v1/workorders`: the held work orders the query selects.
fn list(s: &mut State, query: Option<&str>, body: &[u8]) -> Response {
    // A query MaintainX refuses: 400 `{"error"}`.
    fn refuse(s: &mut State, text: String) -> Response {
        s.problems.push(format!("GET /v1/workorders: {text}"));
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": text })),
        )
            .into_response()
    }
    if !body.is_empty() {
        s.problems
            .push("GET /v1/workorders: a GET with a body".to_owned());
    }
    let pairs = match query_pairs(query.unwrap_or_default()) {
        Ok(pairs) => pairs,
        Err(e) => return refuse(s, e),
    };
    let mut title = None;
    let mut assets = Vec::new();
    let mut locations = Vec::new();
    let mut statuses = Vec::new();
    let mut limit = 100usize;
    let mut newest_first = false;
    for (name, value) in pairs {
        match name.as_str() {
            "title" => title = Some(value),
            "assets" | "locations" => match value.parse::<i64>() {
                Ok(id) if name == "assets" => assets.push(id),
                Ok(id) => locations.push(id),
                Err(_) => return refuse(s, format!("{name} must be integers, is {value:?}")),
            },
            "statuses" if STATUSES.contains(&value.as_str()) => statuses.push(value),
            "statuses" => return refuse(s, format!("statuses: {value:?} is not a status")),
            "limit" => match value.parse::<usize>() {
                Ok(n) if (1..=200).contains(&n) => limit = n,
                _ => return refuse(s, format!("limit must be from 1 to 200, is {value:?}")),
            },
            "sort" if SORTS.contains(&value.as_str()) => newest_first = value == "-createdAt",
            "sort" => return refuse(s, format!("sort: {value:?} is not a sort")),
            n if LIST_PARAMS.contains(&n) => s.problems.push(format!(
                "GET /v1/workorders: {n} is documented but the fake does not simulate it"
            )),
            n => return refuse(s, format!("{n} is not a parameter of getWorkorders")),
        }
    }
    let mut selected: Vec<(usize, &Held)> = s
        .created
        .iter()
        .enumerate()
        .filter(|(_, h)| {
            title
                .as_deref()
                .is_none_or(|t| h.body.get("title").and_then(Value::as_str) == Some(t))
        })
        .filter(|(_, h)| {
            assets.is_empty()
                || h.body
                    .get("assetId")
                    .and_then(Value::as_i64)
                    .is_some_and(|a| assets.contains(&a))
        })
        .filter(|(_, h)| {
            locations.is_empty()
                || h.body
                    .get("locationId")
                    .and_then(Value::as_i64)
                    .is_some_and(|l| locations.contains(&l))
        })
        .filter(|(_, h)| statuses.is_empty() || statuses.contains(&h.status))
        .collect();
    if newest_first {
        selected.reverse();
    }
    let orders: Vec<Value> = selected
        .into_iter()
        .take(limit)
        .map(|(index, held)| {
            let id: u64 = held.reference.parse().unwrap_or_default();
            json!({
                "id": id,
                "sequentialId": id.saturating_sub(999),
                "title": held.body.get("title").cloned().unwrap_or(Value::Null),
                "description": held.body.get("description").cloned().unwrap_or(Value::Null),
                "priority": held.body.get("priority").cloned().unwrap_or(json!("NONE")),
                "locationId": held.body.get("locationId").cloned().unwrap_or(Value::Null),
                "type": held.body.get("type").cloned().unwrap_or(Value::Null),
                "status": held.status,
                "createdAt": created_at(index),
                "updatedAt": created_at(index),
            })
        })
        .collect();
    (
        StatusCode::OK,
        axum::Json(json!({ "workOrders": orders, "nextCursor": null })),
    )
        .into_response()
}

/// The decoded `name=value` pairs of a query, in order (`+` is a space,
/// `%XX` a byte).
pub(super) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(text: &str) -> Result<String, String> {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = text
                        .get(i + 1..i + 3)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad percent-encoding in {text:?}"))?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| format!("{text:?} is not UTF-8 once decoded"))
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(name)?, decode(value)?))
        })
        .collect()
}

fn meter_readings(s: &mut State, headers: &HeaderMap, body: &[u8]) -> Response {
    check_json_content_type(s, headers, "POST /v1/meterreadings");
    let doc: Value = match serde_json::from_slice(body) {
        Ok(doc) => doc,
        Err(e) => {
            s.problems
                .push(format!("POST /v1/meterreadings: body is not JSON: {e}"));
            return errors(StatusCode::BAD_REQUEST, "Invalid JSON", None);
        }
    };
    let Some(readings) = doc.as_array() else {
        s.problems
            .push("POST /v1/meterreadings: the body must be an array of readings".to_owned());
        return errors(StatusCode::BAD_REQUEST, "body must be an array", None);
    };
    let mut found = Vec::new();
    for (i, r) in readings.iter().enumerate() {
        match r.get("meterId") {
            Some(id) if id.is_number() => {}
            other => found.push(format!("[{i}].meterId must be a number, is {other:?}")),
        }
        match r.get("value") {
            Some(v) if v.is_number() => {}
            other => found.push(format!("[{i}].value must be a number, is {other:?}")),
        }
        if let Some(d) = r.get("readingDate")
            && !(d.is_string() || d.is_null())
        {
            found.push(format!("[{i}].readingDate must be a string, is {d}"));
        }
        if let Some(o) = r.as_object() {
            for name in o.keys() {
                if !["meterId", "value", "readingDate"].contains(&name.as_str()) {
                    found.push(format!("[{i}]: field {name:?} is not in the reference"));
                }
            }
        }
    }
    if !found.is_empty() {
        let first = found[0].clone();
        s.problems.extend(
            found
                .into_iter()
                .map(|p| format!("POST /v1/meterreadings: {p}")),
        );
        return errors(StatusCode::BAD_REQUEST, &first, None);
    }
    let mut answered = Vec::new();
    for r in readings {
        let meter = r.get("meterId").map(Value::to_string).unwrap_or_default();
        s.meter_readings.push((meter, r.clone()));
        let mut r = r.clone();
        r["createdAt"] = json!("2026-12-07T08:00:01.000Z");
        answered.push(r);
    }
    (StatusCode::CREATED, axum::Json(Value::Array(answered))).into_response()
}

fn check_json_content_type(s: &mut State, headers: &HeaderMap, what: &str) {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/json") {
        s.problems.push(format!(
            "{what}: Content-Type is {content_type:?}, not application/json"
        ));
    }
}

fn check_accept(s: &mut State, headers: &HeaderMap) {
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
        && !(accept.contains("application/json") || accept.contains("*/*"))
    {
        s.problems
            .push(format!("Accept is {accept:?}: MaintainX answers JSON"));
    }
}

/// MaintainX's error shape for a refused body.
fn errors(status: StatusCode, text: &str, field: Option<(&str, Value)>) -> Response {
    let mut error = json!({ "error": text });
    if let Some((path, value)) = field {
        error["fieldPath"] = json!(path);
        error["fieldValue"] = value;
    }
    (status, axum::Json(json!({ "errors": [error] }))).into_response()
}
