//! The forwarder: owns the MQTT client, publishes the outbox and deletes a
//! row only once the broker has confirmed it (a row deleted when it is
//! handed over would be lost with a connection that fails before the broker
//! has it).
//!
//! # Tasks and ownership
//!
//! [`run`] spawns one task, the *driver*, that owns rumqttc's `EventLoop`
//! and polls it all the time (in rumqttc, polling is what moves packets and
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
//!   and hands the rows it passes over to the backlog. The forwarder reads
//!   only the outbox's JSON lane (`store::Lane::Json`); the Sparkplug rows
//!   take ids in the same order, so the id distance above the cursor only
//!   bounds the rows waiting: when it says "behind", the newest rows are
//!   fetched one beyond the share, and a shorter answer means it is not.
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
//! # Inbound: acknowledged once handled
//!
//! On every CONNACK the forwarder subscribes (QoS 1) to
//! [`Topics::inbound_filters`], reads each incoming publish into a typed
//! request and passes it, with a [`Handled`] token, to the bounded
//! `mpsc::Sender<Inbound>` it was given ([`INBOUND_CAPACITY`] is the
//! suggested size). rumqttc runs with manual acks: a QoS 1 message is
//! acknowledged (PUBACK) only once the pipeline has applied its request
//! and the store has committed what that produced, which the pipeline
//! says by completing the token. The forwarder never touches the store
//! for this; it waits on the tokens.
//!
//! * **Order.** MQTT 3.1.1 §4.6 asks for PUBACKs in the order the PUBLISHes
//!   arrived (rumqttd disconnects a client that does otherwise), so the
//!   messages of a connection wait in receipt order (`acks::Receipts`): one
//!   handled early is acknowledged when every message before it is.
//! * **Nothing to apply.** A malformed message, a retained ack or shelve
//!   request, an empty (clearing) message, a topic that is not ours or a
//!   write command (see below) is judged at once and acknowledged in its turn: otherwise the broker would
//!   send it again at every connection. (An unknown rule or work order is
//!   judged by the pipeline, and its token completed, in the same way.)
//! * **Not handled.** A token dropped without completion (the pipeline
//!   stopped or failed before its commit) is passed on again, keeping its
//!   place in the ack order (three passes at most); after that, or if
//!   nobody consumes requests, the message stays unacknowledged, and so do
//!   the messages after it, until the next connection.
//! * **Stop and reconnect.** When the forwarder stops, or its connection
//!   fails, the messages not acknowledged yet are never acknowledged: the
//!   session is persistent (`clean_session = false` under the configured,
//!   stable `client_id`), so the broker sends them again on the next
//!   connection, and the pipeline applies them then. A request applied
//!   twice that way is harmless: an ack of an acknowledged alarm or a status
//!   the work order already has changes nothing. Requests held or in the
//!   channel when a connection fails are still passed on (a broker that lost
//!   the session would not send them again).
//!
//! The forwarder never waits on the channel (the MQTT session must go
//! on): when it is full a request is held, in order, and passed on as room
//! appears. Beyond [`INBOUND_HOLD`] held requests one is dropped, with a
//! warning, and counted in [`ForwarderStats::inbound_dropped`]; its message
//! is then not acknowledged (the broker sends it again after the next
//! connection). Brokers limit the messages in flight to a client far below
//! that (rumqttd 100, Mosquitto 20 by default), so this does not happen in
//! practice. A QoS 0 message has no acknowledgement: it is passed on
//! without a token.
//!
//! # Write commands: at most once, never from the broker's copies
//!
//! A message on `cmd/{device}/{tag}` ([`Topics::command_filter`], one of
//! the inbound filters) is read into a [`WriteCommand`] and handed, as a
//! [`WriteOrder`] nobody waits on, to the write desk's channel (the
//! `writes` of [`run_with_updates`]), never to the inbound channel: the
//! rules stage has nothing to do with it, and the desk publishes its
//! result. Unlike the other requests, a command is not acknowledged once
//! handled but judged at once: its QoS 1 message is acknowledged in its
//! turn whatever becomes of it, and it is never passed on again. A write
//! is made at most once; a message the broker sends again must not write
//! again (a pulse or a counter reset is not idempotent).
//!
//! The desk refuses, as stale, a command the broker kept rather than one
//! someone sends now, so the forwarder says how each arrived
//! ([`Delivery`]):
//!
//! * **Retained**: the message has the retain flag (the broker's retained
//!   copy, sent because we subscribed).
//! * **Queued**: it arrived on a connection before the SUBACK of that
//!   connection's inbound subscription, or carries the DUP flag. The
//!   session is persistent, so the broker keeps the subscription while the
//!   gateway is away, queues the commands published meanwhile, and sends
//!   them right after the CONNACK, before our SUBSCRIBE of the new
//!   connection is acknowledged; a message with DUP is one the broker sent
//!   before. (A command published live in the round trip between the
//!   CONNACK and the SUBACK is refused the same way; its sender gets the
//!   refusal and may send it again.) A command that arrived while the
//!   connection was up and was not acknowledged before it failed comes
//!   back this way too, and is refused rather than written twice.
//! * **Live**: everything else.
//!
//! The forwarder never waits on the desk: a command that finds its channel
//! full or closed (or no channel: [`run`]) is dropped, unanswered, counted
//! in [`ForwarderStats::writes_dropped`], with a warning at most every
//! [`WRITE_WARN_INTERVAL`]; handed-over ones are counted in
//! [`ForwarderStats::writes`].
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
//!
//! # Layout
//!
//! * `acks`: the [`Inbound`] request and its [`Handled`] token, and the
//!   receipt order of the acks (pure).
//! * `book`: the packet-id book of one connection (pure).
//! * `streams`: the live and backlog cursors and the `hist` marking (pure).
//! * `task`: the forwarder task: events, publishes, deletes, inbound and
//!   its acks.

mod acks;
mod book;
mod streams;
mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch};

use super::client::{MqttError, mqtt_options};
use crate::command::WriteOrder;
#[cfg(doc)]
use crate::command::{Delivery, WriteCommand};
use crate::config::{Config, MqttConfig};
use crate::contract::status::{StatusInfo, StoreInfo};
use crate::contract::topics::Topics;
use crate::shutdown::Shutdown;
use crate::store::{StoreHandle, StoreIdentity, StoreStart};
use task::{Channels, Forwarder};

/// Capacity of the inbound channel (the gateway makes it with this): acks, shelve requests and
/// work-order updates are rare; beyond this many waiting, new ones are held
/// by the forwarder (up to [`INBOUND_HOLD`]), then dropped (counted, and
/// left unacknowledged for the broker to send again).
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

/// How long a stop waits for the PUBACK of the `offline` status.
pub const OFFLINE_ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a stop waits for the DISCONNECT to be written.
pub const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// At most one warning per this interval about write commands dropped
/// (the write desk's channel full or closed); the others are counted in
/// [`ForwarderStats::writes_dropped`] and logged at debug level.
pub const WRITE_WARN_INTERVAL: Duration = Duration::from_secs(10);

pub use acks::{Handled, Inbound};

/// Acks handed to rumqttc and not yet sent, at most: its request channel
/// is made this much larger than the publishes need, so an ack never takes
/// a publish's place.
pub(crate) const ACK_ROOM: usize = 64;

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
    /// The store's identity published in the status; [`run`] fills it
    /// from the store it is given when `None`.
    pub store: Option<StoreInfo>,
}

impl ForwarderConfig {
    /// The forwarder's part of a configuration.
    pub fn from_config(config: &Config, started: SystemTime) -> ForwarderConfig {
        ForwarderConfig {
            mqtt: config.mqtt.clone(),
            topics: Topics::of(config),
            config_hash: config.hash.clone(),
            started,
            store: None,
        }
    }

    /// What the status messages say.
    pub fn status_info(&self) -> StatusInfo {
        StatusInfo {
            store: self.store.clone(),
            ..StatusInfo::new(self.config_hash.clone(), self.started)
        }
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
    /// Inbound requests passed on (a request passed on again after it was
    /// not handled counts again).
    pub inbound: AtomicU64,
    /// Inbound requests dropped: [`INBOUND_HOLD`] were already held for
    /// a full inbound channel, or nobody consumes inbound requests. Their
    /// messages are not acknowledged.
    pub inbound_dropped: AtomicU64,
    /// Outbox rows skipped because they can never be sent (too large,
    /// invalid topic); counted each time they are met.
    pub skipped: AtomicU64,
    /// Write commands handed to the write desk.
    pub writes: AtomicU64,
    /// Write commands dropped: the write desk's channel was full or
    /// closed, or the forwarder was given none. Nothing was written and
    /// no result was published for them.
    pub writes_dropped: AtomicU64,
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
/// built (TLS files); connection errors are retried forever. Write
/// commands are dropped (no write desk): see [`run_with_updates`].
pub async fn run(
    cfg: ForwarderConfig,
    store: StoreHandle,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<ForwarderStats>,
    shutdown: Shutdown,
) -> Result<(), MqttError> {
    run_with_updates(cfg, store, inbound, None, stats, shutdown, None).await
}

/// [`run`], with the write desk's channel and config updates:
///
/// * `writes`: where write commands go, as [`WriteOrder`]s nobody waits
///   on (the desk publishes their results). The forwarder never waits on
///   it: a command that finds it full or closed, or finds none, is
///   dropped, counted in [`ForwarderStats::writes_dropped`], with a
///   warning at most every [`WRITE_WARN_INTERVAL`].
/// * `config_hash`: a new config hash after a reload: the forwarder
///   republishes its retained `online` status with it (the connection and
///   its session stay as they are; the Last Will keeps the hash it was
///   made with until the next connection is set up).
pub async fn run_with_updates(
    cfg: ForwarderConfig,
    store: StoreHandle,
    inbound: mpsc::Sender<Inbound>,
    writes: Option<mpsc::Sender<WriteOrder>>,
    stats: Arc<ForwarderStats>,
    shutdown: Shutdown,
    config_hash: Option<watch::Receiver<String>>,
) -> Result<(), MqttError> {
    let mut cfg = cfg;
    cfg.store
        .get_or_insert_with(|| store_info(store.identity()));
    let options = mqtt_options(&cfg)?;
    let window = usize::from(cfg.mqtt.max_inflight.max(1));
    let (link, events, _driver) = super::driver::start(options, window);
    let channels = Channels {
        inbound,
        writes,
        config_hash,
    };
    let mut forwarder = Forwarder::new(&cfg, window, link, store, channels, stats);
    forwarder.run(events, shutdown).await
}

/// The store's identity as the status messages say it.
fn store_info(identity: &StoreIdentity) -> StoreInfo {
    StoreInfo {
        id: identity.id.clone(),
        start: identity.start.as_str(),
        reason: identity.start.reason().map(str::to_owned),
        previous: match &identity.start {
            StoreStart::Lost { previous, .. } => previous.clone(),
            _ => None,
        },
    }
}
