//! The webhook and Maximo connectors' requests, sent with `reqwest` to
//! the fakes that check them against each vendor's reference: create,
//! lookup, status, refusals parked, outages retried, repeats dropped.
//! The requests are the pure vendor code's; the sending here stands in
//! for the delivery task.

use std::collections::BTreeMap;
use std::time::Duration;

use fieldgate::cmms::exchange::{Answer, CmmsStatus, Failure, Found, Method, Request};
use fieldgate::cmms::vendor::{Event, Maximo, Vendor, Webhook};
use fieldgate::config::{CmmsConfig, CmmsKind, MaximoConfig, Secret, WebhookAuth, WebhookConfig};
use fieldgate::contract::received::{self, WorkOrderDoc};

use crate::common::cmms::{maximo, webhook};

const WO: &str = r#"{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"01JEXAMPLE","key":"plant/gw/pump_hot/1","type":"corrective","status":"open","priority":"high","created_at":"2026-12-07T08:00:00.000Z","updated_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-101","location":"Hall 2","title":"Pump \"P-101\": bearing hot","description":"Bearing temperature above 80 °C.\nCheck lubrication.","problem_code":"BRG-HOT","procedure":null,"trigger":{"rule":"pump_hot","tag":"pump1.temp","value":91.5,"limit":80,"unit":"°C","condition":"above","since":"2026-12-07T07:59:00.000Z"},"readings":{"pump1.temp":91.5},"occurrences":1,"cmms":null}"#;

fn wo() -> WorkOrderDoc {
    received::work_order(WO.as_bytes()).unwrap()
}

fn connector(name: &str, url: String, kind: CmmsKind) -> CmmsConfig {
    CmmsConfig {
        name: name.into(),
        kind,
        url,
        timeout: Duration::from_secs(5),
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        poll_interval: Some(Duration::from_secs(60)),
        ca_file: None,
        work_orders: true,
        assets: BTreeMap::from([("P-101".to_owned(), "11430".to_owned())]),
        locations: BTreeMap::from([("Hall 2".to_owned(), "BR430".to_owned())]),
        meters: BTreeMap::new(),
        inbound: None,
    }
}

fn maximo_vendor(fake: &crate::common::cmms::FakeCmms, key: &str) -> Maximo {
    let own = MaximoConfig {
        api_key: Secret::new(key),
        site_id: "BEDFORD".into(),
        object_structure: "mxwo".into(),
        api_path: "oslc".into(),
        worktype_corrective: "CM".into(),
        worktype_preventive: "PM".into(),
        key_field: "externalrefid".into(),
        priorities: [4, 3, 2, 1],
    };
    let config = connector(
        "maximo",
        format!("{}/maximo", fake.url()),
        CmmsKind::Maximo(own.clone()),
    );
    Maximo::new(&config, &own)
}

fn webhook_vendor(
    fake: &crate::common::cmms::FakeCmms,
    auth: WebhookAuth,
    body: Option<&str>,
) -> Webhook {
    let own = WebhookConfig {
        method: "POST".into(),
        headers: vec![("X-Plant".into(), "north".into())],
        auth,
        body: body.map(str::to_owned),
        content_type: "application/json".into(),
        events: vec!["raised".into(), "updated".into(), "closed".into()],
    };
    let config = connector(
        "hook",
        format!("{}/hooks/fieldgate", fake.url()),
        CmmsKind::Webhook(own.clone()),
    );
    Webhook::new(&config, &own)
}

/// Sends `req` as the delivery task would; `Err` for a timeout or a
/// refused connection.
async fn send(req: &Request, timeout: Duration) -> Result<Answer, String> {
    let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
    let method = match req.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
    };
    let mut builder = client.request(method, &req.url);
    for (name, value) in &req.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = &req.body {
        builder = builder.body(body.clone());
    }
    let answer = builder.send().await.map_err(|e| e.to_string())?;
    let status = answer.status().as_u16();
    let body = answer.bytes().await.map_err(|e| e.to_string())?.to_vec();
    Ok(Answer { status, body })
}

async fn exchange(req: &Request) -> Answer {
    send(req, Duration::from_secs(5)).await.unwrap()
}

#[tokio::test]
async fn maximo_creates_once_finds_by_key_and_maps_status() {
    let fake = maximo::start("mx-key").await;
    let mx = maximo_vendor(&fake, "mx-key");
    let doc = wo();

    let lookup = mx.lookup(&doc).unwrap();
    assert_eq!(mx.read_lookup(&doc, &exchange(&lookup).await), Ok(None));

    let created = mx
        .read_create(&exchange(&mx.create(&doc, Event::Raised).unwrap()).await)
        .unwrap()
        .unwrap();
    assert_eq!(
        created,
        Found {
            reference: "1001".into(),
            status: Some(CmmsStatus::Accepted)
        }
    );
    let held = fake.created();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].body["assetnum"], "11430");
    assert_eq!(held[0].body["location"], "BR430");
    assert_eq!(held[0].body["wopriority"], 2);
    assert_eq!(held[0].body["externalrefid"], "plant/gw/pump_hot/1");

    // A retry after a lost answer finds it instead of creating another.
    let found = mx
        .read_lookup(&doc, &exchange(&lookup).await)
        .unwrap()
        .unwrap();
    assert_eq!(found.reference, "1001");

    let status = mx.status("1001").unwrap();
    let poll = async || mx.read_status(&exchange(&status).await).unwrap();
    assert_eq!(poll().await.unwrap().status, Some(CmmsStatus::Accepted));
    fake.set_status("1001", "INPRG");
    assert_eq!(poll().await.unwrap().status, Some(CmmsStatus::InProgress));
    fake.set_status("1001", "WHOLD");
    assert_eq!(poll().await, None);
    fake.set_status("1001", "COMP");
    assert_eq!(poll().await.unwrap().status, Some(CmmsStatus::Closed));
    fake.set_status("1001", "CAN");
    assert_eq!(poll().await.unwrap().status, Some(CmmsStatus::Cancelled));
    assert_eq!(
        mx.read_status(&exchange(&mx.status("9999").unwrap()).await),
        Ok(None)
    );

    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn maximo_refusals_park_and_an_outage_retries() {
    let fake = maximo::start("mx-key").await;
    let doc = wo();

    let wrong = maximo_vendor(&fake, "not-the-key");
    let refused = wrong.read_create(&exchange(&wrong.create(&doc, Event::Raised).unwrap()).await);
    match refused {
        Err(Failure::Park(text)) => assert!(text.starts_with("HTTP 401: BMXAA7901E"), "{text}"),
        other => panic!("{other:?}"),
    }

    let mx = maximo_vendor(&fake, "mx-key");
    fake.with(|s| s.unknown_assets.push("11430".into()));
    match mx.read_create(&exchange(&mx.create(&doc, Event::Raised).unwrap()).await) {
        Err(Failure::Park(text)) => {
            assert!(text.starts_with("HTTP 400: BMXAA"), "{text}");
            assert!(text.contains("11430"), "{text}");
        }
        other => panic!("{other:?}"),
    }
    fake.with(|s| s.unknown_assets.clear());

    fake.set_down(true);
    assert!(matches!(
        mx.read_lookup(&doc, &exchange(&mx.lookup(&doc).unwrap()).await),
        Err(Failure::Retry(_))
    ));
    assert!(matches!(
        mx.read_create(&exchange(&mx.create(&doc, Event::Raised).unwrap()).await),
        Err(Failure::Retry(_))
    ));
    fake.set_down(false);
    assert!(
        mx.read_create(&exchange(&mx.create(&doc, Event::Raised).unwrap()).await)
            .unwrap()
            .is_some()
    );
    assert_eq!(fake.created().len(), 1);
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_maximo_create_left_unanswered_is_found_by_the_next_lookup() {
    let fake = maximo::start("mx-key").await;
    fake.with(|s| s.swallow_creates = 1);
    let mx = maximo_vendor(&fake, "mx-key");
    let doc = wo();
    let create = mx.create(&doc, Event::Raised).unwrap();
    assert!(send(&create, Duration::from_millis(300)).await.is_err());
    // The delivery task retries: lookup first, and it is there.
    let found = mx
        .read_lookup(&doc, &exchange(&mx.lookup(&doc).unwrap()).await)
        .unwrap()
        .unwrap();
    assert_eq!(found.reference, "1001");
    assert_eq!(fake.created().len(), 1);
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_webhook_takes_each_delivery_once_with_a_bearer_token() {
    let fake = webhook::start("hook-token").await;
    let hook = webhook_vendor(&fake, WebhookAuth::Bearer(Secret::new("hook-token")), None);
    let doc = wo();
    let raised = hook.create(&doc, Event::Raised).unwrap();
    let first = hook.read_create(&exchange(&raised).await).unwrap().unwrap();
    assert_eq!(first.reference, "WH-1");
    // The same delivery again (a retry after a lost answer): dropped.
    let again = hook.read_create(&exchange(&raised).await).unwrap().unwrap();
    assert_eq!(again.reference, "WH-1");
    assert_eq!(fake.created().len(), 1);
    // The body is the message as published.
    assert_eq!(fake.requests()[0].body, WO.as_bytes());
    assert_eq!(fake.created()[0].body["readings"]["pump1.temp"], 91.5);
    assert_eq!(fake.requests()[0].method, "POST");
    assert_eq!(fake.requests()[0].uri, "/hooks/fieldgate");
    assert_eq!(fake.requests()[0].headers["x-plant"], "north");

    // The next event is another delivery.
    let closed = hook.update(&doc, "WH-1", Event::Closed).unwrap();
    let next = hook.read_create(&exchange(&closed).await).unwrap().unwrap();
    assert_eq!(next.reference, "WH-2");
    assert_eq!(fake.created().len(), 2);
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_signed_webhook_with_a_template_sends_valid_json() {
    let fake = webhook::start("hmac-secret").await;
    let template = r#"{"text": "{title}", "detail": "{description}", "asset": "{asset}", "value": {value}, "event": "{event}", "work_order": {json}}"#;
    let hook = webhook_vendor(
        &fake,
        WebhookAuth::Hmac {
            secret: Secret::new("hmac-secret"),
            header: "X-Fieldgate-Signature".into(),
        },
        Some(template),
    );
    let doc = wo();
    let answer = exchange(&hook.create(&doc, Event::Raised).unwrap()).await;
    assert_eq!(
        hook.read_create(&answer).unwrap().unwrap().reference,
        "WH-1"
    );
    let body = &fake.created()[0].body;
    assert_eq!(body["text"], "Pump \"P-101\": bearing hot");
    assert_eq!(
        body["detail"],
        "Bearing temperature above 80 °C.\nCheck lubrication."
    );
    assert_eq!(body["value"], 91.5);
    assert_eq!(body["event"], "raised");
    assert_eq!(body["work_order"]["key"], "plant/gw/pump_hot/1");
    // The trait's create (rebuilt JSON) is signed as well.
    let updated = exchange(&hook.create(&doc, Event::Updated).unwrap()).await;
    assert_eq!(updated.status, 201);

    // A wrong secret is a refusal: parked.
    let wrong = webhook_vendor(
        &fake,
        WebhookAuth::Hmac {
            secret: Secret::new("other"),
            header: "X-Fieldgate-Signature".into(),
        },
        Some(template),
    );
    let refused = wrong.read_create(&exchange(&wrong.create(&doc, Event::Closed).unwrap()).await);
    assert!(matches!(refused, Err(Failure::Park(t)) if t.starts_with("HTTP 401")));
    assert_eq!(fake.created().len(), 2);
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn webhook_refusals_park_and_an_outage_retries() {
    let fake = webhook::start("u-pass").await;
    let hook = webhook_vendor(
        &fake,
        WebhookAuth::Basic {
            username: "fieldgate".into(),
            password: Secret::new("u-pass"),
        },
        None,
    );
    let doc = wo();
    let raised = hook.create(&doc, Event::Raised).unwrap();

    fake.with(|s| s.unknown_assets.push("P-101".into()));
    assert_eq!(
        hook.read_create(&exchange(&raised).await),
        Err(Failure::Park("HTTP 422: unknown asset P-101".into()))
    );
    fake.with(|s| s.unknown_assets.clear());

    fake.set_down(true);
    assert_eq!(
        hook.read_create(&exchange(&raised).await),
        Err(Failure::Retry("HTTP 503: maintenance".into()))
    );
    fake.set_down(false);
    assert_eq!(
        hook.read_create(&exchange(&raised).await)
            .unwrap()
            .unwrap()
            .reference,
        "WH-1"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn a_slow_receiver_times_out_and_the_retry_is_dropped_as_a_repeat() {
    let fake = webhook::start("").await;
    fake.with(|s| s.swallow_creates = 1);
    let hook = webhook_vendor(&fake, WebhookAuth::None, None);
    let raised = hook.create(&wo(), Event::Raised).unwrap();
    assert!(send(&raised, Duration::from_millis(300)).await.is_err());
    let retried = hook.read_create(&exchange(&raised).await).unwrap().unwrap();
    assert_eq!(retried.reference, "WH-1");
    assert_eq!(fake.created().len(), 1);

    fake.with(|s| s.delay = Duration::from_millis(500));
    let closed = hook.create(&wo(), Event::Closed).unwrap();
    assert!(send(&closed, Duration::from_millis(100)).await.is_err());
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test]
async fn the_fakes_notice_requests_off_the_reference() {
    let fake = maximo::start("mx-key").await;
    let mx = maximo_vendor(&fake, "mx-key");
    let mut create = mx.create(&wo(), Event::Raised).unwrap();
    create.headers.retain(|(n, _)| n != "properties");
    let mut body: serde_json::Value =
        serde_json::from_slice(create.body.as_deref().unwrap()).unwrap();
    body["description"] = "x".repeat(101).into();
    body["wopriority"] = "2".into();
    create.body = Some(serde_json::to_vec(&body).unwrap());
    exchange(&create).await;
    create.headers.push(("properties".into(), "wonum".into()));
    assert_eq!(exchange(&create).await.status, 400);
    let problems = fake.problems();
    assert!(
        problems.iter().any(|p| p.contains("properties")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("more than 100")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("wopriority")),
        "{problems:?}"
    );

    let fake = webhook::start("").await;
    let hook = webhook_vendor(&fake, WebhookAuth::None, None);
    let mut raised = hook.create(&wo(), Event::Raised).unwrap();
    for (name, value) in &mut raised.headers {
        if name == "Idempotency-Key" {
            *value = "retry-1".into();
        }
    }
    raised.body = Some(b"{not json".to_vec());
    assert_eq!(exchange(&raised).await.status, 400);
    let problems = fake.problems();
    assert!(
        problems.iter().any(|p| p.contains("Idempotency-Key")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not JSON") || p.contains("is not")),
        "{problems:?}"
    );
}
