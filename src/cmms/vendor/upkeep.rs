//! UpKeep, REST API v2: work orders and their status.
//!
//! Follows UpKeep's public API reference, `https://developers.onupkeep.com`
//! (API v2; the stored copy read in 2026 lists API versions up to
//! 2022-09-14). Of it, the "Authentication" section was read in full: every
//! request carries a `Session-Token` header (a token from
//! `POST /api/v2/auth`, which the user does once, outside fieldgate), and
//! answers are `{"success": true, "result": {...}}`. Its "Work Orders"
//! section could not be read whole; what this file relies on from it was
//! taken from integrations that implement that section and cite it
//! (Pipedream's UpKeep "Create Work Order" action, which links
//! `developers.onupkeep.com/#create-a-work-order`, and other public
//! clients), and from UpKeep's earlier published reference:
//!
//! * `POST /api/v2/work-orders/`: `title` (required), `description`,
//!   `priority` (an integer: 0 none/lowest, 1 low, 2 medium, 3 high),
//!   `asset` and `location` (UpKeep's string ids, under these names on the
//!   create; answers carry `assetId`/`locationId`), `category`, `dueDate`,
//!   `assignedToUser`… The answer's `result.id` is the work order's id.
//! * `GET /api/v2/work-orders/{id}`: `result.status`, one of `open`,
//!   `onHold`, `inProgress`, `complete`.
//! * Errors: `{"success": false, "message": "..."}`.
//!
//! Choices, and what could not be verified against a live UpKeep:
//!
//! * fieldgate's four priorities map to 1, 2, 3 and 3: UpKeep's highest is
//!   3 (high), and 0 ("none") fits no fieldgate work order.
//! * The work-order key goes in the description: no custom fields on a
//!   work-order create were found documented, and a `category` must be one
//!   the account configured, so none is sent.
//! * The lookup before a create (a create whose answer was lost, by a
//!   timeout or a gateway killed mid-request, must not be made twice):
//!   `GET /api/v2/work-orders` answers `{"success": true, "results":
//!   [...]}` (as every public client reads it). Nothing fieldgate writes
//!   can be searched for, so the list is narrowed and the answer's work
//!   orders are searched for the `fieldgate key: <key>` line of their
//!   description. Narrowed by `title` (exact, as a published wrapper of
//!   the API documents it), the mapped `asset` or else the mapped
//!   `location` (under the names the create takes; public clients filter
//!   by `location`), and `limit=100` (public clients send `limit` and
//!   `offset`). Which of these
//!   filters UpKeep's own reference lists could not be read: one it does
//!   not know only widens the answer, the key decides. No sort is sent:
//!   the wrapper documents newest first as the default, and the name and
//!   form of a sort parameter could not be confirmed; only the first page
//!   is read (no `offset`), so a work order older than the 100 newest with
//!   its title and asset (or location) is not found. A technician who renamed
//!   the work order or moved it before the retry defeats the lookup: it is
//!   created again. Several work orders with the key (an earlier
//!   duplicate): the last listed is taken (the first created, newest
//!   first).
//! * No meter readings: a public client posts `{"value"}` to
//!   `/api/v2/meters/{id}/readings`, but the reference's "Meters" section
//!   could not be read to confirm it, so UpKeep connectors take none.
//! * UpKeep has no cancelled status; a work order deleted in UpKeep
//!   answers the status poll with an error, not a status. Status texts
//!   with a space, hyphen or other case ("in progress", "on-hold") are
//!   read too, since sources spell them differently.

use serde_json::{Map, Value, json};

use super::maintainx::{carries_key, technician_description};
use super::{Event, Vendor};
use crate::cmms::exchange::{
    self, Answer, CmmsStatus, Failure, Found, Method, Request, encode_component, is_success, join,
};
use crate::config::{CmmsConfig, UpKeepConfig};
use crate::contract::received::{MeterDoc, WorkOrderDoc};

/// UpKeep's API.
pub struct UpKeep {
    config: CmmsConfig,
    own: UpKeepConfig,
}

impl UpKeep {
    /// The vendor of a connector.
    pub fn new(config: &CmmsConfig, own: &UpKeepConfig) -> UpKeep {
        UpKeep {
            config: config.clone(),
            own: own.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        join(&self.config.url, &format!("api/v2/{path}"))
    }

    fn headers(&self, body: bool) -> Vec<(String, String)> {
        let mut headers = vec![(
            "Session-Token".to_owned(),
            self.own.session_token.expose_str(),
        )];
        if body {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        headers.push(("Accept".to_owned(), "application/json".to_owned()));
        headers
    }

    fn create_body(&self, wo: &WorkOrderDoc) -> Value {
        let mut body = Map::new();
        body.insert("title".into(), json!(wo.title));
        body.insert("description".into(), json!(technician_description(wo)));
        if let Some(priority) = priority(&wo.priority) {
            body.insert("priority".into(), json!(priority));
        }
        if let Some(id) = self.config.assets.get(&wo.asset) {
            body.insert("asset".into(), json!(id));
        }
        if let Some(id) = wo
            .location
            .as_deref()
            .and_then(|l| self.config.locations.get(l))
        {
            body.insert("location".into(), json!(id));
        }
        Value::Object(body)
    }
}

impl Vendor for UpKeep {
    fn lookup(&self, wo: &WorkOrderDoc) -> Option<Request> {
        // Narrowed by what the list can filter on; the key is matched in
        // the answer (top comment).
        let mut query = Vec::new();
        if !wo.title.trim().is_empty() {
            query.push(format!("title={}", encode_component(&wo.title)));
        }
        // The asset, or else the location: one filter narrows enough, and
        // each is one more field a technician may have changed since.
        if let Some(id) = self.config.assets.get(&wo.asset) {
            query.push(format!("asset={}", encode_component(id)));
        } else if let Some(id) = wo
            .location
            .as_deref()
            .and_then(|l| self.config.locations.get(l))
        {
            query.push(format!("location={}", encode_component(id)));
        }
        query.push(format!("limit={LOOKUP_LIMIT}"));
        Some(Request {
            method: Method::Get,
            url: format!("{}?{}", self.url("work-orders"), query.join("&")),
            headers: self.headers(false),
            body: None,
        })
    }

    fn read_lookup(&self, wo: &WorkOrderDoc, answer: &Answer) -> Result<Option<Found>, Failure> {
        let orders = read_results(answer)?;
        // Newest first: the last match is the first created.
        let Some(order) = orders.iter().rev().find(|o| {
            o.get("description")
                .and_then(Value::as_str)
                .is_some_and(|d| carries_key(d, &wo.key))
        }) else {
            return Ok(None);
        };
        let reference = id_text(order.get("id")).ok_or_else(|| {
            Failure::Retry(format!(
                "UpKeep listed a work order with key {} but without its id",
                wo.key
            ))
        })?;
        let status = order.get("status").and_then(Value::as_str).and_then(status);
        Ok(Some(Found { reference, status }))
    }

    fn create(&self, wo: &WorkOrderDoc, _event: Event) -> Result<Request, Failure> {
        let body = serde_json::to_vec(&self.create_body(wo))
            .map_err(|e| Failure::Park(format!("work order not encoded: {e}")))?;
        Ok(Request {
            method: Method::Post,
            // With the trailing slash, as the reference writes the URL.
            url: self.url("work-orders/"),
            headers: self.headers(true),
            body: Some(body),
        })
    }

    fn read_create(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        let result = read_result(answer)?;
        let reference = id_text(result.get("id")).ok_or_else(|| {
            Failure::Retry("UpKeep answered the create without a work-order id".into())
        })?;
        let status = result
            .get("status")
            .and_then(Value::as_str)
            .and_then(status)
            .filter(|s| *s == CmmsStatus::Accepted);
        Ok(Some(Found { reference, status }))
    }

    fn update(&self, _wo: &WorkOrderDoc, _reference: &str, _event: Event) -> Option<Request> {
        // Once created, the work order is UpKeep's: fieldgate sends no
        // updates.
        None
    }

    fn status(&self, reference: &str) -> Option<Request> {
        Some(Request {
            method: Method::Get,
            url: self.url(&format!("work-orders/{}", encode_component(reference))),
            headers: self.headers(false),
            body: None,
        })
    }

    fn read_status(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        let result = read_result(answer)?;
        let reference = id_text(result.get("id")).ok_or_else(|| {
            Failure::Retry("UpKeep answered the status without a work-order id".into())
        })?;
        let text = result
            .get("status")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                Failure::Retry(format!(
                    "UpKeep answered work order {reference} without a status"
                ))
            })?;
        Ok(status(text).map(|s| Found {
            reference,
            status: Some(s),
        }))
    }

    fn meter(&self, _reading: &MeterDoc, _meter_id: &str) -> Option<Request> {
        // Not verified against the reference (top comment).
        None
    }
}

/// Work orders the lookup asks for: a page of the newest with the work
/// order's title and asset (or location), small enough that the answer stays
/// far below what the client reads of one.
const LOOKUP_LIMIT: u32 = 100;

/// UpKeep's priority (0 none, 1 low, 2 medium, 3 high) for fieldgate's;
/// `None` (left out) for a level fieldgate does not write.
fn priority(level: &str) -> Option<u8> {
    match level {
        "low" => Some(1),
        "medium" => Some(2),
        "high" | "critical" => Some(3),
        _ => None,
    }
}

/// The fieldgate status of an UpKeep status; `None`: no change (on hold,
/// or a status fieldgate does not know).
fn status(text: &str) -> Option<CmmsStatus> {
    let text: String = text
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    match text.as_str() {
        "open" => Some(CmmsStatus::Accepted),
        "inprogress" => Some(CmmsStatus::InProgress),
        "complete" | "completed" => Some(CmmsStatus::Closed),
        _ => None,
    }
}

/// The `result` of a 2xx answer with `success` not false, or why the
/// exchange failed.
fn read_result(answer: &Answer) -> Result<Map<String, Value>, Failure> {
    let doc = read_doc(answer)?;
    match doc.get("result") {
        Some(Value::Object(result)) => Ok(result.clone()),
        _ => Err(Failure::Retry(
            "UpKeep answered without a work order (no \"result\")".into(),
        )),
    }
}

/// The JSON of a 2xx answer with `success` not false, or why the exchange
/// failed.
fn read_doc(answer: &Answer) -> Result<Value, Failure> {
    if !is_success(answer) {
        return Err(exchange::failure(answer, error_text(&answer.body)));
    }
    let doc: Value = serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Retry(format!(
            "UpKeep answered HTTP {} with a body that is not JSON: {e}",
            answer.status
        ))
    })?;
    // A 2xx that says it failed is UpKeep refusing the request.
    if doc.get("success") == Some(&Value::Bool(false)) {
        return Err(exchange::failure(answer, error_text(&answer.body)));
    }
    Ok(doc)
}

/// The `results` of a 2xx list answer with `success` not false, or why
/// the exchange failed.
fn read_results(answer: &Answer) -> Result<Vec<Value>, Failure> {
    let doc = read_doc(answer)?;
    match doc.get("results") {
        Some(Value::Array(results)) => Ok(results.clone()),
        _ => Err(Failure::Retry(
            "UpKeep answered the lookup without a list (no \"results\")".into(),
        )),
    }
}

/// An id (a string in UpKeep) as text.
fn id_text(id: Option<&Value>) -> Option<String> {
    match id? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// UpKeep's error text in an answer body: `message`, or `error`.
fn error_text(body: &[u8]) -> Option<String> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    ["message", "error"]
        .iter()
        .find_map(|k| doc.get(*k).and_then(Value::as_str))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::config::{CmmsKind, Secret};
    use crate::contract::received;

    const TOKEN: &str = "r:upkeep-session-token-42";

    fn vendor(assets: &[(&str, &str)], locations: &[(&str, &str)]) -> UpKeep {
        let own = UpKeepConfig {
            session_token: Secret::new(TOKEN),
        };
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let config = CmmsConfig {
            name: "upkeep".into(),
            kind: CmmsKind::UpKeep(own.clone()),
            url: "https://api.onupkeep.com".into(),
            timeout: Duration::from_secs(10),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            poll_interval: Some(Duration::from_secs(60)),
            ca_file: None,
            work_orders: true,
            assets: map(assets),
            locations: map(locations),
            meters: BTreeMap::new(),
            inbound: None,
        };
        UpKeep::new(&config, &own)
    }

    fn wo(priority: &str) -> WorkOrderDoc {
        let text = format!(
            r#"{{"schema":"fieldgate.workorder/1","id":"01J","key":"plant/gw/pump_hot/1","type":"corrective","status":"open","priority":"{priority}","created_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing hot","description":""}}"#
        );
        received::work_order(text.as_bytes()).unwrap()
    }

    fn body(request: &Request) -> Value {
        serde_json::from_slice(request.body.as_deref().unwrap()).unwrap()
    }

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: body.as_bytes().to_vec(),
        }
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_create_carries_the_documented_fields() {
        let v = vendor(&[("P-101", "gHhn43LMh3")], &[("Hall 2", "Kfhn03LMh3")]);
        let request = v.create(&wo("medium"), Event::Raised).unwrap();
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "https://api.onupkeep.com/api/v2/work-orders/");
        assert_eq!(header(&request, "Session-Token"), Some(TOKEN));
        assert_eq!(header(&request, "Content-Type"), Some("application/json"));
        let body = body(&request);
        assert_eq!(body["title"], "Bearing hot");
        assert_eq!(body["priority"], json!(2));
        assert_eq!(body["asset"], "gHhn43LMh3");
        assert_eq!(body["location"], "Kfhn03LMh3");
        assert!(body.get("assetId").is_none() && body.get("category").is_none());
        let description = body["description"].as_str().unwrap();
        // An empty fieldgate description: the key line comes first.
        assert!(description.starts_with("fieldgate key: plant/gw/pump_hot/1\n"));
        assert!(description.ends_with("Gateway: gw, site: plant, asset: P-101, location: Hall 2"));

        let body =
            super::tests::body(&vendor(&[], &[]).create(&wo("low"), Event::Updated).unwrap());
        assert!(body.get("asset").is_none() && body.get("location").is_none());
    }

    #[test]
    fn priorities_are_integers_from_1_to_3() {
        assert_eq!(priority("low"), Some(1));
        assert_eq!(priority("medium"), Some(2));
        assert_eq!(priority("high"), Some(3));
        assert_eq!(priority("critical"), Some(3));
        assert_eq!(priority("none"), None);
        let body = body(&vendor(&[], &[]).create(&wo("odd"), Event::Raised).unwrap());
        assert!(body.get("priority").is_none());
    }

    #[test]
    fn statuses_map_to_fieldgates() {
        assert_eq!(status("open"), Some(CmmsStatus::Accepted));
        assert_eq!(status("inProgress"), Some(CmmsStatus::InProgress));
        assert_eq!(status("in progress"), Some(CmmsStatus::InProgress));
        assert_eq!(status("in-progress"), Some(CmmsStatus::InProgress));
        assert_eq!(status("onHold"), None);
        assert_eq!(status("complete"), Some(CmmsStatus::Closed));
        assert_eq!(status("Completed"), Some(CmmsStatus::Closed));
        assert_eq!(status("archived"), None);
    }

    #[test]
    fn answers_are_read_from_result() {
        let v = vendor(&[], &[]);
        assert_eq!(
            v.read_create(&answer(
                200,
                r#"{"success":true,"result":{"id":"wfhn43LMh3","status":"open"}}"#
            ))
            .unwrap(),
            Some(Found {
                reference: "wfhn43LMh3".into(),
                status: Some(CmmsStatus::Accepted)
            })
        );
        assert_eq!(
            v.read_create(&answer(200, r#"{"success":true,"result":{"id":"x"}}"#))
                .unwrap(),
            Some(Found {
                reference: "x".into(),
                status: None
            })
        );
        assert!(matches!(
            v.read_create(&answer(200, r#"{"success":true}"#)),
            Err(Failure::Retry(_))
        ));

        let request = v.status("wfhn43LMh3").unwrap();
        assert_eq!(request.method, Method::Get);
        assert_eq!(
            request.url,
            "https://api.onupkeep.com/api/v2/work-orders/wfhn43LMh3"
        );
        assert_eq!(request.body, None);
        assert_eq!(
            v.read_status(&answer(
                200,
                r#"{"success":true,"result":{"id":"w1","status":"inProgress"}}"#
            ))
            .unwrap(),
            Some(Found {
                reference: "w1".into(),
                status: Some(CmmsStatus::InProgress)
            })
        );
        assert_eq!(
            v.read_status(&answer(
                200,
                r#"{"success":true,"result":{"id":"w1","status":"onHold"}}"#
            ))
            .unwrap(),
            None
        );
    }

    #[test]
    fn errors_carry_upkeeps_message() {
        let v = vendor(&[], &[]);
        assert_eq!(
            v.read_create(&answer(
                400,
                r#"{"success":false,"message":"Asset not found"}"#
            )),
            Err(Failure::Park("HTTP 400: Asset not found".into()))
        );
        assert_eq!(
            v.read_create(&answer(
                200,
                r#"{"success":false,"message":"Title is required"}"#
            )),
            Err(Failure::Park("HTTP 200: Title is required".into()))
        );
        assert!(matches!(
            v.read_status(&answer(503, r#"{"success":false,"message":"down"}"#)),
            Err(Failure::Retry(_))
        ));
        assert_eq!(error_text(br#"{"error":"e"}"#).as_deref(), Some("e"));
        assert_eq!(error_text(b"nope"), None);
    }

    #[test]
    fn the_lookup_narrows_by_title_and_asset_or_location() {
        let v = vendor(&[("P-101", "gHhn43LMh3")], &[("Hall 2", "Kfhn 3/Mh3")]);
        let request = v.lookup(&wo("low")).unwrap();
        assert_eq!(request.method, Method::Get);
        assert_eq!(
            request.url,
            "https://api.onupkeep.com/api/v2/work-orders?title=Bearing%20hot&asset=gHhn43LMh3&limit=100"
        );
        assert_eq!(
            vendor(&[], &[("Hall 2", "Kfhn 3/Mh3")])
                .lookup(&wo("low"))
                .unwrap()
                .url,
            "https://api.onupkeep.com/api/v2/work-orders?title=Bearing%20hot&location=Kfhn%203%2FMh3&limit=100"
        );
        assert_eq!(request.body, None);
        assert_eq!(header(&request, "Session-Token"), Some(TOKEN));
        assert_eq!(header(&request, "Content-Type"), None);
        assert!(!format!("{request:?}").contains(TOKEN));
        assert_eq!(
            vendor(&[], &[]).lookup(&wo("low")).unwrap().url,
            "https://api.onupkeep.com/api/v2/work-orders?title=Bearing%20hot&limit=100"
        );
    }

    fn listed(orders: &[(&str, &str, &str)]) -> Answer {
        let results: Vec<Value> = orders
            .iter()
            .map(|(id, description, status)| {
                json!({"id": id, "title": "Bearing hot", "description": description, "status": status})
            })
            .collect();
        answer(
            200,
            &json!({"success": true, "results": results}).to_string(),
        )
    }

    #[test]
    fn the_lookup_finds_only_the_work_order_with_the_key() {
        let v = vendor(&[], &[]);
        let order = wo("low");
        let mine = "fieldgate key: plant/gw/pump_hot/1\nGateway: gw";
        let other = "fieldgate key: plant/gw/pump_hot/2\nGateway: gw";
        let longer = "fieldgate key: plant/gw/pump_hot/11\nGateway: gw";
        assert_eq!(
            v.read_lookup(
                &order,
                &listed(&[("w3", other, "open"), ("w2", longer, "open")])
            ),
            Ok(None)
        );
        assert_eq!(v.read_lookup(&order, &listed(&[])), Ok(None));
        assert_eq!(
            v.read_lookup(
                &order,
                &listed(&[
                    ("w5", other, "open"),
                    ("w4", mine, "inProgress"),
                    ("w3", longer, "open")
                ])
            ),
            Ok(Some(Found {
                reference: "w4".into(),
                status: Some(CmmsStatus::InProgress)
            }))
        );
        // Two with the key: the first created (listed last).
        assert_eq!(
            v.read_lookup(
                &order,
                &listed(&[("w7", mine, "open"), ("w6", mine, "onHold")])
            ),
            Ok(Some(Found {
                reference: "w6".into(),
                status: None
            }))
        );
        // A work order without a description is not this one.
        let bare = answer(
            200,
            r#"{"success":true,"results":[{"id":"w8","title":"Bearing hot"}]}"#,
        );
        assert_eq!(v.read_lookup(&order, &bare), Ok(None));
        let no_id = answer(
            200,
            r#"{"success":true,"results":[{"description":"fieldgate key: plant/gw/pump_hot/1"}]}"#,
        );
        assert!(matches!(
            v.read_lookup(&order, &no_id),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            v.read_lookup(&order, &answer(200, r#"{"success":true,"result":{}}"#)),
            Err(Failure::Retry(_))
        ));
        assert_eq!(
            v.read_lookup(
                &order,
                &answer(
                    401,
                    r#"{"success":false,"message":"Invalid session token"}"#
                )
            ),
            Err(Failure::Park("HTTP 401: Invalid session token".into()))
        );
        assert!(matches!(
            v.read_lookup(&order, &answer(502, "")),
            Err(Failure::Retry(_))
        ));
    }

    #[test]
    fn no_updates_or_meters() {
        let v = vendor(&[], &[]);
        let order = wo("low");
        assert_eq!(v.update(&order, "w1", Event::Closed), None);
        let reading = received::meter(
            br#"{"schema":"fieldgate.meter/1","meter":"m","kind":"runtime","value":1.0,"ts":"2026-12-07T08:00:00.000Z"}"#,
        )
        .unwrap();
        assert_eq!(v.meter(&reading, "m1"), None);
    }

    #[test]
    fn no_secret_in_the_debug_of_a_request() {
        let v = vendor(&[], &[]);
        for request in [
            v.create(&wo("high"), Event::Raised).unwrap(),
            v.status("w1").unwrap(),
        ] {
            let text = format!("{request:?}");
            assert!(!text.contains(TOKEN), "{text}");
            assert!(text.contains("Session-Token"), "{text}");
        }
    }
}
