//! The driver task and the gate, shared by the JSON forwarder and the
//! Sparkplug edge node (each has its own connection and its own driver).
//!
//! The driver owns rumqttc's `EventLoop` and polls it without pause, never
//! inside a `select!` (`EventLoop::poll` is not cancel-safe). It forwards
//! what it sees, as [`LoopMsg`]s, to the forwarder task; it decides nothing
//! but when to try again, and tears a failed connection down. The
//! [`Gate`] is the one point where the two tasks meet: the forwarder hands
//! a packet to rumqttc only through it, and the driver tears a failed
//! connection down only under it, so no packet of a failed connection can
//! slip into the next one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, Incoming, MqttOptions, MqttState, Outgoing,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::forwarder::{ACK_ROOM, BACKOFF_MAX, BACKOFF_START, EVENT_CAPACITY};

/// A connection that lasted at least this long resets the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// The forwarder's way to the driver: requests go to rumqttc through
/// `client`, each under `gate`.
pub(crate) struct Link {
    /// rumqttc's request channel.
    pub(crate) client: AsyncClient,
    /// Shared with the driver.
    pub(crate) gate: Arc<Gate>,
    /// rumqttc's packet ids run 1..=`id_space`.
    pub(crate) id_space: u16,
}

/// Spawns the driver for a window of `window` rows. Returns the link to
/// it, what it reports, and the guard that stops it when dropped.
pub(crate) fn start(
    options: MqttOptions,
    window: usize,
) -> (Link, mpsc::Receiver<LoopMsg>, AbortOnDrop) {
    let id_space = options.inflight();
    // Never full: it holds at most the handed-over packets not yet taken
    // by rumqttc, i.e. the window plus online, subscribe and offline, and
    // at most ACK_ROOM inbound acks.
    let (client, eventloop) = AsyncClient::new(options, window + 16 + ACK_ROOM);
    let gate = Arc::new(Gate::default());
    let (tx, rx) = mpsc::channel(EVENT_CAPACITY);
    let driver = AbortOnDrop(tokio::spawn(drive(eventloop, gate.clone(), tx, id_space)));
    let link = Link {
        client,
        gate,
        id_space,
    };
    (link, rx, driver)
}

/// The broker's host refused the TCP connection: nothing listens there
/// (the broker is down or restarting). Other failures (a refused CONNECT,
/// TLS, timeouts) keep doubling the delay, so a broker that is up but
/// rejects us is not hammered.
fn broker_absent(e: &ConnectionError) -> bool {
    matches!(e, ConnectionError::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// What the driver reports.
#[derive(Debug)]
pub(crate) enum LoopMsg {
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

/// What the gate guards: which connection is current and whether the
/// forwarder may hand packets over on it.
#[derive(Debug, Default)]
struct GateState {
    /// The connection the driver saw the last CONNACK of.
    generation: u64,
    /// That connection has not failed yet.
    up: bool,
    /// The forwarder has set up its book for it: packets may be handed over.
    open: bool,
}

/// Serializes "hand a packet to rumqttc" with "tear down a failed
/// connection", so a packet is either in the failed connection's channel
/// (and discarded with it) or waits for the forwarder to see the next
/// CONNACK.
#[derive(Debug, Default)]
pub(crate) struct Gate(Mutex<GateState>);

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver saw a CONNACK: a new generation, not yet open.
    pub(crate) fn connected(&self) -> u64 {
        let mut g = self.lock();
        g.generation += 1;
        g.up = true;
        g.open = false;
        g.generation
    }

    /// The forwarder has set up its book for `generation`: open, unless
    /// that connection is already gone.
    pub(crate) fn open(&self, generation: u64) -> bool {
        let mut g = self.lock();
        let current = g.up && g.generation == generation;
        if current {
            g.open = true;
        }
        current
    }

    /// Runs `f` (a `try_publish`) only while `generation` is open.
    pub(crate) fn with_open<T>(&self, generation: u64, f: impl FnOnce() -> T) -> Option<T> {
        let g = self.lock();
        (g.open && g.generation == generation).then(f)
    }

    /// The driver saw the established connection fail: close the gate and
    /// throw away everything rumqttc would replay. Returns the events
    /// rumqttc had buffered, which belong to the failed connection.
    pub(crate) fn lost(&self, eventloop: &mut EventLoop, id_space: u16) -> Vec<Event> {
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
        // Manual acks must survive the new state: otherwise rumqttc would
        // acknowledge inbound messages on receipt from the next connection on.
        let manual_acks = eventloop.state.manual_acks;
        eventloop.state = MqttState::new(id_space, manual_acks);
        buffered
    }
}

/// Aborts the driver task when the forwarder returns, so the connection
/// does not outlive it.
pub(crate) struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The driver loop: polls the `EventLoop` until our DISCONNECT is written
/// or the forwarder is gone, with the backoff between failed attempts.
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
    fn the_gate_opens_only_for_the_current_connection() {
        let gate = Gate::default();
        assert_eq!(gate.with_open(0, || ()), None, "closed before a CONNACK");
        let first = gate.connected();
        assert_eq!(
            gate.with_open(first, || ()),
            None,
            "closed until the forwarder has its book"
        );
        assert!(gate.open(first));
        assert_eq!(gate.with_open(first, || 7), Some(7));
        let second = gate.connected();
        assert!(second > first);
        assert_eq!(gate.with_open(first, || ()), None, "a new CONNACK closes");
        assert!(!gate.open(first), "an older connection never opens again");
        assert!(gate.open(second));
        assert_eq!(gate.with_open(second, || ()), Some(()));
    }

    #[test]
    fn a_lost_connection_leaves_nothing_to_replay() {
        let mut options = MqttOptions::new("gate-test", "localhost", 1883);
        options.set_manual_acks(true);
        let (client, mut eventloop) = AsyncClient::new(options, 8);
        let gate = Gate::default();
        let generation = gate.connected();
        assert!(gate.open(generation));
        let handed = gate.with_open(generation, || {
            client.try_publish("t", rumqttc::QoS::AtLeastOnce, false, b"x".to_vec())
        });
        assert!(matches!(handed, Some(Ok(()))));
        let ack = Event::Incoming(Incoming::PubAck(rumqttc::PubAck::new(1)));
        eventloop.state.events.push_back(ack.clone());

        let buffered = gate.lost(&mut eventloop, 10);
        assert_eq!(buffered, vec![ack], "buffered acks are handed over");
        assert!(eventloop.pending.is_empty(), "nothing is replayed");
        assert!(
            eventloop.state.manual_acks,
            "inbound messages are still acknowledged only once handled"
        );
        assert!(eventloop.state.events.is_empty());
        assert_eq!(
            gate.with_open(generation, || ()),
            None,
            "the gate is closed"
        );
        assert!(!gate.open(generation), "and stays closed until a CONNACK");
        let next = gate.connected();
        assert!(gate.open(next));
    }
}
