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
//! session (with `durability = "normal"`, whose commits a power cut may
//! lose, the first session after an unclean stop skips [`BD_SEQ_SKIP`]
//! numbers; a store without a saved number starts at a random one).
//! rumqttc would reconnect with the Will it was built with, so a
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
//! node sends a SUBSCRIBE to a filter nobody publishes to (a *barrier*,
//! `_fieldgate/barrier/{group}/{node}`): the broker reads a connection's
//! packets in order, so its SUBACK says every row handed over before the
//! barrier has reached it. (An UNSUBSCRIBE would do as well by the MQTT
//! specification, but rumqttd sends no UNSUBACK for a filter that was not
//! subscribed; every broker answers a SUBSCRIBE.) Only then are
//! those rows deleted. A connection that fails loses nothing: what was not
//! confirmed is sent again by the next session, as history.
//!
//! A device that is down at the births is born with its last values at
//! bad quality, and its DDEATH follows once the history has gone out, so
//! that what it read before it went down still reaches the host.
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
//! # Writes (DCMD)
//!
//! A DCMD metric of a writable tag becomes a [`WriteOrder`] for the write
//! desk (`EdgeNodeConfig::writes`), which judges it, has the link's task
//! write it and records it. The node does not wait for it: the report
//! comes back on the order's own channel while the session goes on, and
//! is answered with a DDATA of that metric on the session that asked
//! (published at once, not through the outbox: another session's host
//! did not ask). It shows the value read back, else the value written,
//! else the value before, else the latest reading. A write the desk cannot
//! take (its queue full, stopped, or no desk) is answered at once with the
//! latest reading. A device that is not born in the session (it died)
//! gets no answer: its next DBIRTH tells the value.
//!
//! # Bad input
//!
//! Malformed NCMD, DCMD and STATE payloads, commands for metrics that are
//! unknown or not writable and STATEs of other hosts are logged and
//! counted ([`EdgeNodeStats`]), never fatal.

mod node;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rumqttc::{LastWill, MqttOptions, QoS};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::client::{MqttError, session_options};
use super::driver;
use super::forwarder::{BACKOFF_MAX, BACKOFF_START};
use crate::command::{ORDERS_CAPACITY, WriteOrder};
use crate::config::{Config, Device, Durability, MqttConfig, SparkplugConfig};
use crate::contract::sparkplug::session::death_certificate;
use crate::contract::sparkplug::values::epoch_millis;
use crate::contract::sparkplug::{Catalog, SharedCurrent, SparkplugTopics};
use crate::shutdown::Shutdown;
use crate::store::{StoreHandle, StoreStart};
use node::Node;

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
/// The first levels of the filter a barrier subscribes to (nothing is ever
/// published there; only the SUBACK matters).
const BARRIER_PREFIX: &str = "_fieldgate/barrier";
/// Rebirths answered at most this often; requests in between are merged.
pub const REBIRTH_MIN_INTERVAL: Duration = Duration::from_secs(2);
/// How often the node metrics (outbox depth, clock) are looked at; an
/// NDATA goes out when one changed.
pub const NODE_INFO_INTERVAL: Duration = Duration::from_secs(10);
/// How long a stop waits for its NDEATH and DISCONNECT to be written.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// DCMD writes handed to the desk and not answered yet, at most, per
/// session; a write beyond this is answered at once with the latest
/// reading, as when the desk is full.
const MAX_PENDING_WRITES: usize = ORDERS_CAPACITY;
/// `by` of a DCMD write when no primary host is configured: a DCMD does
/// not say who sent it.
pub const DCMD_BY: &str = "sparkplug host";
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
    /// `[store] durability = "normal"`: a power cut may lose the last
    /// commits, the last `bdSeq` among them (see [`BD_SEQ_SKIP`]).
    pub lossy_store: bool,
    /// The write desk's queue, where DCMD writes go; `None`: no desk, and
    /// every DCMD write is answered with the latest reading, unwritten.
    pub writes: Option<mpsc::Sender<WriteOrder>>,
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
            lossy_store: config.store.durability == Durability::Normal,
            writes: None,
        })
    }

    /// The same, with DCMD writes sent to the write desk's queue `orders`.
    pub fn with_writes(self, orders: mpsc::Sender<WriteOrder>) -> EdgeNodeConfig {
        EdgeNodeConfig {
            writes: Some(orders),
            ..self
        }
    }

    /// Who asks, in the record of a DCMD write: the primary host when one
    /// is configured (only it should command the node), else [`DCMD_BY`].
    fn writer(&self) -> String {
        self.sparkplug
            .primary_host_id
            .clone()
            .unwrap_or_else(|| DCMD_BY.to_owned())
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
    /// The primary host's last STATE said online (true without one).
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
    /// DCMD writes handed to the write desk.
    pub dcmd_writes: AtomicU64,
    /// DCMD writes the desk could not take (its queue full, stopped, no
    /// desk, too many waiting): nothing written, answered with the latest
    /// reading.
    pub dcmd_busy: AtomicU64,
    /// DDATA answers to DCMD writes published.
    pub dcmd_answers: AtomicU64,
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
    let mut first = true;
    loop {
        let bd_seq = next_bd_seq(&store, first, cfg.lossy_store).await;
        first = false;
        stats.bd_seq.store(bd_seq, Ordering::Relaxed);
        EdgeNodeStats::bump(&stats.sessions);
        let options = options(&cfg, bd_seq)?;
        // rumqttc's request channel must take a whole birth (one DBIRTH per
        // device) on top of a full window of rows and the barriers.
        let (link, events, guard) =
            driver::start(options, WINDOW + cfg.devices.len() + MAX_BARRIERS + 8);
        if cfg.sparkplug.primary_host_id.is_none() {
            stats.host_online.store(true, Ordering::Relaxed);
        }
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
        // A session that got its CONNACK starts the backoff afresh, so a
        // rare loss after days up is retried within a second.
        if stats.connected.swap(false, Ordering::Relaxed) {
            backoff = BACKOFF_START;
        }
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
                if stats.sessions.load(Ordering::Relaxed) == 1 || backoff == BACKOFF_START {
                    warn!(bd_seq, %error, "sparkplug: connection lost or refused; trying again");
                } else {
                    debug!(bd_seq, %error, "sparkplug: connection attempt failed");
                }
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

/// `bdSeq` numbers skipped after an unclean stop of a store with
/// `durability = "normal"` (with `"full"` every flush is on disk): a power cut may lose the commits since the last checkpoint
/// (about a minute), and with them the numbers of sessions a host may have
/// seen; a session is at most one connection attempt a second, so 64 steps
/// clear them all.
pub const BD_SEQ_SKIP: u64 = 64;

/// The next `bdSeq`, saved and flushed before it is used: the last one
/// plus one (plus [`BD_SEQ_SKIP`] on the first session after an unclean
/// stop when `lossy`); a store that holds none (a new or replaced file) starts at a
/// random number, so a Will of a lost file's session is unlikely to match.
async fn next_bd_seq(store: &StoreHandle, first: bool, lossy: bool) -> u64 {
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
    let unclean = lossy && first && !matches!(store.identity().start, StoreStart::Kept);
    let next = match last {
        Some(n) => (n + 1 + if unclean { BD_SEQ_SKIP } else { 0 }) % 256,
        None => rand::random_range(0..256),
    };
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
