//! MaintainX, REST API v1: work orders, their status, and meter readings.
//!
//! Follows MaintainX's public OpenAPI document, version "1" as served at
//! `https://api.getmaintainx.com/v1/openapi.json` (the copy read was
//! taken in 2026; the rendered reference is at
//! `https://api.getmaintainx.com/v1/docs`):
//!
//! * `POST /v1/workorders` (`postWorkorders`): `title` (required),
//!   `description`, `priority` (`NONE`, `LOW`, `MEDIUM`, `HIGH`: there is
//!   nothing above `HIGH`, so fieldgate's `critical` is `HIGH` too),
//!   `assetId` and `locationId` (integers), `type` (`REACTIVE`,
//!   `PREVENTIVE`, `OTHER`) and `externalData` ("extra data … to help
//!   reference to a matching record in an external system": an object,
//!   a number or a string; fieldgate writes `{"fieldgateKey": key}`).
//!   The answer is `200 {"id": 159}`.
//! * `GET /v1/workorders/{id}` (`getWorkordersById`) answers
//!   `{"workOrder": {...}}`; the status is one of `OPEN`, `IN_PROGRESS`,
//!   `ON_HOLD`, `DONE`, `CANCELED`, `SKIPPED`. A work order at the top
//!   level (no `workOrder` wrapper) is read too.
//! * `GET /v1/workorders` (`getWorkorders`, "List work orders") filters by
//!   `title` (a string), `assets`, `locations` (integer ids, the key
//!   repeated for several), `statuses`, `priorities`…, sorts by `sort`
//!   (`createdAt`, `-createdAt` for newest first, and other dates), pages
//!   with `limit` (1 to 200, 100 by default) and `cursor`, and answers
//!   `{"workOrders": [...], "nextCursor"}`; each listed work order carries
//!   its `id`, `title`, `status` and `description`, not its `externalData`.
//!   A query it refuses is a 400 `{"error"}`.
//! * `POST /v1/meterreadings` (`postMeterreadings`, the batch endpoint the
//!   reference recommends): a JSON array of `{"meterId", "value",
//!   "readingDate"}`; `201` with the readings back.
//! * Errors: `{"errors": [{"error", "fieldPath", "fieldValue"}]}` (400,
//!   403) or `{"error": "..."}` (400 on a query, 404, 429); 401 has no body.
//!
//! Choices and what could not be verified against a live MaintainX:
//!
//! * `categories` are left out: they name categories an organization
//!   defines (the Categories API), not free text, and whether an unknown
//!   label is refused or created is not documented. `type` carries
//!   corrective (`REACTIVE`) or preventive (`PREVENTIVE`) instead.
//! * The lookup before a create, so that a create whose answer was lost
//!   (a timeout, a gateway killed mid-request) is found, not made twice:
//!   the list cannot filter by `externalData`, so it is narrowed by what
//!   it can filter on, the work order's `title` and its mapped asset
//!   (`assets`; or else its mapped location, `locations`), newest first,
//!   100 of them, and the answer is searched for the key: the
//!   `fieldgate key: <key>` line of a `description`, or an
//!   `externalData.fieldgateKey` should MaintainX list one. Only the first
//!   page is read (no `cursor`): the work order sought is among the newest
//!   with its title and asset. Not narrowed by `createdAt[gte]`, which the
//!   2026 copy of the reference has and an earlier one did not: the
//!   gateway's clock is not MaintainX's, and a gateway clock ahead would
//!   hide the very work order sought. Not by both asset and location: one
//!   narrows enough, and each filter is one more field a technician may
//!   have edited since. A technician who renamed the work order, or moved
//!   it to another asset, before the retry defeats the lookup: it is then
//!   created again. Several work orders with the key (an earlier
//!   duplicate): the first created is taken. How MaintainX matches `title`
//!   (whole, or contained) is not documented; either way the key decides.
//! * `SKIPPED` (a recurring occurrence skipped) is read as cancelled: the
//!   work will not be done, and fieldgate frees the slot as for closed.
//!   `COMPLETED`, `CLOSED` and `CANCELLED` are not in the reference but are
//!   read as closed / cancelled in case an account reports them.
//! * An IoT meter's `readingDate` may not be more than 3 days in the past:
//!   readings held longer than that through an outage are refused (400).
//! * The shape of MaintainX's 400 for an asset id it does not know, and
//!   of its 503, are not documented; the error texts are read whatever
//!   of the two error shapes they take.

use serde_json::{Map, Value, json};

use super::{Event, Vendor};
use crate::cmms::exchange::{
    self, Answer, CmmsStatus, Failure, Found, Method, Request, encode_component, is_success, join,
};
use crate::config::{CmmsConfig, MaintainXConfig};
use crate::contract::received::{MeterDoc, WorkOrderDoc};

/// MaintainX's API.
pub struct MaintainX {
    config: CmmsConfig,
    own: MaintainXConfig,
}

impl MaintainX {
    /// The vendor of a connector.
    pub fn new(config: &CmmsConfig, own: &MaintainXConfig) -> MaintainX {
        MaintainX {
            config: config.clone(),
            own: own.clone(),
        }
    }

    fn url(&self, path: &str) -> String {
        join(&self.config.url, &format!("v1/{path}"))
    }

    fn headers(&self, body: bool) -> Vec<(String, String)> {
        let mut headers = vec![(
            "Authorization".to_owned(),
            format!("Bearer {}", self.own.api_key.expose_str()),
        )];
        if body {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        headers.push(("Accept".to_owned(), "application/json".to_owned()));
        headers
    }

    /// The body of the create: the fields MaintainX documents, each mapped
    /// id an integer.
    fn create_body(&self, wo: &WorkOrderDoc) -> Result<Value, Failure> {
        let mut body = Map::new();
        body.insert("title".into(), json!(wo.title));
        body.insert("description".into(), json!(technician_description(wo)));
        if let Some(priority) = priority(&wo.priority) {
            body.insert("priority".into(), json!(priority));
        }
        let kind = if wo.is_preventive() {
            "PREVENTIVE"
        } else {
            "REACTIVE"
        };
        body.insert("type".into(), json!(kind));
        if let Some(id) = mapped_id(&self.config.assets, &wo.asset, "asset")? {
            body.insert("assetId".into(), json!(id));
        }
        if let Some(location) = wo.location.as_deref()
            && let Some(id) = mapped_id(&self.config.locations, location, "location")?
        {
            body.insert("locationId".into(), json!(id));
        }
        body.insert("externalData".into(), json!({ "fieldgateKey": wo.key }));
        Ok(Value::Object(body))
    }
}

impl Vendor for MaintainX {
    fn lookup(&self, wo: &WorkOrderDoc) -> Option<Request> {
        // Narrowed by what the list can filter on; the key is matched in
        // the answer (top comment).
        let mut query = Vec::new();
        if !wo.title.trim().is_empty() {
            query.push(format!("title={}", encode_component(&wo.title)));
        }
        // The asset, or else the location: one filter narrows enough, and
        // each is one more field a technician may have changed since. A
        // mapping that is not an integer parks the create; the lookup just
        // goes without it.
        if let Ok(Some(asset)) = mapped_id(&self.config.assets, &wo.asset, "asset") {
            query.push(format!("assets={asset}"));
        } else if let Some(location) = wo.location.as_deref()
            && let Ok(Some(id)) = mapped_id(&self.config.locations, location, "location")
        {
            query.push(format!("locations={id}"));
        }
        query.push("sort=-createdAt".to_owned());
        query.push(format!("limit={LOOKUP_LIMIT}"));
        Some(Request {
            method: Method::Get,
            url: format!("{}?{}", self.url("workorders"), query.join("&")),
            headers: self.headers(false),
            body: None,
        })
    }

    fn read_lookup(&self, wo: &WorkOrderDoc, answer: &Answer) -> Result<Option<Found>, Failure> {
        let doc = read_answer(answer)?;
        let orders = doc
            .get("workOrders")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Failure::Retry("MaintainX answered the lookup without \"workOrders\"".into())
            })?;
        // Newest first as asked: the last match is the first created.
        let Some(order) = orders.iter().rev().find(|o| carries_key_mx(o, &wo.key)) else {
            return Ok(None);
        };
        let reference = id_text(order.get("id")).ok_or_else(|| {
            Failure::Retry(format!(
                "MaintainX listed a work order with key {} but without its id",
                wo.key
            ))
        })?;
        let status = order.get("status").and_then(Value::as_str).and_then(status);
        Ok(Some(Found { reference, status }))
    }

    fn create(&self, wo: &WorkOrderDoc, _event: Event) -> Result<Request, Failure> {
        let body = self.create_body(wo)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| Failure::Park(format!("work order not encoded: {e}")))?;
        Ok(Request {
            method: Method::Post,
            url: self.url("workorders"),
            headers: self.headers(true),
            body: Some(body),
        })
    }

    fn read_create(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        let doc = read_answer(answer)?;
        let order = work_order(&doc);
        let reference = id_text(order.get("id")).ok_or_else(|| {
            Failure::Retry("MaintainX answered the create without a work-order id".into())
        })?;
        // The documented answer is only the id; a status, when one comes,
        // is taken only if it says the work order is open.
        let status = order
            .get("status")
            .and_then(Value::as_str)
            .and_then(status)
            .filter(|s| *s == CmmsStatus::Accepted);
        Ok(Some(Found { reference, status }))
    }

    fn update(&self, _wo: &WorkOrderDoc, _reference: &str, _event: Event) -> Option<Request> {
        // Once created, the work order is MaintainX's: fieldgate sends no
        // updates.
        None
    }

    fn status(&self, reference: &str) -> Option<Request> {
        Some(Request {
            method: Method::Get,
            url: self.url(&format!("workorders/{}", encode_component(reference))),
            headers: self.headers(false),
            body: None,
        })
    }

    fn read_status(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        let doc = read_answer(answer)?;
        let order = work_order(&doc);
        let reference = id_text(order.get("id")).ok_or_else(|| {
            Failure::Retry("MaintainX answered the status without a work-order id".into())
        })?;
        let text = order.get("status").and_then(Value::as_str).ok_or_else(|| {
            Failure::Retry(format!(
                "MaintainX answered work order {reference} without a status"
            ))
        })?;
        Ok(status(text).map(|s| Found {
            reference,
            status: Some(s),
        }))
    }

    fn meter(&self, reading: &MeterDoc, meter_id: &str) -> Option<Request> {
        // MaintainX's meter ids are numbers. One that is not is sent as
        // written: MaintainX refuses it with its own text, and the reading
        // is parked where it can be seen, rather than dropped here.
        let meter_id = match meter_id.trim().parse::<i64>() {
            Ok(id) => json!(id),
            Err(_) => json!(meter_id),
        };
        let body = json!([{
            "meterId": meter_id,
            "value": reading.value,
            "readingDate": reading.ts,
        }]);
        Some(Request {
            method: Method::Post,
            url: self.url("meterreadings"),
            headers: self.headers(true),
            body: Some(serde_json::to_vec(&body).ok()?),
        })
    }
}

/// Work orders the lookup asks for (the reference allows 1 to 200): a
/// page of the newest with the work order's title and asset.
const LOOKUP_LIMIT: u32 = 100;

/// Whether a listed MaintainX work order is the one with `key`: its
/// `externalData.fieldgateKey`, or its description's key line.
fn carries_key_mx(order: &Value, key: &str) -> bool {
    let external = order
        .get("externalData")
        .and_then(|e| e.get("fieldgateKey"))
        .and_then(Value::as_str);
    if external == Some(key) {
        return true;
    }
    order
        .get("description")
        .and_then(Value::as_str)
        .is_some_and(|d| carries_key(d, key))
}

/// MaintainX's priority for fieldgate's; `None` (left out: MaintainX's
/// default) for a level fieldgate does not write.
fn priority(level: &str) -> Option<&'static str> {
    match level {
        "low" => Some("LOW"),
        "medium" => Some("MEDIUM"),
        "high" | "critical" => Some("HIGH"),
        _ => None,
    }
}

/// The fieldgate status of a MaintainX status; `None`: no change (on hold,
/// or a status fieldgate does not know).
fn status(text: &str) -> Option<CmmsStatus> {
    let text = text.trim().to_ascii_uppercase().replace([' ', '-'], "_");
    match text.as_str() {
        "OPEN" => Some(CmmsStatus::Accepted),
        "IN_PROGRESS" => Some(CmmsStatus::InProgress),
        "DONE" | "COMPLETED" | "CLOSED" => Some(CmmsStatus::Closed),
        "CANCELED" | "CANCELLED" | "SKIPPED" => Some(CmmsStatus::Cancelled),
        _ => None,
    }
}

/// The CMMS id `name` maps to, as MaintainX's integer; `None` when the
/// mapping does not name it (the field is left out).
fn mapped_id(
    mapping: &std::collections::BTreeMap<String, String>,
    name: &str,
    what: &str,
) -> Result<Option<i64>, Failure> {
    let Some(id) = mapping.get(name) else {
        return Ok(None);
    };
    id.trim().parse::<i64>().map(Some).map_err(|_| {
        Failure::Park(format!(
            "{what} {name:?} is mapped to MaintainX id {id:?}, which is not an integer \
             (MaintainX ids are numbers)"
        ))
    })
}

/// The description a technician reads: fieldgate's, then the work-order
/// key and where it comes from, so the work order can be found on the
/// gateway (and in its MQTT messages) from the CMMS.
pub(super) fn technician_description(wo: &WorkOrderDoc) -> String {
    let mut text = String::new();
    let own = wo.description.trim();
    if !own.is_empty() {
        text.push_str(own);
        text.push_str("\n\n");
    }
    text.push_str(&format!("{KEY_LINE}{}\n", wo.key));
    text.push_str(&format!(
        "Gateway: {}, site: {}, asset: {}",
        wo.gateway, wo.site, wo.asset
    ));
    if let Some(location) = wo.location.as_deref().filter(|l| !l.is_empty()) {
        text.push_str(&format!(", location: {location}"));
    }
    text
}

/// The line of [`technician_description`] that names the work-order key.
const KEY_LINE: &str = "fieldgate key: ";

/// Whether `description` has the key line of `key` (a whole line, so that
/// key `…/1` is not found in the line of key `…/10`; spaces around it, or a
/// CR that a CMMS may have added, do not matter).
pub(super) fn carries_key(description: &str, key: &str) -> bool {
    description.lines().any(|line| {
        line.trim()
            .strip_prefix(KEY_LINE)
            .is_some_and(|k| k.trim() == key)
    })
}

/// The JSON of a 2xx answer, or why the exchange failed.
fn read_answer(answer: &Answer) -> Result<Value, Failure> {
    if !is_success(answer) {
        return Err(exchange::failure(answer, error_text(&answer.body)));
    }
    serde_json::from_slice(&answer.body).map_err(|e| {
        Failure::Retry(format!(
            "MaintainX answered HTTP {} with a body that is not JSON: {e}",
            answer.status
        ))
    })
}

/// The work order in an answer: under `workOrder` (as the reference
/// shows for a GET), or the answer itself (the create's `{"id": …}`).
fn work_order(doc: &Value) -> &Value {
    doc.get("workOrder")
        .filter(|w| w.is_object())
        .unwrap_or(doc)
}

/// An id (a JSON integer in MaintainX, read from text too) as text.
fn id_text(id: Option<&Value>) -> Option<String> {
    match id? {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.to_string())
            } else if let Some(u) = n.as_u64() {
                Some(u.to_string())
            } else {
                // An integer written as 159.0: still the id 159.
                let f = n.as_f64()?;
                (f.fract() == 0.0 && f.abs() < 9.0e15).then(|| format!("{f:.0}"))
            }
        }
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// MaintainX's error text in an answer body: every `errors[].error` (with
/// its `fieldPath`), or `error`, or `message`.
fn error_text(body: &[u8]) -> Option<String> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    if let Some(errors) = doc.get("errors").and_then(Value::as_array) {
        let texts: Vec<String> = errors
            .iter()
            .filter_map(|e| {
                let text = e
                    .get("error")
                    .or_else(|| e.get("message"))
                    .and_then(Value::as_str)?;
                Some(match e.get("fieldPath").and_then(Value::as_str) {
                    Some(path) if !path.is_empty() => format!("{text} ({path})"),
                    _ => text.to_owned(),
                })
            })
            .collect();
        if !texts.is_empty() {
            return Some(texts.join("; "));
        }
    }
    ["error", "message"]
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

    const KEY: &str = "mx-secret-key-0123";

    fn config(
        assets: &[(&str, &str)],
        locations: &[(&str, &str)],
    ) -> (CmmsConfig, MaintainXConfig) {
        let own = MaintainXConfig {
            api_key: Secret::new(KEY),
        };
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let config = CmmsConfig {
            name: "mx".into(),
            kind: CmmsKind::MaintainX(own.clone()),
            url: "https://api.getmaintainx.com/".into(),
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
        (config, own)
    }

    fn vendor(assets: &[(&str, &str)], locations: &[(&str, &str)]) -> MaintainX {
        let (config, own) = config(assets, locations);
        MaintainX::new(&config, &own)
    }

    fn wo(priority: &str, kind: &str) -> WorkOrderDoc {
        let text = format!(
            r#"{{"schema":"fieldgate.workorder/1","id":"01J","key":"plant/gw/pump_hot/1","type":"{kind}","status":"open","priority":"{priority}","created_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing hot","description":"Bearing above 80 °C"}}"#
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
        let v = vendor(&[("P-101", "42")], &[("Hall 2", " 7 ")]);
        let request = v.create(&wo("high", "corrective"), Event::Raised).unwrap();
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "https://api.getmaintainx.com/v1/workorders");
        assert_eq!(
            header(&request, "Authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert_eq!(header(&request, "Content-Type"), Some("application/json"));
        assert_eq!(header(&request, "Accept"), Some("application/json"));
        let body = body(&request);
        assert_eq!(body["title"], "Bearing hot");
        assert_eq!(body["priority"], "HIGH");
        assert_eq!(body["type"], "REACTIVE");
        assert_eq!(body["assetId"], json!(42));
        assert_eq!(body["locationId"], json!(7));
        assert_eq!(
            body["externalData"],
            json!({"fieldgateKey": "plant/gw/pump_hot/1"})
        );
        assert!(body.get("categories").is_none());
        let description = body["description"].as_str().unwrap();
        assert!(description.starts_with("Bearing above 80 °C\n\n"));
        assert!(description.contains("fieldgate key: plant/gw/pump_hot/1"));
        assert!(description.contains("Gateway: gw, site: plant, asset: P-101, location: Hall 2"));
    }

    #[test]
    fn unmapped_ids_are_left_out_and_bad_ones_park() {
        let v = vendor(&[], &[]);
        let body = body(&v.create(&wo("low", "preventive"), Event::Updated).unwrap());
        assert!(body.get("assetId").is_none());
        assert!(body.get("locationId").is_none());
        assert_eq!(body["type"], "PREVENTIVE");

        let v = vendor(&[("P-101", "PUMP-101")], &[]);
        match v.create(&wo("low", "corrective"), Event::Raised) {
            Err(Failure::Park(text)) => {
                assert!(
                    text.contains("P-101") && text.contains("PUMP-101"),
                    "{text}"
                );
                assert!(text.contains("not an integer"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let v = vendor(&[], &[("Hall 2", "h2")]);
        assert!(matches!(
            v.create(&wo("low", "corrective"), Event::Raised),
            Err(Failure::Park(_))
        ));
    }

    #[test]
    fn priorities_map_to_the_four_maintainx_levels() {
        assert_eq!(priority("low"), Some("LOW"));
        assert_eq!(priority("medium"), Some("MEDIUM"));
        assert_eq!(priority("high"), Some("HIGH"));
        assert_eq!(priority("critical"), Some("HIGH"));
        assert_eq!(priority("urgent"), None);
        let v = vendor(&[], &[]);
        let body = body(
            &v.create(&wo("urgent", "corrective"), Event::Raised)
                .unwrap(),
        );
        assert!(body.get("priority").is_none());
    }

    #[test]
    fn statuses_map_to_fieldgates() {
        assert_eq!(status("OPEN"), Some(CmmsStatus::Accepted));
        assert_eq!(status("IN_PROGRESS"), Some(CmmsStatus::InProgress));
        assert_eq!(status("ON_HOLD"), None);
        assert_eq!(status("DONE"), Some(CmmsStatus::Closed));
        assert_eq!(status("COMPLETED"), Some(CmmsStatus::Closed));
        assert_eq!(status("CLOSED"), Some(CmmsStatus::Closed));
        assert_eq!(status("CANCELED"), Some(CmmsStatus::Cancelled));
        assert_eq!(status("SKIPPED"), Some(CmmsStatus::Cancelled));
        assert_eq!(status("in progress"), Some(CmmsStatus::InProgress));
        assert_eq!(status("WHATEVER"), None);
    }

    #[test]
    fn the_create_answer_gives_the_numeric_id() {
        let v = vendor(&[], &[]);
        assert_eq!(
            v.read_create(&answer(200, r#"{"id":159}"#)).unwrap(),
            Some(Found {
                reference: "159".into(),
                status: None
            })
        );
        assert_eq!(
            v.read_create(&answer(201, r#"{"id":160.0,"status":"OPEN"}"#))
                .unwrap(),
            Some(Found {
                reference: "160".into(),
                status: Some(CmmsStatus::Accepted)
            })
        );
        assert_eq!(
            v.read_create(&answer(
                200,
                r#"{"workOrder":{"id":"161","status":"DONE"}}"#
            ))
            .unwrap(),
            Some(Found {
                reference: "161".into(),
                status: None
            })
        );
        assert!(matches!(
            v.read_create(&answer(200, r#"{"ok":true}"#)),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            v.read_create(&answer(200, "<html>")),
            Err(Failure::Retry(_))
        ));
    }

    #[test]
    fn the_status_is_read_under_work_order_or_at_the_top() {
        let v = vendor(&[], &[]);
        let request = v.status("1000").unwrap();
        assert_eq!(request.method, Method::Get);
        assert_eq!(
            request.url,
            "https://api.getmaintainx.com/v1/workorders/1000"
        );
        assert_eq!(request.body, None);
        assert_eq!(header(&request, "Content-Type"), None);
        assert_eq!(
            v.status("a/b").unwrap().url,
            "https://api.getmaintainx.com/v1/workorders/a%2Fb"
        );

        let found = v
            .read_status(&answer(
                200,
                r#"{"workOrder":{"id":1000,"status":"IN_PROGRESS","title":"t"}}"#,
            ))
            .unwrap();
        assert_eq!(
            found,
            Some(Found {
                reference: "1000".into(),
                status: Some(CmmsStatus::InProgress)
            })
        );
        let found = v
            .read_status(&answer(200, r#"{"id":1000,"status":"CANCELED"}"#))
            .unwrap();
        assert_eq!(found.unwrap().status, Some(CmmsStatus::Cancelled));
        assert_eq!(
            v.read_status(&answer(
                200,
                r#"{"workOrder":{"id":1000,"status":"ON_HOLD"}}"#
            ))
            .unwrap(),
            None
        );
        assert!(
            v.read_status(&answer(200, r#"{"workOrder":{"id":1}}"#))
                .is_err()
        );
    }

    #[test]
    fn error_texts_are_maintainxs() {
        assert_eq!(
            error_text(
                br#"{"errors":[{"error":"Asset not found","fieldPath":"assetId","fieldValue":42},{"error":"Bad"}]}"#
            )
            .as_deref(),
            Some("Asset not found (assetId); Bad")
        );
        assert_eq!(
            error_text(br#"{"error":"Not Found."}"#).as_deref(),
            Some("Not Found.")
        );
        assert_eq!(error_text(br#"{"message":"m"}"#).as_deref(), Some("m"));
        assert_eq!(error_text(b""), None);
        assert_eq!(error_text(b"[1]"), None);

        let v = vendor(&[], &[]);
        match v.read_create(&answer(
            400,
            r#"{"errors":[{"error":"Asset not found","fieldPath":"assetId"}]}"#,
        )) {
            Err(Failure::Park(text)) => {
                assert_eq!(text, "HTTP 400: Asset not found (assetId)")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            v.read_create(&answer(401, "")),
            Err(Failure::Park("HTTP 401".into()))
        );
        assert!(matches!(
            v.read_status(&answer(503, "busy")),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            v.read_status(&answer(429, r#"{"error":"Too Many Requests"}"#)),
            Err(Failure::Retry(_))
        ));
    }

    #[test]
    fn meter_readings_go_to_the_batch_endpoint() {
        let v = vendor(&[], &[]);
        let reading = received::meter(
            br#"{"schema":"fieldgate.meter/1","meter":"pump1_runtime","kind":"runtime","value":1234.5,"unit":"h","ts":"2026-12-07T08:00:00.000Z"}"#,
        )
        .unwrap();
        let request = v.meter(&reading, "53").unwrap();
        assert_eq!(request.method, Method::Post);
        assert_eq!(request.url, "https://api.getmaintainx.com/v1/meterreadings");
        assert_eq!(header(&request, "Content-Type"), Some("application/json"));
        assert_eq!(
            body(&request),
            json!([{"meterId": 53, "value": 1234.5, "readingDate": "2026-12-07T08:00:00.000Z"}])
        );
        // Not a number: sent as written, for MaintainX to refuse visibly.
        let request = v.meter(&reading, "m-1").unwrap();
        assert_eq!(body(&request)[0]["meterId"], "m-1");
    }

    #[test]
    fn no_updates() {
        let v = vendor(&[], &[]);
        let order = wo("low", "corrective");
        assert_eq!(v.update(&order, "1000", Event::Updated), None);
        assert_eq!(v.update(&order, "1000", Event::Closed), None);
    }

    #[test]
    fn the_lookup_narrows_by_title_and_asset_newest_first() {
        let v = vendor(&[("P-101", "42")], &[("Hall 2", "7")]);
        let request = v.lookup(&wo("high", "corrective")).unwrap();
        assert_eq!(
            vendor(&[], &[("Hall 2", "7")])
                .lookup(&wo("high", "corrective"))
                .unwrap()
                .url,
            "https://api.getmaintainx.com/v1/workorders?title=Bearing%20hot&locations=7&sort=-createdAt&limit=100"
        );
        assert_eq!(request.method, Method::Get);
        assert_eq!(
            request.url,
            "https://api.getmaintainx.com/v1/workorders?title=Bearing%20hot&assets=42&sort=-createdAt&limit=100"
        );
        assert_eq!(request.body, None);
        assert_eq!(header(&request, "Content-Type"), None);
        assert_eq!(
            header(&request, "Authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(!format!("{request:?}").contains(KEY));

        // No asset mapping, or one that is not an integer: no asset filter.
        for v in [vendor(&[], &[]), vendor(&[("P-101", "PUMP-101")], &[])] {
            assert_eq!(
                v.lookup(&wo("high", "corrective")).unwrap().url,
                "https://api.getmaintainx.com/v1/workorders?title=Bearing%20hot&sort=-createdAt&limit=100"
            );
        }
        // A title with reserved characters is encoded.
        let mut odd = wo("high", "corrective");
        odd.title = "Pump & valve = hot?".into();
        assert!(
            v.lookup(&odd)
                .unwrap()
                .url
                .contains("title=Pump%20%26%20valve%20%3D%20hot%3F&")
        );
    }

    /// A list answer of (id, description, externalData) work orders,
    /// newest first, all with the same title.
    fn listed(orders: &[(u64, &str, Value)]) -> Answer {
        let orders: Vec<Value> = orders
            .iter()
            .map(|(id, description, external)| {
                let mut o = json!({
                    "id": id, "sequentialId": id - 999, "title": "Bearing hot",
                    "status": "OPEN", "updatedAt": "2026-12-07T08:00:00.000Z",
                    "description": description,
                });
                if !external.is_null() {
                    o["externalData"] = external.clone();
                }
                o
            })
            .collect();
        answer(
            200,
            &json!({"workOrders": orders, "nextCursor": null}).to_string(),
        )
    }

    #[test]
    fn the_lookup_finds_only_the_work_order_with_the_key() {
        let v = vendor(&[], &[]);
        let order = wo("high", "corrective");
        let mine = "Bearing above 80 °C\n\nfieldgate key: plant/gw/pump_hot/1\nGateway: gw";
        let other = "Bearing above 80 °C\n\nfieldgate key: plant/gw/pump_hot/2\nGateway: gw";
        let longer = "fieldgate key: plant/gw/pump_hot/10\nGateway: gw";

        // Same title, other keys: not this work order.
        assert_eq!(
            v.read_lookup(
                &order,
                &listed(&[(1003, other, Value::Null), (1002, longer, Value::Null)])
            ),
            Ok(None)
        );
        assert_eq!(v.read_lookup(&order, &listed(&[])), Ok(None));

        // Two with the same title and different keys: the right one.
        assert_eq!(
            v.read_lookup(
                &order,
                &listed(&[
                    (1005, other, Value::Null),
                    (1004, mine, Value::Null),
                    (1003, longer, Value::Null)
                ])
            ),
            Ok(Some(Found {
                reference: "1004".into(),
                status: Some(CmmsStatus::Accepted)
            }))
        );
        // The key in externalData (should MaintainX list it), and a
        // description edited with CRs and spaces.
        let found = v
            .read_lookup(
                &order,
                &listed(&[
                    (1007, "", json!({"fieldgateKey": "plant/gw/pump_hot/1"})),
                    (1006, other, json!({"fieldgateKey": "x"})),
                ]),
            )
            .unwrap();
        assert_eq!(found.unwrap().reference, "1007");
        let edited = "Note\r\n  fieldgate key:  plant/gw/pump_hot/1 \r\nmore";
        assert_eq!(
            v.read_lookup(&order, &listed(&[(1008, edited, Value::Null)]))
                .unwrap()
                .unwrap()
                .reference,
            "1008"
        );
        // Two carrying the key (an earlier duplicate): the first created.
        assert_eq!(
            v.read_lookup(
                &order,
                &listed(&[(1010, mine, Value::Null), (1009, mine, Value::Null)])
            )
            .unwrap()
            .unwrap()
            .reference,
            "1009"
        );
    }

    #[test]
    fn the_lookup_status_and_bad_answers() {
        let v = vendor(&[], &[]);
        let order = wo("high", "corrective");
        let done = answer(
            200,
            r#"{"workOrders":[{"id":1000,"title":"Bearing hot","status":"DONE","description":"fieldgate key: plant/gw/pump_hot/1"}]}"#,
        );
        assert_eq!(
            v.read_lookup(&order, &done).unwrap().unwrap().status,
            Some(CmmsStatus::Closed)
        );
        let no_id = answer(
            200,
            r#"{"workOrders":[{"title":"Bearing hot","status":"OPEN","description":"fieldgate key: plant/gw/pump_hot/1"}]}"#,
        );
        assert!(matches!(
            v.read_lookup(&order, &no_id),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            v.read_lookup(&order, &answer(200, "{}")),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            v.read_lookup(&order, &answer(200, "<html>")),
            Err(Failure::Retry(_))
        ));
        assert_eq!(
            v.read_lookup(&order, &answer(400, r#"{"error":"Bad query"}"#)),
            Err(Failure::Park("HTTP 400: Bad query".into()))
        );
        assert!(matches!(
            v.read_lookup(&order, &answer(503, "")),
            Err(Failure::Retry(_))
        ));
    }

    #[test]
    fn the_key_line_is_matched_whole() {
        assert!(carries_key("fieldgate key: a/b/1", "a/b/1"));
        assert!(carries_key("x\nfieldgate key: a/b/1\ny", "a/b/1"));
        assert!(!carries_key("fieldgate key: a/b/10", "a/b/1"));
        assert!(!carries_key("fieldgate key: a/b/1", "a/b/10"));
        assert!(!carries_key("the fieldgate key: a/b/1", "a/b/1"));
        assert!(!carries_key("", "a/b/1"));
        let text = technician_description(&wo("low", "corrective"));
        assert!(carries_key(&text, "plant/gw/pump_hot/1"));
    }

    #[test]
    fn no_secret_in_the_debug_of_a_request() {
        let v = vendor(&[("P-101", "42")], &[]);
        let create = v.create(&wo("high", "corrective"), Event::Raised).unwrap();
        let status = v.status("1000").unwrap();
        for request in [create, status] {
            let text = format!("{request:?}");
            assert!(!text.contains(KEY), "{text}");
            assert!(text.contains("Authorization"), "{text}");
        }
    }
}
