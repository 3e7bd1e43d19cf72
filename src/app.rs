//! Wires the stages together, applies reloads, and owns the shutdown order.
//!
//! ```text
//! pollers ──Batch──► pipeline (filter, rules, payloads, seq) ──► store (SQLite outbox) ──► forwarder ──► broker
//!  one per link        one task              ▲                 one thread                one task
//!                                            └──── Inbound (acks, shelve, work-order status) ◄──┘
//! ```
//!
//! # Start
//!
//! The rules are built first (a config that `check` would refuse stops
//! here), then the store opens and records the config in its change log,
//! the forwarder, pollers and pipeline start, and systemd is told
//! `READY=1` (readiness means: config valid, store running; the broker may
//! be down, the gateway buffers). A disk that does not let the store open
//! its file (full, read-only, failing) does not stop the start: the store
//! runs degraded on its memory queue and keeps trying the file, and
//! `/readyz` says so (a restart loop under systemd would poll and publish
//! nothing). Only a store held by another fieldgate, or written by a newer
//! one, stops the start ([`AppError::Store`]). The systemd watchdog is fed
//! while the pipeline's heartbeat is fresh.
//!
//! # Reload
//!
//! A new, already validated [`Config`] arrives on the reload channel (the
//! CLI reads it on SIGHUP). If nothing differs, nothing happens. Otherwise
//! the *acquisition* (pollers and pipeline) stops as at shutdown: every
//! reading taken and the rules state are committed. It starts again on the
//! new config, with a metrics registry for it (devices that did not change
//! keep their counters); the pipeline restores the rules from the store, so an alarm
//! whose rule still exists keeps its state, and meters and work orders
//! carry on. The store stays open (a `[store]` change waits for the next
//! restart, like `[http]`), and so does the forwarder with its MQTT session, unless the
//! broker, client or topic tree changed; otherwise it only republishes its
//! status with the new config hash. Each applied config is recorded in the
//! store's config log.
//!
//! # Shutdown: in flow order, with a deadline
//!
//! 1. The pollers stop, between requests.
//! 2. The pipeline sees the batch channel close, hands what it holds and
//!    the rules state to the store and waits for the commit: nothing read
//!    is left in memory.
//! 3. While the broker is connected, the forwarder gets up to
//!    [`FINAL_DELIVERY`] to deliver what that last commit added (the
//!    readings of the final polls, the rules state's messages), so a clean
//!    stop with a healthy broker leaves the outbox empty rather than
//!    holding the newest messages back until the next start.
//! 4. The forwarder publishes the retained `offline` status and
//!    disconnects; rows it had not delivered stay in the outbox for the
//!    next start.
//! 5. The store commits, checkpoints and closes.
//!
//! Steps 1–4 share the `shutdown_timeout` deadline; past it the rest is
//! abandoned (what was committed is safe) and the store is closed anyway.
//! The HTTP server (`[http] listen`) is told to stop first, with its own
//! short grace ([`http::GRACE`]), and is awaited before the store closes.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::cmms::{self, Connectors, Reported};
use crate::command::{self, WriteOrder};
use crate::config::diff::{self, ConfigChanges};
use crate::config::{Config, Qos};
use crate::contract::Request;
use crate::contract::sparkplug::SharedCurrent;
use crate::contract::topics::Topics;
use crate::events::ConfigRefused;
use crate::http::{self, ActionRoute, Actions, HttpError, HttpState};
use crate::modbus::write::Writers;
use crate::modbus::{self, Probes};
use crate::mqtt::forwarder::{self, ForwarderConfig, ForwarderStats, INBOUND_CAPACITY, Inbound};
use crate::mqtt::sparkplug::{self, EdgeNodeConfig, EdgeNodeStats};
use crate::pipeline::{self, Drained, PipelineConfig, RulesStage, SparkplugOut};
use crate::reading::Batch;
use crate::rules::RulesError;
use crate::shutdown::{self, ShutdownTrigger};
use crate::store::{self, StoreError, StoreHandle};
use crate::systemd;
use crate::telemetry::Telemetry;
use crate::writeback::{Desk, DeskRoute};

/// Batches waiting between the pollers and the pipeline. When full,
/// pollers wait (their next polls are skipped, not queued), so memory
/// stays bounded whatever the stages after them do.
pub const BATCH_CHANNEL_CAPACITY: usize = 1024;

/// Longest a stop waits, while the broker is connected, for the broker to
/// acknowledge what the pipeline's last commit left in the outbox (step 3
/// of the shutdown order; counted within `shutdown_timeout`). A broker
/// that is connected but slow costs at most this much of the stop.
pub const FINAL_DELIVERY: Duration = Duration::from_secs(2);

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The outbox must not be used (another fieldgate holds it, or a
    /// newer one wrote it), or its thread could not start. A failing disk
    /// is not this: the store then starts degraded.
    #[error("cannot open the store {path}: {source}")]
    Store {
        /// The database file.
        path: String,
        /// Why.
        source: StoreError,
    },
    /// The rules could not be built (`fieldgate check` reports why first).
    #[error("cannot start the rules: {0}")]
    Rules(#[from] RulesError),
    /// The HTTP port could not be opened.
    #[error(transparent)]
    Http(#[from] HttpError),
}

/// Runs the gateway on `config` until `stop` resolves.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<(), AppError> {
    run_with_reloads(config, stop, None).await
}

/// [`run`], applying each configuration that arrives on `reloads` (see
/// the module docs). Configurations must be valid (`config::load`
/// succeeded); one whose rules cannot be built is refused and the running
/// one kept.
pub async fn run_with_reloads(
    config: Config,
    stop: impl Future<Output = ()>,
    mut reloads: Option<mpsc::Receiver<Config>>,
) -> Result<(), AppError> {
    let mut gateway = Gateway::start(config).await?;
    let (watchdog_trigger, watchdog_listener) = shutdown::channel();
    let watchdog = systemd::watchdog_interval().map(|interval| {
        tracing::info!(?interval, "feeding the systemd watchdog");
        tokio::spawn(systemd::watchdog(
            interval,
            gateway.telemetry.borrow().heartbeat().clone(),
            watchdog_listener,
        ))
    });
    systemd::ready(&gateway.status_line());

    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            new = next_reload(&mut reloads) => match new {
                // A stop during a reload abandons the reload and shuts
                // down whatever is running.
                Some(new) => tokio::select! {
                    () = &mut stop => break,
                    () = gateway.reload(new) => {}
                },
                None => reloads = None,
            },
        }
    }
    tracing::info!("stopping");
    systemd::stopping();
    // The endpoints stop first (awaited before the store closes).
    gateway.http_trigger.trigger();
    watchdog_trigger.trigger();
    if let Some(w) = watchdog {
        let _ = w.await;
    }
    gateway.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The next configuration, or `None` once the channel is closed; pending
/// for ever when there is no channel.
async fn next_reload(reloads: &mut Option<mpsc::Receiver<Config>>) -> Option<Config> {
    match reloads {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Everything that runs, and what a reload needs to start it again.
struct Gateway {
    config: Config,
    started: SystemTime,
    store: StoreHandle,
    guard: store::StoreGuard,
    /// The registry of the running config; the HTTP server reads the
    /// current one (a reload replaces it).
    telemetry: watch::Sender<Arc<Telemetry>>,
    http_trigger: ShutdownTrigger,
    http_server: Option<JoinHandle<()>>,
    stats: Arc<ForwarderStats>,
    inbound_tx: mpsc::Sender<Inbound>,
    /// Where the HTTP actions send operator requests (the running config's
    /// topics and rules, and `inbound_tx`).
    action_route: watch::Sender<ActionRoute>,
    hash_tx: watch::Sender<String>,
    forwarding: Forwarding,
    acquisition: Acquisition,
    /// The CMMS connectors (restarted on every reload: a reload is also
    /// how parked deliveries are tried again).
    connectors: Connectors,
    /// Where the connectors report the CMMS's statuses.
    reports: mpsc::Sender<Reported>,
    /// Applies the reports (ends when every sender is gone).
    reporter: JoinHandle<()>,
    /// The latest readings and alarm states, written by the pipeline, read
    /// by the Sparkplug edge node's births (kept across reloads).
    current: SharedCurrent,
    /// The Sparkplug edge node, when `[sparkplug]` is on.
    edge_node: EdgeNode,
    /// Where write commands go, from every path in (one sender for the
    /// gateway's life: a reload changes the desk's route, not this).
    orders: mpsc::Sender<WriteOrder>,
    /// The write desk.
    desk: Desk,
    /// Stops the desk.
    desk_trigger: ShutdownTrigger,
    /// The desk's view of the running configuration and links.
    desk_route: watch::Sender<DeskRoute>,
}

impl Gateway {
    async fn start(config: Config) -> Result<Gateway, AppError> {
        let started = SystemTime::now();
        // Before the store opens: a rule that cannot be built stops the start.
        let rules = RulesStage::new(&config, Topics::of(&config))?;
        // Also before the store: a port already taken stops the start at
        // once, with the address in the message (docs/metrics.md).
        let http_socket = match config.http.listen {
            Some(addr) => Some(http::bind(addr, config.http.token.is_some()).await?),
            None => None,
        };
        let store_config = config.store.clone();
        let opened = tokio::task::spawn_blocking(move || store::open(&store_config))
            .await
            .unwrap_or(Err(StoreError::Closed));
        let (store, guard) = opened.map_err(|source| AppError::Store {
            path: config.store.path.display().to_string(),
            source,
        })?;
        record_config(&store, &config.hash, &diff::started_summary(&config)).await;

        let telemetry = Arc::new(Telemetry::new(&config, Probes::new(&config), started));
        let stats = telemetry.mqtt_stats();
        let (telemetry_tx, telemetry_rx) = watch::channel(telemetry.clone());
        let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(INBOUND_CAPACITY);
        let (http_trigger, http_listener) = shutdown::channel();
        let (orders, orders_rx) = mpsc::channel::<WriteOrder>(command::ORDERS_CAPACITY);
        let (action_route, route_rx) =
            watch::channel(ActionRoute::of(&config, inbound_tx.clone(), orders.clone()));
        let route_rx_status = route_rx.clone();
        let http_server = http_socket.map(|socket| {
            let actions = match (&config.http.token, config.http.allow_actions) {
                (Some(token), true) => Some(Actions {
                    token: token.clone(),
                    route: route_rx,
                }),
                _ => None,
            };
            let state = HttpState::new(telemetry_rx, store.clone(), actions, http_listener.clone())
                .with_status_route(route_rx_status);
            http::serve(socket, state, http_listener)
        });
        let (hash_tx, hash_rx) = watch::channel(config.hash.clone());
        let forwarding = Forwarding::start(
            &config,
            started,
            &store,
            inbound_tx.clone(),
            orders.clone(),
            stats.clone(),
            hash_rx,
        );
        let current = SharedCurrent::default();
        let edge_node = EdgeNode::start(
            &config,
            &store,
            &current,
            telemetry.sparkplug_stats(),
            &orders,
        );
        let acquisition =
            Acquisition::start(&config, rules, &store, inbound_rx, &telemetry, &current);
        let (desk_route, desk_route_rx) = watch::channel(DeskRoute {
            config: Arc::new(config.clone()),
            writers: acquisition.writers.clone(),
        });
        let (desk_trigger, desk_listener) = shutdown::channel();
        let desk = Desk::start(
            orders_rx,
            desk_route_rx,
            store.clone(),
            telemetry.write_stats(),
            desk_listener,
        );
        let (reports, reports_rx) = mpsc::channel(cmms::REPORTS_CAPACITY);
        let reporter = tokio::spawn(apply_reports(reports_rx, action_route.subscribe()));
        let connectors = Connectors::start(&config.cmms, &store, &reports, telemetry.cmms_stats());
        tracing::info!(
            devices = config.devices.len(),
            rules = config.rules.len(),
            meters = config.meters.len(),
            links = acquisition.pollers.len(),
            config = config.short_hash(),
            store = %config.store.path.display(),
            broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
            "running"
        );
        Ok(Gateway {
            config,
            started,
            store,
            guard,
            telemetry: telemetry_tx,
            http_trigger,
            http_server,
            stats,
            inbound_tx,
            action_route,
            hash_tx,
            forwarding,
            acquisition,
            connectors,
            reports,
            reporter,
            current,
            edge_node,
            orders,
            desk,
            desk_trigger,
            desk_route,
        })
    }

    /// `systemctl status`'s line.
    fn status_line(&self) -> String {
        format!(
            "running: {} devices, {} rules, config {}",
            self.config.devices.len(),
            self.config.rules.len(),
            self.config.short_hash()
        )
    }

    /// Applies `new` (module docs); on any refusal the running config
    /// stays and the reason is logged.
    async fn reload(&mut self, mut new: Config) {
        systemd::reloading();
        let changes = ConfigChanges::between(&self.config, &new);
        if changes.is_empty() {
            tracing::info!(
                config = new.short_hash(),
                "reload: the configuration is unchanged"
            );
            systemd::ready(&self.status_line());
            return;
        }
        let rules = match RulesStage::new(&new, Topics::of(&new)) {
            Ok(r) => r,
            Err(e) => {
                ConfigRefused {
                    error: &e,
                    running: self.config.short_hash(),
                }
                .emit();
                systemd::ready(&self.status_line());
                return;
            }
        };
        if changes.section("store") {
            tracing::warn!("reload: [store] changes take effect at the next restart");
            new.store = self.config.store.clone();
        }
        let summary = changes.summary();
        tracing::info!(changes = %summary, "reload: applying");

        // Everything read so far and the rules state are committed here.
        let inbound_rx = match self.acquisition.stop().await {
            Some(rx) => rx,
            None => {
                // The pipeline failed and took the channel with it: the
                // forwarder needs a new one, so it restarts too.
                let (tx, rx) = mpsc::channel(INBOUND_CAPACITY);
                self.inbound_tx = tx;
                self.restart_forwarding(&new).await;
                rx
            }
        };
        if ConfigChanges::reconnects_mqtt(&self.config, &new) {
            self.restart_forwarding(&new).await;
        } else {
            self.hash_tx.send_replace(new.hash.clone());
        }
        let telemetry = {
            let old = self.telemetry.borrow();
            let probes = old.probes().reconfigured(&new);
            Arc::new(old.reconfigured(&new, probes))
        };
        self.telemetry.send_replace(telemetry.clone());
        // A new session tells Sparkplug hosts of the new configuration: its
        // births carry the new metrics, aliases and config hash.
        self.edge_node.stop().await;
        self.edge_node = EdgeNode::start(
            &new,
            &self.store,
            &self.current,
            telemetry.sparkplug_stats(),
            &self.orders,
        );
        self.acquisition = Acquisition::start(
            &new,
            rules,
            &self.store,
            inbound_rx,
            &telemetry,
            &self.current,
        );
        self.action_route.send_replace(ActionRoute::of(
            &new,
            self.inbound_tx.clone(),
            self.orders.clone(),
        ));
        // Writes judged from now on see the new tags and go to the new
        // links; the rate book carries over.
        self.desk_route.send_replace(DeskRoute {
            config: Arc::new(new.clone()),
            writers: self.acquisition.writers.clone(),
        });
        // The connectors take the new sections, and what a CMMS refused is
        // tried again (a reload is how a fixed asset mapping is applied).
        self.connectors.stop().await;
        match self.store.sink_unpark(None).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                deliveries = n,
                "reload: parked CMMS deliveries are tried again"
            ),
            Err(e) => tracing::warn!(error = %e, "reload: cannot un-park CMMS deliveries"),
        }
        self.connectors = Connectors::start(
            &new.cmms,
            &self.store,
            &self.reports,
            telemetry.cmms_stats(),
        );
        record_config(&self.store, &new.hash, &summary).await;
        if changes.section("http") {
            tracing::warn!("reload: [http] changes take effect at the next restart");
        }
        tracing::info!(config = new.short_hash(), changes = %summary, "configuration applied");
        self.config = new;
        systemd::ready(&self.status_line());
    }

    async fn restart_forwarding(&mut self, config: &Config) {
        self.forwarding.stop().await;
        let (hash_tx, hash_rx) = watch::channel(config.hash.clone());
        self.hash_tx = hash_tx;
        self.forwarding = Forwarding::start(
            config,
            self.started,
            &self.store,
            self.inbound_tx.clone(),
            self.orders.clone(),
            self.stats.clone(),
            hash_rx,
        );
    }

    /// The shutdown order of the module docs.
    async fn shutdown(mut self) {
        let deadline = self.config.gateway.shutdown_timeout;
        // Between exchanges; what they had not delivered waits in the store.
        self.connectors.stop().await;
        drop(self.reports);
        let orderly = tokio::time::timeout(deadline, async {
            // First, while the links still run: a write under way is
            // finished and recorded, a command not started is refused.
            self.desk_trigger.trigger();
            self.desk.stopped().await;
            self.acquisition.stop().await;
            deliver_last(&self.store, &self.stats).await;
            self.forwarding.stop().await;
            self.edge_node.stop().await;
        })
        .await;
        if orderly.is_err() {
            tracing::error!(
                ?deadline,
                "shutdown took longer than shutdown_timeout; closing the store now (committed data is safe)"
            );
        }
        if let Some(server) = self.http_server.take() {
            // Ends within `http::GRACE` of its trigger, which fired first.
            let _ = server.await;
        }
        self.reporter.abort();
        drop(self.store);
        let guard = self.guard;
        match tokio::task::spawn_blocking(move || guard.close()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "closing the store failed"),
            Err(e) => tracing::error!(error = %e, "closing the store failed"),
        }
    }
}

/// Waits until the outbox is empty, the broker is not connected (nothing
/// would be delivered: the rows wait for the next start) or
/// [`FINAL_DELIVERY`] has passed. The forwarder is still running and sends
/// what was committed; this only holds its stop back.
async fn deliver_last(store: &StoreHandle, stats: &ForwarderStats) {
    let _ = tokio::time::timeout(FINAL_DELIVERY, async {
        loop {
            if !stats.connected.load(Ordering::Relaxed) {
                return;
            }
            match store.stats().await {
                // Deletes count once committed (one flush interval after
                // the PUBACK), so this also waits for that commit.
                Ok(s) if s.messages > 0 => {}
                _ => return,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Applies the CMMS's statuses reported by the connectors like statuses
/// on the MQTT status topic: into the running pipeline (through the
/// current route: a reload may replace the channel), each acknowledged to
/// its connector once the rules stage has applied and committed it.
async fn apply_reports(mut reports: mpsc::Receiver<Reported>, route: watch::Receiver<ActionRoute>) {
    while let Some(report) = reports.recv().await {
        let inbound = route.borrow().inbound.clone();
        let (request, handled) = Inbound::tracked(Request::WorkOrderStatus {
            id: report.wo_id,
            update: report.update,
            retained: false,
        });
        if inbound.send(request).await.is_err() {
            // The pipeline is restarting: the connector reports it again.
            continue;
        }
        if handled.await.is_ok() {
            let _ = report.applied.send(());
        }
    }
}

/// Adds a config to the store's change log; a failure is logged (the
/// gateway runs without its trail rather than not at all).
async fn record_config(store: &StoreHandle, hash: &str, summary: &str) {
    if let Err(e) = store.record_config(hash, summary).await {
        tracing::error!(error = %e, "cannot record the configuration in the config log");
    }
}

/// The pollers and the pipeline: what a reload restarts.
struct Acquisition {
    trigger: ShutdownTrigger,
    pollers: Vec<JoinHandle<()>>,
    /// A sender of the batch channel kept until [`stop`](Self::stop): the
    /// pipeline ends when the channel closes, and a config without devices
    /// (or a reload that removed the last one) has no poller to keep it
    /// open. Without it the pipeline would stop at once, its heartbeat
    /// with it, and `/healthz` and the systemd watchdog would call the
    /// gateway dead.
    batches: Option<mpsc::Sender<Batch>>,
    pipeline: Option<JoinHandle<Drained>>,
    /// The links' write queues, for the write desk.
    writers: Writers,
}

impl Acquisition {
    fn start(
        config: &Config,
        rules: RulesStage,
        store: &StoreHandle,
        inbound: mpsc::Receiver<Inbound>,
        telemetry: &Arc<Telemetry>,
        current: &SharedCurrent,
    ) -> Acquisition {
        let sparkplug = SparkplugOut::of(config, current.clone());
        let rules = rules.with_sparkplug(sparkplug.clone());
        let (trigger, listener) = shutdown::channel();
        let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCH_CHANNEL_CAPACITY);
        let (pollers, writers) =
            modbus::spawn_pollers_writable(telemetry.probes(), batch_tx.clone(), &listener);
        let pipeline = tokio::spawn(pipeline::run(
            batch_rx,
            inbound,
            store.clone(),
            PipelineConfig {
                topics: Topics::of(config),
                qos: match config.mqtt.qos {
                    Qos::AtLeastOnce => 1,
                    Qos::ExactlyOnce => 2,
                },
                per_tag_topics: config.mqtt.per_tag_topics,
                sparkplug,
            },
            rules,
            telemetry.clone(),
        ));
        Acquisition {
            trigger,
            pollers,
            batches: Some(batch_tx),
            pipeline: Some(pipeline),
            writers,
        }
    }

    /// Stops the pollers, then waits for the pipeline to commit what it
    /// holds. Returns the inbound channel for the next pipeline, or `None`
    /// if the pipeline task failed (or was already stopped).
    async fn stop(&mut self) -> Option<mpsc::Receiver<Inbound>> {
        self.trigger.trigger();
        for p in self.pollers.drain(..) {
            let _ = p.await;
        }
        // The pollers are gone: this was the last sender.
        self.batches = None;
        match self.pipeline.take()?.await {
            Ok(Drained { result, inbound }) => {
                if let Err(e) = result {
                    tracing::error!(error = %e, "pipeline stopped with an error");
                }
                Some(inbound)
            }
            Err(e) => {
                tracing::error!(error = %e, "pipeline task failed");
                None
            }
        }
    }
}

/// The Sparkplug edge node's task, when `[sparkplug]` is on.
struct EdgeNode {
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<Result<(), crate::mqtt::client::MqttError>>>,
}

impl EdgeNode {
    fn start(
        config: &Config,
        store: &StoreHandle,
        current: &SharedCurrent,
        stats: Arc<EdgeNodeStats>,
        orders: &mpsc::Sender<WriteOrder>,
    ) -> EdgeNode {
        let (trigger, listener) = shutdown::channel();
        let task = EdgeNodeConfig::of(config).map(|cfg| {
            tokio::spawn(sparkplug::run(
                cfg.with_writes(orders.clone()),
                store.clone(),
                current.clone(),
                stats,
                listener,
            ))
        });
        EdgeNode { trigger, task }
    }

    /// Publishes the NDEATH, disconnects and waits for the task.
    async fn stop(&mut self) {
        stop_mqtt_task(&self.trigger, self.task.take(), "sparkplug edge node").await;
    }
}

/// The forwarder task.
struct Forwarding {
    trigger: ShutdownTrigger,
    task: Option<JoinHandle<Result<(), crate::mqtt::client::MqttError>>>,
}

impl Forwarding {
    fn start(
        config: &Config,
        started: SystemTime,
        store: &StoreHandle,
        inbound: mpsc::Sender<Inbound>,
        writes: mpsc::Sender<WriteOrder>,
        stats: Arc<ForwarderStats>,
        config_hash: watch::Receiver<String>,
    ) -> Forwarding {
        let (trigger, listener) = shutdown::channel();
        let task = tokio::spawn(forwarder::run_with_updates(
            ForwarderConfig::from_config(config, started),
            store.clone(),
            inbound,
            Some(writes),
            stats,
            listener,
            Some(config_hash),
        ));
        Forwarding {
            trigger,
            task: Some(task),
        }
    }

    /// Publishes `offline`, disconnects and waits for the task.
    async fn stop(&mut self) {
        stop_mqtt_task(&self.trigger, self.task.take(), "forwarder").await;
    }
}

/// Fires `trigger` and waits for `task` (a connection's task: it says
/// goodbye to the broker first), logging how it ended.
async fn stop_mqtt_task(
    trigger: &ShutdownTrigger,
    task: Option<JoinHandle<Result<(), crate::mqtt::client::MqttError>>>,
    what: &str,
) {
    trigger.trigger();
    let Some(task) = task else {
        return;
    };
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "{what} stopped with an error"),
        Err(e) => tracing::error!(error = %e, "{what} task failed"),
    }
}
