//! The Sparkplug B 3.0 edge node (`docs/sparkplug.md`): a connection of its
//! own (its Last Will is the NDEATH), the births, and the Sparkplug rows of
//! the outbox, deleted once the broker has them.
//!
//! # Sessions and `bdSeq`
//!
//! Every connection attempt is a new session with the next `bdSeq`
//! (0–255, wrapping), saved and flushed to the store *before* the CONNECT
//! that registers the NDEATH carrying it, so neither a `kill -9` nor a
//! power cut can make a restart repeat a number a host saw for an older
//! session. rumqttc would reconnect with the Will it was built with, so a
//! failed session's client is dropped and a new one built.
//!
//! # Births
//!
//! After the CONNACK the node subscribes to its NCMD and DCMD topics and,
//! with `primary_host_id`, to that host's STATE; it publishes NBIRTH (seq
//! 0) and a DBIRTH for every device at once, or, with a primary host, once
//! the host's STATE says online. The births' values are the pipeline's
//! latest ([`SharedCurrent`]), taken after noting `B`, the newest row
//! offered: rows up to `B` are history (`is_historical`), rows above it
//! are live. An NCMD `Node Control/Rebirth` publishes the births again
//! (same `bdSeq`, seq from 0), at most once per [`REBIRTH_MIN_INTERVAL`]
//! (a storm of requests is answered by one rebirth).
//!
//! # Rows: QoS 0, deleted on the broker's word
//!
//! The specification has every edge-node message but the NDEATH published
//! at QoS 0, which has no acknowledgement. After each batch of rows the
//! node sends a SUBSCRIBE of a filter nothing is published to (a
//! *barrier*): the broker reads a connection's packets in order, so its
//! SUBACK says every row handed over before the barrier has reached it.
//! Only then are those rows deleted. (Not an UNSUBSCRIBE of a filter never
//! subscribed: rumqttd, the demo's broker, never answers one, and the node
//! stopped after `MAX_BARRIERS` batches. Subscribing again to the same
//! filter only replaces the subscription, and rumqttd and Mosquitto answer
//! it, as MQTT asks of every broker: with a failure code when its ACL
//! refuses the filter.) A connection that fails loses nothing: what was not
//! confirmed is sent again by the next session, as history.
//!
//! Live rows (above `B`) go first; history takes what the window leaves,
//! at least a quarter of it while both wait. A row of a device the session
//! has not born (it died, or was born after the row was taken) stays in
//! the outbox for the next session.
//!
//! # Primary host
//!
//! When the primary host's STATE turns offline the node publishes its
//! NDEATH, disconnects and starts a new session that waits for the host
//! (as hosts and peer edge nodes expect); meanwhile every row stays in the
//! outbox, within its `max_bytes`, and goes out as history after the next
//! births. A STATE older than the last one seen is ignored.
//!
//! # Bad input
//!
//! Malformed NCMD, DCMD and STATE payloads, commands for metrics that are
//! not writable and STATEs of other hosts are logged and counted
//! ([`EdgeNodeStats`]), never fatal.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{Event, Incoming, LastWill, MqttOptions, Outgoing, QoS};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::client::{MqttError, session_options};
use super::driver::{self, Link, LoopMsg};
use super::forwarder::{BACKOFF_MAX, BACKOFF_START};
use crate::config::{Config, Device, MqttConfig, SparkplugConfig};
use crate::contract::sparkplug::inbound::{self, Command};
use crate::contract::sparkplug::session::{NodeInfo, Out, RowAction, death_certificate};
use crate::contract::sparkplug::topics::InboundTopic;
use crate::contract::sparkplug::values::epoch_millis;
use crate::contract::sparkplug::{Catalog, Session, SharedCurrent, SparkplugTopics};
use crate::shutdown::Shutdown;
use crate::store::{Lane, Row, StoreError, StoreHandle};

/// Rows handed to the broker and not yet confirmed, at most.
pub const WINDOW: usize = 256;
/// Rows between two barriers, at most.
const BARRIER_EVERY: usize = 64;
/// Barriers waiting for their SUBACK, at most: their packet ids must
/// never wrap onto one still waiting (rumqttc numbers 1..=[`PACKET_IDS`]).
const MAX_BARRIERS: usize = 16;
/// rumqttc's packet-id space for this connection: the barriers, the three
/// subscriptions and the NDEATH, with room to spare.
const PACKET_IDS: u16 = 64;
/// The filter a barrier subscribes to (nothing is published there; only
/// the SUBACK matters).
const BARRIER_FILTER: &str = "_fieldgate/barrier";
/// Rebirths answered at most this often; requests in between are merged.
pub const REBIRTH_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// How often the node metrics (outbox depth, clock) are looked at; an
/// NDATA goes out when one changed.
pub const NODE_INFO_INTERVAL: Duration = Duration::from_secs(10);
/// How long a stop waits for its NDEATH and DISCONNECT to be written.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// The store's key of the last `bdSeq` used.
pub const BD_SEQ_KEY: &str = "sparkplug.bd_seq";

/// What the edge node needs.
#[derive(Debug, Clone)]
pub struct EdgeNodeConfig {
    /// `[mqtt]`: broker, TLS, credentials (its client id is replaced).
    pub mqtt: MqttConfig,
    /// `[sparkplug]`.
    pub sparkplug: SparkplugConfig,
    /// The birth certificate.
    pub catalog: Arc<Catalog>,
    /// The devices (their tags make the DBIRTHs' values).
    pub devices: Vec<Arc<Device>>,
    /// The configuration's hash (`Node Info/Config Hash`).
    pub config_hash: String,
}

impl EdgeNodeConfig {
    /// The edge node of `config`, when `[sparkplug]` is on.
    pub fn of(config: &Config) -> Option<EdgeNodeConfig> {
        Some(EdgeNodeConfig {
            mqtt: config.mqtt.clone(),
            sparkplug: config.sparkplug.clone()?,
            catalog: Arc::new(Catalog::of(config)),
            devices: config.devices.clone(),
            config_hash: config.hash.clone(),
        })
    }

    fn topics(&self) -> SparkplugTopics {
        SparkplugTopics::new(&self.sparkplug.group_id, &self.sparkplug.edge_node_id)
    }
}

/// The edge node's figures, for metrics and the status page. Written by
/// the edge node only.
#[derive(Debug, Default)]
pub struct EdgeNodeStats {
    /// A connection is up.
    pub connected: AtomicBool,
    /// The births are out: data flows (false while waiting for the host).
    pub born: AtomicBool,
    /// The primary host's last STATE said online (always true without one).
    pub host_online: AtomicBool,
    /// The `bdSeq` of the current (or last) session.
    pub bd_seq: AtomicU64,
    /// Sessions begun (connection attempts).
    pub sessions: AtomicU64,
    /// NBIRTHs published (first births and rebirths).
    pub births: AtomicU64,
    /// Rebirth requests received (NCMD), answered or merged.
    pub rebirth_requests: AtomicU64,
    /// Rows published live.
    pub published: AtomicU64,
    /// Rows published as history (`is_historical`).
    pub historical: AtomicU64,
    /// Rows confirmed by the broker and deleted.
    pub confirmed: AtomicU64,
    /// Rows that could never be sent and were deleted (a death sent as
    /// history, a device the configuration no longer has).
    pub dropped: AtomicU64,
    /// Rows kept for the next session (their device was not born).
    pub held: AtomicU64,
    /// Inbound messages refused: malformed, unknown metric, not writable,
    /// a stale STATE.
    pub inbound_refused: AtomicU64,
}

impl EdgeNodeStats {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a session ended.
enum End {
    /// The stop signal: NDEATH published, disconnected.
    Stopped,
    /// The store closed.
    StoreClosed,
    /// The connection failed (or never came up).
    Lost { error: String, refused: bool },
    /// The primary host went offline: a new session waits for it.
    HostOffline,
}

/// Runs the edge node until `shutdown` fires or the store closes.
pub async fn run(
    cfg: EdgeNodeConfig,
    store: StoreHandle,
    current: SharedCurrent,
    stats: Arc<EdgeNodeStats>,
    mut shutdown: Shutdown,
) -> Result<(), MqttError> {
    // The options are checked once (TLS files) before anything else.
    session_options(&cfg.mqtt)?;
    let mut backoff = BACKOFF_START;
    let mut last_host: Option<u64> = None;
    loop {
        let bd_seq = next_bd_seq(&store).await;
        stats.bd_seq.store(bd_seq, Ordering::Relaxed);
        EdgeNodeStats::bump(&stats.sessions);
        let options = options(&cfg, bd_seq)?;
        // rumqttc's request channel must take a whole birth (one DBIRTH per
        // device) on top of a full window of rows and the barriers.
        let (link, events, guard) =
            driver::start(options, WINDOW + cfg.devices.len() + MAX_BARRIERS + 8);
        let node = Node::new(
            &cfg,
            bd_seq,
            link,
            store.clone(),
            current.clone(),
            stats.clone(),
            last_host,
        );
        let (end, host) = node.run(events, &mut shutdown).await;
        last_host = host;
        drop(guard);
        stats.connected.store(false, Ordering::Relaxed);
        stats.born.store(false, Ordering::Relaxed);
        match end {
            End::Stopped | End::StoreClosed => return Ok(()),
            End::HostOffline => {
                backoff = BACKOFF_START;
                info!(
                    bd_seq,
                    "sparkplug: primary host offline; NDEATH published, new session waits for it"
                );
            }
            End::Lost { error, refused } => {
                warn!(bd_seq, %error, "sparkplug: connection lost");
                let delay = if refused { BACKOFF_START } else { backoff };
                backoff = (backoff * 2).min(BACKOFF_MAX);
                tokio::select! {
                    () = shutdown.recv() => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// The next `bdSeq` (the last one used plus one, 0 the first time), saved
/// and flushed before it is used.
async fn next_bd_seq(store: &StoreHandle) -> u64 {
    let last = match store.load_state(BD_SEQ_KEY).await {
        Ok(Some(bytes)) => std::str::from_utf8(&bytes)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok()),
        Ok(None) => None,
        Err(e) => {
            warn!(error = %e, "sparkplug: cannot read the last bdSeq");
            None
        }
    };
    let next = last.map_or(0, |n| (n + 1) % 256);
    let saved = match store
        .save_state(BD_SEQ_KEY, next.to_string().into_bytes())
        .await
    {
        Ok(()) => store.flush().await,
        Err(e) => Err(e),
    };
    if let Err(e) = saved {
        // Publishing goes on; only a crash before the next good commit
        // could then repeat this number.
        warn!(error = %e, bd_seq = next, "sparkplug: the bdSeq could not be made durable");
    }
    next
}

/// The connection options of session `bd_seq`: `[mqtt]`'s broker, the
/// node's client id, a clean session (Sparkplug 3.0 asks it of edge nodes:
/// nothing is queued for them while away) and the NDEATH as Last Will.
fn options(cfg: &EdgeNodeConfig, bd_seq: u64) -> Result<MqttOptions, MqttError> {
    let mut mqtt = cfg.mqtt.clone();
    mqtt.client_id = cfg.sparkplug.client_id.clone();
    let mut options = session_options(&mqtt)?;
    options.set_clean_session(true);
    options.set_manual_acks(false);
    options.set_inflight(PACKET_IDS);
    let will = death_certificate(&cfg.topics(), bd_seq, epoch_millis(SystemTime::now()));
    options.set_last_will(LastWill::new(
        will.topic,
        will.payload,
        QoS::AtLeastOnce,
        false,
    ));
    Ok(options)
}

/// Sleeps until `at`, or for ever without it.
async fn rebirth_due(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Rows handed over before one barrier.
#[derive(Debug, Default)]
struct Barrier {
    pkid: Option<u16>,
    rows: Vec<i64>,
}

/// One session.
struct Node<'a> {
    cfg: &'a EdgeNodeConfig,
    link: Link,
    store: StoreHandle,
    current: SharedCurrent,
    stats: Arc<EdgeNodeStats>,
    session: Session,
    generation: Option<u64>,
    /// The host's last STATE timestamp (carried across sessions).
    host_seen: Option<u64>,
    host_online: bool,
    born: bool,
    /// Rows `≤ upto` are history; the backlog has sent up to `after`.
    backlog_after: i64,
    backlog_upto: i64,
    live_after: i64,
    live_dry: bool,
    /// Handed over since the last barrier.
    open: Barrier,
    /// Barriers sent, oldest first (pkid known once rumqttc numbered it).
    barriers: VecDeque<Barrier>,
    /// The session's own SUBSCRIBEs not yet written: their packet ids
    /// come before any barrier's.
    own_subscribes: usize,
    in_flight: usize,
    rebirth_wanted: bool,
    last_birth: Option<Instant>,
    node_info: Option<NodeInfo>,
}

impl<'a> Node<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        cfg: &'a EdgeNodeConfig,
        bd_seq: u64,
        link: Link,
        store: StoreHandle,
        current: SharedCurrent,
        stats: Arc<EdgeNodeStats>,
        host_seen: Option<u64>,
    ) -> Node<'a> {
        Node {
            cfg,
            link,
            store,
            current,
            stats,
            session: Session::new(cfg.catalog.clone(), cfg.topics(), bd_seq),
            generation: None,
            host_seen,
            host_online: cfg.sparkplug.primary_host_id.is_none(),
            born: false,
            backlog_after: 0,
            backlog_upto: 0,
            live_after: 0,
            live_dry: false,
            open: Barrier::default(),
            barriers: VecDeque::new(),
            own_subscribes: 0,
            in_flight: 0,
            rebirth_wanted: false,
            last_birth: None,
            node_info: None,
        }
    }

    async fn run(
        mut self,
        mut events: mpsc::Receiver<LoopMsg>,
        shutdown: &mut Shutdown,
    ) -> (End, Option<u64>) {
        let mut committed = self.store.committed();
        let mut info_tick = tokio::time::interval(NODE_INFO_INTERVAL);
        info_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        if shutdown.is_shutdown() {
            return (End::Stopped, self.host_seen);
        }
        let end = loop {
            if let Err(end) = self.pump().await {
                break end;
            }
            tokio::select! {
                () = shutdown.recv() => break End::Stopped,
                msg = events.recv() => match msg {
                    None => break End::Lost { error: "the connection's driver stopped".into(), refused: false },
                    Some(msg) => if let Some(end) = self.on_loop(msg).await { break end },
                },
                changed = committed.changed() => {
                    if changed.is_err() {
                        break End::StoreClosed;
                    }
                    self.live_dry = false;
                }
                _ = info_tick.tick() => self.node_data().await,
                // A rebirth asked for too soon after the last one.
                () = rebirth_due(self.rebirth_at()) => {}
            }
        };
        if matches!(end, End::Stopped | End::HostOffline) {
            self.goodbye(&mut events).await;
        }
        (end, self.host_seen)
    }

    /// When a wanted rebirth may go out, if one is wanted.
    fn rebirth_at(&self) -> Option<Instant> {
        if !self.rebirth_wanted || !self.born {
            return None;
        }
        Some(
            self.last_birth
                .map_or_else(Instant::now, |t| t + REBIRTH_MIN_INTERVAL),
        )
    }

    async fn on_loop(&mut self, msg: LoopMsg) -> Option<End> {
        match msg {
            LoopMsg::Connected { generation } => {
                if !self.link.gate.open(generation) {
                    return None;
                }
                self.generation = Some(generation);
                self.stats.connected.store(true, Ordering::Relaxed);
                self.subscribe();
                if self.host_online {
                    self.birth().await;
                }
                None
            }
            LoopMsg::Event(event) => self.on_event(event).await,
            LoopMsg::Lost { error } => Some(End::Lost {
                error,
                refused: false,
            }),
            LoopMsg::ConnectFailed { error } => {
                // Nothing listens (the broker restarts): try again in a
                // second, as the JSON forwarder does.
                let refused = error.contains("os error 111");
                Some(End::Lost { error, refused })
            }
            LoopMsg::Disconnected => Some(End::Lost {
                error: "disconnected".into(),
                refused: false,
            }),
        }
    }

    fn hand(
        &self,
        f: impl FnOnce(&rumqttc::AsyncClient) -> Result<(), rumqttc::ClientError>,
    ) -> bool {
        let Some(generation) = self.generation else {
            return false;
        };
        matches!(
            self.link
                .gate
                .with_open(generation, || f(&self.link.client)),
            Some(Ok(()))
        )
    }

    fn subscribe(&mut self) {
        let topics = self.session.topics().clone();
        let mut filters = vec![topics.ncmd(), topics.dcmd_filter()];
        if let Some(host) = &self.cfg.sparkplug.primary_host_id {
            filters.push(SparkplugTopics::state(host));
        }
        for filter in filters {
            if self.hand(|c| c.try_subscribe(filter.clone(), QoS::AtLeastOnce)) {
                self.own_subscribes += 1;
            } else {
                warn!(%filter, "sparkplug: could not subscribe");
            }
        }
    }

    fn publish(&self, out: Out) -> bool {
        self.hand(|c| c.try_publish(out.topic, QoS::AtMostOnce, false, out.payload))
    }

    fn node_info(&self, depth: u64) -> NodeInfo {
        NodeInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            config_hash: self.cfg.config_hash.clone(),
            outbox_depth: depth,
            clock_synchronised: crate::clock::wall_clock_synced().unwrap_or(false),
        }
    }

    async fn outbox_depth(&self) -> u64 {
        self.store.stats().await.map_or(0, |s| s.messages)
    }

    /// NBIRTH and every DBIRTH; rows up to the newest offered become history.
    async fn birth(&mut self) {
        let b = *self.store.committed().borrow();
        let info = self.node_info(self.outbox_depth().await);
        let now = epoch_millis(SystemTime::now());
        let (nbirth, dbirths) = {
            let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            let nbirth = self.session.nbirth(&info, &current, now);
            let dbirths: Vec<Out> = self
                .cfg
                .devices
                .iter()
                .filter_map(|d| {
                    let values = current.device_payload(d, now);
                    self.session.dbirth(&d.name, &values, now)
                })
                .collect();
            (nbirth, dbirths)
        };
        let mut ok = self.publish(nbirth);
        for out in dbirths {
            ok &= self.publish(out);
        }
        if !ok {
            warn!("sparkplug: the births could not be handed over; the connection is failing");
        }
        if !self.born {
            // The first birth of the session: what waited is history.
            self.backlog_after = 0;
            self.backlog_upto = b;
            self.live_after = b;
        }
        self.born = true;
        self.node_info = Some(info);
        self.last_birth = Some(Instant::now());
        self.rebirth_wanted = false;
        self.stats.born.store(true, Ordering::Relaxed);
        EdgeNodeStats::bump(&self.stats.births);
        info!(
            bd_seq = self.session.bd_seq(),
            devices = self.cfg.devices.len(),
            history_upto = b,
            "sparkplug: births published"
        );
    }

    /// Hands over what the window allows: live rows first, then history.
    async fn pump(&mut self) -> Result<(), End> {
        if !self.born || self.generation.is_none() {
            return Ok(());
        }
        if self.rebirth_wanted
            && self
                .last_birth
                .is_none_or(|t| t.elapsed() >= REBIRTH_MIN_INTERVAL)
        {
            self.birth().await;
        }
        loop {
            let room = WINDOW.saturating_sub(self.in_flight);
            if room == 0 || self.barriers.len() >= MAX_BARRIERS {
                break;
            }
            let history_waits = self.backlog_after < self.backlog_upto;
            let live_room = if history_waits { room - room / 4 } else { room }.min(BARRIER_EVERY);
            // Rows looked at: held or dropped rows move the cursors too.
            let mut seen = 0;
            if !self.live_dry && live_room > 0 {
                let rows = self.fetch(self.live_after, live_room).await?;
                if rows.len() < live_room {
                    self.live_dry = true;
                }
                if let Some(last) = rows.last() {
                    self.live_after = last.id;
                }
                seen += rows.len();
                self.send(rows, false);
            }
            let room = WINDOW.saturating_sub(self.in_flight).min(BARRIER_EVERY);
            if history_waits && room > 0 {
                let mut rows = self.fetch(self.backlog_after, room).await?;
                let upto = self.backlog_upto;
                let done = rows.len() < room || rows.iter().any(|r| r.id > upto);
                rows.retain(|r| r.id <= upto);
                self.backlog_after = match (done, rows.last()) {
                    (true, _) => upto,
                    (false, Some(last)) => last.id,
                    (false, None) => upto,
                };
                seen += rows.len();
                self.send(rows, true);
            }
            self.barrier();
            if seen == 0 {
                break;
            }
        }
        Ok(())
    }

    async fn fetch(&self, after: i64, limit: usize) -> Result<Vec<Row>, End> {
        match self.store.fetch_after(Lane::Sparkplug, after, limit).await {
            Ok(rows) => Ok(rows),
            Err(StoreError::Closed) => Err(End::StoreClosed),
            Err(e) => {
                debug!(error = %e, "sparkplug: cannot fetch rows now");
                Ok(Vec::new())
            }
        }
    }

    /// Hands `rows` over; returns how many were handed.
    fn send(&mut self, rows: Vec<Row>, historical: bool) -> usize {
        let now = epoch_millis(SystemTime::now());
        let mut handed = 0;
        let mut drop = Vec::new();
        for row in rows {
            match self.session.row(&row.topic, &row.payload, historical, now) {
                Ok(RowAction::Send(out)) => {
                    if self.publish(out) {
                        self.open.rows.push(row.id);
                        self.in_flight += 1;
                        handed += 1;
                        let counter = if historical {
                            &self.stats.historical
                        } else {
                            &self.stats.published
                        };
                        EdgeNodeStats::bump(counter);
                    }
                }
                Ok(RowAction::Drop) => {
                    EdgeNodeStats::bump(&self.stats.dropped);
                    drop.push(row.id);
                }
                Ok(RowAction::Hold) => EdgeNodeStats::bump(&self.stats.held),
                Err(e) => {
                    warn!(id = row.id, error = %e, "sparkplug: a stored row cannot be sent; deleted");
                    EdgeNodeStats::bump(&self.stats.dropped);
                    drop.push(row.id);
                }
            }
        }
        if !drop.is_empty() {
            let store = self.store.clone();
            tokio::spawn(async move {
                let _ = store.delete(drop).await;
            });
        }
        handed
    }

    /// Closes the open batch with a barrier.
    fn barrier(&mut self) {
        if self.open.rows.is_empty() {
            return;
        }
        if self.hand(|c| c.try_subscribe(BARRIER_FILTER, QoS::AtMostOnce)) {
            self.barriers.push_back(std::mem::take(&mut self.open));
        }
        // Otherwise the connection is failing: its rows stay in the outbox.
    }

    async fn on_event(&mut self, event: Event) -> Option<End> {
        match event {
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if self.own_subscribes > 0 {
                    self.own_subscribes -= 1;
                } else if let Some(b) = self.barriers.iter_mut().find(|b| b.pkid.is_none()) {
                    b.pkid = Some(pkid);
                }
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                if let Some(i) = self.barriers.iter().position(|b| b.pkid == Some(ack.pkid)) {
                    // Acks come in order; earlier barriers are confirmed too.
                    let done: Vec<Barrier> = self.barriers.drain(..=i).collect();
                    let ids: Vec<i64> = done.into_iter().flat_map(|b| b.rows).collect();
                    self.in_flight = self.in_flight.saturating_sub(ids.len());
                    self.stats
                        .confirmed
                        .fetch_add(ids.len() as u64, Ordering::Relaxed);
                    if let Err(StoreError::Closed) = self.store.delete(ids).await {
                        return Some(End::StoreClosed);
                    }
                }
            }
            Event::Incoming(Incoming::Publish(p)) => {
                return self.on_message(&p.topic, &p.payload).await;
            }
            _ => {}
        }
        None
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8]) -> Option<End> {
        let topics = self.session.topics().clone();
        let refuse = |what: &str, detail: &str| {
            EdgeNodeStats::bump(&self.stats.inbound_refused);
            warn!(%topic, detail, "sparkplug: {what}");
        };
        match topics.parse_inbound(topic) {
            Some(InboundTopic::NodeCommand) => {
                match inbound::node_commands(payload, self.session.catalog()) {
                    Ok(commands) => {
                        for c in commands {
                            match c {
                                Command::Rebirth => {
                                    EdgeNodeStats::bump(&self.stats.rebirth_requests);
                                    self.rebirth_wanted = true;
                                }
                                Command::Refused { metric } => refuse(
                                    "NCMD for a metric that takes no command; refused",
                                    &metric,
                                ),
                            }
                        }
                    }
                    Err(e) => refuse("malformed NCMD ignored", &e.to_string()),
                }
            }
            Some(InboundTopic::DeviceCommand { device }) => match inbound::device_commands(payload)
            {
                Ok(commands) => {
                    for c in commands {
                        if let Command::Refused { metric } = c {
                            refuse(
                                "DCMD refused: no metric is writable",
                                &format!("{device}/{metric}"),
                            );
                        }
                    }
                }
                Err(e) => refuse("malformed DCMD ignored", &e.to_string()),
            },
            Some(InboundTopic::State { host }) => {
                if self.cfg.sparkplug.primary_host_id.as_deref() != Some(host) {
                    refuse("STATE of another host ignored", host);
                    return None;
                }
                let state = match inbound::host_state(payload) {
                    Ok(s) => s,
                    Err(e) => {
                        refuse("malformed STATE ignored", &e.to_string());
                        return None;
                    }
                };
                if let (Some(ts), Some(seen)) = (state.timestamp, self.host_seen)
                    && ts < seen
                {
                    refuse("STATE older than the last one seen ignored", host);
                    return None;
                }
                if state.timestamp.is_some() {
                    self.host_seen = state.timestamp;
                }
                self.host_online = state.online;
                self.stats
                    .host_online
                    .store(state.online, Ordering::Relaxed);
                match (state.online, self.born) {
                    (true, false) => {
                        info!(%host, "sparkplug: primary host online");
                        self.birth().await;
                    }
                    (false, true) => return Some(End::HostOffline),
                    _ => {}
                }
            }
            None => debug!(%topic, "sparkplug: message on a topic not ours"),
        }
        None
    }

    /// NDATA of the node metrics that changed.
    async fn node_data(&mut self) {
        if !self.born {
            return;
        }
        let info = self.node_info(self.outbox_depth().await);
        let Some(before) = self.node_info.clone() else {
            return;
        };
        if let Some(out) = self
            .session
            .ndata(&info, &before, epoch_millis(SystemTime::now()))
        {
            self.publish(out);
        }
        self.node_info = Some(info);
    }

    /// NDEATH, then DISCONNECT (a clean end does not fire the Will, and
    /// hosts must still learn the session is over), waiting until both
    /// are written; rows the broker confirms meanwhile are deleted.
    async fn goodbye(&mut self, events: &mut mpsc::Receiver<LoopMsg>) {
        if self.generation.is_none() {
            return;
        }
        let death = death_certificate(
            self.session.topics(),
            self.session.bd_seq(),
            epoch_millis(SystemTime::now()),
        );
        let sent =
            self.hand(|c| c.try_publish(death.topic, QoS::AtLeastOnce, false, death.payload));
        if !sent || !self.hand(|c| c.try_disconnect()) {
            return;
        }
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            while let Some(msg) = events.recv().await {
                match msg {
                    LoopMsg::Disconnected | LoopMsg::Lost { .. } => return,
                    LoopMsg::Event(Event::Incoming(Incoming::SubAck(_))) => {
                        let _ = self.on_loop(msg).await;
                    }
                    _ => {}
                }
            }
        })
        .await;
    }
}
