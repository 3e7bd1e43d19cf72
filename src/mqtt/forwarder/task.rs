//! The forwarder task: handles what the driver reports, keeps the book
//! and the streams of the current connection, hands rows to rumqttc,
//! deletes confirmed rows and passes inbound messages on.
//!
//! Everything here runs on the one task that called `run`; it never waits
//! on rumqttc (requests go through `try_publish` and `try_ack`) nor on the
//! inbound channel (messages are held), only on the store and on its own
//! inputs (the driver's events, the tokens of the requests passed on).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use rumqttc::{
    AsyncClient, Event, Incoming, Outgoing, Publish, QoS, SubscribeFilter, SubscribeReasonCode,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, error, warn};

use super::acks::{Check, Receipts};
use super::book::{Await, Flight, Sent};
use super::streams::{Stream, Streams, with_hist};
use super::{
    ACK_ROOM, DISCONNECT_TIMEOUT, ForwarderConfig, ForwarderStats, INBOUND_HOLD, Inbound,
    OFFLINE_ACK_TIMEOUT, WRITE_WARN_INTERVAL,
};
use crate::command::{Delivery, WriteCommand, WriteOrder};
use crate::contract::inbound::{self, InboundError};
use crate::contract::status::{self, StatusInfo};
use crate::contract::{Request, Topics};
use crate::events::{BrokerConnected, BrokerLost};
use crate::mqtt::client::MqttError;
use crate::mqtt::driver::{Gate, Link, LoopMsg};
use crate::shutdown::Shutdown;
use crate::store::{Lane, Row, StoreError, StoreHandle};

/// Delay before the store is asked again after an error other than
/// "closed".
const STORE_RETRY: Duration = Duration::from_secs(1);

/// Most events handled between two store round trips.
const EVENT_BATCH: usize = 512;

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

/// The QoS a row goes out at.
fn row_qos(qos: u8) -> QoS {
    // QoS 0 has no confirmation, so the outbox could never delete the row:
    // anything but 2 goes out at QoS 1.
    if qos == 2 {
        QoS::ExactlyOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// The `offline` status of a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offline {
    NotSent,
    Sent,
    Acked,
}

/// How often a request whose token came back unhandled is passed on
/// again before its message is left to the broker's redelivery.
const MAX_PASSES: u8 = 3;

/// One connection's state: dropped when the connection fails.
#[derive(Debug)]
struct Conn {
    /// The driver's number for it (see the gate).
    generation: u64,
    flight: Flight,
    streams: Streams,
    /// Inbound messages of this connection not acknowledged yet, in
    /// receipt order. Dropped with the connection: what they wait for is
    /// acknowledged by nobody, and the broker sends them again.
    receipts: Receipts<Pending>,
    /// Acks handed to rumqttc and not yet taken by it (at most
    /// [`ACK_ROOM`], so publishes always find room in its channel).
    acks_queued: usize,
    /// The SUBACK of this connection's inbound subscription came: a write
    /// command received before it was queued by the broker while the
    /// gateway was away (see the module documentation).
    subscribed: bool,
}

/// A received message passed on, waiting to be handled.
#[derive(Debug)]
struct Pending {
    /// To pass it on again if its token comes back unhandled.
    request: Request,
    /// Resolves when the pipeline is done with it; `None` once it was given
    /// up on (nobody consumes requests, or [`MAX_PASSES`] were not
    /// handled): it and everything after it wait for the next connection.
    handled: Option<oneshot::Receiver<()>>,
    passes: u8,
}

/// Resolves when the oldest unacknowledged message's token does.
async fn front_handled(conn: &mut Option<Conn>) -> Result<(), oneshot::error::RecvError> {
    let rx = conn
        .as_mut()
        .and_then(|c| c.receipts.front_mut())
        .and_then(|p| p.handled.as_mut());
    match rx {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// Passes requests to the inbound channel, holding them while it is full.
struct Passer {
    tx: mpsc::Sender<Inbound>,
    /// Requests waiting for room in `tx`, oldest first (at most
    /// [`INBOUND_HOLD`]).
    held: VecDeque<Inbound>,
    stats: Arc<ForwarderStats>,
}

impl Passer {
    /// Passes a request on. When the channel is full (the rules are busy,
    /// or restarting for a reload) it is held here, in order, and passed on
    /// as room appears. Only beyond [`INBOUND_HOLD`] waiting requests is one
    /// dropped (counted, with a warning): its message is then not
    /// acknowledged, and the broker sends it again after the next connection.
    fn pass(&mut self, message: Inbound) {
        if !self.held.is_empty() {
            self.hold(message);
            self.pass_held();
            return;
        }
        match self.tx.try_send(message) {
            Ok(()) => ForwarderStats::bump(&self.stats.inbound),
            Err(mpsc::error::TrySendError::Full(msg)) => {
                debug!(request = ?msg.request, "inbound channel full; holding the request");
                self.hold(msg);
            }
            Err(mpsc::error::TrySendError::Closed(msg)) => {
                ForwarderStats::bump(&self.stats.inbound_dropped);
                debug!(request = ?msg.request, "inbound request not passed on: nobody consumes inbound requests");
            }
        }
    }

    fn hold(&mut self, message: Inbound) {
        if self.held.len() < INBOUND_HOLD {
            self.held.push_back(message);
        } else {
            let dropped = self.stats.inbound_dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(request = ?message.request, dropped, held = self.held.len(), "inbound request dropped: its consumer is not keeping up (not acknowledged: the broker sends it again after the next connection)");
        }
    }

    /// Passes on held messages while the channel has room.
    fn pass_held(&mut self) {
        while let Some(message) = self.held.pop_front() {
            match self.tx.try_send(message) {
                Ok(()) => ForwarderStats::bump(&self.stats.inbound),
                Err(mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m)) => {
                    self.held.push_front(m);
                    return;
                }
            }
        }
    }

    /// A passed-on request's token came back unhandled (the pipeline
    /// stopped or failed before committing it): pass it on again, keeping
    /// its place in the ack order, unless nobody consumes requests or it
    /// was tried [`MAX_PASSES`] times; then it stays unacknowledged.
    fn again(&mut self, pending: &mut Pending) {
        if self.tx.is_closed() {
            // The rules are gone (a stop): the broker sends it again to
            // the next run.
            pending.handled = None;
            debug!(request = ?pending.request, "inbound request not handled before the rules stopped; left unacknowledged");
            return;
        }
        if pending.passes >= MAX_PASSES {
            pending.handled = None;
            warn!(request = ?pending.request, passes = pending.passes,
                "inbound request not handled; left unacknowledged, so the broker sends it (and the messages after it) again after the next connection");
            return;
        }
        let (inbound, rx) = Inbound::tracked(pending.request.clone());
        pending.handled = Some(rx);
        pending.passes += 1;
        debug!(request = ?pending.request, "inbound request not handled; passed on again");
        self.pass(inbound);
    }

    /// What the ack order makes of a waiting receipt at its front.
    fn check(&mut self, pending: &mut Pending) -> Check {
        let Some(rx) = pending.handled.as_mut() else {
            return Check::Waiting;
        };
        match rx.try_recv() {
            Ok(()) => Check::Done,
            Err(oneshot::error::TryRecvError::Empty) => Check::Waiting,
            Err(oneshot::error::TryRecvError::Closed) => {
                self.again(pending);
                Check::Waiting
            }
        }
    }
}

/// Bounds the warnings about dropped write commands: one per
/// [`WRITE_WARN_INTERVAL`], the rest counted.
#[derive(Debug, Default)]
struct WriteWarnings {
    last: Option<Instant>,
    unlogged: u64,
}

impl WriteWarnings {
    /// `Some(n)` when a warning may be logged at `now` (`n` dropped
    /// commands were not logged since the last one), `None` otherwise.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < WRITE_WARN_INTERVAL => {
                self.unlogged += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.unlogged))
            }
        }
    }
}

/// Whether a publish was handed to rumqttc.
enum Handed {
    Yes,
    /// Not handed over, but the caller may go on with the next row.
    Skipped,
    /// Not handed over; stop for now (no connection or no packet id).
    Blocked,
}

/// The next config hash, or `None` when its sender is gone.
async fn changed_hash(updates: &mut Option<watch::Receiver<String>>) -> Option<String> {
    let rx = updates.as_mut()?;
    rx.changed().await.ok()?;
    Some(rx.borrow_and_update().clone())
}

/// What the forwarder hands on and listens to besides the broker and the
/// store.
pub(super) struct Channels {
    /// Inbound requests, to the rules stage.
    pub(super) inbound: mpsc::Sender<Inbound>,
    /// Write commands, to the write desk (`None`: dropped, counted).
    pub(super) writes: Option<mpsc::Sender<WriteOrder>>,
    /// New config hashes after reloads.
    pub(super) config_hash: Option<watch::Receiver<String>>,
}

/// The forwarder's state between events: see the module documentation
/// of `forwarder`.
pub(super) struct Forwarder {
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
    /// Passes inbound requests on.
    passer: Passer,
    /// Write commands go here (the write desk); `None`: nobody takes
    /// them, they are dropped (counted, with a warning).
    writes: Option<mpsc::Sender<WriteOrder>>,
    /// Warnings about dropped write commands, bounded.
    write_warnings: WriteWarnings,
    /// Reads inbound topics.
    topics: Topics,
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
    /// A forwarder for `cfg` with `window` rows in flight at most, handing
    /// packets to the driver behind `link`.
    pub(super) fn new(
        cfg: &ForwarderConfig,
        window: usize,
        link: Link,
        store: StoreHandle,
        channels: Channels,
        stats: Arc<ForwarderStats>,
    ) -> Forwarder {
        let Channels {
            inbound,
            writes,
            config_hash,
        } = channels;
        Forwarder {
            info: cfg.status_info(),
            config_hash,
            broker: format!("{}:{}", cfg.mqtt.host, cfg.mqtt.port),
            status_topic: cfg.topics.status(),
            filters: cfg.topics.inbound_filters(),
            topics: cfg.topics.clone(),
            window,
            live_share: cfg.mqtt.live_share,
            id_space: link.id_space,
            max_packet: usize::try_from(cfg.mqtt.max_packet_size).unwrap_or(usize::MAX),
            committed: store.committed(),
            store,
            passer: Passer {
                tx: inbound,
                held: VecDeque::new(),
                stats: stats.clone(),
            },
            writes,
            write_warnings: WriteWarnings::default(),
            stats,
            client: link.client,
            gate: link.gate,
            conn: None,
            to_delete: Vec::new(),
            undeleted: HashSet::new(),
            newest_retained: HashMap::new(),
            offline: Offline::NotSent,
            ever_connected: false,
            warned: false,
            failures: 0,
            down_since: None,
        }
    }

    /// Runs until `shutdown` fires, the store closes or the driver stops;
    /// `rx` is what the driver reports.
    pub(super) async fn run(
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
        // Until the first CONNACK nothing can be delivered: the store
        // makes longer groups.
        self.store.broker_connected(false);
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
                permit = self.passer.tx.clone().reserve_owned(), if !self.passer.held.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(message) = self.passer.held.pop_front() {
                                permit.send(message);
                                ForwarderStats::bump(&self.stats.inbound);
                            }
                            self.passer.pass_held();
                        }
                        Err(_) => {
                            let n = self.passer.held.len() as u64;
                            self.passer.held.clear();
                            self.stats.inbound_dropped.fetch_add(n, Ordering::Relaxed);
                            debug!(dropped = n, "held inbound messages dropped: nobody consumes inbound messages");
                        }
                    }
                }
                handled = front_handled(&mut self.conn), if self.front_waits() => {
                    if let Some(conn) = self.conn.as_mut() {
                        match handled {
                            Ok(()) => conn.receipts.front_done(),
                            Err(_) => {
                                if let Some(pending) = conn.receipts.front_mut() {
                                    self.passer.again(pending);
                                }
                            }
                        }
                    }
                }
                _ = tokio::time::sleep_until(stop_at.unwrap_or_else(far).into()), if stopping => {}
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(far).into()), if retry_at.is_some() => {
                    retry_at = None;
                }
            }
            self.send_acks();
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
                self.store.broker_connected(false);
                self.stats.set_error(error.clone());
                BrokerLost {
                    broker: &self.broker,
                    error: &error,
                    in_flight,
                }
                .emit();
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
                self.store.broker_connected(false);
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
            receipts: Receipts::default(),
            acks_queued: 0,
            subscribed: false,
        });
        if !self.gate.open(generation) {
            // Already lost again; the Lost message follows.
            self.conn = None;
            return;
        }
        self.stats.connected.store(true, Ordering::Relaxed);
        self.store.broker_connected(true);
        let again = self.ever_connected.then(|| {
            ForwarderStats::bump(&self.stats.reconnects);
            let down = self.down_since.map(|t| t.elapsed()).unwrap_or_default();
            (down, self.failures)
        });
        BrokerConnected {
            broker: &self.broker,
            backlog_upto: committed,
            again,
        }
        .emit();
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
        // The pipeline republishes the retained state (see the request).
        self.passer.pass(Inbound::local(Request::BrokerConnected));
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
            Event::Incoming(Incoming::Publish(p)) => {
                // Read once, here: the channel carries typed requests.
                let now = SystemTime::now();
                let request = match inbound::read(&self.topics, &p.topic, &p.payload, p.retain, now)
                {
                    Ok(request) => {
                        if request.is_none() {
                            debug!(topic = %p.topic, "empty inbound message (a retained message being cleared); ignored");
                        }
                        request
                    }
                    Err(e @ InboundError::UnknownTopic(_)) => {
                        debug!("{e}");
                        None
                    }
                    Err(e) => {
                        warn!("{e}");
                        None
                    }
                };
                match request {
                    Some(Request::Write(command)) => {
                        self.write(&p, command);
                        // At most once: acknowledged in its turn, whatever
                        // becomes of it, and never passed on again.
                        self.received(&p, None);
                    }
                    request => self.received(&p, request),
                }
            }
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
            Event::Outgoing(Outgoing::PubAck(_) | Outgoing::PubRec(_)) => {
                // rumqttc took one of our acks from its channel.
                if let Some(conn) = &mut self.conn {
                    conn.acks_queued = conn.acks_queued.saturating_sub(1);
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
            Some(Sent::Subscribe) => conn.subscribed = true,
            Some(Sent::Online) | None => {}
        }
    }

    /// A write command received in `publish`: marked queued when the
    /// broker kept it for us (it came before this connection's SUBACK, or
    /// is a redelivery), and handed to the write desk without waiting.
    fn write(&mut self, publish: &Publish, mut command: WriteCommand) {
        let queued = self
            .conn
            .as_ref()
            .is_none_or(|conn| !conn.subscribed || publish.dup);
        if command.delivery == Delivery::Live && queued {
            command.delivery = Delivery::Queued;
        }
        debug!(device = %command.device, tag = %command.tag, id = ?command.id,
            delivery = ?command.delivery, "write command received");
        let Some(tx) = &self.writes else {
            self.write_dropped(&command, "write-back is not running");
            return;
        };
        match tx.try_send(WriteOrder::new(command)) {
            Ok(()) => ForwarderStats::bump(&self.stats.writes),
            Err(mpsc::error::TrySendError::Full(order)) => {
                self.write_dropped(&order.command, "the write desk is busy");
            }
            Err(mpsc::error::TrySendError::Closed(order)) => {
                self.write_dropped(&order.command, "the write desk is not running");
            }
        }
    }

    /// A write command nobody takes: counted, and a warning at most every
    /// [`WRITE_WARN_INTERVAL`] (the others are debug lines; the next
    /// warning says how many there were).
    fn write_dropped(&mut self, command: &WriteCommand, why: &str) {
        let dropped = self.stats.writes_dropped.fetch_add(1, Ordering::Relaxed) + 1;
        match self.write_warnings.allow(Instant::now()) {
            Some(unlogged) => warn!(device = %command.device, tag = %command.tag, id = ?command.id,
                dropped, not_logged_since_last = unlogged,
                "write command dropped ({why}): nothing written, no result published"),
            None => debug!(device = %command.device, tag = %command.tag, id = ?command.id,
                "write command dropped ({why})"),
        }
    }

    /// A message received on an inbound topic, read into `request` (`None`:
    /// it asks for nothing). A QoS 1/2 message is acknowledged only once
    /// its request is handled (see [`send_acks`](Self::send_acks)); one
    /// that asks for nothing is acknowledged in its turn, else the broker
    /// would send it again at every connection.
    fn received(&mut self, publish: &Publish, request: Option<Request>) {
        let conn = match self.conn.as_mut() {
            Some(conn) if publish.qos != QoS::AtMostOnce => conn,
            // QoS 0 has no acknowledgement (and a publish never arrives
            // outside a connection): nothing to wait for.
            _ => {
                if let Some(request) = request {
                    self.passer.pass(Inbound::local(request));
                }
                return;
            }
        };
        let Some(request) = request else {
            conn.receipts.receive(publish.pkid, publish.qos, None);
            return;
        };
        let (inbound, rx) = Inbound::tracked(request.clone());
        let pending = Pending {
            request,
            handled: Some(rx),
            passes: 1,
        };
        conn.receipts
            .receive(publish.pkid, publish.qos, Some(pending));
        self.passer.pass(inbound);
    }

    /// The oldest unacknowledged message waits on its token.
    fn front_waits(&mut self) -> bool {
        self.conn
            .as_mut()
            .and_then(|c| c.receipts.front_mut())
            .is_some_and(|p| p.handled.is_some())
    }

    /// Hands rumqttc the acks that are due, in receipt order, while its
    /// channel has room for them.
    fn send_acks(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let room = ACK_ROOM.saturating_sub(conn.acks_queued);
        if room == 0 || conn.receipts.len() == 0 {
            return;
        }
        let passer = &mut self.passer;
        let due = conn.receipts.settle(room, |p| passer.check(p));
        for (pkid, qos) in due {
            let mut publish = Publish::new("", qos, Vec::new());
            publish.pkid = pkid;
            let client = &self.client;
            match self
                .gate
                .with_open(conn.generation, || client.try_ack(&publish))
            {
                Some(Ok(())) => {
                    conn.acks_queued += 1;
                }
                // Cannot happen: the channel keeps ACK_ROOM for acks.
                Some(Err(e)) => error!(error = %e, pkid, "rumqttc refused an inbound ack"),
                // The connection is gone; the broker sends it again.
                None => return,
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
                // The ids say whether it may be behind; the Sparkplug
                // lane's rows take ids too, so the probe's answer decides.
                let probe = conn
                    .streams
                    .live_behind(committed, live)
                    .then(|| conn.streams.live_probe(live));
                let rows = match probe {
                    Some(n) => self.store.fetch_newest(Lane::Json, after, n).await?,
                    None => self.store.fetch_after(Lane::Json, after, live).await?,
                };
                let Some(conn) = &mut self.conn else {
                    return Ok(());
                };
                let rows = match probe {
                    Some(_) => conn.streams.live_probed(live, rows),
                    None => {
                        conn.streams.live_fetched(live, &rows, false);
                        rows
                    }
                };
                if !self.publish_rows(rows, Stream::Live) {
                    return Ok(());
                }
            }
            if let (true, Some((after, _))) = (backlog > 0, backlog_range) {
                let rows = self.store.fetch_after(Lane::Json, after, backlog).await?;
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
    fn dropped_write_warnings_are_bounded() {
        let mut w = WriteWarnings::default();
        let t0 = Instant::now();
        assert_eq!(w.allow(t0), Some(0), "the first is logged");
        assert_eq!(w.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(
            w.allow(t0 + WRITE_WARN_INTERVAL),
            Some(2),
            "the next one says how many were not"
        );
        assert_eq!(w.allow(t0 + WRITE_WARN_INTERVAL), None);
    }

    #[test]
    fn rows_go_out_at_qos_1_or_2_never_0() {
        assert_eq!(row_qos(0), QoS::AtLeastOnce);
        assert_eq!(row_qos(1), QoS::AtLeastOnce);
        assert_eq!(row_qos(2), QoS::ExactlyOnce);
    }
}
