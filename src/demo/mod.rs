//! `fieldgate demo`: the whole system on one machine in one command.
//!
//! A simulated plant (Modbus TCP devices on loopback ports and a fan drive
//! answering Modbus RTU on a pty), an MQTT broker, the real gateway on the
//! demo configuration, and a small CMMS that accepts work orders and signs
//! one off, with a live view of it all.
//!
//! # Layout
//!
//! - `files`: the demo's configuration, tag maps and scenario, built into
//!   the binary, and its data folder.
//! - `placement` (pure): fits the loaded configuration to the ports and
//!   pty the simulator got, the broker and the data folder; nothing else.
//! - `ports`: free ports for the simulator's listeners and the HTTP server.
//! - `broker`: the embedded MQTT broker (feature `embedded-broker`).
//! - `planner` (pure) and `cmms`: the built-in CMMS.
//! - `status`: reads the gateway's `/api/status` over loopback, which is
//!   what the view shows (see there why).
//! - `events` (pure): what changed between two status documents, and the
//!   tally for the summary.
//! - `panel` (pure) and `view`: the live panel, or plain lines.
//! - `logs`: log lines held while the live panel runs.
//!
//! # The gateway is the real one
//!
//! The configuration goes through [`config::load`](crate::config::load),
//! as for `fieldgate run`, and the gateway is [`app::run`], the function
//! behind `fieldgate run`; the demo only starts things around it.
//!
//! # Start and stop
//!
//! Start: data folder, configuration, simulator, broker, view, gateway,
//! CMMS. Stop (Ctrl-C, `--duration`, or the gateway ending on its own):
//! the CMMS first (no status report arrives during the stop), then the
//! gateway's orderly shutdown (pollers, pipeline, the last messages to the
//! broker, `offline`, store), then the simulator; the summary reads the
//! outbox from the store file the gateway closed. The embedded broker has
//! no shutdown API: its thread ends with the process.

mod broker;
mod cmms;
mod error;
mod events;
mod files;
mod logs;
mod panel;
mod placement;
mod planner;
mod ports;
mod status;
mod view;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

pub use broker::{EmbeddedBroker, MQTT_PORT, parse_address};
pub use cmms::{Cmms, CmmsConfig, CmmsNews, CmmsTotals};
pub use error::DemoError;
pub use events::{Change, Tally, changes};
pub use files::{CONFIG, DataDir, SCENARIO};
pub use logs::{LogLines, log_lines};
pub use panel::{Frame, Row, Tone};
pub use placement::{Placed, Placement};
pub use planner::{Decision, Observation, Planner, Policy};
pub use status::{PlantStatus, StatusError};
pub use view::{Mode, View, restore_terminal};

use crate::config::{self, Config, Connection};
use crate::contract::topics::Topics;
use crate::shutdown;
use crate::sim::{Scenario, Simulator};
use crate::store::inspect::Inspector;

/// How often the view reads `/api/status` and redraws.
pub const REFRESH: Duration = Duration::from_millis(500);

/// How often the plain output prints a one-line summary of the plant.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// News from the CMMS waiting for the view; beyond it news is dropped
/// (it is for people; the work orders do not depend on it).
const NEWS_CAPACITY: usize = 64;

/// Time the gateway's stop may take beyond its own `shutdown_timeout`
/// (the HTTP server's grace, closing the store) before the demo gives up
/// on it.
const STOP_MARGIN: Duration = Duration::from_secs(10);

/// What `fieldgate demo` was asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// End by itself after this long (else at Ctrl-C).
    pub duration: Option<Duration>,
    /// Keep the store here (else a temporary folder, removed at the end).
    pub data_dir: Option<PathBuf>,
    /// Use this broker (`HOST:PORT`) instead of starting one.
    pub broker: Option<String>,
    /// Start the embedded broker on this port (else 1883, or a free port
    /// when that is taken).
    pub broker_port: Option<u16>,
    /// A configuration to run instead of the built-in one.
    pub config: Option<PathBuf>,
    /// A scenario to simulate instead of the built-in one.
    pub scenario: Option<PathBuf>,
    /// Live panel or plain lines.
    pub mode: Mode,
    /// The CLI sent log lines to [`log_lines`] (live mode).
    pub logs_held: bool,
    /// How the CMMS acts.
    pub policy: Policy,
}

/// How a demo went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DemoSummary {
    /// How long it ran.
    pub ran: Duration,
    /// What the view saw.
    pub tally: Tally,
    /// What the CMMS did.
    pub cmms: CmmsTotals,
    /// Messages left in the outbox after the gateway stopped.
    pub outbox_left: u64,
    /// The data folder, when it was kept.
    pub kept: Option<PathBuf>,
}

impl DemoSummary {
    /// The summary as printed at the end.
    pub fn lines(&self) -> Vec<String> {
        let t = &self.tally;
        let alarms = if t.alarms.is_empty() {
            "none".to_string()
        } else {
            t.alarms.iter().cloned().collect::<Vec<_>>().join(", ")
        };
        let mut out = vec![
            format!("demo ended after {}", panel::clock(self.ran)),
            format!(
                "work orders: {} raised ({} corrective, {} preventive), {} closed by the CMMS",
                t.work_orders.len(),
                t.of_type("corrective"),
                t.of_type("preventive"),
                t.closed.len()
            ),
            format!("alarms activated: {alarms}"),
            format!(
                "messages delivered: {} acknowledged by the broker while the view watched",
                t.delivered
            ),
            format!("outbox after the stop: {} messages", self.outbox_left),
        ];
        if let Some(dir) = &self.kept {
            out.push(format!(
                "data dir kept: {} (try: fieldgate workorders --store {})",
                dir.display(),
                dir.join("fieldgate.db").display()
            ));
        }
        out
    }
}

/// Runs the demo until `stop` resolves or `options.duration` has passed.
pub async fn run(
    options: DemoOptions,
    stop: impl Future<Output = ()>,
) -> Result<DemoSummary, DemoError> {
    let began = Instant::now();
    let dir =
        DataDir::prepare(options.data_dir.as_deref()).map_err(|source| DemoError::DataDir {
            path: options.data_dir.clone().unwrap_or_else(std::env::temp_dir),
            source,
        })?;
    let outcome = run_in(&options, &dir, began, stop).await;
    if let Err(e) = dir.finish() {
        tracing::warn!(error = %e, "cannot remove the demo's temporary folder");
    }
    outcome
}

async fn run_in(
    options: &DemoOptions,
    dir: &DataDir,
    began: Instant,
    stop: impl Future<Output = ()>,
) -> Result<DemoSummary, DemoError> {
    let loaded = load_config(options, dir).await?;
    let mut scenario = load_scenario(options).await?;
    // The scenario's ports (5020…) may be taken: a standalone simulator,
    // a second demo, a test. Free ones are chosen (the config's addresses
    // are then placed on them).
    ports::free_listeners(&mut scenario).map_err(|e| {
        DemoError::Sim(crate::sim::SimError::Bind {
            addr: "127.0.0.1:0".into(),
            source: e,
        })
    })?;
    let sim = Simulator::start(scenario).await?;
    let broker = Broker::connect(options).await?;
    let placement = Placement {
        data_dir: dir.path().to_path_buf(),
        broker_host: broker.host.clone(),
        broker_port: broker.port,
        embedded_broker: broker.embedded.is_some(),
        http: loaded.http.and_then(ports::instead_of),
        endpoints: loaded
            .config
            .devices
            .iter()
            .filter_map(|d| Some((d.name.clone(), sim.addr(&d.name)?)))
            .collect(),
        serial_ports: loaded
            .config
            .devices
            .iter()
            .filter_map(|d| Some((d.name.clone(), sim.serial_path(&d.name)?)))
            .collect(),
    };
    let placed = placement.apply(loaded.config);
    let config = placed.config;
    let height = panel::height(
        config.devices.len(),
        config.rules.len(),
        config.meters.len(),
    );
    let (mut view, note) = View::start(options.mode, height, options.logs_held);
    view.lines(&banner(
        options,
        dir,
        &config,
        &broker,
        &placed.not_simulated,
    ));
    if let Some(note) = note {
        view.lines(&[note]);
    }

    let (gateway_stop, mut gateway_listener) = shutdown::channel();
    let mut gateway = tokio::spawn(crate::app::run(config.clone(), async move {
        gateway_listener.recv().await;
    }));
    let (news_tx, mut news) = mpsc::channel(NEWS_CAPACITY);
    let cmms = Cmms::start(
        CmmsConfig {
            host: broker.host.clone(),
            port: broker.port,
            topics: Topics::of(&config),
            policy: options.policy,
        },
        news_tx,
    );

    // Watch until asked to stop, or until the gateway ends by itself.
    let deadline = options.duration.map(|d| began + d);
    let mut watcher = Watcher::new(config.http.listen, broker.to_string(), began, deadline);
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut summary = tokio::time::interval_at(began + SUMMARY_EVERY, SUMMARY_EVERY);
    summary.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tokio::pin!(stop);
    let ended_by_itself = loop {
        tokio::select! {
            () = &mut stop => break None,
            () = sleep_until(deadline) => break None,
            ended = &mut gateway => break Some(ended),
            Some(n) = news.recv() => view.lines(&[news_line(&n)]),
            _ = refresh.tick() => watcher.refresh(&mut view).await,
            _ = summary.tick(), if !view.is_live() => watcher.summary(&mut view),
        }
    };

    view.lines(&["stopping: the CMMS, the gateway (orderly shutdown), the simulator".into()]);
    let cmms_totals = cmms.stop().await;
    while let Ok(n) = news.try_recv() {
        view.lines(&[news_line(&n)]);
    }
    gateway_stop.trigger();
    let limit = config.gateway.shutdown_timeout + STOP_MARGIN;
    let outcome = match ended_by_itself {
        Some(Ok(Ok(()))) => Err(DemoError::GatewayStopped),
        Some(ended) => gateway_outcome(ended),
        None => match tokio::time::timeout(limit, &mut gateway).await {
            Ok(ended) => gateway_outcome(ended),
            Err(_) => {
                gateway.abort();
                Err(DemoError::Task(format!(
                    "the gateway did not stop within {limit:?}"
                )))
            }
        },
    };
    sim.shutdown().await;
    if let Err(e) = outcome {
        view.finish(&[format!("demo failed: {e}")]);
        return Err(e);
    }
    let store = config.store.path.clone();
    let outbox_left = tokio::task::spawn_blocking(move || {
        Inspector::open(&store)
            .and_then(|i| i.outbox())
            .map(|(n, _)| n)
    })
    .await
    .map_err(|e| DemoError::Task(format!("a file task failed: {e}")))??;
    let result = DemoSummary {
        ran: began.elapsed(),
        tally: watcher.tally,
        cmms: cmms_totals,
        outbox_left,
        kept: (!dir.is_temporary()).then(|| dir.path().to_path_buf()),
    };
    view.finish(&result.lines());
    Ok(result)
}

/// What the gateway task's end means for the demo.
fn gateway_outcome(
    ended: Result<Result<(), crate::app::AppError>, tokio::task::JoinError>,
) -> Result<(), DemoError> {
    match ended {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DemoError::Gateway(e)),
        Err(e) => Err(DemoError::Task(format!("the gateway task failed: {e}"))),
    }
}

/// Sleeps until `deadline`, or for ever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The loaded configuration and the HTTP address it asks for.
struct LoadedConfig {
    config: Config,
    http: Option<SocketAddr>,
}

/// Loads the built-in configuration (written into the data folder) or
/// `--config`, through the normal loader.
async fn load_config(options: &DemoOptions, dir: &DataDir) -> Result<LoadedConfig, DemoError> {
    let given = options.config.clone();
    let folder = dir.path().to_path_buf();
    let loaded = tokio::task::spawn_blocking(move || {
        let path = match given {
            Some(p) => p,
            None => files::write_config(&folder).map_err(|source| DemoError::DataDir {
                path: folder.clone(),
                source,
            })?,
        };
        config::load(&path).map_err(|problems| DemoError::Config { path, problems })
    })
    .await
    .map_err(|e| DemoError::Task(format!("a file task failed: {e}")))??;
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let http = loaded.config.http.listen;
    Ok(LoadedConfig {
        config: loaded.config,
        http,
    })
}

async fn load_scenario(options: &DemoOptions) -> Result<Scenario, DemoError> {
    match options.scenario.clone() {
        None => Ok(files::scenario()?),
        Some(path) => Ok(tokio::task::spawn_blocking(move || Scenario::load(path))
            .await
            .map_err(|e| DemoError::Task(format!("a file task failed: {e}")))??),
    }
}

/// The broker the gateway and the CMMS use.
struct Broker {
    host: String,
    port: u16,
    /// The embedded one, when the demo started it.
    embedded: Option<EmbeddedBroker>,
}

impl Broker {
    async fn connect(options: &DemoOptions) -> Result<Broker, DemoError> {
        match &options.broker {
            Some(text) => {
                let (host, port) = parse_address(text)?;
                Ok(Broker {
                    host,
                    port,
                    embedded: None,
                })
            }
            None => {
                let b = broker::start(options.broker_port).await?;
                Ok(Broker {
                    host: b.addr.ip().to_string(),
                    port: b.addr.port(),
                    embedded: Some(b),
                })
            }
        }
    }
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The lines printed at start: where everything is and how to watch it.
fn banner(
    options: &DemoOptions,
    dir: &DataDir,
    config: &Config,
    broker: &Broker,
    not_simulated: &[String],
) -> Vec<String> {
    let mut out = vec![
        "fieldgate demo: a simulated plant, an MQTT broker, the gateway and a CMMS on this machine"
            .to_string(),
    ];
    let plant: Vec<String> = config
        .devices
        .iter()
        .map(|d| match &d.connection {
            Connection::Rtu { bus } => {
                let port = config.bus(bus).map(|b| b.port.as_str()).unwrap_or("?");
                format!("{} rtu unit {} on {port} (bus {bus})", d.name, d.unit)
            }
            c => format!(
                "{} tcp {} unit {}",
                d.name,
                c.endpoint().unwrap_or_default(),
                d.unit
            ),
        })
        .collect();
    out.push(format!("plant:    {}", plant.join(", ")));
    if !not_simulated.is_empty() {
        out.push(format!(
            "note:     not simulated, polled as configured: {}",
            not_simulated.join(", ")
        ));
    }
    let how = match broker.embedded {
        Some(b) if b.moved => format!("embedded; port {MQTT_PORT} is taken"),
        Some(_) => "embedded".to_string(),
        None => "--broker".to_string(),
    };
    out.push(format!("broker:   {broker} ({how})"));
    out.push(format!(
        "watch it: mosquitto_sub -h {} -p {} -t '{}/#' -v",
        broker.host, broker.port, config.mqtt.topic_prefix
    ));
    if let Some(sp) = &config.sparkplug {
        out.push(format!(
            "sparkplug: {}/{}/#  (fieldgate sparkplug watch --broker {broker})",
            crate::contract::sparkplug::NAMESPACE,
            sp.group_id,
        ));
    }
    // The first writable tag, to show how a write goes (docs/write-back.md).
    let writable = config.devices.iter().find_map(|d| {
        let tag = d.tags.iter().find(|t| t.write.is_some())?;
        let w = tag.write.as_ref()?;
        let value = match (w.min, w.max) {
            (Some(lo), Some(hi)) => (lo + hi) / 2.0,
            (Some(lo), None) => lo,
            (None, Some(hi)) => hi,
            (None, None) => 1.0,
        };
        Some((d.name.clone(), tag.name.clone(), value))
    });
    if let Some((device, tag, value)) = writable {
        let topics = crate::contract::Topics::of(config);
        out.push(format!(
            "write:    mosquitto_pub -h {} -p {} -t '{}' -m '{{\"v\": {value}}}'  (result on …/result)",
            broker.host,
            broker.port,
            topics.command(&device, &tag),
        ));
    }
    match config.http.listen {
        Some(addr) => {
            out.push(format!("page:     http://{addr}/ (the status page)"));
            if let (true, Some(token)) = (config.http.allow_actions, &config.http.token) {
                out.push(format!(
                    "token:    {} (the page asks for it to acknowledge, shelve or write)",
                    token.expose_str()
                ));
            }
            out.push(format!("metrics:  http://{addr}/metrics"));
            out.push(format!("status:   http://{addr}/api/status"));
        }
        None => out.push(
            "metrics:  off ([http] listen is empty), so the view has nothing to show".to_string(),
        ),
    }
    let fate = if dir.is_temporary() {
        "removed at the end"
    } else {
        "kept"
    };
    out.push(format!("data dir: {} ({fate})", dir.path().display()));
    out.push(format!(
        "config:   {}; scenario: {}",
        config.path.display(),
        options
            .scenario
            .as_deref()
            .map(Path::display)
            .map(|p| p.to_string())
            .unwrap_or_else(|| "built in (config/sim/demo.toml)".into())
    ));
    out.push(match options.duration {
        Some(d) => format!(
            "runs for {}; Ctrl-C stops it sooner",
            humantime::format_duration(d)
        ),
        None => "runs until Ctrl-C".to_string(),
    });
    out
}

fn news_line(news: &CmmsNews) -> String {
    match news {
        CmmsNews::Connected => "cmms: connected; watching work orders and alarms".into(),
        CmmsNews::Disconnected(e) => format!("cmms: lost the broker ({e}); reconnecting"),
        CmmsNews::Received { id, title } => format!("cmms: received work order [{id}] \"{title}\""),
        CmmsNews::Reported(Decision::Accept { id, cmms_ref }) => {
            format!("cmms: accepted [{id}] as {cmms_ref}")
        }
        CmmsNews::Reported(Decision::Close { id, cmms_ref, note }) => {
            format!("cmms: closed {cmms_ref} [{id}]: {note}")
        }
    }
}

/// Reads the status, prints what changed, redraws, and keeps the tally.
struct Watcher {
    http: Option<SocketAddr>,
    broker: String,
    began: Instant,
    deadline: Option<Instant>,
    last: Option<PlantStatus>,
    /// A failed read was reported; the next one is not (until a success).
    failing: bool,
    tally: Tally,
}

impl Watcher {
    fn new(
        http: Option<SocketAddr>,
        broker: String,
        began: Instant,
        deadline: Option<Instant>,
    ) -> Watcher {
        Watcher {
            http,
            broker,
            began,
            deadline,
            last: None,
            failing: false,
            tally: Tally::default(),
        }
    }

    async fn refresh(&mut self, view: &mut View) {
        if let Some(addr) = self.http {
            match status::fetch(addr).await {
                Ok(new) => {
                    let empty = PlantStatus::default();
                    let found = changes(self.last.as_ref().unwrap_or(&empty), &new);
                    self.tally.add(&new, &found);
                    let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
                    view.lines(&lines);
                    self.last = Some(new);
                    self.failing = false;
                }
                // Before the first answer the gateway is still starting.
                Err(e) if self.last.is_some() && !self.failing => {
                    self.failing = true;
                    view.lines(&[format!("view: cannot read /api/status: {e}")]);
                }
                Err(_) => {}
            }
        }
        view.logs();
        let now = Instant::now();
        view.draw(&Frame {
            status: self.last.as_ref(),
            elapsed: now.duration_since(self.began),
            remaining: self.deadline.map(|d| d.saturating_duration_since(now)),
            broker: &self.broker,
        });
    }

    fn summary(&self, view: &mut View) {
        if let Some(s) = &self.last {
            view.lines(&[panel::summary_line(s)]);
        }
    }
}
