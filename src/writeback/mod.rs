//! The write desk: every write command, whichever path it came by (MQTT,
//! Sparkplug DCMD, the status page), is judged here, handed to its link's
//! task, recorded and answered.
//!
//! * [`gate`] (pure): the tag, its write settings, the value, the
//!   command's age, the tag's rate.
//! * The desk task ([`Desk::start`]): one for the gateway's life, so the
//!   paths in hold one sender that a reload does not change. A reload
//!   hands it the new configuration and the new links' queues
//!   ([`DeskRoute`]); the rate book carries over.
//!
//! # Why it is built this way
//!
//! * **One judge.** Whatever the path, the same code decides, so a write
//!   refused on MQTT cannot go through from the page.
//! * **The link's own task writes.** The desk never touches the bus: it
//!   sends a [`WriteJob`] to the task that polls the device, which runs it
//!   between requests, ahead of its next poll, so a write is never
//!   interleaved with another request on a half-duplex bus and a bit's
//!   read-modify-write cannot lose a poll's view.
//! * **At most once.** Nothing here retries: a write that got no answer
//!   is reported `unknown`, since a pulse or a counter reset written twice
//!   is a second pulse.
//! * **On the record.** Every command, refused or carried out, becomes a
//!   history entry (`fieldgate writes`) and a result message on
//!   `cmd/{device}/{tag}/result`, committed together.
//! * **Never blocks on a device.** Commands wait for their link in tasks
//!   of their own; the desk keeps taking commands for other devices.

pub mod gate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::command::{
    RejectReason, Source, WriteCommand, WriteOrder, WriteReport, WriteResult, WriteStats,
};
use crate::config::{Config, Qos};
use crate::contract::Topics;
use crate::contract::command::{report_json, result_payload};
use crate::modbus::write::{WriteDone, WriteJob, Writers};
use crate::shutdown::Shutdown;
use crate::store::{HistoryEntry, HistoryKind, Kind, OutMessage, StoreHandle};
use crate::tag::Value;

pub use gate::Gate;

/// How long the desk waits at a stop for writes already with a link: a
/// link answers within its timeouts (three requests at most), so this only
/// bounds a link task that stopped without answering.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// What the desk needs of the running configuration; a reload sends a
/// new one.
#[derive(Debug, Clone)]
pub struct DeskRoute {
    /// The running configuration (devices, tags, `[writes]`).
    pub config: Arc<Config>,
    /// The running links' write queues.
    pub writers: Writers,
}

/// The running desk.
#[derive(Debug)]
pub struct Desk {
    task: JoinHandle<()>,
}

impl Desk {
    /// Starts the desk on `orders`, with the route of the running
    /// configuration (replaced through `route`), recording into `store`.
    pub fn start(
        orders: mpsc::Receiver<WriteOrder>,
        route: watch::Receiver<DeskRoute>,
        store: StoreHandle,
        stats: Arc<WriteStats>,
        shutdown: Shutdown,
    ) -> Desk {
        let task = tokio::spawn(async move {
            let seqs = match store.topic_seqs().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "write desk: could not read the result topics' numbers; they start again at 1");
                    HashMap::new()
                }
            };
            let desk = Task {
                route,
                store,
                stats,
                gate: Gate::default(),
                seqs,
                pending: JoinSet::new(),
            };
            desk.run(orders, shutdown).await;
        });
        Desk { task }
    }

    /// Waits for the desk to end (after its shutdown fired): commands
    /// still queued are refused as busy, writes with a link are waited
    /// for and recorded.
    pub async fn stopped(self) {
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "write desk task failed");
        }
    }
}

/// A command with a link, and what the desk needs to record it.
struct Waiting {
    command: WriteCommand,
    reply: Option<oneshot::Sender<WriteReport>>,
    written: Value,
    done: Result<WriteDone, oneshot::error::RecvError>,
}

struct Task {
    route: watch::Receiver<DeskRoute>,
    store: StoreHandle,
    stats: Arc<WriteStats>,
    gate: Gate,
    /// The last number of each result topic.
    seqs: HashMap<String, u64>,
    pending: JoinSet<Waiting>,
}

impl Task {
    async fn run(mut self, mut orders: mpsc::Receiver<WriteOrder>, mut shutdown: Shutdown) {
        loop {
            tokio::select! {
                order = orders.recv() => match order {
                    Some(order) => self.take(order).await,
                    None => break,
                },
                Some(waited) = self.pending.join_next() => match waited {
                    Ok(w) => self.finish(w).await,
                    Err(e) => tracing::error!(error = %e, "write desk: a waiting write failed"),
                },
                changed = self.route.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let route = self.route.borrow_and_update().clone();
                    self.gate.retain_configured(&route.config);
                }
                _ = shutdown.recv() => break,
            }
        }
        // Nothing new is taken once stopping: a command still queued is
        // answered rather than carried out during a stop.
        orders.close();
        while let Ok(order) = orders.try_recv() {
            self.stats
                .received
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let refused =
                WriteResult::Rejected(RejectReason::Busy("the gateway is stopping".into()));
            self.report(order.command, order.reply, None, None, None, refused)
                .await;
        }
        let until = tokio::time::Instant::now() + STOP_WAIT;
        while !self.pending.is_empty() {
            match tokio::time::timeout_at(until, self.pending.join_next()).await {
                Ok(Some(Ok(w))) => self.finish(w).await,
                Ok(Some(Err(e))) => {
                    tracing::error!(error = %e, "write desk: a waiting write failed")
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        writes = self.pending.len(),
                        "write desk stopped with writes still unanswered by their link"
                    );
                    break;
                }
            }
        }
    }

    /// Judges an order; hands it to its link or answers it at once.
    async fn take(&mut self, order: WriteOrder) {
        let WriteOrder { command, reply } = order;
        self.stats
            .received
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let route = self.route.borrow().clone();
        let judged = self
            .gate
            .judge(&route.config, &command, SystemTime::now(), Instant::now());
        let accepted = match judged {
            Ok(a) => a,
            Err(reason) => {
                // Nothing was written: `written` stays empty (the value
                // asked for is in the command).
                let result = WriteResult::Rejected(reason);
                self.report(command, reply, None, None, None, result).await;
                return;
            }
        };
        let Some(queue) = route.writers.sender(&accepted.device.name) else {
            let result = WriteResult::Rejected(RejectReason::Busy(
                "the device's link is not running (starting or reloading)".into(),
            ));
            self.report(command, reply, None, None, None, result).await;
            return;
        };
        let (tx, rx) = oneshot::channel();
        let job = WriteJob {
            device: accepted.device.name.clone(),
            tag: accepted.tag,
            value: accepted.value.clone(),
            plan: accepted.plan,
            confirm: accepted.confirm,
            reply: tx,
        };
        if let Err(e) = queue.try_send(job) {
            let why = match e {
                mpsc::error::TrySendError::Full(_) => "the device's write queue is full",
                mpsc::error::TrySendError::Closed(_) => {
                    "the device's link is not running (starting or reloading)"
                }
            };
            let result = WriteResult::Rejected(RejectReason::Busy(why.into()));
            self.report(command, reply, None, None, None, result).await;
            return;
        }
        let written = accepted.value;
        self.pending.spawn(async move {
            let done = rx.await;
            Waiting {
                command,
                reply,
                written,
                done,
            }
        });
    }

    /// Records and answers a write its link has reported on.
    async fn finish(&mut self, waited: Waiting) {
        let Waiting {
            command,
            reply,
            written,
            done,
        } = waited;
        match done {
            Ok(done) => {
                let rejected = matches!(done.result, WriteResult::Rejected(_));
                // A write the device refused (or that never went out) wrote
                // nothing: the record says what was asked, not what holds.
                let written = (!rejected).then_some(written);
                self.report(
                    command,
                    reply,
                    done.old,
                    written,
                    done.read_back,
                    done.result,
                )
                .await;
            }
            Err(_) => {
                // The link dropped the job without a word: it stopped
                // (a reload, a stop) or failed in the middle; whether the
                // write went out cannot be known.
                let result =
                    WriteResult::Unknown("the link stopped before reporting on the write".into());
                self.report(command, reply, None, Some(written), None, result)
                    .await;
            }
        }
    }

    /// Records the result (history entry and result message, one commit)
    /// and answers whoever waits.
    async fn report(
        &mut self,
        command: WriteCommand,
        reply: Option<oneshot::Sender<WriteReport>>,
        old: Option<Value>,
        written: Option<Value>,
        read_back: Option<Value>,
        result: WriteResult,
    ) {
        let at = SystemTime::now();
        let took = at.duration_since(command.received).unwrap_or_default();
        let report = WriteReport {
            command,
            old,
            written,
            read_back,
            result,
            at,
            took,
        };
        self.stats.count(&report.result);
        log(&report);
        let route = self.route.borrow().clone();
        let detail = report_json(&report).to_string();
        let subject = format!("{}/{}", report.command.device, report.command.tag);
        let history = HistoryEntry {
            at,
            kind: HistoryKind::Write,
            subject,
            event: report.result.as_str().to_owned(),
            detail,
        };
        let mut messages = Vec::new();
        if let Some(topic) = result_topic(&route.config, &report.command) {
            let seq = {
                let n = self.seqs.entry(topic.clone()).or_insert(0);
                *n += 1;
                *n
            };
            messages.push(OutMessage {
                topic,
                seq,
                payload: result_payload(&report),
                qos: match route.config.mqtt.qos {
                    Qos::AtLeastOnce => 1,
                    Qos::ExactlyOnce => 2,
                },
                retain: false,
                // Evicted after readings: a result is an event someone
                // waits for, like an alarm change, not a sample.
                kind: Kind::Alarm,
                created_at: self.store.clock().now(),
            });
        }
        if let Err(e) = self
            .store
            .insert_step(messages, vec![history], Vec::new(), Vec::new())
            .await
        {
            tracing::error!(error = %e, device = %report.command.device, tag = %report.command.tag, "write result not recorded");
        }
        if let Some(reply) = reply {
            // The waiter may have given up (an HTTP client that left).
            let _ = reply.send(report);
        }
    }
}

/// Where a result goes: `cmd/{device}/{tag}/result` for a tag the
/// configuration knows, or for any command that came by MQTT (its topic
/// levels came through the broker's own topic, so they are valid). A
/// name from elsewhere that names no tag could hold `+` or `#`, which a
/// broker refuses in a topic: such a refusal is in the history only.
fn result_topic(config: &Config, command: &WriteCommand) -> Option<String> {
    let known = config
        .device(&command.device)
        .and_then(|d| d.tag(&command.tag))
        .is_some();
    (known || command.source == Source::Mqtt)
        .then(|| Topics::of(config).command_result(&command.device, &command.tag))
}

/// One log line per command: a carried-out write at info (it changed the
/// plant), an unknown outcome as a warning (someone must look), a
/// refusal at info (it is the sender's to fix, and it is answered).
fn log(report: &WriteReport) {
    let c = &report.command;
    let by = c.by.as_deref().unwrap_or("-");
    let id = c.id.as_deref().unwrap_or("-");
    let source = c.source.as_str();
    let old = report.old.as_ref().map(ToString::to_string);
    let written = report.written.as_ref().map(ToString::to_string);
    let read_back = report.read_back.as_ref().map(ToString::to_string);
    match &report.result {
        WriteResult::Unknown(why) => tracing::warn!(
            device = %c.device, tag = %c.tag, source, by, id, ?written, reason = %why,
            "write unknown: no answer to the write; it may or may not have happened, and it is not retried"
        ),
        WriteResult::Rejected(reason) => tracing::info!(
            device = %c.device, tag = %c.tag, source, by, id, reason = reason.code(), detail = %reason,
            "write rejected"
        ),
        other => tracing::info!(
            device = %c.device, tag = %c.tag, source, by, id, ?old, ?written, ?read_back,
            result = other.as_str(), note = ?other.reason(),
            "write"
        ),
    }
}
