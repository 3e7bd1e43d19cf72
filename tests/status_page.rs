//! The status page's endpoints over loopback, without a browser (the
//! browser test is `tests/browser/`, run by `.ci/run`): simulator →
//! gateway (in this process) → embedded broker, with the page, its event
//! stream, its trends and its acknowledge and shelve requests read and
//! sent by a plain HTTP/1.1 client. Every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::http::{Events, get, get_when_up, post};
use common::subscriber::Subscriber;
use common::{broker, gateway};
use fieldgate::config::Config;
use fieldgate::sim::{Scenario, Simulator};
use fieldgate::store::HistoryKind;
use fieldgate::store::inspect::Inspector;

const PREFIX: &str = "fieldgate/test/page/";
const TOKEN: &str = "0123456789abcdef-page-token";

async fn simulator() -> (Simulator, SocketAddr) {
    let scenario = Scenario::from_toml_str(
        r#"
seed = 7
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
  { signal = "running", area = "holding", address = 0, type = "bit", bit = 0 },
]
"#,
    )
    .unwrap();
    let sim = Simulator::start(scenario).await.unwrap();
    let addr = sim.addr("pump").unwrap();
    (sim, addr)
}

/// A gateway config with one hot-bearing rule and one that never trips;
/// `http_extra` goes into `[http]`.
fn load(
    dir: &Path,
    sim: SocketAddr,
    broker: SocketAddr,
    http: SocketAddr,
    http_extra: &str,
) -> Config {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[gateway]
id = "page"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-page-{nonce}-{http_port}"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[http]
listen = "{http}"
{http_extra}

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "100ms"
timeout = "300ms"
retries = 0
tags = [
  {{ name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "running", area = "holding", address = 0, type = "bit", bit = 0 }},
]

[[rules]]
name = "bearing_hot"
tag = "pump.bearing_temp"
condition = "above"
limit = 130.0
priority = "high"

[[rules]]
name = "bearing_frozen"
tag = "pump.bearing_temp"
condition = "below"
limit = -100.0
"#,
        data = dir.join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
        http_port = http.port(),
    );
    gateway::load(dir, &text).0
}

/// Statuses from `events` until `check` holds (at most `limit`).
async fn status_until(
    events: &mut Events,
    limit: Duration,
    check: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        let s = events.next_named("status", left).await?.json();
        if check(&s) {
            return Some(s);
        }
    }
}

fn alarm_state(s: &serde_json::Value, rule: &str) -> Option<String> {
    s["alarms"]
        .as_array()?
        .iter()
        .find(|a| a["rule"] == rule)
        .and_then(|a| a["state"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_its_live_feed_and_trends() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), sim_addr, broker, http, "");
    let (stop, gateway) = gateway::spawn(config);

    // The page and its two files, with headers that keep it to itself.
    let page = get_when_up(http, "/").await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        page.body.contains("<script src=\"app.js\""),
        "{}",
        page.body
    );
    let csp = page.header("content-security-policy").unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let js = get(http, "/app.js").await.unwrap();
    assert_eq!(js.status, 200);
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.body.contains("EventSource"));
    let css = get(http, "/app.css").await.unwrap();
    assert_eq!(
        (css.status, css.header("content-type")),
        (200, Some("text/css; charset=utf-8"))
    );

    // The feed: the trends first, then statuses with live values.
    let mut events = Events::open(http, "/api/events").await.unwrap();
    assert_eq!(
        events.head.header("content-type"),
        Some("text/event-stream")
    );
    let first = events
        .next(Duration::from_secs(5))
        .await
        .expect("a first event");
    assert_eq!(first.name, "trend");
    let trend = first.json();
    assert_eq!(trend["step_s"], 5);
    assert_eq!(
        trend["devices"]["pump"]["bearing_temp"]
            .as_array()
            .map(Vec::len),
        Some(60)
    );
    let s = status_until(&mut events, Duration::from_secs(10), |s| {
        s["devices"][0]["state"] == "polling" && s["devices"][0]["tags"][0]["quality"] == "good"
    })
    .await
    .expect("a status with the pump polling and a good bearing_temp within 10 s");
    assert_eq!(s["gateway"]["id"], "page");
    assert_eq!(s["gateway"]["actions"], false);
    assert!(s["devices"][0]["tags"][0]["value"].is_number());
    assert_eq!(s["devices"][0]["tags"][0]["unit"], "degC");
    assert_eq!(s["links"][0]["label"], format!("tcp:{sim_addr}"));
    assert_eq!(s["links"][0]["connected"], true);
    assert_eq!(s["links"][0]["devices"][0], "pump");

    // An alarm shows in the feed at once (not only at the next second).
    sim.set("pump", "bearing_temp", 150.0).unwrap();
    let s = status_until(&mut events, Duration::from_secs(10), |s| {
        alarm_state(s, "bearing_hot").as_deref() == Some("active_unacked")
    })
    .await
    .expect("the alarm in the feed within 10 s");
    assert_eq!(s["alarms"][0]["value"], 150.0);

    // The trend holds the last minutes: here, the latest points.
    let t = get(http, "/api/trend").await.unwrap().json();
    let points = t["devices"]["pump"]["bearing_temp"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(points.len(), 60);
    assert!(
        points
            .iter()
            .rev()
            .take(2)
            .any(|p| p.as_f64().is_some_and(|x| x > 130.0)),
        "the hot bearing in the last points: {points:?}"
    );
    let running = t["devices"]["pump"]["running"].as_array().unwrap();
    assert!(
        running.iter().any(|p| p.is_number()),
        "a bit is drawn as 0/1: {running:?}"
    );

    // Actions are off by default: the page can say why.
    let refused = post(http, "/api/alarms/bearing_hot/ack", &[], "")
        .await
        .unwrap();
    assert_eq!(refused.status, 403);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("allow_actions")
    );

    // The stream ends with the gateway, which stops on time.
    gateway::stop(stop, gateway).await;
    assert!(events.next(Duration::from_secs(3)).await.is_none());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledge_and_shelve_with_the_token() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let sub = Subscriber::start(broker, "test-sub-page", "fieldgate/test/page/#").await;
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        dir.path(),
        sim_addr,
        broker,
        http,
        "allow_actions = true\ntoken_file = \"token\"",
    );
    let store = config.store.path.clone();
    let (stop, gateway) = gateway::spawn(config);
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("Authorization", bearer.as_str())];
    let ack = "/api/alarms/bearing_hot/ack";

    let mut events = Events::open_when_up(http, "/api/events").await;
    status_until(&mut events, Duration::from_secs(10), |s| {
        s["devices"][0]["state"] == "polling"
    })
    .await
    .expect("polling within 10 s");

    // A normal alarm has nothing to acknowledge; an unknown rule is named.
    let r = post(http, ack, &auth, "").await.unwrap();
    assert_eq!(r.status, 409, "{}", r.body);
    let r = post(http, "/api/alarms/no_such_rule/ack", &auth, "")
        .await
        .unwrap();
    assert_eq!(r.status, 404, "{}", r.body);

    sim.set("pump", "bearing_temp", 150.0).unwrap();
    let s = status_until(&mut events, Duration::from_secs(10), |s| {
        alarm_state(s, "bearing_hot").as_deref() == Some("active_unacked")
    })
    .await
    .expect("the alarm within 10 s");
    assert_eq!(s["gateway"]["actions"], true);

    // Without the token, or with a wrong one: refused, nothing changes.
    let r = post(http, ack, &[], "").await.unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"fieldgate\"")
    );
    let r = post(http, ack, &[("Authorization", "Bearer wrong")], "")
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = post(
        http,
        "/api/alarms/bearing_hot/shelve",
        &auth,
        "{\"duration\":\"soon\"}",
    )
    .await
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("soon"), "{}", r.body);

    // Acknowledged: on the page, and on MQTT as any ack would be.
    let r = post(http, ack, &auth, "").await.unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["accepted"], true);
    status_until(&mut events, Duration::from_secs(5), |s| {
        alarm_state(s, "bearing_hot").as_deref() == Some("active_acked")
    })
    .await
    .expect("acknowledged on the page within 5 s");
    let alarm_topic = format!("{PREFIX}alarms/bearing_hot");
    assert!(
        sub.wait_until(Duration::from_secs(10), |m| {
            m.iter()
                .any(|r| r.topic == alarm_topic && r.json()["state"] == "active_acked")
        })
        .await,
        "the acknowledged state on MQTT"
    );

    // Shelved, then unshelved.
    let shelve = "/api/alarms/bearing_hot/shelve";
    let r = post(http, shelve, &auth, "{\"duration\":\"1h\"}")
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    let s = status_until(&mut events, Duration::from_secs(5), |s| {
        alarm_state(s, "bearing_hot").as_deref() == Some("shelved")
    })
    .await
    .expect("shelved within 5 s");
    assert!(s["alarms"][0]["shelved_until"].is_string());
    let r = post(http, shelve, &auth, "{\"unshelve\":true}")
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", r.body);
    // Still hot: active again, to be acknowledged anew (ISA-18.2).
    status_until(&mut events, Duration::from_secs(5), |s| {
        alarm_state(s, "bearing_hot").is_some_and(|st| st.starts_with("active"))
    })
    .await
    .expect("unshelved within 5 s");

    gateway::stop(stop, gateway).await;
    // The history says the ack came over HTTP, and from where.
    let history = Inspector::open(&store)
        .unwrap()
        .history(Some(HistoryKind::Alarm), 100)
        .unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.entry.subject == "bearing_hot" && h.entry.detail.contains("http 127.0.0.1")),
        "{history:#?}"
    );
    sim.shutdown().await;
}
