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
//! * No lookup: the list of work orders cannot be filtered by anything
//!   fieldgate writes, so duplicate suppression after a lost create
//!   answer relies on the reference the delivery task stored.
//! * No meter readings: a public client posts `{"value"}` to
//!   `/api/v2/meters/{id}/readings`, but the reference's "Meters" section
//!   could not be read to confirm it, so UpKeep connectors take none.
//! * UpKeep has no cancelled status; a work order deleted in UpKeep
//!   answers the status poll with an error, not a status. Status texts
//!   with a space, hyphen or other case ("in progress", "on-hold") are
//!   read too, since sources spell them differently.

use serde_json::{Map, Value, json};

use super::maintainx::technician_description;
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
    fn lookup(&self, _wo: &WorkOrderDoc) -> Option<Request> {
        // Nothing fieldgate writes can be searched for (top comment).
        None
    }

    fn read_lookup(&self, _answer: &Answer) -> Result<Option<Found>, Failure> {
        Ok(None)
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
    match doc.get("result") {
        Some(Value::Object(result)) => Ok(result.clone()),
        _ => Err(Failure::Retry(
            "UpKeep answered without a work order (no \"result\")".into(),
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
    fn no_lookup_updates_or_meters() {
        let v = vendor(&[], &[]);
        let order = wo("low");
        assert_eq!(v.lookup(&order), None);
        assert_eq!(v.read_lookup(&answer(200, "{}")), Ok(None));
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
