//! IBM Maximo (Maximo Asset Management 7.6.x, Maximo Manage in MAS 8/9):
//! the JSON ("NextGen", OSLC) REST API over an object structure
//! (default `mxwo`), authenticated by an API key.
//!
//! Follows IBM's "Maximo REST API Guide"
//! (<https://ibm-maximo-dev.github.io/maximo-restapi-documentation/>, read
//! 2026; the same text as the "Maximo NextGen REST API" guide for 7.6.0.2
//! and later) and IBM's "API keys" page of the 7.6.1 integration
//! documentation:
//! * collection URI `{url}/oslc/os/{object structure}` (MAS also serves
//!   `/api/os/...`: `api_path`); `lean=1` for plain JSON names;
//! * `apikey` request header; `Accept: application/json`;
//! * queries: `oslc.select`, `oslc.where` (`attr="text"` for character
//!   attributes, `and` between terms); the answer is `{"member": [...]}`;
//! * create: `POST` to the collection, with the `properties` request
//!   header (the `oslc.select` syntax) so the 201 answer carries those
//!   attributes instead of only a `Location`;
//! * errors: `{"Error": {"message": "BMXAA...E - ...", "reasonCode":
//!   "BMXAA...E", "statusCode": "400"}}` (`oslc:Error` with `oslc:`
//!   names without `lean=1`, as older releases answer; both are read).
//!
//! Not verified against a live Maximo: how a `"` or `\` inside a quoted
//! `oslc.where` value is escaped (backslash, as the OSLC query syntax
//! has it, is sent); that a `%` in the key is taken literally (Maximo
//! turns `%` into a LIKE pattern; fieldgate's keys have none); the length
//! of `externalrefid` on the site's WORKORDER (too short a field refuses
//! the create with a 400, and the work order is parked: point `key_field`
//! at a longer attribute); how the long description renders plain-text
//! line breaks; status values a site renamed by synonym (read as no
//! change).
//!
//! Field choices:
//! * `problemcode` carries the rule's `problem_code`; `failurecode` is not
//!   sent. In Maximo's failure hierarchy `failurecode` is the failure
//!   class (the top level, copied to the work order from its asset or
//!   location) and `problemcode` a problem under it: the rule's code is a
//!   problem, so sending it as the class as well would be refused or
//!   wrong. Maximo validates the problem against the asset's class; a
//!   mismatch is a 400, parked with Maximo's text.
//! * `location` only when the work order's location is mapped in
//!   `locations`: a fieldgate location name ("Hall 2") is rarely a
//!   Maximo location id, and Maximo fills the location from the asset.
//!   The asset goes as-is when unmapped, since a work order must name one.
//! * `reportdate`: the work order's `created_at` in the documented ISO
//!   form with an offset (`2026-12-07T08:00:00+00:00`).
//! * No updates (Maximo owns the work order once created) and no meter
//!   readings: those would go to the asset's meters
//!   (`assetmeter`/`newreading` through the asset object structure), which
//!   is not in scope.

use std::fmt::Write as _;

use serde_json::{Map, Value as Json};

use super::{Event, Vendor};
use crate::cmms::exchange::{self, Answer, CmmsStatus, Failure, Found, Method, Request};
use crate::config::{CmmsConfig, MaximoConfig};
use crate::contract::received::{MeterDoc, WorkOrderDoc};

/// The length of WORKORDER.DESCRIPTION (ALN 100 in a standard Maximo).
const MAX_DESCRIPTION: usize = 100;

/// Maximo's API.
pub struct Maximo {
    config: CmmsConfig,
    own: MaximoConfig,
    /// `{url}/{api_path}/os/{object_structure}`.
    collection: String,
}

impl Maximo {
    /// The vendor of a connector.
    pub fn new(config: &CmmsConfig, own: &MaximoConfig) -> Maximo {
        let root = exchange::join(&config.url, &own.api_path);
        let collection = exchange::join(
            &root,
            &format!("os/{}", exchange::encode_component(&own.object_structure)),
        );
        Maximo {
            config: config.clone(),
            own: own.clone(),
            collection,
        }
    }

    fn headers(&self, body: bool) -> Vec<(String, String)> {
        let mut headers = vec![
            ("apikey".to_owned(), self.own.api_key.expose_str()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        if body {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        headers
    }

    /// A GET on the collection selecting `select` where `filter` holds.
    fn query(&self, select: &str, filter: &str) -> Request {
        Request {
            method: Method::Get,
            url: format!(
                "{}?lean=1&oslc.select={}&oslc.where={}",
                self.collection,
                exchange::encode_component(select),
                exchange::encode_component(filter)
            ),
            headers: self.headers(false),
            body: None,
        }
    }

    /// The create's JSON body.
    fn work_order(&self, wo: &WorkOrderDoc) -> Map<String, Json> {
        let mut body = Map::new();
        let mut put = |name: &str, value: Json| {
            body.insert(name.to_owned(), value);
        };
        put(
            "description",
            Json::String(wo.title.chars().take(MAX_DESCRIPTION).collect()),
        );
        put(
            "description_longdescription",
            Json::String(long_description(wo)),
        );
        let asset = self.config.assets.get(&wo.asset).unwrap_or(&wo.asset);
        put("assetnum", Json::String(asset.clone()));
        if let Some(location) = wo
            .location
            .as_ref()
            .and_then(|l| self.config.locations.get(l))
        {
            put("location", Json::String(location.clone()));
        }
        put("siteid", Json::String(self.own.site_id.clone()));
        let worktype = if wo.is_preventive() {
            &self.own.worktype_preventive
        } else {
            &self.own.worktype_corrective
        };
        put("worktype", Json::String(worktype.clone()));
        // An unknown priority (a newer fieldgate's) leaves Maximo's default.
        if let Some(level) = priority_index(&wo.priority) {
            put("wopriority", Json::from(self.own.priorities[level]));
        }
        if let Some(code) = wo.problem_code.as_ref().filter(|c| !c.trim().is_empty()) {
            put("problemcode", Json::String(code.clone()));
        }
        if let Some(date) = report_date(&wo.created_at) {
            put("reportdate", Json::String(date));
        }
        put(&self.own.key_field, Json::String(wo.key.clone()));
        body
    }
}

impl Vendor for Maximo {
    fn lookup(&self, wo: &WorkOrderDoc) -> Option<Request> {
        Some(self.query(
            "wonum,status,siteid",
            &format!(
                "{}={} and siteid={}",
                self.own.key_field,
                quoted(&wo.key),
                quoted(&self.own.site_id)
            ),
        ))
    }

    fn read_lookup(&self, _wo: &WorkOrderDoc, answer: &Answer) -> Result<Option<Found>, Failure> {
        first_member(answer).map(|member| member.and_then(|m| found(&m)))
    }

    fn create(&self, wo: &WorkOrderDoc, _event: Event) -> Result<Request, Failure> {
        let body = serde_json::to_vec(&Json::Object(self.work_order(wo)))
            .map_err(|e| Failure::Park(format!("the Maximo work order cannot be written: {e}")))?;
        let mut headers = self.headers(true);
        // The 201 answer then carries them (else only a Location header).
        headers.push(("properties".to_owned(), "wonum,status".to_owned()));
        Ok(Request {
            method: Method::Post,
            url: format!("{}?lean=1", self.collection),
            headers,
            body: Some(body),
        })
    }

    fn read_create(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        if !exchange::is_success(answer) {
            return Err(exchange::failure(answer, error_message(&answer.body)));
        }
        let created: Option<Json> = serde_json::from_slice(&answer.body).ok();
        match created.as_ref().and_then(found) {
            Some(found) => Ok(Some(found)),
            // Created, but the number is not in the answer (a Maximo that
            // ignored the properties header): retrying runs the lookup by
            // key first, which finds it, so no second work order is made.
            None => Err(Failure::Retry(
                "Maximo answered the create without wonum; the lookup by key will find it".into(),
            )),
        }
    }

    fn update(&self, _wo: &WorkOrderDoc, _reference: &str, _event: Event) -> Option<Request> {
        None
    }

    fn status(&self, reference: &str) -> Option<Request> {
        Some(self.query(
            "wonum,status",
            &format!(
                "wonum={} and siteid={}",
                quoted(reference),
                quoted(&self.own.site_id)
            ),
        ))
    }

    fn read_status(&self, answer: &Answer) -> Result<Option<Found>, Failure> {
        let member = first_member(answer)?;
        // A status with no fieldgate meaning (on hold, a synonym) or a
        // work order no longer found changes nothing.
        Ok(member
            .and_then(|m| found(&m))
            .filter(|f| f.status.is_some()))
    }

    fn meter(&self, _reading: &MeterDoc, _meter_id: &str) -> Option<Request> {
        None
    }
}

/// fieldgate's status for a Maximo work-order status.
fn map_status(status: &str) -> Option<CmmsStatus> {
    match status.trim().to_ascii_uppercase().as_str() {
        "WAPPR" | "APPR" | "WMATL" | "WSCH" => Some(CmmsStatus::Accepted),
        "INPRG" => Some(CmmsStatus::InProgress),
        "COMP" | "CLOSE" => Some(CmmsStatus::Closed),
        "CAN" => Some(CmmsStatus::Cancelled),
        _ => None,
    }
}

/// `"text"` for `oslc.where`, with `\` and `"` escaped by a backslash.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// 0 for low … 3 for critical.
fn priority_index(priority: &str) -> Option<usize> {
    match priority {
        "low" => Some(0),
        "medium" => Some(1),
        "high" => Some(2),
        "critical" => Some(3),
        _ => None,
    }
}

/// `created_at` (RFC 3339, UTC) as `YYYY-MM-DDTHH:MM:SS+00:00`; `None`
/// when it cannot be read (Maximo then sets the report date itself).
fn report_date(created_at: &str) -> Option<String> {
    let at = humantime::parse_rfc3339(created_at).ok()?;
    let text = humantime::format_rfc3339_seconds(at).to_string();
    Some(format!("{}+00:00", text.strip_suffix('Z')?))
}

/// The long description: the work order's description, what raised it,
/// and where it comes from, so a planner in Maximo has it all.
fn long_description(wo: &WorkOrderDoc) -> String {
    let mut text = String::new();
    if !wo.description.trim().is_empty() {
        text.push_str(wo.description.trim());
        text.push_str("\n\n");
    }
    let t = &wo.trigger;
    let with_unit = |v: &Json| {
        let v = match v {
            Json::String(s) => s.clone(),
            other => other.to_string(),
        };
        match t.unit.as_deref() {
            Some(u) if !u.is_empty() => format!("{v} {u}"),
            _ => v,
        }
    };
    match (&t.rule, &t.meter) {
        (Some(rule), _) => {
            let _ = write!(text, "Rule {rule}");
        }
        (None, Some(meter)) => {
            let _ = write!(text, "Meter {meter}");
        }
        (None, None) => text.push_str("Raised"),
    }
    if let Some(condition) = &t.condition {
        let _ = write!(text, " ({condition})");
    }
    if let Some(tag) = &t.tag {
        let _ = write!(text, " on {tag}");
    }
    if !t.value.is_null() {
        let _ = write!(text, ": value {}", with_unit(&t.value));
    }
    if !t.limit.is_null() {
        let _ = write!(text, ", limit {}", with_unit(&t.limit));
    } else if !t.threshold.is_null() {
        let _ = write!(text, ", threshold {}", with_unit(&t.threshold));
    }
    if let Some(since) = &t.since {
        let _ = write!(text, ", since {since}");
    }
    let _ = write!(text, ". Occurrences: {}.", wo.occurrences);
    if let Some(procedure) = &wo.procedure {
        let _ = write!(text, "\nProcedure: {procedure}");
    }
    let _ = write!(
        text,
        "\nfieldgate work order {} (key {}), raised {}.\nGateway {}, site {}.",
        wo.id, wo.key, wo.created_at, wo.gateway, wo.site
    );
    text
}

/// The first `member` of a query answer (`None`: no work order matched).
fn first_member(answer: &Answer) -> Result<Option<Json>, Failure> {
    if !exchange::is_success(answer) {
        return Err(exchange::failure(answer, error_message(&answer.body)));
    }
    let unreadable = || Failure::Retry("Maximo's query answer cannot be read".into());
    let mut page: Json = serde_json::from_slice(&answer.body).map_err(|_| unreadable())?;
    let members = page
        .as_object_mut()
        .and_then(|o| o.remove("member").or_else(|| o.remove("rdfs:member")))
        .ok_or_else(unreadable)?;
    match members {
        Json::Array(mut list) if !list.is_empty() => Ok(Some(list.swap_remove(0))),
        Json::Array(_) => Ok(None),
        _ => Err(unreadable()),
    }
}

/// The `wonum` (and mapped `status`) of a work order in an answer.
fn found(member: &Json) -> Option<Found> {
    let object = member.as_object()?;
    let field = |name: &str| {
        object
            .get(name)
            .or_else(|| object.get(&format!("spi:{name}")))
    };
    let reference = match field("wonum")? {
        Json::String(s) if !s.trim().is_empty() => s.trim().to_owned(),
        Json::Number(n) => n.to_string(),
        _ => return None,
    };
    let status = field("status").and_then(Json::as_str).and_then(map_status);
    Some(Found { reference, status })
}

/// The message of Maximo's error answer (`Error` with `lean=1`,
/// `oslc:Error` without).
fn error_message(body: &[u8]) -> Option<String> {
    let answer: Json = serde_json::from_slice(body).ok()?;
    let error = answer.get("Error").or_else(|| answer.get("oslc:Error"))?;
    let message = error
        .get("message")
        .or_else(|| error.get("oslc:message"))?
        .as_str()?;
    Some(message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CmmsKind, Secret};
    use crate::contract::received;
    use std::collections::BTreeMap;
    use std::time::Duration;

    const WO: &str = r#"{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"01J","key":"plant/gw/pump_hot/1","type":"corrective","status":"open","priority":"high","created_at":"2026-12-07T08:00:00.123Z","updated_at":"2026-12-07T08:00:00.123Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing hot","description":"Bearing temperature above limit.","problem_code":"BRG-HOT","procedure":"SOP-12","trigger":{"rule":"pump_hot","tag":"pump1.temp","value":91.5,"limit":80,"unit":"°C","condition":"above","since":"2026-12-07T07:59:00.000Z"},"readings":{},"occurrences":1,"cmms":null}"#;

    fn wo() -> WorkOrderDoc {
        received::work_order(WO.as_bytes()).unwrap()
    }

    fn own() -> MaximoConfig {
        MaximoConfig {
            api_key: Secret::new("key-SECRET"),
            site_id: "BEDFORD".into(),
            object_structure: "mxwo".into(),
            api_path: "oslc".into(),
            worktype_corrective: "CM".into(),
            worktype_preventive: "PM".into(),
            key_field: "externalrefid".into(),
            priorities: [4, 3, 2, 1],
        }
    }

    fn maximo_with(
        own: MaximoConfig,
        assets: &[(&str, &str)],
        locations: &[(&str, &str)],
    ) -> Maximo {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        let config = CmmsConfig {
            name: "maximo".into(),
            kind: CmmsKind::Maximo(own.clone()),
            url: "https://mx.example/maximo/".into(),
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
        Maximo::new(&config, &own)
    }

    fn maximo() -> Maximo {
        maximo_with(own(), &[("P-101", "11430")], &[("Hall 2", "BR430")])
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

    fn body_of(req: &Request) -> Json {
        serde_json::from_slice(req.body.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn the_create_posts_the_work_order_with_the_properties_header() {
        let req = maximo().create(&wo(), Event::Raised).unwrap();
        assert_eq!(req.method, Method::Post);
        assert_eq!(req.url, "https://mx.example/maximo/oslc/os/mxwo?lean=1");
        assert_eq!(header(&req, "apikey"), Some("key-SECRET"));
        assert_eq!(header(&req, "accept"), Some("application/json"));
        assert_eq!(header(&req, "content-type"), Some("application/json"));
        assert_eq!(header(&req, "properties"), Some("wonum,status"));
        let body = body_of(&req);
        assert_eq!(body["description"], "Bearing hot");
        assert_eq!(body["assetnum"], "11430");
        assert_eq!(body["location"], "BR430");
        assert_eq!(body["siteid"], "BEDFORD");
        assert_eq!(body["worktype"], "CM");
        assert_eq!(body["wopriority"], 2);
        assert!(body["wopriority"].is_i64());
        assert_eq!(body["problemcode"], "BRG-HOT");
        assert!(body.get("failurecode").is_none());
        assert_eq!(body["reportdate"], "2026-12-07T08:00:00+00:00");
        assert_eq!(body["externalrefid"], "plant/gw/pump_hot/1");
        let long = body["description_longdescription"].as_str().unwrap();
        assert!(
            long.starts_with("Bearing temperature above limit."),
            "{long}"
        );
        assert!(
            long.contains("Rule pump_hot (above) on pump1.temp: value 91.5 °C, limit 80 °C"),
            "{long}"
        );
        assert!(long.contains("Procedure: SOP-12"), "{long}");
        assert!(long.contains("key plant/gw/pump_hot/1"), "{long}");
        assert!(long.contains("Gateway gw, site plant."), "{long}");
    }

    #[test]
    fn unmapped_assets_go_as_they_are_and_unmapped_locations_not_at_all() {
        let mut own = own();
        own.key_field = "fg_key".into();
        own.api_path = "/api/".into();
        own.object_structure = "mxapiwodetail".into();
        let maximo = maximo_with(own, &[], &[]);
        let mut doc = wo();
        doc.kind = "preventive".into();
        doc.priority = "critical".into();
        doc.problem_code = None;
        doc.title = "é".repeat(150);
        doc.created_at = "yesterday".into();
        let req = maximo.create(&doc, Event::Raised).unwrap();
        assert_eq!(
            req.url,
            "https://mx.example/maximo/api/os/mxapiwodetail?lean=1"
        );
        let body = body_of(&req);
        assert_eq!(body["assetnum"], "P-101");
        assert!(body.get("location").is_none());
        assert_eq!(body["worktype"], "PM");
        assert_eq!(body["wopriority"], 1);
        assert!(body.get("problemcode").is_none());
        assert!(body.get("reportdate").is_none());
        assert_eq!(body["fg_key"], "plant/gw/pump_hot/1");
        assert_eq!(body["description"].as_str().unwrap().chars().count(), 100);
        doc.priority = "urgent".into();
        let body = body_of(&maximo.create(&doc, Event::Raised).unwrap());
        assert!(body.get("wopriority").is_none());
    }

    #[test]
    fn the_lookup_queries_by_key_with_quotes_escaped() {
        let mut doc = wo();
        doc.key = r#"a "b"\c"#.into();
        let req = maximo().lookup(&doc).unwrap();
        assert_eq!(req.method, Method::Get);
        assert!(req.body.is_none());
        assert_eq!(header(&req, "apikey"), Some("key-SECRET"));
        assert!(header(&req, "content-type").is_none());
        let expected_where =
            exchange::encode_component(r#"externalrefid="a \"b\"\\c" and siteid="BEDFORD""#);
        assert_eq!(
            req.url,
            format!(
                "https://mx.example/maximo/oslc/os/mxwo?lean=1&oslc.select=wonum%2Cstatus%2Csiteid&oslc.where={expected_where}"
            )
        );
    }

    #[test]
    fn lookups_read_the_first_member() {
        let mx = maximo();
        let read = |body: &str| mx.read_lookup(&wo(), &answer(200, body));
        assert_eq!(
            read(
                r#"{"member":[{"wonum":"1234","status":"WAPPR","siteid":"BEDFORD"},{"wonum":"9"}],"href":"x"}"#
            ),
            Ok(Some(Found {
                reference: "1234".into(),
                status: Some(CmmsStatus::Accepted)
            }))
        );
        assert_eq!(
            read(r#"{"member":[{"wonum":"1234","status":"WHOLD"}]}"#),
            Ok(Some(Found {
                reference: "1234".into(),
                status: None
            }))
        );
        assert_eq!(read(r#"{"member":[]}"#), Ok(None));
        assert_eq!(
            read(r#"{"rdfs:member":[{"spi:wonum":"77","spi:status":"INPRG"}]}"#)
                .unwrap()
                .unwrap()
                .reference,
            "77"
        );
        assert!(matches!(read("<html>"), Err(Failure::Retry(_))));
        assert!(matches!(read(r#"{"x":1}"#), Err(Failure::Retry(_))));
        assert!(matches!(read(r#"{"member":{}}"#), Err(Failure::Retry(_))));
    }

    #[test]
    fn creates_read_wonum_or_retry_to_let_the_lookup_find_it() {
        let mx = maximo();
        assert_eq!(
            mx.read_create(&answer(
                201,
                r#"{"wonum":"1001","status":"WAPPR","href":"h"}"#
            )),
            Ok(Some(Found {
                reference: "1001".into(),
                status: Some(CmmsStatus::Accepted)
            }))
        );
        assert!(matches!(
            mx.read_create(&answer(201, "")),
            Err(Failure::Retry(_))
        ));
        assert!(matches!(
            mx.read_create(&answer(201, r#"{"href":"h"}"#)),
            Err(Failure::Retry(_))
        ));
    }

    #[test]
    fn errors_carry_maximos_message() {
        let mx = maximo();
        let refusal = r#"{"Error":{"extendedError":{"moreInfo":{"href":"x"}},"reasonCode":"BMXAA4195E","message":"BMXAA4195E - A value is required for the Site field on the WORKORDER object.","statusCode":"400"}}"#;
        assert_eq!(
            mx.read_create(&answer(400, refusal)),
            Err(Failure::Park(
                "HTTP 400: BMXAA4195E - A value is required for the Site field on the WORKORDER object.".into()
            ))
        );
        let old = r#"{"oslc:Error":{"oslc:statusCode":"401","oslc:message":"BMXAA7901E - You cannot log in at this time."}}"#;
        assert_eq!(
            mx.read_lookup(&wo(), &answer(401, old)),
            Err(Failure::Park(
                "HTTP 401: BMXAA7901E - You cannot log in at this time.".into()
            ))
        );
        assert!(matches!(
            mx.read_status(&answer(503, "busy")),
            Err(Failure::Retry(_))
        ));
        assert_eq!(error_message(b"{\"Error\":{}}"), None);
    }

    #[test]
    fn status_is_queried_by_wonum_and_site_and_mapped() {
        let mx = maximo();
        let req = mx.status("1234").unwrap();
        let expected_where = exchange::encode_component(r#"wonum="1234" and siteid="BEDFORD""#);
        assert_eq!(
            req.url,
            format!(
                "https://mx.example/maximo/oslc/os/mxwo?lean=1&oslc.select=wonum%2Cstatus&oslc.where={expected_where}"
            )
        );
        let read = |status: &str| {
            mx.read_status(&answer(
                200,
                &format!(r#"{{"member":[{{"wonum":"1234","status":"{status}"}}]}}"#),
            ))
            .unwrap()
            .and_then(|f| f.status)
        };
        for (text, status) in [
            ("WAPPR", Some(CmmsStatus::Accepted)),
            ("APPR", Some(CmmsStatus::Accepted)),
            ("WMATL", Some(CmmsStatus::Accepted)),
            ("WSCH", Some(CmmsStatus::Accepted)),
            ("INPRG", Some(CmmsStatus::InProgress)),
            ("COMP", Some(CmmsStatus::Closed)),
            ("CLOSE", Some(CmmsStatus::Closed)),
            ("CAN", Some(CmmsStatus::Cancelled)),
            ("close", Some(CmmsStatus::Closed)),
            ("WHOLD", None),
            ("", None),
        ] {
            assert_eq!(read(text), status, "{text}");
        }
        assert_eq!(mx.read_status(&answer(200, r#"{"member":[]}"#)), Ok(None));
    }

    #[test]
    fn no_updates_no_meters_and_no_secret_in_debug() {
        let mx = maximo();
        assert!(mx.update(&wo(), "1234", Event::Updated).is_none());
        let reading = received::meter(
            br#"{"schema":"fieldgate.meter/1","meter":"m","kind":"runtime","value":1.0,"ts":"2026-12-07T08:00:00Z"}"#,
        )
        .unwrap();
        assert!(mx.meter(&reading, "M1").is_none());
        for req in [
            mx.create(&wo(), Event::Raised).unwrap(),
            mx.lookup(&wo()).unwrap(),
            mx.status("1").unwrap(),
        ] {
            assert!(!format!("{req:?}").contains("SECRET"));
        }
    }

    #[test]
    fn report_dates_keep_whole_seconds_with_an_offset() {
        assert_eq!(
            report_date("2026-12-07T08:00:00Z").as_deref(),
            Some("2026-12-07T08:00:00+00:00")
        );
        assert_eq!(report_date("2026-12-07T08:00:00+02:00"), None);
        assert_eq!(report_date("ünïcödé-is-not-a-date!"), None);
    }
}
