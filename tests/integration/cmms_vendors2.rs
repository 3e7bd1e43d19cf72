//! The MaintainX and UpKeep vendors against their fake servers: each
//! vendor's pure requests are sent with `reqwest` as the delivery task
//! would, and the answers read back with the vendor's own readers. The
//! fakes check every request against the vendor's reference; their
//! problems must stay empty. Loopback only, every wait bounded.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::common::cmms::{FakeCmms, maintainx, upkeep};
use fieldgate::cmms::exchange::{Answer, CmmsStatus, Failure, Found, Request};
use fieldgate::cmms::vendor::{Event, MaintainX, UpKeep, Vendor};
use fieldgate::config::{CmmsConfig, CmmsKind, MaintainXConfig, Secret, UpKeepConfig};
use fieldgate::contract::received::{self, MeterDoc, WorkOrderDoc};

const MX_KEY: &str = "mx-api-key-for-tests";
const UK_TOKEN: &str = "r:upkeep-token-for-tests";

/// Sends `request` as the delivery task would; a transport failure (a
/// timeout, a refused connection) may pass later.
async fn send(request: &Request, timeout: Duration) -> Result<Answer, Failure> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let method = reqwest::Method::from_bytes(request.method.as_str().as_bytes()).unwrap();
    let mut builder = client.request(method, &request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &request.body {
        builder = builder.body(body.clone());
    }
    let response = builder
        .send()
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    let status = response.status().as_u16();
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure::Retry(e.to_string()))?;
    Ok(Answer {
        status,
        body: body.to_vec(),
    })
}

async fn exchange(request: &Request) -> Answer {
    send(request, Duration::from_secs(5)).await.unwrap()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn config(kind: CmmsKind, url: String, assets: &[(&str, &str)]) -> CmmsConfig {
    CmmsConfig {
        name: kind.as_str().to_owned(),
        kind,
        url,
        timeout: Duration::from_secs(5),
        retry_min: Duration::from_millis(100),
        retry_max: Duration::from_secs(1),
        poll_interval: Some(Duration::from_secs(1)),
        ca_file: None,
        work_orders: true,
        assets: map(assets),
        locations: BTreeMap::new(),
        meters: map(&[("pump1_runtime", "53")]),
        inbound: None,
    }
}

fn maintainx_vendor(fake: &FakeCmms, key: &str, assets: &[(&str, &str)]) -> MaintainX {
    let own = MaintainXConfig {
        api_key: Secret::new(key),
    };
    let config = config(CmmsKind::MaintainX(own.clone()), fake.url(), assets);
    MaintainX::new(&config, &own)
}

fn upkeep_vendor(fake: &FakeCmms, token: &str, assets: &[(&str, &str)]) -> UpKeep {
    let own = UpKeepConfig {
        session_token: Secret::new(token),
    };
    let config = config(CmmsKind::UpKeep(own.clone()), fake.url(), assets);
    UpKeep::new(&config, &own)
}

fn work_order(priority: &str) -> WorkOrderDoc {
    let text = format!(
        r#"{{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"01J","key":"plant/gw/pump_hot/1","type":"corrective","status":"open","priority":"{priority}","created_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Bearing hot","description":"Bearing above 80 °C","trigger":{{"rule":"pump_hot"}}}}"#
    );
    received::work_order(text.as_bytes()).unwrap()
}

fn reading() -> MeterDoc {
    received::meter(
        br#"{"schema":"fieldgate.meter/1","meter":"pump1_runtime","tag":"pump1.running","kind":"runtime","value":1234.5,"unit":"h","ts":"2026-12-07T08:00:00.000Z"}"#,
    )
    .unwrap()
}

/// What the vendor's lookup finds of `wo` in the fake.
async fn looked_up(vendor: &dyn Vendor, wo: &WorkOrderDoc) -> Option<Found> {
    let request = vendor.lookup(wo).unwrap();
    vendor.read_lookup(wo, &exchange(&request).await).unwrap()
}

/// `work_order` with another key and its own key line.
fn work_order_keyed(key: &str) -> WorkOrderDoc {
    let mut wo = work_order("high");
    wo.key = key.to_owned();
    wo
}

/// The status the vendor reads after the fake is set to `vendor_status`.
async fn polled(
    vendor: &dyn Vendor,
    fake: &FakeCmms,
    reference: &str,
    vendor_status: &str,
) -> Option<Found> {
    fake.set_status(reference, vendor_status);
    let request = vendor.status(reference).unwrap();
    vendor.read_status(&exchange(&request).await).unwrap()
}

#[tokio::test]
async fn maintainx_work_order_is_created_and_its_status_read_back() {
    let fake = maintainx::start(MX_KEY).await;
    let vendor = maintainx_vendor(&fake, MX_KEY, &[("P-101", "42")]);
    let wo = work_order("critical");
    // Nothing held yet: the lookup finds nothing.
    assert_eq!(looked_up(&vendor, &wo).await, None);

    let request = vendor.create(&wo, Event::Raised).unwrap();
    let found = vendor
        .read_create(&exchange(&request).await)
        .unwrap()
        .unwrap();
    assert_eq!(found.reference, "1000");

    let created = fake.created();
    assert_eq!(created.len(), 1);
    let body = &created[0].body;
    assert_eq!(body["priority"], "HIGH");
    assert_eq!(body["assetId"], json!(42));
    assert_eq!(body["type"], "REACTIVE");
    assert_eq!(body["externalData"]["fieldgateKey"], "plant/gw/pump_hot/1");
    assert!(body.get("locationId").is_none(), "Hall 2 is not mapped");
    let sent = &fake.requests()[1];
    assert_eq!(
        (sent.method.as_str(), sent.uri.as_str()),
        ("POST", "/v1/workorders")
    );
    assert_eq!(sent.headers["authorization"], format!("Bearer {MX_KEY}"));
    assert_eq!(sent.headers["accept"], "application/json");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&sent.body).unwrap(),
        *body
    );

    // The fake starts it OPEN.
    let open = polled(&vendor, &fake, "1000", "OPEN").await;
    assert_eq!(
        open,
        Some(Found {
            reference: "1000".into(),
            status: Some(CmmsStatus::Accepted)
        })
    );
    let started = polled(&vendor, &fake, "1000", "IN_PROGRESS").await;
    assert_eq!(started.unwrap().status, Some(CmmsStatus::InProgress));
    assert_eq!(polled(&vendor, &fake, "1000", "ON_HOLD").await, None);
    let done = polled(&vendor, &fake, "1000", "DONE").await;
    assert_eq!(done.unwrap().status, Some(CmmsStatus::Closed));
    let cancelled = polled(&vendor, &fake, "1000", "CANCELED").await;
    assert_eq!(cancelled.unwrap().status, Some(CmmsStatus::Cancelled));

    // A second work order gets the next id.
    let request = vendor.create(&work_order("low"), Event::Raised).unwrap();
    let found = vendor
        .read_create(&exchange(&request).await)
        .unwrap()
        .unwrap();
    assert_eq!(found.reference, "1001");

    // A status poll of a work order MaintainX does not have is refused.
    let gone = vendor.status("4242").unwrap();
    assert!(matches!(
        vendor.read_status(&exchange(&gone).await),
        Err(Failure::Park(t)) if t.contains("Not Found")
    ));
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn maintainx_meter_reading_is_recorded() {
    let fake = maintainx::start(MX_KEY).await;
    let vendor = maintainx_vendor(&fake, MX_KEY, &[]);
    let request = vendor.meter(&reading(), "53").unwrap();
    let answer = exchange(&request).await;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let readings = fake.with(|s| s.meter_readings.clone());
    assert_eq!(readings.len(), 1);
    assert_eq!(readings[0].0, "53");
    assert_eq!(readings[0].1["value"], json!(1234.5));
    assert_eq!(readings[0].1["readingDate"], "2026-12-07T08:00:00.000Z");
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn maintainx_refusals_park_and_outages_retry() {
    let fake = maintainx::start(MX_KEY).await;
    let wo = work_order("high");

    // An asset MaintainX does not know: 400, parked with its text.
    fake.with(|s| s.unknown_assets.push("42".into()));
    let vendor = maintainx_vendor(&fake, MX_KEY, &[("P-101", "42")]);
    let answer = exchange(&vendor.create(&wo, Event::Raised).unwrap()).await;
    match vendor.read_create(&answer) {
        Err(Failure::Park(text)) => assert_eq!(text, "HTTP 400: Asset not found (assetId)"),
        other => panic!("{other:?}"),
    }

    // A wrong key: 401, parked.
    let wrong = maintainx_vendor(&fake, "not-the-key", &[]);
    let answer = exchange(&wrong.create(&wo, Event::Raised).unwrap()).await;
    assert_eq!(
        wrong.read_create(&answer),
        Err(Failure::Park("HTTP 401".into()))
    );

    // Down: 503, retried; then back.
    let vendor = maintainx_vendor(&fake, MX_KEY, &[]);
    fake.set_down(true);
    let answer = exchange(&vendor.create(&wo, Event::Raised).unwrap()).await;
    assert!(matches!(
        vendor.read_create(&answer),
        Err(Failure::Retry(_))
    ));
    fake.set_down(false);
    let answer = exchange(&vendor.create(&wo, Event::Raised).unwrap()).await;
    assert!(matches!(vendor.read_create(&answer), Ok(Some(_))));
    assert_eq!(fake.created().len(), 1, "only the answered create is held");

    // A mapping that is not an integer never reaches MaintainX.
    let bad = maintainx_vendor(&fake, MX_KEY, &[("P-101", "PUMP-101")]);
    assert!(matches!(
        bad.create(&wo, Event::Raised),
        Err(Failure::Park(_))
    ));
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn maintainx_swallowed_create_is_held_but_never_answered() {
    let fake = maintainx::start(MX_KEY).await;
    fake.with(|s| s.swallow_creates = 1);
    let vendor = maintainx_vendor(&fake, MX_KEY, &[]);
    let request = vendor.create(&work_order("medium"), Event::Raised).unwrap();
    let lost = send(&request, Duration::from_millis(300)).await;
    assert!(matches!(lost, Err(Failure::Retry(_))), "{lost:?}");
    assert_eq!(fake.created().len(), 1);
    // The next create is answered.
    let answer = exchange(&request).await;
    assert_eq!(
        vendor.read_create(&answer).unwrap().unwrap().reference,
        "1001"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn upkeep_work_order_is_created_and_its_status_read_back() {
    let fake = upkeep::start(UK_TOKEN).await;
    let vendor = upkeep_vendor(&fake, UK_TOKEN, &[("P-101", "gHhn43LMh3")]);
    let wo = work_order("medium");
    assert_eq!(looked_up(&vendor, &wo).await, None);
    assert_eq!(vendor.meter(&reading(), "53"), None);

    let request = vendor.create(&wo, Event::Raised).unwrap();
    let found = vendor
        .read_create(&exchange(&request).await)
        .unwrap()
        .unwrap();
    assert_eq!(
        found,
        Found {
            reference: "Wo00000001".into(),
            status: Some(CmmsStatus::Accepted)
        }
    );
    let body = &fake.created()[0].body;
    assert_eq!(body["priority"], json!(2));
    assert_eq!(body["asset"], "gHhn43LMh3");
    let sent = &fake.requests()[1];
    assert_eq!(
        (sent.method.as_str(), sent.uri.as_str()),
        ("POST", "/api/v2/work-orders/")
    );
    assert_eq!(sent.headers["session-token"], UK_TOKEN);
    assert!(!sent.body.is_empty());
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("fieldgate key: plant/gw/pump_hot/1")
    );

    let started = polled(&vendor, &fake, "Wo00000001", "inProgress").await;
    assert_eq!(started.unwrap().status, Some(CmmsStatus::InProgress));
    assert_eq!(polled(&vendor, &fake, "Wo00000001", "onHold").await, None);
    let done = polled(&vendor, &fake, "Wo00000001", "complete").await;
    assert_eq!(
        done,
        Some(Found {
            reference: "Wo00000001".into(),
            status: Some(CmmsStatus::Closed)
        })
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn upkeep_refusals_park_and_outages_retry() {
    let fake = upkeep::start(UK_TOKEN).await;
    let wo = work_order("low");

    fake.with(|s| s.unknown_assets.push("nope000001".into()));
    let vendor = upkeep_vendor(&fake, UK_TOKEN, &[("P-101", "nope000001")]);
    let answer = exchange(&vendor.create(&wo, Event::Raised).unwrap()).await;
    match vendor.read_create(&answer) {
        Err(Failure::Park(text)) => {
            assert_eq!(text, "HTTP 400: Asset nope000001 does not exist")
        }
        other => panic!("{other:?}"),
    }

    let wrong = upkeep_vendor(&fake, "r:expired", &[]);
    let answer = exchange(&wrong.create(&wo, Event::Raised).unwrap()).await;
    assert_eq!(
        wrong.read_create(&answer),
        Err(Failure::Park("HTTP 401: Invalid session token".into()))
    );

    let vendor = upkeep_vendor(&fake, UK_TOKEN, &[]);
    fake.set_down(true);
    let answer = exchange(&vendor.create(&wo, Event::Raised).unwrap()).await;
    assert!(matches!(
        vendor.read_create(&answer),
        Err(Failure::Retry(_))
    ));
    let poll = exchange(&vendor.status("Wo00000001").unwrap()).await;
    assert!(matches!(vendor.read_status(&poll), Err(Failure::Retry(_))));
    fake.set_down(false);
    let answer = exchange(&vendor.create(&wo, Event::Raised).unwrap()).await;
    assert_eq!(
        vendor.read_create(&answer).unwrap().unwrap().reference,
        "Wo00000001"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

/// A create whose answer is lost (the fake holds the work order and never
/// answers; the client times out, as after a gateway killed mid-request),
/// then the delivery task's lookup before creating again: it finds that
/// work order, so nothing is created twice. Another work order with the
/// same title and asset but another key is not taken for it.
#[tokio::test]
async fn maintainx_lookup_finds_the_create_whose_answer_was_lost() {
    let fake = maintainx::start(MX_KEY).await;
    let vendor = maintainx_vendor(&fake, MX_KEY, &[("P-101", "42")]);
    // Same title and asset, another key: created and answered first.
    let other = work_order_keyed("plant/gw/pump_hot/7");
    let answer = exchange(&vendor.create(&other, Event::Raised).unwrap()).await;
    assert_eq!(
        vendor.read_create(&answer).unwrap().unwrap().reference,
        "1000"
    );

    let wo = work_order("high");
    assert_eq!(looked_up(&vendor, &wo).await, None);
    fake.with(|s| s.swallow_creates = 1);
    let request = vendor.create(&wo, Event::Raised).unwrap();
    let lost = send(&request, Duration::from_millis(300)).await;
    assert!(matches!(lost, Err(Failure::Retry(_))), "{lost:?}");

    // The retry looks up first and finds it.
    assert_eq!(
        looked_up(&vendor, &wo).await,
        Some(Found {
            reference: "1001".into(),
            status: Some(CmmsStatus::Accepted)
        })
    );
    assert_eq!(looked_up(&vendor, &other).await.unwrap().reference, "1000");
    assert_eq!(
        looked_up(&vendor, &work_order_keyed("plant/gw/pump_hot/1/x")).await,
        None
    );
    let created = fake.created();
    assert_eq!(created.len(), 2, "one work order per key");
    assert_eq!(
        created
            .iter()
            .filter(|h| h.body["externalData"]["fieldgateKey"] == "plant/gw/pump_hot/1")
            .count(),
        1
    );
    let lookup = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == "GET")
        .unwrap();
    assert!(
        lookup
            .uri
            .starts_with("/v1/workorders?title=Bearing%20hot&assets=42&sort=-createdAt&limit=100"),
        "{}",
        lookup.uri
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

/// The same for UpKeep: the swallowed create is found by its key line.
#[tokio::test]
async fn upkeep_lookup_finds_the_create_whose_answer_was_lost() {
    let fake = upkeep::start(UK_TOKEN).await;
    let vendor = upkeep_vendor(&fake, UK_TOKEN, &[("P-101", "gHhn43LMh3")]);
    let other = work_order_keyed("plant/gw/pump_hot/7");
    let answer = exchange(&vendor.create(&other, Event::Raised).unwrap()).await;
    assert_eq!(
        vendor.read_create(&answer).unwrap().unwrap().reference,
        "Wo00000001"
    );

    let wo = work_order("high");
    assert_eq!(looked_up(&vendor, &wo).await, None);
    fake.with(|s| s.swallow_creates = 1);
    let request = vendor.create(&wo, Event::Raised).unwrap();
    let lost = send(&request, Duration::from_millis(300)).await;
    assert!(matches!(lost, Err(Failure::Retry(_))), "{lost:?}");

    assert_eq!(
        looked_up(&vendor, &wo).await,
        Some(Found {
            reference: "Wo00000002".into(),
            status: Some(CmmsStatus::Accepted)
        })
    );
    assert_eq!(
        looked_up(&vendor, &other).await.unwrap().reference,
        "Wo00000001"
    );
    // Started in UpKeep meanwhile: the lookup reports it.
    fake.set_status("Wo00000002", "inProgress");
    assert_eq!(
        looked_up(&vendor, &wo).await.unwrap().status,
        Some(CmmsStatus::InProgress)
    );
    assert_eq!(fake.created().len(), 2, "one work order per key");
    let lookup = fake
        .requests()
        .into_iter()
        .rfind(|r| r.method == "GET")
        .unwrap();
    assert_eq!(
        lookup.uri,
        "/api/v2/work-orders?title=Bearing%20hot&asset=gHhn43LMh3&limit=100"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}
