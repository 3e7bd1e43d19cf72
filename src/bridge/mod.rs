//! `fieldgate bridge`: the CMMS connectors for many gateways, on an IT
//! host that reaches both the plant's broker and the CMMS.
//!
//! ```text
//! gateways ──MQTT──► broker ──$share/{group}/{prefix}/+/+/workorders/+──► bridge ──► store (sink queues) ──► connectors ──HTTP──► CMMS
//!                       ▲                                                                                     │
//!                       └──────────────── {prefix}/{site}/{gateway}/workorders/{id}/status ◄── statuses ───────┘
//! ```
//!
//! * **Zero loss.** The bridge's MQTT session is persistent (clean
//!   session off, QoS 1) and acknowledges a message only once the
//!   deliveries it made are committed to the bridge's own store: a bridge
//!   killed at any point gets the message again from the broker, or has
//!   it on disk. The connectors then deliver from the store with the
//!   same rules as in a gateway (in order, retried, parked on refusal).
//! * **Once per work order.** A work-order key a connector already
//!   delivered is never created again (the store keeps the CMMS's
//!   reference), and a repeat of a raise (a gateway republishes its open
//!   work orders at each reconnect) is dropped. With two bridges in one
//!   shared-subscription group, the broker hands each message to one of
//!   them, but a raise and its republished copy may reach both at once:
//!   before queueing a create, a bridge claims the key on the group's
//!   claims topic (`contract::claims`), and only the bridge whose claim
//!   the broker delivered first creates it. The connector then reports the
//!   CMMS's reference on the work order's status topic, so every later
//!   copy carries it and is adopted rather than created; the vendor's
//!   lookup by key covers a claim lost with a broker.
//! * **Status.** Statuses from the CMMS (polled) are published on the
//!   work order's `…/status` topic, which the gateway applies like any
//!   CMMS's.
//!
//! The bridge never publishes anything else, and needs no Modbus, rules
//! or HTTP server.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use tokio::sync::mpsc;

mod claims;

use crate::cmms::vendor::Event as WoEvent;
use crate::cmms::{Connectors, REPORTS_CAPACITY, Reported, route};
use crate::config::BridgeConfig;
use crate::contract::claims::{self as claim, Claim};
use crate::contract::inbound::status_payload;
use crate::contract::received;
use crate::contract::topics::{self, GatewayTopic};
use crate::mqtt::client::{MqttError, install_crypto_provider, session_options};
use crate::store::{self, StoreError, StoreHandle};
use crate::systemd;

/// Messages received and not yet committed, at most (the event loop
/// waits beyond: the broker holds the rest).
const RECEIVED_CAPACITY: usize = 256;

/// Keys remembered for dropping repeated updates; the map is cleared
/// when full (a repeat after that is one extra update, not a loss).
const SEEN_KEYS: usize = 100_000;

/// Why the bridge could not run.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The store must not be used.
    #[error("cannot open the store {path}: {source}")]
    Store {
        /// The file.
        path: String,
        /// Why.
        source: StoreError,
    },
    /// The MQTT options could not be built (TLS files).
    #[error("{0}")]
    Mqtt(#[from] MqttError),
}

/// Runs the bridge until `stop` resolves.
pub async fn run(
    config: BridgeConfig,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), BridgeError> {
    let store_config = config.store.clone();
    let opened = tokio::task::spawn_blocking(move || store::open(&store_config))
        .await
        .unwrap_or(Err(StoreError::Closed));
    let (store, guard) = opened.map_err(|source| BridgeError::Store {
        path: config.store.path.display().to_string(),
        source,
    })?;
    // A (re)start is the bridge's reload: what a CMMS refused is tried
    // again, in order, with the config as it is now.
    match store.sink_unpark(None).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deliveries = n, "parked CMMS deliveries are tried again"),
        Err(e) => tracing::warn!(error = %e, "cannot un-park CMMS deliveries"),
    }
    let (client, eventloop) = AsyncClient::new(options(&config)?, 64);
    let (reports_tx, reports_rx) = mpsc::channel(REPORTS_CAPACITY);
    let mut connectors = Connectors::start(&config.cmms, &store, &reports_tx, &[]);
    drop(reports_tx);
    let (received_tx, received_rx) = mpsc::channel(RECEIVED_CAPACITY);
    let mut filters = topics::bridge_filters(
        &config.bridge.topic_prefix,
        config.bridge.shared_group.as_deref(),
    );
    // Claims only matter between bridges of a group; every bridge of the
    // group reads all of them (not shared), before any work order.
    let group = config.bridge.shared_group.clone();
    if let Some(g) = &group {
        filters.insert(0, claim::filter(&config.bridge.topic_prefix, g));
    }
    let claims = Arc::new(claims::Claims::default());
    let session = Arc::new(AtomicU64::new(0));
    let subscriptions = Subscriptions {
        filters,
        claims: group.clone().map(|g| (g, claims.clone())),
        retained: config
            .bridge
            .shared_group
            .as_ref()
            .map(|_| topics::bridge_filters(&config.bridge.topic_prefix, None).remove(0)),
        prefix: config.bridge.topic_prefix.clone(),
    };
    let driver = tokio::spawn(drive(
        eventloop,
        client.clone(),
        subscriptions,
        received_tx,
        session.clone(),
    ));
    let taker = tokio::spawn(take(
        received_rx,
        client.clone(),
        store.clone(),
        config.clone(),
        session,
        group.map(|g| (g, claims)),
    ));
    let publisher = tokio::spawn(publish_statuses(reports_rx, client.clone()));
    tracing::info!(
        id = %config.bridge.id,
        broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port),
        group = config.bridge.shared_group.as_deref().unwrap_or("(none)"),
        connectors = config.cmms.len(),
        store = %config.store.path.display(),
        "bridge running"
    );
    systemd::ready(&format!("bridging to {} connector(s)", config.cmms.len()));
    stop.await;
    tracing::info!("bridge stopping");
    systemd::stopping();
    connectors.stop().await;
    // What was received and not committed is not acknowledged: the broker
    // sends it again to this session (or another bridge of the group).
    driver.abort();
    taker.abort();
    let _ = client.try_disconnect();
    publisher.abort();
    drop(store);
    match tokio::task::spawn_blocking(move || guard.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "closing the store failed"),
        Err(e) => tracing::error!(error = %e, "closing the store failed"),
    }
    tracing::info!("bridge stopped");
    Ok(())
}

/// The bridge's MQTT session: persistent, manual acknowledgements (a
/// message is acknowledged once committed), no Last Will (the bridge
/// publishes no status of its own).
fn options(config: &BridgeConfig) -> Result<MqttOptions, MqttError> {
    if config.mqtt.tls.is_some() {
        install_crypto_provider();
    }
    session_options(&config.mqtt)
}

/// What the bridge subscribes to at each new session.
struct Subscriptions {
    /// The work orders and meters (shared), and the group's claims.
    filters: Vec<String>,
    /// The group and the claims seen, with a shared group.
    claims: Option<(String, Arc<claims::Claims>)>,
    /// The plain work-order filter a new session reads the retained work
    /// orders through, with a shared group.
    retained: Option<String>,
    /// The gateways' topic prefix.
    prefix: String,
}

/// Polls the event loop for ever (that is what reconnects), subscribes
/// at every new session, and hands each received message on with the
/// number of the connection it came on (`session`, counted here).
async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Subscriptions,
    received: mpsc::Sender<(u64, Publish)>,
    session: Arc<AtomicU64>,
) {
    let Subscriptions {
        filters,
        claims,
        retained,
        prefix,
    } = subscriptions;
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                session.fetch_add(1, Ordering::SeqCst);
                tracing::info!(
                    session_present = ack.session_present,
                    "bridge connected to the broker"
                );
                for f in &filters {
                    if let Err(e) = client.subscribe(f.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(filter = %f, error = %e, "cannot subscribe");
                    }
                }
                // A broker sends no retained message to a shared
                // subscription: a new session (a first start, or a
                // session the broker lost) also reads the open work orders
                // retained before it, through a plain subscription taken
                // for a moment. Every bridge of the group then gets them:
                // the claims decide which one creates each.
                if !ack.session_present
                    && let Some(plain) = &retained
                {
                    if let Err(e) = client.subscribe(plain.clone(), QoS::AtLeastOnce).await {
                        tracing::error!(filter = %plain, error = %e, "cannot subscribe");
                    }
                    let (client, plain) = (client.clone(), plain.clone());
                    tokio::spawn(async move {
                        tokio::time::sleep(RETAINED_WINDOW).await;
                        let _ = client.unsubscribe(plain).await;
                    });
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some((group, claims)) = &claims
                    && claim::is_claim(&prefix, group, &p.topic)
                {
                    if let Some(c) = Claim::read(&p.payload) {
                        claims.record(c.key, c.bridge);
                    }
                    let _ = client.ack(&p).await;
                    continue;
                }
                let on = session.load(Ordering::SeqCst);
                if received.send((on, p)).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) => {
                failures = failures.saturating_add(1);
                if failures == 1 || failures.is_multiple_of(10) {
                    tracing::warn!(error = %e, failures, "bridge: broker not reachable; retrying");
                }
                let wait = Duration::from_millis(500u64.saturating_mul(1 << failures.min(6)));
                tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
            }
        }
    }
}

/// Turns received messages into deliveries, commits them, then
/// acknowledges the messages. A message received on an earlier
/// connection is not acknowledged: its packet id may name another
/// message on this one, and the broker sends it again anyway (the
/// deliveries it made are in the store; their repeat is dropped by key).
async fn take(
    mut received: mpsc::Receiver<(u64, Publish)>,
    client: AsyncClient,
    store: StoreHandle,
    config: BridgeConfig,
    session: Arc<AtomicU64>,
    claims: Option<(String, Arc<claims::Claims>)>,
) {
    let mut seen: HashMap<String, (u64, String)> = HashMap::new();
    while let Some(first) = received.recv().await {
        // Everything waiting goes into one commit.
        let mut batch = vec![first];
        while batch.len() < RECEIVED_CAPACITY {
            match received.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut deliveries = Vec::new();
        for (_, p) in &batch {
            deliveries.extend(deliveries_of(&config, p, &mut seen));
        }
        if seen.len() > SEEN_KEYS {
            seen.clear();
        }
        if let Some((group, claims)) = &claims {
            let prefix = config.bridge.topic_prefix.as_str();
            deliveries = claimed(
                deliveries,
                &client,
                (prefix, group),
                claims,
                &config.bridge.id,
            )
            .await;
            // A closed work order's claim is cleared, so the broker does
            // not keep claims for ever.
            for (_, p) in &batch {
                if p.payload.is_empty()
                    && let Some(GatewayTopic::WorkOrder { site, gateway, id }) =
                        topics::parse_gateway_topic(prefix, &p.topic)
                {
                    let topic = claim::topic(prefix, group, site, gateway, id);
                    let _ = client
                        .publish(topic, QoS::AtLeastOnce, true, Vec::new())
                        .await;
                }
            }
        }
        if !deliveries.is_empty() {
            let committed = match store.insert_deliveries(deliveries).await {
                Ok(()) => store.flush().await,
                Err(e) => Err(e),
            };
            if let Err(e) = committed {
                // Not acknowledged: the broker sends them again after the
                // next reconnect, and they must then count as new.
                seen.clear();
                tracing::error!(error = %e, "bridge: cannot commit deliveries; messages left unacknowledged");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        }
        let now = session.load(Ordering::SeqCst);
        for (on, p) in &batch {
            if *on != now {
                continue;
            }
            if let Err(e) = client.ack(p).await {
                tracing::warn!(error = %e, "bridge: cannot acknowledge a message");
            }
        }
    }
}

/// The deliveries this bridge may queue: creates (raises) only for the
/// keys whose first claim is its own. Claims every raised key not yet
/// claimed and waits (at most [`CLAIM_WAIT`]) for the broker to deliver
/// the claims back; a key whose claims do not come back in time is kept
/// (a second work order is less bad than none) and logged.
async fn claimed(
    deliveries: Vec<store::Delivery>,
    client: &AsyncClient,
    (prefix, group): (&str, &str),
    claims: &claims::Claims,
    me: &str,
) -> Vec<store::Delivery> {
    let raised = WoEvent::Raised.as_str();
    let mut wanted: Vec<(String, String)> = deliveries
        .iter()
        .filter(|d| d.event == raised && claims.winner(&d.key).is_none())
        .map(|d| (d.key.clone(), d.topic.clone()))
        .collect();
    wanted.dedup();
    let mut keys = Vec::new();
    for (key, wo_topic) in wanted {
        let Some(GatewayTopic::WorkOrder { site, gateway, id }) =
            topics::parse_gateway_topic(prefix, &wo_topic)
        else {
            continue;
        };
        let c = Claim {
            key: key.clone(),
            bridge: me.to_owned(),
        };
        let topic = claim::topic(prefix, group, site, gateway, id);
        if let Err(e) = client
            .publish(topic, QoS::AtLeastOnce, true, c.payload())
            .await
        {
            tracing::warn!(error = %e, "bridge: cannot publish a claim");
        }
        keys.push(key);
    }
    if !keys.is_empty() {
        claims.settled(&keys, CLAIM_WAIT).await;
    }
    deliveries
        .into_iter()
        .filter(|d| {
            if d.event != raised {
                return true;
            }
            match claims.winner(&d.key) {
                Some(w) if w == me => true,
                Some(w) => {
                    tracing::info!(key = %d.key, bridge = %w, "bridge: work order claimed by another bridge of the group");
                    false
                }
                None => {
                    tracing::warn!(key = %d.key, "bridge: no claim came back in time; creating anyway");
                    true
                }
            }
        })
        .collect()
}

/// How long a new session keeps its plain subscription to the work
/// orders (the broker sends the retained ones right after it).
const RETAINED_WINDOW: Duration = Duration::from_secs(10);

/// Longest wait for the group's claims to come back from the broker.
const CLAIM_WAIT: Duration = Duration::from_secs(5);

/// The deliveries a received message makes: a work order for every
/// connector (unless it repeats what was seen), a meter reading for the
/// connectors that map the meter.
fn deliveries_of(
    config: &BridgeConfig,
    p: &Publish,
    seen: &mut HashMap<String, (u64, String)>,
) -> Vec<store::Delivery> {
    let topic = p.topic.clone();
    let now = SystemTime::now();
    match topics::parse_gateway_topic(&config.bridge.topic_prefix, &topic) {
        Some(GatewayTopic::WorkOrder { id, .. }) => {
            // An empty message clears a closed work order's topic: the
            // CMMS closed it, nothing to deliver.
            if p.payload.is_empty() {
                return Vec::new();
            }
            let wo = match received::work_order(&p.payload) {
                Ok(wo) => wo,
                Err(e) => {
                    tracing::warn!(%topic, error = %e, "bridge: not a work order; ignored");
                    return Vec::new();
                }
            };
            if wo.id != id {
                tracing::warn!(%topic, id = %wo.id, "bridge: work order id differs from its topic; ignored");
                return Vec::new();
            }
            let event = event_of(&wo.status, wo.occurrences, wo.cmms_ref().is_some());
            let state = (wo.occurrences, wo.status.clone());
            if seen.get(&wo.key) == Some(&state) {
                return Vec::new();
            }
            seen.insert(wo.key.clone(), state);
            route::work_order(&config.cmms, &wo.key, event, &topic, &p.payload, now)
        }
        Some(GatewayTopic::Meter { meter, .. }) => {
            if p.payload.is_empty() {
                return Vec::new();
            }
            if let Err(e) = received::meter(&p.payload) {
                tracing::warn!(%topic, error = %e, "bridge: not a meter message; ignored");
                return Vec::new();
            }
            route::meter(&config.cmms, meter, &topic, &p.payload, now)
        }
        None => Vec::new(),
    }
}

/// The event a work-order message stands for, from what it says: its
/// first occurrence with no CMMS answer yet is the raise, an ended one is
/// the close, the rest are updates.
pub fn event_of(status: &str, occurrences: u64, has_cmms_ref: bool) -> WoEvent {
    match status {
        "closed" | "cancelled" => WoEvent::Closed,
        "open" if occurrences <= 1 && !has_cmms_ref => WoEvent::Raised,
        _ => WoEvent::Updated,
    }
}

/// Publishes each status a connector reports on the work order's status
/// topic (QoS 1, not retained), where its gateway applies it.
async fn publish_statuses(mut reports: mpsc::Receiver<Reported>, client: AsyncClient) {
    while let Some(report) = reports.recv().await {
        let topic = format!("{}/status", report.topic);
        let payload = status_payload(&report.update);
        match client
            .publish(topic.clone(), QoS::AtLeastOnce, false, payload)
            .await
        {
            Ok(()) => {
                tracing::info!(%topic, status = report.update.status.as_str(), connector = %report.sink, "bridge: status published");
                let _ = report.applied.send(());
            }
            Err(e) => {
                tracing::warn!(%topic, error = %e, "bridge: cannot publish a status; reported again at the next poll")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_open_occurrence_is_the_raise() {
        assert_eq!(event_of("open", 1, false), WoEvent::Raised);
        assert_eq!(event_of("open", 1, true), WoEvent::Updated);
        assert_eq!(event_of("open", 3, false), WoEvent::Updated);
        assert_eq!(event_of("accepted", 1, true), WoEvent::Updated);
        assert_eq!(event_of("closed", 2, true), WoEvent::Closed);
        assert_eq!(event_of("cancelled", 1, true), WoEvent::Closed);
    }
}
