//! One task per connection: a TCP socket shared by the unit ids behind it,
//! or a serial bus whose devices take turns (RS-485 is half duplex).
//!
//! # Scheduling
//!
//! Each device polls on its own interval. A tick missed because the line
//! was busy is skipped, never piled up: the next poll goes to the next
//! point of the device's grid after now. `poll_interval = 0` polls back
//! to back.
//!
//! # Failures
//!
//! * A request that fails (timeout, broken connection, rejected answer) is
//!   retried at once, `retries` times (the transport has put the line back
//!   in step first); then the rest of that poll is given up with the same
//!   reason, so a dead device costs its own timeouts only.
//! * One failed poll of a device that has been answering is a bad poll,
//!   not a dead device: a noisy line that garbles a reply, or a late
//!   answer, must not lose the polls after it. The device goes on polling
//!   at its interval, its readings of that poll bad (logged at debug
//!   level).
//! * A device that fails [`DOWN_AFTER`] polls in a row, whose connection
//!   broke, or that has not answered a single poll since the link started
//!   (a device that is not there would cost the bus its timeouts at every
//!   poll), is *down*: it is probed again after an exponential
//!   backoff (1 s doubling to 60 s, with jitter), with a single attempt;
//!   meanwhile each of its polls yields bad readings without touching the
//!   line, so the other devices keep their rate. Only then is "device not
//!   answering; probing with backoff" logged as a warning.
//! * A connection that cannot be opened backs off the same way; its
//!   devices yield `bad:connection` readings at their intervals.
//! * Modbus exceptions 01/02/03 reshape the device's read plan (see
//!   [`plan`](super::plan)); a tag refused alone reads `bad:exception:N`
//!   and is asked again every `reprobe` (the device may have been in
//!   program mode), coming back when it answers. The first refusal is a
//!   warning; a refused re-probe is logged at debug level only. Codes
//!   04/05/06 (failure, acknowledge, busy) never change the plan.
//!
//! # Writes
//!
//! The task also carries out its devices' write jobs (see
//! [`write`](super::write)), one at a time and never beside another
//! request: the bus is the task's alone. A job goes *ahead of the next
//! poll*: while the task waits for the next poll, as soon as it comes;
//! otherwise just before the next poll starts. A job of a device with
//! `write_during_poll = true` may also go between two requests of a poll
//! under way (jobs of other devices taken off the queue then are held
//! until that poll ends). A write costs the bus its time; the polls keep
//! their grid (a missed tick is skipped as always).
//!
//! One job: a device that is down (backing off), or whose link cannot
//! connect, is refused at once without touching the line. Otherwise the
//! tag is read (its old value; for a bit, the register whose other bits
//! are written back as they are), written once, never retried, and read
//! back when the job asks for confirmation. What each failure means for
//! the result is in [`execute`]. The task's queue closing (the gateway
//! dropped its writers) stops the writes, not the polls.
//!
//! # Backpressure and shutdown
//!
//! Batches go out on a bounded channel; when it is full the poller waits
//! (polls are skipped, not queued). The task checks its [`Shutdown`]
//! between requests and stops there, never in the middle of a request
//! (nor in the middle of a write job); write jobs still queued then are
//! refused as busy.
//!
//! # Telemetry
//!
//! Each request, poll and connection is recorded into the link's
//! [`LinkProbe`] (relaxed atomics, no allocation on a good poll; see
//! [`probe`](super::probe)).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;
use tokio::time::{Instant, sleep_until};

use super::backoff::Backoff;
use super::decode;
use super::plan::{Limits, PlanChange, ReadPlan};
use super::probe::{DeviceMetrics, LinkProbe};
use super::transport::{Block, Link, PollError, WriteError, exception_name};
use super::write::{JOBS_CAPACITY, WriteDone, WriteJob, matches};
use crate::command::{RejectReason, WriteResult};
use crate::config::Device;
use crate::events::{DeviceBack, DeviceDown, LinkDown, LinkUp};
use crate::reading::{BadReason, Batch, Reading};
use crate::shutdown::Shutdown;
use crate::tag::{Tag, Value};

/// Failed polls in a row after which a device counts as down and is
/// probed with backoff: fewer is a noisy line, not a dead device.
pub const DOWN_AFTER: u32 = 3;

/// The state of one device on a link.
struct Polled {
    device: Arc<Device>,
    metrics: Arc<DeviceMetrics>,
    plan: ReadPlan,
    next_due: Instant,
    backoff: Backoff,
    /// Polls failed in a row (every request of them).
    failed_polls: u32,
    /// True once a poll succeeded since the link started.
    answered: bool,
    /// While down: when to probe again, the reason it went down, and
    /// since when (monotonic: a step of the wall clock must not say a
    /// device was down for a year).
    down: Option<(Instant, PollError, Instant)>,
}

/// Result of one poll, before it is turned into readings.
pub struct PollOutcome {
    /// What each request returned: `blocks[k]` answers
    /// `plan.requests()[k]`. Splits and removals during the poll only
    /// touch requests not yet answered, so the two stay aligned. When the
    /// poll was given up, it is shorter than the plan.
    pub blocks: Vec<Result<Block, PollError>>,
    /// The first failure that made the rest of the poll be given up.
    pub gave_up: Option<PollError>,
}

/// Polls every request of `plan` once on `link`, reshaping the plan on
/// exceptions 01/02/03 and retrying other failures `retries` times.
/// `shutdown` is checked between requests: `None` when it fired. Each
/// request is recorded into `metrics` when given.
pub async fn poll_once(
    link: &mut Link,
    device: &Device,
    plan: &mut ReadPlan,
    retries: u32,
    shutdown: &Shutdown,
    metrics: Option<&DeviceMetrics>,
) -> Option<PollOutcome> {
    poll_with_writes(link, device, plan, retries, shutdown, metrics, None).await
}

/// Write jobs that may go between the requests of a poll under way.
struct DuringPoll<'a> {
    jobs: &'a mut Jobs,
    /// The link's devices with `write_during_poll`.
    targets: &'a [WriteTarget],
    connect_limit: Duration,
}

/// [`poll_once`], carrying out between its requests the jobs `writes`
/// lets through.
async fn poll_with_writes(
    link: &mut Link,
    device: &Device,
    plan: &mut ReadPlan,
    retries: u32,
    shutdown: &Shutdown,
    metrics: Option<&DeviceMetrics>,
    mut writes: Option<DuringPoll<'_>>,
) -> Option<PollOutcome> {
    let mut blocks = Vec::with_capacity(plan.requests().len());
    let mut i = 0;
    let mut first = true;
    while i < plan.requests().len() {
        if shutdown.is_shutdown() {
            return None;
        }
        if let (false, Some(w)) = (first, writes.as_mut()) {
            let may = |name: &str| w.targets.iter().any(|t| t.device.name == name);
            while let Some(job) = w.jobs.try_next_during_poll(may) {
                let target = w.targets.iter().find(|t| t.device.name == job.device);
                execute(link, target, job, w.connect_limit).await;
                if shutdown.is_shutdown() {
                    return None;
                }
            }
        }
        first = false;
        let request = &plan.requests()[i];
        let (area, start, count) = (request.area, request.start, request.count);
        let mut attempt = 0;
        let result = loop {
            let sent = Instant::now();
            let r = link
                .read(device.unit, area, start, count, device.timeout)
                .await;
            if let Some(m) = metrics {
                m.request(sent.elapsed(), &r);
            }
            match r {
                Err(e) if e.is_retryable() && attempt < retries && !shutdown.is_shutdown() => {
                    attempt += 1;
                    tracing::debug!(device = %device.name, error = %e, attempt, "retrying request");
                }
                other => break other,
            }
        };
        match result {
            Err(PollError::Exception(code)) => match plan.on_exception(i, code) {
                PlanChange::Split { at, count: parts } => {
                    tracing::debug!(
                        device = %device.name, %area, start, count, code, parts,
                        "device refused a merged read; splitting it"
                    );
                    i = at;
                }
                PlanChange::Unsupported { tags, code } => {
                    for t in &tags {
                        let Some(tag) = device.tags.get(*t) else {
                            continue;
                        };
                        if plan.reprobed().contains(t) {
                            tracing::debug!(
                                device = %device.name, tag = %tag.name, code,
                                "re-probed address still refused"
                            );
                        } else {
                            tracing::warn!(
                                device = %device.name, tag = %tag.name, area = %tag.area,
                                address = tag.address, code, reprobe = ?device.reprobe,
                                "device refuses this address (exception {code}); the tag reads bad:exception:{code} and is asked again every reprobe interval"
                            );
                        }
                    }
                }
                PlanChange::Unchanged => {
                    blocks.push(Err(PollError::Exception(code)));
                    i += 1;
                }
            },
            Err(e) => {
                blocks.push(Err(e.clone()));
                return Some(PollOutcome {
                    blocks,
                    gave_up: Some(e),
                });
            }
            Ok(block) => {
                blocks.push(Ok(block));
                i += 1;
            }
        }
    }
    Some(PollOutcome {
        blocks,
        gave_up: None,
    })
}

/// Turns a poll's blocks into one reading per tag of the device.
pub fn readings(device: &Device, plan: &ReadPlan, outcome: &PollOutcome) -> Vec<Reading> {
    // Tags whose request was not reached (the poll was given up) keep the
    // reason it was given up for.
    let fallback = outcome
        .gave_up
        .as_ref()
        .map(PollError::reason)
        .unwrap_or(BadReason::Protocol);
    let mut out: Vec<Option<Reading>> = vec![None; device.tags.len()];
    for (t, code) in plan.unsupported() {
        if let Some(r) = out.get_mut(*t) {
            *r = Some(Reading::bad(*t, BadReason::Exception(*code)));
        }
    }
    for (request, result) in plan.requests().iter().zip(&outcome.blocks) {
        for &t in &request.tags {
            let Some(tag) = device.tags.get(t) else {
                continue;
            };
            let offset = usize::from(tag.address.saturating_sub(request.start));
            let reading = match result {
                Err(e) => Reading::bad(t, e.reason()),
                Ok(Block::Bits(bits)) => match bits.get(offset) {
                    Some(bit) => Reading::good(t, decode::decode_bit(tag, *bit)),
                    None => Reading::bad(t, BadReason::Decode),
                },
                Ok(Block::Registers(regs)) => {
                    let end = offset + usize::from(tag.width());
                    match regs.get(offset..end).map(|r| decode::decode(tag, r)) {
                        Some(Ok(v)) => Reading::good(t, v),
                        _ => Reading::bad(t, BadReason::Decode),
                    }
                }
            };
            out[t] = Some(reading);
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(t, r)| r.unwrap_or_else(|| Reading::bad(t, fallback.clone())))
        .collect()
}

/// The read limits of a device.
pub fn limits(device: &Device) -> Limits {
    Limits {
        max_registers: device.max_registers,
        max_bits: device.max_bits,
        max_gap: device.max_gap,
    }
}

/// Next poll time: the next point of the device's grid after `now`
/// (missed ticks are skipped, never piled up).
pub fn next_due(due: Instant, interval: Duration, now: Instant) -> Instant {
    if interval.is_zero() {
        return now;
    }
    let next = due + interval;
    if next > now {
        return next;
    }
    let late = now.duration_since(due);
    let periods = late.as_nanos() / interval.as_nanos() + 1;
    due + interval.mul_f64(periods as f64).max(interval)
}

/// Runs one link until shutdown: polls its devices on their intervals and
/// sends a [`Batch`] per poll, recording into `probe`, and carries out the
/// write jobs that come on `jobs` (see the module docs).
pub async fn run_link(
    mut link: Link,
    devices: Vec<Arc<Device>>,
    batches: mpsc::Sender<Batch>,
    mut shutdown: Shutdown,
    probe: LinkProbe,
    jobs: Option<mpsc::Receiver<WriteJob>>,
) {
    let start = Instant::now();
    let mut polled: Vec<Polled> = devices
        .into_iter()
        .map(|device| Polled {
            metrics: probe.device(&device),
            plan: ReadPlan::new(&device.tags, limits(&device)),
            next_due: start,
            backoff: Backoff::new(),
            failed_polls: 0,
            answered: false,
            down: None,
            device,
        })
        .collect();
    if polled.is_empty() {
        return;
    }
    let mut link_backoff = Backoff::new();
    let mut link_retry_at: Option<Instant> = None;
    let connect_limit = polled
        .iter()
        .map(|p| p.device.timeout)
        .max()
        .unwrap_or(Duration::from_secs(1));
    let mut jobs = Jobs::new(jobs);
    let interrupting = polled.iter().any(|p| p.device.write_during_poll);
    tracing::debug!(link = %link.endpoint(), devices = polled.len(), "link started");

    loop {
        // Writes go ahead of the next poll.
        while let Some(job) = jobs.try_next() {
            if shutdown.is_shutdown() {
                jobs.put_back(job);
                break;
            }
            let link_down = link_retry_at
                .filter(|t| *t > Instant::now())
                .map(|_| link_down_reason(&link, &probe));
            let target = polled
                .iter()
                .find(|p| p.device.name == job.device)
                .map(|p| p.target(link_down));
            let was_connected = link.is_connected();
            execute(&mut link, target.as_ref(), job, connect_limit).await;
            if !was_connected && link.is_connected() {
                probe.link.connected();
            }
        }
        // Earliest due device; linear, since a link serves few devices.
        let Some(index) = (0..polled.len()).min_by_key(|&i| polled[i].next_due) else {
            break;
        };
        let due = polled[index].next_due;
        if due > Instant::now() {
            tokio::select! {
                // A stop wins over a job that came at the same moment: the
                // job is refused as busy rather than carried out.
                biased;
                _ = shutdown.recv() => break,
                _ = sleep_until(due) => {}
                // Taken now, carried out at the top of the loop.
                job = jobs.next() => jobs.put_back(job),
            }
            continue;
        } else if shutdown.is_shutdown() {
            // Already due (back-to-back polling, or a busy line): no timer,
            // whose millisecond granularity would cap the rate. The requests
            // themselves await I/O, and tokio's task budget forces a yield
            // now and then, so other tasks still run.
            break;
        }
        let now = Instant::now();
        let timestamp = SystemTime::now();
        // Built only when some device may write during a poll.
        let during: Vec<WriteTarget> = if interrupting {
            polled
                .iter()
                .filter(|q| q.device.write_during_poll)
                .map(|q| q.target(None))
                .collect()
        } else {
            Vec::new()
        };
        let p = &mut polled[index];

        let was_connected = link.is_connected();

        let readings = if let Some(retry) = link_retry_at.filter(|t| *t > now) {
            let _ = retry;
            p.metrics.poll_skipped(timestamp, Some(&probe.link));
            all_bad(&p.device, BadReason::Connection)
        } else if let Some((probe_at, reason, _)) = p.down.as_ref().filter(|(t, _, _)| *t > now) {
            let _ = probe_at;
            p.metrics.poll_skipped(timestamp, None);
            all_bad(&p.device, reason.reason())
        } else if let Err(e) = link.connect(connect_limit).await {
            probe.link.connect_failed(&e);
            p.metrics.poll_failed(timestamp, &e);
            let wait = link_backoff.fail(rand::random::<f64>());
            if link_backoff.failures() == 1 {
                LinkDown {
                    link: link.endpoint(),
                    error: &e,
                }
                .emit();
            }
            tracing::debug!(link = %link.endpoint(), retry_in = ?wait, "connect failed");
            link_retry_at = Some(Instant::now() + wait);
            all_bad(&p.device, BadReason::Connection)
        } else {
            if link_backoff.failures() > 0 {
                LinkUp {
                    link: link.endpoint(),
                }
                .emit();
            }
            if !was_connected {
                probe.link.connected();
            }
            link_backoff.reset();
            link_retry_at = None;
            // A device that is down gets a single attempt when probed.
            let retries = if p.down.is_some() {
                0
            } else {
                p.device.retries
            };
            let reprobed = p.plan.reprobe(now.into_std(), p.device.reprobe);
            if !reprobed.is_empty() {
                tracing::debug!(device = %p.device.name, tags = reprobed.len(), "asking refused addresses again");
            }
            let writes = interrupting.then_some(DuringPoll {
                jobs: &mut jobs,
                targets: &during,
                connect_limit,
            });
            let Some(outcome) = poll_with_writes(
                &mut link,
                &p.device,
                &mut p.plan,
                retries,
                &shutdown,
                Some(&p.metrics),
                writes,
            )
            .await
            else {
                break;
            };
            probe.link.set_connected(link.is_connected());
            for t in p.plan.reprobed() {
                let back = !p.plan.unsupported().iter().any(|(u, _)| u == t);
                if let (true, Some(tag)) = (back, p.device.tags.get(*t)) {
                    tracing::info!(device = %p.device.name, tag = %tag.name, "refused address answers again");
                }
            }
            match (&outcome.gave_up, outcome.blocks.iter().any(|r| r.is_ok())) {
                (Some(e), false) => {
                    p.metrics.poll_failed(timestamp, e);
                    p.failed_polls = p.failed_polls.saturating_add(1);
                    // Only a device that has been answering gets the
                    // benefit of the doubt: one that never did (or whose
                    // connection broke) would cost the bus its timeouts at
                    // every poll.
                    let lost = matches!(e, PollError::Connection(_));
                    if p.down.is_none() && p.answered && !lost && p.failed_polls < DOWN_AFTER {
                        tracing::debug!(
                            device = %p.device.name, error = %e, in_a_row = p.failed_polls,
                            "bad poll"
                        );
                    } else {
                        let wait = p.backoff.fail(rand::random::<f64>());
                        match &p.down {
                            None => DeviceDown {
                                device: &p.device.name,
                                error: e,
                                retry_in: wait,
                            }
                            .emit(),
                            Some(_) => {
                                tracing::debug!(device = %p.device.name, error = %e, retry_in = ?wait, "still down")
                            }
                        }
                        let since = p.down.as_ref().map(|d| d.2).unwrap_or(now);
                        p.down = Some((Instant::now() + wait, e.clone(), since));
                    }
                }
                _ => {
                    p.failed_polls = 0;
                    p.answered = true;
                    p.metrics.poll_ok(timestamp);
                    if let Some((_, _, since)) = p.down.take() {
                        let for_how_long = Instant::now().saturating_duration_since(since);
                        DeviceBack {
                            device: &p.device.name,
                            down_for: Duration::from_secs(for_how_long.as_secs()),
                        }
                        .emit();
                    }
                    p.backoff.reset();
                }
            }
            readings(&p.device, &p.plan, &outcome)
        };

        let batch = Batch {
            device: p.device.clone(),
            timestamp,
            started: now.into_std(),
            unsynced: crate::clock::wall_clock_synced() == Some(false),
            readings,
        };
        p.next_due = next_due(due, p.device.poll_interval, Instant::now());
        // A finished poll is never dropped, not even at shutdown: the
        // pipeline keeps taking batches until every poller is gone, so room
        // comes. `biased` makes a free slot win over a stop that fired at
        // the same moment (an unbiased select would drop the batch half of
        // the time).
        let room = tokio::select! {
            biased;
            room = batches.reserve() => room,
            _ = shutdown.recv() => batches.reserve().await,
        };
        match room {
            Ok(permit) => permit.send(batch),
            // The pipeline is gone: nobody would read it.
            Err(_) => break,
        }
    }
    jobs.refuse_all("the gateway is stopping");
    tracing::debug!(link = %link.endpoint(), "link stopped");
}

/// A link's write jobs: its queue, and the jobs taken off it that wait
/// for their turn (held during a poll, or taken while the task waited).
struct Jobs {
    /// `None` once every sender is gone (or none was given).
    rx: Option<mpsc::Receiver<WriteJob>>,
    held: VecDeque<WriteJob>,
}

impl Jobs {
    fn new(rx: Option<mpsc::Receiver<WriteJob>>) -> Jobs {
        Jobs {
            rx,
            held: VecDeque::new(),
        }
    }

    /// The next job, if one waits: held ones first, in order.
    fn try_next(&mut self) -> Option<WriteJob> {
        if let Some(job) = self.held.pop_front() {
            return Some(job);
        }
        self.try_recv()
    }

    fn try_recv(&mut self) -> Option<WriteJob> {
        match self.rx.as_mut()?.try_recv() {
            Ok(job) => Some(job),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                // The writers are gone: no more writes, polls go on.
                self.rx = None;
                None
            }
        }
    }

    /// The next queued job that may go between the requests of a poll
    /// (its device's name passes `may`). Jobs of other devices taken on
    /// the way are held for after the poll; at most [`JOBS_CAPACITY`] of
    /// them, beyond which the rest stay queued, so the queue's bound
    /// still holds.
    fn try_next_during_poll(&mut self, may: impl Fn(&str) -> bool) -> Option<WriteJob> {
        while self.held.len() < JOBS_CAPACITY {
            let job = self.try_recv()?;
            if may(&job.device) {
                return Some(job);
            }
            self.held.push_back(job);
        }
        None
    }

    /// Waits for the next job; pends for ever once the queue is closed.
    /// Cancel-safe: a job is only taken when the future completes.
    async fn next(&mut self) -> WriteJob {
        if let Some(job) = self.held.pop_front() {
            return job;
        }
        loop {
            match self.rx.as_mut() {
                None => std::future::pending::<()>().await,
                Some(rx) => match rx.recv().await {
                    Some(job) => return job,
                    None => self.rx = None,
                },
            }
        }
    }

    /// Puts a job taken too early back at the head of the line.
    fn put_back(&mut self, job: WriteJob) {
        self.held.push_front(job);
    }

    /// Refuses every job still waiting, and any that comes later.
    fn refuse_all(&mut self, why: &str) {
        if let Some(rx) = self.rx.as_mut() {
            rx.close();
        }
        while let Some(job) = self.try_next() {
            let done = rejected(None, RejectReason::Busy(why.to_string()));
            log_write(&job, None, &done, Duration::ZERO);
            let _ = job.reply.send(done);
        }
    }
}

/// What the link's task knows of a device when a write for it comes.
struct WriteTarget {
    device: Arc<Device>,
    metrics: Arc<DeviceMetrics>,
    /// Why nothing may be sent to it now: it is down, or its link is.
    down: Option<String>,
}

impl Polled {
    fn target(&self, link_down: Option<String>) -> WriteTarget {
        let down = link_down.or_else(|| {
            self.down
                .as_ref()
                .map(|(_, reason, _)| format!("not answering ({reason}); probing with backoff"))
        });
        WriteTarget {
            device: self.device.clone(),
            metrics: self.metrics.clone(),
            down,
        }
    }
}

fn link_down_reason(link: &Link, probe: &LinkProbe) -> String {
    match probe.link.last_error() {
        Some(e) => format!("link {} cannot connect ({e})", link.endpoint()),
        None => format!("link {} cannot connect", link.endpoint()),
    }
}

fn rejected(old: Option<Value>, reason: RejectReason) -> WriteDone {
    WriteDone {
        old,
        read_back: None,
        result: WriteResult::Rejected(reason),
    }
}

fn exception_text(code: u8) -> String {
    format!("exception {code:02} ({})", exception_name(code))
}

/// Carries out one write job on the link and answers it.
///
/// * The device (or its link) is down, or the link cannot connect:
///   `Rejected(DeviceDown)`, nothing sent.
/// * The read before the write fails: `Rejected(DeviceDown)`; answered
///   with an exception: `Rejected(Refused)`. Nothing written.
/// * The write is answered with an exception: `Rejected(Refused)`; it did
///   not go out: `Rejected(DeviceDown)`; it went out and no matching
///   answer came back: `Unknown`, never retried.
/// * Written: without confirmation `Written`; with it, the tag is read
///   back: `Verified` when it holds what was written, else `Written` with
///   a note saying what was read back (or why it could not be).
async fn execute(
    link: &mut Link,
    target: Option<&WriteTarget>,
    job: WriteJob,
    connect_limit: Duration,
) {
    let started = Instant::now();
    let tag = target.and_then(|t| t.device.tags.get(job.tag));
    let done = match (target, tag) {
        (Some(target), Some(tag)) => carry_out(link, target, tag, &job, connect_limit).await,
        _ => rejected(
            None,
            RejectReason::UnknownTag {
                device: job.device.clone(),
                tag: format!("#{}", job.tag),
            },
        ),
    };
    log_write(&job, tag, &done, started.elapsed());
    // The asker may have given up waiting: nothing to do then.
    let _ = job.reply.send(done);
}

fn log_write(job: &WriteJob, tag: Option<&Tag>, done: &WriteDone, took: Duration) {
    let tag = tag
        .map(|t| t.name.clone())
        .unwrap_or_else(|| format!("#{}", job.tag));
    let reason = done.result.reason().unwrap_or_default();
    tracing::info!(
        device = %job.device, tag = %tag, value = %job.value,
        result = done.result.as_str(), reason = %reason,
        function = job.plan.function(), took = ?took,
        "write"
    );
}

async fn carry_out(
    link: &mut Link,
    target: &WriteTarget,
    tag: &Tag,
    job: &WriteJob,
    connect_limit: Duration,
) -> WriteDone {
    let device = &target.device;
    if let Some(why) = &target.down {
        return rejected(None, RejectReason::DeviceDown(why.clone()));
    }
    if let Err(e) = link.connect(connect_limit).await {
        return rejected(None, RejectReason::DeviceDown(e.to_string()));
    }
    // The value before; for a bit, the register whose other bits stay.
    let before = match read_tag(link, device, tag, &target.metrics).await {
        Ok(block) => block,
        Err(PollError::Exception(code)) => {
            return rejected(
                None,
                RejectReason::Refused(format!(
                    "{} to the read before the write",
                    exception_text(code)
                )),
            );
        }
        Err(e) => {
            return rejected(
                None,
                RejectReason::DeviceDown(format!("the read before the write failed: {e}")),
            );
        }
    };
    let old = value_of(tag, &before);
    let register = match &before {
        Block::Registers(r) => r.first().copied(),
        Block::Bits(_) => None,
    };
    let request = match job.plan.request(device.unit, register) {
        Ok(r) => r,
        Err(e) => return rejected(old, RejectReason::NotRepresentable(e.to_string())),
    };
    let sent = Instant::now();
    let outcome = link.write(&request, device.timeout).await;
    target.metrics.request(
        sent.elapsed(),
        &match &outcome {
            Ok(()) => Ok(Block::Registers(Vec::new())),
            Err(WriteError::Refused(code)) => Err(PollError::Exception(*code)),
            Err(WriteError::NotSent(e) | WriteError::Unknown(e)) => Err(e.clone()),
        },
    );
    let result = match outcome {
        Err(WriteError::Refused(code)) => {
            WriteResult::Rejected(RejectReason::Refused(exception_text(code)))
        }
        Err(WriteError::NotSent(e)) => {
            WriteResult::Rejected(RejectReason::DeviceDown(e.to_string()))
        }
        Err(WriteError::Unknown(e)) => WriteResult::Unknown(format!(
            "{e}; the write may or may not have been carried out, and is not retried"
        )),
        Ok(()) if !job.confirm => WriteResult::Written { note: None },
        Ok(()) => {
            let back = read_tag(link, device, tag, &target.metrics).await;
            let read_back = back.as_ref().ok().and_then(|b| value_of(tag, b));
            let result = match (&back, &read_back) {
                (Err(e), _) => WriteResult::Written {
                    note: Some(format!("read-back failed: {e}")),
                },
                (Ok(_), None) => WriteResult::Written {
                    note: Some("read-back failed: the registers read back do not decode".into()),
                },
                (Ok(_), Some(v)) if matches(tag, &job.value, v) => WriteResult::Verified,
                (Ok(_), Some(v)) => WriteResult::Written {
                    note: Some(format!("read back {v}, wrote {}", job.value)),
                },
            };
            return WriteDone {
                old,
                read_back,
                result,
            };
        }
    };
    WriteDone {
        old,
        read_back: None,
        result,
    }
}

/// Reads one tag's registers (or bit), retried like a poll's request.
async fn read_tag(
    link: &mut Link,
    device: &Device,
    tag: &Tag,
    metrics: &DeviceMetrics,
) -> Result<Block, PollError> {
    let mut attempt = 0;
    loop {
        let sent = Instant::now();
        let r = link
            .read(
                device.unit,
                tag.area,
                tag.address,
                tag.width(),
                device.timeout,
            )
            .await;
        metrics.request(sent.elapsed(), &r);
        match r {
            Err(e) if e.is_retryable() && attempt < device.retries => attempt += 1,
            other => return other,
        }
    }
}

/// The tag's value in a block read for it alone.
fn value_of(tag: &Tag, block: &Block) -> Option<Value> {
    match block {
        Block::Bits(bits) => bits.first().map(|b| decode::decode_bit(tag, *b)),
        Block::Registers(regs) => decode::decode(tag, regs).ok(),
    }
}

fn all_bad(device: &Device, reason: BadReason) -> Vec<Reading> {
    (0..device.tags.len())
        .map(|t| Reading::bad(t, reason.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Connection;
    use crate::tag::{Area, DataType, Tag};

    /// A poll that finishes while its channel is full and the stop fires
    /// is still delivered.
    #[tokio::test]
    async fn a_finished_poll_is_not_dropped_at_shutdown() {
        // A port nobody listens on: the poll fails at once with bad readings.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tag = Tag::new("t", Area::HoldingRegister, 0, DataType::U16);
        let device = Arc::new(Device::new(
            "d",
            Connection::Tcp {
                host: "127.0.0.1".into(),
                port,
            },
            vec![tag],
        ));
        let (tx, mut rx) = mpsc::channel(1);
        // The channel is full before the poll ends.
        tx.send(Batch {
            device: device.clone(),
            timestamp: SystemTime::now(),
            started: std::time::Instant::now(),
            unsynced: false,
            readings: Vec::new(),
        })
        .await
        .unwrap();
        let (trigger, shutdown) = crate::shutdown::channel();
        let endpoint = super::super::Endpoint::Tcp(format!("127.0.0.1:{port}"));
        let link = LinkProbe::new(
            endpoint.clone(),
            Arc::new(super::super::LinkMetrics::new("l".into())),
            Vec::new(),
        );
        let task = tokio::spawn(run_link(
            Link::new(endpoint),
            vec![device],
            tx,
            shutdown,
            link,
            None,
        ));
        tokio::time::sleep(Duration::from_millis(300)).await;
        trigger.trigger();
        let first = rx.recv().await.unwrap();
        assert!(first.readings.is_empty());
        let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .expect("the finished poll is delivered");
        assert_eq!(second.readings.len(), 1);
        assert!(!second.readings[0].quality.is_good());
        task.await.unwrap();
    }

    fn job(device: &str) -> (WriteJob, tokio::sync::oneshot::Receiver<WriteDone>) {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            device: device.into(),
            tag: 0,
            value: Value::Int(1),
            plan: super::super::write::WritePlan::Registers {
                address: 0,
                words: vec![1],
                function: 6,
            },
            confirm: true,
            reply,
        };
        (job, rx)
    }

    #[test]
    fn jobs_of_other_devices_wait_for_the_end_of_a_poll() {
        let (tx, rx) = mpsc::channel(8);
        let mut jobs = Jobs::new(Some(rx));
        let mut answers = Vec::new();
        for d in ["slow", "fast", "slow"] {
            let (j, a) = job(d);
            answers.push(a);
            assert!(tx.try_send(j).is_ok());
        }
        // During a poll only "fast" may go; both "slow" are held.
        let may = |name: &str| name == "fast";
        assert_eq!(
            jobs.try_next_during_poll(may).map(|j| j.device),
            Some("fast".into())
        );
        assert_eq!(jobs.try_next_during_poll(may).map(|j| j.device), None);
        assert_eq!(jobs.held.len(), 2);
        // After the poll, in order.
        assert_eq!(jobs.try_next().map(|j| j.device), Some("slow".into()));
        // Stopping refuses what is left, and what comes later cannot come.
        jobs.refuse_all("stopping");
        let (late, _) = job("fast");
        assert!(tx.try_send(late).is_err());
        let refused = answers[2].try_recv().map(|d| d.result);
        assert_eq!(
            refused,
            Ok(WriteResult::Rejected(RejectReason::Busy("stopping".into())))
        );
        // The writers gone: no job, and no end of the task either.
        let (tx, rx) = mpsc::channel(1);
        let mut jobs = Jobs::new(Some(rx));
        drop(tx);
        assert!(jobs.try_next().is_none());
        assert!(jobs.rx.is_none());
    }

    #[test]
    fn missed_ticks_are_skipped() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(next_due(t0, s, t0), t0 + s);
        // 3.5 periods late: the next tick is the 4th, not the 1st.
        assert_eq!(
            next_due(t0, s, t0 + Duration::from_millis(3500)),
            t0 + 4 * s
        );
        assert_eq!(next_due(t0, s, t0 + s), t0 + 2 * s);
        assert_eq!(next_due(t0, Duration::ZERO, t0 + s), t0 + s);
    }
}
