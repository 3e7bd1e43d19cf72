//! The queues of the outbox's other sinks: the CMMS connectors. A
//! delivery (a work order or meter message for one connector) is written
//! in the same transaction as the outbox message it copies, so a crash
//! never keeps one and loses the other; it is deleted only once the CMMS
//! confirmed it ([`StoreHandle::sink_done`], committed at once). A
//! delivery the CMMS refused is parked with its error until a reload
//! ([`StoreHandle::sink_unpark`]). What each connector learned (the
//! CMMS's reference for a work-order key, the last status it reported)
//! is kept beside it (`sink_refs`), so a retry or a restart never
//! creates a work order twice and status polling resumes after a restart.
//!
//! # Tables (schema v5)
//!
//! `sink_queue` holds the deliveries, one row per message and connector,
//! in id order (ids are never given twice: a connector reads "after the
//! last id it handled"); `sink_refs` what each connector knows of a work
//! order, one row per connector and work-order key.
//!
//! # Writes
//!
//! Deliveries ride with the group commit like history entries and named
//! states: written with the last chunk of the commit that writes the
//! messages queued before them ([`StoreHandle::insert_step`] for the
//! gateway, [`StoreHandle::insert_deliveries`] for the bridge). A work
//! order or meter message is committed before it is published, so its
//! deliveries are committed at once too. [`StoreHandle::deliveries`]
//! moves after every commit that wrote some.
//!
//! What a connector does with its queue (`sink_done`, `sink_park`,
//! `sink_unpark`, `sink_put_ref`) first commits the open group (everything
//! queued before it), then its own transaction, before it returns: one of
//! each per CMMS answer, not a hot path.
//!
//! # Bounds
//!
//! * At most [`SINK_ROWS`] deliveries wait per connector (parked ones
//!   included): a CMMS down for weeks while meter readings flow. A commit
//!   that would go beyond deletes that connector's oldest *meter*
//!   deliveries first (a meter value is superseded by the next), counted
//!   in [`Stats::sink_meters_dropped`](super::Stats::sink_meters_dropped) and logged as a
//!   warning at most once a minute. Work-order deliveries are never
//!   dropped: a queue over the bound with only work orders left is
//!   logged as an error, at most once a minute, and grows on.
//! * The rows live in the store file, so they count in `max_bytes` like
//!   everything else; the outbox's evictions (readings first) never touch
//!   them.
//! * Of the work orders whose status has ended (`closed`, `cancelled`),
//!   each connector keeps the newest [`ENDED_REFS`] refs.
//! * While the file cannot take writes (degraded), deliveries wait in
//!   memory with the history entries, at most as many as history entries
//!   (`DELIVERIES_HOLD`; the oldest meters go first, then the oldest work
//!   orders; counted in `Stats::held_deliveries_dropped`), and
//!   are written once the disk takes writes again. The commands that need
//!   the file answer an error while there is none.

use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::watch;

use super::db::{Outbox, from_ms, to_ms};
use super::evict::RateLimited;
use super::thread::{Command, Reply};
use super::{StoreError, StoreHandle};

/// Deliveries waiting per connector, at most (parked ones included):
/// about a week of one meter read every minute.
pub const SINK_ROWS: u64 = 10_000;

/// Refs of ended work orders (`closed`, `cancelled`) kept per connector:
/// the newest ones (a late answer about an older one finds no ref).
pub const ENDED_REFS: u64 = 10_000;

/// The statuses after which a work order is no longer polled.
const ENDED: &str = "('closed', 'cancelled')";

/// At most one line per this interval for each bound.
const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What a delivery carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryKind {
    /// A work-order message (`fieldgate.workorder/1`).
    WorkOrder,
    /// A meter message (`fieldgate.meter/1`).
    Meter,
}

impl DeliveryKind {
    /// The name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryKind::WorkOrder => "workorder",
            DeliveryKind::Meter => "meter",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<DeliveryKind> {
        match text {
            "workorder" => Some(DeliveryKind::WorkOrder),
            "meter" => Some(DeliveryKind::Meter),
            _ => None,
        }
    }
}

/// One message for one sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The connector's name (`[[cmms]] name`).
    pub sink: String,
    /// What it carries.
    pub kind: DeliveryKind,
    /// The work-order key, or the meter's name.
    pub key: String,
    /// `raised`, `updated`, `closed` (work orders) or `reading` (meters).
    pub event: String,
    /// The MQTT topic of the message (the bridge answers on
    /// `{topic}/status`).
    pub topic: String,
    /// The message as published.
    pub payload: Vec<u8>,
    /// When it was queued (wall clock).
    pub created_at: SystemTime,
}

/// A delivery waiting in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    /// Its place in the queue (only grows).
    pub id: i64,
    /// The delivery.
    pub delivery: Delivery,
}

/// A delivery the CMMS refused, parked until a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct ParkedDelivery {
    /// Its place in the queue.
    pub id: i64,
    /// The delivery.
    pub delivery: Delivery,
    /// The CMMS's error text.
    pub error: String,
    /// When it was parked.
    pub parked_at: SystemTime,
}

/// What a connector knows of one work order in its CMMS.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRef {
    /// The connector.
    pub sink: String,
    /// The work-order key.
    pub key: String,
    /// fieldgate's work-order id.
    pub wo_id: String,
    /// The CMMS's reference.
    pub reference: String,
    /// The last fieldgate status the CMMS reported (`accepted`,
    /// `in_progress`, `closed`, `cancelled`), or `open`.
    pub status: String,
    /// The work order's MQTT topic.
    pub topic: String,
    /// When it last changed.
    pub updated_at: SystemTime,
}

/// One sink's queue, for the status page, `/api/status` and the metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkFigures {
    /// The connector.
    pub sink: String,
    /// Deliveries waiting (not parked).
    pub pending: u64,
    /// Deliveries parked.
    pub parked: u64,
    /// When the oldest waiting delivery was queued.
    pub oldest: Option<SystemTime>,
}

impl StoreHandle {
    /// Queues deliveries with the next group commit (the bridge; the
    /// gateway's come with [`insert_step`](Self::insert_step)).
    /// [`flush`](Self::flush) waits until they are on disk. While the
    /// store is degraded they wait in memory (see the module docs).
    pub async fn insert_deliveries(&self, deliveries: Vec<Delivery>) -> Result<(), StoreError> {
        if deliveries.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Command::Deliveries(deliveries))
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// The id of the newest delivery committed: it moves when there is
    /// something new for a sink. It is also touched (same value) when
    /// parked deliveries are let go again ([`sink_unpark`](Self::sink_unpark)),
    /// so a connector waiting on it looks again from the start.
    pub fn deliveries(&self) -> watch::Receiver<i64> {
        self.deliveries.clone()
    }

    /// Up to `limit` deliveries of `sink` after `after`, oldest first,
    /// parked ones left out. Only committed deliveries are returned.
    pub async fn sink_pending(
        &self,
        sink: &str,
        after: i64,
        limit: usize,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let sink = sink.to_owned();
        self.ask(|reply| {
            Command::Sink(SinkCommand::Pending {
                sink,
                after,
                limit,
                reply,
            })
        })
        .await
    }

    /// The CMMS confirmed delivery `id`: deletes it and, when given,
    /// writes what the connector learned, in one transaction committed
    /// before this returns. An unknown id is ignored (the ref is still
    /// written).
    pub async fn sink_done(&self, id: i64, learned: Option<SinkRef>) -> Result<(), StoreError> {
        self.ask(|reply| Command::Sink(SinkCommand::Done { id, learned, reply }))
            .await
    }

    /// The CMMS refused delivery `id`: parks it with `error` (committed
    /// before this returns).
    pub async fn sink_park(&self, id: i64, error: String) -> Result<(), StoreError> {
        self.ask(|reply| Command::Sink(SinkCommand::Park { id, error, reply }))
            .await
    }

    /// Un-parks every parked delivery of `sink` (all sinks: `None`), so
    /// they are tried again in order; returns how many.
    pub async fn sink_unpark(&self, sink: Option<String>) -> Result<u64, StoreError> {
        self.ask(|reply| Command::Sink(SinkCommand::Unpark { sink, reply }))
            .await
    }

    /// The parked deliveries, oldest first.
    pub async fn sink_parked(&self) -> Result<Vec<ParkedDelivery>, StoreError> {
        self.ask(|reply| Command::Sink(SinkCommand::Parked(reply)))
            .await
    }

    /// What `sink` knows of the work order `key`.
    pub async fn sink_ref(&self, sink: &str, key: &str) -> Result<Option<SinkRef>, StoreError> {
        let (sink, key) = (sink.to_owned(), key.to_owned());
        self.ask(|reply| Command::Sink(SinkCommand::Ref { sink, key, reply }))
            .await
    }

    /// The work orders `sink` knows whose status has not ended (not
    /// `closed` nor `cancelled`): what status polling asks about.
    pub async fn sink_open_refs(&self, sink: &str) -> Result<Vec<SinkRef>, StoreError> {
        let sink = sink.to_owned();
        self.ask(|reply| Command::Sink(SinkCommand::OpenRefs { sink, reply }))
            .await
    }

    /// Writes (inserts or replaces) what a connector knows of a work
    /// order, committed before this returns.
    pub async fn sink_put_ref(&self, learned: SinkRef) -> Result<(), StoreError> {
        self.ask(|reply| Command::Sink(SinkCommand::PutRef { learned, reply }))
            .await
    }

    /// Every sink's queue figures (sinks with deliveries only, by name);
    /// deliveries waiting in memory for a failing disk count as pending.
    pub async fn sink_figures(&self) -> Result<Vec<SinkFigures>, StoreError> {
        self.ask(|reply| Command::Sink(SinkCommand::Figures(reply)))
            .await
    }
}

/// What a connector asks of its queue, answered by the owner thread.
pub(super) enum SinkCommand {
    /// Committed, not parked deliveries of one sink after an id.
    Pending {
        sink: String,
        after: i64,
        limit: usize,
        reply: Reply<Vec<PendingDelivery>>,
    },
    /// Delete a delivery and write what was learned.
    Done {
        id: i64,
        learned: Option<SinkRef>,
        reply: Reply<()>,
    },
    /// Park a delivery with the CMMS's error.
    Park {
        id: i64,
        error: String,
        reply: Reply<()>,
    },
    /// Let parked deliveries go again.
    Unpark {
        sink: Option<String>,
        reply: Reply<u64>,
    },
    /// The parked deliveries.
    Parked(Reply<Vec<ParkedDelivery>>),
    /// One ref.
    Ref {
        sink: String,
        key: String,
        reply: Reply<Option<SinkRef>>,
    },
    /// The refs whose status has not ended.
    OpenRefs {
        sink: String,
        reply: Reply<Vec<SinkRef>>,
    },
    /// Write a ref.
    PutRef { learned: SinkRef, reply: Reply<()> },
    /// Every sink's figures.
    Figures(Reply<Vec<SinkFigures>>),
}

impl std::fmt::Debug for SinkCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkCommand::Pending {
                sink, after, limit, ..
            } => write!(f, "SinkPending({sink}, {after}, {limit})"),
            SinkCommand::Done { id, .. } => write!(f, "SinkDone({id})"),
            SinkCommand::Park { id, .. } => write!(f, "SinkPark({id})"),
            SinkCommand::Unpark { sink, .. } => write!(f, "SinkUnpark({sink:?})"),
            SinkCommand::Parked(_) => f.write_str("SinkParked"),
            SinkCommand::Ref { sink, key, .. } => write!(f, "SinkRef({sink}, {key})"),
            SinkCommand::OpenRefs { sink, .. } => write!(f, "SinkOpenRefs({sink})"),
            SinkCommand::PutRef { learned, .. } => {
                write!(f, "SinkPutRef({}, {})", learned.sink, learned.key)
            }
            SinkCommand::Figures(_) => f.write_str("SinkFigures"),
        }
    }
}

/// What answering a command did, for the owner thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answered {
    /// Nothing the connectors wait for changed.
    Quiet,
    /// Parked deliveries may be tried again: wake the connectors.
    Unparked,
}

impl SinkCommand {
    /// It writes the file, and must be committed before its reply (after
    /// everything queued before it).
    pub fn writes(&self) -> bool {
        matches!(
            self,
            SinkCommand::Done { .. }
                | SinkCommand::Park { .. }
                | SinkCommand::Unpark { .. }
                | SinkCommand::PutRef { .. }
        )
    }

    /// Answers with `e`.
    pub fn fail(self, e: StoreError) {
        // A handle that stopped waiting does not need the answer.
        match self {
            SinkCommand::Pending { reply, .. } => drop(reply.send(Err(e))),
            SinkCommand::Done { reply, .. }
            | SinkCommand::Park { reply, .. }
            | SinkCommand::PutRef { reply, .. } => drop(reply.send(Err(e))),
            SinkCommand::Unpark { reply, .. } => drop(reply.send(Err(e))),
            SinkCommand::Parked(reply) => drop(reply.send(Err(e))),
            SinkCommand::Ref { reply, .. } => drop(reply.send(Err(e))),
            SinkCommand::OpenRefs { reply, .. } => drop(reply.send(Err(e))),
            SinkCommand::Figures(reply) => drop(reply.send(Err(e))),
        }
    }

    /// Answers from the file (`held`: the deliveries waiting in memory,
    /// which the figures count).
    pub fn answer(self, file: &mut Outbox, held: &[Delivery]) -> Answered {
        let mut answered = Answered::Quiet;
        match self {
            SinkCommand::Pending {
                sink,
                after,
                limit,
                reply,
            } => {
                let r = file.read("reading a sink queue", |c| pending(c, &sink, after, limit));
                let _ = reply.send(r);
            }
            SinkCommand::Done { id, learned, reply } => {
                let r = file.write("confirming a delivery", |c| done(c, id, learned.as_ref()));
                let _ = reply.send(r);
            }
            SinkCommand::Park { id, error, reply } => {
                let now = SystemTime::now();
                let r = file.write("parking a delivery", |c| park(c, id, &error, now));
                let _ = reply.send(r);
            }
            SinkCommand::Unpark { sink, reply } => {
                let r = file.write("un-parking deliveries", |c| unpark(c, sink.as_deref()));
                if r.is_ok() {
                    answered = Answered::Unparked;
                }
                let _ = reply.send(r);
            }
            SinkCommand::Parked(reply) => {
                let _ = reply.send(file.read("reading the parked deliveries", parked));
            }
            SinkCommand::Ref { sink, key, reply } => {
                let r = file.read("reading a sink ref", |c| get_ref(c, &sink, &key));
                let _ = reply.send(r);
            }
            SinkCommand::OpenRefs { sink, reply } => {
                let r = file.read("reading the open sink refs", |c| open_refs(c, &sink));
                let _ = reply.send(r);
            }
            SinkCommand::PutRef { learned, reply } => {
                let r = file.write("writing a sink ref", |c| put_ref(c, &learned));
                let _ = reply.send(r);
            }
            SinkCommand::Figures(reply) => {
                let r = file.read("reading the sink figures", figures).map(|mut f| {
                    add_held(&mut f, held);
                    f
                });
                let _ = reply.send(r);
            }
        }
        answered
    }
}

/// The row of a delivery, as the queries below select it.
const COLUMNS: &str = "id, sink, kind, key, event, topic, payload, created_at";

fn delivery_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<PendingDelivery> {
    let kind: String = r.get(2)?;
    // Only a newer release writes other kinds, and its files are refused.
    let kind = DeliveryKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown delivery kind {kind:?}").into(),
        )
    })?;
    Ok(PendingDelivery {
        id: r.get(0)?,
        delivery: Delivery {
            sink: r.get(1)?,
            kind,
            key: r.get(3)?,
            event: r.get(4)?,
            topic: r.get(5)?,
            payload: r.get(6)?,
            created_at: from_ms(r.get(7)?),
        },
    })
}

fn ref_from(r: &rusqlite::Row<'_>) -> rusqlite::Result<SinkRef> {
    Ok(SinkRef {
        sink: r.get(0)?,
        key: r.get(1)?,
        wo_id: r.get(2)?,
        reference: r.get(3)?,
        status: r.get(4)?,
        topic: r.get(5)?,
        updated_at: from_ms(r.get(6)?),
    })
}

fn sql_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// What writing a group's deliveries did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Written {
    /// The id of the newest delivery written, if any.
    pub last_id: Option<i64>,
    /// Meter deliveries deleted at [`SINK_ROWS`].
    pub meters_dropped: u64,
    /// Connectors left over [`SINK_ROWS`] with work orders only, and how
    /// many rows they hold.
    pub over: Vec<(String, u64)>,
}

/// Inserts `deliveries` in order and keeps each connector they go to
/// within [`SINK_ROWS`], inside the caller's transaction (the group
/// commit's).
pub(super) fn write(tx: &Connection, deliveries: &[Delivery]) -> rusqlite::Result<Written> {
    let mut w = Written::default();
    if deliveries.is_empty() {
        return Ok(w);
    }
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO sink_queue (sink, kind, key, event, topic, payload, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?;
        for d in deliveries {
            stmt.execute(params![
                d.sink,
                d.kind.as_str(),
                d.key,
                d.event,
                d.topic,
                d.payload,
                to_ms(d.created_at),
            ])?;
        }
    }
    w.last_id = Some(tx.last_insert_rowid());
    let mut sinks: Vec<&str> = deliveries.iter().map(|d| d.sink.as_str()).collect();
    sinks.sort_unstable();
    sinks.dedup();
    let mut count = tx.prepare_cached("SELECT count(*) FROM sink_queue WHERE sink = ?1")?;
    let mut drop_meters = tx.prepare_cached(
        "DELETE FROM sink_queue WHERE id IN (
             SELECT id FROM sink_queue WHERE sink = ?1 AND kind = 'meter'
             ORDER BY id LIMIT ?2)",
    )?;
    for sink in sinks {
        let rows = count.query_row([sink], |r| r.get::<_, i64>(0))?.max(0) as u64;
        if rows <= SINK_ROWS {
            continue;
        }
        let excess = rows - SINK_ROWS;
        let dropped = drop_meters.execute(params![sink, excess as i64])? as u64;
        w.meters_dropped += dropped;
        if dropped < excess {
            w.over.push((sink.to_owned(), rows - dropped));
        }
    }
    Ok(w)
}

/// The rate-limited log lines of the per-connector bound, and its count.
#[derive(Debug)]
pub(super) struct Overflow {
    /// Meter deliveries dropped at the bound since start.
    pub meters_dropped: u64,
    dropped_log: RateLimited,
    over_log: RateLimited,
}

impl Overflow {
    pub fn new() -> Overflow {
        Overflow {
            meters_dropped: 0,
            dropped_log: RateLimited::new(LOG_INTERVAL),
            over_log: RateLimited::new(LOG_INTERVAL),
        }
    }

    /// Counts and logs (at most once a minute each) what a commit did at
    /// the bound.
    pub fn note(&mut self, w: &Written, now: Instant) {
        self.meters_dropped += w.meters_dropped;
        if let Some(n) = self.dropped_log.add(w.meters_dropped, now) {
            tracing::warn!(
                dropped = n,
                total = self.meters_dropped,
                max_rows = SINK_ROWS,
                "CMMS queue full: the oldest meter deliveries were dropped (is the CMMS reachable?)"
            );
        }
        let times = w.over.len() as u64;
        if let Some(n) = self.over_log.add(times, now) {
            let sinks: Vec<String> = w
                .over
                .iter()
                .map(|(sink, rows)| format!("{sink} ({rows})"))
                .collect();
            tracing::error!(
                sinks = %sinks.join(", "),
                commits = n,
                max_rows = SINK_ROWS,
                "CMMS queue over its bound with work orders only: none is dropped, the queue grows (is the CMMS reachable?)"
            );
        }
    }
}

/// The newest delivery id the file ever gave (0 for none).
pub(super) fn last_id(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sink_queue'), 0)",
        [],
        |r| r.get(0),
    )
}

fn pending(
    conn: &Connection,
    sink: &str,
    after: i64,
    limit: usize,
) -> rusqlite::Result<Vec<PendingDelivery>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM sink_queue
         WHERE sink = ?1 AND id > ?2 AND parked IS NULL ORDER BY id LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![sink, after, sql_limit(limit)], delivery_from)?;
    rows.collect()
}

fn done(tx: &Connection, id: i64, learned: Option<&SinkRef>) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM sink_queue WHERE id = ?1")?
        .execute([id])?;
    if let Some(r) = learned {
        put_ref(tx, r)?;
    }
    Ok(())
}

fn park(tx: &Connection, id: i64, error: &str, now: SystemTime) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE sink_queue SET parked = ?2, parked_at = ?3 WHERE id = ?1")?
        .execute(params![id, error, to_ms(now)])?;
    Ok(())
}

fn unpark(tx: &Connection, sink: Option<&str>) -> rusqlite::Result<u64> {
    let n = match sink {
        Some(sink) => tx.execute(
            "UPDATE sink_queue SET parked = NULL, parked_at = NULL
             WHERE sink = ?1 AND parked IS NOT NULL",
            [sink],
        )?,
        None => tx.execute(
            "UPDATE sink_queue SET parked = NULL, parked_at = NULL WHERE parked IS NOT NULL",
            [],
        )?,
    };
    Ok(n as u64)
}

/// The parked deliveries, oldest first (also read by the inspector).
pub(super) fn parked(conn: &Connection) -> rusqlite::Result<Vec<ParkedDelivery>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS}, parked, parked_at FROM sink_queue
         WHERE parked IS NOT NULL ORDER BY id"
    ))?;
    let rows = stmt.query_map([], |r| {
        let p = delivery_from(r)?;
        Ok(ParkedDelivery {
            id: p.id,
            delivery: p.delivery,
            error: r.get(8)?,
            parked_at: from_ms(r.get::<_, Option<i64>>(9)?.unwrap_or(0)),
        })
    })?;
    rows.collect()
}

const REF_COLUMNS: &str = "sink, key, wo_id, reference, status, topic, updated_at";

fn get_ref(conn: &Connection, sink: &str, key: &str) -> rusqlite::Result<Option<SinkRef>> {
    conn.prepare_cached(&format!(
        "SELECT {REF_COLUMNS} FROM sink_refs WHERE sink = ?1 AND key = ?2"
    ))?
    .query_row([sink, key], ref_from)
    .optional()
}

fn open_refs(conn: &Connection, sink: &str) -> rusqlite::Result<Vec<SinkRef>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {REF_COLUMNS} FROM sink_refs
         WHERE sink = ?1 AND status NOT IN {ENDED} ORDER BY key"
    ))?;
    let rows = stmt.query_map([sink], ref_from)?;
    rows.collect()
}

/// Inserts or replaces a ref; when it ends a work order, keeps the
/// connector's newest [`ENDED_REFS`] ended ones.
fn put_ref(tx: &Connection, r: &SinkRef) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO sink_refs (sink, key, wo_id, reference, status, topic, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (sink, key) DO UPDATE SET
             wo_id = excluded.wo_id, reference = excluded.reference,
             status = excluded.status, topic = excluded.topic,
             updated_at = excluded.updated_at",
    )?
    .execute(params![
        r.sink,
        r.key,
        r.wo_id,
        r.reference,
        r.status,
        r.topic,
        to_ms(r.updated_at)
    ])?;
    if r.status == "closed" || r.status == "cancelled" {
        tx.prepare_cached(&format!(
            "DELETE FROM sink_refs WHERE sink = ?1 AND key IN (
                 SELECT key FROM sink_refs WHERE sink = ?1 AND status IN {ENDED}
                 ORDER BY updated_at DESC, key LIMIT -1 OFFSET ?2)"
        ))?
        .execute(params![r.sink, ENDED_REFS as i64])?;
    }
    Ok(())
}

/// Every connector's queue figures, by name (also read by the inspector).
pub(super) fn figures(conn: &Connection) -> rusqlite::Result<Vec<SinkFigures>> {
    let mut stmt = conn.prepare_cached(
        "SELECT sink, sum(parked IS NULL), sum(parked IS NOT NULL),
                min(CASE WHEN parked IS NULL THEN created_at END)
         FROM sink_queue GROUP BY sink ORDER BY sink",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(SinkFigures {
            sink: r.get(0)?,
            pending: r.get::<_, i64>(1)?.max(0) as u64,
            parked: r.get::<_, i64>(2)?.max(0) as u64,
            oldest: r.get::<_, Option<i64>>(3)?.map(from_ms),
        })
    })?;
    rows.collect()
}

/// Adds the deliveries waiting in memory to the file's figures.
fn add_held(figures: &mut Vec<SinkFigures>, held: &[Delivery]) {
    for d in held {
        let i = match figures.binary_search_by(|f| f.sink.as_str().cmp(&d.sink)) {
            Ok(i) => i,
            Err(i) => {
                figures.insert(
                    i,
                    SinkFigures {
                        sink: d.sink.clone(),
                        pending: 0,
                        parked: 0,
                        oldest: None,
                    },
                );
                i
            }
        };
        let f = &mut figures[i];
        f.pending += 1;
        f.oldest = Some(f.oldest.map_or(d.created_at, |o| o.min(d.created_at)));
    }
}

/// What [`trim_held`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Trimmed {
    /// Meter deliveries.
    pub meters: u64,
    /// Work-order deliveries (only when no meter was left).
    pub work_orders: u64,
}

/// Keeps the deliveries waiting in memory within `max`: the oldest meter
/// deliveries go first, then the oldest work orders.
pub(super) fn trim_held(held: &mut Vec<Delivery>, max: usize) -> Trimmed {
    let mut t = Trimmed::default();
    if held.len() <= max {
        return t;
    }
    let mut excess = held.len() - max;
    held.retain(|d| {
        if excess > 0 && d.kind == DeliveryKind::Meter {
            excess -= 1;
            t.meters += 1;
            false
        } else {
            true
        }
    });
    if excess > 0 {
        held.drain(..excess);
        t.work_orders = excess as u64;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(sink: &str, kind: DeliveryKind, key: &str) -> Delivery {
        Delivery {
            sink: sink.into(),
            kind,
            key: key.into(),
            event: "raised".into(),
            topic: "t".into(),
            payload: b"{}".to_vec(),
            created_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        }
    }

    #[test]
    fn kinds_round_trip() {
        for k in [DeliveryKind::WorkOrder, DeliveryKind::Meter] {
            assert_eq!(DeliveryKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(DeliveryKind::parse("reading"), None);
    }

    #[test]
    fn memory_trims_the_oldest_meters_first_then_work_orders() {
        use DeliveryKind::{Meter, WorkOrder};
        let mut held = vec![
            delivery("a", WorkOrder, "w1"),
            delivery("a", Meter, "m1"),
            delivery("a", WorkOrder, "w2"),
            delivery("a", Meter, "m2"),
            delivery("a", Meter, "m3"),
        ];
        assert_eq!(trim_held(&mut held, 5), Trimmed::default());
        let t = trim_held(&mut held, 3);
        assert_eq!(
            t,
            Trimmed {
                meters: 2,
                work_orders: 0
            }
        );
        let keys: Vec<&str> = held.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["w1", "w2", "m3"]);
        let t = trim_held(&mut held, 1);
        assert_eq!(
            t,
            Trimmed {
                meters: 1,
                work_orders: 1
            }
        );
        assert_eq!(held[0].key, "w2");
    }

    #[test]
    fn held_deliveries_count_in_the_figures_in_name_order() {
        use DeliveryKind::WorkOrder;
        let mut f = vec![SinkFigures {
            sink: "b".into(),
            pending: 1,
            parked: 2,
            oldest: None,
        }];
        add_held(
            &mut f,
            &[
                delivery("c", WorkOrder, "1"),
                delivery("a", WorkOrder, "2"),
                delivery("b", WorkOrder, "3"),
            ],
        );
        let names: Vec<(&str, u64, u64)> = f
            .iter()
            .map(|f| (f.sink.as_str(), f.pending, f.parked))
            .collect();
        assert_eq!(names, [("a", 1, 0), ("b", 2, 2), ("c", 1, 0)]);
        assert!(f.iter().all(|f| f.oldest.is_some()));
    }
}
