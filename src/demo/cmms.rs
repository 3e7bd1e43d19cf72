//! The demo's CMMS: an MQTT client that receives the gateway's work orders
//! and reports their status back, as a real maintenance system would
//! (docs/rules.md, section 4). What it decides is in [`super::planner`].
//!
//! # Tasks and ownership
//!
//! [`Cmms::start`] spawns two tasks. The *driver* owns rumqttc's
//! `EventLoop` and polls it all the time (polling is what moves packets
//! and reconnects; `poll` is not cancel-safe, so it is never
//! raced in a `select!`); it forwards connections and publishes through a
//! bounded channel. The *desk* owns the [`Planner`], subscribes after each
//! CONNACK (the session is clean), feeds it what arrives, and every
//! [`LOOK_EVERY`] hands its due decisions to the client with
//! `try_publish`, which never waits: a decision the client's queue could
//! not take is simply due again at the next look. It tells the view what
//! it did through a bounded channel, dropping the news when the view is
//! behind (the news is for people; the work orders do not depend on it).
//!
//! [`Cmms::stop`] fires the desk's [`Shutdown`]; the desk disconnects,
//! gives the driver [`DISCONNECT_GRACE`] to write the DISCONNECT, and both
//! end.

use std::time::{Duration, Instant, SystemTime};

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, QoS};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::planner::{Decision, Observation, Planner, Policy};
use crate::contract::topics::Topics;
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// How often the desk looks for due decisions.
pub const LOOK_EVERY: Duration = Duration::from_millis(250);

/// How long a stop waits for the DISCONNECT to be written.
pub const DISCONNECT_GRACE: Duration = Duration::from_secs(1);

/// Requests rumqttc's client queue holds (subscriptions and status
/// reports); when full, `try_publish` fails and the decision waits.
const CLIENT_CAPACITY: usize = 64;

/// Events waiting between the driver and the desk. When full, the driver
/// waits, which only delays reading from the socket.
const EVENT_CAPACITY: usize = 256;

/// Pause after a connection error before the driver polls again (polling
/// reconnects).
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// What the CMMS did, for the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmmsNews {
    /// Connected and subscribed.
    Connected,
    /// Lost the broker (it reconnects).
    Disconnected(String),
    /// A work order arrived.
    Received {
        /// The work order.
        id: String,
        /// Its title.
        title: String,
    },
    /// A status report was sent.
    Reported(Decision),
}

/// Totals at the stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CmmsTotals {
    /// Work orders received.
    pub received: usize,
    /// Work orders closed and cleared by the gateway.
    pub closed: usize,
}

/// The running CMMS.
#[derive(Debug)]
pub struct Cmms {
    trigger: ShutdownTrigger,
    desk: JoinHandle<CmmsTotals>,
}

/// Where the CMMS connects and what it watches.
#[derive(Debug, Clone)]
pub struct CmmsConfig {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// The gateway's topics.
    pub topics: Topics,
    /// How quickly it acts.
    pub policy: Policy,
}

impl Cmms {
    /// Connects (in the background) and starts handling work orders.
    pub fn start(config: CmmsConfig, news: mpsc::Sender<CmmsNews>) -> Cmms {
        let mut options = MqttOptions::new(
            format!("fieldgate-demo-cmms-{}", std::process::id()),
            config.host.clone(),
            config.port,
        );
        options.set_keep_alive(Duration::from_secs(5));
        // Work orders are a few KiB; rumqttc's default 10 KiB is close.
        options.set_max_packet_size(1 << 20, 1 << 20);
        options.set_clean_session(true);
        let (client, eventloop) = AsyncClient::new(options, CLIENT_CAPACITY);
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let driver = tokio::spawn(drive(eventloop, events_tx));
        let (trigger, listener) = shutdown::channel();
        let desk = tokio::spawn(desk(
            Desk {
                client,
                topics: config.topics,
                planner: Planner::new(config.policy, SystemTime::now()),
                news,
            },
            events_rx,
            driver,
            listener,
        ));
        Cmms { trigger, desk }
    }

    /// Disconnects and waits for both tasks.
    pub async fn stop(self) -> CmmsTotals {
        self.trigger.trigger();
        self.desk.await.unwrap_or_default()
    }
}

/// What the driver passes on.
#[derive(Debug)]
enum Wire {
    Connected,
    Lost(String),
    Message {
        topic: String,
        payload: Vec<u8>,
        retained: bool,
    },
}

/// Polls the event loop until the desk is gone.
async fn drive(mut eventloop: EventLoop, events: mpsc::Sender<Wire>) {
    loop {
        let wire = match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => Wire::Connected,
            Ok(Event::Incoming(Incoming::Publish(p))) => Wire::Message {
                topic: p.topic.clone(),
                payload: p.payload.to_vec(),
                retained: p.retain,
            },
            Ok(Event::Incoming(Incoming::Disconnect)) => Wire::Lost("disconnected".into()),
            Ok(_) => continue,
            Err(e) => {
                if events.send(Wire::Lost(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        if events.send(wire).await.is_err() {
            return;
        }
    }
}

struct Desk {
    client: AsyncClient,
    topics: Topics,
    planner: Planner,
    news: mpsc::Sender<CmmsNews>,
}

async fn desk(
    mut desk: Desk,
    mut events: mpsc::Receiver<Wire>,
    mut driver: JoinHandle<()>,
    mut shutdown: Shutdown,
) -> CmmsTotals {
    let mut look = tokio::time::interval(LOOK_EVERY);
    look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut connected = false;
    loop {
        tokio::select! {
            _ = shutdown.recv() => break,
            wire = events.recv() => match wire {
                Some(Wire::Connected) => {
                    connected = desk.subscribe();
                    desk.tell(CmmsNews::Connected);
                }
                Some(Wire::Lost(reason)) => {
                    if connected {
                        desk.tell(CmmsNews::Disconnected(reason));
                    }
                    connected = false;
                }
                Some(Wire::Message { topic, payload, retained }) => {
                    desk.arrived(&topic, &payload, retained);
                }
                None => break,
            },
            _ = look.tick(), if connected => desk.act(),
        }
    }
    let (received, closed) = desk.planner.counts();
    // Drop the events so a driver blocked on a full channel ends too.
    drop(events);
    let _ = desk.client.try_disconnect();
    if tokio::time::timeout(DISCONNECT_GRACE, &mut driver)
        .await
        .is_err()
    {
        driver.abort();
    }
    CmmsTotals { received, closed }
}

impl Desk {
    /// Subscribes to the work orders and alarms of the gateway; false when
    /// the request could not be queued (tried again at the next CONNACK).
    fn subscribe(&self) -> bool {
        let base = self.topics.base();
        let filters = [format!("{base}/workorders/+"), format!("{base}/alarms/+")];
        filters.iter().all(|f| {
            self.client
                .try_subscribe(f.as_str(), QoS::AtLeastOnce)
                .is_ok()
        })
    }

    fn arrived(&mut self, topic: &str, payload: &[u8], retained: bool) {
        let Some(observation) = observation(&self.topics, topic, payload, retained) else {
            return;
        };
        let received = match &observation {
            Observation::WorkOrder { message, .. } => {
                Some((message.id.clone(), message.title.clone()))
            }
            _ => None,
        };
        if self.planner.observe(observation, Instant::now())
            && let Some((id, title)) = received
        {
            self.tell(CmmsNews::Received { id, title });
        }
    }

    fn act(&mut self) {
        for decision in self.planner.due(Instant::now()) {
            let topic = format!("{}/status", self.topics.workorder(decision.id()));
            // Not retained (docs/rules.md): a retained status would be
            // replayed at every reconnect.
            let sent = self.client.try_publish(
                topic,
                QoS::AtLeastOnce,
                false,
                decision.payload().into_bytes(),
            );
            if sent.is_ok() {
                self.planner.sent(&decision);
                self.tell(CmmsNews::Reported(decision));
            }
        }
    }

    fn tell(&self, news: CmmsNews) {
        let _ = self.news.try_send(news);
    }
}

/// What a message on a subscribed topic means; `None` for anything else
/// (a malformed payload is ignored, as the gateway ignores one).
fn observation(
    topics: &Topics,
    topic: &str,
    payload: &[u8],
    retained: bool,
) -> Option<Observation> {
    let rest = topic.strip_prefix(topics.base())?.strip_prefix('/')?;
    let (kind, name) = rest.split_once('/')?;
    if name.is_empty() || name.contains('/') {
        return None;
    }
    match kind {
        "workorders" if payload.is_empty() => Some(Observation::Cleared {
            id: name.to_string(),
        }),
        "workorders" => serde_json::from_slice(payload)
            .ok()
            .map(|message| Observation::WorkOrder { message, retained }),
        "alarms" if !payload.is_empty() => {
            serde_json::from_slice(payload).ok().map(Observation::Alarm)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_topics_it_subscribes_to() {
        let topics = Topics::new("fieldgate", "demo-plant", "demo");
        let wo = br#"{"id":"01A","type":"corrective","status":"open","asset":"P-101","title":"hot",
            "created_at":"2030-01-01T00:00:00.000Z","trigger":{"rule":"hot","tag":"pump1.t"},"seq":1}"#;
        let got = observation(
            &topics,
            "fieldgate/demo-plant/demo/workorders/01A",
            wo,
            true,
        );
        assert!(
            matches!(&got, Some(Observation::WorkOrder { message, retained: true })
                if message.id == "01A" && message.trigger.rule.as_deref() == Some("hot")),
            "{got:?}"
        );
        assert_eq!(
            observation(
                &topics,
                "fieldgate/demo-plant/demo/workorders/01A",
                b"",
                false
            ),
            Some(Observation::Cleared { id: "01A".into() })
        );
        let alarm = br#"{"rule":"hot","state":"normal","active":false,"seq":3}"#;
        assert!(matches!(
            observation(&topics, "fieldgate/demo-plant/demo/alarms/hot", alarm, true),
            Some(Observation::Alarm(a)) if a.rule == "hot" && !a.active
        ));
        for (topic, payload) in [
            ("fieldgate/demo-plant/demo/alarms/hot", &b""[..]),
            ("fieldgate/demo-plant/demo/alarms/hot", b"not json"),
            ("fieldgate/demo-plant/demo/workorders/01A/status", b"{}"),
            ("fieldgate/other/demo/workorders/01A", wo),
            ("fieldgate/demo-plant/demo/data/pump1", b"{}"),
        ] {
            assert_eq!(observation(&topics, topic, payload, false), None, "{topic}");
        }
    }
}
