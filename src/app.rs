//! Wires the stages together and owns the shutdown order.
//!
//! ```text
//! pollers ──Batch──► pipeline (filter, rules, payloads, seq) ──► store (SQLite outbox) ──► forwarder ──► broker
//!  one per link        one task              ▲                 one thread                one task
//!                                            └──── Inbound (acks, shelve, work-order status) ◄──┘
//! ```
//!
//! # Shutdown (STYLE.md, practice 2)
//!
//! 1. The pollers stop, between requests.
//! 2. The pipeline sees the batch channel close, hands what it holds and
//!    the rules state to the store and waits for the commit: nothing read
//!    is left in memory.
//! 3. The forwarder publishes the retained `offline` status and
//!    disconnects; rows it had not delivered stay in the outbox for the
//!    next start.
//! 4. The store commits, checkpoints and closes.
//!
//! Steps 1–3 share the `shutdown_timeout` deadline; past it the rest is
//! abandoned (what was committed is safe) and the store is closed anyway.
//! The HTTP server (`[http] listen`) is told to stop first, with its own
//! short grace ([`http::GRACE`]), and is awaited before the store closes.

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::config::{Config, Qos};
use crate::http::{self, HttpError, HttpState};
use crate::modbus::{self, Batch};
use crate::mqtt::forwarder::{self, ForwarderConfig, Inbound};
use crate::mqtt::topics::Topics;
use crate::pipeline::{self, PipelineConfig, RulesStage};
use crate::rules::RulesError;
use crate::shutdown;
use crate::store::{self, StoreError};
use crate::telemetry::Telemetry;

/// Batches waiting between the pollers and the pipeline. When full,
/// pollers wait (their next polls are skipped, not queued), so memory
/// stays bounded whatever the stages after them do.
pub const BATCH_CHANNEL_CAPACITY: usize = 1024;

/// Messages from the broker (acks, shelving, work-order status) waiting
/// for the rules stage. When full, the forwarder drops and counts them.
pub const INBOUND_CHANNEL_CAPACITY: usize = 256;

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The outbox could not be opened.
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
    /// The HTTP port could not be bound.
    #[error("{0}")]
    Http(#[from] HttpError),
}

/// Runs the gateway on `config` until `stop` resolves.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<(), AppError> {
    let started = SystemTime::now();
    let topics = Topics::of(&config);
    // Before the store opens: a rule that cannot be built stops the start.
    let rules = RulesStage::new(&config, topics.clone())?;

    // ── Telemetry and HTTP, part 1 of 3 (docs/metrics.md) ──────────────
    // Bound before the store opens: a port already taken stops the start
    // at once, not after the store's integrity check.
    let http_socket = match config.http.listen {
        Some(addr) => Some(http::bind(addr).await?),
        None => None,
    };
    // ───────────────────────────────────────────────────────────────────

    let store_config = config.store.clone();
    let opened = tokio::task::spawn_blocking(move || store::open(&store_config))
        .await
        .unwrap_or(Err(StoreError::Closed));
    let (store, guard) = opened.map_err(|source| AppError::Store {
        path: config.store.path.display().to_string(),
        source,
    })?;

    // ── Telemetry and HTTP, part 2 of 3 ────────────────────────────────
    // One registry for this config: the pollers, the pipeline and the
    // forwarder record into it (handles passed below), the server reads it.
    let telemetry = Arc::new(Telemetry::new(&config, started));
    let (http_trigger, http_listener) = shutdown::channel();
    let http_server = http_socket.map(|socket| {
        let state = HttpState {
            telemetry: telemetry.clone(),
            store: store.clone(),
        };
        http::serve(socket, state, http_listener)
    });
    // ───────────────────────────────────────────────────────────────────

    let (poll_trigger, poll_listener) = shutdown::channel();
    let (forward_trigger, forward_listener) = shutdown::channel();
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCH_CHANNEL_CAPACITY);
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(INBOUND_CHANNEL_CAPACITY);

    let pollers = modbus::spawn_pollers_observed(&config, batch_tx, &poll_listener, &telemetry);
    let pipeline = tokio::spawn(pipeline::run(
        batch_rx,
        inbound_rx,
        store.clone(),
        PipelineConfig {
            topics: topics.clone(),
            qos: match config.mqtt.qos {
                Qos::AtLeastOnce => 1,
                Qos::ExactlyOnce => 2,
            },
            per_tag_topics: config.mqtt.per_tag_topics,
        },
        rules,
        telemetry.clone(),
    ));
    let stats = telemetry.mqtt_stats();
    let forwarder = tokio::spawn(forwarder::run(
        ForwarderConfig {
            mqtt: config.mqtt.clone(),
            topics,
            config_hash: config.hash.clone(),
            started,
        },
        store.clone(),
        inbound_tx,
        stats,
        forward_listener,
    ));
    tracing::info!(
        devices = config.devices.len(),
        rules = config.rules.len(),
        meters = config.meters.len(),
        links = pollers.len(),
        config = config.short_hash(),
        store = %config.store.path.display(),
        broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
        "running"
    );

    stop.await;
    tracing::info!("stopping");
    // Telemetry and HTTP, part 3 of 3: the endpoints stop first (awaited below).
    http_trigger.trigger();
    let deadline = config.gateway.shutdown_timeout;
    let orderly = tokio::time::timeout(deadline, async {
        poll_trigger.trigger();
        for p in pollers {
            let _ = p.await;
        }
        match pipeline.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "pipeline stopped with an error"),
            Err(e) => tracing::error!(error = %e, "pipeline task failed"),
        }
        forward_trigger.trigger();
        match forwarder.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "forwarder stopped with an error"),
            Err(e) => tracing::error!(error = %e, "forwarder task failed"),
        }
    })
    .await;
    if orderly.is_err() {
        tracing::error!(
            ?deadline,
            "shutdown took longer than shutdown_timeout; closing the store now (committed data is safe)"
        );
    }
    if let Some(server) = http_server {
        // Ends within `http::GRACE` of the trigger, which fired long ago.
        let _ = server.await;
    }
    drop(store);
    match tokio::task::spawn_blocking(move || guard.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "closing the store failed"),
        Err(e) => tracing::error!(error = %e, "closing the store failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
