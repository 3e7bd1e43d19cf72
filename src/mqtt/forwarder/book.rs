//! The packet-id book of one connection (pure: no I/O, no tokio; what
//! should never happen is logged).
//!
//! What was handed to rumqttc, in hand-over order, until rumqttc names its
//! packet id; then `pkid → what it carries` until the acknowledgement that
//! completes it. It also predicts the ids rumqttc will give next, so the
//! forwarder can hold back a packet whose id still names an unconfirmed
//! message.

use std::collections::{HashMap, VecDeque};

use tracing::{debug, error, warn};

use super::streams::Stream;

/// What was handed to rumqttc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sent {
    /// An outbox row, sent by `stream`.
    Row {
        /// The row's id in the outbox.
        id: i64,
        /// The stream that sent it.
        stream: Stream,
    },
    /// The retained `online` status.
    Online,
    /// The retained `offline` status, at a stop.
    Offline,
    /// The subscription to the inbound topics.
    Subscribe,
}

/// The packet that completes (or advances) a handed-over packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Await {
    /// PUBACK of a QoS 1 publish.
    PubAck,
    /// PUBREC of a QoS 2 publish (then PUBCOMP).
    PubRec,
    /// PUBCOMP of a QoS 2 publish that had its PUBREC.
    PubComp,
    /// SUBACK of a subscribe.
    SubAck,
}

/// The exact map from packet id to what it carries, for one connection.
#[derive(Debug)]
pub(super) struct Flight {
    /// rumqttc's packet ids run 1..=id_space.
    id_space: u16,
    /// The last id rumqttc gave out (0 on a fresh `MqttState`).
    last: u16,
    /// Handed over, id not yet seen, in hand-over order.
    queued: VecDeque<(Sent, Await)>,
    /// Written with this id, waiting for `Await`.
    slots: HashMap<u16, (Sent, Await)>,
    /// Live rows in flight (queued or in slots).
    pub(super) live: usize,
    /// Backlog rows in flight (queued or in slots).
    pub(super) backlog: usize,
}

impl Flight {
    /// An empty book for a fresh `MqttState` with `id_space` packet ids.
    pub(super) fn new(id_space: u16) -> Flight {
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
    pub(super) fn free_run(&self, limit: usize) -> usize {
        let base = self.queued.len();
        let limit = limit.min(usize::from(self.id_space).saturating_sub(base));
        (1..=limit)
            .take_while(|i| !self.slots.contains_key(&self.predicted(base + i)))
            .count()
    }

    /// Keeps the per-stream counts of rows in flight.
    fn count(&mut self, sent: &Sent, delta: isize) {
        if let Sent::Row { stream, .. } = sent {
            let n = match stream {
                Stream::Live => &mut self.live,
                Stream::Backlog => &mut self.backlog,
            };
            *n = n.saturating_add_signed(delta);
        }
    }

    /// Handed over to rumqttc; completed by `wait`.
    pub(super) fn queue(&mut self, sent: Sent, wait: Await) {
        self.count(&sent, 1);
        self.queued.push_back((sent, wait));
    }

    /// `Outgoing::Publish(pkid)` or `Outgoing::Subscribe(pkid)`: the oldest
    /// queued packet got `pkid`.
    pub(super) fn assigned(&mut self, pkid: u16) -> Option<&Sent> {
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
    pub(super) fn complete(&mut self, pkid: u16, kind: Await) -> Option<Sent> {
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
    pub(super) fn received(&mut self, pkid: u16) {
        match self.slots.get_mut(&pkid) {
            Some((_, wait)) if *wait == Await::PubRec => *wait = Await::PubComp,
            other => debug!(pkid, ?other, "PUBREC of an unexpected packet id"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rumqttc::{Event, Incoming, MqttState, Outgoing, QoS};

    fn live(id: i64) -> Sent {
        Sent::Row {
            id,
            stream: Stream::Live,
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
    fn predicted_ids_wrap_around_the_id_space() {
        let mut flight = Flight::new(5);
        assert_eq!(flight.predicted(1), 1, "a fresh state starts at 1");
        assert_eq!(flight.predicted(5), 5);
        assert_eq!(flight.predicted(6), 1);
        for pkid in 1..=4 {
            flight.queue(live(i64::from(pkid)), Await::PubAck);
            flight.assigned(pkid);
        }
        assert_eq!(flight.predicted(1), 5);
        assert_eq!(flight.predicted(2), 1, "after N comes 1, never 0");
        assert_eq!(flight.predicted(7), 1);
    }

    #[test]
    fn free_run_never_exceeds_the_id_space() {
        let mut flight = Flight::new(3);
        assert_eq!(flight.free_run(10), 3);
        flight.queue(Sent::Online, Await::PubAck);
        assert_eq!(flight.free_run(10), 2, "a queued packet takes an id");
        assert_eq!(flight.free_run(1), 1, "never more than asked");
        assert_eq!(Flight::new(0).free_run(10), 1, "at least one id");
    }

    #[test]
    fn rows_in_flight_are_counted_per_stream() {
        let mut flight = Flight::new(10);
        flight.queue(live(1), Await::PubAck);
        flight.queue(
            Sent::Row {
                id: 2,
                stream: Stream::Backlog,
            },
            Await::PubAck,
        );
        flight.queue(Sent::Subscribe, Await::SubAck);
        assert_eq!((flight.live, flight.backlog), (1, 1), "only rows count");
        for pkid in 1..=3 {
            flight.assigned(pkid);
        }
        assert_eq!((flight.live, flight.backlog), (1, 1), "until confirmed");
        assert_eq!(flight.complete(1, Await::PubAck), Some(live(1)));
        assert_eq!((flight.live, flight.backlog), (0, 1));
    }

    #[test]
    fn a_packet_the_forwarder_did_not_hand_over_is_ignored() {
        let mut flight = Flight::new(10);
        assert_eq!(flight.assigned(1), None);
        assert_eq!(flight.predicted(1), 1, "the prediction does not move");
        assert_eq!(flight.complete(1, Await::PubAck), None);
    }

    #[test]
    fn an_id_reused_in_flight_replaces_the_old_message() {
        let mut flight = Flight::new(1);
        flight.queue(live(1), Await::PubAck);
        flight.assigned(1);
        // The guard would hold this one back; the book survives anyway.
        flight.queue(live(2), Await::PubAck);
        assert_eq!(flight.assigned(1), Some(&live(2)));
        assert_eq!(flight.live, 1, "the old message is no longer in flight");
        assert_eq!(flight.complete(1, Await::PubAck), Some(live(2)));
        assert_eq!(flight.live, 0);
    }

    #[test]
    fn pubrec_advances_only_a_qos_2_publish() {
        let mut flight = Flight::new(10);
        flight.queue(live(1), Await::PubAck);
        flight.assigned(1);
        flight.received(1);
        assert_eq!(
            flight.complete(1, Await::PubComp),
            None,
            "QoS 1: no PUBCOMP"
        );
        assert_eq!(flight.complete(1, Await::PubAck), Some(live(1)));
        flight.received(9); // unknown id: nothing happens
        assert_eq!(flight.free_run(10), 10, "every id is free again");
    }
}
