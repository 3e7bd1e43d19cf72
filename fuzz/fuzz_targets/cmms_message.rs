//! What the CMMS connectors and `fieldgate bridge` read from outside: a
//! work-order or meter message from any publisher on the broker, a claim,
//! a status pushed over HTTP, and every vendor's answers (lookup, create,
//! status) with any status code and body. None may panic; a vendor's
//! reading of an answer is a value, a retry or a park.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use fieldgate::cmms::exchange::Answer;
use fieldgate::cmms::vendor::{self, Event, Vendor};
use fieldgate::config::{
    CmmsConfig, CmmsKind, MaintainXConfig, MaximoConfig, Secret, UpKeepConfig, WebhookAuth,
    WebhookConfig,
};
use fieldgate::contract::claims::Claim;
use fieldgate::contract::{inbound, received, topics};
use libfuzzer_sys::fuzz_target;

/// A known-good work order: the vendors' readers are handed it with the
/// answers (a lookup matches its key in what the CMMS lists).
const WO: &str = r#"{"schema":"fieldgate.workorder/1","store":"S","seq":3,"id":"01J","key":"plant/gw/hot/P-1/1-01J","type":"corrective","status":"open","priority":"high","created_at":"2026-12-07T08:00:00.000Z","updated_at":"2026-12-07T08:00:00.000Z","site":"plant","gateway":"gw","asset":"P-1","location":"Hall 2","title":"Bearing hot","description":"d","problem_code":"BRG","procedure":null,"trigger":{"rule":"hot","tag":"pump.temp","value":91.5,"limit":80,"unit":"degC","condition":"above","since":"2026-12-07T07:59:00.000Z"},"readings":{},"occurrences":1,"last":{"value":91.5,"at":"2026-12-07T08:00:00.000Z"},"cmms":null}"#;

fn config(kind: CmmsKind) -> CmmsConfig {
    let mut assets = BTreeMap::new();
    assets.insert("P-1".to_owned(), "11430".to_owned());
    CmmsConfig {
        name: "fuzz".into(),
        kind,
        url: "http://127.0.0.1:9".into(),
        timeout: Duration::from_secs(1),
        retry_min: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        poll_interval: None,
        ca_file: None,
        work_orders: true,
        assets,
        locations: BTreeMap::new(),
        meters: BTreeMap::new(),
        inbound: None,
    }
}

fn vendors() -> &'static Vec<Box<dyn Vendor>> {
    static VENDORS: OnceLock<Vec<Box<dyn Vendor>>> = OnceLock::new();
    VENDORS.get_or_init(|| {
        let key = || Secret::new(b"k".to_vec());
        [
            CmmsKind::Webhook(WebhookConfig {
                method: "POST".into(),
                headers: Vec::new(),
                auth: WebhookAuth::Hmac {
                    secret: key(),
                    header: "X-Fieldgate-Signature".into(),
                },
                body: Some(r#"{"t":"{title}","w":{json},"v":"{value}"}"#.into()),
                content_type: "application/json".into(),
                events: vec!["raised".into()],
            }),
            CmmsKind::Maximo(MaximoConfig {
                api_key: key(),
                site_id: "BEDFORD".into(),
                object_structure: "mxwo".into(),
                api_path: "oslc".into(),
                worktype_corrective: "CM".into(),
                worktype_preventive: "PM".into(),
                key_field: "externalrefid".into(),
                priorities: [4, 3, 2, 1],
            }),
            CmmsKind::MaintainX(MaintainXConfig { api_key: key() }),
            CmmsKind::UpKeep(UpKeepConfig { session_token: key() }),
        ]
        .into_iter()
        .map(|k| vendor::for_config(&config(k)))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        // A message on a gateway's tree, as the bridge reads it; a work
        // order that reads is then turned into every vendor's requests.
        0 => {
            let _ = topics::parse_gateway_topic("fieldgate", &String::from_utf8_lossy(rest));
            let _ = received::meter(rest);
            if let Ok(wo) = received::work_order(rest) {
                for v in vendors() {
                    let _ = v.lookup(&wo);
                    let _ = v.create(&wo, Event::Raised);
                    let _ = v.update(&wo, "REF-1", Event::Updated);
                }
            }
        }
        // A claim, and a status pushed over HTTP.
        1 => {
            let _ = Claim::read(rest);
            let _ = inbound::work_order_status("01J", rest);
        }
        // Any answer of a CMMS, with the status code from the next bytes.
        _ => {
            let Some((code, body)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let answer = Answer {
                status: 100 + u16::from_be_bytes(*code) % 500,
                body: body.to_vec(),
            };
            let wo = received::work_order(WO.as_bytes()).expect("the sample work order reads");
            for v in vendors() {
                let _ = v.read_lookup(&wo, &answer);
                let _ = v.read_create(&answer);
                let _ = v.read_status(&answer);
            }
        }
    }
});
