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

use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;

use crate::config::{Config, Qos};
use crate::modbus::{self, Batch};
use crate::mqtt::forwarder::{self, ForwarderConfig, ForwarderStats, Inbound};
use crate::mqtt::topics::Topics;
use crate::pipeline::{self, PipelineConfig, RulesStage};
use crate::rules::RulesError;
use crate::shutdown;
use crate::store::{self, StoreError};

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
}

/// Runs the gateway on `config` until `stop` resolves.
pub async fn run(config: Config, stop: impl Future<Output = ()>) -> Result<(), AppError> {
    let started = SystemTime::now();
    let topics = Topics::of(&config);
    // Before the store opens: a rule that cannot be built stops the start.
    let rules = RulesStage::new(&config, topics.clone())?;
    let store_config = config.store.clone();
    let opened = tokio::task::spawn_blocking(move || store::open(&store_config))
        .await
        .unwrap_or(Err(StoreError::Closed));
    let (store, guard) = opened.map_err(|source| AppError::Store {
        path: config.store.path.display().to_string(),
        source,
    })?;

    let (poll_trigger, poll_listener) = shutdown::channel();
    let (forward_trigger, forward_listener) = shutdown::channel();
    let (batch_tx, batch_rx) = mpsc::channel::<Batch>(BATCH_CHANNEL_CAPACITY);
    let (inbound_tx, inbound_rx) = mpsc::channel::<Inbound>(INBOUND_CHANNEL_CAPACITY);

    let pollers = modbus::spawn_pollers(&config, batch_tx, &poll_listener);
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
    ));
    let stats = Arc::new(ForwarderStats::default());
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
    drop(store);
    match tokio::task::spawn_blocking(move || guard.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "closing the store failed"),
        Err(e) => tracing::error!(error = %e, "closing the store failed"),
    }
    tracing::info!("stopped");
    Ok(())
}
