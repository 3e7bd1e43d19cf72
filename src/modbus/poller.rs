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
//! # Backpressure and shutdown
//!
//! Batches go out on a bounded channel; when it is full the poller waits
//! (polls are skipped, not queued). The task checks its [`Shutdown`]
//! between requests and stops there, never in the middle of a request.
//!
//! # Telemetry
//!
//! Each request, poll and connection is recorded into the link's
//! [`LinkProbe`] (relaxed atomics, no allocation on a good poll; see
//! [`probe`](super::probe)).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::backoff::Backoff;
use super::decode;
use super::plan::{Limits, PlanChange, ReadPlan};
use super::probe::{DeviceMetrics, LinkProbe};
use super::transport::{Block, Link, PollError};
use crate::config::Device;
use crate::events::{DeviceBack, DeviceDown, LinkDown, LinkUp};
use crate::reading::{BadReason, Batch, Reading};
use crate::shutdown::Shutdown;

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
    let mut blocks = Vec::with_capacity(plan.requests().len());
    let mut i = 0;
    while i < plan.requests().len() {
        if shutdown.is_shutdown() {
            return None;
        }
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
/// sends a [`Batch`] per poll, recording into `probe`.
pub async fn run_link(
    mut link: Link,
    devices: Vec<Arc<Device>>,
    batches: mpsc::Sender<Batch>,
    mut shutdown: Shutdown,
    probe: LinkProbe,
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
    tracing::debug!(link = %link.endpoint(), devices = polled.len(), "link started");

    loop {
        // Earliest due device; linear, since a link serves few devices.
        let Some(index) = (0..polled.len()).min_by_key(|&i| polled[i].next_due) else {
            return;
        };
        let due = polled[index].next_due;
        if due > Instant::now() {
            tokio::select! {
                _ = sleep_until(due) => {}
                _ = shutdown.recv() => break,
            }
        } else if shutdown.is_shutdown() {
            // Already due (back-to-back polling, or a busy line): no timer,
            // whose millisecond granularity would cap the rate. The requests
            // themselves await I/O, and tokio's task budget forces a yield
            // now and then, so other tasks still run.
            break;
        }
        let now = Instant::now();
        let timestamp = SystemTime::now();
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
            let Some(outcome) = poll_once(
                &mut link,
                &p.device,
                &mut p.plan,
                retries,
                &shutdown,
                Some(&p.metrics),
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
    tracing::debug!(link = %link.endpoint(), "link stopped");
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
