//! The HTTP endpoints of the whole gateway, over loopback: simulator →
//! gateway (in this process) → embedded broker → a subscriber, with
//! `/healthz`, `/readyz`, `/metrics` and `/api/status` read by a plain
//! HTTP/1.1 client and the metrics parsed by a Prometheus text parser; and
//! the status page's endpoints (the page, its event stream, trends,
//! acknowledge and shelve) without a browser (the browser test is
//! `tests/browser/`, run by `.ci/run`). Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::http::{Events, Response, get, get_when_up, post};
use crate::common::proxy::Proxy;
use crate::common::subscriber::{Received, Subscriber};
use crate::common::wait::eventually;
use crate::common::{broker, gateway, schema, sim};
use fieldgate::config::Config;
use fieldgate::sim::Simulator;
use fieldgate::store::HistoryKind;
use fieldgate::store::inspect::Inspector;

const PREFIX: &str = "fieldgate/test/gw/";
const DATA: &str = "fieldgate/test/gw/data/pump";

async fn simulator() -> (Simulator, SocketAddr) {
    let sim = sim::start(
        r#"
seed = 5
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
model = "pump"
points = [
  { signal = "bearing_temp", area = "input", address = 0, type = "f32" },
  { signal = "current", area = "input", address = 2, type = "u16", scale = 0.01 },
  { signal = "running", area = "holding", address = 0, type = "bit", bit = 0 },
]
"#,
    )
    .await;
    let addr = sim.addr("pump").unwrap();
    (sim, addr)
}

/// A gateway config; `rules` is appended as it is.
fn load(dir: &Path, sim: SocketAddr, broker: SocketAddr, http: SocketAddr, rules: &str) -> Config {
    load_with(dir, sim, broker, http, "", rules)
}

/// The token in the file `token` beside every config.
const TOKEN: &str = "0123456789abcdef-page-token";

/// A gateway config with `http_extra` in `[http]` (the file `token` holds
/// [`TOKEN`]).
fn load_with(
    dir: &Path,
    sim: SocketAddr,
    broker: SocketAddr,
    http: SocketAddr,
    http_extra: &str,
    rules: &str,
) -> Config {
    std::fs::write(dir.join("token"), format!("{TOKEN}\n")).unwrap();
    let text = format!(
        r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-http-{nonce}-{http_port}"
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
# No heartbeat during the test: a quiet device then sends nothing.
max_silence = "1h"
tags = [
  {{ name = "bearing_temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "current", area = "input", address = 2, type = "u16", scale = 0.01, unit = "A", decimals = 1 }},
  {{ name = "running", area = "holding", address = 0, type = "bit", bit = 0 }},
]
{rules}
"#,
        data = dir.join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
        http_port = http.port(),
    );
    gateway::load(dir, &text).0
}

/// `/api/status`, checked against its schema.
async fn status(http: SocketAddr) -> serde_json::Value {
    let r = get_when_up(http, "/api/status").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let json = r.json();
    if let Err(e) = schema::validator("api-status.json").validate(&json) {
        panic!("/api/status does not match docs/schemas/api-status.json: {e}\n{json:#}");
    }
    json
}

/// `/metrics`, parsed.
struct Metrics(prometheus_parse::Scrape, String);

impl Metrics {
    async fn scrape(http: SocketAddr) -> Metrics {
        let r = get_when_up(http, "/metrics").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let lines = r.body.lines().map(|l| Ok(l.to_owned()));
        let scrape = prometheus_parse::Scrape::parse(lines)
            .unwrap_or_else(|e| panic!("/metrics does not parse: {e}\n{}", r.body));
        Metrics(scrape, r.body)
    }

    /// The value of the sample `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
            .and_then(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name} {labels:?} in\n{}", self.1))
    }
}

/// Messages that went through the outbox (everything but the status,
/// which the forwarder publishes itself).
fn outbox_messages(m: &[Received]) -> usize {
    m.iter()
        .filter(|r| r.topic.starts_with(PREFIX) && !r.topic.ends_with("/status"))
        .count()
}

const HOT_RULE: &str = r#"
[[rules]]
name = "bearing_hot"
tag = "pump.bearing_temp"
condition = "above"
limit = 130.0
priority = "high"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_agree_with_the_broker() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let sub = Subscriber::start(broker, "test-sub-http", "fieldgate/test/gw/#").await;
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), sim_addr, broker, http, HOT_RULE);
    let hash = config.hash.clone();
    let (stop, gateway) = gateway::spawn(config);

    // Polling and publishing.
    assert!(
        sub.wait_until(Duration::from_secs(20), |m| {
            m.iter().filter(|r| r.topic == DATA).count() >= 5
        })
        .await,
        "data published within 20 s"
    );
    let health = get_when_up(http, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = get_when_up(http, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    let ready = ready.json();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["store"], "open");
    let m = Metrics::scrape(http).await;
    let pump = [("device", "pump")];
    assert!(
        m.value(
            "fieldgate_device_polls_total",
            &[("device", "pump"), ("result", "ok")]
        ) > 0.0
    );
    assert!(m.value("fieldgate_device_registers_read_total", &pump) > 0.0);
    assert_eq!(m.value("fieldgate_device_up", &pump), 1.0);
    assert_eq!(m.value("fieldgate_mqtt_connected", &[]), 1.0);
    assert_eq!(m.value("fieldgate_store_up", &[]), 1.0);
    assert_eq!(
        m.value("fieldgate_build_info", &[("config_hash", hash.as_str())]),
        1.0
    );
    let link = format!("tcp:{sim_addr}");
    assert!(
        m.value(
            "fieldgate_link_polls_total",
            &[("link", link.as_str()), ("result", "ok")]
        ) > 0.0
    );
    assert_eq!(
        m.value("fieldgate_link_connected", &[("link", link.as_str())]),
        1.0
    );
    let latency =
        m.0.samples
            .iter()
            .find(|s| s.metric == "fieldgate_device_request_duration_seconds")
            .expect("the latency histogram");
    match &latency.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let total = buckets.last().map(|b| b.count).unwrap_or(0.0);
            assert!(total > 0.0, "requests were timed");
        }
        other => panic!("latency is not a histogram: {other:?}"),
    }
    if Path::new("/proc/self/stat").exists() {
        assert!(m.value("fieldgate_process_resident_memory_bytes", &[]) > 0.0);
    }
    let s = status(http).await;
    assert_eq!(s["gateway"]["config_hash"], hash.as_str());
    let device = &s["devices"][0];
    assert_eq!(device["name"], "pump");
    assert_eq!(device["state"], "polling");
    assert_eq!(device["tags"][0]["name"], "bearing_temp");
    assert_eq!(device["tags"][0]["quality"], "good");
    assert_eq!(device["tags"][0]["unit"], "degC");
    assert!(device["tags"][0]["value"].is_number());
    // How many decimals a person sees; the value itself in full. A float
    // without `decimals`: null (significant digits).
    assert_eq!(device["tags"][0]["decimals"], serde_json::Value::Null);
    assert_eq!(device["tags"][1]["name"], "current");
    assert_eq!(device["tags"][1]["decimals"], 1);
    assert_eq!(device["tags"][2]["decimals"], serde_json::Value::Null);
    assert_eq!(s["mqtt"]["connected"], true);
    // The store: a new one, under the identity its messages carry.
    let store = &s["outbox"]["store"];
    assert_eq!(store["start"], "new", "{s:#}");
    let store_id = store["id"].as_str().expect("the store's identity");
    assert_eq!(
        m.value(
            "fieldgate_store_info",
            &[("store", store_id), ("start", "new")]
        ),
        1.0
    );

    // An alarm: counted by priority and listed with its rule.
    sim.set("pump", "bearing_temp", 150.0).unwrap();
    let alarm_topic = format!("{PREFIX}alarms/bearing_hot");
    assert!(
        sub.wait_until(Duration::from_secs(10), |m| {
            m.iter()
                .any(|r| r.topic == alarm_topic && r.json()["state"] == "active_unacked")
        })
        .await,
        "the alarm reached the broker"
    );
    let active = eventually(Duration::from_secs(5), async || {
        let m = Metrics::scrape(http).await;
        let n = m.value("fieldgate_alarms_active", &[("priority", "high")]);
        (n == 1.0).then_some(m)
    })
    .await
    .expect("fieldgate_alarms_active{priority=\"high\"} 1 within 5 s");
    assert_eq!(
        active.value("fieldgate_alarms_active", &[("priority", "low")]),
        0.0
    );
    assert_eq!(active.value("fieldgate_rules", &[]), 1.0);
    let s = status(http).await;
    let alarm = &s["alarms"][0];
    assert_eq!(alarm["rule"], "bearing_hot");
    assert_eq!(alarm["state"], "active_unacked");
    assert_eq!(alarm["priority"], "high");
    assert_eq!(alarm["value"], 150.0);
    assert_eq!(alarm["limit"], 130.0);
    assert_eq!(alarm["decimals"], serde_json::Value::Null, "an f32 tag's");

    // The device goes away: bad quality in the status, then nothing more
    // to send (no heartbeat, no new alarm), so the outbox drains.
    sim.set_offline("pump", true).unwrap();
    let offline = eventually(Duration::from_secs(10), async || {
        let s = status(http).await;
        let device = &s["devices"][0];
        let bad = device["tags"][0]["quality"]
            .as_str()
            .is_some_and(|q| q.starts_with("bad:"));
        (bad && device["state"] == "failing").then_some(s)
    })
    .await
    .expect("the offline device shows failing with bad tags within 10 s");
    let device = &offline["devices"][0];
    assert!(device["tags"][0]["value"].is_null());
    assert!(device["last_error"].is_string(), "{device}");
    let failing = Metrics::scrape(http).await;
    assert_eq!(failing.value("fieldgate_device_up", &pump), 0.0);
    assert!(
        failing.value(
            "fieldgate_device_polls_total",
            &[("device", "pump"), ("result", "failed")]
        ) > 0.0
    );

    // Nothing in the outbox and nothing in flight...
    let drained = eventually(Duration::from_secs(15), async || {
        let m = Metrics::scrape(http).await;
        let empty = m.value("fieldgate_outbox_messages", &[]) == 0.0
            && m.value("fieldgate_mqtt_published_total", &[])
                == m.value("fieldgate_mqtt_acked_total", &[]);
        empty.then_some(m)
    })
    .await
    .expect("the outbox drains within 15 s once the device is offline");
    let acked = drained.value("fieldgate_outbox_acked_total", &[]) as usize;
    // ...and the broker acknowledged to the gateway before it delivered to
    // the subscriber, so give the subscriber a moment to catch up.
    sub.wait_until(Duration::from_secs(5), |m| outbox_messages(m) >= acked)
        .await;
    // No fault and one QoS 1 subscriber that was there from the start:
    // every acknowledged row reached it exactly once, and it saw nothing
    // that was not acknowledged. (Across broker faults the subscriber could
    // see more than was counted: a resent message is a duplicate.)
    let received = sub.received();
    assert_eq!(
        acked,
        outbox_messages(&received),
        "fieldgate_outbox_acked_total against the messages the broker delivered"
    );
    // Each acknowledged message was written first (it was not confirmed
    // within its group commit) or never (write-behind).
    assert_eq!(
        drained.value("fieldgate_outbox_inserted_total", &[]) as usize
            + drained.value("fieldgate_outbox_unwritten_total", &[]) as usize,
        acked
    );
    assert!(received.iter().filter(|r| r.topic == DATA).count() >= 5);

    gateway::stop(stop, gateway).await;
    // The server is gone with the gateway.
    assert!(get(http, "/healthz").await.is_err());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_while_the_broker_is_down_and_buffering() {
    let (sim, sim_addr) = simulator().await;
    // Nothing listens there.
    let broker = broker::free_port();
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), sim_addr, broker, http, "");
    let (stop, gateway) = gateway::spawn(config);

    let ready: Response = get_when_up(http, "/readyz").await;
    assert_eq!(
        ready.status, 200,
        "a broker outage is not unready: {}",
        ready.body
    );
    let json = ready.json();
    assert_eq!(json["ready"], true);
    assert_eq!(json["mqtt"], "disconnected");
    assert_eq!(json["store"], "open");
    let health = get(http, "/healthz").await.unwrap();
    assert_eq!(health.status, 200);

    let buffering = eventually(Duration::from_secs(10), async || {
        let m = Metrics::scrape(http).await;
        (m.value("fieldgate_outbox_messages", &[]) > 0.0).then_some(m)
    })
    .await
    .expect("readings buffer in the outbox");
    assert_eq!(buffering.value("fieldgate_mqtt_connected", &[]), 0.0);
    assert_eq!(buffering.value("fieldgate_mqtt_acked_total", &[]), 0.0);
    assert!(buffering.value("fieldgate_outbox_oldest_age_seconds", &[]) >= 0.0);
    let s = status(http).await;
    assert_eq!(s["mqtt"]["connected"], false);
    assert!(s["outbox"]["messages"].as_u64().unwrap_or(0) > 0);

    let missing = get(http, "/nothing").await.unwrap();
    assert_eq!(missing.status, 404);

    gateway::stop(stop, gateway).await;
    sim.shutdown().await;
}

/// A store file that cannot be opened at start (here a folder stands where
/// the file should be: the same failure path as a full, read-only or
/// failing disk, without root): the gateway starts anyway, polls and
/// publishes live, says `degraded` on `/readyz`, `/api/status` and
/// `/metrics` while `/healthz` stays ok, holds through a broker outage in
/// memory and delivers all of it, and opens the file on a retry once the
/// way is clear, without a restart. Nothing published is numbered twice
/// (`tests/interop/disk_full.sh` does the same on a real full file
/// system).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_cannot_be_opened_runs_degraded_and_recovers() {
    let (sim, sim_addr) = simulator().await;
    let broker = broker::start();
    let proxy = Proxy::start(broker).await;
    let sub = Subscriber::start(broker, "test-sub-degraded", "fieldgate/test/gw/#").await;
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), sim_addr, proxy.addr(), http, "");
    let store = config.store.path.clone();
    std::fs::create_dir_all(&store).unwrap();
    let (stop, gateway) = gateway::spawn(config);

    assert!(
        sub.wait_until(Duration::from_secs(20), |m| {
            m.iter().filter(|r| r.topic == DATA).count() >= 5
        })
        .await,
        "readings are published while the store is degraded"
    );
    let ready = get_when_up(http, "/readyz").await;
    assert_eq!(ready.status, 503, "degraded is not ready: {}", ready.body);
    let json = ready.json();
    assert_eq!(json["store"], "degraded");
    assert_eq!(json["store_fault"], "unavailable");
    assert!(
        json["store_error"]
            .as_str()
            .unwrap_or("")
            .contains(&*store.to_string_lossy()),
        "{json}"
    );
    let health = get(http, "/healthz").await.unwrap();
    assert_eq!(health.status, 200, "the watchdog is kept happy");
    let s = status(http).await;
    assert_eq!(s["outbox"]["state"], "degraded");
    assert_eq!(s["outbox"]["fault"], "unavailable");
    assert!(s["outbox"]["since"].is_string());
    let m = Metrics::scrape(http).await;
    assert_eq!(
        m.value("fieldgate_store_degraded", &[("fault", "unavailable")]),
        1.0
    );
    assert_eq!(
        m.value("fieldgate_store_degraded", &[("fault", "disk_full")]),
        0.0
    );

    // A broker outage while degraded: memory holds, and delivers it all.
    proxy.cut();
    let before = sub.received().iter().filter(|r| r.topic == DATA).count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = status(http).await;
    assert!(s["outbox"]["held"].as_u64().unwrap_or(0) > 0, "{s:#}");
    assert_eq!(get(http, "/healthz").await.unwrap().status, 200);
    proxy.restore();
    assert!(
        sub.wait_until(Duration::from_secs(30), |m| {
            let s = crate::common::subscriber::seqs(m, DATA);
            crate::common::subscriber::contiguous(&s)
                && s.iter().max().copied().unwrap_or(0) >= before as u64 + 25
        })
        .await,
        "what memory held through the outage arrives: {:?}",
        crate::common::subscriber::seqs(&sub.received(), DATA)
    );

    // The way is clear: the store opens its file without a restart.
    std::fs::remove_dir(&store).unwrap();
    let ready = eventually(Duration::from_secs(20), async || {
        let r = get(http, "/readyz").await.ok()?;
        (r.status == 200).then_some(r)
    })
    .await
    .expect("ready again once the file opens");
    assert_eq!(ready.json()["store"], "open");
    let s = status(http).await;
    assert_eq!(s["outbox"]["state"], "ok");
    // What memory held is written; only messages in flight stay in memory
    // (write-behind), for the milliseconds until their acknowledgement.
    let drained = eventually(Duration::from_secs(10), async || {
        let s = status(http).await;
        (s["outbox"]["held"] == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "{:#}", status(http).await);
    let before = sub.received().iter().filter(|r| r.topic == DATA).count();
    assert!(
        sub.wait_until(Duration::from_secs(20), |m| {
            m.iter().filter(|r| r.topic == DATA).count() >= before + 5
        })
        .await,
        "and publishing goes on through the file"
    );
    let m = Metrics::scrape(http).await;
    assert_eq!(
        m.value("fieldgate_store_degraded", &[("fault", "unavailable")]),
        0.0
    );
    gateway::stop(stop, gateway).await;
    // Every seq arrived (some twice after the outage: at least once).
    let seqs = crate::common::subscriber::seqs(&sub.received(), DATA);
    assert!(crate::common::subscriber::contiguous(&seqs), "{seqs:?}");
    assert!(Inspector::open(&store).is_ok());
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_already_taken_stops_the_start_and_says_where() {
    let (sim, sim_addr) = simulator().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let http = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), sim_addr, broker::free_port(), http, "");
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        fieldgate::app::run(config, std::future::pending()),
    )
    .await
    .expect("the start fails at once");
    let error = result.expect_err("a taken port is an error").to_string();
    assert!(error.contains(&http.to_string()), "{error}");
    assert!(error.contains("[http] listen"), "{error}");
    // The store was never opened.
    assert!(!dir.path().join("data").join("fieldgate.db").exists());
    sim.shutdown().await;
}

// The status page's endpoints (docs/status-page.md).

/// With [`HOT_RULE`]: a rule that never trips.
const FROZEN_RULE: &str = r#"
[[rules]]
name = "bearing_frozen"
tag = "pump.bearing_temp"
condition = "below"
limit = -100.0
"#;

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
    let config = load(
        dir.path(),
        sim_addr,
        broker,
        http,
        &format!("{HOT_RULE}{FROZEN_RULE}"),
    );
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
    assert_eq!(s["gateway"]["id"], "gw");
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
    let sub = Subscriber::start(broker, "test-sub-http-page", "fieldgate/test/gw/#").await;
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = load_with(
        dir.path(),
        sim_addr,
        broker,
        http,
        "allow_actions = true\ntoken_file = \"token\"",
        &format!("{HOT_RULE}{FROZEN_RULE}"),
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

/// A gateway with no device at all (a site commissioning its broker first)
/// runs and stays healthy: its pipeline keeps beating, so `/healthz` and
/// the systemd watchdog do not give up on it. The status says where the
/// clock stands and uptime counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_devices_stays_healthy() {
    let broker = broker::start();
    let http = broker::free_port();
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-http-nodev-{nonce}"

[http]
listen = "{http}"
"#,
        data = dir.path().join("data").display(),
        host = broker.ip(),
        port = broker.port(),
        nonce = std::process::id(),
    );
    let (config, _) = gateway::load(dir.path(), &text);
    let (stop, task) = gateway::spawn(config);
    let r = get_when_up(http, "/healthz").await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Beyond a few of the pipeline's 1 s ticks: a pipeline that had ended
    // would be idle this long by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let m = Metrics::scrape(http).await;
    let idle = m.value("fieldgate_pipeline_idle_seconds", &[]);
    assert!(idle < 2.0, "the pipeline has not beaten for {idle} s");
    assert!(m.value("fieldgate_uptime_seconds", &[]) >= 3.0);
    assert_eq!(get(http, "/healthz").await.unwrap().status, 200);
    let s = status(http).await;
    assert!(s["gateway"]["uptime_s"].as_u64().unwrap() >= 3, "{s:#}");
    assert!(s["gateway"].get("clock_synchronised").is_some(), "{s:#}");
    gateway::stop(stop, task).await;
}
