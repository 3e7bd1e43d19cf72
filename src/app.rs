//! Wires the stages together and owns the shutdown order.
//!
//! Today: pollers → a consumer that logs each batch at debug level. The
//! outbox, rules and MQTT stages join here as they are built.
//!
//! Shutdown follows the flow (STYLE.md, practice 2): the pollers stop
//! first (between requests); the consumer ends when the last batch sender
//! is dropped and the channel is drained.

use std::future::Future;

use tokio::sync::mpsc;

use crate::config::Config;
use crate::modbus::{self, Batch};
use crate::shutdown;

/// Batches waiting between the pollers and the next stage. When full,
/// pollers wait (their next polls are skipped, not queued), so memory stays
/// bounded whatever the next stage does.
pub const BATCH_CHANNEL_CAPACITY: usize = 1024;

/// Runs the gateway on `config` until `stop` resolves.
pub async fn run(config: Config, stop: impl Future<Output = ()>) {
    let (trigger, listener) = shutdown::channel();
    let (tx, rx) = mpsc::channel::<Batch>(BATCH_CHANNEL_CAPACITY);
    let pollers = modbus::spawn_pollers(&config, tx, &listener);
    tracing::info!(
        devices = config.devices.len(),
        links = pollers.len(),
        config = config.short_hash(),
        "polling"
    );
    let consumer = tokio::spawn(log_batches(rx));

    stop.await;
    tracing::info!("stopping");
    trigger.trigger();
    for p in pollers {
        let _ = p.await;
    }
    let _ = consumer.await;
    tracing::info!("stopped");
}

/// The stand-in for the outbox: logs every batch at debug level.
async fn log_batches(mut rx: mpsc::Receiver<Batch>) {
    while let Some(batch) = rx.recv().await {
        if tracing::enabled!(tracing::Level::DEBUG) {
            let values: Vec<String> = batch
                .readings
                .iter()
                .map(|r| {
                    let name = batch
                        .device
                        .tags
                        .get(r.tag)
                        .map(|t| t.name.as_str())
                        .unwrap_or("?");
                    match &r.value {
                        Some(v) => format!("{name}={v}"),
                        None => format!("{name}:{}", r.quality),
                    }
                })
                .collect();
            tracing::debug!(device = %batch.device.name, good = batch.good_count(), "{}", values.join(" "));
        }
    }
}
