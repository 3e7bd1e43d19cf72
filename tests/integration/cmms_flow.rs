//! The CMMS connectors as an integrator sees them: a simulated pump, the
//! whole gateway in this process (a real SQLite file), an embedded broker,
//! a subscriber on the gateway's tree, and a fake of each vendor's API on
//! loopback that checks every request as the vendor's reference describes
//! it. Every wait is bounded.
//!
//! Scenarios: a work order created once and its reference kept; the
//! status loop to closed and a new work order after it; a CMMS down for a
//! while, then back; a create whose answer is lost, retried without a
//! second work order; a refused work order parked, then delivered after a
//! reload that fixes the mapping; meter readings; status pushed over HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::common::cmms::{self, FakeCmms};
use crate::common::subscriber::Subscriber;
use crate::common::{broker, gateway, sim, tracing, wait};
use fieldgate::app::AppError;
use fieldgate::sim::Simulator;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Topic prefix of the gateway under test.
const BASE: &str = "fieldgate/test/gw";

/// Longest wait for what takes a few polls, a delivery or a status poll.
const WAIT: Duration = Duration::from_secs(10);

/// The credential every fake expects.
const SECRET: &str = "k3y-for-tests";

/// One pump with a temperature and a run bit.
const SCENARIO: &str = r#"
seed = 1
[[devices]]
name = "pump"
unit = 1
listen = "127.0.0.1:0"
points = [
  { name = "temp", value = 20.0, area = "input", address = 0, type = "f32" },
  { name = "run", value = false, area = "coil", address = 0, type = "bool" },
]
"#;

/// Which fake, and how a connector section names it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Vendor {
    Webhook,
    Maximo,
    MaintainX,
    UpKeep,
}

impl Vendor {
    async fn start(self) -> FakeCmms {
        match self {
            Vendor::Webhook => cmms::webhook::start(SECRET).await,
            Vendor::Maximo => cmms::maximo::start(SECRET).await,
            Vendor::MaintainX => cmms::maintainx::start(SECRET).await,
            Vendor::UpKeep => cmms::upkeep::start(SECRET).await,
        }
    }

    /// The `[[cmms]]` section for the fake at `url`, secrets in `dir`.
    fn section(self, url: &str, dir: &Path, extra: &str) -> String {
        let secret = dir.join("cmms.secret");
        std::fs::write(&secret, SECRET).unwrap();
        let secret = secret.display();
        let own = match self {
            Vendor::Webhook => format!(
                "kind = \"webhook\"\nurl = \"{url}/hooks/fieldgate\"\nauth = \"bearer\"\ntoken_file = \"{secret}\"\ninbound_token_file = \"{secret}\""
            ),
            Vendor::Maximo => format!(
                "kind = \"maximo\"\nurl = \"{url}/maximo\"\napi_key_file = \"{secret}\"\nsite_id = \"BEDFORD\""
            ),
            Vendor::MaintainX => {
                format!("kind = \"maintainx\"\nurl = \"{url}\"\napi_key_file = \"{secret}\"")
            }
            Vendor::UpKeep => {
                format!("kind = \"upkeep\"\nurl = \"{url}\"\nsession_token_file = \"{secret}\"")
            }
        };
        // A test's own `timeout` replaces the short default.
        let timeout = if extra.contains("timeout") {
            ""
        } else {
            "timeout = \"1s\"\n"
        };
        format!(
            "[[cmms]]\nname = \"cmms\"\n{own}\n{timeout}retry_min = \"100ms\"\nretry_max = \"1s\"\npoll_interval = \"5s\"\n{extra}\n"
        )
    }

    /// The vendor's status text for a closed work order.
    fn closed(self) -> &'static str {
        match self {
            Vendor::Webhook => "",
            Vendor::Maximo => "CLOSE",
            Vendor::MaintainX => "DONE",
            Vendor::UpKeep => "complete",
        }
    }
}

/// The gateway's config.
fn config_text(data: &Path, sim: SocketAddr, broker: SocketAddr, http: u16, cmms: &str) -> String {
    format!(
        r#"
[gateway]
id = "gw"
site = "test"
data_dir = "{data}"
shutdown_timeout = "5s"

[mqtt]
host = "{host}"
port = {port}
client_id = "fieldgate-cmms-test"
keep_alive = "5s"

[store]
flush_interval = "20ms"

[http]
listen = "127.0.0.1:{http}"

[[devices]]
name = "pump"
tcp = "{sim}"
poll_interval = "100ms"
timeout = "300ms"
retries = 0
asset = "PUMP-001"
location = "Hall 2"
tags = [
  {{ name = "temp", area = "input", address = 0, type = "f32", unit = "degC" }},
  {{ name = "run", area = "coil", address = 0, type = "bool" }},
]

[[rules]]
name = "hot"
tag = "pump.temp"
condition = "above"
limit = 80.0
workorder = {{ problem_code = "BRG-HOT" }}

[[meters]]
name = "pump_runtime"
tag = "pump.run"
kind = "runtime"
every = "500h"

[[meters]]
name = "pump_starts"
tag = "pump.run"
kind = "count"
every = 1000

{cmms}
"#,
        data = data.display(),
        host = broker.ip(),
        port = broker.port(),
    )
}

/// A gateway task and what stops it.
type Running = (oneshot::Sender<()>, JoinHandle<Result<(), AppError>>);

struct Site {
    sim: Simulator,
    broker: SocketAddr,
    http: SocketAddr,
    dir: tempfile::TempDir,
    fake: FakeCmms,
    vendor: Vendor,
    extra: String,
    sub: Subscriber,
    gateway: Option<Running>,
    /// Where reloads go, when the gateway was started with them.
    reloads: Option<tokio::sync::mpsc::Sender<fieldgate::config::Config>>,
}

impl Site {
    async fn start(vendor: Vendor, extra: &str) -> Site {
        tracing::init();
        let sim = sim::start(SCENARIO).await;
        let broker = broker::start();
        let sub = Subscriber::start(broker, "cmms-flow-view", &format!("{BASE}/#")).await;
        let fake = vendor.start().await;
        let mut site = Site {
            sim,
            broker,
            http: broker::free_port(),
            dir: tempfile::tempdir().unwrap(),
            fake,
            vendor,
            extra: extra.to_owned(),
            sub,
            gateway: None,
            reloads: None,
        };
        site.start_gateway().await;
        site
    }

    /// The store file the gateway writes.
    fn store_path(&self) -> std::path::PathBuf {
        self.dir.path().join("data").join("fieldgate.db")
    }

    /// Applies `extra` as the connector's extra keys (a reload, as
    /// `fieldgate reload` does).
    async fn reload(&mut self, extra: &str) {
        self.extra = extra.to_owned();
        let config = self.config();
        self.reloads
            .as_ref()
            .expect("started with reloads")
            .send(config)
            .await
            .unwrap();
    }

    fn config(&self) -> fieldgate::config::Config {
        let section = self
            .vendor
            .section(&self.fake.url(), self.dir.path(), &self.extra);
        let text = config_text(
            &self.dir.path().join("data"),
            self.sim.addr("pump").unwrap(),
            self.broker,
            self.http.port(),
            &section,
        );
        gateway::load(self.dir.path(), &text).0
    }

    async fn start_gateway(&mut self) {
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(fieldgate::app::run_with_reloads(
            self.config(),
            async move {
                let _ = stop_rx.await;
            },
            Some(reload_rx),
        ));
        self.reloads = Some(reload_tx);
        self.gateway = Some((stop, task));
        let status = format!("{BASE}/status");
        let online = self
            .sub
            .wait_until(WAIT, |m| {
                m.iter()
                    .any(|r| r.topic == status && r.json()["state"] == "online")
            })
            .await;
        assert!(online, "gateway online within {WAIT:?}");
    }

    async fn finish(mut self) {
        if let Some((stop, task)) = self.gateway.take() {
            gateway::stop(stop, task).await;
        }
        self.sim.shutdown().await;
        assert_eq!(
            self.fake.problems(),
            Vec::<String>::new(),
            "requests the vendor's reference would refuse"
        );
    }

    fn set(&self, point: &str, value: f64) {
        self.sim.set("pump", point, value).unwrap();
    }

    /// Raises the `hot` rule's alarm (and, once none is open, a work order).
    fn overheat(&self) {
        self.set("temp", 95.0);
    }

    fn cool(&self) {
        self.set("temp", 20.0);
    }

    /// Work-order messages (not the empty ones), in arrival order.
    fn work_orders(&self) -> Vec<Value> {
        self.sub
            .received()
            .iter()
            .filter(|r| is_work_order_topic(&r.topic) && !r.payload.is_empty())
            .map(|r| r.json())
            .collect()
    }

    /// Waits until the fake holds `n` work orders.
    async fn created(&self, n: usize) {
        let fake = self.fake.clone();
        let ok = wait::until(WAIT, || fake.created().len() >= n).await;
        assert!(
            ok,
            "{n} work order(s) created in the fake CMMS within {WAIT:?}; it has {:?}",
            self.fake.created()
        );
    }

    /// Waits for a work-order message carrying the CMMS reference `r`.
    async fn reference_on_mqtt(&self, r: &str) -> Value {
        let found = self
            .sub
            .wait_until(WAIT, |m| {
                m.iter()
                    .any(|x| is_work_order_topic(&x.topic) && x.json()["cmms"]["ref"] == r)
            })
            .await;
        assert!(
            found,
            "a work order with cmms.ref {r:?} on MQTT within {WAIT:?}"
        );
        self.work_orders()
            .into_iter()
            .rev()
            .find(|w| w["cmms"]["ref"] == r)
            .unwrap()
    }

    /// Waits until the work order `id` is cleared (closed) on MQTT.
    async fn cleared(&self, id: &str) {
        let topic = format!("{BASE}/workorders/{id}");
        let found = self
            .sub
            .wait_until(WAIT, |m| {
                m.iter().any(|x| x.topic == topic && x.payload.is_empty())
            })
            .await;
        assert!(found, "work order {id} cleared within {WAIT:?}");
    }
}

fn is_work_order_topic(topic: &str) -> bool {
    topic.starts_with(&format!("{BASE}/workorders/")) && !topic.ends_with("/status")
}

/// Create once, reference back, closed in the CMMS (polled, or pushed for
/// the webhook), then a new work order at the next activation.
async fn status_loop(vendor: Vendor) {
    let site = Site::start(vendor, "").await;
    site.overheat();
    site.created(1).await;
    let held = site.fake.created()[0].clone();
    // The webhook fake answers an id too: every connector keeps one.
    let wo = site.reference_on_mqtt(&held.reference).await;
    let id = wo["id"].as_str().unwrap().to_owned();
    assert_eq!(wo["status"], "accepted");
    if vendor == Vendor::Webhook {
        let body = br#"{"status":"closed","ref":"WH-1","by":"j.smith"}"#;
        let auth = format!("Bearer {SECRET}");
        let response = crate::common::http::post(
            site.http,
            &format!("/api/workorders/{id}/status"),
            &[
                ("Authorization", auth.as_str()),
                ("Content-Type", "application/json"),
            ],
            std::str::from_utf8(body).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(response.status, 200, "{}", response.body);
    } else {
        site.fake.set_status(&held.reference, vendor.closed());
    }
    site.cleared(&id).await;
    // The next activation raises a new work order, created in the CMMS.
    site.cool();
    tokio::time::sleep(Duration::from_millis(500)).await;
    site.overheat();
    site.created(2).await;
    let created = site.fake.created();
    assert_ne!(created[0].reference, created[1].reference);
    site.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximo_creates_once_and_closes_the_loop() {
    status_loop(Vendor::Maximo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintainx_creates_once_and_closes_the_loop() {
    status_loop(Vendor::MaintainX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_creates_once_and_closes_the_loop() {
    status_loop(Vendor::UpKeep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_delivers_once_and_takes_a_pushed_status() {
    status_loop(Vendor::Webhook).await;
}

/// The CMMS is down while the work order is raised; nothing is created
/// until it is back, then exactly one.
async fn down_then_back(vendor: Vendor) {
    let site = Site::start(vendor, "").await;
    site.fake.set_down(true);
    site.overheat();
    // Work orders still go out on MQTT meanwhile.
    let sub_has_wo = site
        .sub
        .wait_until(WAIT, |m| m.iter().any(|x| is_work_order_topic(&x.topic)))
        .await;
    assert!(
        sub_has_wo,
        "the work order is on MQTT while the CMMS is down"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(site.fake.created().len(), 0);
    site.fake.set_down(false);
    site.created(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(site.fake.created().len(), 1, "exactly one work order");
    site.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximo_down_for_a_while_then_back() {
    down_then_back(Vendor::Maximo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_down_for_a_while_then_back() {
    down_then_back(Vendor::UpKeep).await;
}

/// The CMMS takes the create and never answers (the client times out):
/// the retry finds it by key and does not create a second one.
async fn lost_answer(vendor: Vendor) {
    let site = Site::start(vendor, "").await;
    site.fake.with(|s| s.swallow_creates = 1);
    site.overheat();
    site.created(1).await;
    let reference = site.fake.created()[0].reference.clone();
    site.reference_on_mqtt(&reference).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(site.fake.created().len(), 1, "no second work order");
    site.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximo_lost_answer_is_not_a_second_work_order() {
    lost_answer(Vendor::Maximo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintainx_lost_answer_is_not_a_second_work_order() {
    lost_answer(Vendor::MaintainX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_lost_answer_is_not_a_second_work_order() {
    lost_answer(Vendor::UpKeep).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_lost_answer_is_dropped_by_its_idempotency_key() {
    lost_answer(Vendor::Webhook).await;
}

/// The CMMS refuses the work order (an asset it does not know): the
/// delivery is parked with the CMMS's text, the work order still goes out
/// on MQTT, and a reload with the asset mapped delivers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_work_order_is_parked_then_delivered_after_a_reload() {
    let mut site = Site::start(Vendor::Maximo, "").await;
    site.fake
        .with(|s| s.unknown_assets = vec!["PUMP-001".into()]);
    site.overheat();
    let store = site.store_path();
    let parked = wait::eventually(WAIT, async || {
        let parked = fieldgate::store::Inspector::open(&store)
            .ok()?
            .parked_deliveries()
            .ok()?;
        (!parked.is_empty()).then_some(parked)
    })
    .await
    .expect("the refused delivery is parked");
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(parked[0].delivery.sink, "cmms");
    assert!(
        parked[0].error.starts_with("HTTP 400"),
        "the CMMS's own text is kept: {}",
        parked[0].error
    );
    assert!(!site.work_orders().is_empty(), "still published on MQTT");
    assert_eq!(site.fake.created().len(), 0);
    site.reload("assets = { \"PUMP-001\" = \"11430\" }").await;
    site.created(1).await;
    let created = site.fake.created();
    assert_eq!(created[0].body["assetnum"], "11430");
    let left = fieldgate::store::Inspector::open(&store)
        .unwrap()
        .parked_deliveries()
        .unwrap();
    assert!(left.is_empty(), "nothing parked after the reload: {left:?}");
    site.finish().await;
}

/// A count meter mapped to a MaintainX meter: its readings reach the
/// CMMS's meter readings API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn meter_readings_reach_maintainx() {
    let site = Site::start(Vendor::MaintainX, "meters = { pump_starts = \"4410\" }").await;
    site.set("run", 1.0);
    let fake = site.fake.clone();
    let ok = wait::until(WAIT, || !fake.with(|s| s.meter_readings.is_empty())).await;
    assert!(ok, "a meter reading within {WAIT:?}");
    let (meter, body) = fake.with(|s| s.meter_readings[0].clone());
    assert_eq!(meter, "4410");
    assert!(body.to_string().contains('1'), "{body}");
    site.finish().await;
}

/// A status pushed without the connector's credential is refused, and
/// one for a work order that is not open is a 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_pushes_need_the_connectors_credential() {
    let site = Site::start(Vendor::Webhook, "").await;
    let post = |auth: &'static str, id: &'static str| {
        let addr = site.http;
        async move {
            crate::common::http::post(
                addr,
                &format!("/api/workorders/{id}/status"),
                &[("Authorization", auth)],
                r#"{"status":"closed"}"#,
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(post("Bearer wrong", "01J").await.status, 401);
    assert_eq!(post("", "01J").await.status, 401);
    let auth: &'static str = Box::leak(format!("Bearer {SECRET}").into_boxed_str());
    assert_eq!(post(auth, "01JNOTOPEN").await.status, 404);
    site.finish().await;
}

/// The gateway binary on `fake` (a `config_text` written into `dir`),
/// as systemd would run it, logging at `log_level` to `stderr`.
struct Binary {
    path: std::path::PathBuf,
}

impl Binary {
    fn write(
        vendor: Vendor,
        fake: &FakeCmms,
        sim: &Simulator,
        broker: SocketAddr,
        dir: &Path,
    ) -> Binary {
        let section = vendor.section(&fake.url(), dir, "");
        let text = config_text(
            &dir.join("data"),
            sim.addr("pump").unwrap(),
            broker,
            broker::free_port().port(),
            &section,
        );
        let path = dir.join("fieldgate.toml");
        std::fs::write(&path, text).unwrap();
        Binary { path }
    }

    fn spawn(&self, log_level: &str, stderr: std::process::Stdio) -> std::process::Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_fieldgate"))
            .args(["run", "-c"])
            .arg(&self.path)
            .env("RUST_LOG", log_level)
            .env("NO_COLOR", "1")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap()
    }
}

/// `kill -9` while the CMMS holds the create unanswered: after the
/// restart the delivery is sent again, the lookup by key finds the work
/// order the first attempt made, and the CMMS has exactly one.
async fn killed_mid_request(vendor: Vendor) {
    use std::process::Stdio;
    tracing::init();
    let sim = sim::start(SCENARIO).await;
    let broker = broker::start();
    let sub = Subscriber::start(broker, "cmms-kill-view", &format!("{BASE}/#")).await;
    let fake = vendor.start().await;
    fake.with(|s| s.swallow_creates = 1);
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::write(vendor, &fake, &sim, broker, dir.path());
    let spawn = || binary.spawn("warn", Stdio::inherit());
    let mut child = spawn();
    sim.set("pump", "temp", 95.0).unwrap();
    let held = fake.clone();
    assert!(
        wait::until(WAIT, || held.created().len() == 1).await,
        "the CMMS got the create"
    );
    // The CMMS has it and has not answered: the gateway dies now.
    child.kill().unwrap();
    child.wait().unwrap();
    let mut child = spawn();
    let reference = fake.created()[0].reference.clone();
    let found = sub
        .wait_until(Duration::from_secs(20), |m| {
            m.iter()
                .any(|x| is_work_order_topic(&x.topic) && x.json()["cmms"]["ref"] == reference)
        })
        .await;
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
    assert!(
        found,
        "after the restart the work order carries the CMMS's reference {reference}"
    );
    assert_eq!(
        fake.created().len(),
        1,
        "exactly one work order in the CMMS"
    );
    assert_eq!(fake.problems(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximo_kill_9_mid_request_is_not_a_second_work_order() {
    killed_mid_request(Vendor::Maximo).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_kill_9_mid_request_is_not_a_second_delivery() {
    killed_mid_request(Vendor::Webhook).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintainx_kill_9_mid_request_is_not_a_second_work_order() {
    killed_mid_request(Vendor::MaintainX).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upkeep_kill_9_mid_request_is_not_a_second_work_order() {
    killed_mid_request(Vendor::UpKeep).await;
}

/// A CMMS that takes 3 s to answer holds up nothing else: readings keep
/// coming at the poll rate while the work order waits for its answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_cmms_never_holds_up_polling_or_mqtt() {
    let site = Site::start(Vendor::Maximo, "timeout = \"10s\"").await;
    site.fake.with(|s| s.delay = Duration::from_secs(3));
    let data = format!("{BASE}/data/pump");
    let count =
        |m: &[crate::common::subscriber::Received]| m.iter().filter(|x| x.topic == data).count();
    site.overheat();
    let before = count(&site.sub.received());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = count(&site.sub.received()) - before;
    assert_eq!(site.fake.created().len(), 0, "still waiting for the CMMS");
    // Polls every 100 ms: about 20 in 2 s; the deadband keeps some back,
    // but the temperature changed, and the poll messages carry the run bit.
    assert!(
        during >= 5,
        "readings kept flowing while the CMMS was slow: {during}"
    );
    site.created(1).await;
    site.finish().await;
}

/// The connector's credential never reaches the journal, whatever the CMMS
/// answers (here: 401 with its error text), even with debug logging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connectors_secret_is_never_logged() {
    use std::io::Read;
    tracing::init();
    let sim = sim::start(SCENARIO).await;
    let broker = broker::start();
    let fake = Vendor::Maximo.start().await;
    // The fake expects another key: every request is refused with 401.
    fake.with(|s| s.secret = "another-key".into());
    let dir = tempfile::tempdir().unwrap();
    let binary = Binary::write(Vendor::Maximo, &fake, &sim, broker, dir.path());
    let log = dir.path().join("stderr.log");
    let mut child = binary.spawn("debug", std::fs::File::create(&log).unwrap().into());
    sim.set("pump", "temp", 95.0).unwrap();
    let refused = wait::until(WAIT, || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("parked until the next reload"))
    })
    .await;
    let _ = child.kill();
    let _ = child.wait();
    sim.shutdown().await;
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(refused, "the refusal was logged:\n{text}");
    assert!(!text.contains(SECRET), "the API key is in the log:\n{text}");
}
