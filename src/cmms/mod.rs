//! CMMS connectors: work orders (and meter readings) delivered straight to
//! a maintenance system's REST API, with the outbox's promise, and the
//! CMMS's status brought back.
//!
//! # Flow
//!
//! ```text
//! pipeline ──work order + delivery rows, one transaction──► store (sink queue, per connector)
//!                                                              │ in id order
//!                                  delivery task (one per connector) ──HTTP──► CMMS
//!                                      │  2xx: row deleted, reference kept   4xx: parked   5xx/timeout: retried
//!                                      └── status (polled, or pushed to the HTTP server) ──► typed request ──► pipeline
//! ```
//!
//! * [`exchange`]: requests, answers and failures as the pure code sees them.
//! * [`vendor`]: what each CMMS's API wants (pure).
//! * [`route`]: which connectors take which message (pure).
//! * [`client`]: the HTTP client of a connector.
//! * [`task`]: the delivery task of a connector.
//! * [`Connectors`]: the running connectors of a config.

pub mod client;
pub mod exchange;
pub mod route;
pub mod task;
pub mod vendor;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::CmmsConfig;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::StoreHandle;

pub use client::{Client, ClientError};
pub use task::{ConnectorStats, Reported};

/// Statuses reported by the connectors, at most this many waiting.
pub const REPORTS_CAPACITY: usize = 64;

/// The running connectors of one config: what a reload stops and starts.
pub struct Connectors {
    trigger: ShutdownTrigger,
    tasks: Vec<JoinHandle<()>>,
    /// Each connector's name and figures, in config order.
    pub stats: Vec<(String, Arc<ConnectorStats>)>,
}

impl Connectors {
    /// Starts a task per connector of `configs` on `store`, reporting
    /// statuses to `reports`. A connector whose client cannot be built
    /// (an unreadable CA file since `check`) is logged and left out; its
    /// deliveries wait in the store.
    /// `figures` are the counters to write, by connector name (the
    /// metrics registry's); a connector without is given fresh ones.
    pub fn start(
        configs: &[CmmsConfig],
        store: &StoreHandle,
        reports: &mpsc::Sender<Reported>,
        figures: &[(String, Arc<ConnectorStats>)],
    ) -> Connectors {
        let (trigger, shutdown): (ShutdownTrigger, Shutdown) = crate::shutdown::channel();
        let mut tasks = Vec::new();
        let mut stats = Vec::new();
        for config in configs {
            let figures = figures
                .iter()
                .find(|(n, _)| *n == config.name)
                .map_or_else(|| Arc::new(ConnectorStats::default()), |(_, f)| f.clone());
            stats.push((config.name.clone(), figures.clone()));
            let client = match Client::new(config) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "CMMS connector not started; its deliveries wait in the store");
                    continue;
                }
            };
            let connector = task::Connector::new(
                config.clone(),
                client,
                store.clone(),
                reports.clone(),
                figures,
            );
            tasks.push(tokio::spawn(connector.run(shutdown.clone())));
        }
        Connectors {
            trigger,
            tasks,
            stats,
        }
    }

    /// Whether no connector runs.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// Stops every connector between exchanges and waits for them.
    pub async fn stop(&mut self) {
        self.trigger.trigger();
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}
