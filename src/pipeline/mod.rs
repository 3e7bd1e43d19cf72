//! The pipeline task: from polls, the clock and inbound requests to outbox
//! rows.
//!
//! ```text
//! Batch ──┬─► filter (report by exception) ─► data/{device}   ─┐
//!         └─► rules stage ─► alarms, work orders, meters      ─┼─► store: insert, record (history), save_state
//! 1 s tick ─► rules stage (delays, stale, shelves)            ─┤
//! Inbound (acks, shelve, CMMS status) ─► rules stage          ─┘
//! ```
//!
//! One task owns the filter, the per-topic sequence numbers and the rules
//! stage, so every message gets its `seq` from one place and the rules see
//! readings, ticks and requests in one order. Each step's messages,
//! history and (when due) saved state are queued to the store in that
//! order; the store commits them in one transaction (see `rules.rs` for
//! what is saved when).
//!
//! # Backpressure and shutdown
//!
//! When the store's queue is full, `insert` waits, so this task stops
//! taking batches and the pollers wait on the bounded batch channel.
//! Inbound requests are not waited for: while their channel is full the
//! forwarder holds them, in order, and passes them on as room appears.
//!
//! The task ends when the pollers are gone (the batch channel closes):
//! it saves the rules state and waits for the store to commit everything
//! it queued, so nothing a poller produced is left in memory. Requests
//! still in the inbound channel then are not taken: a reload hands the
//! channel to the next pipeline, a stop leaves their messages
//! unacknowledged for the broker to send again.
//!
//! # Inbound requests: done once committed
//!
//! A step takes up to [`REQUESTS_PER_STEP`] requests, applies them, saves
//! the rules state with their messages and history when they changed
//! anything ([`Save::Now`]: an ack must not be acknowledged to the broker
//! and then be lost with an unsaved state), and waits for the store's
//! commit ([`StoreHandle::flush`]) before it completes their tokens
//! ([`Handled::done`]), which lets the forwarder acknowledge the MQTT
//! messages. A request that changes nothing (an unknown rule, a status
//! already known) is completed the same way. If the commit fails the
//! tokens wait for the next step's commit; a task that ends without
//! committing drops them, and the broker sends the messages again. Local
//! requests (the status page's) have nobody waiting and cost no commit.
//!
//! # Telemetry
//!
//! The task hands each batch, once used, to [`Telemetry::keep_last`] (the
//! last values of `/api/status`), and publishes the rules view after every
//! step that changed an alarm, a work order or a meter, and at least once
//! a [`TICK`] (which is also its heartbeat for `/healthz`).
//!
//! # Layout
//!
//! * `data`: the filter, data payloads and the [`Sequencer`];
//! * `rules`: the [`RulesStage`] around the pure `crate::rules` core;
//! * `sparkplug`: the rows of the Sparkplug edge node ([`SparkplugOut`]);

mod data;
mod rules;
mod sparkplug;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

pub use data::{PipelineConfig, Sequencer, messages};
pub use rules::{RulesStage, SAVE_INTERVAL, Save, Step};
pub use sparkplug::SparkplugOut;

use crate::events::ReadingsSuppressed;
use crate::filter::Filter;
use crate::mqtt::forwarder::{Handled, Inbound};
use crate::reading::Batch;
use crate::store::{Kind, StoreError, StoreHandle};
use crate::telemetry::Telemetry;

/// Most batches handled in one step: amortises the hop to the store
/// thread when polls arrive faster than it commits.
const BATCHES_PER_STEP: usize = 64;

/// Most inbound requests applied in one step (and committed by one
/// flush), so a burst redelivered after a reconnect costs few commits.
pub const REQUESTS_PER_STEP: usize = 64;

/// How often time-driven rules (delays, `stale`, shelves) are looked at.
pub const TICK: Duration = Duration::from_secs(1);

/// How the pipeline task ended.
#[derive(Debug)]
pub struct Drained {
    /// `Ok` when everything it held is committed.
    pub result: Result<(), StoreError>,
    /// The inbound channel, handed back for the next pipeline (a reload
    /// restarts the pipeline, not the forwarder that feeds the channel).
    pub inbound: mpsc::Receiver<Inbound>,
}

/// Runs until the batch channel closes, then saves and flushes. Beats
/// the telemetry's heartbeat on every step (at least once per [`TICK`]),
/// publishes the rules view, and keeps each batch as its device's last
/// readings.
pub async fn run(
    batches: mpsc::Receiver<Batch>,
    mut inbound: mpsc::Receiver<Inbound>,
    store: StoreHandle,
    config: PipelineConfig,
    rules: RulesStage,
    telemetry: Arc<Telemetry>,
) -> Drained {
    let result = steps(batches, &mut inbound, &store, &config, rules, &telemetry).await;
    Drained { result, inbound }
}

async fn steps(
    mut batches: mpsc::Receiver<Batch>,
    inbound: &mut mpsc::Receiver<Inbound>,
    store: &StoreHandle,
    config: &PipelineConfig,
    mut rules: RulesStage,
    telemetry: &Telemetry,
) -> Result<(), StoreError> {
    // Every duration (delays, shelves, `stale`, rows' ages) is measured on
    // the store's timeline, which a step of the wall clock does not move.
    let clock = *store.clock();
    let mut filter = Filter::new();
    let mut sequencer = Sequencer::resume(&store.identity().id, store.topic_seqs().await?);
    let mut step = rules.restore(store, &mut sequencer).await?;
    commit(store, &mut rules, step, Instant::now()).await?;
    telemetry.publish_rules(rules.view());
    let mut view_at = Instant::now();

    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut inbound_open = true;
    let mut received = Vec::with_capacity(BATCHES_PER_STEP);
    let mut requests = Vec::with_capacity(REQUESTS_PER_STEP);
    // Tokens of applied requests, completed once their step is committed.
    let mut handled: Vec<Handled> = Vec::new();
    loop {
        telemetry.beat();
        step = Step::default();
        tokio::select! {
            // `recv_many`, `recv` and `tick` are cancel-safe.
            n = batches.recv_many(&mut received, BATCHES_PER_STEP) => {
                if n == 0 {
                    break;
                }
                let now = Instant::now();
                let clocks = clock.wall_map();
                for batch in received.drain(..) {
                    let before = filter.dropped();
                    step.messages.extend(messages(
                        &batch,
                        &mut filter,
                        &mut sequencer,
                        config,
                        now,
                        clocks.at,
                    ));
                    let suppressed = filter.dropped() - before;
                    ReadingsSuppressed { count: suppressed }.emit();
                    let at = clock.at(batch.started);
                    rules.on_batch(&batch, at, clocks, &mut sequencer, &mut step);
                    telemetry.keep_last(batch, suppressed);
                }
            }
            n = inbound.recv_many(&mut requests, REQUESTS_PER_STEP), if inbound_open => {
                if n == 0 {
                    inbound_open = false;
                }
                let now = clock.wall_map();
                for Inbound { request, handled: token } in requests.drain(..) {
                    rules.on_inbound(&request, now, &mut sequencer, &mut step);
                    if token.is_tracked() {
                        handled.push(token);
                    }
                }
                // The state that the requests changed is committed with
                // their messages, before the broker is told they are done.
                if step.save > Save::Later || !step.history.is_empty() {
                    step.save = Save::Now;
                }
            }
            _ = tick.tick() => rules.tick(clock.wall_map(), &mut sequencer, &mut step),
        }
        let now = Instant::now();
        // Half a tick, so that the tick alone keeps it published every second.
        let view_due = changes_rules_state(&step) || now.duration_since(view_at) >= TICK / 2;
        commit(store, &mut rules, step, now).await?;
        if !handled.is_empty() {
            confirm(store, &mut handled).await;
        }
        if view_due {
            telemetry.publish_rules(rules.view());
            view_at = now;
        }
    }
    tracing::debug!(dropped_by_deadband = filter.dropped(), "pipeline drained");
    let last = Step {
        save: Save::Now,
        ..Step::default()
    };
    commit(store, &mut rules, last, Instant::now()).await?;
    let flushed = store.flush().await;
    if flushed.is_ok() {
        handled.drain(..).for_each(Handled::done);
    }
    flushed
}

/// Waits for the store to commit what was queued, then completes the
/// tokens of the requests applied so far. On an error they stay for the
/// next step's commit (the store keeps what it could not commit and
/// retries).
async fn confirm(store: &StoreHandle, handled: &mut Vec<Handled>) {
    match store.flush().await {
        Ok(()) => handled.drain(..).for_each(Handled::done),
        Err(e) => {
            tracing::debug!(error = %e, requests = handled.len(), "inbound requests applied but not committed yet; their messages stay unacknowledged")
        }
    }
}

/// Whether a step changed an alarm, a work order or a meter: only those
/// produce messages other than readings, or history.
fn changes_rules_state(step: &Step) -> bool {
    !step.history.is_empty() || step.messages.iter().any(|m| m.kind != Kind::Reading)
}

/// Queues a step's messages, then its history, then the rules state when
/// a save is due: in that order, so the store commits them together.
async fn commit(
    store: &StoreHandle,
    rules: &mut RulesStage,
    step: Step,
    now: Instant,
) -> Result<(), StoreError> {
    let states = if rules.save_due(&step, now) {
        rules
            .saved()
            .into_iter()
            .map(|(key, blob)| (key.to_owned(), blob))
            .collect()
    } else {
        Vec::new()
    };
    // One command: the store commits the messages, their history and the
    // state that produced them in one transaction.
    store
        .insert_step(step.messages, step.history, states, step.deliveries)
        .await
}
