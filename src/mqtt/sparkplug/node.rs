//! One session of the edge node: the task that owns its connection's
//! events, publishes its births and rows, confirms them by barriers and
//! answers the commands it receives (see the module above for the whole
//! story).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use rumqttc::{Event, Incoming, Outgoing, QoS};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use super::{
    BARRIER_EVERY, BARRIER_PREFIX, EdgeNodeConfig, EdgeNodeStats, End, GOODBYE_TIMEOUT,
    MAX_BARRIERS, MAX_PENDING_WRITES, NODE_INFO_INTERVAL, REBIRTH_MIN_INTERVAL, WINDOW,
};
use crate::command::{WriteOrder, WriteReport};
use crate::contract::sparkplug::inbound::{self, Command, MetricWrite, Refusal};
use crate::contract::sparkplug::session::{
    NodeInfo, Out, RowAction, answer_value, death_certificate,
};
use crate::contract::sparkplug::topics::{InboundTopic, RowKind};
use crate::contract::sparkplug::values::epoch_millis;
use crate::contract::sparkplug::{Session, SharedCurrent, SparkplugTopics};
use crate::mqtt::driver::{Link, LoopMsg};
use crate::shutdown::Shutdown;
use crate::store::{Lane, Row, StoreError, StoreHandle};
use crate::tag::Value;

/// A DCMD write waiting for its report: the device, the tag, and the
/// report (`None` when the desk dropped the order unanswered).
type Answer = (String, String, Option<WriteReport>);

/// Sleeps until `at`, or for ever without it.
async fn rebirth_due(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Rows handed over before one barrier, or one of the node's own
/// subscriptions (`filter`), which take packet ids in the same order.
#[derive(Debug, Default)]
struct Barrier {
    pkid: Option<u16>,
    rows: Vec<i64>,
    filter: Option<String>,
}

/// One session.
pub(super) struct Node<'a> {
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
    in_flight: usize,
    /// The ids of the rows in flight (a rescan of the history skips them).
    in_flight_ids: HashSet<i64>,
    /// A row was held (its device not born) since the last rescan.
    held_any: bool,
    /// A device was born again while rows were held: look at the history
    /// again, from the start, so that they go out now.
    rescan: bool,
    /// This node's barrier filter.
    barrier_filter: String,
    /// Devices born down at the births, whose DDEATH waits for the history.
    dying: HashSet<String>,
    rebirth_wanted: bool,
    last_birth: Option<Instant>,
    node_info: Option<NodeInfo>,
    /// DCMD writes handed to the desk, each waiting for its report (at
    /// most [`MAX_PENDING_WRITES`]); dropped with the session, whose host
    /// alone asked.
    pending: JoinSet<Answer>,
}

impl<'a> Node<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
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
            in_flight: 0,
            in_flight_ids: HashSet::new(),
            held_any: false,
            rescan: false,
            barrier_filter: format!(
                "{BARRIER_PREFIX}/{}/{}",
                cfg.sparkplug.group_id, cfg.sparkplug.edge_node_id
            ),
            dying: HashSet::new(),
            rebirth_wanted: false,
            last_birth: None,
            node_info: None,
            pending: JoinSet::new(),
        }
    }

    pub(super) async fn run(
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
            let rebirth_at = self.rebirth_at();
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
                () = rebirth_due(rebirth_at) => {}
                Some(done) = self.pending.join_next(), if !self.pending.is_empty() => {
                    // A waiting task cannot fail but by being aborted,
                    // which only the end of the session does.
                    if let Ok((device, tag, report)) = done {
                        self.answer(&device, &tag, report.as_ref());
                    }
                }
            }
        };
        if matches!(end, End::Stopped) {
            self.last_rows(&mut events).await;
        }
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
                self.barriers.push_back(Barrier {
                    filter: Some(filter),
                    ..Barrier::default()
                });
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
            // Devices polled and down: born with their last values at bad
            // quality so that their history can still go out, then dead.
            self.dying = current
                .devices
                .iter()
                .filter(|(_, d)| !d.alive && !d.readings.is_empty())
                .map(|(name, _)| name.clone())
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

    /// The DDEATHs of devices that were down at the births, once the
    /// history (which may hold their last readings) has gone out.
    fn bury(&mut self) {
        if self.dying.is_empty() || self.backlog_after < self.backlog_upto {
            return;
        }
        let now = epoch_millis(SystemTime::now());
        let mut dying: Vec<String> = self.dying.drain().collect();
        dying.sort();
        for device in dying {
            if let Some(out) = self.session.ddeath(&device, now) {
                self.publish(out);
            }
        }
    }

    /// Hands over what the window allows: live rows first, then history.
    async fn pump(&mut self) -> Result<(), End> {
        if !self.born || self.generation.is_none() {
            return Ok(());
        }
        self.bury();
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
                rows.retain(|r| !self.in_flight_ids.contains(&r.id));
                self.send(rows, true);
            }
            self.barrier();
            if seen == 0 {
                break;
            }
        }
        self.bury();
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

    /// Hands `rows` over.
    fn send(&mut self, rows: Vec<Row>, historical: bool) {
        let now = epoch_millis(SystemTime::now());
        let mut drop = Vec::new();
        for row in rows {
            let mut reborn = false;
            if !historical
                && let Some(kind @ (RowKind::Birth { device } | RowKind::Death { device })) =
                    self.session.topics().row_kind(&row.topic)
            {
                // Its own birth or death, live: no deferred DDEATH.
                self.dying.remove(device);
                reborn = matches!(kind, RowKind::Birth { .. });
            }
            match self.session.row(&row.topic, &row.payload, historical, now) {
                Ok(RowAction::Send(out)) => {
                    if reborn && self.held_any {
                        self.rescan = true;
                    }
                    if self.publish(out) {
                        self.open.rows.push(row.id);
                        self.in_flight_ids.insert(row.id);
                        self.in_flight += 1;
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
                Ok(RowAction::Hold) => {
                    self.held_any = true;
                    EdgeNodeStats::bump(&self.stats.held);
                }
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
    }

    /// Closes the open batch with a barrier.
    fn barrier(&mut self) {
        if self.open.rows.is_empty() {
            return;
        }
        let filter = self.barrier_filter.clone();
        if self.hand(|c| c.try_subscribe(filter, QoS::AtMostOnce)) {
            self.barriers.push_back(std::mem::take(&mut self.open));
        }
        // Otherwise the connection is failing: its rows stay in the outbox.
    }

    async fn on_event(&mut self, event: Event) -> Option<End> {
        match event {
            Event::Outgoing(Outgoing::Subscribe(pkid)) => {
                if let Some(b) = self.barriers.iter_mut().find(|b| b.pkid.is_none()) {
                    b.pkid = Some(pkid);
                }
            }
            Event::Incoming(Incoming::SubAck(ack)) => {
                if let Some(i) = self.barriers.iter().position(|b| b.pkid == Some(ack.pkid)) {
                    if let Some(filter) = &self.barriers[i].filter
                        && ack
                            .return_codes
                            .contains(&rumqttc::SubscribeReasonCode::Failure)
                    {
                        warn!(%filter, "sparkplug: the broker refused a subscription");
                    }
                    // Acks come in order; earlier barriers are confirmed too.
                    let done: Vec<Barrier> = self.barriers.drain(..=i).collect();
                    let ids: Vec<i64> = done.into_iter().flat_map(|b| b.rows).collect();
                    self.in_flight = self.in_flight.saturating_sub(ids.len());
                    for id in &ids {
                        self.in_flight_ids.remove(id);
                    }
                    self.stats
                        .confirmed
                        .fetch_add(ids.len() as u64, Ordering::Relaxed);
                    if let Err(StoreError::Closed) = self.store.delete(ids).await {
                        return Some(End::StoreClosed);
                    }
                }
            }
            Event::Incoming(Incoming::Publish(p)) => {
                return self.on_message(&p.topic, &p.payload, p.retain).await;
            }
            _ => {}
        }
        None
    }

    async fn on_message(&mut self, topic: &str, payload: &[u8], retain: bool) -> Option<End> {
        let topics = self.session.topics().clone();
        let stats = self.stats.clone();
        let refuse = |what: &str, detail: &str| {
            EdgeNodeStats::bump(&stats.inbound_refused);
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
                                // A write is a DCMD's, never an NCMD's.
                                Command::Refused { metric, .. }
                                | Command::Write(MetricWrite { tag: metric, .. }) => refuse(
                                    "NCMD for a metric that takes no command; refused",
                                    &metric,
                                ),
                            }
                        }
                    }
                    Err(e) => refuse("malformed NCMD ignored", &e.to_string()),
                }
            }
            Some(InboundTopic::DeviceCommand { device }) => {
                match inbound::device_commands(payload, device, self.session.catalog(), retain) {
                    Ok(commands) => {
                        for c in commands {
                            match c {
                                Command::Write(w) => self.write(w),
                                Command::Refused {
                                    metric,
                                    why: Refusal::NotWritable,
                                } => refuse(
                                    "DCMD for a metric that is not writable refused \
                                     (a tag takes writes with `writable = true`; alarm \
                                     metrics never do)",
                                    &format!("{device}/{metric}"),
                                ),
                                Command::Refused {
                                    metric,
                                    why: Refusal::Unknown,
                                } => refuse(
                                    "DCMD for an unknown metric refused",
                                    &format!("{device}/{metric}"),
                                ),
                                // Not a command of a device.
                                Command::Rebirth => {}
                            }
                        }
                    }
                    Err(e) => refuse("malformed DCMD ignored", &e.to_string()),
                }
            }
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

    /// Hands a DCMD write to the desk without waiting; its report is
    /// answered when it comes ([`Node::answer`]). A write the desk cannot
    /// take now is answered at once with the latest reading: nothing was
    /// written, and the host must not keep showing its own value.
    fn write(&mut self, w: MetricWrite) {
        let (device, tag) = (w.device.clone(), w.tag.clone());
        let command = w.command(Some(self.cfg.writer()), SystemTime::now());
        let busy = match &self.cfg.writes {
            None => Some("write-back is not running"),
            Some(_) if self.pending.len() >= MAX_PENDING_WRITES => {
                Some("too many writes waiting for their result")
            }
            Some(orders) => {
                let (order, reply) = WriteOrder::waited(command);
                match orders.try_send(order) {
                    Ok(()) => {
                        EdgeNodeStats::bump(&self.stats.dcmd_writes);
                        debug!(%device, %tag, "sparkplug: DCMD write handed to the desk");
                        let (d, t) = (device.clone(), tag.clone());
                        self.pending.spawn(async move { (d, t, reply.await.ok()) });
                        None
                    }
                    Err(TrySendError::Full(_)) => Some("the write desk's queue is full"),
                    Err(TrySendError::Closed(_)) => Some("the write desk is stopped"),
                }
            }
        };
        if let Some(why) = busy {
            EdgeNodeStats::bump(&self.stats.dcmd_busy);
            warn!(%device, %tag, why, "sparkplug: DCMD write not taken; nothing written");
            self.answer(&device, &tag, None);
        }
    }

    /// The DDATA answering a DCMD write to `device`/`tag`: what `report`
    /// says the device holds, or else the latest reading. Skipped when the
    /// device is not born in this session (its next DBIRTH tells).
    fn answer(&mut self, device: &str, tag: &str, report: Option<&WriteReport>) {
        let from_report = report.and_then(|r| Some((answer_value(r)?, epoch_millis(r.at))));
        let (value, good, at) = match from_report {
            Some((value, at)) => (Some(value), true, at),
            None => self.latest(device, tag),
        };
        match self
            .session
            .metric_data(device, tag, value.as_ref(), good, at)
        {
            Some(out) => {
                if self.publish(out) {
                    EdgeNodeStats::bump(&self.stats.dcmd_answers);
                }
            }
            None => {
                debug!(%device, %tag, "sparkplug: no answer to a write: the device is not born")
            }
        }
    }

    /// The latest reading of `device`/`tag`: its value (when good), its
    /// quality and its stamp; null and bad, stamped now, if never read.
    fn latest(&self, device: &str, tag: &str) -> (Option<Value>, bool, u64) {
        let index = self
            .cfg
            .devices
            .iter()
            .find(|d| d.name == device)
            .and_then(|d| d.tags.iter().position(|t| t.name == tag));
        let current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let reading = index.and_then(|i| {
            current
                .devices
                .get(device)?
                .readings
                .get(i)?
                .as_ref()
                .cloned()
        });
        match reading {
            Some((r, at)) if r.quality.is_good() => (r.value, true, at),
            Some((_, at)) => (None, false, at),
            None => (None, false, epoch_millis(SystemTime::now())),
        }
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

    /// At a stop: hands over what the pipeline's last commit left and
    /// waits (at most [`GOODBYE_TIMEOUT`]) for the broker to confirm the
    /// rows in flight, so a clean stop leaves nothing it could have sent.
    async fn last_rows(&mut self, events: &mut mpsc::Receiver<LoopMsg>) {
        if !self.born || self.generation.is_none() {
            return;
        }
        self.live_dry = false;
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, async {
            loop {
                if self.pump().await.is_err() {
                    return;
                }
                if self.barriers.iter().all(|b| b.rows.is_empty()) {
                    return;
                }
                match events.recv().await {
                    // Packet ids and acks: the rows they confirm are deleted.
                    Some(msg @ LoopMsg::Event(_)) => {
                        if self.on_loop(msg).await.is_some() {
                            return;
                        }
                    }
                    Some(_) | None => return,
                }
            }
        })
        .await;
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
