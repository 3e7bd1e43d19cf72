//! The forwarder: owns the MQTT client, publishes the outbox and deletes a
//! row only once the broker has confirmed it (STYLE.md, practice 8).
//!
//! # Tasks and ownership
//!
//! [`run`] spawns one task, the *driver*, that owns rumqttc's `EventLoop`
//! and polls it all the time (CRATE-NOTES: polling is what moves packets and
//! what reconnects). `EventLoop::poll` is not cancel-safe (a packet being
//! written can be lost from the wire while rumqttc's state counts it as
//! sent), so it is never raced in a `select!`: the driver forwards every
//! event through a bounded channel ([`EVENT_CAPACITY`]; when it is full the
//! driver waits, which only slows reading from the socket). `run` itself
//! keeps all bookkeeping, talks to the store and hands publishes to rumqttc
//! through `AsyncClient::try_publish`. The driver is aborted when `run`
//! returns.
//!
//! # Packet ids and rows: one book per connection
//!
//! rumqttc gives a QoS 1/2 publish (and a subscribe) the next packet id
//! when it takes the request from its channel, and reports it as
//! `Outgoing::Publish(pkid)` in request order. The forwarder keeps, per
//! connection, a FIFO of what it handed over (a row id, the online/offline
//! status, the subscribe) and pops it on each `Outgoing::Publish` /
//! `Outgoing::Subscribe`, which gives the exact `pkid → row` map. A row is
//! confirmed by `Incoming::PubAck(pkid)` (QoS 1) or by `PubRec` then
//! `PubComp` (QoS 2), and only then queued for deletion; deletes go to the
//! store in batches (everything confirmed since the last wake-up).
//!
//! Packet ids are reused: rumqttc numbers 1..=N round and round (N is
//! [`packet_id_space`](super::client::packet_id_space), about twice
//! `max_inflight`). Before handing a packet
//! over, the forwarder predicts its id (rumqttc's counter restarts at 0 with
//! each connection, see below) and holds back while that id still belongs to
//! an unconfirmed message, so one id never names two messages (rumqttc would
//! otherwise mix up a QoS 2 exchange waiting for PUBCOMP with a new publish).
//!
//! # Reconnects: rumqttc's replay is switched off, the outbox is the truth
//!
//! On a connection error rumqttc moves its unacknowledged publishes and the
//! requests still in its channel to `EventLoop::pending` and replays them
//! after the next CONNACK if the broker kept the session, or silently drops
//! all of them if it did not. That replay is not used, because it does not
//! keep order (leftovers of an earlier replay go out before the replay of
//! older messages, and a publish parked on a packet-id collision is not in
//! it) and because rumqttd disconnects a client that replays a PUBREL for a
//! QoS 2 message it forgot, which loops forever. Instead, when the driver
//! sees the error of an established connection it, under the *gate* lock
//! that every `try_publish` also takes: closes the gate (no more publishes
//! until the forwarder has seen the next CONNACK), drains rumqttc's channel
//! (`EventLoop::clean`), hands over the events rumqttc had already buffered
//! (acks that arrived with the failing read: they still belong to the old
//! book and confirm rows), empties `pending` and replaces `MqttState` with a
//! fresh one. Nothing of the old connection can then reach the wire, and
//! every row that was not confirmed is still in the outbox: the forwarder
//! drops its book and, after the next CONNACK, starts again from the oldest
//! row. Unconfirmed messages are sent again with new packet ids: a broker may
//! see duplicates, never a gap. (MQTT 3.1.1 asks a client resuming a session
//! to resend with the same ids; for QoS 1 that makes no difference; for QoS 2
//! it means the exactly-once handshake is not resumed across a reconnect, so
//! QoS 2 is at-least-once across faults, like everything else here.)
//!
//! # Two streams: live data is not stuck behind the backlog
//!
//! At each CONNACK the forwarder notes `B`, the id of the newest committed
//! row. The in-flight window (`max_inflight` rows) is shared by two streams:
//!
//! * **live** (`live_share` of the window): rows above a cursor that starts
//!   at `B`, in order (`fetch_after`) while it keeps up. When more rows wait
//!   above the cursor than its share of the window (and than it may send at
//!   that moment), it is behind: it takes the newest rows (`fetch_newest`)
//!   and hands the rows it passes over to the backlog.
//! * **backlog** (the rest): rows `≤ B` (what waited through the outage,
//!   including what the last connection sent without a confirmation) and
//!   the ranges the live stream passed over, oldest first (`fetch_after`).
//!   Their payload gets `"hist":true` injected after the opening `{` at
//!   publish time (the stored row is not changed; a payload that is not a
//!   JSON object is sent as it is).
//!
//! A stream with nothing to send lends its share to the other; the lent
//! slots come back as the other stream's messages are acknowledged.
//!
//! # Ordering guarantee
//!
//! Within one connection, each stream hands its rows to rumqttc in
//! increasing id order, rumqttc writes them in that order, and nothing is
//! sent twice within a connection. Rows of one topic are committed in `seq`
//! order, so per topic the broker receives the live messages in increasing
//! `seq` and the `hist` messages in increasing `seq`; between a live and a
//! `hist` message there is no order. Across connections, the live stream of
//! each connection starts above every row committed at its CONNACK, so the
//! messages without `hist` are in increasing `seq` per topic for the whole
//! life of the process; the backlog restarts at the oldest unconfirmed row
//! after every reconnect, so a `hist` message may repeat one delivered
//! before (a duplicate), never skip one. This assumes a topic's rows share
//! one QoS: a broker may forward QoS 2 messages only at PUBREL, later than
//! QoS 1 messages sent after them.
//!
//! A retained row sent by the backlog stream goes out with `retain = false`
//! when a newer retained row of the same topic has already been handed to
//! the broker during this process, so history cannot replace the broker's
//! retained (current) state, e.g. bring a cleared work order back.
//!
//! # Rows that can never be sent
//!
//! A row bigger than `max_packet_size` (with `hist` and packet overhead)
//! or with an invalid topic would kill every connection it is sent on. It
//! is skipped with an error log and counted in
//! [`ForwarderStats::skipped`]; it stays in the outbox (until its bounds
//! evict it or a restart with a larger `max_packet_size` sends it).
//!
//! # Inbound
//!
//! On every CONNACK the forwarder subscribes (QoS 1) to
//! [`Topics::inbound_filters`] and passes each incoming publish to the
//! bounded `mpsc::Sender<Inbound>` it was given ([`INBOUND_CAPACITY`] is the
//! suggested size). It never waits on it (the MQTT session must go on):
//! when it is full the message is held, in order, and passed on as room
//! appears, since rumqttc has already acknowledged it to the broker. Only
//! beyond [`INBOUND_HOLD`] held messages is one dropped, with a warning,
//! and counted in [`ForwarderStats::inbound_dropped`].
//!
//! # Connection errors and stop
//!
//! The forwarder never gives up on the broker: after a failed attempt the
//! driver sleeps 1 s, doubling to 30 s, and tries again (a connection that
//! drops within 10 s of its CONNACK does not reset the delay). A refused
//! TCP connection (nothing listens: the broker is restarting) is retried
//! every second, so the backlog starts moving within a second of the
//! broker's return. The first
//! failure is a warning, later attempts are debug lines, the reconnect is
//! an info line; the last error is in [`ForwarderStats::last_error`].
//!
//! [`run`] returns `Ok` when `shutdown` fires or the store closes: if
//! connected it publishes the retained `offline` status (a clean DISCONNECT
//! does not fire the Last Will), waits up to [`OFFLINE_ACK_TIMEOUT`] for its
//! PUBACK while still confirming rows, sends DISCONNECT and waits up to
//! [`DISCONNECT_TIMEOUT`] for it to be written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttState, Outgoing, QoS,
    SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::client::{MqttError, mqtt_options};
use crate::config::{Config, MqttConfig};
use crate::contract::status::{self, StatusInfo};
use crate::contract::topics::Topics;
use crate::shutdown::Shutdown;
use crate::store::{Row, StoreError, StoreHandle};

/// Suggested capacity of the inbound channel: acks, shelve requests and
/// work-order updates are rare; beyond this many waiting, new ones are
/// dropped (and counted).
pub const INBOUND_CAPACITY: usize = 256;

/// Inbound messages held by the forwarder while the inbound channel is
/// full, beyond the channel's own capacity; more are dropped (counted).
pub const INBOUND_HOLD: usize = 4096;

/// Events waiting between the driver and the forwarder. When full, the
/// driver waits (nothing is dropped); the socket is then read later.
pub const EVENT_CAPACITY: usize = 1024;

/// First delay after a failed connection attempt; it doubles up to
/// [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_secs(1);

/// Longest delay between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The broker's host refused the TCP connection: nothing listens there
/// (the broker is down or restarting). Other failures (a refused CONNECT,
/// TLS, timeouts) keep doubling the delay, so a broker that is up but
/// rejects us is not hammered.
fn broker_absent(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// A connection that lasted at least this long resets the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// How long a stop waits for the PUBACK of the `offline` status.
pub const OFFLINE_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stop waits for the DISCONNECT to be written.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Delay before the store is asked again after an error other than
/// "closed".
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Most events handled between two store round trips.
const EVENT_BATCH: usize = 512;

/// One message received on an inbound topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The topic it arrived on.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The broker marked it retained: a stored copy sent because we
    /// subscribed, not a message just published.
    pub retain: bool,
}

/// What the forwarder needs to know.
#[derive(Debug, Clone)]
pub struct ForwarderConfig {
    /// `[mqtt]`.
    pub mqtt: MqttConfig,
    /// The topic tree (status and inbound topics).
    pub topics: Topics,
    /// Config hash published in the status.
    pub config_hash: String,
    /// When the process started (published in the status).
    pub started: SystemTime,
}

impl ForwarderConfig {
    /// The forwarder's part of a configuration.
    pub fn from_config(config: &Config, started: SystemTime) -> ForwarderConfig {
        ForwarderConfig {
            mqtt: config.mqtt.clone(),
            topics: Topics::of(config),
            config_hash: config.hash.clone(),
            started,
        }
    }

    /// What the status messages say.
    pub fn status_info(&self) -> StatusInfo {
        StatusInfo::new(self.config_hash.clone(), self.started)
    }
}

/// Counters for metrics and the status page. Written by the forwarder only.
#[derive(Debug, Default)]
pub struct ForwarderStats {
    /// A session with the broker is up.
    pub connected: AtomicBool,
    /// CONNACKs after the first one.
    pub reconnects: AtomicU64,
    /// Outbox rows written to the network (resends included).
    pub published: AtomicU64,
    /// Outbox rows confirmed by the broker (and then deleted).
    pub acked: AtomicU64,
    /// Inbound messages passed on.
    pub inbound: AtomicU64,
    /// Inbound messages dropped because the inbound channel was full.
    pub inbound_dropped: AtomicU64,
    /// Outbox rows skipped because they can never be sent (too large,
    /// invalid topic); counted each time they are met.
    pub skipped: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl ForwarderStats {
    /// The last connection or store error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Publishes the outbox until `shutdown` fires or the store closes; see the
/// module documentation. Fails only when the connection options cannot be
/// built (TLS files); connection errors are retried forever.
pub async fn run(
    cfg: ForwarderConfig,
    store: StoreHandle,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<ForwarderStats>,
    shutdown: Shutdown,
) -> Result<(), MqttError> {
    run_with_updates(cfg, store, inbound, stats, shutdown, None).await
}

/// [`run`], with a new config hash arriving on `config_hash` after a
/// reload: the forwarder republishes its retained `online` status with it
/// (the connection and its session stay as they are; the Last Will keeps
/// the hash it was made with until the next connection is set up).
pub async fn run_with_updates(
    cfg: ForwarderConfig,
    store: StoreHandle,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<ForwarderStats>,
    shutdown: Shutdown,
    config_hash: Option<watch::Receiver<String>>,
) -> Result<(), MqttError> {
    let options = mqtt_options(&cfg)?;
    let window = usize::from(cfg.mqtt.max_inflight.max(1));
    let id_space = options.inflight();
    // Never full: it holds at most the handed-over packets not yet taken
    // by rumqttc, i.e. the window plus online, subscribe and offline.
    let (client, eventloop) = AsyncClient::new(options, window + 16);
    let gate = Arc::new(Gate::default());
    let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
    let _driver = AbortOnDrop(tokio::spawn(drive(eventloop, gate.clone(), tx, id_space)));
    let mut forwarder = Forwarder {
        info: cfg.status_info(),
        config_hash,
        broker: format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port),
        status_topic: cfg.topics.status(),
        filters: cfg.topics.inbound_filters(),
        window,
        live_share: cfg.mqtt.live_share,
        id_space,
        max_packet: usize::try_from(cfg.mqtt.max_packet_size).unwrap_or(usize::MAX),
        committed: store.committed(),
        store,
        inbound,
        held: VecDeque::new(),
        stats,
        client,
        gate,
        conn: None,
        to_delete: Vec::new(),
        undeleted: HashSet::new(),
        newest_retained: HashMap::new(),
        offline: Offline::NotSent,
        ever_connected: false,
        warned: false,
        failures: 0,
        down_since: None,
    };
    forwarder.run(rx, shutdown).await
}

// ---------------------------------------------------------------------------
// The driver: owns the EventLoop.

/// What the driver reports.
#[derive(Debug)]
enum LoopMsg {
    /// CONNACK of the connection numbered `generation`.
    Connected { generation: u64 },
    /// Any other event of the current connection.
    Event(Event),
    /// The established connection failed; its buffered events came before.
    Lost { error: String },
    /// A connection attempt failed.
    ConnectFailed { error: String },
    /// Our DISCONNECT was written; the driver has stopped.
    Disconnected,
}

#[derive(Debug, Default)]
struct GateState {
    generation: u64,
    up: bool,
    open: bool,
}

/// Serializes "hand a packet to rumqttc" with "tear down a failed
/// connection", so a packet is either in the failed connection's channel
/// (and discarded with it) or waits for the forwarder to see the next
/// CONNACK.
#[derive(Debug, Default)]
struct Gate(Mutex<GateState>);

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver saw a CONNACK: a new generation, not yet open.
    fn connected(&self) -> u64 {
        let mut g = self.lock();
        g.generation += 1;
        g.up = true;
        g.open = false;
        g.generation
    }

    /// The forwarder has set up its book for `generation`: open, unless
    /// that connection is already gone.
    fn open(&self, generation: u64) -> bool {
        let mut g = self.lock();
        let current = g.up && g.generation == generation;
        if current {
            g.open = true;
        }
        current
    }

    /// Runs `f` (a `try_publish`) only while `generation` is open.
    fn with_open<T>(&self, generation: u64, f: impl FnOnce() -> T) -> Option<T> {
        let g = self.lock();
        (g.open && g.generation == generation).then(f)
    }

    /// The driver saw the established connection fail: close the gate and
    /// throw away everything rumqttc would replay. Returns the events
    /// rumqttc had buffered, which belong to the failed connection.
    fn lost(&self, eventloop: &mut EventLoop, id_space: u16) -> Vec<Event> {
        {
            let mut g = self.lock();
            g.up = false;
            g.open = false;
            // rumqttc already ran `clean` when it returned the error; this
            // second one moves what was handed over since into `pending`.
            eventloop.clean();
        }
        let buffered: Vec<Event> = eventloop.state.events.drain(..).collect();
        eventloop.pending.clear();
        eventloop.state = MqttState::new(id_space, false);
        buffered
    }
}

/// The next config hash, or `None` when its sender is gone.
async fn changed_hash(updates: &mut Option<watch::Receiver<String>>) -> Option<String> {
    let rx = updates.as_mut()?;
    rx.changed().await.ok()?;
    Some(rx.borrow_and_update().clone())
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn drive(
    mut eventloop: EventLoop,
    gate: Arc<Gate>,
    tx: mpsc::Sender<LoopMsg>,
    id_space: u16,
) {
    let mut backoff = BACKOFF_START;
    let mut up_since: Option<Instant> = None;
    loop {
        let was_up = eventloop.network.is_some();
        let msg = match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                up_since = Some(Instant::now());
                LoopMsg::Connected {
                    generation: gate.connected(),
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                let _ = tx.send(LoopMsg::Disconnected).await;
                return;
            }
            Ok(event) => LoopMsg::Event(event),
            Err(e) => {
                let error = explain(&e.to_string());
                let msg = if was_up {
                    for event in gate.lost(&mut eventloop, id_space) {
                        if tx.send(LoopMsg::Event(event)).await.is_err() {
                            return;
                        }
                    }
                    if up_since
                        .take()
                        .is_some_and(|t| t.elapsed() >= STABLE_CONNECTION)
                    {
                        backoff = BACKOFF_START;
                    }
                    LoopMsg::Lost { error }
                } else {
                    LoopMsg::ConnectFailed { error }
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
                if broker_absent(&e) {
                    // Nothing listens: asking again costs the broker's host
                    // nothing, and the backlog moves within a second of
                    // the broker's return instead of after up to 30 s.
                    backoff = BACKOFF_START;
                    tokio::time::sleep(BACKOFF_START).await;
                } else {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                continue;
            }
        };
        if tx.send(msg).await.is_err() {
            return;
        }
    }
}

/// A connection error with a hint for the causes a user can fix.
fn explain(error: &str) -> String {
    let hint = if error.contains("UnknownIssuer") {
        "the broker's certificate is not signed by a CA in [mqtt.tls] ca_file (or the system trust store)"
    } else if error.contains("NotValidForName") {
        "the broker's certificate does not name [mqtt] host"
    } else if error.contains("CertificateRequired") {
        "the broker requires a client certificate: set [mqtt.tls] cert_file and key_file"
    } else if error.contains("Expired") {
        "a certificate has expired (or the clock is wrong)"
    } else if error.contains("BadUserNamePassword") || error.contains("NotAuthorized") {
        "the broker refused the credentials: check [mqtt] username and password"
    } else {
        return error.to_string();
    };
    format!("{error} ({hint})")
}

// ---------------------------------------------------------------------------
// The pkid book of one connection.

/// Which stream a row went out in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Live,
    Backlog,
}

/// What was handed to rumqttc.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sent {
    Row { id: i64, stream: Stream },
    Online,
    Offline,
    Subscribe,
}

/// The packet that completes (or advances) a handed-over packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Await {
    PubAck,
    PubRec,
    PubComp,
    SubAck,
}

/// The exact map from packet id to what it carries, for one connection.
#[derive(Debug)]
struct Flight {
    /// rumqttc's packet ids run 1..=id_space.
    id_space: u16,
    /// The last id rumqttc gave out (0 on a fresh `MqttState`).
    last: u16,
    /// Handed over, id not yet seen, in hand-over order.
    queued: VecDeque<(Sent, Await)>,
    /// Written with this id, waiting for `Await`.
    slots: HashMap<u16, (Sent, Await)>,
    /// Rows in flight (queued or in slots) per stream.
    live: usize,
    backlog: usize,
}

impl Flight {
    fn new(id_space: u16) -> Flight {
        Flight {
            id_space: id_space.max(1),
            last: 0,
            queued: VecDeque::new(),
            slots: HashMap::new(),
            live: 0,
            backlog: 0,
        }
    }

    /// The id rumqttc will give the `k`-th packet from now (k ≥ 1).
    fn predicted(&self, k: usize) -> u16 {
        let space = usize::from(self.id_space);
        ((usize::from(self.last) + k - 1) % space + 1) as u16
    }

    /// How many more packets (up to `limit`) can be handed over without
    /// giving one an id that still names an unconfirmed message.
    fn free_run(&self, limit: usize) -> usize {
        let base = self.queued.len();
        let limit = limit.min(usize::from(self.id_space).saturating_sub(base));
        (1..=limit)
            .take_while(|i| !self.slots.contains_key(&self.predicted(base + i)))
            .count()
    }

    fn count(&mut self, sent: &Sent, delta: isize) {
        if let Sent::Row { stream, .. } = sent {
            let n = match stream {
                Stream::Live => &mut self.live,
                Stream::Backlog => &mut self.backlog,
            };
            *n = n.saturating_add_signed(delta);
        }
    }

    fn queue(&mut self, sent: Sent, wait: Await) {
        self.count(&sent, 1);
        self.queued.push_back((sent, wait));
    }

    /// `Outgoing::Publish(pkid)` or `Outgoing::Subscribe(pkid)`: the oldest
    /// queued packet got `pkid`.
    fn assigned(&mut self, pkid: u16) -> Option<&Sent> {
        let Some(entry) = self.queued.pop_front() else {
            warn!(
                pkid,
                "rumqttc sent a packet the forwarder did not hand over"
            );
            return None;
        };
        let predicted = self.predicted(1);
        if predicted != pkid {
            warn!(pkid, predicted, "packet id not as predicted");
        }
        self.last = pkid;
        if let Some(old) = self.slots.insert(pkid, entry) {
            // The guard makes this impossible; if it happens anyway, the
            // old message stays unconfirmed in the outbox and is sent again
            // after the next reconnect.
            error!(pkid, ?old, "packet id reused while in flight");
            self.count(&old.0, -1);
        }
        self.slots.get(&pkid).map(|(sent, _)| sent)
    }

    /// An acknowledgement: completes the packet waiting for `kind`.
    fn complete(&mut self, pkid: u16, kind: Await) -> Option<Sent> {
        match self.slots.get(&pkid) {
            Some((_, wait)) if *wait == kind => {}
            Some((sent, wait)) => {
                warn!(pkid, ?sent, ?wait, got = ?kind, "unexpected acknowledgement");
                return None;
            }
            None => {
                debug!(pkid, ?kind, "acknowledgement of an unknown packet id");
                return None;
            }
        }
        let (sent, _) = self.slots.remove(&pkid)?;
        self.count(&sent, -1);
        Some(sent)
    }

    /// PUBREC of a QoS 2 publish: now wait for PUBCOMP.
    fn received(&mut self, pkid: u16) {
        match self.slots.get_mut(&pkid) {
            Some((_, wait)) if *wait == Await::PubRec => *wait = Await::PubComp,
            other => debug!(pkid, ?other, "PUBREC of an unexpected packet id"),
        }
    }
}

// ---------------------------------------------------------------------------
// The two streams of one connection (pure).

/// Cursors of the live and backlog streams in the outbox.
#[derive(Debug, Clone, PartialEq)]
struct Streams {
    window: usize,
    live_cap: usize,
    backlog_cap: usize,
    /// The live stream has sent everything up to here (or passed it over).
    live_after: i64,
    /// The last live fetch came back short and nothing was committed since.
    live_dry: bool,
    /// Id ranges `(after, upto]` for the backlog, ascending and disjoint,
    /// all at or below `live_after`.
    backlog: VecDeque<(i64, i64)>,
}

/// The live stream's share of a window: at least one slot each when the
/// share is strictly between 0 and 1 and the window allows it.
fn live_cap(window: usize, live_share: f64) -> usize {
    let share = if live_share.is_finite() {
        live_share.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let cap = (window as f64 * share).round() as usize;
    let cap = cap.min(window);
    if window >= 2 && share > 0.0 && share < 1.0 {
        cap.clamp(1, window - 1)
    } else {
        cap
    }
}

impl Streams {
    /// At a CONNACK: everything up to `committed` is backlog.
    fn new(committed: i64, window: usize, live_share: f64) -> Streams {
        let committed = committed.max(0);
        let live_cap = live_cap(window, live_share);
        let mut backlog = VecDeque::new();
        if committed > 0 {
            backlog.push_back((0, committed));
        }
        Streams {
            window,
            live_cap,
            backlog_cap: window - live_cap,
            live_after: committed,
            live_dry: false,
            backlog,
        }
    }

    /// New rows were committed.
    fn new_commits(&mut self) {
        self.live_dry = false;
    }

    /// How many rows each stream may fetch now, given the rows in flight
    /// and `room`, the packets that may be handed over.
    fn quotas(&self, live_in: usize, backlog_in: usize, room: usize) -> (usize, usize) {
        let free = self.window.saturating_sub(live_in + backlog_in).min(room);
        let has_live = !self.live_dry;
        let has_backlog = !self.backlog.is_empty();
        let mut live = if has_live {
            self.live_cap.saturating_sub(live_in).min(free)
        } else {
            0
        };
        let mut backlog = if has_backlog {
            self.backlog_cap.saturating_sub(backlog_in).min(free - live)
        } else {
            0
        };
        let spare = free - live - backlog;
        if has_live && !has_backlog {
            live += spare;
        } else if has_backlog && !has_live {
            backlog += spare;
        }
        (live, backlog)
    }

    /// Whether the live stream, about to fetch `asked` rows with the newest
    /// committed id at `committed`, is behind: more rows may wait above its
    /// cursor than its share of the window and than it may send now. Then
    /// it fetches the newest rows (`fetch_newest`) and passes the others
    /// over to the backlog; otherwise it goes on in order (`fetch_after`),
    /// so a momentarily small quota (the backlog borrowed the window while
    /// no live data came) does not turn live rows into history.
    fn live_behind(&self, committed: i64, asked: usize) -> bool {
        let lag = u64::try_from(committed.saturating_sub(self.live_after)).unwrap_or(0);
        lag > self.live_cap.max(asked) as u64
    }

    /// The live stream asked for `asked` rows and got `rows` (oldest first),
    /// the newest ones if `newest`.
    fn live_fetched(&mut self, asked: usize, rows: &[Row], newest: bool) {
        if rows.len() < asked {
            self.live_dry = true;
        }
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return;
        };
        if newest && rows.len() == asked && first.id > self.live_after + 1 {
            // Possibly more rows between the cursor and the newest ones:
            // the live stream could not keep up; they become backlog.
            self.push_backlog(self.live_after, first.id - 1);
        }
        self.live_after = self.live_after.max(last.id);
    }

    fn push_backlog(&mut self, after: i64, upto: i64) {
        match self.backlog.back_mut() {
            Some(back) if back.1 == after => back.1 = upto,
            _ => self.backlog.push_back((after, upto)),
        }
    }

    /// Rows `first..=last` fetched by `stream` were not handed over: the
    /// backlog takes them (again).
    fn give_back(&mut self, stream: Stream, first: i64, last: i64) {
        match stream {
            // Above every backlog range: append.
            Stream::Live => self.push_backlog(first - 1, last),
            // Below the rest of the backlog: prepend.
            Stream::Backlog => self.backlog.push_front((first - 1, last)),
        }
    }

    /// The range the backlog drains next: `fetch_after(after, …)`, keeping
    /// ids `≤ upto`.
    fn backlog_next(&self) -> Option<(i64, i64)> {
        self.backlog.front().copied()
    }

    /// The backlog asked for `asked` rows after its cursor and got `rows`;
    /// returns how many of them (from the front) belong to the backlog.
    fn backlog_fetched(&mut self, asked: usize, rows: &[Row]) -> usize {
        let Some(front) = self.backlog.front_mut() else {
            return 0;
        };
        let upto = front.1;
        let n = rows.iter().take_while(|r| r.id <= upto).count();
        if let Some(last) = rows[..n].last() {
            front.0 = last.id;
        }
        if n < rows.len() || rows.len() < asked || front.0 >= upto {
            self.backlog.pop_front();
        }
        n
    }
}

// ---------------------------------------------------------------------------
// Publish-time payload changes (pure).

/// The payload with `"hist":true` as the first member, when it is a JSON
/// object; anything else unchanged.
fn with_hist(payload: Vec<u8>) -> Vec<u8> {
    let Some(open) = payload.iter().position(|b| !b.is_ascii_whitespace()) else {
        return payload;
    };
    if payload[open] != b'{' {
        return payload;
    }
    let rest = &payload[open + 1..];
    let empty = rest.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'}');
    let field: &[u8] = if empty {
        b"\"hist\":true"
    } else {
        b"\"hist\":true,"
    };
    let mut out = Vec::with_capacity(payload.len() + field.len());
    out.extend_from_slice(&payload[..=open]);
    out.extend_from_slice(field);
    out.extend_from_slice(rest);
    out
}

/// Size of a QoS 1/2 PUBLISH packet as rumqttc checks it against the
/// maximum packet size.
fn publish_packet_size(topic: &str, payload: usize) -> usize {
    let remaining = 2 + topic.len() + 2 + payload;
    let length_bytes = match remaining {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    };
    1 + length_bytes + remaining
}

fn row_qos(qos: u8) -> QoS {
    // QoS 0 has no confirmation, so the outbox could never delete the row:
    // anything but 2 goes out at QoS 1.
    if qos == 2 {
        QoS::ExactlyOnce
    } else {
        QoS::AtLeastOnce
    }
}

// ---------------------------------------------------------------------------
// The forwarder.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offline {
    NotSent,
    Sent,
    Acked,
}

/// One connection's state: dropped when the connection fails.
#[derive(Debug)]
struct Conn {
    generation: u64,
    flight: Flight,
    streams: Streams,
}

enum Handed {
    Yes,
    /// Not handed over, but the caller may go on with the next row.
    Skipped,
    /// Not handed over; stop for now (no connection or no packet id).
    Blocked,
}

struct Forwarder {
    info: StatusInfo,
    /// New config hashes after reloads.
    config_hash: Option<watch::Receiver<String>>,
    broker: String,
    status_topic: String,
    filters: Vec<String>,
    window: usize,
    live_share: f64,
    id_space: u16,
    max_packet: usize,
    committed: watch::Receiver<i64>,
    store: StoreHandle,
    inbound: mpsc::Sender<Inbound>,
    /// Inbound messages waiting for room in `inbound`, oldest first (at
    /// most [`INBOUND_HOLD`]).
    held: VecDeque<Inbound>,
    stats: Arc<ForwarderStats>,
    client: AsyncClient,
    gate: Arc<Gate>,
    conn: Option<Conn>,
    /// Confirmed rows whose delete has not succeeded yet.
    to_delete: Vec<i64>,
    undeleted: HashSet<i64>,
    /// Per topic, the newest retained row handed to the broker.
    newest_retained: HashMap<String, i64>,
    offline: Offline,
    ever_connected: bool,
    /// A warning was logged for the current outage.
    warned: bool,
    /// Failed attempts in the current outage.
    failures: u32,
    down_since: Option<Instant>,
}

impl Forwarder {
    async fn run(
        &mut self,
        mut rx: mpsc::Receiver<LoopMsg>,
        mut shutdown: Shutdown,
    ) -> Result<(), MqttError> {
        let far = || Instant::now() + Duration::from_secs(86_400);
        let mut stop_at: Option<Instant> = None;
        let mut store_open = true;
        let mut retry_at: Option<Instant> = None;
        let mut disconnect_sent = false;
        if shutdown.is_shutdown() {
            stop_at = Some(Instant::now() + OFFLINE_ACK_TIMEOUT);
        }
        loop {
            if let Some(deadline) = stop_at {
                if self.conn.is_none() || Instant::now() >= deadline {
                    break;
                }
                if self.offline == Offline::NotSent && self.send_offline() {
                    self.offline = Offline::Sent;
                }
                if self.offline == Offline::Acked && !disconnect_sent {
                    disconnect_sent = self.disconnect();
                    if !disconnect_sent {
                        break;
                    }
                    stop_at = Some(Instant::now() + DISCONNECT_TIMEOUT);
                }
            }
            let stopping = stop_at.is_some();
            tokio::select! {
                biased;
                _ = shutdown.recv(), if !stopping => {
                    debug!("forwarder stopping");
                    stop_at = Some(Instant::now() + OFFLINE_ACK_TIMEOUT);
                    continue;
                }
                msg = rx.recv() => {
                    let Some(msg) = msg else { break };
                    self.handle(msg);
                    for _ in 0..EVENT_BATCH {
                        match rx.try_recv() {
                            Ok(msg) => self.handle(msg),
                            Err(_) => break,
                        }
                    }
                }
                changed = self.committed.changed(), if store_open && !stopping => {
                    if changed.is_err() {
                        debug!("outbox closed: forwarder stopping");
                        store_open = false;
                        stop_at = Some(Instant::now() + OFFLINE_ACK_TIMEOUT);
                    } else if let Some(conn) = &mut self.conn {
                        conn.streams.new_commits();
                    }
                }
                changed = changed_hash(&mut self.config_hash), if self.config_hash.is_some() && !stopping => {
                    match changed {
                        Some(hash) => self.republish_status(hash),
                        None => self.config_hash = None,
                    }
                }
                // Owned: a borrowed permit would hold `self` across the
                // other branches' handlers.
                permit = self.inbound.clone().reserve_owned(), if !self.held.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(message) = self.held.pop_front() {
                                permit.send(message);
                                ForwarderStats::bump(&self.stats.inbound);
                            }
                            self.pass_held();
                        }
                        Err(_) => {
                            let n = self.held.len() as u64;
                            self.held.clear();
                            self.stats.inbound_dropped.fetch_add(n, Ordering::Relaxed);
                            debug!(dropped = n, "held inbound messages dropped: nobody consumes inbound messages");
                        }
                    }
                }
                _ = tokio::time::sleep_until(stop_at.unwrap_or_else(far).into()), if stopping => {}
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(far).into()), if retry_at.is_some() => {
                    retry_at = None;
                }
            }
            let mut result = self.flush_deletes().await;
            if result.is_ok() && stop_at.is_none() && retry_at.is_none() {
                result = self.refill().await;
            }
            match result {
                Ok(()) => {}
                Err(StoreError::Closed) => {
                    if store_open {
                        debug!("outbox closed: forwarder stopping");
                    }
                    store_open = false;
                    stop_at.get_or_insert_with(|| Instant::now() + OFFLINE_ACK_TIMEOUT);
                }
                Err(e) => {
                    error!(error = %e, "outbox error; retrying in {:?}", STORE_RETRY);
                    self.stats.set_error(format!("outbox: {e}"));
                    retry_at = Some(Instant::now() + STORE_RETRY);
                }
            }
        }
        if let Err(e) = self.flush_deletes().await {
            debug!(error = %e, rows = self.to_delete.len(), "confirmed rows not deleted at stop; they will be sent again");
        }
        self.conn = None;
        self.stats.connected.store(false, Ordering::Relaxed);
        Ok(())
    }

    fn handle(&mut self, msg: LoopMsg) {
        match msg {
            LoopMsg::Connected { generation } => self.connected(generation),
            LoopMsg::Event(event) => self.event(event),
            LoopMsg::Lost { error } => {
                let in_flight = self
                    .conn
                    .take()
                    .map_or(0, |c| c.flight.live + c.flight.backlog);
                self.stats.connected.store(false, Ordering::Relaxed);
                self.stats.set_error(error.clone());
                warn!(broker = %self.broker, %error, in_flight, "connection to the MQTT broker lost; unconfirmed messages will be sent again");
                self.warned = true;
                self.failures = 0;
                self.down_since = Some(Instant::now());
            }
            LoopMsg::ConnectFailed { error } => {
                self.stats.set_error(error.clone());
                self.failures += 1;
                self.down_since.get_or_insert_with(Instant::now);
                if self.warned {
                    debug!(broker = %self.broker, %error, attempt = self.failures, "MQTT connection attempt failed");
                } else {
                    warn!(broker = %self.broker, %error, "cannot connect to the MQTT broker; retrying (every 1 s up to every 30 s)");
                    self.warned = true;
                }
            }
            LoopMsg::Disconnected => {
                self.conn = None;
            }
        }
    }

    /// A reload changed the config: say so in the retained status.
    fn republish_status(&mut self, hash: String) {
        if hash == self.info.config {
            return;
        }
        self.info.config = hash;
        if self.conn.is_none() {
            // The next CONNACK publishes it.
            return;
        }
        let online = status::online(&self.info, SystemTime::now());
        let topic = self.status_topic.clone();
        if !matches!(
            self.hand_over(topic, QoS::AtLeastOnce, true, online, Sent::Online),
            Handed::Yes
        ) {
            warn!("could not republish the online status after a reload");
        }
    }

    fn connected(&mut self, generation: u64) {
        let committed = *self.committed.borrow_and_update();
        self.conn = Some(Conn {
            generation,
            flight: Flight::new(self.id_space),
            streams: Streams::new(committed, self.window, self.live_share),
        });
        if !self.gate.open(generation) {
            // Already lost again; the Lost message follows.
            self.conn = None;
            return;
        }
        self.stats.connected.store(true, Ordering::Relaxed);
        if self.ever_connected {
            ForwarderStats::bump(&self.stats.reconnects);
            let down = self.down_since.map(|t| t.elapsed()).unwrap_or_default();
            info!(broker = %self.broker, down = ?down, failed_attempts = self.failures, backlog_upto = committed, "reconnected to the MQTT broker");
        } else {
            info!(broker = %self.broker, backlog_upto = committed, "connected to the MQTT broker");
        }
        self.ever_connected = true;
        self.warned = false;
        self.failures = 0;
        self.down_since = None;

        let online = status::online(&self.info, SystemTime::now());
        let topic = self.status_topic.clone();
        if !matches!(
            self.hand_over(topic, QoS::AtLeastOnce, true, online, Sent::Online),
            Handed::Yes
        ) {
            warn!("could not publish the online status");
        }
        self.subscribe();
    }

    fn subscribe(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if conn.flight.free_run(1) == 0 {
            warn!("no packet id free for the inbound subscription");
            return;
        }
        let filters: Vec<SubscribeFilter> = self
            .filters
            .iter()
            .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce))
            .collect();
        let client = &self.client;
        match self
            .gate
            .with_open(conn.generation, || client.try_subscribe_many(filters))
        {
            Some(Ok(())) => conn.flight.queue(Sent::Subscribe, Await::SubAck),
            Some(Err(e)) => error!(error = %e, "could not subscribe to the inbound topics"),
            None => {}
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Incoming(Incoming::Publish(p)) => self.inbound(Inbound {
                topic: p.topic,
                payload: p.payload.to_vec(),
                retain: p.retain,
            }),
            Event::Incoming(Incoming::PubAck(ack)) => self.complete(ack.pkid, Await::PubAck),
            Event::Incoming(Incoming::PubRec(rec)) => {
                if let Some(conn) = &mut self.conn {
                    conn.flight.received(rec.pkid);
                }
            }
            Event::Incoming(Incoming::PubComp(comp)) => self.complete(comp.pkid, Await::PubComp),
            Event::Incoming(Incoming::SubAck(ack)) => {
                self.complete(ack.pkid, Await::SubAck);
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    warn!(filters = ?self.filters, codes = ?ack.return_codes, "the broker refused an inbound subscription");
                }
            }
            Event::Outgoing(Outgoing::Publish(pkid) | Outgoing::Subscribe(pkid)) => {
                let Some(conn) = &mut self.conn else {
                    return;
                };
                if let Some(Sent::Row { .. }) = conn.flight.assigned(pkid) {
                    ForwarderStats::bump(&self.stats.published);
                }
            }
            Event::Outgoing(Outgoing::AwaitAck(pkid)) => {
                debug!(
                    pkid,
                    "rumqttc waits for an acknowledgement (packet id collision)"
                );
            }
            _ => {}
        }
    }

    fn complete(&mut self, pkid: u16, kind: Await) {
        let Some(conn) = &mut self.conn else {
            return;
        };
        match conn.flight.complete(pkid, kind) {
            Some(Sent::Row { id, .. }) => {
                ForwarderStats::bump(&self.stats.acked);
                self.to_delete.push(id);
                self.undeleted.insert(id);
            }
            Some(Sent::Offline) => self.offline = Offline::Acked,
            Some(Sent::Online | Sent::Subscribe) | None => {}
        }
    }

    /// Passes an inbound message on. When the channel is full (the rules
    /// are busy, or restarting for a reload) it is held here, in order,
    /// and passed on as room appears: rumqttc has already acknowledged it
    /// to the broker, so dropping it would lose a CMMS's `closed` or an
    /// operator's ack. Only beyond [`INBOUND_HOLD`] waiting messages is one
    /// dropped (counted, with a warning).
    fn inbound(&mut self, message: Inbound) {
        if !self.held.is_empty() {
            self.hold(message);
            self.pass_held();
            return;
        }
        match self.inbound.try_send(message) {
            Ok(()) => ForwarderStats::bump(&self.stats.inbound),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                debug!(topic = %msg.topic, "inbound channel full; holding the message");
                self.hold(msg);
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                ForwarderStats::bump(&self.stats.inbound_dropped);
                debug!(topic = %msg.topic, "inbound message dropped: nobody consumes inbound messages");
            }
        }
    }

    fn hold(&mut self, message: Inbound) {
        if self.held.len() < INBOUND_HOLD {
            self.held.push_back(message);
        } else {
            let dropped = self.stats.inbound_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(topic = %message.topic, dropped, held = self.held.len(), "inbound message dropped: its consumer is not keeping up");
        }
    }

    /// Passes on held messages while the channel has room.
    fn pass_held(&mut self) {
        while let Some(message) = self.held.pop_front() {
            match self.inbound.try_send(message) {
                Ok(()) => ForwarderStats::bump(&self.stats.inbound),
                Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => {
                    self.held.push_front(m);
                    return;
                }
            }
        }
    }

    /// Hands one publish to rumqttc and records it in the book.
    fn hand_over(
        &mut self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
        sent: Sent,
    ) -> Handed {
        let Some(conn) = self.conn.as_mut() else {
            return Handed::Blocked;
        };
        if conn.flight.free_run(1) == 0 {
            return Handed::Blocked;
        }
        let client = &self.client;
        match self.gate.with_open(conn.generation, || {
            client.try_publish(topic, qos, retain, payload)
        }) {
            Some(Ok(())) => {
                let wait = if qos == QoS::ExactlyOnce {
                    Await::PubRec
                } else {
                    Await::PubAck
                };
                conn.flight.queue(sent, wait);
                Handed::Yes
            }
            Some(Err(e)) => {
                // Cannot happen: the channel is larger than the window and
                // topics are checked first.
                error!(error = %e, "rumqttc refused a publish");
                Handed::Blocked
            }
            None => Handed::Blocked,
        }
    }

    fn publish_row(&mut self, row: Row, stream: Stream) -> Handed {
        if self.undeleted.contains(&row.id) {
            return Handed::Skipped;
        }
        let payload = match stream {
            Stream::Live => row.payload,
            Stream::Backlog => with_hist(row.payload),
        };
        let size = publish_packet_size(&row.topic, payload.len());
        if row.topic.is_empty() || !rumqttc::valid_topic(&row.topic) || size > self.max_packet {
            ForwarderStats::bump(&self.stats.skipped);
            error!(id = row.id, topic = %row.topic, size, max_packet_size = self.max_packet,
                "outbox row can never be published (too large for max_packet_size or invalid topic); skipped, left in the outbox");
            return Handed::Skipped;
        }
        let newest = self.newest_retained.get(&row.topic).copied();
        let retain =
            row.retain && !(stream == Stream::Backlog && newest.is_some_and(|n| n > row.id));
        let sent = Sent::Row { id: row.id, stream };
        let handed = self.hand_over(row.topic.clone(), row_qos(row.qos), retain, payload, sent);
        if matches!(handed, Handed::Yes) && retain && newest.is_none_or(|n| n < row.id) {
            self.newest_retained.insert(row.topic, row.id);
        }
        handed
    }

    fn send_offline(&mut self) -> bool {
        let payload = status::offline(&self.info, Some(SystemTime::now()));
        let topic = self.status_topic.clone();
        matches!(
            self.hand_over(topic, QoS::AtLeastOnce, true, payload, Sent::Offline),
            Handed::Yes
        )
    }

    fn disconnect(&mut self) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        let client = &self.client;
        matches!(
            self.gate
                .with_open(conn.generation, || client.try_disconnect()),
            Some(Ok(()))
        )
    }

    async fn flush_deletes(&mut self) -> Result<(), StoreError> {
        if self.to_delete.is_empty() {
            return Ok(());
        }
        self.store.delete(self.to_delete.clone()).await?;
        for id in self.to_delete.drain(..) {
            self.undeleted.remove(&id);
        }
        Ok(())
    }

    /// Fills the window from the outbox, live stream first.
    async fn refill(&mut self) -> Result<(), StoreError> {
        // Under a steady stream of acks the event branch of the main
        // `select!` is always ready: look at new commits here too.
        if self.committed.has_changed().unwrap_or(false) {
            self.committed.borrow_and_update();
            if let Some(conn) = &mut self.conn {
                conn.streams.new_commits();
            }
        }
        for _ in 0..8 {
            let Some(conn) = &self.conn else {
                return Ok(());
            };
            let room = conn.flight.free_run(self.window);
            let (live, backlog) = conn
                .streams
                .quotas(conn.flight.live, conn.flight.backlog, room);
            let backlog_range = conn.streams.backlog_next();
            let after = conn.streams.live_after;
            if live == 0 && backlog == 0 {
                return Ok(());
            }
            if live > 0 {
                let committed = *self.committed.borrow();
                let newest = conn.streams.live_behind(committed, live);
                let rows = if newest {
                    self.store.fetch_newest(after, live).await?
                } else {
                    self.store.fetch_after(after, live).await?
                };
                let Some(conn) = &mut self.conn else {
                    return Ok(());
                };
                conn.streams.live_fetched(live, &rows, newest);
                if !self.publish_rows(rows, Stream::Live) {
                    return Ok(());
                }
            }
            if let (true, Some((after, _))) = (backlog > 0, backlog_range) {
                let rows = self.store.fetch_after(after, backlog).await?;
                let Some(conn) = &mut self.conn else {
                    return Ok(());
                };
                let n = conn.streams.backlog_fetched(backlog, &rows);
                let rows = rows.into_iter().take(n).collect();
                if !self.publish_rows(rows, Stream::Backlog) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Hands rows over in order; false when one could not be (the
    /// connection is gone, or, which the quotas rule out, no packet id or
    /// channel slot was free). Rows not handed over go back to the backlog
    /// so the cursors stay exact.
    fn publish_rows(&mut self, rows: Vec<Row>, stream: Stream) -> bool {
        let mut rows = rows.into_iter();
        while let Some(row) = rows.next() {
            let first = row.id;
            if let Handed::Blocked = self.publish_row(row, stream) {
                let last = rows.last().map_or(first, |r| r.id);
                if let Some(conn) = &mut self.conn {
                    conn.streams.give_back(stream, first, last);
                }
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_tcp_connection_is_retried_at_once() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(broker_absent(&ConnectionError::Io(refused)));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(!broker_absent(&ConnectionError::Io(reset)));
        assert!(!broker_absent(&ConnectionError::NetworkTimeout));
        assert!(!broker_absent(&ConnectionError::ConnectionRefused(
            rumqttc::ConnectReturnCode::NotAuthorized
        )));
    }
    use crate::store::Kind;

    fn row(id: i64) -> Row {
        Row {
            id,
            topic: "t".into(),
            seq: id as u64,
            payload: b"{}".to_vec(),
            qos: 1,
            retain: false,
            kind: Kind::Reading,
            created_at: SystemTime::UNIX_EPOCH,
        }
    }

    fn rows(ids: impl IntoIterator<Item = i64>) -> Vec<Row> {
        ids.into_iter().map(row).collect()
    }

    #[test]
    fn hist_is_injected_into_json_objects_only() {
        assert_eq!(
            with_hist(br#"{"ts":"x","seq":1}"#.to_vec()),
            br#"{"hist":true,"ts":"x","seq":1}"#.to_vec()
        );
        assert_eq!(with_hist(b"{}".to_vec()), br#"{"hist":true}"#.to_vec());
        assert_eq!(
            with_hist(b"  { }".to_vec()),
            br#"  {"hist":true }"#.to_vec()
        );
        assert_eq!(with_hist(b"[1,2]".to_vec()), b"[1,2]".to_vec());
        assert_eq!(with_hist(Vec::new()), Vec::<u8>::new());
        let v: serde_json::Value =
            serde_json::from_slice(&with_hist(br#"{"a":{"b":1}}"#.to_vec())).unwrap();
        assert_eq!(v["hist"], true);
        assert_eq!(v["a"]["b"], 1);
    }

    #[test]
    fn errors_get_a_hint() {
        let e = explain("TLS: I/O: invalid peer certificate: UnknownIssuer");
        assert!(e.starts_with("TLS: I/O: invalid peer certificate: UnknownIssuer ("));
        assert!(e.contains("ca_file"));
        assert_eq!(
            explain("I/O: Connection refused (os error 111)"),
            "I/O: Connection refused (os error 111)"
        );
    }

    #[test]
    fn packet_size_matches_rumqttc() {
        for (topic, len) in [
            ("a/b", 0usize),
            ("x", 120),
            ("data/p1", 20_000),
            ("t", 3 << 20),
        ] {
            let mut p = rumqttc::Publish::new(topic, QoS::AtLeastOnce, vec![0u8; len]);
            p.pkid = 1;
            assert_eq!(
                publish_packet_size(topic, len),
                rumqttc::Packet::Publish(p).size(),
                "{topic} {len}"
            );
        }
    }

    #[test]
    fn pkid_prediction_follows_rumqttc() {
        let mut state = MqttState::new(5, false);
        let mut flight = Flight::new(5);
        for i in 0..23i64 {
            let predicted = flight.predicted(1);
            let mut p = rumqttc::Publish::new("t", QoS::AtLeastOnce, vec![]);
            p.pkid = 0;
            state
                .handle_outgoing_packet(rumqttc::Request::Publish(p))
                .unwrap();
            let Some(Event::Outgoing(Outgoing::Publish(pkid))) = state.events.pop_back() else {
                panic!("no publish event")
            };
            assert_eq!(pkid, predicted, "publish {i}");
            flight.queue(
                Sent::Row {
                    id: i,
                    stream: Stream::Live,
                },
                Await::PubAck,
            );
            assert_eq!(
                flight.assigned(pkid),
                Some(&Sent::Row {
                    id: i,
                    stream: Stream::Live
                })
            );
            state
                .handle_incoming_packet(Incoming::PubAck(rumqttc::PubAck::new(pkid)))
                .unwrap();
            assert_eq!(
                flight.complete(pkid, Await::PubAck),
                Some(Sent::Row {
                    id: i,
                    stream: Stream::Live
                })
            );
        }
        assert_eq!(flight.live, 0);
    }

    #[test]
    fn guard_holds_back_ids_still_in_flight() {
        let mut flight = Flight::new(4);
        for id in 0..3 {
            flight.queue(
                Sent::Row {
                    id,
                    stream: Stream::Backlog,
                },
                Await::PubRec,
            );
        }
        assert_eq!(flight.free_run(10), 1); // ids 1..3 queued, 4 free
        for pkid in 1..=3 {
            flight.assigned(pkid);
        }
        assert_eq!(flight.free_run(10), 1); // next ids 4, then 1 (taken)
        flight.received(1);
        assert_eq!(flight.free_run(10), 1, "PUBREC does not free the id");
        assert_eq!(
            flight.complete(1, Await::PubComp),
            Some(Sent::Row {
                id: 0,
                stream: Stream::Backlog
            })
        );
        assert_eq!(flight.free_run(10), 2); // 4 and 1; 2 still taken
        assert_eq!(flight.backlog, 2);
        // A PUBACK for a QoS 2 message is refused.
        assert_eq!(flight.complete(2, Await::PubAck), None);
        assert_eq!(flight.backlog, 2);
    }

    #[test]
    fn acks_map_to_the_rows_in_hand_over_order() {
        let mut flight = Flight::new(208);
        flight.queue(Sent::Online, Await::PubAck);
        flight.queue(Sent::Subscribe, Await::SubAck);
        for id in [7, 9, 12] {
            flight.queue(
                Sent::Row {
                    id,
                    stream: Stream::Backlog,
                },
                Await::PubAck,
            );
        }
        for pkid in 1..=5 {
            flight.assigned(pkid);
        }
        assert_eq!(flight.complete(2, Await::SubAck), Some(Sent::Subscribe));
        assert_eq!(
            flight.complete(4, Await::PubAck),
            Some(Sent::Row {
                id: 9,
                stream: Stream::Backlog
            })
        );
        assert_eq!(flight.complete(4, Await::PubAck), None, "only once");
        assert_eq!(flight.complete(1, Await::PubAck), Some(Sent::Online));
        assert_eq!(flight.backlog, 2);
    }

    #[test]
    fn live_share_splits_the_window() {
        assert_eq!(live_cap(100, 0.5), 50);
        assert_eq!(live_cap(100, 0.0), 0);
        assert_eq!(live_cap(100, 1.0), 100);
        assert_eq!(live_cap(100, 0.001), 1);
        assert_eq!(live_cap(100, 0.999), 99);
        assert_eq!(live_cap(1, 0.5), 1);
        assert_eq!(live_cap(1, 0.4), 0);
    }

    #[test]
    fn quotas_share_and_lend() {
        let mut s = Streams::new(1000, 100, 0.5);
        assert_eq!(s.backlog_next(), Some((0, 1000)));
        assert_eq!(s.quotas(0, 0, 100), (50, 50));
        assert_eq!(s.quotas(50, 10, 100), (0, 40));
        assert_eq!(s.quotas(0, 0, 30), (30, 0), "packet ids first to live");
        // Live has nothing: the backlog borrows the whole window.
        s.live_fetched(50, &[], false);
        assert!(s.live_dry);
        assert_eq!(s.quotas(0, 0, 100), (0, 100));
        assert_eq!(s.quotas(0, 70, 100), (0, 30));
        // New rows: live takes its share back as slots free up.
        s.new_commits();
        assert_eq!(s.quotas(0, 100, 100), (0, 0));
        assert_eq!(s.quotas(0, 90, 100), (10, 0));
        // Backlog drained: live may use the whole window.
        s.backlog.clear();
        assert_eq!(s.quotas(0, 0, 100), (100, 0));
        s.live_fetched(100, &rows(1001..=1003), false);
        assert_eq!(s.quotas(0, 0, 100), (0, 0), "nothing to do");
    }

    #[test]
    fn live_only_and_backlog_only_shares() {
        let s = Streams::new(10, 20, 0.0);
        assert_eq!(s.quotas(0, 0, 20), (0, 20));
        let mut s = Streams::new(10, 20, 1.0);
        assert_eq!(s.quotas(0, 0, 20), (20, 0));
        s.live_fetched(20, &[], false);
        assert_eq!(s.quotas(0, 0, 20), (0, 20));
        let mut s = Streams::new(10, 20, 0.0);
        s.backlog.clear();
        assert_eq!(
            s.quotas(0, 0, 20),
            (20, 0),
            "live borrows when the backlog is done"
        );
    }

    #[test]
    fn live_stream_passes_rows_over_to_the_backlog() {
        let mut s = Streams::new(100, 10, 0.5);
        assert!(!s.live_behind(104, 5), "5 waiting: in order");
        assert!(!s.live_behind(103, 2), "3 waiting, share 5: in order");
        assert!(s.live_behind(154, 5));
        // Live asks for the 5 newest: 100 < id < 150 were passed over.
        s.live_fetched(5, &rows(150..=154), true);
        assert_eq!(s.live_after, 154);
        assert_eq!(
            s.backlog,
            VecDeque::from([(0, 149)]),
            "merged with (0, 100]"
        );
        // A short answer: nothing passed over.
        s.live_fetched(5, &rows(155..=156), true);
        assert_eq!(s.live_after, 156);
        assert!(s.live_dry);
        s.new_commits();
        // In order: a full answer passes nothing over.
        s.live_fetched(2, &rows(157..=158), false);
        assert_eq!(s.backlog, VecDeque::from([(0, 149)]));
        s.live_fetched(5, &rows(300..=304), true);
        assert_eq!(s.backlog, VecDeque::from([(0, 149), (158, 299)]));
        // The backlog drains its ranges in order and never beyond them.
        assert_eq!(s.backlog_fetched(5, &rows([1, 2, 3, 4, 5])), 5);
        assert_eq!(s.backlog_next(), Some((5, 149)));
        assert_eq!(s.backlog_fetched(5, &rows([148, 149, 150, 151, 152])), 2);
        assert_eq!(s.backlog_next(), Some((158, 299)));
        assert_eq!(s.backlog_fetched(5, &rows([159, 299])), 2);
        assert_eq!(s.backlog_next(), None);
    }

    #[test]
    fn backlog_range_ends_exactly_at_its_upper_id() {
        let mut s = Streams::new(3, 10, 0.5);
        assert_eq!(s.backlog_fetched(3, &rows([1, 2, 3])), 3);
        assert_eq!(s.backlog_next(), None);
        let mut s = Streams::new(0, 10, 0.5);
        assert_eq!(s.backlog_next(), None);
        assert_eq!(s.backlog_fetched(3, &rows([1])), 0);
    }

    #[test]
    fn nothing_is_sent_twice_within_a_connection() {
        // Simulate the streams against an outbox that grows while both
        // streams run, and check every id is sent exactly once, each
        // stream in increasing order.
        let mut outbox: Vec<i64> = (1..=500).collect();
        let mut s = Streams::new(500, 16, 0.5);
        let mut sent_live = Vec::new();
        let mut sent_backlog = Vec::new();
        let mut next = 501;
        for round in 0..400 {
            // 0–15 new rows per round: sometimes more than live can take.
            for _ in 0..(round * 7 % 16) {
                outbox.push(next);
                next += 1;
            }
            s.new_commits();
            let (live, backlog) = s.quotas(0, 0, 16);
            if live > 0 {
                let newer: Vec<i64> = outbox
                    .iter()
                    .copied()
                    .filter(|&i| i > s.live_after)
                    .collect();
                let newest = s.live_behind(next - 1, live);
                let got = if newest {
                    rows(newer[newer.len().saturating_sub(live)..].to_vec())
                } else {
                    rows(newer.into_iter().take(live).collect::<Vec<_>>())
                };
                s.live_fetched(live, &got, newest);
                sent_live.extend(got.iter().map(|r| r.id));
            }
            if let (true, Some((after, _))) = (backlog > 0, s.backlog_next()) {
                let got = rows(
                    outbox
                        .iter()
                        .copied()
                        .filter(|&i| i > after)
                        .take(backlog)
                        .collect::<Vec<_>>(),
                );
                let n = s.backlog_fetched(backlog, &got);
                sent_backlog.extend(got[..n].iter().map(|r| r.id));
            }
        }
        assert!(sent_live.windows(2).all(|w| w[0] < w[1]));
        assert!(sent_backlog.windows(2).all(|w| w[0] < w[1]));
        let mut all: Vec<i64> = sent_live.iter().chain(&sent_backlog).copied().collect();
        all.sort();
        let unique: HashSet<i64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "an id was sent twice");
        assert_eq!(all, (1..next).collect::<Vec<_>>(), "an id was never sent");
        assert!(
            sent_backlog.iter().any(|&i| i > 500),
            "live passed rows over"
        );
    }
}
